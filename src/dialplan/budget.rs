//! Usage control in the dialplan model: an OPD's monthly budget (`[budget]` in its file, in
//! minutes or rupiah, with per-extension limits in `[[budget.extension]]`) and the rates per
//! outside number class (`[[rate]]` in `province.toml`), plus the billing rule that turns
//! one answered trunk call into minutes and rupiah ([`Dialplan::charge_of`]).
//!
//! Plain data, validated by the loader (`load::budget`); no clock, no I/O. The usage itself
//! (what was spent this month) is kept by [`crate::proxy::budget`].

use std::fmt;

use serde::Serialize;

use super::{Block, Dialplan, NumberClass};
use crate::types::Extension;

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetUnit {
    /// Billed minutes of answered outside calls.
    Minutes,
    /// Rupiah at the province's rates.
    Rupiah,
}

impl BudgetUnit {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetUnit::Minutes => "minutes",
            BudgetUnit::Rupiah => "rupiah",
        }
    }
}

impl fmt::Display for BudgetUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OPD's monthly budget (`[budget]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub unit: BudgetUnit,
    /// The OPD's total for a month, in `unit` (at least 1).
    pub limit: u64,
    /// Limits of single extensions, each in `unit`; the extension's calls still count for
    /// the OPD's total.
    pub extensions: Vec<ExtensionBudget>,
    /// Line of the limit (`minutes` or `rupiah`).
    pub line: usize,
}

/// A `[[budget.extension]]`: every extension it covers has this monthly limit of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionBudget {
    pub extensions: Vec<Block>,
    pub limit: u64,
    pub line: usize,
}

impl Budget {
    /// The limit of `ext` alone, if an extension entry covers it.
    pub fn extension_limit(&self, ext: &Extension) -> Option<u64> {
        self.extensions
            .iter()
            .find(|e| e.extensions.iter().any(|b| b.contains(ext)))
            .map(|e| e.limit)
    }
}

/// The price of a class of outside numbers (`[[rate]]` in `province.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub class: NumberClass,
    pub rupiah_per_minute: u64,
    /// Charged once per answered call (0 when the file sets none).
    pub setup_rupiah: u64,
    pub line: usize,
}

/// What one answered outside call costs under the billing rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub minutes: u64,
    pub rupiah: u64,
}

/// Billed minutes of a talk time: every started minute counts, and an answered call counts
/// at least one (61 s → 2, 0 s → 1).
pub fn billed_minutes(talk_ms: i64) -> u64 {
    let ms = talk_ms.max(0) as u64;
    ms.div_ceil(60_000).max(1)
}

impl Dialplan {
    /// The rate of `class`, if `province.toml` sets one.
    pub fn rate(&self, class: NumberClass) -> Option<&Rate> {
        self.province.rates.iter().find(|r| r.class == class)
    }

    /// What an answered call of `class` with `talk_ms` of talk time costs: its billed
    /// minutes, and in rupiah the class's setup charge plus its rate per billed minute (0 for
    /// a class without a rate).
    pub fn charge_of(&self, class: NumberClass, talk_ms: i64) -> Charge {
        let minutes = billed_minutes(talk_ms);
        let rupiah = self.rate(class).map_or(0, |r| {
            r.setup_rupiah
                .saturating_add(r.rupiah_per_minute.saturating_mul(minutes))
        });
        Charge { minutes, rupiah }
    }

    /// The class of a number as it was sent to the trunk (the number of a call record's
    /// route `trunk NUMBER`): a class rule whose `prepend` starts it and whose pattern matches
    /// the rest, else the most specific class rule matching the whole number. `None` when no
    /// rule matches.
    pub fn class_of_sent(&self, sent: &str) -> Option<NumberClass> {
        let rules = &self.province.classes;
        let order = self.index.class_order();
        let prepended = order.iter().map(|&i| &rules[i]).find(|c| {
            c.prepend.as_deref().is_some_and(|p| {
                sent.strip_prefix(p)
                    .is_some_and(|rest| c.pattern.matches(rest))
            })
        });
        prepended
            .or_else(|| {
                order
                    .iter()
                    .map(|&i| &rules[i])
                    .find(|c| c.pattern.matches(sent))
            })
            .map(|c| c.class)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::dialplan::DialplanErrors;

    const PROVINCE: &str = r#"
[trunk]
target = "127.0.0.1:5090"
transport = "udp"
[outside]
prefix = "9"
[[outside.class]]
pattern = "_NXXXXXX"
class = "local"
[[outside.class]]
pattern = "_08."
class = "mobile"
[emergency]
numbers = ["112"]
[permissions]
default = ["internal", "local"]
"#;

    fn load(rates: &str, opd: &str) -> Result<Dialplan, Vec<String>> {
        let files = vec![
            (
                PathBuf::from("/p/province.toml"),
                format!("{PROVINCE}{rates}"),
            ),
            (PathBuf::from("/p/setda.toml"), opd.to_owned()),
        ];
        Dialplan::from_sources(Path::new("/p"), files)
            .map_err(|DialplanErrors(e)| e.iter().map(|e| e.to_string()).collect())
    }

    const HEAD: &str = "code = \"setda\"\nname = \"Setda\"\nblocks = [\"1000-1199\"]\n";

    fn assert_error(rates: &str, budget: &str, want: &str) {
        let errors = load(rates, &format!("{HEAD}{budget}")).expect_err("loads");
        assert!(
            errors.iter().any(|e| e.contains(want)),
            "no error {want:?} in {errors:#?}"
        );
    }

    #[test]
    fn budgets_and_rates_load() {
        let rates = "[[rate]]\nclass = \"local\"\nrupiah_per_minute = 250\nsetup_rupiah = 50\n";
        let plan = load(
            rates,
            &format!(
                "{HEAD}[budget]\nrupiah = 500000\n[[budget.extension]]\nextensions = [\"1001\", \"1100-1199\"]\nrupiah = 100000\n"
            ),
        )
        .unwrap();
        let opd = plan.opd(&"setda".parse().unwrap()).unwrap();
        let b = opd.budget.as_ref().unwrap();
        assert_eq!((b.unit, b.limit, b.line), (BudgetUnit::Rupiah, 500_000, 5));
        assert_eq!(b.extension_limit(&"1150".parse().unwrap()), Some(100_000));
        assert_eq!(b.extension_limit(&"1001".parse().unwrap()), Some(100_000));
        assert_eq!(b.extension_limit(&"1002".parse().unwrap()), None);
        let r = plan.rate(NumberClass::Local).unwrap();
        assert_eq!((r.rupiah_per_minute, r.setup_rupiah), (250, 50));
        assert_eq!(
            plan.charge_of(NumberClass::Local, 60_001).rupiah,
            50 + 2 * 250
        );
        // Without a budget nothing changes.
        let plain = load("", HEAD).unwrap();
        assert!(plain.opds()[0].budget.is_none());
    }

    #[test]
    fn bad_budgets_and_rates_name_their_line() {
        assert_error(
            "",
            "[budget]\nminutes = -5\n",
            "setda.toml:5: minutes must be a positive whole number, not -5",
        );
        assert_error(
            "",
            "[budget]\nminutes = 0\n",
            "setda.toml:5: minutes must be a positive",
        );
        assert_error(
            "",
            "[budget]\nminutes = 5\nrupiah = 9\n",
            "setda.toml:5: [budget] sets both minutes and rupiah",
        );
        assert_error("", "[budget]\n", "needs `minutes = N` or `rupiah = N`");
        assert_error("", "[budget]\nhours = 5\n", "unknown field `hours`");
        assert_error(
            "",
            "[budget]\nrupiah = 1000\n",
            "setda.toml:5: a budget in rupiah needs a rate for every class the OPD may dial: local has no [[rate]] in /p/province.toml",
        );
        assert_error(
            "[[rate]]\nclass = \"local\"\nrupiah_per_minute = 1\n",
            "[budget]\nrupiah = 1000\n[[permissions.override]]\nextensions = [\"1001\"]\nallow = [\"mobile\"]\n",
            "mobile has no [[rate]]",
        );
        assert_error(
            "",
            "[budget]\nminutes = 10\n[[budget.extension]]\nextensions = [\"1001\"]\nrupiah = 5\n",
            "setda.toml:8: this extension budget is in rupiah but the OPD's budget is in minutes",
        );
        assert_error(
            "",
            "[budget]\nminutes = 10\n[[budget.extension]]\nextensions = [\"2001\"]\nminutes = 5\n",
            "setda.toml:7: 2001 is not inside this OPD's blocks",
        );
        assert_error(
            "",
            "[budget]\nminutes = 10\n[[budget.extension]]\nextensions = [\"1001-1010\"]\nminutes = 5\n[[budget.extension]]\nextensions = [\"1005\"]\nminutes = 2\n",
            "setda.toml:10: 1005 already has a budget (the extension budget on line 7)",
        );
        let bad = |rate: &str, want: &str| {
            let errors = load(rate, HEAD).expect_err("loads");
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "no {want:?} in {errors:#?}"
            );
        };
        bad(
            "[[rate]]\nclass = \"mobile\"\nrupiah_per_minute = -1\n",
            "province.toml:19: rupiah_per_minute must not be negative (-1)",
        );
        bad(
            "[[rate]]\nclass = \"satellite\"\nrupiah_per_minute = 1\n",
            "province.toml:18: unknown number class 'satellite' for a rate",
        );
        bad(
            "[[rate]]\nclass = \"emergency\"\nrupiah_per_minute = 1\n",
            "emergency calls are never charged",
        );
        bad(
            "[[rate]]\nclass = \"mobile\"\nrupiah_per_minute = 1\n[[rate]]\nclass = \"mobile\"\nrupiah_per_minute = 2\n",
            "province.toml:21: the rate of mobile is already set on line 18",
        );
        bad(
            "[[rate]]\nclass = \"mobile\"\nrupiah_per_minute = 1\nsetup_rupiah = -3\n",
            "province.toml:20: setup_rupiah must not be negative",
        );
    }

    #[test]
    fn every_started_minute_counts_and_an_answered_call_at_least_one() {
        assert_eq!(billed_minutes(0), 1);
        assert_eq!(billed_minutes(-5), 1);
        assert_eq!(billed_minutes(1), 1);
        assert_eq!(billed_minutes(60_000), 1);
        assert_eq!(billed_minutes(60_001), 2);
        assert_eq!(billed_minutes(61_000), 2);
        assert_eq!(billed_minutes(3_600_000), 60);
    }
}
