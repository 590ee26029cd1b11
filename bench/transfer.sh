#!/usr/bin/env bash
# Bundle transfer benchmark: the control plane's two artifact transports, QUIC (quinn)
# and the HTTP `Range` fallback (axum), downloading through the node's own code
# (edgewise_runtime::agent::download::fetch, runtime/benches/transfer.rs), for
#   (a) one ~50 MB bundle, one download, and
#   (b) a ~1 MB bundle, 1,000 concurrent downloads,
# each repeated REPEAT times (default 3); the medians go into a markdown table: aggregate
# MB/s (MB = 10^6 bytes), wall time, p50/p99 seconds per download, failures, the
# QUIC/HTTP ratio, and the control plane's CPU seconds (utime+stime from /proc) and peak
# RSS (VmHWM, reset before each run) while it served. Client and server share this
# machine over 127.0.0.1, so the figures are the transports' CPU cost, not a network's.
#
#   bench/transfer.sh
#   REPEAT=5 COPIES=500 bench/transfer.sh
#   BIN_DIR=target/debug bench/transfer.sh   # skip the build; use binaries from BIN_DIR
#
# Env knobs:
#   REPEAT           runs per case, the median is reported (default 3)
#   COPIES           concurrent downloads of the small bundle (default 1000)
#   LARGE_HIDDEN     hidden width of the large bundle's MLP (default 163300: ~50.0 MB)
#   SMALL_HIDDEN     hidden width of the small bundle's MLP (default 64: ~1.04 MB; the
#                    manifest's data profile alone is ~1 MB)
#   RUN_TIMEOUT      seconds one bench run may take (default 600)
#   BIN_DIR          take edgewise, edgewise-train and the transfer bench from here and
#                    skip `cargo build` (the bench binary is searched in BIN_DIR/deps)
#   CARGO_TARGET_DIR the cargo target folder (default target); work files go under
#                    $CARGO_TARGET_DIR/bench/transfer, the summary in summary.json there
#
# The bundles and the release key are cached in the work folder (delete it, or change
# a *_HIDDEN knob, to retrain); the control plane starts on a fresh data folder each time.
# A device may download only the bundle of its current assignment, so each case gets a
# device of its own (its node config holds its client certificate and password), in a
# group of its own that the case's bundle is deployed to; the devices never run.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
work=$target/bench/transfer
repeat=${REPEAT:-3}
copies=${COPIES:-1000}
large_hidden=${LARGE_HIDDEN:-163300}
small_hidden=${SMALL_HIDDEN:-64}
run_timeout=${RUN_TIMEOUT:-600}
mkdir -p "$work"

if [ -n "${BIN_DIR:-}" ]; then
  bin=$BIN_DIR
else
  # One release build for the binaries and the benches alike (the same command as the
  # other bench scripts, so features unify and nothing rebuilds).
  cargo build --release --quiet --workspace --bins --benches
  bin=$target/release
fi
# The bench executable is deps/transfer-<hash>; take the newest one that runs.
bench_bin=$(find "$bin/deps" -maxdepth 1 -type f -name 'transfer-*' ! -name '*.d' -executable \
  -printf '%T@ %p\n' 2>/dev/null | sort -rn | head -n 1 | cut -d' ' -f2-)
[ -n "$bench_bin" ] || { echo "no transfer bench binary in $bin/deps; build the benches first" >&2; exit 1; }
for tool in edgewise edgewise-train; do
  [ -x "$bin/$tool" ] || { echo "$bin/$tool is missing" >&2; exit 1; }
done

# 1,000 concurrent downloads hold a socket and a file each, on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

# Release key and the two bundles, trained for one epoch on the digits data (64 -> 10).
[ -f "$work/release.key" ] || "$bin/edgewise-train" keygen --out "$work/release" >/dev/null
bundle() { # NAME HIDDEN: prints the bundle path, training it when absent
  local name=$1 hidden=$2
  local spec=$work/$name-h$hidden.json out=$work/$name-h$hidden
  if [ ! -f "$out/$name-v1.bundle" ]; then
    mkdir -p "$out"
    printf '{"input_shape":[64],"layers":[{"type":"linear","out_features":%s},{"type":"relu"},{"type":"linear","out_features":10}]}\n' \
      "$hidden" >"$spec"
    "$bin/edgewise-train" train --data training/data/digits.csv.gz --spec "$spec" --name "$name" \
      --version 1 --epochs 1 --out "$out" --signing-key "$work/release.key" >"$out/train.log" 2>&1 ||
      { cat "$out/train.log" >&2; exit 1; }
  fi
  echo "$out/$name-v1.bundle"
}
large=$(bundle transfer-large "$large_hidden")
small=$(bundle transfer-small "$small_hidden")

# The control plane on free ephemeral ports, on a fresh data folder.
read -r http_port mqtt_port quic_port < <(cd bench && python3 -c '
from socket import SOCK_DGRAM, SOCK_STREAM
from procstat import free_port
print(free_port(SOCK_STREAM), free_port(SOCK_STREAM), free_port(SOCK_DGRAM))')
rm -rf "$work/data" "$work/downloads"
server=http://127.0.0.1:$http_port
# Every concurrent download opens its own QUIC connection: the connection cap is lifted so
# that the two transports are compared as they are, not the server's admission policy.
"$bin/edgewise" serve --data-dir "$work/data" --http "127.0.0.1:$http_port" \
  --mqtt-listen "127.0.0.1:$mqtt_port" --quic "127.0.0.1:$quic_port" --trust "$work/release.pub" \
  --max-bundle-bytes $((1024 * 1024 * 1024)) --max-quic-connections 100000 \
  >"$work/serve.out" 2>"$work/serve.log" &
cp_pid=$!
cleanup() {
  kill "$cp_pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$cp_pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$cp_pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  grep -q '^edgewise control plane ready:' "$work/serve.out" 2>/dev/null && break
  kill -0 "$cp_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
  sleep 0.1
done
grep -q '^edgewise control plane ready:' "$work/serve.out" ||
  { echo "the control plane did not start; see $work/serve.log" >&2; exit 1; }

EDGEWISE_TOKEN=$(cat "$work/data/secrets/admin-token")
export EDGEWISE_TOKEN

"$bin/edgewise" --server "$server" --json model push "$large" >"$work/push-large.json"
"$bin/edgewise" --server "$server" --json model push "$small" >"$work/push-small.json"
for case in large small; do
  "$bin/edgewise" --server "$server" device add "bench-$case" --group "bench-$case" \
    --out "$work/node-$case.toml" >/dev/null
  "$bin/edgewise" --server "$server" deploy --group "bench-$case" --model "transfer-$case" \
    --version 1 >/dev/null
done

python3 bench/transfer.py --bench-bin "$bench_bin" \
  --large-node-config "$work/node-large.toml" --small-node-config "$work/node-small.toml" \
  --pid "$cp_pid" --large "$work/push-large.json" --small "$work/push-small.json" \
  --copies "$copies" --repeat "$repeat" --timeout "$run_timeout" --out "$work/downloads" \
  --summary "$work/summary.json"
