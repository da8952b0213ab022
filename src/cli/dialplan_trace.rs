//! `tambun dialplan trace --from EXT NUMBER [--at TIME]`: explains how the dialplan routes a
//! number dialled from an extension, step by step. Offline: it reads the dialplan files and
//! the database (which extensions exist and are enabled); the running switch is not asked.
//! The `dialplan` command group is defined here so `check` (in `opd.rs`) and `trace` share it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};

use super::{load_dialplan, opd, GlobalArgs};
use crate::dialplan::{Directory, Features, WibTime};
use crate::store::Store;
use crate::types::Extension;

#[derive(Debug, Subcommand)]
pub enum DialplanCommand {
    #[command(flatten)]
    Check(opd::DialplanCommand),
    /// Explain how a number dialled from an extension is routed, step by step
    Trace(TraceArgs),
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The calling extension
    #[arg(
        long,
        value_name = "EXT",
        required_unless_present = "inbound",
        conflicts_with = "inbound"
    )]
    from: Option<String>,
    /// A call from a carrier to this public number (the number in any form, e.g. +625363221234)
    #[arg(long)]
    inbound: bool,
    /// The dialled number, as the phone sends it (e.g. 0, 2300, 90536123456, *78)
    number: String,
    /// When the call is made, in WIB: `YYYY-MM-DD HH:MM`, or `HH:MM` for today [default: now]
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
}

pub(super) fn run(global: &GlobalArgs, cmd: DialplanCommand) -> anyhow::Result<()> {
    match cmd {
        DialplanCommand::Check(cmd) => opd::run_dialplan(global, cmd),
        DialplanCommand::Trace(args) => trace(global, args),
    }
}

fn trace(global: &GlobalArgs, args: TraceArgs) -> anyhow::Result<()> {
    check_dialled(&args.number)?;
    let now = unix_now();
    let at = match &args.at {
        Some(text) => parse_time(text, now).map_err(|e| anyhow!("--at: {e}"))?,
        None => now,
    };
    let plan = load_dialplan(&global.dialplan())?;
    let dir = DbDirectory::open(global)?;
    let Some(from) = &args.from else {
        // --inbound (clap requires one of the two)
        let routing = plan.route_inbound(&args.number, at, &dir);
        print_trace(at, " (a call from a carrier)", &routing);
        return Ok(());
    };
    let caller: Extension = from.parse().map_err(|e| anyhow!("--from: {e}"))?;
    if !dir.is_assigned(&caller) {
        eprintln!(
            "note: {caller} is not an enabled extension in the database; a real call from it \
             would be refused when it authenticates"
        );
    }
    let routing = plan.route(&caller, &args.number, at, &dir);
    print_trace(at, "", &routing);
    Ok(())
}

/// The time, each step and the decision.
fn print_trace(at: i64, what: &str, routing: &crate::dialplan::Routing) {
    println!("at {}{what}", WibTime::from_unix(at));
    for step in &routing.trace {
        println!("{step}");
    }
    println!("→ {}", routing.decision);
}

/// What a phone can dial: digits, `*`, `#`, `+`.
fn check_dialled(number: &str) -> anyhow::Result<()> {
    if number.is_empty() || number.len() > 32 {
        bail!("the number must have 1 to 32 characters");
    }
    if let Some(c) = number
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, '*' | '#' | '+')))
    {
        bail!("'{number}' is not a dialable number: '{c}' (use digits, *, # and +)");
    }
    Ok(())
}

fn unix_now() -> i64 {
    // Holds: the system clock is after 1970.
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// `YYYY-MM-DD HH:MM` or `HH:MM` (on the WIB date of `now`), in WIB, as Unix seconds.
fn parse_time(text: &str, now: i64) -> Result<i64, String> {
    let bad = || format!("'{text}' is not a WIB time (write 'YYYY-MM-DD HH:MM' or 'HH:MM')");
    let text = text.trim();
    let (date, clock) = match text.split_once(' ') {
        Some((d, c)) => (Some(d.trim()), c.trim()),
        None => (None, text),
    };
    let (h, m) = clock.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let hour: u8 = h.parse().map_err(|_| bad())?;
    let minute: u8 = m.parse().map_err(|_| bad())?;
    let (year, month, day) = match date {
        Some(d) => {
            let mut parts = d.split('-');
            let (Some(y), Some(mo), Some(da), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad());
            };
            if y.len() != 4 || mo.len() != 2 || da.len() != 2 {
                return Err(bad());
            }
            (
                y.parse().map_err(|_| bad())?,
                mo.parse().map_err(|_| bad())?,
                da.parse().map_err(|_| bad())?,
            )
        }
        None => {
            let today = WibTime::from_unix(now);
            (today.year, today.month, today.day)
        }
    };
    WibTime::to_unix(year, month, day, hour, minute)
        .ok_or_else(|| format!("'{text}' is not a valid date and time"))
}

/// The extensions of the database, for the evaluator. Call features are not read yet (every
/// extension gets the defaults: no forwarding, no do-not-disturb).
struct DbDirectory {
    /// Extension → enabled. `None`: there is no database, so every extension counts as
    /// assigned (a plan can be traced before any phone is provisioned).
    /// Extension → (enabled, forwarding and DND); `None` when there is no database.
    enabled: Option<BTreeMap<Extension, (bool, Features)>>,
}

impl DbDirectory {
    fn open(global: &GlobalArgs) -> anyhow::Result<DbDirectory> {
        let path = global.db();
        if !path.exists() {
            eprintln!(
                "note: there is no database at {}: every extension counts as assigned",
                path.display()
            );
            return Ok(DbDirectory { enabled: None });
        }
        let store = Store::open(&path)?;
        let enabled = store
            .extensions(None)?
            .into_iter()
            .map(|r| (r.number, (r.enabled, r.features.to_routing())))
            .collect();
        Ok(DbDirectory {
            enabled: Some(enabled),
        })
    }
}

impl Directory for DbDirectory {
    fn is_assigned(&self, ext: &Extension) -> bool {
        self.enabled
            .as_ref()
            .is_none_or(|m| m.get(ext).is_some_and(|(enabled, _)| *enabled))
    }

    fn features(&self, ext: &Extension) -> Features {
        self.enabled
            .as_ref()
            .and_then(|m| m.get(ext))
            .map(|(_, f)| f.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        let now = 1_740_967_200; // Mon 2025-03-03 09:00 WIB
        assert_eq!(parse_time("2025-03-03 09:00", now), Ok(now));
        assert_eq!(parse_time("20:30", now), Ok(now + 11 * 3600 + 1800));
        assert_eq!(parse_time("7:05", now), Ok(now - 2 * 3600 + 300));
        for bad in [
            "",
            "9",
            "09:0",
            "25:00",
            "2025-02-30 10:00",
            "2025-3-3 10:00",
            "x:10",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dialable_numbers() {
        assert!(check_dialled("90536123456").is_ok());
        assert!(check_dialled("*72+62812").is_ok());
        assert!(check_dialled("12a").is_err());
        assert!(check_dialled("").is_err());
    }
}
