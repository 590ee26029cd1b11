//! Property tests of Open Inference Protocol requests: whatever a caller sends, the
//! body parses or is refused, and decoding answers a batch of exactly the model's
//! width, or an error, never a panic; a well-formed request decodes to its own values.

use edgewise_runtime::oip::{InferRequest, decode_inputs};
use proptest::prelude::*;
use serde_json::{Value, json};

/// The model's features in these tests.
fn features() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

const MAX_ROWS: usize = 8;

/// Tensor data: numbers, nested lists, and things that are not numbers.
fn tensor_data() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => any::<f32>().prop_map(|v| json!(v)),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => ".{0,4}".prop_map(Value::String),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(2, 40, 12, |inner| {
        prop::collection::vec(inner, 0..12).prop_map(Value::Array)
    })
}

/// One input tensor with a chosen or random name, shape and datatype.
fn tensor() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("input"), Just("a"), Just("b"), Just("c"), Just("zz")],
        prop::collection::vec(
            prop_oneof![1i64..=4, Just(3), Just(0), Just(-1), any::<i64>()],
            0..4,
        ),
        prop_oneof![
            Just("FP32"),
            Just("FP64"),
            Just("INT64"),
            Just("BOOL"),
            Just("BYTES"),
            Just("X")
        ],
        tensor_data(),
    )
        .prop_map(|(name, shape, datatype, data)| {
            json!({ "name": name, "shape": shape, "datatype": datatype, "data": data })
        })
}

/// A request body with one to three tensors and, sometimes, requested outputs.
fn request() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(tensor(), 0..4),
        prop::option::of(prop::collection::vec(
            prop_oneof![Just("probabilities"), Just("label"), Just("other")],
            0..3,
        )),
    )
        .prop_map(|(inputs, outputs)| {
            let mut body = json!({ "inputs": inputs });
            if let Some(outputs) = outputs {
                body["outputs"] = outputs.iter().map(|name| json!({ "name": name })).collect();
            }
            body
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Arbitrary bytes as a request body parse or are refused, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(request) = serde_json::from_slice::<InferRequest>(&bytes) {
            let _ = decode_inputs(&request, &features(), MAX_ROWS);
        }
    }

    /// Any structured request decodes to whole rows of the model's width, within the
    /// batch limit, or to an error.
    #[test]
    fn decoding_gives_whole_rows_or_an_error(body in request()) {
        let Ok(request) = serde_json::from_value::<InferRequest>(body) else {
            return Ok(());
        };
        if let Ok(batch) = decode_inputs(&request, &features(), MAX_ROWS) {
            prop_assert!((1..=MAX_ROWS).contains(&batch.rows));
            prop_assert_eq!(batch.values.len(), batch.rows * features().len());
        }
    }

    /// A well-formed matrix request decodes to exactly its values.
    #[test]
    fn a_matrix_request_decodes_to_its_values(
        rows in 1usize..=MAX_ROWS,
        seed in prop::collection::vec(-1e6f32..1e6, 3 * MAX_ROWS),
    ) {
        let values = &seed[..rows * 3];
        let body = json!({
            "inputs": [{ "name": "input", "shape": [rows, 3], "datatype": "FP32", "data": values }]
        });
        let request: InferRequest = serde_json::from_value(body).unwrap();
        let batch = decode_inputs(&request, &features(), MAX_ROWS).unwrap();
        prop_assert_eq!(batch.rows, rows);
        prop_assert_eq!(batch.values, values.to_vec());
    }
}
