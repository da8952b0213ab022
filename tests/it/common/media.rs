//! Media tests through the relay: a per-test relay port range, the admin API's relay counters,
//! RTP on plain UDP sockets, SDP lines, and a minimal in-process phone ([`Phone`]) that places
//! and answers calls through the switch with SDP the test writes byte for byte.
//!
//! The phone is a second, independent SIP implementation (like [`super::sip`]): it registers,
//! sends INVITE (answering the 407 challenge), answers INVITEs, sends ACK, re-INVITE, BYE and
//! any other in-dialog request with the route set of the 200, over one UDP socket. Messages it
//! did not ask for wait in a queue until a test asks for them.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sip::{unique, Challenge, Conn, Msg, RegisterSpec, Ua, UdpClient};
use super::{json_str, Switch, SwitchOptions};

/// How many relay ports each test switch gets.
pub const RANGE_LEN: u16 = 400;

/// The band the test switches' relay ranges come from: below the kernel's ephemeral range
/// (32768 and up) and above the relay engine tests' fixed ranges (11000-17999).
const BAND_FIRST: u32 = 18_000;
const BAND_LEN: u32 = 14_000;

/// Where in the band this process hands out its next range (an offset that only grows).
static NEXT_OFFSET: AtomicU32 = AtomicU32::new(0);

/// A relay port range `FIRST-LAST` of `len` ports for one switch, in 18000-31999. Ranges of
/// this process follow one another whatever their lengths (all tests are threads of one
/// process, so two that run at once never share a port: the band wraps around only after
/// 14,000 ports), starting at a place derived from the pid so that another process starts
/// elsewhere. The first pair of a range must be free right now. The relay skips ports another
/// process holds, so an overlap with a stranger costs nothing but a skipped pair.
pub fn rtp_range(len: u16) -> String {
    let len = u32::from(len);
    assert!(
        len % 2 == 0 && (2..=BAND_LEN).contains(&len),
        "an even relay range length of at most {BAND_LEN} ports"
    );
    // an even start, so that the ranges' pairs are (even, odd) as the relay hands them out
    let base = std::process::id().wrapping_mul(7919) % (BAND_LEN / 2) * 2;
    for _attempt in 0..2 * BAND_LEN / len + 2 {
        let offset = (base + NEXT_OFFSET.fetch_add(len, Ordering::Relaxed)) % BAND_LEN;
        if offset + len > BAND_LEN {
            continue; // it would run past the band's end: skipped
        }
        let first = (BAND_FIRST + offset) as u16;
        if UdpSocket::bind(("127.0.0.1", first)).is_ok()
            && UdpSocket::bind(("127.0.0.1", first + 1)).is_ok()
        {
            return format!("{first}-{}", u32::from(first) + len - 1);
        }
    }
    panic!("no free relay port range");
}

/// (first, last) of a `FIRST-LAST` range.
pub fn range_bounds(range: &str) -> (u16, u16) {
    let (a, b) = range.split_once('-').expect("FIRST-LAST");
    (a.parse().expect("first"), b.parse().expect("last"))
}

/// Starts a switch with `extensions`, its own relay port range and `config_toml` (may be
/// empty). Returns the switch and its range.
pub fn media_switch(extensions: &[(&str, &str, &str)], config_toml: &str) -> (Switch, String) {
    let range = rtp_range(RANGE_LEN);
    let switch = media_switch_on(extensions, config_toml, &range);
    (switch, range)
}

/// Like [`media_switch`] with a given range.
pub fn media_switch_on(
    extensions: &[(&str, &str, &str)],
    config_toml: &str,
    range: &str,
) -> Switch {
    let mut switch = Switch::create(SwitchOptions {
        config_toml: (!config_toml.is_empty()).then(|| config_toml.to_owned()),
        extra_args: vec!["--rtp-ports".into(), range.to_owned()],
        ..SwitchOptions::default()
    });
    for (number, opd, password) in extensions {
        switch.add_ext(number, opd, password);
    }
    switch.launch();
    switch
}

/// `GET path` on the admin API: (status line and headers, body).
pub fn admin_get_text(switch: &Switch, path: &str) -> (String, String) {
    let mut stream =
        TcpStream::connect_timeout(&switch.admin, Duration::from_secs(2)).expect("admin API");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        switch.admin
    )
    .expect("send GET");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.to_owned(), body.to_owned())
}

/// `GET path` on the admin API; the JSON body.
pub fn admin_get(switch: &Switch, path: &str) -> Value {
    let (head, body) = admin_get_text(switch, path);
    serde_json::from_str(body.trim())
        .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}):\n{head}\n\n{body}"))
}

/// `GET /api/relay`: (ports_in_use, sessions).
pub fn relay_usage(switch: &Switch) -> (u64, u64) {
    let v = admin_get(switch, "/api/relay");
    let n = |k: &str| {
        v.get(k)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("/api/relay has no {k}: {v}"))
    };
    (n("ports_in_use"), n("sessions"))
}

/// Waits up to `within` for the relay to hold no port and no session; returns the last usage.
pub fn wait_relay_idle(switch: &Switch, within: Duration) -> (u64, u64) {
    let mut last = (u64::MAX, u64::MAX);
    Switch::eventually(within, || {
        last = relay_usage(switch);
        last == (0, 0)
    });
    last
}

/// `tambun calls --json`, parsed.
pub fn live_calls(switch: &Switch) -> Vec<Value> {
    let out = switch.cli_ok(&["calls", "--json"]);
    match serde_json::from_str::<Value>(&out) {
        Ok(Value::Array(items)) => items,
        other => panic!("tambun calls --json did not print a JSON array: {other:?}\n{out}"),
    }
}

/// The counters of (stream, direction) of the only live call; `direction` is
/// `caller->callee` or `callee->caller`. `None` when there is no such entry.
pub fn stream_counters(switch: &Switch, stream: u64, direction: &str) -> Option<Value> {
    let calls = live_calls(switch);
    let call = calls.first()?;
    call.get("media")?
        .as_array()?
        .iter()
        .find(|m| {
            m.get("stream").and_then(Value::as_u64) == Some(stream)
                && json_str(m, "direction") == direction
        })
        .cloned()
}

/// A numeric counter of a `media` entry (0 when absent).
pub fn counter(entry: &Option<Value>, key: &str) -> u64 {
    entry
        .as_ref()
        .and_then(|e| e.get(key))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// A UDP socket on 127.0.0.1 for RTP, with a short read timeout.
pub fn rtp_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind RTP socket");
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    s
}

/// An RTP packet (172 bytes: 12 header + 160 payload) with `pt`, `seq`, `ssrc`; the payload is
/// filled with `fill` so a receiver can tell senders apart.
pub fn rtp(pt: u8, seq: u16, ssrc: u32, fill: u8) -> Vec<u8> {
    let mut p = vec![fill; 172];
    p[0] = 0x80;
    p[1] = pt & 0x7f;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Every datagram `sock` receives within `wait` (until the first quiet read timeout after it).
pub fn drain(sock: &UdpSocket, wait: Duration) -> Vec<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => out.push((buf[..n].to_vec(), from)),
            Err(_) => break,
        }
    }
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    out
}

/// Sends `count` RTP packets (20 ms apart) from `from` to `to`, `seq` counting up from
/// `first_seq`, and returns what `receiver` got meanwhile (and up to 300 ms after).
pub fn send_and_collect(
    from: &UdpSocket,
    to: SocketAddr,
    receiver: &UdpSocket,
    pkt: impl Fn(u16) -> Vec<u8>,
    first_seq: u16,
    count: u16,
) -> Vec<(Vec<u8>, SocketAddr)> {
    let mut got = Vec::new();
    for i in 0..count {
        from.send_to(&pkt(first_seq.wrapping_add(i)), to)
            .expect("send RTP");
        got.extend(drain(receiver, Duration::from_millis(20)));
    }
    got.extend(drain(receiver, Duration::from_millis(300)));
    got
}

/// The audio address an SDP names: `c=` IP and the first `m=` port.
pub fn sdp_audio(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("c=IN IP4 ")
            .or(line.strip_prefix("c=IN IP6 "))
        {
            ip.get_or_insert(rest.trim().parse().ok()?);
        }
        if let Some(rest) = line.strip_prefix("m=") {
            port.get_or_insert(rest.split_whitespace().nth(1)?.parse().ok()?);
        }
    }
    Some(SocketAddr::new(ip?, port?))
}

/// The SDP lines with `c=` lines dropped and the port of each `m=` line blanked out: what
/// must reach the other phone byte for byte.
pub fn sdp_invariant(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\r\n")
        .filter(|l| !l.starts_with("c="))
        .map(|l| match l.strip_prefix("m=") {
            Some(rest) => {
                let mut parts: Vec<&str> = rest.split(' ').collect();
                if parts.len() > 1 {
                    parts[1] = "PORT";
                }
                format!("m={}", parts.join(" "))
            }
            None => l.to_owned(),
        })
        .collect()
}

/// An audio SDP offer/answer at `rtp` with the lines in `attrs` (each without CRLF) after
/// `m=audio PORT RTP/AVP {payloads}`.
pub fn sdp(rtp: SocketAddr, version: u32, payloads: &str, attrs: &[&str]) -> String {
    let mut s = format!(
        "v=0\r\no=- 4711 {version} IN IP4 {ip}\r\ns=tambun-media-test\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {payloads}\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    );
    for a in attrs {
        s.push_str(a);
        s.push_str("\r\n");
    }
    s
}

/// One side of an established dialog.
#[derive(Debug, Clone)]
pub struct Dialog {
    pub call_id: String,
    /// Our From value (with our tag) and the peer's (with its tag), as sent in requests.
    pub local: String,
    pub remote: String,
    /// The peer's Contact URI (Request-URI of in-dialog requests).
    pub target: String,
    /// Route header values, in the order to send.
    pub routes: Vec<String>,
    pub cseq: u32,
}

/// A phone on one UDP socket: registers one extension and makes or answers calls through the
/// switch.
pub struct Phone {
    pub sock: UdpSocket,
    pub local: SocketAddr,
    pub switch: SocketAddr,
    pub ext: String,
    pub password: String,
    queue: VecDeque<Msg>,
}

impl Phone {
    /// Binds a socket and registers `ext` (contact = this socket).
    pub fn register(switch: &Switch, ext: &str, password: &str) -> Phone {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind SIP socket");
        let local = sock.local_addr().expect("local addr");
        let client = UdpClient {
            sock: sock.try_clone().expect("clone socket"),
            server: switch.sip,
            local,
        };
        let mut ua = Ua::new(Conn::Udp(client), ext, password);
        let status = ua
            .register(&RegisterSpec::one(&format!("sip:{ext}@{local}"), 600))
            .status;
        assert_eq!(status, 200, "{ext} could not register");
        Phone {
            sock,
            local,
            switch: switch.sip,
            ext: ext.into(),
            password: password.into(),
            queue: VecDeque::new(),
        }
    }

    pub fn send(&self, text: &str) {
        self.sock
            .send_to(text.as_bytes(), self.switch)
            .expect("send SIP");
    }

    /// The next message (queued first) that `want` accepts, within `wait`; others stay queued.
    pub fn recv_where(&mut self, wait: Duration, want: impl Fn(&Msg) -> bool) -> Option<Msg> {
        if let Some(i) = self.queue.iter().position(&want) {
            return self.queue.remove(i);
        }
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                return None;
            };
            let Some(msg) = Msg::parse(&buf[..n]) else {
                continue;
            };
            if want(&msg) {
                return Some(msg);
            }
            self.queue.push_back(msg);
        }
    }

    /// The next request with `method`.
    pub fn recv_request(&mut self, method: &str, wait: Duration) -> Option<Msg> {
        let start = format!("{method} ");
        self.recv_where(wait, |m| m.status == 0 && m.start.starts_with(&start))
    }

    /// Sends `request` and waits for its final response, resending every 500 ms until some
    /// response arrives (UDP), 8 s at most.
    fn transact(&mut self, request: &str, cseq: &str) -> Option<Msg> {
        let deadline = Instant::now() + Duration::from_secs(8);
        self.send(request);
        let mut provisional = false;
        while Instant::now() < deadline {
            let m = self.recv_where(Duration::from_millis(500), |m| {
                m.status > 0 && m.header("cseq") == Some(cseq)
            });
            match m {
                Some(m) if m.status >= 200 => return Some(m),
                Some(_) => provisional = true,
                None if !provisional => self.send(request),
                None => {}
            }
        }
        None
    }

    fn via(&self) -> String {
        format!(
            "Via: SIP/2.0/UDP {};branch=z9hG4bK{};rport",
            self.local,
            unique("m")
        )
    }

    /// Calls `dialled` with `body` as the offer; answers the 407 and returns the 200 and the
    /// dialog (after sending the ACK). Panics with the response when the call fails.
    pub fn call(&mut self, dialled: &str, body: &str) -> (Msg, Dialog) {
        let call_id = unique("media-call");
        let from = format!(
            "<sip:{}@{}>;tag={}",
            self.ext,
            self.switch.ip(),
            unique("ft")
        );
        let uri = format!("sip:{dialled}@{}", self.switch);
        let to = format!("<sip:{dialled}@{}>", self.switch.ip());
        let invite = |me: &Phone, cseq: u32, auth: Option<&str>| {
            let auth = auth
                .map(|a| format!("Proxy-Authorization: {a}\r\n"))
                .unwrap_or_default();
            format!(
                "INVITE {uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{}@{}>\r\n{auth}\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                me.via(),
                me.ext,
                me.local,
                body.len()
            )
        };
        let first = invite(self, 1, None);
        let r = self
            .transact(&first, "1 INVITE")
            .expect("no answer to INVITE");
        let (r, cseq) = if r.status == 407 {
            self.ack_error(&first, &r);
            let challenge = r
                .header_lines("proxy-authenticate")
                .into_iter()
                .find_map(Challenge::parse)
                .expect("407 without a digest challenge");
            let auth = challenge.authorization(&self.ext, &self.password, "INVITE", &uri, 1);
            let second = invite(self, 2, Some(&auth));
            let r = self
                .transact(&second, "2 INVITE")
                .expect("no answer to the authenticated INVITE");
            if r.status >= 300 {
                self.ack_error(&second, &r);
            }
            (r, 2)
        } else {
            (r, 1)
        };
        assert_eq!(r.status, 200, "the call failed:\n{}", r.text());
        let mut routes: Vec<String> = r.header_values("record-route");
        routes.reverse();
        let dialog = Dialog {
            call_id,
            local: from,
            remote: r.header("to").expect("To").to_owned(),
            target: contact_uri(&r).expect("200 without Contact"),
            routes,
            cseq,
        };
        self.ack(&dialog, cseq);
        (r, dialog)
    }

    /// ACK for a non-2xx final response (same branch as the INVITE).
    fn ack_error(&self, invite: &str, response: &Msg) {
        let line = |name: &str| {
            invite
                .lines()
                .find(|l| {
                    l.split_once(':')
                        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                })
                .unwrap_or("")
                .to_owned()
        };
        let uri = invite
            .lines()
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or("");
        let cseq = response.header("cseq").unwrap_or("1 INVITE");
        let n = cseq.split(' ').next().unwrap_or("1");
        let ack = format!(
            "ACK {uri} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n{}\r\nTo: {}\r\n{}\r\n\
             CSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n",
            line("via"),
            line("from"),
            response.header("to").unwrap_or(""),
            line("call-id")
        );
        self.send(&ack);
    }

    /// An in-dialog request (ACK reuses the INVITE's CSeq number).
    fn in_dialog(&self, d: &Dialog, method: &str, cseq: u32, body: Option<&str>) -> String {
        self.in_dialog_with(d, method, cseq, &[], body.map(|b| ("application/sdp", b)))
    }

    /// An in-dialog request with `extra` header lines (without CRLF) and a body of the given
    /// content type.
    fn in_dialog_with(
        &self,
        d: &Dialog,
        method: &str,
        cseq: u32,
        extra: &[&str],
        body: Option<(&str, &str)>,
    ) -> String {
        let mut out = format!(
            "{method} {} SIP/2.0\r\n{}\r\nMax-Forwards: 70\r\n",
            d.target,
            self.via()
        );
        for r in &d.routes {
            out.push_str(&format!("Route: {r}\r\n"));
        }
        out.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{}@{}>\r\n",
            d.local, d.remote, d.call_id, self.ext, self.local
        ));
        for line in extra {
            out.push_str(line);
            out.push_str("\r\n");
        }
        match body {
            Some((content_type, b)) => out.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        out
    }

    /// Any other in-dialog request (INFO, UPDATE, NOTIFY, REFER …) with `extra` header lines and
    /// an optional (content type, body); returns the final response.
    pub fn request(
        &mut self,
        d: &mut Dialog,
        method: &str,
        extra: &[&str],
        body: Option<(&str, &str)>,
    ) -> Msg {
        d.cseq += 1;
        let req = self.in_dialog_with(d, method, d.cseq, extra, body);
        self.transact(&req, &format!("{} {method}", d.cseq))
            .unwrap_or_else(|| panic!("no answer to {method}"))
    }

    pub fn ack(&self, d: &Dialog, cseq: u32) {
        self.send(&self.in_dialog(d, "ACK", cseq, None));
    }

    /// A re-INVITE with `body`; returns the final response (ACKed when 2xx).
    pub fn reinvite(&mut self, d: &mut Dialog, body: &str) -> Msg {
        d.cseq += 1;
        let req = self.in_dialog(d, "INVITE", d.cseq, Some(body));
        let r = self
            .transact(&req, &format!("{} INVITE", d.cseq))
            .expect("no answer to the re-INVITE");
        if (200..300).contains(&r.status) {
            self.ack(d, d.cseq);
        }
        r
    }

    /// BYE; returns the final response.
    pub fn bye(&mut self, d: &mut Dialog) -> Msg {
        d.cseq += 1;
        let req = self.in_dialog(d, "BYE", d.cseq, None);
        self.transact(&req, &format!("{} BYE", d.cseq))
            .expect("no answer to BYE")
    }

    /// Answers `request` with `status` (and SDP `body`); `tag` is added to To when it has none.
    pub fn respond(&self, request: &Msg, status: u16, reason: &str, tag: &str, body: Option<&str>) {
        let mut out = format!("SIP/2.0 {status} {reason}\r\n");
        for v in request.header_lines("via") {
            out.push_str(&format!("Via: {v}\r\n"));
        }
        for r in request.header_lines("record-route") {
            out.push_str(&format!("Record-Route: {r}\r\n"));
        }
        let to = request.header("to").unwrap_or("");
        let to = if to.contains(";tag=") {
            to.to_owned()
        } else {
            format!("{to};tag={tag}")
        };
        out.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\nContact: <sip:{}@{}>\r\n",
            request.header("from").unwrap_or(""),
            request.header("call-id").unwrap_or(""),
            request.header("cseq").unwrap_or(""),
            self.ext,
            self.local
        ));
        match body {
            Some(b) => out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.send(&out);
    }

    /// Waits for an INVITE, answers 200 with `body`, waits for the ACK. Returns the INVITE and
    /// the callee's dialog.
    pub fn answer(&mut self, body: &str) -> (Msg, Dialog) {
        let invite = self
            .recv_request("INVITE", Duration::from_secs(5))
            .expect("no INVITE reached the callee");
        let tag = unique("tt");
        self.respond(&invite, 200, "OK", &tag, Some(body));
        let to = invite.header("to").unwrap_or("");
        let dialog = Dialog {
            call_id: invite.header("call-id").unwrap_or("").to_owned(),
            local: format!("{to};tag={tag}"),
            remote: invite.header("from").unwrap_or("").to_owned(),
            target: contact_uri(&invite).expect("INVITE without Contact"),
            routes: invite.header_values("record-route"),
            cseq: 100,
        };
        self.recv_request("ACK", Duration::from_secs(5))
            .expect("no ACK reached the callee");
        (invite, dialog)
    }

    /// Waits for an in-dialog request (`method`) and answers it 200 (with `body`).
    pub fn answer_in_dialog(&mut self, method: &str, body: Option<&str>) -> Msg {
        let req = self
            .recv_request(method, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("no {method} reached {}", self.ext));
        self.respond(&req, 200, "OK", "", body);
        if method == "INVITE" {
            self.recv_request("ACK", Duration::from_secs(5))
                .expect("no ACK for the re-INVITE");
        }
        req
    }
}

/// The URI of a message's first Contact.
pub fn contact_uri(m: &Msg) -> Option<String> {
    let v = m.header("contact")?;
    let start = v.find('<')? + 1;
    let end = v[start..].find('>')? + start;
    Some(v[start..end].to_owned())
}

/// Writes a 16-bit mono 8 kHz WAV of a 440 Hz tone lasting `secs` (baresip's `aufile` audio
/// source, so it sends real RTP).
pub fn write_tone_wav(path: &std::path::Path, secs: u32) {
    let samples = 8000 * secs;
    let data_len = samples * 2;
    let mut w = Vec::with_capacity(44 + data_len as usize);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&8000u32.to_le_bytes());
    w.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    w.extend_from_slice(&2u16.to_le_bytes()); // block align
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..samples {
        let v =
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / 8000.0).sin()) as i16;
        w.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, w).expect("write tone WAV");
}
