//! Operator passwords, kept as `pbkdf2-sha256$ITERATIONS$SALT$HASH` (salt and hash in
//! unpadded base64): PBKDF2-HMAC-SHA256 (`ring::pbkdf2`), a 16-byte random salt per password,
//! [`ITERATIONS`] rounds (OWASP's 2023 figure for PBKDF2-HMAC-SHA256), a 32-byte output. The
//! iteration count is stored with each hash, so it can be raised later without breaking old
//! ones. The salt is passed in (the caller draws it from the OS generator), so this is pure.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use ring::pbkdf2;

use super::ConsoleError;

/// The rounds of a new hash.
pub const ITERATIONS: u32 = 600_000;

/// The length of the salt, in bytes.
pub const SALT_LEN: usize = 16;

const OUT_LEN: usize = 32;
const SCHEME: &str = "pbkdf2-sha256";

/// The longest password hashed (longer ones are refused before hashing: a megabyte of
/// password must not cost the switch more than a normal one).
pub const MAX_PASSWORD_LEN: usize = 256;

/// The stored form of `password` with `salt` and `iterations` rounds.
pub fn hash(password: &str, salt: &[u8; SALT_LEN], iterations: u32) -> String {
    let rounds = NonZeroU32::new(iterations.max(1)).expect("max(1) is not zero");
    let mut out = [0u8; OUT_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "{SCHEME}${}${}${}",
        rounds,
        B64.encode(salt),
        B64.encode(out)
    )
}

/// Does `password` match the stored `hash`? The comparison is constant-time (ring's
/// `pbkdf2::verify`). `Err` when `hash` is not in the stored form.
pub fn verify(password: &str, stored: &str) -> Result<bool, ConsoleError> {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(rounds), Some(salt), Some(out), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(ConsoleError::BadHash);
    };
    let rounds: NonZeroU32 = rounds.parse().map_err(|_| ConsoleError::BadHash)?;
    let salt = B64.decode(salt).map_err(|_| ConsoleError::BadHash)?;
    let out = B64.decode(out).map_err(|_| ConsoleError::BadHash)?;
    if out.len() != OUT_LEN || password.len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    Ok(pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        password.as_bytes(),
        &out,
    )
    .is_ok())
}

/// A hash of no one's password with the current rounds: checked against when the user is
/// unknown, so that a wrong name costs as long as a wrong password.
pub fn decoy() -> String {
    hash("tambun-decoy", &[0x5a; SALT_LEN], ITERATIONS)
}

/// Checks a new operator password: 10 to 256 characters, no control characters.
pub fn check_new(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 10 {
        return Err("an operator password must be at least 10 characters long".into());
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "an operator password must be at most {MAX_PASSWORD_LEN} bytes long"
        ));
    }
    if password.chars().any(char::is_control) {
        return Err("an operator password must not contain control characters".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash("kata sandi rahasia", &[7; SALT_LEN], 1000);
        assert!(h.starts_with("pbkdf2-sha256$1000$"));
        assert_eq!(verify("kata sandi rahasia", &h), Ok(true));
        assert_eq!(verify("kata sandi rahasiA", &h), Ok(false));
        assert_eq!(verify("", &h), Ok(false));
    }

    #[test]
    fn salt_changes_the_hash() {
        let a = hash("same password", &[1; SALT_LEN], 1000);
        let b = hash("same password", &[2; SALT_LEN], 1000);
        assert_ne!(a, b);
        assert_eq!(verify("same password", &b), Ok(true));
    }

    #[test]
    fn known_vector() {
        // RFC 7914 §11 (PBKDF2-HMAC-SHA256, "passwd", salt "salt", c = 1, first 32 bytes).
        let mut out = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(1).unwrap(),
            b"salt",
            b"passwd",
            &mut out,
        );
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn default_rounds_are_slow() {
        const { assert!(ITERATIONS >= 600_000) };
        assert!(decoy().starts_with("pbkdf2-sha256$600000$"));
    }

    #[test]
    fn unreadable_hashes_are_errors() {
        assert_eq!(verify("x", "md5$abc"), Err(ConsoleError::BadHash));
        assert_eq!(
            verify("x", "pbkdf2-sha256$0$AA$AA"),
            Err(ConsoleError::BadHash)
        );
        assert_eq!(
            verify("x", "pbkdf2-sha256$10$!!$AA"),
            Err(ConsoleError::BadHash)
        );
    }

    #[test]
    fn new_password_rules() {
        assert!(check_new("0123456789").is_ok());
        assert!(check_new("short").is_err());
        assert!(check_new("0123456789\n").is_err());
        assert!(check_new(&"x".repeat(300)).is_err());
    }
}
