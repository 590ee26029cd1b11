//! Framing of bundle downloads over QUIC (ALPN [`ALPN`]).
//!
//! Each download is one bidirectional stream. The node writes one JSON
//! [`TransferRequest`] line (`{"sha256":"…","offset":N}\n`) and finishes its side. The
//! server answers with one JSON [`TransferResponse`] line, then, when `ok`, the bundle's
//! bytes from `offset` to the end. An interrupted download resumes by asking again from
//! the number of bytes already held.

use serde::{Deserialize, Serialize};

/// The QUIC application protocol name.
pub const ALPN: &[u8] = b"edgewise-artifact/1";

/// Longest accepted request or response header line, in bytes.
pub const MAX_HEADER_BYTES: usize = 1024;

/// What a node asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// sha256 of the wanted bundle.
    pub sha256: String,
    /// First byte wanted.
    pub offset: u64,
}

/// The server's answer before the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferResponse {
    /// Whether bytes follow.
    pub ok: bool,
    /// The bundle's full size.
    #[serde(default)]
    pub size: u64,
    /// The offset the bytes start at.
    #[serde(default)]
    pub offset: u64,
    /// Why the request was refused, when not `ok`.
    #[serde(default)]
    pub error: Option<String>,
}

/// Serialises a header as one JSON line.
pub fn encode_line<T: Serialize>(header: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(header).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Splits `buffer` at the first newline and parses the header before it; returns the
/// header and the bytes after the newline. Errors name the problem.
pub fn decode_line<T: for<'de> Deserialize<'de>>(buffer: &[u8]) -> Result<(T, &[u8]), String> {
    let end = buffer
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| format!("no header line within {} bytes", buffer.len()))?;
    if end > MAX_HEADER_BYTES {
        return Err(format!(
            "header line is {end} bytes, the limit is {MAX_HEADER_BYTES}"
        ));
    }
    let header = serde_json::from_slice(&buffer[..end]).map_err(|e| format!("bad header: {e}"))?;
    Ok((header, &buffer[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lines_round_trip() {
        let request = TransferRequest {
            sha256: "ab".repeat(32),
            offset: 7,
        };
        let mut wire = encode_line(&request);
        wire.extend_from_slice(b"rest");
        let (decoded, rest): (TransferRequest, _) = decode_line(&wire).expect("decodes");
        assert_eq!(decoded, request);
        assert_eq!(rest, b"rest");
        assert!(decode_line::<TransferRequest>(b"{\"sha256\":1}\n").is_err());
        assert!(decode_line::<TransferRequest>(&[b'x'; 10]).is_err());
    }
}
