"""A started job's execution state (its `run|<job>` row) from waiting to its end.

The run row, not the job row, is the arbiter for a started job: it is created exactly once
(by start, or by a cancel that wins the race), changes only in etag-conditional
transactions together with the wait row and the VM row it concerns, and reaches exactly
one terminal state. `finalize` then copies that state to the job row and deletes the run
row; if an instance dies in between, the sweeper finishes the copy.
"""
from __future__ import annotations

import datetime as dt
import json
import logging

from shared import attempts, billing, clock, costs, events, layout, usage, vms
from shared.storage import JOBS, POOLS, WriteConflict, get_store

log = logging.getLogger(__name__)

WAITING, RUNNING = "Waiting", "Running"
FINISHED, FAILED, CANCELLED = "Finished", "Failed", "Cancelled"
TERMINAL = (FINISHED, FAILED, CANCELLED)


def get_run(partition: str, job_id: str) -> dict | None:
    return get_store().get(POOLS, partition, layout.run_key(job_id))


def release_changes(vm: dict, job_id: str, now) -> dict | None:
    """What the VM row becomes when its job ends: Idle again, or deleted if it was draining."""
    if vm.get("JobId") != job_id:
        return None
    if vm["State"] == vms.DRAINING:
        return vms.retirement(now)
    return {"State": vms.IDLE, "JobId": "", "IdleSince": now}


def record_outcome(run: dict, outcome: str, reason: str, now) -> None:
    """Note how the run's current attempt ended (once; it reaches the row with its next write)."""
    run["AttemptOutcomes"] = attempts.with_outcome(run.get("AttemptOutcomes"), run.get("Attempts") or 0, outcome,
                                                   reason, run.get("AttemptStartedAt") or run.get("StartTime"), now,
                                                   clock.iso)


def job_hour_rows(run: dict, end) -> list[tuple]:
    """A pool job's whole seconds per hour, written with its end: what per-job cost is
    computed from (see `shared.costs`). Classic jobs are billed by their run time instead."""
    if run["PartitionKey"] == layout.CLASSIC_PARTITION or not run.get("StartTime"):
        return []
    return [("upsert", {"PartitionKey": run["PartitionKey"], "RowKey": layout.job_hour_key(run["PoolId"], hour,
                                                                                            run["JobId"]),
                        "PoolId": run["PoolId"], "JobId": run["JobId"], "ServiceId": run.get("ServiceId") or "",
                        "VmId": run.get("VmId") or "", "Hour": hour, "Seconds": seconds,
                        "StartTime": run["StartTime"], "EndTime": end})
            # A job of less than a second still has a row (of 0 seconds), so it is listed.
            for hour, seconds in (costs.job_hours(run["StartTime"], end)
                                  or {billing.hour_of(run["StartTime"]): 0}).items()]


# What the expected start of waiting jobs goes by: the pool's jobs that ended lately.
RECENT_HOURS = 6
RECENT_JOBS = 50


def recent_run_seconds(partition: str, pool_id: str) -> list[float]:
    """Run times of the pool's most recent jobs (ended within RECENT_HOURS, at most RECENT_JOBS),
    from its job-hour rows: one range read from RECENT_HOURS ago on."""
    since = billing.hour_of(clock.utcnow() - dt.timedelta(hours=RECENT_HOURS))
    rows = get_store().rows(POOLS, partition, layout.job_hour_prefix(pool_id),
                            after=layout.job_hour_prefix(pool_id, since), select=["JobId", "StartTime", "EndTime"])
    ended = {row["JobId"]: (row["EndTime"], (row["EndTime"] - row["StartTime"]).total_seconds()) for row in rows}
    return [seconds for _, seconds in sorted(ended.values(), reverse=True)[:RECENT_JOBS]]


def end_run(run: dict, status: str, details: str, results: dict | None = None) -> bool:
    """Move a waiting or running job to a terminal state, freeing its wait row or VM in the
    same transaction. Raises WriteConflict if the run changed since it was read; returns
    whether a VM was freed (its pool should be ticked)."""
    store = get_store()
    now = clock.utcnow()
    previous = run["State"]
    operations = []
    freed = False
    if previous == WAITING:
        operations.append(("delete", {"PartitionKey": run["PartitionKey"], "RowKey": run["WaitKey"]}))
    elif previous == RUNNING:
        vm = store.get(POOLS, run["PartitionKey"], run["VmKey"])
        changes = release_changes(vm, run["JobId"], now) if vm else None
        if changes:
            vm.update(changes)
            operations.append(("replace", vm))
            freed = True
    else:
        raise WriteConflict("run already ended")
    if previous == RUNNING:
        record_outcome(run, status, details, now)
        operations += job_hour_rows(run, now)
    run.update({"State": status, "EndTime": now, "Details": details, "Results": json.dumps(results or {})})
    store.transact(POOLS, [("replace", run), *operations])
    log.info("job ended job=%s pool=%s state=%s previous=%s", run["JobId"], run["PoolId"], status, previous)
    return freed


def expire_waiting(run: dict, now) -> bool:
    """End a waiting job Cancelled once it has waited past its MaxQueuedSeconds, freeing its
    place; False if it is not due, or its run changed meanwhile (started, cancelled)."""
    if run["State"] != WAITING or not attempts.waited_too_long(run.get("QueueDeadline"), now):
        return False
    try:
        end_run(run, CANCELLED, attempts.too_long_details(run["MaxQueuedSeconds"]))
    except WriteConflict:
        return False
    finalize(run)
    return True


def finalize(run: dict) -> None:
    """Copy a terminal run to its job row (and a classic job's run time to the ledger), then
    drop the run row."""
    if run["PartitionKey"] == layout.CLASSIC_PARTITION:
        usage.record_classic_run(run, run.get("BillingPlanId") or "")
    copy_to_job(run)
    try:
        get_store().delete(POOLS, run)
    except WriteConflict:
        pass  # someone finalized it already


def copy_to_job(run: dict) -> None:
    """Write a terminal run's outcome to its job row (and tell the job's receiver, once)."""
    if run.get("NotificationUrl"):
        events.emit(run["JobId"], run["State"], {"StatusCode": run["State"], "Details": run.get("Details") or None,
                                                 "Attempts": run.get("Attempts") or 0}, once=events.ENDED)
    get_store().merge(JOBS, {"PartitionKey": run["JobPartition"], "RowKey": run["JobId"], "Status": run["State"],
                             "Details": run.get("Details") or "", "Results": run.get("Results") or "{}",
                             "StartTime": run.get("StartTime"), "EndTime": run.get("EndTime"),
                             "Attempts": run.get("Attempts") or 0, "AttemptOutcomes": run.get("AttemptOutcomes"),
                             "RowsScored": run.get("RowsScored") or 0,
                             "InputBytes": run.get("InputBytes") or 0})
