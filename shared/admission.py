"""How many queue messages one instance runs at once, and how long a run slice may last:
both follow from host.json, so that no invocation waits for a thread it cannot get in time
and none outlives functionTimeout.

The Functions host runs up to batchSize + newBatchThreshold invocations of each queue
function at once on one instance (the storage queues extension's default newBatchThreshold
is batchSize / 2 x the instance's cores). The app runs each RunJob and DeliverEvents
invocation on a thread of its own, as many threads as the host runs invocations, so an
invocation never waits for one. A slice's time is counted from its invocation's start and
is at most SLICE_SHARE of functionTimeout: the rest covers the chunk that is scoring when
the time is up, the checkpoint or commit, and the job's end. A slice that finds less than
MIN_SLICE_SHARE of its time left when it gets its thread (which the thread count makes
rare) hands its message back instead of starting."""
from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HOST_JSON = Path(__file__).parent.parent / "host.json"  # the script root (not resolved: a linked copy has its own)
DEFAULT_BATCH_SIZE = 16  # the storage queues extension's defaults
MAX_BATCH_SIZE = 32
SLICE_SHARE = 0.5
MIN_SLICE_SHARE = 0.25
# functionTimeout when host.json sets none: the Consumption plan's default (5 minutes).
DEFAULT_FUNCTION_TIMEOUT_SECONDS = 300

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?$")


class HostSettingsError(ValueError):
    """host.json's queue settings or functionTimeout cannot be read."""


@dataclass(frozen=True)
class Admission:
    concurrency: int  # invocations of one queue function an instance runs at once
    function_timeout: float | None  # seconds; None: no limit

    def working_seconds(self, wanted: float | None = None) -> float | None:
        """An invocation's working time, counted from its start: at most SLICE_SHARE of
        functionTimeout, and at most `wanted` (None: no limit at all)."""
        most = None if self.function_timeout is None else self.function_timeout * SLICE_SHARE
        if wanted is None or most is None:
            return most if wanted is None else float(wanted)
        return min(float(wanted), most)

    def slice_seconds(self, run_slice_seconds: float) -> float:
        """A run slice's time (RUN_SLICE_SECONDS, within functionTimeout)."""
        seconds = self.working_seconds(run_slice_seconds)
        assert seconds is not None
        return seconds

    def may_start(self, waited: float, wanted: float | None = None) -> bool:
        """Whether an invocation that waited `waited` seconds for its thread still has time
        enough to start its work."""
        budget = self.working_seconds(wanted)
        return self.function_timeout is None or budget is None or budget - waited >= budget * MIN_SLICE_SHARE


def timespan_seconds(text: str) -> float:
    """A host.json timespan ("[d.]hh:mm:ss[.fff]") in seconds."""
    found = _TIMESPAN.match(text.strip()) if isinstance(text, str) else None
    if not found:
        raise HostSettingsError(f"host.json functionTimeout {text!r} is not a timespan like 00:10:00")
    days, hours, minutes, seconds, fraction = found.groups()
    return (int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
            + (float(f"0.{fraction}") if fraction else 0.0))


def from_host_json(data: dict, cores: int) -> Admission:
    """The admission that host.json's settings give an instance with `cores` cores."""
    queues = (data.get("extensions") or {}).get("queues") or {}
    batch = queues.get("batchSize", DEFAULT_BATCH_SIZE)
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH_SIZE:
        raise HostSettingsError(f"host.json queues.batchSize must be 1 to {MAX_BATCH_SIZE}, got {batch!r}")
    threshold = queues.get("newBatchThreshold", batch // 2 * max(cores, 1))
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 0:
        raise HostSettingsError(f"host.json queues.newBatchThreshold must be a whole number, got {threshold!r}")
    timeout = data.get("functionTimeout")
    if timeout in (None, ""):
        seconds: float | None = DEFAULT_FUNCTION_TIMEOUT_SECONDS
    elif timeout == "-1":
        seconds = None
    else:
        seconds = timespan_seconds(timeout)
    return Admission(batch + threshold, seconds)


@lru_cache(maxsize=1)
def current() -> Admission:
    """This instance's admission, from the app's own host.json."""
    try:
        data = json.loads(HOST_JSON.read_text())
    except (OSError, ValueError) as error:
        raise HostSettingsError(f"host.json cannot be read: {error}") from None
    return from_host_json(data, os.cpu_count() or 1)


_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def threads(name: str) -> ThreadPoolExecutor:
    """The app's own threads for one queue function's invocations: as many as the host runs
    at once, so an invocation never waits for one."""
    with _pools_lock:
        pool = _pools.get(name)
        if pool is None:
            pool = _pools[name] = ThreadPoolExecutor(current().concurrency, thread_name_prefix=name)
        return pool


# The invocation whose work this thread does, for the threads it starts in turn.
_doing = threading.local()


def attributed(context, call, *args):
    """Run `call` on this thread (one of the app's own) as the work of the invocation
    `context` names: the worker attributes a thread's records to the invocation id set in its
    `context.thread_local_storage`, and a thread of the app's own has none until it is set."""
    storage = getattr(context, "thread_local_storage", None)
    if storage is not None:
        storage.invocation_id = context.invocation_id
    _doing.context = context
    try:
        return call(*args)
    finally:
        _doing.context = None
        if storage is not None:
            storage.invocation_id = None


def current_context():
    """The invocation whose work this thread does (see `attributed`), or None."""
    return getattr(_doing, "context", None)
