"""``vigil scan``: an archive screened against the banks into a resumable JSON-lines report.

The archive is generated here: a stand-in "known" picture whose PDQ hash is in a block bank (the
archive holds a smaller JPEG re-encoding of it), a picture whose SHA-256 is in a hold bank,
unrelated pictures and a text file, some of them in subfolders.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.images import animated_gif, encode, make_photo
from tests.onnx_models import brightness_model
from tests.test_calibrate import uniform_png, write_brightness_config
from vigil.cli import app
from vigil.scan import find_files

runner = CliRunner()
# Keeps root's identity but not its power to read any folder, so a locked folder stays locked.
WITHOUT_PERMISSION_OVERRIDE = [
    "setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search",
]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _no_vigil_environment() -> Iterator[None]:
    """Settings from the surrounding shell must not leak into what these tests check."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith("VIGIL_"):
                monkeypatch.delenv(name)
        yield


def succeed(*args: str | Path) -> Result:
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


@dataclass(frozen=True)
class Archive:
    data_dir: Path
    folder: Path
    expected: dict[str, str]  # resolved path -> decision

    def scan(self, report: Path, workers: int) -> Result:
        return succeed(
            "scan", self.folder, "--report", report, "--workers", str(workers),
            "--data-dir", self.data_dir,
        )  # fmt: skip


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Archive:
    base = tmp_path_factory.mktemp("scan")
    data_dir = base / "data"
    folder = base / "archive"
    (folder / "sub" / "deeper").mkdir(parents=True)
    succeed("init", "--data-dir", data_dir)

    # The stand-in for a known image is hashed where the archive cannot see it.
    known = make_photo(seed=10)
    known_file = base / "known.png"
    known_file.write_bytes(encode(known, "PNG"))
    known_pdq = json.loads(succeed("hash", "--json", known_file).stdout)["pdq"][0]["hash"]
    pdq_list = base / "known-pdq.txt"
    pdq_list.write_text(f"# stand-in for a partner's list\n{known_pdq}\n")
    succeed("bank", "create", "known", "--type", "pdq", "--action", "block", "--data-dir", data_dir)
    succeed("bank", "import", "known", pdq_list, "--data-dir", data_dir)

    held = encode(make_photo(seed=20), "PNG")
    (folder / "sub" / "held.png").write_bytes(held)
    sha256_list = base / "review-sha256.txt"
    sha256_list.write_text(hashlib.sha256(held).hexdigest() + "\n")
    succeed(
        "bank", "create", "review", "--type", "sha256", "--action", "hold", "--data-dir", data_dir
    )
    succeed("bank", "import", "review", sha256_list, "--data-dir", data_dir)

    near_duplicate = known.resize((480, 360))
    (folder / "near-duplicate.jpg").write_bytes(encode(near_duplicate, "JPEG", quality=70))
    (folder / "unrelated.png").write_bytes(encode(make_photo(seed=30), "PNG"))
    (folder / "sub" / "animation.gif").write_bytes(
        animated_gif([make_photo(160, 120, seed=seed) for seed in (40, 41, 42)])
    )
    (folder / "sub" / "deeper" / "unrelated.webp").write_bytes(
        encode(make_photo(320, 240, seed=50), "WEBP", quality=80)
    )
    (folder / "sub" / "notes.txt").write_text("not a picture\n")

    decisions = {
        "near-duplicate.jpg": "block",
        "sub/held.png": "hold",
        "unrelated.png": "allow",
        "sub/animation.gif": "allow",
        "sub/deeper/unrelated.webp": "allow",
        "sub/notes.txt": "refused",
    }
    expected = {str((folder / name).resolve()): decision for name, decision in decisions.items()}
    return Archive(data_dir, folder, expected)


def read_report(report: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in report.read_text().splitlines()]


def summary_counts(output: str) -> dict[str, int]:
    """The summary table's rows, as {result: files}."""
    rows = re.findall(r"^\W*(block|hold|allow|refused|error)\W+([\d,]+)\W*$", output, re.MULTILINE)
    return {outcome: int(files.replace(",", "")) for outcome, files in rows}


def decisions(lines: list[dict[str, Any]]) -> dict[str, str]:
    return {line["path"]: line["decision"] for line in lines}


def test_scan_reports_one_decision_per_file_from_the_banks(
    archive: Archive, tmp_path: Path
) -> None:
    report = tmp_path / "report.jsonl"
    result = archive.scan(report, workers=2)

    lines = read_report(report)
    assert len(lines) == len(archive.expected)
    assert decisions(lines) == archive.expected
    assert summary_counts(result.stdout) == {
        "block": 1,
        "hold": 1,
        "allow": 3,
        "refused": 1,
        "error": 0,
    }
    assert "already in the report" not in result.stdout

    by_path = {line["path"]: line for line in lines}
    blocked = by_path[str((archive.folder / "near-duplicate.jpg").resolve())]
    [block_reason] = blocked["reasons"]
    assert (block_reason["bank"], block_reason["hash_type"]) == ("known", "pdq")
    assert block_reason["distance"] > 0  # a near-duplicate, not the same picture
    held = by_path[str((archive.folder / "sub" / "held.png").resolve())]
    [hold_reason] = held["reasons"]
    assert (hold_reason["bank"], hold_reason["hash_type"]) == ("review", "sha256")
    refused = by_path[str((archive.folder / "sub" / "notes.txt").resolve())]
    assert refused["error"]["code"] == "unsupported_format"


def test_single_process_scan_reaches_the_same_decisions(archive: Archive, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    archive.scan(report, workers=1)
    assert decisions(read_report(report)) == archive.expected


def test_scan_again_with_the_same_report_adds_nothing(archive: Archive, tmp_path: Path) -> None:
    report = tmp_path / "report.jsonl"
    archive.scan(report, workers=1)
    first = report.read_bytes()

    again = archive.scan(report, workers=2)
    assert report.read_bytes() == first
    assert f"{len(archive.expected)} files were already in the report" in again.stdout
    assert sum(summary_counts(again.stdout).values()) == 0


def test_scan_interrupted_mid_line_resumes_with_every_file_once(
    archive: Archive, tmp_path: Path
) -> None:
    report = tmp_path / "report.jsonl"
    archive.scan(report, workers=1)
    lines = report.read_text().splitlines(keepends=True)
    # As if the scan had been killed while writing its third line.
    report.write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])

    resumed = archive.scan(report, workers=2)
    assert "2 files were already in the report" in resumed.stdout
    assert sum(summary_counts(resumed.stdout).values()) == len(archive.expected) - 2
    text = report.read_text()
    assert text.endswith("\n")
    resumed_lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    paths = [line["path"] for line in resumed_lines]
    assert sorted(paths) == sorted(archive.expected)  # each file exactly once
    assert decisions(resumed_lines) == archive.expected


def test_report_inside_the_scanned_folder_is_not_scanned(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    (folder / "photo.png").write_bytes(encode(make_photo(seed=60), "PNG"))
    report = folder / "report.jsonl"

    for _ in range(2):
        succeed("scan", folder, "--report", report, "--workers", "1", "--data-dir", tmp_path / "d")
    assert decisions(read_report(report)) == {str((folder / "photo.png").resolve()): "allow"}


def test_a_folder_that_cannot_be_listed_stops_the_scan_instead_of_being_skipped(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "archive"
    locked = folder / "locked"
    locked.mkdir(parents=True)
    (folder / "photo.png").write_bytes(encode(make_photo(seed=61), "PNG"))
    (locked / "hidden.png").write_bytes(encode(make_photo(seed=62), "PNG"))
    report = tmp_path / "report.jsonl"
    command = [
        sys.executable, "-m", "vigil.cli", "scan", str(folder), "--report", str(report),
        "--workers", "1", "--data-dir", str(tmp_path / "data"),
    ]  # fmt: skip
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):  # root reads any folder: drop that power for the scan
            if shutil.which("setpriv") is None:
                pytest.skip("privileged, and no setpriv to run the scan without CAP_DAC_*")
            command = [*WITHOUT_PERMISSION_OVERRIDE, *command]
        environment = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
        process = subprocess.run(
            command, capture_output=True, text=True, env=environment, timeout=120
        )
    finally:
        locked.chmod(0o700)
    assert process.returncode == 1
    assert "Traceback" not in process.stderr
    assert f"Permission denied: '{locked}'" in process.stderr
    assert not report.exists()


@pytest.mark.timeout(120)
def test_a_scan_whose_workers_cannot_reach_the_database_fails_instead_of_hanging(
    tmp_path: Path,
) -> None:
    from vigil import scan as scanning
    from vigil.config import load_settings

    folder = tmp_path / "archive"
    folder.mkdir()
    for seed in (71, 72, 73):
        (folder / f"{seed}.png").write_bytes(encode(make_photo(64, 64, seed=seed), "PNG"))
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    settings = load_settings(data_dir=tmp_path / "data", database_url=unreachable)

    with pytest.raises(Exception, match=r"(?i)connect|refused|127\.0\.0\.1"):
        scanning.scan(settings, [folder], tmp_path / "report.jsonl", workers=2)


# --- finding the files ---------------------------------------------------------------------------


def test_find_files_does_not_follow_symbolic_links_to_folders(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(b"a")
    (folder / "sub" / "b.png").write_bytes(b"b")
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "c.png").write_bytes(b"c")
    (folder / "outside").symlink_to(outside, target_is_directory=True)

    assert find_files([folder]) == [
        (folder / "a.png").resolve(),
        (folder / "sub" / "b.png").resolve(),
    ]


def test_find_files_lists_each_file_once_and_leaves_out_the_report(tmp_path: Path) -> None:
    folder = tmp_path / "archive"
    folder.mkdir()
    photo = folder / "photo.png"
    photo.write_bytes(b"photo")
    (folder / "alias.png").symlink_to(photo)
    report = folder / "report.jsonl"
    report.write_text("")

    assert find_files([folder, photo], exclude=report.resolve()) == [photo.resolve()]
    assert report.resolve() in find_files([folder])


def test_find_files_refuses_a_path_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        find_files([tmp_path / "missing"])


# --- classifiers ---------------------------------------------------------------------------------


def without_timings(line: dict[str, Any]) -> dict[str, Any]:
    """A report line without what differs from run to run: how long each model took."""
    classifications = [
        {key: value for key, value in entry.items() if key != "milliseconds"}
        for entry in line["classifications"]
    ]
    return {**line, "classifications": classifications}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_custom_model_score_past_its_hold_threshold_holds_the_image(
    tmp_path: Path, workers: int
) -> None:
    # A model file of its own: loaded models are cached per process by their settings.
    model = brightness_model(tmp_path / "models" / "brightness.onnx")
    config = write_brightness_config(tmp_path / "vigil.toml", model, {"hold": 0.7})
    folder = tmp_path / "archive"
    folder.mkdir()
    bright = folder / "bright.png"
    bright.write_bytes(uniform_png(230))  # scores 0.902
    dark = folder / "dark.png"
    dark.write_bytes(uniform_png(30))  # scores 0.118
    report = tmp_path / "report.jsonl"

    succeed(
        "scan", folder, "--report", report, "--workers", str(workers),
        "--config", config, "--data-dir", tmp_path / "data",
    )  # fmt: skip

    by_path = {line["path"]: line for line in read_report(report)}
    held = by_path[str(bright.resolve())]
    assert held["decision"] == "hold"
    assert held["priority"] == "normal"
    [reason] = held["reasons"]
    assert reason["code"] == "classifier_label"
    assert (reason["label"], reason["model"], reason["threshold"]) == ("bright", "brightness", 0.7)
    assert reason["score"] == pytest.approx(230 / 255, abs=1e-3)
    [classification] = held["classifications"]
    assert classification["model"] == "brightness"
    assert classification["version"] == hashlib.sha256(model.read_bytes()).hexdigest()[:12]
    assert classification["scores"] == {"bright": pytest.approx(230 / 255, abs=1e-3)}
    assert classification["views"] == 1

    allowed = by_path[str(dark.resolve())]
    assert allowed["decision"] == "allow"
    assert allowed["reasons"] == []
    assert "priority" not in allowed
    assert "flags" not in allowed
    [dark_classification] = allowed["classifications"]
    assert dark_classification["scores"] == {"bright": pytest.approx(30 / 255, abs=1e-3)}


def test_spawned_workers_classify_exactly_as_one_process_does(tmp_path: Path) -> None:
    model = brightness_model(tmp_path / "models" / "brightness.onnx")
    config = write_brightness_config(tmp_path / "vigil.toml", model, {"hold": 0.5, "block": 0.9})
    folder = tmp_path / "archive"
    folder.mkdir()
    for level in (20, 100, 140, 200, 240, 250):
        (folder / f"grey-{level}.png").write_bytes(uniform_png(level))
    reports = {}
    for workers in (1, 2):
        reports[workers] = tmp_path / f"report-{workers}.jsonl"
        succeed(
            "scan", folder, "--report", reports[workers], "--workers", str(workers),
            "--config", config, "--data-dir", tmp_path / "data",
        )  # fmt: skip

    single = {line["path"]: without_timings(line) for line in read_report(reports[1])}
    spawned = {line["path"]: without_timings(line) for line in read_report(reports[2])}
    assert spawned == single
    verdicts = {Path(path).name: line["decision"] for path, line in single.items()}
    assert verdicts == {
        "grey-20.png": "allow",
        "grey-100.png": "allow",
        "grey-140.png": "hold",  # 0.549
        "grey-200.png": "hold",  # 0.784
        "grey-240.png": "block",  # 0.941: blocked pending review, ahead of the holds
        "grey-250.png": "block",
    }
    assert {line["priority"] for line in single.values() if line["decision"] == "block"} == {"high"}
