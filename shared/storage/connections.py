"""Which storage account a setting names, and how to authenticate to it.

A connection is resolved as Azure Functions resolves one (for `AzureWebJobsStorage`,
`BATCHPOOL_STORAGE` and any other name):

* `<NAME>` holding a connection string (`UseDevelopmentStorage=true` for the emulator);
* or identity-based settings: `<NAME>__accountName`, or the service URIs
  `<NAME>__blobServiceUri` / `__queueServiceUri` / `__tableServiceUri`, authenticated with a
  token: `<NAME>__credential=managedidentity` (with `<NAME>__clientId` for a user-assigned
  identity) uses the app's managed identity; without it the default credential chain of
  `azure-identity` is used (a managed identity in Azure, a developer sign-in locally).

Customers' connection strings (job inputs and outputs) are parsed here too, once, into the
same `StorageAccount`, and every client of a job is built from that parse.
"""
from __future__ import annotations

import base64
import binascii
import functools
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

SERVICES = ("blob", "queue", "table")
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
# The emulator's published development key: public by design, never a customer's secret.
DEVELOPMENT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_DEVELOPMENT_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}


class InvalidConnection(ValueError):
    """A connection setting or string that names no usable storage account."""


@dataclass(frozen=True)
class StorageAccount:
    """A storage account: its name, endpoint per service and one way to authenticate
    (an account key, a shared access signature, or a token credential)."""
    name: str
    endpoints: tuple  # (service, URL) pairs
    key: str | None = None
    sas: str | None = None
    token_credential: object = None

    def endpoint(self, service: str, required: bool = True) -> str | None:
        url = dict(self.endpoints).get(service)
        if not url and required:
            raise InvalidConnection(f"the storage connection gives no {service} endpoint")
        return url

    @property
    def uses_identity(self) -> bool:
        return self.token_credential is not None

    def credential(self):
        """What the SDK clients take as `credential=`."""
        from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
        if self.token_credential is not None:
            return self.token_credential
        if self.key is not None:
            return AzureNamedKeyCredential(self.name, self.key)
        if self.sas is not None:
            return AzureSasCredential(self.sas)
        return None


def _standard_endpoints(name: str, protocol: str = "https", suffix: str = "core.windows.net") -> dict:
    return {service: f"{protocol}://{name}.{service}.{suffix}" for service in SERVICES}


@functools.lru_cache(maxsize=256)
def parse_connection_string(connection_string: str) -> StorageAccount:
    """The account a storage connection string names: explicit endpoints, or endpoints made
    from the account name and suffix, or the local emulator's (`UseDevelopmentStorage=true`)."""
    fields = {}
    for part in (connection_string or "").split(";"):
        if not part.strip():
            continue
        name, separator, value = part.partition("=")
        if not separator:
            raise InvalidConnection("the storage connection string is not of the form Key=Value;Key=Value")
        fields[name.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return StorageAccount(DEVELOPMENT_ACCOUNT, tuple((s, f"http://127.0.0.1:{p}/{DEVELOPMENT_ACCOUNT}")
                                                         for s, p in _DEVELOPMENT_PORTS.items()), key=DEVELOPMENT_KEY)
    name = fields.get("accountname")
    explicit = {s: fields[f"{s}endpoint"].rstrip("/") for s in SERVICES if fields.get(f"{s}endpoint")}
    if not name and not explicit:
        raise InvalidConnection("the storage connection string names no AccountName and no endpoint")
    endpoints = _standard_endpoints(name, fields.get("defaultendpointsprotocol", "https"),
                                    fields.get("endpointsuffix", "core.windows.net")) if name else {}
    endpoints.update(explicit)
    key = fields.get("accountkey") or None
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidConnection("the storage connection string's AccountKey is not base64") from None
    sas = (fields.get("sharedaccesssignature") or "").lstrip("?") or None
    if not name:
        name = (urlsplit(next(iter(explicit.values()))).hostname or "").split(".")[0]
    return StorageAccount(name, tuple(endpoints.items()), key=key, sas=sas)


def sas_account(blob_endpoint: str, sas_token: str) -> StorageAccount:
    """An account known only by its blob endpoint and a shared access signature."""
    endpoint = blob_endpoint.rstrip("/")
    return StorageAccount((urlsplit(endpoint).hostname or "").split(".")[0], (("blob", endpoint),),
                          sas=sas_token.lstrip("?"))


def _account_name_of(url: str) -> str:
    """`acct` of https://acct.blob.core.windows.net, or of a path-style emulator URL."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path:
        return path.split("/")[0]
    return (parts.hostname or "").split(".")[0]


def is_set(name: str, environ=None) -> bool:
    """Whether the connection `name` is given at all (as a string or as identity settings)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get(name)) or any(key.startswith(f"{name}__") and value for key, value in environ.items())


def resolve(name: str, environ=None) -> StorageAccount:
    """The storage account the connection `name` stands for, as Functions resolves it."""
    environ = os.environ if environ is None else environ
    value = environ.get(name)
    if value:
        return parse_connection_string(value)
    section = {key[len(name) + 2:].lower(): value for key, value in environ.items()
               if key.startswith(f"{name}__") and value}
    endpoints = {service: section[f"{service}serviceuri"].rstrip("/")
                 for service in SERVICES if section.get(f"{service}serviceuri")}
    account = section.get("accountname")
    if account:
        endpoints = {**_standard_endpoints(account), **endpoints}
    if not endpoints:
        raise InvalidConnection(f"the storage connection {name} is not set: give {name} a connection string, "
                               f"or {name}__accountName (or {name}__blobServiceUri, __queueServiceUri and "
                               f"__tableServiceUri) for an identity-based connection")
    return StorageAccount(account or _account_name_of(next(iter(endpoints.values()))), tuple(endpoints.items()),
                          token_credential=_token_credential(section.get("credential"), section.get("clientid")))


@functools.lru_cache(maxsize=8)
def _token_credential(kind: str | None, client_id: str | None):
    """One credential per identity and process: it caches its tokens."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential
    if (kind or "").lower() == "managedidentity":
        return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()
    return DefaultAzureCredential(managed_identity_client_id=client_id, exclude_interactive_browser_credential=True)
