#!/usr/bin/env bash
# Serving benchmark: Edgewise's /v2/models/digits/infer against FastAPI + uvicorn +
# ONNX Runtime serving the same model (bench/fastapi_app.py), under the same load tool
# (wrk, bench/infer.lua: one example per request), at concurrency 1, 8 and 64, in one
# run on this machine. Prints throughput, p50 and p99 for both, and the ratios.
#
#   bench/serving.sh
#   DURATION=30s bench/serving.sh
#
# Both servers get one inference thread and one process. Before quoting a ratio, a
# second client (Python's http.client, one keep-alive connection) checks the c=1 latency
# of each server, so a figure that measures TCP (Nagle, delayed ACKs) instead of the
# server shows up as a mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }

target=${CARGO_TARGET_DIR:-target}
work=$target/bench
venv=${BENCH_VENV:-$target/bench-venv}
duration=${DURATION:-10s}
edgewise_port=${EDGEWISE_PORT:-18090}
fastapi_port=${FASTAPI_PORT:-18091}
mkdir -p "$work"

cargo build --release --quiet --workspace --bins --benches
bin=$target/release
if [ ! -x "$venv/bin/python" ] ||
  ! "$venv/bin/python" -c "import onnx, onnxruntime, numpy, fastapi, uvicorn" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet onnx onnxruntime numpy fastapi "uvicorn[standard]"
fi
[ -f "$work/release.key" ] || "$bin/edgewise-train" keygen --out "$work/release" >/dev/null
[ -f "$work/digits-v1.bundle" ] || "$bin/edgewise-train" train --data training/data/digits.csv.gz \
  --spec digits-mlp --name digits --out "$work" --signing-key "$work/release.key" >/dev/null
"$venv/bin/python" bench/engine.py --trainer "$bin/edgewise-train" --bundle "$work/digits-v1.bundle" \
  --onnx-out "$work/digits-v1.onnx" --json-out /dev/null --export-only

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
"$bin/edgewise-runtime" serve --bundle "$work/digits-v1.bundle" --trust "$work/release.pub" \
  --listen "127.0.0.1:$edgewise_port" --device cpu --max-batch-size 64 \
  >"$work/serving-edgewise.out" 2>"$work/serving-edgewise.log" &
pids+=($!)
EDGEWISE_BENCH_ONNX="$work/digits-v1.onnx" "$venv/bin/uvicorn" --app-dir bench fastapi_app:app \
  --host 127.0.0.1 --port "$fastapi_port" --workers 1 --no-access-log --log-level warning \
  >"$work/serving-fastapi.log" 2>&1 &
pids+=($!)
for port in "$edgewise_port" "$fastapi_port"; do
  for _ in $(seq 1 300); do
    curl -sf -o /dev/null -X POST -H 'content-type: application/json' \
      --data '{"inputs":[{"name":"input","shape":[1,64],"datatype":"FP32","data":['"$(printf '0,%.0s' $(seq 1 63))"'0]}]}' \
      "http://127.0.0.1:$port/v2/models/digits/infer" && break
    sleep 0.1
  done
done

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); wrk ${duration} per level"
"$venv/bin/python" bench/cross_check.py "$edgewise_port" "$fastapi_port"
printf '%-8s %-12s %12s %10s %10s %8s\n' server concurrency "req/s" p50 p99 non-2xx
declare -A rps
for connections in 1 8 64; do
  threads=$(( connections < 2 ? 1 : 2 ))
  for server in edgewise fastapi; do
    port=$edgewise_port
    [ "$server" = fastapi ] && port=$fastapi_port
    out=$(wrk -t "$threads" -c "$connections" -d "$duration" --latency -s bench/infer.lua "http://127.0.0.1:$port")
    rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    rps[$server$connections]=$rate
    printf '%-8s %-12s %12s %10s %10s %8s\n' "$server" "$connections" "$rate" \
      "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")" \
      "$(awk '/Non-2xx/ {print $NF}' <<<"$out" | grep . || echo 0)"
  done
done
for connections in 1 8 64; do
  awk -v e="${rps[edgewise$connections]}" -v f="${rps[fastapi$connections]}" -v c="$connections" \
    'BEGIN { printf "concurrency %s: Edgewise serves %.1fx the requests per second of FastAPI + ONNX Runtime\n", c, e / f }'
done
