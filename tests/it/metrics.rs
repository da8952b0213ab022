//! `GET /metrics` on the admin API: the document parses as Prometheus text format 0.0.4
//! (checked by a strict parser here: HELP/TYPE before the samples, families contiguous, label
//! escaping, numeric values), and the counters move with traffic: failed authentications,
//! registrations by OPD, calls by disposition, relay packets (total and per second) from SIPp
//! calls that play RTP through the relay.

use std::collections::{BTreeMap, HashSet};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::calls::{
    assert_sipp_ok, refused_scenario, register_from_port, sipp_call, wait_cdrs, SippUas,
};
use crate::common::media::{admin_get_text, media_switch, wait_relay_idle};
use crate::common::peers::{run_sipp, sipp_scenario};
use crate::common::{free_udp_port, Switch};

/// Samples by `name{labels}` (labels as written), after checking the whole format.
type Samples = BTreeMap<String, f64>;

fn scrape(switch: &Switch) -> (String, String) {
    let (head, body) = admin_get_text(switch, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "GET /metrics: {head}");
    (head, body)
}

/// A strict reader of the text exposition format.
fn parse(doc: &str) -> Samples {
    let name_re = regex::Regex::new(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
    let sample_re =
        regex::Regex::new(r#"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*",?)*\})? (\S+)$"#)
            .unwrap();
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut samples = Samples::new();
    assert!(doc.ends_with('\n'), "the document ends with a newline");
    for (i, line) in doc.lines().enumerate() {
        let at = i + 1;
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name) = (parts.next().unwrap(), parts.next().unwrap_or(""));
            assert!(name_re.is_match(name), "line {at}: bad name in {line:?}");
            match kw {
                "HELP" => assert!(helped.insert(name.to_owned()), "line {at}: HELP twice"),
                "TYPE" => {
                    let kind = parts.next().unwrap_or("");
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                        "line {at}: bad type {kind:?}"
                    );
                    assert!(
                        typed.insert(name.to_owned(), kind.to_owned()).is_none(),
                        "line {at}: TYPE twice for {name}"
                    );
                }
                _ => panic!("line {at}: unknown comment {line:?}"),
            }
            if let Some(prev) = current.replace(name.to_owned()) {
                if prev != name {
                    finished.insert(prev);
                }
            }
            continue;
        }
        assert!(!line.is_empty(), "line {at}: empty line");
        let caps = sample_re
            .captures(line)
            .unwrap_or_else(|| panic!("line {at}: not a sample: {line:?}"));
        let name = &caps[1];
        assert!(
            typed.contains_key(name),
            "line {at}: sample of {name} before its TYPE"
        );
        assert!(
            !finished.contains(name),
            "line {at}: samples of {name} are not together"
        );
        if current.as_deref() != Some(name) {
            if let Some(prev) = current.replace(name.to_owned()) {
                finished.insert(prev);
            }
        }
        let value: f64 = match &caps[3] {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("line {at}: bad value {v:?}")),
        };
        if typed[name] == "counter" {
            assert!(value >= 0.0, "line {at}: negative counter");
        }
        let key = format!("{name}{}", caps.get(2).map_or("", |m| m.as_str()));
        assert!(
            samples.insert(key.clone(), value).is_none(),
            "line {at}: {key} twice"
        );
    }
    samples
}

fn metrics(switch: &Switch) -> Samples {
    let (head, body) = scrape(switch);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "content type: {head}"
    );
    parse(&body)
}

fn value(m: &Samples, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("{key} missing from /metrics: {m:#?}"))
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let before = metrics(&switch);
    // Every OPD of the shipped plan has its line, even at zero.
    let opd_lines = before
        .keys()
        .filter(|k| k.starts_with("tambun_registered_extensions{"))
        .count();
    assert!(
        opd_lines >= 44,
        "one line per OPD (43) + other: {opd_lines}"
    );
    for key in [
        "tambun_registered_extensions{opd=\"setda\"}",
        "tambun_auth_failures_total",
        "tambun_calls_total{disposition=\"answered\"}",
        "tambun_calls_active{state=\"answered\"}",
        "tambun_relay_packets_forwarded_total",
        "tambun_relay_sessions",
    ] {
        assert_eq!(value(&before, key), 0.0, "{key} at the start");
    }
    assert!(value(&before, "process_start_time_seconds") > 1.7e9);

    // A TCP connection to the SIP port shows as open, then goes away when closed.
    let tcp = TcpStream::connect(switch.sip).expect("connect to the SIP TCP port");
    let deadline = Instant::now() + Duration::from_secs(3);
    let open = loop {
        let m = metrics(&switch);
        let open = value(&m, "tambun_connections_open{transport=\"tcp\"}");
        if open == 1.0 || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        value(&open, "tambun_connections_open{transport=\"tcp\"}"),
        1.0
    );
    assert_eq!(
        value(&open, "tambun_connections_accepted_total"),
        value(&before, "tambun_connections_accepted_total") + 1.0
    );
    assert_eq!(
        value(
            &open,
            "tambun_connections_refused_total{limit=\"per-source\"}"
        ),
        0.0
    );
    drop(tcp);

    // A scanner from outside the allow-list: dropped without an answer and banned.
    let scanner = std::net::UdpSocket::bind("127.0.0.9:0").expect("bind 127.0.0.9");
    let local = scanner.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:100@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-scan1\r\n\
         From: <sip:100@{local}>;tag=s1\r\nTo: <sip:100@127.0.0.1>\r\n\
         Call-ID: scan-1@metrics\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         User-Agent: friendly-scanner\r\nContent-Length: 0\r\n\r\n"
    );
    scanner.send_to(options.as_bytes(), switch.sip).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let m = loop {
        let m = metrics(&switch);
        if value(&m, "tambun_requests_dropped_total{reason=\"scanner\"}") >= 1.0
            || Instant::now() > deadline
        {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        value(&m, "tambun_requests_dropped_total{reason=\"scanner\"}"),
        1.0
    );
    assert_eq!(value(&m, "tambun_bans_active"), 1.0);
    assert_eq!(value(&m, "tambun_bans_added_total"), 1.0);

    // A wrong password and an unknown extension: two failures, answered alike.
    let wrong = register_from_port(&switch, "1000", "salah", free_udp_port(&[]));
    let unknown = register_from_port(&switch, "1999", "salah", free_udp_port(&[]));
    assert_eq!(
        wrong, unknown,
        "unknown extension answered like a wrong password"
    );
    let m = metrics(&switch);
    assert_eq!(value(&m, "tambun_auth_failures_total"), 2.0);

    // The callee registers (dinkes); 20 calls play RTP both ways through the relay.
    const CALLS: u64 = 20;
    let calls = CALLS.to_string();
    let mut callee = SippUas::callee(
        &switch,
        "callee",
        "2300",
        "rahasia2300",
        "media-uas-pcap.xml",
        &["-m", &calls],
    );
    let m = metrics(&switch);
    assert_eq!(
        value(&m, "tambun_registered_extensions{opd=\"dinkes\"}"),
        1.0
    );
    assert_eq!(
        value(&m, "tambun_registration_bindings{opd=\"dinkes\"}"),
        1.0
    );
    assert_eq!(
        value(&m, "tambun_registered_extensions{opd=\"setda\"}"),
        0.0
    );

    let inf = switch.dir().join("caller.csv");
    std::fs::write(&inf, "SEQUENTIAL\n1000;rahasia1000\n").expect("write injection file");
    let done = AtomicBool::new(false);
    let (caller, max_pps, max_active) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut pps, mut active) = (0f64, 0f64);
            let until = Instant::now() + Duration::from_secs(30);
            while !done.load(Ordering::Relaxed) && Instant::now() < until {
                let m = metrics(&switch);
                pps = pps.max(value(&m, "tambun_relay_packets_per_second"));
                active = active.max(value(&m, "tambun_calls_active{state=\"answered\"}"));
                std::thread::sleep(Duration::from_millis(150));
            }
            (pps, active)
        });
        let caller = run_sipp(
            switch.dir(),
            "caller",
            switch.sip,
            &sipp_scenario("media-uac-pcap.xml"),
            Some(&inf),
            &[
                "-s",
                "2300",
                "-key",
                "domain",
                "127.0.0.1",
                "-m",
                &calls,
                "-r",
                "8",
                "-d",
                "500",
                "-recv_timeout",
                "10000",
                "-max_retrans",
                "5",
            ],
            Duration::from_secs(30),
        );
        // One more sample period so the rate covers the last calls.
        std::thread::sleep(Duration::from_millis(300));
        done.store(true, Ordering::Relaxed);
        let (pps, active) = sampler.join().expect("sampler thread");
        (caller, pps, active)
    });
    assert_sipp_ok(&caller, CALLS, "callers");
    assert_sipp_ok(&callee.finish(Duration::from_secs(5)), CALLS, "callee");
    assert_eq!(wait_cdrs(&switch, CALLS as usize).len(), CALLS as usize);
    wait_relay_idle(&switch, Duration::from_secs(3));

    let after = metrics(&switch);
    assert_eq!(
        value(&after, "tambun_calls_total{disposition=\"answered\"}"),
        CALLS as f64
    );
    assert_eq!(
        value(&after, "tambun_calls_total{disposition=\"busy\"}"),
        0.0
    );
    assert!(max_active >= 1.0, "no answered call seen live");
    assert_eq!(
        value(&after, "tambun_calls_active{state=\"answered\"}"),
        0.0
    );
    // 10 packets each way per call (the pcap); allow a few lost on a busy machine.
    let forwarded = value(&after, "tambun_relay_packets_forwarded_total");
    assert!(
        forwarded >= (CALLS * 2 * 10) as f64 * 0.9,
        "relay forwarded {forwarded} packets for {CALLS} calls"
    );
    assert!(value(&after, "tambun_relay_bytes_forwarded_total") > forwarded);
    assert!(
        value(&after, "tambun_relay_packets_received_total") >= forwarded,
        "received ≥ forwarded"
    );
    assert!(max_pps > 0.0, "the packets/s gauge never moved");
    assert_eq!(value(&after, "tambun_relay_sessions"), 0.0);
    assert_eq!(value(&after, "tambun_relay_ports_in_use"), 0.0);
    assert!(value(&after, "tambun_sip_messages_received_total") > (CALLS * 5) as f64);
    // No new auth failures: the calls authenticated (their 407 challenges are not failures).
    assert_eq!(value(&after, "tambun_auth_failures_total"), 2.0);

    // An international call without the grant: refused by the toll guard and counted.
    let refused = sipp_call(
        &switch,
        "international",
        "1000",
        "rahasia1000",
        "900441234567",
        &refused_scenario(switch.dir(), 403),
        &[],
    );
    assert_sipp_ok(&refused, 1, "international call refused with 403");
    wait_cdrs(&switch, CALLS as usize + 1);
    let m = metrics(&switch);
    assert_eq!(
        value(
            &m,
            "tambun_trunk_blocked_total{rule=\"permission\",opd=\"setda\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&m, "tambun_calls_total{disposition=\"blocked\"}"),
        1.0
    );
    assert_eq!(value(&m, "tambun_trunk_calls_total"), 0.0);
}
