#!/usr/bin/env bash
# Creates .venv with the pinned PyTorch pair and the pack's runtime (and, with --test, test) requirements.
# torch is pinned here, never in requirements.txt: inside ComfyUI, ComfyUI brings torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -r requirements.txt
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install -q -r requirements-test.txt
fi
