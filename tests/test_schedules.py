"""Celery's schedules (interval, crontab, solar) and their daylight saving rules: pure computation."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flask_jobs.schedules import (
    BaseSchedule,
    ParseException,
    crontab,
    crontab_parser,
    maybe_schedule,
    schedstate,
    schedule,
    schedule_from_dict,
)
from flask_jobs.solar_schedule import solar

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local_day(tz: tzinfo, year: int, month: int, day: int) -> tuple[datetime, datetime]:
    """The instants of local midnight on that day and on the next."""
    start = datetime(year, month, day, tzinfo=tz)
    end = datetime.combine(start.date() + timedelta(days=1), start.time(), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def runs_between(when: BaseSchedule, start: datetime, end: datetime, tz: tzinfo) -> list[datetime]:
    """Every run in [start, end), by walking next_after, checking each is strictly later."""
    found: list[datetime] = []
    t = start - timedelta(microseconds=1)
    while True:
        nxt = when.next_after(t, tz)
        assert nxt.astimezone(UTC) > t.astimezone(UTC)
        assert nxt.tzinfo is tz
        if nxt.astimezone(UTC) >= end:
            return found
        found.append(nxt)
        t = nxt


def brute_force(c: crontab, after: datetime) -> datetime:
    """The reference: the next matching UTC minute, found a minute at a time (a day at a time
    on days that don't match)."""
    t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while True:
        if t.month in c.month_of_year and t.day in c.day_of_month and t.isoweekday() % 7 in c.day_of_week:
            if t.hour in c.hour and t.minute in c.minute:
                return t
            t += timedelta(minutes=1)
        else:
            t = (t + timedelta(days=1)).replace(hour=0, minute=0)


# -- crontab: known next runs ----------------------------------------------------------------------

MONDAY_2020 = crontab(hour=20, minute=20, day_of_week=1)  # the seed entry, verbatim
LEAP_DAY = crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)
FRIDAY_13 = crontab(minute=0, hour=0, day_of_week="fri", day_of_month=13)

CASES = [
    ("every minute", crontab(), utc(2026, 1, 5, 10, 15, 30), utc(2026, 1, 5, 10, 16)),
    ("every minute, from a whole minute", crontab(), utc(2026, 1, 5, 10, 15), utc(2026, 1, 5, 10, 16)),
    ("*/15", crontab(minute="*/15"), utc(2026, 1, 5, 10, 15), utc(2026, 1, 5, 10, 30)),
    ("*/15 into the next hour", crontab(minute="*/15"), utc(2026, 1, 5, 10, 46), utc(2026, 1, 5, 11)),
    ("*/15 into the next year", crontab(minute="*/15"), utc(2026, 12, 31, 23, 59), utc(2027, 1, 1)),
    ("a range with a step", crontab(minute="10-40/15"), utc(2026, 1, 5, 10, 26), utc(2026, 1, 5, 10, 40)),
    ("a range with a step, wrapping", crontab(minute="10-40/15"), utc(2026, 1, 5, 10, 41),
     utc(2026, 1, 5, 11, 10)),
    ("lists and ranges", crontab(minute="1,13,30-45,50-59/2"), utc(2026, 1, 5, 10, 45),
     utc(2026, 1, 5, 10, 50)),
    ("a list of ints", crontab(minute=[5, 35], hour=[1, 13]), utc(2026, 1, 5, 13, 5),
     utc(2026, 1, 5, 13, 35)),
    ("hours with a step", crontab(minute=0, hour="0,8-17/2"), utc(2026, 1, 5, 12), utc(2026, 1, 5, 14)),
    ("hours into the next day", crontab(minute=0, hour="0,8-17/2"), utc(2026, 1, 5, 16), utc(2026, 1, 6)),
    ("mon-fri from a Friday", crontab(minute=0, hour=9, day_of_week="mon-fri"), utc(2026, 1, 9, 9),
     utc(2026, 1, 12, 9)),
    ("the day name 'sunday'", crontab(minute=0, hour=0, day_of_week="sunday"), utc(2026, 1, 5),
     utc(2026, 1, 11)),
    ("a wrapping day range fri-mon", crontab(minute=0, hour=0, day_of_week="fri-mon"), utc(2026, 1, 5),
     utc(2026, 1, 9)),
    ("seed: Monday 20:20", MONDAY_2020, utc(2026, 1, 1), utc(2026, 1, 5, 20, 20)),
    ("seed: Monday 20:20, a second before", MONDAY_2020, utc(2026, 1, 5, 20, 19, 59),
     utc(2026, 1, 5, 20, 20)),
    ("seed: Monday 20:20, a week on", MONDAY_2020, utc(2026, 1, 5, 20, 20), utc(2026, 1, 12, 20, 20)),
    ("Feb 29 only in leap years", LEAP_DAY, utc(2025, 1, 1), utc(2028, 2, 29)),
    ("Feb 29, the leap year after", LEAP_DAY, utc(2028, 2, 29), utc(2032, 2, 29)),
    ("the 31st skips 30-day months", crontab(minute=0, hour=0, day_of_month=31), utc(2026, 4, 1),
     utc(2026, 5, 31)),
    ("the 31st skips June", crontab(minute=0, hour=0, day_of_month=31), utc(2026, 5, 31), utc(2026, 7, 31)),
    ("the 30th skips February", crontab(minute=0, hour=0, day_of_month=30), utc(2026, 1, 30),
     utc(2026, 3, 30)),
    ("first Monday: day_of_week AND day_of_month",
     crontab(minute=0, hour=0, day_of_week=1, day_of_month="1-7"), utc(2026, 1, 6), utc(2026, 2, 2)),
    ("Friday the 13th", FRIDAY_13, utc(2026, 1, 1), utc(2026, 2, 13)),
    ("Friday the 13th, the next", FRIDAY_13, utc(2026, 2, 13), utc(2026, 3, 13)),
    ("Feb 29 on a Monday", crontab(minute=0, hour=0, day_of_week="mon", day_of_month=29, month_of_year=2),
     utc(2025, 1, 1), utc(2044, 2, 29)),
    ("month names", crontab(minute=0, hour=0, day_of_month=1, month_of_year="jan,jul"), utc(2026, 2, 1),
     utc(2026, 7, 1)),
    ("once a year", crontab(minute=0, hour=0, day_of_month=1, month_of_year=1), utc(2026, 6, 1),
     utc(2027, 1, 1)),
    ("from_string */15", crontab.from_string("*/15 * * * *"), utc(2026, 1, 5, 10, 1),
     utc(2026, 1, 5, 10, 15)),
    ("from_string in cron's order", crontab.from_string("0 9 1-7 * mon"), utc(2026, 1, 6),
     utc(2026, 2, 2, 9)),
]


@pytest.mark.parametrize(("when", "after", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_crontab_next_run(when: crontab, after: datetime, expected: datetime) -> None:
    got = when.next_after(after)
    assert got == expected
    assert got.tzinfo is UTC


def test_crontab_agrees_with_a_minute_by_minute_search() -> None:
    rng = random.Random(20260329)

    def field(size: int, low: int) -> Any:
        kind = rng.choice(["*", "step", "list", "int"])
        if kind == "step":
            return f"*/{rng.randint(1, size // 2 + 1)}"
        if kind == "list":
            return sorted(rng.sample(range(low, low + size), rng.randint(1, 4)))
        return "*" if kind == "*" else rng.randrange(low, low + size)

    checked = 0
    while checked < 150:
        try:
            c = crontab(field(60, 0), field(24, 0), field(7, 0), field(31, 1), field(12, 1))
        except ValueError:
            continue
        for _ in range(3):
            after = utc(2026, 1, 1) + timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
            assert c.next_after(after) == brute_force(c, after), (c, after)
        checked += 1


def test_crontab_uses_the_wall_clock_of_tz() -> None:
    when = crontab(minute=0, hour=9)
    got = when.next_after(utc(2026, 1, 5), KOLKATA)
    assert got == utc(2026, 1, 5, 3, 30)
    assert (got.tzinfo, got.hour, got.minute) == (KOLKATA, 9, 0)
    assert when.next_after(utc(2026, 7, 1), NEW_YORK) == utc(2026, 7, 1, 13)  # 09:00 EDT


# -- crontab and daylight saving time -----------------------------------------------------------------

DST_DAYS = [  # zone, spring-forward day, fall-back day
    (BERLIN, (2026, 3, 29), (2026, 10, 25)),
    (NEW_YORK, (2026, 3, 8), (2026, 11, 1)),
]


@pytest.mark.parametrize(("tz", "day", "count"), [
    (BERLIN, (2026, 3, 29), 23), (BERLIN, (2026, 10, 25), 25), (BERLIN, (2026, 3, 28), 24),
    (NEW_YORK, (2026, 3, 8), 23), (NEW_YORK, (2026, 11, 1), 25), (NEW_YORK, (2026, 11, 2), 24),
])
def test_hourly_job_runs_every_hour_of_real_time(tz: ZoneInfo, day: tuple[int, int, int], count: int) -> None:
    start, end = local_day(tz, *day)
    runs = runs_between(crontab(minute=0), start, end, tz)
    assert len(runs) == count
    instants = [r.astimezone(UTC) for r in runs]
    assert instants[0] == start
    assert all(b - a == timedelta(hours=1) for a, b in zip(instants, instants[1:], strict=False))


@pytest.mark.parametrize("hour_minute", [(0, 30), (1, 30), (2, 0), (2, 30), (2, 59), (3, 0), (3, 30)])
@pytest.mark.parametrize(("tz", "spring", "fall"), DST_DAYS)
def test_fixed_time_job_runs_once_a_day_around_transitions(
        tz: ZoneInfo, spring: tuple[int, int, int], fall: tuple[int, int, int],
        hour_minute: tuple[int, int]) -> None:
    job = crontab(hour=hour_minute[0], minute=hour_minute[1])
    for y, m, d in (spring, fall):
        for offset in (-1, 0, 1):
            day = datetime(y, m, d) + timedelta(days=offset)
            start, end = local_day(tz, day.year, day.month, day.day)
            assert len(runs_between(job, start, end, tz)) == 1, (day, job)


@pytest.mark.parametrize(("tz", "after", "hour", "expected"), [
    # skipped 02:30 runs once, at the fold=0 instant: just after the gap, 03:30 summer time
    (BERLIN, utc(2026, 3, 28, 12), 2, datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)),
    (NEW_YORK, utc(2026, 3, 7, 12), 2, datetime(2026, 3, 8, 3, 30, tzinfo=NEW_YORK)),
    # repeated wall-clock time runs at its first occurrence (summer time)
    (BERLIN, utc(2026, 10, 24, 12), 2, datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)),
    (NEW_YORK, utc(2026, 10, 31, 12), 1, datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)),
])
def test_fixed_time_job_in_a_gap_or_a_fold(tz: ZoneInfo, after: datetime, hour: int,
                                           expected: datetime) -> None:
    got = crontab(hour=hour, minute=30).next_after(after, tz)
    assert got.astimezone(UTC) == expected.astimezone(UTC)  # fold=0 by default
    assert got.utcoffset() == expected.utcoffset()


def test_first_occurrence_is_not_followed_by_the_second() -> None:
    job = crontab(hour=1, minute=30)
    first = job.next_after(utc(2026, 10, 31, 12), NEW_YORK)
    assert first.astimezone(UTC) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    following = datetime(2026, 11, 2, 1, 30, tzinfo=NEW_YORK)  # 01:30 EST, the next day
    assert job.next_after(first, NEW_YORK) == following
    for after in (utc(2026, 11, 1, 5, 45), utc(2026, 11, 1, 6, 15), utc(2026, 11, 1, 6, 30)):
        assert job.next_after(after, NEW_YORK) == following  # neither 01:30 EST that day


def test_wildcard_hour_job_runs_in_both_occurrences_of_the_repeated_hour() -> None:
    start = utc(2026, 11, 1, 5)  # 01:00 EDT
    runs = runs_between(crontab(minute="*/15"), start, utc(2026, 11, 1, 7), NEW_YORK)
    assert [(r.hour, r.minute, r.fold) for r in runs] == [
        (1, 0, 0), (1, 15, 0), (1, 30, 0), (1, 45, 0), (1, 0, 1), (1, 15, 1), (1, 30, 1), (1, 45, 1)]
    assert crontab(minute=0).next_after(utc(2026, 11, 1, 5, 59), NEW_YORK).astimezone(UTC) == utc(
        2026, 11, 1, 6)


def test_wildcard_hour_job_has_no_runs_in_the_skipped_hour() -> None:
    got = crontab(minute="*/15").next_after(datetime(2026, 3, 8, 1, 45, tzinfo=NEW_YORK), NEW_YORK)
    assert got.astimezone(UTC) == utc(2026, 3, 8, 7)  # 03:00 EDT, fifteen minutes later
    start, end = local_day(BERLIN, 2026, 3, 29)
    runs = runs_between(crontab(minute="*/15"), start, end, BERLIN)
    assert len(runs) == 23 * 4 and not [r for r in runs if r.hour == 2]


def test_instants_are_compared_not_wall_clock_times() -> None:
    # 02:10 and 02:50 don't exist on spring forward: they run at 03:10 and 03:50 EDT, the same
    # instants as the 03:xx runs, so each instant runs once
    job = crontab(hour="2,3", minute="10,50")
    start, end = local_day(NEW_YORK, 2026, 3, 8)
    runs = runs_between(job, start, end, NEW_YORK)
    assert [(r.hour, r.minute) for r in runs] == [(3, 10), (3, 50)]
    assert job.next_after(datetime(2026, 3, 8, 3, 10, tzinfo=NEW_YORK), NEW_YORK) == datetime(
        2026, 3, 8, 3, 50, tzinfo=NEW_YORK)


@pytest.mark.parametrize(("tz", "spring", "fall"), DST_DAYS)
def test_runs_strictly_increase_through_transitions(
        tz: ZoneInfo, spring: tuple[int, int, int], fall: tuple[int, int, int]) -> None:
    for spec in ("*/7 * * * *", "30 1,2,3 * * *", "0,45 */2 * * *", "59 * * * *", "* 2 * * *"):
        for day in (spring, fall):
            start, end = local_day(tz, *day)
            runs_between(crontab.from_string(spec), start - timedelta(hours=2), end, tz)


@pytest.mark.parametrize("spec", ["*/7 * * * *", "0,30 * * * *", "59 * * * *", "*/20 * 25-31 3,10 0"])
@pytest.mark.parametrize(("tz", "spring", "fall"), DST_DAYS)
def test_wildcard_hour_job_matches_every_real_minute_whose_wall_clock_matches(
        tz: ZoneInfo, spring: tuple[int, int, int], fall: tuple[int, int, int], spec: str) -> None:
    job = crontab.from_string(spec)
    for day in (spring, fall):
        start, end = local_day(tz, *day)
        expected, t = [], start
        while t < end:  # every minute of real time, looked at on the wall clock
            wall = t.astimezone(tz)
            if (wall.minute in job.minute and wall.hour in job.hour and wall.day in job.day_of_month
                    and wall.month in job.month_of_year and wall.isoweekday() % 7 in job.day_of_week):
                expected.append(t)
            t += timedelta(minutes=1)
        assert [r.astimezone(UTC) for r in runs_between(job, start, end, tz)] == expected


def test_a_fixed_job_with_every_minute_of_a_skipped_hour_runs_after_the_gap() -> None:
    start, end = local_day(NEW_YORK, 2026, 3, 8)
    runs = runs_between(crontab(hour=2, minute="*/15"), start, end, NEW_YORK)
    assert [(r.hour, r.minute, r.utcoffset()) for r in runs] == [
        (3, m, timedelta(hours=-4)) for m in (0, 15, 30, 45)]


# -- crontab: bad input, parsing, from_string -----------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"hour": "25"}, ["crontab(hour='25'): 25 is out of range 0-23; use 0-23, '*', '*/n', 'a-b' or a list"]),
    ({"hour": 25}, ["crontab(hour=25)", "25 is out of range 0-23", "use 0-23"]),
    ({"minute": "*/0"}, ["crontab(minute='*/0')", "whole number above 0", "use 0-59"]),
    ({"minute": "*/x"}, ["crontab(minute='*/x')", "whole number above 0"]),
    ({"minute": ""}, ["crontab(minute='')", "empty part"]),
    ({"minute": "1,,2"}, ["empty part"]),
    ({"minute": "5/15"}, ["a step needs '*' or a range before it", "'*/15'"]),
    ({"minute": "-5"}, ["negative numbers"]),
    ({"minute": "1-"}, ["a number is missing"]),
    ({"minute": "60"}, ["60 is out of range 0-59"]),
    ({"minute": "jan"}, ["crontab(minute='jan')", "'jan' in 'jan' is not a number"]),
    ({"hour": "mon"}, ["crontab(hour='mon')", "is not a number"]),
    ({"minute": [0, 60]}, ["crontab(minute=[0, 60])", "60 is out of range 0-59"]),
    ({"minute": []}, ["empty list matches nothing"]),
    ({"day_of_week": 7}, ["crontab(day_of_week=7)", "7 is out of range 0-6", "Sunday is 0, not 7",
                          "mon-fri"]),
    ({"day_of_week": "7"}, ["7 is out of range 0-6", "Sunday is 0"]),
    ({"day_of_week": "funday"}, ["'funday'", "not a number or a name", "'mon-fri'"]),
    ({"day_of_week": "mo"}, ["'mo'", "not a number or a name"]),
    ({"day_of_week": "jan"}, ["'jan'", "not a number or a name"]),
    ({"day_of_month": 0}, ["crontab(day_of_month=0)", "0 is out of range 1-31", "use 1-31"]),
    ({"day_of_month": "32"}, ["32 is out of range 1-31"]),
    ({"month_of_year": "13"}, ["crontab(month_of_year='13')", "13 is out of range 1-12", "'jan,jul'"]),
    ({"month_of_year": "mon"}, ["'mon'", "not a number or a name"]),
    ({"day_of_month": 31, "month_of_year": 2}, ["day_of_month=31", "month_of_year=2", "never run"]),
    ({"day_of_month": "30,31", "month_of_year": "feb"}, ["never run"]),
    ({"day_of_month": 31, "month_of_year": "4,6,9,11"}, ["never run"]),
])
def test_bad_crontab_fields_say_what_is_valid(kwargs: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        crontab(**kwargs)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("kwargs", [{"minute": 1.5}, {"minute": ["a"]}, {"minute": True}, {"hour": None}])
def test_crontab_fields_of_the_wrong_type(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="give an int, a cron string like '\\*/15', or a list of ints"):
        crontab(**kwargs)


def test_crontab_accepts_names_and_iterables() -> None:
    assert crontab(day_of_week="mon-fri").day_of_week == {1, 2, 3, 4, 5}
    assert crontab(day_of_week="Monday,sat").day_of_week == {1, 6}
    assert crontab(day_of_week="mon-sun").day_of_week == {0, 1, 2, 3, 4, 5, 6}
    assert crontab(day_of_week="sun").day_of_week == {0}
    assert crontab(month_of_year="jan-mar,Sept,dec").month_of_year == {1, 2, 3, 9, 12}
    assert crontab(minute=range(0, 60, 20)).minute == {0, 20, 40}
    assert crontab(hour={3, 4}, minute=(1, 2)).hour == {3, 4}
    assert crontab(minute="50-10/5").minute == {50, 55, 0, 5, 10}
    assert crontab(minute=" 1, 2").minute == {1, 2}


def test_crontab_parser_as_celery() -> None:
    assert crontab_parser(60).parse("*/15") == {0, 15, 30, 45}
    assert crontab_parser(24).parse("*/4") == {0, 4, 8, 12, 16, 20}
    assert crontab_parser(7).parse("*") == {0, 1, 2, 3, 4, 5, 6}
    assert crontab_parser(31, 1).parse("*/3") == {1, 4, 7, 10, 13, 16, 19, 22, 25, 28, 31}
    assert crontab_parser(12, 1).parse("*/2") == {1, 3, 5, 7, 9, 11}
    assert crontab_parser(12, 1).parse("2-12/2") == {2, 4, 6, 8, 10, 12}
    assert crontab_parser(7).parse("fri-mon") == {5, 6, 0, 1}
    assert crontab_parser(12, 1).parse("feb") == {2}  # by default both kinds of names, as Celery
    with pytest.raises(ParseException, match="8 is out of range 0-6"):
        crontab_parser(7).parse("8")
    assert issubclass(ParseException, ValueError)


def test_from_string() -> None:
    assert crontab.from_string("30 20 * * 1") == crontab(minute=30, hour=20, day_of_week=1)
    c = crontab.from_string("0 9 1-7 jan,jul mon-fri")
    assert (c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week) == (
        {0}, {9}, set(range(1, 8)), {1, 7}, {1, 2, 3, 4, 5})
    with pytest.raises(ValueError, match="expected 5 fields, 'minute hour day_of_month month_of_year "
                                         "day_of_week', got 3"):
        crontab.from_string("* * *")
    with pytest.raises(ValueError, match=r"crontab\(day_of_week='8'\): 8 is out of range 0-6"):
        crontab.from_string("* * * * 8")


def test_next_after_needs_an_aware_datetime() -> None:
    for when in (crontab(), schedule(30)):
        with pytest.raises(ValueError, match="naive; pass an aware datetime"):
            when.next_after(datetime(2026, 1, 5))


def test_crontab_repr_as_celery() -> None:
    assert repr(crontab(hour=20, minute=30, day_of_week=1)) == "<crontab: 30 20 * * 1 (m/h/dM/MY/d)>"
    assert repr(crontab()) == "<crontab: * * * * * (m/h/dM/MY/d)>"
    assert repr(crontab(minute=[15, 0], month_of_year="jan")) == "<crontab: 0,15 * * jan * (m/h/dM/MY/d)>"


# -- schedule (interval) ------------------------------------------------------------------------------

def test_seed_interval_every_30_seconds() -> None:
    every = maybe_schedule(30.0)
    assert every == schedule(30) and isinstance(every, schedule)
    assert every.run_every == timedelta(seconds=30) and every.seconds == 30.0 and not every.relative
    assert every.next_after(utc(2026, 1, 5, 10, 0, 10)) == utc(2026, 1, 5, 10, 0, 40)
    assert repr(every) == "<freq: 30.00 seconds>"


def test_interval_counts_real_time_across_dst() -> None:
    first = datetime(2026, 11, 1, 1, 30, tzinfo=NEW_YORK)  # 01:30 EDT
    got = schedule(timedelta(hours=1)).next_after(first, NEW_YORK)
    assert got.astimezone(UTC) - first.astimezone(UTC) == timedelta(hours=1)
    assert (got.hour, got.minute, got.fold) == (1, 30, 1)  # 01:30 EST


@pytest.mark.parametrize(("run_every", "after", "expected", "tz"), [
    (3600, utc(2026, 1, 5, 10, 17, 42), utc(2026, 1, 5, 11), UTC),  # hourly: the top of the hour
    (7200, utc(2026, 1, 5, 10, 17), utc(2026, 1, 5, 12), UTC),
    (86400, utc(2026, 1, 5, 10, 17), utc(2026, 1, 6), UTC),  # daily: midnight
    (90, utc(2026, 1, 5, 10, 17, 30), utc(2026, 1, 5, 10, 19), UTC),  # minutes: the whole minute
    (30, datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=UTC), utc(2026, 1, 5, 10, 0, 30), UTC),  # seconds
    (3600, datetime(2026, 1, 5, 10, 17, tzinfo=KOLKATA), datetime(2026, 1, 5, 11, tzinfo=KOLKATA), KOLKATA),
])
def test_relative_interval_rounds_as_celery(run_every: float, after: datetime, expected: datetime,
                                            tz: tzinfo) -> None:
    got = schedule(run_every, relative=True).next_after(after, tz)
    assert got == expected and got.tzinfo is tz


def test_relative_sub_second_interval_still_moves_on() -> None:
    after = datetime(2026, 1, 5, 10, 0, 0, 500000, tzinfo=UTC)
    assert schedule(0.3, relative=True).next_after(after) == after + timedelta(seconds=0.3)


@pytest.mark.parametrize(("run_every", "error", "message"), [
    (0, ValueError, "the interval must be a finite number of seconds above 0"),
    (-5, ValueError, "seconds above 0"),
    (timedelta(0), ValueError, "seconds above 0"),
    (timedelta(seconds=-1), ValueError, "seconds above 0"),
    (float("nan"), ValueError, "finite number"),
    (float("inf"), ValueError, "finite number"),
    ("30", TypeError, "give seconds \\(int or float\\) or a timedelta"),
    (True, TypeError, "give seconds"),
])
def test_bad_intervals(run_every: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        schedule(run_every)


def test_interval_repr() -> None:
    assert repr(schedule(3600)) == "<freq: 1.00 hour>"
    assert repr(schedule(90)) == "<freq: 1.50 minutes>"
    assert repr(schedule(timedelta(days=2))) == "<freq: 2.00 days>"


# -- is_due and remaining_estimate (Celery's meaning) ---------------------------------------------------

def test_interval_is_due() -> None:
    every = schedule(30)
    last = utc(2026, 1, 5, 10)
    assert every.remaining_estimate(last, utc(2026, 1, 5, 10, 0, 10)) == timedelta(seconds=20)
    assert every.is_due(last, utc(2026, 1, 5, 10, 0, 10)) == schedstate(False, 20.0)
    assert every.is_due(last, utc(2026, 1, 5, 10, 0, 31)) == (True, 30.0)  # next: a whole interval
    assert every.remaining_estimate(last, utc(2026, 1, 5, 10, 1)) == timedelta(seconds=-30)


def test_crontab_is_due() -> None:
    quarterly = crontab(minute="*/15")
    last = utc(2026, 1, 5, 10)
    assert quarterly.is_due(last, utc(2026, 1, 5, 10, 14)) == (False, 60.0)
    state = quarterly.is_due(last, utc(2026, 1, 5, 10, 15, 5))
    assert state.is_due and state.next == 895.0  # the run after now, 10:30
    # naive datetimes are UTC, as in Celery
    assert quarterly.is_due(datetime(2026, 1, 5, 10), datetime(2026, 1, 5, 10, 14)) == (False, 60.0)
    assert quarterly.remaining_estimate(last, utc(2026, 1, 5, 10, 20), BERLIN) == timedelta(minutes=-5)


def test_is_due_defaults_to_now() -> None:
    state = crontab().is_due(datetime.now(UTC) - timedelta(minutes=5))
    assert state.is_due and 0 <= state.next <= 60


# -- to_dict, schedule_from_dict, equality, maybe_schedule --------------------------------------------

ROUND_TRIPS = [
    schedule(30), schedule(30.0), schedule(0.5), schedule(timedelta(hours=1), relative=True),
    crontab(), MONDAY_2020, crontab(minute="*/15", hour="8-17", day_of_week="mon-fri"),
    crontab(minute=range(0, 60, 20), hour={5, 1}), crontab.from_string("0 9 1-7 jan,jul mon"), LEAP_DAY,
]


@pytest.mark.parametrize("when", ROUND_TRIPS, ids=repr)
def test_to_dict_round_trip(when: BaseSchedule) -> None:
    data = json.loads(json.dumps(when.to_dict()))
    assert data["type"] == type(when).type_name
    rebuilt = schedule_from_dict(data)
    assert rebuilt == when and hash(rebuilt) == hash(when) and type(rebuilt) is type(when)
    assert rebuilt.to_dict() == data and repr(rebuilt) == repr(when)


def test_equality() -> None:
    assert crontab(minute="*/15") == crontab(minute="0,15,30,45") == crontab(minute=[45, 30, 15, 0])
    assert hash(crontab(minute="*/15")) == hash(crontab(minute=[0, 15, 30, 45]))
    assert crontab(day_of_week="mon") == crontab(day_of_week=1)
    assert crontab(minute=0) != crontab(minute=1)
    assert crontab(minute=0).to_dict() != crontab(minute=1).to_dict()
    assert schedule(30) == timedelta(seconds=30) and schedule(30) == schedule(timedelta(seconds=30))
    assert schedule(30) != schedule(30, relative=True) and schedule(30) != schedule(31)
    assert schedule(60) != crontab() and crontab() != "* * * * *"
    assert len({schedule(30), schedule(30.0), crontab(), crontab(minute="*")}) == 2


@pytest.mark.parametrize(("data", "message"), [
    ({"type": "nope"}, "unknown schedule type 'nope'"),
    ({"run_every": 30}, "unknown schedule type None"),
    ({"type": "crontab", "minutes": "*"}, "can't rebuild a crontab schedule"),
    ({"type": "schedule"}, "can't rebuild a schedule schedule"),
    ({"type": "crontab", "hour": 25}, "25 is out of range 0-23"),
])
def test_schedule_from_dict_rejects_bad_data(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        schedule_from_dict(data)


def test_maybe_schedule() -> None:
    assert maybe_schedule(30) == schedule(30)
    assert maybe_schedule(timedelta(minutes=5)) == schedule(300)
    relative = maybe_schedule(3600, relative=True)
    assert isinstance(relative, schedule) and relative.relative
    every = crontab(minute=0)
    assert maybe_schedule(every) is every
    for bad in ("30", None, True, [30]):
        with pytest.raises(TypeError, match="seconds \\(an int or a float\\), a timedelta, or a schedule"):
            maybe_schedule(bad)  # type: ignore[arg-type]


# -- solar ---------------------------------------------------------------------------------------------

def test_solar_without_ephem_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ephem", None)  # as if it were not installed
    message = r"solar schedules need the 'ephem' package: pip install 'flask-jobs-redis\[solar\]'"
    with pytest.raises(ImportError, match=message):
        solar("sunrise", 51.5, 0)
    with pytest.raises(ImportError, match=message):
        schedule_from_dict({"type": "solar", "event": "sunrise", "lat": 51.5, "lon": 0})


def test_schedules_import_without_ephem() -> None:
    code = ("import sys; sys.modules['ephem'] = None\n"
            "import flask_jobs.schedules as s, flask_jobs.solar_schedule\n"
            "print(s.crontab(minute=0).next_after(s.datetime(2026, 1, 5, tzinfo=s.UTC)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2026-01-05 01:00:00+00:00"


@pytest.mark.parametrize(("args", "fragments"), [
    (("sunrize", 51.5, 0), ["unknown event 'sunrize'", "did you mean 'sunrise'?", "dusk_astronomical"]),
    (("noon", 51.5, 0), ["unknown event 'noon'", "use one of dawn_astronomical"]),
    (("sunrise", 95, 0), ["latitude 95 is out of range", "use -90 to 90 (south to north)"]),
    (("sunrise", 51.5, -200), ["longitude -200 is out of range", "use -180 to 180 (west to east)"]),
    (("sunrise", "51.5", 0), ["latitude must be a number of degrees"]),
    (("sunrise", 51.5, float("inf")), ["longitude must be a number of degrees"]),
])
def test_bad_solar_arguments(args: tuple[Any, Any, Any], fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        solar(*args)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.fixture
def ephem() -> Any:
    return pytest.importorskip("ephem")


@pytest.mark.parametrize(("event", "lat", "lon", "tz", "day", "published"), [
    # published times for 21 June (sunrise/sunset tables), within two minutes
    ("sunrise", 51.5074, -0.1278, ZoneInfo("Europe/London"), (2026, 6, 21), (4, 43)),
    ("sunset", 51.5074, -0.1278, ZoneInfo("Europe/London"), (2026, 6, 21), (21, 21)),
    ("sunrise", 40.7128, -74.0060, NEW_YORK, (2026, 6, 21), (5, 25)),
    ("sunset", 40.7128, -74.0060, NEW_YORK, (2026, 6, 21), (20, 31)),
])
def test_solar_matches_published_times(ephem: Any, event: str, lat: float, lon: float, tz: ZoneInfo,
                                       day: tuple[int, int, int], published: tuple[int, int]) -> None:
    got = solar(event, lat, lon).next_after(datetime(*day, tzinfo=tz), tz)
    expected = datetime(*day, *published, tzinfo=tz)
    assert got.tzinfo is tz
    assert abs(got - expected) < timedelta(minutes=2)


def test_solar_next_after_an_event_is_the_next_day(ephem: Any) -> None:
    sunrise = solar("sunrise", 51.5074, -0.1278)
    first = sunrise.next_after(utc(2026, 6, 20))
    second = sunrise.next_after(first)
    assert timedelta(hours=23, minutes=55) < second - first < timedelta(hours=24, minutes=5)
    # (ephem's answer moves by milliseconds with the start of its search)
    assert abs(sunrise.next_after(first - timedelta(seconds=30)) - first) < timedelta(seconds=1)
    assert sunrise.next_after(first, NEW_YORK) == second  # tz sets only the zone of the answer


@pytest.mark.parametrize(("event", "after", "earliest", "latest"), [
    ("sunset", utc(2026, 6, 21), utc(2026, 7, 24), utc(2026, 7, 27)),  # midnight sun ends
    ("sunrise", utc(2026, 12, 21), utc(2027, 1, 14), utc(2027, 1, 17)),  # polar night ends
    ("solar_noon", utc(2026, 12, 21), utc(2026, 12, 21), utc(2026, 12, 22)),  # every day
])
def test_solar_polar_skips_to_the_next_day_with_the_event(ephem: Any, event: str, after: datetime,
                                                         earliest: datetime, latest: datetime) -> None:
    got = solar(event, 69.6492, 18.9553).next_after(after)  # Tromsø
    assert earliest <= got <= latest


def test_solar_is_due_round_trip_and_repr(ephem: Any) -> None:
    sunset = solar("sunset", -37.81753, 144.96715)  # Celery's example: Melbourne
    assert repr(sunset) == "<solar: sunset at latitude -37.81753, longitude: 144.96715>"
    event = sunset.next_after(utc(2026, 1, 5))
    assert sunset.is_due(utc(2026, 1, 5), event - timedelta(seconds=10)) == (False, pytest.approx(10.0))
    state = sunset.is_due(utc(2026, 1, 5), event + timedelta(seconds=1))
    assert state.is_due and 23 * 3600 < state.next < 25 * 3600
    data = json.loads(json.dumps(sunset.to_dict()))
    assert data == {"type": "solar", "event": "sunset", "lat": -37.81753, "lon": 144.96715}
    assert schedule_from_dict(data) == sunset and hash(schedule_from_dict(data)) == hash(sunset)
    assert solar("sunrise", 51, 0) == solar("sunrise", 51.0, 0.0) != solar("sunset", 51, 0)
    assert maybe_schedule(sunset) is sunset


# Celery's periodic tasks guide: its table of crontab examples, verbatim.
CELERY_GUIDE_CRONTABS = [
    "crontab()",
    "crontab(minute=0, hour=0)",
    "crontab(minute=0, hour='*/3')",
    "crontab(minute=0, hour='0,3,6,9,12,15,18,21')",
    "crontab(minute='*/15')",
    "crontab(day_of_week='sunday')",
    "crontab(minute='*', hour='*', day_of_week='sun')",
    "crontab(minute='*/10', hour='3,17,22', day_of_week='thu,fri')",
    "crontab(minute=0, hour='*/2,*/3')",
    "crontab(minute=0, hour='*/5')",
    "crontab(minute=0, hour='*/3,8-17')",
    "crontab(0, 0, day_of_month='2')",
    "crontab(0, 0, day_of_month='2-30/2')",
    "crontab(0, 0, day_of_month='1-7,15-21')",
    "crontab(0, 0, day_of_month='11', month_of_year='5')",
    "crontab(0, 0, month_of_year='*/3')",
]


@pytest.mark.parametrize("expression", CELERY_GUIDE_CRONTABS)
def test_celerys_crontab_examples(expression: str) -> None:
    when = eval(expression, {"crontab": crontab})  # noqa: S307 - the guide's own text
    for after in (utc(2026, 12, 7, 10, 7), utc(2027, 2, 28, 23, 59), utc(2028, 2, 29, 0, 0)):
        assert when.next_after(after) == brute_force(when, after), (expression, after)
