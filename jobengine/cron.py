"""Quartz cron expressions (the IPS ``execSchedule``): validate, parse, compute fire times.

Syntax and meaning are Quartz 2.3.2 ``CronExpression``'s (see ``docs/cron.md``): ``sec min hour
day-of-month month day-of-week [year]``, exactly one day field ``?``, day-of-week 1 = Sunday.
We are stricter than Quartz and refuse what it accepts leniently (and then evaluates oddly):
extra fields, long names (``MONDAY``), empty list items, step 0 or a step on a name, junk after
``?``, ``W`` with a list or range, ``#`` or ``L`` in a list, ``L`` outside the day fields, years
outside 1970 to this year + 100 (Quartz accepts them and never fires them: it searches up to
``MAX_YEAR``, the year it was loaded + 100, as we do) and ``C`` (calendar) values, which Quartz
parses but does not evaluate.

``nW`` for a day the month lacks (``31W`` in April, ``29W`` or ``30W`` in February) is
evaluated as Quartz 2.3.2 evaluates it, on a lenient calendar: the day rolls over into the next
month, the nearest-weekday rule is applied to that date, and the month fires only when the
result is back inside it. In practice: on its last day, when that is a Friday (the rolled-over
day being a Saturday, whose nearest weekday is the Friday before); otherwise the month is
skipped.

DST policy (Quartz's, on the wall clock of the zone given):

* **spring forward**: a wall time inside the gap does not exist, so it does not fire that day and
  is not shifted to the end of the gap; an hourly schedule skips the missing hour.
* **fall back**: a wall time that occurs twice fires once, at its second occurrence (standard
  time, ``fold=1``); nothing fires during the first (daylight) pass of the repeated interval.
* ``next_after`` returns the earliest such fire instant after ``after``. When ``after`` itself
  lies in the first pass of a repeated interval, the repeated wall times are all still ahead (at
  their second occurrence), so the answer may read earlier on the clock than ``after``. Quartz,
  which searches from the wall time of ``after``, would skip those; our fire times never depend
  on where the search starts.

The search goes field by field (year, month, day, hour, minute, second), never second by second.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "CronExpression", "next_fire_times", "parse", "validate"]

MIN_YEAR = 1970
# Quartz's CronExpression.MAX_YEAR: the year it is loaded + 100; no fire time is ever later
MAX_YEAR = datetime.now(UTC).year + 100
MAX_LENGTH = 1000
_MIDNIGHT = (0, 0, 0)
_ONE_SECOND = timedelta(seconds=1)


class CronError(ValueError):
    """Raised for a bad cron expression or time zone; ``reason`` names the field and token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- fields -------------------------------------------------------------------------------------


class _Field(NamedTuple):
    number: int  # 1-based, as in messages
    name: str
    lo: int
    hi: int
    step_max: int  # Quartz's "Increment > n" limits
    names: tuple[str, ...] = ()  # names[i] is the value lo + i

    def error(self, text: str, message: str) -> CronError:
        return CronError(f"{message} (field {self.number}: {text!r})")

    def value(self, token: str, text: str) -> int:
        if token.isascii() and token.isdigit():
            number = int(token)
        elif token in self.names:
            return self.lo + self.names.index(token)
        else:
            raise self.error(text, _bad_token(token, self))
        if not self.lo <= number <= self.hi:
            raise self.error(text, f"{self.name} values must be between {self.lo} and {self.hi}")
        return number


_MONTHS = tuple(calendar.month_abbr[m].upper() for m in range(1, 13))
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_SECOND = _Field(1, "Second", 0, 59, 59)
_MINUTE = _Field(2, "Minute", 0, 59, 59)
_HOUR = _Field(3, "Hour", 0, 23, 23)
_DOM = _Field(4, "Day-of-Month", 1, 31, 31)
_MONTH = _Field(5, "Month", 1, 12, 12, _MONTHS)
_DOW = _Field(6, "Day-of-Week", 1, 7, 7, _WEEKDAYS)
_YEAR = _Field(7, "Year", MIN_YEAR, MAX_YEAR, MAX_YEAR - MIN_YEAR)
_CLOCK_FIELDS, _DAY_FIELDS = (_SECOND, _MINUTE, _HOUR), (_DOM, _DOW)

_QUESTION = "'?' can only be specified for Day-of-Month -OR- Day-of-Week."
_LAST_DAY = re.compile(r"L(?:-([0-9]*))?(W?)")
_NEAREST = re.compile(r"([0-9]+)W")
_DOW_SPECIAL = re.compile(r"([0-9A-Z]+)(?:(L)|#([0-9]*))")


def _bad_token(token: str, f: _Field) -> str:
    """The message for a token that is neither a number nor a name of field ``f``."""
    spelled = f"{f.names[0]}-{f.names[-1]} or " if f.names else ""
    checks = (
        (not token, f"Missing {f.name} value"),
        ("?" in token, _QUESTION),
        ("#" in token, "'#' is not allowed here, only as '6#3' alone in the Day-of-Week field"),
        (re.fullmatch(r"[0-9]*C", token), "'C' (calendar) values are not supported"),
        (f in _DAY_FIELDS and "L" in token, "'L' must stand alone, as in 'L', 'L-3', 'LW' or '6L'"),
        (
            re.fullmatch(r"[0-9]*LW?|L-[0-9]*W?", token),
            f"'L' is only allowed in the Day-of-Month and Day-of-Week fields, not {f.name}",
        ),
        (
            re.fullmatch(r"[0-9]*W", token),
            f"'W' is only allowed in the Day-of-Month field, not {f.name}",
        ),
        (
            f.names and token.isalpha(),
            f"Invalid {f.name} value {token!r}: use {spelled}{f.lo}-{f.hi}",
        ),
    )
    return next(
        (message for bad, message in checks if bad),
        f"Illegal characters for this position: {token!r}",
    )


def _step(token: str, f: _Field, text: str) -> int:
    if not (token.isascii() and token.isdigit()):
        raise f.error(text, "A number must follow '/'")
    step = int(token)
    if not 1 <= step <= f.step_max:
        raise f.error(text, f"Increment {step} is out of range: {f.name} steps are 1-{f.step_max}")
    return step


def _bounds(base: str, f: _Field, text: str, stepped: bool) -> tuple[int, int]:
    """``*``, ``a``, ``a-b`` as (start, end); ``a/n`` runs to the end of the field."""
    if base == "*":
        return f.lo, f.hi
    first, dash, last = base.partition("-")
    if stepped and (first in f.names or last in f.names):
        raise f.error(text, "A step ('/') cannot follow a name; use numbers")
    if not dash:
        start = f.value(first, text)
        return start, f.hi if stepped else start
    if not first or not last:
        raise f.error(text, "Incomplete range: a range needs a start and an end, as in '1-5'")
    if (first in f.names) != (last in f.names):
        raise f.error(text, "A range must be two numbers or two names")
    return f.value(first, text), f.value(last, text)


def _item(item: str, f: _Field, text: str) -> set[int]:
    """One list item: ``*``, ``a``, ``a-b``, each optionally ``/step``; ranges may wrap."""
    if not item:
        raise f.error(text, "Empty item in list")
    base, slash, step_text = item.partition("/")
    step = _step(step_text, f, text) if slash else 1
    start, end = _bounds(base, f, text, bool(slash))
    if end >= start:
        return set(range(start, end + 1, step))
    if f is _YEAR:
        raise f.error(text, "Start year must be less than stop year")
    size = f.hi - f.lo + 1  # wrap like Quartz: 22-2 hours is 22, 23, 0, 1, 2
    return {(v - f.lo) % size + f.lo for v in range(start, end + size + 1, step)}


def _values(text: str, f: _Field) -> tuple[int, ...]:
    if text == "?":
        raise f.error(text, _QUESTION)
    values: set[int] = set()
    for item in text.split(","):
        values |= _item(item, f, text)
    return tuple(sorted(values))


# --- day rules ----------------------------------------------------------------------------------


class _DayRule(Protocol):
    def __hash__(self) -> int: ...

    def days(self, year: int, month: int) -> tuple[int, ...]:
        """The days of that month the rule fires on, ascending."""
        ...


def _weekday(year: int, month: int, day: int) -> int:
    """Quartz day-of-week: 1 = Sunday .. 7 = Saturday."""
    return (calendar.weekday(year, month, day) + 1) % 7 + 1


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    """The Monday-Friday nearest to ``day``, never leaving the month (Quartz ``W``)."""
    match _weekday(year, month, day):
        case 7:  # Saturday: Friday before, or Monday the 3rd when the 1st is a Saturday
            return 3 if day == 1 else day - 1
        case 1:  # Sunday: Monday after, or Friday before when it is the last day
            return day - 2 if day == last else day + 1
    return day


@dataclass(frozen=True)
class _DaySet:  # day-of-month numbers; days a month lacks are skipped
    values: tuple[int, ...]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        last = calendar.monthrange(year, month)[1]
        return tuple(d for d in self.values if d <= last)


@dataclass(frozen=True)
class _LastDay:  # L, L-n, LW, L-nW
    offset: int
    weekday: bool

    def days(self, year: int, month: int) -> tuple[int, ...]:
        last = calendar.monthrange(year, month)[1]
        day = last - self.offset
        if day < 1:
            return ()
        return (_nearest_weekday(year, month, day, last) if self.weekday else day,)


@dataclass(frozen=True)
class _NearestWeekday:  # nW
    day: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        last = calendar.monthrange(year, month)[1]
        if self.day <= last:
            return (_nearest_weekday(year, month, self.day, last),)
        # Quartz 2.3.2: the day rolls over into the next month (its lenient Calendar); a
        # Saturday goes back one day, a Sunday forward one; it fires if that is this month's.
        rolled = (_weekday(year, month, last) + self.day - last - 1) % 7 + 1
        day = self.day - 1 if rolled == 7 else self.day + 1 if rolled == 1 else self.day
        return (day,) if day <= last else ()


@dataclass(frozen=True)
class _WeekdaySet:  # day-of-week numbers
    values: tuple[int, ...]

    def days(self, year: int, month: int) -> tuple[int, ...]:
        first = _weekday(year, month, 1)
        last = calendar.monthrange(year, month)[1]
        return tuple(d for d in range(1, last + 1) if (first + d - 2) % 7 + 1 in self.values)


@dataclass(frozen=True)
class _LastWeekday:  # nL: the last such weekday of the month
    weekday: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        last = calendar.monthrange(year, month)[1]
        return (last - (_weekday(year, month, last) - self.weekday) % 7,)


@dataclass(frozen=True)
class _NthWeekday:  # n#k: the k-th such weekday; months without one are skipped
    weekday: int
    nth: int

    def days(self, year: int, month: int) -> tuple[int, ...]:
        day = 1 + (self.weekday - _weekday(year, month, 1)) % 7 + 7 * (self.nth - 1)
        return (day,) if day <= calendar.monthrange(year, month)[1] else ()


@lru_cache(maxsize=4096)
def _month_days(rule: _DayRule, year: int, month: int) -> tuple[int, ...]:
    return rule.days(year, month)


def _day_of_month(text: str) -> _DayRule:
    f = _DOM
    if m := _LAST_DAY.fullmatch(text):
        if m[1] == "":
            raise f.error(text, "A number must follow 'L-'")
        offset = int(m[1] or 0)
        if offset > 30:
            raise f.error(text, "Offset from last day must be <= 30")
        return _LastDay(offset, m[2] == "W")
    if m := _NEAREST.fullmatch(text):
        return _NearestWeekday(f.value(m[1], text))
    if "L" in text:
        raise f.error(text, "'L' must stand alone, as in 'L', 'L-3', 'LW' or 'L-3W' (no lists)")
    if "W" in text:
        raise f.error(text, "'W' must follow a single day of the month, without lists or ranges")
    return _DaySet(_values(text, f))


def _day_of_week(text: str) -> _DayRule:
    f = _DOW
    if text == "L":  # a lone L is the last day of the week: Saturday
        return _WeekdaySet((7,))
    if m := _DOW_SPECIAL.fullmatch(text):
        weekday = f.value(m[1], text)
        if m[2]:
            return _LastWeekday(weekday)
        if not m[3] or not 1 <= int(m[3]) <= 5:
            raise f.error(text, "A numeric value between 1 and 5 must follow the '#' option")
        return _NthWeekday(weekday, int(m[3]))
    if "#" in text:
        raise f.error(text, "'#' must stand alone, as in '6#3': no lists, ranges or several '#'")
    if "L" in text:
        raise f.error(text, "'L' cannot be combined with other days of the week")
    return _WeekdaySet(_values(text, f))


# --- the parsed expression ----------------------------------------------------------------------


def _next_in(values: tuple[int, ...], value: int) -> int | None:
    i = bisect_left(values, value)
    return values[i] if i < len(values) else None


@dataclass(frozen=True)
class _Spec:
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: _DayRule
    months: tuple[int, ...]
    years: tuple[int, ...] | None  # None: every year

    def time_from(self, h: int, m: int, s: int) -> tuple[int, int, int] | None:
        """The first (hour, minute, second) of the schedule at or after h:m:s on one day."""
        hour = _next_in(self.hours, h)
        if hour == h:
            minute = _next_in(self.minutes, m)
            if minute == m:
                second = _next_in(self.seconds, s)
                if second is not None:
                    return h, m, second
                minute = _next_in(self.minutes, m + 1)
            if minute is not None:
                return h, minute, self.seconds[0]
            hour = _next_in(self.hours, h + 1)
        return None if hour is None else (hour, self.minutes[0], self.seconds[0])

    def first_year(self, year: int) -> int | None:
        return year if self.years is None else _next_in(self.years, year)

    def next_wall(self, t: datetime, last_year: int) -> datetime | None:
        """The first matching wall-clock time at or after naive ``t``, up to ``last_year``."""
        year, month, day, clock = t.year, t.month, t.day, (t.hour, t.minute, t.second)
        while (first := self.first_year(year)) is not None and first <= last_year:
            if first != year:
                year, month, day, clock = first, 1, 1, _MIDNIGHT
            found = _next_in(self.months, month)
            if found is None:
                year, month, day, clock = year + 1, 1, 1, _MIDNIGHT
                continue
            if found != month:
                month, day, clock = found, 1, _MIDNIGHT
            found = _next_in(_month_days(self.days, year, month), day)
            if found is None:
                year, month, day, clock = year + month // 12, month % 12 + 1, 1, _MIDNIGHT
                continue
            if found != day:
                day, clock = found, _MIDNIGHT
            hms = self.time_from(*clock)
            if hms is not None:
                return datetime(year, month, day, *hms)
            day, clock = day + 1, _MIDNIGHT
        return None


def _split(expression: str) -> list[str]:
    if len(expression) > MAX_LENGTH:
        raise CronError(f"Cron expression is too long (over {MAX_LENGTH} characters)")
    if other := re.search(r"[^\S \t]", expression):
        raise CronError(f"Fields must be separated by spaces or tabs, not {other[0]!r}")
    fields = expression.upper().split()
    if len(fields) < 6:
        raise CronError(
            f"Unexpected end of expression: {len(fields)} fields, expected 6 or 7 "
            "(second minute hour day-of-month month day-of-week [year])"
        )
    if len(fields) > 7:
        raise CronError(f"Unexpected extra tokens after the year field: {' '.join(fields[7:])!r}")
    return fields


def _parse_spec(expression: str) -> _Spec:
    fields = _split(expression)
    seconds, minutes, hours = (_values(fields[i], f) for i, f in enumerate(_CLOCK_FIELDS))
    dom, dow = fields[3], fields[5]
    for text, f in ((dom, _DOM), (dow, _DOW)):
        if "?" in text and text != "?":
            raise f.error(text, "'?' must stand alone in its field")
    if dom == "?" and dow == "?":
        raise CronError(f"{_QUESTION} Both are '?'; give one of them a value")
    if dom != "?" and dow != "?":
        raise CronError(
            "Support for specifying both a day-of-week AND a day-of-month parameter is not "
            f"implemented: one of them must be '?' (fields 4 and 6: {dom!r} {dow!r})"
        )
    days = _day_of_month(dom) if dow == "?" else _day_of_week(dow)
    years = None if len(fields) == 6 or fields[6] == "*" else _values(fields[6], _YEAR)
    return _Spec(seconds, minutes, hours, days, _values(fields[4], _MONTH), years)


# --- wall clock and instants --------------------------------------------------------------------


def _transition(tz: tzinfo, lo: int, hi: int) -> int:
    """The first POSIX second in (lo, hi] whose UTC offset in ``tz`` differs from lo's."""
    before = datetime.fromtimestamp(lo, tz).utcoffset()
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def _start_wall(local: datetime, tz: tzinfo) -> datetime:
    """The earliest wall time whose fire instant can lie after ``local``."""
    offset, later = local.utcoffset(), local.replace(fold=1).utcoffset()
    if local.fold == 0 and offset is not None and later is not None and later < offset:
        # first pass of a repeated interval: its wall times all fire at their second occurrence
        lo = int(local.timestamp())
        shift = datetime.fromtimestamp(
            _transition(tz, lo, lo + int((offset - later).total_seconds()) + 1), tz
        )
        return shift.replace(tzinfo=None)
    return local.replace(tzinfo=None, microsecond=0) + _ONE_SECOND


def _instant(wall: datetime, tz: tzinfo) -> datetime | None:
    """``wall`` in ``tz`` at its second occurrence, or None inside a spring-forward gap."""
    aware = wall.replace(tzinfo=tz, fold=1).astimezone(UTC).astimezone(tz)
    return aware if aware.replace(tzinfo=None) == wall else None


def _gap_end(wall: datetime, tz: tzinfo) -> datetime:
    """The first wall time that exists after the spring-forward gap holding ``wall``."""
    lo, hi = sorted(int(wall.replace(tzinfo=tz, fold=f).timestamp()) for f in (0, 1))
    return datetime.fromtimestamp(_transition(tz, lo, hi), tz).replace(tzinfo=None)


@dataclass(frozen=True)
class CronExpression:
    """A parsed Quartz cron expression; build it with :func:`parse`, which caches."""

    expression: str
    _spec: _Spec = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_spec", _parse_spec(self.expression))

    def next_after(self, after: datetime, tz: tzinfo) -> datetime | None:
        """The first fire time strictly after aware ``after`` on ``tz``'s wall clock, in ``tz``.

        None when the schedule never fires again (searching up to ``MAX_YEAR``, this year + 100,
        as Quartz does).
        """
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError(f"naive datetime {after.isoformat()}: give it a time zone")
        local = after.astimezone(tz)
        start = _start_wall(local, tz)
        last_year = MAX_YEAR
        while (wall := self._spec.next_wall(start, last_year)) is not None:
            fire = _instant(wall, tz)
            if fire is not None:
                return fire
            start = max(_gap_end(wall, tz), wall + _ONE_SECOND)
        return None

    def fire_times(self, after: datetime, tz: tzinfo, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``after`` (fewer when the schedule ends)."""
        times: list[datetime] = []
        while len(times) < count and (fire := self.next_after(after, tz)) is not None:
            times.append(fire)
            after = fire
        return times


@lru_cache(maxsize=1024)
def parse(expression: str) -> CronExpression:
    """Parse (and cache) a Quartz cron expression; raises CronError."""
    return CronExpression(expression)


def validate(expression: str) -> None:
    """Raise CronError when ``expression`` is not a valid Quartz cron expression."""
    parse(expression)


def _zone(tz: str | tzinfo) -> tzinfo:
    if not isinstance(tz, str):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CronError(f"Unknown time zone {tz!r}") from exc


def next_fire_times(
    expression: str, tz: str | tzinfo, after: datetime, count: int = 1
) -> list[datetime]:
    """The next ``count`` fire times of ``expression`` after aware ``after``, in zone ``tz``."""
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError(f"naive datetime {after.isoformat()}: give it a time zone")
    return parse(expression).fire_times(after, _zone(tz), count)
