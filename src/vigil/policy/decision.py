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


class Priority(StrEnum):
    """Where a submission waits in the review queue."""

    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"  # possible child sexual abuse: before anything else

    @property
    def rank(self) -> int:
        return _RANK[self]

    @classmethod
    def of_rank(cls, rank: int) -> Priority:
        return _BY_RANK[rank]


_RANK = {Priority.NORMAL: 0, Priority.HIGH: 1, Priority.URGENT: 2}
_BY_RANK = {rank: priority for priority, rank in _RANK.items()}

CHILD_SAFETY = "child_safety"  # a flag: the submission goes down the child-safety path


def for_child_safety(priority: Priority, flags: Iterable[str]) -> bool:
    """Whether an item may show a child, so only the child-safety team handles it."""
    return priority is Priority.URGENT or CHILD_SAFETY in flags


@dataclass(frozen=True)
class Reason:
    """Why a verdict was reached. ``verdict`` is what this reason alone asks for; an ``allow``
    reason only informs (for example, a match an allow-list suppressed)."""

    code: str
    verdict: Verdict
    message: str
    details: Mapping[str, Any] = field(default_factory=dict)
    # A block normally is final (a known image); one a model asked for waits for a moderator.
    review: bool | None = None
    priority: Priority = Priority.NORMAL
    flags: frozenset[str] = frozenset()

    @property
    def wants_review(self) -> bool:
        return self.review if self.review is not None else self.verdict is Verdict.HOLD

    def as_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "code": self.code,
            "verdict": self.verdict.value,
            "message": self.message,
            **self.details,
        }
        if self.priority is not Priority.NORMAL:
            record["priority"] = self.priority.value
        if self.flags:
            record["flags"] = sorted(self.flags)
        return record


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[Reason, ...]
    review: bool = False  # a moderator must look at it
    priority: Priority = Priority.NORMAL
    flags: frozenset[str] = frozenset()

    @classmethod
    def from_reasons(cls, reasons: Iterable[Reason]) -> Decision:
        """The strictest verdict any reason asks for; the reasons strictest first.

        The image goes to review only if every reason for that verdict asks for it: a block
        because the image is known illegal is never queued for a human to look at, even when a
        model also found it suspicious. Priority and flags come from every reason that holds or
        blocks.
        """
        ordered = tuple(sorted(reasons, key=lambda reason: -reason.verdict.severity))
        verdict = ordered[0].verdict if ordered else Verdict.ALLOW
        deciding = [reason for reason in ordered if reason.verdict is verdict]
        review = verdict is not Verdict.ALLOW and all(r.wants_review for r in deciding)
        acting = [reason for reason in ordered if reason.verdict is not Verdict.ALLOW]
        priority = max((r.priority for r in acting), key=lambda p: p.rank, default=Priority.NORMAL)
        flags = frozenset().union(*(reason.flags for reason in acting))
        return cls(verdict, ordered, review, priority, flags)
