"""`.funcignore` matched as Core Tools matches it, and what the app's own publish ships."""
from pathlib import Path

import pytest

from devhost.funcignore import FuncIgnore, package_files

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("patterns,path,denied", [
    ("__pycache__", "__pycache__/a.pyc", True),
    ("__pycache__", "shared/__pycache__/a.pyc", False),       # anchored at the root
    ("**/__pycache__", "shared/__pycache__/a.pyc", True),
    ("**/__pycache__", "__pycache__/a.pyc", False),           # ** needs at least one character
    ("tests", "tests.py", True),                              # a prefix, not a whole name
    ("/bench", "bench/run.py", True),
    ("*.md", "README.md", True),
    ("*.md", "docs/a.md", False),                             # * stops at /
    ("a?c", "abc", False),                                    # ? is literal
    ("tests\n!tests/keep.py", "tests/keep.py", False),
    ("# comment\n\n", "anything", False),
])
def test_core_tools_matching(patterns, path, denied):
    assert FuncIgnore(patterns).denies(path) is denied


def test_the_app_ships_no_caches_tests_or_local_settings(tmp_path):
    for cache in ("__pycache__", "shared/__pycache__", "shared/storage/__pycache__", ".pytest_cache"):
        (ROOT / cache).mkdir(parents=True, exist_ok=True)
    shipped = package_files(ROOT)
    assert "host.json" in shipped and "shared/runner.py" in shipped and "requirements.txt" in shipped
    assert not [p for p in shipped if "__pycache__" in p or p.startswith((".pytest_cache", "tests/", "devhost/",
                                                                          "bench/", ".venv/", "node_modules/"))]
    assert "local.settings.json" not in shipped
