//! The control plane of the media engine, sans-IO: which ports each session's legs use, the
//! commands that tell the forwarding threads what to do, and what they report back.
//!
//! The signalling core owns one [`MediaControl`]. Opening a session allocates its ports here,
//! at once (the SDP that names them goes out in the same step), and queues a
//! [`MediaCommand::Open`]; the driver hands queued commands to the engine ([`super::Relay`]),
//! whose threads bind the sockets and answer with [`MediaEvent`]s that come back to the core
//! as inputs. Nothing here binds a socket, reads the clock or waits.
//!
//! A session only gets ports the engine has already bound: the control keeps a reserve of
//! pairs the engine bound ahead ([`MediaCommand::Reserve`] → [`MediaEvent::Reserved`]), refilled
//! as sessions take from it, one request at a time. A pair another process holds (a port of the
//! range that some program got as an ephemeral port) is reported busy, goes back to the pool
//! and is tried again when the pool comes round to it; no call ever names it in SDP.
//! Ports return to the pool only when the engine reports the session [`MediaEvent::Closed`]
//! (its sockets are gone by then), so a port is never handed to a new session while an old
//! socket still holds it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use super::mixer::{MixerEvent, ParticipantSpec};
use super::ports::{PortPool, RelayPort};
use super::{LegPorts, RelayError, SessionId, Side, StreamPorts, StreamStats};

/// What kind of endpoint a leg of a session is. Every leg opens as plain RTP/RTCP over UDP;
/// [`MediaCommand::WebRtc`] turns a side into a WebRTC leg (ICE-lite + DTLS-SRTP on its first
/// stream's RTP port, all streams bundled on it). The conference mixer and the SFU forwarder
/// are to be further kinds, joined inside the same session and shard (docs/architecture.md,
/// "The media plane").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    /// A phone's RTP/RTCP on a port pair (one port with rtcp-mux), latched symmetrically.
    Rtp,
    /// A browser: ICE-lite, DTLS-SRTP, rtcp-mux and BUNDLE on one port.
    WebRtc,
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

/// One stream of a WebRTC leg, as its SDP negotiated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcStream {
    pub mid: String,
    pub kind: MediaKind,
    /// The SSRC the gateway sends to the browser with (announced in our SDP).
    pub ssrc_tx: u32,
    /// The SSRCs the browser announced (may be empty: then they are learnt from the mid
    /// header extension or the payload type).
    pub ssrcs_rx: Vec<u32>,
    /// The payload types as negotiated.
    pub payloads: Vec<Payload>,
}

/// One negotiated payload type: `a=rtpmap` and `a=fmtp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub pt: u8,
    /// `opus/48000/2`, `pcmu/8000`, `vp8/90000` (lowercase).
    pub codec: String,
    pub fmtp: String,
}

/// What a WebRTC leg needs: both sides' ICE credentials, the browser's certificate
/// fingerprint, the DTLS role our SDP announced, and the streams. The gateway's certificate
/// is the process's one ([`MediaControl::set_fingerprint`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebRtcParams {
    pub local_ufrag: String,
    pub local_pwd: String,
    pub remote_ufrag: String,
    pub remote_pwd: String,
    /// `sha-256 AB:CD:…`, as after `a=fingerprint:`.
    pub remote_fingerprint: String,
    /// True: our SDP said `a=setup:active`, we are the DTLS client.
    pub dtls_active: bool,
    /// The id of the mid header extension both SDPs carry, if any.
    pub mid_extension: Option<u8>,
    pub streams: Vec<WebRtcStream>,
}

/// One leg of a session to open: its kind and one port pair per stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegSpec {
    pub kind: LegKind,
    pub ports: Vec<RelayPort>,
}

/// A reply for [`MediaCommand::Stats`], called on the forwarding thread (keep it short: send
/// the counters somewhere). `None` when the session is unknown.
pub struct StatsReply(pub Box<dyn FnOnce(Option<Vec<StreamStats>>) + Send>);

impl fmt::Debug for StatsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StatsReply")
    }
}

/// A reply for [`MediaCommand::BrowserStats`], called on the forwarding thread.
pub struct BrowserStatsReply(pub Box<dyn FnOnce(Vec<super::gateway::BrowserStats>) + Send>);

impl fmt::Debug for BrowserStatsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BrowserStatsReply")
    }
}

/// Both legs of a session's (new) streams as plain RTP legs.
fn rtp_legs([a, b]: [Vec<RelayPort>; 2]) -> [LegSpec; 2] {
    [
        LegSpec {
            kind: LegKind::Rtp,
            ports: a,
        },
        LegSpec {
            kind: LegKind::Rtp,
            ports: b,
        },
    ]
}

/// A conference room of the media plane (the signalling core numbers them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(pub u32);

/// One participant of a room as the engine sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomParticipant {
    pub session: SessionId,
    /// The latched source, else the announced address.
    pub source: Option<SocketAddr>,
    pub stats: super::mixer::ParticipantStats,
    /// Packets from another address than the participant's, dropped.
    pub dropped_foreign: u64,
    /// Whom each of its video lines shows now, by line (the room's SFU).
    pub showing: Vec<Option<SessionId>>,
}

/// A room's state for `tambun conf show` and `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomState {
    pub room: RoomId,
    pub participants: Vec<RoomParticipant>,
    /// Talkers mixed in the last tick.
    pub mixed: usize,
    pub ticks: u64,
    /// The room's video forwarding.
    pub video: super::sfu::SfuStats,
}

/// A video m-line of a participant joining a room: its port pair (one port with
/// `rtcp_mux`), the address its SDP announced, and what the line does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomVideo {
    pub port: RelayPort,
    pub rtcp_mux: bool,
    pub remote: Option<SocketAddr>,
    pub line: super::sfu::VideoLine,
}

/// A video m-line as the signalling core asks for it ([`MediaControl::room_join`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomVideoAsk {
    pub rtcp_mux: bool,
    pub remote: Option<SocketAddr>,
    pub line: super::sfu::VideoLine,
}

/// A reply for [`MediaCommand::RoomStats`], called on the forwarding thread. `None` when the
/// room has nobody (and so does not exist in the engine).
pub struct RoomStatsReply(pub Box<dyn FnOnce(Option<RoomState>) + Send>);

impl fmt::Debug for RoomStatsReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomStatsReply")
    }
}

/// A command for the engine.
#[derive(Debug)]
pub enum MediaCommand {
    /// Bind these pairs (RTP and RTCP port) ahead of use and keep them for the sessions that
    /// will take them. Answered with [`MediaEvent::Reserved`].
    Reserve { pairs: Vec<RelayPort> },
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
    /// Make `side` a WebRTC leg: its first stream's RTP socket carries ICE, DTLS and SRTP
    /// for every stream of the side (BUNDLE), and plain RTP crosses to the other side.
    WebRtc {
        session: SessionId,
        side: Side,
        params: Box<WebRtcParams>,
    },
    /// `side` will be a browser once its SDP comes ([`MediaCommand::WebRtc`]): until then
    /// nothing received on its sockets is forwarded (its early ICE checks), and nothing is
    /// forwarded toward it.
    BrowserPending { session: SessionId, side: Side },
    /// Append streams to an open session (a re-INVITE added m-lines): one new pair per
    /// stream and side, bound like `Open`'s. Its other streams go on untouched, and so does a
    /// browser's BUNDLE transport (its new slots are routed into its leg). No answer.
    Grow {
        session: SessionId,
        rtcp_mux: bool,
        legs: [LegSpec; 2],
    },
    /// Add m-lines to `side`'s WebRTC leg, after a `Grow` gave the session their streams: the
    /// browser's SDP named them (video turned on).
    WebRtcStreams {
        session: SessionId,
        side: Side,
        streams: Vec<WebRtcStream>,
    },
    /// A participant joins conference room `room` (its mixer lives on the room's thread,
    /// made with the first participant): `port` is its pair, `spec` its codec, `remote` the
    /// address its SDP announced (only packets from that IP are accepted; the first one
    /// latches). `session` is the participant's id for every later command and event.
    RoomJoin {
        room: RoomId,
        session: SessionId,
        rtcp_mux: bool,
        port: RelayPort,
        spec: ParticipantSpec,
        remote: Option<SocketAddr>,
        /// Its video m-lines, each on a pair of its own.
        video: Vec<RoomVideo>,
        /// The room's video settings (taken by the participant that makes the room).
        sfu: super::sfu::SfuConfig,
    },
    /// A participant's re-INVITE announced another address.
    RoomRemote {
        room: RoomId,
        session: SessionId,
        remote: SocketAddr,
    },
    /// The moderator mutes or unmutes a participant (it still hears the room).
    RoomMute {
        room: RoomId,
        session: SessionId,
        muted: bool,
    },
    /// A DTMF digit a participant sent by SIP INFO.
    RoomDigit {
        room: RoomId,
        session: SessionId,
        digit: char,
    },
    /// A participant leaves: its sockets close, answered with [`MediaEvent::Closed`] (its
    /// counters). The last one to leave ends the room's mixer.
    RoomLeave { room: RoomId, session: SessionId },
    /// The participants of a room and their state, for `tambun conf`.
    RoomStats { room: RoomId, reply: RoomStatsReply },
    /// The RTP clock rate of a stream (default 8000 Hz), for its jitter.
    ClockRate {
        session: SessionId,
        stream: usize,
        hz: u32,
    },
    /// The two legs of a stream share no codec: each packet of leg A's `a` is transcoded to
    /// leg B's `b` and back ([`crate::media::transcode`]).
    Transcode {
        session: SessionId,
        stream: usize,
        a: crate::media::transcode::CodecSpec,
        b: crate::media::transcode::CodecSpec,
    },
    /// Close the session's sockets. Answered with [`MediaEvent::Closed`] and the final
    /// counters (also for a session the engine does not know, with none).
    Close { session: SessionId },
    /// The session's counters now, to `reply`.
    Stats {
        session: SessionId,
        reply: StatsReply,
    },
    /// The session's browser legs now (DTLS, SRTP profile, packets, loss, RTT), to `reply`.
    BrowserStats {
        session: SessionId,
        reply: BrowserStatsReply,
    },
}

impl MediaCommand {
    /// The session the command is for (the engine routes by it); `None` for `Reserve`.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            MediaCommand::Open { session, .. }
            | MediaCommand::SetRemote { session, .. }
            | MediaCommand::WebRtc { session, .. }
            | MediaCommand::BrowserPending { session, .. }
            | MediaCommand::ClockRate { session, .. }
            | MediaCommand::Transcode { session, .. }
            | MediaCommand::Grow { session, .. }
            | MediaCommand::WebRtcStreams { session, .. }
            | MediaCommand::RoomJoin { session, .. }
            | MediaCommand::RoomRemote { session, .. }
            | MediaCommand::RoomMute { session, .. }
            | MediaCommand::RoomDigit { session, .. }
            | MediaCommand::RoomLeave { session, .. }
            | MediaCommand::Close { session }
            | MediaCommand::Stats { session, .. }
            | MediaCommand::BrowserStats { session, .. } => Some(*session),
            MediaCommand::Reserve { .. } | MediaCommand::RoomStats { .. } => None,
        }
    }

    /// What the engine routes the command by: a room's commands go to the thread of the
    /// room (all its participants' sockets and its mixer live there), a session's to the
    /// thread of the session; `None` (a `Reserve`) to the binder.
    pub fn route_key(&self) -> Option<u64> {
        match self {
            MediaCommand::RoomJoin { room, .. }
            | MediaCommand::RoomRemote { room, .. }
            | MediaCommand::RoomMute { room, .. }
            | MediaCommand::RoomDigit { room, .. }
            | MediaCommand::RoomLeave { room, .. }
            | MediaCommand::RoomStats { room, .. } => Some(u64::from(room.0)),
            _ => self.session().map(|s| s.0),
        }
    }
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaEvent {
    /// Pairs of a [`MediaCommand::Reserve`]: `bound` are ready for sessions, `busy` are held by
    /// another process (not bound).
    Reserved {
        bound: Vec<RelayPort>,
        busy: Vec<RelayPort>,
    },
    /// The session's sockets are bound and forwarding.
    Opened { session: SessionId },
    /// The session could not be set up (its reserved sockets were missing: a bug); nothing
    /// of it is left in the engine. `busy` are pairs another process holds, if any.
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
    /// Something a conference participant did (talking, a digit, `*6`).
    Room {
        room: RoomId,
        session: SessionId,
        event: MixerEvent,
    },
}

impl MediaEvent {
    /// The session the event is about; `None` for `Reserved`.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            MediaEvent::Opened { session }
            | MediaEvent::OpenFailed { session, .. }
            | MediaEvent::Closed { session, .. }
            | MediaEvent::Inactive { session, .. }
            | MediaEvent::Room { session, .. } => Some(*session),
            MediaEvent::Reserved { .. } => None,
        }
    }
}

/// Pairs kept bound ahead of use (about 128 one-stream calls; the engine refills it in well
/// under a millisecond).
pub const RESERVE: usize = 256;
/// `Reserve`s in a row that may find every pair busy before the control stops looking (until
/// the next session ends): 8 × 256 pairs, a fifth of the default range.
const BUSY_ROUNDS: u32 = 8;

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
    rtcp_mux: bool,
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
    /// Pairs the engine has bound and keeps for the next sessions.
    ready: VecDeque<RelayPort>,
    /// Pairs of the `Reserve` in flight (at most one at a time).
    reserving: usize,
    /// Times a pair was found held by another process.
    busy_seen: u64,
    /// `Reserve`s in a row that found every pair held by another process (another relay on
    /// this host): the search for free pairs goes on for a few, then waits for the next
    /// session to end.
    busy_rounds: u32,
    commands: VecDeque<MediaCommand>,
    /// The gateway certificate's fingerprint (`sha-256 …`), when WebRTC legs are possible.
    fingerprint: Option<String>,
    /// For ICE credentials and SSRCs (seeded from the OS once).
    rng: rand::rngs::StdRng,
}

impl MediaControl {
    /// The ports `lo..=hi` (RTP even, RTCP the next odd one), named in SDP with `advertise`.
    /// The first [`MediaCommand::Reserve`] is queued at once.
    pub fn new(port_range: (u16, u16), advertise: IpAddr) -> MediaControl {
        let mut c = MediaControl {
            pool: PortPool::new(port_range.0, port_range.1),
            advertise,
            next_id: 1,
            sessions: HashMap::new(),
            ports_in_use: 0,
            ready: VecDeque::new(),
            reserving: 0,
            busy_seen: 0,
            busy_rounds: 0,
            commands: VecDeque::new(),
            fingerprint: None,
            rng: rand::SeedableRng::from_entropy(),
        };
        c.refill();
        c
    }

    /// Asks the engine to bind pairs up to [`RESERVE`] ready, unless a request is in flight.
    fn refill(&mut self) {
        if self.reserving > 0 {
            return;
        }
        let want = RESERVE.saturating_sub(self.ready.len());
        let pairs: Vec<RelayPort> = std::iter::from_fn(|| self.pool.allocate())
            .take(want)
            .collect();
        if !pairs.is_empty() {
            self.reserving = pairs.len();
            self.commands.push_back(MediaCommand::Reserve { pairs });
        }
    }

    /// Is a `Reserve` in flight (so pairs may become ready)?
    pub fn is_reserving(&self) -> bool {
        self.reserving > 0
    }

    /// Pairs bound and waiting for sessions.
    pub fn ready(&self) -> usize {
        self.ready.len()
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
        let (legs, out, ports) = self.take_pairs(streams, rtcp_mux)?;
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let pairs: Vec<RelayPort> = legs.iter().flatten().copied().collect();
        self.sessions.insert(
            id,
            SessionRecord {
                pairs,
                ports,
                streams,
                rtcp_mux,
                closing: false,
            },
        );
        self.commands.push_back(MediaCommand::Open {
            session: id,
            call,
            rtcp_mux,
            legs: rtp_legs(legs),
        });
        self.refill();
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

    /// Makes `side` of a session a WebRTC leg ([`MediaCommand::WebRtc`]).
    pub fn webrtc(
        &mut self,
        id: SessionId,
        side: Side,
        params: WebRtcParams,
    ) -> Result<(), RelayError> {
        self.check(id, 0)?;
        self.commands.push_back(MediaCommand::WebRtc {
            session: id,
            side,
            params: Box::new(params),
        });
        Ok(())
    }

    /// Appends `streams` streams to an open session ([`MediaCommand::Grow`]): their ports,
    /// in the session's rtcp-mux mode, to write into SDP now. The session's streams keep
    /// their indexes; the new ones follow.
    pub fn grow(&mut self, id: SessionId, streams: usize) -> Result<Vec<StreamPorts>, RelayError> {
        let record = self
            .sessions
            .get(&id)
            .ok_or(RelayError::UnknownSession(id))?;
        if record.closing {
            return Err(RelayError::UnknownSession(id));
        }
        let rtcp_mux = record.rtcp_mux;
        let (legs, out, ports) = self.take_pairs(streams, rtcp_mux)?;
        if let Some(record) = self.sessions.get_mut(&id) {
            record.pairs.extend(legs.iter().flatten().copied());
            record.ports += ports;
            record.streams += streams;
        }
        self.commands.push_back(MediaCommand::Grow {
            session: id,
            rtcp_mux,
            legs: rtp_legs(legs),
        });
        self.refill();
        Ok(out)
    }

    /// Takes one ready pair per stream and side for `open` or `grow`: the pairs of side A
    /// and side B, each stream's addresses for SDP, and the ports they count for (now in
    /// use). Without enough ready pairs nothing is taken and a refill is asked for.
    #[allow(clippy::type_complexity)]
    fn take_pairs(
        &mut self,
        streams: usize,
        rtcp_mux: bool,
    ) -> Result<([Vec<RelayPort>; 2], Vec<StreamPorts>, usize), RelayError> {
        if streams == 0 {
            return Err(RelayError::NoStreams);
        }
        if self.ready.len() < 2 * streams {
            self.refill();
            return Err(RelayError::PortsExhausted);
        }
        let mut legs = [Vec::with_capacity(streams), Vec::with_capacity(streams)];
        for _ in 0..streams {
            for leg in &mut legs {
                // Holds: checked above that enough are ready.
                leg.extend(self.ready.pop_front());
            }
        }
        let out = (0..streams)
            .map(|i| StreamPorts {
                a: self.leg_ports(legs[0][i], rtcp_mux),
                b: self.leg_ports(legs[1][i], rtcp_mux),
            })
            .collect();
        let ports = 2 * streams * if rtcp_mux { 1 } else { 2 };
        self.ports_in_use += ports;
        Ok((legs, out, ports))
    }

    /// Could [`MediaControl::grow`] add `streams` streams to session `id` now?
    pub fn can_grow(&self, id: SessionId, streams: usize) -> bool {
        streams > 0
            && self.ready.len() >= 2 * streams
            && self.sessions.get(&id).is_some_and(|r| !r.closing)
    }

    /// Adds m-lines to `side`'s WebRTC leg ([`MediaCommand::WebRtcStreams`]).
    pub fn webrtc_streams(
        &mut self,
        id: SessionId,
        side: Side,
        streams: Vec<WebRtcStream>,
    ) -> Result<(), RelayError> {
        self.check(id, 0)?;
        self.commands.push_back(MediaCommand::WebRtcStreams {
            session: id,
            side,
            streams,
        });
        Ok(())
    }

    /// A participant joins `room` ([`MediaCommand::RoomJoin`]): one port pair (one port with
    /// `rtcp_mux`) from the reserve, its address to write into the SDP answer now. The
    /// participant is a session of one stream for the control plane: its ports come back
    /// when the engine reports it [`MediaEvent::Closed`] after [`MediaControl::room_leave`].
    pub fn room_join(
        &mut self,
        room: RoomId,
        rtcp_mux: bool,
        spec: ParticipantSpec,
        remote: Option<SocketAddr>,
        video: &[RoomVideoAsk],
        sfu: super::sfu::SfuConfig,
    ) -> Result<(SessionId, LegPorts, Vec<LegPorts>), RelayError> {
        if self.ready.len() < 1 + video.len() {
            self.refill();
            return Err(RelayError::PortsExhausted);
        }
        let Some(port) = self.ready.pop_front() else {
            return Err(RelayError::PortsExhausted);
        };
        let video: Vec<RoomVideo> = video
            .iter()
            .filter_map(|v| {
                Some(RoomVideo {
                    port: self.ready.pop_front()?,
                    rtcp_mux: v.rtcp_mux,
                    remote: v.remote,
                    line: v.line,
                })
            })
            .collect();
        let id = SessionId(self.next_id);
        self.next_id += 1;
        let width = |mux: bool| if mux { 1 } else { 2 };
        let ports = width(rtcp_mux) + video.iter().map(|v| width(v.rtcp_mux)).sum::<usize>();
        self.ports_in_use += ports;
        let mut pairs = vec![port];
        pairs.extend(video.iter().map(|v| v.port));
        self.sessions.insert(
            id,
            SessionRecord {
                pairs,
                ports,
                streams: 1 + video.len(),
                rtcp_mux,
                closing: false,
            },
        );
        let video_ports = video
            .iter()
            .map(|v| self.leg_ports(v.port, v.rtcp_mux))
            .collect();
        self.commands.push_back(MediaCommand::RoomJoin {
            room,
            session: id,
            rtcp_mux,
            port,
            spec,
            remote,
            video,
            sfu,
        });
        self.refill();
        Ok((id, self.leg_ports(port, rtcp_mux), video_ports))
    }

    /// A participant's new address ([`MediaCommand::RoomRemote`]).
    pub fn room_remote(
        &mut self,
        room: RoomId,
        id: SessionId,
        remote: SocketAddr,
    ) -> Result<(), RelayError> {
        self.check(id, 0)?;
        self.commands.push_back(MediaCommand::RoomRemote {
            room,
            session: id,
            remote,
        });
        Ok(())
    }

    /// Mutes or unmutes a participant ([`MediaCommand::RoomMute`]).
    pub fn room_mute(
        &mut self,
        room: RoomId,
        id: SessionId,
        muted: bool,
    ) -> Result<(), RelayError> {
        self.check(id, 0)?;
        self.commands.push_back(MediaCommand::RoomMute {
            room,
            session: id,
            muted,
        });
        Ok(())
    }

    /// A digit a participant sent by SIP INFO ([`MediaCommand::RoomDigit`]).
    pub fn room_digit(
        &mut self,
        room: RoomId,
        id: SessionId,
        digit: char,
    ) -> Result<(), RelayError> {
        self.check(id, 0)?;
        self.commands.push_back(MediaCommand::RoomDigit {
            room,
            session: id,
            digit,
        });
        Ok(())
    }

    /// A participant leaves ([`MediaCommand::RoomLeave`]); its ports are freed when the
    /// engine reports it closed. `Ok(false)` when it is already leaving.
    pub fn room_leave(&mut self, room: RoomId, id: SessionId) -> Result<bool, RelayError> {
        if !self.mark_closing(id)? {
            return Ok(false);
        }
        self.commands
            .push_back(MediaCommand::RoomLeave { room, session: id });
        Ok(true)
    }

    /// Tells the engine `side` of a session will be a browser ([`MediaCommand::BrowserPending`]).
    pub fn browser_pending(&mut self, id: SessionId, side: Side) -> Result<(), RelayError> {
        self.check(id, 0)?;
        self.commands
            .push_back(MediaCommand::BrowserPending { session: id, side });
        Ok(())
    }

    /// The gateway's DTLS certificate fingerprint (`sha-256 AB:…`), for SDP toward
    /// browsers; `None` until set (no WebRTC gateway: browsers' calls are not anchored as
    /// WebRTC).
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    pub fn set_fingerprint(&mut self, fingerprint: String) {
        self.fingerprint = Some(fingerprint);
    }

    /// Fresh ICE credentials for a WebRTC leg (ufrag of 8, password of 24 characters from
    /// the ICE alphabet, RFC 8839 §5.4), and an SSRC per stream.
    pub fn ice_credentials(&mut self) -> (String, String) {
        use rand::Rng;
        const ICE_CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ICE_CHARS[self.rng.gen_range(0..ICE_CHARS.len())] as char)
                .collect()
        };
        (pick(8), pick(24))
    }

    /// A random SSRC (never 0).
    pub fn ssrc(&mut self) -> u32 {
        use rand::Rng;
        self.rng.gen_range(1..=u32::MAX)
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

    /// The stream's legs share no codec: the relay transcodes between leg A's `a` and leg
    /// B's `b`.
    pub fn transcode(
        &mut self,
        id: SessionId,
        stream: usize,
        a: crate::media::transcode::CodecSpec,
        b: crate::media::transcode::CodecSpec,
    ) -> Result<(), RelayError> {
        self.check(id, stream)?;
        self.commands.push_back(MediaCommand::Transcode {
            session: id,
            stream,
            a,
            b,
        });
        Ok(())
    }

    /// Asks the engine to close a session; its ports are freed when it reports
    /// [`MediaEvent::Closed`]. `Ok(false)` when it is already closing.
    pub fn close(&mut self, id: SessionId) -> Result<bool, RelayError> {
        if !self.mark_closing(id)? {
            return Ok(false);
        }
        self.commands.push_back(MediaCommand::Close { session: id });
        Ok(true)
    }

    /// Marks a session closing; false when it already was.
    fn mark_closing(&mut self, id: SessionId) -> Result<bool, RelayError> {
        let record = self
            .sessions
            .get_mut(&id)
            .ok_or(RelayError::UnknownSession(id))?;
        Ok(!std::mem::replace(&mut record.closing, true))
    }

    /// An event of the engine: reserved pairs become ready (busy ones go back to the pool, to
    /// be tried when it comes round to them); a closed session's or a failed open's ports are
    /// freed.
    pub fn handle_event(&mut self, event: &MediaEvent) -> Settled {
        let id = match event {
            MediaEvent::Reserved { bound, busy } => {
                self.reserving = 0;
                self.ready.extend(bound.iter().copied());
                for p in busy {
                    self.pool.release(*p);
                }
                self.busy_seen += busy.len() as u64;
                // Pairs held by another process: look further along the range at once (the
                // pool's cursor moved past them), rather than start with too few ready.
                self.busy_rounds = if bound.is_empty() {
                    self.busy_rounds + 1
                } else {
                    0
                };
                // Only while the pool holds pairs besides the ones just found busy (a small
                // range would otherwise ask for the same busy pairs again and again).
                let untried = self.pool.capacity() - self.pool.in_use() > busy.len();
                if !busy.is_empty()
                    && untried
                    && self.ready.len() < RESERVE
                    && self.busy_rounds < BUSY_ROUNDS
                {
                    self.refill();
                }
                return Settled::Unchanged;
            }
            MediaEvent::Closed { session, .. } | MediaEvent::OpenFailed { session, .. } => *session,
            MediaEvent::Opened { .. } | MediaEvent::Inactive { .. } | MediaEvent::Room { .. } => {
                return Settled::Unchanged
            }
        };
        let Some(record) = self.sessions.remove(&id) else {
            return Settled::Unchanged;
        };
        for p in record.pairs {
            self.pool.release(p);
        }
        self.ports_in_use -= record.ports;
        self.refill();
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

    /// Times a pair of the range was found held by another process (and skipped).
    pub fn busy_seen(&self) -> u64 {
        self.busy_seen
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

    /// A control whose first reserve the engine answered: `busy` of its pairs were held by
    /// another process, the rest bound.
    fn control(range: (u16, u16), busy: &[u16]) -> MediaControl {
        let mut c = MediaControl::new(range, "192.0.2.1".parse().unwrap());
        answer_reserve(&mut c, busy);
        c
    }

    fn answer_reserve(c: &mut MediaControl, busy: &[u16]) {
        let Some(MediaCommand::Reserve { pairs }) = c.poll_command() else {
            panic!("no reserve queued");
        };
        let (busy, bound) = pairs.into_iter().partition(|p| busy.contains(&p.rtp()));
        c.handle_event(&MediaEvent::Reserved { bound, busy });
    }

    fn closed(session: SessionId) -> MediaEvent {
        MediaEvent::Closed {
            session,
            stats: Vec::new(),
        }
    }

    #[test]
    fn open_takes_reserved_pairs_and_queues_one_command() {
        let mut c = control((20000, 20099), &[]);
        assert_eq!(c.ready(), 50, "the whole small range is reserved");
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
        assert!(c.poll_command().is_none(), "the pool is empty: no refill");
    }

    #[test]
    fn the_reserve_is_refilled_one_request_at_a_time() {
        let mut c = control((20000, 29999), &[]);
        assert_eq!(c.ready(), RESERVE);
        c.open(1, 1, true).unwrap();
        c.poll_command(); // the Open
        let Some(MediaCommand::Reserve { pairs }) = c.poll_command() else {
            panic!("no refill");
        };
        assert_eq!(pairs.len(), 2);
        c.open(2, 1, true).unwrap();
        c.poll_command();
        assert!(
            c.poll_command().is_none(),
            "a second request while one is in flight"
        );
        c.handle_event(&MediaEvent::Reserved {
            bound: pairs,
            busy: Vec::new(),
        });
        assert_eq!(c.ready(), RESERVE - 2);
    }

    #[test]
    fn ports_come_back_only_when_the_engine_says_closed() {
        // Two pairs: one rtcp-mux session of one stream takes both.
        let mut c = control((20000, 20003), &[]);
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
        // The freed pairs are reserved again before a session can have them.
        assert!(matches!(
            c.open(3, 1, true),
            Err(RelayError::PortsExhausted)
        ));
        while let Some(cmd) = c.poll_command() {
            if let MediaCommand::Reserve { pairs } = cmd {
                c.handle_event(&MediaEvent::Reserved {
                    bound: pairs,
                    busy: Vec::new(),
                });
            }
        }
        assert!(c.open(3, 1, true).is_ok());
    }

    #[test]
    fn a_busy_pair_is_never_named_in_a_session_and_is_tried_again_later() {
        let mut c = control((20000, 20007), &[20002]); // four pairs, one held elsewhere
        assert_eq!((c.ready(), c.busy_seen()), (3, 1));
        let s = c.open(1, 1, true).unwrap();
        let ports = [s.streams[0].a.rtp.port(), s.streams[0].b.rtp.port()];
        assert!(!ports.contains(&20002), "{ports:?}");
        // The refill asks for the busy pair again (the pool came round to it) — after the
        // session's Open: nothing else was left to try at once.
        c.poll_command(); // the Open
        let Some(MediaCommand::Reserve { pairs }) = c.poll_command() else {
            panic!("no refill");
        };
        assert_eq!(pairs.iter().map(|p| p.rtp()).collect::<Vec<_>>(), [20002]);
    }

    #[test]
    fn pairs_another_relay_holds_are_skipped_until_enough_are_ready() {
        // Another relay on this host holds the first 300 pairs of the range.
        let held: Vec<u16> = (0..300).map(|i| 20000 + 2 * i).collect();
        let mut c = control((20000, 29999), &held);
        assert_eq!(c.ready(), 0, "the first reserve found only held pairs");
        answer_reserve(&mut c, &held);
        assert_eq!(c.ready(), 256 - 44, "further along, most are free");
        answer_reserve(&mut c, &held);
        assert_eq!(c.ready(), RESERVE);
        assert!(
            c.poll_command().is_none(),
            "enough are ready: no more reserves"
        );
        // A range that is held all over: the search stops after a few rounds.
        let all: Vec<u16> = (0..5000).map(|i| 20000 + 2 * i).collect();
        let mut c = control((20000, 29999), &all);
        let mut rounds = 1;
        while c.is_reserving() {
            answer_reserve(&mut c, &all);
            rounds += 1;
        }
        assert_eq!((rounds, c.ready()), (BUSY_ROUNDS as usize, 0));
    }

    #[test]
    fn commands_for_unknown_sessions_and_streams_are_errors() {
        let mut c = control((20000, 20099), &[]);
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
