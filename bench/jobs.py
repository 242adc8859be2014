"""Submit-to-Running latency on a pool with free VMs, trivial-job throughput, and what each
job costs in storage requests and app CPU.

Latency: each job is submitted then started one after another on a 16-VM pool whose VMs are
idle; the time from sending the submit to the start's answer saying Running is recorded.
Floor: what a submit-to-Running cannot do without, each measured alone in the same run with
the same SDK clients and added up: two job API calls through the host (one that touches no
storage stands for each), the job row's insert, the claim's two-row entity-group transaction
and the run message.
Requests: on a second stack whose app reaches Azurite through counting proxies, trivial jobs
run one after another end to end (submit, start, run, end); the app's requests (told apart
by its user agent from the host's own queue polling) are counted by kind, less what the app's
timers send while idle for as long (billing is scheduled out of the window). The sequential
round trips of submit-to-Running are the longest chain of app requests, one after another,
between sending the submit and the start's answer.
Throughput: 16 client threads submit and start trivial jobs (10-row CSVs) on a 16-VM pool;
the figure is jobs ended Finished per second, from the first submit to the last job's EndTime;
the client waits for outcomes in the app's table, so its waiting costs the app nothing. App
CPU per job is the host instances' CPU time over that run (timers included) divided by the jobs.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from common import (Stack, cpu_seconds, longest_sequential_chain, median_and_p99, percentile, probe_stores,
                    table_op_latency, wait_for)

from samples import census

IDLE_SECONDS = 20


def trivial_body(stack: Stack, pool: str = "p") -> dict:
    return stack.blobs.job_body("inputs/tiny.csv", f"outputs/{secrets.token_hex(8)}.csv", pool)


def submit_and_start(stack: Stack, tenant: dict) -> tuple[str, dict]:
    api = stack.api
    job_id = api.job(tenant["jobs"], tenant["api_key"], "POST", body=trivial_body(stack)).json()
    return job_id, api.job(tenant["jobs"], tenant["api_key"], "POST", f"/{job_id}/start").json()


def measure_latency(stack: Stack, tenant: dict, jobs: int) -> dict:
    timings = []
    for _ in range(jobs):
        started = time.perf_counter()
        job_id, status = submit_and_start(stack, tenant)
        elapsed = (time.perf_counter() - started) * 1000
        if status["StatusCode"] in ("Running", "Finished"):
            timings.append(elapsed)
        stack.api.wait_job(tenant["jobs"], tenant["api_key"], job_id)
    return {"jobs": len(timings), "p50_ms": round(statistics.median(timings), 1),
            "p99_ms": round(percentile(timings, 0.99), 1)}


def measure_floor(stack: Stack, tenant: dict, samples: int = 200) -> dict:
    """p50 of each piece of work a submit-to-Running needs, alone, and their sum, in ms."""
    store, queues = probe_stores(stack.azurite.connection_string)
    counter = iter(range(10 ** 9))

    def insert():
        store.insert("Probe", {"PartitionKey": "floor", "RowKey": f"insert{next(counter):09d}", "Value": 1})

    def transact():
        row = next(counter)
        store.transact("Probe", [("create", {"PartitionKey": "floor", "RowKey": f"claim{row:09d}", "Value": 1}),
                                 ("upsert", {"PartitionKey": "floor", "RowKey": "vm", "Job": row})])

    def call_without_storage():
        # The key is checked from the host's cache, then the api-version is refused: a whole
        # function call through the host and no storage request.
        answer = stack.api.job(tenant["jobs"], tenant["api_key"], version="0.0")
        assert answer.status_code == 400, answer.text

    call_without_storage()
    pieces = {"job_call_without_storage": median_and_p99(call_without_storage, samples)["p50_ms"],
              "table_insert": median_and_p99(insert, samples)["p50_ms"],
              "two_row_transaction": median_and_p99(transact, samples)["p50_ms"],
              "queue_message": median_and_p99(lambda: queues.send("benchprobe", {"n": 1}), samples)["p50_ms"]}
    total = 2 * pieces["job_call_without_storage"] + sum(v for k, v in pieces.items() if k != "job_call_without_storage")
    return {"pieces_p50_ms": pieces, "sum_of_p50s_ms": round(total, 2)}


def _difference(after: dict, before: dict) -> Counter:
    return Counter({key: after.get(key, 0) - before.get(key, 0) for key in after})


def measure_requests(jobs: int) -> dict:
    """App storage requests per trivial job by kind, and sequential round trips on submit-to-Running."""
    stack = Stack(1, env={"BILLING_SCHEDULE": "0 0 0 1 1 *"}, counted=True)
    try:
        stack.blobs.put("inputs", "tiny.csv", "".join(census.generate_csv(10, seed=3)).encode())
        tenant = stack.tenant(16)
        submit_and_start(stack, tenant)  # warm: tables and queues made, keys cached
        time.sleep(2)
        before, began = stack.app_requests(), time.perf_counter()
        time.sleep(IDLE_SECONDS)
        idle = _difference(stack.app_requests(), before)
        idle_rate = {key: count / (time.perf_counter() - began) for key, count in idle.items()}
        chains = []
        before, began = stack.app_requests(), time.perf_counter()
        for _ in range(jobs):
            sent = time.perf_counter()
            job_id, status = submit_and_start(stack, tenant)
            answered = time.perf_counter()
            wait_for(lambda: stack.job_status(tenant, job_id) in ("Finished", "Failed", "Cancelled"), timeout=60,
                     interval=0.05)
            chains.append(longest_sequential_chain(stack.app_events(sent, answered)))
        seconds = time.perf_counter() - began
        counted = _difference(stack.app_requests(), before)
        per_job = {f"{service} {method}": round((count - idle_rate.get((service, method), 0) * seconds) / jobs, 2)
                   for (service, method), count in sorted(counted.items())}
        return {"jobs": jobs, "per_job_by_kind": per_job, "per_job": round(sum(per_job.values()), 1),
                "idle_timer_requests_per_second": round(sum(idle_rate.values()), 2),
                "submit_to_running_sequential_round_trips": {"p50": statistics.median(chains), "max": max(chains)}}
    finally:
        stack.stop()


def measure_throughput(stack: Stack, jobs: int, clients: int = 16) -> dict:
    tenant = stack.tenant(16)
    api = stack.api

    def one(_):
        job_id = api.job(tenant["jobs"], tenant["api_key"], "POST", body=trivial_body(stack)).json()
        api.job(tenant["jobs"], tenant["api_key"], "POST", f"/{job_id}/start")
        return job_id

    cpu_before = cpu_seconds(stack.host.instance_pids)
    started = dt.datetime.now(dt.timezone.utc)
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(one, range(jobs)))
    for job_id in ids:  # waited for in the app's table, so that waiting costs the app nothing
        wait_for(lambda: stack.job_status(tenant, job_id) in ("Finished", "Failed", "Cancelled"), timeout=600,
                 interval=0.05)
    cpu_ms = (cpu_seconds(stack.host.instance_pids) - cpu_before) * 1000 / jobs
    finals = [api.job(tenant["jobs"], tenant["api_key"], suffix=f"/{job_id}").json() for job_id in ids]
    last_end = max(dt.datetime.fromisoformat(f["EndTime"].replace("Z", "+00:00")) for f in finals)
    elapsed = (last_end - started).total_seconds()
    finished = sum(f["StatusCode"] == "Finished" for f in finals)
    return {"app_cpu_ms_per_job": round(cpu_ms, 1), "jobs": jobs, "finished": finished, "not_finished": [f["Details"] for f in finals
                                                                 if f["StatusCode"] != "Finished"][:3], "seconds": round(elapsed, 2),
            "jobs_per_second": round(finished / elapsed, 1)}


def run(instances: int, latency_jobs: int, throughput_jobs: int) -> dict:
    stack = Stack(instances)
    try:
        stack.blobs.put("inputs", "tiny.csv", "".join(census.generate_csv(10, seed=3)).encode())
        figures = {"instances": instances, "azurite_table_read": table_op_latency(stack.azurite.connection_string)}
        if latency_jobs:
            tenant = stack.tenant(16)
            figures["submit_to_running"] = measure_latency(stack, tenant, latency_jobs)
            figures["floor"] = measure_floor(stack, tenant)
            figures["submit_to_running"]["over_floor"] = round(
                figures["submit_to_running"]["p50_ms"] / figures["floor"]["sum_of_p50s_ms"], 2)
        if throughput_jobs:
            figures["throughput"] = measure_throughput(stack, throughput_jobs)
        return figures
    finally:
        stack.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--throughput-jobs", type=int, default=400)
    parser.add_argument("--counted-jobs", type=int, default=50)
    args = parser.parse_args(argv)
    results = {"one_instance": run(1, args.latency_jobs, args.throughput_jobs),
               "four_instances": run(4, 0, args.throughput_jobs),
               "requests": measure_requests(args.counted_jobs)}
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
