//! WebRTC ↔ G.711 load client: `cargo bench --bench webrtc_load -- calls|idle-regs ARGS`.
//!
//! `calls`: N "browsers" each speak SIP over plain WebSocket (`ws://`, subprotocol `sip`, a
//! `.invalid` Via/Contact host like JsSIP), register with digest, and call one of N plain-UDP
//! "desk phones" (one shared SIP socket, auto-answer with `RTP/AVP` PCMU) with a WebRTC offer
//! (`UDP/TLS/RTP/SAVPF`, ICE ufrag/pwd, the fingerprint of a str0m certificate,
//! `a=setup:actpass`, rtcp-mux, one host candidate on 127.0.0.1, PCMU only, mid, `a=ssrc`),
//! answering the 407. The calls are set up one after another; then every browser's media
//! starts at once (the ICE + DTLS burst): each is its own str0m `Rtc` (RTP mode, full ICE,
//! *controlling*, because the switch is ICE-lite; DTLS role from the answer's `a=setup`), with
//! the answer's candidates. Once all are connected (or the connect timeout passes), both ends
//! send 20 ms PCMU packets (50 pps each way) whose payload carries the call, a sequence number
//! and the send time (one clock: both ends are in this process). After a warm-up, loss and
//! one-way latency (send → receive, relay in the middle, this client's own encrypt/decrypt and
//! scheduling included) are counted per direction over the window, with the server's CPU
//! (`/proc/PID/stat` utime+stime of the given processes and their children) over the same
//! window. Then BYE.
//!
//! `idle-regs`: K WebSocket flows, each registered with digest, left idle; the server's
//! memory (VmRSS and PSS, summed over its processes) before and after.
//!
//! One thread, epoll (level-triggered) over non-blocking UDP sockets; signalling is blocking
//! and happens outside the measured windows. Loopback only: every address must be 127/8.
//! Prints human-readable lines and one `RESULT key=value ...` line for scripts.

#[path = "common/mod.rs"]
#[allow(dead_code)] // each load client uses its part
mod common;
use common::{
    authorization, cpu_of, parse_pid, sdp_media_addr, token, with_descendants, Epoll, Msg,
};

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use rand::Rng;
use str0m::config::DtlsCert;
use str0m::format::{Codec, FormatParams};
use str0m::ice::IceCreds;
use str0m::media::{Frequency, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

const MAGIC: &[u8; 4] = b"TBWL";
const PERIOD: Duration = Duration::from_millis(20);
/// Latency histogram: 10 µs buckets up to 2 s.
const BUCKET_US: u64 = 10;
const BUCKETS: usize = 200_000;
const SIP_WAIT: Duration = Duration::from_secs(5);

#[derive(Parser)]
#[command(about = "WebRTC <-> G.711 load client for SIP switches (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// (added by `cargo bench`; ignored)
    #[arg(long, hide = true, global = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// N concurrent browser (WS + DTLS-SRTP) → desk phone (UDP + RTP) calls
    Calls(CallArgs),
    /// K idle registered WebSocket flows: the server's memory per registration
    IdleRegs(IdleArgs),
}

#[derive(Args)]
struct Target {
    /// The server's SIP over UDP address (the phones register and are called here)
    #[arg(long)]
    sip: SocketAddr,
    /// The server's plain WebSocket listener (ws://ADDR/PATH)
    #[arg(long)]
    ws: SocketAddr,
    #[arg(long, default_value = "/ws")]
    ws_path: String,
    /// SIP domain of the AORs and Request-URIs
    #[arg(long, default_value = "127.0.0.1")]
    domain: String,
    /// A server process to measure, NAME=PID (its children count too); repeatable
    #[arg(long = "server-pid", value_parser = parse_pid)]
    server_pids: Vec<(String, u32)>,
    /// Name printed in the RESULT line
    #[arg(long, default_value = "server")]
    label: String,
}

#[derive(Args)]
struct CallArgs {
    #[command(flatten)]
    target: Target,
    /// Concurrent calls
    #[arg(long)]
    calls: usize,
    /// Measured seconds of media
    #[arg(long, default_value_t = 6.0)]
    duration: f64,
    /// Seconds of media before the window (not counted)
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Extensions of the browsers: FIRST.. (password pwN)
    #[arg(long, default_value_t = 10000)]
    first_browser: u32,
    /// Extensions of the phones: FIRST..
    #[arg(long, default_value_t = 15000)]
    first_phone: u32,
    /// The phones' shared SIP socket (fixed, so a re-run refreshes the same bindings)
    #[arg(long, default_value_t = 5096)]
    phone_sip_port: u16,
    /// Give up on ICE + DTLS after this many seconds
    #[arg(long, default_value_t = 20.0)]
    connect_timeout: f64,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    target: Target,
    /// Registrations (one WebSocket each)
    #[arg(long, default_value_t = 2000)]
    count: usize,
    #[arg(long, default_value_t = 10000)]
    first: u32,
    /// Seconds to wait after the last registration before reading memory
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        // `cargo bench` with no arguments runs every bench: nothing to do without a server.
        None => {
            eprintln!("webrtc_load: needs a server; see `cargo bench --bench webrtc_load -- --help` and benches/webrtc-load.sh");
            Ok(())
        }
        Some(Cmd::Calls(a)) => {
            check_loopback(&a.target)?;
            run_calls(a)
        }
        Some(Cmd::IdleRegs(a)) => {
            check_loopback(&a.target)?;
            run_idle(a)
        }
    }
}

fn check_loopback(t: &Target) -> anyhow::Result<()> {
    for a in [t.sip, t.ws] {
        if !a.ip().is_loopback() {
            bail!("{a} is not a loopback address: this tool only talks to 127.0.0.0/8");
        }
    }
    Ok(())
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

// SIP messages, digest answers and SDP addresses: `common`.

// ---------------------------------------------------------------- transports

/// A browser's SIP over WebSocket connection (blocking).
struct Ws {
    ws: WebSocket<TcpStream>,
    /// The `.invalid` host of its Via and Contact.
    host: String,
}

impl Ws {
    fn connect(server: SocketAddr, path: &str) -> anyhow::Result<Ws> {
        let tcp = TcpStream::connect_timeout(&server, Duration::from_secs(3))?;
        tcp.set_nodelay(true)?;
        let mut req = format!("ws://{server}{path}").into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "sip".parse()?);
        let (ws, _) = tungstenite::client::client(req, tcp)
            .map_err(|e| anyhow!("websocket upgrade at {server}: {e}"))?;
        Ok(Ws {
            ws,
            host: format!("{}.invalid", token("lt")),
        })
    }
    fn send(&mut self, text: &str) -> anyhow::Result<()> {
        self.ws
            .send(Message::text(text))
            .map_err(|e| anyhow!("websocket send: {e}"))
    }
    fn recv(&mut self, wait: Duration) -> Option<Msg> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.ws
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match self.ws.read() {
                Ok(Message::Text(t)) => {
                    if let Some(m) = Msg::parse(t.as_bytes()) {
                        return Some(m);
                    }
                }
                Ok(Message::Binary(b)) => {
                    if let Some(m) = Msg::parse(&b) {
                        return Some(m);
                    }
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
    /// The next final response to `cseq_method` (provisional responses and requests skipped).
    fn recv_final(&mut self, cseq_method: &str, wait: Duration) -> Option<Msg> {
        let deadline = Instant::now() + wait;
        loop {
            let m = self.recv(deadline.checked_duration_since(Instant::now())?)?;
            if m.status() >= 200 && m.cseq_method() == cseq_method {
                return Some(m);
            }
        }
    }
}

/// Register `user` (password pwN) on a WebSocket: REGISTER → 401 → REGISTER with digest → 200.
fn register_ws(ws: &mut Ws, domain: &str, user: &str, expires: u32) -> anyhow::Result<()> {
    let call_id = token("r");
    let tag = token("t");
    let uri = format!("sip:{domain}");
    let mut auth = String::new();
    for cseq in 1..=2 {
        let req = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/WS {host};branch=z9hG4bK{b}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{domain}>;tag={tag}\r\nTo: <sip:{user}@{domain}>\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{host};transport=ws>;expires={expires}\r\n\
             Expires: {expires}\r\n{auth}User-Agent: tambun-webrtc-load\r\nContent-Length: 0\r\n\r\n",
            host = ws.host,
            b = token(""),
        );
        ws.send(&req)?;
        let r = ws
            .recv_final("REGISTER", SIP_WAIT)
            .ok_or_else(|| anyhow!("{user}: no answer to REGISTER over ws"))?;
        match r.status() {
            200 => return Ok(()),
            401 | 407 if cseq == 1 => {
                let (h, out) = if r.status() == 401 {
                    ("www-authenticate", "Authorization")
                } else {
                    ("proxy-authenticate", "Proxy-Authorization")
                };
                let v = authorization(&r.all(h), user, &format!("pw{user}"), "REGISTER", &uri)?;
                auth = format!("{out}: {v}\r\n");
            }
            s => bail!("{user}: REGISTER over ws answered {s}"),
        }
    }
    bail!("{user}: REGISTER with credentials refused")
}

/// The phones' shared SIP socket (blocking with timeouts) and what it answered.
struct Phones {
    sock: UdpSocket,
    server: SocketAddr,
    local: SocketAddr,
    domain: String,
    /// 200 OKs sent, by Call-ID, for INVITE retransmissions.
    answered: HashMap<String, String>,
    /// INVITEs received, by phone user: (the relay's RTP address from its SDP, Call-ID).
    invites: HashMap<String, (SocketAddr, String)>,
    byes: usize,
}

impl Phones {
    fn bind(server: SocketAddr, port: u16, domain: &str) -> anyhow::Result<Phones> {
        let sock = UdpSocket::bind((LOCALHOST, port))
            .with_context(|| format!("phones' SIP socket 127.0.0.1:{port}"))?;
        let local = sock.local_addr()?;
        Ok(Phones {
            sock,
            server,
            local,
            domain: domain.to_string(),
            answered: HashMap::new(),
            invites: HashMap::new(),
            byes: 0,
        })
    }

    fn recv(&mut self, wait: Duration) -> Option<Msg> {
        let mut buf = vec![0u8; 65536];
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let (n, _) = match self.sock.recv_from(&mut buf) {
                Ok(ok) => ok,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(_) => continue,
            };
            let Some(m) = Msg::parse(&buf[..n]) else {
                continue;
            };
            if m.status() == 0 && self.handle_request(&m) {
                continue;
            }
            return Some(m);
        }
    }

    /// Answers what a desk phone answers by itself; true when `m` was handled.
    fn handle_request(&mut self, m: &Msg) -> bool {
        match m.method() {
            "ACK" => true,
            "INVITE" => {
                if let Some(ok) = self.answered.get(m.call_id()) {
                    let _ = self.sock.send_to(ok.as_bytes(), self.server);
                    return true;
                }
                false
            }
            "BYE" => {
                self.byes += 1;
                self.respond(m, "200 OK", "", "");
                true
            }
            _ => {
                self.respond(m, "200 OK", "", "");
                true
            }
        }
    }

    fn respond(&self, m: &Msg, status: &str, to_tag: &str, extra: &str) -> String {
        let mut r = format!("SIP/2.0 {status}\r\n");
        for v in m.all("via") {
            r.push_str(&format!("Via: {v}\r\n"));
        }
        for v in m.all("record-route") {
            r.push_str(&format!("Record-Route: {v}\r\n"));
        }
        let to = m.header("to").unwrap_or("");
        let to = if to_tag.is_empty() || to.contains(";tag=") {
            to.to_string()
        } else {
            format!("{to};tag={to_tag}")
        };
        r.push_str(&format!(
            "From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}",
            m.header("from").unwrap_or(""),
            m.call_id(),
            m.header("cseq").unwrap_or("")
        ));
        if !extra.contains("Content-Length") {
            r.push_str("Content-Length: 0\r\n\r\n");
        }
        let _ = self.sock.send_to(r.as_bytes(), self.server);
        r
    }

    fn register(&mut self, user: &str, expires: u32) -> anyhow::Result<()> {
        let call_id = token("pr");
        let tag = token("t");
        let uri = format!("sip:{}", self.domain);
        let mut auth = String::new();
        for cseq in 1..=2 {
            let req = format!(
                "REGISTER {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {l};branch=z9hG4bK{b};rport\r\nMax-Forwards: 70\r\n\
                 From: <sip:{user}@{d}>;tag={tag}\r\nTo: <sip:{user}@{d}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{l}>\r\nExpires: {expires}\r\n{auth}\
                 User-Agent: tambun-webrtc-load\r\nContent-Length: 0\r\n\r\n",
                l = self.local,
                d = self.domain,
                b = token(""),
            );
            self.sock.send_to(req.as_bytes(), self.server)?;
            let deadline = Instant::now() + SIP_WAIT;
            let r = loop {
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .ok_or_else(|| anyhow!("phone {user}: no answer to REGISTER"))?;
                if let Some(m) = self.recv(left) {
                    if m.call_id() == call_id && m.status() >= 200 {
                        break m;
                    }
                }
            };
            match r.status() {
                200 => return Ok(()),
                401 | 407 if cseq == 1 => {
                    let (h, out) = if r.status() == 401 {
                        ("www-authenticate", "Authorization")
                    } else {
                        ("proxy-authenticate", "Proxy-Authorization")
                    };
                    let v = authorization(&r.all(h), user, &format!("pw{user}"), "REGISTER", &uri)?;
                    auth = format!("{out}: {v}\r\n");
                }
                s => bail!("phone {user}: REGISTER answered {s}"),
            }
        }
        bail!("phone {user}: REGISTER with credentials refused")
    }

    /// Waits for the INVITE to `user` and answers 200 with plain PCMU on `rtp_port`.
    fn answer(&mut self, user: &str, rtp_port: u16, wait: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or_else(|| anyhow!("phone {user}: no INVITE"))?;
            let Some(m) = self.recv(left) else { continue };
            if m.method() != "INVITE" {
                continue;
            }
            let to_user = m
                .start
                .split_whitespace()
                .nth(1)
                .and_then(|u| u.strip_prefix("sip:"))
                .and_then(|u| u.split(['@', ';']).next())
                .unwrap_or("")
                .to_string();
            let relay = sdp_media_addr(&m.body)
                .ok_or_else(|| anyhow!("phone {to_user}: INVITE without a usable SDP"))?;
            let sdp = format!(
                "v=0\r\no=- {rtp_port} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
            );
            let extra = format!(
                "Contact: <sip:{to_user}@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                self.local,
                sdp.len()
            );
            let ok = self.respond(&m, "200 OK", &token("pt"), &extra);
            self.answered.insert(m.call_id().to_string(), ok);
            self.invites
                .insert(to_user.clone(), (relay, m.call_id().to_string()));
            if to_user == user {
                return Ok(());
            }
        }
    }
}

/// What the answer to a browser's offer says of the far end's transport.
#[derive(Debug)]
struct Answer {
    ufrag: String,
    pwd: String,
    fingerprint: String,
    /// The far end is the DTLS client (`a=setup:active`).
    remote_active: bool,
    candidates: Vec<SocketAddr>,
    ssrc: Option<u32>,
    proto: String,
}

fn parse_answer(sdp: &str) -> anyhow::Result<Answer> {
    let mut a = Answer {
        ufrag: String::new(),
        pwd: String::new(),
        fingerprint: String::new(),
        remote_active: true,
        candidates: vec![],
        ssrc: None,
        proto: String::new(),
    };
    for l in sdp.lines().map(str::trim) {
        if let Some(v) = l.strip_prefix("a=ice-ufrag:") {
            a.ufrag = v.to_string();
        } else if let Some(v) = l.strip_prefix("a=ice-pwd:") {
            a.pwd = v.to_string();
        } else if let Some(v) = l.strip_prefix("a=fingerprint:") {
            a.fingerprint = v.to_string();
        } else if let Some(v) = l.strip_prefix("a=setup:") {
            a.remote_active = v != "passive";
        } else if let Some(v) = l.strip_prefix("a=candidate:") {
            let f: Vec<&str> = v.split_whitespace().collect();
            if f.len() >= 6 && f[1] == "1" && f[2].eq_ignore_ascii_case("udp") {
                if let (Ok(ip), Ok(port)) = (f[4].parse::<Ipv4Addr>(), f[5].parse::<u16>()) {
                    a.candidates.push(SocketAddr::new(IpAddr::V4(ip), port));
                }
            }
        } else if let Some(v) = l.strip_prefix("a=ssrc:") {
            a.ssrc = a
                .ssrc
                .or(v.split_whitespace().next().and_then(|s| s.parse().ok()));
        } else if let Some(v) = l.strip_prefix("m=audio ") {
            a.proto = v.split_whitespace().nth(1).unwrap_or("").to_string();
        }
    }
    if a.candidates.is_empty() {
        a.candidates.extend(sdp_media_addr(sdp));
    }
    if a.ufrag.is_empty() || a.pwd.is_empty() || a.fingerprint.is_empty() {
        bail!("the answer lacks ICE credentials or a fingerprint:\n{sdp}");
    }
    Ok(a)
}

// ---------------------------------------------------------------- one call

struct Call {
    idx: u32,
    browser_user: String,
    domain: String,
    ws: Ws,
    bsock: UdpSocket,
    blocal: SocketAddr,
    psock: UdpSocket,
    ufrag: String,
    pwd: String,
    b_ssrc: u32,
    p_ssrc: u32,
    // dialog
    call_id: String,
    from_tag: String,
    to: String,
    remote_target: String,
    route: Vec<String>,
    answer: Answer,
    phone_dst: SocketAddr,
    // media
    rtc: Option<Rtc>,
    deadline: Instant,
    connected_at: Option<Instant>,
    failed: Option<String>,
    b_seq: u64,
    p_seq: u16,
    rx: [u64; 2],
}

fn bind_media() -> anyhow::Result<(UdpSocket, SocketAddr)> {
    let s = UdpSocket::bind((LOCALHOST, 0))?;
    s.set_nonblocking(true)?;
    let a = s.local_addr()?;
    Ok((s, a))
}

/// Sets one call up: the INVITE (407, then with credentials), the phone's answer, the ACK.
fn setup_call(
    t: &Target,
    phones: &mut Phones,
    idx: u32,
    browser_user: &str,
    phone_user: &str,
    fingerprint: &str,
) -> anyhow::Result<Call> {
    let mut ws = Ws::connect(t.ws, &t.ws_path)?;
    register_ws(&mut ws, &t.domain, browser_user, 600)?;
    let (bsock, blocal) = bind_media()?;
    let (psock, plocal) = bind_media()?;
    let ufrag = token("u")[..9].to_string();
    let pwd = token("p") + &token("");
    let b_ssrc: u32 = rand::thread_rng().gen();
    let p_ssrc: u32 = rand::thread_rng().gen();
    let port = blocal.port();
    let offer = format!(
        "v=0\r\no=- {sess} 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=msid-semantic: WMS lt\r\n\
         m=audio {port} UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 127.0.0.1\r\n\
         a=candidate:1 1 udp 2122260223 127.0.0.1 {port} typ host generation 0\r\n\
         a=ice-ufrag:{ufrag}\r\na=ice-pwd:{pwd}\r\na=fingerprint:{fingerprint}\r\na=setup:actpass\r\n\
         a=mid:0\r\na=sendrecv\r\na=msid:lt lt{idx}\r\na=rtcp-mux\r\na=rtpmap:0 PCMU/8000\r\n\
         a=ssrc:{b_ssrc} cname:lt{idx}\r\n",
        sess = rand::thread_rng().gen::<u32>()
    );
    let call_id = token("c");
    let from_tag = token("f");
    let d = &t.domain;
    let ruri = format!("sip:{phone_user}@{d}");
    let mut auth = String::new();
    let mut ok = None;
    for cseq in 1..=2u32 {
        let branch = format!("z9hG4bK{}", token(""));
        let invite = format!(
            "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/WS {h};branch={branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:{browser_user}@{d}>;tag={from_tag}\r\nTo: <sip:{phone_user}@{d}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:{browser_user}@{h};transport=ws;ob>\r\n\
             {auth}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            offer.len(),
            h = ws.host,
        );
        ws.send(&invite)?;
        if cseq == 2 {
            phones.answer(phone_user, plocal.port(), SIP_WAIT)?;
        }
        let r = ws
            .recv_final("INVITE", SIP_WAIT)
            .ok_or_else(|| anyhow!("call {idx}: no final answer to INVITE"))?;
        match r.status() {
            200 => {
                ok = Some(r);
                break;
            }
            401 | 407 if cseq == 1 => {
                let ack = format!(
                    "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/WS {h};branch={branch}\r\nMax-Forwards: 70\r\n\
                     From: <sip:{browser_user}@{d}>;tag={from_tag}\r\nTo: {}\r\nCall-ID: {call_id}\r\n\
                     CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    r.header("to").unwrap_or(""),
                    h = ws.host,
                );
                ws.send(&ack)?;
                let (h, out) = if r.status() == 401 {
                    ("www-authenticate", "Authorization")
                } else {
                    ("proxy-authenticate", "Proxy-Authorization")
                };
                let v = authorization(
                    &r.all(h),
                    browser_user,
                    &format!("pw{browser_user}"),
                    "INVITE",
                    &ruri,
                )?;
                auth = format!("{out}: {v}\r\n");
            }
            s => bail!("call {idx}: INVITE answered {s}: {}", r.summary()),
        }
    }
    let ok = ok.ok_or_else(|| anyhow!("call {idx}: INVITE with credentials refused"))?;
    let answer = parse_answer(&ok.body).with_context(|| format!("call {idx}"))?;
    let to = ok.header("to").unwrap_or("").to_string();
    let remote_target = ok
        .contact_uri()
        .ok_or_else(|| anyhow!("call {idx}: 200 without Contact"))?;
    let mut route: Vec<String> = ok
        .all("record-route")
        .iter()
        .flat_map(|v| split_commas(v))
        .collect();
    route.reverse();
    let mut call = Call {
        idx,
        browser_user: browser_user.to_string(),
        domain: t.domain.clone(),
        ws,
        bsock,
        blocal,
        psock,
        ufrag,
        pwd,
        b_ssrc,
        p_ssrc,
        call_id,
        from_tag,
        to,
        remote_target,
        route,
        answer,
        phone_dst: phones
            .invites
            .get(phone_user)
            .map(|(a, _)| *a)
            .ok_or_else(|| anyhow!("call {idx}: the phone saw no INVITE"))?,
        rtc: None,
        deadline: Instant::now(),
        connected_at: None,
        failed: None,
        b_seq: rand::thread_rng().gen_range(1..30000),
        p_seq: rand::thread_rng().gen_range(1..30000),
        rx: [0; 2],
    };
    let ack = call.in_dialog("ACK", 2);
    call.ws.send(&ack)?;
    Ok(call)
}

fn split_commas(v: &str) -> Vec<String> {
    let mut out = vec![];
    let mut depth = 0i32;
    let mut cur = String::new();
    for ch in v.chars() {
        match ch {
            '<' => depth += 1,
            '>' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

impl Call {
    fn in_dialog(&self, method: &str, cseq: u32) -> String {
        let routes: String = self
            .route
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/WS {h};branch=z9hG4bK{b}\r\nMax-Forwards: 70\r\n{routes}\
             From: <sip:{u}@{d}>;tag={ft}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n\
             Content-Length: 0\r\n\r\n",
            self.remote_target,
            h = self.ws.host,
            b = token(""),
            u = self.browser_user,
            d = self.domain,
            ft = self.from_tag,
            to = self.to,
            cid = self.call_id,
        )
    }

    /// The browser's str0m peer: full ICE, controlling, DTLS role from the answer.
    fn start_media(&mut self, cert: &DtlsCert, now: Instant) -> anyhow::Result<()> {
        let mut cfg = RtcConfig::new()
            .set_rtp_mode(true)
            .set_dtls_cert(cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: self.ufrag.clone(),
                pass: self.pwd.clone(),
            })
            .clear_codecs()
            .clear_extension_map();
        cfg.codec_config().add_config(
            0.into(),
            None,
            Codec::PCMU,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = cfg.build(now);
        rtc.add_local_candidate(
            Candidate::host(self.blocal, "udp").map_err(|e| anyhow!("local candidate: {e}"))?,
        );
        for c in &self.answer.candidates {
            rtc.add_remote_candidate(
                Candidate::host(*c, "udp").map_err(|e| anyhow!("remote candidate: {e}"))?,
            );
        }
        let mut api = rtc.direct_api();
        api.set_ice_controlling(true);
        api.set_remote_ice_credentials(IceCreds {
            ufrag: self.answer.ufrag.clone(),
            pass: self.answer.pwd.clone(),
        });
        api.set_remote_fingerprint(
            self.answer
                .fingerprint
                .parse()
                .map_err(|e| anyhow!("fingerprint {:?}: {e:?}", self.answer.fingerprint))?,
        );
        let mid: Mid = "0".into();
        api.declare_media(mid, MediaKind::Audio);
        api.declare_stream_tx(self.b_ssrc.into(), None, mid, None);
        // The switch announces its own SSRC; a relay without a=ssrc passes the phone's through.
        let rx = self.answer.ssrc.unwrap_or(self.p_ssrc);
        api.expect_stream_rx(rx.into(), None, mid, None);
        api.start_dtls(!self.answer.remote_active)
            .map_err(|e| anyhow!("start_dtls: {e}"))?;
        self.rtc = Some(rtc);
        Ok(())
    }
}

// ---------------------------------------------------------------- measurement

struct Groups(Vec<(String, Vec<u32>)>);

impl Groups {
    fn of(t: &Target) -> Groups {
        Groups(
            t.server_pids
                .iter()
                .map(|(n, p)| (n.clone(), with_descendants(*p)))
                .collect(),
        )
    }
    fn cpu(&self) -> Vec<f64> {
        self.0.iter().map(|(_, p)| cpu_of(p)).collect()
    }
    fn mem_kib(&self, field: &str, file: &str) -> Vec<u64> {
        self.0
            .iter()
            .map(|(_, pids)| {
                pids.iter()
                    .map(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/{file}"))
                            .ok()
                            .and_then(|s| {
                                s.lines()
                                    .find(|l| l.starts_with(field))
                                    .and_then(|l| l.split_whitespace().nth(1))
                                    .and_then(|v| v.parse::<u64>().ok())
                            })
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .collect()
    }
}

fn self_cpu() -> f64 {
    cpu_of(&[std::process::id()])
}

struct Hist(Vec<u32>, u64);

impl Hist {
    fn new() -> Hist {
        Hist(vec![0; BUCKETS], 0)
    }
    fn add(&mut self, us: u64) {
        let b = ((us / BUCKET_US) as usize).min(BUCKETS - 1);
        self.0[b] += 1;
        self.1 += 1;
    }
    /// The `q` quantile in ms (bucket upper bound).
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.1 == 0 {
            return f64::NAN;
        }
        let want = ((self.1 as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.0.iter().enumerate() {
            seen += *c as u64;
            if seen >= want {
                return ((i as u64 + 1) * BUCKET_US) as f64 / 1000.0;
            }
        }
        f64::NAN
    }
}

struct Stats {
    epoch: Instant,
    window: (u64, u64),
    sent: [u64; 2],
    recv: [u64; 2],
    hist: [Hist; 2],
    foreign: u64,
}

impl Stats {
    fn ns(&self, t: Instant) -> u64 {
        t.duration_since(self.epoch).as_nanos() as u64
    }
    fn in_window(&self, ns: u64) -> bool {
        ns >= self.window.0 && ns < self.window.1
    }
    /// A payload received on direction `dir` at `now`.
    fn handle_payload(&mut self, dir: usize, payload: &[u8], now: Instant) -> Option<u32> {
        if payload.len() < 20 || &payload[..4] != MAGIC {
            self.foreign += 1;
            return None;
        }
        let idx = u32::from_be_bytes(payload[4..8].try_into().ok()?);
        let sent = u64::from_be_bytes(payload[12..20].try_into().ok()?);
        if !self.in_window(sent) {
            return None;
        }
        self.recv[dir] += 1;
        let lat = self.ns(now).saturating_sub(sent) / 1000;
        self.hist[dir].add(lat);
        Some(idx)
    }
}

fn payload(idx: u32, seq: u32, ns: u64) -> [u8; 160] {
    let mut p = [0xffu8; 160];
    p[..4].copy_from_slice(MAGIC);
    p[4..8].copy_from_slice(&idx.to_be_bytes());
    p[8..12].copy_from_slice(&seq.to_be_bytes());
    p[12..20].copy_from_slice(&ns.to_be_bytes());
    p
}

/// The payload of a plain RTP packet.
fn rtp_payload(b: &[u8]) -> Option<&[u8]> {
    if b.len() < 12 || b[0] >> 6 != 2 || (200..=206).contains(&b[1]) {
        return None;
    }
    let mut start = 12 + 4 * (b[0] & 0x0f) as usize;
    if b[0] & 0x10 != 0 {
        let w = u16::from_be_bytes(b.get(start + 2..start + 4)?.try_into().ok()?);
        start += 4 + 4 * w as usize;
    }
    b.get(start..)
}

/// Drains a browser's str0m outputs: datagrams out, events in.
fn drain(call: &mut Call, stats: &mut Stats, now: Instant, next_timer: &mut Instant) {
    let Some(rtc) = call.rtc.as_mut() else { return };
    loop {
        match rtc.poll_output() {
            Ok(Output::Timeout(t)) => {
                call.deadline = t.max(now + Duration::from_micros(200));
                *next_timer = (*next_timer).min(call.deadline);
                return;
            }
            Ok(Output::Transmit(t)) => {
                let _ = call.bsock.send_to(&t.contents, t.destination);
            }
            Ok(Output::Event(e)) => match e {
                Event::Connected => call.connected_at = Some(now),
                Event::RtpPacket(p) if stats.handle_payload(1, &p.payload, now).is_some() => {
                    call.rx[1] += 1;
                }
                _ => {}
            },
            Err(e) => {
                call.failed.get_or_insert_with(|| e.to_string());
                call.deadline = now + Duration::from_secs(3600);
                return;
            }
        }
    }
}

fn handle_readable(
    call: &mut Call,
    phone: bool,
    buf: &mut [u8],
    stats: &mut Stats,
    now: Instant,
    next_timer: &mut Instant,
) {
    loop {
        let sock = if phone { &call.psock } else { &call.bsock };
        let (n, src) = match sock.recv_from(buf) {
            Ok(ok) => ok,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(_) => return,
        };
        if phone {
            if let Some(p) = rtp_payload(&buf[..n]) {
                if stats.handle_payload(0, p, now).is_some() {
                    call.rx[0] += 1;
                }
            }
            continue;
        }
        let Some(rtc) = call.rtc.as_mut() else {
            continue;
        };
        if let Ok(r) = Receive::new(Protocol::Udp, src, call.blocal, &buf[..n]) {
            if let Err(e) = rtc.handle_input(Input::Receive(now, r)) {
                if !rtc.is_alive() {
                    call.failed.get_or_insert_with(|| e.to_string());
                }
            }
        }
        drain(call, stats, now, next_timer);
    }
}

fn send_both(call: &mut Call, stats: &mut Stats, now: Instant, next_timer: &mut Instant) {
    let ns = stats.ns(now);
    let counted = stats.in_window(ns);
    // browser → phone, through str0m (SRTP)
    if call.connected_at.is_some() && call.failed.is_none() {
        if let Some(rtc) = call.rtc.as_mut() {
            let p = payload(call.idx, call.b_seq as u32, ns);
            let mut api = rtc.direct_api();
            if let Some(tx) = api.stream_tx(&Ssrc::from(call.b_ssrc)) {
                tx.write_rtp(RtpWrite::new(
                    0.into(),
                    call.b_seq.into(),
                    (call.b_seq * 160) as u32,
                    now,
                    &p[..],
                ));
                call.b_seq += 1;
                if counted {
                    stats.sent[0] += 1;
                }
            }
            let _ = rtc.handle_input(Input::Timeout(now));
            drain(call, stats, now, next_timer);
        }
    }
    // phone → browser, plain RTP
    let mut pkt = [0u8; 172];
    pkt[0] = 0x80;
    pkt[2..4].copy_from_slice(&call.p_seq.to_be_bytes());
    pkt[4..8].copy_from_slice(&(call.p_seq as u32).wrapping_mul(160).to_be_bytes());
    pkt[8..12].copy_from_slice(&call.p_ssrc.to_be_bytes());
    pkt[12..].copy_from_slice(&payload(call.idx, call.p_seq as u32, ns));
    call.p_seq = call.p_seq.wrapping_add(1);
    if call.psock.send_to(&pkt, call.phone_dst).is_ok() && counted {
        stats.sent[1] += 1;
    }
}

fn fmt_cpu(names: &Groups, v: &[f64]) -> String {
    names
        .0
        .iter()
        .zip(v)
        .map(|((n, _), c)| format!("{n}={c:.2}s"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn run_calls(a: CallArgs) -> anyhow::Result<()> {
    let t = &a.target;
    let n = a.calls;
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| anyhow!("str0m cannot make a certificate"))?;
    let fingerprint = RtcConfig::new()
        .set_dtls_cert(cert.clone())
        .build(Instant::now())
        .direct_api()
        .local_dtls_fingerprint()
        .to_string();
    let groups = Groups::of(t);

    // Signalling, one call after another.
    let mut phones = Phones::bind(t.sip, a.phone_sip_port, &t.domain)?;
    let t_reg = Instant::now();
    for i in 0..n as u32 {
        phones.register(&(a.first_phone + i).to_string(), 600)?;
    }
    let reg_s = t_reg.elapsed().as_secs_f64();
    let cpu_setup0 = groups.cpu();
    let t_setup = Instant::now();
    let mut calls = Vec::with_capacity(n);
    let mut setup_failed = 0;
    for i in 0..n as u32 {
        let b = (a.first_browser + i).to_string();
        let p = (a.first_phone + i).to_string();
        match setup_call(t, &mut phones, i, &b, &p, &fingerprint) {
            Ok(c) => calls.push(c),
            Err(e) => {
                setup_failed += 1;
                if setup_failed <= 3 {
                    eprintln!("setup failed: {e:#}");
                }
            }
        }
    }
    let setup_s = t_setup.elapsed().as_secs_f64();
    let cpu_setup: Vec<f64> = groups
        .cpu()
        .iter()
        .zip(&cpu_setup0)
        .map(|(b, a)| b - a)
        .collect();
    eprintln!(
        "{}: {} phones registered in {reg_s:.1}s; {} of {n} calls set up in {setup_s:.1}s (server CPU {})",
        t.label,
        n,
        calls.len(),
        fmt_cpu(&groups, &cpu_setup)
    );
    if let Some(c) = calls.first() {
        eprintln!(
            "answer to the browser: {} setup:{} candidates {:?} ssrc {:?}",
            c.answer.proto,
            if c.answer.remote_active {
                "active"
            } else {
                "passive"
            },
            c.answer.candidates,
            c.answer.ssrc
        );
    }

    // Media.
    let ep = Epoll::new()?;
    for (i, c) in calls.iter().enumerate() {
        ep.add(c.bsock.as_raw_fd(), 2 * i as u64)?;
        ep.add(c.psock.as_raw_fd(), 2 * i as u64 + 1)?;
    }
    let epoch = Instant::now();
    let mut stats = Stats {
        epoch,
        window: (u64::MAX, u64::MAX),
        sent: [0; 2],
        recv: [0; 2],
        hist: [Hist::new(), Hist::new()],
        foreign: 0,
    };
    let mut buf = vec![0u8; 4096];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut next_timer = epoch;

    // Phase 1: every browser starts ICE + DTLS at once.
    let cpu_c0 = groups.cpu();
    let t_c0 = Instant::now();
    for c in calls.iter_mut() {
        if let Err(e) = c.start_media(&cert, t_c0) {
            c.failed = Some(format!("{e:#}"));
        }
        drain(c, &mut stats, t_c0, &mut next_timer);
    }
    let connect_deadline = t_c0 + Duration::from_secs_f64(a.connect_timeout);
    loop {
        let now = Instant::now();
        let connected = calls
            .iter()
            .filter(|c| c.connected_at.is_some() || c.failed.is_some())
            .count();
        if connected == calls.len() || now >= connect_deadline {
            break;
        }
        poll_round(
            &ep,
            &mut events,
            &mut calls,
            &mut buf,
            &mut stats,
            &mut next_timer,
            now + Duration::from_millis(5),
        );
    }
    let connect_s = t_c0.elapsed().as_secs_f64();
    let cpu_connect: Vec<f64> = groups
        .cpu()
        .iter()
        .zip(&cpu_c0)
        .map(|(b, a)| b - a)
        .collect();
    let mut conn_ms: Vec<f64> = calls
        .iter()
        .filter_map(|c| c.connected_at)
        .map(|t| t.duration_since(t_c0).as_secs_f64() * 1000.0)
        .collect();
    conn_ms.sort_by(f64::total_cmp);
    let ok_calls = conn_ms.len();
    let q = |v: &[f64], p: f64| {
        if v.is_empty() {
            f64::NAN
        } else {
            v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
        }
    };
    eprintln!(
        "{}: ICE+DTLS {ok_calls}/{} connected in {connect_s:.2}s (p50 {:.0} ms, p99 {:.0} ms), server CPU {}",
        t.label,
        calls.len(),
        q(&conn_ms, 0.5),
        q(&conn_ms, 0.99),
        fmt_cpu(&groups, &cpu_connect)
    );
    for c in calls.iter().filter(|c| c.failed.is_some()).take(3) {
        eprintln!(
            "call {} failed: {}",
            c.idx,
            c.failed.as_deref().unwrap_or("")
        );
    }

    // Phase 2: 50 pps each way per call, spread over the period.
    let t0 = Instant::now();
    let w0 = t0 + Duration::from_secs_f64(a.warmup);
    let w1 = w0 + Duration::from_secs_f64(a.duration);
    stats.window = (stats.ns(w0), stats.ns(w1));
    let m = calls.len().max(1) as u32;
    let (mut slot, mut k) = (0u64, 0usize);
    let due = |slot: u64, k: usize| t0 + PERIOD * slot as u32 + PERIOD * k as u32 / m;
    let mut max_late = Duration::ZERO;
    let mut late_sends = 0u64;
    let (mut cpu_w0, mut self_w0, mut cpu_w1, mut self_w1) = (vec![], 0.0, vec![], 0.0);
    let mut in_window = false;
    while !calls.is_empty() {
        let now = Instant::now();
        if !in_window && now >= w0 {
            in_window = true;
            cpu_w0 = groups.cpu();
            self_w0 = self_cpu();
        }
        if now >= w1 {
            cpu_w1 = groups.cpu();
            self_w1 = self_cpu();
            break;
        }
        while due(slot, k) <= now {
            let late = now - due(slot, k);
            if late > max_late {
                max_late = late;
            }
            if late > PERIOD {
                late_sends += 1;
            }
            let ts = Instant::now();
            send_both(&mut calls[k], &mut stats, now, &mut next_timer);
            slow(ts, || format!("send call {k}"));
            k += 1;
            if k == calls.len() {
                k = 0;
                slot += 1;
            }
        }
        let until = due(slot, k).min(w1);
        poll_round(
            &ep,
            &mut events,
            &mut calls,
            &mut buf,
            &mut stats,
            &mut next_timer,
            until,
        );
    }
    let wall = (w1 - w0).as_secs_f64();
    // Phase 3: what is still in flight.
    let drain_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < drain_until {
        poll_round(
            &ep,
            &mut events,
            &mut calls,
            &mut buf,
            &mut stats,
            &mut next_timer,
            drain_until,
        );
    }
    let silent = calls
        .iter()
        .filter(|c| c.connected_at.is_some() && (c.rx[0] == 0 || c.rx[1] == 0))
        .count();

    // Teardown: BYE from every browser.
    let t_bye = Instant::now();
    for c in calls.iter_mut() {
        let bye = c.in_dialog("BYE", 3);
        let _ = c.ws.send(&bye);
    }
    while phones.byes < calls.len() && t_bye.elapsed() < Duration::from_secs(10) {
        phones.recv(Duration::from_millis(200));
    }
    let mut bye_ok = 0;
    for c in calls.iter_mut() {
        if c.ws
            .recv_final("BYE", Duration::from_millis(500))
            .is_some_and(|r| r.status() == 200)
        {
            bye_ok += 1;
        }
    }

    // Report.
    let cpu_win: Vec<f64> = if cpu_w1.is_empty() || cpu_w0.is_empty() {
        vec![0.0; groups.0.len()]
    } else {
        cpu_w1.iter().zip(&cpu_w0).map(|(b, a)| b - a).collect()
    };
    let total_cpu: f64 = cpu_win.iter().sum();
    let loss = |d: usize| {
        if stats.sent[d] == 0 {
            100.0
        } else {
            100.0 * (stats.sent[d].saturating_sub(stats.recv[d])) as f64 / stats.sent[d] as f64
        }
    };
    let cores = total_cpu / wall;
    let per_core = if cores > 0.0 {
        ok_calls as f64 / cores
    } else {
        f64::INFINITY
    };
    let hs_cpu: f64 = cpu_connect.iter().sum();
    println!(
        "{}: {n} calls, {ok_calls} with media; window {wall:.1}s; b2p sent {} lost {:.3}% p50 {:.2} p99 {:.2} p99.9 {:.2} ms; \
         p2b sent {} lost {:.3}% p50 {:.2} p99 {:.2} p99.9 {:.2} ms; server CPU {} ({:.1}% of a core) -> {per_core:.0} calls/core; \
         client CPU {:.1}%, schedule max late {:.1} ms ({late_sends} sends > 20 ms); {silent} calls silent one way; BYE ok {bye_ok}/{}",
        t.label,
        stats.sent[0],
        loss(0),
        stats.hist[0].quantile_ms(0.5),
        stats.hist[0].quantile_ms(0.99),
        stats.hist[0].quantile_ms(0.999),
        stats.sent[1],
        loss(1),
        stats.hist[1].quantile_ms(0.5),
        stats.hist[1].quantile_ms(0.99),
        stats.hist[1].quantile_ms(0.999),
        fmt_cpu(&groups, &cpu_win),
        100.0 * cores,
        100.0 * (self_w1 - self_w0) / wall,
        max_late.as_secs_f64() * 1000.0,
        calls.len(),
    );
    let mut r = format!(
        "RESULT label={} calls={n} setup_failed={setup_failed} media_ok={ok_calls} silent={silent} \
         loss_b2p={:.4} loss_p2b={:.4} p50_b2p={:.3} p99_b2p={:.3} p50_p2b={:.3} p99_p2b={:.3} \
         wall={wall:.3} cpu_total={total_cpu:.3} calls_per_core={per_core:.1} client_cpu_pct={:.1} \
         max_late_ms={:.1} connect_s={connect_s:.3} connect_p99_ms={:.1} connect_cpu_total={hs_cpu:.3} \
         setup_s={setup_s:.3} setup_cpu_total={:.3}",
        t.label,
        loss(0),
        loss(1),
        stats.hist[0].quantile_ms(0.5),
        stats.hist[0].quantile_ms(0.99),
        stats.hist[1].quantile_ms(0.5),
        stats.hist[1].quantile_ms(0.99),
        100.0 * (self_w1 - self_w0) / wall,
        max_late.as_secs_f64() * 1000.0,
        q(&conn_ms, 0.99),
        cpu_setup.iter().sum::<f64>(),
    );
    for (((name, _), w), (c, s)) in groups
        .0
        .iter()
        .zip(&cpu_win)
        .zip(cpu_connect.iter().zip(&cpu_setup))
    {
        r.push_str(&format!(
            " cpu_{name}={w:.3} connect_cpu_{name}={c:.3} setup_cpu_{name}={s:.3}"
        ));
    }
    println!("{r}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn poll_round(
    ep: &Epoll,
    events: &mut [libc::epoll_event],
    calls: &mut [Call],
    buf: &mut [u8],
    stats: &mut Stats,
    next_timer: &mut Instant,
    until: Instant,
) {
    let now = Instant::now();
    let wake = until.min(*next_timer);
    let ms = wake
        .checked_duration_since(now)
        .map_or(0, |d| d.as_micros().div_ceil(1000) as i32);
    let got = ep.wait(events, ms.min(50));
    let now = Instant::now();
    for ev in events.iter().take(got) {
        let tok = ev.u64 as usize;
        if let Some(c) = calls.get_mut(tok / 2) {
            let t = Instant::now();
            handle_readable(c, tok % 2 == 1, buf, stats, now, next_timer);
            slow(t, || {
                format!("readable call {} phone={}", tok / 2, tok % 2 == 1)
            });
        }
    }
    let t_scan = Instant::now();
    if now >= *next_timer {
        let mut next = now + Duration::from_secs(1);
        for c in calls.iter_mut() {
            if c.rtc.is_some() && c.deadline <= now && c.failed.is_none() {
                if let Some(rtc) = c.rtc.as_mut() {
                    let _ = rtc.handle_input(Input::Timeout(now));
                }
                let mut nt = next;
                drain(c, stats, now, &mut nt);
            }
            if c.rtc.is_some() && c.failed.is_none() {
                next = next.min(c.deadline);
            }
        }
        *next_timer = next;
    }
    slow(t_scan, || "timer scan".to_string());
}

/// With `WL_TRACE_SLOW=1`: says which step of the loop took more than 10 ms.
fn slow(since: Instant, what: impl FnOnce() -> String) {
    let took = since.elapsed();
    if took > Duration::from_millis(10) && std::env::var_os("WL_TRACE_SLOW").is_some() {
        eprintln!(
            "slow: {} took {:.1} ms",
            what(),
            took.as_secs_f64() * 1000.0
        );
    }
}

// ---------------------------------------------------------------- idle registrations

fn run_idle(a: IdleArgs) -> anyhow::Result<()> {
    let t = &a.target;
    let groups = Groups::of(t);
    let rss0 = groups.mem_kib("VmRSS:", "status");
    let pss0 = groups.mem_kib("Pss:", "smaps_rollup");
    let start = Instant::now();
    let mut flows = Vec::with_capacity(a.count);
    let mut failed = 0;
    for i in 0..a.count as u32 {
        let user = (a.first + i).to_string();
        let r = Ws::connect(t.ws, &t.ws_path).and_then(|mut ws| {
            register_ws(&mut ws, &t.domain, &user, 3600)?;
            Ok(ws)
        });
        match r {
            Ok(ws) => flows.push(ws),
            Err(e) => {
                failed += 1;
                if failed <= 3 {
                    eprintln!("{user}: {e:#}");
                }
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs_f64(a.settle));
    let rss1 = groups.mem_kib("VmRSS:", "status");
    let pss1 = groups.mem_kib("Pss:", "smaps_rollup");
    let k = flows.len().max(1) as f64;
    let mut r = format!(
        "RESULT label={} idle_ws_registrations={} failed={failed} register_s={took:.2}",
        t.label,
        flows.len()
    );
    for (i, (name, _)) in groups.0.iter().enumerate() {
        let drss = rss1[i] as f64 - rss0[i] as f64;
        let dpss = pss1[i] as f64 - pss0[i] as f64;
        println!(
            "{}: {} idle WS registrations ({failed} failed) in {took:.1}s; {name}: VmRSS {} -> {} KiB ({:.0} B each), PSS {} -> {} KiB ({:.0} B each)",
            t.label,
            flows.len(),
            rss0[i],
            rss1[i],
            drss * 1024.0 / k,
            pss0[i],
            pss1[i],
            dpss * 1024.0 / k
        );
        r.push_str(&format!(
            " rss_before_kib_{name}={} rss_after_kib_{name}={} bytes_per_reg_rss_{name}={:.0} bytes_per_reg_pss_{name}={:.0}",
            rss0[i],
            rss1[i],
            drss * 1024.0 / k,
            dpss * 1024.0 / k
        ));
    }
    println!("{r}");
    // Unregister, so later runs start from the same state, and close.
    for (i, ws) in flows.iter_mut().enumerate() {
        let _ = register_ws(ws, &t.domain, &(a.first + i as u32).to_string(), 0);
    }
    Ok(())
}
