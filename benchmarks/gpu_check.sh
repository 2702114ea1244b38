#!/usr/bin/env bash
# The GPU check: one command on a machine with one CUDA GPU (PyTorch and Triton installed, no
# internet needed), under 8 minutes. It writes one summary file with
#   1. the machine: Python, torch, CUDA, the GPU;
#   2. the GPU parity tests (tests/models/test_gpu_parity.py, test_fast_paths.py): CUDA against
#      the pure-PyTorch reference, for what this machine can run;
#   3. the train step of each paper mixer at width 64, one by one and packed (K = 8 and 32),
#      in run-steps per second (benchmarks/packed_speed.py);
#   4. the compiled train step (a study's `compile`: torch.compile, CUDA graphs) against the
#      eager one for attention, Mamba and Hyena (benchmarks/compile_speed.py);
#   5. the default study end to end with `device: cuda` (Snakemake, all cores, one GPU).
# Each part's exit status is recorded and the next part runs regardless; the script fails if one did.
#
#   bash benchmarks/gpu_check.sh [--out DIR]      # on the GPU machine (default DIR: gpu_check)
#   bash benchmarks/gpu_check.sh --cpu            # a dry run on the CPU: the same parts, tiny
#                                                 # (parity tests skip, 2 benchmark steps, a dry-run plan)
#
# What tinylang needs besides torch (pydantic, snakemake, pyvene, ...) comes from
# $GPU_CHECK_WHEELS when it names a folder of wheels (benchmarks/gpu_wheels.sh makes it where
# pip reaches an index; a flash-linear-attention wheel can travel the same way), installed
# without their dependencies into $GPU_CHECK_SITE; else it must be installed already.
set -u
cd "$(dirname "$0")/.." || exit 1

mode=gpu out=gpu_check
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) mode=cpu ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (use --cpu, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done
PYTHON=${PYTHON:-python3}
mkdir -p "$out"
summary="$out/summary.md"
failed=0

if [ -n "${GPU_CHECK_WHEELS:-}" ]; then
  # Beside the image's packages, not over them: no dependency is resolved or replaced.
  site=${GPU_CHECK_SITE:-/tmp/tinylang-gpu-check-site}
  "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --upgrade --target "$site" \
    "$GPU_CHECK_WHEELS"/*.whl || exit 1
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if [ "$mode" = gpu ]; then
  mixers="attention base_conv based deltanet h3 hyena lstm mamba mamba2 rwkv"
  bench=(--device cuda --mixers $mixers --widths 64 --runs 8 32 --steps 60 --repeats 1)
  compiled=(--device cuda --mixers attention mamba hyena --backends inductor cudagraphs --steps 300)
  study=(--cores all --resources gpu=1 --config device=cuda)
  limits=(20 80 160 80 120)  # seconds for each part: about 5 minutes expected, 7.7 at the very most
else
  bench=(--device cpu --mixers attention mamba --widths 16 --runs 2 --steps 2 --repeats 1)
  compiled=(--device cpu --mixers attention --backends aot_eager --width 16 --steps 2)
  study=(-n --cores 1 --config device=cuda)  # planned as on the GPU machine
  limits=(60 120 120 120 120)
fi

# part TITLE COMMAND...: runs COMMAND (for at most its entry of `limits`) with its output in
# $out/<n>.log, and adds its status and the end of its output to the summary.
n=0
part() {
  local title=$1; shift
  local log="$out/$((n + 1)).log" start=$SECONDS rc
  timeout "${limits[$n]}" "$@" >"$log" 2>&1; rc=$?
  n=$((n + 1))
  [ $rc -eq 0 ] || failed=1
  { echo "## $n. $title"
    echo
    echo "\`$*\`: exit $rc after $((SECONDS - start)) s"
    echo
    echo '```'
    tail -n 25 "$log"
    echo '```'
    echo; } >>"$summary"
}

{ echo "# tinylang GPU check ($mode mode)"; echo; date -u; echo; } >"$summary"
part "Machine" "$PYTHON" -c "import platform, torch
print('python', platform.python_version(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)
print('GPU:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')"
part "GPU parity tests" "$PYTHON" -m pytest -q -p no:cacheprovider tests/models/test_gpu_parity.py tests/models/test_fast_paths.py -rs
part "Train step, one by one and packed" "$PYTHON" benchmarks/packed_speed.py "${bench[@]}"
part "Compiled train step against eager" "$PYTHON" benchmarks/compile_speed.py "${compiled[@]}"
part "Default study (device: cuda)" "$PYTHON" -m snakemake -s workflow/Snakefile "${study[@]}"

echo "wrote $summary"
exit $failed
