//! `tambun regs`: the live registrations, asked of the running switch's admin API
//! (`GET /api/registrations[?opd=CODE]`).

use clap::Args;
use serde::Deserialize;

use super::http;
use super::output::table;
use super::GlobalArgs;
use crate::types::OpdCode;

#[derive(Debug, Args)]
pub struct RegsArgs {
    /// Only this OPD's registrations
    #[arg(long, value_name = "CODE")]
    opd: Option<OpdCode>,
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

/// One registration as the admin API reports it.
#[derive(Debug, Deserialize)]
struct Registration {
    extension: String,
    #[serde(default)]
    opd: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    transport: String,
    #[serde(default)]
    user_agent: String,
    #[serde(default)]
    expires_in: i64,
}

pub(super) fn run(global: &GlobalArgs, args: RegsArgs) -> anyhow::Result<()> {
    let admin = global.admin();
    let path = match &args.opd {
        Some(code) => format!("/api/registrations?opd={code}"),
        None => "/api/registrations".to_owned(),
    };
    let Some(regs) =
        http::admin_list::<Registration>(admin, &path, args.json, "a registration list")?
    else {
        return Ok(());
    };
    if regs.is_empty() {
        println!("no registrations");
        return Ok(());
    }
    let mut t = table(&[
        "EXTENSION",
        "OPD",
        "CONTACT",
        "SOURCE",
        "TRANSPORT",
        "USER AGENT",
        "EXPIRES IN",
    ]);
    for r in regs {
        t.add_row(vec![
            r.extension,
            r.opd,
            r.contact,
            r.source,
            r.transport,
            r.user_agent,
            format!("{} s", r.expires_in),
        ]);
    }
    println!("{t}");
    Ok(())
}
