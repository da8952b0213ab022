//! baresip 1.0 (a real softphone) registers over UDP and over TCP and shows up in
//! `tambun regs --json` with the right transport.

use std::time::Duration;

use crate::common::baresip::Baresip;
use crate::common::{json_str, Switch};

fn registers(transport: &str, number: &str, opd: &str) {
    let password = format!("rahasia{number}");
    let switch = Switch::start_with_extensions(&[(number, opd, &password)]);
    let uri_param = if transport == "TCP" {
        ";transport=tcp"
    } else {
        ""
    };
    let account = format!(
        "<sip:{number}@{}{uri_param}>;auth_pass={password};regint=600;answermode=auto;medianat=",
        switch.sip
    );
    let mut phone = Baresip::start(switch.dir(), transport, &account);
    if let Err(info) = phone.wait_registered(Duration::from_secs(10)) {
        let log = phone.log_text();
        if log.contains("Register: Function not implemented") {
            // libre (baresip 1.0) refuses the whole 401 with ENOSYS as soon as one
            // WWW-Authenticate has an algorithm other than MD5
            panic!(
                "baresip ({transport}) gave up on the 401: baresip 1.0's libre answers ENOSYS \
                 (\"Function not implemented\") when any challenge is not MD5, so a 401 \
                 carrying a SHA-256 challenge next to the MD5 one locks it out\n{log}"
            );
        }
        panic!(
            "baresip ({transport}) did not register: {info}\n{}",
            phone.log_text()
        );
    }
    let found = Switch::eventually(Duration::from_secs(2), || switch.regs_of(number).len() == 1);
    let regs = switch.regs_of(number);
    assert!(found, "regs --json: {regs:?}");
    let r = &regs[0];
    assert_eq!(json_str(r, "opd"), opd, "{r}");
    assert!(
        json_str(r, "transport").eq_ignore_ascii_case(transport),
        "transport in {r}"
    );
    assert!(
        json_str(r, "user_agent")
            .to_ascii_lowercase()
            .contains("baresip"),
        "{r}"
    );
    // baresip's contact user is NUMBER-<instance>, at its own listening port
    let contact = json_str(r, "contact");
    assert!(contact.contains(&format!("sip:{number}")), "{r}");
    assert!(
        contact.contains(&format!("@127.0.0.1:{}", phone.sip_port)),
        "{r}"
    );
    assert!(json_str(r, "source").contains("127.0.0.1:"), "{r}");
    let left = r["expires_in"].as_u64().unwrap_or(0);
    assert!(left > 60 && left <= 600, "{r}");
    phone.stop();
}

#[test]
fn baresip_registers_over_udp() {
    registers("UDP", "3500", "diskominfo");
}

#[test]
fn baresip_registers_over_tcp() {
    registers("TCP", "2300", "dinkes");
}
