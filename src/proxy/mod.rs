//! The stateful proxy (RFC 3261 §16, DESIGN D1): authenticates out-of-dialog requests from
//! extensions (407), routes initial INVITEs by the caller's OPD dialplan, forks to every
//! contact of the target (parallel) or hunts member by member (sequential), Record-Routes
//! (`;lr`, double when the transport changes) so every in-dialog request passes through,
//! relays CANCEL, picks the best final response, detects loops (482) and spent Max-Forwards
//! (483), applies forward-on-busy/no-answer, and feeds the call records.
//!
//! [`Proxy`] owns its state: proxied requests and their client transactions, the call
//! records, the toll guard, the monthly budgets' usage, the media sessions and the dialog key. It sees the rest of the
//! switch (registrar, dialplan, network, server transactions, guard, transmit queue) only
//! through the [`Ctx`] each call gets; it does not know the `Switch`. By concern:
//! this file (entry point: authentication and dispatch; Via, Record-Route, peers),
//! `routing` (new calls by the dialplan, toll admission, forwarding fallbacks), `fork`
//! (branches, best response, CANCEL, timers, responses), `dialog` (in-dialog requests and
//! ACK under the dialog check), `token` (the dialog token itself, pure), `media` (SDP
//! anchoring), `build` (the messages), `records`, `toll`, `budget`.
//!
//! Sans-IO: transmits go to the context's queue; no socket, no clock.

pub mod budget;
pub mod build;
mod dialog;
mod fork;
pub mod media;
pub mod records;
pub mod rooms;
mod routing;
pub mod token;
pub mod toll;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::cdr::Disposition;
use crate::dialplan::route::{Decision, Directory, FeatureAction, Features, RingTarget, Routing};
use crate::dialplan::Dialplan;
use crate::dialplan::{NumberClass, Strategy};
use crate::guard::Guard;
use crate::network::Network;
use crate::registrar::{Accounts, Registrar, Verdict};
use crate::sip::headers::NameAddr;
use crate::sip::message::Limits;
use crate::sip::message::{HeaderName, Message, Method};
use crate::sip::response;
use crate::sip::transaction::{
    ClientTransactions, Event, Peer, ResponseDisposition, ServerTransactions, Timers,
    TransactionKey, Transmit, TxMethod,
};
use crate::types::{Extension, Now, OpdCode, Transport};

use build::Hop;
use media::MediaTable;
use records::{NewCall, Records};
use token::{DialogError, DialogKey, Party, TOKEN_PARAM};
use toll::{Rule, TollGuard, TollLimits};

/// Our branches start with this, then a hash of the request for loop detection.
const BRANCH_PREFIX: &str = "z9hG4bKtb";
/// Timer C (RFC 3261 §16.6 step 11): an INVITE branch with no final answer is given up.
const TIMER_C: Duration = Duration::from_secs(180);
/// How long a proxied non-INVITE request may wait for its final response (64·T1).
const NON_INVITE_LIMIT: Duration = Duration::from_secs(32);
/// How long a cancelled call waits for its branches' 487 before answering 487 itself.
const CANCEL_GRACE: Duration = Duration::from_secs(4);
/// How many times forwarding fallbacks may chain within one call.
const MAX_FALLBACKS: u8 = 4;
/// How the call records' route of an emergency call starts.
pub(crate) const EMERGENCY_ROUTE: &str = "trunk (emergency)";

/// One proxied request: the server transaction it came in on and its client branches.
pub(crate) struct Proxied {
    method: Method,
    server_key: TransactionKey,
    upstream: Peer,
    request: Message,
    branches: Vec<Branch>,
    /// The best final (non-2xx) response so far.
    best: Option<Message>,
    final_sent: bool,
    answered: bool,
    cancelled: bool,
    /// For initial INVITEs: what the call records and fallbacks need.
    call: Option<CallCtx>,
    /// Route values naming us at the top of the request, removed when forwarding.
    pop_routes: usize,
    /// When to stop ringing (no-answer timeout, sequential member timeout, Timer C).
    deadline: Instant,
    /// The authenticated extension that sent an out-of-dialog request: the caller of the
    /// dialog it may set up.
    caller: Option<Extension>,
    /// The checked dialog token of an in-dialog request (kept in the Record-Route of a
    /// target refresh).
    dialog_token: Option<String>,
    /// Added to the request's CSeq on its branches (and taken off the responses): a carrier
    /// challenged this dialog's requests, and the switch answered with CSeq + 1 each time.
    cseq_shift: u32,
    /// Challenges answered for this request (a carrier's 401/407), at most two (a stale
    /// nonce).
    auth_retries: u8,
}

struct Branch {
    key: TransactionKey,
    peer: Peer,
    sent: Message,
    member: Option<Extension>,
    done: bool,
    /// A provisional response was received (RFC 3261 §9.1: only then may it be cancelled).
    provisional: bool,
    cancel_pending: bool,
    /// A CANCEL was sent on this branch (never twice).
    cancelled: bool,
}

impl Branch {
    /// A branch just sent: nothing heard yet.
    fn new(key: TransactionKey, peer: Peer, sent: Message, member: Option<Extension>) -> Branch {
        Branch {
            key,
            peer,
            sent,
            member,
            done: false,
            provisional: false,
            cancel_pending: false,
            cancelled: false,
        }
    }
}

struct CallCtx {
    /// The calling extension; `None` for a call from a carrier (inbound).
    caller: Option<Extension>,
    from_tag: String,
    /// Members still to ring, for sequential hunting.
    queue: Vec<RingTarget>,
    member_timeout: Option<Duration>,
    /// Forward-on-busy / no-answer of a single-target call.
    forward_busy: Option<(Extension, String)>,
    forward_no_answer: Option<(Extension, String)>,
    fallbacks: u8,
    /// A call to the trunk: the number (national form), the carriers still to try (the next
    /// last) and the one being tried.
    trunk: Option<TrunkCall>,
}

impl CallCtx {
    /// A new call's context: nothing queued, no forward, not (yet) to the trunk.
    fn new(caller: Option<Extension>, from_tag: String) -> CallCtx {
        CallCtx {
            caller,
            from_tag,
            queue: Vec::new(),
            member_timeout: None,
            forward_busy: None,
            forward_no_answer: None,
            fallbacks: 0,
            trunk: None,
        }
    }
}

/// A call on its way to the carriers (failover in priority order).
struct TrunkCall {
    number: String,
    /// Whose OPD's public number is the caller ID.
    charged: Extension,
    left: Vec<crate::dialplan::Trunk>,
    current: Option<String>,
    /// A carrier was passed over because the offer had none of its codecs.
    codec_refused: bool,
}

/// The stateful proxy: its tables of proxied requests and client transactions, the call
/// records, the toll guard, the media sessions and the dialog key. The rest of the switch
/// (registrar, dialplan, network, server transactions, guard, transmit queue) it sees only
/// through a [`Ctx`] handed to each call.
pub struct Proxy {
    next_id: u64,
    by_id: HashMap<u64, Proxied>,
    by_server: HashMap<TransactionKey, u64>,
    /// Our branch id → (proxied request, branch index).
    by_branch: HashMap<String, (u64, usize)>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Client transactions of the branches (and of the switch's own BYEs).
    pub(crate) client: ClientTransactions,
    pub(crate) records: Records,
    /// Limits on trunk calls (toll fraud).
    pub(crate) toll: TollGuard,
    /// Answered trunk calls by (Call-ID, caller's tag) → the carrier that took them, and the
    /// carriers of those that ended (for [`crate::trunk::Trunks::handle_call_count`]).
    carrier_calls: HashMap<(String, String), String>,
    pub(crate) carrier_calls_ended: Vec<String>,
    /// Dialogs with a carrier that challenged: (Call-ID, the phone's From tag) → what is
    /// added to the CSeq of the phone's requests toward the carrier (the switch's answers
    /// to the challenges took those numbers). The back-to-back part of a trunk call.
    pub(crate) cseq_shifts: HashMap<(String, String), u32>,
    /// Monthly budgets per OPD: this month's usage.
    pub(crate) budget: budget::Budgets,
    /// The control plane of the RTP relay that anchors media; `None` leaves SDP untouched
    /// (media goes direct).
    pub(crate) media: Option<crate::media::MediaControl>,
    pub(crate) media_calls: MediaTable,
    /// Signs the dialogs the proxy sets up (Record-Route tokens) and its Via branches.
    pub(crate) dialog_key: DialogKey,
    /// Feature changes for the store.
    pub(crate) effects: Vec<Effect>,
    /// The participants' dialogs with conference rooms (the switch answers for rooms).
    pub(crate) rooms: rooms::Rooms,
}

/// What the proxy sees of the rest of the switch, for the length of one call into it.
pub struct Ctx<'a> {
    pub registrar: &'a mut Registrar,
    pub dialplan: &'a Dialplan,
    pub net: &'a Network,
    /// The server transactions requests arrive on (the proxy answers through them).
    pub server: &'a mut ServerTransactions,
    pub guard: &'a mut Guard,
    /// The carriers: which to try for a call, and what happened on them.
    pub trunks: &'a mut crate::trunk::Trunks,
    /// Transmits, in order.
    pub out: &'a mut VecDeque<Transmit>,
}

impl Ctx<'_> {
    /// Credentials failed (wrong password or unknown extension, alike): one log line, and the
    /// guard counts it against the source.
    fn auth_failed(&mut self, peer: &Peer, method: &str, user: Option<&str>, now: Now) {
        crate::registrar::log_auth_failure(peer.addr.ip(), method, user);
        self.guard.handle_auth_failure(peer.addr.ip(), now);
    }
}

/// Limits for re-reading messages we built ourselves.
const UNBOUNDED: Limits = Limits {
    max_message: usize::MAX,
    max_headers: usize::MAX,
};

impl Proxy {
    pub fn new(max_call: Duration) -> Proxy {
        Proxy {
            next_id: 0,
            by_id: HashMap::new(),
            by_server: HashMap::new(),
            by_branch: HashMap::new(),
            deadlines: BinaryHeap::new(),
            client: ClientTransactions::new(Timers::default()),
            records: Records::new(max_call),
            toll: TollGuard::new(TollLimits::default()),
            carrier_calls: HashMap::new(),
            carrier_calls_ended: Vec::new(),
            cseq_shifts: HashMap::new(),
            budget: budget::Budgets::default(),
            media: None,
            media_calls: MediaTable::default(),
            dialog_key: DialogKey::random(),
            effects: Vec::new(),
            rooms: rooms::Rooms::default(),
        }
    }

    /// Proxied requests in progress.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// When [`Proxy::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.deadlines.peek().map(|Reverse((t, _))| *t),
            self.client.poll_timeout(),
            self.records.poll_timeout(),
            self.rooms.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Timers are due: client transactions (retransmissions, Timer B/F as a 408 of the
    /// branch), ringing deadlines and Timer C, call records' maximum duration.
    pub fn handle_timeout(&mut self, cx: &mut Ctx<'_>, now: Now) {
        self.client.handle_timeout(now.instant);
        while let Some(t) = self.client.poll_transmit() {
            cx.out.push_back(t);
        }
        while let Some(ev) = self.client.poll_event() {
            if let Event::Timeout { key } = ev {
                self.proxy_branch_timeout(cx, &key, now);
            }
        }
        self.proxy_timeout(cx, now);
        self.rooms_timeout(cx, now);
        self.records.handle_timeout(now.instant, now.unix_ms);
    }

    /// Tells the toll guard about trunk calls whose records ended.
    pub(crate) fn settle_toll(&mut self) {
        for call in self.records.drain_trunk_ended() {
            if let Some(carrier) = self.carrier_calls.remove(&call) {
                self.carrier_calls_ended.push(carrier);
            }
            self.cseq_shifts.remove(&call);
            self.toll.release(&call);
        }
    }
}

/// What the switch wants the runtime to do outside SIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A feature code changed an extension's forwarding or DND: persist it.
    Feature(Extension, FeatureAction),
}

fn hash_hex(parts: &[&str]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// The loop-detection hash of a request (RFC 3261 §16.6 step 8): what must differ for a
/// spiral to be legitimate.
fn loop_hash(msg: &Message) -> String {
    let from_tag = msg.from_tag().unwrap_or("");
    let cseq = msg.cseq().map(|c| c.seq.to_string()).unwrap_or_default();
    hash_hex(&[
        msg.request_uri().unwrap_or(""),
        from_tag,
        msg.call_id().unwrap_or(""),
        &cseq,
    ])
}

use crate::sip::headers::uri_user;

fn session_expires(msg: &Message) -> Option<u32> {
    let v = msg
        .headers_by_raw_name("Session-Expires")
        .chain(msg.headers_by_raw_name("x"))
        .next()?;
    let text = msg.text(v.value);
    let n = text.split(';').next()?.trim();
    n.parse().ok()
}

impl Proxy {
    /// How many Route values at the top name us.
    fn our_routes(&self, cx: &Ctx<'_>, msg: &Message) -> usize {
        msg.values(HeaderName::Route)
            .take_while(|v| {
                NameAddr::parse(v)
                    .map(|na| cx.net.names_us(na.uri))
                    .unwrap_or(false)
            })
            .count()
    }

    /// A peer to send to: UDP from a socket of the right family, TCP over an open connection.
    fn binding_peer(
        &self,
        cx: &Ctx<'_>,
        addr: SocketAddr,
        transport: Transport,
        conn: Option<u64>,
    ) -> Peer {
        match transport {
            Transport::Udp => cx.net.udp_peer(addr),
            _ => Peer {
                addr,
                transport,
                conn: conn
                    .filter(|c| cx.net.conns.contains_key(c))
                    .or_else(|| cx.net.conn_to(addr, transport)),
            },
        }
    }

    /// Our Record-Route values for a request crossing from `inbound` to `outbound`: one when
    /// both sides use the same address and transport, two when they differ (RFC 5658). A TLS
    /// side whose Request-URI is a SIPS URI gets a `sips:` value (RFC 3261 §16.6 step 4), any
    /// other TLS side `;transport=tls`.
    /// Each value carries the dialog token when there is one (`;tbd=…`, [`dialog`]).
    fn record_route(
        &self,
        cx: &Ctx<'_>,
        inbound: (&Peer, bool),
        outbound: (&Peer, bool),
        token: Option<&str>,
    ) -> Vec<String> {
        let tbd = token.map_or(String::new(), |t| format!(";{TOKEN_PARAM}={t}"));
        let rr = |(p, sips): (&Peer, bool)| -> Option<String> {
            let local = cx.net.local_of(p)?;
            Some(match p.transport {
                Transport::Udp => format!("<sip:{local};lr{tbd}>"),
                Transport::Tls if sips => format!("<sips:{local};lr{tbd}>"),
                t => format!("<sip:{local};transport={t};lr{tbd}>"),
            })
        };
        match (rr(outbound), rr(inbound)) {
            (Some(o), Some(i)) if o != i => vec![o, i],
            (Some(o), _) => vec![o],
            (None, Some(i)) => vec![i],
            (None, None) => Vec::new(),
        }
    }

    /// A new branch for a request from `upstream`: our prefix, the loop hash, a sequence
    /// number and a MAC binding it to `upstream` (so a stray response can be forwarded there
    /// and nowhere else, [`Self::stray_response`]).
    fn next_branch(&mut self, msg: &Message, upstream: SocketAddr) -> String {
        self.next_id += 1;
        let core = format!("{}.{:x}", loop_hash(msg), self.next_id);
        let mac = self.dialog_key.branch_mac(&core, upstream);
        format!("{BRANCH_PREFIX}{core}.{mac}")
    }

    /// A new request that is not for the switch itself. Returns a status to answer with when
    /// the proxy does not take it (the caller builds the response), `None` once handled.
    pub(crate) fn handle_request(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        now: Now,
    ) -> Option<(u16, Vec<String>)> {
        let method = msg.method()?.clone();
        let routes = self.our_routes(cx, msg);
        let in_dialog = msg.to_tag().is_some();
        if msg.max_forwards().ok().flatten() == Some(0) {
            return Some((483, Vec::new()));
        }
        let proxy_require: Vec<&str> = msg.values(HeaderName::ProxyRequire).collect();
        if !proxy_require.is_empty() {
            return Some((
                420,
                vec![format!("Unsupported: {}", proxy_require.join(", "))],
            ));
        }
        if in_dialog {
            if let Some(answer) = self.room_in_dialog(cx, msg, peer, key, now) {
                return answer;
            }
            return self.forward_in_dialog(cx, msg, peer, key, routes, now);
        }
        // Out of dialog. A carrier calling one of our public numbers: only from a carrier's
        // address; anyone else calling a public number is refused (and counted).
        if method == Method::Invite {
            if let Some(carrier) = cx.trunks.carrier_at(peer.addr).cloned() {
                self.start_inbound_call(cx, msg, peer, key, &carrier, now);
                return None;
            }
            let ruri_user = msg.request_uri().and_then(uri_user).unwrap_or_default();
            let unauthenticated = msg.header(HeaderName::ProxyAuthorization).is_none();
            if unauthenticated && cx.dialplan.is_public_number(&ruri_user) {
                tracing::warn!(target: "tambun::trunk", source = %peer.addr, number = %ruri_user,
                    "inbound call to a public number from an address that is no carrier: refused");
                cx.guard.handle_auth_failure(peer.addr.ip(), now);
                return Some((
                    403,
                    vec![format!(
                        "Warning: 399 tambun \"calls to public numbers come only from the province's carriers\""
                    )],
                ));
            }
        }
        // Out of dialog: something starts here. Who is calling? (A phone with an outbound
        // proxy pre-loads `Route: <sip:switch;lr>`: that Route is ours, removed on every branch.)
        let caller = match cx
            .registrar
            .authenticate(msg, HeaderName::ProxyAuthorization, now.unix)
        {
            Verdict::Authenticated(ext) => ext,
            Verdict::Challenge { stale, failed } => {
                if failed {
                    let user = msg.from().ok().and_then(|f| uri_user(f.uri));
                    cx.auth_failed(&peer, method.as_str(), user.as_deref(), now);
                }
                return Some((
                    407,
                    cx.registrar.authn.challenge(msg, true, stale, now.unix),
                ));
            }
        };
        let from_user = msg.from().ok().and_then(|f| uri_user(f.uri));
        // An anonymous From (RFC 3323) hides the caller and claims no one else.
        let anonymous = from_user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case("anonymous"));
        if from_user.as_deref() != Some(caller.as_str()) && !anonymous {
            // Credentials of one extension, From of another: caller-ID spoofing.
            return Some((403, Vec::new()));
        }
        let lh = loop_hash(msg);
        let looped = msg.values(HeaderName::Via).any(|v| {
            crate::sip::headers::Via::parse(v)
                .ok()
                .and_then(|v| v.branch())
                .is_some_and(|b| b.starts_with(&format!("{BRANCH_PREFIX}{lh}.")))
        });
        if looped {
            return Some((482, Vec::new()));
        }
        if method == Method::Invite {
            self.start_call(cx, msg, peer, key, caller, now);
            return None;
        }
        let dialled = uri_user(msg.request_uri().unwrap_or("")).unwrap_or_default();
        // Other out-of-dialog requests (MESSAGE, SUBSCRIBE, OPTIONS to a phone …) reach the
        // contacts of the extension named in the Request-URI.
        let target = dialled.parse::<Extension>().ok();
        let Some(target) = target.filter(|t| cx.registrar.accounts().is_active(t)) else {
            return Some((404, Vec::new()));
        };
        let peers = self.contact_peers(cx, &target);
        if peers.is_empty() {
            return Some((480, Vec::new()));
        }
        let id = self.new_proxied(cx, msg, peer, key, None, now.instant + NON_INVITE_LIMIT);
        if let Some(p) = self.by_id.get_mut(&id) {
            p.caller = Some(caller);
        }
        for (uri, p) in peers {
            self.add_branch(cx, id, Some(&uri), p, Some(target.clone()), now);
        }
        None
    }
}

/// Is this a SIPS URI?
fn is_sips(uri: &str) -> bool {
    uri.get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"))
}

#[cfg(test)]
mod tests;
