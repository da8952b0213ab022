//! Integration tests of the call commands of the operator CLI, against the built `tambun`
//! binary: `ext forward` / `ext dnd`, `cdr` and `cdr summary` on a database filled through
//! [`Store::insert_cdrs`], and `calls` / `dialplan reload` against a fake admin API on
//! loopback. Each test has its own temporary directory and database ([`CliEnv`]).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread::JoinHandle;

use tambun::store::{CdrRecord, Disposition, OpdRow, Store};

use crate::common::cli::CliEnv;

/// A fake admin API: answers each connection in turn with `(status, body)`; returns the
/// requests it received.
fn fake_admin(responses: Vec<(u16, String)>) -> (String, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for (status, body) in responses {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let reason = match status {
                200 => "OK",
                422 => "Unprocessable Entity",
                _ => "Internal Server Error",
            };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(response.as_bytes()).unwrap();
        }
        requests
    });
    (addr, server)
}

/// A loopback address nobody listens on.
fn dead_admin() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

// ---- forwarding and do-not-disturb ----

#[test]
fn forward_and_dnd_are_set_and_shown() {
    let env = CliEnv::new();
    env.ok(&[
        "ext",
        "add",
        "1000",
        "--opd",
        "setda",
        "--password",
        "pw1000",
    ]);
    let show = env.json(&["ext", "show", "1000", "--json"]);
    assert_eq!(
        show["forward"],
        serde_json::json!({"always": null, "busy": null, "no_answer": null})
    );
    assert_eq!(show["dnd"], false);

    let out = env.ok(&["ext", "forward", "1000", "--always", "2301"]);
    assert_eq!(out.trim(), "extension 1000 forwards always to 2301");
    let out = env.ok(&[
        "ext",
        "forward",
        "1000",
        "--busy",
        "1001",
        "--no-answer",
        "9081234567",
        "--after",
        "15",
    ]);
    assert_eq!(
        out.trim(),
        "extension 1000 forwards always to 2301; when busy to 1001; after 15 s without answer \
         to 9081234567"
    );
    let out = env.ok(&["ext", "dnd", "on", "1000"]);
    assert!(
        out.contains("do-not-disturb is on for extension 1000"),
        "{out}"
    );

    let show = env.json(&["ext", "show", "1000", "--json"]);
    assert_eq!(
        show["forward"],
        serde_json::json!({
            "always": "2301",
            "busy": "1001",
            "no_answer": {"target": "9081234567", "after_secs": 15}
        })
    );
    assert_eq!(show["dnd"], true);
    let text = env.ok(&["ext", "show", "1000"]);
    assert!(text.contains("forward always:    2301"), "{text}");
    assert!(
        text.contains("forward no answer: 9081234567 after 15 s"),
        "{text}"
    );
    assert!(text.contains("do-not-disturb:    yes"), "{text}");

    // The no-answer delay defaults to 20 s.
    env.ok(&["ext", "forward", "1000", "--no-answer", "1002"]);
    assert_eq!(
        env.json(&["ext", "show", "1000", "--json"])["forward"]["no_answer"],
        serde_json::json!({"target": "1002", "after_secs": 20})
    );

    let out = env.ok(&["ext", "forward", "1000", "--off", "always"]);
    assert_eq!(
        out.trim(),
        "extension 1000 forwards when busy to 1001; after 20 s without answer to 1002"
    );
    let out = env.ok(&["ext", "forward", "1000", "--off"]);
    assert_eq!(out.trim(), "extension 1000 does not forward calls");
    env.ok(&["ext", "dnd", "off", "1000"]);
    let show = env.json(&["ext", "show", "1000", "--json"]);
    assert_eq!(
        show["forward"],
        serde_json::json!({"always": null, "busy": null, "no_answer": null})
    );
    assert_eq!(show["dnd"], false);
}

#[test]
fn bad_forwards_are_sentences() {
    let env = CliEnv::new();
    env.ok(&[
        "ext",
        "add",
        "1000",
        "--opd",
        "setda",
        "--password",
        "pw1000",
    ]);
    let err = env.fails(&["ext", "forward", "1000", "--always", "sip:2301@x"]);
    assert_eq!(
        err.trim(),
        "error: 'sip:2301@x' cannot be a forward target: 's' is not allowed (only digits, *, # \
         and +); give the number as the phone would dial it (1 to 32 characters)"
    );
    // A bad target among good ones changes nothing.
    let err = env.fails(&[
        "ext", "forward", "1000", "--busy", "1001", "--always", "12 34",
    ]);
    assert!(err.contains("'12 34' cannot be a forward target"), "{err}");
    let long = "1".repeat(33);
    let err = env.fails(&["ext", "forward", "1000", "--always", &long]);
    assert!(err.contains("longer than 32 characters"), "{err}");
    assert_eq!(
        env.json(&["ext", "show", "1000", "--json"])["forward"]["busy"],
        serde_json::Value::Null
    );
    let err = env.fails(&["ext", "forward", "1000", "--always", "1000"]);
    assert_eq!(err.trim(), "error: extension 1000 cannot forward to itself");
    let err = env.fails(&[
        "ext",
        "forward",
        "1000",
        "--no-answer",
        "1001",
        "--after",
        "0",
    ]);
    assert_eq!(
        err.trim(),
        "error: --after 0: a no-answer forward must ring between 1 and 300 seconds"
    );
    let err = env.fails(&["ext", "forward", "1001", "--always", "2301"]);
    assert_eq!(err.trim(), "error: extension 1001 does not exist");
    let err = env.fails(&["ext", "dnd", "on", "1001"]);
    assert_eq!(err.trim(), "error: extension 1001 does not exist");
    // Usage errors are clap's (exit code 2).
    assert_eq!(env.run(&["ext", "forward", "1000"]).status.code(), Some(2));
    assert_eq!(
        env.run(&["ext", "forward", "1000", "--off", "--always", "1001"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        env.run(&["ext", "forward", "1000", "--after", "5", "--busy", "1001"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        env.run(&["ext", "dnd", "maybe", "1000"]).status.code(),
        Some(2)
    );
}

// ---- call records ----

/// 2026-03-02 00:00 WIB in Unix ms.
const MAR2: i64 = 1_772_384_400_000;
const HOUR: i64 = 3_600_000;

#[allow(clippy::too_many_arguments)]
fn cdr(
    caller: &str,
    caller_opd: Option<&str>,
    dialled: &str,
    callee_opd: Option<&str>,
    start_ms: i64,
    talk_secs: Option<i64>,
    disposition: Disposition,
    sip_status: u16,
) -> CdrRecord {
    let answer_ms = talk_secs.map(|_| start_ms + 5_000);
    CdrRecord {
        call_id: format!("{caller}-{start_ms}@test"),
        caller: caller.into(),
        dialled: dialled.into(),
        callee: Some(dialled.trim_start_matches('9').into()),
        caller_opd: caller_opd.map(|c| c.parse().unwrap()),
        callee_opd: callee_opd.map(|c| c.parse().unwrap()),
        route: match callee_opd {
            Some(opd) => format!("{opd}: extension"),
            None => "trunk: mobile".into(),
        },
        trunk: callee_opd.is_none(),
        start_ms,
        answer_ms,
        end_ms: start_ms + 5_000 + talk_secs.unwrap_or(0) * 1000,
        disposition,
        sip_status,
        media: None,
    }
}

/// Fills the database: three calls on 2 March 2026 (WIB), one on 3 March, one an hour ago.
fn fill(env: &CliEnv) {
    let mut store = Store::open(&env.db).unwrap();
    let opd = |code: &str, block: &str| OpdRow {
        code: code.parse().unwrap(),
        name: code.into(),
        blocks: vec![block.into()],
    };
    store
        .sync_opds(&[
            opd("setda", "1000-1199"),
            opd("dinkes", "2300-2499"),
            opd("diskominfo", "3500-3599"),
        ])
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    use Disposition::*;
    store
        .insert_cdrs(&[
            CdrRecord {
                media: Some(tambun::store::MediaTotals {
                    packets_a2b: 4750,
                    packets_b2a: 4731,
                    lost_a2b: 0,
                    lost_b2a: 19,
                    jitter_us_max: 2125,
                }),
                ..cdr(
                    "1000",
                    Some("setda"),
                    "2301",
                    Some("dinkes"),
                    MAR2 + 8 * HOUR,
                    Some(95),
                    Answered,
                    200,
                )
            },
            cdr(
                "2301",
                Some("dinkes"),
                "9081234567",
                None,
                MAR2 + 9 * HOUR,
                Some(120),
                Answered,
                200,
            ),
            cdr(
                "1001",
                Some("setda"),
                "1000",
                Some("setda"),
                MAR2 + 10 * HOUR,
                None,
                NoAnswer,
                480,
            ),
        ])
        .unwrap();
    store
        .insert_cdrs(&[
            cdr(
                "3500",
                Some("diskominfo"),
                "1000",
                Some("setda"),
                MAR2 + 32 * HOUR,
                None,
                Busy,
                486,
            ),
            cdr(
                "1000",
                Some("setda"),
                "2300",
                Some("dinkes"),
                now - HOUR,
                Some(60),
                Answered,
                200,
            ),
        ])
        .unwrap();
}

#[test]
fn cdr_table_csv_and_json() {
    let env = CliEnv::new();
    fill(&env);
    let day = ["--since", "2026-03-02", "--until", "2026-03-02"];

    let table = env.ok(&[&["cdr"][..], &day].concat());
    for want in [
        "START (WIB)",
        "CALLER OPD",
        "2026-03-02 08:00:00",
        "1:35",
        "no-answer",
        "480",
        "trunk: mobile",
        "RTP A→B / B→A",
        "4750 / 4731",
        "0.0% / 0.4%",
        "3 call(s)",
    ] {
        assert!(table.contains(want), "{want} missing from\n{table}");
    }
    assert!(!table.contains("2026-03-03"), "{table}");

    let csv = env.ok(&[&["cdr", "--opd", "setda", "--csv"][..], &day].concat());
    assert_eq!(
        csv,
        "start,answer,end,caller,caller_opd,dialled,callee,callee_opd,disposition,sip_status,\
         duration_ms,route,trunk,call_id,rtp_packets_a2b,rtp_packets_b2a,rtp_lost_a2b,\
         rtp_lost_b2a,rtp_jitter_max_us\n\
         2026-03-02T08:00:00+07:00,2026-03-02T08:00:05+07:00,2026-03-02T08:01:40+07:00,1000,\
         setda,2301,2301,dinkes,answered,200,95000,dinkes: extension,0,1000-1772413200000@test,\
         4750,4731,0,19,2125\n\
         2026-03-02T10:00:00+07:00,,2026-03-02T10:00:05+07:00,1001,setda,1000,1000,setda,\
         no-answer,480,0,setda: extension,0,1001-1772420400000@test,,,,,\n"
    );

    let json = env.json(&[&["cdr", "--opd", "dinkes", "--json"][..], &day].concat());
    let calls = json.as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["caller"], "2301");
    assert_eq!(calls[1]["callee_opd"], serde_json::Value::Null);
    assert_eq!(calls[1]["trunk"], true);
    assert_eq!(calls[1]["disposition"], "answered");
    assert_eq!(calls[1]["duration_ms"], 120_000);
    assert_eq!(calls[1]["start"], "2026-03-02T09:00:00+07:00");
    assert_eq!(calls[1]["start_ms"], MAR2 + 9 * HOUR);

    // A minute-precise window.
    let json = env.json(&[
        "cdr",
        "--json",
        "--since",
        "2026-03-02 08:30",
        "--until",
        "2026-03-02 10:00",
    ]);
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["caller"], "2301");

    // Relative: only the call of an hour ago is within 24h.
    let json = env.json(&["cdr", "--since", "24h", "--json"]);
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["dialled"], "2300");

    // --limit: the latest ones, oldest first.
    let json = env.json(&["cdr", "--limit", "2", "--json"]);
    let callers: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["caller"].as_str().unwrap())
        .collect();
    assert_eq!(callers, ["3500", "1000"]);
    assert_eq!(
        env.json(&["cdr", "--json"]).as_array().unwrap().len(),
        5,
        "no filter: every call"
    );

    let empty = env.ok(&["cdr", "--since", "2020-01-01", "--until", "2020-01-02"]);
    assert_eq!(empty.trim(), "no call records");
    let empty = env.ok(&[
        "cdr",
        "--csv",
        "--since",
        "2020-01-01",
        "--until",
        "2020-01-02",
    ]);
    assert_eq!(empty.lines().count(), 1, "just the header: {empty}");
}

#[test]
fn cdr_errors() {
    let env = CliEnv::new();
    let err = env.fails(&["cdr"]);
    assert!(err.contains("there is no database at"), "{err}");
    fill(&env);
    let err = env.fails(&["cdr", "--opd", "nosuch"]);
    assert_eq!(
        err.trim(),
        "error: unknown OPD 'nosuch' (see `tambun opd list`)"
    );
    let err = env.fails(&["cdr", "--since", "2026-03-03", "--until", "2026-03-02"]);
    assert!(err.contains("is not before --until"), "{err}");
    let out = env.run(&["cdr", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("'yesterday' is not a time: use YYYY-MM-DD"),
        "{err}"
    );
    assert_eq!(
        env.run(&["cdr", "--csv", "--json"]).status.code(),
        Some(2),
        "one format"
    );
}

#[test]
fn cdr_summary_by_opd() {
    let env = CliEnv::new();
    fill(&env);
    let day = ["--since", "2026-03-02", "--until", "2026-03-02"];

    let csv = env.ok(&[&["cdr", "summary", "--by", "opd", "--csv"][..], &day].concat());
    assert_eq!(
        csv,
        "opd,calls,answered,minutes,trunk_calls,trunk_minutes,blocked,conference_calls,conference_minutes\n\
         dinkes,2,2,3.58,1,2.00,0,0,0.00\n\
         setda,2,1,1.58,0,0.00,0,0,0.00\n"
    );

    let json = env.json(&[&["cdr", "summary", "--json"][..], &day].concat());
    assert_eq!(json["since"], "2026-03-02T00:00:00+07:00");
    assert_eq!(json["until"], "2026-03-03T00:00:00+07:00");
    assert_eq!(json["opds"][0]["opd"], "dinkes");
    assert_eq!(json["opds"][0]["answered_ms"], 215_000);
    assert_eq!(json["opds"][0]["trunk_answered_ms"], 120_000);
    assert_eq!(json["opds"][1]["opd"], "setda");
    assert_eq!(json["opds"][1]["calls"], 2);
    assert_eq!(
        json["total"],
        serde_json::json!({
            "calls": 3, "answered": 2, "minutes": 3.58, "answered_ms": 215000,
            "trunk_calls": 1, "trunk_minutes": 2.0, "trunk_answered_ms": 120000,
            "blocked": 0, "conference_calls": 0, "conference_minutes": 0.0, "conference_ms": 0
        }),
        "the cross-OPD call counted once in the total"
    );

    let table = env.ok(&[&["cdr", "summary", "--by", "opd"][..], &day].concat());
    for want in [
        "TRUNK MINUTES",
        "BLOCKED",
        "CONF MINUTES",
        "dinkes",
        "3.6",
        "total (each call once)",
        "calls from 2026-03-02 00:00:00 to 2026-03-03 00:00:00 WIB",
    ] {
        assert!(table.contains(want), "{want} missing from\n{table}");
    }
    // Without a range: all five calls; diskominfo appears.
    let json = env.json(&["cdr", "summary", "--json"]);
    assert_eq!(json["total"]["calls"], 5);
    assert_eq!(json["opds"][1]["opd"], "diskominfo");
    assert_eq!(
        json["opds"][2]["calls"], 4,
        "setda: 1000→2301, 1001→1000, 3500→1000, 1000→2300"
    );
    let help = env.ok(&["cdr", "summary", "--help"]);
    assert!(help.contains("placed by OR received by"), "{help}");
    assert_eq!(
        env.run(&["cdr", "summary", "--by", "extension"])
            .status
            .code(),
        Some(2)
    );
}

// ---- live calls and reload, through the admin API ----

#[test]
fn calls_reads_the_admin_api() {
    let env = CliEnv::new();
    let body = format!(
        r#"[{{"call_id":"a84b4c76e66710@pc33","caller":"1000","callee":"2301","dialled":"2301","caller_opd":"setda","callee_opd":"dinkes","route":"dinkes: extension","state":"answered","started_at_ms":{},"answered_at_ms":{},"duration_secs":95}},{{"call_id":"b2@pc34","caller":"1001","callee":null,"dialled":"0","caller_opd":"setda","callee_opd":null,"route":"setda: reception group","state":"ringing","started_at_ms":{},"answered_at_ms":null,"duration_secs":0}}]"#,
        MAR2 + 8 * HOUR,
        MAR2 + 8 * HOUR + 5_000,
        MAR2 + 9 * HOUR
    );
    let (admin, server) = fake_admin(vec![
        (200, body.clone()),
        (200, body.clone()),
        (200, "[]".into()),
        (500, "database on fire".into()),
    ]);
    let json = env.ok(&["calls", "--json", "--admin", &admin]);
    assert_eq!(json.trim(), body);
    let table = env.ok(&["calls", "--admin", &admin]);
    for want in [
        "2026-03-02 08:00:00",
        "2026-03-02 08:00:05",
        "1:35",
        "ringing",
        "answered",
        "dinkes: extension",
        "2 call(s) in progress",
    ] {
        assert!(table.contains(want), "{want} missing from\n{table}");
    }
    let empty = env.ok(&["calls", "--admin", &admin]);
    assert_eq!(empty.trim(), "no calls in progress");
    let err = env.fails(&["calls", "--admin", &admin]);
    assert_eq!(
        err.trim(),
        format!("error: the switch's admin API at {admin} answered 500: database on fire")
    );
    let requests = server.join().unwrap();
    assert!(requests
        .iter()
        .all(|r| r.starts_with("GET /api/calls HTTP/1.1\r\n")));
}

#[test]
fn dialplan_reload_through_the_admin_api() {
    let env = CliEnv::new();
    let (admin, server) = fake_admin(vec![
        (200, r#"{"opds": 43}"#.into()),
        (
            422,
            r#"{"errors": ["setda.toml:12: pattern _1XXX ties with _1XXX at line 9", "province.toml:3: unknown field `trunkk`"]}"#
                .into(),
        ),
        (500, "boom".into()),
    ]);
    let out = env.ok(&["dialplan", "reload", "--admin", &admin]);
    assert_eq!(out.trim(), "dialplan reloaded: 43 OPDs");
    let err = env.fails(&["dialplan", "reload", "--admin", &admin]);
    assert_eq!(
        err,
        "error: the dialplan was refused; the switch keeps the previous one:\n  \
         setda.toml:12: pattern _1XXX ties with _1XXX at line 9\n  \
         province.toml:3: unknown field `trunkk`\n"
    );
    let err = env.fails(&["dialplan", "reload", "--admin", &admin]);
    assert_eq!(
        err.trim(),
        format!("error: the switch's admin API at {admin} answered 500: boom")
    );
    let requests = server.join().unwrap();
    for r in &requests {
        assert!(
            r.starts_with("POST /api/dialplan/reload HTTP/1.1\r\n"),
            "{r}"
        );
        assert!(r.contains("Content-Length: 0\r\n"), "{r}");
    }
}

#[test]
fn without_a_running_switch() {
    let env = CliEnv::new();
    let admin = dead_admin();
    let sentence = format!(
        "error: cannot reach the switch's admin API at {admin} (is `tambun serve` running?)"
    );
    for args in [
        &["calls", "--admin", &admin][..],
        &["calls", "--json", "--admin", &admin],
        &["dialplan", "reload", "--admin", &admin],
    ] {
        let err = env.fails(args);
        assert_eq!(err.trim(), sentence, "{args:?}");
    }
}
