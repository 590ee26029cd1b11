//! The burn module built from a [`ModelSpec`]: one enum of layer kinds and one forward
//! pass that walks them. The same code serves training (on an autodiff device) and
//! inference.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d,
    Relu, Sigmoid, Tanh,
};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use edgewise_core::spec::{LayerSpec, ModelSpec, SpecError};

/// One layer of a [`Network`].
#[derive(Module, Debug)]
pub enum Layer {
    /// Fully connected.
    Linear(Linear),
    /// 2-D convolution.
    Conv2d(Conv2d),
    /// 2-D max pooling.
    MaxPool2d(MaxPool2d),
    /// Reshape (and flatten) to a new example shape.
    Reshape(Reshape),
    /// Rectified linear unit.
    Relu(Relu),
    /// Hyperbolic tangent.
    Tanh(Tanh),
    /// Logistic sigmoid.
    Sigmoid(Sigmoid),
    /// Dropout (a no-op once the module is in validation mode).
    Dropout(Dropout),
    /// Batch normalisation over features.
    BatchNorm1d(BatchNorm),
    /// Softmax over features.
    Softmax(SoftmaxLayer),
}

/// Reshapes each example to `shape` (rank 1 or 3), keeping the batch dimension.
#[derive(Module, Debug)]
pub struct Reshape {
    /// Target example shape.
    pub shape: Vec<usize>,
}

/// Softmax over the feature dimension of `[batch, features]`.
#[derive(Module, Debug)]
pub struct SoftmaxLayer {
    /// Dimension the softmax runs over (always 1).
    pub dim: usize,
}

/// A network built from a spec: its layers in order.
#[derive(Module, Debug)]
pub struct Network {
    /// The layers, first to last.
    pub layers: Vec<Layer>,
    /// Shape of one input example, without the batch dimension.
    pub input_shape: Vec<usize>,
}

/// Activations between layers: rank 2 (`[batch, features]`) or rank 4
/// (`[batch, channels, height, width]`).
enum Activation {
    Flat(Tensor<2>),
    Image(Tensor<4>),
}

impl Activation {
    fn from_shape(flat: Tensor<2>, shape: &[usize]) -> Self {
        let batch = flat.dims()[0];
        match *shape {
            [channels, height, width] => {
                Activation::Image(flat.reshape([batch, channels, height, width]))
            }
            _ => Activation::Flat(flat.reshape([batch, shape.iter().product::<usize>()])),
        }
    }

    fn flat(self) -> Tensor<2> {
        match self {
            Activation::Flat(tensor) => tensor,
            Activation::Image(tensor) => {
                let [batch, channels, height, width] = tensor.dims();
                tensor.reshape([batch, channels * height * width])
            }
        }
    }

    fn image(self) -> Tensor<4> {
        match self {
            Activation::Image(tensor) => tensor,
            // The spec check gives image layers only images; a vector would be
            // a 1x1 image with one channel per feature.
            Activation::Flat(tensor) => {
                let [batch, features] = tensor.dims();
                tensor.reshape([batch, features, 1, 1])
            }
        }
    }

    fn map(
        self,
        flat: impl FnOnce(Tensor<2>) -> Tensor<2>,
        image: impl FnOnce(Tensor<4>) -> Tensor<4>,
    ) -> Self {
        match self {
            Activation::Flat(tensor) => Activation::Flat(flat(tensor)),
            Activation::Image(tensor) => Activation::Image(image(tensor)),
        }
    }
}

impl Network {
    /// Builds a freshly initialised network from a checked spec on `device`.
    pub fn new(spec: &ModelSpec, device: &Device) -> Result<Self, SpecError> {
        let shapes = spec.shapes()?;
        let layers = spec
            .layers
            .iter()
            .zip(&shapes)
            .enumerate()
            .map(|(index, (layer, input))| build_layer(layer, input, &shapes[index + 1], device))
            .collect();
        Ok(Network {
            layers,
            input_shape: spec.input_shape.clone(),
        })
    }

    /// Runs the network on `[batch, input_len]` inputs and returns `[batch, classes]`
    /// logits. A trailing softmax layer is skipped, so the result is always logits.
    pub fn forward_logits(&self, input: Tensor<2>) -> Tensor<2> {
        let layers = match self.layers.last() {
            Some(Layer::Softmax(_)) => &self.layers[..self.layers.len() - 1],
            _ => &self.layers[..],
        };
        let mut activation = Activation::from_shape(input, &self.input_shape);
        for layer in layers {
            activation = apply(layer, activation);
        }
        activation.flat()
    }

    /// Class probabilities for `[batch, input_len]` inputs.
    pub fn predict_probabilities(&self, input: Tensor<2>) -> Tensor<2> {
        softmax(self.forward_logits(input), 1)
    }
}

fn apply(layer: &Layer, activation: Activation) -> Activation {
    match layer {
        Layer::Linear(linear) => Activation::Flat(linear.forward(activation.flat())),
        Layer::Conv2d(conv) => Activation::Image(conv.forward(activation.image())),
        Layer::MaxPool2d(pool) => Activation::Image(pool.forward(activation.image())),
        Layer::Reshape(reshape) => Activation::from_shape(activation.flat(), &reshape.shape),
        Layer::Relu(relu) => activation.map(|t| relu.forward(t), |t| relu.forward(t)),
        Layer::Tanh(tanh) => activation.map(|t| tanh.forward(t), |t| tanh.forward(t)),
        Layer::Sigmoid(sigmoid) => activation.map(|t| sigmoid.forward(t), |t| sigmoid.forward(t)),
        Layer::Dropout(dropout) => activation.map(|t| dropout.forward(t), |t| dropout.forward(t)),
        Layer::BatchNorm1d(norm) => Activation::Flat(norm.forward(activation.flat())),
        Layer::Softmax(layer) => Activation::Flat(softmax(activation.flat(), layer.dim)),
    }
}

fn build_layer(layer: &LayerSpec, input: &[usize], output: &[usize], device: &Device) -> Layer {
    match layer {
        LayerSpec::Linear { out_features } => {
            Layer::Linear(LinearConfig::new(input[0], *out_features).init(device))
        }
        LayerSpec::Conv2d {
            out_channels,
            kernel_size,
            stride,
            padding,
        } => Layer::Conv2d(
            Conv2dConfig::new([input[0], *out_channels], *kernel_size)
                .with_stride(*stride)
                .with_padding(PaddingConfig2d::Explicit(
                    padding[0], padding[1], padding[0], padding[1],
                ))
                .init(device),
        ),
        LayerSpec::MaxPool2d {
            kernel_size,
            stride,
        } => Layer::MaxPool2d(
            MaxPool2dConfig::new(*kernel_size)
                .with_strides(stride.unwrap_or(*kernel_size))
                .init(),
        ),
        LayerSpec::Flatten | LayerSpec::Reshape { .. } => Layer::Reshape(Reshape {
            shape: output.to_vec(),
        }),
        LayerSpec::Relu => Layer::Relu(Relu::new()),
        LayerSpec::Tanh => Layer::Tanh(Tanh::new()),
        LayerSpec::Sigmoid => Layer::Sigmoid(Sigmoid::new()),
        LayerSpec::Dropout { prob } => Layer::Dropout(DropoutConfig::new(*prob).init()),
        LayerSpec::BatchNorm1d => Layer::BatchNorm1d(BatchNormConfig::new(input[0]).init(device)),
        LayerSpec::Softmax => Layer::Softmax(SoftmaxLayer { dim: 1 }),
    }
}
