"""FIFO dispatch of a pool's waiting jobs onto its idle VMs.

`tick(partition)` pairs the pool's idle VMs with the oldest wait rows; each pair is claimed
in one etag-conditional transaction (`lifecycle.claim_vm`), so a VM never takes two jobs and
a job never takes two VMs, however many instances tick the same pool at once. It reads the
first rows of the pool's wait range and its live VMs, side by side: the cost does not depend
on how many jobs wait. A job that ends hands its VM to the head of the queue itself
(`shared.runner`); ticks catch up on VMs that became free otherwise (provisioned, resized,
a lost message).
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time

from azure.core.exceptions import AzureError

from shared import attempts, clock, layout, lifecycle, logfields, moves, vms
from shared.storage import POOLS, WriteConflict, concurrently, get_store
from shared.storage.calls import describe_storage_error, is_transient
from shared.storage.tables import Row

log = logging.getLogger(__name__)

MAX_ROUNDS = 50
CANCEL_BATCH = 200
_LIVE = "State ne @deleted"


def idle_vms(pool_vms: list[dict], now: dt.datetime) -> list[dict]:
    """The idle VMs in a stable order."""
    return sorted((vm for vm in pool_vms if vms.state_of(vm, now) == vms.IDLE), key=lambda vm: vm["RowKey"])


def pair_idle_vms(pool_vms: list[dict], heads: list[dict], now: dt.datetime) -> list[tuple[dict, dict]]:
    """Idle VMs in a stable order, matched with the waiting jobs in FIFO order."""
    return list(zip(idle_vms(pool_vms, now), heads, strict=False))  # the shorter decides


def live_vms(partition: str) -> list[dict]:
    """The pool's VMs that are not deleted: all that dispatch looks at."""
    return get_store().rows(POOLS, partition, layout.VM_PREFIX, condition=_LIVE, parameters={"deleted": vms.DELETED})


def heads(partition: str, limit: int = vms.MAX_VMS_PER_POOL) -> list[dict]:
    """The first wait rows of the pool's queue, first in line first."""
    return get_store().rows(POOLS, partition, layout.WAIT_PREFIX, limit=limit)


# How many idle VMs a start reads to choose from (concurrent starts then rarely race for one).
START_CHOICES = 8


def head_or_free_vms(partition: str) -> tuple[bool, list[dict]]:
    """One range read: whether anyone waits (the queue's head comes first) and, if nobody
    does, some of the VMs that are idle (by the clock: provisioned ones count)."""
    low, high = layout.QUEUE_AND_VMS
    found = get_store().key_range(
        POOLS, partition, low, high, limit=START_CHOICES,
        condition="( State eq @waiting or State eq @idle or ( State eq @provisioning and ProvisionedAt le @now ) )",
        parameters={"waiting": lifecycle.WAITING, "idle": vms.IDLE, "provisioning": vms.PROVISIONING,
                    "now": clock.utcnow()})
    if found and found[0]["RowKey"].startswith(layout.WAIT_PREFIX):
        return True, []
    return False, found


class _PoolTicks:
    """One pool's ticks in this process: one runs at a time; calls that come meanwhile wait
    for a pass that began after they asked (so no idle VM is left unpaired), instead of
    racing it for the same rows."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.asked = 0
        self.covered = 0
        self.running = False
        self.last_started: dict[str, tuple[str, dt.datetime]] = {}


_pool_ticks: dict[str, _PoolTicks] = {}
_pool_ticks_lock = threading.Lock()
WAIT_FOR_PASS_SECONDS = 30


# A tick that storage stopped looks again after this (the Sweeper would, too, within 10 s).
TICK_AFTER_OUTAGE_SECONDS = 2


def tick_for_message(body: bytes) -> None:
    """A ScheduleTick invocation. When storage stops the tick, the invocation does not fail
    (which would count towards the poison queue): a new message asks again shortly."""
    partition = moves.pool_of_message(body)
    try:
        with logfields.about(partition=partition):
            tick(partition)
    except AzureError as error:
        if not is_transient(error):
            raise
        moves.tick_later(partition, TICK_AFTER_OUTAGE_SECONDS)
        log.warning("tick sent on after a storage outage partition=%s %s", partition, describe_storage_error(error))


def tick(partition: str) -> dict[str, tuple[str, dt.datetime]]:
    """Start as many waiting jobs as the pool has idle VMs; returns job id -> (VM, start time)
    of the jobs started by the pass that covered this call."""
    with _pool_ticks_lock:
        ticks = _pool_ticks.setdefault(partition, _PoolTicks())
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
            this_pass = _pair_waiting_jobs(partition)
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


def _pair_waiting_jobs(partition: str) -> dict[str, tuple[str, dt.datetime]]:
    started: dict[str, tuple[str, dt.datetime]] = {}
    for _ in range(MAX_ROUNDS):
        first, pool_vms = concurrently(lambda: heads(partition, START_CHOICES), lambda: live_vms(partition))
        if not first:
            return started
        now = clock.utcnow()
        waiting = in_time(first, now)
        pairs = pair_idle_vms(pool_vms, waiting, now)
        if not pairs:
            if len(waiting) < len(first):
                continue  # heads past their MaxQueuedSeconds made room for the next ones
            if not any(vms.is_live(vm) for vm in pool_vms):
                _cancel_if_pool_gone(partition)
            return started
        lost_race = False
        for vm, head in pairs:
            if claim(vm, head, now):
                started[head["JobId"]] = (vm["VmId"], now)
            else:
                lost_race = True
                break
        if lost_race:
            # Another instance is claiming this pool's jobs: let it finish its round first.
            time.sleep(random.uniform(0.002, 0.01))
        elif len(pairs) < len(waiting) or len(first) < START_CHOICES:
            return started  # every idle VM, or every waiting job, has been paired
    return started


def in_time(waiting: list[dict], now: dt.datetime) -> list[dict]:
    """The waiting jobs still within their MaxQueuedSeconds; the others are cancelled here, so
    a job past its cap never starts, even between two sweeps."""
    kept = []
    for wait in waiting:
        if attempts.waited_too_long(wait.get("Deadline"), now):
            try:
                moves.write(lifecycle.expire(wait, now))
                log.info("job waited too long job=%s partition=%s", wait["JobId"], wait["PartitionKey"])
            except WriteConflict:
                pass
            continue
        kept.append(wait)
    return kept


def claim(vm: dict, wait: dict, now: dt.datetime) -> bool:
    """The head of the queue onto an idle VM, all or nothing; then its run message."""
    try:
        moves.write(lifecycle.claim_vm(wait, vm, now))
    except WriteConflict:
        return False
    moves.send_run({"PartitionKey": wait["PartitionKey"], "JobId": wait["JobId"]})
    log.info("job started job=%s partition=%s vm=%s", wait["JobId"], wait["PartitionKey"], vm["VmId"])
    return True


def start_at_once(job: Row, free: list[dict]) -> tuple[str, dt.datetime] | None:
    """Start a job that found nobody waiting on one of the VMs that looked idle: one
    transaction on both etags. Returns (VM, start time), or None if no VM was idle or the job
    or VM changed meanwhile (then the job queues)."""
    now = clock.utcnow()
    idle = idle_vms(free, now)
    if not idle:
        return None
    vm = random.choice(idle)
    try:
        moves.write(lifecycle.start_now(job, vm, now))
    except WriteConflict:
        return None
    moves.send_run(job, vm)
    log.info("job started job=%s partition=%s vm=%s", job["JobId"], job["PartitionKey"], vm["VmId"])
    return vm["VmId"], now


def _cancel_if_pool_gone(partition: str) -> None:
    pool = get_store().get(POOLS, partition, layout.POOL_ROW)
    if pool is None or pool["State"] != "Active":
        cancel_waiting(partition, f"pool {pool['PoolId'] if pool else ''} was deleted before the job could start")


def waiting_count(partition: str) -> int:
    return get_store().count(POOLS, partition, layout.WAIT_PREFIX)


def waiting_jobs(partition: str) -> list[str]:
    """The ids of the pool's waiting jobs, first in line first (read from the keys alone)."""
    return [layout.job_of_wait_key(row["RowKey"])
            for row in get_store().rows(POOLS, partition, layout.WAIT_PREFIX, select=["RowKey"])]


def cancel_waiting(partition: str, reason: str) -> int:
    """End the pool's waiting jobs Cancelled (up to a batch; more are left to the next tick)."""
    cancelled = 0
    now = clock.utcnow()
    for wait in heads(partition, CANCEL_BATCH):
        try:
            moves.write(lifecycle.end_waiting(wait, reason, now))
        except WriteConflict:
            continue
        cancelled += 1
    if cancelled == CANCEL_BATCH:
        moves.tick_later(partition)
    return cancelled
