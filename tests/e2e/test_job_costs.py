"""Per-job cost on a dedicated pool: each job's own VM-seconds plus its share of the idle
ones, adding up to the pool's bill to the second, listed by job and by web service."""
import datetime as dt

from tests.e2e.harness import unique, wait_for
from tests.e2e.test_jobs import census_csv, ready_pool


def _whole_seconds(start: str, end: str) -> int:
    parse = lambda text: dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(microsecond=0)
    return int((parse(end) - parse(start)).total_seconds())


def test_jobs_costs_add_up_to_the_pools_bill(api, tenant, blobs):
    second = api.put_service(tenant.subscription_id, unique("svc2"))
    assert second.status_code == 201
    other_jobs = f"/api/subscriptions/{tenant.subscription_id}/services/{second.json()['ServiceId']}/jobs"
    pool = ready_pool(api, tenant, 2, unique("cost"))
    blobs.put("costs", "in.csv", census_csv(400))
    submitted = []
    for index, pause in enumerate((0.3, 1.2, 0.6, 1.5, 0.2)):
        jobs, key = (tenant.jobs, tenant.api_key) if index % 2 == 0 else (other_jobs, second.json()["ApiKey"])
        job_id, _ = api.run_job(jobs, key, blobs.job_body("costs/in.csv", f"costs/out-{index}.csv", pool,
                                                          SecondsPerChunk=pause))
        submitted.append((job_id, jobs, key))
    finals = {job_id: api.wait_job(jobs, key, job_id, timeout=90) for job_id, jobs, key in submitted}
    assert all(f["StatusCode"] == "Finished" for f in finals.values())
    resized = api.call("POST", f"{tenant.pools}/{pool}/resize", {"VmCount": 0}, key=tenant.primary)
    assert resized.status_code == 202
    billed = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()["ComputeSeconds"]
    usage_path = f"/api/accounts/{tenant.account_id}/usage?poolId={pool}"
    report = wait_for(lambda: (r := api.call("GET", usage_path, key=tenant.primary).json())["Total"]["VmSeconds"]
                      == billed and r, timeout=30)

    (entry,) = report["Pools"]
    for hour in entry["Hourly"]:
        assert hour["JobSeconds"] + hour["AllocatedIdleSeconds"] + hour["UnallocatedIdleSeconds"] == hour["VmSeconds"]
        if hour["JobSeconds"]:
            assert hour["UnallocatedIdleSeconds"] == 0, "idle time of an hour with jobs is all shared out"
    jobs = {job["JobId"]: job for job in report["Jobs"]}
    assert set(jobs) == set(finals) and not report["JobsTruncated"]
    assert sum(j["TotalSeconds"] for j in jobs.values()) + entry["UnallocatedIdleSeconds"] == billed
    assert sum(j["ComputeSeconds"] for j in jobs.values()) == entry["JobSeconds"]
    for job_id, final in finals.items():
        assert jobs[job_id]["ComputeSeconds"] == _whole_seconds(final["StartTime"], final["EndTime"])
    if len(entry["Hourly"]) == 1:  # idle time follows run time (shares are per hour)
        for longer in jobs.values():  # equal run times may differ by the one second a remainder gives
            for shorter in jobs.values():
                if longer["ComputeSeconds"] > shorter["ComputeSeconds"]:
                    assert longer["AllocatedIdleSeconds"] >= shorter["AllocatedIdleSeconds"]

    services = {s["ServiceId"]: s for s in report["Services"]}
    assert {s["Jobs"] for s in services.values()} == {3, 2}
    assert sum(s["TotalSeconds"] for s in services.values()) == sum(j["TotalSeconds"] for j in jobs.values())
    assert services[tenant.service_id]["Jobs"] == 3

    # A job's own status shows the same figures as the report.
    job_id, jobs_path, key = submitted[1]
    status = api.job(jobs_path, key, suffix=f"/{job_id}").json()
    cost = status["Cost"]
    assert (cost["ComputeSeconds"], cost["AllocatedIdleSeconds"]) == (jobs[job_id]["ComputeSeconds"],
                                                                     jobs[job_id]["AllocatedIdleSeconds"])
    assert cost["TotalSeconds"] == cost["ComputeSeconds"] + cost["AllocatedIdleSeconds"]
    assert cost["Final"] is False, "the hour is still open"
    listed = {job["JobId"]: job for job in api.job(jobs_path, key, suffix="").json()["Jobs"]}
    assert listed[job_id]["Cost"] == cost, "a listing shows the same cost"
