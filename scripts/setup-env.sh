#!/usr/bin/env bash
# Creates .venv with the pinned PyTorch pair and the pack installed into it (editable, so it follows the checkout):
# `.venv/bin/swinir` and `.venv/bin/python -m swinir` then work from any folder. With --test, the test tools too
# (the `test` extra).
# torch is pinned here and only here: the pack's own requirements (pyproject.toml, requirements.txt) do not name
# it, since inside ComfyUI, ComfyUI brings torch; installing the pack after the pair leaves the pair as it is.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install -q -e ".[test]"
else
  .venv/bin/python -m pip install -q -e .
fi
