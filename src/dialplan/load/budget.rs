//! Reading the usage-control tables: `[budget]` and `[[budget.extension]]` of an OPD file and
//! `[[rate]]` of `province.toml`, into [`crate::dialplan::budget`]'s model, every error with
//! its line. A money budget is checked against the rates: each outside class the OPD (or one
//! of its permission overrides) may dial needs a rate.

use serde::Deserialize;
use toml::Spanned;

use super::{parse_block, FileCtx};
use crate::dialplan::budget::{Budget, BudgetUnit, ExtensionBudget, Rate};
use crate::dialplan::{Block, NumberClass, Permissions, Province};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBudget {
    minutes: Option<Spanned<i64>>,
    rupiah: Option<Spanned<i64>>,
    #[serde(default)]
    extension: Vec<RawExtensionBudget>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExtensionBudget {
    extensions: Spanned<Vec<Spanned<String>>>,
    minutes: Option<Spanned<i64>>,
    rupiah: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    class: Spanned<String>,
    rupiah_per_minute: Spanned<i64>,
    setup_rupiah: Option<Spanned<i64>>,
}

/// A count that must be positive (`what` names it in the error).
fn positive(f: &mut FileCtx<'_>, v: &Spanned<i64>, what: &str) -> Option<u64> {
    match *v.get_ref() {
        n if n >= 1 => Some(n as u64),
        n => {
            f.error(
                &v.span(),
                format!("{what} must be a positive whole number, not {n}"),
            );
            None
        }
    }
}

/// A price that may be 0 but not negative.
fn price(f: &mut FileCtx<'_>, v: &Spanned<i64>, what: &str) -> Option<u64> {
    match *v.get_ref() {
        n if n >= 0 => Some(n as u64),
        n => {
            f.error(&v.span(), format!("{what} must not be negative ({n})"));
            None
        }
    }
}

/// `[[rate]]` entries of `province.toml`: outside classes only, each at most once.
pub(super) fn parse_rates(f: &mut FileCtx<'_>, raw: &[RawRate]) -> Vec<Rate> {
    let mut rates: Vec<Rate> = Vec::new();
    for r in raw {
        let line = f.line(&r.class.span());
        let class = f.parse(&r.class, |s| match NumberClass::parse(s) {
            Some(
                k @ (NumberClass::Local
                | NumberClass::National
                | NumberClass::Mobile
                | NumberClass::International),
            ) => Ok(k),
            Some(k) => Err(format!(
                "{k} calls are never charged; rates are for local, national, mobile and international"
            )),
            None => Err(format!(
                "unknown number class '{s}' for a rate (local, national, mobile, international)"
            )),
        });
        let per_minute = price(f, &r.rupiah_per_minute, "rupiah_per_minute");
        let setup = match &r.setup_rupiah {
            Some(s) => price(f, s, "setup_rupiah"),
            None => Some(0),
        };
        let Some(class) = class else { continue };
        if let Some(prev) = rates.iter().find(|p| p.class == class) {
            f.error(
                &r.class.span(),
                format!("the rate of {class} is already set on line {}", prev.line),
            );
            continue;
        }
        if let (Some(rupiah_per_minute), Some(setup_rupiah)) = (per_minute, setup) {
            rates.push(Rate {
                class,
                rupiah_per_minute,
                setup_rupiah,
                line,
            });
        }
    }
    rates
}

/// The unit and limit of a table with `minutes` or `rupiah` (exactly one).
fn unit_and_limit(
    f: &mut FileCtx<'_>,
    minutes: Option<&Spanned<i64>>,
    rupiah: Option<&Spanned<i64>>,
    at: &std::ops::Range<usize>,
    what: &str,
) -> Option<(BudgetUnit, u64, usize)> {
    match (minutes, rupiah) {
        (Some(m), None) => {
            positive(f, m, "minutes").map(|n| (BudgetUnit::Minutes, n, f.line(&m.span())))
        }
        (None, Some(r)) => {
            positive(f, r, "rupiah").map(|n| (BudgetUnit::Rupiah, n, f.line(&r.span())))
        }
        (Some(m), Some(_)) => {
            f.error(
                &m.span(),
                format!("{what} sets both minutes and rupiah; a budget counts one of them"),
            );
            None
        }
        (None, None) => {
            f.error(at, format!("{what} needs `minutes = N` or `rupiah = N`"));
            None
        }
    }
}

/// An OPD's `[budget]`, checked against its blocks, its permissions and the province's
/// rates (`None` for a file without one, or with errors in it).
pub(super) fn parse_budget(
    f: &mut FileCtx<'_>,
    raw: Option<&Spanned<RawBudget>>,
    blocks: &[Block],
    permissions: &Permissions,
    province: Option<&Province>,
) -> Option<Budget> {
    let raw_spanned = raw?;
    let raw = raw_spanned.get_ref();
    let before = f.error_count();
    let head = unit_and_limit(
        f,
        raw.minutes.as_ref(),
        raw.rupiah.as_ref(),
        &raw_spanned.span(),
        "[budget]",
    );
    let mut extensions: Vec<ExtensionBudget> = Vec::new();
    for e in &raw.extension {
        let line = f.line(&e.extensions.span());
        let entry = unit_and_limit(
            f,
            e.minutes.as_ref(),
            e.rupiah.as_ref(),
            &e.extensions.span(),
            "[[budget.extension]]",
        );
        if let (Some((unit, _, l)), Some((own, _, _))) = (entry, head) {
            if unit != own {
                f.errors.push(super::err(
                    f.path,
                    l,
                    format!(
                        "this extension budget is in {unit} but the OPD's budget is in {own}; use one unit"
                    ),
                ));
            }
        }
        if e.extensions.get_ref().is_empty() {
            f.error(
                &e.extensions.span(),
                "an extension budget needs at least one extension",
            );
        }
        let mut exts = Vec::new();
        for s in e.extensions.get_ref() {
            let Some(b) = f.parse(s, |v| parse_block(v, true)) else {
                continue;
            };
            let inside = blocks.iter().any(|own| {
                own.digits() == b.digits() && own.first <= b.first && b.last <= own.last
            });
            if !inside {
                f.error(&s.span(), format!("{b} is not inside this OPD's blocks"));
            } else if let Some(prev) = extensions
                .iter()
                .find(|p| p.extensions.iter().any(|x| x.overlaps(&b)))
            {
                f.error(
                    &s.span(),
                    format!(
                        "{b} already has a budget (the extension budget on line {})",
                        prev.line
                    ),
                );
            } else if exts.iter().any(|x: &Block| x.overlaps(&b)) {
                f.error(&s.span(), format!("{b} is listed twice"));
            }
            exts.push(b);
        }
        if let Some((_, limit, _)) = entry {
            extensions.push(ExtensionBudget {
                extensions: exts,
                limit,
                line,
            });
        }
    }
    let (unit, limit, line) = head?;
    if let (BudgetUnit::Rupiah, Some(province)) = (unit, province) {
        let mut may_dial = permissions.allow;
        for o in &permissions.overrides {
            for c in o.allow.iter() {
                may_dial = may_dial.with(c);
            }
        }
        let missing: Vec<&str> = may_dial
            .iter()
            .filter(|c| !matches!(c, NumberClass::Internal | NumberClass::Emergency))
            .filter(|c| !province.rates.iter().any(|r| r.class == *c))
            .map(NumberClass::as_str)
            .collect();
        if !missing.is_empty() {
            f.errors.push(super::err(
                f.path,
                line,
                format!(
                    "a budget in rupiah needs a rate for every class the OPD may dial: {} has no \
                     [[rate]] in {}",
                    missing.join(", "),
                    province.file.display()
                ),
            ));
        }
    }
    if f.error_count() > before {
        return None;
    }
    Some(Budget {
        unit,
        limit,
        extensions,
        line,
    })
}
