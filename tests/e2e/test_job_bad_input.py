"""Bad job requests answer a clear 4xx and create nothing."""
import pytest

from tests.e2e.test_bad_input import error_of
from tests.e2e.test_pools import create


def job_count(api, tenant) -> int:
    return len(api.call("GET", f"{tenant.jobs}?api-version=2.0&$top=1000", key=tenant.api_key).json()["Jobs"])


@pytest.fixture
def setup(api, tenant, blobs):
    assert create(api, tenant, 1, "target").status_code == 201
    return tenant, blobs.job_body("inputs/in.csv", "outputs/out.csv", "target")


def without(body: dict, key: str) -> dict:
    return {k: v for k, v in body.items() if k != key}


BAD = [
    (lambda b: without(b, "Input"), 400, "MissingInput"),
    (lambda b: dict(b, Inputs={"input1": b["Input"]}), 400, "InvalidRequest"),
    (lambda b: dict(without(b, "Input"), Inputs={"other": b["Input"]}), 400, "UnknownInput"),
    (lambda b: dict(b, Input="inputs/in.csv"), 400, "InvalidLocation"),
    (lambda b: dict(b, Input=dict(b["Input"], RelativeLocation="no-container-part")), 400, "InvalidLocation"),
    (lambda b: dict(b, Input=dict(b["Input"], RelativeLocation="UPPER/x.csv")), 400, "InvalidLocation"),
    (lambda b: dict(b, Input=dict(b["Input"], ConnectionString="not a connection string")), 400, "InvalidLocation"),
    (lambda b: dict(b, Input=dict(b["Input"], ConnectionString="Foo=bar")), 400, "InvalidLocation"),
    (lambda b: dict(b, Input=dict(b["Input"], Extra=1)), 400, "InvalidLocation"),
    (lambda b: dict(b, Input=dict(b["Input"], SasBlobToken="sv=1")), 400, "InvalidLocation"),
    (lambda b: dict(b, Outputs="outputs/out.csv"), 400, "InvalidOutputs"),
    (lambda b: dict(b, input=b["Input"]), 400, "DuplicateField"),
    (lambda b: dict(b, Input=dict(b["Input"], ConnectionString=None)), 400, "InvalidLocation"),
    (lambda b: dict(b, Outputs={"output9": b["Outputs"]["output1"]}), 400, "UnknownOutput"),
    (lambda b: dict(b, GlobalParameters={"a": {"nested": 1}}), 400, "InvalidValue"),
    (lambda b: dict(b, AzureBatchPoolId="no-such-pool"), 404, "PoolNotFound"),
    (lambda b: dict(b, AzureBatchPoolId="bad id!"), 400, "InvalidValue"),
    (lambda b: dict(b, Input=dict(b["Input"], ConnectionString=(
        "DefaultEndpointsProtocol=http;AccountName=evil;AccountKey=a2V5;BlobEndpoint=http://10.0.0.1:80/evil"))),
     400, "BlobHostNotAllowed"),
    (lambda b: dict(b, Input=dict(b["Input"], BaseLocation="http://169.254.169.254/", SasBlobToken="?sv=1")),
     400, "BlobHostNotAllowed"),
]


@pytest.mark.parametrize("change,status,code", BAD)
def test_bad_job_bodies(api, setup, change, status, code):
    tenant, body = setup
    response = api.job(tenant.jobs, tenant.api_key, "POST", body=change(body))
    assert response.status_code == status, response.text
    assert error_of(response) == code
    assert "AccountKey" not in response.text
    assert job_count(api, tenant) == 0


def test_a_pool_of_another_subscription_answers_as_missing(api, setup, tenant_factory, blobs):
    tenant, body = setup
    other = tenant_factory()
    assert create(api, other, 1, "theirs").status_code == 201
    foreign = api.job(tenant.jobs, tenant.api_key, "POST", body=dict(body, AzureBatchPoolId="theirs"))
    missing = api.job(tenant.jobs, tenant.api_key, "POST", body=dict(body, AzureBatchPoolId="never-was"))
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["error"]["details"][0]["code"] == missing.json()["error"]["details"][0]["code"] == "PoolNotFound"
    assert job_count(api, tenant) == 0


def test_api_version_and_keys(api, setup, tenant_factory):
    tenant, body = setup
    for version in (None, "1.0", "2.0x"):
        response = api.job(tenant.jobs, tenant.api_key, "POST", body=body, version=version)
        assert response.status_code == 400 and error_of(response) == "InvalidApiVersion"
    other = tenant_factory()
    for key in (None, "wrong", other.api_key, tenant.primary):
        response = api.call("POST", f"{tenant.jobs}?api-version=2.0", body, key=key)
        assert response.status_code == 401 and error_of(response) == "Unauthorized"
    assert job_count(api, tenant) == 0


def test_unknown_jobs_and_other_services_jobs(api, setup, tenant_factory):
    tenant, body = setup
    job_id = api.job(tenant.jobs, tenant.api_key, "POST", body=body).json()
    other = tenant_factory()
    for method, suffix in [("GET", f"/{job_id}"), ("DELETE", f"/{job_id}"), ("POST", f"/{job_id}/start")]:
        mine_elsewhere = api.job(other.jobs, other.api_key, method, suffix)
        assert mine_elsewhere.status_code == 404 and error_of(mine_elsewhere) == "JobNotFound"
        missing = api.job(tenant.jobs, tenant.api_key, method, suffix.replace(job_id, "0" * 30))
        assert missing.status_code == 404 and error_of(missing) == "JobNotFound"
    assert api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json()["StatusCode"] == "NotStarted"
    for top in ("0", "1001", "x"):
        response = api.call("GET", f"{tenant.jobs}?api-version=2.0&$top={top}", key=tenant.api_key)
        assert response.status_code == 400


def test_status_never_echoes_connection_strings(api, setup):
    tenant, body = setup
    job_id = api.job(tenant.jobs, tenant.api_key, "POST", body=body).json()
    texts = [api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").text,
             api.call("GET", f"{tenant.jobs}?api-version=2.0", key=tenant.api_key).text]
    for text in texts:
        assert "AccountKey" not in text and "ConnectionString\": \"Default" not in text
