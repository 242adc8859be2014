"""Storage: the only package that builds Azure SDK clients and does etag-conditional writes.

`connections` resolves where storage is and how to authenticate; `clients` builds the SDK
clients on one shared transport; `tables`, `queues` and `blobs` are the stores the app uses.
"""
from shared.storage.blobs import (
                                  BlobFile,
                                  account_of,
                                  blob_endpoint,
                                  ensure_container,
                                  own_blob_endpoint,
                                  read_token,
                                  remove_older_than,
)
from shared.storage.calls import concurrently, storage_guard
from shared.storage.queues import get_queues
from shared.storage.tables import (
                                  ACCOUNTS,
                                  POOLS,
                                  SERVICES,
                                  TableStore,
                                  WriteConflict,
                                  etag_of,
                                  get_store,
                                  retry_on_conflict,
)

__all__ = ["ACCOUNTS", "POOLS", "SERVICES", "BlobFile", "TableStore", "WriteConflict", "account_of",
           "blob_endpoint", "concurrently", "ensure_container", "etag_of", "get_queues", "get_store",
           "own_blob_endpoint", "read_token", "remove_older_than", "retry_on_conflict",
           "storage_guard"]
