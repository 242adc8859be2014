"""Every route refuses missing, wrong and foreign credentials with 401 or 404 and no data;
the one anonymous route (the dashboard's static files) answers the same to everybody."""
import yaml

from tests.e2e.harness import ROOT, unique
from tests.e2e.test_pools import create

METHODS = ("get", "put", "post", "delete")


def routes():
    spec = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                scheme = next(iter(operation["security"][0])) if operation["security"] else None
                yield path, method.upper(), scheme


def test_every_route_refuses_bad_credentials(api, app_host, tenant_factory, blobs):
    owner, stranger = tenant_factory(), tenant_factory()
    pool_id = unique("private-pool")
    assert create(api, owner, 1, pool_id).status_code == 201
    job_id = api.job(owner.jobs, owner.api_key, "POST",
                     body=blobs.job_body("inputs/in.csv", "outputs/o.csv", pool_id)).json()
    values = {"file": "index.html", "accountId": owner.account_id, "poolId": pool_id, "subscriptionId": owner.subscription_id,
              "workspaceId": owner.subscription_id,
              "serviceId": owner.service_id, "jobId": job_id, "keyName": "primary", "billingPlanId": "plan-a"}
    checked = set()
    for path, method, scheme in routes():
        url = path.format(**values) + "?api-version=2.0"
        attempts = [{}, {"Authorization": "Bearer not-a-key"}, {"x-functions-key": "not-a-key"},
                    {"Authorization": f"Bearer {stranger.primary}"},
                    {"Authorization": f"Bearer {stranger.api_key}"}]
        if scheme == "operator":  # nor does any key of the host's, the master key included
            attempts += [{"Authorization": f"Bearer {owner.primary}"}, {"Authorization": f"Bearer {owner.api_key}"},
                         {"x-functions-key": app_host.master_key}, {"Authorization": f"Bearer {app_host.master_key}"},
                         {"x-functions-key": app_host.function_key}]
        anonymous = []
        for headers in attempts:
            response = api.call(method, url, {"VmCount": 0}, headers=headers)
            if scheme is None:
                anonymous.append((response.status_code, response.content))
            else:
                assert response.status_code in (401, 404), (method, path, headers, response.status_code)
            for private in (pool_id, job_id, owner.primary, owner.api_key):
                assert private not in response.text, (method, path)
        if scheme is None:
            assert anonymous[0][0] == 200 and len(set(anonymous)) == 1, (method, path)
        checked.add((path, method))
    http_functions = [p for p in ROOT.glob("*/function.json") if '"httpTrigger"' in p.read_text()]
    assert len(checked) == len(http_functions)
    # The owner's own data is untouched by all of that.
    assert api.call("GET", f"{owner.pools}/{pool_id}", key=owner.primary).json()["VmCount"] == 1
    assert api.job(owner.jobs, owner.api_key, suffix=f"/{job_id}").json()["StatusCode"] == "NotStarted"
