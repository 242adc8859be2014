"""Expected starts of waiting jobs."""
import datetime as dt

from shared import predict, vms

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.timezone.utc)


def vm(state: str, busy_for: float | None = None, ready_in: float | None = None) -> dict:
    row = {"VmId": "vm", "State": state, "ProvisionedAt": NOW - dt.timedelta(hours=1), "JobId": ""}
    if ready_in is not None:
        row.update(State=vms.PROVISIONING, ProvisionedAt=NOW + dt.timedelta(seconds=ready_in))
    if busy_for is not None:
        row.update(JobId="j", BusySince=NOW - dt.timedelta(seconds=busy_for))
    return row


def seconds(moments):
    return [(m - NOW).total_seconds() for m in moments]


def test_without_history_there_is_no_guess():
    estimate = predict.estimate(NOW, [vm(vms.IDLE)], 3, [])
    assert estimate.basis_name == predict.NO_HISTORY and estimate.starts == []
    assert estimate.basis() == {"Basis": "NoHistory", "RecentJobs": 0, "TypicalRunSeconds": None}


def test_a_pool_with_no_vm_that_can_take_work_says_so():
    estimate = predict.estimate(NOW, [vm(vms.DRAINING, busy_for=5)], 1, [10.0])
    assert estimate.basis_name == predict.POOL_AT_ZERO and estimate.starts == []


def test_waiting_jobs_take_vms_in_order_as_they_free_up():
    history = [10.0] * 5
    pool = [vm(vms.BUSY, busy_for=4), vm(vms.BUSY, busy_for=8)]
    estimate = predict.estimate(NOW, pool, 4, history)
    assert estimate.basis_name == predict.RECENT_JOBS and estimate.typical_seconds == 10
    assert seconds(estimate.starts) == [2, 6, 12, 16]


def test_idle_and_provisioning_vms_are_free_now_or_when_ready():
    estimate = predict.estimate(NOW, [vm(vms.IDLE, ready_in=30), vm(vms.IDLE)], 3, [20.0])
    assert seconds(estimate.starts) == [0, 20, 30]


def test_a_runaway_job_is_set_aside_but_the_usual_skew_counts():
    history = [5.0, 5.0, 6.0, 5.0, 600.0]
    assert predict.typical(history) == 5.25
    estimate = predict.estimate(NOW, [vm(vms.IDLE)], 2, history)
    assert seconds(estimate.starts) == [0, 5.25]
    skewed = [1.0] * 6 + [3.0] * 3 + [8.0]  # many short jobs, some long: all of them count
    assert predict.typical(skewed) == 2.3


def test_a_busy_vm_is_expected_free_by_what_longer_jobs_took():
    history = [10.0, 20.0, 40.0]
    # Running 15 s: jobs that ran longer took 20 and 40 s, 30 on average: 15 s left.
    assert predict.remaining(15, history, 20) == 15
    # Longer than every recent job: taken to end soon, not never.
    assert predict.remaining(50, history, 20) == 2
    free = predict.free_at(vm(vms.BUSY, busy_for=15), NOW, history, 20)
    assert (free - NOW).total_seconds() == 15


def test_a_vm_keeps_its_last_runs_newest_first():
    row = vm(vms.IDLE)
    for index in range(predict.RUNS_PER_VM + 5):
        row["RecentRuns"] = predict.with_run(row, NOW + dt.timedelta(seconds=index), float(index))
    kept = predict.recent_run_seconds([row], NOW + dt.timedelta(minutes=1))
    assert kept == [float(i) for i in reversed(range(5, predict.RUNS_PER_VM + 5))]


def test_recent_runs_merge_across_vms_newest_first_within_the_window():
    old, first, second = vm(vms.IDLE), vm(vms.IDLE), vm(vms.BUSY, busy_for=3)
    old["RecentRuns"] = predict.with_run(old, NOW - dt.timedelta(hours=predict.HISTORY_HOURS, seconds=1), 99.0)
    first["RecentRuns"] = predict.with_run(first, NOW - dt.timedelta(seconds=30), 1.0)
    second["RecentRuns"] = predict.with_run(second, NOW - dt.timedelta(seconds=10), 2.0)
    assert predict.recent_run_seconds([old, first, second], NOW) == [2.0, 1.0]  # the 99 s run is too old


def test_recent_runs_are_bounded_however_many_vms():
    rows = []
    for index in range(10):
        row = vm(vms.IDLE)
        for run in range(predict.RUNS_PER_VM):
            row["RecentRuns"] = predict.with_run(row, NOW - dt.timedelta(seconds=index * 100 + run), 5.0)
        rows.append(row)
    assert len(predict.recent_run_seconds(rows, NOW)) == predict.HISTORY_JOBS


def test_a_vm_without_runs_or_with_a_damaged_field_has_no_history():
    assert predict.recent_run_seconds([vm(vms.IDLE), {**vm(vms.IDLE), "RecentRuns": "not json"},
                                       {**vm(vms.IDLE), "RecentRuns": '{"a": 1}'}], NOW) == []
