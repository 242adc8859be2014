"""How good is the predicted start of a waiting job?

Replays a synthetic workload on a small pool through the API: jobs of mixed run times (most
short, some medium, a few long), arriving in bursts so that queues form and drain. Each job
that has to wait is asked for its `EstimatedStartTime` right after it was started; once all
have run, each estimate is compared with the job's actual `StartTime`. Beside it, a naive
predictor: queue position x the mean run time of the jobs that had ended by then (the same
jobs the service could go by), and the same divided by the pool's VMs. Prints the median and
p90 absolute error of each, in seconds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import time

from common import Stack, percentile

from samples import census

TERMINAL = ("Finished", "Failed", "Cancelled")


def parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_time(rng: random.Random) -> float:
    """Most jobs short, some medium, a few long: the mix batch scoring queues see."""
    draw = rng.random()
    if draw < 0.6:
        return rng.uniform(0.6, 1.4)
    if draw < 0.9:
        return rng.uniform(2.5, 3.5)
    return rng.uniform(7.0, 9.0)


def run(vms: int, bursts: int, per_burst: int, gap: float, seed: int) -> dict:
    rng = random.Random(seed)
    stack = Stack(1, env={"SCORING_CHUNK_ROWS": "100"})
    try:
        tenant = stack.tenant(vms)
        stack.blobs.put("bench", "in.csv", "".join(census.generate_csv(100)).encode())
        location = stack.blobs.location
        asked = []  # (job id, moment asked, queue position, estimate or None, basis)
        ids = []
        for _ in range(bursts):
            for _ in range(per_burst):
                body = {"Input": location("bench/in.csv"), "Outputs": None, "AzureBatchPoolId": "p",
                        "GlobalParameters": {"SecondsPerChunk": str(round(run_time(rng), 2))}}
                job_id, started = stack.api.run_job(tenant["jobs"], tenant["api_key"], body)
                ids.append(job_id)
                if started["StatusCode"] == "NotStarted":
                    status = stack.api.job(tenant["jobs"], tenant["api_key"], suffix=f"/{job_id}").json()
                    if status["StatusCode"] == "NotStarted":
                        asked.append((job_id, dt.datetime.now(dt.timezone.utc), status["QueuePosition"],
                                      status["EstimatedStartTime"], (status["Estimate"] or {}).get("Basis")))
            time.sleep(gap)
        finals = {job_id: stack.api.wait_job(tenant["jobs"], tenant["api_key"], job_id, timeout=600) for job_id in ids}
    finally:
        stack.stop()
    ended = sorted((parse(f["EndTime"]), (parse(f["EndTime"]) - parse(f["StartTime"])).total_seconds())
                   for f in finals.values() if f["StartTime"] and f["EndTime"])
    service_errors, naive_errors, per_vm_errors, without = [], [], [], 0
    for job_id, moment, position, estimate, basis in asked:
        actual = parse(finals[job_id]["StartTime"]) if finals[job_id]["StartTime"] else None
        if actual is None:
            continue
        known = [seconds for end, seconds in ended if end <= moment][-50:]
        if estimate is None or not known:
            without += 1
            continue
        service_errors.append(abs((parse(estimate) - actual).total_seconds()))
        naive = moment + dt.timedelta(seconds=position * statistics.fmean(known))
        naive_errors.append(abs((naive - actual).total_seconds()))
        per_vm = moment + dt.timedelta(seconds=position * statistics.fmean(known) / vms)
        per_vm_errors.append(abs((per_vm - actual).total_seconds()))

    def summary(errors: list[float]) -> dict:
        return {"median_abs_error_s": round(statistics.median(errors), 2),
                "p90_abs_error_s": round(percentile(errors, 0.9), 2)} if errors else {}

    return {"vms": vms, "jobs": len(ids), "waited_and_asked": len(asked), "compared": len(service_errors),
            "without_estimate": without,
            "mean_run_seconds": round(statistics.fmean(seconds for _, seconds in ended), 2),
            "service": summary(service_errors), "naive": summary(naive_errors),
            "naive_per_vm": summary(per_vm_errors)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vms", type=int, default=3)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--per-burst", type=int, default=12)
    parser.add_argument("--gap", type=float, default=8.0, help="seconds between bursts")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    figures = run(args.vms, args.bursts, args.per_burst, args.gap, args.seed)
    print(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
