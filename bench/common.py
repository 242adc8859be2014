"""What the benchmarks share: a private Azurite and host, tenants, and percentile figures."""
from __future__ import annotations

import os
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devhost.azurite import ACCOUNT, ACCOUNT_KEY, start_azurite  # noqa: E402,F401
from tests.e2e.harness import SEALING_KEY, Api, Blobs, HostProcess, wait_for  # noqa: E402,F401
from tests.e2e.storage_proxy import StorageProxy, proxied_connection_string  # noqa: E402

APP_AGENT = "batchpool"  # how the app's storage clients introduce themselves
# The app's code in this process seals customers' secrets as the hosts it starts do.
os.environ.setdefault("SECRETS_ENCRYPTION_KEYS", SEALING_KEY)


def use_storage(connection_string: str, table_prefix: str) -> None:
    """Point the app's code in this process at a storage account (its settings and clients are
    read once per process, so the caches are cleared)."""
    os.environ.update({"AzureWebJobsStorage": connection_string, "BATCHPOOL_TABLE_PREFIX": table_prefix})
    from shared import settings, storage
    settings.get_settings.cache_clear()
    storage.get_store.cache_clear()
    storage.get_queues.cache_clear()


class RequestCounter:
    """Counts every request the app's SDK clients in this process send (through their shared
    transport, retries included) while it is in use: in all, and by (service, method), the
    service told by the port it goes to (`ports`: port -> name, e.g. Azurite's)."""

    def __init__(self, ports: dict[int, str] | None = None):
        from shared.storage import clients
        self.count = 0
        self.by_kind: dict[tuple[str, str], int] = {}
        self._ports = ports or {}
        self._lock = threading.Lock()
        self._transport = clients.shared_transport()
        self._send = self._transport.send

    def __enter__(self):
        counter = self

        def counting_send(request, *args, **kwargs):
            kind = (counter._ports.get(urlsplit(request.url).port, "other"), request.method)
            with counter._lock:
                counter.count += 1
                counter.by_kind[kind] = counter.by_kind.get(kind, 0) + 1
            return counter._send(request, *args, **kwargs)

        self._transport.send = counting_send
        return self

    def __exit__(self, *_):
        self._transport.send = self._send

    def kinds(self) -> dict[str, int]:
        return {f"{service} {method}": count for (service, method), count in sorted(self.by_kind.items())}


def azurite_ports(azurite) -> dict[int, str]:
    return {azurite.blob_port: "blob", azurite.queue_port: "queue", azurite.table_port: "table"}


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


def probe_stores(connection_string: str):
    """The app's table store and queue sender (its SDK clients), on a probe table of their own."""
    from shared.storage.connections import parse_connection_string
    from shared.storage.queues import QueueSender
    from shared.storage.tables import TableStore
    account = parse_connection_string(connection_string)
    return TableStore(account, "benchprobe"), QueueSender(account)


def table_op_latency(connection_string: str, samples: int = 300) -> dict:
    """Round trip of one Azurite table read (point get of a small row) through the app's
    table store (the SDK's TableClient), in ms, and the CPU it costs this process."""
    store, _ = probe_stores(connection_string)
    store.upsert("Probe", {"PartitionKey": "p", "RowKey": "r", "Value": 1})
    cpu = time.process_time()
    figures = median_and_p99(lambda: store.get("Probe", "p", "r"), samples)
    return {**figures, "cpu_ms": round((time.process_time() - cpu) * 1000 / samples, 3)}


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds the processes have used (Linux /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def longest_sequential_chain(events: list[tuple[float, float]]) -> int:
    """How many of these requests (start, end) ran one after another at the most: the
    sequential round trips of the path they served."""
    chain, free_from = 0, float("-inf")
    for start, end in sorted(events, key=lambda e: e[1]):
        if start >= free_from:
            chain, free_from = chain + 1, end
    return chain


class Stack:
    """Azurite in memory plus the app on the local host, on free loopback ports."""

    def __init__(self, instances: int, env: dict | None = None, log_dir: Path | None = None, counted: bool = False):
        """`counted`: the app reaches Azurite through counting proxies (one hop more: not for
        timing figures)."""
        log_dir = log_dir or ROOT / "bench" / "results"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.azurite = start_azurite(ROOT, None, log_file=log_dir / "azurite.log")
        self.proxies = {}
        connection = self.azurite.connection_string
        if counted:
            self.proxies = {"blob": StorageProxy(self.azurite.blob_port, "blob"),
                            "queue": StorageProxy(self.azurite.queue_port, "queue"),
                            "table": StorageProxy(self.azurite.table_port, "table")}
            connection = proxied_connection_string(ACCOUNT, ACCOUNT_KEY, self.proxies)
        settings = {"VM_PROVISIONING_SECONDS": "1", "BATCHPOOL_TABLE_PREFIX": "bench", "RUN_STALE_SECONDS": "30",
                    "BILLING_SCHEDULE": "0 */1 * * * *", "BLOB_HOST_ALLOWLIST": "127.0.0.1",
                    **(env or {})}
        self.host = HostProcess(ROOT, connection, instances=instances,
                                log_path=log_dir / f"host-{instances}.log", extra_env=settings)
        self.started = time.perf_counter()  # the host listens from here; its timers start with it
        self.api = Api(self.host.url, self.host.operator_key)
        self.blobs = Blobs(connection)
        self.table_prefix = settings["BATCHPOOL_TABLE_PREFIX"]
        self._jobs_table = None

    def past_first_sweep(self) -> None:
        """Wait until the Sweeper has run once since the host started (it runs every 10 s): the
        first sweep in an instance also runs retention (`shared.retention`), which an idle
        window must not take for the timers' steady cost."""
        time.sleep(max(0.0, self.started + 11 - time.perf_counter()))

    def app_requests(self) -> dict[tuple[str, str], int]:
        """Requests the app's own clients sent so far, by (service, method)."""
        return {(service, method): count for service, proxy in self.proxies.items()
                for (method, agent), count in proxy.counts.items() if agent == APP_AGENT}

    def app_events(self, since: float, until: float) -> list[tuple[float, float]]:
        return [(start, end) for proxy in self.proxies.values() for start, end, _, agent, _ in list(proxy.events)
                if agent == APP_AGENT and since <= start and end <= until]

    def job_status(self, tenant: dict, job_id: str) -> str:
        """A job's status read straight from the app's table, not through the app (so that
        waiting for it adds no app requests): its one row, `job|<id>` in the partition its id
        names (see `shared.layout`). A waiting job reads "Waiting"."""
        from azure.data.tables import TableClient

        from shared import layout
        if self._jobs_table is None:
            self._jobs_table = TableClient.from_connection_string(self.azurite.connection_string,
                                                                f"{self.table_prefix}Pools")
        partition = layout.job_partition(tenant["subscription"], job_id)
        if partition is None:
            raise ValueError(f"{job_id!r} is no job id of the app's")
        return self._jobs_table.get_entity(partition, layout.job_key(job_id))["Status"]

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
        for proxy in self.proxies.values():
            proxy.stop()
        self.azurite.stop()
