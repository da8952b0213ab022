//! The relay engine on loopback: two UDP "phones" exchange RTP through a session both ways,
//! the counters match what was sent, and closing frees every port.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tambun::media::blocking::BlockingRelay;
use tambun::media::{Direction, RelayConfig, Side};

fn config(ports: (u16, u16)) -> RelayConfig {
    RelayConfig {
        port_range: ports,
        bind: "127.0.0.1".parse().unwrap(),
        advertise: "127.0.0.1".parse().unwrap(),
        threads: 2,
        ..RelayConfig::default()
    }
}

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(seq as u32 * 160).to_be_bytes());
    p[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
    p
}

fn receive(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).expect("a relayed packet");
    (buf[..n].to_vec(), from)
}

#[test]
fn two_phones_talk_both_ways_and_close_frees_the_ports() {
    let mut relay = BlockingRelay::start(config((11000, 11099))).unwrap();
    let (a, b) = (phone(), phone());
    let session = relay.open(1, 1, false).unwrap();
    assert_eq!(relay.ports_in_use(), 4);
    let ports = session.streams[0];
    assert_eq!(ports.a.rtp.port() % 2, 0);
    assert_eq!(ports.a.rtcp.port(), ports.a.rtp.port() + 1);
    relay
        .set_remote(session.id, 0, Side::A, a.local_addr().unwrap())
        .unwrap();
    relay
        .set_remote(session.id, 0, Side::B, b.local_addr().unwrap())
        .unwrap();

    // Seq 3 is never sent from A: one lost packet in that direction.
    for seq in [1u16, 2, 4, 5] {
        a.send_to(&rtp(seq), ports.a.rtp).unwrap();
        let (bytes, from) = receive(&b);
        assert_eq!(bytes, rtp(seq), "forwarded unchanged");
        assert_eq!(from, ports.b.rtp, "B hears the relay's B port");
        b.send_to(&rtp(100 + seq), ports.b.rtp).unwrap();
        let (bytes, from) = receive(&a);
        assert_eq!(bytes, rtp(100 + seq));
        assert_eq!(from, ports.a.rtp);
    }

    let stats = relay.stats(session.id).unwrap();
    assert_eq!(stats.len(), 2);
    let a_to_b = stats
        .iter()
        .find(|s| s.direction == Direction::AToB)
        .unwrap();
    let b_to_a = stats
        .iter()
        .find(|s| s.direction == Direction::BToA)
        .unwrap();
    assert_eq!((a_to_b.packets, a_to_b.bytes, a_to_b.lost), (4, 4 * 172, 1));
    assert_eq!((b_to_a.packets, b_to_a.bytes, b_to_a.lost), (4, 4 * 172, 1));
    assert_eq!(a_to_b.source, Some(a.local_addr().unwrap()));
    assert_eq!(a_to_b.dropped_foreign + b_to_a.dropped_foreign, 0);
    assert!(a_to_b.last_packet_age.unwrap() < Duration::from_secs(2));

    relay.close(session.id).unwrap();
    assert_eq!(relay.ports_in_use(), 0);
    assert!(relay.stats(session.id).is_err());
    // The ports are really closed: they can be bound again.
    UdpSocket::bind(ports.a.rtp).unwrap();
    UdpSocket::bind(ports.b.rtcp).unwrap();
}

#[test]
fn rtcp_mux_uses_one_port_per_side() {
    let mut relay = BlockingRelay::start(config((11100, 11199))).unwrap();
    let (a, b) = (phone(), phone());
    let session = relay.open(2, 2, true).unwrap();
    assert_eq!(relay.ports_in_use(), 4);
    let ports = session.streams[1];
    assert_eq!(ports.a.rtp, ports.a.rtcp);
    relay
        .set_remote(session.id, 1, Side::B, b.local_addr().unwrap())
        .unwrap();
    a.send_to(&rtp(1), ports.a.rtp).unwrap();
    assert_eq!(receive(&b).0, rtp(1));
    // RTCP (an SR, PT 200) on the same port is forwarded but not counted as RTP.
    let mut sr = vec![0x80, 200, 0, 6];
    sr.extend_from_slice(&[0u8; 24]);
    a.send_to(&sr, ports.a.rtp).unwrap();
    assert_eq!(receive(&b).0, sr);
    let stats = relay.stats(session.id).unwrap();
    let s = stats
        .iter()
        .find(|s| s.stream == 1 && s.direction == Direction::AToB)
        .unwrap();
    assert_eq!((s.packets, s.lost), (2, 0));
    relay.close(session.id).unwrap();
    assert_eq!(relay.ports_in_use(), 0);
}
