"""A replay's script, read from TOML: who posts what when, who reports, who moderates, who is on
call. Times of day are the site's local time; a time earlier than the start is the next day."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vigil.config import Settings, known_time_zone
from vigil.errors import InvalidConfiguration
from vigil.simulate.images import Variant

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Trust = Literal["new", "basic", "trusted", "staff"]
ClockTime = time | str


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Account(_Part):
    id: Name
    trust: Trust = "basic"
    age_days: float = Field(365.0, ge=0, description="How old the account is at the start.")


class Members(_Part):
    """Many ordinary accounts at once: ``member-001`` ... for background traffic and reports."""

    prefix: Name = "member"
    count: int = Field(50, ge=1, le=10_000)
    trust: Trust = "basic"
    age_days: float = Field(700.0, ge=0)


class ImageSet(_Part):
    name: Name
    count: int = Field(ge=1, le=10_000)
    seed: int = Field(0, ge=0, description="Sets with different seeds share no picture.")
    abusive: bool = Field(False, description="Ground truth: a stand-in for abuse imagery.")
    in_bank: Name | None = Field(
        None, description="A block bank the set's originals are imported into before the replay."
    )
    variant: Variant = Variant.REENCODE


class Post(_Part):
    """One account posting images of a set, one every ``interval_seconds``."""

    at: ClockTime
    account: Name
    set: Name
    images: list[int] | None = Field(None, description="Indexes in the set; default all.")
    interval_seconds: float = Field(20.0, ge=0)


class Traffic(_Part):
    """Members posting ordinary pictures at a steady rate, round-robin through a set."""

    set: Name
    every_seconds: float = Field(gt=0)
    start: ClockTime | None = None
    end: ClockTime | None = None


class Reporting(_Part):
    """Members report each visible image of a set some minutes after it appears."""

    set: Name
    reporters: int = Field(3, ge=1, le=100)
    trust: Trust = "basic"
    reason: Literal["child_abuse", "sexual", "violence", "hate", "harassment", "spam", "other"] = (
        "child_abuse"
    )
    first_after_minutes: float = Field(4.0, ge=0)
    spacing_minutes: float = Field(2.0, ge=0)


class Moderator(_Part):
    name: Name
    role: Literal["moderator", "child_safety"] = "moderator"
    start: ClockTime
    end: ClockTime
    seconds_per_item: float = Field(60.0, gt=0)
    clean_up_uploaders: bool = Field(
        True, description="After rejecting an abusive image, clean up everything its uploader sent."
    )


class OnCall(_Part):
    """A person who receives pages on some channels and acknowledges after a while, or never."""

    name: Name
    channels: list[Name] = Field(min_length=1)
    acknowledges_after_minutes: float | None = Field(None, ge=0)


class Scenario(_Part):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""
    timezone: str = "UTC"
    start: datetime = Field(description="Local date and time in `timezone`.")
    end: datetime
    tick_seconds: float = Field(5.0, gt=0, le=60, description="How often the watch runs.")
    site_delay_seconds: float = Field(
        2.0, ge=0, description="How long the site takes to act on a webhook."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="vigil.toml settings for the replayed instance."
    )
    accounts: list[Account] = Field(default_factory=list)
    members: Members = Members()
    image_sets: list[ImageSet] = Field(min_length=1)
    posts: list[Post] = Field(default_factory=list)
    traffic: list[Traffic] = Field(default_factory=list)
    reports: list[Reporting] = Field(default_factory=list)
    moderators: list[Moderator] = Field(default_factory=list)
    oncall: list[OnCall] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return known_time_zone(value)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > timedelta(days=7):
            raise ValueError("a replay covers at most seven days")
        sets = {image_set.name: image_set for image_set in self.image_sets}
        accounts = {account.id for account in self.accounts}
        for post in self.posts:
            if post.set not in sets:
                raise ValueError(f"post at {post.at}: unknown image set {post.set!r}")
            if post.account not in accounts:
                raise ValueError(f"post at {post.at}: unknown account {post.account!r}")
            for index in post.images or []:
                if not 0 <= index < sets[post.set].count:
                    raise ValueError(f"post at {post.at}: set {post.set!r} has no image {index}")
        for name in [*(t.set for t in self.traffic), *(r.set for r in self.reports)]:
            if name not in sets:
                raise ValueError(f"unknown image set {name!r}")
        for moment in [
            *(post.at for post in self.posts),
            *(t for traffic in self.traffic for t in (traffic.start, traffic.end) if t),
            *(t for moderator in self.moderators for t in (moderator.start, moderator.end)),
        ]:
            _time_of_day(moment)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def utc(self, local: datetime) -> datetime:
        return local.replace(tzinfo=self.zone).astimezone(UTC) if local.tzinfo is None else local

    @property
    def start_utc(self) -> datetime:
        return self.utc(self.start)

    @property
    def end_utc(self) -> datetime:
        return self.utc(self.end)

    def moment(self, clock: ClockTime) -> datetime:
        """A time of day as the first such moment at or after the start, in UTC."""
        local = datetime.combine(self.start.date(), _time_of_day(clock))
        if local < self.start.replace(tzinfo=None):
            local += timedelta(days=1)
        return self.utc(local)

    def vigil_settings(self, data_dir: Path) -> Settings:
        """The scenario's settings on a fresh data folder; the replay drives background work."""
        overrides = dict(self.settings)
        overrides["workers"] = {**overrides.get("workers", {}), "embedded": False}
        lockdown = dict(overrides.get("lockdown", {}))
        lockdown.setdefault("timezone", self.timezone)
        overrides["lockdown"] = lockdown
        overrides.pop("data_dir", None)
        overrides.pop("config", None)
        overrides.pop("database_url", None)  # always a fresh SQLite database
        return Settings(data_dir=data_dir, **overrides)

    def image_set(self, name: str) -> ImageSet:
        return next(image_set for image_set in self.image_sets if image_set.name == name)

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.zone)


def _time_of_day(value: ClockTime) -> time:
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(value)
    except ValueError as error:
        raise ValueError(f"{value!r} is not a time of day (HH:MM or HH:MM:SS)") from error


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario; every mistake is one clear :class:`InvalidConfiguration`."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise InvalidConfiguration(f"{path} is not valid TOML: {error}") from error
    except UnicodeDecodeError as error:
        raise InvalidConfiguration(f"{path} is not UTF-8 text") from error
    try:
        scenario = Scenario.model_validate(document)
    except ValidationError as error:
        raise InvalidConfiguration(f"{path}: {_problems(error)}") from error
    try:
        scenario.vigil_settings(Path("replay"))
    except ValidationError as error:
        raise InvalidConfiguration(f"{path}: [settings] {_problems(error)}") from error
    return scenario


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'scenario'}: {problem['msg']}"
        for problem in error.errors()
    )
