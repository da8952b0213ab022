//! The checks the fuzz targets run, shared with `tests/it/parser_props.rs` (which includes this
//! file by path) so CI replays the corpus through exactly the same code without a fuzzing
//! toolchain.
//!
//! Owns: what "the parser behaved" means for arbitrary input. No panic anywhere; a message that
//! validated stays valid through a proxy-style splice and a body swap, and its typed views
//! survive the edit unchanged; stream framing does not depend on how the bytes were chunked
//! and agrees with the parser on where each message ends; digest credentials keep their
//! documented invariant; the SDP rewrite touches only what the relay owns and leaves no
//! stream pointing past the relay; the dialplan loader puts every error on a line of a file;
//! the RTP header parser reads exactly the first 12 bytes of version-2 non-RTCP packets, the
//! RFC 3550 counters stay within their bounds, and the relay table's per-packet path forwards
//! and counts untrusted packets as documented whatever their bytes.
//! Must not: do I/O or keep state between calls.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tambun::dialplan::Dialplan;
use tambun::media::rtp::{RtpCounters, RtpHeader, RTP_HEADER_LEN};
use tambun::media::table::{DropReason, Table, Verdict};
use tambun::media::{SessionId, Side};
use tambun::sip::auth::{parse_credentials, verify, Credentials};
use tambun::sip::headers::{Contact, Uri};
use tambun::sip::message::{frame_stream, Frame, HeaderName, Limits, Message};
use tambun::sip::sdp::{self, RelayPorts, SdpError};

/// Every recognised header name, for exercising `values` and `single`.
const NAMES: &[HeaderName] = &[
    HeaderName::Via,
    HeaderName::From,
    HeaderName::To,
    HeaderName::CallId,
    HeaderName::CSeq,
    HeaderName::Contact,
    HeaderName::Expires,
    HeaderName::MinExpires,
    HeaderName::MaxForwards,
    HeaderName::Route,
    HeaderName::RecordRoute,
    HeaderName::Authorization,
    HeaderName::ProxyAuthorization,
    HeaderName::WwwAuthenticate,
    HeaderName::ProxyAuthenticate,
    HeaderName::ContentLength,
    HeaderName::ContentType,
    HeaderName::UserAgent,
    HeaderName::Server,
    HeaderName::Require,
    HeaderName::ProxyRequire,
    HeaderName::Supported,
    HeaderName::Allow,
    HeaderName::Other,
];

/// The Via and Record-Route the splice adds.
const NEW_VIA: &str = "Via: SIP/2.0/UDP 10.20.0.1:5060;branch=z9hG4bK.fuzz.1;rport";
const NEW_RR: &str = "Record-Route: <sip:10.20.0.1:5060;transport=udp;lr>";

/// What the typed views of a validated message say; compared before and after an edit.
#[derive(Debug, PartialEq)]
struct Views {
    call_id: String,
    cseq: (u32, String),
    from: (String, Option<String>),
    to: (String, Option<String>),
    contacts: Vec<String>,
    expires: Option<u32>,
    method: Option<String>,
    status: Option<u16>,
    request_uri: Option<String>,
}

/// Reads every view of a validated message. Panics (a finding) if a view the validation
/// vouched for fails.
fn views(m: &Message) -> Views {
    let from = m.from().expect("validated From");
    let to = m.to().expect("validated To");
    let cseq = m.cseq().expect("validated CSeq");
    let contacts = if m.is_request() {
        m.contacts()
            .expect("validated Contacts")
            .iter()
            .map(|c| match c {
                Contact::Star => "*".to_string(),
                Contact::Addr(a) => a.uri.to_string(),
            })
            .collect()
    } else {
        Vec::new()
    };
    Views {
        call_id: m.call_id().expect("validated Call-ID").to_string(),
        cseq: (cseq.seq, cseq.method.to_string()),
        from: (from.uri.to_string(), from.tag().map(str::to_string)),
        to: (to.uri.to_string(), to.tag().map(str::to_string)),
        contacts,
        expires: if m.is_request() {
            m.expires().expect("validated Expires")
        } else {
            None
        },
        method: m.method().map(|x| x.to_string()),
        status: m.status(),
        request_uri: m.request_uri().map(str::to_string),
    }
}

/// Touches every accessor and typed view, valid or not; only panics matter here.
fn exercise(m: &Message) {
    let _ = (m.start(), m.is_request(), m.method(), m.status());
    let _ = (m.request_uri().map(Uri::parse), m.reason());
    let _ = (m.body(), m.wire(), m.buffer().len(), m.head_end());
    let _ = (m.content_length(), m.max_forwards(), m.expires());
    for h in m.headers() {
        let _ = (m.text(h.raw_name), m.text(h.value), m.slice(h.line));
    }
    for &name in NAMES {
        let _ = m.single(name);
        for v in m.values(name) {
            let _ = v.len();
        }
    }
    let _ = m.headers_by_raw_name("subject").count();
    if let Ok(v) = m.top_via() {
        let _ = (v.branch(), v.received(), v.rport(), v.sent_by());
    }
    let _ = (m.call_id(), m.cseq());
    for a in [m.from(), m.to()].into_iter().flatten() {
        let _ = (a.tag(), a.parsed_uri());
    }
    if let Ok(cs) = m.contacts() {
        for c in cs {
            let _ = (
                c.expires(),
                c.instance(),
                c.reg_id(),
                c.addr().map(|a| a.parsed_uri()),
            );
        }
    }
    for name in [HeaderName::Authorization, HeaderName::ProxyAuthorization] {
        for v in m.values(name) {
            check_credentials(v.as_bytes());
        }
    }
}

/// Limits for reparsing an edited message: room for the lines and bytes the edit adds.
fn grown(limits: &Limits, extra_bytes: usize) -> Limits {
    Limits {
        max_message: limits.max_message + extra_bytes,
        max_headers: limits.max_headers + 4,
    }
}

/// Parses one datagram and checks it as the `sip_parse` fuzz target does.
pub fn check_datagram(data: &[u8]) {
    let limits = Limits::default();
    let Ok(m) = Message::parse_datagram(Bytes::copy_from_slice(data), &limits) else {
        return;
    };
    exercise(&m);
    let valid = if m.is_request() {
        m.validate_request().is_ok()
    } else {
        m.validate_response().is_ok()
    };
    let before = valid.then(|| views(&m));

    // A proxy's splice: new top Via and Record-Route, Max-Forwards decremented, top Route gone.
    let mut e = m.edit();
    e.prepend_header(NEW_VIA);
    if m.is_request() {
        e.prepend_header(NEW_RR);
        if let Some(mf) = m.headers_named(HeaderName::MaxForwards).next() {
            let n = m.max_forwards().ok().flatten().unwrap_or(1);
            e.replace_value(mf, &n.saturating_sub(1).to_string());
        }
        if let Some(route) = m.headers_named(HeaderName::Route).next() {
            e.remove_header(route);
        }
    }
    let out = e.finish();
    let reparsed = Message::parse_datagram(out.clone(), &grown(&limits, 256));
    if let Some(before) = &before {
        let m2 = reparsed.unwrap_or_else(|err| {
            panic!("spliced message no longer parses: {err}\n{}", show(&out))
        });
        let ok = if m2.is_request() {
            m2.validate_request()
        } else {
            m2.validate_response()
        };
        ok.unwrap_or_else(|err| panic!("spliced message no longer valid: {err}\n{}", show(&out)));
        assert_eq!(&views(&m2), before, "views changed by the splice");
        let top = m2.top_via().expect("validated Via");
        assert_eq!(top.branch(), Some("z9hG4bK.fuzz.1"), "new Via is on top");
        assert_eq!(
            m2.values(HeaderName::Via).count(),
            m.values(HeaderName::Via).count() + 1
        );
        assert_eq!(m2.body(), m.body(), "body unchanged by the splice");
        assert_eq!(m2.wire(), out, "reparsed message spans the whole output");
        exercise(&m2);
    }

    // A body swap (SDP rewrite): Content-Length follows the new body.
    let body = Bytes::from_static(b"v=0\r\no=- 1 1 IN IP4 10.20.0.1\r\n");
    let mut e = m.edit();
    e.set_body(body.clone());
    let out = e.finish();
    let reparsed = Message::parse_datagram(out.clone(), &grown(&limits, 256));
    if let Some(before) = &before {
        let m2 = reparsed.unwrap_or_else(|err| {
            panic!(
                "message with a new body no longer parses: {err}\n{}",
                show(&out)
            )
        });
        assert_eq!(m2.body(), &body[..], "new body\n{}", show(&out));
        assert_eq!(m2.content_length(), Ok(Some(body.len())));
        assert_eq!(&views(&m2), before, "views changed by the body swap");
    }
}

/// The `sip_stream` fuzz input: the first byte says how many of the following bytes (modulo
/// 16) are chunk sizes; the rest is the stream.
pub fn check_stream_input(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (cuts, stream) = rest.split_at(usize::from(n % 16).min(rest.len()));
    check_stream(stream, cuts);
}

/// Feeds `data` to a stream connection in chunks whose sizes come from `cuts` (each taken
/// modulo 64, plus one), framing after each chunk as the TCP transport does, and checks the
/// frames against feeding the whole input at once.
pub fn check_stream(data: &[u8], cuts: &[u8]) {
    let limits = Limits {
        max_message: 2048,
        max_headers: 32,
    };
    let whole = frames(&[data], &limits);
    let mut chunks = Vec::new();
    let mut at = 0;
    let mut sizes = cuts.iter().cycle();
    while at < data.len() {
        let n = sizes
            .next()
            .map_or(data.len(), |&c| usize::from(c % 64) + 1);
        let end = (at + n).min(data.len());
        chunks.push(&data[at..end]);
        at = end;
    }
    let chunked = frames(&chunks, &limits);
    assert_eq!(whole, chunked, "framing depends on chunk boundaries");
}

/// What a connection makes of a byte stream: each frame's bytes (keep-alives as `None`), and
/// whether it ended in an error (the connection would be closed) or with leftover bytes.
#[derive(Debug, PartialEq)]
pub struct Frames {
    pub frames: Vec<Option<Bytes>>,
    pub error: bool,
    pub leftover: usize,
}

/// Runs framing over the chunks in order, parsing each framed message.
pub fn frames(chunks: &[&[u8]], limits: &Limits) -> Frames {
    let mut buf = BytesMut::new();
    let mut out = Frames {
        frames: Vec::new(),
        error: false,
        leftover: 0,
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match frame_stream(&buf, limits) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive { len, .. }) => {
                    assert!(len > 0 && len <= buf.len(), "keep-alive length {len}");
                    let _ = buf.split_to(len);
                    out.frames.push(None);
                }
                Ok(Frame::Message { len }) => {
                    assert!(len > 0 && len <= buf.len(), "message length {len}");
                    let msg = buf.split_to(len).freeze();
                    check_framed(&msg, limits);
                    out.frames.push(Some(msg));
                }
                Err(_) => {
                    out.error = true;
                    return out;
                }
            }
        }
    }
    out.leftover = buf.len();
    out
}

/// A framed message either fails to parse or parses to exactly the framed bytes.
fn check_framed(msg: &Bytes, limits: &Limits) {
    let Ok(m) = Message::parse_framed(msg.clone(), limits) else {
        return;
    };
    exercise(&m);
    let _ = m.validate_request();
    assert_eq!(
        m.body_span().end,
        msg.len(),
        "framing and parsing disagree on where the message ends\n{}",
        show(msg)
    );
}

/// Parses a digest credentials value as the `digest_header` fuzz target does.
pub fn check_credentials(data: &[u8]) {
    let Ok(c) = parse_credentials(data) else {
        return;
    };
    check_credential_invariants(&c);
    let _ = verify(&c, "REGISTER", "00000000000000000000000000000000");
}

fn check_credential_invariants(c: &Credentials) {
    assert_eq!(c.qop.is_some(), c.cnonce.is_some(), "qop iff cnonce: {c:?}");
    assert_eq!(c.qop.is_some(), c.nc.is_some(), "qop iff nc: {c:?}");
    if let Some(nc) = &c.nc {
        assert_eq!(nc.as_str().len(), 8);
        assert_eq!(u32::from_str_radix(nc.as_str(), 16), Ok(nc.value()));
    }
    let _ = c.hash_algorithm();
}

/// A message for a panic message: lossy text, control characters escaped.
fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).escape_debug().to_string()
}

// ---- SDP rewriter ---------------------------------------------------------------------------

/// Bytes of an `sdp_rewrite` input before the body: flags, a 16-byte relay address, the first
/// RTP port and the first RTCP port (big endian).
pub const SDP_HEADER: usize = 1 + 16 + 2 + 2;

/// The `sdp_rewrite` fuzz input: `SDP_HEADER` bytes choosing the relay address and ports (flag
/// bit 0: IPv6, else the first 4 address bytes are IPv4; bit 1: give one port pair too many),
/// then the SDP body. Stream `i` gets RTP port `rtp + 2i` and RTCP port `rtcp + 2i`.
pub fn check_sdp_input(data: &[u8]) {
    if data.len() < SDP_HEADER {
        return;
    }
    let (head, body) = data.split_at(SDP_HEADER);
    let octets: [u8; 16] = head[1..17].try_into().expect("16 bytes by construction");
    let addr = if head[0] & 1 == 1 {
        IpAddr::V6(Ipv6Addr::from(octets))
    } else {
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
    };
    let rtp = u16::from_be_bytes([head[17], head[18]]);
    let rtcp = u16::from_be_bytes([head[19], head[20]]);
    check_sdp(body, addr, rtp, rtcp, head[0] & 2 == 2);
}

/// Parses `body` and rewrites it towards `addr`, then checks what the relay relies on:
/// - every line other than `c=`, `m=` and `a=rtcp:` is byte-identical, line ends included;
/// - an enabled stream's `m=` line differs only in its port, which is the relay's;
/// - the result parses to the same streams (kind, direction, rtcp-mux), each enabled one now
///   at the relay address and ports, so no media can bypass the relay;
/// - a wrong number of port pairs is an error, never a partial rewrite.
pub fn check_sdp(body: &[u8], addr: IpAddr, rtp: u16, rtcp: u16, extra_pair: bool) {
    let Ok(before) = sdp::parse(body) else {
        assert!(
            sdp::rewrite(body, addr, &[]).is_err(),
            "rewrite accepted a body parse rejects"
        );
        return;
    };
    let n = before.streams.len() + usize::from(extra_pair);
    let ports: Vec<RelayPorts> = (0..n)
        .map(|i| {
            let step = (2 * i) as u16;
            RelayPorts {
                rtp: rtp.wrapping_add(step),
                rtcp: rtcp.wrapping_add(step),
            }
        })
        .collect();
    let out = match sdp::rewrite(body, addr, &ports) {
        Ok(out) => out,
        Err(SdpError::PortCount(..)) => {
            assert!(extra_pair, "port count error with one pair per stream");
            return;
        }
        Err(SdpError::NoConnection(i)) => {
            let s = &before.streams[i];
            assert!(
                !s.is_disabled() && s.address.is_none(),
                "wrong NoConnection({i})"
            );
            return;
        }
        Err(e) => panic!("rewrite failed on a body that parses: {e}\n{}", show(body)),
    };
    assert!(!extra_pair, "rewrite accepted one port pair too many");
    let text = std::str::from_utf8(body).expect("parse checked UTF-8");
    let new = std::str::from_utf8(&out).expect("rewrite of UTF-8 is UTF-8");
    let old_lines: Vec<&str> = text.split('\n').collect();
    let new_lines: Vec<&str> = new.split('\n').collect();
    assert_eq!(
        old_lines.len(),
        new_lines.len(),
        "line count changed\n{}",
        show(&out)
    );
    let mut stream: Option<usize> = None;
    let mut rtcp_line = vec![false; before.streams.len()];
    for (o, w) in old_lines.iter().zip(&new_lines) {
        if let (true, Some(i)) = (o.starts_with("a=rtcp:"), stream) {
            rtcp_line[i] = true;
        }
        if o.starts_with("m=") {
            let i = stream.map_or(0, |s| s + 1);
            stream = Some(i);
            if before.streams[i].is_disabled() {
                assert_eq!(o, w, "disabled stream's m= line changed");
            } else {
                assert_eq!(
                    without_port(o),
                    without_port(w),
                    "m= line changed beyond its port\n{}",
                    show(&out)
                );
            }
        } else if !(o.starts_with("c=") || o.starts_with("a=rtcp:")) {
            assert_eq!(
                o,
                w,
                "a line the relay does not own changed\n{}",
                show(&out)
            );
        }
    }
    let after = sdp::parse(&out)
        .unwrap_or_else(|e| panic!("rewritten SDP does not parse: {e}\n{}", show(&out)));
    assert_eq!(
        after.streams.len(),
        before.streams.len(),
        "stream count changed"
    );
    for (i, (b, a)) in before.streams.iter().zip(&after.streams).enumerate() {
        assert_eq!(
            (&b.kind, b.direction, b.rtcp_mux),
            (&a.kind, a.direction, a.rtcp_mux),
            "stream {i} changed\n{}",
            show(&out)
        );
        if b.is_disabled() {
            assert_eq!(a.port, 0, "disabled stream {i} enabled");
            continue;
        }
        assert_eq!(a.port, ports[i].rtp, "stream {i} port\n{}", show(&out));
        assert_eq!(a.address, Some(addr), "stream {i} address\n{}", show(&out));
        assert_eq!(
            a.rtcp_port,
            rtcp_line[i].then_some(ports[i].rtcp),
            "stream {i} RTCP port\n{}",
            show(&out)
        );
    }
}

/// An `m=` line with its port token (the second whitespace-separated field of the value after
/// `m=`, up to any `/`) taken out.
fn without_port(line: &str) -> String {
    let v = line.strip_prefix("m=").unwrap_or(line);
    let starts: Vec<usize> = v
        .char_indices()
        .filter(|&(i, c)| {
            !c.is_whitespace() && v[..i].chars().next_back().is_none_or(char::is_whitespace)
        })
        .map(|(i, _)| i)
        .take(2)
        .collect();
    let Some(&at) = starts.get(1) else {
        return line.to_owned();
    };
    let len = v[at..]
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(v.len() - at);
    format!("m={}{}", &v[..at], &v[at + len..])
}

// ---- dialplan files -------------------------------------------------------------------------

const PROVINCE: &str = include_str!("../../dialplan/province.toml");
const NEIGHBOUR: (&str, &str) = ("setda.toml", include_str!("../../dialplan/setda.toml"));

/// The `dialplan_file` fuzz input: byte 0 bit 0 set means the rest is `province.toml` (with
/// the shipped `setda.toml` beside it); clear means the rest is an OPD file, validated with
/// the shipped `province.toml` and `setda.toml` and named after the first `code = "…"` in
/// it (so a valid file stays valid).
pub fn check_dialplan_input(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    check_dialplan(text, flags & 1 == 1);
}

/// Validates one fuzzed dialplan file among shipped ones. The loader must not panic, must
/// agree with itself, and every error must name one of the files and a line inside it.
pub fn check_dialplan(text: &str, is_province: bool) {
    let dir = Path::new("/dialplan");
    let fuzzed = if is_province {
        dir.join("province.toml")
    } else {
        dir.join(format!("{}.toml", code_in(text).unwrap_or("opd")))
    };
    let mut files = vec![(fuzzed.clone(), text.to_owned())];
    if !is_province {
        // Without the shipped rooms: they name OPDs this small directory does not have.
        let province = PROVINCE
            .find("\n[[room]]")
            .map_or(PROVINCE, |at| &PROVINCE[..=at]);
        files.push((dir.join("province.toml"), province.to_owned()));
    }
    if fuzzed != dir.join(NEIGHBOUR.0) {
        files.push((dir.join(NEIGHBOUR.0), NEIGHBOUR.1.to_owned()));
    }
    let result = Dialplan::from_sources(dir, files.clone());
    match &result {
        Ok(plan) => {
            let opd_files = files.len() - 1;
            assert_eq!(plan.opds().len(), opd_files, "an OPD file went missing");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "Err without errors");
            for e in &errors.0 {
                let (_, src) = files
                    .iter()
                    .find(|(p, _)| *p == e.file)
                    .unwrap_or_else(|| panic!("error names an unknown file: {e}"));
                let last = src.split('\n').count();
                assert!(
                    (1..=last).contains(&e.line),
                    "error line {} outside 1..={last}: {e}\n{}",
                    e.line,
                    text.escape_debug()
                );
                assert!(!e.reason.trim().is_empty(), "error without a reason: {e}");
            }
        }
    }
    let again = Dialplan::from_sources(dir, files).map(|p| p.opds().len());
    assert_eq!(
        result.map(|p| p.opds().len()),
        again,
        "the same files validated twice differ"
    );
}

/// The value of the first `code = "…"` line, if it is a plain file name.
fn code_in(text: &str) -> Option<&str> {
    text.lines().find_map(|l| {
        let v = l
            .trim()
            .strip_prefix("code")?
            .trim_start()
            .strip_prefix('=')?;
        let v = v.trim().strip_prefix('"')?.split('"').next()?;
        (!v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(v)
    })
}

// ---- RTP ------------------------------------------------------------------------------------

/// The clock rates an `rtp_parse` input chooses from (flags bits 0–1).
const CLOCK_RATES: [u32; 4] = [8000, 16000, 48000, 90000];
/// The phones of the fuzzed session: A sends from where it announced, B only announced.
const PHONE_A: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000);
const PHONE_A_RTCP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4001);
const PHONE_B: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5000);
const PHONE_B_RTCP: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 5001);
const STRANGER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 66)), 4000);
/// The most one packet can add to the loss: a forward jump below RFC 3550's `MAX_DROPOUT`
/// (3000) adds the gap and counts the packet itself.
const MAX_LOSS_STEP: u64 = 2998;

/// The `rtp_parse` fuzz input, read twice. As a whole: one datagram for the RTP header parser
/// (`check_rtp_header`). Then as a packet sequence: byte 0 is flags (bits 0–1: the stream's
/// clock rate, `CLOCK_RATES`; bit 2: rtcp-mux), then records `[gap ms][length][bytes]` (the
/// last one cut short by the end of the input), each a datagram arriving `gap` ms after the
/// previous one on side A of an open one-stream session whose side B announced an address:
/// - on A's RTP socket from A's source it is forwarded unchanged, out of B's RTP socket to B,
///   whatever its bytes, and (when it parses) counted for loss and jitter;
/// - without rtcp-mux, on A's RTCP socket it is forwarded out of B's RTCP socket to B's port + 1;
/// - from another source on A's latched RTP socket it is dropped as foreign;
/// - A's counters are the packets, bytes and drops of the run, the loss and jitter are those
///   of `RtpCounters` fed the same packets (never more than `MAX_LOSS_STEP` loss per packet,
///   jitter no more than its largest transit difference), B's are zero, and closing frees
///   every socket of the session.
pub fn check_rtp_input(data: &[u8]) {
    check_rtp_header(data);
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let rate = CLOCK_RATES[usize::from(flags & 3)];
    let rtcp_mux = flags & 4 != 0;
    let id = SessionId(1);
    let mut now = Instant::now();
    let mut table = Table::new(false);
    let slots = table.handle_open(id, 1, 1, rtcp_mux, now)[0];
    assert!(table.handle_set_remote(id, 0, Side::A, PHONE_A, None, now));
    assert!(table.handle_set_remote(id, 0, Side::B, PHONE_B, None, now));
    assert!(table.handle_clock_rate(id, 0, rate));
    let mut counters = RtpCounters::default();
    let (mut packets, mut bytes, mut foreign) = (0u64, 0u64, 0u64);
    while let [gap, len, tail @ ..] = rest {
        let (packet, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        now += Duration::from_millis(u64::from(*gap));
        check_rtp_header(packet);
        let verdict = table.handle_packet(slots.rtp[0], PHONE_A, packet, now);
        let to_b = Verdict::Forward {
            via: slots.rtp[1],
            to: PHONE_B,
        };
        assert_eq!(verdict, to_b, "RTP from A's source: {packet:02x?}");
        packets += 1;
        bytes += packet.len() as u64;
        let lost = counters.lost();
        if let Some(h) = RtpHeader::parse(packet) {
            counters.record(&h, now, rate);
        }
        assert!(
            counters.lost() <= lost + MAX_LOSS_STEP,
            "one packet added {} to the loss: {packet:02x?}",
            counters.lost() - lost
        );
        if let Some(rtcp) = slots.rtcp {
            let verdict = table.handle_packet(rtcp[0], PHONE_A_RTCP, packet, now);
            let to_b = Verdict::Forward {
                via: rtcp[1],
                to: PHONE_B_RTCP,
            };
            assert_eq!(verdict, to_b, "RTCP from A's source: {packet:02x?}");
            packets += 1;
            bytes += packet.len() as u64;
        }
        let verdict = table.handle_packet(slots.rtp[0], STRANGER, packet, now);
        assert_eq!(verdict, Verdict::Drop(DropReason::Foreign));
        foreign += 1;
    }
    // |D| is at most the largest arrival gap (255 ms) plus 2^31 timestamp units (RFC 3550
    // §6.4.1 with a signed timestamp difference); the jitter is a running mean of |D|.
    let max_transit = (1u64 << 31) + 255 * u64::from(rate) / 1000 + 1;
    let jitter = counters.jitter(rate);
    assert!(
        jitter <= Duration::from_nanos(max_transit * 1_000_000_000 / u64::from(rate)),
        "jitter {jitter:?} beyond any transit difference"
    );
    let stats = table.stats(id, now).expect("the session is open");
    let (a, b) = (&stats[0], &stats[1]);
    assert_eq!(
        (
            a.packets,
            a.bytes,
            a.dropped_foreign,
            a.dropped_no_destination
        ),
        (packets, bytes, foreign, 0),
        "A's counters"
    );
    assert_eq!(a.source, (packets > 0).then_some(PHONE_A));
    assert_eq!(a.lost, counters.lost());
    assert_eq!(a.jitter_ms, jitter.as_secs_f64() * 1000.0);
    assert_eq!((b.packets, b.bytes, b.lost, b.source), (0, 0, 0, None));
    let closed = table.handle_close(id);
    assert_eq!(closed.len(), if rtcp_mux { 2 } else { 4 });
    assert!(table.stats(id, now).is_none() && table.is_empty());
}

/// `RtpHeader::parse` on one datagram: a header exactly for version 2, at least
/// `RTP_HEADER_LEN` bytes and a second octet outside RTCP's 192..=223 (RFC 5761 §4), with
/// every field read from its place in those first bytes.
pub fn check_rtp_header(packet: &[u8]) {
    let header = RtpHeader::parse(packet);
    let is_rtp =
        packet.len() >= RTP_HEADER_LEN && packet[0] >> 6 == 2 && !(192..=223).contains(&packet[1]);
    assert_eq!(header.is_some(), is_rtp, "{packet:02x?}");
    if let Some(h) = header {
        assert_eq!(h.payload_type, packet[1] & 0x7f);
        assert_eq!(h.sequence.to_be_bytes(), packet[2..4]);
        assert_eq!(h.timestamp.to_be_bytes(), packet[4..8]);
        assert_eq!(h.ssrc.to_be_bytes(), packet[8..12]);
    }
}

/// The codecs a room or a transcoded call decodes from the network (`media_codecs`): byte 0
/// picks the pair (bits 0–1 the sender's codec, 2–3 the receiver's: PCMU, PCMA, G.722,
/// Opus; bit 4: both have RFC 4733 events), then records `[length][bytes]` (the last cut
/// short by the end of the input), each an RTP datagram from the sender. Each goes into a
/// [`Transcoder`] and, as Opus, into a room's [`opus::Receiver`]: no panic; every packet
/// out is a 12-byte header and at most `MAX_PACKET` bytes with the receiver's audio or event
/// payload type, the sender's SSRC; at most one audio packet per 20 ms queued.
pub fn check_codec_input(data: &[u8]) {
    use tambun::media::mixer::{g711::Law, opus, Codec, FRAME_SAMPLES};
    use tambun::media::transcode::{CodecSpec, Transcoder, MAX_PACKET};
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let codec = |bits: u8| match bits & 3 {
        0 => Codec::G711(Law::Mu),
        1 => Codec::G711(Law::A),
        2 => Codec::G722,
        _ => Codec::Opus,
    };
    let dtmf = flags & 16 != 0;
    let from = CodecSpec {
        codec: codec(flags),
        pt: 96,
        dtmf: dtmf.then_some((101, 8000)),
    };
    let to = CodecSpec {
        codec: codec(flags >> 2),
        pt: 97,
        dtmf: dtmf.then_some((102, 48000)),
    };
    let mut t = Transcoder::new(from, to, 7);
    let mut room = opus::Receiver::new(Duration::from_millis(40));
    let mut out = [0u8; MAX_PACKET];
    let mut pcm = [0i16; FRAME_SAMPLES];
    let mut seq = 0u16;
    while let [len, tail @ ..] = rest {
        let (packet, next) = tail.split_at(usize::from(*len).min(tail.len()));
        rest = next;
        let ssrc = RtpHeader::parse(packet).map(|h| h.ssrc);
        let took = t.push(packet);
        let mut audio = 0;
        while let Some(n) = t.pop(&mut out) {
            assert!((RTP_HEADER_LEN..=MAX_PACKET).contains(&n), "{n} bytes out");
            let h = RtpHeader::parse(&out[..n]).expect("our own packets parse");
            assert!(took, "a packet out of one that was refused");
            assert_eq!(Some(h.ssrc), ssrc, "the sender's SSRC");
            if h.payload_type == 97 {
                audio += 1;
            } else {
                assert_eq!(h.payload_type, 102, "the receiver's event payload type");
            }
            assert!(
                audio <= 1 + packet.len() * 6 / FRAME_SAMPLES,
                "{audio} packets from one"
            );
        }
        room.push(
            seq,
            u32::from(seq).wrapping_mul(960),
            packet.get(12..).unwrap_or_default(),
        );
        room.pop(&mut pcm);
        seq = seq.wrapping_add(1);
    }
}
