//! The guard inside the switch, on simulated time: what reaches the registrar and the proxy,
//! what is answered, and what is counted. Phones are byte strings; no sockets.

use crate::guard::Settings as GuardSettings;
use crate::sip::message::HeaderName;
use crate::testing::{account, nonce_of, Digest, Rig};

/// A switch at 10.0.0.1 with 1000 and 1001 in setda, guarded by the defaults with 10.20.0.0/16
/// allow-listed and then `edit`.
fn guarded(edit: impl FnOnce(&mut GuardSettings)) -> Rig {
    let mut config = GuardSettings {
        allow: vec!["10.20.0.0/16".into()],
        ..GuardSettings::default()
    };
    edit(&mut config);
    Rig::builder()
        .accounts(&[account("1001", "setda")])
        .socket("10.0.0.1:5060")
        .guard(config)
        .build()
}

/// What the guard tests' phones do.
impl Rig {
    /// Moves the clock on and drops what the timers sent: retransmissions are not the answers
    /// the tests look at.
    fn advance_discarding(&mut self, secs: u64) {
        self.advance(secs);
        self.transmits();
    }

    fn request(&mut self, method: &str, from: &str, user: &str, extra: &str) -> String {
        let n = self.next();
        format!(
            "{method} sip:{user}@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKg{n}\r\n\
Max-Forwards: 70\r\nFrom: <sip:{user}@10.0.0.1>;tag=f{n}\r\nTo: <sip:{user}@10.0.0.1>\r\n\
Call-ID: g{n}\r\nCSeq: 1 {method}\r\nContact: <sip:{user}@{from}>\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }

    /// A challenge's nonce for `method` from `from`.
    fn nonce(&mut self, method: &str, from: &str, user: &str) -> String {
        let text = self.request(method, from, user, "");
        let out = self.answers_to(from, &text);
        let h = if method == "REGISTER" {
            HeaderName::WwwAuthenticate
        } else {
            HeaderName::ProxyAuthenticate
        };
        nonce_of(&out[0], h)
    }
}

/// Rate limits small enough to reach in a test: a burst of 5, 1 per second, 10 drops ban.
fn tight_rig() -> Rig {
    guarded(|c| {
        c.request_burst = 5;
        c.requests_per_sec = 1;
        c.flood_drops = 10;
    })
}

/// The answer to a challenge as the guard tests' phones give it (the request URI names `user`).
fn credentials(header: &str, user: &str, pw: &str, method: &str, nonce: &str, nc: u32) -> String {
    let uri = format!("sip:{user}@10.0.0.1");
    Digest::new(user, method, &uri, nonce)
        .password(pw)
        .nc(nc)
        .line(header)
}

#[test]
fn wrong_passwords_and_unknown_extensions_ban_alike_over_register_and_invite() {
    let mut rig = guarded(|_| {});
    let attacker = "192.0.2.66:5060";
    // 4 wrong passwords on REGISTER, 3 unknown extensions on REGISTER, 3 wrong on INVITE.
    let nonce = rig.nonce("REGISTER", attacker, "1000");
    for nc in 1..=4 {
        let auth = credentials("Authorization", "1000", "guess", "REGISTER", &nonce, nc);
        let text = rig.request("REGISTER", attacker, "1000", &auth);
        assert_eq!(rig.answers_to(attacker, &text)[0].status(), Some(401));
    }
    for nc in 1..=3 {
        let auth = credentials("Authorization", "1999", "guess", "REGISTER", &nonce, nc);
        let text = rig.request("REGISTER", attacker, "1999", &auth);
        assert_eq!(rig.answers_to(attacker, &text)[0].status(), Some(401));
    }
    let nonce = rig.nonce("INVITE", attacker, "1000");
    for nc in 1..=3 {
        let auth = credentials("Proxy-Authorization", "1000", "guess", "INVITE", &nonce, nc);
        let text = rig.request("INVITE", attacker, "1000", &auth);
        let out = rig.answers_to(attacker, &text);
        assert_eq!(out.last().unwrap().status(), Some(407));
    }
    assert_eq!(rig.sw.guard.stats.auth_failures, 10);
    assert_eq!(rig.sw.guard.stats.bans_added, 1);
    let bans = rig.bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].address.to_string(), "192.0.2.66");
    // Banned: not even parsed (garbage gets no 400), nothing sent, nothing received.
    let received = rig.sw.stats.received;
    assert!(rig
        .answers_to(attacker, "OPTIONS garbage\r\n\r\n")
        .is_empty());
    let text = rig.request("OPTIONS", attacker, "1000", "");
    assert!(rig.answers_to(attacker, &text).is_empty());
    assert_eq!(rig.sw.stats.received, received);
    assert_eq!(rig.sw.guard.stats.dropped_banned, 2);
    // The same address from another port is the same source.
    let text = rig.request("OPTIONS", "192.0.2.66:5070", "1000", "");
    assert!(rig.answers_to("192.0.2.66:5070", &text).is_empty());
    // Others are served.
    let text = rig.request("OPTIONS", "192.0.2.67:5060", "1000", "");
    assert_eq!(
        rig.answers_to("192.0.2.67:5060", &text)[0].status(),
        Some(200)
    );
    // Ten minutes later the ban is over.
    rig.advance_discarding(601);
    let text = rig.request("OPTIONS", attacker, "1000", "");
    assert_eq!(rig.answers_to(attacker, &text)[0].status(), Some(200));
}

#[test]
fn stale_and_foreign_nonces_are_not_failures() {
    let mut rig = guarded(|_| {});
    let phone = "192.0.2.70:5060";
    // A nonce from before a restart (another key): not ours, not a failure.
    let foreign = "00000000deadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeefdeadbeef";
    for nc in 1..=20 {
        let auth = credentials("Authorization", "1000", "pw1000", "REGISTER", foreign, nc);
        let text = rig.request("REGISTER", phone, "1000", &auth);
        assert_eq!(rig.answers_to(phone, &text)[0].status(), Some(401));
    }
    // The right password on an expired nonce: stale=true, not a failure.
    let nonce = rig.nonce("REGISTER", phone, "1000");
    rig.advance_discarding(400);
    let auth = credentials("Authorization", "1000", "pw1000", "REGISTER", &nonce, 1);
    let text = rig.request("REGISTER", phone, "1000", &auth);
    let out = rig.answers_to(phone, &text);
    assert!(out[0]
        .header(HeaderName::WwwAuthenticate)
        .unwrap()
        .contains("stale=true"));
    assert_eq!(rig.sw.guard.stats.auth_failures, 0);
    // A wrong password on an expired nonce is one (else `stale` would tell passwords apart).
    let auth = credentials("Authorization", "1000", "guess", "REGISTER", &nonce, 2);
    let text = rig.request("REGISTER", phone, "1000", &auth);
    rig.answers_to(phone, &text);
    assert_eq!(rig.sw.guard.stats.auth_failures, 1);
}

#[test]
fn scanner_user_agent_gets_no_answer() {
    let mut rig = guarded(|_| {});
    let scanner = "192.0.2.80:5060";
    let text = rig.request(
        "OPTIONS",
        scanner,
        "100",
        "User-Agent: friendly-scanner\r\n",
    );
    assert!(rig.answers_to(scanner, &text).is_empty());
    let text = rig.request("REGISTER", scanner, "1000", "");
    assert!(
        rig.answers_to(scanner, &text).is_empty(),
        "and it is banned"
    );
    assert_eq!(rig.sw.guard.stats.dropped_scanner, 1);
    assert_eq!(rig.sw.guard.stats.dropped_banned, 1);
    // From the allow-list a scanner User-Agent is dropped too, but the source is not banned.
    let admin = "10.20.1.1:5060";
    let text = rig.request("OPTIONS", admin, "100", "User-Agent: sipvicious\r\n");
    assert!(rig.answers_to(admin, &text).is_empty());
    let text = rig.request("OPTIONS", admin, "100", "");
    assert_eq!(rig.answers_to(admin, &text)[0].status(), Some(200));
}

#[test]
fn over_rate_requests_dropped_then_flood_banned_responses_unaffected() {
    let mut rig = tight_rig();
    let src = "192.0.2.90:5060";
    let mut answered = 0;
    for _ in 0..10 {
        let text = rig.request("OPTIONS", src, "100", "");
        answered += rig.answers_to(src, &text).len();
    }
    assert_eq!(answered, 5, "the burst");
    assert_eq!(rig.sw.guard.stats.dropped_rate_limited, 5);
    assert!(rig.bans().is_empty());
    for _ in 0..5 {
        let text = rig.request("OPTIONS", src, "100", "");
        rig.answers_to(src, &text);
    }
    assert_eq!(rig.bans().len(), 1, "the 10th drop in a minute bans");
    // The allow-listed network is not limited.
    let opd = "10.20.5.5:5060";
    for _ in 0..50 {
        let text = rig.request("OPTIONS", opd, "100", "");
        assert_eq!(rig.answers_to(opd, &text).len(), 1);
    }
}

#[test]
fn stray_responses_count_against_their_source_and_get_it_banned() {
    let mut rig = tight_rig();
    // Made-up 200s that look like answers to us (our branch prefix) and name a victim in the
    // next Via: a stateful proxy forwards a stray 2xx statelessly (RFC 3261 §16.7), but only
    // when the branch carries our MAC for that address, which a made-up one does not.
    let src = "192.0.2.91:5060";
    let stray = |n: u32| {
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKtb1.{n:x}\r\n\
Via: SIP/2.0/UDP 192.0.2.200:5060;branch=z9hG4bKv{n}\r\nFrom: <sip:a@x>;tag=a\r\n\
To: <sip:b@x>;tag=b\r\nCall-ID: stray{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let forwarded: usize = (0..10).map(|n| rig.answers_to(src, &stray(n)).len()).sum();
    assert_eq!(forwarded, 0, "a branch we did not make is never forwarded");
    assert!(rig.bans().is_empty());
    for n in 10..15 {
        rig.answers_to(src, &stray(n));
    }
    assert_eq!(
        rig.bans().len(),
        1,
        "the 10th dropped stray response in a minute bans"
    );
}

#[test]
fn saturation_sheds_new_invites_and_registers_only() {
    let mut rig = guarded(|c| {
        c.max_transactions = 1;
        c.retry_after_secs = 9;
    });
    let phone = "10.20.0.9:5060";
    // One OPTIONS leaves a transaction (Timer J): the table is at its limit.
    let text = rig.request("OPTIONS", phone, "100", "");
    assert_eq!(rig.answers_to(phone, &text)[0].status(), Some(200));
    for method in ["REGISTER", "INVITE"] {
        let text = rig.request(method, phone, "1000", "");
        let out = rig.answers_to(phone, &text);
        assert_eq!(out[0].status(), Some(503), "{method}");
        let text = String::from_utf8_lossy(out[0].buffer());
        assert!(text.contains("\r\nRetry-After: 9\r\n"), "{text}");
    }
    // Shedding keeps no state, and a retransmission is shed again, not answered from a table.
    assert_eq!(rig.sw.transaction_count(), 1);
    // Requests that are not new calls or registrations still flow.
    let text = rig.request("OPTIONS", phone, "100", "");
    assert_eq!(rig.answers_to(phone, &text)[0].status(), Some(200));
    let in_dialog = rig
        .request("INVITE", phone, "1000", "")
        .replace("To: <sip:1000@10.0.0.1>", "To: <sip:1000@10.0.0.1>;tag=x");
    let out = rig.answers_to(phone, &in_dialog);
    assert_eq!(
        out.last().and_then(|m| m.status()),
        Some(481),
        "in-dialog: checked by the proxy (no dialog of ours here), not shed"
    );
    assert_eq!(rig.sw.guard.stats.overload_rejected, 2);
    // When the transactions end the switch takes new work again.
    for _ in 0..10 {
        rig.advance_discarding(5);
    }
    assert_eq!(rig.sw.transaction_count(), 0);
    let text = rig.request("REGISTER", phone, "1000", "");
    assert_eq!(rig.answers_to(phone, &text)[0].status(), Some(401));
}
