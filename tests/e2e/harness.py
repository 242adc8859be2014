"""Running the local host over a real Azurite for end-to-end tests, and calling it over HTTP."""
from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from cryptography.fernet import Fernet
from urllib3.util.retry import Retry

from devhost.azurite import free_port, wait_for_port

# Seals customers' secrets in the hosts this process starts, unless the environment has a key.
SEALING_KEY = Fernet.generate_key().decode()

ROOT = Path(__file__).resolve().parents[2]


class HostProcess:
    """`python -m devhost` for one app folder, on a free loopback port."""

    def __init__(self, app: Path, connection_string: str | None, instances: int = 1, extra_env: dict | None = None,
                 log_path: Path | None = None, port: int | None = None, keys: tuple[str, str] | None = None,
                 operator_key: str | None = None):
        self.port = port or free_port()
        self.master_key, self.function_key = keys or (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.operator_key = operator_key or secrets.token_urlsafe(32)  # the app's own (shared.operators)
        HOST_KEYS.update((self.master_key, self.function_key, self.operator_key))
        HOST_PORTS.add(self.port)
        # No connection string: the storage connection is identity-based, given in extra_env.
        env = dict(os.environ, AzureWebJobsStorage=connection_string or "", DEVHOST_MASTER_KEY=self.master_key,
                   SECRETS_ENCRYPTION_KEYS=os.environ.get("SECRETS_ENCRYPTION_KEYS") or SEALING_KEY,
                   DEVHOST_FUNCTION_KEY=self.function_key, OPERATOR_KEYS=f"tests={self.operator_key}",
                   PYTHONUNBUFFERED="1", **(extra_env or {}))
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devhost", "--app", str(app), "--port", str(self.port),
             "--instances", str(instances), *(["--join"] if port else [])],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._log, start_new_session=True)
        self.instance_pids = self._read_pids()

    def _read_pids(self) -> list[int]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode()
            if not line and self.process.poll() is not None:
                raise RuntimeError(f"devhost exited with {self.process.returncode}")
            if "listening on" in line:
                return [int(p) for p in line.rsplit("pids", 1)[1].split()]
        raise RuntimeError("devhost did not start in time")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()


# Every response received this session (through any `requests` session: the Api client,
# raw calls, the fuzzer), every secret a response issued, and every host key: the check at
# the session's end proves no secret shows up anywhere but where it was issued.
RESPONSES: list[str] = []
ISSUED: dict[str, int] = {}
HOST_KEYS: set[str] = set()
HOST_PORTS: set[int] = set()
SAS_SIGNATURE = re.compile(r"sig=([A-Za-z0-9%+/=]{8,})")


def record_every_response() -> None:
    """Keep the text of every response a local host sends from now on, whoever asked (the
    Api client, raw calls, the fuzzer). Storage traffic is not the service's answer: the
    tests' own reads of tables and blobs are left out."""
    if getattr(requests.Session.send, "records", False):
        return
    original = requests.Session.send

    def send(self, request, **kwargs):
        response = original(self, request, **kwargs)
        if urlsplit(request.url).port in HOST_PORTS:
            RESPONSES.append(response.text)
        return response

    send.records = True
    requests.Session.send = send


def check_no_secret_leaked(logs_dir: Path) -> None:
    """Each issued secret appears only in the response that issued it; no issued secret, host
    key, storage account key or shared access signature appears in any log."""
    for secret, issuer in ISSUED.items():
        seen_in = [i for i, text in enumerate(RESPONSES) if secret in text]
        assert seen_in == [issuer], f"a secret issued by response {issuer} also appeared in {seen_in}"
    from devhost.azurite import ACCOUNT_KEY
    for text in RESPONSES:
        assert ACCOUNT_KEY not in text and "AccountKey=" not in text
    secrets = [*ISSUED, *HOST_KEYS, ACCOUNT_KEY]
    logs = sorted(logs_dir.rglob("*.log"))
    for log in logs:
        for number, line in enumerate(log.read_text(errors="replace").splitlines(), start=1):
            where = f"{log.name}:{number}"
            assert "AccountKey=" not in line and "SharedAccessSignature=" not in line, where
            assert not SAS_SIGNATURE.search(line), f"{where} holds a shared access signature"
            assert not any(secret in line for secret in secrets), f"{where} holds a secret"


def remember_secret(value: str, response: requests.Response) -> None:
    """Record that `response` (one of the last received) issued `value`."""
    if response.text not in RESPONSES[-50:]:
        RESPONSES.append(response.text)  # responses are not being recorded (outside the tests)
    ISSUED.setdefault(value, RESPONSES.index(response.text, max(0, len(RESPONSES) - 50)))


class Api:
    """A thin HTTP client for the Batch Pool routes."""

    def __init__(self, base: str, operator_key: str):
        self.base = base
        self.operator_key = operator_key
        self.session = requests.Session()
        # A connection held by a host instance that was killed drops; idempotent calls retry.
        retry = Retry(total=3, connect=3, read=3, status=0, backoff_factor=0.1,
                      allowed_methods=["GET", "PUT", "DELETE"], respect_retry_after_header=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))

    def call(self, method: str, path: str, body=None, key: str | None = None, admin: bool = False,
             raw: bytes | None = None, headers: dict | None = None) -> requests.Response:
        sent = dict(headers or {})
        if admin:
            sent["Authorization"] = f"Bearer {self.operator_key}"
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if raw is not None:
            sent.setdefault("Content-Type", "application/json")
            response = self.session.request(method, self.base + path, data=raw, headers=sent, timeout=60)
        else:
            response = self.session.request(method, self.base + path, json=body, headers=sent, timeout=60)
        for field in ("PrimaryKey", "SecondaryKey", "ApiKey", "Key", "WebhookSecret"):
            if response.status_code in (200, 201) and response.headers.get("Content-Type", "").startswith(
                    "application/json") and isinstance(data := _json_or_none(response), dict) and data.get(field):
                remember_secret(data[field], response)
        return response

    def put_account(self, account_id: str, subscription_id: str, max_pools: int = 5, max_vms: int = 8):
        return self.call("PUT", f"/api/accounts/{account_id}", {
            "SubscriptionId": subscription_id, "MaxPools": max_pools, "MaxVmsPerPool": max_vms}, admin=True)

    def put_service(self, subscription_id: str, service_id: str, kind: str = "New", plan: str | None = "plan-a",
                    scorer: str = "samples.census:score", **extra):
        body = {"Name": f"service {service_id}", "Kind": kind, "Scorer": scorer, **extra}
        if kind == "New":
            body["BillingPlanId"] = plan
        return self.call("PUT", f"/api/subscriptions/{subscription_id}/services/{service_id}", body, admin=True)


    def job(self, jobs_path: str, api_key: str, method: str = "GET", suffix: str = "", body=None,
            version: str = "2.0") -> requests.Response:
        query = f"?api-version={version}" if version else ""
        return self.call(method, f"{jobs_path}{suffix}{query}", body, key=api_key)

    def run_job(self, jobs_path: str, api_key: str, body: dict) -> tuple[str, dict]:
        """Submit and start a job; returns its id and the status the start answered."""
        submitted = self.job(jobs_path, api_key, "POST", body=body)
        assert submitted.status_code == 200, submitted.text
        job_id = submitted.json()
        started = self.job(jobs_path, api_key, "POST", f"/{job_id}/start")
        assert started.status_code == 200, started.text
        return job_id, started.json()

    def wait_job(self, jobs_path: str, api_key: str, job_id: str, timeout: float = 60) -> dict:
        terminal = ("Finished", "Failed", "Cancelled")
        return wait_for(lambda: (s := self.job(jobs_path, api_key, suffix=f"/{job_id}").json())["StatusCode"]
                        in terminal and s, timeout=timeout)


class Blobs:
    """The test's view of the storage account jobs read and write."""

    def __init__(self, connection_string: str):
        from azure.storage.blob import BlobServiceClient
        self.connection_string = connection_string
        self.service = BlobServiceClient.from_connection_string(connection_string)

    def put(self, container: str, name: str, data: bytes) -> None:
        client = self.service.get_container_client(container)
        if not client.exists():
            client.create_container()
        client.upload_blob(name, data, overwrite=True)

    def get(self, container: str, name: str) -> bytes | None:
        blob = self.service.get_blob_client(container, name)
        return blob.download_blob().readall() if blob.exists() else None

    def location(self, path: str) -> dict:
        return {"ConnectionString": self.connection_string, "RelativeLocation": path, "BaseLocation": None,
                "SasBlobToken": None}

    def job_body(self, input_path: str, output_path: str, pool_id: str | None = None, **parameters) -> dict:
        body = {"Input": self.location(input_path), "Outputs": {"output1": self.location(output_path)},
                "GlobalParameters": {k: str(v) for k, v in parameters.items()}}
        if pool_id:
            body["AzureBatchPoolId"] = pool_id
        return body


class Listener:
    """A TCP port on 127.0.0.1 that accepts and counts every connection for as long as it is
    open: a request the service must never make shows up here."""

    def __init__(self):
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port = self._socket.getsockname()[1]
        self.connections = 0
        self._open = True
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while self._open:
            try:
                connection, _ = self._socket.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> int:
        """Stop listening; the number of connections made while it was open."""
        self._open = False
        self._thread.join()
        self._socket.close()
        return self.connections

    def __enter__(self) -> "Listener":
        return self

    def __exit__(self, *_) -> None:
        self.close()


def as_it_stands(job: dict) -> dict:
    """The job as it stands, without what two answers tell differently however little
    changed: each answer makes its own read tokens for the outputs, and an ended job's cost
    takes its share of the hour's idle time as the hour goes on, until it turns final once
    the hour is billed (which may happen between two reads). Its own seconds are fixed."""
    results = {name: {**shown, "SasBlobToken": None} for name, shown in (job["Results"] or {}).items()}
    cost = job.get("Cost")
    return {**job, "Results": results, "Cost": cost and {"ComputeSeconds": cost["ComputeSeconds"]}}


def costs_progress(earlier: dict, later: dict) -> bool:
    """A job's cost read twice: never final before and not after, never gone."""
    if earlier.get("Cost") is None:
        return True
    return later.get("Cost") is not None and earlier["Cost"]["Final"] <= later["Cost"]["Final"]


def _json_or_none(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


__all__ = ["HostProcess", "Api", "Blobs", "unique", "wait_for", "wait_for_port", "ROOT"]
