#!/usr/bin/env bash
# Edgewise quickstart: train the digits classifier, sign it, serve it, and ask the
# running server for a prediction. No manual step, no external service.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${CARGO_TARGET_DIR:-target}
work=${EDGEWISE_QUICKSTART_DIR:-$target/quickstart}
bin=$target/debug
port=${EDGEWISE_PORT:-8080}

echo "==> building edgewise-train and edgewise-runtime"
# The same build as the test suite, so the two share one build cache.
cargo test --workspace --no-run --quiet 2>/dev/null || cargo test --workspace --no-run

mkdir -p "$work"
if [ ! -f "$work/release.key" ]; then
  echo "==> creating a release signing key"
  "$bin/edgewise-train" keygen --out "$work/release"
fi

echo "==> training digits-mlp on training/data/digits.csv.gz"
"$bin/edgewise-train" train --data training/data/digits.csv.gz --spec digits-mlp \
  --name digits --version 1 --out "$work" --signing-key "$work/release.key"
bundle=$work/digits-v1.bundle

echo "==> verifying the signed bundle"
"$bin/edgewise-train" verify "$bundle" --trust "$work/release.pub"

echo "==> serving it on 127.0.0.1:$port"
"$bin/edgewise-runtime" serve --bundle "$bundle" --trust "$work/release.pub" \
  --listen "127.0.0.1:$port" --device auto >"$work/runtime.out" 2>"$work/runtime.log" &
runtime=$!
trap 'kill $runtime 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "serving" "$work/runtime.out" 2>/dev/null && break
  kill -0 $runtime 2>/dev/null || { cat "$work/runtime.log"; exit 1; }
  sleep 0.1
done
cat "$work/runtime.out"

# The first image of the data set, whose true label is the last column.
row=$(set +o pipefail; gzip -dc training/data/digits.csv.gz | head -n 1)
pixels=${row%,*}
label=${row##*,}
request="{\"id\":\"quickstart\",\"inputs\":[{\"name\":\"input\",\"shape\":[1,64],\"datatype\":\"FP32\",\"data\":[$pixels]}]}"

echo "==> POST /v2/models/digits/infer (an image of a $label)"
response=$(curl -sS -X POST -H 'content-type: application/json' \
  --data "$request" "http://127.0.0.1:$port/v2/models/digits/infer")
echo "$response"
predicted=$(echo "$response" | sed -n 's/.*"name":"label".*"data":\["\([^"]*\)".*/\1/p')
echo
echo "prediction: $predicted (true label: $label)"
