"""Timer (every minute): accrue each pool's VM-seconds into the hourly usage ledger."""
import logging

import azure.functions as func

from shared import ledger


def main(timer: func.TimerRequest) -> None:
    figures = ledger.accrue_all()
    logging.getLogger(__name__).info("billing tick pools=%s operations=%s past_due=%s",
                                     figures["pools"], figures["operations"], timer.past_due)
