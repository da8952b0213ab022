//! `tambun opd list` and `tambun dialplan check`: the OPDs of the dialplan files, with their
//! blocks and how many extensions each has in the database. (`dialplan reload` is in
//! `dialplan_reload.rs`.)

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;

use super::output::{print_json, table};
use super::{open_with_dialplan, GlobalArgs};
use crate::dialplan::Dialplan;

#[derive(Debug, Subcommand)]
pub enum OpdCommand {
    /// List the OPDs of the dialplan files, their blocks and extension counts
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DialplanCommand {
    /// Load the dialplan directory and report every problem as file:line: reason
    Check {
        /// The directory to check [default: the --dialplan directory]
        dir: Option<PathBuf>,
    },
    /// Make the running switch reload its dialplan; a bad plan is refused with its errors and
    /// the switch keeps the previous one (exit code 1)
    Reload,
}

#[derive(Debug, Serialize)]
struct OpdView<'a> {
    code: &'a str,
    name: &'a str,
    blocks: Vec<String>,
    extensions: u64,
}

pub(super) fn run_opd(global: &GlobalArgs, cmd: OpdCommand) -> anyhow::Result<()> {
    let OpdCommand::List { json } = cmd;
    let (dialplan, store) = open_with_dialplan(global)?;
    let counts = store.extension_counts()?;
    let views: Vec<OpdView> = dialplan
        .opds()
        .iter()
        .map(|o| OpdView {
            code: o.code.as_str(),
            name: &o.name,
            blocks: o.blocks.iter().map(|b| b.to_string()).collect(),
            extensions: counts.get(&o.code).copied().unwrap_or(0),
        })
        .collect();
    for (code, n) in &counts {
        if dialplan.opd(code).is_none() {
            eprintln!(
                "warning: {n} extension(s) belong to OPD '{code}', which no dialplan file declares"
            );
        }
    }
    if json {
        return print_json(&views);
    }
    let mut t = table(&["CODE", "NAME", "BLOCKS", "EXTENSIONS"]);
    for v in &views {
        t.add_row(vec![
            v.code.to_owned(),
            v.name.to_owned(),
            v.blocks.join(", "),
            v.extensions.to_string(),
        ]);
    }
    println!("{t}");
    Ok(())
}

pub(super) fn run_dialplan(global: &GlobalArgs, cmd: DialplanCommand) -> anyhow::Result<()> {
    let dir = match cmd {
        DialplanCommand::Check { dir } => dir,
        DialplanCommand::Reload => return super::dialplan_reload::run(global),
    };
    let dir = dir.unwrap_or_else(|| global.dialplan());
    match Dialplan::load_dir(&dir) {
        Ok(dialplan) => {
            println!(
                "{} OPDs, {} rooms, ok",
                dialplan.opds().len(),
                dialplan.rooms().len()
            );
            Ok(())
        }
        Err(errors) => {
            eprintln!("{errors}");
            bail!(
                "the dialplan in {} has {} problem(s)",
                dir.display(),
                errors.0.len()
            )
        }
    }
}
