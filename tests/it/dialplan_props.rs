//! Property tests of the dialplan: the pattern matcher against a regex reference, and the
//! evaluator picking the most specific of all matching rules (against brute force).

use std::path::Path;

use proptest::prelude::*;
use regex::Regex;
use tambun::dialplan::{Decision, Dialplan, Directory, Features, Pattern};
use tambun::types::Extension;

/// One pattern element as written, and its regex.
fn element() -> impl Strategy<Value = (String, String)> {
    let class = (0u8..10, 0u8..10, 0u8..10).prop_map(|(a, b, c)| {
        let (lo, hi) = (a.min(b), a.max(b));
        (format!("[{lo}-{hi}{c}]"), format!("[{lo}-{hi}{c}]"))
    });
    prop_oneof![
        4 => (0u8..10).prop_map(|d| (d.to_string(), d.to_string())),
        1 => prop::sample::select(vec!["*", "#", "+"])
            .prop_map(|c| (c.to_string(), regex::escape(c))),
        2 => Just(("X".to_string(), "[0-9]".to_string())),
        1 => Just(("x".to_string(), "[0-9]".to_string())),
        2 => Just(("Z".to_string(), "[1-9]".to_string())),
        2 => Just(("N".to_string(), "[2-9]".to_string())),
        2 => class,
    ]
}

/// A pattern as written (`_…` with wildcards, or a literal number) and its anchored regex.
fn pattern() -> impl Strategy<Value = (String, String)> {
    let wild = (
        prop::collection::vec(element(), 0..6),
        prop::sample::select(vec![("", ""), (".", ".+"), ("!", ".*")]),
    )
        .prop_filter("'_' alone is not a pattern", |(e, t)| {
            !e.is_empty() || !t.0.is_empty()
        })
        .prop_map(|(elems, (tail, tail_re))| {
            let written: String = elems.iter().map(|e| e.0.as_str()).collect();
            let re: String = elems.iter().map(|e| e.1.as_str()).collect();
            (format!("_{written}{tail}"), format!("^{re}{tail_re}$"))
        });
    let literal = "[0-9*#+]{1,6}".prop_map(|s| {
        let re = format!("^{}$", regex::escape(&s));
        (s, re)
    });
    prop_oneof![4 => wild, 1 => literal]
}

/// Dialled strings: mostly digits, sometimes the other dialable characters.
fn dialled() -> impl Strategy<Value = String> {
    "[0-9]{0,8}|[0-9*#+]{0,8}"
}

proptest! {
    #![proptest_config(crate::common::proptest_config(2000))]

    #[test]
    fn matcher_agrees_with_regex((written, re) in pattern(), s in dialled()) {
        let p: Pattern = written.parse().unwrap();
        let re = Regex::new(&re).unwrap();
        prop_assert_eq!(p.matches(&s), re.is_match(&s), "{} ({}) on {:?}", written, re, s);
    }

    /// Strings built to match the pattern (so matches are not only found by chance).
    #[test]
    fn matcher_agrees_with_regex_on_near_misses(
        (written, re) in pattern(),
        fill in "[0-9]{0,3}",
        flip in 0usize..8,
    ) {
        let p: Pattern = written.parse().unwrap();
        let re = Regex::new(&re).unwrap();
        // An instance: each element's smallest member, then `fill` for a tail.
        let body = written.strip_prefix('_').unwrap_or(&written);
        let mut s = String::new();
        let mut chars = body.chars();
        while let Some(c) = chars.next() {
            match c {
                'X' | 'x' => s.push('0'),
                'Z' => s.push('1'),
                'N' => s.push('2'),
                '[' => {
                    let class: String = chars.by_ref().take_while(|&c| c != ']').collect();
                    s.push(class.chars().next().unwrap());
                }
                '.' => { s.push('5'); s.push_str(&fill); }
                '!' => s.push_str(&fill),
                c => s.push(c),
            }
        }
        prop_assert!(p.matches(&s), "{} should match {:?}", written, s);
        // Then one character changed: both must still agree.
        let mut v: Vec<char> = s.chars().collect();
        if !v.is_empty() {
            let i = flip % v.len();
            v[i] = if v[i] == '9' { '8' } else { '9' };
        }
        let t: String = v.into_iter().collect();
        prop_assert_eq!(p.matches(&t), re.is_match(&t), "{} ({}) on {:?}", written, re, t);
    }
}

// ---------------------------------------------------------------------------------------------
// The evaluator picks the most specific matching rule.

struct Everyone;

impl Directory for Everyone {
    fn is_assigned(&self, _: &Extension) -> bool {
        true
    }
    fn features(&self, _: &Extension) -> Features {
        Features::default()
    }
}

/// Rule patterns over a small alphabet so several rules often match the same number.
fn rule_pattern() -> impl Strategy<Value = String> {
    let elem = prop::sample::select(vec!["1", "2", "5", "X", "N", "Z", "[1-3]", "[05]", "[25]"]);
    let tail = prop::sample::select(vec!["", ".", "!"]);
    (prop::collection::vec(elem, 0..5), tail)
        .prop_filter("'_' alone is not a pattern", |(e, t)| {
            !e.is_empty() || !t.is_empty()
        })
        .prop_map(|(e, t)| format!("_{}{t}", e.concat()))
}

const PROVINCE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/dialplan/province.toml"
));

/// The shipped `province.toml` without its rooms: they name OPDs (moderators, who may join)
/// that the few OPD files beside it here do not have, which is a load error.
fn province_without_rooms() -> &'static str {
    PROVINCE
        .find("\n[[room]]")
        .map_or(PROVINCE, |at| &PROVINCE[..=at])
}

proptest! {
    #![proptest_config(crate::common::proptest_config(200))]

    #[test]
    fn route_picks_the_most_specific_matching_rule(
        candidates in prop::collection::vec(rule_pattern(), 1..12),
        numbers in prop::collection::vec("[0125]{0,6}", 20),
    ) {
        // Keep the rules that do not tie with an earlier one (a tie is a load error).
        let mut rules: Vec<Pattern> = Vec::new();
        for c in candidates {
            let p: Pattern = c.parse().unwrap();
            let ties = rules
                .iter()
                .any(|r| r.specificity() == p.specificity() && r.overlaps(&p));
            if !ties {
                rules.push(p);
            }
        }
        let mut file = String::from(
            "code = \"lab\"\nname = \"Lab\"\nblocks = [\"6000-6099\"]\n",
        );
        for (i, r) in rules.iter().enumerate() {
            // Each rule answers with its own status, 600 + its index.
            file.push_str(&format!(
                "[[rule]]\npattern = \"{r}\"\nto = {{ reject = {} }}\n",
                600 + i
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("province.toml"), province_without_rooms()).unwrap();
        std::fs::write(dir.path().join("lab.toml"), &file).unwrap();
        let plan = Dialplan::load_dir(Path::new(dir.path()))
            .unwrap_or_else(|e| panic!("{e}\n{file}"));
        let caller: Extension = "6001".parse().unwrap();

        for n in numbers {
            if plan.province().emergency.contains(&n) {
                continue; // emergency numbers come before the rules
            }
            let best = rules
                .iter()
                .enumerate()
                .filter(|(_, r)| r.matches(&n))
                .max_by(|a, b| a.1.specificity().cmp(&b.1.specificity()));
            let got = plan.route(&caller, &n, 0, &Everyone).decision;
            let status = match &got {
                Decision::Reject { status, .. } => Some(*status),
                _ => None,
            };
            match best {
                Some((i, r)) => prop_assert_eq!(
                    status,
                    Some(600 + i as u16),
                    "{:?} should hit rule {} ({}), got {:?}", n, i, r, got
                ),
                None => prop_assert!(
                    !matches!(got, Decision::Reject { status: 600..=699, .. }),
                    "{:?} matches no rule but got {:?}", n, got
                ),
            }
        }
    }
}
