//! The Kubernetes executor: renders a `batch/v1` Job whose pod fetches the job's
//! training file from the control plane, runs the same `edgewise-train` command, and
//! uploads the bundle back; applies it with kubectl when one is configured, and waits
//! for the bundle (or the Job's failure).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Jobs;
use super::record::TrainingJob;

/// Where the pod keeps its files.
const POD_WORK: &str = "/work";
/// Where the release key Secret is mounted in the pod.
const POD_KEYS: &str = "/keys";

/// How Kubernetes jobs are made.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    /// The image holding `edgewise-train` and curl.
    pub image: String,
    /// The namespace.
    pub namespace: String,
    /// The Secret with the release signing key, as `release.key`.
    pub signing_key_secret: String,
    /// The control plane's URL as the cluster reaches it.
    pub server_url: String,
    /// kubectl, when jobs are to be applied.
    pub kubectl: Option<PathBuf>,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        KubernetesSettings {
            image: "ghcr.io/edgewise/edgewise-train:latest".to_owned(),
            namespace: "edgewise".to_owned(),
            signing_key_secret: "edgewise-release-key".to_owned(),
            server_url: "http://edgewise-control-plane.edgewise.svc:8700".to_owned(),
            kubectl: None,
        }
    }
}

/// The Kubernetes name of a job's Job object.
pub fn job_name(job: &TrainingJob) -> String {
    format!("edgewise-train-{}", job.id.to_lowercase())
}

/// Rewrites the local `edgewise-train` arguments for the pod: data, spec, output and
/// key paths move under the pod's folders.
fn pod_args(args: &[String], spec_is_file: bool) -> Vec<String> {
    let mut rewritten = Vec::with_capacity(args.len());
    let mut previous = "";
    for arg in args {
        let value = match previous {
            "--data" => format!("{POD_WORK}/train.csv"),
            "--out" => format!("{POD_WORK}/out"),
            "--signing-key" => format!("{POD_KEYS}/release.key"),
            "--spec" if spec_is_file => format!("{POD_WORK}/spec.json"),
            _ => arg.clone(),
        };
        previous = arg.as_str();
        rewritten.push(value);
    }
    rewritten
}

/// The Secret holding the job's own API token: role `ci`, named `job-ID`, created
/// when the Job is applied and revoked when it ends.
pub fn token_secret_name(job: &TrainingJob) -> String {
    format!("{}-token", job_name(job))
}

/// Quotes a word for `sh`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The Job manifest for `job`, given its local trainer arguments and spec text (when
/// the spec is a file).
pub fn render(
    settings: &KubernetesSettings,
    job: &TrainingJob,
    args: &[String],
    spec_file: Option<&str>,
) -> Value {
    let version = job.version.unwrap_or(0);
    let train: Vec<String> = pod_args(args, spec_file.is_some())
        .iter()
        .map(|a| shell_quote(a))
        .collect();
    let api = "$EDGEWISE_SERVER/api/v1/training-jobs/$EDGEWISE_JOB";
    let script = [
        "set -eu".to_owned(),
        format!("mkdir -p {POD_WORK}/out"),
        format!("curl -fsS -H \"authorization: Bearer $EDGEWISE_TOKEN\" \"{api}/data\" -o {POD_WORK}/train.csv"),
        format!("if [ -n \"${{EDGEWISE_SPEC:-}}\" ]; then printf '%s' \"$EDGEWISE_SPEC\" > {POD_WORK}/spec.json; fi"),
        format!("edgewise-train {}", train.join(" ")),
        format!(
            "curl -fsS -X POST -H \"authorization: Bearer $EDGEWISE_TOKEN\" -H 'content-type: application/octet-stream' --data-binary @{POD_WORK}/out/{}-v{version}.bundle \"{api}/bundle\"",
            job.request.model
        ),
    ]
    .join("\n");
    let mut env = vec![
        json!({ "name": "EDGEWISE_SERVER", "value": settings.server_url }),
        json!({ "name": "EDGEWISE_JOB", "value": job.id }),
        json!({ "name": "EDGEWISE_TOKEN", "valueFrom": { "secretKeyRef": { "name": token_secret_name(job), "key": "token" } } }),
        json!({ "name": "RUST_LOG", "value": "info" }),
    ];
    if let Some(spec) = spec_file {
        env.push(json!({ "name": "EDGEWISE_SPEC", "value": spec }));
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(job),
            "namespace": settings.namespace,
            "labels": {
                "app.kubernetes.io/name": "edgewise-train",
                "app.kubernetes.io/part-of": "edgewise",
                "edgewise.dev/model": job.request.model,
                "edgewise.dev/training-job": job.id,
            },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": 6 * 3600,
            "ttlSecondsAfterFinished": 24 * 3600,
            "template": {
                "metadata": { "labels": { "app.kubernetes.io/name": "edgewise-train", "edgewise.dev/training-job": job.id } },
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "seccompProfile": { "type": "RuntimeDefault" },
                    },
                    "containers": [{
                        "name": "train",
                        "image": settings.image,
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["/bin/sh", "-c", script],
                        "env": env,
                        "resources": {
                            "requests": { "cpu": "1", "memory": "1Gi" },
                            "limits": { "cpu": "2", "memory": "4Gi" },
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] },
                        },
                        "volumeMounts": [
                            { "name": "work", "mountPath": POD_WORK },
                            { "name": "release-key", "mountPath": POD_KEYS, "readOnly": true },
                        ],
                    }],
                    "volumes": [
                        { "name": "work", "emptyDir": {} },
                        { "name": "release-key", "secret": { "secretName": settings.signing_key_secret, "defaultMode": 256 } },
                    ],
                },
            },
        },
    })
}

/// Renders the Job into `folder`, applies it with kubectl when configured, and waits
/// until the pod has uploaded the bundle to `bundle_path`.
pub async fn run(
    jobs: &Jobs,
    job: &TrainingJob,
    args: &[String],
    folder: &Path,
    bundle_path: &Path,
    cancel: CancellationToken,
) -> Result<(), String> {
    let settings = &jobs.inner.settings.kubernetes;
    let spec_index = args.iter().position(|a| a == "--spec").map(|i| i + 1);
    let spec_text = spec_index
        .and_then(|i| args.get(i))
        .filter(|spec| Path::new(spec.as_str()).is_file())
        .and_then(|path| std::fs::read_to_string(path).ok());
    let manifest = render(settings, job, args, spec_text.as_deref());
    let manifest_path = folder.join("job.json");
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(&manifest_path, text).map_err(|e| e.to_string())?;
    jobs.log(
        &job.id,
        format!("rendered the Kubernetes Job at {}", manifest_path.display()),
    );
    let Some(kubectl) = &settings.kubectl else {
        return Err(format!(
            "no kubectl configured (--kubectl): create Secret {} (key `token`: an API token with role ci), then apply {} yourself to run it",
            token_secret_name(job),
            manifest_path.display()
        ));
    };
    let tokens = crate::auth::Tokens::open(&jobs.inner.store).map_err(|e| e.to_string())?;
    let token_name = format!("job-{}", job.id);
    let issued = tokens
        .create(&token_name, crate::auth::Role::Ci)
        .map_err(|e| format!("cannot create the job's API token: {e}"))?;
    let outcome = apply_and_wait(
        jobs,
        job,
        kubectl,
        &manifest_path,
        &issued.token,
        bundle_path,
        cancel,
    )
    .await;
    if let Err(err) = tokens.revoke(&token_name) {
        tracing::error!(error = %err, token = %token_name, "cannot revoke a training job's token");
    }
    let _ = kubectl_run(
        kubectl,
        &[
            "delete",
            "secret",
            &token_secret_name(job),
            "-n",
            &settings.namespace,
            "--ignore-not-found",
        ],
    )
    .await;
    outcome
}

/// Stores the job's token in its Secret (through a private file beside the manifest),
/// applies the Job and waits for its bundle.
async fn apply_and_wait(
    jobs: &Jobs,
    job: &TrainingJob,
    kubectl: &Path,
    manifest_path: &Path,
    token: &str,
    bundle_path: &Path,
    cancel: CancellationToken,
) -> Result<(), String> {
    let settings = &jobs.inner.settings.kubernetes;
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": token_secret_name(job), "namespace": settings.namespace },
        "type": "Opaque",
        "stringData": { "token": token },
    });
    let secret_path = manifest_path.with_file_name("token-secret.json");
    crate::datadir::write_private(&secret_path, &secret.to_string()).map_err(|e| e.to_string())?;
    let applied = kubectl_run(
        kubectl,
        &["apply", "-f", &secret_path.display().to_string()],
    )
    .await;
    let _ = std::fs::remove_file(&secret_path);
    applied?;
    kubectl_run(
        kubectl,
        &["apply", "-f", &manifest_path.display().to_string()],
    )
    .await?;
    let name = job_name(job);
    loop {
        if bundle_path.exists() {
            return Ok(());
        }
        let failed = kubectl_run(
            kubectl,
            &[
                "get",
                "job",
                &name,
                "-n",
                &settings.namespace,
                "-o",
                "jsonpath={.status.failed}",
            ],
        )
        .await
        .unwrap_or_default();
        if failed.trim().parse::<u32>().unwrap_or(0) > 0 {
            return Err(format!(
                "Kubernetes Job {name} failed (kubectl logs job/{name})"
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = cancel.cancelled() => {
                let _ = kubectl_run(kubectl, &["delete", "job", &name, "-n", &settings.namespace]).await;
                return Err("cancelled".to_owned());
            }
        }
    }
}

async fn kubectl_run(kubectl: &Path, args: &[&str]) -> Result<String, String> {
    let output = tokio::process::Command::new(kubectl)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", kubectl.display()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::dataset::DatasetChoice;
    use crate::jobs::record::{JobState, NewTrainingJob};

    fn job() -> TrainingJob {
        TrainingJob {
            id: "tj-7".into(),
            origin: "api".into(),
            request: NewTrainingJob {
                model: "rainfall".into(),
                spec: None,
                dataset: DatasetChoice::default(),
                hyperparameters: Default::default(),
                executor: super::super::record::ExecutorKind::Kubernetes,
                register: true,
                parent_version: Some(1),
                evaluation: None,
            },
            state: JobState::Running,
            version: Some(2),
            parent_version: Some(1),
            data: None,
            created_at: String::new(),
            started_at: None,
            finished_at: None,
            bundle_sha256: None,
            metrics: None,
            evaluation: None,
            registered: false,
            rollouts: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn the_job_runs_the_same_trainer_command_with_pod_paths() {
        let args: Vec<String> = [
            "train",
            "--data",
            "/srv/jobs/tj-7/train.csv",
            "--spec",
            "/srv/jobs/tj-7/spec.json",
            "--out",
            "/srv/jobs/tj-7/out",
            "--signing-key",
            "/srv/keys/automation.key",
            "--epochs",
            "30",
        ]
        .map(String::from)
        .to_vec();
        let manifest = render(&KubernetesSettings::default(), &job(), &args, Some("{}"));
        assert_eq!(manifest["apiVersion"], "batch/v1");
        assert_eq!(manifest["kind"], "Job");
        assert_eq!(manifest["metadata"]["name"], "edgewise-train-tj-7");
        let pod = &manifest["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        let script = pod["containers"][0]["command"][2].as_str().expect("script");
        assert!(
            script.contains("'--data' '/work/train.csv'")
                && script.contains("'--spec' '/work/spec.json'")
                && script.contains("'--signing-key' '/keys/release.key'")
                && script.contains("'--epochs' '30'")
                && script.contains("/work/out/rainfall-v2.bundle"),
            "{script}"
        );
        assert!(!script.contains("/srv/"), "local paths leaked: {script}");
        assert_eq!(
            pod["containers"][0]["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        assert_eq!(
            pod["volumes"][1]["secret"]["secretName"],
            "edgewise-release-key"
        );
    }

    #[test]
    fn quotes_survive_the_shell() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
