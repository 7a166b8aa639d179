"""A site's own webhook endpoint."""

from __future__ import annotations

from fastapi import APIRouter

from vigil.api.auth import AdminKey, RuntimeDep
from vigil.api.schemas import WebhookResponse, WebhookUpdate
from vigil.store import audit, sites

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"])


@router.get("", response_model=WebhookResponse)
def read_webhook(
    principal: AdminKey,
    runtime: RuntimeDep,
) -> WebhookResponse:
    """Where this key's site receives decisions, and the secret that signs them."""
    with runtime.database.session() as session:
        site = sites.get_site(session, principal.site.name)
        return WebhookResponse(url=site.webhook_url, secret=site.webhook_secret)


@router.put("", response_model=WebhookResponse)
def set_webhook(
    body: WebhookUpdate,
    principal: AdminKey,
    runtime: RuntimeDep,
) -> WebhookResponse:
    """Send this key's site's decision webhooks to ``url`` (null: none)."""
    url = str(body.url) if body.url else None
    with runtime.database.write_session() as session:
        site = sites.get_site(session, principal.site.name)
        secret = sites.set_webhook(site, url, rotate_secret=body.rotate_secret)
        audit.append(
            session,
            principal.actor,
            "site.webhook",
            site.name,
            {"url": url, "rotated": body.rotate_secret},
        )
        return WebhookResponse(url=url, secret=secret)
