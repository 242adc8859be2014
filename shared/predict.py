"""When will a waiting job start? Pure rules over the pool's VMs and its recent jobs.

The pool's recent run times (jobs that ended on it lately) give a typical run time: their
mean once far-out values are set aside (beyond Tukey's outer fence, three interquartile
ranges above the upper quartile), so one runaway job does not move it while the usual skew
of run times (many short jobs, some long ones) still counts: a queue's wait is a sum of run
times, and a sum follows the mean, not the median. Each VM is free from a moment: an idle VM
now, a provisioning VM when it is ready, a busy VM when its job is expected to end (the same
typical total of the recent jobs that ran longer than it has so far, minus what it has run).
The waiting jobs then take the VMs in their queue order, each as soon as one is free, each
expected to last the typical run time. Draining VMs take no new job.

With no recent job there is no run time to go by: the estimate says so instead of guessing.
"""
from __future__ import annotations

import datetime as dt
import heapq
import json
import statistics
from dataclasses import dataclass

from shared import vms

# How many recent jobs are enough to go by.
MIN_HISTORY = 1
# A busy VM whose job already ran longer than every recent job is taken to end this soon.
OVERDUE_FRACTION = 0.1

RECENT_JOBS, NO_HISTORY, POOL_AT_ZERO = "RecentJobs", "NoHistory", "PoolAtZeroVms"

# The recent run times are kept on the VM rows, which every reader of an estimate reads
# anyway: each VM's RecentRuns holds its last RUNS_PER_VM runs as [end (epoch seconds),
# seconds], newest first. An estimate goes by the pool's last HISTORY_JOBS runs that ended
# within HISTORY_HOURS, so its cost does not grow with the pool's history.
RUNS_PER_VM = 20
HISTORY_JOBS = 50
HISTORY_HOURS = 6


def with_run(vm: dict, end: dt.datetime, seconds: float) -> str:
    """The VM row's RecentRuns once a run of `seconds` ended on it at `end`."""
    runs = [[round(end.timestamp()), round(max(seconds, 0.0), 3)], *_runs(vm)]
    return json.dumps(runs[:RUNS_PER_VM], separators=(",", ":"))


def _runs(vm: dict) -> list[list[float]]:
    try:
        runs = json.loads(vm.get("RecentRuns") or "[]")
    except ValueError:
        return []
    return [run for run in runs if isinstance(run, list) and len(run) == 2] if isinstance(runs, list) else []


def recent_run_seconds(pool_vms: list[dict], now: dt.datetime) -> list[float]:
    """Run times of the pool's most recent runs, newest first, from its VM rows."""
    since = (now - dt.timedelta(hours=HISTORY_HOURS)).timestamp()
    runs = sorted((run for vm in pool_vms for run in _runs(vm) if run[0] >= since), reverse=True)
    return [seconds for _, seconds in runs[:HISTORY_JOBS]]


@dataclass(frozen=True)
class Estimate:
    basis_name: str
    starts: list[dt.datetime]  # one per waiting job, in queue order (empty without a basis)
    typical_seconds: float | None = None
    history: int = 0

    def basis(self) -> dict:
        """What the estimate went by, as the API shows it."""
        return {"Basis": self.basis_name, "RecentJobs": self.history,
                "TypicalRunSeconds": None if self.typical_seconds is None else round(self.typical_seconds, 3)}


def typical(durations: list[float]) -> float | None:
    """The mean run time without far-out values; None with too little history."""
    if len(durations) < MIN_HISTORY:
        return None
    if len(durations) < 4:
        return statistics.fmean(durations)
    lower, _, upper = statistics.quantiles(durations, n=4, method="inclusive")
    fence = upper + 3 * (upper - lower)
    return statistics.fmean(d for d in durations if d <= fence)


def remaining(elapsed: float, durations: list[float], typical_seconds: float) -> float:
    """Expected seconds left of a job that has run `elapsed` seconds."""
    longer = typical([d for d in durations if d > elapsed])
    if longer is not None:
        return longer - elapsed
    return OVERDUE_FRACTION * typical_seconds


def free_at(vm: dict, now: dt.datetime, durations: list[float], typical_seconds: float) -> dt.datetime | None:
    """When a VM can take a waiting job; None if it never will (draining or deleted)."""
    state = vms.state_of(vm, now)
    if state == vms.IDLE:
        return now
    if state == vms.PROVISIONING:
        return vm["ProvisionedAt"]
    if state == vms.BUSY:
        since = vm.get("BusySince")
        elapsed = (now - since).total_seconds() if since else 0.0
        return now + dt.timedelta(seconds=remaining(max(elapsed, 0.0), durations, typical_seconds))
    return None


def estimate(now: dt.datetime, pool_vms: list[dict], waiting: int, durations: list[float]) -> Estimate:
    """The expected start of each of `waiting` jobs in queue order."""
    typical_seconds = typical(durations)
    if typical_seconds is None:
        return Estimate(NO_HISTORY, [], None, len(durations))
    free = [t for t in (free_at(vm, now, durations, typical_seconds) for vm in pool_vms) if t is not None]
    if not free:
        return Estimate(POOL_AT_ZERO, [], typical_seconds, len(durations))
    heapq.heapify(free)
    starts = []
    run = dt.timedelta(seconds=typical_seconds)
    for _ in range(waiting):
        start = max(heapq.heappop(free), now)
        starts.append(start)
        heapq.heappush(free, start + run)
    return Estimate(RECENT_JOBS, starts, typical_seconds, len(durations))

