#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests (Playwright drives it; never `playwright install`).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium already at /usr/bin/chromium"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q chromium
