//! Fetching bundle bytes into a partial file, over QUIC or the HTTP `Range` fallback.
//! Both resume from the bytes already held and never accept more than the size the
//! signed assignment names.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use edgewise_core::node_config::NodeConfig;
use edgewise_core::transfer::{self, TransferRequest, TransferResponse};
use edgewise_core::udp;
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::fs::OpenOptions;
use tokio::io::{AsyncWriteExt, BufWriter};

/// Bytes gathered before each write to the partial file. QUIC hands over a packet's
/// worth at a time, and every write to a tokio file is a trip to its blocking pool.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// The partial file being appended to.
type Partial = BufWriter<tokio::fs::File>;

/// Bytes read per QUIC chunk.
const CHUNK_BYTES: usize = 64 * 1024;

/// Longest silence from a live connection, and longest wait for the next bytes of a
/// transfer under way: a vanished server is noticed this soon, and the download resumes
/// from where it stopped.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait for a connection to be set up (a server that a whole fleet reaches at
/// once takes a while to answer every handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest wait for a transfer to start: the server sends a limited number at once and
/// queues the rest, while the connection stays alive (a dead server is still noticed
/// after `STALL_TIMEOUT` of silence).
const QUEUE_TIMEOUT: Duration = Duration::from_secs(300);

/// Why a download attempt stopped.
#[derive(Debug, Error)]
pub enum DownloadError {
    /// The source could not be reached or broke off; worth retrying.
    #[error("transfer from {location} broke off: {reason}")]
    Transient {
        /// Where from.
        location: String,
        /// What happened.
        reason: String,
    },
    /// The source or the bytes are wrong; retrying the same assignment cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// How this device reaches the artifact servers and proves who it is.
#[derive(Clone)]
pub struct DownloadSettings {
    client_config: quinn::ClientConfig,
    server_name: String,
    /// Device id and password for the HTTP fallback (HTTP Basic); none when the
    /// device has no password.
    http_credentials: Option<(String, String)>,
}

impl DownloadSettings {
    /// From a node config: trusts only the control plane's CA, checks the QUIC server
    /// against `transfer.server_name`, presents the device's client certificate, and
    /// sends the device's credentials to the HTTP fallback.
    pub fn from_config(config: &NodeConfig) -> Result<Self, String> {
        let ca_pem = &config.trust.ca_certificate;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            let certificate =
                certificate.map_err(|e| format!("trust.ca_certificate is not valid PEM: {e}"))?;
            roots
                .add(certificate)
                .map_err(|e| format!("trust.ca_certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("trust.ca_certificate holds no certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let transfer_settings = &config.transfer;
        let mut tls = match (
            &transfer_settings.client_certificate,
            &transfer_settings.client_key,
        ) {
            (Some(certificate), Some(key)) => {
                let chain = CertificateDer::pem_slice_iter(certificate.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("transfer.client_certificate is not valid PEM: {e}"))?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes())
                    .map_err(|e| format!("transfer.client_key is not valid PEM: {e}"))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("transfer.client_certificate: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(
                    "transfer.client_certificate and transfer.client_key go together".into(),
                );
            }
        };
        tls.alpn_protocols = vec![transfer::ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(crypto));
        // Notice a vanished server in seconds, so the download resumes soon after it returns.
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(Duration::from_secs(1)));
        let idle = quinn::IdleTimeout::try_from(STALL_TIMEOUT).map_err(|e| e.to_string())?;
        transport.max_idle_timeout(Some(idle));
        client_config.transport_config(Arc::new(transport));
        let http_credentials = (!config.mqtt.password.is_empty())
            .then(|| (config.device_id.clone(), config.mqtt.password.clone()));
        Ok(DownloadSettings {
            client_config,
            server_name: transfer_settings.server_name.clone(),
            http_credentials,
        })
    }
}

/// Outcome of one attempt: how many bytes this attempt moved.
#[derive(Debug, Clone, Copy)]
pub struct Transferred {
    /// Bytes written by this attempt.
    pub bytes: u64,
    /// Bytes already held when it started.
    pub resumed_from: u64,
}

/// Downloads from one location into `partial`, resuming from its length, up to `size` bytes.
pub async fn fetch(
    location: &str,
    quic: &DownloadSettings,
    sha256: &str,
    size: u64,
    partial: &Path,
) -> Result<Transferred, DownloadError> {
    let held = tokio::fs::metadata(partial).await.map_or(0, |m| m.len());
    if held > size {
        let _ = tokio::fs::remove_file(partial).await;
        return Err(DownloadError::Transient {
            location: location.to_owned(),
            reason: format!(
                "partial file held {held} bytes, more than the {size} assigned; restarting"
            ),
        });
    }
    if held == size {
        return Ok(Transferred {
            bytes: 0,
            resumed_from: held,
        });
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .await
        .map_err(|e| {
            DownloadError::Permanent(format!("cannot write {}: {e}", partial.display()))
        })?;
    let mut file = BufWriter::with_capacity(WRITE_BUFFER_BYTES, file);
    let transient = |reason: String| DownloadError::Transient {
        location: location.to_owned(),
        reason,
    };
    let result = if let Some(address) = location.strip_prefix("quic://") {
        fetch_quic(address, quic, sha256, held, size, &mut file).await
    } else if location.starts_with("http://") || location.starts_with("https://") {
        fetch_http(location, quic, held, size, &mut file).await
    } else {
        return Err(DownloadError::Permanent(format!(
            "assignment location {location:?} is neither quic:// nor http(s)://"
        )));
    };
    // However the attempt ended, every byte it received is on disk before the next
    // attempt measures the file to resume from. A tokio file writes in the background:
    // a write still under way when an attempt broke off could land after the next
    // attempt had begun appending, and the bundle then held some bytes twice.
    let flushed = file.flush().await;
    let bytes = result.map_err(transient)?;
    flushed.map_err(|e| transient(format!("cannot write the download: {e}")))?;
    Ok(Transferred {
        bytes,
        resumed_from: held,
    })
}

/// Appends `chunk`, up to `limit` bytes in all. `Ok(false)` when the server sent more
/// than that: the excess is dropped unread and the transfer ends there, so endless data
/// costs nothing, and the hash check decides whether the first `limit` bytes are right.
async fn append(
    file: &mut Partial,
    chunk: &[u8],
    written: &mut u64,
    limit: u64,
) -> Result<bool, String> {
    let room = limit.saturating_sub(*written);
    let kept = &chunk[..chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
    file.write_all(kept)
        .await
        .map_err(|e| format!("cannot write the download: {e}"))?;
    *written += kept.len() as u64;
    metrics::counter!("edgewise_update_download_bytes_total").increment(kept.len() as u64);
    if kept.len() < chunk.len() {
        metrics::counter!("edgewise_update_download_overruns_total").increment(1);
        tracing::warn!(
            limit,
            "the server sent more than the bytes assigned; the rest is ignored"
        );
        return Ok(false);
    }
    Ok(true)
}

async fn fetch_quic(
    address: &str,
    quic: &DownloadSettings,
    sha256: &str,
    offset: u64,
    size: u64,
    file: &mut Partial,
) -> Result<u64, String> {
    let remote = tokio::net::lookup_host(address)
        .await
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to nothing"))?;
    let local: SocketAddr = if remote.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let bound = udp::bind_with_buffers(local, udp::CLIENT_BUFFER_BYTES)
        .map_err(|e| format!("cannot bind a UDP socket: {e}"))?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        bound.socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(|e| e.to_string())?;
    endpoint.set_default_client_config(quic.client_config.clone());
    let connecting = endpoint
        .connect(remote, &quic.server_name)
        .map_err(|e| e.to_string())?;
    let connection = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| "connection timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| e.to_string())?;
    let request = TransferRequest {
        sha256: sha256.to_owned(),
        offset,
    };
    send.write_all(&transfer::encode_line(&request))
        .await
        .map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;

    let mut header = Vec::new();
    let mut written = 0u64;
    let limit = size - offset;
    let mut in_body = false;
    loop {
        let wait = if in_body || !header.is_empty() {
            STALL_TIMEOUT
        } else {
            QUEUE_TIMEOUT
        };
        let chunk = tokio::time::timeout(wait, recv.read_chunk(CHUNK_BYTES, true))
            .await
            .map_err(|_| format!("no bytes for {} s", wait.as_secs()))?
            .map_err(|e| e.to_string())?;
        let Some(chunk) = chunk else { break };
        if in_body {
            if !append(file, &chunk.bytes, &mut written, limit).await? {
                break;
            }
            continue;
        }
        header.extend_from_slice(&chunk.bytes);
        if !header.contains(&b'\n') {
            if header.len() > transfer::MAX_HEADER_BYTES {
                return Err("response header too long".into());
            }
            continue;
        }
        let (response, rest): (TransferResponse, &[u8]) = transfer::decode_line(&header)?;
        if !response.ok {
            return Err(response.error.unwrap_or_else(|| "refused".into()));
        }
        if response.size != size || response.offset != offset {
            return Err(format!(
                "server offers {} bytes from {}, the assignment says {size} from {offset}",
                response.size, response.offset
            ));
        }
        let rest = rest.to_vec();
        if !append(file, &rest, &mut written, limit).await? {
            break;
        }
        in_body = true;
    }
    connection.close(0u32.into(), b"done");
    if written < limit {
        return Err(format!(
            "stream ended after {} of {size} bytes",
            offset + written
        ));
    }
    Ok(written)
}

async fn fetch_http(
    url: &str,
    settings: &DownloadSettings,
    offset: u64,
    size: u64,
    file: &mut Partial,
) -> Result<u64, String> {
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut request = client.get(url).header("range", format!("bytes={offset}-"));
    // Presigned S3 URLs carry their own signature, and S3 refuses a second scheme.
    if let Some((user, password)) = &settings.http_credentials
        && !url.contains("X-Amz-Signature=")
    {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send();
    let mut response = tokio::time::timeout(QUEUE_TIMEOUT, response)
        .await
        .map_err(|_| format!("no answer for {} s", QUEUE_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    if status != reqwest::StatusCode::PARTIAL_CONTENT && !(offset == 0 && status.is_success()) {
        return Err(format!("GET {url} answered {status}"));
    }
    let limit = size - offset;
    let mut written = 0u64;
    while let Some(chunk) = tokio::time::timeout(STALL_TIMEOUT, response.chunk())
        .await
        .map_err(|_| format!("no bytes for {} s", STALL_TIMEOUT.as_secs()))?
        .map_err(|e| e.to_string())?
    {
        if !append(file, &chunk, &mut written, limit).await? {
            break;
        }
    }
    if written < limit {
        return Err(format!(
            "body ended after {} of {size} bytes",
            offset + written
        ));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Settings that reach plain HTTP only (no QUIC server is trusted).
    fn http_only() -> DownloadSettings {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        tls.alpn_protocols = vec![transfer::ALPN.to_vec()];
        let crypto = QuicClientConfig::try_from(tls).expect("QUIC config");
        DownloadSettings {
            client_config: quinn::ClientConfig::new(Arc::new(crypto)),
            server_name: "localhost".into(),
            http_credentials: None,
        }
    }

    #[tokio::test]
    async fn an_attempt_that_breaks_off_leaves_every_byte_it_received_on_disk() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let sent = 300_000;
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = vec![0; 4096];
            let _ = socket.read(&mut request).await;
            let head = "HTTP/1.1 206 Partial Content\r\ncontent-length: 1000000\r\n\r\n";
            socket.write_all(head.as_bytes()).await.expect("head");
            socket.write_all(&vec![7u8; sent]).await.expect("body");
            // The server goes away in the middle of the body.
        });
        let dir = tempfile::tempdir().expect("dir");
        let partial = dir.path().join("bundle.part");
        let outcome = fetch(
            &format!("http://{address}/bundle"),
            &http_only(),
            "unused",
            1_000_000,
            &partial,
        )
        .await;
        assert!(
            matches!(outcome, Err(DownloadError::Transient { .. })),
            "{outcome:?}"
        );
        let held = std::fs::metadata(&partial).expect("partial").len();
        assert_eq!(held, sent as u64, "the next attempt resumes from here");
    }
}
