"""Submit-to-Running latency on a pool with free VMs, trivial-job throughput, and what each
job costs in storage requests and app CPU.

Latency: each job is submitted then started one after another on a 16-VM pool whose VMs are
idle; the time from sending the submit to the start's answer saying Running is recorded.
Floor: what a submit-to-Running cannot do without, each measured alone in the same run with
the same SDK clients and added up. The path (`shared.jobs`) is, one after another: the submit
call, its reads (the service's row beside the pool's, side by side), the job row's insert (a
one-operation entity-group transaction); the start call, its reads (the job row beside one
range read of the pool's queue head or free VMs), the start's two-row transaction (job and
VM), the run message. The floor is two job API calls through the host (one that touches no
storage stands for each), a point read, the job row's insert, the two-row transaction and
the run message; beside it, the floor as the code sequences it (a point read for each of the
two read rounds, the insert as the one-operation transaction the app sends).
Requests: on a second stack whose app reaches Azurite through counting proxies, trivial jobs
run one after another end to end (submit, start, run, end); the app's requests (told apart
by its user agent from the host's own queue polling) are counted by kind, less what the app's
timers send while idle for as long (billing is scheduled out of the window). The sequential
round trips of submit-to-Running are the longest chain of app requests, one after another,
between sending the submit and the start's answer.
Throughput: 16 client threads submit and start trivial jobs (10-row CSVs) on a 16-VM pool;
the figure is jobs ended Finished per second, from the first submit to the last job's EndTime;
the client waits for outcomes in the app's table, so its waiting costs the app nothing. CPU:
the host instances' CPU time over that run divided by the jobs (raw: the host's HTTP handling
and the timers included), and the app's own part: in the same run, before the jobs, the
instances' idle CPU rate (timers, queue polling) over a quiet window and the host CPU of K
job calls that touch no storage are measured, and

    app CPU per trivial job = (instances' CPU over the run - per-call host CPU x HTTP calls
                               - idle rate x the run's duration) / jobs.

The run's HTTP calls are the 2 per job (submit, start); the idle rate stands for the timers
and the polling of empty queues, so polling that found messages counts as the app's.
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

# Idle windows hold a whole number of Sweeper periods (10 s), so that each holds the same
# number of sweeps whatever its phase (a 15 s window holds one or two: a 2x error).
IDLE_SECONDS = 10


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
        # Each job ends before the next is sent, waited for in the app's table (not through the host).
        wait_for(lambda: stack.job_status(tenant, job_id) in ("Finished", "Failed", "Cancelled"), timeout=60,
                 interval=0.02)
        time.sleep(0.05)  # what follows the end (the runner's tick of the pool) is not in the next job's time
    return {"jobs": len(timings), "p50_ms": round(statistics.median(timings), 1),
            "p99_ms": round(percentile(timings, 0.99), 1)}


def call_without_storage(stack: Stack, tenant: dict) -> None:
    """A whole job call through the host that sends no storage request: the key is checked
    from the instance's cache, then the api-version is refused."""
    answer = stack.api.job(tenant["jobs"], tenant["api_key"], version="0.0")
    assert answer.status_code == 400, answer.text


def measure_floor(stack: Stack, tenant: dict, samples: int = 200) -> dict:
    """p50 of each piece of work a submit-to-Running needs, alone, and their sums, in ms."""
    store, queues = probe_stores(stack.azurite.connection_string)
    counter = iter(range(10 ** 9))
    # A row the size of a job row (its stored request is most of it).
    store.upsert("Probe", {"PartitionKey": "floor", "RowKey": "job", "Request": "x" * 900, "Status": "NotStarted"})

    def insert():
        store.insert("Probe", {"PartitionKey": "floor", "RowKey": f"insert{next(counter):09d}", "Value": 1})

    def insert_as_transaction():  # what `moves.write(lifecycle.new_job(...))` sends
        store.transact("Probe", [("create", {"PartitionKey": "floor", "RowKey": f"batch{next(counter):09d}",
                                             "Value": 1})])

    def transact():
        row = next(counter)
        store.transact("Probe", [("create", {"PartitionKey": "floor", "RowKey": f"claim{row:09d}", "Value": 1}),
                                 ("upsert", {"PartitionKey": "floor", "RowKey": "vm", "Job": row})])

    call_without_storage(stack, tenant)
    pieces = {"job_call_without_storage": median_and_p99(lambda: call_without_storage(stack, tenant),
                                                         samples)["p50_ms"],
              "point_read": median_and_p99(lambda: store.get("Probe", "floor", "job"), samples)["p50_ms"],
              "table_insert": median_and_p99(insert, samples)["p50_ms"],
              "insert_as_one_operation_transaction": median_and_p99(insert_as_transaction, samples)["p50_ms"],
              "two_row_transaction": median_and_p99(transact, samples)["p50_ms"],
              "queue_message": median_and_p99(lambda: queues.send("benchprobe", {"n": 1}), samples)["p50_ms"]}
    floor = (2 * pieces["job_call_without_storage"] + pieces["point_read"] + pieces["table_insert"]
             + pieces["two_row_transaction"] + pieces["queue_message"])
    as_sequenced = (2 * pieces["job_call_without_storage"] + 2 * pieces["point_read"]
                    + pieces["insert_as_one_operation_transaction"] + pieces["two_row_transaction"]
                    + pieces["queue_message"])
    return {"pieces_p50_ms": pieces, "sum_of_p50s_ms": round(floor, 2),
            "as_the_code_sequences_it_ms": round(as_sequenced, 2)}


def _difference(after: dict, before: dict) -> Counter:
    return Counter({key: after.get(key, 0) - before.get(key, 0) for key in after})


def _settle(stack: Stack, quiet: float = 0.3, longest: float = 3.0) -> None:
    """Wait until the app has sent no storage request for `quiet` seconds (at most `longest`):
    what a job does after its end is visible (the runner's tick of the pool) then falls before
    the next job's submit, not inside its submit-to-Running window."""
    deadline = time.perf_counter() + longest
    seen = sum(stack.app_requests().values())
    while time.perf_counter() < deadline:
        time.sleep(quiet)
        now_seen = sum(stack.app_requests().values())
        if now_seen == seen:
            return
        seen = now_seen


def measure_requests(jobs: int) -> dict:
    """App storage requests per trivial job by kind, and sequential round trips on submit-to-Running."""
    stack = Stack(1, env={"BILLING_SCHEDULE": "0 0 0 1 1 *"}, counted=True)
    try:
        stack.blobs.put("inputs", "tiny.csv", "".join(census.generate_csv(10, seed=3)).encode())
        tenant = stack.tenant(16)
        submit_and_start(stack, tenant)  # warm: tables and queues made, keys cached
        time.sleep(2)
        stack.past_first_sweep()
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
            _settle(stack)
        seconds = time.perf_counter() - began
        counted = _difference(stack.app_requests(), before)
        per_job = {f"{service} {method}": round((count - idle_rate.get((service, method), 0) * seconds) / jobs, 2)
                   for (service, method), count in sorted(counted.items())}
        return {"jobs": jobs, "per_job_by_kind": per_job, "per_job": round(sum(per_job.values()), 1),
                "idle_timer_requests_per_second": round(sum(idle_rate.values()), 2),
                "submit_to_running_sequential_round_trips": {"p50": statistics.median(chains), "max": max(chains)}}
    finally:
        stack.stop()


IDLE_CPU_SECONDS = 10  # see IDLE_SECONDS
STORAGE_FREE_CALLS = 1000


def measure_host_cpu(stack: Stack, tenant: dict) -> dict:
    """The instances' idle CPU rate (timers, empty-queue polling) over a quiet window, and the
    host CPU of one job call that touches no storage (less the idle rate meanwhile)."""
    pids = stack.host.instance_pids
    for _ in range(20):  # every instance's key cache warm
        call_without_storage(stack, tenant)
    time.sleep(2)
    stack.past_first_sweep()
    cpu, wall = cpu_seconds(pids), time.perf_counter()
    time.sleep(IDLE_CPU_SECONDS)
    idle_rate = (cpu_seconds(pids) - cpu) / (time.perf_counter() - wall)
    cpu, wall = cpu_seconds(pids), time.perf_counter()
    for _ in range(STORAGE_FREE_CALLS):
        call_without_storage(stack, tenant)
    seconds = time.perf_counter() - wall
    per_call = (cpu_seconds(pids) - cpu - idle_rate * seconds) / STORAGE_FREE_CALLS
    return {"idle_cpu_ms_per_second": round(idle_rate * 1000, 2), "idle_window_seconds": IDLE_CPU_SECONDS,
            "host_cpu_ms_per_storage_free_call": round(per_call * 1000, 3), "storage_free_calls": STORAGE_FREE_CALLS}


def measure_throughput(stack: Stack, jobs: int, clients: int = 16) -> dict:
    tenant = stack.tenant(16)
    api = stack.api
    host = measure_host_cpu(stack, tenant)

    def one(_):
        job_id = api.job(tenant["jobs"], tenant["api_key"], "POST", body=trivial_body(stack)).json()
        api.job(tenant["jobs"], tenant["api_key"], "POST", f"/{job_id}/start")
        return job_id

    http_calls = 2 * jobs  # submit and start; the client waits in the app's table, not through the host
    cpu_before, wall_before = cpu_seconds(stack.host.instance_pids), time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc)
    with ThreadPoolExecutor(clients) as pool:
        ids = list(pool.map(one, range(jobs)))
    for job_id in ids:  # waited for in the app's table, so that waiting costs the app nothing
        wait_for(lambda: stack.job_status(tenant, job_id) in ("Finished", "Failed", "Cancelled"), timeout=600,
                 interval=0.05)
    cpu = cpu_seconds(stack.host.instance_pids) - cpu_before
    window = time.perf_counter() - wall_before
    host_part = host["host_cpu_ms_per_storage_free_call"] / 1000 * http_calls
    idle_part = host["idle_cpu_ms_per_second"] / 1000 * window
    finals = [api.job(tenant["jobs"], tenant["api_key"], suffix=f"/{job_id}").json() for job_id in ids]
    last_end = max(dt.datetime.fromisoformat(f["EndTime"].replace("Z", "+00:00")) for f in finals)
    elapsed = (last_end - started).total_seconds()
    finished = sum(f["StatusCode"] == "Finished" for f in finals)
    return {"raw_cpu_ms_per_job": round(cpu * 1000 / jobs, 1),
            "app_cpu_ms_per_job": round((cpu - host_part - idle_part) * 1000 / jobs, 1),
            "cpu_split_ms_per_job": {"host_http": round(host_part * 1000 / jobs, 1),
                                     "idle_timers_and_polling": round(idle_part * 1000 / jobs, 1)},
            "cpu_window_seconds": round(window, 2), "http_calls": http_calls, **host,
            "jobs": jobs, "finished": finished,
            "not_finished": [f["Details"] for f in finals if f["StatusCode"] != "Finished"][:3],
            "seconds": round(elapsed, 2), "jobs_per_second": round(finished / elapsed, 1)}


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
            figures["submit_to_running"]["over_floor_as_sequenced"] = round(
                figures["submit_to_running"]["p50_ms"] / figures["floor"]["as_the_code_sequences_it_ms"], 2)
        if throughput_jobs:
            figures["throughput"] = measure_throughput(stack, throughput_jobs)
        return figures
    finally:
        stack.stop()


def against_targets(results: dict) -> dict:
    """Each figure the issue sets a target for, beside its target and whether it is met."""
    one, counted = results["one_instance"], results["requests"]
    lines = {}

    def line(name, value, target, met):
        lines[name] = {"measured": value, "target": target, "met": met}

    line("app storage requests per trivial job", counted["per_job"], "<= 12", counted["per_job"] <= 12)
    rounds = counted["submit_to_running_sequential_round_trips"]["p50"]
    line("sequential round trips submit->Running (p50)", rounds, "<= 5", rounds <= 5)
    if "submit_to_running" in one:
        ratio = one["submit_to_running"]["over_floor"]
        line("submit-to-Running p50 over its floor", ratio, "<= 1.5", ratio <= 1.5)
    if "throughput" in one:
        cpu, rate = one["throughput"]["app_cpu_ms_per_job"], one["throughput"]["jobs_per_second"]
        line("app CPU per trivial job, ms (1 instance)", cpu, "<= 50", cpu <= 50)
        line("trivial jobs/s, 1 instance", rate, ">= 20", rate >= 20)
    return lines


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--throughput-jobs", type=int, default=400)
    parser.add_argument("--counted-jobs", type=int, default=50)
    args = parser.parse_args(argv)
    results = {"one_instance": run(1, args.latency_jobs, args.throughput_jobs),
               "two_instances": run(2, 0, args.throughput_jobs),
               "requests": measure_requests(args.counted_jobs)}
    results["against_targets"] = against_targets(results)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
