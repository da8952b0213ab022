//! Media anchoring in the proxy (DESIGN D8): every SDP that passes through is pointed at the
//! relay. SDP from one leg sets that leg's remote address in the relay and is rewritten with
//! the relay ports of the *other* leg (where the receiving phone must send). Sessions open on
//! the first SDP of a call, follow re-offers (hold, codec change, added video), and close when
//! the call ends; a relay that reports a silent session gets the call ended with a BYE both
//! ways (disposition `media-timeout`).
//!
//! The relay is driven through its sans-IO control plane ([`MediaControl`]): opening a session
//! allocates its ports here and now (so the rewritten SDP goes out in the same step) and every
//! decision becomes a queued [`crate::media::MediaCommand`] that the switch hands its driver.
//! No socket, thread or wait in here.

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::media::{
    MediaControl, MediaKind, Payload, SessionId, StreamPorts, WebRtcParams, WebRtcStream,
};
use crate::sip::message::{HeaderName, Message};
use crate::sip::webrtc_sdp::{self, Setup, WebRtcSdp};

use super::{Ctx, Proxy, UNBOUNDED};
use crate::media::transcode::{Codec, CodecSpec};
use crate::sip::sdp::{self, RelayPorts};

/// The two legs of a call: A is the caller, B the callee (the relay's sides).
pub use crate::media::Side as Leg;

/// The media of one call.
pub(crate) struct MediaCall {
    pub session: SessionId,
    pub streams: Vec<StreamPorts>,
    /// The caller's From-tag: requests with it come from leg A.
    pub caller_tag: String,
    /// For the BYEs of a media timeout: the caller's From and contact, the callee's To (with
    /// tag) and contact, the highest CSeq each side used.
    pub caller_from: String,
    pub caller_contact: Option<String>,
    pub callee_to: Option<String>,
    pub callee_contact: Option<String>,
    pub cseq_a: u32,
    pub cseq_b: u32,
    /// The dialog token of the answered call (from the 2xx's Record-Route): the media
    /// timeout's BYEs go to its parties, not to addresses the contacts name.
    pub dialog_token: Option<String>,
    /// A browser on leg A or B (`Leg::index`): its leg in the relay is WebRTC.
    pub browsers: [Option<BrowserLeg>; 2],
    /// The legs may share no codec: the relay transcodes.
    pub transcode: Transcoding,
}

/// Transcoding of a call whose caller offered no G.711 (docs/decisions.md, "Transcoding").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Transcoding {
    #[default]
    No,
    /// The caller offered `a` (Opus or G.722) and no G.711 on `stream`: the callee was
    /// offered G.711 too. If it answers with G.711, the relay transcodes.
    Offered { stream: usize, a: CodecSpec },
    /// The relay transcodes between the caller's `a` and the callee's `b`; SDP crossing
    /// the call is written with the receiver's codec.
    Active {
        stream: usize,
        a: CodecSpec,
        b: CodecSpec,
    },
}

impl Transcoding {
    /// `caller/callee` codecs of a call the relay transcodes (`opus/PCMU`).
    pub(crate) fn describe(&self) -> Option<String> {
        let Transcoding::Active { a, b, .. } = self else {
            return None;
        };
        Some(format!("{}/{}", a.codec.name(), b.codec.name()))
    }
}

/// What the caller's offer needs: `Offered` when its first audio stream has no G.711 but a
/// codec the relay can transcode from (its first such one).
fn transcoding_for(body: &[u8]) -> Transcoding {
    let Ok(parsed) = sdp::parse(body) else {
        return Transcoding::No;
    };
    let Some(stream) = parsed
        .streams
        .iter()
        .position(|s| s.kind == "audio" && !s.is_disabled())
    else {
        return Transcoding::No;
    };
    let Some(formats) = sdp::formats_of(body, stream) else {
        return Transcoding::No;
    };
    let codecs = || {
        formats
            .iter()
            .filter_map(|(pt, e)| Some((Codec::from_encoding(e)?, *pt)))
    };
    if codecs().any(|(c, _)| matches!(c, Codec::G711(_))) {
        return Transcoding::No;
    }
    let dtmf = dtmf_of(&formats);
    codecs()
        .next()
        .map_or(Transcoding::No, |(codec, pt)| Transcoding::Offered {
            stream,
            a: CodecSpec { codec, pt, dtmf },
        })
}

/// The first RFC 4733 format of an m-line whose clock we can name: (payload type, clock).
fn dtmf_of(formats: &[(u8, String)]) -> Option<(u8, u32)> {
    formats.iter().find_map(|(pt, e)| {
        let clock = sdp::event_clock(e)?;
        te_rtpmap(clock).map(|_| (*pt, clock))
    })
}

fn te_rtpmap(clock: u32) -> Option<&'static str> {
    match clock {
        8000 => Some("telephone-event/8000"),
        16000 => Some("telephone-event/16000"),
        48000 => Some("telephone-event/48000"),
        _ => None,
    }
}

/// The formats a transcoded leg is told about: its codec (rtpmap, fmtp), and its events when
/// the other leg has events too (`events`).
fn only(spec: CodecSpec, events: bool) -> Vec<(u8, &'static str, Option<&'static str>)> {
    let fmtp = (spec.codec == Codec::Opus).then_some("minptime=10;useinbandfec=0");
    let mut v = vec![(spec.pt, spec.codec.rtpmap(), fmtp)];
    if let Some((pt, clock)) = spec.dtmf.filter(|_| events) {
        if let Some(map) = te_rtpmap(clock) {
            v.push((pt, map, Some("0-15")));
        }
    }
    v
}

/// SDP of a call that transcodes (or may), from `sender`, as the receiver must see it: the
/// caller's offer also offers G.711; the callee's answer with G.711 starts the relay's
/// transcoding and reaches the caller with its own codec; afterwards each side's SDP names
/// the other side's codec only.
fn transcode_sdp(
    relay: &mut MediaControl,
    call: &mut MediaCall,
    body: Bytes,
    sender: Leg,
) -> Bytes {
    let rewritten = match (call.transcode, sender) {
        (Transcoding::No, _) => None,
        (Transcoding::Offered { stream, .. }, Leg::A) => sdp::set_formats(
            &body,
            stream,
            &[(0, "PCMU/8000", None), (8, "PCMA/8000", None)],
            true,
        ),
        (Transcoding::Offered { stream, a }, Leg::B) => {
            let formats = sdp::formats_of(&body, stream).unwrap_or_default();
            // Its voice codec: the first format that is not events or comfort noise.
            let first = formats
                .iter()
                .find(|(_, e)| sdp::event_clock(e).is_none() && !e.starts_with("cn/"));
            let dtmf = dtmf_of(&formats);
            match first.and_then(|(pt, e)| Some((Codec::from_encoding(e)?, *pt))) {
                Some((codec @ Codec::G711(_), pt)) => {
                    let b = CodecSpec { codec, pt, dtmf };
                    // Events cross only when both legs have them.
                    let (a, b) = if a.dtmf.is_some() && b.dtmf.is_some() {
                        (a, b)
                    } else {
                        (CodecSpec { dtmf: None, ..a }, CodecSpec { dtmf: None, ..b })
                    };
                    if relay.transcode(call.session, stream, a, b).is_ok() {
                        tracing::info!(caller = ?a.codec, callee = ?b.codec, "no codec in common: the relay transcodes");
                        call.transcode = Transcoding::Active { stream, a, b };
                        sdp::set_formats(&body, stream, &only(a, true), false)
                    } else {
                        None
                    }
                }
                _ => {
                    // The callee took the caller's own codec: nothing to do.
                    call.transcode = Transcoding::No;
                    None
                }
            }
        }
        (Transcoding::Active { stream, b, .. }, Leg::A) => {
            sdp::set_formats(&body, stream, &only(b, true), false)
        }
        (Transcoding::Active { stream, a, .. }, Leg::B) => {
            sdp::set_formats(&body, stream, &only(a, true), false)
        }
    };
    rewritten.unwrap_or(body)
}

/// The id our offers to a browser give the mid header extension.
const OUR_MID_EXTENSION: u8 = 9;

/// A browser on one leg of a call: what the switch told it of itself, and whether its own
/// SDP has come (the relay's WebRTC leg is made then).
#[derive(Debug, Clone)]
pub(crate) struct BrowserLeg {
    pub ufrag: String,
    pub pwd: String,
    pub mids: Vec<String>,
    pub ssrcs: Vec<u32>,
    pub bundle: bool,
    /// The DTLS role our SDP announced; the relay's leg plays exactly this one.
    pub setup: Setup,
    /// The id of the mid header extension our SDP announced (the browser's own when it
    /// offered one).
    pub mid_extension: Option<u8>,
    /// The browser's ICE credentials, once its SDP set up the leg.
    pub remote: Option<(String, String)>,
    /// How many of `mids` the relay's leg knows: the first ones, made with it; a re-offer
    /// that turned video on adds the rest when the browser's SDP names them.
    pub declared: usize,
}

impl BrowserLeg {
    fn new(
        relay: &mut MediaControl,
        mids: Vec<String>,
        bundle: bool,
        setup: Setup,
        mid_extension: Option<u8>,
    ) -> BrowserLeg {
        let (ufrag, pwd) = relay.ice_credentials();
        let ssrcs = mids.iter().map(|_| relay.ssrc()).collect();
        BrowserLeg {
            ufrag,
            pwd,
            mids,
            ssrcs,
            bundle,
            setup,
            mid_extension,
            remote: None,
            declared: 0,
        }
    }

    /// A new stream at index `i` (a re-offer added it): the browser's own mid when its SDP
    /// names one, else the index (or, taken, a letter and the index); a fresh SSRC.
    fn push_stream(&mut self, relay: &mut MediaControl, i: usize, mid: Option<&str>) {
        let mid = match mid.filter(|m| !self.mids.iter().any(|x| x == m)) {
            Some(m) => m.to_string(),
            None if !self.mids.iter().any(|x| *x == i.to_string()) => i.to_string(),
            None => format!("t{i}"),
        };
        self.mids.push(mid);
        self.ssrcs.push(relay.ssrc());
    }

    /// The relay's view of stream `i`, from the browser's SDP `remote`.
    fn stream(&self, i: usize, remote: &WebRtcSdp) -> WebRtcStream {
        let section = remote.sections.get(i);
        WebRtcStream {
            mid: self.mids.get(i).cloned().unwrap_or_else(|| i.to_string()),
            kind: match section.map(|s| s.kind.as_str()) {
                Some("video") => MediaKind::Video,
                _ => MediaKind::Audio,
            },
            ssrc_tx: self.ssrcs.get(i).copied().unwrap_or(0),
            ssrcs_rx: section.map(|s| s.ssrcs.clone()).unwrap_or_default(),
            payloads: section
                .map(|s| {
                    s.payloads
                        .iter()
                        .filter_map(|pt| {
                            Some(Payload {
                                pt: *pt,
                                codec: s.codec(*pt)?,
                                fmtp: s.fmtp(*pt).to_string(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// How SDP toward this browser describes the gateway.
    fn local<'a>(&'a self, fingerprint: &'a str) -> webrtc_sdp::Local<'a> {
        webrtc_sdp::Local {
            ufrag: &self.ufrag,
            pwd: &self.pwd,
            fingerprint,
            setup: self.setup,
            mids: &self.mids,
            bundle: self.bundle,
            ssrcs: &self.ssrcs,
            cname: "tambun",
            mid_extension: self.mid_extension,
        }
    }

    /// The relay's WebRTC leg for the browser's SDP `remote`; `None` when the roles do not
    /// fit (both sides passive or both active: no handshake could happen).
    fn params(&self, remote: &WebRtcSdp) -> Option<WebRtcParams> {
        let dtls_active = match (self.setup, remote.setup) {
            (Setup::Active, Setup::ActPass | Setup::Passive) => true,
            (Setup::Passive, Setup::ActPass | Setup::Active) => false,
            // We offered actpass: the browser chose.
            (Setup::ActPass, Setup::Active) => false,
            (Setup::ActPass, Setup::Passive) => true,
            _ => return None,
        };
        let streams = (0..self.mids.len())
            .map(|i| self.stream(i, remote))
            .collect();
        Some(WebRtcParams {
            local_ufrag: self.ufrag.clone(),
            local_pwd: self.pwd.clone(),
            remote_ufrag: remote.ufrag.clone(),
            remote_pwd: remote.pwd.clone(),
            remote_fingerprint: remote.fingerprint.clone(),
            dtls_active,
            // Used only when both sides name it (the browser's answer may leave it out).
            mid_extension: self.mid_extension.filter(|id| {
                remote
                    .sections
                    .iter()
                    .any(|s| s.extmap(webrtc_sdp::MID_EXTENSION) == Some(*id))
            }),
            streams,
        })
    }
}

/// Media calls by Call-ID, and the reverse index for relay events.
#[derive(Default)]
pub(crate) struct MediaTable {
    pub by_call_id: HashMap<String, MediaCall>,
    pub by_session: HashMap<SessionId, String>,
    pub next_call: u64,
}

/// Does this message carry SDP?
pub(crate) fn has_sdp(msg: &Message) -> bool {
    !msg.body().is_empty()
        && msg
            .header(HeaderName::ContentType)
            .is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/sdp"))
}

/// The contact URI of a message.
pub(crate) fn contact_uri(msg: &Message) -> Option<String> {
    let c = msg.contacts().ok()?;
    Some(c.first()?.addr()?.uri.to_string())
}

/// Sets the sender's remotes and rewrites the body for the receiver. Returns the new message
/// bytes, or `None` when nothing changed (no SDP, or SDP we cannot read: passed through).
///
/// A browser's SDP (WebRTC) sets up its leg in the relay instead of a remote address, and is
/// made plain for a phone ([`webrtc_sdp::to_plain`]); SDP toward a browser is written for it
/// ([`webrtc_sdp::to_webrtc`]) with that leg's credentials, role and the gateway's port.
pub(crate) fn rewrite_for(
    relay: &mut MediaControl,
    call: &mut MediaCall,
    msg: &Message,
    sender: Leg,
) -> Option<Bytes> {
    let body = msg.body();
    let receiver = sender.other();
    let browser = webrtc_sdp::read(body);
    let streams = match &browser {
        Some(w) => w.sections.len(),
        None => sdp::parse(body).ok()?.streams.len(),
    };
    if streams != call.streams.len() {
        return None;
    }
    match &browser {
        Some(w) => browser_sdp(relay, call, w, sender),
        None => plain_remotes(relay, call, body, sender),
    }
    let addr = call.streams.first()?.of(receiver).rtp.ip();
    let ports: Vec<RelayPorts> = call
        .streams
        .iter()
        .map(|s| {
            let leg = s.of(receiver);
            RelayPorts {
                rtp: leg.rtp.port(),
                rtcp: leg.rtcp.port(),
            }
        })
        .collect();
    let plain = match &browser {
        Some(_) => webrtc_sdp::to_plain(body, addr, &ports).ok()?,
        None => sdp::rewrite(body, addr, &ports).ok()?,
    };
    let out = match (&call.browsers[receiver.index()], relay.fingerprint()) {
        (Some(b), Some(fingerprint)) => {
            webrtc_sdp::to_webrtc(&plain, addr, ports[0].rtp, &b.local(fingerprint)).ok()?
        }
        _ if browser.is_none() => transcode_sdp(relay, call, plain, sender),
        _ => plain,
    };
    let mut e = msg.edit();
    e.set_body(out);
    Some(e.finish())
}

/// A phone's SDP: where each stream's RTP and RTCP go until the first packets latch them.
fn plain_remotes(relay: &mut MediaControl, call: &MediaCall, body: &[u8], sender: Leg) {
    let Ok(parsed) = sdp::parse(body) else {
        return;
    };
    for (i, s) in parsed.streams.iter().enumerate() {
        if s.is_disabled() {
            continue;
        }
        if let Some(hz) = s.clock_rate.filter(|hz| *hz != 8000) {
            let _ = relay.set_clock_rate(call.session, i, hz);
        }
        if let Some(ip) = s.address {
            let rtp = SocketAddr::new(ip, s.port);
            let rtcp = if s.rtcp_mux {
                rtp
            } else {
                SocketAddr::new(ip, s.rtcp_port.unwrap_or(s.port.wrapping_add(1)))
            };
            // The session is ours and has this stream: this cannot fail.
            let _ = relay.set_remote(call.session, i, sender, rtp, Some(rtcp));
        }
    }
}

/// A browser's SDP: the first one on its leg (an offer, or its answer to ours) makes the
/// relay's WebRTC leg; later ones (hold, resume) change nothing in the relay.
fn browser_sdp(relay: &mut MediaControl, call: &mut MediaCall, sdp: &WebRtcSdp, sender: Leg) {
    for (i, s) in sdp.sections.iter().enumerate() {
        let hz = s
            .payloads
            .first()
            .and_then(|pt| s.codec(*pt))
            .and_then(|c| c.split('/').nth(1).and_then(|r| r.parse::<u32>().ok()));
        if let Some(hz) = hz.filter(|hz| *hz != 8000 && s.port != 0) {
            let _ = relay.set_clock_rate(call.session, i, hz);
        }
    }
    if relay.fingerprint().is_none() {
        tracing::warn!("a browser's SDP, but the relay has no WebRTC gateway: its media will fail");
        return;
    }
    let leg = call.browsers[sender.index()].get_or_insert_with(|| {
        // The browser offered: we answer as DTLS client, with its mids and BUNDLE.
        let mids = sdp
            .sections
            .iter()
            .enumerate()
            .map(|(i, s)| s.mid.clone().unwrap_or_else(|| i.to_string()))
            .collect();
        let mid_extension = sdp
            .sections
            .first()
            .and_then(|s| s.extmap(webrtc_sdp::MID_EXTENSION));
        BrowserLeg::new(
            relay,
            mids,
            !sdp.bundle.is_empty(),
            Setup::Active,
            mid_extension,
        )
    });
    if leg
        .remote
        .as_ref()
        .is_some_and(|(u, p)| *u == sdp.ufrag && *p == sdp.pwd)
    {
        // The same transport. New sections (a re-offer turned video on) join the leg's
        // bundle, in order, up to the first one the browser left off.
        let new: Vec<WebRtcStream> = (leg.declared..sdp.sections.len().min(leg.mids.len()))
            .take_while(|i| sdp.sections[*i].port != 0 && sdp.sections[*i].kind == "video")
            .map(|i| leg.stream(i, sdp))
            .collect();
        if !new.is_empty() {
            leg.declared += new.len();
            let _ = relay.webrtc_streams(call.session, sender, new);
        }
        return;
    }
    if leg.remote.is_some() {
        tracing::warn!("a browser restarted ICE; not supported: its media may stop");
        return;
    }
    match leg.params(sdp) {
        Some(params) => {
            leg.remote = Some((sdp.ufrag.clone(), sdp.pwd.clone()));
            // The role is settled now: later SDP toward the browser (answers to its re-offers:
            // hold, resume) must say it, never `actpass` again.
            leg.setup = if params.dtls_active {
                Setup::Active
            } else {
                Setup::Passive
            };
            leg.declared = params.streams.len();
            let _ = relay.webrtc(call.session, sender, params);
        }
        None => tracing::warn!(
            ours = leg.setup.as_str(),
            theirs = sdp.setup.as_str(),
            "a browser's DTLS role does not fit ours: no media"
        ),
    }
}

impl Proxy {
    /// The message re-parsed after a rewrite (our own output always parses).
    fn reparse(&self, bytes: Bytes) -> Option<Message> {
        Message::parse_framed(bytes, &UNBOUNDED).ok()
    }

    /// An offer from `sender` (the INVITE, or a re-offer that changes the number of streams):
    /// opens the session and returns the request rewritten for the other leg.
    pub(crate) fn media_offer(&mut self, msg: &Message, sender: Leg) -> Option<Message> {
        let relay = self.media.as_mut()?;
        if !has_sdp(msg) {
            return None;
        }
        let parsed = sdp::parse(msg.body()).ok()?;
        let call_id = msg.call_id().ok()?.to_string();
        let n = parsed.streams.len();
        if n == 0 {
            return None;
        }
        // A browser always muxes, but the phone on the other side may not: its RTCP needs its
        // own port (the browser's leg uses its first RTP socket whatever the session does).
        let rtcp_mux = !webrtc_sdp::is_webrtc(msg.body())
            && parsed.streams.iter().all(|s| s.rtcp_mux || s.is_disabled());
        if let Some(old) = self.media_calls.by_call_id.get(&call_id) {
            if old.streams.len() == n {
                return None; // same shape: handled as an in-dialog rewrite
            }
            if n > old.streams.len() && old.browsers.iter().any(Option::is_some) {
                return self.media_grow(msg, sender, &call_id, n);
            }
            // Its ports come back when the relay reports it closed.
            let _ = relay.close(old.session);
            self.media_calls.by_session.remove(&old.session);
        }
        self.media_calls.next_call += 1;
        let (session, streams) = match relay.open(self.media_calls.next_call, n, rtcp_mux) {
            Ok(s) => (s.id, s.streams),
            Err(e) => {
                tracing::warn!(%call_id, error = %e, "no relay ports: media goes direct");
                return None;
            }
        };
        let from_tag = msg.from_tag().unwrap_or("").to_string();
        let previous = self.media_calls.by_call_id.remove(&call_id);
        let call = match previous {
            Some(p) => MediaCall {
                session,
                streams,
                ..p
            },
            None => MediaCall {
                session,
                streams,
                caller_tag: from_tag,
                caller_from: msg.header(HeaderName::From).unwrap_or("").to_string(),
                caller_contact: contact_uri(msg),
                callee_to: None,
                callee_contact: None,
                cseq_a: msg.cseq().map(|c| c.seq).unwrap_or(1),
                cseq_b: 0,
                dialog_token: None,
                browsers: [None, None],
                transcode: if webrtc_sdp::is_webrtc(msg.body()) {
                    Transcoding::No
                } else {
                    transcoding_for(msg.body())
                },
            },
        };
        let mut call = call;
        let out = rewrite_for(relay, &mut call, msg, sender);
        self.media_calls.by_session.insert(session, call_id.clone());
        self.media_calls.by_call_id.insert(call_id, call);
        out.and_then(|b| self.reparse(b))
    }

    /// A re-offer that adds streams to a call with a browser leg (video turned on): the
    /// session grows in place, because a browser's BUNDLE transport (ICE, DTLS) cannot move
    /// to new ports without an ICE restart. Each browser leg gets the new streams' mids and
    /// SSRCs for the SDP written to it; the relay's leg learns them from the browser's SDP.
    fn media_grow(
        &mut self,
        msg: &Message,
        sender: Leg,
        call_id: &str,
        n: usize,
    ) -> Option<Message> {
        let relay = self.media.as_mut()?;
        let call = self.media_calls.by_call_id.get_mut(call_id)?;
        let added = n.checked_sub(call.streams.len())?;
        let ports = match relay.grow(call.session, added) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%call_id, error = %e, "cannot add streams to the call");
                return None;
            }
        };
        call.streams.extend(ports);
        let theirs = webrtc_sdp::read(msg.body());
        for side in [Leg::A, Leg::B] {
            let Some(b) = call.browsers[side.index()].as_mut() else {
                continue;
            };
            for i in b.mids.len()..n {
                let mid = theirs
                    .as_ref()
                    .filter(|_| side == sender)
                    .and_then(|w| w.sections.get(i)?.mid.as_deref());
                b.push_stream(relay, i, mid);
            }
        }
        let out = rewrite_for(relay, call, msg, sender)?;
        self.reparse(out)
    }

    /// Which leg sent an in-dialog request of a media call.
    fn sender_of(&self, msg: &Message) -> Option<Leg> {
        let call = self.media_calls.by_call_id.get(msg.call_id().ok()?)?;
        let tag = msg.from_tag()?;
        Some(if tag == call.caller_tag {
            Leg::A
        } else {
            Leg::B
        })
    }

    /// An in-dialog request (re-INVITE, UPDATE, ACK with the answer, PRACK …): SDP is pointed
    /// at the relay; CSeqs are tracked for the BYEs of a media timeout.
    pub(crate) fn media_in_dialog(&mut self, msg: &Message) -> Option<Message> {
        let sender = self.sender_of(msg)?;
        let call_id = msg.call_id().ok()?.to_string();
        if let (Some(call), Ok(cseq)) = (self.media_calls.by_call_id.get_mut(&call_id), msg.cseq())
        {
            match sender {
                Leg::A => call.cseq_a = call.cseq_a.max(cseq.seq),
                Leg::B => call.cseq_b = call.cseq_b.max(cseq.seq),
            }
        }
        if !has_sdp(msg) {
            return None;
        }
        if let Some(reopened) = self.media_offer(msg, sender) {
            return Some(reopened);
        }
        let relay = self.media.as_mut()?;
        let call = self.media_calls.by_call_id.get_mut(&call_id)?;
        let out = rewrite_for(relay, call, msg, sender)?;
        self.reparse(out)
    }

    /// A re-offer that changes the number of streams of a call with a browser leg in a way
    /// the switch cannot follow: fewer m-lines (RFC 3264 §8 forbids it; dropping video is
    /// port 0, which works), or more when the relay has no ports for them now. Answered 488
    /// by the caller of this; the call goes on as it was.
    pub(crate) fn media_reshape_unsupported(&self, msg: &Message) -> Option<&'static str> {
        if self.media.is_none() || !has_sdp(msg) {
            return None;
        }
        let call = msg
            .call_id()
            .ok()
            .and_then(|c| self.media_calls.by_call_id.get(c))?;
        if call.browsers.iter().all(Option::is_none) {
            return None;
        }
        let streams = match webrtc_sdp::read(msg.body()) {
            Some(w) => w.sections.len(),
            None => match sdp::parse(msg.body()) {
                Ok(s) => s.streams.len(),
                Err(_) => return None,
            },
        };
        match streams.cmp(&call.streams.len()) {
            std::cmp::Ordering::Equal => None,
            std::cmp::Ordering::Less => {
                Some("an offer may not remove m-lines (RFC 3264 section 8): set the port to 0")
            }
            std::cmp::Ordering::Greater => self
                .media
                .as_ref()
                .is_none_or(|relay| !relay.can_grow(call.session, streams - call.streams.len()))
                .then_some("no relay ports for the added media now; try again later"),
        }
    }

    /// An INVITE with SDP about to go to a browser (a WebSocket flow) as leg B: the first
    /// such branch makes B a browser leg (we offer `actpass`, one BUNDLE of every stream) and
    /// every such branch gets the SDP written for a browser. (A call forked to a browser and
    /// a desk phone at once keeps the kind of its first branch: docs/architecture.md.)
    pub(crate) fn media_toward_browser(&mut self, msg: &Message) -> Option<Message> {
        if msg.to_tag().is_some() || !has_sdp(msg) {
            return None;
        }
        let relay = self.media.as_mut()?;
        relay.fingerprint()?;
        let call_id = msg.call_id().ok()?.to_string();
        let call = self.media_calls.by_call_id.get_mut(&call_id)?;
        let n = call.streams.len();
        if call.browsers[Leg::B.index()].is_none() {
            let _ = relay.browser_pending(call.session, Leg::B);
            let mids = (0..n).map(|i| i.to_string()).collect();
            call.browsers[Leg::B.index()] = Some(BrowserLeg::new(
                relay,
                mids,
                true,
                Setup::ActPass,
                Some(OUR_MID_EXTENSION),
            ));
        }
        let b = call.browsers[Leg::B.index()].as_ref()?;
        let ports = call.streams.first()?.of(Leg::B);
        let body = webrtc_sdp::to_webrtc(
            msg.body(),
            ports.rtp.ip(),
            ports.rtp.port(),
            &b.local(relay.fingerprint()?),
        )
        .ok()?;
        let mut e = msg.edit();
        e.set_body(body);
        self.reparse(e.finish())
    }

    /// A response of proxied request `id` on its way upstream: its SDP comes from the leg that
    /// answered. The 2xx of the initial INVITE also tells how to reach the callee.
    pub(crate) fn media_answer(&mut self, id: u64, msg: &Message, status: u16) -> Option<Message> {
        self.media.as_ref()?;
        let call_id = msg.call_id().ok()?.to_string();
        let p = self.by_id.get(&id)?;
        let initial = p.call.is_some();
        let requester = if initial {
            Leg::A
        } else {
            self.sender_of(&p.request)?
        };
        if initial && !self.media_calls.by_call_id.contains_key(&call_id) {
            // A late offer (RFC 3264 §4 allows an INVITE without SDP): the callee offers in
            // its 183/200 and the caller answers in the ACK (`media_in_dialog`).
            let caller_contact = contact_uri(&p.request);
            let out = self.media_offer(msg, Leg::B)?;
            let call = self.media_calls.by_call_id.get_mut(&call_id)?;
            call.caller_contact = caller_contact;
            if (200..300).contains(&status) {
                call.callee_contact = contact_uri(msg);
                call.callee_to = msg.header(HeaderName::To).map(str::to_string);
                call.dialog_token = super::token::token_in(msg.values(HeaderName::RecordRoute));
            }
            return Some(out);
        }
        let call = self.media_calls.by_call_id.get_mut(&call_id)?;
        if initial && (200..300).contains(&status) && call.callee_contact.is_none() {
            call.callee_contact = contact_uri(msg);
            call.callee_to = msg.header(HeaderName::To).map(str::to_string);
            call.dialog_token = super::token::token_in(msg.values(HeaderName::RecordRoute));
        }
        if !has_sdp(msg) {
            return None;
        }
        let out = rewrite_for(self.media.as_mut()?, call, msg, requester.other())?;
        self.reparse(out)
    }

    /// The call is over: its relay session is asked to close (its ports are freed, and its
    /// counters reported, when the relay says it is closed). The session, if there is one to
    /// wait for.
    pub(crate) fn media_close(&mut self, call_id: &str) -> Option<SessionId> {
        let call = self.media_calls.by_call_id.remove(call_id)?;
        self.media_calls.by_session.remove(&call.session);
        // An unknown session is one whose open failed: no counters will come.
        self.media.as_mut()?.close(call.session).ok()?;
        Some(call.session)
    }

    /// An event of the relay about one of its sessions' ports (closed, failed to open): the
    /// control plane takes back the ports.
    pub(crate) fn media_settled(&mut self, event: &crate::media::MediaEvent) {
        if let Some(control) = self.media.as_mut() {
            control.handle_event(event);
        }
        if let crate::media::MediaEvent::OpenFailed { session, error, .. } = event {
            let call_id = self.media_calls.by_session.get(session);
            tracing::warn!(?call_id, %error, "the relay could not open a call's ports: its media is lost");
        }
    }

    /// The next command for the relay.
    pub(crate) fn poll_media_command(&mut self) -> Option<crate::media::MediaCommand> {
        self.media.as_mut()?.poll_command()
    }

    /// The relay saw no RTP in a session for its inactivity time: the phones vanished or
    /// the network broke. Both legs get a BYE, and the call record says `media-timeout`.
    pub fn handle_media_inactive(
        &mut self,
        cx: &mut Ctx<'_>,
        session: SessionId,
        now: crate::types::Now,
    ) {
        if self.room_inactive(cx, session, now) {
            return;
        }
        let Some(call_id) = self.media_calls.by_session.get(&session).cloned() else {
            return;
        };
        if !self.records.is_answered(&call_id) {
            // Ringing without early media is silence too; the ring timeout handles it.
            return;
        }
        tracing::info!(%call_id, "no media for the inactivity time: ending the call");
        let reason = "SIP;cause=408;text=\"media timeout\"";
        self.bye_both_ways(cx, &call_id, reason, now);
        self.records.media_timeout(&call_id, now.unix_ms);
    }

    /// The switch ends answered call `call_id` itself: a BYE to each party, to where the
    /// dialog token says it is, with `reason` (a `Reason` header value). Returns whether the
    /// BYEs went out (only calls whose media is anchored have what they need).
    pub(crate) fn bye_both_ways(
        &mut self,
        cx: &mut Ctx<'_>,
        call_id: &str,
        reason: &str,
        now: crate::types::Now,
    ) -> bool {
        let mut sent = false;
        if let Some(call) = self.media_calls.by_call_id.get(call_id) {
            // The parties as the dialog token records them: the BYEs go there and nowhere
            // else (a contact is what a phone said, not where the switch reached it).
            let parties = call.dialog_token.as_deref().and_then(|t| {
                self.dialog_key
                    .open(t, call_id, Some(&call.caller_tag), None)
                    .ok()
            });
            let Some(parties) = parties else {
                tracing::warn!(%call_id, "ending a call without a dialog token: no BYE sent");
                return false;
            };
            let to = call.callee_to.clone();
            let mut byes = Vec::new();
            if let (Some(uri), Some(to)) = (call.callee_contact.clone(), to.clone()) {
                let peer = self.party_peer(cx, &parties.receiver, &uri);
                // (plus what a carrier's challenges moved the caller's numbers by)
                let shift = self
                    .cseq_shifts
                    .get(&(call_id.to_owned(), call.caller_tag.clone()))
                    .copied()
                    .unwrap_or(0);
                byes.push((
                    uri,
                    peer,
                    call.caller_from.clone(),
                    to.clone(),
                    call.cseq_a + shift + 1,
                ));
            }
            if let (Some(uri), Some(to)) = (call.caller_contact.clone(), to) {
                let peer = self.party_peer(cx, &parties.sender, &uri);
                let cseq = call.cseq_b.max(100) + 1;
                byes.push((uri, peer, to, call.caller_from.clone(), cseq));
            }
            for (i, (uri, peer, from, to, cseq)) in byes.into_iter().enumerate() {
                self.send_own_bye(cx, call_id, &uri, peer, &from, &to, cseq, i, reason, now);
                sent = true;
            }
        }
        sent
    }

    #[allow(clippy::too_many_arguments)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_own_bye(
        &mut self,
        cx: &mut Ctx<'_>,
        call_id: &str,
        uri: &str,
        peer: crate::sip::transaction::Peer,
        from: &str,
        to: &str,
        cseq: u32,
        n: usize,
        reason: &str,
        now: crate::types::Now,
    ) {
        use crate::sip::transaction::{TransactionKey, TxMethod};
        let Some(local) = cx.net.local_of(&peer) else {
            return;
        };
        let branch = format!("z9hG4bKtbbye{:x}{n}", self.media_calls.next_call);
        self.media_calls.next_call += 1;
        let text = format!(
            "BYE {uri} SIP/2.0\r\nVia: SIP/2.0/{} {local};branch={branch};rport\r\n\
Max-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} BYE\r\n\
Reason: {reason}\r\nContent-Length: 0\r\n\r\n",
            peer.transport.via_token()
        );
        let key = TransactionKey::new(branch, &local.to_string(), TxMethod::Other("BYE".into()));
        let t = self.client.start(key, Bytes::from(text), peer, now.instant);
        cx.out.push_back(t);
    }
}

/// A call record's media counters from the relay's final counters of its session (`None`
/// when the relay had none: the session never opened).
pub(crate) fn totals(stats: &[crate::media::StreamStats]) -> Option<crate::cdr::MediaTotals> {
    if stats.is_empty() {
        return None;
    }
    let mut t = crate::cdr::MediaTotals::default();
    for s in stats {
        match s.direction {
            crate::media::Direction::AToB => {
                t.packets_a2b += s.packets;
                t.lost_a2b += s.lost;
            }
            crate::media::Direction::BToA => {
                t.packets_b2a += s.packets;
                t.lost_b2a += s.lost;
            }
        }
        t.jitter_us_max = t.jitter_us_max.max((s.jitter_ms * 1000.0) as u64);
    }
    Some(t)
}
