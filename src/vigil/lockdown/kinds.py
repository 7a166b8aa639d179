"""The vocabulary of lockdown: levels and the signals that raise them (no imports, so the
settings can use it)."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class LockdownLevel(IntEnum):
    NORMAL = 0
    # Images from new or low-trust accounts are held for review.
    NEW_ACCOUNTS_HELD = 1
    # Every image is held: full pre-moderation.
    ALL_HELD = 2
    # Image uploads are refused with an "uploads paused" decision the site can show.
    UPLOADS_PAUSED = 3

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    LockdownLevel.NORMAL: "normal screening",
    LockdownLevel.NEW_ACCOUNTS_HELD: "images from new or low-trust accounts are held",
    LockdownLevel.ALL_HELD: "every image is held for review",
    LockdownLevel.UPLOADS_PAUSED: "image uploads are paused",
}


class SignalKind(StrEnum):
    """What a lockdown rule can measure over its window."""

    BANK_MATCH = "bank_match"  # uploads that matched a block or hold bank
    CLASSIFIER_HOLD = "classifier_hold"  # uploads a model held
    CLASSIFIER_BLOCK = "classifier_block"  # uploads a model blocked (pending review)
    REPORT = "report"  # community reports, weighted by the reporter's trust
    NEW_ACCOUNT_UPLOAD = "new_account_upload"  # uploads from new or low-trust accounts
    UPLOADER_RATE = "uploader_rate"  # the most uploads by any one uploader
    NEAR_DUPLICATES = "near_duplicates"  # most accounts posting near-identical images
