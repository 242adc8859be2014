"""App settings, read once from the environment (Azure app settings or local.settings.json).

Every setting is documented in the README's Settings table.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared import allowlist
from shared.validation import is_container_name, is_loopback


def _allowlist_setting(name: str, default: str) -> tuple[allowlist.Entry, ...]:
    try:
        return allowlist.parse(os.environ.get(name, default))
    except ValueError as error:
        raise RuntimeError(f"setting {name}: {error}") from None


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


HOST_CONNECTION = "AzureWebJobsStorage"
DATA_CONNECTION = "BATCHPOOL_STORAGE"


@dataclass(frozen=True)
class Settings:
    data_connection: str
    table_prefix: str
    vm_provisioning_seconds: int
    max_request_bytes: int
    public_base_url: str | None
    classic_max_concurrent_jobs: int
    blob_host_allowlist: tuple[allowlist.Entry, ...]
    run_stale_seconds: int
    scoring_chunk_rows: int
    result_sas_hours: int
    run_slice_seconds: int
    scorer_packages: tuple[str, ...]
    output_container: str
    output_retention_minutes: int
    job_retention_days: int = 7
    notification_host_allowlist: tuple[allowlist.Entry, ...] = ()
    webhook_backoff_seconds: int = 5
    webhook_max_attempts: int = 10
    webhook_timeout_seconds: int = 10

    def host_account(self):
        """The host's storage account (a `StorageAccount`): the app's queues, and outputs the
        app keeps itself."""
        return _resolved(HOST_CONNECTION)

    def storage_account(self):
        """Where the app's tables live: BATCHPOOL_STORAGE, or else the host's account."""
        return _resolved(self.data_connection)


@functools.lru_cache(maxsize=4)
def _resolved(connection: str):
    from shared.storage.connections import resolve
    return resolve(connection)


_PACKAGE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _packages(raw: str) -> tuple[str, ...]:
    packages = tuple(p.strip() for p in raw.split(",") if p.strip())
    if not packages or not all(_PACKAGE.fullmatch(p) for p in packages):
        raise RuntimeError(f"setting SCORER_PACKAGES must be a comma-separated list of Python packages, got {raw!r}")
    return packages


def _container(name: str) -> str:
    if not is_container_name(name):
        raise RuntimeError(f"setting OUTPUT_CONTAINER must be a blob container name (3-63 lower-case letters, digits "
                           f"and single hyphens), got {name!r}")
    return name


def _public_base_url(configured: str | None, site_host: str | None) -> str | None:
    """PUBLIC_BASE_URL, else the site's own host name (WEBSITE_HOSTNAME, which Azure sets to
    `<app>.azurewebsites.net` and a local host to its listening address): https, or http on a
    loopback address."""
    if configured and configured.strip():
        base = configured.strip().rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise RuntimeError(f"setting PUBLIC_BASE_URL must be an http(s) URL such as https://pools.example.com, "
                               f"got {configured!r}")
        return base
    if site_host and site_host.strip():
        host = site_host.strip().lower()
        scheme = "http" if is_loopback(urlsplit(f"//{host}").hostname) else "https"
        return f"{scheme}://{host}"
    return None


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    _resolved.cache_clear()
    from shared.storage.connections import is_set
    if not is_set(HOST_CONNECTION):
        raise RuntimeError(f"{HOST_CONNECTION} is not set (neither a connection string nor {HOST_CONNECTION}__"
                           "accountName or service URIs): the app's queues live in the host's storage account")
    prefix = os.environ.get("BATCHPOOL_TABLE_PREFIX", "batchpool")
    if not prefix.isalnum() or not prefix[0].isalpha() or len(prefix) > 40:
        raise RuntimeError("setting BATCHPOOL_TABLE_PREFIX must be letters and digits, starting with a letter")
    base = _public_base_url(os.environ.get("PUBLIC_BASE_URL"), os.environ.get("WEBSITE_HOSTNAME"))
    return Settings(
        data_connection=DATA_CONNECTION if is_set(DATA_CONNECTION) else HOST_CONNECTION,
        table_prefix=prefix,
        vm_provisioning_seconds=_int_setting("VM_PROVISIONING_SECONDS", 10, 0, 3600),
        max_request_bytes=_int_setting("MAX_REQUEST_BYTES", 65536, 1024, 10 * 1024 * 1024),
        public_base_url=base,
        classic_max_concurrent_jobs=_int_setting("CLASSIC_MAX_CONCURRENT_JOBS", 4, 1, 96),
        blob_host_allowlist=_allowlist_setting("BLOB_HOST_ALLOWLIST", "*.blob.core.windows.net"),
        run_stale_seconds=_int_setting("RUN_STALE_SECONDS", 60, 2, 3600),
        scoring_chunk_rows=_int_setting("SCORING_CHUNK_ROWS", 50000, 100, 1000000),
        result_sas_hours=_int_setting("RESULT_SAS_HOURS", 24, 1, 168),
        run_slice_seconds=_int_setting("RUN_SLICE_SECONDS", 120, 1, 3600),
        scorer_packages=_packages(os.environ.get("SCORER_PACKAGES", "samples")),
        output_container=_container(os.environ.get("OUTPUT_CONTAINER") or "batchpool-outputs"),
        output_retention_minutes=_int_setting("OUTPUT_RETENTION_MINUTES", 7 * 24 * 60, 1, 366 * 24 * 60),
        job_retention_days=_int_setting("JOB_RETENTION_DAYS", 7, 1, 366),
        notification_host_allowlist=_allowlist_setting("NOTIFICATION_HOST_ALLOWLIST", ""),
        webhook_backoff_seconds=_int_setting("WEBHOOK_BACKOFF_SECONDS", 5, 1, 3600),
        webhook_max_attempts=_int_setting("WEBHOOK_MAX_ATTEMPTS", 10, 1, 50),
        webhook_timeout_seconds=_int_setting("WEBHOOK_TIMEOUT_SECONDS", 10, 1, 60),
    )
