"""Timer (every 10 s): re-tick active pools, hand stale runs to another instance, finish
half-done pool creates and deletes, remove outputs and ended jobs past their retention."""
import logging

import azure.functions as func

from shared import sweeper


def main(timer: func.TimerRequest) -> None:
    figures = sweeper.sweep()
    logging.getLogger(__name__).info("sweep done %s", " ".join(f"{k}={v}" for k, v in figures.items()))
