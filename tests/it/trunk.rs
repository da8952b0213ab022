//! The central trunk over the wire: SIPp carriers on loopback. One demands digest on
//! REGISTER (tests/sipp/carrier-registrar.xml): Tambun registers with the password set by
//! `tambun trunk passwd`, refreshes, notices when the carrier is gone and registers again
//! when it is back, and `tambun trunk status --json` says so at each step. Two answer calls
//! (uas-answer.xml): a call from Setda reaches the first with Setda's public number as caller
//! ID in that carrier's format; when the first stops answering, the next call goes to the
//! second carrier in its own format. Inbound, a carrier (a SIPp UAC calling from the
//! carrier's address) reaches Setda's reception group by Setda's public number and the
//! operator by an unknown one; the same call from any other address is refused with 403.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::common::calls::{
    assert_sipp_ok, header_of, received_messages, sipp_call, wait_cdrs, SippUas, CALL_TIMEOUT,
};
use crate::common::media::admin_get_text;
use crate::common::peers::{run_sipp_from, sipp_scenario, SippRun};
use crate::common::{free_udp_tcp_port, Switch, SwitchOptions};

/// `tambun trunk status --json`, parsed.
fn status(switch: &Switch) -> Vec<Value> {
    let out = switch.cli_ok(&["trunk", "status", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("trunk status --json: {e}: {out}"))
}

fn carrier(switch: &Switch, name: &str) -> Value {
    status(switch)
        .into_iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no trunk {name} in {:#?}", status(switch)))
}

/// The first carrier of the province file (the shipped `telkom`) over `transport`.
fn first_carrier_over(switch: &Switch, transport: &str) {
    let province = switch.dialplan.join("province.toml");
    let text = fs::read_to_string(&province).unwrap();
    let text = text.replacen(
        "transport = \"udp\"",
        &format!("transport = \"{transport}\""),
        1,
    );
    fs::write(&province, text).unwrap();
}

/// `tambun trunk passwd NAME` with the SIPp carriers' password.
fn set_carrier_password(switch: &Switch, name: &str) {
    let set = switch.cli_stdin(
        &["trunk", "passwd", name, "--password-stdin"],
        "carrier-secret\n",
    );
    assert!(set.status.success(), "trunk passwd: {set:?}");
}

#[test]
fn tambun_registers_with_a_carrier_and_again_after_it_restarts() {
    let mut switch = Switch::create(SwitchOptions::default());
    let registrar = SippUas::listen(
        switch.dir(),
        "carrier",
        "carrier-registrar.xml",
        &["-timeout", "120s"],
    );
    let port = registrar.port;
    switch.trunk_at(
        &registrar.addr().to_string(),
        "[trunk.register]\nusername = \"0536321000\"\nrealm = \"carrier.test\"\n",
    );
    // No password yet: the carrier's challenge cannot be answered, and status says why.
    switch.launch();
    let said = Switch::eventually(Duration::from_secs(10), || {
        carrier(&switch, "telkom")["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("tambun trunk passwd telkom"))
    });
    assert!(said, "no password: {:#?}", status(&switch));
    assert_eq!(carrier(&switch, "telkom")["registration"], "failed");

    // The password, set while the switch runs: registered within seconds.
    set_carrier_password(&switch, "telkom");
    let registered = Switch::eventually(Duration::from_secs(10), || {
        carrier(&switch, "telkom")["registration"] == "registered"
    });
    assert!(registered, "registered: {:#?}", status(&switch));
    let first = carrier(&switch, "telkom");
    let since = first["registered_since_ms"]
        .as_u64()
        .expect("registered since");
    assert!(
        first["expires_in"].as_u64().is_some_and(|e| e <= 4),
        "{first:#}"
    );
    // The password is not in the database, only its hashes.
    let db = fs::read(&switch.db).unwrap();
    assert!(!db.windows(14).any(|w| w == b"carrier-secret"));

    // Refreshes (the carrier grants 4 s): still registered 6 s later, since the same time,
    // and the carrier saw several authorized REGISTERs.
    std::thread::sleep(Duration::from_secs(6));
    let later = carrier(&switch, "telkom");
    assert_eq!(later["registration"], "registered", "{later:#}");
    assert_eq!(later["registered_since_ms"].as_u64(), Some(since));
    let authorized = registrar
        .requests("REGISTER")
        .iter()
        .filter(|r| header_of(r, "Authorization").is_some())
        .count();
    assert!(authorized >= 3, "refreshes with credentials: {authorized}");

    // The carrier goes away: the next refresh gets no answer and status says so.
    drop(registrar);
    let lost = Switch::eventually(Duration::from_secs(20), || {
        carrier(&switch, "telkom")["registration"] != "registered"
    });
    assert!(lost, "noticed the carrier is gone: {:#?}", status(&switch));
    let gone = carrier(&switch, "telkom");
    assert!(
        gone["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer to REGISTER") || e.contains("ran out")),
        "{gone:#}"
    );
    assert_eq!(gone["healthy"], false);
    let (_, metrics) = admin_get_text(&switch, "/metrics");
    assert!(
        metrics.contains("tambun_trunk_registered{trunk=\"telkom\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tambun_trunk_healthy{trunk=\"telkom\"} 0"),
        "{metrics}"
    );

    // Back on the same address: registered again, since a new time.
    let _back = SippUas::listen_at(
        switch.dir(),
        "carrier-back",
        port,
        "carrier-registrar.xml",
        &["-timeout", "120s"],
    );
    let again = Switch::eventually(Duration::from_secs(20), || {
        carrier(&switch, "telkom")["registration"] == "registered"
    });
    assert!(again, "registered again: {:#?}", status(&switch));
    let back = carrier(&switch, "telkom");
    assert!(
        back["registered_since_ms"].as_u64().unwrap() > since,
        "{back:#}"
    );
    assert_eq!(back["healthy"], true);
    switch.stop();
}

#[test]
fn an_outside_call_carries_the_opds_number_and_fails_over_to_the_second_carrier() {
    let mut switch = Switch::create(SwitchOptions::default());
    let mut first = SippUas::listen(switch.dir(), "first", "uas-answer.xml", &["-d", "200"]);
    let mut second = SippUas::listen(
        switch.dir(),
        "second",
        "uas-early-media.xml",
        &["-m", "1", "-d", "200"],
    );
    // The first carrier wants E.164 and has the caller ID in From and PAI; the second,
    // national numbers and PAI only. A silent carrier is given up after 2 s.
    switch.trunk_at(&first.addr().to_string(), "");
    let province = switch.dialplan.join("province.toml");
    let text = fs::read_to_string(&province).unwrap();
    let text = text
        .replace("number_format = \"national\"", "number_format = \"e164\"\ntimeout_secs = 2")
        .replace("caller_id = \"pai\"", "caller_id = \"both\"")
        .replace(
            "\n[outside]",
            &format!(
                "\n[[trunk]]\nname = \"lintasarta\"\ntarget = \"{}\"\ntransport = \"udp\"\npriority = 2\nping_secs = 0\n\n[outside]",
                second.addr()
            ),
        );
    fs::write(&province, text).unwrap();
    let setda = switch.dialplan.join("setda.toml");
    let text = fs::read_to_string(&setda).unwrap();
    fs::write(
        &setda,
        text.replace(
            "reception = \"1000\"",
            "reception = \"1000\"\npublic_number = \"0536 3221234\"",
        ),
    )
    .unwrap();
    switch.add_ext("1001", "setda", "pw1001");
    switch.launch();
    let list = switch.cli_ok(&["trunk", "list"]);
    assert!(
        list.find("telkom").unwrap() < list.find("lintasarta").unwrap(),
        "{list}"
    );

    // A national call from Setda (9 + 0561…): to the first carrier, as +62561…, From and
    // PAI Setda's number in E.164; a PAI the phone put in is not passed on.
    let run = sipp_call(
        &switch,
        "one",
        "1001",
        "pw1001",
        "90561234567",
        &sipp_scenario("uac-call-pai.xml"),
        &["-d", "300"],
    );
    assert_sipp_ok(&run, 1, "call to the first carrier");
    let invites = first.requests("INVITE");
    assert_eq!(invites.len(), 1, "{invites:#?}");
    let inv = &invites[0];
    assert!(inv.starts_with("INVITE sip:+62561234567@"), "{inv}");
    let pai = header_of(inv, "P-Asserted-Identity").unwrap_or_default();
    assert!(pai.contains("<sip:+625363221234@"), "PAI: {inv}");
    assert!(
        !inv.contains("forged"),
        "the phone's own PAI went through: {inv}"
    );
    let from = header_of(inv, "From").unwrap_or_default();
    assert!(from.contains("sip:+625363221234@"), "From: {inv}");
    assert!(second.requests("INVITE").is_empty());
    let calls = carrier(&switch, "telkom");
    assert_eq!(calls["calls_in_progress"], 0, "{calls:#}");

    // The first carrier stops answering: the next call waits 2 s for it, then goes to the
    // second, as a national number with PAI only. That carrier plays early media (183 with
    // SDP): it reaches the phone, anchored in the relay.
    drop(first.finish(Duration::from_millis(1)));
    let run = sipp_call(
        &switch,
        "two",
        "1001",
        "pw1001",
        "90561234567",
        &sipp_scenario("uac-call.xml"),
        &["-d", "300", "-trace_msg", "-message_file", "messages.log"],
    );
    assert_sipp_ok(&run, 1, "call failed over to the second carrier");
    let early = received_messages(&run.dir.join("messages.log"))
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 183"))
        .expect("the phone got the carrier's 183");
    let port: u16 = early
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("183 without SDP: {early}"));
    assert!(
        (10000..=20000).contains(&port),
        "the early media is anchored in the relay (ports 10000-20000): {early}"
    );
    let invites = second.requests("INVITE");
    assert_eq!(invites.len(), 1, "{invites:#?}");
    let inv = &invites[0];
    assert!(inv.starts_with("INVITE sip:0561234567@"), "{inv}");
    let pai = header_of(inv, "P-Asserted-Identity").unwrap_or_default();
    assert!(pai.contains("<sip:+625363221234@"), "PAI: {inv}");
    let from = header_of(inv, "From").unwrap_or_default();
    assert!(
        from.contains("sip:1001@"),
        "From as the phone sent it: {inv}"
    );
    // The silent carrier is tried after the healthy one from now on, and status says why.
    let telkom = carrier(&switch, "telkom");
    assert_eq!(telkom["healthy"], false, "{telkom:#}");
    assert!(
        telkom["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer")),
        "{telkom:#}"
    );
    let _ = second.finish(CALL_TIMEOUT);
    switch.stop();
}

/// A carrier's inbound call to `number` from `port` (the carrier's address), or from a free
/// port when `port` is `None` (someone else), with `scenario`.
fn inbound(
    switch: &Switch,
    name: &str,
    port: Option<u16>,
    number: &str,
    scenario: &str,
) -> SippRun {
    run_sipp_from(
        switch.dir(),
        name,
        switch.sip,
        port,
        &sipp_scenario(scenario),
        None,
        &[
            "-s",
            number,
            "-key",
            "caller",
            "081234567890",
            "-m",
            "1",
            "-d",
            "300",
        ],
        CALL_TIMEOUT,
    )
}

#[test]
fn inbound_calls_reach_the_opds_reception_group_or_the_operator_and_only_from_carriers() {
    let mut switch = Switch::create(SwitchOptions::default());
    // The carrier calls from the address calls go to; nothing listens there while it is idle.
    let carrier_port = free_udp_tcp_port(&[]);
    switch.trunk_at(&format!("127.0.0.1:{carrier_port}"), "");
    let setda = switch.dialplan.join("setda.toml");
    let text = fs::read_to_string(&setda).unwrap();
    fs::write(
        &setda,
        format!(
            "{text}\n[[group]]\nname = \"resepsionis\"\nstrategy = \"parallel\"\n\
             members = [\"1000\", \"1001\"]\n\n\
             [[did]]\nnumber = \"+62 536 3221234\"\nto = {{ group = \"resepsionis\" }}\n"
        ),
    )
    .unwrap();
    for (ext, pw) in [("1000", "pw1000"), ("1001", "pw1001"), ("3500", "pw3500")] {
        switch.add_ext(ext, if ext == "3500" { "diskominfo" } else { "setda" }, pw);
    }
    switch.launch();
    let reception = SippUas::callee(
        &switch,
        "reception",
        "1000",
        "pw1000",
        "uas-answer.xml",
        &["-m", "1", "-d", "100"],
    );
    let operator = SippUas::callee(
        &switch,
        "operator",
        "3500",
        "pw3500",
        "uas-answer.xml",
        &["-m", "1", "-d", "100"],
    );

    // Setda's public number, as the carrier writes it (E.164 here): Setda's reception group.
    let run = inbound(
        &switch,
        "did",
        Some(carrier_port),
        "+625363221234",
        "carrier-call.xml",
    );
    assert_sipp_ok(&run, 1, "inbound call to Setda's public number");
    let got = reception.requests("INVITE");
    assert_eq!(got.len(), 1, "the reception group's 1000 rang: {got:#?}");
    // An unknown public number: Diskominfo's operator (3500, `[inbound] operator`).
    let run = inbound(
        &switch,
        "unknown",
        Some(carrier_port),
        "05369999999",
        "carrier-call.xml",
    );
    assert_sipp_ok(&run, 1, "inbound call to an unknown number");
    assert_eq!(operator.requests("INVITE").len(), 1, "the operator rang");

    // The same call from an address that is not a carrier: 403, and the phones never ring.
    let run = inbound(
        &switch,
        "stranger",
        None,
        "+625363221234",
        "carrier-refused.xml",
    );
    assert_sipp_ok(
        &run,
        1,
        "a call to a public number from elsewhere is refused",
    );
    assert_eq!(reception.requests("INVITE").len(), 1);
    assert!(switch
        .log_text()
        .contains("inbound call to a public number from an address that is no carrier"));

    // Two records: the outside caller, the public number, the OPD's extension.
    let rows = wait_cdrs(&switch, 2);
    let did = rows
        .iter()
        .find(|r| r["dialled"] == "+625363221234")
        .expect("DID record");
    assert_eq!(did["caller"], "081234567890", "{did:#}");
    assert_eq!(did["callee"], "1000", "{did:#}");
    assert_eq!(did["disposition"], "answered", "{did:#}");
    assert!(
        did["route"]
            .as_str()
            .unwrap()
            .starts_with("inbound 05363221234 from telkom"),
        "{did:#}"
    );
    switch.stop();
}

#[test]
fn a_carrier_is_offered_only_its_codecs_and_passed_over_when_the_call_has_none() {
    let mut switch = Switch::create(SwitchOptions::default());
    let telkom = SippUas::listen(switch.dir(), "telkom", "uas-answer.xml", &["-d", "100"]);
    let mut other = SippUas::listen(
        switch.dir(),
        "other",
        "uas-answer.xml",
        &["-m", "1", "-d", "100"],
    );
    // telkom takes only A-law; the other carrier takes μ-law and G.729, not G.722.
    switch.trunk_at(&telkom.addr().to_string(), "codecs = [\"PCMA\"]\n");
    let province = switch.dialplan.join("province.toml");
    let text = fs::read_to_string(&province).unwrap().replacen(
        "\n[outside]",
        &format!(
            "\n[[trunk]]\nname = \"other\"\ntarget = \"{}\"\ntransport = \"udp\"\nping_secs = 0\ncodecs = [\"PCMU\", \"G729\"]\n\n[outside]",
            other.addr()
        ),
        1,
    );
    fs::write(&province, text).unwrap();
    switch.add_ext("1001", "setda", "pw1001");
    switch.launch();
    // The phone offers μ-law only: telkom is passed over without an INVITE.
    let run = sipp_call(
        &switch,
        "ulaw",
        "1001",
        "pw1001",
        "90561234567",
        &sipp_scenario("uac-call.xml"),
        &["-d", "200"],
    );
    assert_sipp_ok(&run, 1, "a μ-law call goes to the carrier that takes μ-law");
    assert!(telkom.requests("INVITE").is_empty());
    let invites = other.requests("INVITE");
    assert_eq!(invites.len(), 1);
    assert!(
        invites[0].contains("m=audio ") && invites[0].contains("RTP/AVP 0"),
        "{}",
        invites[0]
    );
    let _ = other.finish(CALL_TIMEOUT);
    switch.stop();
}

#[test]
fn tambun_connects_to_a_tcp_carrier_and_registers_over_it() {
    let mut switch = Switch::create(SwitchOptions::default());
    let registrar = SippUas::listen(
        switch.dir(),
        "carrier-tcp",
        "carrier-registrar.xml",
        &["-t", "t1", "-timeout", "60s"],
    );
    switch.trunk_at(
        &registrar.addr().to_string(),
        "[trunk.register]\nusername = \"0536321000\"\nrealm = \"carrier.test\"\n",
    );
    first_carrier_over(&switch, "tcp");
    set_carrier_password(&switch, "telkom");
    switch.launch();
    let registered = Switch::eventually(Duration::from_secs(15), || {
        carrier(&switch, "telkom")["registration"] == "registered"
    });
    assert!(
        registered,
        "registered over TCP: {:#?}\n{}",
        status(&switch),
        switch.log_text()
    );
    let reg = registrar.requests("REGISTER");
    assert!(reg[0].contains("SIP/2.0/TCP"), "{}", reg[0]);
    assert!(reg[0].contains(";transport=tcp>"), "{}", reg[0]);
    switch.stop();
}

/// A public number can lead to a conference room: Diskominfo's DID 05363220000 is an alias
/// of room 8000, whose moderators are Diskominfo's extensions. The carrier's caller is in
/// the room by its outside number, as a participant and never a moderator (it would
/// otherwise be one through the reception it is routed as), and `tambun conf show` lists it.
/// The call comes from another port than the carrier's target: one of its `inbound_from`
/// addresses (its SBCs).
#[test]
fn a_public_number_leads_an_outside_caller_into_a_room_never_as_moderator() {
    let mut switch = Switch::create(SwitchOptions::default());
    let carrier_port = free_udp_tcp_port(&[]);
    switch.trunk_at(
        &format!("127.0.0.1:{carrier_port}"),
        "inbound_from = [\"127.0.0.1/32\"]\n",
    );
    let file = switch.dialplan.join("diskominfo.toml");
    let text = fs::read_to_string(&file).unwrap();
    fs::write(
        &file,
        format!("{text}\n[[did]]\nnumber = \"05363220000\"\nto = {{ alias = \"8000\" }}\n"),
    )
    .unwrap();
    switch.launch();
    let trace = switch.cli(&["dialplan", "trace", "--inbound", "+625363220000"]);
    let trace = String::from_utf8_lossy(&trace.stdout).to_string();
    assert!(
        trace.contains("never a moderator"),
        "the trace says how the outside caller joins: {trace}"
    );

    let (dir, sip) = (switch.dir().to_path_buf(), switch.sip);
    let (run, shown) = std::thread::scope(|s| {
        let call = s.spawn(|| {
            run_sipp_from(
                &dir,
                "room",
                sip,
                None,
                &sipp_scenario("carrier-call.xml"),
                None,
                &[
                    "-s",
                    "+625363220000",
                    "-key",
                    "caller",
                    "+6281234567890",
                    "-m",
                    "1",
                    "-d",
                    "3000",
                ],
                CALL_TIMEOUT,
            )
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut shown = Value::Null;
        while std::time::Instant::now() < deadline {
            let out = switch.cli(&["conf", "show", "8000", "--json"]);
            if out.status.success() {
                shown = serde_json::from_slice(&out.stdout).expect("conf show --json is JSON");
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (call.join().unwrap(), shown)
    });
    assert_sipp_ok(&run, 1, "the carrier's call answered by room 8000");
    let people = shown["participants"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(people.len(), 1, "one participant in 8000: {shown:#}");
    assert_eq!(people[0]["extension"], "081234567890", "{shown:#}");
    assert_eq!(people[0]["moderator"], false, "{shown:#}");

    let rows = wait_cdrs(&switch, 1);
    assert_eq!(rows[0]["caller"], "081234567890", "{:#}", rows[0]);
    assert_eq!(rows[0]["disposition"], "answered", "{:#}", rows[0]);
    assert!(
        rows[0]["route"]
            .as_str()
            .unwrap()
            .contains("inbound 05363220000 from telkom"),
        "{:#}",
        rows[0]
    );
    switch.stop();
}

/// A test CA and a carrier certificate it signed for `carrier.test` and 127.0.0.1: (the CA's
/// PEM, the carrier's certificate and key in one PEM, as socat takes them).
fn carrier_certificates() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Carrier Test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["carrier.test".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (
        ca_cert.pem(),
        format!("{}{}", cert.pem(), key.serialize_pem()),
    )
}

/// socat terminating TLS on `port` (one connection) in front of a TCP SIPp at `inner`: the
/// carrier's TLS, since Debian's SIPp has none. Stopped by its PID on drop.
struct TlsFront(std::process::Child);

impl TlsFront {
    fn start(
        dir: &std::path::Path,
        name: &str,
        port: u16,
        pem: &std::path::Path,
        inner: std::net::SocketAddr,
    ) -> TlsFront {
        crate::common::require_program("socat", "socat");
        let log = fs::File::create(dir.join(format!("socat-{name}.log"))).unwrap();
        let child = std::process::Command::new("socat")
            .arg("-d")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,cert={},verify=0",
                pem.display()
            ))
            .arg(format!("TCP:{inner}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start socat");
        // listening once it accepts a TCP connection probe... which would use up its one
        // connection: wait for the port to be bound instead.
        let bound = Switch::eventually(Duration::from_secs(5), || {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
        });
        assert!(bound, "socat did not listen on {port}");
        TlsFront(child)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A carrier over TLS (socat's TLS in front of a TCP SIPp registrar): the switch connects,
/// checks the carrier's certificate against the trunk's `tls_ca` and `tls_name`, and
/// registers over the connection (`SIP/2.0/TLS`, `;transport=tls`). A second carrier whose
/// certificate does not carry its `tls_name` is never registered with: the handshake is
/// refused, and `tambun trunk status` says why.
#[test]
fn tambun_registers_with_a_tls_carrier_whose_certificate_it_checks() {
    let mut switch = Switch::create(SwitchOptions::default());
    let (ca, carrier_pem) = carrier_certificates();
    let ca_file = switch.dir().join("carrier-ca.pem");
    let pem = switch.dir().join("carrier.pem");
    fs::write(&ca_file, ca).unwrap();
    fs::write(&pem, carrier_pem).unwrap();
    let registrar = SippUas::listen(
        switch.dir(),
        "carrier-tls",
        "carrier-registrar.xml",
        &["-t", "t1", "-timeout", "60s"],
    );
    let (good, bad) = (free_udp_tcp_port(&[]), free_udp_tcp_port(&[]));
    let _good = TlsFront::start(switch.dir(), "good", good, &pem, registrar.addr());
    let _bad = TlsFront::start(switch.dir(), "bad", bad, &pem, registrar.addr());
    let ca_path = ca_file.display().to_string();
    switch.trunk_at(
        &format!("127.0.0.1:{good}"),
        &format!(
            "tls_name = \"carrier.test\"\ntls_ca = \"{ca_path}\"\n\
             [trunk.register]\nusername = \"0536321000\"\nrealm = \"carrier.test\"\n\n\
             [[trunk]]\nname = \"indosat\"\ntarget = \"127.0.0.1:{bad}\"\ntransport = \"tls\"\n\
             ping_secs = 0\ntls_name = \"sip.other.test\"\ntls_ca = \"{ca_path}\"\n\
             [trunk.register]\nusername = \"0536321000\"\nrealm = \"carrier.test\"\n"
        ),
    );
    first_carrier_over(&switch, "tls");
    for name in ["telkom", "indosat"] {
        set_carrier_password(&switch, name);
    }
    switch.launch();
    let registered = Switch::eventually(Duration::from_secs(15), || {
        carrier(&switch, "telkom")["registration"] == "registered"
    });
    assert!(
        registered,
        "registered over TLS: {:#?}\n{}",
        status(&switch),
        switch.log_text()
    );
    let reg = registrar.requests("REGISTER");
    assert!(reg[0].contains("SIP/2.0/TLS"), "{}", reg[0]);
    assert!(reg[0].contains(";transport=tls>"), "{}", reg[0]);

    let refused = Switch::eventually(Duration::from_secs(10), || {
        carrier(&switch, "indosat")["last_error"]
            .to_string()
            .contains("certificate")
    });
    let indosat = carrier(&switch, "indosat");
    assert!(
        refused,
        "the wrong name is refused: {indosat:#}\n{}",
        switch.log_text()
    );
    assert_ne!(indosat["registration"], "registered", "{indosat:#}");
    switch.stop();
}

/// An outside call over a TLS carrier (socat's TLS in front of a TCP SIPp that answers):
/// the switch opens the connection for the call, checks the certificate, and the INVITE
/// goes over it with a `;transport=tls` Request-URI.
#[test]
fn an_outside_call_goes_to_a_tls_carrier_over_a_checked_connection() {
    let mut switch = Switch::create(SwitchOptions::default());
    let (ca, carrier_pem) = carrier_certificates();
    let ca_file = switch.dir().join("carrier-ca.pem");
    let pem = switch.dir().join("carrier.pem");
    fs::write(&ca_file, ca).unwrap();
    fs::write(&pem, carrier_pem).unwrap();
    let carrier_uas = SippUas::listen(
        switch.dir(),
        "carrier-tls-calls",
        "uas-answer.xml",
        &["-t", "t1", "-m", "1", "-d", "200"],
    );
    let port = free_udp_tcp_port(&[]);
    let _front = TlsFront::start(switch.dir(), "calls", port, &pem, carrier_uas.addr());
    // The default name to check is the target's IP, which the certificate carries too.
    switch.trunk_at(
        &format!("127.0.0.1:{port}"),
        &format!("tls_ca = \"{}\"\n", ca_file.display()),
    );
    first_carrier_over(&switch, "tls");
    switch.add_ext("1001", "setda", "pw1001");
    switch.launch();
    let run = sipp_call(
        &switch,
        "tls-call",
        "1001",
        "pw1001",
        "90561234567",
        &sipp_scenario("uac-call.xml"),
        &["-d", "300"],
    );
    assert_sipp_ok(&run, 1, "call over the TLS carrier");
    let invites = carrier_uas.requests("INVITE");
    assert_eq!(invites.len(), 1, "{invites:#?}");
    assert!(
        invites[0].starts_with("INVITE sip:0561234567@127.0.0.1:")
            && invites[0]
                .lines()
                .next()
                .unwrap()
                .ends_with(";transport=tls SIP/2.0"),
        "{}",
        invites[0]
    );
    assert!(invites[0].contains("Via: SIP/2.0/TLS "), "{}", invites[0]);
    switch.stop();
}

/// The CSeq number of a SIP message's text.
fn cseq_of(msg: &str) -> u32 {
    header_of(msg, "CSeq")
        .and_then(|v| v.split_whitespace().next().map(str::to_owned))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CSeq in {msg}"))
}

/// A carrier that challenges every INVITE (401: SIPp's `verifyauth` reads only
/// `Authorization`), as most trunk providers do: the switch
/// answers for the trunk with the account it registers with (the phone never sees the
/// challenge), the carrier checks the digest, and the call is set up. The switch sent its
/// answer with CSeq + 1, so in the dialog the phone's requests reach the carrier one up
/// (ACK, BYE) and the responses reach the phone with its own numbers.
#[test]
fn a_carrier_that_challenges_invites_gets_the_trunks_credentials() {
    let mut switch = Switch::create(SwitchOptions::default());
    let carrier_uas = SippUas::listen(
        switch.dir(),
        "carrier-auth",
        "carrier-invite-auth.xml",
        &["-timeout", "60s"],
    );
    switch.trunk_at(
        &carrier_uas.addr().to_string(),
        "[trunk.register]\nusername = \"0536321000\"\nrealm = \"carrier.test\"\n",
    );
    set_carrier_password(&switch, "telkom");
    switch.add_ext("1001", "setda", "pw1001");
    switch.launch();
    let registered = Switch::eventually(Duration::from_secs(15), || {
        carrier(&switch, "telkom")["registration"] == "registered"
    });
    assert!(registered, "{:#?}\n{}", status(&switch), switch.log_text());

    let run = sipp_call(
        &switch,
        "challenged",
        "1001",
        "pw1001",
        "90561234567",
        &sipp_scenario("uac-call.xml"),
        &["-d", "300"],
    );
    assert_sipp_ok(&run, 1, "a call through a carrier that challenges INVITE");
    let invites = carrier_uas.requests("INVITE");
    assert_eq!(
        invites.len(),
        2,
        "the INVITE, then with credentials: {invites:#?}"
    );
    assert!(header_of(&invites[0], "Authorization").is_none());
    let creds = header_of(&invites[1], "Authorization").unwrap_or_default();
    assert!(
        creds.contains("username=\"0536321000\"") && creds.contains("realm=\"carrier.test\""),
        "{}",
        invites[1]
    );
    let n = cseq_of(&invites[0]);
    assert_eq!(cseq_of(&invites[1]), n + 1, "the answer is CSeq + 1");
    // The phone's ACK and BYE reach the carrier in the carrier's numbering.
    let acks = carrier_uas.requests("ACK");
    let ack = acks.last().expect("the ACK of the 200");
    assert_eq!(cseq_of(ack), n + 1, "{ack}");
    let byes = carrier_uas.requests("BYE");
    assert_eq!(byes.len(), 1, "{byes:#?}");
    assert_eq!(cseq_of(&byes[0]), n + 2, "{}", byes[0]);
    // The phone saw no 407 from the carrier, and its own numbers on the 200s.
    let got = received_messages(&run.dir.join("messages.log"));
    let final_ok: Vec<&String> = got
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 200") && m.contains("INVITE"))
        .collect();
    assert!(!final_ok.is_empty(), "{got:#?}");
    assert_eq!(
        cseq_of(final_ok[0]),
        n,
        "the phone's INVITE number: {}",
        final_ok[0]
    );
    let bye_ok = got
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains(" BYE"))
        .expect("200 for BYE");
    assert_eq!(cseq_of(bye_ok), n + 1, "{bye_ok}");
    assert!(
        !got.iter().any(|m| m.contains("carrier.test")),
        "the carrier's challenge reached the phone: {got:#?}"
    );
    let rows = wait_cdrs(&switch, 1);
    assert_eq!(rows[0]["disposition"], "answered", "{:#}", rows[0]);
    switch.stop();
}
