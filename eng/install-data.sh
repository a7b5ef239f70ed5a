#!/usr/bin/env bash
# Installs the data sets the tests and samples use (idempotent: does nothing for a data set whose files
# are already there) and prints where they are. Run as root (or with sudo).
# - Fashion-MNIST, from Debian's dataset-fashion-mnist package. Microsoft.ML.Diffusion.Data.FashionMnist
#   reads it from /usr/share/datasets/fashion-mnist, or from the folder named by FASHION_MNIST_DIR.
# - Emoji text/image pairs, from the npm package emoji-datasource-google (pinned below): emoji.json's names
#   and categories with Google's 64x64 PNGs. Microsoft.ML.Diffusion.Data.EmojiDataset reads it from
#   /usr/local/share/mldiffusion/node_modules/emoji-datasource-google, or the folder named by
#   EMOJI_DATASOURCE_DIR.
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
    command -v sudo >/dev/null 2>&1 && exec sudo bash "$0" "$@"   # re-run as root where sudo exists
    echo "error: installing a package needs root; run it as root: bash $0" >&2
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

# --- Emoji (npm: emoji-datasource-google) ---
emoji_version="16.0.0"   # pinned: the captions and image files the samples rely on
emoji_prefix="/usr/local/share/mldiffusion"
emoji_dir="$emoji_prefix/node_modules/emoji-datasource-google"
emoji_png_dir="$emoji_dir/img/google/64"

if [ -s "$emoji_dir/emoji.json" ]; then
  log "emoji-datasource-google is already installed."
else
  if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found; it installs the emoji data (npm package emoji-datasource-google@$emoji_version). Install npm (e.g. 'apt-get install npm'), or unpack that package elsewhere and set EMOJI_DATASOURCE_DIR to its folder." >&2
    exit 1
  fi
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && exec sudo bash "$0" "$@"   # re-run as root where sudo exists
    echo "error: writing to $emoji_prefix needs root; run it as root: bash $0" >&2
    exit 1
  fi
  log "installing emoji-datasource-google@$emoji_version into $emoji_prefix..."
  mkdir -p "$emoji_prefix"
  npm install --prefix "$emoji_prefix" --no-save --no-audit --no-fund --loglevel=error "emoji-datasource-google@$emoji_version" >/dev/null
  if [ ! -s "$emoji_dir/emoji.json" ]; then
    echo "error: npm installed emoji-datasource-google but $emoji_dir/emoji.json is missing." >&2
    exit 1
  fi
fi

png_count=$(find "$emoji_png_dir" -maxdepth 1 -name '*.png' 2>/dev/null | wc -l)
if [ "$png_count" -eq 0 ]; then
  echo "error: $emoji_png_dir holds no PNG files; reinstall with: rm -rf $emoji_dir && sudo bash $0" >&2
  exit 1
fi
installed_version=$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$emoji_dir/package.json" 2>/dev/null | head -n 1)
if [ "$installed_version" != "$emoji_version" ]; then
  log "note: version '${installed_version:-unknown}' is installed, not $emoji_version; to replace it: rm -rf $emoji_dir && sudo bash $0"
fi
log "emoji data in $emoji_dir (version ${installed_version:-unknown}):"
log "  $emoji_dir/emoji.json ($(stat -c %s "$emoji_dir/emoji.json") bytes)"
log "  $emoji_png_dir ($png_count PNG files, 64x64, skin-tone variations included)"
