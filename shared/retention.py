"""Retention: ended jobs and the history rows of jobs are kept for JOB_RETENTION_DAYS (as BES
kept a job's results for days, not for ever), the outputs the app writes itself for
OUTPUT_RETENTION_MINUTES. The ledger (each pool's VM-seconds by hour, each classic job's run
time) is the bill and is kept.

A job-hour row is removed only once no job still kept can have run in its hour: a kept job
ended after the cutoff and ran at most its TimeoutSeconds (at most a day, see
`shared.services`), so hours before the cutoff less that day are done. Per-job cost of a
kept job is therefore unchanged: every job that shared one of its hours is still there.
Pruning runs now and then (a quarter of the retention, at most hourly) over the pools in the
`~active` index; a deleted pool past retention and billed to the end then leaves the index.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from shared import billing, events, layout, pools, services
from shared.settings import get_settings
from shared.storage import POOLS, get_store, remove_older_than

log = logging.getLogger(__name__)

MAX_OPERATIONS = 100  # of one entity-group transaction
LONGEST_RUN = dt.timedelta(seconds=services.MAX_TIMEOUT_SECONDS)


class _Due:
    """When this process next runs a pass with this period."""

    def __init__(self):
        self.next_at = 0.0

    def due(self, period: dt.timedelta) -> bool:
        if time.monotonic() < self.next_at:
            return False
        self.next_at = time.monotonic() + min(max(period.total_seconds() / 4, 10), 3600)
        return True


_outputs_due, _jobs_due = _Due(), _Due()


def expire_outputs(now: dt.datetime) -> int:
    """Remove kept job outputs older than their retention."""
    settings = get_settings()
    kept = dt.timedelta(minutes=settings.output_retention_minutes)
    removed = remove_older_than(settings.host_account(), settings.output_container, now - kept)
    if removed:
        log.info("kept outputs removed count=%s retention_minutes=%s", removed, settings.output_retention_minutes)
    return removed


def _delete_all(rows: list[dict]) -> None:
    store = get_store()
    for first in range(0, len(rows), MAX_OPERATIONS):
        store.transact(POOLS, [("delete", row) for row in rows[first:first + MAX_OPERATIONS]])


def prune_pool(partition: str, now: dt.datetime, kept: dt.timedelta) -> int:
    """Remove the pool's jobs ended before the cutoff and the job-hour rows no kept job needs;
    how many jobs were removed."""
    store = get_store()
    cutoff = now - kept
    ended = store.rows(POOLS, partition, layout.JOB_PREFIX, condition="EndTime lt @cutoff",
                       parameters={"cutoff": cutoff}, select=["PartitionKey", "RowKey", "JobId", "NotificationUrl"])
    done_hours = store.key_range(POOLS, partition, layout.JOB_HOUR_PREFIX,
                                 layout.job_hour_prefix(billing.hour_of(cutoff - LONGEST_RUN)),
                                 select=["PartitionKey", "RowKey"])
    _delete_all([{"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]} for row in ended + done_hours])
    for job in ended:
        if job.get("NotificationUrl"):
            events.forget(job["JobId"])
    pool = pools.pool_row(partition)
    if pool is not None and pool["State"] == pools.DELETED and pool.get("BillingDone") \
            and pool["DeletedAt"] < cutoff:
        pools.retire_from_index(pool)
    return len(ended)


def prune_when_due(now: dt.datetime) -> dict:
    """Outputs and ended jobs past their retention, when a pass is due."""
    settings = get_settings()
    figures = {}
    if _outputs_due.due(dt.timedelta(minutes=settings.output_retention_minutes)):
        figures["outputs_removed"] = expire_outputs(now)
    kept = dt.timedelta(days=settings.job_retention_days)
    if _jobs_due.due(kept):
        figures["jobs_removed"] = sum(prune_pool(row["RowKey"], now, kept) for row in pools.active_index(True))
    return figures
