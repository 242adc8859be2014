"""Customers' blobs (job inputs and outputs) and read tokens for job results, through
`azure-storage-blob`.

A location is reached by its connection string, or by BaseLocation + SAS token; either is
parsed once into a `StorageAccount`, and every request for the location is made from it.
"""
from __future__ import annotations

import datetime as dt
import functools
import threading
from typing import Iterator

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobSasPermissions, ContentSettings, generate_blob_sas

from shared.settings import get_settings
from shared.storage import clients
from shared.storage.connections import StorageAccount, parse_connection_string, sas_account

READ_BLOCK_BYTES = 4 * 1024 * 1024
SAS_CLOCK_SKEW = dt.timedelta(minutes=5)
DELEGATION_KEY_HOURS = 24 * 6  # the service allows at most 7 days


def account_of(location) -> StorageAccount:
    """The account of a job's blob location (`shared.bes.Location`), with no I/O: the app's own
    (`own`), by BaseLocation + SAS token when given, else by connection string."""
    if location.own:
        return get_settings().host_account()
    if location.base_location and location.sas_token:
        return sas_account(location.base_location, location.sas_token)
    return parse_connection_string(location.connection_string or "")


@functools.lru_cache(maxsize=64)
def _service_of(account: StorageAccount):
    return clients.blob_service(account, max_single_get_size=READ_BLOCK_BYTES, max_chunk_get_size=READ_BLOCK_BYTES)


class BlobFile:
    """One blob. Building one does no I/O; each write method is one request."""

    def __init__(self, account: StorageAccount, container: str, blob: str):
        self._client = _service_of(account).get_blob_client(container, blob)

    def read_from(self, offset: int = 0) -> tuple[int, Iterator[bytes]] | None:
        """(the blob's whole size, its bytes from `offset` on as they arrive), or None if there
        is no such blob."""
        try:
            if offset:
                size = self._client.get_blob_properties().size
                if offset >= size:
                    return size, iter(())
                download = self._client.download_blob(offset=offset)
            else:
                download = self._client.download_blob()
                size = download.properties.size
        except ResourceNotFoundError:
            return None
        return size, download.chunks()

    def upload(self, data: bytes, content_type: str) -> None:
        """Write the whole blob in one request."""
        self._client.upload_blob(data, overwrite=True, content_settings=ContentSettings(content_type=content_type))

    def stage_block(self, block_id: str, data: bytes) -> None:
        self._client.stage_block(block_id, data)

    def commit_blocks(self, block_ids: list[str], content_type: str) -> None:
        """Make the staged blocks, in this order, the blob's content (replacing it whole)."""
        self._client.commit_block_list([BlobBlock(block_id) for block_id in block_ids],
                                       content_settings=ContentSettings(content_type=content_type))


def blob_endpoint(account: StorageAccount) -> str:
    """The account's blob service endpoint, ending in `/` (no I/O)."""
    return account.endpoint("blob").rstrip("/") + "/"


def own_blob_endpoint() -> str:
    return blob_endpoint(get_settings().host_account())


_known_containers: set[tuple[str, str]] = set()


def ensure_container(account: StorageAccount, container: str) -> None:
    """Create an output container if it is missing (with the location's rights); remembered
    per process, so repeated jobs do not ask again."""
    known = (account.endpoint("blob"), container)
    if known in _known_containers:
        return
    try:
        _service_of(account).get_container_client(container).create_container()
    except ResourceExistsError:
        pass
    except HttpResponseError:
        return  # no right to create containers: the writes will say whether it exists
    _known_containers.add(known)


def remove_older_than(account: StorageAccount, container: str, before: dt.datetime) -> int:
    """Delete the container's blobs last written before `before`; how many were removed."""
    client = _service_of(account).get_container_client(container)
    removed = 0
    try:
        for blob in client.list_blobs():
            if blob.last_modified < before:
                try:
                    client.delete_blob(blob.name)
                except ResourceNotFoundError:
                    continue
                removed += 1
    except ResourceNotFoundError:
        return 0  # no container yet: no job has had its outputs kept
    return removed


class _DelegationKeys:
    """A user delegation key of the app's own identity, fetched once and reused until it
    nears its end."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key = None
        self._until = None

    def valid_through(self, account: StorageAccount, until: dt.datetime):
        with self._lock:
            if self._key is None or self._until < until:
                now = dt.datetime.now(dt.timezone.utc)
                self._until = now + dt.timedelta(hours=DELEGATION_KEY_HOURS)
                self._key = _service_of(account).get_user_delegation_key(now - SAS_CLOCK_SKEW, self._until)
            return self._key


_delegation_keys = _DelegationKeys()


def read_token(account: StorageAccount, container: str, blob: str, now: dt.datetime, hours: int) -> str:
    """A shared access signature (`?sv=...`) that lets its holder read this one blob and do
    nothing else, for `hours` (valid from a few minutes before `now`, for clock skew): signed
    with the account key where there is one, else, for the app's own account reached by its
    identity, a user delegation SAS; "" where the app can sign neither."""
    start, expiry = now - SAS_CLOCK_SKEW, now + dt.timedelta(hours=hours)
    readable = BlobSasPermissions(read=True)
    if account.key is not None:
        return "?" + generate_blob_sas(account.name, container, blob, permission=readable, start=start,
                                       expiry=expiry, account_key=account.key)
    own = get_settings().host_account()
    if own.uses_identity and own.endpoint("blob") == account.endpoint_if_any("blob"):
        return "?" + generate_blob_sas(account.name, container, blob, permission=readable, start=start,
                                       expiry=expiry, user_delegation_key=_delegation_keys.valid_through(own, expiry))
    return ""
