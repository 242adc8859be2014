"""Queue run-job-poison: a run message that kept failing ends its job Failed and frees the VM."""
import azure.functions as func

from shared import runner


def main(msg: func.QueueMessage) -> None:
    runner.fail_poisoned(msg.get_body())
