//! The training loop: Adam on cross-entropy, seeded mini-batches, and early stopping
//! on validation loss. It runs on the CPU (`flex`) with autodiff, through the same
//! [`Network`] code that serves predictions.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use edgewise_core::spec::ModelSpec;
use edgewise_model::{ModelError, Network};
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Examples of one split: normalised inputs row after row, and their classes.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    /// `len() * width` normalised values.
    pub inputs: Vec<f32>,
    /// Class of each example.
    pub labels: Vec<usize>,
    /// Values per example.
    pub width: usize,
}

impl Examples {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn select(&self, indices: &[usize]) -> (Vec<f32>, Vec<i64>) {
        let mut inputs = Vec::with_capacity(indices.len() * self.width);
        for &index in indices {
            inputs.extend_from_slice(&self.inputs[index * self.width..(index + 1) * self.width]);
        }
        let labels = indices
            .iter()
            .map(|&index| self.labels[index] as i64)
            .collect();
        (inputs, labels)
    }
}

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Seed for the initial weights and the batch order.
    pub seed: u64,
    /// Epochs without a lower validation loss before stopping.
    pub patience: usize,
}

/// What training produced.
#[derive(Debug)]
pub struct Trained {
    /// The network of the best validation epoch, in inference mode.
    pub network: Network,
    /// Mean training loss of each epoch run.
    pub epoch_losses: Vec<f64>,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Validation accuracy of that epoch.
    pub validation_accuracy: f64,
}

/// Trains a fresh network of `spec` on `train`, keeping the weights with the lowest
/// loss on `validation`. The bar advances once per epoch.
pub fn train(
    spec: &ModelSpec,
    train: &Examples,
    validation: &Examples,
    config: &TrainConfig,
    progress: &ProgressBar,
) -> Result<Trained, ModelError> {
    let device = Device::flex().autodiff();
    device.seed(config.seed);
    let mut network = Network::new(spec, &device)?;
    let mut optimizer = AdamConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();

    let mut epoch_losses = Vec::new();
    let mut best: Option<(Network, usize, Score)> = None;
    for epoch in 1..=config.epochs {
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for batch in order.chunks(config.batch_size.max(1)) {
            let (inputs, labels) = train.select(batch);
            let x = Tensor::<2>::from_data(
                TensorData::new(inputs, [batch.len(), train.width]),
                &device,
            );
            let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [batch.len()]), &device);
            let loss = loss_fn.forward(network.forward_logits(x), y);
            let gradients = GradientsParams::from_grads(loss.backward(), &network);
            loss_sum += f64::from(loss.into_scalar::<f32>()) * batch.len() as f64;
            network = optimizer.step(config.learning_rate, network, gradients);
        }
        let epoch_loss = loss_sum / train.len().max(1) as f64;
        if !epoch_loss.is_finite() {
            return Err(ModelError::Backend(format!(
                "training diverged: the loss of epoch {epoch} is {epoch_loss}; lower --lr"
            )));
        }
        epoch_losses.push(epoch_loss);

        let candidate = network.valid();
        let score = validate(&candidate, validation)?;
        progress.set_message(format!(
            "loss {:.4}  val loss {:.4}  val acc {:.4}",
            epoch_losses[epoch_losses.len() - 1],
            score.loss,
            score.accuracy
        ));
        progress.inc(1);
        if progress.is_hidden() {
            // No terminal (a control plane runs this): the epochs go to the log instead.
            tracing::info!(
                epoch = epoch_losses.len(),
                loss = epoch_losses[epoch_losses.len() - 1],
                validation_loss = score.loss,
                validation_accuracy = score.accuracy,
                "epoch"
            );
        }
        let improved = best
            .as_ref()
            .is_none_or(|(_, _, best)| score.loss < best.loss);
        if improved {
            best = Some((candidate, epoch, score));
        } else if best
            .as_ref()
            .is_some_and(|(_, best_epoch, _)| epoch - best_epoch >= config.patience)
        {
            break;
        }
    }
    let (network, best_epoch, score) =
        best.ok_or_else(|| ModelError::Backend("training ran no epoch (epochs = 0)".to_string()))?;
    Ok(Trained {
        network,
        epoch_losses,
        best_epoch,
        validation_accuracy: score.accuracy,
    })
}

/// Predicted class of every example, in inference mode.
pub fn predict_classes(network: &Network, examples: &Examples) -> Result<Vec<usize>, ModelError> {
    if examples.is_empty() {
        return Ok(Vec::new());
    }
    let device = Device::flex();
    let x = Tensor::<2>::from_data(
        TensorData::new(examples.inputs.clone(), [examples.len(), examples.width]),
        &device,
    );
    class_indices(network.forward_logits(x))
}

fn class_indices(logits: Tensor<2>) -> Result<Vec<usize>, ModelError> {
    let classes = logits
        .argmax(1)
        .try_into_data()
        .map_err(|err| ModelError::Backend(format!("{err:?}")))?
        .convert::<i64>()
        .try_to_vec::<i64>()
        .map_err(|err| ModelError::Backend(format!("{err:?}")))?;
    Ok(classes
        .into_iter()
        .map(|class| class.max(0) as usize)
        .collect())
}

/// Cross-entropy and accuracy of a network on held-out examples.
struct Score {
    loss: f64,
    accuracy: f64,
}

fn validate(network: &Network, examples: &Examples) -> Result<Score, ModelError> {
    if examples.is_empty() {
        return Err(ModelError::Backend(
            "the validation split is empty: raise --validation-fraction or use more rows"
                .to_string(),
        ));
    }
    let device = Device::flex();
    let x = Tensor::<2>::from_data(
        TensorData::new(examples.inputs.clone(), [examples.len(), examples.width]),
        &device,
    );
    let labels: Vec<i64> = examples.labels.iter().map(|&label| label as i64).collect();
    let y = Tensor::<1, Int>::from_data(TensorData::new(labels, [examples.len()]), &device);
    let logits = network.forward_logits(x);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits.clone(), y)
        .into_scalar::<f32>();
    let predicted = class_indices(logits)?;
    let correct = predicted
        .iter()
        .zip(&examples.labels)
        .filter(|(guess, truth)| guess == truth)
        .count();
    Ok(Score {
        loss: f64::from(loss),
        accuracy: correct as f64 / examples.len() as f64,
    })
}
