"""A site's lockdown level and its incidents: read them, set and clear the level by hand,
acknowledge and resolve incidents.

Every change is made in one transaction with its audit entry; the worker is woken so the
``lockdown.changed`` webhook and any follow-up pages go out now rather than at its next poll.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.actions import incidents
from vigil.api.auth import AdminKey, ModeratorKey, RuntimeDep, ScreenKey, wake_worker
from vigil.api.schemas import NO_NUL, ErrorResponse
from vigil.errors import Forbidden, InvalidRequest, NotFound
from vigil.lockdown import control
from vigil.lockdown.control import MAX_MANUAL_MINUTES
from vigil.lockdown.kinds import LockdownLevel
from vigil.lockdown.levels import LevelSource
from vigil.runtime import Runtime
from vigil.store.models import Incident, Site
from vigil.store.sites import Principal, Role, get_site

router = APIRouter(prefix="/v1", tags=["lockdown"])

# A level set by hand that nobody remembers to clear would hold or refuse uploads for good.
_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "Missing or unknown API key.",
        403: "The key's role may not do this, or the site is not the key's own.",
        404: "No such site, or no such incident on the key's site.",
        409: "The incident was already acknowledged or resolved.",
        422: "The request is not valid; the message says which field and why.",
    }.items()
}

Reason = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=2000, pattern=NO_NUL),
]
SiteName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]
IncidentId = Annotated[int, Path(ge=1, le=2**31 - 1)]


# --- bodies --------------------------------------------------------------------------------------


class LockdownSet(BaseModel):
    """Set a site's level by hand; it wins over the rules and schedules until it expires."""

    # Strict: "2" or true for a level is a mistake to report, not to guess at.
    model_config = ConfigDict(extra="forbid", strict=True)

    level: int = Field(ge=0, le=int(LockdownLevel.UPLOADS_PAUSED), description="0-3.")
    for_minutes: int | None = Field(
        None,
        ge=1,
        le=MAX_MANUAL_MINUTES,
        description="How long it lasts; default: the settings' lockdown.manual_default_hours.",
    )
    reason: Reason = Field(description="Why: kept in the audit log and sent with the webhook.")
    site: SiteName | None = Field(None, description="Default: the key's own site.")


class LockdownClear(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason
    site: SiteName | None = Field(None, description="Default: the key's own site.")


class ResolveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Reason | None = Field(None, description="Why it is over (default: resolved by hand).")


# --- answers -------------------------------------------------------------------------------------


class RuleMeasure(BaseModel):
    signal: str
    window_minutes: float
    level: int = Field(description="The level this rule raises the site to when it fires.")
    measured: float = Field(description="The signal's measure over the window, now.")
    threshold: float = Field(
        description="The rule's `at_least` as in force now (a schedule may lower it)."
    )
    firing: bool


class ScheduleOut(BaseModel):
    name: str
    start: str
    end: str
    minimum_level: int
    hold_accounts_younger_than_days: float | None
    rule_scale: float


class AutomaticLevel(BaseModel):
    level: int
    cause: dict[str, Any] = Field(description="The rules and measures that raised it.")


class ManualLevel(BaseModel):
    level: int
    until: datetime | None
    reason: str | None
    by: str | None


class LockdownResponse(BaseModel):
    site: str
    level: int = Field(description="The level in force: 0 normal ... 3 uploads paused.")
    description: str
    source: Literal["none", "automatic", "manual", "schedule"]
    uploads_paused: bool
    automatic: AutomaticLevel
    manual: ManualLevel | None = Field(description="A level set by hand, while it is in force.")
    schedules: list[ScheduleOut] = Field(description="Schedules in force now.")
    rules: list[RuleMeasure]
    checked_at: datetime


class LockdownChange(LockdownResponse):
    changed: bool = Field(
        description="Whether the level in force changed (the site gets a lockdown.changed "
        "webhook when it did)."
    )


class IncidentResponse(BaseModel):
    id: int
    site: str
    kind: str
    title: str
    details: dict[str, Any]
    state: Literal["open", "acknowledged", "resolved"]
    trigger_count: int
    opened_at: datetime
    last_triggered_at: datetime
    tiers_paged: int = Field(description="How many tiers of on-call staff were paged so far.")
    next_page_at: datetime | None = Field(
        description="When the next tier is paged, if nobody acknowledges."
    )
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None

    @classmethod
    def of(cls, incident: Incident, site_name: str) -> IncidentResponse:
        return cls(
            id=incident.id,
            site=site_name,
            kind=incident.kind,
            title=incident.title,
            details=incident.details,
            state=incidents.incident_state(incident),
            trigger_count=incident.trigger_count,
            opened_at=incident.opened_at,
            last_triggered_at=incident.last_triggered_at,
            tiers_paged=incident.tier + 1,
            next_page_at=incident.next_tier_at,
            acknowledged_at=incident.acknowledged_at,
            acknowledged_by=incident.acknowledged_by,
            resolved_at=incident.resolved_at,
            resolved_by=incident.resolved_by,
        )


class IncidentList(BaseModel):
    open: list[IncidentResponse] = Field(description="Open and acknowledged, oldest first.")
    recent: list[IncidentResponse] = Field(description="Resolved, newest first.")


def _lockdown_answer(site: Site, lockdown: control.SiteLockdown, now: datetime) -> dict[str, Any]:
    conditions = lockdown.conditions
    manual = None
    if conditions.source is LevelSource.MANUAL and lockdown.manual_level is not None:
        manual = ManualLevel(
            level=lockdown.manual_level,
            until=lockdown.manual_until,
            reason=lockdown.manual_reason,
            by=lockdown.manual_by,
        )
    return {
        "site": site.name,
        "level": int(conditions.level),
        "description": conditions.level.description,
        "source": conditions.source.value,
        "uploads_paused": conditions.level >= LockdownLevel.UPLOADS_PAUSED,
        "automatic": AutomaticLevel(level=lockdown.automatic_level, cause=lockdown.automatic_cause),
        "manual": manual,
        "schedules": [
            ScheduleOut(
                name=schedule.name,
                start=schedule.start,
                end=schedule.end,
                minimum_level=int(schedule.minimum_level),
                hold_accounts_younger_than_days=schedule.hold_accounts_younger_than_days,
                rule_scale=schedule.rule_scale,
            )
            for schedule in conditions.schedules
        ],
        "rules": [
            RuleMeasure(
                signal=rule.signal.value,
                window_minutes=rule.window_minutes,
                level=int(rule.level),
                measured=measured,
                threshold=threshold,
                firing=measured >= threshold,
            )
            for rule, measured, threshold in lockdown.measures
        ],
        "checked_at": now,
    }


def _site(session: Session, principal: Principal, name: str | None) -> Site:
    """The key's own site, or (for an admin key) the one named."""
    if name is None or name == principal.site.name:
        site = session.get(Site, principal.site.id)
        if site is None:
            raise NotFound(f"no site named {principal.site.name!r}")
        return site
    if principal.role is not Role.ADMIN:
        raise Forbidden("only an admin key may act on another site")
    return get_site(session, name)


# --- lockdown ------------------------------------------------------------------------------------


def _change(
    request: Request,
    runtime: Runtime,
    principal: Principal,
    site_name: str | None,
    change: Callable[[Session, Site, datetime], bool],
) -> LockdownChange:
    """One change to a site's lockdown, in one transaction; the answer shows the state after."""
    now = runtime.clock.now()
    with runtime.database.write_session() as session:
        found = _site(session, principal, site_name)
        changed = change(session, found, now)
        lockdown = control.describe(session, runtime.settings, found, now)
        answer = LockdownChange(**_lockdown_answer(found, lockdown, now), changed=changed)
    wake_worker(request)
    return answer


@router.get("/lockdown", response_model=LockdownResponse, responses=_ERRORS)
def read_lockdown(
    principal: ScreenKey,
    runtime: RuntimeDep,
    site: Annotated[SiteName | None, Query(description="Another site (admin keys only).")] = None,
) -> LockdownResponse:
    """The site's level in force, where it comes from, and every rule's measure now."""
    now = runtime.clock.now()
    with runtime.database.session() as session:
        found = _site(session, principal, site)
        lockdown = control.describe(session, runtime.settings, found, now)
        return LockdownResponse(**_lockdown_answer(found, lockdown, now))


@router.put("/lockdown", response_model=LockdownChange, responses=_ERRORS)
def set_lockdown(
    body: LockdownSet, request: Request, principal: AdminKey, runtime: RuntimeDep
) -> LockdownChange:
    """Set a site's level by hand for a while; audited, and the site is told by webhook."""
    minutes = body.for_minutes or runtime.settings.lockdown.manual_default_hours * 60

    def set_by_hand(session: Session, found: Site, now: datetime) -> bool:
        return control.set_level(
            session,
            runtime.settings,
            found,
            body.level,
            until=now + timedelta(minutes=minutes),
            reason=body.reason,
            actor=principal.actor,
            now=now,
        )

    return _change(request, runtime, principal, body.site, set_by_hand)


@router.delete("/lockdown", response_model=LockdownChange, responses=_ERRORS)
def clear_lockdown(
    request: Request,
    principal: AdminKey,
    runtime: RuntimeDep,
    body: LockdownClear | None = None,
    reason: Annotated[
        str | None, Query(min_length=1, max_length=2000, pattern=NO_NUL, description="Why.")
    ] = None,
    site: Annotated[SiteName | None, Query(description="Default: the key's own site.")] = None,
) -> LockdownChange:
    """Back to normal: ends a level set by hand and the rules' level; signals counted so far no
    longer count. The reason comes in the JSON body or as the ``reason`` query parameter."""
    if body is not None and (reason is not None or site is not None):
        raise InvalidRequest("give the reason and site in the body or in the query, not both")
    why = body.reason if body is not None else (reason or "").strip()
    if not why:
        raise InvalidRequest("say why the lockdown is cleared: a 'reason' of 1-2000 characters")

    def clear(session: Session, found: Site, now: datetime) -> bool:
        return control.clear(
            session, runtime.settings, found, reason=why, actor=principal.actor, now=now
        )

    return _change(request, runtime, principal, body.site if body is not None else site, clear)


# --- incidents -----------------------------------------------------------------------------------


def _visible_site(principal: Principal) -> int | None:
    """Admin keys see every site's incidents; moderator keys only their own site's."""
    return None if principal.role is Role.ADMIN else principal.site.id


def _site_names(session: Session) -> dict[int, str]:
    return {site_id: name for site_id, name in session.execute(select(Site.id, Site.name))}


def _incident(session: Session, principal: Principal, incident_id: int) -> Incident:
    """The incident, if the key may see it; another site's is as unknown as a missing one."""
    incident = session.get(Incident, incident_id, with_for_update=True)
    visible = _visible_site(principal)
    if incident is None or (visible is not None and incident.site_id != visible):
        raise NotFound(f"no incident {incident_id}")
    return incident


@router.get("/incidents", response_model=IncidentList, responses=_ERRORS)
def list_incidents(
    principal: ModeratorKey,
    runtime: RuntimeDep,
    recent: Annotated[int, Query(ge=0, le=200, description="How many resolved ones.")] = 20,
) -> IncidentList:
    """Open incidents (acknowledged or not) and the most recently resolved ones."""
    visible = _visible_site(principal)
    with runtime.database.session() as session:
        names = _site_names(session)
        closed = select(Incident).where(Incident.resolved_at.is_not(None))
        if visible is not None:
            closed = closed.where(Incident.site_id == visible)
        resolved = session.scalars(closed.order_by(Incident.id.desc()).limit(recent)).all()
        return IncidentList(
            open=[
                IncidentResponse.of(incident, names.get(incident.site_id, ""))
                for incident in incidents.open_incidents(session, visible)
            ],
            recent=[
                IncidentResponse.of(incident, names.get(incident.site_id, ""))
                for incident in resolved
            ],
        )


@router.post(
    "/incidents/{incident_id}/acknowledge", response_model=IncidentResponse, responses=_ERRORS
)
def acknowledge_incident(
    incident_id: IncidentId, request: Request, principal: ModeratorKey, runtime: RuntimeDep
) -> IncidentResponse:
    """Someone is on it: no further tier is paged."""
    with runtime.database.write_session() as session:
        incident = _incident(session, principal, incident_id)
        if not incidents.acknowledge(
            session, runtime.settings.paging, incident, principal.actor, runtime.clock.now()
        ):
            raise incidents.already_settled(incident)
        answer = IncidentResponse.of(incident, _site_names(session).get(incident.site_id, ""))
    wake_worker(request)
    return answer


@router.post("/incidents/{incident_id}/resolve", response_model=IncidentResponse, responses=_ERRORS)
def resolve_incident(
    incident_id: IncidentId,
    request: Request,
    principal: ModeratorKey,
    runtime: RuntimeDep,
    body: ResolveRequest | None = None,
) -> IncidentResponse:
    """It is over: the incident closes, and a new trigger opens (and pages) a new one."""
    why = body.reason if body is not None and body.reason else "resolved by hand"
    with runtime.database.write_session() as session:
        incident = _incident(session, principal, incident_id)
        if not incidents.resolve(
            session,
            runtime.settings.paging,
            incident,
            principal.actor,
            runtime.clock.now(),
            why=why,
        ):
            raise incidents.already_settled(incident)
        answer = IncidentResponse.of(incident, _site_names(session).get(incident.site_id, ""))
    wake_worker(request)
    return answer
