# minigpt: `make train` and `make test` work on a fresh machine (they create .venv first).
PYTHON ?= python3
VENV ?= .venv
# The torch build to install. The pin takes the CPU wheel where pip finds one locally and the
# default (CUDA) wheel from PyPI elsewhere; override e.g. TORCH="torch==2.5.1".
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: setup train test test-slow test-all docs lint format clean tensorboard notebooks lab

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Train the default model on Tiny Shakespeare (downloaded into data/ on first use).
# Offline: make train ARGS="data.path=/path/to/input.txt"
train: setup
	$(BIN)/python train.py $(ARGS)

# The default suite (under 3 minutes on 2 CPU cores); `make test-all` adds the slow tests.
# One pytest worker per core (pytest-xdist); PYTEST_WORKERS=0 runs them in this process.
# It ends with its ten slowest tests, so a test that grows shows up before the suite does.
PYTEST_WORKERS ?= auto
test: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=10 $(ARGS)

# The slow tests only (long training runs); CI runs them after `make test` and `make docs`. The
# notebooks' runs are left out: `make docs` runs every notebook already; so are the debugging
# gallery's runs, a minute each, to keep CI under 20 minutes (`make test-all` has both).
test-slow: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal --durations=15 -m "slow and not notebooks and not gallery" $(ARGS)

test-all: setup
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal -m "slow or not slow" $(ARGS)

# style, format, the layer contracts (pyproject.toml [tool.importlinter]) and function length
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_function_length.py

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site (docs/ + mkdocs.yml) into site/; --strict fails on a broken link.
docs: setup
	$(BIN)/mkdocs build --strict --quiet

tensorboard: setup
	$(BIN)/tensorboard --logdir outputs

# The notebooks' source is notebooks/*.py (Jupytext); `make notebooks` pairs each with an .ipynb copy
# (git-ignored, it keeps your outputs) and brings the two in line, whichever you edited last.
NOTEBOOK_SOURCES := $(wildcard notebooks/[0-9]*.py) notebooks/diagnostics.py
notebooks: setup
	$(BIN)/jupytext --sync $(NOTEBOOK_SOURCES)

# JupyterLab on the notebooks, from the project's environment (installs the `lab` extra once)
LAB_STAMP := $(VENV)/.lab-installed
$(LAB_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,lab]"
	touch $(LAB_STAMP)

lab: $(LAB_STAMP) notebooks
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf outputs site .pytest_cache .ruff_cache
