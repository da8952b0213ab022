//! The switch as a client of its carriers (the central trunk at Diskominfo): outbound
//! registration with digest (refreshed halfway through what the carrier grants, retried with
//! back-off on failure and never given up, again at once when a ping shows the carrier is
//! back), OPTIONS pings with their round-trip time, and each carrier's health, from which
//! calls pick the carriers to try in order (`Trunks::order`). `tambun trunk status` shows
//! [`TrunkView`]s.
//!
//! Sans-IO: requests go out as [`Transmit`]s through its own client transactions, responses
//! come in with [`Trunks::handle_response`], time with [`Trunks::handle_timeout`]. No
//! sockets, no clock, no database (secrets arrive as [`TrunkSecret`]s).

pub mod number;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::dialplan::{Trunk, TrunkRegistration};
use crate::network::Network;
use crate::sip::auth::{answer_challenge, parse_challenge, Algorithm};
use crate::sip::headers::Contact;
use crate::sip::message::{HeaderName, Message};
use crate::sip::transaction::{
    ClientTransactions, Event, Peer, ResponseDisposition, TransactionKey, Transmit, TxMethod,
};
use crate::types::{Now, Transport};

/// Branches of the switch's own requests to carriers start with this (the proxy's are
/// `z9hG4bKtb`).
pub const BRANCH_PREFIX: &str = "z9hG4bKtr";

/// A REGISTER or OPTIONS the carrier has not answered within this long has failed (Timer F's
/// 32 s is too long to notice a dead carrier on a LAN-speed WAN).
const ANSWER_WITHIN: Duration = Duration::from_secs(8);
/// The first retry after a failed registration; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_START: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A carrier that failed a call is tried after the healthy ones for this long.
const CALL_FAILURE_HOLD: Duration = Duration::from_secs(60);
/// Refresh no sooner than this, whatever the carrier grants.
const MIN_REFRESH: Duration = Duration::from_secs(2);

/// A trunk's secret from the store: the HA1s of its password for one username and realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrunkSecret {
    pub name: String,
    pub username: String,
    pub realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub updated_at: i64,
}

/// Where a carrier's registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RegState {
    /// The carrier takes calls without registration.
    NotRequired,
    /// A REGISTER is on its way (first, refresh or retry).
    Registering,
    Registered,
    /// The last attempt failed; the next is scheduled.
    Failed,
}

/// One carrier as `tambun trunk status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TrunkView {
    pub name: String,
    pub target: String,
    pub transport: Transport,
    pub priority: u32,
    pub registration: RegState,
    /// Registered without a break since (Unix ms).
    pub registered_since_ms: Option<u64>,
    /// Seconds until the registration the carrier granted runs out.
    pub expires_in: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<u64>,
    /// The last OPTIONS round trip, when pings are on and the last one was answered.
    pub ping_rtt_ms: Option<f64>,
    /// Whether calls try this carrier with the healthy ones (see [`Trunks::order`]).
    pub healthy: bool,
    pub calls_in_progress: u32,
}

#[derive(Debug)]
struct Carrier {
    cfg: Trunk,
    addr: Option<SocketAddr>,
    reg: RegState,
    reg_call_id: String,
    reg_tag: String,
    reg_cseq: u32,
    /// Branch of the REGISTER in flight and whether it already carries credentials.
    reg_pending: Option<(String, bool)>,
    reg_sent_at: Option<Instant>,
    next_register: Option<Instant>,
    backoff: Duration,
    registered_since: Option<u64>,
    registered_until: Option<Instant>,
    /// Nonce count per nonce we answered (qop=auth).
    nc: u32,
    ping_pending: Option<(String, Instant)>,
    next_ping: Option<Instant>,
    ping_rtt: Option<Duration>,
    /// Pings in a row that got no answer.
    ping_failures: u32,
    failed_call_at: Option<Instant>,
    last_error: Option<(String, u64)>,
    calls: u32,
    /// Credentials for the next REGISTER (a header line), from the last challenge.
    pending_auth: Option<String>,
    /// Configured before the switch saw any time: start at the first timeout.
    start_pending: bool,
    /// The client transactions in flight (REGISTER, OPTIONS), to remove when given up.
    keys: Vec<TransactionKey>,
    /// A connection (TCP, TLS) has been asked for and not opened yet.
    connecting: bool,
    /// A stream carrier keeps a connection open: open it again at this time (after a
    /// failure, with back-off; after a close, at once).
    next_connect: Option<Instant>,
    /// The wait before the next connection attempt after a failure (doubles to the max).
    connect_backoff: Duration,
}

impl Carrier {
    fn new(cfg: Trunk, now: Option<Instant>, seq: u64) -> Carrier {
        let addr = cfg
            .host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, cfg.port));
        let reg = if cfg.register.is_some() {
            RegState::Registering
        } else {
            RegState::NotRequired
        };
        let start = cfg.register.as_ref().and(now);
        let ping = (cfg.ping_secs > 0).then_some(now).flatten();
        let connect = matches!(cfg.transport, Transport::Tcp | Transport::Tls)
            .then_some(now)
            .flatten();
        Carrier {
            reg_call_id: format!("tambun-trunk-{}-{seq:x}", cfg.name),
            reg_tag: format!("tr{seq:x}"),
            cfg,
            addr,
            reg,
            reg_cseq: 0,
            reg_pending: None,
            reg_sent_at: None,
            next_register: start,
            backoff: BACKOFF_START,
            registered_since: None,
            registered_until: None,
            nc: 0,
            ping_pending: None,
            next_ping: ping,
            ping_rtt: None,
            ping_failures: 0,
            failed_call_at: None,
            last_error: None,
            calls: 0,
            pending_auth: None,
            start_pending: false,
            keys: Vec::new(),
            connecting: false,
            next_connect: connect,
            connect_backoff: BACKOFF_START,
        }
    }

    fn healthy(&self, now: Instant) -> bool {
        let registered = matches!(self.reg, RegState::NotRequired | RegState::Registered);
        let answering = self.ping_failures == 0;
        let no_recent_failure = self
            .failed_call_at
            .is_none_or(|t| now.saturating_duration_since(t) >= CALL_FAILURE_HOLD);
        self.addr.is_some() && registered && answering && no_recent_failure
    }

    fn peer(&self, net: &Network) -> Option<Peer> {
        let addr = self.addr?;
        match self.cfg.transport {
            Transport::Udp => Some(net.udp_peer(addr)),
            t => Some(Peer {
                addr,
                transport: t,
                conn: net.conn_to(addr, t),
            }),
        }
    }

    fn fail(&mut self, why: String, now: Now) {
        tracing::warn!(trunk = %self.cfg.name, "{why}");
        self.last_error = Some((why, now.unix_ms));
    }
}

/// The carriers and the switch's own requests to them.
pub struct Trunks {
    carriers: Vec<Carrier>,
    client: ClientTransactions,
    secrets: HashMap<String, TrunkSecret>,
    seq: u64,
    /// Random per process: keeps our Call-IDs and tags unique across restarts.
    instance: String,
    last_now: Option<Instant>,
    transmits: Vec<Transmit>,
    /// Connections to open (stream transports).
    connects: Vec<Connect>,
}

/// A connection the driver must open to a carrier (TCP, or TLS checked as `tls` says); the
/// switch hears back `ConnOpened`, or [`Trunks::handle_connect_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub addr: SocketAddr,
    pub transport: Transport,
    pub tls: Option<crate::dialplan::TrunkTls>,
}

impl Trunks {
    /// No carriers yet; `instance` (random, from the driver) makes Call-IDs unique.
    pub fn new(instance: String) -> Trunks {
        Trunks {
            carriers: Vec::new(),
            client: ClientTransactions::default(),
            secrets: HashMap::new(),
            seq: 0,
            instance,
            last_now: None,
            transmits: Vec::new(),
            connects: Vec::new(),
        }
    }

    /// Asks for a connection to carrier `i` (TCP or TLS), once until it opens or fails.
    fn connect(&mut self, i: usize) -> bool {
        let c = &mut self.carriers[i];
        let Some(addr) = c.addr else { return false };
        if !matches!(c.cfg.transport, Transport::Tcp | Transport::Tls) {
            return false;
        }
        if !c.connecting {
            c.connecting = true;
            tracing::debug!(trunk = %c.cfg.name, %addr, transport = %c.cfg.transport, "connecting to the carrier");
            self.connects.push(Connect {
                addr,
                transport: c.cfg.transport,
                tls: c.cfg.tls.clone(),
            });
        }
        true
    }

    /// The connection asked for to `addr` could not be opened (`why`: refused, timed out,
    /// the carrier's certificate refused …): the carrier's registration has failed and is
    /// retried with back-off; the next call or ping asks again.
    pub fn handle_connect_failed(
        &mut self,
        addr: SocketAddr,
        transport: Transport,
        why: &str,
        now: Now,
    ) {
        self.last_now = Some(now.instant);
        for i in 0..self.carriers.len() {
            let c = &mut self.carriers[i];
            if c.addr != Some(addr) || c.cfg.transport != transport || !c.connecting {
                continue;
            }
            c.connecting = false;
            c.next_connect = Some(now.instant + c.connect_backoff);
            c.connect_backoff = (c.connect_backoff * 2).min(BACKOFF_MAX);
            c.fail(
                format!(
                    "no {} connection to the carrier: {why}",
                    transport.via_token()
                ),
                now,
            );
            if c.cfg.register.is_some() {
                c.reg = RegState::Failed;
                self.schedule_retry(i, now);
            }
        }
    }

    /// A connection was opened (by us or by the peer): a carrier waiting for it registers
    /// and pings now.
    pub fn handle_connected(&mut self, remote: SocketAddr, transport: Transport) {
        let now = self.last_now;
        for c in &mut self.carriers {
            if c.addr == Some(remote) && c.cfg.transport == transport && c.connecting {
                c.connecting = false;
                c.next_connect = None;
                c.connect_backoff = BACKOFF_START;
                if c.cfg.register.is_some() && c.reg_pending.is_none() {
                    c.next_register = now;
                }
                if c.cfg.ping_secs > 0 && c.ping_pending.is_none() {
                    c.next_ping = now;
                }
            }
        }
    }

    /// A connection closed: a carrier it led to connects again at the next timeout (and,
    /// if that fails, with back-off).
    pub fn handle_closed(&mut self, remote: SocketAddr, transport: Transport) {
        for c in &mut self.carriers {
            if c.addr == Some(remote) && c.cfg.transport == transport && !c.connecting {
                tracing::info!(trunk = %c.cfg.name, %remote, "the connection to the carrier closed: opening it again");
                c.next_connect = self.last_now;
            }
        }
    }

    /// A call found no connection to carrier `name`: open one for the next calls.
    pub fn want_connection(&mut self, name: &str) {
        if let Some(i) = self.carriers.iter().position(|c| c.cfg.name == name) {
            self.connect(i);
        }
    }

    /// Connections the driver must open.
    pub fn poll_connect(&mut self) -> Option<Connect> {
        self.connects.pop()
    }

    /// The carriers of the (new) dialplan, in priority order. A carrier whose name, target
    /// and registration are unchanged keeps its state; others start afresh (registering at
    /// the next timeout).
    pub fn handle_config(&mut self, trunks: &[Trunk], now: Option<Instant>) {
        if now.is_some() {
            self.last_now = now;
        }
        let mut old: Vec<Carrier> = std::mem::take(&mut self.carriers);
        for cfg in trunks {
            let same = old.iter().position(|c| {
                c.cfg.name == cfg.name
                    && c.cfg.host == cfg.host
                    && c.cfg.port == cfg.port
                    && c.cfg.transport == cfg.transport
                    && c.cfg.register == cfg.register
                    && c.cfg.tls == cfg.tls
            });
            let carrier = match same {
                Some(i) => {
                    let mut c = old.swap_remove(i);
                    if c.cfg.ping_secs != cfg.ping_secs {
                        c.next_ping = (cfg.ping_secs > 0).then_some(self.last_now).flatten();
                    }
                    c.cfg = cfg.clone();
                    c
                }
                None => {
                    self.seq += 1;
                    let seq = self.seq;
                    let mut c = Carrier::new(cfg.clone(), self.last_now, seq);
                    c.reg_call_id = format!("{}-{}", c.reg_call_id, self.instance);
                    if c.addr.is_none() {
                        c.last_error = Some((
                            format!("target host '{}' is not an IP address", cfg.host),
                            0,
                        ));
                    }
                    c
                }
            };
            self.carriers.push(carrier);
        }
        if self.last_now.is_none() {
            // Started before any time was seen: begin at the first timeout.
            for c in &mut self.carriers {
                c.pending_start();
            }
        }
    }

    /// The trunk secrets from the store (all of them, at start and after each change).
    pub fn handle_secrets(&mut self, secrets: Vec<TrunkSecret>) {
        let changed: Vec<String> = secrets
            .iter()
            .filter(|s| self.secrets.get(&s.name) != Some(s))
            .map(|s| s.name.clone())
            .collect();
        self.secrets = secrets.into_iter().map(|s| (s.name.clone(), s)).collect();
        // A carrier that failed for want of a password tries again at once with the new one.
        for c in &mut self.carriers {
            if changed.contains(&c.cfg.name) && c.reg == RegState::Failed {
                c.next_register = self.last_now;
                c.backoff = BACKOFF_START;
            }
        }
    }

    /// Is this response to one of our own requests? (Its top Via branch is ours.)
    pub fn owns(msg: &Message) -> bool {
        msg.top_via()
            .ok()
            .and_then(|v| v.branch().map(|b| b.starts_with(BRANCH_PREFIX)))
            .unwrap_or(false)
    }

    /// A response whose branch is ours ([`Trunks::owns`]), from `source`.
    pub fn handle_response(&mut self, msg: &Message, source: SocketAddr, net: &Network, now: Now) {
        self.last_now = Some(now.instant);
        let Ok(via) = msg.top_via() else { return };
        let Some(branch) = via.branch().map(str::to_owned) else {
            return;
        };
        let Ok(cseq) = msg.cseq() else { return };
        let status = msg.status().unwrap_or(500);
        let method = TxMethod::from_token(cseq.method.as_str());
        let key = TransactionKey::new(branch.clone(), &via.sent_by(), method.clone());
        // Only the carrier we sent it to may answer it.
        let Some(i) = self.carriers.iter().position(|c| {
            c.reg_pending.as_ref().is_some_and(|(b, _)| *b == branch)
                || c.ping_pending.as_ref().is_some_and(|(b, _)| *b == branch)
        }) else {
            return;
        };
        if self.carriers[i].addr.map(|a| a.ip()) != Some(source.ip()) {
            tracing::debug!(%source, "response to a trunk request from another address dropped");
            return;
        }
        match self.client.handle_response(&key, status, now.instant) {
            ResponseDisposition::Forward | ResponseDisposition::ForwardNeedsAck => {}
            _ => return,
        }
        if status < 200 {
            return;
        }
        self.carriers[i].keys.retain(|k| k.branch != branch);
        match method.as_str() {
            "REGISTER" => self.register_answered(i, msg, status, net, now),
            "OPTIONS" => self.ping_answered(i, status, now),
            _ => {}
        }
    }

    fn register_answered(&mut self, i: usize, msg: &Message, status: u16, net: &Network, now: Now) {
        let authorized = self.carriers[i]
            .reg_pending
            .take()
            .is_some_and(|(_, auth)| auth);
        let c = &mut self.carriers[i];
        match status {
            200..=299 => {
                let ours = format!(
                    "sip:{}@",
                    c.cfg.register.as_ref().map_or("", |r| &r.username)
                );
                let asked = c.cfg.register.as_ref().map_or(600, |r| r.expires_secs);
                let granted = msg
                    .values(HeaderName::Contact)
                    .filter_map(|v| Contact::parse(v).ok())
                    .filter(|ct| ct.addr().is_some_and(|a| a.uri.contains(&ours)))
                    .find_map(|ct| ct.expires())
                    .or_else(|| {
                        msg.header(HeaderName::Expires)
                            .and_then(|e| e.trim().parse().ok())
                    })
                    .unwrap_or(asked);
                if granted == 0 {
                    c.reg = RegState::Failed;
                    c.fail("the carrier granted the registration 0 seconds".into(), now);
                    self.schedule_retry(i, now);
                    return;
                }
                let granted = Duration::from_secs(granted.into());
                if c.reg != RegState::Registered || c.registered_since.is_none() {
                    tracing::info!(trunk = %c.cfg.name, secs = granted.as_secs(), "registered with the carrier");
                    c.registered_since = Some(now.unix_ms);
                }
                c.reg = RegState::Registered;
                c.registered_until = Some(now.instant + granted);
                c.next_register = Some(now.instant + (granted / 2).max(MIN_REFRESH));
                c.backoff = BACKOFF_START;
            }
            401 | 407 if !authorized || stale(msg, status) => {
                match self.answer(i, msg, status, now) {
                    Ok(()) => self.send_register(i, net, now),
                    Err(why) => {
                        let c = &mut self.carriers[i];
                        c.reg = RegState::Failed;
                        c.registered_since = None;
                        c.fail(why, now);
                        self.schedule_retry(i, now);
                    }
                }
            }
            423 => {
                // Interval too brief: ask again with what the carrier wants.
                let min = msg
                    .header(HeaderName::MinExpires)
                    .and_then(|v| v.trim().parse::<u32>().ok());
                if let (Some(min), Some(r)) = (min, c.cfg.register.as_mut()) {
                    r.expires_secs = min;
                    self.send_register(i, net, now);
                } else {
                    c.reg = RegState::Failed;
                    c.fail("REGISTER answered 423 without Min-Expires".into(), now);
                    self.schedule_retry(i, now);
                }
            }
            _ => {
                let reason = msg.reason().unwrap_or("").to_owned();
                let why = if matches!(status, 401 | 407) {
                    format!("the carrier refused our credentials ({status} {reason}): check `tambun trunk passwd {}` and the realm", c.cfg.name)
                } else {
                    format!("REGISTER answered {status} {reason}")
                };
                c.reg = RegState::Failed;
                c.registered_since = None;
                c.fail(why, now);
                self.schedule_retry(i, now);
            }
        }
    }

    /// Prepares credentials for the next REGISTER of carrier `i` from a 401/407.
    fn answer(&mut self, i: usize, msg: &Message, status: u16, _now: Now) -> Result<(), String> {
        let c = &self.carriers[i];
        let Some(reg) = c.cfg.register.clone() else {
            return Err("challenged, but the trunk has no [trunk.register]".into());
        };
        let uri = register_uri(&c.cfg, &reg);
        let c = &mut self.carriers[i];
        c.nc += 1;
        let nc = c.nc;
        let line = self.credentials(i, msg, status, "REGISTER", &uri, nc)?;
        self.carriers[i].pending_auth = Some(line);
        Ok(())
    }

    /// The credentials line (`Authorization: …` for a 401, `Proxy-Authorization: …` for a
    /// 407) answering carrier `i`'s challenge `msg` to a `method` request for `uri`, with the
    /// account of its `[trunk.register]` and the HA1 `tambun trunk passwd` stored. `Err`: why
    /// not, in a sentence.
    fn credentials(
        &mut self,
        i: usize,
        msg: &Message,
        status: u16,
        method: &str,
        uri: &str,
        nc: u32,
    ) -> Result<String, String> {
        let c = &self.carriers[i];
        let name = c.cfg.name.clone();
        let Some(reg) = c.cfg.register.clone() else {
            return Err(format!(
                "the carrier asks for credentials on {method}, but the trunk has no [trunk.register] account to answer with"
            ));
        };
        let header = if status == 401 {
            HeaderName::WwwAuthenticate
        } else {
            HeaderName::ProxyAuthenticate
        };
        let mut last_err = String::from("the challenge has no usable Digest");
        // Prefer SHA-256 when offered, else the first MD5.
        let mut best: Option<(crate::sip::auth::Challenge, bool)> = None;
        for h in msg.headers_named(header) {
            match parse_challenge(msg.text(h.value).as_bytes()) {
                Ok((ch, qop)) => {
                    let better = best.as_ref().is_none_or(|(b, _)| {
                        b.algorithm == Algorithm::Md5 && ch.algorithm == Algorithm::Sha256
                    });
                    if better {
                        best = Some((ch, qop));
                    }
                }
                Err(e) => last_err = format!("the carrier's challenge does not parse: {e}"),
            }
        }
        let Some((ch, qop)) = best else {
            return Err(last_err);
        };
        let Some(secret) = self.secrets.get(&name) else {
            return Err(format!(
                "the carrier asks for a password and none is set: run `tambun trunk passwd {name}`"
            ));
        };
        if secret.username != reg.username || secret.realm != reg.realm {
            return Err(format!(
                "the password was set for {}@{}; the trunk now registers as {}@{}: run `tambun trunk passwd {name}` again",
                secret.username, secret.realm, reg.username, reg.realm
            ));
        }
        if ch.realm != reg.realm {
            return Err(format!(
                "the carrier challenges with realm '{}', the trunk is configured for realm '{}'",
                ch.realm, reg.realm
            ));
        }
        let ha1 = match ch.algorithm {
            Algorithm::Md5 => secret.ha1_md5.clone(),
            Algorithm::Sha256 => secret.ha1_sha256.clone(),
        };
        self.seq += 1;
        let cnonce = format!("{:x}{}", self.seq, self.instance);
        let value = answer_challenge(&ch, qop, &reg.username, &ha1, method, uri, &cnonce, nc);
        let hname = if status == 401 {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        Ok(format!("{hname}: {value}"))
    }

    /// The credentials line answering carrier `name`'s challenge (401/407 `msg`) to a
    /// request of a call (INVITE, or one inside its dialog), with the account the carrier is
    /// registered with. `Err`: why not, also kept as the carrier's last error.
    pub fn call_credentials(
        &mut self,
        name: &str,
        msg: &Message,
        status: u16,
        method: &str,
        uri: &str,
        now: Now,
    ) -> Result<String, String> {
        let Some(i) = self.carriers.iter().position(|c| c.cfg.name == name) else {
            return Err(format!("no carrier '{name}'"));
        };
        let r = self.credentials(i, msg, status, method, uri, 1);
        if let Err(why) = &r {
            self.carriers[i].fail(format!("a call was challenged: {why}"), now);
        }
        r
    }

    fn ping_answered(&mut self, i: usize, status: u16, now: Now) {
        let c = &mut self.carriers[i];
        let Some((_, sent)) = c.ping_pending.take() else {
            return;
        };
        if matches!(status, 408 | 503) {
            c.ping_failures += 1;
            c.ping_rtt = None;
            c.fail(format!("OPTIONS answered {status}"), now);
            return;
        }
        c.ping_rtt = Some(now.instant.saturating_duration_since(sent));
        if c.ping_failures > 0 {
            tracing::info!(trunk = %c.cfg.name, "the carrier answers again");
            c.ping_failures = 0;
            // Back: register again now rather than at the end of the back-off.
            if c.reg == RegState::Failed && c.reg_pending.is_none() {
                c.next_register = Some(now.instant);
            }
        }
    }

    fn schedule_retry(&mut self, i: usize, now: Now) {
        let c = &mut self.carriers[i];
        c.reg_pending = None;
        c.pending_auth = None;
        c.next_register = Some(now.instant + c.backoff);
        c.backoff = (c.backoff * 2).min(BACKOFF_MAX);
    }

    /// Timers are due: registrations, refreshes, retries, pings and answers not come.
    pub fn handle_timeout(&mut self, net: &Network, now: Now) {
        self.last_now = Some(now.instant);
        self.client.handle_timeout(now.instant);
        while let Some(t) = self.client.poll_transmit() {
            self.transmits.push(t);
        }
        while let Some(e) = self.client.poll_event() {
            // Timer F before our own deadline only on a reliable transport's failure.
            if let Event::Timeout { key } = e {
                self.no_answer(&key.branch, now);
            }
        }
        for i in 0..self.carriers.len() {
            let c = &mut self.carriers[i];
            if c.start_pending {
                c.start_pending = false;
                if c.cfg.register.is_some() {
                    c.next_register = Some(now.instant);
                }
                if c.cfg.ping_secs > 0 {
                    c.next_ping = Some(now.instant);
                }
                // Calls to a stream carrier need its connection open before they come.
                if matches!(c.cfg.transport, Transport::Tcp | Transport::Tls) {
                    c.next_connect = Some(now.instant);
                }
            }
            if c.next_connect.is_some_and(|t| now.instant >= t) {
                c.next_connect = None;
                if c.peer(net).is_some_and(|p| net.local_of(&p).is_none()) {
                    self.connect(i);
                }
            }
            let c = &mut self.carriers[i];
            if let (Some((b, _)), Some(sent)) = (&c.reg_pending, c.reg_sent_at) {
                if now.instant >= sent + ANSWER_WITHIN {
                    let b = b.clone();
                    self.no_answer(&b, now);
                }
            }
            let c = &self.carriers[i];
            if let Some((b, sent)) = &c.ping_pending {
                if now.instant >= *sent + ANSWER_WITHIN {
                    let b = b.clone();
                    self.no_answer(&b, now);
                }
            }
            let c = &mut self.carriers[i];
            if c.reg == RegState::Registered && c.registered_until.is_some_and(|u| now.instant >= u)
            {
                c.reg = RegState::Failed;
                c.registered_since = None;
                c.fail(
                    "the registration ran out before a refresh succeeded".into(),
                    now,
                );
            }
            if c.reg_pending.is_none() && c.next_register.is_some_and(|t| now.instant >= t) {
                c.next_register = None;
                c.nc = 0;
                c.pending_auth = None;
                self.send_register(i, net, now);
            }
            let c = &mut self.carriers[i];
            if c.ping_pending.is_none() && c.next_ping.is_some_and(|t| now.instant >= t) {
                c.next_ping = Some(now.instant + Duration::from_secs(c.cfg.ping_secs.into()));
                self.send_ping(i, net, now);
            }
        }
    }

    /// A request of ours got no answer in time.
    fn no_answer(&mut self, branch: &str, now: Now) {
        for i in 0..self.carriers.len() {
            let c = &mut self.carriers[i];
            if c.reg_pending.as_ref().is_some_and(|(b, _)| b == branch) {
                self.forget_tx(i, branch);
                let c = &mut self.carriers[i];
                c.reg = RegState::Failed;
                c.registered_since = None;
                c.fail(
                    format!("no answer to REGISTER within {} s", ANSWER_WITHIN.as_secs()),
                    now,
                );
                self.schedule_retry(i, now);
                return;
            }
            if c.ping_pending.as_ref().is_some_and(|(b, _)| b == branch) {
                self.forget_tx(i, branch);
                let c = &mut self.carriers[i];
                c.ping_pending = None;
                c.ping_failures += 1;
                c.ping_rtt = None;
                c.fail(
                    format!("no answer to OPTIONS within {} s", ANSWER_WITHIN.as_secs()),
                    now,
                );
                return;
            }
        }
    }

    /// Removes our client transaction of `branch` (given up, or answered).
    fn forget_tx(&mut self, i: usize, branch: &str) {
        let c = &mut self.carriers[i];
        if let Some(k) = c.keys.iter().position(|k| k.branch == branch) {
            let key = c.keys.swap_remove(k);
            self.client.remove(&key);
        }
    }

    fn send_register(&mut self, i: usize, net: &Network, now: Now) {
        let c = &self.carriers[i];
        let Some(reg) = c.cfg.register.clone() else {
            return;
        };
        let Some(peer) = c.peer(net) else {
            return;
        };
        let Some(local) = net.local_of(&peer) else {
            let transport = c.cfg.transport;
            if self.connect(i) {
                // Registers when the connection opens; tries again if it never does.
                let c = &mut self.carriers[i];
                c.next_register = Some(now.instant + ANSWER_WITHIN);
                if c.reg != RegState::Registered {
                    c.reg = RegState::Registering;
                }
                return;
            }
            let why = format!(
                "no connection to the carrier over {} (the carrier's address is not known yet)",
                transport.via_token()
            );
            let c = &mut self.carriers[i];
            c.reg = RegState::Failed;
            c.fail(why, now);
            self.schedule_retry(i, now);
            return;
        };
        self.seq += 1;
        let branch = format!("{BRANCH_PREFIX}{:x}{}", self.seq, self.instance);
        let c = &mut self.carriers[i];
        c.reg_cseq += 1;
        if c.reg != RegState::Registered {
            c.reg = RegState::Registering;
        }
        let uri = register_uri(&c.cfg, &reg);
        let aor = format!("sip:{}@{}", reg.username, reg.domain);
        let auth = c.pending_auth.take();
        let mut req = format!(
            "REGISTER {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{aor}>;tag={}\r\n\
             To: <{aor}>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n\
             Contact: <sip:{}@{}{}>\r\n\
             Expires: {}\r\n\
             User-Agent: Tambun/{}\r\n",
            peer.transport.via_token(),
            c.reg_tag,
            c.reg_call_id,
            c.reg_cseq,
            reg.username,
            host_port(local),
            match peer.transport {
                Transport::Tcp => ";transport=tcp",
                Transport::Tls => ";transport=tls",
                _ => "",
            },
            reg.expires_secs,
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(a) = &auth {
            req.push_str(a);
            req.push_str("\r\n");
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        c.reg_pending = Some((branch.clone(), auth.is_some()));
        c.reg_sent_at = Some(now.instant);
        let key = TransactionKey::new(
            branch,
            &local.to_string(),
            TxMethod::Other("REGISTER".into()),
        );
        c.keys.push(key.clone());
        let t = self.client.start(key, Bytes::from(req), peer, now.instant);
        self.transmits.push(t);
    }

    fn send_ping(&mut self, i: usize, net: &Network, now: Now) {
        let c = &self.carriers[i];
        let Some(peer) = c.peer(net) else {
            return;
        };
        let Some(local) = net.local_of(&peer) else {
            self.connect(i);
            return;
        };
        self.seq += 1;
        let n = self.seq;
        let branch = format!("{BRANCH_PREFIX}{n:x}{}", self.instance);
        let target = host_port(SocketAddr::new(peer.addr.ip(), peer.addr.port()));
        let req = format!(
            "OPTIONS sip:{target} SIP/2.0\r\n\
             Via: SIP/2.0/{} {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:tambun@{}>;tag=trp{n:x}\r\n\
             To: <sip:{target}>\r\n\
             Call-ID: tambun-ping-{n:x}-{}\r\n\
             CSeq: 1 OPTIONS\r\n\
             User-Agent: Tambun/{}\r\n\
             Content-Length: 0\r\n\r\n",
            peer.transport.via_token(),
            host_port(local),
            self.instance,
            env!("CARGO_PKG_VERSION"),
        );
        let c = &mut self.carriers[i];
        c.ping_pending = Some((branch.clone(), now.instant));
        let key = TransactionKey::new(
            branch,
            &local.to_string(),
            TxMethod::Other("OPTIONS".into()),
        );
        c.keys.push(key.clone());
        let t = self.client.start(key, Bytes::from(req), peer, now.instant);
        self.transmits.push(t);
    }

    /// What to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.transmits.is_empty() {
            return None;
        }
        Some(self.transmits.remove(0))
    }

    /// When [`Trunks::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.client.poll_timeout();
        let mut at = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for c in &self.carriers {
            if c.start_pending {
                at(self.last_now);
            }
            at(c.next_register.filter(|_| c.reg_pending.is_none()));
            at(c.reg_sent_at
                .filter(|_| c.reg_pending.is_some())
                .map(|t| t + ANSWER_WITHIN));
            at(c.ping_pending.as_ref().map(|(_, t)| *t + ANSWER_WITHIN));
            at(c.next_ping.filter(|_| c.ping_pending.is_none()));
            at(c.registered_until.filter(|_| c.reg == RegState::Registered));
            at(c.next_connect.filter(|_| !c.connecting));
        }
        next
    }

    /// The carriers to try for a call, best first: the healthy ones by priority, then the
    /// others by priority (a carrier whose pings fail may still take calls; it is tried last).
    pub fn order(&self, now: Instant) -> Vec<&Trunk> {
        let (mut good, bad): (Vec<&Carrier>, Vec<&Carrier>) = self
            .carriers
            .iter()
            .filter(|c| c.addr.is_some())
            .partition(|c| c.healthy(now));
        good.extend(bad);
        good.into_iter().map(|c| &c.cfg).collect()
    }

    /// The carrier whose target address (IP and port: carriers send from the address they
    /// take calls on) this is: inbound calls come only from them.
    pub fn carrier_at(&self, source: SocketAddr) -> Option<&Trunk> {
        let source = SocketAddr::new(source.ip().to_canonical(), source.port());
        self.carriers
            .iter()
            .find(|c| c.addr == Some(source))
            .or_else(|| {
                self.carriers
                    .iter()
                    .find(|c| c.cfg.inbound_from.iter().any(|n| n.contains(source.ip())))
            })
            .map(|c| &c.cfg)
    }

    /// A call to carrier `name` failed with no answer, 408 or 5xx: it goes after the
    /// healthy carriers for a while.
    pub fn handle_call_failed(&mut self, name: &str, why: String, now: Now) {
        if let Some(c) = self.carriers.iter_mut().find(|c| c.cfg.name == name) {
            c.failed_call_at = Some(now.instant);
            c.fail(why, now);
        }
    }

    /// Calls in progress through carrier `name` (+1 when one is answered, −1 when it ends).
    pub fn handle_call_count(&mut self, name: &str, delta: i32) {
        if let Some(c) = self.carriers.iter_mut().find(|c| c.cfg.name == name) {
            c.calls = c.calls.saturating_add_signed(delta);
        }
    }

    /// Every carrier as `tambun trunk status` shows it.
    pub fn views(&self, now: Instant) -> Vec<TrunkView> {
        self.carriers
            .iter()
            .map(|c| TrunkView {
                name: c.cfg.name.clone(),
                target: match c.cfg.host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(_)) => format!("[{}]:{}", c.cfg.host, c.cfg.port),
                    _ => format!("{}:{}", c.cfg.host, c.cfg.port),
                },
                transport: c.cfg.transport,
                priority: c.cfg.priority,
                registration: c.reg,
                registered_since_ms: c.registered_since.filter(|_| c.reg == RegState::Registered),
                expires_in: c
                    .registered_until
                    .filter(|_| c.reg == RegState::Registered)
                    .map(|u| u.saturating_duration_since(now).as_secs()),
                last_error: c.last_error.as_ref().map(|e| e.0.clone()),
                last_error_at_ms: c.last_error.as_ref().map(|e| e.1).filter(|&t| t > 0),
                ping_rtt_ms: c.ping_rtt.map(|d| d.as_secs_f64() * 1000.0),
                healthy: c.healthy(now),
                calls_in_progress: c.calls,
            })
            .collect()
    }
}

impl Carrier {
    fn pending_start(&mut self) {
        self.start_pending = true;
    }
}

/// A 401/407 that says the nonce went stale: answer it again even after credentials.
fn stale(msg: &Message, status: u16) -> bool {
    let header = if status == 401 {
        HeaderName::WwwAuthenticate
    } else {
        HeaderName::ProxyAuthenticate
    };
    msg.headers_named(header)
        .filter_map(|h| parse_challenge(msg.text(h.value).as_bytes()).ok())
        .any(|(c, _)| c.stale)
}

/// The Request-URI of our REGISTER: the registration domain, with the target's port when the
/// domain is the target's host.
fn register_uri(cfg: &Trunk, reg: &TrunkRegistration) -> String {
    if reg.domain == cfg.host {
        match cfg.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("sip:[{}]:{}", cfg.host, cfg.port),
            _ => format!("sip:{}:{}", cfg.host, cfg.port),
        }
    } else {
        format!("sip:{}", reg.domain)
    }
}

fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
        SocketAddr::V4(v4) => v4.to_string(),
    }
}

#[cfg(test)]
mod tests;
