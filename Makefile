# kafka-s3-backup: the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
PYTEST_ARGS ?=

.PHONY: help install browser up down test unit lint demo serve bench fidelity clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | column -t -s $$'\t'

install: $(VENV)/.installed  ## create .venv and install the project (editable) with dev extras

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

browser:  ## headless Chromium for the UI test: Debian's package, installed only when missing
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

up: install  ## install what is missing and start Kafka + SeaweedFS + schema registry on loopback; writes .stack/env
	scripts/stack-up.sh

down:  ## stop exactly what `make up` / `make serve` started
	scripts/stack-down.sh

test: install up browser  ## everything: unit, integration and end-to-end tests against the real stack
	set -a; . .stack/env; set +a; $(BIN)/pytest $(PYTEST_ARGS)

unit: install  ## the fast tests of pure code only (no services)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: install  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

demo: install up serve  ## the main job end to end: seed topics, backup and restore deployments, digests
	set -a; . .stack/env; . .stack/prefect.env; set +a; cd "$$(mktemp -d)" && $(CURDIR)/$(BIN)/python -m kbackup.demo

serve: up  ## a local Prefect server + worker with the backup, restore and prune deployments (UI address printed)
	scripts/serve.sh

fidelity: install up  ## observe the fidelity matrix on the real stack and rewrite docs/fidelity.md with it
	set -a; . .stack/env; set +a; KBACKUP_WRITE_FIDELITY=1 $(BIN)/pytest tests/integration/test_fidelity_matrix.py $(PYTEST_ARGS)

BENCH_SCALE ?= 1.0
bench: install up  ## the benchmarks in bench/ (writes bench/README.md tables; BENCH_SCALE=0.2 for a quicker run)
	set -a; . .stack/env; set +a; $(BIN)/python bench/formats.py --records $$(python3 -c "print(int(1000000 * $(BENCH_SCALE)))")
	$(BIN)/python bench/avro_codecs.py --records $$(python3 -c "print(int(200000 * $(BENCH_SCALE)))")
	set -a; . .stack/env; set +a; $(BIN)/python bench/backup.py --scale $(BENCH_SCALE)
	set -a; . .stack/env; set +a; $(BIN)/python bench/restore.py --records $$(python3 -c "print(int(1000000 * $(BENCH_SCALE)))")
	set -a; . .stack/env; set +a; $(BIN)/python bench/fixed_cost.py

clean: down  ## stop the stack and remove its data (the install caches stay)
	rm -rf .stack
