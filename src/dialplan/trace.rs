//! The explanation of a routing decision: one [`TraceStep`] per step the evaluator took, and
//! the one-line rendering of a [`Decision`] that `tambun dialplan trace` prints last. Plain
//! values and formatting; no I/O.

use std::fmt;
use std::path::PathBuf;

use super::route::{Decision, FeatureAction, RingPlan, RoomPlan};
use super::Strategy;

/// One step of a routing decision: where in the plan it happened and what was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    /// The dialplan file the step comes from, if any.
    pub file: Option<PathBuf>,
    /// The 1-based line in `file`, if the step comes from one place.
    pub line: Option<usize>,
    pub what: String,
}

impl fmt::Display for TraceStep {
    /// `file:line: what`, `file: what`, or just `what`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: {}", file.display(), self.what),
            (Some(file), None) => write!(f, "{}: {}", file.display(), self.what),
            (None, _) => f.write_str(&self.what),
        }
    }
}

impl fmt::Display for Decision {
    /// `ring 2300`, `ring group helpdesk (parallel, 30 s): 3551, 3552`,
    /// `trunk 0536123456 (local)`, `reject 403 …`, `feature: do not disturb on`,
    /// `room 8001 'Rapat Pimpinan' (PIN, at most 20)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Ring(plan) => write!(f, "ring {plan}"),
            Decision::Trunk { number, class, .. } => write!(f, "trunk {number} ({class})"),
            Decision::Reject { status, reason } => write!(f, "reject {status} {reason}"),
            Decision::Feature(action) => write!(f, "feature: {action}"),
            Decision::Room(plan) => write!(f, "room {plan}"),
        }
    }
}

impl fmt::Display for RoomPlan {
    /// The number, the name and how one joins; never the PINs themselves.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pin = match (&self.pin, &self.moderator_pin) {
            (Some(_), Some(_)) => "PIN, moderator PIN",
            (Some(_), None) => "PIN",
            (None, Some(_)) => "no PIN, moderator PIN",
            (None, None) => "no PIN",
        };
        write!(
            f,
            "{} '{}' ({pin}, at most {}",
            self.number, self.name, self.max
        )?;
        if self.moderator {
            f.write_str(", as a moderator")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for RingPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let members: Vec<&str> = self.members.iter().map(|m| m.extension.as_str()).collect();
        let Some(group) = &self.group else {
            return f.write_str(&members.join(", "));
        };
        write!(
            f,
            "group {group} ({}): {}",
            strategy(self.strategy),
            members.join(", ")
        )
    }
}

/// `parallel, 30 s` or `sequential, 15 s each`.
pub(super) fn strategy(s: Strategy) -> String {
    match s {
        Strategy::Parallel { timeout_secs } => format!("parallel, {timeout_secs} s"),
        Strategy::Sequential {
            member_timeout_secs,
        } => format!("sequential, {member_timeout_secs} s each"),
    }
}

impl fmt::Display for FeatureAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureAction::SetForwardAlways(to) => write!(f, "forward all calls to {to}"),
            FeatureAction::ClearForward => f.write_str("forwarding off"),
            FeatureAction::DndOn => f.write_str("do not disturb on"),
            FeatureAction::DndOff => f.write_str("do not disturb off"),
        }
    }
}
