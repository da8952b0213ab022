//! Responses the switch itself generates (RFC 3261 §8.2.6): Via (all of them, the top one with
//! RFC 3581 `received`/`rport` filled in), From, To (with a To-tag), Call-ID and CSeq copied from
//! the request, then the caller's extra headers and a Content-Length.
//!
//! No I/O. The To-tag is given by the caller (so retransmitted requests get the same one).

use std::fmt::Write as _;
use std::net::SocketAddr;

use bytes::Bytes;

use super::headers::Via;
use super::message::{HeaderName, Message};

/// The reason phrase the switch uses for a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        603 => "Decline",
        _ => "Unknown",
    }
}

/// The top Via with RFC 3581 parameters for a request received from `source`: `received` when
/// the sent-by host is not the source address, `rport=PORT` when the client asked for it.
/// Returns the (start, end) byte range of the top Via value and the text to put there, or `None`
/// when nothing must change.
fn top_via_rewrite(req: &Message, source: SocketAddr) -> Option<(usize, usize, String)> {
    let h = req.headers_named(HeaderName::Via).next()?;
    let value = req.text(h.value);
    let first = super::headers::split_list(value).next()?;
    let via = Via::parse(first).ok()?;
    let src_ip = source.ip().to_string();
    let host_bare = via.host.trim_start_matches('[').trim_end_matches(']');
    let wants_rport = via.rport().is_some();
    let needs_received = host_bare != src_ip || wants_rport;
    if !needs_received && !wants_rport {
        return None;
    }
    // Rebuild the first Via value: its params without received/rport, then ours.
    let mut out = String::with_capacity(first.len() + 40);
    let params_start = first.len() - via.params.as_str().len();
    out.push_str(first[..params_start].trim_end());
    for (name, val) in via.params.iter().map_while(Result::ok) {
        if name.eq_ignore_ascii_case("received") || name.eq_ignore_ascii_case("rport") {
            continue;
        }
        out.push(';');
        out.push_str(name);
        if let Some(v) = val {
            out.push('=');
            out.push_str(v);
        }
    }
    if needs_received {
        let _ = write!(out, ";received={src_ip}");
    }
    if wants_rport {
        let _ = write!(out, ";rport={}", source.port());
    }
    // Locate `first` inside the header value to replace exactly that element.
    let off = value.find(first)?;
    let start = h.value.start + off;
    Some((start, start + first.len(), out))
}

/// Builds a response to `req`. `to_tag` is added to To when it has none and the status is not
/// 100. `extra` are complete header lines without line ends.
pub fn build(
    req: &Message,
    source: SocketAddr,
    status: u16,
    to_tag: Option<&str>,
    extra: &[String],
    body: Option<(&str, &[u8])>,
) -> Bytes {
    let mut out = String::with_capacity(512);
    let _ = write!(out, "SIP/2.0 {status} {}\r\n", reason_phrase(status));
    let via_fix = top_via_rewrite(req, source);
    for h in req.headers() {
        let copy = matches!(
            h.name,
            HeaderName::Via
                | HeaderName::From
                | HeaderName::To
                | HeaderName::CallId
                | HeaderName::CSeq
        );
        if !copy {
            continue;
        }
        let name = h.name.as_str();
        let mut value = req.text(h.value).to_string();
        if let Some((s, e, ref new)) = via_fix {
            if s >= h.value.start && e <= h.value.end {
                let (a, b) = (s - h.value.start, e - h.value.start);
                value.replace_range(a..b, new);
            }
        }
        // Folded values are unfolded into one line.
        if value.contains(['\r', '\n']) {
            value = value
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
        }
        if h.name == HeaderName::To && status != 100 {
            if let Some(tag) = to_tag {
                let has_tag = req.to().map(|t| t.tag().is_some()).unwrap_or(true);
                if !has_tag {
                    let _ = write!(value, ";tag={tag}");
                }
            }
        }
        let _ = write!(out, "{name}: {value}\r\n");
    }
    for line in extra {
        out.push_str(line);
        out.push_str("\r\n");
    }
    match body {
        Some((ctype, b)) => {
            let _ = write!(
                out,
                "Content-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                b.len()
            );
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(b);
            Bytes::from(bytes)
        }
        None => {
            out.push_str("Content-Length: 0\r\n\r\n");
            Bytes::from(out)
        }
    }
}

/// A To-tag that is the same for every retransmission of a request.
pub fn our_to_tag(msg: &Message) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    msg.call_id().unwrap_or("").hash(&mut h);
    msg.from_tag().hash(&mut h);
    format!("tb{:012x}", h.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Limits;

    #[test]
    fn copies_dialog_headers_and_fills_rport() {
        let req = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKabc;rport, SIP/2.0/UDP 10.0.0.9\r\n\
From: <sip:1000@x>;tag=a\r\nTo: <sip:1000@x>\r\nCall-ID: c1\r\nCSeq: 7 OPTIONS\r\n\
Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        let m = Message::parse_datagram(Bytes::from_static(req), &Limits::default()).unwrap();
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let out = build(&m, src, 200, Some("t1"), &["Allow: INVITE".into()], None);
        let r = Message::parse_datagram(out, &Limits::default()).unwrap();
        assert_eq!(r.status(), Some(200));
        let via = r.top_via().unwrap();
        assert_eq!(via.received(), Some("192.0.2.7"));
        assert_eq!(via.rport(), Some(Some(40000)));
        assert_eq!(via.branch(), Some("z9hG4bKabc"));
        assert_eq!(r.values(HeaderName::Via).count(), 2);
        assert_eq!(r.to().unwrap().tag(), Some("t1"));
        assert_eq!(r.cseq().unwrap().seq, 7);
        assert_eq!(r.header(HeaderName::Allow), Some("INVITE"));
        r.validate_response().unwrap();
    }
}
