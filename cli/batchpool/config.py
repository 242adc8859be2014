"""Where the CLI finds its addresses and keys: a flag, else an environment variable, else the
active profile of the profile file, else a default.

The profile file is an INI file, `$BATCHPOOL_CONFIG` or `~/.config/batchpool/config.ini`
(under `$XDG_CONFIG_HOME` when set), written with mode 0600. Keys are never taken from
flags, so they never land in shell history: they come from the environment, from the file,
or from `batchpool configure`, which reads them at a hidden prompt or from standard input.
"""
from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DEFAULT_BASE_URL = "http://127.0.0.1:7071"

# setting name -> (environment variable, is it a secret)
SETTINGS = {
    "base_url": ("BATCHPOOL_BASE_URL", False),
    "operator_key": ("BATCHPOOL_OPERATOR_KEY", True),
    "account": ("BATCHPOOL_ACCOUNT", False),
    "pool_service_url": ("BATCHPOOL_POOL_SERVICE_URL", False),
    "account_key": ("BATCHPOOL_ACCOUNT_KEY", True),
    "account_secondary_key": ("BATCHPOOL_ACCOUNT_SECONDARY_KEY", True),
    "subscription": ("BATCHPOOL_SUBSCRIPTION", False),
    "service": ("BATCHPOOL_SERVICE", False),
    "batch_requests_url": ("BATCHPOOL_BATCH_REQUESTS_URL", False),
    "api_key": ("BATCHPOOL_API_KEY", True),
    "webhook_secret": ("BATCHPOOL_WEBHOOK_SECRET", True),
    "storage_connection_string": ("AZURE_STORAGE_CONNECTION_STRING", True),
}
SECRETS = tuple(name for name, (_, secret) in SETTINGS.items() if secret)


class ConfigError(Exception):
    """A setting the command needs is missing or unusable."""


def config_path() -> Path:
    explicit = os.environ.get("BATCHPOOL_CONFIG")
    if explicit:
        return Path(explicit)
    root = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(root) / "batchpool" / "config.ini"


def _read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    if path.exists():
        parser.read(path, encoding="utf-8")
    return parser


@dataclass
class Settings:
    profile: str
    flags: dict[str, Optional[str]]

    def get(self, name: str) -> Optional[str]:
        flagged = self.flags.get(name)
        if flagged:
            return flagged
        variable, _ = SETTINGS[name]
        if os.environ.get(variable):
            return os.environ[variable]
        parser = _read(config_path())
        if parser.has_section(self.profile):
            saved = parser.get(self.profile, name, fallback="")
            if saved:
                return saved
        return DEFAULT_BASE_URL if name == "base_url" else None

    def need(self, name: str, hint: str) -> str:
        value = self.get(name)
        if not value:
            variable, secret = SETTINGS[name]
            flag = f"--{name.replace('_', '-')}"
            how = (f"set {variable}, or run `batchpool configure --set {name}`" if secret
                   else f"pass {flag}, set {variable}, or run `batchpool configure {flag} ...`")
            raise ConfigError(f"no {name.replace('_', ' ')} for profile '{self.profile}' ({hint}): {how}")
        return value

    def save(self, values: dict[str, Optional[str]]) -> Path:
        """Write these settings into the active profile (mode 0600); None removes one."""
        path = config_path()
        parser = _read(path)
        if not parser.has_section(self.profile):
            parser.add_section(self.profile)
        for name, value in values.items():
            if name not in SETTINGS:
                raise ConfigError(f"unknown setting {name}")
            if value is None:
                parser.remove_option(self.profile, name)
            else:
                parser.set(self.profile, name, value)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            parser.write(file)
        os.replace(temporary, path)
        return path

    def shown(self) -> dict[str, str]:
        """Every setting of the profile as it resolves, secrets as `set` or `not set`."""
        view = {}
        for name in SETTINGS:
            value = self.get(name)
            view[name] = ("set" if value else "not set") if name in SECRETS else (value or "")
        return view
