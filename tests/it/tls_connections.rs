//! Limits on stream connections (TCP and TLS share them): a source at its limit has its next
//! connection closed at accept while other sources are still served; the total limit refuses
//! everyone; a connection that sends no first message, or falls silent, is closed while one
//! that sends CRLF keep-alives stays; a TLS connection that never finishes its handshake is
//! closed. The counters in `/api/connections` move with each.

use std::net::{IpAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::media::admin_get;
use crate::common::sip::{self, TcpClient};
use crate::common::tls::TlsClient;
use crate::common::{Switch, SwitchOptions};

fn start(config: &str) -> Switch {
    let switch = Switch::start_with(SwitchOptions {
        tls: true,
        config_toml: Some(config.to_owned()),
        // No allow-list: the harness's 127.0.0.1 would be exempt from `max_per_source`.
        guard: Some(String::new()),
        ..SwitchOptions::default()
    });
    // The harness's readiness probes are plain connects that close at once; wait until the
    // switch has let go of them so every slot is free.
    assert!(
        Switch::eventually(Duration::from_secs(5), || {
            let c = admin_get(&switch, "/api/connections");
            c["tcp_open"] == 0 && c["tls_open"] == 0
        }),
        "probe connections stayed open: {}",
        admin_get(&switch, "/api/connections")
    );
    switch
}

fn counter(switch: &Switch, name: &str) -> u64 {
    admin_get(switch, "/api/connections")[name]
        .as_u64()
        .unwrap_or_else(|| panic!("/api/connections has no {name}"))
}

/// OPTIONS over this connection is answered 200.
fn served(c: &TcpClient) -> bool {
    let options = sip::options("TCP", c.local, c.server);
    c.send(options.as_bytes())
        && matches!(c.recv_final(Duration::from_secs(3)), Some(r) if r.status == 200)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn per_source_and_total_limits_refuse_at_accept() {
    let switch = start(
        "[connections]\nmax_per_source = 3\nmax_total = 4\n\
         first_message_secs = 60\nidle_secs = 60\n",
    );
    let tls = switch.tls.expect("TLS address");
    // Three from 127.0.0.1, over TCP and TLS: all served.
    let a1 = TcpClient::connect(switch.sip).unwrap();
    let a2 = TcpClient::connect(switch.sip).unwrap();
    assert!(
        served(&a1) && served(&a2),
        "the first connections are not served"
    );
    let a3 = TlsClient::connect(tls).expect("third connection (TLS) from 127.0.0.1");
    let opt = sip::options("TLS", a3.local, tls);
    assert!(a3.send(opt.as_bytes()));
    assert_eq!(
        a3.recv_final(Duration::from_secs(3)).map(|r| r.status),
        Some(200)
    );

    // The fourth from 127.0.0.1 is closed at accept, TCP and TLS alike.
    let refused = TcpClient::connect(switch.sip).unwrap();
    assert!(
        refused.closed_within(Duration::from_secs(3)),
        "the connection over the per-source limit stayed open"
    );
    assert!(
        TlsClient::connect(tls).is_err(),
        "a TLS handshake over the per-source limit succeeded"
    );
    assert_eq!(counter(&switch, "refused_per_source"), 2);

    // Another source is still served; it takes the last slot of the total.
    let b1 = TcpClient::connect_from(ip("127.0.0.2"), switch.sip).unwrap();
    assert!(
        served(&b1),
        "127.0.0.2 is not served while 127.0.0.1 is at its limit"
    );
    let c1 = TcpClient::connect_from(ip("127.0.0.3"), switch.sip).unwrap();
    assert!(
        c1.closed_within(Duration::from_secs(3)),
        "the connection over the total limit stayed open"
    );
    assert_eq!(counter(&switch, "refused_total"), 1);
    assert_eq!(counter(&switch, "tcp_open"), 3);
    assert_eq!(counter(&switch, "tls_open"), 1);

    // A closed connection gives its slot back.
    drop(a1);
    assert!(
        Switch::eventually(Duration::from_secs(3), || counter(&switch, "tcp_open") == 2),
        "the closed connection still holds its slot"
    );
    let a4 = TcpClient::connect(switch.sip).unwrap();
    assert!(served(&a4), "a freed slot is not reused");
    assert!(
        served(&a2) && served(&b1),
        "admitted connections were disturbed"
    );
}

#[test]
fn silent_connections_are_closed_and_keepalives_keep_one_open() {
    let switch = start("[connections]\nfirst_message_secs = 2\nidle_secs = 3\n");
    let t0 = Instant::now();
    let mute = TcpClient::connect(switch.sip).unwrap();
    let quiet = TcpClient::connect(switch.sip).unwrap();
    let alive = TcpClient::connect(switch.sip).unwrap();
    assert!(served(&quiet) && served(&alive));

    // `alive` sends a CRLF keep-alive every 500 ms (RFC 5626 §3.5.1) for 5 s.
    let mut mute_closed = None;
    let mut quiet_closed = None;
    // Paced: once `mute` and `quiet` are closed the checks below return at once, and an
    // unpaced loop would flood the switch with keep-alives for the rest of the 5 s (CI saw
    // the OPTIONS that follows wait behind them for more than its 3 s).
    while t0.elapsed() < Duration::from_secs(5) {
        let tick = Instant::now();
        assert!(
            alive.send(b"\r\n\r\n"),
            "the keep-alive connection was closed"
        );
        if mute_closed.is_none() && mute.closed_within(Duration::from_millis(250)) {
            mute_closed = Some(t0.elapsed());
        }
        if quiet_closed.is_none() && quiet.closed_within(Duration::from_millis(250)) {
            quiet_closed = Some(t0.elapsed());
        }
        if let Some(rest) = Duration::from_millis(500).checked_sub(tick.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    let mute_closed = mute_closed.expect("a connection that sent nothing stayed open 5 s");
    assert!(
        mute_closed >= Duration::from_millis(1500),
        "closed after {mute_closed:?}, before first_message_secs"
    );
    // `quiet` sent one message, so it gets the idle time (3 s), not the first-message time.
    let quiet_closed = quiet_closed.expect("a connection idle for 3 s stayed open");
    assert!(
        quiet_closed >= Duration::from_millis(2500),
        "the idle connection closed after {quiet_closed:?}, before idle_secs"
    );
    assert!(
        served(&alive),
        "the keep-alive connection is not served any more"
    );
    assert_eq!(counter(&switch, "closed_idle"), 2);
}

/// Reads from a raw stream until the switch closes it (true) or `wait` passes (false).
fn raw_closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + wait;
    let mut chunk = [0u8; 4096];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn tls_handshake_must_finish_in_time() {
    let switch =
        start("[tls]\nhandshake_timeout_secs = 1\n[connections]\nfirst_message_secs = 30\n");
    let tls = switch.tls.expect("TLS address");
    let before = counter(&switch, "tls_handshake_failures");
    let t0 = Instant::now();
    // A client that connects to the TLS port and never says hello.
    let mut silent = TcpStream::connect(tls).unwrap();
    assert!(
        raw_closed_within(&mut silent, Duration::from_secs(5)),
        "a connection that never started its handshake stayed open"
    );
    let after = t0.elapsed();
    assert!(
        after >= Duration::from_millis(800) && after < Duration::from_secs(4),
        "closed after {after:?}; the handshake timeout is 1 s"
    );
    assert_eq!(counter(&switch, "tls_handshake_failures"), before + 1);
    assert_eq!(counter(&switch, "tls_open"), 0);
    // Garbage instead of a ClientHello is a failed handshake too, and closes at once.
    let mut junk = TcpStream::connect(tls).unwrap();
    use std::io::Write;
    junk.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").unwrap();
    assert!(raw_closed_within(&mut junk, Duration::from_millis(900)));
    assert_eq!(counter(&switch, "tls_handshake_failures"), before + 2);
    // A real client still gets through.
    let ok = TlsClient::connect(tls).expect("a TLS handshake");
    let opt = sip::options("TLS", ok.local, tls);
    assert!(ok.send(opt.as_bytes()));
    assert_eq!(
        ok.recv_final(Duration::from_secs(3)).map(|r| r.status),
        Some(200)
    );
}

/// Peers that hang up at once: a TLS client that closes right after its handshake (the switch
/// still writes its TLS 1.3 session tickets), a TCP client that resets right after a request
/// (the switch still writes the answer). Writing to them must cost that connection only: with
/// SIGPIPE at its default action the whole switch died here (exit 141).
#[test]
fn peers_that_hang_up_at_once_do_not_kill_the_switch() {
    let mut switch = start("");
    let tls = switch.tls.expect("TLS address");
    for _ in 0..30 {
        if let Ok(c) = TlsClient::connect(tls) {
            drop(c);
        }
    }
    for _ in 0..30 {
        let c = TcpClient::connect(switch.sip).unwrap();
        let options = sip::options("TCP", c.local, c.server);
        c.send(options.as_bytes());
        c.reset();
    }
    std::thread::sleep(Duration::from_millis(300));
    switch.assert_alive();
    let again = TlsClient::connect(tls).expect("a TLS handshake after the hang-ups");
    let opt = sip::options("TLS", again.local, tls);
    assert!(again.send(opt.as_bytes()));
    assert_eq!(
        again.recv_final(Duration::from_secs(3)).map(|r| r.status),
        Some(200)
    );
}
