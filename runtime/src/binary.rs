//! Triton's binary tensor data extension of the KServe V2 HTTP protocol, which stock
//! clients (`tritonclient.http`) use by default.
//!
//! A request with an `Inference-Header-Content-Length: N` header holds N bytes of
//! JSON, then the raw little-endian bytes of every input whose
//! `parameters.binary_data_size` is set, in input order. Outputs asked for with
//! `parameters.binary_data: true` (or all outputs, with the request parameter
//! `binary_data_output: true`) come back the same way: JSON with
//! `parameters.binary_data_size` instead of `data`, then the bytes. BYTES elements are
//! a 4-byte little-endian length followed by the bytes.

use serde_json::{Value, json};

use crate::oip::{InferRequest, InferResponse};

/// The header that marks a binary request and response.
pub const HEADER: &str = "inference-header-content-length";

/// Splits a binary request body at the JSON header's length.
pub fn split<'a>(body: &'a [u8], header: &str) -> Result<(&'a [u8], &'a [u8]), String> {
    let length: usize = header.trim().parse().map_err(|_| {
        format!("header Inference-Header-Content-Length must be a byte count, got {header:?}")
    })?;
    if length > body.len() {
        return Err(format!(
            "header Inference-Header-Content-Length is {length}, but the body holds only {} bytes",
            body.len()
        ));
    }
    Ok(body.split_at(length))
}

/// Moves the raw bytes after the JSON header into the `data` of the inputs that
/// declare `binary_data_size`, in order.
pub fn fill_inputs(request: &mut InferRequest, mut bytes: &[u8]) -> Result<(), String> {
    for input in &mut request.inputs {
        let Some(size) = input
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.get("binary_data_size"))
        else {
            continue;
        };
        let size = size
            .as_u64()
            .and_then(|size| usize::try_from(size).ok())
            .ok_or_else(|| {
                format!(
                    "input {:?}: parameters.binary_data_size must be a byte count",
                    input.name
                )
            })?;
        if size > bytes.len() {
            return Err(format!(
                "input {:?}: binary_data_size is {size}, but only {} bytes are left in the body",
                input.name,
                bytes.len()
            ));
        }
        let (raw, rest) = bytes.split_at(size);
        bytes = rest;
        input.data = Value::Array(decode(&input.datatype, raw).ok_or_else(|| {
            format!(
                "input {:?}: {size} bytes are not a whole number of {} elements, or the datatype is not numeric",
                input.name, input.datatype
            )
        })?);
    }
    if !bytes.is_empty() {
        return Err(format!(
            "{} bytes follow the binary inputs that no input claims",
            bytes.len()
        ));
    }
    Ok(())
}

/// Little-endian elements of a numeric datatype as JSON numbers.
fn decode(datatype: &str, raw: &[u8]) -> Option<Vec<Value>> {
    fn each<const N: usize>(raw: &[u8], read: impl Fn([u8; N]) -> Value) -> Option<Vec<Value>> {
        if !raw.len().is_multiple_of(N) {
            return None;
        }
        Some(
            raw.chunks_exact(N)
                .map(|chunk| read(chunk.try_into().unwrap_or([0; N])))
                .collect(),
        )
    }
    match datatype {
        "FP32" => each(raw, |b| json!(f32::from_le_bytes(b))),
        "FP64" => each(raw, |b| json!(f64::from_le_bytes(b))),
        "INT8" => each(raw, |b| json!(i8::from_le_bytes(b))),
        "INT16" => each(raw, |b| json!(i16::from_le_bytes(b))),
        "INT32" => each(raw, |b| json!(i32::from_le_bytes(b))),
        "INT64" => each(raw, |b| json!(i64::from_le_bytes(b))),
        "UINT8" => each(raw, |b| json!(u8::from_le_bytes(b))),
        "UINT16" => each(raw, |b| json!(u16::from_le_bytes(b))),
        "UINT32" => each(raw, |b| json!(u32::from_le_bytes(b))),
        "UINT64" => each(raw, |b| json!(u64::from_le_bytes(b))),
        _ => None,
    }
}

/// Whether the request wants output `name` as binary data.
pub fn wants_binary(request: &InferRequest, name: &str) -> bool {
    let asked = request
        .outputs
        .iter()
        .flatten()
        .find(|output| output.name == name)
        .and_then(|output| output.parameters.as_ref())
        .and_then(|parameters| parameters.get("binary_data"))
        .and_then(Value::as_bool);
    asked.unwrap_or_else(|| {
        request
            .parameters
            .as_ref()
            .and_then(|parameters| parameters.get("binary_data_output"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    })
}

/// Moves the data of the outputs chosen by `binary` behind the JSON; returns the body
/// and the JSON header's length.
pub fn encode(mut response: InferResponse, binary: impl Fn(&str) -> bool) -> (Vec<u8>, usize) {
    let mut tail = Vec::new();
    for output in &mut response.outputs {
        if !binary(&output.name) {
            continue;
        }
        let start = tail.len();
        for value in output.data.as_array().into_iter().flatten() {
            match value {
                Value::String(text) => {
                    tail.extend_from_slice(&(text.len() as u32).to_le_bytes());
                    tail.extend_from_slice(text.as_bytes());
                }
                number => {
                    let value = number.as_f64().unwrap_or(f64::NAN) as f32;
                    tail.extend_from_slice(&value.to_le_bytes());
                }
            }
        }
        output.data = Value::Null;
        output.parameters = Some(json!({ "binary_data_size": tail.len() - start }));
    }
    let mut body = serde_json::to_vec(&response).unwrap_or_default();
    let header_length = body.len();
    body.extend_from_slice(&tail);
    (body, header_length)
}
