"""App settings, read once from the environment (Azure app settings or local.settings.json).

Every setting is documented in the README's Settings table.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass


def _int_setting(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RuntimeError(f"setting {name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise RuntimeError(f"setting {name} must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class Settings:
    storage_connection_string: str
    table_prefix: str
    vm_provisioning_seconds: int
    max_request_bytes: int
    public_base_url: str | None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    connection = os.environ.get("BATCHPOOL_STORAGE") or os.environ.get("AzureWebJobsStorage")
    if not connection:
        raise RuntimeError("neither BATCHPOOL_STORAGE nor AzureWebJobsStorage is set")
    prefix = os.environ.get("BATCHPOOL_TABLE_PREFIX", "batchpool")
    if not prefix.isalnum() or not prefix[0].isalpha() or len(prefix) > 40:
        raise RuntimeError("setting BATCHPOOL_TABLE_PREFIX must be letters and digits, starting with a letter")
    base = (os.environ.get("PUBLIC_BASE_URL") or "").rstrip("/") or None
    return Settings(
        storage_connection_string=connection,
        table_prefix=prefix,
        vm_provisioning_seconds=_int_setting("VM_PROVISIONING_SECONDS", 10, 0, 3600),
        max_request_bytes=_int_setting("MAX_REQUEST_BYTES", 65536, 1024, 10 * 1024 * 1024),
        public_base_url=base,
    )
