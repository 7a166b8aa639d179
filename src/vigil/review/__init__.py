"""The moderators' web app at ``/review``: server-rendered pages from the same process as the
API, with their scripts and styles shipped in the package (nothing is loaded from elsewhere)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vigil.review import evidence, lockdown, login, pages
from vigil.review.web import PREFIX, SECURITY_HEADERS, LoginRequired, login_redirect, render

__all__ = ["PREFIX", "error_page", "install"]


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every response under ``/review``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Every header a response has not set itself (static files set their caching).
                present = {name for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI) -> None:
    app.mount(
        f"{PREFIX}/static",
        StaticFiles(directory=str(resources.files("vigil.review") / "static")),
        name="review-static",
    )
    app.include_router(login.router)
    app.include_router(pages.router)
    app.include_router(lockdown.router)
    app.include_router(evidence.router)
    app.add_middleware(_SecurityHeaders)


def error_page(request: Request, status: int, code: str, message: str) -> Response | None:
    """An HTML answer for errors on the review app's pages (the API's stay JSON)."""
    if not request.url.path.startswith(PREFIX):
        return None
    if code == LoginRequired.code:
        if request.headers.get("x-requested-with") == "fetch":
            return Response(message, status_code=401, media_type="text/plain")
        return login_redirect(request)
    if request.headers.get("x-requested-with") == "fetch":
        return Response(message, status_code=status, media_type="text/plain")
    return render(request, "error.html", {"status": status, "message": message}, status_code=status)
