#!/usr/bin/env bash
# Engine benchmark: the same trained weights in Edgewise and in ONNX Runtime, batch 1
# and 64, in one run on this machine (bench/engine.py says how). Release build; the
# Python packages (onnx, onnxruntime, numpy) go into a virtual environment of their own.
#
#   bench/engine.sh                 # digits MLP
#   ITERATIONS=20000 bench/engine.sh
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
work=$target/bench
venv=${BENCH_VENV:-$target/bench-venv}
mkdir -p "$work"

cargo build --release --quiet --workspace --bins --benches
trainer=$target/release/edgewise-train
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet onnx onnxruntime numpy
fi
[ -f "$work/release.key" ] || "$trainer" keygen --out "$work/release" >/dev/null
[ -f "$work/digits-v1.bundle" ] || "$trainer" train --data training/data/digits.csv.gz \
  --spec digits-mlp --name digits --out "$work" --signing-key "$work/release.key" >/dev/null

"$venv/bin/python" bench/engine.py --trainer "$trainer" --bundle "$work/digits-v1.bundle" \
  --onnx-out "$work/digits-v1.onnx" --json-out "$work/engine.json" \
  --iterations "${ITERATIONS:-5000}"
