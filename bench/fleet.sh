#!/usr/bin/env bash
# Fleet-scale benchmark: 1,000, 5,000 and 10,000 simulated nodes against one control
# plane on this machine, each fleet rolled from v1 to v2 (1 MB bundles) in one stage.
# Prints the time to update every node, the control plane's CPU and memory, telemetry
# windows and broker messages per second (bench/fleet.py says how each is taken).
#
#   bench/fleet.sh                        # 1000,5000,10000 nodes
#   NODES=1000 bench/fleet.sh             # one size
#   RATE=1 WINDOW=10s bench/fleet.sh      # busier nodes (defaults: 0.2 requests/s, 60 s windows)
#   BIN_DIR=target/debug NODES=50 STEADY=10 bench/fleet.sh   # skip the build; a quick check
#
# The control plane requires an API token: bench/fleet.py reads the admin token from
# its data folder once it is up, and hands it to the CLI and the simulators
# (EDGEWISE_TOKEN).
#
# Needs about 2.3 GB of disk per 1,000 nodes while a size runs (each node keeps both
# bundles), and a file limit of at least 8,000 (`ulimit -n`).
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
work=$target/bench/fleet
mkdir -p "$work"

if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  cargo build --release --quiet --workspace --bins --benches
  bin=$target/release
fi
[ -f "$work/release.key" ] || "$bin/edgewise-train" keygen --out "$work/release" >/dev/null
[ -f "$work/digits-v1.bundle" ] || "$bin/edgewise-train" train --data training/data/digits.csv.gz \
  --spec digits-mlp --name digits --version 1 --out "$work" --signing-key "$work/release.key" >/dev/null
# Both about 1 MB: the digits data profile in the manifest is most of it.
[ -f "$work/digits-v2.bundle" ] || "$bin/edgewise-train" train --data training/data/digits.csv.gz \
  --spec digits-mlp --seed 2 --name digits --version 2 --out "$work" \
  --signing-key "$work/release.key" >/dev/null
ls -l "$work"/digits-v*.bundle

python3 bench/fleet.py --bin "$bin" --work "$work" --trust "$work/release.pub" \
  --v1 "$work/digits-v1.bundle" --v2 "$work/digits-v2.bundle" \
  --data training/data/digits.csv.gz --nodes "${NODES:-1000,5000,10000}" \
  --rate "${RATE:-0.2}" --window "${WINDOW:-60s}" --steady "${STEADY:-60}" \
  --json-out "$work/fleet.json"
