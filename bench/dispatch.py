"""Dispatch time per job at queue depths 10, 1,000 and 10,000 (it must stay flat: 10,000
within 1.1x of 10), and with a long VM history (a pool resized many times keeps its deleted
VMs' rows for billing).

Each pool (`<subscription>|p`) has one VM and N waiting jobs, written straight into its
partition as the app writes them: a `pool` row, `vm|<ordinal>` rows (`shared.vms.new_vm`),
and per job its `job|<id>` row and its `q|<startedMs>|<id>` wait row, made by
`lifecycle.new_job` then `lifecycle.enqueue` (50 jobs per entity-group transaction). The
history pool also has H deleted VM rows before its live VM.

Then, again and again: the VM is freed, `dispatch.tick` claims the head of the queue onto
it (a read of the queue's head beside one of the live VMs, the claim's transaction, the run
message), and one more job joins the tail of the queue, so that exactly N wait at every
timed claim. Only the tick is timed. The pools take their claims in turn, round after round, so
that a slower stretch of the shared machine falls on every depth alike. No host runs, so the
run messages the claims send simply wait in their queue.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from common import ROOT, percentile, start_azurite, use_storage

POOL_ID = "p"
JOBS_PER_TRANSACTION = 50  # two rows each: the job row and its wait row


def _job_fields(subscription: str) -> dict:
    """What `jobs.submit_job` keeps on a pool job's row (a small request, the sample scorer)."""
    request = {"Input": {"ConnectionString": None, "BaseLocation": "http://127.0.0.1/bench",
                         "RelativeLocation": "inputs/tiny.csv", "SasBlobToken": "sv=x&sig=y"},
               "Outputs": {"output1": {"ConnectionString": None, "BaseLocation": "http://127.0.0.1/bench",
                                       "RelativeLocation": "outputs/out.csv", "SasBlobToken": "sv=x&sig=y"}},
               "GlobalParameters": {}, "AzureBatchPoolId": POOL_ID}
    return {"SubscriptionId": subscription, "ServiceId": "svc", "PoolId": POOL_ID, "Request": json.dumps(request),
            "Details": "", "Results": "{}", "Scorer": "samples.census:score", "TimeoutSeconds": 3600,
            "MaxQueuedSeconds": 0, "MaxRetries": 2, "NotificationUrl": "", "BillingPlanId": "plan-a"}


def waiting_job_rows(partition: str, subscription: str, queued_at: dt.datetime) -> list[tuple]:
    """One waiting job as the app writes it: `new_job` makes the NotStarted row, `enqueue`
    moves that same row to Waiting (its WaitKey) and makes the wait row. Written fresh, both
    are creates."""
    from shared import layout, lifecycle
    job_id = layout.new_job_id(queued_at, POOL_ID)
    job = lifecycle.new_job(partition, job_id, _job_fields(subscription), queued_at).changes
    queued = lifecycle.enqueue(job, queued_at)
    wait_rows = [entity for kind, entity in queued.operations if kind == "create"]
    assert job["Status"] == lifecycle.WAITING and job["WaitKey"] == wait_rows[0]["RowKey"]
    return [("create", job), *(("create", row) for row in wait_rows)]


def _prepare_pool(store, subscription: str, waiting: int, deleted_vms: int, start: dt.datetime) -> str:
    """The pool's partition: its pool row, `deleted_vms` deleted VMs, one live VM (busy, so that
    nothing starts before the measurement frees it) and `waiting` jobs in the queue."""
    from shared import layout, vms
    from shared.storage import POOLS
    partition = layout.pool_partition(subscription, POOL_ID)
    now = start
    live = vms.new_vm(partition, POOL_ID, deleted_vms, now - dt.timedelta(seconds=5), 0)
    live.update({"State": vms.BUSY, "JobId": "before-the-bench", "BusySince": now})
    store.transact(POOLS, [
        ("create", {"PartitionKey": partition, "RowKey": layout.POOL_ROW, "PoolId": POOL_ID,
                    "SubscriptionId": subscription, "AccountId": "a", "VmCount": 1, "State": "Active",
                    "BillingPlanId": "plan-a", "ServiceId": "svc", "CreatedAt": now - dt.timedelta(days=1),
                    "AutoScaleDownAfterMinutes": 0, "NextVmOrdinal": deleted_vms + 1,
                    "BilledThrough": now - dt.timedelta(days=1), "BillingDone": False}),
        ("create", live)])
    batches = []
    for first in range(0, deleted_vms, 100):
        history = []
        for ordinal in range(first, min(first + 100, deleted_vms)):
            vm = vms.new_vm(partition, POOL_ID, ordinal, now - dt.timedelta(days=1), 0)
            vm.update(vms.retirement(now - dt.timedelta(hours=1)))
            history.append(("create", vm))
        batches.append(history)
    for first in range(0, waiting, JOBS_PER_TRANSACTION):
        batch = []
        for index in range(first, min(first + JOBS_PER_TRANSACTION, waiting)):
            # One millisecond apart, oldest first, all before the jobs the measurement adds.
            batch += waiting_job_rows(partition, subscription, now + dt.timedelta(milliseconds=index))
        batches.append(batch)
    with ThreadPoolExecutor(8) as workers:
        list(workers.map(lambda operations: store.transact(POOLS, operations), batches))
    return partition


class _Pool:
    def __init__(self, store, subscription: str, waiting: int, deleted_vms: int, start: dt.datetime):
        from shared import layout
        self.store = store
        self.subscription = subscription
        self.waiting = waiting
        self.deleted_vms = deleted_vms
        self.partition = _prepare_pool(store, subscription, waiting, deleted_vms, start)
        self.vm_key = layout.vm_key(deleted_vms)
        self.next_at = start + dt.timedelta(milliseconds=waiting)
        self.timings: list[float] = []

    def claim_once(self) -> None:
        """Free the VM (untimed), tick (timed): it must start the head of the queue, with
        exactly `waiting` jobs waiting; then one more job joins the tail (untimed)."""
        from shared import dispatch, layout, lifecycle, vms
        from shared.storage import POOLS
        vm = self.store.get(POOLS, self.partition, self.vm_key)
        vm.update({"State": vms.IDLE, "JobId": "", "IdleSince": vm["BusySince"]})
        self.store.replace(POOLS, vm)
        began = time.perf_counter()
        started = dispatch.tick(self.partition)
        self.timings.append((time.perf_counter() - began) * 1000)
        assert len(started) == 1, started
        job = self.store.get(POOLS, self.partition, layout.job_key(next(iter(started))))
        assert job["Status"] == lifecycle.RUNNING, job["Status"]
        self.store.transact(POOLS, waiting_job_rows(self.partition, self.subscription, self.next_at))
        self.next_at += dt.timedelta(milliseconds=1)

    def figures(self) -> dict:
        return {"p50_ms": round(statistics.median(self.timings), 2),
                "p99_ms": round(percentile(self.timings, 0.99), 2), "claims": len(self.timings)}


def _reads_alone(pools: dict, samples: int) -> dict:
    """Where a tick's time goes: p50 of each of its two side-by-side reads made alone, per pool
    (the queue's head as a tick reads it, up to START_CHOICES wait rows; the same read of one
    row; the live VMs), taken in turn like the claims."""
    from shared import dispatch
    reads = {"heads_as_tick_reads_them": lambda p: dispatch.heads(p, dispatch.START_CHOICES),
             "heads_limit_1": lambda p: dispatch.heads(p, 1),
             "live_vms": lambda p: dispatch.live_vms(p)}
    timings = {(name, read): [] for name in pools for read in reads}
    for _ in range(samples):
        for name, pool in pools.items():
            for read, call in reads.items():
                began = time.perf_counter()
                found = call(pool.partition)
                timings[(name, read)].append((time.perf_counter() - began) * 1000)
                if read == "heads_as_tick_reads_them":
                    timings.setdefault((name, "wait_rows_returned"), [len(found)])
    return {name: {read: round(statistics.median(timings[(name, read)]), 2) for read in reads}
            | {"wait_rows_the_tick_reads": timings[(name, "wait_rows_returned")][0]} for name in pools}


def run(depths: list[int], claims: int, deleted_vms: int) -> dict:
    azurite = start_azurite(ROOT, None)
    try:
        use_storage(azurite.connection_string, "dispatch")
        from shared import clock, dispatch
        from shared.storage import get_store
        store = get_store()
        start = clock.utcnow() - dt.timedelta(hours=1)
        began = time.perf_counter()
        pools = {str(depth): _Pool(store, f"sub-{depth}", depth, 0, start) for depth in depths}
        if deleted_vms:
            pools["history"] = _Pool(store, "sub-history", 10, deleted_vms, start)
        setup_seconds = time.perf_counter() - began
        for pool in pools.values():  # warm: the pool's first tick, clients and run queue made
            pool.claim_once()
            pool.timings.clear()
        for _ in range(claims):
            for pool in pools.values():
                pool.claim_once()
        for pool in pools.values():
            assert dispatch.waiting_count(pool.partition) == pool.waiting
        reads = _reads_alone(pools, samples=max(10, claims // 2))
        results = {"setup_seconds": round(setup_seconds, 1), "by_waiting_jobs": {
            str(depth): {"waiting": depth, **pools[str(depth)].figures()} for depth in depths}}
        low, high = str(min(depths)), str(max(depths))
        results["ratio"] = {f"{high}_over_{low}": round(pools[high].figures()["p50_ms"]
                                                        / pools[low].figures()["p50_ms"], 2), "target": 1.1}
        results["tick_reads_alone_p50_ms"] = reads
        if deleted_vms:
            history = pools["history"]
            results["with_vm_history"] = {"waiting": history.waiting, "deleted_vms": deleted_vms,
                                          **history.figures()}
            results["ratio"][f"vm_history_over_{low}"] = round(history.figures()["p50_ms"]
                                                               / pools[low].figures()["p50_ms"], 2)
        return results
    finally:
        azurite.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", default="10,1000,10000")
    parser.add_argument("--claims", type=int, default=100, help="timed claims per pool")
    parser.add_argument("--deleted-vms", type=int, default=3000,
                        help="deleted VM rows in the history pool's partition (0: skip that pool)")
    args = parser.parse_args(argv)
    result = run([int(d) for d in args.depths.split(",")], args.claims, args.deleted_vms)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
