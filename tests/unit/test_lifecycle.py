"""The job lifecycle: every state against every move, legal and illegal, as pure functions
over in-memory rows with an injected clock; and the job id and run message forms."""
import datetime as dt
import json

import pytest

from shared import attempts, bes, layout, lifecycle, moves, predict, vms
from shared.storage.tables import Row

T0 = dt.datetime(2026, 3, 1, 9, 0, 0, 250000, tzinfo=dt.timezone.utc)
PART = "sub|p"
TIMEOUT = dt.timedelta(seconds=60)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def vm(state=vms.IDLE, job_id="", ordinal=0) -> dict:
    return {"PartitionKey": PART, "RowKey": layout.vm_key(ordinal), "PoolId": "p", "VmId": f"vm-{ordinal:06d}",
            "State": state, "ProvisionedAt": T0, "CreatedAt": T0, "JobId": job_id}


def job(state=lifecycle.NOT_STARTED, **fields) -> dict:
    row = {"PartitionKey": PART, "RowKey": layout.job_key("j1"), "JobId": "j1", "Status": state, "PoolId": "p",
           "CreatedAt": T0, "Attempts": 0, "MaxQueuedSeconds": 0, "MaxRetries": 2, "ServiceId": "svc",
           "NotificationUrl": ""}
    if state == lifecycle.WAITING:
        row.update(WaitKey=layout.wait_key(T0, "j1"), QueueDeadline=None)
    if state == lifecycle.RUNNING:
        row.update(VmKey=layout.vm_key(0), VmId="vm-000000", StartTime=T0, HeartbeatAt=T0, RunnerId="", Attempts=1)
    if state in lifecycle.TERMINAL:
        row.update(EndTime=T0, StartTime=T0)
    row.update(fields)
    return row


def wait(job_id="j2", deadline=None, notify=None) -> dict:
    return {"PartitionKey": PART, "RowKey": layout.wait_key(T0, job_id), "State": lifecycle.WAITING,
            "JobId": job_id, "PoolId": "p", "Deadline": deadline, "MaxQueuedSeconds": 30, "Notify": notify}


def kinds(move) -> list[tuple[str, str]]:
    return [(kind, entity["RowKey"].split("|")[0]) for kind, entity in move.operations]


# The moves that take the job row, each given a job in some state; every other state must refuse them.
JOB_MOVES = {
    "start_now": (lambda j: lifecycle.start_now(j, vm(), at(1)), {lifecycle.NOT_STARTED}),
    "enqueue": (lambda j: lifecycle.enqueue(j, at(1)), {lifecycle.NOT_STARTED}),
    "heartbeat": (lambda j: lifecycle.heartbeat(j, at(1)), {lifecycle.RUNNING}),
    "checkpoint": (lambda j: lifecycle.checkpoint(j, {"InputOffset": 5}, at(1)), {lifecycle.RUNNING}),
    "fence": (lambda j: lifecycle.fence(j, {}, at(1)), {lifecycle.RUNNING}),
    "let_go": (lambda j: lifecycle.let_go(j, attempts.INTERRUPTED, "storage", at(1)), {lifecycle.RUNNING}),
    "start_over": (lambda j: lifecycle.start_over(j), {lifecycle.RUNNING}),
    "end": (lambda j: lifecycle.end(j, lifecycle.FINISHED, "", at(1), vm(vms.BUSY, "j1")), {lifecycle.RUNNING}),
    "cancel": (lambda j: lifecycle.cancel(j, at(1), vm(vms.BUSY, "j1")),
               {lifecycle.NOT_STARTED, lifecycle.WAITING, lifecycle.RUNNING}),
    "time_out": (lambda j: lifecycle.time_out(j, TIMEOUT, at(61), vm(vms.BUSY, "j1")), {lifecycle.RUNNING}),
}


@pytest.mark.parametrize("state", lifecycle.STATES)
@pytest.mark.parametrize("name", sorted(JOB_MOVES))
def test_every_move_is_legal_from_its_states_only(state, name):
    move, legal = JOB_MOVES[name]
    if state in legal:
        move(job(state))
    else:
        with pytest.raises(lifecycle.IllegalMove):
            move(job(state))


@pytest.mark.parametrize("state", lifecycle.STATES)
def test_a_runner_claims_only_a_running_job(state):
    claim = lifecycle.claim_runner(job(state), "r1", at(1), 30)
    assert (claim.take is not None) is (state == lifecycle.RUNNING)


@pytest.mark.parametrize("state", lifecycle.STATES)
def test_only_a_running_job_goes_stale(state):
    late = at(30 * lifecycle.QUEUED_STALE_FACTOR + 1)
    assert (lifecycle.stale(job(state), late, 30) is not None) is (state == lifecycle.RUNNING)
    assert (lifecycle.stale(job(state, RunnerId="r1"), late, 30) is not None) is (state == lifecycle.RUNNING)


def test_start_now_puts_the_job_on_the_vm_on_both_etags():
    row, machine = job(), vm()
    move = lifecycle.start_now(row, machine, at(1))
    assert kinds(move) == [("replace", "job"), ("replace", "vm")]
    assert row["Status"] == lifecycle.RUNNING and row["VmId"] == "vm-000000" and row["StartTime"] == at(1)
    assert machine["State"] == vms.BUSY and machine["JobId"] == "j1"
    assert move.events == []  # no NotificationUrl


def test_start_now_refuses_a_vm_that_is_not_idle():
    for state in (vms.BUSY, vms.DRAINING, vms.DELETED):
        with pytest.raises(lifecycle.IllegalMove):
            lifecycle.start_now(job(), vm(state), at(1))
    provisioning = {**vm(vms.PROVISIONING), "ProvisionedAt": at(5)}
    with pytest.raises(lifecycle.IllegalMove):
        lifecycle.start_now(job(), provisioning, at(1))
    lifecycle.start_now(job(), provisioning, at(6))  # provisioned meanwhile: idle by the clock


def test_enqueue_writes_a_wait_row_in_start_order_with_the_deadline():
    row = job(MaxQueuedSeconds=30, NotificationUrl="https://x/")
    move = lifecycle.enqueue(row, at(2))
    assert kinds(move) == [("replace", "job"), ("create", "q")]
    waiting = move.operations[1][1]
    assert waiting["Deadline"] == at(32) and waiting["Notify"] and waiting["RowKey"] == row["WaitKey"]
    assert row["Status"] == lifecycle.WAITING and lifecycle.public_status(row["Status"]) == lifecycle.NOT_STARTED


def test_claim_vm_is_fenced_by_the_wait_row_and_merges_the_job():
    head, machine = wait(notify=True), vm()
    move = lifecycle.claim_vm(head, machine, at(3))
    assert kinds(move) == [("replace", "vm"), ("delete", "q"), ("merge", "job")]
    assert move.operations[1][1] is head  # the wait row as read: deleted on its etag
    assert move.changes["Status"] == lifecycle.RUNNING and machine["JobId"] == "j2"
    assert [event.kind for _, event in move.events] == [lifecycle.STARTED]
    with pytest.raises(lifecycle.IllegalMove):
        lifecycle.claim_vm(wait(), vm(vms.BUSY, "j9"), at(3))


def test_end_releases_the_vm_and_writes_job_hours():
    row, machine = job(lifecycle.RUNNING), vm(vms.BUSY, "j1")
    move = lifecycle.end(row, lifecycle.FINISHED, "", at(4000), machine, {"output1": {}})
    assert kinds(move) == [("replace", "job"), ("upsert", "jobhour"), ("upsert", "jobhour"), ("replace", "vm")]
    assert move.freed_vm and machine["State"] == vms.IDLE and machine["JobId"] == ""
    seconds = [entity["Seconds"] for kind, entity in move.operations if kind == "upsert"]
    assert seconds == [3600, 400]  # whole seconds from 09:00:00 to 10:06:40, split by hour
    assert row["Status"] == lifecycle.FINISHED and json.loads(row["Results"]) == {"output1": {}}
    assert attempts.outcomes(row["AttemptOutcomes"])[-1]["Outcome"] == lifecycle.FINISHED
    assert predict.recent_run_seconds([machine], at(4000)) == [4000.0]  # what estimates go by


def test_a_draining_vm_is_deleted_when_its_job_ends():
    machine = vm(vms.DRAINING, "j1")
    move = lifecycle.end(job(lifecycle.RUNNING), lifecycle.FAILED, "x", at(10), machine)
    assert machine["State"] == vms.DELETED and machine["DeletedAt"] == at(10).replace(microsecond=0)
    assert not move.freed_vm  # nothing for the queue: the VM is gone
    assert predict.recent_run_seconds([machine], at(10)) == [10.0]  # its run still counts


def test_end_leaves_a_vm_that_is_not_the_jobs_alone():
    move = lifecycle.end(job(lifecycle.RUNNING), lifecycle.CANCELLED, "x", at(10), vm(vms.BUSY, "other"))
    assert ("replace", "vm") not in kinds(move)


def test_a_classic_job_writes_no_job_hours():
    row = {**job(lifecycle.RUNNING), "PartitionKey": layout.CLASSIC_PARTITION}
    move = lifecycle.end(row, lifecycle.FINISHED, "", at(10))
    assert kinds(move) == [("replace", "job")]


def test_every_way_of_ending_drops_the_secrets_the_job_no_longer_needs():
    """Input secrets go with any end; output secrets stay only where results can be downloaded."""
    finished = lifecycle.end(job(lifecycle.RUNNING), lifecycle.FINISHED, "", at(10), vm(vms.BUSY, "j1"))
    assert finished.changes[bes.INPUT_SECRETS] == "" and bes.OUTPUT_SECRETS not in finished.changes
    ended = [lifecycle.end(job(lifecycle.RUNNING), lifecycle.FAILED, "x", at(10), vm(vms.BUSY, "j1")),
             lifecycle.cancel(job(lifecycle.RUNNING), at(1), vm(vms.BUSY, "j1")),
             lifecycle.cancel(job(), at(1)), lifecycle.cancel(job(lifecycle.WAITING), at(1)),
             lifecycle.expire(wait(deadline=at(30)), at(30)),
             lifecycle.time_out(job(lifecycle.RUNNING), TIMEOUT, at(61), vm(vms.BUSY, "j1"))]
    for move in ended:
        assert move.changes[bes.INPUT_SECRETS] == move.changes[bes.OUTPUT_SECRETS] == ""


def test_end_refuses_a_state_that_is_not_terminal():
    with pytest.raises(lifecycle.IllegalMove):
        lifecycle.end(job(lifecycle.RUNNING), lifecycle.WAITING, "", at(1))


def test_cancel_from_each_state():
    not_started = job()
    move = lifecycle.cancel(not_started, at(1))
    assert kinds(move) == [("replace", "job")] and not_started["Details"] == lifecycle.CANCELLED_BEFORE_START
    move = lifecycle.cancel(job(lifecycle.WAITING), at(1))
    assert kinds(move) == [("delete", "q"), ("merge", "job")]
    assert move.changes["Status"] == lifecycle.CANCELLED
    move = lifecycle.cancel(job(lifecycle.RUNNING), at(1), vm(vms.BUSY, "j1"))
    assert move.changes["Status"] == lifecycle.CANCELLED and move.freed_vm
    with pytest.raises(lifecycle.TooLate):
        lifecycle.cancel(job(lifecycle.RUNNING, Committing=True), at(1), vm(vms.BUSY, "j1"))


def test_time_out_only_past_the_timeout_and_not_while_committing():
    running = job(lifecycle.RUNNING)
    assert not lifecycle.timed_out(running, TIMEOUT, at(60))
    with pytest.raises(lifecycle.IllegalMove):
        lifecycle.time_out(running, TIMEOUT, at(30))
    assert lifecycle.timed_out(running, TIMEOUT, at(61))
    assert not lifecycle.timed_out(job(lifecycle.RUNNING, Committing=True), TIMEOUT, at(61))
    move = lifecycle.time_out(job(lifecycle.RUNNING), TIMEOUT, at(61), vm(vms.BUSY, "j1"))
    assert move.changes["Status"] == lifecycle.FAILED and "TimeoutSeconds of 60 s" in move.changes["Details"]


def test_expire_only_past_the_deadline():
    with pytest.raises(lifecycle.IllegalMove):
        lifecycle.expire(wait(deadline=at(30)), at(29))
    with pytest.raises(lifecycle.IllegalMove):
        lifecycle.expire(wait(deadline=None), at(10 ** 6))
    move = lifecycle.expire(wait(deadline=at(30), notify=True), at(30))
    assert kinds(move) == [("delete", "q"), ("merge", "job")]
    assert "MaxQueuedSeconds of 30 s" in move.changes["Details"]
    assert [event.kind for _, event in move.events] == [lifecycle.CANCELLED]


def test_a_first_claim_is_attempt_one_and_a_hand_over_continues_it():
    claim = lifecycle.claim_runner(job(lifecycle.RUNNING, Attempts=0), "r1", at(1), 30)
    assert claim.take["Attempts"] == 1 and claim.take["RunnerId"] == "r1" and claim.take["AttemptStartedAt"] == at(1)
    handed = job(lifecycle.RUNNING, Attempts=1, Continue=True, Slices=1)
    claim = lifecycle.claim_runner(handed, "r2", at(2), 30)
    assert claim.take["Attempts"] == 1 and claim.take["Slices"] == 2 and "AttemptStartedAt" not in claim.take


def test_a_live_runner_keeps_its_job_and_a_stale_one_loses_it():
    held = job(lifecycle.RUNNING, RunnerId="r1", HeartbeatAt=at(10))
    assert lifecycle.claim_runner(held, "r2", at(20), 30).take is None
    claim = lifecycle.claim_runner(held, "r2", at(41), 30)
    assert claim.take["Attempts"] == 2
    assert attempts.outcomes(claim.take["AttemptOutcomes"])[0]["Outcome"] == attempts.INTERRUPTED


def test_a_claim_past_max_retries_gives_up():
    exhausted = job(lifecycle.RUNNING, Attempts=3, MaxRetries=2)
    claim = lifecycle.claim_runner(exhausted, "r1", at(1), 30)
    assert claim.take is None and claim.give_up.startswith("gave up after 3 attempts")


def test_stale_needs_a_heartbeat_older_than_the_limit():
    running = job(lifecycle.RUNNING, HeartbeatAt=at(0), RunnerId="r1")
    assert lifecycle.stale(running, at(29), 30) is None
    changes = lifecycle.stale(running, at(31), 30)
    assert changes["RunnerId"] == "" and attempts.outcomes(changes["AttemptOutcomes"])[0]["Outcome"] == \
        attempts.WORKER_LOST


def test_a_job_waiting_in_the_queue_for_a_runner_loses_nothing():
    # Handed over: its message is in the queue, however long that is.
    handed = job(lifecycle.RUNNING, HeartbeatAt=at(0), RunnerId="", Continue=True)
    limit = 30 * lifecycle.QUEUED_STALE_FACTOR
    assert lifecycle.stale(handed, at(31), 30) is None and lifecycle.stale(handed, at(limit - 1), 30) is None
    # Only long after is its message sent again (it may have been lost), with nothing noted.
    assert lifecycle.stale(handed, at(limit), 30) == {"HeartbeatAt": at(limit)}
    claim = lifecycle.claim_runner(handed, "r2", at(limit + 1), 30)
    assert claim.take["Attempts"] == 1 and "AttemptOutcomes" not in claim.take


def test_checkpoint_and_fence():
    running = job(lifecycle.RUNNING)
    assert lifecycle.checkpoint(running, {"InputOffset": 9}, at(1), hand_over=True) == {
        "InputOffset": 9, "HeartbeatAt": at(1), "RunnerId": "", "Continue": True}
    assert lifecycle.fence(running, {"RowsScored": 3}, at(1))["Committing"] is True


def test_events_go_only_to_jobs_with_a_notification_url():
    notified = job(NotificationUrl="https://receiver.example/")
    move = lifecycle.start_now(notified, vm(), at(1))
    assert [(job_id, event.kind, event.once) for job_id, event in move.events] == [
        ("j1", lifecycle.STARTED, lifecycle.STARTED)]
    ended = lifecycle.end(job(lifecycle.RUNNING, NotificationUrl="https://receiver.example/"), lifecycle.FAILED,
                          "why", at(2), vm(vms.BUSY, "j1"))
    assert [(event.kind, event.once, event.fields["Details"]) for _, event in ended.events] == [
        (lifecycle.FAILED, lifecycle.ENDED, "why")]


def test_job_ids_name_their_pool_and_sort_newest_first():
    pool_job, classic_job = layout.new_job_id(T0, "nightly-1"), layout.new_job_id(T0, None)
    assert layout.pool_of_job(pool_job) == "nightly-1" and layout.pool_of_job(classic_job) == ""
    assert layout.job_partition("sub", pool_job) == "sub|nightly-1"
    assert layout.job_partition("sub", classic_job) == layout.CLASSIC_PARTITION
    assert layout.new_job_id(at(1), "nightly-1") < pool_job
    for bad in ("", "x", pool_job + "/", pool_job.upper(), classic_job + "-", "0" * 30 + "-" + "a" * 65, None, 7):
        assert layout.pool_of_job(bad) is None and (bad is None or layout.job_partition("sub", bad) is None)


def test_a_run_message_carries_the_rows_it_was_written_as():
    row = Row({**job(lifecycle.RUNNING), "InputHeader": b"a,b\n"}, {"etag": "W/1"})
    machine = Row(vm(vms.BUSY, "j1"), {"etag": "W/2"})
    partition, job_id, carried, carried_vm = moves.job_of_message(json.dumps(moves.run_message(row, machine)).encode())
    assert (partition, job_id) == (PART, "j1") and carried == row and carried_vm == machine
    assert carried.metadata["etag"] == "W/1" and carried_vm.metadata["etag"] == "W/2"
    assert carried["StartTime"] == T0 and carried["InputHeader"] == b"a,b\n"
    plain = moves.run_message({"PartitionKey": PART, "JobId": "j1"})
    assert moves.job_of_message(json.dumps(plain).encode()) == (PART, "j1", None, None)
    huge = Row({**row, "Request": "x" * 50000}, {"etag": "W/1"})
    assert set(moves.run_message(huge, machine)) == {"Partition", "JobId"}  # too large to carry
    # The largest request a job keeps, full of characters JSON escapes, still fits once encoded.
    quoted = Row({**row, "Request": json.dumps({"q": '"' * 14000})}, {"etag": "W/1"})
    assert moves.encoded_size(moves.run_message(quoted, machine)) <= moves.MAX_MESSAGE_BYTES


def test_a_started_job_is_left_to_the_runner_its_message_carries_it_to():
    started = job(lifecycle.NOT_STARTED)
    lifecycle.start_now(started, vm(), at(0))
    assert started["Carried"] is True
    # Another message (a duplicate, a re-send) leaves it alone while that runner may be at work...
    assert lifecycle.claim_runner(started, "r2", at(3), 30).take is None
    # ...the carried one takes it...
    assert lifecycle.claim_runner(started, "r1", at(3), 30, carried=True).take["Attempts"] == 1
    # ...and once RUN_STALE_SECONDS have passed with no claim written, any message begins the
    # first attempt: the start's message waited in the queue, or its runner stopped before it
    # wrote anything (a run message is not lost for that: the host delivers it again).
    late = lifecycle.claim_runner(started, "r2", at(31), 30).take
    assert late["Attempts"] == 1 and "AttemptOutcomes" not in late
    # The sweeper sends it again only long after, in case it was lost, noting nothing.
    assert lifecycle.stale(started, at(31), 30) is None
    limit = 30 * lifecycle.QUEUED_STALE_FACTOR
    resent = lifecycle.stale(started, at(limit), 30)
    assert resent == {"HeartbeatAt": at(limit)}
    assert lifecycle.claim_runner({**started, **resent}, "r2", at(limit + 1), 30).take["Attempts"] == 1
    # The start's message delivered again (its invocation failed or its instance stopped):
    # its first runner stopped before writing anything, so that attempt counts as lost.
    again = lifecycle.claim_runner(started, "r4", at(3), 30, again=True).take
    assert again["Attempts"] == 2
    assert [(o["Attempt"], o["Outcome"]) for o in attempts.outcomes(again["AttemptOutcomes"])] == [
        (1, attempts.WORKER_LOST)]
    # A job a VM was claimed for from the queue has no carried runner: its message claims it.
    queued = job(lifecycle.RUNNING, Attempts=0)
    assert lifecycle.claim_runner(queued, "r3", at(1), 30).take["Attempts"] == 1


def test_a_run_sent_on_after_a_storage_outage_is_taken_over_at_once_as_the_same_attempt():
    held = job(lifecycle.RUNNING, RunnerId="r1", HeartbeatAt=at(10))
    # Anyone else waits for the heartbeat to go stale...
    assert lifecycle.claim_runner(held, "r3", at(11), 30, sent_by=("r2",)).take is None
    # ...but the message the stopped runner (or the one before it) sent takes the run over now.
    taken = lifecycle.claim_runner(held, "r3", at(11), 30, sent_by=("r0", "r1")).take
    assert taken["RunnerId"] == "r3" and taken["Attempts"] == 1 and "AttemptOutcomes" not in taken
    # A lease let go for the outage (the table answered) goes on as the same attempt too.
    paused = {**held, **lifecycle.pause(held, at(12))}
    assert paused["RunnerId"] == "" and paused["Continue"] is True
    assert lifecycle.claim_runner(paused, "r4", at(13), 30).take["Attempts"] == 1
    with pytest.raises(lifecycle.IllegalMove):
        lifecycle.pause(job(lifecycle.FINISHED), at(1))


def test_an_outage_message_names_the_runners_that_may_hold_the_lease():
    plain = json.dumps(moves.run_message({"PartitionKey": PART, "JobId": "j1"})).encode()
    assert moves.outage_of_message(plain) == ([], 0)
    sent = json.dumps({"Partition": PART, "JobId": "j1", "From": ["r1", "", 3, "r2"], "Waits": 2}).encode()
    assert moves.outage_of_message(sent) == (["r1", "r2"], 2)
    assert moves.outage_of_message(json.dumps({"Partition": PART, "JobId": "j1", "From": "r1"}).encode()) == ([], 0)
