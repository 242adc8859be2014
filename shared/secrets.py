"""Keys the service issues: made at random, stored only as hashes, compared in constant time."""
from __future__ import annotations

import hashlib
import hmac
import secrets


def new_key() -> str:
    return secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # The keys carry 256 random bits, so a plain SHA-256 cannot be brute-forced back.
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def matches_any(presented: str | None, stored_hashes: list[str]) -> bool:
    """Compare against every stored hash, never stopping early, so timing tells nothing."""
    candidate = hash_key(presented or "")
    found = False
    for stored in stored_hashes:
        found |= hmac.compare_digest(candidate, stored or "")
    return found and bool(presented)
