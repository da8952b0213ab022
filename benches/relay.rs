//! The relay's per-packet path in ns/packet: `Table::handle_packet` (slot lookup, latch check,
//! RTP sequence/jitter counters) on a latched stream with a 172-byte G.711 packet, next to two
//! baselines in the same run: copying the packet (what any relay must at least touch), and the
//! bare forwarder's path (lookup of the destination only).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tambun::media::table::{Table, Verdict};
use tambun::media::{SessionId, Side};

fn packet(seq: u16) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    p
}

/// A table of `sessions` sessions with stream 0 of each announced and latched both ways.
fn table(bare: bool, sessions: u64) -> (Table, Vec<tambun::media::table::StreamSlots>) {
    let now = Instant::now();
    let mut t = Table::new(bare);
    let mut slots = Vec::new();
    for i in 0..sessions {
        let s = t.handle_open(SessionId(i), i, 1, true, now)[0];
        let a: SocketAddr = ([127, 0, 0, 1], 20000 + 2 * i as u16).into();
        let b: SocketAddr = ([127, 0, 0, 1], 30000 + 2 * i as u16).into();
        t.handle_set_remote(SessionId(i), 0, Side::A, a, None, now);
        t.handle_set_remote(SessionId(i), 0, Side::B, b, None, now);
        t.handle_packet(s.rtp[0], a, &packet(0), now);
        t.handle_packet(s.rtp[1], b, &packet(0), now);
        slots.push(s);
    }
    (t, slots)
}

fn per_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_packet");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.throughput(Throughput::Elements(1));

    let pkt = packet(1);
    let mut out = [0u8; 2048];
    g.bench_function("baseline_copy_172B", |bench| {
        bench.iter(|| {
            out[..172].copy_from_slice(black_box(&pkt));
            black_box(&out);
        })
    });

    // 1,000 sessions (2,000 sockets): the table is larger than L1, as in production.
    let n = 1000u64;
    let (mut bare, slots) = table(true, n);
    let now = Instant::now();
    let mut i = 0usize;
    g.bench_function("bare_lookup", |bench| {
        bench.iter(|| {
            i = (i + 7) % slots.len();
            let slot = slots[i].rtp[0];
            let src: SocketAddr = ([127, 0, 0, 1], 20000 + 2 * i as u16).into();
            black_box(bare.handle_packet(slot, src, black_box(&pkt), now))
        })
    });

    let (mut full, slots) = table(false, n);
    let mut seqs = vec![1u16; slots.len()];
    let t0 = Instant::now();
    let mut tick = 0u64;
    let mut p = packet(1);
    g.bench_function("full_latch_counters", |bench| {
        bench.iter(|| {
            i = (i + 7) % slots.len();
            let slot = slots[i].rtp[0];
            let src: SocketAddr = ([127, 0, 0, 1], 20000 + 2 * i as u16).into();
            seqs[i] = seqs[i].wrapping_add(1);
            p[2..4].copy_from_slice(&seqs[i].to_be_bytes());
            p[4..8].copy_from_slice(&(seqs[i] as u32 * 160).to_be_bytes());
            tick += 1;
            let now = t0 + Duration::from_micros(20 * tick);
            let v = full.handle_packet(slot, src, black_box(&p), now);
            debug_assert!(matches!(v, Verdict::Forward { .. }));
            black_box(v)
        })
    });
    g.finish();
}

criterion_group!(benches, per_packet);
criterion_main!(benches);
