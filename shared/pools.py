"""Pools: an account's dedicated VMs, billed per VM from provisioned to deleted.

A pool's rows live in its subscription's partition (see `shared.layout`); every change is
one etag-conditional entity-group transaction over them, so quotas hold and no VM is lost
when requests race.
"""
from __future__ import annotations

import logging
import uuid

from shared import billing, clock, dispatch, layout, predict, runs, services, usage, vms
from shared.accounts import Account, pool_service_url
from shared.errors import Conflict, InvalidRequest, NotFound, QuotaExceeded
from shared.settings import get_settings
from shared.storage import POOLS, concurrently, get_store, retry_on_conflict
from shared.validation import int_field, is_valid_id, only_fields, require_id

log = logging.getLogger(__name__)

ACTIVE, DELETED = "Active", "Deleted"
MAX_AUTO_SCALE_DOWN_MINUTES = 7 * 24 * 60


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


def pool_view(pool: dict, pool_vms: list[dict], queued: int, now, with_vms: bool = False) -> dict:
    """A pool as its owner sees it. `pool_vms` must have been read before `pool` (see
    `shared.billing` on folding) for every VM-second to count once."""
    pool_vms = billing.listed(pool, pool_vms)
    counts = vms.counts_by_state(pool_vms, now)
    seconds = billing.pool_seconds(pool, pool_vms, now)
    live = sum(1 for vm in pool_vms if vms.is_live(vm))
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
        "AutoScaleDownSavedVmSeconds": usage.saved_seconds(pool, now),
        "FoldedVms": pool.get("FoldedVms") or 0,
    }
    if with_vms:
        view["Vms"] = [_vm_view(vm, now) for vm in pool_vms]
    return view


def _check_vm_quota(account: Account, vm_count: int) -> None:
    if vm_count > account.max_vms_per_pool:
        raise QuotaExceeded(f"VmCount {vm_count} is over this account's MaxVmsPerPool of "
                            f"{account.max_vms_per_pool}; ask the operator to raise the quota")


def find_active_pool(partition: str, pool_id: str) -> dict | None:
    pool = get_store().get(POOLS, partition, layout.pool_key(pool_id)) if is_valid_id(pool_id) else None
    return pool if pool is not None and pool["State"] == ACTIVE else None


def _owned_pool(account: Account, pool_id: str) -> dict:
    pool = find_active_pool(account.subscription_id, pool_id)
    if pool is None or pool["AccountId"] != account.account_id:
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
    partition = account.subscription_id
    provisioning = get_settings().vm_provisioning_seconds

    def attempt():
        now = clock.utcnow()
        if store.get(POOLS, partition, layout.pool_key(pool_id)) is not None:
            raise Conflict(f"a pool named {pool_id} exists or existed in this subscription; choose another "
                           "PoolId", "PoolExists")
        counter = store.get(POOLS, partition, layout.counter_key(account.account_id))
        active = counter["ActivePools"] if counter else 0
        if active >= account.max_pools:
            raise QuotaExceeded(f"this account already has {active} pool(s), its MaxPools quota; delete one "
                                "or ask the operator to raise the quota")
        pool = {"PartitionKey": partition, "RowKey": layout.pool_key(pool_id), "PoolId": pool_id,
                "AccountId": account.account_id, "VmCount": vm_count, "State": ACTIVE,
                "BillingPlanId": service.billing_plan_id, "ServiceId": service.service_id, "CreatedAt": now,
                "NextVmOrdinal": 0, "BilledThrough": now, "BillingDone": False,
                "AutoScaleDownAfterMinutes": auto_minutes}
        if counter is None:
            counter_op = ("create", {"PartitionKey": partition, "RowKey": layout.counter_key(account.account_id),
                                     "ActivePools": 1})
        else:
            counter["ActivePools"] = active + 1
            counter_op = ("replace", counter)
        vm_ops = vm_operations(vms.ResizePlan(create=vm_count), pool, now, provisioning)
        store.transact(POOLS, [counter_op, ("create", pool), *vm_ops])
        return pool, [op[1] for op in vm_ops], now

    pool, pool_vms, now = retry_on_conflict(attempt)
    log.info("pool created account=%s pool=%s vms=%s plan=%s", account.account_id, pool_id, vm_count,
             service.billing_plan_id)
    if vm_count:
        dispatch.tick_later(partition, pool_id, provisioning)
    location = f"{pool_service_url(base_url, account.account_id)}/pools/{pool_id}"
    return 201, pool_view(pool, pool_vms, 0, now), {"Location": location}


def list_pools(account: Account) -> dict:
    store = get_store()
    now = clock.utcnow()
    partition = account.subscription_id
    by_pool: dict[str, list[dict]] = {}
    for vm in store.rows(POOLS, partition, layout.VM_PREFIX):  # VMs before pools: see pool_view
        by_pool.setdefault(vm["PoolId"], []).append(vm)
    pools = [p for p in store.rows(POOLS, partition, layout.POOL_PREFIX)
             if p["State"] == ACTIVE and p["AccountId"] == account.account_id]
    return {"Pools": [pool_view(p, by_pool.get(p["PoolId"], []), dispatch.waiting_count(partition, p["PoolId"]),
                                now) for p in pools]}


# How many of a pool's waiting jobs its detailed view names.
QUEUE_SHOWN = 100


def get_pool(account: Account, pool_id: str) -> dict:
    pool_vms = get_store().rows(POOLS, account.subscription_id, layout.vm_prefix(pool_id))
    pool = _owned_pool(account, pool_id)  # after the VMs: see pool_view
    now = clock.utcnow()
    queue, durations = concurrently(lambda: dispatch.waiting_jobs(account.subscription_id, pool_id),
                                    lambda: runs.recent_run_seconds(account.subscription_id, pool_id))
    estimate = predict.estimate(now, billing.listed(pool, pool_vms), len(queue), durations)
    drains = estimate.starts[-1] if queue and estimate.starts else None
    return {**pool_view(pool, pool_vms, len(queue), now, with_vms=True), "Queue": queue[:QUEUE_SHOWN],
            "QueueDrainsAt": clock.iso(drains),
            "QueueDrainsInSeconds": None if drains is None else max(0, round((drains - now).total_seconds())),
            "Estimate": estimate.basis()}


def resize_pool(account: Account, pool_id: str, body: dict):
    only_fields(body, ("VmCount", "AutoScaleDownAfterMinutes"))
    target = int_field(body, "VmCount", 0, vms.MAX_VMS_PER_POOL)
    auto_minutes = _auto_scale_down_minutes(body)
    _check_vm_quota(account, target)
    store = get_store()
    provisioning = get_settings().vm_provisioning_seconds

    def attempt():
        pool = _owned_pool(account, pool_id)
        pool_vms = store.rows(POOLS, account.subscription_id, layout.vm_prefix(pool_id))
        now = clock.utcnow()
        plan = vms.plan_resize(pool_vms, target, now)
        pool["VmCount"] = target
        if auto_minutes is not None:
            pool["AutoScaleDownAfterMinutes"] = auto_minutes
        usage.close_saving_episode(pool, now)
        operations = vm_operations(plan, pool, now, provisioning)
        store.transact(POOLS, [("replace", pool), *operations])
        created = [entity for kind, entity in operations if kind == "create"]
        return pool, pool_vms + created, plan, now

    pool, pool_vms, plan, now = retry_on_conflict(attempt)
    log.info("pool resized account=%s pool=%s target=%s added=%s removed=%s draining=%s kept=%s",
             account.account_id, pool_id, target, plan.create, len(plan.delete), len(plan.drain), len(plan.undrain))
    if plan.create:
        dispatch.tick_later(account.subscription_id, pool_id, provisioning)
    return 202, pool_view(pool, pool_vms, dispatch.waiting_count(account.subscription_id, pool_id), now)


def delete_pool(account: Account, pool_id: str):
    """Delete a pool: idle VMs go now, busy ones finish their job and then go, waiting jobs
    end Cancelled."""
    store = get_store()
    partition = account.subscription_id

    def attempt():
        pool = _owned_pool(account, pool_id)
        counter = store.get(POOLS, partition, layout.counter_key(account.account_id))
        pool_vms = store.rows(POOLS, partition, layout.vm_prefix(pool_id))
        now = clock.utcnow()
        plan = vms.plan_delete(pool_vms, now)
        usage.close_saving_episode(pool, now)
        pool.update({"State": DELETED, "DeletedAt": now, "VmCount": 0})
        counter["ActivePools"] = max(0, counter["ActivePools"] - 1)
        operations = vm_operations(plan, pool, now, 0)
        store.transact(POOLS, [("replace", counter), ("replace", pool), *operations])
        return plan, pool, pool_vms, now

    plan, pool, pool_vms, now = retry_on_conflict(attempt)
    cancelled = dispatch.cancel_waiting(partition, pool_id, f"pool {pool_id} was deleted before the job could start")
    log.info("pool deleted account=%s pool=%s removed=%s draining=%s cancelled=%s", account.account_id, pool_id,
             len(plan.delete), len(plan.drain), cancelled)
    return 202, {"PoolId": pool_id, "State": DELETED, "DeletedAt": clock.iso(now), "DrainingVms": len(plan.drain),
                 "CancelledJobs": cancelled, "ComputeSeconds": billing.pool_seconds(pool, pool_vms, now)}
