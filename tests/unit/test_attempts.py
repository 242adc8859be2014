"""The rules for retries and queue-time caps."""
import datetime as dt
import json

from shared import attempts, clock

T0 = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


def test_an_attempt_may_begin_while_retries_are_left():
    assert attempts.may_begin(0, 0) and not attempts.may_begin(1, 0)
    assert attempts.may_begin(3, 3) and not attempts.may_begin(4, 3)


def test_the_back_off_doubles_up_to_a_minute():
    assert [attempts.backoff_seconds(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_each_attempt_has_one_outcome_in_order():
    log = attempts.with_outcome(None, 1, attempts.INTERRUPTED, "storage was unavailable", T0,
                                T0 + dt.timedelta(seconds=5), clock.iso)
    log = attempts.with_outcome(log, 1, attempts.WORKER_LOST, "a second report of attempt 1", T0, T0, clock.iso)
    log = attempts.with_outcome(log, 2, attempts.FINISHED, "", T0 + dt.timedelta(seconds=9),
                                T0 + dt.timedelta(seconds=20), clock.iso)
    assert attempts.outcomes(log) == [
        {"Attempt": 1, "Outcome": "Interrupted", "Reason": "storage was unavailable",
         "StartTime": "2026-11-26T12:00:00.000Z", "EndTime": "2026-11-26T12:00:05.000Z"},
        {"Attempt": 2, "Outcome": "Finished", "Reason": "", "StartTime": "2026-11-26T12:00:09.000Z",
         "EndTime": "2026-11-26T12:00:20.000Z"}]
    assert json.loads(attempts.with_outcome(log, 0, attempts.FAILED, "never begun", None, T0, clock.iso)) == \
        attempts.outcomes(log), "a run that never began an attempt records nothing"


def test_giving_up_says_how_many_attempts_and_why():
    assert attempts.gave_up(3, "the worker stopped (SystemExit)") == (
        "gave up after 3 attempts (MaxRetries 2); the last was interrupted: the worker stopped (SystemExit)")
    assert attempts.gave_up(1, "x").startswith("gave up after 1 attempt (MaxRetries 0)")


def test_a_queue_deadline_only_with_a_cap():
    assert attempts.queue_deadline(T0, None) is None and attempts.queue_deadline(T0, 0) is None
    deadline = attempts.queue_deadline(T0, 30)
    assert deadline == T0 + dt.timedelta(seconds=30)
    assert not attempts.waited_too_long(deadline, T0 + dt.timedelta(seconds=29))
    assert attempts.waited_too_long(deadline, deadline)
    assert not attempts.waited_too_long(None, T0 + dt.timedelta(days=365))
