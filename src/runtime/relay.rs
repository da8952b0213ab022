//! The relay as the proxy sees it: `media::Relay` behind the proxy's [`MediaRelay`] trait, and
//! the thread that turns the relay's inactivity reports into driver inputs and samples the
//! forwarded packets/s for `/metrics`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Input;
use crate::media::{Relay, RelayEvent, SessionId, Side};
use crate::proxy::media::{Leg, MediaRelay, StreamAddrs};

/// The engine plus the map from the proxy's session numbers to the engine's ids.
pub(crate) struct RelayGlue {
    relay: Arc<Relay>,
    sessions: Mutex<HashMap<u64, SessionId>>,
    /// The forwarded-packet counter at the last rate sample, and when it was taken.
    last_sample: Mutex<Option<(Instant, u64)>>,
    /// Packets forwarded per second over the last sample interval (f64 bits).
    forwarded_per_second: AtomicU64,
}

impl RelayGlue {
    pub(crate) fn new(relay: Arc<Relay>) -> RelayGlue {
        RelayGlue {
            relay,
            sessions: Mutex::new(HashMap::new()),
            last_sample: Mutex::new(None),
            forwarded_per_second: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Updates the packets/s gauge when a second or more has passed since the last sample.
    fn sample_rate(&self, now: Instant) {
        let Ok(mut last) = self.last_sample.lock() else {
            return;
        };
        let forwarded = self.relay.totals().forwarded;
        match *last {
            Some((at, before)) if now.duration_since(at) >= Duration::from_secs(1) => {
                let rate =
                    forwarded.saturating_sub(before) as f64 / now.duration_since(at).as_secs_f64();
                self.forwarded_per_second
                    .store(rate.to_bits(), Ordering::Relaxed);
                *last = Some((now, forwarded));
            }
            Some(_) => {}
            None => *last = Some((now, forwarded)),
        }
    }

    /// What `/metrics` shows of the relay.
    pub(crate) fn metrics(&self) -> crate::metrics::RelayMetrics {
        crate::metrics::RelayMetrics {
            totals: self.relay.totals(),
            forwarded_per_second: f64::from_bits(self.forwarded_per_second.load(Ordering::Relaxed)),
            sessions: self.relay.sessions() as u64,
            ports_in_use: self.relay.ports_in_use() as u64,
        }
    }

    /// Counters of a session, as JSON for the admin API (one object per stream direction).
    pub(crate) fn stats_json(&self, session: u64) -> Vec<serde_json::Value> {
        let Some(id) = self.id(session) else {
            return Vec::new();
        };
        let Ok(stats) = self.relay.stats(id) else {
            return Vec::new();
        };
        stats
            .iter()
            .map(|s| {
                serde_json::json!({
                    "stream": s.stream,
                    "direction": match s.direction {
                        crate::media::Direction::AToB => "caller->callee",
                        crate::media::Direction::BToA => "callee->caller",
                    },
                    "source": s.source.map(|a| a.to_string()),
                    "packets": s.packets,
                    "bytes": s.bytes,
                    "lost": s.lost,
                    "jitter_ms": (s.jitter_ms * 100.0).round() / 100.0,
                    "dropped_foreign": s.dropped_foreign,
                })
            })
            .collect()
    }

    pub(crate) fn usage_json(&self) -> serde_json::Value {
        serde_json::json!({
            "ports_in_use": self.relay.ports_in_use(),
            "sessions": self.relay.sessions(),
        })
    }

    fn id(&self, session: u64) -> Option<SessionId> {
        // Holds: the lock is only taken for map operations that cannot panic.
        self.sessions.lock().ok()?.get(&session).copied()
    }
}

impl MediaRelay for RelayGlue {
    fn open(
        &self,
        call: u64,
        streams: usize,
        rtcp_mux: bool,
    ) -> Result<(u64, Vec<StreamAddrs>), String> {
        let s = self
            .relay
            .open(call, streams, rtcp_mux)
            .map_err(|e| e.to_string())?;
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(call, s.id);
        }
        let addrs = s
            .streams
            .iter()
            .map(|p| StreamAddrs {
                a_rtp: p.a.rtp,
                a_rtcp: p.a.rtcp,
                b_rtp: p.b.rtp,
                b_rtcp: p.b.rtcp,
            })
            .collect();
        // The proxy's session number is the call number: relay events name the call.
        Ok((call, addrs))
    }

    fn set_remote(&self, session: u64, stream: usize, leg: Leg, rtp: SocketAddr, rtcp: SocketAddr) {
        let Some(id) = self.id(session) else { return };
        let side = match leg {
            Leg::A => Side::A,
            Leg::B => Side::B,
        };
        if let Err(e) = self.relay.set_remote_rtcp(id, stream, side, rtp, rtcp) {
            tracing::debug!(error = %e, "relay set_remote");
        }
    }

    fn totals(&self, session: u64) -> Option<crate::store::MediaTotals> {
        let stats = self.relay.stats(self.id(session)?).ok()?;
        let mut t = crate::store::MediaTotals::default();
        for s in &stats {
            match s.direction {
                crate::media::Direction::AToB => {
                    t.packets_a2b += s.packets;
                    t.lost_a2b += s.lost;
                }
                crate::media::Direction::BToA => {
                    t.packets_b2a += s.packets;
                    t.lost_b2a += s.lost;
                }
            }
            t.jitter_us_max = t.jitter_us_max.max((s.jitter_ms * 1000.0) as u64);
        }
        Some(t)
    }

    fn close(&self, session: u64) {
        let id = self
            .sessions
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&session));
        if let Some(id) = id {
            if let Err(e) = self.relay.close(id) {
                tracing::debug!(error = %e, "relay close");
            }
        }
    }
}

/// Forwards the relay's inactivity reports to the driver until shutdown, and samples the
/// packets/s gauge about every second.
pub(crate) fn watch_events(
    glue: Arc<RelayGlue>,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let spawned = std::thread::Builder::new()
        .name("tambun-relay-events".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                glue.sample_rate(Instant::now());
                if let Some(RelayEvent::Inactive { call }) =
                    glue.relay.wait_event(Duration::from_millis(500))
                {
                    if tx
                        .blocking_send(Input::MediaInactive { session: call })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the relay event thread");
    }
}
