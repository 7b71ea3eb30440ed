# flowscope: `make serve` sets up and starts the server with the editor on http://127.0.0.1:8188;
# `make test` sets up and runs every check; `make demo` runs an example workflow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv serve test lint typecheck pytest demo bench clean

venv: $(STAMP)

# torch is pinned through constraints.txt: an unpinned torch pulls the multi-gigabyte CUDA build.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest -n 2 -q

test: lint typecheck pytest

serve: venv
	$(BIN)/flowscope serve --base-directory ./flowscope-data

demo: venv
	$(BIN)/flowscope run examples/demo.json --base-directory ./flowscope-data

bench: venv
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/telemetry.py
	$(BIN)/python benchmarks/logstore.py
	$(BIN)/python benchmarks/forward.py
	$(BIN)/python benchmarks/server.py

clean:
	rm -rf $(VENV) flowscope-data .pytest_cache .mypy_cache .ruff_cache
