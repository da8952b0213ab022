//! Call tracking for the call records: every initial INVITE the proxy routes gets a record
//! (caller, dialled number, route, times); it is finished by the final response, the BYE, or
//! the dialog's maximum duration (RFC 4028 session timers shorten it when the phones use them),
//! and then handed out as a [`CallRecord`] for the store. Answers and ends of answered calls
//! are handed out too ([`OpenCallOp`]), so the store keeps the calls in progress and a crash
//! leaves an `interrupted` record of each.
//!
//! Sans-IO: times come in; finished records queue for `poll`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::types::OpdCode;

pub use crate::cdr::{CdrRecord as CallRecord, Disposition, OpenCallOp};

/// The disposition of a call that ended with this final status (never answered).
pub fn disposition_of_failure(status: u16) -> Disposition {
    match status {
        486 | 600 => Disposition::Busy,
        487 => Disposition::Cancelled,
        408 | 480 => Disposition::NoAnswer,
        500..=599 => Disposition::Failed,
        _ => Disposition::Rejected,
    }
}

/// A live call, for `tambun calls`.
#[derive(Debug, Clone, Serialize)]
pub struct LiveCall {
    pub call_id: String,
    pub caller: String,
    pub callee: Option<String>,
    pub dialled: String,
    pub caller_opd: Option<OpdCode>,
    pub callee_opd: Option<OpdCode>,
    pub route: String,
    pub state: &'static str,
    pub started_at_ms: i64,
    pub answered_at_ms: Option<i64>,
    pub duration_secs: u64,
    /// Per stream and direction relay counters (filled in by the admin API from the relay).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<serde_json::Value>,
    /// The call's browser legs (WebRTC: DTLS state, SRTP profile, packets, loss, RTT), filled
    /// in by the admin API from the relay.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub webrtc: Vec<serde_json::Value>,
    /// The relay session of the call, if its media is anchored.
    #[serde(skip)]
    pub media_session: Option<u64>,
    /// The caller's and the callee's codecs when the relay transcodes between them
    /// (`opus/PCMU`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcoding: Option<String>,
}

/// What is known when a call is routed.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub call_id: String,
    pub from_tag: String,
    /// The calling extension, or the outside number of a call from a carrier.
    pub caller: String,
    pub caller_opd: Option<OpdCode>,
    pub dialled: String,
    pub route: String,
    pub trunk: bool,
}

struct Entry {
    call: NewCall,
    start_ms: i64,
    answer_ms: Option<i64>,
    answered_at: Option<Instant>,
    callee: Option<String>,
    callee_opd: Option<OpdCode>,
    to_tag: Option<String>,
    expires: Option<Instant>,
}

/// Calls from routing to their end.
pub struct Records {
    /// Call-ID → calls (one per From-tag; forked or spiralled calls share a Call-ID).
    by_call_id: HashMap<String, Vec<Entry>>,
    finished: Vec<CallRecord>,
    /// Answered calls opened and closed since the last drain, in order.
    open_ops: Vec<OpenCallOp>,
    /// (Call-ID, From-tag) of trunk calls whose record ended, for the toll guard.
    trunk_ended: Vec<(String, String)>,
    max_duration: Duration,
}

impl Records {
    pub fn new(max_duration: Duration) -> Records {
        Records {
            by_call_id: HashMap::new(),
            finished: Vec::new(),
            open_ops: Vec::new(),
            trunk_ended: Vec::new(),
            max_duration,
        }
    }

    pub fn start(&mut self, call: NewCall, now_ms: u64) {
        let list = self.by_call_id.entry(call.call_id.clone()).or_default();
        // A new INVITE with the Call-ID and From-tag of a call still tracked replaces it: a
        // trunk call leaves the toll count, an answered one the open calls.
        if let Some(old) = list.iter().find(|e| e.call.from_tag == call.from_tag) {
            let key = || (call.call_id.clone(), call.from_tag.clone());
            if old.call.trunk {
                self.trunk_ended.push(key());
            }
            if old.answer_ms.is_some() {
                let (call_id, from_tag) = key();
                self.open_ops.push(OpenCallOp::Close { call_id, from_tag });
            }
        }
        list.retain(|e| e.call.from_tag != call.from_tag);
        list.push(Entry {
            call,
            start_ms: now_ms as i64,
            answer_ms: None,
            answered_at: None,
            callee: None,
            callee_opd: None,
            to_tag: None,
            expires: None,
        });
    }

    fn find(&mut self, call_id: &str, tags: &[Option<&str>]) -> Option<&mut Entry> {
        self.by_call_id.get_mut(call_id)?.iter_mut().find(|e| {
            tags.iter()
                .flatten()
                .any(|t| *t == e.call.from_tag || e.to_tag.as_deref() == Some(*t))
        })
    }

    /// The To tag of the tracked call with this Call-ID and caller's From tag, once it is
    /// answered (an answered call has exactly one dialog).
    pub fn answered_to_tag(&self, call_id: &str, caller_tag: &str) -> Option<&str> {
        self.by_call_id
            .get(call_id)?
            .iter()
            .find(|e| e.call.from_tag == caller_tag && e.answer_ms.is_some())?
            .to_tag
            .as_deref()
    }

    /// The call was answered by `callee`; `session_expires` from the 2xx, if any.
    #[allow(clippy::too_many_arguments)]
    pub fn answered(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: Option<&str>,
        callee: Option<String>,
        callee_opd: Option<OpdCode>,
        session_expires: Option<u32>,
        now: Instant,
        now_ms: u64,
    ) {
        let max = self.max_duration;
        if let Some(e) = self.find(call_id, &[Some(from_tag)]) {
            if e.answer_ms.is_some() {
                return;
            }
            e.answer_ms = Some(now_ms as i64);
            e.answered_at = Some(now);
            e.to_tag = to_tag.map(str::to_string);
            if callee.is_some() {
                e.callee = callee;
                e.callee_opd = callee_opd;
            }
            e.expires = Some(now + expiry(max, session_expires));
            let open = OpenCallOp::Open {
                from_tag: e.call.from_tag.clone(),
                record: Box::new(record(e, Disposition::Interrupted, 200, now_ms as i64)),
                now_ms: now_ms as i64,
            };
            self.open_ops.push(open);
        }
    }

    /// Remembers who is being rung (the callee of a call that is not answered yet).
    pub fn ringing(&mut self, call_id: &str, from_tag: &str, callee: &str, opd: Option<OpdCode>) {
        if let Some(e) = self.find(call_id, &[Some(from_tag)]) {
            if e.callee.is_none() {
                e.callee = Some(callee.to_string());
                e.callee_opd = opd;
            }
        }
    }

    /// The call was routed again (a forward on busy or no answer), or the toll guard blocked
    /// it: the route the record shows and whether it goes through the trunk.
    pub fn rerouted(&mut self, call_id: &str, from_tag: &str, route: String, trunk: bool) {
        let Some(e) = self.find(call_id, &[Some(from_tag)]) else {
            return;
        };
        let left_trunk = e.call.trunk && !trunk;
        e.call.route = route;
        e.call.trunk = trunk;
        if left_trunk {
            self.trunk_ended
                .push((call_id.to_owned(), from_tag.to_owned()));
        }
    }

    /// (Call-ID, From-tag) of the trunk calls ended since the last call.
    pub fn drain_trunk_ended(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.trunk_ended)
    }

    /// A re-INVITE or UPDATE refreshed the session (RFC 4028).
    pub fn refreshed(
        &mut self,
        call_id: &str,
        tags: &[Option<&str>],
        session_expires: Option<u32>,
        now: Instant,
    ) {
        let max = self.max_duration;
        if let Some(e) = self.find(call_id, tags) {
            if e.answered_at.is_some() {
                if let Some(se) = session_expires {
                    e.expires = Some(now + expiry(max, Some(se)));
                }
            }
        }
    }

    /// The call failed before being answered.
    pub fn failed(&mut self, call_id: &str, from_tag: &str, status: u16, now_ms: u64) {
        self.finish(
            call_id,
            &[Some(from_tag)],
            disposition_of_failure(status),
            status,
            now_ms,
        );
    }

    /// The call failed before being answered, for a reason the status alone does not tell.
    pub fn failed_as(
        &mut self,
        call_id: &str,
        from_tag: &str,
        disposition: Disposition,
        status: u16,
        now_ms: u64,
    ) {
        self.finish(call_id, &[Some(from_tag)], disposition, status, now_ms);
    }

    /// A BYE passed: the call ended normally.
    pub fn ended(&mut self, call_id: &str, tags: &[Option<&str>], now_ms: u64) {
        self.finish(call_id, tags, Disposition::Answered, 200, now_ms);
    }

    fn finish(
        &mut self,
        call_id: &str,
        tags: &[Option<&str>],
        disposition: Disposition,
        status: u16,
        now_ms: u64,
    ) {
        let Some(list) = self.by_call_id.get_mut(call_id) else {
            return;
        };
        let Some(pos) = list.iter().position(|e| {
            tags.iter()
                .flatten()
                .any(|t| *t == e.call.from_tag || e.to_tag.as_deref() == Some(*t))
        }) else {
            return;
        };
        let e = list.swap_remove(pos);
        if list.is_empty() {
            self.by_call_id.remove(call_id);
        }
        if e.answer_ms.is_some() {
            self.open_ops.push(OpenCallOp::Close {
                call_id: e.call.call_id.clone(),
                from_tag: e.call.from_tag.clone(),
            });
        }
        if e.call.trunk {
            self.trunk_ended
                .push((e.call.call_id.clone(), e.call.from_tag.clone()));
        }
        // A failure after the answer (an error to the ACK, a late 4xx) does not unanswer a call.
        let disposition = if e.answer_ms.is_some()
            && !matches!(
                disposition,
                Disposition::Expired | Disposition::MediaTimeout
            ) {
            Disposition::Answered
        } else {
            disposition
        };
        self.finished
            .push(record(&e, disposition, status, now_ms as i64));
    }

    /// Has any call with this Call-ID been answered?
    pub fn is_answered(&self, call_id: &str) -> bool {
        self.by_call_id
            .get(call_id)
            .is_some_and(|l| l.iter().any(|e| e.answer_ms.is_some()))
    }

    /// The switch ended the answered call itself (its monthly budget ran out): a normal end.
    pub fn ended_by_switch(&mut self, call_id: &str, now_ms: u64) {
        self.finish_all(call_id, Disposition::Answered, 200, now_ms);
    }

    /// The relay saw no media for the call: it is being ended.
    pub fn media_timeout(&mut self, call_id: &str, now_ms: u64) {
        self.finish_all(call_id, Disposition::MediaTimeout, 408, now_ms);
    }

    /// Ends every record of `call_id` (each caller's tag) with `disposition` and `status`.
    fn finish_all(&mut self, call_id: &str, disposition: Disposition, status: u16, now_ms: u64) {
        let tags: Vec<String> = self
            .by_call_id
            .get(call_id)
            .map(|l| l.iter().map(|e| e.call.from_tag.clone()).collect())
            .unwrap_or_default();
        for t in tags {
            self.finish(call_id, &[Some(&t)], disposition, status, now_ms);
        }
    }

    /// The earliest dialog expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.by_call_id
            .values()
            .flatten()
            .filter_map(|e| e.expires)
            .min()
    }

    /// Ends dialogs whose phones went silent.
    pub fn handle_timeout(&mut self, now: Instant, now_ms: u64) {
        let mut expired = Vec::new();
        for (id, list) in &self.by_call_id {
            for e in list {
                if e.expires.is_some_and(|t| t <= now) {
                    expired.push((id.clone(), e.call.from_tag.clone()));
                }
            }
        }
        for (id, tag) in expired {
            self.finish(&id, &[Some(&tag)], Disposition::Expired, 408, now_ms);
        }
    }

    /// Calls in progress: (all, answered).
    pub fn counts(&self) -> (u64, u64) {
        let mut c = (0, 0);
        for e in self.by_call_id.values().flatten() {
            c.0 += 1;
            c.1 += u64::from(e.answer_ms.is_some());
        }
        c
    }

    pub fn drain_finished(&mut self) -> Vec<CallRecord> {
        std::mem::take(&mut self.finished)
    }

    /// Answered calls opened and closed since the last call, in order (each close comes
    /// with the finished record [`Records::drain_finished`] hands out at the same time).
    pub fn drain_open_ops(&mut self) -> Vec<OpenCallOp> {
        std::mem::take(&mut self.open_ops)
    }

    pub fn live(&self, now: Instant) -> Vec<LiveCall> {
        let mut v: Vec<LiveCall> = self
            .by_call_id
            .values()
            .flatten()
            .map(|e| LiveCall {
                call_id: e.call.call_id.clone(),
                caller: e.call.caller.to_string(),
                callee: e.callee.clone(),
                dialled: e.call.dialled.clone(),
                caller_opd: e.call.caller_opd.clone(),
                callee_opd: e.callee_opd.clone(),
                route: e.call.route.clone(),
                state: if e.answer_ms.is_some() {
                    "answered"
                } else {
                    "ringing"
                },
                started_at_ms: e.start_ms,
                answered_at_ms: e.answer_ms,
                duration_secs: e
                    .answered_at
                    .map_or(0, |t| now.saturating_duration_since(t).as_secs()),
                media: Vec::new(),
                media_session: None,
                webrtc: Vec::new(),
                transcoding: None,
            })
            .collect();
        v.sort_by_key(|c| c.started_at_ms);
        v
    }

    pub fn len(&self) -> usize {
        self.by_call_id.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_call_id.is_empty()
    }
}

/// How long an answered dialog may live without a refresh: twice the session interval plus
/// slack when session timers are in use, otherwise the configured maximum.
fn expiry(max: Duration, session_expires: Option<u32>) -> Duration {
    match session_expires {
        Some(se) if se > 0 => Duration::from_secs(u64::from(se) * 2 + 32).min(max),
        _ => max,
    }
}

fn record(e: &Entry, disposition: Disposition, status: u16, end_ms: i64) -> CallRecord {
    CallRecord {
        call_id: e.call.call_id.clone(),
        caller: e.call.caller.to_string(),
        dialled: e.call.dialled.clone(),
        callee: e.callee.clone(),
        caller_opd: e.call.caller_opd.clone(),
        callee_opd: e.callee_opd.clone(),
        route: e.call.route.clone(),
        trunk: e.call.trunk,
        start_ms: e.start_ms,
        answer_ms: e.answer_ms,
        end_ms,
        disposition,
        sip_status: status,
        media: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> NewCall {
        NewCall {
            call_id: "c1".into(),
            from_tag: "f".into(),
            caller: "1000".parse().unwrap(),
            caller_opd: Some("setda".parse().unwrap()),
            dialled: "2300".into(),
            route: "extension 2300".into(),
            trunk: false,
        }
    }

    #[test]
    fn answered_then_bye_from_the_callee() {
        let mut r = Records::new(Duration::from_secs(3600));
        let t = Instant::now();
        r.start(call(), 1_000);
        r.answered(
            "c1",
            "f",
            Some("t"),
            Some("2300".into()),
            None,
            None,
            t,
            2_000,
        );
        assert_eq!(r.live(t)[0].state, "answered");
        // The callee hangs up: its From-tag is the caller's To-tag.
        r.ended("c1", &[Some("t"), Some("f")], 62_000);
        let recs = r.drain_finished();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].disposition, Disposition::Answered);
        assert_eq!(recs[0].answer_ms, Some(2_000));
        assert_eq!(recs[0].end_ms, 62_000);
        assert!(r.is_empty());
        // The store was told of the answer (the record a crash would leave) and of the end.
        let ops = r.drain_open_ops();
        let [OpenCallOp::Open {
            from_tag,
            record,
            now_ms,
        }, OpenCallOp::Close {
            call_id,
            from_tag: closed,
        }] = ops.as_slice()
        else {
            panic!("an open and a close: {ops:?}");
        };
        assert_eq!((from_tag.as_str(), *now_ms), ("f", 2_000));
        assert_eq!(record.disposition, Disposition::Interrupted);
        assert_eq!(record.callee.as_deref(), Some("2300"));
        assert_eq!((record.answer_ms, record.end_ms), (Some(2_000), 2_000));
        assert_eq!((call_id.as_str(), closed.as_str()), ("c1", "f"));
    }

    #[test]
    fn an_answered_call_replaced_by_a_new_invite_leaves_the_open_calls() {
        let mut r = Records::new(Duration::from_secs(3600));
        r.start(call(), 0);
        r.answered("c1", "f", Some("t"), None, None, None, Instant::now(), 5);
        r.start(call(), 10);
        let ops = r.drain_open_ops();
        assert!(
            matches!(ops.as_slice(), [OpenCallOp::Open { .. }, OpenCallOp::Close { call_id, from_tag }]
                if call_id == "c1" && from_tag == "f"),
            "{ops:?}"
        );
    }

    #[test]
    fn unanswered_calls_never_reach_the_open_calls() {
        let mut r = Records::new(Duration::from_secs(3600));
        r.start(call(), 0);
        r.failed("c1", "f", 486, 5);
        assert_eq!(r.drain_finished().len(), 1);
        assert!(r.drain_open_ops().is_empty());
    }

    #[test]
    fn failures_map_to_dispositions() {
        let mut r = Records::new(Duration::from_secs(3600));
        for (status, d) in [
            (486, Disposition::Busy),
            (487, Disposition::Cancelled),
            (480, Disposition::NoAnswer),
            (404, Disposition::Rejected),
            (503, Disposition::Failed),
        ] {
            r.start(call(), 0);
            r.failed("c1", "f", status, 5);
            assert_eq!(r.drain_finished()[0].disposition, d);
        }
    }

    #[test]
    fn silent_dialog_expires_by_session_timer() {
        let mut r = Records::new(Duration::from_secs(4 * 3600));
        let t = Instant::now();
        r.start(call(), 0);
        r.answered("c1", "f", Some("t"), None, None, Some(90), t, 10);
        assert_eq!(r.poll_timeout(), Some(t + Duration::from_secs(212)));
        r.handle_timeout(t + Duration::from_secs(211), 0);
        assert!(r.drain_finished().is_empty());
        r.handle_timeout(t + Duration::from_secs(212), 212_010);
        let recs = r.drain_finished();
        assert_eq!(recs[0].disposition, Disposition::Expired);
    }
}
