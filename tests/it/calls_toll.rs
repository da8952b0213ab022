//! The toll-fraud guard over the wire: a SIPp UAS on a free port stands in for the carrier
//! (the test's copy of `province.toml` points the trunk at it) and SIPp callers play the
//! phones. With `concurrent_per_extension = 2` and `calls_per_hour_per_extension = 3`, the
//! third concurrent trunk call and the fourth call of the hour are refused and never reach
//! the trunk SIPp; international numbers without a grant never reach it either; every refusal
//! is logged, recorded as `blocked` and counted per OPD by `tambun cdr summary`; the hourly
//! count survives a restart of the switch. An OPD's own `[toll.opd.CODE]` hourly limit spans its
//! extensions and leaves other OPDs alone.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::common::calls::{
    assert_sipp_ok, header_of, received_messages, refused_scenario, sipp_call, wait_cdrs, SippUas,
    CALL_TIMEOUT,
};
use crate::common::media::live_calls;
use crate::common::peers::{run_sipp, sipp_scenario, SippRun};
use crate::common::{json_str, Switch, SwitchOptions};

const TOLL: &str = "[toll]\n\
    concurrent_per_extension = 2\n\
    calls_per_hour_per_extension = 3\n\
    concurrent_per_opd = 50\n\
    calls_per_hour_per_opd = 100\n";

const NATIONAL: &str = "90561234567";
const INTERNATIONAL: &str = "900441234567";

/// A switch (not started yet) with the configuration `toml`, whose trunk is a SIPp UAS
/// answering `calls` calls.
fn with_trunk(calls: u32, toml: &str) -> (Switch, SippUas) {
    let switch = Switch::create(SwitchOptions {
        config_toml: Some(toml.to_owned()),
        ..SwitchOptions::default()
    });
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

/// The first final response SIPp run `name` received with `status`, as text.
fn final_response(run: &SippRun, status: u16) -> String {
    let start = format!("SIP/2.0 {status} ");
    received_messages(&run.dir.join("messages.log"))
        .into_iter()
        .find(|m| m.starts_with(&start))
        .unwrap_or_else(|| panic!("no {status} received\n{}", run.report()))
}

/// Calls refused by `status` whose `Warning` says `why`.
#[track_caller]
fn assert_refused(run: &SippRun, status: u16, why: &str, what: &str) {
    assert_sipp_ok(run, 1, what);
    let response = final_response(run, status);
    let warning = header_of(&response, "Warning").unwrap_or_default();
    assert!(
        warning.contains(why),
        "{what}: Warning should say '{why}': {response}"
    );
}

fn summary_of(summary: &Value, opd: &str) -> Value {
    summary["opds"]
        .as_array()
        .expect("opds array")
        .iter()
        .find(|o| o["opd"] == opd)
        .cloned()
        .unwrap_or_else(|| panic!("no line for {opd} in {summary:#}"))
}

#[test]
fn limits_and_permissions_stop_calls_before_the_trunk_and_are_counted_per_opd() {
    let (mut switch, mut trunk) = with_trunk(3, TOLL);
    switch.add_ext("1000", "setda", "pw1000");
    switch.add_ext("1205", "setwan", "pw1205");
    switch.launch();

    // Two long trunk calls from 1000 (setda may dial national numbers), held 5 s.
    let long_inf = switch.dir().join("caller-long.csv");
    fs::write(&long_inf, "SEQUENTIAL\n1000;pw1000\n").unwrap();
    let long_calls = std::thread::scope(|scope| {
        let switch = &switch;
        let long = scope.spawn(move || {
            run_sipp(
                switch.dir(),
                "long",
                switch.sip,
                &sipp_scenario("uac-call.xml"),
                Some(&long_inf),
                &[
                    "-s",
                    NATIONAL,
                    "-key",
                    "domain",
                    "127.0.0.1",
                    "-m",
                    "2",
                    "-l",
                    "2",
                    "-r",
                    "10",
                    "-d",
                    "5000",
                    "-recv_timeout",
                    "10000",
                ],
                CALL_TIMEOUT,
            )
        });
        let both_up = Switch::eventually(Duration::from_secs(10), || {
            live_calls(switch)
                .iter()
                .filter(|c| json_str(c, "state") == "answered")
                .count()
                == 2
        });
        assert!(
            both_up,
            "two answered trunk calls: {:#?}",
            live_calls(switch)
        );
        // The third at the same time: 486, naming the limit.
        let third = sipp_call(
            switch,
            "third",
            "1000",
            "pw1000",
            NATIONAL,
            &refused_scenario(switch.dir(), 486),
            &[],
        );
        assert_refused(
            &third,
            486,
            "trunk limit: 2 concurrent calls per extension",
            "third concurrent trunk call of 1000",
        );
        long.join().expect("SIPp thread")
    });
    assert_sipp_ok(&long_calls, 2, "two concurrent trunk calls of 1000");

    // The third call of the hour goes through; the fourth is refused.
    let third_of_hour = sipp_call(
        &switch,
        "hour-3",
        "1000",
        "pw1000",
        NATIONAL,
        &sipp_scenario("uac-call.xml"),
        &["-d", "200"],
    );
    assert_sipp_ok(&third_of_hour, 1, "third trunk call of the hour");
    let fourth_of_hour = sipp_call(
        &switch,
        "hour-4",
        "1000",
        "pw1000",
        NATIONAL,
        &refused_scenario(switch.dir(), 403),
        &[],
    );
    assert_refused(
        &fourth_of_hour,
        403,
        "trunk limit: 3 calls per hour per extension",
        "fourth trunk call of the hour",
    );

    // International without a grant, from setda (1000 is not in 1001-1009) and setwan.
    for (name, caller, opd) in [
        ("intl-setda", "1000", "setda"),
        ("intl-setwan", "1205", "setwan"),
    ] {
        let run = sipp_call(
            &switch,
            name,
            caller,
            &format!("pw{caller}"),
            INTERNATIONAL,
            &refused_scenario(switch.dir(), 403),
            &[],
        );
        assert_refused(
            &run,
            403,
            "international numbers not allowed",
            &format!("{caller} ({opd}) dials {INTERNATIONAL}"),
        );
    }

    // The trunk saw the three admitted calls and nothing else.
    assert_sipp_ok(&trunk.finish(Duration::from_secs(5)), 3, "trunk");
    let invites = trunk.requests("INVITE");
    assert_eq!(invites.len(), 3, "INVITEs at the trunk: {invites:#?}");
    assert!(
        invites
            .iter()
            .all(|i| i.starts_with("INVITE sip:0561234567@")),
        "{invites:#?}"
    );
    assert!(
        !trunk.received().iter().any(|m| m.contains("00441234567")),
        "an international number reached the trunk"
    );

    // Call records: 3 answered trunk calls, 4 blocked attempts naming their rule.
    let rows = wait_cdrs(&switch, 7);
    assert_eq!(rows.len(), 7, "{rows:#?}");
    let blocked: Vec<(String, String, String, String)> = rows
        .iter()
        .filter(|r| json_str(r, "disposition") == "blocked")
        .map(|r| {
            (
                json_str(r, "caller_opd"),
                json_str(r, "sip_status"),
                json_str(r, "trunk"),
                json_str(r, "route"),
            )
        })
        .collect();
    let want = |opd: &str, status: &str, rule: &str| {
        blocked
            .iter()
            .filter(|(o, s, t, r)| {
                o == opd
                    && s == status
                    && t == "false"
                    && r.starts_with(&format!("blocked ({rule})"))
            })
            .count()
    };
    assert_eq!(blocked.len(), 4, "{blocked:#?}");
    assert_eq!(
        want("setda", "486", "concurrent-per-extension"),
        1,
        "{blocked:#?}"
    );
    assert_eq!(
        want("setda", "403", "per-hour-per-extension"),
        1,
        "{blocked:#?}"
    );
    assert_eq!(want("setda", "403", "permission"), 1, "{blocked:#?}");
    assert_eq!(want("setwan", "403", "permission"), 1, "{blocked:#?}");
    let answered_trunk = rows
        .iter()
        .filter(|r| json_str(r, "trunk") == "true" && json_str(r, "disposition") == "answered")
        .count();
    assert_eq!(answered_trunk, 3, "{rows:#?}");

    // `tambun cdr summary` shows the blocked attempts for the right OPD.
    let summary: Value =
        serde_json::from_str(&switch.cli_ok(&["cdr", "summary", "--json"])).expect("JSON");
    let setda = summary_of(&summary, "setda");
    assert_eq!(
        (setda["blocked"].as_u64(), setda["trunk_calls"].as_u64()),
        (Some(3), Some(3))
    );
    let setwan = summary_of(&summary, "setwan");
    assert_eq!(
        (setwan["blocked"].as_u64(), setwan["trunk_calls"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(summary["total"]["blocked"].as_u64(), Some(4));
    let table = switch.cli_ok(&["cdr", "summary"]);
    assert!(table.contains("BLOCKED"), "{table}");

    // One log line per refusal, with source, extension, OPD, number and rule.
    let log = switch.log_text();
    for line in [
        "trunk call blocked from 127.0.0.1 extension '1000' OPD 'setda' dialled '90561234567': \
         trunk limit: 2 concurrent calls per extension",
        "trunk call blocked from 127.0.0.1 extension '1000' OPD 'setda' dialled '90561234567': \
         trunk limit: 3 calls per hour per extension",
        "trunk call blocked from 127.0.0.1 extension '1205' OPD 'setwan' dialled '900441234567': \
         international numbers not allowed",
    ] {
        assert!(log.contains(line), "log lacks «{line}»:\n{log}");
    }

    // The hour's count survives a restart: 1000 is still refused (the trunk SIPp is gone, so
    // a call let through would end in a timeout, not a 403).
    switch.restart();
    let after_restart = sipp_call(
        &switch,
        "after-restart",
        "1000",
        "pw1000",
        NATIONAL,
        &refused_scenario(switch.dir(), 403),
        &[],
    );
    assert_refused(
        &after_restart,
        403,
        "trunk limit: 3 calls per hour per extension",
        "1000 after a restart",
    );
}

#[test]
fn an_opds_own_hourly_limit_spans_its_extensions_and_spares_other_opds() {
    let toml = "[toll]\n\
        concurrent_per_extension = 0\n\
        calls_per_hour_per_extension = 0\n\
        [toll.opd.setda]\n\
        calls_per_hour_per_opd = 2\n";
    let (mut switch, mut trunk) = with_trunk(3, toml);
    for (ext, opd) in [
        ("1000", "setda"),
        ("1001", "setda"),
        ("1002", "setda"),
        ("3500", "diskominfo"),
    ] {
        switch.add_ext(ext, opd, &format!("pw{ext}"));
    }
    switch.launch();
    let call = |name: &str, ext: &str, scenario: &std::path::Path| {
        sipp_call(
            &switch,
            name,
            ext,
            &format!("pw{ext}"),
            NATIONAL,
            scenario,
            &["-d", "200"],
        )
    };
    let answered = sipp_scenario("uac-call.xml");
    assert_sipp_ok(
        &call("a", "1000", &answered),
        1,
        "1000, first of setda's hour",
    );
    assert_sipp_ok(
        &call("b", "1001", &answered),
        1,
        "1001, second of setda's hour",
    );
    let refused = call("c", "1002", &refused_scenario(switch.dir(), 403));
    assert_refused(
        &refused,
        403,
        "trunk limit: 2 calls per hour per OPD",
        "1002, third of setda's hour",
    );
    assert_sipp_ok(
        &call("d", "3500", &answered),
        1,
        "3500 (diskominfo) is not limited by setda",
    );

    assert_sipp_ok(&trunk.finish(Duration::from_secs(5)), 3, "trunk");
    let froms: Vec<String> = trunk
        .requests("INVITE")
        .iter()
        .filter_map(|m| header_of(m, "From"))
        .collect();
    assert_eq!(froms.len(), 3, "{froms:#?}");
    assert!(
        !froms.iter().any(|f| f.contains("1002@")),
        "1002's call reached the trunk: {froms:#?}"
    );

    let rows = wait_cdrs(&switch, 4);
    assert_eq!(rows.len(), 4, "{rows:#?}");
    let summary: Value =
        serde_json::from_str(&switch.cli_ok(&["cdr", "summary", "--json"])).expect("JSON");
    let setda = summary_of(&summary, "setda");
    assert_eq!(
        (setda["blocked"].as_u64(), setda["trunk_calls"].as_u64()),
        (Some(1), Some(2))
    );
    let diskominfo = summary_of(&summary, "diskominfo");
    assert_eq!(
        (
            diskominfo["blocked"].as_u64(),
            diskominfo["trunk_calls"].as_u64()
        ),
        (Some(0), Some(1))
    );
    assert!(switch.log_text().contains(
        "trunk call blocked from 127.0.0.1 extension '1002' OPD 'setda' dialled '90561234567': \
         trunk limit: 2 calls per hour per OPD"
    ));
}
