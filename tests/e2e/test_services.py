"""Operator routes: web services, their API keys and swagger.json."""
import pytest

from tests.e2e.conftest import IMPORT_PROBE_LOG
from tests.e2e.harness import unique


def test_register_new_service_returns_key_and_urls(api):
    subscription, service = unique("sub"), unique("svc")
    response = api.put_service(subscription, service, plan="plan-x")
    assert response.status_code == 201
    body = response.json()
    base = f"{api.base}/api/subscriptions/{subscription}/services/{service}"
    assert body["ServiceId"] == service
    assert body["BatchRequestsUrl"] == f"{base}/jobs?api-version=2.0"
    assert body["SwaggerUrl"] == f"{base}/swagger.json"
    assert body["BillingPlanId"] == "plan-x" and body["Kind"] == "New"
    assert len(body["ApiKey"]) >= 40


def test_swagger_names_the_billing_plan_and_bes_paths(api):
    subscription, service = unique("sub"), unique("svc")
    created = api.put_service(subscription, service, plan="plan-y").json()
    response = api.call("GET", f"/api/subscriptions/{subscription}/services/{service}/swagger.json",
                        key=created["ApiKey"])
    assert response.status_code == 200
    doc = response.json()
    assert doc["swagger"] == "2.0"
    assert doc["info"]["x-ms-billing-plan-id"] == "plan-y"
    assert doc["basePath"] == f"/api/subscriptions/{subscription}/services/{service}"
    assert set(doc["paths"]) == {"/jobs", "/jobs/{jobId}", "/jobs/{jobId}/start"}
    assert set(doc["paths"]["/jobs/{jobId}"]) == {"get", "delete"}


def test_swagger_needs_the_service_api_key(api):
    subscription, service = unique("sub"), unique("svc")
    other = api.put_service(subscription, unique("svc")).json()
    api.put_service(subscription, service)
    path = f"/api/subscriptions/{subscription}/services/{service}/swagger.json"
    assert api.call("GET", path).status_code == 401
    assert api.call("GET", path, key="wrong").status_code == 401
    assert api.call("GET", path, key=other["ApiKey"]).status_code == 401
    assert api.call("GET", f"/api/subscriptions/{subscription}/services/{unique('none')}/swagger.json",
                    key=other["ApiKey"]).status_code == 401


def test_classic_service_has_no_billing_plan(api):
    subscription = unique("sub")
    classic = api.put_service(subscription, unique("svc"), kind="Classic")
    assert classic.status_code == 201 and classic.json()["BillingPlanId"] is None
    with_plan = api.call("PUT", f"/api/subscriptions/{subscription}/services/{unique('svc')}",
                         {"Name": "n", "Kind": "Classic", "BillingPlanId": "p", "Scorer": "json:dumps"}, admin=True)
    assert with_plan.status_code == 400


def test_update_service_keeps_kind_and_key(api):
    subscription, service = unique("sub"), unique("svc")
    created = api.put_service(subscription, service, plan="plan-1").json()
    updated = api.put_service(subscription, service, plan="plan-2")
    assert updated.status_code == 200 and "ApiKey" not in updated.json()
    assert updated.json()["BillingPlanId"] == "plan-2"
    swagger = api.call("GET", f"/api/subscriptions/{subscription}/services/{service}/swagger.json",
                       key=created["ApiKey"]).json()
    assert swagger["info"]["x-ms-billing-plan-id"] == "plan-2"
    kind_change = api.put_service(subscription, service, kind="Classic")
    assert kind_change.status_code == 409 and kind_change.json()["error"]["details"][0]["code"] == "KindImmutable"


def test_bad_service_registrations(api):
    subscription = unique("sub")
    path = f"/api/subscriptions/{subscription}/services/{unique('svc')}"
    cases = [
        ({"Name": "n", "Kind": "Newer", "BillingPlanId": "p", "Scorer": "json:dumps"}, "InvalidValue"),
        ({"Name": "n", "Kind": "New", "Scorer": "json:dumps"}, "MissingField"),
        ({"Name": "n", "Kind": "New", "BillingPlanId": "p", "Scorer": "not a scorer"}, "InvalidScorer"),
        ({"Name": "n", "Kind": "New", "BillingPlanId": "p", "Scorer": "samples.no_such_module:f"}, "InvalidScorer"),
        ({"Name": "n", "Kind": "New", "BillingPlanId": "p", "Scorer": "samples.census:no_such"}, "InvalidScorer"),
        ({"Name": 5, "Kind": "New", "BillingPlanId": "p", "Scorer": "json:dumps"}, "InvalidValue"),
        ({"Name": "n", "Kind": "New", "BillingPlanId": "p", "Scorer": "json:dumps", "Extra": 1}, "UnknownField"),
    ]
    for body, code in cases:
        response = api.call("PUT", path, body, admin=True)
        assert response.status_code == 400, body
        assert response.json()["error"]["details"][0]["code"] == code, body
    bad_id = api.call("PUT", f"/api/subscriptions/{subscription}/services/bad%20id",
                      {"Name": "n", "Kind": "Classic", "Scorer": "json:dumps"}, admin=True)
    assert bad_id.status_code == 400 and bad_id.json()["error"]["details"][0]["code"] == "InvalidId"
    # Nothing was registered by the rejected requests.
    valid = api.put_service(subscription, path.rsplit("/", 1)[1])
    assert valid.status_code == 201


@pytest.mark.parametrize("scorer", ["os:system", "json:dumps", "subprocess:run", "samplesx.census:score",
                                    "tests.import_probe:score"])
def test_scorers_outside_the_allowed_packages_are_refused_unimported(api, scorer):
    path = f"/api/subscriptions/{unique('sub')}/services/{unique('svc')}"
    response = api.call("PUT", path, {"Name": "n", "Kind": "New", "BillingPlanId": "p", "Scorer": scorer}, admin=True)
    assert response.status_code == 400 and response.json()["error"]["details"][0]["code"] == "ScorerNotAllowed", response.text
    assert api.call("GET", f"{path}/swagger.json").status_code in (401, 404)
    assert not IMPORT_PROBE_LOG.exists(), "a scorer module outside SCORER_PACKAGES was imported"
