"""The safety net: repairs what a lost message or a dead instance left behind.

Each sweep (the Sweeper timer, every 10 seconds) visits the pools in the `~active` index,
never the whole table, so its cost grows with the pools still active and the jobs in flight,
not with history. For each pool it:
* finishes a pool's create or delete that stopped half way (`pools.reconcile`);
* ticks the pool, so waiting jobs never stay behind an idle VM because a tick message was
  lost (and a deleted pool's waiting jobs end Cancelled);
* cancels waiting jobs past their MaxQueuedSeconds (dispatch also does, before pairing);
* looks at the jobs of its busy VMs that have run longer than RUN_STALE_SECONDS, and
  re-sends the run message of one whose runner's heartbeat went stale (its instance died),
  so another instance takes it over (a new attempt, if MaxRetries allows one). Heartbeats
  are judged only once storage has answered the sweeps for RUN_STALE_SECONDS: while storage
  was out no runner could write one, and the runners it stopped take their runs back first.
It also keeps the classic environment at CLASSIC_MAX_CONCURRENT_JOBS slots, and now and then
removes kept outputs and ended jobs past their retention (`shared.retention`).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import AzureError

from shared import clock, dispatch, layout, lifecycle, moves, pools, retention, vms
from shared.settings import get_settings
from shared.storage import POOLS, WriteConflict, concurrently, get_store

log = logging.getLogger(__name__)

SWEEP_THREADS = 8

# Since when (monotonic clock) this process's sweeps have found storage answering; None
# before the first that did, or since one that did not.
_answering_since: float | None = None


def judges_heartbeats(answering_since: float | None, now: float, stale_seconds: int) -> bool:
    """Whether a sweep may call a heartbeat stale: only once storage has answered for as long
    as a heartbeat may be late, so that runners had their chance to write one."""
    return answering_since is not None and now - answering_since >= stale_seconds


def _expire_waiting(partition: str, now: dt.datetime) -> int:
    """Cancel the pool's waiting jobs past their MaxQueuedSeconds, wherever they are in the queue."""
    expired = 0
    for wait in get_store().rows(POOLS, partition, layout.WAIT_PREFIX, condition="Deadline le @now",
                                 parameters={"now": now}):
        try:
            moves.write(lifecycle.expire(wait, now))
            expired += 1
        except (WriteConflict, lifecycle.IllegalMove):
            continue
    return expired


def _resend_stale(partition: str, vm_rows: list[dict], now: dt.datetime, stale_seconds: int) -> int:
    """Re-send the run message of each job whose runner's heartbeat went stale, found through
    the VMs that have been busy longer than a heartbeat may be late."""
    limit = now - dt.timedelta(seconds=stale_seconds)
    suspects = [vm["JobId"] for vm in vm_rows if vm["State"] in (vms.BUSY, vms.DRAINING) and vm.get("JobId")
                and (vm.get("BusySince") or now) < limit]
    found = concurrently(*[lambda j=job_id: moves.read_job(partition, j) for job_id in suspects]) if suspects else []
    resent = 0
    for job in found:
        changes = lifecycle.stale(job, now, stale_seconds) if job else None
        if changes is None:
            continue
        try:
            get_store().update(POOLS, job, changes)
        except WriteConflict:
            continue
        moves.send_run({"PartitionKey": partition, "JobId": job["JobId"]})
        resent += 1
        log.warning("stale run resent job=%s partition=%s attempts=%s", job["JobId"], partition, job.get("Attempts"))
    return resent


def sweep_pool(index: dict, now: dt.datetime, judge: bool) -> dict:
    partition = index["RowKey"]
    vm_rows, pool = concurrently(lambda: pools.pool_vms(partition), lambda: pools.pool_row(partition))
    repaired = pools.reconcile(index, pool, now)
    if pool is None:
        return {"repaired": 1 if repaired else 0}
    resent = _resend_stale(partition, vm_rows, now, get_settings().run_stale_seconds) if judge else 0
    return {"started": len(dispatch.tick(partition)), "expired": _expire_waiting(partition, now), "resent": resent}


def sweep() -> dict:
    global _answering_since
    began = time.monotonic()
    judge = judges_heartbeats(_answering_since, began, get_settings().run_stale_seconds)
    figures = {"pools": 0, "started": 0, "expired": 0, "resent": 0, "repaired": 0}
    try:
        pools.ensure_classic_pool(recheck=True)
        index = pools.active_index()
        now = clock.utcnow()
        with ThreadPoolExecutor(SWEEP_THREADS) as workers:
            for found in workers.map(lambda row: sweep_pool(row, now, judge), index):
                figures["pools"] += 1
                for name, count in found.items():
                    figures[name] += count
        figures.update(retention.prune_when_due(now))
    except AzureError:
        _answering_since = None
        raise
    if _answering_since is None:
        _answering_since = began
    return figures
