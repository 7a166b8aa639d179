"""The review app's plumbing: login cookies, CSRF checks, permissions and page rendering."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from vigil.api.auth import RuntimeDep, get_runtime
from vigil.config import ReviewSettings
from vigil.errors import Forbidden, VigilError
from vigil.review.accounts import Permission, UserRole
from vigil.runtime import Runtime
from vigil.store import users as user_store
from vigil.store.types import utcnow

SESSION_COOKIE = "vigil_session"
LOGIN_CSRF_COOKIE = "vigil_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PREFIX = "/review"
# Form and query text is stored or searched for; PostgreSQL refuses NUL, so it is bad input.
NO_NUL = r"^[^\x00]*$"
# Writing "last seen" on every request would make each page view a database write.
_SEEN_RESOLUTION = timedelta(minutes=1)

templates = Jinja2Templates(directory=str(resources.files("vigil.review") / "templates"))

# What a browser may do with our pages: nothing from elsewhere, no framing, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob:; script-src 'self'; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class LoginRequired(VigilError):
    """Handled by sending the browser to the login page."""

    code = "login_required"
    http_status = 401


class CsrfRefused(VigilError):
    code = "csrf_refused"
    http_status = 403


@dataclass(frozen=True)
class Reviewer:
    """The signed-in person, as every page and action sees them."""

    user_id: int
    name: str
    role: UserRole
    show_images: bool
    csrf_token: str

    @property
    def actor(self) -> str:
        """How this person appears in the audit log."""
        return f"user:{self.name}"

    def may(self, permission: Permission) -> bool:
        return self.role.may(permission)


def _signed_in(request: Request, runtime: Runtime) -> Reviewer:
    token = request.cookies.get(SESSION_COOKIE)
    if not token or len(token) > 200:
        raise LoginRequired("sign in first")
    settings = runtime.settings.review
    now = utcnow()
    with runtime.database.session() as session:
        found = user_store.find_login_session(session, token)
        if found is None:
            raise LoginRequired("sign in first")
        login, user = found
        idle_limit = login.last_seen_at + timedelta(minutes=settings.idle_minutes)
        ended = login.expires_at <= now or idle_limit <= now or user.disabled_at is not None
        reviewer = Reviewer(
            user.id, user.name, UserRole(user.role), user.show_images, login.csrf_token
        )
    if ended:
        with runtime.database.write_session() as session:
            user_store.end_login_session(session, token)
        raise LoginRequired("your session ended; sign in again")
    if now - login.last_seen_at >= _SEEN_RESOLUTION:
        # Its own short write (SQLite: write lock first), not an upgrade of the read above.
        with runtime.database.write_session() as session:
            user_store.touch_login_session(session, token, now)
    return reviewer


def require(permission: Permission) -> Callable[..., Awaitable[Reviewer]]:
    """A dependency: the signed-in reviewer, if their role has ``permission``; and for a form
    that changes something, only with the session's CSRF token."""

    async def check(request: Request, runtime: RuntimeDep) -> Reviewer:
        reviewer = _signed_in(request, runtime)
        if request.method not in ("GET", "HEAD"):
            await _check_csrf(request, reviewer.csrf_token)
        if not reviewer.may(permission):
            raise Forbidden(f"your role ({reviewer.role.value}) may not do this")
        return reviewer

    return check


async def _check_csrf(request: Request, expected: str) -> None:
    # SameSite cookies already stop most cross-site posts; the token stops the rest.
    supplied = request.headers.get(CSRF_HEADER)
    if supplied is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        supplied = value if isinstance(value, str) else None
    if not supplied or not secrets.compare_digest(supplied.encode(), expected.encode()):
        raise CsrfRefused("this form has expired or did not come from Vigil; reload and retry")


async def check_login_csrf(request: Request) -> None:
    """Before a session exists, the login form carries the value of a cookie it was served
    with (a double-submit token), so another site cannot sign a browser in."""
    expected = request.cookies.get(LOGIN_CSRF_COOKIE)
    if not expected:
        raise CsrfRefused("the sign-in form has expired; reload and retry")
    await _check_csrf(request, expected)


Viewer = Annotated[Reviewer, Depends(require(Permission.VIEW))]
Moderator = Annotated[Reviewer, Depends(require(Permission.REVIEW))]
ChildSafety = Annotated[Reviewer, Depends(require(Permission.CHILD_SAFETY))]


def set_cookie(
    response: Response, settings: ReviewSettings, name: str, value: str, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PREFIX,
        secure=settings.secure_cookies,
        httponly=True,
        samesite="strict",
    )


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any],
    *,
    reviewer: Reviewer | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    runtime = get_runtime(request)
    page: dict[str, Any] = {
        "reviewer": reviewer,
        "csrf_field": CSRF_FIELD,
        "prefix": PREFIX,
        "Permission": Permission,
        **context,
    }
    if reviewer is not None:
        page.update(exposure_context(runtime, reviewer))
    return templates.TemplateResponse(request, template, page, status_code=status_code)


def exposure_context(runtime: Runtime, reviewer: Reviewer) -> dict[str, Any]:
    """This shift's count of revealed images, and whether to suggest a break."""
    settings = runtime.settings.review
    since = utcnow() - timedelta(hours=settings.shift_hours)
    with runtime.database.session() as session:
        revealed = user_store.count_exposures(session, reviewer.user_id, since)
    return {
        "revealed": revealed,
        "soft_limit": settings.exposure_soft_limit,
        "suggest_break": revealed >= settings.exposure_soft_limit,
    }


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    if request.method != "GET":
        target = PREFIX + "/queue"
    return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)


def safe_next(target: str | None) -> str:
    """Only a path inside the app: never another site (an open redirect)."""
    if not target or not target.startswith(PREFIX + "/") or "\\" in target or "://" in target:
        return PREFIX + "/queue"
    return target


def age_text(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    if seconds < 90:
        return f"{seconds}s"
    if seconds < 90 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d"


templates.env.filters["age"] = lambda then: age_text(then, utcnow())
