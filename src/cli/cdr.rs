//! `tambun cdr` (the call records) and `tambun cdr summary --by opd` (usage per OPD), read
//! from the database. Times are shown and typed in WIB (UTC+7).

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::output::{print_json, table};
use super::wib::{minutes_seconds, now_ms, wib, wib_iso, TimeArg};
use super::{open_existing, GlobalArgs};
use crate::store::{CdrFilter, CdrRow, OpdUsage, Store, Usage};
use crate::types::OpdCode;

/// The `--since`/`--until` help, shared (a macro so that `concat!` can extend it).
macro_rules! time_help {
    () => {
        "T is YYYY-MM-DD or 'YYYY-MM-DD HH:MM' in WIB (UTC+7), or a span back from now: 24h, \
         7d, 2w. A date given to --until includes that whole day."
    };
}

/// Show the call records (one per finished call)
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = concat!(
        time_help!(),
        "\n\nExamples:\n  tambun cdr --opd setda --since 7d\n  \
         tambun cdr --since 2026-03-01 --until 2026-03-31 --csv > maret.csv\n  \
         tambun cdr summary --by opd --since 2026-03-01 --until 2026-03-31"
    )
)]
pub struct CdrArgs {
    #[command(subcommand)]
    summary: Option<CdrCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only calls placed by or to this OPD
    #[arg(long, value_name = "CODE")]
    opd: Option<OpdCode>,
    #[command(flatten)]
    range: RangeArgs,
    /// Only the latest N calls (still listed oldest first)
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    #[command(flatten)]
    format: FormatArgs,
}

#[derive(Debug, Clone, Copy, Args)]
struct RangeArgs {
    /// Calls that started at or after T
    #[arg(long, value_name = "T")]
    since: Option<TimeArg>,
    /// Calls that started before T
    #[arg(long, value_name = "T")]
    until: Option<TimeArg>,
}

#[derive(Debug, Clone, Copy, Args)]
struct FormatArgs {
    /// CSV with a header line (times ISO 8601 with +07:00)
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// JSON
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum CdrCommand {
    /// Usage per OPD: calls, answered, minutes, trunk calls, trunk minutes and blocked attempts
    ///
    /// An OPD's calls are the calls placed by OR received by it: a call between two OPDs
    /// counts for both, a call inside one OPD once. Minutes are the talk time of the answered
    /// ones (answer to hang-up); trunk calls and trunk minutes are those that went through the
    /// central trunk. Blocked are the attempts refused before the trunk: numbers the caller may
    /// not dial, or a toll limit reached (`tambun cdr` shows the rule in ROUTE). The total line
    /// counts each call once, so it is less than the sum of the OPD lines when OPDs call each
    /// other. CSV has no total line.
    #[command(after_help = time_help!())]
    Summary {
        /// What to group by
        #[arg(long, value_enum, default_value_t = GroupBy::Opd)]
        by: GroupBy,
        #[command(flatten)]
        range: RangeArgs,
        #[command(flatten)]
        format: FormatArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum GroupBy {
    Opd,
}

pub(super) fn run(global: &GlobalArgs, args: CdrArgs) -> anyhow::Result<()> {
    let store = open_existing(global)?;
    let now = now_ms();
    match args.summary {
        None => list(&store, args.list, now),
        Some(CdrCommand::Summary {
            by: GroupBy::Opd,
            range,
            format,
        }) => summary(&store, range, format, now),
    }
}

impl RangeArgs {
    fn resolve(self, now: i64) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        let since = self.since.map(|t| t.since_ms(now));
        let until = self.until.map(|t| t.until_ms(now));
        if let (Some(s), Some(u)) = (since, until) {
            if s >= u {
                bail!("--since ({}) is not before --until ({})", wib(s), wib(u));
            }
        }
        Ok((since, until))
    }
}

// ---- the list ----

/// A call record in `--json`: the stored fields, times both as Unix ms and ISO 8601 (WIB).
#[derive(Debug, Serialize)]
struct CdrView<'a> {
    #[serde(flatten)]
    row: &'a CdrRow,
    start: String,
    answer: Option<String>,
    end: String,
    duration_ms: i64,
}

fn list(store: &Store, args: ListArgs, now: i64) -> anyhow::Result<()> {
    let (since_ms, until_ms) = args.range.resolve(now)?;
    let filter = CdrFilter {
        opd: args.opd.clone(),
        since_ms,
        until_ms,
        limit: args.limit,
    };
    let rows = store.cdrs(&filter)?;
    if rows.is_empty() {
        if let Some(code) = &args.opd {
            if !store.opds()?.iter().any(|o| &o.code == code) {
                bail!("unknown OPD '{code}' (see `tambun opd list`)");
            }
        }
    }
    if args.format.json {
        let views: Vec<CdrView> = rows
            .iter()
            .map(|row| CdrView {
                row,
                start: wib_iso(row.record.start_ms),
                answer: row.record.answer_ms.map(wib_iso),
                end: wib_iso(row.record.end_ms),
                duration_ms: row.record.duration_ms(),
            })
            .collect();
        return print_json(&views);
    }
    if args.format.csv {
        return write_csv_list(&rows);
    }
    if rows.is_empty() {
        println!("no call records");
        return Ok(());
    }
    let dash = |s: Option<&str>| s.unwrap_or("-").to_owned();
    let mut t = table(&[
        "START (WIB)",
        "CALLER",
        "CALLER OPD",
        "DIALLED",
        "CALLEE",
        "CALLEE OPD",
        "DISPOSITION",
        "STATUS",
        "DURATION",
        "RTP A→B / B→A",
        "LOSS",
        "ROUTE",
    ]);
    for row in &rows {
        let r = &row.record;
        t.add_row(vec![
            wib(r.start_ms),
            r.caller.clone(),
            dash(r.caller_opd.as_ref().map(OpdCode::as_str)),
            r.dialled.clone(),
            dash(r.callee.as_deref()),
            dash(r.callee_opd.as_ref().map(OpdCode::as_str)),
            r.disposition.to_string(),
            r.sip_status.to_string(),
            minutes_seconds(r.duration_ms()),
            r.media.map_or_else(
                || "-".to_owned(),
                |m| format!("{} / {}", m.packets_a2b, m.packets_b2a),
            ),
            r.media.map_or_else(
                || "-".to_owned(),
                |m| {
                    format!(
                        "{} / {}",
                        loss_percent(m.lost_a2b, m.packets_a2b),
                        loss_percent(m.lost_b2a, m.packets_b2a)
                    )
                },
            ),
            r.route.clone(),
        ]);
    }
    println!("{t}");
    println!("{} call(s)", rows.len());
    Ok(())
}

fn write_csv_list(rows: &[CdrRow]) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(std::io::stdout().lock());
    w.write_record([
        "start",
        "answer",
        "end",
        "caller",
        "caller_opd",
        "dialled",
        "callee",
        "callee_opd",
        "disposition",
        "sip_status",
        "duration_ms",
        "route",
        "trunk",
        "call_id",
        "rtp_packets_a2b",
        "rtp_packets_b2a",
        "rtp_lost_a2b",
        "rtp_lost_b2a",
        "rtp_jitter_max_us",
    ])?;
    for row in rows {
        let r = &row.record;
        w.write_record([
            wib_iso(r.start_ms),
            r.answer_ms.map(wib_iso).unwrap_or_default(),
            wib_iso(r.end_ms),
            r.caller.clone(),
            r.caller_opd
                .as_ref()
                .map(OpdCode::to_string)
                .unwrap_or_default(),
            r.dialled.clone(),
            r.callee.clone().unwrap_or_default(),
            r.callee_opd
                .as_ref()
                .map(OpdCode::to_string)
                .unwrap_or_default(),
            r.disposition.to_string(),
            r.sip_status.to_string(),
            r.duration_ms().to_string(),
            r.route.clone(),
            u8::from(r.trunk).to_string(),
            r.call_id.clone(),
            media_field(r.media.map(|m| m.packets_a2b)),
            media_field(r.media.map(|m| m.packets_b2a)),
            media_field(r.media.map(|m| m.lost_a2b)),
            media_field(r.media.map(|m| m.lost_b2a)),
            media_field(r.media.map(|m| m.jitter_us_max)),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Lost packets as a share of those expected (received + lost), e.g. `0.4%`.
fn loss_percent(lost: u64, received: u64) -> String {
    let expected = lost + received;
    if expected == 0 {
        return "-".to_owned();
    }
    format!("{:.1}%", lost as f64 * 100.0 / expected as f64)
}

/// A media counter in CSV: empty when the call's media was not anchored.
fn media_field(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

// ---- the summary ----

/// Usage in `--json` and `--csv`: minutes rounded to 2 decimals, and the exact milliseconds.
#[derive(Debug, Serialize)]
struct UsageView {
    calls: u64,
    answered: u64,
    minutes: f64,
    answered_ms: i64,
    trunk_calls: u64,
    trunk_minutes: f64,
    trunk_answered_ms: i64,
    blocked: u64,
    conference_calls: u64,
    conference_minutes: f64,
    conference_ms: i64,
}

impl From<&Usage> for UsageView {
    fn from(u: &Usage) -> Self {
        let round2 = |ms: i64| (ms as f64 / 600.0).round() / 100.0;
        UsageView {
            calls: u.calls,
            answered: u.answered,
            minutes: round2(u.answered_ms),
            answered_ms: u.answered_ms,
            trunk_calls: u.trunk_calls,
            trunk_minutes: round2(u.trunk_answered_ms),
            trunk_answered_ms: u.trunk_answered_ms,
            blocked: u.blocked,
            conference_calls: u.conference_calls,
            conference_minutes: round2(u.conference_ms),
            conference_ms: u.conference_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct OpdUsageView<'a> {
    opd: &'a str,
    #[serde(flatten)]
    usage: UsageView,
}

impl<'a> From<&'a OpdUsage> for OpdUsageView<'a> {
    fn from(o: &'a OpdUsage) -> Self {
        OpdUsageView {
            opd: o.opd.as_str(),
            usage: UsageView::from(&o.usage),
        }
    }
}

#[derive(Debug, Serialize)]
struct SummaryView<'a> {
    since: Option<String>,
    until: Option<String>,
    opds: Vec<OpdUsageView<'a>>,
    /// Each call once.
    total: UsageView,
}

fn summary(store: &Store, range: RangeArgs, format: FormatArgs, now: i64) -> anyhow::Result<()> {
    let (since_ms, until_ms) = range.resolve(now)?;
    let by_opd = store.cdr_summary_by_opd(since_ms, until_ms)?;
    let total = store.cdr_totals(since_ms, until_ms)?;
    if format.json {
        return print_json(&SummaryView {
            since: since_ms.map(wib_iso),
            until: until_ms.map(wib_iso),
            opds: by_opd.iter().map(OpdUsageView::from).collect(),
            total: UsageView::from(&total),
        });
    }
    if format.csv {
        let mut w = csv::Writer::from_writer(std::io::stdout().lock());
        w.write_record([
            "opd",
            "calls",
            "answered",
            "minutes",
            "trunk_calls",
            "trunk_minutes",
            "blocked",
            "conference_calls",
            "conference_minutes",
        ])?;
        for o in &by_opd {
            let u = UsageView::from(&o.usage);
            w.write_record([
                o.opd.to_string(),
                u.calls.to_string(),
                u.answered.to_string(),
                format!("{:.2}", u.minutes),
                u.trunk_calls.to_string(),
                format!("{:.2}", u.trunk_minutes),
                u.blocked.to_string(),
                u.conference_calls.to_string(),
                format!("{:.2}", u.conference_minutes),
            ])?;
        }
        w.flush()?;
        return Ok(());
    }
    let period = match (since_ms, until_ms) {
        (None, None) => "all call records".to_owned(),
        (Some(s), None) => format!("calls since {} WIB", wib(s)),
        (None, Some(u)) => format!("calls before {} WIB", wib(u)),
        (Some(s), Some(u)) => format!("calls from {} to {} WIB", wib(s), wib(u)),
    };
    if by_opd.is_empty() {
        println!("no calls ({period})");
        return Ok(());
    }
    let mut t = table(&[
        "OPD",
        "CALLS",
        "ANSWERED",
        "MINUTES",
        "TRUNK CALLS",
        "TRUNK MINUTES",
        "BLOCKED",
        "CONF CALLS",
        "CONF MINUTES",
    ]);
    let row = |label: String, u: &Usage| {
        vec![
            label,
            u.calls.to_string(),
            u.answered.to_string(),
            format!("{:.1}", u.minutes()),
            u.trunk_calls.to_string(),
            format!("{:.1}", u.trunk_minutes()),
            u.blocked.to_string(),
            u.conference_calls.to_string(),
            format!("{:.1}", u.conference_minutes()),
        ]
    };
    for o in &by_opd {
        t.add_row(row(o.opd.to_string(), &o.usage));
    }
    t.add_row(row("total (each call once)".to_owned(), &total));
    println!("{t}");
    println!(
        "{period}; a call between two OPDs counts for both; conference time (one record per \
         participant) is part of the minutes too"
    );
    Ok(())
}
