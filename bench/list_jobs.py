"""A service's job list, as built, against the alternative the layout was chosen over.

As built: the job rows live in their pools' partitions; a listing reads the keys of each of
the subscription's pool partitions and the classic one side by side (filtered by service),
merges them, then reads the page's rows, one range per partition they fall in. The
alternative: an index row per job in a partition per service (one more write on every
submit, the hot path), read as one range, then the rows by partition side by side.
Each subscription here has P pools of 100 ended jobs, half of them the listed service's;
the figure is the p50 time of a page of 50, in this process, against Azurite.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time

from common import ROOT, start_azurite, use_storage

JOBS_PER_POOL = 100
SAMPLES = 30


def _fill(store, subscription: str, pools: int, now: dt.datetime) -> None:
    from shared import layout, lifecycle
    from shared.storage import POOLS
    store.transact(POOLS, [("create", {"PartitionKey": subscription, "RowKey": layout.registry_key(f"p{i}"),
                                       "PoolId": f"p{i}", "State": "Active", "AccountId": "a"}) for i in range(pools)])
    index = []
    for i in range(pools):
        partition = layout.pool_partition(subscription, f"p{i}")
        rows = []
        for n in range(JOBS_PER_POOL):
            job_id = layout.new_job_id(now - dt.timedelta(seconds=n * pools + i), f"p{i}")
            service = "svc" if n % 2 else "other"
            row = lifecycle.new_job(partition, job_id, {"SubscriptionId": subscription, "ServiceId": service,
                                                        "PoolId": f"p{i}", "Request": "x" * 1500, "Results": "{}",
                                                        "Details": ""}, now).changes
            rows.append(("create", {**row, "Status": "Finished"}))
            if service == "svc":
                index.append(("create", {"PartitionKey": f"{subscription}|svc", "RowKey": job_id, "P": partition}))
        for first in range(0, len(rows), 100):
            store.transact(POOLS, rows[first:first + 100])
    for first in range(0, len(index), 100):
        store.transact(POOLS, index[first:first + 100])


def _by_index(store, subscription: str) -> list[dict]:
    from shared import layout
    from shared.storage import POOLS, concurrently
    keys = store.rows(POOLS, f"{subscription}|svc", "", limit=51)[:50]
    spans: dict[str, tuple[str, str]] = {}
    for row in keys:
        low, high = spans.get(row["P"], (row["RowKey"], row["RowKey"]))
        spans[row["P"]] = (min(low, row["RowKey"]), max(high, row["RowKey"]))
    found = concurrently(*[lambda p=p, s=s: store.key_range(POOLS, p, layout.job_key(s[0]), layout.job_key(s[1]) + "~",
                                                          condition="ServiceId eq @s", parameters={"s": "svc"})
                           for p, s in spans.items()])
    return [row for rows in found for row in rows]


def run(pool_counts: list[int]) -> dict:
    azurite = start_azurite(ROOT, None, log_file=ROOT / "bench" / "results" / "azurite-list-jobs.log")
    try:
        use_storage(azurite.connection_string, "listjobs")
        from shared import jobs
        from shared.services import ServiceRef
        from shared.storage import get_store
        store = get_store()
        now = dt.datetime.now(dt.timezone.utc)
        figures = {}
        for pools in pool_counts:
            subscription = f"sub{pools}"
            _fill(store, subscription, pools, now)
            service = ServiceRef(subscription, "svc")
            assert len(jobs.list_jobs(service, {"$top": "50"})["Jobs"]) == 50
            built, indexed = [], []
            for _ in range(SAMPLES):
                started = time.perf_counter()
                jobs.list_jobs(service, {"$top": "50"})
                built.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                assert len(_by_index(store, subscription)) == 50
                indexed.append((time.perf_counter() - started) * 1000)
            figures[str(pools)] = {"as_built_p50_ms": round(statistics.median(built), 1),
                                   "per_service_index_p50_ms": round(statistics.median(indexed), 1)}
        return {"jobs_per_pool": JOBS_PER_POOL, "page": 50, "by_pools": figures}
    finally:
        azurite.stop()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pools", type=int, nargs="+", default=[1, 10, 50])
    figures = run(parser.parse_args(argv).pools)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
