"""Jobs in checkpointed slices, on two host instances of their own: a killed slice resumes
from its checkpoint, a slow chunk is not taken over, a cancel or a timeout commits nothing."""
import os
import re
import signal

import pytest

from devhost.azurite import start_azurite
from tests.e2e.conftest import APP_ENV, make_tenant
from tests.e2e.harness import ROOT, Api, Blobs, HostProcess, unique, wait_for
from tests.e2e.test_job_resilience import runner_pid
from tests.e2e.test_jobs import census_csv, ready_pool

# A worker pool of two threads, as tight as Azure's on a small plan: runs must not starve HTTP.
SLICE_ENV = {**APP_ENV, "RUN_SLICE_SECONDS": "3", "PYTHON_THREADPOOL_THREAD_COUNT": "2"}
ROWS = 3000  # 15 chunks of 200 rows


@pytest.fixture(scope="module")
def sliced(logs_dir):
    emulator = start_azurite(ROOT, None, log_file=logs_dir / "azurite-slices.log")
    log_path = logs_dir / "slices-host.log"
    host = HostProcess(ROOT, emulator.connection_string, instances=2, log_path=log_path, extra_env=SLICE_ENV)
    api = Api(host.url, host.operator_key)
    blobs = Blobs(emulator.connection_string)
    blobs.put("inputs", "census-3000.csv", census_csv(ROWS, seed=7))
    blobs.put("inputs", "census-100.csv", census_csv(100, seed=8))
    yield api, blobs, host, log_path
    host.stop()
    emulator.stop()


def claims(log_path, job_id: str) -> list[int]:
    """The input offset each claim of the job started from, in order."""
    return [int(m) for m in re.findall(rf"run claimed job={job_id} .*? offset=(\d+)", log_path.read_text())]


def test_a_killed_slice_resumes_from_its_checkpoint_with_identical_output(sliced):
    api, blobs, host, log_path = sliced
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 2)
    whole, resumed = f"outputs/{unique('whole')}.csv", f"outputs/{unique('resumed')}.csv"
    reference, _ = api.run_job(tenant.jobs, tenant.api_key,
                               blobs.job_body("inputs/census-3000.csv", whole, pool, SecondsPerChunk=0.5))
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key,
                            blobs.job_body("inputs/census-3000.csv", resumed, pool, SecondsPerChunk=0.5))
    running = wait_for(lambda: (s := api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}").json())
                       ["Progress"] and s["Progress"]["RowsScored"] > 0 and s, timeout=30)
    assert running["StatusCode"] == "Running" and running["Progress"]["InputBytes"] > 0
    # Kill the runner of the second slice as soon as it has claimed it: a slice lasts 3 s.
    before = wait_for(lambda: len(found := claims(log_path, job_id)) >= 2 and found, timeout=60, interval=0.05)
    os.kill(runner_pid(log_path, job_id), signal.SIGKILL)
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=120)
    first = api.wait_job(tenant.jobs, tenant.api_key, reference, timeout=60)
    assert done["StatusCode"] == first["StatusCode"] == "Finished", done
    assert done["Attempts"] == 2  # the claim after the kill is a new attempt; slices are not
    offsets = claims(log_path, job_id)
    after_kill = offsets[len(before):]
    assert offsets[0] == 0 and all(o > 0 for o in offsets[1:])  # never restarted from scratch
    assert after_kill and min(after_kill) >= before[-1]  # at most the killed slice is scored again
    assert blobs.get(*resumed.split("/", 1)) == blobs.get(*whole.split("/", 1))
    assert blobs.get(*whole.split("/", 1)).count(b"\n") == ROWS + 1


def test_http_calls_are_answered_while_long_runs_go_on(sliced):
    api, blobs, _, log_path = sliced
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 4)
    ids = [api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        "inputs/census-100.csv", f"outputs/{unique('long')}.csv", pool, SecondsPerChunk=12))[0] for _ in range(4)]
    # Three or four slices score at once (an instance takes a new batch of run messages only
    # when its count drops to newBatchThreshold), more than the worker's 2 threads; they still
    # answer every call.
    scoring = wait_for(lambda: (found := [j for j in ids if claims(log_path, j)]) and len(found) >= 3 and found,
                       timeout=30)
    answers = [api.job(tenant.jobs, tenant.api_key, suffix=f"/{job_id}") for job_id in ids]
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json()["StatusCode"] == "Running" for job_id, a in zip(ids, answers, strict=True)
               if job_id in scoring)
    assert all(api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=60)["StatusCode"] == "Finished"
               for job_id in ids)


def test_a_chunk_slower_than_the_stale_limit_runs_once(sliced):
    api, blobs, _, log_path = sliced
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 1)
    seconds = int(SLICE_ENV["RUN_STALE_SECONDS"]) * 2
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body(
        "inputs/census-100.csv", f"outputs/{unique('slow')}.csv", pool, SecondsPerChunk=seconds))
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=90)
    assert done["StatusCode"] == "Finished" and done["Attempts"] == 1
    assert len(claims(log_path, job_id)) == 1


def test_a_cancelled_run_commits_no_output(sliced):
    api, blobs, _, log_path = sliced
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, 1)
    output = f"outputs/{unique('cancelled')}.csv"
    job_id, started = api.run_job(tenant.jobs, tenant.api_key,
                                  blobs.job_body("inputs/census-3000.csv", output, pool, SecondsPerChunk=0.2))
    assert started["StatusCode"] == "Running", started
    wait_for(lambda: claims(log_path, job_id), timeout=20)
    cancelled = api.job(tenant.jobs, tenant.api_key, "DELETE", f"/{job_id}")
    assert cancelled.status_code == 200 and cancelled.json()["StatusCode"] == "Cancelled", cancelled.text
    # The runner notices at its next chunk, or the next slice finds the run ended.
    wait_for(lambda: re.search(rf"run (stopped|message skipped) job={job_id} ", log_path.read_text()), timeout=30)
    assert blobs.get(*output.split("/", 1)) is None, "a cancelled job's output was committed"
    pool_state = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert pool_state["VmCounts"]["Idle"] == 1, pool_state


def test_a_job_over_its_timeout_ends_failed_with_its_vm_freed(sliced):
    api, blobs, _, log_path = sliced
    tenant = make_tenant(api)
    assert api.put_service(tenant.subscription_id, tenant.service_id, TimeoutSeconds=3).status_code in (200, 201)
    pool = ready_pool(api, tenant, 1)
    output = f"outputs/{unique('late')}.csv"
    job_id, _ = api.run_job(tenant.jobs, tenant.api_key,
                            blobs.job_body("inputs/census-3000.csv", output, pool, SecondsPerChunk=2))
    done = api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=60)
    assert done["StatusCode"] == "Failed" and "TimeoutSeconds of 3 s" in done["Details"]
    pool_state = api.call("GET", f"{tenant.pools}/{pool}", key=tenant.primary).json()
    assert pool_state["VmCounts"]["Idle"] == 1 and pool_state["RunningJobs"] == 0
    # Ended by the heartbeat of a running slice, or by the claim of the next one.
    wait_for(lambda: re.search(rf"job timed out job={job_id}\b", log_path.read_text()), timeout=30)
    assert blobs.get(*output.split("/", 1)) is None
