//! The WebRTC leg's costs, next to baselines in the same run: per packet, `send_rtp` of a
//! 172-byte G.711 packet through to its encrypted datagram, and `handle_datagram` of an SRTP
//! datagram through to the plain RTP handed out; and full ICE + DTLS handshakes between two
//! peers in memory (the leg and a str0m "browser", both in this thread). Baselines: copying the
//! packet, and the relay table's `handle_packet` (what a plain RTP leg costs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use str0m::format::{Codec, FormatParams};
use str0m::ice::IceCreds;
use str0m::media::{Frequency, MediaKind as Str0mKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Input, Output, Rtc, RtcConfig};
use tambun::media::table::Table;
use tambun::media::webrtc::{
    HeaderExtensions, Identity, LegOutput, LegParams, MediaKind, PayloadSpec, StreamSpec, WebRtcLeg,
};
use tambun::media::{SessionId, Side};

const LEG_SSRC: u32 = 0x5eed_0001;
const BROWSER_SSRC: u32 = 0xb0b0_0001;

fn leg_addr() -> SocketAddr {
    ([10, 0, 0, 1], 20000).into()
}
fn browser_addr() -> SocketAddr {
    ([10, 0, 0, 2], 54321).into()
}

fn phone_packet(seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    p
}

struct Peers {
    leg: WebRtcLeg,
    br: Rtc,
    now: Instant,
}

fn browser(leg: &Identity, cert: &str0m::config::DtlsCert, leg_active: bool, now: Instant) -> Rtc {
    let mut cfg = RtcConfig::new()
        .set_rtp_mode(true)
        .set_dtls_cert(cert.clone())
        .set_local_ice_credentials(IceCreds {
            ufrag: "brufrag".into(),
            pass: "browserpassword012345678".into(),
        })
        .clear_codecs();
    cfg.codec_config().add_config(
        0.into(),
        None,
        Codec::PCMU,
        Frequency::EIGHT_KHZ,
        None,
        FormatParams::default(),
    );
    let mut rtc = cfg.build(now);
    rtc.add_local_candidate(Candidate::host(browser_addr(), "udp").unwrap());
    rtc.add_remote_candidate(Candidate::host(leg_addr(), "udp").unwrap());
    let mut api = rtc.direct_api();
    api.set_ice_controlling(true);
    api.set_remote_ice_credentials(IceCreds {
        ufrag: "legufrag".into(),
        pass: "legpassword0123456789012".into(),
    });
    api.set_remote_fingerprint(leg.fingerprint().parse().unwrap());
    let mid: Mid = "0".into();
    api.declare_media(mid, Str0mKind::Audio);
    api.declare_stream_tx(BROWSER_SSRC.into(), None, mid, None);
    api.expect_stream_rx(LEG_SSRC.into(), None, mid, None);
    api.start_dtls(!leg_active).unwrap();
    rtc.handle_input(Input::Timeout(now)).unwrap();
    rtc
}

fn connect(identity: &Identity, cert: &str0m::config::DtlsCert, leg_active: bool) -> Peers {
    let now = Instant::now();
    let mut br = browser(identity, cert, leg_active, now);
    let fp = br.direct_api().local_dtls_fingerprint().to_string();
    let params = LegParams {
        local_ufrag: "legufrag".into(),
        local_pwd: "legpassword0123456789012".into(),
        remote_ufrag: "brufrag".into(),
        remote_pwd: "browserpassword012345678".into(),
        remote_fingerprint: fp.parse().unwrap(),
        dtls_active: leg_active,
        local_addr: leg_addr(),
        extensions: HeaderExtensions::default(),
        streams: vec![StreamSpec {
            mid: "0".into(),
            kind: MediaKind::Audio,
            payloads: vec![PayloadSpec {
                pt: 0,
                codec: "PCMU".into(),
                clock_rate: 8000,
                channels: None,
                fmtp: String::new(),
            }],
            ssrc_tx: LEG_SSRC,
            ssrc_rx: Some(BROWSER_SSRC),
        }],
    };
    let leg = WebRtcLeg::new(params, identity, now).unwrap();
    let mut p = Peers { leg, br, now };
    let mut rounds = 0;
    while !(p.leg.is_connected() && p.br.is_connected()) {
        rounds += 1;
        assert!(rounds < 10_000, "no connection");
        p.step();
    }
    p
}

impl Peers {
    fn step(&mut self) {
        let mut to_br = vec![];
        let mut leg_wake = self.now + Duration::from_millis(50);
        while let Some(out) = self.leg.poll() {
            match out {
                LegOutput::Transmit { data, .. } => to_br.push(data.to_vec()),
                LegOutput::Timeout(t) => leg_wake = t,
                _ => {}
            }
        }
        let mut to_leg = vec![];
        let br_wake = loop {
            match self.br.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => to_leg.push(t.contents.to_vec()),
                Output::Event(_) => {}
            }
        };
        let idle = to_br.is_empty() && to_leg.is_empty();
        for d in to_br {
            let r = Receive::new(Protocol::Udp, leg_addr(), browser_addr(), &d).unwrap();
            self.br.handle_input(Input::Receive(self.now, r)).unwrap();
        }
        for d in to_leg {
            let _ = self
                .leg
                .handle_datagram(browser_addr(), leg_addr(), &d, self.now);
        }
        if idle {
            self.now = leg_wake
                .min(br_wake)
                .max(self.now + Duration::from_millis(1));
            let _ = self.leg.handle_timeout(self.now);
            self.br.handle_input(Input::Timeout(self.now)).unwrap();
        }
    }

    /// `n` SRTP datagrams from the browser, sequence numbers from `seq`.
    fn browser_srtp(&mut self, seq: &mut u64, n: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(n as usize);
        let payload = [0u8; 160];
        while (out.len() as u64) < n {
            self.now += Duration::from_micros(20);
            let now = self.now;
            let mut api = self.br.direct_api();
            let tx = api.stream_tx(&Ssrc::from(BROWSER_SSRC)).unwrap();
            tx.write_rtp(RtpWrite::new(
                0.into(),
                (*seq).into(),
                *seq as u32 * 160,
                now,
                &payload[..],
            ));
            *seq += 1;
            self.br.handle_input(Input::Timeout(now)).unwrap();
            let mut other = vec![];
            loop {
                match self.br.poll_output().unwrap() {
                    Output::Timeout(_) => break,
                    Output::Transmit(t) if t.contents[0] >> 6 == 2 && t.contents[1] == 0 => {
                        out.push(t.contents.to_vec())
                    }
                    // STUN and RTCP keep the leg's ICE and reports alive (untimed).
                    Output::Transmit(t) => other.push(t.contents.to_vec()),
                    Output::Event(_) => {}
                }
            }
            for d in other {
                let _ = self
                    .leg
                    .handle_datagram(browser_addr(), leg_addr(), &d, now);
            }
            if out.len() % 256 == 0 {
                self.step();
            }
        }
        out
    }
}

fn per_packet(c: &mut Criterion) {
    let identity = Identity::generate().unwrap();
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider.dtls_provider.generate_certificate().unwrap();

    let mut g = c.benchmark_group("webrtc_packet");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));

    let pkt = phone_packet(1);
    let mut buf = [0u8; 2048];
    g.bench_function("baseline_copy_172B", |b| {
        b.iter(|| {
            buf[..172].copy_from_slice(black_box(&pkt));
            black_box(&buf);
        })
    });

    let now = Instant::now();
    let mut table = Table::new(false);
    let slots = table.handle_open(SessionId(1), 1, 1, true, now)[0];
    let a: SocketAddr = ([127, 0, 0, 1], 20000).into();
    table.handle_set_remote(SessionId(1), 0, Side::A, a, None, now);
    table.handle_set_remote(
        SessionId(1),
        0,
        Side::B,
        ([127, 0, 0, 1], 30000).into(),
        None,
        now,
    );
    let mut seq = 0u16;
    let mut p = phone_packet(0);
    g.bench_function("baseline_relay_table_handle_packet", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            black_box(table.handle_packet(slots.rtp[0], a, black_box(&p), now))
        })
    });

    // send_rtp → SRTP datagram (the leg is the DTLS server, as when it answers `passive`).
    let mut peers = connect(&identity, &cert, false);
    let mut seq = 0u16;
    let mut now = peers.now;
    let mut tx_ok = 0u64;
    g.bench_function("send_rtp_to_srtp_transmit", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            now += Duration::from_micros(20);
            let pkt = phone_packet(seq);
            peers.leg.send_rtp(&pkt, now).unwrap();
            let mut sent = 0;
            while let Some(out) = peers.leg.poll() {
                if let LegOutput::Transmit { data, .. } = out {
                    black_box(data);
                    sent += 1;
                }
            }
            tx_ok += sent;
        })
    });
    assert!(tx_ok > 0, "send_rtp produced SRTP datagrams");

    // SRTP datagram → plain RTP, on a fresh pair (a browser sending, prepared untimed).
    let mut peers = connect(&identity, &cert, false);
    let mut bseq = 1u64;
    let mut rx_ok = 0u64;
    g.bench_function("handle_datagram_srtp_to_plain_rtp", |b| {
        b.iter_custom(|iters| {
            let batch = peers.browser_srtp(&mut bseq, iters);
            let now = peers.now;
            let start = Instant::now();
            for d in &batch {
                peers
                    .leg
                    .handle_datagram(browser_addr(), leg_addr(), d, now)
                    .unwrap();
                while let Some(out) = peers.leg.poll() {
                    if let LegOutput::Rtp { packet, .. } = out {
                        black_box(packet);
                        rx_ok += 1;
                    }
                }
            }
            let took = start.elapsed();
            peers.step();
            took
        })
    });
    assert!(rx_ok > 0, "the leg decrypted the browser's packets");
    g.finish();

    let mut g = c.benchmark_group("webrtc_handshake");
    g.measurement_time(Duration::from_secs(5));
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    for (name, active) in [("leg_passive", false), ("leg_active", true)] {
        g.bench_function(format!("ice_dtls_both_ends_{name}"), |b| {
            b.iter(|| black_box(connect(&identity, &cert, active).leg.is_connected()))
        });
    }
    g.finish();
}

criterion_group!(benches, per_packet);
criterion_main!(benches);
