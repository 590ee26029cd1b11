#!/usr/bin/env bash
# The CI checks, the same steps as .github/workflows/ci.yml:
#   pipelines/ci.sh fmt      cargo fmt --all --check
#   pipelines/ci.sh clippy   cargo clippy --workspace --all-targets -- -D warnings
#   pipelines/ci.sh test     .ci/run (installs what the tests need, then cargo test --workspace)
#   pipelines/ci.sh          all three, in that order
# Exit status: 0 when every step passes, otherwise that of the first failing step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() {
  local name=$1
  shift
  local started=$SECONDS
  printf '==> %s: %s\n' "$name" "$*"
  if "$@"; then
    printf '==> %s passed in %d s\n' "$name" "$((SECONDS - started))"
  else
    local status=$?
    if [ -n "${GITHUB_ACTIONS:-}" ]; then printf '::error title=%s::%s failed (exit %d)\n' "$name" "$name" "$status"; fi
    printf '==> %s failed (exit %d) after %d s\n' "$name" "$status" "$((SECONDS - started))" >&2
    exit "$status"
  fi
}

run_fmt() { step fmt cargo fmt --all --check; }
run_clippy() { step clippy cargo clippy --workspace --all-targets -- -D warnings; }
run_tests() { step test .ci/run; }

case ${1:-all} in
  fmt) run_fmt ;;
  clippy) run_clippy ;;
  test) run_tests ;;
  all) run_fmt; run_clippy; run_tests ;;
  -h | --help) sed -n 's/^# \{0,1\}//; 2,7p' pipelines/ci.sh; exit 0 ;;
  *) echo "usage: pipelines/ci.sh [fmt|clippy|test|all]" >&2; exit 2 ;;
esac
