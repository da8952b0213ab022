//! SIPp caller → Tambun → SIPp callee, with the caller authenticated (407): an answered call,
//! busy, cancelled while ringing, unassigned and unregistered numbers, forking to two
//! contacts, and a re-INVITE and BYE passing through the switch. Each test checks what SIPp
//! saw on both sides and the call record (`tambun cdr --json`).

use std::time::Duration;

use crate::common::calls::{
    assert_cdr, assert_sipp_ok, header_of, one_cdr, refused_scenario, sipp_call, SippUas,
};
use crate::common::peers::sipp_scenario;
use crate::common::Switch;

/// setda caller and dinkes callees, as in the shipped dialplan.
fn switch() -> Switch {
    Switch::start_with_extensions(&[
        ("1000", "setda", "pw1000"),
        ("2300", "dinkes", "pw2300"),
        ("2301", "dinkes", "pw2301"),
    ])
}

#[test]
fn answered_call_with_bye() {
    let switch = switch();
    let mut callee = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "pw2300",
        "uas-answer.xml",
        &["-m", "1", "-d", "100"],
    );
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2300",
        &sipp_scenario("uac-call.xml"),
        &["-d", "1200"],
    );
    assert_sipp_ok(&caller, 1, "caller");
    assert_sipp_ok(&callee.finish(Duration::from_secs(5)), 1, "callee");
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
            ("trunk", "false"),
        ],
    );
    let duration = row["duration_ms"].as_i64().unwrap_or(0);
    assert!(
        (1000..5000).contains(&duration),
        "duration {duration} ms for a 1.2 s call: {row:#}"
    );
}

#[test]
fn busy_callee_gives_486() {
    let switch = switch();
    let mut callee = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "pw2300",
        "uas-busy.xml",
        &["-m", "1"],
    );
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2300",
        &refused_scenario(switch.dir(), 486),
        &[],
    );
    assert_sipp_ok(&caller, 1, "caller (wants 486)");
    assert_sipp_ok(&callee.finish(Duration::from_secs(5)), 1, "busy callee");
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("caller_opd", "setda"),
            ("callee_opd", "dinkes"),
            ("disposition", "busy"),
            ("sip_status", "486"),
            ("duration_ms", "0"),
        ],
    );
}

#[test]
fn caller_cancels_while_it_rings() {
    let switch = switch();
    let mut callee = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "pw2300",
        "uas-ring-cancel.xml",
        &["-m", "1"],
    );
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2300",
        &sipp_scenario("uac-cancel.xml"),
        &["-d", "1000"],
    );
    assert_sipp_ok(&caller, 1, "caller (CANCEL, wants 200 and 487)");
    let run = callee.finish(Duration::from_secs(5));
    assert_sipp_ok(&run, 1, "ringing callee (wants CANCEL)");
    let cancels = callee.requests("CANCEL");
    assert!(!cancels.is_empty(), "callee got {:#?}", callee.received());
    for cancel in &cancels {
        let via = header_of(cancel, "Via").unwrap_or_default();
        assert!(
            via.starts_with(&format!("SIP/2.0/UDP {}", switch.sip)),
            "the CANCEL must come from the switch: {cancel}"
        );
    }
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("callee_opd", "dinkes"),
            ("disposition", "cancelled"),
            ("sip_status", "487"),
            ("duration_ms", "0"),
        ],
    );
}

/// One CANCEL from the caller makes one CANCEL per ringing branch: a second one right behind
/// it (same branch, within microseconds) is a duplicate client transaction, not a
/// retransmission.
#[test]
fn one_cancel_per_ringing_branch() {
    let switch = switch();
    let mut callee = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "pw2300",
        "uas-ring-cancel.xml",
        &["-m", "1"],
    );
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2300",
        &sipp_scenario("uac-cancel.xml"),
        &["-d", "500"],
    );
    assert_sipp_ok(&caller, 1, "caller (CANCEL, wants 200 and 487)");
    callee.finish(Duration::from_secs(5));
    let cancels = callee.requests("CANCEL");
    assert_eq!(
        cancels.len(),
        1,
        "the callee got {} CANCELs for one CANCEL of the caller: {:#?}",
        cancels.len(),
        callee.received()
    );
}

#[test]
fn unassigned_number_gives_404() {
    let switch = switch();
    // 2450 lies in dinkes' block 2300-2499 but is no extension
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2450",
        &refused_scenario(switch.dir(), 404),
        &[],
    );
    assert_sipp_ok(&caller, 1, "caller (wants 404)");
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("dialled", "2450"),
            ("caller_opd", "setda"),
            ("disposition", "rejected"),
            ("sip_status", "404"),
        ],
    );
}

#[test]
fn unregistered_extension_gives_480() {
    let switch = switch();
    // 2301 exists in the DB but no phone registered it
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2301",
        &refused_scenario(switch.dir(), 480),
        &[],
    );
    assert_sipp_ok(&caller, 1, "caller (wants 480)");
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("dialled", "2301"),
            ("callee", "2301"),
            ("callee_opd", "dinkes"),
            ("sip_status", "480"),
        ],
    );
}

/// A call to an extension with no registration never rang: `store::Disposition` documents it
/// as `failed` ("could not be set up (no registration, …)"), `no-answer` being "408/480 after
/// ringing".
#[test]
fn unregistered_extension_is_recorded_as_failed_not_no_answer() {
    let switch = switch();
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2301",
        &refused_scenario(switch.dir(), 480),
        &[],
    );
    assert_sipp_ok(&caller, 1, "caller (wants 480)");
    let row = one_cdr(&switch);
    assert_cdr(&row, &[("disposition", "failed"), ("sip_status", "480")]);
}

#[test]
fn fork_to_two_contacts_one_answers_the_other_is_cancelled() {
    let switch = switch();
    // two phones of 2300: one answers after 300 ms, the other only rings
    let mut answering = SippUas::callee(
        &switch,
        "2300-a",
        "2300",
        "pw2300",
        "uas-answer.xml",
        &["-m", "1", "-d", "300"],
    );
    let mut ringing = SippUas::callee(
        &switch,
        "2300-b",
        "2300",
        "pw2300",
        "uas-ring-cancel.xml",
        &["-m", "1"],
    );
    assert_eq!(switch.regs_of("2300").len(), 2, "{:?}", switch.regs());
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2300",
        &sipp_scenario("uac-call.xml"),
        &["-d", "500"],
    );
    assert_sipp_ok(&caller, 1, "caller");
    assert_sipp_ok(
        &answering.finish(Duration::from_secs(5)),
        1,
        "answering contact",
    );
    assert_sipp_ok(
        &ringing.finish(Duration::from_secs(5)),
        1,
        "ringing contact (wants CANCEL)",
    );
    assert_eq!(answering.requests("INVITE").len(), 1);
    assert_eq!(ringing.requests("INVITE").len(), 1);
    assert_eq!(ringing.requests("CANCEL").len(), 1);
    assert!(
        answering.requests("CANCEL").is_empty(),
        "the answering contact must not be cancelled: {:#?}",
        answering.received()
    );
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("callee", "2300"),
            ("disposition", "answered"),
            ("sip_status", "200"),
        ],
    );
}

#[test]
fn reinvite_and_bye_pass_through_the_switch() {
    let switch = switch();
    let mut callee = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "pw2300",
        "uas-reinvite.xml",
        &["-m", "1", "-d", "100"],
    );
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2300",
        &sipp_scenario("uac-reinvite.xml"),
        &["-d", "600"],
    );
    assert_sipp_ok(&caller, 1, "caller (INVITE, re-INVITE, BYE)");
    assert_sipp_ok(&callee.finish(Duration::from_secs(5)), 1, "callee");
    let invites = callee.requests("INVITE");
    assert_eq!(invites.len(), 2, "callee got {:#?}", callee.received());
    let reinvite = &invites[1];
    assert!(
        reinvite.contains("a=sendonly"),
        "second INVITE is the re-INVITE: {reinvite}"
    );
    let byes = callee.requests("BYE");
    assert_eq!(byes.len(), 1, "callee got {:#?}", callee.received());
    // The top Via names the switch: the request went through it, following the Record-Route.
    let ours = format!("SIP/2.0/UDP {};branch=z9hG4bK", switch.sip);
    for (what, msg) in [("re-INVITE", reinvite), ("BYE", &byes[0])] {
        let via = header_of(msg, "Via").unwrap_or_default();
        assert!(
            via.starts_with(&ours),
            "{what} did not come from the switch: {msg}"
        );
        let vias = msg.lines().filter(|l| l.starts_with("Via:")).count();
        assert_eq!(
            vias, 2,
            "{what}: the switch's Via above the caller's: {msg}"
        );
        assert!(
            !msg.lines().any(|l| l.starts_with("Route:")),
            "{what}: the switch's Route must be popped: {msg}"
        );
    }
    let row = one_cdr(&switch);
    assert_cdr(&row, &[("disposition", "answered"), ("sip_status", "200")]);
    assert!(row["duration_ms"].as_i64().unwrap_or(0) >= 1000, "{row:#}");
}
