//! The node's MQTT connection: `online` with an `offline` last will on its status
//! topic, its desired and receipts topics subscribed, its latest report published
//! retained on every change and reconnect, and its telemetry outbox drained.
//!
//! A window leaves the outbox only when the control plane's receipt names it: a
//! broker's PUBACK says only that the broker took it, and an external broker drops
//! what arrives while the control plane is not subscribed (after the broker restarts,
//! say). A window acked by the broker and still without a receipt after
//! [`RECEIPT_TIMEOUT`] is sent again, and after a reconnect everything still in the
//! outbox is; the control plane de-duplicates.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use edgewise_core::node_config::MqttSettings;
use edgewise_core::reported::ReportedState;
use edgewise_core::telemetry::TelemetryReceipt;
use edgewise_core::topics::{DeviceTopic, Status};
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use tokio::sync::watch;

use super::store::NodeStore;

/// Keep-alive; the broker publishes the last will after 1.5 times this of silence (a
/// node that stops cleanly or crashes is seen offline at once, when its connection
/// closes). Shorter keep-alives cost a fleet its connections when the broker is busy:
/// a ping answered late drops the connection, and thousands reconnect at once.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// Largest MQTT packet in either direction.
const MAX_PACKET_BYTES: usize = 1024 * 1024;

/// How long a window the broker acked may wait for the control plane's receipt before
/// it is sent again.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often windows past [`RECEIPT_TIMEOUT`] are looked for.
const RESEND_CHECK: Duration = Duration::from_secs(5);

/// A publish waiting for the link task to hand it to rumqttc.
struct WaitingPublish {
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    window: Option<u64>,
}

/// Which queued publishes carry which outbox window, in the order rumqttc sends them.
/// Only the link task touches rumqttc's queue, so this order cannot drift.
#[derive(Default)]
struct Tracking {
    /// Publishes not yet handed to rumqttc.
    waiting: VecDeque<WaitingPublish>,
    /// One entry per queued publish, oldest first: the window it carries, if any.
    queued: VecDeque<Option<u64>>,
    /// Packet id → window, for publishes sent and not yet acknowledged.
    in_flight: HashMap<u16, u64>,
    /// Windows queued or in flight, so a flush does not send them twice.
    pending: HashSet<u64>,
    /// Windows the broker acked, waiting for the control plane's receipt: since when.
    awaiting: HashMap<u64, Instant>,
}

/// Publishes through the node's connection, tracking outbox windows until acked.
#[derive(Clone)]
pub struct Publisher {
    client: AsyncClient,
    tracking: Arc<Mutex<Tracking>>,
    wake: Arc<tokio::sync::Notify>,
    device_id: String,
    /// The current connection's epoch, sent with every `status`.
    epoch: Arc<AtomicU64>,
}

impl Publisher {
    /// The `status` payload of the current connection.
    fn status(&self, online: bool) -> Vec<u8> {
        Status {
            online,
            epoch: Some(self.epoch.load(Ordering::Relaxed)),
        }
        .to_payload()
    }

    fn tracking(&self) -> MutexGuard<'_, Tracking> {
        self.tracking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a publish for the link task; `window` tags a telemetry window from the outbox.
    fn publish(&self, topic: &str, payload: Vec<u8>, retain: bool, window: Option<u64>) {
        let mut tracking = self.tracking();
        if let Some(seq) = window
            && !tracking.pending.insert(seq)
        {
            return;
        }
        tracking.waiting.push_back(WaitingPublish {
            topic: topic.to_owned(),
            payload,
            retain,
            window,
        });
        drop(tracking);
        self.wake.notify_one();
    }

    /// Hands waiting publishes to rumqttc (from the link task only), recording the
    /// order in which they will go out.
    fn hand_over(&self) {
        let mut tracking = self.tracking();
        while let Some(next) = tracking.waiting.pop_front() {
            match self.client.try_publish(
                &next.topic,
                QoS::AtLeastOnce,
                next.retain,
                next.payload.clone(),
            ) {
                Ok(()) => tracking.queued.push_back(next.window),
                Err(_) => {
                    tracking.waiting.push_front(next);
                    break;
                }
            }
        }
    }

    /// rumqttc drops what was queued or unacked when a clean session breaks: forget it
    /// here too, so the outbox sends those windows again after the reconnect.
    fn forget_unsent(&self) {
        let mut tracking = self.tracking();
        tracking
            .waiting
            .retain(|outgoing| outgoing.window.is_none());
        tracking.queued.clear();
        tracking.in_flight.clear();
        tracking.pending.clear();
        tracking.awaiting.clear();
    }

    /// Sends again the windows whose receipt is overdue.
    fn resend_overdue(&self, store: &NodeStore) {
        let overdue: HashSet<u64> = {
            let mut tracking = self.tracking();
            let overdue: HashSet<u64> = tracking
                .awaiting
                .iter()
                .filter(|(_, since)| since.elapsed() >= RECEIPT_TIMEOUT)
                .map(|(seq, _)| *seq)
                .collect();
            tracking.awaiting.retain(|seq, _| !overdue.contains(seq));
            overdue
        };
        if overdue.is_empty() {
            return;
        }
        metrics::counter!("edgewise_telemetry_windows_resent_total")
            .increment(overdue.len() as u64);
        tracing::info!(
            windows = overdue.len(),
            "no receipt for telemetry windows; sending them again"
        );
        self.send_outbox(store, |seq| overdue.contains(&seq));
    }

    /// Retires the windows a receipt names.
    fn retire(&self, store: &NodeStore, payload: &[u8]) {
        let receipt = match TelemetryReceipt::from_bytes(payload) {
            Ok(receipt) => receipt,
            Err(reason) => {
                metrics::counter!("edgewise_malformed_receipts_total").increment(1);
                tracing::warn!(%reason, "dropped a malformed telemetry receipt");
                return;
            }
        };
        for seq in receipt.window_seqs {
            self.tracking().awaiting.remove(&seq);
            if let Err(err) = store.remove_from_outbox(seq) {
                tracing::error!(error = %err, "cannot retire a stored window");
            }
        }
    }

    /// Sends every outbox window not already on its way or waiting for its receipt.
    pub fn flush_outbox(&self, store: &NodeStore) {
        let awaiting: HashSet<u64> = self.tracking().awaiting.keys().copied().collect();
        self.send_outbox(store, |seq| !awaiting.contains(&seq));
    }

    /// Sends the outbox windows `wanted` picks.
    fn send_outbox(&self, store: &NodeStore, wanted: impl Fn(u64) -> bool) {
        let topic = DeviceTopic::Telemetry.for_device(&self.device_id);
        match store.outbox() {
            Ok(windows) => {
                for (seq, payload) in windows.into_iter().filter(|(seq, _)| wanted(*seq)) {
                    self.publish(&topic, payload, false, Some(seq));
                }
            }
            Err(err) => tracing::error!(error = %err, "cannot read the telemetry outbox"),
        }
    }
}

/// The MQTT side of a node.
pub struct Link {
    eventloop: rumqttc::EventLoop,
    publisher: Publisher,
}

impl Link {
    /// Prepares the connection (it opens on the first poll): over TLS for `mqtts://`,
    /// with the device's client certificate where the settings hold one, else with its
    /// username and password.
    pub fn new(device_id: &str, settings: &MqttSettings) -> Result<Self, String> {
        let broker = settings.broker()?;
        let mut options = MqttOptions::new(device_id, broker.host, broker.port);
        if broker.tls {
            let tls = settings.tls().client_config("mqtt.")?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
        }
        if !settings.uses_client_certificate() {
            options.set_credentials(&settings.username, &settings.password);
        }
        options
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
        let epoch = next_epoch(0);
        options.set_last_will(last_will(device_id, epoch));
        let (client, eventloop) = AsyncClient::new(options, 256);
        Ok(Link {
            eventloop,
            publisher: Publisher {
                client,
                tracking: Arc::default(),
                wake: Arc::default(),
                device_id: device_id.to_owned(),
                epoch: Arc::new(AtomicU64::new(epoch)),
            },
        })
    }

    /// Gives the next connection a new epoch, in its last will too.
    fn renew_epoch(&mut self) {
        let epoch = next_epoch(self.publisher.epoch.load(Ordering::Relaxed));
        self.publisher.epoch.store(epoch, Ordering::Relaxed);
        self.eventloop
            .mqtt_options
            .set_last_will(last_will(&self.publisher.device_id, epoch));
    }

    /// A handle for publishing (telemetry, and `offline` at shutdown).
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// Runs until the process ends: hands each desired payload to `desired`, publishes
    /// each new report from `reports`, and retires outbox windows as receipts name them.
    pub async fn run(
        mut self,
        store: NodeStore,
        desired: watch::Sender<Option<Vec<u8>>>,
        reports: watch::Receiver<ReportedState>,
    ) {
        let publisher = self.publisher.clone();
        let device_id = publisher.device_id.clone();
        let desired_topic = DeviceTopic::Desired.for_device(&device_id);
        let reported_topic = DeviceTopic::Reported.for_device(&device_id);
        let status_topic = DeviceTopic::Status.for_device(&device_id);
        let receipts_topic = DeviceTopic::Receipts.for_device(&device_id);
        let report_publisher = publisher.clone();
        let report_topic = reported_topic.clone();
        let mut report_changes = reports.clone();
        tokio::spawn(async move {
            while report_changes.changed().await.is_ok() {
                let payload =
                    serde_json::to_vec(&*report_changes.borrow_and_update()).unwrap_or_default();
                report_publisher.publish(&report_topic, payload, true, None);
            }
        });
        // Publishes are handed to rumqttc beside the event loop, never by interrupting
        // it: a `poll` cancelled in the middle of a connect drops that connection and
        // opens another, and the broker then publishes the dropped one's last will,
        // an `offline` with the same epoch as the live connection's `online`.
        let handing_over = async {
            let mut resend_check = tokio::time::interval(RESEND_CHECK);
            loop {
                tokio::select! {
                    () = publisher.wake.notified() => {}
                    _ = resend_check.tick() => publisher.resend_overdue(&store),
                }
                publisher.hand_over();
            }
        };
        let polling = async {
            let mut backoff = Duration::from_millis(500);
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(500);
                        tracing::info!(device = %device_id, "connected to the broker");
                        for topic in [&desired_topic, &receipts_topic] {
                            if let Err(err) =
                                publisher.client.try_subscribe(topic, QoS::AtLeastOnce)
                            {
                                tracing::warn!(error = %err, %topic, "cannot queue the subscription");
                            }
                        }
                        publisher.publish(&status_topic, publisher.status(true), true, None);
                        let report = serde_json::to_vec(&*reports.borrow()).unwrap_or_default();
                        publisher.publish(&reported_topic, report, true, None);
                        publisher.flush_outbox(&store);
                        publisher.hand_over();
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                        let mut tracking = publisher.tracking();
                        if let Some(Some(seq)) = tracking.queued.pop_front() {
                            tracking.in_flight.insert(pkid, seq);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        let mut tracking = publisher.tracking();
                        if let Some(seq) = tracking.in_flight.remove(&ack.pkid) {
                            tracking.pending.remove(&seq);
                            tracking.awaiting.insert(seq, Instant::now());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(publish)))
                        if publish.topic == desired_topic =>
                    {
                        desired.send_replace(Some(publish.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::Publish(publish)))
                        if publish.topic == receipts_topic =>
                    {
                        publisher.retire(&store, &publish.payload);
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if ack
                            .return_codes
                            .iter()
                            .any(|code| matches!(code, SubscribeReasonCode::Failure))
                        {
                            tracing::error!(device = %device_id, "the broker refused a subscription (desired or receipts)");
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        publisher.forget_unsent();
                        self.renew_epoch();
                        tracing::warn!(error = %err, retry_in = ?backoff, "broker connection lost");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        };
        tokio::join!(handing_over, polling);
    }
}

/// A connection epoch after `previous`: the wall clock in milliseconds, so epochs
/// also grow across restarts, and never less than `previous + 1`.
fn next_epoch(previous: u64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    now.max(previous + 1)
}

/// The `offline` status the broker publishes if the connection of `epoch` drops.
fn last_will(device_id: &str, epoch: u64) -> LastWill {
    LastWill::new(
        DeviceTopic::Status.for_device(device_id),
        Status {
            online: false,
            epoch: Some(epoch),
        }
        .to_payload(),
        QoS::AtLeastOnce,
        true,
    )
}

/// Marks the node offline and disconnects, for a clean shutdown.
pub async fn say_goodbye(publisher: &Publisher) {
    let topic = DeviceTopic::Status.for_device(&publisher.device_id);
    let _ = publisher
        .client
        .publish(topic, QoS::AtLeastOnce, true, publisher.status(false))
        .await;
    let _ = publisher.client.disconnect().await;
}
