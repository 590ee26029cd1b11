# shellcheck shell=bash
# Shared by the demo scripts (sourced): the build they share with the test suite, a
# fresh work folder, background processes stopped on exit, and waiting for a line.

# Builds the binaries with the test suite's profile (skipped with EDGEWISE_SKIP_BUILD=1).
build() {
  if [ -z "${EDGEWISE_SKIP_BUILD:-}" ]; then
    echo "==> building (the same build as the test suite)"
    cargo test --workspace --no-run --quiet 2>/dev/null || cargo test --workspace --no-run
  fi
}

# Empties folder $1 and stops every pid in `pids` when the script exits.
fresh_work_folder() {
  rm -rf "$1"
  mkdir -p "$1"
  pids=()
  trap 'for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT
}

# Waits until FILE holds TEXT, or fails showing LOG (or at once if PID died).
wait_for_line() {
  local file=$1 text=$2 log=$3 pid=$4
  for _ in $(seq 1 600); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.1
  done
  cat "$log"; exit 1
}
