//! `edgewise-mlflow`: what Edgewise needs of an MLflow tracking server, over its REST
//! API (no Python): log a training run (params, per-epoch metrics, the bundle as an
//! artifact through the artifact proxy), register it as a model version tagged with
//! the bundle's sha256, and fetch the bundle of a version by alias.
//!
//! The wire rules it follows: ids and versions are JSON strings, params are strings,
//! metrics need a timestamp, empty arrays are left out of answers, a missing alias is a
//! 400, and `mlflow-artifacts:/…` URIs map onto `/api/2.0/mlflow-artifacts/artifacts/…`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{Value, json};
use thiserror::Error;

/// Tag holding the bundle's sha256 on a model version.
pub const BUNDLE_SHA256_TAG: &str = "bundle_sha256";
/// Tag holding the bundle's file name on a model version.
pub const BUNDLE_FILE_TAG: &str = "bundle_file";
/// Tag holding the Edgewise version number on a model version.
pub const EDGEWISE_VERSION_TAG: &str = "edgewise_version";
/// The run folder the bundle is logged under.
const BUNDLE_FOLDER: &str = "bundle";

/// What went wrong talking to MLflow.
#[derive(Debug, Error)]
pub enum MlflowError {
    /// The server could not be reached.
    #[error("cannot reach MLflow at {url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("MLflow answered {status} to {what}: {message}")]
    Refused {
        /// The call.
        what: String,
        /// The HTTP status.
        status: u16,
        /// MLflow's `error_code`, when the body was JSON.
        code: Option<String>,
        /// Its message, or the body text.
        message: String,
    },
    /// The answer was not what the API documents.
    #[error("unexpected answer from MLflow to {what}: {detail}")]
    Unexpected {
        /// The call.
        what: String,
        /// What was wrong.
        detail: String,
    },
}

/// A client of one tracking server.
pub struct Client {
    base: String,
    http: reqwest::blocking::Client,
}

/// A finished, logged training run.
#[derive(Debug, Clone)]
pub struct LoggedRun {
    /// The run id.
    pub run_id: String,
    /// The registered model version (MLflow's own number, as text).
    pub model_version: String,
}

/// What to log for one training run.
pub struct TrainingRun<'a> {
    /// Experiment name (created when missing).
    pub experiment: &'a str,
    /// Run name.
    pub run_name: &'a str,
    /// Registered model name.
    pub model: &'a str,
    /// Params, as text.
    pub params: Vec<(String, String)>,
    /// Metrics logged once per epoch: `(key, values per epoch)`.
    pub epoch_metrics: Vec<(String, Vec<f64>)>,
    /// Final metrics.
    pub metrics: Vec<(String, f64)>,
    /// Tags on the run and the version.
    pub tags: Vec<(String, String)>,
    /// The bundle file's name.
    pub bundle_file: &'a str,
    /// The bundle's bytes.
    pub bundle: &'a [u8],
    /// Its sha256.
    pub bundle_sha256: &'a str,
}

/// A model version found by alias, with its bundle.
#[derive(Debug, Clone)]
pub struct FetchedVersion {
    /// MLflow's version number.
    pub version: String,
    /// The run that logged it.
    pub run_id: String,
    /// The bundle's bytes.
    pub bundle: Vec<u8>,
    /// The sha256 its tag names.
    pub bundle_sha256: Option<String>,
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    value: String,
}

#[derive(Deserialize)]
struct ModelVersion {
    version: String,
    source: String,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    tags: Vec<Tag>,
}

fn millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn pairs(items: &[(String, String)]) -> Vec<Value> {
    items
        .iter()
        .map(|(key, value)| json!({ "key": key, "value": value }))
        .collect()
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:5000`).
    pub fn new(base: &str) -> Result<Self, MlflowError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|source| MlflowError::Unreachable {
                url: base.to_owned(),
                source,
            })?;
        Ok(Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
        })
    }

    fn send(
        &self,
        what: &str,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, MlflowError> {
        let response = request.send().map_err(|source| MlflowError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().unwrap_or_default();
        let body: Option<Value> = serde_json::from_str(&text).ok();
        Err(MlflowError::Refused {
            what: what.to_owned(),
            status,
            code: body
                .as_ref()
                .and_then(|b| b["error_code"].as_str().map(str::to_owned)),
            message: body
                .as_ref()
                .and_then(|b| b["message"].as_str().map(str::to_owned))
                .unwrap_or(text),
        })
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(path, self.http.post(url).json(body))?
            .json()
            .map_err(|e| MlflowError::Unexpected {
                what: path.to_owned(),
                detail: e.to_string(),
            })
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, MlflowError> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        self.send(path, self.http.get(url).query(query))?
            .json()
            .map_err(|e| MlflowError::Unexpected {
                what: path.to_owned(),
                detail: e.to_string(),
            })
    }

    /// The id of experiment `name`, created when missing.
    pub fn experiment_id(&self, name: &str) -> Result<String, MlflowError> {
        let found = self.get("experiments/get-by-name", &[("experiment_name", name)]);
        let answer = match found {
            Ok(answer) => answer,
            Err(MlflowError::Refused { status: 404, .. }) => {
                match self.post("experiments/create", &json!({ "name": name })) {
                    Ok(created) => {
                        return text_field(&created, "experiment_id", "experiments/create");
                    }
                    // Created meanwhile by another client.
                    Err(MlflowError::Refused {
                        code: Some(code), ..
                    }) if code == "RESOURCE_ALREADY_EXISTS" => {
                        self.get("experiments/get-by-name", &[("experiment_name", name)])?
                    }
                    Err(err) => return Err(err),
                }
            }
            Err(err) => return Err(err),
        };
        text_field(
            &answer["experiment"],
            "experiment_id",
            "experiments/get-by-name",
        )
    }

    /// Logs a training run and registers its bundle as a new model version.
    pub fn log_training(&self, run: &TrainingRun<'_>) -> Result<LoggedRun, MlflowError> {
        let experiment_id = self.experiment_id(run.experiment)?;
        let created = self.post(
            "runs/create",
            &json!({
                "experiment_id": experiment_id,
                "run_name": run.run_name,
                "start_time": millis(),
                "tags": pairs(&run.tags),
            }),
        )?;
        let run_id = text_field(&created["run"]["info"], "run_id", "runs/create")?;
        let artifact_uri = text_field(&created["run"]["info"], "artifact_uri", "runs/create")?;
        let now = millis();
        let mut metrics: Vec<Value> = run
            .epoch_metrics
            .iter()
            .flat_map(|(key, values)| {
                values.iter().enumerate().map(move |(step, value)| {
                    json!({ "key": key, "value": finite(*value), "timestamp": now, "step": step + 1 })
                })
            })
            .collect();
        metrics.extend(
            run.metrics
                .iter()
                .map(|(key, value)| json!({ "key": key, "value": finite(*value), "timestamp": now, "step": 0 })),
        );
        for chunk in metrics.chunks(900) {
            self.post(
                "runs/log-batch",
                &json!({ "run_id": run_id, "metrics": chunk }),
            )?;
        }
        self.post(
            "runs/log-batch",
            &json!({ "run_id": run_id, "params": pairs(&run.params) }),
        )?;
        let folder = format!("{artifact_uri}/{BUNDLE_FOLDER}");
        let url = format!("{}/{}", artifact_url(&self.base, &folder)?, run.bundle_file);
        self.send(
            "artifact upload",
            self.http
                .put(url)
                .header("content-type", "application/octet-stream")
                .body(run.bundle.to_vec()),
        )?;
        self.post(
            "runs/update",
            &json!({ "run_id": run_id, "status": "FINISHED", "end_time": millis() }),
        )?;
        match self.post("registered-models/create", &json!({ "name": run.model })) {
            Ok(_) => {}
            Err(MlflowError::Refused {
                code: Some(code), ..
            }) if code == "RESOURCE_ALREADY_EXISTS" => {}
            Err(err) => return Err(err),
        }
        let mut tags = run.tags.clone();
        tags.push((BUNDLE_SHA256_TAG.to_owned(), run.bundle_sha256.to_owned()));
        tags.push((BUNDLE_FILE_TAG.to_owned(), run.bundle_file.to_owned()));
        let version = self.post(
            "model-versions/create",
            &json!({ "name": run.model, "source": folder, "run_id": run_id, "tags": pairs(&tags) }),
        )?;
        Ok(LoggedRun {
            run_id,
            model_version: text_field(
                &version["model_version"],
                "version",
                "model-versions/create",
            )?,
        })
    }

    /// Points `alias` of `model` at MLflow version `version`.
    pub fn set_alias(&self, model: &str, alias: &str, version: &str) -> Result<(), MlflowError> {
        self.post(
            "registered-models/alias",
            &json!({ "name": model, "alias": alias, "version": version }),
        )?;
        Ok(())
    }

    /// The version `alias` of `model` names, with its bundle's bytes.
    pub fn fetch_by_alias(&self, model: &str, alias: &str) -> Result<FetchedVersion, MlflowError> {
        let answer = self.get(
            "registered-models/alias",
            &[("name", model), ("alias", alias)],
        )?;
        let version: ModelVersion = serde_json::from_value(answer["model_version"].clone())
            .map_err(|e| MlflowError::Unexpected {
                what: "registered-models/alias".to_owned(),
                detail: e.to_string(),
            })?;
        let tag = |key: &str| {
            version
                .tags
                .iter()
                .find(|t| t.key == key)
                .map(|t| t.value.clone())
        };
        let file = tag(BUNDLE_FILE_TAG).ok_or_else(|| MlflowError::Unexpected {
            what: format!("{model}@{alias}"),
            detail: format!(
                "version {} has no `{BUNDLE_FILE_TAG}` tag: not an Edgewise bundle",
                version.version
            ),
        })?;
        let folder = if let Some(rest) = version.source.strip_prefix("runs:/") {
            let (run, path) = rest.split_once('/').unwrap_or((rest, ""));
            let run_info = self.get("runs/get", &[("run_id", run)])?;
            let root = text_field(&run_info["run"]["info"], "artifact_uri", "runs/get")?;
            format!("{root}/{path}")
        } else {
            version.source.clone()
        };
        let url = format!("{}/{file}", artifact_url(&self.base, &folder)?);
        let bundle = self
            .send("artifact download", self.http.get(url))?
            .bytes()
            .map_err(|e| MlflowError::Unexpected {
                what: "artifact download".to_owned(),
                detail: e.to_string(),
            })?
            .to_vec();
        Ok(FetchedVersion {
            version: version.version,
            run_id: version.run_id,
            bundle,
            bundle_sha256: tag(BUNDLE_SHA256_TAG),
        })
    }
}

/// MLflow stores NaN as the string "NaN"; serde_json cannot write it as a number.
fn finite(value: f64) -> Value {
    if value.is_finite() {
        json!(value)
    } else {
        json!("NaN")
    }
}

fn text_field(value: &Value, key: &str, what: &str) -> Result<String, MlflowError> {
    value[key]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| MlflowError::Unexpected {
            what: what.to_owned(),
            detail: format!("no `{key}` in {value}"),
        })
}

/// The proxy URL of an `mlflow-artifacts:` URI on server `base`.
pub fn artifact_url(base: &str, uri: &str) -> Result<String, MlflowError> {
    let rest = uri
        .strip_prefix("mlflow-artifacts:")
        .ok_or_else(|| MlflowError::Unexpected {
            what: "artifact location".to_owned(),
            detail: format!("{uri:?} is not served through the artifact proxy (start the server with --artifacts-destination)"),
        })?;
    // `mlflow-artifacts://host:port/path` names a host; this client talks to `base`.
    let path = match rest.strip_prefix("//") {
        Some(with_host) => with_host.split_once('/').map_or("", |(_, path)| path),
        None => rest.trim_start_matches('/'),
    };
    Ok(format!("{base}/api/2.0/mlflow-artifacts/artifacts/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_onto_the_proxy() {
        let base = "http://127.0.0.1:5000";
        assert_eq!(
            artifact_url(base, "mlflow-artifacts:/1/abc/artifacts/bundle").expect("url"),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/bundle"
        );
        assert_eq!(
            artifact_url(base, "mlflow-artifacts://other:5000/1/abc/artifacts").expect("url"),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts"
        );
        assert!(artifact_url(base, "s3://bucket/x").is_err());
    }
}
