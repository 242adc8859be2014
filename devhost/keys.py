"""Function and master keys of the local host.

In Azure the host keeps its keys in the `azure-webjobs-secrets` container; locally they
come from `DEVHOST_MASTER_KEY` and `DEVHOST_FUNCTION_KEY` (environment or local settings), or, when those
are not set, from `.devhost/keys.json`, made once with fresh random keys. A key arrives
in the `x-functions-key` header or the `code` query parameter, as in Azure.
"""
from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostKeys:
    master: str
    function: str

    def allows(self, auth_level: str, presented: str | None) -> bool:
        if auth_level == "anonymous":
            return True
        if not presented:
            return False
        # The master key opens every function; a function (host) key opens all but admin ones.
        if hmac.compare_digest(presented.encode(), self.master.encode()):
            return True
        return auth_level == "function" and hmac.compare_digest(presented.encode(), self.function.encode())


def load_keys(app_root: Path, settings: dict[str, str]) -> HostKeys:
    master = os.environ.get("DEVHOST_MASTER_KEY") or settings.get("DEVHOST_MASTER_KEY")
    function = os.environ.get("DEVHOST_FUNCTION_KEY") or settings.get("DEVHOST_FUNCTION_KEY")
    if master and function:
        return HostKeys(master, function)
    path = app_root / ".devhost" / "keys.json"
    if path.is_file():
        stored = json.loads(path.read_text())
    else:
        stored = {"master": secrets.token_urlsafe(32), "function": secrets.token_urlsafe(32)}
        path.parent.mkdir(exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(stored))
        os.chmod(temporary, 0o600)
        temporary.replace(path)
    return HostKeys(master or stored["master"], function or stored["function"])
