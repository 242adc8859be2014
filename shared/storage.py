"""The only module that builds Azure SDK clients and writes to storage.

Writes that must not race are etag-conditional; a lost race raises `WriteConflict`, which
operations retry through `retry_on_conflict` after reading fresh state. Several rows that
must change together share a partition and go in one entity-group transaction.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import random
import threading
import time
from urllib.parse import quote
from typing import Callable, Iterable, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (AzureError, HttpResponseError, ResourceExistsError,
                                   ResourceModifiedError, ResourceNotFoundError, ServiceRequestError)
from azure.data.tables import TableEntity, TableServiceClient, UpdateMode
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueServiceClient

from shared.errors import Busy, StorageUnavailable
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
    def __init__(self, connection_string: str, prefix: str, queue_connection_string: str):
        self._service = TableServiceClient.from_connection_string(connection_string)
        self._queues = QueueServiceClient.from_connection_string(queue_connection_string)
        self._prefix = prefix
        self._clients = {}
        self._ready = set()
        self._ready_queues = set()
        self._lock = threading.Lock()

    def _table(self, name: str):
        if name not in self._ready:
            with self._lock:
                if name not in self._ready:
                    self._service.create_table_if_not_exists(self._prefix + name)
                    self._clients[name] = self._service.get_table_client(self._prefix + name)
                    self._ready.add(name)
        return self._clients[name]

    def get(self, table: str, partition: str, row: str) -> dict | None:
        try:
            return self._table(table).get_entity(partition, row)
        except ResourceNotFoundError:
            return None

    def rows(self, table: str, partition: str, row_prefix: str, after: str | None = None,
             limit: int | None = None, select: list[str] | None = None) -> list[dict]:
        """Rows of a partition whose RowKey starts with `row_prefix`, in key order (a range
        read: it costs what it returns, never a scan), optionally only those after a key."""
        query = "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high"
        parameters = {"pk": partition, "low": after or row_prefix, "high": _upper_bound(row_prefix)}
        if after is None:
            query = query.replace("RowKey gt @low", "RowKey ge @low")
        pages = self._table(table).query_entities(query, parameters=parameters, select=select,
                                                  results_per_page=min(limit, 1000) if limit else None)
        found = []
        for entity in pages:
            found.append(entity)
            if limit and len(found) >= limit:
                break
        return found

    def count(self, table: str, partition: str, row_prefix: str, below: str | None = None) -> int:
        """How many rows of a partition start with `row_prefix` (and sort before `below`)."""
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        parameters = {"pk": partition, "low": row_prefix, "high": below or _upper_bound(row_prefix)}
        return sum(1 for _ in self._table(table).query_entities(query, parameters=parameters, select=["RowKey"]))

    def scan(self, table: str, row_prefix: str, condition: str = "", parameters: dict | None = None) -> list[dict]:
        """Rows of every partition whose RowKey starts with `row_prefix` (for sweeps only)."""
        query = "RowKey ge @low and RowKey lt @high" + (f" and {condition}" if condition else "")
        return list(self._table(table).query_entities(
            query, parameters={"low": row_prefix, "high": _upper_bound(row_prefix), **(parameters or {})}))

    def merge(self, table: str, entity: dict) -> None:
        """Create the row or merge these fields into it, unconditionally."""
        self._table(table).upsert_entity(entity, mode=UpdateMode.MERGE)

    def upsert(self, table: str, entity: dict) -> None:
        """Create the row or replace it whole, unconditionally (for rows written idempotently)."""
        self._table(table).upsert_entity(entity, mode=UpdateMode.REPLACE)

    def delete(self, table: str, entity: dict) -> None:
        """Delete a row read earlier, only if nobody changed it since; gone already is fine."""
        try:
            self._table(table).delete_entity(entity["PartitionKey"], entity["RowKey"], etag=etag_of(entity),
                                             match_condition=MatchConditions.IfNotModified)
        except ResourceModifiedError:
            raise WriteConflict("row changed") from None
        except ResourceNotFoundError:
            pass

    def send(self, queue: str, payload: dict, delay_seconds: int = 0) -> None:
        """Put a JSON message on a queue, base64-encoded as queue triggers expect by default."""
        client = self._queues.get_queue_client(queue)
        if queue not in self._ready_queues:
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
            self._ready_queues.add(queue)
        content = base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")
        client.send_message(content, visibility_timeout=delay_seconds or None)

    def insert(self, table: str, entity: dict) -> None:
        try:
            _remember_etag(entity, self._table(table).create_entity(entity))
        except ResourceExistsError:
            raise WriteConflict("row exists") from None

    def replace(self, table: str, entity: dict) -> None:
        """Replace a row read earlier, only if nobody changed it since (its etag)."""
        try:
            _remember_etag(entity, self._table(table).update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag_of(entity), match_condition=MatchConditions.IfNotModified))
        except (ResourceModifiedError, ResourceNotFoundError):
            raise WriteConflict("row changed") from None
        except HttpResponseError as error:
            if error.status_code in (409, 412):
                raise WriteConflict("row changed") from None
            raise

    def transact(self, table: str, operations: Iterable[tuple]) -> None:
        """Commit ("create" | "replace" | "merge" | "upsert" | "delete", entity) operations of one
        partition atomically. replace and delete are conditional on the entity's etag when it came
        from a read; merge changes the given fields of an existing row; upsert writes a row whole."""
        operations = list(operations)
        batch = []
        for kind, entity in operations:
            if kind == "create":
                batch.append(("create", entity))
            elif kind == "merge":
                batch.append(("update", entity, {"mode": UpdateMode.MERGE}))
            elif kind == "upsert":
                batch.append(("upsert", entity, {"mode": UpdateMode.REPLACE}))
            elif kind in ("replace", "delete"):
                etag = etag_of(entity)
                options = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
                if kind == "replace":
                    options["mode"] = UpdateMode.REPLACE
                    batch.append(("update", entity, options))
                else:
                    batch.append(("delete", entity, options))
            else:
                raise ValueError(f"unknown transaction operation {kind}")
        if not batch:
            return
        try:
            results = self._table(table).submit_transaction(batch)
            for (kind, entity), metadata in zip(operations, results):
                if kind != "delete":
                    _remember_etag(entity, metadata)
        except HttpResponseError as error:
            if error.status_code in (404, 409, 412):
                raise WriteConflict("transaction lost a race") from None
            raise


def _remember_etag(entity: dict, metadata) -> None:
    """Keep the row's new etag on the entity, so the writer can change it again conditionally."""
    etag = (metadata or {}).get("etag")
    if etag and isinstance(entity, TableEntity):
        entity._metadata = {**entity.metadata, "etag": etag}


def etag_of(entity) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    return metadata.get("etag")


@functools.lru_cache(maxsize=1)
def get_store() -> Store:
    settings = get_settings()
    return Store(settings.storage_connection_string, settings.table_prefix, settings.queue_connection_string)


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


def blob_client(connection_string: str, container: str, blob: str, base_location: str | None = None,
                sas_token: str | None = None) -> BlobClient:
    """A client for a customer's blob: by BaseLocation + SAS token when given, else by
    connection string. Building it does no I/O."""
    if base_location and sas_token:
        token = sas_token if sas_token.startswith("?") else f"?{sas_token}"
        return BlobClient.from_blob_url(f"{base_location.rstrip('/')}/{container}/{quote(blob)}{token}")
    return BlobClient.from_connection_string(connection_string, container, blob)


def blob_endpoint(connection_string: str, base_location: str | None = None, sas_token: str | None = None) -> str:
    """The blob service endpoint a location points at (no I/O)."""
    if base_location and sas_token:
        return base_location.rstrip("/") + "/"
    return BlobServiceClient.from_connection_string(connection_string).url


@functools.lru_cache(maxsize=1)
def own_blob_endpoint() -> str:
    return BlobServiceClient.from_connection_string(get_settings().queue_connection_string).url


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
