//! Registrations survive a graceful stop (SIGTERM) and a new start on the same DB.

use std::time::Duration;

use crate::common;
use crate::common::sip::{Conn, RegisterSpec, Ua};
use crate::common::{json_str, Switch, SwitchOptions};

#[test]
fn registrations_survive_a_restart() {
    let mut switch = Switch::start_with_extensions(&[
        ("1000", "setda", "rahasia1000"),
        ("2300", "dinkes", "rahasia2300"),
        ("3500", "diskominfo", "rahasia3500"),
    ]);
    let mut a = Ua::new(Conn::udp(switch.sip), "1000", "rahasia1000");
    let mut b = Ua::new(Conn::udp(switch.sip), "2300", "rahasia2300");
    let mut c = Ua::new(Conn::udp(switch.sip), "3500", "rahasia3500");
    assert_eq!(a.register_self(3600).status, 200);
    assert_eq!(b.register_self(600).status, 200);
    // c registers and then unregisters: it must stay gone after the restart
    assert_eq!(c.register_self(600).status, 200);
    let gone = c.register(&RegisterSpec {
        contacts: vec!["*".into()],
        expires: Some(0),
        extra: vec![],
    });
    assert_eq!(gone.status, 200);

    let before = switch.regs();
    assert_eq!(before.len(), 2, "{before:?}");
    std::thread::sleep(Duration::from_secs(1));

    // an idle TCP connection and a half-sent request must not hold up the shutdown
    let idle = std::net::TcpStream::connect(switch.sip).expect("TCP connect");
    let half = common::sip::TcpClient::connect(switch.sip).expect("TCP connect");
    half.send(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKhalf\r\n");
    switch.stop(); // asserts a clean exit within 10 s of SIGTERM
    drop((idle, half));
    assert!(!switch.answers_options(Duration::from_millis(300)));
    switch.restart();

    let after = switch.regs();
    assert_eq!(
        after.len(),
        2,
        "after restart: {after:?}\nbefore: {before:?}"
    );
    for old in &before {
        let ext = json_str(old, "extension");
        let new = after
            .iter()
            .find(|r| json_str(r, "extension") == ext)
            .unwrap_or_else(|| panic!("{ext} lost in the restart: {after:?}"));
        for key in ["opd", "contact", "transport", "user_agent", "source"] {
            assert_eq!(json_str(old, key), json_str(new, key), "{ext}: {key}");
        }
        let (was, is) = (
            old["expires_in"].as_u64().unwrap(),
            new["expires_in"].as_u64().unwrap(),
        );
        assert!(
            is <= was && is + 30 >= was,
            "{ext}: expires_in {was} -> {is}"
        );
    }
    assert!(switch.regs_of("3500").is_empty());

    // the bindings are live, not just listed: a query from a new UA returns them
    let mut again = Ua::new(Conn::udp(switch.sip), "1000", "rahasia1000");
    let query = again.register(&RegisterSpec::default());
    assert_eq!(query.status, 200, "{}", query.text());
    let contacts = query.contacts();
    assert_eq!(contacts.len(), 1, "{}", query.text());
    assert!(contacts[0].uri.contains(&a.conn.local().to_string()));
    switch.assert_alive();
}

#[test]
fn expired_registrations_disappear_while_running_and_across_a_restart() {
    // expiries as short as 2 s are allowed here, so the test need not wait a minute
    let mut switch = Switch::create(SwitchOptions {
        config_toml: Some("[registrar]\nmin_expires = 2\n".into()),
        ..SwitchOptions::default()
    });
    switch.add_ext("1000", "setda", "rahasia1000");
    switch.add_ext("1001", "setda", "rahasia1001");
    switch.launch();
    let mut short = Ua::new(Conn::udp(switch.sip), "1000", "rahasia1000");
    let mut long = Ua::new(Conn::udp(switch.sip), "1001", "rahasia1001");
    assert_eq!(short.register_self(2).status, 200);
    assert_eq!(long.register_self(600).status, 200);
    assert_eq!(switch.regs().len(), 2);
    // while running: gone from regs and from a query after its expiry
    let gone = Switch::eventually(Duration::from_secs(5), || switch.regs_of("1000").is_empty());
    assert!(gone, "expired binding still listed: {:?}", switch.regs());
    let query = short.register(&RegisterSpec::default());
    assert_eq!(query.status, 200, "{}", query.text());
    assert!(query.contacts().is_empty(), "{}", query.text());

    // across a restart: a binding that expires while the switch is down does not come back
    assert_eq!(short.register_self(2).status, 200);
    switch.stop();
    std::thread::sleep(Duration::from_millis(3_000));
    switch.restart();
    let regs = switch.regs();
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(json_str(&regs[0], "extension"), "1001");
}
