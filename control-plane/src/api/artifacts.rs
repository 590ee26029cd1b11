//! `GET /api/v1/artifacts/{sha256}`: bundle bytes over HTTP, with `Range` so a broken
//! download resumes; the fallback for nodes that cannot use QUIC. With an S3 store and
//! presigned downloads it redirects to the bucket instead. Devices authenticate with
//! their own credentials (HTTP Basic) and get only their assigned bundle; API tokens
//! get any bundle.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use super::{ApiError, AppState, PathParams};
use crate::transfer::{CHUNK_BYTES, OpenError, Pacer, check_sha256};

/// Parses `bytes=START-` or `bytes=START-END` (one range only).
fn parse_range(value: &str) -> Option<(u64, Option<u64>)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let end = match end.trim() {
        "" => None,
        end => Some(end.parse().ok()?),
    };
    Some((start, end))
}

/// Downloads a bundle, whole or from a byte range.
#[utoipa::path(get, path = "/api/v1/artifacts/{sha256}", tag = "artifacts", params(("sha256" = String, Path)),
    responses((status = 200, description = "the whole bundle"), (status = 206, description = "the requested range"),
        (status = 307, description = "with presigned downloads: the bundle's presigned S3 URL"),
        (status = 503, body = super::ErrorBody, description = "the S3 artifact store cannot be reached"),
        (status = 404, body = super::ErrorBody), (status = 416, body = super::ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    PathParams(sha256): PathParams<String>,
    device: Option<axum::Extension<super::auth::DeviceCaller>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(axum::Extension(super::auth::DeviceCaller(id))) = device {
        state
            .artifacts
            .access
            .may_download(&id, &sha256)
            .map_err(|reason| ApiError::new(StatusCode::FORBIDDEN, reason))?;
    }
    let range = match headers.get(header::RANGE) {
        None => None,
        Some(value) => Some(value.to_str().ok().and_then(parse_range).ok_or_else(|| {
            ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "header `Range` must be `bytes=START-` or `bytes=START-END`",
            )
        })?),
    };
    if let Some(ttl) = state.artifacts.presign {
        return redirect_to_s3(&state, &sha256, ttl).await;
    }
    let start = range.map_or(0, |(start, _)| start);
    let slot = state.artifacts.transfer_slot().await;
    let opened = match slot {
        Ok(slot) => state
            .artifacts
            .open(&sha256, start)
            .await
            .map(|(file, size)| (file, size, slot)),
        Err(err) => Err(err),
    };
    let (file, size, slot) = opened.map_err(|err| {
        let status = match &err {
            OpenError::Invalid(_) => StatusCode::BAD_REQUEST,
            OpenError::Missing(_) => StatusCode::NOT_FOUND,
            OpenError::PastEnd { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            OpenError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, err.to_string())
    })?;
    let end = range
        .and_then(|(_, end)| end)
        .map_or(size, |end| (end + 1).min(size));
    if end < start || (start == size && size > 0) {
        return Err(ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("range starts at {start}, the artifact has {size} bytes"),
        ));
    }
    let length = end - start;
    let rate = state.artifacts.rate_limit;
    // The body holds the transfer slot until its last byte is read, or it is dropped.
    let body = futures_util::stream::unfold(
        (
            file.take(length),
            Pacer::new(rate),
            vec![0u8; CHUNK_BYTES],
            slot,
        ),
        |(mut reader, mut pacer, mut buffer, slot)| async move {
            match reader.read(&mut buffer).await {
                Ok(0) => None,
                Ok(read) => {
                    pacer.sent(read, "http").await;
                    let chunk = axum::body::Bytes::copy_from_slice(&buffer[..read]);
                    Some((
                        Ok::<_, std::io::Error>(chunk),
                        (reader, pacer, buffer, slot),
                    ))
                }
                Err(err) => Some((Err(err), (reader, pacer, buffer, slot))),
            }
        },
    )
    .boxed();
    let mut response = Body::from_stream(body).into_response();
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if range.is_some() {
        let content_range = format!("bytes {start}-{}/{size}", end.saturating_sub(1));
        if let Ok(value) = HeaderValue::from_str(&content_range) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// Answers `307 Temporary Redirect` to a presigned S3 URL, so the bytes come straight
/// from the bucket (the client's `Range` header goes along).
async fn redirect_to_s3(
    state: &AppState,
    sha256: &str,
    ttl: std::time::Duration,
) -> Result<Response, ApiError> {
    check_sha256(sha256).map_err(|reason| ApiError::new(StatusCode::BAD_REQUEST, reason))?;
    let url = match state.artifacts.store.presigned_url(sha256, ttl).await {
        Some(Ok(url)) => url,
        Some(Err(reason)) => return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, reason)),
        None => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "presigned downloads need an S3 artifact store",
            ));
        }
    };
    let location = HeaderValue::from_str(&url).map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the presigned URL is not a valid header",
        )
    })?;
    metrics::counter!("edgewise_artifact_redirects_total").increment(1);
    let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=10-"), Some((10, None)));
        assert_eq!(parse_range("bytes=0-99"), Some((0, Some(99))));
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=a-"), None);
    }
}
