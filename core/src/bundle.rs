//! The model bundle: one content-addressed file holding a model version.
//!
//! A bundle is an uncompressed tar with exactly three entries, in this order:
//! `manifest.json` (the [`Manifest`] as pretty JSON), `manifest.sig` (a
//! [`DetachedSignature`] over the exact `manifest.json` bytes, as JSON) and the
//! weights file named by `manifest.weights.file`. The manifest records the weights'
//! size and sha256, so the one signature covers the whole bundle.
//!
//! [`pack`] is deterministic: every tar header has mtime 0, mode 0644, uid and gid 0
//! and no user or group names, so the same inputs give the same bytes and the
//! bundle's sha256 ([`sha256_hex`]) is its content address.
//!
//! [`Bundle::open`] only parses; [`Bundle::verify`] makes the trust decision.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::keys::{DetachedSignature, KeyError, SecretKey, TrustStore};
use crate::manifest::{MANIFEST_FORMAT, Manifest};

/// Name of the manifest entry, always first.
pub const MANIFEST_ENTRY: &str = "manifest.json";

/// Name of the signature entry, always second when present.
pub const SIGNATURE_ENTRY: &str = "manifest.sig";

/// Largest accepted `manifest.json` or `manifest.sig` entry: 16 MiB.
pub const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Largest accepted weights entry: 1 GiB.
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;

/// Longest weights file name: what fits a plain ustar header name field.
const MAX_WEIGHTS_NAME_BYTES: usize = 100;

/// Largest bundle file [`Bundle::read`] will load: all entries at their limits plus
/// generous room for tar headers, padding and end-of-archive records.
const MAX_BUNDLE_BYTES: u64 = MAX_WEIGHTS_BYTES + 2 * MAX_MANIFEST_BYTES + (1 << 20);

/// Errors from packing, opening and verifying bundles.
#[derive(Debug, Error)]
pub enum BundleError {
    /// The bundle file could not be read.
    #[error("cannot read bundle {path}: {source}")]
    Read {
        /// The bundle file.
        path: PathBuf,
        /// The IO error.
        source: io::Error,
    },
    /// The bundle file is larger than any valid bundle.
    #[error("bundle {path} is over {limit} bytes, larger than any valid bundle")]
    FileTooLarge {
        /// The bundle file.
        path: PathBuf,
        /// The largest accepted bundle file.
        limit: u64,
    },
    /// The bytes are not a readable tar archive.
    #[error("bundle is not a valid tar archive: {context}: {source}")]
    Archive {
        /// What was being read.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// A tar entry could not be written.
    #[error("cannot write bundle entry {entry}: {source}")]
    Write {
        /// The entry being written.
        entry: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The first entry is not `manifest.json`.
    #[error("bundle must start with manifest.json, but its first entry is {found:?}")]
    ManifestNotFirst {
        /// The first entry's name.
        found: String,
    },
    /// An entry is neither the manifest, the signature nor the named weights file.
    #[error(
        "unexpected bundle entry {found:?}: a bundle holds only manifest.json, manifest.sig and the weights file {weights:?}"
    )]
    UnexpectedEntry {
        /// The entry's name.
        found: String,
        /// The weights file named by the manifest.
        weights: String,
    },
    /// An entry appears twice.
    #[error("bundle holds entry {name:?} more than once")]
    DuplicateEntry {
        /// The entry's name.
        name: String,
    },
    /// `manifest.sig` comes after the weights.
    #[error("manifest.sig must come before the weights file {weights:?} in the bundle")]
    SignatureAfterWeights {
        /// The weights file named by the manifest.
        weights: String,
    },
    /// A required entry is missing.
    #[error("bundle has no {name:?} entry")]
    MissingEntry {
        /// The missing entry's name.
        name: String,
    },
    /// An entry is not a regular file.
    #[error("bundle entry {name:?} is not a regular file (tar type {kind:?})")]
    NotAFile {
        /// The entry's name.
        name: String,
        /// The tar entry type byte.
        kind: char,
    },
    /// An entry is larger than its limit.
    #[error("bundle entry {name:?} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The entry's name.
        name: String,
        /// Its size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// An entry holds fewer bytes than its header says.
    #[error("bundle entry {name:?} is truncated: header says {expected} bytes, found {found}")]
    Truncated {
        /// The entry's name.
        name: String,
        /// Size from the tar header.
        expected: u64,
        /// Bytes actually present.
        found: u64,
    },
    /// `manifest.json` does not parse as a manifest.
    #[error("manifest.json is not a valid manifest: {source}{excerpt}")]
    InvalidManifest {
        /// The JSON error (names the field, or gives line and column).
        source: serde_json::Error,
        /// The offending manifest line, if any.
        excerpt: String,
    },
    /// The manifest format version is not one this build reads.
    #[error("manifest format {found} is not supported: this build reads format {supported}")]
    UnsupportedFormat {
        /// The manifest's `format`.
        found: u32,
        /// The format this build reads.
        supported: u32,
    },
    /// `manifest.weights.file` is not a usable entry name.
    #[error("manifest field weights.file {name:?} is invalid: {problem}")]
    InvalidWeightsName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// `manifest.sig` does not parse as a detached signature.
    #[error("manifest.sig is not a valid detached signature: {0}")]
    InvalidSignatureFile(serde_json::Error),
    /// The manifest could not be serialised.
    #[error("cannot serialise the manifest: {0}")]
    Serialize(serde_json::Error),
    /// The bundle has no `manifest.sig`.
    #[error(
        "bundle is unsigned: it has no manifest.sig entry, expected a signature by a trusted key"
    )]
    Unsigned,
    /// The manifest's parts disagree with each other.
    #[error(transparent)]
    Inconsistent(#[from] crate::manifest::ManifestError),
    /// The signature is untrusted, malformed or does not match `manifest.json`.
    #[error("manifest.sig rejected: {0}")]
    Signature(#[from] KeyError),
    /// The manifest's `signer_key_id` differs from the key that signed it.
    #[error(
        "signer mismatch: manifest says signer_key_id {manifest}, but manifest.sig is signed by key {signature}"
    )]
    SignerMismatch {
        /// `signer_key_id` from the manifest.
        manifest: String,
        /// Key id of the signature.
        signature: String,
    },
    /// The weights file's size differs from the manifest's.
    #[error("weights size mismatch: manifest says {expected} bytes, file has {found} bytes")]
    WeightsSize {
        /// Size from the manifest.
        expected: u64,
        /// Size of the weights entry.
        found: u64,
    },
    /// The weights file's sha256 differs from the manifest's.
    #[error("weights sha256 mismatch: manifest says {expected}, file has {found}")]
    WeightsHash {
        /// sha256 from the manifest.
        expected: String,
        /// sha256 of the weights entry.
        found: String,
    },
}

/// Lower-case hex sha256 of `bytes`: a bundle's content address, also used for weights and data.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Packs and signs a bundle; the manifest's signer and weights size and sha256 are filled in.
pub fn pack(manifest: &Manifest, weights: &[u8], key: &SecretKey) -> Result<Vec<u8>, BundleError> {
    check_format(manifest.format)?;
    check_weights_name(&manifest.weights.file)?;
    check_size(&manifest.weights.file, len_u64(weights), MAX_WEIGHTS_BYTES)?;
    let mut manifest = manifest.clone();
    manifest.signer_key_id = key.key_id().to_owned();
    manifest.weights.sha256 = sha256_hex(weights);
    manifest.weights.size = len_u64(weights);
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).map_err(BundleError::Serialize)?;
    check_size(MANIFEST_ENTRY, len_u64(&manifest_bytes), MAX_MANIFEST_BYTES)?;
    let signature = key.sign(&manifest_bytes);
    let signature_bytes = serde_json::to_vec_pretty(&signature).map_err(BundleError::Serialize)?;
    write_tar(&[
        (MANIFEST_ENTRY, &manifest_bytes),
        (SIGNATURE_ENTRY, &signature_bytes),
        (&manifest.weights.file, weights),
    ])
}

/// A parsed bundle; not yet trusted until [`Bundle::verify`] succeeds.
#[derive(Clone, PartialEq)]
pub struct Bundle {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The exact `manifest.json` bytes, which the signature covers.
    pub manifest_bytes: Vec<u8>,
    /// The detached signature from `manifest.sig`, if the bundle is signed.
    pub signature: Option<DetachedSignature>,
    /// The weights file.
    pub weights: Vec<u8>,
}

impl fmt::Debug for Bundle {
    /// Shows the manifest and signature, and only the size of the raw bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bundle")
            .field("manifest", &self.manifest)
            .field("manifest_bytes", &self.manifest_bytes.len())
            .field("signature", &self.signature)
            .field("weights", &self.weights.len())
            .finish()
    }
}

impl Bundle {
    /// Parses bundle bytes, refusing malformed bundles; makes no trust decision.
    pub fn open(bytes: &[u8]) -> Result<Bundle, BundleError> {
        Bundle::open_reusing(bytes, |_| None)
    }

    /// Like [`Bundle::open`], but takes the manifest from `known` when it returns one
    /// parsed from the very same manifest bytes (a process holding many nodes parses
    /// each distinct manifest once). [`Bundle::verify`] still checks the signature over
    /// these bytes and the weights against the manifest.
    pub fn open_reusing(
        bytes: &[u8],
        known: impl FnOnce(&[u8]) -> Option<Manifest>,
    ) -> Result<Bundle, BundleError> {
        let mut archive = tar::Archive::new(bytes);
        let mut entries = archive
            .entries()
            .map_err(|source| archive_error("reading the first header", source))?;
        let manifest_bytes = read_manifest_entry(entries.next())?;
        let manifest = match known(&manifest_bytes) {
            Some(manifest) => manifest,
            None => parse_manifest(&manifest_bytes)?,
        };
        let mut signature = None;
        let mut weights = None;
        for entry in entries {
            let entry = entry.map_err(|source| archive_error("reading an entry header", source))?;
            let name = entry_name(&entry)?;
            if name == SIGNATURE_ENTRY && signature.is_none() && weights.is_none() {
                let bytes = read_entry(entry, &name, MAX_MANIFEST_BYTES)?;
                signature = Some(parse_signature(&bytes)?);
            } else if name == manifest.weights.file && weights.is_none() {
                weights = Some(read_entry(entry, &name, MAX_WEIGHTS_BYTES)?);
            } else {
                let seen = (signature.is_some(), weights.is_some());
                return Err(misplaced_entry(name, &manifest, seen));
            }
        }
        let weights = weights.ok_or_else(|| BundleError::MissingEntry {
            name: manifest.weights.file.clone(),
        })?;
        Ok(Bundle {
            manifest,
            manifest_bytes,
            signature,
            weights,
        })
    }

    /// Reads and parses a bundle file; see [`Bundle::open`].
    pub fn read(path: &Path) -> Result<Bundle, BundleError> {
        Bundle::read_reusing(path, |_| None)
    }

    /// Reads and parses a bundle file; see [`Bundle::open_reusing`].
    pub fn read_reusing(
        path: &Path,
        known: impl FnOnce(&[u8]) -> Option<Manifest>,
    ) -> Result<Bundle, BundleError> {
        let read_error = |source| BundleError::Read {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        File::open(path)
            .and_then(|file| file.take(MAX_BUNDLE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if len_u64(&bytes) > MAX_BUNDLE_BYTES {
            return Err(BundleError::FileTooLarge {
                path: path.to_owned(),
                limit: MAX_BUNDLE_BYTES,
            });
        }
        Bundle::open_reusing(&bytes, known)
    }

    /// Checks the signature by a trusted key over the manifest, the signer, the weights,
    /// and that the manifest's parts agree with each other.
    pub fn verify(&self, trust: &TrustStore) -> Result<(), BundleError> {
        let signature = self.signature.as_ref().ok_or(BundleError::Unsigned)?;
        let key_id = trust.verify(&self.manifest_bytes, signature)?;
        if self.manifest.signer_key_id != key_id {
            return Err(BundleError::SignerMismatch {
                manifest: self.manifest.signer_key_id.clone(),
                signature: key_id.to_owned(),
            });
        }
        self.check_weights()?;
        Ok(self.manifest.check()?)
    }

    /// Re-packs this bundle signed by `key`; refuses weights that do not match the manifest.
    pub fn resign(&self, key: &SecretKey) -> Result<Vec<u8>, BundleError> {
        self.check_weights()?;
        pack(&self.manifest, &self.weights, key)
    }

    /// Checks the weights' size and sha256 against the manifest.
    fn check_weights(&self) -> Result<(), BundleError> {
        let expected = &self.manifest.weights;
        let size = len_u64(&self.weights);
        if size != expected.size {
            return Err(BundleError::WeightsSize {
                expected: expected.size,
                found: size,
            });
        }
        let sha256 = sha256_hex(&self.weights);
        if sha256 != expected.sha256 {
            return Err(BundleError::WeightsHash {
                expected: expected.sha256.clone(),
                found: sha256,
            });
        }
        Ok(())
    }
}

/// Length of a byte slice as `u64`.
fn len_u64(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// Builds a [`BundleError::Archive`].
fn archive_error(context: &str, source: io::Error) -> BundleError {
    BundleError::Archive {
        context: context.to_owned(),
        source,
    }
}

/// Refuses a manifest format this build does not read.
fn check_format(found: u32) -> Result<(), BundleError> {
    if found == MANIFEST_FORMAT {
        Ok(())
    } else {
        Err(BundleError::UnsupportedFormat {
            found,
            supported: MANIFEST_FORMAT,
        })
    }
}

/// Refuses an entry of `size` bytes over `limit`.
fn check_size(name: &str, size: u64, limit: u64) -> Result<(), BundleError> {
    if size <= limit {
        Ok(())
    } else {
        Err(BundleError::TooLarge {
            name: name.to_owned(),
            size,
            limit,
        })
    }
}

/// Checks that the weights file name is a plain, short file name of its own.
fn check_weights_name(name: &str) -> Result<(), BundleError> {
    let problem = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > MAX_WEIGHTS_NAME_BYTES {
        Some("it is longer than 100 bytes")
    } else if name == "." || name == ".." {
        Some("it is not a file name")
    } else if name.contains(['/', '\\']) || name.chars().any(char::is_control) {
        Some("it must be a plain file name without slashes or control characters")
    } else if name == MANIFEST_ENTRY || name == SIGNATURE_ENTRY {
        Some("it clashes with the manifest entries")
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(BundleError::InvalidWeightsName {
            name: name.to_owned(),
            problem,
        }),
    }
}

/// Writes a deterministic tar of `(name, data)` entries.
fn write_tar(entries: &[(&str, &[u8])]) -> Result<Vec<u8>, BundleError> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(len_u64(data));
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder
            .append_data(&mut header, name, *data)
            .map_err(|source| BundleError::Write {
                entry: (*name).to_owned(),
                source,
            })?;
    }
    builder.into_inner().map_err(|source| BundleError::Write {
        entry: "end of archive".to_owned(),
        source,
    })
}

/// Reads the first entry, which must be `manifest.json`.
fn read_manifest_entry<R: Read>(
    first: Option<io::Result<tar::Entry<'_, R>>>,
) -> Result<Vec<u8>, BundleError> {
    let entry = first
        .ok_or_else(|| BundleError::MissingEntry {
            name: MANIFEST_ENTRY.to_owned(),
        })?
        .map_err(|source| archive_error("reading the first entry header", source))?;
    let name = entry_name(&entry)?;
    if name != MANIFEST_ENTRY {
        return Err(BundleError::ManifestNotFirst { found: name });
    }
    read_entry(entry, &name, MAX_MANIFEST_BYTES)
}

/// The name of a tar entry, refusing anything but a regular file.
fn entry_name<R: Read>(entry: &tar::Entry<'_, R>) -> Result<String, BundleError> {
    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    let kind = entry.header().entry_type();
    if kind.is_file() {
        Ok(name)
    } else {
        Err(BundleError::NotAFile {
            name,
            kind: char::from(kind.as_byte()),
        })
    }
}

/// Reads one entry's data, refusing it if over `limit` or truncated.
fn read_entry<R: Read>(
    entry: tar::Entry<'_, R>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, BundleError> {
    let size = entry.size();
    check_size(name, size, limit)?;
    let mut data = Vec::new();
    entry
        .take(limit)
        .read_to_end(&mut data)
        .map_err(|source| archive_error(&format!("reading entry {name:?}"), source))?;
    let found = len_u64(&data);
    if found == size {
        Ok(data)
    } else {
        Err(BundleError::Truncated {
            name: name.to_owned(),
            expected: size,
            found,
        })
    }
}

/// Just the format version, read before the rest of the manifest.
#[derive(Deserialize)]
struct FormatProbe {
    format: u32,
}

/// Parses `manifest.json` in one pass. A manifest that does not parse is probed for
/// its format version, so that a newer format is named as such rather than by the
/// first field this version does not know.
fn parse_manifest(bytes: &[u8]) -> Result<Manifest, BundleError> {
    let manifest: Manifest = match serde_json::from_slice(bytes) {
        Ok(manifest) => manifest,
        Err(source) => {
            if let Ok(probe) = serde_json::from_slice::<FormatProbe>(bytes) {
                check_format(probe.format)?;
            }
            return Err(invalid_manifest(bytes, source));
        }
    };
    check_format(manifest.format)?;
    check_weights_name(&manifest.weights.file)?;
    Ok(manifest)
}

/// Builds [`BundleError::InvalidManifest`], quoting the offending line.
fn invalid_manifest(bytes: &[u8], source: serde_json::Error) -> BundleError {
    let excerpt = String::from_utf8_lossy(bytes)
        .lines()
        .nth(source.line().saturating_sub(1))
        .filter(|_| source.line() > 0)
        .map(|line| {
            format!(
                " (line {}: `{}`)",
                source.line(),
                truncate(line.trim(), 120)
            )
        })
        .unwrap_or_default();
    BundleError::InvalidManifest { source, excerpt }
}

/// At most `max` characters of `text`.
fn truncate(text: &str, max: usize) -> &str {
    text.char_indices()
        .nth(max)
        .map_or(text, |(index, _)| &text[..index])
}

/// Parses `manifest.sig`.
fn parse_signature(bytes: &[u8]) -> Result<DetachedSignature, BundleError> {
    serde_json::from_slice(bytes).map_err(BundleError::InvalidSignatureFile)
}

/// The error for an entry that is duplicated, out of order or unknown, given
/// whether the signature and the weights were already `seen`.
fn misplaced_entry(name: String, manifest: &Manifest, seen: (bool, bool)) -> BundleError {
    let (signature_seen, weights_seen) = seen;
    let weights = manifest.weights.file.clone();
    let duplicate = name == MANIFEST_ENTRY
        || (name == SIGNATURE_ENTRY && signature_seen)
        || (name == weights && weights_seen);
    if duplicate {
        BundleError::DuplicateEntry { name }
    } else if name == SIGNATURE_ENTRY {
        BundleError::SignatureAfterWeights { weights }
    } else {
        BundleError::UnexpectedEntry {
            found: name,
            weights,
        }
    }
}
