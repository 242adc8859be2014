"""Queue job-events: send a job's pending push events to its NotificationUrl, in order."""
import json
import logging

import azure.functions as func

from shared import events


def main(msg: func.QueueMessage) -> None:
    job_id = json.loads(msg.get_body())["JobId"]
    counts = events.deliver(job_id)
    logging.getLogger(__name__).info("events delivered job=%s %s", job_id,
                                     " ".join(f"{k}={v}" for k, v in counts.items()))
