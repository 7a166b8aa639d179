"""``vigil evidence export``, ``open-bundle`` and ``report nca`` on a real data folder: the user
signs in with their review-app password, a moderator is turned away, the bundle opens again from
the command line, and the NCA package lands as two files."""

from __future__ import annotations

import json
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import Result

from tests.evidence.conftest import SITE_NAME, VaultSite, known_image, open_vault_site
from tests.test_cli import (
    _no_vigil_environment,  # noqa: F401 - autouse fixture
    runner,
)
from vigil.cli import app
from vigil.evidence import custody
from vigil.review import accounts
from vigil.roles import UserRole
from vigil.store import users as user_store
from vigil.store.models import AuthorityReport, EvidenceItem, LoginSession

PASSWORD = "a long review password"
PASSPHRASE = "correct horse battery staple"
REASON = "Request from Thames Valley Police, reference TVP/2026/118"


def invoke(
    *args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> Result:
    return runner.invoke(
        app,
        [str(arg) for arg in args],
        env={"COLUMNS": "200", **(env or {})},
        input=stdin,
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[VaultSite]:
    """A data folder with two preserved items, a child-safety user and a moderator."""
    opened = open_vault_site(tmp_path / "data", None)
    with opened.runtime.database.write_session() as session:
        accounts.create_user(session, "casey", UserRole.CHILD_SAFETY, PASSWORD, actor="test")
        accounts.create_user(session, "mo", UserRole.MODERATOR, PASSWORD, actor="test")
    yield opened
    opened.runtime.close()


@pytest.fixture
def secrets(tmp_path: Path) -> tuple[Path, Path]:
    password_file, passphrase_file = tmp_path / "password", tmp_path / "passphrase"
    password_file.write_text(PASSWORD + "\n")
    passphrase_file.write_text(PASSPHRASE + "\n")
    return password_file, passphrase_file


def exported_entries(site: VaultSite, item: EvidenceItem) -> list[str]:
    with site.runtime.database.session() as session:
        return [
            entry.actor
            for entry in custody.entries_for(session, item.id)
            if entry.action == "exported"
        ]


def export(
    site: VaultSite,
    user: str,
    out: Path,
    *items: EvidenceItem | str,
    secrets: tuple[Path, Path] | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
) -> Result:
    """``vigil evidence export`` of ``items``; with ``secrets``, the password and passphrase
    files (otherwise they come from the environment or the prompts)."""
    files: list[str | Path] = (
        [] if secrets is None else ["--password-file", secrets[0], "--passphrase-file", secrets[1]]
    )
    return invoke(*export_args(site, user, out, *items), *files, env=env, stdin=stdin)


def export_args(
    site: VaultSite, user: str, out: Path, *items: EvidenceItem | str
) -> list[str | Path]:
    return [
        "evidence",
        "export",
        "--case",
        "Op Lantern",
        "--user",
        user,
        "--reason",
        REASON,
        "--out",
        out,
        "--data-dir",
        site.settings.data_dir,
        *(item if isinstance(item, str) else item.id for item in items),
    ]


def test_export_with_password_and_passphrase_files_then_open_bundle(
    site: VaultSite, secrets: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = site.preserve(1, "attacker-1"), site.preserve(2, "attacker-2")
    archive = tmp_path / "op-lantern.zip"

    done = export(site, "casey", archive, first, second, secrets=secrets)

    assert done.exit_code == 0, done.output
    assert f"wrote {archive}: 2 items, images encrypted" in done.output
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert exported_entries(site, first) == ["user:casey"]
    with site.runtime.database.session() as session:
        user = user_store.find_user(session, "casey")
        assert user is not None
        assert user.last_login_at is not None  # signed in as the review app does
        # ... but the terminal keeps no browser session open.
        assert session.scalar(select(func.count()).select_from(LoginSession)) == 0

    opened = invoke(
        "evidence",
        "open-bundle",
        archive,
        "--out",
        tmp_path / "opened",
        "--passphrase-file",
        secrets[1],
    )

    assert opened.exit_code == 0, opened.output
    assert (tmp_path / "opened" / f"{first.id}.jpg").read_bytes() == known_image(1)
    assert (tmp_path / "opened" / f"{second.id}.jpg").read_bytes() == known_image(2)


def test_the_password_may_come_from_the_environment_and_the_passphrase_is_asked_twice(
    site: VaultSite, tmp_path: Path
) -> None:
    item = site.preserve(1)
    archive = tmp_path / "bundle.zip"

    password = {"VIGIL_PASSWORD": PASSWORD}
    mismatch = export(
        site, "casey", archive, item, env=password, stdin=f"{PASSPHRASE}\nsomething else\n"
    )
    assert mismatch.exit_code != 0
    assert not archive.exists()

    done = export(site, "casey", archive, item, env=password, stdin=f"{PASSPHRASE}\n{PASSPHRASE}\n")

    assert done.exit_code == 0, done.output
    assert exported_entries(site, item) == ["user:casey"]


def test_a_moderator_is_refused_with_exit_1_and_nothing_is_written(
    site: VaultSite, secrets: tuple[Path, Path], tmp_path: Path
) -> None:
    item = site.preserve(1)
    archive = tmp_path / "bundle.zip"

    refused = export(site, "mo", archive, item, secrets=secrets)

    assert refused.exit_code == 1
    assert "mo is a moderator: only child-safety staff and admins" in refused.output
    assert "Traceback" not in refused.output
    assert not archive.exists()
    assert exported_entries(site, item) == []


def test_a_wrong_password_is_refused_and_counted(
    site: VaultSite, secrets: tuple[Path, Path], tmp_path: Path
) -> None:
    item = site.preserve(1)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password at all\n")

    refused = export(site, "casey", tmp_path / "bundle.zip", item, secrets=(wrong, secrets[1]))

    assert refused.exit_code == 1
    assert "wrong name, password or code" in refused.output
    with site.runtime.database.session() as session:
        user = user_store.find_user(session, "casey")
        assert user is not None
        assert user.failed_logins == 1
    assert not (tmp_path / "bundle.zip").exists()


def test_unknown_items_and_short_passphrases_are_refused_with_a_message(
    site: VaultSite, secrets: tuple[Path, Path], tmp_path: Path
) -> None:
    item = site.preserve(1)
    short = tmp_path / "short"
    short.write_text("too short\n")
    archive = tmp_path / "bundle.zip"

    unknown = export(
        site,
        "casey",
        archive,
        item,
        "00000000-0000-0000-0000-000000000000",
        secrets=secrets,
    )
    too_short = export(site, "casey", archive, item, secrets=(secrets[0], short))

    assert unknown.exit_code == 1
    assert "no evidence item 00000000-0000-0000-0000-000000000000" in unknown.output
    assert too_short.exit_code == 1
    assert "at least 12 characters" in too_short.output
    assert not archive.exists()
    assert exported_entries(site, item) == []


def test_open_bundle_with_a_wrong_passphrase_fails_with_a_message(
    site: VaultSite, secrets: tuple[Path, Path], tmp_path: Path
) -> None:
    item = site.preserve(1)
    archive = tmp_path / "bundle.zip"
    export(site, "casey", archive, item, secrets=secrets)

    failed = invoke(
        "evidence", "open-bundle", archive, "--out", tmp_path / "opened", stdin="wrong guess!!\n"
    )

    assert failed.exit_code == 1
    assert "wrong passphrase" in failed.output
    assert not (tmp_path / "opened").exists()


def test_report_nca_writes_the_json_and_the_summary_per_uploader(
    site: VaultSite, tmp_path: Path
) -> None:
    site.preserve(1, "attacker-1")
    site.preserve(2, "attacker-1")
    site.preserve(3, "attacker-2")
    out = tmp_path / "nca"
    common: list[str | Path] = [
        "--site",
        SITE_NAME,
        "--out",
        out,
        "--data-dir",
        site.settings.data_dir,
    ]

    one = invoke("evidence", "report", "nca", "--uploader", "attacker-1", *common)
    rest = invoke("evidence", "report", "nca", "--all", *common)
    again = invoke("evidence", "report", "nca", "--all", *common)

    assert one.exit_code == 0, one.output
    assert rest.exit_code == 0, rest.output
    assert again.exit_code == 1
    assert "nothing to report to the NCA" in again.output
    with site.runtime.database.session() as session:
        stored = {
            report.id: report
            for report in session.scalars(
                select(AuthorityReport).where(AuthorityReport.authority == "nca")
            )
        }
    assert sorted(path.name for path in out.iterdir()) == [
        f"nca-report-{report_id}.{kind}"
        for report_id in sorted(stored)
        for kind in ("html", "json")
    ]
    for report_id, report in stored.items():
        document = (out / f"nca-report-{report_id}.json").read_text()
        assert document == report.payload
        assert stat.S_IMODE((out / f"nca-report-{report_id}.json").stat().st_mode) == 0o600
        uploader = json.loads(document)["reported_user"]["uploader_id"]
        assert uploader == report.uploader_id
        page = (out / f"nca-report-{report_id}.html").read_text()
        assert f"National Crime Agency: {report_id}" in page
    assert [report.uploader_id for report in stored.values()] == ["attacker-1", "attacker-2"]


def test_open_bundle_of_clear_images_needs_the_printed_manifest_hash_or_unverified(
    site: VaultSite, secrets: tuple[Path, Path], tmp_path: Path
) -> None:
    item = site.preserve(1)
    archive = tmp_path / "bundle.zip"
    done = invoke(
        *export_args(site, "casey", archive, item),
        "--clear-images",
        "--password-file",
        secrets[0],
    )
    assert done.exit_code == 0, done.output
    noted = done.output.split("manifest sha256: ")[1].split()[0]

    def open_into(folder: str, *options: str) -> Result:
        return invoke("evidence", "open-bundle", archive, "--out", tmp_path / folder, *options)

    refused = open_into("refused")
    proven = open_into("proven", "--manifest-sha256", noted.upper())
    unproven = open_into("unproven", "--unverified")

    assert refused.exit_code == 1
    assert "give the manifest SHA-256 printed when it was exported" in refused.output
    assert "Traceback" not in refused.output
    assert not (tmp_path / "refused").exists()
    assert proven.exit_code == 0, proven.output
    assert "every file and the manifest check out" in proven.output
    assert "UNVERIFIED" not in proven.output
    assert (tmp_path / "proven" / f"{item.id}.jpg").read_bytes() == known_image(1)
    assert unproven.exit_code == 0, unproven.output
    assert "WARNING: UNVERIFIED" in unproven.output
    assert "check out" not in unproven.output
    assert (tmp_path / "unproven" / f"{item.id}.jpg").read_bytes() == known_image(1)


def test_open_bundle_refuses_a_zip_bomb_with_a_message(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w") as archive:
        archive.writestr("keys.json", b"{}")
        archive.writestr("manifest.json", b"x")
    raw = bytearray(bomb.read_bytes())
    central = raw.rindex(b"PK\x01\x02")  # manifest.json's entry in the central directory
    raw[central + 24 : central + 28] = (0xFFFFFFFE).to_bytes(4, "little")  # claims ~4 GiB
    bomb.write_bytes(bytes(raw))

    refused = invoke(
        "evidence", "open-bundle", bomb, "--out", tmp_path / "opened", stdin=PASSPHRASE + "\n"
    )

    assert refused.exit_code == 1
    assert "more than a bundle's limit" in refused.output
    assert "Traceback" not in refused.output
    assert not (tmp_path / "opened").exists()
