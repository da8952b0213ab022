//! Evaluator tests on the shipped plans (and one small plan for the `trunk` target), with a
//! directory in memory and fixed times.

use std::collections::BTreeMap;
use std::path::Path;

use tempfile::TempDir;

use super::*;
use crate::dialplan::TraceStep;

/// Mon 2025-03-03 09:00 WIB: office hours.
const MON_0900: i64 = 1_740_967_200;
/// Mon 2025-03-03 20:00 WIB: after office hours.
const MON_2000: i64 = MON_0900 + 11 * 3600;

fn shipped() -> Dialplan {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplan");
    Dialplan::load_dir(&dir).unwrap_or_else(|e| panic!("shipped dialplan fails to load:\n{e}"))
}

/// A `province.toml` without its `[[room]]` tables (the shipped ones name shipped OPDs, which
/// a small directory does not have).
fn without_rooms(province: &str) -> &str {
    let end = province
        .find("\n[[room]]")
        .expect("the shipped plan has rooms");
    &province[..=end]
}

fn ext(s: &str) -> Extension {
    s.parse().unwrap()
}

/// Every extension is assigned except `unassigned`; features per extension.
#[derive(Default)]
struct Dir {
    unassigned: Vec<&'static str>,
    features: BTreeMap<&'static str, Features>,
}

impl Dir {
    fn with(mut self, e: &'static str, f: Features) -> Dir {
        self.features.insert(e, f);
        self
    }
}

impl Directory for Dir {
    fn is_assigned(&self, ext: &Extension) -> bool {
        !self.unassigned.contains(&ext.as_str())
    }
    fn features(&self, ext: &Extension) -> Features {
        self.features.get(ext.as_str()).cloned().unwrap_or_default()
    }
}

fn route_at(plan: &Dialplan, from: &str, dialled: &str, now: i64, dir: &Dir) -> Routing {
    plan.route(&ext(from), dialled, now, dir)
}

fn route(plan: &Dialplan, from: &str, dialled: &str) -> Decision {
    route_at(plan, from, dialled, MON_0900, &Dir::default()).decision
}

fn ring(exts: &[&str]) -> Vec<Extension> {
    exts.iter().map(|e| ext(e)).collect()
}

fn rung(d: &Decision) -> Vec<Extension> {
    match d {
        Decision::Ring(plan) => plan.members.iter().map(|m| m.extension.clone()).collect(),
        other => panic!("expected ring, got {other:?}"),
    }
}

fn status(d: &Decision) -> u16 {
    match d {
        Decision::Reject { status, .. } => *status,
        other => panic!("expected reject, got {other:?}"),
    }
}

fn trunk(number: &str, class: NumberClass) -> Decision {
    Decision::Trunk {
        number: number.into(),
        class,
        emergency: class == NumberClass::Emergency,
    }
}

/// The trace as text, with the dialplan directory shown as `dialplan/`.
fn lines(r: &Routing) -> Vec<String> {
    let root = format!("{}/", env!("CARGO_MANIFEST_DIR"));
    r.trace
        .iter()
        .map(TraceStep::to_string)
        .map(|l| l.replace(&root, ""))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Rule kinds.

#[test]
fn extension_call() {
    let plan = shipped();
    let d = route(&plan, "1205", "2301");
    assert_eq!(
        d,
        Decision::Ring(RingPlan {
            strategy: Strategy::Parallel {
                timeout_secs: PLAIN_RING_SECS
            },
            members: vec![RingTarget {
                extension: ext("2301"),
                forward_busy: None,
                forward_no_answer: None,
            }],
            group: None,
        })
    );
    assert_eq!(d.to_string(), "ring 2301");
}

#[test]
fn rule_to_extension_short_code_reaches_own_reception() {
    let plan = shipped();
    assert_eq!(rung(&route(&plan, "2301", "0")), ring(&["2300"]));
    assert_eq!(rung(&route(&plan, "3501", "0")), ring(&["3500"]));
    assert_eq!(rung(&route(&plan, "5250", "0")), ring(&["5100"]));
    for opd in plan.opds() {
        let first = opd.blocks[0].first;
        let caller = (first + 1).to_string();
        let reception = opd.reception.clone().unwrap();
        assert_eq!(
            rung(&route(&plan, &caller, "0")),
            vec![reception],
            "{}",
            opd.code
        );
    }
}

#[test]
fn parallel_group() {
    let plan = shipped();
    let d = route(&plan, "3501", "3550");
    let Decision::Ring(p) = &d else {
        panic!("{d:?}")
    };
    assert_eq!(p.group.as_deref(), Some("helpdesk"));
    assert_eq!(p.strategy, Strategy::Parallel { timeout_secs: 30 });
    assert_eq!(rung(&d), ring(&["3551", "3552", "3553", "3554"]));
    // From another OPD too: a number in diskominfo's block follows diskominfo's rules, so
    // every office reaches the helpdesk group on 3550.
    assert_eq!(
        rung(&route(&plan, "2301", "3550")),
        ring(&["3551", "3552", "3553", "3554"])
    );
}

#[test]
fn sequential_group() {
    let plan = shipped();
    let d = route(&plan, "5101", "5110");
    let Decision::Ring(p) = &d else {
        panic!("{d:?}")
    };
    assert_eq!(p.group.as_deref(), Some("igd"));
    assert_eq!(
        p.strategy,
        Strategy::Sequential {
            member_timeout_secs: 15
        }
    );
    assert_eq!(rung(&d), ring(&["5111", "5112", "5113"]));
}

#[test]
fn group_skips_unavailable_members_and_480_when_none_is_left() {
    let plan = shipped();
    let dnd = Features {
        dnd: true,
        ..Features::default()
    };
    let dir = Dir {
        unassigned: vec!["3552"],
        ..Dir::default()
    }
    .with("3553", dnd.clone());
    let d = route_at(&plan, "3501", "3550", MON_0900, &dir).decision;
    assert_eq!(rung(&d), ring(&["3551", "3554"]));

    let dir = Dir {
        unassigned: vec!["3551", "3552"],
        ..Dir::default()
    }
    .with("3553", dnd.clone())
    .with("3554", dnd);
    let r = route_at(&plan, "3501", "3550", MON_0900, &dir);
    assert_eq!(status(&r.decision), 480);
    assert!(lines(&r).iter().any(|l| l.contains("no member can ring")));
}

#[test]
fn group_members_forwards_are_not_followed() {
    let plan = shipped();
    let fwd = Features {
        forward_always: Some("2300".into()),
        forward_busy: Some("2301".into()),
        ..Features::default()
    };
    let dir = Dir::default().with("3551", fwd);
    let d = route_at(&plan, "3501", "3550", MON_0900, &dir).decision;
    let Decision::Ring(p) = d else { panic!() };
    assert_eq!(p.members[0].extension, ext("3551"));
    assert_eq!(p.members[0].forward_busy, None);
}

#[test]
fn alias_and_reject() {
    let plan = shipped();
    // 3599 is an alias of 3550, the helpdesk group.
    assert_eq!(
        rung(&route(&plan, "3501", "3599")),
        ring(&["3551", "3552", "3553", "3554"])
    );
    // The rest of _359X is reserved.
    assert_eq!(
        route(&plan, "3501", "3591"),
        Decision::Reject {
            status: 404,
            reason: "Nomor belum digunakan".into()
        }
    );
}

const LAB: &str = r#"code = "lab"
name = "Laboratorium"
blocks = ["6000-6099"]
reception = "6000"

[[rule]]
pattern = "0"
to = { extension = "6000" }

[[rule]]
pattern = "_08."
to = { trunk = true }

[[rule]]
pattern = "_7XX"
to = { trunk = true }

[[rule]]
pattern = "600"
to = { alias = "500" }

[[rule]]
pattern = "500"
to = { alias = "600" }

[[rule]]
pattern = "444"
to = { reject = 603 }

[permissions]
allow = ["internal", "local", "mobile"]

[[permissions.override]]
extensions = ["6050"]
allow = ["internal"]
"#;

fn lab() -> (TempDir, Dialplan) {
    let dir = TempDir::new().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplan");
    let province = std::fs::read_to_string(root.join("province.toml")).unwrap();
    std::fs::write(dir.path().join("province.toml"), without_rooms(&province)).unwrap();
    std::fs::write(dir.path().join("lab.toml"), LAB).unwrap();
    let plan = Dialplan::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, plan)
}

#[test]
fn trunk_target_sends_the_number_unchanged_with_permission_checks() {
    let (_dir, plan) = lab();
    assert_eq!(
        route(&plan, "6001", "0812345678"),
        trunk("0812345678", NumberClass::Mobile)
    );
    // 6050 may dial only extensions.
    let r = route_at(&plan, "6050", "0812345678", MON_0900, &Dir::default());
    assert_eq!(status(&r.decision), 403);
    assert!(
        lines(&r).iter().any(|l| l.contains(
            "lab.toml:34: class mobile is not allowed for 6050 (the override for 6050 allows: internal)"
        )),
        "{:#?}",
        lines(&r)
    );
    // A number no class covers cannot be permitted.
    assert_eq!(status(&route(&plan, "6001", "700")), 403);
}

#[test]
fn reject_without_reason_gets_the_standard_phrase() {
    let (_dir, plan) = lab();
    assert_eq!(
        route(&plan, "6001", "444"),
        Decision::Reject {
            status: 603,
            reason: "Decline".into()
        }
    );
}

#[test]
fn alias_loop_is_482() {
    let (_dir, plan) = lab();
    let r = route_at(&plan, "6001", "600", MON_0900, &Dir::default());
    assert_eq!(status(&r.decision), 482, "{:#?}", lines(&r));
}

// ---------------------------------------------------------------------------------------------
// Time rules.

#[test]
fn zero_after_office_hours_rings_the_security_desk() {
    let plan = shipped();
    let dir = Dir::default();
    let at = |from, now| rung(&route_at(&plan, from, "0", now, &dir).decision);
    assert_eq!(at("2301", MON_0900), ring(&["2300"]));
    assert_eq!(at("2301", MON_2000), ring(&["2399"]));
    assert_eq!(at("1010", MON_0900), ring(&["1000"]));
    assert_eq!(at("1010", MON_2000), ring(&["1190"]));
    // Saturday 10:00 WIB is outside office hours; Friday 16:15 is inside (Fri ends 16:30).
    assert_eq!(at("1010", MON_0900 + 5 * 86_400 + 3600), ring(&["1190"]));
    assert_eq!(
        at("1010", MON_0900 + 4 * 86_400 + 7 * 3600 + 900),
        ring(&["1000"])
    );
    // The end of the range is exclusive: Monday 16:00 is after hours.
    assert_eq!(at("1010", MON_0900 + 7 * 3600), ring(&["1190"]));
    // OPDs without a time rule: always the reception.
    assert_eq!(at("3501", MON_2000), ring(&["3500"]));
}

// ---------------------------------------------------------------------------------------------
// Emergency and permissions.

#[test]
fn emergency_from_every_opd_whatever_the_permissions() {
    let plan = shipped();
    for opd in plan.opds() {
        for b in &opd.blocks {
            let caller = b.last.to_string();
            for n in ["112", "110", "113", "115", "118", "119"] {
                assert_eq!(
                    route(&plan, &caller, n),
                    trunk(n, NumberClass::Emergency),
                    "{} {caller}",
                    opd.code
                );
                // With the outside prefix too, as people dial out of habit.
                assert_eq!(
                    route(&plan, &caller, &format!("9{n}")),
                    trunk(n, NumberClass::Emergency)
                );
            }
        }
    }
    // Even from an extension outside every OPD, or one forwarding to it.
    assert_eq!(
        route(&plan, "8000", "112"),
        trunk("112", NumberClass::Emergency)
    );
}

#[test]
fn national_denied_for_a_local_only_opd() {
    let plan = shipped();
    let r = route_at(&plan, "1205", "90511234567", MON_0900, &Dir::default());
    assert_eq!(
        r.decision,
        Decision::Reject {
            status: 403,
            reason: "Forbidden: national numbers not allowed".into()
        }
    );
    assert!(lines(&r).contains(
        &"dialplan/setwan.toml: class national is not allowed for 1205 (setwan allows: \
          internal, local), so 0511234567 is refused"
            .to_string()
    ));
    // Local is fine, with 0536 put in front of a 7-digit number.
    assert_eq!(
        route(&plan, "1205", "93221234"),
        trunk("05363221234", NumberClass::Local)
    );
    assert_eq!(
        route(&plan, "1205", "905363221234"),
        trunk("05363221234", NumberClass::Local)
    );
    assert_eq!(status(&route(&plan, "1205", "90812345678")), 403, "mobile");
}

#[test]
fn national_allowed_for_setda_and_diskominfo() {
    let plan = shipped();
    for caller in ["1010", "3501"] {
        assert_eq!(
            route(&plan, caller, "90511234567"),
            trunk("0511234567", NumberClass::National)
        );
        assert_eq!(
            route(&plan, caller, "90812345678"),
            trunk("0812345678", NumberClass::Mobile)
        );
    }
}

#[test]
fn international_denied_unless_an_override_grants_it() {
    let plan = shipped();
    assert_eq!(status(&route(&plan, "1010", "900441234567")), 403);
    assert_eq!(status(&route(&plan, "3501", "9+441234567")), 403);
    assert_eq!(
        route(&plan, "1001", "900441234567"),
        trunk("00441234567", NumberClass::International)
    );
    assert_eq!(
        route(&plan, "1009", "9+441234567"),
        trunk("+441234567", NumberClass::International)
    );
}

#[test]
fn unclassified_outside_number_is_404() {
    let plan = shipped();
    assert_eq!(status(&route(&plan, "1010", "91234")), 404);
}

#[test]
fn caller_outside_every_opd_gets_emergency_and_extensions_only() {
    let plan = shipped();
    assert_eq!(rung(&route(&plan, "8000", "2301")), ring(&["2301"]));
    assert_eq!(status(&route(&plan, "8000", "0")), 403);
    assert_eq!(status(&route(&plan, "8000", "93221234")), 403);
    assert_eq!(status(&route(&plan, "8000", "*78")), 403);
}

// ---------------------------------------------------------------------------------------------
// Directory: unassigned, DND, forwarding, feature codes.

#[test]
fn unknown_and_unassigned_numbers_are_404() {
    let plan = shipped();
    let dir = Dir {
        unassigned: vec!["2301"],
        ..Dir::default()
    };
    let r = route_at(&plan, "1205", "2301", MON_0900, &dir);
    assert_eq!(
        r.decision,
        Decision::Reject {
            status: 404,
            reason: "Not Found".into()
        }
    );
    assert!(lines(&r).iter().any(|l| l.contains("2301 is not assigned")));
    // In no block, no rule, no prefix.
    assert_eq!(status(&route(&plan, "1205", "7777")), 404);
    assert_eq!(status(&route(&plan, "1205", "")), 404);
}

#[test]
fn dnd_is_486() {
    let plan = shipped();
    let dir = Dir::default().with(
        "2301",
        Features {
            dnd: true,
            ..Features::default()
        },
    );
    assert_eq!(
        route_at(&plan, "1205", "2301", MON_0900, &dir).decision,
        Decision::Reject {
            status: 486,
            reason: "Do Not Disturb".into()
        }
    );
}

#[test]
fn busy_and_no_answer_forwards_travel_with_the_ring_target() {
    let plan = shipped();
    let dir = Dir::default().with(
        "2301",
        Features {
            forward_busy: Some("2302".into()),
            forward_no_answer: Some(("2300".into(), 20)),
            ..Features::default()
        },
    );
    let Decision::Ring(p) = route_at(&plan, "1205", "2301", MON_0900, &dir).decision else {
        panic!()
    };
    assert_eq!(p.members[0].forward_busy.as_deref(), Some("2302"));
    assert_eq!(p.members[0].forward_no_answer, Some(("2300".into(), 20)));
}

fn forward_to(to: &str) -> Features {
    Features {
        forward_always: Some(to.into()),
        ..Features::default()
    }
}

#[test]
fn forward_always_reaches_the_target() {
    let plan = shipped();
    let dir = Dir::default().with("2301", forward_to("3551"));
    assert_eq!(
        rung(&route_at(&plan, "1205", "2301", MON_0900, &dir).decision),
        ring(&["3551"])
    );
    // Chains are followed.
    let dir = dir.with("3551", forward_to("5111"));
    assert_eq!(
        rung(&route_at(&plan, "1205", "2301", MON_0900, &dir).decision),
        ring(&["5111"])
    );
}

#[test]
fn forward_uses_the_forwarding_extensions_permissions() {
    let plan = shipped();
    // Setda may dial national numbers, dinkes may not: a setda caller cannot use a dinkes
    // phone's forward to reach a national number, and the reverse works.
    let dir = Dir::default()
        .with("2301", forward_to("90511234567"))
        .with("1010", forward_to("90511234567"));
    assert_eq!(
        status(&route_at(&plan, "1010", "2301", MON_0900, &dir).decision),
        403
    );
    assert_eq!(
        route_at(&plan, "2301", "1010", MON_0900, &dir).decision,
        trunk("0511234567", NumberClass::National)
    );
    // A forward to the short code 0 reaches the forwarding extension's reception.
    let dir = Dir::default().with("2301", forward_to("0"));
    assert_eq!(
        rung(&route_at(&plan, "1010", "2301", MON_0900, &dir).decision),
        ring(&["2300"])
    );
}

#[test]
fn routing_names_who_the_trunk_call_is_charged_to_and_the_class_denied() {
    let plan = shipped();
    let dir = Dir::default()
        .with("2301", forward_to("90511234567"))
        .with("1010", forward_to("90511234567"));
    // 2301 calls setda's 1010, which forwards to a national number: charged to 1010.
    let r = route_at(&plan, "2301", "1010", MON_0900, &dir);
    assert_eq!(r.trunk_caller, Some(ext("1010")));
    assert_eq!(r.denied, None);
    // 1000 dials it directly: charged to 1000.
    let r = route_at(&plan, "1000", "90511234567", MON_0900, &dir);
    assert_eq!(r.trunk_caller, Some(ext("1000")));
    // Emergency calls are charged to nobody (never limited).
    let r = route_at(&plan, "1000", "112", MON_0900, &dir);
    assert_eq!((r.trunk_caller, r.denied), (None, None));
    // International without a grant: denied, with the class.
    let r = route_at(&plan, "1000", "900441234567", MON_0900, &dir);
    assert_eq!(status(&r.decision), 403);
    assert_eq!(
        (r.trunk_caller, r.denied),
        (None, Some(NumberClass::International))
    );
    // 1001-1009 are granted international.
    let r = route_at(&plan, "1001", "900441234567", MON_0900, &dir);
    assert_eq!(r.decision, trunk("00441234567", NumberClass::International));
    assert_eq!((r.trunk_caller, r.denied), (Some(ext("1001")), None));
    // Through dinkes' forward: denied national for 2301.
    let r = route_at(&plan, "1010", "2301", MON_0900, &dir);
    assert_eq!(r.denied, Some(NumberClass::National));
    // A rule's reject or an unknown number is no permission refusal.
    let r = route_at(&plan, "1000", "3590", MON_0900, &dir);
    assert_eq!((status(&r.decision), r.denied), (404, None));
}

#[test]
fn international_is_denied_in_every_shipped_opd_unless_granted() {
    let plan = shipped();
    let dir = Dir::default();
    let mut checked = 0;
    for opd in plan.opds() {
        let reception = opd
            .reception
            .clone()
            .expect("every shipped OPD has a reception");
        for number in ["900441234567", "9+441234567"] {
            let r = plan.route(&reception, number, MON_0900, &dir);
            assert_eq!(
                (status(&r.decision), r.denied),
                (403, Some(NumberClass::International)),
                "{} ({}) dials {number}",
                reception,
                opd.code
            );
            checked += 1;
        }
    }
    assert!(checked >= 80, "{checked}");
    // The only grant shipped: setda's 1001-1009.
    for e in ["1001", "1009"] {
        assert!(matches!(
            route(&plan, e, "900441234567"),
            Decision::Trunk {
                class: NumberClass::International,
                ..
            }
        ));
    }
    assert_eq!(status(&route(&plan, "1010", "900441234567")), 403);
}

#[test]
fn forward_loop_is_482() {
    let plan = shipped();
    let dir = Dir::default()
        .with("2301", forward_to("2302"))
        .with("2302", forward_to("2301"));
    let r = route_at(&plan, "1205", "2301", MON_0900, &dir);
    assert_eq!(
        r.decision,
        Decision::Reject {
            status: 482,
            reason: "Loop Detected".into()
        }
    );
    // A forward to oneself is a loop too.
    let dir = Dir::default().with("2301", forward_to("2301"));
    assert_eq!(
        status(&route_at(&plan, "1205", "2301", MON_0900, &dir).decision),
        482
    );
    // A long chain without a loop ends at the hop limit.
    let chain = ["2301", "2302", "2303", "2304", "2305", "2306", "2307"];
    let mut dir = Dir::default();
    for w in chain.windows(2) {
        dir = dir.with(w[0], forward_to(w[1]));
    }
    assert_eq!(
        status(&route_at(&plan, "1205", "2301", MON_0900, &dir).decision),
        482
    );
}

#[test]
fn feature_codes() {
    let plan = shipped();
    let f = |d: &str| route(&plan, "2301", d);
    assert_eq!(
        f("*722400"),
        Decision::Feature(FeatureAction::SetForwardAlways("2400".into()))
    );
    assert_eq!(f("*73"), Decision::Feature(FeatureAction::ClearForward));
    assert_eq!(f("*78"), Decision::Feature(FeatureAction::DndOn));
    assert_eq!(f("*79"), Decision::Feature(FeatureAction::DndOff));
    // *72 without a number is no feature code (and nothing else either).
    assert_eq!(status(&f("*72")), 404);
    // Feature codes act on the caller, even one in DND.
    let dir = Dir::default().with(
        "2301",
        Features {
            dnd: true,
            ..Features::default()
        },
    );
    assert_eq!(
        route_at(&plan, "2301", "*79", MON_0900, &dir).decision,
        Decision::Feature(FeatureAction::DndOff)
    );
}

// ---------------------------------------------------------------------------------------------
// Trace output.

#[test]
fn trace_of_a_refused_national_call() {
    let plan = shipped();
    let r = route_at(&plan, "1205", "90511234567", MON_0900, &Dir::default());
    assert_eq!(
        lines(&r),
        [
            "dialplan/setwan.toml: 1205 dials 90511234567: caller is in OPD setwan (Sekretariat DPRD)",
            "dialplan/province.toml: 90511234567 starts with the outside prefix 9: outside number 0511234567",
            "dialplan/province.toml:46: class rule '_0Z.' matches 0511234567: class national",
            "dialplan/setwan.toml: class national is not allowed for 1205 (setwan allows: internal, local), so 0511234567 is refused",
        ]
    );
    assert_eq!(
        r.decision.to_string(),
        "reject 403 Forbidden: national numbers not allowed"
    );
}

#[test]
fn trace_of_zero_after_hours() {
    let plan = shipped();
    let r = route_at(&plan, "2301", "0", MON_2000, &Dir::default());
    assert_eq!(
        lines(&r),
        [
            "dialplan/dinkes.toml: 2301 dials 0: caller is in OPD dinkes (Dinas Kesehatan)",
            "dialplan/dinkes.toml:8: rule '0' matches 0 (the most specific match in dinkes)",
            "dialplan/dinkes.toml:13: Mon 2025-03-03 20:00 WIB is outside office-hours: target extension 2399",
            "ring 2399",
        ]
    );
    assert_eq!(r.decision.to_string(), "ring 2399");
}

#[test]
fn index_finds_block_owners() {
    let plan = shipped();
    for opd in plan.opds() {
        for b in &opd.blocks {
            for n in [b.first, b.last, (b.first + b.last) / 2] {
                let found = plan.opd_of(&ext(&n.to_string())).map(|o| &o.code);
                assert_eq!(found, Some(&opd.code));
            }
        }
    }
    assert_eq!(plan.index.opd_of("999"), None);
    assert_eq!(plan.index.opd_of("5800"), None);
    assert_eq!(plan.index.opd_of("10000"), None);
    assert_eq!(plan.index.opd_of("1x00"), None);
    assert_eq!(plan.index.opd_of(""), None);
    assert_eq!(plan.index.opd_of("12345678901234567890123"), None);
}

// ---------------------------------------------------------------------------------------------
// Conference rooms.

fn room_plan(d: &Decision) -> &RoomPlan {
    match d {
        Decision::Room(plan) => plan,
        other => panic!("expected a room, got {other:?}"),
    }
}

#[test]
fn shipped_rooms() {
    let plan = shipped();
    // 8000: every OPD, no PIN; Diskominfo moderates.
    assert_eq!(
        route(&plan, "1001", "8000"),
        Decision::Room(RoomPlan {
            number: "8000".into(),
            name: "Rapat Koordinasi Provinsi".into(),
            pin: None,
            moderator_pin: None,
            max: 50,
            video_mbps: 150,
            moderator: false,
        })
    );
    assert!(room_plan(&route(&plan, "3501", "8000")).moderator);
    assert!(!room_plan(&route(&plan, "2301", "8000")).moderator);
    assert!(!room_plan(&route(&plan, "5250", "8000")).moderator);

    // 8001: Setda, Diskominfo and Bappedalitbang only, with PINs.
    let leaders = route(&plan, "1001", "8001");
    assert_eq!(
        leaders,
        Decision::Room(RoomPlan {
            number: "8001".into(),
            name: "Rapat Pimpinan".into(),
            pin: Some("2468".into()),
            moderator_pin: Some("1357".into()),
            max: 20,
            video_mbps: 150,
            moderator: false,
        })
    );
    assert_eq!(
        leaders.to_string(),
        "room 8001 'Rapat Pimpinan' (PIN, moderator PIN, at most 20)"
    );
    // No moderators listed: only the moderator PIN makes one.
    assert!(!room_plan(&route(&plan, "3501", "8001")).moderator);
    assert!(!room_plan(&route(&plan, "1401", "8001")).moderator);
    assert_eq!(
        route(&plan, "2301", "8001"),
        Decision::Reject {
            status: 403,
            reason: "Forbidden: OPD dinkes may not join room 8001".into()
        }
    );
    // Not a room: an unassigned number outside every block.
    assert_eq!(status(&route(&plan, "1001", "8002")), 404);
}

#[test]
fn caller_in_no_opd_cannot_join_a_room() {
    let plan = shipped();
    let r = route_at(&plan, "5800", "8000", MON_0900, &Dir::default());
    assert_eq!(
        r.decision,
        Decision::Reject {
            status: 403,
            reason: "Forbidden: 5800 belongs to no OPD and may not join room 8000".into()
        }
    );
    assert!(
        lines(&r)
            .iter()
            .any(|l| l.ends_with("5800 is in no OPD, so it may not join room 8000")),
        "{:#?}",
        lines(&r)
    );
}

#[test]
fn trace_of_room_calls() {
    let plan = shipped();
    let province = std::fs::read_to_string(plan.province().file.clone()).unwrap();
    let line_of = |number: &str| {
        province
            .lines()
            .position(|l| l == format!("number = \"{number}\""))
            .unwrap()
            + 1
    };
    let (l8000, l8001) = (line_of("8000"), line_of("8001"));

    let r = route_at(&plan, "3501", "8000", MON_0900, &Dir::default());
    assert_eq!(
        lines(&r),
        [
            "dialplan/diskominfo.toml: 3501 dials 8000: caller is in OPD diskominfo (Dinas Komunikasi, Informatika, Persandian dan Statistik)".to_owned(),
            format!("dialplan/province.toml:{l8000}: 8000 is the conference room 'Rapat Koordinasi Provinsi' (province room; every OPD may join)"),
            format!("dialplan/province.toml:{l8000}: 3501 (diskominfo) joins room 8000 as a moderator (OPD diskominfo moderates); no PIN; at most 50 participants"),
        ]
    );
    assert_eq!(
        r.decision.to_string(),
        "room 8000 'Rapat Koordinasi Provinsi' (no PIN, at most 50, as a moderator)"
    );

    let r = route_at(&plan, "2301", "8001", MON_0900, &Dir::default());
    assert_eq!(
        lines(&r),
        [
            "dialplan/dinkes.toml: 2301 dials 8001: caller is in OPD dinkes (Dinas Kesehatan)".to_owned(),
            format!("dialplan/province.toml:{l8001}: 8001 is the conference room 'Rapat Pimpinan' (province room; open to setda, diskominfo, bappedalitbang)"),
            format!("dialplan/province.toml:{l8001}: dinkes may not join room 8001, so 2301 is refused"),
        ]
    );
}

/// A small plan with rooms: a province room open in office hours whose moderators are one
/// extension and one OPD, and alpha's night room (on alpha's own schedule) open to alpha and
/// beta, reached also by an alias. Alpha has a rule `_8XXX` that rooms must win over.
fn rooms_lab() -> (TempDir, Dialplan) {
    let dir = TempDir::new().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("dialplan");
    let province = std::fs::read_to_string(root.join("province.toml")).unwrap();
    let province = format!(
        "{}\n[[room]]\nnumber = \"8500\"\nname = \"Rapat Kerja\"\nmoderators = [\"6001\", \"beta\"]\nduring = \"office-hours\"\n",
        without_rooms(&province)
    );
    let alpha = r#"code = "alpha"
name = "Alpha"
blocks = ["6000-6099"]

[[schedule]]
name = "malam"
periods = [{ days = "mon-sun", hours = ["18:00-24:00"] }]

[[rule]]
pattern = "_8XXX"
to = { reject = 404, reason = "Tidak ada" }

[[rule]]
pattern = "77"
to = { alias = "8600" }

[[room]]
number = "8600"
name = "Piket Malam"
opds = ["alpha", "beta"]
moderators = ["beta"]
during = "malam"
"#;
    let files = [
        ("province.toml", province.as_str()),
        ("alpha.toml", alpha),
        (
            "beta.toml",
            "code = \"beta\"\nname = \"Beta\"\nblocks = [\"6100-6199\"]\n",
        ),
        (
            "gamma.toml",
            "code = \"gamma\"\nname = \"Gamma\"\nblocks = [\"6200-6299\"]\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let plan = Dialplan::load_dir(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    (dir, plan)
}

#[test]
fn room_moderators_by_extension_and_by_opd() {
    let (_dir, plan) = rooms_lab();
    let joins = |from: &str, number: &str, now: i64| {
        let r = route_at(&plan, from, number, now, &Dir::default());
        room_plan(&r.decision).moderator
    };
    assert!(joins("6001", "8500", MON_0900), "6001 is listed");
    assert!(!joins("6002", "8500", MON_0900), "only 6001 of alpha");
    assert!(joins("6150", "8500", MON_0900), "all of beta");
    assert!(
        !joins("6201", "8500", MON_0900),
        "gamma may join, not moderate"
    );
    assert!(
        joins("6101", "8600", MON_2000),
        "beta moderates alpha's room"
    );
    assert!(
        !joins("6001", "8600", MON_2000),
        "8600's moderators are beta only"
    );

    let r = route_at(&plan, "6001", "8500", MON_0900, &Dir::default());
    assert!(
        lines(&r).iter().any(|l| l
            .contains("6001 (alpha) joins room 8500 as a moderator (extension 6001 moderates)")),
        "{:#?}",
        lines(&r)
    );
}

#[test]
fn opd_not_among_the_rooms_opds_is_403() {
    let (_dir, plan) = rooms_lab();
    let r = route_at(&plan, "6201", "8600", MON_2000, &Dir::default());
    assert_eq!(
        r.decision,
        Decision::Reject {
            status: 403,
            reason: "Forbidden: OPD gamma may not join room 8600".into()
        }
    );
    assert!(
        lines(&r)
            .iter()
            .any(|l| l.ends_with("alpha.toml:18: 8600 is the conference room 'Piket Malam' (room of OPD alpha; open to alpha, beta)")),
        "{:#?}",
        lines(&r)
    );
    assert_eq!(r.denied, None, "a room refusal is no refused number class");
}

#[test]
fn room_outside_its_time_is_480() {
    let (_dir, plan) = rooms_lab();
    // 8500: during office-hours (province.toml's schedule).
    assert!(matches!(route(&plan, "6201", "8500"), Decision::Room(_)));
    let r = route_at(&plan, "6201", "8500", MON_2000, &Dir::default());
    assert_eq!(
        r.decision,
        Decision::Reject {
            status: 480,
            reason: "Temporarily Unavailable: room 8500 is open only during office-hours".into()
        }
    );
    let l = lines(&r);
    assert!(
        l.last().unwrap().ends_with(
            "Mon 2025-03-03 20:00 WIB is outside office-hours: room 8500 is closed (during office-hours)"
        ),
        "{l:#?}"
    );
    assert!(l.last().unwrap().contains("province.toml:"), "{l:#?}");

    // 8600: during alpha's own schedule 'malam'.
    assert!(matches!(
        route_at(&plan, "6101", "8600", MON_2000, &Dir::default()).decision,
        Decision::Room(_)
    ));
    let r = route_at(&plan, "6101", "8600", MON_0900, &Dir::default());
    assert_eq!(status(&r.decision), 480);
    assert!(
        lines(&r).iter().any(|l| l.ends_with(
            "alpha.toml:22: Mon 2025-03-03 09:00 WIB is outside malam: room 8600 is closed (during malam)"
        )),
        "{:#?}",
        lines(&r)
    );
}

#[test]
fn rooms_come_before_the_callers_rules() {
    let (_dir, plan) = rooms_lab();
    // Alpha's `_8XXX` rule matches 8500 and 8600, but a room number is a room.
    assert!(matches!(route(&plan, "6001", "8500"), Decision::Room(_)));
    assert_eq!(
        route(&plan, "6001", "8501"),
        Decision::Reject {
            status: 404,
            reason: "Tidak ada".into()
        }
    );
    // An alias to a room number reaches the room.
    let r = route_at(&plan, "6001", "77", MON_2000, &Dir::default());
    assert_eq!(room_plan(&r.decision).number, "8600", "{:#?}", lines(&r));
    // Emergency numbers still come first.
    assert!(matches!(
        route(&plan, "6001", "112"),
        Decision::Trunk {
            emergency: true,
            ..
        }
    ));
}
