#!/usr/bin/env bash
# Installs the Edgewise node agent (edgewise-runtime) as a systemd service.
#
#   sudo deployment/install-node.sh --binary https://releases.example.com/edgewise-runtime \
#        --sha256 <64 hex digits> --config shop-1.toml [--gpu]
#
# Steps, each skipped when already done, so the script can be run again to upgrade the
# binary or replace the node config:
#   1. fetch the binary (path or https:// / file:// URL) and check its SHA-256
#   2. create the system user and group `edgewise`
#   3. install the binary as PREFIX/bin/edgewise-runtime
#   4. install the node config as /etc/edgewise/node.toml (root:edgewise, 0640)
#   5. install the unit (and the GPU drop-in with --gpu), reload systemd, enable the
#      service, and restart it if anything changed
#
# --root DIR installs into a staging tree instead of / (no user, no systemctl), and
# --dry-run only prints what would change; neither needs root.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly SERVICE=edgewise-runtime.service
readonly SERVICE_USER=edgewise

binary=""
sha256=""
config=""
env_file=""
prefix=/usr/local
root=""
gpu=0
dry_run=0
enable=1
start=1
unit_src="${SCRIPT_DIR}/systemd/${SERVICE}"
gpu_src="${SCRIPT_DIR}/systemd/gpu.conf"
changed=0
workdir=""

usage() {
    cat <<'EOF'
Usage: install-node.sh --binary PATH|URL --config NODE.toml [options]

  --binary PATH|URL   edgewise-runtime to install: a local file, or an https:// or
                      file:// URL (a URL needs --sha256)
  --sha256 HEX        expected SHA-256 of the binary (checked before anything is
                      installed; strongly advised for local files too)
  --config FILE       node config written by `edgewise device add` (it holds the
                      device's password; it is installed 0640 root:edgewise)
  --env FILE          optional settings installed as /etc/edgewise/runtime.env
                      (see systemd/runtime.env.example)
  --gpu               also install the GPU drop-in (systemd/gpu.conf) and add the
                      service user to the render/video groups that exist
  --prefix DIR        install prefix of the binary (default /usr/local)
  --root DIR          install into a staging tree below DIR; skips user creation
                      and systemctl, and does not need root
  --unit FILE         unit file to install (default: systemd/edgewise-runtime.service
                      beside this script)
  --no-enable         install only; do not enable or (re)start the service
  --no-start          enable, but do not (re)start the service
  --dry-run           print what would be done and change nothing
  -h, --help          this text
EOF
}

log() { printf 'install-node: %s\n' "$*"; }
die() { printf 'install-node: error: %s\n' "$*" >&2; exit 1; }

# Runs a command, or only prints it with --dry-run.
run() {
    if [[ "${dry_run}" -eq 1 ]]; then
        printf 'install-node: would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

cleanup() {
    if [[ -n "${workdir}" && -d "${workdir}" ]]; then
        rm -rf -- "${workdir}"
    fi
}
trap cleanup EXIT

need_arg() {
    [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) need_arg "$@"; binary="$2"; shift 2 ;;
        --sha256) need_arg "$@"; sha256="$2"; shift 2 ;;
        --config) need_arg "$@"; config="$2"; shift 2 ;;
        --env) need_arg "$@"; env_file="$2"; shift 2 ;;
        --prefix) need_arg "$@"; prefix="$2"; shift 2 ;;
        --root) need_arg "$@"; root="$2"; shift 2 ;;
        --unit) need_arg "$@"; unit_src="$2"; shift 2 ;;
        --gpu) gpu=1; shift ;;
        --no-enable) enable=0; start=0; shift ;;
        --no-start) start=0; shift ;;
        --dry-run) dry_run=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done

# --- Checks before anything changes ------------------------------------------------

[[ -n "${binary}" ]] || { usage >&2; die "--binary is required"; }
[[ -n "${config}" ]] || { usage >&2; die "--config is required"; }
[[ -f "${config}" ]] || die "node config ${config} does not exist"
[[ -f "${unit_src}" ]] || die "unit file ${unit_src} does not exist"
[[ "${gpu}" -eq 0 || -f "${gpu_src}" ]] || die "GPU drop-in ${gpu_src} does not exist"
[[ -z "${env_file}" || -f "${env_file}" ]] || die "env file ${env_file} does not exist"
[[ "${prefix}" =~ ^/[A-Za-z0-9._/-]*$ ]] ||
    die "--prefix must be an absolute path of letters, digits and . _ - /"
if [[ -n "${sha256}" ]]; then
    sha256="${sha256,,}"
    [[ "${sha256}" =~ ^[0-9a-f]{64}$ ]] || die "--sha256 must be 64 hex digits"
fi
# A node config always names its device; catching a wrong file here beats a service
# that restarts forever.
grep -Eq '^[[:space:]]*device_id[[:space:]]*=' "${config}" ||
    die "${config} is not a node config (no device_id); write one with 'edgewise device add'"

staging=0
if [[ -n "${root}" ]]; then
    staging=1
    root="$(cd "${root}" 2>/dev/null && pwd)" || die "--root ${root} must be an existing directory"
fi
if [[ "${staging}" -eq 0 && "${dry_run}" -eq 0 && "${EUID}" -ne 0 ]]; then
    die "run as root, or use --root DIR (staging tree) or --dry-run"
fi

readonly dest_bin="${root}${prefix}/bin/edgewise-runtime"
readonly conf_dir="${root}/etc/edgewise"
readonly unit_dir="${root}/etc/systemd/system"
readonly dropin_dir="${unit_dir}/${SERVICE}.d"

sha256_of() { sha256sum -- "$1" | cut -d' ' -f1; }

# Installs SRC as DEST with MODE (and OWNER:GROUP when installing for real) unless DEST
# already has the same bytes and mode.
install_file() {
    local src="$1" dest="$2" mode="$3" owner="${4:-root}" group="${5:-root}"
    local current_mode=""
    if [[ -f "${dest}" ]]; then
        current_mode="$(stat -c '%a' -- "${dest}")"
    fi
    if [[ "${current_mode}" == "${mode#0}" ]] && cmp -s -- "${src}" "${dest}"; then
        log "unchanged ${dest}"
        return 0
    fi
    log "installing ${dest}"
    changed=1
    if [[ "${staging}" -eq 1 ]]; then
        run install -D -m "${mode}" -- "${src}" "${dest}"
    else
        run install -D -m "${mode}" -o "${owner}" -g "${group}" -- "${src}" "${dest}"
    fi
}

# --- 1. The binary -------------------------------------------------------------------

workdir="$(mktemp -d)"
case "${binary}" in
    https://* | file://*)
        [[ -n "${sha256}" ]] || die "a URL needs --sha256"
        command -v curl >/dev/null || die "curl is needed to download ${binary}"
        log "downloading ${binary}"
        # --proto keeps redirects on https (or file) too.
        curl --fail --silent --show-error --location --proto '=https,file' \
            --retry 3 --output "${workdir}/edgewise-runtime" -- "${binary}"
        binary_file="${workdir}/edgewise-runtime"
        ;;
    *://*)
        die "only https:// and file:// URLs are accepted: ${binary}"
        ;;
    *)
        [[ -f "${binary}" ]] || die "binary ${binary} does not exist"
        binary_file="${binary}"
        ;;
esac
actual="$(sha256_of "${binary_file}")"
if [[ -n "${sha256}" ]]; then
    [[ "${actual}" == "${sha256}" ]] ||
        die "SHA-256 mismatch for ${binary}: expected ${sha256}, got ${actual}"
    log "SHA-256 verified (${actual})"
else
    log "warning: no --sha256 given; installing ${binary} with SHA-256 ${actual}"
fi
if [[ ! -x "${binary_file}" ]]; then
    # A download (or a copied file) has no execute bit yet.
    cp -- "${binary_file}" "${workdir}/edgewise-runtime.x"
    binary_file="${workdir}/edgewise-runtime.x"
    chmod 0755 -- "${binary_file}"
fi
if [[ "${staging}" -eq 0 ]]; then
    # Catches a binary for another architecture before the service does.
    "${binary_file}" --version >/dev/null 2>&1 ||
        die "${binary} does not run on this machine ('--version' failed)"
fi

# --- 2. The service user -------------------------------------------------------------

if [[ "${staging}" -eq 1 ]]; then
    log "staging tree: not creating user ${SERVICE_USER}"
elif getent passwd "${SERVICE_USER}" >/dev/null; then
    log "user ${SERVICE_USER} exists"
else
    log "creating system user ${SERVICE_USER}"
    changed=1
    nologin="$(command -v nologin || echo /usr/sbin/nologin)"
    run useradd --system --user-group --no-create-home --home-dir /var/lib/edgewise \
        --shell "${nologin}" --comment "Edgewise node agent" "${SERVICE_USER}"
fi
if [[ "${gpu}" -eq 1 && "${staging}" -eq 0 ]]; then
    # /dev/dri/renderD* belongs to group render (video on some distributions).
    for group in render video; do
        if getent group "${group}" >/dev/null &&
            ! id -nG "${SERVICE_USER}" 2>/dev/null | tr ' ' '\n' | grep -qx "${group}"; then
            log "adding ${SERVICE_USER} to group ${group}"
            changed=1
            run usermod --append --groups "${group}" "${SERVICE_USER}"
        fi
    done
fi

# --- 3. Binary, 4. config ------------------------------------------------------------

install_file "${binary_file}" "${dest_bin}" 0755

if [[ ! -d "${conf_dir}" ]]; then
    log "creating ${conf_dir}"
    if [[ "${staging}" -eq 1 ]]; then
        run install -d -m 0750 -- "${conf_dir}"
    else
        run install -d -m 0750 -o root -g "${SERVICE_USER}" -- "${conf_dir}"
    fi
fi
install_file "${config}" "${conf_dir}/node.toml" 0640 root "${SERVICE_USER}"
if [[ -n "${env_file}" ]]; then
    install_file "${env_file}" "${conf_dir}/runtime.env" 0640 root "${SERVICE_USER}"
fi

# --- 5. Unit -------------------------------------------------------------------------

unit_tmp="${workdir}/${SERVICE}"
# The unit names /usr/local/bin; follow --prefix.
sed "s#/usr/local/bin/edgewise-runtime#${prefix}/bin/edgewise-runtime#" \
    -- "${unit_src}" >"${unit_tmp}"
install_file "${unit_tmp}" "${unit_dir}/${SERVICE}" 0644
if [[ "${gpu}" -eq 1 ]]; then
    install_file "${gpu_src}" "${dropin_dir}/gpu.conf" 0644
elif [[ -f "${dropin_dir}/gpu.conf" ]]; then
    log "removing ${dropin_dir}/gpu.conf (installed without --gpu)"
    changed=1
    run rm -f -- "${dropin_dir}/gpu.conf"
fi

if [[ "${staging}" -eq 1 ]]; then
    log "staging tree: not running systemctl"
elif [[ "${enable}" -eq 1 ]]; then
    run systemctl daemon-reload
    run systemctl enable "${SERVICE}"
    if [[ "${start}" -eq 0 ]]; then
        log "not starting ${SERVICE} (--no-start)"
    elif [[ "${changed}" -eq 1 ]] || ! systemctl is-active --quiet "${SERVICE}"; then
        run systemctl restart "${SERVICE}"
    else
        log "${SERVICE} is running and nothing changed"
    fi
fi

if [[ "${dry_run}" -eq 1 ]]; then
    log "dry run: nothing was changed"
elif [[ "${changed}" -eq 1 ]]; then
    log "done"
else
    log "done: everything was already in place"
fi
