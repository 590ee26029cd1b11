//! The node's local state in sled: installed bundles, the active and previous
//! versions, and the last assignment seen. It survives restarts, so a node with no
//! control plane in reach serves its last good model at once.

use std::path::{Path, PathBuf};

use edgewise_core::reported::InstalledVersion;
use edgewise_core::rotation::SignedKeyRotation;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// sled key of the active version.
const ACTIVE: &str = "active";
/// sled key of the previous version.
const PREVIOUS: &str = "previous";
/// sled key of the shadow version.
const SHADOW: &str = "shadow";
/// sled key of the last seen assignment.
const LAST_SEEN: &str = "last_seen";
/// sled key of the highest applied seq.
const APPLIED_SEQ: &str = "applied_seq";
/// sled key of the key rotations accepted from assignments.
const ROTATIONS: &str = "key_rotations";

/// Page cache of a node's store: it holds a few records and the telemetry outbox, so
/// a small cache keeps the node's memory flat (sled's default is 1 GiB).
const NODE_CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Opens a sled database at `path` keeping at most about `cache_bytes` of pages in memory.
pub fn open_database(path: &Path, cache_bytes: u64) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .open()
}

/// Errors of the local store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled failed.
    #[error("node store: {0}")]
    Sled(#[from] sled::Error),
    /// A record did not decode (the store was written by something else).
    #[error("node store record `{key}` is corrupt: {source}")]
    Corrupt {
        /// The record's key.
        key: &'static str,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The data folder could not be prepared.
    #[error("node data folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
}

/// The last assignment this node acted on, applied or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenAssignment {
    /// Its seq.
    pub seq: u64,
    /// sha256 of its exact envelope bytes, to tell a redelivery from a replay.
    pub envelope_sha256: String,
    /// Whether acting on it ended (applied, failed, or superseded). An assignment
    /// accepted but not finished, because the node stopped in the middle, is taken up
    /// again when it is redelivered.
    #[serde(default = "finished_by_default")]
    pub finished: bool,
}

/// Records written before `finished` existed were acted on to the end.
fn finished_by_default() -> bool {
    true
}

/// Creates the node's data folder with its bundle and download folders.
fn create_folders(root: &Path) -> Result<(), StoreError> {
    for folder in [
        root.to_owned(),
        root.join("bundles"),
        root.join("downloads"),
    ] {
        std::fs::create_dir_all(&folder).map_err(|source| StoreError::Folder {
            path: folder.clone(),
            source,
        })?;
    }
    Ok(())
}

/// sled key of the last window seq used.
const WINDOW_SEQ: &str = "window_seq";

/// The node's store and data folder.
#[derive(Clone)]
pub struct NodeStore {
    state: sled::Tree,
    outbox: sled::Tree,
    root: PathBuf,
}

impl NodeStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        create_folders(root)?;
        let db = open_database(&root.join("state"), NODE_CACHE_BYTES)?;
        Ok(NodeStore {
            state: db.open_tree("node")?,
            outbox: db.open_tree("outbox")?,
            root: root.to_owned(),
        })
    }

    /// Opens (creating if needed) the store of node `name` as a pair of trees in a
    /// database shared with other nodes, with its files under `root`.
    pub fn open_in(db: &sled::Db, root: &Path, name: &str) -> Result<Self, StoreError> {
        create_folders(root)?;
        Ok(NodeStore {
            state: db.open_tree(format!("{name}/node"))?,
            outbox: db.open_tree(format!("{name}/outbox"))?,
            root: root.to_owned(),
        })
    }

    /// Where the installed bundle with this hash lives.
    pub fn bundle_path(&self, sha256: &str) -> PathBuf {
        self.root.join("bundles").join(format!("{sha256}.bundle"))
    }

    /// Where a partial download of this hash lives.
    pub fn partial_path(&self, sha256: &str) -> PathBuf {
        self.root.join("downloads").join(format!("{sha256}.part"))
    }

    /// The version serving now.
    pub fn active(&self) -> Result<Option<InstalledVersion>, StoreError> {
        self.get(ACTIVE)
    }

    /// The version kept for fallback.
    pub fn previous(&self) -> Result<Option<InstalledVersion>, StoreError> {
        self.get(PREVIOUS)
    }

    /// The version running in shadow, if any.
    pub fn shadow(&self) -> Result<Option<InstalledVersion>, StoreError> {
        self.get(SHADOW)
    }

    /// Records the shadow version (applied under `seq`), or none.
    pub fn set_shadow(
        &self,
        version: Option<&InstalledVersion>,
        seq: Option<u64>,
    ) -> Result<(), StoreError> {
        match version {
            Some(version) => self.put(SHADOW, version)?,
            None => {
                self.state.remove(SHADOW)?;
            }
        }
        if let Some(seq) = seq {
            self.put(APPLIED_SEQ, &seq)?;
        }
        self.state.flush()?;
        Ok(())
    }

    /// The last assignment acted on.
    pub fn last_seen(&self) -> Result<Option<SeenAssignment>, StoreError> {
        self.get(LAST_SEEN)
    }

    /// The highest seq applied successfully (0 if none).
    pub fn applied_seq(&self) -> Result<u64, StoreError> {
        Ok(self.get(APPLIED_SEQ)?.unwrap_or(0))
    }

    /// The key rotations accepted so far, oldest first.
    pub fn rotations(&self) -> Result<Vec<SignedKeyRotation>, StoreError> {
        Ok(self.get(ROTATIONS)?.unwrap_or_default())
    }

    /// Keeps newly accepted key rotations, so a restart trusts the same keys.
    pub fn add_rotations(&self, accepted: &[SignedKeyRotation]) -> Result<(), StoreError> {
        let mut all = self.rotations()?;
        all.extend_from_slice(accepted);
        self.put(ROTATIONS, &all)?;
        self.state.flush()?;
        Ok(())
    }

    /// Records that an assignment was acted on (whatever the outcome).
    pub fn mark_seen(&self, seen: &SeenAssignment) -> Result<(), StoreError> {
        self.put(LAST_SEEN, seen)?;
        self.state.flush()?;
        Ok(())
    }

    /// Makes `version` active (applied under `seq`), keeping the old active one as
    /// previous, and removes bundles that are neither.
    pub fn activate(&self, version: &InstalledVersion, seq: u64) -> Result<(), StoreError> {
        let old = self.active()?;
        if let Some(old) = old
            .as_ref()
            .filter(|old| old.bundle_sha256 != version.bundle_sha256)
        {
            self.put(PREVIOUS, old)?;
        }
        self.put(ACTIVE, version)?;
        self.put(APPLIED_SEQ, &seq)?;
        self.state.flush()?;
        self.remove_stale_bundles()
    }

    /// Records that the active version's bundle was refused at start: `fallback` (the
    /// previous version, which serves instead, or none) becomes active, and the last
    /// assignment counts as unfinished, so its redelivery installs it again.
    pub fn abandon_active(&self, fallback: Option<&InstalledVersion>) -> Result<(), StoreError> {
        match fallback {
            Some(version) => self.put(ACTIVE, version)?,
            None => {
                self.state.remove(ACTIVE)?;
            }
        }
        self.state.remove(PREVIOUS)?;
        if let Some(mut seen) = self.last_seen()? {
            seen.finished = false;
            self.put(LAST_SEEN, &seen)?;
        }
        self.state.flush()?;
        Ok(())
    }

    /// Deletes installed bundles other than the active and previous ones.
    fn remove_stale_bundles(&self) -> Result<(), StoreError> {
        let keep: Vec<String> = [self.active()?, self.previous()?, self.shadow()?]
            .into_iter()
            .flatten()
            .map(|version| format!("{}.bundle", version.bundle_sha256))
            .collect();
        let folder = self.root.join("bundles");
        let entries = std::fs::read_dir(&folder).map_err(|source| StoreError::Folder {
            path: folder.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// The next telemetry window seq (persisted, so it only grows across restarts).
    pub fn next_window_seq(&self) -> Result<u64, StoreError> {
        let next = self.get::<u64>(WINDOW_SEQ)?.unwrap_or(0) + 1;
        self.put(WINDOW_SEQ, &next)?;
        Ok(next)
    }

    /// Keeps a closed window until the broker acknowledges it.
    pub fn add_to_outbox(&self, seq: u64, payload: &[u8]) -> Result<(), StoreError> {
        self.outbox.insert(seq.to_be_bytes(), payload)?;
        self.outbox.flush()?;
        metrics::gauge!("edgewise_telemetry_outbox_windows").set(self.outbox.len() as f64);
        Ok(())
    }

    /// Every window still waiting for an acknowledgement, oldest first.
    pub fn outbox(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        self.outbox
            .iter()
            .map(|entry| {
                let (key, value) = entry?;
                let seq = <[u8; 8]>::try_from(key.as_ref())
                    .map(u64::from_be_bytes)
                    .unwrap_or(0);
                Ok((seq, value.to_vec()))
            })
            .collect()
    }

    /// Drops an acknowledged window.
    pub fn remove_from_outbox(&self, seq: u64) -> Result<(), StoreError> {
        self.outbox.remove(seq.to_be_bytes())?;
        metrics::gauge!("edgewise_telemetry_outbox_windows").set(self.outbox.len() as f64);
        Ok(())
    }

    fn get<T: for<'de> Deserialize<'de>>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, StoreError> {
        self.state
            .get(key)?
            .map(|bytes| serde_json::from_slice(&bytes))
            .transpose()
            .map_err(|source| StoreError::Corrupt { key, source })
    }

    fn put<T: Serialize>(&self, key: &'static str, value: &T) -> Result<(), StoreError> {
        let bytes =
            serde_json::to_vec(value).map_err(|source| StoreError::Corrupt { key, source })?;
        self.state.insert(key, bytes)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(number: u64) -> InstalledVersion {
        InstalledVersion {
            model: "digits".into(),
            version: number,
            bundle_sha256: format!("{number:064}"),
        }
    }

    #[test]
    fn nodes_sharing_a_database_keep_apart_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("temporary folder");
        {
            let db = sled::open(dir.path().join("nodes.db")).expect("database");
            let first = NodeStore::open_in(&db, &dir.path().join("a"), "a").expect("store a");
            let second = NodeStore::open_in(&db, &dir.path().join("b"), "b").expect("store b");
            first.activate(&version(1), 3).expect("activate");
            second.add_to_outbox(7, b"window").expect("outbox");
            assert_eq!(second.active().expect("read"), None);
            assert!(first.outbox().expect("read").is_empty());
        }
        let db = sled::open(dir.path().join("nodes.db")).expect("database again");
        let first = NodeStore::open_in(&db, &dir.path().join("a"), "a").expect("store a");
        let second = NodeStore::open_in(&db, &dir.path().join("b"), "b").expect("store b");
        assert_eq!(first.active().expect("read"), Some(version(1)));
        assert_eq!(first.applied_seq().expect("read"), 3);
        assert_eq!(
            second.outbox().expect("read"),
            vec![(7, b"window".to_vec())]
        );
        assert!(first.bundle_path("x").starts_with(dir.path().join("a")));
    }
}
