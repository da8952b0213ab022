//! The operator CLI behind `tambun …` (clap derive): argument definitions, and the dispatch to
//! one file per command group. Offline commands use the database and the dialplan files; live
//! state (`regs`, `calls`, `conf`, `budget`, `dialplan reload`) goes through the running switch's admin API. Every failure is returned as an
//! error whose message is a sentence for the operator; `main` prints it and exits 1.

pub(crate) mod ban;
mod bench;
mod budget;
mod calls;
mod cdr;
mod conf;
mod dialplan_reload;
mod dialplan_trace;
mod ext;
mod http;
pub(crate) mod import;
mod opd;
mod operator;
mod output;
mod regs;
mod serve;
mod tls;
mod trunk;
pub(crate) mod wib;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use clap::{Args, Parser, Subcommand};

use crate::dialplan::{Dialplan, Opd};
use crate::store::{OpdRow, Store, StoreError};
use crate::types::{Extension, OpdCode};

/// The defaults of the global options.
pub const DEFAULT_DB: &str = "tambun.db";
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8060";
pub const DEFAULT_DIALPLAN: &str = "dialplan";

/// The shortest password accepted anywhere (flags and CSV import).
pub const MIN_PASSWORD_LEN: usize = 6;

/// Tambun: an intranet SIP switch (registrar, stateful proxy, RTP relay).
#[derive(Debug, Parser)]
#[command(name = "tambun", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts, before or after it.
#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// The SQLite database [default: tambun.db]
    #[arg(long, global = true, value_name = "PATH", env = "TAMBUN_DB")]
    pub db: Option<PathBuf>,
    /// The running switch's admin API [default: 127.0.0.1:8060]
    #[arg(long, global = true, value_name = "ADDR:PORT", env = "TAMBUN_ADMIN")]
    pub admin: Option<SocketAddr>,
    /// The directory of dialplan files [default: dialplan]
    #[arg(long, global = true, value_name = "DIR", env = "TAMBUN_DIALPLAN")]
    pub dialplan: Option<PathBuf>,
}

impl GlobalArgs {
    pub fn db(&self) -> PathBuf {
        self.db.clone().unwrap_or_else(|| DEFAULT_DB.into())
    }

    pub fn admin(&self) -> SocketAddr {
        // Holds: the default is a literal socket address.
        self.admin
            .unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("valid default address"))
    }

    pub fn dialplan(&self) -> PathBuf {
        self.dialplan
            .clone()
            .unwrap_or_else(|| DEFAULT_DIALPLAN.into())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the switch
    Serve(serve::ServeArgs),
    /// Manage extensions (phones and their passwords)
    #[command(subcommand)]
    Ext(ext::ExtCommand),
    /// The OPDs (offices) of the dialplan
    #[command(subcommand)]
    Opd(opd::OpdCommand),
    /// Check the dialplan files and trace routing decisions
    #[command(subcommand)]
    Dialplan(dialplan_trace::DialplanCommand),
    /// Show the live registrations of the running switch
    Regs(regs::RegsArgs),
    /// Show the calls in progress on the running switch
    Calls(calls::CallsArgs),
    /// Show the call records, or a usage summary per OPD (`cdr summary --by opd`)
    Cdr(cdr::CdrArgs),
    /// The monthly budgets per OPD of the running switch: used, limit, percent, state
    Budget(budget::BudgetArgs),
    /// The conference rooms of the running switch: who is in them, who talks
    #[command(subcommand)]
    Conf(conf::ConfCommand),
    /// The carriers of the central trunk: status, order, passwords
    #[command(subcommand)]
    Trunk(trunk::TrunkCommand),
    /// The web console's operator accounts (`/console` on the web listener)
    #[command(subcommand)]
    Operator(operator::OperatorCommand),
    /// The guard's ban list: addresses the switch drops silently
    #[command(subcommand)]
    Ban(ban::BanCommand),
    /// The switch's TLS certificate (the fingerprint phones pin)
    #[command(subcommand)]
    Tls(tls::TlsCommand),
    /// Load-test helpers (the relay allocation command of `rtp-relay-bench cmd`)
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        Command::Serve(args) => serve::run(&global, args),
        Command::Ext(cmd) => ext::run(&global, cmd),
        Command::Opd(cmd) => opd::run_opd(&global, cmd),
        Command::Dialplan(cmd) => dialplan_trace::run(&global, cmd),
        Command::Regs(args) => regs::run(&global, args),
        Command::Calls(args) => calls::run(&global, args),
        Command::Cdr(args) => cdr::run(&global, args),
        Command::Budget(args) => budget::run(&global, args),
        Command::Conf(cmd) => conf::run(&global, cmd),
        Command::Trunk(cmd) => trunk::run(&global, cmd),
        Command::Operator(cmd) => operator::run(&global, cmd),
        Command::Ban(cmd) => ban::run(&global, cmd),
        Command::Tls(cmd) => tls::run(&global, cmd),
        Command::Bench(cmd) => bench::run(cmd),
    }
}

/// The error chain as one line: `outer: inner: innermost`.
pub fn error_sentence(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        // Skip a cause whose text is already part of the previous one.
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

// ---- helpers shared by the commands ----

/// Loads the dialplan directory, with its errors one per line.
fn load_dialplan(dir: &Path) -> anyhow::Result<Dialplan> {
    Dialplan::load_dir(dir).map_err(|errors| {
        anyhow!(
            "cannot load the dialplan from {} (`tambun dialplan check` shows why):\n{errors}",
            dir.display()
        )
    })
}

/// Loads the dialplan and opens (creating if needed) the database, with the OPDs synced.
fn open_with_dialplan(global: &GlobalArgs) -> anyhow::Result<(Dialplan, Store)> {
    let dialplan = load_dialplan(&global.dialplan())?;
    let mut store = Store::open(&global.db())?;
    store.sync_opds(&OpdRow::all_of(&dialplan))?;
    Ok((dialplan, store))
}

/// Opens an existing database (a command that only reads or edits extensions must not create
/// an empty database because of a mistyped `--db`).
fn open_existing(global: &GlobalArgs) -> anyhow::Result<Store> {
    let path = global.db();
    if !path.exists() {
        bail!(
            "there is no database at {} (`tambun ext add` or `tambun ext import` creates it; \
             --db names another)",
            path.display()
        );
    }
    Ok(Store::open(&path)?)
}

/// The OPD `code` of the dialplan, or the sentence for an unknown one.
pub(crate) fn find_opd<'a>(dialplan: &'a Dialplan, code: &OpdCode) -> Result<&'a Opd, String> {
    dialplan
        .opd(code)
        .ok_or_else(|| format!("unknown OPD '{code}' (see `tambun opd list`)"))
}

/// Checks that `number` lies in one of the OPD's blocks.
pub(crate) fn check_in_blocks(opd: &Opd, number: &Extension) -> Result<(), String> {
    if opd.blocks.iter().any(|b| b.contains(number)) {
        return Ok(());
    }
    let blocks: Vec<String> = opd.blocks.iter().map(|b| b.to_string()).collect();
    Err(format!(
        "{number} is outside the blocks of {} ({})",
        opd.code,
        blocks.join(", ")
    ))
}

/// Checks a password given by the operator.
pub(crate) fn check_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password must be at least {MIN_PASSWORD_LEN} characters long"
        ));
    }
    if password.chars().count() > 128 {
        return Err("the password must be at most 128 characters long".into());
    }
    if password.chars().any(char::is_control) {
        return Err("the password must not contain control characters".into());
    }
    Ok(())
}

/// Checks a display name.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err("the name must not contain control characters".into());
    }
    if name.chars().count() > 100 {
        return Err("the name must be at most 100 characters long".into());
    }
    Ok(())
}

/// A strong random password: 16 ASCII letters and digits from the OS generator (~95 bits).
pub(crate) fn generate_password() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng;
    rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(16)
        .map(char::from)
        .collect()
}

/// Turns the store errors an operator can cause into their sentences.
pub(crate) fn store_sentence(err: StoreError) -> anyhow::Error {
    match err {
        StoreError::DuplicateExtension(n) => anyhow!("extension {n} already exists"),
        StoreError::UnknownExtension(n) => anyhow!("extension {n} does not exist"),
        StoreError::UnknownOpd(code) => anyhow!("unknown OPD '{code}' (see `tambun opd list`)"),
        StoreError::BadForwardTarget { target, reason } => anyhow!(
            "'{target}' cannot be a forward target: {reason}; give the number as the phone \
             would dial it (1 to {} characters)",
            crate::store::MAX_FORWARD_TARGET_LEN
        ),
        StoreError::BadNoAnswerDelay(secs) => anyhow!(
            "--after {secs}: a no-answer forward must ring between 1 and {} seconds",
            crate::store::MAX_NO_ANSWER_SECS
        ),
        StoreError::ForwardToSelf(n) => anyhow!("extension {n} cannot forward to itself"),
        other => anyhow::Error::from(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["tambun", "--db", "x.db", "ext", "list"]).unwrap();
        let b = Cli::try_parse_from(["tambun", "ext", "list", "--db", "x.db"]).unwrap();
        assert_eq!(a.global.db(), PathBuf::from("x.db"));
        assert_eq!(b.global.db(), PathBuf::from("x.db"));
    }

    #[test]
    fn generated_passwords_are_strong_and_distinct() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert!(check_password(&a).is_ok());
    }

    #[test]
    fn password_rules() {
        assert!(check_password("pw1000").is_ok());
        assert!(check_password("pw100")
            .unwrap_err()
            .contains("at least 6 characters"));
        assert!(check_password("pw1000\n").is_err());
    }

    #[test]
    fn error_chain_joined() {
        let e = anyhow!("inner").context("outer");
        assert_eq!(error_sentence(&e), "outer: inner");
    }
}
