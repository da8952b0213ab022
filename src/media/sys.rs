//! The Linux system calls of the forwarding threads, behind small safe wrappers: epoll, eventfd,
//! `recvmmsg`/`sendmmsg` over preallocated batches, and socket address conversion. This is the
//! only file of the relay with `unsafe`; each block says why it holds.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The largest datagram relayed; longer ones are truncated by the kernel and dropped.
pub const MAX_DATAGRAM: usize = 2048;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An epoll instance (level-triggered).
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain syscall; the returned descriptor is owned from here on.
        let fd = check(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watches `fd` for input, reporting `token`.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call.
        check(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    pub fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: a null event is allowed for EPOLL_CTL_DEL since Linux 2.6.9.
        check(unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        })?;
        Ok(())
    }

    /// Waits up to `timeout_ms` (−1: forever); returns the number of events written.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: `events` is a writable buffer of `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        match check(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }
}

/// An eventfd: the control plane's doorbell into a forwarding thread.
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the returned descriptor is owned from here on.
        let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    /// Rings the bell (never blocks: the counter only saturates after 2^64 − 2 rings).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64.
        unsafe { libc::write(self.raw(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter.
    pub fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64.
        unsafe { libc::read(self.raw(), (&mut v as *mut u64).cast(), 8) };
    }
}

/// Encodes a socket address for the kernel; returns its length.
#[inline]
pub fn encode_addr(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            sin.sin_zero = [0; 8];
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 =
                unsafe { &mut *(out as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// Decodes an address the kernel wrote; `None` for a family other than IPv4/IPv6.
#[inline]
pub fn decode_addr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Preallocated buffers and headers for one `recvmmsg` and the `sendmmsg` that forwards it.
/// Packets are forwarded from the buffer they were received into (no copy).
pub struct Batch {
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    names: Vec<libc::sockaddr_storage>,
    iovecs: Vec<libc::iovec>,
    recv: Vec<libc::mmsghdr>,
    /// The destinations of the forwards being built, and their headers.
    dests: Vec<libc::sockaddr_storage>,
    send_iovecs: Vec<libc::iovec>,
    send: Vec<libc::mmsghdr>,
    pending: usize,
}

// SAFETY: the raw pointers inside point into the batch's own heap buffers, which move with it.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(size: usize) -> Batch {
        let size = size.clamp(1, 1024);
        // SAFETY (all `zeroed` below): these are plain C structs for which all-zero is valid.
        let mut b = Batch {
            bufs: vec![[0u8; MAX_DATAGRAM]; size],
            names: vec![unsafe { zeroed() }; size],
            iovecs: vec![unsafe { zeroed() }; size],
            recv: vec![unsafe { zeroed() }; size],
            dests: vec![unsafe { zeroed() }; size],
            send_iovecs: vec![unsafe { zeroed() }; size],
            send: vec![unsafe { zeroed() }; size],
            pending: 0,
        };
        // The Vecs never grow, so these pointers stay valid for the batch's life.
        for i in 0..size {
            b.iovecs[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            b.iovecs[i].iov_len = MAX_DATAGRAM;
            let h = &mut b.recv[i].msg_hdr;
            h.msg_name = (&mut b.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.iovecs[i];
            h.msg_iovlen = 1;
            b.send_iovecs[i].iov_base = b.bufs[i].as_mut_ptr().cast();
            let h = &mut b.send[i].msg_hdr;
            h.msg_name = (&mut b.dests[i] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut b.send_iovecs[i];
            h.msg_iovlen = 1;
        }
        b
    }

    /// Receives up to a batch from `fd` without blocking; returns how many arrived (0 when
    /// none were waiting).
    pub fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in &mut self.recv {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_flags = 0;
        }
        self.pending = 0;
        // SAFETY: every header points at a live buffer and name of this batch.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.recv.as_mut_ptr(),
                self.recv.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        match check(n) {
            Ok(n) => Ok(n as usize),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// The `i`th received packet: its source and bytes (`None` source for a truncated packet
    /// or an unknown address family).
    #[inline]
    pub fn packet(&self, i: usize) -> (Option<SocketAddr>, &[u8]) {
        let h = &self.recv[i];
        let len = (h.msg_len as usize).min(MAX_DATAGRAM);
        let src = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            None
        } else {
            decode_addr(&self.names[i])
        };
        (src, &self.bufs[i][..len])
    }

    /// Queues received packet `i` to be sent to `to` by the next [`Batch::flush`].
    #[inline]
    pub fn forward(&mut self, i: usize, to: SocketAddr) {
        let k = self.pending;
        let namelen = encode_addr(to, &mut self.dests[k]);
        self.send_iovecs[k].iov_base = self.bufs[i].as_mut_ptr().cast();
        self.send_iovecs[k].iov_len = self.recv[i].msg_len as usize;
        self.send[k].msg_hdr.msg_namelen = namelen;
        self.pending += 1;
    }

    /// Sends the queued forwards out of `fd`; returns how many the kernel did not take.
    pub fn flush(&mut self, fd: RawFd) -> usize {
        let total = self.pending;
        self.pending = 0;
        let (mut done, mut failed) = (0, 0);
        while done < total {
            // SAFETY: headers `done..total` point at live buffers and destinations of this batch.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    self.send[done..].as_mut_ptr(),
                    (total - done) as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                done += n as usize;
                continue;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => {}
                // A full socket buffer: drop the rest rather than wait (RTP is real-time).
                io::ErrorKind::WouldBlock => {
                    failed += total - done;
                    break;
                }
                // An error on one destination (e.g. unreachable): skip that packet.
                _ => {
                    done += 1;
                    failed += 1;
                }
            }
        }
        failed
    }
}

/// Sets `SO_BUSY_POLL` (microseconds of busy polling on blocking reads); errors are ignored
/// (the option needs CAP_NET_ADMIN to raise above the sysctl default on some kernels).
pub fn set_busy_poll(socket: &impl AsRawFd, us: u32) {
    let v = us as libc::c_int;
    // SAFETY: setsockopt reads an int from a valid pointer.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BUSY_POLL,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let mut s: libc::sockaddr_storage = unsafe { zeroed() };
        for a in ["127.0.0.1:10000", "[::1]:20002", "[fe80::1%2]:5"] {
            let a: SocketAddr = a.parse().unwrap();
            encode_addr(a, &mut s);
            assert_eq!(decode_addr(&s), Some(a));
        }
    }
}
