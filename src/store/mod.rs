//! The durable copy: SQLite (WAL) holding the realm, OPDs, extensions (digest HA1 per
//! algorithm, never a password, and their call features), registrations, call records and the guard's
//! ban list. Synchronous: the runtime calls it from a
//! blocking thread and serves SIP from memory; the CLI writes the same file, and a running
//! switch notices through [`Store::data_version`]. No async, no locks, no caching of rows.

mod bans;
mod cdr;
mod features;
mod migrations;
mod registrations;
mod trunk_secrets;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{ffi, params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::sip::auth::{ha1_hex, Algorithm};
use crate::types::{Extension, OpdCode};
use migrations::MIGRATIONS;

pub use cdr::{
    CdrFilter, CdrRecord, CdrRow, Disposition, MediaTotals, OpdUsage, OpenCallOp, TrunkCallRow,
    UnknownDisposition, Usage,
};
pub use features::{
    check_forward_target, ExtensionFeatures, ForwardKind, DEFAULT_NO_ANSWER_SECS,
    MAX_FORWARD_TARGET_LEN, MAX_NO_ANSWER_SECS,
};

/// The realm written into a new database when none is given. HA1 values depend on it, so it
/// is fixed when the database is created and never changes afterwards.
pub const DEFAULT_REALM: &str = "tambun";

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why a store operation failed. Each variant the operator can cause has its own case, so the
/// CLI can say it in a sentence.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "store: {} has schema version {found}, newer than this tambun understands ({supported}); \
         use a newer tambun",
        path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("store: migration to schema version {version} failed: {source}")]
    Migration {
        version: i64,
        source: rusqlite::Error,
    },
    #[error("store: extension {0} already exists")]
    DuplicateExtension(Extension),
    #[error("store: extension {0} does not exist")]
    UnknownExtension(Extension),
    #[error("store: unknown OPD '{0}'")]
    UnknownOpd(OpdCode),
    #[error("store: '{target}' is not a valid forward target: {reason}")]
    BadForwardTarget { target: String, reason: String },
    #[error(
        "store: a no-answer forward must ring between 1 and {MAX_NO_ANSWER_SECS} seconds, \
         not {0}"
    )]
    BadNoAnswerDelay(u32),
    #[error("store: extension {0} cannot forward to itself")]
    ForwardToSelf(Extension),
    #[error("store: the database has no realm (not created by tambun?)")]
    NoRealm,
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// An OPD as the dialplan files declare it, mirrored into the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpdRow {
    pub code: OpdCode,
    pub name: String,
    /// Blocks as written, e.g. `"1000-1199"`.
    pub blocks: Vec<String>,
}

impl OpdRow {
    /// The OPDs of a loaded dialplan, as rows to sync.
    pub fn all_of(dialplan: &crate::dialplan::Dialplan) -> Vec<OpdRow> {
        dialplan
            .opds()
            .iter()
            .map(|o| OpdRow {
                code: o.code.clone(),
                name: o.name.clone(),
                blocks: o.blocks.iter().map(|b| b.to_string()).collect(),
            })
            .collect()
    }
}

/// An extension as stored. `Debug` leaves out the HA1 values.
#[derive(Clone, PartialEq, Eq)]
pub struct ExtensionRecord {
    pub number: Extension,
    pub opd: OpdCode,
    pub name: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
    pub enabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Forwarding and do-not-disturb.
    pub features: ExtensionFeatures,
}

impl ExtensionRecord {
    /// The stored HA1 for `algorithm`.
    pub fn ha1(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

impl fmt::Debug for ExtensionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtensionRecord")
            .field("number", &self.number)
            .field("opd", &self.opd)
            .field("name", &self.name)
            .field("enabled", &self.enabled)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

/// One extension to create (by [`Store::import`]). `Debug` leaves out the password.
#[derive(Clone, PartialEq, Eq)]
pub struct NewExtension {
    pub number: Extension,
    pub opd: OpdCode,
    pub name: String,
    pub password: String,
}

impl fmt::Debug for NewExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewExtension")
            .field("number", &self.number)
            .field("opd", &self.opd)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A connection to the Tambun database.
pub struct Store {
    conn: Connection,
    realm: String,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.conn.path())
            .field("realm", &self.realm)
            .finish()
    }
}

const EXTENSION_COLUMNS: &str = "number, opd, name, ha1_md5, ha1_sha256, enabled, created_at, \
     updated_at, forward_always, forward_busy, forward_no_answer, forward_no_answer_secs, dnd";
const INSERT_EXTENSION: &str = "INSERT INTO extensions (number, opd, name, ha1_md5, ha1_sha256, \
     enabled, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 1, unixepoch(), unixepoch())";

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    /// A new database gets the realm [`DEFAULT_REALM`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_realm(path, DEFAULT_REALM)
    }

    /// Like [`Store::open`]; `realm` is used only if the database is being created.
    pub fn open_with_realm(path: &Path, realm: &str) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite refused WAL mode");
        }
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(open_err)?;
        migrate(&mut conn, path, realm)?;
        let realm = conn
            .query_row("SELECT value FROM meta WHERE key = 'realm'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
            .ok_or(StoreError::NoRealm)?;
        Ok(Store { conn, realm })
    }

    /// The digest realm, fixed when the database was created.
    pub fn realm(&self) -> Result<String, StoreError> {
        Ok(self.realm.clone())
    }

    /// The secret the switch signs its dialogs with (Record-Route tokens, Via branches), made
    /// on first use and kept in `meta`, so dialogs set up before a restart are recognised
    /// after it. A value that is not 32 bytes of hex (edited by hand) is replaced, which
    /// only ends the recognition of older dialogs.
    pub fn dialog_secret(&mut self) -> Result<[u8; 32], StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let kept: Option<String> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'dialog_secret'",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let decoded = kept
            .as_deref()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| <[u8; 32]>::try_from(b).ok());
        let secret = match decoded {
            Some(s) => s,
            None => {
                if kept.is_some() {
                    tracing::warn!(
                        "store: the kept dialog secret is unreadable; a new one is made"
                    );
                }
                use rand::RngCore;
                let mut s = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut s);
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('dialog_secret', ?1) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [hex::encode(s)],
                )?;
                s
            }
        };
        tx.commit()?;
        Ok(secret)
    }

    /// `PRAGMA data_version`: changes whenever another connection (e.g. the CLI) commits.
    /// The switch polls it to know when to reload extensions.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?)
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    // ---- OPDs ----

    /// Makes the `opds` table equal to `opds` (the dialplan files). Writes nothing when they
    /// already agree, so a running switch is not woken for nothing.
    pub fn sync_opds(&mut self, opds: &[OpdRow]) -> Result<(), StoreError> {
        let current = self.opds()?;
        let want: BTreeMap<&OpdCode, &OpdRow> = opds.iter().map(|o| (&o.code, o)).collect();
        let have: BTreeMap<&OpdCode, &OpdRow> = current.iter().map(|o| (&o.code, o)).collect();
        if want == have {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        for code in have.keys().filter(|c| !want.contains_key(*c)) {
            tx.execute("DELETE FROM opds WHERE code = ?1", [code.as_str()])?;
        }
        for (code, row) in want.iter().filter(|(c, r)| have.get(*c) != Some(*r)) {
            let blocks =
                serde_json::to_string(&row.blocks).expect("a list of strings always serializes");
            tx.execute(
                "INSERT INTO opds (code, name, blocks) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (code) DO UPDATE SET name = excluded.name, blocks = excluded.blocks",
                params![code.as_str(), row.name, blocks],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The OPDs last synced from the dialplan, sorted by code.
    pub fn opds(&self) -> Result<Vec<OpdRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT code, name, blocks FROM opds ORDER BY code")?;
        let rows = stmt.query_map([], |r| {
            let blocks: String = r.get(2)?;
            let blocks: Vec<String> =
                serde_json::from_str(&blocks).map_err(|e| conversion_error(2, Box::new(e)))?;
            Ok(OpdRow {
                code: parse_col(r, 0)?,
                name: r.get(1)?,
                blocks,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- extensions ----

    /// Creates an enabled extension; stores its HA1 for MD5 and SHA-256 under the realm.
    pub fn add_extension(
        &mut self,
        number: &Extension,
        opd: &OpdCode,
        name: &str,
        password: &str,
    ) -> Result<(), StoreError> {
        let row = NewExtension {
            number: number.clone(),
            opd: opd.clone(),
            name: name.to_owned(),
            password: password.to_owned(),
        };
        self.import(std::slice::from_ref(&row), |_| {})
    }

    /// Creates many extensions in one transaction: all of them, or none if one fails
    /// ([`StoreError::DuplicateExtension`], [`StoreError::UnknownOpd`]). `progress` is called
    /// with the number of rows written so far.
    pub fn import(
        &mut self,
        rows: &[NewExtension],
        mut progress: impl FnMut(usize),
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut opd_exists = tx.prepare_cached("SELECT 1 FROM opds WHERE code = ?1")?;
            let mut checked: Vec<&OpdCode> = Vec::new();
            let mut insert = tx.prepare_cached(INSERT_EXTENSION)?;
            for (i, row) in rows.iter().enumerate() {
                if !checked.contains(&&row.opd) {
                    if !opd_exists.exists([row.opd.as_str()])? {
                        return Err(StoreError::UnknownOpd(row.opd.clone()));
                    }
                    checked.push(&row.opd);
                }
                let user = row.number.as_str();
                let md5 = ha1_hex(Algorithm::Md5, user, &self.realm, &row.password);
                let sha = ha1_hex(Algorithm::Sha256, user, &self.realm, &row.password);
                insert
                    .execute(params![user, row.opd.as_str(), row.name, md5, sha])
                    .map_err(|e| {
                        if is_constraint(&e, ffi::SQLITE_CONSTRAINT_PRIMARYKEY) {
                            StoreError::DuplicateExtension(row.number.clone())
                        } else {
                            e.into()
                        }
                    })?;
                progress(i + 1);
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces the extension's HA1 values with those of `password`.
    pub fn set_password(&mut self, number: &Extension, password: &str) -> Result<(), StoreError> {
        let md5 = ha1_hex(Algorithm::Md5, number.as_str(), &self.realm, password);
        let sha = ha1_hex(Algorithm::Sha256, number.as_str(), &self.realm, password);
        let n = self.conn.execute(
            "UPDATE extensions SET ha1_md5 = ?2, ha1_sha256 = ?3, updated_at = unixepoch() \
             WHERE number = ?1",
            params![number.as_str(), md5, sha],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownExtension(number.clone()));
        }
        Ok(())
    }

    /// Enables or disables an extension; disabling also deletes its registrations.
    pub fn set_enabled(&mut self, number: &Extension, enabled: bool) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "UPDATE extensions SET enabled = ?2, updated_at = unixepoch() WHERE number = ?1",
            params![number.as_str(), enabled],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownExtension(number.clone()));
        }
        if !enabled {
            tx.execute(
                "DELETE FROM registrations WHERE extension = ?1",
                [number.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Deletes an extension and its registrations.
    pub fn remove_extension(&mut self, number: &Extension) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM registrations WHERE extension = ?1",
            [number.as_str()],
        )?;
        let n = tx.execute(
            "DELETE FROM extensions WHERE number = ?1",
            [number.as_str()],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownExtension(number.clone()));
        }
        tx.commit()?;
        Ok(())
    }

    /// One extension, if it exists.
    pub fn extension(&self, number: &Extension) -> Result<Option<ExtensionRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EXTENSION_COLUMNS} FROM extensions WHERE number = ?1"
        ))?;
        Ok(stmt
            .query_row([number.as_str()], extension_from_row)
            .optional()?)
    }

    /// The extension directory as the registrar keeps it (HA1s, OPD, routing features):
    /// the one mapping from the stored extension to [`crate::registrar::Account`].
    pub fn accounts(&self) -> Result<crate::registrar::Accounts, StoreError> {
        let list = self.extensions(None)?;
        Ok(crate::registrar::Accounts::new(
            list.iter()
                .map(|r| crate::registrar::Account {
                    extension: r.number.clone(),
                    opd: r.opd.clone(),
                    name: r.name.clone(),
                    ha1_md5: r.ha1(Algorithm::Md5).to_string(),
                    ha1_sha256: r.ha1(Algorithm::Sha256).to_string(),
                    enabled: r.enabled,
                    features: r.features.to_routing(),
                })
                .collect(),
        ))
    }

    /// All extensions, or those of one OPD, sorted by number (numerically).
    pub fn extensions(&self, opd: Option<&OpdCode>) -> Result<Vec<ExtensionRecord>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {EXTENSION_COLUMNS} FROM extensions WHERE ?1 IS NULL OR opd = ?1"
        ))?;
        let mut out = stmt
            .query_map([opd.map(OpdCode::as_str)], extension_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_by(|a, b| (a.number.value(), &a.number).cmp(&(b.number.value(), &b.number)));
        Ok(out)
    }

    /// How many extensions each OPD has (OPDs without extensions are absent).
    pub fn extension_counts(&self) -> Result<BTreeMap<OpdCode, u64>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT opd, COUNT(*) FROM extensions GROUP BY opd")?;
        let rows = stmt.query_map([], |r| {
            Ok((parse_col::<OpdCode>(r, 0)?, r.get::<_, u64>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// Applies the migrations the database lacks, each in its own immediate transaction (so two
/// processes opening a new file at once do not both migrate it).
fn migrate(conn: &mut Connection, path: &Path, realm: &str) -> Result<(), StoreError> {
    let supported = SCHEMA_VERSION;
    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > supported {
            return Err(StoreError::SchemaTooNew {
                path: path.to_owned(),
                found,
                supported,
            });
        }
        if found == supported {
            return Ok(());
        }
        let version = found + 1;
        let step = |tx: &rusqlite::Transaction| -> rusqlite::Result<()> {
            tx.execute_batch(MIGRATIONS[found as usize])?;
            if found == 0 {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('realm', ?1)",
                    [realm],
                )?;
            }
            tx.pragma_update(None, "user_version", version)?;
            Ok(())
        };
        step(&tx).map_err(|source| StoreError::Migration { version, source })?;
        tx.commit()
            .map_err(|source| StoreError::Migration { version, source })?;
        tracing::info!(path = %path.display(), version, "store schema migrated");
    }
}

fn extension_from_row(r: &Row) -> rusqlite::Result<ExtensionRecord> {
    Ok(ExtensionRecord {
        number: parse_col(r, 0)?,
        opd: parse_col(r, 1)?,
        name: r.get(2)?,
        ha1_md5: r.get(3)?,
        ha1_sha256: r.get(4)?,
        enabled: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        features: features::features_from_row(r, 8)?,
    })
}

/// Reads a text column through a newtype's parser.
fn parse_col<T>(r: &Row, idx: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    let s: String = r.get(idx)?;
    s.parse().map_err(|e| conversion_error(idx, Box::new(e)))
}

fn conversion_error(idx: usize, e: Box<dyn std::error::Error + Send + Sync>) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, e)
}

fn is_constraint(e: &rusqlite::Error, extended_code: std::os::raw::c_int) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == extended_code)
}

#[cfg(test)]
mod tests;
