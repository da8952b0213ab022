//! Digest authentication (RFC 2617/7616, SHA-256 per RFC 8760) for the registrar and proxy.
//!
//! This module owns: HA1 computation, parsing `Authorization`/`Proxy-Authorization` values into
//! [`Credentials`], self-verifying nonces ([`NonceKey`]: timestamp + HMAC-SHA256 under a server
//! secret, so no per-nonce state is needed to check one), nonce-count replay protection
//! ([`NonceCounts`]), response verification and rendering `WWW-Authenticate` challenges.
//!
//! It does no I/O, reads no clock and takes no locks: the caller passes the current time (Unix
//! seconds), the server secret and the stored HA1. Checking that `realm` is ours, that `uri`
//! matches the Request-URI and looking up the user are the caller's job.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, Mac};
use md5::Md5;
use rand::RngCore;
use sha2::{Digest, Sha256};
use thiserror::Error;

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

    /// Parses an `algorithm=` value (case-insensitive). `-sess` variants are not supported.
    fn from_token(token: &str) -> Option<Algorithm> {
        [Algorithm::Md5, Algorithm::Sha256]
            .into_iter()
            .find(|a| a.token().eq_ignore_ascii_case(token))
    }
}

/// HA1 = H(username ":" realm ":" password), lowercase hex. This is what the store keeps
/// instead of a password.
pub fn ha1_hex(algorithm: Algorithm, username: &str, realm: &str, password: &str) -> String {
    algorithm.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// Why an `Authorization` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("digest: unsupported authentication scheme")]
    UnsupportedScheme,
    #[error("digest: unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("digest: unsupported qop {0:?}")]
    UnsupportedQop(String),
    #[error("digest: missing parameter {0}")]
    MissingParam(&'static str),
    #[error("digest: duplicate parameter {0:?}")]
    DuplicateParam(String),
    #[error("digest: nonce-count is not 8 hex digits")]
    BadNonceCount,
    #[error("digest: malformed credentials at byte {0}")]
    Malformed(usize),
}

impl AuthError {
    /// The SIP status to answer with: a fresh challenge (401/407, which one is the caller's
    /// choice, so 401 here) for what a client could fix by choosing differently, 400 otherwise.
    pub fn status_code(&self) -> u16 {
        match self {
            AuthError::UnsupportedScheme
            | AuthError::UnsupportedAlgorithm(_)
            | AuthError::UnsupportedQop(_) => 401,
            _ => 400,
        }
    }
}

/// The only quality of protection supported: `qop=auth` (no `auth-int`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qop {
    Auth,
}

/// A nonce-count: its value and the exact 8 hex digits the client sent (they are hashed as sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonceCount {
    value: u32,
    digits: [u8; 8],
}

impl NonceCount {
    fn parse(s: &str) -> Result<NonceCount, AuthError> {
        let digits: [u8; 8] = s
            .as_bytes()
            .try_into()
            .map_err(|_| AuthError::BadNonceCount)?;
        if !digits.iter().all(u8::is_ascii_hexdigit) {
            return Err(AuthError::BadNonceCount);
        }
        let value = u32::from_str_radix(s, 16).map_err(|_| AuthError::BadNonceCount)?;
        Ok(NonceCount { value, digits })
    }

    pub fn value(&self) -> u32 {
        self.value
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are stored (checked in `parse`).
        std::str::from_utf8(&self.digits).unwrap_or("")
    }
}

/// Parsed digest credentials. Invariant from [`parse_credentials`]: `qop` is `Some` exactly
/// when `cnonce` and `nc` are (with `qop` absent, stray `cnonce`/`nc` are dropped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// As sent; `None` means MD5 (see [`Credentials::hash_algorithm`]).
    pub algorithm: Option<Algorithm>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub qop: Option<Qop>,
    pub nc: Option<NonceCount>,
}

impl Credentials {
    /// The algorithm in effect: the one sent, MD5 when absent.
    pub fn hash_algorithm(&self) -> Algorithm {
        self.algorithm.unwrap_or(Algorithm::Md5)
    }
}

/// Parses the value of an `Authorization` or `Proxy-Authorization` header (after the colon).
/// Folded lines (CRLF followed by SP/HTAB) count as a space. Unknown parameters are ignored.
pub fn parse_credentials(value: &[u8]) -> Result<Credentials, AuthError> {
    build_credentials(parse_digest_params(value)?)
}

/// The `name=value` parameters of a `Digest …` header value (names lowercased, quotes
/// removed), shared by credentials and challenges.
fn parse_digest_params(value: &[u8]) -> Result<Vec<(String, String)>, AuthError> {
    let text = unfold(value)?;
    let mut cur = Cursor { s: &text, pos: 0 };
    cur.skip_ws();
    let scheme = cur.token();
    if scheme.is_empty() {
        return Err(AuthError::Malformed(cur.pos));
    }
    if !scheme.eq_ignore_ascii_case(b"Digest") {
        return Err(AuthError::UnsupportedScheme);
    }
    let mut params: Vec<(String, String)> = Vec::new();
    if cur.skip_ws() == 0 && !cur.at_end() {
        return Err(AuthError::Malformed(cur.pos));
    }
    loop {
        while cur.eat(b',') {
            cur.skip_ws();
        }
        if cur.at_end() {
            break;
        }
        let name = String::from_utf8_lossy(cur.token()).to_ascii_lowercase();
        if name.is_empty() {
            return Err(AuthError::Malformed(cur.pos));
        }
        cur.skip_ws();
        if !cur.eat(b'=') {
            return Err(AuthError::Malformed(cur.pos));
        }
        cur.skip_ws();
        let raw = if cur.peek() == Some(b'"') {
            cur.quoted()?
        } else {
            match cur.token() {
                [] => return Err(AuthError::Malformed(cur.pos)),
                t => t.to_vec(),
            }
        };
        let value = String::from_utf8(raw).map_err(|_| AuthError::Malformed(cur.pos))?;
        if params.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::DuplicateParam(name));
        }
        if params.len() == MAX_PARAMS {
            return Err(AuthError::Malformed(cur.pos));
        }
        params.push((name, value));
        cur.skip_ws();
        if !cur.at_end() && !cur.eat(b',') {
            return Err(AuthError::Malformed(cur.pos));
        }
        cur.skip_ws();
    }
    Ok(params)
}

/// Parses a `WWW-Authenticate` / `Proxy-Authenticate` value from a server we are a client of
/// (a carrier). `qop` is whether the server offered `auth`; an unknown algorithm is an error.
pub fn parse_challenge(value: &[u8]) -> Result<(Challenge, bool), AuthError> {
    let mut params = parse_digest_params(value)?;
    let mut take = |name: &'static str| {
        let i = params.iter().position(|(n, _)| n == name);
        i.map(|i| params.swap_remove(i).1)
    };
    let realm = take("realm").ok_or(AuthError::MissingParam("realm"))?;
    let nonce = take("nonce").ok_or(AuthError::MissingParam("nonce"))?;
    let algorithm = match take("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::from_token(&a).ok_or(AuthError::UnsupportedAlgorithm(a))?,
    };
    let qop =
        take("qop").is_some_and(|q| q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")));
    let stale = take("stale").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let opaque = take("opaque");
    Ok((
        Challenge {
            realm,
            nonce,
            algorithm,
            stale,
            opaque,
        },
        qop,
    ))
}

/// Our `Authorization` value answering `challenge` for `method` and `uri`, from the HA1 of
/// the challenge's algorithm (client side: the switch registering with a carrier). With
/// `qop`, `cnonce` and the nonce count `nc` are used.
#[allow(clippy::too_many_arguments)] // the digest's inputs, each named by RFC 7616
pub fn answer_challenge(
    challenge: &Challenge,
    qop: bool,
    username: &str,
    ha1_hex: &str,
    method: &str,
    uri: &str,
    cnonce: &str,
    nc: u32,
) -> String {
    let alg = challenge.algorithm;
    let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
    let nonce = &challenge.nonce;
    let mut out = format!(
        "Digest username={}, realm={}, nonce={}, uri={}",
        quote(username),
        quote(&challenge.realm),
        quote(nonce),
        quote(uri)
    );
    let response = if qop {
        let nc = format!("{nc:08x}");
        let r = alg.hash_hex(format!("{ha1_hex}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes());
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce={}", quote(cnonce)));
        r
    } else {
        alg.hash_hex(format!("{ha1_hex}:{nonce}:{ha2}").as_bytes())
    };
    out.push_str(&format!(
        ", response={}, algorithm={}",
        quote(&response),
        alg.token()
    ));
    if let Some(o) = &challenge.opaque {
        out.push_str(&format!(", opaque={}", quote(o)));
    }
    out
}

/// More parameters than any client sends; bounds the duplicate check.
const MAX_PARAMS: usize = 32;

fn build_credentials(mut params: Vec<(String, String)>) -> Result<Credentials, AuthError> {
    let mut take = |name: &'static str| {
        let i = params.iter().position(|(n, _)| n == name);
        i.map(|i| params.swap_remove(i).1)
            .ok_or(AuthError::MissingParam(name))
    };
    let (username, realm, nonce, uri, response) = (
        take("username")?,
        take("realm")?,
        take("nonce")?,
        take("uri")?,
        take("response")?,
    );
    let algorithm = take("algorithm")
        .ok()
        .map(|a| Algorithm::from_token(&a).ok_or(AuthError::UnsupportedAlgorithm(a)))
        .transpose()?;
    let (qop, cnonce, nc) = match take("qop").ok() {
        None => (None, None, None),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let cnonce = take("cnonce")?;
            (
                Some(Qop::Auth),
                Some(cnonce),
                Some(NonceCount::parse(&take("nc")?)?),
            )
        }
        Some(q) => return Err(AuthError::UnsupportedQop(q)),
    };
    Ok(Credentials {
        username,
        realm,
        nonce,
        uri,
        response,
        algorithm,
        cnonce,
        opaque: take("opaque").ok(),
        qop,
        nc,
    })
}

/// Replaces each fold (CRLF followed by SP/HTAB) with one space; any other CR or LF is an error.
fn unfold(value: &[u8]) -> Result<Vec<u8>, AuthError> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'\r' | b'\n' => {
                let folded = value[i..].starts_with(b"\r\n")
                    && matches!(value.get(i + 2), Some(b' ' | b'\t'));
                if !folded {
                    return Err(AuthError::Malformed(i));
                }
                out.push(b' ');
                i += 2;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.pos += usize::from(hit);
        hit
    }

    /// Skips spaces and tabs; returns how many.
    fn skip_ws(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// RFC 3261 `token` (possibly empty).
    fn token(&mut self) -> &'a [u8] {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
        {
            self.pos += 1;
        }
        &self.s[start..self.pos]
    }

    /// A quoted string starting at the opening quote, with `\` escapes removed.
    fn quoted(&mut self) -> Result<Vec<u8>, AuthError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(AuthError::Malformed(start)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let escaped = self
                        .s
                        .get(self.pos + 1)
                        .ok_or(AuthError::Malformed(start))?;
                    out.push(*escaped);
                    self.pos += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Seconds a nonce may claim to be from the future (clock steps between nodes) before it is
/// treated as forged.
const FUTURE_SKEW_SECS: u64 = 5;
/// Nonce layout, all lowercase hex: issue time (big-endian u64 Unix seconds, 16 digits), a
/// sequence number (u64, 16 digits) so that no two challenges share a nonce (each nonce has its
/// own nonce-count), then HMAC-SHA256(secret, time ‖ sequence) truncated to 16 bytes (32 digits).
const NONCE_LEN: usize = 64;

/// The server secret nonces are signed with, and the sequence that makes each nonce unique.
/// Its `Debug` does not show the secret. Not `Clone` (clones would repeat nonces): share it.
pub struct NonceKey {
    secret: [u8; 32],
    sequence: AtomicU64,
}

/// What a nonce turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours and within its lifetime.
    Valid { issued: u64 },
    /// Ours but expired: re-challenge with `stale=true` (the client keeps its password).
    Stale,
    /// Not ours (forged, tampered, malformed, or too far in the future).
    Invalid,
}

impl NonceKey {
    /// A key whose sequence starts at 0 (deterministic, for tests and single nodes).
    pub fn new(secret: [u8; 32]) -> NonceKey {
        NonceKey::with_sequence(secret, 0)
    }

    /// A key whose sequence starts at `start` (nodes sharing a secret start far apart).
    pub fn with_sequence(secret: [u8; 32], start: u64) -> NonceKey {
        NonceKey {
            secret,
            sequence: AtomicU64::new(start),
        }
    }

    /// A key and sequence start from the OS-seeded thread RNG; nonces then die with the process.
    pub fn random() -> NonceKey {
        let mut rng = rand::thread_rng();
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        NonceKey::with_sequence(secret, rng.next_u64())
    }

    fn mac(&self, issued: u64, sequence: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .expect("HMAC takes keys of any length");
        mac.update(&issued.to_be_bytes());
        mac.update(&sequence.to_be_bytes());
        mac
    }

    /// A fresh nonce issued at `issued_unix_secs`: 64 lowercase hex digits, nothing to quote.
    pub fn make_nonce(&self, issued_unix_secs: u64) -> String {
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let tag = self.mac(issued_unix_secs, sequence).finalize().into_bytes();
        format!(
            "{issued_unix_secs:016x}{sequence:016x}{}",
            hex::encode(&tag[..16])
        )
    }

    /// Checks a nonce's signature (in constant time) and age.
    pub fn check_nonce(&self, nonce: &str, now_unix_secs: u64, lifetime_secs: u64) -> NonceCheck {
        let b = nonce.as_bytes();
        // Lowercase only: one nonce has one spelling, so `NonceCounts` cannot be dodged by case.
        if b.len() != NONCE_LEN || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return NonceCheck::Invalid;
        }
        let (Some(issued), Some(sequence), Ok(tag)) = (
            hex_u64(&nonce[..16]),
            hex_u64(&nonce[16..32]),
            hex::decode(&b[32..]),
        ) else {
            return NonceCheck::Invalid;
        };
        if self
            .mac(issued, sequence)
            .verify_truncated_left(&tag)
            .is_err()
        {
            return NonceCheck::Invalid;
        }
        if issued > now_unix_secs.saturating_add(FUTURE_SKEW_SECS) {
            NonceCheck::Invalid
        } else if now_unix_secs.saturating_sub(issued) > lifetime_secs {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid { issued }
        }
    }
}

fn hex_u64(digits: &str) -> Option<u64> {
    u64::from_str_radix(digits, 16).ok()
}

impl fmt::Debug for NonceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceKey(<secret>)")
    }
}

/// Replay protection: the highest nonce-count accepted per nonce.
///
/// Bounded to `max_entries` nonces. When full, the oldest-issued nonce is evicted and every
/// untracked nonce issued at or before it is refused from then on (a replay of an evicted nonce
/// must not look fresh); such clients get a new challenge. `prune` does the same for nonces
/// issued before its cutoff, so call it with `now - lifetime` and expired nonces are forgotten.
///
/// Without `qop` a request carries no nonce-count and replays cannot be told apart; whether to
/// accept that (RFC 2069 clients) or to demand `qop=auth` is the caller's policy.
#[derive(Debug, Clone)]
pub struct NonceCounts {
    highest: HashMap<String, (u32, u64)>,
    by_issued: BTreeSet<(u64, String)>,
    max_entries: usize,
    /// Untracked nonces issued before this are refused.
    floor: u64,
}

impl NonceCounts {
    /// A table holding at most `max_entries` nonces (at least one).
    pub fn new(max_entries: usize) -> NonceCounts {
        NonceCounts {
            highest: HashMap::new(),
            by_issued: BTreeSet::new(),
            max_entries: max_entries.max(1),
            floor: 0,
        }
    }

    /// Records `nc` for `nonce` (issued at `issued_unix`, from [`NonceCheck::Valid`]); true only
    /// if `nc` is strictly greater than every nc accepted before for that nonce.
    pub fn accept(&mut self, nonce: &str, nc: u32, issued_unix: u64) -> bool {
        if let Some((highest, _)) = self.highest.get_mut(nonce) {
            if nc <= *highest {
                return false;
            }
            *highest = nc;
            return true;
        }
        if nc == 0 || issued_unix < self.floor {
            return false;
        }
        if self.highest.len() >= self.max_entries {
            match self.by_issued.first() {
                // It would be the next one evicted: refuse instead.
                Some((oldest, _)) if issued_unix <= *oldest => return false,
                _ => {}
            }
        }
        while self.highest.len() >= self.max_entries {
            let Some((issued, old)) = self.by_issued.pop_first() else {
                break;
            };
            self.highest.remove(&old);
            self.floor = self.floor.max(issued.saturating_add(1));
        }
        self.highest.insert(nonce.to_owned(), (nc, issued_unix));
        self.by_issued.insert((issued_unix, nonce.to_owned()));
        true
    }

    /// Forgets nonces issued before `older_than_unix`; they are refused afterwards.
    pub fn prune(&mut self, older_than_unix: u64) {
        while let Some((issued, _)) = self.by_issued.first() {
            if *issued >= older_than_unix {
                break;
            }
            if let Some((_, nonce)) = self.by_issued.pop_first() {
                self.highest.remove(&nonce);
            }
        }
        self.floor = self.floor.max(older_than_unix);
    }

    pub fn len(&self) -> usize {
        self.highest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.highest.is_empty()
    }
}

/// Whether `creds.response` is right for `method` and the stored HA1 (lowercase hex, for
/// `creds.hash_algorithm()`). With `qop=auth`: H(HA1:nonce:nc:cnonce:auth:H(A2)); without
/// (RFC 2069): H(HA1:nonce:H(A2)); A2 = method ":" uri. Compared in constant time.
/// Does not check the nonce, realm or uri: see [`NonceKey::check_nonce`] and [`NonceCounts`].
pub fn verify(creds: &Credentials, method: &str, ha1_hex: &str) -> bool {
    let alg = creds.hash_algorithm();
    let ha2 = alg.hash_hex(format!("{method}:{}", creds.uri).as_bytes());
    let expected = match (creds.qop, &creds.nc, &creds.cnonce) {
        (Some(Qop::Auth), Some(nc), Some(cnonce)) => alg.hash_hex(
            format!(
                "{ha1_hex}:{}:{}:{cnonce}:auth:{ha2}",
                creds.nonce,
                nc.as_str()
            )
            .as_bytes(),
        ),
        (Some(Qop::Auth), _, _) => return false,
        (None, _, _) => alg.hash_hex(format!("{ha1_hex}:{}:{ha2}", creds.nonce).as_bytes()),
    };
    let got = creds.response.as_bytes();
    expected.len() == got.len()
        && expected
            .bytes()
            .zip(got)
            .fold(0u8, |acc, (e, g)| acc | (e ^ g.to_ascii_lowercase()))
            == 0
}

/// One `WWW-Authenticate` / `Proxy-Authenticate` digest challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    pub stale: bool,
    pub opaque: Option<String>,
}

impl Challenge {
    /// The header value, e.g. `Digest realm="r", nonce="n", algorithm=MD5, qop="auth"`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Digest realm={}, nonce={}",
            quote(&self.realm),
            quote(&self.nonce)
        );
        if let Some(opaque) = &self.opaque {
            out.push_str(&format!(", opaque={}", quote(opaque)));
        }
        out.push_str(&format!(
            ", algorithm={}, qop=\"auth\"",
            self.algorithm.token()
        ));
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }
}

/// Recommended challenge order: MD5 first. Many UAs (SIPp, older desk phones) use only the
/// first challenge and know only MD5; SHA-256 is still offered for those that look further.
/// RFC 8760 order (strongest first) is `[Sha256, Md5]`; pass it where all clients cope.
pub const DEFAULT_CHALLENGE_ORDER: [Algorithm; 2] = [Algorithm::Md5, Algorithm::Sha256];

/// One rendered challenge per algorithm, in the order given (one header each).
pub fn challenge_header_values(
    realm: &str,
    nonce: &str,
    stale: bool,
    algorithms: &[Algorithm],
) -> Vec<String> {
    algorithms
        .iter()
        .map(|&algorithm| {
            Challenge {
                realm: realm.to_owned(),
                nonce: nonce.to_owned(),
                algorithm,
                stale,
                opaque: None,
            }
            .render()
        })
        .collect()
}

/// A quoted string with `"` and `\` escaped.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {

    #[test]
    fn our_answer_to_a_carriers_challenge_verifies() {
        for (alg, qop_offer) in [
            (Algorithm::Md5, ", qop=\"auth,auth-int\""),
            (Algorithm::Sha256, ", qop=\"auth\""),
            (Algorithm::Md5, ""),
        ] {
            let value = format!(
                "Digest realm=\"carrier.test\", nonce=\"abc\", opaque=\"op\", algorithm={}{qop_offer}",
                alg.token()
            );
            let (ch, qop) = parse_challenge(value.as_bytes()).unwrap();
            assert_eq!(ch.realm, "carrier.test");
            assert_eq!(qop, !qop_offer.is_empty());
            let ha1 = ha1_hex(alg, "0536321000", "carrier.test", "pw");
            let answer = answer_challenge(
                &ch,
                qop,
                "0536321000",
                &ha1,
                "REGISTER",
                "sip:carrier.test",
                "c1",
                1,
            );
            let creds = parse_credentials(answer.as_bytes()).unwrap();
            assert_eq!(creds.opaque.as_deref(), Some("op"));
            assert!(verify(&creds, "REGISTER", &ha1), "{answer}");
            assert!(!verify(&creds, "INVITE", &ha1));
        }
        assert!(parse_challenge(b"Digest nonce=\"x\"").is_err());
        assert!(parse_challenge(b"Digest realm=\"r\", nonce=\"x\", algorithm=MD5-sess").is_err());
    }

    use super::*;
    use proptest::prelude::*;

    fn rfc7616(alg: &str, response: &str) -> String {
        format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
             algorithm={alg}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
             cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
             response=\"{response}\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
    }

    #[test]
    fn rfc7616_vectors() {
        for (alg, algorithm, response) in [
            ("MD5", Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let creds = parse_credentials(rfc7616(alg, response).as_bytes()).unwrap();
            assert_eq!(creds.algorithm, Some(algorithm));
            let ha1 = ha1_hex(
                algorithm,
                "Mufasa",
                "http-auth@example.org",
                "Circle of Life",
            );
            assert!(verify(&creds, "GET", &ha1), "{alg}");
            assert!(!verify(&creds, "POST", &ha1), "{alg}");
            let wrong = ha1_hex(
                algorithm,
                "Mufasa",
                "http-auth@example.org",
                "circle of life",
            );
            assert!(!verify(&creds, "GET", &wrong), "{alg}");
        }
    }

    #[test]
    fn rfc2617_example_without_algorithm_is_md5() {
        let value = "Digest username=\"Mufasa\",\r\n realm=\"testrealm@host.com\",\r\n\t\
            nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
            nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
            opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"";
        let creds = parse_credentials(value.as_bytes()).unwrap();
        assert_eq!(creds.algorithm, None);
        assert_eq!(creds.hash_algorithm(), Algorithm::Md5);
        assert_eq!(creds.nc.map(|n| n.value()), Some(1));
        assert_eq!(
            creds.opaque.as_deref(),
            Some("5ccc069c403ebaf9f0171e9517f40e41")
        );
        let ha1 = ha1_hex(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(verify(&creds, "GET", &ha1));
    }

    #[test]
    fn without_qop_uses_rfc2069_response() {
        let ha1 = ha1_hex(Algorithm::Md5, "100", "tambun", "pw");
        let ha2 = Algorithm::Md5.hash_hex(b"REGISTER:sip:tambun");
        let response = Algorithm::Md5.hash_hex(format!("{ha1}:abc:{ha2}").as_bytes());
        let value = format!(
            "Digest username=\"100\",realm=\"tambun\",nonce=\"abc\",uri=\"sip:tambun\",\
             response=\"{}\",nc=00000001",
            response.to_uppercase()
        );
        let creds = parse_credentials(value.as_bytes()).unwrap();
        assert_eq!((creds.qop, creds.nc), (None, None));
        assert!(verify(&creds, "REGISTER", &ha1));
    }

    #[test]
    fn sip_shaped_values() {
        let value = b"  dIgEsT USERNAME = \"al\\\"ice\\\\\" ,Realm=\"tambun\",,\r\n  NONCE=\"n\", \
            Uri=\"sip:200@tambun;transport=udp\", Response=\"00\", QOP=\"auth\", NC=0000000A, \
            CNonce=\"c, d\", userhash=false, x-vendor=\"\"";
        let creds = parse_credentials(value).unwrap();
        assert_eq!(creds.username, "al\"ice\\");
        assert_eq!(creds.uri, "sip:200@tambun;transport=udp");
        assert_eq!(creds.cnonce.as_deref(), Some("c, d"));
        assert_eq!(creds.qop, Some(Qop::Auth));
        let nc = creds.nc.unwrap();
        assert_eq!((nc.value(), nc.as_str()), (10, "0000000A"));
    }

    #[test]
    fn refusals() {
        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"0\"";
        let parse = |s: &str| parse_credentials(s.as_bytes());
        assert_eq!(
            parse("NoOneKnowsThisScheme a=b"),
            Err(AuthError::UnsupportedScheme)
        );
        assert_eq!(parse("Basic dTpw"), Err(AuthError::UnsupportedScheme));
        assert!(parse(&format!("Digest {base}")).is_ok());
        assert_eq!(parse("Digest "), Err(AuthError::MissingParam("username")));
        let many: String = (0..40).map(|i| format!(", x{i}=1")).collect();
        assert!(matches!(
            parse(&format!("Digest {base}{many}")),
            Err(AuthError::Malformed(_))
        ));
        for missing in ["username", "realm", "nonce", "uri", "response"] {
            let without: Vec<_> = base
                .split(", ")
                .filter(|p| !p.starts_with(missing))
                .collect();
            let err = parse(&format!("Digest {}", without.join(", "))).unwrap_err();
            assert_eq!(err, AuthError::MissingParam(missing));
        }
        assert_eq!(
            parse(&format!("Digest {base}, Realm=\"x\"")),
            Err(AuthError::DuplicateParam("realm".into()))
        );
        assert_eq!(
            parse(&format!("Digest {base}, algorithm=MD5-sess")),
            Err(AuthError::UnsupportedAlgorithm("MD5-sess".into()))
        );
        let err = parse(&format!(
            "Digest {base}, qop=auth-int, nc=00000001, cnonce=\"c\""
        ));
        assert_eq!(err, Err(AuthError::UnsupportedQop("auth-int".into())));
        assert_eq!(err.unwrap_err().status_code(), 401);
        assert_eq!(
            parse(&format!("Digest {base}, qop=auth, nc=00000001")),
            Err(AuthError::MissingParam("cnonce"))
        );
        for nc in ["0000001", "000000001", "0000000g", "+0000001"] {
            let value = format!("Digest {base}, qop=auth, cnonce=\"c\", nc={nc}");
            assert_eq!(parse(&value), Err(AuthError::BadNonceCount), "{nc}");
        }
        for bad in [
            "",
            "Digest username",
            "Digest username=",
            "Digest username=\"unterminated",
            "Digest username=\"u\\",
            "Digest username=\"u\" realm=\"r\"",
            "Digest username=\"u\",\r\nrealm=\"r\"",
            "Digest username=\"u\",\rrealm=\"r\"",
            "Digest=x",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, AuthError::Malformed(_)), "{bad:?}: {err}");
            assert_eq!(err.status_code(), 400);
        }
    }

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn nonces_verify_themselves() {
        let key = NonceKey::new(SECRET);
        let nonce = key.make_nonce(1_000);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_ne!(
            nonce,
            key.make_nonce(1_000),
            "each challenge gets its own nonce"
        );
        assert_eq!(
            key.check_nonce(&nonce, 1_000, 300),
            NonceCheck::Valid { issued: 1_000 }
        );
        assert_eq!(
            key.check_nonce(&nonce, 1_300, 300),
            NonceCheck::Valid { issued: 1_000 }
        );
        assert_eq!(key.check_nonce(&nonce, 1_301, 300), NonceCheck::Stale);
        assert_eq!(
            key.check_nonce(&nonce, 995, 300),
            NonceCheck::Valid { issued: 1_000 }
        );
        assert_eq!(key.check_nonce(&nonce, 994, 300), NonceCheck::Invalid);
        let other = NonceKey::new([8; 32]);
        assert_eq!(other.check_nonce(&nonce, 1_000, 300), NonceCheck::Invalid);
        assert!(format!("{key:?}").contains("<secret>"));

        // Moving the timestamp forward or flipping any digit breaks the MAC.
        let forged = format!("{:016x}{}", 1_200, &nonce[16..]);
        assert_eq!(key.check_nonce(&forged, 1_300, 300), NonceCheck::Invalid);
        for i in 0..nonce.len() {
            let mut b = nonce.clone().into_bytes();
            b[i] = if b[i] == b'0' { b'1' } else { b'0' };
            let tampered = String::from_utf8(b).unwrap();
            assert_eq!(
                key.check_nonce(&tampered, 1_000, 300),
                NonceCheck::Invalid,
                "{i}"
            );
        }
        let bad_shapes = [
            String::new(),
            nonce[1..].to_owned(),
            format!("{nonce}0"),
            nonce.to_uppercase(),
            format!("{}z", &nonce[1..]),
            "é".repeat(32),
        ];
        for bad in bad_shapes {
            assert_eq!(
                key.check_nonce(&bad, 1_000, 300),
                NonceCheck::Invalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn nonce_counts_refuse_replays() {
        let mut counts = NonceCounts::new(10);
        assert!(counts.accept("a", 1, 100));
        assert!(!counts.accept("a", 1, 100), "replay");
        assert!(counts.accept("a", 2, 100));
        assert!(counts.accept("a", 5, 100), "gaps are fine");
        assert!(!counts.accept("a", 4, 100), "going back is not");
        assert!(!counts.accept("b", 0, 100), "nc starts at 1");
        assert!(counts.accept("b", 1, 200));
        counts.prune(150);
        assert_eq!(counts.len(), 1);
        assert!(!counts.accept("a", 6, 100), "pruned nonces stay refused");
        assert!(counts.accept("b", 2, 200));
        assert!(counts.accept("c", 1, 150));
    }

    #[test]
    fn nonce_counts_are_bounded() {
        let mut counts = NonceCounts::new(2);
        assert!(counts.accept("a", 1, 10));
        assert!(counts.accept("b", 1, 20));
        assert!(!counts.accept("old", 1, 5), "older than everything tracked");
        assert!(counts.accept("c", 1, 30));
        assert_eq!(counts.len(), 2);
        assert!(
            !counts.accept("a", 1, 10),
            "an evicted nonce must not look fresh"
        );
        assert!(counts.accept("b", 2, 20));
    }

    #[test]
    fn challenges_render() {
        let challenge = Challenge {
            realm: "tam\"bun".into(),
            nonce: "n".into(),
            algorithm: Algorithm::Sha256,
            stale: true,
            opaque: Some("o".into()),
        };
        assert_eq!(
            challenge.render(),
            "Digest realm=\"tam\\\"bun\", nonce=\"n\", opaque=\"o\", algorithm=SHA-256, \
             qop=\"auth\", stale=true"
        );
        assert_eq!(
            challenge_header_values("tambun", "n", false, &DEFAULT_CHALLENGE_ORDER),
            [
                "Digest realm=\"tambun\", nonce=\"n\", algorithm=MD5, qop=\"auth\"",
                "Digest realm=\"tambun\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\"",
            ]
        );
    }

    #[test]
    fn full_round_trip() {
        let key = NonceKey::new(SECRET);
        let nonce = key.make_nonce(1_000);
        let ha1 = ha1_hex(Algorithm::Sha256, "100", "tambun", "secret");
        let ha2 = Algorithm::Sha256.hash_hex(b"REGISTER:sip:tambun");
        let response =
            Algorithm::Sha256.hash_hex(format!("{ha1}:{nonce}:00000001:xyz:auth:{ha2}").as_bytes());
        let value = format!(
            "Digest username=\"100\", realm=\"tambun\", nonce=\"{nonce}\", uri=\"sip:tambun\", \
             response=\"{response}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"xyz\""
        );
        let creds = parse_credentials(value.as_bytes()).unwrap();
        let NonceCheck::Valid { issued } = key.check_nonce(&creds.nonce, 1_010, 300) else {
            panic!("nonce should be valid");
        };
        assert!(verify(&creds, "REGISTER", &ha1));
        let mut counts = NonceCounts::new(16);
        let nc = creds.nc.unwrap().value();
        assert!(counts.accept(&creds.nonce, nc, issued));
        assert!(!counts.accept(&creds.nonce, nc, issued));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_credentials(&bytes);
            let _ = NonceKey::new(SECRET).check_nonce(&String::from_utf8_lossy(&bytes), 0, 1);
        }

        #[test]
        fn digest_shaped_garbage_never_panics(tail in "[ -~\\r\\n\\t]{0,120}") {
            let _ = parse_credentials(format!("Digest {tail}").as_bytes());
            let _ = parse_credentials(format!("Digest username=\"{tail}").as_bytes());
        }
    }
}
