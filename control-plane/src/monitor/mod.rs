//! The fleet monitor: every few seconds it reads the fleet, the rollouts and the last
//! minutes of telemetry into a [`Snapshot`], sets the fleet gauges from it, and raises
//! or resolves the control plane's own alerts, which go to the configured webhooks.

pub mod alerts;
mod gauges;
pub mod webhook;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::error::Result;
use crate::rollout::RolloutRecord;
use crate::store::{DeviceRecord, Store};
use crate::telemetry_store::TelemetryStore;
use crate::telemetry_views::VersionHealth;
use alerts::{Alert, AlertBook, AlertSettings};

/// How far back the fleet health gauges and the drift alert look.
pub const HEALTH_WINDOW_SECONDS: u64 = 300;

/// The longest pass interval: gauges not set for a minute drop out of `/metrics`.
pub const MAX_INTERVAL: Duration = Duration::from_secs(30);

/// What one monitor pass reads.
#[derive(Debug)]
pub struct Snapshot {
    /// When it was read.
    pub now: SystemTime,
    /// Every device.
    pub devices: Vec<DeviceRecord>,
    /// Every rollout.
    pub rollouts: Vec<RolloutRecord>,
    /// Each model version's recent telemetry, fleet-wide and per group.
    pub health: Vec<VersionHealth>,
    /// When the newest telemetry window arrived (Unix seconds).
    pub last_received_at: Option<u64>,
}

impl Snapshot {
    /// Reads the snapshot from the store.
    pub fn read(store: &Store, telemetry: &TelemetryStore) -> Result<Self> {
        Ok(Snapshot {
            now: SystemTime::now(),
            devices: store.devices.all()?,
            rollouts: store.table::<RolloutRecord>("rollouts")?.all()?,
            health: telemetry.recent_health(HEALTH_WINDOW_SECONDS)?,
            last_received_at: telemetry.last_received_at()?,
        })
    }
}

/// How the monitor runs.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    /// Time between passes (at most [`MAX_INTERVAL`]).
    pub interval: Duration,
    /// When alerts fire.
    pub settings: AlertSettings,
    /// Webhook URLs that receive every notification.
    pub webhooks: Vec<String>,
    /// The control plane's own URL, for links in notifications.
    pub external_url: String,
}

/// Called after every pass with the snapshot and the alerts firing.
pub type PassHook = Box<dyn Fn(&Snapshot, &[Alert]) + Send + Sync>;

/// A handle on the running monitor.
#[derive(Clone, Default)]
pub struct Monitor {
    book: Arc<Mutex<AlertBook>>,
}

impl Monitor {
    /// Starts the monitor's loop.
    pub fn start(
        store: Store,
        telemetry: TelemetryStore,
        options: MonitorOptions,
        hooks: Vec<PassHook>,
    ) -> Monitor {
        gauges::describe();
        let monitor = Monitor::default();
        let notifications = (!options.webhooks.is_empty())
            .then(|| webhook::start(options.webhooks.clone(), options.external_url.clone()));
        let running = monitor.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(options.interval.min(MAX_INTERVAL));
            loop {
                ticks.tick().await;
                let (store, telemetry) = (store.clone(), telemetry.clone());
                match tokio::task::spawn_blocking(move || Snapshot::read(&store, &telemetry)).await
                {
                    Ok(Ok(snapshot)) => {
                        running.pass(&snapshot, &options, notifications.as_ref());
                        let firing = running.firing();
                        for hook in &hooks {
                            hook(&snapshot, &firing);
                        }
                    }
                    Ok(Err(err)) => tracing::error!(error = %err, "monitor cannot read the fleet"),
                    Err(err) => tracing::error!(error = %err, "monitor pass panicked"),
                }
            }
        });
        monitor
    }

    /// One pass: alerts, then gauges.
    fn pass(
        &self,
        snapshot: &Snapshot,
        options: &MonitorOptions,
        notifications: Option<&mpsc::UnboundedSender<Alert>>,
    ) {
        let found = alerts::conditions(snapshot, &options.settings);
        let mut book = self.book();
        let changes = book.update(found, snapshot.now, &options.external_url);
        for alert in changes {
            tracing::warn!(
                status = %alert.status,
                alert = alert.labels.get("alertname").map_or("", String::as_str),
                summary = alert.annotations.get("summary").map_or("", String::as_str),
                "alert"
            );
            if let Some(queue) = notifications
                && queue.send(alert).is_err()
            {
                tracing::error!("the webhook sender stopped");
            }
        }
        gauges::set(snapshot, &book);
    }

    fn book(&self) -> MutexGuard<'_, AlertBook> {
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The alerts firing now.
    pub fn firing(&self) -> Vec<Alert> {
        self.book().firing()
    }
}
