"""What an identity-based deployment needs locally: a self-signed certificate for Azurite's
HTTPS, and a managed identity endpoint like the one App Service gives a function app.

The endpoint answers the App Service managed identity protocol (IDENTITY_ENDPOINT with the
IDENTITY_HEADER secret, `resource` and `api-version` in the query), so the app's
`ManagedIdentityCredential` runs exactly as it does in Azure. Its tokens carry the claims
Azurite checks in OAuth basic mode (audience, issuer, validity); they are not signed.
"""
from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

STORAGE_AUDIENCE = "https://storage.azure.com"


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (with its IP as subjectAltName) and its key, as PEM."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def _segment(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def storage_token(tenant: str, lifetime: int = 3600) -> tuple[str, int]:
    now = int(time.time())
    claims = {"aud": STORAGE_AUDIENCE, "iss": f"https://sts.windows.net/{tenant}/", "tid": tenant,
              "oid": str(uuid.uuid4()), "nbf": now - 60, "iat": now - 60, "exp": now + lifetime}
    return ".".join([_segment({"alg": "RS256", "typ": "JWT"}), _segment(claims), _segment(secrets.token_bytes(32))]), \
        now + lifetime


class IdentityEndpoint:
    """A managed identity endpoint on a free loopback port; `requests` counts what it served."""

    def __init__(self):
        self.secret = secrets.token_urlsafe(16)
        self.tenant = str(uuid.uuid4())
        self.requests: list[dict] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                endpoint.requests.append(query)
                if self.headers.get("X-IDENTITY-HEADER") != endpoint.secret:
                    self._answer(401, {"error": "bad identity header"})
                    return
                token, expires = storage_token(endpoint.tenant)
                self._answer(200, {"access_token": token, "expires_on": str(expires),
                                   "resource": query.get("resource"), "token_type": "Bearer"})

            def _answer(self, status: int, body: dict):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/msi/token"

    def environment(self) -> dict:
        """The variables App Service sets for a function app with a managed identity."""
        return {"IDENTITY_ENDPOINT": self.url, "IDENTITY_HEADER": self.secret}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
