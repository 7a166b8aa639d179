"""Signing in and out, and a reviewer's own preferences."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from vigil.api.auth import RuntimeDep
from vigil.errors import Unauthenticated
from vigil.review.accounts import MAX_PASSWORD_LENGTH, log_in
from vigil.review.web import (
    LOGIN_CSRF_COOKIE,
    NO_NUL,
    PREFIX,
    SESSION_COOKIE,
    Viewer,
    check_login_csrf,
    render,
    safe_next,
    set_cookie,
)
from vigil.store import audit
from vigil.store import users as user_store
from vigil.store.types import utcnow

router = APIRouter(prefix=PREFIX, include_in_schema=False)

_LOGIN_FORM_SECONDS = 3600


def _login_page(
    request: Request, next_page: str, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        {"login_csrf": token, "next": safe_next(next_page), "error": error},
        status_code=status_code,
    )
    settings = request.app.state.runtime.settings.review
    set_cookie(response, settings, LOGIN_CSRF_COOKIE, token, _LOGIN_FORM_SECONDS)
    return response


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return _login_page(request, next or "")


@router.post("/login", dependencies=[Depends(check_login_csrf)])
def login(
    request: Request,
    runtime: RuntimeDep,
    name: Annotated[str, Form(max_length=100, pattern=NO_NUL)],
    password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH, pattern=NO_NUL)],
    code: Annotated[str, Form(max_length=20, pattern=NO_NUL)] = "",
    next: Annotated[str, Form(max_length=2000, pattern=NO_NUL)] = "",
) -> Response:
    refused: Unauthenticated | None = None
    with runtime.database.write_session() as session:
        try:
            result = log_in(session, runtime.settings.review, name, password, code, utcnow())
        except Unauthenticated as error:
            refused = error  # the failure count must be committed, so it is not re-raised here
    if refused is not None:
        return _login_page(request, next, refused.message, status_code=401)
    response = RedirectResponse(safe_next(next), status_code=303)
    max_age = int((result.expires_at - utcnow()).total_seconds())
    set_cookie(response, runtime.settings.review, SESSION_COOKIE, result.token, max_age)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
def logout(request: Request, reviewer: Viewer, runtime: RuntimeDep) -> Response:
    token = request.cookies.get(SESSION_COOKIE, "")
    with runtime.database.session() as session:
        user_store.end_login_session(session, token)
        audit.append(session, reviewer.actor, "user.logout", reviewer.name, {})
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=PREFIX)
    return response


@router.post("/preferences")
def preferences(
    reviewer: Viewer,
    runtime: RuntimeDep,
    show_images: Annotated[bool, Form()] = False,
    back: Annotated[str, Form(max_length=2000, pattern=NO_NUL)] = "",
) -> Response:
    """The "no images" mode: only signals and metadata, no pictures at all."""
    with runtime.database.session() as session:
        user = user_store.get_user(session, reviewer.name)
        user.show_images = show_images
        audit.append(
            session, reviewer.actor, "user.preferences", reviewer.name, {"show_images": show_images}
        )
    return RedirectResponse(safe_next(back), status_code=303)
