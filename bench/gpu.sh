#!/usr/bin/env bash
# Everything a GPU session checks, in one go, on a fresh CUDA machine (one H200: about 7 minutes).
#
#     bash bench/gpu.sh                  # from the repository root; outputs in $OUT if set, else bench/results/
#     COMPILE=1 bash bench/gpu.sh        # also the torch.compile'd transformer++ vs reference (+3-5 minutes)
#
# Stages, each under `timeout`; a failing stage is reported with its exit code and the next one still runs:
#   venv       ~5 s      python3 -m venv --system-site-packages .venv (if there is none), so a CUDA torch that
#                        the machine already has is used
#   torch      0-3 min   pip install torch==2.13.0 (PyPI's Linux x86_64 wheel is a CUDA build) if the torch the
#                        venv sees has no CUDA
#   install    ~1 min    pip install -e '.[dev]'
#   versions   ~5 s      nvidia-smi; python, torch, CUDA and cuDNN versions, the device torch sees
#   tests      ~1 min    pytest -x -k "cuda or bf16 or fp16 or scan" on tests/test_ops.py,
#                        tests/test_runtime_throughput.py and tests/test_train.py
#   smoke      ~20 s     starlab lm transformer++ --protocol lm-tiny --device cuda --json
#   train      ~4 min    python bench/train.py --shape paper-125m --device cuda --micro-batches 1 2 4 8: the paper's
#                        125M backbone (24 slots, width 768, L 4096, vocab 32768), bf16 autocast, fused AdamW;
#                        transformer++, the nanoGPT-style reference, striped-mamba, striped-hyena
#   compile    3-5 min   only with COMPILE=1: the same at micro-batch 8, transformer++ and reference compiled
# The cpu-shaped run (python bench/train.py --shape cpu) is skipped here: it is measured on CPU machines.
# Outputs (three files at most, so that a runner that brings back only a few gets them all): gpu.log, everything
# printed (also on stdout); train-paper-125m.json and, with COMPILE=1, train-paper-125m-compile.json. The JSON
# results are written to bench/results/ and copied to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT:-bench/results}
LOG=$OUT_DIR/gpu.log
PY=.venv/bin/python
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR" bench/results
: >"$LOG"
SUMMARY=()

# stage NAME SECONDS COMMAND: run COMMAND (a bash string) under a timeout, log it, and record its exit code;
# a failure does not stop the script
stage() {
    local name=$1 limit=$2 command=$3 start=$SECONDS rc=0
    echo "=== $name (at most $limit s): $command" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" bash -euo pipefail -c "$command" 2>&1 | tee -a "$LOG" || rc=$?
    SUMMARY+=("$name: exit $rc after $((SECONDS - start)) s")
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$LOG"
}

# keep NAME: copy bench/results/NAME.json to $OUT (when there is one)
keep() {
    if [ -n "${OUT:-}" ] && [ -f "bench/results/$1.json" ]; then cp "bench/results/$1.json" "$OUT/"; fi
}

stage venv 120 '[ -x .venv/bin/python ] || python3 -m venv --system-site-packages .venv ||
    { python3 -m pip install -q --user virtualenv && python3 -m virtualenv --system-site-packages .venv; }'
# --ignore-installed: a CPU build of the same version seen through the system site-packages would count as installed
stage torch 420 "$PY -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null ||
    $PY -m pip install -q --ignore-installed torch==2.13.0"
stage install 300 "$PY -m pip install -q -e '.[dev]'"
stage versions 60 "nvidia-smi || echo 'no nvidia-smi'; $PY -c 'import sys, torch; print(sys.version); print(\"torch\", torch.__version__,
    \"CUDA\", torch.version.cuda, \"cuDNN\", torch.backends.cudnn.version(), torch.cuda.get_device_name())'"
stage tests 180 "$PY -m pytest -q -x -k 'cuda or bf16 or fp16 or scan' tests/test_ops.py \
    tests/test_runtime_throughput.py tests/test_train.py"
stage smoke 120 ".venv/bin/starlab lm transformer++ --protocol lm-tiny --device cuda --json"
stage train 330 "$PY bench/train.py --shape paper-125m --device cuda --micro-batches 1 2 4 8 --budget-s 120 \
    --result train-paper-125m"
keep train-paper-125m
if [ "${COMPILE:-0}" = 1 ]; then
    stage compile 420 "$PY bench/train.py --shape paper-125m --device cuda --compile --models transformer++ reference \
        --micro-batches 8 --budget-s 60 --result train-paper-125m-compile"
    keep train-paper-125m-compile
fi

printf '%s\n' "=== summary ($SECONDS s in all)" "${SUMMARY[@]}" | tee -a "$LOG"
