//! Hold, resume and a codec change by re-INVITE keep the media path through the relay: each
//! SDP the other phone receives points at the same relay address as before, every line but
//! `c=` and the `m=` port arrives byte for byte (direction attributes, codecs, fmtp), and RTP
//! flows both ways after resume and after the codec change.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::common;
use crate::common::calls::{assert_cdr, one_cdr};
use crate::common::media::{
    media_switch, range_bounds, rtp, rtp_socket, sdp, sdp_audio, sdp_invariant, send_and_collect,
    wait_relay_idle, Dialog, Phone,
};
use crate::common::sip::Msg;

const OFFER: &[&str] = &[
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
    "a=x-tambun-unknown:keep me",
];

fn attrs(direction: &'static str) -> Vec<&'static str> {
    let mut v = OFFER.to_vec();
    v.push(direction);
    v
}

/// A re-INVITE from A with `offer`; B answers with `answer`. Returns (what B received, what A
/// received in the 200).
fn reoffer(a: &mut Phone, b: &mut Phone, d: &mut Dialog, offer: &str, answer: &str) -> (Msg, Msg) {
    std::thread::scope(|s| {
        let callee = s.spawn(|| b.answer_in_dialog("INVITE", Some(answer)));
        let ok = a.reinvite(d, offer);
        let got = callee.join().expect("callee thread");
        assert_eq!(ok.status, 200, "re-INVITE: {}", ok.text());
        (got, ok)
    })
}

/// Asserts `received` is `sent` with only the address and the m= port changed, pointing at
/// `relay`.
#[track_caller]
fn assert_rewritten(what: &str, sent: &str, received: &Msg, relay: SocketAddr) {
    assert_eq!(
        sdp_audio(&received.body),
        Some(relay),
        "{what}: the SDP points elsewhere than the relay address {relay}:\n{}",
        String::from_utf8_lossy(&received.body)
    );
    assert_eq!(
        sdp_invariant(&received.body),
        sdp_invariant(sent.as_bytes()),
        "{what}: lines other than c= and the m= port changed on the way"
    );
}

/// Two-way RTP check with payload type `pt`; returns (A->B, B->A) packet counts of 10.
fn two_way(
    a_rtp: &UdpSocket,
    to_a_relay: SocketAddr,
    b_rtp: &UdpSocket,
    to_b_relay: SocketAddr,
    pt: u8,
    seq: u16,
) -> (usize, usize) {
    let ab = send_and_collect(a_rtp, to_a_relay, b_rtp, |n| rtp(pt, n, 0xa, 0xaa), seq, 10);
    let ba = send_and_collect(b_rtp, to_b_relay, a_rtp, |n| rtp(pt, n, 0xb, 0xbb), seq, 10);
    let ok = |v: &Vec<(Vec<u8>, SocketAddr)>| v.iter().filter(|(p, _)| p[1] & 0x7f == pt).count();
    (ok(&ab), ok(&ba))
}

#[test]
fn hold_resume_and_codec_change_keep_the_relay_path() {
    let (switch, range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let mut a = Phone::register(&switch, "1000", "rahasia1000");
    let mut b = Phone::register(&switch, "2300", "rahasia2300");
    let a_rtp = rtp_socket();
    let b_rtp = rtp_socket();
    let a_addr = a_rtp.local_addr().unwrap();
    let b_addr = b_rtp.local_addr().unwrap();

    let offer = sdp(a_addr, 1, "0 8 101", &attrs("a=sendrecv"));
    let answer = sdp(b_addr, 1, "0 101", &attrs("a=sendrecv"));
    let ((ok, mut dialog), invite) = std::thread::scope(|s| {
        let callee = s.spawn(|| b.answer(&answer));
        let caller = a.call("2300", &offer);
        let (invite, _) = callee.join().expect("callee thread");
        (caller, invite)
    });
    let relay_for_a = sdp_audio(&ok.body).expect("SDP in the 200");
    let relay_for_b = sdp_audio(&invite.body).expect("SDP in the INVITE");
    let (first, last) = range_bounds(&range);
    for (who, addr) in [("A", relay_for_a), ("B", relay_for_b)] {
        assert!(
            addr.ip().is_loopback() && (first..=last).contains(&addr.port()),
            "{who}'s SDP points at {addr}, not at the relay range {range}"
        );
    }
    assert_rewritten("initial INVITE", &offer, &invite, relay_for_b);
    assert_rewritten("initial 200", &answer, &ok, relay_for_a);
    let (ab, ba) = two_way(&a_rtp, relay_for_a, &b_rtp, relay_for_b, 0, 1);
    assert!(
        ab >= 9 && ba >= 9,
        "before hold: A->B {ab}/10, B->A {ba}/10"
    );

    // hold
    let hold = sdp(a_addr, 2, "0 8 101", &attrs("a=sendonly"));
    let held = sdp(b_addr, 2, "0 101", &attrs("a=recvonly"));
    let (got, ok) = reoffer(&mut a, &mut b, &mut dialog, &hold, &held);
    assert_rewritten("hold re-INVITE", &hold, &got, relay_for_b);
    assert_rewritten("hold 200", &held, &ok, relay_for_a);
    assert!(
        String::from_utf8_lossy(&got.body).contains("\r\na=sendonly\r\n"),
        "a=sendonly did not reach B"
    );
    // on hold A still sends (music on hold): it reaches B
    let moh = send_and_collect(
        &a_rtp,
        relay_for_a,
        &b_rtp,
        |n| rtp(0, n, 0xa, 0xaa),
        20,
        10,
    );
    assert!(moh.len() >= 9, "A->B during hold: {}/10", moh.len());

    // resume
    let resume = sdp(a_addr, 3, "0 8 101", &attrs("a=sendrecv"));
    let resumed = sdp(b_addr, 3, "0 101", &attrs("a=sendrecv"));
    let (got, ok) = reoffer(&mut a, &mut b, &mut dialog, &resume, &resumed);
    assert_rewritten("resume re-INVITE", &resume, &got, relay_for_b);
    assert_rewritten("resume 200", &resumed, &ok, relay_for_a);
    let (ab, ba) = two_way(&a_rtp, relay_for_a, &b_rtp, relay_for_b, 0, 40);
    assert!(
        ab >= 9 && ba >= 9,
        "after resume: A->B {ab}/10, B->A {ba}/10"
    );

    // codec change: PCMA only
    let pcma = &["a=rtpmap:8 PCMA/8000", "a=ptime:20", "a=sendrecv"];
    let change = sdp(a_addr, 4, "8", pcma);
    let changed = sdp(b_addr, 4, "8", pcma);
    let (got, ok) = reoffer(&mut a, &mut b, &mut dialog, &change, &changed);
    assert_rewritten("codec re-INVITE", &change, &got, relay_for_b);
    assert_rewritten("codec 200", &changed, &ok, relay_for_a);
    let (ab, ba) = two_way(&a_rtp, relay_for_a, &b_rtp, relay_for_b, 8, 60);
    assert!(
        ab >= 9 && ba >= 9,
        "after the codec change: A->B {ab}/10, B->A {ba}/10"
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
    assert_cdr(&one_cdr(&switch), &[("disposition", "answered")]);
}

/// An answered call between A (1000) and B (2300) with PCMU at `a_rtp` / `b_rtp`; returns
/// both dialogs and the relay addresses A and B must send to.
struct Call {
    a: Phone,
    b: Phone,
    a_dialog: Dialog,
    b_dialog: Dialog,
    relay_for_a: SocketAddr,
    relay_for_b: SocketAddr,
}

fn call(switch: &common::Switch, a_rtp: &UdpSocket, b_rtp: &UdpSocket) -> Call {
    let mut a = Phone::register(switch, "1000", "rahasia1000");
    let mut b = Phone::register(switch, "2300", "rahasia2300");
    let offer = sdp(a_rtp.local_addr().unwrap(), 1, "0", &attrs("a=sendrecv"));
    let answer = sdp(b_rtp.local_addr().unwrap(), 1, "0", &attrs("a=sendrecv"));
    let ((ok, a_dialog), (invite, b_dialog)) = std::thread::scope(|s| {
        let callee = s.spawn(|| b.answer(&answer));
        let caller = a.call("2300", &offer);
        (caller, callee.join().expect("callee thread"))
    });
    Call {
        a,
        b,
        a_dialog,
        b_dialog,
        relay_for_a: sdp_audio(&ok.body).expect("SDP in the 200"),
        relay_for_b: sdp_audio(&invite.body).expect("SDP in the INVITE"),
    }
}

#[test]
fn callee_puts_the_call_on_hold_and_resumes() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let a_rtp = rtp_socket();
    let b_rtp = rtp_socket();
    let a_addr = a_rtp.local_addr().unwrap();
    let b_addr = b_rtp.local_addr().unwrap();
    let mut c = call(&switch, &a_rtp, &b_rtp);
    let (ab, ba) = two_way(&a_rtp, c.relay_for_a, &b_rtp, c.relay_for_b, 0, 1);
    assert!(
        ab >= 9 && ba >= 9,
        "before hold: A->B {ab}/10, B->A {ba}/10"
    );

    // B (the callee) holds with a=inactive: the re-INVITE reaches A pointing at the relay
    let hold = sdp(b_addr, 2, "0", &attrs("a=inactive"));
    let held = sdp(a_addr, 2, "0", &attrs("a=inactive"));
    let (got, ok) = reoffer(&mut c.b, &mut c.a, &mut c.b_dialog, &hold, &held);
    assert_rewritten("callee's hold re-INVITE", &hold, &got, c.relay_for_a);
    assert_rewritten("caller's 200 to the hold", &held, &ok, c.relay_for_b);

    let resume = sdp(b_addr, 3, "0", &attrs("a=sendrecv"));
    let resumed = sdp(a_addr, 3, "0", &attrs("a=sendrecv"));
    let (got, ok) = reoffer(&mut c.b, &mut c.a, &mut c.b_dialog, &resume, &resumed);
    assert_rewritten("callee's resume re-INVITE", &resume, &got, c.relay_for_a);
    assert_rewritten("caller's 200 to the resume", &resumed, &ok, c.relay_for_b);
    let (ab, ba) = two_way(&a_rtp, c.relay_for_a, &b_rtp, c.relay_for_b, 0, 40);
    assert!(
        ab >= 9 && ba >= 9,
        "after resume: A->B {ab}/10, B->A {ba}/10"
    );

    // the callee hangs up
    let bye = std::thread::scope(|s| {
        let caller = s.spawn(|| c.a.answer_in_dialog("BYE", None));
        let r = c.b.bye(&mut c.b_dialog);
        caller.join().expect("caller thread");
        r
    });
    assert_eq!(bye.status, 200, "BYE: {}", bye.text());
    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(3)),
        (0, 0),
        "relay ports left after the call"
    );
    assert_cdr(&one_cdr(&switch), &[("disposition", "answered")]);
}

/// A phone that moves its media to another port (new socket) announces it in a re-INVITE;
/// the relay must follow (docs/decisions.md: "a phone that moves sends a re-INVITE, which
/// gets a new session"), or the phone loses audio for the rest of the call.
#[test]
fn reinvite_to_a_new_port_moves_the_media() {
    let (switch, _range) = media_switch(
        &[
            ("1000", "setda", "rahasia1000"),
            ("2300", "dinkes", "rahasia2300"),
        ],
        "",
    );
    let a_rtp = rtp_socket();
    let b_rtp = rtp_socket();
    let b_addr = b_rtp.local_addr().unwrap();
    let mut c = call(&switch, &a_rtp, &b_rtp);
    let (ab, ba) = two_way(&a_rtp, c.relay_for_a, &b_rtp, c.relay_for_b, 0, 1);
    assert!(
        ab >= 9 && ba >= 9,
        "before the move: A->B {ab}/10, B->A {ba}/10"
    );

    // A moves to a new socket and says so
    let a_new = rtp_socket();
    let moved = sdp(a_new.local_addr().unwrap(), 2, "0", &attrs("a=sendrecv"));
    let answer = sdp(b_addr, 2, "0", &attrs("a=sendrecv"));
    let (got, ok) = reoffer(&mut c.a, &mut c.b, &mut c.a_dialog, &moved, &answer);
    let relay_for_a = sdp_audio(&ok.body).expect("SDP in the 200");
    let relay_for_b = sdp_audio(&got.body).expect("SDP in the re-INVITE");
    assert_rewritten("move re-INVITE", &moved, &got, relay_for_b);
    let (ab, ba) = two_way(&a_new, relay_for_a, &b_rtp, relay_for_b, 0, 40);
    let at_old = common::media::drain(&a_rtp, Duration::from_millis(100));
    assert!(
        ab >= 9 && ba >= 9,
        "after A moved its media to {} by re-INVITE: A->B {ab}/10, B->A {ba}/10 \
         ({} packets still went to A's old port); relay for A {} -> {relay_for_a}, \
         relay for B {} -> {relay_for_b}; counters: {}",
        a_new.local_addr().unwrap(),
        at_old.len(),
        c.relay_for_a,
        c.relay_for_b,
        switch.cli_ok(&["calls", "--json"])
    );
    let bye = std::thread::scope(|s| {
        let callee = s.spawn(|| c.b.answer_in_dialog("BYE", None));
        let r = c.a.bye(&mut c.a_dialog);
        callee.join().expect("callee thread");
        r
    });
    assert_eq!(bye.status, 200, "BYE: {}", bye.text());
    assert_eq!(
        wait_relay_idle(&switch, Duration::from_secs(3)),
        (0, 0),
        "relay ports left after the call"
    );
}
