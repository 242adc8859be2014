"""One host instance: loads the app, then serves its HTTP, queue and timer triggers."""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from azure.storage.queue import QueueServiceClient

from devhost import config, storage
from devhost.http_server import serve_http
from devhost.invoker import Invoker, encode_queue_message
from devhost.keys import HostKeys
from devhost.queues import QueueListener, ensure_queue
from devhost.timers import TimerListener
from devhost.worker import Worker, thread_count

log = logging.getLogger(__name__)

DEFAULT_QUEUE_LEASE_SECONDS = 600


def site_hostname(host: str, port: int) -> str:
    """`host:port` the site answers on; a wildcard bind is reached as localhost."""
    if host in ("", "0.0.0.0", "::"):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


class HostInstance:
    def __init__(self, app_root: Path, keys: HostKeys, host: str, port: int):
        self.app_root = app_root.resolve()
        self.host_config = config.load_host_config(self.app_root)
        self.settings = config.load_settings(self.app_root)
        # App settings become environment variables of the worker, as in Azure.
        os.environ.update(self.settings)
        # The site's own address, as Azure and Core Tools give it to the app.
        os.environ["WEBSITE_HOSTNAME"] = site_hostname(host, port)
        self.functions, errors = config.load_functions(self.app_root, self.host_config, self.settings)
        for name, error in errors.items():
            log.error("function disabled function=%s error=%s", name, error)
        self.keys = keys
        self.host, self.port = host, port
        self.stopping = threading.Event()
        self.queue_service: QueueServiceClient | None = None
        self.listeners: list[QueueListener | TimerListener] = []
        self.server = None
        self.worker = Worker(thread_count(dict(os.environ)), self.host_config.function_timeout)
        self.invoker = Invoker(self._send_queue_output, self.worker)

    def _send_queue_output(self, queue_name: str, value) -> None:
        if self.queue_service is None:  # start() makes it when any function has a queue output
            raise RuntimeError(f"queue output to {queue_name} before the host started")
        ensure_queue(self.queue_service, queue_name)
        content = encode_queue_message(value, self.host_config.queues.message_encoding)
        self.queue_service.get_queue_client(queue_name).send_message(content)

    def start(self) -> None:
        needs_storage = any(f.trigger.type != "httpTrigger" or any(b.type == "queue" for b in f.outputs)
                            for f in self.functions)
        if needs_storage:
            queue_service = self.queue_service = storage.queue_service(self.settings)
            blob_service = storage.blob_service(self.settings)
        lease = int(self.settings.get("DEVHOST_QUEUE_LEASE_SECONDS") or DEFAULT_QUEUE_LEASE_SECONDS)
        for spec in self.functions:
            listener: QueueListener | TimerListener
            # Both clients exist here: a queue or timer trigger needs storage.
            if spec.trigger.type == "queueTrigger":
                listener = QueueListener(spec, self.host_config.queues, queue_service, self.invoker,
                                         lease, self.stopping)
            elif spec.trigger.type == "timerTrigger":
                listener = TimerListener(spec, self.host_config.host_id, blob_service, self.invoker,
                                         self.stopping)
            else:
                continue
            listener.start()
            self.listeners.append(listener)
        self.server = serve_http(self.functions, self.host_config.route_prefix, self.keys, self.invoker,
                                 self.host, self.port)
        log.info("host started pid=%s functions=%s", os.getpid(), len(self.functions))

    def stop(self) -> None:
        self.stopping.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for listener in self.listeners:
            listener.stop()
