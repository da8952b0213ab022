//! Per-extension call features kept on the `extensions` row: call forwarding (always, busy,
//! no answer after N seconds) and do-not-disturb. Set by the CLI (`tambun ext forward`,
//! `tambun ext dnd`) and by the switch (feature codes `*72`/`*73`/`*78`/`*79`); the dialplan
//! evaluator reads them from [`ExtensionRecord::features`](super::ExtensionRecord). No I/O
//! beyond the connection it is given.

use std::fmt;

use rusqlite::params;

use super::{Store, StoreError};
use crate::types::Extension;

/// How long an unanswered call rings before a no-answer forward, when none is given.
pub const DEFAULT_NO_ANSWER_SECS: u32 = 20;
/// The longest no-answer delay accepted.
pub const MAX_NO_ANSWER_SECS: u32 = 300;
/// The longest forward target accepted.
pub const MAX_FORWARD_TARGET_LEN: usize = 32;

/// The features of one extension. Default: no forwarding, DND off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtensionFeatures {
    /// Every call goes to this number instead.
    pub forward_always: Option<String>,
    /// When the extension is busy (486 from all its phones), the call goes here.
    pub forward_busy: Option<String>,
    /// When no phone answers within the seconds given, the call goes here.
    pub forward_no_answer: Option<(String, u32)>,
    /// Do not disturb: calls are refused (busy) without ringing.
    pub dnd: bool,
}

/// Which forward [`Store::set_forward`] changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForwardKind {
    Always,
    Busy,
    NoAnswer,
}

impl fmt::Display for ForwardKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ForwardKind::Always => "always",
            ForwardKind::Busy => "busy",
            ForwardKind::NoAnswer => "no-answer",
        })
    }
}

/// Checks a forward target: 1 to 32 of `0-9 * # +` (a dialled number, as the phone would dial
/// it: an extension, a short code, or a trunk number with its `9` prefix). The error is the
/// reason, for [`StoreError::BadForwardTarget`].
pub fn check_forward_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("it is empty".into());
    }
    if target.len() > MAX_FORWARD_TARGET_LEN {
        return Err(format!(
            "it is longer than {MAX_FORWARD_TARGET_LEN} characters"
        ));
    }
    if let Some(c) = target
        .chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, '*' | '#' | '+')))
    {
        return Err(format!(
            "'{}' is not allowed (only digits, *, # and +)",
            c.escape_default()
        ));
    }
    Ok(())
}

impl Store {
    /// Sets (`Some`) or clears (`None`) one forward of `ext`. `no_answer_secs` is used by
    /// [`ForwardKind::NoAnswer`] only ([`DEFAULT_NO_ANSWER_SECS`] when `None`, at most
    /// [`MAX_NO_ANSWER_SECS`]) and ignored for the other kinds. Errors:
    /// [`StoreError::BadForwardTarget`], [`StoreError::BadNoAnswerDelay`],
    /// [`StoreError::ForwardToSelf`], [`StoreError::UnknownExtension`].
    pub fn set_forward(
        &mut self,
        ext: &Extension,
        kind: ForwardKind,
        target: Option<&str>,
        no_answer_secs: Option<u32>,
    ) -> Result<(), StoreError> {
        if let Some(t) = target {
            check_forward_target(t).map_err(|reason| StoreError::BadForwardTarget {
                target: t.to_owned(),
                reason,
            })?;
            if t == ext.as_str() {
                return Err(StoreError::ForwardToSelf(ext.clone()));
            }
        }
        let n = match kind {
            ForwardKind::Always => self.conn.execute(
                "UPDATE extensions SET forward_always = ?2, updated_at = unixepoch() \
                 WHERE number = ?1",
                params![ext.as_str(), target],
            )?,
            ForwardKind::Busy => self.conn.execute(
                "UPDATE extensions SET forward_busy = ?2, updated_at = unixepoch() \
                 WHERE number = ?1",
                params![ext.as_str(), target],
            )?,
            ForwardKind::NoAnswer => {
                let secs = match target {
                    Some(_) => {
                        let secs = no_answer_secs.unwrap_or(DEFAULT_NO_ANSWER_SECS);
                        if !(1..=MAX_NO_ANSWER_SECS).contains(&secs) {
                            return Err(StoreError::BadNoAnswerDelay(secs));
                        }
                        Some(secs)
                    }
                    None => None,
                };
                self.conn.execute(
                    "UPDATE extensions SET forward_no_answer = ?2, forward_no_answer_secs = ?3, \
                     updated_at = unixepoch() WHERE number = ?1",
                    params![ext.as_str(), target, secs],
                )?
            }
        };
        if n == 0 {
            return Err(StoreError::UnknownExtension(ext.clone()));
        }
        Ok(())
    }

    /// Turns do-not-disturb on or off for `ext`.
    pub fn set_dnd(&mut self, ext: &Extension, on: bool) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE extensions SET dnd = ?2, updated_at = unixepoch() WHERE number = ?1",
            params![ext.as_str(), on],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownExtension(ext.clone()));
        }
        Ok(())
    }
}

/// Reads the feature columns `forward_always, forward_busy, forward_no_answer,
/// forward_no_answer_secs, dnd`, in this order, starting at column `first`.
pub(super) fn features_from_row(
    r: &rusqlite::Row,
    first: usize,
) -> rusqlite::Result<ExtensionFeatures> {
    let no_answer: Option<String> = r.get(first + 2)?;
    let secs: Option<u32> = r.get(first + 3)?;
    Ok(ExtensionFeatures {
        forward_always: r.get(first)?,
        forward_busy: r.get(first + 1)?,
        forward_no_answer: no_answer.map(|t| (t, secs.unwrap_or(DEFAULT_NO_ANSWER_SECS))),
        dnd: r.get(first + 4)?,
    })
}

impl ExtensionFeatures {
    /// The same features as the dialplan evaluator takes them.
    pub fn to_routing(&self) -> crate::dialplan::route::Features {
        crate::dialplan::route::Features {
            forward_always: self.forward_always.clone(),
            forward_busy: self.forward_busy.clone(),
            forward_no_answer: self.forward_no_answer.clone(),
            dnd: self.dnd,
        }
    }
}
