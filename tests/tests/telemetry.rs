//! Telemetry end to end: windows survive a broker outage exactly once, labels and
//! captures arrive, and drift on real data is flagged where it happened.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    ControlPlane, Node, Simulator, Training, bundles, data_file, metric_value, text, wait_for,
    wait_online,
};
use edgewise_control_plane::telemetry_fold::WindowSums;
use edgewise_core::bundle::Bundle;
use edgewise_core::telemetry::TelemetryWindow;
use serde_json::{Value, json};

/// Sends infer requests with ids, and a label for each, until stopped.
fn traffic(url: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        let mut sent = 0u64;
        while !stop.load(Ordering::Relaxed) {
            sent += 1;
            let id = format!("req-{sent}");
            let body = json!({ "id": id, "inputs": [{ "name": "input", "shape": [1, 64], "datatype": "FP32", "data": vec![(sent % 16) as f32; 64] }] });
            if client
                .post(format!("{url}/v2/models/digits/infer"))
                .json(&body)
                .send()
                .is_ok()
            {
                let _ = client
                    .post(format!("{url}/v2/models/digits/feedback"))
                    .json(&json!({ "id": id, "label": "3" }))
                    .send();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    })
}

#[test]
fn windows_produced_offline_arrive_once_after_the_reconnect() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    let config = plane.add_device("edge-1", "field", dir.path());
    let node = Node::start_with(&config, &["--window", "1s", "--capture-rate", "0.5"]);
    wait_for("edge-1 online", Duration::from_secs(30), || {
        (plane.get("/api/v1/devices/edge-1")["online"] == true).then_some(())
    });
    plane.cli(&["model", "push", bundles().v1.to_str().expect("utf-8")]);
    plane.deploy_and_wait("field", "digits", "1");

    let stop = Arc::new(AtomicBool::new(false));
    let sender = traffic(node.url.clone(), stop.clone());
    let produced = || {
        metric_value(
            &text(&format!("{}/metrics", node.url)),
            "edgewise_telemetry_windows_total",
        )
    };
    wait_for("two windows", Duration::from_secs(30), || {
        (produced() >= 2.0).then_some(())
    });
    plane.kill();
    let before_outage = produced();
    wait_for(
        "windows produced while the broker is down",
        Duration::from_secs(30),
        || (produced() >= before_outage + 3.0).then_some(()),
    );
    plane.restart();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    assert!(sender.join().expect("traffic") > 100);
    // One more window holds the last requests; then the outbox drains.
    std::thread::sleep(Duration::from_millis(1500));
    let page = || text(&format!("{}/metrics", node.url));
    wait_for("the outbox to drain", Duration::from_secs(30), || {
        (metric_value(&page(), "edgewise_telemetry_outbox_windows") == 0.0).then_some(())
    });
    let produced = produced();

    let windows = wait_for("every window stored", Duration::from_secs(30), || {
        let stored = plane.get("/api/v1/telemetry/windows?device=edge-1");
        let stored = stored.as_array()?.clone();
        (stored.len() as f64 == produced).then_some(stored)
    });
    let seqs: Vec<u64> = windows
        .iter()
        .filter_map(|w| w["window"]["window_seq"].as_u64())
        .collect();
    let expected: Vec<u64> = (1..=produced as u64).collect();
    assert_eq!(seqs, expected, "each window exactly once, none lost");

    let summary = plane.get("/api/v1/telemetry?device=edge-1");
    assert!(
        summary["requests"].as_u64().expect("requests") > 100,
        "{summary}"
    );
    assert_eq!(summary["errors"], 0);
    assert!(
        summary["labelled"].as_u64().expect("labelled") > 50,
        "{summary}"
    );
    assert!(summary["accuracy"].as_f64().is_some());
    assert_eq!(summary["features"].as_array().expect("features").len(), 64);
    assert!(summary["latency_p99"].as_f64().is_some());
    let captures = plane.get("/api/v1/captures?model=digits");
    let captures = captures.as_array().expect("captures");
    assert!(!captures.is_empty(), "no captured examples");
    assert_eq!(captures[0]["inputs"].as_array().map(Vec::len), Some(64));
    assert!(
        captures.iter().any(|c| c["label"] == "3"),
        "captures carry their labels"
    );
}

/// Devices' windows in slices of `windows_per_slice` consecutive windows (about 250
/// examples each here): the share of slices whose pooled drift check flags a feature.
fn slice_alert_rate(
    windows: &Value,
    profile: &edgewise_core::profile::DataProfile,
    windows_per_slice: usize,
) -> (f64, usize) {
    let mut per_device: std::collections::BTreeMap<String, Vec<TelemetryWindow>> =
        Default::default();
    for stored in windows.as_array().expect("windows") {
        let window: TelemetryWindow =
            serde_json::from_value(stored["window"].clone()).expect("window");
        per_device
            .entry(window.device_id.clone())
            .or_default()
            .push(window);
    }
    let (mut slices, mut alerts) = (0, 0);
    for windows in per_device.values() {
        for slice in windows.chunks_exact(windows_per_slice) {
            slices += 1;
            alerts += usize::from(
                WindowSums::of(slice)
                    .drift(profile)
                    .iter()
                    .any(|f| f.drifted),
            );
        }
    }
    (alerts as f64 / slices.max(1) as f64, slices)
}

#[test]
fn drift_on_rainfall_is_flagged_only_where_it_happened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = &bundles().release;
    let bundle = Training::rainfall_before_drift().bundle(key, 1, 10);
    let path = dir.path().join("rainfall-v1.bundle");
    std::fs::write(&path, bundle).expect("write bundle");
    let plane = ControlPlane::start(&dir.path().join("control-plane"), &[]);
    plane.cli(&["model", "push", path.to_str().expect("utf-8")]);
    let data = data_file("rainfall.csv.gz");
    let args = |rows: &'static str| {
        [
            "--label",
            "rain",
            "--rows",
            rows,
            "--rate",
            "50",
            "--shuffle",
        ]
    };
    let _old = Simulator::start(
        &plane,
        dir.path(),
        "past",
        "past",
        3,
        &data,
        &args("0..12000"),
    );
    let _new = Simulator::start(
        &plane,
        dir.path(),
        "recent",
        "recent",
        3,
        &data,
        &args("12000.."),
    );
    wait_online(&plane, 6);
    for group in ["past", "recent"] {
        plane.deploy_and_wait(group, "rainfall", "1");
    }
    wait_for("45 windows per group", Duration::from_secs(90), || {
        let enough = ["past", "recent"].iter().all(|g| {
            plane.get(&format!("/api/v1/telemetry?group={g}"))["windows"]
                .as_u64()
                .unwrap_or(0)
                >= 45
        });
        enough.then_some(())
    });
    let past = plane.get("/api/v1/telemetry?group=past");
    let recent = plane.get("/api/v1/telemetry?group=recent");
    let flagged = |summary: &Value| -> Vec<String> {
        summary["drifted_features"]
            .as_array()
            .expect("drifted")
            .iter()
            .filter_map(|f| f.as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        flagged(&past).is_empty(),
        "rows 0-11,999 raised a drift alert: {:?}\n{past:#}",
        flagged(&past)
    );
    let recent_flags = flagged(&recent);
    for feature in ["dew point", "sea-level pressure"] {
        assert!(
            recent_flags.iter().any(|f| f == feature),
            "{feature} not flagged on rows 12,000+: {recent_flags:?}"
        );
    }
    let profile = Bundle::open(&std::fs::read(&path).expect("bundle"))
        .expect("bundle")
        .manifest
        .profile;
    let (false_alarms, past_slices) = slice_alert_rate(
        &plane.get("/api/v1/telemetry/windows?group=past"),
        &profile,
        5,
    );
    let (detections, recent_slices) = slice_alert_rate(
        &plane.get("/api/v1/telemetry/windows?group=recent"),
        &profile,
        5,
    );
    eprintln!(
        "drift: alerts on {false_alarms:.3} of {past_slices} five-window slices of rows 0-11,999 (false alarms), \
         {detections:.3} of {recent_slices} of rows 12,000+ (detections); whole-range flags {recent_flags:?}"
    );
    assert!(
        detections > false_alarms,
        "slices of drifted data must alert more often"
    );
}
