//! Monthly budgets over the wire: the test's copy of the dialplan gives Setda a budget of
//! Rp 1000 with rates of Rp 800 a minute for national and Rp 200 for local numbers, and points
//! the trunk at a SIPp UAS standing in for the carrier. One short national call (one billed
//! minute, Rp 800) puts Setda at 80 %: `GET /api/budgets`, `tambun budget --json`, `/metrics`
//! and one log line say so. A local call brings it to 100 %; the next outside call is refused
//! with 403 and a Warning naming the budget and never reaches the carrier, while 112 still
//! does and is not counted. The month's usage survives a restart (from the call records).
//! With a budget of one minute, an answered call is ended by the switch (a BYE to both sides)
//! a second before its second billed minute.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::common::calls::{
    assert_sipp_ok, header_of, received_messages, refused_scenario, sipp_call, wait_cdrs, SippUas,
};
use crate::common::media::{admin_get, admin_get_text, rtp_range};
use crate::common::peers::{run_sipp, sipp_scenario, SippRun};
use crate::common::{json_str, Switch, SwitchOptions};

const NATIONAL: &str = "90561234567";
const LOCAL: &str = "93231110";

const RATES: &str = "\n[[rate]]\nclass = \"local\"\nrupiah_per_minute = 200\n\
    [[rate]]\nclass = \"national\"\nrupiah_per_minute = 800\n\
    [[rate]]\nclass = \"mobile\"\nrupiah_per_minute = 1000\n\
    [[rate]]\nclass = \"international\"\nrupiah_per_minute = 5000\nsetup_rupiah = 1000\n";

/// `province.toml` without its `[[rate]]` tables (each ends at a blank line), so the test
/// sets its own.
fn without_rates(text: &str) -> String {
    let mut out = String::new();
    let mut in_rate = false;
    for line in text.lines() {
        if line.trim() == "[[rate]]" {
            in_rate = true;
        } else if in_rate && line.trim().is_empty() {
            in_rate = false;
        } else if !in_rate {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        !out.contains("[[rate]]") && out.contains("[emergency]"),
        "{out}"
    );
    out
}

/// Setda's entry of `GET /api/budgets`.
fn setda_budget(switch: &Switch) -> Value {
    let all = admin_get(switch, "/api/budgets");
    all.as_array()
        .expect("a list")
        .iter()
        .find(|b| b["opd"] == "setda")
        .cloned()
        .unwrap_or_else(|| panic!("no setda in {all:#}"))
}

/// Waits until Setda's budget shows `used` (the record is billed when the BYE has passed).
/// A call from 1000 (Setda) to `dialled`, held 100 ms when answered.
fn call(switch: &Switch, name: &str, dialled: &str, scenario: &std::path::Path) -> SippRun {
    sipp_call(
        switch,
        name,
        "1000",
        "pw1000",
        dialled,
        scenario,
        &["-d", "100"],
    )
}

fn wait_used(switch: &Switch, used: u64) -> Value {
    let ok = Switch::eventually(Duration::from_secs(5), || {
        setda_budget(switch)["used"].as_u64() == Some(used)
    });
    let b = setda_budget(switch);
    assert!(ok, "setda should have used {used}: {b:#}");
    b
}

#[test]
fn a_used_up_budget_refuses_outside_calls_but_not_112_and_survives_a_restart() {
    let mut switch = Switch::create(SwitchOptions {
        extra_args: vec!["--rtp-ports".into(), rtp_range(32)],
        ..SwitchOptions::default()
    });
    let trunk_uas = SippUas::listen(
        switch.dir(),
        "trunk",
        "uas-answer.xml",
        &["-m", "3", "-d", "100"],
    );
    let mut trunk = trunk_uas;
    switch.trunk_at(&trunk.addr().to_string(), "");
    let province = switch.dialplan.join("province.toml");
    let text = fs::read_to_string(&province).expect("read province.toml");
    fs::write(&province, format!("{}{RATES}", without_rates(&text))).expect("write province.toml");
    let setda = switch.dialplan.join("setda.toml");
    let text = fs::read_to_string(&setda).expect("read setda.toml");
    fs::write(&setda, format!("{text}\n[budget]\nrupiah = 1000\n")).expect("write setda.toml");
    switch.add_ext("1000", "setda", "pw1000");
    switch.launch();

    let fresh = setda_budget(&switch);
    assert_eq!(
        (
            json_str(&fresh, "unit"),
            fresh["limit"].as_u64(),
            fresh["used"].as_u64(),
            json_str(&fresh, "state")
        ),
        ("rupiah".to_owned(), Some(1000), Some(0), "ok".to_owned()),
        "{fresh:#}"
    );

    // A national call of 100 ms: one billed minute, Rp 800 = 80 %.
    let answered = sipp_scenario("uac-call.xml");
    assert_sipp_ok(
        &call(&switch, "national", NATIONAL, &answered),
        1,
        "national call",
    );
    let b = wait_used(&switch, 800);
    assert_eq!(json_str(&b, "state"), "warning", "{b:#}");
    assert_eq!(b["ratio"].as_f64(), Some(0.8), "{b:#}");
    let month = json_str(&b, "month");
    assert_eq!(month.len(), 7, "month is YYYY-MM: {b:#}");

    let cli: Value =
        serde_json::from_str(&switch.cli_ok(&["budget", "--json"])).expect("budget --json");
    let from_cli = cli
        .as_array()
        .and_then(|a| a.iter().find(|b| b["opd"] == "setda"))
        .cloned()
        .unwrap_or_else(|| panic!("no setda in {cli:#}"));
    assert_eq!(json_str(&from_cli, "state"), "warning", "{cli:#}");
    let table = switch.cli_ok(&["budget"]);
    assert!(
        table.contains("setda") && table.contains("80 %") && table.contains("warning"),
        "{table}"
    );

    let (_, metrics) = admin_get_text(&switch, "/metrics");
    for line in [
        "tambun_budget_used_ratio{opd=\"setda\"} 0.8",
        "tambun_budget_limit{opd=\"setda\",unit=\"rupiah\"} 1000",
        "tambun_budget_used{opd=\"setda\",unit=\"rupiah\"} 800",
    ] {
        assert!(
            metrics.contains(line),
            "/metrics lacks «{line}»:\n{metrics}"
        );
    }
    let warning = "monthly budget of OPD 'setda' 80 % used: 800 of 1000 rupiah";
    assert!(
        Switch::eventually(Duration::from_secs(2), || switch
            .log_text()
            .contains(warning)),
        "log lacks «{warning}»:\n{}",
        switch.log_text()
    );

    // A local call: Rp 200 more, 100 %.
    assert_sipp_ok(&call(&switch, "local", LOCAL, &answered), 1, "local call");
    let b = wait_used(&switch, 1000);
    assert_eq!(json_str(&b, "state"), "exhausted", "{b:#}");

    // The next outside call is refused before the carrier, with the reason.
    let why = "monthly budget of OPD 'setda' used up: 1000 of 1000 rupiah";
    let refused = call(
        &switch,
        "refused",
        NATIONAL,
        &refused_scenario(switch.dir(), 403),
    );
    assert_sipp_ok(&refused, 1, "outside call over the budget");
    let response = received_messages(&refused.dir.join("messages.log"))
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 403 "))
        .unwrap_or_else(|| panic!("no 403\n{}", refused.report()));
    let header = header_of(&response, "Warning").unwrap_or_default();
    assert!(
        header.contains(&format!("399 tambun \"{why}\"")),
        "Warning: {response}"
    );

    // 112 still goes through, and costs nothing.
    assert_sipp_ok(
        &call(&switch, "emergency", "112", &answered),
        1,
        "112 over the budget",
    );

    assert_sipp_ok(&trunk.finish(Duration::from_secs(5)), 3, "carrier");
    let invites = trunk.requests("INVITE");
    assert_eq!(invites.len(), 3, "{invites:#?}");
    assert!(invites[2].starts_with("INVITE sip:112@"), "{invites:#?}");

    let rows = wait_cdrs(&switch, 4);
    let blocked: Vec<&Value> = rows
        .iter()
        .filter(|r| json_str(r, "disposition") == "blocked")
        .collect();
    assert_eq!(blocked.len(), 1, "{rows:#?}");
    assert!(
        json_str(blocked[0], "route").starts_with("blocked (monthly-budget): trunk 0561234567"),
        "{rows:#?}"
    );
    let b = setda_budget(&switch);
    assert_eq!(
        (b["used"].as_u64(), b["refused"].as_u64()),
        (Some(1000), Some(1)),
        "{b:#}"
    );
    let (_, metrics) = admin_get_text(&switch, "/metrics");
    assert!(
        metrics.contains("tambun_budget_refused_total{opd=\"setda\"} 1"),
        "{metrics}"
    );
    let log = switch.log_text();
    let line = format!(
        "trunk call blocked from 127.0.0.1 extension '1000' OPD 'setda' dialled '{NATIONAL}': {why}"
    );
    assert!(log.contains(&line), "log lacks «{line}»:\n{log}");
    assert_eq!(
        log.matches(warning).count(),
        1,
        "80 % is logged once:\n{log}"
    );

    // After a restart the month's calls count again: still used up (the carrier SIPp is gone,
    // so a call let through would time out rather than get a 403).
    switch.restart();
    let b = setda_budget(&switch);
    assert_eq!(
        (b["used"].as_u64(), json_str(&b, "state")),
        (Some(1000), "exhausted".to_owned()),
        "{b:#}"
    );
    let again = call(
        &switch,
        "after-restart",
        NATIONAL,
        &refused_scenario(switch.dir(), 403),
    );
    assert_sipp_ok(&again, 1, "outside call over the budget after a restart");
}

#[test]
fn a_call_in_progress_is_ended_before_the_minute_its_budget_cannot_pay_for() {
    let mut switch = Switch::create(SwitchOptions {
        config_toml: Some("[media]\ninactivity_secs = 600\n".to_owned()),
        extra_args: vec!["--rtp-ports".into(), rtp_range(32)],
        ..SwitchOptions::default()
    });
    let mut trunk = SippUas::listen(switch.dir(), "trunk", "uas-answer.xml", &["-m", "1"]);
    switch.trunk_at(&trunk.addr().to_string(), "");
    let setda = switch.dialplan.join("setda.toml");
    let text = fs::read_to_string(&setda).expect("read setda.toml");
    fs::write(&setda, format!("{text}\n[budget]\nminutes = 1\n")).expect("write setda.toml");
    switch.add_ext("1000", "setda", "pw1000");
    switch.launch();

    // The caller never hangs up: the switch's BYE ends the call, answered with 200.
    let started = std::time::Instant::now();
    let inf = switch.dir().join("caller-long.csv");
    fs::write(&inf, "SEQUENTIAL\n1000;pw1000\n").expect("write injection file");
    let run = run_sipp(
        switch.dir(),
        "long",
        switch.sip,
        &sipp_scenario("media-uac-timeout.xml"),
        Some(&inf),
        &[
            "-s",
            NATIONAL,
            "-key",
            "domain",
            "127.0.0.1",
            "-m",
            "1",
            "-recv_timeout",
            "90000",
        ],
        Duration::from_secs(90),
    );
    let took = started.elapsed();
    assert_sipp_ok(&run, 1, "the call the switch ends");
    assert!(
        (Duration::from_secs(58)..Duration::from_secs(75)).contains(&took),
        "the switch's BYE came {took:?} after the call started (cut at 59 s of talk)"
    );
    let carrier = trunk.finish(Duration::from_secs(5));
    assert_sipp_ok(&carrier, 1, "the carrier got the switch's BYE");
    let bye = trunk.requests("BYE");
    assert!(
        bye.iter()
            .any(|m| m.contains("monthly budget of OPD 'setda' used up")),
        "the BYE's Reason names the budget: {bye:#?}"
    );

    let rows = wait_cdrs(&switch, 1);
    assert_eq!(json_str(&rows[0], "disposition"), "answered", "{rows:#?}");
    let talk = rows[0]["duration_ms"]
        .as_i64()
        .or_else(|| Some(rows[0]["end_ms"].as_i64()? - rows[0]["answer_ms"].as_i64()?))
        .unwrap_or_default();
    assert!(
        (57_000..60_000).contains(&talk),
        "billed one minute: {rows:#?}"
    );
    let b = wait_used(&switch, 1);
    assert_eq!(json_str(&b, "state"), "exhausted", "{b:#}");
    let line = "ending a call in progress: monthly budget of OPD 'setda' used up: 1 of 1 minutes";
    assert!(
        switch.log_text().contains(line),
        "log lacks «{line}»:\n{}",
        switch.log_text()
    );
}
