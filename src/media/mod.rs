//! Media anchoring: the RTP relay (DESIGN D8), the one media plane. Owns the relay's sockets
//! and forwarding threads; knows nothing of SIP or SDP (the proxy rewrites SDP and drives the
//! control plane).
//!
//! Shape: a sans-IO control plane ([`control::MediaControl`], owned by the signalling core:
//! the port pool, the sessions, the [`MediaCommand`]s to send), the engine handle ([`Relay`]:
//! [`Relay::submit`] routes a command to the forwarding thread of its session and returns at
//! once) and a data plane of forwarding threads ([`shard`]), each owning the sockets of its
//! sessions in its own epoll set and forwarding with `recvmmsg`/`sendmmsg` through
//! preallocated buffers: no allocation, lock or channel per packet. A thread binds a session's
//! sockets when its `Open` arrives (over a channel plus an eventfd in its epoll set) and
//! reports back [`MediaEvent`]s (opened, open failed, closed with the final counters,
//! inactive). The forwarding decisions (latching, counters, inactivity) are the sans-IO
//! [`table::Table`]'s; [`rtp`] holds the RFC 3550 counters and [`ports`] the port pool.
//! [`blocking::BlockingRelay`] drives engine and control synchronously for tools and tests.
//!
//! Semantics: a packet received on side A's socket of a stream leaves from side B's socket to
//! B's destination, and vice versa. The first packet received on a socket latches its source;
//! from then on that side's destination is the latched source and packets from any other
//! source on that socket are dropped and counted. A re-INVITE that announces a different
//! address for a side releases that side's latch (see `table::Slot::announce`). Before
//! latching the destination is the address given by [`MediaCommand::SetRemote`]; with
//! neither, packets are dropped and counted.

pub mod blocking;
pub mod conference;
pub mod control;
pub mod gateway;
pub mod mixer;
pub mod ports;
pub mod rtp;
pub mod sfu;
pub mod shard;
pub mod sys;
pub mod table;
pub mod transcode;
pub mod webrtc;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

pub use self::control::{
    BrowserStatsReply, LegKind, LegSpec, MediaCommand, MediaControl, MediaEvent, MediaKind,
    Payload, RoomId, RoomParticipant, RoomState, RoomStatsReply, RoomVideo, RoomVideoAsk, Session,
    Settled, StatsReply, WebRtcParams, WebRtcStream,
};
pub use self::shard::RelayTotals;
use self::shard::{Shard, ShardConfig, ShardCounters};
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
    /// as [`MediaEvent::Inactive`].
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
    /// The side across the session.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

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

impl StreamPorts {
    /// Where `side`'s phone must send.
    pub fn of(&self, side: Side) -> LegPorts {
        match side {
            Side::A => self.a,
            Side::B => self.b,
        }
    }
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
    #[error("the relay could not open the session: {0}")]
    OpenFailed(String),
    #[error("the relay's forwarding threads did not answer")]
    NoAnswer,
}

struct ShardHandle {
    counters: Arc<ShardCounters>,
    commands: Option<Sender<MediaCommand>>,
    wake: Arc<EventFd>,
    thread: Option<JoinHandle<()>>,
}

impl ShardHandle {
    fn send(&self, cmd: MediaCommand) {
        if let Some(tx) = &self.commands {
            // A dead shard (it only stops on an epoll failure, logged) just ignores commands.
            let _ = tx.send(cmd);
            self.wake.notify();
        }
    }
}

/// The RTP relay engine: the handle of its forwarding threads. [`Relay::submit`] hands a
/// [`MediaCommand`] to the thread of its session and returns at once; what the threads have
/// to say comes back as [`MediaEvent`]s ([`Relay::poll_event`], [`Relay::wait_event`]).
/// Dropping the handle stops the threads.
pub struct Relay {
    cfg: RelayConfig,
    identity: Option<webrtc::Identity>,
    shards: Vec<ShardHandle>,
    /// The binder thread's commands (`Reserve`).
    binder: Option<Sender<MediaCommand>>,
    binder_thread: Option<JoinHandle<()>>,
    events: Mutex<Receiver<MediaEvent>>,
}

impl Relay {
    /// Starts the forwarding threads.
    pub fn start(cfg: RelayConfig) -> io::Result<Relay> {
        let threads = match cfg.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let (events_tx, events_rx) = mpsc::channel();
        let reserve = shard::Reserve::default();
        let (binder_tx, binder_rx) = mpsc::channel();
        let binder_thread = {
            let (reserve, events, bind) = (reserve.clone(), events_tx.clone(), cfg.bind);
            std::thread::Builder::new()
                .name("relay-bind".into())
                .spawn(move || shard::bind_reserves(binder_rx, reserve, bind, events))?
        };
        // One DTLS certificate for every browser leg of the process.
        let identity = match webrtc::Identity::generate() {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!("relay: no DTLS certificate, so no WebRTC gateway: {e}");
                None
            }
        };
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
                    bind: cfg.bind,
                    advertise: cfg.advertise,
                    identity: identity.clone(),
                },
                wake.clone(),
                rx,
                events_tx.clone(),
                counters.clone(),
                reserve.clone(),
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
            cfg,
            identity,
            shards,
            binder: Some(binder_tx),
            binder_thread: Some(binder_thread),
            events: Mutex::new(events_rx),
        })
    }

    /// Hands a command to the forwarding thread of its session (a session lives on one
    /// thread, chosen by its id), or a `Reserve` to the binder thread. Never waits.
    pub fn submit(&self, cmd: MediaCommand) {
        match cmd.route_key() {
            Some(key) => self.shards[(key % self.shards.len() as u64) as usize].send(cmd),
            None => {
                if let Some(tx) = &self.binder {
                    // A dead binder (it never stops before the handle) ignores commands.
                    let _ = tx.send(cmd);
                }
            }
        }
    }

    /// The next pending event, without waiting.
    pub fn poll_event(&self) -> Option<MediaEvent> {
        self.events_rx().try_recv().ok()
    }

    /// The next event, waiting up to `timeout`.
    pub fn wait_event(&self, timeout: Duration) -> Option<MediaEvent> {
        self.events_rx().recv_timeout(timeout).ok()
    }

    /// What every forwarding thread has done since the start (packets, bytes, drops).
    pub fn totals(&self) -> RelayTotals {
        let mut t = RelayTotals::default();
        for shard in &self.shards {
            t.add(&shard.counters);
        }
        t
    }

    /// The fingerprint of the browser legs' DTLS certificate (`sha-256 AB:…`), for the
    /// core's SDP; `None` without a WebRTC gateway.
    pub fn fingerprint(&self) -> Option<&str> {
        self.identity.as_ref().map(|i| i.fingerprint())
    }

    /// The configuration the relay runs with.
    pub fn config(&self) -> &RelayConfig {
        &self.cfg
    }

    fn events_rx(&self) -> MutexGuard<'_, Receiver<MediaEvent>> {
        // Only `recv` runs under the lock; a poisoned lock has a usable receiver.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.binder = None;
        if let Some(t) = self.binder_thread.take() {
            let _ = t.join();
        }
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
