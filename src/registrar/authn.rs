//! Digest authentication of requests from extensions (REGISTER now, INVITE and friends for the
//! proxy): picks the credentials for our realm, checks the self-verifying nonce, the response
//! against the stored HA1 and the nonce-count against replay, and decides which challenge to
//! send. An unknown or disabled extension is verified against a dummy HA1, so it costs the same
//! and is answered exactly like a wrong password.
//!
//! Sans-IO: the caller passes the wall-clock seconds; no clock reads, no I/O.

use crate::sip::auth::{self, Algorithm, NonceCheck, NonceCounts, NonceKey};
use crate::sip::message::{HeaderName, Message};
use crate::types::Extension;

use super::accounts::Accounts;

/// What authentication decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The request carries valid, fresh credentials of this enabled extension.
    Authenticated(Extension),
    /// Answer 401/407 with a fresh challenge; `stale` when the password was right but the nonce
    /// expired (RFC 7616 §3.3), so the phone retries without asking its user. `failed` when
    /// credentials with one of our nonces (fresh or expired) did not verify: a wrong password
    /// or an unknown extension, counted alike by the guard. A missing or foreign nonce (e.g.
    /// one from before a restart) and a replayed nonce-count are not failures: they reveal
    /// nothing about the password.
    Challenge { stale: bool, failed: bool },
}

/// Authentication settings and state (nonce key, nonce-count table).
pub struct Authenticator {
    realm: String,
    key: NonceKey,
    counts: NonceCounts,
    nonce_lifetime: u64,
    algorithms: Vec<Algorithm>,
    /// User-Agent substrings (lowercase) of clients that fail on any non-MD5 challenge: they
    /// are challenged with MD5 alone.
    md5_only: Vec<String>,
}

/// Stands in for the HA1 of an unknown extension so verification takes the same path.
const DUMMY_HA1: &str = "00000000000000000000000000000000";

impl Authenticator {
    pub fn new(realm: String, key: NonceKey, nonce_lifetime_secs: u64) -> Authenticator {
        Authenticator {
            realm,
            key,
            counts: NonceCounts::new(200_000),
            nonce_lifetime: nonce_lifetime_secs,
            algorithms: auth::DEFAULT_CHALLENGE_ORDER.to_vec(),
            md5_only: Vec::new(),
        }
    }

    /// Which algorithms to challenge with, in order, and the User-Agents (substrings,
    /// case-insensitive) that get MD5 only.
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>, md5_only: Vec<String>) -> Self {
        if !algorithms.is_empty() {
            self.algorithms = algorithms;
        }
        self.md5_only = md5_only
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        self
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Checks the credentials in `header` (Authorization or Proxy-Authorization).
    pub fn check(
        &mut self,
        req: &Message,
        header: HeaderName,
        accounts: &Accounts,
        now_unix: u64,
    ) -> Verdict {
        let method = req.method().map(|m| m.as_str()).unwrap_or("");
        let creds = req
            .headers_named(header)
            .filter_map(|h| auth::parse_credentials(req.slice(h.value)).ok())
            .find(|c| c.realm == self.realm);
        let Some(creds) = creds else {
            return Verdict::Challenge {
                stale: false,
                failed: false,
            };
        };
        let account = creds
            .username
            .parse::<Extension>()
            .ok()
            .and_then(|e| accounts.get(&e))
            .filter(|a| a.enabled);
        let ha1 = match (account, creds.hash_algorithm()) {
            (Some(a), Algorithm::Md5) => a.ha1_md5.as_str(),
            (Some(a), Algorithm::Sha256) => a.ha1_sha256.as_str(),
            (None, _) => DUMMY_HA1,
        };
        let verified = auth::verify(&creds, method, ha1) && account.is_some();
        match self
            .key
            .check_nonce(&creds.nonce, now_unix, self.nonce_lifetime)
        {
            NonceCheck::Invalid => Verdict::Challenge {
                stale: false,
                failed: false,
            },
            NonceCheck::Stale => Verdict::Challenge {
                stale: verified,
                failed: !verified,
            },
            NonceCheck::Valid { issued } => {
                if !verified {
                    return Verdict::Challenge {
                        stale: false,
                        failed: true,
                    };
                }
                // Without qop there is no nonce-count: the nonce is then good for one use.
                let nc = creds.nc.as_ref().map_or(1, |n| n.value());
                if !self.counts.accept(&creds.nonce, nc, issued) {
                    return Verdict::Challenge {
                        stale: false,
                        failed: false,
                    };
                }
                match account {
                    Some(a) => Verdict::Authenticated(a.extension.clone()),
                    None => Verdict::Challenge {
                        stale: false,
                        failed: true,
                    },
                }
            }
        }
    }

    /// Checks a password given in the clear (HTTP Basic over HTTPS, the softphone page's
    /// API) against the stored MD5 HA1. An unknown or disabled extension costs the same work
    /// and gets the same `None` as a wrong password.
    pub fn check_password(
        &self,
        username: &str,
        password: &str,
        accounts: &Accounts,
    ) -> Option<Extension> {
        let account = username
            .parse::<Extension>()
            .ok()
            .and_then(|e| accounts.get(&e))
            .filter(|a| a.enabled);
        let stored = account.map_or(DUMMY_HA1, |a| a.ha1_md5.as_str());
        let given = auth::ha1_hex(Algorithm::Md5, username, &self.realm, password);
        let same = given.len() == stored.len()
            && given
                .bytes()
                .zip(stored.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()))
                == 0;
        account.filter(|_| same).map(|a| a.extension.clone())
    }

    /// The challenge header lines (`WWW-Authenticate` or `Proxy-Authenticate`) for `req`, one
    /// per algorithm, with a fresh nonce.
    pub fn challenge(
        &mut self,
        req: &Message,
        proxy: bool,
        stale: bool,
        now_unix: u64,
    ) -> Vec<String> {
        let nonce = self.key.make_nonce(now_unix);
        let ua = req
            .header(HeaderName::UserAgent)
            .unwrap_or("")
            .to_ascii_lowercase();
        let md5_only = !ua.is_empty() && self.md5_only.iter().any(|q| ua.contains(q.as_str()));
        let algorithms: &[Algorithm] = if md5_only {
            &[Algorithm::Md5]
        } else {
            &self.algorithms
        };
        let name = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        auth::challenge_header_values(&self.realm, &nonce, stale, algorithms)
            .into_iter()
            .map(|v| format!("{name}: {v}"))
            .collect()
    }

    /// Forgets nonce-counts of nonces that can no longer be used.
    pub fn prune(&mut self, now_unix: u64) {
        self.counts
            .prune(now_unix.saturating_sub(self.nonce_lifetime));
    }
}
