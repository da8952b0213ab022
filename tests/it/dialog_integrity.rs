//! Dialog integrity over the wire: the switch forwards an in-dialog request (one with a To tag)
//! only inside a dialog it set up itself, only from one of the dialog's two parties and only
//! toward the other one.
//!
//! Attacks come from loopback addresses other than the allow-listed 127.0.0.1 (127.0.5.x). A
//! UDP socket stands where each forged request points (the trunk, a "phone" on 127.0.0.1) and
//! must hear nothing; the attacker must get 481 (a stray ACK: nothing at all); the switch logs
//! one `tambun::dialog` line naming the source per failure, and the guard counts failures like
//! failed authentications (ten ban the source).
//!
//! Legitimate flows run with `--domain 127.0.0.1`, the switch's own address, so the switch must
//! tell itself apart from phones on 127.0.0.1 at other ports by the port: SIPp re-INVITE,
//! UPDATE, INFO and BYE from either side, baresip hold/resume and REFER, and a re-INVITE and a
//! BYE after a restart of the switch for a call answered before it.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::common;
use crate::common::baresip::Baresip;
use crate::common::calls::{
    assert_cdr, assert_sipp_ok, header_of, one_cdr, received_messages, sipp_call, SippUas,
};
use crate::common::media::{admin_get_text, drain, live_calls, rtp_range, sdp, Dialog, Phone};
use crate::common::peers::sipp_scenario;
use crate::common::sip::{unique, Msg, UdpClient};
use crate::common::{json_str, Switch, SwitchOptions};

const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("1000", "setda", "rahasia1000"),
    ("2300", "dinkes", "rahasia2300"),
    ("2301", "dinkes", "rahasia2301"),
];

/// How long a listener must hear nothing after the last forged request.
const SILENCE: Duration = Duration::from_secs(1);

/// How long an attacker waits for the switch's final answer (it answers at once).
const ANSWER_WAIT: Duration = Duration::from_millis(1500);

/// An international number: what a toll fraudster dials through the trunk.
const INTERNATIONAL: &str = "900123456789";

// ---- the rig -------------------------------------------------------------------------------

/// A switch with [`EXTENSIONS`], its own relay ports, `--domain 127.0.0.1` when `domain` is
/// set, and the trunk at `trunk` when given (the test's copy of `province.toml`).
fn switch(domain: bool, trunk: Option<SocketAddr>) -> Switch {
    let mut switch = Switch::create(SwitchOptions {
        domain: domain.then(|| "127.0.0.1".to_owned()),
        extra_args: vec!["--rtp-ports".into(), rtp_range(40)],
        ..SwitchOptions::default()
    });
    if let Some(trunk) = trunk {
        switch.trunk_at(&trunk.to_string(), "");
    }
    for (number, opd, password) in EXTENSIONS {
        switch.add_ext(number, opd, password);
    }
    switch.launch();
    switch
}

/// A UDP socket on 127.0.0.1 standing where a forged request points: it must hear nothing.
struct Listener {
    sock: UdpSocket,
    addr: SocketAddr,
}

impl Listener {
    fn bind() -> Listener {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a listener");
        let addr = sock.local_addr().expect("local addr");
        Listener { sock, addr }
    }

    /// The first line of every datagram received so far and within `wait`.
    fn heard(&self, wait: Duration) -> Vec<String> {
        drain(&self.sock, wait)
            .into_iter()
            .map(|(bytes, from)| {
                let text = String::from_utf8_lossy(&bytes);
                format!("{} (from {from})", text.lines().next().unwrap_or(""))
            })
            .collect()
    }
}

/// A UDP client on `ip` (a free port), not allow-listed.
fn attacker(ip: &str, switch: &Switch) -> UdpClient {
    let sock = UdpSocket::bind((ip, 0)).expect("bind a 127.x.y.z address");
    let local = sock.local_addr().expect("local addr");
    UdpClient {
        sock,
        server: switch.sip,
        local,
    }
}

/// What came back to a forged request: the final status (None: none within the wait) and the
/// provisional ones.
#[derive(Debug, Default)]
struct Answer {
    status: Option<u16>,
    provisional: Vec<u16>,
}

/// Sends `request` once and collects the answers until a final one or `wait` passes.
fn send(client: &UdpClient, request: &str, wait: Duration) -> Answer {
    client.send(request);
    let deadline = std::time::Instant::now() + wait;
    let mut answer = Answer::default();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match client.recv(left) {
            Some(m) if m.status >= 200 => {
                answer.status = Some(m.status);
                break;
            }
            Some(m) => answer.provisional.push(m.status),
            None => break,
        }
    }
    answer
}

/// An in-dialog request the sender has no business sending.
#[derive(Clone)]
struct Forged {
    method: String,
    uri: String,
    /// `Route` header values, one line each, as written.
    routes: Vec<String>,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
    sdp: bool,
}

impl Forged {
    /// A made-up dialog: fresh Call-ID and tags, From 1000, To the Request-URI's user.
    fn new(method: &str, uri: String) -> Forged {
        let user = uri
            .strip_prefix("sip:")
            .and_then(|u| u.split_once('@'))
            .map_or("x", |(u, _)| u)
            .to_owned();
        Forged {
            method: method.to_owned(),
            to: format!("<sip:{user}@127.0.0.1>;tag={}", unique("forged-tt")),
            uri,
            routes: Vec::new(),
            from: format!("<sip:1000@127.0.0.1>;tag={}", unique("forged-ft")),
            call_id: unique("forged-call"),
            cseq: 2,
            sdp: method == "INVITE",
        }
    }

    /// A copy of the request `dialog`'s own party would send (its route set, tags, Call-ID and
    /// remote target), with a later CSeq.
    fn from_dialog(method: &str, dialog: &Dialog) -> Forged {
        Forged {
            method: method.to_owned(),
            uri: dialog.target.clone(),
            routes: dialog.routes.clone(),
            from: dialog.local.clone(),
            to: dialog.remote.clone(),
            call_id: dialog.call_id.clone(),
            cseq: dialog.cseq + 10,
            sdp: false,
        }
    }

    fn route(mut self, value: &str) -> Forged {
        self.routes.push(value.to_owned());
        self
    }

    fn render(&self, local: SocketAddr) -> String {
        let method = &self.method;
        let mut out = format!(
            "{method} {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{};rport\r\n\
             Max-Forwards: 70\r\n",
            self.uri,
            unique("forged")
        );
        for r in &self.routes {
            out.push_str(&format!("Route: {r}\r\n"));
        }
        out.push_str(&format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\n\
             Contact: <sip:1000@{local}>\r\nUser-Agent: tambun-itest/forger\r\n",
            self.from, self.to, self.call_id, self.cseq
        ));
        if self.sdp {
            let body = sdp(
                SocketAddr::new(local.ip(), 40000),
                1,
                "0",
                &["a=rtpmap:0 PCMU/8000"],
            );
            out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            out.push_str("Content-Length: 0\r\n\r\n");
        }
        out
    }
}

/// One forged request and what came of it.
struct Attempt {
    what: String,
    answer: Answer,
    /// What the listener heard meanwhile.
    heard: Vec<String>,
}

/// Sends each forged request from `from` in turn; records the answer and what `listener`
/// heard, then waits [`SILENCE`] for anything late.
fn attack(from: &UdpClient, listener: &Listener, requests: &[(&str, Forged)]) -> Vec<Attempt> {
    let mut attempts: Vec<Attempt> = requests
        .iter()
        .map(|(what, forged)| {
            let wait = if forged.method == "ACK" {
                SILENCE
            } else {
                ANSWER_WAIT
            };
            let answer = send(from, &forged.render(from.local), wait);
            let heard = listener.heard(Duration::from_millis(200));
            Attempt {
                what: (*what).to_owned(),
                answer,
                heard,
            }
        })
        .collect();
    let late = listener.heard(SILENCE);
    if let Some(last) = attempts.last_mut() {
        last.heard.extend(late);
    }
    attempts
}

/// Every attempt got `status` (`None`: no answer at all) and the listener heard nothing.
#[track_caller]
fn assert_refused(attempts: &[Attempt], status: Option<u16>, listener: &str) {
    let bad: Vec<String> = attempts
        .iter()
        .filter(|a| {
            a.answer.status != status
                || !a.heard.is_empty()
                || (status.is_none() && !a.answer.provisional.is_empty())
        })
        .map(|a| {
            format!(
                "- {}: answered {:?} (provisional {:?}); {listener} heard {:?}",
                a.what, a.answer.status, a.answer.provisional, a.heard
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "want every forged request answered {status:?} and nothing at {listener}:\n{}",
        bad.join("\n")
    );
}

/// Does `line` name `ip` (not as the prefix of a longer address)?
fn names_ip(line: &str, ip: &str) -> bool {
    line.match_indices(ip).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + ip.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
            && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// The switch's `tambun::dialog` log lines that name `ip`.
fn dialog_log(switch: &Switch, ip: &str) -> Vec<String> {
    switch
        .log_text()
        .lines()
        .filter(|l| l.contains("tambun::dialog") && names_ip(l, ip))
        .map(str::to_owned)
        .collect()
}

/// One `tambun::dialog` line naming `ip` per failed request.
#[track_caller]
fn assert_dialog_log(switch: &Switch, ip: &str, failures: usize) {
    let mut lines = Vec::new();
    Switch::eventually(Duration::from_secs(2), || {
        lines = dialog_log(switch, ip);
        lines.len() >= failures
    });
    assert_eq!(
        lines.len(),
        failures,
        "want one tambun::dialog log line naming {ip} per failed request ({failures}): {lines:#?}"
    );
}

/// An answered call between two in-process phones on 127.0.0.1: 1000 (A) calls 2300 (B).
struct Call {
    a: Phone,
    b: Phone,
    /// A's and B's side of the dialog.
    a_dialog: Dialog,
    b_dialog: Dialog,
    a_rtp: SocketAddr,
    b_rtp: SocketAddr,
    _rtp: (UdpSocket, UdpSocket),
}

fn rtp_pair() -> (UdpSocket, UdpSocket, SocketAddr, SocketAddr) {
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind RTP socket");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind RTP socket");
    let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    (a, b, a_addr, b_addr)
}

fn offer(at: SocketAddr, version: u32, direction: &str) -> String {
    sdp(at, version, "0", &["a=rtpmap:0 PCMU/8000", direction])
}

fn answered_call(switch: &Switch) -> Call {
    let mut a = Phone::register(switch, "1000", "rahasia1000");
    let mut b = Phone::register(switch, "2300", "rahasia2300");
    let (a_sock, b_sock, a_rtp, b_rtp) = rtp_pair();
    let (a_dialog, b_dialog) = std::thread::scope(|s| {
        let callee = s.spawn(|| b.answer(&offer(b_rtp, 1, "a=sendrecv")));
        let (_, a_dialog) = a.call("2300", &offer(a_rtp, 1, "a=sendrecv"));
        let (_, b_dialog) = callee.join().expect("callee thread");
        (a_dialog, b_dialog)
    });
    Call {
        a,
        b,
        a_dialog,
        b_dialog,
        a_rtp,
        b_rtp,
        _rtp: (a_sock, b_sock),
    }
}

/// `to` answers the next `method` with 200 while `from` sends it with `send`; returns what
/// `to` received and the response `from` got.
fn exchange(
    from: &mut Phone,
    to: &mut Phone,
    method: &str,
    answer: Option<&str>,
    send: impl FnOnce(&mut Phone) -> Msg,
) -> (Msg, Msg) {
    std::thread::scope(|s| {
        let callee = s.spawn(|| to.answer_in_dialog(method, answer));
        let response = send(from);
        let got = callee.join().expect("answering thread");
        (got, response)
    })
}

/// The live call with `call_id` (from `tambun calls --json`).
fn live_call(switch: &Switch, call_id: &str) -> Option<serde_json::Value> {
    live_calls(switch)
        .into_iter()
        .find(|c| json_str(c, "call_id") == call_id)
}

/// The top Via of `message` (text) names the switch: it came through it.
#[track_caller]
fn assert_via_switch(switch: &Switch, message: &str, what: &str) {
    let via = header_of(message, "Via").unwrap_or_default();
    assert!(
        via.starts_with(&format!("SIP/2.0/UDP {}", switch.sip)),
        "{what} must come from the switch {}: {message}",
        switch.sip
    );
}

// ---- attacks -------------------------------------------------------------------------------

#[test]
fn forged_invite_naming_the_trunk_gets_481_and_never_reaches_it() {
    let trunk = Listener::bind();
    let switch = switch(false, Some(trunk.addr));
    let ip = "127.0.5.1";
    let from = attacker(ip, &switch);
    // In-dialog (To tag), no credentials, straight at the trunk with an international number.
    let forged = Forged::new("INVITE", format!("sip:{INTERNATIONAL}@{}", trunk.addr));
    let attempts = attack(&from, &trunk, &[("INVITE to the trunk", forged)]);
    assert_refused(&attempts, Some(481), "the trunk");
    assert_dialog_log(&switch, ip, 1);
}

#[test]
fn forged_invite_routed_to_the_trunk_gets_481_and_never_reaches_it() {
    let trunk = Listener::bind();
    let switch = switch(false, Some(trunk.addr));
    let ip = "127.0.5.2";
    let from = attacker(ip, &switch);
    let (me, t) = (switch.sip, trunk.addr);
    let at_switch = format!("sip:{INTERNATIONAL}@{me}");
    let at_trunk = format!("sip:{INTERNATIONAL}@{t}");
    let attempts = attack(
        &from,
        &trunk,
        &[
            (
                "Request-URI the switch, Route the trunk",
                Forged::new("INVITE", at_switch.clone()).route(&format!("<sip:{t};lr>")),
            ),
            (
                "Request-URI the switch, Route the switch then the trunk",
                Forged::new("INVITE", at_switch).route(&format!("<sip:{me};lr>, <sip:{t};lr>")),
            ),
            (
                "Request-URI the trunk, Route the switch",
                Forged::new("INVITE", at_trunk.clone()).route(&format!("<sip:{me};lr>")),
            ),
            (
                "Request-URI the trunk, Route the switch with a made-up dialog token",
                Forged::new("INVITE", at_trunk).route(&format!(
                    "<sip:{me};lr;tbd=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA>"
                )),
            ),
        ],
    );
    assert_refused(&attempts, Some(481), "the trunk");
    assert_dialog_log(&switch, ip, attempts.len());
}

#[test]
fn forged_bye_from_a_third_address_gets_481_and_the_call_goes_on() {
    let switch = switch(false, None);
    let mut call = answered_call(&switch);
    let call_id = call.a_dialog.call_id.clone();
    assert!(
        live_call(&switch, &call_id).is_some_and(|c| json_str(&c, "state") == "answered"),
        "the call is up: {:#?}",
        live_calls(&switch)
    );

    // The very BYEs the parties would send (their route sets, tags, Call-ID, remote targets),
    // but from a third address.
    let ip = "127.0.5.4";
    let from = attacker(ip, &switch);
    let as_caller = Forged::from_dialog("BYE", &call.a_dialog);
    let as_callee = Forged::from_dialog("BYE", &call.b_dialog);
    let to_callee = send(&from, &as_caller.render(from.local), ANSWER_WAIT);
    let to_caller = send(&from, &as_callee.render(from.local), ANSWER_WAIT);
    let at_b = call.b.recv_request("BYE", SILENCE);
    let at_a = call.a.recv_request("BYE", Duration::from_millis(200));
    assert!(
        to_callee.status == Some(481)
            && to_caller.status == Some(481)
            && at_b.is_none()
            && at_a.is_none(),
        "forged BYEs from {ip}: as the caller answered {to_callee:?}, as the callee {to_caller:?}; \
         the callee got {:?}, the caller got {:?}",
        at_b.map(|m| m.text()),
        at_a.map(|m| m.text())
    );
    assert_dialog_log(&switch, ip, 2);
    assert!(
        live_call(&switch, &call_id).is_some_and(|c| json_str(&c, "state") == "answered"),
        "the call must go on after the forged BYEs: {:#?}",
        live_calls(&switch)
    );

    // The real caller hangs up: the callee gets that BYE, the caller its 200, one record.
    let Call {
        a, b, a_dialog: d, ..
    } = &mut call;
    let (bye, ok) = exchange(a, b, "BYE", None, |a| a.bye(d));
    assert_eq!(ok.status, 200, "the caller's BYE: {}", ok.text());
    assert_eq!(bye.header("call-id"), Some(call_id.as_str()));
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("disposition", "answered"),
            ("sip_status", "200"),
        ],
    );
    assert!(
        row["duration_ms"].as_i64().unwrap_or(0) >= 1000,
        "the call lasted past the forged BYEs: {row:#}"
    );
    assert!(Switch::eventually(Duration::from_secs(2), || live_call(
        &switch, &call_id
    )
    .is_none()));
}

/// In-dialog OPTIONS and BYE toward a loopback "phone" no dialog names, with and without a
/// Route naming the switch.
fn options_and_bye_toward_a_loopback_phone(domain: bool) {
    let phone = Listener::bind();
    let switch = switch(domain, None);
    let ip = "127.0.5.6";
    let from = attacker(ip, &switch);
    let uri = format!("sip:x@{}", phone.addr);
    let ours = format!("<sip:{};lr>", switch.sip);
    let attempts = attack(
        &from,
        &phone,
        &[
            ("OPTIONS, no Route", Forged::new("OPTIONS", uri.clone())),
            (
                "OPTIONS, Route the switch",
                Forged::new("OPTIONS", uri.clone()).route(&ours),
            ),
            ("BYE, no Route", Forged::new("BYE", uri.clone())),
            (
                "BYE, Route the switch",
                Forged::new("BYE", uri).route(&ours),
            ),
        ],
    );
    assert_refused(&attempts, Some(481), "the listener");
    assert_dialog_log(&switch, ip, attempts.len());
}

#[test]
fn forged_options_and_bye_toward_a_loopback_phone_get_481() {
    options_and_bye_toward_a_loopback_phone(false);
}

/// With `--domain 127.0.0.1` a URI on 127.0.0.1 at another port is a phone, not the switch:
/// that must not make it reachable from outside a dialog either.
#[test]
fn forged_options_and_bye_toward_a_loopback_phone_get_481_with_domain_set() {
    options_and_bye_toward_a_loopback_phone(true);
}

/// A stray ACK (To tag) toward a loopback "phone", with and without a Route naming the switch.
fn stray_ack_toward_a_loopback_phone(domain: bool) {
    let phone = Listener::bind();
    let switch = switch(domain, None);
    let ip = "127.0.5.7";
    let from = attacker(ip, &switch);
    let uri = format!("sip:x@{}", phone.addr);
    let attempts = attack(
        &from,
        &phone,
        &[
            (
                "ACK, Route the switch",
                Forged::new("ACK", uri.clone()).route(&format!("<sip:{};lr>", switch.sip)),
            ),
            ("ACK, no Route", Forged::new("ACK", uri)),
        ],
    );
    assert_refused(&attempts, None, "the listener");
    assert_dialog_log(&switch, ip, attempts.len());
}

#[test]
fn stray_ack_is_dropped_without_an_answer() {
    stray_ack_toward_a_loopback_phone(false);
}

#[test]
fn stray_ack_is_dropped_without_an_answer_with_domain_set() {
    stray_ack_toward_a_loopback_phone(true);
}

#[test]
fn ten_forged_requests_ban_their_source() {
    let phone = Listener::bind();
    let switch = switch(false, None);
    let ip = "127.0.5.8";
    let from = attacker(ip, &switch);
    let ours = format!("<sip:{};lr>", switch.sip);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let forged = Forged::new("BYE", format!("sip:x@{}", phone.addr)).route(&ours);
        statuses.push(
            send(
                &from,
                &forged.render(from.local),
                Duration::from_millis(800),
            )
            .status,
        );
    }
    let heard = phone.heard(Duration::from_millis(200));
    let answered = statuses.iter().take_while(|s| s.is_some()).count();
    assert!(
        (9..=10).contains(&answered)
            && statuses[..answered].iter().all(|s| *s == Some(481))
            && statuses[answered..].iter().all(Option::is_none)
            && heard.is_empty(),
        "want 481 to the forged requests up to the 10th failure, then silence, and nothing at \
         the listener: answers {statuses:?}, the listener heard {heard:?}"
    );
    // Banned: even a plain OPTIONS to the switch gets no answer now.
    from.send(&common::sip::options("UDP", from.local, switch.sip));
    let options = from.recv_final(SILENCE);
    assert!(
        options.is_none(),
        "a banned source got {:?}",
        options.map(|m| m.status)
    );
    let bans = switch.cli_ok(&["ban", "list", "--json"]);
    let bans: serde_json::Value = serde_json::from_str(&bans).expect("ban list --json is JSON");
    assert!(
        bans.as_array()
            .is_some_and(|l| l.iter().any(|b| json_str(b, "address") == ip)),
        "{ip} is not in the ban list: {bans:#}"
    );
    let (_, metrics) = admin_get_text(&switch, "/metrics");
    let active = metrics
        .lines()
        .find_map(|l| l.strip_prefix("tambun_bans_active "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert!(
        active.is_some_and(|n| n >= 1.0),
        "/metrics tambun_bans_active: {active:?}"
    );
    // The allow-listed phones' address is not affected.
    assert!(switch.answers_options(Duration::from_secs(2)));
}

/// The CANCEL the caller of `invite` would send, built from what the callee received: the
/// caller's Via (its sent-by and branch name the INVITE's transaction), From, To, Call-ID and
/// CSeq number, to `uri` (the caller's own Request-URI).
fn cancel_for(invite: &Msg, uri: &str) -> String {
    let vias = invite.header_values("via");
    let caller_via = vias.get(1).expect("the caller's Via below the switch's");
    let (sent_by, params) = caller_via.split_once(';').expect("Via parameters");
    let branch = params
        .split(';')
        .find_map(|p| p.strip_prefix("branch="))
        .expect("a branch");
    let cseq = invite.header("cseq").unwrap_or("");
    let seq = cseq.split_whitespace().next().unwrap_or("1");
    format!(
        "CANCEL {uri} SIP/2.0\r\nVia: {sent_by};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {seq} CANCEL\r\n\
         Content-Length: 0\r\n\r\n",
        invite.header("from").unwrap_or(""),
        invite.header("to").unwrap_or(""),
        invite.header("call-id").unwrap_or(""),
    )
}

/// A CANCEL for the call ringing `callee` (it received `invite`), sent from `ip`: 481, the
/// callee gets no CANCEL and the call still rings.
#[track_caller]
fn assert_forged_cancel_refused(switch: &Switch, callee: &mut Phone, invite: &Msg, ip: &str) {
    let from = attacker(ip, switch);
    let cancel = cancel_for(invite, &format!("sip:2300@{}", switch.sip));
    let answer = send(&from, &cancel, ANSWER_WAIT);
    let at_callee = callee.recv_request("CANCEL", SILENCE);
    let call_id = invite.header("call-id").unwrap_or("");
    let state = live_call(switch, call_id).map(|c| json_str(&c, "state"));
    assert!(
        answer.status == Some(481) && at_callee.is_none() && state.as_deref() == Some("ringing"),
        "forged CANCEL from {ip}: answered {answer:?}; the callee got {:?}; the call is {state:?}",
        at_callee.map(|m| m.text())
    );
}

#[test]
fn forged_cancel_from_a_third_address_gets_481_and_the_call_keeps_ringing() {
    let switch = switch(false, None);
    let mut a = Phone::register(&switch, "1000", "rahasia1000");
    let mut b = Phone::register(&switch, "2300", "rahasia2300");
    let (_a_sock, _b_sock, a_rtp, b_rtp) = rtp_pair();
    let ip = "127.0.5.9";
    let mut a_dialog = std::thread::scope(|s| {
        let caller = s.spawn(|| a.call("2300", &offer(a_rtp, 1, "a=sendrecv")).1);
        let invite = b
            .recv_request("INVITE", Duration::from_secs(5))
            .expect("no INVITE reached the callee");
        let tag = unique("tt");
        b.respond(&invite, 180, "Ringing", &tag, None);
        assert_forged_cancel_refused(&switch, &mut b, &invite, ip);
        // Still ringing: the callee answers, the caller gets the 200.
        b.respond(
            &invite,
            200,
            "OK",
            &tag,
            Some(&offer(b_rtp, 1, "a=sendrecv")),
        );
        b.recv_request("ACK", Duration::from_secs(5))
            .expect("no ACK reached the callee");
        caller.join().expect("caller thread")
    });
    let (_, ok) = exchange(&mut a, &mut b, "BYE", None, |a| a.bye(&mut a_dialog));
    assert_eq!(ok.status, 200, "BYE: {}", ok.text());
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("disposition", "answered"),
        ],
    );
}

/// The forged CANCEL must not take the caller's own CANCEL's place either (same transaction
/// key: the INVITE's branch and sent-by): when the caller gives up, the callee gets its CANCEL.
#[test]
fn forged_cancel_does_not_stop_the_callers_own_cancel() {
    let switch = switch(false, None);
    let mut b = Phone::register(&switch, "2300", "rahasia2300");
    let caller = std::thread::scope(|s| {
        let caller = s.spawn(|| {
            sipp_call(
                &switch,
                "caller",
                "1000",
                "rahasia1000",
                "2300",
                &sipp_scenario("uac-cancel.xml"),
                &["-d", "2500"],
            )
        });
        let invite = b
            .recv_request("INVITE", Duration::from_secs(5))
            .expect("no INVITE reached the callee");
        let tag = unique("tt");
        b.respond(&invite, 180, "Ringing", &tag, None);
        assert_forged_cancel_refused(&switch, &mut b, &invite, "127.0.5.10");
        // 2.5 s after the 180 the caller cancels: that CANCEL reaches the callee.
        let cancel = b.recv_request("CANCEL", Duration::from_secs(4));
        let cancel = cancel.expect("the caller's own CANCEL did not reach the callee");
        assert_via_switch(&switch, &cancel.text(), "the CANCEL");
        b.respond(&cancel, 200, "OK", &tag, None);
        b.respond(&invite, 487, "Request Terminated", &tag, None);
        b.recv_request("ACK", Duration::from_secs(5))
            .expect("no ACK for the 487");
        caller.join().expect("caller thread")
    });
    assert_sipp_ok(&caller, 1, "caller (CANCEL, wants 200 and 487)");
    let row = one_cdr(&switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("disposition", "cancelled"),
        ],
    );
}

// ---- legitimate flows, with --domain 127.0.0.1 ----------------------------------------------

/// The requests with `method` among SIPp's received messages.
fn requests_in(messages: &[String], method: &str) -> Vec<String> {
    let start = format!("{method} ");
    messages
        .iter()
        .filter(|m| m.starts_with(&start))
        .cloned()
        .collect()
}

/// `messages` hold `count` requests with each method, each from the switch.
#[track_caller]
fn assert_requests_through_switch(
    switch: &Switch,
    who: &str,
    messages: &[String],
    methods: &[(&str, usize)],
) {
    for (method, count) in methods {
        let got = requests_in(messages, method);
        assert_eq!(
            got.len(),
            *count,
            "{who} should have received {count} {method}: {messages:#?}"
        );
        for m in &got {
            assert_via_switch(switch, m, &format!("{method} at {who}"));
        }
    }
}

#[track_caller]
fn assert_one_answered_call(switch: &Switch) {
    let row = one_cdr(switch);
    assert_cdr(
        &row,
        &[
            ("caller", "1000"),
            ("callee", "2300"),
            ("disposition", "answered"),
            ("sip_status", "200"),
        ],
    );
}

#[test]
fn sipp_caller_sends_reinvite_update_info_and_bye_with_domain_set() {
    let switch = switch(true, None);
    let mut callee = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "rahasia2300",
        "uas-dialog.xml",
        &["-m", "1", "-d", "100"],
    );
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "rahasia1000",
        "2300",
        &sipp_scenario("uac-dialog.xml"),
        &["-d", "200"],
    );
    let callee_run = callee.finish(Duration::from_secs(5));
    assert_sipp_ok(
        &caller,
        1,
        "caller: re-INVITE, UPDATE, INFO and BYE toward a callee on 127.0.0.1",
    );
    assert_sipp_ok(&callee_run, 1, "callee");
    assert_requests_through_switch(
        &switch,
        "the callee",
        &callee.received(),
        &[("INVITE", 2), ("UPDATE", 1), ("INFO", 1), ("BYE", 1)],
    );
    assert_one_answered_call(&switch);
}

#[test]
fn sipp_callee_sends_reinvite_update_info_and_bye_with_domain_set() {
    let switch = switch(true, None);
    let mut callee = SippUas::callee(
        &switch,
        "2300",
        "2300",
        "rahasia2300",
        "uas-dialog-active.xml",
        &["-m", "1", "-d", "100"],
    );
    let caller = sipp_call(
        &switch,
        "caller",
        "1000",
        "rahasia1000",
        "2300",
        &sipp_scenario("uac-dialog-passive.xml"),
        &[],
    );
    let callee_run = callee.finish(Duration::from_secs(5));
    assert_sipp_ok(
        &callee_run,
        1,
        "callee: re-INVITE, UPDATE, INFO and BYE toward a caller on 127.0.0.1",
    );
    assert_sipp_ok(&caller, 1, "caller");
    assert_requests_through_switch(
        &switch,
        "the caller",
        &received_messages(&caller.dir.join("messages.log")),
        &[("INVITE", 1), ("UPDATE", 1), ("INFO", 1), ("BYE", 1)],
    );
    assert_one_answered_call(&switch);
}

/// How often `needle` is in a baresip's log.
fn log_count(phone: &Baresip, needle: &str) -> usize {
    phone.log_text().matches(needle).count()
}

#[test]
fn baresip_hold_and_resume_reach_the_other_baresip_with_domain_set() {
    let switch = switch(true, None);
    let callee = Baresip::registered(&switch, "2300", "rahasia2300", ";answermode=auto");
    let caller = Baresip::registered(&switch, "1000", "rahasia1000", "");
    caller.command_data("dial", &format!("sip:2300@{}", switch.sip));
    let up = Switch::eventually(Duration::from_secs(10), || {
        caller.has_established_call() && callee.has_established_call()
    });
    assert!(up, "the call was not established");
    // baresip 1.0 logs these without -v: the callee each re-INVITE it gets, the caller each
    // SDP answer it applies (the 200 of its re-INVITE).
    const REINVITE: &str = "call: got re-INVITE";
    const ANSWER: &str = "stream: update 'audio'";
    let answers = log_count(&caller, ANSWER);
    assert_eq!(log_count(&callee, REINVITE), 0);

    for (n, command) in [(1, "hold"), (2, "resume")] {
        caller.command_data(command, "");
        // The re-INVITE reaches the callee and its answer (200 with SDP) the caller.
        let through = Switch::eventually(Duration::from_secs(5), || {
            log_count(&callee, REINVITE) == n && log_count(&caller, ANSWER) == answers + n
        });
        assert!(
            through,
            "{command}: the callee logged {} re-INVITEs (want {n}), the caller {} SDP answers \
             (want {})\ncaller log:\n{}\ncallee log:\n{}",
            log_count(&callee, REINVITE),
            log_count(&caller, ANSWER),
            answers + n,
            caller.log_text(),
            callee.log_text()
        );
        assert!(
            caller.has_established_call() && callee.has_established_call(),
            "after {command}"
        );
    }
    let held = caller.command_data("listcalls", "");
    assert!(!held.contains("on hold"), "resumed: {held}");

    caller.command_data("hangup", "");
    let closed = Switch::eventually(Duration::from_secs(5), || !callee.has_established_call());
    assert!(closed, "the caller's BYE did not reach the callee");
    assert_one_answered_call(&switch);
}

#[test]
fn refer_from_baresip_reaches_the_other_party_with_domain_set() {
    let switch = switch(true, None);
    let mut phone = Phone::register(&switch, "2300", "rahasia2300");
    let caller = Baresip::registered(&switch, "1000", "rahasia1000", "");
    let (_sock, _, rtp, _) = rtp_pair();
    caller.command_data("dial", &format!("sip:2300@{}", switch.sip));
    let (_, mut dialog) = phone.answer(&offer(rtp, 1, "a=sendrecv"));
    assert!(
        Switch::eventually(Duration::from_secs(5), || caller.has_established_call()),
        "the call was not established"
    );

    // baresip transfers the phone to 2301: its REFER must reach the phone through the switch.
    let target = format!("sip:2301@{}", switch.sip);
    caller.command_data("transfer", &target);
    let refer = phone
        .recv_request("REFER", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no REFER reached 2300\ncaller log:\n{}", caller.log_text()));
    assert_via_switch(&switch, &refer.text(), "the REFER");
    let refer_to = refer.header("refer-to").unwrap_or("");
    assert!(refer_to.contains("2301"), "Refer-To: {refer_to}");
    phone.respond(&refer, 202, "Accepted", "", None);

    // The phone's NOTIFY (the transfer's outcome) goes the other way and is answered.
    let notify = phone.request(
        &mut dialog,
        "NOTIFY",
        &[
            "Event: refer",
            "Subscription-State: terminated;reason=noresource",
        ],
        Some(("message/sipfrag;version=2.0", "SIP/2.0 200 OK\r\n")),
    );
    assert_eq!(
        notify.status,
        200,
        "NOTIFY toward baresip: {}\ncaller log:\n{}",
        notify.text(),
        caller.log_text()
    );

    // The call ends with a BYE from either side (baresip hangs up after a transfer).
    if phone.recv_request("BYE", Duration::from_secs(2)).is_none() {
        caller.command_data("hangup", "");
        phone.answer_in_dialog("BYE", None);
    }
}

#[test]
fn reinvite_and_bye_after_a_restart_reach_the_other_party_with_domain_set() {
    let mut switch = switch(true, None);
    let mut call = answered_call(&switch);
    let before = switch.sip;
    switch.restart();
    assert_eq!(
        switch.sip, before,
        "the switch came back on another port; the phones' route sets name the old one"
    );

    let Call {
        a,
        b,
        a_dialog,
        b_dialog,
        a_rtp,
        b_rtp,
        ..
    } = &mut call;
    // A re-INVITE from the caller ...
    let hold = offer(*a_rtp, 2, "a=sendonly");
    let held = offer(*b_rtp, 2, "a=recvonly");
    let (got, ok) = exchange(a, b, "INVITE", Some(&held), |a| a.reinvite(a_dialog, &hold));
    assert_eq!(ok.status, 200, "re-INVITE after the restart: {}", ok.text());
    assert_via_switch(&switch, &got.text(), "the re-INVITE");
    // ... and a BYE from the callee: it reaches the caller, and the caller's 200 the callee.
    let (got, ok) = exchange(b, a, "BYE", None, |b| b.bye(b_dialog));
    assert_eq!(ok.status, 200, "BYE after the restart: {}", ok.text());
    assert_via_switch(&switch, &got.text(), "the BYE");
    assert_eq!(got.header("call-id"), Some(a_dialog.call_id.as_str()));
}
