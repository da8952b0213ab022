//! Routing of new calls: the caller's OPD dialplan decides (ring extensions in parallel or
//! in turn, the trunk after the monthly budget and the toll guard, a refusal, a feature
//! code), forward on busy and on no answer re-route as the forwarding extension, and refusals
//! are recorded as blocked.
//!
//! Sans-IO: methods of [`Proxy`]; they start branches (`fork`) and never touch a socket.

use super::*;

/// The number a carrier gave for an outside caller (the From user, national form), or
/// `anonymous`.
pub(super) fn outside_caller(msg: &Message) -> String {
    msg.from()
        .ok()
        .and_then(|f| uri_user(f.uri))
        .map(|u| crate::trunk::number::to_national(&u))
        .filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or_else(|| "anonymous".to_owned())
}

impl Proxy {
    /// (contact URI, peer) for every binding of an extension.
    pub(super) fn contact_peers(&self, cx: &Ctx<'_>, ext: &Extension) -> Vec<(String, Peer)> {
        cx.registrar
            .location
            .bindings(ext)
            .iter()
            .map(|b| {
                (
                    b.uri.clone(),
                    self.binding_peer(cx, b.source, b.transport, b.conn),
                )
            })
            .collect()
    }

    pub(super) fn start_call(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        caller: Extension,
        now: Now,
    ) {
        let dialled = uri_user(msg.request_uri().unwrap_or("")).unwrap_or_default();
        let dialled = dialled.as_str();
        // 100 Trying at once: the phone stops retransmitting while we route.
        let trying = response::build(msg, peer.addr, 100, None, &[], None);
        if let Some(t) = cx.server.send_response(key, 100, trying, peer, now.instant) {
            cx.out.push_back(t);
        }
        let routing = cx.dialplan.route(
            &caller,
            dialled,
            now.unix as i64,
            &Dir(cx.registrar.accounts()),
        );
        let from_tag = msg.from_tag().unwrap_or("").to_string();
        let caller_opd = cx.registrar.accounts().get(&caller).map(|a| a.opd.clone());
        let call_id = msg.call_id().unwrap_or("").to_string();
        let (route_desc, trunk) = describe(&routing);
        self.records.start(
            NewCall {
                call_id,
                from_tag: from_tag.clone(),
                caller: caller.to_string(),
                caller_opd,
                dialled: dialled.to_string(),
                route: route_desc,
                trunk,
            },
            now.unix_ms,
        );
        let ctx = CallCtx::new(Some(caller), from_tag);
        self.launch(cx, msg, peer, key, ctx, routing, now);
    }

    /// A call from carrier `carrier` (the INVITE came from its address): routed by the public
    /// number it dialled (`did_from`: the Request-URI's user or the To's) to the OPD that
    /// lists it, or the operator. No digest: the carrier's address is what lets it in, and
    /// the dialplan's public numbers are all it can reach.
    pub(super) fn start_inbound_call(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        carrier: &crate::dialplan::Trunk,
        now: Now,
    ) {
        let dialled = match carrier.did_from {
            crate::dialplan::DidSource::RequestUri => msg.request_uri().and_then(uri_user),
            crate::dialplan::DidSource::To => msg.to().ok().and_then(|t| uri_user(t.uri)),
        }
        .unwrap_or_default();
        let trying = response::build(msg, peer.addr, 100, None, &[], None);
        if let Some(t) = cx.server.send_response(key, 100, trying, peer, now.instant) {
            cx.out.push_back(t);
        }
        let routing =
            cx.dialplan
                .route_inbound(&dialled, now.unix as i64, &Dir(cx.registrar.accounts()));
        let caller_number = outside_caller(msg);
        let from_tag = msg.from_tag().unwrap_or("").to_string();
        let call_id = msg.call_id().unwrap_or("").to_string();
        let route = format!(
            "inbound {} from {}: {}",
            crate::trunk::number::to_national(&dialled),
            carrier.name,
            describe(&routing).0
        );
        tracing::info!(trunk = %carrier.name, from = %caller_number, to = %dialled, "inbound call");
        self.records.start(
            NewCall {
                call_id,
                from_tag: from_tag.clone(),
                caller: caller_number,
                caller_opd: None,
                dialled: dialled.clone(),
                route,
                trunk: false,
            },
            now.unix_ms,
        );
        let ctx = CallCtx::new(None, from_tag);
        self.launch(cx, msg, peer, key, ctx, routing, now);
    }

    /// A new call's media offer anchored (when it rings phones or goes to the trunk), its
    /// proxied request created, and its routing decision acted on.
    #[allow(clippy::too_many_arguments)]
    fn launch(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        ctx: CallCtx,
        routing: Routing,
        now: Now,
    ) {
        let anchored = match routing.decision {
            Decision::Ring(_) | Decision::Trunk { .. } => self.media_offer(msg, media::Leg::A),
            _ => None,
        };
        let msg = anchored.as_ref().unwrap_or(msg);
        let id = self.new_proxied(cx, msg, peer, key, Some(ctx), now.instant + TIMER_C);
        self.apply_routing(cx, id, routing, now);
    }

    /// Acts on a routing decision for call `id` (first routing or a fallback).
    pub(super) fn apply_routing(&mut self, cx: &mut Ctx<'_>, id: u64, routing: Routing, now: Now) {
        let desc = describe(&routing).0;
        match routing.decision {
            Decision::Reject { status, reason } => {
                tracing::debug!(status, %reason, "call rejected by the dialplan");
                match routing.denied {
                    // Refused an outside class for lack of permission: a blocked attempt.
                    Some(class) if class != NumberClass::Internal => {
                        let refusal = Refusal {
                            rule: Rule::Permission(class),
                            status,
                            charged: None,
                            desc: &desc,
                            why: None,
                        };
                        self.block(cx, id, refusal, now);
                    }
                    _ => self.respond_final(cx, id, status, now),
                }
            }
            Decision::Feature(action) => {
                let Some(caller) = self.call_ctx(id).and_then(|c| c.caller.clone()) else {
                    return;
                };
                self.apply_feature(cx, &caller, action);
                // A proxy cannot play a confirmation tone; the phone sees this final answer.
                self.respond_final(cx, id, 480, now);
            }
            Decision::Room(plan) => self.answer_room(cx, id, plan, now),
            Decision::Trunk {
                number, emergency, ..
            } => {
                if !self.admit_trunk(
                    cx,
                    id,
                    routing.trunk_caller.as_ref(),
                    emergency,
                    &number,
                    now,
                ) {
                    return;
                }
                let charged = routing
                    .trunk_caller
                    .clone()
                    .or_else(|| self.call_ctx(id).and_then(|c| c.caller.clone()));
                let (Some(charged), Some(ctx)) = (charged, self.call_ctx_mut(id)) else {
                    self.respond_final(cx, id, 503, now);
                    return;
                };
                let mut left: Vec<crate::dialplan::Trunk> =
                    cx.trunks.order(now.instant).into_iter().cloned().collect();
                left.reverse();
                ctx.trunk = Some(TrunkCall {
                    number,
                    charged,
                    left,
                    current: None,
                    codec_refused: false,
                });
                self.next_carrier(cx, id, now);
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
                        self.ring_next_member(cx, id, now);
                    }
                    None => {
                        self.set_deadline(id, now.instant + ring_for.min(TIMER_C));
                        for m in members {
                            self.ring_member(cx, id, &m, now);
                        }
                        if self.pending_branches(id) == 0 {
                            // No phone registered: the call could not be set up at all.
                            self.respond_final_as(cx, id, 480, Some(Disposition::Failed), now);
                        }
                    }
                }
            }
        }
    }

    /// Sends trunk call `id` to its next carrier (priority order, healthy ones first), with
    /// the number in that carrier's format and the caller's OPD's public number as caller ID.
    /// Without one left, the call is answered with the best response so far (503 if none).
    pub(super) fn next_carrier(&mut self, cx: &mut Ctx<'_>, id: u64, now: Now) {
        loop {
            let Some(call) = self.call_ctx_mut(id).and_then(|c| c.trunk.as_mut()) else {
                return;
            };
            let Some(carrier) = call.left.pop() else {
                call.current = None;
                // No carrier took the offer's codecs: 488 (RFC 3261 §21.4.26), else 503.
                let fallback = if call.codec_refused { 488 } else { 503 };
                self.finish_with_best(cx, id, fallback, now);
                return;
            };
            let (number, charged) = (call.number.clone(), call.charged.clone());
            let Ok(ip) = carrier.host.parse::<IpAddr>() else {
                continue;
            };
            let addr = SocketAddr::new(ip, carrier.port);
            let peer = self.binding_peer(cx, addr, carrier.transport, None);
            let host_part = match ip {
                IpAddr::V6(_) => format!("[{}]", carrier.host),
                IpAddr::V4(_) => carrier.host.clone(),
            };
            let user = crate::trunk::number::to_carrier(&number, &carrier.number_format);
            let transport = match carrier.transport {
                Transport::Tcp => ";transport=tcp",
                Transport::Tls => ";transport=tls",
                _ => "",
            };
            let uri = format!("sip:{user}@{host_part}:{}{transport}", carrier.port);
            let public = cx
                .dialplan
                .opd_of(&charged)
                .and_then(|o| o.public_number.clone())
                .or_else(|| cx.dialplan.province().public_number.clone());
            let local = cx.net.local_of(&peer);
            let private = self
                .by_id
                .get(&id)
                .is_some_and(|p| asks_privacy(&p.request));
            let (from_user, identity) = caller_id(&carrier, public.as_deref(), local);
            // A caller who asked for privacy (RFC 3323) keeps its anonymous From; the carrier
            // still gets the asserted identity (for emergency services and the law) with the
            // phone's Privacy header, and must not show it.
            let from_user = from_user.filter(|_| !private);
            let body = match self.by_id.get(&id) {
                Some(p) if !carrier.codecs.is_empty() && !p.request.body().is_empty() => {
                    match crate::sip::sdp::keep_codecs(p.request.body(), &carrier.codecs) {
                        Some(b) => Some(b),
                        None => {
                            tracing::info!(trunk = %carrier.name, codecs = ?carrier.codecs,
                                "the call offers none of the carrier's codecs: the next carrier");
                            if let Some(t) = self.call_ctx_mut(id).and_then(|c| c.trunk.as_mut()) {
                                t.codec_refused = true;
                            }
                            continue;
                        }
                    }
                }
                _ => None,
            };
            let before = self.pending_branches(id);
            let toward = super::fork::Carrierward {
                from_user: from_user.as_deref(),
                identity: Some(&identity),
                body,
            };
            self.add_branch_as(cx, id, Some(&uri), peer, None, toward, now);
            if self.pending_branches(id) > before {
                if let Some(call) = self.call_ctx_mut(id).and_then(|c| c.trunk.as_mut()) {
                    call.current = Some(carrier.name.clone());
                }
                tracing::debug!(trunk = %carrier.name, %uri, "call to the carrier");
                // Nothing at all heard within the carrier's timeout: the next carrier.
                self.set_deadline(
                    id,
                    now.instant + Duration::from_secs(carrier.timeout_secs.into()),
                );
                return;
            }
            let why = format!(
                "cannot send to the carrier over {} (no connection)",
                carrier.transport.via_token()
            );
            cx.trunks.handle_call_failed(&carrier.name, why, now);
            cx.trunks.want_connection(&carrier.name);
        }
    }

    /// Asks the toll guard whether call `id` may go to the trunk, charged to `charged` (the
    /// extension whose permissions sent it there). A refused call is answered and recorded
    /// as blocked; returns whether it may go on.
    pub(super) fn admit_trunk(
        &mut self,
        cx: &mut Ctx<'_>,
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
        if !self.admit_budget(cx, id, number, now) {
            return false;
        }
        let opd = cx.registrar.accounts().get(&charged).map(|a| a.opd.clone());
        match self.toll.admit(key, &charged, opd.as_ref(), now.instant) {
            Ok(()) => true,
            Err(rule) => {
                let desc = format!("trunk {number}");
                let refusal = Refusal {
                    rule,
                    status: rule.status(),
                    charged: Some((&charged, opd)),
                    desc: &desc,
                    why: None,
                };
                self.block(cx, id, refusal, now);
                false
            }
        }
    }

    /// Asks the monthly budgets whether outside (non-emergency) call `id` may go to the
    /// trunk. The call's caller and the caller's OPD pay (as its call record will show); a
    /// used-up budget refuses with 403 and a `Warning` saying whose budget and how much.
    fn admit_budget(&mut self, cx: &mut Ctx<'_>, id: u64, number: &str, now: Now) -> bool {
        // (A call from a carrier forwarded out has no calling extension: the toll limits
        // charge the forwarding one; budgets bill callers, see docs/operations.md.)
        let Some(caller) = self.call_ctx(id).and_then(|c| c.caller.clone()) else {
            return true;
        };
        let opd = cx.registrar.accounts().get(&caller).map(|a| a.opd.clone());
        let verdict = self.budget.admit(
            &caller,
            opd.as_ref(),
            cx.dialplan,
            now.instant,
            now.unix_ms as i64,
        );
        let Err(standing) = verdict else {
            return true;
        };
        let desc = format!("trunk {number}");
        let refusal = Refusal {
            rule: Rule::MonthlyBudget,
            status: 403,
            charged: Some((&caller, opd)),
            desc: &desc,
            why: Some(standing.to_string()),
        };
        self.block(cx, id, refusal, now);
        false
    }

    /// Refuses call `id` for `rule` with `status` and a `Warning` naming the rule; logs one
    /// line and records the call as `blocked`. `charged` is the extension (and OPD) the toll
    /// guard counted; for a permission refusal, the caller's OPD is counted here.
    fn block(&mut self, cx: &mut Ctx<'_>, id: u64, refusal: Refusal<'_>, now: Now) {
        let Refusal {
            rule,
            status,
            charged,
            desc,
            why,
        } = refusal;
        let why = why.unwrap_or_else(|| rule.to_string());
        let Some(p) = self.by_id.get(&id) else {
            return;
        };
        let source = p.upstream.addr;
        let dialled = uri_user(p.request.request_uri().unwrap_or("")).unwrap_or_default();
        let caller = p.call.as_ref().and_then(|c| c.caller.clone());
        let (ext, opd) = match charged {
            Some((ext, opd)) => (Some(ext.clone()), opd),
            None => {
                let opd = caller
                    .as_ref()
                    .and_then(|c| cx.registrar.accounts().get(c))
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
            "trunk call blocked from {} extension '{}' OPD '{}' dialled '{}': {why}",
            source.ip(),
            ext.as_ref().map_or("", |e| e.as_str()),
            opd.as_ref().map_or("", |o| o.as_str()),
            dialled,
        );
        if let Some((call_id, from_tag)) = self.call_ids(id) {
            let route = format!("blocked ({}): {desc}", rule.name());
            self.records.rerouted(&call_id, &from_tag, route, false);
        }
        let warning = format!("Warning: 399 tambun \"{why}\"");
        self.respond_final_full(cx, id, status, Some(Disposition::Blocked), &[warning], now);
    }

    pub(super) fn ring_member(&mut self, cx: &mut Ctx<'_>, id: u64, m: &RingTarget, now: Now) {
        let peers = self.contact_peers(cx, &m.extension);
        if let Some((call_id, from_tag)) = self.call_ids(id) {
            let opd = cx
                .registrar
                .accounts()
                .get(&m.extension)
                .map(|a| a.opd.clone());
            self.records
                .ringing(&call_id, &from_tag, m.extension.as_str(), opd);
        }
        for (uri, p) in peers {
            self.add_branch(cx, id, Some(&uri), p, Some(m.extension.clone()), now);
        }
    }

    /// Sequential hunting: rings the next member that has a registration.
    pub(super) fn ring_next_member(&mut self, cx: &mut Ctx<'_>, id: u64, now: Now) {
        loop {
            let Some(m) = self.call_ctx_mut(id).and_then(|c| c.queue.pop()) else {
                if self.pending_branches(id) == 0 {
                    self.finish_with_best(cx, id, 480, now);
                }
                return;
            };
            self.ring_member(cx, id, &m, now);
            if self.pending_branches(id) > 0 {
                if let Some(mt) = self.call_ctx(id).and_then(|c| c.member_timeout) {
                    self.set_deadline(id, now.instant + mt);
                }
                return;
            }
        }
    }

    pub(super) fn apply_feature(
        &mut self,
        cx: &mut Ctx<'_>,
        ext: &Extension,
        action: FeatureAction,
    ) {
        tracing::info!(extension = %ext, ?action, "feature code");
        cx.registrar.update_features(ext, &action);
        self.effects.push(Effect::Feature(ext.clone(), action));
    }

    /// Forward-on-busy for a single-target call that got 486 from every contact.
    pub(super) fn try_fallback(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        status: u16,
        now: Now,
    ) -> bool {
        let Some(p) = self.by_id.get(&id) else {
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
        self.fallback(cx, id, &ext, &target, now);
        true
    }

    pub(super) fn fallback(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        ext: &Extension,
        target: &str,
        now: Now,
    ) {
        tracing::debug!(%ext, target, "call forwarded");
        if let Some(ctx) = self.call_ctx_mut(id) {
            ctx.fallbacks += 1;
        }
        if let Some(p) = self.by_id.get_mut(&id) {
            p.best = None;
        }
        // The forwarding extension's permissions apply to where it forwards to.
        let routing =
            cx.dialplan
                .route(ext, target, now.unix as i64, &Dir(cx.registrar.accounts()));
        self.apply_routing(cx, id, routing, now);
    }
}

/// A call refused by a toll or permission rule: the rule, the status to answer, the extension
/// (and OPD) the toll guard counted, and the route as the call record shows it.
struct Refusal<'a> {
    rule: Rule,
    status: u16,
    charged: Option<(&'a Extension, Option<OpdCode>)>,
    desc: &'a str,
    /// The sentence for the log and the `Warning` when the rule's own is not enough.
    why: Option<String>,
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
        Decision::Room(plan) => (format!("room {}", plan.number), false),
    }
}

/// Caller ID toward `carrier`: the From user and the identity header lines, from the OPD's
/// public number (national form). No public number: the phone's From stays and no identity
/// is asserted (any the phone sent is still removed).
fn caller_id(
    carrier: &crate::dialplan::Trunk,
    public: Option<&str>,
    local: Option<SocketAddr>,
) -> (Option<String>, Vec<String>) {
    use crate::dialplan::CallerIdPlacement as P;
    let Some(public) = public else {
        return (None, Vec::new());
    };
    let shown = crate::trunk::number::to_carrier(public, &carrier.number_format);
    let host = local.map_or_else(
        || carrier.host.clone(),
        |a| match a {
            SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
            SocketAddr::V4(v4) => v4.ip().to_string(),
        },
    );
    let pai = format!(
        "P-Asserted-Identity: <sip:{}@{host}>",
        crate::trunk::number::to_e164(public)
    );
    match carrier.caller_id {
        P::Pai => (None, vec![pai]),
        P::From => (Some(shown), Vec::new()),
        P::Both => (Some(shown), vec![pai]),
    }
}

/// Did the phone ask for its identity to be withheld (RFC 3323: `Privacy: id`, `user` or
/// `header`, or an anonymous From)?
fn asks_privacy(msg: &Message) -> bool {
    let by_header = msg
        .headers_by_raw_name("Privacy")
        .flat_map(|h| msg.text(h.value).split(';'))
        .any(|v| {
            let v = v.trim();
            ["id", "user", "header"]
                .iter()
                .any(|p| v.eq_ignore_ascii_case(p))
        });
    let anonymous_from = msg
        .from()
        .ok()
        .and_then(|f| uri_user(f.uri))
        .is_some_and(|u| u.eq_ignore_ascii_case("anonymous"));
    by_header || anonymous_from
}
