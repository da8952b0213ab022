//! Requests inside dialogs: forwarded only inside a dialog the switch set up (its token,
//! [`super::token`]), from one of its parties and toward the other one; ACK for a 2xx
//! statelessly under the same check; everything else 481, logged and counted by the guard.
//!
//! Sans-IO: methods of [`Proxy`].

use super::token::token_in;
use super::*;

impl Proxy {
    /// A request inside a dialog (it has a To tag): forwarded only when it carries the token
    /// of a dialog this switch set up, comes from that dialog's party, and then only toward
    /// the other party ([`super::token`]). Anything else is answered 481 and counted by the
    /// guard.
    pub(super) fn forward_in_dialog(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        peer: Peer,
        key: &TransactionKey,
        routes: usize,
        now: Now,
    ) -> Option<(u16, Vec<String>)> {
        let (target, token) = match self.dialog_next_hop(cx, msg, &peer, routes) {
            Ok(hop) => hop,
            Err(e) => {
                self.refuse_in_dialog(cx, msg, &peer, e, now);
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
        if let Some(why) = self.media_reshape_unsupported(msg) {
            return Some((488, vec![format!("Warning: 399 tambun \"{why}\"")]));
        }
        let limit = if msg.method() == Some(&Method::Invite) {
            TIMER_C
        } else {
            NON_INVITE_LIMIT
        };
        let anchored = self.media_in_dialog(msg);
        let msg = anchored.as_ref().unwrap_or(msg);
        let id = self.new_proxied(cx, msg, peer, key, None, now.instant + limit);
        let shift = self.cseq_shift_of(msg);
        if let Some(p) = self.by_id.get_mut(&id) {
            p.dialog_token = Some(token);
            p.cseq_shift = shift;
        }
        self.add_branch(cx, id, None, target, None, now);
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
    pub(super) fn dialog_next_hop(
        &self,
        cx: &Ctx<'_>,
        msg: &Message,
        source: &Peer,
        routes: usize,
    ) -> Result<(Peer, String), DialogError> {
        let token =
            token_in(msg.values(HeaderName::Route).take(routes)).ok_or(DialogError::NoToken)?;
        let call_id = msg.call_id().unwrap_or("");
        let (from_tag, to_tag) = (msg.from_tag(), msg.to_tag());
        let opened = self.dialog_key.open(&token, call_id, from_tag, to_tag)?;
        if !self.party_sent(cx, &opened.sender, source.addr.ip()) {
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
        let target = self.party_peer(cx, &opened.receiver, msg.request_uri().unwrap_or(""));
        if cx.net.is_ours(target.addr) {
            return Err(DialogError::Unreachable);
        }
        Ok((target, token))
    }

    /// Did a request from `ip` come from this party: the address it had when the dialog was
    /// set up, or (an extension) the source of one of its registrations now?
    pub(super) fn party_sent(&self, cx: &Ctx<'_>, party: &Party, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if party.addr().ip().to_canonical() == ip {
            return true;
        }
        match party {
            Party::Extension { ext, .. } => cx
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
    pub(crate) fn party_peer(&self, cx: &Ctx<'_>, party: &Party, request_uri: &str) -> Peer {
        match party {
            Party::Trunk { addr, transport } => self.binding_peer(cx, *addr, *transport, None),
            Party::Extension {
                ext,
                addr,
                transport,
            } => {
                let bindings = cx.registrar.location.bindings(ext);
                let binding = bindings
                    .iter()
                    .find(|b| b.uri == request_uri)
                    .or_else(|| bindings.iter().find(|b| b.source == *addr));
                match binding {
                    Some(b) => self.binding_peer(cx, b.source, b.transport, b.conn),
                    None => self.binding_peer(cx, *addr, *transport, None),
                }
            }
        }
    }

    /// The token a dialog-creating request on branch `peer` of proxied request `id` puts in
    /// our Record-Route: the one it carried (a target refresh inside a dialog), or a new one
    /// for its authenticated caller and this branch's extension (`member`) or the trunk.
    pub(super) fn dialog_token_for(
        &self,
        id: u64,
        request: &Message,
        upstream: &Peer,
        peer: &Peer,
        member: Option<&Extension>,
    ) -> Option<String> {
        let p = self.by_id.get(&id)?;
        if let Some(t) = &p.dialog_token {
            return Some(t.clone());
        }
        let caller = match &p.caller {
            Some(ext) => Party::Extension {
                ext: ext.clone(),
                addr: upstream.addr,
                transport: upstream.transport,
            },
            // A call from a carrier (an initial INVITE with no calling extension).
            None if p.call.is_some() => Party::Trunk {
                addr: upstream.addr,
                transport: upstream.transport,
            },
            None => return None,
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
    pub(super) fn refuse_in_dialog(
        &mut self,
        cx: &mut Ctx<'_>,
        msg: &Message,
        source: &Peer,
        e: DialogError,
        now: Now,
    ) {
        let method = msg.method().map_or("?", |m| m.as_str());
        tracing::warn!(
            target: "tambun::dialog",
            "in-dialog request refused from {} method={}: {e}",
            source.addr.ip(),
            method
        );
        cx.guard.handle_forged_dialog(source.addr.ip(), now);
    }

    /// An ACK that matches no server transaction: the ACK for a 2xx, end to end through our
    /// Record-Route. Forwarded statelessly (RFC 3261 §16.11 allows it for ACK), under the same
    /// dialog check as every in-dialog request; one that fails is dropped, logged and counted
    /// (the ACK of a challenge the switch sent statelessly is not a failure: its To tag is
    /// ours).
    pub(crate) fn handle_ack(&mut self, cx: &mut Ctx<'_>, msg: &Message, source: Peer, now: Now) {
        if msg.max_forwards().ok().flatten() == Some(0) {
            return;
        }
        if self.room_ack(msg, &source) {
            return; // the ACK of a room's 2xx: the switch is the UAS
        }
        let Some(to_tag) = msg.to_tag() else {
            return; // an ACK outside any dialog
        };
        if to_tag == response::our_to_tag(msg) {
            return; // the ACK for a final response we sent statelessly (a challenge)
        }
        let routes = self.our_routes(cx, msg);
        let peer = match self.dialog_next_hop(cx, msg, &source, routes) {
            Ok((peer, _)) => peer,
            Err(e) => {
                self.refuse_in_dialog(cx, msg, &source, e, now);
                return;
            }
        };
        let Some(local) = cx.net.local_of(&peer) else {
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
                from_user: None,
                identity: None,
                body: None,
                cseq_shift: self.cseq_shift_of(msg),
            },
        );
        cx.out.push_back(Transmit { peer, bytes });
    }

    /// What to add to the CSeq of an in-dialog request: the phone's requests in a dialog whose
    /// carrier challenged go with the numbers moved as the switch's answers moved them; the
    /// carrier's own requests (its From tag) keep theirs.
    fn cseq_shift_of(&self, msg: &Message) -> u32 {
        let key = (
            msg.call_id().unwrap_or("").to_owned(),
            msg.from_tag().unwrap_or("").to_owned(),
        );
        self.cseq_shifts.get(&key).copied().unwrap_or(0)
    }
}
