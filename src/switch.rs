//! The switch core: one sans-IO state machine that takes every SIP message the transports
//! receive and decides what to send. It parses and validates the message, runs it through the
//! transaction layer (retransmissions are answered from the transaction), and hands new
//! requests to their handler: REGISTER to the [`Registrar`], OPTIONS for the switch answered
//! here, everything else to the proxy ([`crate::proxy`]); responses go to the proxy's branches.
//!
//! Inputs: `handle_datagram`, `handle_stream_message`, `handle_timeout`, `handle_accounts`,
//! `handle_bans`, `handle_dialplan`, `handle_media`, `handle_conn_opened`/`closed`.
//! Outputs: one queue, [`Switch::poll_output`] ([`Output`]: media commands, transmits, durable
//! writes, closes), in the order the switch decided them (each input's durable writes before
//! the transmits that may acknowledge them; a finished call's record, and all after it, once
//! the relay has reported the call's media counters), and [`Switch::poll_timeout`]. No sockets, no clock, no database:
//! [`crate::runtime`] drives it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::dialplan::Dialplan;
use crate::guard::{Admission, Guard};
use crate::media::{MediaCommand, MediaControl, MediaEvent, SessionId};
use crate::network::Network;
use crate::proxy::records::{CallRecord, Disposition, LiveCall};
use crate::proxy::token::DialogKey;
use crate::proxy::toll::{TollGuard, TollLimits, TollStats};
use crate::proxy::{Ctx, Effect, Proxy};
use crate::registrar::{self, Accounts, Change, Registrar, Source};
use crate::sip::headers::uri_user;
use crate::sip::message::{HeaderName, Limits, Message, Method, ParseError};
use crate::sip::response;
use crate::sip::transaction::{
    Peer, RequestDisposition, ServerTransactions, Timers, TransactionKey, Transmit,
};
use crate::trunk::Trunks;
use crate::types::{Extension, Now, OpdCode, Transport};

/// What the switch asks its driver to do, in the order it decided it.
#[derive(Debug)]
pub enum Output {
    /// A command for the media engine (never held back: the relay's answers may be what
    /// the rest waits for).
    Media(MediaCommand),
    /// Bytes for a peer.
    Transmit(Transmit),
    /// A write to the store. The driver sends no transmit that came after an acknowledged one
    /// ([`Durable::is_acknowledged`]) before it is committed (durable before acknowledged).
    Store(Durable),
    /// A stream connection to close (its source is banned).
    CloseConn(u64),
    /// Open a connection to a carrier (TCP or TLS); the switch hears of it as
    /// `ConnOpened`, or as [`Switch::handle_connect_failed`].
    Connect(crate::trunk::Connect),
}

/// What the switch wants kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durable {
    /// A registration was added, refreshed or removed.
    Binding(Change),
    /// A call ended (its record, with the counters of its relay session once the relay
    /// reported it closed).
    CallRecord(CallRecord),
    /// An answered call opened or closed (`calls_open`, for a crash).
    OpenCall(crate::cdr::OpenCallOp),
    /// A feature code changed an extension's forwarding or DND.
    Effect(Effect),
    /// The guard banned a source.
    Ban(crate::guard::Ban),
}

impl Durable {
    /// Does an answer produced with it wait until it is committed? Bindings, call records
    /// and feature changes do; bans (a lost ban is re-earned) and open calls (kept only for a
    /// crash; the call's record is what counts) do not.
    pub fn is_acknowledged(&self) -> bool {
        matches!(
            self,
            Durable::Binding(_) | Durable::CallRecord(_) | Durable::Effect(_)
        )
    }
}

/// What the switch supports, advertised in OPTIONS answers.
const ALLOW: &str =
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, REFER, NOTIFY, PRACK, MESSAGE, SUBSCRIBE";

/// How often nonce-counts of expired nonces are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// How long a finished call's record waits for its relay session's counters before it is
/// written without them (the relay answers in microseconds; this is for a relay that died).
const MEDIA_ANSWER: Duration = Duration::from_secs(2);

/// The switch's one output queue. Outputs are ready in the order they were decided, except
/// that a finished call whose relay session is closing waits for the relay's counters, and
/// everything decided after it waits behind it (so the answer that ended the call still
/// follows its record). Media commands never wait.
#[derive(Default)]
struct Outputs {
    ready: VecDeque<Output>,
    /// Behind a call record that waits: each output, and for such a record the session it
    /// waits for and until when.
    waiting: VecDeque<(Output, Option<(SessionId, Instant)>)>,
}

impl Outputs {
    fn push(&mut self, o: Output) {
        if self.waiting.is_empty() {
            self.ready.push_back(o);
        } else {
            self.waiting.push_back((o, None));
        }
    }

    fn push_media(&mut self, cmd: MediaCommand) {
        self.ready.push_back(Output::Media(cmd));
    }

    /// A record that waits for the counters of `session` until `deadline`.
    fn park(&mut self, session: SessionId, record: CallRecord, deadline: Instant) {
        let record = Output::Store(Durable::CallRecord(record));
        self.waiting.push_back((record, Some((session, deadline))));
    }

    /// The relay reported `session` closed (or never opened): its record is complete.
    fn settle(&mut self, session: SessionId, media: Option<crate::cdr::MediaTotals>) {
        for (o, wait) in &mut self.waiting {
            if wait.is_some_and(|(s, _)| s == session) {
                if let Output::Store(Durable::CallRecord(r)) = o {
                    r.media = media;
                }
                *wait = None;
                break;
            }
        }
        self.release();
    }

    /// Records whose counters did not come in time are written without them.
    fn expire(&mut self, now: Instant) {
        for (o, wait) in &mut self.waiting {
            if wait.is_some_and(|(_, deadline)| deadline <= now) {
                if let Output::Store(Durable::CallRecord(r)) = o {
                    tracing::warn!(call_id = %r.call_id,
                        "the relay did not report the call's media counters: recorded without them");
                }
                *wait = None;
            }
        }
        self.release();
    }

    fn deadline(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .filter_map(|(_, w)| w.map(|(_, d)| d))
            .min()
    }

    /// Moves the outputs that no longer wait from the front to the ready queue.
    fn release(&mut self) {
        while self.waiting.front().is_some_and(|(_, w)| w.is_none()) {
            self.ready.extend(self.waiting.pop_front().map(|(o, _)| o));
        }
    }

    fn pop(&mut self) -> Option<Output> {
        self.ready.pop_front()
    }

    fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }
}

/// A live registration, as the admin API lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RegistrationView {
    pub extension: Extension,
    pub opd: Option<OpdCode>,
    pub contact: String,
    pub source: String,
    pub transport: Transport,
    pub user_agent: String,
    pub expires_in: u64,
}

/// Counters since the start, for logs and `/metrics`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub received: u64,
    pub parse_errors: u64,
    pub retransmissions_absorbed: u64,
    /// Finished calls, indexed like [`Disposition::ALL`].
    pub calls_by_disposition: [u64; Disposition::ALL.len()],
}

/// What `/metrics` shows of the switch: [`Stats`] plus gauges read at the time of the scrape.
#[derive(Debug, Clone)]
pub struct SwitchMetrics {
    pub stats: Stats,
    /// Per OPD of the dialplan (all of them, in order): registered extensions and bindings.
    pub registrations_by_opd: Vec<(OpdCode, u64, u64)>,
    /// Bindings of extensions in no OPD of the current plan.
    pub registrations_other: (u64, u64),
    pub calls_active: u64,
    pub calls_answered: u64,
    /// The toll guard's counts: trunk calls in progress, let through, blocked by rule and OPD.
    pub toll: TollStats,
    /// The flood/brute-force guard's counts, and the bans in force.
    pub guard: crate::guard::GuardStats,
    pub bans_active: u64,
    pub transactions: u64,
    /// Relay sessions open (or closing) and the ports they hold.
    pub media: (u64, u64),
    /// Conference rooms: joins and refusals.
    pub rooms: crate::proxy::rooms::RoomCounts,
    /// The carriers of the central trunk.
    pub trunks: Vec<crate::trunk::TrunkView>,
    /// Every OPD with a monthly budget, and the budget refusals since start by OPD.
    pub budgets: Vec<crate::proxy::budget::BudgetView>,
    pub budget_refused: Vec<(OpdCode, u64)>,
}

pub struct Switch {
    limits: Limits,
    pub(crate) server: ServerTransactions,
    pub(crate) registrar: Registrar,
    pub(crate) dialplan: Arc<Dialplan>,
    pub(crate) net: Network,
    /// The stateful proxy: everything that is not for the switch itself.
    pub(crate) proxy: Proxy,
    pub(crate) transmits: VecDeque<Transmit>,
    /// What the driver takes with [`Switch::poll_output`], in order.
    outputs: Outputs,
    /// The latest time an input came with (for deadlines set where no time is passed).
    last_now: Option<Instant>,
    /// Stream connections whose source got banned, for the runtime to close.
    close_conns: Vec<u64>,
    next_prune: Option<Instant>,
    /// Per-source limits, bans and the overload rule.
    pub guard: Guard,
    /// The carriers of the central trunk: registration, pings, health.
    pub(crate) trunks: Trunks,
    pub stats: Stats,
}

impl Switch {
    pub fn new(
        limits: Limits,
        registrar: Registrar,
        dialplan: Arc<Dialplan>,
        max_call: Duration,
    ) -> Switch {
        let mut trunks = Trunks::new(String::new());
        trunks.handle_config(&dialplan.province().trunks, None);
        Switch {
            limits,
            server: ServerTransactions::new(Timers::default()),
            registrar,
            dialplan,
            net: Network::default(),
            proxy: Proxy::new(max_call),
            transmits: VecDeque::new(),
            outputs: Outputs::default(),
            last_now: None,
            close_conns: Vec::new(),
            next_prune: None,
            guard: Guard::disabled(),
            trunks,
            stats: Stats::default(),
        }
    }

    /// A random id of this process, so that the Call-IDs of our registrations with carriers
    /// differ from those of the last run; call before the first timeout.
    pub fn set_instance(&mut self, instance: String, now: Now) {
        self.last_now = Some(now.instant);
        self.trunks = Trunks::new(instance);
        self.trunks
            .handle_config(&self.dialplan.province().trunks, self.last_now);
    }

    /// The carriers' secrets from the store (at start and after each change).
    pub fn handle_trunk_secrets(&mut self, secrets: Vec<crate::trunk::TrunkSecret>) {
        self.trunks.handle_secrets(secrets);
    }

    /// Every carrier, for `tambun trunk status`.
    pub fn trunk_views(&self, now: Instant) -> Vec<crate::trunk::TrunkView> {
        self.trunks.views(now)
    }

    /// The proxy and what it sees of the rest of the switch, borrowed apart.
    fn split(&mut self) -> (&mut Proxy, Ctx<'_>) {
        (
            &mut self.proxy,
            Ctx {
                registrar: &mut self.registrar,
                dialplan: &self.dialplan,
                net: &self.net,
                server: &mut self.server,
                guard: &mut self.guard,
                trunks: &mut self.trunks,
                out: &mut self.transmits,
            },
        )
    }

    /// A UDP socket with the address the switch advertises for it (index = order of calls).
    pub fn add_udp_socket(&mut self, advertised: SocketAddr) {
        self.net.udp.push(advertised);
    }

    /// The toll-fraud limits (the defaults apply until this is called). Set at start, before
    /// any call: calls in progress are forgotten.
    pub fn set_toll_limits(&mut self, limits: TollLimits) {
        self.proxy.toll = TollGuard::new(limits);
    }

    /// What the toll guard let through and blocked (for `/metrics`).
    pub fn toll_stats(&mut self) -> &TollStats {
        self.proxy.settle_toll();
        self.proxy.toll.stats()
    }

    /// Trunk calls recorded before a restart, so the hourly limits hold across it: each
    /// `(caller, caller's OPD, start in Unix ms)` within the last hour counts again.
    /// Emergency calls are left out (they are never limited).
    pub fn restore_trunk_history(&mut self, calls: Vec<crate::cdr::TrunkCallRow>, now: Now) {
        let now_ms = now.unix_ms as i64;
        for c in calls {
            if c.route.starts_with(crate::proxy::EMERGENCY_ROUTE) {
                continue;
            }
            let Ok(ext) = c.caller.parse::<Extension>() else {
                continue;
            };
            let age = Duration::from_millis(now_ms.saturating_sub(c.start_ms).max(0) as u64);
            if age >= crate::proxy::toll::HOUR {
                continue;
            }
            let at = now.instant.checked_sub(age).unwrap_or(now.instant);
            self.proxy.toll.seed(&ext, c.caller_opd.as_ref(), at);
        }
    }

    /// A TCP or TLS listening address.
    pub fn add_stream_listener(&mut self, addr: SocketAddr) {
        self.net.listeners.push(addr);
    }

    pub fn set_domain(&mut self, domain: Option<String>) {
        self.net.domain = domain;
    }

    pub fn handle_conn_opened(
        &mut self,
        conn: u64,
        local: SocketAddr,
        remote: SocketAddr,
        transport: Transport,
    ) {
        self.net.conns.insert(conn, (local, remote, transport));
        self.net.by_remote.insert((remote, transport), conn);
        self.trunks.handle_connected(remote, transport);
        self.collect_outputs();
    }

    /// A connection to a carrier could not be opened.
    pub fn handle_connect_failed(
        &mut self,
        addr: SocketAddr,
        transport: Transport,
        why: &str,
        now: Now,
    ) {
        self.trunks.handle_connect_failed(addr, transport, why, now);
        self.collect_outputs();
    }

    pub fn handle_conn_closed(&mut self, conn: u64) {
        if let Some((_, remote, t)) = self.net.conns.remove(&conn) {
            if self.net.by_remote.get(&(remote, t)) == Some(&conn) {
                self.net.by_remote.remove(&(remote, t));
                self.trunks.handle_closed(remote, t);
            }
            // A browser cannot be reached but over its own WebSocket: its bindings go with it
            // (a TCP/TLS phone may reconnect and is kept until it expires).
            if t.is_websocket() {
                let n = self.registrar.location.remove_conn(conn);
                if n > 0 {
                    tracing::debug!(%remote, bindings = n, "websocket closed: its registrations removed");
                }
            }
        }
        self.collect_outputs();
    }

    /// The dialog secret (kept in the store, so that dialogs set up before a restart are still
    /// recognised after it). The default is a random one.
    pub fn set_dialog_key(&mut self, key: DialogKey) {
        self.proxy.dialog_key = key;
    }

    /// The guard to use (the default lets everything through).
    pub fn set_guard(&mut self, guard: Guard) {
        self.guard = guard;
    }

    /// Anchors the media of new calls in a relay with these ports; its commands come out as
    /// [`Output::Media`] and its answers go to [`Switch::handle_media`].
    pub fn set_media(&mut self, control: MediaControl) {
        self.proxy.media = Some(control);
    }

    /// A new dialplan (reload); calls in progress keep their routing.
    pub fn handle_dialplan(&mut self, dialplan: Arc<Dialplan>) {
        self.trunks
            .handle_config(&dialplan.province().trunks, self.last_now);
        self.dialplan = dialplan;
    }

    /// A UDP datagram. Keep-alives and noise are ignored.
    pub fn handle_datagram(&mut self, data: Bytes, peer: Peer, now: Now) {
        self.last_now = Some(now.instant);
        self.datagram(data, peer, now);
        self.collect_outputs();
    }

    fn datagram(&mut self, data: Bytes, peer: Peer, now: Now) {
        if crate::sip::message::is_datagram_keepalive(&data) {
            return;
        }
        // A banned source costs a hash lookup, not a parse.
        if self.guard.drop_source(peer.addr.ip(), now) {
            return;
        }
        self.stats.received += 1;
        match Message::parse_datagram(data.clone(), &self.limits) {
            Ok(msg) => self.handle_message(msg, peer, now),
            Err(e) => {
                self.stats.parse_errors += 1;
                self.answer_unparseable(data, &e, peer, now);
            }
        }
    }

    /// A request that failed to parse is parsed once more, leniently and without limits (it is
    /// at most one datagram or one framed message), only to address the error response to its
    /// sender. Responses and unreadable bytes are dropped.
    /// Garbage counts against its source's rate like any request (a flood of it must not buy
    /// unlimited 400s).
    fn answer_unparseable(&mut self, data: Bytes, e: &ParseError, peer: Peer, now: Now) {
        if data.starts_with(b"SIP/") {
            tracing::debug!(%peer.addr, error = %e, "unparseable response dropped");
            return;
        }
        if self.guard.admit_request(peer.addr.ip(), None, now) != Admission::Pass {
            return;
        }
        match Message::parse_for_error_reply(data) {
            Ok(msg) if msg.is_request() => self.reject_malformed(&msg, e, peer),
            _ => tracing::debug!(%peer.addr, error = %e, "unparseable message dropped"),
        }
    }

    /// One message framed off a stream (TCP/TLS) connection.
    pub fn handle_stream_message(&mut self, data: Bytes, peer: Peer, now: Now) {
        self.last_now = Some(now.instant);
        self.stream_message(data, peer, now);
        self.collect_outputs();
    }

    fn stream_message(&mut self, data: Bytes, peer: Peer, now: Now) {
        if self.guard.drop_source(peer.addr.ip(), now) {
            self.close_conns.extend(peer.conn);
            return;
        }
        self.stats.received += 1;
        // A WebSocket frame is one whole message, Content-Length optional (RFC 7118 §5).
        let parsed = if peer.transport.is_websocket() {
            Message::parse_datagram(data.clone(), &self.limits)
        } else {
            Message::parse_framed(data.clone(), &self.limits)
        };
        match parsed {
            Ok(msg) => self.handle_message(msg, peer, now),
            Err(e) => {
                self.stats.parse_errors += 1;
                self.answer_unparseable(data, &e, peer, now);
            }
        }
        // Banned by this very message (a scanner, the last failed password): the connection
        // goes too, so a banned source holds no connection slot.
        if self.guard.is_banned(peer.addr.ip(), now) {
            self.close_conns.extend(peer.conn);
        }
    }

    /// The next thing for the driver to do, in the order the switch decided it; `None` when
    /// there is nothing until the next input or [`Switch::poll_timeout`].
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.outputs.is_empty() {
            self.collect_outputs();
        }
        self.outputs.pop()
    }

    /// Moves what the last input produced into the output queue: the writes to the store
    /// first (bindings, finished calls with their relay counters, open calls, feature
    /// changes, bans), then closes, then the transmits, which may acknowledge those writes.
    fn collect_outputs(&mut self) {
        for c in self.registrar.location.drain_changes() {
            self.outputs.push(Output::Store(Durable::Binding(c)));
        }
        self.finish_call_records();
        for op in self.proxy.records.drain_open_ops() {
            self.follow_open_call(&op);
            self.outputs.push(Output::Store(Durable::OpenCall(op)));
        }
        for e in std::mem::take(&mut self.proxy.effects) {
            self.outputs.push(Output::Store(Durable::Effect(e)));
        }
        for b in self.guard.drain_new_bans() {
            self.outputs.push(Output::Store(Durable::Ban(b)));
        }
        for c in std::mem::take(&mut self.close_conns) {
            self.outputs.push(Output::CloseConn(c));
        }
        // The relay's commands go before the transmits: an INVITE leaves after the command
        // that binds the ports its SDP names.
        while let Some(cmd) = self.proxy.poll_media_command() {
            self.outputs.push_media(cmd);
        }
        while let Some(t) = self.trunks.poll_transmit() {
            self.transmits.push_back(t);
        }
        while let Some(c) = self.trunks.poll_connect() {
            self.outputs.push(Output::Connect(c));
        }
        for t in self.transmits.drain(..) {
            self.outputs.push(Output::Transmit(t));
        }
    }

    fn handle_message(&mut self, msg: Message, peer: Peer, now: Now) {
        if !msg.is_request() {
            match msg.validate_response() {
                Ok(()) if Trunks::owns(&msg) => {
                    self.trunks.handle_response(&msg, peer.addr, &self.net, now);
                }
                Ok(()) => {
                    let (proxy, mut cx) = self.split();
                    proxy.handle_response(&mut cx, msg, peer.addr.ip(), now);
                }
                Err(e) => tracing::debug!(%peer.addr, error = %e, "malformed response dropped"),
            }
            return;
        }
        // Scanners and sources over their rate get no answer at all.
        if let Admission::Drop(reason) =
            self.guard
                .admit_request(peer.addr.ip(), msg.header(HeaderName::UserAgent), now)
        {
            tracing::trace!(%peer.addr, ?reason, "request dropped by the guard");
            return;
        }
        if let Err(e) = msg.validate_request() {
            self.stats.parse_errors += 1;
            self.reject_malformed(&msg, &e, peer);
            return;
        }
        let Some(key) = msg.transaction_key() else {
            return;
        };
        match self.server.handle_request(&key, now.instant) {
            RequestDisposition::New => {}
            RequestDisposition::Retransmission(resend) => {
                self.stats.retransmissions_absorbed += 1;
                if let Some(bytes) = resend {
                    self.transmits.push_back(Transmit { peer, bytes });
                }
                return;
            }
            RequestDisposition::AckForInvite => return,
            RequestDisposition::AckNoTransaction => {
                let (proxy, mut cx) = self.split();
                proxy.handle_ack(&mut cx, &msg, peer, now);
                return;
            }
        }
        if self.should_shed(&msg) {
            // Saturated: a new call or registration is refused statelessly, so it leaves no
            // state; in-dialog requests, CANCEL, ACK and responses keep flowing.
            self.server.remove(&key);
            let retry_after = self.guard.overload_rejected();
            tracing::debug!(%peer.addr, "overloaded: 503");
            let bytes = response::build(&msg, peer.addr, 503, None, &[retry_after], None);
            self.transmits.push_back(Transmit { peer, bytes });
            return;
        }
        let Some((status, headers)) = self.handle_new_request(&msg, peer, &key, now) else {
            return; // the proxy took it
        };
        let bytes = response::build(
            &msg,
            peer.addr,
            status,
            Some(&response::our_to_tag(&msg)),
            &headers,
            None,
        );
        if matches!(status, 401 | 407 | 481) {
            // Challenges and refusals of dialogs that are not ours are sent statelessly: a
            // request without valid credentials or dialog leaves no state behind (a
            // retransmission is just answered again), so floods of them cannot fill the
            // transaction table, and a forged CANCEL cannot take the transaction key of the
            // real one (its branch is in the INVITE for anyone to copy).
            self.server.remove(&key);
            self.transmits.push_back(Transmit { peer, bytes });
            return;
        }
        if let Some(t) = self
            .server
            .send_response(&key, status, bytes, peer, now.instant)
        {
            self.transmits.push_back(t);
        }
    }

    /// Answers a request that parsed but is malformed (400, 505 …), statelessly.
    fn reject_malformed(&mut self, msg: &Message, e: &ParseError, peer: Peer) {
        if matches!(msg.method(), Some(Method::Ack)) || msg.top_via().is_err() {
            return;
        }
        tracing::debug!(%peer.addr, error = %e, "malformed request rejected");
        let warning = format!(
            "Warning: 399 tambun \"{}\"",
            e.to_string().replace('"', "'")
        );
        let bytes = response::build(msg, peer.addr, e.status(), None, &[warning], None);
        self.transmits.push_back(Transmit { peer, bytes });
    }

    /// A new request: answered by the switch itself (status, extra header lines), or `None`
    /// when the proxy took it.
    fn handle_new_request(
        &mut self,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        now: Now,
    ) -> Option<(u16, Vec<String>)> {
        let method = msg.method()?.clone();
        let scheme_ok = msg
            .request_uri()
            .and_then(|u| crate::sip::headers::Uri::parse(u).ok())
            .is_some_and(|u| u.sip().is_some());
        if !scheme_ok {
            return Some((416, Vec::new()));
        }
        let for_us = match method {
            Method::Register => true,
            Method::Options => msg.header(HeaderName::Route).is_none() && msg.to_tag().is_none(),
            _ => false,
        };
        if method == Method::Cancel {
            let (proxy, mut cx) = self.split();
            return Some(proxy.handle_cancel(&mut cx, msg, &peer, now));
        }
        if !for_us {
            let (proxy, mut cx) = self.split();
            return proxy.handle_request(&mut cx, msg, peer, key, now);
        }
        // The switch acts as the UAS here: any Require extension is unsupported (RFC 3261 §8.2.2.3).
        let required: Vec<&str> = msg.values(HeaderName::Require).collect();
        if !required.is_empty() {
            return Some((420, vec![format!("Unsupported: {}", required.join(", "))]));
        }
        match method {
            Method::Register => {
                let src = Source {
                    addr: peer.addr,
                    transport: peer.transport,
                    conn: peer.conn,
                };
                let reply = self.registrar.handle_register(msg, src, now);
                if reply.auth_failed {
                    let user = msg.to().ok().and_then(|t| uri_user(t.uri));
                    crate::registrar::log_auth_failure(peer.addr.ip(), "REGISTER", user.as_deref());
                    self.guard.handle_auth_failure(peer.addr.ip(), now);
                }
                Some((reply.status, reply.headers))
            }
            _ => Some((
                200,
                vec![
                    ALLOW.to_string(),
                    "Accept: application/sdp".to_string(),
                    "Supported: outbound".to_string(),
                ],
            )),
        }
    }

    /// Is this a new INVITE or REGISTER arriving while the switch is saturated?
    fn should_shed(&self, msg: &Message) -> bool {
        matches!(msg.method(), Some(Method::Invite | Method::Register))
            && msg.to_tag().is_none()
            // (the request's own transaction is in the table already: not counted)
            && self.guard.overloaded(self.server.len().saturating_sub(1))
    }

    /// The depth of the driver's input queue (for the overload rule).
    pub fn handle_queue_depth(&mut self, depth: usize) {
        self.guard.handle_queue_depth(depth);
    }

    /// The ban list from the store.
    pub fn handle_bans(&mut self, bans: Vec<crate::guard::Ban>, now: Now) {
        self.guard.handle_bans(bans, now);
    }

    /// Timers are due.
    pub fn handle_timeout(&mut self, now: Now) {
        self.last_now = Some(now.instant);
        self.timeout(now);
        self.collect_outputs();
        self.outputs.expire(now.instant);
    }

    fn timeout(&mut self, now: Now) {
        self.server.handle_timeout(now.instant);
        while let Some(t) = self.server.poll_transmit() {
            self.transmits.push_back(t);
        }
        while self.server.poll_event().is_some() {}
        let (proxy, mut cx) = self.split();
        proxy.handle_timeout(&mut cx, now);
        self.registrar.location.handle_timeout(now.instant);
        self.guard.handle_timeout(now);
        self.trunks.handle_timeout(&self.net, now);
        self.cut_calls_over_budget(now);
        if self.next_prune.is_none_or(|t| t <= now.instant) {
            self.registrar.authn.prune(now.unix);
            self.next_prune = Some(now.instant + PRUNE_EVERY);
        }
    }

    /// When [`Self::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.server.poll_timeout(),
            self.proxy.poll_timeout(),
            self.registrar.location.poll_timeout(),
            self.guard.poll_timeout(),
            self.trunks.poll_timeout(),
            self.next_prune,
            self.outputs.deadline(),
            self.proxy.budget.poll_timeout(&self.dialplan),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Finished calls, for the call records. Their relay sessions close here (a finished
    /// record is the one place every way a call ends goes through), and a record with a
    /// session waits in the queue for the relay's counters ([`Switch::handle_media`]).
    fn finish_call_records(&mut self) {
        self.proxy.settle_toll();
        for carrier in self.proxy.carrier_calls_ended.drain(..) {
            self.trunks.handle_call_count(&carrier, -1);
        }
        for r in self.proxy.records.drain_finished() {
            if let Some(i) = Disposition::ALL.iter().position(|d| *d == r.disposition) {
                self.stats.calls_by_disposition[i] += 1;
            }
            self.bill(&r);
            match (self.proxy.media_close(&r.call_id), self.last_now) {
                (Some(session), Some(now)) => self.outputs.park(session, r, now + MEDIA_ANSWER),
                _ => self.outputs.push(Output::Store(Durable::CallRecord(r))),
            }
        }
    }

    /// An answered outside call starts to cost: the budgets follow it until it ends (its
    /// record is billed, or it is closed without one when a new INVITE replaces it).
    fn follow_open_call(&mut self, op: &crate::cdr::OpenCallOp) {
        use crate::proxy::budget::BilledCall;
        let record = match op {
            crate::cdr::OpenCallOp::Open { record, .. } => record,
            crate::cdr::OpenCallOp::Close { call_id, .. } => {
                self.proxy.budget.handle_ended(call_id);
                return;
            }
        };
        let (Some(call), Some(at)) = (
            BilledCall::from_record(record, &self.dialplan),
            self.last_now,
        ) else {
            return;
        };
        self.proxy.budget.handle_answered(&record.call_id, call, at);
    }

    /// A finished call counts for its OPD's monthly budget (answered outside calls only);
    /// a budget that crosses 80 % or 100 % is logged once.
    fn bill(&mut self, r: &CallRecord) {
        use crate::proxy::budget::{BilledCall, Notice};
        self.proxy.budget.handle_ended(&r.call_id);
        let Some(call) = BilledCall::from_record(r, &self.dialplan) else {
            return;
        };
        for notice in self.proxy.budget.handle_call(&call, &self.dialplan) {
            match notice {
                Notice::Warning(s) => tracing::warn!(
                    target: "tambun::budget",
                    month = %s.month,
                    "{s}; outside calls are refused at 100 %"
                ),
                Notice::Exhausted(s) => tracing::warn!(
                    target: "tambun::budget",
                    month = %s.month,
                    "{s}; outside calls except emergency numbers are refused until the month ends"
                ),
            }
        }
    }

    /// Answered trunk calls of the current month from the store, so the monthly budgets
    /// hold across a restart (nothing is announced for them).
    pub fn restore_budget_usage(&mut self, calls: Vec<crate::cdr::CdrRecord>, now: Now) {
        use crate::proxy::budget::BilledCall;
        for r in &calls {
            if let Some(call) = BilledCall::from_record(r, &self.dialplan) {
                self.proxy
                    .budget
                    .seed(&call, &self.dialplan, now.unix_ms as i64);
            }
        }
    }

    /// Every OPD with a monthly budget and what it used this month (`GET /api/budgets`).
    pub fn budgets(&mut self, now: Now) -> Vec<crate::proxy::budget::BudgetView> {
        self.proxy
            .budget
            .report(&self.dialplan, now.instant, now.unix_ms as i64)
    }

    /// Answered outside calls whose budget cannot pay for their next minute: the switch
    /// ends them (a BYE to both phones), one `tambun::budget` log line each.
    fn cut_calls_over_budget(&mut self, now: Now) {
        let cuts = self
            .proxy
            .budget
            .poll_cut(&self.dialplan, now.instant, now.unix_ms as i64);
        if cuts.is_empty() {
            return;
        }
        let (proxy, mut cx) = self.split();
        for (call_id, standing) in cuts {
            let reason = format!("SIP;cause=403;text=\"{standing}\"");
            if proxy.bye_both_ways(&mut cx, &call_id, &reason, now) {
                tracing::warn!(
                    target: "tambun::budget",
                    %call_id,
                    "ending a call in progress: {standing}"
                );
                proxy.records.ended_by_switch(&call_id, now.unix_ms);
            } else {
                // Without the relay the switch has no dialog to end: the call goes on and
                // is billed in full when it ends.
                tracing::warn!(
                    target: "tambun::budget",
                    %call_id,
                    "cannot end a call in progress (its media is not anchored): {standing}"
                );
            }
        }
    }

    /// A snapshot for `/metrics`.
    pub fn metrics(&mut self, now: Now) -> SwitchMetrics {
        let mut by_opd: HashMap<&OpdCode, (u64, u64)> = HashMap::new();
        let mut other = (0, 0);
        for (ext, bindings) in self.registrar.location.per_extension() {
            let opd = self.dialplan.opd_of(ext).map(|o| &o.code);
            let slot = match opd {
                Some(code) => by_opd.entry(code).or_default(),
                None => &mut other,
            };
            slot.0 += 1;
            slot.1 += bindings as u64;
        }
        let registrations_by_opd = self
            .dialplan
            .opds()
            .iter()
            .map(|o| {
                let (e, b) = by_opd.get(&o.code).copied().unwrap_or_default();
                (o.code.clone(), e, b)
            })
            .collect();
        let (calls_active, calls_answered) = self.proxy.records.counts();
        SwitchMetrics {
            stats: self.stats,
            registrations_by_opd,
            registrations_other: other,
            calls_active,
            calls_answered,
            toll: self.toll_stats().clone(),
            guard: self.guard.stats,
            bans_active: self.guard.bans_active(now.unix) as u64,
            transactions: self.transaction_count() as u64,
            media: self
                .proxy
                .media
                .as_ref()
                .map_or((0, 0), |m| (m.sessions() as u64, m.ports_in_use() as u64)),
            rooms: self.proxy.rooms.counts,
            trunks: self.trunks.views(now.instant),
            budgets: self.budgets(now),
            budget_refused: self
                .proxy
                .budget
                .refused_total()
                .iter()
                .map(|(o, n)| (o.clone(), *n))
                .collect(),
        }
    }

    /// The conference rooms that have participants (`tambun conf`).
    pub fn rooms(&self) -> Vec<crate::proxy::rooms::RoomView> {
        self.proxy.rooms.views()
    }

    /// The operator mutes, removes or locks in room `number` (`tambun conf mute|kick|lock`).
    pub fn room_action(
        &mut self,
        number: &str,
        action: crate::proxy::rooms::RoomAction,
        now: Now,
    ) -> Result<crate::proxy::rooms::RoomActionDone, crate::proxy::rooms::RoomActionError> {
        self.last_now = Some(now.instant);
        let (proxy, mut cx) = self.split();
        let done = proxy.room_action(&mut cx, number, action, now);
        self.collect_outputs();
        done
    }

    /// Calls in progress.
    pub fn live_calls(&self, now: Instant) -> Vec<LiveCall> {
        let mut calls = self.proxy.records.live(now);
        for c in &mut calls {
            let media = self.proxy.media_calls.by_call_id.get(&c.call_id);
            c.media_session = media.map(|m| m.session.0);
            c.transcoding = media.and_then(|m| m.transcode.describe());
        }
        calls
    }

    /// What the media engine reports: a session opened, failed to open (its media is lost),
    /// closed with its counters (the call's record is complete), or went silent (the call is
    /// ended with a BYE both ways).
    pub fn handle_media(&mut self, event: MediaEvent, now: Now) {
        self.last_now = Some(now.instant);
        self.proxy.media_settled(&event);
        match &event {
            MediaEvent::Opened { .. } | MediaEvent::Reserved { .. } => {}
            MediaEvent::OpenFailed { session, .. } => self.outputs.settle(*session, None),
            MediaEvent::Closed { session, stats } => self
                .outputs
                .settle(*session, crate::proxy::media::totals(stats)),
            MediaEvent::Inactive { session, .. } => {
                let (proxy, mut cx) = self.split();
                proxy.handle_media_inactive(&mut cx, *session, now);
            }
            MediaEvent::Room {
                room,
                session,
                event,
            } => {
                tracing::debug!(
                    room = room.0,
                    session = session.0,
                    ?event,
                    "conference event"
                );
                let (proxy, mut cx) = self.split();
                proxy.handle_room_event(&mut cx, *session, event, now);
            }
        }
        self.collect_outputs();
    }

    /// The extension directory changed (the store was edited).
    pub fn handle_accounts(&mut self, accounts: Accounts) {
        self.registrar.handle_accounts(accounts);
    }

    /// Puts bindings loaded from the store back into the location service; expired ones are
    /// skipped.
    pub fn restore_bindings(&mut self, bindings: Vec<(Extension, registrar::Binding)>, now: Now) {
        for (ext, b) in bindings {
            if b.expires_unix > now.unix as i64 && self.registrar.accounts().is_active(&ext) {
                self.registrar.location.upsert(&ext, b, false);
            }
        }
    }

    /// Live registrations for the operator.
    pub fn registrations(&self, opd: Option<&OpdCode>, now: Instant) -> Vec<RegistrationView> {
        self.registrar
            .location
            .all()
            .into_iter()
            .map(|(ext, b)| RegistrationView {
                extension: ext.clone(),
                opd: self.registrar.accounts().get(ext).map(|a| a.opd.clone()),
                contact: format!("<{}>{}", b.uri, b.params),
                source: b.source.to_string(),
                transport: b.transport,
                user_agent: b.user_agent.clone(),
                expires_in: b.seconds_left(now),
            })
            .filter(|r| opd.is_none() || r.opd.as_ref() == opd)
            .collect()
    }

    /// The softphone page's directory, for an extension that gives its password (HTTP Basic
    /// over HTTPS). A wrong password or an unknown extension gets `None`, is logged and counts
    /// against the source in the guard like a failed digest; a banned source gets `None`
    /// without a check.
    pub fn directory(
        &mut self,
        user: &str,
        password: &str,
        source: std::net::IpAddr,
        now: Now,
    ) -> Option<crate::directory::Directory> {
        let me = self.page_user(user, password, source, "directory", now)?;
        Some(crate::directory::build(me, &self.registrar, &self.dialplan))
    }

    /// The conference rooms for the softphone page of `user`, who proves `password` (checked
    /// and counted like the directory's).
    pub fn phone_rooms(
        &mut self,
        user: &str,
        password: &str,
        source: std::net::IpAddr,
        now: Now,
    ) -> Option<crate::directory::PhoneRooms> {
        let me = self.page_user(user, password, source, "rooms", now)?;
        let opd = self.registrar.accounts().get(&me).map(|a| a.opd.clone());
        Some(crate::directory::phone_rooms(
            me,
            opd.as_ref(),
            &self.dialplan,
            &self.proxy.rooms.views(),
        ))
    }

    /// A moderator's action from the softphone page on room `number`: only for `user`
    /// (proving `password`) when it moderates that room by extension or OPD.
    pub fn phone_room_action(
        &mut self,
        user: &str,
        password: &str,
        source: std::net::IpAddr,
        number: &str,
        action: crate::proxy::rooms::RoomAction,
        now: Now,
    ) -> Result<crate::proxy::rooms::RoomActionDone, PageRoomError> {
        let me = self
            .page_user(user, password, source, "rooms", now)
            .ok_or(PageRoomError::Unauthorized)?;
        let opd = self.registrar.accounts().get(&me).map(|a| a.opd.clone());
        let moderates = self
            .dialplan
            .room(number)
            .zip(opd.as_ref())
            .is_some_and(|(r, o)| r.moderated_by(&me, o));
        if !moderates {
            tracing::warn!(target: "tambun::dialog", %source, %me, room = number, "room control refused: not a moderator");
            return Err(PageRoomError::NotModerator(number.to_owned()));
        }
        tracing::info!(%me, room = number, ?action, "moderator's action from the page");
        self.room_action(number, action, now)
            .map_err(PageRoomError::Room)
    }

    /// The extension whose password this is (the softphone page's APIs: `what` names which
    /// for the log), or `None` (logged and counted by the guard).
    fn page_user(
        &mut self,
        user: &str,
        password: &str,
        source: std::net::IpAddr,
        what: &str,
        now: Now,
    ) -> Option<Extension> {
        if self.guard.drop_source(source, now) {
            return None;
        }
        let accounts = self.registrar.accounts();
        match self
            .registrar
            .authn
            .check_password(user, password, accounts)
        {
            Some(me) => Some(me),
            None => {
                crate::registrar::log_auth_failure(source, what, Some(user));
                self.guard.handle_auth_failure(source, now);
                None
            }
        }
    }

    pub fn registration_count(&self) -> usize {
        self.registrar.location.len()
    }

    pub fn transaction_count(&self) -> usize {
        self.server.len() + self.proxy.client.len()
    }
}

/// Why the page's room control did nothing.
#[derive(Debug, thiserror::Error)]
pub enum PageRoomError {
    #[error("extension or password is wrong")]
    Unauthorized,
    #[error("you do not moderate room {0}")]
    NotModerator(String),
    #[error(transparent)]
    Room(crate::proxy::rooms::RoomActionError),
}

/// The switch's outputs, sorted by kind, for the sans-IO test rigs.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Collected {
    pub transmits: VecDeque<Transmit>,
    pub durables: Vec<Durable>,
    pub closes: Vec<u64>,
    pub media: Vec<MediaCommand>,
    pub connects: Vec<(SocketAddr, Transport)>,
}

#[cfg(test)]
impl Collected {
    /// Takes every output the switch has now.
    pub fn pump(&mut self, sw: &mut Switch) {
        while let Some(o) = sw.poll_output() {
            match o {
                Output::Transmit(t) => self.transmits.push_back(t),
                Output::Store(d) => self.durables.push(d),
                Output::CloseConn(c) => self.closes.push(c),
                Output::Media(m) => self.media.push(m),
                Output::Connect(c) => self.connects.push((c.addr, c.transport)),
            }
        }
    }

    /// The durable writes `pick` selects, removed from the collection.
    pub fn take<T>(&mut self, pick: impl Fn(&Durable) -> Option<T>) -> Vec<T> {
        let mut taken = Vec::new();
        self.durables.retain(|d| match pick(d) {
            Some(t) => {
                taken.push(t);
                false
            }
            None => true,
        });
        taken
    }
}

#[cfg(test)]
mod output_queue_tests {
    use super::*;
    use crate::cdr::MediaTotals;

    fn record(call_id: &str) -> CallRecord {
        CallRecord {
            call_id: call_id.into(),
            caller: "1000".into(),
            dialled: "2300".into(),
            callee: Some("2300".into()),
            caller_opd: None,
            callee_opd: None,
            route: "test".into(),
            trunk: false,
            start_ms: 0,
            answer_ms: Some(1),
            end_ms: 2,
            disposition: Disposition::Answered,
            sip_status: 200,
            media: None,
        }
    }

    fn transmit(port: u16) -> Output {
        Output::Transmit(Transmit {
            peer: Peer {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                transport: Transport::Udp,
                conn: None,
            },
            bytes: Bytes::new(),
        })
    }

    /// What the queue has ready, as labels: `t<port>`, `r<call-id>[+media]`, `m` (command).
    fn drain(q: &mut Outputs) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|o| match o {
                Output::Transmit(t) => format!("t{}", t.peer.addr.port()),
                Output::Store(Durable::CallRecord(r)) => {
                    format!(
                        "r{}{}",
                        r.call_id,
                        if r.media.is_some() { "+media" } else { "" }
                    )
                }
                Output::Media(_) => "m".into(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn what_follows_a_waiting_record_waits_in_order_and_commands_never_wait() {
        let t0 = Instant::now();
        let mut q = Outputs::default();
        q.push(transmit(1));
        q.park(SessionId(1), record("a"), t0 + MEDIA_ANSWER);
        q.push(transmit(2));
        q.park(SessionId(2), record("b"), t0 + MEDIA_ANSWER);
        q.push(transmit(3));
        q.push_media(MediaCommand::Close {
            session: SessionId(3),
        });
        assert_eq!(drain(&mut q), ["t1", "m"]);
        // The second session answers first: nothing moves until the first does.
        q.settle(SessionId(2), Some(MediaTotals::default()));
        assert!(drain(&mut q).is_empty());
        q.settle(SessionId(1), None);
        assert_eq!(drain(&mut q), ["ra", "t2", "rb+media", "t3"]);
        q.push(transmit(4));
        assert_eq!(drain(&mut q), ["t4"], "nothing waits: straight through");
        assert_eq!(q.deadline(), None);
    }

    #[test]
    fn a_record_whose_counters_never_come_goes_at_its_deadline() {
        let t0 = Instant::now();
        let mut q = Outputs::default();
        q.park(SessionId(1), record("a"), t0 + MEDIA_ANSWER);
        q.push(transmit(1));
        assert_eq!(q.deadline(), Some(t0 + MEDIA_ANSWER));
        q.expire(t0 + MEDIA_ANSWER - Duration::from_millis(1));
        assert!(drain(&mut q).is_empty());
        q.expire(t0 + MEDIA_ANSWER);
        assert_eq!(drain(&mut q), ["ra", "t1"]);
        // A late answer for it changes nothing.
        q.settle(SessionId(1), Some(MediaTotals::default()));
        assert!(drain(&mut q).is_empty());
    }
}
