//! The budget core on simulated time: billing, the 80 % and 100 % crossings (each once a
//! month), extension budgets, the WIB month rollover, seeding from the store, and emergency
//! and unanswered calls never counting.

use std::path::{Path, PathBuf};

use std::time::{Duration, Instant};

use super::*;
use crate::cdr::Disposition;

const PROVINCE: &str = r#"
[trunk]
target = "127.0.0.1:5090"
transport = "udp"

[outside]
prefix = "9"
[[outside.class]]
pattern = "_NXXXXXX"
class = "local"
prepend = "0536"
[[outside.class]]
pattern = "_0536NXXXXXX"
class = "local"
[[outside.class]]
pattern = "_0Z."
class = "national"
[[outside.class]]
pattern = "_08."
class = "mobile"

[emergency]
numbers = ["112", "110"]

[permissions]
default = ["internal", "local"]

[[rate]]
class = "local"
rupiah_per_minute = 200
[[rate]]
class = "national"
rupiah_per_minute = 500
setup_rupiah = 100
[[rate]]
class = "mobile"
rupiah_per_minute = 1000
"#;

const SETDA: &str = r#"
code = "setda"
name = "Sekretariat Daerah"
blocks = ["1000-1199"]

[permissions]
allow = ["internal", "local", "national", "mobile"]

[budget]
minutes = 10

[[budget.extension]]
extensions = ["1001", "1100-1199"]
minutes = 3
"#;

const DINKES: &str = r#"
code = "dinkes"
name = "Dinas Kesehatan"
blocks = ["2000-2099"]

[permissions]
allow = ["internal", "local", "mobile"]

[budget]
rupiah = 5000
"#;

fn plan() -> Dialplan {
    let dir = Path::new("/plan");
    let files = vec![
        (PathBuf::from("/plan/province.toml"), PROVINCE.to_owned()),
        (PathBuf::from("/plan/setda.toml"), SETDA.to_owned()),
        (PathBuf::from("/plan/dinkes.toml"), DINKES.to_owned()),
    ];
    Dialplan::from_sources(dir, files).unwrap_or_else(|e| panic!("test plan:\n{e}"))
}

fn ext(s: &str) -> Extension {
    s.parse().unwrap()
}

fn opd(s: &str) -> OpdCode {
    s.parse().unwrap()
}

/// 2026-12-03 10:00 WIB.
const DEC_3: i64 = 1_796_266_800_000;
const MINUTE: i64 = 60_000;

fn call(caller: &str, code: &str, class: NumberClass, talk_ms: i64, end_ms: i64) -> BilledCall {
    BilledCall {
        caller: ext(caller),
        opd: Some(opd(code)),
        class,
        talk_ms,
        end_ms,
    }
}

/// An instant for tests without calls in progress (where it does not matter).
fn t0() -> Instant {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

const SEC: Duration = Duration::from_secs(1);

fn view<'a>(views: &'a [BudgetView], code: &str) -> &'a BudgetView {
    views.iter().find(|v| v.opd.as_str() == code).unwrap()
}

#[test]
fn the_wib_month_starts_at_midnight_of_the_first() {
    assert_eq!(Month::of_unix_ms(DEC_3).to_string(), "2026-12");
    let jan = Month {
        year: 2027,
        month: 1,
    };
    // 2027-01-01 00:00 WIB is 2026-12-31 17:00 UTC.
    assert_eq!(jan.start_unix_ms(), 1_798_736_400_000);
    assert_eq!(Month::of_unix_ms(jan.start_unix_ms()), jan);
    assert_eq!(
        Month::of_unix_ms(jan.start_unix_ms() - 1),
        Month {
            year: 2026,
            month: 12
        }
    );
}

#[test]
fn minutes_are_billed_per_started_minute_and_refused_at_the_limit() {
    let plan = plan();
    let mut b = Budgets::default();
    // 1050 is not in an extension budget: only the OPD's 10 minutes apply.
    let a = call("1050", "setda", NumberClass::Mobile, 4 * MINUTE + 1, DEC_3);
    assert!(b.handle_call(&a, &plan).is_empty()); // 5 minutes: 50 %
    let v = b.report(&plan, t0(), DEC_3);
    let setda = view(&v, "setda");
    assert_eq!(
        (setda.used, setda.limit, setda.state),
        (5, 10, BudgetState::Ok)
    );
    assert_eq!(setda.unit, BudgetUnit::Minutes);
    assert_eq!(setda.month, "2026-12");
    assert!(b
        .admit(&ext("1050"), Some(&opd("setda")), &plan, t0(), DEC_3)
        .is_ok());

    let n = b.handle_call(
        &call("1050", "setda", NumberClass::Local, 3 * MINUTE, DEC_3),
        &plan,
    );
    assert!(
        matches!(&n[..], [Notice::Warning(s)] if s.used == 8),
        "{n:?}"
    );
    let n = b.handle_call(
        &call("1050", "setda", NumberClass::Local, 1000, DEC_3),
        &plan,
    );
    assert!(n.is_empty(), "80 % is announced once: {n:?}");
    assert_eq!(
        view(&b.report(&plan, t0(), DEC_3), "setda").state,
        BudgetState::Warning
    );

    let n = b.handle_call(
        &call("1050", "setda", NumberClass::Local, 1000, DEC_3),
        &plan,
    );
    assert!(
        matches!(&n[..], [Notice::Exhausted(s)] if s.used == 10),
        "{n:?}"
    );
    let refused = b
        .admit(&ext("1050"), Some(&opd("setda")), &plan, t0(), DEC_3)
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "monthly budget of OPD 'setda' used up: 10 of 10 minutes"
    );
    let v = b.report(&plan, t0(), DEC_3);
    assert_eq!(view(&v, "setda").state, BudgetState::Exhausted);
    assert_eq!(view(&v, "setda").refused, 1);
    assert_eq!(b.refused_total().get(&opd("setda")), Some(&1));
    // Another OPD is not affected.
    assert!(b
        .admit(&ext("2001"), Some(&opd("dinkes")), &plan, t0(), DEC_3)
        .is_ok());
}

#[test]
fn an_extension_budget_refuses_that_extension_and_still_counts_for_the_opd() {
    let plan = plan();
    let mut b = Budgets::default();
    let n = b.handle_call(
        &call("1105", "setda", NumberClass::Local, 3 * MINUTE, DEC_3),
        &plan,
    );
    assert!(
        matches!(&n[..], [Notice::Exhausted(s)] if s.holder == Holder::Extension(ext("1105"), opd("setda"))),
        "{n:?}"
    );
    let refused = b
        .admit(&ext("1105"), Some(&opd("setda")), &plan, t0(), DEC_3)
        .unwrap_err();
    assert_eq!(
        refused.to_string(),
        "monthly budget of extension 1105 (OPD 'setda') used up: 3 of 3 minutes"
    );
    // Its neighbour in the same extension budget has its own 3 minutes; 1050 has none.
    assert!(b
        .admit(&ext("1106"), Some(&opd("setda")), &plan, t0(), DEC_3)
        .is_ok());
    assert!(b
        .admit(&ext("1050"), Some(&opd("setda")), &plan, t0(), DEC_3)
        .is_ok());
    let v = b.report(&plan, t0(), DEC_3);
    let setda = view(&v, "setda");
    assert_eq!(
        setda.used, 3,
        "the OPD's total includes the extension's calls"
    );
    assert_eq!(setda.extensions.len(), 1);
    assert_eq!(setda.extensions[0].extension, ext("1105"));
    assert_eq!(setda.extensions[0].state, BudgetState::Exhausted);
}

#[test]
fn rupiah_use_the_rates_of_the_class_and_the_setup_charge() {
    let plan = plan();
    assert_eq!(
        plan.charge_of(NumberClass::National, 90_000).rupiah,
        100 + 2 * 500
    );
    let mut b = Budgets::default();
    // Mobile, 2 min 30 s: 3 × 1000.
    b.handle_call(
        &call("2001", "dinkes", NumberClass::Mobile, 150_000, DEC_3),
        &plan,
    );
    let v = b.report(&plan, t0(), DEC_3);
    let dinkes = view(&v, "dinkes");
    assert_eq!(
        (dinkes.used, dinkes.limit, dinkes.unit),
        (3000, 5000, BudgetUnit::Rupiah)
    );
    let n = b.handle_call(
        &call("2001", "dinkes", NumberClass::Local, 5 * MINUTE, DEC_3),
        &plan,
    );
    assert!(
        matches!(&n[..], [Notice::Warning(s)] if s.used == 4000),
        "{n:?}"
    );
}

#[test]
fn the_month_rolls_over_at_wib_midnight_of_the_first() {
    let plan = plan();
    let mut b = Budgets::default();
    let jan = Month {
        year: 2027,
        month: 1,
    }
    .start_unix_ms();
    let before = jan - 1;
    b.handle_call(
        &call("1050", "setda", NumberClass::Local, 10 * MINUTE, before),
        &plan,
    );
    assert!(b
        .admit(&ext("1050"), Some(&opd("setda")), &plan, t0(), before)
        .is_err());
    // One millisecond later it is January in WIB (still December 31 in UTC).
    assert!(b
        .admit(&ext("1050"), Some(&opd("setda")), &plan, t0(), jan)
        .is_ok());
    let v = b.report(&plan, t0(), jan);
    assert_eq!(
        (view(&v, "setda").used, view(&v, "setda").month.as_str()),
        (0, "2027-01")
    );
    assert_eq!(view(&v, "setda").refused, 0);
    // The new month warns again.
    let n = b.handle_call(
        &call("1050", "setda", NumberClass::Local, 8 * MINUTE, jan + 1),
        &plan,
    );
    assert!(matches!(&n[..], [Notice::Warning(_)]), "{n:?}");
    // A late call that ended in December counts nowhere.
    let n = b.handle_call(
        &call("1050", "setda", NumberClass::Local, MINUTE, before),
        &plan,
    );
    assert!(n.is_empty());
    assert_eq!(view(&b.report(&plan, t0(), jan + 2), "setda").used, 8);
}

fn record(caller: &str, code: &str, route: &str, answer: Option<i64>, end: i64) -> CdrRecord {
    CdrRecord {
        call_id: "c".into(),
        caller: caller.into(),
        dialled: "9".into(),
        callee: None,
        caller_opd: Some(opd(code)),
        callee_opd: None,
        route: route.into(),
        trunk: !route.starts_with("blocked"),
        start_ms: end - 600_000,
        answer_ms: answer,
        end_ms: end,
        disposition: if answer.is_some() {
            Disposition::Answered
        } else {
            Disposition::NoAnswer
        },
        sip_status: 200,
        media: None,
    }
}

#[test]
fn only_answered_non_emergency_trunk_calls_are_billed() {
    let plan = plan();
    let billed = |r: &CdrRecord| BilledCall::from_record(r, &plan);
    let end = DEC_3;
    let answered = record(
        "1050",
        "setda",
        "trunk 081234567890",
        Some(end - 61_000),
        end,
    );
    let c = billed(&answered).unwrap();
    assert_eq!((c.class, c.talk_ms), (NumberClass::Mobile, 61_000));
    // The local class is found again through its prepend (0536 + 7 digits).
    let local = record("1050", "setda", "trunk 05363231110", Some(end - 1), end);
    assert_eq!(billed(&local).unwrap().class, NumberClass::Local);
    let emergency = record("1050", "setda", "trunk (emergency) 112", Some(end - 1), end);
    assert_eq!(billed(&emergency), None);
    let unanswered = record("1050", "setda", "trunk 081234567890", None, end);
    assert_eq!(billed(&unanswered), None);
    let blocked = record(
        "1050",
        "setda",
        "blocked (monthly-budget): trunk 0812",
        None,
        end,
    );
    assert_eq!(billed(&blocked), None);
    let internal = record("1050", "setda", "extension 1001", Some(end - 1), end);
    assert_eq!(billed(&internal), None);
}

#[test]
fn seeding_from_the_store_counts_this_month_silently() {
    let plan = plan();
    let mut b = Budgets::default();
    let now = DEC_3;
    let last_month = Month {
        year: 2026,
        month: 12,
    }
    .start_unix_ms()
        - 1;
    // Eight minutes this month (80 %), five last month.
    b.seed(
        &call("1050", "setda", NumberClass::Local, 8 * MINUTE, now - 1000),
        &plan,
        now,
    );
    b.seed(
        &call("1050", "setda", NumberClass::Local, 5 * MINUTE, last_month),
        &plan,
        now,
    );
    let v = b.report(&plan, t0(), now);
    assert_eq!(
        (view(&v, "setda").used, view(&v, "setda").state),
        (8, BudgetState::Warning)
    );
    // Already past 80 % before the restart: the next call does not warn again, 100 % does.
    let n = b.handle_call(&call("1050", "setda", NumberClass::Local, 1000, now), &plan);
    assert!(n.is_empty(), "{n:?}");
    let n = b.handle_call(
        &call("1050", "setda", NumberClass::Local, MINUTE, now),
        &plan,
    );
    assert!(matches!(&n[..], [Notice::Exhausted(_)]), "{n:?}");
}

#[test]
fn an_opd_without_a_budget_is_never_refused_nor_listed() {
    let plan = plan();
    let mut b = Budgets::default();
    b.handle_call(
        &call("1050", "bkd", NumberClass::Local, 600 * MINUTE, DEC_3),
        &plan,
    );
    assert!(b
        .admit(&ext("1050"), Some(&opd("bkd")), &plan, t0(), DEC_3)
        .is_ok());
    assert!(b.admit(&ext("1050"), None, &plan, t0(), DEC_3).is_ok());
    let codes: Vec<String> = b
        .report(&plan, t0(), DEC_3)
        .iter()
        .map(|v| v.opd.to_string())
        .collect();
    assert_eq!(codes, ["dinkes", "setda"]);
}

#[test]
fn a_call_in_progress_is_ended_before_a_minute_its_budget_cannot_pay_for() {
    let plan = plan();
    let mut b = Budgets::default();
    let setda = opd("setda");
    // Eight of ten minutes used by ended calls.
    b.handle_call(
        &call("1050", "setda", NumberClass::Local, 8 * MINUTE, DEC_3),
        &plan,
    );
    let t = t0();
    let answered = call("1050", "setda", NumberClass::Mobile, 0, DEC_3);
    b.handle_answered("c1", answered, t);
    // Checked a second before its second minute: 8 + 2 = 10 fits.
    assert_eq!(b.poll_timeout(&plan), Some(t + 59 * SEC));
    assert!(
        b.poll_cut(&plan, t + 30 * SEC, DEC_3).is_empty(),
        "not due yet"
    );
    // In its first minute it already counts: 9 of 10, another call may start.
    assert_eq!(view(&b.report(&plan, t + 30 * SEC, DEC_3), "setda").used, 9);
    assert!(b
        .admit(&ext("1051"), Some(&setda), &plan, t + 30 * SEC, DEC_3)
        .is_ok());
    assert!(b.poll_cut(&plan, t + 59 * SEC, DEC_3).is_empty());
    // In its second minute the budget is at 10 of 10: new calls are refused.
    assert_eq!(b.poll_timeout(&plan), Some(t + 119 * SEC));
    let refused = b.admit(&ext("1051"), Some(&setda), &plan, t + 61 * SEC, DEC_3);
    assert_eq!(
        refused.unwrap_err().to_string(),
        "monthly budget of OPD 'setda' used up: 10 of 10 minutes"
    );
    // A third minute would make 11: the call is ended a second before it starts.
    let cut = b.poll_cut(&plan, t + 119 * SEC, DEC_3);
    assert_eq!(cut.len(), 1, "{cut:?}");
    assert_eq!(cut[0].0, "c1");
    assert_eq!(
        cut[0].1.to_string(),
        "monthly budget of OPD 'setda' used up: 10 of 10 minutes"
    );
    assert_eq!(
        b.poll_timeout(&plan),
        None,
        "a call being ended is not checked again"
    );
    assert!(b.poll_cut(&plan, t + 200 * SEC, DEC_3).is_empty());
    // Its record ends it: two billed minutes (119 s), the month at exactly 10.
    b.handle_ended("c1");
    b.handle_call(
        &call("1050", "setda", NumberClass::Mobile, 119_000, DEC_3),
        &plan,
    );
    assert_eq!(
        view(&b.report(&plan, t + 200 * SEC, DEC_3), "setda").used,
        10
    );
}

#[test]
fn calls_in_progress_share_their_budget_and_an_extension_budget_ends_its_own() {
    let plan = plan();
    let mut b = Budgets::default();
    let t = t0();
    // 1105 has 3 minutes of its own (and setda 10 in all).
    b.handle_answered("a", call("1105", "setda", NumberClass::Local, 0, DEC_3), t);
    assert!(b.poll_cut(&plan, t + 59 * SEC, DEC_3).is_empty()); // 2 of 3
    assert!(b.poll_cut(&plan, t + 119 * SEC, DEC_3).is_empty()); // 3 of 3
    let cut = b.poll_cut(&plan, t + 179 * SEC, DEC_3);
    assert_eq!(cut.len(), 1);
    assert_eq!(
        cut[0].1.to_string(),
        "monthly budget of extension 1105 (OPD 'setda') used up: 3 of 3 minutes"
    );
    b.handle_ended("a");
    b.handle_call(
        &call("1105", "setda", NumberClass::Local, 179_000, DEC_3),
        &plan,
    );

    // Two calls of setda at once with 7 minutes left (3 used): the one due first takes the
    // minute, the other is ended when setda's total would go over.
    let t = t + 300 * SEC;
    b.handle_answered("x", call("1050", "setda", NumberClass::Local, 0, DEC_3), t);
    b.handle_answered(
        "y",
        call("1051", "setda", NumberClass::Local, 0, DEC_3),
        t + SEC,
    );
    // Each check counts the minutes the others were let into: x 2 + y 1 → 3 + 3 = 6, y 2 + 2
    // → 7, x 3 → 8, y 3 → 9, x 4 → 10; y's fourth would make 11: ended; x's fifth too.
    let mut cuts = Vec::new();
    for minute in 1..=4u32 {
        for (id, offset) in [("x", 0), ("y", 1)] {
            let at = t + 60 * SEC * minute - SEC + offset * SEC;
            for (cut, _) in b.poll_cut(&plan, at, DEC_3) {
                cuts.push((cut, minute, id));
            }
        }
    }
    assert_eq!(
        cuts,
        [("y".to_owned(), 3, "y"), ("x".to_owned(), 4, "x")],
        "{cuts:?}"
    );
    // Billed as they were ended: y 179 s (3), x 239 s (4): setda at exactly 10.
    for (id, caller, talk) in [("y", "1051", 179_000), ("x", "1050", 239_000)] {
        b.handle_ended(id);
        b.handle_call(
            &call(caller, "setda", NumberClass::Local, talk, DEC_3),
            &plan,
        );
    }
    assert_eq!(
        view(&b.report(&plan, t + 300 * SEC, DEC_3), "setda").used,
        10
    );
}

#[test]
fn calls_of_opds_without_a_budget_are_never_checked() {
    let plan = plan();
    let mut b = Budgets::default();
    b.handle_answered("c", call("1050", "bkd", NumberClass::Local, 0, DEC_3), t0());
    assert_eq!(b.poll_timeout(&plan), None);
    assert!(b.poll_cut(&plan, t0() + 3600 * SEC, DEC_3).is_empty());
}
