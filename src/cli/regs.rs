//! `tambun regs`: the live registrations, asked of the running switch's admin API
//! (`GET /api/registrations[?opd=CODE]`).

use std::io::Write;

use anyhow::{anyhow, bail};
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
    let response = http::admin_get(admin, &path)?;
    let body = String::from_utf8_lossy(&response.body);
    if !(200..300).contains(&response.status) {
        bail!(
            "the switch's admin API at {admin} answered {}: {}",
            response.status,
            body.trim()
        );
    }
    if args.json {
        let mut out = std::io::stdout().lock();
        out.write_all(body.as_bytes())?;
        if !body.ends_with('\n') {
            out.write_all(b"\n")?;
        }
        return Ok(());
    }
    let regs: Vec<Registration> = serde_json::from_str(&body).map_err(|e| {
        anyhow!(
            "the switch's admin API at {admin} sent something other than a registration list: {e}"
        )
    })?;
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
