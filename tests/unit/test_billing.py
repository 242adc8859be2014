"""The billing rules, with an injected clock: whole VM-seconds from provisioned to deleted."""
import datetime as dt

import pytest

from shared import billing, pools, reports, vms
from shared.errors import InvalidRequest

T0 = dt.datetime(2026, 3, 1, 9, 0, 0, tzinfo=dt.timezone.utc)


def at(**kw) -> dt.datetime:
    return T0 + dt.timedelta(**kw)


def vm(provisioned, deleted=None, state=vms.IDLE):
    row = {"State": vms.DELETED if deleted else state, "ProvisionedAt": provisioned, "RowKey": "vm"}
    if deleted:
        row["DeletedAt"] = deleted
    return row


def ledger_total(pool_vms, since, until):
    hours = billing.hours_touched(since, until)
    return sum(billing.hourly_seconds(pool_vms, hours, until).values())


def test_seed_two_vms_for_a_day_is_48_compute_hours():
    pool = [vm(T0, at(hours=24)), vm(T0, at(hours=24))]
    assert ledger_total(pool, T0, at(hours=30)) == 48 * 3600


def test_seed_four_vms_for_half_a_day_is_also_48_compute_hours():
    pool = [vm(T0, at(hours=12)) for _ in range(4)]
    assert ledger_total(pool, T0, at(hours=30)) == 48 * 3600
    assert billing.to_hours(ledger_total(pool, T0, at(hours=30))) == 48.0


def test_billing_starts_when_provisioning_ends():
    pool = [vm(at(minutes=7), at(minutes=67))]  # created at T0, 7 minutes to provision
    assert ledger_total(pool, T0, at(hours=3)) == 3600


def test_resize_up_and_down_mid_hour():
    pool = [vm(T0), vm(at(minutes=20, seconds=30), at(minutes=50, seconds=15)), vm(at(minutes=40))]
    amounts = billing.hourly_seconds(pool, billing.hours_touched(T0, at(hours=1, minutes=30)), at(hours=1, minutes=30))
    assert amounts[T0] == 3600 + (29 * 60 + 45) + 20 * 60
    assert amounts[at(hours=1)] == 2 * 30 * 60


def test_draining_vm_is_billed_until_it_is_actually_deleted():
    draining = vm(T0, state=vms.DRAINING)
    assert ledger_total([draining], T0, at(minutes=30)) == 1800
    draining.update(vms.retirement(at(minutes=45)))
    assert ledger_total([draining], T0, at(hours=2)) == 2700


def test_pool_deleted_in_its_first_minute():
    provisioning = vm(at(seconds=10))
    provisioning.update(vms.retirement(at(seconds=40)))
    assert ledger_total([provisioning], T0, at(hours=1)) == 30
    never = vm(at(minutes=2))
    never.update(vms.retirement(at(seconds=40)))
    assert ledger_total([never], T0, at(hours=1)) == 0


def test_missed_ticks_and_lost_watermarks_change_nothing():
    """Ticks rewrite whole hours, so a tick that starts from an older watermark writes the
    same figures. (Ticks run side by side against real storage: test_billing.py end to end.)"""
    pool = [vm(at(minutes=3)), vm(at(minutes=10), at(hours=2, minutes=5)), vm(at(hours=1, minutes=59))]
    end = at(hours=3, minutes=17)
    once = billing.hourly_seconds(pool, billing.hours_touched(T0, end), end)
    ledger, since = {}, T0
    for minute in range(1, 3 * 60 + 18, 3):  # a tick every third minute ...
        now = min(at(minutes=minute), end)
        ledger.update(billing.hourly_seconds(pool, billing.hours_touched(since, now), now))
        since = now if minute % 7 else since  # ... and some watermarks lost: recomputed from older ones
    ledger.update(billing.hourly_seconds(pool, billing.hours_touched(since, end), end))
    assert ledger == once
    assert sum(ledger.values()) == sum(vms.billed_seconds(v, end) for v in pool)


def test_amounts_are_whole_seconds():
    pool = [vm(T0.replace(microsecond=0))]
    total = ledger_total(pool, T0, at(seconds=90))
    assert isinstance(total, int) and total == 90


def test_hours_touched():
    assert billing.hours_touched(at(minutes=59), at(hours=2, minutes=1)) == [T0, at(hours=1), at(hours=2)]
    assert billing.hours_touched(at(minutes=5), at(minutes=6)) == [T0]


def test_idle_since_and_savings():
    busy = vm(T0, state=vms.BUSY)
    assert pools.idle_since([busy, vm(T0)], at(hours=1)) is None
    idle = [dict(vm(T0), IdleSince=at(minutes=30)), vm(at(minutes=10))]
    assert pools.idle_since(idle, at(hours=1)) == at(minutes=30)
    assert pools.idle_since([], at(hours=1)) is None
    pool = {"AutoScaledDownAt": at(hours=1), "AutoScaledDownVms": 3, "AutoSavedSeconds": 100}
    assert pools.saved_seconds(pool, at(hours=2)) == 100 + 3 * 3600
    pools.close_saving_episode(pool, at(hours=2))
    assert pools.saved_seconds(pool, at(hours=5)) == 100 + 3 * 3600


@pytest.mark.parametrize("params", [
    {"from": "yesterday"}, {"to": "2026-13-01T00:00:00Z"}, {"from": "2026-03-02T00:00:00Z", "to": "2026-03-01T00:00:00Z"},
    {"from": "2020-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
])
def test_bad_report_ranges(params):
    with pytest.raises(InvalidRequest):
        reports.parse_range(params)


def test_report_range_rounds_down_to_hours():
    start, end = reports.parse_range({"from": "2026-03-01T09:42:00Z", "to": "2026-03-01T12:00:00+00:00"})
    assert start == T0 and end == at(hours=3)
