//! The reference data profile, fitted on a model's training split and carried in its
//! manifest, so a node can measure how far live inputs drift from what the model saw.
//!
//! Each feature is cut into bins at its training quantiles. With inner edges
//! `e_0 < e_1 < ... < e_{k-1}` there are `k + 1` bins, closed on the right:
//! bin 0 is `(-inf, e_0]`, bin `i` is `(e_{i-1}, e_i]`, and bin `k` is `(e_{k-1}, +inf)`.
//! The edges are the quantiles at `i / bins` for `i = 1..bins`, computed like numpy's
//! default `numpy.quantile(values, q, method='linear')`, with repeated edges dropped
//! (discrete features such as pixel intensities repeat quantiles), so a feature may
//! end up with fewer than `bins` bins.

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Reference statistics of the training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataProfile {
    /// One entry per input feature, in column order.
    pub features: Vec<FeatureProfile>,
    /// Share of each output class in the training split, in label order.
    pub class_frequencies: Vec<f64>,
}

/// Reference statistics of one input feature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureProfile {
    /// Feature name.
    pub name: String,
    /// Inner cut points between bins, ascending and distinct; bins are closed on the right (see the module doc).
    pub bin_edges: Vec<f64>,
    /// Share of training values in each bin (`bin_edges.len() + 1` entries, summing to 1).
    pub reference_frequencies: Vec<f64>,
    /// A seeded sample of at most `ProfileOptions::sample_size` training values, in training order, for two-sample tests.
    pub reference_sample: Vec<f64>,
}

/// How [`DataProfile::fit`] bins and samples the training data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileOptions {
    /// Number of quantile bins per feature before repeated edges are dropped (at least 2).
    pub bins: usize,
    /// Largest number of training values kept per feature as the reference sample (at least 1).
    pub sample_size: usize,
    /// Seed of the reference sample.
    pub seed: u64,
}

impl Default for ProfileOptions {
    /// Ten bins, a sample of 1,000 values, seed 0.
    fn default() -> Self {
        Self {
            bins: 10,
            sample_size: 1000,
            seed: 0,
        }
    }
}

/// Why a profile could not be fitted on the given data.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ProfileError {
    /// `options.bins` was below 2.
    #[error("`bins` is {bins}: expected at least 2")]
    TooFewBins {
        /// The requested number of bins.
        bins: usize,
    },
    /// `options.sample_size` was 0.
    #[error("`sample_size` is 0: expected at least 1")]
    ZeroSampleSize,
    /// There were no feature columns.
    #[error("`columns` is empty: expected at least one feature column")]
    NoColumns,
    /// The number of names and columns differed.
    #[error(
        "`feature_names` has {names} names and `columns` has {columns} columns: expected one name per column"
    )]
    NameCountMismatch {
        /// Number of feature names.
        names: usize,
        /// Number of columns.
        columns: usize,
    },
    /// The columns had no rows.
    #[error("`columns[0]` (feature `{feature}`) is empty: expected at least one row")]
    NoRows {
        /// Name of the first feature.
        feature: String,
    },
    /// A column's length differed from the first column's.
    #[error(
        "`columns[{index}]` (feature `{feature}`) has {found} values: expected {expected}, the length of `columns[0]`"
    )]
    ColumnLength {
        /// Position of the column.
        index: usize,
        /// Name of the feature.
        feature: String,
        /// Its number of values.
        found: usize,
        /// The number of rows.
        expected: usize,
    },
    /// The number of labels differed from the number of rows.
    #[error("`labels` has {found} entries: expected {expected}, one per row of `columns`")]
    LabelCount {
        /// Number of labels.
        found: usize,
        /// Number of rows.
        expected: usize,
    },
    /// A label was not a valid class index.
    #[error("`labels[{row}]` is {label}: expected a class index below `n_classes` ({n_classes})")]
    LabelOutOfRange {
        /// Row of the label.
        row: usize,
        /// The label.
        label: usize,
        /// The number of classes.
        n_classes: usize,
    },
    /// A feature value was NaN or infinite.
    #[error("`columns[{index}][{row}]` (feature `{feature}`) is {value}: expected a finite number")]
    NonFinite {
        /// Position of the column.
        index: usize,
        /// Name of the feature.
        feature: String,
        /// Row of the value.
        row: usize,
        /// The value.
        value: f64,
    },
}

impl DataProfile {
    /// Fits the profile on a training split given as one column per feature and one label per row.
    ///
    /// Every feature gets quantile bin edges, the share of its values in each bin and
    /// a reference sample. The sample is drawn once, as a set of rows without
    /// replacement (seeded by `options.seed`, using `rand`'s `StdRng`), shared by all
    /// features and kept in training order; when there are at most
    /// `options.sample_size` rows, every value is kept. Class frequencies are the
    /// share of each label in `0..n_classes`.
    pub fn fit(
        feature_names: &[String],
        columns: &[Vec<f64>],
        labels: &[usize],
        n_classes: usize,
        options: &ProfileOptions,
    ) -> Result<DataProfile, ProfileError> {
        check_options(options)?;
        let rows = check_shape(feature_names, columns, labels)?;
        let class_frequencies = class_frequencies(labels, n_classes)?;
        let sample_rows = sample_rows(rows, options);
        let features = feature_names
            .iter()
            .zip(columns)
            .enumerate()
            .map(|(index, (name, column))| {
                FeatureProfile::fit(index, name, column, options.bins, &sample_rows)
            })
            .collect::<Result<_, _>>()?;
        Ok(DataProfile {
            features,
            class_frequencies,
        })
    }
}

impl FeatureProfile {
    /// Index of the bin holding `value`: the number of edges strictly below it.
    ///
    /// `-inf` falls in bin 0 and `+inf` in the last bin; NaN also falls in bin 0, so
    /// callers should reject non-finite inputs first.
    pub fn bin_index(&self, value: f64) -> usize {
        self.bin_edges.partition_point(|&edge| edge < value)
    }

    /// Number of `values` in each bin, with the same bins as `reference_frequencies`.
    pub fn histogram(&self, values: &[f64]) -> Vec<u64> {
        let mut counts = vec![0; self.bin_edges.len() + 1];
        for &value in values {
            counts[self.bin_index(value)] += 1;
        }
        counts
    }

    /// Fits one feature; `index` and `name` only label errors and the profile.
    fn fit(
        index: usize,
        name: &str,
        column: &[f64],
        bins: usize,
        sample_rows: &[usize],
    ) -> Result<FeatureProfile, ProfileError> {
        if let Some((row, &value)) = column.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(ProfileError::NonFinite {
                index,
                feature: name.to_owned(),
                row,
                value,
            });
        }
        let mut sorted = column.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mut profile = FeatureProfile {
            name: name.to_owned(),
            bin_edges: quantile_edges(&sorted, bins),
            reference_frequencies: Vec::new(),
            reference_sample: sample_rows.iter().map(|&row| column[row]).collect(),
        };
        let total = column.len() as f64;
        profile.reference_frequencies = profile
            .histogram(column)
            .into_iter()
            .map(|count| count as f64 / total)
            .collect();
        Ok(profile)
    }
}

/// Rejects options that cannot give a usable profile.
fn check_options(options: &ProfileOptions) -> Result<(), ProfileError> {
    if options.bins < 2 {
        return Err(ProfileError::TooFewBins { bins: options.bins });
    }
    if options.sample_size == 0 {
        return Err(ProfileError::ZeroSampleSize);
    }
    Ok(())
}

/// Checks that names, columns and labels agree, and returns the number of rows.
fn check_shape(
    feature_names: &[String],
    columns: &[Vec<f64>],
    labels: &[usize],
) -> Result<usize, ProfileError> {
    let Some(first) = columns.first() else {
        return Err(ProfileError::NoColumns);
    };
    if feature_names.len() != columns.len() {
        return Err(ProfileError::NameCountMismatch {
            names: feature_names.len(),
            columns: columns.len(),
        });
    }
    let rows = first.len();
    if rows == 0 {
        return Err(ProfileError::NoRows {
            feature: feature_names[0].clone(),
        });
    }
    if let Some(index) = columns.iter().position(|column| column.len() != rows) {
        return Err(ProfileError::ColumnLength {
            index,
            feature: feature_names[index].clone(),
            found: columns[index].len(),
            expected: rows,
        });
    }
    if labels.len() != rows {
        return Err(ProfileError::LabelCount {
            found: labels.len(),
            expected: rows,
        });
    }
    Ok(rows)
}

/// Share of each class in `labels`, checking every label is below `n_classes`.
fn class_frequencies(labels: &[usize], n_classes: usize) -> Result<Vec<f64>, ProfileError> {
    let mut counts = vec![0usize; n_classes];
    for (row, &label) in labels.iter().enumerate() {
        let count = counts.get_mut(label).ok_or(ProfileError::LabelOutOfRange {
            row,
            label,
            n_classes,
        })?;
        *count += 1;
    }
    let total = labels.len() as f64;
    Ok(counts
        .into_iter()
        .map(|count| count as f64 / total)
        .collect())
}

/// Rows of the reference sample, ascending: all rows, or a seeded draw of `sample_size` without replacement.
fn sample_rows(rows: usize, options: &ProfileOptions) -> Vec<usize> {
    if rows <= options.sample_size {
        return (0..rows).collect();
    }
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut picked = rand::seq::index::sample(&mut rng, rows, options.sample_size).into_vec();
    picked.sort_unstable();
    picked
}

/// Distinct quantiles of `sorted` at `i / bins` for `i = 1..bins`.
fn quantile_edges(sorted: &[f64], bins: usize) -> Vec<f64> {
    let mut edges: Vec<f64> = (1..bins)
        .map(|i| quantile_linear(sorted, i as f64 / bins as f64))
        .collect();
    edges.dedup();
    edges
}

/// The `q`-quantile of non-empty `sorted` data, as `numpy.quantile(sorted, q, method='linear')`.
///
/// The virtual index is `q * (n - 1)`; the result interpolates linearly between the
/// two values around it, using numpy's form of the interpolation.
fn quantile_linear(sorted: &[f64], q: f64) -> f64 {
    let last = sorted.len() - 1;
    let virtual_index = last as f64 * q;
    if virtual_index >= last as f64 {
        return sorted[last];
    }
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let (a, b) = (sorted[below as usize], sorted[below as usize + 1]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    fn fit(columns: &[Vec<f64>], labels: &[usize], options: &ProfileOptions) -> DataProfile {
        DataProfile::fit(&names(columns.len()), columns, labels, 3, options).unwrap()
    }

    #[test]
    fn quantile_matches_numpy_linear() {
        // numpy.quantile([1, 2, 4, 8, 16], [0.1, 0.5, 0.75, 0.9]) = [1.4, 4, 8, 12.8]
        let data = [1.0, 2.0, 4.0, 8.0, 16.0];
        let got: Vec<f64> = [0.1, 0.5, 0.75, 0.9]
            .iter()
            .map(|&q| quantile_linear(&data, q))
            .collect();
        let want = [1.4, 4.0, 8.0, 12.8];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?}");
        }
        assert_eq!(quantile_linear(&[7.0], 0.5), 7.0);
    }

    #[test]
    fn fit_on_known_data_gives_expected_edges_and_frequencies() {
        // 0..=99 in 4 bins: numpy.quantile(range(100), [.25, .5, .75]) = [24.75, 49.5, 74.25]
        let column: Vec<f64> = (0..100).map(f64::from).collect();
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i >= 70)).collect();
        let options = ProfileOptions {
            bins: 4,
            ..ProfileOptions::default()
        };
        let profile = fit(&[column], &labels, &options);
        let feature = &profile.features[0];
        assert_eq!(feature.name, "f0");
        assert_eq!(feature.bin_edges, vec![24.75, 49.5, 74.25]);
        assert_eq!(feature.reference_frequencies, vec![0.25, 0.25, 0.25, 0.25]);
        assert_eq!(profile.class_frequencies, vec![0.7, 0.3, 0.0]);
    }

    #[test]
    fn repeated_quantiles_are_dropped_and_bins_close_on_the_right() {
        // Mostly zeros, like blank pixels: deciles 0.1..0.7 are all 0.
        let column: Vec<f64> = (0..10)
            .map(|i| if i < 8 { 0.0 } else { f64::from(i) })
            .collect();
        let profile = fit(&[column], &[0; 10], &ProfileOptions::default());
        let feature = &profile.features[0];
        // numpy.quantile([0]*8 + [8, 9], [.1, ..., .9]) = [0]*7 + [1.6, 8.1]
        assert_eq!(feature.bin_edges.len(), 3);
        assert_eq!(feature.bin_edges[0], 0.0);
        assert!((feature.bin_edges[1] - 1.6).abs() < 1e-12);
        assert!((feature.bin_edges[2] - 8.1).abs() < 1e-12);
        assert_eq!(feature.reference_frequencies, vec![0.8, 0.0, 0.1, 0.1]);
        assert_eq!(feature.bin_index(0.0), 0);
        assert_eq!(feature.bin_index(1e-9), 1);
        assert_eq!(feature.bin_index(8.1), 2);
        assert_eq!(feature.bin_index(f64::INFINITY), 3);
        assert_eq!(feature.bin_index(f64::NEG_INFINITY), 0);
    }

    #[test]
    fn histogram_of_training_data_reproduces_reference_frequencies() {
        let columns: Vec<Vec<f64>> = vec![
            (0..537)
                .map(|i| f64::from((i * 7919) % 101) / 7.0)
                .collect(),
            (0..537).map(|i| f64::from(i % 17)).collect(),
        ];
        let labels: Vec<usize> = (0..537).map(|i| i % 3).collect();
        let profile = fit(&columns, &labels, &ProfileOptions::default());
        for (feature, column) in profile.features.iter().zip(&columns) {
            let counts = feature.histogram(column);
            assert_eq!(counts.len(), feature.reference_frequencies.len());
            assert_eq!(counts.iter().sum::<u64>(), 537);
            for (&count, &share) in counts.iter().zip(&feature.reference_frequencies) {
                assert_eq!(count as f64 / 537.0, share);
            }
            let total: f64 = feature.reference_frequencies.iter().sum();
            assert!((total - 1.0).abs() < 1e-12);
            assert!(feature.bin_edges.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn reference_sample_is_seeded_bounded_and_drawn_without_replacement() {
        let column: Vec<f64> = (0..5000).map(f64::from).collect();
        let labels = vec![0; 5000];
        let options = |seed| ProfileOptions {
            sample_size: 300,
            seed,
            ..ProfileOptions::default()
        };
        let sample = |seed| {
            fit(std::slice::from_ref(&column), &labels, &options(seed)).features[0]
                .reference_sample
                .clone()
        };
        let first = sample(7);
        assert_eq!(first.len(), 300);
        assert_eq!(first, sample(7));
        assert_ne!(first, sample(8));
        // Ascending and distinct: rows kept in training order, no row twice.
        assert!(first.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn reference_sample_keeps_every_value_when_there_are_few() {
        let column = vec![3.0, 1.0, 2.0];
        let profile = fit(
            std::slice::from_ref(&column),
            &[0, 1, 2],
            &ProfileOptions::default(),
        );
        assert_eq!(profile.features[0].reference_sample, column);
    }

    #[test]
    fn sample_rows_are_shared_across_features() {
        let a: Vec<f64> = (0..2000).map(f64::from).collect();
        let b: Vec<f64> = a.iter().map(|v| v * 2.0).collect();
        let options = ProfileOptions {
            sample_size: 50,
            ..ProfileOptions::default()
        };
        let profile = fit(&[a, b], &vec![0; 2000], &options);
        let (sa, sb) = (
            &profile.features[0].reference_sample,
            &profile.features[1].reference_sample,
        );
        assert!(sa.iter().zip(sb).all(|(x, y)| x * 2.0 == *y));
    }

    #[test]
    fn errors_name_the_field() {
        let err =
            |names: &[String], columns: &[Vec<f64>], labels: &[usize], options: &ProfileOptions| {
                DataProfile::fit(names, columns, labels, 2, options)
                    .unwrap_err()
                    .to_string()
            };
        let ok = ProfileOptions::default();
        let one = vec![vec![1.0, 2.0]];
        assert!(
            err(
                &names(1),
                &one,
                &[0, 1],
                &ProfileOptions {
                    bins: 1,
                    ..ok.clone()
                }
            )
            .contains("`bins` is 1")
        );
        assert!(
            err(
                &names(1),
                &one,
                &[0, 1],
                &ProfileOptions {
                    sample_size: 0,
                    ..ok.clone()
                }
            )
            .contains("`sample_size`")
        );
        assert!(err(&[], &[], &[], &ok).contains("`columns` is empty"));
        assert!(err(&names(2), &one, &[0, 1], &ok).contains("`feature_names` has 2 names"));
        assert!(
            err(&names(1), &[vec![]], &[], &ok).contains("`columns[0]` (feature `f0`) is empty")
        );
        let ragged = vec![vec![1.0, 2.0], vec![1.0]];
        assert!(
            err(&names(2), &ragged, &[0, 1], &ok)
                .contains("`columns[1]` (feature `f1`) has 1 values: expected 2")
        );
        assert!(err(&names(1), &one, &[0], &ok).contains("`labels` has 1 entries: expected 2"));
        assert!(err(&names(1), &one, &[0, 2], &ok).contains("`labels[1]` is 2"));
        let nan = vec![vec![1.0, f64::NAN]];
        assert!(
            err(&names(1), &nan, &[0, 1], &ok).contains("`columns[0][1]` (feature `f0`) is NaN")
        );
    }
}
