# The README's commands. `make run` and `make test` set everything up on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
ARGS    ?=

.PHONY: help install install-test run test lint format bench docs docs-build screenshots clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Both distributions editable, the client (clients/python/, which the server requires) first.
$(BIN)/sharq-server: pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e clients/python -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/sharq-server
	$(BIN)/pip install --quiet -e clients/python -e '.[test]'
	touch $@

install: $(BIN)/sharq-server  ## virtualenv + SharQ (server and Python client) and its runtime dependencies

install-test: $(VENV)/.test-deps  ## plus the test tools

run: install  ## start SharQ on http://127.0.0.1:8080 with an embedded Redis (ARGS="--port 9000 ...")
	$(BIN)/sharq-server $(ARGS)

test: install-test  ## lint, then the whole test suite on real Redis and real servers (the docs' examples and strict build too)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: install-test  ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test  ## apply ruff's formatting
	$(BIN)/ruff format .

bench: install-test  ## the figures of docs/performance.md (needs wrk, hey and redis-server 7 from Debian; installs them when root)
	@command -v wrk >/dev/null && command -v hey >/dev/null && command -v redis-server >/dev/null \
		|| (apt-get update -qq && apt-get install -y -qq wrk hey redis-server)
	$(BIN)/python -m bench.run

docs: install-test  ## serve the documentation site on http://127.0.0.1:8000 while you edit docs/
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: install-test  ## build the documentation site into site/ (--strict: no broken link, no orphan page)
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site

screenshots: install-test  ## the dashboard images of the docs, docs/img/dashboard-{1280,390}.png (needs Debian's chromium)
	$(BIN)/python -m tests.screenshots --out docs/img

clean:  ## remove the virtualenv and caches (not ./sharq-data)
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info clients/python/*.egg-info site
