//! Prometheus text exposition (format 0.0.4) for `GET /metrics` on the admin API.
//!
//! Owns only the rendering: [`Exposition`] writes metric families (`# HELP`, `# TYPE`, then the
//! samples with escaped label values). What is counted lives where it happens (the switch's
//! [`crate::switch::Stats`], the relay's per-shard counters); the runtime gathers a snapshot
//! and renders it here. No I/O, no clock, no locks.

use std::collections::HashSet;
use std::fmt::Write;

use crate::cdr::Disposition;
use crate::media::RelayTotals;
use crate::switch::SwitchMetrics;

/// What `/metrics` shows of the relay.
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayMetrics {
    pub totals: RelayTotals,
    /// Forwarded packets per second, over the last second or so.
    pub forwarded_per_second: f64,
    pub sessions: u64,
    pub ports_in_use: u64,
}

/// What `/metrics` shows of the TCP/TLS connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnMetrics {
    pub tcp_open: u64,
    pub tls_open: u64,
    pub ws_open: u64,
    pub wss_open: u64,
    pub accepted: u64,
    pub refused_per_source: u64,
    pub refused_total: u64,
    pub closed_idle: u64,
    pub tls_handshake_failures: u64,
}

/// What `/metrics` shows of a conference room that has participants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomMetrics {
    pub room: String,
    pub participants: u64,
    /// Participants talking now (the relay's talker detection).
    pub talkers: u64,
    /// Streams mixed in the room's last tick.
    pub mixed: u64,
    /// Muted by the operator, a moderator or themselves.
    pub muted: u64,
    pub locked: bool,
    /// Cameras reaching the room's SFU.
    pub video_publishers: u64,
    /// Video slots showing someone.
    pub video_subscriptions: u64,
    /// Video packets the SFU sent since the room began (`rate()` gives packets/s).
    pub video_forwarded: u64,
}

/// Everything a scrape shows.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub switch: SwitchMetrics,
    pub connections: ConnMetrics,
    /// `None` when media anchoring is off.
    pub relay: Option<RelayMetrics>,
    /// Unix time the process started, in seconds.
    pub started_unix: f64,
    /// The conference rooms that have participants, by number.
    pub rooms: Vec<RoomMetrics>,
}

/// The `/metrics` document of a snapshot.
pub fn render(s: &Snapshot) -> String {
    use Kind::{Counter, Gauge};
    let mut e = Exposition::new();
    let sw = &s.switch;
    e.single(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.",
        Gauge,
        s.started_unix,
    );

    e.family(
        "tambun_registered_extensions",
        "Extensions with at least one live registration, by OPD (opd=\"\" for numbers outside every OPD).",
        Gauge,
    );
    for (opd, exts, _) in &sw.registrations_by_opd {
        e.sample(&[("opd", opd.as_str())], *exts as f64);
    }
    e.sample(&[("opd", "")], sw.registrations_other.0 as f64);
    e.family(
        "tambun_registration_bindings",
        "Live registration bindings (contacts), by OPD.",
        Gauge,
    );
    for (opd, _, bindings) in &sw.registrations_by_opd {
        e.sample(&[("opd", opd.as_str())], *bindings as f64);
    }
    e.sample(&[("opd", "")], sw.registrations_other.1 as f64);

    e.family("tambun_calls_active", "Calls in progress, by state.", Gauge)
        .sample(
            &[("state", "ringing")],
            (sw.calls_active - sw.calls_answered) as f64,
        )
        .sample(&[("state", "answered")], sw.calls_answered as f64);
    e.single(
        "tambun_trunk_calls_active",
        "Calls in progress through the central trunk (emergency calls included).",
        Gauge,
        sw.toll.active as f64,
    );
    e.single(
        "tambun_trunk_calls_total",
        "Calls let through to the central trunk (emergency calls included).",
        Counter,
        sw.toll.admitted as f64,
    );
    e.single(
        "tambun_trunk_emergency_calls_total",
        "Emergency calls let through to the trunk (never limited).",
        Counter,
        sw.toll.emergency as f64,
    );
    e.family(
        "tambun_trunk_blocked_total",
        "Calls to outside numbers refused by the toll-fraud guard, by rule and the caller's OPD.",
        Counter,
    );
    for ((rule, opd), n) in &sw.toll.blocked {
        let opd = opd.as_ref().map_or("", |o| o.as_str());
        e.sample(&[("rule", rule), ("opd", opd)], *n as f64);
    }
    budgets(&mut e, sw);
    e.family(
        "tambun_calls_total",
        "Calls ended since the start, by disposition (as in the call records).",
        Counter,
    );
    for (d, n) in Disposition::ALL.iter().zip(sw.stats.calls_by_disposition) {
        e.sample(&[("disposition", d.as_str())], n as f64);
    }
    e.single(
        "tambun_auth_failures_total",
        "Failed digest authentications (REGISTER and calls; unknown extensions count like wrong passwords).",
        Counter,
        sw.guard.auth_failures as f64,
    );
    e.single(
        "tambun_dialogs_refused_total",
        "In-dialog requests and CANCELs refused (481) because no dialog the switch set up has them, or they came from outside it.",
        Counter,
        sw.guard.dialogs_refused as f64,
    );
    let g = &sw.guard;
    e.single(
        "tambun_bans_active",
        "Source addresses banned now (by the switch or `tambun ban add`).",
        Gauge,
        sw.bans_active as f64,
    );
    e.single(
        "tambun_bans_added_total",
        "Bans the switch added (failed authentications, forged dialogs, flood, scanner).",
        Counter,
        g.bans_added as f64,
    );
    e.family(
        "tambun_requests_dropped_total",
        "Messages dropped without an answer, by reason.",
        Counter,
    )
    .sample(&[("reason", "banned")], g.dropped_banned as f64)
    .sample(&[("reason", "scanner")], g.dropped_scanner as f64)
    .sample(&[("reason", "rate-limited")], g.dropped_rate_limited as f64);
    e.single(
        "tambun_overload_rejected_total",
        "New INVITE/REGISTER answered 503 (Retry-After) because the switch was saturated.",
        Counter,
        g.overload_rejected as f64,
    );
    e.single(
        "tambun_sip_messages_received_total",
        "SIP messages received (datagrams and stream messages).",
        Counter,
        sw.stats.received as f64,
    );
    e.single(
        "tambun_sip_parse_errors_total",
        "SIP messages that failed to parse (answered 400 or dropped).",
        Counter,
        sw.stats.parse_errors as f64,
    );
    e.single(
        "tambun_sip_retransmissions_absorbed_total",
        "Retransmitted requests answered from their transaction.",
        Counter,
        sw.stats.retransmissions_absorbed as f64,
    );
    e.single(
        "tambun_sip_transactions",
        "SIP transactions held (server and client).",
        Gauge,
        sw.transactions as f64,
    );

    let c = &s.connections;
    e.family(
        "tambun_connections_open",
        "Open SIP stream connections, by transport (TLS includes handshaking ones).",
        Gauge,
    )
    .sample(&[("transport", "tcp")], c.tcp_open as f64)
    .sample(&[("transport", "tls")], c.tls_open as f64)
    .sample(&[("transport", "ws")], c.ws_open as f64)
    .sample(&[("transport", "wss")], c.wss_open as f64);
    e.single(
        "tambun_connections_accepted_total",
        "TCP and TLS connections accepted.",
        Counter,
        c.accepted as f64,
    );
    e.family(
        "tambun_connections_refused_total",
        "Connections closed at accept, by the limit they hit.",
        Counter,
    )
    .sample(&[("limit", "per-source")], c.refused_per_source as f64)
    .sample(&[("limit", "total")], c.refused_total as f64);
    e.single(
        "tambun_connections_closed_idle_total",
        "Connections closed for sending nothing (no first message, or idle).",
        Counter,
        c.closed_idle as f64,
    );
    e.single(
        "tambun_tls_handshake_failures_total",
        "TLS handshakes that failed or timed out.",
        Counter,
        c.tls_handshake_failures as f64,
    );

    if let Some(r) = &s.relay {
        let t = &r.totals;
        e.single(
            "tambun_relay_packets_received_total",
            "Datagrams read from relay ports.",
            Counter,
            t.received as f64,
        );
        e.single(
            "tambun_relay_packets_forwarded_total",
            "Datagrams forwarded by the relay.",
            Counter,
            t.forwarded as f64,
        );
        e.single(
            "tambun_relay_bytes_forwarded_total",
            "Bytes of the datagrams forwarded by the relay.",
            Counter,
            t.forwarded_bytes as f64,
        );
        e.family(
            "tambun_relay_packets_dropped_total",
            "Datagrams the relay did not forward, by reason.",
            Counter,
        )
        .sample(&[("reason", "foreign-source")], t.dropped_foreign as f64)
        .sample(
            &[("reason", "no-destination")],
            t.dropped_no_destination as f64,
        )
        .sample(&[("reason", "send-failed")], t.send_failures as f64);
        e.single(
            "tambun_webrtc_legs",
            "Browser legs (ICE-lite + DTLS-SRTP) open in the relay.",
            Gauge,
            t.webrtc_legs as f64,
        );
        e.family(
            "tambun_webrtc_dtls_total",
            "Browser legs whose DTLS handshake finished, by outcome.",
            Counter,
        )
        .sample(&[("outcome", "connected")], t.dtls_connected as f64)
        .sample(&[("outcome", "failed")], t.dtls_failed as f64);
        e.single(
            "tambun_webrtc_datagrams_rejected_total",
            "Datagrams at browser legs that were not STUN, DTLS or SRTP, or were refused.",
            Counter,
            t.webrtc_rejected as f64,
        );
        e.single(
            "tambun_relay_packets_per_second",
            "Datagrams forwarded per second, over the last second.",
            Gauge,
            r.forwarded_per_second,
        );
        e.single(
            "tambun_relay_sessions",
            "Relay sessions open (one per anchored call).",
            Gauge,
            r.sessions as f64,
        );
        e.single(
            "tambun_relay_ports_in_use",
            "Relay ports bound.",
            Gauge,
            r.ports_in_use as f64,
        );
    }
    rooms(&mut e, s);
    trunks(&mut e, s);
    e.finish()
}

/// A gauge of each carrier: name, help, value (`None`: no sample).
type TrunkGauge = (
    &'static str,
    &'static str,
    fn(&crate::trunk::TrunkView) -> Option<f64>,
);

/// The carriers of the central trunk, one sample each per gauge.
fn trunks(e: &mut Exposition, s: &Snapshot) {
    use crate::trunk::RegState;
    let per_trunk: [TrunkGauge; 4] = [
        (
            "tambun_trunk_registered",
            "1 when the carrier's registration is in force (carriers that need none: no sample).",
            |t| match t.registration {
                RegState::NotRequired => None,
                RegState::Registered => Some(1.0),
                _ => Some(0.0),
            },
        ),
        (
            "tambun_trunk_healthy",
            "1 when calls try the carrier with the healthy ones (registered, answering pings, no failed call in the last minute).",
            |t| Some(f64::from(u8::from(t.healthy))),
        ),
        (
            "tambun_trunk_ping_rtt_seconds",
            "Round trip of the last OPTIONS ping the carrier answered.",
            |t| t.ping_rtt_ms.map(|ms| ms / 1000.0),
        ),
        (
            "tambun_trunk_carrier_calls",
            "Answered calls in progress through the carrier.",
            |t| Some(f64::from(t.calls_in_progress)),
        ),
    ];
    for (name, help, value) in per_trunk {
        e.family(name, help, Kind::Gauge);
        for t in &s.switch.trunks {
            if let Some(v) = value(t) {
                e.sample(&[("trunk", t.name.as_str())], v);
            }
        }
    }
}

/// The monthly budgets: limit, use and ratio of each OPD that has one, and the refusals.
fn budgets(e: &mut Exposition, sw: &SwitchMetrics) {
    use Kind::{Counter, Gauge};
    e.family(
        "tambun_budget_limit",
        "Monthly budget of each OPD that has one, in its unit (minutes or rupiah).",
        Gauge,
    );
    for b in &sw.budgets {
        let labels = [("opd", b.opd.as_str()), ("unit", b.unit.as_str())];
        e.sample(&labels, b.limit as f64);
    }
    e.family(
        "tambun_budget_used",
        "What the OPD's answered outside calls used of its budget this month (WIB), in its unit.",
        Gauge,
    );
    for b in &sw.budgets {
        let labels = [("opd", b.opd.as_str()), ("unit", b.unit.as_str())];
        e.sample(&labels, b.used as f64);
    }
    e.family(
        "tambun_budget_used_ratio",
        "Used over limit of the OPD's monthly budget (0.8: warning, 1: outside calls refused).",
        Gauge,
    );
    for b in &sw.budgets {
        e.sample(&[("opd", b.opd.as_str())], b.ratio);
    }
    e.family(
        "tambun_budget_refused_total",
        "Outside calls refused because the OPD's (or the extension's) monthly budget was used up.",
        Counter,
    );
    for (opd, n) in &sw.budget_refused {
        e.sample(&[("opd", opd.as_str())], *n as f64);
    }
}

/// A gauge of each room: name, help, value.
type RoomGauge = (&'static str, &'static str, fn(&RoomMetrics) -> f64);

/// The conference rooms: joins and refusals, and each room that has participants.
fn rooms(e: &mut Exposition, s: &Snapshot) {
    use Kind::{Counter, Gauge};
    let c = &s.switch.rooms;
    e.single(
        "tambun_room_joins_total",
        "Participants the switch let into a conference room.",
        Counter,
        c.joined as f64,
    );
    e.family(
        "tambun_room_refusals_total",
        "Calls to a conference room refused or ended by the switch, by reason (full: 486, locked: 403, codec: 488 without G.711, media: no relay port, pin: three wrong PINs, kicked: removed by the operator, no-media: nothing received for the media inactivity time).",
        Counter,
    );
    for (reason, n) in [
        ("full", c.refused_full),
        ("locked", c.refused_locked),
        ("codec", c.refused_codec),
        ("media", c.refused_media),
        ("pin", c.pin_failures),
        ("kicked", c.kicked),
        ("no-media", c.media_timeouts),
    ] {
        e.sample(&[("reason", reason)], n as f64);
    }
    e.single(
        "tambun_rooms_active",
        "Conference rooms with participants.",
        Gauge,
        s.rooms.len() as f64,
    );
    let per_room: [RoomGauge; 5] = [
        (
            "tambun_room_participants",
            "Participants in the room.",
            |r| r.participants as f64,
        ),
        ("tambun_room_talkers", "Participants talking now.", |r| {
            r.talkers as f64
        }),
        (
            "tambun_room_mixed_streams",
            "Streams mixed in the room's last 20 ms.",
            |r| r.mixed as f64,
        ),
        (
            "tambun_room_muted",
            "Participants muted (by the operator, a moderator or themselves).",
            |r| r.muted as f64,
        ),
        (
            "tambun_room_locked",
            "1 when the room is locked (only moderators may join).",
            |r| f64::from(u8::from(r.locked)),
        ),
    ];
    let video: [(RoomGauge, Kind); 3] = [
        (
            (
                "tambun_room_video_publishers",
                "Cameras the room's SFU receives.",
                |r| r.video_publishers as f64,
            ),
            Gauge,
        ),
        (
            (
                "tambun_room_video_subscriptions",
                "Video slots showing a camera (last-N by talker).",
                |r| r.video_subscriptions as f64,
            ),
            Gauge,
        ),
        (
            (
                "tambun_room_video_forwarded_packets_total",
                "Video packets the room's SFU forwarded since the room began; rate() is packets/s.",
                |r| r.video_forwarded as f64,
            ),
            Counter,
        ),
    ];
    let all = per_room.into_iter().map(|g| (g, Gauge)).chain(video);
    for ((name, help, value), kind) in all {
        e.family(name, help, kind);
        for r in &s.rooms {
            e.sample(&[("room", r.room.as_str())], value(r));
        }
    }
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until a restart); Prometheus takes `rate()` of it.
    Counter,
    /// A value that goes up and down.
    Gauge,
}

/// A Prometheus text document being written. Each family is declared once with
/// [`Exposition::family`] and its samples follow at once (the format wants them together).
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    declared: HashSet<&'static str>,
    current: Option<&'static str>,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a family. Declaring the same name twice is a bug of the caller.
    pub fn family(&mut self, name: &'static str, help: &str, kind: Kind) -> &mut Self {
        debug_assert!(is_metric_name(name), "bad metric name {name}");
        let fresh = self.declared.insert(name);
        debug_assert!(fresh, "metric family {name} declared twice");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self.current = Some(name);
        self
    }

    /// A sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let name = self
            .current
            .expect("a sample is written after its family is declared");
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &'static str, help: &str, kind: Kind, value: f64) {
        self.family(name, help, kind).sample(&[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::new();
        e.family(
            "tambun_calls_total",
            "Calls ended, by disposition.",
            Kind::Counter,
        )
        .sample(&[("disposition", "answered")], 3.0)
        .sample(&[("disposition", "no-answer")], 0.0);
        e.single(
            "tambun_calls_active",
            "Calls in progress.",
            Kind::Gauge,
            2.0,
        );
        e.family("tambun_odd", "Odd \\ help\nline", Kind::Gauge)
            .sample(&[("a", "q\"b\\c\nd"), ("b", "x")], 0.25);
        assert_eq!(
            e.finish(),
            "# HELP tambun_calls_total Calls ended, by disposition.\n\
             # TYPE tambun_calls_total counter\n\
             tambun_calls_total{disposition=\"answered\"} 3\n\
             tambun_calls_total{disposition=\"no-answer\"} 0\n\
             # HELP tambun_calls_active Calls in progress.\n\
             # TYPE tambun_calls_active gauge\n\
             tambun_calls_active 2\n\
             # HELP tambun_odd Odd \\\\ help\\nline\n\
             # TYPE tambun_odd gauge\n\
             tambun_odd{a=\"q\\\"b\\\\c\\nd\",b=\"x\"} 0.25\n"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(1e20), "100000000000000000000");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(-3.0), "-3");
        assert_eq!(number(0.5), "0.5");
    }
}
