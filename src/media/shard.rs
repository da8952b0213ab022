//! A forwarding thread: owns a shard of the relay's sockets in its own epoll set and moves
//! their packets with `recvmmsg`/`sendmmsg` through one preallocated [`Batch`]. Control
//! commands arrive over a channel, announced by an eventfd in the same epoll set, and are
//! applied between batches: forwarding never waits for signalling, and signalling only waits
//! (for `close` and `stats`) until the end of the current batch. The decisions are the
//! [`Table`]'s; this file only does the I/O and the clock.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::sys::{set_busy_poll, Batch, Epoll, EventFd};
use super::table::{DropReason, SlotId, Table, Verdict};
use super::{RelayEvent, SessionId, Side, StreamStats};

/// The epoll token of the eventfd (slot tokens are slot numbers, far below it).
const WAKE: u64 = u64::MAX;
/// The most epoll events handled per wake-up.
const MAX_EVENTS: usize = 256;

/// The sockets of one stream, as the control plane bound them: RTP and optional RTCP, A and B.
#[derive(Debug)]
pub struct StreamSockets {
    pub rtp: [UdpSocket; 2],
    pub rtcp: Option<[UdpSocket; 2]>,
}

/// A control command for a shard.
#[derive(Debug)]
pub enum Command {
    Open {
        id: SessionId,
        call: u64,
        streams: Vec<StreamSockets>,
    },
    SetRemote {
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    ClockRate {
        id: SessionId,
        stream: usize,
        hz: u32,
    },
    /// Closes the session's sockets, then answers (so their ports can be reused).
    Close { id: SessionId, done: Sender<()> },
    Stats {
        id: SessionId,
        reply: Sender<Option<Vec<StreamStats>>>,
    },
}

/// The shard's settings.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    pub batch: usize,
    pub inactivity: Duration,
    pub bare: bool,
    /// `SO_BUSY_POLL` microseconds for the shard's sockets (0: off).
    pub busy_poll_us: u32,
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
}

impl RelayTotals {
    pub fn add(&mut self, c: &ShardCounters) {
        self.received += c.received.load(Ordering::Relaxed);
        self.forwarded += c.forwarded.load(Ordering::Relaxed);
        self.forwarded_bytes += c.forwarded_bytes.load(Ordering::Relaxed);
        self.dropped_foreign += c.dropped_foreign.load(Ordering::Relaxed);
        self.dropped_no_destination += c.dropped_no_destination.load(Ordering::Relaxed);
        self.send_failures += c.send_failures.load(Ordering::Relaxed);
    }
}

/// The state of one forwarding thread.
pub struct Shard {
    cfg: ShardConfig,
    epoll: Epoll,
    wake: Arc<EventFd>,
    commands: Receiver<Command>,
    events: Sender<RelayEvent>,
    table: Table,
    sockets: Vec<Option<UdpSocket>>,
    batch: Batch,
    counters: Arc<ShardCounters>,
}

impl Shard {
    pub fn new(
        cfg: ShardConfig,
        wake: Arc<EventFd>,
        commands: Receiver<Command>,
        events: Sender<RelayEvent>,
        counters: Arc<ShardCounters>,
    ) -> std::io::Result<Shard> {
        let epoll = Epoll::new()?;
        epoll.add(wake.raw(), WAKE)?;
        Ok(Shard {
            batch: Batch::new(cfg.batch),
            table: Table::new(cfg.bare),
            cfg,
            epoll,
            wake,
            commands,
            events,
            sockets: Vec::new(),
            counters,
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
            let wait = next_tick.saturating_duration_since(Instant::now());
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
                if ev.u64 != WAKE {
                    self.forward_from(SlotId(ev.u64 as u32), now);
                }
            }
            if now >= next_tick {
                for call in self.table.poll_inactive(now, self.cfg.inactivity) {
                    // A closed receiver means nobody listens for events: nothing to do.
                    let _ = self.events.send(RelayEvent::Inactive { call });
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
        for i in 0..n {
            let (src, bytes) = self.batch.packet(i);
            let Some(src) = src else { continue };
            let len = bytes.len() as u64;
            match self.table.handle_packet(slot, src, bytes, now) {
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
        c.forwarded.fetch_add(forwarded - failed, Ordering::Relaxed);
        c.forwarded_bytes.fetch_add(bytes_out, Ordering::Relaxed);
        if foreign > 0 {
            c.dropped_foreign.fetch_add(foreign, Ordering::Relaxed);
        }
        if nowhere > 0 {
            c.dropped_no_destination
                .fetch_add(nowhere, Ordering::Relaxed);
        }
        if failed > 0 {
            c.send_failures.fetch_add(failed, Ordering::Relaxed);
        }
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

    fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Open { id, call, streams } => {
                let slots =
                    self.table
                        .handle_open(id, call, streams.len(), streams[0].rtcp.is_none(), now);
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
            Command::SetRemote {
                id,
                stream,
                side,
                rtp,
                rtcp,
            } => {
                self.table
                    .handle_set_remote(id, stream, side, rtp, rtcp, now);
            }
            Command::ClockRate { id, stream, hz } => {
                self.table.handle_clock_rate(id, stream, hz);
            }
            Command::Close { id, done } => {
                for slot in self.table.handle_close(id) {
                    if let Some(socket) = self.sockets[slot.0 as usize].take() {
                        let _ = self.epoll.delete(socket.as_raw_fd());
                    }
                }
                let _ = done.send(());
            }
            Command::Stats { id, reply } => {
                let _ = reply.send(self.table.stats(id, now));
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
