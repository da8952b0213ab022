//! The guard: flood, brute-force and scanner defence, decided per source address before the
//! switch spends work on a request (DESIGN item "hardening"; `docs/operations.md` "Guard").
//!
//! It owns, per source ([`SourceKey`]: an IPv4 address or an IPv6 /64), three token buckets
//! (requests, failed authentications, requests it had to drop for rate), the ban list (loaded
//! from the store, extended by itself), the allow-list of networks that are never banned or
//! rate limited, the scanner User-Agent list and the overload rule (503 when the switch is
//! saturated). Sans-IO: time comes in as [`Now`], bans it adds go out through
//! [`Guard::drain_new_bans`] for the store; no sockets, no clock, no database.
//!
//! Decisions (see `docs/decisions.md`): banned sources and scanner User-Agents are dropped
//! silently; a source over its request rate is dropped silently too (an answer would cost work
//! and tell a flooder it is heard; a phone retransmits), and one that keeps flooding is banned;
//! the 10th failed authentication within a minute bans the source. Unknown extensions and
//! wrong passwords count alike.

mod bucket;
mod cidr;
mod source;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub use bucket::{Rate, TokenBucket};
pub use cidr::{Cidr, InvalidCidr};
pub use source::SourceKey;

use crate::types::Now;
use serde::Deserialize;

/// How often idle sources are forgotten and expired bans lifted.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// A ban the switch added stays in memory this long even when a ban list read from the store
/// (which may predate the write) does not have it yet.
const OWN_BAN_GRACE: Duration = Duration::from_secs(5);

/// One banned source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ban {
    /// The source's [`SourceKey::ip`]: an IPv4 address, or the first address of an IPv6 /64.
    pub address: IpAddr,
    /// Why: `auth-failures`, `flood`, `scanner`, or the operator's text.
    pub reason: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None`: until removed.
    pub expires_at: Option<i64>,
}

impl Ban {
    pub fn is_active(&self, now_unix: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now_unix)
    }
}

/// What to do with a request that passed the source check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Pass,
    /// Drop without any answer.
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Banned,
    Scanner,
    RateLimited,
}

/// What the guard counted since start (for logs and `/metrics`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct GuardStats {
    /// Failed authentications (wrong password or unknown extension), every source.
    pub auth_failures: u64,
    /// In-dialog requests (and CANCELs) refused because no dialog of the switch has them.
    pub dialogs_refused: u64,
    /// Bans the switch added (auth failures, forged dialogs, flood, scanner).
    pub bans_added: u64,
    /// Messages dropped because their source is banned.
    pub dropped_banned: u64,
    /// Requests dropped for a scanner User-Agent.
    pub dropped_scanner: u64,
    /// Requests dropped for being over their source's rate.
    pub dropped_rate_limited: u64,
    /// New INVITE/REGISTER answered 503 because the switch was saturated.
    pub overload_rejected: u64,
}

/// The numbers of `[guard]`, ready for use.
#[derive(Debug, Clone)]
struct Limits {
    requests: Rate,
    auth_failures: Rate,
    flood: Rate,
    ban: Duration,
    ban_scanners: bool,
    max_transactions: usize,
    max_queue: usize,
    retry_after: u32,
    max_sources: usize,
}

struct Source {
    requests: TokenBucket,
    auth_failures: TokenBucket,
    dropped: TokenBucket,
    last_seen: Instant,
}

/// The guard's settings, read from the `[guard]` table of the configuration: per-source
/// limits, bans, the allow-list and the overload rule (`docs/operations.md`, "Guard").
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// false: no limits, no bans, no scanner filter (for lab use only).
    pub enabled: bool,
    /// Networks (CIDR or single addresses) that are never banned or rate limited: the OPDs'
    /// own subnets.
    pub allow: Vec<String>,
    /// Requests per second one source may send, sustained.
    pub requests_per_sec: u32,
    /// Requests one source may send at once above the sustained rate.
    pub request_burst: u32,
    /// This many failed authentications from one source within `auth_window_secs` ban it.
    pub auth_failures: u32,
    /// The window of `auth_failures` and `flood_drops`.
    pub auth_window_secs: u64,
    /// This many requests dropped for rate from one source within the window ban it.
    pub flood_drops: u32,
    /// How long a ban the switch adds lasts.
    pub ban_secs: u64,
    /// Ban a source whose request carries a scanner User-Agent (it is dropped either way).
    pub ban_scanners: bool,
    /// User-Agent substrings (case-insensitive) of SIP scanners: such requests get no answer.
    pub scanner_user_agents: Vec<String>,
    /// With this many server transactions in progress, new INVITE/REGISTER get 503.
    pub max_transactions: usize,
    /// With this many inputs waiting in the driver's queue, new INVITE/REGISTER get 503.
    pub max_queue: usize,
    /// The `Retry-After` of those 503s, in seconds.
    pub retry_after_secs: u32,
    /// Sources tracked at most (memory bound under a flood from many addresses).
    pub max_sources: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: true,
            allow: Vec::new(),
            requests_per_sec: 50,
            request_burst: 200,
            auth_failures: 10,
            auth_window_secs: 60,
            flood_drops: 200,
            ban_secs: 600,
            ban_scanners: true,
            // After the lists of Kamailio's and OpenSIPS' sample configs and fail2ban's.
            scanner_user_agents: [
                "friendly-scanner",
                "friendly-request",
                "sipvicious",
                "sipcli",
                "sip-scan",
                "sipscan",
                "vaxsipuseragent",
                "vaxipuseragent",
                "iwar",
                "sundayddr",
                "siparmyknife",
                "sivus",
                "pplsip",
            ]
            .map(str::to_owned)
            .to_vec(),
            max_transactions: 200_000,
            max_queue: 8_192,
            retry_after_secs: 5,
            max_sources: 100_000,
        }
    }
}

pub struct Guard {
    enabled: bool,
    limits: Limits,
    allow: Vec<Cidr>,
    scanners: Vec<String>,
    sources: HashMap<SourceKey, Source>,
    bans: HashMap<SourceKey, Ban>,
    own_recent: Vec<(SourceKey, Instant)>,
    new_bans: Vec<Ban>,
    queue_depth: usize,
    next_sweep: Option<Instant>,
    pub stats: GuardStats,
}

impl Guard {
    pub fn new(config: &Settings) -> Result<Guard, InvalidCidr> {
        let allow = config
            .allow
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Cidr>, _>>()?;
        Ok(Guard {
            enabled: config.enabled,
            limits: Limits {
                requests: Rate {
                    capacity: f64::from(config.request_burst.max(1)),
                    per_sec: f64::from(config.requests_per_sec.max(1)),
                },
                auth_failures: Rate::per_window(config.auth_failures, config.auth_window_secs),
                flood: Rate::per_window(config.flood_drops, config.auth_window_secs),
                ban: Duration::from_secs(config.ban_secs),
                ban_scanners: config.ban_scanners,
                max_transactions: config.max_transactions,
                max_queue: config.max_queue,
                retry_after: config.retry_after_secs,
                max_sources: config.max_sources,
            },
            allow,
            scanners: config
                .scanner_user_agents
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect(),
            sources: HashMap::new(),
            bans: HashMap::new(),
            own_recent: Vec::new(),
            new_bans: Vec::new(),
            queue_depth: 0,
            next_sweep: None,
            stats: GuardStats::default(),
        })
    }

    /// A guard that lets everything through (tests of other layers).
    pub fn disabled() -> Guard {
        let mut g = Guard::new(&Settings::default()).expect("the default allow-list is empty");
        g.enabled = false;
        g
    }

    /// The networks that are never banned or rate limited (`guard.allow`).
    pub fn allow_list(&self) -> &[Cidr] {
        &self.allow
    }

    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|c| c.contains(ip))
    }

    /// The first check, on the source address alone (before parsing): true means drop.
    pub fn drop_source(&mut self, ip: IpAddr, now: Now) -> bool {
        let banned = self.is_banned(ip, now);
        self.stats.dropped_banned += u64::from(banned);
        banned
    }

    /// Whether `ip` is banned now (nothing counted): its source is, and the address itself is
    /// not allow-listed (an allowed IPv6 address keeps working when its /64 is banned).
    pub fn is_banned(&self, ip: IpAddr, now: Now) -> bool {
        self.enabled
            && self
                .bans
                .get(&SourceKey::of(ip))
                .is_some_and(|b| b.is_active(now.unix as i64))
            && !self.is_allowed(ip)
    }

    /// A request (parsed) from `ip` with this User-Agent: pass it on, or drop it.
    pub fn admit_request(&mut self, ip: IpAddr, user_agent: Option<&str>, now: Now) -> Admission {
        if !self.enabled {
            return Admission::Pass;
        }
        if let Some(ua) = user_agent.filter(|ua| self.is_scanner(ua)) {
            self.stats.dropped_scanner += 1;
            let key = SourceKey::of(ip);
            if self.limits.ban_scanners && !self.is_allowed(ip) && !self.bans.contains_key(&key) {
                let reason = format!("scanner User-Agent '{}'", printable(ua, 60));
                self.ban(key, reason, now);
            }
            return Admission::Drop(DropReason::Scanner);
        }
        if self.is_allowed(ip) {
            return Admission::Pass;
        }
        let limits = self.limits.clone();
        let key = SourceKey::of(ip);
        let Some(src) = self.source(key, now.instant) else {
            return Admission::Pass;
        };
        if src.requests.take(limits.requests, now.instant) {
            return Admission::Pass;
        }
        let flooding = src.dropped.take_exhausts(limits.flood, now.instant);
        self.stats.dropped_rate_limited += 1;
        if flooding {
            self.ban(key, "flood".to_string(), now);
        }
        Admission::Drop(DropReason::RateLimited)
    }

    /// Credentials from `ip` failed (wrong password or unknown extension): counted, and the
    /// source banned when that makes too many within the window.
    pub fn handle_auth_failure(&mut self, ip: IpAddr, now: Now) {
        self.stats.auth_failures += 1;
        self.count_failure(ip, "auth-failures", now);
    }

    /// A request from `ip` claimed a dialog the switch did not set up (or came from outside
    /// it): counted against the source like a failed authentication, in the same window.
    pub fn handle_forged_dialog(&mut self, ip: IpAddr, now: Now) {
        self.stats.dialogs_refused += 1;
        self.count_failure(ip, "forged-dialog", now);
    }

    fn count_failure(&mut self, ip: IpAddr, reason: &str, now: Now) {
        if !self.enabled || self.is_allowed(ip) {
            return;
        }
        let rate = self.limits.auth_failures;
        let key = SourceKey::of(ip);
        let Some(src) = self.source(key, now.instant) else {
            return;
        };
        if src.auth_failures.take_exhausts(rate, now.instant) {
            self.ban(key, reason.to_string(), now);
        }
    }

    /// The ban list from the store (at start, and after every change another connection made:
    /// `tambun ban add|rm`). It replaces the list in memory, except for bans this guard added
    /// moments ago, which the list may predate. Allow-listed addresses are never banned. An
    /// IPv6 address in the list bans its /64.
    pub fn handle_bans(&mut self, list: Vec<Ban>, now: Now) {
        let mut bans: HashMap<SourceKey, Ban> = HashMap::new();
        for mut b in list {
            if self.is_allowed(b.address) {
                tracing::warn!(
                    target: "tambun::guard",
                    "ban of {} ignored: the address is in guard.allow",
                    b.address
                );
                continue;
            }
            let key = SourceKey::of(b.address);
            b.address = key.ip();
            bans.insert(key, b);
        }
        self.own_recent
            .retain(|(_, at)| now.instant < *at + OWN_BAN_GRACE);
        for (key, _) in &self.own_recent {
            if let Some(b) = self.bans.get(key) {
                bans.entry(*key).or_insert_with(|| b.clone());
            }
        }
        self.bans = bans;
    }

    /// Bans added since the last call, for the store.
    pub fn drain_new_bans(&mut self) -> Vec<Ban> {
        std::mem::take(&mut self.new_bans)
    }

    /// The depth of the driver's input queue, measured by the driver once per batch.
    pub fn handle_queue_depth(&mut self, depth: usize) {
        self.queue_depth = depth;
    }

    /// Is the switch saturated, so that a new INVITE or REGISTER should get 503? `transactions`
    /// is the number of server transactions held.
    pub fn overloaded(&self, transactions: usize) -> bool {
        self.enabled
            && (transactions >= self.limits.max_transactions
                || self.queue_depth >= self.limits.max_queue)
    }

    /// Counts one 503 for overload and returns its `Retry-After` header line.
    pub fn overload_rejected(&mut self) -> String {
        self.stats.overload_rejected += 1;
        format!("Retry-After: {}", self.limits.retry_after)
    }

    /// Bans in force now.
    pub fn bans_active(&self, now_unix: u64) -> usize {
        self.bans
            .values()
            .filter(|b| b.is_active(now_unix as i64))
            .count()
    }

    /// Sources with state (for logs).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    pub fn handle_timeout(&mut self, now: Now) {
        if self.next_sweep.is_some_and(|t| now.instant < t) {
            return;
        }
        self.next_sweep = Some(now.instant + SWEEP_EVERY);
        // A source idle for longer than its slowest bucket takes to refill has full buckets:
        // forgetting it changes nothing.
        let idle = Duration::from_secs_f64(
            [
                self.limits.requests.refill_secs(),
                self.limits.auth_failures.refill_secs(),
                self.limits.flood.refill_secs(),
            ]
            .into_iter()
            .fold(1.0, f64::max),
        );
        self.sources
            .retain(|_, s| now.instant.saturating_duration_since(s.last_seen) < idle);
        let unix = now.unix as i64;
        self.bans.retain(|key, b| {
            let keep = b.is_active(unix);
            if !keep {
                tracing::info!(target: "tambun::guard", "ban of {key} expired");
            }
            keep
        });
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.sources.is_empty() && self.bans.is_empty() {
            return None;
        }
        self.next_sweep
    }

    fn is_scanner(&self, user_agent: &str) -> bool {
        if self.scanners.is_empty() {
            return false;
        }
        let ua = user_agent.to_ascii_lowercase();
        self.scanners.iter().any(|s| ua.contains(s.as_str()))
    }

    /// The state of `key`, created on first sight; `None` when the table is full (a flood
    /// from very many sources), so memory stays bounded and such sources pass unmetered.
    fn source(&mut self, key: SourceKey, now: Instant) -> Option<&mut Source> {
        let limits = &self.limits;
        if self.sources.len() >= limits.max_sources && !self.sources.contains_key(&key) {
            return None;
        }
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now + SWEEP_EVERY);
        }
        let src = self.sources.entry(key).or_insert_with(|| Source {
            requests: TokenBucket::full(limits.requests, now),
            auth_failures: TokenBucket::full(limits.auth_failures, now),
            dropped: TokenBucket::full(limits.flood, now),
            last_seen: now,
        });
        src.last_seen = now;
        Some(src)
    }

    fn ban(&mut self, key: SourceKey, reason: String, now: Now) {
        let secs = self.limits.ban.as_secs();
        tracing::warn!(
            target: "tambun::guard",
            "banned {key} for {secs} s: {reason}"
        );
        let ban = Ban {
            address: key.ip(),
            reason,
            created_at: now.unix as i64,
            expires_at: Some(now.unix as i64 + secs as i64),
        };
        self.stats.bans_added += 1;
        self.bans.insert(key, ban.clone());
        self.own_recent.push((key, now.instant));
        self.new_bans.push(ban);
        self.sources.remove(&key);
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.instant + SWEEP_EVERY);
        }
    }
}

/// At most `max` characters of network text, control characters replaced (for log lines).
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .take(max)
        .map(|c| if c.is_control() || c == '\'' { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod switch_tests;
#[cfg(test)]
mod tests;
