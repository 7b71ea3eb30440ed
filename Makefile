# flowscope: `make serve` sets up and starts the server with the editor on http://127.0.0.1:8188;
# `make test` sets up and runs every check; `make demo` runs an example workflow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv serve demo-data test lint typecheck pytest demo bench clean

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

DATA := ./flowscope-data

# The demo: tiny random-weight SD1 models (made in a second; nothing is downloaded), the demo
# workflows in the editor's Workflows panel, and the image the image-to-image demo starts from.
demo-data: venv
	test -f $(DATA)/models/checkpoints/tiny-sd1.safetensors || \
		$(BIN)/flowscope models create-tiny $(DATA)/models --family sd1
	mkdir -p $(DATA)/user/default/workflows $(DATA)/input
	cp -n examples/sd-*.json $(DATA)/user/default/workflows/
	cp -n examples/flowscope-demo-input.png $(DATA)/input/

serve: demo-data
	$(BIN)/flowscope serve --base-directory $(DATA)

demo: venv
	$(BIN)/flowscope run examples/demo.json --base-directory ./flowscope-data

bench: venv
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/telemetry.py
	$(BIN)/python benchmarks/logstore.py
	$(BIN)/python benchmarks/sd.py cpu
	$(BIN)/python benchmarks/forward.py
	$(BIN)/python benchmarks/server.py

clean:
	rm -rf $(VENV) flowscope-data .pytest_cache .mypy_cache .ruff_cache
