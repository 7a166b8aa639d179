"""Importing hash lists: every layout in the wild, bad lines reported (never fatal), big files
streamed in batches."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from sqlalchemy import func, select

from tests.matching.conftest import ACTOR, MakeBank
from tests.matching.support import random_hash
from vigil.errors import BankError, NotFound
from vigil.matching import importer
from vigil.matching.banks import BankAction
from vigil.matching.importer import (
    MAX_LINE_BYTES,
    MAX_REPORTED_BAD_LINES,
    BadLine,
    ImportReport,
    _LowQuality,
)
from vigil.runtime import Runtime
from vigil.signals import HashType
from vigil.store import audit
from vigil.store import banks as bank_store
from vigil.store.models import BankHash

SHA_A, SHA_B, SHA_C = (hashlib.sha256(text).hexdigest() for text in (b"a", b"b", b"c"))
PDQ_A, PDQ_B, PDQ_C = ("a5" * 32, "5a" * 32, "0f" * 32)


def import_text(
    runtime: Runtime, bank: str, content: str | bytes, **options: object
) -> ImportReport:
    data = content.encode() if isinstance(content, str) else content
    return importer.import_file(
        runtime.database,
        bank,
        io.BytesIO(data),
        actor=ACTOR,
        **options,  # type: ignore[arg-type]
    )


def stored(runtime: Runtime, bank: str) -> set[str]:
    with runtime.database.session() as session:
        bank_id = bank_store.get_bank(session, bank).id
        return set(session.scalars(select(BankHash.value).where(BankHash.bank_id == bank_id)))


def hash_count(runtime: Runtime, bank: str) -> int:
    with runtime.database.session() as session:
        return bank_store.get_bank(session, bank).hash_count


def bad(report: ImportReport) -> list[tuple[int, str]]:
    return [(line.line, line.error) for line in report.bad_lines]


@pytest.fixture
def sha_bank(make_bank: MakeBank) -> str:
    make_bank("sha", HashType.SHA256, BankAction.BLOCK)
    return "sha"


@pytest.fixture
def pdq_bank(make_bank: MakeBank) -> str:
    make_bank("pdq", HashType.PDQ, BankAction.BLOCK)
    return "pdq"


# --- layouts ---------------------------------------------------------------------------------


def test_one_hash_per_line(runtime: Runtime, sha_bank: str) -> None:
    report = import_text(runtime, sha_bank, f"{SHA_A}\n{SHA_B}\n{SHA_C}")

    assert (report.added, report.already_present, report.bad_line_count) == (3, 0, 0)
    assert stored(runtime, sha_bank) == {SHA_A, SHA_B, SHA_C}
    assert hash_count(runtime, sha_bank) == 3


def test_sha256sum_output_ignores_the_file_names(runtime: Runtime, sha_bank: str) -> None:
    # Text mode, binary mode ("*"), and names with spaces and commas or semicolons in them:
    # those are still one hash per line, not CSV.
    content = (
        f"{SHA_A}  holiday, day 1.jpg\n{SHA_B} *scan;2.png\n{SHA_C}  plain name with spaces.gif\n"
    )

    report = import_text(runtime, sha_bank, content)

    assert (report.added, report.bad_line_count) == (3, 0)
    assert stored(runtime, sha_bank) == {SHA_A, SHA_B, SHA_C}


def test_comments_blank_lines_and_trailing_notes_are_skipped(
    runtime: Runtime, sha_bank: str
) -> None:
    content = (
        "# exported 2024-05-01; see notes, page 2\n"
        "\n"
        f"{SHA_A}  # reported twice, by two sites\n"
        "   \n"
        "   # an indented comment\n"
        f"{SHA_B}\n"
    )

    report = import_text(runtime, sha_bank, content)

    assert (report.added, report.bad_line_count) == (2, 0)
    assert stored(runtime, sha_bank) == {SHA_A, SHA_B}


def test_utf8_byte_order_mark_and_windows_line_endings_are_accepted(
    runtime: Runtime, sha_bank: str
) -> None:
    report = import_text(runtime, sha_bank, f"\ufeff{SHA_A}\r\n{SHA_B}\r\n".encode())

    assert (report.added, report.bad_line_count) == (2, 0)
    assert stored(runtime, sha_bank) == {SHA_A, SHA_B}


def test_byte_order_mark_before_a_csv_header_does_not_hide_the_column_name(
    runtime: Runtime, sha_bank: str
) -> None:
    content = f"\ufeffname,sha256\nfirst.jpg,{SHA_A}\n"

    report = import_text(runtime, sha_bank, content.encode())

    assert (report.added, report.bad_line_count) == (1, 0)


@pytest.mark.parametrize(
    "header",
    ["filename,sha256,size", "filename,SHA256,size", "filename,hash,size", "id,signal_value,tags"],
)
def test_csv_header_names_the_hash_column(runtime: Runtime, sha_bank: str, header: str) -> None:
    content = f"{header}\nx.jpg,{SHA_A},10\ny.jpg,{SHA_B},20\n"

    report = import_text(runtime, sha_bank, content)

    assert (report.added, report.bad_line_count) == (2, 0)
    assert stored(runtime, sha_bank) == {SHA_A, SHA_B}


def test_explicit_column_wins_over_the_usual_names(runtime: Runtime, sha_bank: str) -> None:
    # "hash" holds something else here; the caller says where the SHA-256 is.
    content = f"hash,checksum\n{SHA_C},{SHA_A}\n{SHA_C},{SHA_B}\n"

    report = import_text(runtime, sha_bank, content, column="Checksum")

    assert (report.added, report.bad_line_count) == (2, 0)
    assert stored(runtime, sha_bank) == {SHA_A, SHA_B}


def test_quoted_csv_fields_are_unquoted(runtime: Runtime, sha_bank: str) -> None:
    content = f'name,sha256\n"a, b.jpg","{SHA_A}"\n'

    report = import_text(runtime, sha_bank, content)

    assert stored(runtime, sha_bank) == {SHA_A}
    assert report.bad_line_count == 0


def test_pdq_reference_hasher_output_skips_entries_below_the_quality_floor(
    runtime: Runtime, pdq_bank: str
) -> None:
    content = f"{PDQ_A},100,a.jpg\n{PDQ_B},49,b.jpg\n{PDQ_C},50,c.jpg\n"

    report = import_text(runtime, pdq_bank, content, quality_floor=50)

    assert (report.added, report.low_quality, report.bad_line_count) == (2, 1, 0)
    assert stored(runtime, pdq_bank) == {PDQ_A, PDQ_C}
    assert report.as_dict()["low_quality_skipped"] == 1


def test_quality_is_not_checked_without_a_floor(runtime: Runtime, pdq_bank: str) -> None:
    report = import_text(runtime, pdq_bank, f"{PDQ_A},100,a.jpg\n{PDQ_B},3,b.jpg\n")

    assert (report.added, report.low_quality) == (2, 0)


def test_quality_column_named_in_a_header(runtime: Runtime, pdq_bank: str) -> None:
    content = f"pdq_quality;pdq;name\n20;{PDQ_A};a\n90;{PDQ_B};b\n"

    report = import_text(runtime, pdq_bank, content, quality_floor=50)

    assert (report.added, report.low_quality) == (1, 1)
    assert stored(runtime, pdq_bank) == {PDQ_B}


def test_headerless_csv_with_the_hash_after_other_fields(runtime: Runtime, pdq_bank: str) -> None:
    report = import_text(runtime, pdq_bank, f"img-1,{PDQ_A}\nimg-2,{PDQ_B}\n")

    assert stored(runtime, pdq_bank) == {PDQ_A, PDQ_B}
    assert report.bad_line_count == 0


@pytest.mark.parametrize("delimiter", ["\t", ";", ","])
def test_tab_semicolon_and_comma_delimiters(
    runtime: Runtime, pdq_bank: str, delimiter: str
) -> None:
    lines = [
        delimiter.join(fields)
        for fields in (
            ["hash", "quality", "name"],
            [PDQ_A, "80", "a.jpg"],
            [PDQ_B, "10", "b.jpg"],
            [PDQ_C, "70", "c.jpg"],
        )
    ]

    report = import_text(runtime, pdq_bank, "\n".join(lines), quality_floor=50)

    assert (report.added, report.low_quality, report.bad_line_count) == (2, 1, 0)
    assert stored(runtime, pdq_bank) == {PDQ_A, PDQ_C}


def test_uppercase_and_padded_hashes_are_normalised(runtime: Runtime, sha_bank: str) -> None:
    report = import_text(runtime, sha_bank, f"  {SHA_A.upper()}  \n{SHA_B.upper()}\n")

    assert report.added == 2
    assert stored(runtime, sha_bank) == {SHA_A, SHA_B}


# --- bad lines -------------------------------------------------------------------------------


def test_bad_lines_are_reported_with_their_line_numbers_and_the_rest_imported(
    runtime: Runtime, sha_bank: str
) -> None:
    content = "\n".join(
        [
            SHA_A,  # 1
            "# a comment",  # 2
            "",  # 3
            "z" * 64,  # 4
            "abc",  # 5
            SHA_B[:40],  # 6: a SHA-1 length, in a SHA-256 bank
            SHA_C,  # 7
        ]
    )

    report = import_text(runtime, sha_bank, content)

    assert report.added == 2
    assert report.bad_line_count == 3
    assert bad(report) == [
        (4, "a sha256 hash is hexadecimal (0-9, a-f)"),
        (5, "a sha256 hash has 64 hex characters, got 3"),
        (6, "a sha256 hash has 64 hex characters, got 40"),
    ]
    assert stored(runtime, sha_bank) == {SHA_A, SHA_C}


def test_csv_lines_missing_the_hash_field_or_with_bad_quality_are_bad_lines(
    runtime: Runtime, pdq_bank: str
) -> None:
    content = "\n".join(
        [
            "name,hash,quality",  # 1
            f"a,{PDQ_A},90",  # 2
            "b",  # 3: no hash field
            f"c,{PDQ_B},high",  # 4
            f"d,{PDQ_C},",  # 5: no quality
            f"e,{PDQ_C},\u00b2",  # 6: a digit to str.isdigit(), not to int()
        ]
    )

    report = import_text(runtime, pdq_bank, content, quality_floor=50)

    assert report.added == 1
    assert bad(report) == [
        (3, "has 1 fields; the hash is field 2"),
        (4, "quality 'high' is not a whole number"),
        (5, "quality '' is not a whole number"),
        (6, "quality '\u00b2' is not a whole number"),
    ]


def test_stray_carriage_return_inside_a_csv_line_is_a_bad_line(
    runtime: Runtime, pdq_bank: str
) -> None:
    content = f"{PDQ_A},90,a.jpg\nbroken\rline,1,x\n{PDQ_B},90,b.jpg\n"

    report = import_text(runtime, pdq_bank, content)

    assert stored(runtime, pdq_bank) == {PDQ_A, PDQ_B}
    assert [line for line, _ in bad(report)] == [2]
    assert bad(report)[0][1].startswith("not a valid CSV line")


def test_line_of_max_length_is_read_and_a_longer_one_is_a_bad_line(
    runtime: Runtime, sha_bank: str
) -> None:
    def line_of(length: int, value: str) -> str:
        return f"{value}  " + "n" * (length - len(value) - 2)

    longest, too_long = line_of(MAX_LINE_BYTES, SHA_A), line_of(MAX_LINE_BYTES + 1, SHA_B)
    assert (len(longest), len(too_long)) == (MAX_LINE_BYTES, MAX_LINE_BYTES + 1)

    report = import_text(runtime, sha_bank, f"{longest}\n{too_long}\n{SHA_C}\n")

    assert stored(runtime, sha_bank) == {SHA_A, SHA_C}
    assert bad(report) == [(2, f"not a UTF-8 text line of at most {MAX_LINE_BYTES} bytes")]


def test_invalid_utf8_is_a_bad_line(runtime: Runtime, sha_bank: str) -> None:
    content = f"{SHA_A}\n".encode() + b"\xff\xfe\xc3(\n" + f"{SHA_B}\n".encode()

    report = import_text(runtime, sha_bank, content)

    assert stored(runtime, sha_bank) == {SHA_A, SHA_B}
    assert bad(report) == [(2, f"not a UTF-8 text line of at most {MAX_LINE_BYTES} bytes")]


def test_huge_file_without_a_newline_is_one_bad_line(runtime: Runtime, sha_bank: str) -> None:
    size = 5 * 1024 * 1024
    consumed: list[int] = []

    report = import_text(runtime, sha_bank, b"a" * size, progress=consumed.append)

    assert (report.added, report.bad_line_count) == (0, 1)
    assert bad(report)[0][0] == 1
    assert sum(consumed) == size
    assert hash_count(runtime, sha_bank) == 0


def test_line_after_a_huge_line_keeps_its_number(runtime: Runtime, sha_bank: str) -> None:
    report = import_text(runtime, sha_bank, b"a" * 100_000 + f"\n{SHA_A}\nxyz\n".encode())

    assert stored(runtime, sha_bank) == {SHA_A}
    assert [line for line, _ in bad(report)] == [1, 3]


def test_only_the_first_bad_lines_are_listed_but_all_are_counted(
    runtime: Runtime, sha_bank: str
) -> None:
    content = "\n".join([SHA_A, *(["nope"] * 120), SHA_B])

    report = import_text(runtime, sha_bank, content)

    assert report.added == 2
    assert report.bad_line_count == 120
    assert len(report.bad_lines) == MAX_REPORTED_BAD_LINES
    assert report.bad_lines[0] == BadLine(2, "a sha256 hash has 64 hex characters, got 4")


def test_csv_header_without_a_hash_column_is_refused_saying_how_to_fix_it(
    runtime: Runtime, sha_bank: str
) -> None:
    with pytest.raises(BankError) as raised:
        import_text(runtime, sha_bank, f"name,digest\na.jpg,{SHA_A}\n")

    message = raised.value.message
    assert "no hash column" in message
    assert "'name', 'digest'" in message
    assert "--column" in message
    assert "sha256, hash, hash_value, signal_value" in message
    assert hash_count(runtime, sha_bank) == 0


def test_named_column_missing_from_the_header_is_refused(runtime: Runtime, sha_bank: str) -> None:
    with pytest.raises(BankError, match="looked for: checksum"):
        import_text(runtime, sha_bank, f"name,sha256\na.jpg,{SHA_A}\n", column="checksum")


def test_column_given_for_a_file_that_is_not_csv_is_refused(
    runtime: Runtime, sha_bank: str
) -> None:
    with pytest.raises(BankError, match="not CSV"):
        import_text(runtime, sha_bank, f"{SHA_A}\n", column="sha256")


def test_import_into_a_missing_bank_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFound):
        import_text(runtime, "no-such-bank", f"{SHA_A}\n")


# --- duplicates, batches, progress, audit ----------------------------------------------------


def test_duplicates_in_the_file_and_in_the_bank_are_counted_as_already_present(
    runtime: Runtime, sha_bank: str
) -> None:
    import_text(runtime, sha_bank, f"{SHA_A}\n")

    report = import_text(runtime, sha_bank, f"{SHA_A}\n{SHA_B}\n{SHA_B.upper()}\n{SHA_C}\n{SHA_B}")

    assert (report.added, report.already_present) == (2, 3)
    assert hash_count(runtime, sha_bank) == 3


def test_the_same_hash_may_be_in_two_banks(runtime: Runtime, make_bank: MakeBank) -> None:
    make_bank("one", HashType.SHA256, BankAction.BLOCK)
    make_bank("two", HashType.SHA256, BankAction.HOLD)

    reports = [import_text(runtime, name, f"{SHA_A}\n") for name in ("one", "two")]

    assert [r.added for r in reports] == [1, 1]


def test_a_large_list_is_imported_in_batches(runtime: Runtime, pdq_bank: str) -> None:
    rng = random.Random(42)
    count = 200_000
    values = {random_hash(rng) for _ in range(count)}
    assert len(values) == count
    data = "".join(f"{value},100,image-{n}.jpg\n" for n, value in enumerate(values)).encode()
    with runtime.database.session() as session:
        generation_before = bank_store.current_generation(session)
    consumed: list[int] = []

    report = import_text(runtime, pdq_bank, data, quality_floor=50, progress=consumed.append)

    assert (report.added, report.already_present, report.bad_line_count) == (count, 0, 0)
    with runtime.database.session() as session:
        rows = session.scalar(select(func.count()).select_from(BankHash))
        # Each batch commits on its own and moves the generation once.
        batches = bank_store.current_generation(session) - generation_before
    assert rows == count
    assert hash_count(runtime, pdq_bank) == count
    assert batches == count // importer.BATCH_SIZE
    assert sum(consumed) == len(data)
    assert len(consumed) == count


def test_progress_reports_every_byte_of_the_file(runtime: Runtime, sha_bank: str) -> None:
    data = (
        f"\ufeff# list\n{SHA_A}\n".encode() + b"x" * (3 * MAX_LINE_BYTES) + f"\n\n{SHA_B}".encode()
    )
    consumed: list[int] = []

    import_text(runtime, sha_bank, data, progress=consumed.append)

    assert sum(consumed) == len(data)
    assert all(step > 0 for step in consumed)


def test_an_import_is_audited_with_its_report(runtime: Runtime, sha_bank: str) -> None:
    report = import_text(runtime, sha_bank, f"{SHA_A}\n{SHA_A}\nbad\n")

    with runtime.database.session() as session:
        events = [e for e in audit.events_for(session, sha_bank) if e.action == "bank.import"]
    assert len(events) == 1
    assert events[0].actor == ACTOR
    assert events[0].details == {"source": "file", **report.as_dict()}
    assert events[0].details["added"] == 1
    assert events[0].details["already_present"] == 1
    assert events[0].details["bad_lines"] == [
        {"line": 3, "error": "a sha256 hash has 64 hex characters, got 3"}
    ]


def test_import_values_reports_entries_by_position(runtime: Runtime, sha_bank: str) -> None:
    values: list[object] = [SHA_A, 42, "nope", SHA_B.upper(), None]

    report = importer.import_values(runtime.database, sha_bank, values, actor=ACTOR)

    assert report.added == 2
    assert bad(report) == [
        (2, "not a string"),
        (3, "a sha256 hash has 64 hex characters, got 4"),
        (5, "not a string"),
    ]
    with runtime.database.session() as session:
        (event,) = [e for e in audit.events_for(session, sha_bank) if e.action == "bank.import"]
    assert event.details["source"] == "list"


# --- parse_lines on its own ------------------------------------------------------------------


def parsed(lines: list[str], hash_type: HashType, **options: object) -> list[object]:
    numbered = list(enumerate(lines, start=1))
    return list(importer.parse_lines(numbered, hash_type, **options))  # type: ignore[arg-type]


def test_parse_lines_yields_normalised_hashes_and_bad_lines() -> None:
    result = parsed(["", SHA_A.upper(), "# x", "oops"], HashType.SHA256)

    assert result == [SHA_A, BadLine(4, "a sha256 hash has 64 hex characters, got 4")]


def test_parse_lines_treats_unreadable_lines_as_bad() -> None:
    result = list(importer.parse_lines([(1, None), (2, SHA_A)], HashType.SHA256))

    assert result == [BadLine(1, f"not a UTF-8 text line of at most {MAX_LINE_BYTES} bytes"), SHA_A]


def test_parse_lines_reads_the_layout_from_the_first_line_that_is_not_a_comment() -> None:
    # The comment has commas; the header after it is what decides the layout.
    result = parsed(["# a, b, c", "md5;name", f"{'ab' * 16};x"], HashType.MD5)

    assert result == ["ab" * 16]


def test_parse_lines_recognises_a_hash_with_a_space_before_the_delimiter_as_csv() -> None:
    result = parsed([f"{PDQ_A} ;20", f"{PDQ_B} ;90"], HashType.PDQ, quality_floor=50)

    assert result == [_LowQuality(1), PDQ_B]
