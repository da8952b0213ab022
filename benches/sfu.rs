//! The video room's forwarding core (issue 12, `media::sfu`): packets out per core-second.
//! A room of P cameras where every participant receives on S slots (last-N by talker): one
//! round = one 1,100-byte VP8 packet from each camera in (`handle_rtp`) and everything it
//! makes out (`poll_transmit`, bytes touched), so a round sends P × min(S, P − 1) packets.
//! Next to it in the same run, the baseline: a plain fan-out that copies each packet to
//! every slot showing its camera and rewrites payload type, SSRC, sequence and timestamp,
//! with the slots fixed (no talker order, keyframe gating, budget or audience index).
//!
//! It prints packets out per core-second for both and their ratio (the SFU's bookkeeping
//! against the copying every SFU must do). The sockets are not in it: on this machine a
//! `send_to` costs more than either (see docs/bench-conference.md). Compare numbers of one
//! run only (the machine is shared and noisy).
//!
//!   cargo bench --bench sfu
//!   cargo bench --bench sfu -- --summary-only      (only the printed summary)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use tambun::media::mixer::ParticipantId;
use tambun::media::sfu::{Sfu, SfuConfig, VideoLine};

/// (cameras, slots per participant) of the rooms measured: a small meeting, all 43 offices
/// seeing the last four talkers, all 43 with one slot (SIP video phones).
const ROOMS: [(usize, usize); 3] = [(10, 3), (43, 4), (43, 1)];

fn packet(k: usize, n: u32, key: bool) -> Vec<u8> {
    let mut p = vec![0x80, 96];
    p.extend_from_slice(&(n as u16).to_be_bytes());
    p.extend_from_slice(&(n * 3000).to_be_bytes());
    p.extend_from_slice(&(0x1000 + k as u32).to_be_bytes());
    p.extend_from_slice(&[0x10, if key { 0x00 } else { 0x01 }]);
    p.resize(1100, 0x5a);
    p
}

/// A room of `cams` cameras with `slots` lines each, every slot switched on (keyframes sent
/// once), and each camera's next packet.
fn room(cams: usize, slots: usize) -> (Sfu, Vec<Vec<u8>>, Instant) {
    let now = Instant::now();
    let mut sfu = Sfu::new(SfuConfig {
        egress_bps: u64::MAX / 4,
    });
    for k in 0..cams {
        let lines: Vec<VideoLine> = (0..slots)
            .map(|l| VideoLine {
                pt: 96,
                publish: l == 0,
                receive: true,
                ssrc: (k * 16 + l) as u32,
            })
            .collect();
        sfu.add(ParticipantId(k as u32), &lines, k as u32, true, now);
    }
    for k in 0..cams {
        sfu.spoke(
            ParticipantId(k as u32),
            now + Duration::from_millis(k as u64),
        );
        sfu.handle_rtp(ParticipantId(k as u32), 0, &packet(k, 1, true), now);
    }
    while sfu.poll_transmit().is_some() {}
    let packets = (0..cams).map(|k| packet(k, 2, false)).collect();
    (sfu, packets, now)
}

/// One round: a packet from every camera in, everything out; the packets sent.
fn round(sfu: &mut Sfu, packets: &mut [Vec<u8>], n: u32, now: Instant) -> usize {
    for (k, p) in packets.iter_mut().enumerate() {
        p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        sfu.handle_rtp(ParticipantId(k as u32), 0, p, now);
    }
    let mut sent = 0;
    while let Some((_, _, _, b)) = sfu.poll_transmit() {
        black_box(b[1]);
        sent += 1;
    }
    sent
}

/// The baseline fan-out: each receiver's slots fixed to the next cameras after it.
struct Fanout {
    /// By camera: (receiver, slot ssrc, seq offset).
    audience: Vec<Vec<(usize, u32, u16)>>,
    out: Vec<u8>,
}

impl Fanout {
    fn new(cams: usize, slots: usize) -> Fanout {
        let mut audience = vec![Vec::new(); cams];
        for r in 0..cams {
            for s in 0..slots.min(cams - 1) {
                let cam = (r + 1 + s) % cams;
                audience[cam].push((r, (r * 16 + s) as u32, (r * 7) as u16));
            }
        }
        Fanout {
            audience,
            out: Vec::new(),
        }
    }

    fn round(&mut self, packets: &[Vec<u8>]) -> usize {
        self.out.clear();
        let mut sent = 0;
        for (k, p) in packets.iter().enumerate() {
            for &(_, ssrc, delta) in &self.audience[k] {
                let start = self.out.len();
                self.out.extend_from_slice(p);
                let b = &mut self.out[start..];
                b[1] = (b[1] & 0x80) | 96;
                let seq = u16::from_be_bytes([b[2], b[3]]).wrapping_add(delta);
                b[2..4].copy_from_slice(&seq.to_be_bytes());
                b[8..12].copy_from_slice(&ssrc.to_be_bytes());
                black_box(b[1]);
                sent += 1;
            }
            if self.out.len() > 1 << 20 {
                self.out.clear();
            }
        }
        sent
    }
}

fn per_round(c: &mut Criterion) {
    let mut g = c.benchmark_group("sfu_round");
    g.measurement_time(Duration::from_secs(3));
    for (cams, slots) in ROOMS {
        let (mut sfu, mut packets, now) = room(cams, slots);
        let mut n = 3u32;
        g.bench_function(format!("tambun/{cams}cams_{slots}slots"), |b| {
            b.iter(|| {
                n += 1;
                black_box(round(&mut sfu, &mut packets, n, now))
            })
        });
        let mut base = Fanout::new(cams, slots);
        g.bench_function(format!("fanout/{cams}cams_{slots}slots"), |b| {
            b.iter(|| black_box(base.round(&packets)))
        });
    }
    g.finish();
}

/// Packets out per second over `rounds` rounds, best of 5 runs (the least disturbed).
fn rate(mut f: impl FnMut(u32) -> usize, rounds: u32) -> f64 {
    (0..5)
        .map(|r| {
            let start = Instant::now();
            let mut sent = 0usize;
            for t in 0..rounds {
                sent += f(r * rounds + t);
            }
            sent as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn summary() {
    println!(
        "\nsfu: video packets out per core-second (1,100-byte VP8; best of 5 runs of 2,000 rounds)"
    );
    println!(
        "{:>8} {:>6} {:>12} {:>16} {:>16} {:>7}",
        "cameras", "slots", "out/round", "tambun pkt/s", "fan-out pkt/s", "ratio"
    );
    for (cams, slots) in ROOMS {
        let (mut sfu, mut packets, now) = room(cams, slots);
        let per = round(&mut sfu, &mut packets, 3, now);
        let ours = rate(|t| round(&mut sfu, &mut packets, 4 + t, now), 2000);
        let mut base = Fanout::new(cams, slots);
        let theirs = rate(|_| base.round(&packets), 2000);
        println!(
            "{cams:>8} {slots:>6} {per:>12} {ours:>16.0} {theirs:>16.0} {:>6.2}x",
            ours / theirs
        );
    }
}

criterion_group!(benches, per_round);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--summary-only") {
        summary();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo test --all-targets` runs benches once each in test mode (no `--bench`): the
    // summary's timing loops are for `cargo bench` only.
    if args.iter().any(|a| a == "--bench") {
        summary();
    }
}
