//! What the node observes while serving: the open telemetry window, the ids of recent
//! predictions (so delayed ground-truth labels can be matched), and a sampled,
//! rate-limited, size-bounded capture of inputs, outputs and labels for retraining.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use edgewise_core::capture::{CaptureRecord, LateLabel};
use edgewise_core::profile::DataProfile;
use edgewise_core::telemetry::{TelemetryWindow, WindowBuilder};
use thiserror::Error;

use crate::server::ServingModel;

/// How much the node captures.
#[derive(Debug, Clone, Copy)]
pub struct CaptureConfig {
    /// Share of predictions captured, in `[0, 1]`.
    pub sample_rate: f64,
    /// Most records per window.
    pub max_per_window: usize,
    /// Most input values per record (larger examples are not captured).
    pub max_values: usize,
}

impl Default for CaptureConfig {
    /// 5% of predictions, at most 32 per window, examples of up to 1,024 values.
    fn default() -> Self {
        CaptureConfig {
            sample_rate: 0.05,
            max_per_window: 32,
            max_values: 1024,
        }
    }
}

/// Why a label was not taken.
#[derive(Debug, Error, PartialEq)]
pub enum FeedbackError {
    /// No recent prediction has this id.
    #[error(
        "no recent prediction has id {id:?}; the node remembers the last {kept} prediction ids"
    )]
    UnknownId {
        /// The id.
        id: String,
        /// How many ids are kept.
        kept: usize,
    },
    /// The label is not one of the model's classes.
    #[error("label {label:?} is not a class of the model; expected one of {expected}")]
    UnknownLabel {
        /// The label.
        label: String,
        /// The classes.
        expected: String,
    },
    /// The id's prediction came from another model.
    #[error("prediction {id:?} was made by model {model:?}, not {asked:?}")]
    WrongModel {
        /// The id.
        id: String,
        /// The model that predicted it.
        model: String,
        /// The model named in the request.
        asked: String,
    },
}

/// A remembered prediction.
struct Prediction {
    model: String,
    labels: Arc<Vec<String>>,
    class: usize,
    captured: bool,
}

/// A window in progress, with the profile it measures drift against.
struct OpenWindow {
    profile: Arc<DataProfile>,
    builder: WindowBuilder,
}

#[derive(Default)]
struct State {
    open: Option<OpenWindow>,
    finished: Vec<OpenWindow>,
    predictions: HashMap<String, Prediction>,
    order: VecDeque<String>,
    captures: Vec<CaptureRecord>,
    late_labels: Vec<LateLabel>,
    random: u64,
}

/// The node's recorder; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    state: Arc<Mutex<State>>,
    max_ids: usize,
    capture: CaptureConfig,
}

/// Default number of prediction ids kept for feedback.
pub const DEFAULT_MAX_IDS: usize = 10_000;

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

impl Recorder {
    /// A recorder keeping `max_ids` prediction ids and capturing as `capture` says.
    pub fn new(max_ids: usize, capture: CaptureConfig) -> Self {
        let state = State {
            random: 0x2545_F491_4F6C_DD1D,
            ..State::default()
        };
        Recorder {
            state: Arc::new(Mutex::new(state)),
            max_ids: max_ids.max(1),
            capture,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The open window for `model`, starting a new one (and setting aside the old) when
    /// the serving model changed.
    fn window_for<'a>(state: &'a mut State, model: &ServingModel) -> &'a mut OpenWindow {
        let version = model.version;
        let same = state
            .open
            .as_ref()
            .is_some_and(|open| open.builder.model() == (model.info.name.as_str(), version));
        if !same && let Some(old) = state.open.take() {
            state.finished.push(old);
        }
        state.open.get_or_insert_with(|| OpenWindow {
            profile: model.profile.clone(),
            builder: WindowBuilder::new(&model.info.name, version, &model.profile, now()),
        })
    }

    /// Records an answered request.
    pub fn record_success(
        &self,
        model: &ServingModel,
        id: Option<&str>,
        inputs: &[f32],
        classes: &[usize],
        latency_seconds: f64,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let window = Self::window_for(state, model);
        let profile = window.profile.clone();
        window
            .builder
            .record_success(&profile, inputs, classes, latency_seconds);
        let width = model.info.features.len().max(1);
        for (row, (&class, example)) in classes.iter().zip(inputs.chunks(width)).enumerate() {
            let key = match (id, classes.len()) {
                (Some(id), 1) => Some(id.to_owned()),
                (Some(id), _) => Some(format!("{id}/{row}")),
                (None, _) => None,
            };
            let captured = self.maybe_capture(state, model, key.as_deref(), example, class);
            if let Some(key) = key {
                self.remember(state, key, model, class, captured);
            }
        }
    }

    /// Records a failed request (`model` is what served, if anything did).
    pub fn record_error(&self, model: Option<&ServingModel>, latency_seconds: f64) {
        let Some(model) = model else { return };
        let mut guard = self.lock();
        Self::window_for(&mut guard, model)
            .builder
            .record_error(latency_seconds);
    }

    /// Records how a shadow candidate's classes compared with `model`'s.
    pub fn record_shadow(&self, model: &ServingModel, shadow_version: u64, agreed: &[bool]) {
        let mut guard = self.lock();
        let window = Self::window_for(&mut guard, model);
        for &same in agreed {
            window.builder.record_shadow(shadow_version, same);
        }
    }

    /// Takes a true label for an earlier prediction of `model_name`.
    pub fn feedback(&self, model_name: &str, id: &str, label: &str) -> Result<bool, FeedbackError> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let prediction = state
            .predictions
            .get(id)
            .ok_or_else(|| FeedbackError::UnknownId {
                id: id.to_owned(),
                kept: self.max_ids,
            })?;
        if prediction.model != model_name {
            return Err(FeedbackError::WrongModel {
                id: id.to_owned(),
                model: prediction.model.clone(),
                asked: model_name.to_owned(),
            });
        }
        let Some(truth) = prediction.labels.iter().position(|l| l == label) else {
            return Err(FeedbackError::UnknownLabel {
                label: label.to_owned(),
                expected: prediction.labels.join(", "),
            });
        };
        let correct = truth == prediction.class;
        let captured = prediction.captured;
        if let Some(open) = state.open.as_mut() {
            open.builder.record_label(correct);
        }
        if captured {
            match state
                .captures
                .iter_mut()
                .find(|c| c.id.as_deref() == Some(id))
            {
                Some(record) => record.label = Some(label.to_owned()),
                None => state.late_labels.push(LateLabel {
                    id: id.to_owned(),
                    label: label.to_owned(),
                }),
            }
        }
        Ok(correct)
    }

    /// Closes every window with data, numbering them with `next_seq`.
    pub fn close_windows(
        &self,
        device_id: &str,
        mut next_seq: impl FnMut() -> u64,
    ) -> Vec<TelemetryWindow> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut open: Vec<OpenWindow> = state.finished.drain(..).collect();
        if let Some(current) = state.open.take() {
            let (model, version) = current.builder.model();
            let fresh = WindowBuilder::new(model, version, &current.profile, now());
            state.open = Some(OpenWindow {
                profile: current.profile.clone(),
                builder: fresh,
            });
            open.push(current);
        }
        let mut captures = std::mem::take(&mut state.captures);
        let mut late_labels = std::mem::take(&mut state.late_labels);
        let mut windows = Vec::new();
        for window in open {
            let mut closed = window.builder.close(&window.profile, device_id, 0, now());
            if closed.requests == 0
                && closed.labelled == 0
                && captures.is_empty()
                && late_labels.is_empty()
            {
                continue;
            }
            closed.window_seq = next_seq();
            closed.captures = std::mem::take(&mut captures);
            closed.late_labels = std::mem::take(&mut late_labels);
            crate::telemetry::window_drift(&closed);
            windows.push(closed);
        }
        windows
    }

    /// Captures this example if the sample and the window's budget allow.
    fn maybe_capture(
        &self,
        state: &mut State,
        model: &ServingModel,
        id: Option<&str>,
        example: &[f32],
        class: usize,
    ) -> bool {
        state.random ^= state.random << 13;
        state.random ^= state.random >> 7;
        state.random ^= state.random << 17;
        let draw = (state.random >> 11) as f64 / (1u64 << 53) as f64;
        if draw >= self.capture.sample_rate
            || state.captures.len() >= self.capture.max_per_window
            || example.len() > self.capture.max_values
        {
            return false;
        }
        state.captures.push(CaptureRecord {
            id: id.map(str::to_owned),
            model: model.info.name.clone(),
            version: model.version,
            captured_at: now(),
            inputs: example.to_vec(),
            prediction: model.info.labels.get(class).cloned().unwrap_or_default(),
            label: None,
        });
        true
    }

    /// Remembers a prediction id, forgetting the oldest past the bound.
    fn remember(
        &self,
        state: &mut State,
        key: String,
        model: &ServingModel,
        class: usize,
        captured: bool,
    ) {
        if state
            .predictions
            .insert(
                key.clone(),
                Prediction {
                    model: model.info.name.clone(),
                    labels: model.labels.clone(),
                    class,
                    captured,
                },
            )
            .is_none()
        {
            state.order.push_back(key);
        }
        while state.order.len() > self.max_ids {
            if let Some(oldest) = state.order.pop_front() {
                state.predictions.remove(&oldest);
            }
        }
    }
}
