//! No relay port leaks: 1,000 SIPp calls with SDP and a short RTP burst each way (pcap play)
//! are set up and torn down at ~200 calls/s; afterwards the relay holds no port and no
//! session, every call record is answered, and the relay counted RTP during the run.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::calls::{assert_sipp_ok, wait_cdrs, SippUas};
use crate::common::media::{admin_get, media_switch_on, rtp_range, wait_relay_idle};
use crate::common::peers::{run_sipp, sipp_scenario};
use crate::common::{json_str, Switch};

const CALLS: usize = 1000;

/// What a sampler saw in `GET /api/calls` during the run.
#[derive(Default, Debug)]
struct Seen {
    samples: usize,
    max_live: usize,
    /// Calls seen with packets > 0 in each direction.
    caller_to_callee: usize,
    callee_to_caller: usize,
}

fn sample(switch: &Switch, seen: &mut Seen) {
    let Value::Array(calls) = admin_get(switch, "/api/calls") else {
        return;
    };
    seen.samples += 1;
    seen.max_live = seen.max_live.max(calls.len());
    for call in &calls {
        let Some(media) = call.get("media").and_then(Value::as_array) else {
            continue;
        };
        for m in media {
            if m.get("packets").and_then(Value::as_u64).unwrap_or(0) > 0 {
                match json_str(m, "direction").as_str() {
                    "caller->callee" => seen.caller_to_callee += 1,
                    "callee->caller" => seen.callee_to_caller += 1,
                    _ => {}
                }
            }
        }
    }
}

#[test]
fn a_thousand_calls_leave_no_relay_port_in_use() {
    let range = rtp_range(2000);
    let switch = media_switch_on(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
        &range,
    );
    let calls = CALLS.to_string();
    let mut callee = SippUas::callee(
        &switch,
        "callee",
        "2300",
        "rahasia2300",
        "media-uas-pcap.xml",
        &["-m", &calls],
    );
    let inf = switch.dir().join("caller.csv");
    fs::write(&inf, "SEQUENTIAL\n1000;rahasia1000\n").expect("write injection file");

    let started = Instant::now();
    let done = AtomicBool::new(false);
    let (caller, seen) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut seen = Seen::default();
            while !done.load(Ordering::Relaxed) {
                sample(&switch, &mut seen);
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
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
                "200",
                "-d",
                "300",
                "-recv_timeout",
                "10000",
                "-max_retrans",
                "5",
            ],
            Duration::from_secs(20),
        );
        done.store(true, Ordering::Relaxed);
        (caller, sampler.join().expect("sampler thread"))
    });
    let took = started.elapsed();
    assert_sipp_ok(&caller, CALLS as u64, "1,000 callers");
    assert_sipp_ok(
        &callee.finish(Duration::from_secs(5)),
        CALLS as u64,
        "callee",
    );
    eprintln!("{CALLS} calls in {took:?}; relay sampler: {seen:?}");
    assert!(
        seen.caller_to_callee > 0 && seen.callee_to_caller > 0,
        "the relay counted no RTP in some direction during the run: {seen:?}"
    );

    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(5)),
        (0, 0),
        "relay (ports_in_use, sessions) after {CALLS} calls ended"
    );
    let rows = wait_cdrs(&switch, CALLS);
    assert_eq!(rows.len(), CALLS, "call records");
    let not_answered: Vec<&Value> = rows
        .iter()
        .filter(|r| json_str(r, "disposition") != "answered")
        .collect();
    assert!(
        not_answered.is_empty(),
        "{} of {CALLS} records are not answered, e.g. {:#}",
        not_answered.len(),
        not_answered[0]
    );
}
