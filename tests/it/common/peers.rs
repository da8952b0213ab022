//! SIPp, the third-party SIP peer of the interop tests (scenario + injection CSV; baresip is in
//! [`super::baresip`]). It runs on 127.0.0.1, in the test's temp dir, and is stopped by PID. A
//! missing program fails the test with a clear message.

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{free_udp_port, free_udp_tcp_port, require_program, stop_child};

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
    run_sipp_from(work, name, target, None, scenario, inf, args, timeout)
}

/// [`run_sipp`] from a given local port (a carrier calling from the address the switch
/// knows it by), or a free one.
#[allow(clippy::too_many_arguments)]
pub fn run_sipp_from(
    work: &Path,
    name: &str,
    target: SocketAddr,
    port: Option<u16>,
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
        let local_port = port.unwrap_or_else(|| free_udp_tcp_port(&[]));
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
