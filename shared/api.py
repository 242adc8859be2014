"""The HTTP edge shared by every function folder: reading requests, answering them, and
mapping errors to the one error envelope (see `shared.errors`) in one place."""
from __future__ import annotations

import json
import logging
from typing import Callable

import azure.functions as func

from shared import logfields, operators
from shared.errors import (
    RETRY_AFTER_SECONDS,
    BatchPoolError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    envelope,
)
from shared.settings import get_settings
from shared.storage import storage_guard
from shared.validation import ID_RULE, is_valid_id

log = logging.getLogger(__name__)

ROUTE_PREFIX = "api"


def json_response(body, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body), status_code=status, headers=headers,
                             mimetype="application/json", charset="utf-8")


def error_response(error: BatchPoolError) -> func.HttpResponse:
    """The error's envelope; a 503 says when to try again (Retry-After)."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if error.status == 503 else None
    return json_response(envelope(error.category, error.code, error.message, error.target), error.status, headers)


def check_route_ids(req: func.HttpRequest) -> None:
    """Every id in the route follows the id rule before anything reads storage with it: a
    malformed id names nothing (404), or cannot be created (400 on PUT)."""
    for name, value in (req.route_params or {}).items():
        if not is_valid_id(value):
            if req.method.upper() == "PUT":
                raise InvalidRequest(f"{name} must be {ID_RULE}", "InvalidId")
            raise NotFound(f"no such {name}: ids are {ID_RULE}", "NotFound")


def respond(req: func.HttpRequest, operation: Callable[[], object], status: int = 200,
            operator: bool = False) -> func.HttpResponse:
    """Run one operation for a request whose route ids are checked first (and, on an operator
    route, its operator credential before that); its result is the JSON body, or
    (status, body[, headers])."""
    try:
        if operator:
            operators.authorize(req.headers.get("Authorization"), req.headers.get("x-functions-key"))
        check_route_ids(req)
        route = req.route_params or {}
        with logfields.about(job=route.get("jobId"), pool=route.get("poolId")):
            result = storage_guard(operation)
    except BatchPoolError as error:
        return error_response(error)
    except Exception:
        log.exception("unexpected failure")
        return json_response(envelope("InternalError", "InternalError",
                                      "the service failed unexpectedly; retry, and report it if it persists"), 500)
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
    if content_type and content_type not in ("application/json", "text/json") and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"send JSON with Content-Type: application/json, not {content_type}")
    if not body.strip():
        raise InvalidRequest("the request needs a JSON object body", "InvalidJson")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidRequest(f"the body is not valid JSON: {error}", "InvalidJson") from None
    except RecursionError:
        raise InvalidRequest("the body's JSON is nested too deeply", "InvalidJson") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object", "InvalidJson")
    return data


def bearer_token(req: func.HttpRequest) -> str:
    header = req.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send the key as 'Authorization: Bearer <key>'")
    return token.strip()


def base_url() -> str:
    """The app's public base URL, from its settings (never from the request's Host header)."""
    configured = get_settings().public_base_url
    if not configured:
        raise RuntimeError("the app's public address is unknown: set PUBLIC_BASE_URL (or WEBSITE_HOSTNAME)")
    return configured
