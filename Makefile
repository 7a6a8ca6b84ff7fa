# Everything a person runs. `make test` and `make demo` install what they need first:
# .venv from pyproject.toml and the Firebase CLI for the local stack's Auth emulator
# (tools/firebase/install.sh) and the operator console's build (console/install.sh: npm ci, esbuild);
# for the tests also Chromium, the web example's and @jobrelay/client's
# npm packages (examples/web/install.sh, clients/web/install.sh), the Node Cloud Tasks client
# (tests/cloudtasks/node/install.sh) and checkov in its own .venv-checkov (tests/infra/checkov.sh).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install firebase-tools test-deps bench-deps soak demo test test-unit test-integration test-e2e test-infra test-web console-screenshots checkov lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# firebase-tools 14.x into tools/firebase/node_modules (the stack also runs this itself when it is missing).
firebase-tools:
	bash tools/firebase/install.sh

test-deps: install firebase-tools
	bash clients/web/install.sh
	bash console/install.sh
	examples/web/install.sh
	bash tests/cloudtasks/node/install.sh
	bash tests/infra/checkov.sh --install-only

demo: install firebase-tools
	bash console/install.sh
	$(PY) -m jobrelay.local.demo

test: install test-deps
	$(PY) -m pytest -q

test-unit: install
	$(PY) -m pytest -q tests/unit

test-integration: install firebase-tools
	$(PY) -m pytest -q tests/integration tests/cloudtasks

test-e2e: install test-deps
	$(PY) -m pytest -q tests/e2e

test-infra: install
	$(PY) -m pytest -q tests/infra

test-web: install test-deps
	$(PY) -m pytest -q tests/e2e/test_web_client.py

# The operator console's browser test, keeping its screenshots in docs/console/ (docs/console.md shows them).
console-screenshots: install test-deps
	JOBRELAY_CONSOLE_SCREENSHOTS=docs $(PY) -m pytest -q tests/e2e/test_console.py

checkov: install
	bash tests/infra/checkov.sh

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy jobrelay

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Benchmarks (bench/README.md): not part of `make test`. bench-deps adds Celery, psutil and Redis (Debian).
bench-deps: install
	bash bench/install-deps.sh

bench: install bench-deps
	$(PY) -m bench

soak: install bench-deps
	$(PY) -m bench soak

clean:
	rm -rf $(VENV) .venv-checkov .jobrelay .pytest_cache .mypy_cache .ruff_cache examples/web/dist clients/web/dist console/dist
