"""Submit-to-Running latency on a pool with free VMs, and trivial-job throughput.

Latency: each job is submitted then started one after another on a 16-VM pool whose VMs are
idle; the time from sending the submit to the start's answer saying Running is recorded.
Throughput: 16 client threads submit and start trivial jobs (10-row CSVs) on a 16-VM pool;
the figure is jobs ended Finished per second, from the first submit to the last job's EndTime
(the client's own polling for outcomes is not counted).
Both are printed beside one Azurite table read's round trip measured in the same run (through
the app's own storage client, the reference; and through the Azure SDK).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from common import Stack, percentile, table_op_latency

from samples import census


def trivial_body(stack: Stack, pool: str = "p") -> dict:
    return stack.blobs.job_body("inputs/tiny.csv", f"outputs/{secrets.token_hex(8)}.csv", pool)


def measure_latency(stack: Stack, jobs: int) -> dict:
    tenant = stack.tenant(16)
    api, timings = stack.api, []
    for _ in range(jobs):
        started = time.perf_counter()
        job_id = api.job(tenant["jobs"], tenant["api_key"], "POST", body=trivial_body(stack)).json()
        status = api.job(tenant["jobs"], tenant["api_key"], "POST", f"/{job_id}/start").json()
        elapsed = (time.perf_counter() - started) * 1000
        if status["StatusCode"] in ("Running", "Finished"):
            timings.append(elapsed)
        api.wait_job(tenant["jobs"], tenant["api_key"], job_id)
    return {"jobs": len(timings), "p50_ms": round(statistics.median(timings), 1),
            "p99_ms": round(percentile(timings, 0.99), 1)}


def measure_throughput(stack: Stack, jobs: int, clients: int = 16) -> dict:
    tenant = stack.tenant(16)
    api = stack.api

    def one(_):
        job_id = api.job(tenant["jobs"], tenant["api_key"], "POST", body=trivial_body(stack)).json()
        api.job(tenant["jobs"], tenant["api_key"], "POST", f"/{job_id}/start")
        return job_id

    started = dt.datetime.now(dt.timezone.utc)
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(one, range(jobs)))
        finals = list(pool.map(lambda job_id: api.wait_job(tenant["jobs"], tenant["api_key"], job_id, timeout=600),
                               ids))
    last_end = max(dt.datetime.fromisoformat(f["EndTime"].replace("Z", "+00:00")) for f in finals)
    elapsed = (last_end - started).total_seconds()
    finished = sum(f["StatusCode"] == "Finished" for f in finals)
    return {"jobs": jobs, "finished": finished, "not_finished": [f["Details"] for f in finals
                                                                 if f["StatusCode"] != "Finished"][:3], "seconds": round(elapsed, 2),
            "jobs_per_second": round(finished / elapsed, 1)}


def run(instances: int, latency_jobs: int, throughput_jobs: int) -> dict:
    stack = Stack(instances)
    try:
        stack.blobs.put("inputs", "tiny.csv", "".join(census.generate_csv(10, seed=3)).encode())
        figures = {"instances": instances, "azurite_table_read": table_op_latency(stack.azurite.connection_string)}
        if latency_jobs:
            figures["submit_to_running"] = measure_latency(stack, latency_jobs)
            read, p50 = figures["azurite_table_read"], figures["submit_to_running"]["p50_ms"]
            figures["submit_to_running"]["p50_in_table_reads"] = round(p50 / read["p50_ms"], 1)
            figures["submit_to_running"]["p50_in_sdk_table_reads"] = round(p50 / read["sdk_p50_ms"], 1)
        if throughput_jobs:
            figures["throughput"] = measure_throughput(stack, throughput_jobs)
        return figures
    finally:
        stack.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--throughput-jobs", type=int, default=400)
    args = parser.parse_args(argv)
    results = {"one_instance": run(1, args.latency_jobs, args.throughput_jobs),
               "four_instances": run(4, 0, args.throughput_jobs)}
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
