"""Queue schedule-tick: start a pool's waiting jobs on its idle VMs."""
import azure.functions as func

from shared import dispatch


def main(msg: func.QueueMessage) -> None:
    dispatch.tick_for_message(msg.get_body())
