//! The mixer on simulated time: participants send tones as RTP every 20 ms; what each one
//! receives is decoded and checked with the Goertzel filter (the energy at one frequency).

use super::*;

const FREQS: [f32; 5] = [400.0, 700.0, 1000.0, 1300.0, 1900.0];

fn spec(law: Law, ssrc: u32) -> ParticipantSpec {
    ParticipantSpec {
        codec: Codec::G711(law),
        pt: match law {
            Law::Mu => 0,
            Law::A => 8,
        },
        dtmf_pt: Some(101),
        ssrc,
        pin: None,
    }
}

fn quiet() -> MixerConfig {
    MixerConfig {
        tones: false,
        ..MixerConfig::default()
    }
}

/// One 20 ms RTP packet of a sine at `hz` (amplitude `amp`), frame `n`.
fn tone_packet(law: Law, pt: u8, n: u32, hz: f32, amp: f32) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&(n as u16).to_be_bytes());
    p.extend_from_slice(&(n * 160).to_be_bytes());
    p.extend_from_slice(&0x1111u32.to_be_bytes());
    for i in 0..160 {
        let t = (n * 160 + i) as f32 / 8000.0;
        let s = (std::f32::consts::TAU * hz * t).sin() * amp;
        p.push(law.encode(s as i16));
    }
    p
}

fn silence_packet(law: Law, pt: u8, n: u32) -> Vec<u8> {
    tone_packet(law, pt, n, 0.0, 0.0)
}

/// Power at `hz` in `samples` (Goertzel), normalised by length.
fn goertzel(samples: &[i16], hz: f32) -> f64 {
    let w = std::f64::consts::TAU * hz as f64 / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = *x as f64 + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f64).powi(2)
}

/// Runs `frames` ticks: before each, every participant in `senders` sends its packet.
/// Returns what each participant received, decoded.
fn run(
    m: &mut Mixer,
    ids: &[(ParticipantId, Law, u8)],
    now: &mut Instant,
    frames: u32,
    mut packet: impl FnMut(usize, u32) -> Option<Vec<u8>>,
) -> Vec<Vec<i16>> {
    let mut heard = vec![Vec::new(); ids.len()];
    for n in 0..frames {
        for (k, (id, _, _)) in ids.iter().enumerate() {
            if let Some(p) = packet(k, n) {
                m.handle_rtp(*id, &p, *now).unwrap();
            }
        }
        *now += FRAME;
        m.handle_timeout(*now);
        while let Some((to, bytes)) = m.poll_transmit() {
            let k = ids.iter().position(|(id, _, _)| *id == to).unwrap();
            let law = ids[k].1;
            assert_eq!(bytes[1] & 0x7f, ids[k].2, "its payload type");
            heard[k].extend(bytes[12..].iter().map(|b| law.decode(*b)));
        }
    }
    heard
}

#[test]
fn each_participant_hears_the_others_and_not_itself() {
    let mut m = Mixer::new(quiet());
    let mut now = Instant::now();
    // μ-law and A-law participants in one room.
    let laws = [Law::Mu, Law::A, Law::Mu, Law::A, Law::Mu];
    let ids: Vec<_> = laws
        .iter()
        .enumerate()
        .map(|(k, law)| {
            let s = spec(*law, 100 + k as u32);
            let pt = s.pt;
            (m.add(s, now), *law, pt)
        })
        .collect();
    let heard = run(&mut m, &ids, &mut now, 100, |k, n| {
        Some(tone_packet(laws[k], ids[k].2, n, FREQS[k], 4000.0))
    });
    for (k, samples) in heard.iter().enumerate() {
        // Skip the playout delay and the talker attack.
        let tail = &samples[samples.len() - 4000..];
        for (j, hz) in FREQS.iter().enumerate() {
            let p = goertzel(tail, *hz);
            if j == k {
                assert!(p < 1e3, "participant {k} hears itself at {hz} Hz: {p}");
            } else {
                assert!(p > 1e5, "participant {k} does not hear {j} at {hz} Hz: {p}");
            }
        }
    }
    assert_eq!(m.mixed_last_tick(), 5);
    assert!(m
        .participants()
        .all(|(_, s)| s.talking && s.packets_out == 100));
}

#[test]
fn listeners_share_one_mix_and_only_talkers_are_mixed() {
    let mut m = Mixer::new(MixerConfig {
        max_mixed: 2,
        ..quiet()
    });
    let mut now = Instant::now();
    let ids: Vec<_> = (0..6)
        .map(|k| (m.add(spec(Law::Mu, k), now), Law::Mu, 0u8))
        .collect();
    // Three talkers (the third quietest is left out: max_mixed 2), three silent.
    let amps = [6000.0, 5000.0, 1500.0, 0.0, 0.0, 0.0];
    let heard = run(&mut m, &ids, &mut now, 60, |k, n| {
        Some(tone_packet(Law::Mu, 0, n, FREQS[k.min(4)], amps[k]))
    });
    assert_eq!(m.mixed_last_tick(), 2);
    let tail = |k: usize| &heard[k][heard[k].len() - 2000..];
    for k in 3..6 {
        assert_eq!(tail(3), tail(k), "listeners get the same mix");
        assert!(goertzel(tail(k), FREQS[0]) > 1e5 && goertzel(tail(k), FREQS[1]) > 1e5);
        assert!(
            goertzel(tail(k), FREQS[2]) < 1e3,
            "the third talker is not mixed"
        );
    }
    // The unmixed third talker hears the two loudest like a listener.
    assert_eq!(tail(2), tail(3));
    assert!(goertzel(tail(0), FREQS[0]) < 1e3 && goertzel(tail(0), FREQS[1]) > 1e5);
    let talking: Vec<bool> = m.participants().map(|(_, s)| s.talking).collect();
    assert_eq!(talking, [true, true, true, false, false, false]);
}

#[test]
fn moderator_mute_and_star_six_self_mute() {
    let mut m = Mixer::new(quiet());
    let mut now = Instant::now();
    let ids: Vec<_> = (0..3)
        .map(|k| (m.add(spec(Law::Mu, k), now), Law::Mu, 0u8))
        .collect();
    let send = |k: usize, n: u32| Some(tone_packet(Law::Mu, 0, n, FREQS[k], 4000.0));
    run(&mut m, &ids, &mut now, 20, send);
    m.set_muted(ids[0].0, true).unwrap();
    let heard = run(&mut m, &ids, &mut now, 40, |k, n| send(k, n + 20));
    let tail = &heard[2][heard[2].len() - 2000..];
    assert!(goertzel(tail, FREQS[0]) < 1e3, "muted 0 is not heard");
    assert!(goertzel(tail, FREQS[1]) > 1e5);
    // Participant 1 mutes itself with *6 (RFC 4733 events 10, 6; repeated packets count once).
    let dtmf = |event: u8, ts: u32, seq: u16| {
        let mut p = vec![0x80, 101];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&0x1111u32.to_be_bytes());
        p.extend_from_slice(&[event, 0x0a, 0, 160]);
        p
    };
    for (seq, (event, ts)) in [(10, 50_000), (10, 50_000), (6, 51_000), (6, 51_000)]
        .into_iter()
        .enumerate()
    {
        m.handle_rtp(ids[1].0, &dtmf(event, ts, 900 + seq as u16), now)
            .unwrap();
    }
    let events: Vec<_> = std::iter::from_fn(|| m.poll_event())
        .filter(|e| !matches!(e, MixerEvent::Talking { .. }))
        .collect();
    assert_eq!(
        events,
        [
            MixerEvent::Digit {
                participant: ids[1].0,
                digit: '*'
            },
            MixerEvent::Digit {
                participant: ids[1].0,
                digit: '6'
            },
            MixerEvent::SelfMuted {
                participant: ids[1].0,
                muted: true
            },
        ]
    );
    let heard = run(&mut m, &ids, &mut now, 40, |k, n| send(k, n + 60));
    let tail = &heard[2][heard[2].len() - 2000..];
    assert!(goertzel(tail, FREQS[1]) < 1e3, "self-muted 1 is not heard");
}

#[test]
fn garbage_floods_and_silence_harm_nobody() {
    let mut m = Mixer::new(quiet());
    let mut now = Instant::now();
    let ids: Vec<_> = (0..3)
        .map(|k| (m.add(spec(Law::Mu, k), now), Law::Mu, 0u8))
        .collect();
    // 0 sends its tone; 1 sends garbage and DTMF floods; 2 sends nothing at all.
    let heard = run(&mut m, &ids, &mut now, 50, |k, n| match k {
        0 => Some(tone_packet(Law::Mu, 0, n, FREQS[0], 4000.0)),
        _ => None,
    });
    for junk in [
        &b"hello"[..],
        &[0x80, 0],
        &[0u8; 40],
        &[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    ] {
        assert!(m.handle_rtp(ids[1].0, junk, now).is_err());
    }
    for i in 0..1000u32 {
        let mut p = vec![0x80, 101];
        p.extend_from_slice(&(i as u16).to_be_bytes());
        p.extend_from_slice(&(i * 7).to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&[(i % 12) as u8, 0x80, 0, 160]);
        m.handle_rtp(ids[1].0, &p, now).unwrap();
    }
    let s1 = m.participants().nth(1).unwrap().1.clone();
    assert_eq!(s1.digits, MAX_DIGITS_PER_SECOND as u64);
    assert_eq!(s1.digits_dropped, 1000 - MAX_DIGITS_PER_SECOND as u64);
    assert_eq!(s1.refused, 4);
    assert!(std::iter::from_fn(|| m.poll_event()).count() <= MAX_EVENTS);
    for k in 1..3 {
        let tail = &heard[k][heard[k].len() - 2000..];
        assert!(goertzel(tail, FREQS[0]) > 1e5, "{k} hears 0");
    }
    assert!(m
        .handle_rtp(ParticipantId(99), &silence_packet(Law::Mu, 0, 1), now)
        .is_err());
}

#[test]
fn an_empty_room_has_no_tick_and_tones_mark_joins_and_leaves() {
    let mut m = Mixer::new(MixerConfig::default());
    let mut now = Instant::now();
    assert_eq!(m.poll_timeout(), None);
    let a = m.add(spec(Law::Mu, 1), now);
    assert_eq!(m.poll_timeout(), Some(now + FRAME));
    // Alone: no tone. A second one joins: both hear the join beeps.
    now += FRAME;
    m.handle_timeout(now);
    let first: Vec<u8> = m.poll_transmit().unwrap().1[12..].to_vec();
    assert!(first.iter().all(|b| *b == 0xFF), "silence for one alone");
    let b = m.add(spec(Law::Mu, 2), now);
    let mut heard = Vec::new();
    for _ in 0..5 {
        now += FRAME;
        m.handle_timeout(now);
        while let Some((to, bytes)) = m.poll_transmit() {
            if to == a {
                heard.extend(bytes[12..].iter().map(|x| Law::Mu.decode(*x)));
            }
        }
    }
    assert!(goertzel(&heard[..800], 660.0) > 1e5, "the join tone");
    let stats = m.remove(b).unwrap();
    assert_eq!(stats.packets_out, 5);
    m.remove(a);
    assert_eq!(m.poll_timeout(), None, "the last one left: no timer");
    assert!(m.is_empty());
    // A stalled owner: the room skips ahead instead of bursting.
    let c = m.add(spec(Law::Mu, 3), now);
    now += Duration::from_secs(2);
    m.handle_timeout(now);
    assert_eq!(
        std::iter::from_fn(|| m.poll_transmit().map(|_| ())).count(),
        MAX_CATCH_UP as usize
    );
    assert!(m.poll_timeout().unwrap() > now);
    m.remove(c);
}

#[test]
fn a_pin_room_admits_after_the_pin_and_the_moderator_pin_makes_a_moderator() {
    let mut m = Mixer::new(quiet());
    let mut now = Instant::now();
    let open = m.add(spec(Law::Mu, 1), now);
    let gate = PinGate {
        pin: "2468".into(),
        moderator_pin: Some("1357".into()),
    };
    let guest = m.add(
        ParticipantSpec {
            pin: Some(gate.clone()),
            ..spec(Law::Mu, 2)
        },
        now,
    );
    let ids = [(open, Law::Mu, 0u8), (guest, Law::Mu, 0u8)];
    // Both talk; the guest has not entered the PIN: nobody hears it, it hears nothing.
    let heard = run(&mut m, &ids, &mut now, 40, |k, n| {
        Some(tone_packet(Law::Mu, 0, n, FREQS[k], 4000.0))
    });
    let tail = |h: &Vec<i16>| h[h.len() - 2000..].to_vec();
    assert!(
        goertzel(&tail(&heard[0]), FREQS[1]) < 1e3,
        "the guest is heard before its PIN"
    );
    assert!(
        heard[1].iter().all(|s| *s == 0),
        "the guest hears the room before its PIN"
    );
    assert!(m.participants().nth(1).unwrap().1.waiting_for_pin);
    // A wrong PIN, then the right one ('#' ends an entry; the PIN's length does too).
    for d in "11#2468".chars() {
        m.handle_digit(guest, d, now).unwrap();
    }
    let events: Vec<_> = std::iter::from_fn(|| m.poll_event())
        .filter(|e| !matches!(e, MixerEvent::Talking { .. }))
        .collect();
    assert_eq!(
        events,
        [
            MixerEvent::PinRejected {
                participant: guest,
                failures: 1
            },
            MixerEvent::PinAccepted {
                participant: guest,
                moderator: false
            },
        ]
    );
    let heard = run(&mut m, &ids, &mut now, 40, |k, n| {
        Some(tone_packet(Law::Mu, 0, n + 40, FREQS[k], 4000.0))
    });
    assert!(
        goertzel(&tail(&heard[0]), FREQS[1]) > 1e5,
        "the guest is heard after its PIN"
    );
    assert!(
        goertzel(&tail(&heard[1]), FREQS[0]) > 1e5,
        "the guest hears the room"
    );
    // The moderator PIN; and three wrong ones are reported as such.
    let boss = m.add(
        ParticipantSpec {
            pin: Some(gate.clone()),
            ..spec(Law::Mu, 3)
        },
        now,
    );
    for d in "1357".chars() {
        m.handle_digit(boss, d, now).unwrap();
    }
    let stranger = m.add(
        ParticipantSpec {
            pin: Some(gate),
            ..spec(Law::Mu, 4)
        },
        now,
    );
    // (at most 10 digits a second count: a second per attempt)
    for attempt in ["0000#", "9999#", "1#"] {
        now += Duration::from_secs(1);
        for d in attempt.chars() {
            m.handle_digit(stranger, d, now).unwrap();
        }
    }
    let events: Vec<_> = std::iter::from_fn(|| m.poll_event())
        .filter(|e| !matches!(e, MixerEvent::Talking { .. }))
        .collect();
    assert_eq!(
        events,
        [
            MixerEvent::PinAccepted {
                participant: boss,
                moderator: true
            },
            MixerEvent::PinRejected {
                participant: stranger,
                failures: 1
            },
            MixerEvent::PinRejected {
                participant: stranger,
                failures: 2
            },
            MixerEvent::PinRejected {
                participant: stranger,
                failures: 3
            },
        ]
    );
}

/// G.722 packets of a tone at `hz`, frame by frame, from one encoder (its state goes on).
fn g722_tones(hz: f32, frames: u32) -> Vec<Vec<u8>> {
    let mut enc = g722::G722::default();
    (0..frames)
        .map(|n| {
            let mut pcm = [0i32; FRAME_SAMPLES];
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (n * 160 + i as u32) as f32 / 8000.0;
                *s = ((std::f32::consts::TAU * hz * t).sin() * 5000.0) as i32;
            }
            let mut coded = [0u8; FRAME_SAMPLES];
            enc.encode(&pcm, &mut coded);
            let mut p = vec![0x80, 9];
            p.extend_from_slice(&(n as u16).to_be_bytes());
            p.extend_from_slice(&(n * 160).to_be_bytes());
            p.extend_from_slice(&0x2222u32.to_be_bytes());
            p.extend_from_slice(&coded);
            p
        })
        .collect()
}

#[test]
fn a_g722_phone_and_g711_phones_hear_each_other() {
    let mut m = Mixer::new(quiet());
    let mut now = Instant::now();
    let wide = m.add(
        ParticipantSpec {
            codec: Codec::G722,
            pt: 9,
            dtmf_pt: Some(101),
            ssrc: 7,
            pin: None,
        },
        now,
    );
    let mu = m.add(spec(Law::Mu, 8), now);
    let a = m.add(spec(Law::A, 9), now);
    let g722 = g722_tones(FREQS[0], 100);
    // Decoding what the G.722 participant receives needs a decoder that followed the stream.
    let mut dec = g722::G722::default();
    let (mut to_wide, mut to_mu, mut to_a) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..100u32 {
        m.handle_rtp(wide, &g722[n as usize], now).unwrap();
        m.handle_rtp(mu, &tone_packet(Law::Mu, 0, n, FREQS[1], 4000.0), now)
            .unwrap();
        m.handle_rtp(a, &tone_packet(Law::A, 8, n, FREQS[2], 4000.0), now)
            .unwrap();
        now += FRAME;
        m.handle_timeout(now);
        while let Some((to, bytes)) = m.poll_transmit() {
            let payload: &[u8; FRAME_SAMPLES] = bytes[12..].try_into().unwrap();
            if to == wide {
                assert_eq!(bytes[1] & 0x7f, 9);
                let mut pcm = [0i16; FRAME_SAMPLES];
                dec.decode(payload, &mut pcm);
                to_wide.extend_from_slice(&pcm);
            } else if to == mu {
                to_mu.extend(payload.iter().map(|b| Law::Mu.decode(*b)));
            } else {
                to_a.extend(payload.iter().map(|b| Law::A.decode(*b)));
            }
        }
    }
    let tail = |v: &Vec<i16>| v[v.len() - 4000..].to_vec();
    let (w, u, al) = (tail(&to_wide), tail(&to_mu), tail(&to_a));
    assert!(m.participants().all(|(_, s)| s.talking), "all three talk");
    // The G.722 phone hears the two G.711 tones and not its own.
    assert!(goertzel(&w, FREQS[1]) > 1e5 && goertzel(&w, FREQS[2]) > 1e5);
    assert!(goertzel(&w, FREQS[0]) < 1e4, "{}", goertzel(&w, FREQS[0]));
    // The G.711 phones hear the G.722 one.
    assert!(goertzel(&u, FREQS[0]) > 1e5 && goertzel(&al, FREQS[0]) > 1e5);
    assert!(goertzel(&u, FREQS[1]) < 1e4);
}

/// Opus packets (RTP, payload type 111, 48 kHz clock) of a tone at `hz`, frame by frame.
fn opus_tones(hz: f32, frames: u32) -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new();
    (0..frames)
        .map(|n| {
            let mut pcm = [0i32; FRAME_SAMPLES];
            for (i, s) in pcm.iter_mut().enumerate() {
                let t = (n * 160 + i as u32) as f32 / 8000.0;
                *s = ((std::f32::consts::TAU * hz * t).sin() * 5000.0) as i32;
            }
            let mut coded = [0u8; opus::MAX_OUT];
            let len = enc.encode(&pcm, &mut coded);
            let mut p = vec![0x80, 111];
            p.extend_from_slice(&(n as u16).to_be_bytes());
            p.extend_from_slice(&(n * 960).to_be_bytes());
            p.extend_from_slice(&0x3333u32.to_be_bytes());
            p.extend_from_slice(&coded[..len]);
            p
        })
        .collect()
}

fn opus_spec(ssrc: u32) -> ParticipantSpec {
    ParticipantSpec {
        codec: Codec::Opus,
        pt: 111,
        dtmf_pt: Some(126),
        ssrc,
        pin: None,
    }
}

#[test]
fn opus_phones_and_a_g711_phone_hear_each_other() {
    let mut m = Mixer::new(quiet());
    let mut now = Instant::now();
    let talker = m.add(opus_spec(7), now);
    let listener = m.add(opus_spec(8), now);
    let mu = m.add(spec(Law::Mu, 9), now);
    let sent = opus_tones(FREQS[0], 100);
    // What the two Opus participants receive, decoded as their phones would.
    let mut rx = [
        opus::Receiver::new(Duration::from_millis(20)),
        opus::Receiver::new(Duration::from_millis(20)),
    ];
    let mut heard = [Vec::new(), Vec::new(), Vec::new()];
    let mut last_ts: [Option<u32>; 2] = [None, None];
    for n in 0..100u32 {
        m.handle_rtp(talker, &sent[n as usize], now).unwrap();
        m.handle_rtp(mu, &tone_packet(Law::Mu, 0, n, FREQS[1], 4000.0), now)
            .unwrap();
        now += FRAME;
        m.handle_timeout(now);
        while let Some((to, bytes)) = m.poll_transmit() {
            let h = RtpHeader::parse(bytes).unwrap();
            let payload = &bytes[12..];
            if to == mu {
                heard[2].extend(payload.iter().map(|b| Law::Mu.decode(*b)));
                continue;
            }
            let k = usize::from(to == listener);
            assert_eq!(h.payload_type, 111);
            if let Some(ts) = last_ts[k] {
                assert_eq!(h.timestamp.wrapping_sub(ts), 960, "a 48 kHz clock");
            }
            last_ts[k] = Some(h.timestamp);
            assert!(
                rx[k].push(h.sequence, h.timestamp, payload),
                "a valid Opus packet"
            );
            let mut pcm = [0i16; FRAME_SAMPLES];
            rx[k].pop(&mut pcm);
            heard[k].extend_from_slice(&pcm);
        }
    }
    let tail = |v: &Vec<i16>| v[v.len() - 4000..].to_vec();
    let (t, l, u) = (tail(&heard[0]), tail(&heard[1]), tail(&heard[2]));
    // The talker hears the G.711 tone and not its own.
    assert!(goertzel(&t, FREQS[1]) > 1e5, "{}", goertzel(&t, FREQS[1]));
    assert!(goertzel(&t, FREQS[0]) < 1e4, "{}", goertzel(&t, FREQS[0]));
    // The listener (the shared encoding) hears both; the G.711 phone hears the Opus talker.
    assert!(goertzel(&l, FREQS[0]) > 1e5 && goertzel(&l, FREQS[1]) > 1e5);
    assert!(goertzel(&u, FREQS[0]) > 1e5 && goertzel(&u, FREQS[1]) < 1e4);
    let stats: Vec<_> = m.participants().map(|(_, s)| s.clone()).collect();
    assert!(stats[0].talking && !stats[1].talking && stats[2].talking);
    assert_eq!(stats[0].refused + stats[0].late, 0);
}
