//! Where bundle files live: the data folder's `artifacts/` always, as the store itself
//! or, with an S3 store, as a read-through cache of the bucket. Bundles are
//! content-addressed and immutable, so a cached copy is never stale, and a control plane
//! whose folder was lost fills it again from the bucket.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::aws::s3::S3Artifacts;

/// The bundle files.
#[derive(Clone)]
pub struct ArtifactStore {
    folder: PathBuf,
    remote: Option<S3Artifacts>,
    /// One download from the bucket at a time, so a thousand nodes asking for a bundle
    /// that is not cached yet cause one download.
    fetching: Arc<tokio::sync::Mutex<()>>,
}

impl ArtifactStore {
    /// Bundles in `folder` only.
    pub fn local(folder: PathBuf) -> Self {
        ArtifactStore {
            folder,
            remote: None,
            fetching: Arc::default(),
        }
    }

    /// Bundles in `remote`, cached in `folder`.
    pub fn with_remote(folder: PathBuf, remote: S3Artifacts) -> Self {
        ArtifactStore {
            remote: Some(remote),
            ..ArtifactStore::local(folder)
        }
    }

    /// The S3 store, if bundles live there.
    pub fn remote(&self) -> Option<&S3Artifacts> {
        self.remote.as_ref()
    }

    /// The local folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Where the local copy of bundle `sha256` is (or would be).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.folder.join(sha256)
    }

    /// Makes a newly written local bundle durable in the S3 store (nothing to do without one).
    pub async fn publish(&self, sha256: &str) -> Result<(), String> {
        match &self.remote {
            Some(remote) => remote.upload(sha256, &self.path(sha256)).await,
            None => Ok(()),
        }
    }

    /// The local path of bundle `sha256`, downloading it from the S3 store first if it
    /// is not cached.
    pub async fn local_copy(&self, sha256: &str) -> Result<PathBuf, String> {
        let path = self.path(sha256);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let Some(remote) = &self.remote else {
            return Err(format!("no artifact {sha256}"));
        };
        let _one_at_a_time = self.fetching.lock().await;
        if !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            if !remote.contains(sha256).await? {
                return Err(format!("no artifact {sha256}"));
            }
            remote.download(sha256, &path).await?;
            tracing::info!(sha256, store = %remote.describe(), "bundle cached from S3");
        }
        Ok(path)
    }

    /// Removes bundle `sha256` from the cache and the S3 store.
    pub async fn remove(&self, sha256: &str) -> Result<(), String> {
        let _ = tokio::fs::remove_file(self.path(sha256)).await;
        match &self.remote {
            Some(remote) => remote.delete(sha256).await,
            None => Ok(()),
        }
    }

    /// A URL that fetches bundle `sha256` straight from S3 for `ttl`; `None` without an
    /// S3 store.
    pub async fn presigned_url(
        &self,
        sha256: &str,
        ttl: Duration,
    ) -> Option<Result<String, String>> {
        let remote = self.remote.as_ref()?;
        Some(remote.presigned_url(sha256, ttl).await)
    }

    /// Uploads every bundle in `registered` that the S3 store lacks (a control plane
    /// moved from a local store to S3, or a push whose upload failed); returns how many.
    pub async fn reconcile(&self, registered: &[String]) -> Result<usize, String> {
        let Some(remote) = &self.remote else {
            return Ok(0);
        };
        let stored = remote.stored().await?;
        let mut uploaded = 0;
        for sha256 in registered.iter().filter(|sha| !stored.contains(*sha)) {
            if tokio::fs::try_exists(self.path(sha256))
                .await
                .unwrap_or(false)
            {
                remote.upload(sha256, &self.path(sha256)).await?;
                uploaded += 1;
            } else {
                tracing::error!(sha256, store = %remote.describe(), "a registered bundle is neither in S3 nor cached here");
            }
        }
        Ok(uploaded)
    }
}
