"""SPEC §4 rules 1-3 under scale-out and faults: three host instances on their own Azurite."""
import base64
import json
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.queue import QueueServiceClient

from devhost.azurite import start_azurite
from shared import layout
from tests.e2e.conftest import APP_ENV, make_tenant
from tests.e2e.harness import ROOT, Api, Blobs, HostProcess, as_it_stands, costs_progress, unique, wait_for
from tests.e2e.test_jobs import census_csv, most_at_once, ready_pool

INSTANCES = 3


@pytest.fixture(scope="module")
def cluster(logs_dir):
    emulator = start_azurite(ROOT, None, log_file=logs_dir / "azurite-cluster.log")
    log_path = logs_dir / "cluster-host.log"
    host = HostProcess(ROOT, emulator.connection_string, instances=INSTANCES, log_path=log_path, extra_env=APP_ENV)
    api = Api(host.url, host.operator_key)
    blobs = Blobs(emulator.connection_string)
    blobs.put("inputs", "census.csv", census_csv(1000))
    yield api, blobs, host, log_path, emulator
    host.stop()
    emulator.stop()


def runner_pid(log_path, job_id: str) -> int | None:
    for line in reversed(log_path.read_text().splitlines()):
        match = re.search(rf" (\d+) shared\.runner run claimed job={job_id} ", line)
        if match:
            return int(match.group(1))
    return None


def test_busy_vms_never_exceed_provisioned_vms_with_three_instances(cluster):
    api, blobs, host, _, _ = cluster
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 3)
    samples, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            state = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
            busy = [vm["JobId"] for vm in state["Vms"] if vm["State"] in ("Busy", "Draining")]
            samples.append((len(busy), len(set(busy)), sum(vm["State"] != "Deleted" for vm in state["Vms"])))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    body = lambda: blobs.job_body("inputs/census.csv", f"outputs/{unique('race')}.csv", pool, SecondsPerChunk=0.05)
    with ThreadPoolExecutor(8) as starters:
        ids = list(starters.map(lambda _: api.run_job(tenant.jobs, tenant.api_key, body())[0], range(24)))
    finals = [api.wait_job(tenant.jobs, tenant.api_key, i, timeout=120) for i in ids]
    stop.set()
    watcher.join()
    assert all(f["StatusCode"] == "Finished" and f["Attempts"] == 1 for f in finals)
    assert most_at_once(finals) <= 3
    assert len(samples) > 20
    assert all(busy <= provisioned and busy == distinct for busy, distinct, provisioned in samples)
    assert max(s[0] for s in samples) == 3


def test_a_job_survives_its_instance_being_killed(cluster):
    api, blobs, host, log_path, _ = cluster
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 1)
    output = f"outputs/{unique('survivor')}.csv"
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key,
                            blobs.job_body("inputs/census.csv", output, pool, SecondsPerChunk=1))
    pid = wait_for(lambda: runner_pid(log_path, job_id), timeout=20)
    assert pid in host.instance_pids
    # Killed once its runner has written its claim (a runner killed before its first write
    # leaves nothing to count: its run is begun afresh as the first attempt).
    wait_for(lambda: api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json()["Attempts"] == 1, timeout=20,
             interval=0.05)
    os.kill(pid, signal.SIGKILL)
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=90)
    assert done["StatusCode"] == "Finished" and done["Attempts"] == 2
    # Found by the sweeper's stale heartbeat, or by the message coming round again: either way
    # the first attempt's end is told, and the second finished.
    first, second = done["AttemptOutcomes"]
    assert first["Outcome"] in ("WorkerLost", "Interrupted") and second["Outcome"] == "Finished"
    assert runner_pid(log_path, job_id) != pid
    assert blobs.get(*output.split("/", 1)).count(b"\n") == 1001
    pool_state = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert pool_state["VmCounts"]["Idle"] == 1 and pool_state["RunningJobs"] == 0


def send_run_message(emulator, queue: str, partition: str, job_id: str) -> None:
    payload = json.dumps({"Partition": partition, "JobId": job_id}).encode()
    QueueServiceClient.from_connection_string(emulator.connection_string).get_queue_client(queue).send_message(
        base64.b64encode(payload).decode())


def test_a_run_message_delivered_twice_runs_the_job_once(cluster):
    api, blobs, host, log_path, emulator = cluster
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 1)
    job_id, started = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        "inputs/census.csv", f"outputs/{unique('twice')}.csv", pool, SecondsPerChunk=0.5))
    assert started["StatusCode"] == "Running"
    wait_for(lambda: runner_pid(log_path, job_id), timeout=20)
    send_run_message(emulator, "run-job", layout.job_partition(tenant.subscription_id, job_id), job_id)
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id)
    assert done["StatusCode"] == "Finished" and done["Attempts"] == 1
    skipped = rf"run message skipped job={job_id} "
    before = len(re.findall(skipped, log_path.read_text()))
    send_run_message(emulator, "run-job", layout.job_partition(tenant.subscription_id, job_id), job_id)
    # The late duplicate is taken off the queue and found to have nothing to run.
    wait_for(lambda: len(re.findall(skipped, log_path.read_text())) > before, timeout=30)
    again = api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json()
    assert as_it_stands(again) == as_it_stands(done) and costs_progress(done, again)
    assert len(re.findall(rf"run claimed job={job_id} ", log_path.read_text())) == 1


def test_a_poisoned_run_ends_failed_and_frees_its_vm(cluster):
    api, blobs, host, _, _ = cluster
    tenant = make_tenant(api)
    api.put_service(tenant.subscription_id, tenant.service_id, scorer="tests.fixtures.scorers:crash")
    pool = ready_pool(api, tenant, 1)
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        "inputs/census.csv", f"outputs/{unique('poison')}.csv", pool))
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=90)
    assert done["StatusCode"] == "Failed" and "kept failing" in done["Details"]
    assert done["Attempts"] == 5  # maxDequeueCount of host.json
    pool_state = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert pool_state["VmCounts"]["Idle"] == 1
    api.put_service(tenant.subscription_id, tenant.service_id)
    next_job, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        "inputs/census.csv", f"outputs/{unique('after')}.csv", pool))
    assert api.wait_job(tenant.jobs, tenant.api_key, next_job)["StatusCode"] == "Finished"
