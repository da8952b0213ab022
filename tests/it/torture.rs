//! Every RFC 4475 / RFC 5118 torture message (tests/data/sip-torture, see its INDEX.md) through
//! the parser and request/response validation, with the handling INDEX.md expects.

use std::path::Path;

use bytes::Bytes;
use tambun::sip::message::{Limits, Message, ParseError};

#[derive(Debug, PartialEq)]
enum Expect {
    /// Parses and validates (the application layer may still answer with an error).
    Accept,
    /// A request rejected with this status.
    Reject(u16),
    /// A response that is dropped.
    Drop,
}

fn outcome(bytes: &[u8]) -> Expect {
    let parsed = Message::parse_datagram(Bytes::copy_from_slice(bytes), &Limits::default());
    let is_response = bytes.starts_with(b"SIP/");
    let res: Result<Message, ParseError> = parsed.and_then(|m| {
        if m.is_request() {
            m.validate_request()?;
        } else {
            m.validate_response()?;
        }
        Ok(m)
    });
    match res {
        Ok(_) => Expect::Accept,
        Err(_) if is_response => Expect::Drop,
        Err(e) => Expect::Reject(e.status()),
    }
}

fn expectations() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    vec![
        // RFC 4475 valid
        ("valid/wsinv.dat", Accept),
        ("valid/intmeth.dat", Accept),
        ("valid/esc01.dat", Accept),
        ("valid/escnull.dat", Accept),
        ("valid/esc02.dat", Accept),
        ("valid/lwsdisp.dat", Accept),
        ("valid/longreq.dat", Accept),
        ("valid/dblreq.dat", Accept),
        ("valid/semiuri.dat", Accept),
        ("valid/transports.dat", Accept),
        ("valid/mpart01.dat", Accept),
        ("valid/unreason.dat", Accept),
        ("valid/noreason.dat", Accept),
        ("valid/badbranch.dat", Accept),
        ("valid/unkscm.dat", Accept),
        ("valid/novelsc.dat", Accept),
        ("valid/unksm2.dat", Accept),
        ("valid/bext01.dat", Accept),
        ("valid/invut.dat", Accept),
        ("valid/regaut01.dat", Accept),
        ("valid/bcast.dat", Accept),
        ("valid/zeromf.dat", Accept),
        ("valid/cparam01.dat", Accept),
        ("valid/cparam02.dat", Accept),
        ("valid/regescrt.dat", Accept),
        ("valid/sdp01.dat", Accept),
        ("valid/inv2543.dat", Accept),
        // RFC 4475 invalid
        ("invalid/badinv01.dat", Reject(400)),
        ("invalid/clerr.dat", Reject(400)),
        ("invalid/ncl.dat", Reject(400)),
        ("invalid/scalar02.dat", Reject(400)),
        ("invalid/scalarlg.dat", Drop),
        ("invalid/quotbal.dat", Reject(400)),
        ("invalid/ltgtruri.dat", Reject(400)),
        ("invalid/lwsruri.dat", Reject(400)),
        ("invalid/lwsstart.dat", Reject(400)),
        ("invalid/trws.dat", Reject(400)),
        ("invalid/escruri.dat", Reject(400)),
        // "Reject only if Date matters. Ignoring it is fine": the switch ignores Date.
        ("invalid/baddate.dat", Accept),
        ("invalid/regbadct.dat", Reject(400)),
        ("invalid/badaspec.dat", Reject(400)),
        ("invalid/baddn.dat", Reject(400)),
        ("invalid/badvers.dat", Reject(505)),
        ("invalid/mismatch01.dat", Reject(400)),
        ("invalid/mismatch02.dat", Reject(400)),
        ("invalid/bigcode.dat", Drop),
        ("invalid/insuf.dat", Reject(400)),
        ("invalid/multi01.dat", Reject(400)),
        ("invalid/mcl01.dat", Reject(400)),
        // RFC 5118
        ("valid/rfc5118-ipv6-good.dat", Accept),
        ("invalid/rfc5118-ipv6-bad.dat", Reject(400)),
        ("valid/rfc5118-port-ambiguous.dat", Accept),
        ("valid/rfc5118-port-unambiguous.dat", Accept),
        ("valid/rfc5118-via-received-param-with-delim.dat", Accept),
        ("valid/rfc5118-via-received-param-no-delim.dat", Accept),
        ("valid/rfc5118-ipv6-in-sdp.dat", Accept),
        ("valid/rfc5118-mult-ip-in-header.dat", Accept),
        ("valid/rfc5118-mult-ip-in-sdp.dat", Accept),
        ("valid/rfc5118-ipv4-mapped-ipv6.dat", Accept),
        ("valid/rfc5118-ipv6-bug-abnf-3-colons.dat", Accept),
        ("valid/rfc5118-ipv6-correct-abnf-2-colons.dat", Accept),
    ]
}

fn dir() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sip-torture"
    ))
}

#[test]
fn every_torture_message_is_handled_as_index_md_says() {
    let mut failures = Vec::new();
    for (file, expect) in expectations() {
        let bytes = std::fs::read(dir().join(file)).expect(file);
        let got = outcome(&bytes);
        if got != expect {
            failures.push(format!("{file}: expected {expect:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_table_covers_every_file() {
    let listed: Vec<&str> = expectations().iter().map(|(f, _)| *f).collect();
    for sub in ["valid", "invalid"] {
        for e in std::fs::read_dir(dir().join(sub)).unwrap() {
            let name = format!("{sub}/{}", e.unwrap().file_name().to_string_lossy());
            assert!(listed.contains(&name.as_str()), "{name} has no expectation");
        }
    }
}

fn parse(file: &str) -> Message {
    let bytes = std::fs::read(dir().join(file)).unwrap();
    Message::parse_datagram(Bytes::from(bytes), &Limits::default()).unwrap()
}

#[test]
fn wsinv_details() {
    use tambun::sip::message::HeaderName;
    let m = parse("valid/wsinv.dat");
    assert_eq!(m.top_via().unwrap().branch(), Some("390skdjuw"));
    assert_eq!(m.from().unwrap().tag(), Some("98asjd8"));
    assert_eq!(m.to().unwrap().tag(), Some("1918181833n"));
    assert_eq!(m.cseq().unwrap().seq, 9);
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.values(HeaderName::Via).count(), 3);
    assert_eq!(m.body().len(), 150);
    let c = m.contacts().unwrap();
    assert_eq!(c.len(), 1);
}

#[test]
fn datagram_details() {
    // dblreq: the trailing INVITE is not part of the message.
    let m = parse("valid/dblreq.dat");
    assert!(m.body().is_empty());
    assert!(!m.wire().windows(6).any(|w| w == b"INVITE"));
    // mpart01: binary body framed by Content-Length.
    assert_eq!(parse("valid/mpart01.dat").body().len(), 553);
    // inv2543: no Content-Length, the body is the rest of the datagram.
    assert_eq!(parse("valid/inv2543.dat").body().len(), 105);
    // escnull: two distinct contacts.
    assert_eq!(parse("valid/escnull.dat").contacts().unwrap().len(), 2);
    // esc02: two contacts, and the method is not REGISTER.
    let m = parse("valid/esc02.dat");
    assert_eq!(m.contacts().unwrap().len(), 2);
    assert_ne!(m.method(), Some(&tambun::sip::message::Method::Register));
    // semiuri: the user part keeps its ';'.
    let m = parse("valid/semiuri.dat");
    let uri = tambun::sip::headers::Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(uri.sip().unwrap().user, Some("user;par=u%40example.net"));
    // RFC 5118 4.3: no port inside the brackets.
    let m = parse("valid/rfc5118-port-ambiguous.dat");
    let uri = tambun::sip::headers::Uri::parse(m.request_uri().unwrap()).unwrap();
    assert_eq!(uri.sip().unwrap().port, None);
    // RFC 5118 4.5: branch after an unbracketed IPv6 received.
    let m = parse("valid/rfc5118-via-received-param-no-delim.dat");
    assert_eq!(m.top_via().unwrap().received(), Some("2001:db8::9:255"));
    assert!(m.top_via().unwrap().branch().is_some());
}
