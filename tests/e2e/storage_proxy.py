"""A fault-injecting proxy in front of one Azurite service: it forwards every request, counts
them, and while `throttle` is on answers instead as a busy storage service does (503
ServerBusy, or 429 for tables when asked) with a Retry-After header, or, while `refusing`
is on, closes each connection without an answer, as an unreachable service does."""
from __future__ import annotations

import contextlib
import http.client
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that went away (an instance killed mid-request) is not the proxy's failure


class StorageProxy:
    def __init__(self, upstream_port: int, service: str):
        self.upstream_port = upstream_port
        self.service = service
        self.throttling = threading.Event()
        self.refusing = threading.Event()
        self.status_when_throttled = 503
        self.retry_after = 1
        self.counts: Counter = Counter()
        self.events: list[tuple[float, float, str, str, str]] = []  # (start, end, method, user agent, path)
        self.throttled = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # or each answer's body waits for a delayed ACK

            def log_message(self, *args):
                pass

            def _relay(self):
                began = time.perf_counter()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                agent = self.headers.get("User-Agent", "")
                with proxy._lock:
                    proxy.counts[(self.command, agent.split(" ")[0])] += 1
                    refused = proxy.refusing.is_set()
                    throttled = proxy.throttling.is_set() and not refused
                    proxy.throttled += throttled or refused
                if refused:
                    self.close_connection = True
                    return
                if throttled:
                    self._busy()
                    return
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with proxy._lock:
                    proxy.events.append((began, time.perf_counter(), self.command, agent.split(" ")[0],
                                         self.path.split("?")[0]))

            def _busy(self):
                status = proxy.status_when_throttled
                if proxy.service == "table":
                    data = b'{"odata.error":{"code":"ServerBusy","message":{"lang":"en-US","value":"busy"}}}'
                    kind = "application/json"
                else:
                    # As Azure Storage words it: the SDKs read both the code and the message.
                    data = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code>'
                            b'<Message>The server is busy.</Message></Error>')
                    kind = "application/xml"
                self.send_response(status)
                self.send_header("Retry-After", str(proxy.retry_after))
                self.send_header("x-ms-error-code", "ServerBusy")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_MERGE = do_PATCH = do_OPTIONS = _relay

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def proxied_connection_string(account: str, key: str, proxies: dict[str, StorageProxy]) -> str:
    return (f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
            + "".join(f"{s.capitalize()}Endpoint=http://127.0.0.1:{p.port}/{account};" for s, p in proxies.items()))


@contextlib.contextmanager
def proxied_stack(logs_dir, name: str, extra_env: dict):
    """Azurite, a proxy in front of each of its services and a host whose app reaches storage
    only through them: (host, connection string, proxies by service), all stopped after."""
    from devhost.azurite import ACCOUNT, ACCOUNT_KEY, start_azurite
    from tests.e2e.harness import ROOT, HostProcess
    emulator = start_azurite(ROOT, None, log_file=logs_dir / f"azurite-{name}.log")
    proxies = {"blob": StorageProxy(emulator.blob_port, "blob"), "queue": StorageProxy(emulator.queue_port, "queue"),
               "table": StorageProxy(emulator.table_port, "table")}
    connection = proxied_connection_string(ACCOUNT, ACCOUNT_KEY, proxies)
    host = HostProcess(ROOT, connection, log_path=logs_dir / f"{name}-host.log", extra_env=extra_env)
    try:
        yield host, connection, proxies
    finally:
        host.stop()
        for proxy in proxies.values():
            proxy.stop()
        emulator.stop()
