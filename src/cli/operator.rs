//! `tambun operator add|passwd|rm|list`: the web console's operator accounts. Passwords come
//! from a prompt on the terminal (asked twice, not echoed) or from the first line of stdin with
//! `--password-stdin`, never from the command line; only their PBKDF2 hash is stored. There is
//! no default operator: the console lets nobody in until one is added.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail};
use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use super::output::{print_json, table, utc};
use super::{load_dialplan, open_existing, store_sentence, GlobalArgs};
use crate::console::{password, OperatorName, Scope};
use crate::store::{OpdRow, Store, StoreError};
use crate::types::OpdCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Everything: all OPDs, bans
    Admin,
    /// One OPD's extensions, call records and usage (needs --opd)
    Opd,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Add a console operator; the password is asked for (or read with --password-stdin)
    Add {
        name: OperatorName,
        #[arg(long, value_enum)]
        role: Role,
        /// The OPD an `opd` operator looks after
        #[arg(long, value_name = "CODE")]
        opd: Option<OpdCode>,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password for an operator (and lift its lock-out)
    Passwd {
        name: OperatorName,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an operator (its console sessions end at their next request)
    Rm { name: OperatorName },
    /// List the operators (never their password hashes)
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct OperatorView {
    name: String,
    role: &'static str,
    opd: Option<String>,
    locked_until: Option<i64>,
    created_at: i64,
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(super) fn run(global: &GlobalArgs, cmd: OperatorCommand) -> anyhow::Result<()> {
    let now = now_unix();
    match cmd {
        OperatorCommand::Add {
            name,
            role,
            opd,
            password_stdin,
        } => {
            let role = match role {
                Role::Admin => "admin",
                Role::Opd => "opd",
            };
            let scope = Scope::from_role(role, opd).map_err(|e| match e {
                crate::console::ConsoleError::OpdMissing => {
                    anyhow!("an opd operator needs its OPD: add --opd CODE (see `tambun opd list`)")
                }
                crate::console::ConsoleError::OpdNotAllowed => {
                    anyhow!("an admin operator sees every OPD; leave out --opd")
                }
                other => anyhow!("{other}"),
            })?;
            // The OPD must be one of the dialplan's: sync them as `ext add` does.
            let mut store = Store::open(&global.db())?;
            if scope.opd().is_some() {
                let dialplan = load_dialplan(&global.dialplan())?;
                store.sync_opds(&OpdRow::all_of(&dialplan))?;
            }
            if store.operator(&name)?.is_some() {
                bail!("operator {name} already exists (`tambun operator passwd {name}` sets a new password)");
            }
            let secret = read_new_password(password_stdin)?;
            let hash = new_hash(&secret);
            store
                .add_operator(&name, &scope, &hash, now)
                .map_err(operator_sentence)?;
            match scope.opd() {
                Some(opd) => println!("added operator {name} (opd {opd})"),
                None => println!("added operator {name} (admin)"),
            }
            Ok(())
        }
        OperatorCommand::Passwd {
            name,
            password_stdin,
        } => {
            let mut store = open_existing(global)?;
            if store.operator(&name)?.is_none() {
                bail!("operator {name} does not exist (see `tambun operator list`)");
            }
            let secret = read_new_password(password_stdin)?;
            store
                .set_operator_password(&name, &new_hash(&secret), now)
                .map_err(operator_sentence)?;
            println!("set a new password for operator {name}; its console sessions have ended");
            Ok(())
        }
        OperatorCommand::Rm { name } => {
            let mut store = open_existing(global)?;
            store.remove_operator(&name).map_err(operator_sentence)?;
            println!("removed operator {name}");
            Ok(())
        }
        OperatorCommand::List { json } => {
            let store = open_existing(global)?;
            let list: Vec<OperatorView> = store
                .operators()?
                .into_iter()
                .map(|o| OperatorView {
                    name: o.name.to_string(),
                    role: o.scope.role(),
                    opd: o.scope.opd().map(|c| c.to_string()),
                    locked_until: o.attempts.locked_until.filter(|t| *t > now),
                    created_at: o.created_at,
                })
                .collect();
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("no operators (`tambun operator add NAME --role admin` adds one)");
                return Ok(());
            }
            let mut t = table(&["NAME", "ROLE", "OPD", "LOCKED UNTIL", "CREATED"]);
            for o in &list {
                t.add_row(vec![
                    o.name.clone(),
                    o.role.to_owned(),
                    o.opd.clone().unwrap_or_default(),
                    o.locked_until.map(utc).unwrap_or_default(),
                    utc(o.created_at),
                ]);
            }
            println!("{t}");
            Ok(())
        }
    }
}

/// A new salted hash of `secret` with the current rounds.
pub(crate) fn new_hash(secret: &str) -> String {
    use rand::RngCore;
    let mut salt = [0u8; password::SALT_LEN];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    password::hash(secret, &salt, password::ITERATIONS)
}

fn operator_sentence(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::DuplicateOperator(n) => anyhow!("operator {n} already exists"),
        StoreError::UnknownOperator(n) => {
            anyhow!("operator {n} does not exist (see `tambun operator list`)")
        }
        other => store_sentence(other),
    }
}

/// The new password: the first line of stdin, or asked twice on the terminal without echo.
fn read_new_password(from_stdin: bool) -> anyhow::Result<String> {
    let secret = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        if !std::io::stdin().is_terminal() {
            bail!("standard input is not a terminal: give the password on stdin with --password-stdin");
        }
        let first = prompt_hidden("Password: ")?;
        let second = prompt_hidden("Again: ")?;
        if first != second {
            bail!("the two passwords differ; nothing changed");
        }
        first
    };
    password::check_new(&secret).map_err(|e| anyhow!("{e}; nothing changed"))?;
    Ok(secret)
}

/// Reads one line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use std::os::fd::AsRawFd;
    let mut err = std::io::stderr();
    write!(err, "{prompt}")?;
    err.flush()?;
    let fd = std::io::stdin().as_raw_fd();
    // SAFETY: tcgetattr/tcsetattr on our own stdin with a zeroed termios they fill in.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let have_tty = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if have_tty {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        quiet.c_lflag |= libc::ECHONL;
        // SAFETY: as above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if have_tty {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
