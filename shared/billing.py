"""What pools cost: whole VM-seconds from provisioned to deleted, by hour.

Every VM timestamp is kept to the whole second, so a VM's seconds split exactly across hour
buckets and add up again: the amount is always integer VM-seconds, never a float sum. An
hour's amount for a pool is a pure function of its VM rows, which never change once set; the
ledger row of that hour is therefore recomputed and written whole, never incremented, so a
doubled or missed timer tick cannot change the bill.

A deleted VM whose last hour is closed and billed can no longer change any ledger row, so the
accrual folds it into the pool row (`FoldedVmSeconds`, `FoldedVms`) and deletes its row: a
pool's reads and ticks cost the same after a thousand resizes as after one. Folding goes in
(DeletedAt, RowKey) order and the pool row keeps the last key folded (`FoldedThrough`), so a
reader that reads the VM rows before the pool row counts every VM exactly once.
"""
from __future__ import annotations

import datetime as dt

from shared import vms

HOUR = dt.timedelta(hours=1)
# A deleted VM stays listed with its pool for at least this long (and until its hour is billed).
FOLD_DELAY = dt.timedelta(minutes=15)


def whole_second(moment: dt.datetime) -> dt.datetime:
    return moment.replace(microsecond=0)


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def interval(vm: dict, until: dt.datetime) -> tuple[dt.datetime, dt.datetime] | None:
    """The billed interval of a VM as seen at `until`: provisioned to deleted (or `until`)."""
    start = vm["ProvisionedAt"]
    end = min(vm.get("DeletedAt") or until, until)
    return (start, end) if end > start else None


def seconds_between(vms: list[dict], start: dt.datetime, end: dt.datetime, until: dt.datetime) -> int:
    """VM-seconds of these VMs inside [start, end), as seen at `until`."""
    total = 0
    for vm in vms:
        billed = interval(vm, until)
        if billed:
            overlap = (min(billed[1], end) - max(billed[0], start)).total_seconds()
            total += max(0, int(overlap))
    return total


def hours_touched(since: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """The hour buckets an accrual from `since` to `until` must (re)write."""
    hours: list[dt.datetime] = []
    hour = hour_of(since)
    while hour <= until and (hour < until or not hours):
        hours.append(hour)
        hour += HOUR
    return hours


def hourly_seconds(vms: list[dict], hours: list[dt.datetime], until: dt.datetime) -> dict[dt.datetime, int]:
    """Each hour's whole VM-seconds, counted up to `until`."""
    return {hour: seconds_between(vms, hour, hour + HOUR, until) for hour in hours}


def to_hours(seconds: int) -> float:
    return round(seconds / 3600, 6)


def fold_key(vm: dict) -> str:
    return f"{vm['DeletedAt']:%Y%m%d%H%M%S}|{vm['RowKey']}"


def is_folded(vm: dict, pool: dict) -> bool:
    """Whether this VM's seconds are already in the pool row's folded total."""
    through = pool.get("FoldedThrough")
    return through is not None and vm["State"] == vms.DELETED and fold_key(vm) <= through


def foldable(pool: dict, pool_vms: list[dict], until: dt.datetime, room: int) -> list[dict]:
    """The deleted VMs (at most `room`, oldest first) that no ledger write from `until` on can
    touch: deleted before the start of the hour the next accrual begins at, and a while ago."""
    limit = hour_of(until - FOLD_DELAY)
    done = [vm for vm in pool_vms if vm["State"] == vms.DELETED and vm["DeletedAt"] <= limit
            and not is_folded(vm, pool)]
    return sorted(done, key=fold_key)[:max(0, room)]


def fold(pool: dict, folded: list[dict]) -> None:
    """Add these deleted VMs to the pool row's folded total (their rows are deleted with it)."""
    if not folded:
        return
    pool["FoldedVmSeconds"] = (pool.get("FoldedVmSeconds") or 0) + sum(vms.billed_seconds(vm, vm["DeletedAt"])
                                                                        for vm in folded)
    pool["FoldedVms"] = (pool.get("FoldedVms") or 0) + len(folded)
    pool["FoldedThrough"] = fold_key(folded[-1])


def listed(pool: dict, pool_vms: list[dict]) -> list[dict]:
    """The VM rows not yet folded into the pool row."""
    return [vm for vm in pool_vms if not is_folded(vm, pool)]


def pool_seconds(pool: dict, pool_vms: list[dict], now: dt.datetime) -> int:
    """Every VM-second of the pool up to `now`: folded VMs and the rows still listed."""
    return (pool.get("FoldedVmSeconds") or 0) + sum(vms.billed_seconds(vm, now) for vm in listed(pool, pool_vms))
