//! Registrations: the durable copy of the location service. A binding is stored in the shape
//! the registrar keeps it ([`Binding`]); this file is the one place that maps it to the
//! `registrations` row and back. The `contact_uri` column holds the binding's key (the
//! contact URI, or the `+sip.instance`/`reg-id` for RFC 5626 phones) and `contact_header` the
//! `<uri>;params` to list.

use std::net::SocketAddr;

use rusqlite::{params, Connection, Row, TransactionBehavior};

use super::{is_constraint, parse_col, Store, StoreError};
use crate::registrar::{Binding, Change};
use crate::sip::headers::NameAddr;
use crate::types::{Extension, Now};

const REGISTRATION_COLUMNS: &str = "extension, contact_uri, contact_header, instance_id, reg_id, \
     source, transport, user_agent, call_id, cseq, expires_at";
const UPSERT_REGISTRATION: &str = "INSERT INTO registrations (extension, contact_uri, \
     contact_header, instance_id, reg_id, source, transport, user_agent, call_id, cseq, expires_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
     ON CONFLICT (extension, contact_uri) DO UPDATE SET contact_header = excluded.contact_header, \
     instance_id = excluded.instance_id, reg_id = excluded.reg_id, source = excluded.source, \
     transport = excluded.transport, user_agent = excluded.user_agent, call_id = excluded.call_id, \
     cseq = excluded.cseq, expires_at = excluded.expires_at";

impl Store {
    /// Inserts or replaces a binding of `ext` (keyed by `binding.key`).
    pub fn upsert_binding(&mut self, ext: &Extension, binding: &Binding) -> Result<(), StoreError> {
        upsert(&self.conn, ext, binding)
    }

    /// Deletes one binding by its key (no error if it does not exist).
    pub fn delete_binding(&mut self, ext: &Extension, key: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM registrations WHERE extension = ?1 AND contact_uri = ?2",
            params![ext.as_str(), key],
        )?;
        Ok(())
    }

    /// Deletes every binding of an extension.
    pub fn delete_bindings(&mut self, ext: &Extension) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM registrations WHERE extension = ?1",
            [ext.as_str()],
        )?;
        Ok(())
    }

    /// Every stored binding, sorted by extension then key, with its deadline as seen from
    /// `now`. A row that no longer reads as a binding (a contact or source that does not
    /// parse) is skipped and logged.
    pub fn bindings(&self, now: Now) -> Result<Vec<(Extension, Binding)>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {REGISTRATION_COLUMNS} FROM registrations ORDER BY extension, contact_uri"
        ))?;
        let rows = stmt.query_map([], |r| binding_from_row(r, now))?;
        let mut out = Vec::new();
        for row in rows {
            match row? {
                Ok(b) => out.push(b),
                Err(key) => tracing::warn!(%key, "stored registration unreadable: skipped"),
            }
        }
        Ok(out)
    }

    /// Deletes bindings with `expires_at <= now_unix`; returns how many.
    pub fn purge_expired_registrations(&mut self, now_unix: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM registrations WHERE expires_at <= ?1",
            [now_unix],
        )?)
    }

    /// Applies the location service's changes in one transaction, in order. An upsert for an
    /// extension that no longer exists is skipped (the CLI removed it meanwhile).
    pub fn apply_binding_changes(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for change in changes {
            match change {
                Change::Upsert(ext, b) => match upsert(&tx, ext, b) {
                    Err(StoreError::UnknownExtension(ext)) => {
                        tracing::debug!(%ext, "registration for a removed extension not stored");
                    }
                    other => other?,
                },
                Change::Remove { extension, key } => {
                    tx.prepare_cached(
                        "DELETE FROM registrations WHERE extension = ?1 AND contact_uri = ?2",
                    )?
                    .execute(params![extension.as_str(), key])?;
                }
                Change::RemoveAll { extension } => {
                    tx.prepare_cached("DELETE FROM registrations WHERE extension = ?1")?
                        .execute([extension.as_str()])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}

fn upsert(conn: &Connection, ext: &Extension, b: &Binding) -> Result<(), StoreError> {
    conn.prepare_cached(UPSERT_REGISTRATION)?
        .execute(params![
            ext.as_str(),
            b.key,
            format!("<{}>{}", b.uri, b.params),
            b.instance,
            b.reg_id,
            b.source.to_string(),
            b.transport.to_string(),
            b.user_agent,
            b.call_id,
            b.cseq,
            b.expires_unix,
        ])
        .map_err(|e| {
            if is_constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY) {
                StoreError::UnknownExtension(ext.clone())
            } else {
                e.into()
            }
        })?;
    Ok(())
}

/// A row as a binding; `Err(key)` when its contact or source no longer parses. A stream
/// binding comes back without its connection (the phone reconnects).
fn binding_from_row(r: &Row, now: Now) -> rusqlite::Result<Result<(Extension, Binding), String>> {
    let ext: Extension = parse_col(r, 0)?;
    let key: String = r.get(1)?;
    let header: String = r.get(2)?;
    let source: String = r.get(5)?;
    let (Ok(addr), Ok(source)) = (NameAddr::parse(&header), source.parse::<SocketAddr>()) else {
        return Ok(Err(key));
    };
    let expires_unix: i64 = r.get(10)?;
    let binding = Binding {
        uri: addr.uri.to_string(),
        params: addr.params.as_str().trim().to_string(),
        instance: r.get(3)?,
        reg_id: r.get(4)?,
        source,
        transport: parse_col(r, 6)?,
        conn: None,
        user_agent: r.get(7)?,
        call_id: r.get(8)?,
        cseq: r.get(9)?,
        expires_at: now.instant_at(expires_unix),
        expires_unix,
        key,
    };
    Ok(Ok((ext, binding)))
}
