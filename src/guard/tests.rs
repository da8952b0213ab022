//! The guard on simulated time.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

struct Clock {
    start: Instant,
    offset: Duration,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            start: Instant::now(),
            offset: Duration::ZERO,
        }
    }
    fn now(&self) -> Now {
        Now {
            instant: self.start + self.offset,
            unix: 1_800_000_000 + self.offset.as_secs(),
            unix_ms: 1_800_000_000_000 + self.offset.as_millis() as u64,
        }
    }
    fn advance(&mut self, d: Duration) {
        self.offset += d;
    }
}

fn guard(edit: impl FnOnce(&mut Settings)) -> Guard {
    let mut c = Settings::default();
    edit(&mut c);
    Guard::new(&c).unwrap()
}

#[test]
fn tenth_auth_failure_in_a_minute_bans_for_ten_minutes() {
    let mut clock = Clock::new();
    let mut g = guard(|_| {});
    let bad = ip("192.0.2.7");
    for _ in 0..9 {
        g.handle_auth_failure(bad, clock.now());
        assert!(!g.drop_source(bad, clock.now()));
    }
    g.handle_auth_failure(bad, clock.now());
    assert!(
        g.drop_source(bad, clock.now()),
        "banned at the 10th failure"
    );
    assert!(!g.drop_source(ip("192.0.2.8"), clock.now()), "others pass");
    let bans = g.drain_new_bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].address, bad);
    assert_eq!(bans[0].reason, "auth-failures");
    assert_eq!(bans[0].expires_at, Some(clock.now().unix as i64 + 600));
    assert_eq!(g.stats.auth_failures, 10);
    assert_eq!(g.stats.bans_added, 1);
    assert_eq!(g.stats.dropped_banned, 1);
    assert_eq!(g.bans_active(clock.now().unix), 1);

    clock.advance(Duration::from_secs(599));
    g.handle_timeout(clock.now());
    assert!(g.drop_source(bad, clock.now()));
    clock.advance(Duration::from_secs(1));
    assert!(!g.drop_source(bad, clock.now()), "the ban ends after 600 s");
    g.handle_timeout(clock.now());
    assert_eq!(g.bans_active(clock.now().unix), 0);
}

#[test]
fn slow_failures_never_ban() {
    let mut clock = Clock::new();
    let mut g = guard(|_| {});
    let typo = ip("192.0.2.9");
    // A phone with a wrong password retrying every 10 s: 6 a minute, for an hour.
    for _ in 0..360 {
        g.handle_auth_failure(typo, clock.now());
        clock.advance(Duration::from_secs(10));
        g.handle_timeout(clock.now());
    }
    assert!(!g.drop_source(typo, clock.now()));
    assert!(g.drain_new_bans().is_empty());
}

#[test]
fn allow_list_is_never_banned_or_limited() {
    let clock = Clock::new();
    let mut g = guard(|c| c.allow = vec!["10.20.0.0/16".into()]);
    let opd = ip("10.20.3.4");
    for _ in 0..1000 {
        g.handle_auth_failure(opd, clock.now());
        assert_eq!(
            g.admit_request(opd, Some("Yealink"), clock.now()),
            Admission::Pass
        );
    }
    assert!(!g.drop_source(opd, clock.now()));
    assert!(g.drain_new_bans().is_empty());
    assert_eq!(g.stats.auth_failures, 1000, "still counted");
    // A ban of an allow-listed address read from the store is ignored.
    g.handle_bans(
        vec![Ban {
            address: opd,
            reason: "operator".into(),
            created_at: 0,
            expires_at: None,
        }],
        clock.now(),
    );
    assert!(!g.drop_source(opd, clock.now()));
}

#[test]
fn rate_limit_then_flood_ban() {
    let mut clock = Clock::new();
    let mut g = guard(|c| {
        c.requests_per_sec = 10;
        c.request_burst = 20;
        c.flood_drops = 50;
    });
    let flooder = ip("192.0.2.10");
    let phone = ip("192.0.2.11");
    let mut passed = 0;
    let mut dropped = 0;
    for _ in 0..60 {
        match g.admit_request(flooder, None, clock.now()) {
            Admission::Pass => passed += 1,
            Admission::Drop(DropReason::RateLimited) => dropped += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        (passed, dropped),
        (20, 40),
        "the burst passes, the rest is dropped"
    );
    assert_eq!(
        g.admit_request(phone, None, clock.now()),
        Admission::Pass,
        "another source is not affected"
    );
    // One second later ten more pass.
    clock.advance(Duration::from_secs(1));
    let passed = (0..10)
        .filter(|_| g.admit_request(flooder, None, clock.now()) == Admission::Pass)
        .count();
    assert_eq!(passed, 10);
    assert!(g.drain_new_bans().is_empty(), "40 drops: not yet a flood");
    for _ in 0..10 {
        g.admit_request(flooder, None, clock.now());
    }
    let bans = g.drain_new_bans();
    assert_eq!(bans.len(), 1, "the 50th drop bans");
    assert_eq!(bans[0].reason, "flood");
    assert!(g.drop_source(flooder, clock.now()));
    assert_eq!(g.stats.dropped_rate_limited, 50);
}

#[test]
fn scanner_user_agents_dropped_and_banned() {
    let clock = Clock::new();
    let mut g = guard(|_| {});
    let scanner = ip("192.0.2.12");
    assert_eq!(
        g.admit_request(scanner, Some("friendly-scanner"), clock.now()),
        Admission::Drop(DropReason::Scanner)
    );
    assert_eq!(
        g.admit_request(ip("192.0.2.13"), Some("SIPVicious 0.3"), clock.now()),
        Admission::Drop(DropReason::Scanner),
        "case-insensitive substring"
    );
    assert_eq!(
        g.admit_request(ip("192.0.2.14"), Some("Yealink SIP-T46S"), clock.now()),
        Admission::Pass
    );
    assert!(g.drop_source(scanner, clock.now()));
    let bans = g.drain_new_bans();
    assert_eq!(bans.len(), 2);
    assert!(bans[0].reason.contains("friendly-scanner"), "{:?}", bans[0]);

    let mut g = guard(|c| c.ban_scanners = false);
    assert_eq!(
        g.admit_request(scanner, Some("sipcli/v1.8"), clock.now()),
        Admission::Drop(DropReason::Scanner)
    );
    assert!(!g.drop_source(scanner, clock.now()));
}

#[test]
fn store_list_replaces_bans_but_keeps_fresh_own_ones() {
    let mut clock = Clock::new();
    let mut g = guard(|c| c.auth_failures = 1);
    let operator_ban = Ban {
        address: ip("198.51.100.1"),
        reason: "seen on the firewall".into(),
        created_at: 0,
        expires_at: None,
    };
    g.handle_bans(vec![operator_ban.clone()], clock.now());
    assert!(g.drop_source(ip("198.51.100.1"), clock.now()));
    // The switch bans a source; a list read just before the write does not have it.
    g.handle_auth_failure(ip("198.51.100.2"), clock.now());
    g.handle_bans(vec![operator_ban.clone()], clock.now());
    assert!(g.drop_source(ip("198.51.100.2"), clock.now()));
    // Later lists are the truth: `tambun ban rm` removed both.
    clock.advance(Duration::from_secs(10));
    g.handle_bans(Vec::new(), clock.now());
    assert!(!g.drop_source(ip("198.51.100.1"), clock.now()));
    assert!(!g.drop_source(ip("198.51.100.2"), clock.now()));
    // Expired bans in the list do not drop.
    g.handle_bans(
        vec![Ban {
            expires_at: Some(clock.now().unix as i64 - 1),
            ..operator_ban
        }],
        clock.now(),
    );
    assert!(!g.drop_source(ip("198.51.100.1"), clock.now()));
}

#[test]
fn overload_rule() {
    let mut g = guard(|c| {
        c.max_transactions = 100;
        c.max_queue = 50;
        c.retry_after_secs = 7;
    });
    assert!(!g.overloaded(99));
    assert!(g.overloaded(100));
    g.handle_queue_depth(50);
    assert!(g.overloaded(0));
    g.handle_queue_depth(10);
    assert!(!g.overloaded(0));
    assert_eq!(g.overload_rejected(), "Retry-After: 7");
    assert_eq!(g.stats.overload_rejected, 1);
    assert!(!Guard::disabled().overloaded(usize::MAX));
}

#[test]
fn idle_sources_forgotten_and_table_bounded() {
    let mut clock = Clock::new();
    let mut g = guard(|c| c.max_sources = 3);
    for i in 0..10 {
        g.admit_request(ip(&format!("192.0.2.{i}")), None, clock.now());
    }
    assert_eq!(g.tracked_sources(), 3);
    clock.advance(Duration::from_secs(61));
    g.handle_timeout(clock.now());
    assert_eq!(g.tracked_sources(), 0);
    assert_eq!(g.poll_timeout(), None);
}

#[test]
fn an_ipv6_attacker_rotating_addresses_in_its_64_is_banned_as_one_source() {
    let mut clock = Clock::new();
    let mut g = guard(|c| c.allow = vec!["2001:db8:1:2::5/128".into()]);
    // Ten failures, each from another address of the same /64.
    for i in 0..10u16 {
        let addr = IpAddr::from([0x2001, 0xdb8, 1, 2, 0xa, 0, 0, i]);
        assert!(!g.drop_source(addr, clock.now()));
        g.handle_auth_failure(addr, clock.now());
    }
    let bans = g.drain_new_bans();
    assert_eq!(bans.len(), 1, "one ban for the /64");
    assert_eq!(bans[0].address, ip("2001:db8:1:2::"));
    assert!(
        g.drop_source(ip("2001:db8:1:2:ffff::1"), clock.now()),
        "a fresh address of the banned /64 is dropped"
    );
    assert!(
        !g.drop_source(ip("2001:db8:1:2::5"), clock.now()),
        "an allow-listed address inside the banned /64 still passes"
    );
    assert!(
        !g.drop_source(ip("2001:db8:1:3::1"), clock.now()),
        "the next /64 is another source"
    );
    // The ban list from the store (`tambun ban add 2001:db8:9::7`) bans that address's /64;
    // it replaces the list once the guard's own ban is older than its grace.
    clock.advance(Duration::from_secs(6));
    let operator = Ban {
        address: ip("2001:db8:9::7"),
        reason: "operator".into(),
        created_at: clock.now().unix as i64,
        expires_at: None,
    };
    g.handle_bans(vec![operator], clock.now());
    assert!(g.drop_source(ip("2001:db8:9::8"), clock.now()));
    assert!(
        !g.drop_source(ip("2001:db8:1:2::1"), clock.now()),
        "the list replaced it"
    );
}

#[test]
fn an_ipv4_mapped_source_is_its_ipv4_address() {
    let clock = Clock::new();
    let mut g = guard(|_| {});
    for _ in 0..10 {
        g.handle_auth_failure(ip("::ffff:192.0.2.44"), clock.now());
    }
    assert!(g.drop_source(ip("192.0.2.44"), clock.now()));
    assert_eq!(g.drain_new_bans()[0].address, ip("192.0.2.44"));
}
