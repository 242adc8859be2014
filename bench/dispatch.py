"""Dispatch time per job at queue depths 10, 1,000 and 10,000 (it must stay flat), and with a
long VM history (a pool resized many times keeps its deleted VMs' rows for billing).

A pool with one VM gets N waiting jobs (written straight into its partition, 50 per
transaction), and optionally H deleted VM rows before its live VM; then the VM is freed and
`dispatch.tick` claims the head of the queue, again and again. No host runs, so the run
messages it sends simply wait in their queue.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time

from common import ROOT, percentile, start_azurite, use_storage


def _prepare_pool(store, partition: str, pool_id: str, waiting: int, deleted_vms: int) -> None:
    from shared import clock, layout, vms
    from shared.storage import POOLS
    now = clock.utcnow()
    live_ordinal = deleted_vms
    store.transact(POOLS, [
        ("create", {"PartitionKey": partition, "RowKey": layout.pool_key(pool_id), "PoolId": pool_id,
                    "AccountId": "a", "VmCount": 1, "State": "Active", "BillingPlanId": "x",
                    "ServiceId": "s", "CreatedAt": now, "NextVmOrdinal": live_ordinal + 1, "BillingDone": True}),
        ("create", vms.new_vm(partition, pool_id, live_ordinal, now - dt.timedelta(seconds=5), 0))])
    for start in range(0, deleted_vms, 100):
        history = []
        for ordinal in range(start, min(start + 100, deleted_vms)):
            vm = vms.new_vm(partition, pool_id, ordinal, now - dt.timedelta(days=1), 0)
            vm.update(vms.retirement(now - dt.timedelta(hours=1)))
            history.append(("create", vm))
        store.transact(POOLS, history)
    jobs = [f"job{index:06d}" for index in range(waiting)]
    for start in range(0, len(jobs), 50):
        batch = []
        for offset, job_id in enumerate(jobs[start:start + 50]):
            wait_key = layout.wait_key(pool_id, now + dt.timedelta(milliseconds=start + offset), job_id)
            batch += [("create", {"PartitionKey": partition, "RowKey": layout.run_key(job_id), "JobId": job_id,
                                  "PoolId": pool_id, "State": "Waiting", "WaitKey": wait_key}),
                      ("create", {"PartitionKey": partition, "RowKey": wait_key, "JobId": job_id,
                                  "PoolId": pool_id})]
        store.transact(POOLS, batch)


def _claims(store, partition: str, pool_id: str, vm_key: str, claims: int) -> dict:
    """Free the VM and tick, `claims` times: each tick must start the next waiting job."""
    from shared import dispatch, vms
    from shared.storage import POOLS
    timings = []
    for _ in range(claims):
        vm = store.get(POOLS, partition, vm_key)
        vm.update({"State": vms.IDLE, "JobId": ""})
        store.replace(POOLS, vm)
        began = time.perf_counter()
        started = dispatch.tick(partition, pool_id)
        timings.append((time.perf_counter() - began) * 1000)
        assert len(started) == 1
    return {"p50_ms": round(statistics.median(timings), 2), "p99_ms": round(percentile(timings, 0.99), 2)}


def run(depths: list[int], claims: int, deleted_vms: int) -> dict:
    azurite = start_azurite(ROOT, None)
    try:
        use_storage(azurite.connection_string, "dispatch")
        from shared import layout
        from shared.storage import get_store
        store = get_store()
        results = {"by_waiting_jobs": {}}
        for depth in depths:
            partition = f"sub-{depth}"
            _prepare_pool(store, partition, "p", depth + claims, 0)
            results["by_waiting_jobs"][str(depth)] = {
                "waiting": depth, **_claims(store, partition, "p", layout.vm_key("p", 0), claims)}
        if deleted_vms:
            partition = "sub-history"
            _prepare_pool(store, partition, "p", 10 + claims, deleted_vms)
            results["with_vm_history"] = {"waiting": 10, "deleted_vms": deleted_vms,
                                          **_claims(store, partition, "p", layout.vm_key("p", deleted_vms), claims)}
        return results
    finally:
        azurite.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", default="10,1000,10000")
    parser.add_argument("--claims", type=int, default=50)
    parser.add_argument("--deleted-vms", type=int, default=3000,
                        help="deleted VM rows in the history pool's partition (0: skip that pool)")
    args = parser.parse_args(argv)
    result = run([int(d) for d in args.depths.split(",")], args.claims, args.deleted_vms)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
