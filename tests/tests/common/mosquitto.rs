//! Debian's Mosquitto as a real external broker, started with a config written by the
//! test and killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_for;

/// Mosquitto's binary, or `None` (skipping the test) where it is not installed and
/// `EDGEWISE_REQUIRE_MOSQUITTO` is not set.
pub fn binary() -> Option<PathBuf> {
    let found = [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("EDGEWISE_REQUIRE_MOSQUITTO").is_none(),
            "mosquitto is not installed"
        );
        eprintln!("skipped: mosquitto is not installed (apt-get install mosquitto)");
    }
    found
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// Makes `folder` readable by the `mosquitto` user, which Mosquitto drops to.
pub fn share_with_broker(folder: &Path) {
    #[cfg(unix)]
    std::fs::set_permissions(folder, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
}

/// Mosquitto, killed on drop.
pub struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts Mosquitto with `config` (written to `folder/mosquitto.conf`) and waits until
/// it listens on `port`.
pub fn start(binary: &Path, folder: &Path, port: u16, config: &str) -> Broker {
    let path = folder.join("mosquitto.conf");
    std::fs::write(&path, config).expect("write mosquitto.conf");
    let child = Command::new(binary)
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start mosquitto");
    wait_for("mosquitto to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
    Broker(child)
}
