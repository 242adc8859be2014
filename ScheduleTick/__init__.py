"""Queue schedule-tick: start a pool's waiting jobs on its idle VMs."""
import azure.functions as func

from shared import dispatch, moves


def main(msg: func.QueueMessage) -> None:
    dispatch.tick(moves.pool_of_message(msg.get_body()))
