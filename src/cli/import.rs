//! `tambun ext import FILE.csv`: validates every line first (reporting each bad one as
//! `FILE:LINE: reason`), writes generated passwords to the operator's file (mode 0600), then
//! imports in one transaction: all or nothing, unless `--skip-bad`. The web console's import
//! (`runtime::console`) checks lines with the same [`check_lines`] and imports the good ones.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    check_in_blocks, check_name, check_password, find_opd, generate_password, open_with_dialplan,
    store_sentence, GlobalArgs,
};
use crate::dialplan::Dialplan;
use crate::store::NewExtension;
use crate::types::{Extension, OpdCode};

/// One valid line; `password` is `None` when one must be generated.
pub(crate) struct GoodRow {
    pub(crate) number: Extension,
    pub(crate) opd: OpdCode,
    pub(crate) name: String,
    pub(crate) password: Option<String>,
}

/// The outcome of checking a whole file.
pub(crate) struct Checked {
    pub(crate) good: Vec<GoodRow>,
    /// (line, reason), in file order.
    pub(crate) bad: Vec<(u64, String)>,
}

pub(super) fn run(
    global: &GlobalArgs,
    file: &Path,
    skip_bad: bool,
    passwords_out: Option<&Path>,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let (dialplan, mut store) = open_with_dialplan(global)?;
    let existing: BTreeSet<Extension> = store
        .extensions(None)?
        .into_iter()
        .map(|r| r.number)
        .collect();
    let checked = check_lines(&bytes, &dialplan, &existing);

    for (line, reason) in &checked.bad {
        eprintln!("{}:{line}: {reason}", file.display());
    }
    if !checked.bad.is_empty() && !skip_bad {
        bail!(
            "{} bad line(s) in {}; nothing imported (fix them, or use --skip-bad to import the \
             {} good line(s))",
            checked.bad.len(),
            file.display(),
            checked.good.len()
        );
    }
    if checked.good.is_empty() {
        if checked.bad.is_empty() {
            bail!("{} lists no extensions", file.display());
        }
        bail!("no line of {} can be imported", file.display());
    }

    let to_generate = checked.good.iter().filter(|r| r.password.is_none()).count();
    if to_generate > 0 && passwords_out.is_none() {
        bail!(
            "{to_generate} line(s) of {} have no password; name a file for the generated \
             passwords with --passwords-out FILE",
            file.display()
        );
    }

    let mut generated: Vec<(Extension, String)> = Vec::new();
    let rows: Vec<NewExtension> = checked
        .good
        .into_iter()
        .map(|r| {
            let password = r.password.unwrap_or_else(|| {
                let pw = generate_password();
                generated.push((r.number.clone(), pw.clone()));
                pw
            });
            NewExtension {
                number: r.number,
                opd: r.opd,
                name: r.name,
                password,
            }
        })
        .collect();

    // Write the passwords first: if that fails nothing is imported; if the import fails the
    // file is removed again.
    let out = match (passwords_out, generated.is_empty()) {
        (Some(path), false) => {
            write_passwords(path, &generated)?;
            Some(path)
        }
        _ => None,
    };

    let bar = progress_bar(rows.len() as u64);
    let result = store.import(&rows, |n| {
        if n % 64 == 0 || n == rows.len() {
            bar.set_position(n as u64)
        }
    });
    bar.finish_and_clear();
    if let Err(e) = result {
        if let Some(path) = out {
            let _ = std::fs::remove_file(path);
        }
        return Err(store_sentence(e).context(format!("nothing imported from {}", file.display())));
    }

    println!(
        "imported {} extension(s) from {}",
        rows.len(),
        file.display()
    );
    if let Some(path) = out {
        println!(
            "wrote {} generated password(s) to {}",
            generated.len(),
            path.display()
        );
    }
    if !checked.bad.is_empty() {
        println!("skipped {} bad line(s)", checked.bad.len());
    }
    Ok(())
}

/// Checks every line; nothing is written.
pub(crate) fn check_lines(
    bytes: &[u8],
    dialplan: &Dialplan,
    existing: &BTreeSet<Extension>,
) -> Checked {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(bytes);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    let mut first_line_of: BTreeMap<Extension, u64> = BTreeMap::new();
    let mut first = true;
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                let reason = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_owned(),
                    _ => e.to_string(),
                };
                bad.push((line, reason));
                first = false;
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        if std::mem::take(&mut first) && is_header(&record) {
            continue;
        }
        match check_record(&record, dialplan, existing, &first_line_of) {
            Ok(row) => {
                first_line_of.insert(row.number.clone(), line);
                good.push(row);
            }
            Err(reason) => bad.push((line, reason)),
        }
    }
    Checked { good, bad }
}

fn is_header(record: &csv::StringRecord) -> bool {
    let fields: Vec<String> = record.iter().map(str::to_ascii_lowercase).collect();
    fields == ["number", "opd", "name"] || fields == ["number", "opd", "name", "password"]
}

fn check_record(
    record: &csv::StringRecord,
    dialplan: &Dialplan,
    existing: &BTreeSet<Extension>,
    first_line_of: &BTreeMap<Extension, u64>,
) -> Result<GoodRow, String> {
    if !(3..=4).contains(&record.len()) {
        return Err(format!(
            "expected 3 or 4 columns (number,opd,name[,password]), found {}",
            record.len()
        ));
    }
    let number: Extension = record[0].parse().map_err(|e| format!("{e}"))?;
    let opd: OpdCode = record[1].parse().map_err(|e| format!("{e}"))?;
    let name = record[2].to_owned();
    let office = find_opd(dialplan, &opd)?;
    check_in_blocks(office, &number)?;
    if let Some(line) = first_line_of.get(&number) {
        return Err(format!("extension {number} is already on line {line}"));
    }
    if existing.contains(&number) {
        return Err(format!("extension {number} already exists"));
    }
    check_name(&name)?;
    let password = match record.get(3) {
        Some(pw) if !pw.is_empty() => {
            check_password(pw)?;
            Some(pw.to_owned())
        }
        _ => None,
    };
    Ok(GoodRow {
        number,
        opd,
        name,
        password,
    })
}

/// Writes `number,password` lines to a new file readable only by its owner.
fn write_passwords(path: &Path, generated: &[(Extension, String)]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!(
                "{} already exists; name a new file for --passwords-out (it will hold passwords)",
                path.display()
            )
        } else {
            anyhow::anyhow!("cannot create {}: {e}", path.display())
        }
    })?;
    let mut w = std::io::BufWriter::new(file);
    for (number, password) in generated {
        writeln!(w, "{number},{password}")?;
    }
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("importing {bar:40} {pos}/{len} ({eta})") {
        bar.set_style(style);
    }
    bar
}
