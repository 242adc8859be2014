"""The storage edge of the job lifecycle: reading job rows, writing the moves
`shared.lifecycle` decides, and the queue messages that follow them.

A run message names the job's partition and id. One sent by a start that had the job row in
hand also carries the row and its etag, so that its runner claims the job with one
conditional write and no read; any other (a hand-over between slices, a retry, a re-send by
the sweeper) makes the runner read the row first.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging

from shared import events, layout, lifecycle
from shared.storage import POOLS, get_queues, get_store
from shared.storage.tables import Row, etag_of

log = logging.getLogger(__name__)

RUN_QUEUE = "run-job"
TICK_QUEUE = "schedule-tick"
# A queue message holds 64 KiB once base64-encoded (as the queues here are): a message that
# would be larger goes without the rows, and its runner reads them.
MAX_MESSAGE_BYTES = 64 * 1024


def read_job(partition: str, job_id: str) -> Row | None:
    return get_store().get(POOLS, partition, layout.job_key(job_id))


def write(move: lifecycle.Move) -> None:
    """Commit a move (WriteConflict if a row it is conditional on changed), then emit its events."""
    get_store().transact(POOLS, move.operations)
    for job_id, event in move.events:
        events.emit(job_id, event.kind, event.fields, once=event.once, unless=event.unless)


def _encoded(value):
    if isinstance(value, dt.datetime):
        return {"t": value.isoformat()}
    if isinstance(value, bytes):
        return {"b": base64.b64encode(value).decode()}
    return value


def _decoded(value):
    if isinstance(value, dict):
        if "t" in value:
            return dt.datetime.fromisoformat(value["t"])
        if "b" in value:
            return base64.b64decode(value["b"])
    return value


def _carried(row: Row) -> str:
    return json.dumps({"Etag": etag_of(row), "Row": {name: _encoded(value) for name, value in row.items()}})


def _uncarried(text: str) -> Row:
    carried = json.loads(text)
    return Row({name: _decoded(value) for name, value in carried["Row"].items()}, {"etag": carried["Etag"]})


def run_message(job: dict, vm: dict | None = None) -> dict:
    """The message that asks a runner to run the job: with the job and VM rows as they were
    written, when the sender has both with their etags and they fit."""
    message = {"Partition": job["PartitionKey"], "JobId": job["JobId"]}
    if isinstance(job, Row) and isinstance(vm, Row) and etag_of(job) and etag_of(vm):
        carried = {**message, "Job": _carried(job), "Vm": _carried(vm)}
        if encoded_size(carried) <= MAX_MESSAGE_BYTES:
            return carried
    return message


def encoded_size(message: dict) -> int:
    """The bytes a message takes on the queue: its JSON, base64-encoded."""
    return 4 * -(-len(json.dumps(message).encode()) // 3)


def send_run(job: dict, vm: dict | None = None, delay_seconds: int = 0) -> None:
    get_queues().send(RUN_QUEUE, run_message(job, vm), delay_seconds=delay_seconds)


def send_back(body: bytes, delay_seconds: int) -> None:
    """A run message as it came, sent again as a new message: handed back untouched."""
    get_queues().send(RUN_QUEUE, json.loads(body), delay_seconds=delay_seconds)


def send_after_outage(partition: str, job_id: str, holders: list[str], waits: int, delay_seconds: int) -> None:
    """A run message from a runner that storage stopped: it may still hold the job's lease,
    which it could not let go of, as may the runner that sent it the message it had; either
    is gone, so the next runner may take the run over from them at once. `waits`: how many
    times in a row storage stopped the run, for the back-off."""
    get_queues().send(RUN_QUEUE, {"Partition": partition, "JobId": job_id, "From": holders[-2:], "Waits": waits},
                      delay_seconds=delay_seconds)


def outage_of_message(body: bytes) -> tuple[list[str], int]:
    """The runners a run message was sent back by after a storage outage, and how many times
    in a row that happened (none, 0 for any other message)."""
    message = json.loads(body)
    holders = message.get("From")
    return [h for h in holders if isinstance(h, str) and h] if isinstance(holders, list) else [], \
        message.get("Waits") or 0


def job_of_message(body: bytes) -> tuple[str, str, Row | None, Row | None]:
    """The partition and job a run message names, and the job and VM rows it carries (with
    their etags), if it does."""
    message = json.loads(body)
    if message.get("Job") and message.get("Vm"):
        return message["Partition"], message["JobId"], _uncarried(message["Job"]), _uncarried(message["Vm"])
    return message["Partition"], message["JobId"], None, None


def tick_later(partition: str, delay_seconds: int = 0) -> None:
    """Ask a ScheduleTick to look at the pool's queue (after the delay, e.g. when new VMs are ready)."""
    get_queues().send(TICK_QUEUE, {"Partition": partition}, delay_seconds=delay_seconds + 1 if delay_seconds else 0)


def pool_of_message(body: bytes) -> str:
    return json.loads(body)["Partition"]
