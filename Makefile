# Every target sets itself up: a fresh clone needs only python3 (3.11) and make.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PENDO_SYNC_HOME ?= $(CURDIR)/.pendo_sync
export DAGSTER_HOME ?= $(PENDO_SYNC_HOME)/dagster_home

.PHONY: install demo dev test lint bench postgres clean

$(BIN)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

## make demo: sample DuckDB warehouse + local Pendo emulator + both syncs through Dagster
demo: install
	$(BIN)/pendo-sync demo

## make dev: the Dagster UI on the same embedded defaults (emulator on 127.0.0.1:8765)
dev: install
	$(BIN)/pendo-sync dev

## make test: the whole suite (starts the local PostgreSQL server if it is down)
test: install postgres
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check pendo_sync pendo_sync_tests bench
	$(BIN)/ruff format --check pendo_sync pendo_sync_tests bench
	$(BIN)/mypy pendo_sync

bench: install postgres
	$(BIN)/python bench/run.py

postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	@for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; \
	  echo "PostgreSQL is not answering on 127.0.0.1:5432"; exit 1

clean:
	rm -rf $(PENDO_SYNC_HOME)
