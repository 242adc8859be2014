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
import list_jobs  # noqa: E402
import prediction  # noqa: E402
import scoring  # noqa: E402
import sdk_modes  # noqa: E402
import timers  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def table(figures: dict) -> str:
    one, two = figures["jobs"]["one_instance"], figures["jobs"]["two_instances"]
    counted, modes = figures["jobs"]["requests"], figures["sdk_modes"]
    read, floor, latency = one["azurite_table_read"], one["floor"], one["submit_to_running"]
    rows = [
        ("one Azurite table read through the SDK, p50 / p99, CPU", f"{read['p50_ms']} / {read['p99_ms']} ms, "
                                                                  f"{read['cpu_ms']} ms CPU"),
        ("submit-to-Running p50 / p99 (1 instance)", f"{latency['p50_ms']} / {latency['p99_ms']} ms = "
                                                     f"{latency['over_floor']}x its floor"),
        ("  its floor: 2 storage-free job calls + point read + insert + 2-row transaction + queue message",
         f"{floor['sum_of_p50s_ms']} ms"),
        ("  the floor as the code sequences it (2 read rounds, the insert as a 1-operation transaction)",
         f"{floor['as_the_code_sequences_it_ms']} ms = {latency['over_floor_as_sequenced']}x"),
        ("  sequential storage round trips, p50 / max",
         f"{counted['submit_to_running_sequential_round_trips']['p50']} / "
         f"{counted['submit_to_running_sequential_round_trips']['max']}"),
        ("app storage requests per trivial job, end to end", f"{counted['per_job']} "
         f"({', '.join(f'{k} {v}' for k, v in counted['per_job_by_kind'].items() if v)})"),
        ("trivial jobs, 16-VM pool, 1 instance", f"{one['throughput']['jobs_per_second']} jobs/s, "
                                                 f"{one['throughput']['app_cpu_ms_per_job']} ms app CPU per job "
                                                 f"({one['throughput']['raw_cpu_ms_per_job']} ms raw)"),
        ("trivial jobs, 16-VM pool, 2 instances", f"{two['throughput']['jobs_per_second']} jobs/s, "
                                                  f"{two['throughput']['app_cpu_ms_per_job']} ms app CPU per job "
                                                  f"({two['throughput']['raw_cpu_ms_per_job']} ms raw)"),
        ("  host CPU per storage-free job call / instances' idle CPU (1 instance)",
         f"{one['throughput']['host_cpu_ms_per_storage_free_call']} ms / "
         f"{one['throughput']['idle_cpu_ms_per_second']} ms per s"),
        (f"{modes['callers']} callers reading a table: sync clients on threads",
         f"{modes['sync_threads']['reads_per_second']} reads/s, {modes['sync_threads']['cpu_ms_per_read']} ms CPU/read"),
        (f"{modes['callers']} callers reading a table: async clients on one loop",
         f"{modes['async_event_loop']['reads_per_second']} reads/s, "
         f"{modes['async_event_loop']['cpu_ms_per_read']} ms CPU/read"),
    ]
    for depth, line in figures["dispatch"]["by_waiting_jobs"].items():
        rows.append((f"dispatch per job, {int(depth):,} waiting, p50 / p99", f"{line['p50_ms']} / {line['p99_ms']} ms"))
    history = figures["dispatch"].get("with_vm_history")
    if history:
        rows.append((f"dispatch per job, {history['waiting']} waiting, {history['deleted_vms']:,} deleted VMs, p50 / p99",
                     f"{history['p50_ms']} / {history['p99_ms']} ms"))
    for name, ratio in figures["dispatch"]["ratio"].items():
        if name != "target":
            rows.append((f"  dispatch p50 ratio {name.replace('_', ' ')}", f"{ratio}x"))
    tick = figures["billing"]["ticks"][-1]
    rows.append((f"billing tick, {figures['billing']['pools']:,} pools",
                 f"{tick['seconds']} s, {tick['requests_per_pool']} storage requests per pool"))
    for size, line in figures["scoring"].items():
        job, plain = line["job_blob_to_blob"], line["pandas_read_write_only"]
        rows.append((f"scoring {int(size):,} rows ({line['csv_megabytes']} MB) blob to blob",
                     f"{job['rows_per_second']:,} rows/s, peak {job['peak_rss_mb']} MB"))
        rows.append(("  pandas read + write only, same CSV", f"{plain['rows_per_second']:,} rows/s, "
                                                             f"peak {plain['peak_rss_mb']} MB"))
    passes = figures["timers"]
    for timer, label in (("sweep", "Sweeper pass"), ("accrue_all", "BillingTimer pass")):
        none, full = passes["no_history"][timer], passes["with_history"][timer]
        ratio = passes["ratio_history_over_none"][timer]
        rows.append((f"{label}, {passes['active_pools']} active pools: no history / "
                     f"{passes['ended_jobs_in_history']:,} ended jobs",
                     f"{none['requests_per_pass']} / {full['requests_per_pass']} storage requests, "
                     f"{none['ms_per_pass_p50']} / {full['ms_per_pass_p50']} ms = {ratio['requests']}x requests, "
                     f"{ratio['ms_per_pass']}x time, {ratio['app_cpu_ms_per_pass']}x app CPU"))
    for pools, line in figures["list_jobs"]["by_pools"].items():
        rows.append((f"a page of 50 jobs, subscription of {pools} pool(s): as built / a per-service index",
                     f"{line['as_built_p50_ms']} / {line['per_service_index_p50_ms']} ms"))
    run = figures["chaos"]
    rows.append((f"chaos: {run['jobs']} jobs, {run['instances']} instances, {run['kills']} kills, "
                 f"{run['throttles']} throttling windows",
                 f"{run['finished']} finished, {run['failed']} failed, {run['lost']} lost, "
                 f"{run['throttled_storage_requests']} storage requests throttled, "
                 f"error answers {run['error_answers']}, {run['untracked_jobs']} untracked jobs "
                 f"({run['submits_unanswered']} submits unanswered), {run['runs_begun_again']} runs begun again, "
                 f"{run['busy_over_provisioned_samples']} busy>provisioned, {run['fifo_breaks']} FIFO breaks, "
                 f"billing mismatches {run['pools_billing_mismatch']}, {run['seconds']} s"))
    guess = figures["prediction"]
    for name, label in (("service", "EstimatedStartTime"), ("naive", "naive: position x mean run"),
                        ("naive_per_vm", "naive: position x mean run / VMs")):
        rows.append((f"start prediction, {guess['compared']} waiting jobs on {guess['vms']} VMs: {label}",
                     f"median {guess[name]['median_abs_error_s']} s, p90 {guess[name]['p90_abs_error_s']} s off"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def main() -> None:
    started = time.time()
    figures = {"jobs": jobs.main([]), "billing": billing.main([]), "dispatch": dispatch.main([]),
               "timers": timers.main([]), "scoring": scoring.main([]), "sdk_modes": sdk_modes.main([]),
               "chaos": chaos.main([]), "list_jobs": list_jobs.main([]),
               "prediction": prediction.main([])}
    figures["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(figures, indent=2, default=str))
    print()
    print(table(figures))
    print(f"\nall benchmarks took {figures['seconds']} s; figures in {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
