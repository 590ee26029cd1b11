//! AWS integration: the shared SDK configuration (region, credentials from the standard
//! chain, HTTPS over rustls with ring), the S3 artifact store and the AWS IoT Core
//! fleet mirror behind `edgewise fleet sync --aws`.

pub mod iot;
pub mod iot_policy;
pub mod s3;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::result::SdkError;

/// Where AWS is: the region and, for tests and private endpoints, the endpoint URL.
#[derive(Debug, Clone)]
pub struct AwsTarget {
    /// The region, e.g. `eu-west-1`.
    pub region: String,
    /// An endpoint URL that replaces the service's public one (moto, LocalStack, VPC
    /// endpoints); `None` for AWS itself.
    pub endpoint: Option<String>,
}

/// Loads the SDK configuration for `region`: credentials from the standard chain (environment,
/// profile, web identity, container and instance roles) and an HTTPS client on rustls
/// with ring, so no second crypto library is built.
pub async fn sdk_config(region: &str) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new(region.to_owned()))
        .load()
        .await
}

/// The message of an SDK error, with the service's error code where it sent one.
pub fn error_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            match (inner.code(), inner.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                _ => inner.to_string(),
            }
        }
        SdkError::DispatchFailure(failure) => format!("cannot reach AWS: {failure:?}"),
        SdkError::TimeoutError(_) => "AWS did not answer in time".to_owned(),
        other => other.to_string(),
    }
}
