"""Messages to the app's queues (in the host's storage account, where its queue triggers
listen), through `azure-storage-queue`, base64-encoded as queue triggers expect by default."""
from __future__ import annotations

import functools
import json

from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import TextBase64EncodePolicy

from shared.settings import get_settings
from shared.storage import clients
from shared.storage.connections import StorageAccount


class QueueSender:
    def __init__(self, account: StorageAccount):
        service = clients.queue_service(account)

        def made(name: str):
            client = service.get_queue_client(name, message_encode_policy=TextBase64EncodePolicy())
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
            return client

        self._queue = clients.OnFirstUse(made)

    def send(self, queue: str, payload: dict, delay_seconds: int = 0) -> None:
        """Put a JSON message on a queue, visible after `delay_seconds`."""
        self._queue(queue).send_message(json.dumps(payload), visibility_timeout=delay_seconds or None)


@functools.lru_cache(maxsize=1)
def get_queues() -> QueueSender:
    return QueueSender(get_settings().host_account())
