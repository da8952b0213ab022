//! Integration tests of the operator CLI: the built `tambun` binary, each test in its own
//! temporary directory with its own database ([`CliEnv`]), with the shipped dialplan
//! (setda 1000-1199, dinkes 2300-2499, diskominfo 3500-3599, …).

use std::process::Command;

use tambun::store::Store;

use crate::common::cli::CliEnv;

/// The password printed by `ext add`/`ext passwd` when one is generated.
fn printed_password(stdout: &str) -> String {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap_or_else(|| panic!("no password printed in {stdout:?}"));
    assert_eq!(line.len(), 16);
    assert!(line.chars().all(|c| c.is_ascii_alphanumeric()));
    line.to_owned()
}

#[test]
fn extension_lifecycle() {
    let env = CliEnv::new();
    let out = env.ok(&[
        "ext",
        "add",
        "1000",
        "--opd",
        "setda",
        "--name",
        "Resepsionis Setda",
        "--password",
        "pw1000",
    ]);
    assert!(out.contains("added extension 1000"), "{out}");
    assert!(!out.contains("password:"), "a given password is not echoed");
    env.assert_password("1000", "pw1000");

    let out = env.ok(&["ext", "add", "2300", "--opd", "dinkes"]);
    let generated = printed_password(&out);
    env.assert_password("2300", &generated);

    // Global options also work before the subcommand.
    let out = Command::new(env!("CARGO_BIN_EXE_tambun"))
        .arg("--db")
        .arg(&env.db)
        .args(["ext", "list", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list,
        serde_json::json!([
            {"number": "1000", "opd": "setda", "name": "Resepsionis Setda", "enabled": true},
            {"number": "2300", "opd": "dinkes", "name": "", "enabled": true},
        ])
    );
    let setda = env.json(&["ext", "list", "--opd", "setda", "--json"]);
    assert_eq!(setda.as_array().unwrap().len(), 1);
    let table = env.ok(&["ext", "list"]);
    assert!(
        table.contains("Resepsionis Setda") && table.contains("2300"),
        "{table}"
    );

    let show = env.ok(&["ext", "show", "1000", "--json"]);
    assert!(!show.to_lowercase().contains("ha1"), "{show}");
    let (ha1, _) = env.ha1_md5("1000");
    assert!(!show.contains(&ha1));
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["number"], "1000");
    assert_eq!(show["opd"], "setda");
    assert_eq!(show["enabled"], true);
    assert!(show["created_at"].as_str().unwrap().ends_with('Z'));

    env.ok(&["ext", "passwd", "1000", "--password", "another-pw"]);
    env.assert_password("1000", "another-pw");
    let out = env.ok(&["ext", "passwd", "1000"]);
    let generated = printed_password(&out);
    env.assert_password("1000", &generated);

    env.ok(&["ext", "disable", "1000"]);
    assert_eq!(
        env.json(&["ext", "show", "1000", "--json"])["enabled"],
        false
    );
    env.ok(&["ext", "enable", "1000"]);
    assert_eq!(
        env.json(&["ext", "show", "1000", "--json"])["enabled"],
        true
    );

    env.ok(&["ext", "rm", "1000"]);
    let err = env.fails(&["ext", "show", "1000"]);
    assert_eq!(err.trim(), "error: extension 1000 does not exist");
    assert_eq!(
        env.json(&["ext", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn errors_are_sentences() {
    let env = CliEnv::new();
    let err = env.fails(&["ext", "list"]);
    assert!(err.starts_with("error: there is no database at"), "{err}");

    env.ok(&[
        "ext",
        "add",
        "1000",
        "--opd",
        "setda",
        "--password",
        "pw1000",
    ]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["ext", "add", "1001", "--opd", "foo"],
            "error: unknown OPD 'foo' (see `tambun opd list`)",
        ),
        (
            &["ext", "add", "2500", "--opd", "dinkes"],
            "error: 2500 is outside the blocks of dinkes (2300-2499)",
        ),
        (
            &["ext", "add", "1000", "--opd", "setda"],
            "error: extension 1000 already exists",
        ),
        (
            &[
                "ext",
                "add",
                "1001",
                "--opd",
                "setda",
                "--password",
                "short",
            ],
            "error: the password must be at least 6 characters long",
        ),
        (
            &["ext", "passwd", "1000", "--password", "pw"],
            "error: the password must be at least 6 characters long",
        ),
        (
            &["ext", "show", "1234"],
            "error: extension 1234 does not exist",
        ),
        (
            &["ext", "passwd", "1234"],
            "error: extension 1234 does not exist",
        ),
        (
            &["ext", "rm", "1234"],
            "error: extension 1234 does not exist",
        ),
        (
            &["ext", "disable", "1234"],
            "error: extension 1234 does not exist",
        ),
        (
            &["ext", "enable", "1234"],
            "error: extension 1234 does not exist",
        ),
        (
            &["ext", "list", "--opd", "foo"],
            "error: unknown OPD 'foo' (see `tambun opd list`)",
        ),
    ];
    for (args, sentence) in cases {
        let err = env.fails(args);
        assert_eq!(err.trim(), *sentence, "tambun {args:?}");
    }
    // Nothing above changed the database.
    assert_eq!(
        env.json(&["ext", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    env.assert_password("1000", "pw1000");

    // A malformed number is a usage error (clap, exit code 2) that says why.
    let out = env.run(&["ext", "add", "12a4", "--opd", "setda"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an extension number"));
}

/// 500 rows: setda 1000-1199, dinkes 2300-2499, diskominfo 3500-3599, passwords `pw<number>`.
fn csv_500(with_passwords: bool) -> String {
    let mut csv = String::from(if with_passwords {
        "number,opd,name,password\n"
    } else {
        "number,opd,name\n"
    });
    let ranges = [
        ("setda", 1000..1200),
        ("dinkes", 2300..2500),
        ("diskominfo", 3500..3600),
    ];
    for (opd, range) in ranges {
        for n in range {
            if with_passwords {
                csv.push_str(&format!("{n},{opd},\"Staff {n}, {opd}\",pw{n}\n"));
            } else {
                csv.push_str(&format!("{n},{opd},Staff {n}\n"));
            }
        }
    }
    csv
}

fn opd_counts(env: &CliEnv) -> Vec<(String, u64)> {
    let opds = env.json(&["opd", "list", "--json"]);
    let mut counts: Vec<(String, u64)> = opds
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["extensions"].as_u64().unwrap() > 0)
        .map(|o| {
            (
                o["code"].as_str().unwrap().to_owned(),
                o["extensions"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.sort();
    counts
}

#[test]
fn import_500_rows() {
    let env = CliEnv::new();
    let file = env.path("staff.csv");
    std::fs::write(&file, csv_500(true)).unwrap();
    let out = env.ok(&["ext", "import", file.to_str().unwrap()]);
    assert!(out.contains("imported 500 extension(s)"), "{out}");
    assert_eq!(
        opd_counts(&env),
        [
            ("dinkes".to_owned(), 200),
            ("diskominfo".to_owned(), 100),
            ("setda".to_owned(), 200)
        ]
    );
    env.assert_password("2345", "pw2345");
    let show = env.json(&["ext", "show", "3599", "--json"]);
    assert_eq!(show["name"], "Staff 3599, diskominfo");

    // The same file again: every line is now a duplicate of the database.
    let err = env.fails(&["ext", "import", file.to_str().unwrap()]);
    assert!(err.contains(":2: extension 1000 already exists"), "{err}");
    assert!(err.contains(":501: extension 3599 already exists"), "{err}");

    let opds = env.json(&["opd", "list", "--json"]);
    let setda = opds
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["code"] == "setda")
        .unwrap();
    assert_eq!(setda["blocks"], serde_json::json!(["1000-1199"]));
}

#[test]
fn import_with_bad_lines_is_all_or_nothing_unless_skip_bad() {
    let env = CliEnv::new();
    env.ok(&[
        "ext",
        "add",
        "1199",
        "--opd",
        "setda",
        "--password",
        "pw1199",
    ]);
    let mut csv = csv_500(true);
    // Line numbers: the header is line 1, rows 1000..=1198 are lines 2..=200, 1199 is line 201.
    csv.push_str("2400,dinkes,Again,pw2400\n"); // line 502: duplicate within the file
    csv.push_str("1300,setda,Outside,pw1300\n"); // 503: outside the blocks
    csv.push_str("1301,nowhere,Unknown,pw1301\n"); // 504: unknown OPD
    csv.push_str("12a4,setda,Bad,pw12a4\n"); // 505: not a number
    csv.push_str("3555\n"); // 506: too few columns (3555 is a duplicate too)
    csv.push_str("1010,setda\n"); // 507: too few columns
    let file = env.path("bad.csv");
    std::fs::write(&file, &csv).unwrap();
    let f = file.to_str().unwrap();

    let err = env.fails(&["ext", "import", f]);
    for expected in [
        format!("{f}:201: extension 1199 already exists"),
        format!("{f}:502: extension 2400 is already on line 302"),
        format!("{f}:503: 1300 is outside the blocks of setda (1000-1199)"),
        format!("{f}:504: unknown OPD 'nowhere' (see `tambun opd list`)"),
        format!("{f}:505: '12a4' is not an extension number"),
        format!("{f}:506: expected 3 or 4 columns"),
        format!("{f}:507: expected 3 or 4 columns"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in\n{err}");
    }
    assert!(err.contains("error: 7 bad line(s)"), "{err}");
    assert!(err.contains("nothing imported"), "{err}");
    assert_eq!(
        env.json(&["ext", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A too-short password is a bad line too.
    std::fs::write(env.path("short.csv"), "1001,setda,Short,pw1\n").unwrap();
    let err = env.fails(&["ext", "import", env.path("short.csv").to_str().unwrap()]);
    assert!(err.contains("short.csv:1: the password must be at least 6 characters long"));

    let out = env.run(&["ext", "import", f, "--skip-bad"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{f}:503: 1300 is outside")),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 499 extension(s)"), "{stdout}");
    assert!(stdout.contains("skipped 7 bad line(s)"), "{stdout}");
    assert_eq!(
        env.json(&["ext", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        500
    );
    env.assert_password("1199", "pw1199");
    env.assert_password("2400", "pw2400");
}

#[test]
fn import_generates_passwords_into_a_private_file() {
    let env = CliEnv::new();
    let file = env.path("nopw.csv");
    // 499 rows without a password, one with.
    let mut csv = csv_500(false).replace("3598,diskominfo,Staff 3598\n", "");
    csv.push_str("3598,diskominfo,Helpdesk,given-pw\n");
    std::fs::write(&file, &csv).unwrap();
    let f = file.to_str().unwrap();

    let err = env.fails(&["ext", "import", f]);
    assert!(err.contains("--passwords-out"), "{err}");
    assert!(err.contains("499 line(s)"), "{err}");
    assert!(env
        .json(&["ext", "list", "--json"])
        .as_array()
        .unwrap()
        .is_empty());

    let out_file = env.path("passwords.csv");
    let o = out_file.to_str().unwrap();
    let out = env.ok(&["ext", "import", f, "--passwords-out", o]);
    assert!(out.contains("imported 500 extension(s)"), "{out}");
    assert!(out.contains("wrote 499 generated password(s)"), "{out}");
    let written = std::fs::read_to_string(&out_file).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines.len(), 499);
    assert!(
        !written.contains("3598,"),
        "given passwords are not written"
    );
    let (number, password) = lines[123].split_once(',').unwrap();
    assert_eq!(password.len(), 16);
    env.assert_password(number, password);
    env.assert_password("3598", "given-pw");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // An existing passwords file is never overwritten.
    std::fs::write(env.path("more.csv"), "1199,setda,Dup\n1198,setda,X\n").unwrap();
    let before = std::fs::read_to_string(&out_file).unwrap();
    let err = env.fails(&[
        "ext",
        "import",
        env.path("more.csv").to_str().unwrap(),
        "--skip-bad",
        "--passwords-out",
        o,
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), before);
}

#[test]
fn opd_list_and_dialplan_check() {
    let env = CliEnv::new();
    let table = env.ok(&["opd", "list"]);
    assert!(
        table.contains("setda") && table.contains("1000-1199"),
        "{table}"
    );
    let opds = env.json(&["opd", "list", "--json"]);
    let codes: Vec<&str> = opds
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["code"].as_str().unwrap())
        .collect();
    for code in ["setda", "dinkes", "diskominfo"] {
        assert!(codes.contains(&code), "{codes:?}");
    }
    // `opd list` synced the OPDs into the database.
    let synced = Store::open(&env.db).unwrap().opds().unwrap();
    assert_eq!(synced.len(), codes.len());

    let out = env.ok(&["dialplan", "check"]);
    assert_eq!(out.trim(), format!("{} OPDs, 2 rooms, ok", codes.len()));

    // A copy of the dialplan with a broken file.
    let broken = env.path("broken-dialplan");
    std::fs::create_dir(&broken).unwrap();
    for entry in std::fs::read_dir(&env.dialplan).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), broken.join(entry.file_name())).unwrap();
    }
    std::fs::write(broken.join("zzz.toml"), "this is = = not toml [[\n").unwrap();
    let err = env.fails(&["dialplan", "check", broken.to_str().unwrap()]);
    assert!(err.contains("zzz.toml:"), "{err}");
    assert!(err.contains("error: the dialplan in"), "{err}");
}

#[test]
fn regs_without_a_running_switch() {
    let env = CliEnv::new();
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin = format!("127.0.0.1:{port}");
    let err = env.fails(&["regs", "--admin", &admin]);
    assert_eq!(
        err.trim(),
        format!(
            "error: cannot reach the switch's admin API at {admin} (is `tambun serve` running?)"
        )
    );
    let err = env.fails(&["regs", "--json", "--opd", "setda", "--admin", &admin]);
    assert!(err.contains("cannot reach the switch's admin API"), "{err}");
}

#[test]
fn regs_reads_the_admin_api() {
    use std::io::{Read, Write};
    let env = CliEnv::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = listener.local_addr().unwrap().to_string();
    let body = r#"[{"extension":"1000","opd":"setda","contact":"<sip:1000@127.0.0.1:5080>","source":"127.0.0.1:5080","transport":"udp","user_agent":"baresip","expires_in":3598}]"#;
    let server = std::thread::spawn(move || {
        let mut requests = Vec::new();
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 2048];
            let n = s.read(&mut buf).unwrap();
            requests.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(response.as_bytes()).unwrap();
        }
        requests
    });
    let json = env.ok(&["regs", "--json", "--opd", "setda", "--admin", &admin]);
    assert_eq!(json.trim(), body);
    let table = env.ok(&["regs", "--admin", &admin]);
    assert!(
        table.contains("baresip") && table.contains("3598 s"),
        "{table}"
    );
    let requests = server.join().unwrap();
    assert!(requests[0].starts_with("GET /api/registrations?opd=setda HTTP/1.1\r\n"));
    assert!(requests[1].starts_with("GET /api/registrations HTTP/1.1\r\n"));
}

#[test]
fn serve_rejects_a_bad_config_file() {
    let env = CliEnv::new();
    let config = env.path("tambun.toml");
    std::fs::write(&config, "db = \"x.db\"\nlisten_on = [\"127.0.0.1:5060\"]\n").unwrap();
    let err = env.fails(&["serve", "--config", config.to_str().unwrap()]);
    assert!(err.starts_with("error: config: "), "{err}");
    assert!(
        err.contains("tambun.toml:2: unknown field `listen_on`"),
        "{err}"
    );
}
