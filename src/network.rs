//! What the switch knows about its own network presence: the advertised address of each UDP
//! socket, the TCP/TLS listeners, the open stream connections (local end, remote end,
//! transport) and the SIP domain. The proxy uses it for Via and Record-Route and to recognise
//! URIs that name the switch; the driver keeps it current (`handle_conn_opened`/`closed`).
//!
//! Plain data: no sockets, no clock.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::sip::headers::Uri;
use crate::sip::transaction::Peer;
use crate::types::Transport;

/// What the switch knows about its own sockets and connections (for Via, Record-Route and
/// recognising Route headers that name it).
#[derive(Default)]
pub struct Network {
    /// The advertised address of each UDP socket; `Peer::conn` of a UDP peer is its index.
    pub udp: Vec<SocketAddr>,
    /// Open stream connections: id → (local address, remote address, transport).
    pub conns: HashMap<u64, (SocketAddr, SocketAddr, Transport)>,
    pub(crate) by_remote: HashMap<(SocketAddr, Transport), u64>,
    /// TCP and TLS listening addresses (a Route naming one names us, connection open or not).
    pub listeners: Vec<SocketAddr>,
    /// The SIP domain, when configured: Route URIs with this host name us too.
    pub domain: Option<String>,
}

impl Network {
    /// Our address as seen on the path to this peer.
    pub fn local_of(&self, peer: &Peer) -> Option<SocketAddr> {
        match peer.transport {
            Transport::Udp => {
                let idx = peer.conn? as usize;
                self.udp.get(idx).copied()
            }
            _ => self.conns.get(&peer.conn?).map(|c| c.0),
        }
    }

    /// Is this one of our addresses: a UDP socket's, a listener's, or the local end of an open
    /// connection? A listener on an unspecified address (`0.0.0.0:5061`) has the port on each
    /// address the switch advertises (its UDP sockets' addresses, the local ends of its
    /// connections).
    pub fn is_ours(&self, addr: SocketAddr) -> bool {
        if self.udp.contains(&addr)
            || self.listeners.contains(&addr)
            || self.conns.values().any(|c| c.0 == addr)
        {
            return true;
        }
        let wildcard = self.listeners.iter().any(|l| {
            l.ip().is_unspecified() && l.port() == addr.port() && l.is_ipv4() == addr.is_ipv4()
        });
        wildcard
            && (self.udp.iter().any(|u| u.ip() == addr.ip())
                || self.conns.values().any(|c| c.0.ip() == addr.ip()))
    }

    /// Does a socket or listener of ours use this port (on any address)?
    pub fn listens_on_port(&self, port: u16) -> bool {
        self.udp
            .iter()
            .chain(&self.listeners)
            .any(|a| a.port() == port)
    }

    /// A UDP peer for this address, sent from the first socket of the same address family.
    pub fn udp_peer(&self, addr: SocketAddr) -> Peer {
        let idx = self
            .udp
            .iter()
            .position(|l| l.is_ipv4() == addr.is_ipv4())
            .unwrap_or(0);
        Peer {
            addr,
            transport: Transport::Udp,
            conn: Some(idx as u64),
        }
    }

    /// An open connection to this address, if any.
    pub fn conn_to(&self, addr: SocketAddr, transport: Transport) -> Option<u64> {
        self.by_remote.get(&(addr, transport)).copied()
    }

    /// Does this Route/Request-URI name the switch? Only when its host and port are those of
    /// one of our listeners (the URI's default port when it has none: 5061 for `sips:` and
    /// `;transport=tls`, else 5060). The configured domain matches by name alone only when it
    /// is a name: a domain that is an IP literal is an address like any other, so a phone on
    /// the switch's own IP at another port is not the switch.
    pub fn names_us(&self, uri: &str) -> bool {
        let Ok(Uri::Sip(u)) = Uri::parse(uri) else {
            return false;
        };
        let host = u.host.trim_start_matches('[').trim_end_matches(']');
        let tls = u.secure
            || u.params
                .get("transport")
                .flatten()
                .is_some_and(|t| t.eq_ignore_ascii_case("tls"));
        let port = u.port.unwrap_or(if tls { 5061 } else { 5060 });
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.is_ours(SocketAddr::new(ip, port));
        }
        let is_domain = self
            .domain
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(host) && d.parse::<IpAddr>().is_err());
        is_domain && (u.port.is_none() || self.listens_on_port(port))
    }
}
