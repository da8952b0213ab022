//! The switch on IPv6 loopback (`--listen [::1]:PORT` next to an IPv4 address): OPTIONS and
//! digest REGISTER over UDP and TCP, with `[::1]` addresses in Via, Contact and `regs`.

use std::net::UdpSocket;
use std::time::Duration;

use crate::common::sip::{options, Conn, TcpClient, Ua, UdpClient};
use crate::common::{json_str, Switch, SwitchOptions};

#[test]
fn ipv6_loopback_serves_options_and_register_over_udp_and_tcp() {
    if UdpSocket::bind("[::1]:0").is_err() {
        // some containers run without IPv6 on lo; nothing to test there
        eprintln!("skipped: this machine has no IPv6 loopback (::1)");
        return;
    }
    let mut switch = Switch::create(SwitchOptions {
        ipv6: true,
        ..SwitchOptions::default()
    });
    switch.add_ext("3500", "diskominfo", "rahasia3500");
    switch.add_ext("3501", "diskominfo", "rahasia3501");
    switch.launch();
    let sip6 = switch.sip6.expect("an IPv6 listen address");

    let udp = UdpClient::connect(sip6).unwrap();
    udp.send(&options("UDP", udp.local, sip6));
    let msg = udp
        .recv_final(Duration::from_secs(2))
        .expect("OPTIONS over UDP/IPv6");
    assert_eq!(msg.status, 200, "{}", msg.text());
    let tcp = TcpClient::connect(sip6).unwrap();
    tcp.send(options("TCP", tcp.local, sip6).as_bytes());
    let msg = tcp
        .recv_final(Duration::from_secs(2))
        .expect("OPTIONS over TCP/IPv6");
    assert_eq!(msg.status, 200, "{}", msg.text());

    let mut a = Ua::new(Conn::udp(sip6), "3500", "rahasia3500");
    let msg = a.register_self(600);
    assert_eq!(msg.status, 200, "{}", msg.text());
    let mut b = Ua::new(Conn::tcp(sip6), "3501", "rahasia3501");
    let msg = b.register_self(600);
    assert_eq!(msg.status, 200, "{}", msg.text());

    for (ext, ua, transport) in [("3500", &a, "UDP"), ("3501", &b, "TCP")] {
        let regs = switch.regs_of(ext);
        assert_eq!(regs.len(), 1, "{regs:?}");
        let r = &regs[0];
        assert!(
            json_str(r, "transport").eq_ignore_ascii_case(transport),
            "{r}"
        );
        assert!(json_str(r, "contact").contains("[::1]"), "{r}");
        assert!(
            json_str(r, "source").contains(&ua.conn.local().to_string()),
            "{r}"
        );
    }
    // IPv4 still works next to it
    switch.assert_alive();
}
