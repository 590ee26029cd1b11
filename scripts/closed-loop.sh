#!/usr/bin/env bash
# Edgewise closed loop on embedded defaults: drift → retrain → canary, on 127.0.0.1.
# It trains rainfall v1 on the older rows of the rainfall data, starts a control plane
# and sets a retraining policy for the model, then four simulated nodes in group
# 'field' serve v1 on the newer rows, whose inputs have drifted, and send each row's
# true label back. The fleet monitor raises a drift alert; the policy trains v2 on the
# captured, labelled examples, compares it with v1 on held-out recent rows, registers
# it and rolls it out to the group through a gated canary. No external service is
# needed; besides the project's binaries it uses curl and python3. Ports come from
# EDGEWISE_API_PORT, EDGEWISE_QUIC_PORT and EDGEWISE_MQTT_PORT (8710, 8711, 18840).
# With EDGEWISE_SKIP_BUILD=1 the binaries already built are used as they are; with
# EDGEWISE_CLOSED_LOOP_KEEP=1 everything keeps running at the end, so the web
# dashboard (http://127.0.0.1:8710/) can be explored.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
bin=$target/debug
work=${EDGEWISE_CLOSED_LOOP_DIR:-$target/closed-loop}
api_port=${EDGEWISE_API_PORT:-8710}
quic_port=${EDGEWISE_QUIC_PORT:-8711}
mqtt_port=${EDGEWISE_MQTT_PORT:-18840}
# How long each narrated step may take before the script gives up.
step_timeout=${EDGEWISE_CLOSED_LOOP_TIMEOUT:-300}

. scripts/common.sh
build
fresh_work_folder "$work"

# Runs COMMAND every second until it succeeds, for at most $step_timeout seconds; fails
# saying WHAT was awaited, and shows the control plane's log if it stopped.
wait_until() {
  local what=$1
  shift
  for _ in $(seq 1 "$step_timeout"); do
    "$@" && return 0
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "a process stopped while waiting for $what" >&2; tail -n 40 "$work/control-plane.log" >&2; exit 1; }
    done
    sleep 1
  done
  echo "gave up waiting for $what after $step_timeout s" >&2
  exit 1
}

# Reads JSON on stdin and runs the Python CODE on it as `d`.
json() { python3 -c "import json, sys; d = json.load(sys.stdin); $1"; }
get() { curl -fsS "http://127.0.0.1:$api_port$1"; }

echo "==> release key, and rainfall v1 trained on rows 0..12000"
"$bin/edgewise-train" keygen --out "$work/release"
"$bin/edgewise-train" train --data training/data/rainfall.csv.gz --label rain --rows 0..12000 \
  --spec rainfall-mlp --name rainfall --version 1 --epochs 10 --out "$work" \
  --signing-key "$work/release.key" >"$work/train-v1.log" 2>&1 || { cat "$work/train-v1.log"; exit 1; }
grep -E '^(test accuracy|macro-F1) ' "$work/train-v1.log" | sed 's/^/    /' || true

echo "==> control plane on 127.0.0.1:$api_port (embedded MQTT broker on $mqtt_port, QUIC on $quic_port)"
"$bin/edgewise" serve --data-dir "$work/control-plane" --http "127.0.0.1:$api_port" \
  --mqtt-listen "127.0.0.1:$mqtt_port" --quic "127.0.0.1:$quic_port" \
  --trust "$work/release.pub" --monitor-interval 2s \
  >"$work/control-plane.out" 2>"$work/control-plane.log" &
pids+=($!)
wait_for_line "$work/control-plane.out" "ready" "$work/control-plane.log" "${pids[-1]}"
cat "$work/control-plane.out"
export EDGEWISE_SERVER=http://127.0.0.1:$api_port
EDGEWISE_TOKEN=$(cat "$work/control-plane/secrets/admin-token")
export EDGEWISE_TOKEN
edgewise() { "$bin/edgewise" "$@"; }

echo "==> pushing rainfall v1"
edgewise model push "$work/rainfall-v1.bundle"

echo "==> retraining policy for rainfall: on drift in group field, retrain on the captures,"
echo "    register only if 0.05 better on the newest 20%, then canary 25% → 100%"
policy='{"groups":["field"],"min_labelled":1300,"holdout_fraction":0.2,"margin":0.05,"hyperparameters":{"epochs":40,"seed":7},"cooldown_seconds":3600,"rollout":{"stages":[25,100],"bake_seconds":3,"gates":{"max_js_distance":1.0,"min_labels":30}}}'
curl -fsS -X PUT -H 'content-type: application/json' --data "$policy" \
  "$EDGEWISE_SERVER/api/v1/models/rainfall/retraining-policy" >/dev/null
edgewise retraining show rainfall

echo "==> four simulated nodes in group 'field' (one canary), replaying the newer rows 12000.."
echo "    with labels 2 s late, capturing every prediction for retraining"
"$bin/edgewise-runtime" simulate --group field --count 4 --canaries 1 --prefix field \
  --data training/data/rainfall.csv.gz --label rain --rows 12000.. --rate 50 --shuffle \
  --feedback --label-delay 2s --capture-rate 1 --capture-per-window 200 --window 1s \
  --data-dir "$work/simulation" --server "$EDGEWISE_SERVER" \
  >"$work/simulation.out" 2>"$work/simulation.log" &
pids+=($!)
wait_for_line "$work/simulation.out" "simulating" "$work/simulation.log" "${pids[-1]}"
echo "==> deploying v1 to group field"
edgewise deploy --group field --model rainfall --version 1 --wait

echo "==> waiting for the fleet monitor to see the inputs drift"
drift_alert() {
  get /api/v1/alerts | json '
alerts = [a for a in d if a.get("status") != "resolved"
          and a.get("labels", {}).get("alertname") == "EdgewiseFeatureDrift"
          and a.get("labels", {}).get("model") == "rainfall"]
for a in alerts[:1]:
    print("    alert: " + a.get("annotations", {}).get("summary", "feature drift"))
sys.exit(0 if alerts else 1)'
}
wait_until "a drift alert for rainfall" drift_alert

echo "==> waiting for the retraining policy to start a training job"
first_job() { get /api/v1/training-jobs | json 'sys.exit(0 if d else 1)'; }
wait_until "a retraining job" first_job
edgewise --json train list >"$work/jobs.json"
job=$(json 'print(d[0]["id"])' <"$work/jobs.json")
edgewise train list
echo "==> the job's log, followed until it ends"
edgewise train logs "$job" --follow
echo "==> the job"
edgewise train show "$job"
get "/api/v1/training-jobs/$job" >"$work/job.json"
if ! json 'sys.exit(0 if d.get("registered") else 1)' <"$work/job.json"; then
  echo "the retrained version was not registered, so nothing is rolled out" >&2
  exit 1
fi

echo "==> waiting for the canary rollout of the retrained version"
job_rollout() { get "/api/v1/training-jobs/$job" | json 'sys.exit(0 if d.get("rollouts") else 1)'; }
wait_until "the job's rollout" job_rollout
rollout=$(get "/api/v1/training-jobs/$job" | json 'print(d["rollouts"][0])')
echo "    rollout $rollout started"
rollout_over() { get "/api/v1/rollouts/$rollout" | json 'sys.exit(0 if d.get("state") != "running" else 1)'; }
wait_until "rollout $rollout to end" rollout_over
edgewise rollout status "$rollout"
state=$(get "/api/v1/rollouts/$rollout" | json 'print(d.get("state"))')

echo "==> the fleet on one screen (edgewise status)"
sleep 2
edgewise status
echo
if [ "$state" != completed ]; then
  echo "closed loop: the rollout of the retrained version ended $state" >&2
  exit 1
fi
get "/api/v1/training-jobs/$job" | json '
e = d["evaluation"]
print("closed loop: v%d %.2f → v%d %.2f on %d held-out recent rows; rolled out to group field"
      % (e["parent_version"], e["parent_accuracy"], d["version"], e["candidate_accuracy"], e["examples"]))'
if [ -n "${EDGEWISE_CLOSED_LOOP_KEEP:-}" ]; then
  echo "dashboard: http://127.0.0.1:$api_port/ (Ctrl-C stops everything)"
  wait
fi
