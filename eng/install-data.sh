#!/usr/bin/env bash
# Installs the Fashion-MNIST data set from Debian's dataset-fashion-mnist package (idempotent: does
# nothing when the files are already there) and prints where they are. Run as root (or with sudo).
# Microsoft.ML.Diffusion.Data.FashionMnist reads them from /usr/share/datasets/fashion-mnist, or from the
# folder named by FASHION_MNIST_DIR.
set -euo pipefail

dir="/usr/share/datasets/fashion-mnist"
files=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

log() { echo "[install-data] $*"; }

all_present() {
  local f
  for f in "${files[@]}"; do [ -s "$dir/$f" ] || return 1; done
}

if all_present; then
  log "Fashion-MNIST is already installed."
else
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: apt-get not found; this script installs Debian's dataset-fashion-mnist package. Elsewhere, put the four IDX files (${files[*]}) in a folder and set FASHION_MNIST_DIR to it." >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing a package needs root; run: sudo bash $0" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-cache show dataset-fashion-mnist >/dev/null 2>&1; then
    log "updating the package lists..."
    apt-get update -qq
  fi
  log "installing dataset-fashion-mnist..."
  apt-get install -y -qq --no-install-recommends dataset-fashion-mnist >/dev/null
  if ! all_present; then
    echo "error: dataset-fashion-mnist is installed but $dir does not hold ${files[*]}." >&2
    exit 1
  fi
fi

log "Fashion-MNIST files in $dir:"
for f in "${files[@]}"; do
  log "  $dir/$f ($(stat -c %s "$dir/$f") bytes)"
done
