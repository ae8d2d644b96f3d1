"""Quartz cron: the measured Quartz 2.3.2 examples, the tutorial, DST, errors and a random oracle.

Expected times come from the Quartz 2.3.2 measurements (quartz-cron.md) or from a calendar;
the property test compares against a brute-force reading of each random expression.
"""

from __future__ import annotations

import calendar
import itertools
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest

from jobengine.cron import MAX_YEAR, CronError, CronExpression, next_fire_times, parse, validate

LA = ZoneInfo("America/Los_Angeles")


def fires(expression: str, after: str, tz: str = "UTC", count: int = 4) -> list[str]:
    """Fire times as ISO strings with offsets; a naive ``after`` is a wall time in ``tz``."""
    start = datetime.fromisoformat(after)
    if start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(tz))
    return [t.isoformat() for t in next_fire_times(expression, tz, start, count)]


def utc(*stamps: str) -> list[str]:
    """'2026-06-28 10:15' -> '2026-06-28T10:15:00+00:00'."""
    return [datetime.fromisoformat(s).replace(tzinfo=UTC).isoformat() for s in stamps]


# --- quartz-cron.md: behaviour measured against Quartz 2.3.2 -------------------------------------

MEASURED = [
    # L-n: n days before the last day (Quartz's own documentation example)
    (
        "0 15 10 L-2 * ?",
        "2026-06-01",
        utc("2026-06-28 10:15", "2026-07-29 10:15", "2026-08-29 10:15", "2026-09-28 10:15"),
    ),
    # LW: last weekday of the month (Jan 31 and Feb 28 2026 are Saturdays)
    ("0 0 0 LW * ?", "2026-01-01", utc("2026-01-30", "2026-02-27", "2026-03-31", "2026-04-30")),
    ("0 0 0 lw * ?", "2026-05-01", utc("2026-05-29", "2026-06-30", "2026-07-31", "2026-08-31")),
    # nW never crosses the month, 31W skips months without a 31st
    ("0 0 0 31W * ?", "2026-01-01", utc("2026-01-30", "2026-03-31", "2026-05-29", "2026-07-31")),
    # 1W: a Saturday 1st (Aug 2026) fires Monday the 3rd, a Sunday 1st (Mar 2026) Monday the 2nd
    ("0 0 0 1W * ?", "2026-02-02", utc("2026-03-02", "2026-04-01", "2026-05-01", "2026-06-01")),
    ("0 0 0 1W * ?", "2026-07-02", utc("2026-08-03", "2026-09-01", "2026-10-01", "2026-11-02")),
    ("0 0 0 15W * ?", "2026-08-01", utc("2026-08-14", "2026-09-15", "2026-10-15", "2026-11-16")),
    # 29W in February: leap years (a Sunday 29th, the last day, goes back to Friday); in common
    # years only when Feb 28 is a Friday (Quartz rolls the 29th over to Saturday, March 1st,
    # whose nearest weekday is the Friday before: measured with Quartz 2.3.2's CronExpression)
    (
        "0 0 0 29W 2 ?",
        "2026-01-01",
        utc("2028-02-29", "2031-02-28", "2032-02-27", "2036-02-29"),
    ),
    ("0 0 0 30W 2 ?", "2026-01-01", utc("2036-02-29", "2064-02-29", "2092-02-29", "2104-02-29")),
    (
        "0 0 0 31W 4,6,9,11 ?",
        "2026-01-01",
        utc("2027-04-30", "2028-06-30", "2029-11-30", "2032-04-30"),
    ),
    # L-30 exists only in 31-day months
    ("0 0 0 L-30 * ?", "2026-01-02", utc("2026-03-01", "2026-05-01", "2026-07-01", "2026-08-01")),
    ("0 0 0 L-3W * ?", "2026-05-01", utc("2026-05-28", "2026-06-26", "2026-07-28", "2026-08-28")),
    # #5: months without a fifth Monday are skipped
    ("0 0 0 ? * 2#5", "2026-01-01", utc("2026-03-30", "2026-06-29", "2026-08-31", "2026-11-30")),
    ("0 0 0 ? * MON#5", "2026-01-01", utc("2026-03-30", "2026-06-29", "2026-08-31", "2026-11-30")),
    # wrapping ranges
    (
        "0 0 22-2 * * ?",
        "2026-03-02 01:30",
        utc("2026-03-02 02:00", "2026-03-02 22:00", "2026-03-02 23:00", "2026-03-03 00:00"),
    ),
    (
        "0 0 12 ? * FRI-MON",
        "2026-03-03",
        utc("2026-03-06 12:00", "2026-03-07 12:00", "2026-03-08 12:00", "2026-03-09 12:00"),
    ),
    (
        "0 0 0 1 NOV-FEB ?",
        "2026-03-01",
        utc("2026-11-01", "2026-12-01", "2027-01-01", "2027-02-01"),
    ),
    ("0 0 0 28-3 * ?", "2026-02-26", utc("2026-02-28", "2026-03-01", "2026-03-02", "2026-03-03")),
    (
        "0 58-2 0 * * ?",
        "2026-03-02",
        utc("2026-03-02 00:01", "2026-03-02 00:02", "2026-03-02 00:58", "2026-03-02 00:59"),
    ),
    (
        "0 0 0/5 ? * 6-2/2",
        "2026-03-06",
        utc("2026-03-06 05:00", "2026-03-06 10:00", "2026-03-06 15:00", "2026-03-06 20:00"),
    ),
    (
        "0 0 12 ? * 6-2/2",
        "2026-03-06 13:00",
        utc("2026-03-08 12:00", "2026-03-13 12:00", "2026-03-15 12:00", "2026-03-20 12:00"),
    ),
    # names in any case; a lone L in day-of-week is Saturday
    (
        "0 0 12 ? jan,Jul sAt",
        "2026-06-01",
        utc("2026-07-04 12:00", "2026-07-11 12:00", "2026-07-18 12:00", "2026-07-25 12:00"),
    ),
    (
        "0 0 12 ? * L",
        "2026-03-02",
        utc("2026-03-07 12:00", "2026-03-14 12:00", "2026-03-21 12:00", "2026-03-28 12:00"),
    ),
    (
        "0 0 12 ? * friL",
        "2026-03-02",
        utc("2026-03-27 12:00", "2026-04-24 12:00", "2026-05-29 12:00", "2026-06-26 12:00"),
    ),
    # years: up to this year + 100 (Quartz's MAX_YEAR); ranges past 2099 fire; far years are found
    ("0 0 12 29 2 ? 2096-2104", "2026-01-01", utc("2096-02-29 12:00", "2104-02-29 12:00")),
    ("0 0 0 1 1 ? 2099", "2026-03-02", utc("2099-01-01")),
    (f"0 0 0 1 1 ? {MAX_YEAR}", "2026-03-02", utc(f"{MAX_YEAR}-01-01")),
    (
        "0 0 0 1 1 ? 2026/5",
        "2026-06-01",
        utc("2031-01-01", "2036-01-01", "2041-01-01", "2046-01-01"),
    ),
    (
        "0 0 12 29 2 ?",
        "2097-01-01",
        utc("2104-02-29 12:00", "2108-02-29 12:00", "2112-02-29 12:00", "2116-02-29 12:00"),
    ),
    (
        "0 0 12 29 2 ? *",
        "2026-01-01",
        utc("2028-02-29 12:00", "2032-02-29 12:00", "2036-02-29 12:00", "2040-02-29 12:00"),
    ),
    # never fires
    ("0 0 0 30 2 ?", "2026-01-01", []),
    ("0 0 0 31 4,6,9,11 ?", "2026-01-01", []),
]


@pytest.mark.parametrize(("expression", "after", "expected"), MEASURED)
def test_measured_quartz_examples(expression: str, after: str, expected: list[str]) -> None:
    assert fires(expression, after, "UTC", 4) == expected


# --- the Quartz tutorial (CronTrigger) examples; 2026-03-02 is a Monday -------------------------

TUTORIAL = [
    ("0 0 12 * * ?", "2026-03-02", utc("2026-03-02 12:00", "2026-03-03 12:00", "2026-03-04 12:00")),
    (
        "0 15 10 ? * *",
        "2026-03-02",
        utc("2026-03-02 10:15", "2026-03-03 10:15", "2026-03-04 10:15"),
    ),
    (
        "0 15 10 * * ?",
        "2026-03-02 10:15",
        utc("2026-03-03 10:15", "2026-03-04 10:15", "2026-03-05 10:15"),
    ),
    (
        "0 15 10 * * ? *",
        "2026-03-02",
        utc("2026-03-02 10:15", "2026-03-03 10:15", "2026-03-04 10:15"),
    ),
    ("0 15 10 * * ? 2005", "2026-03-02", []),
    (
        "0 * 14 * * ?",
        "2026-03-02 14:58",
        utc("2026-03-02 14:59", "2026-03-03 14:00", "2026-03-03 14:01"),
    ),
    (
        "0 0/5 14 * * ?",
        "2026-03-02 14:50",
        utc("2026-03-02 14:55", "2026-03-03 14:00", "2026-03-03 14:05"),
    ),
    (
        "0 0/5 14,18 * * ?",
        "2026-03-02 14:50",
        utc("2026-03-02 14:55", "2026-03-02 18:00", "2026-03-02 18:05"),
    ),
    (
        "0 0-5 14 * * ?",
        "2026-03-02 14:03:30",
        utc("2026-03-02 14:04", "2026-03-02 14:05", "2026-03-03 14:00"),
    ),
    (
        "0 10,44 14 ? 3 WED",
        "2026-03-02",
        utc("2026-03-04 14:10", "2026-03-04 14:44", "2026-03-11 14:10"),
    ),
    (
        "0 10,44 14 ? 3 WED",
        "2026-03-26",
        utc("2027-03-03 14:10", "2027-03-03 14:44", "2027-03-10 14:10"),
    ),
    (
        "0 15 10 ? * MON-FRI",
        "2026-03-06 11:00",
        utc("2026-03-09 10:15", "2026-03-10 10:15", "2026-03-11 10:15"),
    ),
    (
        "0 15 10 15 * ?",
        "2026-03-02",
        utc("2026-03-15 10:15", "2026-04-15 10:15", "2026-05-15 10:15"),
    ),
    (
        "0 15 10 L * ?",
        "2026-01-31 11:00",
        utc("2026-02-28 10:15", "2026-03-31 10:15", "2026-04-30 10:15"),
    ),
    (
        "0 15 10 L 2 ?",
        "2027-03-01",
        utc("2028-02-29 10:15", "2029-02-28 10:15", "2030-02-28 10:15"),
    ),
    (
        "0 15 10 ? * 6L",
        "2026-03-02",
        utc("2026-03-27 10:15", "2026-04-24 10:15", "2026-05-29 10:15"),
    ),
    ("0 15 10 ? * 6L 2002-2005", "2026-03-02", []),
    (
        "0 15 10 ? * 6#3",
        "2026-03-02",
        utc("2026-03-20 10:15", "2026-04-17 10:15", "2026-05-15 10:15"),
    ),
    (
        "0 0 12 1/5 * ?",
        "2026-03-25",
        utc("2026-03-26 12:00", "2026-03-31 12:00", "2026-04-01 12:00"),
    ),
    (
        "0 11 11 11 11 ?",
        "2026-03-02",
        utc("2026-11-11 11:11", "2027-11-11 11:11", "2028-11-11 11:11"),
    ),
]


@pytest.mark.parametrize(("expression", "after", "expected"), TUTORIAL)
def test_quartz_tutorial_examples(expression: str, after: str, expected: list[str]) -> None:
    assert fires(expression, after, "UTC", 3) == expected


# --- time zones and DST -------------------------------------------------------------------------

ZONED = [
    # fall back in LA: 01:00-01:59 happens twice; only the second (PST) pass fires
    (
        "0 0/30 * * * ?",
        "2026-11-01 00:15",
        "America/Los_Angeles",
        [
            "2026-11-01T00:30:00-07:00",
            "2026-11-01T01:00:00-08:00",
            "2026-11-01T01:30:00-08:00",
            "2026-11-01T02:00:00-08:00",
        ],
    ),
    (
        "0 30 1 * * ?",
        "2026-10-31 12:00",
        "America/Los_Angeles",
        ["2026-11-01T01:30:00-08:00", "2026-11-02T01:30:00-08:00"],
    ),
    # spring forward: 02:30 does not exist on 2026-03-08 (LA) or 2026-03-29 (Berlin)
    (
        "0 30 2 * * ?",
        "2026-03-07 12:00",
        "America/Los_Angeles",
        ["2026-03-09T02:30:00-07:00", "2026-03-10T02:30:00-07:00"],
    ),
    (
        "0 30 2 * * ?",
        "2026-03-27 12:00",
        "Europe/Berlin",
        ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"],
    ),
    (
        "0 0 * * * ?",
        "2026-03-08 00:30",
        "America/Los_Angeles",
        ["2026-03-08T01:00:00-08:00", "2026-03-08T03:00:00-07:00", "2026-03-08T04:00:00-07:00"],
    ),
    (
        "* * * * * ?",
        "2026-03-08 01:59:58",
        "America/Los_Angeles",
        ["2026-03-08T01:59:59-08:00", "2026-03-08T03:00:00-07:00", "2026-03-08T03:00:01-07:00"],
    ),
    (
        "0 30 2 ? * SUN",
        "2026-03-02",
        "America/Los_Angeles",
        ["2026-03-15T02:30:00-07:00", "2026-03-22T02:30:00-07:00"],
    ),
    # Berlin fall back (2026-10-25): 02:30 happens twice, fires once, in CET
    (
        "0 30 2 * * ?",
        "2026-10-24 12:00",
        "Europe/Berlin",
        ["2026-10-25T02:30:00+01:00", "2026-10-26T02:30:00+01:00"],
    ),
    # Lord Howe shifts by 30 minutes: spring 02:00 -> 02:30, fall 02:00 -> 01:30
    (
        "0 0/15 * * * ?",
        "2026-10-04 01:30",
        "Australia/Lord_Howe",
        ["2026-10-04T01:45:00+10:30", "2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"],
    ),
    (
        "0 30 2 * * ?",
        "2026-10-03 12:00",
        "Australia/Lord_Howe",
        ["2026-10-04T02:30:00+11:00", "2026-10-05T02:30:00+11:00"],
    ),
    (
        "0 0/15 * * * ?",
        "2026-04-05 00:50",
        "Australia/Lord_Howe",
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:15:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30",
            "2026-04-05T02:00:00+10:30",
        ],
    ),
    # no DST in Kolkata (+05:30): 02:30 fires every day, also on the European switch day
    (
        "0 30 2 * * ?",
        "2026-03-28 12:00",
        "Asia/Kolkata",
        ["2026-03-29T02:30:00+05:30", "2026-03-30T02:30:00+05:30"],
    ),
    (
        "0 0 9 ? * MON-FRI",
        "2026-03-06T04:00:00+00:00",
        "Asia/Kolkata",
        ["2026-03-09T09:00:00+05:30", "2026-03-10T09:00:00+05:30"],
    ),
]


@pytest.mark.parametrize(("expression", "after", "tz", "expected"), ZONED)
def test_time_zones_and_dst(expression: str, after: str, tz: str, expected: list[str]) -> None:
    assert fires(expression, after, tz, len(expected)) == expected


def test_fall_back_daily_fires_once_at_the_standard_time_instant() -> None:
    [fire] = next_fire_times("0 30 1 * * ?", LA, datetime(2026, 11, 1, 7, tzinfo=UTC))
    assert fire.astimezone(UTC) == datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    assert fire.fold == 1 and fire.tzinfo is LA
    after = next_fire_times("0 30 1 * * ?", LA, fire)[0]
    assert after.astimezone(UTC) == datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_after_inside_the_first_pass_still_gets_the_repeated_times() -> None:
    """Our choice: from 01:15 PDT, 01:00 PST (an hour later in real time) is the next fire."""
    after = datetime(2026, 11, 1, 1, 15, tzinfo=LA)  # fold=0: the first, daylight pass
    assert after.utcoffset() == timedelta(hours=-7)
    times = [t.isoformat() for t in next_fire_times("0 0/30 * * * ?", LA, after, 3)]
    assert times == [
        "2026-11-01T01:00:00-08:00",
        "2026-11-01T01:30:00-08:00",
        "2026-11-01T02:00:00-08:00",
    ]
    second_pass = datetime(2026, 11, 1, 1, 15, fold=1, tzinfo=LA)
    assert fires("0 0/30 * * * ?", second_pass.isoformat(), "America/Los_Angeles", 1) == [
        "2026-11-01T01:30:00-08:00"
    ]


def test_after_in_any_zone_and_strictly_after() -> None:
    noon_la = datetime(2026, 6, 1, 12, tzinfo=LA)
    same = [noon_la, noon_la.astimezone(UTC), noon_la.astimezone(ZoneInfo("Asia/Tokyo"))]
    results = {tuple(next_fire_times("0 0 12 * * ?", "America/Los_Angeles", a, 2)) for a in same}
    assert len(results) == 1
    first, second = results.pop()
    assert first == datetime(2026, 6, 2, 12, tzinfo=LA) and first.tzinfo is LA
    assert second == datetime(2026, 6, 3, 12, tzinfo=LA)
    just_before = noon_la - timedelta(microseconds=1)
    assert next_fire_times("0 0 12 * * ?", LA, just_before) == [noon_la]
    fixed = timezone(timedelta(hours=-3))
    assert next_fire_times("0 0 12 * * ?", fixed, noon_la) == [
        datetime(2026, 6, 2, 12, tzinfo=fixed)
    ]


# --- API ------------------------------------------------------------------------------------------


def test_api_shape() -> None:
    expression = parse("0 0 12 * * ?")
    assert expression is parse("0 0 12 * * ?")  # cached
    assert expression == CronExpression("0 0 12 * * ?") and expression.expression == "0 0 12 * * ?"
    validate("0 0 12 * * ?")  # returns None, raises nothing
    after = datetime(2026, 1, 1, tzinfo=UTC)
    assert expression.next_after(after, UTC) == datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert expression.fire_times(after, UTC, 0) == []
    assert len(expression.fire_times(after, UTC, 10)) == 10
    assert parse("0 0 0 1 1 ? 2027").fire_times(after, UTC, 5) == [datetime(2027, 1, 1, tzinfo=UTC)]
    assert parse("0 0 0 1 1 ? 2025").next_after(after, UTC) is None


def test_separators_and_case() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    expected = next_fire_times("0 0 12 ? JAN MON", UTC, after, 3)
    for spelling in ("0\t0\t12 ? JAN MON", "  0  0 12 ?  jan   mon ", "0 0 12 ? Jan Mon *"):
        assert next_fire_times(spelling, UTC, after, 3) == expected


def test_bad_zone_and_naive_datetime() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    for zone in ("Mars/Olympus_Mons", "", "America", "../etc/passwd"):
        with pytest.raises(CronError, match="Unknown time zone"):
            next_fire_times("0 0 12 * * ?", zone, after)
    with pytest.raises(ValueError, match="naive"):
        next_fire_times("0 0 12 * * ?", "UTC", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        parse("0 0 12 * * ?").next_after(datetime(2026, 1, 1), UTC)


def test_next_after_is_fast() -> None:
    expressions = [
        "0 0 12 * * ?",
        "*/7 * * * * ?",
        "0 15 10 ? * 6#3",
        "0 0 0 31W * ?",
        "0 0 0 LW * ?",
        "0 0/30 * * * ?",
        "0 15 10 ? * 6L 2030-2099",
    ]
    parsed = [parse(e) for e in expressions]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    began = time.perf_counter()
    calls = 0
    for expression in parsed:
        after = start
        for _ in range(300):
            nxt = expression.next_after(after, LA)
            assert nxt is not None
            after, calls = nxt, calls + 1
    assert (time.perf_counter() - began) / calls < 0.001
    began = time.perf_counter()
    assert parse("0 0 0 30 2 ?").next_after(start, LA) is None  # a 100-year search
    assert time.perf_counter() - began < 0.05
    began = time.perf_counter()  # jumps over the missing hour, not second by second
    before_gap = datetime(2026, 3, 8, 1, 59, 59, tzinfo=LA)
    assert parse("* * * * * ?").next_after(before_gap, LA) == datetime(2026, 3, 8, 3, tzinfo=LA)
    assert time.perf_counter() - began < 0.01


# --- invalid expressions -----------------------------------------------------------------------

INVALID = [
    ("", "Unexpected end of expression"),
    ("0 0 12 * *", "Unexpected end of expression"),
    ("0 0 12 * * ? 2026 2027", "extra tokens"),
    ("0 0 12 * * *", "both a day-of-week AND a day-of-month"),
    ("0 0 12 1 * MON", "both a day-of-week AND a day-of-month"),
    ("0 0 12 ? * ?", "'?' can only be specified for Day-of-Month -OR- Day-of-Week"),
    ("? 0 12 * * ?", "'?' can only be specified for Day-of-Month -OR- Day-of-Week"),
    ("0 0 12 ? * 0", "Day-of-Week values must be between 1 and 7 (field 6: '0')"),
    ("0 0 12 ? * 8", "Day-of-Week values must be between 1 and 7"),
    ("0 0 12 ? * 8#1", "Day-of-Week values must be between 1 and 7"),
    ("0 0 12 ? * MONDAY", "Invalid Day-of-Week value 'MONDAY'"),
    ("0 0 12 1 JANUARY ?", "Invalid Month value 'JANUARY'"),
    ("1,,2 0 12 * * ?", "Empty item in list (field 1"),
    ("0/0 * * * * ?", "Increment 0"),
    ("0 0 12 ?, * *", "'?' must stand alone"),
    ("0 0 12 * * ?;", "'?' must stand alone"),
    ("0 0 12 ?? * *", "'?' must stand alone"),
    ("0 0 12 1W,15 * ?", "'W' must follow a single day"),
    ("0 0 12 1-15W * ?", "'W' must follow a single day"),
    ("0 0 12 W * ?", "'W' must follow a single day"),
    ("0 0 12 32W * ?", "Day-of-Month values must be between 1 and 31"),
    ("0 0 12 ? * MON#2,FRI", "'#' must stand alone"),
    ("0 0 12 ? * SUN#5,SAT#5", "'#' must stand alone"),
    ("0 0 12 ? * 6#0", "A numeric value between 1 and 5 must follow the '#' option"),
    ("0 0 12 ? * 6#6", "A numeric value between 1 and 5 must follow the '#' option"),
    ("0 0 12 ? * 6#", "A numeric value between 1 and 5 must follow the '#' option"),
    ("0 0 12 * * ? L", "'L' is only allowed in the Day-of-Month and Day-of-Week fields, not Year"),
    ("L 0 12 * * ?", "not Second"),
    ("0 L 12 * * ?", "not Minute"),
    ("0 0 L * * ?", "not Hour"),
    ("0 0 12 1 L ?", "not Month"),
    ("0 0 12 1 1W ?", "'W' is only allowed in the Day-of-Month field"),
    ("0 0 12 1,15,L * ?", "'L' must stand alone"),
    ("0 0 12 L,15 * ?", "'L' must stand alone"),
    ("0 0 12 ? * 6L,2", "'L' cannot be combined with other days of the week"),
    ("0 0 12 L-31 * ?", "Offset from last day must be <= 30"),
    ("0 0 12 L- * ?", "A number must follow 'L-'"),
    ("0/60 * * * * ?", "Increment 60 is out of range: Second steps are 1-59"),
    ("0 0/61 * * * ?", "Increment 61 is out of range: Minute steps are 1-59"),
    ("0 0 0/24 * * ?", "Increment 24 is out of range: Hour steps are 1-23"),
    ("0 0 0 1/32 * ?", "Increment 32 is out of range: Day-of-Month steps are 1-31"),
    ("0 0 0 1 1/13 ?", "Increment 13 is out of range: Month steps are 1-12"),
    ("0 0 0 ? * 1/8", "Increment 8 is out of range: Day-of-Week steps are 1-7"),
    ("0 0 0 1/ * ?", "A number must follow '/'"),
    ("0 0 0 ? * MON/2", "A step ('/') cannot follow a name"),
    ("0 0 0 ? JAN-3 *", "A range must be two numbers or two names"),
    ("0 0 0 * * ? 1969", f"Year values must be between 1970 and {MAX_YEAR}"),
    (f"0 0 0 * * ? 2096-{MAX_YEAR + 1}", f"Year values must be between 1970 and {MAX_YEAR}"),
    ("0 0 0 * * ? 99", f"Year values must be between 1970 and {MAX_YEAR}"),
    ("0 0 0 * * ? 2027-2026", "Start year must be less than stop year"),
    ("0 0 24 * * ?", "Hour values must be between 0 and 23 (field 3: '24')"),
    ("60 0 0 * * ?", "Second values must be between 0 and 59"),
    ("0 60 0 * * ?", "Minute values must be between 0 and 59"),
    ("0 0 0 0 * ?", "Day-of-Month values must be between 1 and 31"),
    ("0 0 0 32 * ?", "Day-of-Month values must be between 1 and 31"),
    ("0 0 0 1 0 ?", "Month values must be between 1 and 12"),
    ("0 0 0 1 13 ?", "Month values must be between 1 and 12"),
    ("0 0 0 ? * SUN-", "Incomplete range"),
    ("0 0 12- * * ?", "Incomplete range"),
    ("0 0 0\n* * ?", "separated by spaces or tabs"),
    ("0 0 0 5C * ?", "'C' (calendar) values are not supported"),
    ("0 0 0 ? * 1C", "'C' (calendar) values are not supported"),
    ("abc 0 0 * * ?", "Illegal characters for this position: 'ABC'"),
    ("0 0 \uff10 * * ?", "Illegal characters"),  # a full-width digit
    ("0 0 0 * * ? 2026#1", "'#' is not allowed here"),
    ("0 " * 600 + "?", "too long"),
]


@pytest.mark.parametrize(("expression", "message"), INVALID)
def test_invalid_expressions(expression: str, message: str) -> None:
    with pytest.raises(CronError) as caught:
        validate(expression)
    assert message in caught.value.reason
    assert str(caught.value) == caught.value.reason
    assert isinstance(caught.value, ValueError)
    with pytest.raises(CronError):
        parse(expression)


# --- property test: random expressions against a brute-force oracle -----------------------------

DayTest = Callable[[date], bool]


@dataclass
class Case:
    expression: str
    seconds: set[int]
    minutes: set[int]
    hours: set[int]
    months: set[int]
    years: set[int] | None
    day: DayTest

    def matches(self, wall: datetime) -> bool:
        return (
            wall.second in self.seconds
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and (self.years is None or wall.year in self.years)
            and self.day(wall.date())
        )


def _spell(rng: random.Random, value: int, lo: int, names: tuple[str, ...]) -> str:
    if names and rng.random() < 0.5:
        name = names[value - lo]
        return rng.choice([name, name.lower(), name.title()])
    return str(value)


def _field(
    rng: random.Random, lo: int, hi: int, names: tuple[str, ...] = ()
) -> tuple[str, set[int]]:
    """A random list/range/step field and, computed independently, the values it stands for."""
    kind = rng.choice(["*", "one", "list", "range", "step", "star-step", "range-step"])
    a, b = rng.randint(lo, hi), rng.randint(lo, hi)
    step = rng.choice([1, 2, 3, 5, 7, rng.randint(1, hi)])
    unrolled = list(range(a, b + 1)) if a <= b else [*range(a, hi + 1), *range(lo, b + 1)]
    if kind == "*":
        return "*", set(range(lo, hi + 1))
    if kind == "one":
        return _spell(rng, a, lo, names), {a}
    if kind == "list":
        values = rng.sample(range(lo, hi + 1), rng.randint(2, 4))
        return ",".join(_spell(rng, v, lo, names) for v in values), set(values)
    if kind == "range":
        named = bool(names) and rng.random() < 0.5
        ends = [names[v - lo] if named else str(v) for v in (a, b)]
        return "-".join(ends), set(unrolled)
    if kind == "step":
        return f"{a}/{step}", set(range(a, hi + 1, step))
    if kind == "star-step":
        return f"*/{step}", set(range(lo, hi + 1, step))
    return f"{a}-{b}/{step}", set(unrolled[::step])


def _qdow(d: date) -> int:
    return d.isoweekday() % 7 + 1  # Quartz: 1 = Sunday


def _last(d: date) -> int:
    return calendar.monthrange(d.year, d.month)[1]


def _nearest(target: int) -> DayTest:
    """Brute force: the weekday of the month closest to ``target`` (if the month has it)."""

    def test(d: date) -> bool:
        if target < 1:
            return False
        if target > _last(d):  # Quartz's lenient Calendar: the day lies in the next month
            rolled = d.replace(day=_last(d)) + timedelta(days=target - _last(d))
            moved = {6: target - 1, 7: target + 1}.get(rolled.isoweekday(), target)
            return d.day == moved <= _last(d)
        weekdays = [n for n in range(1, _last(d) + 1) if d.replace(day=n).isoweekday() <= 5]
        return d.day == min(weekdays, key=lambda n: abs(n - target))

    return test


def _day_of_month(rng: random.Random) -> tuple[str, DayTest]:
    kind = rng.choice(["set", "set", "L", "L-n", "LW", "L-nW", "nW"])
    n = rng.randint(0, 30)
    if kind == "L":
        return "L", lambda d: d.day == _last(d)
    if kind == "L-n":
        return f"L-{n}", lambda d: d.day == _last(d) - n
    if kind == "LW":
        return "LW", lambda d: _nearest(_last(d))(d)
    if kind == "L-nW":
        return f"L-{n}W", lambda d: _nearest(_last(d) - n)(d)
    if kind == "nW":
        day = rng.randint(1, 31)
        return f"{day}W", _nearest(day)
    text, values = _field(rng, 1, 31)
    return text, lambda d: d.day in values


def _day_of_week(rng: random.Random) -> tuple[str, DayTest]:
    names = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
    kind = rng.choice(["set", "set", "nL", "n#k", "L"])
    weekday = rng.randint(1, 7)
    spelled = _spell(rng, weekday, 1, names)
    if kind == "L":
        return "L", lambda d: _qdow(d) == 7
    if kind == "nL":
        return f"{spelled}L", lambda d: _qdow(d) == weekday and d.day + 7 > _last(d)
    if kind == "n#k":
        nth = rng.randint(1, 5)
        return f"{spelled}#{nth}", lambda d: _qdow(d) == weekday and (d.day - 1) // 7 + 1 == nth
    text, values = _field(rng, 1, 7, names)
    return text, lambda d: _qdow(d) in values


def _case(rng: random.Random, dense: bool = False) -> Case:
    """A random expression; ``dense`` ones fire every day, every hour (to cross DST changes)."""
    sec = ("0", {0}) if rng.random() < 0.5 else _field(rng, 0, 59)
    minute = _field(rng, 0, 59)
    hour = ("*", set(range(24))) if dense else _field(rng, 0, 23)
    month = _field(rng, 1, 12, tuple(m.upper() for m in calendar.month_abbr[1:]))
    if dense:
        month, (dom, day), dow = ("*", set(range(1, 13))), ("*", lambda d: True), "?"
    elif rng.random() < 0.5:
        (dom, day), dow = _day_of_month(rng), "?"
    else:
        dom, (dow, day) = "?", _day_of_week(rng)
    year: tuple[str, set[int] | None] = ("", None)
    if rng.random() < 0.2:
        first = rng.randint(2025, 2032)
        last = first + rng.randint(0, 4)
        year = (f"{first}-{last}", set(range(first, last + 1)))
    text = " ".join([sec[0], minute[0], hour[0], dom, month[0], dow, year[0]]).strip()
    return Case(text, sec[1], minute[1], hour[1], month[1], year[1], day)


def _walls(case: Case, first_day: date, last_day: date, not_before: datetime) -> Iterator[datetime]:
    """Every matching wall time from ``not_before`` on, day by day (the oracle)."""
    day = first_day
    while day <= last_day:
        if (
            day.month in case.months
            and (case.years is None or day.year in case.years)
            and case.day(day)
        ):
            hours = sorted(h for h in case.hours if day > not_before.date() or h >= not_before.hour)
            for h, m, s in itertools.product(hours, sorted(case.minutes), sorted(case.seconds)):
                wall = datetime(day.year, day.month, day.day, h, m, s)
                if wall >= not_before:
                    yield wall
        day += timedelta(days=1)


def _oracle(case: Case, after: datetime, tz: tzinfo, count: int, days: int) -> list[datetime]:
    """The first fire instants after ``after`` within ``days``, by the DST policy stated plainly."""
    local = after.astimezone(tz).replace(tzinfo=None)
    start = local - timedelta(hours=3)  # the repeated hour may still lie ahead of `after`
    found: list[datetime] = []
    for wall in _walls(case, start.date(), start.date() + timedelta(days=days), start):
        instant = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)  # second occurrence
        exists = instant.astimezone(tz).replace(tzinfo=None) == wall
        if exists and instant > after:
            found.append(instant)
            if len(found) == count:
                break
    return sorted(found)


TRANSITIONS = {
    "UTC": [],
    "Asia/Kolkata": [],
    "America/Los_Angeles": [
        datetime(2026, 3, 8, 10, tzinfo=UTC),
        datetime(2026, 11, 1, 9, tzinfo=UTC),
    ],
    "Europe/Berlin": [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)],
    "Australia/Lord_Howe": [
        datetime(2026, 4, 4, 15, tzinfo=UTC),
        datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
    ],
}


@pytest.mark.parametrize("zone_name", sorted(TRANSITIONS))
def test_random_expressions_match_a_brute_force_oracle(zone_name: str) -> None:
    rng = random.Random(f"cron-{zone_name}")
    zone = ZoneInfo(zone_name)
    for _ in range(120):
        near_a_change = bool(TRANSITIONS[zone_name]) and rng.random() < 0.5
        case = _case(rng, dense=near_a_change)
        if near_a_change:
            after = rng.choice(TRANSITIONS[zone_name]) + timedelta(seconds=rng.randint(-7200, 3600))
        else:
            after = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
                seconds=rng.randint(0, 4 * 365 * 86400)
            )
        after += timedelta(microseconds=rng.choice([0, 0, 1, 999_999]))
        got = parse(case.expression).fire_times(after, zone, 5)
        for fire in got:
            assert fire.tzinfo is zone and case.matches(fire.replace(tzinfo=None)), case.expression
        instants = [after, *(t.astimezone(UTC) for t in got)]
        assert all(a < b for a, b in itertools.pairwise(instants)), case.expression
        window = 3 * 366
        horizon = after + timedelta(days=window - 2)
        expected = _oracle(case, after, zone, 5, window)
        assert [t for t in instants[1:] if t < horizon] == [t for t in expected if t < horizon], (
            case.expression,
            after,
        )
