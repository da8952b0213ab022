//! A WebRTC leg of the relay: one browser's ICE-lite + DTLS-SRTP + SRTP endpoint, on
//! str0m's sans-IO [`Rtc`] in RTP mode, configured through str0m's Direct API from the
//! parameters the SIP core decided and wrote into its own SDP ([`LegParams`]). It hands plain
//! RTP to and from the phone leg, which the relay already forwards as plain RTP/AVP.
//!
//! Owns: the leg's ICE (lite: answers the browser's checks on the one host candidate, the
//! relay socket's address, and learns the browser's address from them), its DTLS role (exactly
//! [`LegParams::dtls_active`], never the other), its SRTP contexts, RTCP towards the browser
//! (receiver/sender reports, keyframe requests) and the mapping between the browser's streams
//! and plain RTP. [`Identity`] owns the process-wide DTLS certificate.
//!
//! Does not: touch a socket or the clock (datagrams, RTP and `now` come in through
//! `handle_*`/[`WebRtcLeg::send_rtp`], datagrams to send and the next deadline go out through
//! [`WebRtcLeg::poll`]), write SDP, lock, or spawn. One leg is driven by one thread.
//!
//! Plain RTP out of the leg ([`LegOutput::Rtp`]) keeps the browser's SSRC, payload type,
//! sequence number, timestamp, marker and CSRCs, and drops its header extensions (mid, audio
//! level, ...), which the phone does not know. Plain RTP into the leg ([`WebRtcLeg::send_rtp`])
//! keeps the same fields but takes the leg's tx SSRC of the stream its payload type belongs to;
//! the phone's header extensions and padding are dropped.
//!
//! Per packet, str0m allocates (the payload `Arc<[u8]>`, the encrypted datagram's `Vec`) and
//! runs its timers on every input; the leg adds no allocation of its own (the plain RTP it
//! hands out is written into one reused buffer) and looks streams up by payload type in a
//! fixed table.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::config::{DtlsCert, Fingerprint};
use str0m::crypto::CryptoProvider;
use str0m::format::{Codec, FormatParams};
use str0m::ice::IceCreds;
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind as Str0mKind, Mid};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{Extension, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig, RtcError};

pub use str0m::crypto::dtls::SrtpProfile;

/// How often str0m reports loss and RTT (from RTCP) for [`WebRtcLeg::stats`].
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// The largest plain RTP packet handed out (a UDP datagram on Ethernet, with room to spare).
const MAX_RTP: usize = 1500;
/// No stream for this payload type.
const NO_STREAM: u8 = u8::MAX;
/// The dynamic payload types (RFC 3551 96–127, and 35–63, which browsers use when those run
/// out) a stream added after the leg was made may use: see [`WebRtcLeg::add_stream`].
const DYNAMIC_PTS: [std::ops::RangeInclusive<u8>; 2] = [96..=127, 35..=63];

/// Errors of the WebRTC leg, by layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    /// The parameters the core gave cannot configure a leg.
    #[error("webrtc leg config: {0}")]
    Config(String),
    /// The DTLS certificate could not be made.
    #[error("webrtc identity: {0}")]
    Identity(String),
    /// A received datagram is none of STUN, DTLS or SRTP.
    #[error("webrtc datagram: {0}")]
    Datagram(String),
    /// ICE failed or the browser's checks stopped.
    #[error("webrtc ice: {0}")]
    Ice(String),
    /// The DTLS handshake failed (a wrong fingerprint ends here).
    #[error("webrtc dtls: {0}")]
    Dtls(String),
    /// A plain RTP packet from the phone leg could not be sent.
    #[error("webrtc rtp: {0}")]
    Rtp(String),
    /// Anything else str0m reported.
    #[error("webrtc: {0}")]
    Rtc(String),
}

impl From<RtcError> for LegError {
    fn from(e: RtcError) -> LegError {
        let text = e.to_string();
        match e {
            RtcError::Dtls(_) | RtcError::RemoteSdp(_) => LegError::Dtls(text),
            RtcError::Ice(_) => LegError::Ice(text),
            RtcError::Net(_) => LegError::Datagram(text),
            _ => LegError::Rtc(text),
        }
    }
}

/// The process-wide DTLS certificate and crypto backend, made once at start and shared by
/// every leg (cloning is an `Arc` clone), so the core writes `a=fingerprint` from
/// [`Identity::fingerprint`] without asking the media plane.
#[derive(Clone)]
pub struct Identity(Arc<IdentityInner>);

struct IdentityInner {
    provider: Arc<CryptoProvider>,
    cert: DtlsCert,
    fingerprint: String,
}

impl Identity {
    /// A fresh self-signed certificate from the compiled-in crypto backend (aws-lc-rs).
    pub fn generate() -> Result<Identity, LegError> {
        Identity::with_provider(str0m::crypto::from_feature_flags())
    }

    /// A fresh self-signed certificate from the given backend.
    pub fn with_provider(provider: CryptoProvider) -> Result<Identity, LegError> {
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| LegError::Identity("the backend cannot make certificates".into()))?;
        let digest = provider.sha256_provider.sha256(&cert.certificate);
        let fingerprint = format!("sha-256 {}", hex_colons(&digest));
        Ok(Identity(Arc::new(IdentityInner {
            provider: Arc::new(provider),
            cert,
            fingerprint,
        })))
    }

    /// The certificate's fingerprint as SDP writes it after `a=fingerprint:`
    /// (`sha-256 AB:CD:...`).
    pub fn fingerprint(&self) -> &str {
        &self.0.fingerprint
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Identity")
            .field(&self.0.fingerprint)
            .finish()
    }
}

fn hex_colons(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// The browser's certificate fingerprint, parsed from the value of its SDP
/// `a=fingerprint:` (`sha-256 AB:CD:...`; `sha-1` is accepted too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DtlsFingerprint {
    hash: &'static str,
    bytes: Vec<u8>,
}

impl FromStr for DtlsFingerprint {
    type Err = LegError;

    fn from_str(s: &str) -> Result<DtlsFingerprint, LegError> {
        let bad = |why: &str| LegError::Config(format!("fingerprint {s:?}: {why}"));
        let (hash, hex) = s
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("no hash name"))?;
        let (hash, len) = match hash.to_ascii_lowercase().as_str() {
            "sha-256" => ("sha-256", 32),
            "sha-1" => ("sha-1", 20),
            _ => return Err(bad("hash must be sha-256 or sha-1")),
        };
        let bytes = hex
            .trim()
            .split(':')
            .map(|h| match h.len() {
                2 => u8::from_str_radix(h, 16).map_err(|_| bad("not hex")),
                _ => Err(bad("not two hex digits per byte")),
            })
            .collect::<Result<Vec<u8>, LegError>>()?;
        if bytes.len() != len {
            return Err(bad("wrong length"));
        }
        Ok(DtlsFingerprint { hash, bytes })
    }
}

/// The kind of a media stream (an m-line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Audio,
    Video,
}

/// A payload type the SDP negotiated for a stream (one `a=rtpmap`, with its `a=fmtp`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadSpec {
    pub pt: u8,
    /// The rtpmap encoding name: `PCMU`, `PCMA`, `G722`, `opus`, `telephone-event`, `CN`,
    /// `VP8`, `VP9`, `H264`, `AV1` (case-insensitive).
    pub codec: String,
    pub clock_rate: u32,
    /// Audio channels (`opus/48000/2`), `None` for the rtpmap default.
    pub channels: Option<u8>,
    /// The `a=fmtp` parameters after the payload type, empty if none.
    pub fmtp: String,
}

/// One media stream of the leg: one m-line of the browser's SDP, all BUNDLEd on one socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The `a=mid` of the m-line (1 to 16 ASCII letters or digits).
    pub mid: String,
    pub kind: MediaKind,
    /// The negotiated payload types. Payload types are unique across the bundle; one is how a
    /// plain RTP packet from the phone finds its stream.
    pub payloads: Vec<PayloadSpec>,
    /// The SSRC the leg sends to the browser with (the core writes it as `a=ssrc:`).
    pub ssrc_tx: u32,
    /// The browser's SSRC from its `a=ssrc:` line, if it announced one. Without it the
    /// browser's stream is learned from the mid header extension (needs
    /// [`HeaderExtensions::mid`]).
    pub ssrc_rx: Option<u32>,
}

/// The RTP header extension ids the SDP negotiated (`a=extmap:ID URI`), `None` for those not
/// negotiated. Applied to every stream of the bundle.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderExtensions {
    /// `urn:ietf:params:rtp-hdrext:sdes:mid`: how a browser stream without `a=ssrc:` is known.
    pub mid: Option<u8>,
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level`.
    pub audio_level: Option<u8>,
}

/// What the SIP core decided for one WebRTC leg, the same values it wrote into (or read
/// from) the SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegParams {
    /// Our `a=ice-ufrag` / `a=ice-pwd`.
    pub local_ufrag: String,
    pub local_pwd: String,
    /// The browser's `a=ice-ufrag` / `a=ice-pwd`.
    pub remote_ufrag: String,
    pub remote_pwd: String,
    /// The browser's `a=fingerprint`.
    pub remote_fingerprint: DtlsFingerprint,
    /// `true`: we wrote `a=setup:active` and are the DTLS client; `false`: `a=setup:passive`,
    /// we are the server and never send a ClientHello.
    pub dtls_active: bool,
    /// The relay socket's address: the leg's one host candidate.
    pub local_addr: SocketAddr,
    pub extensions: HeaderExtensions,
    /// The m-lines, in SDP order; outputs name a stream by its index here.
    pub streams: Vec<StreamSpec>,
}

/// What a leg has for its driver, from [`WebRtcLeg::poll`].
#[derive(Debug, PartialEq, Eq)]
pub enum LegOutput<'a> {
    /// Send this datagram from the leg's socket to `dst`.
    Transmit { dst: SocketAddr, data: &'a [u8] },
    /// A plain RTP packet from the browser, decrypted, for the phone leg of stream `stream`.
    Rtp { stream: usize, packet: &'a [u8] },
    /// The browser asks for a keyframe on stream `stream`: send a PLI/FIR to the phone.
    KeyframeRequest { stream: usize, fir: bool },
    /// ICE and DTLS are up: media flows.
    Connected,
    /// The browser's ICE checks stopped (consent lost); it may come back. The core decides
    /// with its own timeout whether the call is over.
    Disconnected,
    /// The leg is over: closed by the browser (`None`) or failed (a DTLS failure, such as a
    /// wrong fingerprint). Nothing more comes out of it.
    Closed(Option<LegError>),
    /// Call [`WebRtcLeg::handle_timeout`] at this instant. Always the last output of a poll
    /// round: `poll` returns `None` after it until the next input.
    Timeout(Instant),
}

/// The DTLS state of a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsState {
    /// Waiting for ICE or for the handshake to finish.
    Connecting,
    Connected,
    Failed,
    Closed,
}

/// Counters of a leg. `rtp_*` count plain RTP (to/from the phone leg), `wire_*` datagrams on
/// the socket (STUN, DTLS, SRTP, SRTCP).
#[derive(Debug, Clone, PartialEq)]
pub struct LegStats {
    pub dtls: DtlsState,
    /// The SRTP profile the DTLS handshake chose (DTLS 1.2 ServerHello), once known.
    pub srtp_profile: Option<SrtpProfile>,
    /// RTP packets/bytes (header and payload) sent to the browser.
    pub rtp_tx_packets: u64,
    pub rtp_tx_bytes: u64,
    /// RTP packets/bytes received from the browser and handed out.
    pub rtp_rx_packets: u64,
    pub rtp_rx_bytes: u64,
    /// Plain RTP from the phone not sent: before the leg was connected, unknown payload type
    /// or not RTP.
    pub rtp_tx_dropped: u64,
    pub wire_rx_datagrams: u64,
    pub wire_rx_bytes: u64,
    pub wire_tx_datagrams: u64,
    pub wire_tx_bytes: u64,
    /// Datagrams that were not STUN, DTLS or SRTP, or that str0m rejected.
    pub wire_rx_rejected: u64,
    /// Fraction lost of what we send, from the browser's receiver reports.
    pub loss_tx: Option<f32>,
    /// Fraction lost of what the browser sends, by our receive counters.
    pub loss_rx: Option<f32>,
    /// Round trip time from RTCP.
    pub rtt: Option<Duration>,
}

struct StreamState {
    mid: Mid,
    ssrc_tx: Ssrc,
    /// The extended (ROC-carrying) sequence number of the last packet sent, for SRTP's index.
    tx_seq: Option<u64>,
}

/// What `poll` found, before it lends a buffer out (the borrow is made after the loop).
enum Ready {
    Transmit,
    Rtp(usize),
    Other(LegOutput<'static>),
}

/// One browser's WebRTC endpoint. See the module docs.
pub struct WebRtcLeg {
    rtc: Rtc,
    streams: Vec<StreamState>,
    /// Stream index by payload type (`NO_STREAM`: none); the first, where streams share one.
    by_pt: [u8; 128],
    /// The SSRC each stream's packets came with (learnt from the mid extension).
    rx_ssrc: Vec<Option<u32>>,
    dtls_active: bool,
    dtls: DtlsState,
    connected: bool,
    /// A `Timeout` ended the last poll round and no input came since.
    drained: bool,
    /// Closed was reported; the leg is inert.
    closed: bool,
    /// Outputs found outside `poll` (e.g. a failure in `handle_*`), handed out first.
    queued: VecDeque<LegOutput<'static>>,
    transmit: Option<Transmit>,
    rtp_buf: Vec<u8>,
    stats: LegStats,
}

impl WebRtcLeg {
    /// A leg configured from `params`, with `identity`'s certificate. If `dtls_active`, the
    /// ClientHello goes out as soon as the browser's first ICE check has been answered.
    pub fn new(
        params: LegParams,
        identity: &Identity,
        now: Instant,
    ) -> Result<WebRtcLeg, LegError> {
        let bad = |why: String| LegError::Config(why);
        if params.streams.is_empty() {
            return Err(bad("no streams".into()));
        }
        for (what, v) in [
            ("local ufrag", &params.local_ufrag),
            ("local pwd", &params.local_pwd),
            ("remote ufrag", &params.remote_ufrag),
            ("remote pwd", &params.remote_pwd),
        ] {
            if v.is_empty() {
                return Err(bad(format!("empty {what}")));
            }
        }

        let mut cfg = RtcConfig::new()
            .set_crypto_provider(identity.0.provider.clone())
            .set_dtls_cert(identity.0.cert.clone())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_local_ice_credentials(IceCreds {
                ufrag: params.local_ufrag.clone(),
                pass: params.local_pwd.clone(),
            })
            .set_stats_interval(Some(STATS_INTERVAL))
            .clear_codecs()
            .clear_extension_map();
        let exts = params.extensions;
        for (id, ext) in [
            (exts.mid, Extension::RtpMid),
            (exts.audio_level, Extension::AudioLevel),
        ] {
            if let Some(id) = id {
                if !(1..=14).contains(&id) {
                    return Err(bad(format!("extmap id {id} not in 1..=14")));
                }
                cfg = cfg.set_extension(id, ext);
            }
        }

        let mut by_pt = [NO_STREAM; 128];
        let mut mids: Vec<&str> = Vec::with_capacity(params.streams.len());
        for (i, s) in params.streams.iter().enumerate() {
            if s.mid.is_empty()
                || s.mid.len() > 16
                || !s.mid.bytes().all(|b| b.is_ascii_alphanumeric())
            {
                return Err(bad(format!("mid {:?}: 1 to 16 letters or digits", s.mid)));
            }
            if mids.contains(&s.mid.as_str()) {
                return Err(bad(format!("mid {:?} twice", s.mid)));
            }
            mids.push(&s.mid);
            if s.payloads.is_empty() {
                return Err(bad(format!("stream {:?} has no payload types", s.mid)));
            }
            if s.ssrc_rx.is_none() && exts.mid.is_none() {
                return Err(bad(format!(
                    "stream {:?}: without a=ssrc from the browser, the mid extension is needed",
                    s.mid
                )));
            }
            for p in &s.payloads {
                if p.pt > 127 {
                    return Err(bad(format!("payload type {} invalid", p.pt)));
                }
                if by_pt[p.pt as usize] != NO_STREAM {
                    // BUNDLE: m-lines of one kind share payload types (a video room's
                    // receive-only lines); packets are told apart by mid or SSRC, the
                    // table keeps the first stream and the codec once.
                    if s.kind != params.streams[by_pt[p.pt as usize] as usize].kind {
                        return Err(bad(format!(
                            "payload type {} used by an audio and a video stream",
                            p.pt
                        )));
                    }
                    continue;
                }
                by_pt[p.pt as usize] = i as u8;
                let codec = Codec::from(p.codec.as_str());
                if codec == Codec::Unknown {
                    return Err(bad(format!("codec {:?} unknown to str0m", p.codec)));
                }
                let rate = NonZeroU32::new(p.clock_rate)
                    .ok_or_else(|| bad(format!("payload type {}: clock rate 0", p.pt)))?;
                cfg.codec_config().add_config(
                    p.pt.into(),
                    None,
                    codec,
                    Frequency::from_nonzero(rate),
                    p.channels,
                    FormatParams::parse_line(&p.fmtp),
                );
            }
        }
        if params.streams.len() >= NO_STREAM as usize {
            return Err(bad("too many streams".into()));
        }
        // str0m's codec table is fixed at `build`, and it drops RTP whose payload type it does
        // not know. A video stream added later (a re-INVITE that turns video on) brings
        // payload types nobody knows yet, so every dynamic payload type still free is known
        // from the start as 90 kHz video (in RTP mode str0m does not depacketize, it needs
        // the clock). The negotiated ones come first in the table, so a packet of theirs is
        // found without scanning these.
        for pt in DYNAMIC_PTS.into_iter().flatten() {
            if by_pt[pt as usize] == NO_STREAM {
                cfg.codec_config().add_config(
                    pt.into(),
                    None,
                    Codec::Vp8,
                    Frequency::NINETY_KHZ,
                    None,
                    FormatParams::default(),
                );
            }
        }

        // `build` only panics when the certificate does not load; ours came from the backend.
        let mut rtc = cfg.build(now);
        let candidate = Candidate::host(params.local_addr, "udp")
            .map_err(|e| bad(format!("local address {}: {e}", params.local_addr)))?;
        rtc.add_local_candidate(candidate);

        let mut streams = Vec::with_capacity(params.streams.len());
        {
            let mut api = rtc.direct_api();
            api.set_ice_controlling(false);
            api.set_remote_ice_credentials(IceCreds {
                ufrag: params.remote_ufrag.clone(),
                pass: params.remote_pwd.clone(),
            });
            api.set_remote_fingerprint(Fingerprint {
                hash_func: params.remote_fingerprint.hash.to_string(),
                bytes: params.remote_fingerprint.bytes.clone(),
            });
            for s in &params.streams {
                let mid = Mid::from(s.mid.as_str());
                let kind = match s.kind {
                    MediaKind::Audio => Str0mKind::Audio,
                    MediaKind::Video => Str0mKind::Video,
                };
                // Media is declared before its streams, so neither call below panics.
                api.declare_media(mid, kind);
                api.declare_stream_tx(s.ssrc_tx.into(), None, mid, None);
                if let Some(rx) = s.ssrc_rx {
                    api.expect_stream_rx(rx.into(), None, mid, None);
                }
                streams.push(StreamState {
                    mid,
                    ssrc_tx: s.ssrc_tx.into(),
                    tx_seq: None,
                });
            }
            api.start_dtls(params.dtls_active)?;
        }
        rtc.handle_input(Input::Timeout(now))?;

        Ok(WebRtcLeg {
            rtc,
            rx_ssrc: vec![None; streams.len()],
            streams,
            by_pt,
            dtls_active: params.dtls_active,
            dtls: DtlsState::Connecting,
            connected: false,
            drained: false,
            closed: false,
            queued: VecDeque::new(),
            transmit: None,
            rtp_buf: Vec::with_capacity(MAX_RTP),
            stats: LegStats {
                dtls: DtlsState::Connecting,
                srtp_profile: None,
                rtp_tx_packets: 0,
                rtp_tx_bytes: 0,
                rtp_rx_packets: 0,
                rtp_rx_bytes: 0,
                rtp_tx_dropped: 0,
                wire_rx_datagrams: 0,
                wire_rx_bytes: 0,
                wire_tx_datagrams: 0,
                wire_tx_bytes: 0,
                wire_rx_rejected: 0,
                loss_tx: None,
                loss_rx: None,
                rtt: None,
            },
        })
    }

    /// A datagram received on the leg's socket from `src` (STUN, DTLS and SRTP/SRTCP share
    /// it); `dst` is the socket's address. Datagrams that are none of these, or that str0m
    /// rejects, are counted and reported as an error; the leg carries on.
    pub fn handle_datagram(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        data: &[u8],
        now: Instant,
    ) -> Result<(), LegError> {
        if self.closed {
            return Ok(());
        }
        self.drained = false;
        self.stats.wire_rx_datagrams += 1;
        self.stats.wire_rx_bytes += data.len() as u64;
        if self.dtls_active && !self.connected && self.stats.srtp_profile.is_none() {
            self.stats.srtp_profile = server_hello_srtp_profile(data);
        }
        let receive = match Receive::new(Protocol::Udp, src, dst, data) {
            Ok(r) => r,
            Err(e) => {
                self.stats.wire_rx_rejected += 1;
                return Err(LegError::Datagram(e.to_string()));
            }
        };
        self.input(Input::Receive(now, receive))
    }

    /// Time passed: call at (or after) the last [`LegOutput::Timeout`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), LegError> {
        if self.closed {
            return Ok(());
        }
        self.drained = false;
        self.input(Input::Timeout(now))
    }

    fn input(&mut self, input: Input) -> Result<(), LegError> {
        match self.rtc.handle_input(input) {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = LegError::from(e);
                if !self.rtc.is_alive() {
                    self.fail(e.clone());
                } else {
                    self.stats.wire_rx_rejected += 1;
                }
                Err(e)
            }
        }
    }

    fn fail(&mut self, e: LegError) {
        if !self.closed {
            self.dtls = DtlsState::Failed;
            self.stats.dtls = DtlsState::Failed;
            self.queued.push_back(LegOutput::Closed(Some(e)));
        }
    }

    /// A plain RTP packet from the phone leg, to send to the browser on the stream its payload
    /// type belongs to, with that stream's tx SSRC and the packet's own payload type, sequence
    /// number, timestamp, marker and CSRCs. Dropped (and counted) before the leg is connected.
    pub fn send_rtp(&mut self, plain_rtp: &[u8], now: Instant) -> Result<(), LegError> {
        self.send_rtp_on(None, plain_rtp, now)
    }

    /// [`WebRtcLeg::send_rtp`] on stream `stream` when the caller knows it (streams that share
    /// payload types), else on the stream of the packet's payload type.
    pub fn send_rtp_on(
        &mut self,
        stream: Option<usize>,
        plain_rtp: &[u8],
        now: Instant,
    ) -> Result<(), LegError> {
        let Some(rtp) = PlainRtp::parse(plain_rtp) else {
            self.stats.rtp_tx_dropped += 1;
            return Err(LegError::Rtp("not an RTP packet".into()));
        };
        let stream = match stream {
            Some(k) if k < self.streams.len() => k as u8,
            _ => self.by_pt[rtp.pt as usize],
        };
        if stream == NO_STREAM {
            self.stats.rtp_tx_dropped += 1;
            return Err(LegError::Rtp(format!(
                "payload type {} not negotiated",
                rtp.pt
            )));
        }
        if !self.connected || self.closed {
            self.stats.rtp_tx_dropped += 1;
            return Ok(());
        }
        let state = &mut self.streams[stream as usize];
        let seq = extend_seq(state.tx_seq, rtp.seq);
        state.tx_seq = Some(seq);
        let ssrc = state.ssrc_tx;
        let mut write = RtpWrite::new(
            rtp.pt.into(),
            seq.into(),
            rtp.timestamp,
            now,
            &plain_rtp[rtp.payload.clone()],
        )
        .marker(rtp.marker);
        if rtp.csrc_count > 0 {
            write = write.csrc(&rtp.csrc[..rtp.csrc_count]);
        }
        let mut api = self.rtc.direct_api();
        // Every stream's tx SSRC was declared in `new`.
        let Some(tx) = api.stream_tx(&ssrc) else {
            return Err(LegError::Rtp(format!("no tx stream {ssrc}")));
        };
        tx.write_rtp(write);
        self.stats.rtp_tx_packets += 1;
        self.stats.rtp_tx_bytes += plain_rtp.len() as u64;
        self.drained = false;
        self.input(Input::Timeout(now))
    }

    /// A stream added to the bundle after the leg was made (a re-INVITE that turns video
    /// on): its m-line's mid, SSRCs and payload types. Only video can be added: its payload
    /// types must be dynamic ones no other stream uses ([`DYNAMIC_PTS`], known to str0m from
    /// the start as 90 kHz); anything else is refused and the leg is unchanged.
    pub fn add_stream(&mut self, s: &StreamSpec) -> Result<usize, LegError> {
        let bad = |why: String| LegError::Config(why);
        if s.kind != MediaKind::Video {
            return Err(bad(format!("stream {:?}: only video can be added", s.mid)));
        }
        if s.mid.is_empty() || s.mid.len() > 16 || !s.mid.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(bad(format!("mid {:?}: 1 to 16 letters or digits", s.mid)));
        }
        let mid = Mid::from(s.mid.as_str());
        if self.streams.iter().any(|st| st.mid == mid) {
            return Err(bad(format!("mid {:?} twice", s.mid)));
        }
        if self.streams.len() + 1 >= NO_STREAM as usize {
            return Err(bad("too many streams".into()));
        }
        if s.payloads.is_empty() {
            return Err(bad(format!("stream {:?} has no payload types", s.mid)));
        }
        for p in &s.payloads {
            let dynamic = DYNAMIC_PTS.iter().any(|r| r.contains(&p.pt));
            if !dynamic || p.clock_rate != 90_000 || self.by_pt[p.pt as usize] != NO_STREAM {
                return Err(bad(format!(
                    "payload type {} ({}/{}) cannot be added: not a free dynamic 90 kHz one",
                    p.pt, p.codec, p.clock_rate
                )));
            }
        }
        let index = self.streams.len();
        for p in &s.payloads {
            self.by_pt[p.pt as usize] = index as u8;
        }
        let mut api = self.rtc.direct_api();
        api.declare_media(mid, Str0mKind::Video);
        api.declare_stream_tx(s.ssrc_tx.into(), None, mid, None);
        if let Some(rx) = s.ssrc_rx {
            api.expect_stream_rx(rx.into(), None, mid, None);
        }
        self.streams.push(StreamState {
            mid,
            ssrc_tx: s.ssrc_tx.into(),
            tx_seq: None,
        });
        self.rx_ssrc.push(None);
        self.drained = false;
        Ok(index)
    }

    /// The number of streams in the bundle.
    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// The phone asks for a keyframe on stream `stream` (its PLI/FIR): ask the browser with a
    /// PLI. An error until the browser's stream is known (its first packet, or `ssrc_rx`).
    pub fn request_keyframe(&mut self, stream: usize) -> Result<(), LegError> {
        let Some(state) = self.streams.get(stream) else {
            return Err(LegError::Rtp(format!("no stream {stream}")));
        };
        let mid = state.mid;
        let mut api = self.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, None) else {
            return Err(LegError::Rtp(format!(
                "stream {stream}: nothing received from the browser yet"
            )));
        };
        rx.request_keyframe(KeyframeRequestKind::Pli);
        self.drained = false;
        Ok(())
    }

    /// The next thing to do. Drain until `None`: a [`LegOutput::Timeout`] is the last output
    /// of a round, after which `poll` returns `None` until the next `handle_*`/`send_rtp`.
    /// The borrowed bytes are valid until the next call.
    pub fn poll(&mut self) -> Option<LegOutput<'_>> {
        if let Some(out) = self.queued.pop_front() {
            if matches!(out, LegOutput::Closed(_)) {
                self.closed = true;
            }
            return Some(out);
        }
        if self.closed || self.drained {
            return None;
        }
        let ready = loop {
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    let e = LegError::from(e);
                    self.dtls = DtlsState::Failed;
                    self.stats.dtls = DtlsState::Failed;
                    self.closed = true;
                    break Ready::Other(LegOutput::Closed(Some(e)));
                }
            };
            match output {
                Output::Timeout(t) => {
                    self.drained = true;
                    break Ready::Other(LegOutput::Timeout(t));
                }
                Output::Transmit(t) => {
                    self.stats.wire_tx_datagrams += 1;
                    self.stats.wire_tx_bytes += t.contents.len() as u64;
                    if !self.dtls_active && !self.connected && self.stats.srtp_profile.is_none() {
                        self.stats.srtp_profile = server_hello_srtp_profile(&t.contents);
                    }
                    self.transmit = Some(t);
                    break Ready::Transmit;
                }
                Output::Event(e) => {
                    if let Some(ready) = self.handle_event(e) {
                        break ready;
                    }
                }
            }
        };
        match ready {
            Ready::Other(out) => Some(out),
            Ready::Transmit => self.transmit.as_ref().map(|t| LegOutput::Transmit {
                dst: t.destination,
                data: &t.contents,
            }),
            Ready::Rtp(stream) => Some(LegOutput::Rtp {
                stream,
                packet: &self.rtp_buf,
            }),
        }
    }

    fn handle_event(&mut self, e: Event) -> Option<Ready> {
        match e {
            Event::Connected => {
                self.connected = true;
                self.dtls = DtlsState::Connected;
                self.stats.dtls = DtlsState::Connected;
                Some(Ready::Other(LegOutput::Connected))
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                Some(Ready::Other(LegOutput::Disconnected))
            }
            Event::RtpPacket(p) => {
                // The stream by mid (the browser sends it at least at first), then by the
                // SSRC it was seen with, then by payload type.
                let ssrc = *p.header.ssrc;
                let by_mid = p
                    .header
                    .ext_vals
                    .mid
                    .and_then(|m| self.streams.iter().position(|s| s.mid == m));
                let stream = match by_mid {
                    Some(k) => {
                        if let Some(slot) = self.rx_ssrc.get_mut(k) {
                            *slot = Some(ssrc);
                        }
                        k
                    }
                    None => match self.rx_ssrc.iter().position(|s| *s == Some(ssrc)) {
                        Some(k) => k,
                        None => self.stream_of(*p.header.payload_type)?,
                    },
                };
                if p.payload.is_empty() {
                    return None; // padding-only (bandwidth probes): nothing for the phone
                }
                write_plain_rtp(&p, &mut self.rtp_buf);
                self.stats.rtp_rx_packets += 1;
                self.stats.rtp_rx_bytes += self.rtp_buf.len() as u64;
                Some(Ready::Rtp(stream))
            }
            Event::KeyframeRequest(k) => {
                let stream = self.streams.iter().position(|s| s.mid == k.mid)?;
                let fir = k.kind == KeyframeRequestKind::Fir;
                Some(Ready::Other(LegOutput::KeyframeRequest { stream, fir }))
            }
            Event::Closed => {
                self.closed = true;
                self.dtls = DtlsState::Closed;
                self.stats.dtls = DtlsState::Closed;
                Some(Ready::Other(LegOutput::Closed(None)))
            }
            Event::PeerStats(s) => {
                self.stats.rtt = s.rtt.or(self.stats.rtt);
                None
            }
            Event::MediaEgressStats(s) => {
                self.stats.loss_tx = s.loss.or(self.stats.loss_tx);
                self.stats.rtt = s.rtt.or(self.stats.rtt);
                None
            }
            Event::MediaIngressStats(s) => {
                self.stats.loss_rx = s.loss.or(self.stats.loss_rx);
                None
            }
            _ => None,
        }
    }

    fn stream_of(&self, pt: u8) -> Option<usize> {
        match self.by_pt.get(pt as usize) {
            Some(&i) if i != NO_STREAM => Some(i as usize),
            _ => None,
        }
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// The leg's counters and state.
    pub fn stats(&self) -> LegStats {
        let mut s = self.stats.clone();
        s.dtls = self.dtls;
        s
    }

    /// Ends the leg: RTCP BYE and DTLS close_notify go out through `poll`.
    pub fn close(&mut self) -> Result<(), LegError> {
        self.drained = false;
        self.rtc.close().map_err(LegError::from)
    }
}

/// The fields of a plain RTP packet `send_rtp` keeps.
struct PlainRtp {
    pt: u8,
    marker: bool,
    seq: u16,
    timestamp: u32,
    csrc_count: usize,
    csrc: [u32; 15],
    payload: std::ops::Range<usize>,
}

impl PlainRtp {
    fn parse(b: &[u8]) -> Option<PlainRtp> {
        if b.len() < 12 || b[0] >> 6 != 2 {
            return None;
        }
        let pt = b[1] & 0x7f;
        // RTCP packet types 200..=206 land on 72..=78 with the marker bit: not media.
        if (72..=78).contains(&pt) && b[1] & 0x80 != 0 {
            return None;
        }
        let csrc_count = (b[0] & 0x0f) as usize;
        let mut start = 12 + 4 * csrc_count;
        let mut csrc = [0u32; 15];
        for (i, c) in csrc.iter_mut().enumerate().take(csrc_count) {
            let at = 12 + 4 * i;
            *c = u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?);
        }
        if b[0] & 0x10 != 0 {
            let words = u16::from_be_bytes(b.get(start + 2..start + 4)?.try_into().ok()?);
            start += 4 + 4 * words as usize;
        }
        let mut end = b.len();
        if b[0] & 0x20 != 0 {
            end = end.checked_sub(*b.last()? as usize)?;
        }
        if start > end {
            return None;
        }
        Some(PlainRtp {
            pt,
            marker: b[1] & 0x80 != 0,
            seq: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            csrc_count,
            csrc,
            payload: start..end,
        })
    }
}

/// The extended sequence number of `seq` after `last`: the nearest value with these low 16
/// bits, never below zero. SRTP's packet index (its rollover counter) comes from it.
fn extend_seq(last: Option<u64>, seq: u16) -> u64 {
    let Some(last) = last else {
        return seq as u64;
    };
    let delta = seq.wrapping_sub(last as u16) as i16 as i64;
    (last as i64 + delta).max(0) as u64
}

/// Serializes a browser packet as plain RTP: its header without extensions, and its payload.
fn write_plain_rtp(p: &RtpPacket, out: &mut Vec<u8>) {
    let h = &p.header;
    out.clear();
    let cc = h.csrc_count.min(15);
    out.push(0x80 | cc as u8);
    out.push(*h.payload_type & 0x7f | if h.marker { 0x80 } else { 0 });
    out.extend_from_slice(&h.sequence_number.to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&(*h.ssrc).to_be_bytes());
    for c in &h.csrc[..cc] {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(&p.payload);
}

/// The SRTP profile of a DTLS 1.2 ServerHello's use_srtp extension (RFC 5764 §4.1.1), if this
/// datagram carries one. (DTLS 1.3 encrypts it; the leg speaks DTLS 1.2.)
fn server_hello_srtp_profile(datagram: &[u8]) -> Option<SrtpProfile> {
    let mut rest = datagram;
    while rest.len() >= 13 {
        let len = u16::from_be_bytes([rest[11], rest[12]]) as usize;
        let record = rest.get(13..13 + len)?;
        // A handshake record (22) of epoch 0 holding an unfragmented ServerHello (2).
        if rest[0] == 22 && rest[3..5] == [0, 0] && record.len() >= 12 && record[0] == 2 {
            return srtp_profile_of_server_hello(record.get(12..)?);
        }
        rest = &rest[13 + len..];
    }
    None
}

fn srtp_profile_of_server_hello(body: &[u8]) -> Option<SrtpProfile> {
    // version(2) random(32) session_id(1+n) cipher_suite(2) compression(1) extensions(2+n)
    let sid = *body.get(34)? as usize;
    let mut at = 35 + sid + 3;
    let ext_len = u16::from_be_bytes(body.get(at..at + 2)?.try_into().ok()?) as usize;
    at += 2;
    let exts = body.get(at..at + ext_len)?;
    let mut i = 0;
    while i + 4 <= exts.len() {
        let ty = u16::from_be_bytes([exts[i], exts[i + 1]]);
        let len = u16::from_be_bytes([exts[i + 2], exts[i + 3]]) as usize;
        let data = exts.get(i + 4..i + 4 + len)?;
        if ty == 14 && data.len() >= 4 {
            return match u16::from_be_bytes([data[2], data[3]]) {
                0x0001 => Some(SrtpProfile::AES128_CM_SHA1_80),
                0x0007 => Some(SrtpProfile::AEAD_AES_128_GCM),
                0x0008 => Some(SrtpProfile::AEAD_AES_256_GCM),
                _ => None,
            };
        }
        i += 4 + len;
    }
    None
}

#[cfg(test)]
mod tests;
