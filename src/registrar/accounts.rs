//! The in-memory directory of extensions the switch authenticates against: number, OPD, HA1s,
//! enabled. Replaced whole when the store changes (the runtime polls SQLite); never written here.

use std::collections::HashMap;

use crate::types::{Extension, OpdCode};

/// One extension as the switch needs it. No password: only the digest HA1s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub extension: Extension,
    pub opd: OpdCode,
    pub name: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub enabled: bool,
    /// Forwarding and do-not-disturb.
    pub features: crate::dialplan::route::Features,
}

/// Extensions by number.
#[derive(Debug, Default, Clone)]
pub struct Accounts {
    by_number: HashMap<Extension, Account>,
}

impl Accounts {
    pub fn new(list: Vec<Account>) -> Accounts {
        Accounts {
            by_number: list.into_iter().map(|a| (a.extension.clone(), a)).collect(),
        }
    }

    pub fn get(&self, ext: &Extension) -> Option<&Account> {
        self.by_number.get(ext)
    }

    pub fn get_mut(&mut self, ext: &Extension) -> Option<&mut Account> {
        self.by_number.get_mut(ext)
    }

    /// Is this extension known and enabled?
    pub fn is_active(&self, ext: &Extension) -> bool {
        self.get(ext).is_some_and(|a| a.enabled)
    }

    /// Every account, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.by_number.values()
    }

    pub fn len(&self) -> usize {
        self.by_number.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_number.is_empty()
    }
}
