"""The pure rules of a pool's VMs: states, resize plans, billed seconds."""
import datetime as dt

from shared import layout, vms

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def vm(ordinal, state=vms.IDLE, provisioned=T0, deleted=None):
    row = {"RowKey": layout.vm_key(ordinal), "VmId": f"vm-{ordinal}", "State": state,
           "ProvisionedAt": provisioned, "CreatedAt": provisioned}
    if deleted:
        row["DeletedAt"] = deleted
    return row


def later(**kw):
    return T0 + dt.timedelta(**kw)


def test_provisioning_vm_turns_idle_when_its_time_comes():
    row = vm(0, vms.PROVISIONING, provisioned=later(seconds=10))
    assert vms.state_of(row, later(seconds=9)) == vms.PROVISIONING
    assert vms.state_of(row, later(seconds=10)) == vms.IDLE


def test_seed_examples_two_vms_for_a_day_and_four_for_half_a_day():
    day = later(hours=24)
    two = [vm(0, deleted=day), vm(1, deleted=day)]
    assert sum(vms.billed_seconds(v, later(days=3)) for v in two) == 48 * 3600
    half_day = later(hours=12)
    four = [vm(i, deleted=half_day) for i in range(4)]
    assert sum(vms.billed_seconds(v, later(days=3)) for v in four) == 48 * 3600


def test_billing_starts_when_provisioning_ends_and_stops_at_deletion():
    row = vm(0, vms.PROVISIONING, provisioned=later(minutes=5))
    assert vms.billed_seconds(row, later(minutes=4)) == 0
    assert vms.billed_seconds(row, later(minutes=65)) == 3600
    row.update(vms.retirement(later(minutes=35)))
    assert vms.billed_seconds(row, later(days=1)) == 1800
    never = vm(1, vms.PROVISIONING, provisioned=later(minutes=5))
    never.update(vms.retirement(later(minutes=1)))
    assert vms.billed_seconds(never, later(days=1)) == 0 and not vms.was_provisioned(never)


def test_grow_adds_new_vms():
    plan = vms.plan_resize([vm(0)], 3, T0)
    assert (plan.create, plan.delete, plan.drain, plan.undrain) == (2, [], [], [])


def test_grow_keeps_draining_vms_before_adding_new_ones():
    draining = vm(1, vms.DRAINING)
    plan = vms.plan_resize([vm(0), draining], 3, T0)
    assert plan.undrain == [draining] and plan.create == 1


def test_shrink_removes_unprovisioned_then_idle_then_drains_busy():
    provisioning = vm(3, vms.PROVISIONING, provisioned=later(minutes=1))
    idle = vm(2)
    busy_old, busy_new = vm(0, vms.BUSY), vm(1, vms.BUSY)
    rows = [busy_old, busy_new, idle, provisioning]
    assert vms.plan_resize(rows, 3, T0).delete == [provisioning]
    assert vms.plan_resize(rows, 2, T0).delete == [provisioning, idle]
    plan = vms.plan_resize(rows, 1, T0)
    assert plan.delete == [provisioning, idle] and plan.drain == [busy_new]
    everything = vms.plan_resize(rows, 0, T0)
    assert len(everything.delete) == 2 and len(everything.drain) == 2 and everything.create == 0


def test_deleted_and_draining_vms_do_not_count_toward_the_size():
    rows = [vm(0), vm(1, vms.DELETED, deleted=later(minutes=1)), vm(2, vms.DRAINING)]
    assert vms.plan_resize(rows, 1, later(minutes=2)).changes == 0
    counts = vms.counts_by_state(rows, later(minutes=2))
    assert counts == {"Provisioning": 0, "Idle": 1, "Busy": 0, "Draining": 1}


def test_resize_to_same_size_changes_nothing():
    rows = [vm(0), vm(1, vms.BUSY)]
    assert vms.plan_resize(rows, 2, T0).changes == 0


def test_provisioning_ends_on_a_whole_second_never_early():
    created = T0 + dt.timedelta(milliseconds=900)
    row = vms.new_vm("sub", "p", 0, created, 2)
    assert row["ProvisionedAt"] == T0 + dt.timedelta(seconds=3)
    assert row["ProvisionedAt"] - created >= dt.timedelta(seconds=2)
    assert vms.new_vm("sub", "p", 1, T0, 2)["ProvisionedAt"] == T0 + dt.timedelta(seconds=2)


def test_why_a_job_waits():
    now = T0 + dt.timedelta(hours=1)
    provisioning = {"State": vms.PROVISIONING, "ProvisionedAt": now + dt.timedelta(seconds=30)}
    ready = {"State": vms.PROVISIONING, "ProvisionedAt": now - dt.timedelta(seconds=1)}
    busy = {"State": vms.BUSY, "ProvisionedAt": T0}
    draining = {"State": vms.DRAINING, "ProvisionedAt": T0}
    assert vms.pending_reason([], now) == vms.POOL_AT_ZERO_VMS
    assert vms.pending_reason([draining], now) == vms.POOL_AT_ZERO_VMS
    assert vms.pending_reason([busy, provisioning], now) == vms.VMS_PROVISIONING
    assert vms.pending_reason([provisioning, ready], now) == vms.WAITING_FOR_IDLE_VM  # one is idle: next tick
    assert vms.pending_reason([busy, draining], now) == vms.WAITING_FOR_IDLE_VM
    assert vms.pending_reason([], now, classic=True) == vms.CLASSIC_SLOTS_FULL


def test_vms_made_together_go_newest_first():
    made = [vm(i, vms.PROVISIONING, provisioned=later(seconds=30)) for i in range(3)]
    plan = vms.plan_resize(made, 1, T0)
    assert [v["VmId"] for v in plan.delete] == ["vm-2", "vm-1"]
