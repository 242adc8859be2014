"""The life of a pool's VMs, as pure functions over plain rows (dicts).

A VM row holds `State`, `ProvisionedAt` (when provisioning finishes: billing starts) and
`DeletedAt` (billing stops). A VM still marked Provisioning whose ProvisionedAt has passed
is Idle: the flip is read from the clock, and written down by whoever next updates the row.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from shared import layout

PROVISIONING, IDLE, BUSY, DRAINING, DELETED = "Provisioning", "Idle", "Busy", "Draining", "Deleted"
STATES = (PROVISIONING, IDLE, BUSY, DRAINING, DELETED)

# A resize or delete changes the pool row and every affected VM row in one entity-group
# transaction, which Table Storage caps at 100 operations: 96 VMs leaves room for the rest.
MAX_VMS_PER_POOL = 96


def state_of(vm: dict, now: dt.datetime) -> str:
    if vm["State"] == PROVISIONING and vm["ProvisionedAt"] <= now:
        return IDLE
    return vm["State"]


def is_live(vm: dict) -> bool:
    """Counts toward the pool's size: not deleted and not on its way out."""
    return vm["State"] not in (DELETED, DRAINING)


def counts_by_state(vms: list[dict], now: dt.datetime) -> dict[str, int]:
    counts = {state: 0 for state in STATES if state != DELETED}
    for vm in vms:
        state = state_of(vm, now)
        if state != DELETED:
            counts[state] += 1
    return counts


def billed_seconds(vm: dict, now: dt.datetime) -> int:
    """Whole seconds from provisioned to deleted (or now); nothing before provisioning ends."""
    end = vm.get("DeletedAt") or now
    return max(0, int((end - vm["ProvisionedAt"]).total_seconds()))


@dataclass
class ResizePlan:
    create: int = 0
    delete: list[dict] = field(default_factory=list)    # idle or still provisioning: go at once
    drain: list[dict] = field(default_factory=list)     # busy: go when their job ends
    undrain: list[dict] = field(default_factory=list)   # draining: kept after all

    @property
    def changes(self) -> int:
        return self.create + len(self.delete) + len(self.drain) + len(self.undrain)


def plan_resize(vms: list[dict], target: int, now: dt.datetime) -> ResizePlan:
    """Which VMs to add, remove or keep so the pool has `target` live VMs.

    Growing first keeps draining VMs (no new provisioning, no new bill start), then adds new
    ones. Shrinking removes VMs not yet provisioned (newest first: they have cost nothing),
    then idle ones, and only then marks busy ones to drain when their job ends.
    """
    plan = ResizePlan()
    live = [vm for vm in vms if is_live(vm)]
    if target >= len(live):
        missing = target - len(live)
        draining = sorted((vm for vm in vms if vm["State"] == DRAINING), key=lambda vm: vm["RowKey"])
        plan.undrain = draining[:missing]
        plan.create = missing - len(plan.undrain)
        return plan
    excess = len(live) - target
    provisioning = sorted((vm for vm in live if state_of(vm, now) == PROVISIONING),
                          key=lambda vm: (vm["ProvisionedAt"], vm["RowKey"]), reverse=True)
    idle = sorted((vm for vm in live if state_of(vm, now) == IDLE), key=lambda vm: vm["RowKey"], reverse=True)
    busy = sorted((vm for vm in live if state_of(vm, now) == BUSY), key=lambda vm: vm["RowKey"], reverse=True)
    removable = provisioning + idle
    plan.delete = removable[:excess]
    plan.drain = busy[:excess - len(plan.delete)]
    return plan


def new_vm(partition: str, pool_id: str, ordinal: int, now: dt.datetime, provisioning_seconds: int) -> dict:
    # Billing timestamps are whole seconds, so VM-seconds split across hours add up exactly.
    # Provisioning ends on the next whole second, never before its full duration has passed;
    # deletion is taken on the second it happened: rounding never adds to the bill.
    ready = now + dt.timedelta(seconds=provisioning_seconds)
    if ready.microsecond:
        ready = ready.replace(microsecond=0) + dt.timedelta(seconds=1)
    return {"PartitionKey": partition, "RowKey": layout.vm_key(ordinal), "PoolId": pool_id,
            "VmId": f"vm-{ordinal:06d}", "State": PROVISIONING, "CreatedAt": now, "ProvisionedAt": ready,
            "JobId": ""}


def retirement(now: dt.datetime) -> dict:
    """The fields a VM row takes when it is deleted: its bill stops now."""
    return {"State": DELETED, "DeletedAt": now.replace(microsecond=0), "JobId": ""}


def was_provisioned(vm: dict) -> bool:
    """False for a VM deleted before its provisioning finished (it was never billed)."""
    deleted = vm.get("DeletedAt")
    return deleted is None or vm["ProvisionedAt"] <= deleted


# Why a started job still waits, as its status tells it.
WAITING_FOR_IDLE_VM, VMS_PROVISIONING, POOL_AT_ZERO_VMS, CLASSIC_SLOTS_FULL = (
    "WaitingForIdleVm", "VmsProvisioning", "PoolAtZeroVms", "ClassicSlotsFull")


def pending_reason(pool_vms: list[dict], now: dt.datetime, classic: bool = False) -> str:
    """Why a job of this pool waits: the shared classic slots are all taken, the pool has no
    VM left to run it, its only free capacity is still provisioning, or every VM is busy."""
    if classic:
        return CLASSIC_SLOTS_FULL
    states = [state_of(vm, now) for vm in pool_vms if is_live(vm)]
    if not states:
        return POOL_AT_ZERO_VMS
    if PROVISIONING in states and IDLE not in states:
        return VMS_PROVISIONING
    return WAITING_FOR_IDLE_VM
