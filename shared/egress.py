"""Where a push event may connect: the receiver's name is resolved once, every address it
resolves to is checked, and the connection goes to the checked address (TLS still verifies
the certificate against the name), so a name cannot be re-pointed between the check and the
connection (DNS rebinding).

An address inside the deployment's own network reach (loopback, link-local such as the
cloud metadata address 169.254.169.254, private, shared, multicast, reserved, unspecified,
and IPv4 addresses written as IPv6) is refused unless an allow-list entry names that very
address: a listed name that resolves there is not enough. Addresses written in decimal or
octal (`2130706433`, `0177.0.0.1`) are resolved like names and checked the same way. A
refused address and a connection that failed are one outcome to the caller (`UNREACHABLE`),
so the delivery log cannot be used to map a network."""
from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3

from shared import allowlist

UNREACHABLE = "no answer (the receiver could not be reached, refused the connection or timed out)"


class Refused(Exception):
    """The receiver's name resolves to an address this deployment does not connect to."""


def inside(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is one a receiver on the internet cannot have."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour or (address.teredo[1] if address.teredo else None)
        if mapped is not None:
            return True  # an IPv4 address dressed as IPv6 is never a receiver's
    return (address.is_loopback or address.is_link_local or address.is_private or address.is_multicast
            or address.is_unspecified or address.is_reserved or not address.is_global)


def allowed_address(address: str, entries: tuple[allowlist.Entry, ...]) -> bool:
    """An address may be connected to if it is outside, or an entry names it literally."""
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    return not inside(parsed) or any(entry.host == parsed.compressed for entry in entries)


def checked_address(host: str, port: int, entries: tuple[allowlist.Entry, ...], resolve=socket.getaddrinfo) -> str:
    """The address to connect to for `host`: resolved once; Refused if any address it
    resolves to is refused (a name that mixes outside and inside addresses is refused)."""
    found = resolve(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(info[4][0] for info in found))
    if not addresses or not all(allowed_address(address, entries) for address in addresses):
        raise Refused()
    return addresses[0]


@dataclass(frozen=True)
class Answer:
    status: int


def post(url: str, body: bytes, headers: dict, timeout: float, entries: tuple[allowlist.Entry, ...],
         resolve=socket.getaddrinfo) -> Answer:
    """POST to the URL at its checked address; Refused, or requests' or urllib3's errors for
    a connection that failed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or allowlist.DEFAULT_PORTS[parts.scheme]
    address = checked_address(host, port, entries, resolve)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = host if parts.port is None else f"{host}:{parts.port}"
    if ":" in host and not host.startswith("["):
        host_header = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
    kwargs: dict = {"timeout": urllib3.Timeout(connect=timeout, read=timeout), "retries": False}
    if parts.scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            address, port, server_hostname=host, assert_hostname=host, cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("REQUESTS_CA_BUNDLE") or requests.utils.DEFAULT_CA_BUNDLE_PATH, **kwargs)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **kwargs)
    with pool:
        answer = pool.urlopen("POST", path, body=body, headers={**headers, "Host": host_header}, redirect=False,
                              assert_same_host=False, preload_content=True)
    return Answer(answer.status)
