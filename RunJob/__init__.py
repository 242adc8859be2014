"""Queue run-job: run a slice of a started job on the VM it was given (an `async def`, so a
long slice waits on the worker's event loop, not in the thread pool HTTP calls need)."""
import azure.functions as func

from shared import dispatch, execution


async def main(msg: func.QueueMessage) -> None:
    await execution.run_job_off_the_worker(*dispatch.job_of_message(msg.get_body()))
