"""A site's conditions at one moment, as pure functions: schedule windows (overnight, day
lists, time zones across daylight-saving changes), the effective level and the rules' scale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from vigil.config import LockdownRule, LockdownSettings, ScheduleSettings
from vigil.lockdown.kinds import LockdownLevel, SignalKind
from vigil.lockdown.levels import (
    LevelSource,
    SiteConditions,
    active_schedules,
    effective_level,
    rule_scale,
)

NOW = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)  # a Wednesday


def _schedule(
    name: str = "night", start: str = "22:00", end: str = "07:00", **extra: Any
) -> ScheduleSettings:
    return ScheduleSettings(name=name, start=start, end=end, **extra)


def _active(settings: LockdownSettings, moment: datetime) -> list[str]:
    return [schedule.name for schedule in active_schedules(settings, moment)]


def _in_force(schedule: ScheduleSettings, moment: datetime, timezone: str = "UTC") -> bool:
    settings = LockdownSettings(timezone=timezone, schedules=[schedule])
    return _active(settings, moment) == [schedule.name]


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# Windows in UTC


@pytest.mark.parametrize(
    ("moment", "in_force"),
    [
        ("2026-01-14 21:59", False),
        ("2026-01-14 22:00", True),  # the start is inside
        ("2026-01-14 23:30", True),
        ("2026-01-15 00:00", True),  # past midnight: the window that began the evening before
        ("2026-01-15 03:00", True),
        ("2026-01-15 06:59", True),
        ("2026-01-15 07:00", False),  # the end is outside
        ("2026-01-15 12:00", False),
    ],
)
def test_an_overnight_window_runs_from_the_evening_into_the_next_morning(
    moment: str, in_force: bool
) -> None:
    assert _in_force(_schedule(), _utc(moment)) is in_force


@pytest.mark.parametrize(
    ("moment", "in_force"),
    [
        ("2026-01-14 08:59", False),
        ("2026-01-14 09:00", True),
        ("2026-01-14 16:59", True),
        ("2026-01-14 17:00", False),
        ("2026-01-14 23:00", False),
    ],
)
def test_a_daytime_window_runs_from_start_to_end_on_one_day(moment: str, in_force: bool) -> None:
    assert _in_force(_schedule("office", "09:00", "17:00"), _utc(moment)) is in_force


@pytest.mark.parametrize(
    ("moment", "in_force"),
    [
        ("2026-01-16 23:00", True),  # Friday evening: the window starts on Friday
        ("2026-01-17 03:00", True),  # Saturday's early hours belong to Friday night
        ("2026-01-17 23:00", False),  # Saturday evening: no window starts on Saturday
        ("2026-01-18 03:00", False),  # Sunday's early hours belong to Saturday night
        ("2026-01-16 03:00", False),  # Friday's early hours belong to Thursday night
    ],
)
def test_an_overnight_window_belongs_to_the_day_it_starts(moment: str, in_force: bool) -> None:
    friday_nights = _schedule(days=["fri"])
    assert _in_force(friday_nights, _utc(moment)) is in_force


@pytest.mark.parametrize(
    ("moment", "in_force"),
    [
        ("2026-01-17 12:00", True),  # Saturday
        ("2026-01-18 12:00", True),  # Sunday
        ("2026-01-19 12:00", False),  # Monday
        ("2026-01-16 12:00", False),  # Friday
    ],
)
def test_a_daytime_window_applies_only_on_its_days(moment: str, in_force: bool) -> None:
    weekends = _schedule("weekend", "08:00", "20:00", days=["sat", "sun"])
    assert _in_force(weekends, _utc(moment)) is in_force


def test_a_schedule_without_days_applies_every_day() -> None:
    every_day = _schedule("lunch", "12:00", "13:00")
    mondays_to_sundays = [NOW + timedelta(days=offset, minutes=30) for offset in range(7)]
    assert {moment.weekday() for moment in mondays_to_sundays} == set(range(7))
    assert all(_in_force(every_day, moment) for moment in mondays_to_sundays)


# Windows in the site's time zone

LONDON = "Europe/London"


@pytest.mark.parametrize(
    ("moment", "in_force"),
    [
        # Winter: London keeps GMT, so its hours are UTC's.
        ("2026-01-14 21:30", False),
        ("2026-01-14 22:30", True),
        ("2026-01-15 06:30", True),
        ("2026-01-15 07:30", False),
        # Summer: BST is an hour ahead, so the window is 21:00-06:00 in UTC.
        ("2026-07-15 20:59", False),
        ("2026-07-15 21:30", True),  # 22:30 in London, while still 21:30 in UTC
        ("2026-07-16 05:59", True),
        ("2026-07-16 06:30", False),  # 07:30 in London, though 06:30 UTC is inside 22:00-07:00
    ],
)
def test_a_window_follows_the_sites_clock_in_winter_and_summer(moment: str, in_force: bool) -> None:
    assert _in_force(_schedule(), _utc(moment), LONDON) is in_force


@pytest.mark.parametrize(
    ("moment", "in_force"),
    [
        # The night the clocks go forward (01:00 GMT becomes 02:00 BST on 29 March 2026):
        # the window opens at 22:00 GMT and closes at 07:00 BST, eight hours later.
        ("2026-03-28 21:59", False),
        ("2026-03-28 22:00", True),
        ("2026-03-29 00:59", True),
        ("2026-03-29 01:00", True),  # 02:00 BST: the skipped hour leaves no gap
        ("2026-03-29 05:59", True),
        ("2026-03-29 06:00", False),  # 07:00 BST
        # The night the clocks go back (02:00 BST becomes 01:00 GMT on 25 October 2026):
        # the window opens at 22:00 BST and closes at 07:00 GMT, ten hours later.
        ("2026-10-24 20:59", False),
        ("2026-10-24 21:00", True),  # 22:00 BST
        ("2026-10-25 00:30", True),  # 01:30 BST, the first time round
        ("2026-10-25 01:30", True),  # 01:30 GMT, the second time round
        ("2026-10-25 06:59", True),
        ("2026-10-25 07:00", False),  # 07:00 GMT
    ],
)
def test_a_window_keeps_local_hours_on_the_nights_the_clocks_change(
    moment: str, in_force: bool
) -> None:
    assert _in_force(_schedule(), _utc(moment), LONDON) is in_force


def test_a_windows_day_is_the_sites_day_not_utcs() -> None:
    # Saturday 23:30 UTC in July is already Sunday 00:30 in London.
    sunday_small_hours = _schedule("sunday", "00:00", "02:00", days=["sun"])
    saturday_evening_utc = _utc("2026-07-18 23:30")
    assert saturday_evening_utc.weekday() == 5
    assert _in_force(sunday_small_hours, saturday_evening_utc, LONDON)
    assert not _in_force(sunday_small_hours, saturday_evening_utc, "UTC")


@pytest.mark.parametrize(
    ("moment", "in_force"),
    [
        ("2026-01-14 09:30", True),  # 22:30 NZDT (UTC+13) in the southern summer
        ("2026-01-14 08:30", False),  # 21:30 NZDT
        ("2026-07-15 09:30", False),  # 21:30 NZST (UTC+12) in the southern winter
        ("2026-07-15 10:30", True),  # 22:30 NZST
    ],
)
def test_a_window_in_a_southern_time_zone(moment: str, in_force: bool) -> None:
    assert _in_force(_schedule(), _utc(moment), "Pacific/Auckland") is in_force


def test_every_schedule_in_force_is_active_in_the_order_configured() -> None:
    settings = LockdownSettings(
        schedules=[
            _schedule("night"),
            _schedule("late_evening", "20:00", "23:59"),
            _schedule("morning", "06:00", "09:00"),
        ]
    )
    assert _active(settings, _utc("2026-01-14 22:30")) == ["night", "late_evening"]
    assert _active(settings, _utc("2026-01-15 06:30")) == ["night", "morning"]
    assert _active(settings, _utc("2026-01-15 12:00")) == []
    assert active_schedules(LockdownSettings(), NOW) == ()


# The effective level

_LATER = NOW + timedelta(hours=2)
_EARLIER = NOW - timedelta(minutes=1)


@pytest.mark.parametrize(
    ("automatic", "manual", "manual_until", "minimums", "expected"),
    [
        (0, None, None, [], (LockdownLevel.NORMAL, LevelSource.NONE)),
        (2, None, None, [], (LockdownLevel.ALL_HELD, LevelSource.AUTOMATIC)),
        # A level set by hand wins over the rules, down as well as up.
        (3, 0, _LATER, [], (LockdownLevel.NORMAL, LevelSource.MANUAL)),
        (1, 3, _LATER, [], (LockdownLevel.UPLOADS_PAUSED, LevelSource.MANUAL)),
        # ... and over a schedule's minimum.
        (0, 0, _LATER, [2], (LockdownLevel.NORMAL, LevelSource.MANUAL)),
        # Without an end it lasts until cleared.
        (3, 1, None, [], (LockdownLevel.NEW_ACCOUNTS_HELD, LevelSource.MANUAL)),
        # Once expired (at its end exactly, or before) it counts for nothing.
        (2, 0, NOW, [], (LockdownLevel.ALL_HELD, LevelSource.AUTOMATIC)),
        (0, 3, _EARLIER, [], (LockdownLevel.NORMAL, LevelSource.NONE)),
        (0, 3, _EARLIER, [1], (LockdownLevel.NEW_ACCOUNTS_HELD, LevelSource.SCHEDULE)),
        # Otherwise the stricter of the rules and the schedules; a tie is the rules'.
        (1, None, None, [2], (LockdownLevel.ALL_HELD, LevelSource.SCHEDULE)),
        (1, None, None, [1], (LockdownLevel.NEW_ACCOUNTS_HELD, LevelSource.AUTOMATIC)),
        (3, None, None, [1], (LockdownLevel.UPLOADS_PAUSED, LevelSource.AUTOMATIC)),
        (0, None, None, [1, 2, 0], (LockdownLevel.ALL_HELD, LevelSource.SCHEDULE)),
        (0, None, None, [0], (LockdownLevel.NORMAL, LevelSource.NONE)),
    ],
)
def test_effective_level(
    automatic: int,
    manual: int | None,
    manual_until: datetime | None,
    minimums: list[int],
    expected: tuple[LockdownLevel, LevelSource],
) -> None:
    schedules = tuple(
        _schedule(f"s{number}", minimum_level=LockdownLevel(minimum))
        for number, minimum in enumerate(minimums)
    )
    level, source = effective_level(automatic, manual, manual_until, schedules, NOW)
    assert (level, source) == expected
    assert isinstance(level, LockdownLevel)


@pytest.mark.parametrize(
    ("scales", "expected"),
    [([], 1.0), ([1.0], 1.0), ([0.5, 1.0], 0.5), ([0.5, 0.25, 0.75], 0.25)],
)
def test_the_most_sensitive_schedule_in_force_scales_the_rules(
    scales: list[float], expected: float
) -> None:
    schedules = tuple(
        _schedule(f"s{number}", rule_scale=scale) for number, scale in enumerate(scales)
    )
    assert rule_scale(schedules) == expected


# Site conditions


def test_normal_conditions_hold_nothing() -> None:
    conditions = SiteConditions()
    assert (conditions.level, conditions.source, conditions.schedules) == (
        LockdownLevel.NORMAL,
        LevelSource.NONE,
        (),
    )
    assert conditions.schedule_account_days is None


def test_the_strictest_account_age_in_force_applies() -> None:
    conditions = SiteConditions(
        schedules=(
            _schedule("weeknights", hold_accounts_younger_than_days=3),
            _schedule("level_only", minimum_level=LockdownLevel.NEW_ACCOUNTS_HELD),
            _schedule("holidays", hold_accounts_younger_than_days=14),
        )
    )
    assert conditions.schedule_account_days == (14, "holidays")


def test_schedules_holding_no_accounts_hold_none() -> None:
    conditions = SiteConditions(schedules=(_schedule(rule_scale=0.5),))
    assert conditions.schedule_account_days is None


# Settings that would make no sense are refused


@pytest.mark.parametrize(
    "schedule",
    [
        {"name": "empty", "start": "22:00", "end": "22:00"},
        {"name": "late", "start": "24:00", "end": "07:00"},
        {"name": "vague", "start": "10pm", "end": "07:00"},
        {"name": "someday", "start": "22:00", "end": "07:00", "days": ["friday"]},
        {"name": "insensitive", "start": "22:00", "end": "07:00", "rule_scale": 2},
        {"name": "never", "start": "22:00", "end": "07:00", "rule_scale": 0},
        {"name": "Bad Name", "start": "22:00", "end": "07:00"},
    ],
)
def test_a_schedule_that_makes_no_sense_is_refused(schedule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ScheduleSettings(**schedule)


def test_an_unknown_time_zone_is_refused_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="Europe/London"):
        LockdownSettings(timezone="Europe/Londn")


@pytest.mark.parametrize(
    "rule",
    [
        {"signal": "bank_match", "at_least": 2, "window_minutes": 30, "level": 0},
        {"signal": "bank_match", "at_least": 2, "window_minutes": 30, "level": 4},
        {"signal": "bank_match", "at_least": 0, "window_minutes": 30, "level": 1},
        {"signal": "bank_match", "at_least": 2, "window_minutes": 0, "level": 1},
        {"signal": "moon_phase", "at_least": 2, "window_minutes": 30, "level": 1},
    ],
)
def test_a_rule_that_makes_no_sense_is_refused(rule: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        LockdownRule(**rule)


def test_the_longest_window_covers_rules_and_the_near_duplicate_window() -> None:
    rules = [
        LockdownRule(signal=SignalKind.REPORT, at_least=1, window_minutes=45, level=1),
        LockdownRule(signal=SignalKind.BANK_MATCH, at_least=1, window_minutes=5, level=2),
    ]
    assert LockdownSettings(rules=rules).longest_window_minutes == 45
    assert (
        LockdownSettings(rules=rules, near_duplicate_window_minutes=90).longest_window_minutes == 90
    )
