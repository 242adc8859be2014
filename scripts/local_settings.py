"""`make run`'s settings: local.settings.json from local.settings.example.json, with the values
this checkout makes for itself (a sealing key, an operator key) filled in where they are empty.
Values already there are kept. Prints the operator key the local curl and CLI calls use."""
from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
MADE = {"SECRETS_ENCRYPTION_KEYS": lambda: Fernet.generate_key().decode(),
        "OPERATOR_KEYS": lambda: f"local={secrets.token_urlsafe(32)}"}


def fill(settings: dict) -> bool:
    """Fill in the values this checkout makes; whether any was missing."""
    values = settings.setdefault("Values", {})
    missing = [name for name in MADE if not values.get(name)]
    for name in missing:
        values[name] = MADE[name]()
    return bool(missing)


def first_operator_key(settings: dict) -> str:
    """The key of the first OPERATOR_KEYS entry (`name=key`)."""
    return settings["Values"]["OPERATOR_KEYS"].split(",")[0].partition("=")[2].strip()


def main(path: Path = ROOT / "local.settings.json") -> int:
    settings = json.loads((path if path.exists() else ROOT / "local.settings.example.json").read_text())
    if fill(settings) or not path.exists():
        path.write_text(json.dumps(settings, indent=2) + "\n")
    print(f"operator key: {first_operator_key(settings)}\n  (send it as 'Authorization: Bearer <key>'; kept in "
          f"{path.name} as OPERATOR_KEYS; `.venv/bin/python scripts/local_settings.py` prints it again)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
