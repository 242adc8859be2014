"""The safety net: repairs what a lost message or a dead instance left behind.

Each sweep (a timer, by default every 20 seconds):
* ticks every active pool, so waiting jobs never stay behind an idle VM because a tick
  message was lost;
* copies ended runs whose job row was never updated, and removes their run rows (once they
  are RUN_STALE_SECONDS old: a start racing a cancel finds the cancelled run row meanwhile);
* cancels waiting jobs past their MaxQueuedSeconds (dispatch also does, before pairing);
* re-sends the run message of a running job whose runner's heartbeat went stale (its
  instance died), so another instance takes the job over (a new attempt, if MaxRetries
  allows one);
* keeps the classic environment at CLASSIC_MAX_CONCURRENT_JOBS slots;
* now and then (a quarter of the retention, at most hourly), removes the outputs the app
  kept for jobs once they are OUTPUT_RETENTION_MINUTES old.
Its cost grows with the number of active pools and of jobs in flight, not with history.
"""
from __future__ import annotations

import datetime as dt
import logging
import time

from shared import attempts, clock, dispatch, jobs, layout, runs
from shared.settings import get_settings
from shared.storage import POOLS, WriteConflict, get_queues, get_store, remove_older_than

log = logging.getLogger(__name__)


class _OutputRetention:
    """When this process next looks for kept outputs past their retention."""

    def __init__(self):
        self.next_at = 0.0

    def due(self, retention: dt.timedelta) -> bool:
        if time.monotonic() < self.next_at:
            return False
        self.next_at = time.monotonic() + min(max(retention.total_seconds() / 4, 10), 3600)
        return True


_retention = _OutputRetention()


def expire_outputs() -> int:
    """Remove kept job outputs older than the retention, when a look is due."""
    settings = get_settings()
    retention = dt.timedelta(minutes=settings.output_retention_minutes)
    if not _retention.due(retention):
        return 0
    removed = remove_older_than(settings.host_account(), settings.output_container, clock.utcnow() - retention)
    if removed:
        log.info("kept outputs removed count=%s retention_minutes=%s", removed, settings.output_retention_minutes)
    return removed


def sweep() -> dict:
    store = get_store()
    figures = {"pools": 0, "started": 0, "expired": 0, "finalized": 0, "resent": 0,
               "outputs_removed": expire_outputs()}
    jobs.ensure_classic_pool(recheck=True)
    for pool in store.scan(POOLS, layout.POOL_PREFIX, "State eq @state", {"state": "Active"}):
        figures["pools"] += 1
        figures["started"] += len(dispatch.tick(pool["PartitionKey"], pool["PoolId"]))
    now = clock.utcnow()
    stale_before = now - dt.timedelta(seconds=get_settings().run_stale_seconds)
    for run in store.scan(POOLS, layout.RUN_PREFIX):
        if runs.expire_waiting(run, now):
            figures["expired"] += 1
        elif run["State"] in runs.TERMINAL and run["EndTime"] < stale_before:
            runs.finalize(run)
            figures["finalized"] += 1
        elif run["State"] == runs.RUNNING and (run.get("HeartbeatAt") or run["StartTime"]) < stale_before:
            runs.record_outcome(run, attempts.WORKER_LOST, f"no heartbeat for {get_settings().run_stale_seconds} s "
                                                           "(its instance or worker stopped)", now)
            run["HeartbeatAt"] = clock.utcnow()
            run["RunnerId"] = ""
            try:
                store.replace(POOLS, run)
            except WriteConflict:
                continue
            get_queues().send(dispatch.RUN_QUEUE, {"Partition": run["PartitionKey"], "JobId": run["JobId"]})
            figures["resent"] += 1
            log.warning("stale run resent job=%s pool=%s attempts=%s", run["JobId"], run["PoolId"],
                        run.get("Attempts"))
    return figures
