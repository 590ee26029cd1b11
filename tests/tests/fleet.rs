//! The fleet loop end to end on the embedded broker: a control plane and three nodes
//! in two groups as real processes.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::mqtt::Mqtt;
use common::{ControlPlane, Node, bundles, flows, password_of, reported, start_nodes, wait_for};
use edgewise_core::assignment::{Assignment, AssignmentMode};
use edgewise_core::bundle::{Bundle, sha256_hex};
use edgewise_core::keys::SecretKey;
use edgewise_core::spec::ModelSpec;

/// A malicious mirror: an HTTP server that serves whatever files it holds, with
/// `Range`, to anyone. The control plane's own artifact server gives a device only the
/// bundle it assigned; a forged assignment can point a node here instead.
struct Mirror {
    folder: PathBuf,
    url: String,
}

impl Mirror {
    fn start(folder: &Path) -> Mirror {
        std::fs::create_dir_all(folder).expect("mirror folder");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mirror");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let root = folder.to_owned();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || serve_file(stream, &root));
            }
        });
        Mirror {
            folder: folder.to_owned(),
            url,
        }
    }
}

/// Answers one `GET /NAME` with the file's bytes from the requested offset.
fn serve_file(mut stream: std::net::TcpStream, root: &Path) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut request = String::new();
    let _ = reader.read_line(&mut request);
    let name = request
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/');
    let mut offset = 0usize;
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        if let Some(range) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            offset = range.trim().trim_end_matches('-').parse().unwrap_or(0);
        }
        line.clear();
    }
    let body = std::fs::read(root.join(name)).unwrap_or_default();
    let body = body.get(offset..).unwrap_or_default();
    let status = if offset > 0 {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

/// Publishes an assignment on `target`'s desired topic as the control plane would.
struct Director {
    mqtt: Mqtt,
    key: SecretKey,
    mirror: Mirror,
}

impl Director {
    /// Puts `bytes` on the malicious mirror under `name`.
    fn plant(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.mirror.folder.join(name), bytes).expect("plant artifact");
    }

    fn send(&mut self, target: &str, assignment: &Assignment) {
        let envelope = assignment.sign(&self.key).to_bytes();
        self.mqtt.publish(
            &format!("edgewise/v1/devices/{target}/desired"),
            &envelope,
            true,
        );
    }

    fn assignment(
        &self,
        device: &str,
        seq: u64,
        sha256: &str,
        size: u64,
        ttl_secs: i64,
    ) -> Assignment {
        let now = SystemTime::now();
        let (issued_at, expires_at) = if ttl_secs >= 0 {
            Assignment::lifetime(now, Duration::from_secs(ttl_secs as u64))
        } else {
            let past = now - Duration::from_secs(ttl_secs.unsigned_abs());
            Assignment::lifetime(past - Duration::from_secs(60), Duration::from_secs(60))
        };
        Assignment {
            device_id: device.into(),
            seq,
            model: "digits".into(),
            version: 2,
            bundle_sha256: sha256.into(),
            size,
            locations: vec![format!("{}/{sha256}", self.mirror.url)],
            rollout_id: None,
            stage: None,
            mode: AssignmentMode::Active,
            issued_at,
            expires_at,
        }
    }
}

/// Waits until `device` reports a failure mentioning `needle` (about assignment `seq`,
/// when the assignment itself was accepted); it must still serve v2.
fn expect_refusal(plane: &ControlPlane, node: &Node, device: &str, seq: Option<u64>, needle: &str) {
    let failure = wait_for(
        &format!("{device} to report {needle:?}"),
        Duration::from_secs(30),
        || {
            let state = reported(plane, device);
            let failure = state["failure"].as_str().unwrap_or_default().to_string();
            let about_seq = seq.is_none_or(|seq| state["seq"] == seq);
            (state["phase"] == "failed" && about_seq && failure.contains(needle)).then_some(failure)
        },
    );
    assert_eq!(
        node.serving_version().as_deref(),
        Some("2"),
        "{device} kept serving v2 after: {failure}"
    );
    assert_eq!(node.infer().as_deref(), Ok("2"));
}

fn last_seq(plane: &ControlPlane, device: &str) -> u64 {
    reported(plane, device)["seq"].as_u64().expect("seq")
}

#[test]
fn deploys_per_group_swaps_without_failures_and_refuses_bad_updates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    let configs: Vec<_> = [("node-1", "a"), ("node-2", "a"), ("node-3", "b")]
        .iter()
        .map(|(name, group)| plane.add_device(name, group, dir.path()))
        .collect();
    let mut nodes = start_nodes(&plane, &configs);

    flows::v1_then_v2_under_load(
        &plane,
        &[("node-1", &nodes[0]), ("node-2", &nodes[1])],
        &[("node-3", &nodes[2])],
    );

    // Every kind of bad update reaches node-1; it refuses each, says why, and keeps v2.
    let mqtt = Mqtt::connect(
        plane.mqtt_address(),
        "test-director",
        "edgewise-control-plane",
        &plane.service_password(),
    )
    .expect("director connects");
    let mut director = Director {
        mqtt,
        key: plane.deployment_key(),
        mirror: Mirror::start(&dir.path().join("mirror")),
    };
    let genuine = std::fs::read(&bundles().v1).expect("v1");

    let stranger = Bundle::open(&genuine)
        .expect("bundle")
        .resign(&SecretKey::generate())
        .expect("resign");
    let sha = sha256_hex(&stranger);
    director.plant(&sha, &stranger);
    let seq = last_seq(&plane, "node-1") + 1;
    director.send(
        "node-1",
        &director.assignment("node-1", seq, &sha, stranger.len() as u64, 600),
    );
    expect_refusal(&plane, &nodes[0], "node-1", Some(seq), "not trusted");

    let mut flipped = genuine.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let sha = sha256_hex(&flipped);
    director.plant(&sha, &flipped);
    let seq = last_seq(&plane, "node-1") + 1;
    director.send(
        "node-1",
        &director.assignment("node-1", seq, &sha, flipped.len() as u64, 600),
    );
    expect_refusal(&plane, &nodes[0], "node-1", Some(seq), "bundle refused");

    let decoy = sha256_hex(b"not the bytes that will be served");
    director.plant(&decoy, &flipped);
    let seq = last_seq(&plane, "node-1") + 1;
    director.send(
        "node-1",
        &director.assignment("node-1", seq, &decoy, flipped.len() as u64, 600),
    );
    expect_refusal(&plane, &nodes[0], "node-1", Some(seq), "hash mismatch");

    let seq = last_seq(&plane, "node-1") + 1;
    let theirs = director.assignment(
        "node-2",
        seq,
        &sha256_hex(&genuine),
        genuine.len() as u64,
        600,
    );
    director.send("node-1", &theirs);
    expect_refusal(
        &plane,
        &nodes[0],
        "node-1",
        None,
        "is for device \"node-2\"",
    );

    let replayed = director.assignment(
        "node-1",
        1,
        &sha256_hex(&genuine),
        genuine.len() as u64,
        600,
    );
    director.send("node-1", &replayed);
    expect_refusal(&plane, &nodes[0], "node-1", None, "replayed");

    let seq = last_seq(&plane, "node-1") + 1;
    director.send(
        "node-1",
        &director.assignment(
            "node-1",
            seq,
            &sha256_hex(&genuine),
            genuine.len() as u64,
            -3600,
        ),
    );
    expect_refusal(&plane, &nodes[0], "node-1", None, "expired");

    // Endless data: the mirror keeps sending past the assigned size. The node takes
    // exactly `size` bytes and drops the rest; those bytes are the signed bundle.
    let v3 = common::train(
        &bundles().release,
        ModelSpec::preset("digits-mlp").expect("preset"),
        3,
        1,
    );
    let sha = sha256_hex(&v3);
    let mut endless = v3.clone();
    endless.resize(v3.len() + 8 * 1024 * 1024, b'x');
    director.plant(&sha, &endless);
    let seq = last_seq(&plane, "node-1") + 1;
    let mut bounded = director.assignment("node-1", seq, &sha, v3.len() as u64, 600);
    bounded.version = 3;
    director.send("node-1", &bounded);
    wait_for(
        "node-1 to install v3 from the endless mirror",
        Duration::from_secs(60),
        || (nodes[0].serving_version().as_deref() == Some("3")).then_some(()),
    );
    let page = common::text(&format!("{}/metrics", nodes[0].url));
    assert!(common::metric_value(&page, "edgewise_update_download_overruns_total") >= 1.0);

    // A device's credentials reach only its own topics. (The node itself steps aside,
    // or the broker would hand its session back and forth between it and the test.)
    nodes[0].kill();
    flows::acl_holds(
        &plane,
        plane.mqtt_address(),
        "node-1",
        &password_of(&configs[0]),
        "node-2",
        true,
    );

    // A legitimate new deployment still goes through after all that.
    nodes[0].restart();
    let deployment = plane.deploy("a", "1");
    wait_for("node-1 back on v1", Duration::from_secs(60), || {
        let status = plane.get(&format!("/api/v1/deployments/{deployment}"));
        status["devices"]
            .as_array()?
            .iter()
            .all(|d| d["state"] == "applied")
            .then_some(())
    });
    assert_eq!(nodes[0].serving_version().as_deref(), Some("1"));

    // A node that vanishes goes offline through its last will; malformed messages
    // from a device are counted and dropped, and change nothing.
    nodes[2].kill();
    wait_for(
        "node-3 offline by its last will",
        Duration::from_secs(20),
        || (plane.get("/api/v1/devices/node-3")["online"] == false).then_some(()),
    );
    let before = plane.metric("edgewise_mqtt_malformed_messages_total");
    let report_before = reported(&plane, "node-3");
    let mut impostor = Mqtt::connect(
        plane.mqtt_address(),
        "node-3",
        "node-3",
        &password_of(&configs[2]),
    )
    .expect("node-3 credentials");
    impostor.publish("edgewise/v1/devices/node-3/reported", b"{not json", false);
    impostor.publish("edgewise/v1/devices/node-3/status", b"maybe", false);
    impostor.publish(
        "edgewise/v1/devices/node-3/reported",
        br#"{"device_id":"node-1"}"#,
        false,
    );
    wait_for(
        "three malformed messages counted",
        Duration::from_secs(10),
        || (plane.metric("edgewise_mqtt_malformed_messages_total") >= before + 3.0).then_some(()),
    );
    assert_eq!(plane.get("/api/v1/devices/node-3")["online"], false);
    assert_eq!(reported(&plane, "node-3"), report_before);

    // A broker may deliver an earlier connection's last will after the next
    // connection's `online`; the connection epochs tell them apart.
    let status_topic = "edgewise/v1/devices/node-3/status";
    impostor.publish(status_topic, b"online 2000", false);
    impostor.publish(status_topic, b"offline 1000", false);
    wait_for(
        "the late last will ignored",
        Duration::from_secs(10),
        || (plane.metric("edgewise_mqtt_stale_status_total") >= 1.0).then_some(()),
    );
    assert_eq!(plane.get("/api/v1/devices/node-3")["online"], true);
    impostor.publish(status_topic, b"offline 2000", false);
    wait_for(
        "node-3 offline by its current connection's will",
        Duration::from_secs(10),
        || (plane.get("/api/v1/devices/node-3")["online"] == false).then_some(()),
    );
}
