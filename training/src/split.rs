//! Seeded train / validation / test split and the standardisation fitted on the
//! training split.

use edgewise_core::manifest::Normalization;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::data::Dataset;
use crate::trainer::Examples;

/// Row indices of the three splits.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Rows to train on.
    pub train: Vec<usize>,
    /// Rows for early stopping.
    pub validation: Vec<usize>,
    /// Held-out rows for the final report.
    pub test: Vec<usize>,
}

/// Shuffles `rows` indices with `seed` and cuts off the test and validation shares.
pub fn split(rows: usize, validation_fraction: f64, test_fraction: f64, seed: u64) -> Split {
    let mut order: Vec<usize> = (0..rows).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let test = ((rows as f64) * test_fraction).round() as usize;
    let validation = ((rows as f64) * validation_fraction).round() as usize;
    let test_rows = order.split_off(rows - test.min(rows));
    let validation_rows = order.split_off(order.len() - validation.min(order.len()));
    Split {
        train: order,
        validation: validation_rows,
        test: test_rows,
    }
}

/// Mean and standard deviation of each feature over `indices` (a zero deviation
/// becomes 1, so constant features pass through centred).
pub fn fit_normalization(dataset: &Dataset, indices: &[usize]) -> Normalization {
    let width = dataset.feature_names.len();
    let count = indices.len().max(1) as f64;
    let mut mean = vec![0f64; width];
    for &row in indices {
        for (sum, value) in mean.iter_mut().zip(&dataset.rows[row]) {
            *sum += f64::from(*value);
        }
    }
    mean.iter_mut().for_each(|sum| *sum /= count);
    let mut variance = vec![0f64; width];
    for &row in indices {
        for ((sum, value), mean) in variance.iter_mut().zip(&dataset.rows[row]).zip(&mean) {
            *sum += (f64::from(*value) - mean).powi(2);
        }
    }
    let std = variance
        .iter()
        .map(|sum| {
            let deviation = (sum / count).sqrt();
            if deviation > 1e-12 {
                deviation as f32
            } else {
                1.0
            }
        })
        .collect();
    Normalization {
        mean: mean.into_iter().map(|value| value as f32).collect(),
        std,
    }
}

/// The rows at `indices`, normalised, as training examples.
pub fn examples(dataset: &Dataset, indices: &[usize], normalization: &Normalization) -> Examples {
    let width = dataset.feature_names.len();
    let mut inputs = Vec::with_capacity(indices.len() * width);
    for &row in indices {
        let start = inputs.len();
        inputs.extend_from_slice(&dataset.rows[row]);
        normalization.apply(&mut inputs[start..]);
    }
    Examples {
        inputs,
        labels: indices.iter().map(|&row| dataset.labels[row]).collect(),
        width,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_seeded_disjoint_and_complete() {
        let a = split(100, 0.1, 0.2, 7);
        assert_eq!(a, split(100, 0.1, 0.2, 7));
        assert_ne!(a, split(100, 0.1, 0.2, 8));
        assert_eq!(
            (a.train.len(), a.validation.len(), a.test.len()),
            (70, 10, 20)
        );
        let mut all: Vec<usize> = [a.train, a.validation, a.test].concat();
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
    }
}
