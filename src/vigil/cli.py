"""The ``vigil`` command: serve, keys, webhooks, banks, review-app users, hashing and scans.

Every command finds its data the same way: ``--data-dir``, else ``VIGIL_DATA_DIR``, else
``./vigil-data``; and its configuration from ``--config``, ``VIGIL_CONFIG`` or the data folder's
``vigil.toml``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError

from vigil import __version__
from vigil.calibrate import LabelReport
from vigil.commands import evidence_app, incident_app, lockdown_app
from vigil.commands.common import ConfigFile, DataDir, console, errors
from vigil.commands.common import actor as _actor
from vigil.commands.common import open_database as _database
from vigil.commands.common import settings_from as _settings
from vigil.commands.simulate import simulate
from vigil.errors import IntakeError, InvalidConfiguration, VigilError
from vigil.intake import open_image, read_limited
from vigil.matching import admin, importer
from vigil.matching.banks import BankAction
from vigil.review import accounts
from vigil.runtime import Runtime, ensure_bootstrap_key
from vigil.signals import compute_signals, default_hashers
from vigil.signals.base import HashType
from vigil.signals.classifiers import ModelStatus
from vigil.store import audit, sites
from vigil.store import banks as bank_store
from vigil.store import users as user_store
from vigil.store.types import utcnow

app = typer.Typer(
    help="Vigil screens every uploaded image before it is published.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
key_app = typer.Typer(help="API keys for sites.", no_args_is_help=True)
site_app = typer.Typer(help="Sites and their webhooks.", no_args_is_help=True)
bank_app = typer.Typer(help="Hash banks: lists of known images.", no_args_is_help=True)
user_app = typer.Typer(help="People who use the review app at /review.", no_args_is_help=True)
app.add_typer(key_app, name="key")
app.add_typer(user_app, name="user")
app.add_typer(site_app, name="site")
app.add_typer(bank_app, name="bank")
app.add_typer(evidence_app, name="evidence")
app.add_typer(lockdown_app, name="lockdown")
app.add_typer(incident_app, name="incident")
app.command("simulate")(simulate)


# --- server --------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Start the API server (creating and migrating the data folder on first use)."""
    import uvicorn

    from vigil.api import create_app

    settings = _settings(data_dir, config)
    # Validated like the rest of the settings (model_copy would not): a port out of range is a
    # one-line configuration error here, not a traceback from the socket layer later.
    server = settings.server.model_validate(
        settings.server.model_dump()
        | {key: value for key, value in {"host": host, "port": port}.items() if value is not None}
    )
    runtime = Runtime.open(settings)
    bootstrap_key = ensure_bootstrap_key(runtime.database)
    bootstrap_password = accounts.ensure_bootstrap_user(runtime.database)
    url = f"http://{server.host}:{server.port}"
    console.print(
        Text.assemble((f"Vigil {__version__}", "bold"), f" - data in {settings.data_dir}")
    )
    # Printed here for the person starting the server; the lifespan's load is then a no-op.
    _print_models(runtime.classifiers.load(log_failures=False))
    console.print(
        Text.assemble(
            "Open ", (f"{url}/review", "bold"), f" to review (API documentation at {url}/docs)"
        )
    )
    if bootstrap_key:
        console.print(
            Text.assemble(
                "\n",
                ("Bootstrap admin API key", "bold yellow"),
                " (shown this once; keep it safe):\n",
                f"  {bootstrap_key}\n",
                "Use it as 'Authorization: Bearer <key>'. "
                "More keys: vigil key create --site NAME\n",
            )
        )
    if bootstrap_password:
        console.print(
            Text.assemble(
                ("Review app", "bold yellow"),
                f" - sign in as '{accounts.BOOTSTRAP_USER}' with this password (shown once):\n",
                f"  {bootstrap_password}\n",
                "Then add the moderators: vigil user add NAME --role moderator\n",
            )
        )
    try:
        uvicorn.run(create_app(runtime), host=server.host, port=server.port, log_level="info")
    finally:
        runtime.close()


@app.command()
def init(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Create and migrate the data folder; print a bootstrap admin key the first time."""
    settings, database = _database(data_dir, config)
    key = ensure_bootstrap_key(database)
    console.print(f"Data folder ready: {settings.data_dir}")
    if key:
        console.print(f"Bootstrap admin API key (shown this once): {key}")


# --- keys and sites ------------------------------------------------------------------------------


@key_app.command("create")
def key_create(
    site: Annotated[
        str, typer.Option("--site", help="The site the key belongs to (created if new).")
    ],
    role: Annotated[
        sites.Role,
        typer.Option(help="screen: integrations; moderator: decisions; admin: everything."),
    ] = sites.Role.SCREEN,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create an API key; it is printed once and stored only as a hash."""
    _, database = _database(data_dir, config)
    with database.write_session() as session:
        site_row = sites.get_or_create_site(session, site)
        key, plain = sites.create_api_key(session, site_row, role)
        audit.append(
            session, _actor(), "key.create", site, {"role": role.value, "prefix": key.prefix}
        )
    console.print(plain)


@key_app.command("list")
def key_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List keys (their prefixes only)."""
    _, database = _database(data_dir, config)
    table = Table("prefix", "site", "role", "created", "revoked")
    with database.session() as session:
        for key, site in sites.list_api_keys(session):
            revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
            table.add_row(
                key.prefix,
                site.name,
                key.role,
                key.created_at.isoformat(timespec="seconds"),
                revoked,
            )
    console.print(table)


@key_app.command("revoke")
def key_revoke(
    prefix: Annotated[str, typer.Argument(help="The key's prefix, as `vigil key list` shows it.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Revoke a key at once."""
    _, database = _database(data_dir, config)
    with database.write_session() as session:
        key = sites.revoke_api_key(session, prefix)
        audit.append(session, _actor(), "key.revoke", prefix, {"key_id": key.id})
    console.print(f"revoked {prefix}")


@site_app.command("webhook")
def site_webhook(
    name: Annotated[str, typer.Argument(help="The site.")],
    url: Annotated[
        str | None, typer.Option(help="Where decisions are POSTed; omit with --off.")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="Stop sending webhooks.")] = False,
    rotate_secret: Annotated[bool, typer.Option(help="Issue a new signing secret.")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Set where a site receives decision webhooks; prints the signing secret."""
    if not off and not url:
        raise typer.BadParameter("give --url URL, or --off")
    if url and not url.startswith(("http://", "https://")):
        raise typer.BadParameter("the URL must start with http:// or https://")
    _, database = _database(data_dir, config)
    with database.write_session() as session:
        site = sites.get_site(session, name)
        secret = sites.set_webhook(site, None if off else url, rotate_secret=rotate_secret)
        audit.append(
            session,
            _actor(),
            "site.webhook",
            name,
            {"url": None if off else url, "rotated": rotate_secret},
        )
    if off:
        console.print(f"webhooks for {name} are off")
    else:
        console.print(f"webhooks for {name} go to {url}\nsigning secret: {secret}")


# --- banks ---------------------------------------------------------------------------------------


@bank_app.command("create")
def bank_create(
    name: Annotated[str, typer.Argument()],
    hash_type: Annotated[HashType, typer.Option("--type", help="The hash type the bank holds.")],
    action: Annotated[BankAction, typer.Option(help="block, hold, or ignore (an allow-list).")],
    threshold: Annotated[int | None, typer.Option(help="PDQ match distance (default 31).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off.")] = False,
    description: Annotated[str | None, typer.Option()] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create a bank."""
    settings, database = _database(data_dir, config)
    bank = admin.create_bank(
        database,
        settings.matching,
        name=name,
        hash_type=hash_type,
        action=action,
        threshold=threshold,
        enabled=not disabled,
        description=description,
        actor=_actor(),
    )
    console.print(
        f"created bank {bank.name}: {bank.hash_type}, {bank.action}, threshold {bank.threshold}"
    )


@bank_app.command("set")
def bank_set(
    name: Annotated[str, typer.Argument()],
    action: Annotated[BankAction | None, typer.Option()] = None,
    threshold: Annotated[int | None, typer.Option()] = None,
    enabled: Annotated[bool | None, typer.Option("--enable/--disable")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Change a bank's action, threshold or enabled flag."""
    _, database = _database(data_dir, config)
    bank = admin.update_bank(
        database,
        name,
        action=action,
        threshold=threshold,
        enabled=enabled,
        description=description,
        actor=_actor(),
    )
    state = "enabled" if bank.enabled else "disabled"
    console.print(f"bank {bank.name}: {bank.action}, threshold {bank.threshold}, {state}")


@bank_app.command("list")
def bank_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List banks and their sizes."""
    _, database = _database(data_dir, config)
    table = Table("name", "type", "action", "threshold", "enabled", "hashes")
    with database.session() as session:
        for bank in bank_store.list_banks(session):
            table.add_row(
                bank.name,
                bank.hash_type,
                bank.action,
                str(bank.threshold),
                "yes" if bank.enabled else "no",
                f"{bank.hash_count:,}",
            )
    console.print(table)


@bank_app.command("import")
def bank_import(
    name: Annotated[str, typer.Argument()],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    column: Annotated[str | None, typer.Option(help="The CSV column holding the hashes.")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Import a hash list (one per line, or CSV); bad lines are reported, not fatal."""
    settings, database = _database(data_dir, config)
    with (
        file.open("rb") as stream,
        Progress(
            TextColumn("{task.description}", style="progress.description", markup=False),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=errors,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task(f"importing into {name}", total=file.stat().st_size)
        report = importer.import_file(
            database,
            name,
            stream,
            actor=_actor(),
            column=column,
            quality_floor=settings.matching.pdq_quality_floor,
            progress=lambda consumed: progress.advance(task, consumed),
        )
    console.print(
        f"{name}: {report.added:,} added, {report.already_present:,} already present, "
        f"{report.low_quality:,} below the quality floor, {report.bad_line_count:,} bad lines"
    )
    for bad in report.bad_lines:
        errors.print(f"  line {bad.line}: {bad.error}", highlight=False)
    if report.bad_line_count > len(report.bad_lines):
        errors.print(f"  ... and {report.bad_line_count - len(report.bad_lines):,} more")


@bank_app.command("remove")
def bank_remove_hash(
    name: Annotated[str, typer.Argument()],
    value: Annotated[str, typer.Argument(help="The hash to remove.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Remove one hash from a bank."""
    _, database = _database(data_dir, config)
    removed = admin.remove_hash(database, name, value, actor=_actor())
    console.print(f"removed {removed} from {name}")


# --- images --------------------------------------------------------------------------------------


# --- review-app users ----------------------------------------------------------------------------

PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input (for scripts)."),
]


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    accounts.check_password_rules(password)
    return password


def _print_totp(user: Any, secret: str) -> None:
    console.print(f"second factor for {user.name}: add this to an authenticator app")
    console.print(f"  secret: {secret}")
    console.print(f"  uri:    {accounts.totp_uri(user, secret)}")


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="The name they sign in with.")],
    role: Annotated[
        accounts.UserRole,
        typer.Option(
            help="viewer: look only; moderator: decide; child_safety: also the illegal-content "
            "path; admin: everything."
        ),
    ] = accounts.UserRole.MODERATOR,
    totp: Annotated[
        bool, typer.Option("--totp", help="Also set up a second factor (TOTP) now.")
    ] = False,
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create a review-app account (asks for its password)."""
    _, database = _database(data_dir, config)
    password = _new_password(password_stdin)
    with database.write_session() as session:
        user = accounts.create_user(session, name, role, password, actor=_actor())
        secret = accounts.enrol_totp(session, user, actor=_actor()) if totp else None
    console.print(f"user {name} created with role {role.value}")
    if secret is not None:
        _print_totp(user, secret)


@user_app.command("list")
def user_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Every account, its role and state."""
    _, database = _database(data_dir, config)
    with database.session() as session:
        users = user_store.list_users(session)
    table = Table("name", "role", "second factor", "state", "last sign-in")
    for user in users:
        state = "disabled" if user.disabled_at else "active"
        last = user.last_login_at.isoformat(timespec="minutes") if user.last_login_at else "never"
        table.add_row(user.name, user.role, "yes" if user.totp_secret else "no", state, last)
    console.print(table)


@user_app.command("password")
def user_password(
    name: str,
    password_stdin: PasswordStdin = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Set a new password (signs the user out everywhere)."""
    _, database = _database(data_dir, config)
    password = _new_password(password_stdin)
    with database.write_session() as session:
        accounts.set_password(session, user_store.get_user(session, name), password, actor=_actor())
    console.print(f"password of {name} changed")


@user_app.command("role")
def user_role(
    name: str, role: accounts.UserRole, data_dir: DataDir = None, config: ConfigFile = None
) -> None:
    """Change what a user may do (signs them out everywhere)."""
    _, database = _database(data_dir, config)
    with database.write_session() as session:
        accounts.set_role(session, user_store.get_user(session, name), role, actor=_actor())
    console.print(f"{name} is now {role.value}")


@user_app.command("totp")
def user_totp(
    name: str,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the second factor.")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Set up (or replace, or remove) a user's second factor."""
    _, database = _database(data_dir, config)
    with database.write_session() as session:
        user = user_store.get_user(session, name)
        if remove:
            accounts.remove_totp(session, user, actor=_actor())
            secret = None
        else:
            secret = accounts.enrol_totp(session, user, actor=_actor())
    if secret is None:
        console.print(f"second factor of {name} removed")
    else:
        _print_totp(user, secret)


@user_app.command("disable")
def user_disable(
    name: str,
    enable: Annotated[bool, typer.Option("--enable", help="Allow the user in again.")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Stop a user signing in (and end their sessions), or with --enable let them again."""
    _, database = _database(data_dir, config)
    with database.write_session() as session:
        user = user_store.get_user(session, name)
        accounts.set_disabled(session, user, not enable, actor=_actor(), now=utcnow())
    console.print(f"{name} {'enabled' if enable else 'disabled'}")


@app.command("hash")
def hash_files(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Print the SHA-256, MD5, SHA-1 and per-frame PDQ hashes of image files."""
    settings = _settings(data_dir, config)
    bytes_hashers, frame_hashers = default_hashers()
    failed = False
    for file in files:
        try:
            with file.open("rb") as handle:
                data = read_limited(handle, settings.intake.max_bytes)
            image = open_image(data, settings.intake)
            record: dict[str, Any] = compute_signals(
                image, bytes_hashers, frame_hashers
            ).hashes_record()
        except IntakeError as error:
            failed = True
            if as_json:
                error_record = {"code": error.code, "message": error.message}
                sys.stdout.write(json.dumps({"path": str(file), "error": error_record}) + "\n")
            else:
                errors.print(f"{file}: {error.message}", highlight=False)
            continue
        if as_json:
            sys.stdout.write(json.dumps({"path": str(file), **record}) + "\n")
            continue
        console.print(str(file), style="bold", highlight=False)
        for kind in ("sha256", "md5", "sha1"):
            console.print(f"  {kind:<7} {record[kind]}", highlight=False)
        for entry in record["pdq"]:
            extra = f", over {entry['background']}" if "background" in entry else ""
            where = f"quality {entry['quality']}, frame {entry['frame']}{extra}"
            console.print(f"  pdq     {entry['hash']}  {where}", highlight=False)
    if failed:
        raise typer.Exit(1)


@contextmanager
def _file_progress(
    description: str, *, transient: bool = False
) -> Iterator[tuple[Callable[[int], None], Callable[[], None]]]:
    """A progress bar on stderr over files: yields (set the total, one more done)."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        "{task.completed}/{task.total}",
        TimeRemainingColumn(),
        console=errors,
        transient=transient,
    ) as progress:
        task = progress.add_task(description, total=None)
        yield (lambda total: progress.update(task, total=total)), (lambda: progress.advance(task))


def _print_models(models: list[ModelStatus]) -> None:
    """Which classifiers are loaded; one that is not is said plainly, with what to do."""
    loaded = [f"{model.name} {model.version}" for model in models if model.loaded]
    if loaded:
        console.print(f"Classifiers: {', '.join(loaded)}")
    elif not models:
        console.print("Classifiers: none configured (hash lists and policy only)")
    for model in models:
        if not model.loaded:
            errors.print(
                Text.assemble(
                    (f"Classifier {model.name} is not loaded", "bold red"),
                    f": {model.error}\n  Every image will be held until this is fixed; "
                    "/readyz answers 503 meanwhile.",
                ),
                highlight=False,
            )


@app.command()
def calibrate(
    folder: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            help="A folder with one sub-folder per kind of image: ok/ and, say, nudity/, gore/.",
        ),
    ],
    negative: Annotated[
        str, typer.Option(help="The sub-folder of images that must be allowed.")
    ] = "ok",
    target_fpr: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of ok images a hold threshold may flag."),
    ] = 0.01,
    block_fpr: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Share of ok images a block threshold may flag."),
    ] = 0.001,
    label: Annotated[
        list[str] | None,
        typer.Option(help="Report this label (repeatable); default: labels with thresholds."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Run the classifiers on labelled images; print precision and recall per threshold, and
    suggest thresholds for a target false-positive rate."""
    from vigil import calibrate as calibration

    settings = _settings(data_dir, config)
    with _file_progress("classifying", transient=True) as (started, advance):
        scored = calibration.score_folders(
            settings, folder, negative=negative, on_start=started, on_image=advance
        )
    labels = label or calibration.default_labels(settings, negative=negative)
    reports = calibration.report_labels(
        settings, scored, labels, negative=negative, target_fpr=target_fpr, block_fpr=block_fpr
    )
    skipped = [
        {"path": str(path), "folder": name, "reason": reason}
        for name, scored_folder in scored.items()
        for path, reason in scored_folder.skipped
    ]
    if not reports:
        errors.print(f"error: no loaded model gives any of these labels: {', '.join(labels)}")
        raise typer.Exit(1)
    if as_json:
        document = {
            "target_fpr": target_fpr,
            "block_fpr": block_fpr,
            "labels": [report.as_dict() for report in reports],
            "skipped": skipped,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    for entry in skipped:
        errors.print(f"skipped {entry['path']}: {entry['reason']}", highlight=False)
    for report in reports:
        _print_label_report(report, target_fpr, block_fpr)
    fewest = min(report.negatives for report in reports)
    if fewest and min(target_fpr, block_fpr) < 1 / fewest:
        errors.print(
            f"note: with {fewest} ok images, a false-positive rate below {1 / fewest:.2%} cannot "
            "be measured; the suggestions then only promise no false positive among these",
            highlight=False,
        )
    console.print("Suggested settings for vigil.toml (review them before use):")
    for report in reports:
        console.print(f"  [policy.labels.{report.label}]")
        for kind, value in (("hold", report.suggested_hold), ("block", report.suggested_block)):
            if value is not None:
                console.print(f"  {kind} = {value}")


def _print_label_report(report: LabelReport, target_fpr: float, block_fpr: float) -> None:
    folders = list(report.positives)
    counts = ", ".join(f"{name} {count}" for name, count in report.positives.items())
    console.print(
        Text.assemble((report.label, "bold"), f"  ({report.negatives} ok images; {counts})")
    )
    console.print(
        f"suggested: hold flags at most {target_fpr:g} of ok images, block at most {block_fpr:g}"
    )
    table = Table(
        "threshold",
        Column("", no_wrap=True),  # the marks are read whole: "suggested hold; configured hold"
        "false positives",
        *(f"recall {name}" for name in folders),
        "precision",
    )
    marks = [
        (report.suggested_hold, "suggested hold"),
        (report.suggested_block, "suggested block"),
        (report.configured_hold, "configured hold"),
        (report.configured_block, "configured block"),
    ]
    for point in report.points:
        mark = "; ".join(
            text
            for value, text in marks
            if value is not None and abs(value - point.threshold) < 1e-9
        )
        precision = "-" if point.precision is None else f"{point.precision:.1%}"
        table.add_row(
            f"{point.threshold:.3f}",
            mark,
            f"{point.false_positive_rate:.2%}",
            *(f"{point.recall[name]:.1%}" for name in folders),
            precision,
        )
    console.print(table)


@app.command()
def scan(
    paths: Annotated[list[Path], typer.Argument(exists=True, help="Files or folders to screen.")],
    report: Annotated[
        Path, typer.Option(help="JSON-lines report; an existing one is resumed.")
    ] = Path("vigil-scan.jsonl"),
    workers: Annotated[int, typer.Option(help="Processes (default: every core).")] = 0,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Screen existing images (an archive, after new hashes arrive); nothing is recorded."""
    from vigil import scan as scanning

    settings, database = _database(data_dir, config)
    database.dispose()
    processes = workers or os.cpu_count() or 1
    with _file_progress("screening") as (started, advance):
        summary = scanning.scan(
            settings,
            paths,
            report,
            workers=processes,
            on_start=started,
            on_result=lambda _result: advance(),
        )
    table = Table("result", "files")
    for outcome in ("block", "hold", "allow", scanning.REFUSED, scanning.UNREADABLE):
        table.add_row(outcome, f"{summary.counts.get(outcome, 0):,}")
    console.print(table)
    if summary.skipped_already_done:
        console.print(
            f"{summary.skipped_already_done:,} files were already in the report (resumed)"
        )
    console.print(f"report: {report.resolve()}")


def _failure(label: str, message: object) -> Text:
    return Text.assemble((label, "red"), f" {message}")


def main() -> None:
    """Entry point: errors Vigil understands print as one line, never as a traceback."""
    try:
        app()
    except InvalidConfiguration as error:
        errors.print(_failure("invalid configuration:", error.message), highlight=False)
        sys.exit(2)
    except VigilError as error:
        errors.print(_failure("error:", error.message), highlight=False)
        sys.exit(1)
    except ValidationError as error:
        errors.print(_failure("invalid configuration:", error), highlight=False)
        sys.exit(2)
    except OSError as error:
        # Not only a missing file: a data folder that is a file, a report that is a folder, a
        # folder without permission. The system's message names the path.
        errors.print(_failure("error:", error), highlight=False)
        sys.exit(1)
    except SQLAlchemyError as error:
        errors.print(_failure("database error:", error), highlight=False)
        sys.exit(1)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
