"""Which files of an app folder a deployment ships: `.funcignore` matched as Azure Functions
Core Tools matches it (its GitIgnoreParser).

Core Tools' rules, which differ from git's:
* a pattern is matched against the start of a file's path relative to the app root, so it
  is anchored there (`__pycache__` leaves out only the root folder of that name; write
  `**/__pycache__` for the others) and also matches longer names (`tests` matches
  `tests.py`);
* `**` matches any run of characters (at least one, `/` included), `*` any run of at least
  one character other than `/`; every other character, `?` included, is literal;
* a leading `/` is dropped; `!pattern` takes a path back in; `#` starts a comment line.
"""
from __future__ import annotations

import re
from pathlib import Path

_SPECIAL = re.compile(r"[-\[\]/{}()+?.\\^$|]")


def _regex(pattern: str) -> str:
    escaped = _SPECIAL.sub(lambda m: "\\" + m.group(0), pattern)
    return escaped.replace("**", "(.+)").replace("*", "([^/]+)")


class FuncIgnore:
    def __init__(self, text: str):
        ignored: list[str] = []
        kept: list[str] = []
        for line in text.split("\n"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            target = kept if line.startswith("!") else ignored
            line = line[1:] if line.startswith("!") else line
            target.append(_regex(line[1:] if line.startswith("/") else line))
        self._ignored = re.compile("^((" + ")|(".join(sorted(ignored)) + "))") if ignored else None
        self._kept = re.compile("^((" + ")|(".join(sorted(kept)) + "))") if kept else None

    def denies(self, path: str) -> bool:
        """Whether a path (relative to the app root, `/`-separated) is left out."""
        if self._kept is not None and self._kept.match(path):
            return False
        return self._ignored is not None and bool(self._ignored.match(path))


def package_files(app_root: Path) -> list[str]:
    """The files a publish of `app_root` would ship, relative and sorted."""
    ignore_file = app_root / ".funcignore"
    rules = FuncIgnore(ignore_file.read_text(encoding="utf-8") if ignore_file.is_file() else "")
    found = (p.relative_to(app_root).as_posix() for p in app_root.rglob("*") if p.is_file())
    return sorted(path for path in found if not rules.denies(path))
