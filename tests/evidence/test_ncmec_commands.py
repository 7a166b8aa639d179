"""``vigil evidence report ncmec|send|retry|show`` and ``vigil evidence reports`` on a real data
folder whose vigil.toml points at the stand-in CyberTipline server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.evidence.conftest import VaultSite, invoke, open_vault_site, succeed
from tests.evidence.ncmec_server import PASSWORD, USERNAME, CyberTiplineServer, cybertipline_server
from tests.test_cli import (
    _no_vigil_environment,  # noqa: F401 - autouse fixture
    assert_error_without_traceback,
    run_process,
)
from vigil.errors import Conflict, InvalidRequest
from vigil.evidence.ncmec_queue import NcmecNotConfigured
from vigil.store.models import AuthorityReport


def write_config(data_dir: Path, server: CyberTiplineServer, *, password: str = PASSWORD) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "vigil.toml").write_text(
        f"""
[evidence.reporter]
organisation = "Parents Forum Ltd"
first_name = "Tess"
last_name = "Safety"
email = "trust-and-safety@forum.example.test"

[evidence.ncmec]
enabled = true
base_url = "{server.base_url}"
username = "{USERNAME}"
password = "{password}"
timeout_seconds = 5
max_attempts = 1
"""
    )


@pytest.fixture
def server() -> Iterator[CyberTiplineServer]:
    with cybertipline_server() as running:
        yield running


@pytest.fixture
def data_dir(tmp_path: Path, server: CyberTiplineServer) -> Path:
    folder = tmp_path / "data"
    write_config(folder, server)
    return folder


@pytest.fixture
def site(data_dir: Path) -> Iterator[VaultSite]:
    opened = open_vault_site(data_dir, None)
    yield opened
    opened.runtime.close()


def report_rows(site: VaultSite) -> list[AuthorityReport]:
    with site.runtime.database.session() as session:
        return list(session.scalars(select(AuthorityReport).order_by(AuthorityReport.id)))


def test_queue_list_send_and_show_a_report_from_the_terminal(
    site: VaultSite, data_dir: Path, server: CyberTiplineServer
) -> None:
    site.preserve(1)
    site.preserve(2)
    site.preserve(3, uploader="someone-else")

    queued = succeed(
        "evidence", "report", "ncmec", "--uploader", "attacker-1", "--data-dir", data_dir
    )
    [report] = report_rows(site)
    assert f"queued NCMEC report {report.id}: uploader attacker-1 on parents-forum, 2 item(s)" in (
        queued.output
    )
    listed = succeed("evidence", "reports", "--authority", "ncmec", "--data-dir", data_dir)
    assert "attacker-1" in listed.output
    assert "pending" in listed.output
    assert server.calls == [], "queueing sends nothing"

    sent = succeed("evidence", "report", "send", "--data-dir", data_dir)

    [filed] = server.finished_reports()
    assert f"report {report.id}: sent (CyberTipline report {filed.report_id})" in sent.output
    shown = succeed("evidence", "report", "show", str(report.id), "--data-dir", data_dir)
    assert f"external id: {filed.report_id}" in shown.output
    assert filed.xml in shown.output, "the exact XML sent"
    for details in filed.file_details.values():
        assert details in shown.output
    assert '"finished": true' in shown.output
    listed = succeed("evidence", "reports", "--data-dir", data_dir)
    assert str(filed.report_id) in listed.output


def test_queue_all_makes_one_report_per_uploader(site: VaultSite, data_dir: Path) -> None:
    site.preserve(11)
    site.preserve(12, uploader="someone-else")

    succeed("evidence", "report", "ncmec", "--all", "--data-dir", data_dir)

    assert sorted(row.uploader_id or "" for row in report_rows(site)) == [
        "attacker-1",
        "someone-else",
    ]
    again = invoke("evidence", "report", "ncmec", "--all", "--data-dir", data_dir)
    assert again.exit_code != 0
    assert "nothing of any uploader awaits an NCMEC report" in str(again.exception)


def test_queue_needs_exactly_one_of_uploader_and_all(data_dir: Path) -> None:
    for args in ([], ["--all", "--uploader", "x"]):
        result = invoke("evidence", "report", "ncmec", *args, "--data-dir", data_dir)
        assert isinstance(result.exception, InvalidRequest)


def test_a_failed_report_is_retried_from_the_terminal(
    tmp_path: Path, server: CyberTiplineServer
) -> None:
    data_dir = tmp_path / "data"
    write_config(data_dir, server, password="wrong")
    site = open_vault_site(data_dir, None)
    try:
        site.preserve(21)
        succeed("evidence", "report", "ncmec", "--uploader", "attacker-1", "--data-dir", data_dir)
        failed = invoke("evidence", "report", "send", "--data-dir", data_dir)
        assert failed.exit_code == 1
        assert "failed: NCMEC refused the username or password (HTTP 401)" in failed.output
        [report] = report_rows(site)

        write_config(data_dir, server)  # the password is put right
        succeed("evidence", "report", "retry", str(report.id), "--data-dir", data_dir)
        succeed("evidence", "report", "send", "--data-dir", data_dir)
        [sent] = report_rows(site)
    finally:
        site.runtime.close()
    assert sent.status == "sent"
    assert sent.external_id == str(server.finished_reports()[0].report_id)
    again = invoke("evidence", "report", "retry", str(report.id), "--data-dir", data_dir)
    assert isinstance(again.exception, Conflict)


def test_send_refuses_while_ncmec_is_not_configured(tmp_path: Path) -> None:
    result = invoke("evidence", "report", "send", "--data-dir", tmp_path / "data")
    assert isinstance(result.exception, NcmecNotConfigured)
    assert "reports are off" in str(result.exception)


def test_an_unknown_report_is_one_line_without_a_traceback(data_dir: Path) -> None:
    process = run_process("evidence", "report", "show", "99", "--data-dir", data_dir)
    assert_error_without_traceback(process, "no report 99")
