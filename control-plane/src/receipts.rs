//! Telemetry receipts. A broker's PUBACK only says the broker took a window: an
//! external broker drops it when the control plane is not subscribed at that moment
//! (after the broker restarts, or while the control plane reconnects). So a node keeps
//! each window in its outbox until the control plane says it stored it.
//!
//! Every path that stores a window (the embedded broker's publish hook, the
//! subscription to an external broker) calls [`Receipts::stored`]. A task batches
//! those for up to [`BATCH_WINDOW`], flushes the telemetry so the windows are on disk, and
//! publishes one [`TelemetryReceipt`] per device on its `receipts` topic.

use std::collections::BTreeMap;
use std::time::Duration;

use edgewise_core::telemetry::TelemetryReceipt;
use tokio::sync::mpsc;

use crate::mqtt_link::Publisher;
use crate::telemetry_store::TelemetryStore;

/// How long stored windows are gathered before one flush and their receipts.
const BATCH_WINDOW: Duration = Duration::from_millis(100);

/// Receipts waiting to be sent; past this, new ones are dropped (the node sends the
/// window again, and the control plane de-duplicates it).
const QUEUE_LIMIT: usize = 65_536;

/// The sending side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Receipts {
    sender: mpsc::Sender<(String, u64)>,
}

/// The receiving side, for [`run`].
pub struct PendingReceipts(mpsc::Receiver<(String, u64)>);

impl Receipts {
    /// A new queue of receipts.
    pub fn channel() -> (Receipts, PendingReceipts) {
        let (sender, receiver) = mpsc::channel(QUEUE_LIMIT);
        (Receipts { sender }, PendingReceipts(receiver))
    }

    /// Records that `device`'s window `window_seq` is stored (or was already).
    pub fn stored(&self, device: &str, window_seq: u64) {
        if self
            .sender
            .try_send((device.to_owned(), window_seq))
            .is_err()
        {
            metrics::counter!("edgewise_telemetry_receipts_dropped_total").increment(1);
        }
    }
}

/// Sends receipts until the process ends: each batch is flushed to disk first.
pub async fn run(
    PendingReceipts(mut receiver): PendingReceipts,
    telemetry: TelemetryStore,
    publisher: Publisher,
) {
    while let Some(first) = receiver.recv().await {
        let mut batch: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        batch.entry(first.0).or_default().push(first.1);
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while let Ok(Some((device, seq))) = tokio::time::timeout_at(deadline, receiver.recv()).await
        {
            batch.entry(device).or_default().push(seq);
        }
        let flushing = telemetry.clone();
        match tokio::task::spawn_blocking(move || flushing.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(error = %err, "cannot flush stored telemetry; no receipts sent");
                continue;
            }
            Err(err) => {
                tracing::error!(error = %err, "flushing stored telemetry failed");
                continue;
            }
        }
        for (device, window_seqs) in batch {
            publisher
                .publish_receipt(&device, &TelemetryReceipt { window_seqs })
                .await;
        }
    }
}
