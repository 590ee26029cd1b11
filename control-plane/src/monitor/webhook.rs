//! Delivers alert notifications to webhook receivers, one POST per change, in the JSON
//! shape Alertmanager sends (`version: "4"`), so any receiver written for Alertmanager
//! (chat bridges, paging services) takes them unchanged.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::alerts::Alert;

/// Tries per notification and receiver before it counts as failed.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubled after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Time allowed for one POST.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The Alertmanager webhook body for one alert.
pub fn payload(alert: &Alert, external_url: &str) -> Value {
    let name = alert.labels.get("alertname").cloned().unwrap_or_default();
    json!({
        "version": "4",
        "groupKey": format!("{{}}:{{alertname=\"{name}\", fingerprint=\"{}\"}}", alert.fingerprint),
        "truncatedAlerts": 0,
        "status": alert.status,
        "receiver": "edgewise",
        "groupLabels": { "alertname": name },
        "commonLabels": alert.labels,
        "commonAnnotations": alert.annotations,
        "externalURL": external_url,
        "alerts": [alert],
    })
}

/// Starts the delivery task; notifications are sent in the order they are queued.
pub fn start(receivers: Vec<String>, external_url: String) -> mpsc::UnboundedSender<Alert> {
    let (sender, mut queue) = mpsc::unbounded_channel::<Alert>();
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(error = %err, "cannot build the webhook client");
                return;
            }
        };
        while let Some(alert) = queue.recv().await {
            let body = payload(&alert, &external_url);
            for receiver in &receivers {
                let outcome = if deliver(&client, receiver, &body).await {
                    "sent"
                } else {
                    "failed"
                };
                metrics::counter!(
                    "edgewise_alert_notifications_total",
                    "alertname" => alert.labels.get("alertname").cloned().unwrap_or_default(),
                    "status" => alert.status.clone(),
                    "outcome" => outcome
                )
                .increment(1);
            }
        }
    });
    sender
}

/// POSTs `body` to `receiver`, retrying with backoff; returns whether it was accepted.
async fn deliver(client: &reqwest::Client, receiver: &str, body: &Value) -> bool {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match client.post(receiver).json(body).send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => {
                tracing::warn!(%receiver, attempt, status = %response.status(), "webhook refused the notification")
            }
            Err(err) => tracing::warn!(%receiver, attempt, error = %err, "webhook unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
    tracing::error!(%receiver, "gave up delivering an alert notification");
    false
}
