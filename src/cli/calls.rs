//! `tambun calls`: the calls in progress, asked of the running switch's admin API
//! (`GET /api/calls`).

use clap::Args;
use serde::Deserialize;

use super::http;
use super::output::table;
use super::wib::{minutes_seconds, wib};
use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct CallsArgs {
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

/// One live call as the admin API reports it.
#[derive(Debug, Deserialize)]
struct LiveCall {
    #[serde(default)]
    call_id: String,
    #[serde(default)]
    caller: String,
    #[serde(default)]
    callee: Option<String>,
    #[serde(default)]
    dialled: String,
    #[serde(default)]
    caller_opd: Option<String>,
    #[serde(default)]
    callee_opd: Option<String>,
    #[serde(default)]
    route: String,
    /// `ringing` or `answered`.
    #[serde(default)]
    state: String,
    #[serde(default)]
    started_at_ms: i64,
    #[serde(default)]
    answered_at_ms: Option<i64>,
    /// Talk time so far (0 while ringing).
    #[serde(default)]
    duration_secs: Option<f64>,
}

pub(super) fn run(global: &GlobalArgs, args: CallsArgs) -> anyhow::Result<()> {
    let admin = global.admin();
    let Some(calls) = http::admin_list::<LiveCall>(admin, "/api/calls", args.json, "a call list")?
    else {
        return Ok(());
    };
    if calls.is_empty() {
        println!("no calls in progress");
        return Ok(());
    }
    let dash = |s: Option<String>| s.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into());
    let mut t = table(&[
        "STARTED (WIB)",
        "CALLER",
        "CALLER OPD",
        "DIALLED",
        "CALLEE",
        "CALLEE OPD",
        "STATE",
        "ANSWERED (WIB)",
        "DURATION",
        "ROUTE",
        "CALL-ID",
    ]);
    let n = calls.len();
    for c in calls {
        t.add_row(vec![
            wib(c.started_at_ms),
            c.caller,
            dash(c.caller_opd),
            c.dialled,
            dash(c.callee),
            dash(c.callee_opd),
            c.state,
            c.answered_at_ms.map_or_else(|| "-".into(), wib),
            minutes_seconds((c.duration_secs.unwrap_or(0.0) * 1000.0) as i64),
            c.route,
            c.call_id,
        ]);
    }
    println!("{t}");
    println!("{n} call(s) in progress");
    Ok(())
}
