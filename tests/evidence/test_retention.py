"""Retention: the purge removes only items whose time ran out and that no legal hold keeps,
crypto-shreds them, keeps their hashes, and says so in the custody and audit logs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.evidence.conftest import VaultSite, open_vault_site
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.evidence import custody
from vigil.evidence.reports import Authority, ReportStatus, create_report
from vigil.evidence.retention import (
    PurgeJob,
    PurgeResult,
    active_holds,
    held_item_ids,
    hold_items,
    place_hold,
    purge_expired,
    release_hold,
)
from vigil.evidence.verify import verify_vault
from vigil.store.models import AuditEvent, AuthorityReport, EvidenceItem
from vigil.store.sites import get_or_create_site


def _hold(site: VaultSite, *items: EvidenceItem, case: str = "Op Lantern") -> int:
    with site.runtime.database.write_session() as session:
        hold = place_hold(
            session,
            site_id=site.site.id,
            case_name=case,
            reason="police asked us to keep it",
            item_ids=[item.id for item in items],
            actor="cli:ann",
            now=site.clock.now(),
        )
        return hold.id


def _release(site: VaultSite, hold_id: int) -> None:
    with site.runtime.database.write_session() as session:
        release_hold(session, hold_id, reason="case closed", actor="cli:ann", now=site.clock.now())


def _purge(site: VaultSite, *, dry_run: bool = False, limit: int = 500) -> PurgeResult:
    with site.runtime.database.write_session() as session:
        return purge_expired(
            session,
            site.runtime.vault,
            now=site.clock.now(),
            actor="vigil",
            dry_run=dry_run,
            limit=limit,
        )


def _row(site: VaultSite, item: EvidenceItem) -> EvidenceItem:
    with site.runtime.database.session() as session:
        row = session.get(EvidenceItem, item.id)
        assert row is not None
        return row


def _file_exists(site: VaultSite, item: EvidenceItem) -> bool:
    assert item.file_path is not None, "the item as preserved, before any purge"
    return site.runtime.vault.files.exists(item.file_path)


def _actions(site: VaultSite, item: EvidenceItem) -> list[str]:
    with site.runtime.database.session() as session:
        return [entry.action for entry in custody.entries_for(session, item.id)]


def test_purge_deletes_only_expired_unheld_items(vault_site: VaultSite) -> None:
    expired = vault_site.preserve(1, "attacker-1")
    held = vault_site.preserve(2, "attacker-1")
    vault_site.clock.advance(days=10)
    younger = vault_site.preserve(3, "attacker-2")
    _hold(vault_site, held)
    vault_site.clock.advance(days=355)  # the first two expire exactly now

    result = _purge(vault_site)

    assert result == PurgeResult(purged=[expired.id], kept_on_hold=[held.id])
    assert [_row(vault_site, item).purged_at is not None for item in (expired, held, younger)] == [
        True,
        False,
        False,
    ]
    assert [_file_exists(vault_site, item) for item in (expired, held, younger)] == [
        False,
        True,
        True,
    ]
    assert _purge(vault_site) == PurgeResult(purged=[], kept_on_hold=[held.id])


def test_a_purged_item_has_no_file_no_key_and_no_personal_data_but_keeps_its_hashes(
    vault_site: VaultSite,
) -> None:
    item = vault_site.preserve(1)
    vault_site.clock.advance(days=365)

    _purge(vault_site)

    row = _row(vault_site, item)
    assert (row.file_path, row.key_id, row.wrapped_key) == (None, None, None)
    assert (row.capture, row.exif) == ({}, {})
    assert row.purged_at == vault_site.clock.now()
    assert (row.sha256, row.md5, row.pdq) == (item.sha256, item.md5, item.pdq)
    assert not _file_exists(vault_site, item)
    with vault_site.runtime.database.session() as session:
        purged_entry = custody.entries_for(session, item.id)[-1]
        audit_events = list(
            session.scalars(select(AuditEvent).where(AuditEvent.action == "evidence.purged"))
        )
        report = verify_vault(session, vault_site.runtime.vault, decrypt=True)
    assert (purged_entry.action, purged_entry.actor) == ("purged", "vigil")
    assert purged_entry.details == {
        "retain_until": item.retain_until.isoformat(),
        "key_id": item.key_id,
        "file_deleted": True,
    }
    assert [event.details["items"] for event in audit_events] == [[item.id]]
    assert report.ok, report.problems
    assert report.orphans == []


def test_a_hold_keeps_an_expired_item_until_it_is_released(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)
    hold_id = _hold(vault_site, item)
    vault_site.clock.advance(days=730)

    assert _purge(vault_site) == PurgeResult(purged=[], kept_on_hold=[item.id])
    _release(vault_site, hold_id)
    assert _purge(vault_site) == PurgeResult(purged=[item.id], kept_on_hold=[])

    assert _actions(vault_site, item) == ["stored", "hold_placed", "hold_released", "purged"]


def test_an_item_in_two_holds_stays_held_until_both_are_released(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)
    first = _hold(vault_site, item, case="first case")
    second = _hold(vault_site, item, case="second case")
    vault_site.clock.advance(days=365)

    _release(vault_site, first)

    with vault_site.runtime.database.session() as session:
        assert [hold.id for hold in active_holds(session)] == [second]
        assert [hold.id for hold in active_holds(session, site_id=vault_site.site.id + 1)] == []
        assert [held.id for held in hold_items(session, first)] == [item.id]
        assert held_item_ids(session, [item.id, "no-such-item"]) == {item.id}
    assert _purge(vault_site).purged == []
    _release(vault_site, second)
    assert _purge(vault_site).purged == [item.id]


def test_held_items_do_not_crowd_expired_ones_out_of_a_batch(vault_site: VaultSite) -> None:
    held = [vault_site.preserve(seed) for seed in (1, 2)]
    _hold(vault_site, *held)
    vault_site.clock.advance(days=1)
    free = vault_site.preserve(3)
    vault_site.clock.advance(days=365)

    assert _purge(vault_site, limit=1).purged == [free.id]


def _report(site: VaultSite, item: EvidenceItem, status: ReportStatus) -> int:
    with site.runtime.database.write_session() as session:
        report = create_report(
            session,
            authority=Authority.NCMEC,
            site_id=item.site_id,
            uploader_id=item.uploader_id,
            items=[item],
            payload="<report/>",
            status=status,
            actor="test",
            now=site.clock.now(),
        )
        return report.id


def test_an_item_a_pending_report_has_yet_to_send_is_kept_until_it_is_sent(
    vault_site: VaultSite,
) -> None:
    waiting = vault_site.preserve(1, "attacker-1")
    sent = vault_site.preserve(2, "attacker-2")
    report_id = _report(vault_site, waiting, ReportStatus.PENDING)
    _report(vault_site, sent, ReportStatus.SENT)
    vault_site.clock.advance(days=366)  # NCMEC was down for a long while, say

    assert _purge(vault_site) == PurgeResult(purged=[sent.id], kept_for_report=[waiting.id])

    with vault_site.runtime.database.write_session() as session:
        report = session.get(AuthorityReport, report_id)
        assert report is not None
        report.status = ReportStatus.SENT.value
    assert _purge(vault_site) == PurgeResult(purged=[waiting.id])


def test_a_report_refuses_an_item_purged_after_it_was_found(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)  # as a caller read it, before the purge
    vault_site.clock.advance(days=365)
    assert _purge(vault_site).purged == [item.id]

    with pytest.raises(Conflict, match=f"item {item.id} was purged: no report can cover it"):
        _report(vault_site, item, ReportStatus.PENDING)
    with vault_site.runtime.database.session() as session:
        assert session.scalars(select(AuthorityReport)).all() == []
    assert "reported" not in _actions(vault_site, item)


def test_a_dry_run_changes_nothing(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)
    vault_site.clock.advance(days=365)

    assert _purge(vault_site, dry_run=True) == PurgeResult(purged=[item.id], kept_on_hold=[])

    row = _row(vault_site, item)
    assert (row.purged_at, row.wrapped_key, row.capture) == (None, item.wrapped_key, item.capture)
    assert _file_exists(vault_site, item)
    assert _actions(vault_site, item) == ["stored"]


def test_a_purge_rolled_back_deletes_no_file(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)
    vault_site.clock.advance(days=365)

    def purge_then_fail() -> None:
        with vault_site.runtime.database.write_session() as session:
            purge_expired(session, vault_site.runtime.vault, now=vault_site.clock.now(), actor="x")
            raise RuntimeError("the transaction fails after the purge")

    with pytest.raises(RuntimeError):
        purge_then_fail()

    assert _row(vault_site, item).purged_at is None
    assert _file_exists(vault_site, item), "the file goes only once the purge is committed"
    assert vault_site.runtime.vault.open_image(_row(vault_site, item))


def test_a_hold_and_its_release_are_recorded(vault_site: VaultSite) -> None:
    items = [vault_site.preserve(seed) for seed in (1, 2)]
    hold_id = _hold(vault_site, *items)
    _release(vault_site, hold_id)

    with vault_site.runtime.database.session() as session:
        entries = [custody.entries_for(session, item.id)[1:] for item in items]
        audit_actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.subject == f"hold/{hold_id}")
                .order_by(AuditEvent.id)
            )
        )
    for per_item in entries:
        assert [(entry.action, entry.details) for entry in per_item] == [
            (
                "hold_placed",
                {"hold": hold_id, "case": "Op Lantern", "reason": "police asked us to keep it"},
            ),
            ("hold_released", {"hold": hold_id, "case": "Op Lantern", "reason": "case closed"}),
        ]
    assert audit_actions == ["evidence.hold_placed", "evidence.hold_released"]


@pytest.mark.parametrize(
    ("case", "reason", "message"),
    [
        ("", "a reason", "a case name has 1 to 200 characters"),
        ("x" * 201, "a reason", "a case name has 1 to 200 characters"),
        ("Op Lantern", "   ", "say why the items must be kept (a reason)"),
    ],
)
def test_a_hold_needs_a_case_name_and_a_reason(
    sqlite_vault_site: VaultSite, case: str, reason: str, message: str
) -> None:
    item = sqlite_vault_site.preserve(1)
    with (
        pytest.raises(InvalidRequest) as refused,
        sqlite_vault_site.runtime.database.write_session() as session,
    ):
        place_hold(
            session,
            site_id=sqlite_vault_site.site.id,
            case_name=case,
            reason=reason,
            item_ids=[item.id],
            actor="cli:ann",
            now=sqlite_vault_site.clock.now(),
        )
    assert refused.value.message == message


def test_a_hold_refuses_unknown_foreign_and_purged_items(vault_site: VaultSite) -> None:
    item = vault_site.preserve(1)
    with vault_site.runtime.database.write_session() as session:
        other_site = get_or_create_site(session, "another-forum").id

    def place(site_id: int, *item_ids: str) -> None:
        with vault_site.runtime.database.write_session() as session:
            place_hold(
                session,
                site_id=site_id,
                case_name="Op Lantern",
                reason="keep it",
                item_ids=item_ids,
                actor="cli:ann",
                now=vault_site.clock.now(),
            )

    with pytest.raises(NotFound, match="no evidence item missing-1"):
        place(vault_site.site.id, item.id, "missing-1")
    with pytest.raises(InvalidRequest, match=f"items from another site: {item.id}"):
        place(other_site, item.id)
    vault_site.clock.advance(days=365)
    _purge(vault_site)
    with pytest.raises(Conflict, match="already purged"):
        place(vault_site.site.id, item.id)
    with vault_site.runtime.database.session() as session:
        assert active_holds(session) == []


def test_releasing_an_unknown_or_released_hold_is_refused(vault_site: VaultSite) -> None:
    hold_id = _hold(vault_site, vault_site.preserve(1))
    _release(vault_site, hold_id)

    with pytest.raises(Conflict, match=f"legal hold {hold_id} was already released by cli:ann"):
        _release(vault_site, hold_id)
    with pytest.raises(NotFound, match="no legal hold 999"):
        _release(vault_site, 999)


def test_the_purge_job_runs_at_most_once_an_interval(tmp_path: Path) -> None:
    site = open_vault_site(tmp_path / "data", None, evidence={"purge_interval_minutes": 60})
    try:
        job = PurgeJob(site.runtime.database, site.runtime.vault, site.settings, site.clock)
        first = site.preserve(1)
        site.clock.advance(minutes=30)
        second = site.preserve(2)
        site.clock.advance(days=365, minutes=-30)  # the first expires now

        assert job.run_if_due() == 1, "the first run is due at once"
        site.clock.advance(minutes=40)  # the second has expired too...
        assert job.run_if_due() == 0, "...but the job ran 40 minutes ago"
        assert _row(site, second).purged_at is None
        site.clock.advance(minutes=20)
        assert job.run_if_due() == 1
        assert [_row(site, item).purged_at is not None for item in (first, second)] == [True, True]
    finally:
        site.runtime.close()
