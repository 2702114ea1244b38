#!/usr/bin/env bash
# The wheels the GPU check needs on a machine without internet whose image already holds
# PyTorch, Triton and the scientific stack (numpy, pandas, pyarrow, matplotlib, seaborn, scipy,
# transformers, pyyaml, tqdm, jinja2, requests, psutil, pytest, pytest-xdist, hypothesis, ...)
# but not tinylang's own dependencies: pydantic, Snakemake and pyvene, with what they import.
# Run it where pip reaches an index, in the environment the tests pass in (each wheel is the
# version installed here), then let the folder travel with the checkout:
#
#   bash benchmarks/gpu_wheels.sh [DIR] [PYTHON_VERSION] [NAME==VERSION ...]
#   GPU_CHECK_WHEELS=.whl bash benchmarks/gpu_check.sh      # there: installs them, then checks
#
# DIR defaults to .whl, the version to 3.12; NAME==VERSION adds a wheel not installed here, e.g.
# fla-core==0.6.0 for flash-linear-attention's Triton kernels (the DeltaNet parity test).
#
# Wheels only (no source builds there), no dependencies resolved (the image has the rest);
# about 26 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.whl}
version=${2:-3.12}
extras=("${@:3}")
PYTHON=${PYTHON:-python3}

# What tinylang, Snakemake (planning, running, --report) and pyvene import that such an image
# lacks; keep it in step with pyproject.toml's dependencies.
packages=(
  pydantic pydantic-core annotated-types typing-inspection
  pyvene
  snakemake snakemake-interface-common snakemake-interface-executor-plugins
  snakemake-interface-logger-plugins snakemake-interface-report-plugins
  snakemake-interface-scheduler-plugins snakemake-interface-storage-plugins
  argparse-dataclass conda-inject configargparse connection-pool docutils dpath gitpython gitdb
  smmap humanfriendly immutables jsonschema jsonschema-specifications referencing rpds-py
  nbformat fastjsonschema jupyter-core traitlets platformdirs pulp smart-open throttler yte
  tenacity sqlmodel sqlalchemy greenlet typing-extensions
)

download() {
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version "$version" \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$dir" "$1"
}

mkdir -p "$dir"
for name in "${packages[@]}"; do
  pinned=$("$PYTHON" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name" 2>/dev/null) || {
    echo "gpu_wheels.sh: $name is not installed here; run it in the project's environment (make setup)" >&2
    exit 1
  }
  download "$name==$pinned" 2>/dev/null && continue
  # Published as source only: build it here, which is right for pure Python alone.
  "$PYTHON" -m pip wheel --quiet --no-deps -w "$dir" "$name==$pinned"
  if ls "$dir"/*.whl | grep -i "/${name//-/_}-$pinned-" | grep -qv -- "-none-any.whl"; then
    echo "gpu_wheels.sh: $name $pinned has no wheel for Python $version and is not pure Python" >&2
    exit 1
  fi
done
for wanted in "${extras[@]}"; do
  download "$wanted"
done
echo "$(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1), in $dir for Python $version"
