# The two commands of the README: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
AZURITE := node_modules/.bin/azurite
PORT ?= 7071
INSTANCES ?= 1

.PHONY: run test unit lint demo bench setup browser clean

run: setup
	$(PY) scripts/local_settings.py
	$(PY) -m devhost --app . --port $(PORT) --instances $(INSTANCES) --azurite .azurite

test: setup browser lint
	$(PY) -m pytest tests --durations=20

unit: setup
	$(PY) -m pytest tests/unit

# Settings in pyproject.toml. The CLI is checked as its package, so mypy resolves `batchpool`.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check shared devhost cli
	$(VENV)/bin/mypy shared devhost cli/batchpool

demo: setup
	$(PY) scripts/demo.py --base http://127.0.0.1:$(PORT)

bench: setup
	$(PY) bench/run_all.py

setup: $(VENV)/.installed $(AZURITE)

$(VENV)/.installed: requirements.txt requirements-dev.txt cli/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ./cli
	touch $@

# The dashboard's tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@sh scripts/install-chromium.sh

$(AZURITE): package.json
	npm install --no-audit --no-fund --no-package-lock
	touch $@

clean:
	rm -rf $(VENV) node_modules .azurite .devhost .mypy_cache .ruff_cache
