//! The SageMaker executor: the job's training file goes to S3, a SageMaker training job
//! runs the same `edgewise-train` command in the training image (its hyperparameters
//! carry the arguments), and the bundle comes back from the job's `model.tar.gz`.
//! Three calls — CreateTrainingJob, DescribeTrainingJob, StopTrainingJob — and S3
//! PutObject/GetObject, all signed with SigV4 (`aws-sigv4`; no AWS SDK).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::record::TrainingJob;

/// How SageMaker jobs are made.
#[derive(Debug, Clone)]
pub struct SagemakerSettings {
    /// The region.
    pub region: String,
    /// The SageMaker API endpoint (default `https://api.sagemaker.REGION.amazonaws.com`).
    pub endpoint: Option<String>,
    /// The S3 endpoint, path-style (default `https://s3.REGION.amazonaws.com`).
    pub s3_endpoint: Option<String>,
    /// The bucket for inputs and outputs.
    pub bucket: Option<String>,
    /// The execution role SageMaker assumes.
    pub role_arn: Option<String>,
    /// The training image (holds edgewise-train and its SageMaker entry point).
    pub image: String,
    /// The instance type.
    pub instance_type: String,
    /// Time between DescribeTrainingJob calls.
    pub poll: Duration,
}

impl SagemakerSettings {
    fn endpoint(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://api.sagemaker.{}.amazonaws.com", self.region))
    }

    fn s3_endpoint(&self) -> String {
        self.s3_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", self.region))
    }
}

/// The SageMaker name of a job's training job.
pub fn training_job_name(job: &TrainingJob) -> String {
    format!("edgewise-{}", job.id)
}

/// SigV4-signed requests to one region.
struct Aws {
    identity: Identity,
    region: String,
    http: reqwest::Client,
}

impl Aws {
    /// Credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN).
    fn from_env(region: &str) -> Result<Self, String> {
        let key = |name: &str| {
            std::env::var(name).map_err(|_| format!("{name} is not set (SageMaker executor)"))
        };
        let credentials = Credentials::new(
            key("AWS_ACCESS_KEY_ID")?,
            key("AWS_SECRET_ACCESS_KEY")?,
            std::env::var("AWS_SESSION_TOKEN").ok(),
            None,
            "environment",
        );
        Ok(Aws {
            identity: Identity::from(credentials),
            region: region.to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .map_err(|e| e.to_string())?,
        })
    }

    /// Signs and sends a request; `Err` carries the status and the body.
    async fn send(
        &self,
        service: &str,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<reqwest::Response, String> {
        let mut settings = SigningSettings::default();
        if service == "s3" {
            settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        }
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let mut request = self.http.request(method, url);
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{service} is unreachable at {url}: {e}"))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(format!(
            "{service} answered {status}: {}",
            error_message(&text)
        ))
    }

    /// Calls a SageMaker action (awsJson 1.1).
    async fn sagemaker(&self, endpoint: &str, action: &str, body: &Value) -> Result<Value, String> {
        let target = format!("SageMaker.{action}");
        let response = self
            .send(
                "sagemaker",
                "POST",
                &format!("{}/", endpoint.trim_end_matches('/')),
                &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", &target),
                ],
                serde_json::to_vec(body).map_err(|e| e.to_string())?,
            )
            .await
            .map_err(|e| format!("{action}: {e}"))?;
        let text = response.text().await.map_err(|e| e.to_string())?;
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(&text).map_err(|e| format!("{action}: unexpected answer: {e}"))
    }
}

/// The message of an AWS error body (JSON `message`/`Message`, or S3's XML), or the text.
fn error_message(text: &str) -> String {
    if let Ok(body) = serde_json::from_str::<Value>(text) {
        let kind = body["__type"]
            .as_str()
            .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned());
        let message = body["message"].as_str().or(body["Message"].as_str());
        if let (Some(kind), Some(message)) = (kind, message) {
            return format!("{kind}: {message}");
        }
    }
    let between = |open: &str, close: &str| {
        let start = text.find(open)? + open.len();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].to_owned())
    };
    match (
        between("<Code>", "</Code>"),
        between("<Message>", "</Message>"),
    ) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => text.chars().take(300).collect(),
    }
}

/// `s3://bucket/key` → the path-style URL on `endpoint`.
fn s3_url(endpoint: &str, uri: &str) -> Result<String, String> {
    let rest = uri
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{uri:?} is not an s3:// URI"))?;
    Ok(format!("{}/{rest}", endpoint.trim_end_matches('/')))
}

/// The hyperparameters that carry the trainer's arguments (`--flag value` → `flag`).
pub fn hyperparameters(args: &[String]) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut words = args.iter().skip(1);
    while let Some(flag) = words.next() {
        let Some(name) = flag.strip_prefix("--") else {
            continue;
        };
        if matches!(name, "data" | "out" | "signing-key") {
            words.next();
            continue;
        }
        if let Some(value) = words.next() {
            found.insert(name.to_owned(), value.clone());
        }
    }
    found
}

/// The CreateTrainingJob request.
pub fn create_request(
    settings: &SagemakerSettings,
    job: &TrainingJob,
    args: &[String],
    prefix: &str,
) -> Result<Value, String> {
    let role = settings
        .role_arn
        .as_ref()
        .ok_or("no --sagemaker-role-arn configured")?;
    Ok(json!({
        "TrainingJobName": training_job_name(job),
        "AlgorithmSpecification": { "TrainingImage": settings.image, "TrainingInputMode": "File" },
        "RoleArn": role,
        "InputDataConfig": [{
            "ChannelName": "train",
            "DataSource": { "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": format!("{prefix}/input/"),
                "S3DataDistributionType": "FullyReplicated",
            }},
        }],
        "OutputDataConfig": { "S3OutputPath": format!("{prefix}/output") },
        "ResourceConfig": { "InstanceType": settings.instance_type, "InstanceCount": 1, "VolumeSizeInGB": 10 },
        "StoppingCondition": { "MaxRuntimeInSeconds": 6 * 3600 },
        "HyperParameters": hyperparameters(args),
        "Tags": [
            { "Key": "edgewise:training-job", "Value": job.id },
            { "Key": "edgewise:model", "Value": job.request.model },
        ],
    }))
}

/// Runs `job` on SageMaker and writes its bundle to `bundle_path`.
pub async fn run(
    jobs: &Jobs,
    job: &TrainingJob,
    args: &[String],
    data: &Path,
    bundle_path: &Path,
    cancel: CancellationToken,
) -> Result<(), String> {
    let settings = &jobs.inner.settings.sagemaker;
    let bucket = settings
        .bucket
        .as_ref()
        .ok_or("no --sagemaker-bucket configured")?;
    let aws = Aws::from_env(&settings.region)?;
    let prefix = format!("s3://{bucket}/edgewise/{}", job.id);
    let s3 = settings.s3_endpoint();
    let csv = std::fs::read(data).map_err(|e| format!("cannot read {}: {e}", data.display()))?;
    aws.send(
        "s3",
        "PUT",
        &s3_url(&s3, &format!("{prefix}/input/train.csv"))?,
        &[("content-type", "text/csv")],
        csv,
    )
    .await?;
    jobs.log(
        &job.id,
        format!("uploaded the training file to {prefix}/input/train.csv"),
    );
    let endpoint = settings.endpoint();
    let request = create_request(settings, job, args, &prefix)?;
    aws.sagemaker(&endpoint, "CreateTrainingJob", &request)
        .await?;
    let name = training_job_name(job);
    jobs.log(&job.id, format!("created SageMaker training job {name}"));
    let mut last_status = String::new();
    let artifacts = loop {
        tokio::select! {
            () = tokio::time::sleep(settings.poll) => {}
            () = cancel.cancelled() => {
                let stopped = aws
                    .sagemaker(&endpoint, "StopTrainingJob", &json!({ "TrainingJobName": name }))
                    .await;
                if let Err(err) = stopped {
                    jobs.log(&job.id, format!("could not stop {name}: {err}"));
                }
                return Err("cancelled".to_owned());
            }
        }
        let described = aws
            .sagemaker(
                &endpoint,
                "DescribeTrainingJob",
                &json!({ "TrainingJobName": name }),
            )
            .await?;
        let status = described["TrainingJobStatus"]
            .as_str()
            .unwrap_or("Unknown")
            .to_owned();
        let secondary = described["SecondaryStatus"].as_str().unwrap_or("");
        if status != last_status {
            jobs.log(&job.id, format!("SageMaker: {status} ({secondary})"));
            last_status = status.clone();
        }
        match status.as_str() {
            "Completed" => {
                break described["ModelArtifacts"]["S3ModelArtifacts"]
                    .as_str()
                    .ok_or("the completed job names no model artifacts")?
                    .to_owned();
            }
            "Failed" | "Stopped" => {
                return Err(format!(
                    "SageMaker job {name} {}: {}",
                    status.to_lowercase(),
                    described["FailureReason"]
                        .as_str()
                        .unwrap_or("no reason given")
                ));
            }
            _ => {}
        }
    };
    let archive = aws
        .send("s3", "GET", &s3_url(&s3, &artifacts)?, &[], Vec::new())
        .await?
        .bytes()
        .await
        .map_err(|e| format!("the model artifacts broke off: {e}"))?;
    let bundle = bundle_from_archive(&archive)?;
    std::fs::create_dir_all(bundle_path.parent().unwrap_or(Path::new(".")))
        .and_then(|()| std::fs::write(bundle_path, bundle))
        .map_err(|e| format!("cannot write {}: {e}", bundle_path.display()))?;
    jobs.log(&job.id, format!("fetched the bundle from {artifacts}"));
    Ok(())
}

/// The one `.bundle` file in a SageMaker `model.tar.gz`.
pub fn bundle_from_archive(archive: &[u8]) -> Result<Vec<u8>, String> {
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in entries
        .entries()
        .map_err(|e| format!("model.tar.gz is unreadable: {e}"))?
    {
        let mut entry = entry.map_err(|e| format!("model.tar.gz is unreadable: {e}"))?;
        let is_bundle = entry
            .path()
            .is_ok_and(|path| path.extension().is_some_and(|ext| ext == "bundle"));
        if is_bundle {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| format!("model.tar.gz is unreadable: {e}"))?;
            return Ok(bytes);
        }
    }
    Err("model.tar.gz holds no .bundle file".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trainer_arguments_become_hyperparameters_without_local_paths() {
        let args: Vec<String> = [
            "train",
            "--data",
            "/srv/x.csv",
            "--label",
            "label",
            "--epochs",
            "30",
            "--out",
            "/srv/out",
            "--signing-key",
            "/srv/k.key",
            "--name",
            "rainfall",
        ]
        .map(String::from)
        .to_vec();
        let found = hyperparameters(&args);
        assert_eq!(found.get("epochs").map(String::as_str), Some("30"));
        assert_eq!(found.get("name").map(String::as_str), Some("rainfall"));
        assert!(!found.contains_key("data") && !found.contains_key("signing-key"));
    }

    #[test]
    fn aws_errors_are_read_from_json_and_xml() {
        assert_eq!(
            error_message(r#"{"__type":"com.amazon#ValidationException","Message":"no job"}"#),
            "ValidationException: no job"
        );
        assert_eq!(
            error_message("<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"),
            "NoSuchKey: gone"
        );
    }
}
