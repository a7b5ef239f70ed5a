#!/usr/bin/env bash
# Installs Debian's Chromium for the web sample's browser test (tests/Microsoft.ML.Diffusion.WebGeneration.Tests
# drives /usr/bin/chromium headless through Playwright; without it that test is reported as skipped).
# Idempotent: does nothing where Chromium is present. Run as root (or with sudo).
set -euo pipefail

log() { echo "[install-browser] $*"; }

if [ -x /usr/bin/chromium ]; then
  log "already installed: $(dpkg-query -W -f='chromium ${Version}' chromium 2>/dev/null || echo /usr/bin/chromium)."
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: apt-get not found; this script installs Debian's chromium package. Elsewhere, install Chromium so that /usr/bin/chromium runs it." >&2
  exit 1
fi
if [ "$(id -u)" != "0" ]; then
  command -v sudo >/dev/null 2>&1 && exec sudo bash "$0" "$@"   # re-run as root where sudo exists
  echo "error: installing a package needs root; run it as root: bash $0" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Only refresh the lists when apt does not know the package yet.
if ! apt-cache show chromium >/dev/null 2>&1; then
  log "updating the package lists..."
  apt-get update -qq
fi
log "installing chromium..."
apt-get install -y -qq --no-install-recommends chromium >/dev/null
if [ ! -x /usr/bin/chromium ]; then
  echo "error: the chromium package is installed but /usr/bin/chromium is missing." >&2
  exit 1
fi
log "installed: $(dpkg-query -W -f='chromium ${Version}' chromium)."
