//! Closing telemetry windows on a timer: each closed window goes to the sled outbox
//! first, then out through the link, which retires it when the control plane's receipt
//! names it.

use std::time::Duration;

use super::link::Publisher;
use super::store::NodeStore;
use crate::observe::Recorder;

/// Closes a window every `interval` until the process ends.
pub async fn run(
    device_id: String,
    store: NodeStore,
    recorder: Recorder,
    publisher: Publisher,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let windows = recorder.close_windows(&device_id, || store.next_window_seq().unwrap_or(0));
        for window in &windows {
            let payload = serde_json::to_vec(window).unwrap_or_default();
            match store.add_to_outbox(window.window_seq, &payload) {
                Ok(()) => metrics::counter!("edgewise_telemetry_windows_total").increment(1),
                Err(err) => tracing::error!(error = %err, "cannot keep a telemetry window"),
            }
        }
        publisher.flush_outbox(&store);
    }
}
