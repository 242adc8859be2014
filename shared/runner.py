"""Running a started job: a runner claims it, holds a lease on its row while a slice scores
(`shared.scoring`), and then hands on to a new run message, retries, or ends the job.

* One runner at a time: every write a runner makes to the job row is conditional on the
  etag it last saw, so whoever changed the row meanwhile (a cancel, a time-out, another
  runner) makes it fail, and the runner stops quietly. A run message that carries the row
  (see `shared.moves`) is claimed with the runner's first write; any other is claimed first.
* A heartbeat thread renews the lease whatever the scorer is doing, so a slow chunk is never
  taken over while its runner lives. A runner that died leaves a stale heartbeat; the sweeper
  re-sends the message and the next runner resumes from the checkpoint (Attempts counts it).
* Fenced commits: before any output becomes visible, the runner marks the row `Committing`
  (`lifecycle.fence`). A cancel or time-out that wrote first makes that write fail, and
  nothing is committed; once it succeeded, the job finishes.
* TimeoutSeconds counts from the job's first start, across slices and attempts; past it the
  job ends Failed and its VM is freed, even while a chunk is still being scored.
* The end is one transaction (`lifecycle.end`): the job final, its VM released, its job-hour
  rows; then the runner looks at the queue and hands the VM to its head if anyone waits.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
import threading
import time
import uuid

from azure.core.exceptions import AzureError

from shared import admission, attempts, clock, events, jobs, lifecycle, logfields, moves, scoring
from shared.scoring import JobFailed
from shared.settings import get_settings
from shared.storage import POOLS, WriteConflict, concurrently, get_store
from shared.storage.calls import describe_storage_error, is_transient, output_replaced
from shared.storage.tables import Row, etag_of

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0  # at most; less when RUN_STALE_SECONDS is short
PROGRESS_EVENT_SECONDS = 5.0  # at most one Progress event this often
MAX_END_TRIES = 10


class RunLost(Exception):
    """The run was cancelled, ended, timed out or taken over: stop quietly."""


def _copy(row: dict) -> Row:
    return Row(dict(row), dict(getattr(row, "metadata", {}) or {}))


def _ref(job: dict) -> dict:
    return {"PartitionKey": job["PartitionKey"], "JobId": job["JobId"]}


def end_job(job: Row, vm: Row | None, status: str, details: str, results: dict | None = None) -> bool:
    """End a job this runner holds (its etag says nobody changed it since) and release its VM,
    then hand the VM on if anyone waits; False if someone else changed the job first."""
    partition = job["PartitionKey"]
    for tries in range(MAX_END_TRIES):
        ending, releasing = _copy(job), _copy(vm) if vm is not None else None
        try:
            move = lifecycle.end(ending, status, details, clock.utcnow(), releasing, results)
        except lifecycle.IllegalMove:
            return False
        try:
            moves.write(move)
        except WriteConflict:
            fresh, vm = concurrently(lambda: moves.read_job(partition, job["JobId"]),
                                     lambda: get_store().get(POOLS, partition, job["VmKey"]))
            if fresh is None or etag_of(fresh) != etag_of(job):
                return False
            # The VM changed meanwhile (a resize marked it draining): again with its new row.
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** tries)))
            continue
        job.update(ending)
        job.metadata = ending.metadata
        log.info("job ended job=%s partition=%s state=%s", job["JobId"], partition, status)
        jobs.after_end(job["JobId"], move)
        return True
    log.warning("job not ended job=%s partition=%s (its VM kept changing); the sweeper retries it", job["JobId"],
                partition)
    return False


class _Lease:
    """This runner's hold on the job row: every write of the row goes through it (so the
    heartbeat thread and the runner never race each other), and a heartbeat thread renews it
    and ends the job when its time is up. `claim` holds the claim's changes until the first
    write, when the run message carried the row."""

    def __init__(self, job: Row, vm: Row | None, claim: dict, stale_seconds: int, timeout_seconds: int,
                 holders: list[str], runner_id: str):
        self.job = job
        self.holders = holders  # who may hold the job's lease: this runner, once its claim is written
        self.runner_id = runner_id
        self.vm = vm
        self.claim = claim
        self.timeout = dt.timedelta(seconds=timeout_seconds)
        self.beat_every = min(HEARTBEAT_EVERY, stale_seconds / 3)
        self.lock = threading.Lock()
        self.lost = False
        self.noted: dict = {}
        self.progress_told: tuple[int | None, float] = (None, 0.0)  # rows last told, and when
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=admission.attributed, args=(admission.current_context(), self._beat),
                                       name=f"heartbeat-{job['JobId']}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def check(self) -> None:
        if self.lost:
            raise RunLost()

    def note(self, **progress) -> None:
        """Fields the next heartbeat writes (progress), never a checkpoint."""
        with self.lock:
            self.noted.update(progress)

    def write(self, changes: dict) -> None:
        """A conditional write of the job row; RunLost if anyone else changed it."""
        with self.lock:
            self._write(changes)

    def _write(self, changes: dict) -> None:
        self.check()
        try:
            get_store().update(POOLS, self.job, {**self.claim, **self.noted, **changes})
        except WriteConflict:
            self.lost = True
            raise RunLost() from None
        if self.claim:
            self.holders[:] = [self.runner_id]
        self.claim, self.noted = {}, {}

    def end(self, status: str, details: str, results: dict | None = None) -> bool:
        """End the job, with what the lease has not written yet."""
        with self.lock:
            if self.lost:
                return False
            self.lost = True
            self.job.update({**self.claim, **self.noted})
            return end_job(self.job, self.vm, status, details, results)

    def _beat(self) -> None:
        while not self.stopped.wait(self.beat_every):
            if lifecycle.timed_out(self.job, self.timeout, clock.utcnow()):
                if self.end(lifecycle.FAILED, lifecycle.timeout_details(self.timeout)):
                    log.warning("job timed out job=%s", self.job["JobId"])
                return
            try:
                with self.lock:
                    self._write(lifecycle.heartbeat(self.job, clock.utcnow()))
            except RunLost:
                return
            except AzureError as error:
                log.warning("heartbeat failed job=%s %s", self.job["JobId"], describe_storage_error(error))
                continue
            self._tell_progress()

    def _tell_progress(self) -> None:
        """A Progress event for a job with a NotificationUrl, when rows were scored since the
        last one and at most every PROGRESS_EVENT_SECONDS."""
        job = self.job
        rows = job.get("ProgressRows") or job.get("RowsScored") or 0
        told_rows, told_at = self.progress_told
        if not job.get("NotificationUrl") or rows == told_rows or time.monotonic() - told_at < PROGRESS_EVENT_SECONDS:
            return
        self.progress_told = (rows, time.monotonic())
        events.emit(job["JobId"], lifecycle.PROGRESS, {
            "StatusCode": lifecycle.RUNNING, "Progress": jobs.progress(job)}, unless=(lifecycle.ENDED,))


def _claim(partition: str, job_id: str, carried: Row | None, carried_vm: Row | None, runner_id: str,
           stale_seconds: int, starts: bool, holders: list[str]) -> tuple[Row, Row | None, dict] | None:
    """The job for this runner, with its VM and the claim's changes still to write (only when
    the message carried the row: otherwise the claim is written here). `starts`: the message
    is the one the job's start sent, delivered again if it carries no rows now (they are
    dropped then). `holders`: the runners storage stopped that sent the message, and may
    hold the lease (this runner alone once its claim is written). None if the job ended, a
    live runner holds it, or it gave up."""
    for tries in range(10):
        job: Row | None
        if carried is not None and tries == 0:
            job, vm = carried, carried_vm
        else:
            job = moves.read_job(partition, job_id)
            vm = get_store().get(POOLS, partition, job["VmKey"]) if job and job.get("VmKey") else None
        if job is None:
            return None
        claim = lifecycle.claim_runner(job, runner_id, clock.utcnow(), stale_seconds,
                                       carried=starts and carried is not None, again=starts and carried is None,
                                       sent_by=tuple(holders))
        if claim.give_up:
            if end_job(job, vm, lifecycle.FAILED, claim.give_up):
                log.warning("job gave up job=%s attempts=%s", job_id, job.get("Attempts"))
            return None
        if claim.take is None:
            return None
        if carried is not None and tries == 0:
            return job, vm, claim.take
        try:
            get_store().update(POOLS, job, claim.take)
        except WriteConflict:
            continue
        holders[:] = [runner_id]
        return job, vm, {}
    return None


def run_job(partition: str, job_id: str, carried: Row | None, carried_vm: Row | None, deadline: float,
            starts: bool, runner_id: str, holders: list[str]) -> None:
    """Run a slice of the job, until the input ends or `deadline` (monotonic clock). `starts`:
    the message is the one the job's start sent; `holders`: see `_claim`."""
    with logfields.about(job=job_id, partition=partition):
        _run_job(partition, job_id, carried, carried_vm, deadline, starts, runner_id, holders)


def _run_job(partition: str, job_id: str, carried: Row | None, carried_vm: Row | None, deadline: float,
             starts: bool, runner_id: str, holders: list[str]) -> None:
    settings = get_settings()
    claimed = _claim(partition, job_id, carried, carried_vm, runner_id, settings.run_stale_seconds, starts, holders)
    if claimed is None:
        log.info("run message skipped job=%s (ended, or a live runner holds it)", job_id)
        return
    job, vm, claim = claimed
    logfields.add(vm=(vm["VmId"] if vm else None) or job.get("VmId"))
    log.info("run claimed job=%s partition=%s attempt=%s slice=%s offset=%s", job_id, partition,
             claim.get("Attempts", job.get("Attempts")), claim.get("Slices", job.get("Slices")),
             job.get("InputOffset") or 0)
    started = time.monotonic()
    lease = _Lease(job, vm, claim, settings.run_stale_seconds, job.get("TimeoutSeconds") or 1, holders, runner_id)
    if lifecycle.timed_out(job, lease.timeout, clock.utcnow()):
        if lease.end(lifecycle.FAILED, lifecycle.timeout_details(lease.timeout)):
            log.warning("job timed out job=%s", job_id)
        return
    lease.start()
    try:
        outcome = _run_slice(lease, settings, deadline)
    finally:
        lease.stop()
    if outcome is None:
        return
    status, details, results = outcome
    log.info("job run done job=%s state=%s seconds=%.2f", job_id, status, time.monotonic() - started)
    lease.end(status, details, results)


def _run_slice(lease: _Lease, settings, deadline: float) -> tuple[str, str, dict | None] | None:
    """Score a slice; the job's end (state, details, results) when it has one, None when the
    run goes on (handed over, lost, or to be retried)."""
    job = lease.job
    job_id = job["JobId"]
    try:
        request = scoring.stored_request(job)
        work = scoring.Slice(job, lease, request, scoring.load_scorer(job["Scorer"]), settings.scoring_chunk_rows,
                             deadline)
        if job.get("Committing"):
            if work.needs_rescoring():
                work.restart()
                work.score(to_the_end=True)
        elif not work.score():
            work.flush()
            lease.write(lifecycle.checkpoint(job, {**work.checkpoint(), "InputHeader": work.header},
                                             clock.utcnow(), hand_over=True))
            moves.send_run(_ref(job))
            log.info("run handed over job=%s rows=%s offset=%s", job_id, job["RowsScored"], job["InputOffset"])
            return None
        work.ready_to_commit()
        lease.write(lifecycle.fence(job, work.checkpoint(), clock.utcnow()))
        work.commit()
        return lifecycle.FINISHED, "", work.results()
    except RunLost:
        log.info("run stopped job=%s (cancelled, timed out or taken over)", job_id)
        return None
    except JobFailed as failure:
        return lifecycle.FAILED, str(failure), None
    except AzureError as error:
        if output_replaced(error):
            _start_over(lease)
            return None
        if is_transient(error):
            # Not the job's fault, and no attempt used up: the lease is let go if the table
            # answers, and the run goes on from its checkpoint once storage answers again
            # (the message is sent by `_run_failing_plainly`).
            log.warning("run interrupted by storage job=%s %s", job_id, describe_storage_error(error))
            _pause(lease)
            raise
        log.warning("run failed on storage job=%s %s", job_id, describe_storage_error(error))
        return lifecycle.FAILED, f"a storage request failed ({describe_storage_error(error)}); check the " \
                                 "locations, the credentials and that the storage account is reachable", None
    except (MemoryError, RecursionError) as error:
        _let_go(lease, f"the worker ran out of {'memory' if isinstance(error, MemoryError) else 'stack'}")
        raise  # may pass on another worker: the message is retried
    except Exception as error:
        # A retry would fail the same way: end the job once, saying why, instead of crashing
        # until the message is poisoned.
        log.exception("run failed job=%s error=%s", job_id, type(error).__name__)
        return lifecycle.FAILED, f"the run failed and would fail again on retry ({type(error).__name__}); " \
                                 "report it to the service's operator with the job id", None
    except BaseException as error:
        _let_go(lease, f"the worker stopped ({type(error).__name__})")
        raise


def _start_over(lease: _Lease) -> None:
    log.warning("run output replaced by another writer; starting over job=%s", lease.job["JobId"])
    try:
        lease.write(lifecycle.start_over(lease.job))
    except RunLost:
        return
    moves.send_run(_ref(lease.job))


def _let_go(lease: _Lease, reason: str) -> bool:
    """After an interruption, give the run back (keeping its checkpoint, noting why this
    attempt ended) so another attempt can take it."""
    try:
        with lease.lock:
            job = {**lease.job, **lease.claim}
            lease._write(lifecycle.let_go(job, attempts.INTERRUPTED, reason, clock.utcnow()))
        return True
    except Exception:
        log.warning("run not released job=%s; it is retried once its heartbeat goes stale", lease.job["JobId"])
        return False


def _pause(lease: _Lease) -> None:
    """Let the lease go for a storage outage, keeping the checkpoint and the attempt, if the
    table answers; if it does not, the next runner takes the run over from this one."""
    try:
        lease.write(lifecycle.pause(lease.job, clock.utcnow()))
    except (RunLost, AzureError):
        return
    lease.holders[:] = []


def fail_poisoned(body: bytes) -> None:
    """A run message that kept failing: end its job Failed and free the VM."""
    partition, job_id, _, _ = moves.job_of_message(body)
    for _ in range(20):
        job = moves.read_job(partition, job_id)
        if job is None or job["Status"] != lifecycle.RUNNING:
            return
        vm = get_store().get(POOLS, partition, job["VmKey"]) if job.get("VmKey") else None
        if end_job(job, vm, lifecycle.FAILED, "the job's run kept failing and was stopped; retry the job"):
            return


# A run message handed back (its slice found too little time left) is seen again after this.
HANDED_BACK_DELAY_SECONDS = 1
# After a storage outage stopped a run, its next message waits from the first to the most,
# doubling: short against RUN_STALE_SECONDS, so the runner that takes it over comes first.
OUTAGE_FIRST_SECONDS, OUTAGE_MOST_SECONDS = 1, 4


async def run_off_the_worker(body: bytes, delivery: int = 1, context=None) -> None:
    """Run a slice on a thread of the app's own, as many as the host runs RunJob invocations
    at once (`shared.admission`), so none waits for one. The Python worker runs every sync
    invocation on one shared pool; slices last up to RUN_SLICE_SECONDS, and on that pool they
    would leave HTTP calls waiting. Awaited from an `async def` entry point, a slice holds
    none of the worker's threads. Its time counts from here, the invocation's start. A
    message delivered again (its invocation failed) is run from a fresh read: the rows it
    carries are older than what its first run wrote. Its records belong to the invocation
    (`context`), whichever of the app's threads logs them."""
    arrived = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(admission.threads("runner"), admission.attributed, context,
                                                     _run_failing_plainly, body, delivery, arrived)


def _run_failing_plainly(body: bytes, delivery: int, arrived: float) -> None:
    """run_job, with an exit raised inside it (a scorer calling sys.exit) turned into an
    ordinary failure: re-raised on the event loop, it would stop the loop itself. A slice
    with too little of its time left hands its message back instead. When storage stops the
    run (unreachable, busy or failing past the SDK's retries), the invocation does not fail,
    which would count towards the poison queue: a new message carries the run on after a
    back-off, naming the runners that may still hold its lease. Only if the queue cannot
    take that message either does the invocation fail, and the host retries it."""
    partition, job_id, carried, carried_vm = moves.job_of_message(body)
    plan, slice_seconds = admission.current(), get_settings().run_slice_seconds
    waited = time.monotonic() - arrived
    if not plan.may_start(waited, slice_seconds):
        moves.send_back(body, HANDED_BACK_DELAY_SECONDS)
        log.warning("run message handed back job=%s waited_seconds=%.1f", job_id, waited)
        return
    starts = carried is not None
    if delivery > 1:
        carried = carried_vm = None
    holders, waits = moves.outage_of_message(body)
    runner_id = uuid.uuid4().hex
    try:
        run_job(partition, job_id, carried, carried_vm, arrived + plan.slice_seconds(slice_seconds), starts,
                runner_id, holders)
    except AzureError as error:
        if not is_transient(error):
            raise
        delay = attempts.backoff_seconds(waits + 1, OUTAGE_FIRST_SECONDS, OUTAGE_MOST_SECONDS)
        moves.send_after_outage(partition, job_id, holders, waits + 1, delay)
        log.warning("run sent on after a storage outage job=%s waits=%s in_seconds=%s %s", job_id, waits + 1, delay,
                    describe_storage_error(error))
    except Exception:
        raise
    except BaseException as error:
        raise RuntimeError(f"the run stopped with {type(error).__name__}") from None
