# Liaison Grid. `make demo` runs the platform on the seeded Beijing demo city; `make test` runs every test.
# Both install what is missing (Python venv, PostgreSQL + PostGIS, Redis) and start private instances
# under .local/ unless DATABASE_URL / CELERY_BROKER_URL point elsewhere.

SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTHON ?= python3

.PHONY: help demo test lint bench services stop venv

help:
	@echo "make demo      set everything up, seed Beijing, run the API and a worker (Ctrl-C stops)"
	@echo "make test      set everything up and run the whole test suite"
	@echo "make lint      ruff and mypy"
	@echo "make bench     benchmarks; figures go to tests/bench/results.json"
	@echo "make services  start the private PostgreSQL and Redis, print their URLs"
	@echo "make stop      stop them"

$(INSTALLED): pyproject.toml
	@command -v $(PYTHON) >/dev/null && $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			python3 python3-venv python3-dev gcc; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

venv: $(INSTALLED)

services:
	@bash deploy/local/services.sh start

stop:
	@bash deploy/local/services.sh stop

demo: $(INSTALLED) services
	$(BIN)/liaison demo

test: $(INSTALLED) services
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

bench: $(INSTALLED) services
	$(BIN)/python -m tests.bench.hierarchy && $(BIN)/python -m tests.bench.geography && $(BIN)/python -m tests.bench.heat && $(BIN)/python -m tests.bench.workflows
	$(BIN)/python -m tests.bench.intake
	$(BIN)/python -m tests.bench.overload
	$(BIN)/python -m tests.bench.deputies
