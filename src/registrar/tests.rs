//! Registrar state machine on simulated time.

use bytes::Bytes;

use super::*;
use crate::sip::auth::Algorithm;
use crate::sip::message::Limits;
use crate::testing::{account, monday_morning, nonce_in, registrar, step, Digest};

/// The Request-URI of every REGISTER here.
const URI: &str = "sip:127.0.0.1";

/// The registrar alone (no switch around it), with 1000 and 1001 in setda.
struct Rig {
    reg: Registrar,
    now: Now,
    cseq: u32,
}

fn src() -> Source {
    Source {
        addr: "127.0.0.1:5080".parse().unwrap(),
        transport: Transport::Udp,
        conn: None,
    }
}

impl Rig {
    fn new() -> Rig {
        Rig {
            reg: registrar(vec![account("1000", "setda"), account("1001", "setda")]),
            now: monday_morning(),
            cseq: 0,
        }
    }

    fn advance(&mut self, secs: u64) {
        step(&mut self.now, secs);
        self.reg.location.handle_timeout(self.now.instant);
    }

    fn message(&mut self, user: &str, extra: &str) -> Message {
        self.cseq += 1;
        let text = format!(
            "REGISTER {URI} SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK{}\r\n\
From: <sip:{user}@127.0.0.1>;tag=f1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
Call-ID: call-{user}\r\nCSeq: {} REGISTER\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n",
            self.cseq, self.cseq
        );
        Message::parse_datagram(Bytes::from(text), &Limits::default()).unwrap()
    }

    fn send(&mut self, user: &str, extra: &str) -> Reply {
        let m = self.message(user, extra);
        self.reg.handle_register(&m, src(), self.now)
    }

    /// REGISTER → 401 → REGISTER with digest; returns the final reply.
    fn register(&mut self, user: &str, pw: &str, alg: Algorithm, extra: &str) -> Reply {
        let first = self.send(user, extra);
        assert_eq!(first.status, 401);
        let nonce = nonce_of(&first, alg);
        let auth = authorization(user, pw, &nonce, 1, alg);
        self.send(user, &format!("{auth}{extra}"))
    }
}

/// The nonce of the challenge for `alg` in a 401.
fn nonce_of(r: &Reply, alg: Algorithm) -> String {
    let h = r
        .headers
        .iter()
        .find(|h| h.contains(&format!("algorithm={}", alg.token())))
        .unwrap();
    nonce_in(h)
}

/// The `Authorization:` line (with its CRLF) of a REGISTER.
fn authorization(user: &str, pw: &str, nonce: &str, nc: u32, alg: Algorithm) -> String {
    Digest::new(user, "REGISTER", URI, nonce)
        .password(pw)
        .nc(nc)
        .algorithm(alg)
        .authorization()
}

fn contacts(r: &Reply) -> Vec<&str> {
    r.headers
        .iter()
        .filter_map(|h| h.strip_prefix("Contact: "))
        .collect()
}

#[test]
fn md5_and_sha256_register() {
    let mut rig = Rig::new();
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: <sip:1000@127.0.0.1:5080>\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(contacts(&r), vec!["<sip:1000@127.0.0.1:5080>;expires=3600"]);
    let r = rig.register(
        "1001",
        "pw1001",
        Algorithm::Sha256,
        "Contact: <sip:1001@127.0.0.1:5090>\r\nExpires: 120\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(contacts(&r), vec!["<sip:1001@127.0.0.1:5090>;expires=120"]);
    assert_eq!(rig.reg.location.len(), 2);
}

#[test]
fn wrong_password_and_unknown_extension_look_the_same() {
    let mut rig = Rig::new();
    let wrong = rig.register("1000", "nope", Algorithm::Md5, "Contact: <sip:1000@h>\r\n");
    let unknown = rig.register("1999", "nope", Algorithm::Md5, "Contact: <sip:1999@h>\r\n");
    let bad_format = rig.register("abc", "nope", Algorithm::Md5, "Contact: <sip:abc@h>\r\n");
    for r in [&wrong, &unknown, &bad_format] {
        assert_eq!(r.status, 401);
        assert_eq!(r.headers.len(), 2);
        assert!(!r.headers[0].contains("stale"));
    }
    assert!(rig.reg.location.is_empty());
}

#[test]
fn replayed_nonce_count_is_refused_and_higher_accepted() {
    let mut rig = Rig::new();
    let first = rig.send("1000", "Contact: <sip:1000@h>\r\n");
    let nonce = nonce_of(&first, Algorithm::Md5);
    let a1 = authorization("1000", "pw1000", &nonce, 1, Algorithm::Md5);
    assert_eq!(
        rig.send("1000", &format!("{a1}Contact: <sip:1000@h>\r\n"))
            .status,
        200
    );
    assert_eq!(
        rig.send("1000", &format!("{a1}Contact: <sip:1000@h>\r\n"))
            .status,
        401
    );
    let a2 = authorization("1000", "pw1000", &nonce, 2, Algorithm::Md5);
    assert_eq!(
        rig.send("1000", &format!("{a2}Contact: <sip:1000@h>\r\n"))
            .status,
        200
    );
}

#[test]
fn stale_nonce_gets_stale_true_only_with_the_right_password() {
    let mut rig = Rig::new();
    let first = rig.send("1000", "Contact: <sip:1000@h>\r\n");
    let nonce = nonce_of(&first, Algorithm::Md5);
    rig.advance(301);
    let good = authorization("1000", "pw1000", &nonce, 1, Algorithm::Md5);
    let r = rig.send("1000", &format!("{good}Contact: <sip:1000@h>\r\n"));
    assert_eq!(r.status, 401);
    assert!(r.headers[0].contains("stale=true"));
    let bad = authorization("1000", "wrong", &nonce, 1, Algorithm::Md5);
    let r = rig.send("1000", &format!("{bad}Contact: <sip:1000@h>\r\n"));
    assert!(!r.headers[0].contains("stale=true"));
}

#[test]
fn several_contacts_expiry_query_and_star() {
    let mut rig = Rig::new();
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: <sip:1000@a>;expires=100, <sip:1000@b>\r\nExpires: 200\r\n",
    );
    assert_eq!(r.status, 200);
    let mut c = contacts(&r);
    c.sort();
    assert_eq!(
        c,
        vec!["<sip:1000@a>;expires=100", "<sip:1000@b>;expires=200"]
    );
    // A query (no Contact) lists the bindings.
    rig.advance(50);
    let r = rig.register("1000", "pw1000", Algorithm::Md5, "");
    let mut c = contacts(&r);
    c.sort();
    assert_eq!(
        c,
        vec!["<sip:1000@a>;expires=50", "<sip:1000@b>;expires=150"]
    );
    // Expired bindings disappear.
    rig.advance(60);
    assert_eq!(rig.reg.location.bindings(&"1000".parse().unwrap()).len(), 1);
    // Too brief → 423 with Min-Expires, nothing changed.
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: <sip:1000@c>;expires=10\r\n",
    );
    assert_eq!(r.status, 423);
    assert_eq!(r.headers, vec!["Min-Expires: 60".to_string()]);
    // Contact: * needs Expires: 0.
    let r = rig.register("1000", "pw1000", Algorithm::Md5, "Contact: *\r\n");
    assert_eq!(r.status, 400);
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: *\r\nExpires: 0\r\n",
    );
    assert_eq!(r.status, 200);
    assert!(contacts(&r).is_empty());
    assert!(rig.reg.location.is_empty());
}

#[test]
fn expires_is_capped_and_zero_removes_one() {
    let mut rig = Rig::new();
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: <sip:1000@a>;expires=99999, <sip:1000@b>\r\n",
    );
    assert!(contacts(&r).contains(&"<sip:1000@a>;expires=3600"));
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: <sip:1000@a>;expires=0\r\n",
    );
    assert_eq!(contacts(&r), vec!["<sip:1000@b>;expires=3600"]);
}

#[test]
fn contact_params_stay_header_params() {
    let mut rig = Rig::new();
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: sip:1000@gw1.example.net;unknownparam\r\n",
    );
    assert_eq!(
        contacts(&r),
        vec!["<sip:1000@gw1.example.net>;unknownparam;expires=3600"]
    );
}

#[test]
fn instance_id_replaces_the_old_contact() {
    let mut rig = Rig::new();
    let inst = "+sip.instance=\"<urn:uuid:1>\";reg-id=1";
    rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        &format!("Contact: <sip:1000@a>;{inst}\r\n"),
    );
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        &format!("Contact: <sip:1000@b>;{inst}\r\n"),
    );
    assert_eq!(contacts(&r).len(), 1);
    assert!(contacts(&r)[0].starts_with("<sip:1000@b>"));
}

#[test]
fn credentials_for_another_aor_are_forbidden() {
    let mut rig = Rig::new();
    let first = rig.send("1001", "Contact: <sip:1001@h>\r\n");
    let nonce = nonce_of(&first, Algorithm::Md5);
    let a = authorization("1000", "pw1000", &nonce, 1, Algorithm::Md5);
    assert_eq!(
        rig.send("1001", &format!("{a}Contact: <sip:1001@h>\r\n"))
            .status,
        403
    );
}

#[test]
fn disabling_an_account_drops_its_bindings() {
    let mut rig = Rig::new();
    rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: <sip:1000@a>\r\n",
    );
    rig.reg.location.drain_changes();
    let mut acc = account("1000", "setda");
    acc.enabled = false;
    rig.reg
        .handle_accounts(Accounts::new(vec![acc, account("1001", "setda")]));
    assert!(rig.reg.location.is_empty());
    assert_eq!(
        rig.reg.location.drain_changes(),
        vec![Change::RemoveAll {
            extension: "1000".parse().unwrap()
        }]
    );
    let r = rig.register(
        "1000",
        "pw1000",
        Algorithm::Md5,
        "Contact: <sip:1000@a>\r\n",
    );
    assert_eq!(r.status, 401);
}
