//! The inactivity event: fires once the configured silence has passed, and not before.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use tambun::media::blocking::BlockingRelay;
use tambun::media::{MediaEvent, RelayConfig, Side};

#[test]
fn inactivity_fires_after_the_timeout_and_not_before() {
    let timeout = Duration::from_millis(400);
    let mut relay = BlockingRelay::start(RelayConfig {
        port_range: (11400, 11499),
        bind: "127.0.0.1".parse().unwrap(),
        threads: 1,
        inactivity: timeout,
        ..RelayConfig::default()
    })
    .unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let session = relay.open(42, 1, true).unwrap();
    relay
        .set_remote(session.id, 0, Side::B, b.local_addr().unwrap())
        .unwrap();
    let rtp = [0x80u8, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];

    // Traffic every 100 ms for 1 s keeps the session alive.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) {
        a.send_to(&rtp, session.streams[0].a.rtp).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(relay.poll_event(), None, "event during traffic");
    }
    let silent_from = Instant::now();
    let event = relay.wait_event(Duration::from_secs(5));
    let waited = silent_from.elapsed();
    assert_eq!(
        event,
        Some(MediaEvent::Inactive {
            session: session.id,
            call: 42
        })
    );
    assert!(
        waited >= timeout - Duration::from_millis(110),
        "fired early: {waited:?}"
    );
    assert!(waited < timeout * 3, "fired late: {waited:?}");
    // Once per silence.
    assert_eq!(relay.wait_event(timeout), None);
    relay.close(session.id).unwrap();
}
