"""Throttling loses nothing: with a fault-injecting proxy between the app and Azurite that
answers 503 ServerBusy (and 429 for tables) with Retry-After for a few seconds, no job fails
or is lost, and calls made meanwhile answer as usual or with a clear 503."""
import threading

import pytest

from tests.e2e.conftest import APP_ENV, make_tenant
from tests.e2e.harness import Api, Blobs, unique
from tests.e2e.storage_proxy import proxied_stack
from tests.e2e.test_jobs import census_csv, ready_pool

THROTTLE_SECONDS = 3
MAX_CALLS = 20


@pytest.fixture(scope="module")
def throttled(logs_dir):
    with proxied_stack(logs_dir, "throttled", {**APP_ENV, "BLOB_HOST_ALLOWLIST": "127.0.0.1"}) as (host, connection,
                                                                                                   proxies):
        yield Api(host.url, host.operator_key), Blobs(connection), proxies


def _throttle(proxies, on: bool, table_status: int = 503) -> None:
    proxies["table"].status_when_throttled = table_status
    for proxy in proxies.values():
        (proxy.throttling.set if on else proxy.throttling.clear)()


@pytest.mark.parametrize("table_status", [503, 429])
def test_nothing_is_lost_while_storage_throttles(throttled, table_status):
    api, blobs, proxies = throttled
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 2)
    blobs.put("inputs", "census-1000.csv", census_csv(1000))
    body = lambda: blobs.job_body("inputs/census-1000.csv", f"outputs/{unique('busy')}.csv", pool, SecondsPerChunk=0.2)
    running = [api.run_job(tenant.jobs, tenant.api_key, body())[0] for _ in range(2)]
    before = sum(p.throttled for p in proxies.values())
    statuses, accepted = [], []
    _throttle(proxies, True, table_status)
    window = threading.Timer(THROTTLE_SECONDS, _throttle, (proxies, False))
    window.start()
    try:
        while proxies["table"].throttling.is_set() and len(statuses) < MAX_CALLS:
            submitted = api.job(tenant.jobs, tenant.api_key, "POST", body=body())
            statuses.append(submitted.status_code)
            if submitted.status_code == 200:
                accepted.append(submitted.json())
            else:
                assert submitted.json()["error"]["details"][0]["code"] == "StorageUnavailable"
            statuses.append(api.job(tenant.jobs, tenant.api_key).status_code)
    finally:
        window.join()
    assert set(statuses) <= {200, 503}, statuses
    assert sum(p.throttled for p in proxies.values()) > before
    for job_id in accepted:
        assert api.job(tenant.jobs, tenant.api_key, "POST", f"/{job_id}/start").status_code == 200
    finals = [api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=120) for job_id in running + accepted]
    assert [f["StatusCode"] for f in finals] == ["Finished"] * len(finals), [f["Details"] for f in finals]
    assert all(blobs.get(*f["Results"]["output1"]["RelativeLocation"].split("/", 1)).count(b"\n") == 1001
               for f in finals)
