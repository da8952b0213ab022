//! `tambun dialplan trace` through the binary, on a copy of the shipped dialplan: why a number
//! is refused (the permission that failed) and which time rule applies.

use crate::common::{Switch, SwitchOptions};

/// Runs the trace (the switch is not started: trace reads the files and the DB only) and
/// returns its stdout lines; asserts exit 0.
fn trace(switch: &Switch, args: &[&str]) -> Vec<String> {
    let mut all = vec!["dialplan", "trace"];
    all.extend_from_slice(args);
    let out = switch.cli_ok(&all);
    out.lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn trace_national_from_setwan_is_refused_with_403() {
    let switch = Switch::create(SwitchOptions::default());
    let lines = trace(&switch, &["--from", "1205", "90511234567"]);
    let text = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("setwan.toml") && l.contains("class national is not allowed")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("province.toml:") && l.contains("'_0Z.'")),
        "the classifying rule with its file:line: {text}"
    );
    let last = lines.last().expect("trace prints something");
    assert!(last.starts_with("→ reject 403"), "{text}");
}

#[test]
fn trace_zero_after_office_hours_rings_the_security_desk() {
    let switch = Switch::create(SwitchOptions::default());
    // Monday 30 November 2026, 22:00 WIB
    let lines = trace(
        &switch,
        &["--from", "2301", "0", "--at", "2026-11-30 22:00"],
    );
    let text = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("dinkes.toml:") && l.contains("outside office-hours")),
        "{text}"
    );
    assert_eq!(
        lines.last().map(String::as_str),
        Some("→ ring 2399"),
        "{text}"
    );

    // the same Monday at 10:00: the switchboard
    let lines = trace(
        &switch,
        &["--from", "2301", "0", "--at", "2026-11-30 10:00"],
    );
    let text = lines.join("\n");
    assert!(!text.contains("outside office-hours"), "{text}");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("→ ring 2300"),
        "{text}"
    );
}

#[test]
fn trace_inbound_shows_the_opd_of_a_public_number_or_the_operator() {
    let switch = Switch::create(SwitchOptions::default());
    let setda = switch.dialplan.join("setda.toml");
    let text = std::fs::read_to_string(&setda).unwrap();
    std::fs::write(
        &setda,
        format!("{text}\n[[did]]\nnumber = \"05363221234\"\nto = {{ extension = \"1000\" }}\n"),
    )
    .unwrap();
    let lines = trace(&switch, &["--inbound", "+625363221234"]);
    let text = lines.join("\n");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("setda.toml:") && l.contains("public number 05363221234 is setda")),
        "{text}"
    );
    assert!(lines.last().unwrap().starts_with("→ ring 1000"), "{text}");
    let lines = trace(&switch, &["--inbound", "05369999999"]);
    let text = lines.join("\n");
    assert!(text.contains("to the operator 3500"), "{text}");
    // --from and --inbound do not go together; one of them is needed.
    assert!(!switch.cli(&["dialplan", "trace", "1000"]).status.success());
}
