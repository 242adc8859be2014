"""Host allow-lists (BLOB_HOST_ALLOWLIST, NOTIFICATION_HOST_ALLOWLIST): entries parsed once
into host and port and compared as such, never as text patterns.

An entry is `host`, `host:port`, `[ipv6]`, `[ipv6]:port`, a whole endpoint
(`https://host[:port]/...`, whose path is ignored), or `*.domain[:port]`: any host below the
domain (not the domain itself). Without a port any port matches; with one, only the URL's
effective port (443 for https and 80 for http when the URL names none). Host names compare
without regard to case and a trailing dot; IP addresses compare as addresses, so `::1`,
`[0:0::1]` and `[::1]` are one host. No other wildcard exists: `*`, `?` and `[...]` are not
patterns, and an entry that holds them (other than a leading `*.`) is refused."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class Entry:
    host: str  # lower case, no trailing dot; an IP address in its compressed form
    port: int | None = None  # None: any port
    subdomains: bool = False  # "*.host": hosts below `host` only


def _host(text: str) -> str:
    """A host name or IP address as entries and URLs are compared."""
    text = text.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return text


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"allow-list entry {entry!r}: the port must be 1 to 65535")
    return int(text)


def parse_entry(text: str) -> Entry:
    """One entry; ValueError saying what is wrong with it."""
    entry = text.strip()
    if "://" in entry:
        parts = urlsplit(entry)
        if not parts.hostname:
            raise ValueError(f"allow-list entry {text!r} names no host")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"allow-list entry {text!r}: the port must be 1 to 65535") from None
        return Entry(_host(parts.hostname), port)
    subdomains = entry.startswith("*.")
    rest = entry[2:] if subdomains else entry
    port = None
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise ValueError(f"allow-list entry {text!r}: an IPv6 address ends with ]")
        host, after = rest[:close + 1], rest[close + 1:]
        if after:
            if not after.startswith(":"):
                raise ValueError(f"allow-list entry {text!r}: only :port may follow the address")
            port = _port(after[1:], text)
    elif rest.count(":") > 1:
        host = rest  # an IPv6 address without brackets (so without a port)
    else:
        host, colon, port_text = rest.partition(":")
        if colon:
            port = _port(port_text, text)
    host = _host(host)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        if subdomains:
            raise ValueError(f"allow-list entry {text!r}: an IP address has no subdomains")
        return Entry(address.compressed, port)
    labels = host.split(".")
    if not host or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"allow-list entry {text!r} is not a host name, an IP address or *.domain "
                         "(no other wildcards exist)")
    return Entry(host, port, subdomains)


def parse(entries) -> tuple[Entry, ...]:
    """A comma-separated setting's entries, or a list of them."""
    items = entries.split(",") if isinstance(entries, str) else list(entries)
    return tuple(item if isinstance(item, Entry) else parse_entry(item) for item in items
                 if isinstance(item, Entry) or item.strip())


def allows(entries: tuple[Entry, ...], url: str) -> bool:
    """Whether the URL's host and effective port are on the list."""
    parts = urlsplit(url)
    if not parts.hostname:
        return False
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return False
    host = _host(parts.hostname)
    for entry in entries:
        if entry.port is not None and entry.port != port:
            continue
        below = entry.subdomains and host.endswith("." + entry.host)
        if below or (not entry.subdomains and host == entry.host):
            return True
    return False
