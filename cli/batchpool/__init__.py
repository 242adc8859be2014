"""Batch Pool: client library and command line."""
from batchpool.client import (
    ApiError,
    BatchPoolError,
    JobsClient,
    OperatorClient,
    PoolClient,
    Unreachable,
    download,
    result_url,
)

__all__ = ["ApiError", "BatchPoolError", "JobsClient", "OperatorClient", "PoolClient", "Unreachable", "download",
           "result_url"]
