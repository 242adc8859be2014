"""Customers' secrets at rest: the connection strings (with their account keys) and SAS
tokens a job brings are kept in its row beside the request (see `shared.bes`), sealed with
authenticated encryption (Fernet: AES-128-CBC and HMAC-SHA256, from `cryptography`), under
keys the app gets from its SECRETS_ENCRYPTION_KEYS setting: comma-separated, the first seals,
every one opens, so a key is rotated by putting a new one first and removing the old once the
jobs it sealed are gone (JOB_RETENTION_DAYS). In Azure the setting is a Key Vault reference;
`make run` writes one into local.settings.json."""
from __future__ import annotations

import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

SETTING = "SECRETS_ENCRYPTION_KEYS"
PREFIX = "sealed:"


class SealingError(RuntimeError):
    """The keys are missing or wrong, or a sealed value does not open with any of them."""


def new_key() -> str:
    return Fernet.generate_key().decode()


@lru_cache(maxsize=4)
def _keys(configured: str) -> MultiFernet:
    keys = [key.strip() for key in configured.split(",") if key.strip()]
    if not keys:
        raise SealingError(f"setting {SETTING} is not set: give it a key (make run writes one into "
                           "local.settings.json; in Azure, a Key Vault reference)")
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except ValueError:
        raise SealingError(f"setting {SETTING} holds a key that is not 32 url-safe base64-encoded bytes") from None


def _current() -> MultiFernet:
    return _keys(os.environ.get(SETTING, ""))


def seal(value: str | None) -> str | None:
    """The value sealed under the first key (None and "" stay as they are)."""
    if not value:
        return value
    return PREFIX + _current().encrypt(value.encode()).decode()


def unseal(value: str | None) -> str | None:
    """A sealed value opened (a value that was never sealed is returned as it is)."""
    if not value or not value.startswith(PREFIX):
        return value
    try:
        return _current().decrypt(value[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise SealingError(f"a stored secret does not open with any key of {SETTING} (was the key that sealed "
                           "it removed?)") from None
