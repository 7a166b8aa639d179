"""A client for NCMEC's CyberTipline reporting API: submit, upload, fileinfo, finish, retract.

Every call answers with a small XML document whose ``responseCode`` is 0 on success; a 2xx
HTTP status alone proves nothing. Errors say whether trying again may help: NCMEC's 1xxx codes,
HTTP 5xx, timeouts and dropped connections may pass; a refused login (HTTP 401, codes
2000-3300) or a refused document (4xxx) will fail the same way every time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from xml.etree.ElementTree import Element, ParseError, fromstring

import httpx

from vigil import __version__
from vigil.config import NcmecSettings
from vigil.evidence.ncmec_queue import NcmecNotConfigured

XML_CONTENT_TYPE = "text/xml; charset=utf-8"
_MAX_RESPONSE_BYTES = 1024 * 1024
SUCCESS = 0
REPORT_NOT_FOUND = 5001  # no such report, or it expired unfinished
FILE_NOT_FOUND = 5002
ALREADY_RETRACTED = 5101
ALREADY_FINISHED = 5102


class CyberTiplineError(Exception):
    """A call NCMEC did not accept. ``code`` is NCMEC's response code, when it sent one."""

    def __init__(
        self, code: int | None, description: str, *, retryable: bool, ambiguous: bool = False
    ) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retryable = retryable
        # The request may have reached NCMEC and taken effect though no answer came back.
        self.ambiguous = ambiguous

    @property
    def message(self) -> str:
        prefix = f"NCMEC code {self.code}: " if self.code is not None else ""
        return prefix + self.description


class UploadAltered(CyberTiplineError):
    """NCMEC received a file whose MD5 is not the one sent: it must not stay in the report."""

    def __init__(self, file_id: str, sent: str, received: str) -> None:
        super().__init__(
            None,
            f"file {file_id} arrived altered (MD5 {received}, sent {sent})",
            retryable=True,
        )
        self.file_id = file_id


@dataclass(frozen=True)
class Uploaded:
    file_id: str
    md5: str


@dataclass(frozen=True)
class Finished:
    file_ids: list[str]
    already: bool  # an earlier finish went through (its answer was lost)


class Retracted(Enum):
    RETRACTED = "retracted"  # it was open and is gone now
    GONE = "gone"  # it no longer exists (expired), or was already retracted
    FINISHED = "finished"  # too late: it was filed


def retryable_code(code: int) -> bool:
    """Server-side trouble (1xxx) and codes NCMEC has not documented may pass; refused logins,
    permissions (2000-3300) and refused documents (4xxx) never do."""
    return not (2000 <= code < 5000)


def read_password(settings: NcmecSettings) -> str:
    if settings.password:
        return settings.password
    if settings.password_file is None:
        raise NcmecNotConfigured("no NCMEC password: set evidence.ncmec.password_file")
    try:
        return settings.password_file.read_text(encoding="utf-8").strip()
    except OSError as error:
        raise NcmecNotConfigured(
            f"cannot read the NCMEC password file {settings.password_file}: {error.strerror}"
        ) from error


class CyberTipline:
    """One connection to the CyberTipline API at the configured environment's address."""

    def __init__(self, settings: NcmecSettings) -> None:
        self._settings = settings
        self._client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return self._settings.resolved_base_url

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _http(self) -> httpx.Client:
        # Made on first use, so a missing password is a report's error, not the server's.
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url + "/",
                auth=(self._settings.username, read_password(self._settings)),
                timeout=self._settings.timeout_seconds,
                follow_redirects=False,
                headers={"User-Agent": f"Vigil/{__version__}"},
            )
        return self._client

    def status(self) -> str:
        """Checks the address and the credentials; NCMEC's description of the connection."""
        return _text(self._call("GET", "status"), "responseDescription") or "ok"

    def submit(self, report_xml: str) -> str:
        """Opens a report; its id (a number, kept as text)."""
        answer = self._call("POST", "submit", xml=report_xml)
        return _required(answer, "reportId")

    def upload(
        self,
        report_id: str,
        filename: str,
        data: bytes,
        media_type: str = "application/octet-stream",
    ) -> Uploaded:
        """Attaches a file to an open report, checking NCMEC received exactly ``data``."""
        answer = self._call(
            "POST",
            "upload",
            data={"id": report_id},
            files={"file": (filename, data, media_type)},
        )
        uploaded = Uploaded(_required(answer, "fileId"), _required(answer, "hash").lower())
        sent = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if uploaded.md5 != sent:
            raise UploadAltered(uploaded.file_id, sent, uploaded.md5)
        return uploaded

    def file_info(self, file_details_xml: str) -> None:
        self._call("POST", "fileinfo", xml=file_details_xml)

    def finish(self, report_id: str) -> Finished:
        """Files the report. Finishing one already finished counts as success."""
        try:
            answer = self._call("POST", "finish", data={"id": report_id})
        except CyberTiplineError as error:
            if error.code == ALREADY_FINISHED:
                return Finished([], already=True)
            raise
        files = answer.find("files")
        found = files.findall("fileId") if files is not None else answer.findall("fileId")
        return Finished([(entry.text or "").strip() for entry in found], already=False)

    def retract(self, report_id: str) -> Retracted:
        """Withdraws an unfinished report; says what became of it."""
        try:
            self._call("POST", "retract", data={"id": report_id})
        except CyberTiplineError as error:
            if error.code in (REPORT_NOT_FOUND, ALREADY_RETRACTED):
                return Retracted.GONE
            if error.code == ALREADY_FINISHED:
                return Retracted.FINISHED
            raise
        return Retracted.RETRACTED

    def _call(
        self,
        method: str,
        path: str,
        *,
        xml: str | None = None,
        data: dict[str, str] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> Element:
        headers = {"Content-Type": XML_CONTENT_TYPE} if xml is not None else None
        content = xml.encode("utf-8") if xml is not None else None
        try:
            response = self._http().request(
                method, path, content=content, data=data, files=files, headers=headers
            )
        except httpx.TimeoutException as error:
            raise CyberTiplineError(
                None,
                f"no answer from NCMEC within the timeout ({path})",
                retryable=True,
                ambiguous=True,
            ) from error
        except httpx.TransportError as error:
            raise CyberTiplineError(
                None,
                f"cannot reach NCMEC at {self.base_url} ({type(error).__name__}: {error})",
                retryable=True,
                # A refused connection never sent anything; anything later might have.
                ambiguous=not isinstance(error, httpx.ConnectError),
            ) from error
        return _answer(response, path)


def _answer(response: httpx.Response, path: str) -> Element:
    """The response document when it says success; a :class:`CyberTiplineError` otherwise."""
    status = response.status_code
    if status == 401:
        raise CyberTiplineError(
            None,
            "NCMEC refused the username or password (HTTP 401): check "
            "evidence.ncmec.username and the password for this environment",
            retryable=False,
        )
    body = response.content[:_MAX_RESPONSE_BYTES]
    document = _parse(body) if body.strip() else None
    code = _code(document) if document is not None else None
    if code is not None and code != SUCCESS:
        description = _text(document, "responseDescription") if document is not None else None
        raise CyberTiplineError(
            code,
            f"{description or 'refused'} ({path}, HTTP {status})",
            retryable=retryable_code(code),
        )
    if not 200 <= status < 300:
        raise CyberTiplineError(
            None,
            f"HTTP {status} from NCMEC ({path})",
            # Over capacity or down: it may pass. Any other refusal will not.
            retryable=status >= 500 or status in (408, 429),
            ambiguous=status >= 500,
        )
    if document is None or code is None:
        raise CyberTiplineError(
            None, f"NCMEC's answer to {path} has no responseCode", retryable=True, ambiguous=True
        )
    return document


def _parse(body: bytes) -> Element | None:
    """The answer as XML; a document type (and with it entity expansion) is refused."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise CyberTiplineError(None, "NCMEC's answer declares a DOCTYPE: refused", retryable=True)
    try:
        # Without a DOCTYPE there are no entities to expand: expat reads no external resources.
        return fromstring(body)  # noqa: S314
    except ParseError:
        return None  # an HTML error page from a proxy: judged by its status


def _code(document: Element) -> int | None:
    text = _text(document, "responseCode")
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _text(document: Element, tag: str) -> str | None:
    found = document.find(tag)
    text = (found.text or "").strip() if found is not None else ""
    return text or None


def _required(document: Element, tag: str) -> str:
    value = _text(document, tag)
    if value is None:
        raise CyberTiplineError(None, f"NCMEC's answer lacks {tag}", retryable=True, ambiguous=True)
    return value
