"""Import hash lists into banks: streaming, in batches, reporting bad lines without aborting.

Accepted files (UTF-8, an optional byte-order mark; ``#`` comments and blank lines are skipped):

- one hash per line; anything after the hash on the line is ignored, so ``sha256sum`` output and
  ``hash  # note`` lines work;
- CSV (comma, tab or semicolon) with a header naming the hash column (the hash type's name,
  ``hash``, ``hash_value``, ``signal_value``, ``value`` or ``signal``; or ``--column``), and an
  optional ``quality`` column for PDQ;
- CSV without a header, such as PDQ's reference hasher output (``hash,quality,filename``): the
  first field holding a valid hash is the hash column.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from vigil.errors import BankError, InvalidHash
from vigil.signals.base import HashType, normalize_hash
from vigil.store import audit
from vigil.store import banks as bank_store
from vigil.store.database import Database

MAX_LINE_BYTES = 4096
BATCH_SIZE = 10_000
MAX_REPORTED_BAD_LINES = 50
_DELIMITERS = (",", "\t", ";")
_HASH_COLUMNS = ("hash", "hash_value", "signal_value", "value", "signal")
_QUALITY_COLUMNS = ("quality", "pdq_quality")

Progress = Callable[[int], None]  # called with the number of bytes consumed since the last call


@dataclass(frozen=True)
class BadLine:
    line: int
    error: str


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    low_quality: int = 0
    bad_line_count: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)

    def note_bad(self, bad: BadLine) -> None:
        self.bad_line_count += 1
        if len(self.bad_lines) < MAX_REPORTED_BAD_LINES:
            self.bad_lines.append(bad)

    def as_dict(self) -> dict[str, object]:
        return {
            "added": self.added,
            "already_present": self.already_present,
            "low_quality_skipped": self.low_quality,
            "bad_line_count": self.bad_line_count,
            "bad_lines": [{"line": bad.line, "error": bad.error} for bad in self.bad_lines],
        }


@dataclass(frozen=True)
class _LowQuality:
    line: int


_Parsed = str | BadLine | _LowQuality


def import_file(
    database: Database,
    bank_name: str,
    stream: BinaryIO,
    *,
    actor: str,
    column: str | None = None,
    quality_floor: int | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Stream a hash-list file into a bank. Fatal only if the file has no usable hash column."""
    hash_type = _bank_hash_type(database, bank_name)
    parsed = parse_lines(_read_lines(stream, progress), hash_type, column, quality_floor)
    return _store(database, bank_name, parsed, actor=actor, source="file")


def import_values(
    database: Database, bank_name: str, values: Iterable[object], *, actor: str
) -> ImportReport:
    """Add a list of hash strings (from the API); entry ``n`` of the list is reported as line n."""
    hash_type = _bank_hash_type(database, bank_name)

    def parsed() -> Iterator[_Parsed]:
        for number, value in enumerate(values, start=1):
            if not isinstance(value, str):
                yield BadLine(number, "not a string")
                continue
            try:
                yield normalize_hash(hash_type, value)
            except InvalidHash as error:
                yield BadLine(number, error.message)

    return _store(database, bank_name, parsed(), actor=actor, source="list")


def _bank_hash_type(database: Database, bank_name: str) -> HashType:
    with database.session() as session:
        return HashType(bank_store.get_bank(session, bank_name).hash_type)


def _store(
    database: Database, bank_name: str, parsed: Iterable[_Parsed], *, actor: str, source: str
) -> ImportReport:
    report = ImportReport()
    batch: list[str] = []

    def flush() -> None:
        # One transaction per batch: a huge list commits as it goes and a crash loses one batch.
        # A write session because the batch reads the bank before writing: on SQLite a deferred
        # transaction would fail at once ("database is locked") if anything else, such as a
        # screening, wrote between that read and the insert.
        with database.write_session() as session:
            bank = bank_store.get_bank(session, bank_name)
            added = bank_store.add_hashes(session, bank, batch)
        report.added += added
        report.already_present += len(batch) - added
        batch.clear()

    for item in parsed:
        if isinstance(item, BadLine):
            report.note_bad(item)
        elif isinstance(item, _LowQuality):
            report.low_quality += 1
        else:
            batch.append(item)
            if len(batch) >= BATCH_SIZE:
                flush()
    if batch:
        flush()
    with database.session() as session:
        audit.append(
            session, actor, "bank.import", bank_name, {"source": source, **report.as_dict()}
        )
    return report


def _read_lines(stream: BinaryIO, progress: Progress | None) -> Iterator[tuple[int, str | None]]:
    """(line number, text) with line length bounded; text None for a line that is too long or
    not UTF-8. A file without newlines cannot make this read it into memory."""
    number = 0
    first = True
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        consumed = len(raw)
        text: str | None
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the overlong line
                raw = stream.readline(MAX_LINE_BYTES + 1)
                consumed += len(raw)
            text = None
        else:
            try:
                text = raw.decode("utf-8-sig" if first else "utf-8")
            except UnicodeDecodeError:
                text = None
        first = False
        if progress is not None:
            progress(consumed)
        yield number, text


def parse_lines(
    lines: Iterable[tuple[int, str | None]],
    hash_type: HashType,
    column: str | None = None,
    quality_floor: int | None = None,
) -> Iterator[_Parsed]:
    """Turn numbered lines into normalised hashes, bad lines and skipped low-quality entries."""
    layout: _Layout | None = None
    for number, text in lines:
        if text is None:
            yield BadLine(number, f"not a UTF-8 text line of at most {MAX_LINE_BYTES} bytes")
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if layout is None:
            layout = _Layout.detect(stripped, hash_type, column)
            if layout.has_header:
                continue
        yield layout.parse(number, stripped, hash_type, quality_floor)


@dataclass(frozen=True)
class _Layout:
    delimiter: str | None  # None: one hash per line
    hash_index: int = 0
    quality_index: int | None = None
    has_header: bool = False

    @classmethod
    def detect(cls, first_line: str, hash_type: HashType, column: str | None) -> _Layout:
        # "hash  holiday, day 1.jpg" (sha256sum) or "hash  # note; see x" is one hash per line,
        # whatever the rest holds; "hash ;90" is CSV with a space before its delimiter.
        token, _, rest = first_line.partition(" ")
        if (
            column is None
            and _is_hash(hash_type, token)
            and not rest.lstrip().startswith(_DELIMITERS)
        ):
            return cls(None)
        delimiter = next((d for d in _DELIMITERS if d in first_line), None)
        if delimiter is None:
            if column is not None:
                raise BankError(f"--column {column!r} given, but the file is not CSV")
            return cls(None)
        try:
            fields = [value.strip() for value in _split(first_line, delimiter)]
        except csv.Error as error:
            raise BankError(f"the first line is not valid CSV: {error}") from error
        if column is None:
            for index, value in enumerate(fields):
                if _is_hash(hash_type, value):
                    return cls(delimiter, index, _headerless_quality_index(fields, index))
        names = [name.lower() for name in fields]
        wanted = [column.lower()] if column else [hash_type.value, *_HASH_COLUMNS]
        hash_index = next((names.index(name) for name in wanted if name in names), None)
        if hash_index is None:
            raise BankError(
                f"no hash column in the header {fields!r}; name one with --column "
                f"(looked for: {', '.join(wanted)})"
            )
        quality_index = next((names.index(n) for n in _QUALITY_COLUMNS if n in names), None)
        return cls(delimiter, hash_index, quality_index, has_header=True)

    def parse(
        self, number: int, line: str, hash_type: HashType, quality_floor: int | None
    ) -> _Parsed:
        if self.delimiter is None:
            value = line.split()[0]
            fields = [value]
        else:
            try:
                fields = [field.strip() for field in _split(line, self.delimiter)]
            except csv.Error as error:  # e.g. a stray carriage return inside the line
                return BadLine(number, f"not a valid CSV line: {error}")
            if self.hash_index >= len(fields):
                return BadLine(
                    number, f"has {len(fields)} fields; the hash is field {self.hash_index + 1}"
                )
            value = fields[self.hash_index]
        try:
            normalised = normalize_hash(hash_type, value)
        except InvalidHash as error:
            return BadLine(number, error.message)
        if self.quality_index is not None and quality_floor is not None:
            quality = fields[self.quality_index] if self.quality_index < len(fields) else ""
            quality_value = _whole_number(quality)
            if quality_value is None:
                return BadLine(number, f"quality {quality!r} is not a whole number")
            if quality_value < quality_floor:
                return _LowQuality(number)
        return normalised


def _split(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter))


def _is_hash(hash_type: HashType, value: str) -> bool:
    try:
        normalize_hash(hash_type, value)
    except InvalidHash:
        return False
    return True


def _headerless_quality_index(fields: list[str], hash_index: int) -> int | None:
    """PDQ tools write ``hash,quality[,name]``: a whole number 0-100 right after the hash."""
    following = hash_index + 1
    if following < len(fields):
        quality = _whole_number(fields[following])
        if quality is not None and quality <= 100:
            return following
    return None


def _whole_number(text: str) -> int | None:
    # ASCII digits only: str.isdigit() also accepts characters such as '²' that int() refuses.
    return int(text) if text.isascii() and text.isdigit() else None
