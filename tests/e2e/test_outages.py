"""An outage of one storage service loses nothing and poisons nothing: with tables, queues or
blobs refused, or answering 503 ServerBusy with Retry-After, for longer than the host takes to
send a failing message to the poison queue (visibilityTimeout 2 s x maxDequeueCount 5),
while jobs run, wait and are submitted, every job finishes once storage is back, each once
(output identical to a run alone, one attempt), and calls made meanwhile answer as usual or
503 with Retry-After."""
import threading

import pytest

from tests.e2e.conftest import APP_ENV, make_tenant
from tests.e2e.harness import Api, Blobs, unique
from tests.e2e.storage_proxy import proxied_stack
from tests.e2e.test_jobs import census_csv, ready_pool

OUTAGE_SECONDS = 12  # past the 10 s after which the host poisons a message that keeps failing
MAX_CALLS = 6


@pytest.fixture(scope="module")
def stack(logs_dir):
    with proxied_stack(logs_dir, "outages", {**APP_ENV, "BLOB_HOST_ALLOWLIST": "127.0.0.1"}) as (host, connection,
                                                                                                 proxies):
        yield from _with_reference(host, connection, proxies, logs_dir / "outages-host.log")


def _with_reference(host, connection, proxies, log_path):
    """The stack, and the output of a job run alone before any outage."""
    blobs = Blobs(connection)
    blobs.put("inputs", "census-1000.csv", census_csv(1000, seed=5))
    api = Api(host.url, host.operator_key)
    tenant = make_tenant(api)
    alone = f"outputs/{unique('alone')}.csv"
    reference, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("inputs/census-1000.csv", alone,
                                                                           ready_pool(api, tenant, 1)))
    assert api.wait_job(tenant.jobs, tenant.api_key, reference, timeout=60)["StatusCode"] == "Finished"
    yield api, blobs, proxies, log_path, blobs.get(*alone.split("/", 1))


@pytest.mark.parametrize("service", ["table", "queue", "blob"])
@pytest.mark.parametrize("mode", ["refused", "busy"])
def test_an_outage_of_one_storage_service_loses_and_poisons_nothing(stack, service, mode):
    api, blobs, proxies, log_path, expected = stack
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 2)
    body = lambda: blobs.job_body("inputs/census-1000.csv", f"outputs/{unique('outage')}.csv", pool,
                                  SecondsPerChunk=0.5)
    # Two jobs run (2.5 s each) and two wait behind them when the outage begins.
    jobs = [api.run_job(tenant.jobs, tenant.api_key, body())[0] for _ in range(4)]
    poisoned_before = log_path.read_text().count("moved to poison queue")
    switch = proxies[service].refusing if mode == "refused" else proxies[service].throttling
    switch.set()
    window = threading.Timer(OUTAGE_SECONDS, switch.clear)
    window.start()
    statuses, accepted = [], []
    try:
        while switch.is_set() and len(statuses) < MAX_CALLS:
            submitted = api.job(tenant.jobs, tenant.api_key, "POST", body=body())
            statuses.append(submitted.status_code)
            if submitted.status_code == 200:
                accepted.append(submitted.json())
            else:
                assert submitted.headers.get("Retry-After", "").isdigit(), (submitted.status_code, submitted.text)
                assert submitted.json()["error"]["details"][0]["code"] == "StorageUnavailable"
            listed = api.job(tenant.jobs, tenant.api_key)
            statuses.append(listed.status_code)
            if listed.status_code == 503:
                assert listed.headers.get("Retry-After", "").isdigit(), listed.text
    finally:
        window.join()
    assert set(statuses) <= {200, 503}, statuses
    for job_id in accepted:
        assert api.job(tenant.jobs, tenant.api_key, "POST", f"/{job_id}/start").status_code == 200
    finals = [api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=180) for job_id in jobs + accepted]
    assert [f["StatusCode"] for f in finals] == ["Finished"] * len(finals), [f["Details"] for f in finals]
    assert [f["Attempts"] for f in finals] == [1] * len(finals), [f["AttemptOutcomes"] for f in finals]
    assert all(blobs.get(*f["Results"]["output1"]["RelativeLocation"].split("/", 1)) == expected for f in finals)
    assert log_path.read_text().count("moved to poison queue") == poisoned_before
