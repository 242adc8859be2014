"""How long a job may wait and how often it may be tried again: pure rules over plain values.

A job's run is *attempted* once per claim that is not the continuation of a planned slice.
An attempt that is interrupted for a reason that is not the job's fault (storage unreachable
or throttled, its worker lost or stopped) may be followed by another, up to `MaxRetries`; an
attempt that fails for the job's own reason (a scorer error, bad input) ends the job at once.
Each attempt's outcome is kept, in order, on the run and then the job.
"""
from __future__ import annotations

import datetime as dt
import json

DEFAULT_MAX_RETRIES = 5
MAX_RETRIES_CEILING = 20
MAX_QUEUED_SECONDS_CEILING = 7 * 24 * 3600
BACKOFF_FIRST_SECONDS = 2
BACKOFF_MOST_SECONDS = 60

# How an attempt ended.
FINISHED, FAILED, CANCELLED = "Finished", "Failed", "Cancelled"
INTERRUPTED, WORKER_LOST = "Interrupted", "WorkerLost"


def max_retries(row: dict) -> int:
    """A job's, run's or service's MaxRetries as stored (rows from before it existed: the default)."""
    retries = row.get("MaxRetries")
    return DEFAULT_MAX_RETRIES if retries is None else retries


def may_begin(attempts_begun: int, max_retries: int) -> bool:
    """Whether another attempt may begin after `attempts_begun` have."""
    return attempts_begun < 1 + max_retries


def backoff_seconds(attempts_begun: int, first: int = BACKOFF_FIRST_SECONDS, most: int = BACKOFF_MOST_SECONDS) -> int:
    """How long to wait before the next attempt: doubling from `first` (a job's run: 2 s), at
    most `most` (a minute). Push event deliveries use it too, with their own settings."""
    return min(most, first * 2 ** max(attempts_begun - 1, 0))


def outcomes(stored: str | None) -> list[dict]:
    return json.loads(stored or "[]")


def with_outcome(stored: str | None, attempt: int, outcome: str, reason: str, started: dt.datetime | None,
                 ended: dt.datetime, iso) -> str:
    """The outcome list with attempt `attempt`'s outcome recorded (once: a later record of the
    same attempt is ignored, so a doubled report changes nothing)."""
    recorded = outcomes(stored)
    if attempt < 1 or any(entry["Attempt"] == attempt for entry in recorded):
        return json.dumps(recorded)
    recorded.append({"Attempt": attempt, "Outcome": outcome, "Reason": reason, "StartTime": iso(started),
                     "EndTime": iso(ended)})
    return json.dumps(recorded)


def gave_up(attempts_begun: int, last_reason: str) -> str:
    return (f"gave up after {attempts_begun} attempt{'s' if attempts_begun != 1 else ''} "
            f"(MaxRetries {attempts_begun - 1}); the last was interrupted: {last_reason}")


def queue_deadline(queued_at: dt.datetime, max_queued_seconds: int | None) -> dt.datetime | None:
    return queued_at + dt.timedelta(seconds=max_queued_seconds) if max_queued_seconds else None


def waited_too_long(deadline: dt.datetime | None, now: dt.datetime) -> bool:
    return deadline is not None and now >= deadline


def too_long_details(max_queued_seconds: int) -> str:
    return (f"waited longer than its MaxQueuedSeconds of {max_queued_seconds} s without a VM; cancelled, "
            "freeing its place in the queue")
