"""``vigil evidence`` on a real data folder whose vault holds items preserved by real screening:
new-key, list, show, verify, rotate-key, legal holds and purge.

Commands run in-process through Typer's runner; what the process prints on a failure (exit code,
one line, no traceback) is checked by running ``python -m vigil.cli``.
"""

from __future__ import annotations

import base64
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import Result

from tests.evidence.conftest import SITE_NAME, invoke, known_image, open_vault_site, succeed
from tests.test_cli import _no_vigil_environment, run_process, table_row  # noqa: F401 - autouse fixture
from vigil.commands.common import actor
from vigil.config import load_settings
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.evidence import custody
from vigil.evidence.crypto import MasterKey
from vigil.evidence.reports import Authority, ReportStatus, create_report
from vigil.store.database import Database
from vigil.store.models import CustodyEntry, EvidenceItem
from vigil.store.types import utcnow

HEAD = re.compile(r"custody head: ([0-9]+):([0-9a-f]{64})")


def cells(output: str, first_cell: str) -> list[str]:
    """The cells of a printed table's row whose first cell is ``first_cell``."""
    return [cell.strip() for cell in table_row(output, first_cell).strip().strip("│").split("│")]


@dataclass
class Vault:
    """A data folder with three preserved items: two of attacker-1's, one of attacker-2's."""

    data_dir: Path
    database: Database
    items: list[EvidenceItem]

    def evidence(self, *args: str | Path) -> Result:
        return invoke("evidence", *args, "--data-dir", self.data_dir)

    def succeed(self, *args: str | Path) -> Result:
        return succeed("evidence", *args, "--data-dir", self.data_dir)

    def row(self, item: EvidenceItem) -> EvidenceItem:
        with self.database.session() as session:
            found = session.get(EvidenceItem, item.id)
            assert found is not None
            return found

    def actions(self, item_id: str | None = None) -> list[tuple[str, str]]:
        with self.database.session() as session:
            if item_id is not None:
                return [(e.action, e.actor) for e in custody.entries_for(session, item_id)]
            entries = session.scalars(select(CustodyEntry).order_by(CustodyEntry.id))
            return [(e.action, e.actor) for e in entries]


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    data_dir = tmp_path / "data"
    site = open_vault_site(data_dir, None)
    items = [
        site.preserve(1, "attacker-1"),
        site.preserve(2, "attacker-1"),
        site.preserve(3, "attacker-2"),
    ]
    site.runtime.close()
    database = Database.from_settings(load_settings(data_dir=data_dir))
    yield Vault(data_dir, database, items)
    database.dispose()


def test_new_key_writes_a_key_only_its_owner_reads_and_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "master.key"

    made = succeed("evidence", "new-key", path)

    key = MasterKey.read(path)
    assert f"wrote master key {key.id} to {path}" in made.output
    assert key.as_text() not in made.output, "the key itself is never printed"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = invoke("evidence", "new-key", path)
    assert isinstance(again.exception, Conflict)
    assert "new-key never overwrites a key" in again.exception.message
    assert MasterKey.read(path) == key


def test_list_shows_each_item_with_its_uploader_hold_and_reports(vault: Vault) -> None:
    first, second, third = vault.items
    with vault.database.write_session() as session:
        create_report(
            session,
            authority=Authority.NCMEC,
            site_id=first.site_id,
            uploader_id="attacker-1",
            items=[first],
            payload="<report/>",
            status=ReportStatus.SENT,
            actor="test",
            now=utcnow(),
        )
    vault.succeed(
        "hold", "place", "--case", "Op Lantern", "--reason", "keep", "--site", SITE_NAME, second.id
    )

    listed = vault.succeed("list").output

    assert cells(listed, first.id) == [
        first.id,
        "attacker-1",
        "bank_match",
        "2026-03-02 09:30 UTC",
        "2027-03-02 09:30 UTC",
        "",
        "ncmec",
    ]
    assert cells(listed, second.id)[5:] == ["held", ""]
    assert cells(listed, third.id)[1] == "attacker-2"
    only_two = vault.succeed("list", "--uploader", "attacker-2", "--site", SITE_NAME).output
    assert third.id in only_two
    assert first.id not in only_two
    missing_site = vault.evidence("list", "--site", "nowhere")
    assert isinstance(missing_site.exception, NotFound)


def test_list_leaves_purged_items_out_unless_asked(vault: Vault) -> None:
    first = vault.items[0]
    _expire(vault, first)
    vault.succeed("purge")

    assert first.id not in vault.succeed("list").output
    assert cells(vault.succeed("list", "--purged").output, first.id)[4].startswith("purged 20")


def test_show_prints_the_record_never_the_image_and_records_the_view(vault: Vault) -> None:
    item = vault.items[0]

    shown = vault.succeed("show", item.id[:8]).output

    assert f"item {item.id}" in shown
    assert f"sha256: {item.sha256}" in shown
    assert f"md5: {item.md5}" in shown
    assert "203.0.113.7" in shown
    assert "Stand-in Camera Co" in shown
    assert "known-illegal" in shown
    image = known_image(1)
    for form in (
        image[:64].hex(),
        base64.b64encode(image[:48]).decode(),
        image[:16].decode("latin-1"),
    ):
        assert form not in shown
    blob = (vault.data_dir / "evidence" / str(item.file_path)).read_bytes()
    assert blob[4:40].hex() not in shown
    assert vault.actions(item.id) == [("stored", "vigil"), ("viewed", actor())]
    view = cells(shown, "4")  # entries 1-3 are the three items' `stored` entries
    assert view[2:] == ["viewed", actor(), '{"via": "cli show"}'], "the listing shows this view"
    assert cells(shown, "1")[2:] == ["stored", "vigil", "the facts above, as stored"]


def test_show_refuses_an_unknown_or_malformed_item(vault: Vault) -> None:
    unknown = vault.evidence("show", "00000000")
    malformed = vault.evidence("show", "../etc")

    assert isinstance(unknown.exception, NotFound)
    assert unknown.exception.message == "no evidence item 00000000"
    assert isinstance(malformed.exception, InvalidRequest)


def test_verify_passes_records_itself_and_prints_the_head_to_note(vault: Vault) -> None:
    verified = vault.succeed("verify", "--decrypt").output

    head = HEAD.search(verified)
    assert head is not None, verified
    assert "checked 3 items, 3 decrypted" in verified
    assert int(head.group(1)) == 4, "three stored entries, then this check"
    assert vault.actions()[-1] == ("verified", actor())
    again = vault.succeed("verify", "--expect-head", f"{head.group(1)}:{head.group(2)}").output
    assert "verified: no problems" in again


def test_verify_exits_1_and_lists_the_problems_of_a_tampered_vault(vault: Vault) -> None:
    item = vault.items[1]
    path = vault.data_dir / "evidence" / str(item.file_path)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    entries_before = vault.actions()

    failed = vault.evidence("verify")

    assert failed.exit_code == 1
    assert f"item {item.id}: its sealed file {item.file_path} differs from the one stored" in (
        failed.output
    )
    assert vault.actions() == entries_before, "a failed check appends nothing"
    process = run_process("evidence", "verify", "--data-dir", vault.data_dir)
    assert process.returncode == 1
    assert "verification FAILED" in process.stderr
    assert "Traceback" not in process.stderr + process.stdout


def test_verify_against_a_head_that_no_longer_matches_exits_1(vault: Vault) -> None:
    failed = vault.evidence("verify", "--expect-head", f"2:{'a' * 64}")

    assert failed.exit_code == 1
    assert "entry 2: its hash differs from the head noted earlier: history rewritten" in (
        failed.output
    )


def test_verify_refuses_a_malformed_head(vault: Vault) -> None:
    refused = vault.evidence("verify", "--expect-head", "57-abc")

    assert refused.exit_code == 2
    assert "write the head as `verify` printed it" in refused.output


def test_rotate_key_rewraps_every_item_and_the_old_key_can_then_go(
    vault: Vault, tmp_path: Path
) -> None:
    old_key = vault.data_dir / "evidence.key"
    new_key = tmp_path / "new.key"
    succeed("evidence", "new-key", new_key)
    blobs = {
        item.id: (vault.data_dir / "evidence" / str(item.file_path)).read_bytes()
        for item in vault.items
    }
    config = vault.data_dir / "vigil.toml"
    config.write_text(
        f'[evidence]\nmaster_key_file = "{new_key}"\nprevious_key_files = ["{old_key}"]\n'
    )

    rotated = vault.succeed("rotate-key").output

    new_id = MasterKey.read(new_key).id
    assert f"re-wrapped 3 item keys with master key {new_id} (0 already were)" in rotated
    assert "no item needs an older key" in rotated
    assert "re-wrapped 0 item keys" in vault.succeed("rotate-key").output
    config.write_text(f'[evidence]\nmaster_key_file = "{new_key}"\n')
    assert "checked 3 items, 3 decrypted" in vault.succeed("verify", "--decrypt").output
    for item in vault.items:
        assert (vault.data_dir / "evidence" / str(item.file_path)).read_bytes() == blobs[item.id]


def test_hold_place_list_and_release(vault: Vault) -> None:
    first, second, third = vault.items

    placed = vault.succeed(
        "hold",
        "place",
        "--case",
        "Op Lantern",
        "--reason",
        "police request 42",
        "--site",
        SITE_NAME,
        "--uploader",
        "attacker-1",
    ).output
    listed = vault.succeed("hold", "list").output

    assert "legal hold 1 (Op Lantern) keeps 2 items" in placed
    row = cells(listed, "1")
    assert row[:4] == ["1", "parents-forum", "Op Lantern", "2"]
    assert row[5:] == [actor(), "police request 42"]
    assert vault.actions(first.id)[-1] == ("hold_placed", actor())
    assert vault.actions(third.id) == [("stored", "vigil")]
    released = vault.succeed("hold", "release", "1", "--reason", "case closed").output
    assert "legal hold 1 (Op Lantern) released" in released
    assert "no legal holds in force" in vault.succeed("hold", "list").output
    assert vault.actions(second.id)[-1] == ("hold_released", actor())
    twice = vault.evidence("hold", "release", "1", "--reason", "again")
    assert isinstance(twice.exception, Conflict)


def test_hold_place_wants_items_or_an_uploader_not_both(vault: Vault) -> None:
    item = vault.items[0]
    common = ("hold", "place", "--case", "C", "--reason", "r", "--site", SITE_NAME)

    both = vault.evidence(*common, item.id, "--uploader", "attacker-1")
    neither = vault.evidence(*common)
    unknown_uploader = vault.evidence(*common, "--uploader", "nobody")

    assert both.exit_code == neither.exit_code == 2
    assert "name the items, or give --uploader, not both" in both.output
    assert isinstance(unknown_uploader.exception, NotFound)


def _expire(vault: Vault, item: EvidenceItem) -> None:
    """Make an item's retention run out (the CLI uses the real clock)."""
    with vault.database.write_session() as session:
        session.execute(
            update(EvidenceItem)
            .where(EvidenceItem.id == item.id)
            .values(retain_until=utcnow() - timedelta(days=1))
        )


def test_purge_removes_expired_unheld_items_and_a_dry_run_nothing(vault: Vault) -> None:
    expired, held, kept = vault.items
    _expire(vault, expired)
    _expire(vault, held)
    vault.succeed("hold", "place", "--case", "C", "--reason", "keep", "--site", SITE_NAME, held.id)

    dry = vault.succeed("purge", "--dry-run").output
    assert "would purge 1 items; expired but kept: 1 by a legal hold, 0 for a report" in dry
    assert f"would purge: {expired.id}" in dry
    assert vault.row(expired).purged_at is None

    purged = vault.succeed("purge").output

    assert f"purged: {expired.id}" in purged
    assert f"kept on hold: {held.id}" in purged
    assert vault.row(expired).purged_at is not None
    assert (vault.row(held).purged_at, vault.row(kept).purged_at) == (None, None)
    assert not (vault.data_dir / "evidence" / str(expired.file_path)).exists()
    assert vault.actions(expired.id)[-1] == ("purged", actor())
    assert "verified: no problems" in vault.succeed("verify", "--decrypt").output


def test_show_lists_no_exif_the_image_does_not_carry(vault: Vault) -> None:
    shown = vault.succeed("show", vault.items[0].id).output

    assert "Image.Make" in shown
    assert "unreadable" not in shown
