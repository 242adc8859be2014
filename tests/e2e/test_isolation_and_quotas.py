"""SPEC §2 and §4 rule 5 over HTTP: tenants cannot see each other, and quotas hold under races."""
from concurrent.futures import ThreadPoolExecutor

from tests.e2e.test_pools import create

RACERS = 20


def test_another_tenants_pool_is_indistinguishable_from_a_missing_one(api, tenant_factory):
    alice, bob = tenant_factory(), tenant_factory()
    create(api, alice, 1, "private")
    # Bob's key on Alice's pool service URL: not a valid key there.
    for method, path, body in [("GET", f"{alice.pools}", None), ("GET", f"{alice.pools}/private", None),
                               ("POST", f"{alice.pools}/private/resize", {"VmCount": 0}),
                               ("DELETE", f"{alice.pools}/private", None),
                               ("POST", alice.pools, {"VmCount": 1, "ServiceSwaggerUrl": alice.swagger_url})]:
        response = api.call(method, path, body, key=bob.primary)
        assert response.status_code == 401, (method, path)
        assert "private" not in response.text
    # Alice's pool id on Bob's own URL answers exactly as an id that never existed.
    foreign = api.call("GET", f"{bob.pools}/private", key=bob.primary)
    missing = api.call("GET", f"{bob.pools}/never-existed", key=bob.primary)
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["error"]["details"][0]["code"] == missing.json()["error"]["details"][0]["code"] == "PoolNotFound"
    assert api.call("GET", f"{alice.pools}/private", key=alice.primary).json()["VmCount"] == 1


def test_keys_are_never_echoed_after_issue(api, tenant):
    created = create(api, tenant, 1, "quiet")
    responses = [created, api.call("GET", tenant.pools, key=tenant.primary),
                 api.call("GET", f"{tenant.pools}/quiet", key=tenant.primary),
                 api.put_account(tenant.account_id, tenant.subscription_id),
                 api.call("GET", f"/api/accounts/{tenant.account_id}", admin=True),
                 api.put_service(tenant.subscription_id, tenant.service_id)]
    for response in responses:
        for secret in (tenant.primary, tenant.secondary, tenant.api_key):
            assert secret not in response.text


def test_max_pools_holds_under_concurrent_creates(api, tenant_factory):
    tenant = tenant_factory(max_pools=3, max_vms=2)
    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(lambda i: create(api, tenant, 1, f"race-{i}"), range(RACERS)))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 3 and codes.count(409) == RACERS - 3, codes
    assert all(r.json()["error"]["details"][0]["code"] == "QuotaExceeded" for r in responses if r.status_code == 409)
    listed = api.call("GET", tenant.pools, key=tenant.primary).json()["Pools"]
    assert sorted(p["PoolId"] for p in listed) == sorted(r.json()["PoolId"] for r in responses if r.status_code == 201)


def test_one_pool_id_is_created_once_under_concurrent_creates(api, tenant):
    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(lambda _: create(api, tenant, 1, "same"), range(RACERS)))
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 1 and codes.count(409) == RACERS - 1, codes
    pool = api.call("GET", f"{tenant.pools}/same", key=tenant.primary).json()
    assert len(pool["Vms"]) == 1


def test_concurrent_resizes_leave_one_accepted_target_and_refuse_the_rest(api, tenant_factory):
    tenant = tenant_factory(max_vms=6)
    create(api, tenant, 0, "elastic")
    targets = [(i * 5) % 8 for i in range(RACERS)]  # 0..7: the 7s are over the quota of 6
    assert 7 in targets
    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(
            lambda t: api.call("POST", f"{tenant.pools}/elastic/resize", {"VmCount": t}, key=tenant.primary),
            targets))
    for target, response in zip(targets, responses):
        assert response.status_code == (202 if target <= 6 else 409), (target, response.text)
    accepted = {target for target, response in zip(targets, responses) if response.status_code == 202}
    pool = api.call("GET", f"{tenant.pools}/elastic", key=tenant.primary).json()
    live = [vm for vm in pool["Vms"] if vm["State"] != "Deleted"]
    # Whichever resize committed last decides the size: an accepted target, never a refused one.
    assert len(live) == pool["VmCount"] <= 6
    assert pool["VmCount"] in accepted and 7 not in accepted
    assert len({vm["VmId"] for vm in pool["Vms"]}) == len(pool["Vms"])
