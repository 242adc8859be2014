"""Signed push events: the signature a receiver checks, as pure functions.

Each delivery carries `X-BatchPool-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
HMAC-SHA256, keyed with the web service's webhook secret, of `<t>.` followed by the exact
bytes of the body. A receiver recomputes it, compares in constant time, and refuses a
timestamp too far from its own clock (a replay).
"""
from __future__ import annotations

import hashlib
import hmac

HEADER = "X-BatchPool-Signature"
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """Whether a delivery's signature header is this secret's over this body, and fresh."""
    fields = dict(part.split("=", 1) for part in (header or "").split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance or "v1" not in fields:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={fields['v1']}")
