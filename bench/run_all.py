"""Run every benchmark, print a table of the figures, and keep them in bench/results/latest.json."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import billing  # noqa: E402
import chaos  # noqa: E402
import dispatch  # noqa: E402
import jobs  # noqa: E402
import scoring  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def table(figures: dict) -> str:
    one, four = figures["jobs"]["one_instance"], figures["jobs"]["four_instances"]
    rows = [
        ("one Azurite table read, app's client, p50 / p99", f"{one['azurite_table_read']['p50_ms']} / "
                                                           f"{one['azurite_table_read']['p99_ms']} ms"),
        ("one Azurite table read, Azure SDK, p50 / p99", f"{one['azurite_table_read']['sdk_p50_ms']} / "
                                                         f"{one['azurite_table_read']['sdk_p99_ms']} ms"),
        ("submit-to-Running p50 / p99 (1 instance)", f"{one['submit_to_running']['p50_ms']} / "
                                                     f"{one['submit_to_running']['p99_ms']} ms = "
                                                     f"{one['submit_to_running']['in_table_reads']} app-client reads"
                                                     f" = {one['submit_to_running']['in_sdk_table_reads']} SDK reads"),
        ("  its floor: 2 storage-free job calls + insert + 2-row transaction + queue message",
         f"{one['floor']['sum_of_p50s_ms']} ms = {one['floor']['in_table_reads']} app-client reads = "
         f"{one['floor']['in_sdk_table_reads']} SDK reads"),
        ("trivial jobs, 16-VM pool, 1 instance", f"{one['throughput']['jobs_per_second']} jobs/s"),
        ("trivial jobs, 16-VM pool, 4 instances", f"{four['throughput']['jobs_per_second']} jobs/s"),
    ]
    for depth, line in figures["dispatch"]["by_waiting_jobs"].items():
        rows.append((f"dispatch per job, {int(depth):,} waiting, p50 / p99", f"{line['p50_ms']} / {line['p99_ms']} ms"))
    history = figures["dispatch"].get("with_vm_history")
    if history:
        rows.append((f"dispatch per job, {history['waiting']} waiting, {history['deleted_vms']:,} deleted VMs, p50 / p99",
                     f"{history['p50_ms']} / {history['p99_ms']} ms"))
    tick = figures["billing"]["ticks"][-1]
    rows.append((f"billing tick, {figures['billing']['pools']:,} pools",
                 f"{tick['seconds']} s, {tick['requests_per_pool']} storage requests per pool"))
    for size, line in figures["scoring"].items():
        job, plain = line["job_blob_to_blob"], line["pandas_read_write_only"]
        rows.append((f"scoring {int(size):,} rows ({line['csv_megabytes']} MB) blob to blob",
                     f"{job['rows_per_second']:,} rows/s, peak {job['peak_rss_mb']} MB"))
        rows.append(("  pandas read + write only, same CSV", f"{plain['rows_per_second']:,} rows/s, "
                                                             f"peak {plain['peak_rss_mb']} MB"))
    run = figures["chaos"]
    rows.append((f"chaos: {run['jobs']} jobs, {run['instances']} instances, {run['kills']} kills",
                 f"{run['finished']} finished, {run['lost']} lost, {run['rerun_after_a_kill']} re-run after a kill, "
                 f"{run['busy_over_provisioned_samples']} busy>provisioned, {run['fifo_breaks']} FIFO breaks, "
                 f"billing mismatches {run['pools_billing_mismatch']}, {run['seconds']} s"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main() -> None:
    started = time.time()
    figures = {"jobs": jobs.main([]), "billing": billing.main([]), "dispatch": dispatch.main([]),
               "scoring": scoring.main([]), "chaos": chaos.main([])}
    figures["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(figures, indent=2))
    print()
    print(table(figures))
    print(f"\nall benchmarks took {figures['seconds']} s; figures in {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
