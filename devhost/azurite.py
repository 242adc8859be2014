"""Starting Azurite, the local Azure Storage emulator, for the host and the tests.

Azurite is installed from the npm registry into the project (node_modules) and always
started with --disableTelemetry, so it never tries to reach the internet.
"""
from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The emulator's published development account; its key is public by design.
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports: each probe stays bound until all are picked, since a port
    just released may be handed out again at once."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def free_port() -> int:
    return free_ports(1)[0]


def wait_for_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


@dataclass
class Azurite:
    process: subprocess.Popen
    blob_port: int
    queue_port: int
    table_port: int
    scheme: str = "http"

    def service_url(self, service: str) -> str:
        port = {"blob": self.blob_port, "queue": self.queue_port, "table": self.table_port}[service]
        return f"{self.scheme}://127.0.0.1:{port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol={self.scheme};AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
                f"BlobEndpoint={self.service_url('blob')};QueueEndpoint={self.service_url('queue')};"
                f"TableEndpoint={self.service_url('table')};")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_azurite(project_root: Path, data_dir: Path | None, ports: tuple[int, int, int] | None = None,
                  log_file: Path | None = None, tls: tuple[Path, Path] | None = None,
                  oauth: bool = False) -> Azurite:
    """Start Azurite on 127.0.0.1; `data_dir` None keeps everything in memory. With `tls`
    (certificate and key PEM files) it serves HTTPS; `oauth` (which needs HTTPS) also accepts
    bearer tokens, checking their claims, not their signature."""
    executable = project_root / "node_modules" / ".bin" / "azurite"
    if not executable.exists():
        raise RuntimeError(f"{executable} is missing: run `npm install` in {project_root} (the Makefile does)")
    blob, queue, table = ports or free_ports(3)
    command = [str(executable), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose",
               "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
               "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table)]
    if tls is not None:
        command += ["--cert", str(tls[0]), "--key", str(tls[1])]
    if oauth:
        command += ["--oauth", "basic"]
    if data_dir is None:
        command.append("--inMemoryPersistence")
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        command += ["--location", str(data_dir)]
    output = open(log_file, "ab") if log_file else subprocess.DEVNULL
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=project_root)
    azurite = Azurite(process, blob, queue, table, "https" if tls else "http")
    if not all(wait_for_port(p, 30) for p in (blob, queue, table)):
        azurite.stop()
        raise RuntimeError(f"Azurite did not start listening on ports {blob}, {queue}, {table}")
    return azurite
