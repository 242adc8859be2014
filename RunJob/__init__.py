"""Queue run-job: run a slice of a started job on the VM it was given (an `async def`, so a
long slice waits on the worker's event loop, not in the thread pool HTTP calls need)."""
import azure.functions as func

from shared import runner


async def main(msg: func.QueueMessage, context: func.Context) -> None:
    await runner.run_off_the_worker(msg.get_body(), msg.dequeue_count or 1, context)
