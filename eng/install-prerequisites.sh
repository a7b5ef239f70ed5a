#!/usr/bin/env bash
# Installs what Microsoft.ML.Diffusion needs on a fresh Linux machine and does nothing where all is present.
#
# TorchSharp 0.107's native library (libtorch 2.10) needs libstdc++ from GCC 13+ (symbol version
# GLIBCXX_3.4.32). Debian 12 ships GCC 12, so on Debian 12 we add the Debian 13 suite from the
# machine's own archive (the address is read from the existing apt sources, never written here),
# pinned low so that nothing but libstdc++6 and what it needs comes from it.
set -euo pipefail

need_symbol="GLIBCXX_3.4.32"

log() { echo "[prerequisites] $*"; }

find_libstdcxx() {
  local p
  for p in /usr/lib/x86_64-linux-gnu/libstdc++.so.6 /usr/lib/aarch64-linux-gnu/libstdc++.so.6 /usr/lib64/libstdc++.so.6 /usr/lib/libstdc++.so.6; do
    [ -e "$p" ] && { echo "$p"; return 0; }
  done
  ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 /{print $NF; exit}'
}

has_symbol() {
  local lib; lib=$(find_libstdcxx)
  [ -n "$lib" ] && grep -qa "$need_symbol" "$lib"
}

if [ "$(uname -s)" != "Linux" ]; then
  log "not Linux: nothing to do (TorchSharp's native runtime package brings what it needs)."
  exit 0
fi

if has_symbol; then
  log "libstdc++ already provides $need_symbol."
else
  if ! command -v apt-get >/dev/null 2>&1 || [ ! -r /etc/os-release ]; then
    echo "error: libstdc++ lacks $need_symbol (GCC 13+ runtime), which TorchSharp 0.107 needs, and this is not a Debian system where this script can install it. Install libstdc++ from GCC 13 or newer with your package manager." >&2
    exit 1
  fi
  . /etc/os-release
  if [ "${ID:-}" != "debian" ]; then
    echo "error: libstdc++ lacks $need_symbol (GCC 13+ runtime), which TorchSharp 0.107 needs. This script only knows how to fix it on Debian (found '${ID:-unknown}'); install libstdc++ from GCC 13+ yourself." >&2
    exit 1
  fi
  if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 && exec sudo bash "$0" "$@"   # re-run as root where sudo exists
    echo "error: libstdc++ lacks $need_symbol; run this script as root so it can install libstdc++6 from Debian 13." >&2
    exit 1
  fi

  # The archive address: the first non-security URI of the machine's own apt sources.
  archive=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    archive=$(awk '/^URIs:/{for(i=2;i<=NF;i++) if ($i !~ /security/) {print $i; exit}}' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$archive" ] && [ -f /etc/apt/sources.list ]; then
    archive=$(awk '$1=="deb" && $0 !~ /security/ {for(i=2;i<=NF;i++) if ($i ~ /^(https?|ftp|file):/) {print $i; exit}}' /etc/apt/sources.list)
  fi
  if [ -z "$archive" ]; then
    echo "error: could not find a Debian archive address in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list" >&2
    exit 1
  fi
  log "adding the Debian 13 (trixie) suite from the machine's archive, pinned low"
  cat > /etc/apt/sources.list.d/mldiffusion-trixie.sources <<SRC
Types: deb
URIs: $archive
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  cat > /etc/apt/preferences.d/mldiffusion-trixie <<PIN
Package: *
Pin: release n=trixie
Pin-Priority: 100
PIN
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t trixie libstdc++6 >/dev/null
  if ! has_symbol; then
    echo "error: installed libstdc++6 from Debian 13 but $need_symbol is still missing" >&2
    exit 1
  fi
  log "libstdc++ now provides $need_symbol."
fi

if ! command -v dotnet >/dev/null 2>&1; then
  echo "error: the .NET SDK (10.0) is not on PATH; install it first (see README)." >&2
  exit 1
fi
log "all prerequisites present."
