# Two entry points for a fresh machine with Python 3.11+ and make:
#   make demo   run the in-process demo on the embedded default (no server)
#   make test   run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typing bench check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[all]" --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ratemw demo

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src integrations tests benchmarks
	$(BIN)/ruff format --check src integrations tests benchmarks

typing: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_decide.py

check: test lint typing

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
