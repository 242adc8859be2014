"""The reads the CLI and the dashboard are built on: the account list, one web service, every
plan's usage, hourly series per pool and per plan, and a pool's queue in FIFO order."""
from samples import census
from tests.e2e.harness import unique, wait_for
from tests.e2e.test_pools import create


def test_the_operator_lists_accounts_and_reads_a_service_without_keys(api, tenant):
    listed = api.call("GET", "/api/accounts", admin=True)
    assert listed.status_code == 200
    mine = [a for a in listed.json()["Accounts"] if a["AccountId"] == tenant.account_id]
    assert mine and mine[0]["SubscriptionId"] == tenant.subscription_id
    assert mine[0]["PoolServiceUrl"] == tenant.pool_url
    ids = [a["AccountId"] for a in listed.json()["Accounts"]]
    assert ids == sorted(ids)
    assert tenant.primary not in listed.text and tenant.secondary not in listed.text and "Key" not in listed.text

    service = api.call("GET", f"/api/subscriptions/{tenant.subscription_id}/services/{tenant.service_id}",
                       admin=True)
    assert service.status_code == 200 and service.json()["SwaggerUrl"] == tenant.swagger_url
    assert "ApiKey" not in service.json() and tenant.api_key not in service.text
    missing = api.call("GET", f"/api/subscriptions/{tenant.subscription_id}/services/nope", admin=True)
    assert missing.status_code == 404 and missing.json()["error"]["details"][0]["code"] == "ServiceNotFound"
    for path in ("/api/accounts", f"/api/subscriptions/{tenant.subscription_id}/services/{tenant.service_id}",
                 "/api/billingplans"):
        assert api.call("GET", path, key=tenant.primary).status_code == 401


def test_hourly_series_per_pool_and_plan_add_up_to_the_totals(api, tenant_factory):
    tenant = tenant_factory()
    for pool_id in ("h1", "h2"):
        assert create(api, tenant, 1, pool_id).status_code == 201
    usage_path = f"/api/accounts/{tenant.account_id}/usage"
    report = wait_for(lambda: (r := api.call("GET", usage_path, key=tenant.primary).json())
                      and all(p["VmSeconds"] > 0 for p in r["Pools"]) and r, timeout=30)
    for pool in report["Pools"]:
        assert sum(h["VmSeconds"] for h in pool["Hourly"]) == pool["VmSeconds"]
    by_hour = {}
    for pool in report["Pools"]:
        for hour in pool["Hourly"]:
            by_hour[hour["Hour"]] = by_hour.get(hour["Hour"], 0) + hour["VmSeconds"]
    assert by_hour == {h["Hour"]: h["VmSeconds"] for h in report["Hourly"]}
    (plan,) = report["BillingPlans"]
    assert {h["Hour"]: h["VmSeconds"] for h in plan["Hourly"]} == by_hour
    assert sum(by_hour.values()) == plan["PoolVmSeconds"] == report["Total"]["VmSeconds"]

    plans = api.call("GET", "/api/billingplans", admin=True).json()
    (listed,) = [p for p in plans["BillingPlans"] if p["BillingPlanId"] == "plan-a"]
    one = api.call("GET", "/api/billingplans/plan-a/usage", admin=True).json()
    # The same plan, read through both routes a moment apart: the list's figure is never ahead.
    assert listed["Pools"]["VmSeconds"] <= one["Pools"]["VmSeconds"]
    assert tenant.account_id in [a["AccountId"] for a in one["Accounts"]]
    assert sum(h["VmSeconds"] for h in listed["Hourly"]) == listed["Pools"]["VmSeconds"]
    assert api.call("GET", "/api/billingplans?from=1999-01-01T00:00:00Z", admin=True).status_code == 400


def test_a_pools_queue_is_named_in_fifo_order(api, tenant, blobs):
    pool_id = unique("q")
    assert create(api, tenant, 1, pool_id).status_code == 201
    wait_for(lambda: api.call("GET", f"{tenant.pools}/{pool_id}", key=tenant.primary).json()["VmCounts"]["Idle"] == 1)
    blobs.put("queue", "in.csv", "".join(census.generate_csv(400)).encode())
    started = []
    for index in range(4):
        job_id, _ = api.run_job(tenant.jobs, tenant.api_key,
                                blobs.job_body("queue/in.csv", f"queue/out-{index}.csv", pool_id, SecondsPerChunk=8))
        started.append(job_id)
    pool = api.call("GET", f"{tenant.pools}/{pool_id}", key=tenant.primary).json()
    running = [vm["JobId"] for vm in pool["Vms"] if vm["JobId"]]
    assert running == started[:1]
    assert pool["Queue"] == started[1:] and pool["QueuedJobs"] == 3
    for job_id in started:
        api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{job_id}")
