"""POST /v1/screen: the call a site makes before publishing an image."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Request, Response, UploadFile
from pydantic import ValidationError

from vigil.api.auth import RuntimeDep, ScreenKey, wake_worker
from vigil.api.schemas import ErrorResponse, ScreenResponse, UploadContext
from vigil.errors import InvalidContext, InvalidRequest
from vigil.intake import read_limited
from vigil.policy import UploaderContext

router = APIRouter(prefix="/v1", tags=["screening"])

_MAX_IDEMPOTENCY_KEY = 200
_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Not an image Vigil accepts (format, corrupt, polyglot, too many pixels).",
        401: "Missing or unknown API key.",
        409: "The Idempotency-Key was used for a different image.",
        413: "The image is over the size limit.",
        422: "The context is not valid.",
        503: "Vigil cannot screen right now: hold the image and retry.",
    }.items()
}


@router.post(
    "/screen",
    response_model=ScreenResponse,
    responses=_ERRORS,
    summary="Screen an image before publishing it",
    description=(
        "Publish the image only if `decision` is `allow`. `hold`: keep it unpublished; a webhook "
        "reports the moderator's decision. `block`: never publish it."
    ),
)
def screen(
    request: Request,
    response: Response,
    principal: ScreenKey,
    runtime: RuntimeDep,
    image: Annotated[UploadFile | None, File(description="The uploaded file, unchanged.")] = None,
    context: Annotated[
        str | None,
        Form(
            description="JSON object: uploader_id, account_created_at, trust_level, ip, port, "
            "user_agent, kind, ref, page_url, account {screen_name, email...}."
        ),
    ] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> ScreenResponse:
    if image is None:
        raise InvalidRequest("send the image as the multipart/form-data field 'image'")
    uploader = parse_context(context)
    if idempotency_key is not None and not _valid_idempotency_key(idempotency_key):
        raise InvalidRequest(
            f"Idempotency-Key is 1-{_MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )
    data = read_limited(image.file, runtime.settings.intake.max_bytes)
    outcome = runtime.screening.screen(
        principal.site, data, uploader, idempotency_key=idempotency_key, actor=principal.actor
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if outcome.submission.decision != "allow":
        # A page or a webhook may have been written: deliver it now, not at the next poll.
        wake_worker(request)
    return ScreenResponse.screened(
        outcome.submission,
        lockdown_level=int(outcome.conditions.level),
        uploader_suspended=outcome.uploader_suspended,
    )


def parse_context(raw: str | None) -> UploaderContext:
    if raw is None or not raw.strip():
        return UploaderContext()
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise InvalidContext(
            f"context is not valid JSON: {error.msg} at position {error.pos}"
        ) from error
    if not isinstance(document, dict):
        raise InvalidContext("context must be a JSON object")
    try:
        return UploadContext.model_validate(document).to_uploader()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'context'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise InvalidContext(f"context is not valid: {problems}") from error


def _valid_idempotency_key(key: str) -> bool:
    return 0 < len(key) <= _MAX_IDEMPOTENCY_KEY and key.isascii() and key.isprintable()
