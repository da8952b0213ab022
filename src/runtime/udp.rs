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

/// The address the switch puts in Via and Record-Route for a socket: the bound address, or for
/// a wildcard bind the host's first non-loopback address of that family (loopback if none).
pub(crate) fn advertised(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let ip = interface_addresses()
        .into_iter()
        .find(|ip| ip.is_ipv4() == bound.is_ipv4() && !ip.is_loopback())
        .unwrap_or(if bound.is_ipv4() {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        });
    SocketAddr::new(ip, bound.port())
}

/// The host's interface addresses (getifaddrs).
fn interface_addresses() -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    #[cfg(unix)]
    // SAFETY: getifaddrs fills a linked list we only read and then free with freeifaddrs;
    // each ifa_addr is checked for null and its family before the cast.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                            u32::from_be(sin.sin_addr.s_addr),
                        )));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                            sin6.sin6_addr.s6_addr,
                        )));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
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
