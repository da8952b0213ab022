//! Conference rooms answered by the switch itself (DESIGN D1: the one B2BUA part a room
//! needs). An INVITE the dialplan routes to a room ([`Decision::Room`]) is answered here:
//! the participant gets a port of the relay's room (a media endpoint of the one media plane,
//! `media::conference`), an SDP answer with the G.711 law its offer preferred (a browser
//! joins through a WebRTC gateway session, see docs/architecture.md), and a dialog
//! whose requests the switch answers: ACK, BYE (it leaves), re-INVITE (hold, a new address),
//! INFO with a DTMF digit, OPTIONS and UPDATE. Our 2xx is retransmitted over UDP until its ACK
//! (RFC 3261 §13.3.1.4).
//!
//! The operator (`tambun conf mute|kick|lock`, [`RoomAction`]) and moderators by DTMF
//! (`*7` mutes or unmutes everyone but the moderators, `*8` locks or unlocks the room)
//! control a room; a locked room answers 403 to all but its moderators.
//!
//! Security: a request is taken as the participant's only with the dialog's Call-ID, the
//! caller's From tag, our To tag, and from the IP the INVITE came from (docs/operations.md,
//! the security model); anything else goes on to the proxy's dialog check, which refuses it
//! with 481. Joining is authenticated like every INVITE (digest before routing).
//!
//! Sans-IO: methods of [`Proxy`]; the relay is driven through its control plane.

use std::collections::HashSet;

use bytes::Bytes;

use super::routing::outside_caller;
use super::*;
use crate::dialplan::RoomPlan;
use crate::media::mixer::{Codec, MixerEvent, ParticipantSpec, PinGate, PIN_ATTEMPTS};
use crate::media::sfu::{SfuConfig, VideoLine};
use crate::media::{RoomId, RoomVideoAsk, SessionId};

/// What a room's dialog takes.
const ROOM_ALLOW: &str = "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE";

/// RFC 3261 timers for our 2xx retransmissions.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// Who a participant is: an extension, or a caller from outside by the number its carrier
/// gave (national form, `0…`, or `anonymous`). The two never collide: extensions never start
/// with 0, and `anonymous` is no number.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Who {
    Extension(Extension),
    Outside(String),
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Extension(e) => e.fmt(f),
            Who::Outside(n) => f.write_str(n),
        }
    }
}

impl From<Who> for String {
    fn from(w: Who) -> String {
        w.to_string()
    }
}

impl TryFrom<String> for Who {
    type Error = String;
    fn try_from(s: String) -> Result<Who, String> {
        s.parse()
    }
}

impl std::str::FromStr for Who {
    type Err = String;
    /// An extension, an outside number as `tambun conf show` lists it (`0…`, digits), or
    /// `anonymous`.
    fn from_str(s: &str) -> Result<Who, String> {
        if s == "anonymous"
            || (s.starts_with('0') && s.len() > 1 && s.bytes().all(|b| b.is_ascii_digit()))
        {
            return Ok(Who::Outside(s.to_owned()));
        }
        s.parse::<Extension>().map(Who::Extension).map_err(|e| {
            format!("{e} (nor an outside caller's number such as 08123456789, or anonymous)")
        })
    }
}

/// One participant's dialog with a room.
pub(crate) struct RoomDialog {
    pub room: RoomId,
    pub number: String,
    pub session: SessionId,
    pub local_tag: String,
    pub peer: Peer,
    pub caller: Who,
    pub opd: Option<String>,
    pub moderator: bool,
    pub joined_ms: u64,
    /// For our own BYE: the participant's Contact, its From (our To) and our From (its To
    /// with our tag).
    their_contact: Option<String>,
    their_from: String,
    our_from: String,
    /// Our SDP answer, its version, and how it chose.
    answer: Answer,
    /// A 2xx awaiting its ACK (UDP only): bytes, next send, interval, give up at.
    unacked: Option<(Bytes, Instant, Duration, Instant)>,
    /// Muted by the operator or a moderator (the relay holds the same state).
    muted: bool,
    /// The previous DTMF digit, for a moderator's `*7` and `*8`.
    last_digit: Option<char>,
    /// A browser's: the relay session of its gateway leg (closed when it leaves) and the
    /// answer it was given (a re-INVITE gets it again: the room's side does not change).
    browser: Option<(SessionId, Bytes)>,
}

/// The rooms' dialogs, by (Call-ID, the caller's From tag), and the rooms' controls. A
/// room's lock and mute-all last while it has participants: the room is new again when
/// the last one leaves.
#[derive(Default)]
pub(crate) struct Rooms {
    pub dialogs: HashMap<(String, String), RoomDialog>,
    /// The dialogs by their relay session, for the room thread's events.
    by_session: HashMap<SessionId, (String, String)>,
    /// Locked rooms: only moderators (by extension or OPD) may join.
    locked: HashSet<RoomId>,
    /// Rooms whose participants are muted, except moderators; who joins is muted too.
    all_muted: HashSet<RoomId>,
    /// Joins answered 200, and refused by reason, since the start (`/metrics`).
    pub counts: RoomCounts,
}

/// The rooms' join counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomCounts {
    pub joined: u64,
    pub refused_full: u64,
    pub refused_locked: u64,
    /// No G.711 in the offer (488).
    pub refused_codec: u64,
    /// No relay, or no relay port (480/503).
    pub refused_media: u64,
    /// Hung up on after three wrong PINs.
    pub pin_failures: u64,
    pub kicked: u64,
    /// Hung up on for sending no media.
    pub media_timeouts: u64,
}

/// What the operator (`tambun conf`) or a moderator's DTMF does to a room.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum RoomAction {
    /// Mutes or unmutes the calls of one extension, or (`extension: None`) every participant
    /// who is not a moderator, and who joins later while the room stays so.
    Mute { extension: Option<Who>, muted: bool },
    /// Hangs up on an extension's (or an outside caller's) calls in the room (our BYE).
    Kick { extension: Who },
    /// Locks the room (only moderators may join) or unlocks it.
    Lock { locked: bool },
}

/// What a [`RoomAction`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RoomActionDone {
    pub room: String,
    /// Participants it changed (0 for a lock).
    pub affected: usize,
    pub locked: bool,
    pub all_muted: bool,
}

/// Why a [`RoomAction`] did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomActionError {
    #[error("nobody is in room {0} now")]
    Empty(String),
    #[error("extension {extension} is not in room {room}")]
    NotInRoom { room: String, extension: String },
}

/// The Reason of our BYE to a participant the operator removed.
const KICK_REASON: &str = "Q.850;cause=16;text=\"removed from the room\"";

/// A participant as `tambun conf` shows it (the relay adds its media state).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParticipantView {
    pub extension: String,
    pub opd: Option<String>,
    pub moderator: bool,
    pub joined_at_ms: u64,
    /// The relay's id of its media, to join the relay's view.
    #[serde(skip)]
    pub session: u64,
}

/// A room with participants, as `tambun conf` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoomView {
    pub room: String,
    #[serde(skip)]
    pub room_id: u32,
    pub locked: bool,
    pub all_muted: bool,
    pub participants: Vec<ParticipantView>,
}

impl Rooms {
    /// The rooms that have participants, by number; participants by joining time.
    pub fn views(&self) -> Vec<RoomView> {
        let mut rooms: Vec<RoomView> = Vec::new();
        for d in self.dialogs.values() {
            let p = ParticipantView {
                extension: d.caller.to_string(),
                opd: d.opd.clone(),
                moderator: d.moderator,
                joined_at_ms: d.joined_ms,
                session: d.session.0,
            };
            match rooms.iter_mut().find(|r| r.room_id == d.room.0) {
                Some(r) => r.participants.push(p),
                None => rooms.push(RoomView {
                    room: d.number.clone(),
                    room_id: d.room.0,
                    locked: self.locked.contains(&d.room),
                    all_muted: self.all_muted.contains(&d.room),
                    participants: vec![p],
                }),
            }
        }
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        for r in &mut rooms {
            r.participants.sort_by(|a, b| {
                (a.joined_at_ms, &a.extension).cmp(&(b.joined_at_ms, &b.extension))
            });
        }
        rooms
    }

    /// Participants of `room` now.
    pub fn count(&self, room: RoomId) -> usize {
        self.dialogs.values().filter(|d| d.room == room).count()
    }

    /// The earliest 2xx retransmission.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.dialogs
            .values()
            .filter_map(|d| d.unacked.as_ref().map(|u| u.1.min(u.3)))
            .min()
    }
}

/// What the offer's audio m-line lets the room use.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offer {
    /// Index of the audio m-line.
    audio: usize,
    remote: SocketAddr,
    rtcp_mux: bool,
    codec: Codec,
    pt: u8,
    dtmf_pt: Option<u8>,
    /// The RTP clock of its telephone-events (48 kHz beside Opus, else 8 kHz).
    dtmf_clock: u32,
    /// Every m-line: (media, first format), for the answer (others are refused, port 0).
    lines: Vec<(String, String)>,
    /// The video m-lines the room takes (VP8), in order: the first publishes.
    video: Vec<OfferedVideo>,
}

/// The most video m-lines one participant gets (its camera's and eight slots).
const MAX_VIDEO_LINES: usize = 9;

/// A video m-line of an offer that the room takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OfferedVideo {
    /// Its index among the m-lines.
    index: usize,
    remote: SocketAddr,
    rtcp_mux: bool,
    pt: u8,
    publish: bool,
    receive: bool,
}

/// A video m-line of our answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AnsweredVideo {
    /// The line as offered (its role, payload type, rtcp-mux), the remote address unused.
    offered: OfferedVideo,
    local: SocketAddr,
}

/// Our side of the SDP.
#[derive(Debug, Clone)]
struct Answer {
    local: SocketAddr,
    rtcp_mux: bool,
    codec: Codec,
    pt: u8,
    dtmf_pt: Option<u8>,
    dtmf_clock: u32,
    audio: usize,
    lines: Vec<(String, String)>,
    video: Vec<AnsweredVideo>,
    version: u32,
}

/// Reads an offer: the first audio m-line with a port, its address, the codec the room takes
/// from it (G.711 when offered at all, else G.722, else Opus) and its telephone-events.
/// `None` when it has none of them. Addresses, ports and rtcp-mux come from [`sdp::parse`],
/// each m-line's formats from [`sdp::formats_of`].
fn read_offer(body: &str) -> Option<Offer> {
    let parsed = crate::sip::sdp::parse(body.as_bytes()).ok()?;
    let m_lines: Vec<&str> = body.lines().filter(|l| l.starts_with("m=")).collect();
    if m_lines.len() != parsed.streams.len() {
        return None;
    }
    // Every m-line's media and first format, for the lines the answer refuses.
    let lines = parsed
        .streams
        .iter()
        .zip(&m_lines)
        .map(|(st, m)| {
            let first = m.split_whitespace().nth(3).unwrap_or("0").to_string();
            (st.kind.clone(), first)
        })
        .collect();
    let (audio, stream) = parsed
        .streams
        .iter()
        .enumerate()
        .find(|(_, st)| st.kind == "audio" && !st.is_disabled())?;
    let formats = crate::sip::sdp::formats_of(body.as_bytes(), audio)?;
    // G.711 when offered at all (the mix is 8 kHz, and G.711 costs least), else G.722, else
    // Opus (each decoded and encoded: dearer).
    let first = |want: fn(Codec) -> bool| {
        formats.iter().find_map(|(pt, e)| {
            let codec = Codec::from_encoding(e).filter(|c| want(*c))?;
            Some((codec, *pt))
        })
    };
    let (codec, pt) = first(|c| matches!(c, Codec::G711(_)))
        .or_else(|| first(|c| c == Codec::G722))
        .or_else(|| first(|c| c == Codec::Opus))?;
    // Events on the audio's clock (RFC 4733 §2.3), or the 8 kHz ones an Opus phone may offer.
    let events = |clock: u32| crate::sip::sdp::telephone_event(&formats, clock);
    let (dtmf_pt, dtmf_clock) = match (codec, events(48000)) {
        (Codec::Opus, Some(pt)) => (Some(pt), 48000),
        _ => (events(8000), 8000),
    };
    // Video: every VP8 line with a port and an address, up to the limit; the first one
    // carries the participant's camera (if its direction lets it send).
    let mut video = Vec::new();
    for (index, st) in parsed.streams.iter().enumerate() {
        if st.kind != "video" || st.is_disabled() || video.len() >= MAX_VIDEO_LINES {
            continue;
        }
        let Some(address) = st.address else { continue };
        let vp8 = crate::sip::sdp::formats_of(body.as_bytes(), index)
            .into_iter()
            .flatten()
            .find_map(|(pt, e)| e.starts_with("vp8/90000").then_some(pt));
        let Some(vp8) = vp8 else {
            tracing::info!(
                "room: a video m-line without VP8 is refused (the room forwards VP8, it does not \
                 transcode); the participant gets audio only on it"
            );
            continue;
        };
        use crate::sip::sdp::Direction as D;
        let sends = matches!(st.direction, D::SendRecv | D::SendOnly);
        let hears = matches!(st.direction, D::SendRecv | D::RecvOnly);
        video.push(OfferedVideo {
            index,
            remote: SocketAddr::new(address, st.port),
            rtcp_mux: st.rtcp_mux,
            pt: vp8,
            publish: video.is_empty() && sends,
            receive: hears,
        });
    }
    Some(Offer {
        audio,
        remote: SocketAddr::new(stream.address?, stream.port),
        rtcp_mux: stream.rtcp_mux,
        codec,
        pt,
        dtmf_pt,
        dtmf_clock,
        lines,
        video,
    })
}

impl Answer {
    /// The SDP body of our answer: the room's port for the audio line; every other line
    /// refused (port 0); `a=sendonly`/`recvonly`/`inactive` mirrored for hold.
    fn body(&self, name: &str, offer_direction: Option<&str>) -> String {
        let ip = self.local.ip();
        let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
        let mut s = format!(
            "v=0\r\no=tambun {} {} IN {family} {ip}\r\ns={}\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
            self.local.port(),
            self.version,
            name.replace(['\r', '\n'], " ")
        );
        for (i, (media, first)) in self.lines.iter().enumerate() {
            if let Some(a) = self.video.iter().find(|a| a.offered.index == i) {
                let v = &a.offered;
                let pt = v.pt;
                s.push_str(&format!(
                    "m=video {} RTP/AVP {pt}\r\na=rtpmap:{pt} VP8/90000\r\n\
                     a=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n",
                    a.local.port()
                ));
                if v.rtcp_mux {
                    s.push_str("a=rtcp-mux\r\n");
                }
                // Our direction is the participant's seen from the room.
                let dir = match (v.publish, v.receive) {
                    (true, true) => "sendrecv",
                    (true, false) => "recvonly",
                    (false, true) => "sendonly",
                    (false, false) => "inactive",
                };
                s.push_str(&format!("a={dir}\r\n"));
                continue;
            }
            if i != self.audio {
                s.push_str(&format!("m={media} 0 RTP/AVP {first}\r\n"));
                continue;
            }
            let codec = self.codec.rtpmap();
            let mut fmts = self.pt.to_string();
            if let Some(d) = self.dtmf_pt {
                fmts.push_str(&format!(" {d}"));
            }
            s.push_str(&format!(
                "m=audio {} RTP/AVP {fmts}\r\na=rtpmap:{} {codec}\r\n",
                self.local.port(),
                self.pt
            ));
            if self.codec == Codec::Opus {
                // Mono, no in-band FEC or DTX from us; the room plays at 8 kHz, so a sender
                // need not send more (RFC 7587 maxplaybackrate: browsers then send
                // narrowband, cheaper to decode and to carry).
                s.push_str(&format!(
                    "a=fmtp:{} maxplaybackrate=8000;sprop-maxcapturerate=8000;minptime=10;\
                     useinbandfec=0;stereo=0;sprop-stereo=0\r\n",
                    self.pt
                ));
            }
            if let Some(d) = self.dtmf_pt {
                s.push_str(&format!(
                    "a=rtpmap:{d} telephone-event/{}\r\na=fmtp:{d} 0-15\r\n",
                    self.dtmf_clock
                ));
            }
            s.push_str("a=ptime:20\r\n");
            if self.rtcp_mux {
                s.push_str("a=rtcp-mux\r\n");
            }
            let dir = match offer_direction {
                Some("sendonly") => "recvonly",
                Some("recvonly") => "sendonly",
                Some("inactive") => "inactive",
                _ => "sendrecv",
            };
            s.push_str(&format!("a={dir}\r\n"));
        }
        s
    }
}

/// The direction attribute of an offer's audio line, if any.
fn offer_direction(body: &str) -> Option<&'static str> {
    let mut in_audio = false;
    for line in body.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(rest) = line.strip_prefix("m=") {
            in_audio = rest.starts_with("audio ");
        } else if in_audio {
            for d in ["sendonly", "recvonly", "inactive", "sendrecv"] {
                if line == format!("a={d}") {
                    return Some(d);
                }
            }
        }
    }
    None
}

/// The digit of a SIP INFO (`application/dtmf-relay`: `Signal=5`; `application/dtmf`: `5`).
fn info_digit(msg: &Message) -> Option<char> {
    let ctype = msg
        .header(HeaderName::ContentType)?
        .trim()
        .to_ascii_lowercase();
    let body = std::str::from_utf8(msg.body()).ok()?;
    let raw = if ctype.starts_with("application/dtmf-relay") {
        body.lines()
            .find_map(|l| l.trim().strip_prefix("Signal="))?
            .trim()
    } else if ctype.starts_with("application/dtmf") {
        body.trim()
    } else {
        return None;
    };
    let c = raw.chars().next()?.to_ascii_uppercase();
    (raw.len() == 1 && "0123456789*#ABCD".contains(c)).then_some(c)
}

impl Proxy {
    /// Answers call `id` for the room of `plan`: a port in the relay's room, our SDP answer,
    /// the 200 and the participant's dialog. Refusals: 486 when the room is full, 488 without
    /// a G.711 offer, 480 without a relay, 503 without relay ports.
    pub(super) fn answer_room(&mut self, cx: &mut Ctx<'_>, id: u64, plan: RoomPlan, now: Now) {
        let warn = |s: &str| vec![format!("Warning: 399 tambun \"{s}\"")];
        let Some(number) = plan.number.parse::<u32>().ok() else {
            self.respond_final_full(cx, id, 404, None, &warn("no such room"), now);
            return;
        };
        let room = RoomId(number);
        if self.media.is_none() {
            self.rooms.counts.refused_media += 1;
            let w = warn("conference rooms need the media relay, which is off");
            self.respond_final_full(cx, id, 480, None, &w, now);
            return;
        }
        if self.rooms.locked.contains(&room) && !plan.moderator {
            self.rooms.counts.refused_locked += 1;
            let w = warn(&format!("room {} is locked by its moderator", plan.number));
            self.respond_final_full(cx, id, 403, None, &w, now);
            return;
        }
        if self.rooms.count(room) >= plan.max as usize {
            self.rooms.counts.refused_full += 1;
            let w = warn(&format!(
                "room {} is full ({} participants)",
                plan.number, plan.max
            ));
            self.respond_final_full(cx, id, 486, None, &w, now);
            return;
        }
        let Some(p) = self.by_id.get(&id) else { return };
        let request = p.request.clone();
        let (key, upstream) = (p.server_key.clone(), p.upstream);
        let caller = p.call.as_ref().and_then(|c| c.caller.clone());
        let from_tag = request.from_tag().unwrap_or("").to_string();
        let call_id = request.call_id().unwrap_or("").to_string();
        // A browser (ICE, DTLS-SRTP) joins through a relay session of the gateway: its
        // browser side is the page's, its plain side is what the room's port exchanges RTP
        // with; the room sees a plain offer from the relay.
        let browser = crate::sip::webrtc_sdp::is_webrtc(request.body());
        if browser && self.media.as_ref().and_then(|m| m.fingerprint()).is_none() {
            self.rooms.counts.refused_codec += 1;
            let w = warn("the WebRTC gateway is off, so browsers cannot join rooms");
            self.respond_final_full(cx, id, 488, None, &w, now);
            return;
        }
        let plain = if browser {
            match self.media_offer(&request, media::Leg::A) {
                Some(m) => Some(m),
                None => {
                    self.rooms.counts.refused_media += 1;
                    let w = warn("no media ports for a browser in the room");
                    self.respond_final_full(cx, id, 503, None, &w, now);
                    return;
                }
            }
        } else {
            None
        };
        let gateway = browser
            .then(|| self.media_calls.by_call_id.get(&call_id).map(|c| c.session))
            .flatten();
        let offered = plain.as_ref().unwrap_or(&request);
        let offer = media::has_sdp(offered)
            .then(|| {
                std::str::from_utf8(offered.body())
                    .ok()
                    .and_then(read_offer)
            })
            .flatten();
        let Some(offer) = offer else {
            if browser {
                let _ = self.media_close(&call_id);
            }
            self.rooms.counts.refused_codec += 1;
            let w = warn("the room needs an SDP offer with PCMU, PCMA, G722 or opus");
            self.respond_final_full(cx, id, 488, None, &w, now);
            return;
        };
        // A call from a carrier (the dialplan made sure it never moderates): the number its
        // carrier gave.
        let caller = match caller {
            Some(ext) => Who::Extension(ext),
            None => Who::Outside(outside_caller(&request)),
        };
        let Some(relay) = self.media.as_mut() else {
            return;
        };
        let spec = ParticipantSpec {
            codec: offer.codec,
            pt: offer.pt,
            dtmf_pt: offer.dtmf_pt,
            ssrc: relay.ssrc(),
            // Moderators by extension or OPD come in without one.
            pin: plan
                .pin
                .clone()
                .filter(|_| !plan.moderator)
                .map(|pin| PinGate {
                    pin,
                    moderator_pin: plan.moderator_pin.clone(),
                }),
        };
        let asks: Vec<RoomVideoAsk> = offer
            .video
            .iter()
            .map(|v| RoomVideoAsk {
                rtcp_mux: v.rtcp_mux,
                remote: Some(v.remote),
                line: VideoLine {
                    pt: v.pt,
                    publish: v.publish,
                    receive: v.receive,
                    ssrc: relay.ssrc(),
                },
            })
            .collect();
        let sfu = SfuConfig {
            egress_bps: u64::from(plan.video_mbps) * 1_000_000,
        };
        let joined = relay.room_join(room, offer.rtcp_mux, spec, Some(offer.remote), &asks, sfu);
        let (session, ports, video_ports) = match joined {
            Ok(j) => j,
            Err(e) => {
                tracing::warn!(room = number, error = %e, "no relay port for a participant");
                if browser {
                    let _ = self.media_close(&call_id);
                }
                self.rooms.counts.refused_media += 1;
                self.respond_final_full(cx, id, 503, None, &warn("no media ports"), now);
                return;
            }
        };
        let muted = self.rooms.all_muted.contains(&room) && !plan.moderator;
        if muted {
            let _ = relay.room_mute(room, session, true);
        }
        let answer = Answer {
            local: ports.rtp,
            rtcp_mux: offer.rtcp_mux,
            codec: offer.codec,
            pt: offer.pt,
            dtmf_pt: offer.dtmf_pt,
            dtmf_clock: offer.dtmf_clock,
            audio: offer.audio,
            lines: offer.lines.clone(),
            video: offer
                .video
                .iter()
                .zip(&video_ports)
                .map(|(v, p)| AnsweredVideo {
                    offered: *v,
                    local: p.rtp,
                })
                .collect(),
            version: 1,
        };
        let body = answer.body(
            &plan.name,
            offer_direction(&String::from_utf8_lossy(request.body())),
        );
        let local_tag = response::our_to_tag(&request);
        let contact = self.room_contact(cx, &upstream, &plan.number);
        let extra = [contact, ROOM_ALLOW.to_string()];
        let mut bytes = response::build(
            &request,
            upstream.addr,
            200,
            Some(&local_tag),
            &extra,
            Some(("application/sdp", body.as_bytes())),
        );
        if browser {
            // The room's plain answer, as the relay's plain side hears it, becomes the
            // browser's answer (ICE, DTLS role, fingerprint) and points that side at the room.
            let rewritten = Message::parse_framed(bytes.clone(), &UNBOUNDED)
                .ok()
                .and_then(|m| {
                    let relay = self.media.as_mut()?;
                    let call = self.media_calls.by_call_id.get_mut(&call_id)?;
                    media::rewrite_for(relay, call, &m, media::Leg::B)
                });
            match rewritten {
                Some(b) => bytes = b,
                None => {
                    tracing::warn!(room = %plan.number, "cannot answer the browser for the room");
                    if let Some(relay) = self.media.as_mut() {
                        let _ = relay.room_leave(room, session);
                    }
                    let _ = self.media_close(&call_id);
                    self.rooms.counts.refused_media += 1;
                    self.respond_final_full(
                        cx,
                        id,
                        488,
                        None,
                        &warn("no media for the browser"),
                        now,
                    );
                    return;
                }
            }
        }
        if let Some(t) = cx
            .server
            .send_response(&key, 200, bytes.clone(), upstream, now.instant)
        {
            cx.out.push_back(t);
        }
        if let Some(p) = self.by_id.get_mut(&id) {
            p.final_sent = true;
            p.answered = true;
        }
        self.records.answered(
            &call_id,
            &from_tag,
            Some(&local_tag),
            Some(plan.number.clone()),
            None,
            None,
            now.instant,
            now.unix_ms,
        );
        self.forget(id);
        tracing::info!(room = %plan.number, %caller, moderator = plan.moderator, "joined the room");
        self.rooms.counts.joined += 1;
        let unacked = (upstream.transport == Transport::Udp)
            .then(|| (bytes.clone(), now.instant + T1, T1, now.instant + 64 * T1));
        self.rooms
            .by_session
            .insert(session, (call_id.clone(), from_tag.clone()));
        if let Some(g) = gateway {
            // The gateway's inactivity is the participant's too.
            self.rooms
                .by_session
                .insert(g, (call_id.clone(), from_tag.clone()));
        }
        let browser_body = Message::parse_framed(bytes.clone(), &UNBOUNDED)
            .map(|m| Bytes::copy_from_slice(m.body()))
            .unwrap_or_default();
        self.rooms.dialogs.insert(
            (call_id, from_tag),
            RoomDialog {
                room,
                number: plan.number,
                session,
                local_tag,
                peer: upstream,
                opd: match &caller {
                    Who::Extension(ext) => {
                        cx.registrar.accounts().get(ext).map(|a| a.opd.to_string())
                    }
                    Who::Outside(_) => None,
                },
                caller,
                moderator: plan.moderator,
                joined_ms: now.unix_ms,
                their_contact: media::contact_uri(&request),
                their_from: request.header(HeaderName::From).unwrap_or("").to_string(),
                our_from: format!(
                    "{};tag={}",
                    request.header(HeaderName::To).unwrap_or(""),
                    response::our_to_tag(&request)
                ),
                answer,
                unacked,
                muted,
                last_digit: None,
                browser: gateway.map(|g| (g, browser_body)),
            },
        );
    }

    /// Our Contact in a room's answers: the room's number at the address the participant
    /// reached us on.
    fn room_contact(&self, cx: &Ctx<'_>, peer: &Peer, number: &str) -> String {
        let local = cx
            .net
            .local_of(peer)
            .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
        match peer.transport {
            Transport::Udp => format!("Contact: <sip:{number}@{local}>"),
            t => format!("Contact: <sip:{number}@{local};transport={t}>"),
        }
    }

    /// The room dialog of an in-dialog request, if it is one of ours from its participant.
    fn room_dialog_key(&self, msg: &Message, peer: &Peer) -> Option<(String, String)> {
        let key = (msg.call_id().ok()?.to_string(), msg.from_tag()?.to_string());
        let d = self.rooms.dialogs.get(&key)?;
        (msg.to_tag() == Some(d.local_tag.as_str()) && peer.addr.ip() == d.peer.addr.ip())
            .then_some(key)
    }

    /// An ACK: the one for a room's 2xx stops its retransmissions. True when it was one.
    pub(super) fn room_ack(&mut self, msg: &Message, peer: &Peer) -> bool {
        let Some(key) = self.room_dialog_key(msg, peer) else {
            return false;
        };
        if let Some(d) = self.rooms.dialogs.get_mut(&key) {
            d.unacked = None;
        }
        true
    }

    /// A request inside a room dialog, answered here: `None` when it is not one (the proxy's
    /// dialog check takes it), `Some(None)` when answered already, `Some(Some(status))` for
    /// the caller to answer with.
    pub(super) fn room_in_dialog(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        now: Now,
    ) -> Option<Option<(u16, Vec<String>)>> {
        let dkey = self.room_dialog_key(msg, &peer)?;
        let method = msg.method()?.clone();
        let ok = Some(Some((200, Vec::new())));
        match method {
            Method::Bye => {
                self.room_leave(&dkey, now);
                ok
            }
            Method::Invite => {
                let d = self.rooms.dialogs.get_mut(&dkey)?;
                if let Some((_, answer)) = &d.browser {
                    // A browser's hold or refresh: its transport stays, so does our answer.
                    let answer = answer.clone();
                    let (local_tag, number) = (d.local_tag.clone(), d.number.clone());
                    let contact = self.room_contact(cx, &peer, &number);
                    let bytes = response::build(
                        msg,
                        peer.addr,
                        200,
                        Some(&local_tag),
                        &[contact],
                        Some(("application/sdp", &answer)),
                    );
                    if let Some(t) = cx.server.send_response(key, 200, bytes, peer, now.instant) {
                        cx.out.push_back(t);
                    }
                    return Some(None);
                }
                let text = String::from_utf8_lossy(msg.body()).to_string();
                if media::has_sdp(msg) {
                    match read_offer(&text) {
                        Some(o) if o.lines.len() == d.answer.lines.len() => {
                            // Hold with `c=0.0.0.0` keeps the latch: media resumes from it.
                            if !o.remote.ip().is_unspecified() && o.remote.port() != 0 {
                                if let Some(relay) = self.media.as_mut() {
                                    let _ = relay.room_remote(d.room, d.session, o.remote);
                                }
                            }
                        }
                        _ => {
                            return Some(Some((
                                488,
                                vec!["Warning: 399 tambun \"the room keeps its media as it is\""
                                    .into()],
                            )))
                        }
                    }
                }
                d.answer.version += 1;
                let name = format!("Tambun {}", d.number);
                let body = d.answer.body(&name, offer_direction(&text));
                let contact = format!("Contact: <sip:{}@{}>", d.number, {
                    cx.net
                        .local_of(&peer)
                        .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string())
                });
                let bytes = response::build(
                    msg,
                    peer.addr,
                    200,
                    Some(&d.local_tag.clone()),
                    &[contact],
                    Some(("application/sdp", body.as_bytes())),
                );
                if peer.transport == Transport::Udp {
                    d.unacked = Some((bytes.clone(), now.instant + T1, T1, now.instant + 64 * T1));
                }
                if let Some(t) = cx.server.send_response(key, 200, bytes, peer, now.instant) {
                    cx.out.push_back(t);
                }
                Some(None)
            }
            Method::Info => {
                let d = self.rooms.dialogs.get(&dkey)?;
                match info_digit(msg) {
                    Some(digit) => {
                        if let Some(relay) = self.media.as_mut() {
                            let _ = relay.room_digit(d.room, d.session, digit);
                        }
                        ok
                    }
                    None if msg.body().is_empty() => ok,
                    None => Some(Some((415, vec!["Accept: application/dtmf-relay".into()]))),
                }
            }
            Method::Options | Method::Update => ok,
            Method::Ack => Some(None),
            _ => Some(Some((405, vec![ROOM_ALLOW.to_string()]))),
        }
    }

    /// The participant of `key` leaves its room: its relay port goes, its record ends.
    fn room_leave(&mut self, key: &(String, String), now: Now) {
        let Some(d) = self.rooms.dialogs.remove(key) else {
            return;
        };
        self.rooms.by_session.remove(&d.session);
        if let Some(relay) = self.media.as_mut() {
            let _ = relay.room_leave(d.room, d.session);
        }
        if let Some((g, _)) = &d.browser {
            self.rooms.by_session.remove(g);
            let _ = self.media_close(&key.0);
        }
        self.records.ended(
            &key.0,
            &[Some(key.1.as_str()), Some(d.local_tag.as_str())],
            now.unix_ms,
        );
        tracing::info!(room = %d.number, caller = %d.caller, "left the room");
        if self.rooms.count(d.room) == 0 {
            self.rooms.locked.remove(&d.room);
            self.rooms.all_muted.remove(&d.room);
        }
    }

    /// The switch ends participant `key`'s call: our BYE with `reason` (RFC 3326) to its
    /// Contact, and it leaves the room.
    fn hang_up(&mut self, cx: &mut Ctx<'_>, key: &(String, String), reason: &str, now: Now) {
        if let Some(d) = self.rooms.dialogs.get(key) {
            let (peer, from, to) = (d.peer, d.our_from.clone(), d.their_from.clone());
            if let Some(uri) = d.their_contact.clone() {
                self.send_own_bye(cx, &key.0, &uri, peer, &from, &to, 1, 0, reason, now);
            }
        }
        self.room_leave(key, now);
    }

    /// Mutes or unmutes participant `key` in the relay; true when that changed its state.
    fn set_muted(&mut self, key: &(String, String), muted: bool) -> bool {
        let Some(d) = self.rooms.dialogs.get_mut(key) else {
            return false;
        };
        if let Some(relay) = self.media.as_mut() {
            let _ = relay.room_mute(d.room, d.session, muted);
        }
        std::mem::replace(&mut d.muted, muted) != muted
    }

    /// The operator's (or a moderator's) action on room `number`.
    pub(crate) fn room_action(
        &mut self,
        cx: &mut Ctx<'_>,
        number: &str,
        action: RoomAction,
        now: Now,
    ) -> Result<RoomActionDone, RoomActionError> {
        let mut keys: Vec<(String, String)> = self
            .rooms
            .dialogs
            .iter()
            .filter(|(_, d)| d.number == number)
            .map(|(k, _)| k.clone())
            .collect();
        let Some(room) = keys
            .first()
            .and_then(|k| self.rooms.dialogs.get(k))
            .map(|d| d.room)
        else {
            return Err(RoomActionError::Empty(number.to_string()));
        };
        let one = |ext: &Who, keys: &mut Vec<(String, String)>, rooms: &Rooms| {
            keys.retain(|k| rooms.dialogs.get(k).is_some_and(|d| d.caller == *ext));
            if keys.is_empty() {
                Err(RoomActionError::NotInRoom {
                    room: number.to_string(),
                    extension: ext.to_string(),
                })
            } else {
                Ok(())
            }
        };
        let mut affected = 0;
        match action {
            RoomAction::Mute { extension, muted } => {
                match &extension {
                    Some(ext) => one(ext, &mut keys, &self.rooms)?,
                    None => {
                        keys.retain(|k| self.rooms.dialogs.get(k).is_some_and(|d| !d.moderator));
                        if muted {
                            self.rooms.all_muted.insert(room);
                        } else {
                            self.rooms.all_muted.remove(&room);
                        }
                    }
                }
                for k in &keys {
                    affected += usize::from(self.set_muted(k, muted));
                }
                tracing::info!(room = number, who = ?extension.map(|e| e.to_string()), muted, affected, "room mute");
            }
            RoomAction::Kick { extension } => {
                one(&extension, &mut keys, &self.rooms)?;
                for k in &keys {
                    self.hang_up(cx, k, KICK_REASON, now);
                    self.rooms.counts.kicked += 1;
                    affected += 1;
                }
                tracing::info!(room = number, %extension, affected, "removed from the room");
            }
            RoomAction::Lock { locked } => {
                if locked {
                    self.rooms.locked.insert(room);
                } else {
                    self.rooms.locked.remove(&room);
                }
                tracing::info!(room = number, locked, "room lock");
            }
        }
        Ok(RoomActionDone {
            room: number.to_string(),
            affected,
            locked: self.rooms.locked.contains(&room),
            all_muted: self.rooms.all_muted.contains(&room),
        })
    }

    /// What a room's thread reports of a participant: its PIN accepted (a moderator PIN
    /// makes it a moderator), or refused too often (the switch hangs up on it).
    pub(crate) fn handle_room_event(
        &mut self,
        cx: &mut Ctx<'_>,
        session: SessionId,
        event: &MixerEvent,
        now: Now,
    ) {
        if matches!(
            event,
            MixerEvent::Talking { .. } | MixerEvent::SelfMuted { .. }
        ) {
            return; // the relay's RoomStats tell the operator; nothing to do here
        }
        let Some(key) = self.rooms.by_session.get(&session).cloned() else {
            return;
        };
        match event {
            MixerEvent::PinAccepted { moderator, .. } => {
                let Some(d) = self.rooms.dialogs.get_mut(&key) else {
                    return;
                };
                d.moderator |= *moderator;
                tracing::info!(room = %d.number, caller = %d.caller, moderator = d.moderator, "PIN accepted");
                // A moderator is not held by the room's mute-all.
                if d.moderator && d.muted {
                    self.set_muted(&key, false);
                }
            }
            MixerEvent::Digit { digit, .. } => {
                let Some(d) = self.rooms.dialogs.get_mut(&key) else {
                    return;
                };
                let star = d.last_digit.replace(*digit) == Some('*');
                if !star || !d.moderator {
                    return;
                }
                let (room, number) = (d.room, d.number.clone());
                let action = match digit {
                    '7' => RoomAction::Mute {
                        extension: None,
                        muted: !self.rooms.all_muted.contains(&room),
                    },
                    '8' => RoomAction::Lock {
                        locked: !self.rooms.locked.contains(&room),
                    },
                    _ => return,
                };
                let _ = self.room_action(cx, &number, action, now);
            }
            MixerEvent::PinRejected { failures, .. } => {
                let Some(d) = self.rooms.dialogs.get(&key) else {
                    return;
                };
                tracing::info!(room = %d.number, caller = %d.caller, failures, "wrong room PIN");
                if *failures < PIN_ATTEMPTS {
                    return;
                }
                self.rooms.counts.pin_failures += 1;
                self.hang_up(cx, &key, "SIP;cause=403;text=\"wrong PIN\"", now);
            }
            _ => {}
        }
    }

    /// A participant the relay heard nothing from for the inactivity time: the switch hangs
    /// up on it (our BYE, Reason 408) and its record says `media-timeout`. False when
    /// `session` is no participant's.
    pub(super) fn room_inactive(&mut self, cx: &mut Ctx<'_>, session: SessionId, now: Now) -> bool {
        let Some(key) = self.rooms.by_session.get(&session).cloned() else {
            return false;
        };
        let Some(d) = self.rooms.dialogs.get(&key) else {
            return false;
        };
        tracing::info!(room = %d.number, caller = %d.caller, "no media from the participant: hanging up");
        self.records.media_timeout(&key.0, now.unix_ms);
        self.rooms.counts.media_timeouts += 1;
        self.hang_up(cx, &key, "SIP;cause=408;text=\"media timeout\"", now);
        true
    }

    /// Our 2xx retransmissions (UDP), and participants whose ACK never came (they leave).
    pub(super) fn rooms_timeout(&mut self, cx: &mut Ctx<'_>, now: Now) {
        let mut gone = Vec::new();
        for (key, d) in self.rooms.dialogs.iter_mut() {
            let Some((bytes, next, interval, give_up)) = d.unacked.as_mut() else {
                continue;
            };
            if now.instant >= *give_up {
                gone.push(key.clone());
                continue;
            }
            if now.instant >= *next {
                cx.out.push_back(Transmit {
                    peer: d.peer,
                    bytes: bytes.clone(),
                });
                *interval = (*interval * 2).min(T2);
                *next = now.instant + *interval;
            }
        }
        for key in gone {
            tracing::info!(call_id = %key.0, "no ACK for the room's 200: the participant leaves");
            self.room_leave(&key, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::mixer::g711::Law;

    /// Our answer to `o` on 127.0.0.9:40000, with `video` lines.
    fn answer_for(o: &Offer, video: Vec<AnsweredVideo>) -> Answer {
        Answer {
            local: "127.0.0.9:40000".parse().unwrap(),
            rtcp_mux: false,
            codec: o.codec,
            pt: o.pt,
            dtmf_pt: o.dtmf_pt,
            dtmf_clock: o.dtmf_clock,
            audio: o.audio,
            lines: o.lines.clone(),
            video,
            version: 1,
        }
    }

    #[test]
    fn offers_choose_the_first_g711_and_telephone_events() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 9 8 0 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
m=video 4002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let o = read_offer(body).unwrap();
        assert_eq!(
            (o.codec, o.pt, o.dtmf_pt),
            (Codec::G711(Law::A), 8, Some(101))
        );
        assert_eq!(o.remote, "10.0.0.5:4000".parse().unwrap());
        assert_eq!(o.audio, 0);
        assert_eq!(o.lines.len(), 2);
        let a = answer_for(&o, Vec::new());
        let text = a.body("Rapat", None);
        assert!(
            text.contains("m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"),
            "{text}"
        );
        assert!(
            text.contains("m=video 0 RTP/AVP 96\r\n"),
            "video refused: {text}"
        );
        assert!(text.contains("a=sendrecv"));
        assert_eq!(
            a.body("x", Some("sendonly")).matches("a=recvonly").count(),
            1
        );
        // No G.711 at all: no offer the room can take.
        assert!(read_offer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 18\r\n").is_none());
        // G.722 alone is taken (static payload type 9, no rtpmap needed).
        let wide = read_offer("v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 9 101\r\n").unwrap();
        assert_eq!((wide.codec, wide.pt), (Codec::G722, 9));
        assert!(answer_for(&wide, Vec::new())
            .body("Rapat", None)
            .contains("m=audio 40000 RTP/AVP 9\r\na=rtpmap:9 G722/8000\r\n"));
        // Opus when nothing cheaper is offered, with the events of its 48 kHz clock.
        let opus = read_offer(
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 111 101 126\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:101 telephone-event/8000\r\n\
a=rtpmap:126 telephone-event/48000\r\n",
        )
        .unwrap();
        assert_eq!(
            (opus.codec, opus.pt, opus.dtmf_pt, opus.dtmf_clock),
            (Codec::Opus, 111, Some(126), 48000)
        );
        let text = answer_for(&opus, Vec::new()).body("Rapat", None);
        assert!(
            text.contains(
                "m=audio 40000 RTP/AVP 111 126\r\na=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 maxplaybackrate=8000;sprop-maxcapturerate=8000;minptime=10;\
useinbandfec=0;stereo=0;sprop-stereo=0\r\n\
a=rtpmap:126 telephone-event/48000\r\n"
            ),
            "{text}"
        );
        // A browser's offer (Opus first, G.711 too) still gets G.711: cheaper, and as good in
        // an 8 kHz mix.
        let browser = read_offer(
            "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 4000 RTP/AVP 111 0 8 126\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:126 telephone-event/8000\r\n",
        )
        .unwrap();
        assert_eq!(
            (
                browser.codec,
                browser.pt,
                browser.dtmf_pt,
                browser.dtmf_clock
            ),
            (Codec::G711(Law::Mu), 0, Some(126), 8000)
        );
        // Garbage does not panic.
        assert!(read_offer("m=audio x y\r\n").is_none());
    }

    #[test]
    fn video_lines_with_vp8_are_taken_the_first_publishes_the_others_receive() {
        let body = "v=0\r\no=- 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\n\
m=video 4002 RTP/AVP 97 96\r\na=rtpmap:97 H264/90000\r\na=rtpmap:96 VP8/90000\r\na=rtcp-mux\r\n\
m=video 4004 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\na=recvonly\r\n\
m=video 4006 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n";
        let o = read_offer(body).unwrap();
        assert_eq!(o.lines.len(), 5);
        let v: Vec<_> = o
            .video
            .iter()
            .map(|v| (v.index, v.pt, v.publish, v.receive, v.rtcp_mux))
            .collect();
        // H.264 only, and a disabled line, are not taken.
        assert_eq!(
            v,
            vec![(1, 96, true, true, true), (2, 100, false, true, false)]
        );
        assert_eq!(o.video[1].remote, "10.0.0.5:4004".parse().unwrap());
        let video = o
            .video
            .iter()
            .enumerate()
            .map(|(k, v)| AnsweredVideo {
                offered: *v,
                local: SocketAddr::from(([127, 0, 0, 9], 40002 + 2 * k as u16)),
            })
            .collect();
        let a = answer_for(&o, video);
        let text = a.body("Rapat", None);
        let sections: Vec<&str> = text.split("m=").skip(1).collect();
        assert_eq!(sections.len(), 5, "{text}");
        assert!(sections[1].starts_with("video 40002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000"));
        assert!(
            sections[1].contains("a=rtcp-fb:96 nack pli") && sections[1].contains("a=rtcp-mux")
        );
        assert!(sections[1].contains("a=sendrecv"), "{text}");
        assert!(
            sections[2].starts_with("video 40004 RTP/AVP 100")
                && sections[2].contains("a=sendonly")
        );
        assert!(sections[3].starts_with("video 0 ") && sections[4].starts_with("video 0 "));
    }
}
