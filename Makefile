# The README's commands. `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup demo test test-numerics test-all bench bench-warmstart lint clean-demo app

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,app]'
	touch $(STAMP)

## Synthetic subject -> fit -> grids -> clean -> evaluation report (CPU, a few minutes).
demo: setup
	$(BIN)/python -m sensor_removal demo --out demo

## The default test suite (fast; CI runs this), then the numerics reruns below.
test: setup
	$(BIN)/python -m pytest
	$(MAKE) --no-print-directory test-numerics

## Tests that compare floats across code paths, again with the kernels of another CPU
## generation (AVX2 convolutions, no AVX-512 ATen kernels) and with one thread: an exact
## comparison that only holds for this machine's kernels fails here, not on a user's CPU.
NUMERICS := -m "numerics and not slow" -q
test-numerics: setup
	ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2 $(BIN)/python -m pytest $(NUMERICS)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest $(NUMERICS)

## Everything, including tests marked slow.
test-all: setup
	$(BIN)/python -m pytest -m "slow or not slow"

## Side-by-side speed measurements (ours vs a plain baseline), printed as ratios.
bench: setup
	$(BIN)/python bench/run_all.py

## Population warm start vs from scratch (ours; ~10 min on one thread, so not in `bench`).
bench-warmstart: setup
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python bench/bench_warmstart.py

## The browser app on http://127.0.0.1:7860 (RUNS=folder of runs, DATA=folder of recordings).
RUNS ?= runs
DATA ?= data
app: setup
	$(BIN)/python -m lightning_app --runs $(RUNS) $(if $(wildcard $(DATA)),--data $(DATA),)

## ruff (lint + format), mypy, the import contracts of the layers (docs/design.md). CI runs it.
lint: setup
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .
	$(BIN)/python -m mypy
	$(BIN)/lint-imports

clean-demo:
	rm -rf demo
