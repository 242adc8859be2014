"""One billing tick over 1,000 active pools: seconds per tick and storage requests per pool.

Pools are created through the API (10 accounts x 100 pools of 2 VMs); the tick
(`shared.ledger.accrue_all`) then runs in this process, with every request the app's storage
clients send counted (beside the count of operations the tick itself reports).
"""
from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

from common import RequestCounter, Stack, azurite_ports, use_storage


def make_pools(stack: Stack, accounts: int, pools_each: int) -> None:
    def one_account(_):
        tenant = stack.tenant(0, max_pools=pools_each)
        service_url = stack.api.put_service(tenant["subscription"], "svc").json()["SwaggerUrl"]
        for index in range(pools_each):
            answer = stack.api.call("POST", tenant["pools"], {"PoolId": f"p{index}", "VmCount": 2,
                                                              "ServiceSwaggerUrl": service_url}, key=tenant["key"])
            assert answer.status_code == 201, answer.text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one_account, range(accounts)))


def run(accounts: int, pools_each: int) -> dict:
    stack = Stack(1, env={"BILLING_SCHEDULE": "0 0 0 1 1 *"})  # the host's own timer stays out of the way
    try:
        started = time.perf_counter()
        make_pools(stack, accounts, pools_each)
        setup_seconds = time.perf_counter() - started
        use_storage(stack.azurite.connection_string, "bench")
        from shared import ledger
        ticks = []
        for _ in range(2):
            time.sleep(1.5)
            with RequestCounter(azurite_ports(stack.azurite)) as counter:
                began = time.perf_counter()
                figures = ledger.accrue_all()
                seconds = time.perf_counter() - began
            ticks.append({"pools": figures["pools"], "seconds": round(seconds, 2),
                          "storage_requests": counter.count, "operations_the_tick_reported": figures["operations"],
                          "requests_per_pool": round(counter.count / max(1, figures["pools"]), 2),
                          "requests_by_kind": counter.kinds()})
        return {"pools": accounts * pools_each, "setup_seconds": round(setup_seconds, 1), "ticks": ticks}
    finally:
        stack.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--pools-per-account", type=int, default=100)
    args = parser.parse_args(argv)
    result = run(args.accounts, args.pools_per_account)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
