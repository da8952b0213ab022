//! Third-party SIP peers for interop tests: SIPp (scenario + injection CSV) and headless
//! baresip 1.0 (controlled over `ctrl_tcp`). Both run on 127.0.0.1, in the test's temp dir, and
//! are stopped by PID. A missing program fails the test with a clear message.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_tcp_port, free_udp_port, free_udp_tcp_port, require_program, stop_child};

/// The scenarios in `tests/sipp/`.
pub fn sipp_scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(name)
}

/// The outcome of one SIPp run.
pub struct SippRun {
    /// None when SIPp had to be stopped at the timeout.
    pub status: Option<ExitStatus>,
    pub dir: PathBuf,
    /// The last row of the `-trace_stat` CSV, by column name.
    pub stats: HashMap<String, String>,
}

impl SippRun {
    pub fn stat(&self, key: &str) -> u64 {
        self.stats
            .get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn successful(&self) -> u64 {
        self.stat("SuccessfulCall(C)")
    }

    pub fn failed(&self) -> u64 {
        self.stat("FailedCall(C)")
    }

    /// SIPp's screen output, error log and the first lines of its message trace, for
    /// assertion messages.
    pub fn report(&self) -> String {
        let mut out = String::new();
        for name in ["screen.log", "err.log"] {
            let text = fs::read_to_string(self.dir.join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(60).collect();
            out.push_str(&format!("----- sipp {name} (last lines) -----\n"));
            for line in tail.into_iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// Runs SIPp as a UAC against `target` with `scenario`, an injection file (`-inf`) and more
/// arguments; waits up to `timeout`. Work files go to a new dir under `work`.
pub fn run_sipp(
    work: &Path,
    name: &str,
    target: SocketAddr,
    scenario: &Path,
    inf: Option<&Path>,
    args: &[&str],
    timeout: Duration,
) -> SippRun {
    require_program("sipp", "sip-tester");
    let dir = work.join(format!("sipp-{name}"));
    fs::create_dir_all(&dir).expect("create sipp dir");
    let mut last = None;
    for _attempt in 0..3 {
        let local_port = free_udp_tcp_port(&[]);
        let media_port = free_udp_port(&[2]);
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&dir)
            .arg(target.to_string())
            .arg("-sf")
            .arg(scenario)
            .args(["-i", "127.0.0.1", "-p", &local_port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-nostdin", "-trace_stat", "-stf", "stat.csv", "-fd", "1"])
            .args(["-trace_err", "-error_file", "err.log"])
            .args(["-timeout", &format!("{}s", timeout.as_secs().max(5))])
            .args(args);
        if let Some(inf) = inf {
            cmd.arg("-inf").arg(inf);
        }
        let screen = fs::File::create(dir.join("screen.log")).expect("create sipp log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(screen.try_clone().expect("dup log")))
            .stderr(Stdio::from(screen));
        let _ = fs::remove_file(dir.join("stat.csv"));
        let mut child = cmd.spawn().expect("start sipp");
        let status = wait_or_stop(&mut child, timeout + Duration::from_secs(10));
        let run = SippRun {
            status,
            stats: read_stat(&dir.join("stat.csv")),
            dir: dir.clone(),
        };
        // a SIPp that could not bind its ports exits before making a call: try other ports
        let bind_failure = run.stat("TotalCallCreated") == 0
            && fs::read_to_string(dir.join("screen.log"))
                .unwrap_or_default()
                .contains("bind");
        if !bind_failure {
            return run;
        }
        last = Some(run);
    }
    last.expect("at least one attempt")
}

fn wait_or_stop(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_child(child, Duration::from_secs(3));
    None
}

pub fn read_stat(path: &Path) -> HashMap<String, String> {
    let text = fs::read_to_string(path).unwrap_or_default();
    let rows: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if rows.len() < 2 {
        return HashMap::new();
    }
    let head = rows[0].split(';');
    let last = rows[rows.len() - 1].split(';');
    head.zip(last)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A headless baresip 1.0 with one account, controlled over `ctrl_tcp`.
pub struct Baresip {
    child: Option<Child>,
    pub dir: PathBuf,
    pub sip_port: u16,
    pub ctrl: SocketAddr,
    log: PathBuf,
}

impl Baresip {
    /// Starts baresip with config dir `work/NAME` and one account line, e.g.
    /// `<sip:1000@127.0.0.1:5060;transport=tcp>;auth_pass=secret;regint=600`.
    pub fn start(work: &Path, name: &str, account: &str) -> Baresip {
        Baresip::start_with(
            work,
            name,
            account,
            "audio_player\t\taufile,/dev/null\naudio_source\t\taufile,/dev/null\n",
        )
    }

    /// Like [`Baresip::start`], with `audio` (config lines, e.g. `audio_source`, `module`)
    /// in place of the default silent audio lines.
    pub fn start_with(work: &Path, name: &str, account: &str, audio: &str) -> Baresip {
        require_program("baresip", "baresip-core");
        let dir = work.join(format!("baresip-{name}"));
        fs::create_dir_all(&dir).expect("create baresip dir");
        let mut last_log = String::new();
        for _attempt in 0..3 {
            // baresip listens on UDP+TCP sip_port and TLS on sip_port+1
            let sip_port = free_udp_tcp_port(&[1]);
            let ctrl_port = free_tcp_port();
            let rtp = free_udp_port(&[]);
            let rtp_lo = rtp.min(65000);
            let config = format!(
                "poll_method\t\tepoll\n\
                 sip_listen\t\t127.0.0.1:{sip_port}\n\
                 net_interface\t\t127.0.0.1\n\
                 call_local_timeout\t30\n\
                 call_max_calls\t\t4\n\
                 {audio}\
                 rtp_ports\t\t{rtp_lo}-{}\n\
                 module_path\t\t/usr/lib/baresip/modules\n\
                 module\t\t\tg711.so\n\
                 module_tmp\t\taccount.so\n\
                 module_app\t\tmenu.so\n\
                 module_app\t\tctrl_tcp.so\n\
                 ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}\n",
                rtp_lo + 9
            );
            fs::write(dir.join("config"), config).expect("write baresip config");
            fs::write(dir.join("accounts"), format!("{account}\n")).expect("write accounts");
            fs::write(dir.join("contacts"), "").expect("write contacts");
            let log = dir.join("baresip.log");
            let out = fs::File::create(&log).expect("create baresip log");
            let child = Command::new("baresip")
                .arg("-f")
                .arg(&dir)
                .current_dir(&dir)
                .env("HOME", &dir)
                .stdin(Stdio::null())
                .stdout(Stdio::from(out.try_clone().expect("dup log")))
                .stderr(Stdio::from(out))
                .spawn()
                .expect("start baresip");
            let mut baresip = Baresip {
                child: Some(child),
                dir: dir.clone(),
                sip_port,
                ctrl: SocketAddr::from(([127, 0, 0, 1], ctrl_port)),
                log,
            };
            if baresip.wait_ctrl(Duration::from_secs(8)) {
                return baresip;
            }
            last_log = baresip.log_text();
            baresip.stop();
        }
        panic!("baresip did not start (ctrl_tcp never answered):\n{last_log}");
    }

    fn wait_ctrl(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if TcpStream::connect_timeout(&self.ctrl, Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Sends one ctrl_tcp command (netstring JSON) and returns its response object.
    pub fn command(&self, command: &str, params: &str) -> Option<Value> {
        let mut stream = TcpStream::connect_timeout(&self.ctrl, Duration::from_secs(2)).ok()?;
        let token = super::sip::unique("tok");
        let body =
            serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        stream.write_all(frame.as_bytes()).ok()?;
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut buf: Vec<u8> = Vec::new();
        while Instant::now() < deadline {
            stream
                .set_read_timeout(Some(Duration::from_millis(100)))
                .ok()?;
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
            // netstrings: LEN ":" JSON ","
            while let Some(colon) = buf.iter().position(|&b| b == b':') {
                let len = std::str::from_utf8(&buf[..colon])
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok())?;
                if buf.len() < colon + 1 + len + 1 {
                    break;
                }
                let msg: Option<Value> =
                    serde_json::from_slice(&buf[colon + 1..colon + 1 + len]).ok();
                buf.drain(..colon + 1 + len + 1);
                if let Some(msg) = msg {
                    if msg.get("response").is_some()
                        && msg.get("token") == Some(&Value::from(token.clone()))
                    {
                        return Some(msg);
                    }
                }
            }
        }
        None
    }

    /// Polls `reginfo` until the account shows `OK` (registered) or `within` passes. Returns the
    /// last reginfo text as the error.
    pub fn wait_registered(&self, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(resp) = self.command("reginfo", "") {
                last = resp
                    .get("data")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if last.contains("OK") {
                    return Ok(last);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(last)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks baresip to quit (it unregisters), then stops it by PID.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.command("quit", "");
            let deadline = Instant::now() + Duration::from_secs(3);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stop_child(&mut child, Duration::from_secs(3));
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(3));
        }
        if std::thread::panicking() {
            eprintln!(
                "----- baresip log ({}) -----\n{}",
                self.dir.display(),
                self.log_text()
            );
        }
    }
}
