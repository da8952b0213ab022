//! Calls through the switch for interop tests: SIPp callers (`tests/sipp/uac-*.xml`) and SIPp
//! callees (`tests/sipp/uas-*.xml`) on free loopback ports, and the call records read back with
//! `tambun cdr --json`.
//!
//! A callee registers before its SIPp starts: the harness binds the callee's port itself, sends
//! the REGISTER from it (the switch sends calls to a binding's source address), closes the
//! socket and starts SIPp on that port. Every SIPp is stopped by PID when its value drops.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::peers::{read_stat, run_sipp, sipp_scenario, SippRun};
use super::sip::{Conn, RegisterSpec, Ua, UdpClient};
use super::{free_udp_port, free_udp_tcp_port, json_str, require_program, stop_child, Switch};

/// How long one SIPp caller may take (a call is a few seconds at most).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// Registers `ext` with the contact `sip:EXT@127.0.0.1:PORT`, sent from that very port, so the
/// switch sends the extension's calls there. Returns the final status (`None`: the port was
/// taken).
pub fn register_from_port(switch: &Switch, ext: &str, password: &str, port: u16) -> Option<u16> {
    let sock = UdpSocket::bind(("127.0.0.1", port)).ok()?;
    let local = sock.local_addr().ok()?;
    let client = UdpClient {
        sock,
        server: switch.sip,
        local,
    };
    let mut ua = Ua::new(Conn::Udp(client), ext, password);
    let contact = format!("sip:{ext}@{local}");
    Some(ua.register(&RegisterSpec::one(&contact, 600)).status)
}

/// A SIPp running a UAS scenario in the background on one port.
pub struct SippUas {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl SippUas {
    /// Picks a free port, registers `ext` from it and starts SIPp there with `scenario`
    /// (a file in `tests/sipp/`) and `args` (e.g. `-m 1`, `-d 200`).
    pub fn callee(
        switch: &Switch,
        name: &str,
        ext: &str,
        password: &str,
        scenario: &str,
        args: &[&str],
    ) -> SippUas {
        for _attempt in 0..5 {
            let port = free_udp_tcp_port(&[]);
            match register_from_port(switch, ext, password, port) {
                Some(200) => {}
                Some(status) => panic!("callee {ext} could not register: {status}"),
                None => continue,
            }
            if let Some(uas) = SippUas::try_start(switch.dir(), name, port, scenario, args) {
                return uas;
            }
        }
        panic!("no SIPp callee {name} could start");
    }

    /// Starts SIPp on a free port without registering anything (e.g. the trunk).
    pub fn listen(work: &Path, name: &str, scenario: &str, args: &[&str]) -> SippUas {
        for _attempt in 0..5 {
            let port = free_udp_tcp_port(&[]);
            if let Some(uas) = SippUas::try_start(work, name, port, scenario, args) {
                return uas;
            }
        }
        panic!("no SIPp UAS {name} could start");
    }

    /// Starts SIPp on `port` (a carrier coming back where it was), retrying for a second.
    pub fn listen_at(work: &Path, name: &str, port: u16, scenario: &str, args: &[&str]) -> SippUas {
        for _attempt in 0..10 {
            if let Some(uas) = SippUas::try_start(work, name, port, scenario, args) {
                return uas;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("SIPp UAS {name} could not start on port {port}");
    }

    fn try_start(
        work: &Path,
        name: &str,
        port: u16,
        scenario: &str,
        args: &[&str],
    ) -> Option<SippUas> {
        require_program("sipp", "sip-tester");
        let dir = work.join(format!("sipp-uas-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create sipp dir");
        let media_port = free_udp_port(&[2]);
        let screen = fs::File::create(dir.join("screen.log")).expect("create sipp log");
        let child = Command::new("sipp")
            .current_dir(&dir)
            .arg("-sf")
            .arg(sipp_scenario(scenario))
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-nostdin", "-trace_stat", "-stf", "stat.csv", "-fd", "1"])
            .args(["-trace_err", "-error_file", "err.log"])
            .args(["-trace_msg", "-message_file", "messages.log"])
            .args(["-timeout", "30s"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(screen.try_clone().expect("dup log")))
            .stderr(Stdio::from(screen))
            .spawn()
            .expect("start sipp");
        let mut uas = SippUas {
            child: Some(child),
            port,
            dir,
        };
        // ready once SIPp holds the port
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = uas.child.as_mut().map(|c| c.try_wait()) {
                return None;
            }
            if UdpSocket::bind(("127.0.0.1", port)).is_err() {
                return Some(uas);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Waits for SIPp to finish its calls (`-m`), at most `within`, then stops it.
    pub fn finish(&mut self, within: Duration) -> SippRun {
        let mut status = None;
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + within;
            while Instant::now() < deadline {
                if let Ok(Some(s)) = child.try_wait() {
                    status = Some(s);
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if status.is_none() {
                stop_child(&mut child, Duration::from_secs(3));
            }
        }
        SippRun {
            status,
            stats: read_stat(&self.dir.join("stat.csv")),
            dir: self.dir.clone(),
        }
    }

    /// The messages SIPp received so far, from its message log.
    pub fn received(&self) -> Vec<String> {
        received_messages(&self.dir.join("messages.log"))
    }

    /// The requests SIPp received with `method`, as text.
    pub fn requests(&self, method: &str) -> Vec<String> {
        let start = format!("{method} ");
        self.received()
            .into_iter()
            .filter(|m| m.starts_with(&start))
            .collect()
    }
}

impl Drop for SippUas {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(3));
        }
    }
}

/// Splits a SIPp `-trace_msg` log into the messages it received (sent ones are left out).
pub fn received_messages(log: &Path) -> Vec<String> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with("----------------------------------------------- ") {
            if let Some(msg) = current.take() {
                out.push(msg.trim().to_owned());
            }
            continue;
        }
        if line.contains("message received [") {
            current = Some(String::new());
            continue;
        }
        if line.contains("message sent (") || line.contains("message sent [") {
            if let Some(msg) = current.take() {
                out.push(msg.trim().to_owned());
            }
            continue;
        }
        if let Some(msg) = current.as_mut() {
            msg.push_str(line);
            msg.push('\n');
        }
    }
    if let Some(msg) = current.take() {
        out.push(msg.trim().to_owned());
    }
    out.into_iter().filter(|m| !m.is_empty()).collect()
}

/// The first value of header `name` in a message as text (case-insensitive).
pub fn header_of(message: &str, name: &str) -> Option<String> {
    message.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// One SIPp caller making one call: `caller` (with `password`) dials `dialled` through the
/// switch with `scenario`; `args` adds SIPp options (e.g. `-d 1000` for the hold time).
pub fn sipp_call(
    switch: &Switch,
    name: &str,
    caller: &str,
    password: &str,
    dialled: &str,
    scenario: &Path,
    args: &[&str],
) -> SippRun {
    let inf = switch.dir().join(format!("caller-{name}.csv"));
    fs::write(&inf, format!("SEQUENTIAL\n{caller};{password}\n")).expect("write injection file");
    let mut all = vec![
        "-s",
        dialled,
        "-key",
        "domain",
        "127.0.0.1",
        "-m",
        "1",
        "-recv_timeout",
        "10000",
        "-max_retrans",
        "5",
        "-trace_msg",
        "-message_file",
        "messages.log",
    ];
    all.extend_from_slice(args);
    run_sipp(
        switch.dir(),
        name,
        switch.sip,
        scenario,
        Some(&inf),
        &all,
        CALL_TIMEOUT,
    )
}

/// `tests/sipp/uac-refused.xml` with the expected final status filled in, written to the
/// test's dir.
pub fn refused_scenario(work: &Path, status: u16) -> PathBuf {
    let template =
        fs::read_to_string(sipp_scenario("uac-refused.xml")).expect("read uac-refused.xml");
    let path = work.join(format!("uac-refused-{status}.xml"));
    fs::write(&path, template.replace("@STATUS@", &status.to_string())).expect("write scenario");
    path
}

/// Asserts a SIPp run ended with exit 0 and exactly `calls` successful calls, none failed.
#[track_caller]
pub fn assert_sipp_ok(run: &SippRun, calls: u64, what: &str) {
    assert!(
        run.status.is_some_and(|s| s.success()) && run.successful() == calls && run.failed() == 0,
        "{what}: SIPp exit {:?}, {} successful, {} failed (want {calls} successful)\n{}",
        run.status,
        run.successful(),
        run.failed(),
        run.report()
    );
}

/// `tambun cdr --json`, parsed.
pub fn cdrs(switch: &Switch) -> Vec<Value> {
    let out = switch.cli_ok(&["cdr", "--json"]);
    match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(items)) => items,
        other => panic!("tambun cdr --json did not print a JSON array: {other:?}\n{out}"),
    }
}

/// Waits (up to 5 s: records are written in batches) until `tambun cdr --json` holds `n`
/// records; returns them (whatever they are after 5 s).
pub fn wait_cdrs(switch: &Switch, n: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    Switch::eventually(Duration::from_secs(5), || {
        rows = cdrs(switch);
        rows.len() >= n
    });
    rows
}

/// Waits for exactly one call record and returns it.
#[track_caller]
pub fn one_cdr(switch: &Switch) -> Value {
    let rows = wait_cdrs(switch, 1);
    // a second record would show up late too: give it a moment
    std::thread::sleep(Duration::from_millis(300));
    let rows = if rows.len() == 1 { cdrs(switch) } else { rows };
    assert_eq!(rows.len(), 1, "want exactly one call record: {rows:#?}");
    rows.into_iter().next().expect("one record")
}

/// Asserts string fields of a call record.
#[track_caller]
pub fn assert_cdr(row: &Value, fields: &[(&str, &str)]) {
    for (key, want) in fields {
        assert_eq!(
            json_str(row, key),
            *want,
            "call record field {key}: {row:#}"
        );
    }
}
