"""A job's whole life as one state machine over its one row: pure functions, no storage.

A job row (`job|<id>` in its pool's partition, see `shared.layout`) holds the request, the
job's policies, its state and, once started, its execution. Each legal move is a function
from the rows it concerns to a `Move`: the changes to the job row, the entity-group
operations that make the move (all in the job's partition), and the push event it produces.
Every module that changes a job goes through here; a move that is not legal from the job's
state raises `IllegalMove`.

    NotStarted --start_now--> Running            (one idle VM, nobody waiting)
    NotStarted --enqueue----> Waiting            (a wait row, FIFO by start time)
    Waiting    --claim_vm---> Running            (the head of the queue takes an idle VM)
    Running    --claim_runner / heartbeat / checkpoint / fence / let_go / start_over--> Running
    Running    --end--------> Finished | Failed | Cancelled   (the VM released)
    Waiting    --expire / end_waiting / cancel--> Cancelled
    NotStarted --cancel-----> Cancelled

What fences what: a start or a claim is conditional on the VM row's etag (a VM takes one
job) and on the job's etag or its wait row's (a job takes one VM); every write a runner makes
is conditional on the job row's etag, so a cancel, a time-out or a takeover that wrote first
makes the runner's next write fail. A run whose row says `Committing` has passed the fence
and finishes; cancelling it then is too late.
"""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from shared import attempts, bes, billing, clock, costs, layout, predict, vms

NOT_STARTED, WAITING, RUNNING = "NotStarted", "Waiting", "Running"
FINISHED, FAILED, CANCELLED = "Finished", "Failed", "Cancelled"
TERMINAL = (FINISHED, FAILED, CANCELLED)
STATES = (NOT_STARTED, WAITING, RUNNING, *TERMINAL)

# Push event kinds, in the order a job can go through them (see `shared.events`).
SUBMITTED, QUEUED, STARTED, PROGRESS = "Submitted", "Queued", "Started", "Progress"
ENDED = "Ended"  # the one-time name of whichever of Finished, Failed or Cancelled came

CANCELLED_BY_CALLER = "cancelled by the caller"
CANCELLED_BEFORE_START = "cancelled before it was started"


class IllegalMove(Exception):
    """The move is not legal from the job's state."""

    def __init__(self, move: str, state: str):
        super().__init__(f"{move} is not a move from {state}")
        self.move = move
        self.state = state


class TooLate(IllegalMove):
    """The run has passed its commit fence: its outputs are being made visible."""


@dataclass(frozen=True)
class Event:
    kind: str
    fields: dict
    once: str | None = None
    unless: tuple[str, ...] = ()


@dataclass
class Move:
    """The job row's new fields, the operations that write the move (job row first), and the
    events (job id, event) to emit once they are written."""
    changes: dict
    operations: list[tuple] = field(default_factory=list)
    events: list[tuple[str, Event]] = field(default_factory=list)
    freed_vm: bool = False  # a VM went Idle: the pool's queue should be looked at


def _require(job: dict, move: str, *states: str) -> None:
    if job["Status"] not in states:
        raise IllegalMove(move, job["Status"])


def _job_write(job: dict, changes: dict, conditional: bool = True) -> tuple:
    """The job row's operation: a replace on its etag, or (fenced elsewhere) a merge."""
    job.update(changes)
    if conditional:
        return ("replace", job)
    return ("merge", {"PartitionKey": job["PartitionKey"], "RowKey": job["RowKey"], **changes})


def _notify(job: dict, event: Event) -> list[tuple[str, Event]]:
    return [(job["JobId"], event)] if job.get("NotificationUrl") else []


def new_job(partition: str, job_id: str, fields: dict, now: dt.datetime) -> Move:
    """Submit: the job row, NotStarted, with the request and policies it keeps."""
    row = {"PartitionKey": partition, "RowKey": layout.job_key(job_id), "JobId": job_id, "Status": NOT_STARTED,
           "CreatedAt": now, "Attempts": 0, **fields}
    return Move(row, [("create", row)])


def _running(job: dict, vm: dict, now: dt.datetime) -> dict:
    return {"Status": RUNNING, "VmKey": vm["RowKey"], "VmId": vm["VmId"], "StartTime": now, "HeartbeatAt": now,
            "RunnerId": "", "WaitKey": ""}


def _busy(vm: dict, job_id: str, now: dt.datetime) -> tuple:
    vm.update({"State": vms.BUSY, "JobId": job_id, "BusySince": now})
    return ("replace", vm)


def _started_event(job: dict, vm: dict) -> Event:
    return Event(STARTED, {"StatusCode": RUNNING, "VmId": vm["VmId"], "AzureBatchPoolId": job.get("PoolId") or None},
                 once=STARTED, unless=(ENDED,))


def start_now(job: dict, vm: dict, now: dt.datetime) -> Move:
    """NotStarted -> Running on an idle VM: the job on its etag, the VM on its."""
    _require(job, "start_now", NOT_STARTED)
    if vms.state_of(vm, now) != vms.IDLE:
        raise IllegalMove("start_now on a VM that is not idle", job["Status"])
    # Its run message carries the rows: that runner claims it with its first write.
    changes = {**_running(job, vm, now), "StartRequestedAt": now, "Carried": True}
    return Move(changes, [_job_write(job, changes), _busy(vm, job["JobId"], now)],
                _notify(job, _started_event(job, vm)))


def enqueue(job: dict, now: dt.datetime) -> Move:
    """NotStarted -> Waiting: a wait row whose key orders the queue by start time."""
    _require(job, "enqueue", NOT_STARTED)
    key = layout.wait_key(now, job["JobId"])
    deadline = attempts.queue_deadline(now, job.get("MaxQueuedSeconds"))
    changes = {"Status": WAITING, "WaitKey": key, "StartRequestedAt": now, "QueueDeadline": deadline}
    wait = {"PartitionKey": job["PartitionKey"], "RowKey": key, "State": WAITING, "JobId": job["JobId"],
            "PoolId": job.get("PoolId") or "", "Deadline": deadline,
            "MaxQueuedSeconds": job.get("MaxQueuedSeconds") or 0, "Notify": bool(job.get("NotificationUrl")) or None}
    return Move(changes, [_job_write(job, changes), ("create", wait)])


def claim_vm(wait: dict, vm: dict, now: dt.datetime) -> Move:
    """Waiting -> Running: the head of the queue takes an idle VM. The wait row's
    etag-conditional delete is what a concurrent cancel, expiry or claim of the job loses on,
    so the job row is merged without reading it."""
    if vms.state_of(vm, now) != vms.IDLE:
        raise IllegalMove("claim_vm on a VM that is not idle", WAITING)
    job = {"PartitionKey": wait["PartitionKey"], "RowKey": layout.job_key(wait["JobId"]), "JobId": wait["JobId"]}
    changes = _running(job, vm, now)
    event = Event(STARTED, {"StatusCode": RUNNING, "VmId": vm["VmId"], "AzureBatchPoolId": wait.get("PoolId") or None},
                  once=STARTED, unless=(ENDED,))
    return Move(changes, [_busy(vm, wait["JobId"], now), ("delete", wait), _job_write(job, changes, conditional=False)],
                [(wait["JobId"], event)] if wait.get("Notify") else [])


def record_outcome(job: dict, outcome: str, reason: str, now: dt.datetime) -> dict:
    """The changes that note how the current attempt ended (once per attempt)."""
    return {"AttemptOutcomes": attempts.with_outcome(job.get("AttemptOutcomes"), job.get("Attempts") or 0, outcome,
                                                     reason, job.get("AttemptStartedAt") or job.get("StartTime"), now,
                                                     clock.iso)}


@dataclass
class Claim:
    """What a runner may do with a run message: `take` the changes (a merge on the job's
    etag), or end the job (`end` names the details), or nothing."""
    take: dict | None = None
    give_up: str | None = None


def claim_runner(job: dict, runner_id: str, now: dt.datetime, stale_seconds: int, carried: bool = False,
                 again: bool = False, sent_by: tuple[str, ...] = ()) -> Claim:
    """A runner's claim of a Running job. A claim that follows a slice's hand-over continues
    the run; any other is a new attempt if MaxRetries allows one more (else the job gives up).
    Nothing to do when the job is not running or a live runner holds it, or when the job's
    first runner (the one that took the message its start sent, `carried`, which writes its
    claim with its first write) may still be working without having written it yet: until
    RUN_STALE_SECONDS after the start. A first run nobody claimed by then is begun by
    whichever message comes (its start's message waited in the queue). When the start's
    message comes round `again` (its invocation failed or its instance stopped), its first
    runner stopped before writing anything: that attempt is counted as lost. A message sent
    back by runners that storage stopped (`sent_by`) takes the run over from whichever of them
    holds it, which is gone, at once and as the same attempt."""
    if job["Status"] != RUNNING:
        return Claim()
    stale = dt.timedelta(seconds=stale_seconds)
    heartbeat = job.get("HeartbeatAt")
    taken_over = bool(job.get("RunnerId")) and job.get("RunnerId") in sent_by
    if job.get("RunnerId") and heartbeat and now - heartbeat < stale and not taken_over:
        return Claim()
    changes: dict = {}
    if _unclaimed_first_run(job):
        if again:
            changes = _first_runner_lost(job, now)
            job = {**job, **changes}
        elif not carried and now - job["StartTime"] < stale:
            return Claim()
    begun = job.get("Attempts") or 0
    new_attempt = not ((job.get("Continue") or taken_over) and begun)
    if new_attempt and begun:
        changes.update(record_outcome(job, attempts.INTERRUPTED, "its run came round again before the attempt "
                                                                 "reported an end (its worker may have stopped)", now))
        if not attempts.may_begin(begun, attempts.max_retries(job)):
            last = attempts.outcomes(changes["AttemptOutcomes"])[-1]["Reason"]
            return Claim(give_up=attempts.gave_up(begun, last))
    changes.update({"RunnerId": runner_id, "HeartbeatAt": now, "Continue": False,
                    "Attempts": begun + 1 if new_attempt else begun, "Slices": (job.get("Slices") or 0) + 1})
    if new_attempt:
        changes["AttemptStartedAt"] = now
    return Claim(take=changes)


def heartbeat(job: dict, now: dt.datetime, **progress) -> dict:
    """A runner's renewal of its lease, with its progress since the last checkpoint."""
    _require(job, "heartbeat", RUNNING)
    return {"HeartbeatAt": now, **progress}


def checkpoint(job: dict, position: dict, now: dt.datetime, hand_over: bool = False) -> dict:
    """What a slice has done, kept for the next one (and, handing over, the lease let go)."""
    _require(job, "checkpoint", RUNNING)
    changes = {**position, "HeartbeatAt": now}
    if hand_over:
        changes.update({"RunnerId": "", "Continue": True})
    return changes


def fence(job: dict, position: dict, now: dt.datetime) -> dict:
    """The commit fence: once this write wins, the job finishes; a cancel or time-out that
    wrote first makes it lose."""
    _require(job, "fence", RUNNING)
    return {**position, "Committing": True, "HeartbeatAt": now}


def pause(job: dict, now: dt.datetime) -> dict:
    """Storage stopped the run: the lease let go, keeping the last checkpoint, for the same
    attempt to go on from it once storage answers again (an outage is not the job's failure,
    so no attempt is used up; its TimeoutSeconds still bounds it)."""
    _require(job, "pause", RUNNING)
    return {"RunnerId": "", "Continue": True, "HeartbeatAt": now}


def let_go(job: dict, outcome: str, reason: str, now: dt.datetime) -> dict:
    """An interrupted attempt gives the run back, keeping its checkpoint, so another may take it."""
    _require(job, "let_go", RUNNING)
    return {**record_outcome(job, outcome, reason, now), "RunnerId": ""}


START_OVER = {"InputOffset": 0, "RowsScored": 0, "Chunks": 0, "OutputBlocks": "{}", "InputHeader": b"",
              "Committing": False, "RunnerId": "", "Continue": True}


def start_over(job: dict) -> dict:
    """Another writer replaced an output: score again from the start."""
    _require(job, "start_over", RUNNING)
    return dict(START_OVER)


def _unclaimed_first_run(job: dict) -> bool:
    """Started with its rows in its run message, and no claim written yet."""
    return bool(job.get("Carried")) and not job.get("Attempts")


# A job no runner holds (its run message is in the queue: sent by its start, a hand-over or
# a retry) may wait there as long as the queue is long; its message is only sent again, in
# case it was lost with an instance that stopped between writing the row and sending it,
# after this many RUN_STALE_SECONDS. Runs are claimed exclusively, so a second message does
# nothing but look.
QUEUED_STALE_FACTOR = 5


def _first_runner_lost(job: dict, now: dt.datetime) -> dict:
    """The first attempt, counted as lost: its runner stopped before its first write."""
    first = {"Attempts": 1, "AttemptStartedAt": job["StartTime"]}
    return {**first, **record_outcome({**job, **first}, attempts.WORKER_LOST, "its first runner stopped before it "
                                      "reported anything (its instance or worker stopped)", now)}


def stale(job: dict, now: dt.datetime, stale_seconds: int) -> dict | None:
    """A Running job the sweeper should send a run message for again, and the changes to
    write first (None if none): one whose runner's heartbeat is older than `stale_seconds`
    (its attempt noted as lost, so another runner may take it), or one no runner holds whose
    message may have been lost (nothing noted: waiting in the queue is no failure)."""
    if job["Status"] != RUNNING:
        return None
    last = job.get("HeartbeatAt") or job.get("StartTime")
    if last is None:
        return None
    if not job.get("RunnerId"):
        return {"HeartbeatAt": now} if now - last >= dt.timedelta(seconds=stale_seconds * QUEUED_STALE_FACTOR) else None
    if now - last < dt.timedelta(seconds=stale_seconds):
        return None
    return {**record_outcome(job, attempts.WORKER_LOST, f"no heartbeat for {stale_seconds} s (its instance or worker "
                                                        "stopped)", now), "HeartbeatAt": now, "RunnerId": ""}


def released(vm: dict | None, job: dict, now: dt.datetime) -> dict | None:
    """What the VM row becomes when its job ends: Idle again with the run among its recent
    ones (what predictions go by), or deleted if it was draining (None if the VM is not this
    job's)."""
    if vm is None or vm.get("JobId") != job["JobId"]:
        return None
    seconds = (now - job["StartTime"]).total_seconds() if job.get("StartTime") else 0.0
    recent = {"RecentRuns": predict.with_run(vm, now, seconds)}
    if vm["State"] == vms.DRAINING:
        return {**vms.retirement(now), **recent}
    return {"State": vms.IDLE, "JobId": "", "IdleSince": now, **recent}


def job_hour_rows(job: dict, end: dt.datetime) -> list[tuple]:
    """A pool job's whole seconds per hour, written with its end: what per-job cost is
    computed from (see `shared.costs`). Classic jobs are billed by their run time instead."""
    if job["PartitionKey"] == layout.CLASSIC_PARTITION or not job.get("StartTime"):
        return []
    start = job["StartTime"]
    # A job of less than a second still has a row (of 0 seconds), so it is listed.
    hours = costs.job_hours(start, end) or {billing.hour_of(start): 0}
    return [("upsert", {"PartitionKey": job["PartitionKey"], "RowKey": layout.job_hour_key(hour, job["JobId"]),
                        "JobId": job["JobId"], "ServiceId": job.get("ServiceId") or "", "VmId": job.get("VmId") or "",
                        "Hour": hour, "Seconds": seconds, "StartTime": start, "EndTime": end})
            for hour, seconds in hours.items()]


def secrets_kept(status: str) -> dict:
    """What an ended job keeps of its caller's secrets (`shared.bes`): its input's are no longer
    needed; its outputs' only while their results can be downloaded, which is while a Finished
    job's row is kept (each status read signs the outputs' read tokens with them)."""
    dropped = {bes.INPUT_SECRETS: ""}
    return dropped if status == FINISHED else {**dropped, bes.OUTPUT_SECRETS: ""}


def _ended_event(job: dict, status: str, details: str, attempts_made: int) -> Event:
    return Event(status, {"StatusCode": status, "Details": details or None, "Attempts": attempts_made}, once=ENDED)


def end(job: dict, status: str, details: str, now: dt.datetime, vm: dict | None = None,
        results: dict | None = None) -> Move:
    """A Running job reaches a terminal state in one transaction: the job on its etag, its VM
    released on its own, and its job-hour rows. Whoever wrote it then looks at the queue
    (`freed_vm`): writing before looking, as an enqueue does before its tick, leaves no
    waiting job behind an idle VM."""
    _require(job, "end", RUNNING)
    if status not in TERMINAL:
        raise IllegalMove(f"end as {status}", job["Status"])
    changes = {"Status": status, "EndTime": now, "Details": details, "Results": json.dumps(results or {}),
               "RunnerId": "", **record_outcome(job, status, details, now), **secrets_kept(status)}
    for progress in ("ProgressRows", "ProgressOffset"):  # what the row keeps is its checkpoint
        job.pop(progress, None)
    operations = [_job_write(job, changes), *job_hour_rows(job, now)]
    event = _notify(job, _ended_event(job, status, details, job.get("Attempts") or 0))
    after = released(vm, job, now)
    if after is None:
        return Move(changes, operations, event)
    assert vm is not None
    vm.update(after)
    return Move(changes, [*operations, ("replace", vm)], event, freed_vm=vm["State"] == vms.IDLE)


def wait_of(job: dict) -> dict:
    """The wait row of a waiting job as its job row names it (no etag: any version of it)."""
    return {"PartitionKey": job["PartitionKey"], "RowKey": job["WaitKey"], "JobId": job["JobId"],
            "Notify": bool(job.get("NotificationUrl")) or None}


def end_waiting(wait: dict, details: str, now: dt.datetime) -> Move:
    """Waiting -> Cancelled from its wait row: deleting the wait row is the fence (a claim
    deletes it too), so the job row is merged without reading it."""
    job = {"PartitionKey": wait["PartitionKey"], "RowKey": layout.job_key(wait["JobId"]), "JobId": wait["JobId"]}
    changes = {"Status": CANCELLED, "EndTime": now, "Details": details, "Results": "{}", "WaitKey": "",
               **secrets_kept(CANCELLED)}
    event = _ended_event(job, CANCELLED, details, 0)
    return Move(changes, [("delete", wait), _job_write(job, changes, conditional=False)],
                [(wait["JobId"], event)] if wait.get("Notify") else [])


def expire(wait: dict, now: dt.datetime) -> Move:
    """Waiting -> Cancelled once it has waited past its MaxQueuedSeconds, freeing its place."""
    if not attempts.waited_too_long(wait.get("Deadline"), now):
        raise IllegalMove("expire before the job's queue deadline", WAITING)
    return end_waiting(wait, attempts.too_long_details(wait.get("MaxQueuedSeconds") or 0), now)


def cancel(job: dict, now: dt.datetime, vm: dict | None = None, details: str = CANCELLED_BY_CALLER) -> Move:
    """The caller's cancel (or a pool's deletion): from any state but an ended one, and not
    once the run is committing its outputs."""
    state = job["Status"]
    if state == NOT_STARTED:
        changes = {"Status": CANCELLED, "EndTime": now, "Details": CANCELLED_BEFORE_START, "Results": "{}",
                   **secrets_kept(CANCELLED)}
        event = _ended_event(job, CANCELLED, CANCELLED_BEFORE_START, 0)
        return Move(changes, [_job_write(job, changes)], _notify(job, event))
    if state == WAITING:
        return end_waiting(wait_of(job), details, now)
    if state == RUNNING:
        if job.get("Committing"):
            raise TooLate("cancel", state)
        return end(job, CANCELLED, details, now, vm)
    raise IllegalMove("cancel", state)


def timed_out(job: dict, timeout: dt.timedelta, now: dt.datetime) -> bool:
    """Past the job's TimeoutSeconds since its first start, and not already committing."""
    return job["Status"] == RUNNING and not job.get("Committing") and now - job["StartTime"] > timeout


def timeout_details(timeout: dt.timedelta) -> str:
    return f"stopped after the service's TimeoutSeconds of {int(timeout.total_seconds())} s since the job started"


def time_out(job: dict, timeout: dt.timedelta, now: dt.datetime, vm: dict | None = None) -> Move:
    """Running -> Failed once past its TimeoutSeconds."""
    _require(job, "time_out", RUNNING)
    if not timed_out(job, timeout, now):
        raise IllegalMove("time_out before the job's timeout", job["Status"])
    return end(job, FAILED, timeout_details(timeout), now, vm)


def public_status(state: str) -> str:
    """BES's StatusCode: a waiting job has not started yet."""
    return NOT_STARTED if state == WAITING else state
