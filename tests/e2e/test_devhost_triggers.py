"""The local host's triggers against a real Azurite, through a small fixture app."""
import base64
import datetime as dt
import json
import os
import signal
import uuid

import pytest
import requests
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import QueueServiceClient

from tests.e2e.harness import ROOT, HostProcess, wait_for

FIXTURE_APP = ROOT / "tests" / "fixtures" / "trigger_app"
LEASE_SECONDS = 2


@pytest.fixture(scope="module")
def queues(azurite):
    return QueueServiceClient.from_connection_string(azurite.connection_string)


@pytest.fixture(scope="module")
def fixture_host(azurite, logs_dir):
    host = HostProcess(FIXTURE_APP, azurite.connection_string, instances=2, log_path=logs_dir / "fixture-host.log",
                       extra_env={"DEVHOST_QUEUE_LEASE_SECONDS": str(LEASE_SECONDS)})
    yield host
    host.stop()


def send(queues, queue: str, payload, encode: bool = True) -> None:
    text = json.dumps(payload) if not isinstance(payload, str) else payload
    queues.get_queue_client(queue).send_message(base64.b64encode(text.encode()).decode() if encode else text)


def drain(queues, queue: str) -> list[dict]:
    """Take every message now visible on the queue (none if the app has not made it yet)."""
    client = queues.get_queue_client(queue)
    found = []
    try:
        for message in client.receive_messages(max_messages=32, messages_per_page=32):
            found.append(message.content)
            client.delete_message(message)
    except ResourceNotFoundError:
        pass  # the queue does not exist yet
    return found


def queue_length(queues, queue: str) -> int:
    """Messages on the queue, visible or not (one being processed still counts)."""
    return queues.get_queue_client(queue).get_queue_properties().approximate_message_count


def decoded(contents: list[str]) -> list[dict]:
    return [json.loads(base64.b64decode(c)) for c in contents]


class Collector:
    """Accumulates what the fixture app wrote to a queue, across polls."""

    def __init__(self, queues, queue: str):
        self.queues, self.queue, self.items = queues, queue, []

    def poll(self) -> list[dict]:
        self.items += decoded(drain(self.queues, self.queue))
        return self.items

    def with_id(self, item_id: str) -> list[dict]:
        return [i for i in self.poll() if i.get("id") == item_id]


@pytest.fixture(scope="module")
def done(fixture_host, queues):
    return Collector(queues, "done")


def test_a_message_runs_once_and_is_deleted(fixture_host, queues, done):
    item = str(uuid.uuid4())
    send(queues, "work", {"id": item})
    results = wait_for(lambda: done.with_id(item), timeout=20)
    assert len(results) == 1 and results[0]["dequeue_count"] == 1
    assert results[0]["pid"] in fixture_host.instance_pids
    # Deleted once it ran: it can never be delivered again.
    wait_for(lambda: queue_length(queues, "work") == 0, timeout=20)
    assert len(done.with_id(item)) == 1


def test_a_failing_message_is_retried_then_moved_to_poison(fixture_host, queues, done):
    item = str(uuid.uuid4())
    send(queues, "work", {"id": item, "fail": True})
    poisoned = wait_for(lambda: [m for m in decoded(drain(queues, "work-poison")) if m["id"] == item], timeout=30)
    assert poisoned == [{"id": item, "fail": True}]  # the original message, as sent
    assert done.with_id(item) == []


def test_a_message_that_is_not_base64_goes_to_poison(fixture_host, queues):
    send(queues, "work", "plain text, not base64", encode=False)
    assert wait_for(lambda: "plain text, not base64" in drain(queues, "work-poison"), timeout=30)


def test_visibility_is_renewed_while_a_long_function_runs(fixture_host, queues, done):
    item = str(uuid.uuid4())
    send(queues, "work", {"id": item, "sleep": LEASE_SECONDS * 3})
    # Without renewal the message would reappear after 2 s and a second run would take it, so
    # the first run's delete would fail (its receipt gone) and the queue would empty only when
    # the second run ended, leaving two results. With renewal: one run, then an empty queue.
    wait_for(lambda: done.with_id(item) and queue_length(queues, "work") == 0, timeout=40)
    results = done.with_id(item)
    assert len(results) == 1 and results[0]["dequeue_count"] == 1


def test_a_batch_is_shared_by_both_instances(fixture_host, queues, done):
    items = [str(uuid.uuid4()) for _ in range(24)]
    for item in items:
        send(queues, "work", {"id": item, "sleep": 0.3})
    wait_for(lambda: all(done.with_id(i) for i in items), timeout=60)
    assert all(len(done.with_id(i)) == 1 for i in items)
    ran_in = {done.with_id(i)[0]["pid"] for i in items}
    assert ran_in == set(fixture_host.instance_pids), ran_in


def test_timer_fires_on_one_instance_at_a_time(fixture_host, queues):
    ticks = Collector(queues, "ticks")
    ticks.poll()
    fired = wait_for(lambda: len(ticks.poll()) >= 4 and ticks.items, timeout=40)
    seconds = [dt.datetime.fromisoformat(t["at"]).replace(microsecond=0) for t in fired]
    assert len(seconds) == len(set(seconds)), "two instances fired the same occurrence"
    assert len({t["pid"] for t in fired}) == 1


def test_timer_moves_to_another_instance_when_its_holder_dies(fixture_host, queues):
    ticks = Collector(queues, "ticks")
    ticks.poll()
    holder = wait_for(lambda: ticks.poll() and ticks.items[-1]["pid"], timeout=20)
    os.kill(holder, signal.SIGKILL)
    # The lock is a 15 s blob lease: the survivor takes it once the lease runs out.
    survivor = wait_for(lambda: [t for t in ticks.poll() if t["pid"] != holder], timeout=40)
    assert survivor[0]["pid"] in fixture_host.instance_pids


def test_http_routes_constraints_and_keys(fixture_host):
    base = fixture_host.url + "/fixture"
    function_key = {"x-functions-key": fixture_host.function_key}
    assert requests.get(f"{base}/items/7", timeout=10).status_code == 401
    response = requests.get(f"{base}/items/7/red?x=1", headers=function_key, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"route": {"id": "7", "label": "red"}, "query": {"x": "1"}}
    assert requests.get(f"{base}/items/7?code={fixture_host.function_key}", timeout=10).status_code == 200
    assert requests.get(f"{base}/items/seven", headers=function_key, timeout=10).status_code == 404
    assert requests.post(f"{base}/items/7", headers=function_key, timeout=10).status_code == 404
    assert requests.get(f"{fixture_host.url}/api/items/7", headers=function_key, timeout=10).status_code == 404
    admin = f"{base}/AdminOnly"
    assert requests.post(admin, headers=function_key, timeout=10).status_code == 401
    master = {"x-functions-key": fixture_host.master_key}
    assert requests.post(admin, headers=master, timeout=10).text == "admin ok"
    failed = requests.post(admin, headers=master, data=b"boom", timeout=10)
    assert failed.status_code == 500 and failed.content == b""
