"""Liveness, readiness and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigil.api.auth import RuntimeDep
from vigil.errors import EvidenceKeyError, VigilError

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/readyz",
    summary="The database is reachable, the hash index and every configured model are loaded",
)
def readyz(runtime: RuntimeDep) -> JSONResponse:
    models = runtime.classifiers.status()
    classifiers = {model.name: model.as_dict() for model in models}
    try:
        runtime.database.ping()
        index = runtime.matcher.refresh()
        # Without its master key the vault cannot seal a known illegal image: those get 503.
        master_key = runtime.vault.keyring.current.id
    except EvidenceKeyError as error:
        return _unavailable(f"evidence vault: {error.message}", classifiers)
    except VigilError as error:
        return _unavailable(error.message, classifiers)
    except Exception as error:
        return _unavailable(type(error).__name__, classifiers)
    missing = [model.name for model in models if not model.loaded]
    if missing:
        # Screening still answers, but holds every image: the site should know why.
        return _unavailable(f"models not loaded: {', '.join(missing)}", classifiers)
    return JSONResponse(
        {
            "status": "ready",
            "database": "ok",
            "pdq_index": {"hashes": len(index), "generation": index.generation},
            "evidence_vault": {"master_key_id": master_key},
            "classifiers": classifiers,
        }
    )


def _unavailable(error: str, classifiers: dict[str, dict[str, Any]]) -> JSONResponse:
    return JSONResponse(
        {"status": "unavailable", "error": error, "classifiers": classifiers}, status_code=503
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
