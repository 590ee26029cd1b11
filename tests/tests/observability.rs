//! Observability end to end: a control plane with a simulated fleet, a real node, a
//! rollout halted by its latency gate, drifted inputs in one group and a node that goes
//! offline. It checks the alert notifications reaching a local webhook receiver, the
//! metrics both binaries export against every name the dashboards and alert rules use,
//! `edgewise status`, and the web dashboard in headless Chromium.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ControlPlane, Node, Simulator, bundles, data_file, text, wait_for, wait_online};
use serde_json::Value;

/// Simulated nodes in the group whose rollout halts.
const FLEET: usize = 10;
/// Simulated nodes in the group whose inputs drift.
const DRIFTED: usize = 3;

/// A webhook receiver on 127.0.0.1 that keeps every JSON body it is sent. It answers
/// the first request 503, so the sender's retry is exercised too.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let url = format!(
            "http://{}/hook",
            listener.local_addr().expect("receiver address")
        );
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            let mut refused_once = false;
            for stream in listener.incoming().flatten() {
                let Some(body) = read_request(&stream) else {
                    continue;
                };
                let mut stream = stream;
                if !refused_once {
                    refused_once = true;
                    let _ = stream.write_all(
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                    continue;
                }
                if let Ok(value) = serde_json::from_slice(&body) {
                    kept.lock().expect("bodies").push(value);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { url, bodies }
    }

    /// Waits for a notification of `alertname` with `status` whose labels hold `label`.
    fn wait(&self, alertname: &str, status: &str, label: (&str, &str)) -> Value {
        wait_for(
            &format!("{status} {alertname} notification for {label:?}"),
            Duration::from_secs(90),
            || {
                self.bodies
                    .lock()
                    .expect("bodies")
                    .iter()
                    .find(|body| {
                        let alert = &body["alerts"][0];
                        body["status"] == status
                            && alert["labels"]["alertname"] == alertname
                            && alert["labels"][label.0] == label.1
                    })
                    .cloned()
            },
        )
    }
}

/// Reads one HTTP request and returns its body.
fn read_request(stream: &std::net::TcpStream) -> Option<Vec<u8>> {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `edgewise_*` name used by the alert rules and the Grafana dashboards.
fn names_used_in_monitoring() -> BTreeSet<String> {
    let mut files = Vec::new();
    for folder in ["monitoring/rules", "monitoring/grafana/dashboards"] {
        for entry in std::fs::read_dir(workspace().join(folder)).expect("monitoring folder") {
            files.push(entry.expect("entry").path());
        }
    }
    assert!(files.len() >= 5, "rules and dashboards: {files:?}");
    let mut names = BTreeSet::new();
    for file in files {
        let content = std::fs::read_to_string(&file).expect("read monitoring file");
        let mut rest = content.as_str();
        while let Some(at) = rest.find("edgewise_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            let preceded_by_word = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !preceded_by_word {
                names.insert(tail[..end].to_string());
            }
            rest = &tail[end..];
        }
    }
    names
}

/// Every series name a `/metrics` page exports (histograms with their suffixes).
fn exported_names(page: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            names.insert(name.to_string());
            let suffixes: &[&str] = match kind {
                "histogram" => &["_bucket", "_sum", "_count"],
                "summary" => &["_sum", "_count"],
                _ => &[],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

/// Runs the browser test against the dashboard; skipped (unless required) when
/// Chromium or playwright-core is missing.
fn browser_test(plane: &ControlPlane, devices: usize, stage: &str) {
    let script = workspace().join("tests/browser/dashboard.mjs");
    let playwright = workspace().join("tests/browser/node_modules/playwright-core");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !playwright.exists() || !Path::new(&chromium).exists() {
        assert!(
            std::env::var_os("EDGEWISE_REQUIRE_BROWSER").is_none(),
            "EDGEWISE_REQUIRE_BROWSER is set but {} or {chromium} is missing (npm ci --prefix tests/browser)",
            playwright.display()
        );
        eprintln!("skipping the browser test: no playwright-core or Chromium");
        return;
    }
    let out = workspace().join("test-output/dashboard");
    std::fs::create_dir_all(&out).expect("screenshot folder");
    // The dashboard only reads, so it signs in with a viewer token.
    let viewer = plane
        .cli(&["token", "create", "dashboard-check", "--role", "viewer"])
        .trim()
        .to_owned();
    let output = Command::new("node")
        .arg(&script)
        .args(["--url", &plane.url, "--token", &viewer])
        .args(["--devices", &devices.to_string()])
        .args(["--stage", stage])
        .arg("--out")
        .arg(&out)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{log}");
    assert!(output.status.success(), "browser test failed:\n{log}");
}

#[test]
fn alerts_metrics_status_and_dashboard_show_a_troubled_fleet() {
    let dir = tempfile::tempdir().expect("temp dir");
    let receiver = Receiver::start();
    let plane = ControlPlane::start(
        &dir.path().join("control-plane"),
        &[
            "--alert-webhook",
            &receiver.url,
            "--offline-alert-after",
            "2s",
            "--monitor-interval",
            "1s",
        ],
    );
    for bundle in [&bundles().v1, &bundles().v2] {
        plane.cli(&["model", "push", bundle.to_str().expect("utf-8")]);
    }
    let digits = data_file("digits.csv.gz");
    let _fleet = Simulator::start(
        &plane,
        dir.path(),
        "fleet",
        "sim",
        FLEET,
        &digits,
        &["--rate", "40", "--shuffle", "--feedback", "--canaries", "2"]
            .into_iter()
            .chain(["--slow-version", "2:30ms"])
            .collect::<Vec<_>>(),
    );
    let _drifted = Simulator::start(
        &plane,
        dir.path(),
        "drifted",
        "shifted",
        DRIFTED,
        &digits,
        &[
            "--rate",
            "40",
            "--shuffle",
            "--shift",
            "x20=12",
            "--shift",
            "x43=12",
        ],
    );
    let config = plane.add_device("edge-1", "edge", dir.path());
    let mut node = Node::start_with(&config, &["--window", "1s"]);
    wait_online(&plane, FLEET + DRIFTED + 1);
    for group in ["fleet", "drifted", "edge"] {
        plane.deploy_and_wait(group, "digits", "1");
    }

    // A slow v2 halts at its first stage and waits for an operator.
    let rollout_id = plane.start_rollout("fleet", "2", "20,100", "2s", &["--on-failure", "pause"]);

    let halted = receiver.wait("EdgewiseRolloutHalted", "firing", ("rollout", &rollout_id));
    assert_eq!(halted["version"], "4");
    assert_eq!(halted["receiver"], "edgewise");
    assert!(halted["groupKey"].as_str().is_some_and(|k| !k.is_empty()));
    let alert = &halted["alerts"][0];
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert!(
        alert["annotations"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("latency")),
        "{alert:#}"
    );
    assert!(alert["startsAt"].as_str().is_some_and(|s| s.ends_with('Z')));

    let drift = receiver.wait("EdgewiseFeatureDrift", "firing", ("feature", "x20"));
    assert_eq!(
        drift["alerts"][0]["labels"]["group"], "drifted",
        "{drift:#}"
    );
    for body in receiver.bodies.lock().expect("bodies").iter() {
        let labels = &body["alerts"][0]["labels"];
        if labels["alertname"] == "EdgewiseFeatureDrift" {
            eprintln!(
                "drift alert: group {} feature {}: {}",
                labels["group"], labels["feature"], body["alerts"][0]["annotations"]["description"]
            );
        }
    }
    assert!(
        !receiver.bodies.lock().expect("bodies").iter().any(
            |b| b["alerts"][0]["labels"]["alertname"] == "EdgewiseFeatureDrift"
                && b["alerts"][0]["labels"]["group"] == "fleet"
        ),
        "the unshifted group raised a drift alert"
    );

    // The chart series of the shifted group shows the shift; the alert list holds it.
    let series = plane.get("/api/v1/telemetry/series?model=digits&version=1&group=drifted&since_seconds=600&step_seconds=5");
    let points = series["points"].as_array().expect("points");
    let shifted_psi = points
        .iter()
        .flat_map(|p| p["features"].as_array().into_iter().flatten())
        .filter(|f| f["name"] == "x20")
        .filter_map(|f| f["psi"].as_f64())
        .fold(0.0, f64::max);
    assert!(shifted_psi > 0.2, "x20 PSI in the series: {series:#}");
    let firing = plane.get("/api/v1/alerts");
    let names: BTreeSet<&str> = firing
        .as_array()
        .expect("alerts")
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    assert!(
        names.contains("EdgewiseRolloutHalted") && names.contains("EdgewiseFeatureDrift"),
        "{firing:#}"
    );

    // A registered bundle comes back byte for byte.
    let downloaded = dir.path().join("downloaded.bundle");
    plane.cli(&[
        "model",
        "download",
        "digits",
        "1",
        "--out",
        downloaded.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        std::fs::read(&downloaded).expect("downloaded"),
        std::fs::read(&bundles().v1).expect("v1")
    );

    // The node's metrics, while it serves and has closed telemetry windows.
    for _ in 0..20 {
        node.infer().expect("infer");
    }
    wait_for(
        "a closed window on the node",
        Duration::from_secs(30),
        || {
            (common::metric_value(
                &text(&format!("{}/metrics", node.url)),
                "edgewise_telemetry_windows_total",
            ) >= 1.0)
                .then_some(())
        },
    );
    let node_page = text(&format!("{}/metrics", node.url));
    let plane_page = text(&format!("{}/metrics", plane.url));
    let mut exported = exported_names(&node_page);
    exported.extend(exported_names(&plane_page));
    let used = names_used_in_monitoring();
    let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "dashboards or rules use metrics nobody exports: {missing:?}"
    );
    assert_eq!(
        common::metric_value(&plane_page, "edgewise_rollouts{state=\"paused\"}"),
        1.0
    );

    // A node that goes away raises an alert, and its return resolves it.
    node.kill();
    receiver.wait("EdgewiseNodeOffline", "firing", ("device", "edge-1"));
    let page = text(&format!("{}/metrics", plane.url));
    assert_eq!(
        common::metric_value(
            &page,
            "edgewise_device_online{device=\"edge-1\",group=\"edge\"}"
        ),
        0.0
    );
    node.restart();
    receiver.wait("EdgewiseNodeOffline", "resolved", ("device", "edge-1"));

    let status = plane.cli(&["status"]);
    let device_line = format!("{} devices", FLEET + DRIFTED + 1);
    for expected in [
        device_line.as_str(),
        rollout_id.as_str(),
        "paused",
        "EdgewiseRolloutHalted",
        "EdgewiseFeatureDrift",
        "digits:1",
    ] {
        assert!(
            status.contains(expected),
            "status lacks {expected}:\n{status}"
        );
    }

    // The drift view charts the newest served version (v2, on the canaries) in
    // 15-second buckets by default: let its telemetry span two of them first.
    wait_for(
        "two buckets of v2 telemetry",
        Duration::from_secs(90),
        || {
            let series = plane.get(
                "/api/v1/telemetry/series?model=digits&version=2&since_seconds=900&step_seconds=15",
            );
            (series["points"].as_array().map_or(0, Vec::len) >= 2).then_some(())
        },
    );
    browser_test(&plane, FLEET + DRIFTED + 1, "Stage 1 of 2");
}
