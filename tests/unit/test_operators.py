"""Operator credentials: keys by name, Entra ID access tokens checked claim by claim."""
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shared import operators
from shared.errors import Unauthorized

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
APP = "api://batchpool"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
LOCAL = operators.parse_tenant(TENANT, APP, "", "http://127.0.0.1:1")


def published(tenant, kid):
    if kid != "k1":
        raise jwt.PyJWKClientError("no such key")
    return KEY.public_key()


def token(signer=KEY, kid="k1", **claims) -> str:
    now = int(time.time())
    body = {"iss": LOCAL.issuers[0], "aud": APP, "exp": now + 600, "iat": now, "oid": "op-1",
            "roles": [operators.DEFAULT_ROLE], **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, signer, algorithm="RS256",
                      headers={"kid": kid})


def test_keys_are_named_so_each_is_revoked_alone():
    keys = operators.parse_keys(f"alice={'a' * 32}, bob={'b' * 40}")
    assert operators.key_holder("b" * 40, keys) == "bob" and operators.key_holder("a" * 32, keys) == "alice"
    assert operators.key_holder("c" * 32, keys) is None
    assert operators.parse_keys("") == {}
    for bad, why in ((f"{'a' * 32}", "name=key"), ("alice=short", "shorter"), (f"a b={'a' * 32}", "name=key"),
                     (f"alice={'a' * 32},alice={'b' * 32}", "twice")):
        with pytest.raises(ValueError, match=why):
            operators.parse_keys(bad)


def test_a_tenant_accepts_its_own_issuers_and_refuses_bad_settings():
    azure = operators.parse_tenant(TENANT.upper(), f"{APP}, 11111111-2222-3333-4444-555555555555", "", "")
    assert azure.issuers == (f"https://login.microsoftonline.com/{TENANT}/v2.0", f"https://sts.windows.net/{TENANT}/")
    assert azure.keys_url == f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys"
    assert azure.role == "BatchPool.Operator" and len(azure.audiences) == 2
    assert LOCAL.issuers == (f"http://127.0.0.1:1/{TENANT}/v2.0",)  # another authority: its own issuer only
    for args, setting in ((("not-a-guid", APP, "", ""), "OPERATOR_TENANT_ID"),
                          ((TENANT, " ", "", ""), "OPERATOR_AUDIENCE"),
                          ((TENANT, APP, "", "ftp://x/y"), "OPERATOR_AUTHORITY")):
        with pytest.raises(ValueError, match=setting):
            operators.parse_tenant(*args)


def test_a_good_token_names_its_holder():
    assert operators.token_holder(token(), LOCAL, published) == "op-1"
    assert operators.token_holder(token(oid=None, sub="s-2"), LOCAL, published) == "s-2"


@pytest.mark.parametrize("bad, message", [
    (lambda: token(exp=int(time.time()) - 3600), "expired"),
    (lambda: token(aud="api://another-app"), "another app"),
    (lambda: token(iss=f"https://login.microsoftonline.com/{TENANT}/v2.0"), "another tenant"),
    (lambda: token(iss="http://127.0.0.1:1/00000000-0000-0000-0000-000000000000/v2.0"), "another tenant"),
    (lambda: token(signer=OTHER), "not valid"),  # forged: signed by a key that is not the tenant's
    (lambda: token(kid="k9"), "does not publish"),
    (lambda: token(exp=None), "not valid"),
    (lambda: jwt.encode({"iss": LOCAL.issuers[0], "aud": APP, "exp": int(time.time()) + 60,
                         "roles": [operators.DEFAULT_ROLE]}, "", algorithm="none"), "RS256"),
    (lambda: jwt.encode({"aud": APP}, "a-shared-secret-that-is-long-enough!", algorithm="HS256",
                        headers={"kid": "k1"}), "RS256"),
    (lambda: "not.a.token", "not an access token"),
])
def test_a_bad_token_is_refused_saying_why(bad, message):
    with pytest.raises(Unauthorized, match=message):
        operators.token_holder(bad(), LOCAL, published)


def test_a_token_without_the_operator_role_is_forbidden():
    for roles in ([], ["BatchPool.Reader"], None, "BatchPool.Operator"):
        with pytest.raises(operators.Forbidden, match="BatchPool.Operator"):
            operators.token_holder(token(roles=roles), LOCAL, published)


def test_authorize_asks_for_a_bearer_credential_and_knows_no_master_key(monkeypatch):
    monkeypatch.setenv("OPERATOR_TENANT_ID", "")
    monkeypatch.setenv("OPERATOR_KEYS", f"ops={'k' * 32}")
    assert operators.authorize(f"Bearer {'k' * 32}") == "ops"
    assert operators.authorize(None, "k" * 32) == "ops"  # where a host key would go
    for header in (None, "", "Basic xyz", "Bearer ", f"{'k' * 32}", "Bearer master-key"):
        with pytest.raises(Unauthorized):
            operators.authorize(header)
    with pytest.raises(Unauthorized):
        operators.authorize(None, "master-key")
    monkeypatch.setenv("OPERATOR_TENANT_ID", TENANT)
    monkeypatch.setenv("OPERATOR_AUDIENCE", APP)
    with pytest.raises(Unauthorized, match="Entra ID access token"):  # with a tenant, no key is taken
        operators.authorize(None, "k" * 32)
    monkeypatch.setenv("OPERATOR_TENANT_ID", "")
    monkeypatch.setenv("OPERATOR_KEYS", "")
    with pytest.raises(Unauthorized, match="OPERATOR_KEYS or OPERATOR_TENANT_ID"):
        operators.authorize("Bearer anything")
    monkeypatch.setenv("OPERATOR_KEYS", "broken")
    with pytest.raises(RuntimeError, match="operator settings"):
        operators.authorize("Bearer anything")
