"""Folding billed-out VMs into their pool row: pure rules over in-memory rows, with an
injected clock. The ledger must come out the same, to the second, as if no row were folded."""
import datetime as dt
import random

from shared import billing, layout, ledger, pools, vms

T0 = dt.datetime(2026, 3, 1, 9, 0, 0, 250000, tzinfo=dt.timezone.utc)
PROVISIONING = 30


class Partition:
    """A subscription's rows, changed only through the operations the app would commit."""

    def __init__(self, auto_scale_minutes: int = 0):
        self.pool = {"PartitionKey": "sub", "RowKey": layout.POOL_ROW, "PoolId": "p", "AccountId": "a", "State": "Active",
                     "BillingPlanId": "plan", "ServiceId": "s", "CreatedAt": T0, "BilledThrough": T0,
                     "BillingDone": False, "NextVmOrdinal": 0, "VmCount": 0,
                     "AutoScaleDownAfterMinutes": auto_scale_minutes}
        self.vms: dict[str, dict] = {}
        self.ledger: dict[dt.datetime, int] = {}
        self.every_vm: list[dict] = []  # the oracle: every VM ever made, never folded

    def resize(self, target: int, now: dt.datetime) -> None:
        plan = vms.plan_resize(list(self.vms.values()), target, now)
        self.pool["VmCount"] = target
        self.apply(pools.vm_operations(plan, self.pool, now, PROVISIONING))

    def accrue(self, now: dt.datetime) -> None:
        self.apply(ledger.accrual_operations(self.pool, list(self.vms.values()), now))

    def apply(self, operations) -> None:
        assert len(operations) <= ledger.MAX_OPERATIONS
        for kind, row in operations:
            if row["RowKey"].startswith(layout.LEDGER_PREFIX):
                self.ledger[row["Hour"]] = row["VmSeconds"]
            elif row["RowKey"].startswith("vm|"):
                if kind == "delete":
                    del self.vms[row["RowKey"]]
                else:
                    if row["RowKey"] not in self.vms:
                        self.every_vm.append(row)
                    self.vms[row["RowKey"]] = row


def oracle_ledger(every_vm, end):
    hours = billing.hours_touched(T0, end)
    return {h: s for h, s in billing.hourly_seconds(every_vm, hours, end).items() if s}


def test_a_thousand_resizes_bill_to_the_second_as_without_folding_and_leave_few_rows():
    chance = random.Random(11)
    partition = Partition()
    now = T0
    most_rows = 0
    for step in range(1000):
        now += dt.timedelta(seconds=chance.randint(20, 900), microseconds=chance.randint(0, 999999))
        partition.resize(chance.randint(0, 6), now)
        if step % 3 == 0:  # ticks come now and then, sometimes late
            partition.accrue(now + dt.timedelta(seconds=chance.randint(0, 120)))
        most_rows = max(most_rows, len(partition.vms))
    end = now + dt.timedelta(hours=3)
    partition.accrue(end)
    assert partition.ledger == oracle_ledger(partition.every_vm, billing.whole_second(end))
    total = sum(vms.billed_seconds(vm, billing.whole_second(end)) for vm in partition.every_vm)
    assert billing.pool_seconds(partition.pool, list(partition.vms.values()), billing.whole_second(end)) == total
    assert sum(partition.ledger.values()) == total
    assert partition.pool["FoldedVms"] + len(partition.vms) == len(partition.every_vm) > 1000
    # Rows left: the live VMs and those deleted in the last hour or so, however long the history.
    assert most_rows < 60 and len(partition.vms) <= 6


def test_a_reader_that_read_the_vms_before_a_fold_counts_each_vm_once():
    partition = Partition()
    partition.resize(4, T0)
    partition.resize(1, T0 + dt.timedelta(minutes=10))
    partition.accrue(T0 + dt.timedelta(minutes=20))
    before = list(partition.vms.values())            # read before the fold ...
    later = T0 + dt.timedelta(hours=2)
    partition.accrue(later)                          # ... which folds the three deleted VMs
    assert partition.pool["FoldedVms"] == 3 and len(partition.vms) == 1
    after = list(partition.vms.values())
    now = billing.whole_second(later)
    seen_late = billing.pool_seconds(partition.pool, before, now)
    assert seen_late == billing.pool_seconds(partition.pool, after, now)
    assert seen_late == sum(vms.billed_seconds(vm, now) for vm in partition.every_vm)
    assert billing.listed(partition.pool, before) == after


def test_recent_deletions_stay_listed_and_a_deleted_pool_is_done_once_all_are_folded():
    partition = Partition()
    partition.resize(2, T0)
    partition.resize(0, T0 + dt.timedelta(minutes=50))
    partition.accrue(T0 + dt.timedelta(hours=1, minutes=5))   # deleted 15 minutes ago: kept
    assert len(partition.vms) == 2 and not partition.pool.get("FoldedVms")
    partition.pool["State"] = "Deleted"
    partition.accrue(T0 + dt.timedelta(hours=1, minutes=10))
    assert not partition.pool["BillingDone"]
    partition.accrue(T0 + dt.timedelta(hours=2, minutes=20))
    assert partition.vms == {} and partition.pool["BillingDone"]
    assert partition.pool["FoldedVmSeconds"] == sum(vms.billed_seconds(vm, T0) for vm in partition.every_vm)
    assert partition.pool["FoldedVmSeconds"] == 2 * (50 * 60 - PROVISIONING - 1)  # provisioned on a whole second
