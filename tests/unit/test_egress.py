"""Push events connect only where the receiver's name was checked to point, once."""
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from shared import allowlist, egress

LISTED = allowlist.parse("vm:21000,receiver.example")


def resolving_to(*addresses):
    calls = []

    def resolve(host, port, type=0):
        calls.append(host)
        answer = addresses[min(len(calls), len(addresses)) - 1]
        family = socket.AF_INET6 if ":" in answer else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (answer, port))]
    resolve.calls = calls
    return resolve


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "169.254.169.254", "10.1.2.3", "172.16.0.1",
                                     "192.168.1.1", "100.64.0.1", "0.0.0.0", "224.0.0.1", "::1", "fe80::1",
                                     "::ffff:127.0.0.1", "::ffff:8.8.8.8", "fc00::1", "::", "2002:7f00:1::1"])
def test_a_listed_name_that_resolves_inside_the_network_is_refused(address):
    with pytest.raises(egress.Refused):
        egress.checked_address("vm", 21000, LISTED, resolving_to(address))


def test_a_listed_name_resolving_to_an_outside_address_is_connected_to_at_that_address():
    assert egress.checked_address("receiver.example", 443, LISTED, resolving_to("8.8.8.8")) == "8.8.8.8"


def test_a_name_with_one_inside_address_among_outside_ones_is_refused():
    def resolve(host, port, type=0):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    with pytest.raises(egress.Refused):
        egress.checked_address("receiver.example", 443, LISTED, resolve)


def test_an_address_named_literally_on_the_list_is_allowed():
    listed = allowlist.parse("127.0.0.1,[::1]")
    assert egress.checked_address("127.0.0.1", 80, listed, resolving_to("127.0.0.1")) == "127.0.0.1"
    assert egress.checked_address("::1", 80, listed, resolving_to("::1")) == "::1"


@pytest.mark.parametrize("written", ["2130706433", "0177.0.0.1", "0x7f.1", "127.1"])
def test_decimal_octal_and_short_forms_of_loopback_are_resolved_and_refused(written):
    # As the system resolver reads them; only the dotted form on the list would be allowed.
    listed = allowlist.parse(written)
    with pytest.raises(egress.Refused):
        egress.checked_address(written, 80, listed)


def test_a_name_is_resolved_once_and_the_connection_goes_to_the_checked_address():
    seen = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append((self.headers["Host"], self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        # Checked as 127.0.0.1 (named literally), then re-pointed: the second answer is never asked for.
        resolve = resolving_to("127.0.0.1", "10.9.9.9")
        listed = allowlist.parse("127.0.0.1,hooks.test")
        answer = egress.post(f"http://hooks.test:{port}/in?x=1", b"{}", {"Content-Type": "application/json"}, 5,
                             listed, resolve)
        assert answer.status == 204 and resolve.calls == ["hooks.test"]
        assert seen == [(f"hooks.test:{port}", b"{}")]
    finally:
        server.shutdown()
        server.server_close()
