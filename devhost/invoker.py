"""Calling a function's entry point with its bindings, as the Python worker does."""
from __future__ import annotations

import base64
import json
import logging
import uuid

from devhost.config import FunctionSpec
from devhost.worker import Context, Worker

log = logging.getLogger(__name__)


class Out:
    """The value an output binding parameter (`func.Out[T]`) receives."""

    def __init__(self):
        self._value = None

    def set(self, value) -> None:
        self._value = value

    def get(self):
        return self._value


def encode_queue_message(value, encoding: str) -> str:
    if isinstance(value, (dict, list)):
        value = json.dumps(value)
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise TypeError(f"a queue message must be str, bytes or JSON-serialisable, not {type(value).__name__}")
    return base64.b64encode(value).decode("ascii") if encoding == "base64" else value.decode("utf-8")


class Invoker:
    def __init__(self, queue_sender, worker: Worker):
        # queue_sender(queue_name, value) sends one output message.
        self._queue_sender = queue_sender
        self.worker = worker

    def invoke(self, spec: FunctionSpec, trigger_value):
        """Run the function on the worker; return the value of its http output, if it has one."""
        if spec.entry is None:
            raise ValueError(f"function {spec.name} has no entry point (load it with config.load_function)")
        outs = {b.name: Out() for b in spec.outputs if b.name != "$return"}
        invocation_id = str(uuid.uuid4())
        arguments = {spec.trigger.name: trigger_value, **outs}
        if spec.takes_context:
            arguments["context"] = Context(invocation_id, spec.name, str(spec.folder))
        result = self.worker.run(spec.name, spec.entry, arguments, invocation_id)
        http_value = None
        for binding in spec.outputs:
            value = result if binding.name == "$return" else outs[binding.name].get()
            if binding.type == "http":
                http_value = value
            elif binding.type == "queue" and value is not None:
                for message in value if isinstance(value, list) else [value]:
                    self._queue_sender(binding.raw["queueName"], message)
        return http_value
