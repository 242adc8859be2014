"""The only module that builds Azure SDK clients and writes to storage.

Writes that must not race are etag-conditional; a lost race raises `WriteConflict`, which
operations retry through `retry_on_conflict` after reading fresh state. Several rows that
must change together share a partition and go in one entity-group transaction.
"""
from __future__ import annotations

import functools
import logging
import random
import threading
import time
from typing import Callable, Iterable, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (AzureError, HttpResponseError, ResourceExistsError,
                                   ResourceModifiedError, ResourceNotFoundError, ServiceRequestError)
from azure.data.tables import TableServiceClient, UpdateMode

from shared.errors import Busy, StorageUnavailable
from shared.settings import get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")

ACCOUNTS = "Accounts"
SERVICES = "Services"
POOLS = "Pools"
TABLES = (ACCOUNTS, SERVICES, POOLS)


class WriteConflict(Exception):
    """An etag-conditional write or transaction lost a race; read again and retry."""


class Store:
    def __init__(self, connection_string: str, prefix: str):
        self._service = TableServiceClient.from_connection_string(connection_string)
        self._prefix = prefix
        self._clients = {}
        self._ready = set()
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

    def rows(self, table: str, partition: str, row_prefix: str) -> list[dict]:
        """Every row of a partition whose RowKey starts with `row_prefix` (a range scan)."""
        upper = row_prefix[:-1] + chr(ord(row_prefix[-1]) + 1)
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high"
        return list(self._table(table).query_entities(
            query, parameters={"pk": partition, "low": row_prefix, "high": upper}))

    def insert(self, table: str, entity: dict) -> None:
        try:
            self._table(table).create_entity(entity)
        except ResourceExistsError:
            raise WriteConflict("row exists") from None

    def replace(self, table: str, entity: dict) -> None:
        """Replace a row read earlier, only if nobody changed it since (its etag)."""
        try:
            self._table(table).update_entity(entity, mode=UpdateMode.REPLACE, etag=etag_of(entity),
                                             match_condition=MatchConditions.IfNotModified)
        except (ResourceModifiedError, ResourceNotFoundError):
            raise WriteConflict("row changed") from None
        except HttpResponseError as error:
            if error.status_code in (409, 412):
                raise WriteConflict("row changed") from None
            raise

    def transact(self, table: str, operations: Iterable[tuple]) -> None:
        """Commit ("create" | "replace" | "delete", entity) operations of one partition atomically.

        replace and delete are conditional on the entity's etag when it came from a read.
        """
        batch = []
        for kind, entity in operations:
            if kind == "create":
                batch.append(("create", entity))
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
            self._table(table).submit_transaction(batch)
        except HttpResponseError as error:
            if error.status_code in (404, 409, 412):
                raise WriteConflict("transaction lost a race") from None
            raise


def etag_of(entity) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    return metadata.get("etag")


@functools.lru_cache(maxsize=1)
def get_store() -> Store:
    settings = get_settings()
    return Store(settings.storage_connection_string, settings.table_prefix)


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
