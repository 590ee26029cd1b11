//! Moves telemetry kept in sled by earlier versions (the `windows`, `windows_by_time`,
//! `captures` and `capture_ids` trees) into segment files, once, at start.

use edgewise_core::capture::CaptureRecord;

use crate::error::Result;
use crate::telemetry_store::{StoredWindow, TelemetryStore};

/// The trees earlier versions kept telemetry in.
const OLD_TREES: [&str; 4] = ["windows", "windows_by_time", "captures", "capture_ids"];

/// Appends every window of the old trees, oldest first, carries over late labels, and
/// drops the old trees. Does nothing when there are none.
pub fn move_sled_windows(telemetry: &TelemetryStore) -> Result<()> {
    let store = &telemetry.store;
    let windows = store.table::<StoredWindow>("windows")?;
    if windows.last_key()?.is_none() {
        return Ok(());
    }
    let mut moved = 0;
    for entry in store.table::<String>("windows_by_time")?.iter_prefix("") {
        let (_, key) = entry?;
        if let Some(stored) = windows.get(&key)?
            && telemetry.append(&stored)?
        {
            moved += 1;
        }
    }
    for entry in store.table::<CaptureRecord>("captures")?.iter_prefix("") {
        let (key, capture) = entry?;
        if let (Some(id), Some(label), Some(device)) =
            (&capture.id, &capture.label, key.split('/').nth(1))
        {
            telemetry.set_label(&capture.model, device, id, label)?;
        }
    }
    telemetry.flush()?;
    for tree in OLD_TREES {
        store.drop_table(tree)?;
    }
    tracing::info!(
        windows = moved,
        "moved telemetry windows from the store into segment files"
    );
    Ok(())
}
