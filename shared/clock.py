"""The one place the app reads the time, so tests and pure rules can be given their own."""
from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """Now, in UTC, to the millisecond (what Table Storage keeps)."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
