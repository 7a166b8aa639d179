"""``vigil evidence``: the vault, its custody log and retention.

Nothing here prints an image or a key: ``show`` gives an item's record (and is itself recorded in
the custody log), ``verify`` checks that nothing was altered, ``rotate-key`` re-wraps item keys.
Legal holds, reports to the authorities and exports live in :mod:`vigil.commands.evidence_holds`,
:mod:`vigil.commands.evidence_reports` and :mod:`vigil.commands.evidence_export`, which add their
commands to the same group.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil.clock import SystemClock
from vigil.commands.common import (
    ConfigFile,
    DataDir,
    actor,
    console,
    errors,
    open_database,
    time_text,
)
from vigil.errors import Conflict, InvalidRequest, NotFound
from vigil.evidence import custody, retention, rotation
from vigil.evidence.crypto import MasterKey
from vigil.evidence.custody import CustodyAction
from vigil.evidence.reports import COVERING
from vigil.evidence.vault import Vault, keys_in_use
from vigil.evidence.verify import snapshot_session, verify_vault
from vigil.store import audit
from vigil.store.models import AuthorityReport, AuthorityReportItem, EvidenceItem, Site
from vigil.store.sites import get_site

evidence_app = typer.Typer(
    help="The evidence vault: illegal images kept encrypted, their custody, holds and reports.",
    no_args_is_help=True,
)
# Item ids are UUIDs; a unique beginning of at least 8 characters is enough at the terminal.
_ITEM_ID = re.compile(r"[0-9a-f-]{8,36}")
_HEAD = re.compile(r"([0-9]{1,18}):([0-9a-f]{64})")
_DRY_RUN_LIMIT = 10_000


def find_item(session: Session, text: str) -> EvidenceItem:
    """An item by its id or a unique beginning of it (8 characters or more)."""
    wanted = text.strip().lower()
    if not _ITEM_ID.fullmatch(wanted):
        raise InvalidRequest(
            f"{text!r} is not an evidence item id (as `vigil evidence list` shows it)"
        )
    found = session.scalars(
        select(EvidenceItem).where(EvidenceItem.id.startswith(wanted)).limit(2)
    ).all()
    if not found:
        raise NotFound(f"no evidence item {wanted}")
    if len(found) > 1:
        raise InvalidRequest(f"more than one item id starts with {wanted}: give more of it")
    return found[0]


def _parse_head(text: str) -> tuple[int, str]:
    found = _HEAD.fullmatch(text.strip().lower())
    if found is None:
        raise typer.BadParameter(
            param_hint="'--expect-head'",
            message="write the head as `verify` printed it: the entry number, a colon, the "
            "64-character hash (as in 57:3fa4...)",
        )
    return int(found.group(1)), found.group(2)


def _head_text(head: tuple[int, str]) -> str:
    return f"{head[0]}:{head[1]}"


@evidence_app.command("new-key")
def new_key(
    file: Annotated[Path, typer.Argument(help="Where to write the key (must not exist).")],
) -> None:
    """Make a new master key file, readable by its owner only; never overwrites one."""
    key = MasterKey.generate()
    try:
        key.write(file)
    except FileExistsError as error:
        raise Conflict(
            f"{file} exists: new-key never overwrites a key (the items it wraps would become "
            "unreadable)"
        ) from error
    console.print(f"wrote master key {key.id} to {file} (readable by you only)")
    console.print(
        "Back it up apart from the data folder. To use it: set evidence.master_key_file to this "
        "file, add the old key's file to evidence.previous_key_files, then run "
        "`vigil evidence rotate-key`."
    )


@evidence_app.command("list")
def list_items(
    site: Annotated[str | None, typer.Option("--site", help="Only this site's items.")] = None,
    uploader: Annotated[
        str | None, typer.Option("--uploader", help="Only this uploader's items.")
    ] = None,
    purged: Annotated[bool, typer.Option("--purged", help="Show purged items too.")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 500,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Items in the vault, oldest first: who sent them, why kept, until when, held, reported."""
    _, database = open_database(data_dir, config)
    with database.session() as session:
        query = select(EvidenceItem).order_by(EvidenceItem.received_at, EvidenceItem.id)
        if site is not None:
            query = query.where(EvidenceItem.site_id == get_site(session, site).id)
        if uploader is not None:
            query = query.where(EvidenceItem.uploader_id == uploader)
        if not purged:
            query = query.where(EvidenceItem.purged_at.is_(None))
        items = session.scalars(query.limit(limit)).all()
        ids = [item.id for item in items]
        held = retention.held_item_ids(session, ids)
        reported: dict[str, set[str]] = {}
        for item_id, authority in session.execute(
            select(AuthorityReportItem.item_id, AuthorityReport.authority)
            .join(AuthorityReport, AuthorityReport.id == AuthorityReportItem.report_id)
            .where(
                AuthorityReportItem.item_id.in_(ids),
                AuthorityReport.status.in_([status.value for status in COVERING]),
            )
        ):
            reported.setdefault(item_id, set()).add(authority)
    if not items:
        console.print("no evidence items")
        return
    table = Table("id", "uploader", "cause", "received", "retain until", "held", "reported")
    for item in items:
        table.add_row(
            item.id,
            item.uploader_id or "-",
            item.cause,
            time_text(item.received_at),
            (
                f"purged {time_text(item.purged_at)}"
                if item.purged_at
                else time_text(item.retain_until)
            ),
            "held" if item.id in held else "",
            ", ".join(sorted(reported.get(item.id, ()))),
        )
    console.print(table)
    if len(items) == limit:
        console.print(f"(the first {limit}: use --limit, --site or --uploader for more)")


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _item_lines(item: EvidenceItem, site_name: str) -> list[str]:
    lines = [
        f"item {item.id}",
        f"  site: {site_name}    uploader: {item.uploader_id or '-'}    cause: {item.cause}",
        f"  received: {time_text(item.received_at)}    preserved: {time_text(item.preserved_at)} "
        f"by {item.preserved_by}",
        f"  retain until: {time_text(item.retain_until)}    purged: {time_text(item.purged_at)}",
        f"  image: {item.image_format}, {item.byte_size} bytes; sealed with master key "
        f"{item.key_id or '- (purged)'}",
        f"  sha256: {item.sha256}",
        f"  sha1: {item.sha1}",
        f"  md5: {item.md5}",
        f"  sealed file sha256: {item.ciphertext_sha256}",
    ]
    lines += [f"  pdq: {entry.get('hash')} (quality {entry.get('quality')})" for entry in item.pdq]
    lines.append("matched:")
    lines += [
        f"  bank {match.get('bank')}: {match.get('hash_type')} {match.get('entry')} "
        f"(distance {match.get('distance')})"
        for match in item.matches
    ] or ["  - (confirmed by a reviewer)"]
    lines += ["capture:", _json(item.capture), "EXIF:", _json(item.exif)]
    return lines


@evidence_app.command("show")
def show(
    item_id: Annotated[str, typer.Argument(metavar="ITEM", help="As `list` shows it.")],
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """An item's record: hashes, matches, capture, EXIF and custody; never the image.

    The view itself is recorded in the custody log.
    """
    _, database = open_database(data_dir, config)
    who = actor()
    now = SystemClock().now()
    with database.write_session() as session:
        item = find_item(session, item_id)
        custody.append(session, item.id, CustodyAction.VIEWED, who, {"via": "cli show"}, now)
        audit.append(session, who, "evidence.viewed", item.id, {"via": "cli show"}, at=now)
        site = session.get(Site, item.site_id)
        lines = _item_lines(item, site.name if site else str(item.site_id))
        table = Table("entry", "at", "action", "by", "details")
        for entry in custody.entries_for(session, item.id):
            table.add_row(
                str(entry.id),
                time_text(entry.at),
                entry.action,
                entry.actor,
                # A stored entry repeats the facts printed above; verify compares them.
                "the facts above, as stored"
                if entry.action == CustodyAction.STORED
                else json.dumps(entry.details, sort_keys=True, ensure_ascii=False),
            )
    for line in lines:
        console.print(line, highlight=False)
    console.print("custody:")
    console.print(table)


@evidence_app.command("verify")
def verify(
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            metavar="N:HASH",
            help="A head an earlier verify printed: checks no history before it was rewritten.",
        ),
    ] = None,
    decrypt: Annotated[
        bool, typer.Option("--decrypt", help="Also decrypt every image and check its SHA-256.")
    ] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Check the custody chain, every item and every sealed file; exit 1 if anything is wrong.

    A check that passes is recorded in the custody log, and the new head is printed: note it
    down, and give it to a later verify as --expect-head to prove no history was rewritten.
    """
    noted = _parse_head(expect_head) if expect_head is not None else None
    settings, database = open_database(data_dir, config)
    vault = Vault(settings, database)
    with snapshot_session(database) as session:
        report = verify_vault(session, vault, expect_head=noted, decrypt=decrypt)
    decrypted = f", {report.decrypted} decrypted" if decrypt else ""
    console.print(
        f"checked {report.items_checked} items{decrypted} and the custody chain to entry "
        f"{report.head[0]}"
    )
    if report.orphans:
        console.print(
            f"warning: {len(report.orphans)} files in the vault belong to no item (left by an "
            "interrupted seal or purge; they cannot be opened without an item's key):"
        )
        for orphan in report.orphans:
            console.print(f"  {orphan}", highlight=False)
    if not report.ok:
        console.print(f"{len(report.problems)} problems:")
        for problem in report.problems:
            console.print(f"  {problem}", highlight=False)
        errors.print(
            "verification FAILED: the vault is not as it was recorded (nothing was written)"
        )
        raise typer.Exit(1)
    with database.write_session() as session:
        custody.append(
            session,
            None,
            CustodyAction.VERIFIED,
            actor(),
            {
                "verified_head": list(report.head),
                "items": report.items_checked,
                "decrypted": report.decrypted if decrypt else None,
            },
            SystemClock().now(),
        )
        head = custody.head(session)
    console.print(f"verified: no problems. custody head: {_head_text(head)}")
    console.print(f"note it down; later: vigil evidence verify --expect-head {_head_text(head)}")


@evidence_app.command("rotate-key")
def rotate_key(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Re-wrap every item key with the current master key (images are not touched)."""
    settings, database = open_database(data_dir, config)
    vault = Vault(settings, database)
    result = rotation.rotate_master_key(database, vault, actor=actor(), now=SystemClock().now())
    current = vault.keyring.current.id
    console.print(
        f"re-wrapped {result.rewrapped} item keys with master key {current} "
        f"({result.already_current} already were)"
    )
    with database.session() as session:
        older = {key: n for key, n in keys_in_use(session).items() if key != current}
    if older:  # only if items were added under an old key while this ran
        console.print(f"still wrapped by older keys: {older}; run rotate-key again")
    else:
        console.print("no item needs an older key: they can leave evidence.previous_key_files")


@evidence_app.command("purge")
def purge(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be purged; change nothing.")
    ] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Purge items whose retention ran out and that no legal hold keeps.

    The server does this every evidence.purge_interval_minutes; this runs it now.
    """
    settings, database = open_database(data_dir, config)
    vault = Vault(settings, database)
    now = SystemClock().now()
    purged: list[str] = []
    kept: dict[str, None] = {}
    awaiting: dict[str, None] = {}
    while True:
        with database.write_session() as session:
            result = retention.purge_expired(
                session,
                vault,
                now=now,
                actor=actor(),
                dry_run=dry_run,
                limit=_DRY_RUN_LIMIT if dry_run else 500,
            )
        purged += result.purged
        kept.update(dict.fromkeys(result.kept_on_hold))
        awaiting.update(dict.fromkeys(result.kept_for_report))
        if dry_run or len(result.purged) < 500:
            break
    verb = "would purge" if dry_run else "purged"
    console.print(
        f"{verb} {len(purged)} items; expired but kept: {len(kept)} by a legal hold, "
        f"{len(awaiting)} for a report not sent yet"
    )
    for item_id in purged:
        console.print(f"  {verb}: {item_id}")
    for item_id in kept:
        console.print(f"  kept on hold: {item_id}")
    for item_id in awaiting:
        console.print(f"  kept for a pending report: {item_id}")
