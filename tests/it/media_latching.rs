//! Symmetric latching through the running switch: phone A's SDP names port X, but A sends
//! (and listens) on port Y, like a phone behind NAT. B answers with its real port. After A's
//! first packet, B's packets reach Y; a third party sending to A's relay port is dropped
//! (never reaches B) and counted as `dropped_foreign`.

use std::time::Duration;

use crate::common;
use crate::common::calls::{assert_cdr, one_cdr};
use crate::common::media::{
    counter, drain, media_switch, rtp, rtp_socket, sdp, sdp_audio, send_and_collect,
    stream_counters, wait_relay_idle, Phone,
};

const PCMU: &[&str] = &["a=rtpmap:0 PCMU/8000", "a=ptime:20", "a=sendrecv"];

#[test]
fn nat_phone_gets_two_way_audio_and_a_third_party_is_dropped() {
    let (switch, range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let mut a = Phone::register(&switch, "1000", "rahasia1000");
    let mut b = Phone::register(&switch, "2300", "rahasia2300");
    let announced_x = rtp_socket(); // what A's SDP says
    let real_y = rtp_socket(); // where A really sends from
    let b_rtp = rtp_socket();
    let third = rtp_socket();

    let offer = sdp(announced_x.local_addr().unwrap(), 1, "0", PCMU);
    let answer = sdp(b_rtp.local_addr().unwrap(), 1, "0", PCMU);
    let caller = std::thread::scope(|s| {
        let callee = s.spawn(|| b.answer(&answer));
        let caller = a.call("2300", &offer);
        let (invite, _) = callee.join().expect("callee thread");
        (caller, invite)
    });
    let ((ok, mut dialog), invite) = caller;
    // where each phone must send: the relay, inside the switch's range
    let relay_for_a = sdp_audio(&ok.body).expect("SDP in the 200 A received");
    let relay_for_b = sdp_audio(&invite.body).expect("SDP in the INVITE B received");
    let (first, last) = common::media::range_bounds(&range);
    for (who, addr) in [("A", relay_for_a), ("B", relay_for_b)] {
        assert!(
            addr.ip().is_loopback() && (first..=last).contains(&addr.port()),
            "{who}'s SDP points at {addr}, not at the relay range {range}"
        );
    }
    assert_ne!(relay_for_a, relay_for_b, "each leg has its own relay port");

    // before A sent anything, B's audio goes where A's SDP said (X)
    let early = send_and_collect(
        &b_rtp,
        relay_for_b,
        &announced_x,
        |n| rtp(0, n, 0xb, 0xbb),
        1,
        3,
    );
    assert!(
        !early.is_empty(),
        "before latching, B's packets should go to the SDP address of A"
    );

    // A sends from Y: B receives it, from its own relay port
    let a_to_b = send_and_collect(
        &real_y,
        relay_for_a,
        &b_rtp,
        |n| rtp(0, n, 0xa, 0xaa),
        1,
        10,
    );
    assert!(
        a_to_b.len() >= 9,
        "A->B: B got {} of 10 packets sent from Y",
        a_to_b.len()
    );
    assert!(
        a_to_b
            .iter()
            .all(|(p, from)| p[12] == 0xaa && *from == relay_for_b),
        "A's packets reach B from B's relay port {relay_for_b}: {:?}",
        a_to_b.iter().map(|(_, f)| f).collect::<Vec<_>>()
    );
    // B answers: its packets now reach Y, the latched source, and no longer X
    drain(&announced_x, Duration::from_millis(50));
    let b_to_a = send_and_collect(
        &b_rtp,
        relay_for_b,
        &real_y,
        |n| rtp(0, n, 0xb, 0xbb),
        4,
        10,
    );
    assert!(
        b_to_a.len() >= 9,
        "B->A: A's real socket Y got {} of 10 packets after latching",
        b_to_a.len()
    );
    assert!(
        b_to_a
            .iter()
            .all(|(p, from)| p[12] == 0xbb && *from == relay_for_a),
        "B's packets reach A from A's relay port {relay_for_a}"
    );
    let at_x = drain(&announced_x, Duration::from_millis(100));
    assert!(
        at_x.is_empty(),
        "after latching, {} packets still went to the SDP address X",
        at_x.len()
    );

    let before = stream_counters(&switch, 0, "caller->callee");
    assert_eq!(
        before
            .as_ref()
            .and_then(|e| e.get("source"))
            .and_then(|s| s.as_str()),
        Some(real_y.local_addr().unwrap().to_string().as_str()),
        "the caller's stream is latched to Y: {before:?}"
    );
    // a third party sends to A's relay port: nothing reaches B, and it is counted
    let stolen = send_and_collect(
        &third,
        relay_for_a,
        &b_rtp,
        |n| rtp(0, n, 0xc, 0xcc),
        100,
        10,
    );
    assert!(
        stolen.is_empty(),
        "{} packets of a third party reached B through A's latched relay port",
        stolen.len()
    );
    let after = stream_counters(&switch, 0, "caller->callee");
    assert!(
        counter(&after, "dropped_foreign") >= counter(&before, "dropped_foreign") + 10,
        "dropped_foreign did not grow by the 10 foreign packets: before {before:?}, after {after:?}"
    );
    assert_eq!(
        counter(&after, "packets"),
        counter(&before, "packets"),
        "foreign packets were counted as forwarded: before {before:?}, after {after:?}"
    );
    // A still gets through after the attack
    let again = send_and_collect(
        &real_y,
        relay_for_a,
        &b_rtp,
        |n| rtp(0, n, 0xa, 0xaa),
        11,
        5,
    );
    assert!(again.len() >= 4, "A->B after the attack: {}", again.len());
    let drained_third = drain(&third, Duration::from_millis(50));
    assert!(
        drained_third.is_empty(),
        "the third party received {} packets",
        drained_third.len()
    );

    let bye = std::thread::scope(|s| {
        let callee = s.spawn(|| b.answer_in_dialog("BYE", None));
        let r = a.bye(&mut dialog);
        callee.join().expect("callee thread");
        r
    });
    assert_eq!(bye.status, 200, "BYE: {}", bye.text());
    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(3)),
        (0, 0),
        "relay ports left after the call"
    );
    let row = one_cdr(&switch);
    assert_cdr(&row, &[("disposition", "answered"), ("callee", "2300")]);
}
