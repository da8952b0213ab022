//! TEMP stub of the dialplan loader (the real one lands from the `dialplan` branch; drop this
//! file at merge). It implements only the contract the CLI needs: OPD code, name, blocks and
//! reception, read from `DIR/*.toml` in a guessed minimal format (top-level keys or an `[opd]`
//! table with `code`, `name`, `blocks = ["1000-1199"]`, `reception`).

use std::fmt;
use std::path::{Path, PathBuf};

use crate::types::{Extension, OpdCode};

/// The loaded dialplan: every OPD with its extension blocks.
#[derive(Debug, Clone)]
pub struct Dialplan {
    opds: Vec<Opd>,
}

/// One office as its dialplan file declares it.
#[derive(Debug, Clone)]
pub struct Opd {
    pub code: OpdCode,
    pub name: String,
    pub blocks: Vec<Block>,
    pub reception: Option<Extension>,
    pub file: PathBuf,
}

/// An inclusive range of extension numbers owned by one OPD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub first: u64,
    pub last: u64,
}

impl Block {
    pub fn contains(&self, ext: &Extension) -> bool {
        (self.first..=self.last).contains(&ext.value())
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// One problem in one dialplan file.
#[derive(Debug, Clone)]
pub struct DialplanError {
    pub file: PathBuf,
    pub line: usize,
    pub reason: String,
}

/// Every problem found while loading a dialplan directory.
#[derive(Debug, Clone)]
pub struct DialplanErrors(pub Vec<DialplanError>);

impl fmt::Display for DialplanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}: {}", e.file.display(), e.line, e.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for DialplanErrors {}

#[derive(serde::Deserialize)]
struct OpdFile {
    code: Option<String>,
    name: Option<String>,
    blocks: Option<Vec<String>>,
    reception: Option<String>,
    opd: Option<Box<OpdFile>>,
}

impl Dialplan {
    pub fn load_dir(dir: &Path) -> Result<Dialplan, DialplanErrors> {
        let fail = |file: &Path, line: usize, reason: String| {
            DialplanErrors(vec![DialplanError {
                file: file.to_owned(),
                line,
                reason,
            }])
        };
        let entries = std::fs::read_dir(dir).map_err(|e| fail(dir, 0, e.to_string()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut opds = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| fail(&file, 0, e.to_string()))?;
            let parsed: OpdFile =
                toml::from_str(&text).map_err(|e| fail(&file, 1, e.message().to_owned()))?;
            let parsed = match parsed.opd {
                Some(inner) => *inner,
                None => parsed,
            };
            let (Some(name), Some(blocks)) = (parsed.name, parsed.blocks) else {
                continue; // not an OPD file (e.g. province.toml)
            };
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            let code = parsed.code.unwrap_or_else(|| stem.into_owned());
            let code: OpdCode = code.parse().map_err(|e| fail(&file, 1, format!("{e}")))?;
            let mut bs = Vec::new();
            for b in blocks {
                let (a, z) = b
                    .split_once('-')
                    .ok_or_else(|| fail(&file, 1, format!("bad block '{b}'")))?;
                let first = a
                    .parse()
                    .map_err(|_| fail(&file, 1, format!("bad block '{b}'")))?;
                let last = z
                    .parse()
                    .map_err(|_| fail(&file, 1, format!("bad block '{b}'")))?;
                bs.push(Block { first, last });
            }
            let reception = match parsed.reception {
                Some(r) => Some(r.parse().map_err(|e| fail(&file, 1, format!("{e}")))?),
                None => None,
            };
            opds.push(Opd {
                code,
                name,
                blocks: bs,
                reception,
                file,
            });
        }
        Ok(Dialplan { opds })
    }

    pub fn opds(&self) -> &[Opd] {
        &self.opds
    }

    pub fn opd(&self, code: &OpdCode) -> Option<&Opd> {
        self.opds.iter().find(|o| &o.code == code)
    }

    pub fn opd_of(&self, ext: &Extension) -> Option<&Opd> {
        self.opds
            .iter()
            .find(|o| o.blocks.iter().any(|b| b.contains(ext)))
    }
}
