//! A blocking SIP-over-WebSocket client for the tests (RFC 7118), plain (`ws://`) or over
//! TLS (`wss://`, any certificate accepted like [`super::tls`]), on tungstenite. It behaves
//! like a browser's SIP library: its Via and Contact hosts are `.invalid` names, so the
//! switch can reach it only over this connection.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::sip::{recv_final_with, unique, Msg};

/// The byte stream under the WebSocket.
pub enum Io {
    Plain(TcpStream),
    Tls(Box<super::tls::Stream>),
}

impl Io {
    fn tcp(&self) -> &TcpStream {
        match self {
            Io::Plain(s) => s,
            Io::Tls(s) => &s.sock,
        }
    }
}

impl Read for Io {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.read(buf),
            Io::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Io {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Io::Plain(s) => s.write(buf),
            Io::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Io::Plain(s) => s.flush(),
            Io::Tls(s) => s.flush(),
        }
    }
}

/// How the upgrade was refused, or why the connection failed.
#[derive(Debug)]
pub enum WsError {
    /// The server answered the upgrade with this HTTP status.
    Refused(u16),
    #[allow(dead_code)] // (shown by Debug in failure messages)
    Other(String),
}

pub struct WsClient {
    ws: RefCell<WebSocket<Io>>,
    pub server: SocketAddr,
    pub local: SocketAddr,
    pub secure: bool,
    /// The `.invalid` host of this client's Via and Contact.
    pub host: String,
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
}

impl WsClient {
    /// Connects to `ws(s)://server/path` asking for subprotocol `sip`.
    pub fn connect(server: SocketAddr, secure: bool) -> WsClient {
        WsClient::connect_with(server, secure, "/ws", Some("sip"), None)
            .unwrap_or_else(|e| panic!("websocket to {server}: {e:?}"))
    }

    /// Connects with the given path, subprotocol (None: none asked) and `Origin`.
    pub fn connect_with(
        server: SocketAddr,
        secure: bool,
        path: &str,
        protocol: Option<&str>,
        origin: Option<&str>,
    ) -> Result<WsClient, WsError> {
        let io = if secure {
            let (stream, _) =
                super::tls::connect_stream(server).map_err(|e| WsError::Other(e.to_string()))?;
            Io::Tls(Box::new(stream))
        } else {
            let tcp = TcpStream::connect_timeout(&server, Duration::from_secs(2))
                .map_err(|e| WsError::Other(e.to_string()))?;
            Io::Plain(tcp)
        };
        io.tcp()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| WsError::Other(e.to_string()))?;
        let local = io
            .tcp()
            .local_addr()
            .map_err(|e| WsError::Other(e.to_string()))?;
        let scheme = if secure { "wss" } else { "ws" };
        let mut request = format!("{scheme}://{server}{path}")
            .into_client_request()
            .map_err(|e| WsError::Other(e.to_string()))?;
        if let Some(p) = protocol {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
        }
        if let Some(o) = origin {
            request.headers_mut().insert("Origin", o.parse().unwrap());
        }
        let config = WebSocketConfig::default();
        let (ws, response) =
            match tungstenite::client::client_with_config(request, io, Some(config)) {
                Ok(ok) => ok,
                Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
                    return Err(WsError::Refused(r.status().as_u16()))
                }
                Err(e) => return Err(WsError::Other(e.to_string())),
            };
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(WsClient {
            ws: RefCell::new(ws),
            server,
            local,
            secure,
            host: format!("{}.invalid", unique("ws")),
            protocol,
        })
    }

    pub fn transport(&self) -> &'static str {
        if self.secure {
            "WSS"
        } else {
            "WS"
        }
    }

    /// Sends one SIP message as one text frame; false when the connection is gone.
    pub fn send(&self, text: &str) -> bool {
        self.send_message(Message::text(text))
    }

    pub fn send_message(&self, msg: Message) -> bool {
        self.ws.borrow_mut().send(msg).is_ok()
    }

    /// The next SIP message within `wait` (None on timeout or a closed connection).
    pub fn recv(&self, wait: Duration) -> Option<Msg> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let parsed = match self.recv_frame(left)? {
                Message::Text(t) => Msg::parse(t.as_bytes()),
                Message::Binary(b) => Msg::parse(&b),
                _ => None,
            };
            if parsed.is_some() {
                return parsed;
            }
        }
    }

    /// The next final response within `wait`.
    pub fn recv_final(&self, wait: Duration) -> Option<Msg> {
        recv_final_with(wait, |left| self.recv(left))
    }

    /// The raw next frame within `wait` (pings are answered by tungstenite and skipped).
    pub fn recv_frame(&self, wait: Duration) -> Option<Message> {
        let deadline = Instant::now() + wait;
        let mut ws = self.ws.borrow_mut();
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            ws.get_ref()
                .tcp()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            match ws.read() {
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(m) => return Some(m),
                Err(_) => return None,
            }
        }
    }

    /// True when the server closes the connection (a Close frame or the end of the stream)
    /// within `wait`; SIP messages meanwhile are skipped.
    pub fn closed_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut ws = self.ws.borrow_mut();
        loop {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            if ws
                .get_ref()
                .tcp()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .is_err()
            {
                return true;
            }
            match ws.read() {
                Ok(Message::Close(_)) => {
                    // Answer it and read to the end of the stream.
                    continue;
                }
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
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
    }

    /// Writes raw bytes under the WebSocket layer (for broken frames).
    pub fn write_raw(&self, bytes: &[u8]) -> bool {
        let mut ws = self.ws.borrow_mut();
        let io = ws.get_mut();
        io.write_all(bytes).is_ok() && io.flush().is_ok()
    }
}
