"""Running a started job in slices: each invocation of RunJob scores the input from where
the last one stopped, for at most RUN_SLICE_SECONDS, checkpoints, and hands on to a new run
message; the last slice commits the outputs and ends the job.

* Memory stays flat: the input is read as it arrives and cut into chunks of whole records
  (`shared.records`); each chunk's output is staged as a block of its output blob.
* Checkpoint (on the run row, after a slice): the input offset, the header row, rows scored
  and how many blocks each output has staged. Block ids follow from the job, the output and
  the block's number, so a resumed slice re-stages at most the chunks after the checkpoint
  and the committed blob is the same as an uninterrupted run's.
* One runner at a time: claiming the run row (etag-conditional) marks it with the runner's
  id; a heartbeat thread renews it whatever the scorer is doing, so a slow chunk is never
  taken over while its runner lives. A runner that died leaves a stale heartbeat; the sweeper
  re-sends the message and the next runner resumes from the checkpoint (Attempts counts it).
* Fenced commits: before any output becomes visible, the runner marks the run row
  `Committing` with a conditional write. A cancel or timeout that changed the row first makes
  that write fail, and nothing is committed; once it succeeded, the job finishes.
* TimeoutSeconds counts from the job's first start, across slices and attempts; past it the
  job ends Failed and its VM is freed, even while a chunk is still being scored.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import importlib
import io
import json
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

from shared import attempts, bes, clock, dispatch, events, records, runs, services
from shared.errors import InvalidRequest
from shared.settings import get_settings
from shared.storage import (POOLS, BlobFile, WriteConflict, account_of, blob_endpoint, ensure_container,
                            get_queues, get_store)

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0  # at most; less when RUN_STALE_SECONDS is short
PROGRESS_EVENT_SECONDS = 5.0  # at most one Progress event this often
CSV = "text/csv"
MAX_HEADER_BYTES = 32 * 1024  # kept in the checkpoint; a table property holds at most 64 KiB


class JobFailed(Exception):
    """The job cannot succeed; the message is its Details."""


class RunLost(Exception):
    """The run was cancelled, ended, timed out or taken over: stop quietly."""


def block_id(job_id: str, output_index: int, number: int) -> str:
    """The id of an output's block: the same for the same chunk in every attempt."""
    return base64.b64encode(f"{number:08d}-{output_index:03d}-{job_id}".encode()).decode()


class _Output:
    """One output blob: its staged blocks so far. A job whose output is one chunk writes it
    in one request at commit instead (as atomic: a blob is replaced whole)."""

    def __init__(self, blob: BlobFile, job_id: str, index: int, staged: int):
        self.blob = blob
        self.job_id = job_id
        self.index = index
        self.staged = staged
        self.held: bytes | None = None

    def write(self, data: bytes, may_hold: bool) -> None:
        if not data:
            return
        if may_hold and self.staged == 0 and self.held is None:
            self.held = data
            return
        self.flush()
        self._stage(data)

    def flush(self) -> None:
        """Stage what is held, so that the checkpoint covers it."""
        if self.held is not None:
            held, self.held = self.held, None
            self._stage(held)

    def _stage(self, data: bytes) -> None:
        self.blob.stage_block(block_id(self.job_id, self.index, self.staged), data)
        self.staged += 1

    def commit(self) -> None:
        if self.staged == 0:
            self.blob.upload(self.held or b"", CSV)
        else:
            self.flush()
            self.blob.commit_blocks([block_id(self.job_id, self.index, n) for n in range(self.staged)], CSV)


def load_scorer(reference: str):
    module_name, function_name = reference.split(":")
    if not services.scorer_allowed(module_name, get_settings().scorer_packages):
        raise JobFailed(f"the service's scorer {module_name} is no longer in SCORER_PACKAGES; the operator must "
                        "register an allowed one")
    return getattr(importlib.import_module(module_name), function_name)


def _frames_by_output(result, output_names: list[str]) -> dict[str, pd.DataFrame]:
    if isinstance(result, pd.DataFrame):
        return {name: result for name in output_names}
    if isinstance(result, dict) and all(isinstance(v, pd.DataFrame) for v in result.values()):
        missing = [n for n in output_names if n not in result]
        if missing:
            raise JobFailed(f"the scorer returned no frame for output(s) {', '.join(missing)}")
        return result
    raise JobFailed(f"the scorer must return a DataFrame or a dict of DataFrames by output name, "
                    f"not {type(result).__name__}")


def _parse_chunk(header: bytes, data: bytes, first_row: int) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(header + data))
    except pd.errors.EmptyDataError:
        raise JobFailed("the input blob is empty: a CSV with a header row is needed") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise JobFailed(f"the input blob is not a readable CSV (from row {first_row}): {error}") from None


class _Lease:
    """This runner's hold on the run row: every write of the row goes through it (so the
    heartbeat thread and the runner never race each other), and a heartbeat thread renews it
    and ends the job when its time is up."""

    def __init__(self, run: dict, stale_seconds: int, timeout_seconds: int):
        self.run = run
        self.timeout = dt.timedelta(seconds=timeout_seconds)
        self.beat_every = min(HEARTBEAT_EVERY, stale_seconds / 3)
        self.lock = threading.Lock()
        self.lost = False
        self.progress_told = (None, 0.0)  # rows in the last Progress event, and when it was sent
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{run['JobId']}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def check(self) -> None:
        if self.lost:
            raise RunLost()

    def note(self, **progress) -> None:
        """Fields the next heartbeat shows (progress), never a checkpoint."""
        with self.lock:
            self.run.update(progress)

    def write(self, changes: dict) -> None:
        """A conditional write of the run row; RunLost if anyone else changed it."""
        with self.lock:
            self.check()
            self.run.update(changes, HeartbeatAt=clock.utcnow())
            try:
                get_store().replace(POOLS, self.run)
            except WriteConflict:
                self.lost = True
                raise RunLost() from None

    def _beat(self) -> None:
        while not self.stopped.wait(self.beat_every):
            if past_timeout(self.run, self.timeout):
                self._time_out()
                return
            try:
                self.write({})
            except RunLost:
                return
            except AzureError as error:
                log.warning("heartbeat failed job=%s %s", self.run["JobId"], describe_storage_error(error))
                continue
            self._tell_progress()

    def _tell_progress(self) -> None:
        """A Progress event for a job with a NotificationUrl, when rows were scored since the
        last one and at most every PROGRESS_EVENT_SECONDS."""
        rows = self.run.get("ProgressRows") or self.run.get("RowsScored") or 0
        told_rows, told_at = self.progress_told
        if not self.run.get("NotificationUrl") or rows == told_rows or \
                time.monotonic() - told_at < PROGRESS_EVENT_SECONDS:
            return
        self.progress_told = (rows, time.monotonic())
        events.emit(self.run["JobId"], events.PROGRESS, {
            "StatusCode": runs.RUNNING, "Progress": {
                "RowsScored": rows, "InputBytesRead": self.run.get("ProgressOffset") or self.run.get("InputOffset") or 0,
                "InputBytes": self.run.get("InputBytes") or None}}, unless=(events.ENDED,))

    def _time_out(self) -> None:
        with self.lock:
            if self.lost:
                return
            self.lost = True
            ended = _end(self.run, runs.FAILED, timeout_details(self.timeout))
        if ended:
            log.warning("job timed out job=%s", self.run["JobId"])


def past_timeout(run: dict, timeout: dt.timedelta) -> bool:
    """Past the job's TimeoutSeconds since its first start, and not already committing."""
    return not run.get("Committing") and clock.utcnow() - run["StartTime"] > timeout


def timeout_details(timeout: dt.timedelta) -> str:
    return f"stopped after the service's TimeoutSeconds of {int(timeout.total_seconds())} s since the job started"


def _end(run: dict, status: str, details: str, results: dict | None = None) -> bool:
    """End a run this runner holds (its etag says nobody changed it since), then tick its
    pool; False if someone else changed it first."""
    try:
        freed = runs.end_run(run, status, details, results)
    except WriteConflict:
        return False
    runs.finalize(run)
    if freed:
        dispatch.tick(run["PartitionKey"], run["PoolId"])
    return True


def _claim_runner(partition: str, job_id: str, runner_id: str, stale_seconds: int) -> dict | None:
    """Take the run for this runner, unless it ended or a live runner holds it. A claim that
    follows a slice's hand-over continues the run; any other claim is a new attempt, if the
    job's MaxRetries allows one more (else the job ends Failed, saying why)."""
    store = get_store()
    for _ in range(10):
        run = runs.get_run(partition, job_id)
        if run is None or run["State"] != runs.RUNNING:
            return None
        now = clock.utcnow()
        heartbeat = run.get("HeartbeatAt")
        if run.get("RunnerId") and heartbeat and now - heartbeat < dt.timedelta(seconds=stale_seconds):
            return None
        begun = run.get("Attempts") or 0
        new_attempt = not (run.get("Continue") and begun)
        if new_attempt and begun:
            runs.record_outcome(run, attempts.INTERRUPTED, "its run came round again before the attempt reported an "
                                                       "end (its worker may have stopped)", now)
            if not attempts.may_begin(begun, attempts.max_retries(run)):
                last = attempts.outcomes(run["AttemptOutcomes"])[-1]["Reason"]
                if _end(run, runs.FAILED, attempts.gave_up(begun, last)):
                    log.warning("job gave up job=%s attempts=%s", job_id, begun)
                return None
        run.update({"RunnerId": runner_id, "HeartbeatAt": now, "Continue": False,
                    "Attempts": begun + 1 if new_attempt else begun, "Slices": (run.get("Slices") or 0) + 1})
        if new_attempt:
            run["AttemptStartedAt"] = now
        try:
            store.replace(POOLS, run)
            return run
        except WriteConflict:
            continue
    return None


def is_transient(error: AzureError) -> bool:
    """Worth another try: the storage service was unreachable, busy or failing, not refusing."""
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return error.status_code in (408, 429) or error.status_code >= 500
    return isinstance(error, (ServiceRequestError, ServiceResponseError))


def output_replaced(error: AzureError) -> bool:
    """Another writer committed the same output blob meanwhile, which discards this run's
    staged blocks: the run must score again from the start (the last to commit wins)."""
    return isinstance(error, HttpResponseError) and _error_code(error) == "InvalidBlockList"


def _error_code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "none")


def describe_storage_error(error: AzureError) -> str:
    """Status and error code only: an SDK message can carry request URLs."""
    if isinstance(error, HttpResponseError):
        return f"status={error.status_code} code={_error_code(error)}"
    return f"error={type(error).__name__}"


class _Slice:
    """One invocation's share of a run: score from the checkpoint until the input ends or
    the slice's time is up."""

    def __init__(self, lease: _Lease, request: bes.JobRequest, scorer, settings):
        self.lease = lease
        self.run = lease.run
        self.request = request
        self.scorer = scorer
        self.chunk_rows = settings.scoring_chunk_rows
        self.deadline = time.monotonic() + settings.run_slice_seconds
        staged = json.loads(self.run.get("OutputBlocks") or "{}")
        self.position = {key: self.run.get(key) or 0 for key in ("InputOffset", "RowsScored", "Chunks")}
        self.size = self.run.get("InputBytes") or 0
        self.header = self.run.get("InputHeader") or b""
        self.outputs = {}
        for index, (name, location) in enumerate(request.outputs.items()):
            account = account_of(location)
            if not location.uses_sas and not staged:
                ensure_container(account, location.container)
            self.outputs[name] = _Output(BlobFile(account, location.container, location.blob),
                                         self.run["JobId"], index, staged.get(name, 0))

    def needs_rescoring(self) -> bool:
        """A runner that died while committing an output it held in memory (a one-chunk
        output, written in one request) left nothing staged to commit: score that chunk again."""
        return (self.position["Chunks"] or 0) > 0 and any(o.staged == 0 for o in self.outputs.values())

    def restart(self) -> None:
        self.position = {"InputOffset": 0, "RowsScored": 0, "Chunks": 0}
        for output in self.outputs.values():
            output.staged = 0

    def score(self, to_the_end: bool = False) -> bool:
        """Score on from the checkpoint; True when the whole input is scored (always, with
        `to_the_end`), False when the slice's time ran out first."""
        source = self.request.input
        offset = self.position["InputOffset"]
        opened = BlobFile(account_of(source), source.container, source.blob).read_from(offset)
        if opened is None:
            raise JobFailed(f"input blob {source.container}/{source.blob} does not exist")
        size, blocks = opened
        header = self.header
        if offset == 0:
            if size == 0:
                raise JobFailed("the input blob is empty: a CSV with a header row is needed")
            try:
                header, blocks = records.split_header(blocks, MAX_HEADER_BYTES)
            except ValueError as error:
                raise JobFailed(f"the input blob's header row cannot be read: {error}") from None
            offset = len(header)
            self.header = header
        self.size = size
        rows, chunk_index = self.position["RowsScored"], self.position["Chunks"]
        self.lease.note(InputBytes=size)
        for chunk in records.chunks(blocks, offset, self.chunk_rows):
            self.lease.check()
            frame = _parse_chunk(header, chunk.data, rows + 1)
            try:
                result = self.scorer(frame, dict(self.request.global_parameters))
            except JobFailed:
                raise
            except Exception as error:
                raise JobFailed(f"the scorer failed on rows {rows + 1}-{rows + len(frame)}: "
                                f"{type(error).__name__}: {error}") from None
            for name, output in _frames_by_output(result, list(self.outputs)).items():
                if name in self.outputs:
                    data = output.to_csv(index=False, header=chunk_index == 0).encode("utf-8")
                    self.outputs[name].write(data, may_hold=chunk_index == 0)
            rows += len(frame)
            chunk_index += 1
            self.position = {"InputOffset": chunk.end, "RowsScored": rows, "Chunks": chunk_index}
            self.lease.note(ProgressRows=rows, ProgressOffset=chunk.end)
            if not to_the_end and not chunk.last and time.monotonic() >= self.deadline:
                return False
        return True

    def hand_over(self) -> None:
        """Checkpoint and let a new invocation continue."""
        for output in self.outputs.values():
            output.flush()
        self.lease.write({**self.checkpoint(), "InputHeader": self.header, "RunnerId": "", "Continue": True})
        get_queues().send(dispatch.RUN_QUEUE, {"Partition": self.run["PartitionKey"], "JobId": self.run["JobId"]})

    def checkpoint(self) -> dict:
        """What is done: the input up to an offset, scored into the blocks staged so far."""
        return {**self.position, "InputBytes": self.size,
                "OutputBlocks": json.dumps({name: output.staged for name, output in self.outputs.items()})}

    def commit(self) -> None:
        """Fence, then make the outputs visible."""
        for output in self.outputs.values():
            if output.held is None:
                output.flush()
        self.lease.write({**self.checkpoint(), "Committing": True})
        for output in self.outputs.values():
            output.commit()


_runner_threads = None
_runner_threads_lock = threading.Lock()


def _runners() -> ThreadPoolExecutor:
    global _runner_threads
    with _runner_threads_lock:
        if _runner_threads is None:
            _runner_threads = ThreadPoolExecutor(get_settings().runner_threads, thread_name_prefix="runner")
        return _runner_threads


async def run_job_off_the_worker(partition: str, job_id: str) -> None:
    """Run a slice on the app's own RUNNER_THREADS threads. The Python worker runs every sync
    invocation on one shared pool; slices last up to RUN_SLICE_SECONDS, and on that pool they
    would leave HTTP calls waiting. Awaited from an `async def` entry point, a slice holds
    none of the worker's threads."""
    await asyncio.get_running_loop().run_in_executor(_runners(), _run_job_failing_plainly, partition, job_id)


def _run_job_failing_plainly(partition: str, job_id: str) -> None:
    """run_job, with an exit raised inside it (a scorer calling sys.exit) turned into an
    ordinary failure: re-raised on the event loop, it would stop the loop itself."""
    try:
        run_job(partition, job_id)
    except Exception:
        raise
    except BaseException as error:
        raise RuntimeError(f"the run stopped with {type(error).__name__}") from None


def run_job(partition: str, job_id: str) -> None:
    settings = get_settings()
    runner_id = uuid.uuid4().hex
    run = _claim_runner(partition, job_id, runner_id, settings.run_stale_seconds)
    if run is None:
        log.info("run message skipped job=%s (ended, or a live runner holds it)", job_id)
        return
    log.info("run claimed job=%s pool=%s attempt=%s slice=%s offset=%s", job_id, run["PoolId"], run["Attempts"],
             run["Slices"], run.get("InputOffset") or 0)
    started = time.monotonic()
    try:
        scorer, timeout_seconds = _scorer_of(run)
    except JobFailed as failure:
        _end(run, runs.FAILED, str(failure))
        return
    timeout = dt.timedelta(seconds=timeout_seconds)
    if past_timeout(run, timeout):
        if _end(run, runs.FAILED, timeout_details(timeout)):
            log.warning("job timed out job=%s", job_id)
        return
    lease = _Lease(run, settings.run_stale_seconds, timeout_seconds)
    lease.start()
    try:
        outcome = _run_slice(lease, scorer, settings)
    finally:
        lease.stop()
    if outcome is None:
        return
    status, details, results = outcome
    run.pop("ProgressRows", None)
    run.pop("ProgressOffset", None)
    log.info("job run done job=%s state=%s seconds=%.2f", job_id, status, time.monotonic() - started)
    with lease.lock:
        if not lease.lost:
            _end(run, status, details, results)


def _run_slice(lease: _Lease, scorer: str, settings) -> tuple[str, str, dict | None] | None:
    """Score a slice; the job's end (state, details, results) when it has one, None when the
    run goes on (handed over, lost, or to be retried)."""
    run = lease.run
    job_id = run["JobId"]
    try:
        request = _stored_request(run)
        work = _Slice(lease, request, load_scorer(scorer), settings)
        if run.get("Committing"):
            if work.needs_rescoring():
                work.restart()
                work.score(to_the_end=True)
        elif not work.score():
            work.hand_over()
            log.info("run handed over job=%s rows=%s offset=%s", job_id, run["RowsScored"], run["InputOffset"])
            return None
        work.commit()
        results = {name: bes.public_location(location, blob_endpoint(account_of(location)))
                   for name, location in request.outputs.items()}
        return runs.FINISHED, "", results
    except RunLost:
        log.info("run stopped job=%s (cancelled, timed out or taken over)", job_id)
        return None
    except JobFailed as failure:
        return runs.FAILED, str(failure), None
    except AzureError as error:
        if output_replaced(error):
            _start_over(lease)
            return None
        if is_transient(error):
            # Not the job's fault: another attempt, after a back-off, if MaxRetries allows.
            log.warning("run interrupted by storage job=%s %s", job_id, describe_storage_error(error))
            _retry_later(lease, f"storage was unavailable ({describe_storage_error(error)})", error)
            return None
        log.warning("run failed on storage job=%s %s", job_id, describe_storage_error(error))
        return runs.FAILED, f"a storage request failed ({describe_storage_error(error)}); check the " \
                            "locations, the credentials and that the storage account is reachable", None
    except (MemoryError, RecursionError) as error:
        _let_go(lease, f"the worker ran out of {'memory' if isinstance(error, MemoryError) else 'stack'}")
        raise  # may pass on another worker: the message is retried
    except Exception as error:
        # A retry would fail the same way: end the job once, saying why, instead of crashing
        # until the message is poisoned.
        log.exception("run failed job=%s error=%s", job_id, type(error).__name__)
        return runs.FAILED, f"the run failed and would fail again on retry ({type(error).__name__}); " \
                            "report it to the service's operator with the job id", None
    except BaseException as error:
        _let_go(lease, f"the worker stopped ({type(error).__name__})")
        raise


def _stored_request(run: dict) -> bes.JobRequest:
    """The job's request as stored at submit, checked again by today's rules."""
    try:
        return bes.request_from_stored(json.loads(run["Request"]))
    except InvalidRequest as refused:
        raise JobFailed(f"the job's request is not valid: {refused.message}") from None


def _start_over(lease: _Lease) -> None:
    log.warning("run output replaced by another writer; starting over job=%s", lease.run["JobId"])
    try:
        lease.write({"InputOffset": 0, "RowsScored": 0, "Chunks": 0, "OutputBlocks": "{}", "InputHeader": b"",
                     "Committing": False, "RunnerId": "", "Continue": True})
    except RunLost:
        return
    get_queues().send(dispatch.RUN_QUEUE, {"Partition": lease.run["PartitionKey"], "JobId": lease.run["JobId"]})


def _let_go(lease: _Lease, reason: str) -> bool:
    """After an interruption, give the run back (keeping its checkpoint, noting why this
    attempt ended) so another attempt can take it."""
    runs.record_outcome(lease.run, attempts.INTERRUPTED, reason, clock.utcnow())
    try:
        lease.write({"RunnerId": ""})
        return True
    except Exception:
        log.warning("run not released job=%s; it is retried once its heartbeat goes stale", lease.run["JobId"])
        return False


def _retry_later(lease: _Lease, reason: str, error: Exception) -> None:
    """Give the run back and send it again after a back-off that grows with its attempts; the
    next claim decides whether MaxRetries allows it. If storage cannot take the message
    either, the invocation fails and the host retries its own message."""
    if not _let_go(lease, reason):
        raise error
    delay = attempts.backoff_seconds(lease.run.get("Attempts") or 1)
    try:
        get_queues().send(dispatch.RUN_QUEUE, {"Partition": lease.run["PartitionKey"], "JobId": lease.run["JobId"]},
                          delay_seconds=delay)
    except AzureError:
        raise error from None
    log.info("run to be retried job=%s attempt=%s in_seconds=%s", lease.run["JobId"], lease.run.get("Attempts"), delay)


def _scorer_of(run: dict) -> tuple[str, int]:
    """The scorer and timeout the job was submitted with (its service's, for older rows)."""
    if run.get("Scorer"):
        return run["Scorer"], run.get("TimeoutSeconds") or services.DEFAULT_TIMEOUT_SECONDS
    service = services.get_service(run["SubscriptionId"], run["ServiceId"])
    if service is None:
        raise JobFailed("the job's web service no longer exists")
    return service.scorer, service.timeout_seconds


def fail_poisoned(partition: str, job_id: str) -> None:
    """A run message that kept failing: end its job Failed and free the VM."""
    for _ in range(20):
        run = runs.get_run(partition, job_id)
        if run is None or run["State"] not in (runs.RUNNING, runs.WAITING):
            return
        if _end(run, runs.FAILED, "the job's run kept failing and was stopped; retry the job"):
            return
