"""The one settings object: sources in the documented order, and documentation that matches."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from vigil.config import Settings, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"


def _documented_toml() -> dict[str, object]:
    text = README.read_text()
    block = re.search(
        r"```toml\n# vigil.toml — every setting, with its default\n(.*?)```", text, re.S
    )
    assert block, "the README documents vigil.toml"
    return tomllib.loads(block.group(1))


def test_the_readme_documents_every_setting_with_its_real_default(tmp_path: Path) -> None:
    documented = _documented_toml()
    # TOML has no null: a setting that defaults to none is simply absent.
    defaults = load_settings(data_dir=tmp_path).model_dump(
        mode="json", exclude={"data_dir", "config", "database_url"}, exclude_none=True
    )
    assert documented == defaults


def test_settings_come_from_toml_then_environment_then_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "vigil.toml").write_text(
        "[policy]\nhold_new_uploaders = true\nnew_account_age_hours = 5\n[server]\nport = 9000\n"
    )
    monkeypatch.setenv("VIGIL_POLICY__NEW_ACCOUNT_AGE_HOURS", "12")

    from_file_and_env = load_settings(data_dir=tmp_path)
    overridden = load_settings(data_dir=tmp_path, server={"port": 9100})

    assert from_file_and_env.policy.hold_new_uploaders is True
    assert from_file_and_env.policy.new_account_age_hours == 12
    assert from_file_and_env.server.port == 9000
    assert from_file_and_env.config == tmp_path / "vigil.toml"
    assert overridden.server.port == 9100


def test_the_data_folder_comes_from_the_argument_then_the_environment_then_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().data_dir == tmp_path / "vigil-data"
    monkeypatch.setenv("VIGIL_DATA_DIR", str(tmp_path / "from-env"))
    assert load_settings().data_dir == tmp_path / "from-env"
    assert load_settings(data_dir=tmp_path / "explicit").data_dir == tmp_path / "explicit"
    assert (
        load_settings().resolved_database_url == f"sqlite:///{tmp_path / 'from-env' / 'vigil.db'}"
    )


@pytest.mark.parametrize(
    "toml",
    [
        "[policy]\nhold_new_uploder = true\n",
        "[intake]\nmax_bytes = -1\n",
        "unknown_top_level = 1\n",
        '[review]\nillegal_bank = "not a bank name"\n',
        '[review]\nillegal_bank = "' + "x" * 94 + '"\n',  # no room for "-sha256"
    ],
)
def test_a_misspelt_or_impossible_setting_is_an_error(tmp_path: Path, toml: str) -> None:
    (tmp_path / "vigil.toml").write_text(toml)
    with pytest.raises(ValidationError):
        load_settings(data_dir=tmp_path)


def test_an_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(data_dir=tmp_path, config=tmp_path / "missing.toml")


def test_settings_are_immutable(tmp_path: Path) -> None:
    settings: Settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ValidationError):
        settings.intake.max_bytes = 1  # type: ignore[misc]
