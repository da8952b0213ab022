//! Integration-test harness: starts the real `tambun` binary on loopback and talks to it only
//! through sockets and its CLI.
//!
//! - [`Switch`]: one `tambun serve` in its own temp dir (own DB, copy of the shipped dialplan),
//!   on free loopback ports (UDP+TCP SIP, admin HTTP), started and stopped by PID. Its stderr goes
//!   to a file that is printed when the test fails.
//! - [`sip`]: a tiny in-process SIP client over UDP and TCP (requests, responses, digest).
//! - [`peers`]: SIPp, started and stopped by PID.
//! - [`baresip`]: baresip, started and stopped by PID, registered and driven over `ctrl_tcp`.
//! - [`browser`]: headless Chromium on the softphone page, through the Node agent
//!   `tests/browser/agent.mjs`, both process groups stopped by PID.
//! - [`cli`]: the operator CLI on its own temp dir and database, with no switch.
//! - [`calls`]: SIPp callers and callees through the switch, and the call records.
//! - [`media`]: relay port ranges, relay counters, RTP sockets and an in-process phone.
//! - [`tls`]: a SIP-over-TLS client that records the certificate the switch presents.
//!
//! Tests run in parallel: nothing here uses a fixed port. Every process a test starts is owned by
//! a value whose `Drop` stops it.

pub mod baresip;
pub mod browser;
pub mod calls;
pub mod cli;
pub mod media;
pub mod peers;
pub mod sip;
pub mod tls;
pub mod ws;

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `tambun` binary cargo built for this test run.
pub const TAMBUN: &str = env!("CARGO_BIN_EXE_tambun");

/// The dialplan shipped in the repository (`dialplan/`).
pub fn shipped_dialplan() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplan")
}

/// A loopback UDP port whose TCP twin is free too, and every `port + extra` for `extra` in
/// `also_tcp` (e.g. baresip's TLS listener on port+1). The sockets are released before
/// returning, so a process started next can bind them; callers retry on the rare race.
pub fn free_udp_tcp_port(also_tcp: &[u16]) -> u16 {
    for _ in 0..200 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP 127.0.0.1:0");
        let port = udp.local_addr().expect("local addr").port();
        let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let extras: Option<Vec<TcpListener>> = also_tcp
            .iter()
            .map(|&d| {
                port.checked_add(d)
                    .and_then(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            })
            .collect();
        if extras.is_some() {
            drop((udp, tcp, extras));
            return port;
        }
    }
    panic!("no free loopback UDP+TCP port found");
}

/// A free loopback TCP port (for the admin API).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind TCP 127.0.0.1:0")
        .port()
}

/// A free loopback UDP port `p` with `p + d` also free for every `d` in `also`.
pub fn free_udp_port(also: &[u16]) -> u16 {
    for _ in 0..200 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind UDP 127.0.0.1:0");
        let port = udp.local_addr().expect("local addr").port();
        let extras: Option<Vec<UdpSocket>> = also
            .iter()
            .map(|&d| {
                port.checked_add(d)
                    .and_then(|p| UdpSocket::bind(("127.0.0.1", p)).ok())
            })
            .collect();
        if extras.is_some() {
            return port;
        }
    }
    panic!("no free loopback UDP port found");
}

/// Sends SIGTERM to `pid`, through the shell's `kill` builtin (the harness links no libc, and
/// minimal images lack `/bin/kill`).
pub fn sigterm(pid: u32) {
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Stops `child`: SIGTERM, then SIGKILL when it is still running after `grace`. Returns its
/// exit status when it exited on its own terms (not killed by us).
pub fn stop_child(child: &mut Child, grace: Duration) -> Option<std::process::ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        return Some(status);
    }
    sigterm(child.id());
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Options for [`Switch::start_with`].
#[derive(Default, Clone)]
pub struct SwitchOptions {
    /// `--domain NAME`.
    pub domain: Option<String>,
    /// Contents of a TOML file passed as `--config FILE`.
    pub config_toml: Option<String>,
    /// More arguments after `serve`.
    pub extra_args: Vec<String>,
    /// Also listen on `[::1]` (see [`Switch::sip6`]).
    pub ipv6: bool,
    /// Listen for SIP over TLS on a free loopback port (see [`Switch::tls`]); otherwise the
    /// switch runs with `--no-tls` (its default port 5061 would collide between tests).
    pub tls: bool,
    /// The body of the `[guard]` table. `None`: [`DEFAULT_TEST_GUARD`], which allow-lists the
    /// harness's own address (127.0.0.1, ::1) the way an operator allow-lists the OPDs'
    /// subnets, so tests that hammer the switch from there are not rate limited; attackers in
    /// the guard tests come from other 127.x.y.z addresses.
    pub guard: Option<String>,
    /// Start the web listener (HTTPS page + WSS, see [`Switch::web`]) and the plain WebSocket
    /// listener ([`Switch::ws`]) on free loopback ports; otherwise the switch runs with
    /// `--no-web` (its default port 8443 would collide between tests).
    pub websocket: bool,
}

/// The `[guard]` table of every test switch unless [`SwitchOptions::guard`] says otherwise.
pub const DEFAULT_TEST_GUARD: &str = "allow = [\"127.0.0.1\", \"::1\"]\n";

/// One `tambun serve` on loopback, in its own temp dir.
pub struct Switch {
    dir: tempfile::TempDir,
    pub db: PathBuf,
    pub dialplan: PathBuf,
    /// SIP address (UDP and TCP on the same port).
    pub sip: SocketAddr,
    /// Admin API address.
    pub admin: SocketAddr,
    /// The `[::1]` SIP address when [`SwitchOptions::ipv6`] is set.
    pub sip6: Option<SocketAddr>,
    /// The TLS SIP address when [`SwitchOptions::tls`] is set.
    pub tls: Option<SocketAddr>,
    /// The web listener (HTTPS, WSS at `/ws`) when [`SwitchOptions::websocket`] is set.
    pub web: Option<SocketAddr>,
    /// The plain WebSocket listener when [`SwitchOptions::websocket`] is set.
    pub ws: Option<SocketAddr>,
    opts: SwitchOptions,
    child: Option<Child>,
    /// stderr files of every start, in order.
    logs: Vec<PathBuf>,
}

impl Switch {
    /// Starts a switch with an empty DB and the shipped dialplan.
    pub fn start() -> Switch {
        Switch::start_with(SwitchOptions::default())
    }

    /// Starts a switch whose DB already holds `extensions` (number, OPD, password), added with
    /// the CLI before the switch starts.
    pub fn start_with_extensions(extensions: &[(&str, &str, &str)]) -> Switch {
        let mut switch = Switch::create(SwitchOptions::default());
        for (number, opd, password) in extensions {
            switch.add_ext(number, opd, password);
        }
        switch.launch();
        switch
    }

    pub fn start_with(opts: SwitchOptions) -> Switch {
        let mut switch = Switch::create(opts);
        switch.launch();
        switch
    }

    /// Prepares the temp dir (empty DB path, copy of the shipped dialplan) and picks ports,
    /// without starting anything: the CLI can fill the DB first. [`Switch::launch`] starts it.
    pub fn create(opts: SwitchOptions) -> Switch {
        let dir = tempfile::Builder::new()
            .prefix("tambun-itest.")
            .tempdir()
            .expect("create temp dir");
        let db = dir.path().join("tambun.db");
        let dialplan = dir.path().join("dialplan");
        copy_dir(&shipped_dialplan(), &dialplan);
        let mut switch = Switch {
            sip: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
            sip6: None,
            tls: None,
            web: None,
            ws: None,
            dir,
            db,
            dialplan,
            opts,
            child: None,
            logs: Vec::new(),
        };
        switch.pick_ports();
        switch
    }

    fn pick_ports(&mut self) {
        self.sip = SocketAddr::from(([127, 0, 0, 1], free_udp_tcp_port(&[])));
        self.admin = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        if self.opts.ipv6 {
            let udp = UdpSocket::bind("[::1]:0").expect("bind UDP [::1]:0 (no IPv6 loopback?)");
            self.sip6 = Some(udp.local_addr().expect("local addr"));
        }
        if self.opts.tls {
            self.tls = Some(SocketAddr::from(([127, 0, 0, 1], free_tcp_port())));
        }
        if self.opts.websocket {
            self.web = Some(SocketAddr::from(([127, 0, 0, 1], free_tcp_port())));
            self.ws = Some(SocketAddr::from(([127, 0, 0, 1], free_tcp_port())));
        }
    }

    /// Starts `tambun serve` (after [`Switch::create`]).
    pub fn launch(&mut self) {
        if self.spawn().is_err() {
            self.spawn_on_free_ports();
        }
    }

    /// Points the shipped plan's carrier `telkom` at `addr` (a SIPp carrier of the test),
    /// without OPTIONS pings (a SIPp UAS scenario fails on a message it does not expect).
    /// `extra` goes at the end of its `[[trunk]]` table (keys or a `[trunk.register]`
    /// sub-table). Before [`Switch::launch`].
    pub fn trunk_at(&self, addr: &str, extra: &str) {
        let province = self.dialplan.join("province.toml");
        let text = std::fs::read_to_string(&province).expect("read province.toml");
        let shipped = "target = \"127.0.0.1:5090\"";
        assert!(text.contains(shipped), "province.toml has no {shipped}");
        let ours = format!("target = \"{addr}\"");
        let text = text
            .replace(shipped, &ours)
            .replace("ping_secs = 30", "ping_secs = 0")
            .replacen("\n[outside]", &format!("\n{extra}\n[outside]"), 1);
        std::fs::write(&province, text).expect("write province.toml");
    }

    /// The test's temp dir (DB, dialplan, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// PID of the running `tambun serve`.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("switch is running").id()
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn_on_free_ports(&mut self) {
        let mut last_err = String::new();
        for _ in 0..5 {
            self.pick_ports();
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last_err = e,
            }
        }
        panic!(
            "tambun serve did not start: {last_err}\n{}",
            self.log_text()
        );
    }

    /// Starts `tambun serve` on the current ports; waits until it answers OPTIONS over UDP
    /// and accepts TCP connections on the SIP and admin ports.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self
            .dir
            .path()
            .join(format!("serve-{}.log", self.logs.len() + 1));
        let stderr = fs::File::create(&log).expect("create log file");
        self.logs.push(log);
        let mut cmd = Command::new(TAMBUN);
        cmd.current_dir(self.dir.path())
            .env(
                "RUST_LOG",
                std::env::var("TAMBUN_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // (no NO_COLOR: the switch must leave colours out by itself when stderr is a file)
            .env_remove("NO_COLOR")
            .arg("serve")
            .arg("--listen")
            .arg(self.sip.to_string())
            .arg("--db")
            .arg(&self.db)
            .arg("--dialplan")
            .arg(&self.dialplan)
            .arg("--admin")
            .arg(self.admin.to_string());
        if let Some(sip6) = self.sip6 {
            cmd.arg("--listen").arg(sip6.to_string());
        }
        match self.tls {
            Some(tls) => cmd.arg("--tls-listen").arg(tls.to_string()),
            None => cmd.arg("--no-tls"),
        };
        match (self.web, self.ws) {
            (Some(web), Some(ws)) => cmd
                .arg("--web-listen")
                .arg(web.to_string())
                .arg("--ws-listen")
                .arg(ws.to_string()),
            _ => cmd.arg("--no-web"),
        };
        if let Some(domain) = &self.opts.domain {
            cmd.arg("--domain").arg(domain);
        }
        // The `[guard]` table goes last, so it can follow whatever the test's TOML ends with.
        let toml = format!(
            "{}\n[guard]\n{}",
            self.opts.config_toml.as_deref().unwrap_or(""),
            self.opts.guard.as_deref().unwrap_or(DEFAULT_TEST_GUARD)
        );
        let path = self.dir.path().join("tambun.toml");
        fs::write(&path, toml).expect("write config");
        cmd.arg("--config").arg(path);
        cmd.args(&self.opts.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr));
        let child = cmd.spawn().map_err(|e| format!("spawn {TAMBUN}: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!("tambun serve exited early: {status}"));
            }
            if self.answers_options(Duration::from_millis(200))
                && TcpStream::connect_timeout(&self.sip, Duration::from_millis(200)).is_ok()
                && TcpStream::connect_timeout(&self.admin, Duration::from_millis(200)).is_ok()
                && [self.tls, self.web, self.ws]
                    .iter()
                    .flatten()
                    .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                if let Some(mut child) = self.child.take() {
                    stop_child(&mut child, Duration::from_secs(2));
                }
                return Err("no answer to OPTIONS within 15 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// One OPTIONS over UDP from a fresh socket; true when a 200 comes back within `wait`.
    pub fn answers_options(&self, wait: Duration) -> bool {
        let Ok(client) = sip::UdpClient::connect(self.sip) else {
            return false;
        };
        let request = sip::options(&client.transport_name(), client.local, self.sip);
        client.send(&request);
        matches!(client.recv_final(wait), Some(r) if r.status == 200)
    }

    /// Asserts the switch process is alive and answers OPTIONS over UDP and TCP with 200.
    pub fn assert_alive(&mut self) {
        assert!(self.is_running(), "tambun serve is not running any more");
        assert!(
            self.answers_options(Duration::from_secs(2)),
            "tambun serve does not answer OPTIONS over UDP"
        );
        let tcp = sip::TcpClient::connect(self.sip).expect("TCP connect to the switch");
        let request = sip::options("TCP", tcp.local, self.sip);
        tcp.send(request.as_bytes());
        let response = tcp.recv(Duration::from_secs(2));
        assert_eq!(
            response.map(|r| r.status),
            Some(200),
            "tambun serve does not answer OPTIONS over TCP"
        );
    }

    /// Gracefully stops the switch (SIGTERM); asserts it exits by itself within 10 s with
    /// success.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("switch is running");
        let status = stop_child(&mut child, Duration::from_secs(10));
        match status {
            Some(s) => assert!(s.success(), "tambun serve exited with {s} after SIGTERM"),
            None => panic!("tambun serve did not exit within 10 s of SIGTERM"),
        }
    }

    /// Kills the switch with SIGKILL (no chance to flush anything) and reaps it; asserts it was
    /// still running. [`Switch::restart`] starts it again.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("switch is running");
        assert!(
            matches!(child.try_wait(), Ok(None)),
            "tambun serve had exited before the kill"
        );
        child.kill().expect("SIGKILL tambun serve"); // std's kill is SIGKILL on Unix
        let status = child.wait().expect("reap tambun serve");
        assert!(!status.success(), "tambun serve survived SIGKILL: {status}");
    }

    /// Starts the switch again on the same DB, dialplan and ports (new ports if those are
    /// taken meanwhile).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        if self.spawn().is_err() {
            self.spawn_on_free_ports();
        }
    }

    /// `tambun` with the global options `--db`, `--dialplan` and `--admin` first.
    fn cli_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(TAMBUN);
        clear_tambun_env(&mut cmd);
        cmd.current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .arg("--db")
            .arg(&self.db)
            .arg("--dialplan")
            .arg(&self.dialplan)
            .arg("--admin")
            .arg(self.admin.to_string())
            .args(args);
        cmd
    }

    /// Runs `tambun` with the global options `--db` and `--dialplan` first.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = self.cli_command(args);
        cmd.stdin(Stdio::null());
        cmd.output().expect("run tambun CLI")
    }

    /// Runs the CLI with `input` on its standard input.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write as _;
        let mut cmd = self.cli_command(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run tambun CLI");
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input.as_bytes())
            .expect("write the CLI's stdin");
        child.wait_with_output().expect("run tambun CLI")
    }

    /// Runs the CLI and asserts it succeeded; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "tambun {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `tambun ext add NUMBER --opd OPD --password PASSWORD`.
    pub fn add_ext(&self, number: &str, opd: &str, password: &str) {
        self.cli_ok(&[
            "ext",
            "add",
            number,
            "--opd",
            opd,
            "--name",
            &format!("Test {number}"),
            "--password",
            password,
        ]);
    }

    /// `tambun regs --json`, parsed.
    pub fn regs(&self) -> Vec<Value> {
        let out = self.cli_ok(&["regs", "--json"]);
        match serde_json::from_str::<Value>(&out) {
            Ok(Value::Array(items)) => items,
            other => panic!("tambun regs --json did not print a JSON array: {other:?}\n{out}"),
        }
    }

    /// The `regs --json` entries of one extension.
    pub fn regs_of(&self, extension: &str) -> Vec<Value> {
        self.regs()
            .into_iter()
            .filter(|r| json_str(r, "extension") == extension)
            .collect()
    }

    /// Waits until `cond` holds (polling every 100 ms) or `within` passes; returns whether it
    /// held.
    pub fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if cond() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the switch wrote to stderr, every start in order.
    pub fn log_text(&self) -> String {
        let mut out = String::new();
        for (i, path) in self.logs.iter().enumerate() {
            out.push_str(&format!(
                "----- tambun serve stderr, start {} -----\n",
                i + 1
            ));
            out.push_str(&fs::read_to_string(path).unwrap_or_default());
        }
        out
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_secs(5));
        }
        if std::thread::panicking() {
            let text = self.log_text();
            // the last 200 lines are enough to see what happened
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(200)..];
            eprintln!("{}", tail.join("\n"));
        }
    }
}

/// Removes the `TAMBUN_*` variables the CLI reads, so the caller's environment cannot point a
/// test at another DB, config or switch.
fn clear_tambun_env(cmd: &mut Command) {
    for var in [
        "TAMBUN_DB",
        "TAMBUN_ADMIN",
        "TAMBUN_DIALPLAN",
        "TAMBUN_CONFIG",
    ] {
        cmd.env_remove(var);
    }
}

/// A string field of a JSON object, or "" (numbers are rendered).
pub fn json_str(value: &Value, key: &str) -> String {
    match value.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create dialplan dir");
    let entries = fs::read_dir(from).unwrap_or_else(|e| {
        panic!(
            "the shipped dialplan {} cannot be read ({e}); it is part of the repository",
            from.display()
        )
    });
    for entry in entries {
        let entry = entry.expect("read dialplan dir");
        let path = entry.path();
        if path.is_dir() {
            copy_dir(&path, &to.join(entry.file_name()));
        } else {
            fs::copy(&path, to.join(entry.file_name())).expect("copy dialplan file");
        }
    }
}

/// A proptest config of `cases` cases whose failures persist beside the test's source file
/// (`tests/it/NAME.proptest-regressions`). proptest's default would look for a `main.rs` above
/// the file and use `tests/proptest-regressions/NAME.txt` instead.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..proptest::test_runner::Config::with_cases(cases)
    }
}

/// Panics with a clear message when `program` is not on PATH.
pub fn require_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` is not installed; this test needs it (Debian package `{package}`). \
         Run scripts/test.sh, which installs it, or: apt-get install {package}"
    );
}
