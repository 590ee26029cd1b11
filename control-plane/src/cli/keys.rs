//! `edgewise keys …`: show the key sets, rotate the deployment key, and make, sign and
//! publish release key rotations. Release secret keys never leave this machine: the
//! document is signed here and only the signatures travel.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use edgewise_core::keys::{PublicKey, SecretKey};
use edgewise_core::rotation::{KeyRole, KeyRotation, SignedKeyRotation};
use reqwest::Method;
use serde_json::json;

use super::client::ApiClient;
use super::render::{self, table};
use crate::keyring::KeysView;

/// Signing keys and their rotations.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Both key sets, their versions and how many rotations nodes receive.
    Show,
    /// Replace the deployment key (admin); nodes learn the new key with their next
    /// assignment, which carries the rotation.
    RotateDeployment,
    /// Make the next release key rotation and sign it; publish it (admin), or write it
    /// to a file to collect more signatures with `keys sign`.
    RotateRelease {
        /// Public key files of the whole new release key set; keys left out are retired.
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// Signatures by the new set that the rotation after this one will need.
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        /// Secret key files to sign with: enough current keys and enough new keys.
        #[arg(long = "sign-with")]
        signers: Vec<PathBuf>,
        /// Write the document here instead of publishing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Add signatures to a rotation document file.
    Sign {
        /// The document (from `keys rotate-release --out`).
        document: PathBuf,
        /// Secret key files to sign with.
        #[arg(long = "with", required = true)]
        signers: Vec<PathBuf>,
    },
    /// Publish a signed release key rotation document (admin).
    Publish {
        /// The document.
        document: PathBuf,
    },
}

/// Runs one `keys` command.
pub async fn run(api: &ApiClient, json: bool, command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Show => print(json, &api.get("/api/v1/keys").await?),
        KeysCommand::RotateDeployment => {
            let view: KeysView = api
                .send_json(Method::POST, "/api/v1/keys/deployment/rotate", &json!({}))
                .await?;
            print(json, &view);
        }
        KeysCommand::RotateRelease {
            keys,
            threshold,
            signers,
            out,
        } => {
            let current: KeysView = api.get("/api/v1/keys").await?;
            let keys = keys
                .iter()
                .map(|path| {
                    PublicKey::load(path).with_context(|| format!("--key {}", path.display()))
                })
                .collect::<Result<Vec<_>>>()?;
            let issued_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
            let rotation = KeyRotation::next(
                KeyRole::Release,
                current.release.version,
                &keys,
                threshold,
                issued_at.to_string(),
            )?;
            let signers = load_signers(&signers)?;
            let signed = rotation.sign(&signers.iter().collect::<Vec<_>>());
            match out {
                Some(out) => {
                    write_document(&out, &signed)?;
                    eprintln!(
                        "release key rotation to version {} written to {}; add signatures with `edgewise keys sign`, then `edgewise keys publish`",
                        rotation.version,
                        out.display()
                    );
                }
                None => publish(api, json, &signed).await?,
            }
        }
        KeysCommand::Sign { document, signers } => {
            let mut signed = read_document(&document)?;
            for key in load_signers(&signers)? {
                signed.add_signature(&key)?;
            }
            write_document(&document, &signed)?;
            eprintln!(
                "{} now holds {} signature(s)",
                document.display(),
                signed.signatures.len()
            );
        }
        KeysCommand::Publish { document } => publish(api, json, &read_document(&document)?).await?,
    }
    Ok(())
}

/// Sends a release rotation to the control plane and prints the keys after it.
async fn publish(api: &ApiClient, json: bool, signed: &SignedKeyRotation) -> Result<()> {
    let view: KeysView = api
        .send_json(Method::POST, "/api/v1/keys/release/rotations", signed)
        .await?;
    print(json, &view);
    Ok(())
}

/// Loads secret key files.
fn load_signers(paths: &[PathBuf]) -> Result<Vec<SecretKey>> {
    if paths.is_empty() {
        bail!("name at least one secret key to sign with (--sign-with FILE.key)");
    }
    paths
        .iter()
        .map(|path| {
            SecretKey::load(path).with_context(|| format!("signing key {}", path.display()))
        })
        .collect()
}

/// Reads a rotation document file.
fn read_document(path: &Path) -> Result<SignedKeyRotation> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    SignedKeyRotation::from_bytes(&bytes).with_context(|| path.display().to_string())
}

/// Writes a rotation document file.
fn write_document(path: &Path, signed: &SignedKeyRotation) -> Result<()> {
    std::fs::write(path, signed.to_pretty_json() + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Prints the key sets.
fn print(json: bool, view: &KeysView) {
    if json {
        render::json(view);
        return;
    }
    let rows: Vec<Vec<String>> = [("release", &view.release), ("deployment", &view.deployment)]
        .into_iter()
        .map(|(role, set)| {
            vec![
                role.to_owned(),
                set.version.to_string(),
                set.threshold.to_string(),
                set.key_ids.join(" "),
            ]
        })
        .collect();
    table(&["role", "version", "threshold", "keys"], &rows);
    println!(
        "{} rotation(s) sent to nodes with each assignment",
        view.rotations.len()
    );
}
