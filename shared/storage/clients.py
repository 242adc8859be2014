"""The only place that builds Azure SDK clients, so they all share one HTTP transport and
one retry policy.

* One `requests` session (its connection pool sized for the worker's threads) carries every
  client's requests: connections are kept alive and reused across clients and invocations.
* Retries: connection failures, timeouts and 5xx (503 ServerBusy is how Azure Storage
  throttles) are retried with short exponential back-off, and for as long as a `Retry-After`
  header asks when the service sends one. The tables SDK's policy (azure-core's) honours
  `Retry-After` and retries 429 too; the blob and queue SDKs' own policy does not look at
  `Retry-After` and starts at 15 s, so it is given the header's wait and a shorter start.
* Streamed bodies (blob downloads) are read in the storage SDKs' own block size, which a
  transport passed in would otherwise not get (see `STREAM_BLOCK_BYTES`).
* The SDKs' loggers are kept at WARNING (see below).
"""
from __future__ import annotations

import email.utils
import functools
import logging
import os
import threading
import time

import requests
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.blob import ExponentialRetry as BlobExponentialRetry
from azure.storage.queue import ExponentialRetry as QueueExponentialRetry
from azure.storage.queue import QueueServiceClient, TextBase64EncodePolicy

from shared.storage.connections import StorageAccount

# The SDKs log every request and every response at INFO (azure-core's HttpLoggingPolicy,
# logger "azure.core.pipeline.policies.http_logging_policy", is in every client's pipeline),
# and the Functions Python worker sends every INFO record on to the host: about 40 % more CPU
# per storage read there (+10 % against Azurite with a root handler that only formats them).
# Only the SDKs' warnings and errors are wanted. The policy asks `isEnabledFor` before it
# builds a message, so the level alone removes the cost. Set here, where every client is
# built, so that any process that uses storage gets it; the root logger and the app's own
# `shared.*` loggers keep their levels. (To see the SDKs' requests while troubleshooting, set
# the "azure" logger's level after this import.)
logging.getLogger("azure").setLevel(logging.WARNING)

USER_AGENT = "batchpool"  # leads the SDK's own: the app's requests are told apart in storage logs
POOL_CONNECTIONS = 64
RETRY_TOTAL = 6
RETRY_BACKOFF_SECONDS = 0.5
RETRY_BACKOFF_MAX_SECONDS = 8
CONNECTION_TIMEOUT_SECONDS = 10
READ_TIMEOUT_SECONDS = 60
# The size of each read of a streamed response body (a blob download). The storage SDKs give
# the transport they build 256 KiB (DATA_BLOCK_SIZE in azure/storage/blob/_shared/constants.py,
# as `connection_data_block_size` in _shared/base_client.py `_create_pipeline`), but only when
# no transport is passed in: a RequestsTransport built without it reads in azure-core's default
# of 4 KiB, which costs a blob read three times the CPU (1.7 against 0.56 ms per MB). Table and
# queue responses are not streamed (requests reads them whole), so they are left as they were.
STREAM_BLOCK_BYTES = 256 * 1024


@functools.lru_cache(maxsize=1)
def shared_transport() -> RequestsTransport:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=8, pool_maxsize=POOL_CONNECTIONS)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    # requests reads proxy and CA settings from the environment on every request, which
    # costs about a fifth of an SDK call's CPU; with no proxy configured, read them once.
    uses_proxy = any(name.lower().endswith("_proxy") and value for name, value in os.environ.items())
    trusted = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = uses_proxy
    return RequestsTransport(session=session, session_owner=False, connection_timeout=CONNECTION_TIMEOUT_SECONDS,
                             read_timeout=READ_TIMEOUT_SECONDS, use_env_settings=uses_proxy,
                             connection_verify=trusted, connection_data_block_size=STREAM_BLOCK_BYTES)


class OnFirstUse:
    """Clients of named resources (tables, queues), each made, and created in storage, the
    first time this process asks for it."""

    def __init__(self, make):
        self._make = make
        self._made = {}
        self._lock = threading.Lock()

    def __call__(self, name: str):
        client = self._made.get(name)
        if client is None:
            with self._lock:
                client = self._made.get(name)
                if client is None:
                    client = self._made[name] = self._make(name)
        return client


def retry_after_seconds(headers, now: float | None = None) -> float | None:
    """The wait a `Retry-After` header asks for (seconds, or an HTTP date), capped."""
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        wait = float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        if when is None:
            return None
        wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), RETRY_BACKOFF_MAX_SECONDS * 4)


def _asked_wait(settings) -> float | None:
    """What the last answer's Retry-After asks a storage SDK's retry policy to wait."""
    history = settings.get("history") or []
    response = history[-1].http_response if history else None
    return retry_after_seconds(response.headers) if response is not None else None


class BlobRetry(BlobExponentialRetry):
    """The blob SDK's retry, waiting what a Retry-After asks."""

    def get_backoff_time(self, settings) -> float:
        asked = _asked_wait(settings)
        return asked if asked is not None else super().get_backoff_time(settings)


class QueueRetry(QueueExponentialRetry):
    """The queue SDK's retry, waiting what a Retry-After asks."""

    def get_backoff_time(self, settings) -> float:
        asked = _asked_wait(settings)
        return asked if asked is not None else super().get_backoff_time(settings)


def _storage_retry(kind):
    return kind(initial_backoff=RETRY_BACKOFF_SECONDS, increment_base=2, retry_total=RETRY_TOTAL,
                random_jitter_range=RETRY_BACKOFF_SECONDS)


def table_service(account: StorageAccount) -> TableServiceClient:
    return TableServiceClient(account.endpoint("table"), credential=account.credential(), user_agent=USER_AGENT,
                              transport=shared_transport(), retry_total=RETRY_TOTAL, retry_status=RETRY_TOTAL,
                              retry_backoff_factor=RETRY_BACKOFF_SECONDS, retry_backoff_max=RETRY_BACKOFF_MAX_SECONDS)


def queue_service(account: StorageAccount) -> QueueServiceClient:
    return QueueServiceClient(account.endpoint("queue"), credential=account.credential(),
                              message_encode_policy=TextBase64EncodePolicy(), user_agent=USER_AGENT,
                              transport=shared_transport(),
                              retry_policy=_storage_retry(QueueRetry))


def blob_service(account: StorageAccount, **options) -> BlobServiceClient:
    return BlobServiceClient(account.endpoint("blob"), credential=account.credential(), user_agent=USER_AGENT,
                             transport=shared_transport(), retry_policy=_storage_retry(BlobRetry), **options)
