# Quick start: `make study` runs the default study end to end, `make test` runs the tests.
# Both create the virtual environment first if it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch; on a GPU machine use e.g. `make TORCH=torch==2.13.0 ...` from an index with CUDA builds.
TORCH ?= torch==2.13.0
CORES ?= all
BIN := $(VENV)/bin

.PHONY: setup study test report clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

study: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/python -m pytest -q

report: setup
	$(BIN)/snakemake --report results/report.html

clean:
	rm -rf results .snakemake
