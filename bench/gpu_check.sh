#!/usr/bin/env bash
# The GPU check as one command (docs/trainer.md, "GPU"): our training step vs transformers Trainer + PEFT
# on an 8B-shaped Llama with random weights, bf16 LoRA and 4-bit QLoRA, one GPU, no network. Prints JSON.
#
#   bash bench/gpu_check.sh --fetch-wheels   # here, once: the bitsandbytes wheel into .cache/gpu-check-wheels
#   bash bench/gpu_check.sh                  # on the GPU machine: the device `run` tool, with
#                                            #   carry [".cache/gpu-check-wheels"] so QLoRA can run
#   bash bench/gpu_check.sh --smoke          # CPU, tiny shapes, the same code path (under a minute)
#
# The GPU machine's Python has torch, transformers, peft, accelerate, safetensors and tokenizers but not
# this project or bitsandbytes: the source travels with the working tree (PYTHONPATH below) and the wheel
# (~41 MiB, within the 64 MiB that may travel) is unpacked into a temporary folder, not installed. Without
# it the QLoRA part reports "skipped: bitsandbytes not importable" and the rest still runs.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=.cache/gpu-check-wheels
BNB_VERSION=0.50.2

PY=${PYTHON:-python3}
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PY=.venv/bin/python; fi

if [[ "${1:-}" == "--fetch-wheels" ]]; then
  mkdir -p "$WHEELS"
  exec "$PY" -m pip download --no-deps --only-binary=:all: --platform manylinux_2_24_x86_64 \
    --python-version 3.12 "bitsandbytes==$BNB_VERSION" -d "$WHEELS"
fi

SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
if ! "$PY" -c "import bitsandbytes" >/dev/null 2>&1; then
  for wheel in "$WHEELS"/bitsandbytes-*.whl; do
    if [[ -f "$wheel" ]]; then "$PY" -m zipfile -e "$wheel" "$SITE"; fi  # a wheel is a zip laid out for site-packages
  done
fi
export PYTHONPATH="$SITE:$PWD/api:$PWD/trainer_image${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
OUT_FILE="${OUT:-${TMPDIR:-/tmp}}/gpu_check.json"
# 8 minutes in all; the script itself skips QLoRA when too little of its 420 s budget is left.
timeout 480 "$PY" bench/gpu_check.py --out "$OUT_FILE" "$@"
