//! UDP: binding (large receive buffer, IPv6-only sockets so `[::]` and `0.0.0.0` coexist) and
//! the reader task that turns datagrams into driver inputs.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Input;
use crate::sip::message::Limits;

/// Receive buffer asked of the kernel (it caps it at net.core.rmem_max).
const RCVBUF: usize = 4 * 1024 * 1024;

pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    let _ = sock.set_recv_buffer_size(RCVBUF);
    let _ = sock.set_send_buffer_size(RCVBUF);
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    UdpSocket::from_std(sock.into())
}

pub(crate) async fn read_loop(
    sock: Arc<UdpSocket>,
    index: usize,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
    limits: Limits,
) {
    // One datagram more than the limit tells "too large" apart from "exactly at the limit".
    let cap = limits.max_message.clamp(1500, 65_535) + 1;
    let mut buf = BytesMut::with_capacity(cap * 16);
    loop {
        if buf.capacity() < cap {
            buf.reserve(cap * 16);
        }
        let res = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = sock.recv_buf_from(&mut buf) => r,
        };
        match res {
            Ok((_, src)) => {
                let data = buf.split().freeze();
                if tx
                    .send(Input::Datagram {
                        socket: index,
                        src,
                        data,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                // ICMP errors (port unreachable) surface here on Linux; they are not fatal.
                tracing::trace!(error = %e, "udp recv error");
                buf.clear();
            }
        }
    }
}
