//! Symmetric latching on loopback: a phone whose SDP names an address it does not send from
//! (NAT) still gets two-way audio, and a third party sending to a latched port is dropped and
//! counted.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tambun::media::blocking::BlockingRelay;
use tambun::media::{Direction, RelayConfig, Side};

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p
}

fn receive(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    s.recv_from(&mut buf)
        .ok()
        .map(|(n, from)| (buf[..n].to_vec(), from))
}

#[test]
fn nat_phone_is_latched_and_a_third_party_is_dropped() {
    let mut relay = BlockingRelay::start(RelayConfig {
        port_range: (11200, 11299),
        bind: "127.0.0.1".parse().unwrap(),
        threads: 1,
        ..RelayConfig::default()
    })
    .unwrap();
    // A's SDP says X, but A really sends from (and listens on) Y.
    let announced_x = phone();
    let real_y = phone();
    let b = phone();
    let intruder = phone();
    let session = relay.open(7, 1, true).unwrap();
    let ports = session.streams[0];
    relay
        .set_remote(session.id, 0, Side::A, announced_x.local_addr().unwrap())
        .unwrap();
    relay
        .set_remote(session.id, 0, Side::B, b.local_addr().unwrap())
        .unwrap();

    real_y.send_to(&rtp(1), ports.a.rtp).unwrap();
    assert_eq!(receive(&b).unwrap().0, rtp(1));
    b.send_to(&rtp(50), ports.b.rtp).unwrap();
    let (bytes, from) = receive(&real_y).expect("B's packet reaches A's real source");
    assert_eq!((bytes, from), (rtp(50), ports.a.rtp));

    // The intruder's packets to A's relay port go nowhere, and are counted.
    for seq in 2..5 {
        intruder.send_to(&rtp(seq), ports.a.rtp).unwrap();
    }
    real_y.send_to(&rtp(2), ports.a.rtp).unwrap();
    assert_eq!(
        receive(&b).unwrap().0,
        rtp(2),
        "only A's own packet is forwarded"
    );
    announced_x
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        receive(&announced_x).is_none(),
        "nothing goes to the announced address"
    );

    let stats = relay.stats(session.id).unwrap();
    let a_to_b = stats
        .iter()
        .find(|s| s.direction == Direction::AToB)
        .unwrap();
    assert_eq!(a_to_b.source, Some(real_y.local_addr().unwrap()));
    assert_eq!((a_to_b.packets, a_to_b.dropped_foreign), (2, 3));
    // The relay-wide counters (for /metrics) agree with the session's.
    let totals = relay.totals();
    assert_eq!(totals.dropped_foreign, 3, "{totals:?}");
    assert_eq!(
        totals.received,
        totals.forwarded + totals.dropped_foreign + totals.dropped_no_destination,
        "every packet read is forwarded or dropped: {totals:?}"
    );
    assert_eq!(totals.forwarded_bytes, totals.forwarded * 172, "{totals:?}");
    relay.close(session.id).unwrap();
    assert_eq!(relay.ports_in_use(), 0);
}

#[test]
fn packets_before_any_destination_are_dropped_and_counted() {
    let mut relay = BlockingRelay::start(RelayConfig {
        port_range: (11300, 11399),
        bind: "127.0.0.1".parse().unwrap(),
        threads: 1,
        ..RelayConfig::default()
    })
    .unwrap();
    let a = phone();
    let session = relay.open(8, 1, true).unwrap();
    a.send_to(&rtp(1), session.streams[0].a.rtp).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let s = relay.stats(session.id).unwrap();
        if s[0].dropped_no_destination == 1 {
            assert_eq!(s[0].packets, 0);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drop not counted: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
