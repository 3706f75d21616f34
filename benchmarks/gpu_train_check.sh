#!/usr/bin/env bash
# GPU check of `deepvrm train` on one H100/H200 (see gpu_train_check.py): the 7B stage-2 recipe's
# step time and memory (batch 4, 512x512, bf16, with and without gradient checkpointing), then a
# tiny FSDP2 run through `accelerate launch` with configuration/accelerate/fsdp.yaml (1 process).
# Installs nothing from the network: wheels newer than the machine's come from .device_wheels/
# (see gpu_check.sh) and .device_wheels_train/ (pip download --no-deps peft==0.21.2 accelerate==1.15.0).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-.}"
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
DEPS=$(mktemp -d)
for d in .device_wheels .device_wheels_train; do
  if compgen -G "$d/*.whl" > /dev/null; then $PY -m pip install -q --no-index --no-deps --target "$DEPS" $d/*.whl; fi
done
SHIM=$(mktemp -d)
mkdir "$SHIM/deepvrm"
for f in modeling_deepvrm/*; do ln -s "$PWD/$f" "$SHIM/deepvrm/"; done
for sub in configuration trainers hub_upload; do ln -s "$PWD/$sub" "$SHIM/deepvrm/$sub"; done
export PYTHONPATH="$DEPS:$SHIM:${PYTHONPATH:-}"
$PY -c "import transformers, torch, peft, accelerate; print('transformers', transformers.__version__, 'torch', torch.__version__, 'peft', peft.__version__, 'accelerate', accelerate.__version__)"
timeout 240 $PY benchmarks/gpu_train_check.py --json "$OUT_DIR/gpu_train_check_7b.json" 2>&1 | grep -v "Warning\|warnings.warn" | tail -25
echo "7B exit: $?"
timeout 150 $PY -m accelerate.commands.launch --config_file configuration/accelerate/fsdp.yaml --num_processes 1 \
  benchmarks/gpu_train_check.py --fsdp-smoke --output-dir /tmp/fsdp_smoke --json "$OUT_DIR/gpu_train_check_fsdp.json" 2>&1 \
  | grep -v "Warning\|warnings.warn" | tail -25
echo "FSDP exit: $?"
ls /tmp/fsdp_smoke
