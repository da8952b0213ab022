//! Dialplan reload on a running switch, by `tambun dialplan reload` and by SIGHUP: a broken
//! file is refused with its `file:line`, calls keep routing by the previous plan (a valid
//! change made next to the broken file does not take effect either), and once the file is
//! fixed the reload succeeds and the new plan routes.

use std::fs;
use std::process::Command;
use std::time::Duration;

use crate::common::calls::{assert_sipp_ok, refused_scenario, sipp_call, wait_cdrs, SippUas};
use crate::common::peers::sipp_scenario;
use crate::common::Switch;

const BROKEN_LINE: &str = "this is not toml\n";
/// A rule added to setda.toml next to the breakage: 7777 rings dinkes' 2300.
const NEW_RULE: &str = "\n[[rule]]\npattern = \"7777\"\nto = { extension = \"2300\" }\n";

fn switch() -> Switch {
    Switch::start_with_extensions(&[
        ("1000", "setda", "pw1000"),
        ("2300", "dinkes", "pw2300"),
        ("2301", "dinkes", "pw2301"),
    ])
}

/// Appends the bad line to dinkes.toml and the new rule to setda.toml; returns dinkes.toml's
/// original text and the line number of the bad line.
fn break_plan(switch: &Switch) -> (String, usize) {
    let dinkes = switch.dialplan.join("dinkes.toml");
    let original = fs::read_to_string(&dinkes).expect("read dinkes.toml");
    assert!(original.ends_with('\n'));
    let line = original.lines().count() + 1;
    fs::write(&dinkes, format!("{original}{BROKEN_LINE}")).expect("write dinkes.toml");
    let setda = switch.dialplan.join("setda.toml");
    let text = fs::read_to_string(&setda).expect("read setda.toml");
    fs::write(&setda, format!("{text}{NEW_RULE}")).expect("write setda.toml");
    (original, line)
}

/// One call from 1000 to `dialled`, answered by a SIPp callee registered as 2300.
fn call_2300(switch: &Switch, name: &str, dialled: &str) {
    let mut callee = SippUas::callee(
        switch,
        name,
        "2300",
        "pw2300",
        "uas-answer.xml",
        &["-m", "1"],
    );
    let caller = sipp_call(
        switch,
        name,
        "1000",
        "pw1000",
        dialled,
        &sipp_scenario("uac-call.xml"),
        &["-d", "200"],
    );
    assert_sipp_ok(&caller, 1, &format!("1000 dials {dialled} ({name})"));
    assert_sipp_ok(&callee.finish(Duration::from_secs(5)), 1, "callee 2300");
    assert_eq!(callee.requests("INVITE").len(), 1);
}

/// A call from 1000 to `dialled` that must be refused with `status`.
fn call_refused(switch: &Switch, name: &str, dialled: &str, status: u16) {
    let caller = sipp_call(
        switch,
        name,
        "1000",
        "pw1000",
        dialled,
        &refused_scenario(switch.dir(), status),
        &[],
    );
    assert_sipp_ok(&caller, 1, &format!("1000 dials {dialled}, wants {status}"));
}

#[test]
fn cli_reload_refuses_a_broken_file_and_the_previous_plan_keeps_routing() {
    let switch = switch();
    let (original, line) = break_plan(&switch);

    let out = switch.cli(&["dialplan", "reload"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "reload must fail: {stderr}");
    assert!(
        stderr.contains(&format!("dinkes.toml:{line}")),
        "the error must name dinkes.toml:{line}: {stderr}"
    );

    // previous plan: dinkes' block still routes, setda's new 7777 rule is not in effect
    call_2300(&switch, "old-plan", "2300");
    call_refused(&switch, "no-new-rule", "7777", 404);

    // fixed: the reload succeeds and the new rule routes
    fs::write(switch.dialplan.join("dinkes.toml"), original).expect("restore dinkes.toml");
    let ok = switch.cli_ok(&["dialplan", "reload"]);
    assert!(ok.contains("dialplan reloaded"), "{ok}");
    call_2300(&switch, "new-plan", "7777");
    call_2300(&switch, "new-plan-dinkes", "2300");
    assert_eq!(wait_cdrs(&switch, 4).len(), 4);
}

#[test]
fn sighup_with_a_broken_file_is_refused_and_the_switch_keeps_serving() {
    let mut switch = switch();
    let (original, line) = break_plan(&switch);
    let hup = |pid: u32| {
        let status = Command::new("sh")
            .args(["-c", &format!("kill -HUP {pid}")])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP {pid}");
    };

    hup(switch.pid());
    let refused = Switch::eventually(Duration::from_secs(5), || {
        switch
            .log_text()
            .contains("dialplan refused, the previous plan keeps serving")
    });
    assert!(refused, "no refusal in the log:\n{}", switch.log_text());
    assert!(
        switch.log_text().contains(&format!("dinkes.toml:{line}")),
        "the refusal must name dinkes.toml:{line}:\n{}",
        switch.log_text()
    );
    switch.assert_alive();
    // still the previous plan: 2301 is a dinkes extension without a phone (480, not 404),
    // and 7777 is unknown
    call_refused(&switch, "dinkes-480", "2301", 480);
    call_refused(&switch, "no-new-rule", "7777", 404);
    call_2300(&switch, "old-plan", "2300");

    fs::write(switch.dialplan.join("dinkes.toml"), original).expect("restore dinkes.toml");
    hup(switch.pid());
    let reloaded = Switch::eventually(Duration::from_secs(5), || {
        switch.log_text().contains("dialplan reloaded")
    });
    assert!(reloaded, "no reload in the log:\n{}", switch.log_text());
    call_2300(&switch, "new-plan", "7777");
    switch.assert_alive();
}
