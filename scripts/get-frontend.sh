#!/usr/bin/env bash
# Fetches the newest ComfyUI frontend the browser tests also run against (besides the 1.32.9 that ComfyUI
# 0.3.75 bundles): the comfyui-frontend-package wheel from PyPI, unpacked into .comfyui/frontend-VERSION/
# (gitignored). The server serves it with --front-end-root .comfyui/frontend-VERSION/comfyui_frontend_package/static.
# The version is pinned so that CI is reproducible; raise it here when a newer frontend is to be tested (the
# browser tests read this VERSION line, testkit/comfy_harness.py). Idempotent: a second run does nothing.
#   bash scripts/get-frontend.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:-1.58.1}
DEST=.comfyui/frontend-$VERSION
STATIC=$DEST/comfyui_frontend_package/static
CACHE=.cache/wheels
PY=.venv/bin/python
if [ -f "$STATIC/index.html" ]; then
  echo "ComfyUI frontend $VERSION already in $DEST"
  exit 0
fi
if [ ! -x "$PY" ]; then
  echo "get-frontend.sh: $PY missing; run scripts/setup-env.sh first" >&2
  exit 1
fi
mkdir -p "$CACHE" .comfyui
WHEEL=$(ls "$CACHE"/comfyui_frontend_package-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  "$PY" -m pip download -q --no-deps -d "$CACHE" "comfyui-frontend-package==$VERSION"
  WHEEL=$(ls "$CACHE"/comfyui_frontend_package-"$VERSION"-*.whl | head -n1)
fi
TMP=$(mktemp -d .comfyui/unpack-frontend.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
"$PY" - "$WHEEL" "$TMP" <<'PYEOF'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("comfyui_frontend_package/static/")]
    if not any(n.endswith("/static/index.html") for n in names):
        sys.exit("no comfyui_frontend_package/static/index.html in " + wheel)
    z.extractall(out, members=names)
PYEOF
rm -rf "$DEST"
# Renamed into place only when complete, so a half-unpacked folder is never taken for an installed one.
mv "$TMP" "$DEST"
trap - EXIT
echo "ComfyUI frontend $VERSION installed in $(pwd)/$DEST"
