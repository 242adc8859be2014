"""Usage reports and per-job cost: reads of the ledger
(`shared.ledger`), the job-hour rows each pool job writes as it ends, and classic jobs' run
time, which is billed to their service's plan:

    classic|<jobId>    in the subscription's partition: a classic job's run time

Every figure is of whole seconds and adds up: a pool's hours split into its jobs' own time,
idle time shared among them (`shared.costs`), and idle time of hours without jobs.
"""
from __future__ import annotations

import datetime as dt
from functools import partial
from typing import Callable

from shared import billing, clock, costs, layout, pools, vms
from shared.errors import InvalidRequest, NotFound
from shared.storage import POOLS, concurrently, get_store

MAX_REPORT_DAYS = 366
MAX_JOBS_LISTED = 1000  # of a usage report, the costliest first
EARLIEST_REPORT_YEAR, LATEST_REPORT_YEAR = 2000, 9000
CLASSIC_PREFIX = "classic|"


def classic_key(job_id: str) -> str:
    return f"{CLASSIC_PREFIX}{job_id}"


def record_classic_run(job: dict) -> None:
    """A classic job's own run time, billed to its service's plan (written whole: idempotent)."""
    if not job.get("StartTime") or not job.get("EndTime"):
        return
    start, end = billing.whole_second(job["StartTime"]), billing.whole_second(job["EndTime"])
    get_store().upsert(POOLS, {"PartitionKey": job["SubscriptionId"], "RowKey": classic_key(job["JobId"]),
                               "ServiceId": job["ServiceId"], "BillingPlanId": job.get("BillingPlanId") or "",
                               "StartTime": start, "EndTime": end,
                               "Seconds": max(0, int((end - start).total_seconds()))})


def _job_hour_rows(partition: str, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """The pool's job-hour rows of the hours from `start` to `end` (one range read)."""
    return get_store().key_range(POOLS, partition, layout.job_hour_prefix(start), layout.job_hour_prefix(end))


def _ledger_rows(partition: str, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """The pool's ledger rows of the hours from `start` until `end` (one range read)."""
    last = billing.hour_of(end - dt.timedelta(microseconds=1))
    return get_store().key_range(POOLS, partition, layout.ledger_key(start), layout.ledger_key(last + billing.HOUR))


def _cost_view(compute: int, idle: int) -> dict:
    return {"ComputeSeconds": compute, "AllocatedIdleSeconds": idle, "TotalSeconds": compute + idle,
            "ComputeHours": billing.to_hours(compute + idle)}


def _runs_by_hour(rows: list[dict]) -> dict:
    """Job-hour rows as hour -> job -> seconds, as `costs.allocate` takes them."""
    runs: dict = {}
    for row in rows:
        runs.setdefault(row["Hour"], {})[row["JobId"]] = row["Seconds"]
    return runs


def job_costs(ended: list[dict]) -> dict[str, dict]:
    """Ended pool jobs' costs (from their rows), by job id: their own VM-seconds and their
    shares of their hours' idle ones, `Final` once every hour they ran in is billed and no job
    that ran in them still runs. Four reads per pool, side by side, whatever the number of
    jobs: its job-hour rows and ledger rows over the jobs' hours, its row, its live VMs."""
    store = get_store()
    hours_of = {job["JobId"]: list(costs.job_hours(job["StartTime"], job["EndTime"]))
                or [billing.hour_of(job["StartTime"])] for job in ended}
    spans: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    for job in ended:
        first, last = hours_of[job["JobId"]][0], hours_of[job["JobId"]][-1] + billing.HOUR
        low, high = spans.get(job["PartitionKey"], (first, last))
        spans[job["PartitionKey"]] = (min(low, first), max(high, last))
    partitions = list(spans)
    reads: list[Callable[[], object]] = []
    for partition in partitions:
        low, high = spans[partition]
        reads += [partial(_job_hour_rows, partition, low, high), partial(_ledger_rows, partition, low, high),
                  partial(store.get, POOLS, partition, layout.POOL_ROW),
                  partial(store.rows, POOLS, partition, layout.VM_PREFIX, condition="State ne @deleted",
                          parameters={"deleted": vms.DELETED})]
    answers = concurrently(*reads) if reads else []
    found = {}
    for index, partition in enumerate(partitions):
        job_rows, ledger, pool, live = answers[4 * index: 4 * index + 4]
        totals = costs.job_totals(costs.allocate({row["Hour"]: row["VmSeconds"] for row in ledger},
                                                 _runs_by_hour(job_rows)))
        for job in ended:
            if job["PartitionKey"] != partition:
                continue
            closes = hours_of[job["JobId"]][-1] + billing.HOUR
            final = bool(pool and pool.get("BilledThrough") and pool["BilledThrough"] >= closes) and not any(
                vm.get("JobId") and vm.get("BusySince") and vm["BusySince"] < closes for vm in live)
            found[job["JobId"]] = {**_cost_view(*totals.get(job["JobId"], (0, 0))), "Final": final}
    return found


def _pool_costs(ledgers: dict[str, list[dict]], job_rows: dict[str, list[dict]], start: dt.datetime,
                end: dt.datetime) -> dict[str, dict]:
    """Per pool, the hours' allocations in the range."""
    return {pool_id: costs.allocate(_hourly(ledgers[pool_id], start, end), _runs_by_hour(job_rows[pool_id]))
            for pool_id in ledgers}


def _job_and_service_costs(allocations: dict, rows: list[dict]) -> tuple[list[dict], list[dict]]:
    service_of = {row["JobId"]: row["ServiceId"] for row in rows}
    jobs: list[dict] = []
    services: dict[str, dict] = {}
    for pool_id, hours in allocations.items():
        for job_id, (compute, idle) in costs.job_totals(hours).items():
            service_id = service_of.get(job_id, "")
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


def _pool_reads(partition: str, start: dt.datetime, end: dt.datetime):
    return (pools.pool_row(partition), _ledger_rows(partition, start, end), _job_hour_rows(partition, start, end))


def account_report(account, params) -> dict:
    """Compute hours of the account's pools (and its subscription's classic jobs) in a range:
    per pool, side by side, its row and its ledger and job-hour rows of the range."""
    start, end = parse_range(params)
    store = get_store()
    subscription = account.subscription_id
    registered = [row["PoolId"] for row in pools.registry(subscription) if row["AccountId"] == account.account_id]
    only = params.get("poolId")
    if only is not None and only not in registered:
        raise NotFound(f"no pool {only} in this account", "PoolNotFound")
    listed = [pool_id for pool_id in registered if only is None or pool_id == only]
    reads: list[Callable[[], object]] = [partial(_pool_reads, layout.pool_partition(subscription, pool_id), start, end)
                                         for pool_id in listed]
    if not only:
        reads.append(partial(store.rows, POOLS, subscription, CLASSIC_PREFIX,
                             condition="EndTime gt @start and StartTime lt @end",
                             parameters={"start": start, "end": end}))
    answers = concurrently(*reads) if reads else []
    classic = answers[len(listed)] if not only else []
    now = clock.utcnow()
    by_pool: dict[str, dict] = {}
    by_plan: dict[str | None, dict] = {}
    ledgers: dict[str, list[dict]] = {}
    job_rows: dict[str, list[dict]] = {}
    all_ledger: list[dict] = []
    for pool_id, (pool, ledger, rows) in zip(listed, answers[:len(listed)], strict=True):
        if pool is None:
            continue
        ledgers[pool_id], job_rows[pool_id] = ledger, rows
        all_ledger += ledger
        series = _hourly(ledger, start, end)
        seconds = sum(series.values())
        by_pool[pool_id] = {"PoolId": pool_id, "State": pool["State"], "BillingPlanId": pool["BillingPlanId"],
                            "BilledThrough": clock.iso(pool.get("BilledThrough")), **_series_entry(seconds),
                            "AutoScaleDownSavedVmSeconds": pools.saved_seconds(pool, now), "Hourly": _listed(series)}
        plan = by_plan.setdefault(pool["BillingPlanId"], _plan_totals())
        plan["PoolVmSeconds"] += seconds
        for hour, hour_seconds in series.items():
            plan["Hourly"][hour] = plan["Hourly"].get(hour, 0) + hour_seconds
    allocations = _pool_costs(ledgers, job_rows, start, end)
    for pool_id, entry in by_pool.items():
        _add_job_costs(entry, allocations[pool_id])
    jobs, services = _job_and_service_costs(allocations, [row for rows in job_rows.values() for row in rows])
    classic_series = _classic_hours(classic, start, end)
    for row in classic:
        plan = by_plan.setdefault(row["BillingPlanId"] or None, _plan_totals())
        plan["ClassicJobSeconds"] += sum(_classic_hours([row], start, end).values())
    hourly = _hourly(all_ledger, start, end)
    total = sum(hourly.values())
    saved = sum(p["AutoScaleDownSavedVmSeconds"] for p in by_pool.values())
    return {
        "From": clock.iso(start), "To": clock.iso(end),
        "Total": _series_entry(total),
        "Pools": list(by_pool.values()),
        "BillingPlans": [{"BillingPlanId": plan_id, "PoolComputeHours": billing.to_hours(v["PoolVmSeconds"]),
                          "PoolVmSeconds": v["PoolVmSeconds"],
                          "ClassicJobHours": billing.to_hours(v["ClassicJobSeconds"]),
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
    ledger = store.scan(POOLS, layout.LEDGER_PREFIX, "BillingPlanId eq @plan", only)
    classic = _classic_in(store.scan(POOLS, CLASSIC_PREFIX, "BillingPlanId eq @plan", only), start, end)
    return _plan_view(billing_plan_id, ledger, classic, start, end)


def plans_report(params) -> dict:
    """The operator's view of every billing plan with usage in the range."""
    start, end = parse_range(params)
    store = get_store()
    ledger = [r for r in store.scan(POOLS, layout.LEDGER_PREFIX) if start <= r["Hour"] < end]
    classic = _classic_in(store.scan(POOLS, CLASSIC_PREFIX), start, end)
    plan_ids = sorted({r["BillingPlanId"] for r in ledger}
                      | {r["BillingPlanId"] for r in classic if r["BillingPlanId"]})
    return {"From": clock.iso(start), "To": clock.iso(end),
            "BillingPlans": [_plan_view(plan_id, [r for r in ledger if r["BillingPlanId"] == plan_id],
                                        [r for r in classic if r["BillingPlanId"] == plan_id], start, end)
                             for plan_id in plan_ids]}
