//! The location service: current contact bindings per extension, with expiry deadlines.
//!
//! Sans-IO and deterministic: time comes in as [`crate::types::Now`]; expiry is a deadline heap with lazy
//! deletion, so the driver sleeps until [`Location::poll_timeout`]. Every change is queued as a
//! [`Change`] for the durable copy in SQLite.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::Instant;

use crate::types::{Extension, Transport};

/// One contact binding of an extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// What identifies the binding for updates: `+sip.instance` (and `reg-id`) when the phone
    /// sends them (RFC 5626), otherwise the contact URI.
    pub key: String,
    /// The contact URI exactly as registered (escapes and URI parameters kept).
    pub uri: String,
    /// Contact header parameters other than `expires`, as written (`;q=0.5;+sip.instance=…`).
    pub params: String,
    pub instance: Option<String>,
    pub reg_id: Option<u32>,
    pub source: SocketAddr,
    pub transport: Transport,
    /// The connection a stream-transport binding came in on.
    pub conn: Option<u64>,
    pub user_agent: String,
    pub call_id: String,
    pub cseq: u32,
    pub expires_at: Instant,
    pub expires_unix: i64,
}

impl Binding {
    /// Seconds left at `now` (0 once expired).
    pub fn seconds_left(&self, now: Instant) -> u64 {
        self.expires_at.saturating_duration_since(now).as_secs()
    }

    /// The Contact header value listing this binding (`<uri>;params;expires=N`).
    pub fn contact_value(&self, now: Instant) -> String {
        format!(
            "<{}>{};expires={}",
            self.uri,
            self.params,
            self.seconds_left(now)
        )
    }
}

/// A change to the bindings, for the durable copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Upsert(Extension, Box<Binding>),
    Remove { extension: Extension, key: String },
    RemoveAll { extension: Extension },
}

/// Bindings by extension.
#[derive(Default)]
pub struct Location {
    by_ext: HashMap<Extension, Vec<Binding>>,
    /// Contact URI → extension, to route in-dialog requests to the binding's real source
    /// (phones behind NAT register contacts they cannot be reached at).
    by_uri: HashMap<String, Extension>,
    deadlines: BinaryHeap<Reverse<(Instant, Extension, String)>>,
    changes: Vec<Change>,
    count: usize,
}

impl Location {
    pub fn new() -> Location {
        Location::default()
    }

    pub fn bindings(&self, ext: &Extension) -> &[Binding] {
        self.by_ext.get(ext).map_or(&[], Vec::as_slice)
    }

    /// The binding whose contact URI is exactly `uri`.
    pub fn find_by_uri(&self, uri: &str) -> Option<&Binding> {
        let ext = self.by_uri.get(uri)?;
        self.bindings(ext).iter().find(|b| b.uri == uri)
    }

    /// Every binding, ordered by extension then key (deterministic for listings).
    pub fn all(&self) -> Vec<(&Extension, &Binding)> {
        let mut v: Vec<_> = self
            .by_ext
            .iter()
            .flat_map(|(e, bs)| bs.iter().map(move |b| (e, b)))
            .collect();
        v.sort_by(|a, b| (a.0, &a.1.key).cmp(&(b.0, &b.1.key)));
        v
    }

    /// Each registered extension and its number of bindings (any order).
    pub fn per_extension(&self) -> impl Iterator<Item = (&Extension, usize)> {
        self.by_ext.iter().map(|(e, bs)| (e, bs.len()))
    }

    /// Number of bindings.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Inserts or replaces the binding with the same key. `record` is false when restoring
    /// from the store (no change to write back).
    pub fn upsert(&mut self, ext: &Extension, binding: Binding, record: bool) {
        self.deadlines.push(Reverse((
            binding.expires_at,
            ext.clone(),
            binding.key.clone(),
        )));
        if record {
            self.changes
                .push(Change::Upsert(ext.clone(), Box::new(binding.clone())));
        }
        // Most extensions have one phone: do not let Vec start at capacity 4 (~1 KiB).
        self.by_uri.insert(binding.uri.clone(), ext.clone());
        let list = self
            .by_ext
            .entry(ext.clone())
            .or_insert_with(|| Vec::with_capacity(1));
        match list.iter_mut().find(|b| b.key == binding.key) {
            Some(slot) => *slot = binding,
            None => {
                list.push(binding);
                self.count += 1;
            }
        }
    }

    pub fn remove(&mut self, ext: &Extension, key: &str) {
        if let Some(list) = self.by_ext.get_mut(ext) {
            let before = list.len();
            for b in list.iter().filter(|b| b.key == key) {
                self.by_uri.remove(&b.uri);
            }
            list.retain(|b| b.key != key);
            if list.len() < before {
                self.count -= before - list.len();
                self.changes.push(Change::Remove {
                    extension: ext.clone(),
                    key: key.to_string(),
                });
            }
            if list.is_empty() {
                self.by_ext.remove(ext);
            }
        }
    }

    /// Removes every binding that came in over connection `conn` (a browser's WebSocket that
    /// closed: nothing can reach it any more, RFC 5626 §5.2's flow failure). Returns how many.
    pub fn remove_conn(&mut self, conn: u64) -> usize {
        let gone: Vec<(Extension, String)> = self
            .by_ext
            .iter()
            .flat_map(|(ext, list)| {
                list.iter()
                    .filter(|b| b.conn == Some(conn))
                    .map(move |b| (ext.clone(), b.key.clone()))
            })
            .collect();
        for (ext, key) in &gone {
            self.remove(ext, key);
        }
        gone.len()
    }

    pub fn remove_all(&mut self, ext: &Extension) {
        if let Some(list) = self.by_ext.remove(ext) {
            self.count -= list.len();
            for b in &list {
                self.by_uri.remove(&b.uri);
            }
        }
        self.changes.push(Change::RemoveAll {
            extension: ext.clone(),
        });
    }

    /// Extensions that have at least one binding.
    pub fn extensions(&self) -> Vec<Extension> {
        let mut v: Vec<_> = self.by_ext.keys().cloned().collect();
        v.sort();
        v
    }

    /// The earliest expiry, for the driver's timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Drops bindings whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, _, _))) = self.deadlines.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((_, ext, key))) = self.deadlines.pop() else {
                break;
            };
            let expired = self
                .bindings(&ext)
                .iter()
                .any(|b| b.key == key && b.expires_at <= now);
            if expired {
                self.remove(&ext, &key);
            }
        }
        // Lazy deletion leaves stale heap entries behind; rebuild when they dominate.
        if self.deadlines.len() > 2 * self.count + 1024 {
            let live: Vec<_> = self
                .by_ext
                .iter()
                .flat_map(|(e, bs)| {
                    bs.iter()
                        .map(move |b| Reverse((b.expires_at, e.clone(), b.key.clone())))
                })
                .collect();
            self.deadlines = BinaryHeap::from(live);
        }
    }

    /// Takes every pending change for the store.
    pub fn drain_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }
}
