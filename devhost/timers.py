"""Timer triggers, reproducing the Functions host's timer listener.

* Only one instance runs a timer function across a scale-out: the listener holds a blob
  lease on `azure-webjobs-hosts/locks/<hostId>/<Function>.Listener` (a singleton lock, as
  the host takes) and renews it; an instance whose lease is lost stops firing.
* Occurrences follow the six-field NCRONTAB `schedule`; `runOnStartup` fires once when the
  listener starts (here: when it first takes the lock).
* With `useMonitor` (the default for schedules of a minute or more) the schedule status
  (Last, Next, LastUpdated) is kept in `azure-webjobs-hosts/timers/<hostId>/<Function>/status`;
  when the stored Next has already passed, the function runs at once with `past_due` true.
* Runs of one timer never overlap: the next occurrence is waited for after a run ends.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobLeaseClient, BlobServiceClient

from devhost.config import FunctionSpec
from devhost.invoker import Invoker
from devhost.ncrontab import Schedule

log = logging.getLogger(__name__)

HOSTS_CONTAINER = "azure-webjobs-hosts"
LEASE_SECONDS = 15
RENEW_EVERY = 5.0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def uses_monitor(trigger: dict, schedule: Schedule) -> bool:
    if "useMonitor" in trigger:
        return bool(trigger["useMonitor"])
    # The host monitors schedules whose occurrences are at least a minute apart.
    first = schedule.next_after(dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc))
    return (schedule.next_after(first) - first) >= dt.timedelta(minutes=1)


class TimerListener:
    def __init__(self, spec: FunctionSpec, host_id: str, service: BlobServiceClient, invoker: Invoker,
                 stopping: threading.Event):
        if spec.schedule is None:
            raise ValueError(f"function {spec.name} has no timer schedule")
        self.spec = spec
        self.schedule = spec.schedule
        self.invoker = invoker
        self.stopping = stopping
        self.container = service.get_container_client(HOSTS_CONTAINER)
        self.lock_blob = self.container.get_blob_client(f"locks/{host_id}/{spec.name}.Listener")
        self.status_blob = self.container.get_blob_client(f"timers/{host_id}/{spec.name}/status")
        self.lease: BlobLeaseClient | None = None
        self.monitor = uses_monitor(spec.trigger.raw, self.schedule)

    def start(self) -> None:
        try:
            self.container.create_container()
        except ResourceExistsError:
            pass
        try:
            self.lock_blob.upload_blob(b"", overwrite=False)
        except (ResourceExistsError, HttpResponseError):
            pass  # another instance made it, or holds its lease already
        threading.Thread(target=self._run, name=f"timer-{self.spec.name}", daemon=True).start()

    def _try_acquire(self) -> bool:
        lease = BlobLeaseClient(self.lock_blob)
        try:
            lease.acquire(lease_duration=LEASE_SECONDS)
        except (HttpResponseError, AzureError):
            return False
        self.lease = lease
        return True

    def _renew(self) -> bool:
        """Renew the lock; False when it is not held or was just lost."""
        if self.lease is None:
            return False
        try:
            self.lease.renew()
            return True
        except (HttpResponseError, AzureError):
            log.warning("timer lock lost function=%s", self.spec.name)
            self.lease = None
            return False

    def _run(self) -> None:
        first_time = True
        while not self.stopping.is_set():
            if self.lease is None and not self._try_acquire():
                self.stopping.wait(RENEW_EVERY)
                continue
            if first_time:
                first_time = False
                if self.spec.trigger.raw.get("runOnStartup"):
                    self._fire(past_due=False)
                    continue
            status = self._read_status() if self.monitor else {}
            due = self._stored_next(status) or self.schedule.next_after(_utcnow())
            if due <= _utcnow():
                self._fire(past_due=True)
                continue
            if self._wait_until(due):
                self._fire(past_due=False)

    def _wait_until(self, due: dt.datetime) -> bool:
        """Sleep until `due`, renewing the lock; False when the lock was lost or the host stops."""
        while True:
            remaining = (due - _utcnow()).total_seconds()
            if remaining <= 0:
                return True
            if self.stopping.wait(min(remaining, RENEW_EVERY)):
                return False
            if not self._renew():
                return False

    def _fire(self, past_due: bool) -> None:
        status = self._read_status() if self.monitor else {}
        request = TimerRequest(past_due=past_due, schedule_status=status or None,
                               schedule={"AdjustForDST": False})
        stop_renewing = threading.Event()
        keeper = threading.Thread(target=self._keep_lock, args=(stop_renewing,), daemon=True)
        keeper.start()
        started = _utcnow()
        try:
            self.invoker.invoke(self.spec, request)
            log.info("timer fired function=%s past_due=%s", self.spec.name, past_due)
        except Exception as error:
            log.warning("timer function failed function=%s error=%s", self.spec.name, type(error).__name__)
        finally:
            stop_renewing.set()
            keeper.join()
        if self.monitor and self.lease is not None:
            self._write_status(started)

    def _keep_lock(self, stop: threading.Event) -> None:
        while not stop.wait(RENEW_EVERY):
            if not self._renew():
                return

    def _read_status(self) -> dict:
        try:
            return json.loads(self.status_blob.download_blob().readall())
        except (AzureError, ValueError):  # missing, unreadable or unreachable: no known status
            return {}

    @staticmethod
    def _stored_next(status: dict) -> dt.datetime | None:
        try:
            return dt.datetime.fromisoformat(status["Next"])
        except (KeyError, TypeError, ValueError):
            return None

    def _write_status(self, last: dt.datetime) -> None:
        now = _utcnow()
        status = {"Last": last.isoformat(), "Next": self.schedule.next_after(now).isoformat(),
                  "LastUpdated": now.isoformat()}
        try:
            self.status_blob.upload_blob(json.dumps(status), overwrite=True)
        except AzureError as error:
            log.warning("timer status not saved function=%s error=%s", self.spec.name, type(error).__name__)

    def stop(self) -> None:
        if self.lease is not None:
            try:
                self.lease.release()
            except AzureError:
                pass
            self.lease = None
