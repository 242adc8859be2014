"""One exception hierarchy for every failure a caller can be told about.

Each carries its HTTP status, its class (the envelope's `code`, as Azure ML web services
name them: `BadArgument`, `Unauthorized`, `NotFound`, `InvalidOperation`, ...), a specific
PascalCase code and, where one field is at fault, that field. `shared.api` turns them into
the one error body of every route:

    {"error": {"code": "<class>", "message": "...",
               "details": [{"code": "<specific>", "target": "<field>", "message": "..."}]}}
"""
from __future__ import annotations


class BatchPoolError(Exception):
    status = 400
    category = "BadArgument"
    code = "BadRequest"

    def __init__(self, message: str, code: str | None = None, target: str | None = None):
        super().__init__(message)
        self.message = message
        self.target = target
        if code:
            self.code = code


class InvalidRequest(BatchPoolError):
    status, category, code = 400, "BadArgument", "InvalidRequest"


class InvalidOperation(BatchPoolError):
    """The request is well formed but the resource's state does not allow it."""
    status, category, code = 400, "InvalidOperation", "InvalidOperation"


class AlreadyEnded(InvalidOperation):
    """The resource has reached a state it cannot leave (an ended job)."""
    status = 409


class Unauthorized(BatchPoolError):
    status, category, code = 401, "Unauthorized", "Unauthorized"


class NotFound(BatchPoolError):
    status, category, code = 404, "NotFound", "NotFound"


class Conflict(BatchPoolError):
    status, category, code = 409, "Conflict", "Conflict"


class QuotaExceeded(BatchPoolError):
    status, category, code = 409, "QuotaExceeded", "QuotaExceeded"


class PayloadTooLarge(BatchPoolError):
    status, category, code = 413, "RequestEntityTooLarge", "PayloadTooLarge"


class UnsupportedMediaType(BatchPoolError):
    status, category, code = 415, "UnsupportedMediaType", "UnsupportedMediaType"


# How long a caller told 503 is asked to wait (Retry-After) before it tries again.
RETRY_AFTER_SECONDS = 5


class Busy(BatchPoolError):
    """Too many concurrent writers kept winning; the caller may retry."""
    status, category, code = 503, "ServiceUnavailable", "TooManyConcurrentChanges"


class StorageUnavailable(BatchPoolError):
    status, category, code = 503, "ServiceUnavailable", "StorageUnavailable"


def envelope(category: str, code: str, message: str, target: str | None = None) -> dict:
    detail = {"code": code, "message": message}
    if target:
        detail["target"] = target
    return {"error": {"code": category, "message": message, "details": [detail]}}
