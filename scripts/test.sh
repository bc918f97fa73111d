#!/usr/bin/env bash
# The project's test command: installs what the tests need (idempotent), then runs the whole suite, or with
# --quick the quick tier (everything not marked `full`: the unit tests, one ComfyUI server with one browser pass on
# the pinned frontend, and the default models on a few images against their recorded scores; about ten minutes of
# tests on a 2-core machine). The slowest tests are listed at the end.
#   bash scripts/test.sh [--quick] [pytest args...]
# Installs: .venv (scripts/setup-env.sh --test), a real ComfyUI 0.3.75 into .comfyui/ (scripts/get-comfyui.sh),
# the pinned newer ComfyUI frontend tested beside the bundled 1.32.9 (scripts/get-frontend.sh) and Debian's Chromium
# (scripts/get-chromium.sh; needs root or sudo). Without ComfyUI, Chromium or ../shared/data the tests that need
# them skip, except in CI (CI set, or SWINIR_REQUIRE_COMFY=1 as .ci/run sets), where they fail.
set -euo pipefail
cd "$(dirname "$0")/.."
TIER=()
if [ "${1:-}" = "--quick" ]; then
  shift
  TIER=(-m "not full")
fi
bash scripts/setup-env.sh --test
bash scripts/get-comfyui.sh
bash scripts/get-frontend.sh
if ! bash scripts/get-chromium.sh; then
  echo "scripts/test.sh: Chromium could not be installed; the browser tests will skip (or fail in CI)" >&2
fi
exec .venv/bin/python -m pytest tests -q -rs --durations=25 ${TIER[@]+"${TIER[@]}"} "$@"
