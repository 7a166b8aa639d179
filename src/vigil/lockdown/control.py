"""Changing a site's lockdown: the rules raising and relaxing it, admins setting and clearing it.

Every change is audited with its cause, told to the site by webhook (``lockdown.changed``), and
a raise by the rules pages on-call staff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil.actions import incidents
from vigil.actions.incidents import IncidentKind
from vigil.actions.webhooks import enqueue_event
from vigil.config import LockdownRule, Settings
from vigil.errors import InvalidRequest
from vigil.lockdown import signals
from vigil.lockdown.kinds import LockdownLevel, SignalKind
from vigil.lockdown.levels import (
    LevelSource,
    SiteConditions,
    active_schedules,
    effective_level,
    rule_scale,
)
from vigil.store import audit
from vigil.store.models import LockdownState, Site

CHANGED_EVENT = "lockdown.changed"
MAX_MANUAL_MINUTES = 30 * 24 * 60  # a level set by hand lasts at most thirty days
# How finely the calm period is timed while rules keep firing: to the minute.
_TRIGGER_GRAIN = timedelta(minutes=1)
SYSTEM_ACTOR = "vigil"


@dataclass(frozen=True)
class Trigger:
    """A rule that fires now, and what it measured."""

    rule: LockdownRule
    measured: float
    threshold: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.rule.signal.value,
            "measured": round(self.measured, 3),
            "at_least": round(self.threshold, 3),
            "window_minutes": self.rule.window_minutes,
            "level": int(self.rule.level),
        }


@dataclass(frozen=True)
class SiteLockdown:
    """A site's lockdown as the status pages show it."""

    conditions: SiteConditions
    automatic_level: int
    automatic_cause: dict[str, Any]
    manual_level: int | None
    manual_until: datetime | None
    manual_reason: str | None
    manual_by: str | None
    measures: list[tuple[LockdownRule, float, float]] = field(default_factory=list)


def conditions_for(
    session: Session, settings: Settings, site_id: int, now: datetime
) -> SiteConditions:
    """The site's level and schedules for screening an image at ``now``."""
    state = session.get(LockdownState, site_id)
    schedules = active_schedules(settings.lockdown, now)
    if state is None:
        level, source = effective_level(0, None, None, schedules, now)
    else:
        level, source = effective_level(
            state.automatic_level, state.manual_level, state.manual_until, schedules, now
        )
    return SiteConditions(level, source, schedules)


def measure_rules(
    session: Session, settings: Settings, site_id: int, now: datetime, counted_from: datetime | None
) -> list[tuple[LockdownRule, float, float]]:
    """Every rule with its measure and the threshold in force now (schedules may lower it)."""
    scale = rule_scale(active_schedules(settings.lockdown, now))

    def window_start(rule: LockdownRule) -> datetime:
        since = now - timedelta(minutes=rule.window_minutes)
        return counted_from if counted_from is not None and counted_from > since else since

    # One narrow query per signal and window: each reads its range of the (site, kind, time)
    # index alone, which on SQLite beats one query aggregating every kind at once.
    measured: dict[tuple[SignalKind, datetime], float] = {}
    results = []
    for rule in settings.lockdown.rules:
        key = (rule.signal, window_start(rule))
        if key not in measured:
            measured[key] = signals.measure(session, site_id, *key)
        results.append((rule, measured[key], rule.at_least * scale))
    return results


def _state_for_update(session: Session, site_id: int, now: datetime) -> LockdownState:
    """The site's state row, locked for this transaction (created on first use)."""
    state = session.get(LockdownState, site_id, with_for_update=True)
    if state is not None:
        return state
    try:
        with session.begin_nested():
            session.add(
                LockdownState(
                    site_id=site_id,
                    automatic_level=0,
                    announced_level=0,
                    automatic_cause={},
                    updated_at=now,
                )
            )
    except IntegrityError:
        pass  # another process created it first
    state = session.get(LockdownState, site_id, with_for_update=True, populate_existing=True)
    assert state is not None
    return state


def _firing(
    session: Session, settings: Settings, site_id: int, now: datetime, counted_from: datetime | None
) -> tuple[list[Trigger], int]:
    """The rules firing now, and the level they ask for (capped; 0 when rules are off)."""
    triggers = [
        Trigger(rule, measured, threshold)
        for rule, measured, threshold in measure_rules(
            session, settings, site_id, now, counted_from
        )
        if measured >= threshold
    ]
    demanded = max((int(trigger.rule.level) for trigger in triggers), default=0)
    lockdown = settings.lockdown
    return triggers, min(demanded, int(lockdown.max_automatic_level)) if lockdown.enabled else 0


def needs_evaluation(session: Session, settings: Settings, site_id: int, now: datetime) -> bool:
    """Whether :func:`evaluate_site` would change anything now: a read-only look, so the watch
    takes the write lock only when there is something to write."""
    state = session.get(LockdownState, site_id)
    _, demanded = _firing(session, settings, site_id, now, state.counted_from if state else None)
    if state is None:
        return demanded > 0 or bool(active_schedules(settings.lockdown, now))
    current = state.automatic_level
    if demanded > current:
        return True
    # While the rules still ask for this level the calm period restarts: written at most once a
    # minute, so a long attack does not take the write lock on every tick.
    still_firing = current > 0 and demanded >= current
    if still_firing and (
        state.last_triggered_at is None or now - state.last_triggered_at >= _TRIGGER_GRAIN
    ):
        return True
    if current > 0:
        calm_since = max(state.last_triggered_at or now, state.automatic_since or now)
        if now - calm_since >= timedelta(minutes=settings.lockdown.calm_minutes):
            return True
    if state.manual_until is not None and state.manual_until <= now:
        return True
    return int(_effective(state, settings, now)[0]) != state.announced_level


def evaluate_site(session: Session, settings: Settings, site: Site, now: datetime) -> bool:
    """Measure the rules and move the automatic level: up at once to what they ask for, down
    one level after each calm period. Returns whether the effective level changed.

    Call in a write transaction: the state row is locked, so processes evaluating at once agree.
    """
    state = _state_for_update(session, site.id, now)
    lockdown = settings.lockdown
    previous_evaluation = state.updated_at
    triggers, demanded = _firing(session, settings, site.id, now, state.counted_from)
    current = state.automatic_level
    cause: dict[str, Any] | None = None
    if demanded > current:
        cause = {
            "rules": [t.as_dict() for t in triggers if int(t.rule.level) > current],
            "level": demanded,
        }
        state.automatic_level = demanded
        state.automatic_since = state.last_triggered_at = now
        state.automatic_cause = cause
        audit.append(
            session,
            SYSTEM_ACTOR,
            "lockdown.raised",
            f"site/{site.name}",
            {"from": current, "to": demanded, **cause},
            at=now,
        )
        if not _manual_in_force(state, now):
            # Paged whatever the site is told: a schedule may hold this level already, but an
            # attack at night is exactly when someone must know.
            _page(session, settings, site, LockdownLevel(demanded), cause, now)
    elif current > 0 and demanded >= current:
        state.last_triggered_at = now
    elif current > 0:
        calm_since = max(state.last_triggered_at or now, state.automatic_since or now)
        if now - calm_since >= timedelta(minutes=lockdown.calm_minutes):
            state.automatic_level = current - 1
            state.automatic_since = now
            cause = {"calm_minutes": lockdown.calm_minutes}
            audit.append(
                session,
                SYSTEM_ACTOR,
                "lockdown.lowered",
                f"site/{site.name}",
                {
                    "from": current,
                    "to": current - 1,
                    "calm_minutes": lockdown.calm_minutes,
                    "rules_firing": [t.as_dict() for t in triggers],
                },
                at=now,
            )
    if state.manual_until is not None and state.manual_until <= now:
        expired = {
            "level": state.manual_level,
            "reason": state.manual_reason,
            "by": state.manual_by,
        }
        audit.append(
            session, SYSTEM_ACTOR, "lockdown.override_expired", f"site/{site.name}", expired, at=now
        )
        cause = {"override_expired": expired}
        _clear_manual(state)
        level, source = _effective(state, settings, now)
        if source is LevelSource.AUTOMATIC and level > state.announced_level:
            # The rules had raised the level under the override: it takes effect only now.
            _page(session, settings, site, level, dict(state.automatic_cause), now)
    state.updated_at = now
    return _announce(session, settings, site, state, now, cause, since=previous_evaluation)


def set_level(
    session: Session,
    settings: Settings,
    site: Site,
    level: int,
    *,
    until: datetime | None,
    reason: str,
    actor: str,
    now: datetime,
) -> bool:
    """An admin sets the level by hand: it wins over the rules and schedules until ``until``
    (None: until cleared). Returns whether the effective level changed."""
    if not 0 <= level <= int(LockdownLevel.UPLOADS_PAUSED):
        raise InvalidRequest("a lockdown level is 0, 1, 2 or 3")
    if until is not None and until <= now:
        raise InvalidRequest("a lockdown set by hand must last into the future")
    if until is not None and until - now > timedelta(minutes=MAX_MANUAL_MINUTES):
        raise InvalidRequest("a lockdown set by hand lasts at most 30 days")
    if not reason.strip():
        raise InvalidRequest("say why the level is set (--reason)")
    state = _state_for_update(session, site.id, now)
    state.manual_level = level
    state.manual_until = until
    state.manual_reason = reason[:2000]
    state.manual_by = actor[:200]
    state.updated_at = now
    details = {"level": level, "until": until.isoformat() if until else None, "reason": reason}
    audit.append(session, actor, "lockdown.set", f"site/{site.name}", details, at=now)
    cause = {"reason": state.manual_reason, "by": state.manual_by, "until": details["until"]}
    return _announce(session, settings, site, state, now, cause)


def clear(
    session: Session, settings: Settings, site: Site, *, reason: str, actor: str, now: datetime
) -> bool:
    """Back to normal: the override ends, the rules' level drops to 0, and signals up to now no
    longer count (the admin has looked at them); new signals raise the level again."""
    if not reason.strip():
        raise InvalidRequest("say why the lockdown is cleared (--reason)")
    state = _state_for_update(session, site.id, now)
    audit.append(
        session,
        actor,
        "lockdown.cleared",
        f"site/{site.name}",
        {
            "reason": reason,
            "automatic_level": state.automatic_level,
            "manual_level": state.manual_level,
        },
        at=now,
    )
    _clear_manual(state)
    state.automatic_level = 0
    state.automatic_since = now
    state.automatic_cause = {}
    state.counted_from = now
    state.updated_at = now
    cause = {"cleared": True, "reason": reason[:2000], "by": actor[:200]}
    return _announce(session, settings, site, state, now, cause)


def describe(session: Session, settings: Settings, site: Site, now: datetime) -> SiteLockdown:
    state = session.get(LockdownState, site.id)
    conditions = conditions_for(session, settings, site.id, now)
    measures = measure_rules(session, settings, site.id, now, state.counted_from if state else None)
    if state is None:
        return SiteLockdown(conditions, 0, {}, None, None, None, None, measures)
    manual_in_force = conditions.source is LevelSource.MANUAL
    return SiteLockdown(
        conditions,
        state.automatic_level,
        state.automatic_cause,
        state.manual_level if manual_in_force else None,
        state.manual_until if manual_in_force else None,
        state.manual_reason if manual_in_force else None,
        state.manual_by if manual_in_force else None,
        measures,
    )


def _clear_manual(state: LockdownState) -> None:
    state.manual_level = state.manual_until = None
    state.manual_reason = state.manual_by = None


def _manual_in_force(state: LockdownState, now: datetime) -> bool:
    return state.manual_level is not None and (
        state.manual_until is None or state.manual_until > now
    )


def _effective(
    state: LockdownState, settings: Settings, now: datetime
) -> tuple[LockdownLevel, LevelSource]:
    return effective_level(
        state.automatic_level,
        state.manual_level,
        state.manual_until,
        active_schedules(settings.lockdown, now),
        now,
    )


def _page(
    session: Session,
    settings: Settings,
    site: Site,
    level: LockdownLevel,
    cause: dict[str, Any],
    now: datetime,
) -> None:
    """One incident per site while it is locked down: a further raise joins it (and names the
    new level) rather than paging the same people again."""
    title = f"{site.name}: lockdown raised to level {int(level)} ({level.description})"
    incident, _ = incidents.raise_incident(
        session,
        settings.paging,
        site,
        IncidentKind.LOCKDOWN,
        title,
        {"level": int(level), **cause},
        now,
    )
    incident.title = title


def _announce(
    session: Session,
    settings: Settings,
    site: Site,
    state: LockdownState,
    now: datetime,
    cause: dict[str, Any] | None,
    *,
    since: datetime | None = None,
) -> bool:
    """Tell the site about a change of the effective level since the last one announced.

    ``cause`` is what the caller changed; a change it did not make came from a schedule
    starting or ending between ``since`` (the previous evaluation) and now.
    """
    new, source = _effective(state, settings, now)
    old = LockdownLevel(state.announced_level)
    if old == new:
        return False
    state.announced_level = int(new)
    if cause is not None and source is LevelSource.SCHEDULE:
        cause = {**cause, **_schedule_cause(settings, since, now)}
    if cause is None:
        cause = _schedule_cause(settings, since, now)
        audit.append(
            session,
            SYSTEM_ACTOR,
            "lockdown.scheduled",
            f"site/{site.name}",
            {"from": int(old), "to": int(new), **cause},
            at=now,
        )
    if site.webhook_url:
        enqueue_event(
            session,
            site.id,
            CHANGED_EVENT,
            {
                "level": int(new),
                "previous_level": int(old),
                "source": source.value,
                "description": new.description,
                "uploads_paused": new >= LockdownLevel.UPLOADS_PAUSED,
                "cause": cause,
                "changed_at": now.isoformat(),
            },
            now,
        )
    if new == LockdownLevel.NORMAL:
        incidents.resolve_kind(
            session,
            settings.paging,
            site.id,
            IncidentKind.LOCKDOWN,
            "",
            now,
            why="the site is back to normal screening",
        )
    return True


def _schedule_cause(settings: Settings, since: datetime | None, now: datetime) -> dict[str, Any]:
    active = {schedule.name for schedule in active_schedules(settings.lockdown, now)}
    before = (
        {schedule.name for schedule in active_schedules(settings.lockdown, since)}
        if since is not None
        else set()
    )
    return {
        "schedules": sorted(active),
        "schedules_started": sorted(active - before),
        "schedules_ended": sorted(before - active),
    }
