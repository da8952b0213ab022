//! `tambun ext …`: add, list, show, passwd, rm, disable, enable (import is in `import.rs`).
//! Works on the database; `add` also reads the dialplan to check the OPD and its blocks.

use std::path::PathBuf;

use anyhow::bail;
use clap::Subcommand;
use serde::Serialize;

use super::output::{print_json, table, utc};
use super::{
    check_in_blocks, check_name, check_password, find_opd, generate_password, import,
    open_existing, open_with_dialplan, store_sentence, GlobalArgs,
};
use crate::store::ExtensionRecord;
use crate::types::{Extension, OpdCode};

#[derive(Debug, Subcommand)]
pub enum ExtCommand {
    /// Add an extension; without --password a strong one is generated and printed once
    Add {
        number: Extension,
        /// The OPD (office) that owns the number
        #[arg(long, value_name = "CODE")]
        opd: OpdCode,
        /// Display name
        #[arg(long, default_value = "")]
        name: String,
        /// The SIP password (at least 6 characters)
        #[arg(long, value_name = "SECRET")]
        password: Option<String>,
    },
    /// List extensions
    List {
        /// Only this OPD's extensions
        #[arg(long, value_name = "CODE")]
        opd: Option<OpdCode>,
        #[arg(long)]
        json: bool,
    },
    /// Show one extension (never its password hashes)
    Show {
        number: Extension,
        #[arg(long)]
        json: bool,
    },
    /// Set a new password; without --password a strong one is generated and printed once
    Passwd {
        number: Extension,
        #[arg(long, value_name = "SECRET")]
        password: Option<String>,
    },
    /// Remove an extension (and drop its registrations)
    Rm { number: Extension },
    /// Disable an extension (it cannot register; its registrations are dropped)
    Disable { number: Extension },
    /// Enable a disabled extension
    Enable { number: Extension },
    /// Import extensions from a CSV file: number,opd,name[,password]
    ///
    /// One extension per line: `number,opd,name[,password]`. A first line that is exactly the
    /// header `number,opd,name[,password]` is skipped, as are blank lines and lines starting
    /// with `#`. Fields may be quoted ("Staff, Setda"). Every line is checked first (number,
    /// known OPD, number inside the OPD's blocks, duplicates in the file and in the database,
    /// password of at least 6 characters) and every bad line is reported as FILE:LINE: reason.
    /// The import is one transaction: all lines or none, unless --skip-bad. Lines without a
    /// password get a generated one, written to the --passwords-out file (required then).
    Import {
        /// The CSV file
        file: PathBuf,
        /// Import the good lines even if some are bad (the bad ones are still listed)
        #[arg(long)]
        skip_bad: bool,
        /// Where to write generated passwords (`number,password` lines, mode 0600)
        #[arg(long, value_name = "FILE")]
        passwords_out: Option<PathBuf>,
    },
}

/// The public view of an extension: no HA1 values.
#[derive(Debug, Serialize)]
struct ExtensionView<'a> {
    number: &'a str,
    opd: &'a str,
    name: &'a str,
    enabled: bool,
}

/// `ext show --json`.
#[derive(Debug, Serialize)]
struct ExtensionDetail<'a> {
    number: &'a str,
    opd: &'a str,
    name: &'a str,
    enabled: bool,
    created_at: String,
    updated_at: String,
}

impl<'a> From<&'a ExtensionRecord> for ExtensionView<'a> {
    fn from(r: &'a ExtensionRecord) -> Self {
        ExtensionView {
            number: r.number.as_str(),
            opd: r.opd.as_str(),
            name: &r.name,
            enabled: r.enabled,
        }
    }
}

pub(super) fn run(global: &GlobalArgs, cmd: ExtCommand) -> anyhow::Result<()> {
    match cmd {
        ExtCommand::Add {
            number,
            opd,
            name,
            password,
        } => add(global, &number, &opd, &name, password),
        ExtCommand::List { opd, json } => list(global, opd.as_ref(), json),
        ExtCommand::Show { number, json } => show(global, &number, json),
        ExtCommand::Passwd { number, password } => passwd(global, &number, password),
        ExtCommand::Rm { number } => {
            let mut store = open_existing(global)?;
            store.remove_extension(&number).map_err(store_sentence)?;
            println!("removed extension {number}");
            Ok(())
        }
        ExtCommand::Disable { number } => {
            let mut store = open_existing(global)?;
            store.set_enabled(&number, false).map_err(store_sentence)?;
            println!("disabled extension {number} (its registrations are dropped)");
            Ok(())
        }
        ExtCommand::Enable { number } => {
            let mut store = open_existing(global)?;
            store.set_enabled(&number, true).map_err(store_sentence)?;
            println!("enabled extension {number}");
            Ok(())
        }
        ExtCommand::Import {
            file,
            skip_bad,
            passwords_out,
        } => import::run(global, &file, skip_bad, passwords_out.as_deref()),
    }
}

fn add(
    global: &GlobalArgs,
    number: &Extension,
    opd: &OpdCode,
    name: &str,
    password: Option<String>,
) -> anyhow::Result<()> {
    check_name(name).map_err(anyhow::Error::msg)?;
    if let Some(pw) = &password {
        check_password(pw).map_err(anyhow::Error::msg)?;
    }
    let (dialplan, mut store) = open_with_dialplan(global)?;
    let office = find_opd(&dialplan, opd).map_err(anyhow::Error::msg)?;
    check_in_blocks(office, number).map_err(anyhow::Error::msg)?;
    if store.extension(number)?.is_some() {
        bail!("extension {number} already exists");
    }
    let generated = password.is_none();
    let password = password.unwrap_or_else(generate_password);
    store
        .add_extension(number, opd, name, &password)
        .map_err(store_sentence)?;
    println!("added extension {number} to {opd}");
    if generated {
        print_generated(&password);
    }
    Ok(())
}

fn print_generated(password: &str) {
    println!("password: {password}");
    eprintln!("(the password is shown only this once; give it to the phone's user now)");
}

fn list(global: &GlobalArgs, opd: Option<&OpdCode>, json: bool) -> anyhow::Result<()> {
    let store = open_existing(global)?;
    if let Some(code) = opd {
        let known = store.opds()?.iter().any(|o| &o.code == code);
        if !known && !store.extension_counts()?.contains_key(code) {
            bail!("unknown OPD '{code}' (see `tambun opd list`)");
        }
    }
    let records = store.extensions(opd)?;
    if json {
        let views: Vec<ExtensionView> = records.iter().map(ExtensionView::from).collect();
        return print_json(&views);
    }
    if records.is_empty() {
        println!("no extensions");
        return Ok(());
    }
    let mut t = table(&["NUMBER", "OPD", "NAME", "ENABLED"]);
    for r in &records {
        t.add_row(vec![
            r.number.to_string(),
            r.opd.to_string(),
            r.name.clone(),
            if r.enabled { "yes" } else { "no" }.to_owned(),
        ]);
    }
    println!("{t}");
    Ok(())
}

fn show(global: &GlobalArgs, number: &Extension, json: bool) -> anyhow::Result<()> {
    let store = open_existing(global)?;
    let Some(r) = store.extension(number)? else {
        bail!("extension {number} does not exist");
    };
    let detail = ExtensionDetail {
        number: r.number.as_str(),
        opd: r.opd.as_str(),
        name: &r.name,
        enabled: r.enabled,
        created_at: utc(r.created_at),
        updated_at: utc(r.updated_at),
    };
    if json {
        return print_json(&detail);
    }
    println!("number:  {}", detail.number);
    println!("opd:     {}", detail.opd);
    println!("name:    {}", detail.name);
    println!("enabled: {}", if detail.enabled { "yes" } else { "no" });
    println!("created: {}", detail.created_at);
    println!("updated: {}", detail.updated_at);
    Ok(())
}

fn passwd(global: &GlobalArgs, number: &Extension, password: Option<String>) -> anyhow::Result<()> {
    if let Some(pw) = &password {
        check_password(pw).map_err(anyhow::Error::msg)?;
    }
    let mut store = open_existing(global)?;
    let generated = password.is_none();
    let password = password.unwrap_or_else(generate_password);
    store
        .set_password(number, &password)
        .map_err(store_sentence)?;
    println!("changed the password of extension {number}");
    if generated {
        print_generated(&password);
    }
    Ok(())
}
