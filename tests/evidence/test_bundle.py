"""The police bundle: one archive whose every file is checked by its manifest, whose images open
only with the recipient's passphrase (or sit in the clear only when asked), and whose making is
refused to anyone without the child-safety permission and a reason."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.evidence.conftest import VaultSite, known_image, open_vault_site
from vigil.errors import (
    Conflict,
    EvidenceIntegrityError,
    EvidenceKeyError,
    Forbidden,
    InvalidRequest,
    NotFound,
)
from vigil.evidence import bundle, bundle_open, custody, retention
from vigil.evidence.bundle import BundleResult
from vigil.evidence.custody import entry_hash
from vigil.evidence.vault import Accessor, Vault
from vigil.roles import UserRole
from vigil.store.models import AuditEvent, CustodyEntry, EvidenceItem

PASSPHRASE = "correct horse battery staple"
REASON = "Request from Thames Valley Police, reference TVP/2026/118"
CASE = "Op Lantern"
CHILD_SAFETY = Accessor("casey", UserRole.CHILD_SAFETY, REASON)


def export(
    site: VaultSite,
    items: list[EvidenceItem],
    out: Path,
    *,
    accessor: Accessor = CHILD_SAFETY,
    passphrase: str | None = PASSPHRASE,
    clear_images: bool = False,
    vault: Vault | None = None,
) -> BundleResult:
    return bundle.export_bundle(
        site.runtime.database,
        vault or site.runtime.vault,
        item_ids=[item.id for item in items],
        case=CASE,
        accessor=accessor,
        out=out,
        passphrase=passphrase,
        clear_images=clear_images,
        settings=site.settings,
        now=site.clock.now(),
    )


def bundle_of_one(
    site: VaultSite, tmp_path: Path, **options: Any
) -> tuple[EvidenceItem, Path, BundleResult]:
    """``known_image(1)``, preserved and exported alone to ``bundle.zip``."""
    item = site.preserve(1)
    archive = tmp_path / "bundle.zip"
    return item, archive, export(site, [item], archive, **options)


def members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as opened:
        return {name: opened.read(name) for name in opened.namelist()}


def rewritten(archive: Path, target: Path, name: str, change: Callable[[bytes], bytes]) -> Path:
    """A copy of the archive with one member changed, as a well-formed zip (CRCs recomputed),
    so only the bundle's own hashes can notice."""
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            data = source.read(info)
            copy.writestr(info, change(data) if info.filename == name else data)
    return target


def flip_middle_byte(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1 :]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def counts(site: VaultSite) -> tuple[int, int]:
    with site.runtime.database.session() as session:
        return (
            session.scalar(select(func.count()).select_from(CustodyEntry)) or 0,
            session.scalar(select(func.count()).select_from(AuditEvent)) or 0,
        )


def test_the_bundle_opens_with_the_passphrase_and_its_manifest_hashes_match(
    vault_site: VaultSite, tmp_path: Path
) -> None:
    first = vault_site.preserve(1, "attacker-1")
    second = vault_site.preserve(2, "attacker-2")
    archive = tmp_path / "op-lantern.zip"

    result = export(vault_site, [first, second], archive)

    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    files = members(archive)
    assert set(files) == {
        "manifest.json",
        "manifest.hmac",
        "keys.json",
        "custody.json",
        "summary.html",
        "README.txt",
        f"images/{first.id}.vge",
        f"images/{second.id}.vge",
    }
    manifest = json.loads(files["manifest.json"])
    assert manifest["files"] == {
        name: hashlib.sha256(data).hexdigest()
        for name, data in files.items()
        if name not in ("manifest.json", "manifest.hmac")
    }
    assert (manifest["case"], manifest["created_by"], manifest["reason"]) == (
        CASE,
        "user:casey",
        REASON,
    )
    assert [entry["sha256"] for entry in manifest["items"]] == [first.sha256, second.sha256]
    assert result.manifest_sha256 == hashlib.sha256(files["manifest.json"]).hexdigest()
    assert result.archive_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    # The vault's sealed files travel as they are: never decrypted and sealed again.
    assert files[f"images/{first.id}.vge"] == vault_site.runtime.vault.read_blob(first)

    opened = bundle_open.open_bundle(archive, PASSPHRASE, tmp_path / "opened")

    assert {path.name: path.read_bytes() for path in opened} == {
        f"{first.id}.jpg": known_image(1),
        f"{second.id}.jpg": known_image(2),
    }


def test_a_wrong_passphrase_fails_clearly_and_writes_nothing(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    _, archive, _ = bundle_of_one(sqlite_vault_site, tmp_path)

    with pytest.raises(EvidenceKeyError, match="wrong passphrase"):
        bundle_open.open_bundle(archive, "not the passphrase at all", tmp_path / "opened")
    with pytest.raises(EvidenceKeyError, match="encrypted: give the passphrase"):
        bundle_open.open_bundle(archive, None, tmp_path / "opened")

    assert not (tmp_path / "opened").exists()


@pytest.mark.parametrize(
    "member",
    [
        "manifest.json",
        "manifest.hmac",
        "keys.json",
        "custody.json",
        "summary.html",
        "README.txt",
        "image",
    ],
)
def test_a_changed_byte_in_any_member_is_detected(
    sqlite_vault_site: VaultSite, tmp_path: Path, member: str
) -> None:
    item, archive, _ = bundle_of_one(sqlite_vault_site, tmp_path)
    name = f"images/{item.id}.vge" if member == "image" else member

    changed = rewritten(archive, tmp_path / "changed.zip", name, flip_middle_byte)

    with pytest.raises(EvidenceIntegrityError):
        bundle_open.open_bundle(changed, PASSPHRASE, tmp_path / "opened")
    assert not (tmp_path / "opened").exists()


def test_a_replaced_image_is_detected_even_with_the_manifest_rewritten_to_match(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    """Whoever swaps a file and fixes its hash in the manifest lacks the passphrase's HMAC key."""
    item = sqlite_vault_site.preserve(1)
    other = sqlite_vault_site.preserve(2)
    archive = tmp_path / "bundle.zip"
    export(sqlite_vault_site, [item], archive)
    forged_blob = sqlite_vault_site.runtime.vault.read_blob(other)
    manifest = json.loads(members(archive)["manifest.json"])
    manifest["files"][f"images/{item.id}.vge"] = hashlib.sha256(forged_blob).hexdigest()
    manifest["case"] = "Op Something Else"
    step = rewritten(
        archive, tmp_path / "step.zip", f"images/{item.id}.vge", lambda _data: forged_blob
    )
    forged = rewritten(
        step, tmp_path / "forged.zip", "manifest.json", lambda _data: json.dumps(manifest).encode()
    )

    with pytest.raises(EvidenceIntegrityError, match=r"manifest\.json was altered"):
        bundle_open.open_bundle(forged, PASSPHRASE, tmp_path / "opened")


def test_a_damaged_archive_is_refused_by_its_checksums(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    item, archive, _ = bundle_of_one(sqlite_vault_site, tmp_path)
    raw = archive.read_bytes()
    blob = sqlite_vault_site.runtime.vault.read_blob(item)
    at = raw.index(blob) + len(blob) // 2  # inside the stored image, CRC left as it was
    archive.write_bytes(raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :])

    with pytest.raises(EvidenceIntegrityError, match="damaged"):
        bundle_open.open_bundle(archive, PASSPHRASE, tmp_path / "opened")


def test_the_encrypted_bundle_never_holds_an_image_in_the_clear(
    vault_site: VaultSite, tmp_path: Path
) -> None:
    item, archive, _ = bundle_of_one(vault_site, tmp_path)

    original = known_image(1)
    assert original not in archive.read_bytes()
    assert all(original not in data for data in members(archive).values())
    # Nor any large piece of it (a compressed copy would still share long runs).
    assert original[2000:2064] not in archive.read_bytes()
    with vault_site.runtime.database.session() as session:
        exported = [e for e in custody.entries_for(session, item.id) if e.action == "exported"]
    assert [(e.actor, e.details["decrypted"], e.details["case"]) for e in exported] == [
        ("user:casey", False, CASE)
    ]


def test_clear_images_hold_the_original_bytes_and_record_each_decryption(
    vault_site: VaultSite, tmp_path: Path
) -> None:
    item, archive, result = bundle_of_one(vault_site, tmp_path, passphrase=None, clear_images=True)

    files = members(archive)
    assert files[f"images/{item.id}.jpg"] == known_image(1)
    assert "keys.json" not in files
    assert "manifest.hmac" not in files
    assert json.loads(files["manifest.json"])["images"] == "clear"
    with vault_site.runtime.database.session() as session:
        exported = [e for e in custody.entries_for(session, item.id) if e.action == "exported"]
        audit_entry = session.scalar(
            select(AuditEvent).where(AuditEvent.action == "evidence.bundle")
        )
    assert [(e.details["decrypted"], e.details["reason"]) for e in exported] == [(True, REASON)]
    assert audit_entry is not None
    assert audit_entry.details["manifest_sha256"] == result.manifest_sha256
    opened = bundle_open.open_bundle(
        archive, None, tmp_path / "opened", manifest_sha256=result.manifest_sha256
    )
    assert [path.read_bytes() for path in opened] == [known_image(1)]


def test_a_clear_bundle_with_an_edited_manifest_fails_against_the_noted_hash(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    _, archive, result = bundle_of_one(
        sqlite_vault_site, tmp_path, passphrase=None, clear_images=True
    )
    edited = rewritten(
        archive,
        tmp_path / "edited.zip",
        "manifest.json",
        lambda data: data.replace(CASE.encode(), b"Op Elsewhere"),
    )

    with pytest.raises(EvidenceIntegrityError, match="noted at export"):
        bundle_open.open_bundle(
            edited, None, tmp_path / "o", manifest_sha256=result.manifest_sha256
        )


def test_a_moderator_cannot_export_and_nothing_is_written_or_recorded(
    vault_site: VaultSite, tmp_path: Path
) -> None:
    item = vault_site.preserve(1)
    before = counts(vault_site)
    moderator = Accessor("mo", UserRole.MODERATOR, REASON)

    for clear in (False, True):
        with pytest.raises(Forbidden, match="only child-safety staff and admins"):
            export(
                vault_site,
                [item],
                tmp_path / "bundle.zip",
                accessor=moderator,
                passphrase=None if clear else PASSPHRASE,
                clear_images=clear,
            )

    assert not (tmp_path / "bundle.zip").exists()
    assert counts(vault_site) == before


@pytest.mark.parametrize("reason", ["", "   ", "because"])
def test_a_missing_or_token_reason_is_refused(
    sqlite_vault_site: VaultSite, tmp_path: Path, reason: str
) -> None:
    item = sqlite_vault_site.preserve(1)
    before = counts(sqlite_vault_site)
    without_reason = Accessor("casey", UserRole.CHILD_SAFETY, reason)

    with pytest.raises(InvalidRequest, match="write down why"):
        export(sqlite_vault_site, [item], tmp_path / "bundle.zip", accessor=without_reason)

    assert not (tmp_path / "bundle.zip").exists()
    assert counts(sqlite_vault_site) == before


def test_purged_and_unknown_items_are_refused(sqlite_vault_site: VaultSite, tmp_path: Path) -> None:
    site = sqlite_vault_site
    item = site.preserve(1)
    site.clock.advance(days=366)
    with site.runtime.database.write_session() as session:
        purged = retention.purge_expired(
            session, site.runtime.vault, now=site.clock.now(), actor="test"
        )
    assert purged.purged == [item.id]

    with pytest.raises(Conflict, match="was purged"):
        export(site, [item], tmp_path / "bundle.zip")
    with (
        site.runtime.database.session() as session,
        pytest.raises(NotFound, match="no evidence item 00000000-dead"),
    ):
        bundle.find_items(session, ["00000000-dead"])
    assert not (tmp_path / "bundle.zip").exists()


@pytest.mark.parametrize(
    ("passphrase", "clear", "message"),
    [
        (None, False, "give the recipient's passphrase"),
        ("", False, "give the recipient's passphrase"),
        ("eleven char", False, "at least 12 characters"),
        (PASSPHRASE, True, "need no passphrase"),
    ],
)
def test_a_missing_short_or_needless_passphrase_is_refused(
    sqlite_vault_site: VaultSite, tmp_path: Path, passphrase: str | None, clear: bool, message: str
) -> None:
    item = sqlite_vault_site.preserve(1)
    before = counts(sqlite_vault_site)

    with pytest.raises(InvalidRequest, match=message):
        export(
            sqlite_vault_site,
            [item],
            tmp_path / "bundle.zip",
            passphrase=passphrase,
            clear_images=clear,
        )

    assert not (tmp_path / "bundle.zip").exists()
    assert counts(sqlite_vault_site) == before


def test_an_existing_file_is_never_written_over(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    item = sqlite_vault_site.preserve(1)
    existing = tmp_path / "bundle.zip"
    existing.write_bytes(b"someone else's file")
    before = counts(sqlite_vault_site)

    with pytest.raises(Conflict, match="exists already"):
        export(sqlite_vault_site, [item], existing)

    assert existing.read_bytes() == b"someone else's file"
    assert counts(sqlite_vault_site) == before


def test_the_readme_recipe_opens_the_images_without_vigil(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    item, archive, _ = bundle_of_one(sqlite_vault_site, tmp_path)
    readme = members(archive)["README.txt"].decode()
    script = readme[readme.index("import base64") :]
    (tmp_path / "open.py").write_text(script)
    workdir = tmp_path / "police"
    workdir.mkdir()

    # A new session: no terminal, so getpass reads the passphrase from standard input.
    done = subprocess.run(
        [sys.executable, str(tmp_path / "open.py"), str(archive)],
        input=PASSPHRASE + "\n",
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=60,
        start_new_session=True,
        env={key: value for key, value in os.environ.items() if key != "PYTHONPATH"},
    )

    assert done.returncode == 0, done.stderr
    assert (workdir / f"{item.id}.image").read_bytes() == known_image(1)
    assert f"{item.id} {item.sha256}" in done.stdout


def test_custody_json_entries_check_by_the_readme_rule_and_end_at_the_head(
    vault_site: VaultSite, tmp_path: Path
) -> None:
    first = vault_site.preserve(1)
    vault_site.preserve(2)  # another item's entries fall between, and stay out of the bundle
    archive = tmp_path / "bundle.zip"
    result = export(vault_site, [first], archive)

    document = json.loads(members(archive)["custody.json"])

    entries = document["entries"]
    # The log as the export began: the bundle's own `exported` entry follows in the log.
    assert [entry["action"] for entry in entries] == ["stored"]
    assert {entry["item_id"] for entry in entries} == {first.id}
    for entry in entries:
        canonical = json.dumps(
            {
                "id": entry["id"],
                "previous": entry["previous_hash"],
                "item": entry["item_id"],
                "action": entry["action"],
                "actor": entry["actor"],
                "at": entry["at"],
                "details": entry["details"],
            },
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
        ).encode()
        assert hashlib.sha256(canonical).hexdigest() == entry["entry_hash"]
    with vault_site.runtime.database.session() as session:
        head = custody.head(session)
        last = session.get(CustodyEntry, entries[-1]["id"])
        assert last is not None
        assert (
            entry_hash(
                entry_id=last.id,
                previous_hash=last.previous_hash,
                item_id=last.item_id,
                action=last.action,
                actor=last.actor,
                at=last.at,
                details=last.details,
            )
            == entries[-1]["entry_hash"]
        )
        exported = [e for e in custody.entries_for(session, first.id) if e.action == "exported"]
    # The export's entry comes right after the head the bundle names, and names the bundle's
    # manifest, so the provider's log ties this exact bundle to its making.
    assert [(e.id, e.previous_hash) for e in exported] == [
        (document["chain_head"]["entry"] + 1, document["chain_head"]["hash"])
    ]
    assert exported[0].details["manifest_sha256"] == result.manifest_sha256
    assert head == (exported[0].id, exported[0].entry_hash)


def test_the_summary_lists_items_holds_and_custody_without_any_image(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    site = sqlite_vault_site
    item = site.preserve(1, account={"screen_name": "<script>alert(1)</script>"})
    with site.runtime.database.write_session() as session:
        retention.place_hold(
            session,
            site_id=site.site.id,
            case_name="Op <b>Lantern</b>",
            reason="Preservation request 44",
            item_ids=[item.id],
            actor="user:casey",
            now=site.clock.now(),
        )
    archive = tmp_path / "bundle.zip"
    export(site, [item], archive)

    page = members(archive)["summary.html"].decode()

    for fact in (item.sha256, item.md5, item.sha1, item.pdq[0]["hash"], "203.0.113.7", "51234"):
        assert fact in page
    assert "Stand-in Camera Co" in page  # EXIF as received
    assert "Op &lt;b&gt;Lantern&lt;/b&gt;" in page
    assert "Preservation request 44" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "<img" not in page.lower()
    assert "hold_placed" in page
    assert "stored" in page


class HookedVault(Vault):
    """The site's vault, running ``during`` as the exporter reads each sealed file: what another
    request does while the archive is being built."""

    def __init__(self, site: VaultSite, during: Callable[[], None]) -> None:
        super().__init__(site.settings, site.runtime.database)
        self._during = during

    def read_blob(self, item: EvidenceItem) -> bytes:
        self._during()
        return super().read_blob(item)


@pytest.fixture
def impatient_site(tmp_path: Path, database_url: str | None) -> Iterator[VaultSite]:
    """A site on SQLite and PostgreSQL whose writers give up on a held lock within a second, so
    an export holding the write lock would make a screening fail here instead of wait."""
    if database_url is None:
        opened = open_vault_site(tmp_path / "data", None, database_lock_timeout_seconds=1)
    else:  # the fixture's URL ends in libpq's `options`: one more setting joins it
        opened = open_vault_site(tmp_path / "data", f"{database_url}%20-clock_timeout%3D1000")
    yield opened
    opened.runtime.close()


@pytest.mark.parametrize("clear", [False, True])
def test_screening_goes_on_while_the_archive_is_built(
    impatient_site: VaultSite, tmp_path: Path, clear: bool
) -> None:
    """The export holds no transaction while it reads, decrypts and writes: a screening run from
    inside it (SQLite's write lock, PostgreSQL's custody head lock) completes, and the export is
    recorded after it, in its own short transaction."""
    site = impatient_site
    first, second = site.preserve(1), site.preserve(2)
    screened: list[EvidenceItem] = []

    def screen_another_upload() -> None:
        site.runtime.database.ping()  # what the API checks before screening (else a 503)
        screened.append(site.preserve(10 + len(screened), "attacker-2"))

    archive = tmp_path / "bundle.zip"
    result = export(
        site,
        [first, second],
        archive,
        passphrase=None if clear else PASSPHRASE,
        clear_images=clear,
        vault=HookedVault(site, screen_another_upload),
    )

    assert len(screened) == 2
    with site.runtime.database.session() as session:
        last_stored = max(
            entry.id for item in screened for entry in custody.entries_for(session, item.id)
        )
        exported = [
            entry
            for item in (first, second)
            for entry in custody.entries_for(session, item.id)
            if entry.action == "exported"
        ]
    assert [entry.details["decrypted"] for entry in exported] == [clear, clear]
    assert all(entry.id > last_stored for entry in exported)
    assert all(entry.details["archive_sha256"] == result.archive_sha256 for entry in exported)
    # The bundle shows the log as it stood when the export began, before those screenings.
    assert json.loads(members(archive)["custody.json"])["chain_head"]["entry"] < last_stored
    opened = bundle_open.open_bundle(
        archive,
        None if clear else PASSPHRASE,
        tmp_path / "opened",
        manifest_sha256=result.manifest_sha256,
    )
    assert sorted(path.read_bytes() for path in opened) == sorted([known_image(1), known_image(2)])


@pytest.mark.parametrize("clear", [False, True])
def test_a_failure_while_building_leaves_no_file_and_records_nothing(
    sqlite_vault_site: VaultSite, tmp_path: Path, clear: bool
) -> None:
    site = sqlite_vault_site
    first, second = site.preserve(1), site.preserve(2)
    assert second.file_path is not None
    sealed = site.runtime.vault.files.root / second.file_path
    sealed.write_bytes(flip_middle_byte(sealed.read_bytes()))  # found after the first is written
    before = counts(site)
    out = tmp_path / "out"
    out.mkdir()

    with pytest.raises(EvidenceIntegrityError, match=second.id):
        export(
            site,
            [first, second],
            out / "bundle.zip",
            passphrase=None if clear else PASSPHRASE,
            clear_images=clear,
        )

    assert list(out.iterdir()) == []  # no bundle, and no temporary file with images in it
    assert counts(site) == before


def test_a_file_made_at_the_name_while_building_is_kept_and_nothing_is_recorded(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    site = sqlite_vault_site
    item = site.preserve(1)
    before = counts(site)
    out = tmp_path / "out"
    out.mkdir()
    archive = out / "bundle.zip"

    def someone_writes_the_file() -> None:
        archive.write_bytes(b"someone else's file")

    with pytest.raises(Conflict, match="exists already"):
        export(site, [item], archive, vault=HookedVault(site, someone_writes_the_file))

    assert archive.read_bytes() == b"someone else's file"
    assert list(out.iterdir()) == [archive]
    assert counts(site) == before


def test_a_clear_bundle_opens_only_with_the_noted_manifest_hash_or_when_asked_unverified(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    """With no HMAC, only the hash noted at export proves the manifest: a swapped image with a
    manifest rewritten to match is otherwise indistinguishable from the real bundle."""
    item, archive, result = bundle_of_one(
        sqlite_vault_site, tmp_path, passphrase=None, clear_images=True
    )
    swapped = known_image(7)
    name = f"images/{item.id}.jpg"
    manifest = json.loads(members(archive)["manifest.json"])
    manifest["files"][name] = manifest["items"][0]["file_sha256"] = sha256(swapped)
    manifest["items"][0]["sha256"] = sha256(swapped)
    step = rewritten(archive, tmp_path / "step.zip", name, lambda _data: swapped)
    forged = rewritten(
        step, tmp_path / "forged.zip", "manifest.json", lambda _: json.dumps(manifest).encode()
    )

    for bundle_file in (archive, forged):
        with pytest.raises(InvalidRequest, match="give the manifest SHA-256 printed when"):
            bundle_open.open_bundle(bundle_file, None, tmp_path / "opened")
    assert not (tmp_path / "opened").exists()
    with pytest.raises(EvidenceIntegrityError, match="noted at export"):
        bundle_open.open_bundle(
            forged, None, tmp_path / "opened", manifest_sha256=result.manifest_sha256
        )
    # Asked for explicitly, the forgery opens: that is what "unverified" means.
    opened = bundle_open.open_bundle(forged, None, tmp_path / "opened", unverified=True)
    assert [path.read_bytes() for path in opened] == [swapped]


def test_an_encrypted_bundle_stripped_of_its_keys_needs_the_noted_hash_too(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    """Removing keys.json and manifest.hmac (to pass as a clear bundle) removes no check."""
    _, archive, _ = bundle_of_one(sqlite_vault_site, tmp_path)
    stripped = tmp_path / "stripped.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(stripped, "w") as copy:
        for info in source.infolist():
            if info.filename not in ("keys.json", "manifest.hmac"):
                copy.writestr(info, source.read(info))

    with pytest.raises(InvalidRequest, match="--manifest-sha256"):
        bundle_open.open_bundle(stripped, None, tmp_path / "opened")


def test_an_archive_declaring_gigabytes_is_refused_before_anything_is_read(
    sqlite_vault_site: VaultSite, tmp_path: Path
) -> None:
    """A zip bomb: a few bytes whose header says they unpack to more than the limit."""
    _, archive, result = bundle_of_one(sqlite_vault_site, tmp_path)
    raw = bytearray(archive.read_bytes())
    central = raw.index(b"PK\x01\x02")  # the first file's entry in the central directory
    raw[central + 24 : central + 28] = (0xFFFFFFFE).to_bytes(4, "little")  # uncompressed size
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(bytes(raw))
    with zipfile.ZipFile(bomb) as opened:
        assert sum(info.file_size for info in opened.infolist()) > bundle_open.MAX_UNPACKED_BYTES

    with pytest.raises(EvidenceIntegrityError, match=r"unpacks to .* more than a bundle's limit"):
        bundle_open.open_bundle(
            bomb, PASSPHRASE, tmp_path / "opened", manifest_sha256=result.manifest_sha256
        )
    assert not (tmp_path / "opened").exists()


def test_an_archive_of_too_many_files_is_refused(tmp_path: Path) -> None:
    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        archive.writestr("keys.json", b"{}")
        for number in range(bundle_open.MAX_MEMBERS):
            archive.writestr(f"images/{number}.vge", b"")

    with pytest.raises(EvidenceIntegrityError, match="more than a bundle's limit of 10000"):
        bundle_open.open_bundle(many, PASSPHRASE, tmp_path / "opened")
