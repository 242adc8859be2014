"""A module that leaves a mark when imported: a scorer outside SCORER_PACKAGES must never be
imported by the app, and this shows whether it was."""
import os
from pathlib import Path

_log = os.environ.get("IMPORT_PROBE_LOG")
if _log:
    with Path(_log).open("a") as marks:
        marks.write(f"imported by pid {os.getpid()}\n")


def score(frame):
    return frame
