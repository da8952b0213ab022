//! Property tests of the relay table (`media::table`), sans-IO: random runs of opens (1–3
//! streams, rtcp-mux on or off, fresh or reused session ids), announcements, clock rates,
//! packets (RTP, RTCP, short and garbage bytes, from a few sources that collide on purpose,
//! on the slots of open, closed and never-opened sessions), closes, inactivity polls and
//! advancing time, checked after every step against a plain model of the rules `media` and
//! `media::table` document:
//! - a packet is forwarded only from a slot of an open session, out of the other side's slot
//!   of the same stream and kind (RTP to RTP, RTCP to RTCP), never its own, to that side's
//!   latched source, else its announced address; a freed slot answers `UnknownSlot`;
//! - the first packet on a slot latches its source (even when it cannot be forwarded); from
//!   then on any other source is dropped as `Foreign` and counted, and neither keeps the
//!   session alive nor changes anything else; an announcement of a different address
//!   releases the side's latch, the same or a first one keeps it; RTCP goes to the announced
//!   RTP port + 1 (saturating) unless given;
//! - per stream and direction the packets, bytes, drops, latched source, last-packet age,
//!   loss and jitter (RFC 3550 counters fed exactly the forwarded RTP-socket packets, at the
//!   stream's clock rate) are the model's;
//! - open gives distinct slots none of which is in use, close returns exactly the session's
//!   slots and leaves it without stats, and freed slots are reused before the table grows;
//! - inactivity is reported per call, in session order, once per silence, counted from the
//!   last negotiation or accepted packet; bare mode forwards to the announced address only
//!   and counts nothing; no input panics.
//!
//! Not observable, so not checked: whether RTP on a dedicated RTCP socket is parsed (`stats`
//! reports the RTP socket's loss and jitter only). Also here: the RTP header parser against
//! a hand-written reading, and the loss count across sequence wraps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use tambun::media::rtp::{RtpCounters, RtpHeader, DEFAULT_CLOCK_RATE};
use tambun::media::table::{DropReason, SlotId, StreamSlots, Table, Verdict};
use tambun::media::{Direction, SessionId, Side};

// ---- the model --------------------------------------------------------------------------

/// What one relay socket has seen, as the rules say it should.
#[derive(Debug, Clone, Default)]
struct SlotModel {
    announced: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    packets: u64,
    bytes: u64,
    foreign: u64,
    no_destination: u64,
    last: Option<Instant>,
}

impl SlotModel {
    /// A different address than the one announced before releases the latch; the same one
    /// (or a first one) keeps it.
    fn announce(&mut self, addr: SocketAddr) {
        if self.announced.is_some_and(|old| old != addr) {
            self.latched = None;
        }
        self.announced = Some(addr);
    }
}

#[derive(Debug)]
struct StreamModel {
    slots: StreamSlots,
    /// Per side (A, B): the RTP socket and, without rtcp-mux, the RTCP one.
    rtp: [SlotModel; 2],
    rtcp: Option<[SlotModel; 2]>,
    clock_rate: u32,
    /// Per side: the RFC 3550 counters fed with exactly the RTP packets forwarded from there.
    counters: [RtpCounters; 2],
}

#[derive(Debug)]
struct SessionModel {
    call: u64,
    streams: Vec<StreamModel>,
    negotiated: Instant,
    reported: Option<Instant>,
}

impl SessionModel {
    /// The latest of the negotiation and every accepted packet.
    fn last_activity(&self) -> Instant {
        self.streams
            .iter()
            .flat_map(|s| s.rtp.iter().chain(s.rtcp.iter().flatten()))
            .filter_map(|s| s.last)
            .fold(self.negotiated, Instant::max)
    }
}

/// Which socket of which open session a slot number stands for.
#[derive(Debug, Clone, Copy)]
struct Owner {
    session: SessionId,
    stream: usize,
    side: usize,
    rtcp: bool,
}

#[derive(Debug)]
struct Model {
    bare: bool,
    open: BTreeMap<SessionId, SessionModel>,
    owners: HashMap<u32, Owner>,
    /// The slots each session id was last given, closed sessions included (packets keep
    /// arriving on a closed session's old ports).
    history: BTreeMap<SessionId, Vec<StreamSlots>>,
    next_id: u64,
    next_call: u64,
    /// The most slots ever live at once: the table reuses freed slots before it grows.
    peak: usize,
}

fn side(i: usize) -> Side {
    [Side::A, Side::B][i]
}

fn slot_ids(slots: &[StreamSlots]) -> Vec<SlotId> {
    slots
        .iter()
        .flat_map(|s| s.rtp.into_iter().chain(s.rtcp.into_iter().flatten()))
        .collect()
}

impl Model {
    fn new(bare: bool) -> Model {
        Model {
            bare,
            open: BTreeMap::new(),
            owners: HashMap::new(),
            history: BTreeMap::new(),
            next_id: 1,
            next_call: 100,
            peak: 0,
        }
    }

    fn closed(&self) -> Vec<SessionId> {
        self.history
            .keys()
            .filter(|id| !self.open.contains_key(id))
            .copied()
            .collect()
    }

    fn slot_mut(&mut self, o: Owner) -> &mut SlotModel {
        let stream = &mut self.open.get_mut(&o.session).expect("owner open").streams[o.stream];
        if o.rtcp {
            &mut stream.rtcp.as_mut().expect("rtcp slots")[o.side]
        } else {
            &mut stream.rtp[o.side]
        }
    }

    /// The verdict the rules give, updating the model as the table should update itself.
    fn packet(&mut self, slot: SlotId, src: SocketAddr, bytes: &[u8], now: Instant) -> Verdict {
        let Some(&here) = self.owners.get(&slot.0) else {
            return Verdict::Drop(DropReason::UnknownSlot);
        };
        let there = Owner {
            side: 1 - here.side,
            ..here
        };
        let stream = &self.open[&here.session].streams[here.stream];
        let via = match (here.rtcp, stream.slots.rtcp) {
            (true, Some(pair)) => pair[there.side],
            _ => stream.slots.rtp[there.side],
        };
        let clock_rate = stream.clock_rate;
        let bare = self.bare;
        let peer = self.slot_mut(there).clone();
        if bare {
            return match peer.announced {
                Some(to) => Verdict::Forward { via, to },
                None => Verdict::Drop(DropReason::NoDestination),
            };
        }
        let to = peer.latched.or(peer.announced);
        let s = self.slot_mut(here);
        match s.latched {
            Some(l) if l != src => {
                s.foreign += 1;
                return Verdict::Drop(DropReason::Foreign);
            }
            Some(_) => {}
            None => s.latched = Some(src),
        }
        s.last = Some(now);
        let Some(to) = to else {
            s.no_destination += 1;
            return Verdict::Drop(DropReason::NoDestination);
        };
        s.packets += 1;
        s.bytes += bytes.len() as u64;
        if !here.rtcp {
            if let Some(h) = rtp_header(bytes) {
                let stream = &mut self.open.get_mut(&here.session).expect("open").streams;
                stream[here.stream].counters[here.side].record(&h, now, clock_rate);
            }
        }
        Verdict::Forward { via, to }
    }
}

/// RFC 3550 §5.1 read by hand: version 2 in the top bits of byte 0, and not RTCP multiplexed
/// on the RTP port (RFC 5761 §4: byte 1 in 192..=223).
fn rtp_header(b: &[u8]) -> Option<RtpHeader> {
    if b.len() < 12 || b[0] >> 6 != 2 || (192..=223).contains(&b[1]) {
        return None;
    }
    Some(RtpHeader {
        payload_type: b[1] & 0x7f,
        sequence: u16::from(b[2]) << 8 | u16::from(b[3]),
        timestamp: u32::from(b[4]) << 24
            | u32::from(b[5]) << 16
            | u32::from(b[6]) << 8
            | u32::from(b[7]),
        ssrc: u32::from(b[8]) << 24
            | u32::from(b[9]) << 16
            | u32::from(b[10]) << 8
            | u32::from(b[11]),
    })
}

// ---- the operations ---------------------------------------------------------------------

/// A few addresses, so announced, latched and foreign sources collide: `:4000`/`:4001` is an
/// RTP/RTCP pair, `:65535` has no next port, two are IPv6.
const ADDRS: [&str; 7] = [
    "10.0.0.1:4000",
    "10.0.0.1:4001",
    "10.0.0.2:4000",
    "10.0.0.2:4002",
    "192.0.2.7:65535",
    "[2001:db8::1]:4000",
    "[2001:db8::1]:4001",
];

fn addr(i: usize) -> SocketAddr {
    ADDRS[i % ADDRS.len()].parse().expect("valid literal")
}

/// A session to act on: one of those opened so far (open or closed), or one never opened.
#[derive(Debug, Clone)]
enum Pick {
    Known(Index),
    Unknown,
}

/// Where a packet comes from.
#[derive(Debug, Clone)]
enum Source {
    /// What a well-behaved phone would use: the socket's latched source, else the address its
    /// side announced, else the first address.
    Usual,
    Any(usize),
}

/// Which socket a packet arrives on.
#[derive(Debug, Clone)]
enum Target {
    /// A socket of a session opened so far (a closed one's old ports included); `stream` is
    /// taken modulo the session's streams, and `rtcp` falls back to RTP with rtcp-mux.
    Session {
        session: Index,
        stream: usize,
        side: usize,
        rtcp: bool,
    },
    /// Any slot number, allocated or not.
    Raw(u32),
}

#[derive(Debug, Clone)]
enum Op {
    Open {
        streams: usize,
        rtcp_mux: bool,
        /// Reopen a closed session's id rather than a fresh one.
        reuse: Option<Index>,
    },
    SetRemote {
        session: Pick,
        /// Up to one past the largest stream count, so some name no stream.
        stream: usize,
        side: usize,
        rtp: usize,
        rtcp: Option<usize>,
    },
    ClockRate {
        session: Pick,
        stream: usize,
        hz: u32,
    },
    Packet {
        target: Target,
        src: Source,
        bytes: Vec<u8>,
    },
    Close(Pick),
    Advance(Duration),
    PollInactive(Duration),
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![3 => Just(Source::Usual), 2 => (0..ADDRS.len()).prop_map(Source::Any)]
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![9 => any::<Index>().prop_map(Pick::Known), 1 => Just(Pick::Unknown)]
}

/// Sequence numbers that mostly stay close (so gaps, duplicates, reordering and the wrap are
/// common), sometimes anywhere.
fn sequence() -> impl Strategy<Value = u16> {
    prop_oneof![6 => 0u16..48, 2 => 65500u16..=65535, 1 => any::<u16>()]
}

fn rtp_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        0u8..128,
        sequence(),
        0u32..400,
        prop::sample::select(vec![1u32, 2, 0xdead_beef]),
        0usize..180,
    )
        .prop_map(|(marker, pt, seq, skew, ssrc, payload)| {
            let mut p = vec![0u8; 12 + payload];
            p[0] = 0x80;
            p[1] = u8::from(marker) << 7 | pt;
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p[4..8].copy_from_slice(&(u32::from(seq) * 160 + skew).to_be_bytes());
            p[8..12].copy_from_slice(&ssrc.to_be_bytes());
            p
        })
}

/// An RTCP-looking packet: version 2, packet type 200..=204 (SR, RR, SDES, BYE, APP).
fn rtcp_packet() -> impl Strategy<Value = Vec<u8>> {
    (
        0u8..32,
        200u8..=204,
        prop::collection::vec(any::<u8>(), 2..60),
    )
        .prop_map(|(count, pt, rest)| {
            let mut p = vec![0x80 | count, pt];
            p.extend(rest);
            p
        })
}

fn packet_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => rtp_packet(),
        1 => rtcp_packet(),
        1 => prop::collection::vec(any::<u8>(), 0..12),
        1 => prop::collection::vec(any::<u8>(), 0..80),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let target = prop_oneof![
        9 => (any::<Index>(), 0usize..3, 0usize..2, any::<bool>()).prop_map(
            |(session, stream, side, rtcp)| Target::Session { session, stream, side, rtcp }
        ),
        1 => (0u32..24).prop_map(Target::Raw),
    ];
    prop_oneof![
        2 => (1usize..=3, any::<bool>(), prop::option::weighted(0.3, any::<Index>()))
            .prop_map(|(streams, rtcp_mux, reuse)| Op::Open { streams, rtcp_mux, reuse }),
        3 => (
            pick(),
            0usize..4,
            0usize..2,
            0..ADDRS.len(),
            prop::option::weighted(0.3, 0..ADDRS.len()),
        )
            .prop_map(|(session, stream, side, rtp, rtcp)| Op::SetRemote {
                session,
                stream,
                side,
                rtp,
                rtcp,
            }),
        1 => (pick(), 0usize..4, prop_oneof![Just(0u32), 1u32..100_000])
            .prop_map(|(session, stream, hz)| Op::ClockRate { session, stream, hz }),
        12 => (target, source(), packet_bytes())
            .prop_map(|(target, src, bytes)| Op::Packet { target, src, bytes }),
        1 => pick().prop_map(Op::Close),
        3 => prop_oneof![0u64..40, 0u64..4000]
            .prop_map(|ms| Op::Advance(Duration::from_millis(ms))),
        1 => (500u64..5000).prop_map(|ms| Op::PollInactive(Duration::from_millis(ms))),
    ]
}

// ---- running a case ---------------------------------------------------------------------

/// A session id no case opens.
const NEVER_OPENED: SessionId = SessionId(u64::MAX);

fn resolve(model: &Model, p: &Pick) -> SessionId {
    let known: Vec<SessionId> = model.history.keys().copied().collect();
    match p {
        Pick::Known(i) if !known.is_empty() => *i.get(&known),
        _ => NEVER_OPENED,
    }
}

fn target_slot(model: &Model, t: &Target) -> SlotId {
    match t {
        Target::Raw(n) => SlotId(*n),
        Target::Session {
            session,
            stream,
            side,
            rtcp,
        } => {
            let known: Vec<&Vec<StreamSlots>> = model.history.values().collect();
            if known.is_empty() {
                return SlotId(0);
            }
            let streams = session.get(&known);
            let s = streams[stream % streams.len()];
            match (rtcp, s.rtcp) {
                (true, Some(pair)) => pair[*side],
                _ => s.rtp[*side],
            }
        }
    }
}

fn run(bare: bool, ops: &[Op]) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let mut now = start;
    let mut table = Table::new(bare);
    let mut model = Model::new(bare);
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Open {
                streams,
                rtcp_mux,
                reuse,
            } => {
                let closed = model.closed();
                let id = match reuse {
                    Some(i) if !closed.is_empty() => *i.get(&closed),
                    _ => {
                        model.next_id += 1;
                        SessionId(model.next_id - 1)
                    }
                };
                let call = model.next_call;
                model.next_call += 1;
                let slots = table.handle_open(id, call, *streams, *rtcp_mux, now);
                prop_assert_eq!(slots.len(), *streams);
                let ids = slot_ids(&slots);
                prop_assert_eq!(ids.len(), streams * if *rtcp_mux { 2 } else { 4 });
                let mut fresh = HashSet::new();
                for (k, s) in slots.iter().enumerate() {
                    prop_assert_eq!(s.rtcp.is_some(), !rtcp_mux, "stream {}", k);
                    for (kind, pair) in [(false, Some(s.rtp)), (true, s.rtcp)] {
                        for (i, slot) in pair.into_iter().flatten().enumerate() {
                            prop_assert!(
                                fresh.insert(slot.0) && !model.owners.contains_key(&slot.0),
                                "open gave slot {:?} twice or one in use",
                                slot
                            );
                            model.owners.insert(
                                slot.0,
                                Owner {
                                    session: id,
                                    stream: k,
                                    side: i,
                                    rtcp: kind,
                                },
                            );
                        }
                    }
                }
                model.peak = model.peak.max(model.owners.len());
                for slot in &ids {
                    prop_assert!(
                        (slot.0 as usize) < model.peak,
                        "slot {:?} past the {} ever live: closed slots are not reused",
                        slot,
                        model.peak
                    );
                }
                let streams = slots
                    .iter()
                    .map(|&s| StreamModel {
                        slots: s,
                        rtp: Default::default(),
                        rtcp: s.rtcp.map(|_| Default::default()),
                        clock_rate: DEFAULT_CLOCK_RATE,
                        counters: Default::default(),
                    })
                    .collect();
                model.open.insert(
                    id,
                    SessionModel {
                        call,
                        streams,
                        negotiated: now,
                        reported: None,
                    },
                );
                model.history.insert(id, slots);
            }
            Op::SetRemote {
                session,
                stream,
                side: i,
                rtp,
                rtcp,
            } => {
                let id = resolve(&model, session);
                let (rtp, rtcp) = (addr(*rtp), rtcp.map(addr));
                let got = table.handle_set_remote(id, *stream, side(*i), rtp, rtcp, now);
                let known = model
                    .open
                    .get(&id)
                    .is_some_and(|s| *stream < s.streams.len());
                prop_assert_eq!(got, known, "set_remote on {:?} stream {}", id, stream);
                if known {
                    let s = model.open.get_mut(&id).expect("known");
                    s.negotiated = s.negotiated.max(now);
                    let st = &mut s.streams[*stream];
                    st.rtp[*i].announce(rtp);
                    if let Some(pair) = st.rtcp.as_mut() {
                        let next = SocketAddr::new(rtp.ip(), rtp.port().saturating_add(1));
                        pair[*i].announce(rtcp.unwrap_or(next));
                    }
                }
            }
            Op::ClockRate {
                session,
                stream,
                hz,
            } => {
                let id = resolve(&model, session);
                let got = table.handle_clock_rate(id, *stream, *hz);
                let st = model
                    .open
                    .get_mut(&id)
                    .and_then(|s| s.streams.get_mut(*stream));
                prop_assert_eq!(got, st.is_some());
                if let Some(st) = st {
                    st.clock_rate = (*hz).max(1);
                }
            }
            Op::Packet { target, src, bytes } => {
                let slot = target_slot(&model, target);
                let owner = model.owners.get(&slot.0).copied();
                let src = match (src, owner) {
                    (Source::Any(i), _) => addr(*i),
                    (Source::Usual, Some(o)) => {
                        let s = model.slot_mut(o);
                        s.latched.or(s.announced).unwrap_or_else(|| addr(0))
                    }
                    (Source::Usual, None) => addr(0),
                };
                let expected = model.packet(slot, src, bytes, now);
                let got = table.handle_packet(slot, src, bytes, now);
                if let Verdict::Forward { via, to } = got {
                    // Checked apart from the model, for a plain message: only out of the
                    // other side's socket of the same stream and kind, of an open session.
                    let o = owner.ok_or_else(|| {
                        TestCaseError::fail(format!("{slot:?} is free but forwarded to {to}"))
                    })?;
                    let v = model.owners.get(&via.0).copied().ok_or_else(|| {
                        TestCaseError::fail(format!("{slot:?} forwarded via free {via:?}"))
                    })?;
                    prop_assert!(via != slot, "{:?} forwarded out of itself", slot);
                    prop_assert!(
                        v.session == o.session
                            && v.stream == o.stream
                            && v.rtcp == o.rtcp
                            && v.side != o.side,
                        "{:?} ({:?}) forwarded via {:?} ({:?})",
                        slot,
                        o,
                        via,
                        v
                    );
                    prop_assert!(model.open.contains_key(&o.session));
                }
                prop_assert_eq!(
                    got,
                    expected,
                    "step {}: {:?} from {} ({} bytes)",
                    step,
                    slot,
                    src,
                    bytes.len()
                );
            }
            Op::Close(session) => {
                let id = resolve(&model, session);
                let mut got = table.handle_close(id);
                got.sort_by_key(|s| s.0);
                let mut expected = match model.open.remove(&id) {
                    Some(_) => slot_ids(&model.history[&id]),
                    None => Vec::new(),
                };
                expected.sort_by_key(|s| s.0);
                prop_assert_eq!(&got, &expected, "close of {:?}", id);
                for s in &expected {
                    model.owners.remove(&s.0);
                }
                prop_assert!(table.stats(id, now).is_none());
            }
            Op::Advance(d) => now += *d,
            Op::PollInactive(d) => {
                let got = table.poll_inactive(now, *d);
                let mut expected = Vec::new();
                for (id, s) in model.open.iter_mut() {
                    let last = s.last_activity();
                    if now.saturating_duration_since(last) >= *d && s.reported != Some(last) {
                        s.reported = Some(last);
                        expected.push((*id, s.call));
                    }
                }
                prop_assert_eq!(got, expected, "inactive at {:?}", now - start);
            }
        }
        check_stats(&table, &model, now, step)?;
    }
    Ok(())
}

/// Every open session's counters are the model's; closed and unknown sessions have none.
fn check_stats(
    table: &Table,
    model: &Model,
    now: Instant,
    step: usize,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(table.len(), model.open.len());
    prop_assert_eq!(table.is_empty(), model.open.is_empty());
    prop_assert!(table.stats(NEVER_OPENED, now).is_none());
    for id in model.closed() {
        prop_assert!(table.stats(id, now).is_none(), "closed {:?} has stats", id);
    }
    for (&id, s) in &model.open {
        let stats = table
            .stats(id, now)
            .ok_or_else(|| TestCaseError::fail(format!("open {id:?} has no stats")))?;
        prop_assert_eq!(stats.len(), 2 * s.streams.len());
        for (k, st) in s.streams.iter().enumerate() {
            for i in 0..2 {
                let got = &stats[2 * k + i];
                let rtp = &st.rtp[i];
                let rtcp = st.rtcp.as_ref().map(|p| &p[i]);
                let sum = |f: fn(&SlotModel) -> u64| f(rtp) + rtcp.map_or(0, f);
                let last = rtp.last.max(rtcp.and_then(|r| r.last));
                let what = format!("step {step}: {id:?} stream {k} side {i}");
                prop_assert_eq!(got.stream, k, "{}", what);
                prop_assert_eq!(
                    got.direction,
                    [Direction::AToB, Direction::BToA][i],
                    "{}",
                    what
                );
                prop_assert_eq!(got.source, rtp.latched, "{}", what);
                prop_assert_eq!(got.packets, sum(|s| s.packets), "{}", what);
                prop_assert_eq!(got.bytes, sum(|s| s.bytes), "{}", what);
                prop_assert_eq!(got.dropped_foreign, sum(|s| s.foreign), "{}", what);
                prop_assert_eq!(
                    got.dropped_no_destination,
                    sum(|s| s.no_destination),
                    "{}",
                    what
                );
                prop_assert_eq!(got.lost, st.counters[i].lost(), "{}", what);
                let jitter = st.counters[i].jitter(st.clock_rate).as_secs_f64() * 1000.0;
                prop_assert_eq!(got.jitter_ms, jitter, "{}", what);
                prop_assert_eq!(
                    got.last_packet_age,
                    last.map(|t| now.saturating_duration_since(t)),
                    "{}",
                    what
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::common::proptest_config(600))]

    /// The table against the model, latching and counting (and, one run in eight, in bare
    /// mode: forward to the announced address, no latching, nothing counted).
    #[test]
    fn table_follows_the_model(
        bare in prop::bool::weighted(0.125),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run(bare, &ops)?;
    }
}

// ---- the parser and the loss count on their own -----------------------------------------

proptest! {
    #![proptest_config(crate::common::proptest_config(512))]

    /// `RtpHeader::parse` accepts exactly version-2 non-RTCP packets of 12 bytes or more and
    /// reads its fields from the first 12 bytes.
    #[test]
    fn rtp_header_is_read_from_the_first_twelve_bytes(
        bytes in prop_oneof![rtp_packet(), rtcp_packet(), prop::collection::vec(any::<u8>(), 0..40)],
    ) {
        prop_assert_eq!(RtpHeader::parse(&bytes), rtp_header(&bytes));
    }

    /// In-order packets of one source with gaps below the dropout limit, across any number of
    /// sequence wraps and with duplicates: the loss is the sum of the gaps.
    #[test]
    fn loss_is_the_sum_of_the_gaps(
        first in any::<u16>(),
        steps in prop::collection::vec((1u16..200, any::<bool>()), 0..1000),
    ) {
        let t0 = Instant::now();
        let mut c = RtpCounters::default();
        let mut seq = first;
        let feed = |c: &mut RtpCounters, seq: u16, n: usize| {
            let h = RtpHeader { payload_type: 0, sequence: seq, timestamp: u32::from(seq) * 160, ssrc: 7 };
            c.record(&h, t0 + Duration::from_millis(20 * n as u64), DEFAULT_CLOCK_RATE);
        };
        feed(&mut c, seq, 0);
        let mut gaps = 0u64;
        for (n, &(step, dup)) in steps.iter().enumerate() {
            seq = seq.wrapping_add(step);
            gaps += u64::from(step - 1);
            feed(&mut c, seq, n + 1);
            if dup {
                feed(&mut c, seq, n + 1);
            }
        }
        prop_assert_eq!(c.lost(), gaps);
    }
}
