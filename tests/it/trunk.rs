//! The central trunk over the wire: SIPp carriers on loopback. One demands digest on
//! REGISTER (tests/sipp/carrier-registrar.xml): Tambun registers with the password set by
//! `tambun trunk passwd`, refreshes, notices when the carrier is gone and registers again
//! when it is back, and `tambun trunk status --json` says so at each step. Two answer calls
//! (uas-answer.xml): a call from Setda reaches the first with Setda's public number as caller
//! ID in that carrier's format; when the first stops answering, the next call goes to the
//! second carrier in its own format.

use std::fs;
use std::time::Duration;

use serde_json::Value;

use crate::common::calls::{assert_sipp_ok, header_of, sipp_call, SippUas, CALL_TIMEOUT};
use crate::common::peers::sipp_scenario;
use crate::common::{Switch, SwitchOptions};

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
    let set = switch.cli_stdin(
        &["trunk", "passwd", "telkom", "--password-stdin"],
        "carrier-secret\n",
    );
    assert!(set.status.success(), "trunk passwd: {set:?}");
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
    let mut second = SippUas::listen(switch.dir(), "second", "uas-answer.xml", &["-d", "200"]);
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
    // second, as a national number with PAI only.
    drop(first.finish(Duration::from_millis(1)));
    let run = sipp_call(
        &switch,
        "two",
        "1001",
        "pw1001",
        "90561234567",
        &sipp_scenario("uac-call.xml"),
        &["-d", "300"],
    );
    assert_sipp_ok(&run, 1, "call failed over to the second carrier");
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
