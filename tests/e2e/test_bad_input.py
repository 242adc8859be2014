"""Every bad request answers a clear 4xx error body and changes nothing."""
import pytest

from tests.e2e.harness import Listener
from tests.e2e.test_pools import create


CLASS_OF_STATUS = {400: {"BadArgument", "InvalidOperation"}, 401: {"Unauthorized"}, 404: {"NotFound"},
                   409: {"Conflict", "QuotaExceeded", "InvalidOperation"}, 413: {"RequestEntityTooLarge"},
                   415: {"UnsupportedMediaType"}, 503: {"ServiceUnavailable"}}


def error_of(response):
    """The specific code of an error answer, after checking it has the one envelope of every
    route, with the class Azure ML uses for its status."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    error = body["error"]
    assert error["code"] in CLASS_OF_STATUS[response.status_code], (response.status_code, body)
    assert error["message"] and "Traceback" not in response.text
    (detail,) = error["details"]
    assert {"code", "message"} <= set(detail) <= {"code", "message", "target"} and detail["message"], body
    return detail["code"]


def snapshot(api, tenant):
    pools = api.call("GET", tenant.pools, key=tenant.primary).json()["Pools"]
    return sorted((p["PoolId"], p["VmCount"], p["CreatedAt"]) for p in pools)


@pytest.fixture
def pool(api, tenant):
    assert create(api, tenant, 1, "steady").status_code == 201
    return tenant


VALID = "<the tenant's own swagger URL>"
BAD_CREATE_BODIES = [
    ({"ServiceSwaggerUrl": "x"}, 400, "MissingField"),
    ({"VmCount": "2"}, 400, "InvalidValue"),
    ({"VmCount": True}, 400, "InvalidValue"),
    ({"VmCount": 2.5}, 400, "InvalidValue"),
    ({"VmCount": -1}, 400, "InvalidValue"),
    ({"VmCount": 10 ** 20}, 400, "InvalidValue"),
    ({"VmCount": 1}, 400, "MissingField"),
    ({"VmCount": 1, "ServiceSwaggerUrl": 7}, 400, "InvalidServiceSwaggerUrl"),
    ({"VmCount": 1, "ServiceSwaggerUrl": "not a url"}, 400, "InvalidServiceSwaggerUrl"),
    ({"VmCount": 1, "ServiceSwaggerUrl": "file:///etc/passwd"}, 400, "InvalidServiceSwaggerUrl"),
    ({"VmCount": 1, "vmcount": 1}, 400, "UnknownField"),
    ({"VmCount": 1, "PoolId": "has space", "ServiceSwaggerUrl": VALID}, 400, "InvalidId"),
    ({"VmCount": 1, "PoolId": "x" * 65, "ServiceSwaggerUrl": VALID}, 400, "InvalidId"),
    ({"VmCount": 1, "PoolId": 12, "ServiceSwaggerUrl": VALID}, 400, "InvalidId"),
    ({"VmCount": 1, "PoolId": "steady", "ServiceSwaggerUrl": VALID}, 409, "PoolExists"),
]


@pytest.mark.parametrize("body,status,code", BAD_CREATE_BODIES)
def test_bad_create_bodies(api, pool, body, status, code):
    before = snapshot(api, pool)
    body = {k: pool.swagger_url if v == VALID else v for k, v in body.items()}
    response = api.call("POST", pool.pools, body, key=pool.primary)
    assert response.status_code == status, response.text
    assert error_of(response) == code
    assert snapshot(api, pool) == before


@pytest.mark.parametrize("raw,headers,status,code", [
    (b"{not json", {}, 400, "InvalidJson"),
    (b"[1, 2]", {}, 400, "InvalidJson"),
    (b"", {}, 400, "InvalidJson"),
    (b"\xff\xfe", {}, 400, "InvalidJson"),
    (b'{"VmCount": 1}', {"Content-Type": "text/xml"}, 415, "UnsupportedMediaType"),
    (b'{"VmCount": 1, "Pad": "' + b"x" * 70000 + b'"}', {}, 413, "PayloadTooLarge"),
])
def test_malformed_bodies(api, pool, raw, headers, status, code):
    before = snapshot(api, pool)
    for method, path in [("POST", pool.pools), ("POST", f"{pool.pools}/steady/resize")]:
        response = api.call(method, path, raw=raw, key=pool.primary, headers=headers)
        assert response.status_code == status, (path, response.text)
        assert error_of(response) == code
    assert snapshot(api, pool) == before


@pytest.mark.parametrize("body,code", [
    ({}, "MissingField"), ({"VmCount": -5}, "InvalidValue"), ({"VmCount": "3"}, "InvalidValue"),
    ({"VmCount": 1, "Other": 1}, "UnknownField"), ({"VmCount": 97}, "InvalidValue"),
])
def test_bad_resize_bodies(api, pool, body, code):
    before = snapshot(api, pool)
    response = api.call("POST", f"{pool.pools}/steady/resize", body, key=pool.primary)
    assert response.status_code == 400 and error_of(response) == code
    assert snapshot(api, pool) == before


def test_missing_or_wrong_keys(api, pool):
    for headers in [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer wrong-key"}]:
        response = api.call("GET", pool.pools, headers=headers)
        assert response.status_code == 401 and error_of(response) == "Unauthorized"
    unknown_account = api.call("GET", "/api/accounts/nobody-here/pools", key=pool.primary)
    assert unknown_account.status_code == 401


def test_unknown_ids_and_routes(api, pool):
    assert error_of(api.call("GET", f"{pool.pools}/nope", key=pool.primary)) == "PoolNotFound"
    assert api.call("GET", f"{pool.pools}/bad%20id", key=pool.primary).status_code == 404
    assert api.call("GET", "/api/no/such/route").status_code == 404
    assert api.call("PATCH", f"{pool.pools}/steady", key=pool.primary).status_code == 404


@pytest.mark.parametrize("body,code", [
    ({"SubscriptionId": "s", "MaxPools": -1, "MaxVmsPerPool": 1}, "InvalidValue"),
    ({"SubscriptionId": "s", "MaxPools": 1, "MaxVmsPerPool": 1000}, "InvalidValue"),
    ({"SubscriptionId": "", "MaxPools": 1, "MaxVmsPerPool": 1}, "InvalidValue"),
    ({"SubscriptionId": "s/../x", "MaxPools": 1, "MaxVmsPerPool": 1}, "InvalidId"),
    ({"MaxPools": 1, "MaxVmsPerPool": 1}, "MissingField"),
    ({"SubscriptionId": "s", "MaxPools": "1", "MaxVmsPerPool": 1}, "InvalidValue"),
])
def test_bad_account_bodies(api, body, code):
    response = api.call("PUT", "/api/accounts/never-made", body, admin=True)
    assert response.status_code == 400 and error_of(response) == code
    assert api.call("GET", "/api/accounts/never-made", admin=True).status_code == 404


def test_pool_creation_never_fetches_the_swagger_url(api, pool):
    """An attacker-chosen URL must be refused without the service connecting to it."""
    with Listener() as listener:
        port = listener.port
        urls = [f"http://127.0.0.1:{port}/api/subscriptions/{pool.subscription_id}/services/{pool.service_id}"
                "/swagger.json", f"http://127.0.0.1:{port}/swagger.json",
                pool.swagger_url + "?redirect=http://127.0.0.1:" + str(port)]
        for url in urls:
            response = api.call("POST", pool.pools, {"VmCount": 1, "ServiceSwaggerUrl": url}, key=pool.primary)
            assert response.status_code == 400 and error_of(response) == "InvalidServiceSwaggerUrl"
        assert listener.close() == 0
