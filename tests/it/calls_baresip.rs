//! Two baresip phones in two OPDs (1000 setda, 2300 dinkes) call each other through the
//! switch: 1000 dials 2300 by its extension, 2300 answers by itself, 1000 hangs up after
//! about 2 s, and the call record shows an answered call between the two OPDs. Media may go
//! direct (no relay yet): RTP is not checked.

use std::time::{Duration, Instant};

use crate::common::calls::{assert_cdr, one_cdr};
use crate::common::peers::Baresip;
use crate::common::Switch;

fn phone(switch: &Switch, ext: &str, password: &str, extra: &str) -> Baresip {
    let account = format!(
        "<sip:{ext}@{}>;auth_pass={password};regint=600;medianat={extra}",
        switch.sip
    );
    let phone = Baresip::start(switch.dir(), ext, &account);
    if let Err(info) = phone.wait_registered(Duration::from_secs(10)) {
        panic!(
            "baresip {ext} did not register: {info}\n{}",
            phone.log_text()
        );
    }
    phone
}

/// The data text of a ctrl_tcp command's response.
fn data(phone: &Baresip, command: &str, params: &str) -> String {
    phone
        .command(command, params)
        .and_then(|r| r.get("data").and_then(|d| d.as_str()).map(str::to_owned))
        .unwrap_or_default()
}

#[test]
fn baresip_setda_calls_baresip_dinkes() {
    let switch = Switch::start_with_extensions(&[
        ("1000", "setda", "rahasia1000"),
        ("2300", "dinkes", "rahasia2300"),
    ]);
    let mut callee = phone(&switch, "2300", "rahasia2300", ";answermode=auto");
    let mut caller = phone(&switch, "1000", "rahasia1000", "");

    let dialled = data(&caller, "dial", &format!("sip:2300@{}", switch.sip));
    // established on both sides: baresip lists the call with its duration once answered
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut calls = String::new();
    while Instant::now() < deadline {
        calls = data(&caller, "listcalls", "");
        if calls.to_ascii_uppercase().contains("ESTABLISHED") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        calls.to_ascii_uppercase().contains("ESTABLISHED"),
        "the call was not established (dial: {dialled:?}, listcalls: {calls:?})\n\
         caller log:\n{}\ncallee log:\n{}",
        caller.log_text(),
        callee.log_text()
    );
    std::thread::sleep(Duration::from_secs(2));
    data(&caller, "hangup", "");

    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("dialled", "2300"),
            ("callee", "2300"),
            ("caller_opd", "setda"),
            ("callee_opd", "dinkes"),
            ("disposition", "answered"),
            ("sip_status", "200"),
        ],
    );
    let duration = row["duration_ms"].as_i64().unwrap_or(0);
    assert!(
        (1000..10_000).contains(&duration),
        "duration {duration} ms for a call held ~2 s: {row:#}"
    );
    caller.stop();
    callee.stop();
}
