#!/usr/bin/env bash
# The GPU acceptance run: one command that uses a short visit to a GPU machine in full.
#
#   bash bench/gpu_accept.sh [OUT_DIR]        # OUT_DIR, else $ACCEPT_OUT, else ./gpu-accept
#
# Runs from the repository root, offline, on a machine that has torch with CUDA, h5py, pandas,
# scikit-learn, scipy and pytest but no package index, rasterio, torchgeo or submitit (none of which
# the GPU path needs: tests/test_acceptance.py proves it on the CPU with them made unimportable).
# Every step has its own timeout and writes its log into OUT_DIR as it goes; summary.txt gets one
# line per step (exit status, seconds), so a visit cut short still leaves every figure it measured.
#
# Budget, at most 9 minutes on one H100 (each limit is the step's estimate with room to spare):
#   versions      20 s  (nvidia-smi and imports: seconds)
#   install       60 s  (an editable install without dependencies or an index: ~15 s; else PYTHONPATH)
#   cuda tests   210 s  (the `cuda` tests: ~20 short runs at 32-48 px on toy, each a few seconds on a
#                        GPU plus the toy builds, ~30 s, and process start-ups)
#   gpu bench    240 s  (bench/gpu.py at a reduced size: 2 architectures x 6 real runs of 2 epochs,
#                        pure-compute timings, K = 1 and 2; prints each line as it is measured)
#   total        530 s
#
# CI runs this script on the CPU (tests/test_acceptance.py) with ACCEPT_DEVICE=standin (the CPU
# stand-in for CUDA), ACCEPT_BENCH_ARGS at tiny sizes and ACCEPT_INSTALL=0 (its venv is installed).
set -u
OUT="${1:-${ACCEPT_OUT:-gpu-accept}}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
DEVICE="${ACCEPT_DEVICE:-cuda}"
BENCH_ARGS="${ACCEPT_BENCH_ARGS:---size 64 --batch-size 256 --ms-per-class 1500 --rgb-per-class 500 --epochs 2 --archs R S --ks 1 2 --k-epochs 2 --pure-steps 10}"
export PYTHONUNBUFFERED=1

step() {  # step NAME LIMIT_S COMMAND...: run it under `timeout`, log to OUT/NAME.log, one summary line
    local name=$1 limit=$2
    shift 2
    local started=$SECONDS
    timeout --signal=TERM --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    local note=""
    [ "$status" -eq 124 ] && note=" (timed out after ${limit} s)"
    echo "$name: exit $status in $((SECONDS - started)) s$note" | tee -a "$OUT/summary.txt"
    return 0
}

: >"$OUT/summary.txt"
step versions 20 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
  $PYTHON -c 'import sys, torch, torchvision; print(\"python\", sys.version.split()[0]); \
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"cudnn\", torch.backends.cudnn.version()); \
print(\"torchvision\", torchvision.__version__); print(\"gpus\", torch.cuda.device_count(), \
[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])'"
cat "$OUT/versions.log"

# offline and without dependency resolution: what the machine has is what runs
if [ "${ACCEPT_INSTALL:-1}" = 1 ]; then
  step install 60 "$PYTHON" -m pip install --no-deps --no-index --no-build-isolation -q -e .
fi
if ! "$PYTHON" -c "import ackd_bench" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  echo "install: not installed; running from the checkout on PYTHONPATH" | tee -a "$OUT/summary.txt"
fi

step cuda-tests 210 "$PYTHON" -m pytest -q -m cuda --maxfail=5 -p no:cacheprovider --durations=10 tests/
tail -n 15 "$OUT/cuda-tests.log"

# shellcheck disable=SC2086  # BENCH_ARGS is a list of options
step gpu-bench 240 "$PYTHON" bench/gpu.py --device "$DEVICE" $BENCH_ARGS
cat "$OUT/gpu-bench.log"
echo "acceptance run done: $OUT/summary.txt"
