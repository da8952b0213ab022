//! Logged-in operators: a table of sessions, keyed by the SHA-256 of the session id (the id
//! itself, 32 random bytes in hex, lives only in the operator's cookie), each with its CSRF
//! token, its operator and scope, and a fingerprint of the password hash it logged in with (a
//! password change or removal of the operator ends it). A session ends after [`IDLE`] without
//! a request, [`ABSOLUTE`] after login, or at logout. At most [`MAX_SESSIONS`]: a new one past
//! that evicts the oldest. In memory only: a restart of the switch logs everyone out.
//! Time is passed in (`Instant`); the ids and tokens are passed in (the runtime draws them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{constant_time_eq, OperatorName, Scope};

/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after its login, busy or not.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 60 * 60);
/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 1024;

/// One logged-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub operator: OperatorName,
    pub scope: Scope,
    /// The token every state-changing request must carry (`X-CSRF-Token`).
    pub csrf: String,
    /// [`fingerprint`] of the operator's password hash at login.
    pub hash_tag: String,
    created: Instant,
    last_seen: Instant,
}

impl Session {
    /// Does `given` match this session's CSRF token (constant time)?
    pub fn csrf_ok(&self, given: Option<&str>) -> bool {
        given.is_some_and(|g| constant_time_eq(g.as_bytes(), self.csrf.as_bytes()))
    }
}

/// A short, non-secret tag of a stored password hash: a session remembers it and ends when the
/// stored hash changes.
pub fn fingerprint(stored_hash: &str) -> String {
    hex::encode(&Sha256::digest(stored_hash.as_bytes())[..8])
}

type Key = [u8; 32];

fn key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

/// The sessions of the console.
#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<Key, Session>,
}

impl Sessions {
    pub fn new() -> Sessions {
        Sessions::default()
    }

    /// Starts a session `id` (the cookie's value) with its CSRF token.
    pub fn create(
        &mut self,
        id: &str,
        csrf: String,
        operator: OperatorName,
        scope: Scope,
        hash_tag: String,
        now: Instant,
    ) {
        self.purge(now);
        if self.map.len() >= MAX_SESSIONS {
            // The oldest login goes (an attacker with valid passwords is not the threat here;
            // a client that logs in in a loop is, and it evicts only its own kind).
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(k, s)| (s.created, **k))
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(
            key(id),
            Session {
                operator,
                scope,
                csrf,
                hash_tag,
                created: now,
                last_seen: now,
            },
        );
    }

    /// The live session `id`, marked as used at `now`; `None` (and the session is gone) when
    /// it expired, `None` when it never existed.
    pub fn touch(&mut self, id: &str, now: Instant) -> Option<&Session> {
        let k = key(id);
        let live = self.map.get(&k).is_some_and(|s| is_live(s, now));
        if !live {
            self.map.remove(&k);
            return None;
        }
        let s = self.map.get_mut(&k)?;
        s.last_seen = now;
        Some(s)
    }

    /// Ends session `id` (logout, or its operator changed).
    pub fn remove(&mut self, id: &str) {
        self.map.remove(&key(id));
    }

    /// Drops the expired sessions.
    pub fn purge(&mut self, now: Instant) {
        self.map.retain(|_, s| is_live(s, now));
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn is_live(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.last_seen) < IDLE
        && now.saturating_duration_since(s.created) < ABSOLUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(now: Instant) -> Sessions {
        let mut t = Sessions::new();
        t.create(
            "id-1",
            "csrf-1".into(),
            "admin".parse().unwrap(),
            Scope::All,
            fingerprint("h"),
            now,
        );
        t
    }

    #[test]
    fn idle_expiry() {
        let t0 = Instant::now();
        let mut t = table(t0);
        assert!(t
            .touch("id-1", t0 + IDLE - Duration::from_secs(1))
            .is_some());
        // Used just now: the idle time starts again.
        assert!(t
            .touch("id-1", t0 + IDLE + IDLE - Duration::from_secs(2))
            .is_some());
        assert!(t.touch("id-1", t0 + IDLE * 3).is_none());
        assert!(t.is_empty());
    }

    #[test]
    fn absolute_expiry() {
        let t0 = Instant::now();
        let mut t = table(t0);
        let mut now = t0;
        while now < t0 + ABSOLUTE - Duration::from_secs(60) {
            now += Duration::from_secs(600);
            assert!(t
                .touch("id-1", now.min(t0 + ABSOLUTE - Duration::from_secs(1)))
                .is_some());
        }
        assert!(t.touch("id-1", t0 + ABSOLUTE).is_none());
    }

    #[test]
    fn unknown_and_removed_sessions() {
        let t0 = Instant::now();
        let mut t = table(t0);
        assert!(t.touch("id-2", t0).is_none());
        t.remove("id-1");
        assert!(t.touch("id-1", t0).is_none());
    }

    #[test]
    fn csrf_check() {
        let t0 = Instant::now();
        let mut t = table(t0);
        let s = t.touch("id-1", t0).unwrap();
        assert!(s.csrf_ok(Some("csrf-1")));
        assert!(!s.csrf_ok(Some("csrf-2")));
        assert!(!s.csrf_ok(Some("csrf-")));
        assert!(!s.csrf_ok(Some("")));
        assert!(!s.csrf_ok(None));
    }

    #[test]
    fn the_table_is_bounded() {
        let t0 = Instant::now();
        let mut t = Sessions::new();
        for i in 0..MAX_SESSIONS + 10 {
            t.create(
                &format!("id-{i}"),
                "c".into(),
                "admin".parse().unwrap(),
                Scope::All,
                String::new(),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(t.len(), MAX_SESSIONS);
        let now = t0 + Duration::from_secs(1);
        assert!(t.touch("id-0", now).is_none());
        assert!(t.touch(&format!("id-{}", MAX_SESSIONS + 9), now).is_some());
    }

    #[test]
    fn fingerprints_differ() {
        assert_ne!(fingerprint("a"), fingerprint("b"));
        assert_eq!(fingerprint("a").len(), 16);
    }
}
