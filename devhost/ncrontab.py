"""Six-field NCRONTAB schedules, as timer triggers take them.

`{second} {minute} {hour} {day} {month} {day-of-week}`; each field takes `*`, numbers,
ranges `a-b`, lists `a,b`, steps `*/n` or `a-b/n`, and month or day names (`Jan`, `Mon`).
Day-of-week runs 0-6 from Sunday (7 is also Sunday). As in cron, when both day and
day-of-week are restricted, a time matches if either does. Times are UTC, the host's
default when WEBSITE_TIME_ZONE is not set.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_MONTHS = {n: i for i, n in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_DAYS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}

# (field name, lowest, highest, names)
_FIELDS = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _DAYS),
]


class ScheduleError(ValueError):
    """An NCRONTAB expression that cannot be read."""


def _value(text: str, low: int, high: int, names: dict, field: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise ScheduleError(f"'{text}' is not a valid {field}")
    number = int(text)
    if not low <= number <= high:
        raise ScheduleError(f"{field} {number} is outside {low}-{high}")
    return number


def _parse_field(text: str, low: int, high: int, names: dict, field: str) -> tuple[frozenset, bool]:
    """Return the allowed values and whether the field was a bare `*`."""
    allowed: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"empty list item in {field} '{text}'")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"step '{step_text}' in {field} must be a positive whole number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, low, high, names, field), _value(last, low, high, names, field)
            if start > end:
                raise ScheduleError(f"range '{base}' in {field} runs backwards")
        else:
            start = _value(base, low, high, names, field)
            end = high if step_text else start
        allowed.update(range(start, end + 1, step))
    return frozenset(allowed), text == "*"


@dataclass(frozen=True)
class Schedule:
    expression: str
    seconds: frozenset
    minutes: frozenset
    hours: frozenset
    days: frozenset
    months: frozenset
    weekdays: frozenset
    any_day: bool
    any_weekday: bool

    def _day_matches(self, day: dt.date) -> bool:
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return in_days and in_weekdays
        return in_days or in_weekdays

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first occurrence strictly after `moment` (an aware UTC datetime)."""
        candidate = moment.replace(microsecond=0) + dt.timedelta(seconds=1)
        # Walk day by day, then over the few matching times of a matching day; eight
        # years covers every leap-day schedule.
        for _ in range(366 * 8):
            if candidate.month in self.months and self._day_matches(candidate.date()):
                for hour in sorted(h for h in self.hours if h >= candidate.hour):
                    minute_floor = candidate.minute if hour == candidate.hour else 0
                    for minute in sorted(m for m in self.minutes if m >= minute_floor):
                        same_minute = hour == candidate.hour and minute == candidate.minute
                        second_floor = candidate.second if same_minute else 0
                        seconds = sorted(s for s in self.seconds if s >= second_floor)
                        if seconds:
                            return candidate.replace(hour=hour, minute=minute, second=seconds[0])
            candidate = (candidate + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0)
        raise ScheduleError(f"schedule '{self.expression}' never fires")


def parse(expression: str) -> Schedule:
    fields = expression.split()
    if len(fields) != 6:
        raise ScheduleError(
            f"'{expression}' has {len(fields)} fields; NCRONTAB needs six: "
            "{second} {minute} {hour} {day} {month} {day-of-week}")
    parsed = [_parse_field(text, *spec[1:], spec[0]) for text, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in parsed[5][0])
    schedule = Schedule(expression, parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0],
                        parsed[4][0], weekdays, parsed[3][1], parsed[5][1])
    schedule.next_after(dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc))
    return schedule
