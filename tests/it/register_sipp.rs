//! SIPp registers extensions imported with `tambun ext import`, with digest auth, and
//! `tambun regs --json` lists every binding.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::common::peers::{run_sipp, sipp_scenario};
use crate::common::{json_str, Switch, SwitchOptions};

/// The OPD that owns `number` in the shipped dialplan.
fn opd_of(number: u32) -> &'static str {
    match number {
        1000..=1199 => "setda",
        1200..=1299 => "setwan",
        1300..=1399 => "inspektorat",
        1400..=1499 => "bappedalitbang",
        2300..=2499 => "dinkes",
        3500..=3599 => "diskominfo",
        _ => panic!("no OPD for {number} in this test"),
    }
}

fn password_of(number: u32) -> String {
    format!("pw{number}")
}

/// Imports `numbers` from a CSV with `ext import` and returns the SIPp injection file.
fn import(switch: &Switch, numbers: &[u32]) -> std::path::PathBuf {
    let mut csv = String::from("number,opd,name,password\n");
    let mut inf = String::from("SEQUENTIAL\n");
    for &n in numbers {
        writeln!(csv, "{n},{},Pegawai {n},{}", opd_of(n), password_of(n)).unwrap();
        writeln!(inf, "{n};{}", password_of(n)).unwrap();
    }
    let csv_path = switch.dir().join("extensions.csv");
    std::fs::write(&csv_path, csv).unwrap();
    switch.cli_ok(&["ext", "import", csv_path.to_str().unwrap()]);
    let inf_path = switch.dir().join("users.inf");
    std::fs::write(&inf_path, inf).unwrap();
    inf_path
}

/// Imports `numbers` into a new switch's DB, starts it, and lets SIPp register them all.
fn register_all(numbers: &[u32], transport: &str, rate: u32) {
    let mut switch = Switch::create(SwitchOptions::default());
    let inf = import(&switch, numbers);
    switch.launch();
    let calls = numbers.len().to_string();
    let rate = rate.to_string();
    let run = run_sipp(
        switch.dir(),
        transport,
        switch.sip,
        &sipp_scenario("register-uac.xml"),
        Some(&inf),
        &[
            "-t",
            transport,
            "-key",
            "domain",
            "127.0.0.1",
            "-key",
            "expires",
            "3600",
            "-m",
            &calls,
            "-r",
            &rate,
            "-l",
            "100",
            "-recv_timeout",
            "5000",
            "-max_retrans",
            "5",
        ],
        Duration::from_secs(60),
    );
    assert!(
        run.status.is_some_and(|s| s.success()) && run.successful() == numbers.len() as u64,
        "SIPp ({transport}): exit {:?}, {} successful, {} failed of {}\n{}",
        run.status,
        run.successful(),
        run.failed(),
        numbers.len(),
        run.report()
    );
    assert_eq!(run.failed(), 0, "SIPp failures\n{}", run.report());

    let regs = switch.regs();
    let mut by_ext: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
    for r in &regs {
        by_ext.entry(json_str(r, "extension")).or_default().push(r);
    }
    assert_eq!(
        regs.len(),
        numbers.len(),
        "regs --json should list one binding per extension"
    );
    let want_transport = if transport == "t1" { "TCP" } else { "UDP" };
    for &n in numbers {
        let entries = by_ext
            .get(&n.to_string())
            .unwrap_or_else(|| panic!("extension {n} missing from regs --json"));
        assert_eq!(entries.len(), 1, "extension {n}: {entries:?}");
        let r = entries[0];
        assert_eq!(json_str(r, "opd"), opd_of(n), "{r}");
        assert!(
            json_str(r, "contact").contains(&format!("sip:{n}@127.0.0.1:")),
            "{r}"
        );
        assert!(
            json_str(r, "transport").eq_ignore_ascii_case(want_transport),
            "{r}"
        );
        assert_eq!(json_str(r, "user_agent"), "tambun-itest/sipp", "{r}");
        let expires_in = r["expires_in"].as_u64().unwrap_or(0);
        assert!((3000..=3600).contains(&expires_in), "{r}");
    }
    switch.assert_alive();
}

#[test]
fn sipp_registers_500_imported_extensions_over_udp() {
    let numbers: Vec<u32> = (1000..1500).collect();
    register_all(&numbers, "u1", 200);
}

#[test]
fn sipp_registers_100_imported_extensions_over_tcp() {
    let numbers: Vec<u32> = (2300..2400).collect();
    register_all(&numbers, "t1", 100);
}
