"""POST /v1/reports: a site passes on a community member's report of an image."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from vigil.actions.reports import ReportOutcome, receive_report
from vigil.api.auth import RuntimeDep, ScreenKey, wake_worker
from vigil.api.routes.screen import parse_context
from vigil.api.schemas import ErrorResponse, ReportRequest, ReportResponse
from vigil.errors import InvalidRequest, VigilError
from vigil.intake import read_limited
from vigil.policy import UploaderContext
from vigil.runtime import Runtime
from vigil.store.sites import Principal

router = APIRouter(prefix="/v1", tags=["reports"])

JSON_TYPE, FORM_TYPE = "application/json", "multipart/form-data"
_FORM_FIELDS = frozenset({"report", "image", "context"})


class UnsupportedMediaType(VigilError):
    code = "unsupported_media_type"
    http_status = 415


def _inline_definitions(schema: dict[str, Any]) -> dict[str, Any]:
    """A model's JSON schema with its ``$defs`` written in place: an OpenAPI request body cannot
    refer to definitions of its own."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref", "")
            if reference.startswith("#/$defs/"):
                return resolve(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_REPORT_SCHEMA = _inline_definitions(ReportRequest.model_json_schema())
_REQUEST_BODY = {
    "required": True,
    "content": {
        JSON_TYPE: {"schema": _REPORT_SCHEMA},
        FORM_TYPE: {
            "schema": {
                "type": "object",
                "required": ["report", "image"],
                "properties": {
                    "report": {
                        "type": "string",
                        "description": "The report as a JSON object (submission_id optional).",
                    },
                    "image": {
                        "type": "string",
                        "format": "binary",
                        "description": "The reported file, as the member saw it.",
                    },
                    "context": {
                        "type": "string",
                        "description": "JSON object: who posted the image (as for /v1/screen), "
                        "used if Vigil never screened it.",
                    },
                },
            }
        },
    },
}
_ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "Malformed form, or an image Vigil does not accept.",
        401: "Missing or unknown API key.",
        404: "No such submission of this site.",
        413: "The request is over the size limit.",
        415: f"Neither {JSON_TYPE} nor {FORM_TYPE}.",
        422: "The report (or the context) is not valid.",
        503: "Vigil cannot record the report right now: retry.",
    }.items()
}


@router.post(
    "/reports",
    response_model=ReportResponse,
    responses=_ERRORS,
    openapi_extra={"requestBody": _REQUEST_BODY},
    summary="Pass on a community member's report of an image",
    description=(
        f"Send the report as a {JSON_TYPE} body naming the `submission_id`, or as {FORM_TYPE} "
        "with the report in the `report` field and the reported file in `image` (Vigil finds the "
        "submission by the file's SHA-256, or screens an image it never saw). Reports count by "
        "the member's trust, and each member once per image. When the reports on a published "
        "image reach the threshold, `hide_requested` is true: hide the image until the "
        "moderator's decision arrives by webhook."
    ),
)
async def pass_on_report(
    request: Request, principal: ScreenKey, runtime: RuntimeDep
) -> ReportResponse:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == JSON_TYPE:
        document = _parse_report(await request.body(), "body")
        if document.submission_id is None:
            raise _invalid(
                ("body", "submission_id"),
                "Field required (or send the image as multipart/form-data)",
            )
        outcome = await run_in_threadpool(
            _receive, runtime, principal, document, None, UploaderContext()
        )
    elif media_type == FORM_TYPE:
        _refuse_cut_off(await request.body(), request.headers["content-type"])
        async with request.form(max_files=1, max_fields=len(_FORM_FIELDS)) as form:
            document, uploader, upload = _read_form(form)
            outcome = await run_in_threadpool(
                _receive_upload, runtime, principal, document, upload, uploader
            )
    else:
        raise UnsupportedMediaType(
            f"send the report as {JSON_TYPE}, or as {FORM_TYPE} with the image; "
            f"got {media_type or 'no Content-Type'!r}"
        )
    if outcome.hide_requested or outcome.screened:
        # A webhook (or, for a newly screened image, a page) was written: deliver it now.
        wake_worker(request)
    return ReportResponse.of(outcome)


def _refuse_cut_off(body: bytes, content_type: str) -> None:
    """Refuse a multipart body without its closing boundary.

    The form parser keeps the parts that ended before the body did and drops the rest without a
    word, so a report whose image was cut off would otherwise count without its image.
    """
    _, parameters = parse_options_header(content_type)
    boundary = parameters.get(b"boundary")
    if not boundary:
        raise InvalidRequest(f"a {FORM_TYPE} request needs a boundary in its Content-Type")
    if body.rfind(b"--" + boundary + b"--") < 0:
        raise InvalidRequest(
            f"the {FORM_TYPE} body ends before its closing boundary: the request was cut off"
        )


def _read_form(form: FormData) -> tuple[ReportRequest, UploaderContext, UploadFile | None]:
    unknown = sorted(set(form.keys()) - _FORM_FIELDS)
    if unknown:
        raise InvalidRequest(
            f"unknown form field(s) {', '.join(unknown)}; send report, image and context"
        )
    fields = {name: form.getlist(name) for name in _FORM_FIELDS}
    repeated = sorted(name for name, values in fields.items() if len(values) > 1)
    if repeated:
        raise InvalidRequest(f"send each form field once: {', '.join(repeated)} repeated")
    raw_report, image, context = (
        next(iter(fields[name]), None) for name in ("report", "image", "context")
    )
    if not isinstance(raw_report, str):
        raise InvalidRequest("send the report as the form field 'report' (a JSON object)")
    if image is not None and not isinstance(image, UploadFile):
        raise InvalidRequest("send the image as a file in the form field 'image'")
    if context is not None and not isinstance(context, str):
        raise InvalidRequest("send the context as a text form field (a JSON object)")
    document = _parse_report(raw_report.encode(), "report")
    if image is None and document.submission_id is None:
        raise InvalidRequest(
            "send the reported image as the file field 'image', or name its submission_id"
        )
    return document, parse_context(context), image


def _parse_report(raw: bytes, where: str) -> ReportRequest:
    """The report document, or a 422 naming what is wrong with it."""
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as error:
        raise _invalid((where,), f"not valid JSON: {error.msg} at position {error.pos}") from error
    except (ValueError, RecursionError) as error:
        # Not UTF-8 text, or nested deeper than any report is.
        raise _invalid((where,), f"not valid JSON: {error}") from error
    if not isinstance(document, Mapping):
        raise _invalid((where,), "the report must be a JSON object")
    try:
        return ReportRequest.model_validate(document)
    except ValidationError as error:
        raise RequestValidationError(
            [{**problem, "loc": (where, *problem["loc"])} for problem in error.errors()]
        ) from error


def _invalid(location: tuple[str, ...], message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "value_error", "loc": location, "msg": message}])


def _receive(
    runtime: Runtime,
    principal: Principal,
    document: ReportRequest,
    image: bytes | None,
    uploader: UploaderContext,
) -> ReportOutcome:
    return receive_report(
        runtime.screening,
        principal.site,
        document.to_report(),
        submission_id=document.submission_id,
        image=image,
        uploader=uploader,
        actor=principal.actor,
    )


def _receive_upload(
    runtime: Runtime,
    principal: Principal,
    document: ReportRequest,
    upload: UploadFile | None,
    uploader: UploaderContext,
) -> ReportOutcome:
    data = None
    if upload is not None:
        data = read_limited(upload.file, runtime.settings.intake.max_bytes)
    return _receive(runtime, principal, document, data, uploader)
