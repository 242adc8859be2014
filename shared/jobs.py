"""The BES 2.0 job API of a web service: submit, start, status, cancel, list.

A job is one row in its pool's partition (`shared.layout`), from submit to its end: its
request and policies, its state and its execution. Its id names the pool, so every call on
one job reads that row directly. Every change of state is a move of `shared.lifecycle`.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import logging
from functools import partial

from shared import (
    attempts,
    bes,
    clock,
    dispatch,
    events,
    layout,
    lifecycle,
    moves,
    pools,
    predict,
    reports,
    services,
    vms,
)
from shared.errors import AlreadyEnded, InvalidOperation, InvalidRequest, NotFound, PayloadTooLarge
from shared.services import ServiceRef
from shared.settings import get_settings
from shared.storage import (
    POOLS,
    account_of,
    blob_endpoint,
    concurrently,
    get_store,
    own_blob_endpoint,
    read_token,
    retry_on_conflict,
)
from shared.storage.tables import Row
from shared.validation import is_valid_id

log = logging.getLogger(__name__)

API_VERSION = "2.0"
MAX_STORED_REQUEST_CHARS = 30000
MAX_PAGE = 1000


def require_api_version(params) -> None:
    version = params.get("api-version")
    if version != API_VERSION:
        raise InvalidRequest(f"add ?api-version={API_VERSION} to the URL (got {version!r})", "InvalidApiVersion")


def authorize(route_params, params, token: str) -> ServiceRef:
    """The web service whose API key was presented, for a request with the right api-version.
    A Classic service may also be called at the classic address, where the workspace id is its
    subscription id: `/workspaces/{workspaceId}/services/{serviceId}/jobs...`."""
    classic_form = "workspaceId" in route_params
    subscription = route_params["workspaceId"] if classic_form else route_params["subscriptionId"]
    service = services.authenticate_key(subscription, route_params["serviceId"], token, classic_form)
    require_api_version(params)
    return service


def _check_blob_hosts(request: bes.JobRequest) -> None:
    allowed = [*get_settings().blob_host_allowlist, own_blob_endpoint()]
    for name, location in [("Input", request.input), *((f"Outputs.{n}", loc) for n, loc in request.outputs.items())]:
        if not bes.host_allowed(blob_endpoint(account_of(location)), allowed):
            raise InvalidRequest(f"{name} points at a blob endpoint this deployment does not reach; allowed "
                                 "are its own storage account and BLOB_HOST_ALLOWLIST", "BlobHostNotAllowed", name)


def _read_pool(subscription_id: str, pool_id) -> dict | None:
    if not isinstance(pool_id, str) or not is_valid_id(pool_id):
        return None
    return pools.pool_row(layout.pool_partition(subscription_id, pool_id))


def _chosen(asked, default):
    """The job's own policy if it gave one, else its service's."""
    return default if asked is None else asked


def submit_job(caller: ServiceRef, body: dict) -> str:
    """Record the job NotStarted in its pool's partition. It keeps the service's scorer,
    timeout and plan as they are now: a job runs as its service was when it was submitted."""
    named_pool = bes.canonical(body, bes.REQUEST_FIELDS, "").get("AzureBatchPoolId")
    service, pool = concurrently(lambda: services.get_service(caller.subscription_id, caller.service_id),
                                 lambda: _read_pool(caller.subscription_id, named_pool))
    request = bes.parse_request(body, list(service.input_names), list(service.output_names))
    _check_blob_hosts(request)
    partition = layout.CLASSIC_PARTITION
    if request.pool_id is not None:
        if request.pool_id != named_pool:
            pool = _read_pool(service.subscription_id, request.pool_id)
        if pool is None or pool["State"] != pools.ACTIVE:
            # A pool of another subscription answers exactly like one that does not exist.
            raise NotFound(f"no pool {request.pool_id} for this web service's subscription", "PoolNotFound")
        partition = pool["PartitionKey"]
    now = clock.utcnow()
    job_id = layout.new_job_id(now, request.pool_id)
    if not request.outputs:
        request = dataclasses.replace(request, outputs=bes.own_outputs(
            service.output_names, get_settings().output_container, job_id, now))
    stored = bes.request_to_stored(request)
    size = max(map(len, stored.values()))
    if size > MAX_STORED_REQUEST_CHARS:
        raise PayloadTooLarge(f"the job definition is {size} characters; at most "
                              f"{MAX_STORED_REQUEST_CHARS} are kept", "JobTooLarge")
    notification_url = events.check_url(request.notification_url, "NotificationUrl") or service.notification_url
    move = lifecycle.new_job(partition, job_id, {
        "SubscriptionId": service.subscription_id, "ServiceId": service.service_id, "PoolId": request.pool_id or "",
        **stored, "Details": "", "Results": "{}", "Scorer": service.scorer,
        "TimeoutSeconds": service.timeout_seconds,
        "MaxQueuedSeconds": _chosen(request.max_queued_seconds, service.max_queued_seconds) or 0,
        "MaxRetries": _chosen(request.max_retries, service.max_retries), "NotificationUrl": notification_url or "",
        "BillingPlanId": service.billing_plan_id or ""}, now)
    moves.write(move)
    if notification_url:
        try:
            events.open_stream(job_id, service.subscription_id, service.service_id, notification_url)
        except Exception:
            log.exception("events not started job=%s", job_id)
    log.info("job submitted job=%s service=%s pool=%s", job_id, service.service_id, request.pool_id or "classic")
    return job_id


def _partition_of(service: ServiceRef, job_id: str) -> str:
    partition = layout.job_partition(service.subscription_id, job_id)
    if partition is None:
        raise NotFound(f"no job {job_id} for this web service", "JobNotFound")
    return partition


def _job(service: ServiceRef, job_id: str) -> Row:
    """The job's row, if it is this service's (another's answers exactly like a missing one)."""
    job = moves.read_job(_partition_of(service, job_id), job_id)
    if job is None or not _owned(service, job):
        raise NotFound(f"no job {job_id} for this web service", "JobNotFound")
    return job


def _owned(service: ServiceRef, job: dict) -> bool:
    return job.get("SubscriptionId") == service.subscription_id and job.get("ServiceId") == service.service_id


def _already_ended(job_id: str, status: str, starting: bool = False) -> InvalidOperation:
    if starting:
        return InvalidOperation(f"job {job_id} has already ended ({status}); submit a new job to run it again",
                                "CannotStartJob")
    return AlreadyEnded(f"job {job_id} has already ended ({status})", "JobAlreadyEnded")


def start_job(service: ServiceRef, job_id: str) -> dict:
    """Start the job: it runs now on an idle VM or waits its turn. Starting twice is harmless.

    The job row and the pool's queue head (or, if nobody waits, its free VMs) are read side by
    side; if a VM is free, one transaction puts the job on it. Otherwise the job joins the
    queue and the pool is ticked."""
    partition = _partition_of(service, job_id)
    if partition == layout.CLASSIC_PARTITION:
        pools.ensure_classic_pool()

    def attempt():
        job, (others_wait, free) = concurrently(lambda: _job(service, job_id),
                                                lambda: dispatch.head_or_free_vms(partition))
        if job["Status"] in lifecycle.TERMINAL:
            raise _already_ended(job_id, job["Status"], starting=True)
        if job["Status"] != lifecycle.NOT_STARTED:
            return job, None
        if not others_wait:
            started = dispatch.start_at_once(job, free)
            if started:
                return job, started
            job = _job(service, job_id)
            if job["Status"] != lifecycle.NOT_STARTED:
                return job, None
        moves.write(lifecycle.enqueue(job, clock.utcnow()))
        log.info("job queued job=%s partition=%s", job_id, partition)
        return job, False

    job, started = retry_on_conflict(attempt)
    if started:
        return _running_view(job, *started)
    if started is False:
        ticked = dispatch.tick(partition)
        if job_id in ticked:
            return _running_view(job, *ticked[job_id])
    view = get_job(service, job_id)
    if started is False and view["QueuePosition"] and job.get("NotificationUrl"):
        events.emit(job_id, lifecycle.QUEUED, {"StatusCode": lifecycle.NOT_STARTED,
                                               "QueuePosition": view["QueuePosition"],
                                               "PendingReason": view["PendingReason"]},
                    once=lifecycle.QUEUED, unless=(lifecycle.STARTED, lifecycle.ENDED))
    return view


def _running_view(job: dict, vm_id: str, start_time) -> dict:
    return {**_job_view(job), "StatusCode": lifecycle.RUNNING, "StartTime": clock.iso(start_time),
            "PendingReason": None, "VmId": vm_id, "Progress": {"RowsScored": 0, "InputBytesRead": 0,
                                                                "InputBytes": None}}


def cancel_job(service: ServiceRef, job_id: str) -> dict:
    def attempt():
        job = _job(service, job_id)
        now = clock.utcnow()
        vm = None
        if job["Status"] == lifecycle.RUNNING:
            vm = get_store().get(POOLS, job["PartitionKey"], job["VmKey"])
        try:
            move = lifecycle.cancel(job, now, vm)
        except lifecycle.TooLate:
            log.info("cancel too late job=%s: its outputs are being committed", job_id)
            return None
        except lifecycle.IllegalMove:
            raise _already_ended(job_id, job["Status"]) from None
        moves.write(move)
        return move

    move = retry_on_conflict(attempt)
    if move is not None:
        after_end(job_id, move)
    return get_job(service, job_id)


def after_end(job_id: str, move: lifecycle.Move) -> None:
    """What follows an end that was written: when its VM went idle, a look at the pool's
    queue (one read), and the VM handed to its head if anyone waits; a classic job's run time
    to the ledger."""
    row = next(entity for _, entity in move.operations if entity["RowKey"] == layout.job_key(job_id))
    partition = row["PartitionKey"]
    if move.freed_vm:
        others_wait, _ = dispatch.head_or_free_vms(partition)
        if others_wait:
            dispatch.tick(partition)
    if partition == layout.CLASSIC_PARTITION and row.get("StartTime"):
        reports.record_classic_run(row)


def _output_token(location: bes.Location, now, hours: int) -> str:
    """A token that reads this output: one made for this answer where the app can sign (an
    account key, or its own account by identity), else the token the caller gave for it
    (shown only to the service's API key holders, who gave it)."""
    if location.uses_sas:
        return "?" + (location.sas_token or "").lstrip("?")
    account = account_of(location)
    token = read_token(account, location.container, location.blob, now, hours)
    if not token and account.sas:
        token = "?" + account.sas
    return token


def _results(job: dict) -> dict | None:
    """Where each output was written, as BES shows it: the blob endpoint (ending in `/`),
    container/path and a token that reads that one blob, so that BaseLocation +
    RelativeLocation + SasBlobToken downloads it."""
    results = json.loads(job.get("Results") or "{}")
    if not results:
        return None
    outputs = bes.outputs_from_stored(job) if job.get(bes.REQUEST) else {}
    now, hours = clock.utcnow(), get_settings().result_sas_hours
    for name, shown in results.items():
        location = outputs.get(name)
        shown["SasBlobToken"] = "" if location is None else _output_token(location, now, hours)
    return results


# Why a job waits before any VM is involved.
AWAITING_START = "AwaitingStart"


def _details(status: str, details: str | None) -> str | None:
    """BES's Details: the reason a job failed or was cancelled, else null."""
    return (details or None) if status in (lifecycle.FAILED, lifecycle.CANCELLED) else None


def _final_progress(job: dict) -> dict:
    """What a finished job did."""
    size = job.get("InputBytes") or None
    return {"RowsScored": job.get("RowsScored") or 0, "InputBytesRead": size, "InputBytes": size}


def progress(job: dict) -> dict:
    """How far a running job has got, as of its last heartbeat or checkpoint."""
    return {"RowsScored": job.get("ProgressRows") or job.get("RowsScored") or 0,
            "InputBytesRead": job.get("ProgressOffset") or job.get("InputOffset") or 0,
            "InputBytes": job.get("InputBytes") or None}


def _job_view(job: dict, place: dict | None = None) -> dict:
    """A job as BES shows it, with ours beside; `place` is a waiting job's queue position,
    pending reason and expected start."""
    state = job["Status"]
    view = {"JobId": job["JobId"], "StatusCode": lifecycle.public_status(state),
            "Results": _results(job) if state == lifecycle.FINISHED else None,
            "Details": _details(state, job.get("Details")), "CreatedAt": clock.iso(job["CreatedAt"]),
            "StartTime": clock.iso(job.get("StartTime")), "EndTime": clock.iso(job.get("EndTime")),
            "AzureBatchPoolId": job.get("PoolId") or None, "QueuePosition": None,
            "PendingReason": AWAITING_START if state == lifecycle.NOT_STARTED else None, "VmId": None,
            "Attempts": job.get("Attempts") or 0, "AttemptOutcomes": attempts.outcomes(job.get("AttemptOutcomes")),
            "MaxQueuedSeconds": job.get("MaxQueuedSeconds") or None, "MaxRetries": attempts.max_retries(job),
            "Cost": None, "EstimatedStartTime": None, "Estimate": None,
            "Progress": _final_progress(job) if state == lifecycle.FINISHED else None}
    if state == lifecycle.WAITING:
        view.update(place or {})
    elif state == lifecycle.RUNNING:
        view["VmId"] = job.get("VmId") or None
        view["Progress"] = progress(job)
    return view


def _costed(job: dict) -> bool:
    return job["Status"] in lifecycle.TERMINAL and bool(job.get("PoolId") and job.get("StartTime")
                                                        and job.get("EndTime"))


def _with_costs(views: list[dict], rows: list[dict]) -> list[dict]:
    """Views of ended pool jobs with their `Cost`."""
    ended = [row for row in rows if _costed(row)]
    found = reports.job_costs(ended) if ended else {}
    for view in views:
        if view["JobId"] in found:
            view["Cost"] = found[view["JobId"]]
    return views


def job_events(service: ServiceRef, job_id: str) -> dict:
    """The job's push events and their delivery (for the job's own service only)."""
    _job(service, job_id)
    return events.delivery_log(job_id)


def _views(rows: list[dict]) -> list[dict]:
    waiting = [row for row in rows if row["Status"] == lifecycle.WAITING]
    places = _waiting_places(waiting) if waiting else {}
    return _with_costs([_job_view(row, places.get(row.get("WaitKey") or "")) for row in rows], rows)


def get_job(service: ServiceRef, job_id: str) -> dict:
    return _views([_job(service, job_id)])[0]


def _waiting_places(waiting: list[dict]) -> dict[str, dict]:
    """Where waiting jobs stand, by wait key: 1-based queue position, pending reason and
    expected start. Per pool, side by side: one read of its wait keys up to the last one
    asked about and one of its live VMs (which also hold its recent run times)."""
    by_pool: dict[str, list[str]] = {}
    for job in waiting:
        by_pool.setdefault(job["PartitionKey"], []).append(job["WaitKey"])
    store = get_store()
    partitions = list(by_pool.items())
    reads = []
    for partition, keys in partitions:
        classic = partition == layout.CLASSIC_PARTITION  # its reason needs no VMs
        last = max(keys)
        reads += [lambda p=partition, k=last: store.rows(POOLS, p, layout.WAIT_PREFIX, before=k + "~",
                                                         select=["RowKey"]),
                  lambda p=partition, c=classic: [] if c else dispatch.live_vms(p)]
    answers = concurrently(*reads)
    now = clock.utcnow()
    places = {}
    for index, (partition, keys) in enumerate(partitions):
        queue, pool_vms = answers[2 * index: 2 * index + 2]
        classic = partition == layout.CLASSIC_PARTITION
        durations = None if classic else predict.recent_run_seconds(pool_vms, now)
        queue = [row["RowKey"] for row in queue]
        reason = vms.pending_reason(pool_vms, now, classic=classic)
        positions = {key: bisect.bisect_left(queue, key) + 1 for key in keys}
        estimate = None if durations is None else predict.estimate(now, pool_vms, max(positions.values()), durations)
        for key, position in positions.items():
            places[key] = {"QueuePosition": position, "PendingReason": reason, **estimate_view(estimate, position)}
    return places


def estimate_view(estimate: predict.Estimate | None, position: int) -> dict:
    """A waiting job's expected start (None for classic jobs, or with no basis to go by)."""
    if estimate is None:
        return {"EstimatedStartTime": None, "Estimate": None}
    start = estimate.starts[position - 1] if len(estimate.starts) >= position else None
    return {"EstimatedStartTime": clock.iso(start), "Estimate": estimate.basis()}


def list_jobs(service: ServiceRef, params) -> dict:
    """A page of the service's jobs, newest first. Ids sort newest first, so the page is the
    lowest ids over the subscription's pool partitions and the classic one: their keys are
    read side by side (keys only, filtered by service), merged, and then the page's rows
    are read, one range per partition they fall in; then the queues of its waiting jobs and
    the cost of its ended pool jobs."""
    top = params.get("$top", "50")
    if not (top.isascii() and top.isdigit()) or not 1 <= int(top) <= MAX_PAGE:
        raise InvalidRequest(f"$top must be a whole number from 1 to {MAX_PAGE}", "InvalidValue")
    after = params.get("continuationToken")
    if after is not None and layout.pool_of_job(after) is None:
        raise InvalidRequest("continuationToken is not one this service issued", "InvalidValue")
    size = int(top)
    partitions = [*pools.partitions_of(service.subscription_id), layout.CLASSIC_PARTITION]
    store = get_store()
    mine = "ServiceId eq @service and SubscriptionId eq @subscription"
    ids = {"service": service.service_id, "subscription": service.subscription_id}
    found = concurrently(*[partial(store.rows, POOLS, p, layout.JOB_PREFIX, limit=size + 1, select=["RowKey"],
                                   after=layout.job_key(after) if after else None, condition=mine, parameters=ids)
                           for p in partitions])
    keys = sorted((row["RowKey"], partition) for partition, rows in zip(partitions, found, strict=True)
                  for row in rows)
    spans: dict[str, tuple[str, str]] = {}
    for key, partition in keys[:size]:
        low, high = spans.get(partition, (key, key))
        spans[partition] = (min(low, key), max(high, key))
    pages = concurrently(*[partial(store.key_range, POOLS, p, low, high + "~", condition=mine, parameters=ids)
                           for p, (low, high) in spans.items()]) if spans else []
    page = sorted((row for rows in pages for row in rows), key=lambda row: row["RowKey"])[:size]
    return {"Jobs": _views(page), "ContinuationToken": page[-1]["JobId"] if len(keys) > size and page else None}
