//! The JSON model spec: a list of layers over a fixed example shape. Shapes are
//! checked when a spec is loaded, so a bad spec fails with the layer at fault before
//! any tensor is built.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A network as an input shape and a list of layers applied in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Shape of one example, without the batch dimension: `[features]` or
    /// `[channels, height, width]` (e.g. `[64]` or `[1, 8, 8]`).
    pub input_shape: Vec<usize>,
    /// Layers, applied first to last.
    pub layers: Vec<LayerSpec>,
}

/// One layer of a [`ModelSpec`], written as `{"type": "linear", ...}` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// Fully connected layer over a 1-D example.
    Linear {
        /// Output width.
        out_features: usize,
    },
    /// 2-D convolution over a `[channels, height, width]` example.
    Conv2d {
        /// Number of output channels.
        out_channels: usize,
        /// Kernel height and width.
        kernel_size: [usize; 2],
        /// Stride (default 1, 1).
        #[serde(default = "one_one")]
        stride: [usize; 2],
        /// Zero padding on each side (default 0, 0).
        #[serde(default)]
        padding: [usize; 2],
    },
    /// 2-D max pooling over a `[channels, height, width]` example.
    #[serde(rename = "max_pool2d")]
    MaxPool2d {
        /// Window height and width.
        kernel_size: [usize; 2],
        /// Stride (defaults to the kernel size).
        #[serde(default)]
        stride: Option<[usize; 2]>,
    },
    /// Flattens the example to one dimension.
    Flatten,
    /// Reshapes the example; the element count must not change.
    Reshape {
        /// New example shape, without the batch dimension.
        shape: Vec<usize>,
    },
    /// Rectified linear unit.
    Relu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid.
    Sigmoid,
    /// Dropout, active in training only.
    Dropout {
        /// Probability of zeroing an element, in `[0, 1)`.
        prob: f64,
    },
    /// Batch normalisation over the features of a 1-D example.
    #[serde(rename = "batch_norm1d")]
    BatchNorm1d,
    /// Softmax over the features of a 1-D example.
    Softmax,
}

fn one_one() -> [usize; 2] {
    [1, 1]
}

impl LayerSpec {
    /// The layer's name as written in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::MaxPool2d { .. } => "max_pool2d",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Reshape { .. } => "reshape",
            LayerSpec::Relu => "relu",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::BatchNorm1d => "batch_norm1d",
            LayerSpec::Softmax => "softmax",
        }
    }

    /// The example shape this layer produces from `input`, or why it cannot.
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        match self {
            LayerSpec::Linear { out_features } => {
                expect_rank(input, 1, "[features]")?;
                positive(*out_features, "out_features")?;
                Ok(vec![*out_features])
            }
            LayerSpec::Conv2d {
                out_channels,
                kernel_size,
                stride,
                padding,
            } => {
                expect_rank(input, 3, "[channels, height, width]")?;
                positive(*out_channels, "out_channels")?;
                let [height, width] = window_output(input, *kernel_size, *stride, *padding)?;
                Ok(vec![*out_channels, height, width])
            }
            LayerSpec::MaxPool2d {
                kernel_size,
                stride,
            } => {
                expect_rank(input, 3, "[channels, height, width]")?;
                let [height, width] =
                    window_output(input, *kernel_size, stride.unwrap_or(*kernel_size), [0, 0])?;
                Ok(vec![input[0], height, width])
            }
            LayerSpec::Flatten => Ok(vec![element_count(input)?]),
            LayerSpec::Reshape { shape } => {
                let from = element_count(input)?;
                let to = element_count(shape)?;
                if !matches!(shape.len(), 1 | 3) {
                    return Err(format!(
                        "shape must be [features] or [channels, height, width], got {shape:?}"
                    ));
                }
                if from != to {
                    return Err(format!(
                        "shape {shape:?} holds {to} elements, but the input {input:?} holds {from}"
                    ));
                }
                Ok(shape.clone())
            }
            LayerSpec::Dropout { prob } => {
                if !(0.0..1.0).contains(prob) {
                    return Err(format!("prob must be in [0, 1), got {prob}"));
                }
                Ok(input.to_vec())
            }
            LayerSpec::BatchNorm1d | LayerSpec::Softmax => {
                expect_rank(input, 1, "[features]")?;
                Ok(input.to_vec())
            }
            LayerSpec::Relu | LayerSpec::Tanh | LayerSpec::Sigmoid => Ok(input.to_vec()),
        }
    }
}

fn expect_rank(input: &[usize], rank: usize, expected: &str) -> Result<(), String> {
    if input.len() == rank {
        Ok(())
    } else {
        Err(format!(
            "expects an input of shape {expected}, got {input:?}"
        ))
    }
}

fn positive(value: usize, field: &str) -> Result<(), String> {
    if value == 0 {
        Err(format!("{field} must be at least 1"))
    } else {
        Ok(())
    }
}

fn window_output(
    input: &[usize],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Result<[usize; 2], String> {
    let mut out = [0; 2];
    for axis in 0..2 {
        positive(kernel[axis], "kernel_size")?;
        positive(stride[axis], "stride")?;
        let padded = padding[axis]
            .checked_mul(2)
            .and_then(|both_sides| both_sides.checked_add(input[axis + 1]))
            .ok_or_else(|| format!("padding {padding:?} is too large"))?;
        if kernel[axis] > padded {
            return Err(format!(
                "kernel {kernel:?} is larger than the padded input (axis {axis}: {padded})"
            ));
        }
        out[axis] = (padded - kernel[axis]) / stride[axis] + 1;
    }
    Ok(out)
}

/// How many values a tensor of `shape` holds; errors when that overflows.
fn element_count(shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |count, &size| count.checked_mul(size))
        .ok_or_else(|| format!("shape {shape:?} holds more values than fit in memory"))
}

/// Why a spec was refused.
#[derive(Debug, Error, PartialEq)]
pub enum SpecError {
    /// The JSON did not parse into a spec.
    #[error("model spec is not valid JSON for a spec: {0}")]
    Parse(String),
    /// The input shape is not of rank 1 or 3, or has a zero dimension.
    #[error(
        "input_shape must be [features] or [channels, height, width] with every dimension at least 1, got {0:?}"
    )]
    InputShape(Vec<usize>),
    /// The spec has no layers.
    #[error("layers must hold at least one layer")]
    NoLayers,
    /// One layer does not fit the shape it receives.
    #[error("layer {index} ({kind}): {message}")]
    Layer {
        /// Position of the layer, from 0.
        index: usize,
        /// The layer's type name.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The network does not end in a 1-D vector of class scores.
    #[error("the network must end in a 1-D output of class scores, but it ends in {0:?}")]
    OutputShape(Vec<usize>),
}

impl ModelSpec {
    /// Parses a spec from JSON and checks every layer's shapes.
    pub fn from_json(json: &str) -> Result<Self, SpecError> {
        let spec: ModelSpec =
            serde_json::from_str(json).map_err(|err| SpecError::Parse(err.to_string()))?;
        spec.shapes()?;
        Ok(spec)
    }

    /// The example shape after each layer (the input shape first), or the first layer
    /// that does not fit.
    pub fn shapes(&self) -> Result<Vec<Vec<usize>>, SpecError> {
        if !matches!(self.input_shape.len(), 1 | 3) || self.input_shape.contains(&0) {
            return Err(SpecError::InputShape(self.input_shape.clone()));
        }
        if self.layers.is_empty() {
            return Err(SpecError::NoLayers);
        }
        let mut shapes = vec![self.input_shape.clone()];
        let last = self.layers.len() - 1;
        for (index, layer) in self.layers.iter().enumerate() {
            if matches!(layer, LayerSpec::Softmax) && index != last {
                return Err(SpecError::Layer {
                    index,
                    kind: layer.kind(),
                    message: "softmax is allowed only as the last layer".to_string(),
                });
            }
            let input = &shapes[shapes.len() - 1];
            let output = layer
                .output_shape(input)
                .map_err(|message| SpecError::Layer {
                    index,
                    kind: layer.kind(),
                    message,
                })?;
            shapes.push(output);
        }
        let last = &shapes[shapes.len() - 1];
        if last.len() != 1 {
            return Err(SpecError::OutputShape(last.clone()));
        }
        Ok(shapes)
    }

    /// Number of values in one input example.
    pub fn input_len(&self) -> usize {
        // Saturates: a shape this large is refused by `shapes` anyway.
        element_count(&self.input_shape).unwrap_or(usize::MAX)
    }

    /// Number of output classes, once the spec has been checked.
    pub fn output_len(&self) -> Result<usize, SpecError> {
        let shapes = self.shapes()?;
        Ok(shapes[shapes.len() - 1][0])
    }

    /// A built-in spec by name: `digits-mlp`, `digits-cnn` or `rainfall-mlp`.
    pub fn preset(name: &str) -> Option<Self> {
        use LayerSpec::*;
        let spec = match name {
            "digits-mlp" => ModelSpec {
                input_shape: vec![64],
                layers: vec![
                    Linear { out_features: 128 },
                    Relu,
                    Linear { out_features: 10 },
                ],
            },
            "digits-cnn" => ModelSpec {
                input_shape: vec![64],
                layers: vec![
                    Reshape {
                        shape: vec![1, 8, 8],
                    },
                    Conv2d {
                        out_channels: 16,
                        kernel_size: [3, 3],
                        stride: [1, 1],
                        padding: [1, 1],
                    },
                    Relu,
                    MaxPool2d {
                        kernel_size: [2, 2],
                        stride: None,
                    },
                    Conv2d {
                        out_channels: 32,
                        kernel_size: [3, 3],
                        stride: [1, 1],
                        padding: [1, 1],
                    },
                    Relu,
                    MaxPool2d {
                        kernel_size: [2, 2],
                        stride: None,
                    },
                    Flatten,
                    Linear { out_features: 64 },
                    Relu,
                    Dropout { prob: 0.2 },
                    Linear { out_features: 10 },
                ],
            },
            "rainfall-mlp" => ModelSpec {
                input_shape: vec![8],
                layers: vec![
                    Linear { out_features: 32 },
                    Relu,
                    Linear { out_features: 2 },
                ],
            },
            _ => return None,
        };
        Some(spec)
    }

    /// Names of the built-in presets.
    pub const PRESETS: [&'static str; 3] = ["digits-mlp", "digits-cnn", "rainfall-mlp"];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for name in ModelSpec::PRESETS {
            let spec = ModelSpec::preset(name).expect("preset exists");
            assert!(spec.shapes().is_ok(), "{name}");
        }
        assert_eq!(
            ModelSpec::preset("digits-cnn").and_then(|s| s.output_len().ok()),
            Some(10)
        );
    }

    #[test]
    fn linear_on_an_image_names_the_layer() {
        let err = ModelSpec::from_json(
            r#"{"input_shape":[1,8,8],"layers":[{"type":"relu"},{"type":"linear","out_features":3}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "layer 1 (linear): expects an input of shape [features], got [1, 8, 8]"
        );
    }

    #[test]
    fn conv_on_a_vector_is_refused() {
        let err = ModelSpec::from_json(
            r#"{"input_shape":[64],"layers":[{"type":"conv2d","out_channels":4,"kernel_size":[3,3]}]}"#,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SpecError::Layer {
                    index: 0,
                    kind: "conv2d",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn reshape_must_keep_the_element_count() {
        let err = ModelSpec::from_json(
            r#"{"input_shape":[64],"layers":[{"type":"reshape","shape":[1,7,7]},{"type":"flatten"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("layer 0 (reshape)"), "{err}");
        assert!(err.to_string().contains("49 elements"), "{err}");
    }

    #[test]
    fn oversized_kernel_and_bad_dropout_are_refused() {
        let kernel = ModelSpec::from_json(
            r#"{"input_shape":[1,2,2],"layers":[{"type":"max_pool2d","kernel_size":[3,3]},{"type":"flatten"}]}"#,
        )
        .unwrap_err();
        assert!(
            kernel.to_string().contains("layer 0 (max_pool2d)"),
            "{kernel}"
        );
        let dropout =
            ModelSpec::from_json(r#"{"input_shape":[4],"layers":[{"type":"dropout","prob":1.5}]}"#)
                .unwrap_err();
        assert!(
            dropout.to_string().contains("prob must be in [0, 1)"),
            "{dropout}"
        );
    }

    #[test]
    fn unknown_layers_and_fields_are_named() {
        let unknown =
            ModelSpec::from_json(r#"{"input_shape":[4],"layers":[{"type":"lstm"}]}"#).unwrap_err();
        assert!(unknown.to_string().contains("lstm"), "{unknown}");
        let typo = ModelSpec::from_json(
            r#"{"input_shape":[4],"layers":[{"type":"linear","out_feature":3}]}"#,
        )
        .unwrap_err();
        assert!(typo.to_string().contains("out_feature"), "{typo}");
    }

    #[test]
    fn softmax_only_ends_a_network() {
        let err = ModelSpec::from_json(
            r#"{"input_shape":[4],"layers":[{"type":"softmax"},{"type":"linear","out_features":2}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("layer 0 (softmax)"), "{err}");
    }

    #[test]
    fn the_output_must_be_a_vector() {
        let err = ModelSpec::from_json(r#"{"input_shape":[1,4,4],"layers":[{"type":"relu"}]}"#)
            .unwrap_err();
        assert_eq!(err, SpecError::OutputShape(vec![1, 4, 4]));
        assert_eq!(
            ModelSpec::from_json(r#"{"input_shape":[],"layers":[]}"#).unwrap_err(),
            SpecError::InputShape(vec![])
        );
    }
}
