"""BES 2.0 as its published clients speak it: the request and response shapes of Microsoft's
Python and C# Batch Execution samples, written here from the documented protocol."""
import datetime as dt
import io
import json
from urllib.parse import urljoin

import pandas as pd
import pytest
import requests

from tests.e2e.conftest import make_tenant
from tests.e2e.harness import unique, wait_for
from tests.e2e.test_bad_input import error_of
from tests.e2e.test_jobs import census_csv, ready_pool
from tests.e2e.test_pools import create

TERMINAL = ("Finished", "Failed", "Cancelled")


class SampleClient:
    """What the samples do: POST the request with the API key as a bearer token, strip the
    quotes off the job id, POST .../start, poll the status, read each output."""

    def __init__(self, batch_requests_url: str, api_key: str):
        self.jobs = batch_requests_url.split("?")[0]
        self.headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}

    def submit(self, body: dict, content_type: str = "application/json") -> str:
        response = requests.post(f"{self.jobs}?api-version=2.0", data=json.dumps(body),
                                 headers=dict(self.headers, **{"Content-Type": content_type}), timeout=30)
        assert response.status_code == 200, response.text
        return response.text[1:-1]

    def start(self, job_id: str) -> requests.Response:
        return requests.post(f"{self.jobs}/{job_id}/start?api-version=2.0", headers=self.headers, timeout=30)

    def status(self, job_id: str) -> dict:
        return requests.get(f"{self.jobs}/{job_id}?api-version=2.0", headers=self.headers, timeout=30).json()

    def wait(self, job_id: str) -> dict:
        return wait_for(lambda: (s := self.status(job_id))["StatusCode"] in TERMINAL and s, timeout=60)


def python_sample_url(result: dict) -> str:
    return result["BaseLocation"] + result["RelativeLocation"] + result["SasBlobToken"]


def csharp_sample_url(result: dict) -> str:
    # new Uri(new Uri(BaseLocation), RelativeLocation) + SasBlobToken
    return urljoin(result["BaseLocation"], result["RelativeLocation"]) + result["SasBlobToken"]


@pytest.fixture
def census_input(blobs):
    name = f"{unique('in')}.csv"
    blobs.put("bes-inputs", name, census_csv(40, seed=3))
    return f"bes-inputs/{name}"


def container_sas(blobs, container: str, **rights) -> str:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
    return "?" + generate_container_sas(blobs.service.account_name, container, blobs.service.credential.account_key,
                                        permission=ContainerSasPermissions(**rights),
                                        expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))


# Outputs the service kept, checked for removal by the module's last test (after retention).
KEPT: list[str] = []


def test_outputs_left_to_the_service_are_kept_and_downloadable(api, tenant, blobs, census_input):
    """The consume-web-services form: null Outputs and GlobalParameters, names in any case,
    an unknown top-level field and text/json, as lenient BES accepted them."""
    pool = ready_pool(api, tenant, 1, "kept")
    client = SampleClient(f"{api.base}{tenant.jobs}", tenant.api_key)
    body = {"inputs": {"INPUT1": {"connectionString": blobs.connection_string, "relativeLocation": census_input}},
            "outputs": None, "globalParameters": None, "AzureBatchPoolId": pool, "SomethingNew": {"x": 1}}
    job_id = client.submit(body, content_type="text/json")
    assert client.start(job_id).status_code == 200
    done = client.wait(job_id)
    assert done["StatusCode"] == "Finished" and done["Details"] is None, done
    assert done["Progress"]["RowsScored"] == 40
    result = done["Results"]["output1"]
    assert result["ConnectionString"] is None and result["BaseLocation"].endswith("/")
    assert result["RelativeLocation"].startswith("batchpool-outputs/") and job_id in result["RelativeLocation"]
    for url in (python_sample_url(result), csharp_sample_url(result)):
        downloaded = requests.get(url, timeout=10)
        assert downloaded.status_code == 200
        scored = pd.read_csv(io.BytesIO(downloaded.content))
        assert len(scored) == 40 and "Scored Labels" in scored.columns
    assert requests.put(python_sample_url(result), data=b"x", headers={"x-ms-blob-type": "BlockBlob"},
                        timeout=10).status_code == 403
    KEPT.append(python_sample_url(result))


def test_sas_only_locations_for_input_and_output(api, tenant, blobs):
    """The C# sample's AzureBlobDataReference for SAS blobs: ConnectionString null."""
    pool = ready_pool(api, tenant, 1, "by-sas")
    blobs.put("sas-only", "in.csv", census_csv(30, seed=5))
    token = container_sas(blobs, "sas-only", read=True, write=True, create=True)

    def by_sas(path: str) -> dict:
        return {"ConnectionString": None, "BaseLocation": blobs.service.url, "RelativeLocation": path,
                "SasBlobToken": token}

    client = SampleClient(f"{api.base}{tenant.jobs}", tenant.api_key)
    job_id = client.submit({"Inputs": {"input1": by_sas("sas-only/in.csv")},
                            "Outputs": {"output1": by_sas("sas-only/out.csv")}, "GlobalParameters": {},
                            "AzureBatchPoolId": pool})
    client.start(job_id)
    done = client.wait(job_id)
    assert done["StatusCode"] == "Finished", done
    result = done["Results"]["output1"]
    assert result["SasBlobToken"] == token and result["RelativeLocation"] == "sas-only/out.csv"
    for url in (python_sample_url(result), csharp_sample_url(result)):
        assert requests.get(url, timeout=10).content == blobs.get("sas-only", "out.csv")
    # The caller's token is shown only to holders of the service's API key.
    assert requests.get(f"{api.base}{tenant.jobs}/{job_id}?api-version=2.0", timeout=10).status_code == 401
    off_list = dict(by_sas("sas-only/in.csv"), BaseLocation="http://127.0.0.1:1/devstoreaccount1/")
    refused = api.job(tenant.jobs, tenant.api_key, "POST", body={"Input": off_list, "Outputs": None})
    assert refused.status_code == 400 and error_of(refused) == "BlobHostNotAllowed"


def test_a_classic_service_at_its_classic_address(api, tenant, blobs, census_input):
    classic = api.put_service(tenant.subscription_id, unique("classic"), kind="Classic").json()
    url = classic["BatchRequestsUrl"]
    assert f"/api/workspaces/{tenant.subscription_id}/services/{classic['ServiceId']}/jobs?api-version=2.0" in url
    client = SampleClient(url, classic["ApiKey"])
    job_id = client.submit({"Inputs": {"input1": blobs.location(census_input)}, "Outputs": None,
                            "GlobalParameters": None})
    assert client.start(job_id).status_code == 200
    done = client.wait(job_id)
    assert done["StatusCode"] == "Finished" and done["AzureBatchPoolId"] is None, done
    assert requests.get(python_sample_url(done["Results"]["output1"]), timeout=10).status_code == 200
    listed = requests.get(f"{client.jobs}?api-version=2.0", headers=client.headers, timeout=10).json()["Jobs"]
    assert [j["JobId"] for j in listed] == [job_id]
    second = client.submit({"Input": blobs.location(census_input)})
    cancelled = requests.delete(f"{client.jobs}/{second}?api-version=2.0", headers=client.headers, timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["StatusCode"] == "Cancelled"
    assert cancelled.json()["Details"]
    # The same job API at the subscription address, too; a New service has no classic address.
    assert api.job(f"/api/subscriptions/{tenant.subscription_id}/services/{classic['ServiceId']}/jobs",
                   classic["ApiKey"], suffix=f"/{job_id}").json()["StatusCode"] == "Finished"
    new_at_classic = api.call("GET", f"/api/workspaces/{tenant.subscription_id}/services/{tenant.service_id}/jobs"
                                     "?api-version=2.0", key=tenant.api_key)
    assert new_at_classic.status_code == 404 and error_of(new_at_classic) == "NotAClassicService"
    wrong_key = api.call("GET", f"{client.jobs[len(api.base):]}?api-version=2.0", key=tenant.api_key)
    assert wrong_key.status_code == 401 and error_of(wrong_key) == "Unauthorized"


def test_each_error_class_as_azure_ml_answers_it(api, tenant, blobs, census_input):
    client = SampleClient(f"{api.base}{tenant.jobs}", tenant.api_key)
    missing_input = api.job(tenant.jobs, tenant.api_key, "POST", body={"Outputs": None})
    assert missing_input.status_code == 400 and missing_input.json()["error"]["code"] == "BadArgument"
    assert error_of(missing_input) == "MissingInput"
    assert missing_input.json()["error"]["details"][0]["target"] == "Inputs"
    bad_field = api.job(tenant.jobs, tenant.api_key, "POST", body={"Input": dict(
        blobs.location(census_input), ConnectionString="AccountName=devstoreaccount1;;AccountKey=a2V5")})
    assert error_of(bad_field) == "InvalidLocation"
    assert bad_field.json()["error"]["details"][0]["target"] == "Input.ConnectionString"
    unauthorized = api.job(tenant.jobs, "not-the-key", "POST", body={"Outputs": None})
    assert unauthorized.status_code == 401 and unauthorized.json()["error"]["code"] == "Unauthorized"
    not_found = api.job(tenant.jobs, tenant.api_key, suffix="/" + "0" * 30)
    assert not_found.status_code == 404 and not_found.json()["error"]["code"] == "NotFound"
    assert error_of(not_found) == "JobNotFound"
    job_id = client.submit({"Input": blobs.location(census_input)})
    cancelled = requests.delete(f"{client.jobs}/{job_id}?api-version=2.0", headers=client.headers, timeout=10)
    assert cancelled.json()["StatusCode"] == "Cancelled"
    ended = client.start(job_id)
    assert ended.status_code == 400 and ended.json()["error"]["code"] == "InvalidOperation"
    assert error_of(ended) == "CannotStartJob"
    again = requests.delete(f"{client.jobs}/{job_id}?api-version=2.0", headers=client.headers, timeout=10)
    assert again.status_code == 409 and again.json()["error"]["code"] == "InvalidOperation"
    # The operator's and pool owner's routes answer in the same envelope.
    for response in (api.call("GET", "/api/accounts/nobody", admin=True),
                     api.call("POST", tenant.pools, {"VmCount": -1}, key=tenant.primary),
                     api.call("GET", tenant.pools, key="wrong")):
        assert error_of(response)


def test_details_stay_null_until_a_job_fails_and_waiting_jobs_say_why(api, tenant, blobs, census_input):
    client = SampleClient(f"{api.base}{tenant.jobs}", tenant.api_key)
    assert create(api, tenant, 0, "empty").status_code == 201
    body = {"Input": blobs.location(census_input), "AzureBatchPoolId": "empty", "GlobalParameters": {
        "SecondsPerChunk": "0.5"}}
    first = client.submit(body)
    submitted = client.status(first)
    assert submitted["StatusCode"] == "NotStarted" and submitted["PendingReason"] == "AwaitingStart"
    assert submitted["Details"] is None and submitted["QueuePosition"] is None
    client.start(first)
    waiting = client.status(first)
    assert (waiting["QueuePosition"], waiting["PendingReason"], waiting["Details"]) == (1, "PoolAtZeroVms", None)
    api.call("POST", f"{tenant.pools}/empty/resize", {"VmCount": 1}, key=tenant.primary)
    running = wait_for(lambda: (s := client.status(first))["StatusCode"] == "Running" and s, timeout=30)
    assert running["Details"] is None and running["PendingReason"] is None and running["VmId"]
    second = client.submit(body)
    client.start(second)
    behind = client.status(second)
    assert (behind["QueuePosition"], behind["PendingReason"]) == (1, "WaitingForIdleVm")
    listed = api.job(tenant.jobs, tenant.api_key, suffix="").json()["Jobs"]
    assert {j["JobId"]: j["PendingReason"] for j in listed}[second] == "WaitingForIdleVm"
    for job_id in (first, second):
        assert client.wait(job_id)["Details"] is None
    failing = client.submit({"Input": blobs.location("bes-inputs/no-such.csv"), "AzureBatchPoolId": "empty"})
    client.start(failing)
    failed = client.wait(failing)
    assert failed["StatusCode"] == "Failed" and "does not exist" in failed["Details"]


def test_classic_jobs_waiting_for_a_slot_say_so(api, tenant, blobs, census_input):
    classic = api.put_service(tenant.subscription_id, unique("classic"), kind="Classic").json()
    client = SampleClient(classic["BatchRequestsUrl"], classic["ApiKey"])
    body = {"Input": blobs.location(census_input), "GlobalParameters": {"SecondsPerChunk": "2"}}
    ids = [client.submit(body) for _ in range(3)]  # CLASSIC_MAX_CONCURRENT_JOBS is 2 here
    for job_id in ids:
        client.start(job_id)
    states = {job_id: client.status(job_id) for job_id in ids}
    waiting = [s for s in states.values() if s["StatusCode"] == "NotStarted"]
    assert waiting and all(s["PendingReason"] == "ClassicSlotsFull" for s in waiting), states
    for job_id in ids:
        client.wait(job_id)


def test_a_job_waiting_for_provisioning_vms_says_so(slow_stack):
    api, blobs = slow_stack
    tenant = make_tenant(api)
    assert create(api, tenant, 1, "growing").status_code == 201
    blobs.put("bes-inputs", "tiny.csv", census_csv(5))
    job_id, started = api.run_job(tenant.jobs, tenant.api_key, {"Input": blobs.location("bes-inputs/tiny.csv"),
                                                                 "AzureBatchPoolId": "growing"})
    assert (started["StatusCode"], started["PendingReason"], started["QueuePosition"]) == (
        "NotStarted", "VmsProvisioning", 1)
    assert api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{job_id}").json()["StatusCode"] == "Cancelled"


def test_kept_outputs_are_removed_after_their_retention():
    """OUTPUT_RETENTION_MINUTES is 1 here: the sweeper removes the output kept above."""
    assert KEPT, "the test that keeps an output did not run"
    wait_for(lambda: all(requests.get(url, timeout=10).status_code == 404 for url in KEPT), timeout=150, interval=2)
