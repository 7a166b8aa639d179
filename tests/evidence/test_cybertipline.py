"""CyberTipline reports sent to a real HTTP server on 127.0.0.1 that follows NCMEC's sequence
(tests/evidence/ncmec_server.py): a full send, failures that resume the same NCMEC report, the
cases that must start over, retries running out, a refused login, and what queueing refuses."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from tests.evidence.conftest import VaultSite, known_image, open_vault_site
from tests.evidence.ncmec_server import PASSWORD, USERNAME, CyberTiplineServer, cybertipline_server
from tests.receiver import wait_until
from vigil.api.app import create_app
from vigil.config import Settings
from vigil.errors import Conflict, EvidenceError
from vigil.evidence import custody
from vigil.evidence.cybertipline import CyberTipline, CyberTiplineError, retryable_code
from vigil.evidence.ncmec_queue import NcmecNotConfigured, queue_ncmec_report
from vigil.evidence.reports import NothingToReport, report_items
from vigil.evidence.retention import place_hold, purge_expired
from vigil.store.models import AuditEvent, AuthorityReport, AuthorityReportItem, EvidenceItem
from vigil.workers.authority_reports import CyberTiplineSender, SendOutcome

REPORTER = {
    "organisation": "Parents Forum Ltd",
    "first_name": "Tess",
    "last_name": "Safety",
    "email": "trust-and-safety@forum.example.test",
    "country": "GB",
}
BASE_DELAY = 30.0


def ncmec_settings(server: CyberTiplineServer, **overrides: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "base_url": server.base_url,
        "username": USERNAME,
        "password": PASSWORD,
        "timeout_seconds": 5,
        "retry_base_seconds": BASE_DELAY,
        "retry_max_seconds": 2 * BASE_DELAY,
        "max_attempts": 4,
        **overrides,
    }


def reporting_site(
    tmp_path: Path,
    database_url: str | None,
    server: CyberTiplineServer,
    reporter: dict[str, Any] | None = None,
    **ncmec: Any,
) -> VaultSite:
    return open_vault_site(
        tmp_path / "data",
        database_url,
        evidence={"ncmec": ncmec_settings(server, **ncmec), "reporter": reporter or REPORTER},
    )


@pytest.fixture
def server() -> Iterator[CyberTiplineServer]:
    with cybertipline_server() as running:
        yield running


@pytest.fixture
def site(
    tmp_path: Path, database_url: str | None, server: CyberTiplineServer
) -> Iterator[VaultSite]:
    """A reporting site on SQLite and on PostgreSQL (the test runs twice)."""
    opened = reporting_site(tmp_path, database_url, server)
    yield opened
    opened.runtime.close()


def queue(site: VaultSite, uploader: str | None = "attacker-1") -> AuthorityReport:
    with site.runtime.database.write_session() as session:
        return queue_ncmec_report(
            session,
            site.settings,
            site_id=site.site.id,
            uploader_id=uploader,
            actor="user:tess",
            now=site.clock.now(),
        )


def sender(site: VaultSite, settings: Settings | None = None) -> CyberTiplineSender:
    return CyberTiplineSender(
        site.runtime.database, settings or site.settings, site.runtime.vault, site.clock
    )


def stored(site: VaultSite, report_id: int) -> AuthorityReport:
    with site.runtime.database.session() as session:
        report = session.get(AuthorityReport, report_id)
        assert report is not None
        return report


def retry_later(site: VaultSite) -> None:
    """Past any retry delay the settings allow (doubling from 30 s, capped at 60 s, +20 %)."""
    site.clock.advance(2.5 * BASE_DELAY)


# --- a full send ----------------------------------------------------------------------------------


def test_a_report_files_every_item_of_the_uploader_once(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    first, second = site.preserve(11), site.preserve(12)
    site.preserve(13, uploader="someone-else")
    report = queue(site)

    assert sender(site).send_due() == 1

    [filed] = server.finished_reports()
    sent = stored(site, report.id)
    assert (sent.status, sent.external_id) == ("sent", str(filed.report_id))
    assert sent.sent_at == site.clock.now()
    assert filed.xml == sent.payload, "NCMEC received exactly the stored XML"
    assert sorted(filed.files.values()) == sorted([known_image(11), known_image(12)])
    assert set(filed.file_details) == set(filed.files), "every file is described"
    with site.runtime.database.session() as session:
        rows = session.scalars(
            select(AuthorityReportItem).where(AuthorityReportItem.report_id == report.id)
        ).all()
        file_ids = {row.item_id: row.external_file_id or "" for row in rows}
        assert file_ids.keys() == {first.id, second.id}
        assert filed.files[file_ids[first.id]] == known_image(11)
        entries = custody.entries_for(session, first.id)
    assert filed.file_names[file_ids[first.id]] == f"{first.id}.jpg"
    assert sent.progress["files"][first.id]["md5"] == hashlib.md5(known_image(11)).hexdigest()
    assert (
        sent.progress["files"][first.id]["file_details"] == filed.file_details[file_ids[first.id]]
    )
    actions = [(entry.action, entry.actor) for entry in entries]
    assert actions[-2:] == [("exported", "vigil"), ("reported", "vigil")]
    assert entries[-2].details["purpose"] == "ncmec upload"
    assert entries[-1].details["ncmec_report_id"] == str(filed.report_id)
    assert entries[-1].details["ncmec_file_id"] == file_ids[first.id]
    assert server.steps("submit") == 1


def test_a_sent_report_is_not_sent_again(site: VaultSite, server: CyberTiplineServer) -> None:
    site.preserve(21)
    queue(site)
    worker = sender(site)
    worker.send_due()
    retry_later(site)

    assert worker.send_due() == 0
    assert server.steps("submit") == 1


def test_workers_polling_at_once_send_a_report_once(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    site.preserve(26)
    queue(site)
    workers = [sender(site) for _ in range(4)]

    with ThreadPoolExecutor(len(workers)) as pool:
        attempted = list(pool.map(lambda worker: worker.send_due(), workers))

    assert sum(attempted) == 1
    assert server.steps("submit") == 1
    assert len(server.finished_reports()) == 1


# --- an attempt whose lease runs out -------------------------------------------------------------


@pytest.fixture
def patient_site(
    tmp_path: Path, database_url: str | None, server: CyberTiplineServer
) -> Iterator[VaultSite]:
    """A reporting site whose client waits a minute for an answer, so a test can hold one."""
    opened = reporting_site(tmp_path, database_url, server, timeout_seconds=60)
    yield opened
    opened.runtime.close()


def take_over_while_held(
    site: VaultSite, server: CyberTiplineServer, step: str
) -> tuple[SendOutcome, SendOutcome]:
    """The first sender's request for ``step`` hangs past its lease; a second sender takes the
    report over and finishes, then the first one's answer arrives. Returns (first, second)."""
    held = server.pause(step)
    first, second = sender(site), sender(site)
    with ThreadPoolExecutor(1) as pool:
        try:
            slow = pool.submit(first.send_due_reports)
            assert held.arrived.wait(30), f"the first sender never reached {step}"
            site.clock.advance(minutes=10)  # its lease (8 minutes at most) has run out
            [taken_over] = second.send_due_reports()
        finally:
            held.released.set()
        [stopped] = slow.result(timeout=60)
    return stopped, taken_over


def sent_events(site: VaultSite, report_id: int) -> list[str]:
    with site.runtime.database.session() as session:
        return list(
            session.scalars(
                select(AuditEvent.action).where(
                    AuditEvent.subject == str(report_id), AuditEvent.action == "report.ncmec.sent"
                )
            )
        )


def test_a_sender_whose_lease_ran_out_stops_once_another_took_the_report_over(
    patient_site: VaultSite, server: CyberTiplineServer
) -> None:
    site = patient_site
    first_item, second_item = site.preserve(121), site.preserve(122)
    report = queue(site)

    stopped, taken_over = take_over_while_held(site, server, "fileinfo")

    assert taken_over.status == "sent"
    assert stopped.status == "pending"
    assert stopped.error is not None
    assert "another attempt took the report over" in stopped.error
    [filed] = server.reports.values()
    assert filed.finished
    assert sorted(filed.files.values()) == sorted([known_image(121), known_image(122)])
    # The first sender uploaded one file, the second the other; the first, refused its
    # checkpoint after the held description, called NCMEC no more: no upload, no finish.
    assert (server.steps("submit"), server.steps("upload"), server.steps("finish")) == (1, 2, 1)
    sent = stored(site, report.id)
    assert (sent.status, sent.external_id) == ("sent", str(filed.report_id))
    assert (sent.attempts, sent.lease_until, sent.last_error) == (1, None, None)
    assert sent.progress["finished"] is True
    assert sent_events(site, report.id) == ["report.ncmec.sent"]
    with site.runtime.database.session() as session:
        for item in (first_item, second_item):
            entries = custody.entries_for(session, item.id)
            exported = [entry for entry in entries if entry.action == "exported"]
            sent_entries = [entry for entry in entries if entry.details.get("status") == "sent"]
            assert (len(exported), len(sent_entries)) == (1, 1)


def test_an_upload_cut_off_by_a_takeover_makes_the_new_sender_start_over(
    patient_site: VaultSite, server: CyberTiplineServer
) -> None:
    site = patient_site
    site.preserve(131)
    site.preserve(132)
    report = queue(site)

    stopped, taken_over = take_over_while_held(site, server, "upload")

    assert (stopped.status, taken_over.status) == ("pending", "sent")
    abandoned, filed = sorted(server.reports.values(), key=lambda open_: open_.report_id)
    # Whether the held upload would land was unknown, so that report was withdrawn, and the
    # upload, arriving late, found it gone.
    assert abandoned.retracted
    assert abandoned.files == {}
    assert filed.finished
    assert sorted(filed.files.values()) == sorted([known_image(131), known_image(132)])
    assert server.steps("finish") == 1
    sent = stored(site, report.id)
    assert sent.external_id == str(filed.report_id)
    [why] = sent.progress["abandoned"]
    assert why["report_id"] == str(abandoned.report_id)
    assert "outcome is unknown" in why["why"]
    assert sent_events(site, report.id) == ["report.ncmec.sent"]


def test_settling_a_report_takes_item_rows_before_the_custody_head(
    tmp_path: Path, postgres_url: str, server: CyberTiplineServer
) -> None:
    """A hold locks its items, then the custody head; settling must not hold the head while it
    waits for an item, or the two deadlock (PostgreSQL aborts one of them)."""
    site = reporting_site(tmp_path, postgres_url, server)
    try:
        site.preserve(141)
        site.preserve(142)
        report = queue(site)
        site.clock.advance(days=1)  # so settling lengthens the items' retention
        database = site.runtime.database
        with database.session() as session:
            # The item the sender comes to last: item by item, it would hold the head by then.
            second = report_items(session, report.id)[-1]
        with ThreadPoolExecutor(1) as pool:
            with database.session() as holding:
                holding.scalars(
                    select(EvidenceItem).where(EvidenceItem.id == second.id).with_for_update()
                ).all()
                sending = pool.submit(sender(site).send_due_reports)
                wait_until(lambda: waiting_for_locks(site) > 0, what="the sender to wait")
                place_hold(
                    holding,
                    site_id=site.site.id,
                    case_name="Operation Example",
                    reason="police request",
                    item_ids=[second.id],
                    actor="user:tess",
                    now=site.clock.now(),
                )
            [outcome] = sending.result(timeout=60)
        assert outcome.status == "sent"
        assert stored(site, report.id).status == "sent"
        with database.session() as session:
            assert list(custody.check_chain(session)) == []
    finally:
        site.runtime.close()


def waiting_for_locks(site: VaultSite) -> int:
    with site.runtime.database.session() as session:
        waiting = session.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
    return int(waiting or 0)


def test_senders_at_once_on_different_reports_all_send_and_keep_the_chain_whole(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    uploaders = [f"attacker-{number}" for number in range(6)]
    for number, uploader in enumerate(uploaders):
        site.preserve(150 + number, uploader=uploader)
    reports = [queue(site, uploader) for uploader in uploaders]
    workers = [sender(site) for _ in range(3)]

    with ThreadPoolExecutor(len(workers)) as pool:
        # Each claims the reports the others have not: three sends write at once.
        attempted = list(pool.map(lambda worker: worker.send_due(), workers))

    assert sum(attempted) == len(reports)

    assert [stored(site, report.id).status for report in reports] == ["sent"] * len(reports)
    assert len(server.finished_reports()) == len(reports)
    with site.runtime.database.session() as session:
        assert list(custody.check_chain(session)) == []


def test_a_reported_item_is_kept_a_year_after_the_report(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    item = site.preserve(27)
    site.clock.advance(days=300)  # reported late in its retention period
    queue(site)
    sender(site).send_due()
    site.clock.advance(days=200)  # 500 days after it came, 200 after the report

    with site.runtime.database.write_session() as session:
        purged = purge_expired(session, site.runtime.vault, now=site.clock.now(), actor="test")

    assert item.id not in purged.purged
    assert server.finished_reports()


def test_the_server_sends_queued_reports_in_the_background(
    tmp_path: Path, server: CyberTiplineServer
) -> None:
    site = open_vault_site(
        tmp_path / "data",
        None,
        evidence={"ncmec": ncmec_settings(server), "reporter": REPORTER},
        workers={"embedded": True},
    )
    try:
        site.preserve(28)
        with TestClient(create_app(site.runtime)) as client:
            report = queue(site)
            client.app.state.worker.wake()  # type: ignore[attr-defined]
            wait_until(lambda: stored(site, report.id).status == "sent", what="the report sent")
    finally:
        site.runtime.close()
    assert len(server.finished_reports()) == 1


# --- failures that resume the same NCMEC report ---------------------------------------------------


@pytest.mark.parametrize(
    ("step", "kind"), [("upload", "code1000"), ("fileinfo", "http500"), ("finish", "code1000")]
)
def test_a_failed_step_resumes_the_same_ncmec_report(
    site: VaultSite, server: CyberTiplineServer, step: str, kind: str
) -> None:
    site.preserve(31)
    site.preserve(32)
    report = queue(site)
    server.fail_once(step, kind)
    worker = sender(site)

    worker.send_due()
    waiting = stored(site, report.id)
    assert (waiting.status, waiting.attempts) == ("pending", 1)
    assert waiting.last_error is not None
    assert "1000" in waiting.last_error or "500" in waiting.last_error
    opened = waiting.progress["report_id"]
    assert worker.send_due() == 0, "not before the retry delay"

    retry_later(site)
    assert worker.send_due() == 1

    sent = stored(site, report.id)
    assert (sent.status, sent.external_id, sent.attempts) == ("sent", opened, 2)
    assert server.steps("submit") == 1, "no second report was opened"
    [filed] = server.finished_reports()
    assert len(filed.files) == 2, "no file was uploaded twice"


def test_a_finish_whose_answer_was_lost_counts_as_filed(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    site.preserve(41)
    report = queue(site)
    server.fail_once("finish", "after")  # NCMEC files it, the answer never arrives
    worker = sender(site)

    worker.send_due()
    assert stored(site, report.id).status == "pending"
    retry_later(site)
    worker.send_due()  # NCMEC answers 5102: already finished

    [filed] = server.finished_reports()
    sent = stored(site, report.id)
    assert (sent.status, sent.external_id) == ("sent", str(filed.report_id))
    assert server.steps("submit") == 1


# --- cases that start over ------------------------------------------------------------------------


def test_an_upload_that_arrives_altered_is_caught_and_the_report_started_again(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    site.preserve(51)
    report = queue(site)
    server.fail_once("upload", "wrong_md5")
    worker = sender(site)

    worker.send_due()
    waiting = stored(site, report.id)
    assert waiting.status == "pending"
    assert waiting.last_error is not None
    assert "arrived altered" in waiting.last_error
    retry_later(site)
    worker.send_due()

    first, second = sorted(server.reports.values(), key=lambda open_: open_.report_id)
    assert first.retracted, "the damaged report was withdrawn"
    assert not first.finished
    assert second.finished
    assert list(second.files.values()) == [known_image(51)]
    sent = stored(site, report.id)
    assert sent.external_id == str(second.report_id)
    assert sent.progress["abandoned"][0]["report_id"] == str(first.report_id)


def test_an_upload_without_an_answer_starts_over_rather_than_risk_a_duplicate(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    site.preserve(52)
    report = queue(site)
    server.fail_once("upload", "after")  # the file was attached, the answer lost
    worker = sender(site)

    worker.send_due()
    retry_later(site)
    worker.send_due()

    filed = server.finished_reports()
    assert [len(one.files) for one in filed] == [1]
    assert stored(site, report.id).external_id == str(filed[0].report_id)
    assert server.steps("retract") == 1


def test_a_report_left_open_past_ncmecs_expiry_is_retracted_and_sent_anew(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    site.preserve(61)
    report = queue(site)
    server.fail_once("fileinfo", "code1000")
    worker = sender(site)
    worker.send_due()
    stale = stored(site, report.id).progress["report_id"]

    site.clock.advance(hours=2)  # NCMEC deletes an unfinished report 1 h after its last change
    worker.send_due()

    sent = stored(site, report.id)
    assert sent.status == "sent"
    assert sent.external_id != stale
    assert server.reports[int(stale)].retracted
    assert [one.report_id for one in server.finished_reports()] == [int(sent.external_id or 0)]


# --- giving up ------------------------------------------------------------------------------------


def test_retries_run_out_and_the_report_fails_with_the_last_error(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    site.preserve(71)
    report = queue(site)
    server.always_fail.add("submit")
    worker = sender(site)

    for _ in range(4):  # max_attempts
        assert worker.send_due() == 1
        retry_later(site)
    assert worker.send_due() == 0

    failed = stored(site, report.id)
    assert (failed.status, failed.attempts) == ("failed", 4)
    assert failed.last_error == "HTTP 500 from NCMEC (submit)"
    with site.runtime.database.session() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject == str(report.id))
        ).all()
    assert "report.ncmec.failed" in actions


def test_a_refused_login_fails_the_report_at_once_with_a_clear_message(
    tmp_path: Path, server: CyberTiplineServer
) -> None:
    site = reporting_site(tmp_path, None, server, password="not-the-password")
    try:
        site.preserve(81)
        report = queue(site)
        sender(site).send_due()
        failed = stored(site, report.id)
    finally:
        site.runtime.close()
    assert (failed.status, failed.attempts) == ("failed", 1)
    assert failed.last_error is not None
    assert "refused the username or password (HTTP 401)" in failed.last_error
    assert server.reports == {}


def test_a_report_queued_for_the_test_environment_is_never_sent_to_production(
    site: VaultSite, server: CyberTiplineServer
) -> None:
    site.preserve(91)
    report = queue(site)
    evidence = site.settings.evidence
    production = site.settings.model_copy(
        update={
            "evidence": evidence.model_copy(
                update={"ncmec": evidence.ncmec.model_copy(update={"environment": "production"})}
            )
        }
    )

    sender(site, production).send_due()

    failed = stored(site, report.id)
    assert failed.status == "failed"
    assert failed.last_error is not None
    assert "queue the report again" in failed.last_error
    assert server.calls == []


def test_items_awaiting_their_ncmec_report_are_not_purged(site: VaultSite) -> None:
    item = site.preserve(96)
    queue(site)  # NCMEC is down for a long while, say
    site.clock.advance(days=366)

    with site.runtime.database.write_session() as session:
        purged = purge_expired(session, site.runtime.vault, now=site.clock.now(), actor="test")

    assert item.id not in purged.purged


# --- queueing -------------------------------------------------------------------------------------


def test_queueing_covers_the_uploaders_pending_items_and_refuses_a_second_time(
    site: VaultSite,
) -> None:
    item = site.preserve(101)
    report = queue(site)
    with site.runtime.database.session() as session:
        assert [one.id for one in report_items(session, report.id)] == [item.id]
    assert (report.status, report.environment) == ("pending", "test")

    with pytest.raises(NothingToReport, match="to NCMEC for uploader 'attacker-1'"):
        queue(site)


@pytest.mark.parametrize(
    ("ncmec", "reporter", "complaint"),
    [
        ({"enabled": False}, REPORTER, "reports are off"),
        ({"username": ""}, REPORTER, "username is missing"),
        ({"password": ""}, REPORTER, "password is missing"),
        ({}, {**REPORTER, "email": ""}, "reporter.email is missing"),
    ],
)
def test_queueing_refuses_until_ncmec_is_configured(
    tmp_path: Path,
    server: CyberTiplineServer,
    ncmec: dict[str, Any],
    reporter: dict[str, Any],
    complaint: str,
) -> None:
    site = reporting_site(tmp_path, None, server, reporter, **ncmec)
    try:
        site.preserve(111)
        with pytest.raises(NcmecNotConfigured, match=complaint) as refused:
            queue(site)
        with site.runtime.database.session() as session:
            assert session.scalars(select(AuthorityReport)).all() == []
            assert session.scalars(select(EvidenceItem)).all() != []
    finally:
        site.runtime.close()
    assert isinstance(refused.value, EvidenceError)


def test_queueing_with_nothing_pending_is_refused(site: VaultSite) -> None:
    with pytest.raises(Conflict, match="nothing to report to NCMEC for uploader 'nobody'"):
        queue(site, uploader="nobody")


# --- the client on its own ------------------------------------------------------------------------


def test_the_client_checks_its_credentials_with_status(
    server: CyberTiplineServer, tmp_path: Path
) -> None:
    site = reporting_site(tmp_path, None, server)
    try:
        client = CyberTipline(site.settings.evidence.ncmec)
        assert USERNAME in client.status()
        client.close()
        password_file = tmp_path / "ncmec-password"
        password_file.write_text("wrong\n")
        wrong = site.settings.evidence.ncmec.model_copy(
            update={"password": "", "password_file": password_file}
        )
        with pytest.raises(CyberTiplineError, match="HTTP 401") as refused:
            CyberTipline(wrong).status()
    finally:
        site.runtime.close()
    assert refused.value.retryable is False


def test_a_document_ncmec_refuses_is_not_retried(
    server: CyberTiplineServer, tmp_path: Path
) -> None:
    site = reporting_site(tmp_path, None, server)
    try:
        client = CyberTipline(site.settings.evidence.ncmec)
        with pytest.raises(CyberTiplineError) as refused:
            client.submit("<report><reporter/></report>")
        client.close()
    finally:
        site.runtime.close()
    assert (refused.value.code, refused.value.retryable) == (4100, False)


def test_an_answer_with_a_doctype_is_refused(server: CyberTiplineServer, tmp_path: Path) -> None:
    site = reporting_site(tmp_path, None, server)
    server.doctype_answers = True
    try:
        with pytest.raises(CyberTiplineError, match="DOCTYPE"):
            CyberTipline(site.settings.evidence.ncmec).status()
    finally:
        site.runtime.close()


def test_an_unreachable_ncmec_is_worth_retrying(tmp_path: Path, server: CyberTiplineServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    site = reporting_site(tmp_path, None, server)
    try:
        settings = site.settings.evidence.ncmec.model_copy(
            update={"base_url": f"http://127.0.0.1:{closed_port}/ispws"}
        )
        with pytest.raises(CyberTiplineError, match="cannot reach NCMEC") as failed:
            CyberTipline(settings).status()
    finally:
        site.runtime.close()
    assert (failed.value.retryable, failed.value.ambiguous) == (True, False)


@pytest.mark.parametrize(
    ("code", "retryable"),
    [(1000, True), (1110, True), (2000, False), (3100, False), (3300, False), (4100, False)],
)
def test_response_codes_say_whether_trying_again_may_help(code: int, retryable: bool) -> None:
    assert retryable_code(code) is retryable
