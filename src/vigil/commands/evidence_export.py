"""``vigil evidence export`` and the NCA package. (Being written.)"""

from __future__ import annotations

from vigil.commands.evidence import evidence_app

__all__ = ["evidence_app"]
