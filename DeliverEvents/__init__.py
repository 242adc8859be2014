"""Queue job-events: send a job's pending push events to its NotificationUrl, in order (an
`async def`, so a slow receiver is waited for on the app's own threads, not in the thread
pool HTTP calls need)."""
import azure.functions as func

from shared import events


async def main(msg: func.QueueMessage, context: func.Context) -> None:
    await events.deliver_off_the_worker(msg.get_body(), context)
