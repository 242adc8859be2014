"""Serving the dashboard: a fixed set of static files, with headers that keep the page to
itself (a strict Content-Security-Policy, no framing, no referrer, no sniffing)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from shared.settings import get_settings

STATIC = Path(__file__).resolve().parent.parent / "Dashboard" / "static"

# The only names the route answers: anything else (another name, a path, an encoded
# separator) is 404 without touching the file system.
FILES = {
    "": ("index.html", "text/html"),
    "index.html": ("index.html", "text/html"),
    "dashboard.js": ("dashboard.js", "text/javascript"),
    "dashboard.css": ("dashboard.css", "text/css"),
}


@lru_cache(maxsize=None)
def _content(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(public_base_url: str | None) -> str:
    """Scripts and styles from this app only, no inline code, no plug-ins, no framing; the
    page may call only its own origin and the app's public address."""
    connect = " ".join(filter(None, ["'self'", _origin(public_base_url)]))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def headers() -> dict[str, str]:
    return {"Content-Security-Policy": content_security_policy(get_settings().public_base_url),
            "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache"}


def serve(req: func.HttpRequest) -> func.HttpResponse:
    name = (req.route_params or {}).get("file") or ""
    if name == "" and not urlsplit(req.url).path.endswith("/"):
        # The page's own files are relative to it: /api/dashboard is /api/dashboard/.
        return func.HttpResponse(status_code=301, headers={"Location": "dashboard/", **headers()})
    found = FILES.get(name)
    if found is None:
        return func.HttpResponse("not found", status_code=404, mimetype="text/plain", headers=headers())
    file_name, mimetype = found
    return func.HttpResponse(_content(file_name), status_code=200, mimetype=mimetype, charset="utf-8",
                             headers=headers())
