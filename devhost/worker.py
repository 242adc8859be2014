"""The Python language worker's side of an instance: where invocations run.

Reproduced from the Functions Python worker and host:
* every *sync* invocation, of any function and trigger, runs on one shared thread pool of
  PYTHON_THREADPOOL_THREAD_COUNT threads (default min(32, cores + 4)): a long invocation
  holds a thread that HTTP calls then lack;
* `async def` entry points run on the worker's one event loop, outside that pool;
* `functionTimeout` (host.json): an invocation still running when it passes fails, and the
  host restarts the worker process, so every other invocation in flight fails with it. Here
  the instance is the worker: it answers its waiting callers with a failure, then exits
  with `RESTART_EXIT_CODE`, and the supervisor starts a fresh instance in its place;
* every record logged while an invocation runs belongs to it (its invocation id): records
  of the invocation's own pool thread or coroutine, and of any thread of the app's own that
  set `context.thread_local_storage.invocation_id`, as the worker's documentation asks of
  threads a function starts. Records of other threads belong to no invocation.
"""
from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Callable

log = logging.getLogger(__name__)

RESTART_EXIT_CODE = 75
RESTART_GRACE_SECONDS = 2.0
POLL_SECONDS = 0.25


class InvocationFailed(Exception):
    """The invocation did not complete: it timed out, or the worker restarted under it."""


# The invocation a record belongs to: a coroutine's own, or a thread's (the worker's
# thread-local storage, which `Context.thread_local_storage` hands to the app).
_coroutine_invocation: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation", default=None)
THREAD_LOCAL = threading.local()


def current_invocation() -> str | None:
    return _coroutine_invocation.get() or getattr(THREAD_LOCAL, "invocation_id", None)


class InvocationFilter(logging.Filter):
    """Gives each record the invocation it belongs to, as `invocation` (" invocation=<id>" or "")."""

    def filter(self, record: logging.LogRecord) -> bool:
        invocation = current_invocation()
        record.invocation = f" invocation={invocation}" if invocation else ""
        return True


class Context:
    """What the worker passes an entry point's `context` parameter (azure.functions.Context)."""

    def __init__(self, invocation_id: str, function_name: str, function_directory: str):
        self.invocation_id = invocation_id
        self.function_name = function_name
        self.function_directory = function_directory
        self.thread_local_storage = THREAD_LOCAL
        self.trace_context = None
        self.retry_context = None


def _in_thread(invocation_id: str, entry: Callable, arguments: dict):
    THREAD_LOCAL.invocation_id = invocation_id
    try:
        return entry(**arguments)
    finally:
        THREAD_LOCAL.invocation_id = None


async def _in_coroutine(invocation_id: str, entry: Callable, arguments: dict):
    _coroutine_invocation.set(invocation_id)  # this task's own context: nothing to undo
    return await entry(**arguments)


def thread_count(settings: dict[str, str]) -> int:
    """PYTHON_THREADPOOL_THREAD_COUNT, or the worker's default on Python 3.9+."""
    configured = settings.get("PYTHON_THREADPOOL_THREAD_COUNT")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return min(32, (os.cpu_count() or 1) + 4)


class Worker:
    def __init__(self, threads: int, function_timeout: float | None, exit_process: Callable[[int], None] = os._exit):
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="worker")
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="worker-loop", daemon=True).start()
        self.function_timeout = function_timeout
        self.restarting = threading.Event()
        self._exit_process = exit_process

    def run(self, name: str, entry: Callable, arguments: dict, invocation_id: str = ""):
        """Run one invocation to its end and return its result; InvocationFailed if it passes
        functionTimeout or the worker restarts meanwhile (its exception if it raised)."""
        if self.restarting.is_set():
            raise InvocationFailed("the worker is restarting")
        if inspect.iscoroutinefunction(entry):
            future: Future = asyncio.run_coroutine_threadsafe(_in_coroutine(invocation_id, entry, arguments),
                                                              self.loop)
        else:
            future = self.pool.submit(_in_thread, invocation_id, entry, arguments)
        timeout = self.function_timeout  # None or 0: no limit
        started = time.monotonic()
        while True:
            wait = min(POLL_SECONDS, max(0.0, started + timeout - time.monotonic())) if timeout else POLL_SECONDS
            try:
                return future.result(timeout=wait)
            except FutureTimeout:
                pass
            if self.restarting.is_set():
                raise InvocationFailed("the worker process restarted while this invocation ran")
            if timeout and time.monotonic() >= started + timeout:
                log.error("Timeout value of %s exceeded by function '%s'; restarting the worker process",
                          _timespan(timeout), name)
                self.restart()
                raise InvocationFailed(f"function {name} passed functionTimeout")

    def restart(self) -> None:
        """Fail every invocation in flight and end the process, as the host restarts a worker."""
        if self.restarting.is_set():
            return
        self.restarting.set()

        def exit_later():
            time.sleep(RESTART_GRACE_SECONDS)  # callers answer and queue messages are released
            log.error("worker process exiting for restart pid=%s", os.getpid())
            logging.shutdown()
            self._exit_process(RESTART_EXIT_CODE)

        threading.Thread(target=exit_later, name="worker-restart", daemon=True).start()


def _timespan(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
