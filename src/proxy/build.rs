//! Messages the proxy forwards or creates, as splices of the message it received (RFC 3261
//! §16.6 request forwarding, §16.7 response forwarding) or as small new requests (ACK for a
//! non-2xx final response, §17.1.1.3; CANCEL, §9.1).
//!
//! Pure functions over [`Message`]; no state, no I/O.

use std::fmt::Write as _;

use bytes::Bytes;

use crate::sip::headers::split_list;
use crate::sip::message::{Header, HeaderName, Message};

/// How to forward one request to one target.
pub struct Hop<'a> {
    /// The new top Via value (`SIP/2.0/UDP 127.0.0.1:5060;branch=…;rport`).
    pub via: &'a str,
    /// Record-Route values to add on top, in order (top first).
    pub record_route: &'a [String],
    /// A new Request-URI (the target's contact), or keep the one received.
    pub request_uri: Option<&'a str>,
    /// How many Route values to remove from the top (those that name this switch).
    pub pop_routes: usize,
    /// Drop the credentials meant for this switch.
    pub strip_proxy_authorization: bool,
    /// Toward a carrier: the caller's public number as the From URI's user.
    pub from_user: Option<&'a str>,
    /// Toward a carrier: header lines to add (`P-Asserted-Identity: …`, maybe none); any
    /// identity header the phone sent is removed first (a phone must not assert one, RFC
    /// 3325). `None` toward phones.
    pub identity: Option<&'a [String]>,
    /// Toward a carrier: the offer cut to its codecs.
    pub body: Option<Bytes>,
    /// Added to the CSeq number (a carrier challenged this dialog before, [`super::Proxy`]'s
    /// `cseq_shifts`); 0 keeps it.
    pub cseq_shift: u32,
}

/// The request as forwarded on one branch.
pub fn forward_request(msg: &Message, hop: &Hop<'_>) -> Bytes {
    let mut e = msg.edit();
    if let Some(uri) = hop.request_uri {
        e.set_request_uri(uri);
    }
    e.prepend_header(&format!("Via: {}", hop.via));
    // Splices at one position keep their order, so the top value goes in first.
    for rr in hop.record_route {
        e.insert_before(HeaderName::RecordRoute, &format!("Record-Route: {rr}"));
    }
    match msg.headers_named(HeaderName::MaxForwards).next() {
        Some(h) => {
            let n = msg.max_forwards().ok().flatten().unwrap_or(70);
            e.replace_value(h, &n.saturating_sub(1).to_string());
        }
        None => {
            e.append_header("Max-Forwards: 70");
        }
    }
    if hop.strip_proxy_authorization {
        for h in msg.headers_named(HeaderName::ProxyAuthorization) {
            e.remove_header(h);
        }
    }
    pop_values(msg, &mut e, HeaderName::Route, hop.pop_routes);
    if let Some(user) = hop.from_user {
        if let Some(h) = msg.headers_named(HeaderName::From).next() {
            if let Some(v) = with_uri_user(msg.text(h.value), user) {
                e.replace_value(h, &v);
            }
        }
    }
    if let Some(body) = &hop.body {
        e.set_body(body.clone());
    }
    if hop.cseq_shift > 0 {
        shift_cseq(msg, &mut e, hop.cseq_shift as i64);
    }
    if let Some(lines) = hop.identity {
        for name in [
            "P-Asserted-Identity",
            "P-Preferred-Identity",
            "Remote-Party-ID",
        ] {
            for h in msg.headers_by_raw_name(name) {
                e.remove_header(h);
            }
        }
        for line in lines {
            e.append_header(line);
        }
    }
    e.finish()
}

/// A From/To value with the user part of its SIP URI replaced (display name, host and
/// parameters kept); `None` when it holds no `sip:`/`sips:` URI with a user.
fn with_uri_user(value: &str, user: &str) -> Option<String> {
    let start = value.find("sip:").or_else(|| value.find("sips:"))?;
    let after_scheme = start + value[start..].find(':')? + 1;
    let at = after_scheme + value[after_scheme..].find('@')?;
    let end = value[after_scheme..]
        .find('>')
        .map_or(value.len(), |i| after_scheme + i);
    if at > end {
        return None;
    }
    Some(format!("{}{user}{}", &value[..after_scheme], &value[at..]))
}

/// Removes the first `n` values of a list header, rewriting a line that keeps some values.
fn pop_values(msg: &Message, e: &mut crate::sip::message::Editor<'_>, name: HeaderName, n: usize) {
    let mut left = n;
    let headers: Vec<Header> = msg.headers_named(name).copied().collect();
    for h in &headers {
        if left == 0 {
            break;
        }
        let values: Vec<&str> = split_list(msg.text(h.value)).collect();
        if values.len() <= left {
            left -= values.len();
            e.remove_header(h);
        } else {
            e.replace_value(h, &values[left..].join(", "));
            left = 0;
        }
    }
}

/// Moves the CSeq number by `by` (the method stays).
fn shift_cseq(msg: &Message, e: &mut crate::sip::message::Editor<'_>, by: i64) {
    let (Some(h), Ok(cseq)) = (msg.headers_named(HeaderName::CSeq).next(), msg.cseq()) else {
        return;
    };
    let n = (i64::from(cseq.seq) + by).clamp(0, i64::from(u32::MAX));
    e.replace_value(h, &format!("{n} {}", cseq.method.as_str()));
}

/// The response as forwarded upstream: our top Via removed, and the CSeq number a
/// challenge moved (`cseq_shift`, see [`Hop::cseq_shift`]) put back.
pub fn forward_response(msg: &Message, cseq_shift: u32) -> Bytes {
    let mut e = msg.edit();
    pop_values(msg, &mut e, HeaderName::Via, 1);
    if cseq_shift > 0 {
        shift_cseq(msg, &mut e, -(cseq_shift as i64));
    }
    e.finish()
}

/// The request `sent` on a branch sent again with credentials: a new top Via (`via`), the
/// CSeq number one up, and `credentials` (an `Authorization:` or `Proxy-Authorization:`
/// line) in place of any sent before (RFC 3261 §22.2, §8.1.3.5).
pub fn with_credentials(sent: &Message, via: &str, credentials: &str) -> Bytes {
    let mut e = sent.edit();
    if let Some(h) = sent.headers_named(HeaderName::Via).next() {
        // Our own Via line holds one value: ours.
        e.replace_value(h, via);
    }
    shift_cseq(sent, &mut e, 1);
    for name in [HeaderName::Authorization, HeaderName::ProxyAuthorization] {
        for h in sent.headers_named(name) {
            e.remove_header(h);
        }
    }
    e.append_header(credentials);
    e.finish()
}

/// The values of the top Via and the Route headers of a request we sent, for building the ACK
/// or CANCEL of that branch.
fn hop_headers(sent: &Message) -> (String, Vec<String>) {
    let via = sent
        .values(HeaderName::Via)
        .next()
        .unwrap_or("")
        .to_string();
    let routes = sent.values(HeaderName::Route).map(str::to_string).collect();
    (via, routes)
}

fn new_request(method: &str, sent: &Message, to: &str) -> Bytes {
    let (via, routes) = hop_headers(sent);
    let mut out = String::with_capacity(512);
    let cseq = sent.cseq().map(|c| c.seq).unwrap_or(1);
    let _ = write!(
        out,
        "{method} {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n",
        sent.request_uri().unwrap_or("")
    );
    for r in routes {
        let _ = write!(out, "Route: {r}\r\n");
    }
    let _ = write!(
        out,
        "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n",
        sent.header(HeaderName::From).unwrap_or(""),
        sent.call_id().unwrap_or(""),
    );
    Bytes::from(out)
}

/// The ACK for a non-2xx final response to an INVITE we sent (hop by hop).
pub fn ack_for(sent_invite: &Message, response: &Message) -> Bytes {
    let to = response
        .header(HeaderName::To)
        .or(sent_invite.header(HeaderName::To))
        .unwrap_or("");
    new_request("ACK", sent_invite, to)
}

/// The CANCEL of an INVITE we sent.
pub fn cancel_for(sent_invite: &Message) -> Bytes {
    new_request(
        "CANCEL",
        sent_invite,
        sent_invite.header(HeaderName::To).unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::Limits;

    fn parse(b: &[u8]) -> Message {
        Message::parse_datagram(Bytes::copy_from_slice(b), &Limits::default()).unwrap()
    }

    const INVITE: &[u8] = b"INVITE sip:2300@10.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKa\r\n\
Route: <sip:10.0.0.1;lr>, <sip:10.0.0.2;lr>\r\n\
Max-Forwards: 70\r\nFrom: <sip:1000@x>;tag=f\r\nTo: <sip:2300@x>\r\nCall-ID: c\r\n\
CSeq: 5 INVITE\r\nProxy-Authorization: Digest username=\"1000\"\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn forwards_with_via_rr_and_popped_route() {
        let m = parse(INVITE);
        let rr = vec!["<sip:10.0.0.1;lr>".to_string()];
        let out = forward_request(
            &m,
            &Hop {
                via: "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKtb1",
                record_route: &rr,
                request_uri: Some("sip:2300@10.0.0.5:5062"),
                pop_routes: 1,
                strip_proxy_authorization: true,
                from_user: None,
                identity: None,
                body: None,
                cseq_shift: 0,
            },
        );
        let f = parse(&out);
        f.validate_request().unwrap();
        assert_eq!(f.request_uri(), Some("sip:2300@10.0.0.5:5062"));
        assert_eq!(f.top_via().unwrap().branch(), Some("z9hG4bKtb1"));
        assert_eq!(f.values(HeaderName::Via).count(), 2);
        assert_eq!(f.max_forwards().unwrap(), Some(69));
        assert_eq!(
            f.values(HeaderName::Route).collect::<Vec<_>>(),
            vec!["<sip:10.0.0.2;lr>"]
        );
        assert_eq!(f.header(HeaderName::RecordRoute), Some("<sip:10.0.0.1;lr>"));
        assert!(f.header(HeaderName::ProxyAuthorization).is_none());
        // The response path: our Via comes off again.
        let resp = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKtb1, SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKa\r\nFrom: <sip:1000@x>;tag=f\r\nTo: <sip:2300@x>;tag=t\r\nCall-ID: c\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n";
        let r = parse(&forward_response(&parse(resp), 0));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKa"));
        assert_eq!(r.values(HeaderName::Via).count(), 1);
        // ACK and CANCEL of that branch.
        let ack = parse(&ack_for(&f, &parse(resp)));
        ack.validate_request().unwrap();
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKtb1"));
        assert_eq!(ack.to().unwrap().tag(), Some("t"));
        let cancel = parse(&cancel_for(&f));
        cancel.validate_request().unwrap();
        assert_eq!(cancel.cseq().unwrap().seq, 5);
        assert_eq!(cancel.request_uri(), Some("sip:2300@10.0.0.5:5062"));
    }
}
