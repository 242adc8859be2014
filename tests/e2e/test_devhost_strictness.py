"""The local host as strict as Azure where a lenient host would hide failures: one shared
thread pool for sync invocations, async entry points on the worker's event loop,
functionTimeout with a worker restart, and a broken function disabled while the others run."""
import base64
import json
import os
import subprocess
import sys
import threading
import uuid

import pytest
import requests
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueServiceClient

from tests.e2e.harness import ROOT, HostProcess, wait_for

STRICT_APP = ROOT / "tests" / "fixtures" / "strict_app"
THREADS = 2


@pytest.fixture(scope="module")
def strict_host(azurite, logs_dir):
    host = HostProcess(STRICT_APP, azurite.connection_string, log_path=logs_dir / "strict-host.log",
                       extra_env={"PYTHON_THREADPOOL_THREAD_COUNT": str(THREADS)})
    yield host
    host.stop()


def _get(host, path: str, timeout: float = 60) -> requests.Response:
    return requests.get(f"{host.url}/strict/{path}", timeout=timeout)


def _in_parallel(calls) -> list:
    results = [None] * len(calls)

    def run(index, call):
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    return results


def test_sync_invocations_of_every_trigger_share_one_pool(strict_host, azurite):
    answers = _in_parallel([lambda: _get(strict_host, "slow?seconds=0.5") for _ in range(3 * THREADS)])
    assert all(a.status_code == 200 for a in answers)
    bodies = [a.json() for a in answers]
    assert max(b["most_at_once"] for b in bodies) == THREADS
    assert {b["thread"] for b in bodies} <= {f"worker_{i}" for i in range(THREADS)}
    queues = QueueServiceClient.from_connection_string(azurite.connection_string)
    marker = str(uuid.uuid4())
    queues.get_queue_client("echo").send_message(base64.b64encode(marker.encode()).decode())
    echoed = queues.get_queue_client("echoed")
    try:
        echoed.create_queue()
    except ResourceExistsError:
        pass

    def find():
        for message in echoed.receive_messages(max_messages=32):
            item = json.loads(base64.b64decode(message.content))
            echoed.delete_message(message)
            if item["id"] == marker:
                return item
        return None

    assert wait_for(find, timeout=30)["thread"] in {f"worker_{i}" for i in range(THREADS)}


def test_an_async_entry_point_runs_on_the_event_loop_while_the_pool_is_busy(strict_host):
    holders = [threading.Thread(target=_get, args=(strict_host, "slow?seconds=6")) for _ in range(THREADS)]
    for holder in holders:
        holder.start()
    answer = wait_for(lambda: (a := _get(strict_host, "async").json())["sync_running"] == THREADS and a, timeout=10)
    assert answer["thread"] == "worker-loop"
    for holder in holders:
        holder.join(30)


def test_function_timeout_fails_the_invocation_and_restarts_the_worker(strict_host):
    before = _get(strict_host, "async").json()["pid"]
    answers = {}
    too_long = threading.Thread(target=lambda: answers.setdefault("too_long", _get(strict_host, "slow?seconds=30")))
    too_long.start()
    wait_for(lambda: _get(strict_host, "async").json()["sync_running"] == 1, timeout=10)
    # Started later, so its own timeout is later: the first one's restart is what ends it.
    answers["bystander"] = _get(strict_host, "slow?seconds=30")
    too_long.join(60)
    assert answers["too_long"].status_code == 500 and answers["bystander"].status_code == 500
    after = wait_for(lambda: _pid_or_none(strict_host), timeout=60)
    assert after != before
    log = strict_host.log_path.read_text()
    assert log.count("Timeout value of 00:00:08 exceeded by function 'Slow'") == 1
    assert _get(strict_host, "slow?seconds=0").status_code == 200


def _pid_or_none(host):
    try:
        return _get(host, "async", timeout=5).json()["pid"]
    except (requests.RequestException, ValueError):
        return None


def test_a_function_that_cannot_be_honoured_is_disabled_and_the_others_run(strict_host):
    log = strict_host.log_path.read_text()
    assert "function disabled function=Broken" in log and "STRICT_APP_UNSET_QUEUE" in log
    assert _get(strict_host, "async").status_code == 200


def test_a_busy_port_is_refused_with_what_to_do(strict_host):
    """A second host on a port already served (a second `make run`) does not quietly share it."""
    second = subprocess.run([sys.executable, "-m", "devhost", "--app", str(STRICT_APP), "--port",
                             str(strict_host.port)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert second.returncode == 2, second.stderr
    assert f"port {strict_host.port} is already in use" in second.stderr and "PORT=" in second.stderr
    assert _get(strict_host, "async").status_code == 200  # the first host is untouched
