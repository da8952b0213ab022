//! SIP over WebSocket (RFC 7118), with the in-process WebSocket client (`common::ws`), which
//! behaves like a browser's SIP library (`.invalid` Via and Contact hosts): registration over
//! WS and WSS, a call from a UDP phone that reaches the browser only over its own flow, the
//! upgrade's refusals, bad frames that close one connection and leave the others working, and
//! the page's directory API. The real browser (JsSIP in Chromium) is in `browser`.

use std::io::{Read, Write};
use std::time::Duration;

use tungstenite::Message;

use crate::common::media::Phone;
use crate::common::sip::{unique, Conn, Ua};
use crate::common::ws::{WsClient, WsError};
use crate::common::{Switch, SwitchOptions};

fn ws_switch(extensions: &[(&str, &str, &str)]) -> Switch {
    let mut switch = Switch::create(SwitchOptions {
        websocket: true,
        extra_args: vec!["--no-media".into()],
        ..SwitchOptions::default()
    });
    for (number, opd, password) in extensions {
        switch.add_ext(number, opd, password);
    }
    switch.launch();
    switch
}

/// A browser-like UA registered over WS (or WSS) with its `.invalid` contact.
fn ws_ua(switch: &Switch, secure: bool, ext: &str, password: &str) -> Ua {
    let addr = if secure { switch.web } else { switch.ws }.expect("websocket listener");
    let client = WsClient::connect(addr, secure);
    assert_eq!(client.protocol.as_deref(), Some("sip"), "subprotocol");
    let mut ua = Ua::new(Conn::Ws(Box::new(client)), ext, password);
    let ok = ua.register_self(600);
    assert_eq!(ok.status, 200, "REGISTER over websocket:\n{}", ok.text());
    // JsSIP ignores a 200 that does not list its own Contact.
    let mine = ua.contact_uri("");
    assert!(
        ok.contacts().iter().any(|c| c.uri == mine),
        "the 200 lists our contact {mine}:\n{}",
        ok.text()
    );
    ua
}

fn ws_client(ua: &Ua) -> &WsClient {
    match &ua.conn {
        Conn::Ws(c) => c,
        _ => unreachable!(),
    }
}

#[test]
fn registers_over_ws_and_wss_and_regs_shows_the_transport() {
    let switch = ws_switch(&[
        ("1000", "setda", "rahasia1000"),
        ("1001", "setda", "rahasia1001"),
    ]);
    let _a = ws_ua(&switch, false, "1000", "rahasia1000");
    let _b = ws_ua(&switch, true, "1001", "rahasia1001");
    let regs = switch.regs();
    let transport_of = |ext: &str| {
        regs.iter()
            .find(|r| r["extension"] == ext)
            .map(|r| r["transport"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(transport_of("1000").as_deref(), Some("ws"), "{regs:?}");
    assert_eq!(transport_of("1001").as_deref(), Some("wss"), "{regs:?}");
    let text = String::from_utf8_lossy(&switch.cli(&["regs"]).stdout).into_owned();
    assert!(text.contains("wss"), "tambun regs:\n{text}");
}

#[test]
fn wrong_password_over_websocket_is_refused() {
    let switch = ws_switch(&[("1000", "setda", "rahasia1000")]);
    let client = WsClient::connect(switch.ws.unwrap(), false);
    let mut ua = Ua::new(Conn::Ws(Box::new(client)), "1000", "salah");
    let r = ua.register_self(600);
    assert_eq!(r.status, 401, "{}", r.text());
    let client = WsClient::connect(switch.ws.unwrap(), false);
    let mut unknown = Ua::new(Conn::Ws(Box::new(client)), "1999", "salah");
    let u = unknown.register_self(600);
    assert_eq!(
        u.status, 401,
        "unknown extension answered like a wrong password"
    );
    assert!(switch.regs().is_empty());
}

/// A desk phone on UDP calls the browser: the INVITE goes over the browser's own WebSocket
/// (its contact host is `.invalid`), and the BYE from the browser reaches the phone.
#[test]
fn udp_phone_calls_a_browser_over_its_flow() {
    let switch = ws_switch(&[
        ("1000", "setda", "rahasia1000"),
        ("1001", "setda", "rahasia1001"),
    ]);
    let browser = ws_ua(&switch, true, "1000", "rahasia1000");
    let mut phone = Phone::register(&switch, "1001", "rahasia1001");
    let host = ws_client(&browser).host.clone();
    let Conn::Ws(client) = browser.conn else {
        unreachable!()
    };
    let answering = std::thread::spawn(move || {
        let invite = client
            .recv(Duration::from_secs(5))
            .expect("no INVITE over the websocket");
        assert!(invite.start.starts_with("INVITE "), "{}", invite.start);
        assert!(
            invite.start.contains(".invalid"),
            "Request-URI is the flow's contact: {}",
            invite.start
        );
        let vias = invite.header_lines("via");
        assert!(
            vias[0].starts_with("SIP/2.0/WSS "),
            "our Via toward a WSS flow: {vias:?}"
        );
        let rr = invite.header_values("record-route");
        assert!(
            rr.iter().any(|r| r.contains("transport=wss")),
            "Record-Route: {rr:?}"
        );
        let tag = unique("bt");
        let to = format!("{};tag={tag}", invite.header("to").unwrap());
        let mut resp = "SIP/2.0 200 OK\r\n".to_string();
        for v in &vias {
            resp.push_str(&format!("Via: {v}\r\n"));
        }
        for r in invite.header_lines("record-route") {
            resp.push_str(&format!("Record-Route: {r}\r\n"));
        }
        resp.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:1000@{host};transport=ws>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
            invite.header("from").unwrap(),
            invite.header("call-id").unwrap(),
            invite.header("cseq").unwrap(),
            SDP.len(),
            SDP
        ));
        assert!(client.send(&resp));
        let ack = client
            .recv(Duration::from_secs(5))
            .expect("no ACK over the websocket");
        assert!(ack.start.starts_with("ACK "), "{}", ack.start);
        // The browser hangs up: BYE along the route set (reversed for the callee).
        let mut routes = rr.clone();
        routes.reverse();
        let target = invite
            .header("contact")
            .unwrap()
            .trim_matches(|c| c == '<' || c == '>')
            .to_string();
        let target = target.split('>').next().unwrap().to_string();
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/WSS {host};branch=z9hG4bK{}\r\nMax-Forwards: 70\r\n\
             From: {to}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 BYE\r\n{}Content-Length: 0\r\n\r\n",
            unique("bye"),
            invite.header("from").unwrap(),
            invite.header("call-id").unwrap(),
            routes.iter().map(|r| format!("Route: {r}\r\n")).collect::<String>()
        );
        assert!(client.send(&bye));
        client
    });
    let (ok, _dialog) = phone.call("1000", SDP);
    assert_eq!(ok.status, 200);
    let bye = phone
        .recv_request("BYE", Duration::from_secs(5))
        .expect("the browser's BYE did not reach the phone");
    phone.respond(&bye, 200, "OK", "", None);
    let client = answering.join().expect("the browser side");
    let done = client
        .recv_final(Duration::from_secs(5))
        .expect("200 to BYE over the websocket");
    assert_eq!(done.status, 200, "{}", done.text());
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

#[test]
fn upgrade_needs_subprotocol_sip_and_a_page_of_this_host() {
    let switch = ws_switch(&[]);
    let ws = switch.ws.unwrap();
    match WsClient::connect_with(ws, false, "/ws", None, None) {
        Err(WsError::Refused(400)) => {}
        other => panic!("no subprotocol: {:?}", other.map(|_| ())),
    }
    match WsClient::connect_with(ws, false, "/ws", Some("sip"), Some("https://evil.example")) {
        Err(WsError::Refused(403)) => {}
        other => panic!("another site's page: {:?}", other.map(|_| ())),
    }
    let same = format!("http://{ws}");
    let ok = WsClient::connect_with(ws, false, "/ws", Some("sip"), Some(&same));
    assert!(ok.is_ok(), "a page of this host: {:?}", ok.map(|_| ()));
    // The bare origin works too (desk-phone apps and JsSIP configured with `ws://host:port`).
    assert!(WsClient::connect_with(ws, false, "/", Some("sip"), None).is_ok());
}

/// Non-SIP, oversized and fragmented-forever frames each close their own connection, with one
/// log line; a registered browser on another connection keeps working.
#[test]
fn bad_frames_close_only_their_connection() {
    let switch = ws_switch(&[("1000", "setda", "rahasia1000")]);
    let ws = switch.ws.unwrap();
    let good = ws_ua(&switch, false, "1000", "rahasia1000");

    let junk = WsClient::connect(ws, false);
    assert!(junk.send("{\"hello\": \"not sip\"}"));
    assert!(
        junk.closed_within(Duration::from_secs(3)),
        "non-SIP frame left the connection open"
    );

    let big = WsClient::connect(ws, false);
    let huge = format!(
        "OPTIONS sip:{ws} SIP/2.0\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    big.send(&huge);
    assert!(
        big.closed_within(Duration::from_secs(3)),
        "oversized message left the connection open"
    );

    let frag = WsClient::connect(ws, false);
    // A text frame without FIN, then continuation frames that never end.
    assert!(frag.write_raw(&masked_frame(0x1, false, b"OPTIONS sip:x SIP/2.0\r\n")));
    let chunk = [b'x'; 125];
    let mut closed = false;
    for _ in 0..2000 {
        if !frag.write_raw(&masked_frame(0x0, false, &chunk)) {
            closed = true;
            break;
        }
    }
    assert!(
        closed || frag.closed_within(Duration::from_secs(3)),
        "endless fragments left the connection open"
    );

    // The registered browser is unharmed: OPTIONS over its flow.
    let c = ws_client(&good);
    let options =
        crate::common::sip::options("WS", c.local, ws).replace(&c.local.to_string(), &c.host);
    assert!(c.send(&options));
    let r = c
        .recv_final(Duration::from_secs(3))
        .expect("OPTIONS after the bad frames");
    assert_eq!(r.status, 200);
    assert_eq!(switch.regs().len(), 1);
    let log = switch.log_text();
    assert_eq!(log.matches("a frame that is not SIP").count(), 1, "{log}");
    assert_eq!(
        log.matches("closing websocket: bad frame").count(),
        2,
        "{log}"
    );
}

/// A client frame (masked, as RFC 6455 requires of clients) of at most 125 bytes.
fn masked_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= 125);
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut out = vec![
        if fin { 0x80 } else { 0 } | opcode,
        0x80 | payload.len() as u8,
    ];
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// One HTTPS request to the web listener (Connection: close); status and body.
fn https_get(switch: &Switch, path: &str, auth: Option<&str>) -> (u16, String, String) {
    https_get_from(None, switch, path, auth)
}

fn https_get_from(
    source: Option<std::net::IpAddr>,
    switch: &Switch,
    path: &str,
    auth: Option<&str>,
) -> (u16, String, String) {
    let (mut stream, _) =
        crate::common::tls::connect_stream_from(source, switch.web.unwrap()).expect("https");
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}Connection: close\r\n\r\n",
        switch.web.unwrap()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

#[test]
fn the_page_and_its_directory_api_over_https() {
    let switch = ws_switch(&[
        ("1000", "setda", "rahasia1000"),
        ("2300", "dinkes", "rahasia2300"),
    ]);
    let _online = ws_ua(&switch, true, "1000", "rahasia1000");
    let (status, head, body) = https_get(&switch, "/phone", None);
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-security-policy: default-src 'self'"),
        "{head}"
    );
    assert!(
        body.contains("/phone/phone.js"),
        "the page loads its bundled script:\n{body}"
    );
    let (status, _, js) = https_get(&switch, "/phone/phone.js", None);
    assert_eq!(status, 200);
    assert!(
        js.contains("JsSIP") || js.contains("jssip"),
        "the bundle holds JsSIP"
    );
    assert!(
        !js.contains("https://cdn") && !js.contains("unpkg.com"),
        "nothing from a CDN"
    );

    use base64::Engine;
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let (status, _, body) = https_get(
        &switch,
        "/phone/api/directory",
        Some(&basic("2300", "rahasia2300")),
    );
    assert_eq!(status, 200, "{body}");
    let dir: serde_json::Value = serde_json::from_str(&body).expect("directory JSON");
    assert_eq!(dir["me"], "2300");
    let entry = |ext: &str| {
        dir["opds"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|o| o["extensions"].as_array().unwrap().iter())
            .find(|e| e["ext"] == ext)
            .cloned()
    };
    assert_eq!(
        entry("1000").map(|e| e["online"].clone()),
        Some(serde_json::json!(true))
    );
    assert_eq!(
        entry("2300").map(|e| e["online"].clone()),
        Some(serde_json::json!(false))
    );
    let dinkes = dir["opds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == "dinkes")
        .unwrap();
    assert!(
        dinkes["name"].as_str().unwrap().len() > 6,
        "the OPD's name from the dialplan: {dinkes}"
    );

    let (wrong, _, wrong_body) = https_get(
        &switch,
        "/phone/api/directory",
        Some(&basic("2300", "salah")),
    );
    let (unknown, _, unknown_body) = https_get(
        &switch,
        "/phone/api/directory",
        Some(&basic("1999", "salah")),
    );
    let (none, _, _) = https_get(&switch, "/phone/api/directory", None);
    assert_eq!((wrong, unknown, none), (401, 401, 401));
    assert_eq!(
        wrong_body, unknown_body,
        "unknown extension answered like a wrong password"
    );
    let (status, _, config) = https_get(&switch, "/phone/api/config", None);
    assert_eq!(status, 200);
    assert!(config.contains("\"ws_path\":\"/ws\""), "{config}");
}

#[test]
fn a_ws_flow_pings_and_answers_crlf_keepalives() {
    let switch = ws_switch(&[]);
    let c = WsClient::connect(switch.ws.unwrap(), false);
    assert!(c.send("\r\n\r\n"));
    match c.recv_frame(Duration::from_secs(3)) {
        Some(Message::Text(t)) => assert_eq!(t.as_str(), "\r\n"),
        other => panic!("keep-alive answer: {other:?}"),
    }
}

/// Guessing passwords on the directory API is a failed authentication like a wrong digest:
/// the guard bans the source after `auth_failures`, and then even the right password gets
/// nothing from it; other sources are unaffected.
#[test]
fn directory_password_guessing_gets_the_source_banned() {
    use base64::Engine;
    let mut switch = Switch::create(SwitchOptions {
        websocket: true,
        extra_args: vec!["--no-media".into()],
        guard: Some("auth_failures = 3\nauth_window_secs = 60\n".into()),
        ..SwitchOptions::default()
    });
    switch.add_ext("2300", "dinkes", "rahasia2300");
    switch.launch();
    let basic = |p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("2300:{p}"))
        )
    };
    let attacker: std::net::IpAddr = "127.0.4.7".parse().unwrap();
    for guess in ["123456", "password", "rahasia"] {
        let (status, _, _) = https_get_from(
            Some(attacker),
            &switch,
            "/phone/api/directory",
            Some(&basic(guess)),
        );
        assert_eq!(status, 401, "{guess}");
    }
    let banned = Switch::eventually(Duration::from_secs(3), || {
        switch.cli_ok(&["ban", "list"]).contains("127.0.4.7")
    });
    assert!(
        banned,
        "no ban after three wrong passwords:\n{}",
        switch.log_text()
    );
    let (status, _, _) = https_get_from(
        Some(attacker),
        &switch,
        "/phone/api/directory",
        Some(&basic("rahasia2300")),
    );
    assert_eq!(
        status, 401,
        "a banned source got the directory with the right password"
    );
    let (status, _, _) = https_get_from(
        Some("127.0.4.8".parse().unwrap()),
        &switch,
        "/phone/api/directory",
        Some(&basic("rahasia2300")),
    );
    assert_eq!(status, 200, "another source is not affected");
    let log = switch.log_text();
    assert!(log.contains("directory"), "the failures are logged:\n{log}");
}

/// A browser is reachable only over its WebSocket: when the flow closes, its registration
/// goes at once (RFC 5626 flow failure), so calls and the directory do not count it; a UDP
/// phone's registration is not touched.
#[test]
fn a_closed_websocket_takes_its_registration_with_it() {
    let switch = ws_switch(&[
        ("1000", "setda", "rahasia1000"),
        ("1001", "setda", "rahasia1001"),
    ]);
    let browser = ws_ua(&switch, false, "1000", "rahasia1000");
    let _phone = crate::common::media::Phone::register(&switch, "1001", "rahasia1001");
    assert_eq!(switch.regs().len(), 2);
    drop(browser);
    let gone = Switch::eventually(Duration::from_secs(3), || {
        let regs = switch.regs();
        regs.len() == 1 && regs[0]["extension"] == "1001"
    });
    assert!(gone, "after the close: {:?}", switch.regs());
}
