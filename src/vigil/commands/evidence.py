"""``vigil evidence``: the vault, its custody log, retention and legal holds."""

from __future__ import annotations

import typer

evidence_app = typer.Typer(
    help="The evidence vault: illegal images kept encrypted, their custody, holds and reports.",
    no_args_is_help=True,
)
