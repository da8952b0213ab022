//! The operator web console (`/console` on the web listener) end to end: a switch with the
//! web listener, extensions of two OPDs, call records in its database (written through
//! `Store::insert_cdrs`, as `cli_calls` does), operators created with
//! `tambun operator add --password-stdin`, and headless Chromium driven by
//! `tests/browser/console.mjs`: admin and opd logins (with a call in progress on both
//! dashboards), the opd operator's scope (page and
//! server), a CSV import with one bad line, a call record found and exported, the usage
//! chart, a ban, and the lock-out after wrong passwords. Screenshots of each page go to the
//! test's output dir (`target/console-screenshots/`). Then the CLI must see what the
//! console did, and the running switch must have reloaded its extensions.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tambun::store::{CdrRecord, Disposition, Store};

use crate::common::media::{live_calls, sdp, Phone};
use crate::common::{require_program, Switch, SwitchOptions};

const ADMIN: (&str, &str) = ("admin", "kata-sandi-admin-1");
const OPD: (&str, &str, &str) = ("op.dinkes", "kata-sandi-dinkes-1", "dinkes");
const LOCK: (&str, &str) = ("op.kunci", "kata-sandi-kunci-1");

/// `tambun ARGS` with `input` on stdin (the global options first).
fn cli_with_stdin(switch: &Switch, args: &[&str], input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tambun"))
        .env_remove("TAMBUN_DB")
        .env_remove("TAMBUN_DIALPLAN")
        .env_remove("TAMBUN_ADMIN")
        .arg("--db")
        .arg(&switch.db)
        .arg("--dialplan")
        .arg(&switch.dialplan)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tambun");
    writeln!(child.stdin.take().expect("stdin"), "{input}").expect("write stdin");
    child.wait_with_output().expect("tambun")
}

/// `tambun operator add NAME --role ROLE [--opd CODE] --password-stdin`, the password on stdin.
fn add_operator(switch: &Switch, name: &str, role: &str, opd: Option<&str>, password: &str) {
    let mut args = vec!["operator", "add", name, "--role", role, "--password-stdin"];
    if let Some(opd) = opd {
        args.extend(["--opd", opd]);
    }
    let out = cli_with_stdin(switch, &args, password);
    assert!(
        out.status.success(),
        "tambun operator add {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn record(
    caller: &str,
    caller_opd: &str,
    callee: &str,
    callee_opd: &str,
    start_ms: i64,
) -> CdrRecord {
    CdrRecord {
        call_id: format!("{caller}-{start_ms}@console-test"),
        caller: caller.into(),
        dialled: callee.into(),
        callee: Some(callee.into()),
        caller_opd: Some(caller_opd.parse().unwrap()),
        callee_opd: Some(callee_opd.parse().unwrap()),
        route: format!("extension {callee}"),
        trunk: false,
        start_ms,
        answer_ms: Some(start_ms + 4_000),
        end_ms: start_ms + 4_000 + 150_000,
        disposition: Disposition::Answered,
        sip_status: 200,
        media: None,
    }
}

/// Where the screenshots are kept: `$CARGO_TARGET_DIR/console-screenshots` (or
/// `target/…`), so they outlive the test's temp dir.
fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("console-screenshots")
}

#[test]
fn console_pages_scope_import_and_lockout() {
    require_program("node", "nodejs");
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "this test needs Debian's chromium (apt-get install chromium)"
    );
    let mut switch = Switch::create(SwitchOptions {
        websocket: true,
        ..SwitchOptions::default()
    });
    switch.add_ext("1000", "setda", "rahasia1000");
    switch.add_ext("1001", "setda", "rahasia1001");
    switch.add_ext("2300", "dinkes", "rahasia2300");
    add_operator(&switch, ADMIN.0, "admin", None, ADMIN.1);
    add_operator(&switch, OPD.0, "opd", Some(OPD.2), OPD.1);
    add_operator(&switch, LOCK.0, "admin", None, LOCK.1);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    {
        let mut store = Store::open(&switch.db).unwrap();
        store
            .insert_cdrs(&[
                record("1000", "setda", "1001", "setda", now_ms - 3_600_000),
                record("1001", "setda", "2300", "dinkes", now_ms - 1_800_000),
                record("2300", "dinkes", "1000", "setda", now_ms - 600_000),
                // A mobile number through the trunk (the shipped province.toml's `08…`).
                CdrRecord {
                    dialled: "9081234567890".into(),
                    callee: Some("081234567890".into()),
                    callee_opd: None,
                    route: "trunk 081234567890".into(),
                    trunk: true,
                    // 230 s of talk: 4 billed minutes of setda's 5 (80 %, a warning).
                    end_ms: now_ms - 300_000 + 4_000 + 230_000,
                    ..record("1001", "setda", "x", "setda", now_ms - 300_000)
                },
            ])
            .unwrap();
    }
    let setda = switch.dialplan.join("setda.toml");
    let text = std::fs::read_to_string(&setda).unwrap();
    std::fs::write(&setda, format!("{text}\n[budget]\nminutes = 5\n")).unwrap();
    switch.launch();

    // A call in progress, setda 1000 → dinkes 2300, for both operators' dashboards.
    let mut a = Phone::register(&switch, "1000", "rahasia1000");
    let mut b = Phone::register(&switch, "2300", "rahasia2300");
    let rtp_a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let rtp_b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let offer = |s: &std::net::UdpSocket| {
        sdp(
            s.local_addr().unwrap(),
            1,
            "0",
            &["a=rtpmap:0 PCMU/8000", "a=sendrecv"],
        )
    };
    std::thread::scope(|sc| {
        let callee = sc.spawn(|| b.answer(&offer(&rtp_b)));
        a.call("2300", &offer(&rtp_a));
        callee.join().expect("callee thread");
    });
    assert_eq!(live_calls(&switch).len(), 1, "the call is not up");

    // Line 4 is bad: 1190 is inside setda's block but 2600 is outside dinkes' (2300-2499).
    let csv = switch.dir().join("import.csv");
    std::fs::write(
        &csv,
        "number,opd,name,password\n1100,setda,Impor Satu,rahasia1100\n1101,setda,Impor Dua,rahasia1101\n2600,dinkes,Salah,rahasia2600\n2301,dinkes,Impor Tiga,\n",
    )
    .unwrap();
    let out_dir = screenshot_dir();
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).unwrap();
    let base = format!("https://{}", switch.web.expect("web listener"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs");
    let log = switch.dir().join("console-browser.log");
    let mut child = Command::new("node")
        .arg(&script)
        .args(["--base", &base])
        .arg("--out")
        .arg(&out_dir)
        .args(["--admin", &format!("{}:{}", ADMIN.0, ADMIN.1)])
        .args(["--opd", &format!("{}:{}:{}", OPD.0, OPD.1, OPD.2)])
        .args(["--lock", &format!("{}:{}", LOCK.0, LOCK.1)])
        .arg("--csv")
        .arg(&csv)
        .args([
            "--bad-line",
            "4",
            "--find-ext",
            "2300",
            "--opd-records",
            "2",
        ])
        .args(["--deadline", "170"])
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::File::create(switch.dir().join("console-browser.err")).unwrap(),
        ))
        .spawn()
        .expect("start node tests/browser/console.mjs");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            // The script's own group (Chromium runs in another, which the script closes).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let err = std::fs::read_to_string(switch.dir().join("console-browser.err")).unwrap_or_default();
    println!("{text}\n{err}");
    assert!(
        status.is_some_and(|s| s.success()) && text.contains("RESULT PASS"),
        "the console scenarios failed:\n{text}\n{err}\nswitch log:\n{}",
        switch.log_text()
    );
    for name in [
        "console-login.png",
        "console-dashboard.png",
        "console-extensions.png",
        "console-cdr.png",
        "console-usage.png",
        "console-bans.png",
        "console-opd-extensions.png",
        "console-locked.png",
    ] {
        assert!(out_dir.join(name).exists(), "no screenshot {name}");
    }

    // The console's changes are the database's, as the CLI's are.
    let exts: Vec<Value> =
        serde_json::from_str(&switch.cli_ok(&["ext", "list", "--json"])).unwrap();
    let numbers: Vec<&str> = exts.iter().filter_map(|e| e["number"].as_str()).collect();
    for n in ["1100", "1101", "2301"] {
        assert!(numbers.contains(&n), "{n} was not imported: {numbers:?}");
    }
    assert!(!numbers.contains(&"2600"), "the bad line was imported");
    let renamed = exts.iter().find(|e| e["number"] == "1100").unwrap();
    assert_eq!(renamed["name"], "Nama Baru", "{renamed}");
    assert_eq!(renamed["enabled"], false, "{renamed}");
    let ops: Vec<Value> =
        serde_json::from_str(&switch.cli_ok(&["operator", "list", "--json"])).unwrap();
    let locked = ops
        .iter()
        .find(|o| o["name"] == LOCK.0)
        .expect("the locked operator");
    assert!(locked["locked_until"].is_i64(), "not locked: {locked}");
    let admin = ops.iter().find(|o| o["name"] == ADMIN.0).unwrap();
    assert!(admin["locked_until"].is_null());
    let bans = switch.cli_ok(&["ban", "list"]);
    assert!(
        bans.contains("192.0.2.77"),
        "the console's ban is not listed: {bans}"
    );
    // And the running switch picked them up (it polls the database's data_version).
    assert!(
        Switch::eventually(Duration::from_secs(10), || {
            let log = switch.log_text();
            log.contains("extension directory reloaded") && log.contains("ban list reloaded")
        }),
        "the switch did not reload after the console's changes:\n{}",
        switch.log_text()
    );
    switch.stop();
}

/// The operator commands' refusals are sentences with a non-zero exit, and nothing of a
/// password is ever shown.
#[test]
fn operator_cli_refusals() {
    let switch = Switch::create(SwitchOptions::default());
    let fails = |out: std::process::Output, says: &str| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "succeeded, expected: {says}");
        assert!(err.contains(says), "stderr {err:?} lacks {says:?}");
    };
    fails(
        cli_with_stdin(
            &switch,
            &[
                "operator",
                "add",
                "sari",
                "--role",
                "opd",
                "--password-stdin",
            ],
            "kata-sandi-123",
        ),
        "needs its OPD",
    );
    fails(
        cli_with_stdin(
            &switch,
            &[
                "operator",
                "add",
                "sari",
                "--role",
                "opd",
                "--opd",
                "nope",
                "--password-stdin",
            ],
            "kata-sandi-123",
        ),
        "unknown OPD",
    );
    fails(
        cli_with_stdin(
            &switch,
            &[
                "operator",
                "add",
                "sari",
                "--role",
                "admin",
                "--password-stdin",
            ],
            "pendek",
        ),
        "at least 10 characters",
    );
    // No terminal and no --password-stdin: no way to ask.
    fails(
        switch.cli(&["operator", "add", "sari", "--role", "admin"]),
        "not a terminal",
    );
    // A password on the command line is not an option at all.
    fails(
        switch.cli(&[
            "operator",
            "add",
            "sari",
            "--role",
            "admin",
            "--password",
            "kata-sandi-123",
        ]),
        "--password",
    );
    add_operator(&switch, "sari", "opd", Some("dinkes"), "kata-sandi-123");
    fails(
        cli_with_stdin(
            &switch,
            &[
                "operator",
                "add",
                "sari",
                "--role",
                "admin",
                "--password-stdin",
            ],
            "kata-sandi-456",
        ),
        "already exists",
    );
    fails(switch.cli(&["operator", "rm", "budi"]), "does not exist");
    fails(
        switch.cli(&["operator", "add", "Bad Name", "--role", "admin"]),
        "not an operator name",
    );
    let list = switch.cli_ok(&["operator", "list", "--json"]);
    assert!(
        list.contains("\"dinkes\"") && !list.contains("pbkdf2"),
        "{list}"
    );
    let out = cli_with_stdin(
        &switch,
        &["operator", "passwd", "sari", "--password-stdin"],
        "kata-sandi-789",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    switch.cli_ok(&["operator", "rm", "sari"]);
    assert!(switch
        .cli_ok(&["operator", "list"])
        .contains("no operators"));
}
