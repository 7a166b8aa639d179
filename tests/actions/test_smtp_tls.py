"""E-mail pages over TLS: STARTTLS and implicit TLS to a real SMTP server whose certificate comes
from a test CA, trusted only when the settings name it."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from pydantic import ValidationError

from tests.actions.conftest import MailServer, MakeMailServer, password_checker
from tests.actions.test_paging import message_about
from vigil.actions.channels import ChannelSender, PageDeliveryError
from vigil.actions.incidents import IncidentKind
from vigil.config import ChannelSettings, PagingSettings

ADDRESS = "oncall@forum.example"
LOGIN = ("vigil", "a long relay password")
CHANNEL = ChannelSettings(name="oncall-mail", kind="email", to=[ADDRESS])


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "relay-ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    return context


def paging(
    port: int, security: str, ca_file: Path | None, *, login: bool = False
) -> PagingSettings:
    smtp: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "security": security,
        "ca_file": ca_file,
        "timeout_seconds": 5,
    }
    if login:
        smtp |= {"username": LOGIN[0], "password": LOGIN[1]}
    return PagingSettings.model_validate({"channels": [CHANNEL.model_dump()], "smtp": smtp})


@pytest.fixture
def starttls_server(make_smtp_server: MakeMailServer, server_context: ssl.SSLContext) -> MailServer:
    # The server refuses mail and logins before STARTTLS: a client that skipped it would fail.
    return make_smtp_server(
        tls_context=server_context,
        require_starttls=True,
        auth_require_tls=True,
        authenticator=password_checker(*LOGIN),
    )


def send(settings: PagingSettings) -> None:
    sender = ChannelSender(settings)
    try:
        sender.send(CHANNEL, message_about(IncidentKind.KNOWN_ILLEGAL, "forum: known image"))
    finally:
        sender.close()


def test_a_page_is_mailed_over_starttls_with_a_login(
    starttls_server: MailServer, ca_file: Path
) -> None:
    send(paging(starttls_server.port, "starttls", ca_file, login=True))

    (mail,) = starttls_server.messages()
    assert mail.recipients == [ADDRESS]
    assert mail.message["Subject"] == "[Vigil] forum: known image"


def test_a_page_is_mailed_over_implicit_tls(
    make_smtp_server: MakeMailServer, server_context: ssl.SSLContext, ca_file: Path
) -> None:
    server = make_smtp_server(ssl_context=server_context)

    send(paging(server.port, "tls", ca_file))

    (mail,) = server.messages()
    assert mail.recipients == [ADDRESS]


def test_a_server_certificate_nobody_trusts_is_refused(starttls_server: MailServer) -> None:
    # Without the CA file the system's CAs are used, and they never signed the test CA.
    with pytest.raises(PageDeliveryError, match="SSLCertVerificationError"):
        send(paging(starttls_server.port, "starttls", None, login=True))

    assert starttls_server.messages() == []


def test_a_certificate_for_another_name_is_refused(
    make_smtp_server: MakeMailServer, authority: trustme.CA, ca_file: Path
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("relay.forum.example").configure_cert(context)
    server = make_smtp_server(tls_context=context, require_starttls=True)

    with pytest.raises(PageDeliveryError, match="SSLCertVerificationError"):
        send(paging(server.port, "starttls", ca_file))

    assert server.messages() == []


def test_a_ca_file_that_is_not_there_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no CA file at"):
        paging(25, "starttls", tmp_path / "missing.pem")
