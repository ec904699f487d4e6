# Two entry points on a fresh machine: `make run` (the app) and `make test` (the whole suite).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501

.PHONY: run test test-fast lint install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch first and pinned to the CPU build when none is installed: a bare `torch` requirement
# would otherwise pull a multi-GB CUDA build. An existing torch within pyproject.toml's bounds is kept.
# The project itself is installed editable (`textgen` command, engine from this checkout); then the
# compiled CPU loops (batch-1 sampling, GRU training) are built where a C++ compiler is present
# (textgen_core/native_step.py).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[app]"
	$(BIN)/python -m textgen_core.native_step --optional
	touch $@

# The test tools, and ONNX export with onnxruntime, which its test needs.
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e ".[app,dev,export]"
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/streamlit run app.py --server.address 127.0.0.1 --server.port $(PORT)

# Two worker processes, each taking whole test files (their servers and fixtures stay in one process):
# on two cores about half the time of one process, since much of the suite waits on subprocesses,
# servers and the browser. TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= 2
PYTEST := OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile
test: $(VENV)/.installed-dev
	$(PYTEST)

# The suite without the browser layer.
test-fast: $(VENV)/.installed-dev
	$(PYTEST) -m "not e2e"

# ruff's lint rules and mypy, as configured in pyproject.toml (the code is formatted by hand at 120
# columns, not by `ruff format`).
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache runs build *.egg-info
