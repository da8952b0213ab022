//! Media anchoring: the RTP relay (DESIGN D8). Owns the relay's ports, sockets and forwarding
//! threads; knows nothing of SIP or SDP (the proxy rewrites SDP and drives this API).
//!
//! Shape: a control plane ([`Relay`], a handle any thread may call) and a data plane of
//! forwarding threads ([`shard`]), each owning the sockets of the sessions assigned to it in its
//! own epoll set and forwarding with `recvmmsg`/`sendmmsg` through preallocated buffers: no
//! allocation, lock or channel per packet. Control reaches a shard as [`shard::Command`]s over
//! a channel plus an eventfd in its epoll set. The forwarding decisions (latching, counters,
//! inactivity) are the sans-IO [`table::Table`]'s; [`rtp`] holds the RFC 3550 counters and
//! [`ports`] the port pool.
//!
//! Semantics: a packet received on side A's socket of a stream leaves from side B's socket to
//! B's destination, and vice versa. The first packet received on a socket latches its source;
//! from then on that side's destination is the latched source and packets from any other
//! source on that socket are dropped and counted. A re-INVITE that announces a different
//! address for a side releases that side's latch (see `table::Slot::announce`). Before latching the destination is
//! the address given by [`Relay::set_remote`]; with neither, packets are dropped and counted.

pub mod ports;
pub mod rtp;
pub mod shard;
pub mod sys;
pub mod table;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use self::ports::{PortPool, RelayPort};
pub use self::shard::RelayTotals;
use self::shard::{Command, Shard, ShardConfig, ShardCounters, StreamSockets};
use self::sys::EventFd;

/// The relay's settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The ports to allocate from, inclusive (RTP on even ports, RTCP on the next odd one).
    pub port_range: (u16, u16),
    /// The address the relay's sockets bind to.
    pub bind: IpAddr,
    /// The address put in SDP (differs from `bind` behind NAT or on multi-homed hosts).
    pub advertise: IpAddr,
    /// Forwarding threads (0: one per core).
    pub threads: usize,
    /// A session with no packet in either direction of any stream for this long is reported
    /// as [`RelayEvent::Inactive`].
    pub inactivity: Duration,
    /// Datagrams per `recvmmsg`/`sendmmsg`.
    pub batch: usize,
    /// `SO_BUSY_POLL` microseconds on every relay socket (0: off; see docs/decisions.md).
    pub busy_poll_us: u32,
    /// Benchmark baseline: forward to the `set_remote` addresses only, with no latching,
    /// counters or inactivity (a bare `recvmmsg`/`sendmmsg` forwarder on the same sockets).
    pub bare: bool,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            port_range: (10000, 20000),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            advertise: IpAddr::V4(Ipv4Addr::LOCALHOST),
            threads: 0,
            inactivity: Duration::from_secs(60),
            batch: 32,
            busy_poll_us: 0,
            bare: false,
        }
    }
}

/// A session of the relay: the media streams of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

/// The two call legs a session joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// A direction of a stream, named by where its packets come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Received on side A's ports (sent by A), forwarded to B.
    AToB,
    /// Received on side B's ports, forwarded to A.
    BToA,
}

/// The relay addresses of one side of a stream: where that side's phone must send (the
/// addresses to write into the SDP that side receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegPorts {
    pub rtp: SocketAddr,
    /// Equal to `rtp` with rtcp-mux.
    pub rtcp: SocketAddr,
}

/// The ports of one media stream, per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPorts {
    pub a: LegPorts,
    pub b: LegPorts,
}

/// An open session, as returned by [`Relay::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub call: u64,
    pub streams: Vec<StreamPorts>,
}

/// The counters of one direction of one stream (RTP and RTCP sockets together; loss and
/// jitter from RTP only).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStats {
    pub stream: usize,
    pub direction: Direction,
    /// The latched source of the sending side, if it sent anything.
    pub source: Option<SocketAddr>,
    /// Packets and bytes forwarded.
    pub packets: u64,
    pub bytes: u64,
    /// Packets from a source other than the latched one.
    pub dropped_foreign: u64,
    /// Packets that arrived before the other side had any destination.
    pub dropped_no_destination: u64,
    /// RTP packets missing from the sequence (RFC 3550 A.1).
    pub lost: u64,
    /// RFC 3550 interarrival jitter, in milliseconds (8 kHz clock unless set otherwise).
    pub jitter_ms: f64,
    /// Time since the last accepted packet, `None` if none arrived.
    pub last_packet_age: Option<Duration>,
}

/// What the relay tells its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    /// No packet was accepted on any socket of the call's session for the inactivity time.
    Inactive { call: u64 },
}

/// Errors of the relay's control plane.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no free relay ports left in the configured range")]
    PortsExhausted,
    #[error("no relay session {0:?}")]
    UnknownSession(SessionId),
    #[error("relay session {0:?} has no stream {1}")]
    UnknownStream(SessionId, usize),
    #[error("a session needs at least one stream")]
    NoStreams,
    #[error("relay socket: {0}")]
    Io(#[from] io::Error),
}

struct ShardHandle {
    counters: Arc<ShardCounters>,
    commands: Option<Sender<Command>>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl ShardHandle {
    fn send(&self, cmd: Command) {
        if let Some(tx) = &self.commands {
            // A dead shard (it only stops on an epoll failure, logged) just ignores commands.
            let _ = tx.send(cmd);
            self.wake.notify();
        }
    }
}

struct SessionRecord {
    shard: usize,
    streams: usize,
    pairs: Vec<RelayPort>,
    ports: usize,
}

struct Control {
    pool: PortPool,
    next_id: u64,
    sessions: HashMap<SessionId, SessionRecord>,
    ports_in_use: usize,
}

/// The RTP relay: the control-plane handle of the forwarding threads. Dropping it stops them.
pub struct Relay {
    cfg: RelayConfig,
    shards: Vec<ShardHandle>,
    control: Mutex<Control>,
    events: Mutex<Receiver<RelayEvent>>,
}

impl Relay {
    /// Starts the forwarding threads.
    pub fn start(cfg: RelayConfig) -> io::Result<Relay> {
        let threads = match cfg.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (events_tx, events_rx) = mpsc::channel();
        let mut shards = Vec::with_capacity(threads);
        for i in 0..threads {
            let (tx, rx) = mpsc::channel();
            let wake = Arc::new(EventFd::new()?);
            let counters = Arc::new(ShardCounters::default());
            let shard = Shard::new(
                ShardConfig {
                    batch: cfg.batch,
                    inactivity: cfg.inactivity,
                    bare: cfg.bare,
                    busy_poll_us: cfg.busy_poll_us,
                },
                wake.clone(),
                rx,
                events_tx.clone(),
                counters.clone(),
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("relay-{i}"))
                .spawn(move || shard.run())?;
            shards.push(ShardHandle {
                counters,
                commands: Some(tx),
                wake,
                thread: Some(thread),
            });
        }
        Ok(Relay {
            control: Mutex::new(Control {
                pool: PortPool::new(cfg.port_range.0, cfg.port_range.1),
                next_id: 1,
                sessions: HashMap::new(),
                ports_in_use: 0,
            }),
            cfg,
            shards,
            events: Mutex::new(events_rx),
        })
    }

    /// Opens a session of `streams` media streams for `call`: per stream, a port pair for
    /// side A and one for side B (one port each with `rtcp_mux`).
    pub fn open(&self, call: u64, streams: usize, rtcp_mux: bool) -> Result<Session, RelayError> {
        if streams == 0 {
            return Err(RelayError::NoStreams);
        }
        let mut control = self.lock();
        let mut pairs = Vec::with_capacity(2 * streams);
        let mut sockets = Vec::with_capacity(streams);
        let mut ports = Vec::with_capacity(streams);
        let result = (|| {
            for _ in 0..streams {
                let (pa, a) = self.bind_pair(&mut control.pool, rtcp_mux)?;
                pairs.push(pa);
                let (pb, b) = self.bind_pair(&mut control.pool, rtcp_mux)?;
                pairs.push(pb);
                ports.push(StreamPorts {
                    a: self.leg_ports(pa, rtcp_mux),
                    b: self.leg_ports(pb, rtcp_mux),
                });
                sockets.push(StreamSockets {
                    rtp: [a.0, b.0],
                    rtcp: a.1.zip(b.1).map(|(a, b)| [a, b]),
                });
            }
            Ok(())
        })();
        if let Err(e) = result {
            for p in pairs {
                control.pool.release(p);
            }
            return Err(e);
        }
        let id = SessionId(control.next_id);
        control.next_id += 1;
        let shard = (id.0 % self.shards.len() as u64) as usize;
        let used = pairs.len() * if rtcp_mux { 1 } else { 2 };
        control.ports_in_use += used;
        control.sessions.insert(
            id,
            SessionRecord {
                shard,
                streams,
                pairs,
                ports: used,
            },
        );
        self.shards[shard].send(Command::Open {
            id,
            call,
            streams: sockets,
        });
        Ok(Session {
            id,
            call,
            streams: ports,
        })
    }

    /// Sets the address a side's SDP announced for a stream's RTP (its RTCP goes to the next
    /// port unless [`Relay::set_remote_rtcp`] says otherwise): the destination of that side
    /// until its first packet latches it.
    pub fn set_remote(
        &self,
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
    ) -> Result<(), RelayError> {
        self.set_remotes(id, stream, side, rtp, None)
    }

    /// As [`Relay::set_remote`], with the RTCP address of an SDP `a=rtcp:` attribute.
    pub fn set_remote_rtcp(
        &self,
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
        rtcp: SocketAddr,
    ) -> Result<(), RelayError> {
        self.set_remotes(id, stream, side, rtp, Some(rtcp))
    }

    fn set_remotes(
        &self,
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        let shard = self.shard_of(id, stream)?;
        self.shards[shard].send(Command::SetRemote {
            id,
            stream,
            side,
            rtp,
            rtcp,
        });
        Ok(())
    }

    /// Sets the RTP clock rate of a stream (default 8000 Hz), used for its jitter.
    pub fn set_clock_rate(&self, id: SessionId, stream: usize, hz: u32) -> Result<(), RelayError> {
        let shard = self.shard_of(id, stream)?;
        self.shards[shard].send(Command::ClockRate { id, stream, hz });
        Ok(())
    }

    /// Closes a session: its sockets are closed (waiting for its forwarding thread to finish
    /// the batch in hand) and its ports return to the pool.
    pub fn close(&self, id: SessionId) -> Result<(), RelayError> {
        let mut control = self.lock();
        let record = control
            .sessions
            .remove(&id)
            .ok_or(RelayError::UnknownSession(id))?;
        let (done, wait) = mpsc::channel();
        self.shards[record.shard].send(Command::Close { id, done });
        // An error means the shard is gone, and its sockets with it.
        let _ = wait.recv();
        for p in record.pairs {
            control.pool.release(p);
        }
        control.ports_in_use -= record.ports;
        Ok(())
    }

    /// The counters of a session, per stream and direction.
    pub fn stats(&self, id: SessionId) -> Result<Vec<StreamStats>, RelayError> {
        let shard = self.shard_of(id, 0)?;
        let (reply, wait) = mpsc::channel();
        self.shards[shard].send(Command::Stats { id, reply });
        wait.recv()
            .ok()
            .flatten()
            .ok_or(RelayError::UnknownSession(id))
    }

    /// The next pending event, without waiting.
    pub fn poll_event(&self) -> Option<RelayEvent> {
        self.events_rx().try_recv().ok()
    }

    /// The next event, waiting up to `timeout`.
    pub fn wait_event(&self, timeout: Duration) -> Option<RelayEvent> {
        self.events_rx().recv_timeout(timeout).ok()
    }

    /// The number of ports bound by open sessions.
    /// What every forwarding thread has done since the start (packets, bytes, drops).
    pub fn totals(&self) -> RelayTotals {
        let mut t = RelayTotals::default();
        for shard in &self.shards {
            t.add(&shard.counters);
        }
        t
    }

    pub fn ports_in_use(&self) -> usize {
        self.lock().ports_in_use
    }

    /// The number of open sessions.
    pub fn sessions(&self) -> usize {
        self.lock().sessions.len()
    }

    /// The configuration the relay runs with.
    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    fn shard_of(&self, id: SessionId, stream: usize) -> Result<usize, RelayError> {
        let control = self.lock();
        let record = control
            .sessions
            .get(&id)
            .ok_or(RelayError::UnknownSession(id))?;
        if stream >= record.streams {
            return Err(RelayError::UnknownStream(id, stream));
        }
        Ok(record.shard)
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        // A poisoned lock means a panic in this file's bookkeeping, a bug; the state is
        // still consistent enough to continue (every update is a single step).
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn events_rx(&self) -> MutexGuard<'_, Receiver<RelayEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn leg_ports(&self, pair: RelayPort, rtcp_mux: bool) -> LegPorts {
        let rtp = SocketAddr::new(self.cfg.advertise, pair.rtp());
        let rtcp = if rtcp_mux {
            rtp
        } else {
            SocketAddr::new(self.cfg.advertise, pair.rtcp())
        };
        LegPorts { rtp, rtcp }
    }

    /// Takes a pair from the pool and binds its sockets, skipping pairs another process holds.
    fn bind_pair(
        &self,
        pool: &mut PortPool,
        rtcp_mux: bool,
    ) -> Result<(RelayPort, (UdpSocket, Option<UdpSocket>)), RelayError> {
        let mut busy = Vec::new();
        let result = loop {
            if busy.len() >= pool.capacity() {
                break Err(RelayError::PortsExhausted);
            }
            let Some(pair) = pool.allocate() else {
                break Err(RelayError::PortsExhausted);
            };
            let rtp = match bind_udp(SocketAddr::new(self.cfg.bind, pair.rtp())) {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                    busy.push(pair);
                    continue;
                }
                Err(e) => {
                    pool.release(pair);
                    break Err(e.into());
                }
            };
            if rtcp_mux {
                break Ok((pair, (rtp, None)));
            }
            match bind_udp(SocketAddr::new(self.cfg.bind, pair.rtcp())) {
                Ok(rtcp) => break Ok((pair, (rtp, Some(rtcp)))),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => busy.push(pair),
                Err(e) => {
                    pool.release(pair);
                    break Err(e.into());
                }
            }
        };
        for pair in busy {
            pool.release(pair);
        }
        result
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        for shard in &mut self.shards {
            shard.commands = None;
            shard.wake.notify();
        }
        for shard in &mut self.shards {
            if let Some(t) = shard.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}
