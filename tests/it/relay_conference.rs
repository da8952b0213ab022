//! Conference rooms in the media engine on loopback (issue 12, the media plane): UDP
//! "phones" join one room on real relay sockets and send tones of their own frequency as
//! G.711 RTP every 20 ms; each one's received audio (decoded) holds the others' frequencies
//! and not its own; the room's state lists them with the talkers; the moderator's mute takes
//! one out of the mix; a foreign source is dropped; leaving frees every port and the room.
//! Video: three cameras (VP8 RTP on video lines of their own) reach each other through the
//! room's SFU, the slot follows the talker from its keyframe on, and keyframe requests are
//! passed to the publisher at most once per interval.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tambun::media::blocking::BlockingRelay;
use tambun::media::mixer::g711::Law;
use tambun::media::mixer::{Codec, ParticipantSpec};
use tambun::media::sfu::VideoLine;
use tambun::media::{RelayConfig, RoomId, RoomVideoAsk};

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
        let (id, ports, _) = relay
            .room_join(
                room,
                true,
                spec(*law, 7000 + k as u32),
                socket.local_addr().ok(),
                &[],
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
        let (id, ports, _) = relay
            .room_join(room, false, spec(Law::Mu, k), socket.local_addr().ok(), &[])
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

/// A VP8 packet (keyframe start or not) of camera `ssrc`.
fn vp8(seq: u16, ts: u32, ssrc: u32, key: bool) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0x10, if key { 0x00 } else { 0x01 }]);
    p.extend_from_slice(&[0x55; 400]);
    p
}

/// What a camera's socket received: RTP (SSRC, sequence) and how many PLIs.
#[derive(Default, Debug)]
struct Seen {
    rtp: Vec<(u32, u16, Vec<u8>)>,
    plis: usize,
}

fn drain_video(socket: &UdpSocket, from: SocketAddr, seen: &mut Seen) {
    let mut buf = [0u8; 2048];
    while let Ok((n, src)) = socket.recv_from(&mut buf) {
        assert_eq!(src, from, "video comes from the line's own relay port");
        let b = &buf[..n];
        if n >= 12 && b[1] == 206 && b[0] & 0x1f == 1 {
            seen.plis += 1;
        } else if n >= 12 && !(192..=223).contains(&b[1]) {
            seen.rtp.push((
                u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                u16::from_be_bytes([b[2], b[3]]),
                b[12..].to_vec(),
            ));
        }
    }
}

#[test]
fn three_cameras_see_each_other_and_the_slot_follows_the_talker() {
    let mut relay = BlockingRelay::start(config((11700, 11799))).unwrap();
    let room = RoomId(8002);
    struct Cam {
        audio: UdpSocket,
        audio_to: SocketAddr,
        video: UdpSocket,
        video_to: SocketAddr,
        seen: Seen,
    }
    let mut cams = Vec::new();
    let mut ids = Vec::new();
    for k in 0..3u32 {
        let audio = UdpSocket::bind("127.0.0.1:0").unwrap();
        let video = UdpSocket::bind("127.0.0.1:0").unwrap();
        audio.set_nonblocking(true).unwrap();
        video.set_nonblocking(true).unwrap();
        let ask = RoomVideoAsk {
            rtcp_mux: true,
            remote: video.local_addr().ok(),
            line: VideoLine {
                pt: 96,
                publish: true,
                receive: true,
                ssrc: 0x5100 + k,
            },
        };
        let (id, ports, video_ports) = relay
            .room_join(
                room,
                true,
                spec(Law::Mu, 9000 + k),
                audio.local_addr().ok(),
                &[ask],
            )
            .unwrap();
        ids.push(id);
        cams.push(Cam {
            audio,
            audio_to: ports.rtp,
            video,
            video_to: video_ports[0].rtp,
            seen: Seen::default(),
        });
    }
    assert_eq!(relay.ports_in_use(), 6, "one port per line with rtcp-mux");
    // 30 frames of video from each (a keyframe every 10), and audio where `talker` is loud.
    let run = |cams: &mut Vec<Cam>, first: u32, talker: Option<usize>| {
        let start = Instant::now();
        for n in first..first + 30 {
            for (k, c) in cams.iter_mut().enumerate() {
                let pkt = vp8(n as u16, n * 3000, 0xc0 + k as u32, n % 10 == 0);
                c.video.send_to(&pkt, c.video_to).unwrap();
                let hz = if talker == Some(k) { FREQS[k] } else { 0.0 };
                c.audio.send_to(&tone(Law::Mu, n, hz), c.audio_to).unwrap();
            }
            for c in cams.iter_mut() {
                drain_video(&c.video, c.video_to, &mut c.seen);
                let mut buf = [0u8; 2048];
                while c.audio.recv_from(&mut buf).is_ok() {}
            }
            let due = start + Duration::from_millis(20 * u64::from(n - first + 1));
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(100));
        for c in cams.iter_mut() {
            drain_video(&c.video, c.video_to, &mut c.seen);
        }
    };
    run(&mut cams, 0, None);
    // Nobody spoke: 0 sees 1 (join order), 1 and 2 see 0; each on its slot's SSRC.
    for (k, c) in cams.iter().enumerate() {
        assert!(
            c.seen.rtp.len() >= 15,
            "camera {k} saw {:?}",
            c.seen.rtp.len()
        );
        assert!(
            c.seen
                .rtp
                .iter()
                .all(|(ssrc, _, _)| *ssrc == 0x5100 + k as u32),
            "camera {k} got packets on another SSRC than its slot's"
        );
        let seqs: Vec<u16> = c.seen.rtp.iter().map(|r| r.1).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
            "camera {k}'s slot has gaps: {seqs:?}"
        );
    }
    assert!(
        cams[0].seen.plis >= 1 && cams[1].seen.plis >= 1,
        "wanted cameras are asked for keyframes"
    );
    assert_eq!(cams[2].seen.plis, 0, "nobody wants camera 2 yet");
    // 2 talks: 0 and 1 switch to it at its next keyframe; 2 keeps seeing 0.
    for c in cams.iter_mut() {
        c.seen = Seen::default();
    }
    run(&mut cams, 30, Some(2));
    run(&mut cams, 60, Some(2));
    let state = relay.room_stats(room).unwrap().unwrap();
    assert!(
        state.participants.iter().any(|p| p.stats.talking),
        "{state:#?}"
    );
    assert_eq!(state.video.publishers, 3, "{:?}", state.video);
    assert!(state.video.forwarded >= 150, "{:?}", state.video);
    assert!(
        cams[2].seen.plis >= 1,
        "the talker was asked for a keyframe"
    );
    // After the switch, 0's slot carries 2's packets (same payload, 0's slot SSRC) and the
    // sequence stays continuous across the switch.
    let tail = &cams[0].seen.rtp[cams[0].seen.rtp.len() - 10..];
    assert!(tail.iter().all(|(ssrc, _, _)| *ssrc == 0x5100), "{tail:?}");
    let seqs: Vec<u16> = cams[0].seen.rtp.iter().map(|r| r.1).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "the switch left a gap: {seqs:?}"
    );
    let shown_2 = state.video.subscriptions;
    assert_eq!(shown_2, 3, "{:?}", state.video);
    // Keyframe requests from both receivers of 2, many of them: 2 gets at most a few.
    let before = cams[2].seen.plis;
    let pli = |sender: u32| {
        let mut p = vec![0x81, 206, 0, 2];
        p.extend_from_slice(&sender.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p
    };
    let t = Instant::now();
    for i in 0..50u32 {
        for c in &cams[..2] {
            c.video.send_to(&pli(i), c.video_to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(600));
    let c = &mut cams[2];
    drain_video(&c.video, c.video_to, &mut c.seen);
    let elapsed = t.elapsed().as_millis() as usize;
    let plis = cams[2].seen.plis - before;
    assert!(
        plis >= 1 && plis <= elapsed / 250 + 1,
        "100 requests in {elapsed} ms became {plis} PLIs to the publisher"
    );
    // Hostile video: a stranger's packets at camera 1's video port, and garbage and
    // packets of another payload type from camera 1 itself, reach nobody.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let forwarded = relay.room_stats(room).unwrap().unwrap().video.forwarded;
    for n in 0..50u32 {
        stranger
            .send_to(&vp8(n as u16, n, 0xbad, true), cams[1].video_to)
            .unwrap();
        cams[1]
            .video
            .send_to(&[0x80, 96, 1], cams[1].video_to)
            .unwrap();
        let mut other = vp8(n as u16, n, 0xc1, true);
        other[1] = 100;
        cams[1].video.send_to(&other, cams[1].video_to).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let state = relay.room_stats(room).unwrap().unwrap();
    assert_eq!(
        state.video.forwarded, forwarded,
        "hostile video was forwarded: {:?}",
        state.video
    );
    assert!(state.video.dropped >= 100, "{:?}", state.video);
    let one = state
        .participants
        .iter()
        .find(|p| p.session == ids[1])
        .unwrap();
    assert!(one.dropped_foreign >= 50, "{one:#?}");
    for c in cams.iter_mut() {
        c.seen = Seen::default();
        drain_video(&c.video, c.video_to, &mut c.seen);
        assert!(
            c.seen.rtp.iter().all(|(_, _, b)| b.len() == 402),
            "a hostile packet reached a camera"
        );
    }
    // The room still forwards the cameras.
    run(&mut cams, 90, Some(2));
    assert!(
        cams[0].seen.rtp.len() >= 20,
        "video stopped after the attack"
    );
    for id in ids {
        let stats = relay.room_leave(room, id).unwrap();
        assert_eq!(stats.len(), 4, "audio and video, both ways: {stats:?}");
        assert!(stats[2].packets >= 80, "video into the room: {stats:?}");
    }
    assert_eq!(relay.ports_in_use(), 0);
}
