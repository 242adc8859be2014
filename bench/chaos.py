"""Chaos run: jobs across pools and the classic environment while host instances are killed.

Several host instances share one port and one Azurite; while client threads submit and start
jobs on 5 pools and in the classic environment, a chaos thread SIGKILLs a random instance and
starts a new one in its place, again and again; with throttles, the app reaches Azurite through
fault-injecting proxies that, for a few seconds at a time, answer every request 503 ServerBusy
(tables: 429) with Retry-After; with outages, one storage service at a time (tables, queues or
blobs, taken in turn) is down for `outage_seconds`, refusing connections or answering 503
ServerBusy, while the others work. A sampler reads every pool meanwhile.
Afterwards it checks, and prints: every job ended exactly once and stays ended, none lost;
every Finished job's output is there; busy VMs never exceeded provisioned VMs in any sample;
FIFO on every pool across all clients (a job whose start was answered before another's start
was sent started no later); each pool's billed VM-seconds equal the sum over its VM
timestamps; and it counts every error answer (4xx, 5xx) the clients got, every job the
service holds that no client knows of (and how many submits lost their answer to a kill,
the only thing that can explain one), and runs begun again against the kills that caused them.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from urllib3.exceptions import NewConnectionError

from common import (ACCOUNT, ACCOUNT_KEY, ROOT, Api, Blobs, HostProcess, StorageProxy, proxied_connection_string,
                    start_azurite, wait_for)

from samples import census

TERMINAL = ("Finished", "Failed", "Cancelled")
ENV = {"VM_PROVISIONING_SECONDS": "1", "BATCHPOOL_TABLE_PREFIX": "chaos", "CLASSIC_MAX_CONCURRENT_JOBS": "3",
       "RUN_STALE_SECONDS": "3", "SCORING_CHUNK_ROWS": "100", "DEVHOST_QUEUE_LEASE_SECONDS": "8",
       "BILLING_SCHEDULE": "*/2 * * * * *"}


THROTTLE_SECONDS = (1.0, 3.0)


def _never_sent(error: requests.ConnectionError) -> bool:
    """Whether the call was refused before anything was sent (no instance listened)."""
    cause = error.args[0] if error.args else None
    return isinstance(getattr(cause, "reason", cause), NewConnectionError)


class Tally:
    """Every answer the clients got that was not a success, and every call whose answer a
    killed instance took with it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.errors: dict[int, int] = {}      # status -> count
        self.unanswered_submits = 0

    def error(self, status: int) -> None:
        with self.lock:
            self.errors[status] = self.errors.get(status, 0) + 1


def retried(call, tally: Tally, tries: int = 20, submit: bool = False):
    """Send a call until it is answered 2xx. A call that reached no instance (refused) or lost
    its answer to a kill is sent again; every error answer is counted, and a 503 (storage
    throttling) is sent again after a second, any other error is not. A submit whose answer
    was lost is counted: it may have made a job the client never hears of."""
    for attempt in range(tries):
        try:
            response = call()
        except requests.ConnectionError as error:
            if submit and not _never_sent(error):
                with tally.lock:
                    tally.unanswered_submits += 1
            if attempt == tries - 1:
                raise
            time.sleep(0.2)
            continue
        if response.ok:
            return response
        tally.error(response.status_code)
        if response.status_code != 503 or attempt == tries - 1:
            response.raise_for_status()
        time.sleep(1.0)


def parse(moment: str):
    import datetime as dt
    return dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))


class Cluster:
    def __init__(self, connection_string: str, instances: int, log_dir):
        self.connection_string = connection_string
        self.log_dir = log_dir
        self.keys = (secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        self.operator_key = secrets.token_urlsafe(32)
        self.port = None
        self.hosts = []
        self.started = 0
        for _ in range(instances):
            self.add()

    def add(self):
        self.started += 1
        host = HostProcess(ROOT, self.connection_string, instances=1, extra_env=ENV, port=self.port, keys=self.keys,
                           operator_key=self.operator_key,
                           log_path=self.log_dir / f"chaos-host-{self.started}.log")
        self.port = host.port
        self.hosts.append(host)

    def kill_one(self, rng: random.Random) -> None:
        victim = self.hosts.pop(rng.randrange(len(self.hosts)))
        os.kill(victim.instance_pids[0], signal.SIGKILL)
        victim.stop()
        self.add()

    def stop(self):
        for host in self.hosts:
            host.stop()


def run(jobs: int = 2000, instances: int = 4, kills: int = 20, seconds_per_chunk: float = 0.05,
        log_dir=None, seed: int = 1, out=print, throttles: int = 0, outages: int = 0,
        outage_seconds: float = 30.0) -> dict:
    log_dir = log_dir or ROOT / "bench" / "results"
    log_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    azurite = start_azurite(ROOT, None, log_file=log_dir / "azurite-chaos.log")
    proxies, connection = {}, azurite.connection_string
    if throttles or outages:
        proxies = {"blob": StorageProxy(azurite.blob_port, "blob"), "queue": StorageProxy(azurite.queue_port, "queue"),
                   "table": StorageProxy(azurite.table_port, "table")}
        proxies["table"].status_when_throttled = 429
        connection = proxied_connection_string(ACCOUNT, ACCOUNT_KEY, proxies)
    cluster = Cluster(connection, instances, log_dir)
    api = Api(f"http://127.0.0.1:{cluster.port}", cluster.operator_key)
    blobs = Blobs(connection)
    tally = Tally()
    try:
        blobs.put("inputs", "chaos.csv", "".join(census.generate_csv(250, seed=5)).encode())
        account = api.put_account("chaos", "chaos-sub", 5, 8).json()
        service = api.put_service("chaos-sub", "svc").json()
        pools = [f"pool{index}" for index in range(5)]
        for index, pool in enumerate(pools):
            api.call("POST", "/api/accounts/chaos/pools", {"PoolId": pool, "VmCount": 2 + index % 3,
                                                           "ServiceSwaggerUrl": service["SwaggerUrl"]},
                     key=account["PrimaryKey"])
        jobs_path, api_key = "/api/subscriptions/chaos-sub/services/svc/jobs", service["ApiKey"]
        samples, violations, stop = [], [], threading.Event()

        def sample():
            while not stop.is_set():
                for pool in pools:
                    try:
                        state = retried(lambda: api.call("GET", f"/api/accounts/chaos/pools/{pool}",
                                                         key=account["PrimaryKey"]), tally).json()
                    except requests.RequestException:  # counted by the tally; sample again
                        continue
                    busy = [vm["JobId"] for vm in state["Vms"] if vm["State"] in ("Busy", "Draining")]
                    live = sum(vm["State"] != "Deleted" for vm in state["Vms"])
                    samples.append(len(busy))
                    if len(busy) > live or len(busy) != len(set(busy)):
                        violations.append((pool, busy, live))
                time.sleep(0.2)

        def throttle_for_a_while():
            for proxy in proxies.values():
                proxy.throttling.set()
            time.sleep(rng.uniform(*THROTTLE_SECONDS))
            for proxy in proxies.values():
                proxy.throttling.clear()

        outages_had: list[str] = []

        def outage(number: int):
            service = ("table", "queue", "blob")[number % 3]
            refusing = number % 2 == 0
            flag = proxies[service].refusing if refusing else proxies[service].throttling
            proxies[service].status_when_throttled = 503
            flag.set()
            time.sleep(outage_seconds)
            flag.clear()
            if service == "table":
                proxies[service].status_when_throttled = 429
            outages_had.append(f"{service} {'refused' if refusing else '503'} {outage_seconds:g} s")

        def chaos():
            events = ["kill"] * kills + ["throttle"] * throttles + ["outage"] * outages
            rng.shuffle(events)
            done = 0
            for event in events:
                if stop.is_set():
                    break
                time.sleep(rng.uniform(1.0, 3.0))
                if event == "kill":
                    cluster.kill_one(rng)
                    done += 1
                elif event == "outage":
                    outage(len(outages_had))
                else:
                    throttle_for_a_while()
            return done

        placements = [rng.choice(pools + [None]) for _ in range(jobs)]
        submitted: dict[int, list] = {}
        start_calls: dict[str, tuple[float, float]] = {}  # job -> (first sent, answered), time.time()

        def client(number: int):
            mine = []
            for index in range(number, jobs, 8):
                pool = placements[index]
                body = blobs.job_body("inputs/chaos.csv", f"outputs/chaos-{index}.csv", pool,
                                      SecondsPerChunk=seconds_per_chunk)
                job_id = retried(lambda: api.job(jobs_path, api_key, "POST", body=body), tally, submit=True).json()
                # Start is idempotent: a start lost with a killed instance is sent again, same job.
                sent = time.time()
                retried(lambda: api.job(jobs_path, api_key, "POST", f"/{job_id}/start"), tally)
                start_calls[job_id] = (sent, time.time())
                mine.append((index, job_id, pool))
            submitted[number] = mine

        began = time.monotonic()
        sampler = threading.Thread(target=sample)
        sampler.start()
        with ThreadPoolExecutor(9) as workers:
            killer = workers.submit(chaos)
            list(workers.map(client, range(8)))
            killed = killer.result()
        every = [entry for mine in submitted.values() for entry in mine]

        def status(job_id):
            return retried(lambda: api.job(jobs_path, api_key, suffix=f"/{job_id}"), tally).json()

        finals = {}
        deadline = time.monotonic() + 600
        while len(finals) < len(every) and time.monotonic() < deadline:
            for _, job_id, _ in every:
                if job_id not in finals:
                    state = status(job_id)
                    if state["StatusCode"] in TERMINAL:
                        finals[job_id] = state
            time.sleep(0.5)
        stop.set()
        sampler.join()
        elapsed = time.monotonic() - began
        again = {job_id: status(job_id)["StatusCode"] for job_id in list(finals)[:200]}
        changed = [j for j, code in again.items() if code != finals[j]["StatusCode"]]
        missing_outputs = [index for index, job_id, _ in every if finals.get(job_id, {}).get("StatusCode") == "Finished"
                           and blobs.get("outputs", f"chaos-{index}.csv") is None]
        fifo_breaks = _fifo_breaks(every, finals, start_calls)
        untracked = _untracked_jobs(api, jobs_path, api_key, {job_id for _, job_id, _ in every}, tally)
        billing_mismatches = []
        for pool in pools:
            def ledger_caught_up(pool=pool):
                line = next(p for p in api.call("GET", "/api/accounts/chaos/usage", key=account["PrimaryKey"]).json()
                            ["Pools"] if p["PoolId"] == pool)
                vms = api.call("GET", f"/api/accounts/chaos/pools/{pool}", key=account["PrimaryKey"]).json()["Vms"]
                through = parse(line["BilledThrough"])
                expected = sum(max(0, int((min(parse(v["DeletedAt"]) if v["DeletedAt"] else through, through)
                                           - parse(v["ProvisionedAt"])).total_seconds()))
                               for v in vms if v["ProvisionedAt"])
                return (line["VmSeconds"], expected) if line["VmSeconds"] == expected else None
            try:
                wait_for(ledger_caught_up, timeout=20)
            except AssertionError:
                billing_mismatches.append(pool)
        codes = [f["StatusCode"] for f in finals.values()]
        figures = {
            "jobs": len(every), "instances": instances, "kills": killed, "seconds": round(elapsed, 1),
            "throttles": throttles, "outages": outages_had, "throttled_storage_requests": sum(p.throttled for p in proxies.values()),
            "error_answers": dict(sorted(tally.errors.items())),
            "server_errors": sum(n for status, n in tally.errors.items() if status >= 500),
            "submits_unanswered": tally.unanswered_submits, "untracked_jobs": untracked,
            "ended": len(finals), "lost": len(every) - len(finals),
            "finished": codes.count("Finished"), "failed": codes.count("Failed"), "cancelled": codes.count("Cancelled"),
            "rerun_after_a_kill": sum(1 for f in finals.values() if f["Attempts"] > 1),
            "runs_begun_again": sum(max(0, f["Attempts"] - 1) for f in finals.values()),
            "changed_after_ending": len(changed), "finished_without_output": len(missing_outputs),
            "pool_samples": len(samples), "max_busy_in_a_sample": max(samples, default=0),
            "busy_over_provisioned_samples": len(violations), "fifo_breaks": fifo_breaks,
            "pools_billing_mismatch": billing_mismatches,
            "failed_details": sorted({f["Details"] for f in finals.values() if f["StatusCode"] == "Failed"})[:5],
        }
        out(json.dumps(figures, indent=2))
        return figures
    finally:
        cluster.stop()
        for proxy in proxies.values():
            proxy.stop()
        azurite.stop()


def _fifo_breaks(every, finals: dict, start_calls: dict) -> int:
    """Pairs of jobs of one pool (or of the classic environment) where the start of one was
    answered before the other's was sent, yet the other started first."""
    by_pool: dict[str | None, list[tuple[float, float, str]]] = {}
    for _, job_id, pool in every:
        final = finals.get(job_id)
        if final and final["StartTime"] and job_id in start_calls:
            sent, answered_at = start_calls[job_id]
            by_pool.setdefault(pool, []).append((sent, answered_at, final["StartTime"]))
    breaks = 0
    for jobs in by_pool.values():
        jobs.sort()
        for index, (_, first_answered, first_start) in enumerate(jobs):
            breaks += sum(1 for sent, _, start in jobs[index + 1:] if sent > first_answered and start < first_start)
    return breaks


def _untracked_jobs(api, jobs_path: str, api_key: str, tracked: set[str], tally: Tally) -> int:
    """Jobs the service holds that no client knows of, from a listing of all of them."""
    held, token = set(), None
    while True:
        suffix = f"&continuationToken={token}" if token else ""
        page = retried(lambda: api.call("GET", f"{jobs_path}?api-version=2.0&$top=1000{suffix}", key=api_key),
                       tally).json()
        held.update(job["JobId"] for job in page["Jobs"])
        token = page["ContinuationToken"]
        if not token:
            return len(held - tracked)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--throttles", type=int, default=10, help="windows of a few seconds of storage throttling")
    parser.add_argument("--outages", type=int, default=3, help="outages of one storage service at a time")
    parser.add_argument("--outage-seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    return run(args.jobs, args.instances, args.kills, throttles=args.throttles, outages=args.outages,
               outage_seconds=args.outage_seconds)


if __name__ == "__main__":
    main()
