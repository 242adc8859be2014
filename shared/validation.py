"""Checks on request input: pure functions that raise InvalidRequest with a message saying
what is wrong and how to fix it."""
from __future__ import annotations

import re

from shared.errors import InvalidRequest

ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ID_RULE = "1-64 letters, digits, '-' or '_', starting with a letter or digit"
# Azure's rule for blob container (and queue) names.
CONTAINER_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
CONTAINER_RULE = "3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def is_container_name(value) -> bool:
    return isinstance(value, str) and CONTAINER_PATTERN.fullmatch(value) is not None


def is_loopback(hostname: str | None) -> bool:
    """A host name (as `urlsplit` gives it: no brackets, no port) that is this machine."""
    return (hostname or "").lower() in LOOPBACK_HOSTS


def is_valid_id(value) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def require_id(value, what: str) -> str:
    if not is_valid_id(value):
        raise InvalidRequest(f"{what} must be {ID_RULE}", "InvalidId", what)
    return value


def only_fields(body: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}; this request takes "
                             f"{', '.join(allowed)} (names are case-sensitive)", "UnknownField", unknown[0])


def int_field(body: dict, name: str, low: int, high: int, required: bool = True, default=None):
    if name not in body or body[name] is None:
        if required:
            raise InvalidRequest(f"{name} is required: a whole number from {low} to {high}", "MissingField", name)
        return default
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be a whole number from {low} to {high}, got {value!r}", "InvalidValue", name)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low} to {high}, got {value}", "InvalidValue", name)
    return value


def str_field(body: dict, name: str, max_length: int = 256, required: bool = True, default=None,
              choices: tuple[str, ...] | None = None):
    if name not in body or body[name] is None:
        if required:
            raise InvalidRequest(f"{name} is required", "MissingField", name)
        return default
    value = body[name]
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{name} must be a non-empty string", "InvalidValue", name)
    if len(value) > max_length:
        raise InvalidRequest(f"{name} must be at most {max_length} characters", "InvalidValue", name)
    if choices is not None and value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}, got {value!r}", "InvalidValue", name)
    return value


MAX_BLOB_NAME = 1024
MAX_BLOB_SEGMENTS = 254


def blob_name_problem(name: str) -> str | None:
    """Why a blob name is refused, or None: Azure's limits (1,024 characters, 254 segments),
    and names that would not mean what they seem (a backslash, a control character, an
    empty, "." or ".." segment: Azure keeps them literally, a path reader does not)."""
    if not name:
        return "names no blob"
    if len(name) > MAX_BLOB_NAME:
        return f"is longer than {MAX_BLOB_NAME:,} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    if "\\" in name:
        return "holds a backslash (folders are separated by /)"
    segments = name.split("/")
    if len(segments) > MAX_BLOB_SEGMENTS:
        return f"has more than {MAX_BLOB_SEGMENTS} segments"
    if any(segment == "" for segment in segments):
        return "has an empty segment (//)"
    if any(segment in (".", "..") for segment in segments):
        return "has a '.' or '..' segment"
    return None


def url_text_problem(url: str) -> str | None:
    """Why a URL's text is not a plain absolute URL, or None: it must be printable ASCII
    with no spaces, control characters or backslashes (anything else is percent-encoded)."""
    for character in url:
        if ord(character) <= 32 or ord(character) >= 127:
            return "holds a space, a control character or a character that is not ASCII (percent-encode it)"
        if character == "\\":
            return "holds a backslash"
    return None


def subscription_key(subscription_id: str) -> str:
    """A subscription id as every key and comparison uses it. Subscription ids are GUIDs,
    which Azure compares without regard to case: the same subscription in upper case is the
    same subscription."""
    return subscription_id.lower()


NEAR_MISS_DISTANCE = 2


def edit_distance(a: str, b: str, most: int = NEAR_MISS_DISTANCE) -> int:
    """Levenshtein distance, counted only up to `most` + 1 (enough to tell a near miss)."""
    if abs(len(a) - len(b)) > most:
        return most + 1
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        if min(current) > most:
            return most + 1
        previous = current
    return previous[-1]


def near_miss(name: str, known: tuple[str, ...]) -> str | None:
    """The known field an unknown name looks like a slip of (case aside, at most
    NEAR_MISS_DISTANCE edits away), or None."""
    lowered = name.lower()
    close = [(edit_distance(lowered, field.lower()), field) for field in known]
    best = min(close, default=(NEAR_MISS_DISTANCE + 1, None))
    return best[1] if 0 < best[0] <= NEAR_MISS_DISTANCE else None
