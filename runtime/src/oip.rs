//! The Open Inference Protocol (KServe V2) JSON messages, and the decoding of a
//! request's tensors into one batch of model inputs.
//!
//! Inputs come either as one tensor named `input` of shape `[batch, features]`, or as
//! one tensor per feature name of shape `[batch]` or `[batch, 1]`. FP16/32/64 and
//! INT/UINT 8–64 are accepted. `data` may be flat or nested (row-major).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// `POST /v2/models/{name}/infer` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferRequest {
    /// Caller's request id, echoed in the response.
    #[serde(default)]
    pub id: Option<String>,
    /// Request parameters (accepted, not used).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Input tensors.
    pub inputs: Vec<RequestInput>,
    /// Outputs wanted; all when absent or empty.
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

/// One input tensor of a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestInput {
    /// Tensor name: `input`, or a feature name.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<i64>,
    /// Element type, e.g. `FP32` or `INT64`.
    pub datatype: String,
    /// Tensor parameters (accepted, not used).
    #[serde(default)]
    pub parameters: Option<Value>,
    /// Values, flat or nested, row-major (filled from the body's binary part when the
    /// tensor uses the binary extension).
    #[serde(default)]
    pub data: Value,
}

/// One output a request asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestOutput {
    /// Output name: `probabilities` or `label`.
    pub name: String,
    /// Output parameters (accepted, not used).
    #[serde(default)]
    pub parameters: Option<Value>,
}

/// The infer response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferResponse {
    /// Model name.
    pub model_name: String,
    /// Model version.
    pub model_version: String,
    /// The request's id, if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Output tensors.
    pub outputs: Vec<ResponseOutput>,
}

/// One output tensor of a response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResponseOutput {
    /// `probabilities` or `label`.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// `FP32` for probabilities, `BYTES` for labels.
    pub datatype: String,
    /// Flat values (absent when sent as binary data).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    /// `binary_data_size` when the values follow the JSON as binary data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
}

/// Tensor metadata in the model metadata response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub datatype: String,
    /// Shape, -1 for the batch dimension.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMetadata {
    /// Model name.
    pub name: String,
    /// Versions served (one).
    pub versions: Vec<String>,
    /// Always `burn`.
    pub platform: String,
    /// Accepted inputs.
    pub inputs: Vec<TensorMetadata>,
    /// Produced outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// Names of the two outputs.
pub const OUTPUT_PROBABILITIES: &str = "probabilities";
/// Name of the label output.
pub const OUTPUT_LABEL: &str = "label";
/// Name of the single whole-batch input tensor.
pub const INPUT_TENSOR: &str = "input";

/// Why a request's tensors could not be read; each names the tensor and the fault.
#[derive(Debug, Error, PartialEq)]
pub enum InputError {
    /// The request has no inputs.
    #[error("inputs must hold at least one tensor")]
    NoInputs,
    /// The datatype is not numeric.
    #[error(
        "input {name:?}: datatype {datatype:?} is not supported; use FP32, FP64, FP16, INT8-64 or UINT8-64"
    )]
    Datatype {
        /// Tensor name.
        name: String,
        /// Datatype given.
        datatype: String,
    },
    /// The shape does not fit the model.
    #[error("input {name:?}: shape {shape:?} is wrong; expected {expected}")]
    Shape {
        /// Tensor name.
        name: String,
        /// Shape given.
        shape: Vec<i64>,
        /// What was expected.
        expected: String,
    },
    /// The number of values does not match the shape.
    #[error("input {name:?}: shape {shape:?} needs {expected} values, data holds {got}")]
    DataLength {
        /// Tensor name.
        name: String,
        /// Shape given.
        shape: Vec<i64>,
        /// Values the shape needs.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// A value is not a number of the datatype.
    #[error(
        "input {name:?}: data[{index}] must be a {datatype} number that is finite in FP32, got {value}"
    )]
    Value {
        /// Tensor name.
        name: String,
        /// Flat index of the value.
        index: usize,
        /// Datatype declared.
        datatype: String,
        /// The value as given.
        value: String,
    },
    /// A feature tensor is missing.
    #[error(
        "input {missing:?} is missing: send one tensor named \"input\" of shape [batch, {features}], or one tensor per feature ({names})"
    )]
    Missing {
        /// The missing feature.
        missing: String,
        /// Feature count.
        features: usize,
        /// Feature names.
        names: String,
    },
    /// Two tensors share a name.
    #[error("input {name:?} is given more than once")]
    Duplicate {
        /// Tensor name.
        name: String,
    },
    /// The whole-batch tensor `input` mixed with per-feature tensors.
    #[error(
        "input {name:?} cannot be sent together with \"input\": send either one tensor \"input\" or one tensor per feature"
    )]
    Mixed {
        /// The other tensor's name.
        name: String,
    },
    /// A tensor name that is neither `input` nor a feature.
    #[error("input {name:?} is not a known input: expected \"input\" or a feature name")]
    Unknown {
        /// Tensor name.
        name: String,
    },
    /// Feature tensors disagree on the batch size.
    #[error("input {name:?}: batch size {got} differs from the other inputs' {expected}")]
    BatchMismatch {
        /// Tensor name.
        name: String,
        /// Batch given.
        got: usize,
        /// Batch of the first input.
        expected: usize,
    },
    /// An unknown output was asked for.
    #[error("output {name:?} is not produced; outputs are \"probabilities\" and \"label\"")]
    UnknownOutput {
        /// Output name.
        name: String,
    },
}

/// A decoded batch: `batch * features` raw values, row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Values, row-major.
    pub values: Vec<f32>,
    /// Number of examples.
    pub rows: usize,
}

/// Decodes the request's inputs into a batch of at most `max_rows` examples for a
/// model with these features. Shapes are checked before any value is read, so a huge
/// claimed shape costs nothing.
pub fn decode_inputs(
    request: &InferRequest,
    features: &[String],
    max_rows: usize,
) -> Result<Batch, InputError> {
    if request.inputs.is_empty() {
        return Err(InputError::NoInputs);
    }
    if let Some(outputs) = &request.outputs {
        for output in outputs {
            if output.name != OUTPUT_PROBABILITIES && output.name != OUTPUT_LABEL {
                return Err(InputError::UnknownOutput {
                    name: output.name.clone(),
                });
            }
        }
    }
    for (index, input) in request.inputs.iter().enumerate() {
        if request.inputs[..index]
            .iter()
            .any(|earlier| earlier.name == input.name)
        {
            return Err(InputError::Duplicate {
                name: input.name.clone(),
            });
        }
    }
    if let Some(tensor) = request
        .inputs
        .iter()
        .find(|input| input.name == INPUT_TENSOR)
    {
        if let Some(other) = request
            .inputs
            .iter()
            .find(|input| input.name != INPUT_TENSOR)
        {
            return Err(InputError::Mixed {
                name: other.name.clone(),
            });
        }
        return decode_matrix(tensor, features.len(), max_rows);
    }
    decode_columns(&request.inputs, features, max_rows)
}

/// The batch size of a shape whose first dimension is the batch, if it is in range.
fn batch_rows(shape: &[i64], max_rows: usize) -> Option<usize> {
    let rows = usize::try_from(*shape.first()?).ok()?;
    (1..=max_rows).contains(&rows).then_some(rows)
}

fn decode_matrix(
    tensor: &RequestInput,
    width: usize,
    max_rows: usize,
) -> Result<Batch, InputError> {
    let rows = match tensor.shape.as_slice() {
        [_, columns] if *columns == width as i64 => batch_rows(&tensor.shape, max_rows),
        _ => None,
    }
    .ok_or_else(|| InputError::Shape {
        name: tensor.name.clone(),
        shape: tensor.shape.clone(),
        expected: format!("[batch, {width}] with 1 <= batch <= {max_rows} (max_batch_size)"),
    })?;
    let values = decode_values(tensor, rows * width)?;
    Ok(Batch { values, rows })
}

fn decode_columns(
    inputs: &[RequestInput],
    features: &[String],
    max_rows: usize,
) -> Result<Batch, InputError> {
    for input in inputs {
        if !features.contains(&input.name) {
            return Err(InputError::Unknown {
                name: input.name.clone(),
            });
        }
    }
    let mut columns = Vec::with_capacity(features.len());
    let mut rows = None;
    for feature in features {
        let tensor = inputs
            .iter()
            .find(|input| &input.name == feature)
            .ok_or_else(|| InputError::Missing {
                missing: feature.clone(),
                features: features.len(),
                names: features.join(", "),
            })?;
        let batch = match tensor.shape.as_slice() {
            [_] | [_, 1] => batch_rows(&tensor.shape, max_rows),
            _ => None,
        }
        .ok_or_else(|| InputError::Shape {
            name: tensor.name.clone(),
            shape: tensor.shape.clone(),
            expected: format!(
                "[batch] or [batch, 1] with 1 <= batch <= {max_rows} (max_batch_size)"
            ),
        })?;
        let expected = *rows.get_or_insert(batch);
        if batch != expected {
            return Err(InputError::BatchMismatch {
                name: tensor.name.clone(),
                got: batch,
                expected,
            });
        }
        columns.push(decode_values(tensor, batch)?);
    }
    let rows = rows.unwrap_or(0);
    let mut values = Vec::with_capacity(rows * features.len());
    for row in 0..rows {
        values.extend(columns.iter().map(|column| column[row]));
    }
    Ok(Batch { values, rows })
}

/// Reads `expected` numbers of the tensor's datatype from its (possibly nested) data.
fn decode_values(tensor: &RequestInput, expected: usize) -> Result<Vec<f32>, InputError> {
    let kind = NumberKind::parse(&tensor.datatype).ok_or_else(|| InputError::Datatype {
        name: tensor.name.clone(),
        datatype: tensor.datatype.clone(),
    })?;
    let mut flat = Vec::new();
    flatten(&tensor.data, &mut flat);
    if flat.len() != expected {
        return Err(InputError::DataLength {
            name: tensor.name.clone(),
            shape: tensor.shape.clone(),
            expected,
            got: flat.len(),
        });
    }
    flat.iter()
        .enumerate()
        .map(|(index, value)| {
            kind.read(value).ok_or_else(|| InputError::Value {
                name: tensor.name.clone(),
                index,
                datatype: tensor.datatype.clone(),
                value: value.to_string(),
            })
        })
        .collect()
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| flatten(item, out)),
        other => out.push(other),
    }
}

/// The numeric element types a request may use.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NumberKind {
    Float,
    Signed { bits: u32 },
    Unsigned { bits: u32 },
}

impl NumberKind {
    fn parse(datatype: &str) -> Option<Self> {
        Some(match datatype {
            "FP16" | "FP32" | "FP64" => NumberKind::Float,
            "INT8" => NumberKind::Signed { bits: 8 },
            "INT16" => NumberKind::Signed { bits: 16 },
            "INT32" => NumberKind::Signed { bits: 32 },
            "INT64" => NumberKind::Signed { bits: 64 },
            "UINT8" => NumberKind::Unsigned { bits: 8 },
            "UINT16" => NumberKind::Unsigned { bits: 16 },
            "UINT32" => NumberKind::Unsigned { bits: 32 },
            "UINT64" => NumberKind::Unsigned { bits: 64 },
            _ => return None,
        })
    }

    /// The value as f32 if it is a finite number in this type's range.
    fn read(self, value: &Value) -> Option<f32> {
        match self {
            NumberKind::Float => {
                let number = value.as_f64()? as f32;
                number.is_finite().then_some(number)
            }
            NumberKind::Signed { bits } => {
                let number = value.as_i64()?;
                let limit = 1i128 << (bits - 1);
                (-limit..limit)
                    .contains(&i128::from(number))
                    .then_some(number as f32)
            }
            NumberKind::Unsigned { bits } => {
                let number = value.as_u64()?;
                (u128::from(number) < (1u128 << bits)).then_some(number as f32)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(body: Value) -> InferRequest {
        serde_json::from_value(body).unwrap()
    }

    fn features() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn one_matrix_tensor_flat_or_nested() {
        let flat = request(
            json!({"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}),
        );
        let nested = request(
            json!({"inputs":[{"name":"input","shape":[2,2],"datatype":"FP64","data":[[1,2],[3,4]]}]}),
        );
        let expected = Batch {
            values: vec![1.0, 2.0, 3.0, 4.0],
            rows: 2,
        };
        assert_eq!(decode_inputs(&flat, &features(), 64), Ok(expected.clone()));
        assert_eq!(decode_inputs(&nested, &features(), 64), Ok(expected));
    }

    #[test]
    fn one_tensor_per_feature_is_interleaved() {
        let body = request(json!({"inputs":[
            {"name":"b","shape":[2],"datatype":"INT64","data":[10,20]},
            {"name":"a","shape":[2,1],"datatype":"FP32","data":[1,2]}]}));
        assert_eq!(
            decode_inputs(&body, &features(), 64),
            Ok(Batch {
                values: vec![1.0, 10.0, 2.0, 20.0],
                rows: 2
            })
        );
    }

    #[test]
    fn faults_name_the_tensor() {
        let shape = request(
            json!({"inputs":[{"name":"input","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}),
        );
        assert!(matches!(
            decode_inputs(&shape, &features(), 64),
            Err(InputError::Shape { .. })
        ));
        let dtype = request(
            json!({"inputs":[{"name":"input","shape":[1,2],"datatype":"BYTES","data":["x","y"]}]}),
        );
        assert!(matches!(
            decode_inputs(&dtype, &features(), 64),
            Err(InputError::Datatype { .. })
        ));
        let length = request(
            json!({"inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}),
        );
        assert!(matches!(
            decode_inputs(&length, &features(), 64),
            Err(InputError::DataLength { got: 3, .. })
        ));
        let missing =
            request(json!({"inputs":[{"name":"a","shape":[1],"datatype":"FP32","data":[1]}]}));
        let err = decode_inputs(&missing, &features(), 64).unwrap_err();
        assert!(err.to_string().contains("\"b\" is missing"), "{err}");
        let overflow = request(
            json!({"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1e39,0]}]}),
        );
        assert!(matches!(
            decode_inputs(&overflow, &features(), 64),
            Err(InputError::Value { index: 0, .. })
        ));
        let int_range = request(
            json!({"inputs":[{"name":"input","shape":[1,2],"datatype":"INT8","data":[300,0]}]}),
        );
        assert!(matches!(
            decode_inputs(&int_range, &features(), 64),
            Err(InputError::Value { .. })
        ));
        let output = request(
            json!({"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","data":[1,2]}],"outputs":[{"name":"logits"}]}),
        );
        assert!(matches!(
            decode_inputs(&output, &features(), 64),
            Err(InputError::UnknownOutput { .. })
        ));
        let huge = request(
            json!({"inputs":[{"name":"input","shape":[1u64 << 40, 2],"datatype":"FP32","data":[1,2]}]}),
        );
        assert!(matches!(
            decode_inputs(&huge, &features(), 64),
            Err(InputError::Shape { .. })
        ));
        let negative = request(json!({"inputs":[
            {"name":"a","shape":[-1],"datatype":"FP32","data":[1]},
            {"name":"b","shape":[-1],"datatype":"FP32","data":[1]}]}));
        assert!(matches!(
            decode_inputs(&negative, &features(), 64),
            Err(InputError::Shape { .. })
        ));
        let twice = request(json!({"inputs":[
            {"name":"a","shape":[1],"datatype":"FP32","data":[1]},
            {"name":"a","shape":[1],"datatype":"FP32","data":[1]}]}));
        assert!(matches!(
            decode_inputs(&twice, &features(), 64),
            Err(InputError::Duplicate { .. })
        ));
    }
}
