//! Permissions and the trunk, over the wire: a SIPp UAS on a free port stands in for the
//! carrier (the test's copy of `province.toml` points the trunk at it). An extension without
//! national permission gets 403 and the trunk never sees the call; 112 reaches the trunk from
//! every shipped OPD; setda reaches national numbers; `tambun ext forward` while the switch
//! runs sends the next call to the forward target.

use std::fmt::Write as _;
use std::fs;
use std::time::Duration;

use crate::common;
use crate::common::calls::{
    assert_cdr, assert_sipp_ok, cdrs, one_cdr, refused_scenario, sipp_call, wait_cdrs, SippUas,
};
use crate::common::peers::sipp_scenario;
use crate::common::{json_str, Switch, SwitchOptions};

/// A switch (not started yet) whose trunk is a SIPp UAS answering `calls` calls.
fn with_trunk(calls: u32) -> (Switch, SippUas) {
    let switch = Switch::create(SwitchOptions::default());
    let calls = calls.to_string();
    let trunk = SippUas::listen(
        switch.dir(),
        "trunk",
        "uas-answer.xml",
        &["-m", &calls, "-d", "100"],
    );
    switch.trunk_at(&trunk.addr().to_string(), "");
    (switch, trunk)
}

/// (OPD code, reception extension) of every shipped OPD file.
fn shipped_opds() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(common::shipped_dialplan()).expect("read dialplan/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read dialplan file");
        let value = |key: &str| {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(key)?.trim_start().strip_prefix('=')?;
                Some(rest.trim().trim_matches('"').to_owned())
            })
        };
        if let (Some(code), Some(reception)) = (value("code"), value("reception")) {
            out.push((code, reception));
        }
    }
    out.sort();
    out
}

#[test]
fn national_without_permission_is_refused_and_never_reaches_the_trunk() {
    let (mut switch, mut trunk) = with_trunk(1);
    switch.add_ext("1205", "setwan", "pw1205");
    switch.launch();
    let refused = sipp_call(
        &switch,
        "national",
        "1205",
        "pw1205",
        "90511234567",
        &refused_scenario(switch.dir(), 403),
        &[],
    );
    assert_sipp_ok(&refused, 1, "setwan 1205 dials 90511234567 (wants 403)");
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1205"),
            ("caller_opd", "setwan"),
            ("dialled", "90511234567"),
            // refused for lack of permission: a blocked attempt (tests/calls_toll.rs)
            ("disposition", "blocked"),
            ("sip_status", "403"),
            ("trunk", "false"),
        ],
    );
    // positive control: the trunk is listening, and the same extension reaches it with 112
    let emergency = sipp_call(
        &switch,
        "emergency",
        "1205",
        "pw1205",
        "112",
        &sipp_scenario("uac-call.xml"),
        &["-d", "200"],
    );
    assert_sipp_ok(&emergency, 1, "setwan 1205 dials 112");
    assert_sipp_ok(&trunk.finish(Duration::from_secs(5)), 1, "trunk");
    let invites = trunk.requests("INVITE");
    assert_eq!(
        invites.len(),
        1,
        "the trunk must see the 112 call only: {invites:#?}"
    );
    assert!(invites[0].starts_with("INVITE sip:112@"), "{}", invites[0]);
    assert!(
        !trunk.received().iter().any(|m| m.contains("0511234567")),
        "the refused national number reached the trunk: {:#?}",
        trunk.received()
    );
}

#[test]
fn emergency_112_reaches_the_trunk_from_every_opd() {
    let opds = shipped_opds();
    assert!(opds.len() >= 40, "shipped OPDs: {opds:?}");
    let (mut switch, mut trunk) = with_trunk(opds.len() as u32);
    let mut csv = String::from("number,opd,name,password\n");
    let mut inf = String::from("SEQUENTIAL\n");
    for (code, ext) in &opds {
        writeln!(csv, "{ext},{code},Resepsionis {code},pw{ext}").unwrap();
        writeln!(inf, "{ext};pw{ext}").unwrap();
    }
    let csv_path = switch.dir().join("extensions.csv");
    fs::write(&csv_path, csv).unwrap();
    switch.cli_ok(&["ext", "import", csv_path.to_str().unwrap()]);
    switch.launch();
    let inf_path = switch.dir().join("callers.csv");
    fs::write(&inf_path, inf).unwrap();
    let calls = opds.len().to_string();
    let run = common::peers::run_sipp(
        switch.dir(),
        "callers",
        switch.sip,
        &sipp_scenario("uac-call.xml"),
        Some(&inf_path),
        &[
            "-s",
            "112",
            "-key",
            "domain",
            "127.0.0.1",
            "-m",
            &calls,
            "-r",
            "20",
            "-l",
            "20",
            "-d",
            "200",
            "-recv_timeout",
            "10000",
        ],
        Duration::from_secs(25),
    );
    assert_sipp_ok(&run, opds.len() as u64, "one 112 call per OPD");
    assert_sipp_ok(
        &trunk.finish(Duration::from_secs(5)),
        opds.len() as u64,
        "trunk",
    );
    let invites = trunk.requests("INVITE");
    assert_eq!(invites.len(), opds.len(), "INVITEs at the trunk");
    assert!(invites.iter().all(|i| i.starts_with("INVITE sip:112@")));

    let rows = wait_cdrs(&switch, opds.len());
    assert_eq!(rows.len(), opds.len(), "one record per call: {rows:#?}");
    for (code, ext) in &opds {
        let row = rows
            .iter()
            .find(|r| json_str(r, "caller") == *ext)
            .unwrap_or_else(|| panic!("no record of {ext} ({code}) calling 112"));
        assert_cdr(
            row,
            &[
                ("caller_opd", code),
                ("dialled", "112"),
                ("trunk", "true"),
                ("disposition", "answered"),
            ],
        );
    }
}

#[test]
fn setda_reaches_a_national_number_through_the_trunk() {
    let (mut switch, mut trunk) = with_trunk(1);
    switch.add_ext("1000", "setda", "pw1000");
    switch.launch();
    let run = sipp_call(
        &switch,
        "national",
        "1000",
        "pw1000",
        "90561234567",
        &sipp_scenario("uac-call.xml"),
        &["-d", "300"],
    );
    assert_sipp_ok(&run, 1, "setda 1000 dials 90561234567");
    assert_sipp_ok(&trunk.finish(Duration::from_secs(5)), 1, "trunk");
    let invites = trunk.requests("INVITE");
    assert_eq!(invites.len(), 1);
    // the outside prefix 9 is stripped; the trunk gets the national number
    assert!(
        invites[0].starts_with("INVITE sip:0561234567@"),
        "{}",
        invites[0]
    );
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("caller_opd", "setda"),
            ("dialled", "90561234567"),
            ("trunk", "true"),
            ("disposition", "answered"),
        ],
    );
}

#[test]
fn ext_forward_always_while_running_sends_the_call_to_the_target() {
    let switch = Switch::start_with_extensions(&[
        ("1000", "setda", "pw1000"),
        ("2300", "dinkes", "pw2300"),
        ("2301", "dinkes", "pw2301"),
    ]);
    let mut forwarded = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "pw2300",
        "uas-answer.xml",
        &["-m", "1"],
    );
    let mut target = SippUas::callee(
        &switch,
        "2301",
        "2301",
        "pw2301",
        "uas-answer.xml",
        &["-m", "1", "-d", "100"],
    );
    switch.cli_ok(&["ext", "forward", "2300", "--always", "2301"]);
    // the switch reloads the DB within about a second
    std::thread::sleep(Duration::from_millis(1500));
    let run = sipp_call(
        &switch,
        "caller",
        "1000",
        "pw1000",
        "2300",
        &sipp_scenario("uac-call.xml"),
        &["-d", "300"],
    );
    assert_sipp_ok(&run, 1, "1000 dials 2300 (forwarded to 2301)");
    assert_sipp_ok(&target.finish(Duration::from_secs(5)), 1, "2301");
    let at_target = target.requests("INVITE");
    assert_eq!(at_target.len(), 1);
    assert!(
        at_target[0].starts_with(&format!("INVITE sip:2301@127.0.0.1:{}", target.port)),
        "{}",
        at_target[0]
    );
    forwarded.finish(Duration::from_millis(200));
    assert!(
        forwarded.requests("INVITE").is_empty(),
        "2300 forwards always, its phone must not ring: {:#?}",
        forwarded.received()
    );
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("dialled", "2300"),
            ("callee", "2301"),
            ("callee_opd", "dinkes"),
            ("disposition", "answered"),
        ],
    );
    assert_eq!(cdrs(&switch).len(), 1);
}
