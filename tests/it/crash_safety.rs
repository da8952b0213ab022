//! Crash safety: `kill -9` in the middle of SIPp load (registrations from many extensions and
//! calls with BYE to a SIPp callee), then a restart on the same DB. Every registration SIPp saw
//! a 200 for is back, every call SIPp saw finish (200 to its BYE) has its call record, the
//! database passes `PRAGMA integrity_check`, and the relay holds no port once a new call
//! through the restored callee has ended.
//!
//! A second test kills the switch in the middle of an answered call (in-process phones): after
//! the restart that call has a record, `interrupted`, whose talk time ends when the switch
//! last had the call.
//!
//! SIPp logs what it saw with `<log>` actions (`-trace_logs`): `REG <ext>` on each 200 to an
//! authenticated REGISTER, `BYE <call-id>` on each 200 to a BYE. Those logs are the ground
//! truth; the switch is judged only through its CLI, its admin API and the DB file.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::calls::{cdrs, sipp_call, SippUas};
use crate::common::json_str;
use crate::common::media::{media_switch, rtp_socket, sdp, wait_relay_idle, Phone};
use crate::common::peers::{run_sipp, sipp_scenario, SippRun};

/// Registering extensions (1000-1999: the blocks of nine OPDs, `OPDS`), each registering
/// once, so a registration acknowledged just before the kill is not hidden by a later one;
/// callers (bpbd); the callee is in dinkes.
const REG_FIRST: u32 = 1000;
const REG_LAST: u32 = 1999;
const OPDS: [(u32, &str); 9] = [
    (1000, "setda"),
    (1200, "setwan"),
    (1300, "inspektorat"),
    (1400, "bappedalitbang"),
    (1500, "bpkad"),
    (1600, "bapenda"),
    (1700, "bkd"),
    (1800, "bpsdm"),
    (1900, "kesbangpol"),
];
const CALLERS: std::ops::RangeInclusive<u32> = 2000..=2009;
const CALLEE: &str = "2300";
const CALLEE_PW: &str = "rahasia2300";

/// The load: REGISTERs per second (one per extension, 5 s) and calls per second for
/// `LOAD_SECS`; the kill comes `KILL_AFTER` into it.
const REG_RATE: u32 = 200;
const CALL_RATE: u32 = 15;
const LOAD_SECS: u32 = 8;
const KILL_AFTER: Duration = Duration::from_millis(3500);

fn password(n: u32) -> String {
    format!("pw{n}xyz")
}

/// A copy of `scenario` in `dir` with a `<log>` action on the `<recv>` matching `recv`.
fn logging_scenario(dir: &Path, scenario: &str, recv: &str, message: &str) -> PathBuf {
    let text = fs::read_to_string(sipp_scenario(scenario)).expect("read scenario");
    assert_eq!(text.matches(recv).count(), 1, "{recv} once in {scenario}");
    let open = recv.trim_end_matches("/>");
    let with_log = format!("{open}>\n    <action><log message=\"{message}\"/></action>\n  </recv>");
    let path = dir.join(format!("logging-{scenario}"));
    fs::write(&path, text.replace(recv, &with_log)).expect("write scenario");
    path
}

/// The `-log_file` lines of a run that start with `tag `, without the tag.
fn logged(run: &SippRun, tag: &str) -> BTreeSet<String> {
    let text = fs::read_to_string(run.dir.join("actions.log")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix(tag)?.strip_prefix(' '))
        .map(|s| s.trim().to_owned())
        .collect()
}

/// Every item the peers saw acknowledged is in `after`; else panics with "N of M {what}".
fn assert_kept(acknowledged: &BTreeSet<String>, after: &BTreeSet<String>, what: &str) {
    let lost: Vec<&String> = acknowledged.difference(after).collect();
    assert!(
        lost.is_empty(),
        "{} of {} {what}: {lost:?}",
        lost.len(),
        acknowledged.len()
    );
}

fn integrity_check(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).expect("open the DB");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
        .expect("PRAGMA integrity_check")
}

#[test]
fn kill9_under_load_loses_nothing_acknowledged() {
    let (mut switch, _range) = media_switch(&[(CALLEE, "dinkes", CALLEE_PW)], "");
    let mut csv = String::from("number,opd,name,password\n");
    for n in (REG_FIRST..=REG_LAST).chain(CALLERS) {
        let opd = OPDS
            .iter()
            .rev()
            .find(|(first, _)| *first <= n && n <= REG_LAST)
            .map_or("bpbd", |(_, code)| code);
        csv.push_str(&format!("{n},{opd},Load {n},{}\n", password(n)));
    }
    let users = switch.dir().join("users.csv");
    fs::write(&users, csv).expect("write users.csv");
    switch.cli_ok(&["ext", "import", users.to_str().expect("UTF-8 path")]);

    let mut callee = SippUas::callee(
        &switch,
        "callee",
        CALLEE,
        CALLEE_PW,
        "uas-answer.xml",
        &["-d", "200"],
    );

    let work = switch.dir().to_path_buf();
    let reg_scenario = logging_scenario(
        &work,
        "register-uac.xml",
        "<recv response=\"200\"/>",
        "REG [field0]",
    );
    let call_scenario = logging_scenario(
        &work,
        "uac-call.xml",
        "<recv response=\"200\" crlf=\"true\"/>",
        "BYE [call_id]",
    );
    let inf = |name: &str, numbers: &mut dyn Iterator<Item = u32>| {
        let path = work.join(name);
        let mut text = String::from("SEQUENTIAL\n");
        for n in numbers {
            text.push_str(&format!("{n};{}\n", password(n)));
        }
        fs::write(&path, text).expect("write injection file");
        path
    };
    let reg_inf = inf("registering.csv", &mut (REG_FIRST..=REG_LAST));
    let call_inf = inf("callers.csv", &mut CALLERS.clone());

    let load = |name: &'static str,
                scenario: PathBuf,
                inf: PathBuf,
                rate: u32,
                total: u32,
                extra: Vec<String>| {
        let (work, target) = (work.clone(), switch.sip);
        std::thread::spawn(move || {
            let total = total.to_string();
            let mut args = vec![
                "-r".to_owned(),
                rate.to_string(),
                "-m".into(),
                total,
                "-key".into(),
                "domain".into(),
                "127.0.0.1".into(),
                "-recv_timeout".into(),
                "3000".into(),
                "-trace_logs".into(),
                "-log_file".into(),
                "actions.log".into(),
            ];
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_sipp(
                &work,
                name,
                target,
                &scenario,
                Some(&inf),
                &args,
                Duration::from_secs(u64::from(LOAD_SECS) + 20),
            )
        })
    };
    let started = Instant::now();
    let registering = load(
        "registering",
        reg_scenario,
        reg_inf,
        REG_RATE,
        REG_LAST - REG_FIRST + 1,
        vec!["-key".into(), "expires".into(), "3600".into()],
    );
    let calling = load(
        "calling",
        call_scenario,
        call_inf,
        CALL_RATE,
        CALL_RATE * LOAD_SECS,
        vec!["-s".into(), CALLEE.into(), "-d".into(), "300".into()],
    );
    std::thread::sleep(KILL_AFTER);
    switch.kill9();
    let killed_at = started.elapsed();
    let registering = registering.join().expect("registering SIPp thread");
    let calling = calling.join().expect("calling SIPp thread");

    // The DB as the crash left it (the WAL is replayed on open, as the restart will).
    assert_eq!(integrity_check(&switch.db), "ok", "integrity after kill -9");

    let registered = logged(&registering, "REG");
    let finished = logged(&calling, "BYE");
    // The load must have been real on both sides of the kill, or the test proves nothing.
    assert!(
        registered.len() >= 300 && finished.len() >= 10,
        "too little load before the kill at {killed_at:?}: {} registrations, {} calls\n{}\n{}",
        registered.len(),
        finished.len(),
        registering.report(),
        calling.report()
    );
    assert!(
        registering.failed() > 0 && calling.failed() > 0,
        "the kill came after the load ended ({killed_at:?}): nothing was in flight\n{}",
        calling.report()
    );

    switch.restart();

    let regs = switch.regs();
    let back: BTreeSet<String> = regs.iter().map(|r| json_str(r, "extension")).collect();
    assert_kept(
        &registered,
        &back,
        "acknowledged registrations lost by kill -9",
    );
    assert!(back.contains(CALLEE), "the callee's registration is lost");

    let recorded: BTreeSet<String> = cdrs(&switch)
        .iter()
        .map(|r| json_str(r, "call_id"))
        .collect();
    assert_kept(
        &finished,
        &recorded,
        "finished calls have no call record after kill -9",
    );

    // The restored callee binding takes a new call; afterwards the relay holds nothing.
    let run = sipp_call(
        &switch,
        "after-restart",
        "2000",
        &password(2000),
        CALLEE,
        &sipp_scenario("uac-call.xml"),
        &["-d", "200"],
    );
    assert_eq!(
        (run.successful(), run.failed()),
        (1, 0),
        "a call after the restart\n{}",
        run.report()
    );
    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(5)),
        (0, 0),
        "relay ports or sessions still taken after the call ended"
    );
    assert_eq!(
        integrity_check(&switch.db),
        "ok",
        "integrity after the restart"
    );
    switch.assert_alive();
    drop(callee.finish(Duration::from_millis(100)));
    eprintln!(
        "kill -9 at {killed_at:?}: {} registrations and {} finished calls acknowledged, all kept \
         ({} registrations, {} call records after the restart)",
        registered.len(),
        finished.len(),
        back.len(),
        recorded.len()
    );
}

#[test]
fn a_call_in_progress_at_a_kill_is_recorded_as_interrupted() {
    let (mut switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let mut a = Phone::register(&switch, "1000", "rahasia1000");
    let mut b = Phone::register(&switch, "2300", "rahasia2300");
    let (a_rtp, b_rtp) = (rtp_socket(), rtp_socket());
    let offer = sdp(a_rtp.local_addr().unwrap(), 1, "0", &["a=sendrecv"]);
    let answer = sdp(b_rtp.local_addr().unwrap(), 1, "0", &["a=sendrecv"]);
    let ((ok, _), _) = std::thread::scope(|s| {
        let callee = s.spawn(|| b.answer(&answer));
        let caller = a.call("2300", &offer);
        (caller, callee.join().expect("callee thread"))
    });
    assert_eq!(ok.status, 200);
    let call_id = ok.header("Call-ID").expect("Call-ID").to_owned();
    let answered = Instant::now();
    // Longer than the store thread's 5 s between marks: the answer is written at the first
    // mark, and the record ends at the last one (more than 2 s after the answer by then).
    std::thread::sleep(Duration::from_secs(7));
    switch.kill9();
    let talk_before_kill = answered.elapsed();
    switch.restart();

    let rows = cdrs(&switch);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(json_str(row, "call_id"), call_id);
    assert_eq!(json_str(row, "disposition"), "interrupted");
    assert_eq!(json_str(row, "callee"), "2300");
    let ms = |key: &str| {
        row[key]
            .as_i64()
            .unwrap_or_else(|| panic!("{key} in {row}"))
    };
    let talk = Duration::from_millis((ms("end_ms") - ms("answer_ms")) as u64);
    assert!(
        // (+200 ms: the switch saw the answer a moment before this test did)
        talk >= Duration::from_millis(1500)
            && talk <= talk_before_kill + Duration::from_millis(200),
        "talk time {talk:?} of a call killed after {talk_before_kill:?}"
    );
    assert!(
        switch.log_text().contains("recorded as interrupted"),
        "no log line for the interrupted call"
    );
    // Recorded once: a second restart adds nothing.
    switch.restart();
    assert_eq!(cdrs(&switch).len(), 1);
}
