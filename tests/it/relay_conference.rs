//! Conference rooms in the media engine on loopback (issue 12, the media plane): UDP
//! "phones" join one room on real relay sockets and send tones of their own frequency as
//! G.711 RTP every 20 ms; each one's received audio (decoded) holds the others' frequencies
//! and not its own; the room's state lists them with the talkers; the moderator's mute takes
//! one out of the mix; a foreign source is dropped; leaving frees every port and the room.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tambun::media::blocking::BlockingRelay;
use tambun::media::mixer::g711::Law;
use tambun::media::mixer::{Codec, ParticipantSpec};
use tambun::media::{RelayConfig, RoomId};

const FREQS: [f64; 5] = [400.0, 700.0, 1000.0, 1300.0, 1900.0];

fn config(ports: (u16, u16)) -> RelayConfig {
    RelayConfig {
        port_range: ports,
        bind: "127.0.0.1".parse().unwrap(),
        advertise: "127.0.0.1".parse().unwrap(),
        threads: 2,
        ..RelayConfig::default()
    }
}

fn spec(law: Law, ssrc: u32) -> ParticipantSpec {
    ParticipantSpec {
        codec: Codec::G711(law),
        pt: if law == Law::Mu { 0 } else { 8 },
        dtmf_pt: Some(101),
        ssrc,
        pin: None,
    }
}

/// A packet of frame `n` of a tone at `hz`.
fn tone(law: Law, n: u32, hz: f64) -> Vec<u8> {
    let mut p = vec![0x80, if law == Law::Mu { 0 } else { 8 }];
    p.extend_from_slice(&(n as u16).to_be_bytes());
    p.extend_from_slice(&(n * 160).to_be_bytes());
    p.extend_from_slice(&0x4242u32.to_be_bytes());
    for i in 0..160 {
        let t = f64::from(n * 160 + i) / 8000.0;
        p.push(law.encode((4000.0 * (std::f64::consts::TAU * hz * t).sin()) as i16));
    }
    p
}

/// Power at `hz` (Goertzel), normalised by length.
fn goertzel(samples: &[i16], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for x in samples {
        let s0 = f64::from(*x) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (samples.len() as f64).powi(2)
}

struct Phone {
    socket: UdpSocket,
    law: Law,
    to: SocketAddr,
    heard: Vec<i16>,
}

impl Phone {
    fn drain(&mut self) {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.socket.recv_from(&mut buf) {
            assert_eq!(
                from, self.to,
                "media comes from the participant's own relay port"
            );
            if n > 12 {
                self.heard
                    .extend(buf[12..n].iter().map(|b| self.law.decode(*b)));
            }
        }
    }
}

/// Sends `frames` frames of each phone's tone (phones in `silent` send nothing), paced at
/// 20 ms, collecting what each hears.
fn talk(phones: &mut [Phone], frames: u32, first: u32, silent: &[usize]) {
    let start = Instant::now();
    for n in 0..frames {
        for (k, p) in phones.iter_mut().enumerate() {
            if !silent.contains(&k) {
                let pkt = tone(p.law, first + n, FREQS[k]);
                p.socket.send_to(&pkt, p.to).unwrap();
            }
            p.drain();
        }
        let due = start + Duration::from_millis(20 * u64::from(n + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    std::thread::sleep(Duration::from_millis(150));
    for p in phones.iter_mut() {
        p.drain();
    }
}

#[test]
fn five_participants_hear_each_other_but_not_themselves() {
    let mut relay = BlockingRelay::start(config((11500, 11599))).unwrap();
    let room = RoomId(8000);
    let laws = [Law::Mu, Law::A, Law::Mu, Law::Mu, Law::A];
    let mut phones = Vec::new();
    let mut ids = Vec::new();
    for (k, law) in laws.iter().enumerate() {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let (id, ports) = relay
            .room_join(
                room,
                true,
                spec(*law, 7000 + k as u32),
                socket.local_addr().ok(),
            )
            .unwrap();
        ids.push(id);
        phones.push(Phone {
            socket,
            law: *law,
            to: ports.rtp,
            heard: Vec::new(),
        });
    }
    assert_eq!(relay.ports_in_use(), 5, "one port each with rtcp-mux");
    talk(&mut phones, 100, 0, &[]);
    for (k, p) in phones.iter().enumerate() {
        assert!(
            p.heard.len() >= 8000,
            "phone {k} heard {} samples",
            p.heard.len()
        );
        let tail = &p.heard[p.heard.len() - 6000..];
        for (j, hz) in FREQS.iter().enumerate() {
            let power = goertzel(tail, *hz);
            if j == k {
                assert!(power < 2e3, "phone {k} hears itself at {hz} Hz: {power}");
            } else {
                assert!(
                    power > 1e5,
                    "phone {k} does not hear {j} at {hz} Hz: {power}"
                );
            }
        }
    }
    let state = relay.room_stats(room).unwrap().expect("the room exists");
    assert_eq!(state.participants.len(), 5);
    assert!(
        state.participants.iter().all(|p| p.stats.talking),
        "{state:#?}"
    );
    assert_eq!(state.mixed, 5);

    // The moderator mutes 0: the others stop hearing it, and 0 still hears them.
    relay.room_mute(room, ids[0], true).unwrap();
    for p in phones.iter_mut() {
        p.heard.clear();
    }
    talk(&mut phones, 50, 100, &[]);
    let tail = |p: &Phone| p.heard[p.heard.len() - 4000..].to_vec();
    assert!(
        goertzel(&tail(&phones[1]), FREQS[0]) < 2e3,
        "muted 0 is still heard"
    );
    let p0: Vec<f64> = FREQS
        .iter()
        .map(|f| goertzel(&tail(&phones[0]), *f))
        .collect();
    assert!(
        p0[1] > 1e5,
        "muted 0 hears no one: {p0:?} {}",
        phones[0].heard.len()
    );

    // A stranger's packets at 1's port are dropped and counted, and change nothing.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    for n in 0..20 {
        stranger
            .send_to(&tone(Law::Mu, n, 3000.0), phones[1].to)
            .unwrap();
    }
    talk(&mut phones, 30, 150, &[]);
    let state = relay.room_stats(room).unwrap().unwrap();
    let one = state
        .participants
        .iter()
        .find(|p| p.session == ids[1])
        .unwrap();
    assert_eq!(one.dropped_foreign, 20, "{one:#?}");
    assert!(
        goertzel(&tail(&phones[2]), 3000.0) < 2e3,
        "the stranger is heard"
    );

    // Everyone leaves: the counters, the ports and the room are gone.
    for (k, id) in ids.iter().enumerate() {
        let stats = relay.room_leave(room, *id).unwrap();
        assert!(
            stats[0].packets >= 170,
            "phone {k} sent into the room: {stats:?}"
        );
        assert!(
            stats[1].packets >= 150,
            "the room sent to phone {k}: {stats:?}"
        );
    }
    assert_eq!(relay.ports_in_use(), 0);
    assert_eq!(
        relay.room_stats(room).unwrap(),
        None,
        "an empty room is gone"
    );
}

#[test]
fn a_participant_sending_nothing_or_garbage_harms_nobody() {
    let mut relay = BlockingRelay::start(config((11600, 11699))).unwrap();
    let room = RoomId(8001);
    let mut phones = Vec::new();
    let mut ids = Vec::new();
    for k in 0..3u32 {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let (id, ports) = relay
            .room_join(room, false, spec(Law::Mu, k), socket.local_addr().ok())
            .unwrap();
        ids.push(id);
        phones.push(Phone {
            socket,
            law: Law::Mu,
            to: ports.rtp,
            heard: Vec::new(),
        });
    }
    assert_eq!(
        relay.ports_in_use(),
        6,
        "RTP and RTCP ports without rtcp-mux"
    );
    // 1 floods garbage and DTMF; 2 sends nothing; 0 talks.
    for n in 0..500u32 {
        let junk: Vec<u8> = (0..(n % 200)).map(|i| (i * 31 + n) as u8).collect();
        phones[1].socket.send_to(&junk, phones[1].to).unwrap();
        let mut dtmf = vec![
            0x80,
            101,
            0,
            n as u8,
            0,
            0,
            (n >> 8) as u8,
            n as u8,
            0,
            0,
            0,
            1,
        ];
        dtmf.extend_from_slice(&[(n % 16) as u8, 0x80, 0, 160]);
        phones[1].socket.send_to(&dtmf, phones[1].to).unwrap();
    }
    talk(&mut phones, 60, 0, &[1, 2]);
    for k in [1, 2] {
        let p = &phones[k];
        assert!(
            p.heard.len() >= 4000,
            "phone {k} heard {} samples",
            p.heard.len()
        );
        let tail = &p.heard[p.heard.len() - 3000..];
        assert!(goertzel(tail, FREQS[0]) > 1e5, "phone {k} does not hear 0");
    }
    let state = relay.room_stats(room).unwrap().unwrap();
    let flooder = state
        .participants
        .iter()
        .find(|p| p.session == ids[1])
        .unwrap();
    assert!(flooder.stats.refused > 0, "{flooder:#?}");
    assert!(
        flooder.stats.digits_dropped > 0,
        "the DTMF flood is limited: {flooder:#?}"
    );
    for id in ids {
        relay.room_leave(room, id).unwrap();
    }
    assert_eq!(relay.ports_in_use(), 0);
}
