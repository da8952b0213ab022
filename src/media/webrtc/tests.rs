//! A leg wired back to back with a "browser": a str0m `Rtc` configured through the Direct API
//! the way a browser is configured by the SDP the core writes (full ICE, controlling, the
//! leg's one host candidate, our fingerprint and `a=ssrc`). In memory, on simulated time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, KeyingMaterial,
    ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, KeyframeRequestKind, MediaKind as Str0mKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

use super::*;

const LEG: u32 = 0x5eed_0001;
const BROWSER_AUDIO: u32 = 0xb0b0_0001;
const BROWSER_VIDEO: u32 = 0xb0b0_0002;
const LEG_VIDEO: u32 = 0x5eed_0002;

fn leg_addr() -> SocketAddr {
    ([10, 0, 0, 1], 20000).into()
}
fn browser_addr() -> SocketAddr {
    ([10, 0, 0, 2], 54321).into()
}

/// How the browser's SDP named its streams.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Rx {
    /// `a=ssrc:` lines, no mid extension negotiated.
    Ssrc,
    /// No `a=ssrc:`, the mid header extension (id 4, as Chrome).
    Mid,
}

fn pcmu() -> PayloadSpec {
    PayloadSpec {
        pt: 0,
        codec: "PCMU".into(),
        clock_rate: 8000,
        channels: None,
        fmtp: String::new(),
    }
}

fn vp8() -> PayloadSpec {
    PayloadSpec {
        pt: 96,
        codec: "VP8".into(),
        clock_rate: 90000,
        channels: None,
        fmtp: String::new(),
    }
}

fn params(browser_fp: &str, dtls_active: bool, rx: Rx, video: bool) -> LegParams {
    let mut streams = vec![StreamSpec {
        mid: "0".into(),
        kind: MediaKind::Audio,
        payloads: vec![pcmu()],
        ssrc_tx: LEG,
        ssrc_rx: (rx == Rx::Ssrc).then_some(BROWSER_AUDIO),
    }];
    if video {
        streams.push(StreamSpec {
            mid: "1".into(),
            kind: MediaKind::Video,
            payloads: vec![vp8()],
            ssrc_tx: LEG_VIDEO,
            ssrc_rx: (rx == Rx::Ssrc).then_some(BROWSER_VIDEO),
        });
    }
    LegParams {
        local_ufrag: "legufrag".into(),
        local_pwd: "legpassword0123456789012".into(),
        remote_ufrag: "brufrag".into(),
        remote_pwd: "browserpassword012345678".into(),
        remote_fingerprint: browser_fp.parse().expect("a valid fingerprint"),
        dtls_active,
        local_addr: leg_addr(),
        extensions: HeaderExtensions {
            mid: (rx == Rx::Mid).then_some(4),
            audio_level: None,
        },
        streams,
    }
}

/// The browser's side of the SDP the core wrote: our ufrag/pwd, fingerprint, candidate,
/// `a=setup` and `a=ssrc` lines.
fn browser(
    leg: &Identity,
    provider: Option<CryptoProvider>,
    leg_active: bool,
    video: bool,
    now: Instant,
) -> Rtc {
    let mut cfg = RtcConfig::new()
        .set_rtp_mode(true)
        .set_local_ice_credentials(IceCreds {
            ufrag: "brufrag".into(),
            pass: "browserpassword012345678".into(),
        })
        .clear_codecs();
    if let Some(p) = provider {
        cfg = cfg.set_crypto_provider(Arc::new(p));
    }
    cfg.codec_config().add_config(
        0.into(),
        None,
        Codec::PCMU,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::default(),
    );
    cfg.codec_config().add_config(
        96.into(),
        None,
        Codec::Vp8,
        Frequency::NINETY_KHZ,
        None,
        FormatParams::default(),
    );
    let mut rtc = cfg.build(now);
    rtc.add_local_candidate(Candidate::host(browser_addr(), "udp").unwrap());
    rtc.add_remote_candidate(Candidate::host(leg_addr(), "udp").unwrap());
    let mut api = rtc.direct_api();
    api.set_ice_lite(false);
    api.set_ice_controlling(true);
    api.set_remote_ice_credentials(IceCreds {
        ufrag: "legufrag".into(),
        pass: "legpassword0123456789012".into(),
    });
    api.set_remote_fingerprint(leg.fingerprint().parse().unwrap());
    let audio: Mid = "0".into();
    api.declare_media(audio, Str0mKind::Audio);
    api.declare_stream_tx(BROWSER_AUDIO.into(), None, audio, None);
    api.expect_stream_rx(LEG.into(), None, audio, None);
    if video {
        let v: Mid = "1".into();
        api.declare_media(v, Str0mKind::Video);
        api.declare_stream_tx(BROWSER_VIDEO.into(), None, v, None);
        api.expect_stream_rx(LEG_VIDEO.into(), None, v, None);
    }
    api.start_dtls(!leg_active).unwrap();
    rtc.handle_input(Input::Timeout(now)).unwrap();
    rtc
}

fn browser_fingerprint(rtc: &mut Rtc) -> String {
    rtc.direct_api().local_dtls_fingerprint().to_string()
}

/// What the leg said, owned.
#[derive(Debug, Clone, PartialEq)]
enum Said {
    Connected,
    Disconnected,
    Closed(Option<LegError>),
    Keyframe(usize, bool),
}

struct Pair {
    now: Instant,
    leg: WebRtcLeg,
    br: Rtc,
    leg_wake: Instant,
    br_wake: Instant,
    /// Every datagram the leg sent, and the browser sent.
    leg_sent: Vec<Vec<u8>>,
    br_sent: Vec<Vec<u8>>,
    /// Plain RTP the leg handed out, by stream.
    rtp_out: Vec<(usize, Vec<u8>)>,
    said: Vec<Said>,
    br_events: Vec<Event>,
    br_failed: bool,
}

impl Pair {
    fn new(leg_active: bool, rx: Rx, video: bool) -> Pair {
        Pair::with_crypto(leg_active, rx, video, None, None)
    }

    /// The leg made with audio only while the browser (whose re-offer turned video on)
    /// already has its video stream: the leg's [`WebRtcLeg::add_stream`] is to catch up.
    fn audio_leg_video_browser(leg_active: bool) -> Pair {
        let now = Instant::now();
        let identity = Identity::generate().unwrap();
        let mut br = browser(&identity, None, leg_active, true, now);
        let fp = browser_fingerprint(&mut br);
        let leg = WebRtcLeg::new(params(&fp, leg_active, Rx::Ssrc, false), &identity, now).unwrap();
        Pair {
            now,
            leg,
            br,
            leg_wake: now,
            br_wake: now,
            leg_sent: vec![],
            br_sent: vec![],
            rtp_out: vec![],
            said: vec![],
            br_events: vec![],
            br_failed: false,
        }
    }

    fn with_crypto(
        leg_active: bool,
        rx: Rx,
        video: bool,
        provider: Option<CryptoProvider>,
        wrong_fp: Option<String>,
    ) -> Pair {
        let now = Instant::now();
        let identity = match &provider {
            Some(p) => Identity::with_provider(p.clone()).unwrap(),
            None => Identity::generate().unwrap(),
        };
        let mut br = browser(&identity, provider, leg_active, video, now);
        let fp = wrong_fp.unwrap_or_else(|| browser_fingerprint(&mut br));
        let leg = WebRtcLeg::new(params(&fp, leg_active, rx, video), &identity, now).unwrap();
        Pair {
            now,
            leg,
            br,
            leg_wake: now,
            br_wake: now,
            leg_sent: vec![],
            br_sent: vec![],
            rtp_out: vec![],
            said: vec![],
            br_events: vec![],
            br_failed: false,
        }
    }

    /// Drains both sides, delivers what they sent, and advances time to the next wake-up
    /// when nothing was in flight.
    fn step(&mut self) {
        let mut to_br = vec![];
        while let Some(out) = self.leg.poll() {
            match out {
                LegOutput::Transmit { dst, data } => {
                    assert_eq!(dst, browser_addr());
                    self.leg_sent.push(data.to_vec());
                    to_br.push(data.to_vec());
                }
                LegOutput::Rtp { stream, packet } => self.rtp_out.push((stream, packet.to_vec())),
                LegOutput::KeyframeRequest { stream, fir } => {
                    self.said.push(Said::Keyframe(stream, fir))
                }
                LegOutput::Connected => self.said.push(Said::Connected),
                LegOutput::Disconnected => self.said.push(Said::Disconnected),
                LegOutput::Closed(e) => self.said.push(Said::Closed(e)),
                LegOutput::Timeout(t) => self.leg_wake = t,
            }
        }
        let mut to_leg = vec![];
        while !self.br_failed {
            match self.br.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.br_wake = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    assert_eq!(t.destination, leg_addr());
                    let data: Vec<u8> = t.contents.to_vec();
                    self.br_sent.push(data.clone());
                    to_leg.push(data);
                }
                Ok(Output::Event(e)) => self.br_events.push(e),
                Err(_) => self.br_failed = true,
            }
        }
        let idle = to_br.is_empty() && to_leg.is_empty();
        for d in to_br {
            self.deliver_to_browser(&d);
        }
        for d in to_leg {
            let _ = self
                .leg
                .handle_datagram(browser_addr(), leg_addr(), &d, self.now);
        }
        if idle {
            let next = self
                .leg_wake
                .min(self.br_wake)
                .min(self.now + Duration::from_millis(50));
            self.now = next.max(self.now + Duration::from_millis(1));
            let _ = self.leg.handle_timeout(self.now);
            if !self.br_failed && self.br.handle_input(Input::Timeout(self.now)).is_err() {
                self.br_failed = true;
            }
        }
    }

    fn deliver_to_browser(&mut self, d: &[u8]) {
        if self.br_failed {
            return;
        }
        let r = Receive::new(Protocol::Udp, leg_addr(), browser_addr(), d).unwrap();
        if self.br.handle_input(Input::Receive(self.now, r)).is_err() {
            self.br_failed = true;
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.now < until {
            self.step();
        }
    }

    fn connect(&mut self) {
        let until = self.now + Duration::from_secs(10);
        while !(self.leg.is_connected() && self.br.is_connected()) {
            assert!(self.now < until, "no connection; leg said {:?}", self.said);
            self.step();
        }
        // Let the last handshake flight land.
        self.run_for(Duration::from_millis(20));
    }

    fn browser_send(&mut self, ssrc: u32, pt: u8, seq: u64, ts: u32, payload: &[u8]) {
        let now = self.now;
        let mut api = self.br.direct_api();
        let tx = api.stream_tx(&Ssrc::from(ssrc)).unwrap();
        tx.write_rtp(
            RtpWrite::new(pt.into(), seq.into(), ts, now, payload).marker(seq.is_multiple_of(2)),
        );
        self.br.handle_input(Input::Timeout(now)).unwrap();
    }

    fn browser_rtp(&self) -> Vec<&str0m::rtp::RtpPacket> {
        self.br_events
            .iter()
            .filter_map(|e| match e {
                Event::RtpPacket(p) => Some(p),
                _ => None,
            })
            .collect()
    }
}

fn phone_packet(pt: u8, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes()); // the phone's SSRC
    p.extend_from_slice(payload);
    p
}

/// A DTLS handshake record carrying a ClientHello (handshake type 1).
fn is_client_hello(d: &[u8]) -> bool {
    d.len() > 13 && d[0] == 22 && d[13] == 1
}

fn payload(i: u16) -> Vec<u8> {
    (0..160).map(|j| (i as usize * 7 + j) as u8).collect()
}

/// Phone → leg → browser and browser → leg → phone, `n` packets each way, sequence numbers
/// from `first_seq` both ways (SRTP refuses replays: each call needs new ones).
fn media_both_ways(p: &mut Pair, first_seq: u16, n: u16) {
    let before_br = p.browser_rtp().len();
    let before_leg = p.rtp_out.len();
    for i in 0..n {
        let seq = first_seq.wrapping_add(i);
        let pkt = phone_packet(0, seq, 160 * seq as u32, i == 0, &payload(i));
        p.leg.send_rtp(&pkt, p.now).unwrap();
        let bseq = first_seq as u64 + i as u64;
        p.browser_send(BROWSER_AUDIO, 0, bseq, 8000 + 160 * i as u32, &payload(i));
        p.run_for(Duration::from_millis(20));
    }
    p.run_for(Duration::from_millis(100));

    let got = p.browser_rtp();
    assert_eq!(
        got.len() - before_br,
        n as usize,
        "browser got every packet"
    );
    for (i, r) in got[before_br..].iter().enumerate() {
        let seq = first_seq.wrapping_add(i as u16);
        assert_eq!(r.header.ssrc, Ssrc::from(LEG), "the leg's tx SSRC");
        assert_eq!(r.header.sequence_number, seq);
        assert_eq!(r.header.timestamp, 160 * seq as u32);
        assert_eq!(*r.header.payload_type, 0);
        assert_eq!(r.header.marker, i == 0);
        assert_eq!(&r.payload[..], &payload(i as u16)[..]);
    }

    let out = &p.rtp_out[before_leg..];
    let seqs: Vec<u16> = out
        .iter()
        .map(|(_, p)| u16::from_be_bytes([p[2], p[3]]))
        .collect();
    assert_eq!(
        out.len(),
        n as usize,
        "the phone got every packet: {seqs:?} {:?}",
        p.leg.stats()
    );
    for (i, (stream, pkt)) in out.iter().enumerate() {
        let seq = first_seq.wrapping_add(i as u16);
        assert_eq!(*stream, 0);
        assert_eq!(pkt[0], 0x80, "version 2, no padding, no extension, no CSRC");
        assert_eq!(pkt[1], if seq.is_multiple_of(2) { 0x80 } else { 0 });
        assert_eq!(u16::from_be_bytes([pkt[2], pkt[3]]), seq);
        assert_eq!(
            u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
            8000 + 160 * i as u32
        );
        assert_eq!(
            u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]),
            BROWSER_AUDIO,
            "the browser's SSRC"
        );
        assert_eq!(&pkt[12..], &payload(i as u16)[..]);
    }
}

#[test]
fn we_passive_never_send_a_client_hello_and_connect() {
    for rx in [Rx::Ssrc, Rx::Mid] {
        let mut p = Pair::new(false, rx, false);
        p.connect();
        assert!(p.said.contains(&Said::Connected));
        assert!(
            !p.leg_sent.iter().any(|d| is_client_hello(d)),
            "passive: no ClientHello"
        );
        assert!(p.br_sent.iter().any(|d| is_client_hello(d)));
        let s = p.leg.stats();
        assert_eq!(s.dtls, DtlsState::Connected);
        assert_eq!(s.srtp_profile, Some(SrtpProfile::AEAD_AES_256_GCM));
    }
}

#[test]
fn we_active_send_the_client_hello_and_connect() {
    for rx in [Rx::Ssrc, Rx::Mid] {
        let mut p = Pair::new(true, rx, false);
        p.connect();
        assert!(p.leg_sent.iter().any(|d| is_client_hello(d)));
        assert!(
            !p.br_sent.iter().any(|d| is_client_hello(d)),
            "the browser is the server"
        );
        assert_eq!(
            p.leg.stats().srtp_profile,
            Some(SrtpProfile::AEAD_AES_256_GCM)
        );
    }
}

#[test]
fn rtp_flows_both_ways_with_ssrc_lines_or_mid_only() {
    for (active, rx) in [
        (false, Rx::Ssrc),
        (false, Rx::Mid),
        (true, Rx::Ssrc),
        (true, Rx::Mid),
    ] {
        let mut p = Pair::new(active, rx, false);
        p.connect();
        // Crosses the 16-bit sequence wrap: SRTP's rollover counter must follow.
        media_both_ways(&mut p, 65530, 12);
        let s = p.leg.stats();
        assert_eq!(
            (s.rtp_tx_packets, s.rtp_rx_packets),
            (12, 12),
            "{active} {rx:?}"
        );
        assert_eq!(s.rtp_tx_dropped, 0);
    }
}

#[test]
fn rtp_before_connected_is_dropped_and_unknown_pt_refused() {
    let mut p = Pair::new(false, Rx::Ssrc, false);
    p.leg
        .send_rtp(&phone_packet(0, 1, 160, false, &payload(1)), p.now)
        .unwrap();
    assert!(p
        .leg
        .send_rtp(&phone_packet(8, 1, 160, false, &payload(1)), p.now)
        .is_err());
    assert!(p.leg.send_rtp(b"short", p.now).is_err());
    assert_eq!(p.leg.stats().rtp_tx_dropped, 3);
    p.connect();
    media_both_ways(&mut p, 2, 3);
}

#[test]
fn phone_extensions_padding_and_csrcs() {
    let mut p = Pair::new(true, Rx::Mid, false);
    p.connect();
    // X bit with one extension word, one CSRC, P bit with 4 padding bytes.
    let mut pkt = vec![0x80 | 0x20 | 0x10 | 1, 0];
    pkt.extend_from_slice(&7u16.to_be_bytes());
    pkt.extend_from_slice(&1120u32.to_be_bytes());
    pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    pkt.extend_from_slice(&0xcafe_f00du32.to_be_bytes()); // CSRC
    pkt.extend_from_slice(&[0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // an extension
    pkt.extend_from_slice(&payload(3));
    pkt.extend_from_slice(&[0, 0, 0, 4]);
    p.leg.send_rtp(&pkt, p.now).unwrap();
    p.run_for(Duration::from_millis(50));
    let got = p.browser_rtp();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header.sequence_number, 7);
    assert_eq!(got[0].header.csrc_count, 1);
    assert_eq!(got[0].header.csrc[0], 0xcafe_f00d);
    assert_eq!(&got[0].payload[..], &payload(3)[..]);
}

#[test]
fn keyframe_requests_cross_both_ways() {
    for rx in [Rx::Ssrc, Rx::Mid] {
        let mut p = Pair::new(false, rx, true);
        p.connect();
        // Video both ways so each side knows the other's stream.
        for i in 0..3u16 {
            let pkt = phone_packet(96, i, 3000 * i as u32, true, &payload(i));
            p.leg.send_rtp(&pkt, p.now).unwrap();
            p.browser_send(BROWSER_VIDEO, 96, i as u64, 3000 * i as u32, &payload(i));
            p.run_for(Duration::from_millis(30));
        }
        assert!(
            p.rtp_out.iter().any(|(s, _)| *s == 1),
            "browser video reaches the phone"
        );

        // The phone's PLI → the browser.
        p.leg.request_keyframe(1).unwrap();
        p.run_for(Duration::from_millis(200));
        assert!(p.br_events.iter().any(|e| matches!(
            e,
            Event::KeyframeRequest(k) if k.mid == Mid::from("1")
        )));

        // The browser's PLI → the phone.
        let mut api = p.br.direct_api();
        api.stream_rx(&Ssrc::from(LEG_VIDEO))
            .unwrap()
            .request_keyframe(KeyframeRequestKind::Pli);
        p.run_for(Duration::from_millis(200));
        assert!(p.said.contains(&Said::Keyframe(1, false)), "{:?}", p.said);
    }
}

/// A deterministic xorshift for garbage.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, first: Option<u8>) -> Vec<u8> {
        let len = (self.next() % 1300) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        if let (Some(f), Some(b)) = (first, v.first_mut()) {
            *b = f;
        }
        v
    }
}

#[test]
fn garbage_and_a_client_hello_flood_do_not_break_an_established_leg() {
    for active in [false, true] {
        let mut p = Pair::new(active, Rx::Ssrc, false);
        // Garbage during the handshake too.
        let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
        for _ in 0..200 {
            let g = noise.bytes(None);
            let _ = p.leg.handle_datagram(browser_addr(), leg_addr(), &g, p.now);
        }
        p.connect();
        media_both_ways(&mut p, 100, 3);

        // A ClientHello flood: the browser's own, when we were the server, and forged ones.
        let hello = p.br_sent.iter().find(|d| is_client_hello(d)).cloned();
        let hello = hello.unwrap_or_else(|| {
            p.leg_sent[p.leg_sent.iter().position(|d| is_client_hello(d)).unwrap()].clone()
        });
        let other: SocketAddr = ([10, 0, 0, 66], 4444).into();
        for i in 0..500 {
            let src = if i % 2 == 0 { browser_addr() } else { other };
            let _ = p.leg.handle_datagram(src, leg_addr(), &hello, p.now);
        }
        p.run_for(Duration::from_millis(200));
        media_both_ways(&mut p, 150, 5);
        // Garbage shaped like each protocol on the mux: STUN (0..3), DTLS (20..63), RTP (128..191).
        for i in 0..3000 {
            let first = [0u8, 1, 22, 23, 20, 0x80, 0x90, 0xbf, 200][i % 9];
            let g = noise.bytes(Some(first));
            let src = if i % 3 == 0 { other } else { browser_addr() };
            let _ = p.leg.handle_datagram(src, leg_addr(), &g, p.now);
            if i % 100 == 0 {
                p.step();
            }
        }
        p.run_for(Duration::from_millis(200));
        assert!(p.leg.is_connected());
        assert!(
            !p.said.iter().any(|s| matches!(s, Said::Closed(_))),
            "{:?}",
            p.said
        );
        media_both_ways(&mut p, 200, 5);
        assert!(p.leg.stats().wire_rx_rejected > 0);
    }
}

#[test]
fn a_wrong_fingerprint_fails_dtls_and_no_media_flows() {
    let stranger = {
        let mut other = browser(
            &Identity::generate().unwrap(),
            None,
            false,
            false,
            Instant::now(),
        );
        browser_fingerprint(&mut other)
    };
    for active in [false, true] {
        let mut p = Pair::with_crypto(active, Rx::Ssrc, false, None, Some(stranger.clone()));
        p.run_for(Duration::from_secs(3));
        assert!(!p.leg.is_connected());
        assert!(
            p.said
                .iter()
                .any(|s| matches!(s, Said::Closed(Some(LegError::Dtls(_))))),
            "{:?}",
            p.said
        );
        assert_eq!(p.leg.stats().dtls, DtlsState::Failed);
        let _ = p
            .leg
            .send_rtp(&phone_packet(0, 1, 160, false, &payload(1)), p.now);
        p.run_for(Duration::from_millis(200));
        assert!(p.browser_rtp().is_empty());
        assert!(p.rtp_out.is_empty());
    }
}

#[test]
fn fingerprints_parse_and_identity_formats_them() {
    let id = Identity::generate().unwrap();
    let fp = id.fingerprint();
    assert!(fp.starts_with("sha-256 "));
    assert_eq!(fp.len(), "sha-256 ".len() + 32 * 3 - 1);
    assert!(fp.parse::<DtlsFingerprint>().is_ok());
    assert!(fp.to_lowercase().parse::<DtlsFingerprint>().is_ok());
    for bad in [
        "",
        "sha-256",
        "md5 AB:CD",
        "sha-256 AB:CD",
        "sha-256 GG:00",
        "sha-256 ABC:D",
    ] {
        assert!(bad.parse::<DtlsFingerprint>().is_err(), "{bad:?}");
    }
}

#[test]
fn bad_params_are_config_errors() {
    let id = Identity::generate().unwrap();
    let now = Instant::now();
    let base = params(id.fingerprint(), false, Rx::Ssrc, true);
    let cases: [fn(&mut LegParams); 8] = [
        |p| p.streams.clear(),
        |p| p.streams[1].payloads[0].pt = 0,
        |p| p.streams[1].mid = "0".into(),
        |p| p.streams[0].mid = "a b".into(),
        |p| p.streams[0].payloads[0].codec = "G729".into(),
        |p| p.streams[0].ssrc_rx = None,
        |p| p.local_pwd.clear(),
        |p| p.extensions.mid = Some(15),
    ];
    for (i, f) in cases.iter().enumerate() {
        let mut p = base.clone();
        f(&mut p);
        assert!(
            matches!(WebRtcLeg::new(p, &id, now), Err(LegError::Config(_))),
            "case {i}"
        );
    }
    assert!(WebRtcLeg::new(base, &id, now).is_ok());
}

// --- SRTP profiles -------------------------------------------------------------------------

/// A test-only DTLS backend that hands SRTP a chosen profile instead of the negotiated one
/// (str0m's DTLS always negotiates AEAD_AES_256_GCM between two str0m peers and has no knob
/// to offer fewer). Both peers use it, and both cut the same exported keying material to the
/// profile's length, so this exercises str0m's SRTP transform of that profile end to end.
#[derive(Debug)]
struct ForceProfile {
    inner: &'static dyn DtlsProvider,
    profile: SrtpProfile,
}

impl DtlsProvider for ForceProfile {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self.inner.generate_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        Ok(Box::new(ForcedInstance {
            inner: self.inner.new_dtls(cert, now, version, mtu)?,
            profile: self.profile,
        }))
    }
}

#[derive(Debug)]
struct ForcedInstance {
    inner: Box<dyn DtlsInstance>,
    profile: SrtpProfile,
}

impl DtlsInstance for ForcedInstance {
    fn set_active(&mut self, active: bool) {
        self.inner.set_active(active)
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.inner.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        match self.inner.poll_output(buf) {
            DtlsOutput::KeyingMaterial(km, _) => DtlsOutput::KeyingMaterial(
                KeyingMaterial::new(&km[..self.profile.keying_material_len()]),
                self.profile,
            ),
            other => other,
        }
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.inner.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.inner.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.inner.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.inner.close()
    }
}

fn forced(profile: SrtpProfile) -> CryptoProvider {
    let mut p = str0m::crypto::from_feature_flags();
    p.dtls_provider = Box::leak(Box::new(ForceProfile {
        inner: p.dtls_provider,
        profile,
    }));
    p
}

#[test]
fn srtp_profiles_cm_sha1_80_and_gcm_carry_media() {
    for (profile, tag) in [
        (SrtpProfile::AES128_CM_SHA1_80, 10),
        (SrtpProfile::AEAD_AES_128_GCM, 16),
        (SrtpProfile::AEAD_AES_256_GCM, 16),
    ] {
        for active in [false, true] {
            let mut p = Pair::with_crypto(active, Rx::Ssrc, false, Some(forced(profile)), None);
            p.connect();
            let sent = p.leg_sent.len();
            media_both_ways(&mut p, 1, 4);
            // The leg's SRTP datagrams: a 12-byte header (no extensions negotiated), the
            // 160-byte payload and the profile's authentication tag.
            let tags: Vec<usize> = p.leg_sent[sent..]
                .iter()
                .filter(|d| d[0] >> 6 == 2 && !(192..=223).contains(&d[1]))
                .map(|d| {
                    let mut header = 12 + 4 * (d[0] & 0x0f) as usize;
                    if d[0] & 0x10 != 0 {
                        header +=
                            4 + 4 * u16::from_be_bytes([d[header + 2], d[header + 3]]) as usize;
                    }
                    d.len() - header - 160
                })
                .collect();
            assert_eq!(tags, vec![tag; 4], "{profile}");
        }
    }
}

/// A connected audio-only leg learns a video stream later (a re-INVITE turned video on): its
/// payload type was a placeholder in str0m's codec table from the start, so video flows both
/// ways on the same transport once the stream is added, and the audio goes on. Streams that
/// cannot be added are refused and leave the leg as it was.
#[test]
fn a_video_stream_added_to_a_connected_leg_carries_media() {
    let mut p = Pair::audio_leg_video_browser(false);
    p.connect();
    media_both_ways(&mut p, 100, 5);
    // Before the stream is added, the browser's video goes nowhere.
    p.browser_send(BROWSER_VIDEO, 96, 1, 90_000, &payload(1));
    p.run_for(Duration::from_millis(50));
    assert!(
        p.rtp_out.iter().all(|(s, _)| *s == 0),
        "video before it was added"
    );

    let video = StreamSpec {
        mid: "1".into(),
        kind: MediaKind::Video,
        payloads: vec![vp8()],
        ssrc_tx: LEG_VIDEO,
        ssrc_rx: Some(BROWSER_VIDEO),
    };
    let refused = [
        StreamSpec {
            kind: MediaKind::Audio,
            ..video.clone()
        },
        StreamSpec {
            mid: "0".into(),
            ..video.clone()
        },
        StreamSpec {
            payloads: vec![pcmu()],
            ..video.clone()
        },
        StreamSpec {
            payloads: vec![],
            ..video.clone()
        },
        StreamSpec {
            mid: "bad mid!".into(),
            ..video.clone()
        },
    ];
    for s in &refused {
        assert!(
            matches!(p.leg.add_stream(s), Err(LegError::Config(_))),
            "{s:?} was added"
        );
        assert_eq!(p.leg.streams(), 1);
    }
    assert_eq!(p.leg.add_stream(&video), Ok(1));
    assert!(p.leg.add_stream(&video).is_err(), "the same mid twice");
    assert_eq!(p.leg.streams(), 2);

    for i in 0..5u16 {
        p.browser_send(
            BROWSER_VIDEO,
            96,
            2 + i as u64,
            90_000 + 3000 * i as u32,
            &payload(i),
        );
        let pkt = phone_packet(96, 500 + i, 3000 * i as u32, i == 4, &payload(i));
        p.leg.send_rtp(&pkt, p.now).unwrap();
        p.run_for(Duration::from_millis(20));
    }
    p.run_for(Duration::from_millis(100));
    let video_out: Vec<_> = p.rtp_out.iter().filter(|(s, _)| *s == 1).collect();
    assert_eq!(
        video_out.len(),
        5,
        "the browser's video reached the phone side"
    );
    assert!(video_out
        .iter()
        .all(|(_, pkt)| pkt[1] & 0x7f == 96 && pkt[8..12] == BROWSER_VIDEO.to_be_bytes()));
    let to_browser = p
        .browser_rtp()
        .into_iter()
        .filter(|r| r.header.ssrc == Ssrc::from(LEG_VIDEO))
        .count();
    assert_eq!(
        to_browser, 5,
        "the phone's video reached the browser on the leg's new SSRC"
    );
    media_both_ways(&mut p, 200, 5);
}
