//! Classification quality: accuracy, macro-averaged F1 and the confusion matrix.

/// Quality of predictions against true labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Share of correct predictions.
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 scores (a class never seen nor predicted
    /// counts as F1 = 0, as scikit-learn does with `zero_division=0`).
    pub macro_f1: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Scores `predicted` against `truth` for `classes` classes.
pub fn evaluate(truth: &[usize], predicted: &[usize], classes: usize) -> Evaluation {
    let mut confusion = vec![vec![0u64; classes]; classes];
    for (&actual, &guess) in truth.iter().zip(predicted) {
        if actual < classes && guess < classes {
            confusion[actual][guess] += 1;
        }
    }
    let total: u64 = confusion.iter().flatten().sum();
    let correct: u64 = (0..classes).map(|class| confusion[class][class]).sum();
    let f1_sum: f64 = (0..classes)
        .map(|class| {
            let true_positive = confusion[class][class] as f64;
            let actual: u64 = confusion[class].iter().sum();
            let predicted: u64 = confusion.iter().map(|row| row[class]).sum();
            let denominator = actual as f64 + predicted as f64;
            if denominator == 0.0 {
                0.0
            } else {
                2.0 * true_positive / denominator
            }
        })
        .sum();
    Evaluation {
        accuracy: if total == 0 {
            0.0
        } else {
            correct as f64 / total as f64
        },
        macro_f1: if classes == 0 {
            0.0
        } else {
            f1_sum / classes as f64
        },
        confusion,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_hand_computed_scores() {
        // truth 0,0,1,1,2 ; predicted 0,1,1,1,0
        let eval = evaluate(&[0, 0, 1, 1, 2], &[0, 1, 1, 1, 0], 3);
        assert_eq!(
            eval.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]
        );
        assert!((eval.accuracy - 0.6).abs() < 1e-12);
        // F1: class0 = 2*1/(2+2)=0.5, class1 = 2*2/(2+3)=0.8, class2 = 0
        assert!((eval.macro_f1 - (0.5 + 0.8) / 3.0).abs() < 1e-12);
    }
}
