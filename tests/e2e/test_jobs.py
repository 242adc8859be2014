"""The BES job API end to end: pools run jobs at once or in FIFO order; classic jobs share."""
import datetime as dt
import io
import time

import pandas as pd
import pytest
import requests

from samples import census
from tests.e2e.conftest import VM_PROVISIONING_SECONDS
from tests.e2e.harness import as_it_stands, costs_progress, unique, wait_for
from tests.e2e.test_pools import create


def census_csv(rows: int, seed: int = 1) -> bytes:
    return "".join(census.generate_csv(rows, seed)).encode()


@pytest.fixture(scope="module")
def sample_input(blobs):
    """A small census file (1,000 rows: five chunks) shared by the tests."""
    blobs.put("inputs", "census-1000.csv", census_csv(1000))
    return "inputs/census-1000.csv"


def ready_pool(api, tenant, vm_count: int, pool_id: str = "pool") -> str:
    assert create(api, tenant, vm_count, pool_id).status_code == 201
    wait_for(lambda: api.call("GET", f"{tenant.pools}/{pool_id}", key=tenant.primary).json()["VmCounts"]["Idle"]
             == vm_count, timeout=VM_PROVISIONING_SECONDS + 15)
    return pool_id


def test_job_on_a_pool_with_a_free_vm_runs_at_once_and_scores(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 2)
    output = f"outputs/{unique('scored')}.csv"
    job_id, started = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(sample_input, output, pool))
    assert started["StatusCode"] == "Running" and started["AzureBatchPoolId"] == pool
    assert started["QueuePosition"] is None and started["StartTime"]
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert done["StatusCode"] == "Finished", done
    assert done["CreatedAt"] <= done["StartTime"] <= done["EndTime"]
    assert done["Results"]["output1"]["RelativeLocation"] == output
    assert done["Results"]["output1"]["ConnectionString"] is None
    scored = pd.read_csv(io.BytesIO(blobs.get(*output.split("/", 1))))
    original = pd.read_csv(io.BytesIO(blobs.get(*sample_input.split("/", 1))))
    assert len(scored) == len(original) == 1000
    assert list(scored.columns) == census.COLUMNS + ["Scored Labels", "Scored Probabilities"]
    expected = census.score(original, {})
    assert scored["Scored Labels"].tolist() == expected["Scored Labels"].tolist()
    pool_after = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert pool_after["VmCounts"]["Idle"] == 2 and pool_after["RunningJobs"] == 0


def test_results_carry_a_token_that_reads_only_that_output(api, tenant, blobs, sample_input):
    """As a BES client reads its outputs: BaseLocation + RelativeLocation + SasBlobToken."""
    pool = ready_pool(api, tenant, 1)
    output = f"outputs/{unique('read-back')}.csv"
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(sample_input, output, pool))
    result = api.wait_job(tenant.jobs, tenant.api_key, job_id)["Results"]["output1"]
    url = result["BaseLocation"] + result["RelativeLocation"] + result["SasBlobToken"]
    assert "sp=r&" in result["SasBlobToken"] and "sr=b&" in result["SasBlobToken"]
    assert requests.get(url, timeout=10).content == blobs.get(*output.split("/", 1))
    assert requests.put(url, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10).status_code == 403
    other = result["BaseLocation"] + sample_input + result["SasBlobToken"]
    assert requests.get(other, timeout=10).status_code == 403
    listed = api.job(tenant.jobs, tenant.api_key).json()["Jobs"][0]["Results"]["output1"]
    assert requests.get(listed["BaseLocation"] + listed["RelativeLocation"] + listed["SasBlobToken"],
                        timeout=10).status_code == 200


def test_locations_by_base_location_and_sas_token(api, tenant, blobs):
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    pool = ready_pool(api, tenant, 1, "sas-pool")
    blobs.put("sas-data", "in.csv", census_csv(50, seed=7))
    blobs.put("sas-data", "keep.txt", b"x")
    token = generate_container_sas(blobs.service.account_name, "sas-data", blobs.service.credential.account_key,
                                   permission=ContainerSasPermissions(read=True, write=True, create=True),
                                   expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))

    def by_sas(path: str) -> dict:
        # The connection string carries no key: only the SAS token can grant access.
        return {"ConnectionString": f"AccountName={blobs.service.account_name}", "BaseLocation": blobs.service.url,
                "RelativeLocation": path, "SasBlobToken": f"?{token}"}

    body = {"Inputs": {"input1": by_sas("sas-data/in.csv")}, "Outputs": {"output1": by_sas("sas-data/out.csv")},
            "GlobalParameters": {}, "AzureBatchPoolId": pool}
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, body)
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert done["StatusCode"] == "Finished", done
    assert done["Results"]["output1"]["RelativeLocation"] == "sas-data/out.csv"
    # The app cannot sign for this account: the answer hands back the caller's own token for
    # the output (only holders of the service's API key see it), so the result downloads.
    result = done["Results"]["output1"]
    assert result["SasBlobToken"] == f"?{token}" and result["ConnectionString"] is None
    downloaded = requests.get(result["BaseLocation"] + result["RelativeLocation"] + result["SasBlobToken"], timeout=10)
    assert downloaded.status_code == 200 and downloaded.content == blobs.get("sas-data", "out.csv")
    scored = pd.read_csv(io.BytesIO(blobs.get("sas-data", "out.csv")))
    assert len(scored) == 50 and "Scored Labels" in scored.columns


def test_waiting_jobs_start_in_fifo_order_one_vm_at_a_time(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 1)
    # The first job holds the VM until the test cancels it, however slow the machine is.
    holder, started = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        sample_input, f"outputs/{unique('hold')}.csv", pool, SecondsPerChunk=10))
    assert started["StatusCode"] == "Running"
    # Starting a running job again changes nothing either.
    restarted = api.job(tenant.jobs, tenant.api_key, "POST", f"/{holder}/start").json()
    assert (restarted["StatusCode"], restarted["VmId"], restarted["StartTime"]) == (
        "Running", started["VmId"], started["StartTime"])
    ids = []
    for index in range(3):
        job_id, started = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
            sample_input, f"outputs/{unique('fifo')}.csv", pool, SecondsPerChunk=0.1))
        ids.append(job_id)
        assert (started["StatusCode"], started["QueuePosition"]) == ("NotStarted", index + 1)
    positions = [api.job(tenant.jobs, tenant.api_key, suffix=f"/{i}").json()["QueuePosition"] for i in ids]
    assert positions == [1, 2, 3]
    # Starting a waiting job again changes nothing.
    again = api.job(tenant.jobs, tenant.api_key, "POST", f"/{ids[1]}/start")
    assert again.status_code == 200 and again.json()["QueuePosition"] == 2
    assert api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{holder}").json()["StatusCode"] == "Cancelled"
    finals = [api.wait_job(tenant.jobs, tenant.api_key, i) for i in ids]
    assert all(f["StatusCode"] == "Finished" for f in finals)
    for earlier, later in zip(finals, finals[1:]):
        assert earlier["StartTime"] < later["StartTime"]
        assert earlier["EndTime"] <= later["StartTime"], "one VM ran two jobs at once"
    # A job as a listing shows it reads exactly as its own status (each answer signs its own tokens).
    listed = api.job(tenant.jobs, tenant.api_key).json()["Jobs"]
    assert {j["JobId"] for j in listed} == {holder, *ids}
    for job in listed:
        own = api.job(tenant.jobs, tenant.api_key, suffix=f"/{job['JobId']}").json()
        assert as_it_stands(job) == as_it_stands(own) and costs_progress(job, own)


def most_at_once(jobs: list[dict]) -> int:
    """The largest number of jobs whose [StartTime, EndTime) intervals overlap."""
    events = sorted([(j["StartTime"], 1) for j in jobs] + [(j["EndTime"], -1) for j in jobs],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_classic_jobs_share_a_bounded_fifo_environment(api, tenant, blobs, sample_input):
    # Each job takes five seconds: the five are started well before the first two end.
    ids = [api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        sample_input, f"outputs/{unique('classic')}.csv", SecondsPerChunk=1))[0] for _ in range(5)]
    finals = [api.wait_job(tenant.jobs, tenant.api_key, i) for i in ids]
    assert all(f["StatusCode"] == "Finished" and f["AzureBatchPoolId"] is None for f in finals)
    assert most_at_once(finals) == 2  # CLASSIC_MAX_CONCURRENT_JOBS in the test host
    starts = [f["StartTime"] for f in finals]
    assert starts == sorted(starts)


def test_cancel_a_waiting_and_a_running_job(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 1)
    slow = blobs.job_body(sample_input, f"outputs/{unique('slow')}.csv", pool, SecondsPerChunk=1)
    running, _ = api.run_job(tenant.jobs, tenant.api_key, slow)
    waiting, state = api.run_job(tenant.jobs, tenant.api_key, dict(slow, Outputs={"output1": blobs.location(
        f"outputs/{unique('w')}.csv")}))
    assert state["QueuePosition"] == 1
    cancelled = api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{waiting}")
    assert cancelled.status_code == 200 and cancelled.json()["StatusCode"] == "Cancelled"
    assert cancelled.json()["QueuePosition"] is None
    third, state = api.run_job(tenant.jobs, tenant.api_key, dict(slow, Outputs={"output1": blobs.location(
        f"outputs/{unique('t')}.csv")}))
    assert state["QueuePosition"] == 1
    stopped = api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{running}")
    assert stopped.json()["StatusCode"] == "Cancelled"
    # The freed VM takes the next waiting job at once.
    assert wait_for(lambda: api.job(tenant.jobs, tenant.api_key, suffix=f"/{third}").json()["StatusCode"]
                    == "Running", timeout=10)
    again = api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{waiting}")
    assert again.status_code == 409 and again.json()["error"]["details"][0]["code"] == "JobAlreadyEnded"
    restart = api.job(tenant.jobs, tenant.api_key, "POST", f"/{waiting}/start")
    assert restart.status_code == 400 and restart.json()["error"]["code"] == "InvalidOperation"
    assert restart.json()["error"]["details"][0]["code"] == "CannotStartJob"
    api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{third}")
    time.sleep(1.5)
    assert api.job(tenant.jobs, tenant.api_key, suffix=f"/{running}").json()["StatusCode"] == "Cancelled"


def test_cancel_before_start(api, tenant, blobs, sample_input):
    submitted = api.job(tenant.jobs, tenant.api_key, "POST", body=blobs.job_body(sample_input, "outputs/x.csv"))
    job_id = submitted.json()
    assert api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json()["StatusCode"] == "NotStarted"
    assert api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{job_id}").json()["StatusCode"] == "Cancelled"
    assert api.job(tenant.jobs, tenant.api_key, "POST", f"/{job_id}/start").status_code == 400


def test_deleting_a_pool_cancels_waiting_jobs_and_lets_running_ones_finish(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 1)
    body = lambda: blobs.job_body(sample_input, f"outputs/{unique('d')}.csv", pool, SecondsPerChunk=0.3)
    running, _ = api.run_job(tenant.jobs, tenant.api_key, body())
    waiting = [api.run_job(tenant.jobs, tenant.api_key, body())[0] for _ in range(2)]
    deleted = api.call("DELETE", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert deleted["CancelledJobs"] == 2 and deleted["DrainingVms"] == 1
    for job_id in waiting:
        state = api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json()
        assert state["StatusCode"] == "Cancelled" and "deleted" in state["Details"]
    assert api.wait_job(tenant.jobs, tenant.api_key, running)["StatusCode"] == "Finished"
    # A new job cannot name the deleted pool.
    refused = api.job(tenant.jobs, tenant.api_key, "POST", body=body())
    assert refused.status_code == 404 and refused.json()["error"]["details"][0]["code"] == "PoolNotFound"


def test_shrinking_drains_the_busy_vm_after_its_job(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 1)
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        sample_input, f"outputs/{unique('drain')}.csv", pool, SecondsPerChunk=0.3))
    resized = api.call("POST", f"{tenant.pools}/{pool}/resize", {"VmCount": 0}, key=tenant.primary).json()
    assert resized["VmCounts"]["Draining"] == 1 and resized["RunningJobs"] == 1
    assert api.wait_job(tenant.jobs, tenant.api_key, job_id)["StatusCode"] == "Finished"
    after = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert after["VmCounts"] == {"Provisioning": 0, "Idle": 0, "Busy": 0, "Draining": 0}
    assert after["Vms"][0]["State"] == "Deleted" and after["Vms"][0]["DeletedAt"] >= after["Vms"][0]["ProvisionedAt"]


def test_a_pool_grown_again_runs_jobs_on_its_new_vms_only(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 2)
    api.call("POST", f"{tenant.pools}/{pool}/resize", {"VmCount": 0}, key=tenant.primary)
    api.call("POST", f"{tenant.pools}/{pool}/resize", {"VmCount": 2}, key=tenant.primary)
    wait_for(lambda: api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()["VmCounts"]["Idle"] == 2,
             timeout=VM_PROVISIONING_SECONDS + 15)
    vms = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()["Vms"]
    deleted = {vm["VmId"] for vm in vms if vm["State"] == "Deleted"}
    assert len(deleted) == 2 and len(vms) == 4
    started = [api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        sample_input, f"outputs/{unique('regrown')}.csv", pool, SecondsPerChunk=0.2))[1] for _ in range(3)]
    assert [s["StatusCode"] for s in started] == ["Running", "Running", "NotStarted"]
    used = {s["VmId"] for s in started[:2]}
    assert len(used) == 2 and not used & deleted
    finals = [api.wait_job(tenant.jobs, tenant.api_key, s["JobId"]) for s in started]
    assert all(f["StatusCode"] == "Finished" for f in finals)


def test_failures_end_the_job_failed_with_details(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 1)
    missing, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("inputs/no-such.csv", "outputs/n.csv", pool))
    state = api.wait_job(tenant.jobs, tenant.api_key, missing)
    assert state["StatusCode"] == "Failed" and "does not exist" in state["Details"]
    blobs.put("inputs", "not-census.csv", b"a,b\n1,2\n")
    bad, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("inputs/not-census.csv", "outputs/b.csv", pool))
    state = api.wait_job(tenant.jobs, tenant.api_key, bad)
    assert state["StatusCode"] == "Failed" and "lacks the column(s)" in state["Details"]
    assert blobs.get("outputs", "b.csv") is None  # nothing half-written
    blobs.put("inputs", "empty.csv", b"")
    empty, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("inputs/empty.csv", "outputs/e.csv", pool))
    assert "empty" in api.wait_job(tenant.jobs, tenant.api_key, empty)["Details"]
    pool_after = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert pool_after["VmCounts"]["Idle"] == 1


def test_input_is_checked_against_the_columns_the_service_declares(api, tenant, blobs):
    """Against census' declared columns (its swagger.json shows them): each fault ends the job
    Failed naming the input's row and column, and writes nothing."""
    swagger = api.call("GET", f"{tenant.jobs.rsplit('/jobs', 1)[0]}/swagger.json", key=tenant.api_key).json()
    assert swagger["definitions"]["InputRow"]["properties"]["age"]["type"] == "integer"
    pool = ready_pool(api, tenant, 1)
    rows = census_csv(5, seed=9).decode().splitlines()
    header, first, second = rows[0], rows[1], rows[2]
    age_last = second.split(",", 1)[1]
    cases = {
        "header-only.txt": ("just some notes\n", "lacks the column(s) age"),
        "no-rows.csv": ("a,b\n", "lacks the column(s) age"),  # checked even with no row to score
        "bad-age.csv": (f"{header}\n{first}\nthirty,{age_last}\n", "row 2, column age: 'thirty' is not an integer"),
        "long-row.csv": (f"{header}\n{first}\n{second},1,2,3\n", "row 2 has"),
    }
    for name, (text, says) in cases.items():
        blobs.put("inputs", name, text.encode())
        output = f"outputs/{unique('checked')}.csv"
        job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(f"inputs/{name}", output, pool))
        done = api.wait_job(tenant.jobs, tenant.api_key, job_id)
        assert done["StatusCode"] == "Failed" and says in done["Details"], (name, done["Details"])
        assert blobs.get(*output.split("/", 1)) is None


def test_a_job_over_its_service_timeout_is_stopped(api, tenant_factory, blobs, sample_input):
    tenant = tenant_factory()
    api.put_service(tenant.subscription_id, tenant.service_id, TimeoutSeconds=1)
    pool = ready_pool(api, tenant, 1)
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        sample_input, "outputs/timeout.csv", pool, SecondsPerChunk=0.5))
    state = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert state["StatusCode"] == "Failed" and "TimeoutSeconds" in state["Details"]


def test_list_jobs_newest_first_in_pages(api, tenant, blobs, sample_input):
    ids = [api.job(tenant.jobs, tenant.api_key, "POST", body=blobs.job_body(sample_input, "outputs/l.csv")).json()
           for _ in range(5)]
    whole = api.job(tenant.jobs, tenant.api_key)
    assert whole.status_code == 200 and [j["JobId"] for j in whole.json()["Jobs"]] == ids[::-1]
    listed = api.call("GET", f"{tenant.jobs}?api-version=2.0&$top=3", key=tenant.api_key).json()
    assert [j["JobId"] for j in listed["Jobs"]] == ids[::-1][:3]
    rest = api.call("GET", f"{tenant.jobs}?api-version=2.0&$top=3&continuationToken={listed['ContinuationToken']}",
                    key=tenant.api_key).json()
    assert [j["JobId"] for j in rest["Jobs"]] == ids[::-1][3:] and rest["ContinuationToken"] is None


def test_a_listed_job_reads_as_its_own_status_does(api, tenant, blobs, sample_input):
    pool = ready_pool(api, tenant, 1)

    def body():
        return blobs.job_body(sample_input, f"outputs/{unique('listed')}.csv", pool, SecondsPerChunk=1)

    running, _ = api.run_job(tenant.jobs, tenant.api_key, body())
    first_waiting, _ = api.run_job(tenant.jobs, tenant.api_key, body())
    second_waiting, _ = api.run_job(tenant.jobs, tenant.api_key, body())
    not_started = api.job(tenant.jobs, tenant.api_key, "POST", body=body()).json()
    cancelled = api.job(tenant.jobs, tenant.api_key, "POST", body=body()).json()
    api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{cancelled}")
    listed = {j["JobId"]: j for j in api.job(tenant.jobs, tenant.api_key).json()["Jobs"]}
    one_by_one = {i: api.job(tenant.jobs, tenant.api_key, suffix=f"/{i}").json()
                  for i in (running, first_waiting, second_waiting, not_started, cancelled)}
    for job_id in (running, first_waiting, second_waiting):
        api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{job_id}")
    assert listed == one_by_one
    assert [listed[i]["StatusCode"] for i in (running, first_waiting, second_waiting, not_started, cancelled)] \
        == ["Running", "NotStarted", "NotStarted", "NotStarted", "Cancelled"]
    assert [listed[i]["QueuePosition"] for i in (running, first_waiting, second_waiting, not_started)] \
        == [None, 1, 2, None]
