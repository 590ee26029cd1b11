//! The delivery files, checked offline with the tools their ecosystems use: the GitHub
//! workflows with actionlint (which runs shellcheck on their `run:` scripts), every
//! shell script with shellcheck, and `deployment/` and `infrastructure/` with
//! `deployment/validate.sh` (kubernetes-validate --strict, checkov, systemd-analyze, …).
//! The Python tools live in their own virtual environment, `$EDGEWISE_TOOLS_VENV`
//! (default /var/cache/edgewise/tools), as `.ci/run` installs them. Where a tool is
//! missing the test is skipped, unless `EDGEWISE_REQUIRE_DELIVERY_TOOLS` is set.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn required() -> bool {
    std::env::var_os("EDGEWISE_REQUIRE_DELIVERY_TOOLS").is_some()
}

/// `name` from the tools' virtual environment, else from PATH.
fn tool(name: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("EDGEWISE_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/edgewise/tools"));
    let candidates = std::iter::once(venv.join("bin").join(name)).chain(
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(name))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    let found = candidates.into_iter().find(|path| path.is_file());
    if found.is_none() {
        assert!(
            !required(),
            "{name} is missing and EDGEWISE_REQUIRE_DELIVERY_TOOLS is set"
        );
        eprintln!("skipped: {name} is not installed (see .ci/run)");
    }
    found
}

/// Runs `command` in the repository root and asserts it succeeds, showing its output.
fn passes(mut command: Command, what: &str) {
    let output = command
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{what}:\n{stdout}");
}

#[test]
fn github_workflows_pass_actionlint() {
    let (Some(actionlint), Some(shellcheck)) = (tool("actionlint"), tool("shellcheck")) else {
        return;
    };
    let mut command = Command::new(actionlint);
    command.arg("-shellcheck").arg(shellcheck);
    passes(command, "actionlint");
}

#[test]
fn shell_scripts_pass_shellcheck() {
    let Some(shellcheck) = tool("shellcheck") else {
        return;
    };
    let mut scripts = vec![PathBuf::from(".ci/run")];
    for folder in ["scripts", "pipelines", "deployment", "bench"] {
        for entry in std::fs::read_dir(repo().join(folder))
            .expect("folder")
            .flatten()
        {
            if entry.path().extension().is_some_and(|ext| ext == "sh") {
                scripts.push(PathBuf::from(folder).join(entry.file_name()));
            }
        }
    }
    let mut command = Command::new(shellcheck);
    command.args(&scripts);
    passes(command, "shellcheck");
}

#[test]
fn deployment_and_infrastructure_pass_their_validators() {
    if tool("checkov").is_none() || tool("kubernetes-validate").is_none() {
        return;
    }
    let mut command = Command::new("bash");
    command.arg("deployment/validate.sh");
    passes(command, "deployment/validate.sh");
}
