"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it accepts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class MailServer:
    host: str
    port: int
    received: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def messages(self) -> list[ReceivedMail]:
        with self.lock:
            return list(self.received)

    # aiosmtpd's handler hook: called once per accepted message.
    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.received.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


def free_port() -> int:
    # aiosmtpd checks its server is up by connecting to the port it was given, so it needs a
    # real number rather than 0.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


MakeMailServer = Callable[..., MailServer]


@pytest.fixture
def make_smtp_server() -> Iterator[MakeMailServer]:
    """``make_smtp_server(**options)``: a server started with aiosmtpd's SMTP ``options``."""
    controllers: list[Controller] = []

    def start(**options: Any) -> MailServer:
        server = MailServer("127.0.0.1", free_port())
        controller = Controller(server, hostname=server.host, port=server.port, **options)
        controller.start()
        controllers.append(controller)
        return server

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def smtp_server(make_smtp_server: MakeMailServer) -> MailServer:
    return make_smtp_server()


def password_checker(username: str, password: str) -> Callable[..., AuthResult]:
    """An aiosmtpd authenticator that lets in exactly one username and password."""

    def check(
        _server: Any, _session: Any, _envelope: Any, _mechanism: str, credentials: Any
    ) -> AuthResult:
        accepted = isinstance(credentials, LoginPassword) and (
            credentials.login.decode(),
            credentials.password.decode(),
        ) == (username, password)
        # handled=False: aiosmtpd answers 535 itself when the check fails.
        return AuthResult(success=accepted, handled=False)

    return check


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port where nothing listens: bound (so nobody else takes it) but never listening."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        yield int(placeholder.getsockname()[1])
