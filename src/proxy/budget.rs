//! Monthly budgets per OPD (and per extension where the OPD file sets one): what the answered
//! outside calls of the current WIB month have used, whether a new outside call may start,
//! which calls in progress must end because their budget cannot pay for their next minute,
//! and the 80 % and 100 % crossings to warn about.
//!
//! Sans-IO: usage comes in as [`BilledCall`]s (a finished call record, live or from the store
//! at start; an answered call in progress with the `Instant` of its answer); wall time comes
//! in as Unix milliseconds, deadlines go out as `Instant`s, and the month (WIB, UTC+7) rolls over at
//! 00:00 WIB of the 1st: usage and warnings start again from zero. Limits and rates are read
//! from the [`Dialplan`] passed to each call, so a reload applies at once. Emergency calls
//! never reach this module (the caller leaves them out). No clock, no I/O, no logging: the
//! switch logs the [`Notice`]s and refusals, and ends the calls [`Budgets::poll_cut`] names.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cdr::CdrRecord;
use crate::dialplan::budget::{billed_minutes, Budget, BudgetUnit, Charge};
use crate::dialplan::time::{civil_from_days, days_from_civil, WIB_OFFSET_SECS};
use crate::dialplan::{Dialplan, NumberClass};
use crate::types::{Extension, OpdCode};

/// The share of a budget at which the operator is warned.
pub const WARNING_RATIO: f64 = 0.8;

/// How long before a billed minute would start a call in progress is checked: a call ended
/// then is billed for the minutes it had, not for one more.
pub const CUT_AHEAD: Duration = Duration::from_secs(1);

const MINUTE: Duration = Duration::from_secs(60);

const DAY_MS: i64 = 86_400_000;
const WIB_OFFSET_MS: i64 = WIB_OFFSET_SECS * 1000;

/// A calendar month in WIB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i64,
    /// 1 to 12.
    pub month: u8,
}

impl Month {
    /// The WIB month that contains the instant `unix_ms`.
    pub fn of_unix_ms(unix_ms: i64) -> Month {
        let days = (unix_ms + WIB_OFFSET_MS).div_euclid(DAY_MS);
        let (year, month, _) = civil_from_days(days);
        Month { year, month }
    }

    /// 00:00 WIB of the month's first day, in Unix milliseconds.
    pub fn start_unix_ms(self) -> i64 {
        days_from_civil(self.year, self.month, 1) * DAY_MS - WIB_OFFSET_MS
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// An answered outside (non-emergency) trunk call, as a call record shows it: who placed it
/// (the record's caller and the caller's OPD pay), the class of the number sent to the trunk,
/// its talk time and when it ended (the month it ended in pays).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BilledCall {
    pub caller: Extension,
    pub opd: Option<OpdCode>,
    pub class: NumberClass,
    pub talk_ms: i64,
    pub end_ms: i64,
}

impl BilledCall {
    /// The billed call of a finished record: `None` for a call that did not go to the trunk,
    /// was not answered, was an emergency call, or whose caller is not an extension.
    pub fn from_record(r: &CdrRecord, plan: &Dialplan) -> Option<BilledCall> {
        BilledCall::from_parts(
            &r.caller,
            r.caller_opd.as_ref(),
            &r.route,
            r.trunk,
            r.answer_ms,
            r.end_ms,
            plan,
        )
    }

    /// The same from the fields of a stored record. The route must read `trunk NUMBER` (an
    /// emergency call's `trunk (emergency) …`, a blocked call's `blocked …` never count).
    pub fn from_parts(
        caller: &str,
        opd: Option<&OpdCode>,
        route: &str,
        trunk: bool,
        answer_ms: Option<i64>,
        end_ms: i64,
        plan: &Dialplan,
    ) -> Option<BilledCall> {
        let answer_ms = answer_ms?;
        if !trunk || route.starts_with(super::EMERGENCY_ROUTE) {
            return None;
        }
        let number = route.strip_prefix("trunk ")?.trim();
        let class = plan.class_of_sent(number)?;
        if matches!(class, NumberClass::Emergency | NumberClass::Internal) {
            return None;
        }
        Some(BilledCall {
            caller: caller.parse().ok()?,
            opd: opd.cloned(),
            class,
            talk_ms: (end_ms - answer_ms).max(0),
            end_ms,
        })
    }
}

/// Whose budget: an OPD's, or one extension's (of that OPD).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    Opd(OpdCode),
    Extension(Extension, OpdCode),
}

/// A budget and what is used of it this month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub holder: Holder,
    pub unit: BudgetUnit,
    pub limit: u64,
    pub used: u64,
    pub month: Month,
}

impl Standing {
    pub fn ratio(&self) -> f64 {
        self.used as f64 / self.limit.max(1) as f64
    }

    pub fn state(&self) -> BudgetState {
        if self.used >= self.limit {
            BudgetState::Exhausted
        } else if self.ratio() >= WARNING_RATIO {
            BudgetState::Warning
        } else {
            BudgetState::Ok
        }
    }
}

impl fmt::Display for Standing {
    /// `monthly budget of OPD 'setda' used up: 600 of 600 minutes`, for the `Warning` header
    /// and the logs (the state decides the verb).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whose = match &self.holder {
            Holder::Opd(o) => format!("OPD '{o}'"),
            Holder::Extension(e, o) => format!("extension {e} (OPD '{o}')"),
        };
        let how = match self.state() {
            BudgetState::Exhausted => "used up".to_owned(),
            _ => format!("{:.0} % used", (self.ratio() * 100.0).floor()),
        };
        write!(
            f,
            "monthly budget of {whose} {how}: {} of {} {}",
            self.used, self.limit, self.unit
        )
    }
}

/// How far a budget is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetState {
    /// Below 80 %.
    Ok,
    /// 80 % or more, below 100 %.
    Warning,
    /// 100 % or more: outside calls are refused.
    Exhausted,
}

/// A budget crossed a threshold with the call just billed (once per budget and month).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// 80 % reached.
    Warning(Standing),
    /// 100 % reached: the next outside calls are refused.
    Exhausted(Standing),
}

/// One OPD's budget for `GET /api/budgets`, `tambun budget` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetView {
    pub opd: OpdCode,
    pub unit: BudgetUnit,
    pub limit: u64,
    pub used: u64,
    pub ratio: f64,
    pub state: BudgetState,
    /// `YYYY-MM`, WIB.
    pub month: String,
    /// Outside calls refused for this OPD's budget (or one of its extensions') this month.
    pub refused: u64,
    /// Extensions with a budget of their own that used some of it this month.
    pub extensions: Vec<ExtensionView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionView {
    pub extension: Extension,
    pub limit: u64,
    pub used: u64,
    pub ratio: f64,
    pub state: BudgetState,
}

/// Used this month, in both units (so a reload may change an OPD's unit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    minutes: u64,
    rupiah: u64,
}

impl From<Charge> for Usage {
    fn from(c: Charge) -> Usage {
        Usage {
            minutes: c.minutes,
            rupiah: c.rupiah,
        }
    }
}

/// Does a budget apply to the call in progress (its OPD has one)?
fn has_budget(plan: &Dialplan, l: &InProgress) -> bool {
    l.call
        .opd
        .as_ref()
        .and_then(|o| plan.opd(o))
        .is_some_and(|o| o.budget.is_some())
}

impl Usage {
    fn add(&mut self, c: Charge) {
        self.minutes = self.minutes.saturating_add(c.minutes);
        self.rupiah = self.rupiah.saturating_add(c.rupiah);
    }

    fn of(self, unit: BudgetUnit) -> u64 {
        match unit {
            BudgetUnit::Minutes => self.minutes,
            BudgetUnit::Rupiah => self.rupiah,
        }
    }
}

/// An answered outside call in progress, whose cost grows with each started minute.
#[derive(Debug, Clone)]
struct InProgress {
    call: BilledCall,
    answered_at: Instant,
    /// The minutes it was let into (the first at the answer); checked before it starts
    /// minute `next_minute + 1`.
    next_minute: u64,
    /// Being ended for its budget: not checked again.
    cut: bool,
}

impl InProgress {
    /// When the call must be checked next: `CUT_AHEAD` before its next billed minute starts.
    fn check_at(&self) -> Instant {
        let minutes = u32::try_from(self.next_minute).unwrap_or(u32::MAX);
        (self.answered_at + MINUTE * minutes)
            .checked_sub(CUT_AHEAD)
            .unwrap_or(self.answered_at)
    }

    /// What it costs at `now`: the minutes it has started or was let into, whichever is more
    /// (with `extra`, one more).
    fn cost(&self, plan: &Dialplan, now: Instant, extra: bool) -> Charge {
        let talk = now.saturating_duration_since(self.answered_at).as_millis() as i64;
        let minutes = billed_minutes(talk).max(self.next_minute) + u64::from(extra);
        let talk = i64::try_from(minutes.saturating_sub(1))
            .unwrap_or(i64::MAX / 60_000)
            .saturating_mul(60_000)
            + 1;
        plan.charge_of(self.call.class, talk)
    }
}

/// The usage of the current month.
#[derive(Debug, Default)]
pub struct Budgets {
    /// The month the usage is of (`None` before the first input).
    month: Option<Month>,
    by_opd: BTreeMap<OpdCode, Usage>,
    by_extension: BTreeMap<Extension, Usage>,
    /// Budgets already warned about this month (80 %, 100 %).
    warned: BTreeSet<Holder>,
    exhausted: BTreeSet<Holder>,
    /// Refusals this month, by OPD.
    refused: BTreeMap<OpdCode, u64>,
    /// Refusals since start, by OPD (the `/metrics` counter never goes down).
    refused_total: BTreeMap<OpdCode, u64>,
    /// Answered outside calls in progress, by Call-ID.
    live: BTreeMap<String, InProgress>,
}

impl Budgets {
    /// Starts a new month if `now_ms` is past the current one. Returns the month of `now_ms`.
    fn roll(&mut self, now_ms: i64) -> Month {
        let month = Month::of_unix_ms(now_ms);
        if self.month.is_none_or(|m| m < month) {
            self.month = Some(month);
            self.by_opd.clear();
            self.by_extension.clear();
            self.warned.clear();
            self.exhausted.clear();
            self.refused.clear();
        }
        self.month.unwrap_or(month)
    }

    /// An answered outside call ended: it counts for its OPD's budget and its extension's.
    /// Returns the thresholds it made a budget cross (each budget warns once a month).
    pub fn handle_call(&mut self, call: &BilledCall, plan: &Dialplan) -> Vec<Notice> {
        let month = self.roll(call.end_ms);
        if Month::of_unix_ms(call.end_ms) != month {
            // Ended in a month already closed (a clock step back): it counts nowhere.
            return Vec::new();
        }
        let charge = plan.charge_of(call.class, call.talk_ms);
        if let Some(opd) = &call.opd {
            self.by_opd.entry(opd.clone()).or_default().add(charge);
        }
        self.by_extension
            .entry(call.caller.clone())
            .or_default()
            .add(charge);
        let mut notices = Vec::new();
        for s in self.standings_of(&call.caller, call.opd.as_ref(), plan, month, None) {
            let holder = s.holder.clone();
            match s.state() {
                BudgetState::Exhausted if !self.exhausted.contains(&holder) => {
                    self.exhausted.insert(holder.clone());
                    self.warned.insert(holder);
                    notices.push(Notice::Exhausted(s));
                }
                BudgetState::Warning if !self.warned.contains(&holder) => {
                    self.warned.insert(holder);
                    notices.push(Notice::Warning(s));
                }
                _ => {}
            }
        }
        notices
    }

    /// A call of the current month from the store at start: counted like a live one, but
    /// nothing is announced (a budget already past 80 % does not warn again).
    pub fn seed(&mut self, call: &BilledCall, plan: &Dialplan, now_ms: i64) {
        let month = self.roll(now_ms);
        if Month::of_unix_ms(call.end_ms) == month {
            self.handle_call(call, plan);
        }
    }

    /// The budgets that apply to `caller` of `opd`: the OPD's, and the extension's own if
    /// an extension budget covers it.
    fn standings_of(
        &self,
        caller: &Extension,
        opd: Option<&OpdCode>,
        plan: &Dialplan,
        month: Month,
        live: Option<(Instant, Option<&str>)>,
    ) -> Vec<Standing> {
        let live = live.map(|(now, except)| (plan, now, except));
        let Some((code, budget)) = opd.and_then(|o| Some((o, plan.opd(o)?.budget.as_ref()?)))
        else {
            return Vec::new();
        };
        let opd_holder = Holder::Opd(code.clone());
        let mut out = vec![self.standing(opd_holder, budget, budget.limit, month, live)];
        if let Some(limit) = budget.extension_limit(caller) {
            let holder = Holder::Extension(caller.clone(), code.clone());
            out.push(self.standing(holder, budget, limit, month, live));
        }
        out
    }

    /// A budget and its use: the calls that ended this month, and with `live` also what the
    /// calls in progress cost so far (`except` left out).
    fn standing(
        &self,
        holder: Holder,
        budget: &Budget,
        limit: u64,
        month: Month,
        live: Option<(&Dialplan, Instant, Option<&str>)>,
    ) -> Standing {
        let usage = match &holder {
            Holder::Opd(o) => self.by_opd.get(o),
            Holder::Extension(e, _) => self.by_extension.get(e),
        };
        let mut used = usage.copied().unwrap_or_default();
        if let Some((plan, now, except)) = live {
            for (id, l) in &self.live {
                let theirs = match &holder {
                    Holder::Opd(o) => l.call.opd.as_ref() == Some(o),
                    Holder::Extension(e, _) => &l.call.caller == e,
                };
                if theirs && except != Some(id.as_str()) {
                    used.add(l.cost(plan, now, false));
                }
            }
        }
        Standing {
            holder,
            unit: budget.unit,
            limit,
            used: used.of(budget.unit),
            month,
        }
    }

    /// May `caller` of `opd` start an outside (non-emergency) call now? `Err` with the
    /// budget that is used up (the extension's before the OPD's), counting what the calls in
    /// progress cost so far; the refusal is counted.
    pub fn admit(
        &mut self,
        caller: &Extension,
        opd: Option<&OpdCode>,
        plan: &Dialplan,
        now: Instant,
        now_ms: i64,
    ) -> Result<(), Standing> {
        let month = self.roll(now_ms);
        let mut used_up: Vec<Standing> = self
            .standings_of(caller, opd, plan, month, Some((now, None)))
            .into_iter()
            .filter(|s| s.state() == BudgetState::Exhausted)
            .collect();
        let Some(s) = used_up.pop() else {
            return Ok(());
        };
        if let Some(o) = opd {
            *self.refused.entry(o.clone()).or_default() += 1;
            *self.refused_total.entry(o.clone()).or_default() += 1;
        }
        Err(s)
    }

    /// Every OPD with a budget, by code, as of `now_ms`; `used` includes what the calls in
    /// progress cost so far.
    pub fn report(&mut self, plan: &Dialplan, now: Instant, now_ms: i64) -> Vec<BudgetView> {
        let month = self.roll(now_ms);
        let live = Some((plan, now, None));
        plan.opds()
            .iter()
            .filter_map(|o| Some((o, o.budget.as_ref()?)))
            .map(|(o, b)| {
                let s = self.standing(Holder::Opd(o.code.clone()), b, b.limit, month, live);
                let mut talking: BTreeSet<&Extension> = self.by_extension.keys().collect();
                talking.extend(self.live.values().map(|l| &l.call.caller));
                let extensions = talking
                    .into_iter()
                    .filter(|e| plan.opd_of(e).is_some_and(|x| x.code == o.code))
                    .filter_map(|e| {
                        let limit = b.extension_limit(e)?;
                        let holder = Holder::Extension(e.clone(), o.code.clone());
                        let s = self.standing(holder, b, limit, month, live);
                        Some(ExtensionView {
                            extension: e.clone(),
                            limit,
                            used: s.used,
                            ratio: s.ratio(),
                            state: s.state(),
                        })
                    })
                    .collect();
                BudgetView {
                    opd: o.code.clone(),
                    unit: b.unit,
                    limit: b.limit,
                    used: s.used,
                    ratio: s.ratio(),
                    state: s.state(),
                    month: month.to_string(),
                    refused: self.refused.get(&o.code).copied().unwrap_or(0),
                    extensions,
                }
            })
            .collect()
    }

    /// An answered outside call (`call_id`) started at `at`: until it ends, its cost so far
    /// counts for admission and the report, and it is ended before a minute its budget cannot
    /// pay for ([`Self::poll_cut`]).
    pub fn handle_answered(&mut self, call_id: &str, call: BilledCall, at: Instant) {
        let entry = InProgress {
            call,
            answered_at: at,
            next_minute: 1,
            cut: false,
        };
        self.live.insert(call_id.to_owned(), entry);
    }

    /// The call ended (its record bills it): no longer in progress. Unknown calls are ignored.
    pub fn handle_ended(&mut self, call_id: &str) {
        self.live.remove(call_id);
    }

    /// When [`Self::poll_cut`] must be called next: `CUT_AHEAD` before the next billed minute
    /// of a call in progress whose OPD has a budget.
    pub fn poll_timeout(&self, plan: &Dialplan) -> Option<Instant> {
        self.live
            .values()
            .filter(|l| !l.cut && has_budget(plan, l))
            .map(InProgress::check_at)
            .min()
    }

    /// The calls in progress to end now: each call due for its next minute whose budget (the
    /// OPD's, or its extension's) cannot pay for that minute on top of what the month's ended
    /// calls and the other calls in progress cost. Returned with that budget (as it stands
    /// without the extra minute); a call that may go on is checked again before its next one.
    pub fn poll_cut(
        &mut self,
        plan: &Dialplan,
        now: Instant,
        now_ms: i64,
    ) -> Vec<(String, Standing)> {
        let month = self.roll(now_ms);
        let mut due: Vec<(Instant, String)> = self
            .live
            .iter()
            .filter(|(_, l)| !l.cut && l.check_at() <= now && has_budget(plan, l))
            .map(|(id, l)| (l.check_at(), id.clone()))
            .collect();
        due.sort();
        let mut cut = Vec::new();
        for (_, id) in due {
            let Some(l) = self.live.get(&id).cloned() else {
                continue;
            };
            let next = l.cost(plan, now, true);
            let over = self
                .standings_of(
                    &l.call.caller,
                    l.call.opd.as_ref(),
                    plan,
                    month,
                    Some((now, Some(&id))),
                )
                .into_iter()
                .find(|s| s.used.saturating_add(Usage::from(next).of(s.unit)) > s.limit);
            let Some(entry) = self.live.get_mut(&id) else {
                continue;
            };
            match over {
                Some(mut s) => {
                    entry.cut = true;
                    s.used = s
                        .used
                        .saturating_add(Usage::from(l.cost(plan, now, false)).of(s.unit));
                    cut.push((id, s));
                }
                None => entry.next_minute += 1,
            }
        }
        cut
    }

    /// Outside calls refused for a budget since start, by OPD (for `/metrics`).
    pub fn refused_total(&self) -> &BTreeMap<OpdCode, u64> {
        &self.refused_total
    }
}

#[cfg(test)]
mod tests;
