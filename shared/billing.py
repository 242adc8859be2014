"""What pools cost: whole VM-seconds from provisioned to deleted, by hour.

Every VM timestamp is kept to the whole second, so a VM's seconds split exactly across hour
buckets and add up again: the amount is always integer VM-seconds, never a float sum. An
hour's amount for a pool is a pure function of its VM rows, which never change once set; the
ledger row of that hour is therefore recomputed and written whole, never incremented, so a
doubled or missed timer tick cannot change the bill.
"""
from __future__ import annotations

import datetime as dt

HOUR = dt.timedelta(hours=1)


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
    hours, hour = [], hour_of(since)
    while hour <= until and (hour < until or not hours):
        hours.append(hour)
        hour += HOUR
    return hours


def hourly_seconds(vms: list[dict], hours: list[dt.datetime], until: dt.datetime) -> dict[dt.datetime, int]:
    """Each hour's whole VM-seconds, counted up to `until`."""
    return {hour: seconds_between(vms, hour, hour + HOUR, until) for hour in hours}


def to_hours(seconds: int) -> float:
    return round(seconds / 3600, 6)
