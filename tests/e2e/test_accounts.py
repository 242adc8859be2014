"""Operator routes: accounts, their keys and quotas."""
from tests.e2e.harness import unique


def test_create_account_returns_keys_and_pool_service_url(api):
    account, subscription = unique("acct"), unique("sub")
    response = api.put_account(account, subscription, 3, 4)
    assert response.status_code == 201
    body = response.json()
    assert body["AccountId"] == account and body["SubscriptionId"] == subscription
    assert body["PoolServiceUrl"] == f"{api.base}/api/accounts/{account}"
    assert body["MaxPools"] == 3 and body["MaxVmsPerPool"] == 4
    assert len(body["PrimaryKey"]) >= 40 and body["PrimaryKey"] != body["SecondaryKey"]


def test_updating_quotas_answers_200_without_keys(api, tenant):
    response = api.put_account(tenant.account_id, tenant.subscription_id, 9, 7)
    assert response.status_code == 200
    body = response.json()
    assert (body["MaxPools"], body["MaxVmsPerPool"]) == (9, 7)
    assert "PrimaryKey" not in body and "SecondaryKey" not in body
    # The keys issued at creation still work after a quota change.
    assert api.call("GET", tenant.pools, key=tenant.primary).status_code == 200
    got = api.call("GET", f"/api/accounts/{tenant.account_id}", admin=True).json()
    assert (got["MaxPools"], got["MaxVmsPerPool"]) == (9, 7) and "PrimaryKeyHash" not in got


def test_subscription_of_an_account_cannot_change(api, tenant):
    response = api.put_account(tenant.account_id, unique("other-sub"))
    assert response.status_code == 409
    assert response.json()["error"]["details"][0]["code"] == "SubscriptionMismatch"
    got = api.call("GET", f"/api/accounts/{tenant.account_id}", admin=True).json()
    assert got["SubscriptionId"] == tenant.subscription_id


def test_operator_routes_take_an_operator_key_and_never_a_host_key(api, app_host):
    body = {"SubscriptionId": "s", "MaxPools": 1, "MaxVmsPerPool": 1}
    account = unique("acct")
    missing = api.call("PUT", f"/api/accounts/{account}", body)
    assert missing.status_code == 401 and "x-functions-key: <key>" in missing.json()["error"]["message"]
    wrong = api.call("PUT", f"/api/accounts/{account}", body, headers={"Authorization": "Bearer not-the-key"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "Unauthorized"
    # The host's keys open nothing here: the master key also opens the runtime's admin API.
    for host_key in (app_host.master_key, app_host.function_key):
        for headers in ({"x-functions-key": host_key}, {"Authorization": f"Bearer {host_key}"}):
            assert api.call("PUT", f"/api/accounts/{account}", body, headers=headers).status_code == 401
        assert api.call("PUT", f"/api/accounts/{account}?code={host_key}", body).status_code == 401
    assert api.call("GET", f"/api/accounts/{account}", admin=True).status_code == 404
    assert api.call("PUT", f"/api/accounts/{account}", body, admin=True).status_code == 201
    # The operator key may also go where a host key would.
    taken = api.call("GET", f"/api/accounts/{account}", headers={"x-functions-key": app_host.operator_key})
    assert taken.status_code == 200 and taken.json()["AccountId"] == account


def test_regenerating_a_key_stops_the_old_one_at_once(api, tenant):
    assert api.call("GET", tenant.pools, key=tenant.primary).status_code == 200
    response = api.call("POST", f"/api/accounts/{tenant.account_id}/keys/primary/regenerate", admin=True)
    assert response.status_code == 200
    new_key = response.json()["Key"]
    assert new_key != tenant.primary
    assert api.call("GET", tenant.pools, key=tenant.primary).status_code == 401
    assert api.call("GET", tenant.pools, key=new_key).status_code == 200
    assert api.call("GET", tenant.pools, key=tenant.secondary).status_code == 200
    secondary = api.call("POST", f"/api/accounts/{tenant.account_id}/keys/secondary/regenerate", admin=True)
    assert api.call("GET", tenant.pools, key=tenant.secondary).status_code == 401
    assert api.call("GET", tenant.pools, key=secondary.json()["Key"]).status_code == 200


def test_regenerate_unknown_key_name_or_account(api, tenant):
    bad_name = api.call("POST", f"/api/accounts/{tenant.account_id}/keys/tertiary/regenerate", admin=True)
    assert bad_name.status_code == 404 and bad_name.json()["error"]["details"][0]["code"] == "KeyNotFound"
    missing = api.call("POST", f"/api/accounts/{unique('nobody')}/keys/primary/regenerate", admin=True)
    assert missing.status_code == 404 and missing.json()["error"]["details"][0]["code"] == "AccountNotFound"
    assert api.call("GET", tenant.pools, key=tenant.primary).status_code == 200


def test_a_subscription_id_is_one_subscription_whatever_its_case(api):
    subscription = unique("Sub-CaSe")
    first = api.put_account(unique("acct"), subscription)
    assert first.status_code == 201 and first.json()["SubscriptionId"] == subscription  # shown as given
    # The same subscription in upper case has its account already, as Azure compares GUIDs.
    second = api.put_account(unique("acct"), subscription.upper())
    assert second.status_code == 409 and second.json()["error"]["details"][0]["code"] == "SubscriptionHasAccount"
    # A web service registered in one case is the same service in another.
    service = unique("svc")
    registered = api.put_service(subscription.lower(), service)
    assert registered.status_code == 201
    again = api.put_service(subscription.upper(), service)
    assert again.status_code == 200 and "ApiKey" not in again.json()
    jobs = f"/api/subscriptions/{subscription.upper()}/services/{service}/jobs"
    assert api.job(jobs, registered.json()["ApiKey"]).status_code == 200
    shown = api.call("GET", f"/api/subscriptions/{subscription}/services/{service}", admin=True)
    assert shown.status_code == 200 and shown.json()["ServiceId"] == service
