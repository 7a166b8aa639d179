"""The one settings object: defaults, then ``vigil.toml``, then ``VIGIL_*`` environment variables.

Where things are found, for every command and the server alike:

- the data folder: ``--data-dir``, else ``VIGIL_DATA_DIR``, else ``./vigil-data``;
- the configuration file: ``--config``, else ``VIGIL_CONFIG``, else ``<data folder>/vigil.toml``
  (optional: without it the defaults below apply);
- a nested setting from the environment uses ``__``: ``VIGIL_POLICY__HOLD_NEW_UPLOADERS=true``.

Unknown keys are errors, so a misspelt setting never silently leaves a default in force.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vigil.errors import InvalidConfiguration

DEFAULT_DATA_DIR = Path("vigil-data")
CONFIG_FILE_NAME = "vigil.toml"
MEGABYTE = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)


class IntakeSettings(_Section):
    """Limits that keep hostile uploads from costing more than they should."""

    max_bytes: int = Field(25 * MEGABYTE, gt=0, description="Largest accepted upload.")
    max_pixels: int = Field(
        50_000_000,
        gt=0,
        description="Largest canvas (width x height) per frame: bombs are refused.",
    )
    max_frames: int = Field(
        300, gt=0, description="Frames screened per animation; an image with more is held."
    )
    max_animation_pixels: int = Field(
        500_000_000,
        gt=0,
        description="Decoded pixels screened across all frames; beyond this the image is held.",
    )
    working_size: int = Field(
        512,
        ge=64,
        description="Frames are decoded to at most this many pixels on the longer side.",
    )


class MatchingSettings(_Section):
    pdq_threshold: int = Field(
        31, ge=0, le=128, description="Default PDQ match distance for a new bank."
    )
    pdq_quality_floor: int = Field(
        50, ge=0, le=100, description="PDQ hashes of lower quality are too featureless to match."
    )
    max_import_bytes: int = Field(
        4096 * MEGABYTE, gt=0, description="Largest bank file accepted through the API."
    )


class PolicySettings(_Section):
    hold_new_uploaders: bool = Field(
        False, description="Hold every image from an uploader who counts as new."
    )
    new_account_age_hours: float = Field(
        72.0,
        ge=0,
        description="An account younger than this counts as new, whatever its trust level.",
    )


class WebhookSettings(_Section):
    timeout_seconds: float = Field(10.0, gt=0)
    retry_base_seconds: float = Field(10.0, gt=0, description="First retry delay; doubles after.")
    retry_max_seconds: float = Field(3600.0, gt=0)
    max_attempts: int = Field(20, ge=1, description="Then the delivery is marked failed.")
    poll_seconds: float = Field(1.0, gt=0, description="How often the outbox is checked.")
    lease_seconds: float = Field(
        60.0, gt=0, description="How long one worker owns a delivery before another may retry it."
    )


class WorkerSettings(_Section):
    embedded: bool = Field(
        True, description="Run background work (webhook delivery) inside the server process."
    )


class Settings(BaseSettings):
    """Everything Vigil can be told. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="VIGIL_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    data_dir: Path = DEFAULT_DATA_DIR
    config: Path | None = Field(None, description="The vigil.toml that was read, if any.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite in the data folder."
    )
    database_lock_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="SQLite: how long a write waits for another writer before Vigil answers 503.",
    )
    server: ServerSettings = ServerSettings()
    intake: IntakeSettings = IntakeSettings()
    matching: MatchingSettings = MatchingSettings()
    policy: PolicySettings = PolicySettings()
    webhooks: WebhookSettings = WebhookSettings()
    workers: WorkerSettings = WorkerSettings()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'vigil.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no .env files
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - no secret files
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        assert isinstance(init_settings, InitSettingsSource)
        config_file = _config_file(init_settings.init_kwargs)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if config_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)


def _config_file(init_kwargs: dict[str, Any]) -> Path | None:
    """The vigil.toml to read, found the documented way; None when there is none."""
    explicit = init_kwargs.get("config") or os.environ.get("VIGIL_CONFIG")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"configuration file not found: {path}")
        return path
    data_dir = init_kwargs.get("data_dir") or os.environ.get("VIGIL_DATA_DIR") or DEFAULT_DATA_DIR
    candidate = Path(data_dir).expanduser() / CONFIG_FILE_NAME
    return candidate if candidate.is_file() else None


def load_settings(
    data_dir: Path | str | None = None, config: Path | str | None = None, **overrides: Any
) -> Settings:
    """Settings for this process: explicit arguments win over the environment and vigil.toml."""
    init: dict[str, Any] = dict(overrides)
    if data_dir is not None:
        init["data_dir"] = Path(data_dir)
    if config is not None:
        init["config"] = Path(config)
    found = _config_file(init)
    if found is not None:
        init.setdefault("config", found)
    try:
        return Settings(**init)
    except tomllib.TOMLDecodeError as error:
        raise InvalidConfiguration(f"{init.get('config')} is not valid TOML: {error}") from error
