use super::*;

const PT: u8 = 96;

fn t0() -> Instant {
    Instant::now()
}

/// A VP8 packet: the descriptor (S=1, partition 0) and a payload header whose P bit says
/// keyframe (0) or not (1).
fn vp8(seq: u16, ts: u32, ssrc: u32, key: bool) -> Vec<u8> {
    let mut p = vec![0x80, PT];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.push(0x10);
    p.push(if key { 0x00 } else { 0x01 });
    p.extend_from_slice(&[0xaa; 20]);
    p
}

fn line(ssrc: u32, receive: bool) -> VideoLine {
    VideoLine {
        pt: PT,
        publish: true,
        receive,
        ssrc,
    }
}

type Sent = (ParticipantId, u8, Packet, Vec<u8>);

fn drain(sfu: &mut Sfu) -> Vec<Sent> {
    let mut v = Vec::new();
    while let Some((p, l, k, b)) = sfu.poll_transmit() {
        v.push((p, l, k, b.to_vec()));
    }
    v
}

fn rtp_to(sent: &[Sent], p: u32) -> Vec<RtpHeader> {
    sent.iter()
        .filter(|s| s.0 == ParticipantId(p) && s.2 == Packet::Rtp)
        .filter_map(|s| RtpHeader::parse(&s.3))
        .collect()
}

fn plis_to(sent: &[Sent], p: u32) -> usize {
    sent.iter()
        .filter(|s| s.0 == ParticipantId(p) && s.2 == Packet::Rtcp)
        .count()
}

/// Three phones with one video line each; each has sent one (non-key) packet.
fn three(now: Instant) -> Sfu {
    let mut sfu = Sfu::new(SfuConfig::default());
    for i in 0..3u32 {
        sfu.add(ParticipantId(i), &[line(100 + i, true)], 900 + i, true, now);
    }
    for i in 0..3u32 {
        sfu.handle_rtp(ParticipantId(i), 0, &vp8(1, 1000, 50 + i, false), now);
    }
    sfu
}

#[test]
fn vp8_keyframes_are_found_behind_the_descriptor() {
    assert!(vp8_keyframe_start(&vp8(1, 1, 1, true)));
    assert!(!vp8_keyframe_start(&vp8(1, 1, 1, false)));
    // not the start of partition 0
    let mut p = vp8(1, 1, 1, true);
    p[12] = 0x00;
    assert!(!vp8_keyframe_start(&p));
    // X with a two-byte PictureID and TL0PICIDX before the payload header
    let mut p = vp8(1, 1, 1, false);
    p.truncate(12);
    p.extend_from_slice(&[0x90, 0xc0, 0x81, 0x23, 0x07, 0x00, 0x9d, 0x01, 0x2a]);
    assert!(vp8_keyframe_start(&p));
    p[17] = 0x01;
    assert!(!vp8_keyframe_start(&p));
    assert!(!vp8_keyframe_start(&[0x80, PT, 0, 1]));
}

#[test]
fn a_slot_shows_another_publisher_from_its_keyframe_on_and_never_the_receivers_own() {
    let now = t0();
    let mut sfu = three(now);
    // The cameras someone wants were asked for a keyframe when they went live (each has
    // one slot: 0 wants 1, 1 and 2 want 0; nobody wants 2).
    let sent = drain(&mut sfu);
    assert_eq!(
        (plis_to(&sent, 0), plis_to(&sent, 1), plis_to(&sent, 2)),
        (1, 1, 0),
        "{sent:?}"
    );
    for p in 0..3 {
        assert!(rtp_to(&sent, p).is_empty(), "forwarded before a keyframe");
    }
    // Nobody spoke: 0 sees 1 (join order), 1 and 2 see 0.
    sfu.handle_rtp(ParticipantId(0), 0, &vp8(2, 4000, 50, true), now);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(2, 4000, 51, true), now);
    let sent = drain(&mut sfu);
    let to0 = rtp_to(&sent, 0);
    assert_eq!(to0.len(), 1);
    assert_eq!((to0[0].ssrc, to0[0].payload_type), (100, PT));
    assert_eq!(rtp_to(&sent, 1).len(), 1);
    assert_eq!(rtp_to(&sent, 2).len(), 1);
    assert_eq!(rtp_to(&sent, 2)[0].ssrc, 102);
    assert_eq!(
        sfu.showing(ParticipantId(0)),
        vec![(0, Some(ParticipantId(1)))]
    );
    assert_eq!(
        sfu.showing(ParticipantId(1)),
        vec![(0, Some(ParticipantId(0)))]
    );
    // Nothing of anyone's own comes back to it.
    for _ in 0..10 {
        sfu.handle_rtp(ParticipantId(2), 0, &vp8(3, 7000, 52, true), now);
    }
    assert!(rtp_to(&drain(&mut sfu), 2).is_empty());
}

#[test]
fn the_talker_takes_the_slot_on_its_keyframe_and_the_stream_continues() {
    let now = t0();
    let mut sfu = three(now);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(10, 10_000, 51, true), now);
    let first = rtp_to(&drain(&mut sfu), 0);
    assert_eq!(first.len(), 1);
    let last_seq = first[0].sequence;
    let last_ts = first[0].timestamp;
    // 2 speaks: 0's slot wants 2 and asks it for a keyframe.
    let t1 = now + Duration::from_millis(600);
    sfu.spoke(ParticipantId(2), t1);
    let sent = drain(&mut sfu);
    assert_eq!(plis_to(&sent, 2), 1, "{sent:?}");
    // Until 2's keyframe, 0 keeps seeing 1.
    sfu.handle_rtp(ParticipantId(2), 0, &vp8(500, 90_000, 52, false), t1);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(11, 13_000, 51, false), t1);
    let sent = rtp_to(&drain(&mut sfu), 0);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].sequence, last_seq.wrapping_add(1));
    assert_eq!(sent[0].timestamp, last_ts.wrapping_add(3000));
    // 2's keyframe: the slot switches, sequence and timestamp go on from there.
    let t2 = t1 + Duration::from_millis(40);
    sfu.handle_rtp(ParticipantId(2), 0, &vp8(501, 93_000, 52, true), t2);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(12, 16_000, 51, false), t2);
    sfu.handle_rtp(ParticipantId(2), 0, &vp8(502, 93_000, 52, false), t2);
    let sent = rtp_to(&drain(&mut sfu), 0);
    assert_eq!(sent.len(), 2, "only 2's packets after the switch: {sent:?}");
    assert_eq!(sent[0].sequence, last_seq.wrapping_add(2));
    assert_eq!(sent[1].sequence, last_seq.wrapping_add(3));
    assert_eq!(sent[0].timestamp, last_ts.wrapping_add(3000 + 40 * 90));
    assert_eq!(sent[0].timestamp, sent[1].timestamp);
    assert_eq!(sent[0].ssrc, 100);
    assert_eq!(
        sfu.showing(ParticipantId(0)),
        vec![(0, Some(ParticipantId(2)))]
    );
}

#[test]
fn without_a_keyframe_the_slot_switches_after_the_wait() {
    let now = t0();
    let mut sfu = three(now);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(2, 2, 51, true), now);
    sfu.spoke(ParticipantId(2), now);
    sfu.handle_rtp(
        ParticipantId(2),
        0,
        &vp8(3, 3, 52, false),
        now + SWITCH_WAIT / 2,
    );
    assert_eq!(
        sfu.showing(ParticipantId(0)),
        vec![(0, Some(ParticipantId(1)))]
    );
    sfu.handle_rtp(
        ParticipantId(2),
        0,
        &vp8(4, 4, 52, false),
        now + SWITCH_WAIT,
    );
    assert_eq!(
        sfu.showing(ParticipantId(0)),
        vec![(0, Some(ParticipantId(2)))]
    );
}

#[test]
fn keyframe_requests_to_a_publisher_are_throttled_not_lost() {
    let now = t0();
    let mut sfu = three(now);
    let _ = drain(&mut sfu);
    sfu.handle_rtp(ParticipantId(0), 0, &vp8(2, 2, 50, true), now);
    let _ = drain(&mut sfu);
    // 1 and 2 show 0; they ask for keyframes again and again.
    let pli_from = |r: u32| pli(500 + r, 100);
    let t1 = now + KEYFRAME_INTERVAL;
    let mut sent = Vec::new();
    for k in 0..20u64 {
        let at = t1 + Duration::from_millis(10 * k);
        sfu.handle_rtcp(ParticipantId(1 + (k % 2) as u32), 0, &pli_from(1), at);
        sent.extend(drain(&mut sfu));
    }
    assert_eq!(plis_to(&sent, 0), 1, "one PLI at once, the rest held");
    let due = sfu.poll_timeout().expect("a held request wakes the room");
    assert_eq!(due, t1 + KEYFRAME_INTERVAL);
    sfu.handle_timeout(due);
    let sent = drain(&mut sfu);
    assert_eq!(plis_to(&sent, 0), 1);
    let p = &sent.iter().find(|s| s.2 == Packet::Rtcp).unwrap().3;
    assert_eq!(
        &p[8..12],
        &50u32.to_be_bytes(),
        "about the publisher's SSRC"
    );
    assert!(rtcp_asks_keyframe(p));
    // Nothing more is held; a report without PLI asks for nothing.
    let rr = [0x80, 201, 0, 1, 0, 0, 0, 1];
    sfu.handle_rtcp(ParticipantId(1), 0, &rr, due + KEYFRAME_INTERVAL * 2);
    assert_eq!(plis_to(&drain(&mut sfu), 0), 0);
}

#[test]
fn last_n_follows_the_talkers_and_the_budget() {
    let now = t0();
    // Four browsers, each with three receiving lines beside its camera line.
    let mut sfu = Sfu::new(SfuConfig {
        egress_bps: 110_000_000,
    });
    let lines = |i: u32| {
        (0..4)
            .map(|k| VideoLine {
                pt: PT,
                publish: k == 0,
                receive: true,
                ssrc: 1000 * i + k,
            })
            .collect::<Vec<_>>()
    };
    for i in 0..5u32 {
        sfu.add(ParticipantId(i), &lines(i), i, true, now);
        sfu.handle_rtp(ParticipantId(i), 0, &vp8(1, 1, i, true), now);
    }
    let shown = |sfu: &Sfu, p: u32| -> Vec<u32> {
        let mut v: Vec<u32> = sfu
            .showing(ParticipantId(p))
            .into_iter()
            .filter_map(|(_, s)| s.map(|s| s.0))
            .collect();
        v.sort();
        v
    };
    // Each has four lines and sees four others; nobody spoke, so 0 sees 1..4.
    sfu.handle_rtp(ParticipantId(4), 0, &vp8(2, 2, 4, true), now);
    for i in 0..4u32 {
        sfu.handle_rtp(ParticipantId(i), 0, &vp8(2, 2, i, true), now);
    }
    assert_eq!(shown(&sfu, 0), vec![1, 2, 3, 4]);
    assert_eq!(sfu.stats().last_n, 4);
    // At 10 Mbps each, 5 × 4 × 10 = 200 Mbps is over the 110 Mbps budget: N falls to 2.
    let big = vec![0u8; 1250];
    for k in 0..1000u16 {
        for i in 0..5u32 {
            let mut p = vp8(3 + k, 3, i, false);
            p.extend_from_slice(&big[..1250 - p.len().min(1250)]);
            sfu.handle_rtp(ParticipantId(i), 0, &p, now);
        }
        let _ = drain(&mut sfu);
    }
    let later = now + BUDGET_PERIOD;
    sfu.handle_timeout(later);
    assert_eq!(sfu.stats().last_n, 2, "{:?}", sfu.stats());
    // The last two talkers are the ones shown (0 sees 3 and 4 once they spoke).
    sfu.spoke(ParticipantId(3), later);
    sfu.spoke(ParticipantId(4), later + Duration::from_millis(1));
    for i in [3u32, 4] {
        sfu.handle_rtp(ParticipantId(i), 0, &vp8(5000, 9, i, true), later);
    }
    assert_eq!(shown(&sfu, 0), vec![3, 4]);
    // 4 never sees itself: its two are 3 and the one before.
    assert!(!shown(&sfu, 4).contains(&4));
    assert_eq!(shown(&sfu, 4).len(), 2);
}

#[test]
fn a_participant_owing_its_pin_neither_sees_nor_is_seen() {
    let now = t0();
    let mut sfu = Sfu::new(SfuConfig::default());
    sfu.add(ParticipantId(0), &[line(10, true)], 1, true, now);
    sfu.add(ParticipantId(1), &[line(11, true)], 2, false, now);
    sfu.handle_rtp(ParticipantId(0), 0, &vp8(1, 1, 5, true), now);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(1, 1, 6, true), now);
    let sent = drain(&mut sfu);
    assert!(rtp_to(&sent, 0).is_empty() && rtp_to(&sent, 1).is_empty());
    assert_eq!(sfu.stats().dropped, 1);
    sfu.admit(ParticipantId(1), now);
    sfu.handle_rtp(ParticipantId(0), 0, &vp8(2, 2, 5, true), now);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(2, 2, 6, true), now);
    let sent = drain(&mut sfu);
    assert_eq!(rtp_to(&sent, 0).len(), 1);
    assert_eq!(rtp_to(&sent, 1).len(), 1);
}

#[test]
fn wrong_payload_types_and_garbage_are_dropped_and_a_leaver_frees_its_slots() {
    let now = t0();
    let mut sfu = three(now);
    let mut p = vp8(9, 9, 51, true);
    p[1] = 97;
    sfu.handle_rtp(ParticipantId(1), 0, &p, now);
    sfu.handle_rtp(ParticipantId(1), 0, b"garbage", now);
    sfu.handle_rtp(ParticipantId(1), 1, &vp8(9, 9, 51, true), now);
    assert!(rtp_to(&drain(&mut sfu), 0).is_empty());
    assert_eq!(sfu.stats().dropped, 3);
    sfu.handle_rtp(ParticipantId(1), 0, &vp8(10, 9, 51, true), now);
    assert_eq!(
        sfu.showing(ParticipantId(0)),
        vec![(0, Some(ParticipantId(1)))]
    );
    sfu.remove(ParticipantId(1), now);
    assert_eq!(sfu.showing(ParticipantId(0)), vec![(0, None)]);
    // 0 now wants 2 and asked it for a keyframe.
    assert!(plis_to(&drain(&mut sfu), 2) >= 1);
    sfu.handle_rtp(
        ParticipantId(2),
        0,
        &vp8(10, 9, 52, true),
        now + KEYFRAME_INTERVAL,
    );
    assert_eq!(
        sfu.showing(ParticipantId(0)),
        vec![(0, Some(ParticipantId(2)))]
    );
    sfu.remove(ParticipantId(0), now);
    sfu.remove(ParticipantId(2), now);
    assert!(sfu.is_empty());
    assert_eq!(sfu.poll_timeout(), None, "an empty room has no timer");
}
