"""The whole seed flow with identity-based storage only: Azurite over HTTPS in OAuth mode, the
app's connections given as service URIs with `credential=managedidentity`, tokens from a
managed identity endpoint, and no account key anywhere in the app's settings."""
import datetime as dt
import os
import subprocess
import sys
import textwrap

import pytest
import requests

from devhost.azurite import ACCOUNT_KEY, start_azurite
from samples import census
from tests.e2e.conftest import APP_ENV, make_tenant
from tests.e2e.harness import ROOT, Api, Blobs, HostProcess, unique, wait_for
from tests.e2e.identity import IdentityEndpoint, self_signed_certificate

CSV = "".join(census.generate_csv(300, seed=3)).encode()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def trusted(certificate):
    """This process and the app trust the test's certificate (requests reads REQUESTS_CA_BUNDLE)."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(certificate[0])
    yield str(certificate[0])
    if previous is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = previous


@pytest.fixture(scope="module")
def oauth_azurite(certificate, logs_dir):
    emulator = start_azurite(ROOT, None, log_file=logs_dir / "azurite-oauth.log", tls=certificate, oauth=True)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def identity():
    endpoint = IdentityEndpoint()
    yield endpoint
    endpoint.stop()


def identity_settings(azurite, identity, trusted) -> dict:
    settings = {f"AzureWebJobsStorage__{s}ServiceUri": azurite.service_url(s) for s in ("blob", "queue", "table")}
    settings.update({"AzureWebJobsStorage__credential": "managedidentity", "REQUESTS_CA_BUNDLE": trusted,
                     "BLOB_HOST_ALLOWLIST": "127.0.0.1", **identity.environment(), **APP_ENV,
                     "BATCHPOOL_TABLE_PREFIX": "identity"})
    return settings


@pytest.fixture(scope="module")
def identity_host(oauth_azurite, identity, trusted, logs_dir):
    settings = identity_settings(oauth_azurite, identity, trusted)
    assert not any(ACCOUNT_KEY in value or "AccountKey" in value for value in settings.values())
    host = HostProcess(ROOT, None, log_path=logs_dir / "identity-host.log", extra_env=settings)
    yield host
    host.stop()


def test_azurite_refuses_a_token_for_another_audience(oauth_azurite, trusted):
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError
    from azure.storage.blob import BlobServiceClient

    class WrongAudience:
        def get_token(self, *scopes, **kwargs):
            import base64, json, time
            claims = {"aud": "https://example.org", "iss": "https://sts.windows.net/x/", "nbf": int(time.time()) - 60,
                      "exp": int(time.time()) + 600}
            body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
            return AccessToken(f"eyJhbGciOiJSUzI1NiJ9.{body}.c2ln", claims["exp"])

    service = BlobServiceClient(oauth_azurite.service_url("blob"), credential=WrongAudience())
    with pytest.raises(ClientAuthenticationError):
        service.create_container(unique("refused"))


def test_the_seed_flow_with_identity_storage_only(identity_host, oauth_azurite, identity):
    api = Api(identity_host.url, identity_host.operator_key)
    tenant = make_tenant(api)
    blobs = Blobs(oauth_azurite.connection_string)  # the customer's own storage, reached with its own key
    blobs.put("identity-in", "census.csv", CSV)
    created = api.call("POST", tenant.pools, {"PoolId": "pool1", "VmCount": 1,
                                              "ServiceSwaggerUrl": tenant.swagger_url}, key=tenant.primary)
    assert created.status_code == 201, created.text
    wait_for(lambda: api.call("GET", f"{tenant.pools}/pool1", key=tenant.primary).json()["VmCounts"]["Idle"] == 1,
             timeout=30)
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("identity-in/census.csv",
                                                                        "identity-out/scored.csv", "pool1"))
    status = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert status["StatusCode"] == "Finished", status
    result = status["Results"]["output1"]
    downloaded = requests.get(result["BaseLocation"] + result["RelativeLocation"] + result["SasBlobToken"], timeout=10)
    assert downloaded.status_code == 200 and downloaded.content == blobs.get("identity-out", "scored.csv")
    assert downloaded.content.count(b"\n") == 301
    resized = api.call("POST", f"{tenant.pools}/pool1/resize", {"VmCount": 0}, key=tenant.primary)
    assert resized.status_code == 202
    pool = wait_for(lambda: (p := api.call("GET", f"{tenant.pools}/pool1", key=tenant.primary).json())
                    ["State"] == "Steady" and p, timeout=30)
    billed = pool["ComputeSeconds"]
    [vm] = pool["Vms"]
    assert vm["State"] == "Deleted" and billed == round(
        (dt.datetime.fromisoformat(vm["DeletedAt"]) - dt.datetime.fromisoformat(vm["ProvisionedAt"])).total_seconds())
    usage = wait_for(lambda: (u := api.call("GET", f"/api/accounts/{tenant.account_id}/usage",
                                            key=tenant.primary).json())["Total"]["VmSeconds"] == billed and u,
                     timeout=30)
    assert [p["PoolId"] for p in usage["Pools"]] == ["pool1"]
    assert identity.requests and all(r.get("resource", "").startswith("https://storage.azure.com")
                                     for r in identity.requests)


def test_a_user_delegation_sas_reads_an_output_in_the_apps_own_account(oauth_azurite, identity, trusted):
    """Where the app holds no key, it signs read tokens for its own account with a user
    delegation key got with its identity."""
    Blobs(oauth_azurite.connection_string).put("identity-own", "result.csv", b"a,b\n1,2\n")
    script = textwrap.dedent("""
        import datetime as dt
        from shared.settings import get_settings
        from shared.storage import read_token
        account = get_settings().host_account()
        print(read_token(account, "identity-own", "result.csv", dt.datetime.now(dt.timezone.utc), 1))
    """)
    env = dict(os.environ, AzureWebJobsStorage="", **identity_settings(oauth_azurite, identity, trusted))
    token = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                           check=True, timeout=60).stdout.strip()
    assert token.startswith("?") and "skoid=" in token and "sp=r" in token
    url = f"{oauth_azurite.service_url('blob')}/identity-own/result.csv"
    got = requests.get(url + token, timeout=10)
    assert got.content == b"a,b\n1,2\n", got.text
    assert requests.put(url + token, data=b"x", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10).status_code == 403
