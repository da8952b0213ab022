//! The conference mixer's cost per 20 ms tick (issue 12): a room of N G.711 participants, of
//! which a fixed share talk (a tone above the talk threshold) and the rest send quiet noise
//! (as phones do between words). One tick = N RTP packets in (`handle_rtp`), the mix
//! (`handle_timeout`) and N packets out (`poll_transmit`, bytes touched). Next to it in the
//! same run, the baseline every mixer must beat: decode everyone, and give each participant
//! its own N−1 mix, encoded for it (no talker detection, no shared encodings).
//!
//! Besides criterion's report, it prints participants per core for both and their ratio:
//! participants × (20 ms / time per tick). The machine is shared and noisy: compare the two
//! numbers of one run, not numbers of different runs.
//!
//!   cargo bench --bench mixer
//!   cargo bench --bench mixer -- --summary-only      (only the printed summary)

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use tambun::media::mixer::g711::Law;
use tambun::media::mixer::g722::G722;
use tambun::media::mixer::{
    Codec, Mixer, MixerConfig, ParticipantId, ParticipantSpec, FRAME, FRAME_SAMPLES,
};

/// (participants, talkers) of the rooms measured.
const ROOMS: [(usize, usize); 3] = [(10, 3), (50, 4), (200, 5)];

/// Frame `n` of participant `k`: a tone for talkers, quiet noise for the others.
fn frame(k: usize, n: u32, talker: bool) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&(n as u16).to_be_bytes());
    p.extend_from_slice(&(n * 160).to_be_bytes());
    p.extend_from_slice(&(k as u32).to_be_bytes());
    let hz = 300.0 + 97.0 * k as f64;
    for i in 0..160u32 {
        let t = f64::from(n * 160 + i) / 8000.0;
        let s = if talker {
            4000.0 * (std::f64::consts::TAU * hz * t).sin()
        } else {
            // About −60 dBov of noise: under the talk threshold.
            f64::from(((i * 7919 + n * 104_729 + k as u32 * 31) % 61) as i32 - 30)
        };
        p.push(Law::Mu.encode(s as i16));
    }
    p
}

/// A room of `n` participants with `talkers` talking, warmed up (playout and talker
/// detection settled), and the next frame index.
fn room(n: usize, talkers: usize) -> (Mixer, Vec<ParticipantId>, Vec<Vec<Vec<u8>>>, Instant) {
    room_of(n, talkers, Codec::G711(Law::Mu))
}

/// The same frames as [`frame`], coded as G.722 (payload type 9) by one encoder per
/// participant.
fn g722_frames(k: usize, talker: bool) -> Vec<Vec<u8>> {
    let mut enc = G722::default();
    (0..50u32)
        .map(|n| {
            let mu = frame(k, n, talker);
            let mut pcm = [0i32; FRAME_SAMPLES];
            for (s, b) in pcm.iter_mut().zip(&mu[12..]) {
                *s = i32::from(Law::Mu.decode(*b));
            }
            let mut coded = [0u8; FRAME_SAMPLES];
            enc.encode(&pcm, &mut coded);
            let mut p = mu[..12].to_vec();
            p[1] = 9;
            p.extend_from_slice(&coded);
            p
        })
        .collect()
}

/// The same frames as [`frame`], as a browser sends them in Opus (payload type 111, a 48 kHz
/// clock, 32 kbps VoIP from 48 kHz audio: the 8 kHz samples repeated six times).
fn opus_frames(k: usize, talker: bool) -> Vec<Vec<u8>> {
    let mut enc = opus_rs::OpusEncoder::new(48000, 1, opus_rs::Application::Voip).unwrap();
    enc.bitrate_bps = 32000;
    let mut out = [0u8; 1500];
    (0..50u32)
        .map(|n| {
            let mu = frame(k, n, talker);
            let pcm: Vec<i16> = mu[12..]
                .iter()
                .flat_map(|b| [Law::Mu.decode(*b); 6])
                .collect();
            let len = enc.encode_i16(&pcm, 960, &mut out).unwrap();
            let mut p = mu[..12].to_vec();
            p[1] = 111;
            p.extend_from_slice(&out[..len]);
            p
        })
        .collect()
}

/// RTP clock per 20 ms frame of a codec.
fn clock(codec: Codec) -> u32 {
    match codec {
        Codec::Opus => 960,
        _ => 160,
    }
}

/// [`room`] with every participant on `codec`.
fn room_of(
    n: usize,
    talkers: usize,
    codec: Codec,
) -> (Mixer, Vec<ParticipantId>, Vec<Vec<Vec<u8>>>, Instant) {
    let mut m = Mixer::new(MixerConfig {
        tones: false,
        ..MixerConfig::default()
    });
    let mut now = Instant::now();
    let ids: Vec<_> = (0..n)
        .map(|k| {
            m.add(
                ParticipantSpec {
                    codec,
                    pt: match codec {
                        Codec::G722 => 9,
                        Codec::Opus => 111,
                        Codec::G711(_) => 0,
                    },
                    dtmf_pt: Some(101),
                    ssrc: k as u32,
                    pin: None,
                },
                now,
            )
        })
        .collect();
    // 50 frames of each, reused in a loop (their timestamps are rewritten per tick).
    let mut frames: Vec<Vec<Vec<u8>>> = (0..n)
        .map(|k| match codec {
            Codec::G722 => g722_frames(k, k < talkers),
            Codec::Opus => opus_frames(k, k < talkers),
            Codec::G711(_) => (0..50).map(|f| frame(k, f, k < talkers)).collect(),
        })
        .collect();
    for t in 0..40u32 {
        tick(&mut m, &ids, &mut frames, t, &mut now, clock(codec));
    }
    (m, ids, frames, now)
}

/// One tick of the room: every participant's frame `t` in, the mix, everything out.
fn tick(
    m: &mut Mixer,
    ids: &[ParticipantId],
    frames: &mut [Vec<Vec<u8>>],
    t: u32,
    now: &mut Instant,
    clock: u32,
) -> usize {
    for (k, id) in ids.iter().enumerate() {
        let p = &mut frames[k][(t % 50) as usize];
        p[2..4].copy_from_slice(&(t as u16).to_be_bytes());
        p[4..8].copy_from_slice(&t.wrapping_mul(clock).to_be_bytes());
        let _ = m.handle_rtp(*id, p, *now);
    }
    *now += FRAME;
    m.handle_timeout(*now);
    let mut bytes = 0;
    while let Some((_, b)) = m.poll_transmit() {
        bytes += b.len();
    }
    bytes
}

/// The baseline: decode every frame, and for each participant sum all the others and encode.
struct Naive {
    pcm: Vec<[i16; 160]>,
    out: Vec<u8>,
}

impl Naive {
    fn tick(&mut self, frames: &[Vec<Vec<u8>>], t: u32) -> usize {
        let n = frames.len();
        for (k, f) in frames.iter().enumerate() {
            Law::Mu.decode_frame(&f[(t % 50) as usize][12..], &mut self.pcm[k]);
        }
        self.out.clear();
        let mut mix = [0i32; 160];
        for k in 0..n {
            mix.fill(0);
            for (j, pcm) in self.pcm.iter().enumerate() {
                if j != k {
                    for (m, s) in mix.iter_mut().zip(pcm) {
                        *m += i32::from(*s);
                    }
                }
            }
            let mut coded = [0u8; 160];
            Law::Mu.encode_frame(&mix, &mut coded);
            self.out
                .extend_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            self.out.extend_from_slice(&coded);
        }
        self.out.len()
    }
}

fn naive(n: usize) -> Naive {
    Naive {
        pcm: vec![[0; 160]; n],
        out: Vec::new(),
    }
}

fn per_tick(c: &mut Criterion) {
    let mut g = c.benchmark_group("mixer_tick");
    g.measurement_time(Duration::from_secs(3));
    for (n, talkers) in ROOMS {
        let (mut m, ids, mut frames, mut now) = room(n, talkers);
        let mut t = 40u32;
        g.bench_function(format!("tambun/{n}p_{talkers}t"), |b| {
            b.iter(|| {
                t += 1;
                black_box(tick(&mut m, &ids, &mut frames, t, &mut now, 160))
            })
        });
        let mut base = naive(n);
        g.bench_function(format!("naive_n-1/{n}p"), |b| {
            b.iter(|| {
                t += 1;
                black_box(base.tick(&frames, t))
            })
        });
    }
    g.finish();
}

/// Time per tick over `ticks` ticks, best of 5 runs (the least disturbed by other work).
fn measure(mut f: impl FnMut(u32), ticks: u32) -> Duration {
    (0..5)
        .map(|r| {
            let start = Instant::now();
            for t in 0..ticks {
                f(r * ticks + t);
            }
            start.elapsed() / ticks
        })
        .min()
        .unwrap_or_default()
}

/// Time per tick of a warmed-up room of `n` (`talkers` talking), all on `codec`.
fn room_tick_time(n: usize, talkers: usize, codec: Codec) -> Duration {
    let (mut m, ids, mut frames, mut now) = room_of(n, talkers, codec);
    measure(
        |t| {
            black_box(tick(
                &mut m,
                &ids,
                &mut frames,
                40 + t,
                &mut now,
                clock(codec),
            ));
        },
        500,
    )
}

fn summary() {
    println!("\nmixer: participants per core (20 ms G.711 frames; best of 5 runs of 500 ticks)");
    println!(
        "{:>12} {:>8} {:>14} {:>14} {:>16} {:>7}",
        "participants", "talkers", "tambun µs/tick", "naive µs/tick", "tambun p/core", "ratio"
    );
    for (n, talkers) in ROOMS {
        let ours = room_tick_time(n, talkers, Codec::G711(Law::Mu));
        let (_, _, frames, _) = room(n, talkers);
        let mut base = naive(n);
        let theirs = measure(
            |t| {
                black_box(base.tick(&frames, t));
            },
            500,
        );
        let per_core = |d: Duration| n as f64 * FRAME.as_secs_f64() / d.as_secs_f64();
        println!(
            "{n:>12} {talkers:>8} {:>14.1} {:>14.1} {:>16.0} {:>6.1}x",
            ours.as_secs_f64() * 1e6,
            theirs.as_secs_f64() * 1e6,
            per_core(ours),
            per_core(ours) / per_core(theirs),
        );
    }
    println!("(tambun includes parsing N RTP packets and writing N; the baseline only mixes)");
    // G.722: every participant decoded and encoded every tick (ADPCM has state), next to the
    // same room in G.711 in this run.
    println!("\nmixer: G.722 rooms (every participant G.722) next to the same rooms in G.711");
    println!(
        "{:>12} {:>8} {:>14} {:>14} {:>16} {:>7}",
        "participants", "talkers", "g722 µs/tick", "g711 µs/tick", "g722 p/core", "ratio"
    );
    for (n, talkers) in [(10, 3), (50, 4)] {
        let wide = room_tick_time(n, talkers, Codec::G722);
        let narrow = room_tick_time(n, talkers, Codec::G711(Law::Mu));
        let per_core = |d: Duration| n as f64 * FRAME.as_secs_f64() / d.as_secs_f64();
        println!(
            "{n:>12} {talkers:>8} {:>14.1} {:>14.1} {:>16.0} {:>6.2}x",
            wide.as_secs_f64() * 1e6,
            narrow.as_secs_f64() * 1e6,
            per_core(wide),
            per_core(wide) / per_core(narrow),
        );
    }
    // Opus: everyone decoded on arrival (48 kHz packets to 8 kHz), talkers encoded on their
    // own, one shared encoding for the listeners; next to the same rooms in G.711.
    println!("\nmixer: Opus rooms (every participant Opus, 32 kbps from 48 kHz) next to G.711");
    println!(
        "{:>12} {:>8} {:>14} {:>14} {:>16} {:>7}",
        "participants", "talkers", "opus µs/tick", "g711 µs/tick", "opus p/core", "ratio"
    );
    for (n, talkers) in [(10, 3), (50, 4), (200, 5)] {
        let opus = room_tick_time(n, talkers, Codec::Opus);
        let narrow = room_tick_time(n, talkers, Codec::G711(Law::Mu));
        let per_core = |d: Duration| n as f64 * FRAME.as_secs_f64() / d.as_secs_f64();
        println!(
            "{n:>12} {talkers:>8} {:>14.1} {:>14.1} {:>16.0} {:>6.3}x",
            opus.as_secs_f64() * 1e6,
            narrow.as_secs_f64() * 1e6,
            per_core(opus),
            per_core(opus) / per_core(narrow),
        );
    }
}

criterion_group!(benches, per_tick);

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
