//! The switch's TLS certificate: with none configured, one self-signed certificate is
//! generated on the first start next to the database (key file mode 0600), its SHA-256
//! fingerprint is logged, the switch presents it, and a restart reuses it (same fingerprint).
//! SIP works over the TLS connection: OPTIONS and an authenticated REGISTER whose binding
//! shows transport `tls`.

use std::time::Duration;

use crate::common::sip::{self, Conn, RegisterSpec, Ua};
use crate::common::tls::{pem_fingerprint, TlsClient};
use crate::common::{json_str, Switch, SwitchOptions};

/// The fingerprint logged at start number `start` (1-based) and how the certificate came to be.
fn logged_fingerprint(switch: &Switch, start: usize) -> (String, String) {
    let log = switch.log_text();
    let section = log
        .split("----- tambun serve stderr, start ")
        .nth(start)
        .unwrap_or_else(|| panic!("no log of start {start}:\n{log}"));
    let line = section
        .lines()
        .find(|l| l.contains("SHA-256 fingerprint"))
        .unwrap_or_else(|| panic!("start {start} logged no TLS fingerprint:\n{section}"));
    let fp = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let origin = line
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(o, _)| o.to_owned())
        .unwrap_or_default();
    (fp, origin)
}

#[test]
fn self_signed_certificate_is_generated_once_and_kept() {
    let mut switch = Switch::create(SwitchOptions {
        tls: true,
        ..SwitchOptions::default()
    });
    switch.add_ext("1000", "setda", "rahasia1000");
    // Before the first start there is nothing to print, and the CLI says why.
    let out = switch.cli(&["tls", "fingerprint"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("generates one at its first start"), "{err}");
    switch.launch();
    let tls = switch.tls.expect("TLS address");

    let crt = switch.dir().join("tambun.db.tls.crt");
    let key = switch.dir().join("tambun.db.tls.key");
    assert!(
        crt.is_file() && key.is_file(),
        "no certificate next to the DB"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode, 0o600,
            "the private key is readable by others: {mode:o}"
        );
    }
    let (first, origin) = logged_fingerprint(&switch, 1);
    assert_eq!(origin, "self-signed, generated now");
    assert_eq!(first.len(), 95, "not a SHA-256 fingerprint: {first}");
    assert_eq!(
        pem_fingerprint(&crt),
        first,
        "the log names another certificate"
    );
    let out = switch.cli_ok(&["tls", "fingerprint"]);
    assert!(
        out.contains(&format!("SHA-256 fingerprint: {first}")),
        "`tambun tls fingerprint` printed:\n{out}"
    );

    // The switch presents that certificate and speaks SIP over it.
    let client = TlsClient::connect(tls).expect("TLS handshake with the switch");
    assert_eq!(client.fingerprint, first);
    let options = sip::options("TLS", client.local, tls);
    assert!(client.send(options.as_bytes()));
    let answer = client
        .recv_final(Duration::from_secs(3))
        .expect("an answer to OPTIONS over TLS");
    assert_eq!(answer.status, 200);
    let via = answer.header("via").unwrap_or_default().to_owned();
    assert!(via.starts_with("SIP/2.0/TLS "), "{via}");

    let mut ua = Ua::new(Conn::Tls(Box::new(client)), "1000", "rahasia1000");
    let contact = ua.contact_uri("");
    assert!(contact.ends_with(";transport=tls"), "{contact}");
    let ok = ua.register(&RegisterSpec::one(&contact, 600));
    assert_eq!(ok.status, 200, "REGISTER over TLS: {}", ok.text());
    let regs = switch.regs_of("1000");
    assert_eq!(regs.len(), 1, "{regs:?}");
    assert_eq!(json_str(&regs[0], "transport"), "tls", "{regs:?}");
    drop(ua);

    let cert_before = std::fs::read(&crt).unwrap();
    switch.restart();
    let tls = switch.tls.expect("TLS address");
    let (second, origin) = logged_fingerprint(&switch, 2);
    assert_eq!(origin, "self-signed, kept from an earlier start");
    assert_eq!(second, first, "the fingerprint changed across a restart");
    assert_eq!(std::fs::read(&crt).unwrap(), cert_before);
    let again = TlsClient::connect(tls).expect("TLS handshake after the restart");
    assert_eq!(again.fingerprint, first);
}

#[test]
fn no_tls_listens_on_no_tls_port_and_writes_no_certificate() {
    let switch = Switch::start();
    assert!(switch.tls.is_none());
    assert!(!switch.dir().join("tambun.db.tls.crt").exists());
    assert!(!switch.log_text().contains("listening on tls"));
}

#[test]
fn half_configured_certificate_is_refused_with_a_sentence() {
    let switch = Switch::create(SwitchOptions::default());
    let config = switch.dir().join("half.toml");
    std::fs::write(&config, "[tls]\ncert = \"server.pem\"\n").unwrap();
    let out = switch.cli(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error: config: tls.cert and tls.key go together"),
        "{err}"
    );
}
