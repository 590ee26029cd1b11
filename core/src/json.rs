//! Parsing JSON from outside the process: bounded in size, with errors that name the
//! field at fault.

use serde::de::DeserializeOwned;

/// Parses `bytes` as a `what` of at most `limit` bytes; the error names the size or
/// the JSON path of the problem.
pub fn parse_bounded<T: DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
    what: &str,
) -> Result<T, String> {
    if bytes.len() > limit {
        return Err(format!(
            "{what} is {} bytes, the limit is {limit}",
            bytes.len()
        ));
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer)
        .map_err(|e| format!("{what} at `{}`: {}", e.path(), e.inner()))
}
