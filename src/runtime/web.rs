//! The web listener and the plain WebSocket listener.
//!
//! - **Web** (`[web]`, `--web-listen`, default the first listen IP on port 8443): HTTPS with
//!   the certificate of `[tls]` (ALPN `http/1.1`). It serves the softphone page (`/phone`, its
//!   script and style, built from `web/` at compile time and kept in the binary), the page's
//!   API (`/phone/api/config`; `/phone/api/directory` behind HTTP Basic, checked by the switch
//!   against the stored HA1), the operator console (`/console`, `runtime::console`) and SIP
//!   over secure WebSocket at `/ws` (RFC 7118).
//! - **WS** (`[websocket] listen`, `--ws-listen`): the same over plain HTTP, for loopback and
//!   for a TLS-terminating proxy in front of the switch.
//!
//! Each accepted connection takes a [`ConnGate`](super::conns::ConnGate) slot first (the same
//! per-source and total limits as TCP and TLS) and keeps it while it lives, upgraded or not.
//! A WebSocket flow is one SIP connection to the driver (`ConnOpened`, `Stream`,
//! `ConnClosed`): one SIP message per text or binary frame (subprotocol `sip` required), a
//! frame of only CR/LF answered with CRLF (RFC 5626 keep-alive), a Ping sent every
//! [`PING_EVERY`] so a quiet browser's pongs keep it open, and it is closed, with one log
//! line, on a frame that is not SIP, a message over the size limit (fragments count), no
//! complete message within `first_message`, or silence for `idle`. Requests toward a browser
//! go over its own flow (its Via and Contact hosts are `.invalid`).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::conns::Permit;
use super::tcp::{next_conn_id, StreamCtx};
use super::Input;
use crate::types::Transport;

/// How often a flow is pinged; a browser answers with a pong, which counts as traffic.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(30);

/// Messages queued for one flow's writer before it counts as stuck.
const WRITER_QUEUE: usize = 256;

/// What every web or WS connection needs.
pub(crate) struct WebCtx {
    /// The relay (once started), for who talks in the page's rooms view.
    pub relay: Arc<std::sync::OnceLock<Arc<super::relay::RelayGlue>>>,
    pub stream: StreamCtx,
    /// `Wss` for the web listener, `Ws` for the plain one.
    pub transport: Transport,
    /// The web listener's TLS; `None` on the plain WS listener.
    pub tls: Option<TlsAcceptor>,
    pub handshake: Duration,
    /// The SIP domain the page registers in (`None`: the host the page was loaded from).
    pub domain: Option<String>,
    /// The operator console (`/console`), on the HTTPS web listener only.
    pub console: Option<Arc<super::console::Console>>,
}

/// The peer and the connection slot of one HTTP connection, for its handlers.
#[derive(Clone)]
pub(crate) struct ConnInfo {
    pub(crate) src: SocketAddr,
    local: SocketAddr,
    /// Taken by the WebSocket flow when the connection upgrades, so the slot lives as long as
    /// the flow; otherwise dropped with the connection.
    slot: Arc<Mutex<Option<Permit>>>,
}

pub(crate) async fn accept_loop(listener: TcpListener, ctx: Arc<WebCtx>) {
    let app = router(ctx.clone());
    loop {
        let accepted = tokio::select! {
            _ = ctx.stream.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let (stream, src) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, transport = %ctx.transport, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match ctx.stream.gate.admit(src.ip(), ctx.transport) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(%src, transport = %ctx.transport, "connection refused: {why}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let info = ConnInfo {
            src,
            local,
            slot: Arc::new(Mutex::new(Some(permit))),
        };
        tokio::spawn(connection(stream, info, ctx.clone(), app.clone()));
    }
}

/// One accepted connection: the TLS handshake (web listener), then HTTP/1.1 with upgrades.
async fn connection(stream: TcpStream, info: ConnInfo, ctx: Arc<WebCtx>, app: Router) {
    match &ctx.tls {
        None => serve_http(stream, info, &ctx, app).await,
        Some(acceptor) => {
            let shake = tokio::select! {
                _ = ctx.stream.shutdown.cancelled() => return,
                r = tokio::time::timeout(ctx.handshake, acceptor.accept(stream)) => r,
            };
            match shake {
                Ok(Ok(tls)) => serve_http(tls, info, &ctx, app).await,
                Ok(Err(e)) => {
                    handshake_failed(&ctx);
                    tracing::debug!(src = %info.src, error = %e, "web: tls handshake failed");
                }
                Err(_) => {
                    handshake_failed(&ctx);
                    tracing::debug!(src = %info.src, "web: tls handshake timed out");
                }
            }
        }
    }
}

fn handshake_failed(ctx: &WebCtx) {
    ctx.stream
        .gate
        .stats
        .handshake_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

async fn serve_http<S>(io: S, info: ConnInfo, ctx: &WebCtx, app: Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.stream.first_message)
        .max_buf_size(64 * 1024);
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = ctx.stream.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(2), conn).await;
        }
    }
}

fn router(ctx: Arc<WebCtx>) -> Router {
    let console = ctx.console.clone();
    let app = Router::new()
        .route("/", get(root))
        .route("/ws", get(ws_only))
        .route(
            "/phone",
            get(|| async { asset(assets::HTML, "text/html; charset=utf-8") }),
        )
        .route("/phone/", get(|| async { Redirect::permanent("/phone") }))
        .route(
            "/phone/phone.js",
            get(|| async { asset(assets::JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/phone/phone.css",
            get(|| async { asset(assets::CSS, "text/css; charset=utf-8") }),
        )
        .route("/phone/api/config", get(page_config))
        .route("/phone/api/directory", get(directory))
        .route("/phone/api/rooms", get(phone_rooms))
        .route(
            "/phone/api/rooms/{room}",
            axum::routing::post(phone_room_action),
        )
        .with_state(ctx);
    match console {
        Some(console) => app.merge(super::console::router(console)),
        None => app,
    }
}

/// The page's files, built from `web/` by `build.rs` (npm lockfile, esbuild) and kept in the
/// binary: nothing is fetched from anywhere at run time.
mod assets {
    pub const HTML: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/phone.html"));
    pub const JS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/phone.js"));
    pub const CSS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/web/phone.css"));
}

fn asset(body: &'static [u8], content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: \
                 mediastream:; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

type Upgrade = Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// `/`: a WebSocket upgrade is a SIP flow (JsSIP and desk-phone apps often use the bare
/// origin); a plain GET goes to the page.
async fn root(
    State(ctx): State<Arc<WebCtx>>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    match ws {
        Ok(ws) => upgrade(ctx, info, &headers, ws),
        Err(_) => Redirect::to("/phone").into_response(),
    }
}

/// `/ws`: SIP flows only.
async fn ws_only(
    State(ctx): State<Arc<WebCtx>>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
    ws: Upgrade,
) -> Response {
    ws.map_or_else(IntoResponse::into_response, |ws| {
        upgrade(ctx, info, &headers, ws)
    })
}

/// Accepts the upgrade only for subprotocol `sip` (RFC 7118 §4.1) and, when the browser says
/// which page opened it (`Origin`), only from a page of this same host: another site's page
/// must not borrow a user's browser to talk SIP to the switch.
fn upgrade(
    ctx: Arc<WebCtx>,
    info: ConnInfo,
    headers: &HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let wants_sip = ws.requested_protocols().any(|p| {
        p.to_str()
            .is_ok_and(|p| p.trim().eq_ignore_ascii_case("sip"))
    });
    if !wants_sip {
        tracing::info!(src = %info.src, "websocket refused: no subprotocol 'sip' (RFC 7118)");
        return (
            StatusCode::BAD_REQUEST,
            "SIP over WebSocket needs the subprotocol 'sip' (RFC 7118)\n",
        )
            .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !same_host(origin, headers.get(header::HOST)) {
            tracing::info!(src = %info.src, origin = ?origin, "websocket refused: the page is from another site");
            return (StatusCode::FORBIDDEN, "this page may not use the switch\n").into_response();
        }
    }
    let max = ctx.stream.limits.max_message;
    ws.protocols(["sip"])
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .on_upgrade(move |socket| sip_flow(socket, info, ctx))
}

/// Is `Origin` (`https://host:port`) the same host and port as the request's `Host`?
pub(crate) fn same_host(origin: &HeaderValue, host: Option<&HeaderValue>) -> bool {
    let (Ok(origin), Some(Ok(host))) = (origin.to_str(), host.map(|h| h.to_str())) else {
        return false;
    };
    let origin = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .unwrap_or("");
    let default = |s: &str, port: &str| -> String {
        if s.starts_with('[') && s.contains("]:") || !s.starts_with('[') && s.contains(':') {
            s.to_ascii_lowercase()
        } else {
            format!("{}:{port}", s.to_ascii_lowercase())
        }
    };
    // Both sides without a port mean the scheme's default; compare them with the same one.
    default(origin, "0") == default(host, "0")
}

/// Does this frame start like a SIP message (a request line or a status line)?
fn looks_like_sip(data: &[u8]) -> bool {
    let line = data.split(|b| *b == b'\n').next().unwrap_or(&[]);
    if line.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|b| *b == b' ');
    let method = parts.next().unwrap_or(&[]);
    !method.is_empty()
        && method
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(b))
        && parts.next().is_some_and(|uri| !uri.is_empty())
        && parts.next() == Some(&b"SIP/2.0"[..])
}

/// One SIP flow over a WebSocket, until either side closes it, the rules of the module doc
/// close it, or the switch stops.
async fn sip_flow(socket: WebSocket, info: ConnInfo, ctx: Arc<WebCtx>) {
    let _permit = info.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let StreamCtx {
        tx,
        shutdown,
        gate,
        first_message,
        idle,
        ..
    } = ctx.stream.clone();
    let (src, transport) = (info.src, ctx.transport);
    let conn = next_conn_id();
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(WRITER_QUEUE);
    let close = CancellationToken::new();
    let opened = Input::ConnOpened {
        conn,
        local: info.local,
        remote: src,
        transport,
        writer: wtx.clone(),
        close: close.clone(),
    };
    if tx.send(opened).await.is_err() {
        return;
    }
    tracing::debug!(%src, conn, %transport, "websocket flow opened");
    let (mut sink, mut stream) = socket.split();
    // The writer: SIP messages from the driver, pings, and at the end the close frame.
    let (reason_tx, reason_rx) = oneshot::channel::<Option<CloseFrame>>();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            let msg = tokio::select! {
                m = wrx.recv() => match m {
                    Some(b) if std::str::from_utf8(&b).is_ok() => {
                        WsMessage::Text(Utf8Bytes::try_from(b).unwrap_or_default())
                    }
                    Some(b) => WsMessage::Binary(b),
                    None => break,
                },
                _ = ping.tick() => WsMessage::Ping(Bytes::new()),
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
        if let Ok(Some(frame)) = reason_rx.await {
            let _ = sink.send(WsMessage::Close(Some(frame))).await;
        }
        let _ = sink.close().await;
    });

    let started = tokio::time::Instant::now();
    let mut last_rx = started;
    let mut got_message = false;
    let mut reason: Option<CloseFrame> = None;
    loop {
        let deadline = if got_message {
            last_rx + idle
        } else {
            (started + first_message).min(last_rx + idle)
        };
        let frame = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = close.cancelled() => {
                tracing::info!(%src, conn, %transport, "closing the websocket of a banned source");
                break;
            }
            _ = tokio::time::sleep_until(deadline) => {
                gate.stats.closed_idle.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(%src, conn, %transport, got_message, "closing idle websocket");
                break;
            }
            f = stream.next() => f,
        };
        let data = match frame {
            None | Some(Ok(WsMessage::Close(_))) => break,
            Some(Err(e)) => {
                tracing::info!(%src, conn, %transport, error = %e, "closing websocket: bad frame");
                break;
            }
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {
                last_rx = tokio::time::Instant::now();
                continue;
            }
            Some(Ok(m @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => m.into_data(),
        };
        last_rx = tokio::time::Instant::now();
        if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            // A keep-alive; pongs may use only half the queue (see `tcp`).
            if !data.is_empty() && wtx.capacity() > WRITER_QUEUE / 2 {
                let _ = wtx.try_send(Bytes::from_static(b"\r\n"));
            }
            continue;
        }
        if !looks_like_sip(&data) {
            tracing::info!(%src, conn, %transport, bytes = data.len(), "closing websocket: a frame that is not SIP");
            reason = Some(CloseFrame {
                code: 1003,
                reason: Utf8Bytes::from_static("not SIP"),
            });
            break;
        }
        got_message = true;
        let input = Input::Stream {
            conn,
            transport,
            src,
            data,
        };
        if tx.send(input).await.is_err() {
            break;
        }
    }
    drop(wtx);
    let _ = reason_tx.send(reason);
    let _ = tx.send(Input::ConnClosed { conn }).await;
    let abort = writer.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
    tracing::debug!(%src, conn, %transport, "websocket flow closed");
}

#[derive(serde::Serialize)]
struct PageConfig {
    /// The SIP domain of the extensions' addresses (`sip:EXT@domain`).
    domain: String,
    /// Where the page's WebSocket goes, relative to the page's origin.
    ws_path: &'static str,
}

/// `/phone/api/config`: what the page needs before it logs in.
async fn page_config(State(ctx): State<Arc<WebCtx>>, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_of)
        .unwrap_or_default();
    let domain = ctx.domain.clone().unwrap_or(host);
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(PageConfig {
            domain,
            ws_path: "/ws",
        }),
    )
        .into_response()
}

/// The host of a `Host` header value without its port; an IPv6 host keeps its brackets
/// (`[::1]:8443` → `[::1]`), the form a SIP URI needs.
fn host_of(host: &str) -> String {
    if let Some(end) = host.find(']') {
        return host[..=end].to_string();
    }
    host.split(':').next().unwrap_or("").to_string()
}

/// `/phone/api/directory`: the OPDs and extensions, for an extension that gives its
/// password (HTTP Basic; the connection is HTTPS on the web listener). The switch checks it
/// against the stored HA1 and counts failures in the guard like failed digests.
async fn directory(
    State(ctx): State<Arc<WebCtx>>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    let asked = ask_with_basic(&ctx, &headers, |user, password, reply| Input::Directory {
        user,
        password,
        source: info.src.ip(),
        reply,
    });
    match asked.await {
        Ok(dir) => ([(header::CACHE_CONTROL, "no-store")], axum::Json(dir)).into_response(),
        Err(r) => r,
    }
}

/// Asks the core (`make` builds the input from the request's Basic credentials) and waits:
/// `Err` is the HTTP answer for no or wrong credentials (401) or a stopping switch (503).
async fn ask_with_basic<T>(
    ctx: &WebCtx,
    headers: &HeaderMap,
    make: impl FnOnce(String, String, oneshot::Sender<Option<T>>) -> Input,
) -> Result<T, Response> {
    let stopping = || (StatusCode::SERVICE_UNAVAILABLE, "the switch is stopping\n").into_response();
    let Some((user, password)) = basic_credentials(headers) else {
        return Err(basic_unauthorized());
    };
    let (reply, rx) = oneshot::channel();
    if ctx
        .stream
        .tx
        .send(make(user, password, reply))
        .await
        .is_err()
    {
        return Err(stopping());
    }
    match rx.await {
        Ok(Some(v)) => Ok(v),
        Ok(None) => Err(basic_unauthorized()),
        Err(_) => Err(stopping()),
    }
}

/// `/phone/api/rooms`: the conference rooms the extension's OPD may join, who is in each
/// (talking, muted, from the relay) and whether the extension moderates it. HTTP Basic, as
/// the directory.
async fn phone_rooms(
    State(ctx): State<Arc<WebCtx>>,
    Extension(info): Extension<ConnInfo>,
    headers: HeaderMap,
) -> Response {
    let asked = ask_with_basic(&ctx, &headers, |user, password, reply| Input::PhoneRooms {
        user,
        password,
        source: info.src.ip(),
        reply,
    });
    let mut rooms = match asked.await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Some(relay) = ctx.relay.get() {
        for room in rooms
            .rooms
            .iter_mut()
            .filter(|r| !r.participants.is_empty())
        {
            let Some(state) = relay.room_state(room.room_id).await else {
                continue;
            };
            let who: std::collections::HashMap<u64, String> = room
                .participants
                .iter()
                .map(|p| (p.session, p.who.clone()))
                .collect();
            for p in &mut room.participants {
                if let Some(m) = state.participants.iter().find(|m| m.session.0 == p.session) {
                    p.talking = m.stats.talking;
                    p.muted = m.stats.muted || m.stats.self_muted;
                    p.showing = m
                        .showing
                        .iter()
                        .map(|s| s.and_then(|s| who.get(&s.0).cloned()))
                        .collect();
                }
            }
        }
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(rooms)).into_response()
}

/// `POST /phone/api/rooms/ROOM` with a JSON room action (`{"action":"mute","extension":
/// "1001","muted":true}`, `kick`, `lock`): a moderator's control from the page. HTTP Basic;
/// the `Origin` must be this host (a page elsewhere cannot use a browser's cached
/// credentials); 403 for one who does not moderate the room.
async fn phone_room_action(
    State(ctx): State<Arc<WebCtx>>,
    Extension(info): Extension<ConnInfo>,
    axum::extract::Path(room): axum::extract::Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let origin_ok = headers
        .get(header::ORIGIN)
        .is_some_and(|o| same_host(o, headers.get(header::HOST)));
    if !origin_ok {
        return (
            StatusCode::FORBIDDEN,
            "the request must come from this switch's page\n",
        )
            .into_response();
    }
    let Some((user, password)) = basic_credentials(&headers) else {
        return basic_unauthorized();
    };
    let action: crate::proxy::rooms::RoomAction = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("not a room action: {e}\n")).into_response()
        }
    };
    let (reply, rx) = oneshot::channel();
    let ask = Input::PhoneRoomAction {
        user,
        password,
        source: info.src.ip(),
        room,
        action,
        reply,
    };
    if ctx.stream.tx.send(ask).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the switch is stopping\n").into_response();
    }
    use crate::switch::PageRoomError;
    match rx.await {
        Ok(Ok(done)) => axum::Json(done).into_response(),
        Ok(Err(PageRoomError::Unauthorized)) => basic_unauthorized(),
        Ok(Err(e @ PageRoomError::NotModerator(_))) => {
            (StatusCode::FORBIDDEN, format!("{e}\n")).into_response()
        }
        Ok(Err(e @ PageRoomError::Room(_))) => {
            (StatusCode::NOT_FOUND, format!("{e}\n")).into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "the switch is stopping\n").into_response(),
    }
}

/// The 401 of the page's APIs.
fn basic_unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (
                header::WWW_AUTHENTICATE,
                "Basic realm=\"tambun\", charset=\"UTF-8\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        "extension or password is wrong\n",
    )
        .into_response()
}

/// `Authorization: Basic base64(user:password)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sip_first_lines() {
        assert!(looks_like_sip(
            b"REGISTER sip:example.org SIP/2.0\r\nVia: x\r\n\r\n"
        ));
        assert!(looks_like_sip(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(looks_like_sip(b"INVITE sip:1001@x SIP/2.0\n"));
        assert!(!looks_like_sip(b"GET / HTTP/1.1\r\n"));
        assert!(!looks_like_sip(b"{\"json\": true}"));
        assert!(!looks_like_sip(b"\x16\x03\x01\x02\x00"));
        assert!(!looks_like_sip(b"INVITE sip:x SIP/3.0\r\n"));
    }

    #[test]
    fn origin_must_be_this_host() {
        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(same_host(
            &h("https://10.1.2.3:8443"),
            Some(&h("10.1.2.3:8443"))
        ));
        assert!(same_host(
            &h("https://PBX.example:8443"),
            Some(&h("pbx.example:8443"))
        ));
        assert!(same_host(&h("https://[::1]:8443"), Some(&h("[::1]:8443"))));
        assert!(same_host(
            &h("https://pbx.example"),
            Some(&h("pbx.example"))
        ));
        assert!(!same_host(
            &h("https://evil.example:8443"),
            Some(&h("10.1.2.3:8443"))
        ));
        assert!(!same_host(
            &h("https://10.1.2.3:9999"),
            Some(&h("10.1.2.3:8443"))
        ));
        assert!(!same_host(&h("null"), Some(&h("10.1.2.3:8443"))));
        assert!(!same_host(&h("https://10.1.2.3:8443"), None));
    }

    #[test]
    fn basic_auth_and_hosts() {
        let mut h = HeaderMap::new();
        // "1001:rahasia 123"
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic MTAwMTpyYWhhc2lhIDEyMw=="),
        );
        assert_eq!(
            basic_credentials(&h),
            Some(("1001".into(), "rahasia 123".into()))
        );
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Digest x"));
        assert_eq!(basic_credentials(&h), None);
        assert_eq!(host_of("10.1.2.3:8443"), "10.1.2.3");
        assert_eq!(host_of("[::1]:8443"), "[::1]");
        assert_eq!(host_of("pbx.example"), "pbx.example");
    }
}
