"""Where rows live: every partition and row key of the Pools table is spelled here.

Three kinds of partition:

* **A subscription's** (`<subscriptionId>`), small and rarely written:

      account                  the subscription's one Batch Pool account (a claim on it)
      counter|<accountId>      the account's active pools (the MaxPools quota)
      pool|<poolId>            a registry row per pool ever made: owner, state, size

  Accounts and web services keep their own tables (`Accounts` by account id, `Services` by
  subscription), as their routes name them.

* **A pool's** (`<subscriptionId>|<poolId>`; the shared classic environment is `~classic`):
  every row that changes together when a job starts or ends, so each move is one
  entity-group transaction:

      ledger|<yyyymmddhh>          the pool's whole VM-seconds of one hour (BillingTimer)
      jobhour|<hourMs>|<jobId>     a job's whole seconds in one hour, written as it ends
      job|<jobId>                  one row per job: its request, policies, state and, once
                                   started, its execution (VM, runner lease, heartbeat,
                                   checkpoint, attempts)
      pool                         the pool: target size, VM ordinals, billing watermark
      q|<startedMs>|<jobId>        a waiting job; key order is FIFO order
      vm|<ordinal>                 one VM: state, provisioned and deleted times, its job, its
                                   last runs' times (what start estimates go by)

  Wait rows sort just before the VMs, so one range read from `q|` returns the queue's head
  if anyone waits, and otherwise the VMs.

* **The active pools** (`~active`): a row `<pool partition>` per pool the timers must still
  visit (active, or deleted but not yet fully billed), so they never scan the table.

A job id names its pool: `<inverted submit ms><random hex>` for a classic job, and that with
`-<poolId>` for a pool job, so a job's row is found from its id and its service alone.
"""
from __future__ import annotations

import datetime as dt
import re
import secrets

CLASSIC_PARTITION = "~classic"  # '~' is in no subscription id
CLASSIC_POOL = "shared"
ACTIVE_PARTITION = "~active"

# The subscription's partition.
OWNER_ROW = "account"
REGISTRY_PREFIX = "pool|"


def counter_key(account_id: str) -> str:
    return f"counter|{account_id}"


def registry_key(pool_id: str) -> str:
    return f"{REGISTRY_PREFIX}{pool_id}"


# A pool's partition.
POOL_ROW = "pool"
LEDGER_PREFIX = "ledger|"
JOB_HOUR_PREFIX = "jobhour|"
JOB_PREFIX = "job|"
WAIT_PREFIX = "q|"
VM_PREFIX = "vm|"
# One range read from here returns the queue's head (if any) before the VMs.
QUEUE_AND_VMS = (WAIT_PREFIX, VM_PREFIX + "~")


def pool_partition(subscription_id: str, pool_id: str) -> str:
    return f"{subscription_id}|{pool_id}"


def ledger_key(hour: dt.datetime) -> str:
    return f"{LEDGER_PREFIX}{hour:%Y%m%d%H}"


def _hour_ms(hour: dt.datetime) -> str:
    return f"{int(hour.timestamp() * 1000):014d}"


def job_hour_prefix(hour: dt.datetime | None = None) -> str:
    """The pool's job-hour rows, or those of one hour."""
    return JOB_HOUR_PREFIX + (f"{_hour_ms(hour)}|" if hour else "")


def job_hour_key(hour: dt.datetime, job_id: str) -> str:
    return f"{job_hour_prefix(hour)}{job_id}"


def job_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def job_of_key(row_key: str) -> str:
    return row_key[len(JOB_PREFIX):]


def wait_key(started: dt.datetime, job_id: str) -> str:
    return f"{WAIT_PREFIX}{int(started.timestamp() * 1000):014d}|{job_id}"


def job_of_wait_key(row_key: str) -> str:
    return row_key.rsplit("|", 1)[1]


def vm_key(ordinal: int) -> str:
    return f"{VM_PREFIX}{ordinal:06d}"


# Job ids.
_EPOCH_CEILING_MS = 10 ** 14
_STAMP_LENGTH = 30  # 14 digits of inverted time, 16 hex digits
_JOB_ID = re.compile(r"[0-9]{14}[0-9a-f]{16}(?:-([A-Za-z0-9][A-Za-z0-9_-]{0,63}))?")
MAX_JOB_ID_LENGTH = _STAMP_LENGTH + 1 + 64


def new_job_id(now: dt.datetime, pool_id: str | None) -> str:
    """Newest first in key order (the inverted submit time in ms, then random hex), naming the
    job's pool unless it runs in the classic environment."""
    inverted = _EPOCH_CEILING_MS - int(now.timestamp() * 1000)
    stamp = f"{inverted:014d}{secrets.token_hex(8)}"
    return f"{stamp}-{pool_id}" if pool_id else stamp


def job_stamp(job_id: str) -> str:
    """The part of a job id that alone tells it from every other (its time and random hex)."""
    return job_id[:_STAMP_LENGTH]


def pool_of_job(job_id: object) -> str | None:
    """The pool a job id names ('' for a classic job), or None if it is no job id of ours."""
    if not isinstance(job_id, str) or len(job_id) > MAX_JOB_ID_LENGTH:
        return None
    match = _JOB_ID.fullmatch(job_id)
    if match is None:
        return None
    return match.group(1) or ""


def job_partition(subscription_id: str, job_id: str) -> str | None:
    """The partition of a job of this subscription, from its id alone (None: not a job id)."""
    pool_id = pool_of_job(job_id)
    if pool_id is None:
        return None
    return pool_partition(subscription_id, pool_id) if pool_id else CLASSIC_PARTITION
