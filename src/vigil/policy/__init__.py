"""Policy: signals + uploader trust + site settings -> allow / hold / block, with reasons."""

from vigil.policy.decision import (
    CHILD_SAFETY,
    Decision,
    Priority,
    Reason,
    Verdict,
    for_child_safety,
)
from vigil.policy.rules import UPLOADS_PAUSED, ScreeningFacts, decide, is_low_trust, is_new_uploader
from vigil.policy.uploader import TrustLevel, UploaderContext, UploadKind

__all__ = [
    "CHILD_SAFETY",
    "UPLOADS_PAUSED",
    "Decision",
    "Priority",
    "Reason",
    "ScreeningFacts",
    "TrustLevel",
    "UploadKind",
    "UploaderContext",
    "Verdict",
    "decide",
    "for_child_safety",
    "is_low_trust",
    "is_new_uploader",
]
