"""Hash banks: create, list, change, and add or remove hashes."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from vigil.api.auth import AdminKey, ModeratorKey, RuntimeDep
from vigil.api.schemas import BankCreate, BankResponse, BankUpdate, ErrorResponse, ImportResponse
from vigil.errors import InvalidRequest
from vigil.matching import admin, importer
from vigil.store import banks as bank_store

router = APIRouter(prefix="/v1/banks", tags=["banks"])
_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse},
    409: {"model": ErrorResponse},
    422: {"model": ErrorResponse},
}


@router.post("", response_model=BankResponse, status_code=201, responses=_ERRORS)
def create_bank(
    body: BankCreate,
    principal: AdminKey,
    runtime: RuntimeDep,
) -> BankResponse:
    bank = admin.create_bank(
        runtime.database,
        runtime.settings.matching,
        name=body.name,
        hash_type=body.hash_type,
        action=body.action,
        threshold=body.threshold,
        enabled=body.enabled,
        description=body.description,
        actor=principal.actor,
    )
    return BankResponse.of(bank)


@router.get("", response_model=list[BankResponse])
def list_banks(
    _principal: ModeratorKey,
    runtime: RuntimeDep,
) -> list[BankResponse]:
    with runtime.database.session() as session:
        return [BankResponse.of(bank) for bank in bank_store.list_banks(session)]


@router.get("/{name}", response_model=BankResponse, responses=_ERRORS)
def read_bank(
    name: str,
    _principal: ModeratorKey,
    runtime: RuntimeDep,
) -> BankResponse:
    with runtime.database.session() as session:
        return BankResponse.of(bank_store.get_bank(session, name))


@router.patch("/{name}", response_model=BankResponse, responses=_ERRORS)
def update_bank(
    name: str,
    body: BankUpdate,
    principal: AdminKey,
    runtime: RuntimeDep,
) -> BankResponse:
    """Change a bank's action, threshold or enabled flag; matching follows at once."""
    bank = admin.update_bank(
        runtime.database,
        name,
        action=body.action,
        threshold=body.threshold,
        enabled=body.enabled,
        description=body.description,
        actor=principal.actor,
    )
    return BankResponse.of(bank)


@router.post(
    "/{name}/hashes",
    response_model=ImportResponse,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"schema": {"type": "array", "items": {"type": "string"}}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "column": {"type": "string"},
                        },
                        "required": ["file"],
                    }
                },
            }
        }
    },
)
async def add_hashes(
    name: str,
    request: Request,
    principal: AdminKey,
    runtime: RuntimeDep,
) -> ImportResponse:
    """Add hashes: a JSON list of strings, or a hash-list file as the multipart field ``file``
    (one hash per line, or CSV; see ``vigil bank import``). Bad entries are reported, not fatal."""
    content_type = request.headers.get("content-type", "")
    database = runtime.database
    if content_type.startswith("application/json"):
        try:
            values = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidRequest(f"the body is not valid JSON: {error}") from error
        if not isinstance(values, list):
            raise InvalidRequest("send a JSON list of hash strings")
        report = await run_in_threadpool(
            importer.import_values, database, name, values, actor=principal.actor
        )
    elif content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=2) as form:
            upload = form.get("file")
            column = form.get("column")
            if not isinstance(upload, UploadFile):
                raise InvalidRequest("send the hash list as the multipart field 'file'")
            report = await run_in_threadpool(
                importer.import_file,
                database,
                name,
                upload.file,
                actor=principal.actor,
                column=column if isinstance(column, str) and column else None,
                quality_floor=runtime.settings.matching.pdq_quality_floor,
            )
    else:
        raise InvalidRequest(
            "send application/json (a list of hashes) or multipart/form-data (a file)"
        )
    return ImportResponse.model_validate(report.as_dict())


@router.delete("/{name}/hashes/{value}", status_code=204, responses=_ERRORS)
def remove_hash(
    name: str,
    value: str,
    principal: AdminKey,
    runtime: RuntimeDep,
) -> Response:
    admin.remove_hash(runtime.database, name, value, actor=principal.actor)
    return Response(status_code=204)
