"""The timers' cost per pass must not grow with history: the Sweeper (`shared.sweeper.sweep`)
and the BillingTimer (`shared.ledger.accrue_all`) over 10 active pools, (a) with no ended
jobs and (b) with 100,000 ended jobs in the pools' partitions (target: (b) within 1.1x of (a),
in storage requests and in wall time per pass).

No host runs: both timers are called in this process against a private in-memory Azurite,
every request the app's SDK clients send counted (their shared transport, retries included).
The 10 pools (`sub-timers|pool<i>`, in the `~active` index and the subscription's registry)
have 4 VMs each, all busy with Running jobs (busy for two hours, heartbeats fresh: the sweep
looks at each one's job and leaves it), and 2 waiting jobs each; the classic environment is
made by the first sweep. History: job rows ended Finished a few hours ago (each made by
`lifecycle.new_job`, `start_now` and `end`, as the app makes them) with their job-hour rows,
written straight into Azurite in entity-group transactions of at most 100 operations, from
parallel threads through the app's TableStore, spread evenly over the 10 pools' partitions.
If writing all of them would pass the time budget, the count written by then is the history
measured (said in the output; nothing is extrapolated).

Retention (`shared.retention`, part of `sweep`) runs at most every quarter of
JOB_RETENTION_DAYS (an hour at most) per process, and the first sweep of a process includes
it; so a warm-up sweep (and a warm-up accrual) runs before the measured passes, and every
measured sweep is checked to have left retention out. A retention pass is measured on its
own beside them (forced due), for (a) and (b), and is not in the ratio.
Azurite's own cost of reads with and without the history is shown too (a point read, a range
read of one pool's VMs, a range read of a partition that holds no history), and this
process's CPU per pass (the app's own work, whatever the emulator's), so that an emulator
effect is told from the app's: Azurite (3.37, in memory) answers every table query by testing
each entity of the table against the filter (LokiTableMetadataStore.queryTableEntities:
`collection.chain().where(...)`, no key index), so each range read costs in proportion to the
whole table; a point read is an indexed find.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import ROOT, RequestCounter, azurite_ports, start_azurite, use_storage

SUBSCRIPTION = "sub-timers"
POOLS_ACTIVE = 10
VMS_PER_POOL = 4
WAITING_PER_POOL = 2
MAX_OPERATIONS = 100
ENV = {"RUN_STALE_SECONDS": "3600",  # the running jobs' heartbeats, written at setup, stay fresh
       "JOB_RETENTION_DAYS": "7", "OUTPUT_RETENTION_MINUTES": str(7 * 24 * 60)}


def _request_json(pool_id: str) -> str:
    location = {"ConnectionString": None, "BaseLocation": "http://127.0.0.1/bench", "SasBlobToken": "sv=x&sig=y"}
    return json.dumps({"Input": {**location, "RelativeLocation": "inputs/tiny.csv"},
                       "Outputs": {"output1": {**location, "RelativeLocation": "outputs/out.csv"}},
                       "GlobalParameters": {}, "AzureBatchPoolId": pool_id})


def _job_fields(pool_id: str) -> dict:
    """What `jobs.submit_job` keeps on a pool job's row."""
    return {"SubscriptionId": SUBSCRIPTION, "ServiceId": "svc", "PoolId": pool_id, "Request": _request_json(pool_id),
            "Details": "", "Results": "{}", "Scorer": "samples.census:score", "TimeoutSeconds": 3600,
            "MaxQueuedSeconds": 0, "MaxRetries": 2, "NotificationUrl": "", "BillingPlanId": "plan-a"}


def _pool_rows(index: int, now: dt.datetime) -> tuple[str, list[tuple], list[dict]]:
    """A pool's partition as the app leaves it: the pool row and its VMs as `pools` makes
    them, the VMs all busy with Running jobs, two waiting jobs. Returns the partition, its
    operations, and the rows of the other partitions (its `~active` index row and its
    registry row, as `pools` writes them)."""
    from shared import layout, lifecycle, pools
    pool_id = f"pool{index}"
    partition = layout.pool_partition(SUBSCRIPTION, pool_id)
    created = now - dt.timedelta(hours=6)
    registered = {"PartitionKey": SUBSCRIPTION, "RowKey": layout.registry_key(pool_id), "PoolId": pool_id,
                  "SubscriptionId": SUBSCRIPTION, "AccountId": "timers", "VmCount": VMS_PER_POOL, "State": "Active",
                  "BillingPlanId": "plan-a", "ServiceId": "svc", "CreatedAt": created, "AutoScaleDownAfterMinutes": 0}
    _, made = pools._new_pool(partition, registered, created)
    operations = made[:1]
    busy_since = now - dt.timedelta(hours=2)
    for _, vm in made[1:]:
        job_id = layout.new_job_id(busy_since, pool_id)
        job = lifecycle.new_job(partition, job_id, _job_fields(pool_id), busy_since).changes
        lifecycle.start_now(job, vm, busy_since)  # the job Running, the VM Busy, on both rows
        job.update({"RunnerId": "runner", "Attempts": 1, "Slices": 1, "AttemptStartedAt": busy_since,
                    "HeartbeatAt": now})
        operations += [("create", job), ("create", vm)]
    for number in range(WAITING_PER_POOL):
        queued_at = now - dt.timedelta(minutes=30 - number)
        job = lifecycle.new_job(partition, layout.new_job_id(queued_at, pool_id), _job_fields(pool_id),
                                queued_at).changes
        queued = lifecycle.enqueue(job, queued_at)
        operations += [("create", job), *((kind, row) for kind, row in queued.operations if kind == "create")]
    return partition, operations, [pools._index_row(SUBSCRIPTION, pool_id, partition), registered]


def _ended_job(partition: str, pool_id: str, number: int, now: dt.datetime) -> list[tuple]:
    """One job that ended Finished a few hours ago, written as the app writes it: its job row
    and its job-hour rows (one, or two if it ran across an hour)."""
    from shared import layout, lifecycle, vms
    ended_at = now - dt.timedelta(hours=1, seconds=(number * 7919) % (4 * 3600))  # 1-5 hours ago
    started_at = ended_at - dt.timedelta(seconds=20 + number % 180)
    vm = vms.new_vm(partition, pool_id, number % VMS_PER_POOL, now - dt.timedelta(hours=6), 0)
    job = lifecycle.new_job(partition, layout.new_job_id(started_at - dt.timedelta(seconds=1), pool_id),
                            _job_fields(pool_id), started_at - dt.timedelta(seconds=1)).changes
    lifecycle.start_now(job, vm, started_at)
    job.update({"RunnerId": "runner", "Attempts": 1, "Slices": 1, "AttemptStartedAt": started_at,
                "InputOffset": 420, "RowsScored": 10, "Chunks": 1, "InputBytes": 420, "OutputBlocks": '{"output1": 0}'})
    ending = lifecycle.end(job, lifecycle.FINISHED, "", ended_at, results={
        "output1": {"ConnectionString": None, "RelativeLocation": "outputs/out.csv", "BaseLocation": "x"}})
    return [("create" if entity is job else kind, entity) for kind, entity in ending.operations]


def _history_batches(partitions: list[tuple[str, str]], jobs: int, now: dt.datetime):
    """Transactions of at most 100 operations, one partition each, taking the pools in turn."""
    per_pool = {partition: [] for partition, _ in partitions}
    for number in range(jobs):
        partition, pool_id = partitions[number % len(partitions)]
        rows = _ended_job(partition, pool_id, number, now)
        if len(per_pool[partition]) + len(rows) > MAX_OPERATIONS:
            yield per_pool[partition]
            per_pool[partition] = []
        per_pool[partition] += [(kind, row, number) for kind, row in rows]
    for batch in per_pool.values():
        if batch:
            yield batch


def write_history(store, partitions: list[tuple[str, str]], jobs: int, now: dt.datetime, budget_seconds: float,
                  threads: int = 8) -> dict:
    """Write up to `jobs` ended jobs; stops taking new transactions once `budget_seconds` have
    passed, and says how many jobs and rows were written."""
    from shared.storage import POOLS
    batches = _history_batches(partitions, jobs, now)
    lock = threading.Lock()
    written_jobs: set[int] = set()
    counts = {"rows": 0, "transactions": 0}
    began = time.perf_counter()
    deadline = began + budget_seconds
    stopped_by_budget = threading.Event()

    def worker():
        while True:
            with lock:
                if time.perf_counter() > deadline:
                    stopped_by_budget.set()
                    return
                batch = next(batches, None)
            if batch is None:
                return
            store.transact(POOLS, [(kind, row) for kind, row, _ in batch])
            with lock:
                written_jobs.update(number for _, _, number in batch)
                counts["rows"] += len(batch)
                counts["transactions"] += 1

    with ThreadPoolExecutor(threads) as workers:
        for future in [workers.submit(worker) for _ in range(threads)]:
            future.result()
    seconds = time.perf_counter() - began
    return {"jobs_asked": jobs, "jobs_written": len(written_jobs), "rows_written": counts["rows"],
            "transactions": counts["transactions"], "seconds": round(seconds, 1),
            "rows_per_second": round(counts["rows"] / seconds), "stopped_by_time_budget": stopped_by_budget.is_set(),
            "time_budget_seconds": budget_seconds}


def _count_rows(store, partitions: list[tuple[str, str]]) -> dict:
    from shared import layout
    from shared.storage import POOLS
    return {"job_rows": sum(store.count(POOLS, p, layout.JOB_PREFIX) for p, _ in partitions),
            "jobhour_rows": sum(store.count(POOLS, p, layout.JOB_HOUR_PREFIX) for p, _ in partitions)}


def _passes(call, ports: dict, passes: int, check=None) -> dict:
    """`passes` calls, each counted and timed alone."""
    requests, seconds, cpu, kinds, figures = [], [], [], [], None
    for _ in range(passes):
        with RequestCounter(ports) as counter:
            began, cpu_began = time.perf_counter(), time.process_time()
            figures = call()
            seconds.append(time.perf_counter() - began)
            cpu.append(time.process_time() - cpu_began)
        if check:
            check(figures)
        requests.append(counter.count)
        kinds.append(counter.kinds())
    return {"requests_per_pass": statistics.median(requests), "requests_min_max": [min(requests), max(requests)],
            "requests_by_kind": kinds[len(kinds) // 2], "ms_per_pass_p50": round(statistics.median(seconds) * 1000, 1),
            "ms_per_pass_min_max": [round(min(seconds) * 1000, 1), round(max(seconds) * 1000, 1)],
            "app_cpu_ms_per_pass_p50": round(statistics.median(cpu) * 1000, 1),
            "passes": passes, "last_figures": figures}


def _no_retention(figures: dict) -> None:
    assert "jobs_removed" not in figures and "outputs_removed" not in figures, \
        f"retention ran inside a measured sweep: {figures}"


def _azurite_reads(store, partition: str, samples: int = 60) -> dict:
    from shared import layout, pools
    from shared.storage import POOLS

    def p50(call):
        timings = []
        for _ in range(samples):
            began = time.perf_counter()
            call()
            timings.append((time.perf_counter() - began) * 1000)
        return round(statistics.median(timings), 2)

    return {"point_read_of_pool_row_ms": p50(lambda: store.get(POOLS, partition, layout.POOL_ROW)),
            "range_read_of_its_vms_ms": p50(lambda: pools.pool_vms(partition)),
            "range_read_in_a_partition_with_no_history_ms": p50(lambda: pools.registry(SUBSCRIPTION))}


def _retention_pass(ports: dict) -> dict:
    """One retention pass, forced due (the same as the first sweep of a process runs)."""
    from shared import clock, retention
    retention._jobs_due.next_at = retention._outputs_due.next_at = 0.0
    with RequestCounter(ports) as counter:
        began = time.perf_counter()
        figures = retention.prune_when_due(clock.utcnow())
        seconds = time.perf_counter() - began
    return {"requests": counter.count, "requests_by_kind": counter.kinds(), "ms": round(seconds * 1000, 1),
            "figures": figures}


def measure(store, ports: dict, partitions: list[tuple[str, str]], passes: int) -> dict:
    from shared import ledger, sweeper
    # Warm-up: a sweep (retention is due in it the first time in a process, and it is the
    # first that makes the classic environment) and an accrual (catching up since the last).
    warm_sweep = sweeper.sweep()
    ledger.accrue_all()
    figures = {"warm_up_sweep_figures": warm_sweep,
               "sweep": _passes(sweeper.sweep, ports, passes, _no_retention),
               "accrue_all": _passes(ledger.accrue_all, ports, passes),
               "azurite_reads_alone_p50": _azurite_reads(store, partitions[0][0])}
    figures["retention_pass_forced"] = _retention_pass(ports)
    figures["active_index"] = _index_listing()
    return figures


def _index_listing() -> dict:
    """The `~active` partition's rows as stored, beside those `pools.active_index` lists (the
    partitions the timers visit)."""
    from shared import layout, pools
    from shared.storage import POOLS, get_store
    stored = [row["RowKey"] for row in get_store().key_range(POOLS, layout.ACTIVE_PARTITION, "", "\U0010ffff",
                                                              select=["RowKey"])]
    listed = [row["RowKey"] for row in pools.active_index()]
    return {"stored": len(stored), "listed": len(listed), "stored_but_not_listed": sorted(set(stored) - set(listed))}


def run(history_jobs: int, passes: int, budget_seconds: float, threads: int) -> dict:
    azurite = start_azurite(ROOT, None)
    try:
        os.environ.update(ENV)
        use_storage(azurite.connection_string, "timers")
        from shared import clock, layout, pools
        from shared.settings import get_settings
        from shared.storage import POOLS, get_store
        settings = get_settings()
        assert settings.run_stale_seconds == 3600, settings.run_stale_seconds
        store = get_store()
        ports = azurite_ports(azurite)
        now = clock.utcnow()
        partitions = []
        for index in range(POOLS_ACTIVE):
            partition, operations, others = _pool_rows(index, now)
            store.transact(POOLS, operations)
            for row in others:
                store.upsert(POOLS, row)
            partitions.append((partition, f"pool{index}"))
        store.upsert(POOLS, {"PartitionKey": SUBSCRIPTION, "RowKey": layout.counter_key("timers"),
                             "ActivePools": POOLS_ACTIVE})
        assert len(pools.active_index()) == POOLS_ACTIVE, "the pools are not in the timers' index"
        results = {"active_pools": POOLS_ACTIVE, "vms_per_pool": VMS_PER_POOL, "running_jobs_per_pool": VMS_PER_POOL,
                   "waiting_jobs_per_pool": WAITING_PER_POOL,
                   "no_history": {"rows": _count_rows(store, partitions),
                                  **measure(store, ports, partitions, passes)}}
        history = write_history(store, partitions, history_jobs, clock.utcnow(), budget_seconds, threads)
        results["history_written"] = history
        results["with_history"] = {"rows": _count_rows(store, partitions),
                                   **measure(store, ports, partitions, passes)}
        none, full = results["no_history"], results["with_history"]
        results["ratio_history_over_none"] = {
            timer: {"requests": round(full[timer]["requests_per_pass"] / none[timer]["requests_per_pass"], 2),
                    "ms_per_pass": round(full[timer]["ms_per_pass_p50"] / none[timer]["ms_per_pass_p50"], 2)}
            | {"app_cpu_ms_per_pass": round(full[timer]["app_cpu_ms_per_pass_p50"]
                                            / max(0.1, none[timer]["app_cpu_ms_per_pass_p50"]), 2)}
            for timer in ("sweep", "accrue_all")}
        results["ratio_history_over_none"]["target"] = 1.1
        results["ended_jobs_in_history"] = full["rows"]["job_rows"] - none["rows"]["job_rows"]
        return results
    finally:
        azurite.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--history-jobs", type=int, default=100000)
    parser.add_argument("--passes", type=int, default=15, help="measured passes of each timer per case")
    parser.add_argument("--budget-seconds", type=float, default=180, help="time allowed for writing the history")
    parser.add_argument("--threads", type=int, default=8, help="threads writing the history")
    args = parser.parse_args(argv)
    result = run(args.history_jobs, args.passes, args.budget_seconds, args.threads)
    print(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
