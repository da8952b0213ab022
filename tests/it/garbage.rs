//! Garbage over UDP and TCP never stops the switch. Where a request can be answered it gets an
//! error status; afterwards a normal OPTIONS still gets 200. Also the RFC 4475/5118 invalid
//! messages from `tests/data/sip-torture/invalid/`.

use std::io::Read;
use std::time::Duration;

use crate::common::sip::{options, unique, Msg, TcpClient, UdpClient};
use crate::common::Switch;

/// A small deterministic PRNG (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// An OPTIONS from `local` with `extra` header lines and a custom body/Content-Length.
fn request(transport: &str, client: &UdpClientOrTcp, extra: &str, content_length: &str) -> String {
    let (local, server) = client.addrs();
    format!(
        "OPTIONS sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:garbage@{local}>;tag={}\r\n\
         To: <sip:{server}>\r\n\
         Call-ID: {}\r\n\
         CSeq: 1 OPTIONS\r\n\
         {extra}\
         Content-Length: {content_length}\r\n\r\n",
        unique("b"),
        unique("t"),
        unique("g")
    )
}

enum UdpClientOrTcp<'a> {
    Udp(&'a UdpClient),
    Tcp(&'a TcpClient),
}

impl UdpClientOrTcp<'_> {
    fn addrs(&self) -> (std::net::SocketAddr, std::net::SocketAddr) {
        match self {
            UdpClientOrTcp::Udp(c) => (c.local, c.server),
            UdpClientOrTcp::Tcp(c) => (c.local, c.server),
        }
    }
}

fn many_headers(n: usize) -> String {
    (0..n)
        .map(|i| format!("X-Filler-{i}: value {i}\r\n"))
        .collect()
}

/// An error status the RFCs allow for a malformed or too large request.
fn is_error(status: u16) -> bool {
    matches!(
        status,
        400 | 413 | 414 | 416 | 420 | 481 | 483 | 494 | 501 | 505 | 513
    )
}

fn assert_error_answer(what: &str, msg: Option<Msg>) {
    let msg = msg.unwrap_or_else(|| panic!("{what}: no answer"));
    assert!(
        is_error(msg.status),
        "{what}: expected 400/413/505/513-style error, got\n{}",
        msg.text()
    );
}

#[test]
fn udp_random_and_truncated_datagrams_never_stop_the_switch() {
    let mut switch = Switch::start();
    let client = UdpClient::connect(switch.sip).unwrap();
    let mut rng = Rng(0x7a3b_0001_dead_beef);
    // random datagrams of every size class
    for i in 0..300 {
        let len = match i % 4 {
            0 => (rng.next() % 16) as usize + 1,
            1 => (rng.next() % 512) as usize,
            2 => (rng.next() % 4096) as usize,
            _ => (rng.next() % 65_000) as usize,
        };
        client.send_bytes(&rng.bytes(len));
    }
    // random bytes after a valid start line, and SIP-looking noise
    for _ in 0..50 {
        let mut d = b"OPTIONS sip:x SIP/2.0\r\n".to_vec();
        let n = (rng.next() % 800) as usize;
        d.extend(rng.bytes(n));
        client.send_bytes(&d);
    }
    for junk in [
        &b"\r\n\r\n"[..],
        b"\r\n",
        b"SIP/2.0",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"INVITE\r\n\r\n",
        b"REGISTER sip:a SIP/2.0\r\nVia: \r\n\r\n",
        b"\0\0\0\0",
        b"OPTIONS sip:[::1 SIP/2.0\r\n\r\n",
    ] {
        client.send_bytes(junk);
    }
    // every 7th prefix of a valid request (truncated messages)
    let valid = request("UDP", &UdpClientOrTcp::Udp(&client), "", "0");
    for cut in (1..valid.len()).step_by(7) {
        client.send_bytes(&valid.as_bytes()[..cut]);
    }
    switch.assert_alive();
    // whatever the noise was answered with, it was never a success
    while let Some(msg) = client.recv(Duration::from_millis(300)) {
        assert!(
            msg.status == 0 || msg.status >= 400,
            "noise got\n{}",
            msg.text()
        );
    }
}

#[test]
fn udp_bad_content_length_gets_400() {
    let mut switch = Switch::start();
    let client = UdpClient::connect(switch.sip).unwrap();
    let c = UdpClientOrTcp::Udp(&client);
    // larger than the datagram: 400 (RFC 3261 §18.3)
    client.send(&request("UDP", &c, "", "99999999"));
    assert_error_answer(
        "UDP Content-Length 99999999",
        client.recv_final(Duration::from_secs(2)),
    );
    for bad in ["-1", "abc", "18446744073709551616"] {
        client.send(&request("UDP", &c, "", bad));
        let answer = client.recv_final(Duration::from_millis(700));
        if let Some(msg) = answer {
            assert!(is_error(msg.status), "Content-Length {bad}: {}", msg.text());
        }
    }
    switch.assert_alive();
}

#[test]
fn udp_unsupported_sip_version_gets_505() {
    let mut switch = Switch::start();
    let client = UdpClient::connect(switch.sip).unwrap();
    let c = UdpClientOrTcp::Udp(&client);
    let v3 = request("UDP", &c, "", "0").replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1);
    client.send(&v3);
    let msg = client
        .recv_final(Duration::from_secs(2))
        .expect("no answer to a SIP/3.0 request");
    assert!([400, 505].contains(&msg.status), "SIP/3.0: {}", msg.text());
    switch.assert_alive();
}

#[test]
fn udp_too_many_headers_get_an_error() {
    let mut switch = Switch::start();
    let client = UdpClient::connect(switch.sip).unwrap();
    let c = UdpClientOrTcp::Udp(&client);
    // 200 headers: served if within the configured limit, else refused with an error status
    client.send(&request("UDP", &c, &many_headers(200), "0"));
    let msg = client
        .recv_final(Duration::from_secs(2))
        .expect("no answer to a request with 200 headers");
    assert!(msg.status == 200 || is_error(msg.status), "{}", msg.text());
    // far beyond any sane header count: refused
    client.send(&request("UDP", &c, &many_headers(2000), "0"));
    assert_error_answer(
        "UDP 2000 headers",
        client.recv_final(Duration::from_secs(2)),
    );
    switch.assert_alive();
}

#[test]
fn udp_oversized_headers_never_stop_the_switch() {
    let mut switch = Switch::start();
    let client = UdpClient::connect(switch.sip).unwrap();
    let c = UdpClientOrTcp::Udp(&client);
    // one 60 kB header line: served or refused
    let long = format!("X-Long: {}\r\n", "a".repeat(60_000));
    client.send(&request("UDP", &c, &long, "0"));
    if let Some(msg) = client.recv_final(Duration::from_secs(2)) {
        assert!(msg.status == 200 || is_error(msg.status), "{}", msg.text());
    }
    // a datagram at the UDP maximum (65 507 bytes), over the default 65 535-byte message limit
    // once the headers are counted: refused or dropped
    let huge = format!("X-Huge: {}\r\n", "b".repeat(65_200));
    client.send(&request("UDP", &c, &huge, "0"));
    if let Some(msg) = client.recv_final(Duration::from_millis(700)) {
        assert!(msg.status == 200 || is_error(msg.status), "{}", msg.text());
    }
    switch.assert_alive();
}

#[test]
fn tcp_random_bytes_and_truncated_messages_never_stop_the_switch() {
    let mut switch = Switch::start();
    let mut rng = Rng(0x7a3b_0002_feed_f00d);
    // random bytes on fresh connections; the switch may answer 400 or close
    for i in 0..40 {
        let client = TcpClient::connect(switch.sip).expect("connect");
        let len = 1 + (rng.next() % if i % 2 == 0 { 256 } else { 70_000 }) as usize;
        client.send(&rng.bytes(len));
        let _ = client.closed_within(Duration::from_millis(50));
    }
    // truncated messages, then the peer closes
    let probe = TcpClient::connect(switch.sip).unwrap();
    let valid = request("TCP", &UdpClientOrTcp::Tcp(&probe), "", "0");
    for cut in (1..valid.len()).step_by(23) {
        let client = TcpClient::connect(switch.sip).expect("connect");
        client.send(&valid.as_bytes()[..cut]);
        drop(client);
    }
    // many idle connections that never send a byte, left open meanwhile, from another source
    // (more than the per-source limit of 32: the rest are refused, 127.0.0.1 is still served)
    let idle: Vec<TcpClient> = (0..50)
        .filter_map(|_| TcpClient::connect_from([127, 0, 0, 2].into(), switch.sip).ok())
        .collect();
    switch.assert_alive();
    // a connection stays usable after a request it refused
    let client = TcpClient::connect(switch.sip).unwrap();
    let c = UdpClientOrTcp::Tcp(&client);
    client.send(request("TCP", &c, &many_headers(200), "0").as_bytes());
    match client.recv(Duration::from_secs(3)) {
        Some(msg) => assert!(msg.status == 200 || is_error(msg.status), "{}", msg.text()),
        None => assert!(
            client.closed_within(Duration::from_secs(2)),
            "200 headers on TCP: no answer, and the connection was left hanging"
        ),
    }
    drop(idle);
    switch.assert_alive();
}

#[test]
fn tcp_huge_content_length_is_refused() {
    let mut switch = Switch::start();
    let client = TcpClient::connect(switch.sip).unwrap();
    client.send(request("TCP", &UdpClientOrTcp::Tcp(&client), "", "999999999").as_bytes());
    match client.recv(Duration::from_secs(3)) {
        Some(msg) => assert!(is_error(msg.status), "{}", msg.text()),
        None => assert!(
            client.closed_within(Duration::from_secs(2)),
            "huge Content-Length on TCP: neither an error answer nor a closed connection"
        ),
    }
    switch.assert_alive();
}

#[test]
fn tcp_endless_header_is_refused() {
    let mut switch = Switch::start();
    let client = TcpClient::connect(switch.sip).unwrap();
    let head = format!("OPTIONS sip:{} SIP/2.0\r\nX-Endless: ", switch.sip);
    client.send(head.as_bytes());
    let chunk = vec![b'z'; 64 * 1024];
    let mut refused = false;
    for _ in 0..64 {
        // 4 MiB at most
        if !client.send(&chunk) {
            refused = true;
            break;
        }
    }
    if !refused {
        match client.recv(Duration::from_secs(3)) {
            Some(msg) => assert!(is_error(msg.status), "{}", msg.text()),
            None => assert!(
                client.closed_within(Duration::from_secs(2)),
                "endless header on TCP: neither an error answer nor a closed connection"
            ),
        }
    }
    switch.assert_alive();
}

#[test]
fn tcp_too_many_headers_get_an_error() {
    let mut switch = Switch::start();
    let client = TcpClient::connect(switch.sip).unwrap();
    let c = UdpClientOrTcp::Tcp(&client);
    client.send(request("TCP", &c, &many_headers(2000), "0").as_bytes());
    match client.recv(Duration::from_secs(3)) {
        Some(msg) => assert!(is_error(msg.status), "{}", msg.text()),
        None => assert!(
            client.closed_within(Duration::from_secs(2)),
            "2000 headers on TCP: neither an error answer nor a closed connection"
        ),
    }
    switch.assert_alive();
}

#[test]
fn tcp_crlf_keepalive_is_answered() {
    let mut switch = Switch::start();
    // RFC 5626 §4.4.1: a double CRLF ping is answered with a single CRLF pong
    let client = TcpClient::connect(switch.sip).unwrap();
    client.send(b"\r\n\r\n");
    let mut buf = [0u8; 2];
    {
        let mut stream = client.stream.borrow_mut();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert!(
            stream.read_exact(&mut buf).is_ok() && &buf == b"\r\n",
            "no CRLF pong on TCP"
        );
    }
    // and the same connection still serves a request
    client.send(options("TCP", client.local, switch.sip).as_bytes());
    assert_eq!(
        client.recv_final(Duration::from_secs(2)).map(|m| m.status),
        Some(200)
    );
    switch.assert_alive();
}

#[test]
fn torture_invalid_messages_get_an_error_or_nothing() {
    let mut switch = Switch::start();
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sip-torture/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data/sip-torture/invalid")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dat"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "torture corpus missing: {}",
        dir.display()
    );
    let mut report = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(path).unwrap();
        // a fresh socket per message, so answers cannot be confused
        let client = UdpClient::connect(switch.sip).unwrap();
        client.send_bytes(&bytes);
        let answer = client.recv_final(Duration::from_millis(700));
        if let Some(msg) = &answer {
            assert!(
                msg.status >= 400,
                "{name}: an invalid message got {}\n{}",
                msg.status,
                msg.text()
            );
        }
        report.push(format!(
            "{name}: {}",
            answer.map_or("no answer".into(), |m| m.start)
        ));
        assert!(switch.is_running(), "tambun serve died on {name}");
    }
    eprintln!("{}", report.join("\n"));
    switch.assert_alive();
}
