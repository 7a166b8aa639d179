"""``vigil evidence hold place|release|list``: keep items beyond their retention for a case.

A hold is placed on items by id or on everything one uploader has in the vault; releasing it lets
retention run again. Both are written to the custody and audit logs with the reason given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select

from vigil.clock import SystemClock
from vigil.commands.common import (
    DEFAULT_SITE,
    ConfigFile,
    DataDir,
    SiteOption,
    actor,
    console,
    open_database,
    time_text,
)
from vigil.commands.evidence import evidence_app, find_item
from vigil.errors import NotFound
from vigil.evidence import retention
from vigil.store.models import Site
from vigil.store.sites import get_site

hold_app = typer.Typer(
    help="Legal holds: keep items beyond their retention for a case.", no_args_is_help=True
)
evidence_app.add_typer(hold_app, name="hold")

Reason = Annotated[str, typer.Option("--reason", help="Why: kept in the custody and audit logs.")]


@hold_app.command("place")
def hold_place(
    case: Annotated[str, typer.Option("--case", help="The case, as the investigators name it.")],
    reason: Reason,
    items: Annotated[
        list[str] | None, typer.Argument(metavar="ITEMS...", help="Item ids, as `list` shows.")
    ] = None,
    uploader: Annotated[
        str | None, typer.Option("--uploader", help="Instead of ITEMS: all of this uploader's.")
    ] = None,
    site: SiteOption = DEFAULT_SITE,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Keep items beyond their retention until the hold is released."""
    if bool(items) == (uploader is not None):
        raise typer.BadParameter("name the items, or give --uploader, not both")
    _, database = open_database(data_dir, config)
    with database.write_session() as session:
        found = get_site(session, site)
        if uploader is not None:
            ids: Sequence[str] = retention.uploader_item_ids(session, found.id, uploader)
            if not ids:
                raise NotFound(f"no unpurged evidence item of uploader {uploader!r} on this site")
        else:
            ids = [find_item(session, text).id for text in items or ()]
        hold = retention.place_hold(
            session,
            site_id=found.id,
            case_name=case,
            reason=reason,
            item_ids=ids,
            actor=actor(),
            now=SystemClock().now(),
        )
        hold_id = hold.id
    console.print(f"legal hold {hold_id} ({case.strip()}) keeps {len(ids)} items:")
    for item_id in ids:
        console.print(f"  {item_id}")


@hold_app.command("release")
def hold_release(
    hold_id: Annotated[int, typer.Argument(min=1, max=2**31 - 1, help="As `hold list` shows.")],
    reason: Reason,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """End a hold.

    Its items are purged once their retention has run out, unless another hold keeps them.
    """
    _, database = open_database(data_dir, config)
    with database.write_session() as session:
        hold = retention.release_hold(
            session, hold_id, reason=reason, actor=actor(), now=SystemClock().now()
        )
        case = hold.case_name
    console.print(f"legal hold {hold_id} ({case}) released")


@hold_app.command("list")
def hold_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Holds in force."""
    _, database = open_database(data_dir, config)
    with database.session() as session:
        names = {site_id: name for site_id, name in session.execute(select(Site.id, Site.name))}
        rows = [
            (hold, len(retention.hold_items(session, hold.id)))
            for hold in retention.active_holds(session)
        ]
    if not rows:
        console.print("no legal holds in force")
        return
    table = Table("id", "site", "case", "items", "placed", "by", "reason")
    for hold, count in rows:
        table.add_row(
            str(hold.id),
            names.get(hold.site_id, "?"),
            hold.case_name,
            str(count),
            time_text(hold.placed_at),
            hold.placed_by,
            hold.reason,
        )
    console.print(table)
