//! Loader tests: the shipped plans, and one bad file per validation rule with its `file:line`.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::*;

const PROVINCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/dialplan/province.toml"
));

/// The shipped `province.toml` without its `[[room]]` tables (they name shipped OPDs, which
/// the small directories of these tests do not have).
fn province_without_rooms() -> &'static str {
    let end = PROVINCE
        .find("\n[[room]]")
        .expect("the shipped plan has rooms");
    &PROVINCE[..=end]
}

fn shipped() -> Dialplan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplan");
    Dialplan::load_dir(&dir).unwrap_or_else(|e| panic!("shipped dialplan fails to load:\n{e}"))
}

fn ext(s: &str) -> Extension {
    s.parse().unwrap()
}

/// A directory with the shipped province.toml (without its rooms) and the given files.
fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("province.toml"), province_without_rooms()).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn errors_of(dir: &TempDir) -> Vec<DialplanError> {
    match Dialplan::load_dir(dir.path()) {
        Ok(_) => panic!("the directory loaded without errors"),
        Err(DialplanErrors(errors)) => errors,
    }
}

/// Asserts that an error names `file` (file name only), `line`, and contains `text`.
fn assert_error(errors: &[DialplanError], file: &str, line: usize, text: &str) {
    let found = errors.iter().any(|e| {
        e.file.file_name().is_some_and(|n| n == file) && e.line == line && e.reason.contains(text)
    });
    let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        found,
        "no error {file}:{line}: …{text}… among:\n{}",
        all.join("\n")
    );
}

const DINKES: &str = r#"code = "dinkes"
name = "Dinas Kesehatan"
blocks = ["2300-2499"]
reception = "2300"

[[rule]]
pattern = "0"
to = { extension = "2300" }
"#;

// ---------------------------------------------------------------------------------------------
// The shipped plans.

#[test]
fn shipped_plans_load() {
    let plan = shipped();
    assert_eq!(plan.opds().len(), 43);
    let codes: Vec<&str> = plan.opds().iter().map(|o| o.code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(codes, sorted, "OPDs are sorted by code");

    let dinkes = plan.opd(&"dinkes".parse().unwrap()).unwrap();
    assert_eq!(dinkes.name, "Dinas Kesehatan");
    assert_eq!(dinkes.reception, Some(ext("2300")));
    assert_eq!(
        dinkes.blocks,
        vec![Block {
            first: 2300,
            last: 2499
        }]
    );
    assert!(dinkes.file.ends_with("dialplan/dinkes.toml"));
    assert!(plan.opd(&"nope".parse().unwrap()).is_none());

    let province = plan.province();
    assert!(province.trunks[0].host == "127.0.0.1" || province.trunks[0].host == "::1");
    assert_eq!(province.outside_prefix, "9");
    assert_eq!(
        province.emergency,
        ["112", "110", "113", "115", "118", "119"]
    );
    assert!(!province
        .default_permissions
        .contains(NumberClass::International));
    assert!(province
        .default_permissions
        .contains(NumberClass::Emergency));
    assert_eq!(province.features, FeatureCodes::default());

    let numbers: Vec<&str> = plan.rooms().iter().map(|r| r.number.as_str()).collect();
    assert_eq!(numbers, ["8000", "8001"]);
    let coordination = plan.room("8000").unwrap();
    assert_eq!(coordination.name, "Rapat Koordinasi Provinsi");
    assert_eq!(coordination.opds, RoomAccess::All);
    assert_eq!(
        coordination.moderators,
        [Moderator::Opd("diskominfo".parse().unwrap())]
    );
    assert_eq!((coordination.pin.as_deref(), coordination.max), (None, 50));
    assert_eq!(coordination.owner, None);
    assert!(coordination.file.ends_with("dialplan/province.toml"));
    let leaders = plan.room("8001").unwrap();
    assert_eq!(leaders.name, "Rapat Pimpinan");
    assert_eq!(leaders.pin.as_deref(), Some("2468"));
    assert_eq!(leaders.moderator_pin.as_deref(), Some("1357"));
    assert_eq!(leaders.max, 20);
    let codes = ["setda", "diskominfo", "bappedalitbang"].map(|c| c.parse().unwrap());
    assert_eq!(leaders.opds, RoomAccess::Only(codes.to_vec()));
    assert!(plan.room("8002").is_none());
    for room in plan.rooms() {
        let number: u64 = room.number.parse().unwrap();
        assert!((8000..=8999).contains(&number), "{}", room.number);
    }
}

#[test]
fn shipped_examples() {
    let plan = shipped();
    for opd in plan.opds() {
        let zero = opd.rules.iter().find(|r| r.pattern.as_str() == "0");
        let zero = zero.unwrap_or_else(|| panic!("{} has no rule for 0", opd.code));
        let reception = opd.reception.clone().unwrap();
        assert_eq!(zero.target, Target::Extension(reception.clone()));
        assert_eq!(reception.value(), opd.blocks[0].first);
    }
    let opd = |c: &str| plan.opd(&c.parse().unwrap()).unwrap();

    let helpdesk = opd("diskominfo").group("helpdesk").unwrap();
    assert!(matches!(helpdesk.strategy, Strategy::Parallel { .. }));
    let igd = opd("rsud-doris").group("igd").unwrap();
    assert_eq!(
        igd.strategy,
        Strategy::Sequential {
            member_timeout_secs: 15
        }
    );

    for code in ["setda", "diskominfo"] {
        let o = opd(code);
        assert!(
            o.permissions.allow.contains(NumberClass::National),
            "{code}"
        );
    }
    let dinkes = opd("dinkes");
    assert!(dinkes
        .allowed_classes(&ext("2301"))
        .contains(NumberClass::Local));
    assert!(!dinkes
        .allowed_classes(&ext("2301"))
        .contains(NumberClass::National));
    let setda = opd("setda");
    assert!(setda
        .allowed_classes(&ext("1001"))
        .contains(NumberClass::International));
    assert!(!setda
        .allowed_classes(&ext("1010"))
        .contains(NumberClass::International));

    let zero = dinkes
        .rules
        .iter()
        .find(|r| r.pattern.as_str() == "0")
        .unwrap();
    assert_eq!(
        zero.when[0].condition,
        TimeCondition::Outside("office-hours".into())
    );
    let office = plan.province().schedule("office-hours").unwrap();
    assert!(office.covers(Weekday::Mon, 9 * 60));
    assert!(!office.covers(Weekday::Sun, 9 * 60));
}

#[test]
fn opd_of_finds_the_block_owner() {
    let plan = shipped();
    let code_of = |n: &str| plan.opd_of(&ext(n)).map(|o| o.code.as_str().to_owned());
    assert_eq!(code_of("1000").as_deref(), Some("setda"));
    assert_eq!(code_of("1199").as_deref(), Some("setda"));
    assert_eq!(code_of("2399").as_deref(), Some("dinkes"));
    assert_eq!(code_of("5399").as_deref(), Some("rsud-doris"));
    assert_eq!(code_of("5800"), None);
    assert_eq!(code_of("10000"), None, "digit count must match");
}

#[test]
fn block_basics() {
    let b = Block {
        first: 1000,
        last: 1199,
    };
    assert_eq!(b.to_string(), "1000-1199");
    assert_eq!(b.len(), 200);
    assert!(b.contains(&ext("1000")) && b.contains(&ext("1199")));
    assert!(!b.contains(&ext("1200")) && !b.contains(&ext("10000")));
}

// ---------------------------------------------------------------------------------------------
// Validation errors, each at its file and line.

#[test]
fn missing_province_is_an_error() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("dinkes.toml"), DINKES).unwrap();
    let errors = errors_of(&dir);
    assert_error(&errors, "province.toml", 0, "missing");
}

#[test]
fn toml_syntax_error_has_a_line() {
    let dir = dir_with(&[(
        "dinkes.toml",
        "code = \"dinkes\"\nname = \"x\"\nblocks = [\"2300-2499\"\n\n",
    )]);
    let errors = errors_of(&dir);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file.file_name().unwrap(), "dinkes.toml");
    assert!(errors[0].line >= 3, "{}", errors[0]);
}

#[test]
fn unknown_key_is_an_error() {
    let text = DINKES.replace(
        "reception = \"2300\"",
        "reception = \"2300\"\ncolour = \"red\"",
    );
    let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
    assert_error(&errors, "dinkes.toml", 5, "unknown field `colour`");
}

#[test]
fn unknown_target_kind_is_an_error() {
    let text = DINKES.replace(
        "to = { extension = \"2300\" }",
        "to = { voicemail = \"2300\" }",
    );
    let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
    assert_error(&errors, "dinkes.toml", 8, "unknown field `voicemail`");
}

#[test]
fn file_name_must_match_code() {
    let errors = errors_of(&dir_with(&[("kesehatan.toml", DINKES)]));
    assert_error(&errors, "kesehatan.toml", 1, "does not match the file name");
}

#[test]
fn malformed_blocks() {
    for (block, text) in [
        ("2300", "FIRST-LAST"),
        ("2499-2300", "first number is above the last"),
        ("2300-24999", "same number of digits"),
        ("0100-0199", "starting with 0 or 9"),
        ("9000-9099", "starting with 0 or 9"),
        ("23a0-2499", "not an extension number"),
    ] {
        let file = DINKES.replace("2300-2499", block);
        let errors = errors_of(&dir_with(&[("dinkes.toml", &file)]));
        assert_error(&errors, "dinkes.toml", 3, text);
    }
}

#[test]
fn overlapping_blocks_within_a_file() {
    let text = DINKES.replace(
        "blocks = [\"2300-2499\"]",
        "blocks = [\n  \"2300-2499\",\n  \"2400-2599\",\n]",
    );
    let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
    assert_error(&errors, "dinkes.toml", 4, "overlaps block 2400-2599");
    assert_error(&errors, "dinkes.toml", 5, "overlaps block 2300-2499");
}

#[test]
fn overlapping_blocks_across_files_name_both_places() {
    let disdik = "code = \"disdik\"\nname = \"Dinas Pendidikan\"\n\nblocks = [\"2100-2399\"]\n";
    let errors = errors_of(&dir_with(&[
        ("dinkes.toml", DINKES),
        ("disdik.toml", disdik),
    ]));
    assert_error(
        &errors,
        "dinkes.toml",
        3,
        "overlaps block 2100-2399 of 'disdik'",
    );
    assert_error(
        &errors,
        "disdik.toml",
        4,
        "overlaps block 2300-2499 of 'dinkes'",
    );
    assert!(errors.iter().any(|e| e.reason.contains("disdik.toml:4")));
}

#[test]
fn duplicate_codes_name_both_places() {
    let errors = errors_of(&dir_with(&[
        ("dinkes.toml", DINKES),
        ("dinkes2.toml", DINKES),
    ]));
    assert_error(&errors, "dinkes2.toml", 1, "does not match the file name");
    assert_error(&errors, "dinkes.toml", 1, "duplicate OPD code 'dinkes'");
    assert_error(&errors, "dinkes2.toml", 1, "duplicate OPD code 'dinkes'");
}

#[test]
fn reception_must_be_in_own_blocks() {
    let text = DINKES.replace("reception = \"2300\"", "reception = \"2500\"");
    let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
    assert_error(
        &errors,
        "dinkes.toml",
        4,
        "reception 2500 is not in this OPD's blocks",
    );
}

#[test]
fn bad_patterns() {
    for (pattern, text) in [
        ("_23A", "unknown character 'A'"),
        ("_23[4-", "not closed"),
        ("23XX", "start with '_'"),
    ] {
        let file = DINKES.replace("pattern = \"0\"", &format!("pattern = \"{pattern}\""));
        let errors = errors_of(&dir_with(&[("dinkes.toml", &file)]));
        assert_error(&errors, "dinkes.toml", 7, text);
    }
}

#[test]
fn tied_patterns_are_an_error() {
    let text = format!(
        "{DINKES}\n[[rule]]\npattern = \"_23[0-4]X\"\nto = {{ extension = \"2301\" }}\n\n\
         [[rule]]\npattern = \"_23[4-8]X\"\nto = {{ extension = \"2302\" }}\n\n\
         [[rule]]\npattern = \"0\"\nto = {{ extension = \"2303\" }}\n"
    );
    let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
    assert_error(
        &errors,
        "dinkes.toml",
        15,
        "ties with '_23[0-4]X' on line 11",
    );
    assert_error(
        &errors,
        "dinkes.toml",
        19,
        "pattern '0' is already used on line 7",
    );
    assert_eq!(errors.len(), 2, "{errors:?}");

    // Equal specificity without a common number is fine.
    let text = text.replace("_23[4-8]X", "_23[5-9]X").replace(
        "[[rule]]\npattern = \"0\"\nto = { extension = \"2303\" }\n",
        "",
    );
    let dir = dir_with(&[("dinkes.toml", &text)]);
    Dialplan::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn reject_status_must_be_an_error_status() {
    for status in ["200", "399", "700"] {
        let text = DINKES.replace(
            "to = { extension = \"2300\" }",
            &format!("to = {{ reject = {status} }}"),
        );
        let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
        assert_error(&errors, "dinkes.toml", 8, "400 to 699");
    }
    let text = DINKES.replace(
        "to = { extension = \"2300\" }",
        "to = { reject = 403, reason = \"Dilarang\" }",
    );
    let dir = dir_with(&[("dinkes.toml", &text)]);
    let plan = Dialplan::load_dir(dir.path()).unwrap();
    let target = &plan.opds()[0].rules[0].target;
    assert_eq!(
        *target,
        Target::Reject {
            status: 403,
            reason: Some("Dilarang".into())
        }
    );
}

#[test]
fn target_references_are_checked() {
    let text = format!(
        "{DINKES}\n[[rule]]\npattern = \"2350\"\nto = {{ group = \"nobody\" }}\n\n\
         [[rule]]\npattern = \"2351\"\nto = {{ extension = \"7777\" }}\n\n\
         [[rule]]\npattern = \"2352\"\nto = {{ extension = \"2300\", trunk = true }}\n\n\
         [[rule]]\npattern = \"2353\"\nto = {{ extension = \"2300\" }}\n\
         when = [{{ during = \"siesta\", to = {{ extension = \"2301\" }} }}]\n"
    );
    let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
    assert_error(&errors, "dinkes.toml", 12, "unknown group 'nobody'");
    assert_error(
        &errors,
        "dinkes.toml",
        16,
        "extension 7777 is in no OPD's block",
    );
    assert_error(&errors, "dinkes.toml", 20, "exactly one of");
    assert_error(&errors, "dinkes.toml", 25, "unknown schedule 'siesta'");
}

#[test]
fn bad_permission_class() {
    let text = format!("{DINKES}\n[permissions]\nallow = [\"internal\", \"galactic\"]\n");
    let errors = errors_of(&dir_with(&[("dinkes.toml", &text)]));
    assert_error(
        &errors,
        "dinkes.toml",
        11,
        "unknown number class 'galactic'",
    );
}

#[test]
fn province_errors_have_lines() {
    let dir = TempDir::new().unwrap();
    let bad = PROVINCE
        .replace("pattern = \"_08.\"", "pattern = \"_0[8\"")
        .replace("transport = \"udp\"", "transport = \"carrier-pigeon\"");
    std::fs::write(dir.path().join("province.toml"), &bad).unwrap();
    let errors = errors_of(&dir);
    let line_of = |needle: &str| bad.lines().position(|l| l.contains(needle)).unwrap() + 1;
    assert_error(&errors, "province.toml", line_of("_0[8"), "not closed");
    assert_error(
        &errors,
        "province.toml",
        line_of("carrier-pigeon"),
        "not a transport",
    );
}

#[test]
fn all_errors_of_a_directory_are_collected_and_other_files_ignored() {
    let bad_reception = DINKES.replace("reception = \"2300\"", "reception = \"2500\"");
    let disdik = "code = \"disdik\"\nname = \"Dinas Pendidikan\"\nblocks = [\"2100-2299\"]\n\
                  [[rule]]\npattern = \"_21[\"\nto = { trunk = true }\n";
    let dir = dir_with(&[
        ("dinkes.toml", &bad_reception),
        ("disdik.toml", disdik),
        ("README.md", "not toml at all ["),
        ("dinkes.toml.bak", "also [ not toml"),
    ]);
    let errors = errors_of(&dir);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_error(&errors, "dinkes.toml", 4, "reception");
    assert_error(&errors, "disdik.toml", 5, "not closed");
    let shown = DialplanErrors(errors).to_string();
    assert_eq!(shown.lines().count(), 2);
    assert!(shown.lines().all(|l| l.contains(".toml:")), "{shown}");
}

#[test]
fn error_display_is_file_colon_line() {
    let e = DialplanError {
        file: PathBuf::from("dialplan/dinkes.toml"),
        line: 7,
        reason: "bad".into(),
    };
    assert_eq!(e.to_string(), "dialplan/dinkes.toml:7: bad");
}

// ---------------------------------------------------------------------------------------------
// Fuzz findings (`fuzz/fuzz_targets/dialplan_file.rs`), each with its minimised input.

/// A control character in a comment: the TOML parser reports it with an empty message, which
/// printed as `dlh.toml:1: ` with nothing after it.
#[test]
fn control_character_in_a_comment_has_a_reason() {
    let text = format!("# Dialplan\u{1a}\n{DINKES}");
    let dir = dir_with(&[("dinkes.toml", &text)]);
    let errors = errors_of(&dir);
    assert_error(&errors, "dinkes.toml", 1, "invalid TOML at '\\u{1a}'");
    assert!(
        errors.iter().all(|e| !e.reason.trim().is_empty()),
        "{errors:?}"
    );
}

/// `from_sources` validates in-memory files exactly as `load_dir` validates the directory.
#[test]
fn from_sources_agrees_with_load_dir() {
    let bad = DINKES.replace("2300-2499", "2300-2199");
    let dir = dir_with(&[("dinkes.toml", &bad)]);
    let files = vec![
        (
            dir.path().join("province.toml"),
            province_without_rooms().to_owned(),
        ),
        (dir.path().join("dinkes.toml"), bad.clone()),
    ];
    let from_files = Dialplan::from_sources(dir.path(), files).map(|p| p.opds().len());
    assert_eq!(
        from_files,
        Dialplan::load_dir(dir.path()).map(|p| p.opds().len())
    );
    assert!(from_files.is_err());
}

// ---------------------------------------------------------------------------------------------
// Conference rooms.

/// Setda, with a schedule of its own, for rooms that name another OPD.
const SETDA: &str = r#"code = "setda"
name = "Sekretariat Daerah"
blocks = ["1000-1199"]

[[schedule]]
name = "rapat"
periods = [{ days = "tue", hours = ["09:00-12:00"] }]
"#;

/// DINKES (8 lines) with one `[[room]]` on line 10; `body` starts on line 11.
fn dinkes_with_room(body: &str) -> String {
    format!("{DINKES}\n[[room]]\n{body}")
}

#[test]
fn rooms_load_with_their_defaults() {
    let room = "number = \"8100\"\nname = \"Rapat Dinkes\"\n";
    let province = format!(
        "{}\n[[room]]\nnumber = \"8500\"\nname = \"Rapat Provinsi\"\nmax = 500\nduring = \"office-hours\"\n",
        province_without_rooms()
    );
    let setda_room = format!(
        "{SETDA}\n[[room]]\nnumber = \"810\"\nname = \"Biro\"\npin = \"0000\"\nmoderator_pin = \"00000000\"\nmax = 2\nopds = [\"setda\", \"dinkes\"]\nmoderators = [\"1001\", \"dinkes\"]\noutside = \"rapat\"\n"
    );
    let dir = dir_with(&[
        ("dinkes.toml", &dinkes_with_room(room)),
        ("setda.toml", &setda_room),
    ]);
    std::fs::write(dir.path().join("province.toml"), province).unwrap();
    let plan = Dialplan::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let numbers: Vec<&str> = plan.rooms().iter().map(|r| r.number.as_str()).collect();
    assert_eq!(numbers, ["810", "8100", "8500"], "sorted by number");

    let dinkes: OpdCode = "dinkes".parse().unwrap();
    let own = plan.room("8100").unwrap();
    assert_eq!(own.owner, Some(dinkes.clone()));
    assert_eq!(own.opds, RoomAccess::Only(vec![dinkes.clone()]));
    assert_eq!((own.max, own.time.clone()), (50, None));
    assert_eq!(own.line, 11);
    assert!(own.admits(&dinkes) && !own.admits(&"setda".parse().unwrap()));

    let province_room = plan.room("8500").unwrap();
    assert_eq!(province_room.owner, None);
    assert_eq!(province_room.opds, RoomAccess::All);
    assert_eq!(province_room.max, 500);
    let time = province_room.time.as_ref().unwrap();
    assert_eq!(time.condition, TimeCondition::During("office-hours".into()));
    assert!(province_room.file.ends_with("province.toml"));

    let biro = plan.room("810").unwrap();
    assert_eq!(biro.owner, Some("setda".parse().unwrap()));
    assert_eq!(biro.pin.as_deref(), Some("0000"));
    assert_eq!(biro.moderator_pin.as_deref(), Some("00000000"));
    assert_eq!(biro.max, 2);
    assert_eq!(
        biro.moderators,
        [
            Moderator::Extension(ext("1001")),
            Moderator::Opd(dinkes.clone())
        ]
    );
    assert!(biro.moderated_by(&ext("1001"), &"setda".parse().unwrap()));
    assert!(!biro.moderated_by(&ext("1002"), &"setda".parse().unwrap()));
    assert!(biro.moderated_by(&ext("2301"), &dinkes));
    assert_eq!(
        biro.time.as_ref().map(|t| (&t.condition, t.line)),
        Some((&TimeCondition::Outside("rapat".into()), 17)),
        "an OPD room may use its own file's schedules"
    );
}

#[test]
fn room_fields_are_checked_each_at_its_line() {
    let name = "name = \"Rapat\"\n";
    for (body, line, text) in [
        ("number = \"80\"\nname = \"Rapat\"\n", 11, "room number '80' must be 3 to 6 digits"),
        ("number = \"1234567\"\nname = \"Rapat\"\n", 11, "must be 3 to 6 digits"),
        ("number = \"8l00\"\nname = \"Rapat\"\n", 11, "must be 3 to 6 digits"),
        ("number = \"8100\"\nname = \" \"\n", 12, "the room's name is empty"),
        ("number = \"8100\"\nname = \"Rapat\"\npin = \"123\"\n", 13, "pin must be 4 to 8 digits"),
        ("number = \"8100\"\nname = \"Rapat\"\npin = \"123456789\"\n", 13, "pin must be 4 to 8 digits"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderator_pin = \"12a4\"\n", 13, "moderator_pin must be 4 to 8 digits"),
        ("number = \"8100\"\nname = \"Rapat\"\npin = \"2468\"\nmoderator_pin = \"2468\"\n", 14, "moderator_pin must differ from pin"),
        ("number = \"8100\"\nname = \"Rapat\"\nmax = 1\n", 13, "max must be 2 to 500"),
        ("number = \"8100\"\nname = \"Rapat\"\nmax = 501\n", 13, "max must be 2 to 500"),
        ("number = \"8100\"\nname = \"Rapat\"\nvideo_mbps = 0\n", 13, "video_mbps must be 1 to 1000"),
        ("number = \"8100\"\nname = \"Rapat\"\nvideo_mbps = 5000\n", 13, "video_mbps must be 1 to 1000"),
        ("number = \"8100\"\nname = \"Rapat\"\nopds = []\n", 13, "opds needs at least one OPD code"),
        ("number = \"8100\"\nname = \"Rapat\"\nopds = [\"dinkes\",\n  \"dinkes\"]\n", 14, "OPD 'dinkes' is listed twice"),
        ("number = \"8100\"\nname = \"Rapat\"\nopds = [\"Dinkes\"]\n", 13, "'Dinkes' is not an OPD code"),
        ("number = \"8100\"\nname = \"Rapat\"\nopds = [\"dinkes\", \"nope\"]\n", 13, "room 8100: unknown OPD 'nope'"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderators = [\"nope\"]\n", 13, "unknown OPD 'nope' among the moderators"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderators = [\"7000\"]\n", 13, "moderator 7000 is in no OPD's block"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderators = [\"0123\"]\n", 13, "moderator '0123'"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderators = [\"Kadis!\"]\n", 13, "must be an OPD code or an extension number"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderators = [\"2301\",\n  \"2301\"]\n", 14, "moderator '2301' is listed twice"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderators = [\"setda\"]\n", 13, "moderator OPD 'setda' may not join the room"),
        ("number = \"8100\"\nname = \"Rapat\"\nmoderators = [\"1001\"]\n", 13, "moderator 1001 (of OPD 'setda') may not join"),
        ("number = \"8100\"\nname = \"Rapat\"\nduring = \"office-hours\"\noutside = \"office-hours\"\n", 14, "at most one of 'during' or 'outside'"),
        ("number = \"8100\"\nname = \"Rapat\"\nduring = \"siesta\"\n", 13, "unknown schedule 'siesta'"),
        ("number = \"8100\"\nname = \"Rapat\"\noutside = \"rapat\"\n", 13, "unknown schedule 'rapat'"),
        ("number = \"2350\"\nname = \"Rapat\"\n", 11, "room number 2350 is in block 2300-2499 of 'dinkes'"),
        ("number = \"1100\"\nname = \"Rapat\"\n", 11, "is in block 1000-1199 of 'setda'"),
        ("number = \"112\"\nname = \"Rapat\"\n", 11, "room number 112 is an emergency number"),
        ("number = \"9100\"\nname = \"Rapat\"\n", 11, "starts with the outside-line prefix '9'"),
        ("number = \"8100\"\nname = \"Rapat\"\ncolour = \"red\"\n", 13, "unknown field `colour`"),
        ("number = \"8100\"\nname = \"Rapat\"\nmax = \"20\"\n", 13, "invalid type"),
        (name, 10, "missing field `number`"),
    ] {
        let file = dinkes_with_room(body);
        let errors = errors_of(&dir_with(&[("dinkes.toml", &file), ("setda.toml", SETDA)]));
        assert_error(&errors, "dinkes.toml", line, text);
    }
}

#[test]
fn province_room_errors_are_in_province_toml() {
    let province = format!(
        "{}\n[[room]]\nnumber = \"8000\"\nname = \"Rapat\"\nopds = [\"dinkes\", \"nope\"]\nduring = \"rapat\"\n",
        province_without_rooms()
    );
    let first = province
        .lines()
        .position(|l| l == "number = \"8000\"")
        .unwrap()
        + 1;
    let dir = dir_with(&[("dinkes.toml", DINKES), ("setda.toml", SETDA)]);
    std::fs::write(dir.path().join("province.toml"), province).unwrap();
    let errors = errors_of(&dir);
    assert_error(&errors, "province.toml", first + 2, "unknown OPD 'nope'");
    // A province room sees only the province's schedules, not those of an OPD file.
    assert_error(
        &errors,
        "province.toml",
        first + 3,
        "unknown schedule 'rapat'",
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn duplicate_room_numbers_name_both_places() {
    let province = format!(
        "{}\n[[room]]\nnumber = \"8100\"\nname = \"Rapat Provinsi\"\n",
        province_without_rooms()
    );
    let line = province
        .lines()
        .position(|l| l == "number = \"8100\"")
        .unwrap()
        + 1;
    let room = "number = \"8100\"\nname = \"Rapat Dinkes\"\n";
    let dir = dir_with(&[("dinkes.toml", &dinkes_with_room(room))]);
    std::fs::write(dir.path().join("province.toml"), &province).unwrap();
    let errors = errors_of(&dir);
    assert_error(
        &errors,
        "province.toml",
        line,
        &format!(
            "room number 8100 is already used by room 'Rapat Dinkes' ({}:11)",
            dir.path().join("dinkes.toml").display()
        ),
    );
    assert_error(
        &errors,
        "dinkes.toml",
        11,
        &format!(
            "room number 8100 is already used by room 'Rapat Provinsi' ({}:{line})",
            dir.path().join("province.toml").display()
        ),
    );
    assert_eq!(errors.len(), 2, "{errors:?}");

    // Twice in one file: both lines.
    let twice = format!(
        "{}\n[[room]]\nnumber = \"8100\"\nname = \"Lagi\"\n",
        dinkes_with_room(room)
    );
    let errors = errors_of(&dir_with(&[("dinkes.toml", &twice)]));
    assert_error(&errors, "dinkes.toml", 11, "room 'Lagi' (");
    assert_error(&errors, "dinkes.toml", 15, "room 'Rapat Dinkes' (");
}

#[test]
fn carriers_load_in_priority_order_and_bad_ones_name_their_line() {
    let two = province_without_rooms().replace(
        "\n[outside]",
        "\n[trunk.register]\nusername = \"0536321000\"\nrealm = \"carrier.test\"\n\n\
         [[trunk]]\nname = \"backup\"\ntarget = \"[::1]:5070\"\ntransport = \"udp\"\npriority = 0\n\
         number_format = \"local\"\narea_code = \"0536\"\n\n[outside]",
    );
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("province.toml"), &two).unwrap();
    let plan = Dialplan::load_dir(dir.path()).unwrap();
    let names: Vec<&str> = plan
        .province()
        .trunks
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(names, ["backup", "telkom"]);
    let telkom = &plan.province().trunks[1];
    let reg = telkom.register.as_ref().unwrap();
    assert_eq!((reg.domain.as_str(), reg.expires_secs), ("127.0.0.1", 600));
    assert_eq!(
        plan.province().trunks[0].number_format,
        NumberFormat::Local {
            area: "0536".into()
        }
    );
    assert_eq!(
        plan.province().public_number.as_deref(),
        Some("05363231110")
    );

    // An older plan's single [trunk] table still loads, as the carrier `trunk`.
    let old = province_without_rooms()
        .replace("[[trunk]]\n", "[trunk]\n")
        .replace("name = \"telkom\"\n", "");
    std::fs::write(dir.path().join("province.toml"), &old).unwrap();
    let plan = Dialplan::load_dir(dir.path()).unwrap();
    assert_eq!(plan.province().trunks[0].name, "trunk");

    for (from, to, why) in [
        (
            "name = \"telkom\"",
            "name = \"Telkom!\"",
            "lowercase letters",
        ),
        (
            "number_format = \"national\"",
            "number_format = \"local\"",
            "needs area_code",
        ),
        (
            "caller_id = \"pai\"",
            "caller_id = \"rpid\"",
            "pai, from or both",
        ),
        ("ping_secs = 30", "ping_secs = -1", "ping_secs must be"),
        (
            "transport = \"udp\"",
            "transport = \"ws\"",
            "udp, tcp or tls",
        ),
        (
            "public_number = \"05363231110\"",
            "public_number = \"112\"",
            "national number",
        ),
        (
            "ping_secs = 30",
            "ping_secs = 30\ntls_name = \"sip.carrier.test\"",
            "are for transport = \"tls\"",
        ),
        (
            "transport = \"udp\"",
            "transport = \"tls\"\ntls_name = \"bad name!\"",
            "host name on the carrier's certificate",
        ),
    ] {
        let bad = province_without_rooms().replace(from, to);
        std::fs::write(dir.path().join("province.toml"), &bad).unwrap();
        let errors = errors_of(&dir);
        let last = to.lines().last().unwrap();
        let line = bad.lines().position(|l| l.contains(last)).unwrap() + 1;
        assert_error(&errors, "province.toml", line, why);
    }
    // A TLS carrier checks the target's IP by default, against the system's CAs; a
    // relative tls_ca is read from the dialplan directory.
    let tls = province_without_rooms().replace("transport = \"udp\"", "transport = \"tls\"");
    std::fs::write(dir.path().join("province.toml"), &tls).unwrap();
    let plan = Dialplan::load_dir(dir.path()).unwrap();
    let t = plan.province().trunks[0].tls.clone().unwrap();
    assert_eq!(t.server_name, "127.0.0.1");
    assert_eq!(t.ca_file, std::path::Path::new(super::DEFAULT_TRUNK_CA));
    let tls = tls.replace("ping_secs = 30", "ping_secs = 30\ntls_ca = \"ca.pem\"");
    std::fs::write(dir.path().join("province.toml"), &tls).unwrap();
    let plan = Dialplan::load_dir(dir.path()).unwrap();
    let t = plan.province().trunks[0].tls.clone().unwrap();
    assert_eq!(t.ca_file, dir.path().join("ca.pem"));
    let dup = province_without_rooms().replace(
        "\n[outside]",
        "\n[[trunk]]\nname = \"telkom\"\ntarget = \"127.0.0.1:5091\"\ntransport = \"udp\"\n\n[outside]",
    );
    std::fs::write(dir.path().join("province.toml"), &dup).unwrap();
    let errors = errors_of(&dir);
    let line = dup.lines().position(|l| l.contains("5091")).unwrap() + 1;
    assert_error(&errors, "province.toml", line, "already defined on line");
}

#[test]
fn public_numbers_route_inbound_calls_and_bad_ones_name_their_line() {
    let setda = "code = \"setda\"\nname = \"Setda\"\nblocks = [\"1000-1199\"]\nreception = \"1000\"\n\
        [[group]]\nname = \"resepsionis\"\nstrategy = \"parallel\"\nmembers = [\"1000\", \"1001\"]\n\
        [[did]]\nnumber = \"05363221234\"\nto = { group = \"resepsionis\" }\n\
        [[did.when]]\noutside = \"office-hours\"\nto = { extension = \"1190\" }\n\
        [[did]]\nnumber = \"+625363221235\"\nto = { extension = \"1001\" }\n";
    let diskominfo = "code = \"diskominfo\"\nname = \"Diskominfo\"\nblocks = [\"3500-3599\"]\n\
        reception = \"3500\"\noperator = \"3500\"\n";
    let province = province_without_rooms();
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("province.toml"), province).unwrap();
    std::fs::write(dir.path().join("setda.toml"), setda).unwrap();
    std::fs::write(dir.path().join("diskominfo.toml"), diskominfo).unwrap();
    let plan = Dialplan::load_dir(dir.path()).unwrap();
    struct All;
    impl Directory for All {
        fn is_assigned(&self, _: &Extension) -> bool {
            true
        }
        fn features(&self, _: &Extension) -> Features {
            Features::default()
        }
    }
    let monday_10 = 1_764_558_000; // Mon 2025-12-01 10:00 WIB
    let ring = |n: &str, at: i64| match plan.route_inbound(n, at, &All).decision {
        Decision::Ring(p) => p
            .members
            .iter()
            .map(|m| m.extension.to_string())
            .collect::<Vec<_>>(),
        other => panic!("{n}: {other:?}"),
    };
    assert_eq!(ring("+625363221234", monday_10), ["1000", "1001"]);
    assert_eq!(ring("0536 3221234", monday_10 + 12 * 3600), ["1190"],);
    assert_eq!(ring("05363221235", monday_10), ["1001"]);
    assert_eq!(ring("05360000000", monday_10), ["3500"]);
    assert!(plan.is_public_number("+625363221235"));
    assert!(!plan.is_public_number("1000"));

    // (the file, the text on the line the error names, what it says)
    for (text, at, why) in [
        (
            setda.replace("to = { extension = \"1001\" }", "to = { trunk = true }"),
            "trunk = true",
            "back to the trunk",
        ),
        (
            setda.replace("+625363221235", "05363221234"),
            "number = \"05363221234\"",
            "already listed on line",
        ),
        (
            setda.replace("+625363221235", "12345"),
            "12345",
            "national number",
        ),
    ] {
        std::fs::write(dir.path().join("setda.toml"), &text).unwrap();
        let errors = errors_of(&dir);
        let line = text[..text.rfind(at).unwrap()].matches('\n').count() + 1;
        assert_error(&errors, "setda.toml", line, why);
    }
    std::fs::write(dir.path().join("setda.toml"), setda).unwrap();
    std::fs::write(
        dir.path().join("diskominfo.toml"),
        diskominfo.replace("operator = \"3500\"", "operator = \"1000\""),
    )
    .unwrap();
    let errors = errors_of(&dir);
    assert_error(
        &errors,
        "diskominfo.toml",
        5,
        "operator 1000 is not in this OPD's blocks",
    );
    std::fs::write(
        dir.path().join("setda.toml"),
        format!("operator = \"1001\"\n{setda}"),
    )
    .unwrap();
    std::fs::write(dir.path().join("diskominfo.toml"), diskominfo).unwrap();
    let errors = errors_of(&dir);
    assert_error(
        &errors,
        "setda.toml",
        1,
        "only one OPD may have the operator",
    );
}
