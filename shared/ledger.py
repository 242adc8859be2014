"""The usage ledger: BillingTimer's accrual of each pool's whole VM-seconds by hour.

A pool's ledger rows (`ledger|<yyyymmddhh>`) live in its own partition. An accrual
recomputes each hour from the pool's VM rows between the pool's watermark (`BilledThrough`)
and now, writes those hours whole and moves the watermark, in one etag-conditional
transaction: a missed tick is caught up by the next, and a doubled tick or two instances at
once write the same figures. A tick visits only the pools in the `~active` index: its cost
grows with the pools still billed, never with history.
"""
from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor

from shared import billing, clock, layout, pools
from shared.storage import POOLS, WriteConflict, get_store

log = logging.getLogger(__name__)

MAX_HOURS_PER_TRANSACTION = 90
MAX_OPERATIONS = 100  # of one entity-group transaction
ACCRUAL_THREADS = 16


def accrual_operations(pool: dict, vm_rows: list[dict], now: dt.datetime) -> list[tuple]:
    """The writes that bring one pool's ledger up to `now`: its hours, written whole, and the
    pool row with its moved watermark (and, when it has idled long enough, scaled down)."""
    until = billing.whole_second(now)
    since = pool.get("BilledThrough") or pool["CreatedAt"]
    hours = billing.hours_touched(since, until)
    if len(hours) > MAX_HOURS_PER_TRANSACTION:
        hours = hours[:MAX_HOURS_PER_TRANSACTION]
        until = hours[-1] + billing.HOUR
    amounts = billing.hourly_seconds(vm_rows, hours, until)
    rows = [{"PartitionKey": pool["PartitionKey"], "RowKey": layout.ledger_key(hour), "PoolId": pool["PoolId"],
             "AccountId": pool["AccountId"], "BillingPlanId": pool["BillingPlanId"], "Hour": hour,
             "VmSeconds": seconds} for hour, seconds in amounts.items() if seconds > 0]
    pool["BilledThrough"] = until
    # Scaling down waits until the ledger has caught up, so one pool's writes fit in a transaction.
    auto_scale = pools.auto_scale_down(pool, vm_rows, now) if len(rows) <= 3 else []
    if auto_scale:
        log.info("pool scaled down for idleness pool=%s vms=%s", pool["PoolId"], pool["AutoScaledDownVms"])
    folded = billing.foldable(pool, vm_rows, until, MAX_OPERATIONS - 1 - len(rows) - len(auto_scale))
    billing.fold(pool, folded)
    # A deleted pool is done once every VM of it is folded: billed, and no row left behind.
    pool["BillingDone"] = pool["State"] != pools.ACTIVE and not billing.listed(pool, vm_rows)
    return [("replace", pool), *(("upsert", row) for row in rows), *auto_scale, *(("delete", vm) for vm in folded)]


def accrue_pool(partition: str, now: dt.datetime) -> int:
    """Accrue one pool: its VMs, then its row (see `shared.billing` on folding), then one
    transaction. Returns the storage requests it took."""
    store = get_store()
    vm_rows = pools.pool_vms(partition)
    pool = pools.pool_row(partition)
    if pool is None:
        return 2
    if pool.get("BillingDone"):
        pools.mark_done(pool)
        return 3
    scaled_from = pool["VmCount"]
    try:
        store.transact(POOLS, accrual_operations(pool, vm_rows, now))
    except WriteConflict:
        return 3  # the pool changed meanwhile: the next tick catches up
    if pool["BillingDone"]:
        pools.mark_done(pool)
        return 4
    if pool["VmCount"] != scaled_from:
        store.merge(POOLS, {"PartitionKey": pool["SubscriptionId"], "RowKey": layout.registry_key(pool["PoolId"]),
                            "VmCount": pool["VmCount"]})
        return 4
    return 3


def accrue_all(now: dt.datetime | None = None) -> dict:
    """One BillingTimer tick over every pool in the active index, side by side."""
    now = now or clock.utcnow()
    partitions = [row["RowKey"] for row in pools.active_index() if row["RowKey"] != layout.CLASSIC_PARTITION]
    with ThreadPoolExecutor(ACCRUAL_THREADS) as workers:
        operations = 1 + sum(workers.map(lambda partition: accrue_pool(partition, now), partitions))
    return {"pools": len(partitions), "operations": operations}


