"""Runs admitted only as fast as they can finish inside functionTimeout: on a host whose
host.json lets one instance run two queue invocations at once and gives each 20 s, long
jobs three times as many as that, started at once, all finish in slices, none of which times
out or restarts the worker, each with the output of a run alone."""
import json
import re

import pytest

from devhost.azurite import start_azurite
from tests.e2e.conftest import APP_ENV, make_tenant
from tests.e2e.harness import ROOT, Api, Blobs, HostProcess, unique
from tests.e2e.test_jobs import census_csv, ready_pool

CONCURRENCY = 2  # batchSize 1 + newBatchThreshold 1
JOBS = 3 * CONCURRENCY
ROWS = 3000  # 15 chunks of 200 rows, 0.5 s each: 7.5 s a job, 22.5 s of work per invocation thread
ENV = {**APP_ENV, "RUN_SLICE_SECONDS": "3"}


def tight_app(root, folder):
    """The app as it is, but for host.json: two invocations at once, a 20 s functionTimeout."""
    for entry in root.iterdir():
        if entry.name != "host.json":
            (folder / entry.name).symlink_to(entry)
    host = json.loads((root / "host.json").read_text())
    host["functionTimeout"] = "00:00:20"
    host["extensions"]["queues"].update(batchSize=1, newBatchThreshold=1)
    (folder / "host.json").write_text(json.dumps(host))
    return folder


@pytest.fixture(scope="module")
def tight(logs_dir, tmp_path_factory):
    emulator = start_azurite(ROOT, None, log_file=logs_dir / "azurite-admission.log")
    log_path = logs_dir / "admission-host.log"
    app = tight_app(ROOT, tmp_path_factory.mktemp("tight-app"))
    host = HostProcess(app, emulator.connection_string, log_path=log_path, extra_env=ENV)
    yield Api(host.url, host.operator_key), Blobs(emulator.connection_string), host, log_path
    host.stop()
    emulator.stop()


def test_long_jobs_started_at_once_finish_inside_function_timeout(tight):
    api, blobs, host, log_path = tight
    blobs.put("inputs", "census-3000.csv", census_csv(ROWS, seed=11))
    tenant = make_tenant(api)
    pool = ready_pool(api, tenant, JOBS)
    alone = f"outputs/{unique('alone')}.csv"
    reference, _ = api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("inputs/census-3000.csv", alone, pool,
                                                                           SecondsPerChunk=0.05))
    assert api.wait_job(tenant.jobs, tenant.api_key, reference, timeout=60)["StatusCode"] == "Finished"
    outputs = [f"outputs/{unique('crowd')}.csv" for _ in range(JOBS)]
    ids = [api.run_job(tenant.jobs, tenant.api_key, blobs.job_body("inputs/census-3000.csv", output, pool,
                                                                   SecondsPerChunk=0.5))[0] for output in outputs]
    ended = [api.wait_job(tenant.jobs, tenant.api_key, job_id, timeout=180) for job_id in ids]
    assert [job["StatusCode"] for job in ended] == ["Finished"] * JOBS, [job["Details"] for job in ended]
    assert [job["Attempts"] for job in ended] == [1] * JOBS  # no run was lost and begun again
    expected = blobs.get(*alone.split("/", 1))
    assert all(blobs.get(*output.split("/", 1)) == expected for output in outputs)
    log = log_path.read_text()
    assert "exceeded by function" not in log and "restarting the worker" not in log
    assert host.process.poll() is None
    # Each job took several slices; at no moment did more than two score at once.
    slices = [len(re.findall(rf"run claimed job={job_id} ", log)) for job_id in ids]
    assert all(count >= 2 for count in slices), slices
    assert _most_at_once(log) <= CONCURRENCY
    # Each slice's records, logged on the app's own threads, belong to its RunJob invocation.
    mine = "|".join(ids)
    claimed = re.findall(rf"run claimed job=({mine}) .* invocation=(\S+)$", log, re.M)
    ended = re.findall(rf"(?:run handed over|job run done) job=({mine}) .* invocation=(\S+)$", log, re.M)
    assert len(claimed) == sum(slices) and len({invocation for _, invocation in claimed}) == len(claimed)
    assert len(ended) == len(claimed) and set(ended) <= set(claimed)


def _most_at_once(log: str) -> int:
    """The most slices scoring at one moment, from the runners' log: each begins with its
    claim and ends handing over or with the job's end."""
    running = most = 0
    for line in log.splitlines():
        if "run claimed job=" in line:
            running += 1
            most = max(most, running)
        elif "run handed over job=" in line or "job run done job=" in line:
            running -= 1
    return most
