"""What each job on a dedicated pool cost: pure rules over whole seconds.

A job's `ComputeSeconds` are its own VM time: from its start to its end, each kept to the
whole second as VM times are, split by hour. In each hour, the pool's billed VM-seconds that
no job used (idle VMs, VMs waiting for work) are shared among the jobs that ran in that hour,
in proportion to their run time in it (`AllocatedIdleSeconds`), by largest remainder so the
shares are whole seconds that add up exactly: in every hour in which a job ran, the jobs'
compute and allocated idle seconds add up to the pool's billed VM-seconds of that hour. An
hour in which no job ran keeps its idle seconds unallocated.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from shared.billing import HOUR, hour_of, whole_second

# The jobs' time in one hour: job id -> seconds.
HourRuns = dict[str, int]


def job_hours(start: dt.datetime, end: dt.datetime) -> dict[dt.datetime, int]:
    """A job's whole seconds from start to end, by hour (hours with no second left out)."""
    start, end = whole_second(start), whole_second(end)
    split, hour = {}, hour_of(start)
    while hour < end:
        seconds = int((min(end, hour + HOUR) - max(start, hour)).total_seconds())
        if seconds > 0:
            split[hour] = seconds
        hour += HOUR
    return split


def share(total: int, weights: dict[str, int]) -> dict[str, int]:
    """`total` split in proportion to `weights` into whole parts that add up to it exactly
    (largest remainder; ties go to the larger weight, then the smaller key)."""
    weight = sum(weights.values())
    if total <= 0 or weight <= 0:
        return {key: 0 for key in weights}
    parts = {key: total * w // weight for key, w in weights.items()}
    left = total - sum(parts.values())
    order = sorted(weights, key=lambda key: (-(total * weights[key] % weight), -weights[key], key))
    for key in order[:left]:
        parts[key] += 1
    return parts


@dataclass
class HourCost:
    billed: int  # the pool's VM-seconds of the hour
    compute: dict[str, int] = field(default_factory=dict)  # job -> its own seconds
    idle: dict[str, int] = field(default_factory=dict)  # job -> its share of the idle seconds
    unallocated: int = 0  # idle seconds of an hour in which no job ran


def allocate_hour(billed: int, runs: HourRuns) -> HourCost:
    used = sum(runs.values())
    idle = max(0, billed - used)
    if used == 0:
        return HourCost(billed, dict(runs), {job: 0 for job in runs}, idle)
    return HourCost(billed, dict(runs), share(idle, runs), 0)


def allocate(billed: dict[dt.datetime, int], runs: dict[dt.datetime, HourRuns]) -> dict[dt.datetime, HourCost]:
    """Every hour's allocation, for the hours billed or run in."""
    return {hour: allocate_hour(billed.get(hour, 0), runs.get(hour, {})) for hour in sorted(set(billed) | set(runs))}


def job_totals(hours: dict[dt.datetime, HourCost]) -> dict[str, tuple[int, int]]:
    """Job -> (ComputeSeconds, AllocatedIdleSeconds) over these hours."""
    totals: dict[str, tuple[int, int]] = {}
    for cost in hours.values():
        for job, seconds in cost.compute.items():
            compute, idle = totals.get(job, (0, 0))
            totals[job] = (compute + seconds, idle + cost.idle.get(job, 0))
    return totals
