//! SIP parsing cost per message: a desk-phone INVITE with SDP, a digest REGISTER, and the proxy
//! splice of an INVITE, each against a floor baseline measured in the same run (one `memchr`
//! scan for the empty line that ends the head: the least any parser must do to touch the
//! bytes). Report results as ns/message and as a ratio to `baseline/find_head_end`.
//!
//! Run: `cargo bench --bench sip_parse` (about a minute).

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tambun::sip::auth::parse_credentials;
use tambun::sip::message::{HeaderName, Limits, Message};

/// A Yealink-style INVITE as a proxy sees it: 12 headers and an SDP offer with PCMU, PCMA and
/// telephone-event.
const INVITE: &[u8] = b"INVITE sip:2001@10.20.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.20.30.41:5060;branch=z9hG4bK1873290442;rport\r\n\
Max-Forwards: 70\r\n\
From: \"Dinas Kominfo 1001\" <sip:1001@10.20.0.1>;tag=1263587460\r\n\
To: <sip:2001@10.20.0.1>\r\n\
Call-ID: 0_2387411950@10.20.30.41\r\n\
CSeq: 2 INVITE\r\n\
Contact: <sip:1001@10.20.30.41:5060>\r\n\
Content-Type: application/sdp\r\n\
Allow: INVITE, INFO, PRACK, ACK, BYE, CANCEL, OPTIONS, NOTIFY, REGISTER, SUBSCRIBE, REFER, PUBLISH, UPDATE, MESSAGE\r\n\
Supported: replaces, timer\r\n\
User-Agent: Yealink SIP-T31P 124.86.0.40\r\n\
Content-Length: 300\r\n\
\r\n\
v=0\r\n\
o=- 20047 20047 IN IP4 10.20.30.41\r\n\
s=SDP data\r\n\
c=IN IP4 10.20.30.41\r\n\
t=0 0\r\n\
m=audio 11796 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-15\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n\
a=rtcp:11797 IN IP4 10.20.30.41\r\n\
a=ssrc:1925349391 cname:0c3e8b5a\r\n";

/// A baresip-style REGISTER answering a digest challenge (qop=auth).
const REGISTER: &[u8] = b"REGISTER sip:10.20.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.20.30.42:5060;branch=z9hG4bKf3a1b2c4d5e6;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1002@10.20.0.1>\r\n\
From: <sip:1002@10.20.0.1>;tag=8f1e2d3c4b5a\r\n\
Call-ID: 6a7b8c9d0e1f2a3b\r\n\
CSeq: 2 REGISTER\r\n\
Contact: <sip:1002@10.20.30.42:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:4a5b6c7d-0000-1111-2222-333344445555>\"\r\n\
Authorization: Digest username=\"1002\", realm=\"tambun\", nonce=\"0000000065f1a2b30000000000000007a1b2c3d4e5f60718293a4b5c6d7e8f90\", uri=\"sip:10.20.0.1\", response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", qop=auth, nc=00000001\r\n\
User-Agent: baresip v3.10.1 (x86_64/linux)\r\n\
Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n\
Supported: replaces,outbound,gruu\r\n\
Content-Length: 0\r\n\
\r\n";

/// Short enough that the whole file runs in about a minute; per-message times are stable
/// to a few percent at this length.
fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50)
}

fn parse(buf: &Bytes, limits: &Limits) -> Message {
    // Holds: the fixtures above are valid messages (checked once in `sanity`).
    Message::parse_datagram(buf.clone(), limits).expect("fixture parses")
}

/// What a stateful proxy does to an INVITE it forwards: a Record-Route and a new top Via,
/// Max-Forwards decremented.
fn splice(m: &Message) -> Bytes {
    let mf = *m
        .headers_named(HeaderName::MaxForwards)
        .next()
        .expect("fixture has Max-Forwards");
    let mut e = m.edit();
    e.prepend_header("Record-Route: <sip:10.20.0.1:5060;transport=udp;lr>");
    e.prepend_header("Via: SIP/2.0/UDP 10.20.0.1:5060;branch=z9hG4bK.tmb.0000000001;rport");
    e.replace_value(&mf, "69");
    e.finish()
}

/// Fails fast if a fixture stops being valid, so no benchmark silently measures an error path.
fn sanity(limits: &Limits) {
    for raw in [INVITE, REGISTER] {
        let m = parse(&Bytes::from_static(raw), limits);
        m.validate_request().expect("fixture validates");
        assert_eq!(m.body_span().end, raw.len(), "Content-Length matches");
    }
    let m = parse(&Bytes::from_static(INVITE), limits);
    let out = parse(&splice(&m), limits);
    out.validate_request().expect("spliced INVITE validates");
    assert_eq!(out.values(HeaderName::Via).count(), 2);
    assert_eq!(out.max_forwards(), Ok(Some(69)));
    assert_eq!(out.body(), m.body());
}

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    sanity(&limits);
    let invite = Bytes::from_static(INVITE);
    let register = Bytes::from_static(REGISTER);

    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("find_head_end/invite", |b| {
        b.iter(|| memchr::memmem::find(black_box(&invite[..]), b"\r\n\r\n"))
    });
    g.bench_function("find_head_end/register", |b| {
        b.iter(|| memchr::memmem::find(black_box(&register[..]), b"\r\n\r\n"))
    });
    g.finish();

    let mut g = c.benchmark_group("invite");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| b.iter(|| parse(black_box(&invite), &limits)));
    g.bench_function("parse+validate", |b| {
        b.iter(|| {
            let m = parse(black_box(&invite), &limits);
            m.validate_request().expect("fixture validates");
            m
        })
    });
    g.finish();

    let mut g = c.benchmark_group("register");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| b.iter(|| parse(black_box(&register), &limits)));
    g.bench_function("parse+validate+credentials", |b| {
        b.iter(|| {
            let m = parse(black_box(&register), &limits);
            m.validate_request().expect("fixture validates");
            let auth = m
                .header(HeaderName::Authorization)
                .expect("fixture has Authorization");
            parse_credentials(auth.as_bytes()).expect("fixture credentials parse")
        })
    });
    g.finish();

    let mut g = c.benchmark_group("proxy");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse+splice", |b| {
        b.iter(|| {
            let m = parse(black_box(&invite), &limits);
            splice(&m)
        })
    });
    g.finish();
}

criterion_group! {
    name = sip_parse;
    config = config();
    targets = benches
}
criterion_main!(sip_parse);
