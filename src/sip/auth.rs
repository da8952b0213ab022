//! Digest authentication (RFC 2617/7616, SHA-256 per RFC 8760): HA1 values, challenges with
//! self-verifying nonces, credential parsing and verification. Pure: the caller passes the time.

use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm the switch supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The token used in `algorithm=` parameters.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Lowercase hex digest of `data`.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// HA1 = H(username ":" realm ":" password), lowercase hex. This is what the store keeps
/// instead of a password.
pub fn ha1_hex(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}
