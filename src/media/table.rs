//! The forwarding table of one shard: sessions, their sockets (as slot numbers), latching and
//! per-direction counters. Sans-IO: the shard's I/O loop gives it commands and received
//! packets (slot, source, bytes, `now`) and gets back where to send them; it never touches a
//! socket, a clock or a lock. [`Table::handle_packet`] is the per-packet path.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rtp::{RtpCounters, RtpHeader, DEFAULT_CLOCK_RATE};
use super::{Direction, SessionId, Side, StreamStats};

/// A socket of the shard, by its index in the shard's socket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SlotId(pub u32);

/// What to do with a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send the bytes unchanged out of socket `via` to `to`.
    Forward {
        via: SlotId,
        to: SocketAddr,
    },
    Drop(DropReason),
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The port is latched to another source.
    Foreign,
    /// The other side has neither latched nor announced an address yet.
    NoDestination,
    /// The socket was closed between the wake-up and the read (a race, harmless).
    UnknownSlot,
}

/// The sockets of one stream: RTP and (without rtcp-mux) RTCP, per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSlots {
    pub rtp: [SlotId; 2],
    pub rtcp: Option<[SlotId; 2]>,
}

/// One relay socket's state: where its packets go and what arrived on it.
#[derive(Debug, Clone)]
struct Slot {
    /// The socket packets received here leave from (the other side's socket).
    peer: SlotId,
    /// The address this side's SDP announced (the destination until the side latches).
    announced: Option<SocketAddr>,
    /// The source of the first packet received here; the only source accepted afterwards.
    latched: Option<SocketAddr>,
    /// A dedicated RTCP socket: nothing to parse for loss and jitter.
    rtcp: bool,
    clock_rate: u32,
    packets: u64,
    bytes: u64,
    dropped_foreign: u64,
    dropped_no_destination: u64,
    last_packet: Option<Instant>,
    rtp: RtpCounters,
}

impl Slot {
    fn new(peer: SlotId, rtcp: bool) -> Slot {
        Slot {
            peer,
            announced: None,
            latched: None,
            rtcp,
            clock_rate: DEFAULT_CLOCK_RATE,
            packets: 0,
            bytes: 0,
            dropped_foreign: 0,
            dropped_no_destination: 0,
            last_packet: None,
            rtp: RtpCounters::default(),
        }
    }

    /// A new announced address. When it differs from the previous one (a re-INVITE that moves
    /// the phone's media: new socket, new network) the latch is released and the next packet
    /// latches again; the same address again (every refresh of a phone behind NAT) keeps it.
    fn announce(&mut self, addr: SocketAddr) {
        if self.announced.is_some_and(|old| old != addr) {
            self.latched = None;
        }
        self.announced = Some(addr);
    }

    /// Where packets for this side go: its latched source, else its announced address.
    #[inline]
    fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self.announced)
    }
}

#[derive(Debug, Clone)]
struct SessionEntry {
    call: u64,
    streams: Vec<StreamSlots>,
    /// When the media was last (re)negotiated: opened, or a side's SDP set. Silence counts
    /// from here or from the last packet, whichever is later, so a long ring without early
    /// media does not use up the inactivity time of the answered call.
    negotiated: Instant,
    /// The last activity an inactivity event was reported for (reported once per silence).
    reported: Option<Instant>,
}

/// The forwarding table of one shard.
#[derive(Debug, Default)]
pub struct Table {
    slots: Vec<Option<Slot>>,
    free: Vec<SlotId>,
    sessions: BTreeMap<SessionId, SessionEntry>,
    /// Bare mode (benchmark baseline): forward to the announced address, no latching or counters.
    bare: bool,
}

impl Table {
    pub fn new(bare: bool) -> Table {
        Table {
            bare,
            ..Table::default()
        }
    }

    /// Adds a session of `streams` streams; returns each stream's slots, for the caller to
    /// attach its sockets to. A session id already present is a bug of the caller.
    pub fn handle_open(
        &mut self,
        id: SessionId,
        call: u64,
        streams: usize,
        rtcp_mux: bool,
        now: Instant,
    ) -> Vec<StreamSlots> {
        assert!(
            !self.sessions.contains_key(&id),
            "session {id:?} opened twice"
        );
        let mut out = Vec::with_capacity(streams);
        for _ in 0..streams {
            let rtp = self.pair(false);
            let rtcp = (!rtcp_mux).then(|| self.pair(true));
            out.push(StreamSlots { rtp, rtcp });
        }
        self.sessions.insert(
            id,
            SessionEntry {
                call,
                streams: out.clone(),
                negotiated: now,
                reported: None,
            },
        );
        out
    }

    /// Appends `streams` streams to session `id` (a re-INVITE added m-lines; the session
    /// keeps its other streams, latches and counters); returns the new streams' slots, for the
    /// caller to attach their sockets to. `None` if there is no such session.
    pub fn handle_grow(
        &mut self,
        id: SessionId,
        streams: usize,
        rtcp_mux: bool,
        now: Instant,
    ) -> Option<Vec<StreamSlots>> {
        if !self.sessions.contains_key(&id) {
            return None;
        }
        let mut out = Vec::with_capacity(streams);
        for _ in 0..streams {
            let rtp = self.pair(false);
            let rtcp = (!rtcp_mux).then(|| self.pair(true));
            out.push(StreamSlots { rtp, rtcp });
        }
        let entry = self.sessions.get_mut(&id)?;
        entry.streams.extend(out.iter().cloned());
        entry.negotiated = entry.negotiated.max(now);
        Some(out)
    }

    /// Two slots forwarding to each other.
    fn pair(&mut self, rtcp: bool) -> [SlotId; 2] {
        let a = self.reserve();
        let b = self.reserve();
        self.slots[a.0 as usize] = Some(Slot::new(b, rtcp));
        self.slots[b.0 as usize] = Some(Slot::new(a, rtcp));
        [a, b]
    }

    fn reserve(&mut self) -> SlotId {
        if let Some(id) = self.free.pop() {
            return id;
        }
        self.slots.push(None);
        SlotId(self.slots.len() as u32 - 1)
    }

    /// Sets the announced address of a side of a stream (RTP and, if any, RTCP), and restarts
    /// the session's silence clock (an answer or re-INVITE is a fresh start for the media).
    /// `false` if the session or stream does not exist.
    pub fn handle_set_remote(
        &mut self,
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
        now: Instant,
    ) -> bool {
        let Some(slots) = self.stream(id, stream) else {
            return false;
        };
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.negotiated = entry.negotiated.max(now);
        }
        let i = side.index();
        self.slot_mut(slots.rtp[i]).announce(rtp);
        if let Some(pair) = slots.rtcp {
            let addr =
                rtcp.unwrap_or_else(|| SocketAddr::new(rtp.ip(), rtp.port().saturating_add(1)));
            self.slot_mut(pair[i]).announce(addr);
        }
        true
    }

    /// Sets the RTP clock rate of a stream (for jitter). `false` if there is no such stream.
    pub fn handle_clock_rate(&mut self, id: SessionId, stream: usize, hz: u32) -> bool {
        let Some(slots) = self.stream(id, stream) else {
            return false;
        };
        for s in slots.rtp {
            self.slot_mut(s).clock_rate = hz.max(1);
        }
        true
    }

    /// Removes a session; returns the slots whose sockets the caller must close.
    pub fn handle_close(&mut self, id: SessionId) -> Vec<SlotId> {
        let Some(entry) = self.sessions.remove(&id) else {
            return Vec::new();
        };
        let mut closed = Vec::new();
        for s in entry.streams {
            closed.extend(s.rtp);
            closed.extend(s.rtcp.into_iter().flatten());
        }
        for &slot in &closed {
            self.slots[slot.0 as usize] = None;
            self.free.push(slot);
        }
        closed
    }

    /// The per-packet path: a packet of `bytes` from `src` arrived on `slot` at `now`.
    #[inline]
    pub fn handle_packet(
        &mut self,
        slot: SlotId,
        src: SocketAddr,
        bytes: &[u8],
        now: Instant,
    ) -> Verdict {
        let Some(Some(here)) = self.slots.get(slot.0 as usize) else {
            return Verdict::Drop(DropReason::UnknownSlot);
        };
        let via = here.peer;
        // Holds: a slot's peer lives and dies with it (`pair`, `handle_close`).
        let there = self.slots[via.0 as usize].as_ref().expect("peer slot");
        if self.bare {
            return match there.announced {
                Some(to) => Verdict::Forward { via, to },
                None => Verdict::Drop(DropReason::NoDestination),
            };
        }
        let to = there.destination();
        let here = self.slots[slot.0 as usize].as_mut().expect("checked above");
        match here.latched {
            Some(source) if source != src => {
                here.dropped_foreign += 1;
                return Verdict::Drop(DropReason::Foreign);
            }
            Some(_) => {}
            None => here.latched = Some(src),
        }
        here.last_packet = Some(now);
        let Some(to) = to else {
            here.dropped_no_destination += 1;
            return Verdict::Drop(DropReason::NoDestination);
        };
        here.packets += 1;
        here.bytes += bytes.len() as u64;
        if !here.rtcp {
            if let Some(header) = RtpHeader::parse(bytes) {
                here.rtp.record(&header, now, here.clock_rate);
            }
        }
        Verdict::Forward { via, to }
    }

    /// The counters of a session, per stream and direction; `None` for an unknown session.
    pub fn stats(&self, id: SessionId, now: Instant) -> Option<Vec<StreamStats>> {
        let entry = self.sessions.get(&id)?;
        let mut out = Vec::with_capacity(entry.streams.len() * 2);
        for (stream, slots) in entry.streams.iter().enumerate() {
            for (i, direction) in [(0, Direction::AToB), (1, Direction::BToA)] {
                let rtp = self.slot(slots.rtp[i]);
                let rtcp = slots.rtcp.map(|pair| self.slot(pair[i]));
                let sum = |f: fn(&Slot) -> u64| f(rtp) + rtcp.map_or(0, f);
                let last = rtp.last_packet.max(rtcp.and_then(|s| s.last_packet));
                out.push(StreamStats {
                    stream,
                    direction,
                    source: rtp.latched,
                    packets: sum(|s| s.packets),
                    bytes: sum(|s| s.bytes),
                    dropped_foreign: sum(|s| s.dropped_foreign),
                    dropped_no_destination: sum(|s| s.dropped_no_destination),
                    lost: rtp.rtp.lost(),
                    jitter_ms: rtp.rtp.jitter(rtp.clock_rate).as_secs_f64() * 1000.0,
                    last_packet_age: last.map(|t| now.saturating_duration_since(t)),
                });
            }
        }
        Some(out)
    }

    /// The sessions (with their calls) where no packet was accepted on any socket for `inactivity`
    /// (counted from the open when nothing ever arrived). Each silence is reported once.
    pub fn poll_inactive(&mut self, now: Instant, inactivity: Duration) -> Vec<(SessionId, u64)> {
        let mut calls = Vec::new();
        for (id, entry) in self.sessions.iter_mut() {
            let mut last = entry.negotiated;
            for s in &entry.streams {
                for slot in s.rtp.iter().chain(s.rtcp.iter().flatten()) {
                    let at = self.slots[slot.0 as usize]
                        .as_ref()
                        .and_then(|s| s.last_packet);
                    last = last.max(at.unwrap_or(last));
                }
            }
            if now.saturating_duration_since(last) >= inactivity && entry.reported != Some(last) {
                entry.reported = Some(last);
                calls.push((*id, entry.call));
            }
        }
        calls
    }

    /// Forgets the source `slot` latched (its socket now belongs to a browser leg, whose
    /// packets enter with the leg's own address).
    pub fn release_latch(&mut self, slot: SlotId) {
        if let Some(Some(s)) = self.slots.get_mut(slot.0 as usize) {
            s.latched = None;
        }
    }

    /// The slots of a session's streams.
    pub fn session_slots(&self, id: SessionId) -> Option<Vec<StreamSlots>> {
        Some(self.sessions.get(&id)?.streams.clone())
    }

    /// Where packets forwarded via `slot` go now: its side's latched source, else the
    /// address its SDP announced.
    pub fn destination(&self, slot: SlotId) -> Option<SocketAddr> {
        self.slots.get(slot.0 as usize)?.as_ref()?.destination()
    }

    /// The number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn stream(&self, id: SessionId, stream: usize) -> Option<StreamSlots> {
        self.sessions.get(&id)?.streams.get(stream).copied()
    }

    fn slot(&self, id: SlotId) -> &Slot {
        // Holds: slots named by a live session exist (`handle_close` removes both together).
        self.slots[id.0 as usize].as_ref().expect("live slot")
    }

    fn slot_mut(&mut self, id: SlotId) -> &mut Slot {
        // Holds: as in `slot`.
        self.slots[id.0 as usize].as_mut().expect("live slot")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0u8; 172];
        p[0] = 0x80;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
        p
    }

    fn table() -> (Table, StreamSlots, Instant) {
        let now = Instant::now();
        let mut t = Table::new(false);
        let s = t.handle_open(SessionId(1), 77, 1, false, now)[0];
        (t, s, now)
    }

    #[test]
    fn a_moved_announcement_releases_the_latch_and_the_same_one_keeps_it() {
        let (mut t, s, now) = table();
        let [a, b] = s.rtp;
        t.handle_set_remote(SessionId(1), 0, Side::B, addr(6000), None, now);
        t.handle_set_remote(SessionId(1), 0, Side::A, addr(5000), None, now);
        // B latches at 6100 (NAT).
        t.handle_packet(b, addr(6100), &rtp(1), now);
        // A refresh announcing the same address keeps the latch.
        t.handle_set_remote(SessionId(1), 0, Side::B, addr(6000), None, now);
        assert_eq!(
            t.handle_packet(a, addr(5000), &rtp(2), now),
            Verdict::Forward {
                via: b,
                to: addr(6100)
            }
        );
        // A re-INVITE moving B to 6200: the latch goes, the new address is used, and B's
        // next packet (from its new socket) latches again.
        t.handle_set_remote(SessionId(1), 0, Side::B, addr(6200), None, now);
        assert_eq!(
            t.handle_packet(a, addr(5000), &rtp(3), now),
            Verdict::Forward {
                via: b,
                to: addr(6200)
            }
        );
        assert!(matches!(
            t.handle_packet(b, addr(6201), &rtp(2), now),
            Verdict::Forward { .. }
        ));
        assert_eq!(
            t.handle_packet(b, addr(6100), &rtp(3), now),
            Verdict::Drop(DropReason::Foreign)
        );
    }

    #[test]
    fn forwards_to_the_announced_address_then_the_latched_one() {
        let (mut t, s, now) = table();
        let [a, b] = s.rtp;
        assert_eq!(
            t.handle_packet(a, addr(5000), &rtp(1), now),
            Verdict::Drop(DropReason::NoDestination)
        );
        assert!(t.handle_set_remote(SessionId(1), 0, Side::B, addr(6000), None, now));
        assert_eq!(
            t.handle_packet(a, addr(5000), &rtp(2), now),
            Verdict::Forward {
                via: b,
                to: addr(6000)
            }
        );
        // B really sends from 6100 (NAT): from then on A's packets go there.
        assert_eq!(
            t.handle_packet(b, addr(6100), &rtp(1), now),
            Verdict::Forward {
                via: a,
                to: addr(5000)
            }
        );
        assert_eq!(
            t.handle_packet(a, addr(5000), &rtp(3), now),
            Verdict::Forward {
                via: b,
                to: addr(6100)
            }
        );
        assert_eq!(
            t.handle_packet(a, addr(5001), &rtp(4), now),
            Verdict::Drop(DropReason::Foreign)
        );
        let st = t.stats(SessionId(1), now).unwrap();
        assert_eq!(
            (
                st[0].packets,
                st[0].dropped_foreign,
                st[0].dropped_no_destination
            ),
            (2, 1, 1)
        );
        assert_eq!(st[0].lost, 0);
        assert_eq!(st[1].source, Some(addr(6100)));
    }

    #[test]
    fn rtcp_defaults_to_the_next_port_and_is_not_parsed() {
        let (mut t, s, now) = table();
        let [a, b] = s.rtcp.unwrap();
        t.handle_set_remote(SessionId(1), 0, Side::B, addr(6000), None, now);
        assert_eq!(
            t.handle_packet(a, addr(5001), &rtp(9), now),
            Verdict::Forward {
                via: b,
                to: addr(6001)
            }
        );
        let st = t.stats(SessionId(1), now).unwrap();
        assert_eq!(st[0].packets, 1);
    }

    #[test]
    fn inactivity_is_reported_once_per_silence() {
        let (mut t, s, now) = table();
        let d = Duration::from_secs(1);
        assert!(t
            .poll_inactive(now + Duration::from_millis(999), d)
            .is_empty());
        assert_eq!(t.poll_inactive(now + d, d), vec![(SessionId(1), 77)]);
        assert!(t.poll_inactive(now + 2 * d, d).is_empty());
        t.handle_packet(s.rtp[0], addr(5000), &rtp(1), now + 3 * d);
        assert!(t
            .poll_inactive(now + Duration::from_millis(3500), d)
            .is_empty());
        assert_eq!(t.poll_inactive(now + 4 * d, d), vec![(SessionId(1), 77)]);
    }

    #[test]
    fn an_answer_after_a_silent_ring_restarts_the_silence_clock() {
        let (mut t, _, now) = table();
        let d = Duration::from_secs(1);
        // Ringing, no early media: reported (and ignored by the proxy) once.
        assert_eq!(t.poll_inactive(now + 5 * d, d), vec![(SessionId(1), 77)]);
        // The answer's SDP arrives at 10 s; the answered call is silent from there on.
        t.handle_set_remote(SessionId(1), 0, Side::B, addr(6000), None, now + 10 * d);
        assert!(t
            .poll_inactive(now + Duration::from_millis(10_900), d)
            .is_empty());
        assert_eq!(t.poll_inactive(now + 11 * d, d), vec![(SessionId(1), 77)]);
    }

    #[test]
    fn close_frees_the_slots_for_reuse() {
        let (mut t, _, now) = table();
        assert_eq!(t.handle_close(SessionId(1)).len(), 4);
        assert!(t.is_empty());
        let s = t.handle_open(SessionId(2), 78, 1, true, now)[0];
        assert!(s.rtp[0].0 < 4 && s.rtp[1].0 < 4);
        assert_eq!(
            t.handle_packet(SlotId(99), addr(1), b"x", now),
            Verdict::Drop(DropReason::UnknownSlot)
        );
    }
}
