//! `edgewise-runtime serve` as a client sees it: the Open Inference Protocol
//! endpoints, dynamic batching, metrics, and 4xx JSON answers to bad input.

mod common;

use common::{Runtime, fixture};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// One digit image (an "8"-ish blob) as 64 pixel intensities.
fn pixels(seed: usize) -> Vec<f32> {
    (0..64).map(|i| ((i * 13 + seed * 7) % 17) as f32).collect()
}

fn infer_body(rows: usize) -> Value {
    let data: Vec<f32> = (0..rows).flat_map(pixels).collect();
    json!({"id": "req-1", "inputs": [{"name": "input", "shape": [rows, 64], "datatype": "FP32", "data": data}]})
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let json = response.json::<Value>().await.expect("JSON body");
    (status, json)
}

async fn get(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status();
    (status, response.json::<Value>().await.expect("JSON body"))
}

#[tokio::test]
async fn serves_the_open_inference_protocol() {
    let server = Runtime::start(&fixture().bundle, &fixture().trusted, &[]);
    let client = reqwest::Client::new();
    let base = &server.url;

    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/digits/ready",
        "/v2/models/digits/versions/3/ready",
    ] {
        let (status, _) = get(&client, &format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    let (_, server_meta) = get(&client, &format!("{base}/v2")).await;
    assert_eq!(server_meta["name"], "edgewise-runtime");
    let (status, meta) = get(&client, &format!("{base}/v2/models/digits")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta["versions"], json!(["3"]));
    assert_eq!(meta["inputs"][0]["shape"], json!([-1, 64]));
    let (status, _) = get(&client, &format!("{base}/v2/models/digits/versions/3")).await;
    assert_eq!(status, StatusCode::OK);

    let (status, answer) = post(
        &client,
        &format!("{base}/v2/models/digits/infer"),
        infer_body(2).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["model_name"], "digits");
    assert_eq!(answer["model_version"], "3");
    assert_eq!(answer["id"], "req-1");
    let probabilities = &answer["outputs"][0];
    assert_eq!(probabilities["name"], "probabilities");
    assert_eq!(probabilities["shape"], json!([2, 10]));
    let values: Vec<f64> = serde_json::from_value(probabilities["data"].clone()).expect("numbers");
    for row in values.chunks(10) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    }
    let labels = &answer["outputs"][1];
    assert_eq!(labels["name"], "label");
    assert_eq!(labels["shape"], json!([2]));

    // The same examples, one tensor per feature, through the versioned path.
    let inputs: Vec<Value> = (0..64)
        .map(|f| json!({"name": format!("x{f}"), "shape": [2], "datatype": "INT32", "data": [pixels(0)[f] as i64, pixels(1)[f] as i64]}))
        .collect();
    let body = json!({"inputs": inputs, "outputs": [{"name": "label"}]});
    let (status, by_feature) = post(
        &client,
        &format!("{base}/v2/models/digits/versions/3/infer"),
        body.to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{by_feature}");
    assert_eq!(by_feature["outputs"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_feature["outputs"][0]["data"], labels["data"]);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_the_server_keeps_serving() {
    let mut server = Runtime::start(
        &fixture().bundle,
        &fixture().trusted,
        &["--max-body-bytes", "65536"],
    );
    let client = reqwest::Client::new();
    let infer = format!("{}/v2/models/digits/infer", server.url);
    let tensor = |shape: Value, datatype: &str, data: Value| {
        json!({"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]})
            .to_string()
    };
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "wrong shape",
            tensor(json!([1, 63]), "FP32", json!(vec![0.0; 63])),
            StatusCode::BAD_REQUEST,
            "shape",
        ),
        (
            "data length",
            tensor(json!([2, 64]), "FP32", json!(vec![0.0; 64])),
            StatusCode::BAD_REQUEST,
            "needs 128 values",
        ),
        (
            "wrong dtype",
            tensor(json!([1, 64]), "BYTES", json!(vec!["a"; 64])),
            StatusCode::BAD_REQUEST,
            "datatype",
        ),
        (
            "string value",
            tensor(json!([1, 64]), "FP32", json!(vec!["1"; 64])),
            StatusCode::BAD_REQUEST,
            "data[0]",
        ),
        (
            "NaN",
            infer_body(1)
                .to_string()
                .replacen("0.0", "NaN", 1)
                .replacen("1.0", "NaN", 1),
            StatusCode::BAD_REQUEST,
            "NaN",
        ),
        (
            "infinity",
            tensor(json!([1, 64]), "FP32", json!(vec![1e39; 64])),
            StatusCode::BAD_REQUEST,
            "finite",
        ),
        (
            "missing input",
            json!({"inputs": [{"name": "x0", "shape": [1], "datatype": "FP32", "data": [1.0]}]})
                .to_string(),
            StatusCode::BAD_REQUEST,
            "\"x1\" is missing",
        ),
        (
            "no inputs field",
            json!({"id": "a"}).to_string(),
            StatusCode::BAD_REQUEST,
            "inputs",
        ),
        (
            "malformed JSON",
            "{\"inputs\": [".to_string(),
            StatusCode::BAD_REQUEST,
            "JSON",
        ),
        (
            "oversized body",
            tensor(json!([1, 64]), "FP32", json!(vec![0.5; 20_000])),
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit",
        ),
        (
            "huge claimed batch",
            tensor(json!([1u64 << 40, 64]), "FP32", json!([0.0])),
            StatusCode::BAD_REQUEST,
            "max_batch_size",
        ),
        (
            "batch over max",
            infer_body(65).to_string(),
            StatusCode::BAD_REQUEST,
            "max_batch_size",
        ),
    ];
    for (case, body, expected_status, expected_text) in cases {
        let (status, answer) = post(&client, &infer, body).await;
        assert_eq!(status, expected_status, "{case}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected_text), "{case}: {message}");
    }
    let (status, answer) = post(
        &client,
        &format!("{}/v2/models/fashion/infer", server.url),
        infer_body(1).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("\"fashion\"")
    );
    let (status, _) = post(
        &client,
        &format!("{}/v2/models/digits/versions/9/infer", server.url),
        infer_body(1).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&client, &format!("{}/v2/models/digits/infer", server.url)).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);

    let binary = client
        .post(&infer)
        .header("content-type", "application/octet-stream")
        .header("Inference-Header-Content-Length", "999999")
        .body(infer_body(1).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(binary.status(), StatusCode::BAD_REQUEST);
    let message = binary.json::<Value>().await.expect("JSON")["error"].to_string();
    assert!(
        message.contains("Inference-Header-Content-Length"),
        "{message}"
    );

    assert!(server.is_running(), "bad input must never stop the server");
    let (status, _) = post(&client, &infer, infer_body(1).to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = scrape(&client, &server.url).await;
    assert!(metrics.contains(r#"outcome="client_error""#), "{metrics}");
}

#[tokio::test]
async fn concurrent_requests_are_batched_and_measured() {
    let server = Runtime::start(
        &fixture().bundle,
        &fixture().trusted,
        &["--max-batch-size", "32", "--max-queue-delay-us", "20000"],
    );
    let client = reqwest::Client::new();
    let infer = format!("{}/v2/models/digits/infer", server.url);
    let requests = 48;
    let answers = futures_join(&client, &infer, requests).await;
    assert!(answers.iter().all(|status| *status == StatusCode::OK));

    let metrics = scrape(&client, &server.url).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{metrics}"))
    };
    assert_eq!(value("edgewise_inference_batch_size_sum"), requests as f64);
    let batches = value("edgewise_inference_batch_size_count");
    assert!(
        batches < requests as f64,
        "{requests} concurrent requests ran in {batches} batches"
    );
    assert_eq!(
        value(r#"edgewise_inference_requests_total{model="digits",version="3",outcome="success"}"#),
        requests as f64
    );
    assert!(metrics.contains("edgewise_inference_request_duration_seconds_bucket"));
    assert!(
        metrics.contains(r#"edgewise_model_info{model="digits",version="3",device="cpu (flex)""#),
        "{metrics}"
    );
}

/// The runtime's Prometheus text.
async fn scrape(client: &reqwest::Client, base: &str) -> String {
    client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

async fn futures_join(client: &reqwest::Client, url: &str, count: usize) -> Vec<StatusCode> {
    let tasks: Vec<_> = (0..count)
        .map(|_| {
            let client = client.clone();
            let url = url.to_string();
            tokio::spawn(async move { post(&client, &url, infer_body(1).to_string()).await.0 })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    }
    statuses
}

#[tokio::test]
async fn predict_answers_plain_json_for_curl_users() {
    let server = Runtime::start(&fixture().bundle, &fixture().trusted, &[]);
    let client = reqwest::Client::new();
    let url = format!("{}/predict", server.url);

    let one = json!({ "features": pixels(0) }).to_string();
    let (status, answer) = post(&client, &url, one).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["model"], "digits");
    assert_eq!(answer["version"], "3");
    let predictions = answer["predictions"].as_array().expect("predictions");
    assert_eq!(predictions.len(), 1);
    let probabilities: Vec<f64> = predictions[0]["probabilities"]
        .as_array()
        .expect("probabilities")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert_eq!(probabilities.len(), 10);
    assert!((probabilities.iter().sum::<f64>() - 1.0).abs() < 1e-4);
    let best = probabilities
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(index, _)| index.to_string());
    assert_eq!(predictions[0]["label"].as_str(), best.as_deref());

    // The same example (`infer_body(1)` holds `pixels(0)`) through OIP gives the same label.
    let (_, oip) = post(
        &client,
        &format!("{}/v2/models/digits/infer", server.url),
        infer_body(1).to_string(),
    )
    .await;
    assert_eq!(oip["outputs"][1]["data"][0], predictions[0]["label"]);

    let many = json!({ "instances": [pixels(1), pixels(2), pixels(3)] }).to_string();
    let (status, answer) = post(&client, &url, many).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["predictions"].as_array().map(Vec::len), Some(3));

    for (body, needle) in [
        (json!({ "features": [1.0, 2.0] }).to_string(), "64"),
        (
            json!({ "features": pixels(1), "instances": [pixels(1)] }).to_string(),
            "exactly one",
        ),
        (json!({}).to_string(), "exactly one"),
        (json!({ "rows": [] }).to_string(), "rows"),
        (json!({ "instances": "x" }).to_string(), "instances"),
        ("{not json".to_string(), "features"),
    ] {
        let (status, answer) = post(&client, &url, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{body}: {message:?} should mention {needle:?}"
        );
    }
}
