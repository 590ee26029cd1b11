//! Device and service MQTT credentials: random passwords, stored only as salted
//! SHA-512 hashes in Mosquitto's `$6$` password-file format, so the same hash serves
//! the embedded broker and a generated Mosquitto password file.
//!
//! The passwords are 256-bit random tokens, not human choices, so a fast hash is
//! enough: there is nothing to brute-force.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha512};

/// Bytes of randomness in a password.
const PASSWORD_BYTES: usize = 32;

/// Bytes of salt in a hash.
const SALT_BYTES: usize = 12;

/// A new random password (43 URL-safe characters).
pub fn generate_password() -> String {
    let mut bytes = [0u8; PASSWORD_BYTES];
    rand::fill(&mut bytes[..]);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Hashes `password` as `$6$<base64 salt>$<base64 sha512(password ‖ salt)>`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_BYTES];
    rand::fill(&mut salt[..]);
    format!(
        "$6${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(digest(password, &salt))
    )
}

/// Whether `password` matches a `$6$` hash, compared in constant time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let mut parts = hash.split('$');
    let (Some(""), Some("6"), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Ok(salt), Ok(expected)) = (STANDARD.decode(salt), STANDARD.decode(expected)) else {
        return false;
    };
    let actual = digest(password, &salt);
    actual.len() == expected.len()
        && actual
            .iter()
            .zip(&expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

fn digest(password: &str, salt: &[u8]) -> Vec<u8> {
    let mut hasher = Sha512::new();
    hasher.update(password.as_bytes());
    hasher.update(salt);
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let password = generate_password();
        let hash = hash_password(&password);
        assert!(hash.starts_with("$6$"));
        assert!(verify_password(&password, &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password(
            &password,
            &hash_password(&generate_password())
        ));
        assert!(!verify_password(&password, "$7$garbage"));
    }
}
