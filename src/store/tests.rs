//! Store tests, each on a real SQLite file in a temporary directory.

use super::*;

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

fn registration(number: &str, contact: &str, expires_at: i64) -> RegistrationRecord {
    RegistrationRecord {
        extension: ext(number),
        contact_uri: contact.into(),
        contact_header: format!("<{contact}>;expires=3600"),
        instance_id: Some("<urn:uuid:00000000-0000-0000-0000-000000000001>".into()),
        reg_id: Some(1),
        source: "127.0.0.1:5080".into(),
        transport: Transport::Tcp,
        user_agent: "baresip".into(),
        call_id: "abc@host".into(),
        cseq: 7,
        expires_at,
    }
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
    store
        .add_extension(&ext("1000"), &opd("setda"), "", "pw1000")
        .unwrap();
    let a = registration("1000", "sip:1000@10.0.0.5:5060", 2_000_000_000);
    let mut b = registration("1000", "sip:1000@10.0.0.6:5060;transport=tcp", 1_000);
    b.instance_id = None;
    b.reg_id = None;
    b.transport = Transport::Udp;
    store.upsert_registration(&a).unwrap();
    store.upsert_registration(&b).unwrap();
    drop(store);
    let mut store = Store::open(&path).unwrap();
    assert_eq!(store.registrations().unwrap(), vec![a.clone(), b.clone()]);

    // Upsert replaces the binding with the same contact.
    let mut a2 = a.clone();
    a2.cseq = 8;
    a2.expires_at += 60;
    store.upsert_registration(&a2).unwrap();
    assert_eq!(store.registrations().unwrap(), vec![a2.clone(), b.clone()]);

    assert_eq!(store.purge_expired_registrations(1_000).unwrap(), 1);
    assert_eq!(store.registrations().unwrap(), vec![a2.clone()]);

    store
        .delete_registration(&ext("1000"), &a2.contact_uri)
        .unwrap();
    assert!(store.registrations().unwrap().is_empty());

    // A binding for an extension that does not exist is refused.
    let e = store
        .upsert_registration(&registration("1999", "sip:x@h", 1))
        .unwrap_err();
    assert!(matches!(e, StoreError::UnknownExtension(_)), "{e}");
}

#[test]
fn registration_batch() {
    let (_dir, _path, mut store) = new_store();
    for n in ["1000", "1001"] {
        store
            .add_extension(&ext(n), &opd("setda"), "", "secret")
            .unwrap();
    }
    let ops = vec![
        RegistrationOp::Upsert(registration("1000", "sip:a@h", 10)),
        RegistrationOp::Upsert(registration("1000", "sip:b@h", 10)),
        RegistrationOp::Upsert(registration("1001", "sip:c@h", 10)),
        RegistrationOp::Upsert(registration("1002", "sip:gone@h", 10)), // skipped
        RegistrationOp::Delete {
            extension: ext("1000"),
            contact_uri: "sip:a@h".into(),
        },
    ];
    store.apply_registration_batch(&ops).unwrap();
    let contacts: Vec<String> = store
        .registrations()
        .unwrap()
        .into_iter()
        .map(|r| r.contact_uri)
        .collect();
    assert_eq!(contacts, ["sip:b@h", "sip:c@h"]);
    store
        .apply_registration_batch(&[RegistrationOp::DeleteAll {
            extension: ext("1000"),
        }])
        .unwrap();
    assert_eq!(store.registrations().unwrap().len(), 1);
    store.delete_registrations(&ext("1001")).unwrap();
    assert!(store.registrations().unwrap().is_empty());
}

#[test]
fn disable_and_remove_drop_registrations() {
    let (_dir, _path, mut store) = new_store();
    for n in ["1000", "1001"] {
        store
            .add_extension(&ext(n), &opd("setda"), "", "secret")
            .unwrap();
        store
            .upsert_registration(&registration(n, "sip:x@h", i64::MAX))
            .unwrap();
    }
    store.set_enabled(&ext("1000"), false).unwrap();
    assert!(!store.extension(&ext("1000")).unwrap().unwrap().enabled);
    store.remove_extension(&ext("1001")).unwrap();
    assert!(store.registrations().unwrap().is_empty());
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
