"""The ``vigil`` command line: data folder, keys, banks, hashing and webhooks, run for real.

Most commands run in-process through Typer's runner on the real app and a real data folder; the
ones about what the process shows (exit codes and one-line messages from ``main()``) run as
subprocesses of ``python -m vigil.cli``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from tests.images import animated_gif, encode, make_photo
from tests.onnx_models import brightness_model, corrupt_model
from tests.test_calibrate import (
    BRIGHT,
    DARK,
    uniform_png,
    write_brightness_config,
    write_images,
)
from tests.test_serve import running_server
from vigil.cli import _print_models, app
from vigil.config import load_settings
from vigil.errors import NotFound
from vigil.signals.classifiers import ModelStatus
from vigil.store import sites
from vigil.store.database import Database

KEY_PATTERN = re.compile(r"vgl_[A-Za-z0-9_-]{20,}")
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_vigil_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings from the surrounding shell must not leak into what these tests check."""
    for name in list(os.environ):
        if name.startswith("VIGIL_"):
            monkeypatch.delenv(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def invoke(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return runner.invoke(app, [str(arg) for arg in args], env=env)


def succeed(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    result = invoke(*args, env=env)
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def run_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``vigil ARGS`` as its own process, through ``main()``, without VIGIL_* from this shell."""
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("VIGIL_")
    }
    return subprocess.run(
        [sys.executable, "-m", "vigil.cli", *(str(arg) for arg in args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


def assert_error_without_traceback(
    process: subprocess.CompletedProcess[str], *fragments: str
) -> None:
    assert process.returncode != 0
    assert "Traceback" not in process.stderr
    for fragment in fragments:
        assert fragment in process.stderr


@pytest.fixture
def database(data_dir: Path) -> Iterator[Database]:
    """The data folder's database, as the server would open it, to check what commands stored."""
    succeed("init", "--data-dir", data_dir)
    opened = Database.from_settings(load_settings(data_dir=data_dir))
    yield opened
    opened.dispose()


def table_row(output: str, first_cell: str) -> str:
    """The line of a printed table whose first cell is ``first_cell``."""
    rows = [
        line for line in output.splitlines() if re.match(rf"\W*{re.escape(first_cell)}\s", line)
    ]
    assert len(rows) == 1, output
    return rows[0]


def bank_row(data_dir: Path, name: str) -> str:
    """The bank's line in ``vigil bank list``."""
    return table_row(succeed("bank", "list", "--data-dir", data_dir).output, name)


def bank_size(data_dir: Path, name: str) -> int:
    """The last column of the bank's line: how many hashes it holds."""
    return int(re.findall(r"\b[\d,]+\b", bank_row(data_dir, name))[-1].replace(",", ""))


def create_sha256_bank(data_dir: Path, action: str, *hashes: str) -> None:
    succeed(
        "bank", "create", "known", "--type", "sha256", "--action", action, "--data-dir", data_dir
    )
    if hashes:
        hash_list = data_dir.parent / "initial-hashes.txt"
        hash_list.write_text("".join(f"{value}\n" for value in hashes))
        succeed("bank", "import", "known", hash_list, "--data-dir", data_dir)


# --- data folder and keys ------------------------------------------------------------------------


def test_init_creates_the_data_folder_and_prints_a_bootstrap_key_only_the_first_time(
    data_dir: Path,
) -> None:
    first = succeed("init", "--data-dir", data_dir)
    assert (data_dir / "vigil.db").is_file()
    keys = KEY_PATTERN.findall(first.output)
    assert len(keys) == 1
    assert keys[0].startswith("vgl_")

    second = succeed("init", "--data-dir", data_dir)
    assert "Data folder ready" in second.output
    assert KEY_PATTERN.search(second.output) is None


def test_created_key_has_its_role_and_site_and_key_list_shows_only_prefixes(
    data_dir: Path, database: Database
) -> None:
    created = succeed(
        "key", "create", "--site", "forum", "--role", "moderator", "--data-dir", data_dir
    )
    key = created.output.strip()
    assert KEY_PATTERN.fullmatch(key)
    with database.session() as session:
        found = sites.find_api_key(session, key)
        assert found is not None
        stored_key, site = found
        assert (stored_key.role, site.name) == ("moderator", "forum")

    listing = succeed("key", "list", "--data-dir", data_dir).output
    row = table_row(listing, key[:12])
    assert "forum" in row
    assert "moderator" in row
    assert key not in listing
    assert key[12:] not in listing


def test_revoked_key_stops_working_and_is_shown_as_revoked(
    data_dir: Path, database: Database
) -> None:
    key = succeed("key", "create", "--site", "forum", "--data-dir", data_dir).output.strip()
    prefix = key[:12]

    revoked = succeed("key", "revoke", prefix, "--data-dir", data_dir)
    assert f"revoked {prefix}" in revoked.output
    with database.session() as session:
        assert sites.find_api_key(session, key) is None
    row = table_row(succeed("key", "list", "--data-dir", data_dir).output, prefix)
    assert len(DATE_PATTERN.findall(row)) == 2  # created and revoked


def test_a_key_cannot_be_revoked_twice(data_dir: Path) -> None:
    key = succeed("key", "create", "--site", "forum", "--data-dir", data_dir).output.strip()
    succeed("key", "revoke", key[:12], "--data-dir", data_dir)
    again = invoke("key", "revoke", key[:12], "--data-dir", data_dir)
    assert isinstance(again.exception, NotFound)
    assert "no single active key" in again.exception.message


# --- where the data folder and the configuration are found ---------------------------------------


def test_data_dir_option_wins_over_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    succeed("init", "--data-dir", "chosen", env={"VIGIL_DATA_DIR": str(tmp_path / "from-env")})
    assert (tmp_path / "chosen" / "vigil.db").is_file()
    assert not (tmp_path / "from-env").exists()
    assert not (tmp_path / "vigil-data").exists()


def test_environment_variable_wins_over_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    succeed("init", env={"VIGIL_DATA_DIR": str(tmp_path / "from-env")})
    assert (tmp_path / "from-env" / "vigil.db").is_file()
    assert not (tmp_path / "vigil-data").exists()


def test_default_data_folder_is_vigil_data_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    succeed("init")
    assert (tmp_path / "vigil-data" / "vigil.db").is_file()


def test_vigil_toml_in_the_data_folder_sets_the_default_pdq_threshold(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "vigil.toml").write_text("[matching]\npdq_threshold = 12\n")
    created = succeed(
        "bank", "create", "known", "--type", "pdq", "--action", "block", "--data-dir", data_dir
    )
    assert "threshold 12" in created.output
    assert re.search(r"block\W+12\W", bank_row(data_dir, "known"))


def test_environment_setting_wins_over_vigil_toml_found_through_the_environment(
    data_dir: Path,
) -> None:
    data_dir.mkdir()
    (data_dir / "vigil.toml").write_text("[matching]\npdq_threshold = 12\n")
    environment = {"VIGIL_DATA_DIR": str(data_dir)}
    from_file = succeed(
        "bank", "create", "a", "--type", "pdq", "--action", "block", env=environment
    )
    assert "threshold 12" in from_file.output
    environment["VIGIL_MATCHING__PDQ_THRESHOLD"] = "20"
    from_env = succeed("bank", "create", "b", "--type", "pdq", "--action", "block", env=environment)
    assert "threshold 20" in from_env.output


def test_config_option_reads_a_file_outside_the_data_folder(tmp_path: Path, data_dir: Path) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text("[matching]\npdq_threshold = 7\n")
    created = succeed(
        "bank", "create", "known", "--type", "pdq", "--action", "block",
        "--data-dir", data_dir, "--config", config,
    )  # fmt: skip
    assert "threshold 7" in created.output


@pytest.mark.parametrize(
    ("toml", "explanation"),
    [
        ("[matching]\npdq_thresold = 12\n", "pdq_thresold"),  # misspelt: not silently ignored
        ("[matching\npdq_threshold = 12\n", "vigil.toml is not valid TOML"),
    ],
    ids=["unknown_key", "not_toml"],
)
def test_a_bad_vigil_toml_is_an_invalid_configuration_without_traceback(
    data_dir: Path, toml: str, explanation: str
) -> None:
    data_dir.mkdir()
    (data_dir / "vigil.toml").write_text(toml)
    process = run_process("bank", "list", "--data-dir", data_dir)
    assert process.returncode == 2
    assert_error_without_traceback(process, "invalid configuration:", explanation)
    assert not (data_dir / "vigil.db").exists()


@pytest.mark.parametrize("site", ["", "has space", "x" * 101, "../etc"])
def test_a_site_name_must_be_a_plain_name(data_dir: Path, site: str) -> None:
    process = run_process("key", "create", "--site", site, "--data-dir", data_dir)
    assert process.returncode == 1
    assert_error_without_traceback(process, "error:", "site name is 1-100 characters")


def test_data_dir_that_is_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file, not a folder")
    process = run_process("init", "--data-dir", not_a_folder)
    assert process.returncode == 1
    assert_error_without_traceback(process, "error:", str(not_a_folder))


# --- banks ---------------------------------------------------------------------------------------


def hex_hash(seed: int) -> str:
    return hashlib.sha256(str(seed).encode()).hexdigest()


def test_created_bank_is_listed_with_its_settings_and_size(data_dir: Path) -> None:
    created = succeed(
        "bank", "create", "known", "--type", "pdq", "--action", "block", "--threshold", "20",
        "--data-dir", data_dir,
    )  # fmt: skip
    assert "created bank known: pdq, block, threshold 20" in created.output
    row = bank_row(data_dir, "known")
    assert re.search(r"pdq\W+block\W+20\W+yes\W+0\W*$", row), row


def test_disabled_bank_is_listed_as_not_enabled(data_dir: Path) -> None:
    create_sha256_bank(data_dir, "hold")
    changed = succeed("bank", "set", "known", "--disable", "--data-dir", data_dir)
    assert "disabled" in changed.output
    row = bank_row(data_dir, "known")
    assert re.search(r"\Wno\W+0\W*$", row), row


def test_import_adds_good_lines_and_reports_bad_line_numbers(
    tmp_path: Path, data_dir: Path
) -> None:
    create_sha256_bank(data_dir, "block")
    hash_list = tmp_path / "hashes.txt"
    hash_list.write_text(
        "\n".join(
            [
                "# hashes from a partner",  # 1
                hex_hash(1),  # 2
                "",  # 3
                "not a hash at all",  # 4
                hex_hash(2).upper() + "  holiday.jpg",  # 5: sha256sum output, any case
                hex_hash(1),  # 6: already imported above
                "   ",  # 7
                hex_hash(3)[:-1] + "g",  # 8: not hexadecimal
                hex_hash(4)[:40],  # 9: too short for sha256
                hex_hash(5),  # 10
            ]
        )
        + "\n"
    )
    result = succeed("bank", "import", "known", hash_list, "--data-dir", data_dir)
    assert (
        "known: 3 added, 1 already present, 0 below the quality floor, 3 bad lines" in result.stdout
    )
    bad_numbers = [int(number) for number in re.findall(r"line (\d+):", result.stderr)]
    assert bad_numbers == [4, 8, 9]
    assert bank_size(data_dir, "known") == 3


def test_import_into_a_missing_bank_is_a_one_line_error(tmp_path: Path, data_dir: Path) -> None:
    hash_list = tmp_path / "hashes.txt"
    hash_list.write_text(hex_hash(1) + "\n")
    process = run_process("bank", "import", "nosuchbank", hash_list, "--data-dir", data_dir)
    assert process.returncode == 1
    assert_error_without_traceback(process, "error:", "nosuchbank")
    assert len(process.stderr.strip().splitlines()) == 1


def test_removed_hash_leaves_the_bank_and_cannot_be_removed_twice(data_dir: Path) -> None:
    create_sha256_bank(data_dir, "block", hex_hash(1), hex_hash(2))

    removed = succeed("bank", "remove", "known", hex_hash(1).upper(), "--data-dir", data_dir)
    assert f"removed {hex_hash(1)} from known" in removed.output
    assert bank_size(data_dir, "known") == 1
    again = invoke("bank", "remove", "known", hex_hash(1), "--data-dir", data_dir)
    assert isinstance(again.exception, NotFound)
    assert "does not hold" in again.exception.message


# --- hashing files -------------------------------------------------------------------------------


@pytest.fixture
def image_files(tmp_path: Path) -> tuple[Path, Path]:
    still = tmp_path / "still.png"
    still.write_bytes(encode(make_photo(seed=1), "PNG"))
    animation = tmp_path / "animation.gif"
    animation.write_bytes(animated_gif([make_photo(160, 120, seed=seed) for seed in (2, 3, 4)]))
    return still, animation


def test_hash_prints_file_digests_and_a_pdq_hash_for_every_frame(
    image_files: tuple[Path, Path],
) -> None:
    still, animation = image_files
    output = succeed("hash", still, animation).output
    still_part, animation_part = output.split(str(animation))
    for path, part in ((still, still_part), (animation, animation_part)):
        data = path.read_bytes()
        assert f"sha256  {hashlib.sha256(data).hexdigest()}" in part
        assert f"md5     {hashlib.md5(data).hexdigest()}" in part
        assert f"sha1    {hashlib.sha1(data).hexdigest()}" in part
    assert re.findall(r"pdq +[0-9a-f]{64} .*frame (\d+)", still_part) == ["0"]
    assert re.findall(r"pdq +[0-9a-f]{64} .*frame (\d+)", animation_part) == ["0", "1", "2"]


def test_hash_json_gives_one_object_per_file_with_every_hash(
    image_files: tuple[Path, Path],
) -> None:
    still, animation = image_files
    output = succeed("hash", "--json", still, animation).stdout
    records = [json.loads(line) for line in output.splitlines()]
    assert [record["path"] for record in records] == [str(still), str(animation)]
    for record, path in zip(records, (still, animation), strict=True):
        assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert {"md5", "sha1", "pdq"} <= record.keys()
    assert len(records[0]["pdq"]) == 1
    animation_frames = records[1]["pdq"]
    assert [entry["frame"] for entry in animation_frames] == [0, 1, 2]
    assert len({entry["hash"] for entry in animation_frames}) == 3  # three different pictures
    assert all(re.fullmatch(r"[0-9a-f]{64}", entry["hash"]) for entry in animation_frames)


def test_hash_reports_a_file_that_is_not_an_image_and_still_hashes_the_others(
    tmp_path: Path, image_files: tuple[Path, Path]
) -> None:
    still, animation = image_files
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes, not a picture\n")

    plain = run_process("hash", still, notes, animation)
    assert plain.returncode == 1
    assert "Traceback" not in plain.stderr
    assert f"{notes}: unsupported file type" in plain.stderr
    assert hashlib.sha256(still.read_bytes()).hexdigest() in plain.stdout
    assert hashlib.sha256(animation.read_bytes()).hexdigest() in plain.stdout

    as_json = invoke("hash", "--json", still, notes, animation)
    assert as_json.exit_code == 1
    records = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [record["path"] for record in records] == [str(still), str(notes), str(animation)]
    assert records[1]["error"]["code"] == "unsupported_format"
    assert "sha256" in records[2]


# --- names, paths and messages print as they are -------------------------------------------------


def test_paths_that_look_like_markup_print_exactly_as_given(tmp_path: Path) -> None:
    photo = tmp_path / "[draft] photo.png"
    photo.write_bytes(encode(make_photo(seed=5), "PNG"))
    assert succeed("hash", photo).output.splitlines()[0] == str(photo)

    odd_folder = tmp_path / "[red]data"
    assert f"Data folder ready: {odd_folder}" in succeed("init", "--data-dir", odd_folder).output


def test_an_error_about_a_name_that_looks_like_markup_is_still_one_line(
    tmp_path: Path, data_dir: Path
) -> None:
    hash_list = tmp_path / "hashes.txt"
    hash_list.write_text(hex_hash(1) + "\n")
    process = run_process("bank", "import", "[/]", hash_list, "--data-dir", data_dir)
    assert process.returncode == 1
    assert_error_without_traceback(process, "error: no bank named '[/]'")
    assert len(process.stderr.strip().splitlines()) == 1


# --- webhooks ------------------------------------------------------------------------------------


def test_site_webhook_prints_a_signing_secret_that_stays_until_rotated(
    data_dir: Path, database: Database
) -> None:
    url = "http://127.0.0.1:9/hook"
    first = succeed("site", "webhook", "default", "--url", url, "--data-dir", data_dir).output
    secret = re.search(r"signing secret: (whsec_\S+)", first)
    assert secret is not None
    assert f"go to {url}" in first

    again = succeed("site", "webhook", "default", "--url", url, "--data-dir", data_dir).output
    assert f"signing secret: {secret[1]}" in again
    rotated = succeed(
        "site", "webhook", "default", "--url", url, "--rotate-secret", "--data-dir", data_dir
    ).output
    new_secret = re.search(r"signing secret: (whsec_\S+)", rotated)
    assert new_secret is not None
    assert new_secret[1] != secret[1]
    with database.session() as session:
        site = sites.get_site(session, "default")
        assert (site.webhook_url, site.webhook_secret) == (url, new_secret[1])


def test_site_webhook_off_stops_sending(data_dir: Path, database: Database) -> None:
    succeed(
        "site", "webhook", "default", "--url", "http://127.0.0.1:9/hook", "--data-dir", data_dir
    )
    off = succeed("site", "webhook", "default", "--off", "--data-dir", data_dir)
    assert "webhooks for default are off" in off.output
    with database.session() as session:
        assert sites.get_site(session, "default").webhook_url is None


def test_site_webhook_refuses_a_url_that_is_not_http(data_dir: Path) -> None:
    result = invoke(
        "site", "webhook", "default", "--url", "ftp://example.test/hook", "--data-dir", data_dir
    )
    assert result.exit_code == 2
    assert "http:// or https://" in result.output
    assert not (data_dir / "vigil.db").exists()


# --- calibrating classifier thresholds -----------------------------------------------------------


@pytest.fixture
def labelled(tmp_path: Path) -> Path:
    """ok/: five dark grey squares (the brightest 130/255 = 0.51); bright/: three bright ones."""
    root = tmp_path / "labelled"
    write_images(root / "ok", DARK)
    write_images(root / "bright", BRIGHT)
    return root


@pytest.fixture
def brightness_config(tmp_path: Path) -> Path:
    """The brightness model alone (its own file: loaded models are cached per process), with
    ``[policy.labels.bright] hold = 0.7``."""
    model = brightness_model(tmp_path / "models" / "brightness.onnx")
    return write_brightness_config(tmp_path / "vigil.toml", model, {"hold": 0.7})


def test_calibrate_prints_a_table_per_label_and_suggested_settings(
    labelled: Path, brightness_config: Path, data_dir: Path
) -> None:
    result = succeed(
        "calibrate", labelled, "--target-fpr", "0.2",
        "--config", brightness_config, "--data-dir", data_dir,
    )  # fmt: skip
    output = result.stdout

    assert "bright  (5 ok images; bright 3)" in output
    # 20 % of five ok images: one may be flagged, so the hold sits just above the second
    # brightest (100/255 = 0.392); the block (0.1 %) just above the brightest (130/255 = 0.510).
    hold_row = table_row(output, "0.393")
    assert "suggested hold" in hold_row
    assert re.search(r"\W20\.00%\W+100\.0%\W+75\.0%", hold_row), hold_row
    block_row = table_row(output, "0.510")
    assert "suggested block" in block_row
    assert re.search(r"\W0\.00%\W+100\.0%\W+100\.0%", block_row), block_row
    assert "configured hold" in table_row(output, "0.700")
    grid_row = table_row(output, "0.900")  # only 240/255 = 0.941 reaches it
    assert re.search(r"\W0\.00%\W+33\.3%\W+100\.0%", grid_row), grid_row
    suggestions = output[output.index("Suggested settings for vigil.toml") :].splitlines()
    assert [line.strip() for line in suggestions[1:]] == [
        "[policy.labels.bright]",
        "hold = 0.393",
        "block = 0.51",
    ]
    assert "cannot be measured" in result.stderr  # five ok images say little about 0.1 %
    assert not data_dir.exists()  # calibration records nothing


def test_calibrate_marks_a_threshold_that_is_both_the_suggested_hold_and_block(
    labelled: Path, brightness_config: Path, data_dir: Path
) -> None:
    output = succeed(
        "calibrate", labelled, "--config", brightness_config, "--data-dir", data_dir
    ).stdout
    assert "hold = 0.51" in output
    assert "block = 0.51" in output
    row = table_row(output, "0.510")
    assert "suggested hold" in row
    assert "suggested block" in row


def test_calibrate_json_gives_the_whole_report(
    labelled: Path, brightness_config: Path, data_dir: Path
) -> None:
    (labelled / "ok" / "notes.txt").write_text("not a picture\n")
    result = succeed(
        "calibrate", labelled, "--json", "--config", brightness_config, "--data-dir", data_dir
    )
    document = json.loads(result.stdout)

    assert (document["target_fpr"], document["block_fpr"]) == (0.01, 0.001)
    [label] = document["labels"]
    assert label["label"] == "bright"
    assert label["suggested"] == {"hold": 0.51, "block": 0.51}
    assert label["configured"] == {"hold": 0.7, "block": None}
    assert (label["negatives"], label["positives"]) == (5, {"bright": 3})
    [suggested] = [point for point in label["points"] if point["threshold"] == 0.51]
    assert suggested == {
        "threshold": 0.51,
        "false_positive_rate": 0.0,
        "recall": {"bright": 1.0},
        "precision": 1.0,
    }
    [skipped] = document["skipped"]
    assert skipped["path"] == str((labelled / "ok" / "notes.txt").resolve())
    assert skipped["folder"] == "ok"
    assert "unsupported file type" in skipped["reason"]


def test_calibrate_without_an_ok_folder_is_a_one_line_error(
    tmp_path: Path, brightness_config: Path, data_dir: Path
) -> None:
    root = tmp_path / "labelled"
    write_images(root / "nudity", BRIGHT)
    process = run_process("calibrate", root, "--config", brightness_config, "--data-dir", data_dir)
    assert process.returncode == 1
    assert_error_without_traceback(
        process, f"error: {root} needs a sub-folder 'ok' of images that must be allowed"
    )
    assert len(process.stderr.strip().splitlines()) == 1
    assert process.stdout == ""


@pytest.fixture
def calibrated_with_a_corrupt_model(
    tmp_path: Path, labelled: Path, data_dir: Path
) -> subprocess.CompletedProcess[str]:
    """``vigil calibrate`` run with a model file that is not a model."""
    model = corrupt_model(tmp_path / "models" / "corrupt.onnx")
    config = write_brightness_config(tmp_path / "corrupt.toml", model, {"hold": 0.7})
    return run_process("calibrate", labelled, "--config", config, "--data-dir", data_dir)


def test_calibrate_with_a_model_that_cannot_load_fails_naming_the_model(
    tmp_path: Path, calibrated_with_a_corrupt_model: subprocess.CompletedProcess[str]
) -> None:
    process = calibrated_with_a_corrupt_model
    assert process.returncode == 1
    model = tmp_path / "models" / "corrupt.onnx"
    assert_error_without_traceback(process, "model brightness is not loaded", str(model))
    last_line = process.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: model brightness is not loaded:")
    assert process.stdout == ""


def test_calibrate_with_a_model_that_cannot_load_prints_only_the_error(
    calibrated_with_a_corrupt_model: subprocess.CompletedProcess[str],
) -> None:
    [line] = calibrated_with_a_corrupt_model.stderr.strip().splitlines()
    assert line.startswith("error: model brightness is not loaded:")


def test_calibrate_for_a_label_no_model_gives_fails_saying_so(
    labelled: Path, brightness_config: Path, data_dir: Path
) -> None:
    process = run_process(
        "calibrate", labelled, "--label", "nonexistent",
        "--config", brightness_config, "--data-dir", data_dir,
    )  # fmt: skip
    assert process.returncode == 1
    assert_error_without_traceback(
        process, "no loaded model gives any of these labels: nonexistent"
    )
    assert "Suggested settings" not in process.stdout


# --- classifier status when serving --------------------------------------------------------------


def test_print_models_names_the_loaded_models_and_explains_one_that_is_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _print_models(
        [
            ModelStatus("brightness", second_pass=False, loaded=True, version="0123abcd"),
            ModelStatus(
                "gore", second_pass=False, loaded=False, error="model file not found: /m/gore.onnx"
            ),
        ]
    )
    printed = capsys.readouterr()
    assert printed.out == "Classifiers: brightness 0123abcd\n"
    assert "Classifier gore is not loaded: model file not found: /m/gore.onnx" in printed.err
    assert "Every image will be held until this is fixed" in printed.err
    assert "/readyz answers 503" in printed.err
    assert "brightness" not in printed.err


def test_print_models_says_when_no_classifier_is_configured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _print_models([])
    printed = capsys.readouterr()
    assert printed.out == "Classifiers: none configured (hash lists and policy only)\n"
    assert printed.err == ""


def test_serve_with_a_model_that_cannot_load_starts_but_is_not_ready_and_holds_images(
    tmp_path: Path, data_dir: Path
) -> None:
    missing = tmp_path / "models" / "missing.onnx"
    write_brightness_config(data_dir / "vigil.toml", missing, {"hold": 0.7})

    with running_server(data_dir, tmp_path / "logs") as server:
        stderr = server.stdout.with_suffix(".err")
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        deadline = time.monotonic() + 30
        while ready.status_code != 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            ready = httpx.get(f"{server.url}/readyz", timeout=10)
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["status"] == "unavailable"
        assert body["error"] == "models not loaded: brightness"
        status = body["classifiers"]["brightness"]
        assert status["loaded"] is False
        assert str(missing) in status["error"]

        printed = stderr.read_text()
        assert f"Classifier brightness is not loaded: {status['error']}" in printed
        assert "Traceback" not in printed
        assert "Classifiers:" not in server.output()  # none of them loaded

        # Failing closed: a picture no model could look at is held, never allowed.
        [key] = KEY_PATTERN.findall(server.output())
        response = httpx.post(
            f"{server.url}/v1/screen",
            headers={"Authorization": f"Bearer {key}"},
            files={"image": ("dark.png", uniform_png(30), "image/png")},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["decision"] == "hold"
        codes = [reason["code"] for reason in response.json()["reasons"]]
        assert codes == ["classifier_unavailable"]
