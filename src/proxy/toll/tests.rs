//! The guard on simulated time: instants are built from one base, nothing sleeps.

use super::*;

fn ext(n: &str) -> Extension {
    n.parse().unwrap()
}

fn opd(c: &str) -> OpdCode {
    c.parse().unwrap()
}

fn key(n: u32) -> CallKey {
    (format!("call-{n}"), "tag".to_owned())
}

fn limits(ce: u32, co: u32, he: u32, ho: u32) -> TollLimits {
    TollLimits {
        default: Limits {
            concurrent_per_extension: ce,
            concurrent_per_opd: co,
            per_hour_per_extension: he,
            per_hour_per_opd: ho,
        },
        opd: BTreeMap::new(),
    }
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn concurrent_per_extension_counts_calls_in_progress() {
    let mut g = TollGuard::new(limits(2, 0, 0, 0));
    let t = Instant::now();
    let (a, setda) = (ext("1000"), opd("setda"));
    assert_eq!(g.admit(key(1), &a, Some(&setda), t), Ok(()));
    assert_eq!(g.admit(key(2), &a, Some(&setda), t), Ok(()));
    assert_eq!(
        g.admit(key(3), &a, Some(&setda), t),
        Err(Rule::ConcurrentPerExtension(2))
    );
    // another extension of the same OPD is not affected
    assert_eq!(g.admit(key(4), &ext("1001"), Some(&setda), t), Ok(()));
    assert_eq!(g.active_of(&a), 2);
    // one ends: the next one goes through
    g.release(&key(1));
    g.release(&key(1)); // twice is harmless
    assert_eq!(g.active_of(&a), 1);
    assert_eq!(g.admit(key(5), &a, Some(&setda), t), Ok(()));
    let s = g.stats();
    assert_eq!((s.active, s.admitted), (3, 4));
    assert_eq!(
        s.blocked
            .get(&("concurrent-per-extension", Some(setda.clone()))),
        Some(&1)
    );
}

#[test]
fn concurrent_per_opd_spans_its_extensions() {
    let mut g = TollGuard::new(limits(0, 3, 0, 0));
    let t = Instant::now();
    let (setda, dinkes) = (opd("setda"), opd("dinkes"));
    for (i, e) in ["1000", "1001", "1002"].iter().enumerate() {
        assert_eq!(g.admit(key(i as u32), &ext(e), Some(&setda), t), Ok(()));
    }
    assert_eq!(
        g.admit(key(9), &ext("1003"), Some(&setda), t),
        Err(Rule::ConcurrentPerOpd(3))
    );
    // another OPD has its own count
    assert_eq!(g.admit(key(10), &ext("2300"), Some(&dinkes), t), Ok(()));
    g.release(&key(0));
    assert_eq!(g.admit(key(11), &ext("1003"), Some(&setda), t), Ok(()));
    assert_eq!(
        g.stats()
            .blocked
            .get(&("concurrent-per-opd", Some(setda.clone()))),
        Some(&1)
    );
}

#[test]
fn per_hour_per_extension_window_rolls() {
    let mut g = TollGuard::new(limits(0, 0, 3, 0));
    let t0 = Instant::now();
    let (a, setda) = (ext("1000"), opd("setda"));
    // calls at 0, 10 and 20 minutes (each ends at once: concurrency plays no part)
    for i in 0..3 {
        let at = t0 + MIN * 10 * i;
        assert_eq!(g.admit(key(i), &a, Some(&setda), at), Ok(()));
        g.release(&key(i));
    }
    assert_eq!(
        g.admit(key(3), &a, Some(&setda), t0 + MIN * 59),
        Err(Rule::PerHourPerExtension(3))
    );
    // just before the first call is an hour old: still refused
    assert_eq!(
        g.admit(
            key(4),
            &a,
            Some(&setda),
            t0 + HOUR - Duration::from_millis(1)
        ),
        Err(Rule::PerHourPerExtension(3))
    );
    // an hour after the first call, one slot is free again; then full until 10 minutes later
    assert_eq!(g.admit(key(5), &a, Some(&setda), t0 + HOUR), Ok(()));
    assert_eq!(
        g.admit(key(6), &a, Some(&setda), t0 + HOUR + MIN),
        Err(Rule::PerHourPerExtension(3))
    );
    assert_eq!(
        g.admit(key(7), &a, Some(&setda), t0 + HOUR + MIN * 10),
        Ok(())
    );
    // refused attempts do not use up the window
    assert_eq!(
        g.stats()
            .blocked
            .get(&("per-hour-per-extension", Some(setda))),
        Some(&3)
    );
    // another extension has its own window
    assert_eq!(g.admit(key(8), &ext("1001"), None, t0 + MIN * 59), Ok(()));
}

#[test]
fn per_hour_per_opd_window_rolls() {
    let mut g = TollGuard::new(limits(0, 0, 0, 2));
    let t0 = Instant::now();
    let setda = opd("setda");
    assert_eq!(g.admit(key(1), &ext("1000"), Some(&setda), t0), Ok(()));
    assert_eq!(
        g.admit(key(2), &ext("1001"), Some(&setda), t0 + MIN * 30),
        Ok(())
    );
    assert_eq!(
        g.admit(key(3), &ext("1002"), Some(&setda), t0 + MIN * 45),
        Err(Rule::PerHourPerOpd(2))
    );
    assert_eq!(
        g.admit(key(4), &ext("2300"), Some(&opd("dinkes")), t0 + MIN * 45),
        Ok(())
    );
    assert_eq!(
        g.admit(key(5), &ext("1002"), Some(&setda), t0 + HOUR),
        Ok(())
    );
    assert_eq!(
        g.admit(key(6), &ext("1003"), Some(&setda), t0 + HOUR),
        Err(Rule::PerHourPerOpd(2))
    );
}

#[test]
fn extension_limits_are_checked_before_opd_limits() {
    let mut g = TollGuard::new(limits(1, 1, 0, 0));
    let t = Instant::now();
    let setda = opd("setda");
    assert_eq!(g.admit(key(1), &ext("1000"), Some(&setda), t), Ok(()));
    assert_eq!(
        g.admit(key(2), &ext("1000"), Some(&setda), t),
        Err(Rule::ConcurrentPerExtension(1))
    );
    assert_eq!(
        g.admit(key(3), &ext("1001"), Some(&setda), t),
        Err(Rule::ConcurrentPerOpd(1))
    );
}

#[test]
fn zero_means_no_limit_and_opd_overrides_replace_the_defaults() {
    let mut l = limits(0, 0, 0, 0);
    l.opd.insert(
        opd("setwan"),
        Limits {
            concurrent_per_extension: 1,
            concurrent_per_opd: 0,
            per_hour_per_extension: 0,
            per_hour_per_opd: 0,
        },
    );
    let mut g = TollGuard::new(l);
    let t = Instant::now();
    for i in 0..50 {
        assert_eq!(
            g.admit(key(i), &ext("1000"), Some(&opd("setda")), t),
            Ok(())
        );
    }
    assert_eq!(
        g.admit(key(100), &ext("1205"), Some(&opd("setwan")), t),
        Ok(())
    );
    assert_eq!(
        g.admit(key(101), &ext("1205"), Some(&opd("setwan")), t),
        Err(Rule::ConcurrentPerExtension(1))
    );
    // nothing was recorded for windows without a limit
    assert!(g.hour_by_ext.is_empty() && g.hour_by_opd.is_empty());
}

#[test]
fn emergency_calls_are_never_refused_nor_counted_against_limits() {
    let mut g = TollGuard::new(limits(1, 1, 1, 1));
    let t = Instant::now();
    let setda = opd("setda");
    for i in 0..5 {
        g.admit_emergency(key(i));
    }
    assert_eq!(g.admit(key(10), &ext("1000"), Some(&setda), t), Ok(()));
    let s = g.stats();
    assert_eq!((s.active, s.admitted, s.emergency), (6, 6, 5));
    g.release(&key(0));
    assert_eq!(g.stats().active, 5);
}

#[test]
fn seeded_history_counts_for_the_hour() {
    let mut g = TollGuard::new(limits(0, 0, 2, 3));
    let t0 = Instant::now();
    let now = t0 + MIN * 60;
    let setda = opd("setda");
    // before the restart: 1000 called at minutes 50 and 5 (out of order), 1001 at minute 30
    g.seed(&ext("1000"), Some(&setda), t0 + MIN * 50);
    g.seed(&ext("1000"), Some(&setda), t0 + MIN * 5);
    g.seed(&ext("1001"), Some(&setda), t0 + MIN * 30);
    assert_eq!(
        g.admit(key(1), &ext("1000"), Some(&setda), now),
        Err(Rule::PerHourPerExtension(2))
    );
    assert_eq!(
        g.admit(key(2), &ext("1002"), Some(&setda), now),
        Err(Rule::PerHourPerOpd(3))
    );
    // at minute 65 the minute-5 call is out of the window
    let later = t0 + MIN * 65;
    assert_eq!(g.admit(key(3), &ext("1000"), Some(&setda), later), Ok(()));
}

#[test]
fn the_same_call_admitted_again_is_counted_once() {
    let mut g = TollGuard::new(limits(2, 0, 0, 0));
    let t = Instant::now();
    let a = ext("1000");
    assert_eq!(g.admit(key(1), &a, None, t), Ok(()));
    assert_eq!(g.admit(key(1), &a, None, t), Ok(()));
    assert_eq!(g.active_of(&a), 1);
    g.release(&key(1));
    assert_eq!(g.active_of(&a), 0);
    assert_eq!(g.stats().active, 0);
}

#[test]
fn rules_name_status_and_sentence() {
    assert_eq!(Rule::ConcurrentPerExtension(2).status(), 486);
    assert_eq!(Rule::PerHourPerOpd(9).status(), 403);
    assert_eq!(Rule::Permission(NumberClass::International).status(), 403);
    assert_eq!(
        Rule::PerHourPerExtension(20).to_string(),
        "trunk limit: 20 calls per hour per extension"
    );
    assert_eq!(
        Rule::Permission(NumberClass::International).to_string(),
        "international numbers not allowed"
    );
    assert_eq!(Rule::ConcurrentPerOpd(1).name(), "concurrent-per-opd");
}
