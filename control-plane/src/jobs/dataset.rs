//! Training data: uploaded files kept by content hash, and the CSV files a job trains
//! and evaluates on, built from an uploaded file, the fleet's captured labelled
//! examples, or both.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use edgewise_core::bundle::sha256_hex;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::store::{Store, Table};
use crate::telemetry_store::TelemetryStore;

/// The label column of every CSV file the control plane writes.
pub const LABEL_COLUMN: &str = "label";

/// An uploaded data file.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatasetRecord {
    /// Its id: the sha256 of its bytes.
    pub id: String,
    /// The name it was uploaded under.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was uploaded (RFC 3339).
    pub uploaded_at: String,
}

/// Captured examples to train on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapturedData {
    /// Only devices of these groups (all when empty).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Only examples captured in the last N seconds.
    pub since_seconds: Option<u64>,
}

/// What a job trains on; at least one of the two.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DatasetChoice {
    /// An uploaded dataset's id.
    pub uploaded: Option<String>,
    /// The label column of the uploaded file (default: its last column).
    pub label: Option<String>,
    /// The fleet's captured, labelled examples of the model.
    pub captured: Option<CapturedData>,
}

/// The files a job was given, with what went into them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PreparedData {
    /// sha256 of the training file.
    pub sha256: String,
    /// Training rows.
    pub rows: usize,
    /// Of those, captured on the fleet.
    pub captured_rows: usize,
    /// Rows held out for the evaluation (newest captures), if any.
    pub holdout_rows: usize,
    /// sha256 of the held-out file, if any.
    pub holdout_sha256: Option<String>,
    /// Where the training file is.
    #[serde(skip)]
    pub train: PathBuf,
    /// Where the held-out file is.
    #[serde(skip)]
    pub holdout: Option<PathBuf>,
}

/// Uploaded datasets on disk and in the store.
#[derive(Clone)]
pub struct Datasets {
    folder: PathBuf,
    table: Table<DatasetRecord>,
}

impl Datasets {
    /// The datasets kept under `folder`.
    pub fn new(store: &Store, folder: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&folder)
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", folder.display())))?;
        Ok(Datasets {
            folder,
            table: store.table("datasets")?,
        })
    }

    /// Stores an uploaded file: CSV text, or gzip-compressed CSV.
    pub fn upload(&self, name: &str, bytes: &[u8]) -> Result<DatasetRecord> {
        crate::registry::check_name("field `name`: dataset name", name)?;
        let text = decode(bytes).map_err(|reason| {
            Error::Invalid(format!(
                "request body: expected CSV text or gzip CSV, {reason}"
            ))
        })?;
        if text.lines().filter(|l| !l.trim().is_empty()).count() < 2 {
            return Err(Error::Invalid(
                "request body: expected a CSV file with at least two lines".to_owned(),
            ));
        }
        let id = sha256_hex(bytes);
        let record = DatasetRecord {
            id: id.clone(),
            name: name.to_owned(),
            size: bytes.len() as u64,
            uploaded_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        std::fs::write(self.folder.join(&id), bytes)
            .map_err(|e| Error::Internal(format!("cannot store the dataset: {e}")))?;
        self.table.put(&id, &record)?;
        Ok(record)
    }

    /// Every uploaded dataset.
    pub fn list(&self) -> Result<Vec<DatasetRecord>> {
        Ok(self.table.all()?)
    }

    /// The column names of dataset `id`.
    pub fn header(&self, id: &str) -> Result<Vec<String>> {
        Ok(column_names(&self.text(id)?).0)
    }

    /// The text of dataset `id`.
    fn text(&self, id: &str) -> Result<String> {
        if self.table.get(id)?.is_none() {
            return Err(Error::NotFound(format!("no dataset {id}")));
        }
        let bytes = std::fs::read(self.folder.join(id))
            .map_err(|e| Error::Internal(format!("cannot read dataset {id}: {e}")))?;
        decode(&bytes).map_err(|reason| Error::Internal(format!("dataset {id}: {reason}")))
    }

    /// Writes the job's training file (and, with `holdout_fraction`, a held-out file
    /// of the newest captured rows) into `folder`, in columns `features` + `label`.
    pub fn prepare(
        &self,
        choice: &DatasetChoice,
        source: &CaptureSource<'_>,
        features: &[String],
        holdout_fraction: Option<f64>,
        folder: &Path,
    ) -> Result<PreparedData> {
        let mut rows: Vec<Vec<String>> = Vec::new();
        if let Some(id) = &choice.uploaded {
            rows.extend(select_columns(
                &self.text(id)?,
                features,
                choice.label.as_deref(),
            )?);
        }
        let mut captured = match &choice.captured {
            Some(wanted) => source.labelled(wanted, features.len())?,
            None => Vec::new(),
        };
        if choice.uploaded.is_none() && choice.captured.is_none() {
            return Err(Error::Invalid(
                "field `dataset`: name an `uploaded` dataset, `captured` data, or both".to_owned(),
            ));
        }
        let holdout_rows =
            holdout_fraction.map_or(0, |share| (captured.len() as f64 * share).round() as usize);
        let holdout: Vec<Vec<String>> = captured.split_off(captured.len() - holdout_rows);
        let captured_rows = captured.len();
        rows.extend(captured);
        if rows.len() < 10 {
            return Err(Error::Invalid(format!(
                "field `dataset`: only {} labelled rows to train on; at least 10 are needed",
                rows.len()
            )));
        }
        let train = folder.join("train.csv");
        let sha256 = write_csv(&train, features, &rows)?;
        let (holdout, holdout_sha256) = if holdout.is_empty() {
            (None, None)
        } else {
            let path = folder.join("holdout.csv");
            let sha256 = write_csv(&path, features, &holdout)?;
            (Some(path), Some(sha256))
        };
        Ok(PreparedData {
            sha256,
            rows: rows.len(),
            captured_rows,
            holdout_rows: holdout.as_ref().map_or(0, |_| holdout_rows),
            holdout_sha256,
            train,
            holdout,
        })
    }
}

/// The fleet's captured examples of one model, with each device's group.
pub struct CaptureSource<'a> {
    /// The telemetry store holding the captures.
    pub telemetry: &'a TelemetryStore,
    /// The model.
    pub model: &'a str,
    /// Device id → group.
    pub groups: BTreeMap<String, String>,
}

impl CaptureSource<'_> {
    /// Labelled captures as rows (features then label), oldest first.
    pub fn labelled(&self, wanted: &CapturedData, width: usize) -> Result<Vec<Vec<String>>> {
        let since = wanted.since_seconds.map(|seconds| {
            humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(seconds))
                .to_string()
        });
        let mut found: Vec<(String, Vec<String>)> = Vec::new();
        for (device, capture) in self.telemetry.captures_by_device(self.model)? {
            let Some(label) = capture.label else { continue };
            let group = self.groups.get(&device).map_or("", String::as_str);
            if capture.inputs.len() != width
                || (!wanted.groups.is_empty() && !wanted.groups.iter().any(|g| g == group))
                || since
                    .as_ref()
                    .is_some_and(|since| &capture.captured_at < since)
            {
                continue;
            }
            let mut row: Vec<String> = capture.inputs.iter().map(f32::to_string).collect();
            row.push(label);
            found.push((capture.captured_at, row));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found.into_iter().map(|(_, row)| row).collect())
    }
}

/// CSV text from raw bytes (gunzipped when they start with the gzip magic).
fn decode(bytes: &[u8]) -> std::result::Result<String, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut text)
            .map_err(|e| format!("the gzip data does not decode: {e}"))?;
        return Ok(text);
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| "the bytes are not UTF-8 text".to_owned())
}

/// A CSV text's column names, and whether its first line is a header. As the trainer
/// reads files, a first line of numbers only is data, and its columns are `x0`, `x1`, …
fn column_names(text: &str) -> (Vec<String>, bool) {
    let first: Vec<String> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|field| field.trim().trim_matches('"').to_owned())
        .collect();
    if first.iter().any(|field| field.parse::<f64>().is_err()) {
        return (first, true);
    }
    let names = (0..first.len()).map(|index| format!("x{index}")).collect();
    (names, false)
}

/// The rows of a CSV text, as `features` (by name) then the label.
fn select_columns(
    text: &str,
    features: &[String],
    label: Option<&str>,
) -> Result<Vec<Vec<String>>> {
    let (header, has_header) = column_names(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(has_header)
        .from_reader(text.as_bytes());
    let position = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            Error::Invalid(format!(
                "uploaded dataset: no column {name:?} (columns: {})",
                header.join(", ")
            ))
        })
    };
    let mut columns = features
        .iter()
        .map(|name| position(name))
        .collect::<Result<Vec<usize>>>()?;
    columns.push(match label {
        Some(name) => position(name)?,
        None => header.len().saturating_sub(1),
    });
    let mut rows = Vec::new();
    for (line, record) in reader.records().enumerate() {
        let record = record
            .map_err(|e| Error::Invalid(format!("uploaded dataset: row {}: {e}", line + 1)))?;
        rows.push(
            columns
                .iter()
                .map(|&column| record.get(column).unwrap_or_default().trim().to_owned())
                .collect(),
        );
    }
    Ok(rows)
}

/// Writes `rows` under a `features` + `label` header; returns the file's sha256.
fn write_csv(path: &Path, features: &[String], rows: &[Vec<String>]) -> Result<String> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let header: Vec<&str> = features
        .iter()
        .map(String::as_str)
        .chain([LABEL_COLUMN])
        .collect();
    let write_error = |e: csv::Error| Error::Internal(format!("cannot write training data: {e}"));
    writer.write_record(&header).map_err(write_error)?;
    for row in rows {
        writer.write_record(row).map_err(write_error)?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| Error::Internal(format!("cannot write training data: {e}")))?;
    std::fs::write(path, &bytes)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
    Ok(sha256_hex(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_picked_by_name_and_the_label_defaults_to_the_last() {
        let text = "id,b,a,y\n1,2,3,yes\n4,5,6,no\n";
        let rows = select_columns(text, &["a".into(), "b".into()], None).expect("rows");
        assert_eq!(rows, vec![vec!["3", "2", "yes"], vec!["6", "5", "no"]]);
        let err = select_columns(text, &["c".into()], None).expect_err("unknown column");
        assert!(err.to_string().contains("\"c\""), "{err}");
    }

    #[test]
    fn a_file_without_header_has_the_trainers_column_names() {
        let text = "1,2,0\n3,4,1\n";
        assert_eq!(
            column_names(text),
            (vec!["x0".into(), "x1".into(), "x2".into()], false)
        );
        let rows = select_columns(text, &["x1".into()], None).expect("rows");
        assert_eq!(rows, vec![vec!["2", "0"], vec!["4", "1"]]);
    }

    #[test]
    fn gzip_and_plain_text_decode_the_same() {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(b"a,b\n1,2\n").expect("gzip");
        let gzipped = encoder.finish().expect("gzip");
        assert_eq!(decode(&gzipped).expect("gzip"), "a,b\n1,2\n");
        assert_eq!(decode(b"a,b\n1,2\n").expect("text"), "a,b\n1,2\n");
        assert!(decode(&[0xff, 0xfe, 0x00]).is_err());
    }
}
