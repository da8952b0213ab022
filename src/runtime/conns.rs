//! Admission and counters for stream connections (TCP, TLS, WS and the web listener together): at most
//! `max_per_source` open connections from one source (an IPv4 address or an IPv6 /64, the
//! guard's [`SourceKey`]; sources in `guard.allow` are exempt, as an office behind one NAT
//! address may have many phones) and `max_total` in all; a connection
//! over either limit is closed at accept, before any byte is read or a TLS handshake is
//! started. A [`Permit`] holds one slot and gives it back when dropped, so every way a
//! connection task can end releases it.
//!
//! [`ConnStats`] are the counters `/metrics` will expose; `/api/connections` shows them now.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::guard::{Cidr, SourceKey};
use crate::types::Transport;

/// Counters of the stream transports; all monotonic except the `*_open` gauges.
#[derive(Debug, Default)]
pub(crate) struct ConnStats {
    /// Open TCP connections (gauge).
    pub tcp_open: AtomicU64,
    /// Open TLS connections, handshaking ones included (gauge).
    pub tls_open: AtomicU64,
    /// Open connections on the plain WebSocket listener (gauge).
    pub ws_open: AtomicU64,
    /// Open connections on the web listener: HTTPS page loads and WSS flows (gauge).
    pub wss_open: AtomicU64,
    /// Connections accepted since start.
    pub accepted: AtomicU64,
    /// Closed at accept: their source IP had `max_per_source` open already.
    pub refused_per_source: AtomicU64,
    /// Closed at accept: `max_total` connections were open.
    pub refused_total: AtomicU64,
    /// Closed because no bytes came for the idle time, or no first message in time.
    pub closed_idle: AtomicU64,
    /// TLS handshakes that failed or did not finish within the handshake timeout.
    pub handshake_failures: AtomicU64,
}

impl ConnStats {
    /// A plain copy for `/metrics`.
    pub(crate) fn metrics(&self) -> crate::metrics::ConnMetrics {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        crate::metrics::ConnMetrics {
            tcp_open: get(&self.tcp_open),
            tls_open: get(&self.tls_open),
            ws_open: get(&self.ws_open),
            wss_open: get(&self.wss_open),
            accepted: get(&self.accepted),
            refused_per_source: get(&self.refused_per_source),
            refused_total: get(&self.refused_total),
            closed_idle: get(&self.closed_idle),
            tls_handshake_failures: get(&self.handshake_failures),
        }
    }

    fn gauge(&self, transport: Transport) -> &AtomicU64 {
        match transport {
            Transport::Tls => &self.tls_open,
            Transport::Ws => &self.ws_open,
            Transport::Wss => &self.wss_open,
            Transport::Tcp | Transport::Udp => &self.tcp_open,
        }
    }

    /// The counters as JSON (for `/api/connections`).
    pub fn json(&self) -> serde_json::Value {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        serde_json::json!({
            "tcp_open": r(&self.tcp_open),
            "tls_open": r(&self.tls_open),
            "ws_open": r(&self.ws_open),
            "wss_open": r(&self.wss_open),
            "accepted": r(&self.accepted),
            "refused_per_source": r(&self.refused_per_source),
            "refused_total": r(&self.refused_total),
            "closed_idle": r(&self.closed_idle),
            "tls_handshake_failures": r(&self.handshake_failures),
        })
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("connections: {0} connections from this source are open already")]
    PerSource(u32),
    #[error("connections: {0} connections are open already")]
    Total(u32),
}

/// Open connections per source and in all (plain counting, no I/O).
#[derive(Debug, Default)]
struct Counts {
    by_source: HashMap<SourceKey, u32>,
    total: u32,
}

impl Counts {
    /// `max_per_source` None: the source is exempt from the per-source limit.
    fn admit(
        &mut self,
        key: SourceKey,
        max_per_source: Option<u32>,
        max_total: u32,
    ) -> Result<(), Refusal> {
        if self.total >= max_total {
            return Err(Refusal::Total(max_total));
        }
        let n = self.by_source.entry(key).or_insert(0);
        if let Some(max_per_source) = max_per_source.filter(|max| *n >= *max) {
            return Err(Refusal::PerSource(max_per_source));
        }
        *n += 1;
        self.total += 1;
        Ok(())
    }

    fn release(&mut self, key: SourceKey) {
        if let Some(n) = self.by_source.get_mut(&key) {
            *n -= 1;
            self.total = self.total.saturating_sub(1);
            if *n == 0 {
                self.by_source.remove(&key);
            }
        }
    }
}

/// The shared gate every accept loop asks.
#[derive(Debug)]
pub(crate) struct ConnGate {
    max_per_source: u32,
    max_total: u32,
    /// Networks exempt from `max_per_source` (`guard.allow`).
    allow: Vec<Cidr>,
    counts: Mutex<Counts>,
    pub stats: ConnStats,
}

/// One admitted connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    gate: Arc<ConnGate>,
    key: SourceKey,
    transport: Transport,
}

impl ConnGate {
    pub fn new(max_per_source: u32, max_total: u32, allow: Vec<Cidr>) -> Arc<ConnGate> {
        Arc::new(ConnGate {
            max_per_source,
            max_total,
            allow,
            counts: Mutex::new(Counts::default()),
            stats: ConnStats::default(),
        })
    }

    /// Takes a slot for a connection from `ip`, or says which limit is reached (and counts
    /// the refusal).
    pub fn admit(self: &Arc<Self>, ip: IpAddr, transport: Transport) -> Result<Permit, Refusal> {
        let key = SourceKey::of(ip);
        let allowed = self.allow.iter().any(|c| c.contains(ip));
        let result = self.counts.lock().unwrap_or_else(|p| p.into_inner()).admit(
            key,
            (!allowed).then_some(self.max_per_source),
            self.max_total,
        );
        match result {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                self.stats.gauge(transport).fetch_add(1, Ordering::Relaxed);
                Ok(Permit {
                    gate: self.clone(),
                    key,
                    transport,
                })
            }
            Err(r) => {
                let counter = match r {
                    Refusal::PerSource(_) => &self.stats.refused_per_source,
                    Refusal::Total(_) => &self.stats.refused_total,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Err(r)
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate
            .counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .release(self.key);
        self.gate
            .stats
            .gauge(self.transport)
            .fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_source_and_total_limits() {
        let gate = ConnGate::new(2, 3, Vec::new());
        let a1 = gate.admit(ip("10.0.0.1"), Transport::Tcp).unwrap();
        let _a2 = gate.admit(ip("10.0.0.1"), Transport::Tls).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.1"), Transport::Tcp).unwrap_err(),
            Refusal::PerSource(2)
        );
        let _b1 = gate.admit(ip("10.0.0.2"), Transport::Tcp).unwrap();
        assert_eq!(
            gate.admit(ip("10.0.0.3"), Transport::Tcp).unwrap_err(),
            Refusal::Total(3)
        );
        assert_eq!(gate.stats.tcp_open.load(Ordering::Relaxed), 2);
        assert_eq!(gate.stats.tls_open.load(Ordering::Relaxed), 1);
        // A closed connection frees its slot for its source and for the total.
        drop(a1);
        let _a3 = gate.admit(ip("10.0.0.1"), Transport::Tcp).unwrap();
        assert!(gate.admit(ip("10.0.0.3"), Transport::Tcp).is_err());
        let s = gate.stats.json();
        assert_eq!(s["refused_per_source"], 1);
        assert_eq!(s["refused_total"], 2);
        assert_eq!(s["accepted"], 4);
        assert_eq!(s["tcp_open"], 2);
    }

    #[test]
    fn every_slot_comes_back() {
        let gate = ConnGate::new(32, 64, Vec::new());
        let permits: Vec<Permit> = (0..64)
            .map(|i| {
                gate.admit(IpAddr::from([10, 0, (i % 4) as u8, 1]), Transport::Tcp)
                    .unwrap()
            })
            .collect();
        assert!(gate.admit(ip("10.9.9.9"), Transport::Tcp).is_err());
        drop(permits);
        let counts = gate.counts.lock().unwrap();
        assert_eq!(counts.total, 0);
        assert!(counts.by_source.is_empty());
        assert_eq!(gate.stats.tcp_open.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_the_allow_list_is_exempt() {
        let gate = ConnGate::new(2, 8, vec!["10.1.0.0/16".parse().unwrap()]);
        let _a = gate.admit(ip("2001:db8:1:2::a"), Transport::Tcp).unwrap();
        let _b = gate.admit(ip("2001:db8:1:2::b"), Transport::Tcp).unwrap();
        assert_eq!(
            gate.admit(ip("2001:db8:1:2::c"), Transport::Tcp)
                .unwrap_err(),
            Refusal::PerSource(2),
            "a third address of the same /64"
        );
        let _c = gate.admit(ip("2001:db8:1:3::c"), Transport::Tcp).unwrap();
        // Five phones behind one allow-listed NAT address.
        let office: Vec<Permit> = (0..5)
            .map(|_| gate.admit(ip("10.1.2.3"), Transport::Tls).unwrap())
            .collect();
        assert_eq!(
            gate.admit(ip("10.2.0.1"), Transport::Tcp).unwrap_err(),
            Refusal::Total(8),
            "the total limit still counts allow-listed connections"
        );
        drop(office);
        assert!(gate.counts.lock().unwrap().by_source.len() == 2);
    }
}
