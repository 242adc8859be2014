"""What the benchmarks share: a private Azurite and host, tenants, and percentile figures."""
from __future__ import annotations

import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from azure.data.tables import TableServiceClient  # noqa: E402

from devhost.azurite import start_azurite  # noqa: E402,F401
from tests.e2e.harness import Api, Blobs, HostProcess, wait_for  # noqa: E402,F401


def use_storage(connection_string: str, table_prefix: str) -> None:
    """Point the app's code in this process at a storage account (its settings and clients are
    read once per process, so the caches are cleared)."""
    os.environ.update({"AzureWebJobsStorage": connection_string, "BATCHPOOL_TABLE_PREFIX": table_prefix})
    from shared import settings, storage
    settings.get_settings.cache_clear()
    storage.get_store.cache_clear()
    storage.own_blob_endpoint.cache_clear()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median_and_p99(call, samples: int) -> dict:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(statistics.median(timings), 3), "p99_ms": round(percentile(timings, 0.99), 3)}


def probe_store(connection_string: str):
    """The app's storage client on a probe table of its own."""
    from shared.storage import Store
    return Store(connection_string, "benchprobe", connection_string)


def table_op_latency(connection_string: str, samples: int = 300) -> dict:
    """Round trip of one Azurite table read (point get of a small row), in ms: through the
    app's own storage client (the reference), and through the Azure SDK for comparison."""
    store = probe_store(connection_string)
    store.upsert("Probe", {"PartitionKey": "p", "RowKey": "r", "Value": 1})
    figures = median_and_p99(lambda: store.get("Probe", "p", "r"), samples)
    client = TableServiceClient.from_connection_string(connection_string).get_table_client("benchprobeProbe")
    sdk = median_and_p99(lambda: client.get_entity("p", "r"), samples)
    return {**figures, "sdk_p50_ms": sdk["p50_ms"], "sdk_p99_ms": sdk["p99_ms"]}


class Stack:
    """Azurite in memory plus the app on the local host, on free loopback ports."""

    def __init__(self, instances: int, env: dict | None = None, log_dir: Path | None = None):
        log_dir = log_dir or ROOT / "bench" / "results"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.azurite = start_azurite(ROOT, None, log_file=log_dir / "azurite.log")
        settings = {"VM_PROVISIONING_SECONDS": "1", "BATCHPOOL_TABLE_PREFIX": "bench", "RUN_STALE_SECONDS": "30",
                    "BILLING_SCHEDULE": "0 */1 * * * *",
                    **(env or {})}
        self.host = HostProcess(ROOT, self.azurite.connection_string, instances=instances,
                                log_path=log_dir / f"host-{instances}.log", extra_env=settings)
        self.api = Api(self.host.url, self.host.master_key)
        self.blobs = Blobs(self.azurite.connection_string)

    def tenant(self, vm_count: int, max_pools: int = 5) -> dict:
        tag = secrets.token_hex(3)
        account = self.api.put_account(f"bench-{tag}", f"sub-{tag}", max_pools, 96).json()
        service = self.api.put_service(f"sub-{tag}", "svc").json()
        pools = f"/api/accounts/bench-{tag}/pools"
        if vm_count:
            self.api.call("POST", pools, {"PoolId": "p", "VmCount": vm_count,
                                          "ServiceSwaggerUrl": service["SwaggerUrl"]}, key=account["PrimaryKey"])
            wait_for(lambda: self.api.call("GET", f"{pools}/p", key=account["PrimaryKey"]).json()
                     ["VmCounts"]["Idle"] == vm_count, timeout=30)
        return {"key": account["PrimaryKey"], "pools": pools, "api_key": service["ApiKey"],
                "jobs": f"/api/subscriptions/sub-{tag}/services/svc/jobs", "subscription": f"sub-{tag}"}

    def stop(self) -> None:
        self.host.stop()
        self.azurite.stop()
