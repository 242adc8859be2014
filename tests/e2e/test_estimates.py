"""A waiting job's expected start, from the pool's VMs and its recent jobs; honest when there
is nothing to go by."""
import datetime as dt

from tests.e2e.harness import unique
from tests.e2e.test_jobs import census_csv, ready_pool


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_waiting_jobs_get_an_expected_start_once_the_pool_has_history(api, tenant, blobs):
    blobs.put("estimates", "in.csv", census_csv(200))
    pool = ready_pool(api, tenant, 1, unique("est"))
    body = lambda pause: blobs.job_body("estimates/in.csv", f"estimates/{unique('o')}.csv", pool,
                                        SecondsPerChunk=pause)

    # Nothing has run on the pool yet: no guess, and the answer says why.
    first, _ = api.run_job(tenant.jobs, tenant.api_key, body(1.0))
    blind, queued = api.run_job(tenant.jobs, tenant.api_key, body(1.0))
    assert queued["StatusCode"] == "NotStarted" and queued["EstimatedStartTime"] is None
    assert queued["Estimate"] == {"Basis": "NoHistory", "RecentJobs": 0, "TypicalRunSeconds": None}
    for job_id in (first, blind):
        api.wait_job(tenant.jobs, tenant.api_key, job_id)

    # Two jobs have run: a job behind a running one, and one behind it, get expected starts.
    running, _ = api.run_job(tenant.jobs, tenant.api_key, body(5.0))  # holds the VM while the test looks
    second, _ = api.run_job(tenant.jobs, tenant.api_key, body(0.2))
    third, _ = api.run_job(tenant.jobs, tenant.api_key, body(0.2))
    asked = dt.datetime.now(dt.timezone.utc)
    # One listing estimates both from one look at the pool, so their gap is exact.
    listed = {j["JobId"]: j for j in api.job(tenant.jobs, tenant.api_key).json()["Jobs"]}
    statuses = [listed[job] for job in (second, third)]
    own = api.job(tenant.jobs, tenant.api_key, suffix=f"/{second}").json()
    pool_view = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert [s["QueuePosition"] for s in statuses] == [1, 2]
    assert own["EstimatedStartTime"] is not None and own["Estimate"] == statuses[0]["Estimate"]
    estimates = [_at(s["EstimatedStartTime"]) for s in statuses]
    basis = statuses[0]["Estimate"]
    assert basis["Basis"] == "RecentJobs" and basis["RecentJobs"] == 2 and basis["TypicalRunSeconds"] > 0
    assert asked - dt.timedelta(seconds=1) <= estimates[0] < estimates[1]
    # The second waits for the first's typical run time after the first is expected to start.
    gap = (estimates[1] - estimates[0]).total_seconds()
    assert abs(gap - basis["TypicalRunSeconds"]) < 0.01
    assert pool_view["QueueDrainsAt"] is not None and pool_view["Estimate"]["Basis"] == "RecentJobs"
    until = (_at(pool_view["QueueDrainsAt"]) - _at(pool_view["AsOf"])).total_seconds()
    assert abs(pool_view["QueueDrainsInSeconds"] - max(0.0, until)) <= 1
    assert abs((_at(pool_view["QueueDrainsAt"]) - estimates[1]).total_seconds()) < 5

    finals = [api.wait_job(tenant.jobs, tenant.api_key, job) for job in (running, second, third)]
    assert all(f["StatusCode"] == "Finished" for f in finals)
    assert finals[2]["EstimatedStartTime"] is None and finals[2]["Estimate"] is None, "only while it waits"
    empty = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert empty["QueueDrainsAt"] is None and empty["QueueDrainsInSeconds"] is None
    assert empty["Estimate"]["RecentJobs"] == 5
