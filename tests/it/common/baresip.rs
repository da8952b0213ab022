//! baresip 1.0, the real softphone of the interop tests: headless, one account, controlled
//! over `ctrl_tcp`, in the test's temp dir on 127.0.0.1, stopped by PID when its value drops.
//! A missing program fails the test with a clear message.
//!
//! Besides starting it: [`Baresip::registered`] and [`Baresip::start_registered`] (started and
//! registered, or the test fails with baresip's log), [`Baresip::command_data`] (a command's
//! answer as text) and [`Baresip::dial_established`] (a call placed and answered).

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{free_tcp_port, free_udp_port, free_udp_tcp_port, require_program, stop_child, Switch};

/// How long a baresip may take to register, or a call to be established.
const WAIT: Duration = Duration::from_secs(10);

/// The account line of extension `ext` registering at `switch` over UDP, with no media NAT
/// traversal and `params` (`;name=value…`) appended.
pub fn account(switch: &Switch, ext: &str, password: &str, params: &str) -> String {
    format!(
        "<sip:{ext}@{}>;auth_pass={password};regint=600;medianat={params}",
        switch.sip
    )
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

    /// A baresip for extension `ext` (config dir named after it) with the silent default audio
    /// and the [`account`] line with `params`, registered at `switch`.
    pub fn registered(switch: &Switch, ext: &str, password: &str, params: &str) -> Baresip {
        let account = account(switch, ext, password, params);
        Baresip::start_registered(switch.dir(), ext, &account, None)
    }

    /// Starts baresip like [`Baresip::start`], or [`Baresip::start_with`] when `audio` is given,
    /// and waits up to 10 s until the account is registered; panics with baresip's log when it
    /// is not.
    pub fn start_registered(
        work: &Path,
        name: &str,
        account: &str,
        audio: Option<&str>,
    ) -> Baresip {
        let phone = match audio {
            Some(audio) => Baresip::start_with(work, name, account, audio),
            None => Baresip::start(work, name, account),
        };
        if let Err(info) = phone.wait_registered(WAIT) {
            panic!(
                "baresip {name} did not register ({account}): {info}\n{}",
                phone.log_text()
            );
        }
        phone
    }

    /// The `data` text of a ctrl_tcp command's response ("" when there is none).
    pub fn command_data(&self, command: &str, params: &str) -> String {
        self.command(command, params)
            .and_then(|r| r.get("data").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default()
    }

    /// Does `listcalls` show an established call?
    pub fn has_established_call(&self) -> bool {
        self.command_data("listcalls", "")
            .to_ascii_uppercase()
            .contains("ESTABLISHED")
    }

    /// Dials `uri` and waits up to 10 s until `listcalls` shows the call established; panics
    /// with the dial's answer, the last `listcalls` and both phones' logs when it is not.
    pub fn dial_established(&self, uri: &str, callee: &Baresip) {
        let dialled = self.command_data("dial", uri);
        let deadline = Instant::now() + WAIT;
        loop {
            let calls = self.command_data("listcalls", "");
            if calls.to_ascii_uppercase().contains("ESTABLISHED") {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the call to {uri} was not established (dial: {dialled:?}, listcalls: \
                     {calls:?})\ncaller log:\n{}\ncallee log:\n{}",
                    self.log_text(),
                    callee.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
