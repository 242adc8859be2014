"""Dispatch time per job at queue depths 10, 1,000 and 10,000 (it must stay flat).

A pool with one VM gets N waiting jobs (written straight into its partition, 50 per
transaction); then the VM is freed and `dispatch.tick` claims the head of the queue, again
and again. No host runs, so the run messages it sends simply wait in their queue.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time

from common import ROOT, percentile, start_azurite, use_storage


def run(depths: list[int], claims: int) -> dict:
    azurite = start_azurite(ROOT, None)
    try:
        use_storage(azurite.connection_string, "dispatch")
        from shared import clock, dispatch, layout, vms
        from shared.storage import POOLS, get_store
        store = get_store()
        results = {}
        for depth in depths:
            partition, pool_id = f"sub-{depth}", "p"
            now = clock.utcnow()
            store.transact(POOLS, [
                ("create", {"PartitionKey": partition, "RowKey": layout.pool_key(pool_id), "PoolId": pool_id,
                            "AccountId": "a", "VmCount": 1, "State": "Active", "BillingPlanId": "x",
                            "ServiceId": "s", "CreatedAt": now, "NextVmOrdinal": 1, "BillingDone": True}),
                ("create", vms.new_vm(partition, pool_id, 0, now - dt.timedelta(seconds=5), 0))])
            jobs = [f"job{index:06d}" for index in range(depth + claims)]
            for start in range(0, len(jobs), 50):
                batch = []
                for offset, job_id in enumerate(jobs[start:start + 50]):
                    wait_key = layout.wait_key(pool_id, now + dt.timedelta(milliseconds=start + offset), job_id)
                    batch += [("create", {"PartitionKey": partition, "RowKey": layout.run_key(job_id), "JobId": job_id,
                                          "PoolId": pool_id, "State": "Waiting", "WaitKey": wait_key}),
                              ("create", {"PartitionKey": partition, "RowKey": wait_key, "JobId": job_id,
                                          "PoolId": pool_id})]
                store.transact(POOLS, batch)
            timings = []
            for _ in range(claims):
                vm = store.get(POOLS, partition, layout.vm_key(pool_id, 0))
                vm.update({"State": vms.IDLE, "JobId": ""})
                store.replace(POOLS, vm)
                began = time.perf_counter()
                started = dispatch.tick(partition, pool_id)
                timings.append((time.perf_counter() - began) * 1000)
                assert len(started) == 1
            results[str(depth)] = {"waiting": depth, "p50_ms": round(statistics.median(timings), 2),
                                   "p99_ms": round(percentile(timings, 0.99), 2)}
        return results
    finally:
        azurite.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--depths", default="10,1000,10000")
    parser.add_argument("--claims", type=int, default=50)
    args = parser.parse_args(argv)
    result = run([int(d) for d in args.depths.split(",")], args.claims)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
