//! The routing evaluator: given the caller, the dialled string, the time and a view of the
//! extension directory, decide where a call goes and explain why (the trace).
//!
//! Sans-IO and pure: no clock (the caller passes `now_unix`), no database (the caller passes a
//! [`Directory`]), no locks. The order of evaluation is the one in `docs/dialplan.md`. The
//! matcher structures are compiled once at load ([`Index`]), so a decision is a binary search
//! for block owners plus a walk over a few rules pre-sorted by specificity.

use std::path::Path;

use super::trace::{strategy, TraceStep};
use super::{
    ClassRule, ClassSet, Dialplan, NumberClass, Opd, Province, RingGroup, Room, RoomAccess, Rule,
    Schedule, Strategy, Target, TimeCondition, WibTime,
};
use crate::types::Extension;

/// How many times one call may be re-routed (an alias, or a forward-always) before it is
/// refused as a loop.
pub const MAX_HOPS: usize = 5;

/// How long a plain call to one extension rings at most (the proxy's Timer C is 3 minutes);
/// a `forward_no_answer` usually ends it sooner.
pub const PLAIN_RING_SECS: u32 = 180;

/// Per-extension call features kept in the database (set by CLI and feature codes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    /// Every call to the extension goes to this number instead.
    pub forward_always: Option<String>,
    /// Where a call goes when the extension is busy.
    pub forward_busy: Option<String>,
    /// Where a call goes when the extension has not answered after the given seconds.
    pub forward_no_answer: Option<(String, u32)>,
    /// Do not disturb: calls are refused with 486.
    pub dnd: bool,
}

/// What the evaluator needs to know about extensions (the switch implements it over its
/// in-memory directory).
pub trait Directory {
    /// The extension exists in the database and is enabled.
    fn is_assigned(&self, ext: &Extension) -> bool;
    fn features(&self, ext: &Extension) -> Features;
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ring these extensions (one for a plain call; several for a ring group).
    Ring(RingPlan),
    /// Send to the central trunk: the number as the carrier must receive it (prefix stripped,
    /// `prepend` applied) and its class.
    Trunk {
        number: String,
        class: NumberClass,
        emergency: bool,
    },
    /// Answer with this status (404 unassigned, 403 permission, 486 DND, or a rule's reject).
    Reject { status: u16, reason: String },
    /// A feature code for the caller's own extension; the proxy applies it and answers.
    Feature(FeatureAction),
    /// Join a conference room: the caller's OPD may join and the room is open now.
    Room(RoomPlan),
}

/// A conference room to join, as the switch answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPlan {
    pub number: String,
    pub name: String,
    /// Asked of everyone who joins, if set.
    pub pin: Option<String>,
    /// Makes whoever enters it a moderator.
    pub moderator_pin: Option<String>,
    /// The most participants at once.
    pub max: u32,
    /// The room's video egress budget, Mbit/s.
    pub video_mbps: u32,
    /// The caller is a moderator by its extension or its OPD (without a PIN).
    pub moderator: bool,
}

/// A feature code's effect on the caller's own extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeatureAction {
    /// `*72` + number: forward every call to the number.
    SetForwardAlways(String),
    /// `*73`: clear the forward-always (busy and no-answer forwards stay).
    ClearForward,
    /// `*78`
    DndOn,
    /// `*79`
    DndOff,
}

/// The extensions to ring and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingPlan {
    /// For a plain call: `Parallel { timeout_secs: PLAIN_RING_SECS }`.
    pub strategy: Strategy,
    /// In ringing order (sequential groups) or all at once (parallel); never empty.
    pub members: Vec<RingTarget>,
    /// The ring group's name, `None` for a plain call.
    pub group: Option<String>,
}

/// One extension to ring, with what the proxy does when it is busy or does not answer (by
/// calling [`Dialplan::route`] again with the extension as caller and the forward target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RingTarget {
    pub extension: Extension,
    /// Always `None` for ring group members: the group decides what happens next.
    pub forward_busy: Option<String>,
    pub forward_no_answer: Option<(String, u32)>,
}

/// A decision and the steps that led to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub decision: Decision,
    pub trace: Vec<TraceStep>,
    /// For a non-emergency `Trunk` decision: the extension whose permissions sent the call
    /// to the trunk (the caller, or the forwarding extension after a forward-always). The
    /// proxy charges the trunk limits to it.
    pub trunk_caller: Option<Extension>,
    /// For a `Reject` because the caller may not dial the number's class: that class.
    pub denied: Option<NumberClass>,
}

// ---------------------------------------------------------------------------------------------
// Compiled at load.

/// Lookup structures built once per loaded plan.
#[derive(Debug, Clone, Default)]
pub(super) struct Index {
    /// Every block of every OPD as `(digits, first, last, opd index)`, sorted; blocks never
    /// overlap (a load error), so at most one contains a number.
    blocks: Vec<(usize, u64, u64, usize)>,
    /// Per OPD (same order as `Dialplan::opds`): rule indices, most specific first.
    rules: Vec<Vec<usize>>,
    /// Province class rules, most specific first.
    pub(super) classes: Vec<usize>,
}

impl Index {
    pub(super) fn build(opds: &[Opd], province: &Province) -> Index {
        let mut blocks: Vec<(usize, u64, u64, usize)> = opds
            .iter()
            .enumerate()
            .flat_map(|(i, o)| {
                o.blocks
                    .iter()
                    .map(move |b| (b.digits(), b.first, b.last, i))
            })
            .collect();
        blocks.sort_unstable();
        let by_specificity = |patterns: Vec<(usize, &super::Pattern)>| {
            let mut keyed: Vec<_> = patterns
                .into_iter()
                .map(|(i, p)| (p.specificity(), i))
                .collect();
            // Most specific first; equal keys never match the same number (a tie is a load
            // error), so their order does not matter. Stable on the file order anyway.
            keyed.sort_by(|a, b| b.0.cmp(&a.0));
            keyed.into_iter().map(|(_, i)| i).collect::<Vec<usize>>()
        };
        let rules = opds
            .iter()
            .map(|o| by_specificity(o.rules.iter().map(|r| &r.pattern).enumerate().collect()))
            .collect();
        let classes = by_specificity(
            province
                .classes
                .iter()
                .map(|c| &c.pattern)
                .enumerate()
                .collect(),
        );
        Index {
            blocks,
            rules,
            classes,
        }
    }

    /// The province's class rules (indices), most specific first.
    pub(super) fn class_order(&self) -> &[usize] {
        &self.classes
    }

    /// The index of the OPD whose block contains the number `digits`, if it is all digits.
    pub(super) fn opd_of(&self, digits: &str) -> Option<usize> {
        let len = digits.len();
        if !(1..=19).contains(&len) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value = digits
            .bytes()
            .fold(0u64, |acc, b| acc * 10 + u64::from(b - b'0'));
        // The last block starting at or before (len, value).
        let at = self
            .blocks
            .partition_point(|&(d, first, _, _)| (d, first) <= (len, value));
        let &(d, _, last, opd) = self.blocks.get(at.checked_sub(1)?)?;
        (d == len && value <= last).then_some(opd)
    }
}

// ---------------------------------------------------------------------------------------------
// The evaluator.

impl Dialplan {
    /// Decides where a call from `caller` to `dialled` goes at `now_unix` (Unix seconds; time
    /// conditions are evaluated in WIB), and explains the decision step by step.
    pub fn route(
        &self,
        caller: &Extension,
        dialled: &str,
        now_unix: i64,
        dir: &dyn Directory,
    ) -> Routing {
        self.evaluate(now_unix, dir, |eval| eval.number(caller, dialled, true))
    }
}

impl Dialplan {
    /// Where an inbound call from a carrier to the public number `number` (any form:
    /// `+62…`, `0…`) goes at `now_unix`, with the trace; see `docs/dialplan.md`, "Public
    /// numbers".
    pub fn route_inbound(&self, number: &str, now_unix: i64, dir: &dyn Directory) -> Routing {
        let national = crate::trunk::number::to_national(number);
        self.evaluate(now_unix, dir, |eval| eval.inbound(&national))
    }

    /// Runs one decision (`decide`) on a fresh evaluator and collects its trace, the extension
    /// charged for a trunk call and the class a refusal denied.
    fn evaluate<'a>(
        &'a self,
        now_unix: i64,
        dir: &'a dyn Directory,
        decide: impl FnOnce(&mut Eval<'a>) -> Decision,
    ) -> Routing {
        let mut eval = Eval {
            plan: self,
            dir,
            now_unix,
            trace: Vec::new(),
            hops: 0,
            forwarded: Vec::new(),
            trunk_caller: None,
            denied: None,
            outside: false,
        };
        let decision = decide(&mut eval);
        let trunk_caller = match decision {
            Decision::Trunk {
                emergency: false, ..
            } => eval.trunk_caller,
            _ => None,
        };
        let denied = match decision {
            Decision::Reject { .. } => eval.denied,
            _ => None,
        };
        Routing {
            decision,
            trace: eval.trace,
            trunk_caller,
            denied,
        }
    }

    /// Is `number` (any form) one of the province's public numbers?
    pub fn is_public_number(&self, number: &str) -> bool {
        let national = crate::trunk::number::to_national(number);
        self.opds
            .iter()
            .any(|o| o.dids.iter().any(|d| d.number == national))
    }
}

/// The state of one routing decision.
struct Eval<'a> {
    plan: &'a Dialplan,
    dir: &'a dyn Directory,
    now_unix: i64,
    trace: Vec<TraceStep>,
    /// Re-routings so far (aliases and forwards).
    hops: usize,
    /// Extensions whose forward-always this call has followed.
    forwarded: Vec<Extension>,
    /// Who the last outside number was classified and permitted for.
    trunk_caller: Option<Extension>,
    /// The class the last permission check refused.
    denied: Option<NumberClass>,
    /// A call from a carrier to a public number: whoever it reaches, the caller is nobody's
    /// extension, so it never moderates a room (the PIN applies).
    outside: bool,
}

fn reject(status: u16, reason: impl Into<String>) -> Decision {
    Decision::Reject {
        status,
        reason: reason.into(),
    }
}

impl<'a> Eval<'a> {
    fn step(&mut self, file: Option<&Path>, line: Option<usize>, what: String) {
        self.trace.push(TraceStep {
            file: file.map(Path::to_path_buf),
            line,
            what,
        });
    }

    fn province(&self) -> &'a Province {
        &self.plan.province
    }

    /// Routes `dialled` as dialled by `caller`. `top` is false when the number comes from an
    /// alias or a forward (feature codes apply only to what a phone dialled).
    fn number(&mut self, caller: &Extension, dialled: &str, top: bool) -> Decision {
        let plan = self.plan;
        let province = self.province();
        let opd = plan
            .index
            .opd_of(caller.as_str())
            .map(|i| (i, &plan.opds[i]));
        match opd {
            Some((_, o)) => self.step(
                Some(&o.file),
                None,
                format!(
                    "{caller} dials {dialled}: caller is in OPD {} ({})",
                    o.code, o.name
                ),
            ),
            None => self.step(
                None,
                None,
                format!(
                    "{caller} dials {dialled}: caller is in no OPD's block, so only emergency \
                     numbers and extensions can be dialled"
                ),
            ),
        }

        // 1. Feature codes.
        if top && opd.is_some() {
            if let Some(action) = feature(province, dialled) {
                self.step(
                    Some(&province.file),
                    None,
                    format!("{dialled} is a feature code: {action} for {caller}"),
                );
                return Decision::Feature(action);
            }
        }

        // 2. Emergency numbers.
        if province.emergency.iter().any(|e| e == dialled) {
            return self.emergency(dialled);
        }

        // 2b. Conference rooms.
        if let Some(room) = plan.room(dialled) {
            return self.room(caller, opd.map(|(_, o)| o), room);
        }

        // 3. The caller's OPD rules.
        if let Some((i, o)) = opd {
            let hit = plan.index.rules[i]
                .iter()
                .map(|&r| &o.rules[r])
                .find(|r| r.pattern.matches(dialled));
            if let Some(rule) = hit {
                return self.rule(caller, o, rule, dialled);
            }
        }

        // 4. A number in any OPD's block: that OPD's own rules for its numbers first (its
        //    ring groups, aliases and reserved numbers serve callers from every OPD), then the
        //    extension itself.
        if let Some(owner_idx) = plan.index.opd_of(dialled) {
            let owner = &plan.opds[owner_idx];
            if opd.map(|(i, _)| i) != Some(owner_idx) {
                let hit = plan.index.rules[owner_idx]
                    .iter()
                    .map(|&r| &owner.rules[r])
                    .find(|r| r.pattern.matches(dialled));
                if let Some(rule) = hit {
                    if let Some((_, o)) = opd {
                        if let Some(refused) =
                            self.permit(caller, o, NumberClass::Internal, dialled)
                        {
                            return refused;
                        }
                    }
                    self.step(
                        Some(&owner.file),
                        None,
                        format!(
                            "{dialled} is in a block of OPD {}: its rules apply",
                            owner.code
                        ),
                    );
                    return self.rule(caller, owner, rule, dialled);
                }
            }
            // Holds: block numbers never start with 0 or 9 and have 2 to 10 digits (load
            // checks), which is exactly what an extension is.
            let ext: Extension = dialled
                .parse()
                .expect("a number in a block is an extension");
            if let Some((_, o)) = opd {
                if let Some(refused) = self.permit(caller, o, NumberClass::Internal, dialled) {
                    return refused;
                }
            }
            self.step(
                Some(&owner.file),
                None,
                format!(
                    "{dialled} is an extension of OPD {}: internal call",
                    owner.code
                ),
            );
            return self.extension(&ext);
        }

        let Some((_, o)) = opd else {
            self.step(
                None,
                None,
                format!("{dialled} is neither an emergency number nor an extension"),
            );
            return reject(403, format!("Forbidden: {caller} belongs to no OPD"));
        };

        // 5. The outside prefix.
        if let Some(rest) = dialled.strip_prefix(province.outside_prefix.as_str()) {
            if !rest.is_empty() {
                self.step(
                    Some(&province.file),
                    None,
                    format!(
                        "{dialled} starts with the outside prefix {}: outside number {rest}",
                        province.outside_prefix
                    ),
                );
                if province.emergency.iter().any(|e| e == rest) {
                    return self.emergency(rest);
                }
                return self.outside(caller, o, rest, true);
            }
        }

        // 6. Nothing.
        self.step(
            Some(&o.file),
            None,
            format!(
                "{dialled} matches no rule of {}, is no extension and does not start with the \
                 outside prefix {}",
                o.code, province.outside_prefix
            ),
        );
        reject(404, "Not Found")
    }

    fn emergency(&mut self, number: &str) -> Decision {
        let province = self.province();
        self.step(
            Some(&province.file),
            None,
            format!("{number} is an emergency number: to the trunk, always allowed"),
        );
        Decision::Trunk {
            number: number.to_owned(),
            class: NumberClass::Emergency,
            emergency: true,
        }
    }

    /// A conference room: the caller's OPD must be one that may join, and the room must be
    /// open now.
    fn room(&mut self, caller: &Extension, opd: Option<&Opd>, room: &Room) -> Decision {
        let number = &room.number;
        let whose = match &room.owner {
            Some(code) => format!("room of OPD {code}"),
            None => "province room".to_owned(),
        };
        let who = match &room.opds {
            RoomAccess::All => "every OPD may join".to_owned(),
            RoomAccess::Only(codes) => {
                let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
                format!("open to {}", codes.join(", "))
            }
        };
        self.step(
            Some(&room.file),
            Some(room.line),
            format!(
                "{number} is the conference room '{}' ({whose}; {who})",
                room.name
            ),
        );
        let Some(opd) = opd else {
            self.step(
                Some(&room.file),
                Some(room.line),
                format!("{caller} is in no OPD, so it may not join room {number}"),
            );
            return reject(
                403,
                format!("Forbidden: {caller} belongs to no OPD and may not join room {number}"),
            );
        };
        if !room.admits(&opd.code) {
            self.step(
                Some(&room.file),
                Some(room.line),
                format!(
                    "{} may not join room {number}, so {caller} is refused",
                    opd.code
                ),
            );
            return reject(
                403,
                format!("Forbidden: OPD {} may not join room {number}", opd.code),
            );
        }
        if let Some(time) = &room.time {
            let now = WibTime::from_unix(self.now_unix);
            let own = match &room.owner {
                Some(code) => self.plan.opd(code).map_or(&[][..], |o| &o.schedules[..]),
                None => &[][..],
            };
            let open = self.holds_in(own, &time.condition, now);
            let state = if open { "open" } else { "closed" };
            let (name, during) = match &time.condition {
                TimeCondition::During(n) => (n, true),
                TimeCondition::Outside(n) => (n, false),
            };
            // Whether `now` lies in the schedule, which is what the trace says.
            let inside = open == during;
            self.step(
                Some(&room.file),
                Some(time.line),
                format!(
                    "{now} is {} {name}: room {number} is {state} ({})",
                    if inside { "during" } else { "outside" },
                    condition(&time.condition)
                ),
            );
            if !open {
                return reject(
                    480,
                    format!(
                        "Temporarily Unavailable: room {number} is open only {}",
                        condition(&time.condition)
                    ),
                );
            }
        }
        let moderator = !self.outside && room.moderated_by(caller, &opd.code);
        let mut what = if self.outside {
            format!(
                "the outside caller joins room {number} through {}'s public number, as a \
                 participant (never a moderator)",
                opd.code
            )
        } else {
            format!("{caller} ({}) joins room {number}", opd.code)
        };
        if moderator {
            let by_extension = room
                .moderators
                .iter()
                .any(|m| matches!(m, super::Moderator::Extension(e) if e == caller));
            if by_extension {
                what.push_str(&format!(" as a moderator (extension {caller} moderates)"));
            } else {
                what.push_str(&format!(" as a moderator (OPD {} moderates)", opd.code));
            }
        }
        what.push_str(match (&room.pin, &room.moderator_pin) {
            (Some(_), Some(_)) => "; with a PIN and a moderator PIN",
            (Some(_), None) => "; with a PIN",
            (None, Some(_)) => "; no PIN, with a moderator PIN",
            (None, None) => "; no PIN",
        });
        what.push_str(&format!("; at most {} participants", room.max));
        self.step(Some(&room.file), Some(room.line), what);
        Decision::Room(RoomPlan {
            number: number.clone(),
            name: room.name.clone(),
            pin: room.pin.clone(),
            moderator_pin: room.moderator_pin.clone(),
            max: room.max,
            video_mbps: room.video_mbps,
            moderator,
        })
    }

    /// A matching rule of the caller's OPD: pick its target by time, then follow it.
    fn rule(
        &mut self,
        caller: &Extension,
        opd: &'a Opd,
        rule: &'a Rule,
        dialled: &str,
    ) -> Decision {
        self.step(
            Some(&opd.file),
            Some(rule.line),
            format!(
                "rule '{}' matches {dialled} (the most specific match in {})",
                rule.pattern, opd.code
            ),
        );
        let target = self.timed(opd, &rule.target, &rule.when, rule.line);
        self.target(caller, opd, target, dialled)
    }

    /// The target of a rule or public number at this time: the first `when` whose condition
    /// holds, else its own.
    fn timed(
        &mut self,
        opd: &'a Opd,
        own: &'a Target,
        when: &'a [super::TimedTarget],
        line: usize,
    ) -> &'a Target {
        if when.is_empty() {
            self.step(Some(&opd.file), Some(line), describe(own));
            return own;
        }
        let now = WibTime::from_unix(self.now_unix);
        match when.iter().find(|w| self.holds(opd, &w.condition, now)) {
            Some(w) => {
                self.step(
                    Some(&opd.file),
                    Some(w.line),
                    format!(
                        "{now} is {}: {}",
                        condition(&w.condition),
                        describe(&w.target)
                    ),
                );
                &w.target
            }
            None => {
                self.step(
                    Some(&opd.file),
                    Some(line),
                    format!(
                        "{now}: no time condition holds, so the rule's own target: {}",
                        describe(own)
                    ),
                );
                own
            }
        }
    }

    /// An inbound call from a carrier to the public number `number` (national form): the
    /// target of the OPD that lists it (an alias is routed as the OPD's reception would dial
    /// it), else the operator, else 404.
    fn inbound(&mut self, number: &str) -> Decision {
        self.outside = true;
        let plan = self.plan;
        let found = plan
            .opds
            .iter()
            .find_map(|o| o.dids.iter().find(|d| d.number == number).map(|d| (o, d)));
        let Some((opd, did)) = found else {
            let operator = plan
                .opds
                .iter()
                .find_map(|o| o.operator.as_ref().map(|(e, l)| (o, e, *l)));
            return match operator {
                Some((o, op, line)) => {
                    self.step(
                        Some(&o.file),
                        Some(line),
                        format!("no OPD lists the public number {number}: to the operator {op}"),
                    );
                    self.extension(op)
                }
                None => {
                    self.step(
                        None,
                        None,
                        format!("no OPD lists the public number {number} and there is no operator"),
                    );
                    reject(404, "Not Found")
                }
            };
        };
        self.step(
            Some(&opd.file),
            Some(did.line),
            format!("public number {number} is {} ({})", opd.code, opd.name),
        );
        match self.timed(opd, &did.target, &did.when, did.line) {
            Target::Extension(ext) => self.extension(ext),
            Target::Group(name) => match opd.group(name) {
                Some(group) => self.group(opd, group),
                None => reject(404, "Not Found"),
            },
            Target::Alias(to) => {
                let Some(reception) = &opd.reception else {
                    self.step(
                        Some(&opd.file),
                        Some(did.line),
                        format!("{} has no reception to dial {to} as", opd.code),
                    );
                    return reject(404, "Not Found");
                };
                if let Some(refused) = self.hop(&format!("alias {to}")) {
                    return refused;
                }
                self.number(reception, to, false)
            }
            Target::Reject { status, reason } => reject(
                *status,
                reason.clone().unwrap_or_else(|| phrase(*status).to_owned()),
            ),
            // The loader refuses public numbers sent to the trunk.
            Target::Trunk => reject(403, "Forbidden"),
        }
    }

    /// Whether a time condition holds at `now` (an unknown schedule, which the loader
    /// prevents, never holds).
    fn holds(&self, opd: &Opd, condition: &TimeCondition, now: WibTime) -> bool {
        self.holds_in(&opd.schedules, condition, now)
    }

    /// As [`Self::holds`], with the schedules of a file (`own`) looked up before the
    /// province's.
    fn holds_in(&self, own: &[Schedule], condition: &TimeCondition, now: WibTime) -> bool {
        let (name, during) = match condition {
            TimeCondition::During(n) => (n, true),
            TimeCondition::Outside(n) => (n, false),
        };
        let schedule = own
            .iter()
            .find(|s| &s.name == name)
            .or_else(|| self.province().schedule(name));
        schedule.is_some_and(|s| s.covers(now.weekday, now.minute_of_day) == during)
    }

    fn target(
        &mut self,
        caller: &Extension,
        opd: &'a Opd,
        target: &'a Target,
        dialled: &str,
    ) -> Decision {
        match target {
            Target::Extension(ext) => self.extension(ext),
            Target::Group(name) => match opd.group(name) {
                Some(group) => self.group(opd, group),
                // The loader rejects rules naming unknown groups.
                None => reject(404, "Not Found"),
            },
            Target::Alias(number) => {
                if let Some(refused) = self.hop(&format!("alias {number}")) {
                    return refused;
                }
                self.number(caller, number, false)
            }
            Target::Reject { status, reason } => reject(
                *status,
                reason.clone().unwrap_or_else(|| phrase(*status).to_owned()),
            ),
            Target::Trunk => self.outside(caller, opd, dialled, false),
        }
    }

    /// Counts one re-routing; past [`MAX_HOPS`] the call is refused as a loop.
    fn hop(&mut self, what: &str) -> Option<Decision> {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            self.step(
                None,
                None,
                format!("{what}: more than {MAX_HOPS} re-routings, refused as a loop"),
            );
            return Some(reject(482, "Loop Detected"));
        }
        None
    }

    /// Ring one extension, unless it is unassigned, in do-not-disturb, or forwards all calls.
    fn extension(&mut self, ext: &Extension) -> Decision {
        if !self.dir.is_assigned(ext) {
            self.step(
                None,
                None,
                format!("{ext} is not assigned (not in the database, or disabled)"),
            );
            return reject(404, "Not Found");
        }
        let features = self.dir.features(ext);
        if features.dnd {
            self.step(None, None, format!("{ext} has do-not-disturb on"));
            return reject(486, "Do Not Disturb");
        }
        if let Some(to) = features.forward_always {
            if self.forwarded.contains(ext) {
                self.step(
                    None,
                    None,
                    format!("{ext} forwards all calls to {to}, but this call already passed {ext}: a forwarding loop"),
                );
                return reject(482, "Loop Detected");
            }
            self.forwarded.push(ext.clone());
            if let Some(refused) = self.hop(&format!("{ext} forwards all calls to {to}")) {
                return refused;
            }
            self.step(
                None,
                None,
                format!("{ext} forwards all calls to {to}: routed again as a call from {ext} (its permissions apply)"),
            );
            return self.number(ext, &to, false);
        }
        let mut what = format!("ring {ext}");
        if let Some(busy) = &features.forward_busy {
            what.push_str(&format!("; when busy: forward to {busy}"));
        }
        if let Some((to, secs)) = &features.forward_no_answer {
            what.push_str(&format!("; no answer after {secs} s: forward to {to}"));
        }
        self.step(None, None, what);
        Decision::Ring(RingPlan {
            strategy: Strategy::Parallel {
                timeout_secs: PLAIN_RING_SECS,
            },
            members: vec![RingTarget {
                extension: ext.clone(),
                forward_busy: features.forward_busy,
                forward_no_answer: features.forward_no_answer,
            }],
            group: None,
        })
    }

    /// Ring a group's available members (assigned, not in do-not-disturb). Members' own
    /// forwards are not followed: the group's strategy decides what happens next.
    fn group(&mut self, opd: &Opd, group: &RingGroup) -> Decision {
        let mut members = Vec::with_capacity(group.members.len());
        for m in &group.members {
            if !self.dir.is_assigned(m) {
                self.step(
                    None,
                    None,
                    format!("group {}: skip {m} (not assigned)", group.name),
                );
            } else if self.dir.features(m).dnd {
                self.step(
                    None,
                    None,
                    format!("group {}: skip {m} (do-not-disturb)", group.name),
                );
            } else {
                members.push(RingTarget {
                    extension: m.clone(),
                    forward_busy: None,
                    forward_no_answer: None,
                });
            }
        }
        if members.is_empty() {
            self.step(
                Some(&opd.file),
                Some(group.line),
                format!("group {}: no member can ring", group.name),
            );
            return reject(480, "Temporarily Unavailable");
        }
        let names: Vec<&str> = members.iter().map(|m| m.extension.as_str()).collect();
        self.step(
            Some(&opd.file),
            Some(group.line),
            format!(
                "ring group {} ({}): {}",
                group.name,
                strategy(group.strategy),
                names.join(", ")
            ),
        );
        Decision::Ring(RingPlan {
            strategy: group.strategy,
            members,
            group: Some(group.name.clone()),
        })
    }

    /// An outside number to the trunk: classify it, check the caller's permission. `dialled`
    /// is true for `prefix + number` (the class's `prepend` applies); false for a rule's
    /// `trunk` target (the number goes unchanged).
    fn outside(&mut self, caller: &Extension, opd: &Opd, number: &str, dialled: bool) -> Decision {
        let province = self.province();
        let class = self
            .plan
            .index
            .classes
            .iter()
            .map(|&i| &province.classes[i])
            .find(|c| c.pattern.matches(number));
        let Some(ClassRule {
            pattern,
            class,
            prepend,
            line,
        }) = class
        else {
            self.step(
                Some(&province.file),
                None,
                format!("{number} matches no outside number class"),
            );
            return if dialled {
                reject(404, "Not Found")
            } else {
                reject(403, "Forbidden: unclassified outside number")
            };
        };
        self.step(
            Some(&province.file),
            Some(*line),
            format!("class rule '{pattern}' matches {number}: class {class}"),
        );
        if let Some(refused) = self.permit(caller, opd, *class, number) {
            return refused;
        }
        self.trunk_caller = Some(caller.clone());
        let sent = match prepend {
            Some(p) if dialled => format!("{p}{number}"),
            _ => number.to_owned(),
        };
        let first = &province.trunks[0];
        self.step(
            Some(&province.file),
            Some(first.line),
            format!(
                "to the trunk as {sent} (carrier '{}' at {}:{} first{})",
                first.name,
                first.host,
                first.port,
                if province.trunks.len() > 1 {
                    ", the others on failure"
                } else {
                    ""
                }
            ),
        );
        Decision::Trunk {
            number: sent,
            class: *class,
            emergency: false,
        }
    }

    /// `None` if `caller` may dial `class`; else the 403 and a step saying why.
    fn permit(
        &mut self,
        caller: &Extension,
        opd: &Opd,
        class: NumberClass,
        number: &str,
    ) -> Option<Decision> {
        let cover = opd
            .permissions
            .overrides
            .iter()
            .find(|o| o.extensions.iter().any(|b| b.contains(caller)));
        let (allow, line, whose) = match cover {
            Some(o) => (o.allow, Some(o.line), format!("the override for {caller}")),
            None => (opd.permissions.allow, None, opd.code.to_string()),
        };
        if allow.contains(class) {
            return None;
        }
        self.denied = Some(class);
        self.step(
            Some(&opd.file),
            line,
            format!(
                "class {class} is not allowed for {caller} ({whose} allows: {}), so {number} is refused",
                dialable(allow)
            ),
        );
        Some(reject(
            403,
            format!("Forbidden: {class} numbers not allowed"),
        ))
    }
}

/// The feature code `dialled` is, if any.
fn feature(province: &Province, dialled: &str) -> Option<FeatureAction> {
    let codes = &province.features;
    if !dialled.starts_with('*') {
        return None;
    }
    if dialled == codes.forward_off {
        Some(FeatureAction::ClearForward)
    } else if dialled == codes.dnd_on {
        Some(FeatureAction::DndOn)
    } else if dialled == codes.dnd_off {
        Some(FeatureAction::DndOff)
    } else {
        let to = dialled.strip_prefix(codes.forward_on.as_str())?;
        let ok = !to.is_empty() && to.bytes().all(|b| b.is_ascii_digit() || b == b'+');
        ok.then(|| FeatureAction::SetForwardAlways(to.to_owned()))
    }
}

/// A class set as an operator reads it: without `emergency`, which is always allowed.
fn dialable(set: ClassSet) -> String {
    let names: Vec<&str> = set
        .iter()
        .filter(|c| *c != NumberClass::Emergency)
        .map(NumberClass::as_str)
        .collect();
    if names.is_empty() {
        "emergency only".into()
    } else {
        names.join(", ")
    }
}

fn condition(c: &TimeCondition) -> String {
    match c {
        TimeCondition::During(n) => format!("during {n}"),
        TimeCondition::Outside(n) => format!("outside {n}"),
    }
}

/// A target as the trace shows it.
fn describe(t: &Target) -> String {
    match t {
        Target::Extension(e) => format!("target extension {e}"),
        Target::Group(g) => format!("target group {g}"),
        Target::Alias(a) => format!("target alias {a}: dial {a} instead"),
        Target::Reject { status, reason } => format!(
            "target reject {status} {}",
            reason.as_deref().unwrap_or(phrase(*status))
        ),
        Target::Trunk => "target trunk".into(),
    }
}

/// The standard reason phrase of the statuses a rule is likely to use.
fn phrase(status: u16) -> &'static str {
    match status {
        403 => "Forbidden",
        404 => "Not Found",
        480 => "Temporarily Unavailable",
        484 => "Address Incomplete",
        486 => "Busy Here",
        488 => "Not Acceptable Here",
        503 => "Service Unavailable",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        _ => "Rejected",
    }
}

#[cfg(test)]
#[path = "route_tests.rs"]
mod tests;
