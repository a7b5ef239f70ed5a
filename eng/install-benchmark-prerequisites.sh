#!/usr/bin/env bash
# Installs what benchmarks/run.sh needs beyond eng/install-prerequisites.sh: the PyTorch reference
# (Debian 12's python3-torch 1.13.1) and the pthread OpenBLAS. Idempotent; run as root.
#
# Some machines carry a Debian 13 (trixie) apt source pinned at a low priority (eng/install-prerequisites.sh
# adds one for libstdc++). The benchmark must use Debian 12's python3-torch, so the install is pinned to
# bookworm with -t and the installed version is checked afterwards.
set -euo pipefail

log() { echo "[benchmark-prerequisites] $*"; }

wanted_torch_prefix="1.13."
python=/usr/bin/python3

torch_version() { "$python" -c 'import torch; print(torch.__version__)' 2>/dev/null || true; }
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if ! command -v apt-get >/dev/null 2>&1 || [ ! -r /etc/os-release ]; then
  echo "error: this script installs the PyTorch reference with apt on Debian 12; install python3 with torch 1.13 yourself." >&2
  exit 1
fi
# /etc/os-release is not a reliable test here: pulling libstdc++6 from Debian 13 can also pull in Debian 13's
# base-files, after which a Debian 12 machine reports "trixie". What matters is that apt offers bookworm's 1.13.
bookworm_has_torch() {
  local policy; policy=$(apt-cache policy python3-torch 2>/dev/null || true)
  grep -Eq "^ *(\*\*\* )?${wanted_torch_prefix}[0-9]" <<<"$policy"
}

missing=()
for p in python3-torch libopenblas0-pthread python3-numpy; do
  pkg_installed "$p" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  log "already installed: python3-torch $(dpkg-query -W -f='${Version}' python3-torch), libopenblas0-pthread."
else
  if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 && exec sudo bash "$0" "$@"   # re-run as root where sudo exists
    echo "error: missing ${missing[*]}; run this script as root." >&2
    exit 1
  fi
  log "installing from bookworm: ${missing[*]}"
  # Only refresh the lists when apt does not offer bookworm's package yet.
  if ! bookworm_has_torch; then apt-get update -qq; fi
  if ! bookworm_has_torch; then
    echo "error: apt offers no python3-torch ${wanted_torch_prefix}x; this script needs a Debian 12 (bookworm) apt source." >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -t bookworm "${missing[@]}" >/dev/null
fi

v=$(torch_version)
case "$v" in
  "$wanted_torch_prefix"*) log "python3 ($python) imports torch $v." ;;
  "") echo "error: $python cannot import torch after installing python3-torch." >&2; exit 1 ;;
  *) echo "error: $python imports torch $v, expected Debian 12's ${wanted_torch_prefix}x (a Debian 13 package may have won; reinstall with 'apt-get install -t bookworm python3-torch=1.13.1+dfsg-4')." >&2; exit 1 ;;
esac
log "all benchmark prerequisites present."
