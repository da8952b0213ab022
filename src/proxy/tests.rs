//! The proxy on simulated time: phones are byte strings in and out of a [`Switch`]; no sockets.
//!
//! [`Switch`]: crate::switch::Switch

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::cdr::Disposition;
use crate::registrar::Account;
use crate::sip::message::{HeaderName, Message};
use crate::sip::transaction::Peer;
use crate::testing::{account, loopback, nonce_of, parse, Digest, Rig, SWITCH};
use crate::types::Transport;

/// What the proxy tests' phones do.
impl Rig {
    /// Registers `ext` with a contact at `port`.
    fn register(&mut self, ext: &str, port: u16) {
        let req = |b: &str, extra: &str| {
            format!(
                "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={b}\r\n\
From: <sip:{ext}@127.0.0.1>;tag=r{port}\r\nTo: <sip:{ext}@127.0.0.1>\r\nCall-ID: reg-{ext}-{port}\r\n\
CSeq: {} REGISTER\r\nContact: <sip:{ext}@127.0.0.1:{port}>\r\n{extra}Content-Length: 0\r\n\r\n",
                if extra.is_empty() { 1 } else { 2 }
            )
        };
        let b = self.branch();
        self.send(port, req(&b, ""));
        let (_, ch) = self.out().pop().unwrap();
        let nonce = nonce_of(&ch, HeaderName::WwwAuthenticate);
        let auth = Digest::new(ext, "REGISTER", "sip:127.0.0.1", &nonce).authorization();
        let b = self.branch();
        self.send(port, req(&b, &auth));
        let (_, ok) = self.out().pop().unwrap();
        assert_eq!(ok.status(), Some(200));
    }

    fn invite_text(&mut self, from: &str, port: u16, to: &str, branch: &str, auth: &str) -> String {
        format!(
            "INVITE sip:{to}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={branch}\r\n\
Max-Forwards: 70\r\nFrom: <sip:{from}@127.0.0.1>;tag=a{port}\r\nTo: <sip:{to}@127.0.0.1>\r\n\
Call-ID: call-{from}-{to}\r\nCSeq: 2 INVITE\r\nContact: <sip:{from}@127.0.0.1:{port}>\r\n{auth}\
Content-Length: 0\r\n\r\n"
        )
    }

    /// Sends an authenticated INVITE from `from` (at `port`) to `to`; returns its branch.
    fn call(&mut self, from: &str, port: u16, to: &str) -> String {
        let b = self.branch();
        let text = self.invite_text(from, port, to, &b, "");
        self.send(port, text);
        let out = self.out();
        let ch = &out.last().unwrap().1;
        assert_eq!(ch.status(), Some(407));
        let nonce = nonce_of(ch, HeaderName::ProxyAuthenticate);
        let uri = format!("sip:{to}@127.0.0.1");
        let auth = Digest::new(from, "INVITE", &uri, &nonce).proxy_authorization();
        let b = self.branch();
        let text = self.invite_text(from, port, to, &b, &auth);
        self.send(port, text);
        b
    }
}

/// A response from a phone to a request the switch sent it.
fn answer(req: &Message, status: u16, to_tag: &str, contact_port: u16) -> String {
    let mut s = format!("SIP/2.0 {status} X\r\n");
    for v in req.values(HeaderName::Via) {
        s.push_str(&format!("Via: {v}\r\n"));
    }
    for v in req.values(HeaderName::RecordRoute) {
        s.push_str(&format!("Record-Route: {v}\r\n"));
    }
    s.push_str(&format!(
        "From: {}\r\nTo: {};tag={to_tag}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:x@127.0.0.1:{contact_port}>\r\nContent-Length: 0\r\n\r\n",
        req.header(HeaderName::From).unwrap(),
        req.header(HeaderName::To).unwrap(),
        req.call_id().unwrap(),
        req.header(HeaderName::CSeq).unwrap(),
    ));
    s
}

/// A Record-Route value without its dialog token (`;tbd=…`), for comparing the rest.
fn without_token(rr: &str) -> String {
    match rr.find(";tbd=") {
        Some(i) => {
            let end = rr[i + 5..].find(['>', ';']).map_or(rr.len(), |j| i + 5 + j);
            format!("{}{}", &rr[..i], &rr[end..])
        }
        None => rr.to_string(),
    }
}

/// The caller's `Route:` line for a dialog whose request (as the callee got it) is `req`: our
/// Record-Route values, reversed (RFC 3261 §12.1.2).
fn caller_route(req: &Message) -> String {
    let mut rr: Vec<&str> = req.values(HeaderName::RecordRoute).collect();
    rr.reverse();
    format!("Route: {}\r\n", rr.join(", "))
}

/// The callee's `Route:` line: the Record-Route values in order (§12.1.1).
fn callee_route(req: &Message) -> String {
    let rr: Vec<&str> = req.values(HeaderName::RecordRoute).collect();
    format!("Route: {}\r\n", rr.join(", "))
}

#[test]
fn basic_call_with_record_route_and_bye() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    rig.call("1000", 7000, "2300");
    let out = rig.out();
    assert_eq!(out[0].0, 7000);
    assert_eq!(out[0].1.status(), Some(100));
    let (port, inv) = &out[1];
    assert_eq!(*port, 6000);
    assert_eq!(inv.request_uri(), Some("sip:2300@127.0.0.1:6000"));
    let rr = inv.header(HeaderName::RecordRoute).unwrap();
    assert!(rr.starts_with("<sip:127.0.0.1:5060;lr;tbd="), "{rr}");
    assert_eq!(without_token(rr), "<sip:127.0.0.1:5060;lr>");
    let route = caller_route(inv);
    assert!(inv.header(HeaderName::ProxyAuthorization).is_none());
    assert_eq!(inv.max_forwards().unwrap(), Some(69));
    assert_eq!(inv.values(HeaderName::Via).count(), 2);
    // 180 and 200 flow back with our Via removed.
    let ringing = answer(inv, 180, "b1", 6000);
    rig.send(6000, ringing);
    let ok = answer(inv, 200, "b1", 6000);
    rig.send(6000, ok);
    let out = rig.out();
    assert_eq!(out.len(), 2);
    assert!(out
        .iter()
        .all(|(p, m)| *p == 7000 && m.values(HeaderName::Via).count() == 1));
    assert_eq!(out[1].1.status(), Some(200));
    assert_eq!(rig.sw.live_calls(rig.now.instant)[0].state, "answered");
    // The caller's BYE comes with our Record-Route as Route and goes to the callee's contact.
    rig.advance(30);
    let b = rig.branch();
    rig.send(
        7000,
        format!(
            "BYE sip:2300@127.0.0.1:6000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={b}\r\n\
{route}Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\n\
To: <sip:2300@127.0.0.1>;tag=b1\r\nCall-ID: call-1000-2300\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    let out = rig.out();
    let (port, bye) = &out[0];
    assert_eq!(*port, 6000);
    assert!(bye.header(HeaderName::Route).is_none());
    let ok = answer(bye, 200, "b1", 6000);
    rig.send(6000, ok);
    assert_eq!(rig.out()[0].0, 7000);
    let recs = rig.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].disposition, Disposition::Answered);
    assert_eq!(recs[0].caller_opd.as_ref().unwrap().as_str(), "setda");
    assert_eq!(recs[0].callee_opd.as_ref().unwrap().as_str(), "dinkes");
    assert_eq!(recs[0].end_ms - recs[0].answer_ms.unwrap(), 30_000);
    assert!(rig.sw.live_calls(rig.now.instant).is_empty());
}

#[test]
fn forks_to_every_contact_and_cancels_the_losers() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    rig.register("2300", 6001);
    rig.call("1000", 7000, "2300");
    let out = rig.out();
    let invites: Vec<_> = out.iter().filter(|(_, m)| m.is_request()).collect();
    assert_eq!(invites.len(), 2);
    let (p0, inv0) = invites[0].clone();
    let (p1, inv1) = invites[1].clone();
    let r0 = answer(&inv0, 180, "x", p0);
    rig.send(p0, r0);
    let r1 = answer(&inv1, 180, "y", p1);
    rig.send(p1, r1);
    rig.out();
    let ok = answer(&inv0, 200, "x", p0);
    rig.send(p0, ok);
    let out = rig.out();
    assert!(out
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(200)));
    let cancel = out
        .iter()
        .find(|(p, m)| *p == p1 && m.method().map(|m| m.as_str()) == Some("CANCEL"))
        .expect("the other contact gets a CANCEL");
    assert_eq!(
        cancel.1.top_via().unwrap().branch(),
        inv1.top_via().unwrap().branch()
    );
}

#[test]
fn busy_forwards_when_configured_else_486() {
    let mut fwd = account("2301", "dinkes");
    fwd.features.forward_busy = Some("2300".into());
    let mut rig = Rig::new(&[fwd]);
    rig.register("2300", 6000);
    rig.register("2301", 6100);
    rig.call("1000", 7000, "2301");
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6100).unwrap().1;
    let busy = answer(&inv, 486, "z", 6100);
    rig.send(6100, busy);
    let out = rig.out();
    // ACK to the busy phone, and the call moves on to 2300.
    assert!(out
        .iter()
        .any(|(p, m)| *p == 6100 && m.method().map(|m| m.as_str()) == Some("ACK")));
    assert!(out
        .iter()
        .any(|(p, m)| *p == 6000 && m.method().map(|m| m.as_str()) == Some("INVITE")));
    assert!(!out
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(486)));

    // Without forwarding the caller hears busy, and the record says so.
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    rig.call("1000", 7000, "2300");
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
    let busy = answer(&inv, 486, "z", 6000);
    rig.send(6000, busy);
    let out = rig.out();
    assert!(out
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(486)));
    assert_eq!(rig.records()[0].disposition, Disposition::Busy);
}

#[test]
fn caller_cancel_gives_487_and_cancels_the_branch() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    let b = rig.call("1000", 7000, "2300");
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
    let ringing = answer(&inv, 180, "b", 6000);
    rig.send(6000, ringing);
    rig.out();
    rig.send(
        7000,
        format!(
            "CANCEL sip:2300@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={b}\r\n\
Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\nTo: <sip:2300@127.0.0.1>\r\n\
Call-ID: call-1000-2300\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    let out = rig.out();
    let cancels = out
        .iter()
        .filter(|(p, m)| *p == 6000 && m.method().map(|m| m.as_str()) == Some("CANCEL"))
        .count();
    assert_eq!(cancels, 1, "exactly one CANCEL per ringing branch");
    // The CANCEL is answered at once; the INVITE's 487 comes from the branch.
    let to_caller: Vec<u16> = out
        .iter()
        .filter(|(p, _)| *p == 7000)
        .filter_map(|(_, m)| m.status())
        .collect();
    assert_eq!(to_caller, vec![200]);
    let terminated = answer(&inv, 487, "b", 6000);
    rig.send(6000, terminated);
    let out = rig.out();
    assert!(out
        .iter()
        .any(|(p, m)| *p == 6000 && m.method().map(|m| m.as_str()) == Some("ACK")));
    assert!(out
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(487)));
    assert_eq!(rig.records()[0].disposition, Disposition::Cancelled);
}

#[test]
fn unassigned_unregistered_and_permissions() {
    let mut rig = Rig::new(&[]);
    // 2302 is in dinkes' block but not in the database.
    rig.call("1000", 7000, "2302");
    assert_eq!(rig.out().last().unwrap().1.status(), Some(404));
    // 2301 exists but has no phone registered.
    rig.call("1000", 7000, "2301");
    assert_eq!(rig.out().last().unwrap().1.status(), Some(480));
    // setwan may not dial national numbers: 403, and nothing goes to the trunk (port 5090).
    rig.call("1200", 7200, "90511234567");
    let out = rig.out();
    assert_eq!(out.last().unwrap().1.status(), Some(403));
    assert!(!out.iter().any(|(p, _)| *p == 5090));
    // 112 always reaches the trunk.
    rig.call("1200", 7200, "112");
    let out = rig.out();
    let (_, inv) = out
        .iter()
        .find(|(p, _)| *p == 5090)
        .expect("emergency to the trunk");
    assert_eq!(inv.request_uri(), Some("sip:112@127.0.0.1:5090"));
    let dispositions: Vec<_> = rig.records().iter().map(|r| r.disposition).collect();
    assert_eq!(
        dispositions,
        vec![
            Disposition::Rejected,
            Disposition::Failed,
            // refused for lack of permission: a blocked attempt
            Disposition::Blocked
        ]
    );
}

#[test]
fn no_answer_times_out_with_480_and_cancel() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    rig.call("1000", 7000, "2300");
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
    let ringing = answer(&inv, 180, "b", 6000);
    rig.send(6000, ringing);
    rig.out();
    rig.advance(179);
    assert!(!rig
        .out()
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(480)));
    rig.advance(2);
    let out = rig.out();
    assert!(out
        .iter()
        .any(|(p, m)| *p == 6000 && m.method().map(|m| m.as_str()) == Some("CANCEL")));
    assert!(out
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(480)));
    assert_eq!(rig.records()[0].disposition, Disposition::NoAnswer);
}

#[test]
fn spoofed_from_and_spent_max_forwards() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    // Credentials of 1000 with From 1200.
    let b = rig.branch();
    let text = rig.invite_text("1200", 7000, "2300", &b, "");
    rig.send(7000, text);
    let ch = rig.out().pop().unwrap().1;
    let nonce = nonce_of(&ch, HeaderName::ProxyAuthenticate);
    let auth = Digest::new("1000", "INVITE", "sip:2300@127.0.0.1", &nonce).proxy_authorization();
    let b = rig.branch();
    let text = rig.invite_text("1200", 7000, "2300", &b, &auth);
    rig.send(7000, text);
    assert_eq!(rig.out().pop().unwrap().1.status(), Some(403));
    let b = rig.branch();
    let text = rig
        .invite_text("1000", 7000, "2300", &b, "")
        .replace("Max-Forwards: 70", "Max-Forwards: 0");
    rig.send(7000, text);
    assert_eq!(rig.out().pop().unwrap().1.status(), Some(483));
}

#[test]
fn sequential_hunt_group_rings_members_in_turn() {
    let mut rig = Rig::new(&[
        account("5111", "rsud-doris"),
        account("5112", "rsud-doris"),
        account("5113", "rsud-doris"),
    ]);
    rig.register("5111", 6111);
    rig.register("5112", 6112);
    rig.call("1000", 7000, "5110");
    let out = rig.out();
    let first: Vec<u16> = out
        .iter()
        .filter(|(_, m)| m.is_request())
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(first, vec![6111]);
    let inv = &out.iter().find(|(p, _)| *p == 6111).unwrap().1;
    let ringing = answer(inv, 180, "m1", 6111);
    rig.send(6111, ringing);
    rig.out();
    // After the member timeout (15 s) 5111 is cancelled and 5112 rings; 5113 has no phone.
    rig.advance(16);
    let out = rig.out();
    assert!(out
        .iter()
        .any(|(p, m)| *p == 6111 && m.method().map(|m| m.as_str()) == Some("CANCEL")));
    let inv2 = &out
        .iter()
        .find(|(p, m)| *p == 6112 && m.method().map(|m| m.as_str()) == Some("INVITE"))
        .expect("the second member rings")
        .1;
    let ok = answer(inv2, 200, "m2", 6112);
    rig.send(6112, ok);
    assert!(rig
        .out()
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(200)));
}

#[test]
fn parallel_group_rings_all_members() {
    let members = ["3551", "3552", "3553", "3554"];
    let accounts: Vec<Account> = members.iter().map(|m| account(m, "diskominfo")).collect();
    let mut rig = Rig::new(&accounts);
    for (i, m) in members.iter().enumerate() {
        rig.register(m, 6200 + i as u16);
    }
    rig.call("1000", 7000, "3550");
    let rung: Vec<u16> = rig
        .out()
        .iter()
        .filter(|(_, m)| m.is_request())
        .map(|(p, _)| *p)
        .collect();
    assert_eq!(rung, vec![6200, 6201, 6202, 6203]);
}

#[test]
fn udp_caller_reaches_tcp_phone_with_double_record_route() {
    let mut rig = Rig::new(&[]);
    // 2300 registers over a TCP connection.
    let conn = 1 << 32;
    let phone: SocketAddr = loopback(6500);
    rig.sw
        .handle_conn_opened(conn, SWITCH.parse().unwrap(), phone, Transport::Tcp);
    let tcp = Peer {
        addr: phone,
        transport: Transport::Tcp,
        conn: Some(conn),
    };
    let req = |b: &str, cseq: u32, extra: &str| {
        format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:6500;branch={b}\r\n\
From: <sip:2300@127.0.0.1>;tag=t\r\nTo: <sip:2300@127.0.0.1>\r\nCall-ID: tcp-reg\r\n\
CSeq: {cseq} REGISTER\r\nContact: <sip:2300@127.0.0.1:6500;transport=tcp>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    rig.sw
        .handle_stream_message(Bytes::from(req("z9hG4bKr1", 1, "")), tcp, rig.now);
    let ch = rig.out().pop().unwrap().1;
    let nonce = nonce_of(&ch, HeaderName::WwwAuthenticate);
    let auth = Digest::new("2300", "REGISTER", "sip:127.0.0.1", &nonce).authorization();
    rig.sw
        .handle_stream_message(Bytes::from(req("z9hG4bKr2", 2, &auth)), tcp, rig.now);
    assert_eq!(rig.out().pop().unwrap().1.status(), Some(200));
    rig.call("1000", 7000, "2300");
    let sent = rig.transmits();
    let inv = sent
        .iter()
        .find(|t| t.peer.transport == Transport::Tcp)
        .expect("the INVITE goes over the phone's TCP connection");
    assert_eq!(inv.peer.conn, Some(conn));
    let m = parse(&inv.bytes);
    assert!(m.top_via().unwrap().transport.eq_ignore_ascii_case("TCP"));
    let rr: Vec<String> = m
        .values(HeaderName::RecordRoute)
        .map(without_token)
        .collect();
    assert_eq!(
        rr,
        vec![
            "<sip:127.0.0.1:5060;transport=tcp;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ]
    );
}

/// 2300 registers over a TLS connection with `contact`; 1000 (UDP) calls it, it answers and
/// 1000 hangs up through the route set. Returns (INVITE as the phone got it, BYE as it got it).
fn udp_calls_tls_phone(contact: &str) -> (Message, Message) {
    let mut rig = Rig::new(&[]);
    let tls_local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    rig.sw.add_stream_listener(tls_local);
    let conn = 1 << 33;
    let phone: SocketAddr = loopback(6600);
    rig.sw
        .handle_conn_opened(conn, tls_local, phone, Transport::Tls);
    let tls = Peer {
        addr: phone,
        transport: Transport::Tls,
        conn: Some(conn),
    };
    let req = |b: &str, cseq: u32, extra: &str| {
        format!(
            "REGISTER sips:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:6600;branch={b}\r\n\
From: <sips:2300@127.0.0.1>;tag=t\r\nTo: <sips:2300@127.0.0.1>\r\nCall-ID: tls-reg\r\n\
CSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    };
    rig.sw
        .handle_stream_message(Bytes::from(req("z9hG4bKs1", 1, "")), tls, rig.now);
    let ch = rig.out().pop().unwrap().1;
    let nonce = nonce_of(&ch, HeaderName::WwwAuthenticate);
    let auth = Digest::new("2300", "REGISTER", "sips:127.0.0.1", &nonce).authorization();
    rig.sw
        .handle_stream_message(Bytes::from(req("z9hG4bKs2", 2, &auth)), tls, rig.now);
    assert_eq!(rig.out().pop().unwrap().1.status(), Some(200));

    rig.call("1000", 7000, "2300");
    let sent = rig.transmits();
    let inv = sent
        .iter()
        .find(|t| t.peer.transport == Transport::Tls)
        .expect("the INVITE goes over the phone's TLS connection");
    assert_eq!(inv.peer.conn, Some(conn));
    let invite = parse(&inv.bytes);
    // The phone answers 200 with its own contact and the Record-Route it got.
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for v in invite.values(HeaderName::Via) {
        ok.push_str(&format!("Via: {v}\r\n"));
    }
    for v in invite.values(HeaderName::RecordRoute) {
        ok.push_str(&format!("Record-Route: {v}\r\n"));
    }
    ok.push_str(&format!(
        "From: {}\r\nTo: {};tag=callee\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <{contact}>\r\n\
Content-Length: 0\r\n\r\n",
        invite.header(HeaderName::From).unwrap(),
        invite.header(HeaderName::To).unwrap(),
        invite.call_id().unwrap(),
        invite.header(HeaderName::CSeq).unwrap(),
    ));
    rig.sw.handle_stream_message(Bytes::from(ok), tls, rig.now);
    let to_caller = rig.out();
    let ok = &to_caller
        .iter()
        .find(|(p, m)| *p == 7000 && m.status() == Some(200))
        .expect("the 200 reaches the UDP caller")
        .1;
    // The caller's route set is the Record-Route reversed.
    let mut routes: Vec<String> = ok
        .values(HeaderName::RecordRoute)
        .map(str::to_string)
        .collect();
    routes.reverse();
    let bye = format!(
        "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKbye1\r\n\
Max-Forwards: 70\r\nRoute: {}\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\n\
To: <sip:2300@127.0.0.1>;tag=callee\r\nCall-ID: call-1000-2300\r\nCSeq: 3 BYE\r\n\
Content-Length: 0\r\n\r\n",
        routes.join(", ")
    );
    rig.send(7000, bye);
    let sent = rig.transmits();
    let bye = sent
        .iter()
        .find(|t| t.peer.transport == Transport::Tls)
        .unwrap_or_else(|| panic!("the BYE goes over the TLS connection: {sent:?}"));
    assert_eq!(bye.peer.conn, Some(conn));
    (invite, parse(&bye.bytes))
}

#[test]
fn udp_caller_reaches_sips_phone_over_its_tls_connection() {
    let (invite, bye) = udp_calls_tls_phone("sips:2300@127.0.0.1:6600");
    assert_eq!(invite.request_uri(), Some("sips:2300@127.0.0.1:6600"));
    let via = invite.top_via().unwrap();
    assert!(via.transport.eq_ignore_ascii_case("TLS"), "{via:?}");
    assert_eq!(via.host, "127.0.0.1");
    assert_eq!(via.port, Some(5061));
    // SIPS Request-URI on the TLS side: a sips Record-Route there, plain on the UDP side.
    let rr: Vec<String> = invite
        .values(HeaderName::RecordRoute)
        .map(without_token)
        .collect();
    assert_eq!(
        rr,
        vec!["<sips:127.0.0.1:5061;lr>", "<sip:127.0.0.1:5060;lr>"]
    );
    assert_eq!(bye.method(), Some(&crate::sip::message::Method::Bye));
    assert_eq!(bye.request_uri(), Some("sips:2300@127.0.0.1:6600"));
    assert!(bye.top_via().unwrap().transport.eq_ignore_ascii_case("TLS"));
    assert_eq!(
        bye.values(HeaderName::Route).count(),
        0,
        "both our routes are popped"
    );
}

#[test]
fn udp_caller_reaches_transport_tls_phone_with_double_record_route() {
    let (invite, bye) = udp_calls_tls_phone("sip:2300@127.0.0.1:6600;transport=tls");
    assert!(invite
        .top_via()
        .unwrap()
        .transport
        .eq_ignore_ascii_case("TLS"));
    let rr: Vec<String> = invite
        .values(HeaderName::RecordRoute)
        .map(without_token)
        .collect();
    assert_eq!(
        rr,
        vec![
            "<sip:127.0.0.1:5061;transport=tls;lr>",
            "<sip:127.0.0.1:5060;lr>"
        ]
    );
    assert_eq!(
        bye.request_uri(),
        Some("sip:2300@127.0.0.1:6600;transport=tls")
    );
}

#[test]
fn cancel_of_a_silent_branch_answers_487_after_a_grace() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    let b = rig.call("1000", 7000, "2300");
    rig.out(); // the INVITE to 6000 gets no answer at all
    rig.send(
        7000,
        format!(
            "CANCEL sip:2300@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={b}\r\n\
Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\nTo: <sip:2300@127.0.0.1>\r\n\
Call-ID: call-1000-2300\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    assert!(rig
        .out()
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(200)));
    rig.advance(5);
    assert!(rig
        .out()
        .iter()
        .any(|(p, m)| *p == 7000 && m.status() == Some(487)));
    assert_eq!(rig.records()[0].disposition, Disposition::Cancelled);
}

#[test]
fn feature_codes_set_dnd_and_forwarding() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    // *78 from 2300 turns DND on: the phone gets a final answer, the store an effect.
    rig.call("2300", 6000, "*78");
    let out = rig.out();
    assert!(out
        .iter()
        .any(|(p, m)| *p == 6000 && m.status() == Some(480)));
    assert_eq!(rig.effects().len(), 1);
    rig.call("1000", 7000, "2300");
    assert_eq!(rig.out().last().unwrap().1.status(), Some(486));
    // *79 turns it off; *72 2301 forwards everything to 2301.
    rig.call("2300", 6000, "*79");
    rig.call("2300", 6000, "*722301");
    rig.out();
    rig.register("2301", 6100);
    rig.call("1000", 7000, "2300");
    assert!(rig
        .out()
        .iter()
        .any(|(p, m)| *p == 6100 && m.method().map(|m| m.as_str()) == Some("INVITE")));
}

/// The switch anchors media in a relay with ports 40000-40099 advertised as 127.0.0.9 (the
/// commands it sends are collected by the rig; the relay's answers are fed back by hand).
fn with_relay(rig: &mut Rig) {
    let mut control = crate::media::MediaControl::new((40000, 40099), "127.0.0.9".parse().unwrap());
    // The relay binds the first reserve (here: the whole range).
    let Some(crate::media::MediaCommand::Reserve { pairs }) = control.poll_command() else {
        panic!("no reserve queued");
    };
    control.handle_event(&crate::media::MediaEvent::Reserved {
        bound: pairs,
        busy: Vec::new(),
    });
    rig.sw.set_media(control);
}

/// The `SetRemote`s the switch sent the relay so far: (session, stream, side, RTP address).
fn remotes(rig: &mut Rig) -> Vec<(u64, usize, crate::media::Side, SocketAddr)> {
    rig.outputs.pump(&mut rig.sw);
    rig.outputs
        .media
        .iter()
        .filter_map(|c| match c {
            crate::media::MediaCommand::SetRemote {
                session,
                stream,
                side,
                rtp,
                ..
            } => Some((session.0, *stream, *side, *rtp)),
            _ => None,
        })
        .collect()
}

/// The sessions the switch asked the relay to close so far.
fn closes(rig: &mut Rig) -> Vec<crate::media::SessionId> {
    rig.outputs.pump(&mut rig.sw);
    rig.outputs
        .media
        .iter()
        .filter_map(|c| match c {
            crate::media::MediaCommand::Close { session } => Some(*session),
            _ => None,
        })
        .collect()
}

/// The relay's final counters of a session: `packets` forwarded from A to B.
fn closed(session: crate::media::SessionId, packets: u64) -> crate::media::MediaEvent {
    use crate::media::{Direction, StreamStats};
    let stats = |direction, packets| StreamStats {
        stream: 0,
        direction,
        source: None,
        packets,
        bytes: packets * 172,
        dropped_foreign: 0,
        dropped_no_destination: 0,
        lost: 0,
        jitter_ms: 0.0,
        last_packet_age: None,
    };
    crate::media::MediaEvent::Closed {
        session,
        stats: vec![stats(Direction::AToB, packets), stats(Direction::BToA, 0)],
    }
}

fn sdp(port: u16) -> String {
    format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=sendrecv\r\n")
}

fn with_sdp(msg: &str, body: &str) -> String {
    msg.replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn media_port(m: &Message) -> u16 {
    let s = crate::sip::sdp::parse(m.body()).unwrap();
    assert_eq!(s.streams[0].address, Some("127.0.0.9".parse().unwrap()));
    s.streams[0].port
}

#[test]
fn sdp_of_each_leg_points_at_the_relay_early_and_late_offer() {
    use crate::proxy::media::Leg;
    // (late offer, the relay reports the session closed): without the report the record is
    // written without counters after MEDIA_ANSWER, and what waited behind it goes out.
    for (late, relay_answers) in [(false, true), (true, true), (false, false)] {
        let mut rig = Rig::new(&[]);
        with_relay(&mut rig);
        rig.register("2300", 6000);
        // The authenticated INVITE, with or without the offer.
        let b = rig.branch();
        let plain = rig.invite_text("1000", 7000, "2300", &b, "");
        rig.send(
            7000,
            if late {
                plain
            } else {
                with_sdp(&plain, &sdp(4000))
            },
        );
        let nonce = nonce_of(&rig.out().pop().unwrap().1, HeaderName::ProxyAuthenticate);
        let auth =
            Digest::new("1000", "INVITE", "sip:2300@127.0.0.1", &nonce).proxy_authorization();
        let b = rig.branch();
        let text = rig.invite_text("1000", 7000, "2300", &b, &auth);
        rig.send(
            7000,
            if late {
                text
            } else {
                with_sdp(&text, &sdp(4000))
            },
        );
        let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
        if !late {
            assert_eq!(
                media_port(&inv),
                40002,
                "the callee sends to the B-side port"
            );
        } else {
            assert!(inv.body().is_empty());
        }
        // The callee's 200 carries its SDP (the answer, or the late offer).
        let ok = with_sdp(&answer(&inv, 200, "b1", 6000), &sdp(5000));
        rig.send(6000, ok);
        let ok = rig.out().into_iter().find(|(p, _)| *p == 7000).unwrap().1;
        assert_eq!(
            media_port(&ok),
            40000,
            "the caller sends to the A-side port"
        );
        if late {
            // The caller answers in the ACK.
            let ack = format!("ACK sip:2300@127.0.0.1:6000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bKack\r\n\
{}Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\n\
To: <sip:2300@127.0.0.1>;tag=b1\r\nCall-ID: call-1000-2300\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n", caller_route(&inv));
            let ack = with_sdp(&ack, &sdp(4000));
            rig.send(7000, ack);
            let ack = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
            assert_eq!(media_port(&ack), 40002);
        }
        let remotes = remotes(&mut rig);
        assert!(
            remotes
                .iter()
                .any(|r| r.2 == Leg::A && r.3 == loopback(4000)),
            "{remotes:?}"
        );
        assert!(
            remotes
                .iter()
                .any(|r| r.2 == Leg::B && r.3 == loopback(5000)),
            "{remotes:?}"
        );
        // The record ends (a BYE) and the session closes.
        let b = rig.branch();
        rig.send(
            7000,
            format!(
                "BYE sip:2300@127.0.0.1:6000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={b}\r\n\
{}Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\n\
To: <sip:2300@127.0.0.1>;tag=b1\r\nCall-ID: call-1000-2300\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n",
                caller_route(&inv)
            ),
        );
        // The relay is asked to close the session; until it reports its counters the
        // record waits, and the BYE, forwarded in the same step, waits behind it.
        let closing = closes(&mut rig);
        assert_eq!(closing.len(), 1);
        assert!(rig.records().is_empty());
        assert!(rig.out().is_empty(), "the BYE went out before its record");
        let mut now = rig.now;
        if relay_answers {
            rig.sw.handle_media(closed(closing[0], 7), now);
        } else {
            now.instant += Duration::from_millis(1900);
            rig.sw.handle_timeout(now);
            assert!(rig.records().is_empty(), "released before the deadline");
            now.instant = rig.now.instant + Duration::from_secs(2);
            assert!(rig.sw.poll_timeout().is_some_and(|t| t <= now.instant));
            rig.sw.handle_timeout(now);
        }
        let recs = rig.records();
        assert_eq!(recs.len(), 1);
        let expected = relay_answers.then_some(7);
        assert_eq!(recs[0].media.as_ref().map(|m| m.packets_a2b), expected);
        let out = rig.out();
        assert!(
            out.iter()
                .any(|(p, m)| *p == 6000 && m.method().map(|m| m.as_str()) == Some("BYE")),
            "the BYE follows its record: {out:?}"
        );
    }
}

/// A browser's offer (shortened Chromium SDP: opus, PCMU, telephone-event; ICE, DTLS,
/// BUNDLE of one audio stream).
const BROWSER_OFFER: &str = "v=0\r\no=- 46117 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0\r\na=msid-semantic: WMS s\r\n\
m=audio 50000 UDP/TLS/RTP/SAVPF 111 0 126\r\nc=IN IP4 127.0.0.1\r\n\
a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host\r\n\
a=ice-ufrag:BrUf\r\na=ice-pwd:browserpassword012345678\r\n\
a=fingerprint:sha-256 6B:8B:F0:65\r\na=setup:actpass\r\na=mid:0\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:777 cname:x\r\n";

/// A browser calls a desk phone: the phone gets plain RTP/AVP SDP on the relay, the relay
/// is told to make side A a WebRTC leg playing DTLS client, and the phone's answer reaches
/// the browser as WebRTC SDP announcing exactly that role, with the leg's credentials.
#[test]
fn a_browser_offer_becomes_plain_for_the_phone_and_the_answer_webrtc() {
    use crate::media::{MediaCommand, Side};
    let mut rig = Rig::new(&[]);
    with_relay(&mut rig);
    if let Some(m) = rig.sw.proxy.media.as_mut() {
        m.set_fingerprint("sha-256 AA:BB:CC".into());
    }
    rig.register("2300", 6000);
    let b = rig.branch();
    let text = rig.invite_text("1000", 7000, "2300", &b, "");
    rig.send(7000, with_sdp(&text, BROWSER_OFFER));
    let nonce = nonce_of(&rig.out().pop().unwrap().1, HeaderName::ProxyAuthenticate);
    let auth = Digest::new("1000", "INVITE", "sip:2300@127.0.0.1", &nonce).proxy_authorization();
    let b = rig.branch();
    let text = rig.invite_text("1000", 7000, "2300", &b, &auth);
    rig.send(7000, with_sdp(&text, BROWSER_OFFER));
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
    let body = std::str::from_utf8(inv.body()).unwrap().to_string();
    assert!(
        body.contains("m=audio 40002 RTP/AVP 111 0 126\r\n"),
        "{body}"
    );
    assert!(
        !body.contains("ice-") && !body.contains("fingerprint"),
        "{body}"
    );
    rig.outputs.pump(&mut rig.sw);
    let params = rig
        .outputs
        .media
        .iter()
        .find_map(|c| match c {
            MediaCommand::WebRtc { side, params, .. } => Some((*side, params.clone())),
            _ => None,
        })
        .expect("a WebRtc command for the browser's leg");
    assert_eq!(params.0, Side::A);
    let p = params.1;
    assert!(
        p.dtls_active,
        "we answer a browser's actpass as DTLS client"
    );
    assert_eq!(
        (p.remote_ufrag.as_str(), p.remote_pwd.as_str()),
        ("BrUf", "browserpassword012345678")
    );
    assert_eq!(p.remote_fingerprint, "sha-256 6B:8B:F0:65");
    assert_eq!(p.streams.len(), 1);
    assert_eq!(p.streams[0].mid, "0");
    assert_eq!(p.streams[0].ssrcs_rx, vec![777]);
    assert!(p.streams[0]
        .payloads
        .iter()
        .any(|x| x.pt == 0 && x.codec == "pcmu/8000"));
    assert_eq!(
        p.mid_extension,
        Some(4),
        "the browser's own mid extension id"
    );
    assert_eq!((p.local_ufrag.len(), p.local_pwd.len()), (8, 24));
    // The browser's leg has no plain remote.
    assert!(remotes(&mut rig).iter().all(|r| r.2 != Side::A));

    let ok = with_sdp(&answer(&inv, 200, "b1", 6000), &sdp(5000));
    rig.send(6000, ok);
    let ok = rig.out().into_iter().find(|(p, _)| *p == 7000).unwrap().1;
    let answer = crate::sip::webrtc_sdp::read(ok.body()).expect("WebRTC SDP toward the browser");
    assert_eq!(answer.setup, crate::sip::webrtc_sdp::Setup::Active);
    assert_eq!(answer.ufrag, p.local_ufrag);
    assert_eq!(answer.pwd, p.local_pwd);
    assert_eq!(answer.fingerprint, "sha-256 AA:BB:CC");
    assert_eq!(answer.bundle, vec!["0"]);
    assert_eq!(
        answer.sections[0].port, 40000,
        "the A-side port carries the WebRTC leg"
    );
    assert_eq!(answer.sections[0].mid.as_deref(), Some("0"));
    let text = std::str::from_utf8(ok.body()).unwrap();
    assert!(
        text.contains("a=candidate:1 1 udp 2130706431 127.0.0.9 40000 typ host"),
        "{text}"
    );
    assert!(text.contains("a=ice-lite"), "{text}");
    // Only one leg was made, even though the SDP passed twice (offer and answer).
    rig.outputs.pump(&mut rig.sw);
    let webrtc = rig
        .outputs
        .media
        .iter()
        .filter(|c| matches!(c, MediaCommand::WebRtc { .. }))
        .count();
    assert_eq!(webrtc, 1);
}

/// The browser of [`BROWSER_OFFER`] turns its camera on: its re-offer (same ICE credentials)
/// adds an m=video line to the BUNDLE.
fn browser_reoffer_with_video() -> String {
    let video = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\n\
a=ice-ufrag:BrUf\r\na=ice-pwd:browserpassword012345678\r\n\
a=fingerprint:sha-256 6B:8B:F0:65\r\na=setup:actpass\r\na=mid:1\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\na=rtcp-mux\r\n\
a=rtpmap:96 VP8/90000\r\na=ssrc:888 cname:x\r\n";
    format!("{BROWSER_OFFER}{video}").replace("a=group:BUNDLE 0\r\n", "a=group:BUNDLE 0 1\r\n")
}

/// A browser in an audio call with a desk phone turns video on: the session grows in place
/// (its audio stream and the browser's BUNDLE transport stay; a `Grow` adds one pair), the
/// phone is offered a second, plain m-line on the new ports, the relay's WebRTC leg learns
/// the video stream (`WebRtcStreams`), and the phone's answer reaches the browser with both
/// sections on the leg's one port. A re-offer with fewer m-lines than the call has is
/// answered 488 with a Warning and reaches nobody.
#[test]
fn a_browser_turning_video_on_grows_the_session_in_place() {
    use crate::media::{MediaCommand, MediaKind, Side};
    let mut rig = Rig::new(&[]);
    with_relay(&mut rig);
    if let Some(m) = rig.sw.proxy.media.as_mut() {
        m.set_fingerprint("sha-256 AA:BB:CC".into());
    }
    rig.register("2300", 6000);
    let b = rig.branch();
    let text = rig.invite_text("1000", 7000, "2300", &b, "");
    rig.send(7000, with_sdp(&text, BROWSER_OFFER));
    let nonce = nonce_of(&rig.out().pop().unwrap().1, HeaderName::ProxyAuthenticate);
    let auth = Digest::new("1000", "INVITE", "sip:2300@127.0.0.1", &nonce).proxy_authorization();
    let b = rig.branch();
    let text = rig.invite_text("1000", 7000, "2300", &b, &auth);
    rig.send(7000, with_sdp(&text, BROWSER_OFFER));
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
    rig.send(6000, with_sdp(&answer(&inv, 200, "b1", 6000), &sdp(5000)));
    rig.out();
    rig.outputs.pump(&mut rig.sw);
    rig.outputs.media.clear();

    let call_id = inv.call_id().unwrap().to_string();
    let b = rig.branch();
    let re = in_dialog(
        "INVITE",
        "sip:2300@127.0.0.1:6000",
        &caller_route(&inv),
        &b,
        &call_id,
    );
    rig.send(7000, with_sdp(&re, &browser_reoffer_with_video()));
    let out = rig.out();
    let reinvite = &out
        .iter()
        .find(|(p, _)| *p == 6000)
        .expect("to the phone")
        .1;
    let plain = crate::sip::sdp::parse(reinvite.body()).unwrap();
    assert_eq!(plain.streams.len(), 2, "{out:?}");
    let body = std::str::from_utf8(reinvite.body()).unwrap();
    assert!(
        body.contains("m=audio 40002 RTP/AVP"),
        "audio stays on its ports: {body}"
    );
    assert!(
        body.contains("m=video ") && !body.contains("m=video 40002 ") && !body.contains("SAVPF"),
        "video gets plain RTP on new ports: {body}"
    );
    rig.outputs.pump(&mut rig.sw);
    let cmds = &rig.outputs.media;
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, MediaCommand::Open { .. } | MediaCommand::Close { .. })),
        "the session is not reopened: {cmds:?}"
    );
    let grown = cmds
        .iter()
        .filter(|c| matches!(c, MediaCommand::Grow { legs, .. } if legs[0].ports.len() == 1))
        .count();
    assert_eq!(grown, 1, "one Grow of one stream: {cmds:?}");
    let streams = cmds
        .iter()
        .find_map(|c| match c {
            MediaCommand::WebRtcStreams { side, streams, .. } => Some((*side, streams.clone())),
            _ => None,
        })
        .expect("the browser's leg learns the video stream");
    assert_eq!(streams.0, Side::A);
    assert_eq!(streams.1.len(), 1);
    let v = &streams.1[0];
    assert_eq!((v.mid.as_str(), v.kind), ("1", MediaKind::Video));
    assert_eq!(v.ssrcs_rx, vec![888]);
    assert!(v
        .payloads
        .iter()
        .any(|p| p.pt == 96 && p.codec == "vp8/90000"));

    let video_answer = format!(
        "{}m=video 5002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
        sdp(5000)
    );
    rig.send(
        6000,
        with_sdp(&answer(reinvite, 200, "b1", 6000), &video_answer),
    );
    let ok = rig.out().into_iter().find(|(p, _)| *p == 7000).unwrap().1;
    let w = crate::sip::webrtc_sdp::read(ok.body()).expect("WebRTC SDP toward the browser");
    assert_eq!(w.bundle, vec!["0", "1"]);
    assert_eq!(w.sections.len(), 2);
    assert!(
        w.sections.iter().all(|s| s.port == 40000),
        "one transport: {:?}",
        w.sections
    );
    assert_eq!(w.sections[1].mid.as_deref(), Some("1"));
    assert_eq!(
        w.setup,
        crate::sip::webrtc_sdp::Setup::Active,
        "the settled role"
    );
    // The phone's video remote is set on the new stream.
    assert!(remotes(&mut rig)
        .iter()
        .any(|r| r.1 == 1 && r.2 == Side::B && r.3.port() == 5002));

    // Fewer m-lines than the call has: 488, nothing to the phone.
    let b = rig.branch();
    let re = in_dialog(
        "INVITE",
        "sip:2300@127.0.0.1:6000",
        &caller_route(&inv),
        &b,
        &call_id,
    )
    .replace("CSeq: 5 ", "CSeq: 6 ");
    rig.send(7000, with_sdp(&re, BROWSER_OFFER));
    let out = rig.out();
    only_answer(&out, 7000, 488);
    assert!(
        warning_of(&out[0].1).contains("RFC 3264"),
        "{}",
        warning_of(&out[0].1)
    );
}

// ---- the toll guard ---------------------------------------------------------------------------

fn warning_of(m: &Message) -> String {
    m.headers_by_raw_name("Warning")
        .next()
        .map(|h| m.text(h.value).to_string())
        .unwrap_or_default()
}

/// The INVITEs the switch sent to the trunk placeholder (port 5090).
fn at_trunk(out: &[(u16, Message)]) -> Vec<&Message> {
    out.iter()
        .filter(|(p, m)| *p == 5090 && m.method().map(|m| m.as_str()) == Some("INVITE"))
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn international_without_a_grant_is_blocked_before_the_trunk() {
    let mut rig = Rig::new(&[account("1001", "setda")]);
    // setda may dial national numbers but not international ones, except 1001-1009.
    rig.call("1000", 7000, "900441234567");
    let out = rig.out();
    let (_, refused) = out.last().unwrap();
    assert_eq!(refused.status(), Some(403));
    assert!(
        warning_of(refused).contains("international numbers not allowed"),
        "{}",
        warning_of(refused)
    );
    assert!(at_trunk(&out).is_empty());
    let rec = &rig.records()[0];
    assert_eq!(rec.disposition, Disposition::Blocked);
    assert!(!rec.trunk);
    assert!(
        rec.route.starts_with("blocked (permission)"),
        "{}",
        rec.route
    );
    // the granted extension reaches the trunk with the same number
    rig.call("1001", 7001, "900441234567");
    let out = rig.out();
    assert_eq!(at_trunk(&out).len(), 1);
    let blocked = &rig.sw.toll_stats().blocked;
    assert_eq!(
        blocked.get(&("permission", Some("setda".parse().unwrap()))),
        Some(&1)
    );
}

#[test]
fn trunk_limits_per_extension_concurrent_and_per_hour() {
    let mut rig = Rig::new(&[]);
    rig.sw.set_toll_limits(crate::proxy::toll::TollLimits {
        default: crate::proxy::toll::Limits {
            concurrent_per_extension: 1,
            concurrent_per_opd: 0,
            per_hour_per_extension: 2,
            per_hour_per_opd: 0,
        },
        opd: Default::default(),
    });
    // 1000 (setda) calls a national number: it reaches the trunk and rings there.
    rig.call("1000", 7000, "90561234567");
    let out = rig.out();
    let first = at_trunk(&out)[0].clone();
    rig.send(5090, answer(&first, 180, "t1", 5090));
    rig.out();
    // a second one while the first rings: 486 naming the limit, the trunk sees nothing
    rig.call("1000", 7001, "90561234567");
    let out = rig.out();
    assert!(at_trunk(&out).is_empty());
    let (port, refused) = out.last().unwrap();
    assert_eq!((*port, refused.status()), (7001, Some(486)));
    assert!(
        warning_of(refused).contains("1 concurrent calls per extension"),
        "{}",
        warning_of(refused)
    );
    // the first call ends (busy at the carrier): the next one goes through
    rig.send(5090, answer(&first, 486, "t1", 5090));
    rig.out();
    rig.call("1000", 7002, "90561234567");
    let out = rig.out();
    let second = at_trunk(&out)[0].clone();
    rig.send(5090, answer(&second, 486, "t2", 5090));
    rig.out();
    // two trunk calls within the hour: the third is refused with 403
    rig.advance(30 * 60);
    rig.call("1000", 7003, "90561234567");
    let out = rig.out();
    assert!(at_trunk(&out).is_empty());
    let (_, refused) = out.last().unwrap();
    assert_eq!(refused.status(), Some(403));
    assert!(warning_of(refused).contains("2 calls per hour per extension"));
    // an hour after the first: one slot free again
    rig.advance(30 * 60);
    rig.call("1000", 7004, "90561234567");
    let out = rig.out();
    assert_eq!(at_trunk(&out).len(), 1);

    let recs = rig.records();
    let blocked: Vec<&str> = recs
        .iter()
        .filter(|r| r.disposition == Disposition::Blocked)
        .map(|r| r.route.as_str())
        .collect();
    assert_eq!(
        blocked,
        vec![
            "blocked (concurrent-per-extension): trunk 0561234567",
            "blocked (per-hour-per-extension): trunk 0561234567"
        ]
    );
    let s = rig.sw.toll_stats();
    assert_eq!((s.admitted, s.active), (3, 1));
}

#[test]
fn trunk_limits_per_opd_span_its_extensions_and_spare_emergency_calls() {
    let mut rig = Rig::new(&[account("1001", "setda")]);
    rig.sw.set_toll_limits(crate::proxy::toll::TollLimits {
        default: crate::proxy::toll::Limits {
            concurrent_per_extension: 0,
            concurrent_per_opd: 1,
            per_hour_per_extension: 0,
            per_hour_per_opd: 0,
        },
        opd: Default::default(),
    });
    rig.call("1000", 7000, "90561234567");
    assert_eq!(at_trunk(&rig.out()).len(), 1);
    rig.call("1001", 7001, "90561234567");
    let out = rig.out();
    assert!(at_trunk(&out).is_empty());
    let (_, refused) = out.last().unwrap();
    assert_eq!(refused.status(), Some(486));
    assert!(warning_of(refused).contains("1 concurrent calls per OPD"));
    // emergency numbers are never limited
    rig.call("1001", 7002, "112");
    assert_eq!(at_trunk(&rig.out()).len(), 1);
    // another OPD is not affected
    rig.call("2300", 7003, "90561234567");
    let out = rig.out();
    assert!(at_trunk(&out).is_empty(), "dinkes may not dial national");
    let s = rig.sw.toll_stats().clone();
    assert_eq!(
        s.blocked
            .get(&("concurrent-per-opd", Some("setda".parse().unwrap()))),
        Some(&1)
    );
    assert_eq!(
        s.blocked
            .get(&("permission", Some("dinkes".parse().unwrap()))),
        Some(&1)
    );
    assert_eq!((s.admitted, s.emergency, s.active), (2, 1, 2));
}

#[test]
fn trunk_calls_recorded_before_a_restart_count_for_the_hour() {
    let mut rig = Rig::new(&[account("1001", "setda")]);
    rig.sw.set_toll_limits(crate::proxy::toll::TollLimits {
        default: crate::proxy::toll::Limits {
            concurrent_per_extension: 0,
            concurrent_per_opd: 0,
            per_hour_per_extension: 1,
            per_hour_per_opd: 0,
        },
        opd: Default::default(),
    });
    let row = |caller: &str, mins_ago: i64, route: &str| crate::cdr::TrunkCallRow {
        caller: caller.into(),
        caller_opd: Some("setda".parse().unwrap()),
        start_ms: rig.now.unix_ms as i64 - mins_ago * 60_000,
        route: route.into(),
    };
    let history = vec![
        row("1000", 50, "trunk 0561234567"),
        // an hour ago: out of the window
        row("1001", 60, "trunk 0561234567"),
        // emergency calls never count
        row("1001", 5, "trunk (emergency) 112"),
    ];
    rig.sw.restore_trunk_history(history, rig.now);
    rig.call("1000", 7000, "90561234567");
    let out = rig.out();
    assert!(at_trunk(&out).is_empty());
    assert_eq!(out.last().unwrap().1.status(), Some(403));
    rig.call("1001", 7001, "90561234567");
    assert_eq!(at_trunk(&rig.out()).len(), 1);
    // ten minutes later the call from 50 minutes ago is an hour old
    rig.advance(10 * 60);
    rig.call("1000", 7002, "90561234567");
    assert_eq!(at_trunk(&rig.out()).len(), 1);
}

// ---- dialog integrity ---------------------------------------------------------------------------

/// 1000 (at 7000) calls 2300 (registered at 6000), which answers with To tag `b1`. Returns the
/// INVITE as 2300 got it.
fn answered_call(rig: &mut Rig) -> Message {
    rig.register("2300", 6000);
    rig.call("1000", 7000, "2300");
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
    let ok = answer(&inv, 200, "b1", 6000);
    rig.send(6000, ok);
    rig.out();
    inv
}

/// An in-dialog request of the 1000 → 2300 call (From tag a7000, To tag b1) with `route`.
fn in_dialog(method: &str, ruri: &str, route: &str, branch: &str, call_id: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={branch}\r\n\
{route}Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\n\
To: <sip:2300@127.0.0.1>;tag=b1\r\nCall-ID: {call_id}\r\nCSeq: 5 {method}\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// The caller's BYE of the 1000 → 2300 call, with the route set `inv` gave it.
fn caller_bye(rig: &mut Rig, inv: &Message) -> String {
    let b = rig.branch();
    in_dialog(
        "BYE",
        "sip:2300@127.0.0.1:6000",
        &caller_route(inv),
        &b,
        "call-1000-2300",
    )
}

/// Only `status` goes back, to `to`; nothing goes anywhere else.
fn only_answer(out: &[(u16, Message)], to: u16, status: u16) {
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, out[0].1.status()), (to, Some(status)), "{out:?}");
}

#[test]
fn in_dialog_requests_of_no_dialog_of_ours_get_481_and_reach_nobody() {
    let mut rig = Rig::new(&[]);
    let trunk_ruri = "sip:9001144123456@127.0.0.1:5090";
    let cases = [
        // To the trunk by Request-URI, by Route, behind a Route naming us.
        ("INVITE", trunk_ruri, String::new()),
        (
            "INVITE",
            "sip:9001144123456@127.0.0.1",
            "Route: <sip:127.0.0.1:5090;lr>\r\n".to_string(),
        ),
        (
            "INVITE",
            "sip:9001144123456@127.0.0.1",
            "Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5090;lr>\r\n".to_string(),
        ),
        // Reflection toward any address.
        (
            "BYE",
            "sip:x@127.0.0.1:9999",
            "Route: <sip:127.0.0.1:5060;lr>\r\n".to_string(),
        ),
        ("OPTIONS", "sip:x@127.0.0.1:9999", String::new()),
        (
            "OPTIONS",
            "sip:x@127.0.0.1:9999",
            "Route: <sip:127.0.0.1:5060;lr>\r\n".to_string(),
        ),
        // A made-up token.
        (
            "INFO",
            "sip:x@127.0.0.1:9999",
            "Route: <sip:127.0.0.1:5060;lr;tbd=AQBlcwQKAAAB>\r\n".to_string(),
        ),
    ];
    for (i, (method, ruri, route)) in cases.iter().enumerate() {
        let b = rig.branch();
        let text = in_dialog(method, ruri, route, &b, "forged");
        rig.send_from("127.0.0.9:7000".parse().unwrap(), text);
        let out = rig.out();
        only_answer(&out, 7000, 481);
        assert_eq!(rig.sw.guard.stats.dialogs_refused, i as u64 + 1);
    }
    // A stray ACK is dropped without an answer.
    let ack = in_dialog(
        "ACK",
        "sip:x@127.0.0.1:9999",
        "Route: <sip:127.0.0.1:5060;lr>\r\n",
        "z9hG4bKstray",
        "forged",
    );
    rig.send_from("127.0.0.9:7000".parse().unwrap(), ack);
    assert!(rig.out().is_empty());
}

#[test]
fn in_dialog_requests_go_to_the_other_party_whatever_the_request_uri_says() {
    let mut rig = Rig::new(&[]);
    let inv = answered_call(&mut rig);
    let route = caller_route(&inv);
    // The caller's re-INVITE names the trunk in its Request-URI: it still goes to 2300.
    let b = rig.branch();
    let text = in_dialog(
        "INVITE",
        "sip:9001144123456@127.0.0.1:5090",
        &route,
        &b,
        "call-1000-2300",
    );
    rig.send(7000, text);
    let out = rig.out();
    assert!(out.iter().all(|(p, _)| *p != 5090), "{out:?}");
    let reinvite = &out.iter().find(|(p, _)| *p == 6000).expect("to 2300").1;
    assert_eq!(
        reinvite.method(),
        Some(&crate::sip::message::Method::Invite)
    );
    // The token of this dialog does not open another Call-ID.
    let b = rig.branch();
    let text = in_dialog("BYE", "sip:2300@127.0.0.1:6000", &route, &b, "other-call");
    rig.send(7000, text);
    only_answer(&rig.out(), 7000, 481);
    // The callee's BYE (its route set is the Record-Route in order) reaches the caller.
    let bye = format!(
        "BYE sip:1000@127.0.0.1:7000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6000;branch=z9hG4bKcb\r\n\
{}Max-Forwards: 70\r\nFrom: <sip:2300@127.0.0.1>;tag=b1\r\n\
To: <sip:1000@127.0.0.1>;tag=a7000\r\nCall-ID: call-1000-2300\r\nCSeq: 9 BYE\r\n\
Content-Length: 0\r\n\r\n",
        callee_route(&inv)
    );
    rig.send(6000, bye);
    let out = rig.out();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, 7000);
    assert_eq!(out[0].1.method(), Some(&crate::sip::message::Method::Bye));
    assert_eq!(rig.sw.guard.stats.dialogs_refused, 1);
}

#[test]
fn a_bye_from_a_third_address_is_refused_and_the_call_goes_on() {
    let mut rig = Rig::new(&[]);
    let inv = answered_call(&mut rig);
    // Everything right (Call-ID, tags, our token) but the source.
    let text = caller_bye(&mut rig, &inv);
    rig.send_from("127.0.0.9:7000".parse().unwrap(), text);
    only_answer(&rig.out(), 7000, 481);
    assert_eq!(rig.sw.live_calls(rig.now.instant)[0].state, "answered");
    assert!(rig.records().is_empty());
    // A To tag other than the answered one is refused too.
    let text = caller_bye(&mut rig, &inv).replace("tag=b1", "tag=b2");
    rig.send(7000, text);
    only_answer(&rig.out(), 7000, 481);
    assert_eq!(rig.sw.live_calls(rig.now.instant).len(), 1);
    assert_eq!(rig.sw.guard.stats.dialogs_refused, 2);
}

#[test]
fn dialogs_are_recognised_by_a_switch_with_the_same_secret_after_a_restart() {
    let mut rig = Rig::new(&[]);
    rig.sw
        .set_dialog_key(crate::proxy::token::DialogKey::new([5; 32]));
    let inv = answered_call(&mut rig);
    // A new switch (nothing in memory but the registration, as restored from the store).
    let mut again = Rig::new(&[]);
    again
        .sw
        .set_dialog_key(crate::proxy::token::DialogKey::new([5; 32]));
    again.register("2300", 6000);
    let text = caller_bye(&mut again, &inv);
    again.send(7000, text);
    let out = again.out();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, 6000);
    // Another secret does not know the dialog.
    let mut other = Rig::new(&[]);
    other.register("2300", 6000);
    let text = in_dialog(
        "BYE",
        "sip:2300@127.0.0.1:6000",
        &caller_route(&inv),
        "z9hG4bKo",
        "call-1000-2300",
    );
    other.send(7000, text);
    only_answer(&other.out(), 7000, 481);
}

#[test]
fn with_the_domain_set_to_the_switch_ip_phones_on_that_ip_are_not_the_switch() {
    let mut rig = Rig::new(&[]);
    rig.sw.set_domain(Some("127.0.0.1".into()));
    assert!(rig.sw.net.names_us("sip:127.0.0.1;lr"));
    assert!(rig.sw.net.names_us("sip:127.0.0.1:5060;lr"));
    assert!(!rig.sw.net.names_us("sip:2300@127.0.0.1:6000"));
    assert!(!rig.sw.net.names_us("sip:127.0.0.1:5061;transport=tls"));
    let inv = answered_call(&mut rig);
    let text = caller_bye(&mut rig, &inv);
    rig.send(7000, text);
    let out = rig.out();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(
        out[0].0, 6000,
        "the BYE reaches the phone on the switch's IP"
    );
    // A domain that is a name matches by name (any of our ports), not an IP at another port.
    rig.sw.set_domain(Some("pbx.kalteng.go.id".into()));
    assert!(rig.sw.net.names_us("sip:pbx.kalteng.go.id;lr"));
    assert!(rig.sw.net.names_us("sip:PBX.kalteng.go.id:5060;lr"));
    assert!(!rig.sw.net.names_us("sip:pbx.kalteng.go.id:6000"));
    assert!(!rig.sw.net.names_us("sip:other.go.id"));
}

#[test]
fn a_cancel_from_another_address_is_refused_and_the_call_keeps_ringing() {
    let mut rig = Rig::new(&[]);
    rig.register("2300", 6000);
    let b = rig.call("1000", 7000, "2300");
    let inv = rig.out().into_iter().find(|(p, _)| *p == 6000).unwrap().1;
    rig.send(6000, answer(&inv, 180, "b", 6000));
    rig.out();
    let cancel = format!(
        "CANCEL sip:2300@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={b}\r\n\
Max-Forwards: 70\r\nFrom: <sip:1000@127.0.0.1>;tag=a7000\r\nTo: <sip:2300@127.0.0.1>\r\n\
Call-ID: call-1000-2300\r\nCSeq: 2 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    rig.send_from("127.0.0.9:7000".parse().unwrap(), cancel.clone());
    only_answer(&rig.out(), 7000, 481);
    rig.send_from("127.0.0.1:7001".parse().unwrap(), cancel.clone());
    only_answer(&rig.out(), 7001, 481);
    assert_eq!(rig.sw.live_calls(rig.now.instant)[0].state, "ringing");
    // The caller's own CANCEL works.
    rig.send(7000, cancel);
    let out = rig.out();
    assert!(out
        .iter()
        .any(|(p, m)| *p == 6000 && m.method().map(|m| m.as_str()) == Some("CANCEL")));
}

#[test]
fn a_late_2xx_goes_only_to_the_upstream_its_branch_was_made_for() {
    let mut rig = Rig::new(&[]);
    let inv = answered_call(&mut rig);
    // Long after the transaction: the 200 is a stray, forwarded by its second Via.
    for _ in 0..8 {
        rig.advance(10);
    }
    rig.out();
    let ok = answer(&inv, 200, "b1", 6000);
    rig.send(6000, ok.clone());
    let out = rig.out();
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, out[0].1.status()), (7000, Some(200)));
    // The same branch with another address in the next Via goes nowhere.
    let elsewhere = ok.replace("127.0.0.1:7000", "127.0.0.1:7999");
    assert_ne!(elsewhere, ok);
    rig.send(6000, elsewhere);
    assert!(rig.out().is_empty());
}

impl Rig {
    /// `from` (at `port`) joins room `room` with an authenticated INVITE offering PCMU;
    /// the switch's final answer.
    fn join_room(&mut self, from: &str, port: u16, room: &str) -> Message {
        let offer = sdp(port + 1);
        let b = self.branch();
        let text = with_sdp(&self.invite_text(from, port, room, &b, ""), &offer);
        self.send(port, text);
        let nonce = nonce_of(&self.out().pop().unwrap().1, HeaderName::ProxyAuthenticate);
        let uri = format!("sip:{room}@127.0.0.1");
        let auth = Digest::new(from, "INVITE", &uri, &nonce).proxy_authorization();
        let b = self.branch();
        let text = with_sdp(&self.invite_text(from, port, room, &b, &auth), &offer);
        self.send(port, text);
        self.out()
            .into_iter()
            .rev()
            .find(|(p, m)| *p == port && m.status().is_some_and(|s| s >= 200))
            .expect("a final answer")
            .1
    }

    /// The relay session of `ext`'s participant in the first room with participants.
    fn room_session(&self, ext: &str) -> crate::media::SessionId {
        let views = self.sw.rooms();
        let p = views[0]
            .participants
            .iter()
            .find(|p| p.extension == ext)
            .expect("in the room");
        crate::media::SessionId(p.session)
    }

    /// A DTMF digit `session` pressed in room 8000, as its forwarding thread reports it.
    fn room_digit(&mut self, session: crate::media::SessionId, digit: char) {
        use crate::media::mixer::{MixerEvent, ParticipantId};
        let event = crate::media::MediaEvent::Room {
            room: crate::media::RoomId(8000),
            session,
            event: MixerEvent::Digit {
                participant: ParticipantId(0),
                digit,
            },
        };
        self.sw.handle_media(event, self.now);
    }

    /// The `RoomMute`s sent to the relay so far: (session, muted).
    fn room_mutes(&mut self) -> Vec<(u64, bool)> {
        self.outputs.pump(&mut self.sw);
        self.outputs
            .media
            .iter()
            .filter_map(|c| match c {
                crate::media::MediaCommand::RoomMute { session, muted, .. } => {
                    Some((session.0, *muted))
                }
                _ => None,
            })
            .collect()
    }
}

/// Room 8000's moderators are Diskominfo's extensions: a moderator's `*8` locks the room (a
/// participant who is not a moderator gets 403 with a Warning; a moderator still joins),
/// `*7` mutes everyone but the moderators (and who joins while it holds); the same digits
/// from a participant who is not a moderator do nothing; the room forgets both when the
/// last participant has left.
#[test]
fn a_moderator_locks_and_mutes_room_8000_by_dtmf() {
    let mut rig = Rig::new(&[account("3501", "diskominfo"), account("3502", "diskominfo")]);
    with_relay(&mut rig);
    assert_eq!(rig.join_room("3501", 7000, "8000").status(), Some(200));
    let one = rig.join_room("1000", 7002, "8000");
    assert_eq!(one.status(), Some(200));
    let (moderator, setda) = (rig.room_session("3501"), rig.room_session("1000"));

    // A participant who is not a moderator: its *8 and *7 change nothing.
    for d in ['*', '8', '*', '7'] {
        rig.room_digit(setda, d);
    }
    let view = &rig.sw.rooms()[0];
    assert!(!view.locked && !view.all_muted);
    assert!(rig.room_mutes().is_empty());

    // The moderator's *8 locks; 1200 is refused, another moderator is not.
    rig.room_digit(moderator, '*');
    rig.room_digit(moderator, '8');
    assert!(rig.sw.rooms()[0].locked);
    let refused = rig.join_room("1200", 7004, "8000");
    assert_eq!(refused.status(), Some(403));
    let text = String::from_utf8_lossy(&refused.wire()).to_string();
    assert!(
        text.contains("Warning: 399 tambun \"room 8000 is locked"),
        "{text}"
    );
    assert_eq!(rig.join_room("3502", 7006, "8000").status(), Some(200));

    // *7: 1000 is muted, the moderators are not.
    rig.room_digit(moderator, '*');
    rig.room_digit(moderator, '7');
    assert!(rig.sw.rooms()[0].all_muted);
    assert_eq!(rig.room_mutes(), vec![(setda.0, true)]);

    // Everyone leaves (BYE); the next room 8000 is neither locked nor muted.
    for (ext, port) in [("3501", 7000), ("1000", 7002), ("3502", 7006)] {
        let view = rig.sw.rooms();
        assert!(!view.is_empty(), "{ext} left early");
        let local_tag = rig
            .sw
            .proxy
            .rooms
            .dialogs
            .get(&(format!("call-{ext}-8000"), format!("a{port}")))
            .map(|d| d.local_tag.clone())
            .expect("the participant's dialog");
        let b = rig.branch();
        let bye = format!(
            "BYE sip:8000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={b}\r\n\
Max-Forwards: 70\r\nFrom: <sip:{ext}@127.0.0.1>;tag=a{port}\r\nTo: <sip:8000@127.0.0.1>;tag={local_tag}\r\n\
Call-ID: call-{ext}-8000\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        rig.send(port, bye);
        let ok = rig.out().into_iter().find(|(p, _)| *p == port).unwrap().1;
        assert_eq!(ok.status(), Some(200), "BYE of {ext}");
    }
    assert!(rig.sw.rooms().is_empty());
    assert_eq!(rig.join_room("1200", 7008, "8000").status(), Some(200));
    let view = &rig.sw.rooms()[0];
    assert!(!view.locked && !view.all_muted);
}

/// Extension 1000 joins room 8000 from a browser (the digest answered): the final answer.
fn browser_joins_8000(rig: &mut Rig) -> Message {
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
m=audio 50000 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:0 PCMU/8000\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
a=setup:actpass\r\na=rtcp-mux\r\na=sendrecv\r\n";
    assert!(crate::sip::webrtc_sdp::is_webrtc(offer.as_bytes()));
    let b = rig.branch();
    let text = with_sdp(&rig.invite_text("1000", 7000, "8000", &b, ""), offer);
    rig.send(7000, text);
    let nonce = nonce_of(&rig.out().pop().unwrap().1, HeaderName::ProxyAuthenticate);
    let auth = Digest::new("1000", "INVITE", "sip:8000@127.0.0.1", &nonce).proxy_authorization();
    let b = rig.branch();
    let text = with_sdp(&rig.invite_text("1000", 7000, "8000", &b, &auth), offer);
    rig.send(7000, text);
    rig.out()
        .into_iter()
        .find(|(p, m)| *p == 7000 && m.status().is_some_and(|s| s >= 200))
        .expect("a final answer")
        .1
}

/// A browser's offer (UDP/TLS/RTP/SAVPF, ICE, DTLS) to a room is answered through a gateway
/// session: the browser gets a WebRTC answer (ICE-lite, our fingerprint, `setup:active`) in
/// PCMU, and the room a participant.
#[test]
fn a_browser_offer_to_a_room_is_answered_through_the_gateway() {
    // Without the gateway (no DTLS certificate): 488, with the reason.
    let mut rig = Rig::new(&[]);
    with_relay(&mut rig);
    let answer = browser_joins_8000(&mut rig);
    assert_eq!(answer.status(), Some(488));
    let wire = String::from_utf8_lossy(&answer.wire()).to_string();
    assert!(wire.contains("the WebRTC gateway is off"), "{wire}");
    assert!(rig.sw.rooms().is_empty());

    let mut rig = Rig::new(&[]);
    with_relay(&mut rig);
    if let Some(m) = rig.sw.proxy.media.as_mut() {
        m.set_fingerprint("sha-256 AA:BB:CC".into());
    }
    let answer = browser_joins_8000(&mut rig);
    assert_eq!(answer.status(), Some(200));
    let sdp = String::from_utf8_lossy(answer.body()).to_string();
    for want in [
        "UDP/TLS/RTP/SAVPF 0",
        "a=setup:active",
        "a=fingerprint:sha-256 ",
        "a=ice-lite",
    ] {
        assert!(
            sdp.contains(want),
            "no {want} in the browser's answer:\n{sdp}"
        );
    }
    assert!(!sdp.contains("opus"), "the room mixes G.711:\n{sdp}");
    assert_eq!(rig.sw.rooms()[0].participants.len(), 1);
}

/// Sends `from`'s INVITE to `to` with `extra` header lines and the digest answer to the
/// challenge the first try gets (the From user is `from_user`).
fn call_with(rig: &mut Rig, from: &str, from_user: &str, port: u16, to: &str, extra: &str) {
    let text = |b: &str, auth: &str| {
        format!(
            "INVITE sip:{to}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch={b}\r\n\
Max-Forwards: 70\r\nFrom: <sip:{from_user}@127.0.0.1>;tag=a{port}\r\nTo: <sip:{to}@127.0.0.1>\r\n\
Call-ID: call-{from}-{to}-{port}\r\nCSeq: 2 INVITE\r\nContact: <sip:{from}@127.0.0.1:{port}>\r\n{extra}{auth}\
Content-Length: 0\r\n\r\n"
        )
    };
    let b = rig.branch();
    rig.send(port, text(&b, ""));
    let out = rig.out();
    let ch = &out.last().unwrap().1;
    assert_eq!(ch.status(), Some(407));
    let nonce = nonce_of(ch, HeaderName::ProxyAuthenticate);
    let auth =
        Digest::new(from, "INVITE", &format!("sip:{to}@127.0.0.1"), &nonce).proxy_authorization();
    let b = rig.branch();
    rig.send(port, text(&b, &auth));
}

#[test]
fn caller_id_toward_carriers_is_the_opds_number_unless_the_caller_asks_for_privacy() {
    let mut rig = Rig::new(&[]);
    // The shipped carrier with the caller ID in From and PAI, in E.164.
    let mut plan = (*rig.sw.dialplan).clone();
    plan.edit_trunks(|t| {
        t.caller_id = crate::dialplan::CallerIdPlacement::Both;
        t.number_format = crate::dialplan::NumberFormat::E164;
    });
    rig.sw.handle_dialplan(Arc::new(plan));
    // A plain national call from Setda's 1000 (no public number of its own: the province's).
    call_with(
        &mut rig,
        "1000",
        "1000",
        7000,
        "90561234567",
        "P-Asserted-Identity: <sip:+62999@x>\r\n",
    );
    let out = rig.out();
    let inv = at_trunk(&out)[0];
    assert_eq!(inv.request_uri(), Some("sip:+62561234567@127.0.0.1:5090"));
    assert!(inv
        .header(HeaderName::From)
        .unwrap()
        .contains("<sip:+625363231110@127.0.0.1>"));
    let pai: Vec<&str> = inv
        .headers_by_raw_name("P-Asserted-Identity")
        .map(|h| inv.text(h.value))
        .collect();
    assert_eq!(
        pai,
        ["<sip:+625363231110@127.0.0.1>"],
        "the phone's own PAI is dropped"
    );
    // Privacy asked for (RFC 3323) with an anonymous From: From stays anonymous, the PAI
    // still goes (the carrier must withhold it) with the phone's Privacy header.
    call_with(
        &mut rig,
        "1000",
        "anonymous",
        7001,
        "90561234568",
        "Privacy: id\r\n",
    );
    let out = rig.out();
    let inv = at_trunk(&out)[0];
    assert!(inv
        .header(HeaderName::From)
        .unwrap()
        .contains("<sip:anonymous@127.0.0.1>"));
    assert_eq!(inv.headers_by_raw_name("Privacy").count(), 1);
    assert_eq!(inv.headers_by_raw_name("P-Asserted-Identity").count(), 1);
}

/// The page's room controls are a moderator's only: a wrong password is refused (and
/// counted), an extension that does not moderate the room gets "you do not moderate", a
/// Diskominfo extension (8000's moderators by OPD) gets through to the room itself.
#[test]
fn the_pages_room_controls_are_for_the_rooms_moderators_only() {
    use crate::proxy::rooms::{RoomAction, RoomActionError};
    use crate::switch::PageRoomError;
    let mut rig = Rig::new(&[crate::testing::account("3501", "diskominfo")]);
    let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let now = rig.now;
    let lock = RoomAction::Lock { locked: true };
    let r = rig
        .sw
        .phone_room_action("1000", "wrong", ip, "8000", lock.clone(), now);
    assert!(matches!(r, Err(PageRoomError::Unauthorized)), "{r:?}");
    let r = rig
        .sw
        .phone_room_action("1000", "pw1000", ip, "8000", lock.clone(), now);
    assert!(matches!(r, Err(PageRoomError::NotModerator(_))), "{r:?}");
    let r = rig
        .sw
        .phone_room_action("3501", "pw3501", ip, "8000", lock, now);
    assert!(
        matches!(r, Err(PageRoomError::Room(RoomActionError::Empty(_)))),
        "{r:?}"
    );
    // The room list: both see 8000; only the Diskominfo extension as a moderator.
    let rooms = rig.sw.phone_rooms("1000", "pw1000", ip, now).unwrap();
    let r8000 = rooms.rooms.iter().find(|r| r.number == "8000").unwrap();
    assert!(!r8000.moderator);
    let rooms = rig.sw.phone_rooms("3501", "pw3501", ip, now).unwrap();
    assert!(
        rooms
            .rooms
            .iter()
            .find(|r| r.number == "8000")
            .unwrap()
            .moderator
    );
    assert!(rig.sw.phone_rooms("3501", "nope", ip, now).is_none());
}
