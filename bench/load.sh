#!/usr/bin/env bash
# Load test of /v2/models/digits/infer with wrk at concurrency 1 and 32.
# Prints throughput and p50/p99 latency for each. Needs wrk (Debian: apt-get install wrk).
#
#   bench/load.sh            # release build, 15 s per level
#   DURATION=30s bench/load.sh
#   QUEUE_DELAY_US=200 bench/load.sh   # let the batcher wait for company
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }

target=${CARGO_TARGET_DIR:-target}
work=$target/bench
duration=${DURATION:-15s}
port=${PORT:-18080}
mkdir -p "$work"

# One release build for the binaries and the criterion benches alike.
cargo build --release --quiet --workspace --bins --benches
bin=$target/release
[ -f "$work/release.key" ] || "$bin/edgewise-train" keygen --out "$work/release" >/dev/null
[ -f "$work/digits-v1.bundle" ] || "$bin/edgewise-train" train --data training/data/digits.csv.gz \
  --spec digits-mlp --name digits --out "$work" --signing-key "$work/release.key" >/dev/null

"$bin/edgewise-runtime" serve --bundle "$work/digits-v1.bundle" --trust "$work/release.pub" \
  --listen "127.0.0.1:$port" --device "${DEVICE:-cpu}" --max-batch-size 64 \
  --max-queue-delay-us "${QUEUE_DELAY_US:-0}" >"$work/runtime.out" 2>"$work/runtime.log" &
runtime=$!
trap 'kill $runtime 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q serving "$work/runtime.out" 2>/dev/null && break; sleep 0.1; done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for connections in 1 32; do
  threads=$(( connections < 2 ? 1 : 2 ))
  out=$(wrk -t "$threads" -c "$connections" -d "$duration" --latency -s bench/infer.lua "http://127.0.0.1:$port")
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "concurrency $connections: ${rps} req/s, p50 ${p50}, p99 ${p99}, non-2xx ${errors:-0}"
done
