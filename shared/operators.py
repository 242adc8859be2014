"""Who may call the operator routes (accounts, web services, usage by billing plan).

Never the host's master key: it also opens the runtime's admin API and can only be renewed,
not revoked. Operator routes are anonymous at the host and checked here, in one of two ways:

* **Microsoft Entra ID** (`OPERATOR_TENANT_ID` set): `Authorization: Bearer <access token>`,
  a token the tenant issued for this app (`OPERATOR_AUDIENCE`) carrying the app role
  `OPERATOR_ROLE` (default `BatchPool.Operator`). Issuer, audience, expiry and the RS256
  signature against the tenant's published keys are checked with PyJWT; the keys are fetched
  from the tenant's discovery document and cached. Revoking an operator is removing the role.
* **Operator keys** (no tenant): one of `OPERATOR_KEYS` (`name=key`, comma-separated) in
  `x-functions-key`, where a host key would go, or as `Authorization: Bearer <key>`. Each is
  named, so one is revoked by removing it alone. The host's own keys cannot serve: the Python
  worker never hands the app the name of the key the host accepted (it drops the request's
  claims identities), so a named host key could not be told from the master key.
"""
from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import jwt

from shared.errors import BatchPoolError, Unauthorized
from shared.validation import is_valid_id

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_ROLE = "BatchPool.Operator"
MIN_KEY_CHARS = 32
LEEWAY_SECONDS = 60  # clock skew allowed on expiry and not-before
KEYS_CACHE_SECONDS = 3600
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class Forbidden(BatchPoolError):
    status, category, code = 403, "Forbidden", "Forbidden"


class SigningKeysUnavailable(BatchPoolError):
    status, category, code = 503, "ServiceUnavailable", "SigningKeysUnavailable"


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    audiences: tuple[str, ...]
    role: str
    issuers: tuple[str, ...]
    keys_url: str


def parse_keys(raw: str) -> dict[str, str]:
    """OPERATOR_KEYS: `name=key` entries, comma-separated; a ValueError says what is wrong."""
    keys: dict[str, str] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        name, sep, key = entry.partition("=")
        name, key = name.strip(), key.strip()
        if not sep or not is_valid_id(name):
            raise ValueError("each entry is name=key, the name letters, digits, '-' or '_'")
        if len(key) < MIN_KEY_CHARS:
            raise ValueError(f"the key named {name} is shorter than {MIN_KEY_CHARS} characters")
        if name in keys:
            raise ValueError(f"the name {name} is given twice")
        keys[name] = key
    return keys


def parse_tenant(tenant_id: str, audience: str, role: str, authority: str) -> Tenant:
    """The Entra ID settings; a ValueError names what is wrong."""
    if not GUID.match(tenant_id):
        raise ValueError("OPERATOR_TENANT_ID must be the tenant's id (a GUID)")
    audiences = tuple(a.strip() for a in audience.split(",") if a.strip())
    if not audiences:
        raise ValueError("OPERATOR_AUDIENCE must name this app's registration (its client id or App ID URI)")
    authority = (authority or DEFAULT_AUTHORITY).rstrip("/")
    if not re.match(r"^https?://[^/\s]+$", authority):
        raise ValueError("OPERATOR_AUTHORITY must be a base URL such as " + DEFAULT_AUTHORITY)
    tenant_id = tenant_id.lower()
    issuers = [f"{authority}/{tenant_id}/v2.0"]
    if authority == DEFAULT_AUTHORITY:  # tokens of version 1.0 name the older issuer
        issuers.append(f"https://sts.windows.net/{tenant_id}/")
    return Tenant(tenant_id, audiences, role or DEFAULT_ROLE, tuple(issuers),
                  f"{authority}/{tenant_id}/discovery/v2.0/keys")


@lru_cache(maxsize=4)
def _configured(tenant_id: str, audience: str, role: str, authority: str, keys: str) -> Tenant | dict[str, str]:
    try:
        if tenant_id:
            return parse_tenant(tenant_id, audience, role, authority)
        return parse_keys(keys)
    except ValueError as error:
        raise RuntimeError(f"operator settings: {error}") from None


def configured() -> Tenant | dict[str, str]:
    """The operator credentials this deployment takes (settings read once per value)."""
    return _configured(os.environ.get("OPERATOR_TENANT_ID", "").strip(), os.environ.get("OPERATOR_AUDIENCE", ""),
                       os.environ.get("OPERATOR_ROLE", "").strip(), os.environ.get("OPERATOR_AUTHORITY", "").strip(),
                       os.environ.get("OPERATOR_KEYS", ""))


def key_holder(presented: str, keys: dict[str, str]) -> str | None:
    """The name of the operator key presented, compared in constant time; None if none."""
    found = None
    for name, key in keys.items():
        if hmac.compare_digest(presented.encode(), key.encode()):
            found = name
    return found


@lru_cache(maxsize=4)
def _key_client(url: str) -> jwt.PyJWKClient:
    return jwt.PyJWKClient(url, cache_keys=True, lifespan=KEYS_CACHE_SECONDS, timeout=10)


def _published_key(tenant: Tenant, kid: str):
    return _key_client(tenant.keys_url).get_signing_key(kid).key


def token_holder(token: str, tenant: Tenant, key_for: Callable[[Tenant, str], Any] = _published_key) -> str:
    """Who a valid operator access token was issued to (its `oid`, else `sub`); `key_for`
    gives the tenant's public key of a key id (by default fetched from the tenant)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise Unauthorized("the operator credential is not an access token of the configured tenant") from None
    if header.get("alg") != "RS256" or not header.get("kid"):
        raise Unauthorized("the access token is not signed the way the tenant signs (RS256 with a key id)")
    try:
        signing_key = key_for(tenant, header["kid"])
    except jwt.PyJWKClientConnectionError:
        raise SigningKeysUnavailable("the tenant's signing keys cannot be fetched now; retry shortly") from None
    except jwt.PyJWKClientError:
        raise Unauthorized("the access token is signed with a key the tenant does not publish") from None
    try:
        claims = jwt.decode(token, signing_key, algorithms=["RS256"], audience=list(tenant.audiences),
                            issuer=list(tenant.issuers), leeway=LEEWAY_SECONDS,
                            options={"require": ["exp", "iss", "aud"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the access token has expired; get a new one") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("the access token was issued for another app (its audience)") from None
    except jwt.InvalidIssuerError:
        raise Unauthorized("the access token was issued by another tenant or authority") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("the access token is not valid (signature, or a required claim)") from None
    roles = claims.get("roles")
    if not isinstance(roles, list) or tenant.role not in roles:
        raise Forbidden(f"the access token does not carry the app role {tenant.role}")
    return str(claims.get("oid") or claims.get("sub") or "")


def authorize(authorization: str | None, functions_key: str | None = None) -> str:
    """Who is calling an operator route, from its Authorization header (or, for an operator
    key, its x-functions-key header), or a 401/403/503."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip() if scheme.lower() == "bearer" else ""
    how = configured()
    if isinstance(how, Tenant):
        if not credential:
            raise Unauthorized("send a Microsoft Entra ID access token as 'Authorization: Bearer <token>'")
        return token_holder(credential, how)
    credential = credential or (functions_key or "").strip()
    if not credential:
        raise Unauthorized("send an operator key as 'x-functions-key: <key>' or 'Authorization: Bearer <key>'")
    if not how:
        raise Unauthorized("this deployment takes no operator credential: set OPERATOR_KEYS or OPERATOR_TENANT_ID")
    holder = key_holder(credential, how)
    if holder is None:
        raise Unauthorized("the operator key is not one this deployment takes")
    return holder
