//! SIP over TLS with a real phone: baresip registers over TLS (the switch's self-signed
//! certificate), calls a UDP baresip in another OPD, and is called back by it over the
//! connection it registered on. Each call is answered, held and hung up, and its call record
//! shows it answered.

use std::time::Duration;

use crate::common::baresip::Baresip;
use crate::common::calls::{assert_cdr, wait_cdrs};
use crate::common::{json_str, Switch, SwitchOptions};

/// A registered baresip for `ext` that auto-answers, registering at `uri_host`.
fn phone(switch: &Switch, ext: &str, password: &str, uri_host: &str) -> Baresip {
    let account = format!("<sip:{ext}@{uri_host}>;auth_pass={password};regint=600;answermode=auto");
    Baresip::start_registered(switch.dir(), ext, &account, None)
}

/// Both phones see no call any more (BYE answered end to end).
fn wait_idle(a: &Baresip, b: &Baresip) -> bool {
    Switch::eventually(Duration::from_secs(5), || {
        !a.command_data("listcalls", "").contains("sip:")
            && !b.command_data("listcalls", "").contains("sip:")
    })
}

#[test]
fn tls_phone_calls_udp_phone_and_back() {
    let mut switch = Switch::create(SwitchOptions {
        tls: true,
        ..SwitchOptions::default()
    });
    switch.add_ext("1000", "setda", "rahasia1000");
    switch.add_ext("2300", "dinkes", "rahasia2300");
    switch.launch();
    let tls = switch.tls.expect("TLS address");

    let mut udp = phone(&switch, "2300", "rahasia2300", &switch.sip.to_string());
    let mut secure = phone(
        &switch,
        "1000",
        "rahasia1000",
        &format!("{tls};transport=tls"),
    );
    let regs = switch.regs_of("1000");
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(json_str(&regs[0], "transport"), "tls", "{regs:?}");

    // TLS → UDP.
    secure.dial_established(&format!("sip:2300@{tls};transport=tls"), &udp);
    std::thread::sleep(Duration::from_secs(1));
    secure.command_data("hangup", "");
    assert!(
        wait_idle(&secure, &udp),
        "the TLS caller's BYE did not end the call"
    );

    // UDP → TLS: the switch reaches 1000 over the TLS connection it registered on.
    udp.dial_established(&format!("sip:1000@{}", switch.sip), &secure);
    std::thread::sleep(Duration::from_secs(1));
    // The TLS side hangs up this time: its BYE goes out over TLS and in over UDP.
    secure.command_data("hangup", "");
    assert!(
        wait_idle(&secure, &udp),
        "the TLS callee's BYE did not end the call"
    );

    let rows = wait_cdrs(&switch, 2);
    let find = |caller: &str| {
        rows.iter()
            .find(|r| json_str(r, "caller") == caller)
            .unwrap_or_else(|| panic!("no call record from {caller}: {rows:#?}"))
    };
    for (caller, callee, caller_opd, callee_opd) in [
        ("1000", "2300", "setda", "dinkes"),
        ("2300", "1000", "dinkes", "setda"),
    ] {
        let row = find(caller);
        assert_cdr(
            row,
            &[
                ("callee", callee),
                ("caller_opd", caller_opd),
                ("callee_opd", callee_opd),
                ("disposition", "answered"),
                ("sip_status", "200"),
            ],
        );
        let duration = row["duration_ms"].as_i64().unwrap_or(0);
        assert!(
            (500..10_000).contains(&duration),
            "duration {duration} ms for a call held ~1 s: {row:#}"
        );
    }
    secure.stop();
    udp.stop();
}
