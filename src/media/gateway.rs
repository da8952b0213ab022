//! The WebRTC legs of one forwarding thread: the gateway between a browser (ICE-lite,
//! DTLS-SRTP, BUNDLE and rtcp-mux on one socket, [`WebRtcLeg`]) and the plain RTP side of the
//! same session.
//!
//! A session opens with plain legs; [`MediaCommand::WebRtc`](super::MediaCommand::WebRtc)
//! turns one side into a browser. That side's first RTP socket becomes the leg's socket (its
//! own epoll token, [`leg_token`]); the side's slots in the [`Table`] stay, with no socket of
//! their own ("virtual" slots), so latching, counters, loss and inactivity work as for any
//! leg: RTP the leg decrypts enters the table on the browser side's slot of its stream, and a
//! packet the table forwards *via* a browser slot goes into the leg ([`Gateway::to_browser`])
//! instead of a socket. RTCP from the phone is read only for keyframe requests (PLI/FIR),
//! which become the leg's PLI toward the browser; str0m makes the browser's RTCP reports
//! itself. The browser's keyframe requests become a PLI toward the phone.
//!
//! Each leg has one deadline, kept in an ordered set; the thread wakes for the earliest.
//! Per packet: one leg call and one `send_to` per datagram (no batching across legs yet).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::control::{MediaKind, Payload, WebRtcParams, WebRtcStream};
use super::rtp::{pli, rtcp_asks_keyframe};
use super::shard::ShardCounters;
use super::sys::{Batch, Epoll};
use super::table::{SlotId, StreamSlots, Table, Verdict};
use super::webrtc::{
    DtlsState, HeaderExtensions, Identity, LegOutput, LegParams, LegStats, PayloadSpec, StreamSpec,
    WebRtcLeg,
};
use super::{SessionId, Side};

/// Epoll tokens of leg sockets: this bit plus the leg's index (slot tokens are far below).
const LEG_BIT: u64 = 1 << 40;

/// The epoll token of leg `i`'s socket.
pub fn leg_token(i: u32) -> u64 {
    LEG_BIT | u64::from(i)
}

/// The leg index of an epoll token, if it is a leg's.
pub fn leg_of_token(token: u64) -> Option<u32> {
    (token & LEG_BIT != 0 && token != u64::MAX).then_some((token & 0xffff_ffff) as u32)
}

/// The leg of a browser side whose leg is not made yet.
const NO_LEG: u32 = u32::MAX;

/// Where a packet forwarded via a browser slot goes: the leg, the stream, RTP or RTCP slot.
#[derive(Debug, Clone, Copy)]
struct Route {
    leg: u32,
    stream: usize,
}

/// One browser of a session, on its socket.
struct Browser {
    socket: UdpSocket,
    /// The leg's address as the browser sees it (advertised IP, the socket's port).
    local: SocketAddr,
    leg: WebRtcLeg,
    session: SessionId,
    side: Side,
    slots: Vec<StreamSlots>,
    deadline: Option<Instant>,
    /// The last SSRC the phone sent on each stream (the media SSRC of a PLI toward it).
    phone_ssrc: Vec<Option<u32>>,
    /// Our SSRC per stream (the sender SSRC of a PLI toward the phone).
    our_ssrc: Vec<u32>,
    /// Which streams are video (asked for a keyframe when the leg connects).
    video: Vec<bool>,
    failed: bool,
}

/// What `tambun calls` and `/metrics` show of a browser leg.
#[derive(Debug, Clone, PartialEq)]
pub struct BrowserStats {
    pub side: Side,
    pub local: SocketAddr,
    pub stats: LegStats,
}

/// The WebRTC legs of one shard.
pub struct Gateway {
    identity: Option<Identity>,
    advertise: IpAddr,
    legs: Vec<Option<Browser>>,
    free: Vec<u32>,
    /// By table slot: the leg behind a browser side's slot.
    routes: Vec<Option<Route>>,
    timers: BTreeSet<(Instant, u32)>,
    /// Slots with a route.
    routed: usize,
    /// Plain RTP from one browser's leg for another's (a browser-to-browser call).
    crossing: Vec<(SlotId, Vec<u8>)>,
    /// Keyframe requests from one browser's leg for another's.
    keyframes: Vec<Route>,
}

impl Gateway {
    pub fn new(identity: Option<Identity>, advertise: IpAddr) -> Gateway {
        Gateway {
            identity,
            advertise,
            legs: Vec::new(),
            free: Vec::new(),
            routes: Vec::new(),
            timers: BTreeSet::new(),
            routed: 0,
            crossing: Vec::new(),
            keyframes: Vec::new(),
        }
    }

    /// Is no slot a browser's (the plain path's one extra check)?
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.routed == 0
    }

    /// Points a slot at leg `leg` (or [`NO_LEG`]: a browser side whose leg is not made yet).
    fn route(&mut self, slot: SlotId, route: Option<Route>) {
        let k = slot.0 as usize;
        if self.routes.len() <= k {
            self.routes.resize(k + 1, None);
        }
        match (self.routes[k].is_some(), route.is_some()) {
            (false, true) => self.routed += 1,
            (true, false) => self.routed -= 1,
            _ => {}
        }
        self.routes[k] = route;
    }

    /// `side` of `session` will be a browser: until its leg is made (the browser's answer),
    /// whatever reaches the side's sockets (its ICE checks) is dropped instead of being
    /// forwarded to the other side, and nothing is forwarded toward it.
    pub fn pend(&mut self, session: SessionId, side: Side, table: &mut Table) {
        let Some(slots) = table.session_slots(session) else {
            return;
        };
        for (stream, s) in slots.iter().enumerate() {
            for slot in std::iter::once(s.rtp[side.index()]).chain(s.rtcp.map(|p| p[side.index()]))
            {
                if !self.is_browser_slot(slot) {
                    self.route(
                        slot,
                        Some(Route {
                            leg: NO_LEG,
                            stream,
                        }),
                    );
                }
            }
        }
    }

    /// Is `slot` a browser side's slot (forwarding via it means: into a leg)?
    #[inline]
    pub fn is_browser_slot(&self, slot: SlotId) -> bool {
        matches!(self.routes.get(slot.0 as usize), Some(Some(_)))
    }

    /// The earliest leg deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Makes `side` of `session` a browser leg: takes the socket of its first stream's RTP
    /// slot out of `sockets` (and out of the epoll set under its slot token), builds the leg,
    /// and points the side's slots at it.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        &mut self,
        session: SessionId,
        side: Side,
        params: &WebRtcParams,
        table: &mut Table,
        sockets: &mut [Option<UdpSocket>],
        epoll: &Epoll,
        counters: &ShardCounters,
        now: Instant,
    ) -> Result<(), String> {
        let identity = self
            .identity
            .clone()
            .ok_or("this relay has no DTLS certificate")?;
        let slots = table
            .session_slots(session)
            .ok_or("no such session on this thread")?;
        let first = slots.first().ok_or("a session without streams")?.rtp[side.index()];
        if matches!(self.routes.get(first.0 as usize), Some(Some(r)) if r.leg != NO_LEG) {
            return Err("this side is a browser already".into());
        }
        let socket = sockets
            .get_mut(first.0 as usize)
            .and_then(Option::take)
            .ok_or("the side's socket is gone")?;
        let port = socket.local_addr().map_err(|e| e.to_string())?.port();
        let local = SocketAddr::new(self.advertise, port);
        let leg_params = leg_params(params, local, slots.len())?;
        let leg = match WebRtcLeg::new(leg_params, &identity, now) {
            Ok(l) => l,
            Err(e) => {
                // Put the socket back: the side stays a plain one.
                sockets[first.0 as usize] = Some(socket);
                return Err(e.to_string());
            }
        };
        let _ = epoll.delete(socket.as_raw_fd());
        let i = self.free.pop().unwrap_or_else(|| {
            self.legs.push(None);
            self.legs.len() as u32 - 1
        });
        epoll
            .add(socket.as_raw_fd(), leg_token(i))
            .map_err(|e| format!("cannot watch the leg's socket: {e}"))?;
        for (stream, s) in slots.iter().enumerate() {
            let mut mine = vec![s.rtp[side.index()]];
            mine.extend(s.rtcp.map(|pair| pair[side.index()]));
            for slot in mine {
                // Its ICE checks may have reached the plain socket before the leg existed.
                table.release_latch(slot);
                self.route(slot, Some(Route { leg: i, stream }));
            }
            // The plain side forwards toward the leg: give the browser side a destination.
            table.handle_set_remote(session, stream, side, local, Some(local), now);
        }
        let our_ssrc = params.streams.iter().map(|s| s.ssrc_tx).collect();
        let video = params
            .streams
            .iter()
            .map(|s| s.kind == MediaKind::Video)
            .collect();
        self.legs[i as usize] = Some(Browser {
            socket,
            local,
            leg,
            session,
            side,
            phone_ssrc: vec![None; slots.len()],
            slots,
            deadline: None,
            our_ssrc,
            video,
            failed: false,
        });
        counters.webrtc_legs.fetch_add(1, Ordering::Relaxed);
        self.drain(i, table, sockets, counters, now);
        tracing::debug!(session = session.0, ?side, %local, active = params.dtls_active, "relay: browser leg open");
        Ok(())
    }

    /// Datagrams on leg `i`'s socket: one `recvmmsg`, each into the leg, and what comes out.
    pub fn readable(
        &mut self,
        i: u32,
        batch: &mut Batch,
        table: &mut Table,
        sockets: &[Option<UdpSocket>],
        counters: &ShardCounters,
        now: Instant,
    ) {
        let Some(Some(b)) = self.legs.get(i as usize) else {
            return;
        };
        let n = match batch.receive(b.socket.as_raw_fd()) {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!("relay: recvmmsg on a browser leg: {e}");
                return;
            }
        };
        counters.received.fetch_add(n as u64, Ordering::Relaxed);
        for k in 0..n {
            let (src, bytes) = batch.packet(k);
            let Some(src) = src else { continue };
            let Some(Some(b)) = self.legs.get_mut(i as usize) else {
                return;
            };
            if b.leg.handle_datagram(src, b.local, bytes, now).is_err() {
                counters.webrtc_rejected.fetch_add(1, Ordering::Relaxed);
            }
            self.drain(i, table, sockets, counters, now);
        }
    }

    /// A packet the table forwarded via a browser slot (`via`): RTP into the leg, or the
    /// phone's RTCP read for keyframe requests.
    pub fn to_browser(
        &mut self,
        via: SlotId,
        bytes: &[u8],
        table: &mut Table,
        sockets: &[Option<UdpSocket>],
        counters: &ShardCounters,
        now: Instant,
    ) {
        let Some(Some(route)) = self.routes.get(via.0 as usize).copied() else {
            return;
        };
        let Some(Some(b)) = self.legs.get_mut(route.leg as usize) else {
            return;
        };
        if is_rtcp(bytes) {
            if rtcp_asks_keyframe(bytes) {
                let _ = b.leg.request_keyframe(route.stream);
            }
        } else {
            if bytes.len() >= 12 {
                let ssrc = u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                if let Some(s) = b.phone_ssrc.get_mut(route.stream) {
                    *s = Some(ssrc);
                }
            }
            let _ = b.leg.send_rtp_on(Some(route.stream), bytes, now);
        }
        self.drain(route.leg, table, sockets, counters, now);
    }

    /// Legs whose deadline has come.
    pub fn timeouts(
        &mut self,
        table: &mut Table,
        sockets: &[Option<UdpSocket>],
        counters: &ShardCounters,
        now: Instant,
    ) {
        while let Some(&(t, i)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            if let Some(Some(b)) = self.legs.get_mut(i as usize) {
                b.deadline = None;
                let _ = b.leg.handle_timeout(now);
            }
            self.drain(i, table, sockets, counters, now);
        }
    }

    /// Everything leg `i` has to do now: datagrams out of its socket, plain RTP into the
    /// table on its stream's browser slot (and out of the phone's socket), keyframe requests
    /// as a PLI to the phone, its next deadline.
    fn drain(
        &mut self,
        i: u32,
        table: &mut Table,
        sockets: &[Option<UdpSocket>],
        counters: &ShardCounters,
        now: Instant,
    ) {
        let Some(Some(b)) = self.legs.get_mut(i as usize) else {
            return;
        };
        let (mut sent, mut forwarded, mut failed) = (0u64, 0u64, 0u64);
        while let Some(out) = b.leg.poll() {
            match out {
                LegOutput::Transmit { dst, data } => match b.socket.send_to(data, dst) {
                    Ok(_) => sent += 1,
                    Err(_) => failed += 1,
                },
                LegOutput::Rtp { stream, packet } => {
                    let Some(slots) = b.slots.get(stream) else {
                        continue;
                    };
                    let slot = slots.rtp[b.side.index()];
                    let verdict = table.handle_packet(slot, b.local, packet, now);
                    if let Verdict::Drop(why) = verdict {
                        tracing::trace!(session = b.session.0, side = ?b.side, ?why, "relay: browser RTP dropped");
                    }
                    if let Verdict::Forward { via, to } = verdict {
                        if matches!(self.routes.get(via.0 as usize), Some(Some(_))) {
                            // Browser to browser: into the other leg once this one is done.
                            self.crossing.push((via, packet.to_vec()));
                            continue;
                        }
                        match sockets.get(via.0 as usize) {
                            Some(Some(s)) if s.send_to(packet, to).is_ok() => forwarded += 1,
                            _ => failed += 1,
                        }
                    }
                }
                LegOutput::KeyframeRequest { stream, .. } => {
                    let Some(slots) = b.slots.get(stream) else {
                        continue;
                    };
                    let far = slots.rtp[b.side.other().index()];
                    if let Some(Some(route)) = self.routes.get(far.0 as usize).copied() {
                        // The other side is a browser too: its leg asks its sender.
                        self.keyframes.push(route);
                        continue;
                    }
                    pli_to_phone(b, stream, table, sockets);
                }
                LegOutput::Connected => {
                    // Whatever keyframe the phone sent before is lost to the browser (the
                    // leg drops media until it is connected): ask for a fresh one on every
                    // video stream whose phone side has sent, so the first frame is not left
                    // to the browser's own PLI.
                    for stream in 0..b.video.len() {
                        if b.video[stream] {
                            pli_to_phone(b, stream, table, sockets);
                        }
                    }
                    counters.dtls_connected.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(session = b.session.0, side = ?b.side, "relay: browser leg connected (ICE + DTLS)");
                }
                LegOutput::Disconnected => {
                    tracing::debug!(session = b.session.0, side = ?b.side, "relay: browser's ICE consent lapsed");
                }
                LegOutput::Closed(e) => {
                    if !b.failed {
                        b.failed = true;
                        if e.is_some() {
                            counters.dtls_failed.fetch_add(1, Ordering::Relaxed);
                        }
                        match e {
                            Some(e) => {
                                tracing::warn!(session = b.session.0, side = ?b.side, "relay: browser leg failed: {e}")
                            }
                            None => {
                                tracing::debug!(session = b.session.0, side = ?b.side, "relay: browser leg closed")
                            }
                        }
                    }
                }
                LegOutput::Timeout(t) => {
                    if let Some(old) = b.deadline.replace(t) {
                        self.timers.remove(&(old, i));
                    }
                    self.timers.insert((t, i));
                }
            }
        }
        counters
            .forwarded
            .fetch_add(sent + forwarded, Ordering::Relaxed);
        if failed > 0 {
            counters.send_failures.fetch_add(failed, Ordering::Relaxed);
        }
        for route in std::mem::take(&mut self.keyframes) {
            if let Some(Some(other)) = self.legs.get_mut(route.leg as usize) {
                let _ = other.leg.request_keyframe(route.stream);
            }
            self.drain(route.leg, table, sockets, counters, now);
        }
        // (a leg never forwards to itself, so this ends after one round)
        for (via, packet) in std::mem::take(&mut self.crossing) {
            let Some(Some(route)) = self.routes.get(via.0 as usize).copied() else {
                continue;
            };
            if let Some(Some(other)) = self.legs.get_mut(route.leg as usize) {
                let _ = other.leg.send_rtp(&packet, now);
                self.drain(route.leg, table, sockets, counters, now);
            }
        }
    }

    /// Streams were appended to `session` (a re-INVITE added an m-line, `Table::handle_grow`):
    /// every browser side of the session routes its new slots into its leg (or keeps them
    /// pending, like the rest of a side whose leg is not made yet), and the plain side gets
    /// the leg as their destination. The leg learns the new m-lines themselves from
    /// [`Gateway::add_streams`], once the browser's SDP names them.
    pub fn grown(&mut self, session: SessionId, table: &mut Table, now: Instant) {
        let Some(slots) = table.session_slots(session) else {
            return;
        };
        let mut new_routes = Vec::new();
        for (i, b) in self.legs.iter_mut().enumerate() {
            let Some(b) = b.as_mut().filter(|b| b.session == session) else {
                continue;
            };
            let old = b.slots.len();
            b.slots = slots.clone();
            b.phone_ssrc.resize(slots.len(), None);
            for (stream, s) in slots.iter().enumerate().skip(old) {
                new_routes.push((i as u32, b.side, b.local, stream, *s));
            }
        }
        let mut legs_of = [false; 2];
        for (leg, side, local, stream, s) in new_routes {
            legs_of[side.index()] = true;
            for slot in std::iter::once(s.rtp[side.index()]).chain(s.rtcp.map(|p| p[side.index()]))
            {
                self.route(slot, Some(Route { leg, stream }));
            }
            table.handle_set_remote(session, stream, side, local, Some(local), now);
        }
        // A side still waiting for its leg: its first slot is routed to no leg yet.
        for side in [Side::A, Side::B] {
            let pending = slots.first().is_some_and(|s| {
                matches!(self.routes.get(s.rtp[side.index()].0 as usize),
                    Some(Some(r)) if r.leg == NO_LEG)
            });
            if pending && !legs_of[side.index()] {
                self.pend(session, side, table);
            }
        }
    }

    /// Adds m-lines to the browser leg of `side` of `session` (video turned on by a
    /// re-INVITE), after [`Gateway::grown`] gave the session their slots. The streams are the
    /// leg's next ones, in order.
    pub fn add_streams(
        &mut self,
        session: SessionId,
        side: Side,
        streams: &[WebRtcStream],
    ) -> Result<(), String> {
        let b = self
            .legs
            .iter_mut()
            .flatten()
            .find(|b| b.session == session && b.side == side)
            .ok_or("no browser leg on this side")?;
        for s in streams {
            let spec = stream_spec(s);
            let index = b.leg.add_stream(&spec).map_err(|e| e.to_string())?;
            if b.our_ssrc.len() <= index {
                b.our_ssrc.resize(index + 1, 1);
            }
            b.our_ssrc[index] = s.ssrc_tx;
            if b.video.len() <= index {
                b.video.resize(index + 1, false);
            }
            b.video[index] = s.kind == MediaKind::Video;
        }
        Ok(())
    }

    /// The browser legs of a session and their counters.
    pub fn stats(&self, session: SessionId) -> Vec<BrowserStats> {
        self.legs
            .iter()
            .flatten()
            .filter(|b| b.session == session)
            .map(|b| BrowserStats {
                side: b.side,
                local: b.local,
                stats: b.leg.stats(),
            })
            .collect()
    }

    /// Ends the browser legs of a session (DTLS close_notify and RTCP BYE go out) and frees
    /// their sockets and slots' routes.
    pub fn close(
        &mut self,
        session: SessionId,
        table: &Table,
        epoll: &Epoll,
        counters: &ShardCounters,
    ) {
        for i in 0..self.legs.len() {
            let Some(b) = self.legs[i].as_mut().filter(|b| b.session == session) else {
                continue;
            };
            if b.leg.stats().dtls == DtlsState::Connected {
                let _ = b.leg.close();
                while let Some(out) = b.leg.poll() {
                    if let LegOutput::Transmit { dst, data } = out {
                        let _ = b.socket.send_to(data, dst);
                    }
                }
            }
            let Some(b) = self.legs[i].take() else {
                continue;
            };
            tracing::debug!(session = session.0, side = ?b.side, stats = ?b.leg.stats(), "relay: browser leg closing");
            let _ = epoll.delete(b.socket.as_raw_fd());
            if let Some(t) = b.deadline {
                self.timers.remove(&(t, i as u32));
            }
            self.free.push(i as u32);
            counters.webrtc_legs.fetch_sub(1, Ordering::Relaxed);
        }
        // Every route of the session, a pending side's too.
        for s in table.session_slots(session).unwrap_or_default() {
            for slot in s.rtp.iter().chain(s.rtcp.iter().flatten()) {
                self.route(*slot, None);
            }
        }
    }
}

/// A PLI to the phone side of `b`'s stream `stream` (about the SSRC it last sent), on its RTCP
/// slot, or its RTP slot with rtcp-mux. Nothing before the phone has sent on the stream.
fn pli_to_phone(b: &Browser, stream: usize, table: &Table, sockets: &[Option<UdpSocket>]) {
    let (Some(slots), Some(Some(media))) = (b.slots.get(stream), b.phone_ssrc.get(stream).copied())
    else {
        return;
    };
    let phone = b.side.other().index();
    let slot = slots.rtcp.map_or(slots.rtp[phone], |pair| pair[phone]);
    if let Some(to) = table.destination(slot) {
        let pli = pli(b.our_ssrc.get(stream).copied().unwrap_or(1), media);
        if let Some(Some(s)) = sockets.get(slot.0 as usize) {
            let _ = s.send_to(&pli, to);
        }
    }
}

/// The leg's parameters from the core's: the browser's fingerprint parsed, each payload's
/// codec split into name, rate and channels, payload types str0m does not know left out.
fn leg_params(p: &WebRtcParams, local: SocketAddr, streams: usize) -> Result<LegParams, String> {
    if p.streams.len() != streams {
        return Err(format!(
            "{} WebRTC streams for a session of {streams}",
            p.streams.len()
        ));
    }
    let remote_fingerprint = p.remote_fingerprint.parse().map_err(|e| format!("{e}"))?;
    let streams = p.streams.iter().map(stream_spec).collect();
    Ok(LegParams {
        local_ufrag: p.local_ufrag.clone(),
        local_pwd: p.local_pwd.clone(),
        remote_ufrag: p.remote_ufrag.clone(),
        remote_pwd: p.remote_pwd.clone(),
        remote_fingerprint,
        dtls_active: p.dtls_active,
        local_addr: local,
        extensions: HeaderExtensions {
            mid: p.mid_extension,
            audio_level: None,
        },
        streams,
    })
}

/// The leg's view of one of the core's streams.
fn stream_spec(s: &WebRtcStream) -> StreamSpec {
    StreamSpec {
        mid: s.mid.clone(),
        kind: match s.kind {
            MediaKind::Audio => super::webrtc::MediaKind::Audio,
            MediaKind::Video => super::webrtc::MediaKind::Video,
        },
        payloads: s.payloads.iter().filter_map(payload_spec).collect(),
        ssrc_tx: s.ssrc_tx,
        ssrc_rx: s.ssrcs_rx.first().copied(),
    }
}

/// A payload the gateway carries: the codecs str0m knows (others, such as RED, RTX or FEC,
/// are left out: the phone side never gets them).
fn payload_spec(p: &Payload) -> Option<PayloadSpec> {
    let mut parts = p.codec.split('/');
    let name = parts.next()?;
    let known = [
        "pcmu",
        "pcma",
        "g722",
        "opus",
        "telephone-event",
        "cn",
        "vp8",
        "vp9",
        "h264",
        "h265",
        "av1",
    ];
    if !known.contains(&name) {
        return None;
    }
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = parts.next().and_then(|c| c.parse().ok());
    Some(PayloadSpec {
        pt: p.pt,
        codec: name.to_string(),
        clock_rate,
        channels,
        fmtp: p.fmtp.clone(),
    })
}

/// RTCP (RFC 5761 §4: packet types 192–223 in the second byte).
fn is_rtcp(b: &[u8]) -> bool {
    b.len() >= 8 && b[0] >> 6 == 2 && (192..=223).contains(&b[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_rtcp() {
        assert_eq!(leg_of_token(leg_token(7)), Some(7));
        assert_eq!(leg_of_token(12), None);
        assert_eq!(leg_of_token(u64::MAX), None);
        let p = pli(1, 2);
        assert!(is_rtcp(&p));
        assert!(rtcp_asks_keyframe(&p));
        // A receiver report, then a PLI: found in the compound packet.
        let mut rr = vec![0x80, 201, 0, 1, 0, 0, 0, 9];
        assert!(!rtcp_asks_keyframe(&rr));
        rr.extend_from_slice(&p);
        assert!(rtcp_asks_keyframe(&rr));
        assert!(!is_rtcp(&[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!rtcp_asks_keyframe(&[0x81, 206, 0xff, 0xff]));
    }

    #[test]
    fn payloads_the_gateway_carries() {
        let p = |pt, codec: &str| Payload {
            pt,
            codec: codec.into(),
            fmtp: String::new(),
        };
        let opus = payload_spec(&p(111, "opus/48000/2")).unwrap();
        assert_eq!((opus.clock_rate, opus.channels), (48000, Some(2)));
        assert_eq!(payload_spec(&p(0, "pcmu/8000")).unwrap().codec, "pcmu");
        assert!(payload_spec(&p(63, "red/48000/2")).is_none());
        assert!(payload_spec(&p(97, "rtx/90000")).is_none());
        assert!(payload_spec(&p(1, "pcmu")).is_none());
    }
}
