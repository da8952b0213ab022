//! Port accounting: 1,000 sessions opened and closed leave no port in use, and the range is
//! reusable; an exhausted range is an error, not a panic.
//!
//! The relay engine tests (`relay_*`) use fixed port ranges, each its own, all in 11000-17999:
//! below the kernel's ephemeral range (32768 and up), where the sockets other tests of this
//! process bind on port 0 land, and below the 18000-31999 of the test switches' relay ranges
//! (`common::media::rtp_range`). So a test running beside them cannot take their ports.

use std::net::UdpSocket;

use tambun::media::blocking::BlockingRelay;
use tambun::media::{RelayConfig, RelayError};

fn relay(range: (u16, u16)) -> BlockingRelay {
    BlockingRelay::start(RelayConfig {
        port_range: range,
        bind: "127.0.0.1".parse().unwrap(),
        threads: 2,
        ..RelayConfig::default()
    })
    .unwrap()
}

#[test]
fn a_thousand_sessions_leave_nothing_behind() {
    let mut relay = relay((12000, 16999));
    let mut sessions = Vec::new();
    for call in 0..1000u64 {
        let mux = call % 2 == 0;
        sessions.push(relay.open(call, 1, mux).unwrap());
    }
    assert_eq!(relay.ports_in_use(), 500 * 2 + 500 * 4);
    let mut seen = std::collections::HashSet::new();
    for s in &sessions {
        for p in [s.streams[0].a.rtp, s.streams[0].b.rtp] {
            assert!(seen.insert(p.port()), "port {} handed out twice", p.port());
        }
    }
    for s in sessions {
        relay.close(s.id).unwrap();
    }
    assert_eq!(relay.ports_in_use(), 0);
    assert_eq!(relay.sessions(), 0);
    // The whole range is usable again: fill it with rtcp-mux sessions.
    // 2,500 pairs, two per rtcp-mux session.
    let capacity = 2500 / 2;
    let mut again = Vec::new();
    for call in 0..capacity as u64 {
        match relay.open(call, 1, true) {
            Ok(s) => again.push(s),
            // A pair another process holds is skipped, so a few may be missing.
            Err(RelayError::PortsExhausted) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        again.len() + 10 >= capacity,
        "only {} of {capacity}",
        again.len()
    );
    for s in again {
        relay.close(s.id).unwrap();
    }
    assert_eq!(relay.ports_in_use(), 0);
}

#[test]
fn exhausted_range_and_busy_ports() {
    // 4 pairs; one port taken by someone else.
    let _squatter = UdpSocket::bind("127.0.0.1:17002");
    let mut relay = relay((17000, 17007));
    let s1 = relay.open(1, 1, true).unwrap();
    for p in [s1.streams[0].a.rtp, s1.streams[0].b.rtp] {
        assert_ne!(p.port(), 17002, "a busy pair handed to a session");
    }
    assert!(matches!(
        relay.open(2, 1, true),
        Err(RelayError::PortsExhausted)
    ));
    assert_eq!(relay.ports_in_use(), 2);
    relay.close(s1.id).unwrap();
    assert!(matches!(
        relay.close(s1.id),
        Err(RelayError::UnknownSession(_))
    ));
    assert_eq!(relay.ports_in_use(), 0);
    assert!(relay.open(3, 1, true).is_ok());
}
