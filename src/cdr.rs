//! What a call leaves behind, in one shape for everyone: the proxy makes these records
//! ([`crate::proxy::records`]), the store keeps them (`store::cdr` maps them to rows and back),
//! the CLI shows them. Plain data: no I/O, no clock (times are Unix milliseconds).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::types::OpdCode;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Disposition {
    /// Answered (2xx) and ended by a BYE.
    Answered,
    /// The callee was busy (486/600).
    Busy,
    /// Nobody answered before the ring timeout (408/480 after ringing).
    NoAnswer,
    /// The caller hung up before an answer (CANCEL).
    Cancelled,
    /// Refused by the dialplan or the callee (403, 404, 603, …).
    Rejected,
    /// Could not be set up (no registration, trunk or transport failure, 5xx).
    Failed,
    /// An answered dialog whose phones vanished, ended at the maximum dialog age or when a
    /// session timer (RFC 4028) ran out.
    Expired,
    /// An answered call ended because its media stopped flowing.
    MediaTimeout,
    /// Refused before reaching the trunk: the caller may not dial that class of number, or
    /// a toll limit (concurrent or hourly trunk calls) was reached, or the monthly budget of
    /// the caller's OPD (or its own) is used up. The route says which.
    Blocked,
    /// Answered and still in progress when the switch stopped without ending it (a crash or
    /// `kill -9`); recorded at the next start, ending when the switch last had the call.
    Interrupted,
}

impl Disposition {
    /// Every disposition, in declaration order.
    pub const ALL: [Disposition; 10] = [
        Disposition::Answered,
        Disposition::Busy,
        Disposition::NoAnswer,
        Disposition::Cancelled,
        Disposition::Rejected,
        Disposition::Failed,
        Disposition::Expired,
        Disposition::MediaTimeout,
        Disposition::Blocked,
        Disposition::Interrupted,
    ];

    /// The stored and printed name (`no-answer`, `media-timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Answered => "answered",
            Disposition::Busy => "busy",
            Disposition::NoAnswer => "no-answer",
            Disposition::Cancelled => "cancelled",
            Disposition::Rejected => "rejected",
            Disposition::Failed => "failed",
            Disposition::Expired => "expired",
            Disposition::MediaTimeout => "media-timeout",
            Disposition::Blocked => "blocked",
            Disposition::Interrupted => "interrupted",
        }
    }
}

impl fmt::Display for Disposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a [`Disposition`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown call disposition '{0}'")]
pub struct UnknownDisposition(pub String);

impl FromStr for Disposition {
    type Err = UnknownDisposition;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Disposition::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| UnknownDisposition(s.to_owned()))
    }
}

/// One finished call. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CdrRecord {
    /// The caller's Call-ID.
    pub call_id: String,
    /// The calling extension (or the trunk's caller number).
    pub caller: String,
    /// The number as dialled.
    pub dialled: String,
    /// The extension (or trunk number) the call was finally routed to, if any.
    pub callee: Option<String>,
    pub caller_opd: Option<OpdCode>,
    pub callee_opd: Option<OpdCode>,
    /// How the dialplan routed it (e.g. `setda.toml:12 _1XXX`), for the operator.
    pub route: String,
    /// Whether the call went through the central trunk.
    pub trunk: bool,
    pub start_ms: i64,
    /// When the call was answered, if it was.
    pub answer_ms: Option<i64>,
    pub end_ms: i64,
    pub disposition: Disposition,
    /// The final SIP status of the INVITE (200 for an answered call).
    pub sip_status: u16,
    /// What the relay counted for the call's media (`None` when it was not anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaTotals>,
}

/// The relay's counters of a call, summed over its streams, per direction ("a2b" is caller to
/// callee).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaTotals {
    pub packets_a2b: u64,
    pub packets_b2a: u64,
    /// RTP packets missing from the sequence (RFC 3550 A.1).
    pub lost_a2b: u64,
    pub lost_b2a: u64,
    /// The highest RFC 3550 interarrival jitter of any stream and direction, in microseconds.
    pub jitter_us_max: u64,
}

impl CdrRecord {
    /// Talk time: end − answer for a call that was answered, else 0 (never negative).
    pub fn duration_ms(&self) -> i64 {
        self.answer_ms.map_or(0, |a| (self.end_ms - a).max(0))
    }
}

/// A trunk call of the last hour, as the store returns it at start (`Store::trunk_calls_since`)
/// so the toll guard's hourly limits hold across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkCallRow {
    pub caller: String,
    pub caller_opd: Option<OpdCode>,
    pub start_ms: i64,
    pub route: String,
}

/// A change to the answered calls in progress (`calls_open`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenCallOp {
    /// A call was answered: its record as it would read if it were cut off now
    /// (`interrupted`, ending at the answer).
    Open {
        from_tag: String,
        record: Box<CdrRecord>,
        now_ms: i64,
    },
    /// The call ended; its finished record is written in the same transaction.
    Close { call_id: String, from_tag: String },
}
