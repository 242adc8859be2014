"""Play the seed's story against a running Batch Pool service (`make run`, then `make demo`).

An operator creates an account and a New web service; the pool owner creates a pool of 2
VMs; a consumer submits 5 scoring jobs on generated Adult Census data: two run at once,
three wait and then run in the order they were started; every output is read back through
the token its job's Results carry, as a BES client would; the pool is resized to zero, and
the figures are printed.
"""
from __future__ import annotations

import argparse
import io
import json
import secrets
import sys
import time
from pathlib import Path

import pandas as pd
import requests
from azure.storage.blob import BlobServiceClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from samples import census  # noqa: E402
from scripts.local_settings import first_operator_key  # noqa: E402

TERMINAL = ("Finished", "Failed", "Cancelled")


class Demo:
    def __init__(self, base: str, operator_key: str, storage: str, out=print):
        self.base = base.rstrip("/") + "/api"
        self.operator_key = operator_key
        self.http = requests.Session()
        self.blobs = BlobServiceClient.from_connection_string(storage)
        self.storage = storage
        self.say = out

    def call(self, method: str, path: str, body=None, key: str | None = None, admin: bool = False) -> dict:
        headers = {"Authorization": f"Bearer {self.operator_key if admin else key}"}
        response = self.http.request(method, path if path.startswith("http") else self.base + path,
                                     json=body, headers=headers, timeout=60)
        if response.status_code >= 400:
            raise SystemExit(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    def run(self, jobs: int, rows: int, vm_count: int, seconds_per_chunk: float) -> dict:
        tag = secrets.token_hex(3)
        subscription, account, service_id = f"demo-sub-{tag}", f"demo-{tag}", "census"
        created = self.call("PUT", f"/accounts/{account}", {"SubscriptionId": subscription, "MaxPools": 2,
                                                             "MaxVmsPerPool": 8}, admin=True)
        self.say(f"account {account}: pool service URL {created['PoolServiceUrl']}")
        service = self.call("PUT", f"/subscriptions/{subscription}/services/{service_id}",
                            {"Name": "Adult census income", "Kind": "New", "BillingPlanId": "plan-demo",
                             "Scorer": "samples.census:score"}, admin=True)
        self.say(f"web service {service_id}: billing plan plan-demo, jobs at {service['BatchRequestsUrl']}")
        pools = f"{created['PoolServiceUrl']}/pools"
        key = created["PrimaryKey"]
        pool = self.call("POST", pools, {"PoolId": "nightly", "VmCount": vm_count,
                                         "ServiceSwaggerUrl": service["SwaggerUrl"]}, key=key)
        self.say(f"pool nightly: {pool['VmCount']} VMs provisioning")
        while self.call("GET", f"{pools}/nightly", key=key)["VmCounts"]["Idle"] < vm_count:
            time.sleep(0.5)
        self.say("pool nightly: all VMs idle (billing has started)")

        container = self.blobs.get_container_client(f"demo-{tag}")
        container.create_container()
        for index in range(jobs):
            data = "".join(census.generate_csv(rows, seed=index)).encode()
            container.upload_blob(f"input-{index}.csv", data)
        self.say(f"uploaded {jobs} census files of {rows} rows to container demo-{tag}")

        jobs_url = service["BatchRequestsUrl"].split("?")[0]
        api_key = service["ApiKey"]
        ids, started_at = [], {}
        for index in range(jobs):
            location = lambda path: {"ConnectionString": self.storage, "RelativeLocation": f"demo-{tag}/{path}",
                                     "BaseLocation": None, "SasBlobToken": None}
            body = {"Input": location(f"input-{index}.csv"), "Outputs": {"output1": location(f"scored-{index}.csv")},
                    "GlobalParameters": {"SecondsPerChunk": str(seconds_per_chunk)}, "AzureBatchPoolId": "nightly"}
            job_id = self.call("POST", f"{jobs_url}?api-version=2.0", body, key=api_key)
            status = self.call("POST", f"{jobs_url}/{job_id}/start?api-version=2.0", key=api_key)
            started_at[job_id] = time.monotonic()
            where = (f"queue position {status['QueuePosition']}, {status['PendingReason']}" if status["QueuePosition"]
                     else f"on {status['VmId']}")
            self.say(f"job {index + 1}: {status['StatusCode']} ({where})")
            ids.append(job_id)

        finals = {}
        while len(finals) < len(ids):
            for job_id in ids:
                if job_id not in finals:
                    status = self.call("GET", f"{jobs_url}/{job_id}?api-version=2.0", key=api_key)
                    if status["StatusCode"] in TERMINAL:
                        finals[job_id] = status
                        outcome = status["Details"] or f"{(status['Progress'] or {}).get('RowsScored', 0)} rows scored"
                        self.say(f"job {ids.index(job_id) + 1}: {status['StatusCode']} — {outcome}")
            time.sleep(0.3)

        order = sorted(ids, key=lambda j: finals[j]["StartTime"])
        for index, job_id in enumerate(ids):
            # As a BES client reads an output: BaseLocation + RelativeLocation + SasBlobToken.
            result = finals[job_id]["Results"]["output1"]
            output = requests.get(result["BaseLocation"] + result["RelativeLocation"] + result["SasBlobToken"],
                                  timeout=60)
            output.raise_for_status()
            scored = pd.read_csv(io.BytesIO(output.content))
            assert len(scored) == rows and "Scored Labels" in scored.columns, f"output of job {index + 1} is wrong"
        self.say(f"all {jobs} outputs read back through their result tokens, {rows} scored rows each; "
                 f"jobs started in order {[ids.index(j) + 1 for j in order]}")
        resized = self.call("POST", f"{pools}/nightly/resize", {"VmCount": 0}, key=key)
        self.say(f"pool nightly resized to 0: {resized['ComputeSeconds']} VM-seconds = "
                 f"{resized['ComputeHours']} compute hours billed to plan-demo")
        return {"account": account, "jobs": [finals[j] for j in ids], "start_order": [ids.index(j) for j in order],
                "compute_seconds": resized["ComputeSeconds"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="http://127.0.0.1:7071")
    parser.add_argument("--operator-key", help="an operator key (default: the first of OPERATOR_KEYS in "
                                               "local.settings.json)")
    parser.add_argument("--storage", default="UseDevelopmentStorage=true",
                        help="connection string of the storage holding the demo's blobs")
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--vms", type=int, default=2)
    parser.add_argument("--seconds-per-chunk", type=float, default=3.0,
                        help="the sample scorer's pause per chunk, to make jobs last long enough to queue")
    args = parser.parse_args(argv)
    operator_key = args.operator_key or first_operator_key(json.loads((ROOT / "local.settings.json").read_text()))
    Demo(args.base, operator_key, args.storage).run(args.jobs, args.rows, args.vms, args.seconds_per_chunk)
    return 0


if __name__ == "__main__":
    sys.exit(main())
