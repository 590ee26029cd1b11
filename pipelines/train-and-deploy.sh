#!/usr/bin/env bash
# Train → evaluate against the champion → sign → push → deploy (canary) → move the alias.
#
# One model definition folder (models/NAME/model.json, see pipelines/README.md) says what
# to train and where it goes. The script trains a candidate with `edgewise-train`, scores
# it and the registry's champion on the same held-out rows, refuses a candidate worse by
# more than the definition's margin, pushes it as the next free version, puts it on the
# target group (a direct `edgewise deploy` when the group runs no version of the model
# yet, a gated canary rollout otherwise) and, once the group runs it, moves the champion
# alias to it. Run with --help for the options; every input also has an environment
# variable, so the same script runs in GitHub Actions and on a laptop.
set -euo pipefail

readonly EXIT_USAGE=2 EXIT_PREFLIGHT=3 EXIT_TRAIN=4 EXIT_EVALUATE=5 EXIT_REFUSED=6 \
  EXIT_PUSH=7 EXIT_DEPLOY=8 EXIT_HALTED=9 EXIT_TIMEOUT=10 EXIT_ALIAS=11

usage() {
  cat <<'EOF'
Usage: pipelines/train-and-deploy.sh [OPTIONS]

Trains the model of a definition folder, evaluates it against the registry's champion,
signs and pushes it, deploys it to the definition's group and moves the champion alias.

Inputs (flag, then environment variable):
  --model-dir DIR          model definition folder [PIPELINE_MODEL_DIR, default models/rainfall]
  --server URL             control plane [EDGEWISE_SERVER, required]
  (environment only)       EDGEWISE_TOKEN: an API token with role ci, read by the edgewise CLI
  --signing-key FILE       release key file [EDGEWISE_RELEASE_KEY_FILE]; without it the key
                           file's content is read from EDGEWISE_RELEASE_KEY
  --bin-dir DIR            folder holding edgewise and edgewise-train [EDGEWISE_BIN_DIR,
                           default: PATH, then target/release, then target/debug]
  --source-revision REV    git commit recorded in the lineage [EDGEWISE_SOURCE_REVISION,
                           default GITHUB_SHA or `git rev-parse HEAD`]
  --work-dir DIR           keep the bundles, logs and summary here [PIPELINE_WORK_DIR,
                           default: a temporary folder removed at exit]
  --no-deploy              train and evaluate only; push nothing [PIPELINE_NO_DEPLOY=1]
  --poll SECONDS           how often rollout progress is logged [PIPELINE_POLL_SECONDS, 10]

Every key of model.json can be overridden with --KEY VALUE (dashes for underscores) or
PIPELINE_KEY (upper case), e.g. --epochs 3, --bake 30s, PIPELINE_STAGES=25,100.
Keys: name spec data label features train_rows holdout_rows epochs batch_size
learning_rate seed patience metric max_regression group stages bake on_failure gates
shadow alias deploy_timeout rollout_timeout

Exit status:
   0 deployed (or, with --no-deploy, trained and evaluated)
   2 usage or model definition error     3 preflight: control plane, group or rollout state
   4 training failed                     5 evaluation failed
   6 candidate refused: worse than the champion by more than max_regression
   7 push failed                         8 deployment failed or the rollout could not start
   9 rollout halted (rolled back or paused)
  10 rollout still running when rollout_timeout ran out (left running)
  11 the group runs the new version but the alias could not be moved
   1 anything else
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
keys=(name spec data label features train_rows holdout_rows epochs batch_size learning_rate
  seed patience metric max_regression group stages bake on_failure gates shadow alias
  deploy_timeout rollout_timeout)

# --- logging, failure and the summary -------------------------------------------------

log() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
warn() {
  if [ -n "${GITHUB_ACTIONS:-}" ]; then printf '::warning title=train-and-deploy::%s\n' "$*"; fi
  printf 'warning: %s\n' "$*" >&2
}
outcome="failed"
# Fails with exit status CODE, saying MESSAGE (an error annotation in GitHub Actions).
fail() {
  local code=$1
  shift
  outcome="failed (exit $code): $*"
  if [ -n "${GITHUB_ACTIONS:-}" ]; then printf '::error title=train-and-deploy::%s\n' "$*"; fi
  printf 'error: %s\n' "$*" >&2
  exit "$code"
}
summary_rows=()
summary_extra=""
row() { summary_rows+=("| $1 | ${2//|/\\|} |"); } # a | would end the table cell
output() { if [ -n "${GITHUB_OUTPUT:-}" ]; then printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; fi; }

# --- arguments ------------------------------------------------------------------------

declare -A cfg=() override=()
model_dir=${PIPELINE_MODEL_DIR:-models/rainfall}
server=${EDGEWISE_SERVER:-}
signing_key=${EDGEWISE_RELEASE_KEY_FILE:-}
bin_dir=${EDGEWISE_BIN_DIR:-}
revision=${EDGEWISE_SOURCE_REVISION:-}
work_dir=${PIPELINE_WORK_DIR:-}
no_deploy=${PIPELINE_NO_DEPLOY:-}
poll=${PIPELINE_POLL_SECONDS:-10}
for key in "${keys[@]}"; do
  env_name="PIPELINE_${key^^}"
  if [ -n "${!env_name:-}" ]; then override[$key]=${!env_name}; fi
done

need_value() { [ "$#" -ge 2 ] || fail "$EXIT_USAGE" "$1 needs a value (see --help)"; }
while [ "$#" -gt 0 ]; do
  case $1 in
    -h | --help) usage; exit 0 ;;
    --model-dir) need_value "$@"; model_dir=$2; shift 2 ;;
    --server) need_value "$@"; server=$2; shift 2 ;;
    --signing-key) need_value "$@"; signing_key=$2; shift 2 ;;
    --bin-dir) need_value "$@"; bin_dir=$2; shift 2 ;;
    --source-revision) need_value "$@"; revision=$2; shift 2 ;;
    --work-dir) need_value "$@"; work_dir=$2; shift 2 ;;
    --no-deploy) no_deploy=1; shift ;;
    --poll) need_value "$@"; poll=$2; shift 2 ;;
    --*)
      key=${1#--}
      key=${key//-/_}
      if [[ " ${keys[*]} " == *" $key "* ]]; then
        need_value "$@"
        override[$key]=$2
        shift 2
      else
        fail "$EXIT_USAGE" "unknown option $1 (see --help)"
      fi
      ;;
    *) fail "$EXIT_USAGE" "unexpected argument $1 (see --help)" ;;
  esac
done
case $no_deploy in 0 | false) no_deploy="" ;; *) ;; esac

# Paths given on the command line are relative to where the script was started.
absolute() { case $1 in /*) printf '%s' "$1" ;; *) printf '%s/%s' "$PWD" "$1" ;; esac; }
if [ -d "$model_dir" ]; then model_dir=$(cd "$model_dir" && pwd)
elif [ -d "$repo/$model_dir" ]; then model_dir=$(cd "$repo/$model_dir" && pwd)
else fail "$EXIT_USAGE" "model definition folder $model_dir not found"; fi
[ -z "$signing_key" ] || signing_key=$(absolute "$signing_key")
[ -z "$bin_dir" ] || bin_dir=$(absolute "$bin_dir")
[ -z "$work_dir" ] || work_dir=$(absolute "$work_dir")
cd "$repo"

# --- temporary files, removed at exit -------------------------------------------------

key_tmp=""
scratch=""
follower=""
cleanup() {
  local status=$?
  if [ -n "$follower" ]; then kill "$follower" 2>/dev/null || true; fi
  if [ -n "$key_tmp" ]; then rm -f "$key_tmp"; fi
  write_summary "$status"
  if [ -n "$scratch" ]; then rm -rf "$scratch"; fi
  exit "$status"
}
write_summary() {
  local status=$1 text
  [ "${#summary_rows[@]}" -gt 0 ] || return 0
  [ "$status" -ne 0 ] || [ "$outcome" != failed ] || outcome="succeeded"
  [ "$status" -eq 0 ] || [ "$outcome" != failed ] || outcome="failed (exit $status)"
  text=$(
    printf '### %s: train and deploy\n\n| | |\n|---|---|\n' "${cfg[name]:-model}"
    printf '%s\n' "${summary_rows[@]}"
    printf '| outcome | %s |\n' "${outcome//|/\\|}"
    if [ -n "$summary_extra" ]; then printf '\n%s\n' "$summary_extra"; fi
  )
  if [ -n "$work" ] && [ -d "$work" ]; then printf '%s\n' "$text" >"$work/summary.md"; fi
  if [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
    printf '%s\n\n' "$text" >>"$GITHUB_STEP_SUMMARY"
  else
    printf '\n%s\n' "$text"
  fi
}
work=""
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
if [ -n "$work_dir" ]; then
  mkdir -p "$work_dir"
  work=$work_dir
else
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/train-and-deploy.XXXXXX")
  work=$scratch
fi
# Only what this script writes is cleared from a reused work folder.
rm -rf "$work/candidate" "$work/champion"
for file in definition.tsv models.json versions.json groups.json rollouts.json push.json \
  rollout.json rollout.err rollout-status.json train.log evaluate.log cli.err summary.md; do
  rm -f "${work:?}/$file"
done
mkdir -p "$work/candidate" "$work/champion"

# --- the model definition -------------------------------------------------------------

definition=$model_dir/model.json
[ -f "$definition" ] || fail "$EXIT_USAGE" "$definition not found"
command -v python3 >/dev/null || fail "$EXIT_USAGE" "python3 is needed to read JSON"
# Reads JSON on stdin and runs the Python CODE on it as `d`, with ARGS as the list `a`.
json() { python3 -c "import json, sys; d = json.load(sys.stdin); a = sys.argv[1:]; $1" "${@:2}"; }
num4() { LC_NUMERIC=C printf '%.4f' "$1"; }
# The first line of a CLI error (anyhow's "Error: …"; a backtrace may follow it).
cli_error() { sed -n '1s/^Error: //p' "$work/${1:-cli.err}"; }

if ! python3 - "$definition" "${keys[*]}" >"$work/definition.tsv" <<'PY'; then
import json, sys
path, known = sys.argv[1], sys.argv[2].split()
try:
    with open(path) as f:
        d = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"{path}: {e}")
if not isinstance(d, dict):
    sys.exit(f"{path}: expected a JSON object")
for key, value in d.items():
    if key not in known:
        sys.exit(f"{path}: unknown key {key!r}; known keys: {', '.join(known)}")
    if value is None:
        continue
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, dict):
        sys.exit(f"{path}: {key} must be a string, a number or a list")
    value = str(value)
    if any(c in value for c in "\t\n\r"):
        sys.exit(f"{path}: {key} holds a tab or a line break")
    print(f"{key}\t{value}")
PY
  fail "$EXIT_USAGE" "cannot read the model definition $definition"
fi
while IFS=$'\t' read -r key value; do cfg[$key]=$value; done <"$work/definition.tsv"
for key in "${!override[@]}"; do cfg[$key]=${override[$key]}; done

# Defaults for what the definition leaves out.
: "${cfg[name]:=$(basename "$model_dir")}"
: "${cfg[label]:=last}"
: "${cfg[metric]:=accuracy}"
: "${cfg[max_regression]:=0}"
: "${cfg[stages]:=5,25,100}"
: "${cfg[bake]:=60s}"
: "${cfg[on_failure]:=rollback}"
: "${cfg[shadow]:=false}"
: "${cfg[alias]:=champion}"
: "${cfg[deploy_timeout]:=10m}"
: "${cfg[rollout_timeout]:=2h}"
name=${cfg[name]}
for key in spec data holdout_rows; do
  [ -n "${cfg[$key]:-}" ] || fail "$EXIT_USAGE" "$definition: $key is required"
done
if [ -z "$no_deploy" ] && [ -z "${cfg[group]:-}" ]; then
  fail "$EXIT_USAGE" "$definition: group is required (or pass --no-deploy)"
fi
case ${cfg[metric]} in accuracy | macro_f1) ;; *) fail "$EXIT_USAGE" "metric must be accuracy or macro_f1, not ${cfg[metric]}" ;; esac
case ${cfg[on_failure]} in rollback | pause) ;; *) fail "$EXIT_USAGE" "on_failure must be rollback or pause, not ${cfg[on_failure]}" ;; esac
case ${cfg[shadow]} in true | false) ;; *) fail "$EXIT_USAGE" "shadow must be true or false, not ${cfg[shadow]}" ;; esac
[[ ${cfg[max_regression]} =~ ^[0-9]*\.?[0-9]+$ ]] || fail "$EXIT_USAGE" "max_regression must be a number ≥ 0, not ${cfg[max_regression]}"
[[ $poll =~ ^[1-9][0-9]*$ ]] || fail "$EXIT_USAGE" "--poll must be a whole number of seconds, not $poll"

# Files: the spec and the gates relative to the definition folder, the data to the repository.
data=${cfg[data]}
case $data in /*) ;; *) data=$repo/$data ;; esac
[ -f "$data" ] || fail "$EXIT_USAGE" "training data $data not found"
spec=${cfg[spec]}
if [ -f "$model_dir/$spec" ]; then spec=$model_dir/$spec
elif [[ $spec == */* || $spec == *.json ]]; then
  [ -f "$spec" ] || fail "$EXIT_USAGE" "spec file $spec not found"
  spec=$(absolute "$spec")
fi # otherwise a preset name such as rainfall-mlp
gates=""
if [ -n "${cfg[gates]:-}" ]; then
  gates=${cfg[gates]}
  if [ -f "$model_dir/$gates" ]; then gates=$model_dir/$gates; fi
  [ -f "$gates" ] || fail "$EXIT_USAGE" "gates file $gates not found"
  json 'assert isinstance(d, dict)' <"$gates" 2>/dev/null || fail "$EXIT_USAGE" "gates file $gates is not a JSON object"
fi

# Row ranges: START..END, END excluded and optional. The held-out rows must not overlap
# the training rows, or the comparison flatters whichever model saw them.
range_ok() { [[ $1 =~ ^[0-9]+\.\.[0-9]*$ ]]; }
range_ok "${cfg[holdout_rows]}" || fail "$EXIT_USAGE" "holdout_rows must be START..END, not ${cfg[holdout_rows]}"
if [ -n "${cfg[train_rows]:-}" ]; then
  range_ok "${cfg[train_rows]}" || fail "$EXIT_USAGE" "train_rows must be START..END, not ${cfg[train_rows]}"
  t0=${cfg[train_rows]%%..*} t1=${cfg[train_rows]##*..} h0=${cfg[holdout_rows]%%..*} h1=${cfg[holdout_rows]##*..}
  t1=${t1:-999999999999} h1=${h1:-999999999999}
  if ((10#$t0 < 10#$h1 && 10#$h0 < 10#$t1)); then
    fail "$EXIT_USAGE" "holdout_rows ${cfg[holdout_rows]} overlap train_rows ${cfg[train_rows]}"
  fi
else
  fail "$EXIT_USAGE" "$definition: train_rows is required, so the held-out rows stay out of training"
fi

# --- binaries, server, key, revision ---------------------------------------------------

find_bin() {
  local tool=$1 dir
  if [ -n "$bin_dir" ]; then
    [ -x "$bin_dir/$tool" ] || fail "$EXIT_USAGE" "$bin_dir/$tool not found or not executable"
    printf '%s' "$bin_dir/$tool"
    return
  fi
  if command -v "$tool" >/dev/null; then command -v "$tool"; return; fi
  for dir in "${CARGO_TARGET_DIR:-$repo/target}/release" "${CARGO_TARGET_DIR:-$repo/target}/debug"; do
    if [ -x "$dir/$tool" ]; then printf '%s' "$dir/$tool"; return; fi
  done
  fail "$EXIT_USAGE" "$tool not found: pass --bin-dir or build it (cargo build --release)"
}
trainer=$(find_bin edgewise-train)
cli=$(find_bin edgewise)

[ -n "$server" ] || fail "$EXIT_USAGE" "no control plane: set EDGEWISE_SERVER or pass --server"
export EDGEWISE_SERVER=$server
ew() { "$cli" "$@"; }

if [ -z "$revision" ]; then
  if [ -n "${GITHUB_SHA:-}" ]; then
    revision=$GITHUB_SHA
  elif revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null); then
    if [ -n "$(git -C "$repo" status --porcelain 2>/dev/null)" ]; then revision="$revision-dirty"; fi
  else
    revision=unknown
  fi
fi

if [ -n "$signing_key" ]; then
  [ -r "$signing_key" ] || fail "$EXIT_USAGE" "release key $signing_key cannot be read"
elif [ -n "${EDGEWISE_RELEASE_KEY:-}" ]; then
  # The secret holds the key file's content: write it where only this user can read it.
  key_tmp=$(umask 077 && mktemp "${TMPDIR:-/tmp}/edgewise-release-key.XXXXXX")
  (umask 077 && printf '%s\n' "$EDGEWISE_RELEASE_KEY" >"$key_tmp")
  unset EDGEWISE_RELEASE_KEY
  signing_key=$key_tmp
elif [ -n "$no_deploy" ]; then
  # Nothing is pushed, so a throwaway key will do.
  "$trainer" keygen --out "$work/throwaway" >/dev/null
  key_tmp=$work/throwaway.key
  signing_key=$key_tmp
else
  fail "$EXIT_USAGE" "no release key: set EDGEWISE_RELEASE_KEY (the key file's content) or pass --signing-key FILE"
fi

log "$name from ${model_dir#"$repo"/} at revision $revision"
row model "$name (\`${model_dir#"$repo"/}\`)"
row revision "\`$revision\`"

# --- preflight: what the registry and the group hold ------------------------------------

log "preflight against $server"
ew --json model list >"$work/models.json" 2>"$work/cli.err" ||
  fail "$EXIT_PREFLIGHT" "control plane $server: $(cli_error)"
known=$(json 'print(any(m["name"] == a[0] for m in d))' "$name" <"$work/models.json")
version=1
champion=""
if [ "$known" = True ]; then
  ew --json model show "$name" >"$work/versions.json" 2>"$work/cli.err" ||
    fail "$EXIT_PREFLIGHT" "cannot read the versions of $name: $(cli_error)"
  version=$(json 'print(max(v["version"] for v in d) + 1)' <"$work/versions.json")
  champion=$(json 'print(next((str(v["version"]) for v in d if a[0] in v["aliases"]), ""))' "${cfg[alias]}" <"$work/versions.json")
  info "registered versions: $(json 'print(", ".join(str(v["version"]) for v in d))' <"$work/versions.json"); ${cfg[alias]}: ${champion:-none}"
else
  info "$name is not registered yet"
fi

group=${cfg[group]:-}
target=""
if [ -n "$group" ]; then
  ew --json group list >"$work/groups.json" 2>"$work/cli.err" ||
    fail "$EXIT_PREFLIGHT" "cannot list groups: $(cli_error)"
  group_line=$(json '
g = next((g for g in d if g["name"] == a[0]), None)
print("" if g is None else "%d %d %s" % (len(g["devices"]), g["online"], g.get("target") or "-"))' "$group" <"$work/groups.json")
  if [ -z "$group_line" ]; then
    [ -n "$no_deploy" ] || fail "$EXIT_PREFLIGHT" "group $group has no devices on $server"
    info "group $group has no devices"
  else
    read -r devices online target <<<"$group_line"
    [ "$target" != - ] || target=""
    info "group $group: $devices devices, $online online, running ${target:-nothing yet}"
    if [ -z "$no_deploy" ] && [ -n "$target" ] && [ "${target%:*}" != "$name" ]; then
      fail "$EXIT_PREFLIGHT" "group $group runs $target, not a version of $name; refusing to replace another model"
    fi
    if [ -z "$no_deploy" ] && [ -z "$target" ] && [ "$online" -eq 0 ]; then
      fail "$EXIT_PREFLIGHT" "group $group has no online device to take a first deployment"
    fi
  fi
  ew --json rollout list >"$work/rollouts.json" 2>"$work/cli.err" ||
    fail "$EXIT_PREFLIGHT" "cannot list rollouts: $(cli_error)"
  active=$(json 'print(next((r["id"] + " (" + r["state"] + ")" for r in d
    if r["group"] == a[0] and r["model"] == a[1] and r["state"] in ("running", "paused")), ""))' \
    "$group" "$name" <"$work/rollouts.json")
  if [ -n "$active" ] && [ -z "$no_deploy" ]; then
    fail "$EXIT_PREFLIGHT" "rollout $active of $name to group $group is under way; finish or abort it first"
  fi
fi

# The version to beat: the champion, or failing that the version the group runs.
baseline=$champion
baseline_label="${cfg[alias]}"
if [ -z "$baseline" ] && [ -n "$target" ] && [ "${target%:*}" = "$name" ]; then
  baseline=${target##*:}
  baseline_label="running on $group"
fi

# --- train --------------------------------------------------------------------------------

log "training $name v$version (spec $(basename "$spec"), rows ${cfg[train_rows]}, label ${cfg[label]})"
train_args=(train --data "$data" --label "${cfg[label]}" --spec "$spec" --name "$name"
  --version "$version" --rows "${cfg[train_rows]}" --out "$work/candidate"
  --signing-key "$signing_key" --source-revision "$revision")
[ -z "${cfg[features]:-}" ] || train_args+=(--features "${cfg[features]}")
[ -z "${cfg[epochs]:-}" ] || train_args+=(--epochs "${cfg[epochs]}")
[ -z "${cfg[batch_size]:-}" ] || train_args+=(--batch-size "${cfg[batch_size]}")
[ -z "${cfg[learning_rate]:-}" ] || train_args+=(--lr "${cfg[learning_rate]}")
[ -z "${cfg[seed]:-}" ] || train_args+=(--seed "${cfg[seed]}")
[ -z "${cfg[patience]:-}" ] || train_args+=(--patience "${cfg[patience]}")
[ -z "$baseline" ] || train_args+=(--parent-version "$baseline")
started=$SECONDS
if ! "$trainer" "${train_args[@]}" >"$work/train.log" 2>&1; then
  tail -n 20 "$work/train.log" >&2
  fail "$EXIT_TRAIN" "training failed (log: $work/train.log)"
fi
grep -E '^(test accuracy|macro-F1|validation acc|bundle sha256|signed by)' "$work/train.log" | sed 's/^/    /' || true
info "trained in $((SECONDS - started)) s"
bundle=$work/candidate/$name-v$version.bundle
[ -f "$bundle" ] || fail "$EXIT_TRAIN" "the trainer wrote no $bundle"

# --- evaluate against the champion ---------------------------------------------------------

score() { # BUNDLE → the metric on the held-out rows, as a number
  "$trainer" evaluate --data "$data" --label "${cfg[label]}" --rows "${cfg[holdout_rows]}" "$1" \
    2>>"$work/evaluate.log" | json 'print(d[a[0]])' "${cfg[metric]}"
}
log "evaluating on held-out rows ${cfg[holdout_rows]} (${cfg[metric]})"
candidate_score=$(score "$bundle") || fail "$EXIT_EVALUATE" "cannot score the candidate (log: $work/evaluate.log)"
info "candidate v$version: $candidate_score"
row candidate "v$version: ${cfg[metric]} $(num4 "$candidate_score") on rows ${cfg[holdout_rows]}"
output version "$version"
if [ -n "$baseline" ]; then
  ew model download "$name" "$baseline" --out "$work/champion/$name-v$baseline.bundle" >/dev/null 2>"$work/cli.err" ||
    fail "$EXIT_EVALUATE" "cannot download $name v$baseline: $(cli_error)"
  baseline_score=$(score "$work/champion/$name-v$baseline.bundle") ||
    fail "$EXIT_EVALUATE" "cannot score v$baseline (log: $work/evaluate.log)"
  info "v$baseline ($baseline_label): $baseline_score"
  row "$baseline_label" "v$baseline: ${cfg[metric]} $(num4 "$baseline_score")"
  verdict=$(python3 -c "import sys; c, b, m = map(float, sys.argv[1:]); print('ok' if c >= b - m else 'worse')" \
    "$candidate_score" "$baseline_score" "${cfg[max_regression]}")
  if [ "$verdict" != ok ]; then
    output outcome refused
    fail "$EXIT_REFUSED" "refused: candidate v$version scores $(num4 "$candidate_score"), more than ${cfg[max_regression]} below v$baseline's $(num4 "$baseline_score"); nothing pushed"
  fi
  info "candidate passes: at most ${cfg[max_regression]} below v$baseline"
else
  info "no ${cfg[alias]} to compare with: the candidate goes ahead"
  row "${cfg[alias]}" "none yet"
fi

if [ -n "$no_deploy" ]; then
  outcome="evaluated; not pushed (--no-deploy)"
  output outcome evaluated
  log "done: v$version trained and evaluated, nothing pushed (--no-deploy)"
  exit 0
fi

# --- push -----------------------------------------------------------------------------------

log "pushing $name v$version"
ew --json model push "$bundle" >"$work/push.json" 2>"$work/cli.err" ||
  fail "$EXIT_PUSH" "push refused: $(cli_error)"
info "registered $name v$version, bundle $(json 'print(d.get("bundle_sha256", "?")[:12])' <"$work/push.json")"

# --- deploy -----------------------------------------------------------------------------------

if [ -z "$target" ]; then
  log "group $group runs no version of $name yet: deploying v$version to the whole group"
  if ! ew deploy --group "$group" --model "$name" --version "$version" --wait \
    --timeout "${cfg[deploy_timeout]}" 2>"$work/cli.err"; then
    output outcome deploy-failed
    fail "$EXIT_DEPLOY" "deployment of v$version to $group failed: $(cli_error)"
  fi
  row deployment "v$version deployed to group \`$group\` (first version: no canary)"
else
  log "canary rollout of $name ${target##*:} → $version to group $group: stages ${cfg[stages]}, bake ${cfg[bake]}, on failure ${cfg[on_failure]}"
  rollout_args=(rollout start --group "$group" --model "$name" --version "$version"
    --stages "${cfg[stages]}" --bake "${cfg[bake]}" --on-failure "${cfg[on_failure]}"
    --wait --timeout "${cfg[rollout_timeout]}")
  [ -z "$gates" ] || rollout_args+=(--gates "$gates")
  [ "${cfg[shadow]}" != true ] || rollout_args+=(--shadow)
  # `rollout start --wait` waits for the verdict; meanwhile the audit trail is logged.
  ew --json "${rollout_args[@]}" >"$work/rollout.json" 2>"$work/rollout.err" &
  follower=$!
  rollout_id=""
  shown=0
  follow() {
    if [ -z "$rollout_id" ]; then
      rollout_id=$(ew --json rollout list 2>/dev/null | json 'print(next((r["id"] for r in d
        if r["group"] == a[0] and r["model"] == a[1] and r["version"] == int(a[2])), ""))' \
        "$group" "$name" "$version" 2>/dev/null) || rollout_id=""
      [ -n "$rollout_id" ] || return 0
      info "rollout $rollout_id"
    fi
    ew --json rollout status "$rollout_id" >"$work/rollout-status.json" 2>/dev/null || return 0
    json '
for e in d["audit"][int(a[0]):]:
    print("    %s  %-15s %s" % (e["at"], e["event"], e["detail"]))' "$shown" <"$work/rollout-status.json" || true
    shown=$(json 'print(len(d["audit"]))' <"$work/rollout-status.json" 2>/dev/null || echo "$shown")
  }
  while kill -0 "$follower" 2>/dev/null; do
    follow
    for _ in $(seq 1 "$poll"); do
      kill -0 "$follower" 2>/dev/null || break
      sleep 1
    done
  done
  if wait "$follower"; then wait_status=0; else wait_status=$?; fi
  follower=""
  follow
  if [ -z "$rollout_id" ]; then
    rollout_id=$(json 'print(d["id"])' <"$work/rollout.json" 2>/dev/null) || rollout_id=""
  fi
  if [ -z "$rollout_id" ]; then
    output outcome deploy-failed
    fail "$EXIT_DEPLOY" "the rollout of v$version did not start: $(cli_error rollout.err)"
  fi
  output rollout "$rollout_id"
  # The rollout's own state decides, whatever `--wait` exited with.
  ew --json rollout status "$rollout_id" >"$work/rollout-status.json" 2>"$work/cli.err" ||
    fail "$EXIT_DEPLOY" "cannot read rollout $rollout_id: $(cli_error)"
  state=$(json 'print(d["state"])' <"$work/rollout-status.json")
  reason=$(json 'print(d.get("reason") or "")' <"$work/rollout-status.json")
  info "rollout $rollout_id: $state (\`rollout start --wait\` exited $wait_status)"
  if { [ "$state" = completed ] && [ "$wait_status" -ne 0 ]; } || { [ "$state" != completed ] && [ "$wait_status" -eq 0 ]; }; then
    warn "\`edgewise rollout start --wait\` exited $wait_status for a $state rollout; the rollout's state decides"
  fi
  summary_extra=$(json '
print("| stage | devices | verdict | gates |")
print("|---|---|---|---|")
for s in d["stage_results"]:
    gates = "<br>".join("%s: **%s** %s" % (g["name"], g["verdict"], g["detail"]) for g in s["gates"])
    print("| %d%% | %d | %s | %s |" % (s["percent"], len(s["devices"]), s.get("verdict") or "pending",
                                     (gates or "-").replace("|", "\\|")))' <"$work/rollout-status.json")
  ew rollout status "$rollout_id" 2>/dev/null | sed 's/^/    /' || true
  row deployment "canary rollout \`$rollout_id\` of v${target##*:} → v$version to group \`$group\` (stages ${cfg[stages]}, bake ${cfg[bake]}): **$state**${reason:+ — $reason}"
  output outcome "$state"
  case $state in
    completed) ;;
    rolled_back) fail "$EXIT_HALTED" "rollout $rollout_id halted and rolled back: ${reason:-no reason given}" ;;
    paused) fail "$EXIT_HALTED" "rollout $rollout_id halted and is paused: ${reason:-no reason given} (edgewise rollout resume|abort $rollout_id)" ;;
    running) fail "$EXIT_TIMEOUT" "rollout $rollout_id still running after ${cfg[rollout_timeout]}; left running (the ${cfg[alias]} alias was not moved)" ;;
    *) fail "$EXIT_DEPLOY" "rollout $rollout_id ended in an unknown state $state" ;;
  esac
fi

# --- the champion alias -------------------------------------------------------------------------

log "moving alias ${cfg[alias]} to v$version"
ew model alias set "$name" "${cfg[alias]}" "$version" >/dev/null 2>"$work/cli.err" ||
  fail "$EXIT_ALIAS" "group $group runs v$version, but the alias ${cfg[alias]} could not be moved: $(cli_error)"
outcome="v$version serves group \`$group\` and is the ${cfg[alias]}"
output outcome deployed
log "done: $name v$version is the ${cfg[alias]} and runs on group $group"
