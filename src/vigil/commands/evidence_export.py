"""``vigil evidence export`` / ``open-bundle`` (the police bundle) and ``report nca``.

Exporting takes evidence out of the vault, so it is done as a named review-app user who signs in
here with their password (and code, if they have a second factor) and writes down why: the
custody log then says who, not just which shell account. A moderator is refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from vigil.clock import SystemClock
from vigil.commands.common import (
    DEFAULT_SITE,
    ConfigFile,
    DataDir,
    SiteOption,
    actor,
    console,
    errors,
    open_database,
)
from vigil.commands.evidence import evidence_app
from vigil.commands.evidence_reports import report_app  # `report nca` joins `report ncmec`
from vigil.config import Settings
from vigil.errors import InvalidRequest, Unauthenticated, VigilError
from vigil.evidence import bundle, bundle_open, nca, reports
from vigil.evidence.reports import Authority
from vigil.evidence.vault import Accessor, Vault
from vigil.review import accounts
from vigil.roles import UserRole
from vigil.store import users as user_store
from vigil.store.database import Database
from vigil.store.sites import get_site

PASSWORD_VARIABLE = "VIGIL_PASSWORD"  # noqa: S105 - the name of a variable, not a password


@contextmanager
def _refusals() -> Iterator[None]:
    """A refusal or bad input prints as one line and exits 1, never as a traceback."""
    try:
        yield
    except VigilError as error:
        errors.print(f"error: {error.message}", style="red", highlight=False)
        raise typer.Exit(1) from error


def _read_secret(path: Path) -> str:
    """A password or passphrase file: its text without the final line break."""
    try:
        return path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidRequest(f"cannot read {path}: {error}") from error


def _sign_in(
    database: Database, settings: Settings, name: str, password_file: Path | None, code: str
) -> UserRole:
    """Check the user's password (and code) as the review app's sign-in does; their role."""
    if password_file is not None:
        password = _read_secret(password_file)
    else:
        password = os.environ.get(PASSWORD_VARIABLE) or typer.prompt(
            f"password of {name}", hide_input=True
        )
    with database.session() as session:
        user = user_store.find_user(session, name)
        wants_code = user is not None and user.totp_secret is not None
    if wants_code and not code:
        code = typer.prompt("code from the authenticator app")
    refused: Unauthenticated | None = None
    with database.write_session() as session:
        try:
            login = accounts.log_in(
                session, settings.review, name, password, code, SystemClock().now()
            )
        except Unauthenticated as error:
            refused = error  # the failure count must be committed, so it is raised below
        else:
            # The terminal needs no browser session: end the one signing in started.
            user_store.end_login_session(session, login.token)
            role = UserRole(login.user.role)
    if refused is not None:
        raise refused
    return role


@evidence_app.command("export")
def export(
    items: Annotated[list[str], typer.Argument(metavar="ITEMS...", help="Item ids.")],
    case: Annotated[str, typer.Option("--case", help="The case, as the investigators name it.")],
    user: Annotated[str, typer.Option("--user", help="Your review-app user name.")],
    reason: Annotated[str, typer.Option("--reason", help="Why: kept in the custody log.")],
    out: Annotated[Path, typer.Option("--out", help="The archive to write (a new file).")],
    passphrase_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The recipient's passphrase (default: asked for twice).",
        ),
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help=f"Your password (default: ${PASSWORD_VARIABLE}, or asked for).",
        ),
    ] = None,
    code: Annotated[
        str, typer.Option("--code", help="Your second-factor code (default: asked for).")
    ] = "",
    clear_images: Annotated[
        bool,
        typer.Option(
            "--clear-images", help="Put the images in the archive unencrypted (no passphrase)."
        ),
    ] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Write a police bundle: manifest, images (encrypted for a passphrase unless
    --clear-images), custody log, summary and README, as one archive."""
    with _refusals():
        if out.exists() or out.is_symlink():
            raise InvalidRequest(f"{out} exists already: a bundle is never written over a file")
        if clear_images and passphrase_file is not None:
            raise InvalidRequest("--clear-images needs no passphrase: give one or the other")
        settings, database = open_database(data_dir, config)
        role = _sign_in(database, settings, user, password_file, code)
        accessor = Accessor(user, role, reason)
        accessor.require_export()  # before asking for a passphrase the moderator cannot use
        passphrase: str | None = None
        if passphrase_file is not None:
            passphrase = _read_secret(passphrase_file)
        elif not clear_images:
            passphrase = typer.prompt(
                "passphrase for the recipient (send it apart from the archive)",
                hide_input=True,
                confirmation_prompt=True,
            )
        # No transaction around it: export_bundle keeps its own short, so screening goes on.
        result = bundle.export_bundle(
            database,
            Vault(settings, database),
            item_ids=items,
            case=case,
            accessor=accessor,
            out=out,
            passphrase=passphrase,
            clear_images=clear_images,
            settings=settings,
            now=SystemClock().now(),
        )
    mode = "in the clear" if result.clear_images else "encrypted for the passphrase"
    console.print(f"wrote {result.path}: {len(result.item_ids)} items, images {mode}")
    console.print(f"manifest sha256: {result.manifest_sha256}")
    console.print(f"archive sha256:  {result.archive_sha256}")
    if result.clear_images:
        console.print("Send the manifest sha256 apart from the archive: it proves the bundle.")
    else:
        console.print("Send the passphrase by another channel than the archive.")


@evidence_app.command("open-bundle")
def open_bundle(
    archive: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The bundle.")],
    out: Annotated[Path, typer.Option("--out", help="The folder to write the images into.")],
    passphrase_file: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="The passphrase (default: asked for)."),
    ] = None,
    manifest_sha256: Annotated[
        str | None,
        typer.Option("--manifest-sha256", help="The manifest hash noted when it was exported."),
    ] = None,
    unverified: Annotated[
        bool,
        typer.Option(
            "--unverified",
            help="Open a bundle with images in the clear without its manifest hash (unsafe).",
        ),
    ] = False,
) -> None:
    """Check every file of a bundle against its manifest, and the manifest against its HMAC or
    the SHA-256 noted at export, then write its images, decrypted."""
    with _refusals():
        encrypted = bundle_open.needs_passphrase(archive)
        passphrase: str | None = None
        if passphrase_file is not None:
            passphrase = _read_secret(passphrase_file)
        elif encrypted:
            passphrase = typer.prompt("passphrase", hide_input=True)
        noted = manifest_sha256.strip().lower() if manifest_sha256 else None
        written = bundle_open.open_bundle(
            archive, passphrase, out, manifest_sha256=noted, unverified=unverified
        )
    if encrypted or noted:
        console.print(f"every file and the manifest check out; wrote {len(written)} images:")
    else:
        errors.print(
            "WARNING: UNVERIFIED. This bundle has no HMAC and no manifest SHA-256 was given: "
            "whoever changed its files could have changed the manifest to match. Ask the "
            "provider for the manifest SHA-256 printed at export before relying on it.",
            style="bold red",
            highlight=False,
        )
        console.print(f"the files match the (unproven) manifest; wrote {len(written)} images:")
    for path in written:
        console.print(f"  {path}")


@report_app.command("nca")
def report_nca(
    out: Annotated[Path, typer.Option("--out", help="The folder to write the packages into.")],
    uploader: Annotated[
        str | None, typer.Option("--uploader", help="The uploader id to report.")
    ] = None,
    every: Annotated[
        bool, typer.Option("--all", help="Every uploader with items not yet reported.")
    ] = False,
    site: SiteOption = DEFAULT_SITE,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Prepare UK NCA report packages (JSON and a readable summary), one per uploader, for a
    person to submit: <OUT>/nca-report-<id>.json and .html."""
    if every == (uploader is not None):
        raise typer.BadParameter("give --uploader ID or --all (one of them)")
    written: list[Path] = []
    with _refusals():
        settings, database = open_database(data_dir, config)
        now = SystemClock().now()
        try:
            with database.write_session() as session:
                site_id = get_site(session, site).id
                uploaders = (
                    [
                        group.uploader_id
                        for group in reports.pending_by_uploader(session, Authority.NCA, site_id)
                    ]
                    if every
                    else [uploader]
                )
                if not uploaders:
                    raise InvalidRequest(f"nothing to report to the NCA on {site}")
                out.mkdir(mode=0o700, parents=True, exist_ok=True)
                for uploader_id in uploaders:
                    package = nca.prepare_nca_package(
                        session,
                        settings,
                        site_id=site_id,
                        uploader_id=uploader_id,
                        actor=actor(),
                        now=now,
                    )
                    stem = out / f"nca-report-{package.report.id}"
                    for path, text in (
                        (stem.with_suffix(".json"), package.report.payload),
                        (stem.with_suffix(".html"), package.summary_html),
                    ):
                        bundle.write_new_file(path, text.encode())
                        written.append(path)
        except BaseException:
            for path in written:  # the reports were not recorded: no stray copies
                path.unlink(missing_ok=True)
            raise
    for path in written:
        console.print(f"wrote {path}")
    console.print("Submit each package to the NCA, then keep the files as a record.")
