"""Run every benchmark, print the figures and keep them in bench/results/latest.json."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import billing  # noqa: E402
import jobs  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    started = time.time()
    figures = {"jobs": jobs.main([]), "billing": billing.main([])}
    figures["seconds"] = round(time.time() - started, 1)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(figures, indent=2))
    print(f"written to {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    main()
