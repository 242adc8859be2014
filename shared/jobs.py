"""The BES 2.0 job API of a web service: submit, start, status, cancel, list.

A job row (Jobs table, partition `<subscription>|<service>`) keeps the request and, once the
job has ended, its outcome. A job id sorts newest first, so listing is one range read.
While a started job waits or runs, its state lives in the pool partition's run row
(`shared.runs`); a classic job runs in the shared classic pool.
"""
from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import secrets as random_tokens

from shared import attempts, bes, clock, dispatch, events, layout, predict, runs, services, usage, vms
from shared.pools import vm_operations
from shared.errors import AlreadyEnded, InvalidOperation, InvalidRequest, NotFound, PayloadTooLarge
from shared.services import ServiceRef
from shared.settings import get_settings
from shared.storage import (JOBS, POOLS, WriteConflict, account_of, blob_endpoint, concurrently, get_store,
                            own_blob_endpoint, read_token, retry_on_conflict)
from shared.validation import is_valid_id

log = logging.getLogger(__name__)

API_VERSION = "2.0"
NOT_STARTED, STARTED = "NotStarted", "Started"
MAX_STORED_REQUEST_CHARS = 30000
MAX_PAGE = 1000
_EPOCH_CEILING_MS = 10 ** 14


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


def job_partition(service: ServiceRef) -> str:
    return f"{service.subscription_id}|{service.service_id}"


def new_job_id(now) -> str:
    """Newest first in key order: the inverted submit time in ms, then random hex."""
    inverted = _EPOCH_CEILING_MS - int(now.timestamp() * 1000)
    return f"{inverted:014d}{random_tokens.token_hex(8)}"


def _check_blob_hosts(request: bes.JobRequest) -> None:
    allowed = [*get_settings().blob_host_allowlist, own_blob_endpoint()]
    for name, location in [("Input", request.input), *((f"Outputs.{n}", l) for n, l in request.outputs.items())]:
        if not bes.host_allowed(blob_endpoint(account_of(location)), allowed):
            raise InvalidRequest(f"{name} points at a blob endpoint this deployment does not reach; allowed "
                                 "are its own storage account and BLOB_HOST_ALLOWLIST", "BlobHostNotAllowed", name)


def _read_pool(subscription_id: str, pool_id) -> dict | None:
    if not isinstance(pool_id, str) or not is_valid_id(pool_id):
        return None
    return get_store().get(POOLS, subscription_id, layout.pool_key(pool_id))


def submit_job(caller: ServiceRef, body: dict) -> str:
    """Record the job NotStarted. It keeps the service's scorer, timeout and plan as they are
    now: a job runs as its service was when it was submitted."""
    named_pool = bes.canonical(body, bes.REQUEST_FIELDS, "").get("AzureBatchPoolId")
    service, pool = concurrently(lambda: services.get_service(caller.subscription_id, caller.service_id),
                                 lambda: _read_pool(caller.subscription_id, named_pool))
    request = bes.parse_request(body, list(service.input_names), list(service.output_names))
    _check_blob_hosts(request)
    if request.pool_id is not None:
        if request.pool_id != named_pool:
            pool = _read_pool(service.subscription_id, request.pool_id)
        if pool is None or pool["State"] != "Active":
            # A pool of another subscription answers exactly like one that does not exist.
            raise NotFound(f"no pool {request.pool_id} for this web service's subscription", "PoolNotFound")
    now = clock.utcnow()
    job_id = new_job_id(now)
    if not request.outputs:
        request = dataclasses.replace(request, outputs=bes.own_outputs(
            service.output_names, get_settings().output_container, job_id, now))
    stored = json.dumps(bes.request_to_stored(request))
    if len(stored) > MAX_STORED_REQUEST_CHARS:
        raise PayloadTooLarge(f"the job definition is {len(stored)} characters; at most "
                              f"{MAX_STORED_REQUEST_CHARS} are kept", "JobTooLarge")
    notification_url = events.check_url(request.notification_url, "NotificationUrl") or service.notification_url
    get_store().insert(JOBS, {"PartitionKey": job_partition(service), "RowKey": job_id, "Status": NOT_STARTED,
                              "Request": stored, "PoolId": request.pool_id or "", "CreatedAt": now,
                              "Details": "", "Results": "{}", "Attempts": 0, "Scorer": service.scorer,
                              "TimeoutSeconds": service.timeout_seconds,
                              "MaxQueuedSeconds": _chosen(request.max_queued_seconds, service.max_queued_seconds) or 0,
                              "MaxRetries": _chosen(request.max_retries, service.max_retries),
                              "NotificationUrl": notification_url or "",
                              "BillingPlanId": service.billing_plan_id or ""})
    if notification_url:
        try:
            events.open_stream(job_id, service.subscription_id, service.service_id, notification_url)
        except Exception:
            log.exception("events not started job=%s", job_id)
    log.info("job submitted job=%s service=%s pool=%s", job_id, service.service_id, request.pool_id or "classic")
    return job_id


def _chosen(asked, default):
    """The job's own policy if it gave one, else its service's."""
    return default if asked is None else asked


def _job(service: ServiceRef, job_id: str) -> dict:
    job = get_store().get(JOBS, job_partition(service), job_id) if is_valid_id(job_id) else None
    if job is None:
        raise NotFound(f"no job {job_id} for this web service", "JobNotFound")
    return job


def _already_ended(job_id: str, status: str, starting: bool = False) -> InvalidOperation:
    if starting:
        return InvalidOperation(f"job {job_id} has already ended ({status}); submit a new job to run it again",
                                "CannotStartJob")
    return AlreadyEnded(f"job {job_id} has already ended ({status})", "JobAlreadyEnded")


def _job_not_ended(service: ServiceRef, job_id: str, starting: bool = False) -> dict:
    job = _job(service, job_id)
    if job["Status"] in runs.TERMINAL:
        raise _already_ended(job_id, job["Status"], starting)
    return job


def _placement(service: ServiceRef, job: dict) -> tuple[str, str]:
    if job["PoolId"]:
        return service.subscription_id, job["PoolId"]
    return layout.CLASSIC_PARTITION, layout.CLASSIC_POOL


def _new_run(service: ServiceRef, job: dict, partition: str, pool_id: str) -> dict:
    job_id = job["RowKey"]
    queued_at = clock.utcnow()
    return {"PartitionKey": partition, "RowKey": layout.run_key(job_id), "JobId": job_id,
            "JobPartition": job_partition(service), "PoolId": pool_id, "State": runs.WAITING,
            "WaitKey": layout.wait_key(pool_id, job["StartRequestedAt"], job_id),
            "ServiceId": service.service_id, "SubscriptionId": service.subscription_id, "QueuedAt": queued_at,
            "MaxQueuedSeconds": job.get("MaxQueuedSeconds") or 0, "MaxRetries": attempts.max_retries(job),
            "NotificationUrl": job.get("NotificationUrl") or "",
            "QueueDeadline": attempts.queue_deadline(queued_at, job.get("MaxQueuedSeconds")),
            "BillingPlanId": job.get("BillingPlanId") or "", "Attempts": 0, "VmKey": "", "RunnerId": "",
            # What the runner needs travels with the run, so running it reads no job row.
            "Request": job["Request"], "Scorer": job.get("Scorer") or "", "TimeoutSeconds": job.get("TimeoutSeconds")}


def start_job(service: ServiceRef, job_id: str) -> dict:
    """Start the job: it runs now on an idle VM or waits its turn. Starting twice is harmless.

    A first start marks the job row Started while it reads the pool's queue head and VMs; if
    nobody waits and a VM is idle, one transaction creates the run on that VM. Otherwise the
    job joins the queue and the pool is ticked."""
    store = get_store()

    def mark_started():
        """The job row, and for a first start whether anyone waits (None if it was started
        before) and the pool's VMs."""
        job = _job_not_ended(service, job_id, starting=True)
        if job["Status"] != NOT_STARTED:
            return job, None, []
        if not job["PoolId"]:
            ensure_classic_pool()
        partition, pool_id = _placement(service, job)
        job.update({"Status": STARTED, "StartRequestedAt": clock.utcnow()})
        _, heads, pool_vms = concurrently(
            lambda: store.replace(JOBS, job),
            lambda: store.rows(POOLS, partition, layout.wait_prefix(pool_id), limit=1),
            lambda: dispatch.live_vms(partition, pool_id))
        return job, bool(heads), pool_vms

    job, others_wait, pool_vms = retry_on_conflict(mark_started)
    partition, pool_id = _placement(service, job)
    if others_wait is None:  # started before: an ended run cannot start again; otherwise go on
        earlier = runs.get_run(partition, job_id)
        if earlier is not None and earlier["State"] in runs.TERMINAL:
            raise _already_ended(job_id, earlier["State"], starting=True)
    if others_wait is False:
        started = dispatch.start_at_once(_new_run(service, job, partition, pool_id), pool_vms)
        if started:
            return _running_view(job, *started)
    run = _new_run(service, job, partition, pool_id)
    wait = {"PartitionKey": partition, "RowKey": run["WaitKey"], "JobId": job_id, "PoolId": pool_id,
            "Deadline": run["QueueDeadline"], "Notify": bool(run["NotificationUrl"]) or None}
    try:
        store.transact(POOLS, [("create", run), ("create", wait)])
        log.info("job queued job=%s pool=%s", job_id, pool_id)
    except WriteConflict:
        pass  # started before, or cancelled meanwhile: the run row says which
    started = dispatch.tick(partition, pool_id)
    if job_id in started:
        return _running_view(job, *started[job_id])
    view = get_job(service, job_id)
    if view["QueuePosition"] and job.get("NotificationUrl"):
        events.emit(job_id, events.QUEUED, {"StatusCode": NOT_STARTED, "QueuePosition": view["QueuePosition"],
                                            "PendingReason": view["PendingReason"]},
                    once=events.QUEUED, unless=(events.STARTED, events.ENDED))
    return view


def _running_view(job: dict, vm_id: str, start_time) -> dict:
    return {**_job_view(job), "StatusCode": runs.RUNNING, "StartTime": clock.iso(start_time), "PendingReason": None,
            "VmId": vm_id, "Progress": {"RowsScored": 0, "InputBytesRead": 0, "InputBytes": None}}


def cancel_job(service: ServiceRef, job_id: str) -> dict:
    store = get_store()

    def attempt():
        job = _job_not_ended(service, job_id)
        if job["Status"] == NOT_STARTED:
            job.update({"Status": runs.CANCELLED, "EndTime": clock.utcnow(),
                        "Details": "cancelled before it was started"})
            store.replace(JOBS, job)
            if job.get("NotificationUrl"):
                events.emit(job_id, runs.CANCELLED, {"StatusCode": runs.CANCELLED, "Details": job["Details"]},
                            once=events.ENDED)
            return False
        partition, pool_id = _placement(service, job)
        run = runs.get_run(partition, job_id)
        if run is None:
            # The start is half done: a Cancelled run row makes sure it never runs. The row
            # stays a while (the sweeper removes it) so the start cannot create the run after all.
            run = {"PartitionKey": partition, "RowKey": layout.run_key(job_id), "JobId": job_id,
                   "JobPartition": job_partition(service), "PoolId": pool_id, "State": runs.CANCELLED,
                   "EndTime": clock.utcnow(), "Details": "cancelled by the caller", "Results": "{}",
                   "NotificationUrl": job.get("NotificationUrl") or ""}
            store.insert(POOLS, run)
            runs.copy_to_job(run)
            return False
        if run["State"] in runs.TERMINAL:
            runs.finalize(run)
            raise _already_ended(job_id, run["State"])
        if run.get("Committing"):
            log.info("cancel too late job=%s: its outputs are being committed", job_id)
            return False
        freed = runs.end_run(run, runs.CANCELLED, "cancelled by the caller")
        runs.finalize(run)
        return freed and (partition, pool_id)

    freed = retry_on_conflict(attempt)
    if freed:
        dispatch.tick(*freed)
    return get_job(service, job_id)


def _output_token(location: bes.Location, now, hours: int) -> str:
    """A token that reads this output: one made for this answer where the app can sign (an
    account key, or its own account by identity), else the token the caller gave for it
    (shown only to the service's API key holders, who gave it)."""
    if location.uses_sas:
        return "?" + location.sas_token.lstrip("?")
    account = account_of(location)
    token = read_token(account, location.container, location.blob, now, hours)
    if not token and account.sas:
        token = "?" + account.sas
    return token


def _results(stored_results: str | None, stored_request: str | None) -> dict | None:
    """Where each output was written, as BES shows it: the blob endpoint (ending in `/`),
    container/path and a token that reads that one blob, so that BaseLocation +
    RelativeLocation + SasBlobToken downloads it."""
    results = json.loads(stored_results or "{}")
    if not results:
        return None
    outputs = bes.request_from_stored(json.loads(stored_request)).outputs if stored_request else {}
    now, hours = clock.utcnow(), get_settings().result_sas_hours
    for name, shown in results.items():
        location = outputs.get(name)
        shown["SasBlobToken"] = "" if location is None else _output_token(location, now, hours)
    return results


# Why a job waits before any VM is involved.
AWAITING_START, START_INCOMPLETE = "AwaitingStart", "StartIncomplete"


def _details(status: str, details: str | None) -> str | None:
    """BES's Details: the reason a job failed or was cancelled, else null."""
    return (details or None) if status in (runs.FAILED, runs.CANCELLED) else None


def _job_view(job: dict) -> dict:
    status = job["Status"]
    return {"JobId": job["RowKey"], "StatusCode": status,
            "Results": _results(job.get("Results"), job.get("Request")),
            "Details": _details(status, job.get("Details")), "CreatedAt": clock.iso(job["CreatedAt"]),
            "StartTime": clock.iso(job.get("StartTime")), "EndTime": clock.iso(job.get("EndTime")),
            "AzureBatchPoolId": job["PoolId"] or None, "QueuePosition": None,
            "PendingReason": AWAITING_START if status == NOT_STARTED else None, "VmId": None,
            "Attempts": job.get("Attempts") or 0, "AttemptOutcomes": attempts.outcomes(job.get("AttemptOutcomes")),
            "MaxQueuedSeconds": job.get("MaxQueuedSeconds") or None, "MaxRetries": attempts.max_retries(job),
            "Cost": None, "EstimatedStartTime": None, "Estimate": None,
            "Progress": _final_progress(job) if status == runs.FINISHED else None}


def _started_view(job: dict, run: dict, place: dict | None) -> dict:
    """A started job as its run row tells it (the run row is the arbiter while it exists);
    `place` is a waiting job's queue position and the reason it waits."""
    view = _job_view(job)
    state = run["State"]
    view["StatusCode"] = NOT_STARTED if state == runs.WAITING else state
    view["StartTime"] = clock.iso(run.get("StartTime"))
    view["EndTime"] = clock.iso(run.get("EndTime"))
    view["Attempts"] = run.get("Attempts") or 0
    view["AttemptOutcomes"] = attempts.outcomes(run.get("AttemptOutcomes"))
    view["PendingReason"] = None
    if state == runs.WAITING:
        view.update(place or {})
    elif state == runs.RUNNING:
        view["VmId"] = run.get("VmId") or None
        view["Progress"] = progress(run)
    else:
        view["Details"] = _details(state, run.get("Details"))
        view["Results"] = _results(run.get("Results"), job.get("Request"))
        view["Progress"] = _final_progress(run) if state == runs.FINISHED else None
    return view


def _final_progress(row: dict) -> dict:
    """What a finished job did (as its run, or the job row it was copied to, kept it)."""
    size = row.get("InputBytes") or None
    return {"RowsScored": row.get("RowsScored") or 0, "InputBytesRead": size, "InputBytes": size}


def progress(run: dict) -> dict:
    """How far a running job has got, as of its last checkpoint."""
    return {"RowsScored": run.get("ProgressRows") or run.get("RowsScored") or 0,
            "InputBytesRead": run.get("ProgressOffset") or run.get("InputOffset") or 0,
            "InputBytes": run.get("InputBytes") or None}


def _half_started_view(service: ServiceRef, job: dict) -> dict:
    """A Started job without a run row: it ended and was finalized meanwhile, or its start
    stopped half way."""
    refreshed = _job(service, job["RowKey"])
    if refreshed["Status"] != STARTED:
        return _job_view(refreshed)
    return {**_job_view(job), "StatusCode": NOT_STARTED, "PendingReason": START_INCOMPLETE}


def _costed(job: dict) -> bool:
    return job["Status"] in runs.TERMINAL and bool(job["PoolId"] and job.get("StartTime") and job.get("EndTime"))


def _with_costs(service: ServiceRef, views: list[dict], rows: list[dict]) -> list[dict]:
    """Views of ended pool jobs (as their job rows say) with their `Cost`."""
    ended = [(row["PoolId"], row["RowKey"], row["StartTime"], row["EndTime"]) for row in rows if _costed(row)]
    found = usage.job_costs(service.subscription_id, ended) if ended else {}
    for view in views:
        if view["JobId"] in found:
            view["Cost"] = found[view["JobId"]]
    return views


def job_events(service: ServiceRef, job_id: str) -> dict:
    """The job's push events and their delivery (for the job's own service only)."""
    _job(service, job_id)
    return events.delivery_log(job_id)


def get_job(service: ServiceRef, job_id: str) -> dict:
    job = _job(service, job_id)
    if job["Status"] != STARTED:
        return _with_costs(service, [_job_view(job)], [job])[0]
    run = runs.get_run(_placement(service, job)[0], job_id)
    if run is None:
        return _half_started_view(service, job)
    place = None
    if run["State"] == runs.WAITING:
        place = _waiting_places(service, [(job, run)])[run["WaitKey"]]
    return _started_view(job, run, place)


# What a listing reads of a run: never its copy of the request.
_LISTED_RUN_FIELDS = ["RowKey", "State", "WaitKey", "VmId", "StartTime", "EndTime", "Details", "Results",
                      "Attempts", "AttemptOutcomes", "RowsScored", "InputOffset", "InputBytes", "ProgressRows", "ProgressOffset"]


def _runs_of(service: ServiceRef, started: list[dict]) -> dict[str, dict]:
    """The run rows of these started jobs by job id: one range read per partition, over the
    span of their ids (job ids and run keys sort alike)."""
    by_partition: dict[str, list[str]] = {}
    for job in started:
        by_partition.setdefault(_placement(service, job)[0], []).append(job["RowKey"])
    store = get_store()
    reads = [(lambda p=p, ids=ids: store.key_range(POOLS, p, layout.run_key(min(ids)), layout.run_key(max(ids)),
                                                    _LISTED_RUN_FIELDS))
             for p, ids in by_partition.items()]
    wanted = {job["RowKey"] for job in started}
    found = {}
    for rows in concurrently(*reads):
        for run in rows:
            job_id = run["RowKey"][len(layout.RUN_PREFIX):]
            if job_id in wanted:
                found[job_id] = run
    return found


def _waiting_places(service: ServiceRef, waiting: list[tuple[dict, dict]]) -> dict[str, dict]:
    """Where waiting runs stand, by wait key: 1-based queue position, pending reason and
    expected start. Per pool, side by side: one read of its wait keys up to the last one
    asked about, one of its live VMs and one of its recent jobs' run times."""
    by_pool: dict[tuple[str, str], list[str]] = {}
    for job, run in waiting:
        by_pool.setdefault(_placement(service, job), []).append(run["WaitKey"])
    store = get_store()
    pools = list(by_pool.items())
    reads = []
    for (partition, pool_id), keys in pools:
        reads.append(lambda p=partition, i=pool_id, k=max(keys): store.key_range(POOLS, p, layout.wait_prefix(i), k,
                                                                                 ["RowKey"]))
        classic = partition == layout.CLASSIC_PARTITION  # its reason needs no VMs
        reads.append(lambda p=partition, i=pool_id, c=classic: [] if c else dispatch.live_vms(p, i))
        reads.append(lambda p=partition, i=pool_id, c=classic: None if c else runs.recent_run_seconds(p, i))
    answers = concurrently(*reads)
    now = clock.utcnow()
    places = {}
    for index, ((partition, _), keys) in enumerate(pools):
        queue, pool_vms, durations = answers[3 * index: 3 * index + 3]
        queue = [row["RowKey"] for row in queue]
        reason = vms.pending_reason(pool_vms, now, classic=partition == layout.CLASSIC_PARTITION)
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
    """A page of the service's jobs, newest first. It costs a fixed number of reads, not a
    few per job: the page, the runs of its started jobs, the queues they wait in, and the
    cost of its ended pool jobs (four reads per pool)."""
    top = params.get("$top", "50")
    if not (top.isascii() and top.isdigit()) or not 1 <= int(top) <= MAX_PAGE:
        raise InvalidRequest(f"$top must be a whole number from 1 to {MAX_PAGE}", "InvalidValue")
    after = params.get("continuationToken")
    if after is not None and not is_valid_id(after):
        raise InvalidRequest("continuationToken is not one this service issued", "InvalidValue")
    rows = get_store().rows(JOBS, job_partition(service), "", after=after, limit=int(top) + 1)
    page = rows[:int(top)]
    started = [job for job in page if job["Status"] == STARTED]
    run_of = _runs_of(service, started) if started else {}
    waiting = [(job, run_of[job["RowKey"]]) for job in started
               if job["RowKey"] in run_of and run_of[job["RowKey"]]["State"] == runs.WAITING]
    places = _waiting_places(service, waiting) if waiting else {}
    views = []
    for job in page:
        run = run_of.get(job["RowKey"])
        if job["Status"] != STARTED:
            views.append(_job_view(job))
        elif run is None:
            views.append(_half_started_view(service, job))
        else:
            views.append(_started_view(job, run, places.get(run.get("WaitKey"))))
    return {"Jobs": _with_costs(service, views, page),
            "ContinuationToken": page[-1]["RowKey"] if len(rows) > int(top) else None}


_classic_slots_ensured: set[int] = set()


def ensure_classic_pool(recheck: bool = False) -> None:
    """The shared classic environment: a pool of CLASSIC_MAX_CONCURRENT_JOBS slots, made on
    first use and resized when the setting changes. Its slots are never billed as a pool.
    Once a process has made sure of it, it only checks again when asked (the sweeper does)."""
    store = get_store()
    slots = get_settings().classic_max_concurrent_jobs
    if slots in _classic_slots_ensured and not recheck:
        return
    partition, pool_id = layout.CLASSIC_PARTITION, layout.CLASSIC_POOL

    def attempt():
        now = clock.utcnow()
        pool = store.get(POOLS, partition, layout.pool_key(pool_id))
        if pool is None:
            pool = {"PartitionKey": partition, "RowKey": layout.pool_key(pool_id), "PoolId": pool_id,
                    "AccountId": "", "VmCount": slots, "State": "Active", "BillingPlanId": "", "ServiceId": "",
                    "CreatedAt": now, "NextVmOrdinal": 0, "BillingDone": True}
            operations = vm_operations(vms.ResizePlan(create=slots), pool, now, 0)
            store.transact(POOLS, [("create", pool), *operations])
            return True
        if pool["VmCount"] == slots:
            return False
        plan = vms.plan_resize(store.rows(POOLS, partition, layout.vm_prefix(pool_id)), slots, now)
        pool["VmCount"] = slots
        store.transact(POOLS, [("replace", pool), *vm_operations(plan, pool, now, 0)])
        return True

    if retry_on_conflict(attempt):
        log.info("classic environment sized slots=%s", slots)
    _classic_slots_ensured.add(slots)
