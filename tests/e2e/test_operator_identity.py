"""Operators signed in with Microsoft Entra ID: the app checks each access token against a
tenant's published keys. Here the tenant is made by the test: its keys are served on
loopback, and the app is pointed at it with OPERATOR_AUTHORITY."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.e2e import harness
from tests.e2e.conftest import APP_ENV
from tests.e2e.harness import ROOT, Api, HostProcess, unique

TENANT = "0b7c3b6e-8f0e-4a55-9b9a-3c1f2d4e5a6b"
AUDIENCE = "api://batchpool-tests"
SIGNING = rsa.generate_private_key(public_exponent=65537, key_size=2048)
FORGER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class _Keys(BaseHTTPRequestHandler):
    fetched = 0

    def do_GET(self):
        if self.path != f"/{TENANT}/discovery/v2.0/keys":
            self.send_error(404)
            return
        _Keys.fetched += 1
        jwk = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING.public_key())), "kid": "key-1", "use": "sig"}
        body = json.dumps({"keys": [jwk]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


@pytest.fixture(scope="module")
def tenant_stack(azurite, logs_dir):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    authority = f"http://127.0.0.1:{server.server_address[1]}"
    host = HostProcess(ROOT, azurite.connection_string, log_path=logs_dir / "entra-host.log", extra_env={
        **APP_ENV, "OPERATOR_TENANT_ID": TENANT, "OPERATOR_AUDIENCE": AUDIENCE, "OPERATOR_AUTHORITY": authority})
    yield host, authority
    host.stop()
    server.shutdown()


def token(authority: str, signer=SIGNING, **claims) -> str:
    now = int(time.time())
    body = {"iss": f"{authority}/{TENANT}/v2.0", "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 600,
            "oid": "5d2c1e0f-0000-4000-8000-000000000001", "tid": TENANT, "roles": ["BatchPool.Operator"], **claims}
    made = jwt.encode({k: v for k, v in body.items() if v is not None}, signer, algorithm="RS256",
                      headers={"kid": "key-1"})
    harness.HOST_KEYS.add(made)  # a bearer token is a secret: it must show up in no log or answer
    return made


def test_operator_routes_take_the_tenants_access_tokens_and_nothing_else(tenant_stack):
    host, authority = tenant_stack
    api = Api(host.url, token(authority))
    account = unique("entra")
    body = {"SubscriptionId": unique("sub"), "MaxPools": 1, "MaxVmsPerPool": 1}
    assert api.call("PUT", f"/api/accounts/{account}", body, admin=True).status_code == 201
    assert api.call("GET", f"/api/accounts/{account}", admin=True).json()["AccountId"] == account
    assert _Keys.fetched >= 1

    def refused(credential: str | None, headers: dict | None = None) -> tuple[int, str]:
        sent = {"Authorization": f"Bearer {credential}"} if credential else dict(headers or {})
        response = api.call("PUT", f"/api/accounts/{account}", {**body, "MaxPools": 5}, headers=sent)
        return response.status_code, response.json()["error"]["message"]

    now = int(time.time())
    cases = {
        "expired": (token(authority, exp=now - 300, iat=now - 4000, nbf=now - 4000), 401, "expired"),
        "wrong audience": (token(authority, aud="api://another-app"), 401, "another app"),
        "wrong issuer": (token(authority, iss=f"https://login.microsoftonline.com/{TENANT}/v2.0"), 401,
                         "another tenant"),
        "missing role": (token(authority, roles=["BatchPool.Reader"]), 403, "BatchPool.Operator"),
        "no roles": (token(authority, roles=None), 403, "BatchPool.Operator"),
        "forged signature": (token(authority, signer=FORGER), 401, "not valid"),
        "unsigned": (jwt.encode({"iss": f"{authority}/{TENANT}/v2.0", "aud": AUDIENCE, "exp": now + 600,
                                 "roles": ["BatchPool.Operator"]}, None, algorithm="none"), 401, "RS256"),
        "an operator key": ("x" * 43, 401, "access token"),
        "the master key": (host.master_key, 401, "access token"),
    }
    for name, (credential, status, says) in cases.items():
        got, message = refused(credential)
        assert (got, says in message) == (status, True), (name, got, message)
    assert refused(None)[0] == 401  # none at all
    assert refused(None, {"x-functions-key": host.master_key})[0] == 401
    assert refused(None, {"x-functions-key": host.operator_key})[0] == 401  # with a tenant, no key at all
    # What was refused changed nothing.
    assert api.call("GET", f"/api/accounts/{account}", admin=True).json()["MaxPools"] == 1
