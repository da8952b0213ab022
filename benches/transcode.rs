//! The relay's transcoder (issue 11: "transcode only when offer and answer share no codec,
//! and measure its cost"): time per 20 ms packet through `media::transcode::Transcoder`
//! (push + pop: decode to 8 kHz, re-encode, new RTP header) for each pair the switch
//! transcodes, and what that means in calls per core (a call = 50 packets a second each way,
//! both directions' costs added). Baseline in the same run: the same packets copied into a
//! new buffer (what a plain forward costs in user space, before the socket).
//!
//!   cargo bench --bench transcode -- --summary-only

use std::hint::black_box;
use std::time::{Duration, Instant};

use tambun::media::mixer::g711::Law;
use tambun::media::transcode::{Codec, CodecSpec, Transcoder, MAX_PACKET};

fn spec(codec: Codec) -> CodecSpec {
    let pt = match codec {
        Codec::G711(Law::Mu) => 0,
        Codec::G711(Law::A) => 8,
        Codec::G722 => 9,
        Codec::Opus => 111,
    };
    CodecSpec {
        codec,
        pt,
        dtmf: None,
    }
}

/// 50 packets (1 s) of speech-like audio in `codec`, made by transcoding a μ-law tone.
fn packets(codec: Codec) -> Vec<Vec<u8>> {
    let mut t = Transcoder::new(spec(Codec::G711(Law::Mu)), spec(codec), 1);
    let mut out = [0u8; MAX_PACKET];
    (0..50u32)
        .map(|n| {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&(n as u16).to_be_bytes());
            p.extend_from_slice(&(n * 160).to_be_bytes());
            p.extend_from_slice(&7u32.to_be_bytes());
            for i in 0..160u32 {
                let t = f64::from(n * 160 + i) / 8000.0;
                let s = 4000.0 * (std::f64::consts::TAU * 440.0 * t).sin()
                    + 1500.0 * (std::f64::consts::TAU * 1250.0 * t).sin();
                p.push(Law::Mu.encode(s as i16));
            }
            if codec == Codec::G711(Law::Mu) {
                return p;
            }
            assert!(t.push(&p));
            let n = t.pop(&mut out).expect("a packet");
            out[..n].to_vec()
        })
        .collect()
}

/// Best of 5 runs of 1,000 packets: time per packet.
fn per_packet(mut f: impl FnMut(usize)) -> Duration {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for k in 0..1000 {
                f(k);
            }
            start.elapsed() / 1000
        })
        .min()
        .unwrap_or_default()
}

fn through(from: Codec, to: Codec) -> Duration {
    let input = packets(from);
    let mut t = Transcoder::new(spec(from), spec(to), 3);
    let mut out = [0u8; MAX_PACKET];
    per_packet(|k| {
        t.push(&input[k % input.len()]);
        black_box(t.pop(&mut out));
    })
}

fn main() {
    let pcmu = Codec::G711(Law::Mu);
    let input = packets(pcmu);
    let mut buf = vec![0u8; 2048];
    let copy = per_packet(|k| {
        let p = &input[k % input.len()];
        buf[..p.len()].copy_from_slice(p);
        black_box(&buf);
    });
    println!(
        "\ntranscode: µs per 20 ms packet (best of 5 × 1,000), calls per core (50 pps each way)"
    );
    println!(
        "{:>22} {:>12} {:>12} {:>14} {:>14}",
        "call (caller ↔ callee)", "a→b µs", "b→a µs", "calls/core", "vs copy"
    );
    let calls = |d: Duration| 1.0 / (50.0 * d.as_secs_f64());
    println!(
        "{:>22} {:>12.3} {:>12.3} {:>14.0} {:>14}",
        "copy (plain forward)",
        copy.as_secs_f64() * 1e6,
        copy.as_secs_f64() * 1e6,
        calls(copy * 2),
        "1"
    );
    for (name, a) in [
        ("Opus ↔ PCMU", Codec::Opus),
        ("G.722 ↔ PCMU", Codec::G722),
        ("PCMA ↔ PCMU", Codec::G711(Law::A)),
    ] {
        let there = through(a, pcmu);
        let back = through(pcmu, a);
        println!(
            "{:>22} {:>12.2} {:>12.2} {:>14.0} {:>13.4}x",
            name,
            there.as_secs_f64() * 1e6,
            back.as_secs_f64() * 1e6,
            calls(there + back),
            calls(there + back) / calls(copy * 2),
        );
    }
    println!("(the transcoder alone: sockets, the table and SRTP come on top, as for any call)");
}
