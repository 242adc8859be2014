"""Pools: an account's dedicated VMs, billed per VM from provisioned to deleted.

A pool's rows live in its own partition (see `shared.layout`): every resize is one
etag-conditional entity-group transaction over the pool row and its VMs, so no VM is lost
when requests race. The subscription's partition keeps a registry row per pool beside the
account's pool counter, changed together so the MaxPools quota holds; the `~active` index
names the pools the timers visit. A create or delete writes these three places in turn
(index, registry, pool); `reconcile` finishes one that stopped half way.
"""
from __future__ import annotations

import datetime as dt
import logging
import uuid

from shared import billing, clock, dispatch, layout, moves, predict, services, vms
from shared.accounts import Account, pool_service_url
from shared.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from shared.settings import get_settings
from shared.storage import POOLS, WriteConflict, concurrently, get_store, retry_on_conflict
from shared.storage.tables import Row
from shared.validation import int_field, is_valid_id, only_fields, require_id

log = logging.getLogger(__name__)

ACTIVE, DELETED = "Active", "Deleted"
MAX_AUTO_SCALE_DOWN_MINUTES = 7 * 24 * 60
# A create or delete that stopped half way is finished by the sweeper once it is this old.
HALF_DONE = dt.timedelta(minutes=1)
# The pool fields the registry keeps, so a create that stopped half way can be finished.
_REGISTERED = ("PoolId", "SubscriptionId", "AccountId", "VmCount", "State", "BillingPlanId", "ServiceId", "CreatedAt",
               "AutoScaleDownAfterMinutes")


def pool_row(partition: str) -> Row | None:
    return get_store().get(POOLS, partition, layout.POOL_ROW)


def pool_vms(partition: str) -> list[dict]:
    return get_store().rows(POOLS, partition, layout.VM_PREFIX)


def registry(subscription_id: str) -> list[dict]:
    """Every pool the subscription has made (active, or deleted and kept)."""
    return get_store().rows(POOLS, subscription_id, layout.REGISTRY_PREFIX)


def partitions_of(subscription_id: str) -> list[str]:
    """The partitions of the subscription's pools."""
    return [layout.pool_partition(subscription_id, row["PoolId"]) for row in registry(subscription_id)]


def active_index(with_done: bool = False) -> list[dict]:
    """The pools the timers visit (one range read of the `~active` partition): those with
    work left, or also (`with_done`) deleted ones billed to the end that retention has yet
    to clear."""
    if with_done:
        return get_store().rows(POOLS, layout.ACTIVE_PARTITION, "")
    return get_store().rows(POOLS, layout.ACTIVE_PARTITION, "", condition="Done ne @done", parameters={"done": True})


def mark_done(pool: dict) -> None:
    """A deleted pool billed to the end: only retention still visits it."""
    get_store().merge(POOLS, {**_index_row(pool["SubscriptionId"], pool["PoolId"], pool["PartitionKey"]),
                              "Done": True})


def _index_row(subscription_id: str, pool_id: str, partition: str) -> dict:
    # Done is written from the start: a filter on a property leaves out the rows without it.
    return {"PartitionKey": layout.ACTIVE_PARTITION, "RowKey": partition, "SubscriptionId": subscription_id,
            "PoolId": pool_id, "Done": False}


def _auto_scale_down_minutes(body: dict, default=None):
    """Optional AutoScaleDownAfterMinutes: a whole number of minutes, or null to turn it off."""
    if "AutoScaleDownAfterMinutes" not in body:
        return default
    if body["AutoScaleDownAfterMinutes"] is None:
        return 0
    return int_field(body, "AutoScaleDownAfterMinutes", 1, MAX_AUTO_SCALE_DOWN_MINUTES)


def _vm_view(vm: dict, now) -> dict:
    return {"VmId": vm["VmId"], "State": vms.state_of(vm, now), "CreatedAt": clock.iso(vm["CreatedAt"]),
            "ProvisionedAt": clock.iso(vm["ProvisionedAt"]) if vms.was_provisioned(vm) else None,
            "DeletedAt": clock.iso(vm.get("DeletedAt")), "JobId": vm.get("JobId") or None,
            "ComputeSeconds": vms.billed_seconds(vm, now)}


def pool_view(pool: dict, vm_rows: list[dict], queued: int, now, with_vms: bool = False) -> dict:
    """A pool as its owner sees it. `vm_rows` must have been read before `pool` (see
    `shared.billing` on folding) for every VM-second to count once."""
    vm_rows = billing.listed(pool, vm_rows)
    counts = vms.counts_by_state(vm_rows, now)
    seconds = billing.pool_seconds(pool, vm_rows, now)
    live = sum(1 for vm in vm_rows if vms.is_live(vm))
    settled = counts[vms.PROVISIONING] == 0 and counts[vms.DRAINING] == 0 and live == pool["VmCount"]
    view = {
        "PoolId": pool["PoolId"],
        "VmCount": pool["VmCount"],
        "State": "Steady" if settled else "Resizing",
        "VmCounts": counts,
        "QueuedJobs": queued,
        "RunningJobs": counts[vms.BUSY] + counts[vms.DRAINING],
        "BillingPlanId": pool["BillingPlanId"],
        "ServiceId": pool["ServiceId"],
        "CreatedAt": clock.iso(pool["CreatedAt"]),
        "ComputeSeconds": seconds,
        "ComputeHours": round(seconds / 3600, 6),
        "AsOf": clock.iso(now),
        "AutoScaleDownAfterMinutes": pool.get("AutoScaleDownAfterMinutes") or None,
        "AutoScaleDownSavedVmSeconds": saved_seconds(pool, now),
        "FoldedVms": pool.get("FoldedVms") or 0,
    }
    if with_vms:
        view["Vms"] = [_vm_view(vm, now) for vm in vm_rows]
    return view


def _check_vm_quota(account: Account, vm_count: int) -> None:
    if vm_count > account.max_vms_per_pool:
        raise QuotaExceeded(f"VmCount {vm_count} is over this account's MaxVmsPerPool of "
                            f"{account.max_vms_per_pool}; ask the operator to raise the quota")


def _owned_pool(account: Account, pool_id: str) -> Row:
    pool = pool_row(layout.pool_partition(account.subscription_id, pool_id)) if is_valid_id(pool_id) else None
    if pool is None or pool["State"] != ACTIVE or pool["AccountId"] != account.account_id:
        raise NotFound(f"no pool {pool_id} in this account", "PoolNotFound")
    return pool


def vm_operations(plan: vms.ResizePlan, pool: dict, now, provisioning_seconds: int) -> list[tuple]:
    """The transaction operations that carry out a resize plan on a pool's VM rows."""
    operations = []
    for offset in range(plan.create):
        ordinal = pool["NextVmOrdinal"] + offset
        operations.append(("create", vms.new_vm(pool["PartitionKey"], pool["PoolId"], ordinal, now,
                                                provisioning_seconds)))
    pool["NextVmOrdinal"] += plan.create
    for vm in plan.delete:
        vm.update(vms.retirement(now))
        operations.append(("replace", vm))
    for vm in plan.drain:
        vm["State"] = vms.DRAINING
        operations.append(("replace", vm))
    for vm in plan.undrain:
        vm["State"] = vms.BUSY
        operations.append(("replace", vm))
    return operations


def _new_pool(partition: str, registered: dict, now) -> tuple[dict, list[tuple]]:
    """The pool row and its first VMs, as registered."""
    pool = {"PartitionKey": partition, "RowKey": layout.POOL_ROW, **{k: registered[k] for k in _REGISTERED},
            "NextVmOrdinal": 0, "BilledThrough": registered["CreatedAt"], "BillingDone": False}
    pool["State"] = ACTIVE
    provisioning = get_settings().vm_provisioning_seconds
    return pool, [("create", pool), *vm_operations(vms.ResizePlan(create=pool["VmCount"]), pool, now, provisioning)]


def create_pool(account: Account, body: dict, base_url: str):
    only_fields(body, ("VmCount", "ServiceSwaggerUrl", "PoolId", "AutoScaleDownAfterMinutes"))
    vm_count = int_field(body, "VmCount", 0, vms.MAX_VMS_PER_POOL)
    auto_minutes = _auto_scale_down_minutes(body, 0)
    if "ServiceSwaggerUrl" not in body:
        raise InvalidRequest("ServiceSwaggerUrl is required: the SwaggerUrl of a New web service", "MissingField")
    pool_id = require_id(body["PoolId"], "PoolId") if body.get("PoolId") is not None else uuid.uuid4().hex
    _check_vm_quota(account, vm_count)
    service = services.resolve_swagger_url(body["ServiceSwaggerUrl"], base_url, account.subscription_id)
    store = get_store()
    subscription = account.subscription_id
    partition = layout.pool_partition(subscription, pool_id)

    def register():
        now = clock.utcnow()
        registered, counter = concurrently(
            lambda: store.get(POOLS, subscription, layout.registry_key(pool_id)),
            lambda: store.get(POOLS, subscription, layout.counter_key(account.account_id)))
        if registered is not None:
            raise Conflict(f"a pool named {pool_id} exists or existed in this subscription; choose another "
                           "PoolId", "PoolExists")
        active = counter["ActivePools"] if counter else 0
        if active >= account.max_pools:
            raise QuotaExceeded(f"this account already has {active} pool(s), its MaxPools quota; delete one "
                                "or ask the operator to raise the quota")
        entry = {"PartitionKey": subscription, "RowKey": layout.registry_key(pool_id), "PoolId": pool_id,
                 "SubscriptionId": subscription, "AccountId": account.account_id, "VmCount": vm_count, "State": ACTIVE,
                 "BillingPlanId": service.billing_plan_id, "ServiceId": service.service_id, "CreatedAt": now,
                 "AutoScaleDownAfterMinutes": auto_minutes}
        if counter is None:
            counter_op = ("create", {"PartitionKey": subscription, "RowKey": layout.counter_key(account.account_id),
                                     "ActivePools": 1})
        else:
            counter["ActivePools"] = active + 1
            counter_op = ("replace", counter)
        store.upsert(POOLS, _index_row(subscription, pool_id, partition))
        store.transact(POOLS, [counter_op, ("create", entry)])
        return entry

    entry = retry_on_conflict(register)
    now = clock.utcnow()
    pool, operations = _new_pool(partition, entry, now)
    store.transact(POOLS, operations)
    log.info("pool created account=%s pool=%s vms=%s plan=%s", account.account_id, pool_id, vm_count,
             service.billing_plan_id)
    if vm_count:
        moves.tick_later(partition, get_settings().vm_provisioning_seconds)
    location = f"{pool_service_url(base_url, account.account_id)}/pools/{pool_id}"
    return 201, pool_view(pool, [op[1] for op in operations[1:]], 0, now), {"Location": location}


def _listed_pool(partition: str, now) -> dict | None:
    vm_rows = pool_vms(partition)  # VMs before the pool: see pool_view
    pool, queued = concurrently(lambda: pool_row(partition), lambda: dispatch.waiting_count(partition))
    return pool_view(pool, vm_rows, queued, now) if pool and pool["State"] == ACTIVE else None


def list_pools(account: Account) -> dict:
    now = clock.utcnow()
    mine = [layout.pool_partition(account.subscription_id, row["PoolId"]) for row in registry(account.subscription_id)
            if row["State"] == ACTIVE and row["AccountId"] == account.account_id]
    views = concurrently(*[lambda p=p: _listed_pool(p, now) for p in mine]) if mine else []
    return {"Pools": [view for view in views if view]}


# How many of a pool's waiting jobs its detailed view names.
QUEUE_SHOWN = 100


def get_pool(account: Account, pool_id: str) -> dict:
    if not is_valid_id(pool_id):
        raise NotFound(f"no pool {pool_id} in this account", "PoolNotFound")
    partition = layout.pool_partition(account.subscription_id, pool_id)
    vm_rows = pool_vms(partition)
    pool = _owned_pool(account, pool_id)  # after the VMs: see pool_view
    now = clock.utcnow()
    queue = dispatch.waiting_jobs(partition)
    durations = predict.recent_run_seconds(vm_rows, now)
    estimate = predict.estimate(now, billing.listed(pool, vm_rows), len(queue), durations)
    drains = estimate.starts[-1] if queue and estimate.starts else None
    return {**pool_view(pool, vm_rows, len(queue), now, with_vms=True), "Queue": queue[:QUEUE_SHOWN],
            "QueueDrainsAt": clock.iso(drains),
            "QueueDrainsInSeconds": None if drains is None else max(0, round((drains - now).total_seconds())),
            "Estimate": estimate.basis()}


def _register_size(pool: dict) -> None:
    get_store().merge(POOLS, {"PartitionKey": pool["SubscriptionId"], "RowKey": layout.registry_key(pool["PoolId"]),
                              "VmCount": pool["VmCount"]})


def resize_pool(account: Account, pool_id: str, body: dict):
    only_fields(body, ("VmCount", "AutoScaleDownAfterMinutes"))
    target = int_field(body, "VmCount", 0, vms.MAX_VMS_PER_POOL)
    auto_minutes = _auto_scale_down_minutes(body)
    _check_vm_quota(account, target)
    store = get_store()
    provisioning = get_settings().vm_provisioning_seconds
    partition = layout.pool_partition(account.subscription_id, pool_id)

    def attempt():
        pool, vm_rows = concurrently(lambda: _owned_pool(account, pool_id), lambda: pool_vms(partition))
        now = clock.utcnow()
        plan = vms.plan_resize(vm_rows, target, now)
        pool["VmCount"] = target
        if auto_minutes is not None:
            pool["AutoScaleDownAfterMinutes"] = auto_minutes
        close_saving_episode(pool, now)
        operations = vm_operations(plan, pool, now, provisioning)
        store.transact(POOLS, [("replace", pool), *operations])
        created = [entity for kind, entity in operations if kind == "create"]
        return pool, vm_rows + created, plan, now

    pool, vm_rows, plan, now = retry_on_conflict(attempt)
    _register_size(pool)
    log.info("pool resized account=%s pool=%s target=%s added=%s removed=%s draining=%s kept=%s",
             account.account_id, pool_id, target, plan.create, len(plan.delete), len(plan.drain), len(plan.undrain))
    if plan.create:
        moves.tick_later(partition, provisioning)
    return 202, pool_view(pool, vm_rows, dispatch.waiting_count(partition), now)


def delete_pool(account: Account, pool_id: str):
    """Delete a pool: idle VMs go now, busy ones finish their job and then go, waiting jobs
    end Cancelled."""
    store = get_store()
    partition = layout.pool_partition(account.subscription_id, pool_id)

    def attempt():
        pool, vm_rows = concurrently(lambda: _owned_pool(account, pool_id), lambda: pool_vms(partition))
        now = clock.utcnow()
        plan = vms.plan_resize(vm_rows, 0, now)  # idle and provisioning VMs go now, busy ones drain
        close_saving_episode(pool, now)
        pool.update({"State": DELETED, "DeletedAt": now, "VmCount": 0})
        store.transact(POOLS, [("replace", pool), *vm_operations(plan, pool, now, 0)])
        return plan, pool, vm_rows, now

    plan, pool, vm_rows, now = retry_on_conflict(attempt)
    retry_on_conflict(lambda: _unregister(pool))
    cancelled = dispatch.cancel_waiting(partition, f"pool {pool_id} was deleted before the job could start")
    log.info("pool deleted account=%s pool=%s removed=%s draining=%s cancelled=%s", account.account_id, pool_id,
             len(plan.delete), len(plan.drain), cancelled)
    return 202, {"PoolId": pool_id, "State": DELETED, "DeletedAt": clock.iso(now), "DrainingVms": len(plan.drain),
                 "CancelledJobs": cancelled, "ComputeSeconds": billing.pool_seconds(pool, vm_rows, now)}


def _unregister(pool: dict) -> None:
    """The registry row Deleted and the account's counter one less, together (once)."""
    store = get_store()
    subscription = pool["SubscriptionId"]
    entry, counter = concurrently(lambda: store.get(POOLS, subscription, layout.registry_key(pool["PoolId"])),
                                  lambda: store.get(POOLS, subscription, layout.counter_key(pool["AccountId"])))
    if entry is not None and entry["State"] != DELETED:
        entry.update({"State": DELETED, "VmCount": 0})
        counter["ActivePools"] = max(0, counter["ActivePools"] - 1)
        store.transact(POOLS, [("replace", entry), ("replace", counter)])
    store.merge(POOLS, {"PartitionKey": pool["PartitionKey"], "RowKey": layout.POOL_ROW, "Unregistered": True})


def reconcile(index: dict, pool: dict | None, now: dt.datetime) -> str | None:
    """Finish a create or delete that stopped half way (the sweeper, for each indexed pool):
    a registered pool with no pool row is made as registered; a deleted pool still
    registered as active is unregistered; an index row with no registry row is dropped."""
    store = get_store()
    subscription, pool_id = index["SubscriptionId"], index["PoolId"]
    if pool is not None:
        if pool["State"] == DELETED and now - pool["DeletedAt"] > HALF_DONE and not pool.get("Unregistered"):
            retry_on_conflict(lambda: _unregister(pool))
        return None
    entry = store.get(POOLS, subscription, layout.registry_key(pool_id))
    if entry is None:
        written = index.metadata.get("timestamp") if isinstance(index, Row) else None
        if written and now - written > HALF_DONE:
            store.delete(POOLS, index)
            return "dropped"
        return None
    if now - entry["CreatedAt"] < HALF_DONE:
        return None
    try:
        store.transact(POOLS, _new_pool(index["RowKey"], entry, now)[1])
    except WriteConflict:
        return None
    log.warning("pool creation finished pool=%s subscription=%s", pool_id, subscription)
    return "created"


def retire_from_index(pool: dict) -> None:
    """A deleted pool, billed to the end and past retention, leaves the timers' index."""
    get_store().delete(POOLS, {"PartitionKey": layout.ACTIVE_PARTITION, "RowKey": pool["PartitionKey"]})


_classic_slots_ensured: set[int] = set()


def ensure_classic_pool(recheck: bool = False) -> None:
    """The shared classic environment: a pool of CLASSIC_MAX_CONCURRENT_JOBS slots, made on
    first use and resized when the setting changes. Its slots are never billed as a pool.
    Once a process has made sure of it, it only checks again when asked (the sweeper does)."""
    store = get_store()
    slots = get_settings().classic_max_concurrent_jobs
    if slots in _classic_slots_ensured and not recheck:
        return
    partition = layout.CLASSIC_PARTITION

    def attempt():
        now = clock.utcnow()
        pool = pool_row(partition)
        if pool is None:
            pool = {"PartitionKey": partition, "RowKey": layout.POOL_ROW, "PoolId": layout.CLASSIC_POOL,
                    "SubscriptionId": "", "AccountId": "", "VmCount": slots, "State": ACTIVE, "BillingPlanId": "",
                    "ServiceId": "", "CreatedAt": now, "NextVmOrdinal": 0, "BillingDone": True}
            operations = vm_operations(vms.ResizePlan(create=slots), pool, now, 0)
            store.transact(POOLS, [("create", pool), *operations])
            store.upsert(POOLS, _index_row("", layout.CLASSIC_POOL, partition))
            return True
        if pool["VmCount"] == slots:
            return False
        plan = vms.plan_resize(pool_vms(partition), slots, now)
        pool["VmCount"] = slots
        store.transact(POOLS, [("replace", pool), *vm_operations(plan, pool, now, 0)])
        return True

    if retry_on_conflict(attempt):
        log.info("classic environment sized slots=%s", slots)
    _classic_slots_ensured.add(slots)


# Auto scale-down: a pool idle for AutoScaleDownAfterMinutes is resized to zero by the
# billing tick (see `shared.ledger`), and the VM-seconds that saves are kept on the pool row.

def idle_since(vm_rows: list[dict], now: dt.datetime) -> dt.datetime | None:
    """When the pool last had work: None if a VM is busy or provisioning, or none is live."""
    live = [vm for vm in vm_rows if vms.is_live(vm)]
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


def auto_scale_down(pool: dict, vm_rows: list[dict], now: dt.datetime) -> list[tuple]:
    """The VM operations that resize an idle pool to zero, once it has idled for its
    AutoScaleDownAfterMinutes (the pool row takes the new size and when the saving began)."""
    minutes = pool.get("AutoScaleDownAfterMinutes")
    if not minutes or pool["State"] != ACTIVE or pool["VmCount"] == 0:
        return []
    since = idle_since(vm_rows, now)
    if since is None or now - since < dt.timedelta(minutes=minutes):
        return []
    plan = vms.plan_resize(vm_rows, 0, now)
    if plan.drain:
        return []
    pool.update({"VmCount": 0, "AutoScaledDownAt": billing.whole_second(now), "AutoScaledDownVms": len(plan.delete)})
    retired = []
    for vm in plan.delete:
        vm.update(vms.retirement(now))
        retired.append(("replace", vm))
    return retired
