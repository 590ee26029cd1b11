#!/usr/bin/env bash
# Follows docs/getting-started.md the way a newcomer does, so that the guide cannot rot
# unnoticed.
#
# Usage: scripts/check-getting-started.sh BIN_DIR
#
#   BIN_DIR holds built edgewise, edgewise-runtime and edgewise-train (target/debug after
#   `cargo build`). Nothing is built here.
#
# It takes the guide's ```bash blocks in order, leaves out the ones marked with the line
#   <!-- not run by scripts/check-getting-started.sh -->
# just before them (the build), and runs the rest in ONE bash process from the repository
# root, so that variables and background jobs carry over from block to block. Each block
# is printed before it runs. The first command that fails stops the check, which then
# names the block and shows the tail of the logs in the work folder.
#
# The guide's defaults would clash with anything else on the machine, so a few pieces of
# its text are replaced before running (SUBSTITUTIONS below; each must match, or the
# check fails and this list needs updating):
#   export PATH="$PWD/target/debug:$PATH"  ->  export PATH="BIN_DIR:$PATH"
#   W=target/tour                           ->  W=<temporary folder>/tour
#   edgewise serve                          ->  edgewise serve --http .. --mqtt-listen .. --quic ..
#   127.0.0.1:8081, 127.0.0.1:8082          ->  free ports chosen at the start
# and EDGEWISE_SERVER points the CLI and the simulator at the control plane's free port.
# A run block that still names a default port or target/ after that is an error.
#
# Just before the last block (which stops everything) it checks the outcome: both
# rollouts completed, and every device online and serving version 2. After the last
# block nothing the guide started may still be running. The whole run has a time limit
# (CHECK_TIMEOUT seconds, default 600); on any exit, Ctrl-C included, every process it
# started is stopped. The work folder is removed after a success and kept after a
# failure.
set -euo pipefail

if [ $# -ne 1 ] || [ ! -x "$1/edgewise" ] || [ ! -x "$1/edgewise-runtime" ] || [ ! -x "$1/edgewise-train" ]; then
  echo "usage: $0 BIN_DIR  (a folder holding edgewise, edgewise-runtime and edgewise-train)" >&2
  exit 2
fi
bin_dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
doc=docs/getting-started.md
marker='<!-- not run by scripts/check-getting-started.sh -->'
limit=${CHECK_TIMEOUT:-600}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/getting-started.XXXXXX")
work=$tmp/tour
trap 'rm -rf "$tmp"' EXIT

# Free ports (TCP and UDP alike, as QUIC is UDP), all held open until all are chosen.
read -r api_port mqtt_port quic_port node1_port node2_port < <(python3 - <<'EOF'
import socket
held, ports = [], []
while len(ports) < 5:
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    tcp.bind(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        udp.bind(("127.0.0.1", port))
    except OSError:
        tcp.close()
        continue
    held += [tcp, udp]
    ports.append(port)
print(*ports)
EOF
) || { echo "could not find free ports" >&2; exit 1; }

# SUBSTITUTIONS: guide text -> what the check runs, applied to every run block in turn.
# shellcheck disable=SC2016 # the guide's text, with its $PWD and $PATH, taken literally
from=(
  'export PATH="$PWD/target/debug:$PATH"'
  'W=target/tour'
  'edgewise serve '
  '127.0.0.1:8081'
  '127.0.0.1:8082'
)
to=(
  "export PATH=\"$bin_dir:\$PATH\""
  "W=$work"
  "edgewise serve --http 127.0.0.1:$api_port --mqtt-listen 127.0.0.1:$mqtt_port --quic 127.0.0.1:$quic_port "
  "127.0.0.1:$node1_port"
  "127.0.0.1:$node2_port"
)
export EDGEWISE_SERVER=http://127.0.0.1:$api_port

# ---- the guide's blocks ----------------------------------------------------------------

nums=() lines=() bodies=() notes=()
n=0 lineno=0 in_block=false skip=false previous='' start=0 body=''
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  if ! $in_block; then
    if [ "$line" = '```bash' ]; then
      n=$((n + 1))
      in_block=true start=$lineno body=''
      if [ "$previous" = "$marker" ]; then skip=true; else skip=false; fi
    elif [ -n "${line//[[:space:]]/}" ]; then
      previous=$line
    fi
  elif [ "$line" = '```' ]; then
    in_block=false previous=''
    if $skip; then
      notes+=("    block $n ($doc:$start) is marked as not run")
    elif grep -qE '(^|[^[:alnum:]_-])cargo ' <<<"$body"; then
      echo "block $n ($doc:$start) runs cargo; mark it with $marker" >&2
      exit 1
    else
      nums+=("$n") lines+=("$start") bodies+=("$body")
    fi
  else
    body+=$line$'\n'
  fi
done <"$root/$doc"
if $in_block; then
  echo "$doc:$start: the block never ends" >&2
  exit 1
fi
if [ ${#bodies[@]} -eq 0 ]; then
  echo "$doc has no bash blocks to run" >&2
  exit 1
fi

for i in "${!from[@]}"; do
  found=false
  for j in "${!bodies[@]}"; do
    if [[ ${bodies[j]} == *"${from[i]}"* ]]; then
      found=true
      bodies[j]=${bodies[j]//"${from[i]}"/"${to[i]}"}
    fi
  done
  if ! $found; then
    echo "substitution '${from[i]}' matches nothing in $doc: update $0" >&2
    exit 1
  fi
done
for j in "${!bodies[@]}"; do
  # The binaries' and work folder's own paths may well contain target/.
  body=${bodies[j]//"$bin_dir"/BIN_DIR}
  body=${body//"$work"/WORK}
  if grep -nE '(127\.0\.0\.1|localhost):(1883|87[0-9][0-9]|80[0-9][0-9])([^0-9]|$)|target/' <<<"$body" >&2; then
    echo "block ${nums[j]} ($doc:${lines[j]}) still uses a default port or target/ (above): extend the substitutions in $0" >&2
    exit 1
  fi
done

# ---- outcome checks, run in the guide's shell just before its last block -------------------

check_outcomes() {
  echo "check" >"$CHECK_DIR/current"
  echo
  echo "==> checking the outcome"
  local i
  for i in $(seq 1 30); do
    if edgewise --json rollout list >"$CHECK_DIR/rollouts.json" &&
      edgewise --json device list >"$CHECK_DIR/devices.json" &&
      python3 - "$CHECK_DIR/rollouts.json" "$CHECK_DIR/devices.json" <<'EOF'; then
import json, sys

rollouts = json.load(open(sys.argv[1]))
devices = json.load(open(sys.argv[2]))
problems = []
states = {r["id"]: r["state"] for r in rollouts}
groups = {r["id"]: r["group"] for r in rollouts}
for group in ("fleet", "stores"):
    ids = [i for i in states if groups[i] == group]
    if [states[i] for i in ids] != ["completed"]:
        problems.append(f"rollouts of {group}: {[(i, states[i]) for i in ids]}")
if len(devices) != 12:
    problems.append(f"{len(devices)} devices, not 12")
for d in devices:
    active = (d.get("reported") or {}).get("active") or {}
    serving = f"{active.get('model')}:{active.get('version')}" if active else "nothing"
    if not d.get("online") or serving != "digits:2":
        online = "online" if d.get("online") else "offline"
        problems.append(f"device {d.get('id')}: {online}, serving {serving}")
for p in problems:
    print("  " + p)
sys.exit(1 if problems else 0)
EOF
      echo "OK: both rollouts completed; 12 devices online, serving digits version 2"
      return 0
    fi
    sleep 1
  done
  echo "the outcome check failed" >&2
  return 1
}

# ---- the shell that runs the guide -----------------------------------------------------

mkdir -p "$tmp/blocks"
runner=$tmp/runner.sh
last=$((${#bodies[@]} - 1))
{
  # Only -e: the guide's commands run as in an interactive shell, except that the first
  # one that fails stops the check.
  echo 'set -e'
  printf 'cd %q\n' "$root"
  printf 'export CHECK_DIR=%q\n' "$tmp"
  declare -f check_outcomes
  # shellcheck disable=SC2016 # code for the runner, expanded there
  printf '%s\n' '__block() {' \
    '  echo "$1 $2" >"$CHECK_DIR/current"' \
    '  echo; echo "==> block $1 (docs/getting-started.md:$2)"' \
    '  sed "s/^/  | /" "$3"' \
    '}'
  for j in "${!bodies[@]}"; do
    file=$tmp/blocks/${nums[j]}.sh
    printf '%s' "${bodies[j]}" >"$file"
    if [ "$j" -eq "$last" ]; then echo check_outcomes; fi
    printf '__block %s %s %q\n' "${nums[j]}" "${lines[j]}" "$file"
    printf 'source %q\n' "$file"
  done
} >"$runner"

pgid=''
stop_all() {
  # `timeout` runs in a process group of its own, with the guide's shell and everything
  # that shell starts in the background: stop the whole group.
  [ -n "$pgid" ] || return 0
  if kill -0 -- "-$pgid" 2>/dev/null; then
    kill -TERM -- "-$pgid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 -- "-$pgid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL -- "-$pgid" 2>/dev/null || true
  fi
}
show_failure() {
  local what=$1 block='' line='' first=''
  if [ -s "$tmp/current" ]; then read -r block line <"$tmp/current"; fi
  if [ "$block" = check ]; then
    echo "FAILED: the outcome check $what" >&2
  elif [ -n "$line" ]; then
    first=$(sed -n "$((line + 1))p" "$root/$doc")
    echo "FAILED: block $block ($doc:$line, \`$first\`) $what" >&2
  else
    echo "FAILED: $what" >&2
  fi
  for log in "$work"/*.log; do
    [ -e "$log" ] || continue
    echo "--- last lines of $log" >&2
    tail -n 15 "$log" | sed $'s/\x1b\\[[0-9;]*m//g' >&2
  done
  echo "work folder kept: $tmp" >&2
}
on_signal() {
  trap - EXIT
  echo "interrupted: stopping everything the guide started" >&2
  stop_all
  echo "work folder kept: $tmp" >&2
  exit 130
}
trap stop_all EXIT
trap on_signal INT TERM HUP

echo "==> following $doc with $bin_dir"
echo "    ports: api $api_port, mqtt $mqtt_port, quic $quic_port (udp), nodes $node1_port $node2_port"
echo "    work folder: $work; time limit ${limit}s"
[ ${#notes[@]} -eq 0 ] || printf '%s\n' "${notes[@]}"
started=$SECONDS
# Without --foreground, timeout puts itself, the shell and its children in a new
# process group, and on expiry signals the whole group.
timeout --kill-after=10 "$limit" bash "$runner" </dev/null &
pgid=$!
rc=0
wait "$pgid" || rc=$?
if [ "$rc" -ne 0 ]; then
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    show_failure "did not finish within the time limit of ${limit}s"
  else
    show_failure "failed (exit status $rc)"
  fi
  exit 1
fi

# The guide's last block stops everything it started: give it a few seconds to exit.
for _ in $(seq 1 50); do
  kill -0 -- "-$pgid" 2>/dev/null || break
  sleep 0.2
done
if kill -0 -- "-$pgid" 2>/dev/null; then
  echo "FAILED: still running after the guide's last block:" >&2
  pgrep -a -g "$pgid" >&2 || true
  echo "work folder kept: $tmp" >&2
  exit 1
fi
rm -rf "$tmp"
echo
echo "OK: $doc followed in $((SECONDS - started))s"
