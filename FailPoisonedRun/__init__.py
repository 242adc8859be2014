"""Queue run-job-poison: a run message that kept failing ends its job Failed and frees the VM."""
import azure.functions as func

from shared import dispatch, execution


def main(msg: func.QueueMessage) -> None:
    execution.fail_poisoned(*dispatch.job_of_message(msg.get_body()))
