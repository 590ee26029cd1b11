#!/usr/bin/env bash
# Edgewise fleet demo, on embedded defaults: a control plane and two edge nodes on
# 127.0.0.1. It trains two versions of the digits classifier, registers the nodes,
# pushes and deploys v1, shows predictions from each node, then deploys v2 to the
# same group and shows the nodes switched. Then ten simulated nodes replay the digits
# data, and v2 reaches them through a canary rollout whose gates judge each stage.
# No external service is needed. With EDGEWISE_DEMO_KEEP=1 everything keeps running at
# the end, so the web dashboard (http://127.0.0.1:8700/) can be explored.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--closed-loop" ]; then
  exec scripts/closed-loop.sh
fi

target=${CARGO_TARGET_DIR:-target}
bin=$target/debug
work=${EDGEWISE_DEMO_DIR:-$target/demo}
api_port=${EDGEWISE_API_PORT:-8700}
quic_port=${EDGEWISE_QUIC_PORT:-8701}
mqtt_port=${EDGEWISE_MQTT_PORT:-18830}
node_ports=(8081 8082)

. scripts/common.sh
build
fresh_work_folder "$work"

echo "==> release key, and two trained versions of digits-mlp"
"$bin/edgewise-train" keygen --out "$work/release"
"$bin/edgewise-train" train --data training/data/digits.csv.gz --spec digits-mlp --name digits \
  --version 1 --epochs 10 --seed 1 --out "$work" --signing-key "$work/release.key" >/dev/null
"$bin/edgewise-train" train --data training/data/digits.csv.gz --spec digits-mlp --name digits \
  --version 2 --epochs 30 --seed 2 --out "$work" --signing-key "$work/release.key" >/dev/null

echo "==> control plane on 127.0.0.1:$api_port (embedded MQTT broker on $mqtt_port, QUIC on $quic_port)"
"$bin/edgewise" serve --data-dir "$work/control-plane" --http "127.0.0.1:$api_port" \
  --mqtt-listen "127.0.0.1:$mqtt_port" --quic "127.0.0.1:$quic_port" \
  --trust "$work/release.pub" >"$work/control-plane.out" 2>"$work/control-plane.log" &
pids+=($!)
wait_for_line "$work/control-plane.out" "ready" "$work/control-plane.log" "${pids[-1]}"
cat "$work/control-plane.out"
export EDGEWISE_SERVER=http://127.0.0.1:$api_port
EDGEWISE_TOKEN=$(cat "$work/control-plane/secrets/admin-token")
export EDGEWISE_TOKEN
edgewise() { "$bin/edgewise" "$@"; }

echo "==> registering two nodes in group 'stores' and starting them"
for i in 1 2; do
  edgewise device add "shop-$i" --group stores --out "$work/shop-$i.toml"
  "$bin/edgewise-runtime" run --config "$work/shop-$i.toml" --data-dir "$work/shop-$i-data" \
    --listen "127.0.0.1:${node_ports[$((i - 1))]}" --device auto >"$work/shop-$i.out" 2>"$work/shop-$i.log" &
  pids+=($!)
  wait_for_line "$work/shop-$i.out" "at http://" "$work/shop-$i.log" "${pids[-1]}"
done

echo "==> pushing both versions; alias champion -> 1"
edgewise model push "$work/digits-v1.bundle"
edgewise model push "$work/digits-v2.bundle"
edgewise model alias set digits champion 1 >/dev/null
edgewise model show digits

# The first image of the data set, whose true label is the last column.
row=$(set +o pipefail; gzip -dc training/data/digits.csv.gz | head -n 1)
pixels=${row%,*}
label=${row##*,}
predict() {
  for port in "${node_ports[@]}"; do
    echo "    node on :$port -> $(curl -sS -X POST -H 'content-type: application/json' \
      --data "{\"features\":[$pixels]}" "http://127.0.0.1:$port/predict" | cut -c1-110)…"
  done
}

echo "==> deploying the champion (v1) to group stores"
edgewise deploy --group stores --model digits --version champion --wait
edgewise device list
echo "==> POST /predict on each node (an image of a $label)"
predict

echo "==> deploying v2 to group stores"
edgewise deploy --group stores --model digits --version 2 --wait
echo "==> POST /predict on each node again"
predict

echo "==> ten simulated nodes in group 'fleet' (one canary), replaying digits with labels"
"$bin/edgewise-runtime" simulate --group fleet --count 10 --canaries 1 --prefix sim \
  --data training/data/digits.csv.gz --rate 40 --shuffle --feedback --window 1s \
  --data-dir "$work/simulation" >"$work/simulation.out" 2>"$work/simulation.log" &
pids+=($!)
wait_for_line "$work/simulation.out" "simulating" "$work/simulation.log" "${pids[-1]}"
sleep 2
edgewise deploy --group fleet --model digits --version 1 --wait >/dev/null
echo "==> canary rollout of v2 to group fleet: stages 10% → 50% → 100%, 3 s bake each"
edgewise rollout start --group fleet --model digits --version 2 --stages 10,50,100 --bake 3s --wait
echo "==> the fleet on one screen (edgewise status)"
sleep 3
edgewise status
echo
echo "demo finished: two nodes switched to digits v2 by deployment, ten by a gated canary rollout"
if [ -n "${EDGEWISE_DEMO_KEEP:-}" ]; then
  echo "dashboard: http://127.0.0.1:$api_port/ (Ctrl-C stops everything)"
  wait
fi
