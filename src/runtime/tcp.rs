//! TCP: the listener, and per connection a reader (Content-Length framing, RFC 5626 CRLF
//! keep-alive answered with CRLF) and a writer fed by the driver. A framing error closes the
//! connection (RFC 4475 §3.1.2.3: a negative or conflicting Content-Length cannot be recovered
//! from on a stream).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{ConnId, Input};
use crate::sip::message::{frame_stream, Frame, Limits};
use crate::types::Transport;

/// Connection ids start high so they never collide with UDP socket indexes in logs.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1 << 32);

/// Messages queued for one connection's writer before it counts as stuck.
const WRITER_QUEUE: usize = 256;

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

pub(crate) async fn accept_loop(
    listener: TcpListener,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, src)) => {
                let _ = stream.set_nodelay(true);
                let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(connection(
                    stream,
                    src,
                    conn,
                    tx.clone(),
                    shutdown.clone(),
                    limits,
                ));
            }
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    src: SocketAddr,
    conn: ConnId,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let (mut rd, mut wr) = stream.into_split();
    let (wtx, mut wrx) = mpsc::channel::<Bytes>(WRITER_QUEUE);
    if tx
        .send(Input::ConnOpened {
            conn,
            local,
            remote: src,
            transport: Transport::Tcp,
            writer: wtx.clone(),
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
    tracing::debug!(%src, conn, "tcp connection opened");

    let mut buf = BytesMut::with_capacity(8192);
    'read: loop {
        let n = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let _ = n;
        loop {
            match frame_stream(&buf, &limits) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive { len, ping }) => {
                    buf.advance(len);
                    if ping {
                        let _ = wtx.try_send(Bytes::from_static(b"\r\n"));
                    }
                }
                Ok(Frame::Message { len }) => {
                    let data = buf.split_to(len).freeze();
                    let input = Input::Stream {
                        conn,
                        transport: Transport::Tcp,
                        src,
                        data,
                    };
                    if tx.send(input).await.is_err() {
                        break 'read;
                    }
                }
                Err(e) => {
                    tracing::debug!(%src, error = %e, "closing tcp connection: bad framing");
                    break 'read;
                }
            }
        }
    }
    drop(wtx);
    let _ = tx.send(Input::ConnClosed { conn }).await;
    let _ = writer.await;
    tracing::debug!(%src, conn, "tcp connection closed");
}
