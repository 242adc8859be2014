"""Submit-to-Running latency on a pool with free VMs, and trivial-job throughput.

Latency: each job is submitted then started one after another on a 16-VM pool whose VMs are
idle; the time from sending the submit to the start's answer saying Running is recorded.
Throughput: 16 client threads submit and start trivial jobs (10-row CSVs) on a 16-VM pool;
the figure is jobs ended Finished per second, from the first submit to the last job's EndTime
(the client's own polling for outcomes is not counted).
Both are printed beside one Azurite table read's round trip measured in the same run (through
the app's own storage client, the reference; and through the Azure SDK).
Floor: what a submit-to-Running cannot do without, each measured alone in the same run and
added up: two job API calls through the host (one that touches no storage stands for each),
the job row's insert, the claim's two-row entity-group transaction and the run message.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from common import Stack, median_and_p99, percentile, probe_store, table_op_latency

from samples import census


def trivial_body(stack: Stack, pool: str = "p") -> dict:
    return stack.blobs.job_body("inputs/tiny.csv", f"outputs/{secrets.token_hex(8)}.csv", pool)


def measure_latency(stack: Stack, tenant: dict, jobs: int) -> dict:
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


def measure_floor(stack: Stack, tenant: dict, samples: int = 200) -> dict:
    """p50 of each piece of work a submit-to-Running needs, alone, and their sum, in ms."""
    store = probe_store(stack.azurite.connection_string)
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
              "queue_message": median_and_p99(lambda: store.send("benchprobe", {"n": 1}), samples)["p50_ms"]}
    total = 2 * pieces["job_call_without_storage"] + sum(v for k, v in pieces.items() if k != "job_call_without_storage")
    return {"pieces_p50_ms": pieces, "sum_of_p50s_ms": round(total, 2)}


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
            tenant = stack.tenant(16)
            figures["submit_to_running"] = measure_latency(stack, tenant, latency_jobs)
            figures["floor"] = measure_floor(stack, tenant)
            read = figures["azurite_table_read"]
            for name, ms in (("submit_to_running", figures["submit_to_running"]["p50_ms"]),
                             ("floor", figures["floor"]["sum_of_p50s_ms"])):
                figures[name]["in_table_reads"] = round(ms / read["p50_ms"], 1)
                figures[name]["in_sdk_table_reads"] = round(ms / read["sdk_p50_ms"], 1)
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
