"""Signals over time windows, kept in the database so every API process counts the same ones.

Each screening adds a row per thing it shows (an upload, a bank match, a model's hold...), each
report one row weighted by the reporter's trust. The rules measure them over sliding windows;
rows older than the longest window are pruned.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from vigil.config import LockdownSettings
from vigil.lockdown.kinds import SignalKind
from vigil.policy import Decision, Verdict
from vigil.store.models import SiteSignal

UPLOAD = "upload"  # every screened upload: what the uploader-rate and burst rules look at
_CLASSIFIER_CODES = frozenset({"classifier_label", "minor_risk"})


def kinds_of(decision: Decision) -> list[SignalKind]:
    """The signals a screening decision shows (beyond the upload itself)."""
    kinds: list[SignalKind] = []
    acting = [reason for reason in decision.reasons if reason.verdict is not Verdict.ALLOW]
    if any(reason.code == "bank_match" for reason in acting):
        kinds.append(SignalKind.BANK_MATCH)
    by_models = [reason for reason in acting if reason.code in _CLASSIFIER_CODES]
    if any(reason.verdict is Verdict.BLOCK for reason in by_models):
        kinds.append(SignalKind.CLASSIFIER_BLOCK)
    elif by_models:
        kinds.append(SignalKind.CLASSIFIER_HOLD)
    return kinds


def record_upload(
    session: Session,
    *,
    site_id: int,
    submission_id: str,
    uploader_id: str | None,
    pdq: str | None,
    decision: Decision,
    low_trust: bool,
    accounts: int,
    now: datetime,
) -> None:
    """Record what one screening shows, in the caller's transaction; ``accounts`` is what
    :func:`near_duplicate_accounts` counted before it."""
    base = {
        "site_id": site_id,
        "at": now,
        "uploader_id": uploader_id,
        "submission_id": submission_id,
    }
    rows = [SiteSignal(kind=UPLOAD, pdq=pdq, value=1.0, **base)]
    rows.extend(SiteSignal(kind=kind.value, value=1.0, **base) for kind in kinds_of(decision))
    if low_trust:
        rows.append(SiteSignal(kind=SignalKind.NEW_ACCOUNT_UPLOAD.value, value=1.0, **base))
    if accounts > 1:
        rows.append(
            SiteSignal(kind=SignalKind.NEAR_DUPLICATES.value, value=float(accounts), **base)
        )
    session.add_all(rows)


def near_duplicate_accounts(
    session: Session,
    settings: LockdownSettings,
    *,
    site_id: int,
    uploader_id: str | None,
    pdq: str | None,
    now: datetime,
) -> int:
    """How many accounts (this one included) posted a near-identical image within the window:
    1 when nobody else did.

    Read in a transaction of its own, before the screening's writes: on SQLite a write
    transaction holds the database's one write lock, and this read (thousands of rows, compared
    in NumPy) would keep every concurrent screening waiting for it.
    """
    if pdq is None or uploader_id is None:
        return 1
    return 1 + _other_accounts_posting(session, settings, site_id, uploader_id, pdq, now)


def record_report(
    session: Session,
    *,
    site_id: int,
    submission_id: str,
    uploader_id: str | None,
    weight: float,
    now: datetime,
) -> None:
    session.add(
        SiteSignal(
            site_id=site_id,
            kind=SignalKind.REPORT.value,
            at=now,
            uploader_id=uploader_id,
            submission_id=submission_id,
            value=weight,
        )
    )


def recent_uploads(
    settings: LockdownSettings, site_id: int, uploader_id: str, now: datetime
) -> Select[str | None, str | None]:
    """Other accounts' uploads in the near-duplicate window, newest first, up to the cap."""
    since = now - timedelta(minutes=settings.near_duplicate_window_minutes)
    return (
        select(SiteSignal.uploader_id, SiteSignal.pdq)
        .where(
            SiteSignal.site_id == site_id,
            SiteSignal.kind == UPLOAD,
            SiteSignal.at >= since,
            SiteSignal.pdq.is_not(None),
            SiteSignal.uploader_id.is_not(None),
            SiteSignal.uploader_id != uploader_id,
        )
        .order_by(SiteSignal.at.desc())
        .limit(settings.near_duplicate_max_compared)
    )


def _other_accounts_posting(
    session: Session,
    settings: LockdownSettings,
    site_id: int,
    uploader_id: str,
    pdq: str,
    now: datetime,
) -> int:
    """Other accounts that posted an image within PDQ distance of this one, recently."""
    recent = session.execute(recent_uploads(settings, site_id, uploader_id, now)).all()
    if not recent:
        return 0
    # 256-bit hashes as four 64-bit words: XOR, then count the differing bits per word.
    hashes = np.frombuffer(bytes.fromhex("".join(row.pdq for row in recent)), dtype=np.uint64)
    query = np.frombuffer(bytes.fromhex(pdq), dtype=np.uint64)
    distances = np.bitwise_count(np.bitwise_xor(hashes.reshape(-1, 4), query)).sum(axis=1)
    close = np.flatnonzero(distances <= settings.near_duplicate_distance)
    return len({recent[int(index)].uploader_id for index in close})


def measure(session: Session, site_id: int, signal: SignalKind, since: datetime) -> float:
    """The signal's measure since ``since``: a count, a weight, or the largest burst."""
    recent = (SiteSignal.site_id == site_id, SiteSignal.at >= since)
    if signal is SignalKind.UPLOADER_RATE:
        per_uploader = (
            select(func.count().label("uploads"))
            .where(*recent, SiteSignal.kind == UPLOAD, SiteSignal.uploader_id.is_not(None))
            .group_by(SiteSignal.uploader_id)
            .subquery()
        )
        return float(session.scalar(select(func.max(per_uploader.c.uploads))) or 0)
    of_kind = (*recent, SiteSignal.kind == signal.value)
    if signal is SignalKind.NEAR_DUPLICATES:
        return float(session.scalar(select(func.max(SiteSignal.value)).where(*of_kind)) or 0)
    if signal is SignalKind.REPORT:
        return float(session.scalar(select(func.sum(SiteSignal.value)).where(*of_kind)) or 0)
    return float(session.scalar(select(func.count()).where(*of_kind)) or 0)


def any_before(session: Session, before: datetime) -> bool:
    return session.scalar(select(SiteSignal.id).where(SiteSignal.at < before).limit(1)) is not None


def prune(session: Session, before: datetime) -> int:
    """Forget signals no window reaches any more; returns how many."""
    result = session.execute(delete(SiteSignal).where(SiteSignal.at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
