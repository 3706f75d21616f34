#!/usr/bin/env bash
# GPU check for one H100/H200: the 7B shape (or --preset qwen3-vl-8b, qwen3.5-9b, ...), random bf16 weights,
# 512x512 images, batch 1..64.
# Installs nothing from the network: the machine's own PyTorch is used, and the pure-Python wheels
# this package needs in newer versions than the machine has (transformers 5.24, huggingface_hub
# 2.x and its httpx2) are taken from .device_wheels/ (fill it here with
#   pip download --no-deps -d .device_wheels transformers==5.24.0 huggingface_hub==2.4.0 httpx2 httpcore2
# and carry it). Writes the JSON report to ${OUT:-.}/gpu_check.json. Runs in about 3-4 minutes.
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
for sub in configuration trainers hub_upload; do ln -s "$PWD/$sub" "$SHIM/deepvrm/$sub"; done
export PYTHONPATH="$DEPS:$SHIM:${PYTHONPATH:-}"
$PY -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)"
timeout 290 $PY benchmarks/gpu_check.py --json "$OUT_DIR/gpu_check.json" "$@"
