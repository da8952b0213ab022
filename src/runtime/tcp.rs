//! Stream connections (TCP, and TLS after its handshake, see `tls`): the TCP listener, and per
//! connection a reader (Content-Length framing, RFC 5626 CRLF keep-alive answered with CRLF)
//! and a writer fed by the driver. A framing error closes the connection (RFC 4475 §3.1.2.3:
//! a negative or conflicting Content-Length cannot be recovered from on a stream).
//!
//! Every accepted connection first takes a slot from the [`ConnGate`] (per-source and total
//! limits) and is closed at once without one. A connection is closed when it sends no complete
//! SIP message within `first_message` of opening, or no bytes at all for `idle`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conns::{ConnGate, Permit};
use super::{ConnId, Input};
use crate::sip::message::{frame_stream, Frame, Limits};
use crate::types::Transport;

/// Connection ids start high so they never collide with UDP socket indexes in logs.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1 << 32);

pub(crate) fn next_conn_id() -> ConnId {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// What every stream connection task needs besides its stream.
#[derive(Clone)]
pub(crate) struct StreamCtx {
    pub tx: mpsc::Sender<Input>,
    pub shutdown: CancellationToken,
    pub limits: Limits,
    pub gate: Arc<ConnGate>,
    /// Close a connection that sent no complete message this long after it opened.
    pub first_message: Duration,
    /// Close a connection that sent no bytes for this long.
    pub idle: Duration,
}

/// Messages queued for one connection's writer before it counts as stuck.
const WRITER_QUEUE: usize = 256;

/// How long a closing connection may take to write out what is queued for it.
const WRITER_DRAIN: Duration = Duration::from_secs(5);

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    TcpListener::from_std(sock.into())
}

pub(crate) async fn accept_loop(listener: TcpListener, ctx: StreamCtx) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, src)) => {
                let permit = match ctx.gate.admit(src.ip(), Transport::Tcp) {
                    Ok(p) => p,
                    Err(why) => {
                        tracing::debug!(%src, "tcp connection refused: {why}");
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let local = match stream.local_addr() {
                    Ok(a) => a,
                    Err(_) => continue,
                };
                tokio::spawn(connection(
                    stream,
                    local,
                    src,
                    Transport::Tcp,
                    permit,
                    ctx.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Opens a connection to a carrier (`transport` TCP) and serves it like an accepted one;
/// the driver hears `ConnOpened`. A failure is one log line: the trunk core tries again on
/// its own timers.
pub(crate) async fn connect(to: crate::trunk::Connect, ctx: StreamCtx) {
    let (addr, transport) = (to.addr, to.transport);
    if let Err(why) = open(to, ctx.clone()).await {
        tracing::warn!(target: "tambun::trunk", %addr, %transport, "cannot connect to the carrier: {why}");
        let _ = ctx
            .tx
            .send(Input::ConnectFailed {
                addr,
                transport,
                why,
            })
            .await;
    }
}

/// Opens the connection of `to` (TLS: the handshake, checking the carrier's certificate) and
/// serves it until it closes; `Err` says, in a sentence, why it never opened.
async fn open(to: crate::trunk::Connect, ctx: StreamCtx) -> Result<(), String> {
    let addr = to.addr;
    let tls = match (to.transport, to.tls) {
        (Transport::Tcp, _) => None,
        (Transport::Tls, Some(tls)) => Some(tls),
        (t, _) => return Err(format!("connections to carriers over {t} are not opened")),
    };
    let stream =
        match tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err(format!("no answer within {} s", CONNECT_WITHIN.as_secs())),
        };
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().map_err(|e| e.to_string())?;
    let permit = ctx
        .gate
        .admit(addr.ip(), to.transport)
        .map_err(|why| format!("over the connection limits: {why}"))?;
    match tls {
        None => connection(stream, local, addr, Transport::Tcp, permit, ctx).await,
        Some(tls) => {
            let stream =
                tokio::time::timeout(CONNECT_WITHIN, super::tls::client_handshake(stream, &tls))
                    .await
                    .map_err(|_| {
                        format!("no TLS handshake within {} s", CONNECT_WITHIN.as_secs())
                    })??;
            tracing::info!(target: "tambun::trunk", %addr, name = %tls.server_name, "TLS connection to the carrier open; its certificate checked");
            connection(stream, local, addr, Transport::Tls, permit, ctx).await;
        }
    }
    Ok(())
}

/// How long a connection to a carrier may take to open.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// Serves one connection until the peer closes it, framing fails, it idles out or the switch
/// stops. `permit` is held for the connection's life.
pub(crate) async fn connection<S>(
    stream: S,
    local: SocketAddr,
    src: SocketAddr,
    transport: Transport,
    permit: Permit,
    ctx: StreamCtx,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let _permit = permit;
    let StreamCtx {
        tx,
        shutdown,
        limits,
        gate,
        first_message,
        idle,
    } = ctx;
    let conn = next_conn_id();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(WRITER_QUEUE);
    let close = CancellationToken::new();
    if tx
        .send(Input::ConnOpened {
            conn,
            local,
            remote: src,
            transport,
            writer: wtx.clone(),
            close: close.clone(),
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(b) = wrx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    tracing::debug!(%src, conn, %transport, "connection opened");

    let opened = tokio::time::Instant::now();
    let mut last_rx = opened;
    let mut got_message = false;
    let mut buf = BytesMut::with_capacity(8192);
    'read: loop {
        let deadline = if got_message {
            last_rx + idle
        } else {
            (opened + first_message).min(last_rx + idle)
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = close.cancelled() => {
                tracing::debug!(%src, conn, %transport, "closing the connection of a banned source");
                break;
            }
            _ = tokio::time::sleep_until(deadline) => {
                gate.stats.closed_idle.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, conn, %transport, got_message, "closing idle connection");
                break;
            }
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => last_rx = tokio::time::Instant::now(),
            },
        }
        loop {
            match frame_stream(&buf, &limits) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive { len, ping }) => {
                    buf.advance(len);
                    // Pongs may use only half the write queue: a peer that pings without
                    // reading must not crowd out the responses to its own requests.
                    if ping && wtx.capacity() > WRITER_QUEUE / 2 {
                        let _ = wtx.try_send(Bytes::from_static(b"\r\n"));
                    }
                }
                Ok(Frame::Message { len }) => {
                    got_message = true;
                    let data = buf.split_to(len).freeze();
                    let input = Input::Stream {
                        conn,
                        transport,
                        src,
                        data,
                    };
                    if tx.send(input).await.is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    tracing::debug!(%src, %transport, error = %e, "closing connection: bad framing");
                    break 'read;
                }
            }
        }
    }
    drop(wtx);
    let _ = tx.send(Input::ConnClosed { conn }).await;
    // A peer that reads nothing must not hold the connection (and its slot) forever.
    let abort = writer.abort_handle();
    if tokio::time::timeout(WRITER_DRAIN, writer).await.is_err() {
        abort.abort();
    }
    tracing::debug!(%src, conn, %transport, "connection closed");
}
