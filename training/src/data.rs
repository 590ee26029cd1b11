//! Reading a labelled CSV (optionally gzipped) into features and class labels.
//!
//! A header row is recognised when any of its fields is not a number; without one,
//! columns are named `x0`, `x1`, … . An unnamed column (such as a pandas index) is
//! skipped unless chosen by position. Labels are mapped to classes in sorted order
//! (numerically when every label is a number).

use std::io::Read;
use std::ops::Range;
use std::path::Path;

use edgewise_core::bundle::sha256_hex;
use flate2::read::GzDecoder;
use thiserror::Error;

/// Which column holds the label.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelColumn {
    /// The last column.
    Last,
    /// A column by header name.
    Named(String),
}

/// What to read from a data file.
#[derive(Debug, Clone)]
pub struct DataOptions {
    /// The label column.
    pub label: LabelColumn,
    /// Feature columns by name; all other columns when empty.
    pub features: Vec<String>,
    /// Rows to keep, counted from 0 after the header; all rows when `None`.
    pub rows: Option<Range<usize>>,
}

/// A labelled data set in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// File name the data came from.
    pub source: String,
    /// sha256 of the file's bytes as stored (before decompression).
    pub sha256: String,
    /// Feature names, in column order.
    pub feature_names: Vec<String>,
    /// Class names, in class-index order.
    pub class_names: Vec<String>,
    /// Feature values, one row per example.
    pub rows: Vec<Vec<f32>>,
    /// Class index of each row.
    pub labels: Vec<usize>,
}

/// Why a data file could not be read.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The CSV is malformed.
    #[error("{path}: malformed CSV: {message}")]
    Csv {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A named column does not exist.
    #[error("{path}: no column named {name:?}; columns are {available:?}")]
    UnknownColumn {
        /// The file.
        path: String,
        /// The missing name.
        name: String,
        /// Column names present.
        available: Vec<String>,
    },
    /// The label column was also chosen as a feature.
    #[error(
        "{path}: --features names the label column {column:?}; a model must not see its answer"
    )]
    LabelAsFeature {
        /// The file.
        path: String,
        /// The label column.
        column: String,
    },
    /// A feature value is not a finite number, or a label is empty.
    #[error("{path}: row {row}, column {column:?}: expected a finite number, got {value:?}")]
    NotANumber {
        /// The file.
        path: String,
        /// Row number (0-based, after the header).
        row: usize,
        /// Column name.
        column: String,
        /// The text found.
        value: String,
    },
    /// The row range selects nothing, or the data has too few rows or classes.
    #[error("{path}: {message}")]
    TooLittle {
        /// The file.
        path: String,
        /// What is missing.
        message: String,
    },
}

/// Reads a CSV or CSV.gz file.
pub fn load(path: &Path, options: &DataOptions) -> Result<Dataset, DataError> {
    let name = path.display().to_string();
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: name.clone(),
        source,
    })?;
    let text = decompress(&raw, &name)?;
    let mut dataset = parse(&text, options, &name)?;
    dataset.sha256 = sha256_hex(&raw);
    dataset.source = path
        .file_name()
        .map_or_else(|| name.clone(), |file| file.to_string_lossy().into_owned());
    Ok(dataset)
}

fn decompress(raw: &[u8], name: &str) -> Result<String, DataError> {
    let mut text = String::new();
    let result = if raw.starts_with(&[0x1f, 0x8b]) {
        GzDecoder::new(raw).read_to_string(&mut text).map(|_| ())
    } else {
        std::str::from_utf8(raw)
            .map(|s| text.push_str(s))
            .map_err(|err| std::io::Error::new(std::io::ErrorKind::InvalidData, err))
    };
    result.map_err(|source| DataError::Io {
        path: name.to_string(),
        source,
    })?;
    Ok(text)
}

/// Parses CSV text (see the module docs for the rules).
pub fn parse(text: &str, options: &DataOptions, name: &str) -> Result<Dataset, DataError> {
    let csv_error = |err: csv::Error| DataError::Csv {
        path: name.to_string(),
        message: err.to_string(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    let mut records = reader.records();
    let first = records
        .next()
        .transpose()
        .map_err(csv_error)?
        .ok_or_else(|| too_little(name, "the file is empty"))?;
    // The label may be text, so only the other fields tell a header from data.
    let label_position = match options.label {
        LabelColumn::Last => first.len().saturating_sub(1),
        LabelColumn::Named(_) => usize::MAX,
    };
    let has_header = first
        .iter()
        .enumerate()
        .any(|(index, field)| index != label_position && field.trim().parse::<f64>().is_err());
    let columns: Vec<String> = if has_header {
        first.iter().map(|field| field.trim().to_string()).collect()
    } else {
        (0..first.len()).map(|index| format!("x{index}")).collect()
    };
    let label_index = match &options.label {
        LabelColumn::Last => columns.len().saturating_sub(1),
        LabelColumn::Named(label) => column_index(&columns, label, name)?,
    };
    let feature_indices: Vec<usize> = if options.features.is_empty() {
        (0..columns.len())
            .filter(|&index| index != label_index && !columns[index].is_empty())
            .collect()
    } else {
        options
            .features
            .iter()
            .map(|feature| column_index(&columns, feature, name))
            .collect::<Result<_, _>>()?
    };
    if feature_indices.contains(&label_index) {
        return Err(DataError::LabelAsFeature {
            path: name.to_string(),
            column: columns[label_index].clone(),
        });
    }
    let data_rows = (!has_header)
        .then_some(Ok(first))
        .into_iter()
        .chain(records)
        .enumerate()
        .filter(|(row, _)| {
            options
                .rows
                .as_ref()
                .is_none_or(|range| range.contains(row))
        });

    let mut rows = Vec::new();
    let mut raw_labels = Vec::new();
    for (row, record) in data_rows {
        let record = record.map_err(csv_error)?;
        let mut values = Vec::with_capacity(feature_indices.len());
        for &index in &feature_indices {
            let field = record.get(index).unwrap_or("").trim();
            let value = field
                .parse::<f32>()
                .ok()
                .filter(|value| value.is_finite())
                .ok_or_else(|| DataError::NotANumber {
                    path: name.to_string(),
                    row,
                    column: columns[index].clone(),
                    value: field.to_string(),
                })?;
            values.push(value);
        }
        let label = record.get(label_index).unwrap_or("").trim();
        if label.is_empty() {
            return Err(DataError::NotANumber {
                path: name.to_string(),
                row,
                column: columns[label_index].clone(),
                value: "(an empty label)".to_string(),
            });
        }
        rows.push(values);
        raw_labels.push(label.to_string());
    }
    let (class_names, labels) = encode_labels(&raw_labels);
    if rows.len() < 10 || class_names.len() < 2 {
        return Err(too_little(
            name,
            &format!(
                "need at least 10 rows and 2 classes, got {} rows and {} classes",
                rows.len(),
                class_names.len()
            ),
        ));
    }
    Ok(Dataset {
        source: name.to_string(),
        sha256: String::new(),
        feature_names: feature_indices
            .iter()
            .map(|&i| columns[i].clone())
            .collect(),
        class_names,
        rows,
        labels,
    })
}

fn column_index(columns: &[String], wanted: &str, name: &str) -> Result<usize, DataError> {
    columns
        .iter()
        .position(|column| column == wanted)
        .ok_or_else(|| DataError::UnknownColumn {
            path: name.to_string(),
            name: wanted.to_string(),
            available: columns.to_vec(),
        })
}

fn too_little(name: &str, message: &str) -> DataError {
    DataError::TooLittle {
        path: name.to_string(),
        message: message.to_string(),
    }
}

/// Maps label strings to class indices in sorted order (numeric when all are numbers).
fn encode_labels(raw: &[String]) -> (Vec<String>, Vec<usize>) {
    let mut names: Vec<String> = raw.to_vec();
    names.sort();
    names.dedup();
    let numeric: Option<Vec<f64>> = names.iter().map(|name| name.parse::<f64>().ok()).collect();
    if let Some(values) = numeric {
        let mut pairs: Vec<(f64, String)> = values.into_iter().zip(names).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        names = pairs.into_iter().map(|(_, name)| name).collect();
    }
    let labels = raw
        .iter()
        .map(|label| names.iter().position(|name| name == label).unwrap_or(0))
        .collect();
    (names, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DataOptions {
        DataOptions {
            label: LabelColumn::Last,
            features: Vec::new(),
            rows: None,
        }
    }

    fn rows(n: usize, header: &str) -> String {
        let mut text = header.to_string();
        for i in 0..n {
            text.push_str(&format!("{i},{},{}\n", i as f32 * 0.5, i % 2));
        }
        text
    }

    #[test]
    fn headers_are_detected_and_unnamed_columns_skipped() {
        let data = parse(&rows(12, ",speed,rain\n"), &options(), "t.csv").unwrap();
        assert_eq!(data.feature_names, vec!["speed"]);
        assert_eq!(data.class_names, vec!["0", "1"]);
        assert_eq!(data.rows[3], vec![1.5]);
        let data = parse(&rows(12, ""), &options(), "t.csv").unwrap();
        assert_eq!(data.feature_names, vec!["x0", "x1"]);
    }

    #[test]
    fn row_ranges_and_named_columns_select() {
        let options = DataOptions {
            label: LabelColumn::Named("rain".into()),
            features: vec!["speed".into()],
            rows: Some(2..12),
        };
        let data = parse(&rows(20, "id,speed,rain\n"), &options, "t.csv").unwrap();
        assert_eq!(data.rows.len(), 10);
        assert_eq!(data.rows[0], vec![1.0]);
    }

    #[test]
    fn bad_values_and_unknown_columns_are_named() {
        let mut text = rows(12, "a,b,rain\n");
        text.push_str("1,oops,0\n");
        let err = parse(&text, &options(), "t.csv").unwrap_err();
        assert!(err.to_string().contains("column \"b\""), "{err}");
        assert!(err.to_string().contains("\"oops\""), "{err}");
        let options = DataOptions {
            label: LabelColumn::Named("label".into()),
            ..options()
        };
        let err = parse(&rows(12, "a,b,rain\n"), &options, "t.csv").unwrap_err();
        assert!(
            err.to_string().contains("no column named \"label\""),
            "{err}"
        );
    }

    #[test]
    fn text_labels_do_not_make_a_header() {
        let mut text = String::new();
        for i in 0..12 {
            text.push_str(&format!("{i},1.5,{}\n", ["setosa", "virginica"][i % 2]));
        }
        let data = parse(&text, &options(), "t.csv").unwrap();
        assert_eq!(data.rows.len(), 12);
        assert_eq!(data.class_names, vec!["setosa", "virginica"]);
    }

    #[test]
    fn numeric_labels_sort_numerically() {
        let raw: Vec<String> = ["10", "9", "2", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (names, labels) = encode_labels(&raw);
        assert_eq!(names, vec!["2", "9", "10"]);
        assert_eq!(labels, vec![2, 1, 0, 2]);
    }
}
