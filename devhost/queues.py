"""Queue triggers, reproducing the Functions host's queue listener.

* Messages are fetched `batchSize` at a time; a new batch is fetched once the messages in
  flight drop to `newBatchThreshold`, so at most batchSize + newBatchThreshold run at once.
* An empty queue is polled with randomised exponential back-off from 100 ms up to
  `maxPollingInterval`; a message found resets it.
* A fetched message is invisible for a fixed lease (10 minutes in Azure; the setting
  DEVHOST_QUEUE_LEASE_SECONDS shortens it locally), renewed at half-time while the function
  runs; the latest pop receipt is always the one used to delete or update.
* Success deletes the message. Failure makes it visible again after `visibilityTimeout`,
  unless its dequeue count has reached `maxDequeueCount`: then it moves to `<queue>-poison`.
  A message fetched with a dequeue count already over the limit (its runs kept crashing
  the instance) moves to the poison queue without running.
* Bodies are base64-decoded when `messageEncoding` is base64 (the default).
"""
from __future__ import annotations

import base64
import binascii
import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueServiceClient

from devhost.config import FunctionSpec, QueueOptions
from devhost.invoker import Invoker

log = logging.getLogger(__name__)

MIN_POLLING_INTERVAL = 0.1


def decode_body(content: str, encoding: str) -> bytes:
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("message is not valid base64, as host.json's messageEncoding requires") from None
    return content.encode("utf-8")


def next_polling_delay(current: float, ceiling: float, rng=random.random) -> float:
    """Double the delay with ±20 % jitter, never past the ceiling (randomised exponential back-off)."""
    return min(ceiling, max(MIN_POLLING_INTERVAL, current * 2) * (0.8 + 0.4 * rng()))


def ensure_queue(service: QueueServiceClient, name: str) -> None:
    try:
        service.create_queue(name)
    except ResourceExistsError:
        pass


class QueueListener:
    def __init__(self, spec: FunctionSpec, options: QueueOptions, service: QueueServiceClient,
                 invoker: Invoker, lease_seconds: int, stopping: threading.Event):
        self.spec = spec
        self.options = options
        self.service = service
        self.queue_name = spec.trigger.raw["queueName"]
        self.queue = service.get_queue_client(self.queue_name)
        self.invoker = invoker
        self.lease_seconds = lease_seconds
        self.stopping = stopping
        self.executor = ThreadPoolExecutor(options.batch_size + options.new_batch_threshold,
                                           thread_name_prefix=f"queue-{spec.name}")
        self.in_flight = 0
        self.room = threading.Condition()

    def start(self) -> None:
        ensure_queue(self.service, self.queue_name)
        threading.Thread(target=self._poll, name=f"poll-{self.spec.name}", daemon=True).start()

    def _poll(self) -> None:
        delay = MIN_POLLING_INTERVAL
        while not self.stopping.is_set():
            with self.room:
                self.room.wait_for(lambda: self.in_flight <= self.options.new_batch_threshold
                                   or self.stopping.is_set())
            if self.stopping.is_set():
                return
            try:
                messages = list(self.queue.receive_messages(
                    max_messages=self.options.batch_size, messages_per_page=self.options.batch_size,
                    visibility_timeout=self.lease_seconds))
            except AzureError as error:
                log.warning("queue poll failed function=%s queue=%s error=%s", self.spec.name,
                            self.queue_name, type(error).__name__)
                messages = []
            if messages:
                delay = MIN_POLLING_INTERVAL
                with self.room:
                    self.in_flight += len(messages)
                for message in messages:
                    self.executor.submit(self._process, message)
                continue
            self.stopping.wait(delay)
            delay = next_polling_delay(delay, self.options.max_polling_interval)

    def _process(self, message) -> None:
        try:
            if message.dequeue_count > self.options.max_dequeue_count:
                self._move_to_poison(message, message.pop_receipt)
                return
            self._run(message)
        except Exception:
            log.exception("queue message handling failed function=%s id=%s", self.spec.name, message.id)
        finally:
            with self.room:
                self.in_flight -= 1
                self.room.notify_all()

    def _run(self, message) -> None:
        receipt = {"pop": message.pop_receipt}
        done = threading.Event()
        renewer = threading.Thread(target=self._keep_invisible, args=(message, receipt, done), daemon=True)
        renewer.start()
        succeeded = False
        try:
            body = decode_body(message.content, self.options.message_encoding)
            trigger = QueueMessage(id=message.id, body=body, pop_receipt=message.pop_receipt,
                                   dequeue_count=message.dequeue_count,
                                   insertion_time=message.inserted_on, expiration_time=message.expires_on,
                                   time_next_visible=message.next_visible_on)
            self.invoker.invoke(self.spec, trigger)
            succeeded = True
        except BaseException as error:  # the worker reports any exception, SystemExit too, as a failure
            log.warning("function failed function=%s id=%s dequeue_count=%s error=%s", self.spec.name,
                        message.id, message.dequeue_count, type(error).__name__)
        finally:
            done.set()
            renewer.join()
        if succeeded:
            self._delete(message, receipt["pop"])
        elif message.dequeue_count >= self.options.max_dequeue_count:
            self._move_to_poison(message, receipt["pop"])
        else:
            self._release(message, receipt["pop"])

    def _keep_invisible(self, message, receipt: dict, done: threading.Event) -> None:
        while not done.wait(self.lease_seconds / 2):
            try:
                updated = self.queue.update_message(message.id, receipt["pop"],
                                                    visibility_timeout=self.lease_seconds)
                receipt["pop"] = updated.pop_receipt
            except AzureError as error:
                log.warning("visibility renewal failed function=%s id=%s error=%s", self.spec.name,
                            message.id, type(error).__name__)

    def _delete(self, message, pop_receipt: str) -> None:
        try:
            self.queue.delete_message(message.id, pop_receipt)
        except ResourceNotFoundError:
            log.warning("message already gone function=%s id=%s", self.spec.name, message.id)

    def _release(self, message, pop_receipt: str) -> None:
        try:
            self.queue.update_message(message.id, pop_receipt,
                                      visibility_timeout=int(self.options.visibility_timeout))
        except ResourceNotFoundError:
            log.warning("message already gone function=%s id=%s", self.spec.name, message.id)

    def _move_to_poison(self, message, pop_receipt: str) -> None:
        poison_name = f"{self.queue_name}-poison"
        ensure_queue(self.service, poison_name)
        # The content is copied as stored, so the poison queue keeps the original encoding.
        self.service.get_queue_client(poison_name).send_message(message.content)
        self._delete(message, pop_receipt)
        log.warning("message moved to poison queue function=%s id=%s queue=%s dequeue_count=%s",
                    self.spec.name, message.id, poison_name, message.dequeue_count)

    def stop(self) -> None:
        with self.room:
            self.room.notify_all()
        self.executor.shutdown(wait=True, cancel_futures=False)
