"""A small client for the Table, Queue and Blob REST APIs, over kept-alive HTTP connections.

The app makes a few storage requests per job and runs many jobs per second on small
machines, so the per-request cost matters: a request here is one signed HTTP exchange on a
per-thread connection, with entities as plain JSON. Only `shared.storage` uses this module;
it decides which writes are conditional, this module only carries them.

Authentication: the account key (SharedKeyLite for tables, SharedKey for queues and blobs)
or the connection string's shared access signature. Connection failures and 408/429/5xx answers are retried a few times with short
back-off, as the Azure SDKs do.
"""
from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlsplit

from azure.core.exceptions import HttpResponseError, ServiceRequestError

API_VERSION = "2019-02-02"
JSON_ACCEPT = "application/json;odata=minimalmetadata"
TIMEOUT_SECONDS = 30
RETRIES = 3
RETRY_STATUSES = (408, 429, 500, 502, 503, 504)
INT32 = range(-2 ** 31, 2 ** 31)
DEVELOPMENT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class StorageRequestFailed(HttpResponseError):
    """The storage service refused or failed a request: its status and error code, never
    its message (which can carry URLs)."""

    def __init__(self, status: int, error_code: str = ""):
        super().__init__(message=f"storage request failed status={status} code={error_code or 'none'}")
        self.status_code = status
        self.error_code = error_code or None


@dataclass(frozen=True)
class StorageAccount:
    name: str
    key: bytes | None
    sas: str | None
    table_endpoint: str
    queue_endpoint: str
    blob_endpoint: str


def parse_connection_string(connection_string: str) -> StorageAccount:
    """The account a storage connection string names: explicit endpoints, or endpoints made
    from the account name and suffix, or the local emulator's (`UseDevelopmentStorage=true`)."""
    fields = {}
    for part in connection_string.split(";"):
        if "=" in part:
            name, value = part.split("=", 1)
            fields[name.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        fields = {"accountname": "devstoreaccount1", "accountkey": DEVELOPMENT_KEY,
                  "tableendpoint": "http://127.0.0.1:10002/devstoreaccount1",
                  "queueendpoint": "http://127.0.0.1:10001/devstoreaccount1",
                  "blobendpoint": "http://127.0.0.1:10000/devstoreaccount1"}
    name = fields.get("accountname")
    sas = fields.get("sharedaccesssignature")
    explicit = [fields[f"{service}endpoint"] for service in ("blob", "table", "queue") if fields.get(f"{service}endpoint")]
    if not name and not explicit:
        raise ValueError("the storage connection string names no AccountName and no endpoint")
    protocol = fields.get("defaultendpointsprotocol", "https")
    suffix = fields.get("endpointsuffix", "core.windows.net")

    def endpoint(service: str) -> str:
        return (fields.get(f"{service}endpoint") or f"{protocol}://{name}.{service}.{suffix}").rstrip("/")

    key = fields.get("accountkey")
    return StorageAccount(name or (urlsplit(explicit[0]).hostname or "").split(".")[0],
                          base64.b64decode(key) if key else None, sas.lstrip("?") if sas else None,
                          endpoint("table"), endpoint("queue"), endpoint("blob"))


def sas_account(blob_endpoint: str, sas_token: str) -> StorageAccount:
    """An account known only by its blob endpoint and a shared access signature."""
    endpoint = blob_endpoint.rstrip("/")
    host = urlsplit(endpoint).hostname or ""
    return StorageAccount(host.split(".")[0], None, sas_token.lstrip("?"), "", "", endpoint)


# --- entities -------------------------------------------------------------------------------

class Row(dict):
    """A table entity as read: its properties, plus `metadata` (etag, timestamp)."""

    def __init__(self, properties: dict, metadata: dict):
        super().__init__(properties)
        self.metadata = metadata


_FRACTION = re.compile(r"\.(\d+)")


def parse_datetime(value: str) -> dt.datetime:
    """An Edm.DateTime (up to 7 fractional digits, 'Z') as an aware UTC datetime."""
    value = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], value.rstrip("Z"), count=1)
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc)


def format_datetime(value: dt.datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_entity(entity: dict) -> dict:
    """JSON properties with the type annotations the service needs; None is left out."""
    body = {}
    for name, value in entity.items():
        if value is None:
            continue
        if isinstance(value, bool) or isinstance(value, str):
            body[name] = value
        elif isinstance(value, int):
            if value in INT32:
                body[name] = value
            else:
                body[name], body[f"{name}@odata.type"] = str(value), "Edm.Int64"
        elif isinstance(value, float):
            body[name], body[f"{name}@odata.type"] = value, "Edm.Double"
        elif isinstance(value, dt.datetime):
            body[name], body[f"{name}@odata.type"] = format_datetime(value), "Edm.DateTime"
        elif isinstance(value, bytes):
            body[name], body[f"{name}@odata.type"] = base64.b64encode(value).decode("ascii"), "Edm.Binary"
        else:
            raise TypeError(f"property {name} has a type tables cannot keep: {type(value).__name__}")
    return body


_DECODERS = {"Edm.DateTime": parse_datetime, "Edm.Int64": int, "Edm.Double": float,
             "Edm.Binary": base64.b64decode, "Edm.Guid": str}


def decode_entity(body: dict, etag: str | None = None) -> Row:
    properties, metadata = {}, {}
    for name, value in body.items():
        if name.startswith("odata.") or "@odata." in name:
            continue
        if name == "Timestamp":
            metadata["timestamp"] = parse_datetime(value)
            continue
        decoder = _DECODERS.get(body.get(f"{name}@odata.type"))
        properties[name] = decoder(value) if decoder else value
    metadata["etag"] = body.get("odata.etag") or etag
    return Row(properties, metadata)


def key_path(table: str, partition: str, row: str) -> str:
    """`table(PartitionKey='..',RowKey='..')`, quotes doubled and the keys URL-encoded."""
    def literal(value: str) -> str:
        return quote(value.replace("'", "''"), safe="")
    return f"{table}(PartitionKey='{literal(partition)}',RowKey='{literal(row)}')"


def filter_literal(value) -> str:
    """An OData literal for a $filter parameter."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value in INT32 else f"{value}L"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dt.datetime):
        return f"datetime'{format_datetime(value)}'"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"a filter parameter cannot be a {type(value).__name__}")


def bind_filter(query: str, parameters: dict) -> str:
    """Replace each `@name` with its parameter's literal."""
    return re.sub(r"@(\w+)", lambda m: filter_literal(parameters[m.group(1)]), query)


# --- batches --------------------------------------------------------------------------------

@dataclass(frozen=True)
class BatchOperation:
    method: str          # POST (create), PUT (replace / upsert), MERGE, DELETE
    path: str            # the table, or the entity's key path
    body: dict | None
    if_match: str | None


def batch_body(table_url: str, operations: list[BatchOperation]) -> tuple[str, bytes]:
    """The multipart/mixed body of an entity-group transaction, and its content type."""
    batch, changeset = f"batch_{uuid.uuid4().hex}", f"changeset_{uuid.uuid4().hex}"
    lines = [f"--{batch}", f"Content-Type: multipart/mixed; boundary={changeset}", ""]
    for operation in operations:
        lines += [f"--{changeset}", "Content-Type: application/http", "Content-Transfer-Encoding: binary", "",
                  f"{operation.method} {table_url}/{operation.path} HTTP/1.1", f"Accept: {JSON_ACCEPT}",
                  "Prefer: return-no-content", "DataServiceVersion: 3.0;"]
        if operation.if_match:
            lines.append(f"If-Match: {operation.if_match}")
        payload = json.dumps(operation.body) if operation.body is not None else ""
        if operation.body is not None:
            lines.append("Content-Type: application/json")
        lines += ["", payload]
    lines += [f"--{changeset}--", "", f"--{batch}--", ""]
    return f"multipart/mixed; boundary={batch}", "\r\n".join(lines).encode("utf-8")


_PART_STATUS = re.compile(rb"HTTP/1\.1 (\d{3})")
_PART_ETAG = re.compile(rb"(?im)^etag:\s*(\S+)\s*$")
_ERROR_CODE = re.compile(rb'"code"\s*:\s*"([^"]*)"')


def parse_batch_response(body: bytes, operations: int) -> tuple[int, list[str | None], str]:
    """(the failing status or 204, each operation's new etag, the error code) of a
    transaction's multipart answer."""
    parts = re.split(rb"(?=HTTP/1\.1 \d{3})", body)[1:]
    statuses = [int(_PART_STATUS.match(part).group(1)) for part in parts]
    failed = [(status, part) for status, part in zip(statuses, parts) if status >= 300]
    if failed or len(parts) != operations:
        status, part = failed[0] if failed else (500, b"")
        code = _ERROR_CODE.search(part)
        return status, [], code.group(1).decode() if code else ""
    etags = []
    for part in parts:
        found = _PART_ETAG.search(part)
        etags.append(found.group(1).decode() if found else None)
    return 204, etags, ""


# --- transport ------------------------------------------------------------------------------

class RestClient:
    """Signed requests to one account's Table, Queue and Blob services, one connection per
    host and thread."""

    def __init__(self, account: StorageAccount):
        self.account = account
        self._local = threading.local()

    def _connection(self, scheme: str, netloc: str, fresh: bool = False) -> http.client.HTTPConnection:
        connections = self._local.__dict__.setdefault("connections", {})
        connection = connections.get(netloc)
        if connection is None or fresh:
            if connection is not None:
                connection.close()
            connection = self._new_connection(scheme, netloc)
            connections[netloc] = connection
        return connection

    @staticmethod
    def _new_connection(scheme: str, netloc: str) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
        return kind(netloc, timeout=TIMEOUT_SECONDS)

    def _sign(self, method: str, url, headers: dict, body: bytes | None, table: bool) -> None:
        """SharedKeyLite for tables; SharedKey for queues and blobs."""
        resource = f"/{self.account.name}{url.path}"
        if table:
            comp = re.search(r"(?:^|&)comp=([^&]*)", url.query or "")
            text, scheme = f"{headers['x-ms-date']}\n{resource}" + (f"?comp={comp.group(1)}" if comp else ""), "SharedKeyLite"
        else:
            canonical = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
            query = "".join(f"\n{name.lower()}:{value}" for name, value in sorted(parse_qsl(url.query or "")))
            length = str(len(body)) if body else ""
            text = "\n".join([method, "", "", length, "", headers.get("Content-Type", ""), "", "",
                               headers.get("If-Match", ""), "", "", headers.get("Range", "")])
            text, scheme = f"{text}\n{canonical}{resource}{query}", "SharedKey"
        signature = base64.b64encode(hmac.new(self.account.key, text.encode("utf-8"), hashlib.sha256).digest())
        headers["Authorization"] = f"{scheme} {self.account.name}:{signature.decode('ascii')}"

    def request(self, service: str, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        """Send one request to `table`, `queue` or `blob` (path relative to the endpoint)."""
        return self._exchange(service, method, path, body, headers, stream=False)

    def open(self, service: str, path: str, headers: dict | None = None):
        """GET a resource to read as it arrives, on a connection of its own: (status, headers,
        the response to read from when the status is below 300, else the error body)."""
        return self._exchange(service, "GET", path, None, headers, stream=True)

    def _exchange(self, service: str, method: str, path: str, body: bytes | None, headers: dict | None,
                  stream: bool):
        base = {"table": self.account.table_endpoint, "queue": self.account.queue_endpoint,
                "blob": self.account.blob_endpoint}[service]
        if self.account.key is None and self.account.sas:
            path += ("&" if "?" in path else "?") + self.account.sas
        url = urlsplit(f"{base}/{path}")
        target = url.path + (f"?{url.query}" if url.query else "")
        for attempt in range(RETRIES + 1):
            sent = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": API_VERSION,
                    **(headers or {})}
            if service == "table":
                sent.setdefault("Accept", JSON_ACCEPT)
                sent["DataServiceVersion"] = sent["MaxDataServiceVersion"] = "3.0;NetFx"
            if self.account.key is not None:
                self._sign(method, url, sent, body, service == "table")
            try:
                connection = (self._new_connection(url.scheme, url.netloc) if stream
                              else self._connection(url.scheme, url.netloc, fresh=attempt > 0))
                connection.request(method, target, body=body, headers=sent)
                response = connection.getresponse()
                data = response if stream and response.status < 300 else response.read()
            except (OSError, http.client.HTTPException) as error:
                if not stream:
                    self._connection(url.scheme, url.netloc, fresh=True)
                if attempt == RETRIES:
                    raise ServiceRequestError(f"storage unreachable: {type(error).__name__}") from None
                time.sleep(0.05 * 2 ** attempt)
                continue
            if response.status in RETRY_STATUSES and attempt < RETRIES:
                time.sleep(0.1 * 2 ** attempt)
                continue
            return response.status, response.headers, data
        raise AssertionError("unreachable")


def error_code(headers, body: bytes) -> str:
    code = headers.get("x-ms-error-code")
    if code:
        return code
    found = _ERROR_CODE.search(body or b"") or re.search(rb"<Code>([^<]*)</Code>", body or b"")
    return found.group(1).decode() if found else ""
