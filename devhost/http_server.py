"""The HTTP front of the host: routes, methods, auth levels, request and response mapping.

Behaviour reproduced from the Functions host:
* routes live under the route prefix (`api` unless host.json's extensions.http.routePrefix
  says otherwise); a path or method no function takes answers 404;
* `authLevel` function or admin: the key comes in `x-functions-key` or `?code=`; missing
  or wrong answers 401 with no body;
* a function that raises answers 500 with no body (details go to the host's log only);
* request bodies over 100 MB are refused with 413, as in Azure;
* `POST /admin/functions/{name}` with the master key runs a timer function at once, outside
  its schedule and its one-instance lock, as the host's admin API does: 202, or 404 for
  no such function.
Several host instances may bind the same port (SO_REUSEPORT): the kernel spreads
connections among them, standing in for the load balancer in front of a scaled-out app.
"""
from __future__ import annotations

import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.functions.timer import TimerRequest

from devhost.config import FunctionSpec
from devhost.invoker import Invoker
from devhost.keys import HostKeys

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 100 * 1024 * 1024


ADMIN_INVOKE = re.compile(r"/admin/functions/([^/]+)", re.IGNORECASE)


class Router:
    def __init__(self, functions: list[FunctionSpec], route_prefix: str):
        self.by_name = {f.name.lower(): f for f in functions}
        self.prefix = [p for p in route_prefix.split("/") if p]
        routes = [(f.route, f) for f in functions if f.route is not None]
        # Literal segments win over constrained parameters, which win over plain ones.
        self.routes = sorted(routes, key=lambda pair: pair[0].specificity())

    def resolve(self, path: str, method: str) -> tuple[FunctionSpec, dict[str, str]] | None:
        parts = [p for p in path.split("/") if p]
        if [p.lower() for p in parts[:len(self.prefix)]] != [p.lower() for p in self.prefix]:
            return None
        rest = "/".join(parts[len(self.prefix):])
        for route, spec in self.routes:
            if method not in spec.methods:
                continue
            values = route.match(rest)
            if values is not None:
                return spec, values
        return None


class _Server(ThreadingHTTPServer):
    server_address: tuple[str, int]  # an AF_INET server's (host, port)
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def _make_handler(router: Router, keys: HostKeys, invoker: Invoker):
    class Handler(BaseHTTPRequestHandler):
        server: _Server
        protocol_version = "HTTP/1.1"
        server_version = "devhost"
        # Headers and body go out in two writes; with Nagle's algorithm on, the second waits
        # for the client's delayed ACK (~40 ms on Linux) on every kept-alive request.
        disable_nagle_algorithm = True

        def log_message(self, format, *args):  # the host logs one line per request itself
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _read_body(self) -> bytes | None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks: list[bytes] = []
                total = 0
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    total += size
                    if total > MAX_REQUEST_BYTES:
                        return None
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_REQUEST_BYTES:
                return None
            return self.rfile.read(length) if length > 0 else b""

        def _handle(self) -> None:
            started = time.monotonic()
            split = urlsplit(self.path)
            method = self.command.upper()
            status = self._dispatch(split, method)
            # The query string is never logged: it may carry a `code` key.
            log.info("http method=%s path=%s status=%s ms=%.1f", method, split.path, status,
                     (time.monotonic() - started) * 1000)

        def _dispatch(self, split, method: str) -> int:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self._send(400)
                return 400
            if length < 0:
                self._send(400)
                return 400
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            presented = self.headers.get("x-functions-key") or query.get("code")
            admin = ADMIN_INVOKE.fullmatch(split.path)
            if admin and method == "POST":
                self._discard_body(length)
                return self._run_now(admin.group(1), presented)
            resolved = router.resolve(split.path, method)
            if resolved is None:
                self._discard_body(length)
                self._send(404)
                return 404
            spec, route_params = resolved
            if not keys.allows(spec.auth_level, presented):
                self._discard_body(length)
                self._send(401)
                return 401
            body = self._read_body()
            if body is None:
                self.close_connection = True
                self._send(413)
                return 413
            host = self.headers.get("Host") or "%s:%s" % self.server.server_address[:2]
            request = func.HttpRequest(
                method=method, url=f"http://{host}{self.path}", headers=dict(self.headers.items()),
                params=query, route_params=route_params, body=body)
            try:
                response = invoker.invoke(spec, request)
            except Exception:
                log.exception("function failed function=%s", spec.name)
                self._send(500)
                return 500
            if response is None:
                self._send(204)
                return 204
            return self._send_function_response(response)

        def _run_now(self, name: str, presented: str | None) -> int:
            if not keys.allows("admin", presented):
                self._send(401)
                return 401
            spec = router.by_name.get(name.lower())
            if spec is None or spec.trigger.type != "timerTrigger":
                self._send(404)
                return 404

            def run() -> None:
                try:
                    invoker.invoke(spec, TimerRequest(past_due=False, schedule={"AdjustForDST": False}))
                    log.info("function run by the admin API function=%s", spec.name)
                except Exception as error:
                    log.warning("function run by the admin API failed function=%s error=%s", spec.name,
                                type(error).__name__)

            threading.Thread(target=run, name=f"admin-{spec.name}", daemon=True).start()
            self._send(202)
            return 202

        def _discard_body(self, length: int) -> None:
            if 0 < length <= MAX_REQUEST_BYTES:
                self.rfile.read(length)
            elif length:
                self.close_connection = True

        def _send_function_response(self, response: func.HttpResponse) -> int:
            headers = dict(response.headers.items())
            if not any(k.lower() == "content-type" for k in headers) and response.mimetype:
                headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}"
            status = int(response.status_code)
            self._send(status, response.get_body() or b"", headers)
            return status

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    return Handler


def serve_http(functions, route_prefix, keys, invoker, host: str, port: int):
    """Start serving in a background thread; returns the server (call shutdown() to stop).
    Invocations run on the worker (its shared thread pool), not on the request threads."""
    server = _Server((host, port), _make_handler(Router(functions, route_prefix), keys, invoker))
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
