#!/usr/bin/env bash
# Runs the Microsoft.ML.Diffusion benchmark (C#, TorchSharp) and then the PyTorch reference with the same
# settings, and prints a side-by-side table with the ratio ours / PyTorch.
#
#   benchmarks/run.sh [--quick] [--out DIR] [--rounds N] [--pairs N] [--configs bench,rgb32] [--no-ops] [--no-pytorch] [other options]
#
# --rounds N (default 1) runs both sides N times, taking turns (ours, PyTorch, ours, …), and reports the
# median of each number over the rounds with the ratio of every round: a shared machine's speed drifts by
# tens of percent within minutes, and taking turns makes the drift hit both sides alike.
# --pairs N (default 3) then runs benchmarks/lockstep.py: both programs stay alive and take turns measurement by
# measurement (N pairs of each), which gives the ratios the drift cannot bias; 0 skips it.
# Other options (--train-steps, --train-warmup, --breakdown-steps, --sample-batch, --bench-batch, --rgb32-batch,
# --ddpm-timed-steps) go to both sides. --threads N sets libtorch's intra-op threads on both sides
# (default 2). Writes DIR/torchsharp.json, DIR/pytorch.json, DIR/*-ops.json and the combined
# DIR/latest.json and DIR/latest.md (DIR defaults to benchmarks/results), and DIR/lockstep.{json,md}.
# Prerequisites: eng/install-prerequisites.sh and eng/install-benchmark-prerequisites.sh (root).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
out="benchmarks/results"
threads=2
rounds=1
pairs=3
ops=1
pytorch=1
pass=()
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --pairs) pairs="$2"; shift 2 ;;
    --no-ops) ops=0; shift ;;
    --no-pytorch) pytorch=0; shift ;;
    --soak) echo "error: the soak is C#-only: dotnet run --project benchmarks/Microsoft.ML.Diffusion.Benchmarks -c Release -- --soak" >&2; exit 2 ;;
    --quick) pass+=("$1"); shift ;;
    --configs|--train-steps|--train-warmup|--breakdown-steps|--sample-batch|--bench-batch|--rgb32-batch|--ddpm-timed-steps)
      pass+=("$1" "$2"); shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "error: unknown option $1" >&2; exit 2 ;;
  esac
done

python=/usr/bin/python3
if [ "$pytorch" = 1 ] && ! "$python" -c 'import torch' >/dev/null 2>&1; then
  echo "error: $python cannot import torch; run 'bash eng/install-benchmark-prerequisites.sh' (or pass --no-pytorch)." >&2
  exit 1
fi

mkdir -p "$out"
rm -f "$out"/torchsharp.json "$out"/torchsharp.md "$out"/pytorch.json "$out"/torchsharp-ops.json "$out"/pytorch-ops.json \
      "$out"/latest.json "$out"/latest.md "$out"/lockstep.json "$out"/lockstep.md
start=$(date +%s)

echo "== building the C# benchmark (Release)" >&2
dotnet build benchmarks/Microsoft.ML.Diffusion.Benchmarks -c Release -v quiet -nologo >&2
csharp() { dotnet run --no-build --project benchmarks/Microsoft.ML.Diffusion.Benchmarks -c Release -- "$@"; }
pyref() { OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS="$threads" "$python" benchmarks/pytorch/ddpm_reference.py "$@"; }

if ! [[ "$rounds" =~ ^[1-9][0-9]*$ ]]; then echo "error: --rounds needs a positive whole number, got '$rounds'" >&2; exit 2; fi
if ! [[ "$pairs" =~ ^[0-9]+$ ]]; then echo "error: --pairs needs a whole number, got '$pairs'" >&2; exit 2; fi
rm -rf "$out"/round-*
for ((k = 1; k <= rounds; k++)); do
  mkdir -p "$out/round-$k"
  echo "== round $k of $rounds: Microsoft.ML.Diffusion (TorchSharp)" >&2
  csharp "${pass[@]}" --threads "$threads" --out "$out/round-$k" >&2
  if [ "$pytorch" = 1 ]; then
    echo "== round $k of $rounds: PyTorch reference" >&2
    pyref "${pass[@]}" --threads "$threads" --out "$out/round-$k" >&2
  fi
done
if [ "$ops" = 1 ]; then
  quick=()
  for a in "${pass[@]}"; do [ "$a" = "--quick" ] && quick=(--quick); done
  echo "== single-op timings" >&2
  csharp --ops "${quick[@]}" --threads "$threads" --out "$out"
  [ "$pytorch" = 1 ] && pyref --ops "${quick[@]}" --threads "$threads" --out "$out"
fi

if [ "$pytorch" = 1 ] && [ "$pairs" -gt 0 ]; then
  configs=bench,rgb32
  lsargs=()
  for ((i = 0; i < ${#pass[@]}; i++)); do
    case "${pass[$i]}" in
      --configs) configs="${pass[$((i + 1))]}" ;;
      --quick) lsargs+=(--quick) ;;
      --train-warmup|--sample-batch|--bench-batch|--rgb32-batch) lsargs+=("${pass[$i]}" "${pass[$((i + 1))]}") ;;
    esac
  done
  echo "== lockstep: the two programs take turns, $pairs pairs of each measurement" >&2
  "$python" benchmarks/lockstep.py --pairs "$pairs" --configs "$configs" --threads "$threads" --out "$out" "${lsargs[@]}" >&2
fi

echo "== comparison ($(( $(date +%s) - start )) s)" >&2
"$python" benchmarks/compare.py "$out"
echo "wrote $out/latest.json and $out/latest.md" >&2
