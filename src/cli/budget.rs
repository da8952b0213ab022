//! `tambun budget`: the monthly budgets per OPD of the running switch, asked of its admin API
//! (`GET /api/budgets`): per OPD its unit, used, limit, percent and state (ok, warning from
//! 80 %, exhausted at 100 %), and the extensions with a budget of their own that used some.

use clap::Args;
use serde::Deserialize;

use super::http;
use super::output::table;
use super::GlobalArgs;

#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

/// One OPD's budget as the admin API reports it.
#[derive(Debug, Deserialize)]
struct View {
    opd: String,
    unit: String,
    limit: u64,
    used: u64,
    ratio: f64,
    state: String,
    month: String,
    #[serde(default)]
    refused: u64,
    #[serde(default)]
    extensions: Vec<ExtensionView>,
}

#[derive(Debug, Deserialize)]
struct ExtensionView {
    extension: String,
    limit: u64,
    used: u64,
    ratio: f64,
    state: String,
}

fn percent(ratio: f64) -> String {
    format!("{:.0} %", (ratio * 100.0).floor())
}

pub(super) fn run(global: &GlobalArgs, args: BudgetArgs) -> anyhow::Result<()> {
    let admin = global.admin();
    let Some(views) = http::admin_list::<View>(admin, "/api/budgets", args.json, "a budget list")?
    else {
        return Ok(());
    };
    let Some(month) = views.first().map(|v| v.month.clone()) else {
        println!("no OPD has a monthly budget (set `[budget]` in an OPD's dialplan file)");
        return Ok(());
    };
    let mut t = table(&[
        "OPD", "USED", "LIMIT", "UNIT", "PERCENT", "STATE", "REFUSED",
    ]);
    for v in &views {
        t.add_row(vec![
            v.opd.clone(),
            v.used.to_string(),
            v.limit.to_string(),
            v.unit.clone(),
            percent(v.ratio),
            v.state.clone(),
            v.refused.to_string(),
        ]);
        for e in &v.extensions {
            t.add_row(vec![
                format!("  {}", e.extension),
                e.used.to_string(),
                e.limit.to_string(),
                v.unit.clone(),
                percent(e.ratio),
                e.state.clone(),
                String::new(),
            ]);
        }
    }
    println!("monthly budgets, {month} (WIB)");
    println!("{t}");
    Ok(())
}
