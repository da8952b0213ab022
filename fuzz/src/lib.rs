//! The checks the fuzz targets run, shared with `tests/parser_props.rs` (which includes this
//! file by path) so CI replays the corpus through exactly the same code without a fuzzing
//! toolchain.
//!
//! Owns: what "the parser behaved" means for arbitrary input. No panic anywhere; a message that
//! validated stays valid through a proxy-style splice and a body swap, and its typed views
//! survive the edit unchanged; stream framing does not depend on how the bytes were chunked
//! and agrees with the parser on where each message ends; digest credentials keep their
//! documented invariant. Must not: do I/O or keep state between calls.

use bytes::{Bytes, BytesMut};
use tambun::sip::auth::{parse_credentials, verify, Credentials};
use tambun::sip::headers::{Contact, Uri};
use tambun::sip::message::{frame_stream, Frame, HeaderName, Limits, Message};

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
