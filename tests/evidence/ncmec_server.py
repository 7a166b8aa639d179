"""A stand-in for NCMEC's CyberTipline API on 127.0.0.1, following the documented sequence.

It checks Basic auth (401 with an empty body otherwise), parses every XML document it is sent
and checks its elements against the schema's order (4100 when one is out of order or empty, as
NCMEC does), hands out report ids, takes multipart uploads (fields ``id`` and ``file``) and
answers with a file id and the MD5 it received, accepts file details only for that report's
files, answers ``/finish`` with every file id, and 5102 to a second finish. A test can make one
step fail once (HTTP 500, response code 1000, a wrong MD5, or failing *after* doing the work),
or hold the next request for a step until it lets it go (a slow answer).

The element orders below are copied from the facts file on NCMEC's XSD, independently of the
code under test.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs
from xml.etree.ElementTree import Element, ParseError, fromstring
from xml.sax.saxutils import escape

USERNAME, PASSWORD = "vigil-esp", "correct horse battery staple"

REPORT_ORDER = [
    "batchedReport",
    "incidentSummary",
    "internetDetails",
    "lawEnforcement",
    "reporter",
    "personOrUserReported",
    "intendedRecipient",
    "victim",
    "additionalInfo",
]
INCIDENT_SUMMARY_ORDER = [
    "incidentType",
    "platform",
    "escalateToHighPriority",
    "reportAnnotations",
    "incidentDateTime",
    "incidentDateTimeDescription",
]
REPORTER_ORDER = [
    "reportingPerson",
    "contactPerson",
    "companyTemplate",
    "termsOfService",
    "legalURL",
]
PERSON_ORDER = [
    "firstName",
    "lastName",
    "phone",
    "email",
    "address",
    "age",
    "ageAssertionDiscrepancy",
    "dateOfBirth",
]
PERSON_OR_USER_REPORTED_ORDER = [
    "personOrUserReportedPerson",
    "vehicleDescription",
    "espIdentifier",
    "espService",
    "compromisedAccount",
    "screenName",
    "displayName",
    "profileUrl",
    "profileBio",
    "ipCaptureEvent",
    "deviceId",
    "thirdPartyUserReported",
    "priorCTReports",
    "groupIdentifier",
    "accountTemporarilyDisabled",
    "accountPermanentlyDisabled",
    "estimatedLocation",
    "allEmailsReported",
    "associatedAccount",
    "additionalInfo",
]
IP_CAPTURE_EVENT_ORDER = ["ipAddress", "eventName", "dateTime", "possibleProxy", "port"]
FILE_DETAILS_ORDER = [
    "reportId",
    "fileId",
    "fileName",
    "originalFileName",
    "uploadedToEspTimestamp",
    "locationOfFile",
    "fileViewedByEsp",
    "exifViewedByEsp",
    "publiclyAvailable",
    "fileRelevance",
    "fileAnnotations",
    "industryClassification",
    "originalFileHash",
    "ipCaptureEvent",
    "deviceId",
    "details",
    "additionalInfo",
]
WEB_PAGE_INCIDENT_ORDER = ["url", "additionalInfo"]
ORDERS = {
    "report": REPORT_ORDER,
    "incidentSummary": INCIDENT_SUMMARY_ORDER,
    "reporter": REPORTER_ORDER,
    "reportingPerson": PERSON_ORDER,
    "personOrUserReportedPerson": PERSON_ORDER,
    "personOrUserReported": PERSON_OR_USER_REPORTED_ORDER,
    "ipCaptureEvent": IP_CAPTURE_EVENT_ORDER,
    "fileDetails": FILE_DETAILS_ORDER,
    "webPageIncident": WEB_PAGE_INCIDENT_ORDER,
    "nameValuePair": ["name", "value"],
}
IP_EVENT_NAMES = {"Login", "Registration", "Purchase", "Upload", "Other", "Unknown"}


def schema_problems(root: Element) -> list[str]:
    """What NCMEC's validation (4100) would object to: order, unknown or empty elements."""
    problems = []
    for element in root.iter():
        if not len(element) and not (element.text or "").strip():
            problems.append(f"empty <{element.tag}>")
        order = ORDERS.get(element.tag)
        if order is None:
            continue
        tags = [child.tag for child in element]
        unknown = [tag for tag in tags if tag not in order]
        if unknown:
            problems.append(f"<{element.tag}> has unknown children {unknown}")
        elif tags != sorted(tags, key=order.index):
            problems.append(f"<{element.tag}> children out of order: {tags}")
    for event in root.iter("ipCaptureEvent"):
        name = event.findtext("eventName")
        if name is not None and name not in IP_EVENT_NAMES:
            problems.append(f"eventName {name!r}")
    return problems


@dataclass
class OpenReport:
    report_id: int
    xml: str
    files: dict[str, bytes] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)
    file_details: dict[str, str] = field(default_factory=dict)
    finished: bool = False
    retracted: bool = False


@dataclass
class Failure:
    """One planned failure of a step: ``http500``, ``code1000``, ``wrong_md5`` or ``after``
    (the step takes effect, then the answer is an HTTP 500: an answer lost on the way)."""

    step: str
    kind: str


@dataclass
class Pause:
    """The next request for ``step``, held on arrival (before it takes effect) until released."""

    step: str
    arrived: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)


@dataclass
class CyberTiplineServer:
    base_url: str = ""
    reports: dict[int, OpenReport] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)  # (step, HTTP status)
    failures: list[Failure] = field(default_factory=list)
    always_fail: set[str] = field(default_factory=set)
    pauses: dict[str, Pause] = field(default_factory=dict)
    password: str = PASSWORD
    doctype_answers: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 4564654

    def fail_once(self, step: str, kind: str = "http500") -> None:
        with self.lock:
            self.failures.append(Failure(step, kind))

    def pause(self, step: str) -> Pause:
        with self.lock:
            held = self.pauses[step] = Pause(step)
        return held

    def steps(self, step: str) -> int:
        with self.lock:
            return sum(1 for name, _ in self.calls if name == step)

    def finished_reports(self) -> list[OpenReport]:
        with self.lock:
            return [report for report in self.reports.values() if report.finished]

    def _planned(self, step: str) -> str | None:
        if step in self.always_fail:
            return "http500"
        for failure in self.failures:
            if failure.step == step:
                self.failures.remove(failure)
                return failure.kind
        return None

    def handle(self, step: str, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        with self.lock:
            pause = self.pauses.pop(step, None)
        if pause is not None:  # waits outside the lock: other requests go on meanwhile
            pause.arrived.set()
            pause.released.wait(timeout=60)
        with self.lock:
            expected = base64.b64encode(f"{USERNAME}:{self.password}".encode()).decode()
            if headers.get("authorization") != f"Basic {expected}":
                self.calls.append((step, 401))
                return 401, ""
            planned = self._planned(step)
            if planned == "http500":
                self.calls.append((step, 500))
                return 500, "<html><body>Internal Server Error</body></html>"
            if planned == "code1000":
                self.calls.append((step, 200))
                return 200, _response(1000, "Server error")
            status, answer = self._do(step, headers, body, wrong_md5=planned == "wrong_md5")
            if planned == "after":
                status, answer = 500, ""
            self.calls.append((step, status))
            if self.doctype_answers:
                answer = '<!DOCTYPE r [<!ENTITY e "x">]>' + answer
            return status, answer

    def _do(
        self, step: str, headers: dict[str, str], body: bytes, *, wrong_md5: bool
    ) -> tuple[int, str]:
        if step == "status":
            return 200, _response(0, f"Remote User : {USERNAME}")
        if step in ("submit", "fileinfo"):
            if not headers.get("content-type", "").startswith("text/xml"):
                return 200, _response(4000, "Invalid request")
            try:
                root = fromstring(body)
            except ParseError:
                return 200, _response(4110, "Malformed XML")
            problems = schema_problems(root)
            if problems:
                return 200, _response(4100, "Validation failed: " + "; ".join(problems))
            return self._submit(root, body) if step == "submit" else self._file_info(root, body)
        if step == "upload":
            return self._upload(headers, body, wrong_md5=wrong_md5)
        form = parse_qs(body.decode())
        report = self._open(form.get("id", [""])[0])
        if report is None:
            return 200, _response(5001, "Report does not exist")
        if step == "finish":
            if report.retracted:
                return 200, _response(5001, "Report does not exist")
            if report.finished:
                return 200, _response(5102, "Report already finished")
            report.finished = True
            files = "".join(f"<fileId>{file_id}</fileId>" for file_id in report.files)
            return 200, (
                "<reportDoneResponse><responseCode>0</responseCode>"
                f"<reportId>{report.report_id}</reportId><files>{files}</files>"
                "</reportDoneResponse>"
            )
        if step == "retract":
            if report.finished:
                return 200, _response(5102, "Report already finished")
            if report.retracted:
                return 200, _response(5101, "Report already retracted")
            report.retracted = True
            return 200, _response(0, "Success", report.report_id)
        return 404, ""

    def _open(self, text: str) -> OpenReport | None:
        return self.reports.get(int(text)) if text.isdigit() else None

    def _submit(self, root: Element, body: bytes) -> tuple[int, str]:
        if root.tag != "report" or root.find("reporter/reportingPerson/email") is None:
            return 200, _response(4100, "Validation failed: a report with a reporter email")
        self._next_id += 1
        report = OpenReport(self._next_id, body.decode("utf-8"))
        self.reports[report.report_id] = report
        return 200, _response(0, "Success", report.report_id)

    def _file_info(self, root: Element, body: bytes) -> tuple[int, str]:
        report = self._open(root.findtext("reportId") or "")
        if report is None or report.retracted:
            return 200, _response(5001, "Report does not exist")
        file_id = root.findtext("fileId") or ""
        if file_id not in report.files:
            return 200, _response(5002, "File does not exist")
        report.file_details[file_id] = body.decode("utf-8")
        return 200, _response(0, "Success", report.report_id)

    def _upload(self, headers: dict[str, str], body: bytes, *, wrong_md5: bool) -> tuple[int, str]:
        fields, file_name, data = _multipart(headers.get("content-type", ""), body)
        report = self._open(fields.get("id", ""))
        if report is None or report.retracted or report.finished:
            return 200, _response(5001, "Report does not exist")
        if data is None or not file_name:
            return 200, _response(4200, "Malformed file")
        file_id = uuid.uuid4().hex
        report.files[file_id] = data
        report.file_names[file_id] = file_name
        md5 = hashlib.md5(data + (b"!" if wrong_md5 else b"")).hexdigest()
        return 200, _response(0, "Success", report.report_id, file_id=file_id, md5=md5)


def _response(
    code: int, description: str, report_id: int | None = None, *, file_id: str = "", md5: str = ""
) -> str:
    parts = [f"<responseCode>{code}</responseCode>"]
    parts.append(f"<responseDescription>{escape(description)}</responseDescription>")
    if report_id is not None:
        parts.append(f"<reportId>{report_id}</reportId>")
    if file_id:
        parts.append(f"<fileId>{file_id}</fileId><hash>{md5}</hash>")
    return "<reportResponse>" + "".join(parts) + "</reportResponse>"


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], str | None, bytes | None]:
    """The form fields, and the ``file`` part's name and bytes."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    file_name, data = None, None
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        if name == "file":
            file_name, data = part.get_filename(), payload
        else:
            fields[name] = payload.decode()
    return fields, file_name, data


@contextmanager
def cybertipline_server() -> Iterator[CyberTiplineServer]:
    server_state = CyberTiplineServer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            step = self.path.rstrip("/").rsplit("/", 1)[-1]
            headers = {name.lower(): value for name, value in self.headers.items()}
            status, answer = server_state.handle(step, headers, body)
            encoded = answer.encode("utf-8")
            self.send_response(status)
            if encoded:
                self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(encoded)))
            self.end_headers()
            self.wfile.write(encoded)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.base_url = f"http://127.0.0.1:{server.server_address[1]}/ispws"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
