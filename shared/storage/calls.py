"""Running storage calls side by side, and turning an unreachable store into a clear 503."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, TypeVar

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

_overlap = ThreadPoolExecutor(max_workers=16, thread_name_prefix="storage")


def concurrently(*calls: Callable[[], object]) -> list:
    """Run independent storage calls at once and return their results in order; if any
    raised, the first error is raised once all have ended."""
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


def is_transient(error: AzureError) -> bool:
    """Worth another try: the storage service was unreachable, busy or failing, not refusing."""
    if isinstance(error, HttpResponseError) and error.status_code is not None:
        return error.status_code in (408, 429) or error.status_code >= 500
    return isinstance(error, (ServiceRequestError, ServiceResponseError))


def output_replaced(error: AzureError) -> bool:
    """Another writer committed the same output blob meanwhile, which discards this run's
    staged blocks: the run must score again from the start (the last to commit wins)."""
    return isinstance(error, HttpResponseError) and _error_code(error) == "InvalidBlockList"


def _error_code(error: HttpResponseError) -> str:
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "none")


def describe_storage_error(error: AzureError) -> str:
    """Status and error code only: an SDK message can carry request URLs."""
    if isinstance(error, HttpResponseError):
        return f"status={error.status_code} code={_error_code(error)}"
    return f"error={type(error).__name__}"


def storage_guard(call: Callable[[], T]) -> T:
    """Turn an unreachable, throttling or failing storage account into a clear 503."""
    try:
        return call()
    except (ServiceRequestError, ServiceResponseError) as error:
        # Unreachable, or the connection dropped before an answer (so a write may or may not
        # have been applied, as with any call that times out).
        log.warning("storage unreachable error=%s", type(error).__name__)
        raise StorageUnavailable("the storage account cannot be reached; retry shortly") from None
    except ClientAuthenticationError as error:
        log.warning("storage refused the app's credential status=%s", error.status_code)
        raise StorageUnavailable("the service cannot authenticate to its storage account; retry shortly") from None
    except AzureError as error:
        if isinstance(error, HttpResponseError) and is_transient(error):
            log.warning("storage failed status=%s", error.status_code)
            raise StorageUnavailable("the storage account failed or throttled the request; retry shortly") from None
        raise
