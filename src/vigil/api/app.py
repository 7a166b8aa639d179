"""The FastAPI application: routes, error handling, body limits, and the embedded worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from vigil import __version__, review
from vigil.actions.incidents import SYSTEM_ACTOR
from vigil.api.errors import install_error_handlers
from vigil.api.limits import BodySizeLimit
from vigil.api.routes import banks, health, lockdown, reports, screen, sites, submissions
from vigil.errors import EvidenceKeyError
from vigil.evidence.adopt import adopt_plain_copies
from vigil.evidence.retention import PurgeJob
from vigil.lockdown.monitor import LockdownMonitor
from vigil.runtime import Runtime
from vigil.workers.authority_reports import CyberTiplineSender
from vigil.workers.embedded import EmbeddedWorker
from vigil.workers.pages import PageDeliverer
from vigil.workers.webhooks import WebhookDeliverer

# Multipart framing and the form fields around an image (context; a report).
log = logging.getLogger(__name__)

_FORM_OVERHEAD_BYTES = 1024 * 1024
_DEFAULT_BODY_LIMIT = 1024 * 1024


def create_app(runtime: Runtime) -> FastAPI:
    settings = runtime.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime.matcher.refresh()  # load the index before the first upload, not during it
        # Models load now; one that cannot is logged with what to do, and /readyz reports it.
        await anyio.to_thread.run_sync(runtime.classifiers.load)
        await anyio.to_thread.run_sync(_open_vault, runtime)
        worker = None
        if settings.workers.embedded:
            deliverer = WebhookDeliverer(runtime.database, settings.webhooks, runtime.metrics)
            pager = PageDeliverer(runtime.database, settings, runtime.clock, runtime.metrics)
            monitor = LockdownMonitor(runtime.database, settings, runtime.clock)
            purger = PurgeJob(runtime.database, runtime.vault, settings, runtime.clock)
            ncmec = (
                CyberTiplineSender(runtime.database, settings, runtime.vault, runtime.clock)
                if settings.evidence.ncmec.enabled
                else None
            )
            worker = EmbeddedWorker(
                [
                    deliverer.deliver_due,
                    pager.deliver_due,
                    monitor.tick_if_due,
                    purger.run_if_due,
                    *([ncmec.send_due] if ncmec is not None else []),
                ],
                settings.webhooks.poll_seconds,
            )
            worker.start()
        app.state.worker = worker
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
                deliverer.close()
                pager.close()
                if ncmec is not None:
                    ncmec.close()

    app = FastAPI(
        title="Vigil",
        version=__version__,
        description=(
            "Screens every uploaded image before it is published. Call `POST /v1/screen` with "
            "each upload and publish only on `allow`."
        ),
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.worker = None
    install_error_handlers(app, review.error_page)

    def body_limit(path: str) -> int:
        if path in ("/v1/screen", "/v1/reports"):
            return settings.intake.max_bytes + _FORM_OVERHEAD_BYTES
        if path.startswith("/v1/banks/") and path.endswith("/hashes"):
            return settings.matching.max_import_bytes
        return _DEFAULT_BODY_LIMIT

    app.add_middleware(BodySizeLimit, limit_for=body_limit)
    for module in (screen, reports, submissions, banks, sites, lockdown, health):
        app.include_router(module.router)
    review.install(app)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(review.PREFIX)

    return app


def _open_vault(runtime: Runtime) -> None:
    """Load (or, on a fresh install, make) the evidence master key now, so a misconfigured key is
    in the log at start-up rather than found at the first known illegal image."""
    try:
        key_id = runtime.vault.keyring.current.id
    except EvidenceKeyError as error:
        log.error(
            "the evidence vault has no usable master key (%s): known illegal images will be "
            "answered 503 until it is fixed",
            error.message,
        )
    else:
        log.info("evidence vault ready (master key %s)", key_id)
        adopt_plain_copies(
            runtime.database, runtime.vault, runtime.images, runtime.clock, actor=SYSTEM_ACTOR
        )
