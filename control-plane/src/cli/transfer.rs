//! Bundle uploads and downloads, each with a byte progress bar on the terminal.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

use super::client::ApiClient;
use crate::registry::VersionView;

/// Bytes sent per chunk of an upload.
const UPLOAD_CHUNK: usize = 64 * 1024;

/// A progress bar counting `total` bytes.
fn byte_bar(total: u64, message: String) -> ProgressBar {
    ProgressBar::new(total)
        .with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
        .with_message(message)
}

/// Uploads a bundle of model `name`; returns the registered version.
pub async fn upload(api: &ApiClient, name: &str, bundle: Vec<u8>) -> Result<VersionView> {
    let bar = byte_bar(bundle.len() as u64, format!("uploading {name}"));
    let progress = bar.clone();
    let chunks: Vec<Vec<u8>> = bundle.chunks(UPLOAD_CHUNK).map(<[u8]>::to_vec).collect();
    let stream = futures_util::stream::iter(chunks).map(move |chunk| {
        progress.inc(chunk.len() as u64);
        Ok::<_, std::io::Error>(chunk)
    });
    let view = api
        .post_body(
            &format!("/api/v1/models/{name}/versions"),
            reqwest::Body::wrap_stream(stream),
        )
        .await;
    bar.finish_and_clear();
    view
}

/// Downloads the bundle of `name` `version` (a number or alias) into `out`, checking
/// its sha256 against the registry's; returns the version.
pub async fn download(
    api: &ApiClient,
    name: &str,
    version: &str,
    out: &Path,
) -> Result<VersionView> {
    use sha2::{Digest, Sha256};
    let view: VersionView = api
        .get(&format!("/api/v1/models/{name}/versions/{version}"))
        .await?;
    let mut response = api
        .get_stream(&format!("/api/v1/artifacts/{}", view.bundle_sha256))
        .await?;
    let bar = byte_bar(
        view.size,
        format!("downloading {name} version {}", view.version),
    );
    let partial = out.with_extension("partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response.chunk().await.context("the download broke off")? {
        hasher.update(&chunk);
        file.write_all(&chunk)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    file.sync_all()?;
    let digest = hex::encode(hasher.finalize());
    if digest != view.bundle_sha256 {
        let _ = std::fs::remove_file(&partial);
        anyhow::bail!(
            "downloaded bundle has sha256 {digest}, the registry says {}",
            view.bundle_sha256
        );
    }
    std::fs::rename(&partial, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(view)
}

/// Fetches the bundle that `NAME@ALIAS` names in the MLflow registry at
/// `tracking_uri`, checks it against the version's sha256 tag, and registers it here.
pub async fn import_from_mlflow(
    api: &ApiClient,
    reference: &str,
    tracking_uri: &str,
) -> Result<(VersionView, edgewise_mlflow::FetchedVersion)> {
    use sha2::{Digest, Sha256};
    let (name, alias) = reference
        .split_once('@')
        .with_context(|| format!("--from-mlflow {reference:?} must be NAME@ALIAS"))?;
    let (name, alias, uri) = (name.to_owned(), alias.to_owned(), tracking_uri.to_owned());
    let fetched = tokio::task::spawn_blocking(move || {
        edgewise_mlflow::Client::new(&uri)?.fetch_by_alias(&name, &alias)
    })
    .await
    .context("the MLflow fetch stopped")??;
    let digest = hex::encode(Sha256::digest(&fetched.bundle));
    if let Some(expected) = &fetched.bundle_sha256
        && *expected != digest
    {
        anyhow::bail!(
            "the bundle fetched from MLflow hashes to {digest}, its version's tag says {expected}"
        );
    }
    let manifest_name = edgewise_core::bundle::Bundle::open(&fetched.bundle)
        .context("the MLflow artifact is not an Edgewise bundle")?
        .manifest
        .name;
    let view = upload(api, &manifest_name, fetched.bundle.clone()).await?;
    Ok((view, fetched))
}
