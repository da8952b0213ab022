//! Routing decision time with all shipped plans loaded: an internal call, the `0` short code
//! with a time rule, a national outside number and a ring group; plus the block-owner lookup
//! alone as a baseline, so results read as ratios on any machine.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tambun::dialplan::{Dialplan, Directory, Features};
use tambun::types::Extension;

/// Mon 2025-03-03 20:00 WIB: after office hours, so the time rule's `when` is taken.
const MON_2000: i64 = 1_740_967_200 + 11 * 3600;

/// Every extension assigned, no features: the cost measured is the plan's, not a directory's.
struct Everyone;

impl Directory for Everyone {
    fn is_assigned(&self, _: &Extension) -> bool {
        true
    }
    fn features(&self, _: &Extension) -> Features {
        Features::default()
    }
}

fn routing(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplan");
    let plan = Dialplan::load_dir(&dir).expect("the shipped dialplan loads");
    let ext = |s: &str| -> Extension { s.parse().expect("extension") };
    let (setwan, dinkes, setda, diskominfo) = (ext("1205"), ext("2301"), ext("1010"), ext("3501"));

    let mut g = c.benchmark_group("routing");
    g.bench_function("baseline_opd_of", |b| {
        b.iter(|| black_box(plan.opd_of(black_box(&dinkes))))
    });
    g.bench_function("internal_extension", |b| {
        b.iter(|| black_box(plan.route(&setwan, black_box("2301"), MON_2000, &Everyone)))
    });
    g.bench_function("short_code_0_time_rule", |b| {
        b.iter(|| black_box(plan.route(&dinkes, black_box("0"), MON_2000, &Everyone)))
    });
    g.bench_function("outside_national", |b| {
        b.iter(|| black_box(plan.route(&setda, black_box("90511234567"), MON_2000, &Everyone)))
    });
    g.bench_function("ring_group", |b| {
        b.iter(|| black_box(plan.route(&diskominfo, black_box("3550"), MON_2000, &Everyone)))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = routing
}
criterion_main!(benches);
