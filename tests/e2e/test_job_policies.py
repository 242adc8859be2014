"""Job policies beside BES's fields: a cap on the time a job may wait for a VM
(`MaxQueuedSeconds`) and a number of retries after interruptions that are not the job's
fault (`MaxRetries`), each per job with a default of its web service."""
import pytest

from tests.e2e.harness import unique, wait_for
from tests.e2e.test_bad_input import error_of
from tests.e2e.test_jobs import census_csv, ready_pool


@pytest.fixture(scope="module")
def small_input(blobs):
    blobs.put("inputs", "census-400.csv", census_csv(400))
    return "inputs/census-400.csv"


def _status(api, tenant, job_id):
    return api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json()


def test_a_job_that_waits_too_long_is_cancelled_and_the_others_keep_their_order(api, tenant, blobs, small_input):
    pool = ready_pool(api, tenant, 1, unique("cap"))
    body = lambda **extra: {**blobs.job_body(small_input, f"outputs/{unique('cap')}.csv", pool, SecondsPerChunk=1.5),
                            **extra}
    holder, _ = api.run_job(tenant.jobs, tenant.api_key, body())
    capped, first = api.run_job(tenant.jobs, tenant.api_key, body(MaxQueuedSeconds=2))
    patient, _ = api.run_job(tenant.jobs, tenant.api_key, body())
    generous, _ = api.run_job(tenant.jobs, tenant.api_key, body(maxqueuedseconds=3600))
    assert first["QueuePosition"] == 1 and first["MaxQueuedSeconds"] == 2
    cancelled = wait_for(lambda: (s := _status(api, tenant, capped))["StatusCode"] == "Cancelled" and s, timeout=30)
    assert "MaxQueuedSeconds of 2 s" in cancelled["Details"] and cancelled["StartTime"] is None
    # Its place is freed: the next in line moves up, in the order they were started.
    places = [_status(api, tenant, job)["QueuePosition"] for job in (patient, generous)]
    if _status(api, tenant, holder)["StatusCode"] == "Running":
        assert places == [1, 2]
    finals = {job: api.wait_job(tenant.jobs, tenant.api_key, job, timeout=90) for job in (holder, patient, generous)}
    assert all(f["StatusCode"] == "Finished" for f in finals.values())
    starts = [finals[job]["StartTime"] for job in (holder, patient, generous)]
    assert starts == sorted(starts)
    assert finals[generous]["MaxQueuedSeconds"] == 3600 and finals[patient]["MaxQueuedSeconds"] is None


def test_a_service_default_applies_and_bad_values_are_refused(api, tenant_factory, blobs, small_input):
    tenant = tenant_factory()
    answer = api.put_service(tenant.subscription_id, tenant.service_id, MaxQueuedSeconds=1, MaxRetries=0)
    assert answer.status_code == 200 and answer.json()["MaxQueuedSeconds"] == 1 and answer.json()["MaxRetries"] == 0
    pool = ready_pool(api, tenant, 1, unique("dflt"))
    holder, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        small_input, f"outputs/{unique('d')}.csv", pool, SecondsPerChunk=1.5))
    waiting, started = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        small_input, f"outputs/{unique('d')}.csv", pool))
    assert started["MaxQueuedSeconds"] == 1 and started["MaxRetries"] == 0
    assert wait_for(lambda: _status(api, tenant, waiting)["StatusCode"] == "Cancelled", timeout=30)
    assert api.wait_job(tenant.jobs, tenant.api_key, holder)["StatusCode"] == "Finished"
    for field, value in (("MaxQueuedSeconds", 0), ("MaxQueuedSeconds", "60"), ("MaxRetries", -1),
                         ("MaxRetries", 21), ("MaxRetries", True)):
        refused = api.job(tenant.jobs, tenant.api_key, "POST", body={
            **blobs.job_body(small_input, "outputs/x.csv", pool), field: value})
        assert refused.status_code == 400 and error_of(refused) == "InvalidValue"
        assert refused.json()["error"]["details"][0]["target"] == field
        bad_default = api.put_service(tenant.subscription_id, tenant.service_id, **{field: value})
        assert bad_default.status_code == 400


def test_retries_rerun_an_interrupted_job_which_keeps_its_place(api, tenant_factory, blobs, small_input):
    tenant = tenant_factory()
    # The crash scorer stops its worker: an interruption that is not the job's own failure.
    api.put_service(tenant.subscription_id, tenant.service_id, scorer="tests.fixtures.scorers:crash")
    pool = ready_pool(api, tenant, 1, unique("retry"))
    crashing, _ = api.run_job(tenant.jobs, tenant.api_key, {
        **blobs.job_body(small_input, f"outputs/{unique('r')}.csv", pool), "MaxRetries": 2})
    api.put_service(tenant.subscription_id, tenant.service_id)  # later jobs score normally
    later, queued = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        small_input, f"outputs/{unique('r')}.csv", pool))
    assert queued["QueuePosition"] == 1
    done = api.wait_job(tenant.jobs, tenant.api_key, crashing, timeout=120)
    assert done["StatusCode"] == "Failed" and done["Attempts"] == 3
    assert done["Details"].startswith("gave up after 3 attempts (MaxRetries 2)")
    outcomes = done["AttemptOutcomes"]
    assert [o["Attempt"] for o in outcomes] == [1, 2, 3]
    assert all(o["Outcome"] == "Interrupted" and "SystemExit" in o["Reason"] for o in outcomes)
    assert all(o["StartTime"] <= o["EndTime"] for o in outcomes)
    # The job kept its VM between attempts: the later job started only once it had ended.
    after = api.wait_job(tenant.jobs, tenant.api_key, later)
    assert after["StatusCode"] == "Finished" and after["StartTime"] >= done["EndTime"]
    assert after["Attempts"] == 1 and [o["Outcome"] for o in after["AttemptOutcomes"]] == ["Finished"]


def test_a_job_that_fails_on_its_own_is_not_retried(api, tenant_factory, blobs, small_input):
    tenant = tenant_factory()
    api.put_service(tenant.subscription_id, tenant.service_id, scorer="tests.fixtures.scorers:wrong_shape",
                    MaxRetries=5)
    pool = ready_pool(api, tenant, 1, unique("own"))
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(small_input, f"outputs/{unique('o')}.csv",
                                                                         pool))
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert done["StatusCode"] == "Failed" and done["Attempts"] == 1
    assert [o["Outcome"] for o in done["AttemptOutcomes"]] == ["Failed"]
    assert done["AttemptOutcomes"][0]["Reason"] == done["Details"]
