//! Forking and the life of a proxied request: branches and their client transactions, the
//! best final response (RFC 3261 §16.7), CANCEL both ways, ringing deadlines and Timer C,
//! responses matched to branches, and stray 2xx forwarded only where their branch MAC says.
//!
//! Sans-IO: methods of [`Proxy`].

use super::*;

/// What a branch toward a carrier changes in the request (see [`build::Hop`]): the From
/// user, identity header lines, the offer cut to the carrier's codecs. Default: nothing.
#[derive(Default)]
pub(super) struct Carrierward<'a> {
    pub from_user: Option<&'a str>,
    pub identity: Option<&'a [String]>,
    pub body: Option<bytes::Bytes>,
}

impl Proxy {
    pub(super) fn new_proxied(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        upstream: Peer,
        key: &TransactionKey,
        call: Option<CallCtx>,
        deadline: Instant,
    ) -> u64 {
        let caller = call.as_ref().and_then(|c| c.caller.clone());
        self.next_id += 1;
        let id = self.next_id;
        self.by_id.insert(
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
                pop_routes: self.our_routes(cx, msg),
                deadline,
                caller,
                dialog_token: None,
                cseq_shift: 0,
                auth_retries: 0,
            },
        );
        self.by_server.insert(key.clone(), id);
        self.deadlines.push(Reverse((deadline, id)));
        id
    }

    /// Sends the request on a new branch; the Route values naming us at its top are removed.
    pub(super) fn add_branch(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        request_uri: Option<&str>,
        peer: Peer,
        member: Option<Extension>,
        now: Now,
    ) {
        self.add_branch_as(
            cx,
            id,
            request_uri,
            peer,
            member,
            Carrierward::default(),
            now,
        );
    }

    /// [`Proxy::add_branch`] toward a carrier: with what [`Carrierward`] changes.
    #[allow(clippy::too_many_arguments)] // add_branch's own, and what goes to a carrier
    pub(super) fn add_branch_as(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        request_uri: Option<&str>,
        peer: Peer,
        member: Option<Extension>,
        toward: Carrierward<'_>,
        now: Now,
    ) {
        let Carrierward {
            from_user,
            identity,
            body,
        } = toward;
        let Some(p) = self.by_id.get(&id) else {
            return;
        };
        let mut request = p.request.clone();
        let upstream = p.upstream;
        let pop_routes = p.pop_routes;
        let cseq_shift = p.cseq_shift;
        if peer.transport.is_websocket() {
            if let Some(written) = self.media_toward_browser(&request) {
                request = written;
            }
        }
        let Some(local) = cx.net.local_of(&peer) else {
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
                cx,
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
                from_user,
                identity,
                body,
                cseq_shift,
            },
        );
        let Ok(sent) = Message::parse_framed(bytes.clone(), &UNBOUNDED) else {
            tracing::warn!("forwarded request does not parse; dropped");
            return;
        };
        let method = TxMethod::from_token(request.method().map_or("INVITE", |m| m.as_str()));
        let key = TransactionKey::new(branch.clone(), &local.to_string(), method);
        let t = self.client.start(key.clone(), bytes, peer, now.instant);
        cx.out.push_back(t);
        let Some(p) = self.by_id.get_mut(&id) else {
            return;
        };
        p.branches.push(Branch::new(key, peer, sent, member));
        self.by_branch.insert(branch, (id, p.branches.len() - 1));
    }

    pub(super) fn call_ctx(&self, id: u64) -> Option<&CallCtx> {
        self.by_id.get(&id)?.call.as_ref()
    }

    pub(super) fn call_ctx_mut(&mut self, id: u64) -> Option<&mut CallCtx> {
        self.by_id.get_mut(&id)?.call.as_mut()
    }

    pub(super) fn call_ids(&self, id: u64) -> Option<(String, String)> {
        let p = self.by_id.get(&id)?;
        let c = p.call.as_ref()?;
        Some((p.request.call_id().ok()?.to_string(), c.from_tag.clone()))
    }

    pub(super) fn set_deadline(&mut self, id: u64, at: Instant) {
        if let Some(p) = self.by_id.get_mut(&id) {
            p.deadline = at;
            self.deadlines.push(Reverse((at, id)));
        }
    }

    pub(super) fn pending_branches(&self, id: u64) -> usize {
        self.by_id
            .get(&id)
            .map_or(0, |p| p.branches.iter().filter(|b| !b.done).count())
    }

    /// Sends a final response of our own upstream and records the failure.
    pub(super) fn respond_final(&mut self, cx: &mut Ctx<'_>, id: u64, status: u16, now: Now) {
        self.respond_final_as(cx, id, status, None, now);
    }

    /// As [`Self::respond_final`], with the disposition for the record when the status alone
    /// does not tell it.
    pub(super) fn respond_final_as(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        status: u16,
        disposition: Option<Disposition>,
        now: Now,
    ) {
        self.respond_final_full(cx, id, status, disposition, &[], now);
    }

    /// As [`Self::respond_final_as`], with `extra` header lines in the response.
    pub(super) fn respond_final_full(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        status: u16,
        disposition: Option<Disposition>,
        extra: &[String],
        now: Now,
    ) {
        let Some(p) = self.by_id.get_mut(&id) else {
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
        if let Some(t) = cx
            .server
            .send_response(&key, status, bytes, upstream, now.instant)
        {
            cx.out.push_back(t);
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
        self.cancel_pending(cx, id, now);
        self.maybe_forget(id);
    }

    /// Sends the best final response collected (or `fallback` if none) upstream.
    pub(super) fn finish_with_best(&mut self, cx: &mut Ctx<'_>, id: u64, fallback: u16, now: Now) {
        let Some(p) = self.by_id.get_mut(&id) else {
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
                let bytes = build::forward_response(&best, p.cseq_shift);
                let (key, upstream) = (p.server_key.clone(), p.upstream);
                if let Some(t) = cx
                    .server
                    .send_response(&key, status, bytes, upstream, now.instant)
                {
                    cx.out.push_back(t);
                }
                if let Some((call_id, from_tag)) = self.call_ids(id) {
                    self.records
                        .failed(&call_id, &from_tag, status, now.unix_ms);
                }
                self.maybe_forget(id);
            }
            None => self.respond_final(cx, id, fallback, now),
        }
    }

    /// CANCELs every branch still ringing (RFC 3261 §16.7 step 10).
    pub(super) fn cancel_pending(&mut self, cx: &mut Ctx<'_>, id: u64, now: Now) {
        let Some(p) = self.by_id.get_mut(&id) else {
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
            cx.out.push_back(t);
        }
    }

    pub(super) fn maybe_forget(&mut self, id: u64) {
        let done = self
            .by_id
            .get(&id)
            .is_some_and(|p| p.final_sent && p.branches.iter().all(|b| b.done));
        if done {
            self.forget(id);
        }
    }

    pub(super) fn forget(&mut self, id: u64) {
        if let Some(p) = self.by_id.remove(&id) {
            if p.call.is_some() && !p.answered && p.cseq_shift > 0 {
                // A challenged call that was never answered: no dialog to shift.
                let key = (
                    p.request.call_id().unwrap_or("").to_owned(),
                    p.request.from_tag().unwrap_or("").to_owned(),
                );
                self.cseq_shifts.remove(&key);
            }
            self.by_server.remove(&p.server_key);
            for b in &p.branches {
                self.by_branch.remove(&b.key.branch);
            }
        }
    }

    /// A CANCEL for an INVITE we are proxying (RFC 3261 §16.10).
    /// The CANCEL must come from where its INVITE came from (the same address, and the same
    /// port over UDP): its branch and sent-by are in plain sight in the INVITE's Via, so
    /// anyone who saw them could otherwise hang up a ringing call.
    pub(crate) fn handle_cancel(
        &mut self,
        cx: &mut Ctx<'_>,
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
        let Some(&id) = self.by_server.get(&invite_key) else {
            return (481, Vec::new());
        };
        let Some(p) = self.by_id.get_mut(&id) else {
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
            cx.guard.handle_forged_dialog(source.addr.ip(), now);
            return (481, Vec::new());
        }
        p.cancelled = true;
        self.cancel_pending(cx, id, now);
        if self.pending_branches(id) == 0 {
            self.respond_final(cx, id, 487, now);
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
    pub(crate) fn handle_response(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: Message,
        source: IpAddr,
        now: Now,
    ) {
        let Ok(via) = msg.top_via() else { return };
        let Some(branch) = via.branch().map(str::to_string) else {
            return;
        };
        let Some(&(id, idx)) = self.by_branch.get(&branch) else {
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
            if cx.guard.admit_request(source, None, now) == crate::guard::Admission::Pass {
                self.stray_response(cx, &msg);
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
                    cx.out.push_back(t);
                }
                return;
            }
            ResponseDisposition::NoTransaction => {
                // A 2xx retransmission after the transaction ended: still forward it.
                if (200..300).contains(&status) {
                    self.forward_upstream(cx, id, &msg, status, now);
                }
                return;
            }
            ResponseDisposition::ForwardNeedsAck => {
                let ack = self
                    .by_id
                    .get(&id)
                    .and_then(|p| p.branches.get(idx))
                    .map(|b| build::ack_for(&b.sent, &msg));
                if let Some(ack) = ack {
                    if let Some(t) = self.client.send_ack(&key, ack) {
                        cx.out.push_back(t);
                    }
                }
            }
            ResponseDisposition::Forward => {}
        }
        self.branch_response(cx, id, idx, msg, status, now);
    }

    pub(super) fn branch_response(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        idx: usize,
        msg: Message,
        status: u16,
        now: Now,
    ) {
        let Some(p) = self.by_id.get_mut(&id) else {
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
                cx.out.push_back(t);
                return;
            }
            if status > 100 && !p.final_sent {
                self.forward_upstream(cx, id, &msg, status, now);
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
                let carrier = self
                    .call_ctx(id)
                    .and_then(|c| c.trunk.as_ref())
                    .and_then(|t| t.current.clone());
                if let (Some(carrier), Some(key)) = (carrier, self.call_ids(id)) {
                    cx.trunks.handle_call_count(&carrier, 1);
                    self.carrier_calls.insert(key, carrier);
                }
                if let Some((call_id, from_tag)) = self.call_ids(id) {
                    let to_tag = msg.to_tag().map(str::to_string);
                    let opd = member
                        .as_ref()
                        .and_then(|m| cx.registrar.accounts().get(m))
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
            self.forward_upstream(cx, id, &msg, status, now);
            if is_invite {
                self.cancel_pending(cx, id, now);
            }
            self.after_final_2xx(id, &msg, now);
            self.maybe_forget(id);
            return;
        }
        if matches!(status, 401 | 407)
            && !p.final_sent
            && !p.cancelled
            && self.answer_carrier_challenge(cx, id, idx, &msg, status, now)
        {
            return;
        }
        let Some(p) = self.by_id.get_mut(&id) else {
            return;
        };
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
            self.cancel_pending(cx, id, now);
        }
        if self.pending_branches(id) > 0 {
            return;
        }
        if self.carrier_failed(cx, id, status, now) {
            return;
        }
        if self.try_fallback(cx, id, status, now) {
            return;
        }
        // Sequential hunting goes on to the next member.
        let hunting = self
            .call_ctx(id)
            .is_some_and(|c| c.member_timeout.is_some() && !c.queue.is_empty());
        let cancelled = self.by_id.get(&id).is_some_and(|p| p.cancelled);
        if hunting && status < 600 && !cancelled {
            self.ring_next_member(cx, id, now);
            return;
        }
        self.finish_with_best(cx, id, 480, now);
    }

    /// A carrier challenged (401/407) the request on branch `idx`: the switch answers for the
    /// trunk (the account of its `[trunk.register]`), sending the request again on a new
    /// branch with CSeq + 1 and the credentials; the phone never sees the challenge. From
    /// then on the dialog's requests from the phone go with their CSeq moved by as much, and
    /// the responses come back with it put back (the back-to-back part of a trunk call,
    /// docs/decisions.md). Returns whether it did (not for phones, not more than twice a
    /// request, not without a password for the carrier's realm).
    fn answer_carrier_challenge(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        idx: usize,
        challenge: &Message,
        status: u16,
        now: Now,
    ) -> bool {
        let Some(p) = self.by_id.get(&id) else {
            return false;
        };
        let Some(b) = p.branches.get(idx) else {
            return false;
        };
        if p.auth_retries >= 2 {
            tracing::warn!("the carrier challenged the switch's credentials again: giving up");
            return false;
        }
        let Some(carrier) = cx.trunks.carrier_at(b.peer.addr).map(|t| t.name.clone()) else {
            return false; // a phone's challenge goes to the caller, as any response
        };
        let (sent, peer, member) = (b.sent.clone(), b.peer, b.member.clone());
        let method = sent.method().map_or("INVITE", |m| m.as_str()).to_owned();
        let uri = sent.request_uri().unwrap_or("").to_owned();
        let credentials = match cx
            .trunks
            .call_credentials(&carrier, challenge, status, &method, &uri, now)
        {
            Ok(c) => c,
            Err(why) => {
                tracing::warn!(trunk = %carrier, "cannot answer the carrier's challenge: {why}");
                return false;
            }
        };
        let Some(local) = cx.net.local_of(&peer) else {
            return false;
        };
        let (upstream, original) = (p.upstream.addr, p.request.clone());
        // (the loop hash and MAC as for the branch it replaces: of the request received)
        let branch = self.next_branch(&original, upstream);
        let via = format!(
            "SIP/2.0/{} {local};branch={branch};rport",
            peer.transport.via_token()
        );
        let bytes = build::with_credentials(&sent, &via, &credentials);
        let Ok(resent) = Message::parse_framed(bytes.clone(), &UNBOUNDED) else {
            return false;
        };
        let tx = TxMethod::from_token(&method);
        let key = TransactionKey::new(branch.clone(), &local.to_string(), tx);
        let t = self.client.start(key.clone(), bytes, peer, now.instant);
        cx.out.push_back(t);
        let Some(p) = self.by_id.get_mut(&id) else {
            return true;
        };
        p.auth_retries += 1;
        p.cseq_shift += 1;
        let shift = p.cseq_shift;
        let dialog = (
            p.request.call_id().unwrap_or("").to_owned(),
            p.request.from_tag().unwrap_or("").to_owned(),
        );
        p.branches.push(Branch::new(key, peer, resent, member));
        self.by_branch.insert(branch, (id, p.branches.len() - 1));
        self.cseq_shifts.insert(dialog, shift);
        tracing::debug!(trunk = %carrier, %method, status, "answered the carrier's challenge");
        true
    }

    /// A trunk call's carrier answered 408 or 5xx (or nothing): that carrier is noted as
    /// failing and the call goes to the next one. Returns whether it did.
    fn carrier_failed(&mut self, cx: &mut Ctx<'_>, id: u64, status: u16, now: Now) -> bool {
        let cancelled = self
            .by_id
            .get(&id)
            .is_none_or(|p| p.cancelled || p.final_sent);
        let Some(call) = self.call_ctx_mut(id).and_then(|c| c.trunk.as_mut()) else {
            return false;
        };
        if cancelled || !(status == 408 || (500..600).contains(&status)) {
            return false;
        }
        let Some(name) = call.current.take() else {
            return false;
        };
        let more = !call.left.is_empty();
        let why = if status == 408 {
            "a call got no answer from the carrier".to_owned()
        } else {
            format!("a call was answered {status} by the carrier")
        };
        cx.trunks.handle_call_failed(&name, why, now);
        if !more {
            return false;
        }
        tracing::info!(trunk = %name, status, "trunk call fails over to the next carrier");
        self.next_carrier(cx, id, now);
        true
    }

    /// After the 2xx of an in-dialog request: BYE ends the call record, a refresh extends it.
    pub(super) fn after_final_2xx(&mut self, id: u64, msg: &Message, now: Now) {
        let Some(p) = self.by_id.get(&id) else {
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
            Method::Bye => {
                // The dialog is over: nothing more to shift in it.
                for tag in tags.into_iter().flatten() {
                    self.cseq_shifts.remove(&(call_id.clone(), tag.to_owned()));
                }
            }
            _ => {}
        }
    }

    /// Forwards a response upstream through the server transaction.
    pub(super) fn forward_upstream(
        &mut self,
        cx: &mut Ctx<'_>,
        id: u64,
        msg: &Message,
        status: u16,
        now: Now,
    ) {
        let anchored = self.media_answer(id, msg, status);
        let msg = anchored.as_ref().unwrap_or(msg);
        let Some(p) = self.by_id.get(&id) else {
            return;
        };
        let bytes = build::forward_response(msg, p.cseq_shift);
        let (key, upstream) = (p.server_key.clone(), p.upstream);
        match cx
            .server
            .send_response(&key, status, bytes.clone(), upstream, now.instant)
        {
            Some(t) => cx.out.push_back(t),
            None if (200..300).contains(&status) => {
                // Further 2xx (forking, retransmissions) are forwarded statelessly.
                cx.out.push_back(Transmit {
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
    pub(super) fn stray_response(&mut self, cx: &mut Ctx<'_>, msg: &Message) {
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
        let peer = cx.net.udp_peer(addr);
        if via.transport.eq_ignore_ascii_case("UDP") {
            cx.out.push_back(Transmit {
                peer,
                bytes: build::forward_response(msg, 0),
            });
        }
    }

    /// Ringing timeouts and Timer C.
    pub(crate) fn proxy_timeout(&mut self, cx: &mut Ctx<'_>, now: Now) {
        while let Some(Reverse((t, id))) = self.deadlines.peek().copied() {
            if t > now.instant {
                break;
            }
            self.deadlines.pop();
            let Some(p) = self.by_id.get(&id) else {
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
                self.respond_final(cx, id, 487, now);
                self.forget(id);
                continue;
            }
            let trunk_wait = p
                .call
                .as_ref()
                .and_then(|c| c.trunk.as_ref())
                .is_some_and(|t| t.current.is_some());
            if trunk_wait && is_invite {
                if p.branches.iter().any(|b| !b.done && b.provisional) {
                    // The carrier is working on it: ring until Timer C.
                    self.set_deadline(id, now.instant + TIMER_C);
                    continue;
                }
                // Not a word from the carrier: give its branch up and try the next one.
                let silent: Vec<TransactionKey> = self
                    .by_id
                    .get_mut(&id)
                    .map(|p| {
                        p.branches
                            .iter_mut()
                            .filter(|b| !b.done)
                            .map(|b| {
                                b.done = true;
                                b.key.clone()
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                for k in &silent {
                    self.client.remove(k);
                }
                if !self.carrier_failed(cx, id, 408, now) {
                    self.finish_with_best(cx, id, 408, now);
                }
                continue;
            }
            let hunting = p
                .call
                .as_ref()
                .is_some_and(|c| c.member_timeout.is_some() && !c.queue.is_empty());
            let no_answer = p.call.as_ref().and_then(|c| c.forward_no_answer.clone());
            let fallbacks = p.call.as_ref().map_or(0, |c| c.fallbacks);
            if !is_invite {
                self.finish_with_best(cx, id, 408, now);
                self.forget(id);
                continue;
            }
            self.cancel_pending(cx, id, now);
            // Branches that never answered provisionally are given up.
            if let Some(p) = self.by_id.get_mut(&id) {
                for b in p.branches.iter_mut().filter(|b| !b.provisional) {
                    b.done = true;
                }
            }
            if hunting {
                self.ring_next_member(cx, id, now);
            } else if let (Some((ext, target)), true) = (no_answer, fallbacks < MAX_FALLBACKS) {
                self.fallback(cx, id, &ext, &target, now);
            } else {
                self.respond_final(cx, id, 480, now);
            }
        }
    }

    /// A client transaction gave up (Timer B/F): the branch failed with 408.
    pub(crate) fn proxy_branch_timeout(
        &mut self,
        cx: &mut Ctx<'_>,
        key: &TransactionKey,
        now: Now,
    ) {
        if key.method == TxMethod::Cancel {
            return;
        }
        let Some(&(id, idx)) = self.by_branch.get(&key.branch) else {
            return;
        };
        let timeout = {
            let Some(p) = self.by_id.get(&id) else {
                return;
            };
            let Some(b) = p.branches.get(idx) else { return };
            if b.done {
                return;
            }
            // A 408 of our own making stands in for the silent branch.
            let bytes = response::build(&b.sent, b.peer.addr, 408, None, &[], None);
            Message::parse_framed(bytes, &UNBOUNDED).ok()
        };
        if let Some(msg) = timeout {
            // Our 408 has our Via on top (it was built from our own request); forwarding
            // removes it like any branch response.
            self.branch_response(cx, id, idx, msg, 408, now);
        }
    }
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
