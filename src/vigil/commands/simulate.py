"""``vigil simulate``: replay a scripted attack against a fresh, throw-away Vigil."""

from __future__ import annotations

import json
import tempfile
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from vigil.commands.common import console, errors
from vigil.errors import InvalidConfiguration


def _shipped() -> Traversable:
    return resources.files("vigil.simulate") / "scenarios"


def shipped_scenarios() -> list[str]:
    folder = _shipped()
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def scenario_path(name_or_path: str) -> Path:
    """A scenario file, or the name of one shipped with Vigil (``overnight-attack``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = _shipped() / f"{name_or_path}.toml"
    if "/" not in name_or_path and shipped.is_file():
        return Path(str(shipped))
    known = ", ".join(shipped_scenarios())
    raise InvalidConfiguration(f"no scenario file {name_or_path!r} (shipped scenarios: {known})")


def simulate(
    scenario: Annotated[
        str,
        typer.Argument(help="A scenario TOML file, or a shipped one by name: overnight-attack."),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the report here.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the replay as JSON.")] = False,
    keep: Annotated[
        Path | None,
        typer.Option(help="Keep the replayed instance's data folder here (must not exist)."),
    ] = None,
) -> None:
    """Replay an attack on a simulated clock and report what was visible, when the lockdown
    changed and who was paged. Exits 1 if a check fails."""
    from vigil.simulate.replay import Replay
    from vigil.simulate.report import summarise, to_document, to_markdown
    from vigil.simulate.scenario import load_scenario

    script = load_scenario(scenario_path(scenario))
    if keep is not None and keep.exists():
        raise InvalidConfiguration(f"{keep} exists; --keep wants a new folder")
    errors.print(
        f"Replaying {script.name!r}: {script.start:%H:%M} to {script.end:%H:%M} "
        f"({script.timezone}) on a simulated clock...",
        highlight=False,
    )
    if keep is not None:
        keep.mkdir(parents=True, mode=0o700)
        result = Replay(script, keep).run()
    else:
        with tempfile.TemporaryDirectory(prefix="vigil-replay-") as folder:
            result = Replay(script, Path(folder)).run()
    report = json.dumps(to_document(result), indent=2) if as_json else to_markdown(result)
    console.print(report, highlight=False)
    if output is not None:
        output.write_text(report + ("\n" if as_json else ""), encoding="utf-8")
    summary = summarise(result)
    for check in summary.checks:
        style = {True: "green", False: "red", None: "yellow"}[check.passed]
        errors.print(Text.assemble((check.mark, style), f" {check.name}: {check.detail}"))
    if not summary.passed:
        raise typer.Exit(1)
