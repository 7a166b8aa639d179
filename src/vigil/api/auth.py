"""API keys: ``Authorization: Bearer <key>``, checked against stored hashes and roles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import SQLAlchemyError

from vigil.errors import Forbidden, ScreeningUnavailable, Unauthenticated
from vigil.runtime import Runtime
from vigil.store.sites import Principal, Role, SiteRef, find_api_key

_bearer = HTTPBearer(auto_error=False, description="An API key created with `vigil key create`.")


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def wake_worker(request: Request) -> None:
    """Something to deliver was just written (a webhook, a page, a report): the embedded worker
    sends it now rather than at its next poll."""
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake()


def require(role: Role) -> Callable[..., Principal]:
    """A dependency admitting keys whose role includes ``role``."""

    def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        runtime: RuntimeDep,
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
        try:
            with runtime.database.session() as session:
                found = find_api_key(session, credentials.credentials)
        except SQLAlchemyError as error:
            raise ScreeningUnavailable("the database is unavailable") from error
        if found is None:
            raise Unauthenticated("unknown or revoked API key")
        key, site = found
        principal = Principal(key.prefix, Role(key.role), SiteRef(site.id, site.name))
        if not principal.role.allows(role):
            raise Forbidden(f"this needs a key with the {role.value!r} role or higher")
        return principal

    return check


# Route parameters: the caller, admitted only with at least this role.
ScreenKey = Annotated[Principal, Depends(require(Role.SCREEN))]
ModeratorKey = Annotated[Principal, Depends(require(Role.MODERATOR))]
AdminKey = Annotated[Principal, Depends(require(Role.ADMIN))]
