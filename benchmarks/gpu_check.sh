#!/usr/bin/env bash
# GPU check for one H100/H200: the 7B shape (or --preset qwen3-vl-8b, qwen3.5-9b, ...), random bf16 weights,
# 512x512 images, batch 1, 8, 16, 32, 64: images/s, each part's time and utilisation (TFLOP/s against
# the measured bf16 matmul ceiling); with --compile also the compiled model (Detector(compile=True)) and
# its P(fake) against the eager model's.
# Installs nothing from the network: the machine's own PyTorch is used, and the pure-Python wheels
# this package needs in newer versions than the machine has (transformers 5.24, huggingface_hub
# 2.x and its httpx2) are taken from .device_wheels/ (fill it here with
#   pip download --no-deps -d .device_wheels transformers==5.24.0 huggingface_hub==2.4.0 httpx2 httpcore2
# and carry it). Writes the JSON report to ${OUT:-.}/gpu_check.json (after every step). About 1.5 minutes
# without --compile; with it 4-6 (inductor compiles on a cold cache; the script's --time-budget, 400 s,
# skips what would not fit, and the timeout below stops it in any case).
#   bash benchmarks/gpu_check.sh --compile
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-.}"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
DEPS=$(mktemp -d)
if compgen -G ".device_wheels/*.whl" > /dev/null; then
  $PY -m pip install -q --no-index --no-deps --target "$DEPS" .device_wheels/*.whl
fi
# The package itself, without installing: the folders map to deepvrm.* as setuptools maps them.
SHIM=$(mktemp -d)
mkdir "$SHIM/deepvrm"
for f in modeling_deepvrm/*; do ln -s "$PWD/$f" "$SHIM/deepvrm/"; done
for sub in configuration trainers hub_upload inference; do ln -s "$PWD/$sub" "$SHIM/deepvrm/$sub"; done
export PYTHONPATH="$DEPS:$SHIM:${PYTHONPATH:-}"
$PY -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
# Inductor's cache on the machine's own disk (a fresh machine compiles cold either way).
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/torchinductor_gpu_check}"
timeout 450 $PY benchmarks/gpu_check.py --json "$OUT_DIR/gpu_check.json" "$@"
