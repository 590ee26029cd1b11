#!/usr/bin/env bash
# Offline checks of deployment/ and infrastructure/: nothing here talks to a cluster, a
# cloud account or the network.
#
#   deployment/validate.sh [PART...]      PART: shell systemd kubernetes containers
#                                               install terraform (default: all)
#
# Tools: checkov and kubernetes-validate (PyPI), found in $EDGEWISE_TOOLS_VENV/bin
# (default /var/cache/edgewise/tools) or on PATH; kubectl or kustomize; shellcheck;
# optional: systemd-analyze, terraform. A missing required tool fails its check; set
# EDGEWISE_VALIDATE_ALLOW_MISSING=1 to report it as skipped instead. Install the Python
# tools apart from the system's packages:
#   python3 -m venv /var/cache/edgewise/tools
#   /var/cache/edgewise/tools/bin/pip install checkov kubernetes-validate
#
# terraform validate needs the AWS provider: from a filesystem mirror
# ($EDGEWISE_TF_PLUGIN_MIRROR, default /opt/tf-plugins, laid out as
# registry.terraform.io/hashicorp/aws/VERSION/OS_ARCH) or, with
# EDGEWISE_TF_ONLINE=1, from the registry.
#
# Exit status: 0 when every check passed (or was skipped), 1 otherwise.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly DEPLOY="${ROOT}/deployment"
readonly K8S="${DEPLOY}/kubernetes"
readonly TF_DIR="${ROOT}/infrastructure/terraform"
readonly TOOLS_VENV="${EDGEWISE_TOOLS_VENV:-/var/cache/edgewise/tools}"
readonly ALLOW_MISSING="${EDGEWISE_VALIDATE_ALLOW_MISSING:-0}"
readonly TF_PLUGIN_MIRROR="${EDGEWISE_TF_PLUGIN_MIRROR:-/opt/tf-plugins}"
# Oldest Kubernetes the manifests target (mixed-protocol LoadBalancer: 1.26+), and the
# newest kubernetes-validate knows.
readonly K8S_VERSIONS=(1.29.0 latest)
# systemd-analyze security: fail above this exposure level, in tenths (20 = 2.0 on the
# 0.0 best to 10.0 worst scale it prints; --threshold takes the integer).
readonly SYSTEMD_EXPOSURE_MAX=20

WORK="$(mktemp -d)"
readonly WORK
trap 'rm -rf -- "${WORK}"' EXIT

declare -a RESULTS=()
failed=0

result() { # STATUS NAME DETAIL
    RESULTS+=("$(printf '%-5s %-44s %s' "$1" "$2" "$3")")
    [[ "$1" != FAIL ]] || failed=1
    printf '==> %s: %s %s\n' "$1" "$2" "$3"
}

section() { printf '\n### %s\n' "$*"; }

# Finds a tool in the tools venv, then on PATH; prints its path.
tool() {
    if [[ -x "${TOOLS_VENV}/bin/$1" ]]; then
        printf '%s\n' "${TOOLS_VENV}/bin/$1"
    elif command -v "$1" >/dev/null 2>&1; then
        command -v "$1"
    else
        return 1
    fi
}

missing() { # NAME WHAT
    if [[ "${ALLOW_MISSING}" == 1 ]]; then
        result SKIP "$1" "($2 not found)"
    else
        result FAIL "$1" "($2 not found; see the header of deployment/validate.sh)"
    fi
}

# Python with PyYAML and jsonschema (both come with checkov and kubernetes-validate).
python_with_jsonschema() {
    local candidate
    for candidate in "${TOOLS_VENV}/bin/python" python3; do
        if command -v "${candidate}" >/dev/null 2>&1 &&
            "${candidate}" -c 'import jsonschema, yaml' 2>/dev/null; then
            printf '%s\n' "${candidate}"
            return 0
        fi
    done
    return 1
}

# Runs checkov with NAME ARGS...; prints failures and the counts; records the result.
run_checkov() {
    local name="$1" out="${WORK}/checkov-$1" checkov summary
    shift
    checkov="$(tool checkov)" || { missing "checkov ${name}" checkov; return 0; }
    printf '$ checkov --skip-download %s\n' "$*"
    # Its exit status is not used: the JSON report decides (it also catches a scan that
    # found nothing to check). Failures and skips (with their reasons) are listed.
    "${checkov}" --skip-download --compact -o json --output-file-path "${out}" "$@" \
        >/dev/null 2>"${out}.log" || true
    if ! summary="$("${PYTHON}" - "${out}/results_json.json" <<'PY'
import json, sys
try:
    data = json.load(open(sys.argv[1]))
except (OSError, ValueError) as error:
    print("no report (%s)" % error)
    sys.exit(1)
# One report, a list with one per framework, or {} when nothing was scanned.
reports = data if isinstance(data, list) else [data]
passed = failed = skipped = errors = 0
for report in reports:
    s = report.get("summary", {})
    passed += s.get("passed", 0); failed += s.get("failed", 0)
    skipped += s.get("skipped", 0); errors += s.get("parsing_errors", 0)
    results = report.get("results", {})
    for check in results.get("failed_checks", []):
        print("    FAILED  %s %s\n            %s (%s:%s)" % (check["check_id"], check["check_name"],
              check["resource"], check["file_path"], "-".join(map(str, check.get("file_line_range", [])))),
              file=sys.stderr)
    for check in results.get("skipped_checks", []):
        print("    skipped %s on %s: %s" % (check["check_id"], check["resource"],
              check["check_result"].get("suppress_comment", "")), file=sys.stderr)
print("%d passed, %d failed, %d skipped, %d parsing errors" % (passed, failed, skipped, errors))
sys.exit(1 if failed or errors or passed == 0 else 0)
PY
    )"; then
        sed 's/^/    /' "${out}.log" | tail -n 20
        result FAIL "checkov ${name}" "${summary:-no results}"
    else
        result PASS "checkov ${name}" "${summary}"
    fi
}

want() { # PART: whether this run includes it
    [[ ${#PARTS[@]} -eq 0 ]] && return 0
    local part
    for part in "${PARTS[@]}"; do [[ "${part}" == "$1" ]] && return 0; done
    return 1
}

PARTS=("$@")
for part in "${PARTS[@]}"; do
    case "${part}" in
        shell | systemd | kubernetes | containers | install | terraform) ;;
        *) printf 'validate: unknown part %s\n' "${part}" >&2; exit 2 ;;
    esac
done

PYTHON="$(python_with_jsonschema)" || PYTHON=python3

# --- Shell scripts ---------------------------------------------------------------------
if want shell; then
    section "Shell scripts"
    scripts=("${DEPLOY}/install-node.sh" "${DEPLOY}/validate.sh")
    for script in "${scripts[@]}"; do
        bash -n "${script}" || result FAIL "bash -n $(basename "${script}")" "syntax error"
    done
    if sc="$(tool shellcheck)"; then
        printf '$ shellcheck --severity=style %s\n' "${scripts[*]#"${ROOT}/"}"
        if "${sc}" --severity=style "${scripts[@]}"; then
            result PASS "shellcheck" "install-node.sh validate.sh"
        else
            result FAIL "shellcheck" "install-node.sh validate.sh"
        fi
    else
        missing "shellcheck" shellcheck
    fi
fi

# --- systemd units ---------------------------------------------------------------------
if want systemd; then
    section "systemd units"
    if sa="$(tool systemd-analyze)"; then
        # verify wants ExecStart's binary to exist: point the units at a stub.
        units="${WORK}/units"
        mkdir -p "${units}/edgewise-runtime.service.d" "${WORK}/bin"
        for binary in edgewise edgewise-runtime edgewise-train; do
            printf '#!/bin/sh\n' >"${WORK}/bin/${binary}"
            chmod +x "${WORK}/bin/${binary}"
        done
        for unit in edgewise-runtime.service edgewise-control-plane.service; do
            sed "s#/usr/local/bin/#${WORK}/bin/#g" "${DEPLOY}/systemd/${unit}" >"${units}/${unit}"
        done
        cp "${DEPLOY}/systemd/gpu.conf" "${units}/edgewise-runtime.service.d/gpu.conf"
        for unit in edgewise-runtime.service edgewise-control-plane.service; do
            # verify exits 0 on mere warnings (an unknown key, a bad assignment), so any
            # output counts as a failure.
            printf '$ systemd-analyze verify %s\n' "${unit}"
            if output="$("${sa}" verify "${units}/${unit}" 2>&1)" && [[ -z "${output}" ]]; then
                result PASS "systemd-analyze verify ${unit}" ""
            else
                printf '%s\n' "${output}"
                result FAIL "systemd-analyze verify ${unit}" "see output above"
            fi
        done
        # Exposure of the CPU profile (without gpu.conf) and of the GPU profile.
        mkdir -p "${units}/cpu"
        cp "${units}/edgewise-runtime.service" "${units}/edgewise-control-plane.service" "${units}/cpu/"
        for target in cpu/edgewise-runtime.service edgewise-runtime.service cpu/edgewise-control-plane.service; do
            label="${target%.service}"
            [[ "${target}" == cpu/* ]] || label="${label} (gpu.conf)"
            label="${label#cpu/}"
            if output="$("${sa}" security --offline=true --no-pager \
                --threshold="${SYSTEMD_EXPOSURE_MAX}" "${units}/${target}" 2>&1)"; then
                status=PASS
            else
                status=FAIL
            fi
            score="$(printf '%s\n' "${output}" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')"
            if [[ "${status}" == FAIL ]]; then printf '%s\n' "${output}"; fi
            result "${status}" "systemd-analyze security ${label}" "${score:-no score} (fails above $((SYSTEMD_EXPOSURE_MAX / 10)).$((SYSTEMD_EXPOSURE_MAX % 10)))"
        done
    else
        result SKIP "systemd-analyze" "(not installed)"
    fi
fi

# --- Kubernetes ------------------------------------------------------------------------
if want kubernetes; then
    section "Kubernetes manifests"
    rendered="${WORK}/rendered"
    mkdir -p "${rendered}"
    render=""
    if kubectl="$(tool kubectl)"; then
        render="${kubectl} kustomize"
    elif kustomize="$(tool kustomize)"; then
        render="${kustomize} build"
    fi
    if [[ -z "${render}" ]]; then
        # Without kustomize the source manifests are checked as written: the base's
        # files, and the KEDA overlay's ScaledObject in place of the base's HPA.
        result SKIP "kustomize build" "(kubectl or kustomize not found; the source manifests are validated as they are)"
        for file in "${K8S}"/base/*.yaml; do
            [[ "$(basename "${file}")" == kustomization.yaml ]] && continue
            cat "${file}" >>"${rendered}/base.yaml"
            printf '\n---\n' >>"${rendered}/base.yaml"
            [[ "$(basename "${file}")" == inference-hpa.yaml ]] && continue
            cat "${file}" >>"${rendered}/overlays-keda.yaml"
            printf '\n---\n' >>"${rendered}/overlays-keda.yaml"
        done
        cat "${K8S}/overlays/keda/scaledobject.yaml" >>"${rendered}/overlays-keda.yaml"
    else
        for overlay in base overlays/keda; do
            name="${overlay//\//-}"
            printf '$ %s deployment/kubernetes/%s\n' "${render}" "${overlay}"
            # shellcheck disable=SC2086 # "kubectl kustomize" is two words on purpose
            if ${render} "${K8S}/${overlay}" >"${rendered}/${name}.yaml"; then
                result PASS "kustomize build ${overlay}" "$(grep -c '^kind:' "${rendered}/${name}.yaml") objects"
            else
                result FAIL "kustomize build ${overlay}" ""
            fi
        done

        # kubernetes-validate has no schema for custom resources and only warns about
        # them, so it gets the built-in kinds alone (core/), and every custom kind is
        # checked against its schema in schemas/ below.
        mkdir -p "${rendered}/core"
        "${PYTHON}" - "${rendered}" <<'PY'
import glob, os, sys, yaml
folder = sys.argv[1]
for path in glob.glob(os.path.join(folder, "*.yaml")):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    group = lambda d: d["apiVersion"].rpartition("/")[0]
    core = [d for d in docs if "." not in group(d) or group(d).endswith(".k8s.io")]
    out = os.path.join(folder, "core", os.path.basename(path))
    yaml.safe_dump_all(core, open(out, "w"), sort_keys=False)
PY
        if kv="$(tool kubernetes-validate)"; then
            latest="$("${kv}" --help | sed -n 's/.*Defaults to \([0-9.]*\).*/\1/p')"
            for file in "${rendered}"/core/*.yaml; do
                name="$(basename "${file}" .yaml)"
                args=()
                for version in "${K8S_VERSIONS[@]}"; do
                    [[ "${version}" == latest ]] || args+=(-k "${version}")
                done
                [[ " ${K8S_VERSIONS[*]} " != *" latest "* ]] || args+=(-k "${latest}")
                printf '$ kubernetes-validate --strict %s %s\n' "${args[*]}" "${name} (built-in kinds)"
                output="$("${kv}" --strict "${args[@]}" "${file}" 2>&1)" && rc=0 || rc=$?
                printf '%s\n' "${output}" | grep -v '^INFO' || true
                passed_count="$(printf '%s\n' "${output}" | grep -c '^INFO' || true)"
                # An object without a schema only warns; here that is a failure.
                if [[ "${rc}" -eq 0 ]] && ! printf '%s\n' "${output}" | grep -q '^WARN'; then
                    result PASS "kubernetes-validate --strict ${name}" "${passed_count} object/version checks passed"
                else
                    result FAIL "kubernetes-validate --strict ${name}" "see output above"
                fi
            done
        else
            missing "kubernetes-validate" kubernetes-validate
        fi

        printf '$ jsonschema: custom resources against deployment/kubernetes/schemas/\n'
        if output="$("${PYTHON}" - "${K8S}/schemas" "${rendered}"/*.yaml <<'PY' 2>&1
import json, os, sys
import jsonschema, yaml
schema_dir, files = sys.argv[1], sys.argv[2:]
failed = checked = 0
for path in files:
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for doc in docs:
        group, _, version = doc["apiVersion"].rpartition("/")
        if "." not in group or group.endswith(".k8s.io"):
            continue  # a built-in kind: kubernetes-validate's job
        schema_path = os.path.join(schema_dir, "%s_%s_%s.json" % (group, version, doc["kind"].lower()))
        label = "%s %s/%s" % (os.path.basename(path), doc["kind"], doc["metadata"]["name"])
        checked += 1
        if not os.path.exists(schema_path):
            print("FAIL %s: no schema %s" % (label, os.path.basename(schema_path))); failed += 1; continue
        schema = json.load(open(schema_path))
        jsonschema.Draft202012Validator.check_schema(schema)
        errors = [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)]
        spec = doc.get("spec", {})
        if doc["kind"] == "ScaledObject" and not errors:
            target = spec["scaleTargetRef"]
            kind = target.get("kind", "Deployment")
            if (kind, target["name"]) not in names:
                errors.append("scaleTargetRef %s/%s is not in the same build" % (kind, target["name"]))
            if spec.get("minReplicaCount", 0) > spec.get("maxReplicaCount", 100):
                errors.append("minReplicaCount is above maxReplicaCount")
            if any(d["kind"] == "HorizontalPodAutoscaler" and d["spec"]["scaleTargetRef"]["name"] == target["name"] for d in docs):
                errors.append("an HPA already scales %s; KEDA's own HPA would fight it" % target["name"])
        for error in errors:
            print("FAIL %s: %s" % (label, error)); failed += 1
        if not errors:
            print("ok   %s against %s" % (label, os.path.basename(schema_path)))
print("%d custom resources checked, %d problems" % (checked, failed))
sys.exit(1 if failed else 0)
PY
        )"; then
            printf '%s\n' "${output}"
            result PASS "custom resources vs schemas/" "$(printf '%s\n' "${output}" | tail -n1)"
        else
            printf '%s\n' "${output}"
            result FAIL "custom resources vs schemas/" "see output above"
        fi

        run_checkov kubernetes-source -d "${K8S}" --framework kubernetes
        run_checkov kubernetes-rendered -d "${rendered}" --skip-path core --framework kubernetes
    fi
fi

# --- Containerfiles --------------------------------------------------------------------
if want containers; then
    section "Containerfiles"
    # checkov recognises only file names containing "Dockerfile": scan copies named so.
    # Inline #checkov:skip comments travel with the text.
    files=()
    for containerfile in "${DEPLOY}"/containers/*/Containerfile; do
        image="$(basename "$(dirname "${containerfile}")")"
        mkdir -p "${WORK}/containers/${image}"
        cp "${containerfile}" "${WORK}/containers/${image}/Dockerfile"
        files+=("${WORK}/containers/${image}/Dockerfile")
    done
    run_checkov dockerfile --framework dockerfile -f "${files[@]}"
fi

# --- install-node.sh in a staging tree ---------------------------------------------------
if want install; then
    section "install-node.sh (staging tree)"
    stage="${WORK}/stage"
    mkdir -p "${stage}/root"
    printf '#!/bin/sh\necho edgewise-runtime 0.0.0\n' >"${stage}/edgewise-runtime"
    printf 'device_id = "validate-1"\n\n[mqtt]\nurl = "mqtt://127.0.0.1:1883"\n' >"${stage}/node.toml"
    sum="$(sha256sum "${stage}/edgewise-runtime" | cut -d' ' -f1)"
    install_args=(--binary "file://${stage}/edgewise-runtime" --sha256 "${sum}"
        --config "${stage}/node.toml" --root "${stage}/root" --gpu)
    first="$("${DEPLOY}/install-node.sh" "${install_args[@]}" 2>&1)" && rc1=0 || rc1=$?
    second="$("${DEPLOY}/install-node.sh" "${install_args[@]}" 2>&1)" && rc2=0 || rc2=$?
    bad="$("${DEPLOY}/install-node.sh" --binary "${stage}/edgewise-runtime" --sha256 "$(printf '0%.0s' {1..64})" \
        --config "${stage}/node.toml" --root "${stage}/root" 2>&1)" && rc3=0 || rc3=$?
    modes="$(cd "${stage}/root" &&
        { stat -c '%a %n' usr/local/bin/edgewise-runtime etc/edgewise etc/edgewise/node.toml \
            etc/systemd/system/edgewise-runtime.service \
            etc/systemd/system/edgewise-runtime.service.d/gpu.conf 2>&1 || true; })"
    expected=$'755 usr/local/bin/edgewise-runtime\n750 etc/edgewise\n640 etc/edgewise/node.toml\n644 etc/systemd/system/edgewise-runtime.service\n644 etc/systemd/system/edgewise-runtime.service.d/gpu.conf'
    if [[ "${rc1}" -eq 0 && "${rc2}" -eq 0 && "${rc3}" -ne 0 && "${modes}" == "${expected}" ]] &&
        grep -q 'everything was already in place' <<<"${second}" &&
        grep -q 'SHA-256 mismatch' <<<"${bad}"; then
        result PASS "install-node.sh" "installs, is idempotent, refuses a wrong SHA-256"
    else
        printf '%s\n--- second run:\n%s\n--- wrong checksum:\n%s\n--- modes:\n%s\n' "${first}" "${second}" "${bad}" "${modes}"
        result FAIL "install-node.sh" "see output above"
    fi
fi

# --- Terraform -------------------------------------------------------------------------
if want terraform; then
    section "Terraform (infrastructure/terraform)"
    if tf="$(tool terraform)"; then
        printf '$ terraform fmt -check -recursive infrastructure/terraform\n'
        if "${tf}" fmt -check -recursive "${TF_DIR}"; then
            result PASS "terraform fmt" ""
        else
            result FAIL "terraform fmt" "run terraform fmt -recursive infrastructure/terraform"
        fi
        # init writes .terraform/ and a lock file: work on a copy. The module reads the
        # control plane unit from deployment/systemd, so copy that too.
        copy="${WORK}/tf"
        mkdir -p "${copy}/infrastructure" "${copy}/deployment"
        cp -r "${TF_DIR}" "${copy}/infrastructure/"
        cp -r "${DEPLOY}/systemd" "${copy}/deployment/"
        if [[ -d "${TF_PLUGIN_MIRROR}" ]]; then
            cat >"${WORK}/terraformrc" <<EOF
provider_installation {
  filesystem_mirror {
    path = "${TF_PLUGIN_MIRROR}"
  }
}
EOF
            export TF_CLI_CONFIG_FILE="${WORK}/terraformrc"
            can_init=1
        elif [[ "${EDGEWISE_TF_ONLINE:-0}" == 1 ]]; then
            can_init=1
        else
            can_init=0
        fi
        if [[ "${can_init}" -eq 1 ]]; then
            printf '$ terraform init -backend=false && terraform validate\n'
            if (cd "${copy}/infrastructure/terraform" &&
                "${tf}" init -backend=false -input=false -no-color >"${WORK}/tf-init.log" 2>&1 &&
                "${tf}" validate -no-color); then
                result PASS "terraform validate" "$(sed -n 's/.*Installed \(hashicorp\/aws v[0-9.]*\).*/\1/p' "${WORK}/tf-init.log" | head -n1)"
            else
                cat "${WORK}/tf-init.log"
                result FAIL "terraform validate" "see output above"
            fi
            # The instance's boot script, rendered with sample values, through shellcheck.
            if sc="$(tool shellcheck)"; then
                cp "${TF_DIR}/terraform.tfvars.example" "${copy}/infrastructure/terraform/terraform.tfvars"
                expr='jsonencode(templatefile("templates/control-plane-user-data.sh.tftpl", { region = "eu-west-1", bucket = "b", release_prefix = "releases/edgewise/", version = "0.1.0", platform = "linux-x86_64", edgewise_sha256 = "0", edgewise_train_sha256 = "0", data_volume_id = "vol-0", unit_b64 = "", release_keys_b64 = ["e30="], advertise_host = "h", serve_args = "--artifact-store s3://b/p", mqtt_secret_arn = "arn:aws:secretsmanager:eu-west-1:0:secret:s" }))'
                if (cd "${copy}/infrastructure/terraform" && printf '%s\n' "${expr}" | "${tf}" console -no-color) \
                    >"${WORK}/user-data.json" 2>&1 &&
                    "${PYTHON}" -c 'import json,sys; print(json.loads(json.loads(open(sys.argv[1]).read())), end="")' \
                        "${WORK}/user-data.json" >"${WORK}/user-data.sh" &&
                    "${sc}" --severity=style "${WORK}/user-data.sh"; then
                    result PASS "shellcheck user data (rendered)" "templates/control-plane-user-data.sh.tftpl"
                else
                    cat "${WORK}/user-data.json" 2>/dev/null || true
                    result FAIL "shellcheck user data (rendered)" "see output above"
                fi
            fi
        else
            result SKIP "terraform validate" "(no provider mirror at ${TF_PLUGIN_MIRROR}; EDGEWISE_TF_ONLINE=1 to use the registry)"
        fi
    else
        result SKIP "terraform fmt/validate" "(terraform not installed)"
    fi
    run_checkov terraform -d "${TF_DIR}" --framework terraform
fi

section "Summary"
printf '%s\n' "${RESULTS[@]}"
if [[ "${failed}" -ne 0 ]]; then
    printf '\nvalidate: FAILED\n'
    exit 1
fi
printf '\nvalidate: all checks passed\n'
