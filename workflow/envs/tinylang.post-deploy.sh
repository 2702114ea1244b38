#!/usr/bin/env bash
# Snakemake runs this once, inside the new conda environment of workflow/envs/tinylang.yaml:
# it installs the planning process's tinylang checkout (editable, so jobs run that checkout's
# code; the Snakefile names it in TINYLANG_SOURCE).
set -euo pipefail
python -m pip install --no-deps --editable "${TINYLANG_SOURCE:?the Snakefile sets it to the tinylang checkout}"
