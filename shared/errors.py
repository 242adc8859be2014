"""One exception hierarchy for every failure a caller can be told about.

Each carries the HTTP status and the PascalCase code of the error body
`{"error": {"code", "message"}}`; `shared.api` maps them to responses in one place.
"""
from __future__ import annotations


class BatchPoolError(Exception):
    status = 400
    code = "BadRequest"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidRequest(BatchPoolError):
    status, code = 400, "InvalidRequest"


class Unauthorized(BatchPoolError):
    status, code = 401, "Unauthorized"


class NotFound(BatchPoolError):
    status, code = 404, "NotFound"


class Conflict(BatchPoolError):
    status, code = 409, "Conflict"


class QuotaExceeded(BatchPoolError):
    status, code = 409, "QuotaExceeded"


class PayloadTooLarge(BatchPoolError):
    status, code = 413, "PayloadTooLarge"


class UnsupportedMediaType(BatchPoolError):
    status, code = 415, "UnsupportedMediaType"


class Busy(BatchPoolError):
    """Too many concurrent writers kept winning; the caller may retry."""
    status, code = 503, "TooManyConcurrentChanges"


class StorageUnavailable(BatchPoolError):
    status, code = 503, "StorageUnavailable"
