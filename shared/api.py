"""The HTTP edge shared by every function folder: reading requests, answering them, and
mapping errors to `{"error": {"code", "message"}}` responses in one place."""
from __future__ import annotations

import json
import logging
from typing import Callable
from urllib.parse import urlsplit

import azure.functions as func

from shared.errors import (BatchPoolError, InvalidRequest, PayloadTooLarge, Unauthorized,
                           UnsupportedMediaType)
from shared.settings import get_settings
from shared.storage import storage_guard

log = logging.getLogger(__name__)

ROUTE_PREFIX = "api"


def json_response(body, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers,
                             mimetype="application/json", charset="utf-8")


def error_response(error: BatchPoolError) -> func.HttpResponse:
    return json_response({"error": {"code": error.code, "message": error.message}}, error.status)


def respond(operation: Callable[[], object], status: int = 200) -> func.HttpResponse:
    """Run one operation; its result is the JSON body, or (status, body[, headers])."""
    try:
        result = storage_guard(operation)
    except BatchPoolError as error:
        return error_response(error)
    except Exception:
        log.exception("unexpected failure")
        return json_response({"error": {"code": "InternalError",
                                        "message": "the service failed unexpectedly; retry, and report it if it persists"}},
                             500)
    headers = None
    if isinstance(result, tuple):
        status, result, *rest = result
        headers = rest[0] if rest else None
    return json_response(result, status, headers)


def json_body(req: func.HttpRequest) -> dict:
    """The request's JSON object, or a clear 4xx."""
    limit = get_settings().max_request_bytes
    body = req.get_body() or b""
    if len(body) > limit:
        raise PayloadTooLarge(f"the request body is {len(body)} bytes; the limit is {limit}")
    content_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"send JSON with Content-Type: application/json, not {content_type}")
    if not body.strip():
        raise InvalidRequest("the request needs a JSON object body", "InvalidJson")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidRequest(f"the body is not valid JSON: {error}", "InvalidJson") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", "InvalidJson")
    return data


def bearer_token(req: func.HttpRequest) -> str:
    header = req.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the key as 'Authorization: Bearer <key>'")
    return token.strip()


def base_url(req: func.HttpRequest) -> str:
    """The app's public base URL: PUBLIC_BASE_URL, or the scheme and host the request came to."""
    configured = get_settings().public_base_url
    if configured:
        return configured
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"
