//! The SageMaker executor against moto's server on 127.0.0.1: the control plane uploads
//! the job's training file to S3, creates the SageMaker training job with the trainer's
//! arguments as hyperparameters, polls it, fetches `model.tar.gz` and registers the
//! bundle. moto completes jobs at once and writes no artifacts, so a thread here plays
//! the training container: it reads the job's input from S3 and writes the bundle to
//! the job's output path.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::moto::{AWS_ENV, Moto, s3_url};
use common::{ControlPlane, bundles, data_file, wait_for};
use serde_json::{Value, json};

const BUCKET: &str = "edgewise-ml";
const ROLE: &str = "arn:aws:iam::123456789012:role/EdgewiseTraining";
const IMAGE: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/edgewise-train:1";

/// A SageMaker call to moto at `url`; moto routes on the credential scope and checks
/// no signature.
fn sagemaker(url: &str, action: &str, body: Value) -> Value {
    reqwest::blocking::Client::new()
            .post(format!("{url}/"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", format!("SageMaker.{action}"))
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20261127/us-east-1/sagemaker/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .and_then(|r| r.json())
            .expect("sagemaker call")
}

/// Plays the training container: waits for the job, reads its input, writes its output.
fn training_container(moto: String, bundle: Vec<u8>, done: mpsc::Sender<(Value, String)>) {
    let name = wait_for("a SageMaker training job", Duration::from_secs(120), || {
        sagemaker(&moto, "ListTrainingJobs", json!({}))["TrainingJobSummaries"][0]["TrainingJobName"]
            .as_str()
            .map(str::to_owned)
    });
    let job = sagemaker(
        &moto,
        "DescribeTrainingJob",
        json!({ "TrainingJobName": name }),
    );
    let input = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        .as_str()
        .expect("input uri")
        .to_owned();
    let csv = reqwest::blocking::Client::new()
        .get(s3_url(&moto, &format!("{input}train.csv")))
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=test/20261127/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send()
        .and_then(|r| r.text())
        .expect("training file");
    let mut archive = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(bundle.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    archive
        .append_data(&mut header, "digits-v2.bundle", bundle.as_slice())
        .expect("tar");
    let gz = archive.into_inner().expect("tar").finish().expect("gzip");
    let output = job["OutputDataConfig"]["S3OutputPath"]
        .as_str()
        .expect("output path");
    let put = reqwest::blocking::Client::new()
        .put(s3_url(
            &moto,
            &format!("{output}/{name}/output/model.tar.gz"),
        ))
        .body(gz)
        .send()
        .expect("upload model.tar.gz");
    assert!(put.status().is_success(), "{}", put.status());
    let _ = done.send((job, csv));
}

#[test]
fn a_sagemaker_job_trains_from_s3_and_registers_its_bundle() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.create_bucket(BUCKET);
    let dir = tempfile::tempdir().expect("temp dir");
    let plane = ControlPlane::start_with_env(
        &dir.path().join("control-plane"),
        &[
            "--sagemaker-endpoint",
            &moto.url,
            "--s3-endpoint",
            &moto.url,
            "--sagemaker-bucket",
            BUCKET,
            "--sagemaker-role-arn",
            ROLE,
            "--sagemaker-image",
            IMAGE,
            "--sagemaker-poll",
            "1s",
        ],
        &AWS_ENV,
    );
    plane.cli(&["model", "push", bundles().v1.to_str().expect("utf-8")]);
    let v2 = std::fs::read(&bundles().v2).expect("v2");
    let (done, finished) = mpsc::channel();
    let (url, bytes) = (moto.url.clone(), v2.clone());
    std::thread::spawn(move || training_container(url, bytes, done));

    let submitted = plane.cli(&[
        "--json",
        "train",
        "submit",
        "--model",
        "digits",
        "--executor",
        "sagemaker",
        "--epochs",
        "5",
        "--data",
        data_file("digits.csv.gz").to_str().expect("utf-8"),
    ]);
    let job: Value = serde_json::from_str(&submitted).expect("job JSON");
    let id = job["id"].as_str().expect("id").to_string();
    let (described, csv) = finished
        .recv_timeout(Duration::from_secs(120))
        .expect("the container ran");
    let job = wait_for("the job to finish", Duration::from_secs(60), || {
        let job = plane.get(&format!("/api/v1/training-jobs/{id}"));
        matches!(job["state"].as_str(), Some("succeeded" | "failed")).then_some(job)
    });
    let log = plane.cli(&["train", "logs", &id]);
    assert_eq!(job["state"], "succeeded", "{job:#}\n{log}");
    assert_eq!(job["registered"], true);
    assert_eq!(job["version"], 2);
    assert_eq!(
        job["bundle_sha256"],
        Value::from(edgewise_core::bundle::sha256_hex(&v2))
    );
    assert!(
        log.contains("created SageMaker training job edgewise-"),
        "{log}"
    );

    // What SageMaker was asked to run.
    assert_eq!(
        described["TrainingJobName"],
        Value::from(format!("edgewise-{id}"))
    );
    assert_eq!(described["AlgorithmSpecification"]["TrainingImage"], IMAGE);
    assert_eq!(described["RoleArn"], ROLE);
    let hyper = &described["HyperParameters"];
    assert_eq!(hyper["epochs"], "5");
    assert_eq!(hyper["name"], "digits");
    assert_eq!(hyper["version"], "2");
    assert_eq!(hyper["training-job"], Value::from(id.as_str()));
    assert!(hyper.get("signing-key").is_none() && hyper.get("data").is_none());
    let input = described["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
        .as_str()
        .expect("input");
    assert_eq!(input, format!("s3://{BUCKET}/edgewise/{id}/input/"));
    assert_eq!(csv.lines().count(), 1 + 1797, "header and every digits row");
}
