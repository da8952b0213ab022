//! The directory the softphone page shows: every OPD of the dialplan with its enabled
//! extensions, their names and whether they are registered now. Built from the registrar's
//! accounts and location and the dialplan's OPD list; only for a caller who proved a password
//! (the switch checks it, [`crate::switch::Switch::directory`]).

use serde::Serialize;

use crate::dialplan::Dialplan;
use crate::registrar::Registrar;
use crate::types::{Extension, OpdCode};

/// What `GET /phone/api/directory` answers.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Directory {
    /// The extension that asked.
    pub me: Extension,
    pub opds: Vec<DirectoryOpd>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DirectoryOpd {
    pub code: OpdCode,
    pub name: String,
    pub extensions: Vec<DirectoryEntry>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub ext: Extension,
    pub name: String,
    /// Registered now (at least one binding).
    pub online: bool,
}

/// The directory for `me`: the dialplan's OPDs in order (with their names), then any OPD an
/// account names that the plan does not; extensions sorted by number; disabled ones left out.
pub fn build(me: Extension, registrar: &Registrar, plan: &Dialplan) -> Directory {
    let mut opds: Vec<DirectoryOpd> = plan
        .opds()
        .iter()
        .map(|o| DirectoryOpd {
            code: o.code.clone(),
            name: o.name.clone(),
            extensions: Vec::new(),
        })
        .collect();
    let mut accounts: Vec<_> = registrar.accounts().iter().filter(|a| a.enabled).collect();
    accounts.sort_by(|a, b| a.extension.as_str().cmp(b.extension.as_str()));
    for a in accounts {
        let entry = DirectoryEntry {
            ext: a.extension.clone(),
            name: a.name.clone(),
            online: !registrar.location.bindings(&a.extension).is_empty(),
        };
        match opds.iter_mut().find(|o| o.code == a.opd) {
            Some(o) => o.extensions.push(entry),
            None => opds.push(DirectoryOpd {
                code: a.opd.clone(),
                name: a.opd.to_string(),
                extensions: vec![entry],
            }),
        }
    }
    Directory { me, opds }
}
