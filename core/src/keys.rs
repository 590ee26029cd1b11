//! Ed25519 release keys, their key files, detached signatures and the trust store.
//!
//! Every key has a key id: the first 16 lower-case hex characters of the sha256 of
//! its 32 public key bytes. Signatures name the key id that made them, so a node can
//! trust several keys at once and release keys can rotate.
//!
//! Key files are JSON. A secret key file (written with mode 0600 on unix) is
//!
//! ```json
//! {"type":"edgewise-ed25519-secret-key","key_id":"<16 hex>","secret_key":"<base64 of the 32-byte seed>"}
//! ```
//!
//! and a public key file is
//!
//! ```json
//! {"type":"edgewise-ed25519-public-key","key_id":"<16 hex>","public_key":"<base64 of the 32 bytes>"}
//! ```
//!
//! Base64 is the standard alphabet with padding. Loading checks the `type`, the
//! base64, the key length and that `key_id` matches the key; errors name the file and
//! the field.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::bundle::sha256_hex;

/// The only signature algorithm, as named in [`DetachedSignature::algorithm`].
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

/// The `type` of a secret key file.
pub const SECRET_KEY_TYPE: &str = "edgewise-ed25519-secret-key";

/// The `type` of a public key file.
pub const PUBLIC_KEY_TYPE: &str = "edgewise-ed25519-public-key";

/// Length of a key id in hex characters.
const KEY_ID_LEN: usize = 16;

/// Length in bytes of an ed25519 seed or public key.
const KEY_LEN: usize = 32;

/// Errors from key files, signing and verification.
#[derive(Debug, Error)]
pub enum KeyError {
    /// A key file could not be read.
    #[error("cannot read key file {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// A key file could not be written.
    #[error("cannot write key file {path}: {source}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// A key file is not JSON of the expected shape.
    #[error("key file {path} is not a valid key file: {source}")]
    Json {
        /// The key file.
        path: PathBuf,
        /// The JSON error (names a missing or unknown field).
        source: serde_json::Error,
    },
    /// One field of a key file is wrong.
    #[error("key file {path}: field `{field}` {problem}")]
    Field {
        /// The key file.
        path: PathBuf,
        /// The JSON field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The signature was made by a key that is not trusted.
    #[error("signature is by key {key_id}, which is not trusted (trusted key ids: {})", list_or_none(.trusted))]
    UntrustedKey {
        /// The key id named by the signature.
        key_id: String,
        /// The key ids that are trusted.
        trusted: Vec<String>,
    },
    /// The signature does not match the signed bytes.
    #[error(
        "signature by key {key_id} does not match the signed bytes: they were changed after signing or the signature is corrupt"
    )]
    BadSignature {
        /// The key id named by the signature.
        key_id: String,
    },
    /// The signature is not a well-formed ed25519 signature.
    #[error("malformed signature: {0}")]
    MalformedSignature(String),
}

/// Formats key ids for an error message.
fn list_or_none(key_ids: &[String]) -> String {
    if key_ids.is_empty() {
        "none".to_owned()
    } else {
        key_ids.join(", ")
    }
}

/// The key id of a public key: 16 hex characters of the sha256 of its bytes.
fn key_id_of(key: &VerifyingKey) -> String {
    let mut id = sha256_hex(key.as_bytes());
    id.truncate(KEY_ID_LEN);
    id
}

/// A detached signature over some bytes, as stored in a bundle's `manifest.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachedSignature {
    /// Signature algorithm; always `ed25519`.
    pub algorithm: String,
    /// Key id of the key that signed.
    pub key_id: String,
    /// Base64 of the 64 signature bytes.
    pub signature: String,
}

impl DetachedSignature {
    /// Decodes the ed25519 signature, checking the algorithm, base64 and length.
    fn decode(&self) -> Result<Signature, KeyError> {
        if self.algorithm != SIGNATURE_ALGORITHM {
            return Err(KeyError::MalformedSignature(format!(
                "algorithm is {:?}, expected {SIGNATURE_ALGORITHM:?}",
                self.algorithm
            )));
        }
        let bytes = BASE64.decode(&self.signature).map_err(|e| {
            KeyError::MalformedSignature(format!("signature is not valid base64: {e}"))
        })?;
        let bytes: [u8; 64] = bytes.as_slice().try_into().map_err(|_| {
            KeyError::MalformedSignature(format!(
                "signature must hold 64 bytes, found {}",
                bytes.len()
            ))
        })?;
        Ok(Signature::from_bytes(&bytes))
    }
}

/// The JSON layout of a secret key file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretKeyFile {
    #[serde(rename = "type")]
    kind: String,
    key_id: String,
    secret_key: String,
}

/// The JSON layout of a public key file; also embedded in node configs and trust bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicKeyDocument {
    /// Always [`PUBLIC_KEY_TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The key id, checked against the key on load.
    pub key_id: String,
    /// Base64 of the 32 public key bytes.
    pub public_key: String,
}

/// Reads and parses a JSON key file.
fn read_key_file<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, KeyError> {
    let bytes = fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| KeyError::Json {
        path: path.to_owned(),
        source,
    })
}

/// Serialises a key file for `path` as pretty JSON with a trailing newline.
fn key_file_json<T: Serialize>(path: &Path, file: &T) -> Result<Vec<u8>, KeyError> {
    let mut json = serde_json::to_vec_pretty(file).map_err(|e| KeyError::Write {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    json.push(b'\n');
    Ok(json)
}

/// Builds a [`KeyError::Field`].
fn field_error(path: &Path, field: &'static str, problem: String) -> KeyError {
    KeyError::Field {
        path: path.to_owned(),
        field,
        problem,
    }
}

/// Checks the `type` field of a key file.
fn check_type(path: &Path, found: &str, expected: &str) -> Result<(), KeyError> {
    if found == expected {
        Ok(())
    } else {
        Err(field_error(
            path,
            "type",
            format!("is {found:?}, expected {expected:?}"),
        ))
    }
}

/// Decodes a base64 field holding exactly 32 key bytes.
fn decode_key_bytes(
    path: &Path,
    field: &'static str,
    text: &str,
) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| field_error(path, field, format!("is not valid base64: {e}")))?;
    bytes.as_slice().try_into().map_err(|_| {
        field_error(
            path,
            field,
            format!("must hold {KEY_LEN} bytes, found {}", bytes.len()),
        )
    })
}

/// Checks that the `key_id` field matches the key's actual id.
fn check_key_id(path: &Path, found: &str, actual: &str) -> Result<(), KeyError> {
    if found == actual {
        Ok(())
    } else {
        Err(field_error(
            path,
            "key_id",
            format!("is {found:?} but the key's id is {actual:?}"),
        ))
    }
}

/// Writes a file, creating it anew or replacing it.
fn write_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    fs::write(path, contents).map_err(|source| KeyError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes a new file readable only by its owner; refuses to replace an existing one.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(contents))
        .map_err(|source| KeyError::Write {
            path: path.to_owned(),
            source,
        })
}

/// `prefix` with `suffix` appended to its last component.
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut path = prefix.as_os_str().to_owned();
    path.push(suffix);
    PathBuf::from(path)
}

/// An ed25519 signing key with its key id.
#[derive(Clone)]
pub struct SecretKey {
    signing: SigningKey,
    key_id: String,
}

impl std::fmt::Debug for SecretKey {
    /// Shows the key id only, never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Generates a new key from the operating system's random source.
    pub fn generate() -> Self {
        let mut seed = [0u8; KEY_LEN];
        rand::fill(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// The key for a 32-byte seed.
    fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let key_id = key_id_of(&signing.verifying_key());
        Self { signing, key_id }
    }

    /// The key id (16 lower-case hex characters).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            verifying: self.signing.verifying_key(),
            key_id: self.key_id.clone(),
        }
    }

    /// Signs `message`, naming this key's id in the signature.
    pub fn sign(&self, message: &[u8]) -> DetachedSignature {
        DetachedSignature {
            algorithm: SIGNATURE_ALGORITHM.to_owned(),
            key_id: self.key_id.clone(),
            signature: BASE64.encode(self.signing.sign(message).to_bytes()),
        }
    }

    /// Writes `PREFIX.key` (new file, mode 0600 on unix) and `PREFIX.pub`; returns both paths.
    pub fn save(&self, prefix: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
        let secret_path = with_suffix(prefix, ".key");
        let public_path = with_suffix(prefix, ".pub");
        let file = SecretKeyFile {
            kind: SECRET_KEY_TYPE.to_owned(),
            key_id: self.key_id.clone(),
            secret_key: BASE64.encode(self.signing.to_bytes()),
        };
        write_private_file(&secret_path, &key_file_json(&secret_path, &file)?)?;
        self.public_key().save(&public_path)?;
        Ok((secret_path, public_path))
    }

    /// Reads a secret key file, checking its type, encoding and key id.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let file: SecretKeyFile = read_key_file(path)?;
        check_type(path, &file.kind, SECRET_KEY_TYPE)?;
        let seed = decode_key_bytes(path, "secret_key", &file.secret_key)?;
        let key = Self::from_seed(&seed);
        check_key_id(path, &file.key_id, &key.key_id)?;
        Ok(key)
    }
}

/// An ed25519 public key with its key id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    verifying: VerifyingKey,
    key_id: String,
}

impl PublicKey {
    /// The key id (16 lower-case hex characters).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Reads a public key file, checking its type, encoding and key id.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let file: PublicKeyDocument = read_key_file(path)?;
        Self::from_document(&file, path)
    }

    /// The key in `file`, checking type, encoding and key id; `path` names where it came from.
    pub fn from_document(file: &PublicKeyDocument, path: &Path) -> Result<Self, KeyError> {
        check_type(path, &file.kind, PUBLIC_KEY_TYPE)?;
        let bytes = decode_key_bytes(path, "public_key", &file.public_key)?;
        let verifying = VerifyingKey::from_bytes(&bytes).map_err(|_| {
            field_error(
                path,
                "public_key",
                "is not a valid ed25519 public key".to_owned(),
            )
        })?;
        let key_id = key_id_of(&verifying);
        check_key_id(path, &file.key_id, &key_id)?;
        Ok(Self { verifying, key_id })
    }

    /// Writes this key as a public key file, replacing any file at `path`.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        write_file(path, &key_file_json(path, &self.to_document())?)
    }

    /// This key as a public key document.
    pub fn to_document(&self) -> PublicKeyDocument {
        PublicKeyDocument {
            kind: PUBLIC_KEY_TYPE.to_owned(),
            key_id: self.key_id.clone(),
            public_key: BASE64.encode(self.verifying.as_bytes()),
        }
    }

    /// Checks that `signature` is this key's valid signature over `message`.
    pub fn verify(&self, message: &[u8], signature: &DetachedSignature) -> Result<(), KeyError> {
        if signature.key_id != self.key_id {
            return Err(KeyError::UntrustedKey {
                key_id: signature.key_id.clone(),
                trusted: vec![self.key_id.clone()],
            });
        }
        let decoded = signature.decode()?;
        self.verifying
            .verify_strict(message, &decoded)
            .map_err(|_| KeyError::BadSignature {
                key_id: self.key_id.clone(),
            })
    }
}

/// The public keys whose signatures are accepted, by key id.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    keys: BTreeMap<String, PublicKey>,
}

impl TrustStore {
    /// An empty trust store, which trusts nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `key` (a key already present is kept once).
    pub fn add(&mut self, key: PublicKey) {
        self.keys.insert(key.key_id.clone(), key);
    }

    /// A trust store holding the public key in each of `paths`.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, KeyError> {
        let mut store = Self::new();
        for path in paths {
            store.add(PublicKey::load(path)?);
        }
        Ok(store)
    }

    /// The trusted keys, sorted by key id.
    pub fn keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.keys.values()
    }

    /// The trusted key ids, sorted.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.keys().map(String::as_str).collect()
    }

    /// Checks `signature` over `message` by a trusted key; returns that key's id.
    pub fn verify(&self, message: &[u8], signature: &DetachedSignature) -> Result<&str, KeyError> {
        let key = self
            .keys
            .get(&signature.key_id)
            .ok_or_else(|| KeyError::UntrustedKey {
                key_id: signature.key_id.clone(),
                trusted: self.keys.keys().cloned().collect(),
            })?;
        key.verify(message, signature)?;
        Ok(&key.key_id)
    }
}
