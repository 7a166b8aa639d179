"""Liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from vigil.api.auth import RuntimeDep
from vigil.errors import VigilError

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive")
def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz", summary="The database is reachable and the hash index is loaded")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    try:
        runtime.database.ping()
        index = runtime.matcher.refresh()
    except VigilError as error:
        return JSONResponse({"status": "unavailable", "error": error.message}, status_code=503)
    except Exception as error:
        return JSONResponse(
            {"status": "unavailable", "error": type(error).__name__}, status_code=503
        )
    return JSONResponse(
        {
            "status": "ready",
            "database": "ok",
            "pdq_index": {"hashes": len(index), "generation": index.generation},
        }
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)
