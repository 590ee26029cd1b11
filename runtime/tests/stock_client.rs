//! A stock KServe V2 client (NVIDIA's `tritonclient[http]`, JSON tensors) works
//! against the runtime unchanged.
//!
//! Runs where Python can import `tritonclient.http`; skipped with a notice elsewhere
//! unless `EDGEWISE_REQUIRE_STOCK_CLIENT=1` (CI installs the client and sets it).

mod common;

use std::process::Command;

use common::{Runtime, fixture};

#[test]
fn tritonclient_talks_to_the_runtime() {
    let importable = Command::new("python3")
        .args(["-c", "import tritonclient.http, numpy"])
        .status()
        .is_ok_and(|status| status.success());
    if !importable {
        if std::env::var("EDGEWISE_REQUIRE_STOCK_CLIENT").as_deref() == Ok("1") {
            panic!("EDGEWISE_REQUIRE_STOCK_CLIENT=1 but python3 cannot import tritonclient.http");
        }
        eprintln!("tritonclient is not installed: stock client test skipped");
        return;
    }
    let server = Runtime::start(&fixture().bundle, &fixture().trusted, &[]);
    let host = server.url.trim_start_matches("http://");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/tritonclient_infer.py"
    );
    let output = Command::new("python3")
        .args([script, host, "digits"])
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "stock client failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
