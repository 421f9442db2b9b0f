# The README's commands. `make run` and `make test` set everything up on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
ARGS    ?=

.PHONY: help install install-test run test lint format bench screenshots clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/sharq-server: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/sharq-server
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/sharq-server  ## virtualenv + SharQ and its runtime dependencies

install-test: $(VENV)/.test-deps  ## plus the test tools

run: install  ## start SharQ on http://127.0.0.1:8080 with an embedded Redis (ARGS="--port 9000 ...")
	$(BIN)/sharq-server $(ARGS)

test: install-test  ## lint, then the whole test suite on real Redis and real servers
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install-test  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test  ## apply ruff's formatting
	$(BIN)/ruff format .

bench: install-test  ## the Performance table of README.md (needs wrk, hey and redis-server 7 from Debian; installs them when root)
	@command -v wrk >/dev/null && command -v hey >/dev/null && command -v redis-server >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq wrk hey redis-server)
	$(BIN)/python -m bench.run

screenshots: install-test  ## the dashboard images of the docs, docs/img/dashboard-{1280,390}.png (needs Debian's chromium)
	$(BIN)/python -m tests.screenshots --out docs/img

clean:  ## remove the virtualenv and caches (not ./sharq-data)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info
