"""The job, pool and VM a record is about, as fields at the end of each of the app's records.

The Python worker forwards a record to the host as its message text and invocation id only
(no custom properties), so the fields are written into the message, always in the same form:
` job=<id> pool=<id> vm=<id>`, each only where known and not already in the message. In
Application Insights, `traces | parse message with * "job=" job " " *` (or `extract`) reads
them. Work done for a job sets them once with `about(...)`; every record the app logs inside
it (on that thread, in its context) carries them.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from shared import layout

FIELDS = ("job", "pool", "vm")
_current: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("batchpool_log_fields", default=())
_installed = False


def pool_of_partition(partition: str | None) -> str | None:
    """The pool id of a pool partition (`classic` for the classic environment)."""
    if not partition:
        return None
    if partition == layout.CLASSIC_PARTITION:
        return "classic"
    return partition.rpartition("|")[2] or None


@contextmanager
def about(job: str | None = None, partition: str | None = None, vm: str | None = None,
          pool: str | None = None) -> Iterator[None]:
    """Records logged inside carry these fields (those given; the outer ones stay)."""
    given = {"job": job, "pool": pool or pool_of_partition(partition), "vm": vm}
    token = _current.set(tuple({**dict(_current.get()), **{k: v for k, v in given.items() if v}}.items()))
    try:
        yield
    finally:
        _current.reset(token)


def add(vm: str | None = None) -> None:
    """Inside an `about`, a field learnt on the way (the VM a claim found); the `about`'s end
    undoes it with the rest."""
    if vm:
        _current.set(tuple({**dict(_current.get()), "vm": vm}.items()))


def with_fields(message: str, fields: dict[str, str], escape: bool) -> str:
    """The message with each field it does not already name appended as ` name=value`."""
    missing = [(name, fields[name]) for name in FIELDS if name in fields and f"{name}=" not in message]
    if not missing:
        return message
    text = " ".join(f"{name}={value}" for name, value in missing)
    return f"{message} {text.replace('%', '%%') if escape else text}"


def install() -> None:
    """Append the fields to every record of the app's own loggers (`shared.*`), whatever
    handler then sends it."""
    global _installed
    if _installed:
        return
    _installed = True
    make = logging.getLogRecordFactory()

    def record(*args, **kwargs) -> logging.LogRecord:
        made = make(*args, **kwargs)
        fields = _current.get()
        if fields and made.name.startswith("shared") and isinstance(made.msg, str):
            made.msg = with_fields(made.msg, dict(fields), escape=bool(made.args))
        return made

    logging.setLogRecordFactory(record)
