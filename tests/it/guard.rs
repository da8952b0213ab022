//! The guard over the wire (issue 5, item 2 and the 503 half of item 3): SIPVicious' `svwar`
//! finds no extension, `svcrack` is banned long before the password in its dictionary, bans
//! survive a restart and `tambun ban add|rm` act on the running switch, an allow-listed
//! network is never banned or limited, a saturated switch answers 503 with Retry-After, and a
//! flood from one address does not stop the calls of another.
//!
//! Attackers send from their own 127.x.y.z addresses; the harness's own address (127.0.0.1)
//! is allow-listed like an OPD subnet (`common::DEFAULT_TEST_GUARD`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::calls::SippUas;
use crate::common::peers::{run_sipp, sipp_scenario};
use crate::common::sip::{unique, Conn, Msg, RegisterSpec, TcpClient, Ua, UdpClient};
use crate::common::{json_str, require_program, Switch, SwitchOptions};

const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("1000", "setda", "rahasia1000"),
    ("1001", "setda", "rahasia1001"),
];

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A UDP client sending from `local_ip` (a free port on it).
fn client_from(local_ip: &str, server: SocketAddr) -> UdpClient {
    let sock = UdpSocket::bind((ip(local_ip), 0)).expect("bind a 127.x.y.z address");
    let local = sock.local_addr().unwrap();
    UdpClient {
        sock,
        server,
        local,
    }
}

/// A free UDP port on `local_ip` (released before returning, for a tool to bind).
fn free_port_on(local_ip: &str) -> u16 {
    UdpSocket::bind((ip(local_ip), 0))
        .and_then(|s| s.local_addr())
        .expect("bind a 127.x.y.z address")
        .port()
}

/// One OPTIONS from `client`; its status, or `None` when nothing came back within `wait`.
fn options_status(client: &UdpClient, wait: Duration) -> Option<u16> {
    client.send(&common::sip::options("UDP", client.local, client.server));
    client.recv_final(wait).map(|m| m.status)
}

/// `tambun ban list --json`, as (address, reason, expires_at) triples.
fn bans(switch: &Switch) -> Vec<(String, String, String)> {
    let out = switch.cli_ok(&["ban", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&out).expect("ban list --json is JSON");
    list.as_array()
        .expect("a JSON array")
        .iter()
        .map(|b| {
            (
                json_str(b, "address"),
                json_str(b, "reason"),
                json_str(b, "expires_at"),
            )
        })
        .collect()
}

fn ban_of(switch: &Switch, address: &str) -> Option<(String, String)> {
    bans(switch)
        .into_iter()
        .find(|b| b.0 == address)
        .map(|b| (b.1, b.2))
}

/// Runs a SIPVicious tool through `tests/data/sipvicious_as.py` (source address and, unless
/// `user_agent` is `None`, User-Agent chosen); returns stdout and stderr together.
fn sipvicious(
    switch: &Switch,
    tool: &str,
    from_ip: &str,
    user_agent: Option<&str>,
    args: &[&str],
) -> String {
    require_program(tool, "sipvicious");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sipvicious_as.py");
    let port = free_port_on(from_ip).to_string();
    let sip_port = switch.sip.port().to_string();
    let mut child = Command::new("python3")
        .arg(script)
        .args([tool, from_ip, user_agent.unwrap_or("-")])
        .args(["-P", &port, "-p", &sip_port])
        .args(args)
        .arg(switch.sip.ip().to_string())
        .env("HOME", switch.dir())
        .current_dir(switch.dir())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3");
    // SIPVicious stops by itself once nothing answers for --maximumtime; bound it anyway.
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Ok(None) = child.try_wait() {
        common::stop_child(&mut child, Duration::from_secs(2));
    }
    let out = child.wait_with_output().expect("collect sipvicious output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines of a SIPVicious result table that name one of our extensions.
fn reported_extensions(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|l| l.starts_with('|'))
        .filter(|l| EXTENSIONS.iter().any(|(n, _, _)| l.contains(n)))
        .map(str::to_owned)
        .collect()
}

/// A request to `user` with the status and header names of the answer (tags, nonces and
/// branches differ between any two answers, so only the shape is compared).
fn answer_shape(client: &UdpClient, method: &str, user: &str) -> (u16, Vec<String>) {
    let server = client.server;
    let local = client.local;
    let request = format!(
        "{method} sip:{user}@{server} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK{};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{server}>;tag={}\r\n\
         To: <sip:{user}@{server}>\r\n\
         Call-ID: {}\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:{user}@{local}>\r\n\
         User-Agent: Yealink SIP-T46S\r\n\
         Content-Length: 0\r\n\r\n",
        unique("b"),
        unique("t"),
        unique("shape")
    );
    let answer = client.request(&request).expect("an answer");
    let mut names = answer.header_names();
    names.sort();
    (answer.status, names)
}

#[test]
fn svwar_finds_no_extension() {
    let switch = Switch::start_with_extensions(EXTENSIONS);

    // The answers themselves: a real and an unknown extension look the same.
    let probe = client_from("127.0.1.1", switch.sip);
    for method in ["REGISTER", "INVITE", "OPTIONS"] {
        assert_eq!(
            answer_shape(&probe, method, "1000"),
            answer_shape(&probe, method, "1999"),
            "{method}: a real and an unknown extension are answered alike"
        );
    }

    // svwar as shipped (User-Agent friendly-scanner): no answer at all, and the source is banned.
    let out = sipvicious(
        &switch,
        "svwar",
        "127.0.1.2",
        None,
        &["-e", "990-1010", "--maximumtime=3"],
    );
    assert!(reported_extensions(&out).is_empty(), "svwar found:\n{out}");
    assert!(out.contains("found nothing"), "svwar output:\n{out}");
    let (reason, _) = ban_of(&switch, "127.0.1.2").expect("the scanner is banned");
    assert!(reason.contains("friendly-scanner"), "{reason}");

    // svwar with a phone's User-Agent, forced past its sanity check, with each method.
    for (i, method) in ["REGISTER", "INVITE", "OPTIONS"].iter().enumerate() {
        let from = format!("127.0.1.{}", 3 + i);
        let out = sipvicious(
            &switch,
            "svwar",
            &from,
            Some("Yealink SIP-T46S 66.85.0.5"),
            &["-e", "990-1010", "-m", method, "--force", "--maximumtime=3"],
        );
        assert!(
            reported_extensions(&out).is_empty(),
            "svwar -m {method} found:\n{out}"
        );
        assert!(
            out.contains("found nothing"),
            "svwar -m {method} output:\n{out}"
        );
        assert!(
            ban_of(&switch, &from).is_none(),
            "a scan this slow is not a flood"
        );
    }
}

/// 300 passwords, the real one on line 200.
fn dictionary(dir: &Path, password: &str) -> PathBuf {
    let mut words: Vec<String> = (0..300).map(|i| format!("guess{i:03}")).collect();
    words[199] = password.to_owned();
    let path = dir.join("dictionary.txt");
    std::fs::write(&path, words.join("\n") + "\n").unwrap();
    path
}

fn auth_failure_lines(switch: &Switch, from: &str) -> usize {
    let needle = format!("auth failure from {from} for extension '1000' method=REGISTER");
    switch
        .log_text()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

#[test]
fn svcrack_is_banned_before_the_password() {
    let mut switch = Switch::start_with_extensions(EXTENSIONS);
    let dict = dictionary(switch.dir(), "rahasia1000");
    let dict = dict.to_str().unwrap();
    let phone_ua = Some("Yealink SIP-T46S 66.85.0.5");

    // Control: from the allow-listed address svcrack does find the password, so the
    // dictionary and the tool work and the ban below is what stops them.
    let out = sipvicious(
        &switch,
        "svcrack",
        "127.0.0.1",
        phone_ua,
        &["-u", "1000", "-d", dict, "--maximumtime=3"],
    );
    assert!(
        out.contains("rahasia1000"),
        "control run did not crack:\n{out}"
    );

    // With a phone's User-Agent the failed-auth limit bans it: 10 failures, then silence.
    let out = sipvicious(
        &switch,
        "svcrack",
        "127.0.2.1",
        phone_ua,
        &["-u", "1000", "-d", dict, "--maximumtime=3"],
    );
    assert!(!out.contains("rahasia1000"), "svcrack cracked it:\n{out}");
    let (reason, expires) = ban_of(&switch, "127.0.2.1").expect("svcrack banned");
    assert_eq!(reason, "auth-failures");
    assert!(!expires.is_empty(), "a switch ban expires");
    assert_eq!(
        auth_failure_lines(&switch, "127.0.2.1"),
        10,
        "ten failures logged, the rest never reached the registrar"
    );

    // As shipped (scanner User-Agent): dropped and banned before any password is tried.
    let out = sipvicious(
        &switch,
        "svcrack",
        "127.0.2.2",
        None,
        &["-u", "1000", "-d", dict, "--maximumtime=3"],
    );
    assert!(!out.contains("rahasia1000"), "svcrack cracked it:\n{out}");
    let (reason, _) = ban_of(&switch, "127.0.2.2").expect("scanner banned");
    assert!(reason.contains("friendly-scanner"), "{reason}");
    assert_eq!(auth_failure_lines(&switch, "127.0.2.2"), 0);

    // The table shows both bans.
    let table = switch.cli_ok(&["ban", "list"]);
    assert!(
        table.contains("127.0.2.1") && table.contains("auth-failures"),
        "{table}"
    );
    switch.assert_alive();
}

/// Sends wrong-password REGISTERs for `user` from `client`, each with a fresh nonce count of
/// one valid challenge; returns how many were answered before silence.
fn brute_force(client: UdpClient, user: &str, tries: usize) -> usize {
    let mut ua = Ua::new(Conn::Udp(client), user, "wrong-password");
    ua.user_agent = "Yealink SIP-T46S".into();
    let spec = RegisterSpec::one(&ua.contact_uri(""), 600);
    let first = ua.register_plain(&spec);
    assert_eq!(first.status, 401);
    let challenge = ua.last_challenge.clone().expect("a challenge");
    let Conn::Udp(client) = &ua.conn else {
        unreachable!()
    };
    let client = UdpClient {
        sock: client.sock.try_clone().unwrap(),
        server: client.server,
        local: client.local,
    };
    let uri = ua.request_uri();
    let mut answered = 0;
    for nc in 1..=tries {
        let auth = challenge.authorization(user, "wrong-password", "REGISTER", &uri, nc as u32);
        let request = ua.render(&spec, Some(&auth));
        client.send(&request);
        match client.recv_final(Duration::from_millis(1500)) {
            Some(Msg { status: 401, .. }) => answered += 1,
            Some(other) => panic!("unexpected {}", other.status),
            None => break,
        }
    }
    answered
}

#[test]
fn bans_survive_restart_and_follow_the_cli() {
    let mut switch = Switch::start_with_extensions(EXTENSIONS);
    let attacker = "127.0.3.1";

    // Unknown extensions count like wrong passwords: 5 + 5 failures ban.
    let answered = brute_force(client_from(attacker, switch.sip), "1999", 5);
    assert_eq!(answered, 5);
    let answered = brute_force(client_from(attacker, switch.sip), "1000", 20);
    assert_eq!(
        answered, 5,
        "the 10th failure in a minute is the last one answered"
    );
    let probe = client_from(attacker, switch.sip);
    assert_eq!(options_status(&probe, Duration::from_secs(1)), None);
    let (reason, expires) = ban_of(&switch, attacker).expect("banned");
    assert_eq!(reason, "auth-failures");
    let expires: i64 = expires.parse().expect("an expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (now + 590..=now + 601).contains(&expires),
        "10 minutes: {expires} vs now {now}"
    );
    // The fail2ban line.
    let log = switch.log_text();
    let line = log
        .lines()
        .find(|l| {
            l.contains(&format!(
                "auth failure from {attacker} for extension '1999'"
            ))
        })
        .unwrap_or_else(|| panic!("no auth failure line:\n{log}"));
    assert!(line.contains("method=REGISTER"), "{line}");
    // Log lines to a file are plain text (the fail2ban filter's regex reads them as such).
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escape codes in a log that is not a terminal:\n{line:?}"
    );
    let failregex = regex::Regex::new(
        r"tambun::auth: auth failure from (\S+) for extension '[^']*' method=[A-Z]+$",
    )
    .unwrap();
    let host = failregex.captures(line).map(|c| c[1].to_string());
    assert_eq!(host.as_deref(), Some(attacker), "{line}");

    // A restart keeps the ban.
    switch.restart();
    let probe = client_from(attacker, switch.sip);
    assert_eq!(
        options_status(&probe, Duration::from_secs(1)),
        None,
        "still banned after restart"
    );
    let other = client_from("127.0.3.2", switch.sip);
    assert_eq!(options_status(&other, Duration::from_secs(2)), Some(200));

    // `ban rm` lifts it on the running switch.
    let out = switch.cli_ok(&["ban", "rm", attacker]);
    assert!(out.contains(attacker), "{out}");
    assert!(
        Switch::eventually(Duration::from_secs(3), || options_status(
            &probe,
            Duration::from_millis(300)
        ) == Some(200)),
        "ban rm did not reach the running switch"
    );

    // `ban add` bans on the running switch, until removed.
    switch.cli_ok(&[
        "ban",
        "add",
        "127.0.3.2",
        "--reason",
        "seen on the firewall",
    ]);
    assert!(
        Switch::eventually(Duration::from_secs(3), || options_status(
            &other,
            Duration::from_millis(300)
        )
        .is_none()),
        "ban add did not reach the running switch"
    );
    let (reason, expires) = ban_of(&switch, "127.0.3.2").unwrap();
    assert_eq!(
        (reason.as_str(), expires.as_str()),
        ("seen on the firewall", "")
    );
    switch.cli_ok(&["ban", "add", "127.0.3.3", "--for", "1h"]);
    let (_, expires) = ban_of(&switch, "127.0.3.3").unwrap();
    assert!(!expires.is_empty());
    // An IPv6 ban is of the address's /64, listed and lifted as such.
    let out = switch.cli_ok(&["ban", "add", "2001:db8:5:6::7"]);
    assert!(out.contains("banned 2001:db8:5:6::/64"), "{out}");
    let table = switch.cli_ok(&["ban", "list"]);
    assert!(table.contains("2001:db8:5:6::/64"), "{table}");
    let out = switch.cli_ok(&["ban", "rm", "2001:db8:5:6:ffff::1"]);
    assert!(out.contains("lifted the ban of 2001:db8:5:6::/64"), "{out}");
    assert!(!switch.cli_ok(&["ban", "list"]).contains("2001:db8:5:6::"));

    // Operator mistakes are sentences and a non-zero exit.
    let out = switch.cli(&["ban", "rm", "127.0.3.9"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.3.9 is not banned"), "{err}");
    let out = switch.cli(&["ban", "add", "127.0.3.9:5060"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an IP address"));
    let out = switch.cli(&["ban", "add", "127.0.3.9", "--for", "soon"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a duration"));
    switch.assert_alive();
}

#[test]
fn allow_list_is_never_banned_or_rate_limited() {
    let mut switch = Switch::create(SwitchOptions {
        guard: Some(
            "allow = [\"127.0.0.1\", \"127.0.4.0/24\"]\nrequest_burst = 50\nrequests_per_sec = 10\n"
                .into(),
        ),
        ..SwitchOptions::default()
    });
    for (n, o, p) in EXTENSIONS {
        switch.add_ext(n, o, p);
    }
    switch.launch();

    // 40 failures from the OPD's subnet: all answered, no ban.
    let answered = brute_force(client_from("127.0.4.7", switch.sip), "1000", 40);
    assert_eq!(answered, 40);
    assert!(bans(&switch).is_empty());

    // A burst of 200 OPTIONS: all answered from the allowed subnet; from elsewhere the burst
    // (50) and the trickle of the rate (10/s) are, the rest dropped.
    let burst = |from: &str| {
        let client = client_from(from, switch.sip);
        let mut answered = 0;
        for _round in 0..4 {
            for _ in 0..50 {
                client.send(&common::sip::options("UDP", client.local, switch.sip));
            }
            while client.recv(Duration::from_millis(300)).is_some() {
                answered += 1;
            }
        }
        answered
    };
    assert_eq!(burst("127.0.4.8"), 200, "allow-listed: nothing dropped");
    let limited = burst("127.0.5.1");
    assert!(
        (50..100).contains(&limited),
        "not allow-listed: {limited} of 200 answered"
    );
    switch.assert_alive();
}

#[test]
fn saturated_switch_answers_503_with_retry_after() {
    let mut switch = Switch::create(SwitchOptions {
        guard: Some(
            "allow = [\"127.0.0.1\"]\nmax_transactions = 20\nretry_after_secs = 7\n".into(),
        ),
        ..SwitchOptions::default()
    });
    for (n, o, p) in EXTENSIONS {
        switch.add_ext(n, o, p);
    }
    switch.launch();
    // Each authenticated REGISTER leaves a server transaction (Timer J, 32 s); soon the
    // switch holds max_transactions and refuses new registrations.
    let mut registered = 0;
    let refused = (0..30).find_map(|_| {
        let mut ua = Ua::new(Conn::udp(switch.sip), "1000", "rahasia1000");
        let answer = ua.register_self(600);
        match answer.status {
            200 => {
                registered += 1;
                None
            }
            _ => Some(answer),
        }
    });
    let refused = refused.expect("30 registrations and never saturated");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("Retry-After"), Some("7"));
    assert!(
        registered <= 20,
        "{registered} registrations before saturation"
    );
    // Now a new REGISTER and a new INVITE are refused with 503 and Retry-After …
    let probe = client_from("127.0.0.1", switch.sip);
    for method in ["REGISTER", "INVITE"] {
        let server = switch.sip;
        let local = probe.local;
        let request = format!(
            "{method} sip:1000@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:1001@{server}>;tag={}\r\n\
             To: <sip:1000@{server}>\r\n\
             Call-ID: {}\r\n\
             CSeq: 1 {method}\r\n\
             Contact: <sip:1001@{local}>\r\n\
             Content-Length: 0\r\n\r\n",
            unique("b"),
            unique("t"),
            unique("busy")
        );
        let answer = probe.request(&request).expect("an answer");
        assert_eq!(answer.status, 503, "{method}");
        assert_eq!(answer.header("Retry-After"), Some("7"), "{method}");
    }
    // … while OPTIONS (and in-dialog requests) still flow.
    assert_eq!(options_status(&probe, Duration::from_secs(2)), Some(200));
    assert!(bans(&switch).is_empty(), "overload bans nobody");
}

/// Sends REGISTERs and INVITEs (alternating, each a new transaction) from `from` to `server`
/// at about `rate` per second until `stop`; returns how many it sent and for how long.
fn flood(from: &str, server: SocketAddr, rate: u32, stop: Arc<AtomicBool>) -> (u64, Duration) {
    let client = client_from(from, server);
    let local = client.local;
    let start = Instant::now();
    let mut sent = 0u64;
    let batch = (rate / 100).max(1);
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..batch {
            let method = if sent.is_multiple_of(2) {
                "REGISTER"
            } else {
                "INVITE"
            };
            let request = format!(
                "{method} sip:1000@{server} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bKfl{sent};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:1000@{server}>;tag=fl{sent}\r\n\
                 To: <sip:1000@{server}>\r\n\
                 Call-ID: flood{sent}@{local}\r\n\
                 CSeq: 1 {method}\r\n\
                 Contact: <sip:1000@{local}>\r\n\
                 User-Agent: Yealink SIP-T46S\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            let _ = client.sock.send_to(request.as_bytes(), server);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (sent, start.elapsed())
}

#[test]
fn flood_from_one_source_does_not_stop_calls_from_another() {
    let switch = Switch::start_with_extensions(EXTENSIONS);
    const CALLS: u64 = 200;
    let mut callee = SippUas::callee(
        &switch,
        "callee",
        "1001",
        "rahasia1001",
        "uas-answer.xml",
        &["-m", &CALLS.to_string()],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let flooder = {
        let stop = stop.clone();
        let server = switch.sip;
        std::thread::spawn(move || flood("127.0.6.1", server, 5_000, stop))
    };
    std::thread::sleep(Duration::from_millis(300));

    // The caller is not allow-listed either: it lives within the per-source rate.
    let inf = switch.dir().join("caller.csv");
    std::fs::write(&inf, "SEQUENTIAL\n1000;rahasia1000\n").unwrap();
    let started = Instant::now();
    let run = run_sipp(
        switch.dir(),
        "caller",
        switch.sip,
        &sipp_scenario("uac-call.xml"),
        Some(&inf),
        &[
            "-i",
            "127.0.6.2",
            "-mi",
            "127.0.6.2",
            "-s",
            "1001",
            "-key",
            "domain",
            "127.0.0.1",
            "-m",
            &CALLS.to_string(),
            "-r",
            "8",
            "-l",
            "20",
            "-d",
            "100",
            "-recv_timeout",
            "10000",
        ],
        Duration::from_secs(90),
    );
    let call_time = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (sent, flood_time) = flooder.join().unwrap();
    let flood_rate = sent as f64 / flood_time.as_secs_f64();
    // The caller sends 5 requests per call (INVITE, ACK of the 407, INVITE, ACK, BYE).
    let caller_rate = (CALLS * 5) as f64 / call_time.as_secs_f64();
    eprintln!(
        "flood: {sent} requests in {flood_time:?} ({flood_rate:.0}/s); caller {caller_rate:.0} \
         requests/s; calls {} of {CALLS}",
        run.successful()
    );
    assert!(
        flood_rate >= 10.0 * caller_rate,
        "the flood ({flood_rate:.0}/s) is not 10x the caller's rate ({caller_rate:.0}/s)"
    );
    assert!(
        run.successful() * 100 >= CALLS * 99,
        "only {} of {CALLS} calls completed during the flood\n{}",
        run.successful(),
        run.report()
    );
    let (reason, _) = ban_of(&switch, "127.0.6.1").expect("the flooder is banned");
    assert_eq!(reason, "flood");
    assert!(ban_of(&switch, "127.0.6.2").is_none(), "the caller is not");
    let answered = callee.finish(Duration::from_secs(10));
    assert!(
        answered.successful() >= run.successful(),
        "the callee saw {} calls\n{}",
        answered.successful(),
        answered.report()
    );
}

#[test]
fn a_banned_source_loses_its_tcp_connections() {
    let switch = Switch::start_with_extensions(EXTENSIONS);
    let scanner_ip = ip("127.0.7.31");
    // A scanner over TCP: no answer, the source is banned and the switch closes the
    // connection (a banned source holds no connection slot).
    let tcp = TcpClient::connect_from(scanner_ip, switch.sip).expect("connect over TCP");
    let probe = common::sip::options("TCP", tcp.local, switch.sip).replace(
        "Max-Forwards: 70\r\n",
        "Max-Forwards: 70\r\nUser-Agent: friendly-scanner\r\n",
    );
    assert!(tcp.send(probe.as_bytes()));
    assert!(
        tcp.closed_within(Duration::from_secs(3)),
        "the scanner's connection stayed open after its ban"
    );
    assert!(
        ban_of(&switch, "127.0.7.31").is_some(),
        "the scanner was not banned"
    );

    // A new connection from the banned address is closed at its first message, unanswered.
    let again = TcpClient::connect_from(scanner_ip, switch.sip).expect("connect over TCP");
    let plain = common::sip::options("TCP", again.local, switch.sip);
    assert!(again.send(plain.as_bytes()));
    assert!(
        again.closed_within(Duration::from_secs(3)),
        "a banned source's new connection stayed open"
    );

    // Another source on TCP is still served.
    let good = TcpClient::connect_from(ip("127.0.7.32"), switch.sip).expect("connect over TCP");
    assert!(good.send(common::sip::options("TCP", good.local, switch.sip).as_bytes()));
    let answer = good.recv_final(Duration::from_secs(3)).map(|m| m.status);
    assert_eq!(answer, Some(200), "a clean source over TCP");
}
