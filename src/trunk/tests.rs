//! The carrier client on simulated time: a carrier that challenges, grants, refreshes, goes
//! silent and comes back; pings and the order calls try carriers in.

use bytes::Bytes;

use super::*;
use crate::dialplan::{CallerIdPlacement, DidSource, NumberFormat};
use crate::sip::auth::{ha1_hex, parse_credentials, verify};
use crate::sip::message::{Limits, Message};
use crate::testing::{monday_morning, step};

const CARRIER: &str = "127.0.0.1:5090";

fn carrier(name: &str, port: u16, priority: u32, register: bool, ping_secs: u32) -> Trunk {
    Trunk {
        name: name.into(),
        host: "127.0.0.1".into(),
        port,
        transport: Transport::Udp,
        priority,
        number_format: NumberFormat::National,
        caller_id: CallerIdPlacement::Pai,
        did_from: DidSource::RequestUri,
        ping_secs,
        timeout_secs: 5,
        register: register.then(|| TrunkRegistration {
            username: "0536321000".into(),
            realm: "carrier.test".into(),
            domain: "127.0.0.1".into(),
            expires_secs: 600,
        }),
        codecs: Vec::new(),
        tls: None,
        inbound_from: Vec::new(),
        line: 1,
    }
}

fn network() -> Network {
    let mut net = Network::default();
    net.udp.push("127.0.0.1:5060".parse().unwrap());
    net
}

fn secret() -> TrunkSecret {
    TrunkSecret {
        name: "telkom".into(),
        username: "0536321000".into(),
        realm: "carrier.test".into(),
        ha1_md5: ha1_hex(Algorithm::Md5, "0536321000", "carrier.test", "pw"),
        ha1_sha256: ha1_hex(Algorithm::Sha256, "0536321000", "carrier.test", "pw"),
        updated_at: 0,
    }
}

/// Every request the core sent, parsed.
fn sent(t: &mut Trunks) -> Vec<Message> {
    std::iter::from_fn(|| t.poll_transmit())
        .map(|x| Message::parse_datagram(x.bytes, &Limits::default()).unwrap())
        .collect()
}

/// The carrier's answer to `req`: `status` with `extra` header lines.
fn answer(req: &Message, status: u16, extra: &str) -> Message {
    let text = format!(
        "SIP/2.0 {status} X\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=c\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}Content-Length: 0\r\n\r\n",
        req.header(HeaderName::Via).unwrap(),
        req.header(HeaderName::From).unwrap(),
        req.header(HeaderName::To).unwrap(),
        req.call_id().unwrap(),
        req.header(HeaderName::CSeq).unwrap(),
    );
    Message::parse_datagram(Bytes::from(text), &Limits::default()).unwrap()
}

const CHALLENGE: &str =
    "WWW-Authenticate: Digest realm=\"carrier.test\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"\r\n";

#[test]
fn registers_with_digest_refreshes_at_half_and_backs_off_when_the_carrier_is_silent() {
    let net = network();
    let mut now = monday_morning();
    let mut t = Trunks::new("i1".into());
    t.handle_config(&[carrier("telkom", 5090, 1, true, 0)], Some(now.instant));
    t.handle_secrets(vec![secret()]);
    let from: SocketAddr = CARRIER.parse().unwrap();
    t.handle_timeout(&net, now);
    let first = sent(&mut t);
    assert_eq!(first.len(), 1);
    assert!(first[0].header(HeaderName::Authorization).is_none());
    // Challenged: the next REGISTER answers it, verifiably, with CSeq + 1.
    t.handle_response(&answer(&first[0], 401, CHALLENGE), from, &net, now);
    let second = sent(&mut t);
    let creds = parse_credentials(
        second[0]
            .header(HeaderName::Authorization)
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    assert!(verify(&creds, "REGISTER", &secret().ha1_md5));
    assert_eq!(
        second[0].cseq().unwrap().seq,
        first[0].cseq().unwrap().seq + 1
    );
    // A response from another address is not the carrier's.
    t.handle_response(
        &answer(&second[0], 200, "Expires: 60\r\n"),
        "127.0.0.2:5090".parse().unwrap(),
        &net,
        now,
    );
    assert_eq!(t.views(now.instant)[0].registration, RegState::Registering);
    t.handle_response(&answer(&second[0], 200, "Expires: 60\r\n"), from, &net, now);
    let v = &t.views(now.instant)[0];
    assert_eq!(
        (v.registration, v.expires_in),
        (RegState::Registered, Some(60))
    );
    assert!(v.healthy);
    // The refresh comes at half the granted 60 s.
    step(&mut now, 29);
    t.handle_timeout(&net, now);
    assert!(sent(&mut t).is_empty());
    step(&mut now, 1);
    t.handle_timeout(&net, now);
    let refresh = sent(&mut t);
    assert_eq!(refresh.len(), 1);
    // The carrier stays silent: after 8 s the attempt has failed, and retries back off
    // 2 s, 4 s, 8 s … (each retry again unanswered).
    let mut gaps = Vec::new();
    let mut last = now.instant;
    let mut branches = vec![refresh[0].top_via().unwrap().branch().unwrap().to_owned()];
    for _ in 0..40 {
        step(&mut now, 1);
        t.handle_timeout(&net, now);
        for m in sent(&mut t) {
            // New attempts only (not the retransmissions of one).
            let b = m.top_via().unwrap().branch().unwrap().to_owned();
            if !branches.contains(&b) {
                branches.push(b);
                gaps.push(now.instant.duration_since(last).as_secs());
                last = now.instant;
            }
        }
    }
    let v = &t.views(now.instant)[0];
    // (failed, or registering again with the last error kept)
    assert_ne!(v.registration, RegState::Registered);
    assert!(v
        .last_error
        .as_deref()
        .unwrap()
        .contains("no answer to REGISTER within 8 s"));
    assert!(!v.healthy);
    // Send times after the refresh: 8 s (timeout) + 2 s; then 8 + 4; then 8 + 8.
    assert_eq!(&gaps[..3], &[10, 12, 16], "{gaps:?}");
}

#[test]
fn a_password_for_another_realm_is_refused_with_a_sentence() {
    let net = network();
    let now = monday_morning();
    let mut t = Trunks::new("i2".into());
    t.handle_config(&[carrier("telkom", 5090, 1, true, 0)], Some(now.instant));
    t.handle_timeout(&net, now);
    let first = sent(&mut t);
    let from: SocketAddr = CARRIER.parse().unwrap();
    // No password yet.
    t.handle_response(&answer(&first[0], 401, CHALLENGE), from, &net, now);
    let v = &t.views(now.instant)[0];
    assert!(v
        .last_error
        .as_deref()
        .unwrap()
        .contains("run `tambun trunk passwd telkom`"));
    assert!(sent(&mut t).is_empty());
    // The carrier challenges with another realm than configured.
    t.handle_secrets(vec![secret()]);
    t.handle_timeout(&net, now);
    let again = sent(&mut t);
    let other = CHALLENGE.replace("carrier.test", "elsewhere");
    t.handle_response(&answer(&again[0], 401, &other), from, &net, now);
    let v = &t.views(now.instant)[0];
    assert!(
        v.last_error
            .as_deref()
            .unwrap()
            .contains("realm 'elsewhere'"),
        "{v:?}"
    );
}

#[test]
fn calls_try_healthy_carriers_first_and_a_failed_one_last_for_a_minute() {
    let net = network();
    let mut now = monday_morning();
    let mut t = Trunks::new("i3".into());
    t.handle_config(
        &[
            carrier("telkom", 5090, 1, false, 10),
            carrier("backup", 5091, 2, false, 0),
        ],
        Some(now.instant),
    );
    let names = |t: &Trunks, now: Instant| {
        t.order(now)
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
    };
    t.handle_timeout(&net, now);
    let ping = sent(&mut t);
    assert_eq!(ping[0].method().unwrap().as_str(), "OPTIONS");
    assert_eq!(names(&t, now.instant), ["telkom", "backup"]);
    // The ping goes unanswered: telkom is tried last until it answers again.
    step(&mut now, 8);
    t.handle_timeout(&net, now);
    sent(&mut t); // (its retransmissions)
    assert_eq!(names(&t, now.instant), ["backup", "telkom"]);
    step(&mut now, 2);
    t.handle_timeout(&net, now);
    let ping = sent(&mut t);
    assert_eq!(ping.len(), 1, "{ping:?}");
    let from: SocketAddr = CARRIER.parse().unwrap();
    t.handle_response(&answer(&ping[0], 405, ""), from, &net, now);
    assert_eq!(names(&t, now.instant), ["telkom", "backup"]);
    assert!(t.views(now.instant)[0].ping_rtt_ms.is_some());
    // A failed call puts it last for a minute.
    t.handle_call_failed(
        "telkom",
        "a call got no answer from the carrier".into(),
        now,
    );
    assert_eq!(names(&t, now.instant), ["backup", "telkom"]);
    step(&mut now, 60);
    assert_eq!(names(&t, now.instant), ["telkom", "backup"]);
    assert_eq!(t.carrier_at(from).map(|c| c.name.as_str()), Some("telkom"));
    assert!(t.carrier_at("127.0.0.1:5092".parse().unwrap()).is_none());
    // A carrier whose calls also come from its SBCs' network: any port there.
    let mut sbc = carrier("telkom", 5090, 1, false, 0);
    sbc.inbound_from = vec!["127.0.3.0/24".parse().unwrap()];
    t.handle_config(&[sbc], Some(now.instant));
    let from_sbc: SocketAddr = "127.0.3.9:41234".parse().unwrap();
    assert_eq!(
        t.carrier_at(from_sbc).map(|c| c.name.as_str()),
        Some("telkom")
    );
    assert!(t.carrier_at("127.0.4.9:5090".parse().unwrap()).is_none());
}

#[test]
fn a_tls_carrier_is_connected_at_start_again_after_a_close_and_with_back_off_after_failures() {
    let net = network();
    let mut now = monday_morning();
    let mut t = Trunks::new("i1".into());
    let mut cfg = carrier("telkom", 5091, 1, false, 0);
    cfg.transport = Transport::Tls;
    cfg.tls = Some(crate::dialplan::TrunkTls {
        server_name: "sip.carrier.test".into(),
        ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
    });
    t.handle_config(&[cfg.clone()], Some(now.instant));
    let addr: SocketAddr = "127.0.0.1:5091".parse().unwrap();
    // At start: one connection asked for, with how to check the certificate.
    t.handle_timeout(&net, now);
    let c = t.poll_connect().expect("connects at start");
    assert_eq!((c.addr, c.transport), (addr, Transport::Tls));
    assert_eq!(c.tls, cfg.tls);
    assert!(t.poll_connect().is_none(), "one connection at a time");
    // It fails: the reason is shown, and the next attempt waits 2 s, then 4 s.
    t.handle_connect_failed(addr, Transport::Tls, "TLS handshake failed: bad name", now);
    let v = &t.views(now.instant)[0];
    assert!(
        v.last_error.as_deref().unwrap().contains("bad name"),
        "{v:?}"
    );
    assert_eq!(t.poll_timeout(), Some(now.instant + Duration::from_secs(2)));
    step(&mut now, 1);
    t.handle_timeout(&net, now);
    assert!(t.poll_connect().is_none(), "not before 2 s");
    step(&mut now, 1);
    t.handle_timeout(&net, now);
    assert!(t.poll_connect().is_some(), "again after 2 s");
    t.handle_connect_failed(addr, Transport::Tls, "refused", now);
    assert_eq!(t.poll_timeout(), Some(now.instant + Duration::from_secs(4)));
    step(&mut now, 4);
    t.handle_timeout(&net, now);
    assert!(t.poll_connect().is_some(), "again after 4 s");
    // It opens, and later closes: opened again at once, and the back-off starts over.
    t.handle_connected(addr, Transport::Tls);
    t.handle_closed(addr, Transport::Tls);
    t.handle_timeout(&net, now);
    assert!(t.poll_connect().is_some(), "reconnects after a close");
    t.handle_connect_failed(addr, Transport::Tls, "refused", now);
    assert_eq!(t.poll_timeout(), Some(now.instant + Duration::from_secs(2)));
}

#[test]
fn a_calls_challenge_is_answered_with_the_trunks_account_for_401_and_407() {
    let mut now = monday_morning();
    let mut t = Trunks::new("i1".into());
    t.handle_config(&[carrier("telkom", 5090, 1, true, 0)], Some(now.instant));
    let invite = Message::parse_datagram(
        Bytes::from_static(
            b"INVITE sip:0561234567@127.0.0.1:5090 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKtb1\r\n\
              From: <sip:1001@127.0.0.1>;tag=a\r\nTo: <sip:0561234567@127.0.0.1>\r\nCall-ID: c1\r\n\
              CSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n",
        ),
        &Limits::default(),
    )
    .unwrap();
    let uri = "sip:0561234567@127.0.0.1:5090";
    // No password yet: a sentence, kept as the carrier's last error.
    let e = t
        .call_credentials(
            "telkom",
            &answer(&invite, 401, CHALLENGE),
            401,
            "INVITE",
            uri,
            now,
        )
        .unwrap_err();
    assert!(e.contains("tambun trunk passwd telkom"), "{e}");
    assert!(t.views(now.instant)[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("challenged"));
    t.handle_secrets(vec![secret()]);
    step(&mut now, 1);
    for (status, challenge, header) in [
        (401, CHALLENGE.to_owned(), "Authorization: "),
        (
            407,
            CHALLENGE.replace("WWW-Authenticate", "Proxy-Authenticate"),
            "Proxy-Authorization: ",
        ),
    ] {
        let line = t
            .call_credentials(
                "telkom",
                &answer(&invite, status, &challenge),
                status,
                "INVITE",
                uri,
                now,
            )
            .unwrap();
        let value = line
            .strip_prefix(header)
            .unwrap_or_else(|| panic!("{line}"));
        let creds = parse_credentials(value.as_bytes()).unwrap();
        assert!(verify(&creds, "INVITE", &secret().ha1_md5), "{line}");
        assert!(line.contains(&format!("uri=\"{uri}\"")), "{line}");
    }
}
