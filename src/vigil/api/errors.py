"""Every error becomes ``{"error": {"code", "message"}}`` with the right status, never a trace."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from vigil.errors import Unauthenticated, VigilError

# An HTML error page for a request the review app serves; None for the API's JSON.
PageErrors = Callable[[Request, int, str, str], Response | None]

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, **extra: object) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == Unauthenticated.http_status else None
    return JSONResponse(
        {"error": {"code": code, "message": message, **extra}}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI, pages: PageErrors | None = None) -> None:
    def respond(
        request: Request, status: int, code: str, message: str, **extra: object
    ) -> Response:
        page = pages(request, status, code, message) if pages is not None else None
        return page if page is not None else error_response(status, code, message, **extra)

    @app.exception_handler(VigilError)
    async def _vigil_error(request: Request, error: VigilError) -> Response:
        return respond(request, error.http_status, error.code, error.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, error: RequestValidationError) -> Response:
        problems = [
            {
                "field": ".".join(str(part) for part in problem.get("loc", ())),
                "message": problem.get("msg", ""),
            }
            for problem in error.errors()
        ]
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "invalid request"
        return respond(request, 422, "invalid_request", summary, problems=problems)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> Response:
        return respond(request, error.status_code, "http_error", str(error.detail))

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, error: SQLAlchemyError) -> Response:
        log.error("database error: %s", error)
        return respond(
            request, 503, "database_unavailable", "the database is unavailable; retry later"
        )
