//! The control plane's sled store: typed trees for the registry, the fleet and the
//! deployments. Every record is JSON; every write is flushed before an answer leaves.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use edgewise_core::assignment::{Assignment, SignedAssignment};
use edgewise_core::manifest::Manifest;
use edgewise_core::reported::ReportedState;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use utoipa::ToSchema;

/// Errors of the store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled failed.
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    /// A record did not decode.
    #[error("store record {key:?} is corrupt: {source}")]
    Corrupt {
        /// Its key.
        key: String,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// One registered model version.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionRecord {
    /// Model name.
    pub model: String,
    /// Version number.
    pub version: u64,
    /// sha256 of the bundle file.
    pub bundle_sha256: String,
    /// Bundle size in bytes.
    pub size: u64,
    /// When it was registered (RFC 3339).
    pub registered_at: String,
    /// The verified manifest.
    #[schema(value_type = Object)]
    pub manifest: Manifest,
}

/// One device of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// Device id.
    pub id: String,
    /// Its group.
    pub group: String,
    /// Free labels, e.g. `canary=true`.
    pub labels: BTreeMap<String, String>,
    /// Its MQTT password hash (`$6$`).
    pub credential_hash: String,
    /// When it was registered.
    pub created_at: String,
    /// The last seq issued to it.
    pub seq: u64,
    /// Its current signed assignment, as published.
    pub desired: Option<SignedAssignment>,
    /// The same, decoded.
    pub assignment: Option<Assignment>,
    /// The deployment that issued the assignment.
    pub deployment_id: Option<String>,
    /// Its last report.
    pub reported: Option<ReportedState>,
    /// Whether its last status was `online`.
    pub online: bool,
    /// The epoch of the connection that status spoke for; news of an earlier
    /// connection (a late last will) is ignored.
    #[serde(default)]
    pub status_epoch: Option<u64>,
    /// When it was last heard from.
    pub last_seen: Option<String>,
    /// When it was revoked; a revoked device's credentials and certificate are refused.
    #[serde(default)]
    pub revoked_at: Option<String>,
}

impl DeviceRecord {
    /// Whether deployments and rollouts to `group` reach it: a member, not revoked.
    pub fn is_active_in(&self, group: &str) -> bool {
        self.group == group && self.revoked_at.is_none()
    }
}

/// What a group should run, set by its latest deployment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupTarget {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u64,
    /// The deployment that set it.
    pub deployment_id: String,
}

/// One deployment: a version sent to a whole group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeploymentRecord {
    /// Deployment id.
    pub id: String,
    /// Target group.
    pub group: String,
    /// Model name.
    pub model: String,
    /// Version.
    pub version: u64,
    /// sha256 of the bundle.
    pub bundle_sha256: String,
    /// When it was made.
    pub created_at: String,
    /// Device id → the seq of its assignment.
    pub assignments: BTreeMap<String, u64>,
}

/// The typed trees.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    /// `{model}/{version:020}` → [`VersionRecord`].
    pub versions: Table<VersionRecord>,
    /// `{model}/{alias}` → version.
    pub aliases: Table<u64>,
    /// device id → [`DeviceRecord`], with every record also decoded in memory: the
    /// rollout driver and the report path read them all the time.
    pub devices: CachedTable<DeviceRecord>,
    /// group name → [`GroupTarget`].
    pub groups: Table<GroupTarget>,
    /// deployment id → [`DeploymentRecord`].
    pub deployments: Table<DeploymentRecord>,
    /// sha256 of an issued device certificate (DER, hex) → device id.
    pub certificates: Table<String>,
    /// Serialises read-modify-write sequences.
    write_lock: Arc<Mutex<()>>,
}

/// The default of [`Store::open_with_cache`]'s page cache, in bytes. sled's own default
/// (1 GiB) lets the process grow with the data until it holds most of it in memory.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl Store {
    /// Opens the store in `path` with the default page cache.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Store::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// Opens the store in `path`; sled keeps at most about `cache_bytes` of pages in memory.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()?;
        Ok(Store {
            versions: Table::open(&db, "versions")?,
            aliases: Table::open(&db, "aliases")?,
            devices: CachedTable::open(&db, "devices")?,
            groups: Table::open(&db, "groups")?,
            deployments: Table::open(&db, "deployments")?,
            certificates: Table::open(&db, "device_certificates")?,
            db,
            write_lock: Arc::new(Mutex::new(())),
        })
    }

    /// Opens another typed tree (one that reads only part of each record is fine: a
    /// table can be written only with a type that serialises).
    pub fn table<T: DeserializeOwned>(&self, name: &str) -> Result<Table<T>, StoreError> {
        Table::open(&self.db, name)
    }

    /// Deletes the tree `name` and everything in it; returns whether it existed.
    pub fn drop_table(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.db.drop_tree(name)?)
    }

    /// Holds off other read-modify-write sequences while the guard lives.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes every write so far durable.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// A fresh unique id (monotonic).
    pub fn next_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }

    /// The next number of the sequence `name` (1, 2, …), kept apart from [`Store::next_id`]
    /// so that busy logs do not spread out the ids people type.
    pub fn next_in_sequence(&self, name: &str) -> Result<u64, StoreError> {
        let counters = self.db.open_tree("sequences")?;
        let next = counters.update_and_fetch(name, |current| {
            let value = current
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, u64::from_be_bytes);
            Some((value + 1).to_be_bytes().to_vec())
        })?;
        Ok(next
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(1, u64::from_be_bytes))
    }
}

/// The key of a model version: sorts versions numerically within a model.
pub fn version_key(model: &str, version: u64) -> String {
    format!("{model}/{version:020}")
}

/// A sled tree of JSON records of one type.
#[derive(Clone)]
pub struct Table<T> {
    tree: sled::Tree,
    _type: std::marker::PhantomData<fn() -> T>,
}

impl<T: Serialize> Table<T> {
    /// Stores `value` under `key`.
    pub fn put(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StoreError::Corrupt {
            key: key.to_owned(),
            source,
        })?;
        self.tree.insert(key, bytes)?;
        Ok(())
    }
}

impl<T: DeserializeOwned> Table<T> {
    fn open(db: &sled::Db, name: &str) -> Result<Self, StoreError> {
        Ok(Table {
            tree: db.open_tree(name)?,
            _type: std::marker::PhantomData,
        })
    }

    /// The record under `key`.
    pub fn get(&self, key: &str) -> Result<Option<T>, StoreError> {
        self.tree
            .get(key)?
            .map(|bytes| decode(key, &bytes))
            .transpose()
    }

    /// Removes `key`; returns whether it existed.
    pub fn remove(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.tree.remove(key)?.is_some())
    }

    /// Every record whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, T)>, StoreError> {
        self.iter_prefix(prefix).collect()
    }

    /// Every record whose key sorts at or after `start`, in key order.
    pub fn scan_from(&self, start: &str) -> Result<Vec<(String, T)>, StoreError> {
        self.iter_from(start).collect()
    }

    /// Like [`Table::scan`], decoding one record at a time as the iterator advances.
    pub fn iter_prefix(
        &self,
        prefix: &str,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + use<T> {
        self.tree.scan_prefix(prefix).map(decode_entry)
    }

    /// Like [`Table::scan_from`], decoding one record at a time as the iterator advances.
    pub fn iter_from(
        &self,
        start: &str,
    ) -> impl Iterator<Item = Result<(String, T), StoreError>> + use<T> {
        self.tree.range(start.as_bytes()..).map(decode_entry)
    }

    /// The greatest key, if the table holds any record.
    pub fn last_key(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .last()?
            .map(|(key, _)| String::from_utf8_lossy(&key).into_owned()))
    }

    /// The `limit` records with the greatest keys, greatest first.
    pub fn newest(&self, limit: usize) -> Result<Vec<T>, StoreError> {
        self.tree
            .iter()
            .rev()
            .take(limit)
            .map(|entry| {
                let (key, bytes) = entry?;
                decode(&String::from_utf8_lossy(&key), &bytes)
            })
            .collect()
    }

    /// Every record, in key order.
    pub fn all(&self) -> Result<Vec<T>, StoreError> {
        Ok(self.scan("")?.into_iter().map(|(_, value)| value).collect())
    }
}

/// A [`Table`] that also keeps every record decoded in memory, for a table of bounded
/// size that is read far more often than it is written. At 10,000 devices the rollout
/// driver's reads decoded 20,000 JSON records a second under the store lock; now they
/// share the decoded copies. Every write goes through here, to sled first, so the copy
/// never differs from what is stored.
#[derive(Clone)]
pub struct CachedTable<T> {
    table: Table<T>,
    records: Arc<RwLock<BTreeMap<String, Arc<T>>>>,
}

impl<T: Serialize + DeserializeOwned + Clone> CachedTable<T> {
    fn open(db: &sled::Db, name: &str) -> Result<Self, StoreError> {
        let table = Table::open(db, name)?;
        let records = table
            .iter_prefix("")
            .map(|entry| entry.map(|(key, value)| (key, Arc::new(value))))
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        Ok(CachedTable {
            table,
            records: Arc::new(RwLock::new(records)),
        })
    }

    /// The record under `key`.
    pub fn get(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self.get_shared(key).map(|record| T::clone(&record)))
    }

    /// The record under `key`, shared rather than copied.
    pub fn get_shared(&self, key: &str) -> Option<Arc<T>> {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        records.get(key).cloned()
    }

    /// Stores `value` under `key`.
    pub fn put(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        self.table.put(key, value)?;
        records.insert(key.to_owned(), Arc::new(value.clone()));
        Ok(())
    }

    /// Every record, in key order.
    pub fn all(&self) -> Result<Vec<T>, StoreError> {
        Ok(self
            .all_shared()
            .iter()
            .map(|record| T::clone(record))
            .collect())
    }

    /// Every record, in key order, shared rather than copied.
    pub fn all_shared(&self) -> Vec<Arc<T>> {
        let records = self.records.read().unwrap_or_else(PoisonError::into_inner);
        records.values().cloned().collect()
    }
}

/// Decodes one entry of a sled iterator.
fn decode_entry<T: DeserializeOwned>(
    entry: sled::Result<(sled::IVec, sled::IVec)>,
) -> Result<(String, T), StoreError> {
    let (key, bytes) = entry?;
    let key = String::from_utf8_lossy(&key).into_owned();
    let value = decode(&key, &bytes)?;
    Ok((key, value))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: key.to_owned(),
        source,
    })
}
