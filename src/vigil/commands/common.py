"""What every ``vigil`` command shares: where the data is, who is acting, how to print."""

from __future__ import annotations

import getpass
import os
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vigil.config import Settings, load_settings
from vigil.runtime import BOOTSTRAP_SITE
from vigil.store.database import Database

# soft_wrap: hashes and keys stay on one line, whatever the terminal width. No markup or emoji
# codes: names, paths and messages come from users and files ("[draft] photo.jpg", a bank "[/]")
# and must print exactly as they are, never as styles or as a MarkupError; styles are explicit.
console = Console(soft_wrap=True, markup=False, emoji=False)
errors = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data folder (default: $VIGIL_DATA_DIR or ./vigil-data).",
        show_default=False,
    ),
]
ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="vigil.toml (default: $VIGIL_CONFIG or <data folder>/vigil.toml).",
        show_default=False,
    ),
]

# The site Vigil makes at its first start: the one a command acts on unless told otherwise.
DEFAULT_SITE = BOOTSTRAP_SITE
SiteOption = Annotated[str, typer.Option("--site", help="The site.")]
# For commands that look at every site unless narrowed to one.
EverySiteOption = Annotated[
    str | None, typer.Option("--site", help="Only this site (default: every site).")
]


def actor() -> str:
    """How the person at the terminal appears in the audit log."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def settings_from(data_dir: Path | None, config: Path | None) -> Settings:
    return load_settings(data_dir=data_dir, config=config)


def open_database(data_dir: Path | None, config: Path | None) -> tuple[Settings, Database]:
    """The settings and a migrated database, for commands that need no screening services."""
    settings = settings_from(data_dir, config)
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    database = Database.from_settings(settings)
    database.migrate()
    return settings, database


def time_text(moment: datetime | None) -> str:
    """A time as the commands print it: to the minute, in UTC; ``-`` for none."""
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "-"
