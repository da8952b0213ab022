//! `tambun ext …`: add, list, show, passwd, rm, disable, enable, forward, dnd (import is in
//! `import.rs`). Works on the database; `add` also reads the dialplan to check the OPD and its
//! blocks.

use std::path::PathBuf;

use anyhow::bail;
use clap::{ArgGroup, Args, Subcommand, ValueEnum};
use serde::Serialize;

use super::output::{print_json, table, utc};
use super::{
    check_in_blocks, check_name, check_password, find_opd, generate_password, import,
    open_existing, open_with_dialplan, store_sentence, GlobalArgs,
};
use crate::store::{
    check_forward_target, ExtensionFeatures, ExtensionRecord, ForwardKind, StoreError,
};
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
    /// Set or clear call forwarding
    ///
    /// Three forwards, each set on its own and combinable: --always (every call goes to the
    /// target, the phone does not ring), --busy (when the extension is busy), --no-answer
    /// (when nobody answers within --after seconds, 20 by default). A target is a number as
    /// the phone would dial it: another extension, a short code, or an outside number with
    /// its trunk prefix (digits, *, # and +; at most 32). --off clears one forward, or all of
    /// them. The phone sets the same forwards with *72<number> (on) and *73 (off).
    ///
    /// Examples:
    ///   tambun ext forward 1000 --always 2301
    ///   tambun ext forward 1000 --busy 1001 --no-answer 1001 --after 15
    ///   tambun ext forward 1000 --off busy
    ///   tambun ext forward 1000 --off
    #[command(verbatim_doc_comment)]
    Forward(ForwardArgs),
    /// Turn do-not-disturb on or off: calls to the extension get busy without ringing
    /// (busy forwarding still applies); the phone uses *78 (on) and *79 (off)
    Dnd {
        /// on or off
        state: OnOff,
        number: Extension,
    },
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

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["always", "busy", "no_answer", "off"])
))]
pub struct ForwardArgs {
    /// The extension whose calls are forwarded
    number: Extension,
    /// Forward every call to NUMBER
    #[arg(long, value_name = "NUMBER")]
    always: Option<String>,
    /// Forward to NUMBER when the extension is busy
    #[arg(long, value_name = "NUMBER")]
    busy: Option<String>,
    /// Forward to NUMBER when nobody answers within --after seconds
    #[arg(long, value_name = "NUMBER")]
    no_answer: Option<String>,
    /// Seconds of ringing before the no-answer forward [default: 20]
    #[arg(long, value_name = "SECS", requires = "no_answer")]
    after: Option<u32>,
    /// Clear a forward: always, busy, no-answer, or all (the default)
    #[arg(
        long,
        value_enum,
        value_name = "WHICH",
        num_args = 0..=1,
        default_missing_value = "all",
        conflicts_with_all = ["always", "busy", "no_answer"]
    )]
    off: Option<ForwardOff>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ForwardOff {
    Always,
    Busy,
    NoAnswer,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
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
    forward: ForwardView<'a>,
    dnd: bool,
}

/// The forwards in `ext show --json`; `null` when off.
#[derive(Debug, Serialize)]
struct ForwardView<'a> {
    always: Option<&'a str>,
    busy: Option<&'a str>,
    no_answer: Option<NoAnswerView<'a>>,
}

#[derive(Debug, Serialize)]
struct NoAnswerView<'a> {
    target: &'a str,
    after_secs: u32,
}

impl<'a> From<&'a ExtensionFeatures> for ForwardView<'a> {
    fn from(f: &'a ExtensionFeatures) -> Self {
        ForwardView {
            always: f.forward_always.as_deref(),
            busy: f.forward_busy.as_deref(),
            no_answer: f
                .forward_no_answer
                .as_ref()
                .map(|(target, after_secs)| NoAnswerView {
                    target,
                    after_secs: *after_secs,
                }),
        }
    }
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
        ExtCommand::Forward(args) => forward(global, args),
        ExtCommand::Dnd { state, number } => {
            let mut store = open_existing(global)?;
            let on = state == OnOff::On;
            store.set_dnd(&number, on).map_err(store_sentence)?;
            if on {
                println!("do-not-disturb is on for extension {number} (its calls get busy)");
            } else {
                println!("do-not-disturb is off for extension {number}");
            }
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
        forward: ForwardView::from(&r.features),
        dnd: r.features.dnd,
    };
    if json {
        return print_json(&detail);
    }
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let f = &r.features;
    println!("number:            {}", detail.number);
    println!("opd:               {}", detail.opd);
    println!("name:              {}", detail.name);
    println!("enabled:           {}", yes_no(detail.enabled));
    println!("do-not-disturb:    {}", yes_no(f.dnd));
    println!(
        "forward always:    {}",
        f.forward_always.as_deref().unwrap_or("-")
    );
    println!(
        "forward busy:      {}",
        f.forward_busy.as_deref().unwrap_or("-")
    );
    println!(
        "forward no answer: {}",
        f.forward_no_answer
            .as_ref()
            .map_or_else(|| "-".to_owned(), |(t, s)| format!("{t} after {s} s"))
    );
    println!("created:           {}", detail.created_at);
    println!("updated:           {}", detail.updated_at);
    Ok(())
}

fn forward(global: &GlobalArgs, args: ForwardArgs) -> anyhow::Result<()> {
    let number = &args.number;
    let mut changes: Vec<(ForwardKind, Option<&str>)> = Vec::new();
    match args.off {
        Some(ForwardOff::Always) => changes.push((ForwardKind::Always, None)),
        Some(ForwardOff::Busy) => changes.push((ForwardKind::Busy, None)),
        Some(ForwardOff::NoAnswer) => changes.push((ForwardKind::NoAnswer, None)),
        Some(ForwardOff::All) => changes.extend(
            [
                ForwardKind::Always,
                ForwardKind::Busy,
                ForwardKind::NoAnswer,
            ]
            .map(|k| (k, None)),
        ),
        None => {
            for (kind, target) in [
                (ForwardKind::Always, &args.always),
                (ForwardKind::Busy, &args.busy),
                (ForwardKind::NoAnswer, &args.no_answer),
            ] {
                if let Some(t) = target {
                    // Check every target before changing anything.
                    check_forward_target(t).map_err(|reason| {
                        store_sentence(StoreError::BadForwardTarget {
                            target: t.clone(),
                            reason,
                        })
                    })?;
                    changes.push((kind, Some(t.as_str())));
                }
            }
        }
    }
    let mut store = open_existing(global)?;
    for (kind, target) in changes {
        let secs = (kind == ForwardKind::NoAnswer)
            .then_some(args.after)
            .flatten();
        store
            .set_forward(number, kind, target, secs)
            .map_err(store_sentence)?;
    }
    let Some(r) = store.extension(number)? else {
        bail!("extension {number} does not exist");
    };
    println!("{}", describe_forwards(number, &r.features));
    Ok(())
}

/// One line: what extension `number` forwards now.
fn describe_forwards(number: &Extension, f: &ExtensionFeatures) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &f.forward_always {
        parts.push(format!("always to {t}"));
    }
    if let Some(t) = &f.forward_busy {
        parts.push(format!("when busy to {t}"));
    }
    if let Some((t, secs)) = &f.forward_no_answer {
        parts.push(format!("after {secs} s without answer to {t}"));
    }
    if parts.is_empty() {
        format!("extension {number} does not forward calls")
    } else {
        format!("extension {number} forwards {}", parts.join("; "))
    }
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
