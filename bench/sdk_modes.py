"""Sync or async SDK clients for the app: the same table reads, made by 16 callers at once,
through the sync TableClient on 16 threads (as the app makes it: its shared, tuned transport;
as sync function invocations share the worker's thread pool) and through the async
TableClient (aiohttp) on one event loop (as `async def` entry points share the worker's loop). Prints reads per second and this process's CPU per read for each.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

from common import ROOT, start_azurite

CALLERS = 16


def sync_reads(connection_string: str, reads: int) -> dict:
    from shared.storage import clients
    from shared.storage.connections import parse_connection_string
    table = clients.table_service(parse_connection_string(connection_string)).get_table_client("modes")

    def caller(count):
        for _ in range(count):
            table.get_entity("p", "r")

    cpu, wall = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(CALLERS) as pool:
        list(pool.map(caller, [reads // CALLERS] * CALLERS))
    return _figures(reads, cpu, wall)


def async_reads(connection_string: str, reads: int) -> dict:
    from azure.data.tables.aio import TableServiceClient

    async def run():
        async with TableServiceClient.from_connection_string(connection_string) as service:
            table = service.get_table_client("modes")

            async def caller(count):
                for _ in range(count):
                    await table.get_entity("p", "r")

            await caller(10)
            cpu, wall = time.process_time(), time.perf_counter()
            await asyncio.gather(*(caller(reads // CALLERS) for _ in range(CALLERS)))
            return _figures(reads, cpu, wall)

    return asyncio.run(run())


def _figures(reads: int, cpu: float, wall: float) -> dict:
    seconds = time.perf_counter() - wall
    return {"reads": reads, "reads_per_second": round(reads / seconds), "cpu_ms_per_read": round(
        (time.process_time() - cpu) * 1000 / reads, 3)}


def run(reads: int) -> dict:
    azurite = start_azurite(ROOT, None)
    try:
        from azure.data.tables import TableServiceClient
        table = TableServiceClient.from_connection_string(azurite.connection_string).create_table("modes")
        table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "Value": 1})
        sync_reads(azurite.connection_string, CALLERS * 10)
        return {"callers": CALLERS, "sync_threads": sync_reads(azurite.connection_string, reads),
                "async_event_loop": async_reads(azurite.connection_string, reads)}
    finally:
        azurite.stop()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=3200)
    result = run(parser.parse_args(argv).reads)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
