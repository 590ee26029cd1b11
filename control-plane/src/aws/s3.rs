//! The S3 artifact store: bundle files kept in a bucket under `PREFIX/artifacts/<sha256>`,
//! content-addressed like the local folder, so an object never changes once written.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{AwsTarget, error_message, sdk_config};

/// A bucket and key prefix parsed from `s3://BUCKET[/PREFIX]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket.
    pub bucket: String,
    /// The key prefix, empty or ending in `/`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET` or `s3://BUCKET/PREFIX`; errors name `field`.
    pub fn parse(value: &str, field: &str) -> Result<Self, String> {
        let rest = value.strip_prefix("s3://").ok_or_else(|| {
            format!("{field} {value:?} must be s3://BUCKET or s3://BUCKET/PREFIX")
        })?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "{field} {value:?}: bucket {bucket:?} must be 3 to 63 lower-case letters, digits, '-' or '.'"
            ));
        }
        let prefix = prefix.trim_matches('/');
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }
}

/// Bundle files in S3.
#[derive(Clone)]
pub struct S3Artifacts {
    client: Client,
    location: S3Location,
}

impl S3Artifacts {
    /// Connects and checks that the bucket can be reached.
    pub async fn connect(location: S3Location, target: &AwsTarget) -> Result<Self, String> {
        let sdk = sdk_config(&target.region).await;
        let mut config = aws_sdk_s3::config::Builder::from(&sdk)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &target.endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        let client = Client::from_conf(config.build());
        client
            .head_bucket()
            .bucket(&location.bucket)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot reach bucket {:?}: {}",
                    location.bucket,
                    error_message(&e)
                )
            })?;
        Ok(S3Artifacts { client, location })
    }

    /// `s3://BUCKET/PREFIX` for messages.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.location.bucket, self.location.prefix)
    }

    fn key(&self, sha256: &str) -> String {
        format!("{}artifacts/{sha256}", self.location.prefix)
    }

    /// Whether the bundle is in the bucket.
    pub async fn contains(&self, sha256: &str) -> Result<bool, String> {
        match self
            .client
            .head_object()
            .bucket(&self.location.bucket)
            .key(self.key(sha256))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(false),
            Err(err) => Err(error_message(&err)),
        }
    }

    /// Uploads the local file `path` as bundle `sha256`, unless the bucket has it.
    pub async fn upload(&self, sha256: &str, path: &Path) -> Result<(), String> {
        if self.contains(sha256).await? {
            return Ok(());
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.client
            .put_object()
            .bucket(&self.location.bucket)
            .key(self.key(sha256))
            .content_type("application/octet-stream")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("cannot upload {}: {}", self.key(sha256), error_message(&e)))?;
        tracing::info!(sha256, store = %self.describe(), "bundle uploaded to S3");
        Ok(())
    }

    /// Downloads bundle `sha256` into `destination`, checking its hash; writes nothing
    /// at `destination` unless the bytes match.
    pub async fn download(&self, sha256: &str, destination: &Path) -> Result<(), String> {
        let output = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(self.key(sha256))
            .send()
            .await
            .map_err(|e| {
                format!(
                    "cannot download {}: {}",
                    self.key(sha256),
                    error_message(&e)
                )
            })?;
        let staging = destination.with_extension("s3-download");
        let mut file = tokio::fs::File::create(&staging)
            .await
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        let mut body = output.body;
        let mut hasher = Sha256::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| format!("download of {} broke: {e}", self.key(sha256)))?;
            hasher.update(&chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("cannot write {}: {e}", staging.display()))?;
        }
        file.sync_all().await.map_err(|e| e.to_string())?;
        let actual = hex::encode(hasher.finalize());
        if actual != sha256 {
            let _ = tokio::fs::remove_file(&staging).await;
            return Err(format!(
                "object {} holds bytes with sha256 {actual}, not {sha256}; refusing it",
                self.key(sha256)
            ));
        }
        tokio::fs::rename(&staging, destination)
            .await
            .map_err(|e| format!("cannot move {} into place: {e}", staging.display()))
    }

    /// Deletes bundle `sha256` from the bucket.
    pub async fn delete(&self, sha256: &str) -> Result<(), String> {
        self.client
            .delete_object()
            .bucket(&self.location.bucket)
            .key(self.key(sha256))
            .send()
            .await
            .map_err(|e| format!("cannot delete {}: {}", self.key(sha256), error_message(&e)))?;
        Ok(())
    }

    /// A URL that GETs bundle `sha256` straight from S3 for `ttl`.
    pub async fn presigned_url(&self, sha256: &str, ttl: Duration) -> Result<String, String> {
        let config = PresigningConfig::expires_in(ttl).map_err(|e| e.to_string())?;
        let request = self
            .client
            .get_object()
            .bucket(&self.location.bucket)
            .key(self.key(sha256))
            .presigned(config)
            .await
            .map_err(|e| format!("cannot presign {}: {}", self.key(sha256), error_message(&e)))?;
        Ok(request.uri().to_owned())
    }

    /// The hashes of every bundle in the bucket.
    pub async fn stored(&self) -> Result<HashSet<String>, String> {
        let prefix = self.key("");
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.location.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        let mut found = HashSet::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| format!("cannot list {prefix}: {}", error_message(&e)))?;
            for object in page.contents() {
                if let Some(sha256) = object.key().and_then(|key| key.strip_prefix(&prefix)) {
                    found.insert(sha256.to_owned());
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::S3Location;

    #[test]
    fn locations_parse_with_and_without_prefix() {
        let plain = S3Location::parse("s3://edgewise-bundles", "--artifact-store").unwrap();
        assert_eq!(plain.prefix, "");
        let nested =
            S3Location::parse("s3://edgewise-bundles/prod/eu/", "--artifact-store").unwrap();
        assert_eq!(
            (nested.bucket.as_str(), nested.prefix.as_str()),
            ("edgewise-bundles", "prod/eu/")
        );
        let error = S3Location::parse("s3://Bad_Bucket", "--artifact-store").unwrap_err();
        assert!(
            error.contains("--artifact-store") && error.contains("lower-case"),
            "{error}"
        );
        assert!(S3Location::parse("/var/bundles", "--artifact-store").is_err());
    }
}
