//! moto's AWS server on 127.0.0.1, for the tests of the AWS integrations.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

/// Credentials moto accepts (it checks no signature).
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
    (
        "AWS_SECRET_ACCESS_KEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    ("AWS_REGION", "us-east-1"),
];

/// moto's server, stopped on drop.
pub struct Moto {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl Moto {
    /// Starts moto, or returns `None` (skipping the test) where it is not installed and
    /// `EDGEWISE_REQUIRE_MOTO` is not set.
    pub fn start() -> Option<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let spawned = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = spawned else {
            assert!(
                std::env::var_os("EDGEWISE_REQUIRE_MOTO").is_none(),
                "EDGEWISE_REQUIRE_MOTO is set but moto_server cannot run (pip install \"moto[server]\")"
            );
            eprintln!("skipping: moto is not installed");
            return None;
        };
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let probe = format!("{}/moto-api/", moto.url);
        wait_for("moto server", Duration::from_secs(60), || {
            reqwest::blocking::get(&probe)
                .is_ok_and(|r| r.status().is_success())
                .then_some(())
        });
        Some(moto)
    }

    /// Creates an S3 bucket.
    pub fn create_bucket(&self, bucket: &str) {
        let created = reqwest::blocking::Client::new()
            .put(format!("{}/{bucket}", self.url))
            .send()
            .expect("create bucket");
        assert!(
            created.status().is_success(),
            "create bucket: {}",
            created.status()
        );
    }
}

/// The path-style URL of `s3://…` on moto at `url`.
pub fn s3_url(url: &str, uri: &str) -> String {
    format!("{url}/{}", uri.trim_start_matches("s3://"))
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
