//! The media inactivity timeout: with `[media] inactivity_secs = 2`, an answered SIPp call
//! that never sends RTP is ended by the switch with a BYE to both sides within a few
//! seconds; the call record says `media-timeout` and the relay ports are freed. A call that
//! rings silently for longer than the inactivity time is still ended once it is answered and
//! stays silent (the silence clock restarts with the answer).

use std::time::{Duration, Instant};

use crate::common;
use crate::common::calls::{assert_cdr, assert_sipp_ok, header_of, one_cdr, sipp_call, SippUas};
use crate::common::media::{media_switch, relay_usage, wait_relay_idle};
use crate::common::peers::sipp_scenario;

/// A switch with 2 s inactivity; callee 2300 rings `ring_ms`, answers, and neither side
/// sends RTP. Returns the switch, the callee (still running) and how long the caller's call
/// lasted until the switch's BYE (the caller checked to have got it).
fn silent_call(ring_ms: u64) -> (common::Switch, SippUas, Duration) {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "[media]\ninactivity_secs = 2\n",
    );
    let ring = ring_ms.to_string();
    let callee = SippUas::callee(
        &switch,
        "callee",
        "2300",
        "rahasia2300",
        "uas-answer.xml",
        &["-m", "1", "-d", &ring],
    );
    let started = Instant::now();
    // the caller waits for the switch's BYE (at most 10 s: -recv_timeout)
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "rahasia1000",
        "2300",
        &sipp_scenario("media-uac-timeout.xml"),
        &[],
    );
    let took = started.elapsed();
    assert_sipp_ok(&caller, 1, "caller waiting for the switch's BYE");
    (switch, callee, took)
}

#[test]
fn a_call_without_rtp_is_ended_with_bye_both_ways() {
    let (switch, mut callee, took) = silent_call(100);
    assert!(
        took < Duration::from_secs(7),
        "the switch's BYE came {took:?} after the call started (inactivity 2 s)"
    );
    assert!(
        took > Duration::from_millis(1500),
        "the call ended after {took:?}, before the 2 s inactivity time"
    );
    assert_sipp_ok(
        &callee.finish(Duration::from_secs(5)),
        1,
        "callee waiting for the switch's BYE",
    );
    let byes = callee.requests("BYE");
    assert_eq!(byes.len(), 1, "BYEs at the callee: {byes:#?}");
    assert!(
        header_of(&byes[0], "Reason").is_some_and(|r| r.contains("media timeout")),
        "the callee's BYE gives no media-timeout reason:\n{}",
        byes[0]
    );

    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("disposition", "media-timeout"),
        ],
    );
    assert!(
        row["answered_at_ms"].as_i64().is_some() || row["duration_ms"].as_i64().is_some(),
        "the timed-out call was answered: {row:#}"
    );
    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(3)),
        (0, 0),
        "relay ports left after the media timeout"
    );
    // the switch is still fine
    assert_eq!(relay_usage(&switch), (0, 0));
}

#[test]
fn a_silent_call_after_a_long_silent_ring_is_still_ended() {
    // rings 4 s (twice the inactivity time) without early media, then answers
    let (switch, mut callee, took) = silent_call(4000);
    assert!(
        took > Duration::from_millis(5500),
        "the call ended {took:?} after it started: before 2 s of silence after the answer at 4 s"
    );
    assert!(
        took < Duration::from_secs(10),
        "the switch's BYE came {took:?} after the call started (answer at 4 s, inactivity 2 s)"
    );
    assert_sipp_ok(
        &callee.finish(Duration::from_secs(5)),
        1,
        "callee waiting for the switch's BYE",
    );
    let row = one_cdr(&switch);
    assert_cdr(&row, &[("disposition", "media-timeout")]);
    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(3)),
        (0, 0),
        "relay ports left after the media timeout"
    );
}
