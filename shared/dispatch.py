"""FIFO dispatch of waiting jobs onto idle VMs.

`tick(partition, pool)` pairs the pool's idle VMs with the oldest waiting jobs; each pair is
claimed in one etag-conditional transaction (VM Idle -> Busy, wait row removed, run row
Waiting -> Running), so a VM never takes two jobs and a job never takes two VMs, however
many instances tick the same pool at once. Finding the next jobs reads the first rows of
the pool's wait range: the cost does not depend on how many jobs wait.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time

from shared import attempts, clock, events, layout, runs, vms
from shared.storage import POOLS, WriteConflict, get_queues, get_store

log = logging.getLogger(__name__)

TICK_QUEUE = "schedule-tick"
RUN_QUEUE = "run-job"
MAX_ROUNDS = 50
CANCEL_BATCH = 200


def idle_vms(pool_vms: list[dict], now: dt.datetime) -> list[dict]:
    """The idle VMs in a stable order."""
    return sorted((vm for vm in pool_vms if vms.state_of(vm, now) == vms.IDLE), key=lambda vm: vm["RowKey"])


def pair_idle_vms(pool_vms: list[dict], heads: list[dict], now: dt.datetime) -> list[tuple[dict, dict]]:
    """Idle VMs in a stable order, matched with the waiting jobs in FIFO order."""
    return list(zip(idle_vms(pool_vms, now), heads))


def live_vms(partition: str, pool_id: str) -> list[dict]:
    """The pool's VMs that are not deleted: all that dispatch looks at. Deleted VMs keep their
    rows for billing, so a pool with a long resize history would otherwise make every claim
    read them all."""
    return get_store().rows(POOLS, partition, layout.vm_prefix(pool_id), condition="State ne @deleted",
                            parameters={"deleted": vms.DELETED})


class _PoolTicks:
    """One pool's ticks in this process: one runs at a time; calls that come meanwhile wait
    for a pass that began after they asked (so no idle VM is left unpaired), instead of
    racing it for the same rows."""

    def __init__(self):
        self.changed = threading.Condition()
        self.asked = 0
        self.covered = 0
        self.running = False
        self.last_started: dict[str, tuple[str, dt.datetime]] = {}


_pool_ticks: dict[tuple[str, str], _PoolTicks] = {}
_pool_ticks_lock = threading.Lock()
WAIT_FOR_PASS_SECONDS = 30


def tick(partition: str, pool_id: str) -> dict[str, tuple[str, dt.datetime]]:
    """Start as many waiting jobs as the pool has idle VMs; returns job id -> (VM, start time)
    of the jobs started by the pass that covered this call."""
    with _pool_ticks_lock:
        ticks = _pool_ticks.setdefault((partition, pool_id), _PoolTicks())
    with ticks.changed:
        ticks.asked += 1
        wanted = ticks.asked
        while ticks.running and ticks.covered < wanted:
            ticks.changed.wait(WAIT_FOR_PASS_SECONDS)
        if ticks.covered >= wanted:
            return dict(ticks.last_started)
        ticks.running = True
    started = {}
    try:
        while True:
            with ticks.changed:
                covering = ticks.asked
            this_pass = _pair_waiting_jobs(partition, pool_id)
            started.update(this_pass)
            with ticks.changed:
                ticks.covered = covering
                ticks.last_started = this_pass
                ticks.changed.notify_all()
                if ticks.asked == covering:
                    ticks.running = False
                    return started
    except BaseException:
        with ticks.changed:
            ticks.running = False
            ticks.changed.notify_all()
        raise


def _pair_waiting_jobs(partition: str, pool_id: str) -> dict[str, tuple[str, dt.datetime]]:
    store = get_store()
    started = {}
    for _ in range(MAX_ROUNDS):
        heads = store.rows(POOLS, partition, layout.wait_prefix(pool_id), limit=vms.MAX_VMS_PER_POOL)
        if not heads:
            return started
        now = clock.utcnow()
        heads = _in_time(partition, heads, now)
        pool_vms = live_vms(partition, pool_id)
        pairs = pair_idle_vms(pool_vms, heads, now)
        if not pairs:
            if not any(vms.is_live(vm) for vm in pool_vms):
                _cancel_if_pool_gone(partition, pool_id)
            return started
        lost_race = False
        for vm, head in pairs:
            if _claim(partition, vm, head, now):
                started[head["JobId"]] = (vm["VmId"], now)
            else:
                lost_race = True
                break
        if not lost_race:
            return started
        # Another instance is claiming this pool's jobs: let it finish its round first.
        time.sleep(random.uniform(0.002, 0.01))
    return started


def _in_time(partition: str, heads: list[dict], now: dt.datetime) -> list[dict]:
    """The waiting jobs still within their MaxQueuedSeconds; the others are cancelled here, so
    a job past its cap never starts, even between two sweeps."""
    kept = []
    for head in heads:
        if attempts.waited_too_long(head.get("Deadline"), now):
            run = runs.get_run(partition, head["JobId"])
            if run is not None and runs.expire_waiting(run, now):
                log.info("job waited too long job=%s pool=%s", head["JobId"], head.get("PoolId"))
            continue
        kept.append(head)
    return kept


def start_at_once(run: dict, pool_vms: list[dict]) -> tuple[str, dt.datetime] | None:
    """Create a new run directly on an idle VM, for a job that found nobody waiting: one
    transaction (run row created Running, VM Idle -> Busy on its etag). Returns (VM, start
    time), or None if no VM was idle or the VM or run changed meanwhile (then the job queues)."""
    now = clock.utcnow()
    idle = idle_vms(pool_vms, now)
    if not idle:
        return None
    vm = random.choice(idle)  # concurrent starts then rarely race for the same VM
    vm.update({"State": vms.BUSY, "JobId": run["JobId"], "BusySince": now})
    running = {**run, "State": runs.RUNNING, "WaitKey": "", "VmKey": vm["RowKey"], "VmId": vm["VmId"],
               "StartTime": now, "HeartbeatAt": now}
    try:
        get_store().transact(POOLS, [("create", running), ("replace", vm)])
    except WriteConflict:
        return None
    _announce_start(run["PartitionKey"], run["JobId"], run["PoolId"], vm["VmId"], bool(run.get("NotificationUrl")))
    return vm["VmId"], now


def _announce_start(partition: str, job_id: str, pool_id: str, vm_id: str, notify: bool) -> None:
    get_queues().send(RUN_QUEUE, {"Partition": partition, "JobId": job_id})
    log.info("job started job=%s pool=%s vm=%s", job_id, pool_id, vm_id)
    if notify:
            events.emit(job_id, events.STARTED, {"StatusCode": runs.RUNNING, "VmId": vm_id, "AzureBatchPoolId":
                                             None if partition == layout.CLASSIC_PARTITION else pool_id},
                    once=events.STARTED, unless=(events.ENDED,))


def _cancel_if_pool_gone(partition: str, pool_id: str) -> None:
    pool = get_store().get(POOLS, partition, layout.pool_key(pool_id))
    if pool is None or pool["State"] != "Active":
        cancel_waiting(partition, pool_id, f"pool {pool_id} was deleted before the job could start")


def _claim(partition: str, vm: dict, head: dict, now: dt.datetime) -> bool:
    """VM Idle -> Busy, wait row removed, run row Running: all or nothing. The wait row's
    etag-conditional delete is what a concurrent cancel or claim of the same job loses on."""
    store = get_store()
    vm.update({"State": vms.BUSY, "JobId": head["JobId"], "BusySince": now})
    run_changes = {"PartitionKey": partition, "RowKey": layout.run_key(head["JobId"]), "State": runs.RUNNING,
                   "VmKey": vm["RowKey"], "VmId": vm["VmId"], "StartTime": now, "HeartbeatAt": now, "RunnerId": ""}
    try:
        store.transact(POOLS, [("replace", vm), ("delete", head), ("merge", run_changes)])
    except WriteConflict:
        return False
    _announce_start(partition, head["JobId"], head.get("PoolId"), vm["VmId"], bool(head.get("Notify")))
    return True


def pool_of_message(body: bytes) -> tuple[str, str]:
    message = json.loads(body)
    return message["Partition"], message["PoolId"]


def job_of_message(body: bytes) -> tuple[str, str]:
    message = json.loads(body)
    return message["Partition"], message["JobId"]


def tick_later(partition: str, pool_id: str, delay_seconds: int = 0) -> None:
    """Ask a ScheduleTick to look at the pool (after the delay, e.g. when new VMs are ready)."""
    get_queues().send(TICK_QUEUE, {"Partition": partition, "PoolId": pool_id},
                     delay_seconds=delay_seconds + 1 if delay_seconds else 0)


def waiting_count(partition: str, pool_id: str) -> int:
    return get_store().count(POOLS, partition, layout.wait_prefix(pool_id))


def waiting_jobs(partition: str, pool_id: str) -> list[str]:
    """The ids of the pool's waiting jobs, first in line first (read from the keys alone)."""
    return [row["RowKey"].rsplit("|", 1)[1]
            for row in get_store().rows(POOLS, partition, layout.wait_prefix(pool_id), select=["RowKey"])]


def cancel_waiting(partition: str, pool_id: str, reason: str) -> int:
    """End the pool's waiting jobs Cancelled (up to a batch; more are left to the next tick)."""
    store = get_store()
    cancelled = 0
    for head in store.rows(POOLS, partition, layout.wait_prefix(pool_id), limit=CANCEL_BATCH):
        run = runs.get_run(partition, head["JobId"])
        if run is None or run["State"] != runs.WAITING:
            continue
        try:
            runs.end_run(run, runs.CANCELLED, reason)
        except WriteConflict:
            continue
        runs.finalize(run)
        cancelled += 1
    if cancelled == CANCEL_BATCH:
        tick_later(partition, pool_id)
    return cancelled
