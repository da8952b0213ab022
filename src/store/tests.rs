//! Store tests, each on a real SQLite file in a temporary directory.

use super::*;
use crate::registrar::{Binding, Change};
use crate::types::{Now, Transport};

fn ext(s: &str) -> Extension {
    s.parse().unwrap()
}

fn opd(s: &str) -> OpdCode {
    s.parse().unwrap()
}

fn opd_rows() -> Vec<OpdRow> {
    vec![
        OpdRow {
            code: opd("setda"),
            name: "Sekretariat Daerah".into(),
            blocks: vec!["1000-1199".into()],
        },
        OpdRow {
            code: opd("dinkes"),
            name: "Dinas Kesehatan".into(),
            blocks: vec!["2300-2499".into()],
        },
    ]
}

fn new_store() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = Store::open(&path).unwrap();
    store.sync_opds(&opd_rows()).unwrap();
    (dir, path, store)
}

/// The clock of the registration tests: deadlines are read back relative to it.
fn clock() -> Now {
    Now {
        instant: std::time::Instant::now(),
        unix: 1_764_561_600,
        unix_ms: 1_764_561_600_000,
    }
}

/// A binding keyed by its contact URI, as the registrar makes it (a stream binding's
/// connection is not stored, so it has none here).
fn registration(contact: &str, expires_unix: i64, now: Now) -> Binding {
    Binding {
        key: contact.into(),
        uri: contact.into(),
        params: ";+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\";reg-id=1"
            .into(),
        instance: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".into()),
        reg_id: Some(1),
        source: "127.0.0.1:5080".parse().unwrap(),
        transport: Transport::Tcp,
        conn: None,
        user_agent: "baresip".into(),
        call_id: "abc@host".into(),
        cseq: 7,
        expires_at: now.instant_at(expires_unix),
        expires_unix,
    }
}

fn upsert(n: &str, b: &Binding) -> Change {
    Change::Upsert(ext(n), Box::new(b.clone()))
}

#[test]
fn migrations_idempotent_on_reopen() {
    let (_dir, path, mut store) = new_store();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store
        .add_extension(&ext("1000"), &opd("setda"), "Reception", "pw1000")
        .unwrap();
    drop(store);
    for _ in 0..2 {
        let store = Store::open_with_realm(&path, "other-realm").unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            store.realm().unwrap(),
            DEFAULT_REALM,
            "realm is fixed at creation"
        );
        assert_eq!(store.extensions(None).unwrap().len(), 1);
        assert_eq!(store.opds().unwrap(), {
            let mut rows = opd_rows();
            rows.sort_by(|a, b| a.code.cmp(&b.code));
            rows
        });
    }
}

#[test]
fn realm_chosen_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let store = Store::open_with_realm(&path, "pbx.kalteng.go.id").unwrap();
    assert_eq!(store.realm().unwrap(), "pbx.kalteng.go.id");
    drop(store);
    assert_eq!(
        Store::open(&path).unwrap().realm().unwrap(),
        "pbx.kalteng.go.id"
    );
}

#[test]
fn dialog_secret_is_made_once_and_kept_across_opens() {
    let (_dir, path, mut store) = new_store();
    let first = store.dialog_secret().unwrap();
    assert_eq!(store.dialog_secret().unwrap(), first);
    drop(store);
    let mut again = Store::open(&path).unwrap();
    assert_eq!(
        again.dialog_secret().unwrap(),
        first,
        "kept across a restart"
    );
    // Another database has another secret.
    let (_d2, _p2, mut other) = new_store();
    assert_ne!(other.dialog_secret().unwrap(), first);
    // A value edited into nonsense is replaced (and then kept).
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE meta SET value = 'xyz' WHERE key = 'dialog_secret'",
            [],
        )
        .unwrap();
    let replaced = again.dialog_secret().unwrap();
    assert_ne!(replaced, first);
    assert_eq!(again.dialog_secret().unwrap(), replaced);
}

#[test]
fn newer_schema_refused() {
    let (_dir, path, store) = new_store();
    drop(store);
    let conn = Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found: 99, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("store: ") && msg.contains("newer"), "{msg}");
}

#[test]
fn not_a_database_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    std::fs::write(&path, vec![b'x'; 4096]).unwrap();
    let msg = Store::open(&path).unwrap_err().to_string();
    assert!(msg.starts_with("store: cannot open"), "{msg}");
}

#[test]
fn pragmas_set() {
    let (_dir, _path, store) = new_store();
    let mode: String = store
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = store
        .conn
        .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = store
        .conn
        .query_row("PRAGMA synchronous", [], |r| r.get(0))
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
}

#[test]
fn no_plaintext_password_at_rest() {
    let (_dir, path, mut store) = new_store();
    let secret = b"S3cret-xyz";
    store
        .add_extension(&ext("1000"), &opd("setda"), "Reception", "S3cret-xyz")
        .unwrap();
    store.set_password(&ext("1001"), "S3cret-xyz").unwrap_err();
    store
        .add_extension(&ext("1001"), &opd("setda"), "", "first-pw")
        .unwrap();
    store.set_password(&ext("1001"), "S3cret-xyz").unwrap();
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    let contains = |hay: &[u8]| hay.windows(secret.len()).any(|w| w == secret);
    // While the connection is open the rows are (at least) in the WAL.
    let db_bytes = std::fs::read(&path).unwrap();
    let wal_bytes = std::fs::read(&wal).unwrap();
    assert!(!wal_bytes.is_empty(), "the write went through the WAL");
    assert!(!contains(&db_bytes), "password found in the database file");
    assert!(!contains(&wal_bytes), "password found in the WAL");
    // And after a checkpoint on close.
    drop(store);
    let db_bytes = std::fs::read(&path).unwrap();
    assert!(!contains(&db_bytes), "password found in the database file");
    if let Ok(wal_bytes) = std::fs::read(&wal) {
        assert!(!contains(&wal_bytes), "password found in the WAL");
    }
}

#[test]
fn ha1_values_use_the_realm() {
    let (_dir, _path, mut store) = new_store();
    let realm = store.realm().unwrap();
    store
        .add_extension(&ext("1000"), &opd("setda"), "Reception", "pw1000")
        .unwrap();
    let rec = store.extension(&ext("1000")).unwrap().unwrap();
    assert_eq!(
        rec.ha1_md5,
        ha1_hex(Algorithm::Md5, "1000", &realm, "pw1000")
    );
    assert_eq!(
        rec.ha1_sha256,
        ha1_hex(Algorithm::Sha256, "1000", &realm, "pw1000")
    );
    assert_eq!(rec.ha1(Algorithm::Md5), rec.ha1_md5);
    assert!(rec.enabled);
    assert!(rec.created_at > 1_700_000_000 && rec.created_at <= rec.updated_at);
    assert!(
        !format!("{rec:?}").contains(&rec.ha1_md5),
        "Debug hides HA1"
    );

    store.set_password(&ext("1000"), "new-password").unwrap();
    let rec = store.extension(&ext("1000")).unwrap().unwrap();
    assert_eq!(
        rec.ha1_md5,
        ha1_hex(Algorithm::Md5, "1000", &realm, "new-password")
    );
    assert_eq!(
        rec.ha1_sha256,
        ha1_hex(Algorithm::Sha256, "1000", &realm, "new-password")
    );
}

#[test]
fn data_version_changes_after_another_connections_write() {
    let (_dir, path, mut store) = new_store();
    let v0 = store.data_version().unwrap();
    // Our own writes do not change it.
    store
        .add_extension(&ext("1000"), &opd("setda"), "", "pw1000")
        .unwrap();
    assert_eq!(store.data_version().unwrap(), v0);
    let mut other = Store::open(&path).unwrap();
    other
        .add_extension(&ext("1001"), &opd("setda"), "", "pw1001")
        .unwrap();
    let v1 = store.data_version().unwrap();
    assert_ne!(v1, v0);
    // A sync with nothing new writes nothing.
    other.sync_opds(&opd_rows()).unwrap();
    assert_eq!(store.data_version().unwrap(), v1);
    other.set_enabled(&ext("1001"), false).unwrap();
    assert_ne!(store.data_version().unwrap(), v1);
}

#[test]
fn extension_errors_are_distinct() {
    let (_dir, _path, mut store) = new_store();
    store
        .add_extension(&ext("1000"), &opd("setda"), "", "pw1000")
        .unwrap();
    let e = store
        .add_extension(&ext("1000"), &opd("setda"), "", "pw1000")
        .unwrap_err();
    assert!(matches!(e, StoreError::DuplicateExtension(ref n) if n.as_str() == "1000"));
    assert_eq!(e.to_string(), "store: extension 1000 already exists");
    let e = store
        .add_extension(&ext("5000"), &opd("nowhere"), "", "pw5000")
        .unwrap_err();
    assert!(matches!(e, StoreError::UnknownOpd(_)), "{e}");
    for e in [
        store.set_password(&ext("1234"), "x").unwrap_err(),
        store.set_enabled(&ext("1234"), false).unwrap_err(),
        store.remove_extension(&ext("1234")).unwrap_err(),
    ] {
        assert!(matches!(e, StoreError::UnknownExtension(_)), "{e}");
        assert_eq!(e.to_string(), "store: extension 1234 does not exist");
    }
    assert!(store.extension(&ext("1234")).unwrap().is_none());
}

#[test]
fn listing_sorted_and_counted() {
    let (_dir, _path, mut store) = new_store();
    for (n, o) in [("2301", "dinkes"), ("1100", "setda"), ("1000", "setda")] {
        store.add_extension(&ext(n), &opd(o), "", "secret").unwrap();
    }
    let all: Vec<String> = store
        .extensions(None)
        .unwrap()
        .into_iter()
        .map(|r| r.number.to_string())
        .collect();
    assert_eq!(all, ["1000", "1100", "2301"]);
    let setda = store.extensions(Some(&opd("setda"))).unwrap();
    assert_eq!(setda.len(), 2);
    let counts = store.extension_counts().unwrap();
    assert_eq!(counts.get(&opd("setda")), Some(&2));
    assert_eq!(counts.get(&opd("dinkes")), Some(&1));
}

#[test]
fn import_is_all_or_nothing() {
    let (_dir, _path, mut store) = new_store();
    store
        .add_extension(&ext("1005"), &opd("setda"), "", "pw1005")
        .unwrap();
    let rows: Vec<NewExtension> = (1000..1010)
        .map(|n| NewExtension {
            number: ext(&n.to_string()),
            opd: opd("setda"),
            name: format!("Staff {n}"),
            password: format!("pw{n}"),
        })
        .collect();
    let e = store.import(&rows, |_| {}).unwrap_err();
    assert!(matches!(e, StoreError::DuplicateExtension(ref n) if n.as_str() == "1005"));
    assert_eq!(store.extensions(None).unwrap().len(), 1, "rolled back");

    store.remove_extension(&ext("1005")).unwrap();
    let mut seen = 0;
    store.import(&rows, |n| seen = n).unwrap();
    assert_eq!(seen, 10);
    let realm = store.realm().unwrap();
    let rec = store.extension(&ext("1007")).unwrap().unwrap();
    assert_eq!(rec.name, "Staff 1007");
    assert_eq!(
        rec.ha1_md5,
        ha1_hex(Algorithm::Md5, "1007", &realm, "pw1007")
    );
}

#[test]
fn registrations_round_trip() {
    let (_dir, path, mut store) = new_store();
    let now = clock();
    store
        .add_extension(&ext("1000"), &opd("setda"), "", "pw1000")
        .unwrap();
    let a = registration("sip:1000@10.0.0.5:5060", 2_000_000_000, now);
    let mut b = registration("sip:1000@10.0.0.6:5060;transport=tcp", 1_000, now);
    b.instance = None;
    b.reg_id = None;
    b.params = ";q=0.5".into();
    b.transport = Transport::Udp;
    store.upsert_binding(&ext("1000"), &a).unwrap();
    store.upsert_binding(&ext("1000"), &b).unwrap();
    drop(store);
    let mut store = Store::open(&path).unwrap();
    let both = |a: &Binding, b: &Binding| vec![(ext("1000"), a.clone()), (ext("1000"), b.clone())];
    assert_eq!(store.bindings(now).unwrap(), both(&a, &b));

    // Upsert replaces the binding with the same key.
    let mut a2 = a.clone();
    a2.cseq = 8;
    a2.expires_unix += 60;
    a2.expires_at = now.instant_at(a2.expires_unix);
    store.upsert_binding(&ext("1000"), &a2).unwrap();
    assert_eq!(store.bindings(now).unwrap(), both(&a2, &b));

    assert_eq!(store.purge_expired_registrations(1_000).unwrap(), 1);
    assert_eq!(
        store.bindings(now).unwrap(),
        vec![(ext("1000"), a2.clone())]
    );

    store.delete_binding(&ext("1000"), &a2.key).unwrap();
    assert!(store.bindings(now).unwrap().is_empty());

    // A binding for an extension that does not exist is refused.
    let e = store
        .upsert_binding(&ext("1999"), &registration("sip:x@h", 1, now))
        .unwrap_err();
    assert!(matches!(e, StoreError::UnknownExtension(_)), "{e}");
}

#[test]
fn a_row_that_no_longer_reads_as_a_binding_is_skipped() {
    let (_dir, _path, mut store) = new_store();
    let now = clock();
    store
        .add_extension(&ext("1000"), &opd("setda"), "", "pw1000")
        .unwrap();
    let good = registration("sip:1000@10.0.0.5:5060", 2_000_000_000, now);
    store.upsert_binding(&ext("1000"), &good).unwrap();
    store
        .upsert_binding(
            &ext("1000"),
            &registration("sip:1000@10.0.0.7", 2_000_000_000, now),
        )
        .unwrap();
    store
        .conn
        .execute(
            "UPDATE registrations SET source = 'not an address' WHERE contact_uri = 'sip:1000@10.0.0.7'",
            [],
        )
        .unwrap();
    assert_eq!(store.bindings(now).unwrap(), vec![(ext("1000"), good)]);
}

#[test]
fn registration_batch() {
    let (_dir, _path, mut store) = new_store();
    let now = clock();
    for n in ["1000", "1001"] {
        store
            .add_extension(&ext(n), &opd("setda"), "", "secret")
            .unwrap();
    }
    let changes = vec![
        upsert("1000", &registration("sip:a@h", 10, now)),
        upsert("1000", &registration("sip:b@h", 10, now)),
        upsert("1001", &registration("sip:c@h", 10, now)),
        upsert("1002", &registration("sip:gone@h", 10, now)), // skipped
        Change::Remove {
            extension: ext("1000"),
            key: "sip:a@h".into(),
        },
    ];
    store.apply_binding_changes(&changes).unwrap();
    let keys: Vec<String> = store
        .bindings(now)
        .unwrap()
        .into_iter()
        .map(|(_, b)| b.key)
        .collect();
    assert_eq!(keys, ["sip:b@h", "sip:c@h"]);
    store
        .apply_binding_changes(&[Change::RemoveAll {
            extension: ext("1000"),
        }])
        .unwrap();
    assert_eq!(store.bindings(now).unwrap().len(), 1);
    store.delete_bindings(&ext("1001")).unwrap();
    assert!(store.bindings(now).unwrap().is_empty());
}

#[test]
fn disable_and_remove_drop_registrations() {
    let (_dir, _path, mut store) = new_store();
    for n in ["1000", "1001"] {
        store
            .add_extension(&ext(n), &opd("setda"), "", "secret")
            .unwrap();
        store
            .upsert_binding(&ext(n), &registration("sip:x@h", i64::MAX, clock()))
            .unwrap();
    }
    store.set_enabled(&ext("1000"), false).unwrap();
    assert!(!store.extension(&ext("1000")).unwrap().unwrap().enabled);
    store.remove_extension(&ext("1001")).unwrap();
    assert!(store.bindings(clock()).unwrap().is_empty());
    assert!(store.extension(&ext("1001")).unwrap().is_none());
    store.set_enabled(&ext("1000"), true).unwrap();
    assert!(store.extension(&ext("1000")).unwrap().unwrap().enabled);
}

#[test]
fn sync_opds_replaces_the_table() {
    let (_dir, _path, mut store) = new_store();
    let mut rows = opd_rows();
    rows.remove(1);
    rows[0].name = "Setda".into();
    rows.push(OpdRow {
        code: opd("diskominfo"),
        name: "Diskominfo".into(),
        blocks: vec!["3500-3599".into(), "3600-3649".into()],
    });
    store.sync_opds(&rows).unwrap();
    rows.sort_by(|a, b| a.code.cmp(&b.code));
    assert_eq!(store.opds().unwrap(), rows);
}

#[test]
fn import_ten_thousand_rows_in_one_transaction() {
    let (_dir, _path, mut store) = new_store();
    store
        .sync_opds(&[OpdRow {
            code: opd("big"),
            name: "Big".into(),
            blocks: vec!["10000-19999".into()],
        }])
        .unwrap();
    let rows: Vec<NewExtension> = (10_000..20_000)
        .map(|n| NewExtension {
            number: ext(&n.to_string()),
            opd: opd("big"),
            name: String::new(),
            password: format!("pw{n}"),
        })
        .collect();
    let started = std::time::Instant::now();
    store.import(&rows, |_| {}).unwrap();
    // Generous bound for debug builds on a slow CI machine; typically well under a second.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        store.extension_counts().unwrap().get(&opd("big")),
        Some(&10_000)
    );
}

#[test]
fn import_refuses_an_unknown_opd() {
    let (_dir, _path, mut store) = new_store();
    let rows = [NewExtension {
        number: ext("1000"),
        opd: opd("nowhere"),
        name: String::new(),
        password: "pw1000".into(),
    }];
    let e = store.import(&rows, |_| {}).unwrap_err();
    assert_eq!(e.to_string(), "store: unknown OPD 'nowhere'");
    assert!(store.extensions(None).unwrap().is_empty());
}

// ---- features ----

#[test]
fn features_round_trip() {
    let (_dir, path, mut store) = new_store();
    let n = ext("1000");
    store
        .add_extension(&n, &opd("setda"), "Reception", "pw1000")
        .unwrap();
    assert_eq!(
        store.extension(&n).unwrap().unwrap().features,
        ExtensionFeatures::default()
    );
    store
        .set_forward(&n, ForwardKind::Always, Some("2301"), None)
        .unwrap();
    store
        .set_forward(&n, ForwardKind::Busy, Some("*98#"), Some(7))
        .unwrap();
    store
        .set_forward(&n, ForwardKind::NoAnswer, Some("+62215551234"), None)
        .unwrap();
    store.set_dnd(&n, true).unwrap();
    let want = ExtensionFeatures {
        forward_always: Some("2301".into()),
        forward_busy: Some("*98#".into()),
        forward_no_answer: Some(("+62215551234".into(), DEFAULT_NO_ANSWER_SECS)),
        dnd: true,
    };
    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.extension(&n).unwrap().unwrap().features, want);
    assert_eq!(store.extensions(None).unwrap()[0].features, want);

    store
        .set_forward(&n, ForwardKind::NoAnswer, Some("1001"), Some(15))
        .unwrap();
    assert_eq!(
        store
            .extension(&n)
            .unwrap()
            .unwrap()
            .features
            .forward_no_answer,
        Some(("1001".into(), 15))
    );
    store
        .set_forward(&n, ForwardKind::Always, None, None)
        .unwrap();
    store
        .set_forward(&n, ForwardKind::NoAnswer, None, None)
        .unwrap();
    store.set_dnd(&n, false).unwrap();
    let f = store.extension(&n).unwrap().unwrap().features;
    assert_eq!(
        f,
        ExtensionFeatures {
            forward_busy: Some("*98#".into()),
            ..ExtensionFeatures::default()
        }
    );
}

#[test]
fn bad_forwards_are_refused() {
    let (_dir, _path, mut store) = new_store();
    let n = ext("1000");
    store
        .add_extension(&n, &opd("setda"), "Reception", "pw1000")
        .unwrap();
    for bad in ["", "12a4", "1000 ", "sip:2301@x", &"1".repeat(33)] {
        let err = store
            .set_forward(&n, ForwardKind::Always, Some(bad), None)
            .unwrap_err();
        assert!(
            matches!(err, StoreError::BadForwardTarget { .. }),
            "{bad}: {err}"
        );
    }
    let err = store
        .set_forward(&n, ForwardKind::Busy, Some("12a4"), None)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "store: '12a4' is not a valid forward target: 'a' is not allowed (only digits, *, # and +)"
    );
    assert!(store
        .set_forward(&n, ForwardKind::Always, Some(&"1".repeat(32)), None)
        .is_ok());
    assert!(matches!(
        store.set_forward(&n, ForwardKind::Always, Some("1000"), None),
        Err(StoreError::ForwardToSelf(_))
    ));
    for secs in [0, MAX_NO_ANSWER_SECS + 1] {
        assert!(matches!(
            store.set_forward(&n, ForwardKind::NoAnswer, Some("1001"), Some(secs)),
            Err(StoreError::BadNoAnswerDelay(s)) if s == secs
        ));
    }
    assert!(matches!(
        store.set_forward(&ext("1001"), ForwardKind::Busy, Some("1000"), None),
        Err(StoreError::UnknownExtension(_))
    ));
    assert!(matches!(
        store.set_dnd(&ext("1001"), true),
        Err(StoreError::UnknownExtension(_))
    ));
}

// ---- call records ----

/// A call from `caller` (in `caller_opd`) to `callee`, starting at `start_ms`, answered after
/// 5 s when `talk_secs` is given.
fn cdr(
    caller: &str,
    caller_opd: Option<&str>,
    callee: &str,
    callee_opd: Option<&str>,
    start_ms: i64,
    talk_secs: Option<i64>,
) -> CdrRecord {
    let answer_ms = talk_secs.map(|_| start_ms + 5_000);
    CdrRecord {
        call_id: format!("{caller}-{callee}-{start_ms}@test"),
        caller: caller.into(),
        dialled: callee.into(),
        callee: Some(callee.into()),
        caller_opd: caller_opd.map(opd),
        callee_opd: callee_opd.map(opd),
        route: "test".into(),
        trunk: callee_opd.is_none() || caller_opd.is_none(),
        start_ms,
        answer_ms,
        end_ms: answer_ms.unwrap_or(start_ms + 5_000) + talk_secs.unwrap_or(0) * 1_000,
        disposition: if talk_secs.is_some() {
            Disposition::Answered
        } else {
            Disposition::NoAnswer
        },
        sip_status: if talk_secs.is_some() { 200 } else { 480 },
        media: None,
    }
}

#[test]
fn disposition_names() {
    for d in Disposition::ALL {
        assert_eq!(d.to_string().parse::<Disposition>().unwrap(), d);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            format!("\"{}\"", d.as_str())
        );
    }
    assert_eq!(Disposition::NoAnswer.to_string(), "no-answer");
    assert_eq!(Disposition::MediaTimeout.to_string(), "media-timeout");
    assert!("NoAnswer".parse::<Disposition>().is_err());
}

#[test]
fn duration_is_talk_time() {
    let answered = cdr("1000", Some("setda"), "2301", Some("dinkes"), 0, Some(90));
    assert_eq!(answered.duration_ms(), 90_000);
    let missed = cdr("1000", Some("setda"), "2301", Some("dinkes"), 0, None);
    assert_eq!(missed.duration_ms(), 0);
}

#[test]
fn cdrs_insert_and_filter() {
    let (_dir, path, mut store) = new_store();
    let mut with_media = cdr(
        "1000",
        Some("setda"),
        "2301",
        Some("dinkes"),
        3_000,
        Some(60),
    );
    with_media.media = Some(crate::store::MediaTotals {
        packets_a2b: 3000,
        packets_b2a: 2990,
        lost_a2b: 0,
        lost_b2a: 4,
        jitter_us_max: 1630,
    });
    let records = vec![
        with_media,
        cdr("1001", Some("setda"), "1000", Some("setda"), 1_000, None),
        cdr("2301", Some("dinkes"), "90215551234", None, 2_000, Some(30)),
        cdr(
            "3500",
            Some("diskominfo"),
            "3501",
            Some("diskominfo"),
            4_000,
            Some(1),
        ),
    ];
    store.insert_cdrs(&records).unwrap();
    store.insert_cdrs(&[]).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();

    let all = store.cdrs(&CdrFilter::default()).unwrap();
    let starts: Vec<i64> = all.iter().map(|r| r.record.start_ms).collect();
    assert_eq!(starts, [1_000, 2_000, 3_000, 4_000], "ordered by start");
    assert_eq!(all[2].record, records[0], "round trip");
    assert_eq!(all[0].record, records[1]);

    let setda = store
        .cdrs(&CdrFilter {
            opd: Some(opd("setda")),
            ..CdrFilter::default()
        })
        .unwrap();
    assert_eq!(setda.len(), 2);
    let dinkes = store
        .cdrs(&CdrFilter {
            opd: Some(opd("dinkes")),
            ..CdrFilter::default()
        })
        .unwrap();
    let starts: Vec<i64> = dinkes.iter().map(|r| r.record.start_ms).collect();
    assert_eq!(starts, [2_000, 3_000], "caller OR callee OPD");

    let window = store
        .cdrs(&CdrFilter {
            since_ms: Some(2_000),
            until_ms: Some(4_000),
            ..CdrFilter::default()
        })
        .unwrap();
    let starts: Vec<i64> = window.iter().map(|r| r.record.start_ms).collect();
    assert_eq!(starts, [2_000, 3_000], "since inclusive, until exclusive");

    let latest = store
        .cdrs(&CdrFilter {
            limit: Some(2),
            ..CdrFilter::default()
        })
        .unwrap();
    let starts: Vec<i64> = latest.iter().map(|r| r.record.start_ms).collect();
    assert_eq!(starts, [3_000, 4_000], "the latest, oldest first");
}

#[test]
fn summary_counts_a_cross_opd_call_for_both() {
    let (_dir, _path, mut store) = new_store();
    store
        .insert_cdrs(&[
            // setda → dinkes, 60 s: counts for both.
            cdr(
                "1000",
                Some("setda"),
                "2301",
                Some("dinkes"),
                1_000,
                Some(60),
            ),
            // inside setda, 30 s: counts once for setda.
            cdr(
                "1001",
                Some("setda"),
                "1000",
                Some("setda"),
                2_000,
                Some(30),
            ),
            // setda, unanswered.
            cdr("1002", Some("setda"), "2302", Some("dinkes"), 3_000, None),
            // dinkes → trunk, 90 s.
            cdr("2301", Some("dinkes"), "90215551234", None, 4_000, Some(90)),
            // trunk → dinkes, unanswered.
            cdr("0215551234", None, "2300", Some("dinkes"), 5_000, None),
            // setda in room 8000 for 2 minutes.
            CdrRecord {
                route: "room 8000".into(),
                trunk: false,
                ..cdr("1003", Some("setda"), "8000", None, 6_000, Some(120))
            },
            // outside the window.
            cdr(
                "1000",
                Some("setda"),
                "2301",
                Some("dinkes"),
                99_000,
                Some(600),
            ),
        ])
        .unwrap();
    let summary = store.cdr_summary_by_opd(Some(0), Some(10_000)).unwrap();
    assert_eq!(
        summary,
        vec![
            OpdUsage {
                opd: opd("dinkes"),
                usage: Usage {
                    calls: 4,
                    answered: 2,
                    answered_ms: 150_000,
                    trunk_calls: 2,
                    trunk_answered_ms: 90_000,
                    blocked: 0,
                    conference_calls: 0,
                    conference_ms: 0,
                },
            },
            OpdUsage {
                opd: opd("setda"),
                usage: Usage {
                    calls: 4,
                    answered: 3,
                    answered_ms: 210_000,
                    trunk_calls: 0,
                    trunk_answered_ms: 0,
                    blocked: 0,
                    conference_calls: 1,
                    conference_ms: 120_000,
                },
            },
        ]
    );
    assert_eq!(summary[0].usage.minutes(), 2.5);
    assert_eq!(summary[1].usage.conference_minutes(), 2.0);
    assert_eq!(summary[0].usage.trunk_minutes(), 1.5);

    let total = store.cdr_totals(Some(0), Some(10_000)).unwrap();
    assert_eq!(
        total,
        Usage {
            calls: 6,
            answered: 4,
            answered_ms: 300_000,
            trunk_calls: 2,
            trunk_answered_ms: 90_000,
            blocked: 0,
            conference_calls: 1,
            conference_ms: 120_000,
        },
        "each call once"
    );
    let unbounded = store.cdr_summary_by_opd(None, None).unwrap();
    assert_eq!(unbounded[1].usage.answered_ms, 810_000);
    assert_eq!(
        store.cdr_totals(Some(50), Some(60)).unwrap(),
        Usage::default(),
        "no calls: zeros, not NULLs"
    );
    assert!(store
        .cdr_summary_by_opd(Some(50), Some(60))
        .unwrap()
        .is_empty());
}

#[test]
fn summary_counts_blocked_attempts_for_the_callers_opd() {
    let (_dir, _path, mut store) = new_store();
    let blocked = |caller: &str, opd_code: &str, dialled: &str, start_ms: i64| CdrRecord {
        callee: None,
        callee_opd: None,
        trunk: false,
        dialled: dialled.into(),
        route: "blocked (per-hour-per-extension): trunk 0561234567".into(),
        disposition: Disposition::Blocked,
        sip_status: 403,
        answer_ms: None,
        end_ms: start_ms,
        ..cdr(caller, Some(opd_code), dialled, None, start_ms, None)
    };
    store
        .insert_cdrs(&[
            blocked("1205", "setwan", "9001123", 1_000),
            blocked("1205", "setwan", "90561234567", 2_000),
            blocked("1000", "setda", "90561234567", 3_000),
            cdr("1000", Some("setda"), "90561234567", None, 4_000, Some(10)),
        ])
        .unwrap();
    let summary = store.cdr_summary_by_opd(None, None).unwrap();
    let of = |code: &str| {
        summary
            .iter()
            .find(|o| o.opd.as_str() == code)
            .map(|o| o.usage)
            .unwrap()
    };
    assert_eq!((of("setwan").calls, of("setwan").blocked), (2, 2));
    assert_eq!(
        (
            of("setda").calls,
            of("setda").blocked,
            of("setda").trunk_calls
        ),
        (2, 1, 1)
    );
    assert_eq!(store.cdr_totals(None, None).unwrap().blocked, 3);
    let rows = store.cdrs(&CdrFilter::default()).unwrap();
    assert_eq!(
        rows[0].record.disposition,
        Disposition::Blocked,
        "round trip"
    );

    // The trunk history for the toll guard: trunk calls only, from the given time on.
    let history = store.trunk_calls_since(0).unwrap();
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].caller, "1000");
    assert_eq!(history[0].caller_opd, Some(opd("setda")));
    assert_eq!(history[0].start_ms, 4_000);
    assert!(store.trunk_calls_since(4_001).unwrap().is_empty());
}

#[test]
fn migration_2_keeps_version_1_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('realm', 'tambun')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO opds (code, name, blocks) VALUES ('setda', 'Setda', '[\"1000-1199\"]')",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO extensions (number, opd, ha1_md5, ha1_sha256, created_at, updated_at) \
             VALUES ('1000', 'setda', 'x', 'y', 1, 1)",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let rec = store.extension(&ext("1000")).unwrap().unwrap();
    assert_eq!(rec.features, ExtensionFeatures::default());
    assert!(store.cdrs(&CdrFilter::default()).unwrap().is_empty());
}

#[test]
fn committed_cdrs_survive_an_unclean_end() {
    let (_dir, path, mut store) = new_store();
    let call = cdr(
        "1000",
        Some("setda"),
        "2301",
        Some("dinkes"),
        1_000,
        Some(10),
    );
    store.insert_cdrs(std::slice::from_ref(&call)).unwrap();
    // No close, no checkpoint: the connection is leaked as a killed process would leave it.
    std::mem::forget(store);
    let store = Store::open(&path).unwrap();
    let rows = store.cdrs(&CdrFilter::default()).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].record, call);
}

fn answered_call(call_id: &str, answer_ms: i64, trunk: bool) -> CdrRecord {
    CdrRecord {
        call_id: call_id.into(),
        caller: "1000".into(),
        dialled: "90536123456".into(),
        callee: Some("0536123456".into()),
        caller_opd: Some(opd("setda")),
        callee_opd: None,
        route: "trunk local".into(),
        trunk,
        start_ms: answer_ms - 5_000,
        answer_ms: Some(answer_ms),
        end_ms: answer_ms,
        disposition: Disposition::Interrupted,
        sip_status: 200,
        media: None,
    }
}

#[test]
fn calls_open_at_a_crash_become_interrupted_records() {
    let (_dir, path, mut store) = new_store();
    let open = |id: &str, tag: &str, answer_ms: i64| OpenCallOp::Open {
        from_tag: tag.into(),
        record: Box::new(answered_call(id, answer_ms, true)),
        now_ms: answer_ms,
    };
    // Two calls answered; one of them ends (record and close in one batch).
    store
        .save_calls(&[], &[open("a", "fa", 100_000), open("b", "fb", 110_000)])
        .unwrap();
    let mut ended = answered_call("a", 100_000, true);
    ended.disposition = Disposition::Answered;
    ended.end_ms = 160_000;
    let close = OpenCallOp::Close {
        call_id: "a".into(),
        from_tag: "fa".into(),
    };
    store.save_calls(&[ended], &[close]).unwrap();
    // The switch still had "b" at 170 s; then it was killed.
    store.touch_open_calls(170_000).unwrap();
    drop(store);

    let mut store = Store::open(&path).unwrap();
    let rec = store.recover_interrupted_calls(500_000).unwrap();
    assert_eq!(rec.len(), 1, "only the call that never ended: {rec:?}");
    assert_eq!(rec[0].call_id, "b");
    assert_eq!(rec[0].disposition, Disposition::Interrupted);
    assert_eq!(rec[0].end_ms, 170_000, "ends when the switch last had it");
    assert_eq!(rec[0].duration_ms(), 60_000);
    let rows = store.cdrs(&CdrFilter::default()).unwrap();
    let got: Vec<(&str, Disposition)> = rows
        .iter()
        .map(|r| (r.record.call_id.as_str(), r.record.disposition))
        .collect();
    assert_eq!(
        got,
        [
            ("a", Disposition::Answered),
            ("b", Disposition::Interrupted)
        ]
    );
    // Counted once: a second start finds nothing left to recover.
    assert!(store.recover_interrupted_calls(600_000).unwrap().is_empty());
    assert_eq!(store.cdrs(&CdrFilter::default()).unwrap().len(), 2);
}

#[test]
fn an_interrupted_call_never_ends_before_its_answer_or_after_the_restart() {
    let (_dir, _path, mut store) = new_store();
    let op = OpenCallOp::Open {
        from_tag: "f".into(),
        record: Box::new(answered_call("c", 100_000, false)),
        now_ms: 100_000,
    };
    store.save_calls(&[], &[op]).unwrap();
    store.touch_open_calls(90_000).unwrap(); // a clock step backwards
    let rec = store.recover_interrupted_calls(95_000).unwrap();
    assert_eq!(rec[0].end_ms, 100_000);
}
