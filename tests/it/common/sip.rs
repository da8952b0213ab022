//! A tiny SIP client for tests: build requests as text, send them over UDP or TCP, read and
//! parse responses, answer digest challenges (MD5 and SHA-256, qop=auth).
//!
//! Written independently of the crate's own parser and digest code, so the tests check the
//! switch against a second implementation.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use sha2::Sha256;

static COUNTER: AtomicU64 = AtomicU64::new(1);

/// A unique token for tags, branches, Call-IDs and cnonces.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}{}x{n}x{nanos}", std::process::id())
}

/// A parsed SIP response (or request, for what the switch might send us).
#[derive(Debug, Clone)]
pub struct Msg {
    /// The first line.
    pub start: String,
    /// Status code of a response; 0 for a request.
    pub status: u16,
    /// Headers in order; names lowercased and compact forms expanded.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

impl Msg {
    /// Parses one message (headers up to the blank line, then the body).
    pub fn parse(raw: &[u8]) -> Option<Msg> {
        let head_end = find(raw, b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..head_end]).ok()?;
        let mut lines: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            if (line.starts_with(' ') || line.starts_with('\t')) && !lines.is_empty() {
                let last = lines.last_mut().expect("not empty");
                last.push(' ');
                last.push_str(line.trim());
            } else {
                lines.push(line.to_owned());
            }
        }
        let start = lines.first()?.clone();
        let status = if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
            rest.get(..3)?.parse().ok()?
        } else {
            0
        };
        let mut headers = Vec::new();
        for line in &lines[1..] {
            let (name, value) = line.split_once(':')?;
            headers.push((expand(name.trim()), value.trim().to_owned()));
        }
        Some(Msg {
            start,
            status,
            headers,
            body: raw[head_end + 4..].to_vec(),
            raw: raw.to_vec(),
        })
    }

    /// The first value of header `name` (case-insensitive; compact forms accepted).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = expand(name);
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, comma-separated lines split (outside quotes and `<>`).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let name = expand(name);
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, v)| split_commas(v))
            .collect()
    }

    /// Every header line of `name`, not split at commas.
    pub fn header_lines(&self, name: &str) -> Vec<&str> {
        let name = expand(name);
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header names in order (lowercase, compact forms expanded).
    pub fn header_names(&self) -> Vec<String> {
        self.headers.iter().map(|(n, _)| n.clone()).collect()
    }

    /// The digest challenges in `WWW-Authenticate` headers, in order.
    pub fn challenges(&self) -> Vec<Challenge> {
        self.header_lines("www-authenticate")
            .into_iter()
            .filter_map(Challenge::parse)
            .collect()
    }

    /// The contacts listed in a REGISTER 200 (`Contact` headers), as (URI, params).
    pub fn contacts(&self) -> Vec<ContactValue> {
        self.header_values("contact")
            .iter()
            .filter_map(|v| ContactValue::parse(v))
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// One Contact value: `<uri>;param=value…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactValue {
    pub uri: String,
    pub params: Vec<(String, String)>,
}

impl ContactValue {
    pub fn parse(value: &str) -> Option<ContactValue> {
        let value = value.trim();
        let (uri, rest) = if let Some(open) = value.find('<') {
            let close = value[open..].find('>')? + open;
            (value[open + 1..close].to_owned(), &value[close + 1..])
        } else {
            match value.split_once(';') {
                Some((uri, rest)) => (uri.trim().to_owned(), rest),
                None => (value.to_owned(), ""),
            }
        };
        let params = rest
            .split(';')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim().to_owned()),
                None => (p.to_ascii_lowercase(), String::new()),
            })
            .collect();
        Some(ContactValue { uri, params })
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `expires` parameter as a number.
    pub fn expires(&self) -> Option<u32> {
        self.param("expires").and_then(|v| v.parse().ok())
    }
}

fn expand(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "i" => "call-id".into(),
        "m" => "contact".into(),
        "e" => "content-encoding".into(),
        "l" => "content-length".into(),
        "c" => "content-type".into(),
        "f" => "from".into(),
        "s" => "subject".into(),
        "k" => "supported".into(),
        "t" => "to".into(),
        "v" => "via".into(),
        _ => lower,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits a header value at commas that are outside quotes and angle brackets.
pub fn split_commas(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut escaped) = (false, false, false);
    let mut cur = String::new();
    for c in value.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == '<' {
            angle = true;
        } else if !quoted && c == '>' {
            angle = false;
        } else if !quoted && !angle && c == ',' {
            out.push(cur.trim().to_owned());
            cur.clear();
            continue;
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// A digest challenge from `WWW-Authenticate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    /// As written (`MD5` when absent).
    pub algorithm: String,
    pub qop: Option<String>,
    pub opaque: Option<String>,
    pub stale: bool,
    /// All parameters, names lowercased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn parse(value: &str) -> Option<Challenge> {
        let value = value.trim();
        let rest = value
            .strip_prefix("Digest ")
            .or_else(|| value.strip_prefix("digest "))?;
        let params = parse_params(rest);
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        Some(Challenge {
            realm: get("realm")?,
            nonce: get("nonce")?,
            algorithm: get("algorithm").unwrap_or_else(|| "MD5".into()),
            qop: get("qop"),
            opaque: get("opaque"),
            stale: get("stale").is_some_and(|s| s.eq_ignore_ascii_case("true")),
            params,
        })
    }

    /// The parameter names, sorted (to compare the shape of two challenges).
    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.params.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        names
    }

    pub fn is_sha256(&self) -> bool {
        self.algorithm.eq_ignore_ascii_case("SHA-256")
    }

    /// The `Authorization` header value answering this challenge (qop=auth).
    pub fn authorization(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
    ) -> String {
        let cnonce = unique("cn");
        let hash = |s: String| -> String {
            if self.is_sha256() {
                hex(&Sha256::digest(s.as_bytes()))
            } else {
                hex(&Md5::digest(s.as_bytes()))
            }
        };
        let ha1 = hash(format!("{user}:{}:{password}", self.realm));
        let ha2 = hash(format!("{method}:{uri}"));
        let nc = format!("{nc:08x}");
        let response = hash(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce));
        let mut out = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm={}, cnonce=\"{cnonce}\", qop=auth, nc={nc}",
            self.realm, self.nonce, self.algorithm
        );
        if let Some(opaque) = &self.opaque {
            out.push_str(&format!(", opaque=\"{opaque}\""));
        }
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `name=value` / `name="quoted"` pairs separated by commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    split_commas(s)
        .into_iter()
        .filter_map(|p| {
            let (k, v) = p.split_once('=')?;
            let v = v.trim();
            let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                v[1..v.len() - 1]
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\")
            } else {
                v.to_owned()
            };
            Some((k.trim().to_ascii_lowercase(), v))
        })
        .collect()
}

/// `OPTIONS sip:HOST:PORT` from `local`.
pub fn options(transport: &str, local: SocketAddr, server: SocketAddr) -> String {
    format!(
        "OPTIONS sip:{server} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:probe@{local}>;tag={}\r\n\
         To: <sip:{server}>\r\n\
         Call-ID: {}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        unique("b"),
        unique("t"),
        unique("opt")
    )
}

/// A UDP socket on 127.0.0.1 talking to one server.
pub struct UdpClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub local: SocketAddr,
}

impl UdpClient {
    pub fn connect(server: SocketAddr) -> std::io::Result<UdpClient> {
        let sock = if server.is_ipv6() {
            UdpSocket::bind("[::1]:0")?
        } else {
            UdpSocket::bind("127.0.0.1:0")?
        };
        let local = sock.local_addr()?;
        Ok(UdpClient {
            sock,
            server,
            local,
        })
    }

    pub fn transport_name(&self) -> String {
        "UDP".into()
    }

    pub fn send(&self, data: &str) {
        self.send_bytes(data.as_bytes());
    }

    pub fn send_bytes(&self, data: &[u8]) {
        self.sock
            .send_to(data, self.server)
            .expect("send UDP datagram");
    }

    /// The next datagram from the server parsed as a message, within `wait`.
    pub fn recv(&self, wait: Duration) -> Option<Msg> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if from == self.server => {
                    if let Some(msg) = Msg::parse(&buf[..n]) {
                        return Some(msg);
                    }
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next final (≥ 200) response within `wait`.
    pub fn recv_final(&self, wait: Duration) -> Option<Msg> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let msg = self.recv(left)?;
            if msg.status >= 200 {
                return Some(msg);
            }
        }
    }

    /// Sends a request and waits for its final response, retransmitting every 500 ms (UDP) for
    /// up to 4 s.
    pub fn request(&self, request: &str) -> Option<Msg> {
        for _ in 0..8 {
            self.send(request);
            if let Some(msg) = self.recv_final(Duration::from_millis(500)) {
                return Some(msg);
            }
        }
        None
    }
}

/// A TCP connection to the server with Content-Length framing.
pub struct TcpClient {
    pub stream: std::cell::RefCell<TcpStream>,
    buf: std::cell::RefCell<Vec<u8>>,
    pub server: SocketAddr,
    pub local: SocketAddr,
}

impl TcpClient {
    pub fn connect(server: SocketAddr) -> std::io::Result<TcpClient> {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
        let local = stream.local_addr()?;
        Ok(TcpClient {
            stream: std::cell::RefCell::new(stream),
            buf: std::cell::RefCell::new(Vec::new()),
            server,
            local,
        })
    }

    /// Connects from `source` (any port), e.g. 127.0.0.2 to be another source than the rest.
    pub fn connect_from(
        source: std::net::IpAddr,
        server: SocketAddr,
    ) -> std::io::Result<TcpClient> {
        let sock = socket2::Socket::new(
            socket2::Domain::for_address(server),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.bind(&SocketAddr::new(source, 0).into())?;
        sock.connect_timeout(&server.into(), Duration::from_secs(2))?;
        let stream: TcpStream = sock.into();
        let local = stream.local_addr()?;
        Ok(TcpClient {
            stream: std::cell::RefCell::new(stream),
            buf: std::cell::RefCell::new(Vec::new()),
            server,
            local,
        })
    }

    /// Writes all of `data`; false when the connection is gone.
    pub fn send(&self, data: &[u8]) -> bool {
        self.stream.borrow_mut().write_all(data).is_ok()
    }

    /// Closes the connection with a reset (SO_LINGER 0) instead of a FIN.
    pub fn reset(self) {
        let stream = self.stream.into_inner();
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        drop(stream);
    }

    /// The next framed message within `wait` (None on timeout or closed connection).
    pub fn recv(&self, wait: Duration) -> Option<Msg> {
        stream_recv(&self.stream, &self.buf, wait)
    }

    /// The next final response within `wait`.
    pub fn recv_final(&self, wait: Duration) -> Option<Msg> {
        recv_final_with(wait, |left| self.recv(left))
    }

    /// Reads until the server closes the connection (true) or `wait` passes (false).
    pub fn closed_within(&self, wait: Duration) -> bool {
        stream_closed_within(&self.stream, &self.buf, wait)
    }
}

/// A blocking byte stream whose reads can time out: TCP, or TLS over TCP.
pub trait TimedRead: Read {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;
}

impl TimedRead for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
}

/// The next framed message of a stream client within `wait` (None on timeout or close).
pub fn stream_recv<S: TimedRead>(
    stream: &std::cell::RefCell<S>,
    buf: &std::cell::RefCell<Vec<u8>>,
    wait: Duration,
) -> Option<Msg> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(msg) = take_frame(&mut buf.borrow_mut()) {
            return Some(msg);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        let mut stream = stream.borrow_mut();
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .ok()?;
        let mut chunk = [0u8; 16384];
        match stream.read(&mut chunk) {
            Ok(0) => return take_frame(&mut buf.borrow_mut()),
            Ok(n) => buf.borrow_mut().extend_from_slice(&chunk[..n]),
            Err(_) => return None,
        }
    }
}

/// The next final response within `wait`, from `recv` (provisional ones skipped).
pub fn recv_final_with(wait: Duration, recv: impl Fn(Duration) -> Option<Msg>) -> Option<Msg> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let msg = recv(left)?;
        if msg.status >= 200 {
            return Some(msg);
        }
    }
}

/// Reads a stream client until the server closes the connection (true) or `wait` passes.
pub fn stream_closed_within<S: TimedRead>(
    stream: &std::cell::RefCell<S>,
    buf: &std::cell::RefCell<Vec<u8>>,
    wait: Duration,
) -> bool {
    let deadline = Instant::now() + wait;
    let mut stream = stream.borrow_mut();
    let mut chunk = [0u8; 16384];
    loop {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return false;
        };
        if stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .is_err()
        {
            return true;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(n) => buf.borrow_mut().extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// The first framed message in a stream buffer (removed from it), skipping CRLF keep-alive
/// answers; None while incomplete.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Msg> {
    while buf.starts_with(b"\r\n") {
        buf.drain(..2);
    }
    let head_end = find(buf, b"\r\n\r\n")?;
    let head = Msg::parse(&buf[..head_end + 4])?;
    let len: usize = head
        .header("content-length")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let total = head_end + 4 + len;
    if buf.len() < total {
        return None;
    }
    let frame: Vec<u8> = buf.drain(..total).collect();
    Msg::parse(&frame)
}

/// Sends SIP text and waits for responses, over either transport.
pub enum Conn {
    Udp(UdpClient),
    Tcp(TcpClient),
    Tls(Box<super::tls::TlsClient>),
    Ws(Box<super::ws::WsClient>),
}

impl Conn {
    /// The host:port of our Via (a WebSocket client's is an `.invalid` name, as JsSIP's).
    pub fn via_host(&self) -> String {
        match self {
            Conn::Ws(c) => c.host.clone(),
            other => other.local().to_string(),
        }
    }

    pub fn udp(server: SocketAddr) -> Conn {
        Conn::Udp(UdpClient::connect(server).expect("UDP socket"))
    }

    pub fn tcp(server: SocketAddr) -> Conn {
        Conn::Tcp(TcpClient::connect(server).expect("TCP connect to the switch"))
    }

    pub fn local(&self) -> SocketAddr {
        match self {
            Conn::Udp(c) => c.local,
            Conn::Tcp(c) => c.local,
            Conn::Tls(c) => c.local,
            Conn::Ws(c) => c.local,
        }
    }

    pub fn server(&self) -> SocketAddr {
        match self {
            Conn::Udp(c) => c.server,
            Conn::Tcp(c) => c.server,
            Conn::Tls(c) => c.server,
            Conn::Ws(c) => c.server,
        }
    }

    pub fn transport(&self) -> &'static str {
        match self {
            Conn::Udp(_) => "UDP",
            Conn::Tcp(_) => "TCP",
            Conn::Tls(_) => "TLS",
            Conn::Ws(c) => c.transport(),
        }
    }

    /// Sends `request` and returns its final response (UDP: with retransmissions).
    pub fn request(&self, request: &str) -> Option<Msg> {
        match self {
            Conn::Udp(c) => c.request(request),
            Conn::Tcp(c) => {
                if !c.send(request.as_bytes()) {
                    return None;
                }
                c.recv_final(Duration::from_secs(4))
            }
            Conn::Tls(c) => {
                if !c.send(request.as_bytes()) {
                    return None;
                }
                c.recv_final(Duration::from_secs(4))
            }
            Conn::Ws(c) => {
                if !c.send(request) {
                    return None;
                }
                c.recv_final(Duration::from_secs(4))
            }
        }
    }
}

/// A user agent registering one extension; keeps Call-ID, From tag and CSeq across requests as
/// RFC 3261 §10.2 asks.
pub struct Ua {
    pub conn: Conn,
    pub user: String,
    pub password: String,
    /// Host part of the AOR (From/To) and of the Request-URI.
    pub domain: String,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
    pub user_agent: String,
    /// Prefer a SHA-256 challenge when the switch offers one.
    pub prefer_sha256: bool,
    /// The last challenge and the nonce count used with it.
    pub last_challenge: Option<Challenge>,
    pub nc: u32,
}

/// What to put in a REGISTER.
#[derive(Default, Clone)]
pub struct RegisterSpec {
    /// Contact values, each rendered as its own `Contact:` line (e.g. `<sip:1000@h:p>;expires=60`
    /// or `*`). Empty = a query.
    pub contacts: Vec<String>,
    /// The `Expires:` header.
    pub expires: Option<u32>,
    /// Extra header lines (without CRLF).
    pub extra: Vec<String>,
}

impl RegisterSpec {
    /// One contact at `contact_uri` with `Expires: expires`.
    pub fn one(contact_uri: &str, expires: u32) -> RegisterSpec {
        RegisterSpec {
            contacts: vec![format!("<{contact_uri}>")],
            expires: Some(expires),
            extra: Vec::new(),
        }
    }
}

impl Ua {
    pub fn new(conn: Conn, user: &str, password: &str) -> Ua {
        let domain = match conn.server() {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        Ua {
            conn,
            user: user.into(),
            password: password.into(),
            domain,
            call_id: unique("reg"),
            from_tag: unique("ft"),
            cseq: 0,
            user_agent: "tambun-itest".into(),
            prefer_sha256: false,
            last_challenge: None,
            nc: 0,
        }
    }

    /// The Request-URI (and digest `uri`) of REGISTER: `sip:HOST:PORT` of the switch.
    pub fn request_uri(&self) -> String {
        format!("sip:{}", self.conn.server())
    }

    /// A contact URI at this UA's own address (`tag` distinguishes several contacts).
    pub fn contact_uri(&self, tag: &str) -> String {
        let transport = match self.conn.transport() {
            "TCP" => ";transport=tcp",
            "TLS" => ";transport=tls",
            "WS" | "WSS" => ";transport=ws",
            _ => "",
        };
        format!("sip:{}{tag}@{}{transport}", self.user, self.conn.via_host())
    }

    /// Renders a REGISTER with the next CSeq.
    pub fn render(&mut self, spec: &RegisterSpec, authorization: Option<&str>) -> String {
        self.cseq += 1;
        let local = self.conn.via_host();
        let mut out = format!(
            "REGISTER {} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch=z9hG4bK{};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{}@{}>;tag={}\r\n\
             To: <sip:{}@{}>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n",
            self.request_uri(),
            self.conn.transport(),
            unique("b"),
            self.user,
            self.domain,
            self.from_tag,
            self.user,
            self.domain,
            self.call_id,
            self.cseq
        );
        for contact in &spec.contacts {
            out.push_str(&format!("Contact: {contact}\r\n"));
        }
        if let Some(expires) = spec.expires {
            out.push_str(&format!("Expires: {expires}\r\n"));
        }
        if let Some(auth) = authorization {
            out.push_str(&format!("Authorization: {auth}\r\n"));
        }
        for line in &spec.extra {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str(&format!(
            "User-Agent: {}\r\nContent-Length: 0\r\n\r\n",
            self.user_agent
        ));
        out
    }

    /// Sends one REGISTER without credentials; returns the final response.
    pub fn register_plain(&mut self, spec: &RegisterSpec) -> Msg {
        let request = self.render(spec, None);
        let response = self
            .conn
            .request(&request)
            .expect("no response to REGISTER");
        if response.status == 401 {
            self.last_challenge = self.pick(&response);
            self.nc = 0;
        }
        response
    }

    /// Picks the challenge to answer (MD5 unless `prefer_sha256`).
    fn pick(&self, response: &Msg) -> Option<Challenge> {
        let challenges = response.challenges();
        let wanted = challenges
            .iter()
            .find(|c| c.is_sha256() == self.prefer_sha256);
        wanted.or(challenges.first()).cloned()
    }

    /// Sends a REGISTER answering the last challenge with the next nonce count.
    pub fn register_with_last_challenge(&mut self, spec: &RegisterSpec) -> Msg {
        let challenge = self.last_challenge.clone().expect("a challenge to answer");
        self.nc += 1;
        let auth = challenge.authorization(
            &self.user,
            &self.password,
            "REGISTER",
            &self.request_uri(),
            self.nc,
        );
        self.register_with_authorization(spec, &auth)
    }

    /// Sends a REGISTER with the given `Authorization` value.
    pub fn register_with_authorization(&mut self, spec: &RegisterSpec, auth: &str) -> Msg {
        let request = self.render(spec, Some(auth));
        let response = self
            .conn
            .request(&request)
            .expect("no response to REGISTER");
        if response.status == 401 {
            self.last_challenge = self.pick(&response);
            self.nc = 0;
        }
        response
    }

    /// The full exchange: REGISTER, 401, REGISTER with credentials; returns the last response.
    /// With a challenge already at hand it is reused first (nc+1), as real UAs do.
    pub fn register(&mut self, spec: &RegisterSpec) -> Msg {
        if self.last_challenge.is_some() {
            let response = self.register_with_last_challenge(spec);
            if response.status != 401 {
                return response;
            }
            return self.register_with_last_challenge(spec);
        }
        let first = self.register_plain(spec);
        if first.status != 401 {
            return first;
        }
        self.register_with_last_challenge(spec)
    }

    /// Registers one contact at the UA's own address for `expires` seconds.
    pub fn register_self(&mut self, expires: u32) -> Msg {
        let spec = RegisterSpec::one(&self.contact_uri(""), expires);
        self.register(&spec)
    }
}
