"""The only module that talks to storage: the app's tables and queues and customers' blobs,
over `shared.rest` (the Azure SDK only creates output containers).

Writes that must not race are etag-conditional; a lost race raises `WriteConflict`, which
operations retry through `retry_on_conflict` after reading fresh state. Several rows that
must change together share a partition and go in one entity-group transaction.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import io
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote
from typing import Callable, Iterable, TypeVar

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ServiceRequestError
from azure.storage.blob import BlobSasPermissions, ContainerClient, generate_blob_sas

from shared.errors import Busy, StorageUnavailable
from shared.rest import (BatchOperation, RestClient, Row, StorageRequestFailed, batch_body, bind_filter,
                         decode_entity, encode_entity, error_code, key_path, parse_batch_response,
                         parse_connection_string, sas_account)
from shared.settings import get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")

ACCOUNTS = "Accounts"
SERVICES = "Services"
POOLS = "Pools"
JOBS = "Jobs"


class WriteConflict(Exception):
    """An etag-conditional write or transaction lost a race; read again and retry."""


def _upper_bound(prefix: str) -> str:
    if not prefix:
        return "~"  # above every key this app writes (letters, digits, '|', '-', '_')
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Store:
    """The app's tables and queues: point reads, range reads, conditional writes and
    entity-group transactions, over `shared.rest`."""

    def __init__(self, connection_string: str, prefix: str, queue_connection_string: str):
        self._tables = RestClient(parse_connection_string(connection_string))
        self._queues = RestClient(parse_connection_string(queue_connection_string))
        self._prefix = prefix
        self._ready = set()
        self._ready_queues = set()
        self._lock = threading.Lock()

    def _table(self, name: str) -> str:
        """The table's name in storage, created on first use."""
        if name not in self._ready:
            with self._lock:
                if name not in self._ready:
                    status, headers, body = self._tables.request(
                        "table", "POST", "Tables", json.dumps({"TableName": self._prefix + name}).encode(),
                        {"Content-Type": "application/json", "Prefer": "return-no-content"})
                    if status not in (201, 204, 409):
                        raise StorageRequestFailed(status, error_code(headers, body))
                    self._ready.add(name)
        return self._prefix + name

    def _send(self, method: str, path: str, entity: dict | None = None, if_match: str | None = None,
              expected: tuple = (200, 201, 204)) -> tuple[int, object, bytes]:
        headers = {"Prefer": "return-no-content"}
        if if_match:
            headers["If-Match"] = if_match
        body = None
        if entity is not None:
            body = json.dumps(encode_entity(entity)).encode("utf-8")
            headers["Content-Type"] = "application/json"
        status, response_headers, data = self._tables.request("table", method, path, body, headers)
        if status not in expected and status not in (404, 409, 412):
            raise StorageRequestFailed(status, error_code(response_headers, data))
        return status, response_headers, data

    def get(self, table: str, partition: str, row: str) -> dict | None:
        status, headers, data = self._send("GET", key_path(self._table(table), partition, row))
        if status == 404:
            return None
        return decode_entity(json.loads(data), headers.get("ETag"))

    def _query(self, table: str, query: str, select: list[str] | None = None, limit: int | None = None):
        """Entities matching an OData filter, in key order, page after page."""
        params = f"$filter={quote(query, safe='')}"
        if select:
            params += f"&$select={quote(','.join(select), safe=',')}"
        if limit:
            params += f"&$top={min(limit, 1000)}"
        next_keys = ""
        while True:
            status, headers, data = self._send("GET", f"{self._table(table)}()?{params}{next_keys}",
                                               expected=(200,))
            if status != 200:
                raise StorageRequestFailed(status, error_code(headers, data))
            for item in json.loads(data)["value"]:
                yield decode_entity(item)
            partition = headers.get("x-ms-continuation-NextPartitionKey")
            if not partition:
                return
            next_keys = f"&NextPartitionKey={quote(partition)}"
            row = headers.get("x-ms-continuation-NextRowKey")
            if row:
                next_keys += f"&NextRowKey={quote(row)}"

    def rows(self, table: str, partition: str, row_prefix: str, after: str | None = None,
             limit: int | None = None, select: list[str] | None = None, condition: str = "",
             parameters: dict | None = None) -> list[dict]:
        """Rows of a partition whose RowKey starts with `row_prefix`, in key order (a range
        read within the partition, never a table scan), optionally only those after a key and
        only those meeting a condition on their properties (the service skips the others)."""
        low = "gt" if after is not None else "ge"
        query = bind_filter(f"PartitionKey eq @pk and RowKey {low} @low and RowKey lt @high"
                            + (f" and {condition}" if condition else ""),
                            {**(parameters or {}), "pk": partition, "low": after or row_prefix,
                             "high": _upper_bound(row_prefix)})
        found = []
        for entity in self._query(table, query, select, limit):
            found.append(entity)
            if limit and len(found) >= limit:
                break
        return found

    def key_range(self, table: str, partition: str, low: str, high: str,
                  select: list[str] | None = None) -> list[dict]:
        """Rows of a partition with low <= RowKey <= high, in key order."""
        query = bind_filter("PartitionKey eq @pk and RowKey ge @low and RowKey le @high",
                            {"pk": partition, "low": low, "high": high})
        return list(self._query(table, query, select))

    def count(self, table: str, partition: str, row_prefix: str) -> int:
        """How many rows of a partition start with `row_prefix`."""
        query = bind_filter("PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                            {"pk": partition, "low": row_prefix, "high": _upper_bound(row_prefix)})
        return sum(1 for _ in self._query(table, query, ["RowKey"]))

    def scan(self, table: str, row_prefix: str, condition: str = "", parameters: dict | None = None) -> list[dict]:
        """Rows of every partition whose RowKey starts with `row_prefix` (for sweeps only)."""
        query = "RowKey ge @low and RowKey lt @high" + (f" and {condition}" if condition else "")
        return list(self._query(table, bind_filter(
            query, {"low": row_prefix, "high": _upper_bound(row_prefix), **(parameters or {})})))

    def _entity_path(self, table: str, entity: dict) -> str:
        return key_path(self._table(table), entity["PartitionKey"], entity["RowKey"])

    def merge(self, table: str, entity: dict) -> None:
        """Create the row or merge these fields into it, unconditionally."""
        self._send("MERGE", self._entity_path(table, entity), entity)

    def upsert(self, table: str, entity: dict) -> None:
        """Create the row or replace it whole, unconditionally (for rows written idempotently)."""
        self._send("PUT", self._entity_path(table, entity), entity)

    def delete(self, table: str, entity: dict) -> None:
        """Delete a row read earlier, only if nobody changed it since; gone already is fine."""
        status, _, _ = self._send("DELETE", self._entity_path(table, entity), if_match=etag_of(entity) or "*")
        if status in (409, 412):
            raise WriteConflict("row changed")

    def insert(self, table: str, entity: dict) -> None:
        status, headers, _ = self._send("POST", self._table(table), entity)
        if status in (404, 409, 412):
            raise WriteConflict("row exists")
        _remember_etag(entity, headers.get("ETag"))

    def replace(self, table: str, entity: dict) -> None:
        """Replace a row read earlier, only if nobody changed it since (its etag)."""
        status, headers, _ = self._send("PUT", self._entity_path(table, entity), entity,
                                        if_match=etag_of(entity) or "*")
        if status in (404, 409, 412):
            raise WriteConflict("row changed")
        _remember_etag(entity, headers.get("ETag"))

    def transact(self, table: str, operations: Iterable[tuple]) -> None:
        """Commit ("create" | "replace" | "merge" | "upsert" | "delete", entity) operations of one
        partition atomically. replace and delete are conditional on the entity's etag when it came
        from a read; merge changes the given fields of an existing row; upsert writes a row whole."""
        operations = list(operations)
        if not operations:
            return
        name = self._table(table)
        batch = []
        for kind, entity in operations:
            path = key_path(name, entity["PartitionKey"], entity["RowKey"])
            if kind == "create":
                batch.append(BatchOperation("POST", name, encode_entity(entity), None))
            elif kind == "merge":
                batch.append(BatchOperation("MERGE", path, encode_entity(entity), "*"))
            elif kind == "upsert":
                batch.append(BatchOperation("PUT", path, encode_entity(entity), None))
            elif kind == "replace":
                batch.append(BatchOperation("PUT", path, encode_entity(entity), etag_of(entity) or "*"))
            elif kind == "delete":
                batch.append(BatchOperation("DELETE", path, None, etag_of(entity) or "*"))
            else:
                raise ValueError(f"unknown transaction operation {kind}")
        content_type, body = batch_body(self._tables.account.table_endpoint, batch)
        status, headers, data = self._tables.request("table", "POST", "$batch", body, {"Content-Type": content_type})
        if status != 202:
            raise StorageRequestFailed(status, error_code(headers, data))
        outcome, etags, code = parse_batch_response(data, len(batch))
        if outcome in (404, 409, 412):
            raise WriteConflict("transaction lost a race")
        if outcome >= 300:
            raise StorageRequestFailed(outcome, code)
        for (kind, entity), etag in zip(operations, etags):
            if kind != "delete":
                _remember_etag(entity, etag)

    def send(self, queue: str, payload: dict, delay_seconds: int = 0) -> None:
        """Put a JSON message on a queue, base64-encoded as queue triggers expect by default."""
        if queue not in self._ready_queues:
            status, headers, data = self._queues.request("queue", "PUT", queue)
            if status not in (201, 204, 409):
                raise StorageRequestFailed(status, error_code(headers, data))
            self._ready_queues.add(queue)
        content = base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")
        message = f"<QueueMessage><MessageText>{content}</MessageText></QueueMessage>".encode("ascii")
        path = f"{queue}/messages" + (f"?visibilitytimeout={delay_seconds}" if delay_seconds else "")
        status, headers, data = self._queues.request("queue", "POST", path, message,
                                                     {"Content-Type": "application/xml"})
        if status != 201:
            raise StorageRequestFailed(status, error_code(headers, data))


def _remember_etag(entity: dict, etag: str | None) -> None:
    """Keep the row's new etag on the entity, so the writer can change it again conditionally."""
    if etag and isinstance(entity, Row):
        entity.metadata = {**entity.metadata, "etag": etag}


def etag_of(entity) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    return metadata.get("etag")


@functools.lru_cache(maxsize=1)
def get_store() -> Store:
    settings = get_settings()
    return Store(settings.storage_connection_string, settings.table_prefix, settings.queue_connection_string)


_overlap = ThreadPoolExecutor(max_workers=16, thread_name_prefix="storage")


def concurrently(*calls: Callable[[], object]) -> list:
    """Run independent storage calls at once (each on its own connection) and return their
    results in order; if any raised, the first error is raised once all have ended."""
    futures = [_overlap.submit(call) for call in calls[1:]]
    results, first_error = [], None
    for outcome in [None, *futures]:
        try:
            results.append(calls[0]() if outcome is None else outcome.result())
        except Exception as error:
            results.append(None)
            first_error = first_error or error
    if first_error is not None:
        raise first_error
    return results


def retry_on_conflict(attempt: Callable[[], T], tries: int = 30) -> T:
    """Run a read-decide-write attempt until its conditional write wins, with jittered back-off."""
    for number in range(tries):
        try:
            return attempt()
        except WriteConflict:
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** number)))
    raise Busy("the resource is being changed by many requests at once; retry shortly")


def storage_guard(call: Callable[[], T]) -> T:
    """Turn an unreachable or failing storage account into a clear 503."""
    try:
        return call()
    except ServiceRequestError:
        log.warning("storage unreachable")
        raise StorageUnavailable("the storage account cannot be reached; retry shortly") from None
    except AzureError as error:
        if isinstance(error, HttpResponseError) and error.status_code and error.status_code >= 500:
            log.warning("storage failed status=%s", error.status_code)
            raise StorageUnavailable("the storage account failed the request; retry shortly") from None
        raise


class BlobFile:
    """A customer's blob, reached by connection string or by BaseLocation + SAS token. Building
    one does no I/O; each method is one request."""

    def __init__(self, client: RestClient, container: str, blob: str):
        self._client = client
        self._path = f"{quote(container)}/{quote(blob)}"

    def _put(self, query: str, data: bytes, headers: dict) -> None:
        status, response_headers, body = self._client.request("blob", "PUT", self._path + query, data, headers)
        if status >= 300:
            raise StorageRequestFailed(status, error_code(response_headers, body))

    def open_read(self) -> io.RawIOBase | None:
        """The blob's content to read as it arrives, or None if there is no such blob."""
        status, headers, response = self._client.open("blob", self._path)
        if status == 404:
            return None
        if status >= 300:
            raise StorageRequestFailed(status, error_code(headers, response))
        return response

    def upload(self, data: bytes, content_type: str) -> None:
        """Write the whole blob in one request."""
        self._put("", data, {"x-ms-blob-type": "BlockBlob", "x-ms-blob-content-type": content_type})

    def stage_block(self, block_id: str, data: bytes) -> None:
        self._put(f"?comp=block&blockid={quote(block_id, safe='')}", data, {})

    def commit_blocks(self, block_ids: list[str], content_type: str) -> None:
        """Make the staged blocks, in this order, the blob's content (replacing it whole)."""
        listing = "".join(f"<Latest>{block_id}</Latest>" for block_id in block_ids)
        self._put("?comp=blocklist", f'<?xml version="1.0" encoding="utf-8"?><BlockList>{listing}</BlockList>'
                  .encode("utf-8"), {"Content-Type": "application/xml", "x-ms-blob-content-type": content_type})


@functools.lru_cache(maxsize=64)
def _blob_account_client(connection_string: str, base_location: str | None, sas_token: str | None) -> RestClient:
    if base_location and sas_token:
        return RestClient(sas_account(base_location, sas_token))
    return RestClient(parse_connection_string(connection_string))


def blob_file(connection_string: str, container: str, blob: str, base_location: str | None = None,
              sas_token: str | None = None) -> BlobFile:
    """A customer's blob: by BaseLocation + SAS token when given, else by connection string."""
    use_sas = bool(base_location and sas_token)
    return BlobFile(_blob_account_client("" if use_sas else connection_string, base_location if use_sas else None,
                                         sas_token if use_sas else None), container, blob)


SAS_CLOCK_SKEW = dt.timedelta(minutes=5)


def blob_read_token(connection_string: str, container: str, blob: str, now: dt.datetime, hours: int) -> str:
    """A shared access signature (`?sv=...`) that lets its holder read this one blob, and do
    nothing else, for `hours` (valid from a few minutes before `now`, for clock skew); "" when
    the connection string carries no account key to sign with. No I/O."""
    account = parse_connection_string(connection_string)
    if account.key is None:
        return ""
    token = generate_blob_sas(account.name, container, blob, account_key=base64.b64encode(account.key).decode(),
                              permission=BlobSasPermissions(read=True), start=now - SAS_CLOCK_SKEW,
                              expiry=now + dt.timedelta(hours=hours))
    return f"?{token}"


def blob_endpoint(connection_string: str, base_location: str | None = None, sas_token: str | None = None) -> str:
    """The blob service endpoint a location points at (no I/O)."""
    if base_location and sas_token:
        return base_location.rstrip("/") + "/"
    return parse_connection_string(connection_string).blob_endpoint + "/"


@functools.lru_cache(maxsize=1)
def own_blob_endpoint() -> str:
    return blob_endpoint(get_settings().queue_connection_string)


_known_containers: set[tuple[str, str]] = set()


def ensure_container(connection_string: str, container: str) -> None:
    """Create an output container if it is missing (with a connection string's rights);
    remembered per process, so repeated jobs do not ask again."""
    client = ContainerClient.from_connection_string(connection_string, container)
    if (client.url, container) in _known_containers:
        return
    try:
        client.create_container()
    except ResourceExistsError:
        pass
    except HttpResponseError:
        return
    _known_containers.add((client.url, container))
