//! Property tests of REST request bodies: whatever bytes or JSON a caller sends, the
//! decoder answers a value or a 400 that says what is wrong, and never panics; a field
//! of the wrong type is named in the answer.

use axum::http::StatusCode;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::auth::NewToken;
use super::fleet::GroupMove;
use super::models::AliasTarget;
use super::{ApiError, decode_json};
use crate::deploy::NewDeployment;
use crate::fleet::NewDevice;
use crate::jobs::record::NewTrainingJob;
use crate::retraining::RetrainingPolicy;
use crate::rollout::NewRollout;

/// Any JSON value, nested a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("group".to_owned()),
                    Just("model".to_owned()),
                    Just("version".to_owned()),
                    Just("role".to_owned()),
                    Just("stages".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Decodes `bytes` as `T`; a refusal must be a 400 about the request body.
fn refuses_cleanly<T: DeserializeOwned>(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Err(ApiError { status, message }) = decode_json::<T>(bytes) {
        prop_assert_eq!(status, StatusCode::BAD_REQUEST);
        prop_assert!(message.starts_with("request body"), "{}", message);
    }
    Ok(())
}

/// Every request body type of the API, tried on `bytes`.
fn every_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    refuses_cleanly::<NewDevice>(bytes)?;
    refuses_cleanly::<GroupMove>(bytes)?;
    refuses_cleanly::<NewToken>(bytes)?;
    refuses_cleanly::<NewDeployment>(bytes)?;
    refuses_cleanly::<NewRollout>(bytes)?;
    refuses_cleanly::<NewTrainingJob>(bytes)?;
    refuses_cleanly::<RetrainingPolicy>(bytes)?;
    refuses_cleanly::<AliasTarget>(bytes)
}

/// A valid body of each type, and one of its string fields.
fn samples() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("NewDevice", json!({"name": "d-1", "group": "g"}), "group"),
        ("GroupMove", json!({"group": "g"}), "group"),
        ("NewToken", json!({"name": "ci", "role": "viewer"}), "name"),
        (
            "NewDeployment",
            json!({"group": "g", "model": "digits", "version": "2"}),
            "model",
        ),
        (
            "NewRollout",
            json!({"group": "g", "model": "digits", "version": "2", "stages": [10, 100], "bake_seconds": 5}),
            "version",
        ),
    ]
}

/// Decodes `body` as the type named `kind`.
fn decode_named(kind: &str, body: &[u8]) -> Result<(), ApiError> {
    match kind {
        "NewDevice" => decode_json::<NewDevice>(body).map(drop),
        "GroupMove" => decode_json::<GroupMove>(body).map(drop),
        "NewToken" => decode_json::<NewToken>(body).map(drop),
        "NewDeployment" => decode_json::<NewDeployment>(body).map(drop),
        _ => decode_json::<NewRollout>(body).map(drop),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Arbitrary bytes as any request body give a value or a 400 about the body.
    #[test]
    fn arbitrary_bytes_are_refused_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        every_body(&bytes)?;
    }

    /// Arbitrary JSON as any request body gives a value or a 400 about the body.
    #[test]
    fn arbitrary_json_is_refused_cleanly(value in any_json()) {
        every_body(&serde_json::to_vec(&value).unwrap())?;
    }

    /// A string field given another JSON type is refused, naming the field.
    #[test]
    fn a_field_of_the_wrong_type_is_named(
        sample in 0usize..5,
        wrong in prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::Bool),
            Just(json!([1, 2])),
            Just(json!({"nested": true})),
        ],
    ) {
        let (kind, mut body, field) = samples().swap_remove(sample);
        prop_assert!(decode_named(kind, &serde_json::to_vec(&body).unwrap()).is_ok(), "{} sample", kind);
        body[field] = wrong;
        let refused = decode_named(kind, &serde_json::to_vec(&body).unwrap());
        let Err(ApiError { status, message }) = refused else {
            return Err(TestCaseError::fail(format!("{kind} accepted a bad `{field}`")));
        };
        prop_assert_eq!(status, StatusCode::BAD_REQUEST);
        prop_assert!(message.contains(&format!("`{field}`")), "{}", message);
    }
}
