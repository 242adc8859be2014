"""Pool routes over HTTP: create, list, get, resize, delete, and what they bill."""
import datetime as dt
import time

from tests.e2e.conftest import VM_PROVISIONING_SECONDS, make_tenant
from tests.e2e.harness import unique, wait_for


def parse(moment: str) -> dt.datetime:
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))


def create(api, tenant, vm_count=2, pool_id=None, key=None):
    body = {"VmCount": vm_count, "ServiceSwaggerUrl": tenant.swagger_url}
    if pool_id:
        body["PoolId"] = pool_id
    return api.call("POST", tenant.pools, body, key=key or tenant.primary)


def seconds_from_timestamps(pool: dict) -> int:
    """What the pool owes, recomputed from the VM timestamps the API reports."""
    as_of = parse(pool["AsOf"])
    total = 0
    for vm in pool["Vms"]:
        if vm["ProvisionedAt"] is None:
            continue
        end = parse(vm["DeletedAt"]) if vm["DeletedAt"] else as_of
        total += max(0, int((end - parse(vm["ProvisionedAt"])).total_seconds()))
    return total


def test_create_pool_provisions_vms_then_they_turn_idle(api, tenant):
    response = create(api, tenant, 2, "first")
    assert response.status_code == 201, response.text
    pool = response.json()
    assert response.headers["Location"] == f"{tenant.pool_url}/pools/first"
    assert pool["PoolId"] == "first" and pool["VmCount"] == 2
    assert pool["VmCounts"]["Provisioning"] == 2 and pool["State"] == "Resizing"
    assert pool["BillingPlanId"] == "plan-a" and pool["ComputeSeconds"] == 0
    ready = wait_for(lambda: (p := api.call("GET", f"{tenant.pools}/first", key=tenant.primary).json())
                     ["VmCounts"]["Idle"] == 2 and p, timeout=VM_PROVISIONING_SECONDS + 10)
    assert ready["State"] == "Steady" and ready["RunningJobs"] == 0 and ready["QueuedJobs"] == 0
    assert [vm["State"] for vm in ready["Vms"]] == ["Idle", "Idle"]


def test_pool_id_is_generated_when_omitted_and_listed(api, tenant):
    pool = create(api, tenant, 1).json()
    assert len(pool["PoolId"]) == 32
    listed = api.call("GET", tenant.pools, key=tenant.secondary).json()["Pools"]
    assert [p["PoolId"] for p in listed] == [pool["PoolId"]]


def test_compute_hours_equal_the_sum_over_vm_timestamps(api, tenant):
    create(api, tenant, 2, "billed")
    time.sleep(VM_PROVISIONING_SECONDS + 2.2)
    grown = api.call("POST", f"{tenant.pools}/billed/resize", {"VmCount": 3}, key=tenant.primary)
    assert grown.status_code == 202 and grown.json()["VmCount"] == 3
    time.sleep(1.2)
    shrunk = api.call("POST", f"{tenant.pools}/billed/resize", {"VmCount": 1}, key=tenant.primary)
    assert shrunk.status_code == 202
    time.sleep(1.1)
    pool = api.call("GET", f"{tenant.pools}/billed", key=tenant.primary).json()
    live = [vm for vm in pool["Vms"] if vm["State"] != "Deleted"]
    assert len(live) == 1 and len(pool["Vms"]) == 3
    # The shrink removed the newest VMs (provisioning or idle, the newest goes first) and kept the oldest.
    assert [vm["VmId"] for vm in live] == ["vm-000000"]
    assert pool["ComputeSeconds"] == seconds_from_timestamps(pool) >= 3
    assert pool["ComputeHours"] == round(pool["ComputeSeconds"] / 3600, 6)
    assert sum(vm["ComputeSeconds"] for vm in pool["Vms"]) == pool["ComputeSeconds"]


def test_resize_to_zero_stops_the_bill(api, tenant):
    create(api, tenant, 2, "zero")
    # Provisioning ends on the whole second after it is due: wait a full second past that.
    time.sleep(VM_PROVISIONING_SECONDS + 2.2)
    assert api.call("POST", f"{tenant.pools}/zero/resize", {"VmCount": 0}, key=tenant.primary).status_code == 202
    first = api.call("GET", f"{tenant.pools}/zero", key=tenant.primary).json()
    time.sleep(1.5)
    later = api.call("GET", f"{tenant.pools}/zero", key=tenant.primary).json()
    assert first["ComputeSeconds"] == later["ComputeSeconds"] == seconds_from_timestamps(later) >= 2
    assert later["VmCounts"] == {"Provisioning": 0, "Idle": 0, "Busy": 0, "Draining": 0}
    assert later["State"] == "Steady" and later["VmCount"] == 0


def test_delete_pool_then_it_answers_404_and_frees_quota(api, tenant_factory):
    tenant = tenant_factory(max_pools=1)
    assert create(api, tenant, 1, "gone").status_code == 201
    assert create(api, tenant, 1, "second").status_code == 409
    deleted = api.call("DELETE", f"{tenant.pools}/gone", key=tenant.primary)
    assert deleted.status_code == 202 and deleted.json()["State"] == "Deleted"
    assert api.call("GET", f"{tenant.pools}/gone", key=tenant.primary).status_code == 404
    assert api.call("DELETE", f"{tenant.pools}/gone", key=tenant.primary).status_code == 404
    assert api.call("POST", f"{tenant.pools}/gone/resize", {"VmCount": 1}, key=tenant.primary).status_code == 404
    assert api.call("GET", tenant.pools, key=tenant.primary).json()["Pools"] == []
    assert create(api, tenant, 1, "second").status_code == 201
    # A deleted pool's id stays taken, so its history is never confused with a new pool's.
    reuse = create(api, tenant, 1, "gone")
    assert reuse.status_code == 409 and reuse.json()["error"]["details"][0]["code"] == "PoolExists"


def test_growing_beyond_max_vms_per_pool_is_refused(api, tenant_factory):
    tenant = tenant_factory(max_vms=3)
    too_big = create(api, tenant, 4)
    assert too_big.status_code == 409 and too_big.json()["error"]["details"][0]["code"] == "QuotaExceeded"
    create(api, tenant, 3, "full")
    refused = api.call("POST", f"{tenant.pools}/full/resize", {"VmCount": 4}, key=tenant.primary)
    assert refused.status_code == 409 and refused.json()["error"]["details"][0]["code"] == "QuotaExceeded"
    pool = api.call("GET", f"{tenant.pools}/full", key=tenant.primary).json()
    assert pool["VmCount"] == 3 and len(pool["Vms"]) == 3


def test_pool_needs_a_new_service_of_the_same_subscription(api, tenant):
    classic = api.put_service(tenant.subscription_id, unique("classic"), kind="Classic").json()
    response = api.call("POST", tenant.pools, {"VmCount": 1, "ServiceSwaggerUrl": classic["SwaggerUrl"]},
                        key=tenant.primary)
    assert response.status_code == 400 and response.json()["error"]["details"][0]["code"] == "ClassicServiceNotAllowed"
    foreign = api.put_service(unique("sub"), unique("svc")).json()
    response = api.call("POST", tenant.pools, {"VmCount": 1, "ServiceSwaggerUrl": foreign["SwaggerUrl"]},
                        key=tenant.primary)
    assert response.status_code == 400 and response.json()["error"]["details"][0]["code"] == "ServiceNotFound"
    missing = tenant.swagger_url.replace(tenant.service_id, "no-such-service")
    response = api.call("POST", tenant.pools, {"VmCount": 1, "ServiceSwaggerUrl": missing}, key=tenant.primary)
    assert response.status_code == 400 and response.json()["error"]["details"][0]["code"] == "ServiceNotFound"
    assert api.call("GET", tenant.pools, key=tenant.primary).json()["Pools"] == []


def test_a_vm_still_provisioning_is_removed_first_and_never_billed(slow_stack):
    api, _ = slow_stack  # VMs provision for ten minutes there
    tenant = make_tenant(api)
    create(api, tenant, 2, "young")
    shrunk = api.call("POST", f"{tenant.pools}/young/resize", {"VmCount": 1}, key=tenant.primary)
    assert shrunk.status_code == 202
    pool = api.call("GET", f"{tenant.pools}/young", key=tenant.primary).json()
    gone = [vm for vm in pool["Vms"] if vm["State"] == "Deleted"]
    assert [vm["VmId"] for vm in gone] == ["vm-000001"]
    assert gone[0]["ProvisionedAt"] is None and gone[0]["ComputeSeconds"] == 0 and pool["ComputeSeconds"] == 0
