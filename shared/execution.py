"""Running a started job: read its input blob in chunks, score each chunk with the
service's scorer, stream the outputs to their blobs, then end the job.

Memory stays flat whatever the input's size: the input is read a chunk of rows at a time
and each output chunk is uploaded as a staged block, committed only when every chunk is
done (so a failed run leaves no half-written output).

One runner at a time: the runner marks the run row with its id and a heartbeat, renewed
between chunks. A second delivery of the same run message finds a live runner and leaves;
if a runner dies, its heartbeat goes stale and the sweeper sends the message again, and the
next runner takes over (the job's Attempts count shows it). A cancel shows up at the next
heartbeat, and the runner stops.
"""
from __future__ import annotations

import base64
import datetime as dt
import http.client
import importlib
import io
import json
import logging
import time
import uuid

import pandas as pd
from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

from shared import bes, clock, dispatch, runs, services
from shared.settings import get_settings
from shared.storage import (JOBS, POOLS, BlobFile, WriteConflict, blob_endpoint, blob_file, ensure_container,
                            get_store)

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = 5.0  # at most; less when RUN_STALE_SECONDS is short
CSV = "text/csv"
FRESH_ENOUGH = 1.0


class JobFailed(Exception):
    """The job cannot succeed; the message is its Details."""


class RunLost(Exception):
    """The run was cancelled, ended or taken over by another runner: stop quietly."""


class _BlockUpload:
    """An output blob written as staged blocks and committed at the end; an output of one
    chunk is written in one request instead (as atomic: a blob is replaced whole)."""

    def __init__(self, blob: BlobFile, attempt_id: str):
        self.blob = blob
        self.attempt_id = attempt_id
        self.blocks: list[str] = []
        self.first: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.first is None and not self.blocks:
            self.first = data
            return
        if self.first is not None:
            self._stage(self.first)
            self.first = None
        self._stage(data)

    def _stage(self, data: bytes) -> None:
        # Block ids are unique per attempt, so a replaced runner's blocks never mix in.
        block_id = base64.b64encode(f"{self.attempt_id}-{len(self.blocks):06d}".encode()).decode()
        self.blob.stage_block(block_id, data)
        self.blocks.append(block_id)

    def commit(self) -> None:
        if not self.blocks:
            self.blob.upload(self.first or b"", CSV)
        else:
            self.blob.commit_blocks(self.blocks, CSV)


def load_scorer(reference: str):
    module_name, function_name = reference.split(":")
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


def score(request: bes.JobRequest, scorer, chunk_rows: int, attempt_id: str, checkpoint) -> dict:
    """Score the input blob into the output blobs; returns figures. `checkpoint()` is called
    between chunks and raises to stop the run."""
    source = blob_file(request.input.connection_string, request.input.container, request.input.blob,
                       request.input.base_location, request.input.sas_token).open_read()
    if source is None:
        raise JobFailed(f"input blob {request.input.container}/{request.input.blob} does not exist")
    stream = io.BufferedReader(source, buffer_size=1 << 20)
    uploads = {}
    for name, location in request.outputs.items():
        if not location.uses_sas:
            ensure_container(location.connection_string, location.container)
        uploads[name] = _BlockUpload(blob_file(location.connection_string, location.container, location.blob,
                                               location.base_location, location.sas_token), attempt_id)
    try:
        rows = _score_chunks(stream, request, scorer, chunk_rows, uploads, checkpoint)
    except (OSError, http.client.HTTPException) as error:
        raise ServiceResponseError(f"reading the input blob was interrupted: {type(error).__name__}") from None
    finally:
        stream.close()
    checkpoint()
    for upload in uploads.values():
        upload.commit()
    return {"rows": rows}


def _score_chunks(stream, request: bes.JobRequest, scorer, chunk_rows: int, uploads: dict, checkpoint) -> int:
    rows = 0
    try:
        reader = pd.read_csv(stream, chunksize=chunk_rows)
        for index, frame in enumerate(reader):
            checkpoint()
            try:
                result = scorer(frame, dict(request.global_parameters))
            except JobFailed:
                raise
            except Exception as error:
                raise JobFailed(f"the scorer failed on rows {rows + 1}-{rows + len(frame)}: "
                                f"{type(error).__name__}: {error}") from None
            for name, output in _frames_by_output(result, list(uploads)).items():
                if name in uploads:
                    uploads[name].write(output.to_csv(index=False, header=index == 0).encode("utf-8"))
            rows += len(frame)
    except pd.errors.EmptyDataError:
        raise JobFailed("the input blob is empty: a CSV with a header row is needed") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise JobFailed(f"the input blob is not a readable CSV: {error}") from None
    return rows


def _claim_runner(partition: str, job_id: str, runner_id: str, stale_seconds: int) -> dict | None:
    """Take the run for this runner, unless it ended or a live runner holds it."""
    store = get_store()
    for _ in range(10):
        run = runs.get_run(partition, job_id)
        if run is None or run["State"] != runs.RUNNING:
            return None
        heartbeat = run.get("HeartbeatAt")
        live = run.get("RunnerId") and heartbeat and clock.utcnow() - heartbeat < dt.timedelta(seconds=stale_seconds)
        if live:
            return None
        run.update({"RunnerId": runner_id, "HeartbeatAt": clock.utcnow(), "Attempts": (run.get("Attempts") or 0) + 1})
        try:
            store.replace(POOLS, run)
            return run
        except WriteConflict:
            continue
    return None


class _Lease:
    def __init__(self, run: dict, timeout_seconds: int, stale_seconds: int):
        self.run = run
        self.started = time.monotonic()
        self.last_beat = time.monotonic()
        self.timeout = timeout_seconds
        # Beat well inside the staleness limit, or a live runner would look dead and be replaced.
        self.beat_every = min(HEARTBEAT_EVERY, stale_seconds / 3)

    def checkpoint(self, force: bool = False) -> None:
        if time.monotonic() - self.started > self.timeout:
            raise JobFailed(f"stopped after the service's TimeoutSeconds of {self.timeout} s")
        since = time.monotonic() - self.last_beat
        # A beat under a second old still proves ownership: a takeover needs a stale heartbeat.
        if since < (min(FRESH_ENOUGH, self.beat_every) if force else self.beat_every):
            return
        self.run["HeartbeatAt"] = clock.utcnow()
        try:
            get_store().replace(POOLS, self.run)
        except WriteConflict:
            raise RunLost() from None
        self.last_beat = time.monotonic()


def _finish(partition: str, job_id: str, status: str, details: str, results: dict | None = None,
            still_ours=lambda run: True, known: dict | None = None) -> None:
    """End the run (if it has not ended and is still ours to end), then tick its pool. A run
    row this runner wrote last (`known`) is tried first; its etag tells if it changed since."""
    for _ in range(20):
        run, known = known or runs.get_run(partition, job_id), None
        if run is None or run["State"] not in (runs.RUNNING, runs.WAITING) or not still_ours(run):
            return
        try:
            freed = runs.end_run(run, status, details, results)
        except WriteConflict:
            continue
        runs.finalize(run)
        if freed:
            dispatch.tick(partition, run["PoolId"])
        return


def is_transient(error: AzureError) -> bool:
    """Worth another try: the storage service was unreachable, busy or failing, not refusing;
    or another writer committed the same output blob meanwhile, discarding this run's staged
    blocks (two jobs told to write one blob: the last to commit wins)."""
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        if _error_code(error) == "InvalidBlockList":
            return True
        return error.status_code in (408, 429) or error.status_code >= 500
    return isinstance(error, (ServiceRequestError, ServiceResponseError))


def _error_code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "none")


def describe_storage_error(error: AzureError) -> str:
    """Status and error code only: an SDK message can carry request URLs."""
    if isinstance(error, HttpResponseError):
        return f"status={error.status_code} code={_error_code(error)}"
    return f"error={type(error).__name__}"


def _let_go(run: dict) -> None:
    """After an unexpected failure, give the run back so the message's retry can take it."""
    run["RunnerId"] = ""
    try:
        get_store().replace(POOLS, run)
    except Exception:
        log.warning("run not released job=%s; it is retried once its heartbeat goes stale", run["JobId"])


def run_job(partition: str, job_id: str) -> None:
    settings = get_settings()
    runner_id = uuid.uuid4().hex
    run = _claim_runner(partition, job_id, runner_id, settings.run_stale_seconds)
    if run is None:
        log.info("run message skipped job=%s (ended, or a live runner holds it)", job_id)
        return
    log.info("run claimed job=%s pool=%s attempt=%s", job_id, run["PoolId"], run["Attempts"])
    job = run if run.get("Scorer") else get_store().get(JOBS, run["JobPartition"], job_id)
    started = time.monotonic()
    results = None
    try:
        scorer, timeout_seconds = _scorer_of(job, run)
        lease = _Lease(run, timeout_seconds, settings.run_stale_seconds)
        request = bes.request_from_stored(json.loads(job["Request"]))
        figures = score(request, load_scorer(scorer), settings.scoring_chunk_rows, runner_id, lease.checkpoint)
        lease.checkpoint(force=True)
        results = {name: bes.public_location(location, blob_endpoint(
            location.connection_string, location.base_location, location.sas_token))
            for name, location in request.outputs.items()}
        status = runs.FINISHED
        details = f"scored {figures['rows']} rows in {time.monotonic() - started:.2f} s"
    except RunLost:
        log.info("run stopped job=%s (cancelled or taken over)", job_id)
        return
    except JobFailed as failure:
        status, details = runs.FAILED, str(failure)
    except AzureError as error:
        if is_transient(error):
            # Not the job's fault: the run goes back and the message is retried (then poisoned).
            log.warning("run interrupted by storage job=%s %s", job_id, describe_storage_error(error))
            _let_go(run)
            raise
        log.warning("run failed on storage job=%s %s", job_id, describe_storage_error(error))
        status, details = runs.FAILED, f"a storage request failed ({describe_storage_error(error)}); check " \
                                       "the locations, the credentials and that the storage account is reachable"
    except BaseException:
        _let_go(run)
        raise
    log.info("job run done job=%s state=%s seconds=%.2f", job_id, status, time.monotonic() - started)
    _finish(partition, job_id, status, details, results,
            still_ours=lambda run: run["State"] == runs.RUNNING and run.get("RunnerId") == runner_id, known=run)


def _scorer_of(job: dict | None, run: dict) -> tuple[str, int]:
    """The scorer and timeout the job was submitted with (its service's, for older rows);
    `job` is the run row itself when it carries them."""
    if job is not None and job.get("Scorer"):
        return job["Scorer"], job.get("TimeoutSeconds") or services.DEFAULT_TIMEOUT_SECONDS
    service = services.get_service(run["SubscriptionId"], run["ServiceId"])
    if job is None or service is None:
        raise JobFailed("the job or its web service no longer exists")
    return service.scorer, service.timeout_seconds


def fail_poisoned(partition: str, job_id: str) -> None:
    """A run message that kept failing: end its job Failed and free the VM."""
    _finish(partition, job_id, runs.FAILED, "the job's run kept failing and was stopped; retry the job")
