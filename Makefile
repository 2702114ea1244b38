# Quick start: `make study` runs the default study end to end, `make test` runs the tests.
# Both create the virtual environment first if it is missing or out of date.
PYTHON ?= python3
VENV ?= .venv
# torch comes from wherever pip is pointed. PyPI's Linux wheel is the CUDA build (GBs of CUDA
# libraries); on a machine without a GPU take the CPU build from PyTorch's index:
#   make test TORCH_INDEX="--index-url https://download.pytorch.org/whl/cpu"
# (a machine whose pip already points at a CPU wheel index, like the reference one, needs nothing).
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
CORES ?= all
BIN := $(VENV)/bin

.PHONY: setup browser study test report clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(TORCH_INDEX)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

study: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup browser
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# Headless Chromium for the test that opens the Snakemake report (best effort: without it,
# that test is skipped).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && \
	    { apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || \
	      { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; }; }; } || \
	  echo "no Chromium: the report test will be skipped"

report: setup
	$(BIN)/snakemake --report results/report.html

clean:
	rm -rf results .snakemake
