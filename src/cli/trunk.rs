//! `tambun trunk`: the carriers of the central trunk. `status` asks the running switch's admin
//! API (`GET /api/trunks`): registered or not and since when, the last error, the OPTIONS
//! round trip, whether calls try the carrier first, calls in progress. `passwd NAME` keeps
//! the digest hashes of a carrier's password (for the username and realm of its
//! `[trunk.register]` in `province.toml`) in the database; the running switch picks them up
//! within seconds. `list` shows the carriers of the dialplan and whether a password is set.

use std::io::BufRead;

use clap::{Args, Subcommand};
use serde::Deserialize;

use super::http;
use super::output::table;
use super::wib::{now_ms, wib};
use super::{load_dialplan, GlobalArgs};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum TrunkCommand {
    /// Each carrier as the running switch sees it: registration, last error, ping, calls
    Status(StatusArgs),
    /// The carriers of the dialplan, in the order calls try them, and which have a password
    List,
    /// Set the password Tambun registers with at a carrier (kept as digest hashes only)
    Passwd(PasswdArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the admin API's JSON as it is
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The carrier's name (`name` of its [[trunk]])
    name: String,
    /// Read the password from the first line of standard input instead of asking
    #[arg(long)]
    password_stdin: bool,
}

/// A carrier as the admin API reports it.
#[derive(Debug, Deserialize)]
struct Trunk {
    name: String,
    target: String,
    transport: String,
    priority: u32,
    registration: String,
    registered_since_ms: Option<i64>,
    expires_in: Option<u64>,
    last_error: Option<String>,
    last_error_at_ms: Option<i64>,
    ping_rtt_ms: Option<f64>,
    healthy: bool,
    calls_in_progress: u32,
}

pub(super) fn run(global: &GlobalArgs, cmd: TrunkCommand) -> anyhow::Result<()> {
    match cmd {
        TrunkCommand::Status(args) => status(global, args.json),
        TrunkCommand::List => list(global),
        TrunkCommand::Passwd(args) => passwd(global, &args.name, args.password_stdin),
    }
}

fn status(global: &GlobalArgs, json: bool) -> anyhow::Result<()> {
    let admin = global.admin();
    let Some(trunks) = http::admin_list::<Trunk>(admin, "/api/trunks", json, "a trunk list")?
    else {
        return Ok(());
    };
    let mut t = table(&[
        "TRUNK",
        "TARGET",
        "PRIO",
        "REGISTRATION",
        "SINCE (WIB)",
        "PING",
        "CALLS",
        "LAST ERROR",
    ]);
    for tr in trunks {
        let reg = match (tr.registration.as_str(), tr.expires_in) {
            ("registered", Some(e)) => format!("registered ({e} s left)"),
            ("not-required", _) => "not required".to_owned(),
            (r, _) => r.to_owned(),
        };
        let ping = match tr.ping_rtt_ms {
            Some(ms) => format!("{ms:.1} ms"),
            None => "-".to_owned(),
        };
        let health = if tr.healthy { "" } else { " (tried last)" };
        let error = match (&tr.last_error, tr.last_error_at_ms) {
            (Some(e), Some(at)) => format!("{} {e}", wib(at)),
            (Some(e), None) => e.clone(),
            _ => "-".to_owned(),
        };
        t.add_row(vec![
            format!("{}{health}", tr.name),
            format!("{} {}", tr.target, tr.transport),
            tr.priority.to_string(),
            reg,
            tr.registered_since_ms.map_or("-".to_owned(), wib),
            ping,
            tr.calls_in_progress.to_string(),
            error,
        ]);
    }
    println!("{t}");
    Ok(())
}

fn list(global: &GlobalArgs) -> anyhow::Result<()> {
    let plan = load_dialplan(&global.dialplan())?;
    let path = global.db();
    let secrets = if path.exists() {
        Store::open(&path)?.trunk_secrets()?
    } else {
        Vec::new()
    };
    let mut t = table(&[
        "TRUNK",
        "TARGET",
        "PRIO",
        "REGISTERS AS",
        "PASSWORD",
        "FORMAT",
    ]);
    for tr in &plan.province().trunks {
        let (user, pw) = match &tr.register {
            None => ("-".to_owned(), "not needed".to_owned()),
            Some(r) => {
                let set = secrets.iter().find(|s| s.name == tr.name);
                let pw = match set {
                    Some(s) if s.username == r.username && s.realm == r.realm => {
                        format!("set {}", wib(s.updated_at * 1000))
                    }
                    Some(_) => "set for another username or realm: set it again".to_owned(),
                    None => "NOT SET (tambun trunk passwd)".to_owned(),
                };
                (format!("{}@{}", r.username, r.realm), pw)
            }
        };
        t.add_row(vec![
            tr.name.clone(),
            format!("{}:{} {}", tr.host, tr.port, tr.transport),
            tr.priority.to_string(),
            user,
            pw,
            format!("{:?}", tr.number_format).to_lowercase(),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn passwd(global: &GlobalArgs, name: &str, from_stdin: bool) -> anyhow::Result<()> {
    let plan = load_dialplan(&global.dialplan())?;
    let Some(trunk) = plan.province().trunks.iter().find(|t| t.name == name) else {
        let names: Vec<&str> = plan
            .province()
            .trunks
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        anyhow::bail!(
            "there is no trunk '{name}' in {} (trunks: {})",
            plan.province().file.display(),
            names.join(", ")
        );
    };
    let Some(reg) = &trunk.register else {
        anyhow::bail!(
            "trunk '{name}' does not register (it has no [trunk.register] in {}), so it needs no password",
            plan.province().file.display()
        );
    };
    if !from_stdin {
        eprint!(
            "password for {}@{} at trunk '{name}': ",
            reg.username, reg.realm
        );
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("no password given (nothing was changed)");
    }
    let mut store = Store::open(&global.db())?;
    store.set_trunk_password(name, &reg.username, &reg.realm, password, now_ms() / 1000)?;
    println!(
        "set the password of trunk '{name}' ({}@{}); the running switch registers with it within seconds",
        reg.username, reg.realm
    );
    Ok(())
}
