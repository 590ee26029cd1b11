//! Serving bundle bytes: the QUIC artifact server (ALPN `edgewise-artifact/1`) and the
//! shared reading and pacing that the HTTP `Range` fallback uses too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use edgewise_core::transfer::{self, TransferRequest, TransferResponse};
use edgewise_core::udp;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::artifact_access::ArtifactAccess;
use crate::artifacts::ArtifactStore;
use crate::pki::CertifiedKey;

/// Bytes sent per chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Where bundle files are, and how fast they may go out.
#[derive(Clone)]
pub struct ArtifactSource {
    /// The bundle files.
    pub store: ArtifactStore,
    /// Bytes per second per transfer; 0 for no limit.
    pub rate_limit: u64,
    /// With an S3 store: HTTP downloads are redirected to presigned S3 URLs valid this long.
    pub presign: Option<Duration>,
    /// Transfers sent at once, over QUIC and HTTP together; the rest wait their turn.
    /// When a whole fleet is assigned at once, serving a few transfers at full speed
    /// finishes sooner than starving thousands, whose nodes would time out and retry.
    pub transfer_slots: Arc<Semaphore>,
    /// Which device may download which bundle.
    pub access: ArtifactAccess,
}

/// Why a bundle cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The request does not name a bundle properly.
    #[error("{0}")]
    Invalid(String),
    /// No such bundle.
    #[error("no artifact {0}")]
    Missing(String),
    /// The offset is past the end.
    #[error("offset {offset} is past the end of artifact {sha256} ({size} bytes)")]
    PastEnd {
        /// The bundle.
        sha256: String,
        /// The requested offset.
        offset: u64,
        /// The bundle's size.
        size: u64,
    },
    /// The bundle could not be read, here or from the S3 store.
    #[error("{0}")]
    Unavailable(String),
}

impl ArtifactSource {
    /// Waits for a free transfer slot; the transfer holds it until it ends.
    pub async fn transfer_slot(&self) -> Result<OwnedSemaphorePermit, OpenError> {
        self.transfer_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| OpenError::Unavailable("the artifact server is shutting down".into()))
    }

    /// Opens the bundle `sha256` at `offset`; returns the file and its full size.
    pub async fn open(
        &self,
        sha256: &str,
        offset: u64,
    ) -> Result<(tokio::fs::File, u64), OpenError> {
        check_sha256(sha256).map_err(OpenError::Invalid)?;
        let path = self.store.local_copy(sha256).await.map_err(|reason| {
            if reason.starts_with("no artifact") {
                OpenError::Missing(sha256.to_owned())
            } else {
                OpenError::Unavailable(reason)
            }
        })?;
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|_| OpenError::Missing(sha256.to_owned()))?;
        let size = file
            .metadata()
            .await
            .map_err(|e| OpenError::Unavailable(e.to_string()))?
            .len();
        if offset > size {
            return Err(OpenError::PastEnd {
                sha256: sha256.to_owned(),
                offset,
                size,
            });
        }
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| OpenError::Unavailable(e.to_string()))?;
        Ok((file, size))
    }
}

/// Errors unless `sha256` is 64 lower-case hex characters.
pub fn check_sha256(sha256: &str) -> Result<(), String> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        Ok(())
    } else {
        Err(format!(
            "{sha256:?} is not a sha256 (64 lower-case hex characters)"
        ))
    }
}

/// Keeps a transfer under a byte rate by sleeping between chunks.
pub struct Pacer {
    rate: u64,
    started: Instant,
    sent: u64,
}

impl Pacer {
    /// A pacer for `rate` bytes per second (0: no limit).
    pub fn new(rate: u64) -> Self {
        Pacer {
            rate,
            started: Instant::now(),
            sent: 0,
        }
    }

    /// Accounts for `bytes` sent and waits as long as the rate requires.
    pub async fn sent(&mut self, bytes: usize, transport: &'static str) {
        metrics::counter!("edgewise_artifact_bytes_served_total", "transport" => transport)
            .increment(bytes as u64);
        self.sent += bytes as u64;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.sent as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// Binds the QUIC artifact server on `bind` and serves in the background; returns its
/// address. Clients must present a certificate signed by `ca` (mutual TLS), and get
/// only what their device is assigned. With `max_connections` open, new connections
/// are refused at once (a thundering herd's handshakes would otherwise starve the
/// transfers under way until they time out), and those nodes use the HTTP fallback.
pub fn start_quic(
    bind: SocketAddr,
    certificate: &CertifiedKey,
    ca: &CertifiedKey,
    source: ArtifactSource,
    max_connections: usize,
) -> Result<SocketAddr> {
    let chain = CertificateDer::pem_slice_iter(certificate.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("the server certificate is not valid PEM")?;
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes())
        .context("the server key is not valid PEM")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca_certificate in CertificateDer::pem_slice_iter(ca.certificate_pem.as_bytes()) {
        roots.add(ca_certificate.context("the CA certificate is not valid PEM")?)?;
    }
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("cannot build the client certificate verifier")?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(clients)
        .with_single_cert(chain, key)?;
    tls.alpn_protocols = vec![transfer::ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport
        .keep_alive_interval(Some(Duration::from_secs(5)))
        .max_idle_timeout(Some(Duration::from_secs(30).try_into()?));
    config.transport_config(Arc::new(transport));
    let bound = udp::bind_with_buffers(bind, udp::SERVER_BUFFER_BYTES)
        .with_context(|| format!("cannot bind the QUIC artifact server on {bind}"))?;
    if bound.receive_buffer_short_of(udp::SERVER_BUFFER_BYTES) {
        tracing::warn!(
            granted = bound.receive_buffer_bytes,
            wanted = udp::SERVER_BUFFER_BYTES,
            "small UDP receive buffer for the QUIC artifact server: a fleet downloading at once \
             will lose packets and time out; raise net.core.rmem_max and net.core.wmem_max"
        );
    }
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        bound.socket,
        Arc::new(quinn::TokioRuntime),
    )
    .with_context(|| format!("cannot start the QUIC artifact server on {bind}"))?;
    let address = endpoint.local_addr()?;
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            if endpoint.open_connections() >= max_connections {
                metrics::counter!("edgewise_artifact_quic_refused_total").increment(1);
                incoming.refuse();
                continue;
            }
            let source = source.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(connection) => serve_connection(connection, source).await,
                    Err(err) => tracing::debug!(error = %err, "QUIC handshake failed"),
                }
            });
        }
    });
    Ok(address)
}

/// The device a connection's client certificate was issued to.
fn peer_device(connection: &quinn::Connection, access: &ArtifactAccess) -> Result<String, String> {
    let chain = connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .ok_or_else(|| "no client certificate".to_owned())?;
    let leaf = chain
        .first()
        .ok_or_else(|| "no client certificate".to_owned())?;
    access.device_by_certificate(leaf).map(|device| device.id)
}

async fn serve_connection(connection: quinn::Connection, source: ArtifactSource) {
    let device = Arc::new(peer_device(&connection, &source.access));
    if let Err(reason) = device.as_ref() {
        metrics::counter!("edgewise_artifact_requests_refused_total").increment(1);
        tracing::warn!(peer = %connection.remote_address(), %reason, "QUIC client refused");
    }
    while let Ok((send, recv)) = connection.accept_bi().await {
        let source = source.clone();
        let device = device.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_stream(send, recv, &source, &device).await {
                tracing::info!(error = %err, "QUIC transfer ended early");
            }
        });
    }
}

async fn serve_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    source: &ArtifactSource,
    device: &Result<String, String>,
) -> Result<(), String> {
    // The request is one header line and its newline.
    let request = recv
        .read_to_end(transfer::MAX_HEADER_BYTES + 1)
        .await
        .map_err(|e| format!("reading the request: {e}"))?;
    let allowed = transfer::decode_line::<TransferRequest>(&request).and_then(|(request, _)| {
        let device = device.as_ref().map_err(Clone::clone)?;
        source.access.may_download(device, &request.sha256)?;
        Ok(request)
    });
    let opened = match allowed {
        Ok(request) => match source.transfer_slot().await {
            Ok(slot) => source
                .open(&request.sha256, request.offset)
                .await
                .map(|(file, size)| (file, size, request, slot))
                .map_err(|e| e.to_string()),
            Err(err) => Err(err.to_string()),
        },
        Err(reason) => Err(reason),
    };
    let (mut file, size, request, _slot) = match opened {
        Ok(opened) => opened,
        Err(reason) => {
            let refusal = TransferResponse {
                ok: false,
                size: 0,
                offset: 0,
                error: Some(reason.clone()),
            };
            let _ = send.write_all(&transfer::encode_line(&refusal)).await;
            let _ = send.finish();
            return Err(reason);
        }
    };
    let header = TransferResponse {
        ok: true,
        size,
        offset: request.offset,
        error: None,
    };
    send.write_all(&transfer::encode_line(&header))
        .await
        .map_err(|e| e.to_string())?;
    let mut pacer = Pacer::new(source.rate_limit);
    let mut buffer = vec![0u8; CHUNK_BYTES];
    loop {
        let read = file.read(&mut buffer).await.map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        send.write_all(&buffer[..read])
            .await
            .map_err(|e| e.to_string())?;
        pacer.sent(read, "quic").await;
    }
    send.finish().map_err(|e| e.to_string())?;
    let _ = send.stopped().await;
    tracing::info!(sha256 = %request.sha256, offset = request.offset, size, "artifact sent over QUIC");
    Ok(())
}
