//! The control plane's data folder. The first start creates it with every secret the
//! control plane needs; later starts load them.
//!
//! ```text
//! DIR/store/                 sled: registry, fleet, deployments, telemetry index
//! DIR/telemetry/*.jsonl      telemetry windows, one segment file per 10 minutes
//! DIR/artifacts/<sha256>     bundle files, content-addressed
//! DIR/keys/deployment.key    the deployment signing key (and .pub)
//! DIR/keys/automation.key    the release key that signs bundles trained here (and .pub)
//! DIR/keys/release/*.pub     trusted release keys (the automation key's among them)
//! DIR/datasets/<sha256>      uploaded training data
//! DIR/jobs/<job id>/         each training job's files
//! DIR/tls/ca.pem, ca.key     the CA nodes trust for QUIC
//! DIR/tls/server.pem, .key   the QUIC server certificate
//! DIR/secrets/mqtt-service   the control plane's own MQTT password
//! DIR/secrets/admin-token    the first admin API token, made at the first start
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use edgewise_core::keys::{PublicKey, SecretKey, TrustStore};

use crate::credentials;
use crate::pki::{self, CertifiedKey};

/// The control plane's own MQTT username.
pub const SERVICE_USER: &str = "edgewise-control-plane";

/// Everything loaded from the data folder.
pub struct DataDir {
    /// The folder.
    pub root: PathBuf,
    /// The key that signs assignments.
    pub deployment_key: SecretKey,
    /// Release keys whose bundles are accepted.
    pub release_trust: TrustStore,
    /// The secret key file that signs bundles trained by the control plane.
    pub automation_key: PathBuf,
    /// The CA certificate and key.
    pub ca: CertifiedKey,
    /// The QUIC server certificate and key.
    pub server: CertifiedKey,
    /// The control plane's own MQTT password.
    pub service_password: String,
}

impl DataDir {
    /// Opens `root`, creating what is missing; trusts the release keys in `trust` from now on.
    pub fn open(root: &Path, trust: &[PathBuf], server_names: &[String]) -> Result<Self> {
        for folder in [
            "store",
            "artifacts",
            "keys/release",
            "tls",
            "secrets",
            "datasets",
            "jobs",
        ] {
            let path = root.join(folder);
            fs::create_dir_all(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        let deployment_key = load_or_create_key(&root.join("keys/deployment"))?;
        let automation = load_or_create_key(&root.join("keys/automation"))?;
        automation.public_key().save(
            &root
                .join("keys/release")
                .join(format!("{}.pub", automation.key_id())),
        )?;
        for path in trust {
            let key =
                PublicKey::load(path).with_context(|| format!("--trust {}", path.display()))?;
            key.save(
                &root
                    .join("keys/release")
                    .join(format!("{}.pub", key.key_id())),
            )?;
        }
        let release_trust = load_release_keys(&root.join("keys/release"))?;
        let ca = load_or_create_pair(&root.join("tls/ca"), pki::create_ca)?;
        let server = load_or_create_pair(&root.join("tls/server"), || {
            pki::issue_server_certificate(&ca, server_names)
        })?;
        let service_password = load_or_create_secret(&root.join("secrets/mqtt-service"))?;
        Ok(DataDir {
            root: root.to_owned(),
            deployment_key,
            release_trust,
            automation_key: root.join("keys/automation.key"),
            ca,
            server,
            service_password,
        })
    }

    /// The artifact store folder.
    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }
}

fn load_or_create_key(prefix: &Path) -> Result<SecretKey> {
    let path = prefix.with_extension("key");
    if path.exists() {
        return SecretKey::load(&path).with_context(|| format!("cannot load {}", path.display()));
    }
    let key = SecretKey::generate();
    key.save(prefix)?;
    tracing::info!(key_id = key.key_id(), path = %path.display(), "created a signing key");
    Ok(key)
}

fn load_release_keys(folder: &Path) -> Result<TrustStore> {
    let mut paths: Vec<PathBuf> = fs::read_dir(folder)?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "pub"))
        .collect();
    paths.sort();
    Ok(TrustStore::from_files(&paths)?)
}

fn load_or_create_pair(
    prefix: &Path,
    create: impl FnOnce() -> Result<CertifiedKey, rcgen::Error>,
) -> Result<CertifiedKey> {
    let certificate_path = prefix.with_extension("pem");
    let key_path = prefix.with_extension("key");
    if certificate_path.exists() && key_path.exists() {
        return Ok(CertifiedKey {
            certificate_pem: fs::read_to_string(&certificate_path)?,
            key_pem: fs::read_to_string(&key_path)?,
        });
    }
    let pair = create().context("cannot create a certificate")?;
    fs::write(&certificate_path, &pair.certificate_pem)?;
    write_private(&key_path, &pair.key_pem)?;
    Ok(pair)
}

fn load_or_create_secret(path: &Path) -> Result<String> {
    if path.exists() {
        return Ok(fs::read_to_string(path)?.trim().to_owned());
    }
    let secret = credentials::generate_password();
    write_private(path, &secret)?;
    Ok(secret)
}

/// Writes a file only its owner can read.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes())?;
    Ok(())
}
