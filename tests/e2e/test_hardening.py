"""Hostile input at the running app: no request off the allow-list, one account per
subscription, a 4xx for every bad input, and no trust in the Host header."""
import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest

from shared import bes, layout, sealing
from tests.e2e.harness import Listener, unique
from tests.e2e.test_bad_input import error_of
from tests.e2e.test_job_bad_input import job_count
from tests.e2e.test_jobs import census_csv
from tests.e2e.test_pools import create


def malformed_connection_strings(own: str, port: int, key: str) -> list[str]:
    """Strings that each point at the listener somewhere and at the app's own account elsewhere."""
    evil = f"http://127.0.0.1:{port}/devstoreaccount1"
    account = f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={key}"
    return [
        f"{account};BlobEndpoint={evil}; BlobEndpoint={own}",
        f"{account};BlobEndpoint={evil};blobendpoint={own}",
        f"{account};BlobEndpoint={own};BlobEndpoint={evil}",
        f"{account};;BlobEndpoint={evil}",
        f"AccountName=devstoreaccount1;;AccountKey={key};BlobEndpoint={own}",
        f"{account};BlobEndpoint={own};DevelopmentStorageProxyUri={evil}",
        f"{account};BlobEndpoint={own};BlobSecondaryEndpoint={evil}",
        f"{account};BlobEndpoint=http://127.0.0.1:10000@127.0.0.1:{port}/devstoreaccount1",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;EndpointSuffix=127.0.0.1:{port};AccountKey={key}",
        f"{account};BlobEndpoint=",
        f"{account};BlobEndpoint=http://[::1/",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=not*base64;BlobEndpoint={own}",
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V;BlobEndpoint={own}",
        f"UseDevelopmentStorage=true;BlobEndpoint={evil}",
    ]


@pytest.fixture
def job_setup(api, tenant, blobs):
    assert create(api, tenant, 1, "target").status_code == 201
    blobs.put("inputs", "hardening.csv", census_csv(20))
    return tenant, blobs.job_body("inputs/hardening.csv", "outputs/hardening-out.csv", "target")


def test_no_request_of_a_malformed_connection_string_reaches_anywhere(api, job_setup, blobs):
    tenant, body = job_setup
    own = dict(part.split("=", 1) for part in blobs.connection_string.split(";") if part)["BlobEndpoint"]
    key = dict(part.split("=", 1) for part in blobs.connection_string.split(";") if part)["AccountKey"]
    with Listener() as listener:
        for text in malformed_connection_strings(own, listener.port, key):
            for field, changed in (("Input.ConnectionString", dict(body, Input=dict(body["Input"],
                                                                                    ConnectionString=text))),
                                   ("Outputs.output1.ConnectionString", dict(body, Outputs={"output1": dict(
                                       body["Outputs"]["output1"], ConnectionString=text)}))):
                response = api.job(tenant.jobs, tenant.api_key, "POST", body=changed)
                assert response.status_code == 400, (text, response.text)
                assert error_of(response) == "InvalidLocation"
                assert field in response.json()["error"]["message"], response.text
                assert key not in response.text
        # A good job on the same pool runs to its end while the listener still listens.
        job_id, _ = api.run_job(tenant.jobs, tenant.api_key, body)
        assert api.wait_job(tenant.jobs, tenant.api_key, job_id)["StatusCode"] == "Finished"
        assert listener.close() == 0
    assert job_count(api, tenant) == 1


def test_a_base_location_that_is_not_a_url_is_refused(api, job_setup):
    tenant, body = job_setup
    for base in ("http://[::1/", "http://127.0.0.1:99999/", "http://user@127.0.0.1:10000/devstoreaccount1",
                 "not a url"):
        changed = dict(body, Input=dict(body["Input"], BaseLocation=base, SasBlobToken="?sv=1&sig=x"))
        response = api.job(tenant.jobs, tenant.api_key, "POST", body=changed)
        assert response.status_code == 400 and error_of(response) == "InvalidLocation", response.text
    assert job_count(api, tenant) == 0


def test_one_account_per_subscription(api, tenant):
    second = unique("acct")
    response = api.put_account(second, tenant.subscription_id)
    assert response.status_code == 409 and error_of(response) == "SubscriptionHasAccount"
    assert "PrimaryKey" not in response.text
    assert api.call("GET", f"/api/accounts/{second}", admin=True).status_code == 404
    # The first account is unchanged, can still change its quotas, and another subscription is free.
    assert api.put_account(tenant.account_id, tenant.subscription_id, 4, 6).status_code == 200
    assert api.call("GET", tenant.pools, key=tenant.primary).status_code == 200
    assert api.put_account(second, unique("sub")).status_code == 201


def test_concurrent_accounts_for_one_subscription_make_one(api):
    subscription = unique("sub")
    names = [unique("acct") for _ in range(6)]
    with ThreadPoolExecutor(6) as callers:
        statuses = list(callers.map(lambda name: api.put_account(name, subscription).status_code, names))
    assert sorted(statuses) == [201] + [409] * 5, statuses
    made = [n for n in names if api.call("GET", f"/api/accounts/{n}", admin=True).status_code == 200]
    assert len(made) == 1


DEEP_JSON = b"[" * 1500 + b"]" * 1500


def test_bad_input_that_once_failed_the_service_answers_4xx(api, job_setup):
    tenant, body = job_setup
    for method, path, key in (("POST", tenant.pools, tenant.primary),
                              ("POST", f"{tenant.pools}/target/resize", tenant.primary),
                              ("POST", f"{tenant.jobs}?api-version=2.0", tenant.api_key)):
        response = api.call(method, path, raw=DEEP_JSON, key=key)
        assert response.status_code == 400 and error_of(response) == "InvalidJson", response.text
    response = api.call("PUT", f"/api/accounts/{unique('acct')}", raw=DEEP_JSON, admin=True)
    assert response.status_code == 400 and error_of(response) == "InvalidJson"
    usage = f"/api/accounts/{tenant.account_id}/usage"
    for query in ("from=0001-01-01T00:30:00%2B01:00", "to=9999-12-31T23:30:00-01:00",
                  "from=0001-01-01T00:00:00Z&to=0001-01-01T05:00:00Z", "to=9999-12-31T23:59:59Z"):
        response = api.call("GET", f"{usage}?{query}", key=tenant.primary)
        assert response.status_code == 400 and error_of(response) in ("InvalidDate", "InvalidRange"), (
            query, response.text)
    for top in ("\u0661\u0662", "\u00b2", "+5", " 5", "5_0", "1e2"):
        response = api.call("GET", f"{tenant.jobs}?api-version=2.0&$top={quote(top)}", key=tenant.api_key)
        assert response.status_code == 400 and error_of(response) == "InvalidValue", (top, response.text)
    assert job_count(api, tenant) == 0


BAD_IDS = ["a%2Fb", "a%5Cb", "a%23b", "a%3Fb", "%C3%A9t%C3%A9", "a%09b", "x" * 65, "a.b", "-lead"]


def routes(tenant) -> list[tuple[str, str, str]]:
    """(method, route with {id} slots, auth) for every route that takes ids."""
    sub, svc, acct = tenant.subscription_id, tenant.service_id, tenant.account_id
    job = "0" * 30
    return [
        ("PUT", "/api/accounts/{}", "admin"), ("GET", "/api/accounts/{}", "admin"),
        ("POST", "/api/accounts/{}/keys/primary/regenerate", "admin"),
        ("POST", f"/api/accounts/{acct}/keys/{{}}/regenerate", "admin"),
        ("GET", "/api/accounts/{}/pools", "key"), ("POST", "/api/accounts/{}/pools", "key"),
        ("GET", f"/api/accounts/{acct}/pools/{{}}", "key"), ("DELETE", f"/api/accounts/{acct}/pools/{{}}", "key"),
        ("POST", f"/api/accounts/{acct}/pools/{{}}/resize", "key"), ("GET", "/api/accounts/{}/usage", "key"),
        ("GET", "/api/billingplans/{}/usage", "admin"),
        ("PUT", f"/api/subscriptions/{sub}/services/{{}}", "admin"),
        ("PUT", f"/api/subscriptions/{{}}/services/{svc}", "admin"),
        ("GET", f"/api/subscriptions/{{}}/services/{svc}/swagger.json", "none"),
        ("GET", f"/api/subscriptions/{sub}/services/{{}}/jobs?api-version=2.0", "api"),
        ("POST", f"/api/subscriptions/{sub}/services/{{}}/jobs?api-version=2.0", "api"),
        ("GET", f"/api/subscriptions/{sub}/services/{svc}/jobs/{{}}?api-version=2.0", "api"),
        ("DELETE", f"/api/subscriptions/{sub}/services/{svc}/jobs/{{}}?api-version=2.0", "api"),
        ("POST", f"/api/subscriptions/{sub}/services/{svc}/jobs/{{}}/start?api-version=2.0", "api"),
        ("POST", f"/api/subscriptions/{{}}/services/{svc}/jobs/{job}/start?api-version=2.0", "api"),
    ]


def test_every_route_refuses_malformed_ids_before_storage_sees_them(api, tenant):
    keys = {"admin": {"admin": True}, "key": {"key": tenant.primary}, "api": {"key": tenant.api_key}, "none": {}}
    body = {"SubscriptionId": unique("sub"), "MaxPools": 1, "MaxVmsPerPool": 1}
    for method, route, auth in routes(tenant):
        for bad in BAD_IDS:
            response = api.call(method, route.format(bad), body if method in ("PUT", "POST") else None,
                                **keys[auth])
            assert response.status_code in (400, 404), (method, route, bad, response.status_code, response.text)
            if response.headers.get("Content-Type", "").startswith("application/json"):
                assert error_of(response) in ("InvalidId", "NotFound"), (method, route, bad, response.text)
    assert api.call("GET", tenant.pools, key=tenant.primary).json()["Pools"] == []


def test_the_host_header_never_makes_the_urls_handed_out(api):
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    account, subscription = unique("acct"), unique("sub")
    created = api.call("PUT", f"/api/accounts/{account}", {"SubscriptionId": subscription, "MaxPools": 2,
                                                           "MaxVmsPerPool": 2}, admin=True, headers=evil)
    assert created.status_code == 201 and created.json()["PoolServiceUrl"].startswith(api.base + "/")
    service = api.call("PUT", f"/api/subscriptions/{subscription}/services/{unique('svc')}",
                       {"Name": "svc", "Kind": "New", "Scorer": "samples.census:score", "BillingPlanId": "plan-a"},
                       admin=True, headers=evil)
    assert service.status_code == 201, service.text
    swagger_url = service.json()["SwaggerUrl"]
    assert swagger_url.startswith(api.base + "/") and service.json()["BatchRequestsUrl"].startswith(api.base + "/")
    pool = api.call("POST", f"/api/accounts/{account}/pools", {"VmCount": 0, "ServiceSwaggerUrl": swagger_url},
                    key=created.json()["PrimaryKey"], headers=evil)
    assert pool.status_code == 201 and pool.headers["Location"].startswith(api.base + "/")
    described = api.call("GET", swagger_url[len(api.base):], headers=evil)
    for response in (created, service, pool, described,
                     api.call("GET", f"/api/accounts/{account}", admin=True, headers=evil)):
        assert "evil.example" not in response.text and "evil.example" not in str(response.headers)


def test_a_stored_request_that_can_never_run_fails_once_with_its_reason(api, job_setup, blobs):
    """A job row kept from before today's rules (here: a connection string with a doubled key,
    written straight into the table) ends Failed at its first attempt, saying why."""
    from azure.data.tables import TableServiceClient
    tenant, body = job_setup
    job_id = api.job(tenant.jobs, tenant.api_key, "POST", body=body).json()
    jobs = TableServiceClient.from_connection_string(blobs.connection_string).get_table_client("e2ePools")
    row = jobs.get_entity(layout.job_partition(tenant.subscription_id, job_id), layout.job_key(job_id))
    own = dict(part.split("=", 1) for part in blobs.connection_string.split(";") if part)["BlobEndpoint"]
    secrets = json.loads(sealing.unseal(row[bes.INPUT_SECRETS]))  # sealed at rest, with this session's key
    kept = secrets["Input"]["ConnectionString"]
    secrets["Input"]["ConnectionString"] = kept.rstrip(";") + f";BlobEndpoint={own}"
    row[bes.INPUT_SECRETS] = sealing.seal(json.dumps(secrets))
    jobs.update_entity(row)
    assert api.job(tenant.jobs, tenant.api_key, "POST", f"/{job_id}/start").status_code == 200
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert done["StatusCode"] == "Failed" and done["Attempts"] == 1, done
    assert "BlobEndpoint twice" in done["Details"] and "AccountKey=" not in done["Details"]


def test_no_customer_secret_is_kept_in_plain_text_in_any_table(api, tenant, blobs, azurite):
    from azure.data.tables import TableServiceClient
    blobs.put("inputs", "sealed.csv", census_csv(20, seed=4))
    output = f"outputs/{unique('sealed')}.csv"
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("inputs/sealed.csv", output))
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert done["StatusCode"] == "Finished"  # the sealed connection string opened to run it
    assert done["Results"]["output1"]["SasBlobToken"]  # and to sign the output's read token
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    seen = 0
    for table in service.list_tables():
        for row in service.get_table_client(table.name).list_entities():
            text = json.dumps({k: str(v) for k, v in row.items()})
            seen += 1
            for secret in ("AccountKey=", "sig=", "SharedAccessSignature=", blobs.connection_string):
                assert secret not in text, (table.name, row.get("PartitionKey"), row.get("RowKey"))
    assert seen > 0
    # Once the job has ended its input's secrets are gone; its output's stay while it can be downloaded.
    pools = service.get_table_client("e2ePools")
    row = pools.get_entity(layout.job_partition(tenant.subscription_id, job_id), layout.job_key(job_id))
    assert row[bes.INPUT_SECRETS] == "" and row[bes.OUTPUT_SECRETS].startswith(sealing.PREFIX)
    cancelled = api.job(tenant.jobs, tenant.api_key, "POST", body=blobs.job_body("inputs/sealed.csv", output)).json()
    assert api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{cancelled}").status_code == 200
    row = pools.get_entity(layout.job_partition(tenant.subscription_id, cancelled), layout.job_key(cancelled))
    assert row["Status"] == "Cancelled" and row[bes.INPUT_SECRETS] == row[bes.OUTPUT_SECRETS] == ""
