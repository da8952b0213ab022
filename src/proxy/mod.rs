//! The stateful proxy (RFC 3261 §16, DESIGN D1): authenticates out-of-dialog requests from
//! extensions (407), routes initial INVITEs by the caller's OPD dialplan, forks to every
//! contact of the target (parallel) or hunts member by member (sequential), Record-Routes
//! (`;lr`, double when the transport changes) so every in-dialog request passes through,
//! relays CANCEL, picks the best final response, detects loops (482) and spent Max-Forwards
//! (483), applies forward-on-busy/no-answer, and feeds the call records.
//!
//! Sans-IO: these are methods of [`Switch`] working on its transaction tables and tables of
//! proxied requests; they queue transmits and never touch a socket or the clock.

pub mod build;
pub mod dialog;
pub mod media;
pub mod records;
pub mod toll;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::dialplan::route::{Decision, Directory, FeatureAction, Features, RingTarget, Routing};
use crate::dialplan::{NumberClass, Strategy};
use crate::registrar::{Accounts, Now, Verdict};
use crate::sip::headers::{NameAddr, Uri};
use crate::sip::message::{HeaderName, Message, Method};
use crate::sip::response;
use crate::sip::transaction::{Peer, ResponseDisposition, TransactionKey, Transmit, TxMethod};
use crate::store::Disposition;
use crate::switch::Switch;
use crate::types::{Extension, OpdCode, Transport};

use build::Hop;
use dialog::{DialogError, Party, TOKEN_PARAM};
use records::NewCall;
use toll::Rule;

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

struct CallCtx {
    caller: Extension,
    from_tag: String,
    /// Members still to ring, for sequential hunting.
    queue: Vec<RingTarget>,
    member_timeout: Option<Duration>,
    /// Forward-on-busy / no-answer of a single-target call.
    forward_busy: Option<(Extension, String)>,
    forward_no_answer: Option<(Extension, String)>,
    fallbacks: u8,
}

/// The proxy's tables.
#[derive(Default)]
pub struct ProxyState {
    next_id: u64,
    by_id: HashMap<u64, Proxied>,
    by_server: HashMap<TransactionKey, u64>,
    /// Our branch id → (proxied request, branch index).
    by_branch: HashMap<String, (u64, usize)>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl ProxyState {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }
}

/// The extension directory as the dialplan evaluator sees it.
struct Dir<'a>(&'a Accounts);

impl Directory for Dir<'_> {
    fn is_assigned(&self, ext: &Extension) -> bool {
        self.0.is_active(ext)
    }

    fn features(&self, ext: &Extension) -> Features {
        self.0
            .get(ext)
            .map(|a| a.features.clone())
            .unwrap_or_default()
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

impl Switch {
    // ---- network helpers ------------------------------------------------------------------

    /// Does this Route/Request-URI name the switch? Only when its host and port are those of
    /// one of our listeners (the URI's default port when it has none: 5061 for `sips:` and
    /// `;transport=tls`, else 5060). The configured domain matches by name alone only when it
    /// is a name: a domain that is an IP literal is an address like any other, so a phone on
    /// the switch's own IP at another port is not the switch.
    pub(crate) fn names_us(&self, uri: &str) -> bool {
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
            return self.net.is_ours(SocketAddr::new(ip, port));
        }
        let is_domain = self
            .net
            .domain
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(host) && d.parse::<IpAddr>().is_err());
        is_domain && (u.port.is_none() || self.net.listens_on_port(port))
    }

    /// How many Route values at the top name us.
    fn our_routes(&self, msg: &Message) -> usize {
        msg.values(HeaderName::Route)
            .take_while(|v| {
                NameAddr::parse(v)
                    .map(|na| self.names_us(na.uri))
                    .unwrap_or(false)
            })
            .count()
    }

    /// A peer to send to: UDP from a socket of the right family, TCP over an open connection.
    fn binding_peer(&self, addr: SocketAddr, transport: Transport, conn: Option<u64>) -> Peer {
        match transport {
            Transport::Udp => self.net.udp_peer(addr),
            _ => Peer {
                addr,
                transport,
                conn: conn
                    .filter(|c| self.net.conns.contains_key(c))
                    .or_else(|| self.net.conn_to(addr, transport)),
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
        inbound: (&Peer, bool),
        outbound: (&Peer, bool),
        token: Option<&str>,
    ) -> Vec<String> {
        let tbd = token.map_or(String::new(), |t| format!(";{TOKEN_PARAM}={t}"));
        let rr = |(p, sips): (&Peer, bool)| -> Option<String> {
            let local = self.net.local_of(p)?;
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
        self.proxy.next_id += 1;
        let core = format!("{}.{:x}", loop_hash(msg), self.proxy.next_id);
        let mac = self.dialog_key.branch_mac(&core, upstream);
        format!("{BRANCH_PREFIX}{core}.{mac}")
    }

    // ---- entry points from the switch -------------------------------------------------------

    /// A new request that is not for the switch itself. Returns a status to answer with when
    /// the proxy does not take it (the caller builds the response), `None` once handled.
    pub(crate) fn proxy_request(
        &mut self,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        now: Now,
    ) -> Option<(u16, Vec<String>)> {
        let method = msg.method()?.clone();
        let routes = self.our_routes(msg);
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
            return self.forward_in_dialog(msg, peer, key, routes, now);
        }
        // Out of dialog: something starts here. Who is calling? (A phone with an outbound
        // proxy pre-loads `Route: <sip:switch;lr>`: that Route is ours, removed on every branch.)
        let caller =
            match self
                .registrar
                .authenticate(msg, HeaderName::ProxyAuthorization, now.unix)
            {
                Verdict::Authenticated(ext) => ext,
                Verdict::Challenge { stale, failed } => {
                    if failed {
                        let user = msg.from().ok().and_then(|f| uri_user(f.uri));
                        self.handle_auth_failure(&peer, method.as_str(), user.as_deref(), now);
                    }
                    return Some((
                        407,
                        self.registrar.authn.challenge(msg, true, stale, now.unix),
                    ));
                }
            };
        let from_user = msg.from().ok().and_then(|f| uri_user(f.uri));
        if from_user.as_deref() != Some(caller.as_str()) {
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
        let dialled = uri_user(msg.request_uri().unwrap_or("")).unwrap_or_default();
        if method == Method::Invite {
            self.start_call(msg, peer, key, caller, &dialled, now);
            return None;
        }
        // Other out-of-dialog requests (MESSAGE, SUBSCRIBE, OPTIONS to a phone …) reach the
        // contacts of the extension named in the Request-URI.
        let target = dialled.parse::<Extension>().ok();
        let Some(target) = target.filter(|t| self.registrar.accounts().is_active(t)) else {
            return Some((404, Vec::new()));
        };
        let peers = self.contact_peers(&target);
        if peers.is_empty() {
            return Some((480, Vec::new()));
        }
        let id = self.new_proxied(msg, peer, key, None, now.instant + NON_INVITE_LIMIT);
        if let Some(p) = self.proxy.by_id.get_mut(&id) {
            p.caller = Some(caller);
        }
        for (uri, p) in peers {
            self.add_branch(id, Some(&uri), p, Some(target.clone()), 0, now);
        }
        None
    }

    fn new_proxied(
        &mut self,
        msg: &Message,
        upstream: Peer,
        key: &TransactionKey,
        call: Option<CallCtx>,
        deadline: Instant,
    ) -> u64 {
        let caller = call.as_ref().map(|c| c.caller.clone());
        self.proxy.next_id += 1;
        let id = self.proxy.next_id;
        self.proxy.by_id.insert(
            id,
            Proxied {
                method: msg.method().cloned().unwrap_or(Method::Invite),
                server_key: key.clone(),
                upstream,
                request: msg.clone(),
                branches: Vec::new(),
                best: None,
                final_sent: false,
                answered: false,
                cancelled: false,
                call,
                pop_routes: self.our_routes(msg),
                deadline,
                caller,
                dialog_token: None,
            },
        );
        self.proxy.by_server.insert(key.clone(), id);
        self.proxy.deadlines.push(Reverse((deadline, id)));
        id
    }

    /// (contact URI, peer) for every binding of an extension.
    fn contact_peers(&self, ext: &Extension) -> Vec<(String, Peer)> {
        self.registrar
            .location
            .bindings(ext)
            .iter()
            .map(|b| {
                (
                    b.uri.clone(),
                    self.binding_peer(b.source, b.transport, b.conn),
                )
            })
            .collect()
    }

    /// Sends the request on a new branch. `pop_routes` Route values naming us are removed.
    fn add_branch(
        &mut self,
        id: u64,
        request_uri: Option<&str>,
        peer: Peer,
        member: Option<Extension>,
        pop_routes: usize,
        now: Now,
    ) {
        let Some(p) = self.proxy.by_id.get(&id) else {
            return;
        };
        let request = p.request.clone();
        let upstream = p.upstream;
        let pop_routes = pop_routes.max(p.pop_routes);
        let Some(local) = self.net.local_of(&peer) else {
            tracing::debug!(%peer.addr, "no socket to reach this target");
            return;
        };
        let branch = self.next_branch(&request, upstream.addr);
        let via = format!(
            "SIP/2.0/{} {local};branch={branch};rport",
            peer.transport.via_token()
        );
        let is_dialog_creating = matches!(
            request.method(),
            Some(Method::Invite | Method::Subscribe | Method::Refer | Method::Notify)
        );
        let rr = if is_dialog_creating {
            let received_sips = request.request_uri().is_some_and(is_sips);
            let sent_sips = request_uri.map_or(received_sips, is_sips);
            let token = self.dialog_token_for(id, &request, &upstream, &peer, member.as_ref());
            self.record_route(
                (&upstream, received_sips),
                (&peer, sent_sips),
                token.as_deref(),
            )
        } else {
            Vec::new()
        };
        let bytes = build::forward_request(
            &request,
            &Hop {
                via: &via,
                record_route: &rr,
                request_uri,
                pop_routes,
                // Credentials were for us; in-dialog requests carry none of ours.
                strip_proxy_authorization: request.to_tag().is_none(),
            },
        );
        let Ok(sent) = Message::parse_framed(bytes.clone(), &self.limits_relaxed()) else {
            tracing::warn!("forwarded request does not parse; dropped");
            return;
        };
        let method = TxMethod::from_token(request.method().map_or("INVITE", |m| m.as_str()));
        let key = TransactionKey::new(branch.clone(), &local.to_string(), method);
        let t = self.client.start(key.clone(), bytes, peer, now.instant);
        self.transmits.push_back(t);
        let Some(p) = self.proxy.by_id.get_mut(&id) else {
            return;
        };
        p.branches.push(Branch {
            key,
            peer,
            sent,
            member,
            done: false,
            provisional: false,
            cancel_pending: false,
            cancelled: false,
        });
        self.proxy
            .by_branch
            .insert(branch, (id, p.branches.len() - 1));
    }

    // ---- calls ------------------------------------------------------------------------------

    fn start_call(
        &mut self,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        caller: Extension,
        dialled: &str,
        now: Now,
    ) {
        // 100 Trying at once: the phone stops retransmitting while we route.
        let trying = response::build(msg, peer.addr, 100, None, &[], None);
        if let Some(t) = self
            .server
            .send_response(key, 100, trying, peer, now.instant)
        {
            self.transmits.push_back(t);
        }
        let routing = self.dialplan.route(
            &caller,
            dialled,
            now.unix as i64,
            &Dir(self.registrar.accounts()),
        );
        let from_tag = msg.from_tag().unwrap_or("").to_string();
        let caller_opd = self
            .registrar
            .accounts()
            .get(&caller)
            .map(|a| a.opd.clone());
        let call_id = msg.call_id().unwrap_or("").to_string();
        let (route_desc, trunk) = describe(&routing);
        self.records.start(
            NewCall {
                call_id,
                from_tag: from_tag.clone(),
                caller: caller.clone(),
                caller_opd,
                dialled: dialled.to_string(),
                route: route_desc,
                trunk,
            },
            now.unix_ms,
        );
        let ctx = CallCtx {
            caller,
            from_tag,
            queue: Vec::new(),
            member_timeout: None,
            forward_busy: None,
            forward_no_answer: None,
            fallbacks: 0,
        };
        let anchored = match routing.decision {
            Decision::Ring(_) | Decision::Trunk { .. } => self.media_offer(msg, media::Leg::A),
            _ => None,
        };
        let msg = anchored.as_ref().unwrap_or(msg);
        let id = self.new_proxied(msg, peer, key, Some(ctx), now.instant + TIMER_C);
        self.apply_routing(id, routing, now);
    }

    /// Acts on a routing decision for call `id` (first routing or a fallback).
    fn apply_routing(&mut self, id: u64, routing: Routing, now: Now) {
        let desc = describe(&routing).0;
        match routing.decision {
            Decision::Reject { status, reason } => {
                tracing::debug!(status, %reason, "call rejected by the dialplan");
                match routing.denied {
                    // Refused an outside class for lack of permission: a blocked attempt.
                    Some(class) if class != NumberClass::Internal => {
                        self.block(id, Rule::Permission(class), status, None, &desc, now);
                    }
                    _ => self.respond_final(id, status, now),
                }
            }
            Decision::Feature(action) => {
                let Some(caller) = self.call_ctx(id).map(|c| c.caller.clone()) else {
                    return;
                };
                self.apply_feature(&caller, action);
                // A proxy cannot play a confirmation tone; the phone sees this final answer.
                self.respond_final(id, 480, now);
            }
            Decision::Trunk {
                number, emergency, ..
            } => {
                if !self.admit_trunk(id, routing.trunk_caller.as_ref(), emergency, &number, now) {
                    return;
                }
                let trunk = &self.dialplan.province().trunk;
                let host = trunk.host.clone();
                let port = trunk.port;
                let transport = trunk.transport;
                let Some(ip) = host.parse::<IpAddr>().ok() else {
                    self.respond_final(id, 503, now);
                    return;
                };
                let addr = SocketAddr::new(ip, port);
                let peer = self.binding_peer(addr, transport, None);
                let host_part = match ip {
                    IpAddr::V6(_) => format!("[{host}]"),
                    IpAddr::V4(_) => host,
                };
                let uri = format!("sip:{number}@{host_part}:{port}");
                self.add_branch(id, Some(&uri), peer, None, 0, now);
                if self.pending_branches(id) == 0 {
                    self.respond_final(id, 503, now);
                }
            }
            Decision::Ring(plan) => {
                let (members, timeout, member_timeout) = match plan.strategy {
                    Strategy::Parallel { timeout_secs } => {
                        (plan.members, Duration::from_secs(timeout_secs.into()), None)
                    }
                    Strategy::Sequential {
                        member_timeout_secs,
                    } => {
                        let n = plan.members.len().max(1) as u64;
                        (
                            plan.members,
                            Duration::from_secs(u64::from(member_timeout_secs) * n),
                            Some(Duration::from_secs(member_timeout_secs.into())),
                        )
                    }
                };
                let single = members.len() == 1;
                if let Some(ctx) = self.call_ctx_mut(id) {
                    ctx.member_timeout = member_timeout;
                    ctx.forward_busy = None;
                    ctx.forward_no_answer = None;
                    if single {
                        let m = &members[0];
                        ctx.forward_busy = m.forward_busy.clone().map(|t| (m.extension.clone(), t));
                        ctx.forward_no_answer = m
                            .forward_no_answer
                            .clone()
                            .map(|(t, _)| (m.extension.clone(), t));
                    }
                }
                // A single extension's own no-answer time wins over the plan's.
                let ring_for = match members.first() {
                    Some(m) if single => m
                        .forward_no_answer
                        .as_ref()
                        .map_or(timeout, |(_, s)| Duration::from_secs((*s).into())),
                    _ => timeout,
                };
                match member_timeout {
                    Some(mt) => {
                        if let Some(ctx) = self.call_ctx_mut(id) {
                            ctx.queue = members.into_iter().rev().collect();
                        }
                        self.set_deadline(id, now.instant + mt);
                        self.ring_next_member(id, now);
                    }
                    None => {
                        self.set_deadline(id, now.instant + ring_for.min(TIMER_C));
                        for m in members {
                            self.ring_member(id, &m, now);
                        }
                        if self.pending_branches(id) == 0 {
                            // No phone registered: the call could not be set up at all.
                            self.respond_final_as(id, 480, Some(Disposition::Failed), now);
                        }
                    }
                }
            }
        }
    }

    /// Asks the toll guard whether call `id` may go to the trunk, charged to `charged` (the
    /// extension whose permissions sent it there). A refused call is answered and recorded
    /// as blocked; returns whether it may go on.
    fn admit_trunk(
        &mut self,
        id: u64,
        charged: Option<&Extension>,
        emergency: bool,
        number: &str,
        now: Now,
    ) -> bool {
        self.settle_toll();
        let Some((call_id, from_tag)) = self.call_ids(id) else {
            return true;
        };
        let fallback = self.call_ctx(id).is_some_and(|c| c.fallbacks > 0);
        if fallback {
            // Routed again to the trunk (a forward on busy or no answer).
            let route = if emergency {
                format!("{EMERGENCY_ROUTE} {number}")
            } else {
                format!("trunk {number}")
            };
            self.records.rerouted(&call_id, &from_tag, route, true);
        }
        let key = (call_id, from_tag);
        let charged = match (emergency, charged) {
            (false, Some(ext)) => ext.clone(),
            _ => {
                self.toll.admit_emergency(key);
                return true;
            }
        };
        let opd = self
            .registrar
            .accounts()
            .get(&charged)
            .map(|a| a.opd.clone());
        match self.toll.admit(key, &charged, opd.as_ref(), now.instant) {
            Ok(()) => true,
            Err(rule) => {
                let desc = format!("trunk {number}");
                self.block(id, rule, rule.status(), Some((&charged, opd)), &desc, now);
                false
            }
        }
    }

    /// Refuses call `id` for `rule` with `status` and a `Warning` naming the rule; logs one
    /// line and records the call as `blocked`. `charged` is the extension (and OPD) the toll
    /// guard counted; for a permission refusal, the caller's OPD is counted here.
    fn block(
        &mut self,
        id: u64,
        rule: Rule,
        status: u16,
        charged: Option<(&Extension, Option<OpdCode>)>,
        desc: &str,
        now: Now,
    ) {
        let Some(p) = self.proxy.by_id.get(&id) else {
            return;
        };
        let source = p.upstream.addr;
        let dialled = uri_user(p.request.request_uri().unwrap_or("")).unwrap_or_default();
        let caller = p.call.as_ref().map(|c| c.caller.clone());
        let (ext, opd) = match charged {
            Some((ext, opd)) => (Some(ext.clone()), opd),
            None => {
                let opd = caller
                    .as_ref()
                    .and_then(|c| self.registrar.accounts().get(c))
                    .map(|a| a.opd.clone());
                if let Rule::Permission(class) = rule {
                    self.toll.count_denied(class, opd.as_ref());
                }
                (caller.clone(), opd)
            }
        };
        tracing::warn!(
            target: "tambun::toll",
            rule = rule.name(),
            "trunk call blocked from {} extension '{}' OPD '{}' dialled '{}': {rule}",
            source.ip(),
            ext.as_ref().map_or("", |e| e.as_str()),
            opd.as_ref().map_or("", |o| o.as_str()),
            dialled,
        );
        if let Some((call_id, from_tag)) = self.call_ids(id) {
            let route = format!("blocked ({}): {desc}", rule.name());
            self.records.rerouted(&call_id, &from_tag, route, false);
        }
        let warning = format!("Warning: 399 tambun \"{rule}\"");
        self.respond_final_full(id, status, Some(Disposition::Blocked), &[warning], now);
    }

    fn ring_member(&mut self, id: u64, m: &RingTarget, now: Now) {
        let peers = self.contact_peers(&m.extension);
        if let Some((call_id, from_tag)) = self.call_ids(id) {
            let opd = self
                .registrar
                .accounts()
                .get(&m.extension)
                .map(|a| a.opd.clone());
            self.records
                .ringing(&call_id, &from_tag, m.extension.as_str(), opd);
        }
        for (uri, p) in peers {
            self.add_branch(id, Some(&uri), p, Some(m.extension.clone()), 0, now);
        }
    }

    /// Sequential hunting: rings the next member that has a registration.
    fn ring_next_member(&mut self, id: u64, now: Now) {
        loop {
            let Some(m) = self.call_ctx_mut(id).and_then(|c| c.queue.pop()) else {
                if self.pending_branches(id) == 0 {
                    self.finish_with_best(id, 480, now);
                }
                return;
            };
            self.ring_member(id, &m, now);
            if self.pending_branches(id) > 0 {
                if let Some(mt) = self.call_ctx(id).and_then(|c| c.member_timeout) {
                    self.set_deadline(id, now.instant + mt);
                }
                return;
            }
        }
    }

    fn apply_feature(&mut self, ext: &Extension, action: FeatureAction) {
        tracing::info!(extension = %ext, ?action, "feature code");
        self.registrar.update_features(ext, &action);
        self.effects.push(Effect::Feature(ext.clone(), action));
    }

    fn call_ctx(&self, id: u64) -> Option<&CallCtx> {
        self.proxy.by_id.get(&id)?.call.as_ref()
    }

    fn call_ctx_mut(&mut self, id: u64) -> Option<&mut CallCtx> {
        self.proxy.by_id.get_mut(&id)?.call.as_mut()
    }

    fn call_ids(&self, id: u64) -> Option<(String, String)> {
        let p = self.proxy.by_id.get(&id)?;
        let c = p.call.as_ref()?;
        Some((p.request.call_id().ok()?.to_string(), c.from_tag.clone()))
    }

    fn set_deadline(&mut self, id: u64, at: Instant) {
        if let Some(p) = self.proxy.by_id.get_mut(&id) {
            p.deadline = at;
            self.proxy.deadlines.push(Reverse((at, id)));
        }
    }

    fn pending_branches(&self, id: u64) -> usize {
        self.proxy
            .by_id
            .get(&id)
            .map_or(0, |p| p.branches.iter().filter(|b| !b.done).count())
    }

    /// Sends a final response of our own upstream and records the failure.
    fn respond_final(&mut self, id: u64, status: u16, now: Now) {
        self.respond_final_as(id, status, None, now);
    }

    /// As [`Self::respond_final`], with the disposition for the record when the status alone
    /// does not tell it.
    fn respond_final_as(
        &mut self,
        id: u64,
        status: u16,
        disposition: Option<Disposition>,
        now: Now,
    ) {
        self.respond_final_full(id, status, disposition, &[], now);
    }

    /// As [`Self::respond_final_as`], with `extra` header lines in the response.
    fn respond_final_full(
        &mut self,
        id: u64,
        status: u16,
        disposition: Option<Disposition>,
        extra: &[String],
        now: Now,
    ) {
        let Some(p) = self.proxy.by_id.get_mut(&id) else {
            return;
        };
        if p.final_sent {
            return;
        }
        p.final_sent = true;
        let bytes = response::build(
            &p.request,
            p.upstream.addr,
            status,
            Some(&response::our_to_tag(&p.request)),
            extra,
            None,
        );
        let (key, upstream) = (p.server_key.clone(), p.upstream);
        if let Some(t) = self
            .server
            .send_response(&key, status, bytes, upstream, now.instant)
        {
            self.transmits.push_back(t);
        }
        if let Some((call_id, from_tag)) = self.call_ids(id) {
            match disposition {
                Some(d) => self
                    .records
                    .failed_as(&call_id, &from_tag, d, status, now.unix_ms),
                None => self
                    .records
                    .failed(&call_id, &from_tag, status, now.unix_ms),
            }
        }
        self.cancel_pending(id, now);
        self.maybe_forget(id);
    }

    /// Sends the best final response collected (or `fallback` if none) upstream.
    fn finish_with_best(&mut self, id: u64, fallback: u16, now: Now) {
        let Some(p) = self.proxy.by_id.get_mut(&id) else {
            return;
        };
        if p.final_sent {
            self.maybe_forget(id);
            return;
        }
        match p.best.take() {
            Some(best) => {
                p.final_sent = true;
                let status = best.status().unwrap_or(500);
                let bytes = build::forward_response(&best);
                let (key, upstream) = (p.server_key.clone(), p.upstream);
                if let Some(t) =
                    self.server
                        .send_response(&key, status, bytes, upstream, now.instant)
                {
                    self.transmits.push_back(t);
                }
                if let Some((call_id, from_tag)) = self.call_ids(id) {
                    self.records
                        .failed(&call_id, &from_tag, status, now.unix_ms);
                }
                self.maybe_forget(id);
            }
            None => self.respond_final(id, fallback, now),
        }
    }

    /// CANCELs every branch still ringing (RFC 3261 §16.7 step 10).
    fn cancel_pending(&mut self, id: u64, now: Now) {
        let Some(p) = self.proxy.by_id.get_mut(&id) else {
            return;
        };
        if p.method != Method::Invite {
            return;
        }
        let mut out = Vec::new();
        for b in p.branches.iter_mut().filter(|b| !b.done && !b.cancelled) {
            if b.provisional {
                b.cancelled = true;
                out.push((b.key.clone(), build::cancel_for(&b.sent), b.peer));
            } else {
                // RFC 3261 §9.1: wait for a provisional response before cancelling.
                b.cancel_pending = true;
            }
        }
        for (key, bytes, peer) in out {
            let ckey = TransactionKey::new(key.branch.clone(), &key.sent_by, TxMethod::Cancel);
            let t = self.client.start(ckey, bytes, peer, now.instant);
            self.transmits.push_back(t);
        }
    }

    fn maybe_forget(&mut self, id: u64) {
        let done = self
            .proxy
            .by_id
            .get(&id)
            .is_some_and(|p| p.final_sent && p.branches.iter().all(|b| b.done));
        if done {
            self.forget(id);
        }
    }

    fn forget(&mut self, id: u64) {
        if let Some(p) = self.proxy.by_id.remove(&id) {
            self.proxy.by_server.remove(&p.server_key);
            for b in &p.branches {
                self.proxy.by_branch.remove(&b.key.branch);
            }
        }
    }

    /// A CANCEL for an INVITE we are proxying (RFC 3261 §16.10).
    /// The CANCEL must come from where its INVITE came from (the same address, and the same
    /// port over UDP): its branch and sent-by are in plain sight in the INVITE's Via, so
    /// anyone who saw them could otherwise hang up a ringing call.
    pub(crate) fn proxy_cancel(
        &mut self,
        msg: &Message,
        source: &Peer,
        now: Now,
    ) -> (u16, Vec<String>) {
        let Some(invite_key) = msg
            .transaction_key()
            .map(|k| TransactionKey::new(k.branch, &k.sent_by, TxMethod::Invite))
        else {
            return (481, Vec::new());
        };
        let Some(&id) = self.proxy.by_server.get(&invite_key) else {
            return (481, Vec::new());
        };
        let Some(p) = self.proxy.by_id.get_mut(&id) else {
            return (481, Vec::new());
        };
        let up = p.upstream;
        let same_source = up.addr.ip().to_canonical() == source.addr.ip().to_canonical()
            && (up.transport.is_reliable() || up.addr.port() == source.addr.port());
        if !same_source {
            tracing::warn!(
                target: "tambun::dialog",
                "CANCEL refused from {}: its INVITE came from another address",
                source.addr.ip()
            );
            self.guard.handle_forged_dialog(source.addr.ip(), now);
            return (481, Vec::new());
        }
        p.cancelled = true;
        self.cancel_pending(id, now);
        if self.pending_branches(id) == 0 {
            self.respond_final(id, 487, now);
        } else {
            // The branches answer our CANCELs with 487, which goes to the caller as the best
            // response; a branch that stays silent is not waited for long.
            self.set_deadline(id, now.instant + CANCEL_GRACE);
        }
        (200, Vec::new())
    }

    /// A response from `source` for one of our branches. One that matches none of our transactions (stray) counts
    /// against its source's request rate, as a request would: forwarding stray 2xx statelessly
    /// (RFC 3261 §16.7) must not make the switch a free reflector, and a flood of made-up
    /// responses must cost its sender a ban. Responses to our own requests are never limited.
    pub(crate) fn proxy_response(&mut self, msg: Message, source: IpAddr, now: Now) {
        let Ok(via) = msg.top_via() else { return };
        let Some(branch) = via.branch().map(str::to_string) else {
            return;
        };
        let Some(&(id, idx)) = self.proxy.by_branch.get(&branch) else {
            // Our own requests (the BYEs of a media timeout) have a client transaction only.
            if let Ok(cseq) = msg.cseq() {
                let key = TransactionKey::new(
                    branch.clone(),
                    &via.sent_by(),
                    TxMethod::from_token(cseq.method.as_str()),
                );
                let status = msg.status().unwrap_or(500);
                if !matches!(
                    self.client.handle_response(&key, status, now.instant),
                    ResponseDisposition::NoTransaction
                ) {
                    return;
                }
            }
            if self.guard.admit_request(source, None, now) == crate::guard::Admission::Pass {
                self.stray_response(&msg);
            }
            return;
        };
        let Ok(cseq) = msg.cseq() else { return };
        let status = msg.status().unwrap_or(500);
        let tx_method = TxMethod::from_token(cseq.method.as_str());
        let sent_by = via.sent_by();
        let key = TransactionKey::new(branch.clone(), &sent_by, tx_method.clone());
        if tx_method == TxMethod::Cancel {
            // The answer to our CANCEL: nothing to do.
            let _ = self.client.handle_response(&key, status, now.instant);
            return;
        }
        match self.client.handle_response(&key, status, now.instant) {
            ResponseDisposition::Absorb(t) => {
                if let Some(t) = t {
                    self.transmits.push_back(t);
                }
                return;
            }
            ResponseDisposition::NoTransaction => {
                // A 2xx retransmission after the transaction ended: still forward it.
                if (200..300).contains(&status) {
                    self.forward_upstream(id, &msg, status, now);
                }
                return;
            }
            ResponseDisposition::ForwardNeedsAck => {
                let ack = self
                    .proxy
                    .by_id
                    .get(&id)
                    .and_then(|p| p.branches.get(idx))
                    .map(|b| build::ack_for(&b.sent, &msg));
                if let Some(ack) = ack {
                    if let Some(t) = self.client.send_ack(&key, ack) {
                        self.transmits.push_back(t);
                    }
                }
            }
            ResponseDisposition::Forward => {}
        }
        self.branch_response(id, idx, msg, status, now);
    }

    fn branch_response(&mut self, id: u64, idx: usize, msg: Message, status: u16, now: Now) {
        let Some(p) = self.proxy.by_id.get_mut(&id) else {
            return;
        };
        let is_invite = p.method == Method::Invite;
        let Some(b) = p.branches.get_mut(idx) else {
            return;
        };
        if status < 200 {
            b.provisional = true;
            let cancel_now = b.cancel_pending && !b.cancelled;
            b.cancel_pending = false;
            b.cancelled |= cancel_now;
            let (bkey, bsent, bpeer) = (b.key.clone(), b.sent.clone(), b.peer);
            if cancel_now {
                let ckey = TransactionKey::new(bkey.branch, &bkey.sent_by, TxMethod::Cancel);
                let t = self
                    .client
                    .start(ckey, build::cancel_for(&bsent), bpeer, now.instant);
                self.transmits.push_back(t);
                return;
            }
            if status > 100 && !p.final_sent {
                self.forward_upstream(id, &msg, status, now);
            }
            return;
        }
        b.done = true;
        let member = b.member.clone();
        if (200..300).contains(&status) {
            let first = !p.answered;
            p.answered = true;
            p.final_sent = true;
            if is_invite && first {
                if let Some((call_id, from_tag)) = self.call_ids(id) {
                    let to_tag = msg.to_tag().map(str::to_string);
                    let opd = member
                        .as_ref()
                        .and_then(|m| self.registrar.accounts().get(m))
                        .map(|a| a.opd.clone());
                    self.records.answered(
                        &call_id,
                        &from_tag,
                        to_tag.as_deref(),
                        member.map(|m| m.to_string()),
                        opd,
                        session_expires(&msg),
                        now.instant,
                        now.unix_ms,
                    );
                }
            }
            self.forward_upstream(id, &msg, status, now);
            if is_invite {
                self.cancel_pending(id, now);
            }
            self.after_final_2xx(id, &msg, now);
            self.maybe_forget(id);
            return;
        }
        // 3xx–6xx: keep the best; decide when every branch has answered.
        if !p.final_sent {
            let better = p
                .best
                .as_ref()
                .is_none_or(|b| rank(status) < rank(b.status().unwrap_or(500)));
            if better {
                p.best = Some(msg);
            }
        }
        if status >= 600 && is_invite {
            self.cancel_pending(id, now);
        }
        if self.pending_branches(id) > 0 {
            return;
        }
        if self.try_fallback(id, status, now) {
            return;
        }
        // Sequential hunting goes on to the next member.
        let hunting = self
            .call_ctx(id)
            .is_some_and(|c| c.member_timeout.is_some() && !c.queue.is_empty());
        let cancelled = self.proxy.by_id.get(&id).is_some_and(|p| p.cancelled);
        if hunting && status < 600 && !cancelled {
            self.ring_next_member(id, now);
            return;
        }
        self.finish_with_best(id, 480, now);
    }

    /// Forward-on-busy for a single-target call that got 486 from every contact.
    fn try_fallback(&mut self, id: u64, status: u16, now: Now) -> bool {
        let Some(p) = self.proxy.by_id.get(&id) else {
            return false;
        };
        if p.final_sent || p.cancelled {
            return false;
        }
        let Some(ctx) = p.call.as_ref() else {
            return false;
        };
        if status != 486 || ctx.fallbacks >= MAX_FALLBACKS {
            return false;
        }
        let Some((ext, target)) = ctx.forward_busy.clone() else {
            return false;
        };
        self.fallback(id, &ext, &target, now);
        true
    }

    fn fallback(&mut self, id: u64, ext: &Extension, target: &str, now: Now) {
        tracing::debug!(%ext, target, "call forwarded");
        if let Some(ctx) = self.call_ctx_mut(id) {
            ctx.fallbacks += 1;
        }
        if let Some(p) = self.proxy.by_id.get_mut(&id) {
            p.best = None;
        }
        // The forwarding extension's permissions apply to where it forwards to.
        let routing = self.dialplan.route(
            ext,
            target,
            now.unix as i64,
            &Dir(self.registrar.accounts()),
        );
        self.apply_routing(id, routing, now);
    }

    /// After the 2xx of an in-dialog request: BYE ends the call record, a refresh extends it.
    fn after_final_2xx(&mut self, id: u64, msg: &Message, now: Now) {
        let Some(p) = self.proxy.by_id.get(&id) else {
            return;
        };
        if p.call.is_some() {
            return;
        }
        let call_id = p.request.call_id().unwrap_or("").to_string();
        let from_tag = p.request.from_tag().map(str::to_string);
        let to_tag = p.request.to_tag().map(str::to_string);
        let tags = [from_tag.as_deref(), to_tag.as_deref()];
        match p.method {
            Method::Invite | Method::Update => {
                self.records
                    .refreshed(&call_id, &tags, session_expires(msg), now.instant);
            }
            _ => {}
        }
    }

    /// Forwards a response upstream through the server transaction.
    fn forward_upstream(&mut self, id: u64, msg: &Message, status: u16, now: Now) {
        let anchored = self.media_answer(id, msg, status);
        let msg = anchored.as_ref().unwrap_or(msg);
        let Some(p) = self.proxy.by_id.get(&id) else {
            return;
        };
        let bytes = build::forward_response(msg);
        let (key, upstream) = (p.server_key.clone(), p.upstream);
        match self
            .server
            .send_response(&key, status, bytes.clone(), upstream, now.instant)
        {
            Some(t) => self.transmits.push_back(t),
            None if (200..300).contains(&status) => {
                // Further 2xx (forking, retransmissions) are forwarded statelessly.
                self.transmits.push_back(Transmit {
                    peer: upstream,
                    bytes,
                });
            }
            None => {}
        }
    }

    /// A response no branch of ours matches: a late 2xx after we forgot the transaction.
    /// Forwarded by its second Via, only when the top Via's branch is one we made for that
    /// very address (its MAC, [`Self::next_branch`]): a made-up response cannot make the
    /// switch send anything anywhere else.
    fn stray_response(&mut self, msg: &Message) {
        if !msg.status().is_some_and(|s| (200..300).contains(&s)) {
            return;
        }
        let Some(core_mac) = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
            .and_then(|b| b.strip_prefix(BRANCH_PREFIX).map(str::to_string))
        else {
            return;
        };
        let Some((core, mac)) = core_mac.rsplit_once('.') else {
            return;
        };
        let Some(next) = msg.values(HeaderName::Via).nth(1) else {
            return;
        };
        let Ok(via) = crate::sip::headers::Via::parse(next) else {
            return;
        };
        let host = via.received().unwrap_or(via.host);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = host.parse::<IpAddr>() else {
            return;
        };
        let port = via.rport().flatten().or(via.port).unwrap_or(5060);
        let addr = SocketAddr::new(ip, port);
        if self.dialog_key.branch_mac(core, addr) != mac {
            tracing::debug!(%addr, "stray response for a branch we did not make there: dropped");
            return;
        }
        let peer = self.net.udp_peer(addr);
        if via.transport.eq_ignore_ascii_case("UDP") {
            self.transmits.push_back(Transmit {
                peer,
                bytes: build::forward_response(msg),
            });
        }
    }

    // ---- in-dialog requests ---------------------------------------------------------------

    /// A request inside a dialog (it has a To tag): forwarded only when it carries the token
    /// of a dialog this switch set up, comes from that dialog's party, and then only toward
    /// the other party ([`dialog`]). Anything else is answered 481 and counted by the guard.
    fn forward_in_dialog(
        &mut self,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        routes: usize,
        now: Now,
    ) -> Option<(u16, Vec<String>)> {
        let (target, token) = match self.dialog_next_hop(msg, &peer, routes) {
            Ok(hop) => hop,
            Err(e) => {
                self.refuse_in_dialog(msg, &peer, e, now);
                // One reason for every failure: which check failed is for the log, not for a
                // forger probing tokens.
                let warning = "Warning: 399 tambun \"no such dialog through this switch\"";
                return Some((481, vec![warning.to_string()]));
            }
        };
        if msg.method() == Some(&Method::Bye) {
            let call_id = msg.call_id().unwrap_or("").to_string();
            let from_tag = msg.from_tag().map(str::to_string);
            let to_tag = msg.to_tag().map(str::to_string);
            self.records.ended(
                &call_id,
                &[from_tag.as_deref(), to_tag.as_deref()],
                now.unix_ms,
            );
        }
        let limit = if msg.method() == Some(&Method::Invite) {
            TIMER_C
        } else {
            NON_INVITE_LIMIT
        };
        let anchored = self.media_in_dialog(msg);
        let msg = anchored.as_ref().unwrap_or(msg);
        let id = self.new_proxied(msg, peer, key, None, now.instant + limit);
        if let Some(p) = self.proxy.by_id.get_mut(&id) {
            p.dialog_token = Some(token);
        }
        self.add_branch(id, None, target, None, routes, now);
        if self.pending_branches(id) == 0 {
            self.forget(id);
            return Some((503, Vec::new()));
        }
        None
    }

    /// Where an in-dialog request from `source` goes: the dialog's other party, when the
    /// request carries (in one of the `routes` Route values naming us) the token of a dialog
    /// we set up, signed for its Call-ID and tags; when it comes from the party it claims
    /// to (by IP address: NAT may change ports); and when its tags agree with the call the
    /// records track (an answered call has one To tag). Returns the peer and the token.
    fn dialog_next_hop(
        &self,
        msg: &Message,
        source: &Peer,
        routes: usize,
    ) -> Result<(Peer, String), DialogError> {
        let token =
            token_in(msg.values(HeaderName::Route).take(routes)).ok_or(DialogError::NoToken)?;
        let call_id = msg.call_id().unwrap_or("");
        let (from_tag, to_tag) = (msg.from_tag(), msg.to_tag());
        let opened = self.dialog_key.open(&token, call_id, from_tag, to_tag)?;
        if !self.party_sent(&opened.sender, source.addr.ip()) {
            return Err(DialogError::WrongSource);
        }
        let (caller_tag, callee_tag) = if opened.caller_tag_is_from {
            (from_tag, to_tag)
        } else {
            (to_tag, from_tag)
        };
        if let Some(answered) = self
            .records
            .answered_to_tag(call_id, caller_tag.unwrap_or(""))
        {
            if callee_tag != Some(answered) {
                return Err(DialogError::WrongTag);
            }
        }
        let target = self.party_peer(&opened.receiver, msg.request_uri().unwrap_or(""));
        if self.net.is_ours(target.addr) {
            return Err(DialogError::Unreachable);
        }
        Ok((target, token))
    }

    /// Did a request from `ip` come from this party: the address it had when the dialog was
    /// set up, or (an extension) the source of one of its registrations now?
    fn party_sent(&self, party: &Party, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if party.addr().ip().to_canonical() == ip {
            return true;
        }
        match party {
            Party::Extension { ext, .. } => self
                .registrar
                .location
                .bindings(ext)
                .iter()
                .any(|b| b.source.ip().to_canonical() == ip),
            Party::Trunk { .. } => false,
        }
    }

    /// How to reach a dialog's party: an extension by its registration whose contact is the
    /// Request-URI (its remote target), else by its registration from the dialog's address,
    /// else at that address; the trunk at its address. Never an address taken from the
    /// request alone.
    pub(crate) fn party_peer(&self, party: &Party, request_uri: &str) -> Peer {
        match party {
            Party::Trunk { addr, transport } => self.binding_peer(*addr, *transport, None),
            Party::Extension {
                ext,
                addr,
                transport,
            } => {
                let bindings = self.registrar.location.bindings(ext);
                let binding = bindings
                    .iter()
                    .find(|b| b.uri == request_uri)
                    .or_else(|| bindings.iter().find(|b| b.source == *addr));
                match binding {
                    Some(b) => self.binding_peer(b.source, b.transport, b.conn),
                    None => self.binding_peer(*addr, *transport, None),
                }
            }
        }
    }

    /// The token a dialog-creating request on branch `peer` of proxied request `id` puts in
    /// our Record-Route: the one it carried (a target refresh inside a dialog), or a new one
    /// for its authenticated caller and this branch's extension (`member`) or the trunk.
    fn dialog_token_for(
        &self,
        id: u64,
        request: &Message,
        upstream: &Peer,
        peer: &Peer,
        member: Option<&Extension>,
    ) -> Option<String> {
        let p = self.proxy.by_id.get(&id)?;
        if let Some(t) = &p.dialog_token {
            return Some(t.clone());
        }
        let caller = Party::Extension {
            ext: p.caller.clone()?,
            addr: upstream.addr,
            transport: upstream.transport,
        };
        let callee = match member {
            Some(ext) => Party::Extension {
                ext: ext.clone(),
                addr: peer.addr,
                transport: peer.transport,
            },
            None => Party::Trunk {
                addr: peer.addr,
                transport: peer.transport,
            },
        };
        let call_id = request.call_id().ok()?;
        let from_tag = request.from_tag().unwrap_or("");
        Some(self.dialog_key.seal(call_id, from_tag, &caller, &callee))
    }

    /// One log line and a count for the guard, for a request that claimed a dialog of ours.
    fn refuse_in_dialog(&mut self, msg: &Message, source: &Peer, e: DialogError, now: Now) {
        let method = msg.method().map_or("?", |m| m.as_str());
        tracing::warn!(
            target: "tambun::dialog",
            "in-dialog request refused from {} method={}: {e}",
            source.addr.ip(),
            method
        );
        self.guard.handle_forged_dialog(source.addr.ip(), now);
    }

    /// An ACK that matches no server transaction: the ACK for a 2xx, end to end through our
    /// Record-Route. Forwarded statelessly (RFC 3261 §16.11 allows it for ACK), under the same
    /// dialog check as every in-dialog request; one that fails is dropped, logged and counted
    /// (the ACK of a challenge the switch sent statelessly is not a failure: its To tag is
    /// ours).
    pub(crate) fn proxy_ack(&mut self, msg: &Message, source: Peer, now: Now) {
        if msg.max_forwards().ok().flatten() == Some(0) {
            return;
        }
        let Some(to_tag) = msg.to_tag() else {
            return; // an ACK outside any dialog
        };
        if to_tag == response::our_to_tag(msg) {
            return; // the ACK for a final response we sent statelessly (a challenge)
        }
        let routes = self.our_routes(msg);
        let peer = match self.dialog_next_hop(msg, &source, routes) {
            Ok((peer, _)) => peer,
            Err(e) => {
                self.refuse_in_dialog(msg, &source, e, now);
                return;
            }
        };
        let Some(local) = self.net.local_of(&peer) else {
            return;
        };
        let anchored = self.media_in_dialog(msg);
        let msg = anchored.as_ref().unwrap_or(msg);
        // Stateless: the branch is a function of the ACK, so retransmissions match downstream.
        let top_branch = msg
            .top_via()
            .ok()
            .and_then(|v| v.branch().map(str::to_string))
            .unwrap_or_default();
        let branch = format!("{BRANCH_PREFIX}{}.a", hash_hex(&[&top_branch, "ack"]));
        let via = format!(
            "SIP/2.0/{} {local};branch={branch};rport",
            peer.transport.via_token()
        );
        let bytes = build::forward_request(
            msg,
            &Hop {
                via: &via,
                record_route: &[],
                request_uri: None,
                pop_routes: routes,
                strip_proxy_authorization: false,
            },
        );
        self.transmits.push_back(Transmit { peer, bytes });
    }

    // ---- timers -----------------------------------------------------------------------------

    /// Ringing timeouts and Timer C.
    pub(crate) fn proxy_timeout(&mut self, now: Now) {
        while let Some(Reverse((t, id))) = self.proxy.deadlines.peek().copied() {
            if t > now.instant {
                break;
            }
            self.proxy.deadlines.pop();
            let Some(p) = self.proxy.by_id.get(&id) else {
                continue;
            };
            if p.deadline != t {
                continue; // superseded
            }
            if p.final_sent {
                // Everything answered long ago but some branch never finished: forget it.
                self.forget(id);
                continue;
            }
            let is_invite = p.method == Method::Invite;
            if p.cancelled {
                self.respond_final(id, 487, now);
                self.forget(id);
                continue;
            }
            let hunting = p
                .call
                .as_ref()
                .is_some_and(|c| c.member_timeout.is_some() && !c.queue.is_empty());
            let no_answer = p.call.as_ref().and_then(|c| c.forward_no_answer.clone());
            let fallbacks = p.call.as_ref().map_or(0, |c| c.fallbacks);
            if !is_invite {
                self.finish_with_best(id, 408, now);
                self.forget(id);
                continue;
            }
            self.cancel_pending(id, now);
            // Branches that never answered provisionally are given up.
            if let Some(p) = self.proxy.by_id.get_mut(&id) {
                for b in p.branches.iter_mut().filter(|b| !b.provisional) {
                    b.done = true;
                }
            }
            if hunting {
                self.ring_next_member(id, now);
            } else if let (Some((ext, target)), true) = (no_answer, fallbacks < MAX_FALLBACKS) {
                self.fallback(id, &ext, &target, now);
            } else {
                self.respond_final(id, 480, now);
            }
        }
    }

    /// A client transaction gave up (Timer B/F): the branch failed with 408.
    pub(crate) fn proxy_branch_timeout(&mut self, key: &TransactionKey, now: Now) {
        if key.method == TxMethod::Cancel {
            return;
        }
        let Some(&(id, idx)) = self.proxy.by_branch.get(&key.branch) else {
            return;
        };
        let timeout = {
            let Some(p) = self.proxy.by_id.get(&id) else {
                return;
            };
            let Some(b) = p.branches.get(idx) else { return };
            if b.done {
                return;
            }
            // A 408 of our own making stands in for the silent branch.
            let bytes = response::build(&b.sent, b.peer.addr, 408, None, &[], None);
            Message::parse_framed(bytes, &self.limits_relaxed()).ok()
        };
        if let Some(msg) = timeout {
            // Our 408 has our Via on top (it was built from our own request); forwarding
            // removes it like any branch response.
            self.branch_response(id, idx, msg, 408, now);
        }
    }
}

/// The dialog token in the first of these Route/Record-Route values that has one.
pub(crate) fn token_in<'a>(values: impl Iterator<Item = &'a str>) -> Option<String> {
    values.into_iter().find_map(|v| {
        let na = NameAddr::parse(v).ok()?;
        let Ok(Uri::Sip(u)) = Uri::parse(na.uri) else {
            return None;
        };
        u.params.get(TOKEN_PARAM).flatten().map(str::to_string)
    })
}

/// Is this a SIPS URI?
fn is_sips(uri: &str) -> bool {
    uri.get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("sips:"))
}

/// Best-response ranking (RFC 3261 §16.7 step 6): lower is better.
fn rank(status: u16) -> u32 {
    match status {
        600..=699 => 0,
        486 => 10,
        487 => 11,
        400..=499 if status != 408 && status != 480 => 20 + u32::from(status - 400),
        300..=399 => 200,
        480 => 300,
        408 => 310,
        _ => 400 + u32::from(status),
    }
}

fn describe(routing: &Routing) -> (String, bool) {
    match &routing.decision {
        Decision::Ring(plan) => {
            let who: Vec<String> = plan
                .members
                .iter()
                .map(|m| m.extension.to_string())
                .collect();
            match &plan.group {
                Some(g) => (format!("group {g}: {}", who.join(",")), false),
                None => (format!("extension {}", who.join(",")), false),
            }
        }
        Decision::Trunk {
            number, emergency, ..
        } => (
            if *emergency {
                format!("{EMERGENCY_ROUTE} {number}")
            } else {
                format!("trunk {number}")
            },
            true,
        ),
        Decision::Reject { status, reason } => (format!("reject {status} {reason}"), false),
        Decision::Feature(a) => (format!("feature {a:?}"), false),
    }
}

#[cfg(test)]
mod tests;
