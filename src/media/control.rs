//! The control plane of the media engine, sans-IO: which ports each session's legs use, the
//! commands that tell the forwarding threads what to do, and what they report back.
//!
//! The signalling core owns one [`MediaControl`]. Opening a session allocates its ports here,
//! at once (the SDP that names them goes out in the same step), and queues a
//! [`MediaCommand::Open`]; the driver hands queued commands to the engine ([`super::Relay`]),
//! whose threads bind the sockets and answer with [`MediaEvent`]s that come back to the core
//! as inputs. Nothing here binds a socket, reads the clock or waits.
//!
//! Ports return to the pool only when the engine reports the session [`MediaEvent::Closed`]
//! (its sockets are gone by then), so a port is never handed to a new session while an old
//! socket still holds it. A port the engine could not bind because another process holds it
//! ([`MediaEvent::OpenFailed`]) is taken out of the pool until restart.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::ports::{PortPool, RelayPort};
use super::{LegPorts, RelayError, SessionId, Side, StreamPorts, StreamStats};

/// What kind of endpoint a leg of a session is. Today every leg is plain RTP/RTCP over UDP;
/// the WebRTC leg (ICE-lite + DTLS-SRTP on one muxed port), the conference mixer and the SFU
/// forwarder are to be further kinds of this enum, joined inside the same session and shard
/// (docs/architecture.md, "The media plane").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    /// A phone's RTP/RTCP on a port pair (one port with rtcp-mux), latched symmetrically.
    Rtp,
}

/// One leg of a session to open: its kind and one port pair per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSpec {
    pub kind: LegKind,
    pub ports: Vec<RelayPort>,
}

/// A reply for [`MediaCommand::Stats`], called on the forwarding thread (keep it short: send
/// the counters somewhere). `None` when the session is unknown.
pub type StatsReply = Box<dyn FnOnce(Option<Vec<StreamStats>>) + Send>;

/// A command for the engine.
pub enum MediaCommand {
    /// Bind the legs' sockets and start forwarding between them. Answered with
    /// [`MediaEvent::Opened`] or [`MediaEvent::OpenFailed`].
    Open {
        session: SessionId,
        /// The owner's number for the call, for logs.
        call: u64,
        rtcp_mux: bool,
        /// Side A's leg and side B's leg (`Side::index`).
        legs: [LegSpec; 2],
    },
    /// What a side's SDP announced for a stream: its destination until its first packet
    /// latches it (RTCP to `rtcp`, or the next port when `None`).
    SetRemote {
        session: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    },
    /// The RTP clock rate of a stream (default 8000 Hz), for its jitter.
    ClockRate {
        session: SessionId,
        stream: usize,
        hz: u32,
    },
    /// Close the session's sockets. Answered with [`MediaEvent::Closed`] and the final
    /// counters (also for a session the engine does not know, with none).
    Close { session: SessionId },
    /// The session's counters now, to `reply`.
    Stats {
        session: SessionId,
        reply: StatsReply,
    },
}

impl MediaCommand {
    /// The session the command is for (the engine routes by it).
    pub fn session(&self) -> SessionId {
        match self {
            MediaCommand::Open { session, .. }
            | MediaCommand::SetRemote { session, .. }
            | MediaCommand::ClockRate { session, .. }
            | MediaCommand::Close { session }
            | MediaCommand::Stats { session, .. } => *session,
        }
    }
}

impl fmt::Debug for MediaCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaCommand::Open {
                session,
                call,
                rtcp_mux,
                legs,
            } => f
                .debug_struct("Open")
                .field("session", session)
                .field("call", call)
                .field("rtcp_mux", rtcp_mux)
                .field("legs", legs)
                .finish(),
            MediaCommand::SetRemote {
                session,
                stream,
                side,
                rtp,
                rtcp,
            } => f
                .debug_struct("SetRemote")
                .field("session", session)
                .field("stream", stream)
                .field("side", side)
                .field("rtp", rtp)
                .field("rtcp", rtcp)
                .finish(),
            MediaCommand::ClockRate {
                session,
                stream,
                hz,
            } => f
                .debug_struct("ClockRate")
                .field("session", session)
                .field("stream", stream)
                .field("hz", hz)
                .finish(),
            MediaCommand::Close { session } => {
                f.debug_struct("Close").field("session", session).finish()
            }
            MediaCommand::Stats { session, .. } => {
                f.debug_struct("Stats").field("session", session).finish()
            }
        }
    }
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// The session's sockets are bound and forwarding.
    Opened { session: SessionId },
    /// A socket could not be bound; nothing of the session is left in the engine. `busy` are
    /// the pairs another process holds.
    OpenFailed {
        session: SessionId,
        busy: Vec<RelayPort>,
        error: String,
    },
    /// The session's sockets are closed; its counters at the end.
    Closed {
        session: SessionId,
        stats: Vec<StreamStats>,
    },
    /// No packet was accepted on any socket of the session for the inactivity time.
    Inactive { session: SessionId, call: u64 },
}

impl MediaEvent {
    pub fn session(&self) -> SessionId {
        match self {
            MediaEvent::Opened { session }
            | MediaEvent::OpenFailed { session, .. }
            | MediaEvent::Closed { session, .. }
            | MediaEvent::Inactive { session, .. } => *session,
        }
    }
}

/// An open session, as [`MediaControl::open`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub call: u64,
    pub streams: Vec<StreamPorts>,
}

#[derive(Debug)]
struct SessionRecord {
    pairs: Vec<RelayPort>,
    ports: usize,
    streams: usize,
    closing: bool,
}

/// What an event meant for the session's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The session is gone and its ports are free (closed, or its open failed).
    Gone,
    /// Nothing changed here (an `Opened`, an `Inactive`, or a session not ours).
    Unchanged,
}

/// The port pool and the sessions of the engine, as the signalling core sees them.
#[derive(Debug)]
pub struct MediaControl {
    pool: PortPool,
    advertise: IpAddr,
    next_id: u64,
    sessions: HashMap<SessionId, SessionRecord>,
    ports_in_use: usize,
    /// Pairs another process holds: never handed out again.
    quarantined: usize,
    commands: VecDeque<MediaCommand>,
}

impl MediaControl {
    /// The ports `lo..=hi` (RTP even, RTCP the next odd one), named in SDP with `advertise`.
    pub fn new(port_range: (u16, u16), advertise: IpAddr) -> MediaControl {
        MediaControl {
            pool: PortPool::new(port_range.0, port_range.1),
            advertise,
            next_id: 1,
            sessions: HashMap::new(),
            ports_in_use: 0,
            quarantined: 0,
            commands: VecDeque::new(),
        }
    }

    /// Opens a session of `streams` streams for `call`: per stream a port pair for side A and
    /// one for side B (one port each with `rtcp_mux`). The ports are the session's from now;
    /// the engine binds them when it gets the queued command.
    pub fn open(
        &mut self,
        call: u64,
        streams: usize,
        rtcp_mux: bool,
    ) -> Result<Session, RelayError> {
        if streams == 0 {
            return Err(RelayError::NoStreams);
        }
        let mut legs = [Vec::with_capacity(streams), Vec::with_capacity(streams)];
        for _ in 0..streams {
            for leg in &mut legs {
                match self.pool.allocate() {
                    Some(p) => leg.push(p),
                    None => {
                        for p in legs.iter().flatten() {
                            self.pool.release(*p);
                        }
                        return Err(RelayError::PortsExhausted);
                    }
                }
            }
        }
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let ports = 2 * streams * if rtcp_mux { 1 } else { 2 };
        let pairs: Vec<RelayPort> = legs.iter().flatten().copied().collect();
        let out = (0..streams)
            .map(|i| StreamPorts {
                a: self.leg_ports(legs[0][i], rtcp_mux),
                b: self.leg_ports(legs[1][i], rtcp_mux),
            })
            .collect();
        self.ports_in_use += ports;
        self.sessions.insert(
            id,
            SessionRecord {
                pairs,
                ports,
                streams,
                closing: false,
            },
        );
        let [a, b] = legs;
        self.commands.push_back(MediaCommand::Open {
            session: id,
            call,
            rtcp_mux,
            legs: [
                LegSpec {
                    kind: LegKind::Rtp,
                    ports: a,
                },
                LegSpec {
                    kind: LegKind::Rtp,
                    ports: b,
                },
            ],
        });
        Ok(Session {
            id,
            call,
            streams: out,
        })
    }

    /// What a side's SDP announced for a stream's RTP and RTCP.
    pub fn set_remote(
        &mut self,
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
        rtcp: Option<SocketAddr>,
    ) -> Result<(), RelayError> {
        self.check(id, stream)?;
        self.commands.push_back(MediaCommand::SetRemote {
            session: id,
            stream,
            side,
            rtp,
            rtcp,
        });
        Ok(())
    }

    /// The RTP clock rate of a stream.
    pub fn set_clock_rate(
        &mut self,
        id: SessionId,
        stream: usize,
        hz: u32,
    ) -> Result<(), RelayError> {
        self.check(id, stream)?;
        self.commands.push_back(MediaCommand::ClockRate {
            session: id,
            stream,
            hz,
        });
        Ok(())
    }

    /// Asks the engine to close a session; its ports are freed when it reports
    /// [`MediaEvent::Closed`]. `Ok(false)` when it is already closing.
    pub fn close(&mut self, id: SessionId) -> Result<bool, RelayError> {
        let record = self
            .sessions
            .get_mut(&id)
            .ok_or(RelayError::UnknownSession(id))?;
        if std::mem::replace(&mut record.closing, true) {
            return Ok(false);
        }
        self.commands.push_back(MediaCommand::Close { session: id });
        Ok(true)
    }

    /// An event of the engine: frees the ports of a closed session or of a failed open
    /// (keeping back the pairs another process holds).
    pub fn handle_event(&mut self, event: &MediaEvent) -> Settled {
        let (id, busy) = match event {
            MediaEvent::Closed { session, .. } => (*session, &[][..]),
            MediaEvent::OpenFailed { session, busy, .. } => (*session, &busy[..]),
            MediaEvent::Opened { .. } | MediaEvent::Inactive { .. } => return Settled::Unchanged,
        };
        let Some(record) = self.sessions.remove(&id) else {
            return Settled::Unchanged;
        };
        for p in record.pairs {
            if busy.contains(&p) {
                self.quarantined += 1;
            } else {
                self.pool.release(p);
            }
        }
        self.ports_in_use -= record.ports;
        Settled::Gone
    }

    /// The next command for the engine.
    pub fn poll_command(&mut self) -> Option<MediaCommand> {
        self.commands.pop_front()
    }

    /// Is this session open (or opening, or closing)?
    pub fn is_open(&self, id: SessionId) -> bool {
        self.sessions.contains_key(&id)
    }

    /// The ports held by sessions (opened, or closed but not yet reported closed).
    pub fn ports_in_use(&self) -> usize {
        self.ports_in_use
    }

    /// The sessions the engine has or is about to have.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Pairs taken out of the pool because another process held them.
    pub fn quarantined(&self) -> usize {
        self.quarantined
    }

    fn check(&self, id: SessionId, stream: usize) -> Result<(), RelayError> {
        let record = self
            .sessions
            .get(&id)
            .ok_or(RelayError::UnknownSession(id))?;
        if stream >= record.streams {
            return Err(RelayError::UnknownStream(id, stream));
        }
        Ok(())
    }

    fn leg_ports(&self, pair: RelayPort, rtcp_mux: bool) -> LegPorts {
        let rtp = SocketAddr::new(self.advertise, pair.rtp());
        let rtcp = if rtcp_mux {
            rtp
        } else {
            SocketAddr::new(self.advertise, pair.rtcp())
        };
        LegPorts { rtp, rtcp }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(range: (u16, u16)) -> MediaControl {
        MediaControl::new(range, "192.0.2.1".parse().unwrap())
    }

    fn closed(session: SessionId) -> MediaEvent {
        MediaEvent::Closed {
            session,
            stats: Vec::new(),
        }
    }

    #[test]
    fn open_allocates_and_queues_one_command() {
        let mut c = control((20000, 20099));
        let s = c.open(7, 2, false).unwrap();
        assert_eq!(s.streams.len(), 2);
        assert_eq!(s.streams[0].a.rtcp.port(), s.streams[0].a.rtp.port() + 1);
        assert_eq!(
            s.streams[0].a.rtp.ip(),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c.ports_in_use(), 8);
        match c.poll_command() {
            Some(MediaCommand::Open {
                session,
                call,
                legs,
                rtcp_mux,
            }) => {
                assert_eq!((session, call, rtcp_mux), (s.id, 7, false));
                assert_eq!(legs[0].ports.len(), 2);
                assert_eq!(legs[1].ports[1].rtp(), s.streams[1].b.rtp.port());
            }
            other => panic!("{other:?}"),
        }
        assert!(c.poll_command().is_none());
    }

    #[test]
    fn ports_come_back_only_when_the_engine_says_closed() {
        // Two pairs: one rtcp-mux session of one stream takes both.
        let mut c = control((20000, 20003));
        let s = c.open(1, 1, true).unwrap();
        assert!(c.close(s.id).unwrap());
        assert!(!c.close(s.id).unwrap(), "a second close is not queued");
        assert!(matches!(
            c.open(2, 1, true),
            Err(RelayError::PortsExhausted)
        ));
        assert_eq!(c.handle_event(&closed(s.id)), Settled::Gone);
        assert_eq!(c.ports_in_use(), 0);
        assert_eq!(c.handle_event(&closed(s.id)), Settled::Unchanged);
        assert!(c.open(3, 1, true).is_ok());
    }

    #[test]
    fn a_busy_pair_is_never_handed_out_again() {
        let mut c = control((20000, 20007)); // four pairs
        let s = c.open(1, 1, true).unwrap();
        let busy = RelayPort::from_rtp(s.streams[0].b.rtp.port()).unwrap();
        let failed = MediaEvent::OpenFailed {
            session: s.id,
            busy: vec![busy],
            error: "in use".into(),
        };
        assert_eq!(c.handle_event(&failed), Settled::Gone);
        assert_eq!((c.ports_in_use(), c.quarantined()), (0, 1));
        let mut seen = Vec::new();
        while let Ok(s) = c.open(2, 1, true) {
            seen.push(s.streams[0].a.rtp.port());
            seen.push(s.streams[0].b.rtp.port());
        }
        assert_eq!(seen.len(), 2, "three pairs left, one session of two");
        assert!(!seen.contains(&busy.rtp()));
    }

    #[test]
    fn commands_for_unknown_sessions_and_streams_are_errors() {
        let mut c = control((20000, 20099));
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(matches!(
            c.set_remote(SessionId(9), 0, Side::A, a, None),
            Err(RelayError::UnknownSession(_))
        ));
        let s = c.open(1, 1, true).unwrap();
        assert!(matches!(
            c.set_remote(s.id, 1, Side::A, a, None),
            Err(RelayError::UnknownStream(_, 1))
        ));
        assert!(matches!(c.open(1, 0, true), Err(RelayError::NoStreams)));
    }
}
