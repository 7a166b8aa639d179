"""``vigil lockdown`` and ``vigil incident``: a site's lockdown and on-call incidents, by hand.

Both act on the database directly, as the API and the review app do; a running server's worker
delivers the ``lockdown.changed`` webhook and any pages at its next poll.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.actions import incidents
from vigil.actions.incidents import already_settled, incident_state
from vigil.clock import SystemClock
from vigil.commands.common import (
    DEFAULT_SITE,
    ConfigFile,
    DataDir,
    EverySiteOption,
    SiteOption,
    actor,
    console,
    open_database,
    time_text,
)
from vigil.errors import NotFound
from vigil.lockdown import control
from vigil.lockdown.control import MAX_MANUAL_MINUTES
from vigil.lockdown.kinds import LockdownLevel
from vigil.lockdown.levels import LevelSource
from vigil.store.models import Incident, Site
from vigil.store.sites import get_site

lockdown_app = typer.Typer(
    help="A site's lockdown level: see it, set it by hand, clear it.", no_args_is_help=True
)
incident_app = typer.Typer(
    help="Incidents that page on-call staff: list, acknowledge, resolve.", no_args_is_help=True
)

MAX_REASON_LENGTH = 2000
MAX_DURATION = timedelta(minutes=MAX_MANUAL_MINUTES)
_DURATION = re.compile(r"([0-9]{1,6})([mhd])")
_MINUTES_PER_UNIT = {"m": 1, "h": 60, "d": 24 * 60}

Reason = Annotated[
    str, typer.Option("--reason", help="Why: kept in the audit log and shown to other staff.")
]


def parse_duration(text: str) -> timedelta:
    """A whole number and a unit: ``90m``, ``2h`` or ``1d``; anything else is refused."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise typer.BadParameter(
            f"{text!r} is not a duration: write a whole number and a unit, as in 90m, 2h or 1d"
        )
    duration = timedelta(minutes=int(found.group(1)) * _MINUTES_PER_UNIT[found.group(2)])
    if duration <= timedelta(0):
        raise typer.BadParameter("a lockdown set by hand lasts at least a minute")
    if duration > MAX_DURATION:
        raise typer.BadParameter(f"a lockdown set by hand lasts at most {MAX_DURATION.days}d")
    return duration


def _checked_reason(reason: str) -> str:
    if not reason.strip():
        raise typer.BadParameter("say why (--reason TEXT)", param_hint="'--reason'")
    if len(reason) > MAX_REASON_LENGTH:
        raise typer.BadParameter(f"at most {MAX_REASON_LENGTH} characters", param_hint="'--reason'")
    return reason.strip()


def _cause_text(cause: dict[str, Any]) -> str:
    """What the rules saw when they raised the level, in one line."""
    rules = cause.get("rules") or []
    return "; ".join(
        f"{rule.get('signal')} {rule.get('measured')} >= {rule.get('at_least')} "
        f"in {rule.get('window_minutes')} min"
        for rule in rules
    )


def _print_site(site: Site, lockdown: control.SiteLockdown) -> None:
    conditions = lockdown.conditions
    level = conditions.level
    console.print(f"{site.name}: level {int(level)} - {level.description}", style="bold")
    if conditions.source is LevelSource.MANUAL:
        until = time_text(lockdown.manual_until) if lockdown.manual_until else "cleared by hand"
        console.print(
            f"  set by hand by {lockdown.manual_by} until {until}: {lockdown.manual_reason}"
        )
    elif conditions.source is not LevelSource.NONE:
        console.print(f"  from: {conditions.source.value}")
    console.print(f"  the rules' level: {lockdown.automatic_level}", end="")
    cause = _cause_text(lockdown.automatic_cause) if lockdown.automatic_level else ""
    console.print(f" (raised by {cause})" if cause else "")
    for schedule in conditions.schedules:
        console.print(
            f"  schedule in force: {schedule.name} ({schedule.start}-{schedule.end}, "
            f"at least level {int(schedule.minimum_level)})"
        )
    table = Table("signal", "window", "measured", "threshold", "raises to", "")
    for rule, measured, threshold in lockdown.measures:
        table.add_row(
            rule.signal.value,
            f"{rule.window_minutes:g} min",
            f"{measured:g}",
            f"{threshold:g}",
            str(int(rule.level)),
            "firing" if measured >= threshold else "",
        )
    console.print(table)


@lockdown_app.command("status")
def lockdown_status(
    site: EverySiteOption = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Each site's level, why it is in force, and every rule's measure against its threshold."""
    settings, database = open_database(data_dir, config)
    now = SystemClock().now()
    with database.session() as session:
        found = (
            [get_site(session, site)]
            if site is not None
            else list(session.scalars(select(Site).order_by(Site.name)))
        )
        if not found:
            console.print("no sites yet")
        for one in found:
            _print_site(one, control.describe(session, settings, one, now))


@lockdown_app.command("set")
def lockdown_set(
    level: Annotated[
        int,
        typer.Argument(
            min=0,
            max=int(LockdownLevel.UPLOADS_PAUSED),
            help="0 normal; 1 hold new accounts' images; 2 hold every image; 3 refuse uploads.",
        ),
    ],
    reason: Reason,
    duration: Annotated[
        timedelta | None,
        typer.Option(
            "--for",
            parser=parse_duration,
            metavar="DURATION",
            help="How long: 90m, 2h, 1d (default: lockdown.manual_default_hours).",
            show_default=False,
        ),
    ] = None,
    site: SiteOption = DEFAULT_SITE,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Set a site's lockdown level by hand: it wins over the rules until it expires."""
    why = _checked_reason(reason)
    settings, database = open_database(data_dir, config)
    now = SystemClock().now()
    until = now + (duration or timedelta(hours=settings.lockdown.manual_default_hours))
    with database.write_session() as session:
        found = get_site(session, site)
        changed = control.set_level(
            session, settings, found, level, until=until, reason=why, actor=actor(), now=now
        )
    chosen = LockdownLevel(level)
    console.print(f"{site}: level {level} ({chosen.description}) until {time_text(until)}")
    if not changed:
        console.print("the level in force was already this one; its reason and expiry are updated")


@lockdown_app.command("clear")
def lockdown_clear(
    reason: Reason,
    site: SiteOption = DEFAULT_SITE,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Back to normal: ends a level set by hand and the rules' level; new signals count again."""
    why = _checked_reason(reason)
    settings, database = open_database(data_dir, config)
    now = SystemClock().now()
    with database.write_session() as session:
        found = get_site(session, site)
        control.clear(session, settings, found, reason=why, actor=actor(), now=now)
        level = control.conditions_for(session, settings, found.id, now).level
    console.print(f"{site}: lockdown cleared; level {int(level)} ({level.description})")


# --- incidents -----------------------------------------------------------------------------------


def _find(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    return incident


IncidentId = Annotated[
    int, typer.Argument(min=1, max=2**31 - 1, help="As `vigil incident list` shows it.")
]


@incident_app.command("list")
def incident_list(
    recent: Annotated[
        int, typer.Option(min=0, max=1000, help="How many closed incidents to show too.")
    ] = 10,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Open incidents, then the most recent closed ones."""
    _, database = open_database(data_dir, config)
    with database.session() as session:
        names = {site_id: name for site_id, name in session.execute(select(Site.id, Site.name))}
        shown = incidents.open_incidents(session)
        closed = session.scalars(
            select(Incident)
            .where(Incident.resolved_at.is_not(None))
            .order_by(Incident.id.desc())
            .limit(recent)
        )
        shown.extend(closed)
    if not shown:
        console.print("no incidents")
        return
    table = Table("id", "site", "state", "opened", "paged tier", "triggers", "by", "title")
    for incident in shown:
        table.add_row(
            str(incident.id),
            names.get(incident.site_id, "?"),
            incident_state(incident),
            time_text(incident.opened_at),
            str(incident.tier + 1) if incident.tier >= 0 else "-",
            str(incident.trigger_count),
            incident.resolved_by or incident.acknowledged_by or "",
            incident.title,
        )
    console.print(table)


@incident_app.command("ack")
def incident_acknowledge(
    incident_id: IncidentId, data_dir: DataDir = None, config: ConfigFile = None
) -> None:
    """Say someone is on it: nobody further is paged."""
    settings, database = open_database(data_dir, config)
    with database.write_session() as session:
        incident = _find(session, incident_id)
        if not incidents.acknowledge(
            session, settings.paging, incident, actor(), SystemClock().now()
        ):
            raise already_settled(incident)
    console.print(f"incident {incident_id} acknowledged: {incident.title}")


@incident_app.command("resolve")
def incident_resolve(
    incident_id: IncidentId,
    reason: Annotated[str, typer.Option("--reason", help="Why it is over.")] = "resolved by hand",
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Close an incident: a new trigger opens (and pages) a new one."""
    why = _checked_reason(reason)
    settings, database = open_database(data_dir, config)
    with database.write_session() as session:
        incident = _find(session, incident_id)
        if not incidents.resolve(
            session, settings.paging, incident, actor(), SystemClock().now(), why=why
        ):
            raise already_settled(incident)
    console.print(f"incident {incident_id} resolved: {incident.title}")
