"""Records belong to the invocation whose work logs them, as the Python worker attributes them."""
import asyncio
import logging
import threading

from devhost.worker import InvocationFilter, Worker
from shared import admission


class Collect(logging.Handler):
    def __init__(self):
        super().__init__()
        self.addFilter(InvocationFilter())
        self.seen: list[tuple[str, str]] = []

    def emit(self, record):
        self.seen.append((record.getMessage(), record.invocation))


def collecting():
    handler = Collect()
    logger = logging.getLogger("test.invocations")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, handler


def test_sync_and_async_invocations_and_the_app_s_own_threads_are_attributed():
    logger, handler = collecting()
    worker = Worker(2, None, exit_process=lambda code: None)
    own = admission.threads("test-invocations")

    def sync_entry(context):
        logger.info("sync")

    async def async_entry(context):
        logger.info("async")
        # A thread of the app's own: attributed only through the context's thread-local storage.
        await asyncio.get_running_loop().run_in_executor(own, admission.attributed, context, logger.info, "own")
        await asyncio.get_running_loop().run_in_executor(own, logger.info, "unattributed")

    from devhost.worker import Context
    worker.run("Sync", sync_entry, {"context": Context("inv-1", "Sync", ".")}, "inv-1")
    worker.run("Async", async_entry, {"context": Context("inv-2", "Async", ".")}, "inv-2")
    logger.info("outside")
    assert handler.seen == [("sync", " invocation=inv-1"), ("async", " invocation=inv-2"),
                            ("own", " invocation=inv-2"), ("unattributed", ""), ("outside", "")]


def test_threads_started_by_attributed_work_carry_its_invocation_on():
    logger, handler = collecting()
    from devhost.worker import Context
    context = Context("inv-3", "RunJob", ".")

    def work():
        started = threading.Thread(target=admission.attributed,
                                   args=(admission.current_context(), logger.info, "heartbeat"))
        started.start()
        started.join()

    thread = threading.Thread(target=admission.attributed, args=(context, work))
    thread.start()
    thread.join()
    assert handler.seen == [("heartbeat", " invocation=inv-3")]
    assert admission.current_context() is None
