"""How the CLI shows things: aligned tables, JSON, hourly bar charts, a job's progress line
and a pool's live view. Pure functions of their input, so they are tested on their own."""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

BLOCKS = " ▏▎▍▌▋▊▉█"
VM_STATES = ("Provisioning", "Idle", "Busy", "Draining")


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def table(rows: Iterable[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned text table; `columns` is (heading, field) in order."""
    cells = [[heading for heading, _ in columns]]
    for row in rows:
        cells.append(["" if row.get(field) is None else str(row.get(field)) for _, field in columns])
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(value.ljust(widths[i]) for i, value in enumerate(line)).rstrip() for line in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def fields(record: dict, names: Sequence[str]) -> str:
    """One record as `name: value` lines."""
    width = max(len(name) for name in names)
    return "\n".join(f"{name.ljust(width)}  {'' if record.get(name) is None else record.get(name)}" for name in names)


def bar(value: float, top: float, width: int) -> str:
    """A horizontal bar of `value` against `top`, `width` cells wide, in eighths of a cell."""
    if top <= 0 or value <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, rest = divmod(eighths, 8)
    return BLOCKS[-1] * full + (BLOCKS[rest] if rest else "")


def hourly_chart(title: str, hourly: list[dict], width: int = 40) -> str:
    """Compute hours per hour as one bar per hour: `2026-11-26 17:00 ███▌ 0.438 h (1,575 VM-s)`."""
    lines = [title]
    if not hourly:
        return title + "\n  (no compute hours billed in this range)"
    top = max(entry["VmSeconds"] for entry in hourly)
    for entry in hourly:
        hour = entry["Hour"][:16].replace("T", " ")
        lines.append(f"  {hour}  {bar(entry['VmSeconds'], top, width).ljust(width)}  "
                     f"{entry['VmSeconds'] / 3600:.3f} h ({entry['VmSeconds']:,} VM-s)")
    return "\n".join(lines)


def usage_report(report: dict, width: int = 40) -> str:
    """The account's usage: totals, a chart per pool and per billing plan, the savings."""
    total = report["Total"]
    out = [f"Usage from {report['From']} to {report['To']}",
           f"Total: {total['ComputeHours']:.3f} compute hours ({total['VmSeconds']:,} VM-seconds)"]
    for pool in report["Pools"]:
        out.append("")
        out.append(hourly_chart(f"Pool {pool['PoolId']} (plan {pool['BillingPlanId']}): "
                                f"{pool['ComputeHours']:.3f} compute hours", pool.get("Hourly") or [], width))
    for plan in report["BillingPlans"]:
        out.append("")
        classic = (f"; classic jobs {plan['ClassicJobHours']:.3f} h" if plan.get("ClassicJobSeconds") else "")
        out.append(hourly_chart(f"Billing plan {plan['BillingPlanId'] or '(none)'}: "
                                f"{plan['PoolComputeHours']:.3f} pool compute hours{classic}",
                                plan.get("Hourly") or [], width))
    if report.get("Services"):
        out.append("")
        out.append("Cost by web service (own VM time + share of idle time):")
        out.append(table([{**s, "ComputeHours": f"{s['ComputeHours']:.4f}"} for s in report["Services"]],
                         [("SERVICE", "ServiceId"), ("JOBS", "Jobs"), ("OWN VM-S", "ComputeSeconds"),
                          ("IDLE SHARE VM-S", "AllocatedIdleSeconds"), ("COMPUTE H", "ComputeHours")]))
        out.append("")
        out.append("Costliest jobs:")
        out.append(table([{**j, "ComputeHours": f"{j['ComputeHours']:.4f}"} for j in report["Jobs"][:5]],
                         [("JOB", "JobId"), ("SERVICE", "ServiceId"), ("POOL", "PoolId"),
                          ("OWN VM-S", "ComputeSeconds"), ("IDLE SHARE VM-S", "AllocatedIdleSeconds"),
                          ("COMPUTE H", "ComputeHours")]))
    saved = report["AutoScaleDown"]
    out.append("")
    out.append(f"Auto scale-down saved {saved['SavedComputeHours']:.3f} compute hours "
               f"({saved['SavedVmSeconds']:,} VM-seconds)")
    return "\n".join(out)


def _drains(pool: dict) -> str:
    if pool.get("QueueDrainsAt"):
        return f"  Queue drains at {_clock(pool['QueueDrainsAt'])}"
    if pool.get("QueuedJobs") and (pool.get("Estimate") or {}).get("Basis") == "NoHistory":
        return "  Queue drain: no estimate yet"
    return ""


def _megabytes(count: int | None) -> str:
    return "?" if count is None else f"{count / 1_000_000:.1f} MB"


def progress_line(status: dict, elapsed: float | None, width: int = 20) -> str:
    """One line saying where a job is: waiting (and why), running (and how far), or ended;
    with the seconds since it was followed, unless `elapsed` is None."""
    line = _progress(status, width)
    if elapsed is None or status["StatusCode"] in ("Failed", "Cancelled"):
        return line
    if status["StatusCode"] == "Finished":
        return f"{line} in {elapsed:.0f} s"
    return f"{line}, {elapsed:.0f} s"


def _progress(status: dict, width: int) -> str:
    code = status["StatusCode"]
    job = status["JobId"]
    if code == "NotStarted":
        if status.get("QueuePosition"):
            return (f"{job} waiting: queue position {status['QueuePosition']} in pool "
                    f"{status.get('AzureBatchPoolId') or 'classic'} ({status.get('PendingReason')})"
                    f"{expected_start(status)}")
        return f"{job} waiting: {status.get('PendingReason') or 'not started'}"
    progress = status.get("Progress") or {}
    rows = progress.get("RowsScored") or 0
    if code == "Running":
        read, size = progress.get("InputBytesRead") or 0, progress.get("InputBytes")
        fraction = min(1.0, read / size) if size else 0.0
        filled = round(fraction * width)
        return (f"{job} running on {status.get('VmId') or '?'}: [{'#' * filled}{'.' * (width - filled)}] "
                f"{fraction:4.0%} {rows:,} rows scored, {_megabytes(read)} of {_megabytes(size)}")
    if code == "Finished":
        return f"{job} Finished: {rows:,} rows scored"
    return f"{job} {code}: {status.get('Details') or 'no reason given'}"


def _clock(moment: str) -> str:
    return moment[11:19] + "Z"


def expected_start(status: dict) -> str:
    """`, expected to start at 12:03:04Z`, or why there is no estimate (empty if none applies)."""
    if status.get("EstimatedStartTime"):
        return f", expected to start at {_clock(status['EstimatedStartTime'])}"
    basis = (status.get("Estimate") or {}).get("Basis")
    if basis == "NoHistory":
        return ", no start estimate yet (no recent jobs on the pool)"
    return ""


def job_details(job: dict) -> list[tuple[str, str]]:
    """The parts of a job's status beyond its plain fields, as (label, text): how far it got,
    what it cost, how each attempt ended."""
    lines = []
    progress = job.get("Progress")
    if progress:
        size = progress["InputBytes"]
        lines.append(("Progress", f"{progress['RowsScored']:,} rows scored, {progress['InputBytesRead'] or 0:,} of "
                                  f"{'?' if size is None else f'{size:,}'} input bytes"))
    cost = job.get("Cost")
    if cost:
        lines.append(("Cost", f"{cost['ComputeSeconds']:,} VM-s own + {cost['AllocatedIdleSeconds']:,} VM-s idle share"
                              f" = {cost['ComputeHours']:.4f} compute hours"
                              f"{'' if cost['Final'] else ' (not final yet)'}"))
    for attempt in job.get("AttemptOutcomes") or []:
        reason = f": {attempt['Reason']}" if attempt.get("Reason") else ""
        lines.append((f"Attempt {attempt['Attempt']}", f"{attempt['Outcome']}{reason}"))
    return lines


def pool_screen(pool: dict, now: str) -> str:
    """A pool's live view: target, VM counts and each VM, the queue, compute hours."""
    counts = pool["VmCounts"]
    out = [f"Pool {pool['PoolId']}  {pool['State']}  target {pool['VmCount']} VMs  plan {pool['BillingPlanId']}  "
           f"as of {now}",
           "  ".join(f"{state} {counts.get(state, 0)}" for state in VM_STATES),
           f"Queued jobs {pool['QueuedJobs']}  Running jobs {pool['RunningJobs']}  "
           f"Compute hours {pool['ComputeHours']:.3f}{_drains(pool)}", ""]
    live = [vm for vm in pool.get("Vms") or [] if vm["State"] != "Deleted"]
    out.append(table(live, [("VM", "VmId"), ("STATE", "State"), ("JOB", "JobId"), ("PROVISIONED", "ProvisionedAt"),
                            ("VM-SECONDS", "ComputeSeconds")]) if live else "(no VMs)")
    queue = pool.get("Queue") or []
    if queue:
        out.append("")
        out.append("Queue (first in line first):")
        out.extend(f"  {index}. {job}" for index, job in enumerate(queue, 1))
    return "\n".join(out)
