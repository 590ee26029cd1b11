//! The node's MQTT connection: `online` with an `offline` last will on its status
//! topic, its desired topic subscribed, and its latest report published retained on
//! every change and every reconnect.

use std::time::Duration;

use edgewise_core::reported::ReportedState;
use edgewise_core::topics::{DeviceTopic, STATUS_OFFLINE, STATUS_ONLINE};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::sync::watch;

/// Keep-alive; the broker publishes the last will after 1.5 times this of silence.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Largest MQTT packet in either direction.
const MAX_PACKET_BYTES: usize = 64 * 1024;

/// Splits `mqtt://HOST:PORT` into host and port.
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| format!("mqtt.url {url:?} must start with mqtt://"))?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("mqtt.url {url:?} must name a port, as in mqtt://HOST:1883"))?;
    let port = port
        .parse()
        .map_err(|_| format!("mqtt.url {url:?}: port {port:?} is not a number"))?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}

/// The MQTT side of a node.
pub struct Link {
    client: AsyncClient,
    eventloop: rumqttc::EventLoop,
    device_id: String,
}

impl Link {
    /// Prepares the connection (it opens on the first poll).
    pub fn new(device_id: &str, url: &str, username: &str, password: &str) -> Result<Self, String> {
        let (host, port) = parse_mqtt_url(url)?;
        let mut options = MqttOptions::new(device_id, host, port);
        options
            .set_credentials(username, password)
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_last_will(LastWill::new(
                DeviceTopic::Status.for_device(device_id),
                STATUS_OFFLINE,
                QoS::AtLeastOnce,
                true,
            ));
        let (client, eventloop) = AsyncClient::new(options, 64);
        Ok(Link {
            client,
            eventloop,
            device_id: device_id.to_owned(),
        })
    }

    /// A handle for publishing `offline` at shutdown.
    pub fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// Runs until the process ends: hands each desired payload to `desired` and publishes
    /// each new report from `reports`. Reconnects with backoff.
    pub async fn run(
        mut self,
        desired: watch::Sender<Option<Vec<u8>>>,
        mut reports: watch::Receiver<ReportedState>,
    ) {
        let desired_topic = DeviceTopic::Desired.for_device(&self.device_id);
        let reported_topic = DeviceTopic::Reported.for_device(&self.device_id);
        let status_topic = DeviceTopic::Status.for_device(&self.device_id);
        let publisher = self.client.clone();
        let report_topic = reported_topic.clone();
        let mut report_changes = reports.clone();
        tokio::spawn(async move {
            while report_changes.changed().await.is_ok() {
                let payload =
                    serde_json::to_vec(&*report_changes.borrow_and_update()).unwrap_or_default();
                if let Err(err) = publisher
                    .publish(&report_topic, QoS::AtLeastOnce, true, payload)
                    .await
                {
                    tracing::warn!(error = %err, "cannot queue the report");
                }
            }
        });
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = Duration::from_millis(500);
                    tracing::info!(device = %self.device_id, "connected to the broker");
                    let report =
                        serde_json::to_vec(&*reports.borrow_and_update()).unwrap_or_default();
                    let queued = self
                        .client
                        .try_subscribe(&desired_topic, QoS::AtLeastOnce)
                        .and_then(|()| {
                            self.client.try_publish(
                                &status_topic,
                                QoS::AtLeastOnce,
                                true,
                                STATUS_ONLINE,
                            )
                        })
                        .and_then(|()| {
                            self.client
                                .try_publish(&reported_topic, QoS::AtLeastOnce, true, report)
                        });
                    if let Err(err) = queued {
                        tracing::warn!(error = %err, "cannot queue the subscription");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) if publish.topic == desired_topic => {
                    desired.send_replace(Some(publish.payload.to_vec()));
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|code| matches!(code, SubscribeReasonCode::Failure))
                    {
                        tracing::error!(topic = %desired_topic, "the broker refused the desired-topic subscription");
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, retry_in = ?backoff, "broker connection lost");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Marks the node offline and disconnects, for a clean shutdown.
pub async fn say_goodbye(client: &AsyncClient, device_id: &str) {
    let topic = DeviceTopic::Status.for_device(device_id);
    let _ = client
        .publish(topic, QoS::AtLeastOnce, true, STATUS_OFFLINE)
        .await;
    let _ = client.disconnect().await;
}
