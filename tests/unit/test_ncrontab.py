import datetime as dt

import pytest

from devhost.ncrontab import ScheduleError, parse

UTC = dt.timezone.utc


def at(*parts):
    return dt.datetime(*parts, tzinfo=UTC)


@pytest.mark.parametrize("expression,after,expected", [
    ("0 */1 * * * *", at(2026, 1, 1, 10, 0, 0), at(2026, 1, 1, 10, 1, 0)),
    ("0 */1 * * * *", at(2026, 1, 1, 10, 0, 30), at(2026, 1, 1, 10, 1, 0)),
    ("*/5 * * * * *", at(2026, 1, 1, 10, 0, 3), at(2026, 1, 1, 10, 0, 5)),
    ("0 30 9 * * 1-5", at(2026, 11, 27, 10, 0, 0), at(2026, 11, 30, 9, 30, 0)),  # Friday -> Monday
    ("0 0 0 1 Jan *", at(2026, 6, 1), at(2027, 1, 1)),
    ("0 0 12 29 2 *", at(2026, 3, 1), at(2028, 2, 29, 12)),
    ("0 0 0 * * Sun", at(2026, 11, 25), at(2026, 11, 29)),
    ("0 0 0 * * 7", at(2026, 11, 25), at(2026, 11, 29)),
    ("0 0,30 * * * *", at(2026, 1, 1, 23, 45), at(2026, 1, 2, 0, 0)),
    ("15-17 * * * * *", at(2026, 1, 1, 0, 0, 17), at(2026, 1, 1, 0, 1, 15)),
])
def test_next_occurrence(expression, after, expected):
    assert parse(expression).next_after(after) == expected


def test_day_and_weekday_both_restricted_match_either():
    # The 1st of the month or any Monday, as in cron.
    schedule = parse("0 0 0 1 * Mon")
    assert schedule.next_after(at(2026, 11, 25)) == at(2026, 11, 30)  # a Monday before Dec 1
    assert schedule.next_after(at(2026, 11, 30, 1)) == at(2026, 12, 1)


def test_fires_every_minute_sixty_times_an_hour():
    schedule = parse("0 */1 * * * *")
    moment, count = at(2025, 12, 31, 23, 59, 59), 0  # so 00:00:00 counts
    while True:
        moment = schedule.next_after(moment)
        if moment >= at(2026, 1, 1, 1):
            break
        count += 1
    assert count == 60


@pytest.mark.parametrize("expression", [
    "* * * * *", "0 */1 * * * * *", "60 * * * * *", "0 0 24 * * *", "0 0 0 0 * *", "0 0 0 * 13 *",
    "*/0 * * * * *", "5-1 * * * * *", "a * * * * *", "0 0 0 31 2 *", "1,,2 * * * * *",
])
def test_bad_schedules(expression):
    with pytest.raises(ScheduleError):
        parse(expression)
