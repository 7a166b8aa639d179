"""A site's conditions at one moment: its lockdown level and the schedules in force.

Pure functions over settings and stored fields, so the policy and the tests need no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum

from vigil.config import LockdownSettings, ScheduleSettings
from vigil.lockdown.kinds import LockdownLevel

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class LevelSource(StrEnum):
    NONE = "none"
    AUTOMATIC = "automatic"  # the rules raised it
    MANUAL = "manual"  # an admin set it; wins until it expires
    SCHEDULE = "schedule"  # a schedule's minimum level


@dataclass(frozen=True)
class SiteConditions:
    """What the site's state adds to the screening of one image."""

    level: LockdownLevel = LockdownLevel.NORMAL
    source: LevelSource = LevelSource.NONE
    schedules: tuple[ScheduleSettings, ...] = ()

    @property
    def schedule_account_days(self) -> tuple[float, str] | None:
        """The strictest "hold accounts younger than N days" in force, and its schedule."""
        held = [
            (schedule.hold_accounts_younger_than_days, schedule.name)
            for schedule in self.schedules
            if schedule.hold_accounts_younger_than_days is not None
        ]
        return max(held) if held else None


def active_schedules(settings: LockdownSettings, now: datetime) -> tuple[ScheduleSettings, ...]:
    local = now.astimezone(settings.zone)
    return tuple(schedule for schedule in settings.schedules if _in_window(schedule, local))


def _in_window(schedule: ScheduleSettings, local: datetime) -> bool:
    start, end, clock = _clock(schedule.start), _clock(schedule.end), local.time()
    today = _WEEKDAYS[local.weekday()]
    if start < end:
        return today in schedule.days and start <= clock < end
    # Overnight (22:00-07:00): the early hours belong to the window that began the day before.
    yesterday = _WEEKDAYS[(local - timedelta(days=1)).weekday()]
    return (clock >= start and today in schedule.days) or (
        clock < end and yesterday in schedule.days
    )


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def effective_level(
    automatic: int,
    manual: int | None,
    manual_until: datetime | None,
    schedules: tuple[ScheduleSettings, ...],
    now: datetime,
) -> tuple[LockdownLevel, LevelSource]:
    """A level set by hand wins (until it expires) over the rules and the schedules; otherwise
    the stricter of the rules' level and the schedules' minimum."""
    if manual is not None and (manual_until is None or manual_until > now):
        return LockdownLevel(manual), LevelSource.MANUAL
    scheduled = max((schedule.minimum_level for schedule in schedules), default=0)
    if automatic >= scheduled and automatic > 0:
        return LockdownLevel(automatic), LevelSource.AUTOMATIC
    if scheduled > 0:
        return LockdownLevel(scheduled), LevelSource.SCHEDULE
    return LockdownLevel.NORMAL, LevelSource.NONE


def rule_scale(schedules: tuple[ScheduleSettings, ...]) -> float:
    """How much more sensitive the rules are now: the smallest scale of the schedules in force."""
    return min((schedule.rule_scale for schedule in schedules), default=1.0)
