"""The app's tables, through `azure-data-tables`: point reads, range reads, conditional
writes and entity-group transactions.

Writes that must not race are etag-conditional; a lost race raises `WriteConflict`, which
operations retry through `retry_on_conflict` after reading fresh state. Several rows that
must change together share a partition and go in one entity-group transaction.
"""
from __future__ import annotations

import functools
import random
import time
from typing import Callable, Iterable, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import EntityProperty, TableTransactionError, UpdateMode

from shared.errors import Busy
from shared.settings import get_settings
from shared.storage import clients
from shared.storage.connections import StorageAccount

T = TypeVar("T")

ACCOUNTS = "Accounts"
SERVICES = "Services"
POOLS = "Pools"

CONFLICT_STATUSES = (404, 409, 412)


class WriteConflict(Exception):
    """An etag-conditional write or transaction lost a race; read again and retry."""


class Row(dict):
    """A table entity as read: its properties as plain Python values, plus `metadata`
    (etag, timestamp)."""

    def __init__(self, properties: dict, metadata: dict):
        super().__init__(properties)
        self.metadata = metadata


def _row(entity) -> Row:
    return Row({name: value.value if isinstance(value, EntityProperty) else value
                for name, value in entity.items()}, dict(entity.metadata))


def _plain(entity: dict) -> dict:
    """What is written: None is left out (a missing property reads as absent), integers
    outside 32 bits are kept as Int64."""
    written = {}
    for name, value in entity.items():
        if value is None:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and not -2 ** 31 <= value < 2 ** 31:
            value = EntityProperty(value, "Edm.Int64")
        written[name] = value
    return written


def _upper_bound(prefix: str) -> str:
    """The least key above every key that starts with `prefix` (which is not empty)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def etag_of(entity) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    return metadata.get("etag")


def _remember_etag(entity: dict, metadata: dict | None) -> None:
    """Keep the row's new etag on the entity, so the writer can change it again conditionally."""
    etag = (metadata or {}).get("etag")
    if etag and isinstance(entity, Row):
        entity.metadata = {**entity.metadata, "etag": etag}


def _conditional(entity: dict) -> dict:
    """If-Match the etag the entity was read with; any existing row when it was not read."""
    etag = etag_of(entity)
    if etag:
        return {"etag": etag, "match_condition": MatchConditions.IfNotModified}
    return {"match_condition": MatchConditions.Unconditionally}  # sent as If-Match: *


class TableStore:
    """The app's tables of one storage account, each created on first use."""

    def __init__(self, account: StorageAccount, prefix: str):
        service = clients.table_service(account)
        self._table = clients.OnFirstUse(lambda name: service.create_table_if_not_exists(prefix + name))

    def get(self, table: str, partition: str, row: str) -> Row | None:
        try:
            return _row(self._table(table).get_entity(partition, row))
        except ResourceNotFoundError:
            return None

    def _query(self, table: str, query: str, parameters: dict, select: list[str] | None = None,
               limit: int | None = None):
        """Entities matching a filter, in key order, page after page."""
        pages = self._table(table).query_entities(query, parameters=parameters, select=select,
                                                  results_per_page=min(limit, 1000) if limit else None)
        for entity in pages:
            yield _row(entity)

    def rows(self, table: str, partition: str, row_prefix: str, after: str | None = None,
             limit: int | None = None, select: list[str] | None = None, condition: str = "",
             parameters: dict | None = None, before: str | None = None) -> list[dict]:
        """Rows of a partition whose RowKey starts with `row_prefix`, in key order (a range
        read within the partition, never a table scan), optionally only those after a key (or
        before one) and only those meeting a condition on their properties (the service skips
        the others)."""
        low = "gt" if after is not None else "ge"
        bounds = {"pk": partition, "low": after or row_prefix}
        query = f"PartitionKey eq @pk and RowKey {low} @low"
        high = _upper_bound(row_prefix) if row_prefix else None  # no prefix: the whole partition
        if before is not None:
            high = min(before, high) if high is not None else before
        if high is not None:
            query += " and RowKey lt @high"
            bounds["high"] = high
        if condition:
            query += f" and {condition}"
        found = []
        for entity in self._query(table, query, {**(parameters or {}), **bounds}, select, limit):
            found.append(entity)
            if limit and len(found) >= limit:
                break
        return found

    def key_range(self, table: str, partition: str, low: str, high: str, select: list[str] | None = None,
                  condition: str = "", parameters: dict | None = None, limit: int | None = None) -> list[dict]:
        """Rows of a partition with low <= RowKey < high, in key order, optionally only those
        meeting a condition, at most `limit` of them."""
        query = "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high" + (f" and {condition}" if condition
                                                                                 else "")
        found = []
        for entity in self._query(table, query, {**(parameters or {}), "pk": partition, "low": low, "high": high},
                                  select, limit):
            found.append(entity)
            if limit and len(found) >= limit:
                break
        return found

    def count(self, table: str, partition: str, row_prefix: str) -> int:
        """How many rows of a partition start with `row_prefix`."""
        return len(self.rows(table, partition, row_prefix, select=["RowKey"]))

    def scan(self, table: str, row_prefix: str, condition: str = "", parameters: dict | None = None) -> list[dict]:
        """Rows of every partition whose RowKey starts with `row_prefix`: a table scan, for the
        operator's listings and reports only."""
        query = "RowKey ge @low and RowKey lt @high" + (f" and {condition}" if condition else "")
        return list(self._query(table, query, {"low": row_prefix, "high": _upper_bound(row_prefix),
                                               **(parameters or {})}))

    def merge(self, table: str, entity: dict) -> None:
        """Create the row or merge these fields into it, unconditionally."""
        self._table(table).upsert_entity(_plain(entity), mode=UpdateMode.MERGE)

    def update(self, table: str, entity: Row, changes: dict) -> None:
        """Merge `changes` into a row read earlier, only if nobody changed it since (its etag);
        the entity takes the changes and the new etag."""
        try:
            metadata = self._table(table).update_entity(
                _plain({"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], **changes}),
                mode=UpdateMode.MERGE, **_conditional(entity))
        except (ResourceModifiedError, ResourceNotFoundError):
            raise WriteConflict("row changed") from None
        entity.update(changes)
        _remember_etag(entity, metadata)

    def upsert(self, table: str, entity: dict) -> None:
        """Create the row or replace it whole, unconditionally (for rows written idempotently)."""
        self._table(table).upsert_entity(_plain(entity), mode=UpdateMode.REPLACE)

    def delete(self, table: str, entity: dict) -> None:
        """Delete a row read earlier, only if nobody changed it since; gone already is fine."""
        try:
            self._table(table).delete_entity(entity["PartitionKey"], entity["RowKey"], **_conditional(entity))
        except ResourceModifiedError:
            raise WriteConflict("row changed") from None
        except ResourceNotFoundError:
            pass

    def insert(self, table: str, entity: dict) -> None:
        try:
            _remember_etag(entity, self._table(table).create_entity(_plain(entity)))
        except ResourceExistsError:
            raise WriteConflict("row exists") from None

    def replace(self, table: str, entity: dict) -> None:
        """Replace a row read earlier, only if nobody changed it since (its etag)."""
        try:
            _remember_etag(entity, self._table(table).update_entity(_plain(entity), mode=UpdateMode.REPLACE,
                                                                    **_conditional(entity)))
        except (ResourceModifiedError, ResourceNotFoundError):
            raise WriteConflict("row changed") from None

    def _one(self, table: str, kind: str, entity: dict) -> None:
        """One operation of a transaction, as the plain request it amounts to."""
        if kind == "create":
            self.insert(table, entity)
        elif kind == "replace":
            self.replace(table, entity)
        elif kind == "upsert":
            self.upsert(table, entity)
        elif kind == "merge":
            try:
                metadata = self._table(table).update_entity(_plain(entity), mode=UpdateMode.MERGE,
                                                            **_conditional(entity))
            except (ResourceModifiedError, ResourceNotFoundError):
                raise WriteConflict("row changed or gone") from None
            _remember_etag(entity, metadata)
        else:
            raise ValueError(f"unknown transaction operation {kind}")

    def transact(self, table: str, operations: Iterable[tuple]) -> None:
        """Commit ("create" | "replace" | "merge" | "upsert" | "delete", entity) operations of one
        partition atomically. replace and delete are conditional on the entity's etag when it came
        from a read; merge changes the given fields of an existing row; upsert writes a row whole."""
        operations = list(operations)
        if not operations:
            return
        if len(operations) == 1 and operations[0][0] != "delete":
            # A batch of one costs the service three times a plain write. (A plain delete of a
            # missing row succeeds where the transaction's fails, so deletes stay batched.)
            self._one(table, *operations[0])
            return
        batch: list[tuple] = []
        for kind, entity in operations:
            written = _plain(entity)
            if kind == "create":
                batch.append(("create", written))
            elif kind == "merge":
                batch.append(("update", written, {"mode": UpdateMode.MERGE}))
            elif kind == "upsert":
                batch.append(("upsert", written, {"mode": UpdateMode.REPLACE}))
            elif kind == "replace":
                batch.append(("update", written, {"mode": UpdateMode.REPLACE, **_conditional(entity)}))
            elif kind == "delete":
                batch.append(("delete", written, _conditional(entity)))
            else:
                raise ValueError(f"unknown transaction operation {kind}")
        try:
            outcomes = self._table(table).submit_transaction(batch)
        except TableTransactionError as error:
            if error.status_code in CONFLICT_STATUSES:
                raise WriteConflict("transaction lost a race") from None
            raise
        for (kind, entity), metadata in zip(operations, outcomes, strict=False):
            if kind != "delete":
                _remember_etag(entity, metadata)


@functools.lru_cache(maxsize=1)
def get_store() -> TableStore:
    settings = get_settings()
    return TableStore(settings.storage_account(), settings.table_prefix)


def retry_on_conflict(attempt: Callable[[], T], tries: int = 30) -> T:
    """Run a read-decide-write attempt until its conditional write wins, with jittered back-off."""
    for number in range(tries):
        try:
            return attempt()
        except WriteConflict:
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** number)))
    raise Busy("the resource is being changed by many requests at once; retry shortly")
