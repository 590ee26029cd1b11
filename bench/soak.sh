#!/usr/bin/env bash
# Soak test: one control plane and a few real nodes on this machine under a steady
# inference load for SOAK_MINUTES, with two staged rollouts on the way (v1 -> v2 at
# about 1/3 of the time, then back to v1, or v2 again if the first was rolled back, at
# about 2/3). Every SOAK_SAMPLE seconds it samples the RSS of the control plane and of
# each node, the client's errors, and telemetry windows produced by the nodes against
# those the control plane stored. At the end it prints a summary and writes soak.json
# to the run folder: requests, errors, the rollouts' final states, RSS first/last/max and
# growth under load (MiB/h, least squares over the samples after the first 2 minutes, and
# over the second half of those, where a filled cache shows flat) per process, RSS after
# the script's read-back of every stored window, and telemetry produced/stored/lost. bench/soak.py drives the load and the sampling.
#
#   bench/soak.sh [BIN]                          # BIN: folder with the binaries
#   BIN=target/debug SOAK_MINUTES=3 bench/soak.sh
#
# Exits non-zero when the client saw any error (non-200 answer or connection error),
# when a telemetry window was lost, when a process died or a rollout did not settle.
# Builds nothing: BIN (default /var/cache/edgewise/target/release) must hold edgewise,
# edgewise-runtime and edgewise-train.
#
# Env knobs:
#   SOAK_MINUTES  how long the load runs (default 30)
#   SOAK_NODES    nodes (default 3)
#   SOAK_RATE     requests per second, all nodes together (default 200)
#   SOAK_SAMPLE   seconds between samples (default 30)
#   SOAK_WINDOW   the nodes' telemetry window in seconds (default 10)
#   SOAK_STORE_CACHE_MIB  the control plane's --store-cache-mib (default: its own, 64)
#   SOAK_STAGES   rollout stages, cumulative percent (default 30,100: one canary, then all)
#   SOAK_BAKE     bake per stage (default SOAK_MINUTES * 3 s, 10 s to 120 s)
#   SOAK_WORK     work folder (default ${CARGO_TARGET_DIR:-target}/bench/soak); the key and
#                 bundles are cached there, each run gets a fresh run/ folder
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-${BIN:-/var/cache/edgewise/target/release}}
minutes=${SOAK_MINUTES:-30}
nodes=${SOAK_NODES:-3}
rate=${SOAK_RATE:-200}
sample=${SOAK_SAMPLE:-30}
window=${SOAK_WINDOW:-10}
cache_flags=()
if [[ -n "${SOAK_STORE_CACHE_MIB:-}" ]]; then
  cache_flags=(--store-cache-mib "$SOAK_STORE_CACHE_MIB")
fi
stages=${SOAK_STAGES:-30,100}
bake=${SOAK_BAKE:-$(python3 -c "print(f'{min(120, max(10, round($minutes * 3)))}s')")}
work=${SOAK_WORK:-${CARGO_TARGET_DIR:-target}/bench/soak}
data=training/data/digits.csv.gz

for tool in edgewise edgewise-runtime edgewise-train; do
  [ -x "$bin/$tool" ] || { echo "$bin/$tool is missing (pass the binaries' folder as BIN)" >&2; exit 2; }
done
mkdir -p "$work"
export NO_COLOR=1

# Release key and two digits versions that differ (5 epochs, then 20), cached.
[ -f "$work/release.key" ] || "$bin/edgewise-train" keygen --out "$work/release" >/dev/null
train() { # VERSION EPOCHS SEED
  [ -f "$work/digits-v$1.bundle" ] && return 0
  "$bin/edgewise-train" train --data "$data" --spec digits-mlp --name digits --version "$1" \
    --epochs "$2" --seed "$3" --out "$work" --signing-key "$work/release.key" >"$work/train-v$1.log" 2>&1 ||
    { cat "$work/train-v$1.log" >&2; exit 1; }
}
train 1 5 1
train 2 20 2

run=$work/run
rm -rf "$run"
mkdir -p "$run"

# Free ports: HTTP, MQTT and QUIC (UDP) for the control plane, then one HTTP port per node.
read -r -a ports < <(cd bench && python3 -c '
import socket, sys
from procstat import free_port
wanted = 2 + int(sys.argv[1])
tcp = set()
while len(tcp) < wanted:
    tcp.add(free_port(socket.SOCK_STREAM))
tcp = sorted(tcp)
print(tcp[0], tcp[1], free_port(socket.SOCK_DGRAM), *tcp[2:])' "$nodes")
http_port=${ports[0]} mqtt_port=${ports[1]} quic_port=${ports[2]}
server=http://127.0.0.1:$http_port
export EDGEWISE_SERVER=$server

pids=()
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ "${#pids[@]}" -gt 0 ]; then
    kill "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 100); do
      local running=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && running=1; done
      [ "$running" = 0 ] && break
      sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$bin/edgewise" serve --data-dir "$run/control-plane" --trust "$work/release.pub" \
  --http "127.0.0.1:$http_port" --mqtt-listen "127.0.0.1:$mqtt_port" --quic "127.0.0.1:$quic_port" \
  "${cache_flags[@]}" >"$run/control-plane.out" 2>"$run/control-plane.log" &
cp_pid=$!
pids+=("$cp_pid")
for _ in $(seq 1 600); do
  grep -q '^edgewise control plane ready:' "$run/control-plane.out" 2>/dev/null && break
  kill -0 "$cp_pid" 2>/dev/null || { tail -n 20 "$run/control-plane.log" >&2; exit 1; }
  sleep 0.1
done
grep -q '^edgewise control plane ready:' "$run/control-plane.out" ||
  { echo "the control plane did not start; see $run/control-plane.log" >&2; exit 1; }
cat "$run/control-plane.out"
# The first start wrote an admin token; every CLI call below and in soak.py sends it.
EDGEWISE_TOKEN=$(cat "$run/control-plane/secrets/admin-token")
export EDGEWISE_TOKEN

"$bin/edgewise" model push "$work/digits-v1.bundle"
"$bin/edgewise" model push "$work/digits-v2.bundle"

node_args=()
for i in $(seq 1 "$nodes"); do
  id=soak-$i
  port=${ports[$((2 + i))]}
  "$bin/edgewise" device add "$id" --group soak --out "$run/$id.toml" >/dev/null
  "$bin/edgewise-runtime" run --config "$run/$id.toml" --data-dir "$run/$id-data" --device cpu \
    --listen "127.0.0.1:$port" --window "${window}s" >"$run/$id.out" 2>"$run/$id.log" &
  pids+=($!)
  node_args+=(--node "$id:$!:$port")
  echo "node $id: pid $!, http://127.0.0.1:$port, log $run/$id.log"
done

# In the background, so that a signal to this script runs the cleanup at once.
python3 bench/soak.py --bin "$bin" --server "$server" --cp-pid "$cp_pid" "${node_args[@]}" \
  --data "$data" --minutes "$minutes" --rate "$rate" --sample "$sample" --window "$window" \
  --stages "$stages" --bake "$bake" --json-out "$run/soak.json" &
pids=("$!" "${pids[@]}")
wait "${pids[0]}"
