//! A forwarding thread: owns a shard of the relay's sockets in its own epoll set and moves
//! their packets with `recvmmsg`/`sendmmsg` through one preallocated [`Batch`]. Control
//! commands arrive over a channel, announced by an eventfd in the same epoll set, and are
//! applied between batches: forwarding never waits for signalling, and signalling only waits
//! (for `close` and `stats`) until the end of the current batch. The decisions are the
//! [`Table`]'s; this file only does the I/O and the clock.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::conference::{member_of_token, Conferences, VideoSocket};
use super::control::{LegSpec, MediaCommand, MediaEvent};
use super::gateway::{leg_of_token, Gateway};
use super::ports::RelayPort;
use super::sys::{set_busy_poll, Batch, Epoll, EventFd};
use super::table::{DropReason, SlotId, StreamSlots, Table, Verdict};
use super::transcode::{Transcoder, MAX_PACKET as MAX_TRANSCODED};
use super::SessionId;

/// The epoll token of the eventfd (slot tokens are slot numbers, far below it).
const WAKE: u64 = u64::MAX;
/// The most epoll events handled per wake-up.
const MAX_EVENTS: usize = 256;

/// The sockets of one stream, as the shard bound them: RTP and optional RTCP, A and B.
#[derive(Debug)]
struct StreamSockets {
    rtp: [UdpSocket; 2],
    rtcp: Option<[UdpSocket; 2]>,
}

/// Sockets bound ahead of use by the binder thread, by RTP port: (RTP, RTCP). A shard takes a
/// session's out when its `Open` arrives. Locked only on the control path (a reserve batch,
/// an open), never per packet.
#[derive(Clone, Default)]
pub struct Reserve(Arc<Mutex<HashMap<u16, (UdpSocket, UdpSocket)>>>);

impl Reserve {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, (UdpSocket, UdpSocket)>> {
        // Every update is one insert or remove: a poisoned map is still consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The binder thread: binds the pairs of each `Reserve` (RTP and RTCP) into the reserve and
/// reports which were bound and which another process holds. Runs until the handle goes.
pub fn bind_reserves(
    commands: Receiver<MediaCommand>,
    reserve: Reserve,
    bind: IpAddr,
    events: Sender<MediaEvent>,
) {
    while let Ok(cmd) = commands.recv() {
        let MediaCommand::Reserve { pairs } = cmd else {
            continue;
        };
        let (mut bound, mut busy) = (Vec::with_capacity(pairs.len()), Vec::new());
        let mut sockets = Vec::with_capacity(pairs.len());
        for pair in pairs {
            let rtp = bind_udp(SocketAddr::new(bind, pair.rtp()));
            let rtcp = rtp
                .as_ref()
                .ok()
                .map(|_| bind_udp(SocketAddr::new(bind, pair.rtcp())));
            match (rtp, rtcp) {
                (Ok(rtp), Some(Ok(rtcp))) => {
                    sockets.push((pair.rtp(), (rtp, rtcp)));
                    bound.push(pair);
                }
                (Err(e), _) | (_, Some(Err(e))) => {
                    if e.kind() != io::ErrorKind::AddrInUse {
                        tracing::warn!(port = pair.rtp(), "relay: cannot bind: {e}");
                    }
                    busy.push(pair);
                }
                (Ok(_), None) => unreachable!("an RTCP bind is tried whenever the RTP one worked"),
            }
        }
        if !busy.is_empty() {
            tracing::debug!(
                ports = ?busy.iter().map(|p| p.rtp()).collect::<Vec<_>>(),
                "relay ports held by another process: skipped for now"
            );
        }
        reserve.lock().extend(sockets);
        if events.send(MediaEvent::Reserved { bound, busy }).is_err() {
            return;
        }
    }
}

/// The shard's settings.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub batch: usize,
    pub inactivity: Duration,
    pub bare: bool,
    /// `SO_BUSY_POLL` microseconds for the shard's sockets (0: off).
    pub busy_poll_us: u32,
    /// The address the sessions' sockets bind to.
    pub bind: IpAddr,
    /// The address browsers reach the relay at (their legs' host candidate).
    pub advertise: IpAddr,
    /// The DTLS certificate of browser legs (`None`: no WebRTC gateway).
    pub identity: Option<super::webrtc::Identity>,
}

/// What one shard has done since it started, for `/metrics`. Only the shard's thread writes
/// (once per batch, relaxed); the control plane reads. Own cache lines, so no false sharing.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct ShardCounters {
    /// Datagrams read from relay sockets.
    pub received: AtomicU64,
    /// Datagrams handed to the kernel for sending.
    pub forwarded: AtomicU64,
    /// Bytes of the forwarded datagrams.
    pub forwarded_bytes: AtomicU64,
    /// Dropped: the port is latched to another source.
    pub dropped_foreign: AtomicU64,
    /// Dropped: nowhere to send yet (or the socket closed under the read).
    pub dropped_no_destination: AtomicU64,
    /// Forwards the kernel refused (full send buffer, unreachable).
    pub send_failures: AtomicU64,
    /// Browser legs open (gauge).
    pub webrtc_legs: AtomicU64,
    /// Browser legs whose ICE + DTLS came up.
    pub dtls_connected: AtomicU64,
    /// Browser legs whose DTLS failed (a wrong fingerprint, a broken handshake).
    pub dtls_failed: AtomicU64,
    /// Datagrams at browser legs that were none of STUN, DTLS or SRTP, or were refused.
    pub webrtc_rejected: AtomicU64,
}

/// A plain copy of the counters, summed over shards.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RelayTotals {
    pub received: u64,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    pub dropped_foreign: u64,
    pub dropped_no_destination: u64,
    pub send_failures: u64,
    pub webrtc_legs: u64,
    pub dtls_connected: u64,
    pub dtls_failed: u64,
    pub webrtc_rejected: u64,
}

impl RelayTotals {
    pub fn add(&mut self, c: &ShardCounters) {
        self.received += c.received.load(Ordering::Relaxed);
        self.forwarded += c.forwarded.load(Ordering::Relaxed);
        self.forwarded_bytes += c.forwarded_bytes.load(Ordering::Relaxed);
        self.dropped_foreign += c.dropped_foreign.load(Ordering::Relaxed);
        self.dropped_no_destination += c.dropped_no_destination.load(Ordering::Relaxed);
        self.send_failures += c.send_failures.load(Ordering::Relaxed);
        self.webrtc_legs += c.webrtc_legs.load(Ordering::Relaxed);
        self.dtls_connected += c.dtls_connected.load(Ordering::Relaxed);
        self.dtls_failed += c.dtls_failed.load(Ordering::Relaxed);
        self.webrtc_rejected += c.webrtc_rejected.load(Ordering::Relaxed);
    }
}

/// The state of one forwarding thread.
pub struct Shard {
    cfg: ShardConfig,
    epoll: Epoll,
    wake: Arc<EventFd>,
    commands: Receiver<MediaCommand>,
    events: Sender<MediaEvent>,
    table: Table,
    sockets: Vec<Option<UdpSocket>>,
    batch: Batch,
    counters: Arc<ShardCounters>,
    reserve: Reserve,
    gateway: Gateway,
    rooms: Conferences,
    /// Transcoders by the RTP slot whose packets they take (calls whose legs share no codec).
    transcoders: HashMap<SlotId, Box<Transcoder>>,
}

impl Shard {
    pub fn new(
        cfg: ShardConfig,
        wake: Arc<EventFd>,
        commands: Receiver<MediaCommand>,
        events: Sender<MediaEvent>,
        counters: Arc<ShardCounters>,
        reserve: Reserve,
    ) -> std::io::Result<Shard> {
        let epoll = Epoll::new()?;
        epoll.add(wake.raw(), WAKE)?;
        Ok(Shard {
            batch: Batch::new(cfg.batch),
            table: Table::new(cfg.bare),
            gateway: Gateway::new(cfg.identity.clone(), cfg.advertise),
            rooms: Conferences::new(super::mixer::MixerConfig::default()),
            transcoders: HashMap::new(),
            cfg,
            epoll,
            wake,
            commands,
            events,
            sockets: Vec::new(),
            counters,
            reserve,
        })
    }

    /// Runs until the control plane hangs up.
    pub fn run(mut self) {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        // Inactivity is checked a few times per timeout, and at least every second.
        let tick =
            (self.cfg.inactivity / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        let mut next_tick = Instant::now() + tick;
        loop {
            let mut wake_at = match self.gateway.next_deadline() {
                Some(t) => t.min(next_tick),
                None => next_tick,
            };
            if let Some(t) = self.rooms.next_deadline() {
                wake_at = wake_at.min(t);
            }
            let wait = wake_at.saturating_duration_since(Instant::now());
            let n = match self.epoll.wait(&mut events, wait.as_millis() as i32 + 1) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("relay shard: epoll_wait failed: {e}; stopping");
                    return;
                }
            };
            let now = Instant::now();
            // Commands first: a `set_remote` sent before a packet arrived must apply to it
            // (with both ready in one wake-up, forwarding first would drop the packet).
            if events[..n].iter().any(|ev| ev.u64 == WAKE) {
                self.wake.clear();
                if !self.handle_commands(now) {
                    return;
                }
            }
            for ev in &events[..n] {
                if ev.u64 == WAKE {
                    continue;
                }
                if let Some((member, kind)) = member_of_token(ev.u64) {
                    self.rooms
                        .readable(member, kind, &mut self.batch, &self.counters, now);
                    continue;
                }
                match leg_of_token(ev.u64) {
                    Some(leg) => self.gateway.readable(
                        leg,
                        &mut self.batch,
                        &mut self.table,
                        &self.sockets,
                        &self.counters,
                        now,
                    ),
                    None => self.forward_from(SlotId(ev.u64 as u32), now),
                }
            }
            if !self.gateway.is_empty() {
                self.gateway
                    .timeouts(&mut self.table, &self.sockets, &self.counters, now);
            }
            if !self.rooms.is_empty() {
                self.rooms.timeouts(&self.counters, now);
                for (room, session, event) in self.rooms.take_events() {
                    self.report(MediaEvent::Room {
                        room,
                        session,
                        event,
                    });
                }
            }
            if now >= next_tick {
                for (session, call) in self.table.poll_inactive(now, self.cfg.inactivity) {
                    self.report(MediaEvent::Inactive { session, call });
                }
                if !self.rooms.is_empty() {
                    for session in self.rooms.poll_inactive(now, self.cfg.inactivity) {
                        self.report(MediaEvent::Inactive { session, call: 0 });
                    }
                }
                next_tick = now + tick;
            }
        }
    }

    /// One `recvmmsg` from the socket of `slot`, and the `sendmmsg` of what it forwards.
    #[inline]
    fn forward_from(&mut self, slot: SlotId, now: Instant) {
        let Some(Some(socket)) = self.sockets.get(slot.0 as usize) else {
            return;
        };
        let n = match self.batch.receive(socket.as_raw_fd()) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("relay: recvmmsg on slot {}: {e}", slot.0);
                return;
            }
        };
        // All forwards of one socket leave from its peer socket; `via` is the same for all.
        let mut via = None;
        let (mut forwarded, mut bytes_out, mut foreign, mut nowhere) = (0u64, 0u64, 0u64, 0u64);
        let (mut transcoded, mut transcode_failed) = (0u64, 0u64);
        for i in 0..n {
            let (src, bytes) = self.batch.packet(i);
            let Some(src) = src else { continue };
            if !self.gateway.is_empty() && self.gateway.is_browser_slot(slot) {
                // A browser's side: its leg has its own socket; nothing here is for anyone.
                nowhere += 1;
                continue;
            }
            let len = bytes.len() as u64;
            match self.table.handle_packet(slot, src, bytes, now) {
                Verdict::Forward { via: v, .. } if self.gateway.is_browser_slot(v) => {
                    // Toward a browser: into its leg (encrypted there), not out of a socket.
                    self.gateway.to_browser(
                        v,
                        bytes,
                        &mut self.table,
                        &self.sockets,
                        &self.counters,
                        now,
                    );
                }
                Verdict::Forward { via: v, to }
                    if !self.transcoders.is_empty() && self.transcoders.contains_key(&slot) =>
                {
                    // No shared codec: the other leg gets its own codec, sent from here.
                    let (sent, lost) = self.send_transcoded(i, slot, v, to);
                    transcoded += sent;
                    transcode_failed += lost;
                    bytes_out += len;
                }
                Verdict::Forward { via: v, to } => {
                    via = Some(v);
                    self.batch.forward(i, to);
                    forwarded += 1;
                    bytes_out += len;
                }
                Verdict::Drop(DropReason::Foreign) => foreign += 1,
                Verdict::Drop(_) => nowhere += 1,
            }
        }
        let mut failed = 0;
        if let Some(via) = via {
            match self.sockets.get(via.0 as usize) {
                Some(Some(out)) => failed = self.batch.flush(out.as_raw_fd()) as u64,
                _ => failed = forwarded,
            }
        }
        let c = &self.counters;
        c.received.fetch_add(n as u64, Ordering::Relaxed);
        c.forwarded
            .fetch_add(forwarded - failed + transcoded, Ordering::Relaxed);
        c.forwarded_bytes.fetch_add(bytes_out, Ordering::Relaxed);
        if foreign > 0 {
            c.dropped_foreign.fetch_add(foreign, Ordering::Relaxed);
        }
        if nowhere > 0 {
            c.dropped_no_destination
                .fetch_add(nowhere, Ordering::Relaxed);
        }
        if failed + transcode_failed > 0 {
            c.send_failures
                .fetch_add(failed + transcode_failed, Ordering::Relaxed);
        }
    }

    /// Received packet `i` on `slot` through that slot's transcoder, and what comes out
    /// (nothing until 20 ms are in; more than one packet when the sender's are longer) sent
    /// in order out of `via` to `to`: (sent, failed). Rare calls: no batching.
    fn send_transcoded(
        &mut self,
        i: usize,
        slot: SlotId,
        via: SlotId,
        to: SocketAddr,
    ) -> (u64, u64) {
        let (Some(t), Some(Some(socket))) = (
            self.transcoders.get_mut(&slot),
            self.sockets.get(via.0 as usize),
        ) else {
            return (0, 1);
        };
        t.push(self.batch.packet(i).1);
        let mut out = [0u8; MAX_TRANSCODED];
        let (mut sent, mut failed) = (0, 0);
        while let Some(n) = t.pop(&mut out) {
            match socket.send_to(&out[..n], to) {
                Ok(_) => sent += 1,
                Err(_) => failed += 1,
            }
        }
        (sent, failed)
    }

    /// Applies the queued commands; `false` when the control plane is gone.
    fn handle_commands(&mut self, now: Instant) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(cmd) => self.handle_command(cmd, now),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    fn handle_command(&mut self, cmd: MediaCommand, now: Instant) {
        match cmd {
            MediaCommand::Open {
                session,
                call,
                rtcp_mux,
                legs,
            } => match self.take_session(&legs, rtcp_mux) {
                Ok(streams) => {
                    let slots = self
                        .table
                        .handle_open(session, call, streams.len(), rtcp_mux, now);
                    self.attach_streams(slots, streams);
                    self.report(MediaEvent::Opened { session });
                }
                Err((busy, e)) => {
                    tracing::warn!(
                        session = session.0,
                        busy = ?busy.iter().map(|p| p.rtp()).collect::<Vec<_>>(),
                        "relay: cannot open a session: {e}"
                    );
                    self.report(MediaEvent::OpenFailed {
                        session,
                        busy,
                        error: e.to_string(),
                    });
                }
            },
            MediaCommand::SetRemote {
                session,
                stream,
                side,
                rtp,
                rtcp,
            } => {
                self.table
                    .handle_set_remote(session, stream, side, rtp, rtcp, now);
            }
            MediaCommand::Grow {
                session,
                rtcp_mux,
                legs,
            } => match self.take_session(&legs, rtcp_mux) {
                Ok(streams) => {
                    let Some(slots) = self
                        .table
                        .handle_grow(session, streams.len(), rtcp_mux, now)
                    else {
                        tracing::warn!(session = session.0, "relay: grow of an unknown session");
                        return;
                    };
                    self.attach_streams(slots, streams);
                    if !self.gateway.is_empty() {
                        self.gateway.grown(session, &mut self.table, now);
                    }
                }
                Err((_, e)) => {
                    tracing::warn!(session = session.0, "relay: cannot add streams: {e}")
                }
            },
            MediaCommand::WebRtcStreams {
                session,
                side,
                streams,
            } => {
                if let Err(e) = self.gateway.add_streams(session, side, &streams) {
                    tracing::warn!(
                        session = session.0,
                        ?side,
                        "relay: no new browser streams: {e}"
                    );
                }
            }
            MediaCommand::ClockRate {
                session,
                stream,
                hz,
            } => {
                self.table.handle_clock_rate(session, stream, hz);
            }
            MediaCommand::Transcode {
                session,
                stream,
                a,
                b,
            } => match self.table.stream(session, stream) {
                Some(slots) => {
                    let seed = session.0 as u32;
                    let [sa, sb] = slots.rtp;
                    self.transcoders
                        .insert(sa, Box::new(Transcoder::new(a, b, seed)));
                    self.transcoders
                        .insert(sb, Box::new(Transcoder::new(b, a, seed.rotate_left(16))));
                    tracing::debug!(session = session.0, ?a, ?b, "relay: transcoding");
                }
                None => tracing::warn!(session = session.0, "relay: transcoding an unknown stream"),
            },
            MediaCommand::Close { session } => {
                let stats = self.table.stats(session, now).unwrap_or_default();
                self.close(session);
                self.report(MediaEvent::Closed { session, stats });
            }
            MediaCommand::Stats { session, reply } => (reply.0)(self.table.stats(session, now)),
            MediaCommand::BrowserStats { session, reply } => (reply.0)(self.gateway.stats(session)),
            MediaCommand::BrowserPending { session, side } => {
                self.gateway.pend(session, side, &mut self.table)
            }
            MediaCommand::Reserve { .. } => {
                tracing::error!("relay: a Reserve reached a forwarding thread; ignored")
            }
            MediaCommand::RoomJoin {
                room,
                session,
                rtcp_mux,
                port,
                spec,
                remote,
                video,
                sfu,
            } => {
                let taken = {
                    let mut reserve = self.reserve.lock();
                    let mut take = |p: RelayPort| reserve.remove(&p.rtp()).ok_or(p);
                    take(port).and_then(|audio| {
                        let lines = video
                            .iter()
                            .map(|v| {
                                take(v.port).map(|(rtp, rtcp)| VideoSocket {
                                    socket: rtp,
                                    rtcp: (!v.rtcp_mux).then_some(rtcp),
                                    remote: v.remote,
                                    line: v.line,
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        Ok((audio, lines))
                    })
                };
                let ((rtp, rtcp), video) = match taken {
                    Ok(t) => t,
                    Err(p) => {
                        self.report(MediaEvent::OpenFailed {
                            session,
                            busy: Vec::new(),
                            error: format!("port {} was not reserved", p.rtp()),
                        });
                        return;
                    }
                };
                let rtcp = (!rtcp_mux).then_some(rtcp);
                match self.rooms.join(
                    room,
                    session,
                    rtp,
                    rtcp,
                    spec,
                    remote,
                    video,
                    sfu,
                    &self.epoll,
                    now,
                ) {
                    Ok(()) => self.report(MediaEvent::Opened { session }),
                    Err(error) => {
                        tracing::warn!(
                            room = room.0,
                            session = session.0,
                            "relay: cannot join: {error}"
                        );
                        self.report(MediaEvent::OpenFailed {
                            session,
                            busy: Vec::new(),
                            error,
                        });
                    }
                }
            }
            MediaCommand::RoomRemote {
                session, remote, ..
            } => self.rooms.set_remote(session, remote),
            MediaCommand::RoomMute { session, muted, .. } => self.rooms.set_muted(session, muted),
            MediaCommand::RoomDigit { session, digit, .. } => self.rooms.digit(session, digit, now),
            MediaCommand::RoomLeave { session, .. } => {
                let stats = self.rooms.leave(session, &self.epoll).unwrap_or_default();
                self.report(MediaEvent::Closed { session, stats });
            }
            MediaCommand::RoomStats { room, reply } => (reply.0)(self.rooms.stats(room)),
            MediaCommand::WebRtc {
                session,
                side,
                params,
            } => {
                if let Err(e) = self.gateway.open(
                    session,
                    side,
                    &params,
                    &mut self.table,
                    &mut self.sockets,
                    &self.epoll,
                    &self.counters,
                    now,
                ) {
                    tracing::warn!(session = session.0, ?side, "relay: no browser leg: {e}");
                }
            }
        }
    }

    /// Closes the sockets of a session and forgets it.
    fn close(&mut self, session: SessionId) {
        if !self.gateway.is_empty() {
            self.gateway
                .close(session, &self.table, &self.epoll, &self.counters);
        }
        for slot in self.table.handle_close(session) {
            if !self.transcoders.is_empty() {
                self.transcoders.remove(&slot);
            }
            if let Some(socket) = self.sockets[slot.0 as usize].take() {
                let _ = self.epoll.delete(socket.as_raw_fd());
            }
        }
    }

    fn report(&self, event: MediaEvent) {
        // A closed receiver means nobody listens for events: nothing to do.
        let _ = self.events.send(event);
    }

    /// Takes the legs' sockets out of the reserve, stream by stream (both legs have a pair
    /// per stream, as `MediaControl::open` makes them); with rtcp-mux the RTCP sockets are
    /// closed. A pair not in the reserve (a bug of the caller) fails the open, and what was
    /// taken is closed.
    fn take_session(
        &self,
        legs: &[LegSpec; 2],
        rtcp_mux: bool,
    ) -> Result<Vec<StreamSockets>, (Vec<RelayPort>, io::Error)> {
        let mut reserve = self.reserve.lock();
        let mut take = |p: &RelayPort| reserve.remove(&p.rtp());
        let mut streams = Vec::with_capacity(legs[0].ports.len());
        for (a, b) in legs[0].ports.iter().zip(&legs[1].ports) {
            let (Some(a), Some(b)) = (take(a), take(b)) else {
                let e = io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("ports {}/{} were not reserved", a.rtp(), b.rtp()),
                );
                return Err((Vec::new(), e));
            };
            streams.push(StreamSockets {
                rtp: [a.0, b.0],
                rtcp: (!rtcp_mux).then_some([a.1, b.1]),
            });
        }
        Ok(streams)
    }

    /// Puts each stream's sockets under its slots (both sides, RTP and RTCP).
    fn attach_streams(&mut self, slots: Vec<StreamSlots>, streams: Vec<StreamSockets>) {
        for (s, sockets) in slots.into_iter().zip(streams) {
            let [a, b] = sockets.rtp;
            self.attach(s.rtp[0], a);
            self.attach(s.rtp[1], b);
            if let (Some(pair), Some([a, b])) = (s.rtcp, sockets.rtcp) {
                self.attach(pair[0], a);
                self.attach(pair[1], b);
            }
        }
    }

    fn attach(&mut self, slot: SlotId, socket: UdpSocket) {
        let i = slot.0 as usize;
        if self.sockets.len() <= i {
            self.sockets.resize_with(i + 1, || None);
        }
        if self.cfg.busy_poll_us > 0 {
            set_busy_poll(&socket, self.cfg.busy_poll_us);
        }
        if let Err(e) = self.epoll.add(socket.as_raw_fd(), slot.0 as u64) {
            tracing::error!("relay: cannot watch a relay socket: {e}");
        }
        self.sockets[i] = Some(socket);
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
