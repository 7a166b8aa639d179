"""Screen a site's archive of existing images (after new hashes arrive): every core, resumable.

Each image is screened as an upload would be (hashes, banks and classifiers), without uploader
context, and nothing is recorded as a submission: the report (one JSON line per file) says which
published images to take down or review. A scan that is interrupted picks up where it stopped
when run again with the same report.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.config import Settings
from vigil.errors import IntakeError
from vigil.intake import read_limited
from vigil.matching.matcher import Matcher
from vigil.policy import UploaderContext
from vigil.screening import Screener
from vigil.store.database import Database

REFUSED = "refused"  # not an image Vigil accepts
UNREADABLE = "error"  # the file could not be read

_screener: Screener | None = None  # one per worker process, built on its first file


@dataclass
class ScanSummary:
    counts: Counter[str] = field(default_factory=Counter)
    skipped_already_done: int = 0

    @property
    def scanned(self) -> int:
        return sum(self.counts.values())


def find_files(paths: Iterable[Path], exclude: Path | None = None) -> list[Path]:
    """Every regular file under ``paths``, sorted; symbolic links to folders are not followed.

    A folder that cannot be listed raises its ``OSError``: skipped silently (``os.walk``'s
    default), part of the archive would be reported as screened when it never was.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_file():
            found.append(path.resolve())
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"no such file or folder: {path}")
        for folder, folders, files in os.walk(path, onerror=_raise):
            folders.sort()
            found.extend(Path(folder, name).resolve() for name in sorted(files))
    return [file for file in dict.fromkeys(found) if file != exclude and file.is_file()]


def _raise(error: OSError) -> None:
    raise error


def already_scanned(report: Path) -> set[str]:
    """Paths a previous run reported; a line cut short by an interruption is removed."""
    if not report.exists():
        return set()
    content = report.read_bytes()
    complete = content[: content.rfind(b"\n") + 1]
    if len(complete) != len(content):
        with report.open("r+b") as handle:
            handle.truncate(len(complete))
    done = set()
    for line in complete.decode("utf-8", errors="replace").splitlines():
        try:
            done.add(json.loads(line)["path"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return done


def scan(
    settings: Settings,
    paths: Sequence[Path],
    report: Path,
    *,
    workers: int,
    on_start: Callable[[int], None] | None = None,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> ScanSummary:
    """Screen every file under ``paths``, appending a JSON line per file to ``report``."""
    report = report.resolve()
    done = already_scanned(report)
    files = find_files(paths, exclude=report)
    todo = [str(file) for file in files if str(file) not in done]
    summary = ScanSummary(skipped_already_done=len(files) - len(todo))
    if on_start is not None:
        on_start(len(todo))
    report.parent.mkdir(parents=True, exist_ok=True)
    with report.open("a", encoding="utf-8") as output:
        for result in _screen_all(settings, todo, workers):
            output.write(json.dumps(result, sort_keys=True) + "\n")
            output.flush()  # an interrupted scan keeps every finished line
            summary.counts[result["decision"]] += 1
            if on_result is not None:
                on_result(result)
    return summary


def _screen_all(settings: Settings, todo: list[str], workers: int) -> Iterator[dict[str, Any]]:
    if workers <= 1 or len(todo) <= 1:
        _remember_settings(settings)
        yield from map(screen_file, todo)
        return
    # "spawn": each worker starts clean and opens its own database connections. The processes
    # are the parallelism, so each one's models run single-threaded.
    per_worker = settings.model_copy(
        update={
            "classifiers": settings.classifiers.model_copy(update={"threads": 1, "concurrency": 1})
        }
    )
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_remember_settings, initargs=(per_worker,)) as pool:
        yield from pool.imap_unordered(screen_file, todo, chunksize=4)


_settings: Settings | None = None


def _remember_settings(settings: Settings) -> None:
    """Pool initializer: it must not fail (a failing initializer makes the pool respawn workers
    forever), so the screener is built on the first file, where an error reaches the caller."""
    global _settings, _screener
    _settings, _screener = settings, None


def _worker_screener() -> Screener:
    global _screener
    if _screener is None:
        assert _settings is not None, "the worker was not started"
        matcher = Matcher(
            Database.from_settings(_settings), _settings.matching, _settings.pdq_index_dir
        )
        matcher.refresh()
        _screener = Screener(_settings, matcher)
    return _screener


def screen_file(path: str) -> dict[str, Any]:
    """The report line for one file."""
    screener = _worker_screener()
    try:
        with open(path, "rb") as handle:
            data = read_limited(handle, screener.settings.intake.max_bytes)
    except IntakeError as error:
        return _refused(path, error)
    except OSError as error:
        return {
            "path": path,
            "decision": UNREADABLE,
            "error": {"code": "unreadable", "message": str(error)},
        }
    try:
        evaluation = screener.evaluate(data, UploaderContext())
    except IntakeError as error:
        return _refused(path, error)
    decision = evaluation.decision
    record: dict[str, Any] = {
        "path": path,
        "decision": decision.verdict.value,
        "reasons": [reason.as_dict() for reason in decision.reasons],
        "hashes": evaluation.signals.hashes_record(),
        "classifications": (
            evaluation.classification.as_record() if evaluation.classification else []
        ),
    }
    if decision.review:
        record["priority"] = decision.priority.value
    if decision.flags:
        record["flags"] = sorted(decision.flags)
    return record


def _refused(path: str, error: IntakeError) -> dict[str, Any]:
    return {
        "path": path,
        "decision": REFUSED,
        "error": {"code": error.code, "message": error.message},
    }
