//! `docs/getting-started.md`, followed by the machine: `scripts/check-getting-started.sh`
//! runs every `bash` block of the guide in one shell, on free ports, with the binaries
//! of this build, and checks that both canary rollouts complete. A guide that no longer
//! works fails here.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::binary;

#[test]
fn a_newcomer_gets_from_a_fresh_build_to_a_completed_canary_rollout() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = binary("edgewise").parent().expect("bin dir").to_owned();
    let output = Command::new("bash")
        .arg(repo.join("scripts/check-getting-started.sh"))
        .arg(&bin_dir)
        .current_dir(&repo)
        .env_remove("EDGEWISE_SERVER")
        .output()
        .expect("run scripts/check-getting-started.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the getting-started guide failed:\n{stdout}\n{stderr}"
    );
}
