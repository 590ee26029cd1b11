//! The deployment flow every broker must pass: v1 to group A leaves group B alone,
//! then v2 to A under continuous traffic with no failed request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{ControlPlane, Node, bundles, infer, reported, wait_for};

/// Pushes v1 and v2, deploys v1 to A, then v2 to A under load; asserts every point.
pub fn v1_then_v2_under_load(
    plane: &ControlPlane,
    group_a: &[(&str, &Node)],
    group_b: &[(&str, &Node)],
) {
    let fixture = bundles();
    plane.cli(&["model", "push", fixture.v1.to_str().expect("utf-8")]);
    plane.cli(&["model", "push", fixture.v2.to_str().expect("utf-8")]);

    plane.deploy("a", "1");
    for (name, node) in group_a {
        wait_for(
            &format!("{name} to serve v1"),
            Duration::from_secs(60),
            || (node.serving_version().as_deref() == Some("1")).then_some(()),
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    for (name, node) in group_b {
        assert_eq!(
            node.serving_version(),
            None,
            "{name} in group B must be left alone"
        );
        assert!(
            reported(plane, name)["active"].is_null(),
            "{name} reports no model"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = group_a
        .iter()
        .map(|(name, node)| {
            let url = node.url.clone();
            let name = name.to_string();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let (mut ok, mut failures, mut saw_v2) = (0usize, Vec::new(), false);
                while !stop.load(Ordering::Relaxed) {
                    match infer(&client, &url) {
                        Ok(version) => {
                            ok += 1;
                            saw_v2 |= version == "2";
                        }
                        Err(err) => failures.push(err),
                    }
                }
                (name, ok, failures, saw_v2)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let deployment = plane.deploy("a", "2");
    wait_for(
        "every device of A to apply v2",
        Duration::from_secs(60),
        || {
            let status = plane.get(&format!("/api/v1/deployments/{deployment}"));
            let devices = status["devices"].as_array().cloned().unwrap_or_default();
            (devices.len() == group_a.len() && devices.iter().all(|d| d["state"] == "applied"))
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let (name, ok, failures, saw_v2) = client.join().expect("client thread");
        assert!(
            failures.is_empty(),
            "{name}: {} of {} requests failed during the swap: {:?}",
            failures.len(),
            ok + failures.len(),
            &failures[..failures.len().min(3)]
        );
        assert!(ok > 10, "{name}: only {ok} requests ran");
        assert!(saw_v2, "{name}: no answer came from v2");
    }
    for (name, node) in group_a {
        assert_eq!(
            node.serving_version().as_deref(),
            Some("2"),
            "{name} serves v2"
        );
        let state = reported(plane, name);
        assert_eq!(
            state["active"]["version"], 2,
            "{name} reports v2 active: {state}"
        );
        assert_eq!(
            state["previous"]["version"], 1,
            "{name} keeps v1 as previous: {state}"
        );
        assert_eq!(state["phase"], "applied", "{name}: {state}");
        assert_eq!(state["backend"], "cpu", "{name}: {state}");
    }
    for (name, node) in group_b {
        assert_eq!(
            node.serving_version(),
            None,
            "{name} in group B must be left alone"
        );
    }
}

/// A device's MQTT credentials cannot reach another device's topics: nothing of
/// another's desired or receipts topic is delivered to it, and what it publishes to
/// another's reported or receipts topic is never delivered. Delivery is what counts: on MQTT 3.1.1 a broker
/// may grant a subscription (Mosquitto does) or ack a publish it then drops. The
/// embedded broker (`embedded`) must also refuse the subscription outright, and refuse
/// a device that borrows another's client id.
pub fn acl_holds(
    plane: &ControlPlane,
    address: std::net::SocketAddr,
    intruder: &str,
    intruder_password: &str,
    victim: &str,
    embedded: bool,
) {
    use super::mqtt::Mqtt;
    let mut watcher = Mqtt::connect(
        address,
        "acl-watcher",
        "edgewise-control-plane",
        &plane.service_password(),
    )
    .expect("the control plane's credentials connect");
    assert!(watcher.subscribe(&format!("edgewise/v1/devices/{victim}/reported")));
    assert!(watcher.subscribe(&format!("edgewise/v1/devices/{victim}/receipts")));
    watcher.collect(Duration::from_millis(500)); // the retained report

    let mut device = Mqtt::connect(address, "acl-intruder", intruder, intruder_password)
        .or_else(|_| Mqtt::connect(address, intruder, intruder, intruder_password))
        .expect("device connects as itself");
    for filter in [
        format!("edgewise/v1/devices/{victim}/desired"),
        "edgewise/v1/devices/+/desired".to_string(),
        format!("edgewise/v1/devices/{victim}/receipts"),
    ] {
        let granted = device.subscribe(&filter);
        assert!(
            !(embedded && granted),
            "the embedded broker granted {intruder} {filter}"
        );
    }
    let leaked = device.collect(Duration::from_secs(1));
    assert!(
        leaked
            .iter()
            .all(|(topic, _)| topic.contains(&format!("/{intruder}/"))),
        "{intruder} received another device's messages: {:?}",
        leaked.iter().map(|(topic, _)| topic).collect::<Vec<_>>()
    );
    device.publish(
        &format!("edgewise/v1/devices/{victim}/reported"),
        b"{\"forged\":true}",
        false,
    );
    // A forged receipt would make the victim drop telemetry it never delivered.
    device.publish(
        &format!("edgewise/v1/devices/{victim}/receipts"),
        b"{\"forged\":true,\"window_seqs\":[1]}",
        false,
    );
    let delivered = watcher.collect(Duration::from_secs(1));
    assert!(
        delivered
            .iter()
            .all(|(_, payload)| !payload.starts_with(b"{\"forged\"")),
        "a forged report or receipt reached {victim}'s topics"
    );

    if embedded {
        assert!(
            Mqtt::connect(address, victim, intruder, intruder_password).is_err(),
            "{intruder} took {victim}'s client id"
        );
    }
    assert!(
        Mqtt::connect(address, "acl-guess", victim, "wrong-password").is_err(),
        "a wrong password was accepted"
    );
}
