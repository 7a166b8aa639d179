"""What the site tells Vigil about who uploaded an image."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class TrustLevel(StrEnum):
    NEW = "new"
    BASIC = "basic"
    TRUSTED = "trusted"
    STAFF = "staff"


class UploadKind(StrEnum):
    POST = "post"
    AVATAR = "avatar"
    OTHER = "other"


@dataclass(frozen=True)
class UploaderContext:
    uploader_id: str | None = None
    account_created_at: datetime | None = None
    trust_level: TrustLevel | None = None
    ip: str | None = None
    kind: UploadKind | None = None
    ref: str | None = None
    # Kept only with an image Vigil keeps (held or blocked), for evidence and reports.
    port: int | None = None
    user_agent: str | None = None
    page_url: str | None = None
    account: dict[str, str] | None = None  # screen_name, email... (see AccountDetails)


# Fields of the context kept only with images Vigil keeps: an allowed upload's uploader is not
# someone Vigil needs to know more about.
EVIDENCE_ONLY_FIELDS = frozenset({"port", "user_agent", "page_url", "account"})
