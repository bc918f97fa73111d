#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent) and runs the whole suite.
#   bash scripts/test.sh [pytest args...]
# Installs: .venv (scripts/setup-env.sh --test), a real ComfyUI 0.3.75 into .comfyui/ (scripts/get-comfyui.sh),
# the newest ComfyUI frontend tested beside the bundled 1.32.9 (scripts/get-frontend.sh)
# and Debian's Chromium (scripts/get-chromium.sh; needs root or sudo). Without ComfyUI or Chromium the
# ComfyUI tests skip, unless SWINIR_REQUIRE_COMFY=1 (CI), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh --test
bash scripts/get-comfyui.sh
bash scripts/get-frontend.sh
if ! bash scripts/get-chromium.sh; then
  echo "scripts/test.sh: Chromium could not be installed; the browser tests will skip (or fail in CI)" >&2
fi
exec .venv/bin/python -m pytest tests -q -rs "$@"
