"""Bounded API fuzzing: schemathesis generates requests from openapi.yaml for every route,
with valid keys and with wrong ones; no answer may be a 5xx or stray from the spec."""
import collections
import os
import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

from tests.e2e.conftest import make_tenant
from tests.e2e.harness import ROOT
from tests.e2e.test_pools import create

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# The suite's bounded run; FUZZ_EXAMPLES=40 gives the full run of about 1,300 requests.
EXAMPLES_PER_ROUTE = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SEEN: list[int] = []
SCHEMA = schemathesis.openapi.from_path(ROOT / "openapi.yaml")
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}
# Rotating the tenant's key mid-run would turn the rest of the valid-key run into 401s.
KEY_ROTATION = "RegenerateAccountKey"


@pytest.fixture(scope="module")
def fuzz_target(api, blobs):
    tenant = make_tenant(api)
    assert create(api, tenant, 1, "fuzz-pool").status_code == 201
    job_id = api.job(tenant.jobs, tenant.api_key, "POST",
                     body=blobs.job_body("inputs/in.csv", "outputs/o.csv", "fuzz-pool")).json()
    return api, tenant, job_id


def credentials(operation, tenant, api, valid: bool) -> dict:
    if not operation.definition.raw["security"]:
        return {}
    scheme = next(iter(operation.definition.raw["security"][0]))
    if not valid:
        return {"Authorization": "Bearer wrong-key"}
    return {"operator": {"Authorization": f"Bearer {api.operator_key}"},
            "accountKey": {"Authorization": f"Bearer {tenant.primary}"},
            "serviceKey": {"Authorization": f"Bearer {tenant.api_key}"}}[scheme]


def exercise(case, operation, fuzz_target, valid_key: bool) -> int:
    api, tenant, job_id = fuzz_target
    if case.path_parameters:
        # Aim at the tenant's own resources, and at its pool and job half the time,
        # so generated requests get past the 401s and 404s.
        own = {"accountId": tenant.account_id, "subscriptionId": tenant.subscription_id,
               "serviceId": tenant.service_id}
        if zlib.crc32(repr(case.body).encode()) % 2 == 0:
            own.update({"poolId": "fuzz-pool", "jobId": job_id})
        case.path_parameters.update({k: v for k, v in own.items() if k in case.path_parameters})
    response = case.call(base_url=api.base, headers=credentials(operation, tenant, api, valid_key), timeout=30)
    case.validate_response(response, checks=CHECKS)
    if not valid_key:
        assert response.status_code in (400, 401, 404, 413, 415), response.status_code
    return response.status_code


@pytest.mark.parametrize("valid_key", [True, False], ids=["valid-keys", "wrong-keys"])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_generated_requests_get_no_5xx_and_match_the_spec(label, valid_key, fuzz_target):
    operation = OPERATIONS[label]
    if valid_key and operation.definition.raw["operationId"] == KEY_ROTATION:
        pytest.skip("key rotation is fuzzed with wrong keys only")
    if not valid_key and not operation.definition.raw["security"]:
        pytest.skip("an anonymous route has no key to get wrong")
    statuses = []

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES_PER_ROUTE, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case):
        statuses.append(exercise(case, operation, fuzz_target, valid_key))
        SEEN.append(statuses[-1])

    run()
    assert statuses and all(status < 500 for status in statuses)


def test_the_fuzzing_reached_past_authentication():
    """Not a vacuous run: many requests, and successes as well as refusals among them."""
    print(f"fuzz requests={len(SEEN)} by status={dict(sorted(collections.Counter(SEEN).items()))}")
    assert len(SEEN) >= 17 * EXAMPLES_PER_ROUTE
    assert sum(200 <= s < 300 for s in SEEN) >= 30 and sum(s == 400 for s in SEEN) >= 30
