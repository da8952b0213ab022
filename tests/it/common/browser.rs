//! Headless Chromium on the switch's softphone page (`/phone`), driven through the Node agent
//! `tests/browser/agent.mjs`: one JSON request a line on its stdin, one reply a line on its
//! stdout (see the agent's header for the commands). [`BrowserAgent`] owns the agent and,
//! through it, one Chromium with any number of pages (each logged in as one extension).
//!
//! A missing `node`, `/usr/bin/chromium` or `web/node_modules` fails the test with a clear
//! message. The agent runs in its own process group and gives up by itself after a hard
//! deadline; Chromium runs in another group (Playwright starts it detached), whose leader's
//! PID the agent reports. On drop: `quit`, then SIGKILL to both groups, by PID, for whatever
//! is still running. Chromium's profile, the agent's log and the pages' console logs live in
//! the test's temp dir and are printed when the test fails.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{require_program, Switch};

/// The browser Playwright drives (Debian's package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the agent may live at most (it exits by itself then, closing Chromium).
const AGENT_DEADLINE_SECS: u64 = 120;

/// The agent script and the page's npm packages, in the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// The switch's page as the browser reaches it.
pub fn base_url(switch: &Switch) -> String {
    let web = switch
        .web
        .expect("the switch was started with SwitchOptions { websocket: true, .. }");
    format!("https://{web}")
}

/// Chromiums of parallel tests share the machine's two cores: an ordinary browser test holds
/// this for reading (they run side by side), one that runs several pages with cameras holds
/// it for writing ([`BrowserAgent::start_alone`]), so no other Chromium runs beside it.
static CHROMIUMS: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// The hold a browser test has on [`CHROMIUMS`].
#[allow(dead_code)] // held, never read
enum Hold {
    Shared(std::sync::RwLockReadGuard<'static, ()>),
    Alone(std::sync::RwLockWriteGuard<'static, ()>),
}

/// One Node agent with one Chromium.
pub struct BrowserAgent {
    _hold: Hold,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    replies: Receiver<Value>,
    next_id: u64,
    chromium_pid: Option<u32>,
    dir: PathBuf,
    log: PathBuf,
    page_logs: Vec<PathBuf>,
}

impl BrowserAgent {
    /// Starts the agent with its files (Chromium profile, logs) in `work/NAME`. Chromium itself
    /// starts with the first [`BrowserAgent::open`].
    pub fn start(work: &Path, name: &str) -> BrowserAgent {
        let hold = Hold::Shared(CHROMIUMS.read().unwrap_or_else(|e| e.into_inner()));
        BrowserAgent::start_holding(work, name, hold)
    }

    /// [`BrowserAgent::start`] for a heavy test (several pages with cameras): it waits until
    /// no other test's Chromium runs, and none starts until it is done.
    pub fn start_alone(work: &Path, name: &str) -> BrowserAgent {
        let hold = Hold::Alone(CHROMIUMS.write().unwrap_or_else(|e| e.into_inner()));
        BrowserAgent::start_holding(work, name, hold)
    }

    fn start_holding(work: &Path, name: &str, hold: Hold) -> BrowserAgent {
        require_program("node", "nodejs");
        assert!(
            Path::new(CHROMIUM).is_file(),
            "{CHROMIUM} is missing; the browser tests need it: apt-get install chromium"
        );
        let playwright = repo_path("web/node_modules/playwright-core");
        assert!(
            playwright.is_dir(),
            "{} is missing; the browser tests drive Chromium through it: npm ci --prefix web",
            playwright.display()
        );
        let dir = work.join(format!("browser-{name}"));
        fs::create_dir_all(&dir).expect("create browser dir");
        let log = dir.join("agent.log");
        let stderr = fs::File::create(&log).expect("create agent log");
        let mut child = Command::new("node")
            .arg(repo_path("tests/browser/agent.mjs"))
            .arg("--tmp")
            .arg(&dir)
            .arg("--deadline")
            .arg(AGENT_DEADLINE_SECS.to_string())
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            // its own group: a kill of the group takes whatever it started in it
            .process_group(0)
            .spawn()
            .expect("start node tests/browser/agent.mjs");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("agent stdout");
        let (tx, replies) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("browser agent printed a non-JSON line: {line}"),
                }
            }
        });
        BrowserAgent {
            _hold: hold,
            child: Some(child),
            stdin,
            replies,
            next_id: 1,
            chromium_pid: None,
            dir,
            log,
            page_logs: Vec::new(),
        }
    }

    /// Sends `cmd` with the fields of `args` (an object) and waits up to `wait` for its reply:
    /// the result, or the agent's error text.
    pub fn request(&mut self, cmd: &str, args: Value, wait: Duration) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut req = match args {
            Value::Object(map) => map,
            Value::Null => serde_json::Map::new(),
            other => panic!("agent arguments must be an object: {other}"),
        };
        req.insert("id".into(), id.into());
        req.insert("cmd".into(), cmd.into());
        let line = format!("{}\n", Value::Object(req));
        let stdin = self.stdin.as_mut().ok_or("the agent's stdin is closed")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("write to the agent: {e}"))?;
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| format!("no reply to {cmd} within {wait:?}"))?;
            match self.replies.recv_timeout(left) {
                Ok(reply) if reply.get("id") == Some(&Value::from(id)) => {
                    return if reply.get("ok") == Some(&Value::Bool(true)) {
                        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
                    } else {
                        Err(reply
                            .get("error")
                            .and_then(Value::as_str)
                            .unwrap_or("(no error text)")
                            .to_owned())
                    };
                }
                Ok(_) => continue, // a late reply to an earlier request that timed out
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("no reply to {cmd} within {wait:?}"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("the agent exited before answering {cmd}"))
                }
            }
        }
    }

    /// [`BrowserAgent::request`], failing the test (with the agent's and pages' logs) on an
    /// error.
    #[track_caller]
    pub fn must(&mut self, cmd: &str, args: Value, wait: Duration) -> Value {
        match self.request(cmd, args, wait) {
            Ok(v) => v,
            Err(e) => panic!("browser {cmd} failed: {e}\n{}", self.log_text()),
        }
    }

    /// Opens a page on the switch's `/phone` (Chromium starts on the first); its index.
    pub fn open(&mut self, switch: &Switch) -> u64 {
        let r = self.must(
            "open",
            json!({"base": base_url(switch)}),
            Duration::from_secs(40),
        );
        if let Some(pid) = r.get("chromiumPid").and_then(Value::as_u64) {
            self.chromium_pid = u32::try_from(pid).ok();
        }
        if let Some(log) = r.get("log").and_then(Value::as_str) {
            self.page_logs.push(PathBuf::from(log));
        }
        r.get("page")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("open returned no page: {r}"))
    }

    /// Logs `page` in; the agent's `{ok, reg, regCode, error, errorKey}`.
    pub fn login(&mut self, page: u64, ext: &str, password: &str) -> Value {
        self.must(
            "login",
            json!({"page": page, "ext": ext, "password": password}),
            Duration::from_secs(20),
        )
    }

    /// Logs `page` in and fails the test unless it registered.
    #[track_caller]
    pub fn login_ok(&mut self, page: u64, ext: &str, password: &str) {
        let r = self.login(page, ext, password);
        if r.get("ok") != Some(&Value::Bool(true)) {
            panic!("browser login {ext} failed: {r}\n{}", self.log_text());
        }
    }

    pub fn call(&mut self, page: u64, number: &str, video: bool) {
        self.must(
            "call",
            json!({"page": page, "number": number, "video": video}),
            Duration::from_secs(10),
        );
    }

    pub fn answer(&mut self, page: u64, video: bool) {
        self.must(
            "answer",
            json!({"page": page, "video": video, "timeout": 10000}),
            Duration::from_secs(15),
        );
    }

    /// Waits until the page's call status matches `regex` (JavaScript syntax).
    pub fn wait_status(
        &mut self,
        page: u64,
        regex: &str,
        within: Duration,
    ) -> Result<String, String> {
        let ms = within.as_millis() as u64;
        self.request(
            "waitStatus",
            json!({"page": page, "regex": regex, "timeout": ms}),
            within + Duration::from_secs(5),
        )
        .map(|v| v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the call is confirmed with a connected PeerConnection.
    pub fn wait_media(&mut self, page: u64) -> Value {
        self.must(
            "waitMedia",
            json!({"page": page, "timeout": 15000}),
            Duration::from_secs(20),
        )
    }

    /// The page's getStats() summary (`Value::Null` without a call). A Chromium with several
    /// camera pages has been seen to take 11 s for one call in a full parallel run.
    pub fn stats(&mut self, page: u64) -> Value {
        self.must("stats", json!({"page": page}), Duration::from_secs(30))
    }

    /// The PeerConnection's (local, remote) SDP.
    pub fn sdp(&mut self, page: u64) -> (String, String) {
        let r = self.must("sdp", json!({"page": page}), Duration::from_secs(10));
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        (s("local"), s("remote"))
    }

    /// Clicks Tahan and waits for "Ditahan".
    pub fn hold(&mut self, page: u64) -> String {
        let r = self.must("hold", json!({"page": page}), Duration::from_secs(15));
        r.as_str().unwrap_or_default().to_owned()
    }

    /// Clicks Lanjutkan and waits for "Terhubung".
    pub fn unhold(&mut self, page: u64) -> String {
        let r = self.must("unhold", json!({"page": page}), Duration::from_secs(15));
        r.as_str().unwrap_or_default().to_owned()
    }

    /// Clicks the video on/off button and waits until the page says it changed: result
    /// `{videoOn, renegotiated}` (re-INVITEs the page sent for video so far).
    pub fn video_toggle(&mut self, page: u64) -> Value {
        self.must(
            "videoToggle",
            json!({"page": page, "timeout": 8000}),
            Duration::from_secs(12),
        )
    }

    pub fn hangup(&mut self, page: u64) {
        self.hangup_within(page, Duration::from_secs(10));
    }

    /// [`BrowserAgent::hangup`] for a loaded browser (several pages with cameras in one
    /// Chromium, beside a parallel test run), whose click may wait long for the page.
    pub fn hangup_within(&mut self, page: u64, wait: Duration) {
        self.must("hangup", json!({"page": page}), wait);
    }

    /// The page's `window.tambunPhone.state` (a JSON copy): `call.status`, `call.cause`,
    /// `call.held`, `call.sdp` …
    /// Clicks the element with `data-testid` `testid`.
    pub fn click(&mut self, page: u64, testid: &str) {
        self.must(
            "click",
            json!({ "page": page, "testid": testid }),
            Duration::from_secs(12),
        );
    }

    /// Waits until the element `testid` exists, and with `attr`, has `value` there.
    pub fn wait_for(
        &mut self,
        page: u64,
        testid: &str,
        attr: Option<(&str, &str)>,
    ) -> Result<(), String> {
        let mut args = json!({ "page": page, "testid": testid, "timeout": 10000 });
        if let Some((a, v)) = attr {
            args["attr"] = json!(a);
            args["value"] = json!(v);
        }
        self.request("waitFor", args, Duration::from_secs(14))
            .map(|_| ())
    }

    /// A full-page screenshot to `path`.
    pub fn screenshot(&mut self, page: u64, path: &Path) {
        let path = path.display().to_string();
        self.must(
            "screenshot",
            json!({ "page": page, "path": path }),
            Duration::from_secs(40),
        );
    }

    pub fn state(&mut self, page: u64) -> Value {
        self.must("state", json!({"page": page}), Duration::from_secs(10))
    }

    /// The visible error sentence of `page`, if any.
    pub fn error_text(&mut self, page: u64) -> Option<String> {
        self.must("errorText", json!({"page": page}), Duration::from_secs(10))
            .as_str()
            .map(str::to_owned)
    }

    /// The agent's log and every page's console log.
    pub fn log_text(&self) -> String {
        let mut out = format!(
            "----- browser agent log ({}) -----\n{}",
            self.dir.display(),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
        for (i, p) in self.page_logs.iter().enumerate() {
            out.push_str(&format!("----- page {i} console -----\n"));
            out.push_str(&fs::read_to_string(p).unwrap_or_default());
        }
        out
    }

    /// Asks the agent to quit (closing Chromium), waits up to 8 s, then kills by PID what is
    /// left: the agent's group and Chromium's group.
    pub fn quit(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if matches!(child.try_wait(), Ok(None)) {
            let _ = self.request("quit", Value::Null, Duration::from_secs(3));
        }
        self.stdin = None; // EOF: the agent closes Chromium and exits on its own too
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(child.try_wait(), Ok(None)) {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = self.chromium_pid.take() {
            // still our Chromium (not a recycled PID): kill its whole group
            let comm = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if comm.contains("chrom") {
                kill_group(pid);
            }
        }
    }
}

/// SIGKILL to the process group `pgid`, through the shell's `kill` (no libc in the harness).
fn kill_group(pgid: u32) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -KILL -- -{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for BrowserAgent {
    fn drop(&mut self) {
        self.quit();
        if std::thread::panicking() {
            eprintln!("{}", self.log_text());
        }
    }
}
