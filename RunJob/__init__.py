"""Queue run-job: run a started job on the VM it was given, then end it."""
import azure.functions as func

from shared import dispatch, execution


def main(msg: func.QueueMessage) -> None:
    execution.run_job(*dispatch.job_of_message(msg.get_body()))
