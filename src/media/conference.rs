//! Conference rooms on a forwarding thread: each room's [`Mixer`] and its participants'
//! sockets. A room lives on one thread (commands are routed by room, `MediaCommand::route_key`),
//! so its mixer and sockets are never shared. The thread's driver calls in when a participant's
//! socket is readable ([`Conferences::readable`]) and when a room's tick is due
//! ([`Conferences::timeouts`], [`Conferences::next_deadline`]); an empty room is dropped, so
//! it has no tick and costs nothing.
//!
//! A participant's video m-lines have sockets of their own ([`VideoSocket`]); their packets go
//! to the room's [`Sfu`], which forwards cameras to the others' slots, and the mixer's talker
//! events tell the SFU who spoke last.
//!
//! Security: a participant's sockets accept packets only from the IP its SDP announced (any
//! IP when it announced none), and latch the first such source; everything else is dropped
//! and counted. On the audio line RTCP is read and dropped (the mixer is the RTP endpoint;
//! reports are not generated yet); on video lines it is read for keyframe requests.

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::control::{RoomId, RoomParticipant, RoomState};
use super::mixer::{Mixer, MixerConfig, MixerEvent, ParticipantId, ParticipantSpec};
use super::sfu::{Packet, Sfu, SfuConfig, VideoLine};
use super::shard::ShardCounters;
use super::sys::{Batch, Epoll};
use super::{Direction, SessionId, StreamStats};

/// Epoll tokens of participants' sockets: this bit, the socket's kind above bit 32 (0: the
/// audio line; 2k+1 and 2k+2: video line k's RTP and RTCP) and the member index below (slot
/// tokens are slot numbers; leg tokens use another bit).
const MEMBER_TOKEN: u64 = 1 << 61;

fn member_token(index: u32, kind: u32) -> u64 {
    MEMBER_TOKEN | (u64::from(kind) << 32) | u64::from(index)
}

/// The member index and socket kind behind an epoll token, if it is a participant's.
pub fn member_of_token(token: u64) -> Option<(u32, u32)> {
    (token & MEMBER_TOKEN != 0 && token != u64::MAX).then_some((
        (token & 0xffff_ffff) as u32,
        ((token & !MEMBER_TOKEN) >> 32) as u32,
    ))
}

/// A participant's video m-line: its sockets, as joined ([`Conferences::join`]).
pub struct VideoSocket {
    pub socket: UdpSocket,
    /// Without rtcp-mux, the line's RTCP socket (read for keyframe requests).
    pub rtcp: Option<UdpSocket>,
    /// The address the participant's SDP announced for the line.
    pub remote: Option<SocketAddr>,
    pub line: VideoLine,
}

/// A video line of a member, with its latches and counters.
struct Video {
    socket: UdpSocket,
    rtcp: Option<UdpSocket>,
    remote: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    rtcp_latched: Option<SocketAddr>,
    received: u64,
    bytes_in: u64,
    sent: u64,
    bytes_out: u64,
}

/// One participant's sockets and addresses.
struct Member {
    session: SessionId,
    room: RoomId,
    participant: ParticipantId,
    socket: UdpSocket,
    /// Kept bound (the port is the participant's) but not read.
    _rtcp: Option<UdpSocket>,
    video: Vec<Video>,
    remote: Option<SocketAddr>,
    latched: Option<SocketAddr>,
    received: u64,
    bytes_in: u64,
    sent: u64,
    bytes_out: u64,
    foreign: u64,
    last_packet: Option<Instant>,
    joined: Instant,
    /// The silence last reported (its start), so that one silence is reported once.
    reported: Option<Instant>,
}

/// One room: its mixer, its video forwarding and, by participant id, its members.
struct Room {
    mixer: Mixer,
    sfu: Sfu,
    members: Vec<Option<u32>>,
}

/// The rooms of one forwarding thread.
pub struct Conferences {
    config: MixerConfig,
    rooms: BTreeMap<RoomId, Room>,
    members: Vec<Option<Member>>,
    free: Vec<u32>,
    by_session: HashMap<SessionId, u32>,
    /// Events for the signalling core.
    events: Vec<(RoomId, SessionId, MixerEvent)>,
}

impl Conferences {
    pub fn new(config: MixerConfig) -> Conferences {
        Conferences {
            config,
            rooms: BTreeMap::new(),
            members: Vec::new(),
            free: Vec::new(),
            by_session: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// Is there no room on this thread?
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// A participant joins `room` (made if it is new) on its sockets.
    #[allow(clippy::too_many_arguments)]
    pub fn join(
        &mut self,
        room: RoomId,
        session: SessionId,
        socket: UdpSocket,
        rtcp: Option<UdpSocket>,
        spec: ParticipantSpec,
        remote: Option<SocketAddr>,
        video: Vec<VideoSocket>,
        sfu: SfuConfig,
        epoll: &Epoll,
        now: Instant,
    ) -> Result<(), String> {
        if self.by_session.contains_key(&session) {
            return Err("this participant has joined already".into());
        }
        let index = self.free.pop().unwrap_or_else(|| {
            self.members.push(None);
            self.members.len() as u32 - 1
        });
        let mut watched = vec![socket.as_raw_fd()];
        let mut add = |fd, kind| {
            epoll.add(fd, member_token(index, kind))?;
            watched.push(fd);
            Ok::<(), std::io::Error>(())
        };
        let mut result = epoll.add(socket.as_raw_fd(), member_token(index, 0));
        for (k, v) in video.iter().enumerate() {
            let k = k as u32;
            result = result.and_then(|()| add(v.socket.as_raw_fd(), 2 * k + 1));
            if let Some(rtcp) = &v.rtcp {
                result = result.and_then(|()| add(rtcp.as_raw_fd(), 2 * k + 2));
            }
        }
        if let Err(e) = result {
            for fd in watched {
                let _ = epoll.delete(fd);
            }
            self.free.push(index);
            return Err(format!("cannot watch the participant's sockets: {e}"));
        }
        let config = &self.config;
        let r = self.rooms.entry(room).or_insert_with(|| Room {
            mixer: Mixer::new(config.clone()),
            sfu: Sfu::new(sfu),
            members: Vec::new(),
        });
        let admitted = spec.pin.is_none();
        let our_ssrc = spec.ssrc;
        let participant = r.mixer.add(spec, now);
        if !video.is_empty() {
            let lines: Vec<VideoLine> = video.iter().map(|v| v.line).collect();
            r.sfu.add(participant, &lines, our_ssrc, admitted, now);
        }
        let k = participant.0 as usize;
        if r.members.len() <= k {
            r.members.resize(k + 1, None);
        }
        r.members[k] = Some(index);
        self.members[index as usize] = Some(Member {
            session,
            room,
            participant,
            socket,
            _rtcp: rtcp,
            video: video
                .into_iter()
                .map(|v| Video {
                    socket: v.socket,
                    rtcp: v.rtcp,
                    remote: v.remote,
                    latched: None,
                    rtcp_latched: None,
                    received: 0,
                    bytes_in: 0,
                    sent: 0,
                    bytes_out: 0,
                })
                .collect(),
            remote,
            latched: None,
            received: 0,
            bytes_in: 0,
            sent: 0,
            bytes_out: 0,
            foreign: 0,
            last_packet: None,
            joined: now,
            reported: None,
        });
        self.by_session.insert(session, index);
        tracing::debug!(
            room = room.0,
            session = session.0,
            "relay: participant joined"
        );
        Ok(())
    }

    fn member_mut(&mut self, session: SessionId) -> Option<&mut Member> {
        let i = *self.by_session.get(&session)?;
        self.members.get_mut(i as usize)?.as_mut()
    }

    /// A participant's SDP announced another address: its latch is released.
    pub fn set_remote(&mut self, session: SessionId, remote: SocketAddr) {
        if let Some(m) = self.member_mut(session) {
            if m.remote != Some(remote) {
                m.remote = Some(remote);
                m.latched = None;
            }
        }
    }

    /// The moderator mutes or unmutes a participant.
    pub fn set_muted(&mut self, session: SessionId, muted: bool) {
        let Some(m) = self.member_mut(session) else {
            return;
        };
        let (room, p) = (m.room, m.participant);
        if let Some(r) = self.rooms.get_mut(&room) {
            let _ = r.mixer.set_muted(p, muted);
        }
    }

    /// A digit by SIP INFO.
    pub fn digit(&mut self, session: SessionId, digit: char, now: Instant) {
        let Some(m) = self.member_mut(session) else {
            return;
        };
        let (room, p) = (m.room, m.participant);
        if let Some(r) = self.rooms.get_mut(&room) {
            let _ = r.mixer.handle_digit(p, digit, now);
            // What the SFU queued (a PIN let someone in) goes out with the next packets.
            drain_events(room, r, &self.members, &mut self.events, now);
        }
    }

    /// A participant leaves: its sockets close; the last one ends the room. Its counters, as
    /// one stream each way (`ab`: from the participant into the room).
    pub fn leave(&mut self, session: SessionId, epoll: &Epoll) -> Option<Vec<StreamStats>> {
        let i = self.by_session.remove(&session)?;
        let m = self.members.get_mut(i as usize)?.take()?;
        self.free.push(i);
        let _ = epoll.delete(m.socket.as_raw_fd());
        for v in &m.video {
            let _ = epoll.delete(v.socket.as_raw_fd());
            if let Some(rtcp) = &v.rtcp {
                let _ = epoll.delete(rtcp.as_raw_fd());
            }
        }
        let now = Instant::now();
        if let Some(r) = self.rooms.get_mut(&m.room) {
            r.mixer.remove(m.participant);
            r.sfu.remove(m.participant, now);
            if let Some(slot) = r.members.get_mut(m.participant.0 as usize) {
                *slot = None;
            }
            if r.mixer.is_empty() {
                self.rooms.remove(&m.room);
            }
        }
        let age = m.last_packet.map(|t| now.saturating_duration_since(t));
        let mut streams = vec![
            StreamStats {
                stream: 0,
                direction: Direction::AToB,
                source: m.latched,
                packets: m.received,
                bytes: m.bytes_in,
                dropped_foreign: m.foreign,
                dropped_no_destination: 0,
                lost: 0,
                jitter_ms: 0.0,
                last_packet_age: age,
            },
            StreamStats {
                stream: 0,
                direction: Direction::BToA,
                source: None,
                packets: m.sent,
                bytes: m.bytes_out,
                dropped_foreign: 0,
                dropped_no_destination: 0,
                lost: 0,
                jitter_ms: 0.0,
                last_packet_age: None,
            },
        ];
        for (k, v) in m.video.iter().enumerate() {
            let stream = k + 1;
            for (direction, source, packets, bytes) in [
                (Direction::AToB, v.latched, v.received, v.bytes_in),
                (Direction::BToA, None, v.sent, v.bytes_out),
            ] {
                streams.push(StreamStats {
                    stream,
                    direction,
                    source,
                    packets,
                    bytes,
                    dropped_foreign: 0,
                    dropped_no_destination: 0,
                    lost: 0,
                    jitter_ms: 0.0,
                    last_packet_age: None,
                });
            }
        }
        Some(streams)
    }

    /// The state of a room, `None` if nobody is in it.
    pub fn stats(&self, room: RoomId) -> Option<RoomState> {
        let r = self.rooms.get(&room)?;
        let participants = r
            .mixer
            .participants()
            .filter_map(|(p, stats)| {
                let i = (*r.members.get(p.0 as usize)?)?;
                let m = self.members.get(i as usize)?.as_ref()?;
                let session_of = |q: ParticipantId| {
                    let j = (*r.members.get(q.0 as usize)?)?;
                    Some(self.members.get(j as usize)?.as_ref()?.session)
                };
                let mut showing = vec![None; m.video.len()];
                for (line, q) in r.sfu.showing(p) {
                    if let Some(slot) = showing.get_mut(usize::from(line)) {
                        *slot = q.and_then(session_of);
                    }
                }
                Some(RoomParticipant {
                    session: m.session,
                    source: m.latched.or(m.remote),
                    stats: stats.clone(),
                    dropped_foreign: m.foreign,
                    showing,
                })
            })
            .collect();
        Some(RoomState {
            room,
            participants,
            mixed: r.mixer.mixed_last_tick(),
            ticks: r.mixer.ticks(),
            video: r.sfu.stats(),
        })
    }

    /// Datagrams on member `i`'s socket of `kind` (see [`member_of_token`]): one
    /// `recvmmsg`, each packet checked against the participant's address and handed to its
    /// room's mixer, or for a video line to its SFU.
    pub fn readable(
        &mut self,
        i: u32,
        kind: u32,
        batch: &mut Batch,
        counters: &ShardCounters,
        now: Instant,
    ) {
        if kind > 0 {
            self.video_readable(i, kind, batch, counters, now);
            return;
        }
        let Some(Some(m)) = self.members.get_mut(i as usize) else {
            return;
        };
        let Some(n) = receive(batch, m.socket.as_raw_fd(), counters) else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&m.room) else {
            return;
        };
        let mut foreign = 0u64;
        for k in 0..n {
            let (src, bytes) = batch.packet(k);
            let Some(src) = src else { continue };
            if !accepts(m.latched, m.remote, src) {
                foreign += 1;
                continue;
            }
            // RTCP says the phone is there too (a phone on hold may send only that).
            m.last_packet = Some(now);
            if bytes.len() >= 2 && (192..=223).contains(&bytes[1]) {
                continue; // RTCP (muxed)
            }
            m.latched = Some(src);
            m.received += 1;
            m.bytes_in += bytes.len() as u64;
            let _ = r.mixer.handle_rtp(m.participant, bytes, now);
        }
        m.foreign += foreign;
        count_foreign(counters, foreign);
        let room = m.room;
        drain_events(room, r, &self.members, &mut self.events, now);
        send_video(r, &mut self.members, counters);
    }

    /// Datagrams on one of member `i`'s video sockets: RTP into the SFU from the line's
    /// (latched) source; RTCP, muxed or on its own socket, for keyframe requests.
    fn video_readable(
        &mut self,
        i: u32,
        kind: u32,
        batch: &mut Batch,
        counters: &ShardCounters,
        now: Instant,
    ) {
        let Some(Some(m)) = self.members.get_mut(i as usize) else {
            return;
        };
        let line = ((kind - 1) / 2) as usize;
        let rtcp_socket = kind.is_multiple_of(2);
        let Some(v) = m.video.get_mut(line) else {
            return;
        };
        let fd = match (&v.rtcp, rtcp_socket) {
            (Some(s), true) => s.as_raw_fd(),
            (None, true) => return,
            (_, false) => v.socket.as_raw_fd(),
        };
        let Some(n) = receive(batch, fd, counters) else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&m.room) else {
            return;
        };
        let mut foreign = 0u64;
        for k in 0..n {
            let (src, bytes) = batch.packet(k);
            let Some(src) = src else { continue };
            let latch = if rtcp_socket {
                v.rtcp_latched
            } else {
                v.latched
            };
            if !accepts(latch, v.remote, src) {
                foreign += 1;
                continue;
            }
            m.last_packet = Some(now);
            let is_rtcp = bytes.len() >= 2 && (192..=223).contains(&bytes[1]);
            if rtcp_socket {
                v.rtcp_latched = Some(src);
            } else {
                v.latched = Some(src);
            }
            if rtcp_socket || is_rtcp {
                r.sfu.handle_rtcp(m.participant, line as u8, bytes, now);
                continue;
            }
            v.received += 1;
            v.bytes_in += bytes.len() as u64;
            r.sfu.handle_rtp(m.participant, line as u8, bytes, now);
        }
        m.foreign += foreign;
        count_foreign(counters, foreign);
        send_video(r, &mut self.members, counters);
    }

    /// The earliest tick of a room on this thread (its mixer's, or its SFU's timer).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(|r| earliest(r.mixer.poll_timeout(), r.sfu.poll_timeout()))
            .min()
    }

    /// Runs the rooms' due ticks and sends what they mixed.
    pub fn timeouts(&mut self, counters: &ShardCounters, now: Instant) {
        let (mut sent, mut failed) = (0u64, 0u64);
        for (room, r) in self.rooms.iter_mut() {
            if r.sfu.poll_timeout().is_some_and(|t| t <= now) {
                r.sfu.handle_timeout(now);
                send_video(r, &mut self.members, counters);
            }
            if r.mixer.poll_timeout().is_none_or(|t| t > now) {
                continue;
            }
            r.mixer.handle_timeout(now);
            while let Some((p, bytes)) = r.mixer.poll_transmit() {
                let Some(Some(i)) = r.members.get(p.0 as usize).copied() else {
                    continue;
                };
                let Some(Some(m)) = self.members.get_mut(i as usize) else {
                    continue;
                };
                let Some(to) = m.latched.or(m.remote) else {
                    continue;
                };
                match m.socket.send_to(bytes, to) {
                    Ok(_) => {
                        sent += 1;
                        m.sent += 1;
                        m.bytes_out += bytes.len() as u64;
                    }
                    Err(_) => failed += 1,
                }
            }
            drain_events(*room, r, &self.members, &mut self.events, now);
            send_video(r, &mut self.members, counters);
        }
        counters.forwarded.fetch_add(sent, Ordering::Relaxed);
        if failed > 0 {
            counters.send_failures.fetch_add(failed, Ordering::Relaxed);
        }
    }

    /// Participants from whom nothing came for `inactivity` (since they joined, or since
    /// their last packet), each silence once: the signalling core hangs up on them.
    pub fn poll_inactive(&mut self, now: Instant, inactivity: Duration) -> Vec<SessionId> {
        let mut silent = Vec::new();
        for m in self.members.iter_mut().flatten() {
            let since = m.last_packet.unwrap_or(m.joined);
            if now.saturating_duration_since(since) >= inactivity && m.reported != Some(since) {
                m.reported = Some(since);
                silent.push(m.session);
            }
        }
        silent
    }

    /// The events for the signalling core since the last call.
    pub fn take_events(&mut self) -> Vec<(RoomId, SessionId, MixerEvent)> {
        std::mem::take(&mut self.events)
    }
}

/// Moves a room's mixer events out, named by the participants' sessions.
fn drain_events(
    room: RoomId,
    r: &mut Room,
    members: &[Option<Member>],
    out: &mut Vec<(RoomId, SessionId, MixerEvent)>,
    now: Instant,
) {
    while let Some(e) = r.mixer.poll_event() {
        let p = match &e {
            MixerEvent::Talking { participant, .. }
            | MixerEvent::Digit { participant, .. }
            | MixerEvent::SelfMuted { participant, .. }
            | MixerEvent::PinAccepted { participant, .. }
            | MixerEvent::PinRejected { participant, .. } => *participant,
        };
        let session = r
            .members
            .get(p.0 as usize)
            .copied()
            .flatten()
            .and_then(|i| members.get(i as usize)?.as_ref())
            .map(|m| m.session);
        match &e {
            MixerEvent::Talking {
                participant,
                talking: true,
            } => r.sfu.spoke(*participant, now),
            MixerEvent::PinAccepted { participant, .. } => r.sfu.admit(*participant, now),
            _ => {}
        }
        if let Some(s) = session {
            out.push((room, s, e));
        }
    }
}

/// One `recvmmsg` on a participant's socket, counted; `None` on an error (logged).
fn receive(batch: &mut Batch, fd: std::os::fd::RawFd, counters: &ShardCounters) -> Option<usize> {
    match batch.receive(fd) {
        Ok(n) => {
            counters.received.fetch_add(n as u64, Ordering::Relaxed);
            Some(n)
        }
        Err(e) => {
            tracing::debug!("relay: recvmmsg on a participant's socket: {e}");
            None
        }
    }
}

/// Whether a packet from `src` is the participant's: its latched source once there is one,
/// before that any port of the IP its SDP announced (any source when it announced none).
fn accepts(latched: Option<SocketAddr>, remote: Option<SocketAddr>, src: SocketAddr) -> bool {
    match (latched, remote) {
        (Some(l), _) => l == src,
        (None, Some(r)) => r.ip() == src.ip(),
        (None, None) => true,
    }
}

fn count_foreign(counters: &ShardCounters, foreign: u64) {
    if foreign > 0 {
        counters
            .dropped_foreign
            .fetch_add(foreign, Ordering::Relaxed);
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Sends what a room's SFU queued: RTP on the receiver's video line to its latched (else
/// announced) address; RTCP on the line's RTCP socket (its RTP port + 1) or, with rtcp-mux,
/// on the RTP socket.
fn send_video(r: &mut Room, members: &mut [Option<Member>], counters: &ShardCounters) {
    let (mut sent, mut failed) = (0u64, 0u64);
    while let Some((p, line, kind, bytes)) = r.sfu.poll_transmit() {
        let Some(Some(i)) = r.members.get(p.0 as usize).copied() else {
            continue;
        };
        let Some(Some(m)) = members.get_mut(i as usize) else {
            continue;
        };
        let Some(v) = m.video.get_mut(usize::from(line)) else {
            continue;
        };
        let rtp_to = v.latched.or(v.remote);
        let result = match (kind, &v.rtcp) {
            (Packet::Rtcp, Some(rtcp)) => {
                let to = v
                    .rtcp_latched
                    .or(rtp_to.map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1))));
                to.map(|to| rtcp.send_to(bytes, to))
            }
            _ => rtp_to.map(|to| v.socket.send_to(bytes, to)),
        };
        match result {
            Some(Ok(_)) => {
                sent += 1;
                if kind == Packet::Rtp {
                    v.sent += 1;
                    v.bytes_out += bytes.len() as u64;
                }
            }
            Some(Err(_)) => failed += 1,
            None => {}
        }
    }
    // Called after every audio packet too: no atomic write when nothing went out.
    if sent > 0 {
        counters.forwarded.fetch_add(sent, Ordering::Relaxed);
    }
    if failed > 0 {
        counters.send_failures.fetch_add(failed, Ordering::Relaxed);
    }
}
