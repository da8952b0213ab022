//! The media engine in the runtime: the thread that turns the relay's reports into driver
//! inputs and samples the forwarded packets/s for `/metrics`, and the admin API's questions
//! to the forwarding threads (asked with a reply callback, answered on their threads, never
//! through the driver and never by blocking a task).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Input;
use crate::media::gateway::BrowserStats;
use crate::media::{
    BrowserStatsReply, Direction, MediaCommand, Relay, SessionId, Side, StatsReply, StreamStats,
};

/// How long the admin API waits for a forwarding thread's counters.
const STATS_ANSWER: Duration = Duration::from_secs(1);

/// The engine handle plus the packets/s gauge.
pub(crate) struct RelayGlue {
    relay: Arc<Relay>,
    /// The forwarded-packet counter at the last rate sample, and when it was taken.
    last_sample: Mutex<Option<(Instant, u64)>>,
    /// Packets forwarded per second over the last sample interval (f64 bits).
    forwarded_per_second: AtomicU64,
}

impl RelayGlue {
    pub(crate) fn new(relay: Arc<Relay>) -> RelayGlue {
        RelayGlue {
            relay,
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

    /// What `/metrics` shows of the relay; sessions and ports are the switch's count
    /// (`SwitchMetrics::media`).
    pub(crate) fn metrics(
        &self,
        (sessions, ports_in_use): (u64, u64),
    ) -> crate::metrics::RelayMetrics {
        crate::metrics::RelayMetrics {
            totals: self.relay.totals(),
            forwarded_per_second: f64::from_bits(self.forwarded_per_second.load(Ordering::Relaxed)),
            sessions,
            ports_in_use,
        }
    }

    /// Counters of a session, as JSON for the admin API (one object per stream direction);
    /// empty when the session is gone or the thread did not answer in time.
    pub(crate) async fn stats_json(&self, session: u64) -> Vec<serde_json::Value> {
        let (tx, rx) = oneshot::channel();
        self.relay.submit(MediaCommand::Stats {
            session: SessionId(session),
            reply: StatsReply(Box::new(move |s| {
                let _ = tx.send(s);
            })),
        });
        let Ok(Ok(Some(stats))) = tokio::time::timeout(STATS_ANSWER, rx).await else {
            return Vec::new();
        };
        stats.iter().map(stream_json).collect()
    }
}

impl RelayGlue {
    /// A session's browser legs as JSON for `/api/calls` (empty without any, or when the
    /// thread did not answer in time).
    pub(crate) async fn browsers_json(&self, session: u64) -> Vec<serde_json::Value> {
        let (tx, rx) = oneshot::channel();
        self.relay.submit(MediaCommand::BrowserStats {
            session: SessionId(session),
            reply: BrowserStatsReply(Box::new(move |s| {
                let _ = tx.send(s);
            })),
        });
        let Ok(Ok(legs)) = tokio::time::timeout(STATS_ANSWER, rx).await else {
            return Vec::new();
        };
        legs.iter().map(browser_json).collect()
    }
}

impl RelayGlue {
    /// A room's media state (by participant session) from its forwarding thread; `None`
    /// when the room has nobody there or the thread did not answer in time.
    pub(crate) async fn room_state(&self, room: u32) -> Option<crate::media::RoomState> {
        let (tx, rx) = oneshot::channel();
        self.relay.submit(MediaCommand::RoomStats {
            room: crate::media::RoomId(room),
            reply: crate::media::RoomStatsReply(Box::new(move |s| {
                let _ = tx.send(s);
            })),
        });
        tokio::time::timeout(STATS_ANSWER, rx).await.ok()?.ok()?
    }
}

fn browser_json(b: &BrowserStats) -> serde_json::Value {
    let s = &b.stats;
    let round = |f: f32| (f64::from(f) * 10000.0).round() / 10000.0;
    serde_json::json!({
        "side": match b.side { Side::A => "caller", Side::B => "callee" },
        "transport": "webrtc",
        "address": b.local.to_string(),
        "dtls": format!("{:?}", s.dtls).to_ascii_lowercase(),
        "srtp_profile": s.srtp_profile.map(|p| format!("{p:?}")),
        "packets_to_browser": s.rtp_tx_packets,
        "packets_from_browser": s.rtp_rx_packets,
        "loss_to_browser": s.loss_tx.map(round),
        "loss_from_browser": s.loss_rx.map(round),
        "rtt_ms": s.rtt.map(|d| (d.as_secs_f64() * 100_000.0).round() / 100.0),
        "rejected_datagrams": s.wire_rx_rejected,
    })
}

fn stream_json(s: &StreamStats) -> serde_json::Value {
    serde_json::json!({
        "stream": s.stream,
        "direction": match s.direction {
            Direction::AToB => "caller->callee",
            Direction::BToA => "callee->caller",
        },
        "source": s.source.map(|a| a.to_string()),
        "packets": s.packets,
        "bytes": s.bytes,
        "lost": s.lost,
        "jitter_ms": (s.jitter_ms * 100.0).round() / 100.0,
        "dropped_foreign": s.dropped_foreign,
    })
}

/// Forwards the relay's reports (opened, failed, closed with counters, inactive) to the
/// driver until shutdown, and samples the packets/s gauge about every second.
pub(crate) fn watch_events(
    glue: Arc<RelayGlue>,
    tx: mpsc::Sender<Input>,
    shutdown: CancellationToken,
) {
    let spawned = std::thread::Builder::new()
        .name("tambun-relay-events".into())
        .spawn(move || {
            let mut next_sample = Instant::now();
            while !shutdown.is_cancelled() {
                let now = Instant::now();
                if now >= next_sample {
                    glue.sample_rate(now);
                    next_sample = now + Duration::from_millis(500);
                }
                let wait = next_sample.saturating_duration_since(now);
                if let Some(event) = glue.relay.wait_event(wait) {
                    if tx.blocking_send(Input::Media(event)).is_err() {
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the relay event thread");
    }
}
