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
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

SERVICES = ("blob", "queue", "table")
DEVELOPMENT_ACCOUNT = "devstoreaccount1"
# The emulator's published development key: public by design, never a customer's secret.
DEVELOPMENT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_DEVELOPMENT_PORTS = {"blob": 10000, "queue": 10001, "table": 10002}
_ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
_SUFFIX = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


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

    def endpoint(self, service: str) -> str:
        url = self.endpoint_if_any(service)
        if not url:
            raise InvalidConnection(f"the storage connection gives no {service} endpoint")
        return url

    def endpoint_if_any(self, service: str) -> str | None:
        return dict(self.endpoints).get(service)

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


# The keys a storage connection string may carry. Anything else (DevelopmentStorageProxyUri,
# secondary endpoints, a misspelling) is refused rather than ignored: a key the app ignored
# but another parser honoured would send requests somewhere the allow-list never saw.
_KNOWN_KEYS = {"defaultendpointsprotocol", "accountname", "accountkey", "endpointsuffix", "sharedaccesssignature",
               "usedevelopmentstorage", "blobendpoint", "queueendpoint", "tableendpoint", "fileendpoint"}


def endpoint_url(value: str, what: str) -> str:
    """A service endpoint as given (`scheme://host[:port][/path]`), without a trailing `/`;
    anything else (no host, a user name, a query, a bad port, not http(s)) is refused."""
    try:
        parts = urlsplit(value)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        raise InvalidConnection(f"{what} is not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        raise InvalidConnection(f"{what} must be an http(s) URL with a host, such as "
                                "https://account.blob.core.windows.net")
    if parts.username is not None or parts.query or parts.fragment or any(c.isspace() for c in value):
        raise InvalidConnection(f"{what} must be a plain endpoint URL: no user name, query or fragment")
    return value.rstrip("/")


def _fields(connection_string: str) -> dict[str, str]:
    """Key=Value parts by lower-case key; an empty part, a key given twice, an unknown key or
    an empty value is refused."""
    if not isinstance(connection_string, str) or not connection_string.strip():
        raise InvalidConnection("the storage connection string is empty")
    fields: dict[str, str] = {}
    parts = connection_string.strip().split(";")
    if parts[-1].strip() == "":
        parts.pop()  # one trailing ';' is common and harmless
    for part in parts:
        name, separator, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not separator or not name:
            raise InvalidConnection("the storage connection string is not of the form Key=Value;Key=Value "
                                    "(an empty or incomplete part)")
        key = name.lower()
        if key not in _KNOWN_KEYS:
            raise InvalidConnection(f"the storage connection string has an unknown key {name!r}")
        if key in fields:
            raise InvalidConnection(f"the storage connection string gives {name} twice")
        if not value:
            raise InvalidConnection(f"the storage connection string's {name} is empty")
        fields[key] = value
    return fields


@functools.lru_cache(maxsize=256)
def parse_connection_string(connection_string: str) -> StorageAccount:
    """The account a storage connection string names: explicit endpoints, or endpoints made
    from the account name and suffix, or the local emulator's (`UseDevelopmentStorage=true`).
    This is the one parser of connection strings in the app: every request to the account is
    made from what it returns."""
    fields = _fields(connection_string)
    if "usedevelopmentstorage" in fields:
        if fields["usedevelopmentstorage"].lower() != "true" or len(fields) > 1:
            raise InvalidConnection("UseDevelopmentStorage=true stands alone in a connection string")
        return StorageAccount(DEVELOPMENT_ACCOUNT, tuple((s, f"http://127.0.0.1:{p}/{DEVELOPMENT_ACCOUNT}")
                                                         for s, p in _DEVELOPMENT_PORTS.items()), key=DEVELOPMENT_KEY)
    name = fields.get("accountname")
    if name is not None and not _ACCOUNT_NAME.fullmatch(name):
        raise InvalidConnection("the storage connection string's AccountName must be 3-24 lower-case letters "
                                "and digits")
    explicit = {s: endpoint_url(fields[f"{s}endpoint"], f"the connection string's {s.capitalize()}Endpoint")
                for s in (*SERVICES, "file") if f"{s}endpoint" in fields}
    if not name and not explicit:
        raise InvalidConnection("the storage connection string names no AccountName and no endpoint")
    protocol = fields.get("defaultendpointsprotocol", "https").lower()
    if protocol not in ("http", "https"):
        raise InvalidConnection("the storage connection string's DefaultEndpointsProtocol must be http or https")
    suffix = fields.get("endpointsuffix", "core.windows.net")
    if not _SUFFIX.fullmatch(suffix):
        raise InvalidConnection("the storage connection string's EndpointSuffix must be a DNS name such as "
                                "core.windows.net")
    endpoints = _standard_endpoints(name, protocol, suffix) if name else {}
    endpoints.update(explicit)
    endpoints.pop("file", None)  # accepted, as the portal's strings carry it, but never used
    key = fields.get("accountkey")
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidConnection("the storage connection string's AccountKey is not base64") from None
        if not name:
            raise InvalidConnection("the storage connection string gives an AccountKey without its AccountName")
    sas = fields["sharedaccesssignature"].lstrip("?") if "sharedaccesssignature" in fields else None
    if not name:
        name = _account_name_of(next(iter(endpoints.values())))
    return StorageAccount(name, tuple(endpoints.items()), key=key, sas=sas)


def sas_account(blob_endpoint: str, sas_token: str) -> StorageAccount:
    """An account known only by its blob endpoint and a shared access signature."""
    endpoint = endpoint_url(blob_endpoint, "BaseLocation")
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
