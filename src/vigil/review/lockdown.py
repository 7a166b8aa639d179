"""The lockdown page, and acknowledging incidents from the app or from a page's link.

Anyone signed in sees every site's level, why it is in force and what the rules measure;
moderators acknowledge and resolve incidents; admins set and clear levels.

The acknowledgement link sent with a page works without signing in: on-call staff open it on a
phone. Opening it (GET) changes nothing, since mail scanners follow links; its form POSTs the
link's token, which is the capability, so that form needs neither a session nor a CSRF token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.actions import incidents
from vigil.actions.incidents import already_settled, incident_state
from vigil.api.auth import RuntimeDep, get_runtime, wake_worker
from vigil.errors import InvalidRequest, NotFound
from vigil.lockdown import control
from vigil.lockdown.control import MAX_MANUAL_MINUTES
from vigil.lockdown.kinds import LockdownLevel
from vigil.lockdown.levels import active_schedules, effective_level
from vigil.review.accounts import Permission
from vigil.review.web import (
    NO_NUL,
    PREFIX,
    SESSION_COOKIE,
    CsrfRefused,
    LoginRequired,
    Moderator,
    Reviewer,
    Viewer,
    render,
    require,
    templates,
)
from vigil.runtime import Runtime
from vigil.store.models import AuditEvent, Incident, LockdownState, Site
from vigil.store.sites import get_site

router = APIRouter(prefix=PREFIX, include_in_schema=False)

HISTORY = 50
RESOLVED_SHOWN = 10
# The choices for how long a level set by hand lasts, in minutes.
DURATIONS = (30, 60, 120, 240, 480, 720, 24 * 60, 3 * 24 * 60, 7 * 24 * 60)
# Tokens are 43 characters: anything far longer is not one of ours, and is not looked up.
_MAX_TOKEN = 100
# One answer for an unknown incident and a wrong token: a link says nothing unless it is right.
_NOT_A_LINK = "this acknowledgement link is not valid: it may be mistyped or cut short"
_ON_CALL = "on-call"

LockdownAdmin = Annotated[Reviewer, Depends(require(Permission.LOCKDOWN))]
_SITE = Annotated[str, Form(min_length=1, max_length=100, pattern=NO_NUL)]
_REASON = Annotated[str, Form(max_length=2000, pattern=NO_NUL)]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@dataclass(frozen=True)
class SitePanel:
    """One site's part of the lockdown page."""

    site: Site
    lockdown: control.SiteLockdown
    incidents: list[Incident]


def duration_text(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day{'s' if days != 1 else ''}"
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minutes"


def raised_lockdowns(request: Request) -> list[tuple[str, LockdownLevel]]:
    """Sites whose level in force is above normal, for the banner on every page."""
    runtime = get_runtime(request)
    now = runtime.clock.now()
    schedules = active_schedules(runtime.settings.lockdown, now)
    with runtime.database.session() as session:
        rows = session.execute(
            select(Site.name, LockdownState)
            .outerjoin(LockdownState, LockdownState.site_id == Site.id)
            .order_by(Site.name)
        ).all()
    raised = []
    for name, state in rows:
        level, _ = (
            effective_level(
                state.automatic_level, state.manual_level, state.manual_until, schedules, now
            )
            if state is not None
            else effective_level(0, None, None, schedules, now)
        )
        if level > LockdownLevel.NORMAL:
            raised.append((name, level))
    return raised


templates.env.globals["raised_lockdowns"] = raised_lockdowns


@router.get("/lockdown")
def lockdown_page(request: Request, reviewer: Viewer, runtime: RuntimeDep) -> HTMLResponse:
    now = runtime.clock.now()
    settings = runtime.settings
    with runtime.database.session() as session:
        sites = list(session.scalars(select(Site).order_by(Site.name)))
        panels = [
            SitePanel(
                site,
                control.describe(session, settings, site, now),
                incidents.open_incidents(session, site.id),
            )
            for site in sites
        ]
        resolved = list(
            session.scalars(
                select(Incident)
                .where(Incident.resolved_at.is_not(None))
                .order_by(Incident.id.desc())
                .limit(RESOLVED_SHOWN)
            )
        )
        history = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action.startswith("lockdown.", autoescape=True))
                .order_by(AuditEvent.id.desc())
                .limit(HISTORY)
            )
        )
    default_minutes = min(
        max(round(settings.lockdown.manual_default_hours * 60), 1), MAX_MANUAL_MINUTES
    )
    durations = sorted({*DURATIONS, default_minutes})
    return render(
        request,
        "lockdown.html",
        {
            "panels": panels,
            "resolved": resolved,
            "site_names": {site.id: site.name for site in sites},
            "history": history,
            "levels": list(LockdownLevel),
            "durations": [(minutes, duration_text(minutes)) for minutes in durations],
            "default_minutes": default_minutes,
            "done": request.query_params.get("done"),
        },
        reviewer=reviewer,
    )


def _back(done: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/lockdown?{urlencode({'done': done})}", status_code=303)


def _reason(text: str, what: str) -> str:
    if not text.strip():
        raise InvalidRequest(f"say why the lockdown is {what}")
    return text.strip()


@router.post("/lockdown/set")
def set_level(
    request: Request,
    reviewer: LockdownAdmin,
    runtime: RuntimeDep,
    site: _SITE,
    level: Annotated[int, Form(ge=0, le=int(LockdownLevel.UPLOADS_PAUSED))],
    for_minutes: Annotated[int, Form(ge=1, le=MAX_MANUAL_MINUTES)],
    reason: _REASON,
) -> RedirectResponse:
    """An admin sets a level by hand; it wins over the rules and schedules until it expires."""
    why = _reason(reason, "set")
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        found = get_site(session, site)
        control.set_level(
            session,
            runtime.settings,
            found,
            level,
            until=now + timedelta(minutes=for_minutes),
            reason=why,
            actor=reviewer.actor,
            now=now,
        )
    wake_worker(request)
    return _back(f"{site} is at level {level} for {duration_text(for_minutes)}")


@router.post("/lockdown/clear")
def clear_level(
    request: Request, reviewer: LockdownAdmin, runtime: RuntimeDep, site: _SITE, reason: _REASON
) -> RedirectResponse:
    """Back to normal: the level set by hand and the rules' level end."""
    why = _reason(reason, "cleared")
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        found = get_site(session, site)
        control.clear(session, runtime.settings, found, reason=why, actor=reviewer.actor, now=now)
    wake_worker(request)
    return _back(f"{site} lockdown cleared")


# --- incidents -----------------------------------------------------------------------------------


async def _signed_in_or_none(request: Request, runtime: RuntimeDep) -> Reviewer | None:
    """The signed-in person, if any; on a POST, only with the session's CSRF token (a form
    without it acknowledges on the strength of the link's token alone)."""
    if SESSION_COOKIE not in request.cookies:
        return None
    try:
        return await require(Permission.VIEW)(request, runtime)
    except (LoginRequired, CsrfRefused):
        return None


MaybeReviewer = Annotated[Reviewer | None, Depends(_signed_in_or_none)]


def _by_token(session: Session, incident_id: int, token: str) -> Incident:
    # Tokens are URL-safe ASCII; anything else is no token of ours (and cannot be compared in
    # constant time as text).
    if not token or len(token) > _MAX_TOKEN or not token.isascii():
        raise NotFound(_NOT_A_LINK)
    incident = incidents.find_by_token(session, incident_id, token)
    if incident is None:
        raise NotFound(_NOT_A_LINK)
    return incident


def _link_page(
    request: Request,
    runtime: Runtime,
    incident: Incident,
    token: str,
    reviewer: Reviewer | None,
    *,
    just_acknowledged: bool = False,
) -> HTMLResponse:
    with runtime.database.session() as session:
        site = session.get(Site, incident.site_id)
    return render(
        request,
        "acknowledge.html",
        {
            "incident": incident,
            "site_name": site.name if site is not None else "",
            "state": incident_state(incident),
            "token": token,
            "just_acknowledged": just_acknowledged,
            # The form names the person acknowledging; a signed-in one needs no name.
            "signed_in": reviewer,
        },
        reviewer=reviewer,
    )


@router.get("/incidents/{incident_id}/acknowledge")
def acknowledge_link(
    incident_id: IncidentId,
    request: Request,
    runtime: RuntimeDep,
    reviewer: MaybeReviewer,
    token: Annotated[str | None, Query()] = None,
) -> HTMLResponse:
    """What a page's link opens: the incident and a button to acknowledge it. Changes nothing."""
    if token is None:
        raise NotFound(_NOT_A_LINK)
    with runtime.database.session() as session:
        incident = _by_token(session, incident_id, token)
    return _link_page(request, runtime, incident, token, reviewer)


@dataclass(frozen=True)
class _Acknowledger:
    """Who acknowledges, and how they prove they may."""

    reviewer: Reviewer | None  # signed in; None: only the link's token
    token: str | None  # the link's token; None: a moderator on the lockdown page


async def _acknowledger(request: Request, runtime: RuntimeDep) -> _Acknowledger:
    """A form with a token is the link's: the token is enough. Without one, the request comes
    from the lockdown page and needs a moderator's session and its CSRF token."""
    token = (await request.form()).get("token")
    if token is None:
        return _Acknowledger(await require(Permission.REVIEW)(request, runtime), None)
    return _Acknowledger(
        await _signed_in_or_none(request, runtime), token if isinstance(token, str) else ""
    )


@router.post("/incidents/{incident_id}/acknowledge")
def acknowledge(
    incident_id: IncidentId,
    request: Request,
    runtime: RuntimeDep,
    who: Annotated[_Acknowledger, Depends(_acknowledger)],
    name: Annotated[str, Form(max_length=100, pattern=NO_NUL)] = "",
) -> Response:
    """Someone is on it: no further tier is paged."""
    reviewer, token = who.reviewer, who.token
    # The name is only a label for the audit log: one line, however it was typed.
    actor = reviewer.actor if reviewer is not None else f"link:{' '.join(name.split()) or _ON_CALL}"
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        incident = (
            _incident(session, incident_id)
            if token is None
            else _by_token(session, incident_id, token)
        )
        done = incidents.acknowledge(session, runtime.settings.paging, incident, actor, now)
    if done:
        wake_worker(request)
    if token is not None:
        # The link's page says what happened, "already acknowledged" included.
        return _link_page(request, runtime, incident, token, reviewer, just_acknowledged=done)
    if not done:
        raise already_settled(incident)
    return _back(f"incident {incident_id} acknowledged")


@router.post("/incidents/{incident_id}/resolve")
def resolve(
    incident_id: IncidentId,
    request: Request,
    reviewer: Moderator,
    runtime: RuntimeDep,
    reason: _REASON = "",
) -> RedirectResponse:
    """A moderator closes an incident: a new trigger opens (and pages) a new one."""
    with runtime.database.write_session() as session:
        incident = _incident(session, incident_id)
        if not incidents.resolve(
            session,
            runtime.settings.paging,
            incident,
            reviewer.actor,
            runtime.clock.now(),
            why=reason.strip() or "resolved by hand",
        ):
            raise already_settled(incident)
    wake_worker(request)
    return _back(f"incident {incident_id} resolved")


def _incident(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id, with_for_update=True)
    if incident is None:
        raise NotFound(f"no incident {incident_id}")
    return incident
