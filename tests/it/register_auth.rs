//! Registrar and digest authentication, checked over the wire with the in-process client:
//! no extension enumeration, MD5 and SHA-256, nonce-count replay, several contacts, expiry
//! rules, `Contact: *`, queries, and what every 200 lists.

use crate::common::sip::{Conn, Msg, RegisterSpec, Ua};
use std::time::Duration;

use crate::common::{json_str, Switch, SwitchOptions};

/// The shape of a 401: status, reason, header names (sorted) and each challenge without its
/// nonce.
fn shape(msg: &Msg) -> String {
    let mut names = msg.header_names();
    names.sort();
    let challenges: Vec<String> = msg
        .challenges()
        .iter()
        .map(|c| {
            format!(
                "realm={} algorithm={} qop={:?} stale={} opaque={} params={:?}",
                c.realm,
                c.algorithm,
                c.qop,
                c.stale,
                c.opaque.is_some(),
                c.param_names()
            )
        })
        .collect();
    format!("{}\n{names:?}\n{challenges:#?}", msg.start)
}

fn nonces(msg: &Msg) -> Vec<String> {
    msg.challenges().into_iter().map(|c| c.nonce).collect()
}

fn assert_challenge(msg: &Msg, what: &str) {
    assert_eq!(msg.status, 401, "{what}: expected 401, got\n{}", msg.text());
    let challenges = msg.challenges();
    assert!(
        !challenges.is_empty(),
        "{what}: no digest challenge\n{}",
        msg.text()
    );
    let algorithms: Vec<&str> = challenges.iter().map(|c| c.algorithm.as_str()).collect();
    assert_eq!(
        algorithms,
        ["MD5", "SHA-256"],
        "{what}: MD5 first, SHA-256 second"
    );
    for c in &challenges {
        assert_eq!(c.realm, "tambun", "{what}");
        assert_eq!(c.qop.as_deref(), Some("auth"), "{what}");
        assert!(!c.stale, "{what}: a fresh challenge is not stale");
    }
}

#[test]
fn unknown_extension_and_wrong_password_get_the_same_challenge() {
    let switch = Switch::start_with_extensions(&[("1000", "setda", "rahasia1000")]);
    // 1000 with a wrong password; 1001 is inside setda's block but not provisioned; 7777 is in
    // no block; "admin" is not even a number
    let mut uas = [
        (
            "known, wrong password",
            Ua::new(Conn::udp(switch.sip), "1000", "salah1000"),
        ),
        (
            "unknown, in a block",
            Ua::new(Conn::udp(switch.sip), "1001", "salah1000"),
        ),
        (
            "unknown, no block",
            Ua::new(Conn::udp(switch.sip), "7777", "salah1000"),
        ),
        (
            "unknown, not a number",
            Ua::new(Conn::udp(switch.sip), "admin", "salah1000"),
        ),
    ];
    for (round, with_credentials) in [("first REGISTER", false), ("second REGISTER", true)] {
        let mut answers = Vec::new();
        for (who, ua) in uas.iter_mut() {
            let spec = RegisterSpec::one(&ua.contact_uri(""), 300);
            let msg = if with_credentials {
                ua.register_with_last_challenge(&spec)
            } else {
                ua.register_plain(&spec)
            };
            assert!(
                ![200, 403, 404].contains(&msg.status),
                "{round}, {who}: got {}\n{}",
                msg.status,
                msg.text()
            );
            assert_challenge(&msg, &format!("{round}, {who}"));
            answers.push((*who, msg));
        }
        let (first_who, first) = &answers[0];
        for (who, msg) in &answers[1..] {
            assert_eq!(
                shape(first),
                shape(msg),
                "{round}: {first_who} and {who} must get the same answer"
            );
            assert_ne!(nonces(first), nonces(msg), "{round}: nonces should differ");
        }
    }
    // also over TCP
    let mut a = Ua::new(Conn::tcp(switch.sip), "1000", "salah1000");
    let mut b = Ua::new(Conn::tcp(switch.sip), "1001", "salah1000");
    let spec_a = RegisterSpec::one(&a.contact_uri(""), 300);
    let spec_b = RegisterSpec::one(&b.contact_uri(""), 300);
    let (ra, rb) = (a.register(&spec_a), b.register(&spec_b));
    assert_challenge(&ra, "TCP, wrong password");
    assert_challenge(&rb, "TCP, unknown");
    assert_eq!(shape(&ra), shape(&rb));
    assert!(switch.regs().is_empty(), "nothing may be registered");
}

#[test]
fn md5_and_sha256_both_register() {
    let switch = Switch::start_with_extensions(&[("1100", "setda", "rahasia1100")]);
    for sha in [false, true] {
        let mut ua = Ua::new(Conn::udp(switch.sip), "1100", "rahasia1100");
        ua.prefer_sha256 = sha;
        let first = ua.register_plain(&RegisterSpec::one(&ua.contact_uri(""), 300));
        assert_challenge(&first, "first REGISTER");
        let msg = ua.register_with_last_challenge(&RegisterSpec::one(&ua.contact_uri(""), 300));
        assert_eq!(msg.status, 200, "sha256={sha}\n{}", msg.text());
        assert_eq!(
            ua.last_challenge.as_ref().unwrap().is_sha256(),
            sha,
            "the answered challenge"
        );
    }
    assert_eq!(switch.regs_of("1100").len(), 2, "one contact per UA");
}

#[test]
fn replayed_nonce_count_is_refused() {
    let switch = Switch::start_with_extensions(&[("1101", "setda", "rahasia1101")]);
    let mut ua = Ua::new(Conn::udp(switch.sip), "1101", "rahasia1101");
    let spec = RegisterSpec::one(&ua.contact_uri(""), 300);
    ua.register_plain(&spec);
    let challenge = ua.last_challenge.clone().expect("challenge");
    let uri = ua.request_uri();
    let auth1 = challenge.authorization("1101", "rahasia1101", "REGISTER", &uri, 1);
    assert_eq!(ua.register_with_authorization(&spec, &auth1).status, 200);
    // the very same credentials again (same nonce, nc=1, cnonce): a replay
    let replay = ua.register_with_authorization(&spec, &auth1);
    assert_ne!(
        replay.status,
        200,
        "replayed nc accepted\n{}",
        replay.text()
    );
    assert_eq!(replay.status, 401, "{}", replay.text());
    // the next nonce count on the same nonce is fine
    let auth2 = challenge.authorization("1101", "rahasia1101", "REGISTER", &uri, 2);
    let next = ua.register_with_authorization(&spec, &auth2);
    assert_eq!(next.status, 200, "nc=2 refused\n{}", next.text());
    // going back to nc=2 again is a replay too
    let again = ua.register_with_authorization(&spec, &auth2);
    assert_eq!(again.status, 401, "{}", again.text());
}

/// Contacts of a 200 as (uri, expires).
fn listed(msg: &Msg) -> Vec<(String, u32)> {
    let mut out: Vec<(String, u32)> = msg
        .contacts()
        .into_iter()
        .map(|c| {
            let e = c
                .expires()
                .unwrap_or_else(|| panic!("contact {} without expires in\n{}", c.uri, msg.text()));
            (c.uri, e)
        })
        .collect();
    out.sort();
    out
}

/// Asserts a 200 lists exactly `want` (URI substring, expected expiry ± 3 s).
fn assert_lists(msg: &Msg, want: &[(&str, u32)]) {
    assert_eq!(msg.status, 200, "{}", msg.text());
    let got = listed(msg);
    assert_eq!(
        got.len(),
        want.len(),
        "contacts listed: {got:?}, want {want:?}\n{}",
        msg.text()
    );
    for (uri, expires) in want {
        let found = got
            .iter()
            .find(|(u, _)| u.contains(uri))
            .unwrap_or_else(|| panic!("{uri} not listed in {got:?}"));
        assert!(
            found.1 <= *expires && found.1 + 3 >= *expires,
            "{uri}: expires {} listed, want about {expires}",
            found.1
        );
    }
}

#[test]
fn several_contacts_expiry_query_and_wildcard_removal() {
    let switch = Switch::start_with_extensions(&[("1102", "setda", "rahasia1102")]);
    let mut ua = Ua::new(Conn::udp(switch.sip), "1102", "rahasia1102");
    let a = ua.contact_uri("a");
    let b = ua.contact_uri("b");
    let c = ua.contact_uri("c");
    let short = |u: &str| u.split('@').next().unwrap().to_owned() + "@";
    let (sa, sb, sc) = (short(&a), short(&b), short(&c));

    // the expires parameter wins over the Expires header
    let msg = ua.register(&RegisterSpec {
        contacts: vec![format!("<{a}>;expires=120")],
        expires: Some(300),
        extra: vec![],
    });
    assert_lists(&msg, &[(&sa, 120)]);

    // a second contact (Expires header only); the 200 lists both
    let msg = ua.register(&RegisterSpec::one(&b, 300));
    assert_lists(&msg, &[(&sa, 120), (&sb, 300)]);

    // two contacts in one request, one Contact line, comma-separated
    let msg = ua.register(&RegisterSpec {
        contacts: vec![format!("<{c}>;expires=200, <{a}>;expires=240")],
        expires: Some(300),
        extra: vec![],
    });
    assert_lists(&msg, &[(&sa, 240), (&sb, 300), (&sc, 200)]);

    // a second UA (another Call-ID, another socket) adds its own contact
    let mut other = Ua::new(Conn::udp(switch.sip), "1102", "rahasia1102");
    let d = other.contact_uri("d");
    let msg = other.register(&RegisterSpec::one(&d, 300));
    assert_eq!(listed(&msg).len(), 4, "{}", msg.text());
    assert_eq!(switch.regs_of("1102").len(), 4);

    // a query (no Contact) lists the bindings and changes nothing
    let msg = ua.register(&RegisterSpec::default());
    assert_eq!(listed(&msg).len(), 4, "query\n{}", msg.text());
    assert_eq!(switch.regs_of("1102").len(), 4);

    // expires=0 removes one contact
    let msg = ua.register(&RegisterSpec {
        contacts: vec![format!("<{c}>;expires=0")],
        expires: None,
        extra: vec![],
    });
    assert_eq!(listed(&msg).len(), 3, "{}", msg.text());
    assert!(!listed(&msg).iter().any(|(u, _)| u.contains(&sc)));

    // "Contact: *" with an Expires other than 0 is a 400 (RFC 3261 §10.3 step 6)
    let msg = ua.register(&RegisterSpec {
        contacts: vec!["*".into()],
        expires: Some(300),
        extra: vec![],
    });
    assert_eq!(msg.status, 400, "{}", msg.text());
    assert_eq!(switch.regs_of("1102").len(), 3);

    // "Contact: *" with Expires: 0 removes them all
    let msg = ua.register(&RegisterSpec {
        contacts: vec!["*".into()],
        expires: Some(0),
        extra: vec![],
    });
    assert_eq!(msg.status, 200, "{}", msg.text());
    assert!(msg.contacts().is_empty(), "{}", msg.text());
    assert!(switch.regs_of("1102").is_empty());
}

#[test]
fn too_short_expiry_gets_423_with_min_expires() {
    let switch = Switch::start_with_extensions(&[("1103", "setda", "rahasia1103")]);
    let mut ua = Ua::new(Conn::udp(switch.sip), "1103", "rahasia1103");
    let contact = ua.contact_uri("");
    let msg = ua.register(&RegisterSpec::one(&contact, 1));
    assert_eq!(msg.status, 423, "{}", msg.text());
    let min: u32 = msg
        .header("min-expires")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("423 without a numeric Min-Expires\n{}", msg.text()));
    assert!(min > 1, "Min-Expires {min}");
    assert!(switch.regs_of("1103").is_empty());
    // the same via the contact parameter
    let msg = ua.register(&RegisterSpec {
        contacts: vec![format!("<{contact}>;expires=1")],
        expires: Some(300),
        extra: vec![],
    });
    assert_eq!(msg.status, 423, "{}", msg.text());
    // Min-Expires itself is accepted
    let msg = ua.register(&RegisterSpec::one(&contact, min));
    assert_lists(&msg, &[(&contact, min)]);
    // a very long expiry is accepted but shortened to the maximum
    let msg = ua.register(&RegisterSpec::one(&contact, 4_000_000));
    assert_eq!(msg.status, 200, "{}", msg.text());
    let (_, granted) = listed(&msg)[0].clone();
    assert!(granted >= min && granted < 4_000_000, "granted {granted}");
}

#[test]
fn regs_shows_source_transport_and_user_agent() {
    let switch = Switch::start_with_extensions(&[("2300", "dinkes", "rahasia2300")]);
    let mut udp = Ua::new(Conn::udp(switch.sip), "2300", "rahasia2300");
    udp.user_agent = "Itest-Phone/1.0 (udp)".into();
    assert_eq!(udp.register_self(600).status, 200);
    let mut tcp = Ua::new(Conn::tcp(switch.sip), "2300", "rahasia2300");
    tcp.user_agent = "Itest-Phone/1.0 (tcp)".into();
    assert_eq!(tcp.register_self(600).status, 200);
    let regs = switch.regs_of("2300");
    assert_eq!(regs.len(), 2, "{regs:?}");
    for (ua, transport) in [(&udp, "UDP"), (&tcp, "TCP")] {
        let r = regs
            .iter()
            .find(|r| json_str(r, "user_agent") == ua.user_agent)
            .unwrap_or_else(|| panic!("no binding with UA {}: {regs:?}", ua.user_agent));
        assert_eq!(json_str(r, "opd"), "dinkes");
        assert!(
            json_str(r, "transport").eq_ignore_ascii_case(transport),
            "{r}"
        );
        assert!(
            json_str(r, "source").contains(&ua.conn.local().to_string()),
            "{r}"
        );
        assert!(
            json_str(r, "contact").contains(&ua.conn.local().to_string()),
            "{r}"
        );
        let left = r["expires_in"].as_u64().unwrap_or(0);
        assert!((590..=600).contains(&left), "{r}");
    }
}

#[test]
fn expired_nonce_gets_a_stale_challenge() {
    // nonces live 2 s here (`[registrar] nonce_lifetime_secs`), so the test need not wait 5 min
    let mut switch = Switch::create(SwitchOptions {
        config_toml: Some("[registrar]\nnonce_lifetime_secs = 2\n".into()),
        ..SwitchOptions::default()
    });
    switch.add_ext("1104", "setda", "rahasia1104");
    switch.launch();
    let mut ua = Ua::new(Conn::udp(switch.sip), "1104", "rahasia1104");
    let spec = RegisterSpec::one(&ua.contact_uri(""), 300);
    ua.register_plain(&spec);
    let old = ua.last_challenge.clone().expect("challenge");
    assert_eq!(ua.register_with_last_challenge(&spec).status, 200);
    std::thread::sleep(Duration::from_millis(3_200));
    // right credentials, expired nonce: 401 with stale=true and a fresh nonce
    let msg = ua.register_with_last_challenge(&spec);
    assert_eq!(msg.status, 401, "{}", msg.text());
    let challenges = msg.challenges();
    assert!(!challenges.is_empty());
    for c in &challenges {
        assert!(c.stale, "expected stale=true\n{}", msg.text());
        assert_ne!(c.nonce, old.nonce);
    }
    // answering the fresh challenge works
    let msg = ua.register_with_last_challenge(&spec);
    assert_eq!(msg.status, 200, "{}", msg.text());
    // wrong credentials on an expired nonce are not told apart: never 403/404/200, and no
    // stale flag that would confirm the password was right
    std::thread::sleep(Duration::from_millis(3_200));
    ua.password = "salah-sekali".into();
    let msg = ua.register_with_last_challenge(&spec);
    assert_eq!(msg.status, 401, "{}", msg.text());
}
