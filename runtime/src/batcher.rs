//! Dynamic batching in the manner of Triton's `dynamic_batching`: concurrent
//! requests are queued, and one inference thread joins them into a batch of at most
//! `max_batch_size` examples, waiting at most `max_queue_delay` after the first
//! request for more to arrive.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread;
use std::time::{Duration, Instant};

use std::panic::{self, AssertUnwindSafe};

use edgewise_model::{ModelError, Predictor};
use thiserror::Error;
use tokio::sync::oneshot;

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchingConfig {
    /// Most examples in one batch; larger requests are refused.
    pub max_batch_size: usize,
    /// Longest wait for more requests once one is queued.
    pub max_queue_delay: Duration,
    /// Most requests waiting; more are refused as overload.
    pub max_queue_len: usize,
}

/// Why a request got no prediction.
#[derive(Debug, Error, PartialEq)]
pub enum BatchError {
    /// The request alone is larger than a batch.
    #[error("batch of {rows} examples exceeds max_batch_size {max}")]
    TooLarge {
        /// Examples in the request.
        rows: usize,
        /// The limit.
        max: usize,
    },
    /// The queue is full.
    #[error("the inference queue is full ({0} requests waiting); retry later")]
    Overloaded(usize),
    /// The inference thread stopped.
    #[error("the inference worker has stopped")]
    Stopped,
    /// The model failed on this batch.
    #[error("inference failed: {0}")]
    Inference(String),
}

struct Job {
    values: Vec<f32>,
    rows: usize,
    reply: oneshot::Sender<Result<Vec<f32>, BatchError>>,
}

/// Handle for queueing requests to the inference thread; cheap to clone.
#[derive(Clone)]
pub struct Batcher {
    queue: SyncSender<Job>,
    config: BatchingConfig,
}

impl Batcher {
    /// Starts the inference thread that owns `predictor`.
    pub fn start(predictor: Predictor, config: BatchingConfig) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::sync_channel(config.max_queue_len.max(1));
        thread::Builder::new()
            .name("edgewise-inference".to_string())
            .spawn(move || run_worker(&predictor, &jobs, config))?;
        Ok(Batcher { queue, config })
    }

    /// Most examples one request may hold.
    pub fn max_batch_size(&self) -> usize {
        self.config.max_batch_size
    }

    /// Queues `rows` examples and waits for their class probabilities.
    pub async fn predict(&self, values: Vec<f32>, rows: usize) -> Result<Vec<f32>, BatchError> {
        if rows > self.config.max_batch_size {
            return Err(BatchError::TooLarge {
                rows,
                max: self.config.max_batch_size,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Job {
                values,
                rows,
                reply,
            })
            .map_err(|err| match err {
                TrySendError::Full(_) => BatchError::Overloaded(self.config.max_queue_len),
                TrySendError::Disconnected(_) => BatchError::Stopped,
            })?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

fn run_worker(predictor: &Predictor, jobs: &Receiver<Job>, config: BatchingConfig) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        let mut rows = batch[0].rows;
        let deadline = Instant::now() + config.max_queue_delay;
        while rows < config.max_batch_size {
            let wait = deadline.saturating_duration_since(Instant::now());
            let next = if wait.is_zero() {
                jobs.try_recv().map_err(|_| RecvTimeoutError::Timeout)
            } else {
                jobs.recv_timeout(wait)
            };
            match next {
                Ok(job) if rows + job.rows <= config.max_batch_size => {
                    rows += job.rows;
                    batch.push(job);
                }
                Ok(job) => {
                    carried = Some(job);
                    break;
                }
                Err(_) => break,
            }
        }
        run_batch(predictor, batch, rows);
    }
}

fn run_batch(predictor: &Predictor, batch: Vec<Job>, rows: usize) {
    metrics::histogram!("edgewise_inference_batch_size").record(rows as f64);
    let mut values = Vec::with_capacity(rows * predictor.input_len());
    for job in &batch {
        values.extend_from_slice(&job.values);
    }
    // A panic inside the backend must not take the inference thread down with it.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| predictor.predict(&values, rows)))
        .unwrap_or_else(|_| Err(ModelError::Backend("the backend panicked".to_string())));
    match outcome {
        Ok(outputs) => {
            let classes = predictor.classes();
            let mut offset = 0;
            for job in batch {
                let end = offset + job.rows * classes;
                let answer = outputs
                    .get(offset..end)
                    .map(<[f32]>::to_vec)
                    .ok_or_else(|| {
                        BatchError::Inference(format!(
                            "the model returned {} values for {rows} examples of {classes} classes",
                            outputs.len()
                        ))
                    });
                let _ = job.reply.send(answer);
                offset = end;
            }
        }
        Err(err) => {
            tracing::error!(%err, rows, "inference failed");
            for job in batch {
                let _ = job.reply.send(Err(BatchError::Inference(err.to_string())));
            }
        }
    }
}
