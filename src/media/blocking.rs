//! The engine and its control plane driven synchronously, for the tools and tests that use
//! the relay without a switch (`tambun bench relay-alloc`, the `relay_*` tests). Each call
//! submits the commands [`MediaControl`] queued and, for `open`, `close` and `stats`, waits for
//! the forwarding thread's answer. The switch never uses this: its driver submits commands
//! and gets the answers as inputs.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::control::{
    MediaCommand, MediaControl, MediaEvent, RoomId, RoomState, RoomStatsReply, RoomVideoAsk,
    Session, StatsReply,
};
use super::mixer::ParticipantSpec;
use super::LegPorts;
use super::{Relay, RelayConfig, RelayError, RelayTotals, SessionId, Side, StreamStats};

/// How long a call waits for the forwarding thread's answer.
const ANSWER: Duration = Duration::from_secs(5);

/// A relay with its own port pool, answering synchronously.
pub struct BlockingRelay {
    relay: Relay,
    control: MediaControl,
    /// Events that arrived while waiting for another one.
    stash: VecDeque<MediaEvent>,
}

impl BlockingRelay {
    /// Starts the forwarding threads; ports come from `cfg.port_range`, named with
    /// `cfg.advertise`.
    pub fn start(cfg: RelayConfig) -> std::io::Result<BlockingRelay> {
        let control = MediaControl::new(cfg.port_range, cfg.advertise);
        Ok(BlockingRelay {
            relay: Relay::start(cfg)?,
            control,
            stash: VecDeque::new(),
        })
    }

    /// Opens a session and waits until its sockets are bound.
    pub fn open(
        &mut self,
        call: u64,
        streams: usize,
        rtcp_mux: bool,
    ) -> Result<Session, RelayError> {
        // Until enough pairs are bound ahead, or no more are coming.
        let session = loop {
            match self.control.open(call, streams, rtcp_mux) {
                Err(RelayError::PortsExhausted) => {
                    self.submit();
                    let before = self.control.ready();
                    if !self.control.is_reserving() {
                        return Err(RelayError::PortsExhausted);
                    }
                    self.wait_for(None, |e| matches!(e, MediaEvent::Reserved { .. }))?;
                    if self.control.ready() == before {
                        // Only busy pairs came back: the range is full.
                        return Err(RelayError::PortsExhausted);
                    }
                }
                other => break other?,
            }
        };
        self.submit();
        match self.wait_for(Some(session.id), |e| {
            matches!(e, MediaEvent::Opened { .. } | MediaEvent::OpenFailed { .. })
        })? {
            MediaEvent::OpenFailed { error, .. } => Err(RelayError::OpenFailed(error)),
            _ => Ok(session),
        }
    }

    /// What a side's SDP announced for a stream's RTP (RTCP on the next port).
    pub fn set_remote(
        &mut self,
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
    ) -> Result<(), RelayError> {
        self.control.set_remote(id, stream, side, rtp, None)?;
        self.submit();
        Ok(())
    }

    /// As [`BlockingRelay::set_remote`], with the RTCP address of an SDP `a=rtcp:`.
    pub fn set_remote_rtcp(
        &mut self,
        id: SessionId,
        stream: usize,
        side: Side,
        rtp: SocketAddr,
        rtcp: SocketAddr,
    ) -> Result<(), RelayError> {
        self.control.set_remote(id, stream, side, rtp, Some(rtcp))?;
        self.submit();
        Ok(())
    }

    /// The RTP clock rate of a stream.
    pub fn set_clock_rate(
        &mut self,
        id: SessionId,
        stream: usize,
        hz: u32,
    ) -> Result<(), RelayError> {
        self.control.set_clock_rate(id, stream, hz)?;
        self.submit();
        Ok(())
    }

    /// A participant joins conference room `room` with its video lines; waits until its
    /// sockets are bound. Its id and the addresses it must send to (audio, each video line).
    pub fn room_join(
        &mut self,
        room: RoomId,
        rtcp_mux: bool,
        spec: ParticipantSpec,
        remote: Option<SocketAddr>,
        video: &[RoomVideoAsk],
    ) -> Result<(SessionId, LegPorts, Vec<LegPorts>), RelayError> {
        let sfu = super::sfu::SfuConfig::default();
        let joined = loop {
            match self
                .control
                .room_join(room, rtcp_mux, spec.clone(), remote, video, sfu)
            {
                Err(RelayError::PortsExhausted) if self.control.is_reserving() => {
                    self.submit();
                    self.wait_for(None, |e| matches!(e, MediaEvent::Reserved { .. }))?;
                }
                other => break other?,
            }
        };
        self.submit();
        match self.wait_for(Some(joined.0), |e| {
            matches!(e, MediaEvent::Opened { .. } | MediaEvent::OpenFailed { .. })
        })? {
            MediaEvent::OpenFailed { error, .. } => Err(RelayError::OpenFailed(error)),
            _ => Ok(joined),
        }
    }

    /// Mutes or unmutes a participant.
    pub fn room_mute(
        &mut self,
        room: RoomId,
        id: SessionId,
        muted: bool,
    ) -> Result<(), RelayError> {
        self.control.room_mute(room, id, muted)?;
        self.submit();
        Ok(())
    }

    /// A participant leaves; waits until its socket is closed. Its counters (into the room,
    /// out of the room).
    pub fn room_leave(
        &mut self,
        room: RoomId,
        id: SessionId,
    ) -> Result<Vec<StreamStats>, RelayError> {
        self.control.room_leave(room, id)?;
        self.wait_closed(id)
    }

    /// The state of a room (`None`: nobody is in it).
    pub fn room_stats(&self, room: RoomId) -> Result<Option<RoomState>, RelayError> {
        let (tx, rx) = mpsc::channel();
        self.relay.submit(MediaCommand::RoomStats {
            room,
            reply: RoomStatsReply(Box::new(move |s| {
                let _ = tx.send(s);
            })),
        });
        rx.recv_timeout(ANSWER).map_err(|_| RelayError::NoAnswer)
    }

    /// Closes a session, waits until its sockets are closed, and returns its last counters.
    pub fn close(&mut self, id: SessionId) -> Result<Vec<StreamStats>, RelayError> {
        self.control.close(id)?;
        self.wait_closed(id)
    }

    /// The counters of a session, per stream and direction.
    pub fn stats(&self, id: SessionId) -> Result<Vec<StreamStats>, RelayError> {
        if !self.control.is_open(id) {
            return Err(RelayError::UnknownSession(id));
        }
        let (tx, rx) = mpsc::channel();
        self.relay.submit(MediaCommand::Stats {
            session: id,
            reply: StatsReply(Box::new(move |s| {
                let _ = tx.send(s);
            })),
        });
        rx.recv_timeout(ANSWER)
            .map_err(|_| RelayError::NoAnswer)?
            .ok_or(RelayError::UnknownSession(id))
    }

    /// The next event about a session not consumed by a call above, waiting up to
    /// `timeout` (the reserve's events are handled here, not returned).
    pub fn wait_event(&mut self, timeout: Duration) -> Option<MediaEvent> {
        if let Some(e) = self.stash.pop_front() {
            return Some(e);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let e = self
                .relay
                .wait_event(deadline.saturating_duration_since(Instant::now()))?;
            self.control.handle_event(&e);
            self.submit();
            if e.session().is_some() {
                return Some(e);
            }
        }
    }

    /// The next event not consumed by a call above, without waiting.
    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.wait_event(Duration::ZERO)
    }

    /// Ports held by open sessions.
    pub fn ports_in_use(&self) -> usize {
        self.control.ports_in_use()
    }

    /// Open sessions.
    pub fn sessions(&self) -> usize {
        self.control.sessions()
    }

    /// What the forwarding threads have done since the start.
    pub fn totals(&self) -> RelayTotals {
        self.relay.totals()
    }

    /// Submits the queued commands and waits for `id`'s `Closed`: its last counters.
    fn wait_closed(&mut self, id: SessionId) -> Result<Vec<StreamStats>, RelayError> {
        self.submit();
        match self.wait_for(Some(id), |e| matches!(e, MediaEvent::Closed { .. }))? {
            MediaEvent::Closed { stats, .. } => Ok(stats),
            _ => unreachable!("wait_for returns what its filter accepts"),
        }
    }

    fn submit(&mut self) {
        while let Some(cmd) = self.control.poll_command() {
            self.relay.submit(cmd);
        }
    }

    /// Waits for the event of `id` that `want` accepts; other sessions' events are kept for
    /// `wait_event`.
    fn wait_for(
        &mut self,
        id: Option<SessionId>,
        want: impl Fn(&MediaEvent) -> bool,
    ) -> Result<MediaEvent, RelayError> {
        let deadline = Instant::now() + ANSWER;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let e = self.relay.wait_event(left).ok_or(RelayError::NoAnswer)?;
            self.control.handle_event(&e);
            if e.session() == id && want(&e) {
                return Ok(e);
            }
            if e.session().is_some() {
                self.stash.push_back(e);
            }
        }
    }
}
