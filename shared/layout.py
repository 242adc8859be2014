"""Where rows live in the Pools table.

Every pool of a subscription, with its VMs, its waiting jobs and the execution state of
its started jobs, shares the subscription's partition, so that a dispatch (claim a VM,
take the head of the queue, mark the job Running) is one entity-group transaction.
The shared classic environment is a pool of its own in a partition no subscription can
have. Row keys:

    account                          the subscription's one Batch Pool account
    counter|<accountId>              active pools of an account (MaxPools quota)
    pool|<poolId>                    the pool: owner, target size, billing plan, state
    vm|<poolId>|<ordinal>            one VM: state, provisioned and deleted times, job
    wait|<poolId>|<startedMs>|<job>  a waiting job; key order is FIFO order
    run|<jobId>                      a started job's execution state, until it ends
    jobhour|<poolId>|<hourMs>|<job>  a pool job's whole seconds in one hour, written as it ends
"""
from __future__ import annotations

import datetime as dt

CLASSIC_PARTITION = "~classic"  # '~' is not allowed in subscription ids
CLASSIC_POOL = "shared"


OWNER_ROW = "account"


def counter_key(account_id: str) -> str:
    return f"counter|{account_id}"


def pool_key(pool_id: str) -> str:
    return f"pool|{pool_id}"


POOL_PREFIX = "pool|"


VM_PREFIX = "vm|"


def vm_prefix(pool_id: str) -> str:
    return f"vm|{pool_id}|"


def vm_key(pool_id: str, ordinal: int) -> str:
    return f"vm|{pool_id}|{ordinal:06d}"


def wait_prefix(pool_id: str) -> str:
    return f"wait|{pool_id}|"


def wait_key(pool_id: str, started: dt.datetime, job_id: str) -> str:
    millis = int(started.timestamp() * 1000)
    return f"wait|{pool_id}|{millis:014d}|{job_id}"


RUN_PREFIX = "run|"


def run_key(job_id: str) -> str:
    return f"run|{job_id}"


def job_hour_prefix(pool_id: str, hour: dt.datetime | None = None) -> str:
    """The job-hour rows of a pool, or of one of its hours."""
    return f"jobhour|{pool_id}|" + (f"{int(hour.timestamp() * 1000):014d}|" if hour else "")


def job_hour_key(pool_id: str, hour: dt.datetime, job_id: str) -> str:
    return f"{job_hour_prefix(pool_id, hour)}{job_id}"
