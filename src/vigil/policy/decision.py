"""Decisions and the reasons for them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    ALLOW = "allow"
    HOLD = "hold"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Verdict.ALLOW: 0, Verdict.HOLD: 1, Verdict.BLOCK: 2}


@dataclass(frozen=True)
class Reason:
    """Why a verdict was reached. ``verdict`` is what this reason alone asks for; an ``allow``
    reason only informs (for example, a match an allow-list suppressed)."""

    code: str
    verdict: Verdict
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "verdict": self.verdict.value,
            "message": self.message,
            **self.details,
        }


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[Reason, ...]

    @classmethod
    def from_reasons(cls, reasons: Iterable[Reason]) -> Decision:
        """The strictest verdict any reason asks for; the reasons strictest first."""
        ordered = tuple(sorted(reasons, key=lambda reason: -reason.verdict.severity))
        verdict = ordered[0].verdict if ordered else Verdict.ALLOW
        return cls(verdict, ordered)
