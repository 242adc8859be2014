"""The usage ledger: BillingTimer's accrual, classic job run time, and usage reports.

Ledger rows live beside the pools in the subscription's partition:

    usage|<poolId>|<yyyymmddhh>     a pool's whole VM-seconds in that hour
    classic|<jobId>                 a classic job's run time, billed to its service's plan

An accrual recomputes each hour from the pool's VM rows between the pool's watermark
(`BilledThrough`) and now, writes those hours whole and moves the watermark, in one
etag-conditional transaction: a missed tick is caught up by the next, and a doubled tick or
two instances at once write the same figures.
"""
from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

from shared import billing, clock, costs, layout, vms
from shared.errors import InvalidRequest, NotFound
from shared.storage import POOLS, WriteConflict, concurrently, get_store

log = logging.getLogger(__name__)

MAX_HOURS_PER_TRANSACTION = 90
MAX_OPERATIONS = 100  # of one entity-group transaction
ACCRUAL_THREADS = 16
MAX_REPORT_DAYS = 366
MAX_JOBS_LISTED = 1000  # of a usage report, the costliest first
EARLIEST_REPORT_YEAR, LATEST_REPORT_YEAR = 2000, 9000


def usage_key(pool_id: str, hour: dt.datetime) -> str:
    return f"usage|{pool_id}|{hour:%Y%m%d%H}"


def classic_key(job_id: str) -> str:
    return f"classic|{job_id}"


def idle_since(pool_vms: list[dict], now: dt.datetime) -> dt.datetime | None:
    """When the pool last had work: None if a VM is busy or provisioning, or none is live."""
    live = [vm for vm in pool_vms if vms.is_live(vm)]
    if not live or any(vms.state_of(vm, now) != vms.IDLE for vm in live):
        return None
    return max(vm.get("IdleSince") or vm["ProvisionedAt"] for vm in live)


def saved_seconds(pool: dict, now: dt.datetime) -> int:
    """VM-seconds auto scale-down saved: closed episodes plus the one still open."""
    saved = pool.get("AutoSavedSeconds") or 0
    if pool.get("AutoScaledDownAt"):
        saved += (pool.get("AutoScaledDownVms") or 0) * int((now - pool["AutoScaledDownAt"]).total_seconds())
    return saved


def close_saving_episode(pool: dict, now: dt.datetime) -> None:
    """A resize or delete by the owner ends the saving that auto scale-down started."""
    if pool.get("AutoScaledDownAt"):
        pool["AutoSavedSeconds"] = saved_seconds(pool, now)
        pool["AutoScaledDownAt"] = None
        pool["AutoScaledDownVms"] = 0


def accrual_operations(pool: dict, pool_vms: list[dict], now: dt.datetime) -> list[tuple]:
    """The writes that bring one pool's ledger up to `now`: its hours, written whole, and the
    pool row with its moved watermark (and, when it has idled long enough, scaled down)."""
    until = billing.whole_second(now)
    since = pool.get("BilledThrough") or pool["CreatedAt"]
    hours = billing.hours_touched(since, until)
    if len(hours) > MAX_HOURS_PER_TRANSACTION:
        hours = hours[:MAX_HOURS_PER_TRANSACTION]
        until = hours[-1] + billing.HOUR
    amounts = billing.hourly_seconds(pool_vms, hours, until)
    rows = [{"PartitionKey": pool["PartitionKey"], "RowKey": usage_key(pool["PoolId"], hour),
             "PoolId": pool["PoolId"], "AccountId": pool["AccountId"], "BillingPlanId": pool["BillingPlanId"],
             "Hour": hour, "VmSeconds": seconds} for hour, seconds in amounts.items() if seconds > 0]
    pool["BilledThrough"] = until
    # Scaling down waits until the ledger has caught up, so one pool's writes fit in a transaction.
    auto_scale = _auto_scale_down(pool, pool_vms, now) if len(rows) <= 3 else []
    if auto_scale:
        log.info("pool scaled down for idleness pool=%s vms=%s", pool["PoolId"], pool["AutoScaledDownVms"])
    folded = billing.foldable(pool, pool_vms, until, MAX_OPERATIONS - 1 - len(rows) - len(auto_scale))
    billing.fold(pool, folded)
    # A deleted pool is done once every VM of it is folded: billed, and no row left behind.
    pool["BillingDone"] = pool["State"] != "Active" and not billing.listed(pool, pool_vms)
    return [("replace", pool), *(("upsert", row) for row in rows), *auto_scale, *(("delete", vm) for vm in folded)]


def _commit_groups(partition_pools: list[tuple[dict, list[tuple]]]) -> int:
    """Write several pools' accruals of one partition per transaction; a group that loses a
    race (a pool changed meanwhile) is written pool by pool, and a pool that still loses is
    left to the next tick. Returns the requests sent."""
    store = get_store()
    requests = 0
    group: list[tuple[dict, list[tuple]]] = []

    def flush():
        nonlocal requests
        if not group:
            return
        requests += 1
        try:
            store.transact(POOLS, [op for _, ops in group for op in ops])
        except WriteConflict:
            for _, ops in group:
                requests += 1
                try:
                    store.transact(POOLS, ops)
                except WriteConflict:
                    pass
        group.clear()

    for pool, ops in partition_pools:
        if sum(len(o) for _, o in group) + len(ops) > MAX_OPERATIONS:
            flush()
        group.append((pool, ops))
    flush()
    return requests


def accrue_partition(pools: list[dict], now: dt.datetime) -> int:
    """Accrue the pools of one partition: one range read of the partition's VMs, then shared
    transactions. Returns the storage requests it took."""
    by_pool: dict[str, list[dict]] = {}
    for vm in get_store().rows(POOLS, pools[0]["PartitionKey"], layout.VM_PREFIX):
        by_pool.setdefault(vm["PoolId"], []).append(vm)
    prepared = [(pool, accrual_operations(pool, by_pool.get(pool["PoolId"], []), now)) for pool in pools]
    return 1 + _commit_groups(prepared)


def _auto_scale_down(pool: dict, pool_vms: list[dict], now: dt.datetime) -> list[tuple]:
    minutes = pool.get("AutoScaleDownAfterMinutes")
    if not minutes or pool["State"] != "Active" or pool["VmCount"] == 0:
        return []
    since = idle_since(pool_vms, now)
    if since is None or now - since < dt.timedelta(minutes=minutes):
        return []
    plan = vms.plan_resize(pool_vms, 0, now)
    if plan.drain:
        return []
    pool.update({"VmCount": 0, "AutoScaledDownAt": billing.whole_second(now),
                 "AutoScaledDownVms": len(plan.delete)})
    retired = []
    for vm in plan.delete:
        vm.update(vms.retirement(now))
        retired.append(("replace", vm))
    return retired


def accrue_all(now: dt.datetime | None = None) -> dict:
    """One BillingTimer tick over every pool not yet fully billed: one range read of VMs per
    partition, shared transactions per partition, partitions side by side."""
    now = now or clock.utcnow()
    store = get_store()
    pools = [p for p in store.scan(POOLS, layout.POOL_PREFIX, "BillingDone eq @done", {"done": False})
             if p.get("AccountId")]
    by_partition: dict[str, list[dict]] = {}
    for pool in pools:
        by_partition.setdefault(pool["PartitionKey"], []).append(pool)
    with ThreadPoolExecutor(ACCRUAL_THREADS) as workers:
        operations = 1 + sum(workers.map(lambda group: accrue_partition(group, now), by_partition.values()))
    return {"pools": len(pools), "operations": operations}


def record_classic_run(run: dict, billing_plan_id: str) -> None:
    """A classic job's own run time, billed to its service's plan (written whole: idempotent)."""
    if not run.get("StartTime") or not run.get("EndTime"):
        return
    start, end = billing.whole_second(run["StartTime"]), billing.whole_second(run["EndTime"])
    get_store().upsert(POOLS, {"PartitionKey": run["SubscriptionId"], "RowKey": classic_key(run["JobId"]),
                               "ServiceId": run["ServiceId"], "BillingPlanId": billing_plan_id,
                               "StartTime": start, "EndTime": end,
                               "Seconds": max(0, int((end - start).total_seconds()))})


def _cost_view(compute: int, idle: int) -> dict:
    return {"ComputeSeconds": compute, "AllocatedIdleSeconds": idle, "TotalSeconds": compute + idle,
            "ComputeHours": billing.to_hours(compute + idle)}


_IN_HOURS = "Hour ge @start and Hour lt @end"


def _job_hour_rows(partition: str, pool_id: str, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """The pool's job-hour rows of the hours from `start` to `end` (one range read)."""
    return get_store().rows(POOLS, partition, layout.job_hour_prefix(pool_id), condition=_IN_HOURS,
                            parameters={"start": start, "end": end})


def _runs_by_hour(rows: list[dict]) -> dict:
    """Job-hour rows as hour -> job -> seconds, as `costs.allocate` takes them."""
    runs: dict = {}
    for row in rows:
        runs.setdefault(row["Hour"], {})[row["JobId"]] = row["Seconds"]
    return runs


def job_costs(partition: str, ended: list[tuple[str, str, dt.datetime, dt.datetime]]) -> dict[str, dict]:
    """Ended pool jobs' costs, by job id, for (pool, job, start, end): their own VM-seconds
    and their shares of their hours' idle ones, `Final` once every hour they ran in is billed
    and no job that ran in them still runs. Four reads per pool, side by side, whatever the
    number of jobs: its job-hour rows and ledger rows over the jobs' hours, its row, its VMs."""
    store = get_store()
    hours_of = {job_id: list(costs.job_hours(start, end)) or [billing.hour_of(start)]
                for _, job_id, start, end in ended}
    spans: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    for pool_id, job_id, _, _ in ended:
        first, last = hours_of[job_id][0], hours_of[job_id][-1] + billing.HOUR
        low, high = spans.get(pool_id, (first, last))
        spans[pool_id] = (min(low, first), max(high, last))
    pools = list(spans)
    reads = []
    for pool_id in pools:
        low, high = spans[pool_id]
        reads += [lambda p=pool_id, s=low, e=high: _job_hour_rows(partition, p, s, e),
                  lambda p=pool_id, s=low, e=high: store.rows(POOLS, partition, f"usage|{p}|", condition=_IN_HOURS,
                                                              parameters={"start": s, "end": e}),
                  lambda p=pool_id: store.get(POOLS, partition, layout.pool_key(p)),
                  lambda p=pool_id: store.rows(POOLS, partition, layout.vm_prefix(p), condition="State ne @deleted",
                                               parameters={"deleted": vms.DELETED})]
    answers = concurrently(*reads) if reads else []
    found = {}
    for index, pool_id in enumerate(pools):
        job_rows, ledger, pool, live = answers[4 * index: 4 * index + 4]
        totals = costs.job_totals(costs.allocate({row["Hour"]: row["VmSeconds"] for row in ledger},
                                                 _runs_by_hour(job_rows)))
        for job_pool, job_id, _, _ in ended:
            if job_pool != pool_id:
                continue
            closes = hours_of[job_id][-1] + billing.HOUR
            final = bool(pool and pool.get("BilledThrough") and pool["BilledThrough"] >= closes) and not any(
                vm.get("JobId") and vm.get("BusySince") and vm["BusySince"] < closes for vm in live)
            found[job_id] = {**_cost_view(*totals.get(job_id, (0, 0))), "Final": final}
    return found


def _pool_costs(partition: str, pools: list[str], ledger: list[dict], start: dt.datetime, end: dt.datetime):
    """Per pool, the hours' allocations in the range; and every job-hour row read."""
    job_rows = concurrently(*[lambda p=pool_id: _job_hour_rows(partition, p, start, end)
                              for pool_id in pools]) if pools else []
    allocations, rows_read = {}, []
    for pool_id, rows in zip(pools, job_rows):
        billed = _hourly([r for r in ledger if r["PoolId"] == pool_id], start, end)
        allocations[pool_id] = costs.allocate(billed, _runs_by_hour(rows))
        rows_read += rows
    return allocations, rows_read


def _job_and_service_costs(allocations: dict, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    service_of = {row["JobId"]: (row["ServiceId"], row["PoolId"]) for row in rows}
    jobs, services = [], {}
    for pool_id, hours in allocations.items():
        for job_id, (compute, idle) in costs.job_totals(hours).items():
            service_id = service_of.get(job_id, ("", pool_id))[0]
            jobs.append({"JobId": job_id, "ServiceId": service_id, "PoolId": pool_id, **_cost_view(compute, idle)})
            total = services.setdefault(service_id, {"ServiceId": service_id, "Jobs": 0, "ComputeSeconds": 0,
                                                     "AllocatedIdleSeconds": 0})
            total["Jobs"] += 1
            total["ComputeSeconds"] += compute
            total["AllocatedIdleSeconds"] += idle
    jobs.sort(key=lambda job: (-job["TotalSeconds"], job["JobId"]))
    listed = [{**s, **_cost_view(s["ComputeSeconds"], s["AllocatedIdleSeconds"])} for s in services.values()]
    return jobs, sorted(listed, key=lambda s: s["ServiceId"])


def parse_range(params) -> tuple[dt.datetime, dt.datetime]:
    """`from` and `to` (ISO 8601, UTC if no offset), rounded down to whole hours."""
    now = clock.utcnow()
    bounds = []
    for name, default in (("from", now - dt.timedelta(days=1)), ("to", now)):
        raw = params.get(name)
        if raw is None:
            bounds.append(default)
            continue
        try:
            moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            moment = (moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)
            if not EARLIEST_REPORT_YEAR <= moment.year <= LATEST_REPORT_YEAR:
                raise ValueError("out of range")
        except (ValueError, OverflowError):
            raise InvalidRequest(f"'{name}' must be an ISO 8601 time from year {EARLIEST_REPORT_YEAR} to "
                                 f"{LATEST_REPORT_YEAR}, such as 2026-11-25T00:00:00Z, got {raw[:64]!r}",
                                 "InvalidDate") from None
        bounds.append(moment)
    start, end = billing.hour_of(bounds[0]), bounds[1]
    if start >= end:
        raise InvalidRequest("'from' must be before 'to'", "InvalidRange")
    if end - start > dt.timedelta(days=MAX_REPORT_DAYS):
        raise InvalidRequest(f"a report covers at most {MAX_REPORT_DAYS} days", "InvalidRange")
    return start, end


def _series_entry(seconds: int) -> dict:
    return {"VmSeconds": seconds, "ComputeHours": billing.to_hours(seconds)}


def _hourly(rows: list[dict], start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, int]:
    series: dict[dt.datetime, int] = {}
    for row in rows:
        if start <= row["Hour"] < end:
            series[row["Hour"]] = series.get(row["Hour"], 0) + row["VmSeconds"]
    return series


def _listed(series: dict[dt.datetime, int]) -> list[dict]:
    return [{"Hour": clock.iso(hour), **_series_entry(series[hour])} for hour in sorted(series)]


def _plan_totals() -> dict:
    return {"PoolVmSeconds": 0, "ClassicJobSeconds": 0, "Hourly": {}}


def _classic_hours(rows: list[dict], start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, int]:
    series: dict[dt.datetime, int] = {}
    for row in rows:
        for hour in billing.hours_touched(row["StartTime"], row["EndTime"]):
            if start <= hour < end:
                window = billing.seconds_between([{"ProvisionedAt": row["StartTime"], "DeletedAt": row["EndTime"]}],
                                                 hour, hour + billing.HOUR, row["EndTime"])
                series[hour] = series.get(hour, 0) + window
    return series


def account_report(account, params) -> dict:
    """Compute hours of the account's pools (and its subscription's classic jobs) in a range."""
    start, end = parse_range(params)
    store = get_store()
    partition = account.subscription_id
    pools = {p["PoolId"]: p for p in store.rows(POOLS, partition, layout.POOL_PREFIX)
             if p["AccountId"] == account.account_id}
    only = params.get("poolId")
    if only is not None and only not in pools:
        raise NotFound(f"no pool {only} in this account", "PoolNotFound")
    ledger = [r for r in store.rows(POOLS, partition, "usage|")
              if r["AccountId"] == account.account_id and (only is None or r["PoolId"] == only)]
    classic = [] if only else [r for r in store.rows(POOLS, partition, "classic|")
                               if r["EndTime"] > start and r["StartTime"] < end]
    now = clock.utcnow()
    by_pool, by_plan = {}, {}
    for pool_id, pool in pools.items():
        if only is None or pool_id == only:
            series = _hourly([r for r in ledger if r["PoolId"] == pool_id], start, end)
            seconds = sum(series.values())
            by_pool[pool_id] = {"PoolId": pool_id, "State": pool["State"], "BillingPlanId": pool["BillingPlanId"],
                                "BilledThrough": clock.iso(pool.get("BilledThrough")), **_series_entry(seconds),
                                "AutoScaleDownSavedVmSeconds": saved_seconds(pool, now), "Hourly": _listed(series)}
            plan = by_plan.setdefault(pool["BillingPlanId"], _plan_totals())
            plan["PoolVmSeconds"] += seconds
            for hour, hour_seconds in series.items():
                plan["Hourly"][hour] = plan["Hourly"].get(hour, 0) + hour_seconds
    allocations, job_rows = _pool_costs(partition, list(by_pool), ledger, start, end)
    for pool_id, entry in by_pool.items():
        _add_job_costs(entry, allocations[pool_id])
    jobs, services = _job_and_service_costs(allocations, job_rows)
    classic_series = _classic_hours(classic, start, end)
    for row in classic:
        plan = by_plan.setdefault(row["BillingPlanId"] or None, _plan_totals())
        plan["ClassicJobSeconds"] += sum(_classic_hours([row], start, end).values())
    hourly = _hourly(ledger, start, end)
    total = sum(hourly.values())
    saved = sum(p["AutoScaleDownSavedVmSeconds"] for p in by_pool.values())
    return {
        "From": clock.iso(start), "To": clock.iso(end),
        "Total": _series_entry(total),
        "Pools": list(by_pool.values()),
        "BillingPlans": [{"BillingPlanId": plan_id, "PoolComputeHours": billing.to_hours(v["PoolVmSeconds"]),
                          "PoolVmSeconds": v["PoolVmSeconds"], "ClassicJobHours": billing.to_hours(v["ClassicJobSeconds"]),
                          "ClassicJobSeconds": v["ClassicJobSeconds"], "Hourly": _listed(v["Hourly"])}
                         for plan_id, v in by_plan.items()],
        "Hourly": _listed(hourly),
        "ClassicJobs": {"Jobs": len(classic), **_series_entry(sum(classic_series.values()))},
        "AutoScaleDown": {"SavedVmSeconds": saved, "SavedComputeHours": billing.to_hours(saved)},
        "Jobs": jobs[:MAX_JOBS_LISTED], "JobsTruncated": len(jobs) > MAX_JOBS_LISTED,
        "Services": services,
    }


def _add_job_costs(entry: dict, hours: dict) -> None:
    """A pool's report entry with its hours split into jobs' time, idle time shared among
    them, and idle time of hours without jobs."""
    entry["Hourly"] = [{"Hour": clock.iso(hour), **_series_entry(cost.billed),
                        "JobSeconds": sum(cost.compute.values()), "AllocatedIdleSeconds": sum(cost.idle.values()),
                        "UnallocatedIdleSeconds": cost.unallocated} for hour, cost in sorted(hours.items())]
    for name in ("JobSeconds", "AllocatedIdleSeconds", "UnallocatedIdleSeconds"):
        entry[name] = sum(hourly[name] for hourly in entry["Hourly"])


def _plan_view(billing_plan_id: str, ledger: list[dict], classic: list[dict], start, end) -> dict:
    by_account: dict[str, int] = {}
    for row in ledger:
        if start <= row["Hour"] < end:
            by_account[row["AccountId"]] = by_account.get(row["AccountId"], 0) + row["VmSeconds"]
    hourly = _hourly(ledger, start, end)
    classic_seconds = sum(_classic_hours(classic, start, end).values())
    return {"BillingPlanId": billing_plan_id, "From": clock.iso(start), "To": clock.iso(end),
            "Pools": _series_entry(sum(hourly.values())),
            "ClassicJobs": {"Jobs": len(classic), **_series_entry(classic_seconds)},
            "Accounts": [{"AccountId": a, **_series_entry(s)} for a, s in sorted(by_account.items())],
            "Hourly": _listed(hourly)}


def _classic_in(rows: list[dict], start, end) -> list[dict]:
    return [r for r in rows if r["EndTime"] > start and r["StartTime"] < end]


def plan_report(billing_plan_id: str, params) -> dict:
    """The operator's view of one billing plan across every account."""
    start, end = parse_range(params)
    store = get_store()
    only = {"plan": billing_plan_id}
    ledger = store.scan(POOLS, "usage|", "BillingPlanId eq @plan", only)
    classic = _classic_in(store.scan(POOLS, "classic|", "BillingPlanId eq @plan", only), start, end)
    return _plan_view(billing_plan_id, ledger, classic, start, end)


def plans_report(params) -> dict:
    """The operator's view of every billing plan with usage in the range."""
    start, end = parse_range(params)
    store = get_store()
    ledger = [r for r in store.scan(POOLS, "usage|") if start <= r["Hour"] < end]
    classic = _classic_in(store.scan(POOLS, "classic|"), start, end)
    plan_ids = sorted({r["BillingPlanId"] for r in ledger} | {r["BillingPlanId"] for r in classic if r["BillingPlanId"]})
    return {"From": clock.iso(start), "To": clock.iso(end),
            "BillingPlans": [_plan_view(plan_id, [r for r in ledger if r["BillingPlanId"] == plan_id],
                                        [r for r in classic if r["BillingPlanId"] == plan_id], start, end)
                             for plan_id in plan_ids]}
