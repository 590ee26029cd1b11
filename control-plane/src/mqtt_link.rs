//! The control plane's own MQTT client (rumqttc), whatever the broker: it publishes
//! retained assignments and telemetry receipts, and records each device's `status`,
//! `reported` and (from an external broker) `telemetry` messages.
//! Malformed payloads are logged, counted in `edgewise_mqtt_malformed_messages_total`
//! and dropped.

use std::time::{Duration, SystemTime};

use edgewise_core::reported::ReportedState;
use edgewise_core::telemetry::{TelemetryReceipt, TelemetryWindow};
use edgewise_core::topics::{DeviceTopic, Status};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};

use crate::server::BrokerConnection;

use crate::datadir::SERVICE_USER;
use crate::receipts::Receipts;
use crate::store::{DeviceRecord, Store};
use crate::telemetry_store::TelemetryStore;

/// Largest MQTT packet in either direction.
const MAX_PACKET_BYTES: usize = 256 * 1024;

/// Keep-alive of the control plane's connection: as long as the nodes' own, so that a
/// broker busy with a whole fleet does not drop the one client that serves them all.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// When the link publishes every device's assignment again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Republish {
    /// On the first connection only: the embedded broker lives and dies with this
    /// process, so it never loses a retained assignment. Publishing 10,000 of them
    /// again after each reconnect made a busy broker busier, and the link lost it again.
    FirstConnection,
    /// After every connection: an external broker may have restarted without its
    /// retained messages.
    EveryConnection,
}

/// Publishes assignments through the control plane's connection.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
}

impl Publisher {
    /// Publishes `device`'s current signed assignment, retained, on its desired topic.
    pub async fn publish_desired(&self, device: &DeviceRecord) {
        let Some(desired) = &device.desired else {
            return;
        };
        let topic = DeviceTopic::Desired.for_device(&device.id);
        if let Err(err) = self
            .client
            .publish(topic, QoS::AtLeastOnce, true, desired.to_bytes())
            .await
        {
            tracing::warn!(device = %device.id, error = %err, "cannot queue the assignment; it is sent again on reconnect");
        }
    }

    /// Tells `device` which of its telemetry windows are stored.
    pub async fn publish_receipt(&self, device: &str, receipt: &TelemetryReceipt) {
        let topic = DeviceTopic::Receipts.for_device(device);
        let payload = serde_json::to_vec(receipt).unwrap_or_default();
        if let Err(err) = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
        {
            tracing::warn!(%device, error = %err, "cannot queue a telemetry receipt; the node sends the windows again");
        }
    }
}

/// Connects to `broker` as the control plane (over TLS for `mqtts://`, with the client
/// certificate when one is given, else with the service password) and runs the link in
/// the background; returns the publisher.
pub fn start(
    broker: &BrokerConnection,
    password: &str,
    republish: Republish,
    store: Store,
    telemetry: TelemetryStore,
    receipts: Receipts,
) -> Result<Publisher, String> {
    let mut options = MqttOptions::new(SERVICE_USER, broker.url.host.clone(), broker.url.port);
    if broker.url.tls {
        let tls = broker.tls().client_config("--mqtt-")?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    }
    if broker.client_certificate_pem.is_none() {
        options.set_credentials(SERVICE_USER, password);
    }
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    let (client, eventloop) = AsyncClient::new(options, 1024);
    let publisher = Publisher {
        client: client.clone(),
    };
    tokio::spawn(run(
        client, eventloop, republish, store, telemetry, receipts,
    ));
    Ok(publisher)
}

async fn run(
    client: AsyncClient,
    mut eventloop: rumqttc::EventLoop,
    republish: Republish,
    store: Store,
    telemetry: TelemetryStore,
    receipts: Receipts,
) {
    let mut backoff = Duration::from_millis(200);
    let mut connected_before = false;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(200);
                tracing::info!("control plane connected to the broker");
                let client = client.clone();
                let store = store.clone();
                let assignments_too = !connected_before || republish == Republish::EveryConnection;
                connected_before = true;
                tokio::spawn(async move {
                    resubscribe(&client).await;
                    if assignments_too {
                        republish_assignments(&client, &store).await;
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                if publish.topic.ends_with("/telemetry") {
                    let telemetry = telemetry.clone();
                    let store = store.clone();
                    let receipts = receipts.clone();
                    // Drift sums and sled writes stay off the connection's task.
                    tokio::task::spawn_blocking(move || {
                        handle_window(
                            &store,
                            &telemetry,
                            &receipts,
                            &publish.topic,
                            &publish.payload,
                        )
                    });
                } else {
                    handle_message(&store, &publish.topic, &publish.payload);
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "control plane lost the broker");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// After every (re)connect: subscribe again.
async fn resubscribe(client: &AsyncClient) {
    for topic in [
        DeviceTopic::Status,
        DeviceTopic::Reported,
        DeviceTopic::Telemetry,
    ] {
        if let Err(err) = client
            .subscribe(topic.for_all_devices(), QoS::AtLeastOnce)
            .await
        {
            tracing::warn!(error = %err, "cannot subscribe");
        }
    }
}

/// Publishes every device's assignment again, so a broker that lost its retained
/// messages has them back.
async fn republish_assignments(client: &AsyncClient, store: &Store) {
    let publisher = Publisher {
        client: client.clone(),
    };
    match store.devices.all() {
        Ok(devices) => {
            for device in &devices {
                publisher.publish_desired(device).await;
            }
        }
        Err(err) => tracing::error!(error = %err, "cannot read the devices to republish"),
    }
}

/// Records one message from a device; drops (and counts) anything malformed.
pub fn handle_message(store: &Store, topic: &str, payload: &[u8]) {
    let Some((device_id, kind)) = DeviceTopic::parse(topic) else {
        return malformed(topic, "not a device topic");
    };
    let _guard = store.lock();
    let mut device = match store.devices.get(device_id) {
        Ok(Some(device)) => device,
        Ok(None) => return malformed(topic, "unknown device"),
        Err(err) => return tracing::error!(error = %err, "cannot read the device"),
    };
    match kind {
        DeviceTopic::Status => match Status::parse(payload) {
            Ok(status) if status.is_stale(device.status_epoch) => {
                metrics::counter!("edgewise_mqtt_stale_status_total").increment(1);
                tracing::debug!(%topic, "ignoring the status of an earlier connection");
                return;
            }
            Ok(status) => {
                device.online = status.online;
                device.status_epoch = if status.online {
                    status.epoch
                } else {
                    status.epoch.max(device.status_epoch)
                };
            }
            Err(reason) => return malformed(topic, &reason),
        },
        DeviceTopic::Reported => match ReportedState::from_bytes(payload) {
            Ok(report) if report.device_id == device_id => device.reported = Some(report),
            Ok(report) => {
                return malformed(
                    topic,
                    &format!("report names device {:?}", report.device_id),
                );
            }
            Err(reason) => return malformed(topic, &reason),
        },
        DeviceTopic::Desired | DeviceTopic::Telemetry | DeviceTopic::Receipts => return,
    }
    device.last_seen = Some(humantime::format_rfc3339_seconds(SystemTime::now()).to_string());
    if let Err(err) = store.devices.put(device_id, &device) {
        tracing::error!(error = %err, "cannot store the device's state");
    }
}

/// Stores one telemetry window and queues its receipt; drops (and counts) anything
/// malformed.
pub fn handle_window(
    store: &Store,
    telemetry: &TelemetryStore,
    receipts: &Receipts,
    topic: &str,
    payload: &[u8],
) {
    let Some((device_id, DeviceTopic::Telemetry)) = DeviceTopic::parse(topic) else {
        return malformed(topic, "not a telemetry topic");
    };
    // A node sends a window again until its receipt arrives; when receipts run late
    // (thousands of nodes) most windows are resends, known by their key alone.
    if let Ok(header) = serde_json::from_slice::<WindowHeader>(payload)
        && header.device_id == device_id
        && telemetry
            .contains(device_id, header.window_seq)
            .unwrap_or(false)
    {
        metrics::counter!("edgewise_telemetry_windows_duplicate_total").increment(1);
        return receipts.stored(device_id, header.window_seq);
    }
    let window = match TelemetryWindow::from_bytes(payload) {
        Ok(window) if window.device_id == device_id => window,
        Ok(window) => {
            return malformed(
                topic,
                &format!("window names device {:?}", window.device_id),
            );
        }
        Err(reason) => return malformed(topic, &reason),
    };
    let Some(group) = store.devices.get_shared(device_id).map(|d| d.group.clone()) else {
        return malformed(topic, "unknown device");
    };
    let window_seq = window.window_seq;
    match telemetry.ingest(&group, window) {
        Ok(_) => receipts.stored(device_id, window_seq),
        Err(err) => tracing::error!(error = %err, "cannot store a telemetry window"),
    }
}

/// The key of a telemetry window, read without decoding the rest.
#[derive(serde::Deserialize)]
struct WindowHeader {
    device_id: String,
    window_seq: u64,
}

fn malformed(topic: &str, reason: &str) {
    metrics::counter!("edgewise_mqtt_malformed_messages_total").increment(1);
    tracing::warn!(%topic, %reason, "dropped a malformed MQTT message");
}
