//! The toll-fraud guard on the trunk: limits on concurrent trunk calls and on trunk calls per
//! hour, per extension and per OPD, and the counts of what it let through and what it blocked
//! (including the dialplan's permission refusals, which the proxy reports here).
//!
//! Sans-IO: the proxy asks [`TollGuard::admit`] before sending a call to the trunk and tells
//! [`TollGuard::release`] when the call's record is finished; time comes in as an `Instant`.
//! The hour is a sliding window over the admission times. Emergency calls are never refused
//! and never counted against a limit. No clock, no I/O, no logging (the proxy logs).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use crate::dialplan::NumberClass;
use crate::types::{Extension, OpdCode};

/// The length of the per-hour window.
pub const HOUR: Duration = Duration::from_secs(3600);

/// One set of limits. `0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub concurrent_per_extension: u32,
    pub concurrent_per_opd: u32,
    pub per_hour_per_extension: u32,
    pub per_hour_per_opd: u32,
}

impl Default for Limits {
    /// Sane for an office: two lines per desk, ten per office at once; 20 calls an hour from
    /// one desk, 200 from one office.
    fn default() -> Self {
        Limits {
            concurrent_per_extension: 2,
            concurrent_per_opd: 10,
            per_hour_per_extension: 20,
            per_hour_per_opd: 200,
        }
    }
}

/// The limits in force: a default set and whole sets for some OPDs (overrides already merged
/// with the defaults by the configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TollLimits {
    pub default: Limits,
    pub opd: BTreeMap<OpdCode, Limits>,
}

impl TollLimits {
    /// The limits of an extension of `opd` (an extension in no OPD gets the defaults).
    pub fn of(&self, opd: Option<&OpdCode>) -> Limits {
        opd.and_then(|o| self.opd.get(o))
            .copied()
            .unwrap_or(self.default)
    }
}

/// Why a trunk call was blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The dialplan does not allow the caller this class of number.
    Permission(NumberClass),
    ConcurrentPerExtension(u32),
    ConcurrentPerOpd(u32),
    PerHourPerExtension(u32),
    PerHourPerOpd(u32),
    /// The OPD's (or the extension's) monthly budget is used up ([`super::budget`]); the
    /// refusal's sentence says whose and how much.
    MonthlyBudget,
}

impl Rule {
    /// The rule's name in logs, counters and call records.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Permission(_) => "permission",
            Rule::ConcurrentPerExtension(_) => "concurrent-per-extension",
            Rule::ConcurrentPerOpd(_) => "concurrent-per-opd",
            Rule::PerHourPerExtension(_) => "per-hour-per-extension",
            Rule::PerHourPerOpd(_) => "per-hour-per-opd",
            Rule::MonthlyBudget => "monthly-budget",
        }
    }

    /// The SIP status the caller gets: 486 while its concurrent calls fill the limit (it may
    /// try again when one ends), 403 otherwise.
    pub fn status(self) -> u16 {
        match self {
            Rule::ConcurrentPerExtension(_) | Rule::ConcurrentPerOpd(_) => 486,
            _ => 403,
        }
    }
}

impl fmt::Display for Rule {
    /// The sentence for the `Warning` header and the log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Permission(class) => write!(f, "{class} numbers not allowed"),
            Rule::ConcurrentPerExtension(n) => {
                write!(f, "trunk limit: {n} concurrent calls per extension")
            }
            Rule::ConcurrentPerOpd(n) => write!(f, "trunk limit: {n} concurrent calls per OPD"),
            Rule::PerHourPerExtension(n) => {
                write!(f, "trunk limit: {n} calls per hour per extension")
            }
            Rule::PerHourPerOpd(n) => write!(f, "trunk limit: {n} calls per hour per OPD"),
            Rule::MonthlyBudget => write!(f, "monthly budget used up"),
        }
    }
}

/// Counters for monitoring (`/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TollStats {
    /// Trunk calls in progress (emergency calls included).
    pub active: u64,
    /// Trunk calls let through since start (emergency calls included).
    pub admitted: u64,
    /// Of those, emergency calls.
    pub emergency: u64,
    /// Blocked attempts by (rule name, caller's OPD).
    pub blocked: BTreeMap<(&'static str, Option<OpdCode>), u64>,
}

/// A trunk call in progress: (Call-ID, From-tag).
pub type CallKey = (String, String);

/// Who a call is charged to; `None` for emergency calls (never limited).
type Charge = Option<(Extension, Option<OpdCode>)>;

/// The guard's state.
#[derive(Debug, Default)]
pub struct TollGuard {
    limits: TollLimits,
    active: HashMap<CallKey, Charge>,
    active_by_ext: HashMap<Extension, u32>,
    active_by_opd: HashMap<OpdCode, u32>,
    /// Admission times within the last hour, oldest first (kept only where a limit applies).
    hour_by_ext: HashMap<Extension, VecDeque<Instant>>,
    hour_by_opd: HashMap<OpdCode, VecDeque<Instant>>,
    stats: TollStats,
}

impl TollGuard {
    pub fn new(limits: TollLimits) -> TollGuard {
        TollGuard {
            limits,
            ..TollGuard::default()
        }
    }

    pub fn limits(&self) -> &TollLimits {
        &self.limits
    }

    /// May `ext` (of `opd`) start trunk call `call` now? On `Ok` the call counts until
    /// [`Self::release`]; on `Err` the attempt is counted as blocked.
    pub fn admit(
        &mut self,
        call: CallKey,
        ext: &Extension,
        opd: Option<&OpdCode>,
        now: Instant,
    ) -> Result<(), Rule> {
        if let Some(rule) = self.check(ext, opd, now) {
            self.count_blocked(rule, opd);
            return Err(rule);
        }
        let limits = self.limits.of(opd);
        *self.active_by_ext.entry(ext.clone()).or_default() += 1;
        if limits.per_hour_per_extension > 0 {
            self.hour_by_ext
                .entry(ext.clone())
                .or_default()
                .push_back(now);
        }
        if let Some(o) = opd {
            *self.active_by_opd.entry(o.clone()).or_default() += 1;
            if limits.per_hour_per_opd > 0 {
                self.hour_by_opd
                    .entry(o.clone())
                    .or_default()
                    .push_back(now);
            }
        }
        self.start(call, Some((ext.clone(), opd.cloned())));
        Ok(())
    }

    /// An emergency call to the trunk: always let through, counted only in the totals.
    pub fn admit_emergency(&mut self, call: CallKey) {
        self.stats.emergency += 1;
        self.start(call, None);
    }

    fn start(&mut self, call: CallKey, charge: Charge) {
        // The same call admitted twice (a re-route of one call): the earlier admission ends.
        self.release(&call);
        self.active.insert(call, charge);
        self.stats.admitted += 1;
        self.stats.active = self.active.len() as u64;
    }

    /// The first limit `ext` would break by starting a trunk call now.
    fn check(&mut self, ext: &Extension, opd: Option<&OpdCode>, now: Instant) -> Option<Rule> {
        let l = self.limits.of(opd);
        let active_ext = self.active_by_ext.get(ext).copied().unwrap_or(0);
        if l.concurrent_per_extension > 0 && active_ext >= l.concurrent_per_extension {
            return Some(Rule::ConcurrentPerExtension(l.concurrent_per_extension));
        }
        if let Some(o) = opd {
            let active_opd = self.active_by_opd.get(o).copied().unwrap_or(0);
            if l.concurrent_per_opd > 0 && active_opd >= l.concurrent_per_opd {
                return Some(Rule::ConcurrentPerOpd(l.concurrent_per_opd));
            }
        }
        if l.per_hour_per_extension > 0
            && in_window(&mut self.hour_by_ext, ext, now) >= l.per_hour_per_extension as usize
        {
            return Some(Rule::PerHourPerExtension(l.per_hour_per_extension));
        }
        if let Some(o) = opd {
            if l.per_hour_per_opd > 0
                && in_window(&mut self.hour_by_opd, o, now) >= l.per_hour_per_opd as usize
            {
                return Some(Rule::PerHourPerOpd(l.per_hour_per_opd));
            }
        }
        None
    }

    /// The dialplan refused a call for lack of permission: counted as blocked.
    pub fn count_denied(&mut self, class: NumberClass, opd: Option<&OpdCode>) {
        self.count_blocked(Rule::Permission(class), opd);
    }

    fn count_blocked(&mut self, rule: Rule, opd: Option<&OpdCode>) {
        *self
            .stats
            .blocked
            .entry((rule.name(), opd.cloned()))
            .or_default() += 1;
    }

    /// The trunk call ended (or never got going): it no longer counts as concurrent. Unknown
    /// calls are ignored, so releasing twice is harmless.
    pub fn release(&mut self, call: &CallKey) {
        let Some(charge) = self.active.remove(call) else {
            return;
        };
        self.stats.active = self.active.len() as u64;
        let Some((ext, opd)) = charge else {
            return;
        };
        decrement(&mut self.active_by_ext, &ext);
        if let Some(o) = opd {
            decrement(&mut self.active_by_opd, &o);
        }
    }

    /// A trunk call admitted at `at` before a restart (from the call records), so the hourly
    /// limits hold across restarts. Times may come in any order.
    pub fn seed(&mut self, ext: &Extension, opd: Option<&OpdCode>, at: Instant) {
        let limits = self.limits.of(opd);
        if limits.per_hour_per_extension > 0 {
            insert_sorted(self.hour_by_ext.entry(ext.clone()).or_default(), at);
        }
        if let (Some(o), true) = (opd, limits.per_hour_per_opd > 0) {
            insert_sorted(self.hour_by_opd.entry(o.clone()).or_default(), at);
        }
    }

    pub fn stats(&self) -> &TollStats {
        &self.stats
    }

    /// Trunk calls in progress charged to `ext` (for tests and the operator).
    pub fn active_of(&self, ext: &Extension) -> u32 {
        self.active_by_ext.get(ext).copied().unwrap_or(0)
    }
}

/// Drops admissions older than the hour and returns how many are left.
fn in_window<K: std::hash::Hash + Eq>(
    map: &mut HashMap<K, VecDeque<Instant>>,
    key: &K,
    now: Instant,
) -> usize {
    let Some(times) = map.get_mut(key) else {
        return 0;
    };
    while times
        .front()
        .is_some_and(|&t| now.saturating_duration_since(t) >= HOUR)
    {
        times.pop_front();
    }
    let n = times.len();
    if n == 0 {
        map.remove(key);
    }
    n
}

fn decrement<K: std::hash::Hash + Eq>(map: &mut HashMap<K, u32>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            map.remove(key);
        }
    }
}

fn insert_sorted(times: &mut VecDeque<Instant>, at: Instant) {
    let pos = times.partition_point(|&t| t <= at);
    times.insert(pos, at);
}

#[cfg(test)]
mod tests;
