//! The video side of a conference room: a selective forwarding unit (SFU), sans-IO.
//!
//! A room's participants each publish at most one video stream (their first video m-line)
//! and receive on every video m-line they offered: one line is one *slot*, showing one other
//! publisher at a time. Slots are filled **last-N by talker**: the publishers who spoke most
//! recently (the mixer's talker detection says who), then by joining order; a SIP video phone
//! with one video line therefore sees the current talker, a browser that offered four sees
//! the last four. N is capped so that the room's egress stays within its budget
//! ([`SfuConfig::egress_bps`], measured from the publishers' rates each second).
//!
//! Nothing is transcoded: packets are copied with the slot's payload type, SSRC, and a
//! sequence and timestamp that continue across switches, so each slot is one continuous
//! stream for the receiver. A slot switches to its next publisher on that publisher's
//! keyframe (VP8's payload header says which packets start one), asked for with a PLI when
//! the slot is assigned; if none comes within [`SWITCH_WAIT`] it switches anyway.
//! Keyframe requests to a publisher — ours, and receivers' PLI/FIR, which are not passed on
//! one by one — are sent at most once per [`KEYFRAME_INTERVAL`] (no PLI storms): a request
//! inside the interval is held and sent when it ends, so a new subscriber's first keyframe
//! comes within the interval plus the publisher's encoder time.
//!
//! The core takes packets and an `Instant` and queues what to send
//! ([`Sfu::poll_transmit`]); its only timer is [`Sfu::poll_timeout`] (held keyframe requests
//! and the once-a-second budget check, only while someone publishes).

use std::time::{Duration, Instant};

use super::mixer::ParticipantId;
use super::rtp::{pli, rtcp_asks_keyframe, RtpHeader, RTP_HEADER_LEN};

/// The least time between two keyframe requests to one publisher.
pub const KEYFRAME_INTERVAL: Duration = Duration::from_millis(250);
/// How long a slot waits for its next publisher's keyframe before switching anyway.
pub const SWITCH_WAIT: Duration = Duration::from_millis(1500);
/// How often publishers' rates are measured and N is checked against the budget.
pub const BUDGET_PERIOD: Duration = Duration::from_secs(1);
/// A publisher's rate before it has been measured.
pub const ASSUMED_BPS: u64 = 1_500_000;
/// The default egress budget of a room (the issue's ≤ 150 Mbps on a 1 Gbps WAN).
pub const DEFAULT_EGRESS_BPS: u64 = 150_000_000;
/// The RTP clock of video (VP8, VP9, H.264).
const VIDEO_CLOCK: u32 = 90_000;

/// A room's video settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SfuConfig {
    /// What the room may send in all, in bits per second.
    pub egress_bps: u64,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            egress_bps: DEFAULT_EGRESS_BPS,
        }
    }
}

/// One video m-line of a participant, as negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoLine {
    /// The payload type of the room's codec (VP8) on this line.
    pub pt: u8,
    /// The participant sends its camera on this line (only the first line publishes).
    pub publish: bool,
    /// The room sends a slot on this line.
    pub receive: bool,
    /// Our SSRC on this line.
    pub ssrc: u32,
}

/// What kind of packet a transmit is, for the driver's choice of socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    Rtp,
    Rtcp,
}

/// Counters of the room's video.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Participants whose camera reaches the room.
    pub publishers: usize,
    /// Slots showing someone.
    pub subscriptions: usize,
    /// Packets sent to receivers, since the room began.
    pub forwarded: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Packets dropped (not RTP, wrong payload type, a participant that may not publish).
    pub dropped: u64,
    /// The current N (slots filled per receiver at most).
    pub last_n: usize,
}

/// One receiving slot.
#[derive(Debug, Clone)]
struct Slot {
    line: VideoLine,
    /// Whose packets flow into it now.
    current: Option<ParticipantId>,
    /// Whom it should show (it switches on that one's keyframe).
    wanted: Option<ParticipantId>,
    wanted_since: Option<Instant>,
    seq_delta: u16,
    ts_delta: u32,
    /// The last sequence and timestamp sent, and when.
    last: Option<(u16, u32, Instant)>,
}

/// One participant.
#[derive(Debug, Clone)]
struct Party {
    /// Its publishing line's payload type, if it publishes.
    publish_pt: Option<u8>,
    /// Our SSRC toward it (sender of our RTCP).
    our_ssrc: u32,
    slots: Vec<(u8, Slot)>,
    admitted: bool,
    joined: u64,
    spoke: Option<Instant>,
    /// Its stream's SSRC, once seen.
    ssrc: Option<u32>,
    packets: u64,
    window_bytes: u64,
    rate_bps: Option<u64>,
    last_request: Option<Instant>,
    request_held: bool,
    /// Slots (receiver, index in its `slots`) that show it or wait for it.
    audience: Vec<(ParticipantId, usize)>,
}

/// The video forwarding of one room.
#[derive(Debug, Clone)]
pub struct Sfu {
    config: SfuConfig,
    parties: Vec<Option<Party>>,
    joins: u64,
    /// Publishers with a keyframe request held (so that the timer needs no scan when none).
    held: usize,
    last_n: usize,
    next_budget: Option<Instant>,
    stats: SfuStats,
    buf: Vec<u8>,
    out: Vec<(ParticipantId, u8, Packet, u32, u32)>,
    sent: usize,
}

impl Sfu {
    pub fn new(config: SfuConfig) -> Sfu {
        Sfu {
            config,
            parties: Vec::new(),
            joins: 0,
            held: 0,
            last_n: usize::MAX,
            next_budget: None,
            stats: SfuStats::default(),
            buf: Vec::new(),
            out: Vec::new(),
            sent: 0,
        }
    }

    /// A participant with video lines joins (one without any need not be added). `admitted`
    /// is false while it still owes the room its PIN: it neither sees nor is seen.
    pub fn add(
        &mut self,
        p: ParticipantId,
        lines: &[VideoLine],
        our_ssrc: u32,
        admitted: bool,
        now: Instant,
    ) {
        let k = p.0 as usize;
        if self.parties.len() <= k {
            self.parties.resize(k + 1, None);
        }
        self.joins += 1;
        let publish_pt = lines.first().filter(|l| l.publish).map(|l| l.pt);
        let slots = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.receive)
            .map(|(i, l)| {
                (
                    i as u8,
                    Slot {
                        line: *l,
                        current: None,
                        wanted: None,
                        wanted_since: None,
                        seq_delta: (l.ssrc >> 16) as u16,
                        ts_delta: l.ssrc.rotate_left(9),
                        last: None,
                    },
                )
            })
            .collect();
        self.parties[k] = Some(Party {
            publish_pt,
            our_ssrc,
            slots,
            admitted,
            joined: self.joins,
            spoke: None,
            ssrc: None,
            packets: 0,
            window_bytes: 0,
            rate_bps: None,
            last_request: None,
            request_held: false,
            audience: Vec::new(),
        });
        self.assign(now);
    }

    /// A participant that entered its PIN sees and is seen from now on.
    pub fn admit(&mut self, p: ParticipantId, now: Instant) {
        if let Some(party) = self.party_mut(p) {
            if !party.admitted {
                party.admitted = true;
                self.assign(now);
            }
        }
    }

    /// A participant leaves.
    pub fn remove(&mut self, p: ParticipantId, now: Instant) {
        if let Some(slot) = self.parties.get_mut(p.0 as usize) {
            if let Some(gone) = slot.take() {
                if gone.request_held {
                    self.held -= 1;
                }
                for party in self.parties.iter_mut().flatten() {
                    for (_, s) in party.slots.iter_mut() {
                        if s.current == Some(p) {
                            s.current = None;
                        }
                        if s.wanted == Some(p) {
                            s.wanted = None;
                        }
                    }
                }
                self.assign(now);
            }
        }
    }

    /// Is anyone here?
    pub fn is_empty(&self) -> bool {
        self.parties.iter().all(Option::is_none)
    }

    /// A participant started talking: it moves to the front of the last-N order.
    pub fn spoke(&mut self, p: ParticipantId, now: Instant) {
        if let Some(party) = self.party_mut(p) {
            party.spoke = Some(now);
            if party.publish_pt.is_some() {
                self.assign(now);
            }
        }
    }

    fn party_mut(&mut self, p: ParticipantId) -> Option<&mut Party> {
        self.parties.get_mut(p.0 as usize)?.as_mut()
    }

    /// An RTP packet from participant `p` on its video line `line`: forwarded to the slots
    /// that show it (or switch to it on a keyframe).
    pub fn handle_rtp(&mut self, p: ParticipantId, line: u8, bytes: &[u8], now: Instant) {
        let Some(h) = RtpHeader::parse(bytes) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(party) = self.parties.get_mut(p.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        if line != 0 || !party.admitted || party.publish_pt != Some(h.payload_type) {
            self.stats.dropped += 1;
            return;
        }
        let first = party.packets == 0;
        party.packets += 1;
        party.window_bytes += bytes.len() as u64;
        party.ssrc = Some(h.ssrc);
        if first {
            // A camera that is live takes its place in the order.
            self.assign(now);
        }
        let keyframe = vp8_keyframe_start(bytes);
        let audience = std::mem::take(
            &mut self.parties[p.0 as usize]
                .as_mut()
                .expect("checked above")
                .audience,
        );
        let mut switched = false;
        for &(r, k) in &audience {
            let Some(receiver) = self.parties.get_mut(r.0 as usize).and_then(Option::as_mut) else {
                continue;
            };
            let Some((line_no, slot)) = receiver.slots.get_mut(k) else {
                continue;
            };
            if slot.wanted == Some(p) && slot.current != Some(p) {
                let waited = slot
                    .wanted_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= SWITCH_WAIT);
                if !(keyframe || waited) {
                    continue;
                }
                // Switch: the slot's stream continues where it left off.
                let (seq, ts) = match slot.last {
                    Some((seq, ts, at)) => {
                        let gap = now.saturating_duration_since(at).as_millis() as u32;
                        let ticks = (gap.max(1)).saturating_mul(VIDEO_CLOCK / 1000);
                        (seq.wrapping_add(1), ts.wrapping_add(ticks))
                    }
                    None => (slot.seq_delta, slot.ts_delta),
                };
                slot.seq_delta = seq.wrapping_sub(h.sequence);
                slot.ts_delta = ts.wrapping_sub(h.timestamp);
                slot.current = Some(p);
                slot.wanted_since = None;
                switched = true;
            } else if slot.current != Some(p) {
                continue;
            }
            let seq = h.sequence.wrapping_add(slot.seq_delta);
            let ts = h.timestamp.wrapping_add(slot.ts_delta);
            slot.last = Some((seq, ts, now));
            let start = self.buf.len();
            self.buf.extend_from_slice(bytes);
            let b = &mut self.buf[start..];
            b[1] = (b[1] & 0x80) | (slot.line.pt & 0x7f);
            b[2..4].copy_from_slice(&seq.to_be_bytes());
            b[4..8].copy_from_slice(&ts.to_be_bytes());
            b[8..12].copy_from_slice(&slot.line.ssrc.to_be_bytes());
            self.out
                .push((r, *line_no, Packet::Rtp, start as u32, bytes.len() as u32));
            self.stats.forwarded += 1;
        }
        if let Some(party) = self.party_mut(p) {
            party.audience = audience;
        }
        if switched {
            // A slot that switched no longer waits on its old publisher.
            self.index();
        }
    }

    /// An RTCP packet from participant `p` on its video line `line`: a receiver's PLI or FIR
    /// becomes a (throttled) keyframe request to the publisher its slot shows.
    pub fn handle_rtcp(&mut self, p: ParticipantId, line: u8, bytes: &[u8], now: Instant) {
        if !rtcp_asks_keyframe(bytes) {
            return;
        }
        let publisher = self.party_mut(p).and_then(|party| {
            let (_, s) = party.slots.iter().find(|(l, _)| *l == line)?;
            s.current.or(s.wanted)
        });
        if let Some(publisher) = publisher {
            self.request_keyframe(publisher, now);
        }
    }

    /// Asks `p` for a keyframe now, or when its interval ends.
    fn request_keyframe(&mut self, p: ParticipantId, now: Instant) {
        let Some(party) = self.parties.get_mut(p.0 as usize).and_then(Option::as_mut) else {
            return;
        };
        if party.publish_pt.is_none() {
            return;
        }
        match party.last_request {
            Some(t) if now.saturating_duration_since(t) < KEYFRAME_INTERVAL => {
                if !party.request_held {
                    party.request_held = true;
                    self.held += 1;
                }
            }
            _ => {
                party.last_request = Some(now);
                if party.request_held {
                    party.request_held = false;
                    self.held -= 1;
                }
                let pli = pli(party.our_ssrc, party.ssrc.unwrap_or(0));
                let start = self.buf.len();
                self.buf.extend_from_slice(&pli);
                self.out
                    .push((p, 0, Packet::Rtcp, start as u32, pli.len() as u32));
                self.stats.keyframe_requests += 1;
            }
        }
    }

    /// The next instant [`Sfu::handle_timeout`] has work: a held keyframe request, or the
    /// budget check while someone publishes.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.held == 0 {
            // The common case, asked at every wake-up of the room's thread: no scan.
            return self.next_budget;
        }
        let held = self
            .parties
            .iter()
            .flatten()
            .filter(|p| p.request_held)
            .filter_map(|p| p.last_request.map(|t| t + KEYFRAME_INTERVAL))
            .min();
        match (held, self.next_budget) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends held keyframe requests that are due; measures rates and checks N each second.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<ParticipantId> = if self.held == 0 {
            Vec::new()
        } else {
            self.parties
                .iter()
                .enumerate()
                .filter_map(|(i, p)| {
                    let p = p.as_ref()?;
                    let t = p.last_request? + KEYFRAME_INTERVAL;
                    (p.request_held && t <= now).then_some(ParticipantId(i as u32))
                })
                .collect()
        };
        for p in due {
            self.request_keyframe(p, now);
        }
        if self.next_budget.is_some_and(|t| t <= now) {
            let secs = BUDGET_PERIOD.as_secs_f64();
            for party in self.parties.iter_mut().flatten() {
                if party.packets > 0 {
                    party.rate_bps = Some((party.window_bytes as f64 * 8.0 / secs) as u64);
                }
                party.window_bytes = 0;
            }
            self.next_budget = Some(now + BUDGET_PERIOD);
            let n = self.budget_n();
            if n != self.last_n {
                tracing::debug!(last_n = n, "sfu: the room's budget changes N");
                self.assign(now);
            }
        }
    }

    /// The largest N whose egress fits the budget (at least 1: the talker is always shown).
    fn budget_n(&self) -> usize {
        let live: Vec<&Party> = self
            .parties
            .iter()
            .flatten()
            .filter(|p| p.admitted && p.publish_pt.is_some() && p.packets > 0)
            .collect();
        let rates: Vec<u64> = live.iter().filter_map(|p| p.rate_bps).collect();
        let rate = if rates.is_empty() {
            ASSUMED_BPS
        } else {
            rates.iter().sum::<u64>() / rates.len() as u64
        }
        .max(1);
        let receivers: Vec<usize> = self
            .parties
            .iter()
            .flatten()
            .filter(|p| p.admitted)
            .map(|p| p.slots.len())
            .collect();
        let most = receivers.iter().copied().max().unwrap_or(0);
        let others = live.len().saturating_sub(1);
        let mut n = most.min(live.len()).max(1);
        while n > 1 {
            let egress: u64 = receivers
                .iter()
                .map(|&k| k.min(n).min(others) as u64 * rate)
                .sum();
            if egress <= self.config.egress_bps {
                break;
            }
            n -= 1;
        }
        n
    }

    /// Fills every receiver's slots with the last-N publishers (stable: a publisher that stays
    /// in a receiver's set keeps its slot); asks the newly wanted for keyframes.
    fn assign(&mut self, now: Instant) {
        let mut order: Vec<(ParticipantId, Option<Instant>, u64)> = self
            .parties
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let p = p.as_ref()?;
                (p.admitted && p.publish_pt.is_some() && p.packets > 0).then_some((
                    ParticipantId(i as u32),
                    p.spoke,
                    p.joined,
                ))
            })
            .collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.2.cmp(&b.2)));
        self.next_budget = match (order.is_empty(), self.next_budget) {
            (true, _) => None,
            (false, Some(t)) => Some(t),
            (false, None) => Some(now + BUDGET_PERIOD),
        };
        let n = self.budget_n();
        self.last_n = n;
        let mut asks = Vec::new();
        for (i, party) in self.parties.iter_mut().enumerate() {
            let Some(party) = party.as_mut() else {
                continue;
            };
            let me = ParticipantId(i as u32);
            let want: Vec<ParticipantId> = if party.admitted {
                order
                    .iter()
                    .map(|o| o.0)
                    .filter(|&o| o != me)
                    .take(party.slots.len().min(n))
                    .collect()
            } else {
                Vec::new()
            };
            // Keep those still wanted; free the others.
            for (_, s) in party.slots.iter_mut() {
                if s.wanted.is_some_and(|w| !want.contains(&w)) {
                    s.wanted = None;
                    s.wanted_since = None;
                }
            }
            for w in want {
                if party.slots.iter().any(|(_, s)| s.wanted == Some(w)) {
                    continue;
                }
                // Prefer a slot that already shows it, then an empty one, then any free one.
                let free = party
                    .slots
                    .iter()
                    .position(|(_, s)| s.wanted.is_none() && s.current == Some(w))
                    .or_else(|| {
                        party
                            .slots
                            .iter()
                            .position(|(_, s)| s.wanted.is_none() && s.current.is_none())
                    })
                    .or_else(|| party.slots.iter().position(|(_, s)| s.wanted.is_none()));
                if let Some(k) = free {
                    let s = &mut party.slots[k].1;
                    s.wanted = Some(w);
                    if s.current != Some(w) {
                        s.wanted_since = Some(now);
                        asks.push(w);
                    }
                }
            }
            // A slot with nobody to show goes dark; one waiting for its next publisher keeps
            // showing the last until the switch.
            for (_, s) in party.slots.iter_mut() {
                if s.wanted.is_none() {
                    s.current = None;
                }
            }
        }
        self.index();
        asks.sort_by_key(|p| p.0);
        asks.dedup();
        for p in asks {
            self.request_keyframe(p, now);
        }
    }

    /// Rebuilds each publisher's audience from the slots.
    fn index(&mut self) {
        for party in self.parties.iter_mut().flatten() {
            party.audience.clear();
        }
        let mut pairs = Vec::new();
        for (i, party) in self.parties.iter().enumerate() {
            let Some(party) = party else { continue };
            for (k, (_, s)) in party.slots.iter().enumerate() {
                for p in [s.current, s.wanted].into_iter().flatten() {
                    pairs.push((p, ParticipantId(i as u32), k));
                }
            }
        }
        pairs.sort_by_key(|&(p, r, k)| (p.0, r.0, k));
        pairs.dedup();
        for (p, r, k) in pairs {
            if let Some(party) = self.party_mut(p) {
                party.audience.push((r, k));
            }
        }
    }

    /// The next packet to send: to whom, on which of its video lines, RTP or RTCP.
    pub fn poll_transmit(&mut self) -> Option<(ParticipantId, u8, Packet, &[u8])> {
        if self.sent >= self.out.len() {
            self.out.clear();
            self.buf.clear();
            self.sent = 0;
            return None;
        }
        let (p, line, kind, start, len) = self.out[self.sent];
        self.sent += 1;
        Some((
            p,
            line,
            kind,
            &self.buf[start as usize..(start + len) as usize],
        ))
    }

    /// The room's video counters.
    pub fn stats(&self) -> SfuStats {
        let parties = self.parties.iter().flatten();
        SfuStats {
            publishers: parties
                .clone()
                .filter(|p| p.admitted && p.publish_pt.is_some() && p.packets > 0)
                .count(),
            subscriptions: parties
                .flat_map(|p| p.slots.iter())
                .filter(|(_, s)| s.current.is_some())
                .count(),
            last_n: if self.last_n == usize::MAX {
                0
            } else {
                self.last_n
            },
            ..self.stats
        }
    }

    /// Whom participant `p`'s slots show now, by line.
    pub fn showing(&self, p: ParticipantId) -> Vec<(u8, Option<ParticipantId>)> {
        self.parties
            .get(p.0 as usize)
            .and_then(Option::as_ref)
            .map(|party| party.slots.iter().map(|(l, s)| (*l, s.current)).collect())
            .unwrap_or_default()
    }
}

/// Does this RTP packet carry the first partition of a VP8 keyframe (RFC 7741 §4)?
pub fn vp8_keyframe_start(rtp: &[u8]) -> bool {
    let Some(payload) = rtp_payload(rtp) else {
        return false;
    };
    let Some(&d) = payload.first() else {
        return false;
    };
    // X R N S R PID: the start of partition 0.
    if d & 0x10 == 0 || d & 0x07 != 0 {
        return false;
    }
    let mut i = 1;
    if d & 0x80 != 0 {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: one byte, or two when its M bit is set.
            match payload.get(i) {
                Some(&b) if b & 0x80 != 0 => i += 2,
                Some(_) => i += 1,
                None => return false,
            }
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    // The VP8 payload header: P (inverse keyframe flag) is bit 0 of its first byte.
    payload.get(i).is_some_and(|b| b & 0x01 == 0)
}

/// The payload of an RTP packet (after CSRCs and the header extension; padding kept).
fn rtp_payload(rtp: &[u8]) -> Option<&[u8]> {
    let first = *rtp.first()?;
    let mut i = RTP_HEADER_LEN + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let ext = rtp.get(i + 2..i + 4)?;
        i += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    rtp.get(i..)
}

#[cfg(test)]
mod tests;
