# Two commands work on a fresh clone with only Python >= 3.10 and make: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint unit bench compat clean

$(BIN)/dconn: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.dev: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@ $(BIN)/dconn

demo: $(BIN)/dconn
	DCONN=$(CURDIR)/$(BIN)/dconn PYTHON=$(CURDIR)/$(BIN)/python examples/demo/run_demo.sh

lint: $(VENV)/.dev
	$(BIN)/ruff check declarative_conns tests benchmarks examples compat
	$(BIN)/ruff format --check declarative_conns tests benchmarks examples compat
	$(BIN)/mypy

unit: $(VENV)/.dev
	$(BIN)/python -m pytest -q

test: lint unit

# The whole benchmark (15-30 min on a shared 2-CPU machine); e.g. make bench BENCH_ARGS=--round-trips-only, or --quick.
bench: $(VENV)/.dev
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Real Airflow 2.11 and 3.3 on SQLite, PostgreSQL and MariaDB: see docs/deployments.md.
compat: $(VENV)/.dev
	$(BIN)/python compat/run_compat.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
