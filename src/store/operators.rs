//! The web console's operators (`operators`): name, role (`admin`, or `opd` with its OPD), the
//! PBKDF2 hash of the password (`console::password`; never the password) and the lock-out
//! counters (`console::lockout`). Written by `tambun operator` and by the console's login.
//! No clock: times are Unix seconds given by the caller.

use rusqlite::{params, OptionalExtension, Row};

use super::{parse_col, Store, StoreError};
use crate::console::lockout::Attempts;
use crate::console::{OperatorName, Scope};

/// An operator as stored. `Debug` leaves out the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    pub name: OperatorName,
    pub scope: Scope,
    pub password_hash: String,
    pub attempts: Attempts,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for OperatorRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorRecord")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

const COLUMNS: &str = "name, role, opd, password_hash, failures, window_start, locked_until, \
     created_at, updated_at";

impl Store {
    /// Creates an operator; [`StoreError::DuplicateOperator`] when the name is taken,
    /// [`StoreError::UnknownOpd`] for an `opd` operator of an OPD the dialplan lacks.
    pub fn add_operator(
        &mut self,
        name: &OperatorName,
        scope: &Scope,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if let Some(opd) = scope.opd() {
            if !tx
                .prepare_cached("SELECT 1 FROM opds WHERE code = ?1")?
                .exists([opd.as_str()])?
            {
                return Err(StoreError::UnknownOpd(opd.clone()));
            }
        }
        tx.execute(
            "INSERT INTO operators (name, role, opd, password_hash, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![
                name.as_str(),
                scope.role(),
                scope.opd().map(|o| o.as_str()),
                password_hash,
                now
            ],
        )
        .map_err(|e| {
            if super::is_constraint(&e, rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) {
                StoreError::DuplicateOperator(name.clone())
            } else {
                e.into()
            }
        })?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces an operator's password hash and clears its lock-out.
    pub fn set_operator_password(
        &mut self,
        name: &OperatorName,
        password_hash: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let n = self.conn.execute(
            "UPDATE operators SET password_hash = ?2, failures = 0, window_start = NULL, \
             locked_until = NULL, updated_at = ?3 WHERE name = ?1",
            params![name.as_str(), password_hash, now],
        )?;
        if n == 0 {
            return Err(StoreError::UnknownOperator(name.clone()));
        }
        Ok(())
    }

    /// Deletes an operator.
    pub fn remove_operator(&mut self, name: &OperatorName) -> Result<(), StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM operators WHERE name = ?1", [name.as_str()])?;
        if n == 0 {
            return Err(StoreError::UnknownOperator(name.clone()));
        }
        Ok(())
    }

    /// One operator, if it exists.
    pub fn operator(&self, name: &OperatorName) -> Result<Option<OperatorRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM operators WHERE name = ?1"))?;
        Ok(stmt
            .query_row([name.as_str()], operator_from_row)
            .optional()?)
    }

    /// All operators, by name.
    pub fn operators(&self) -> Result<Vec<OperatorRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM operators ORDER BY name"))?;
        let rows = stmt.query_map([], operator_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Writes an operator's lock-out counters (after a login attempt).
    pub fn set_operator_attempts(
        &mut self,
        name: &OperatorName,
        attempts: &Attempts,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE operators SET failures = ?2, window_start = ?3, locked_until = ?4 \
             WHERE name = ?1",
            params![
                name.as_str(),
                attempts.failures,
                attempts.window_start,
                attempts.locked_until
            ],
        )?;
        Ok(())
    }
}

fn operator_from_row(r: &Row) -> rusqlite::Result<OperatorRecord> {
    let role: String = r.get(1)?;
    let opd: Option<String> = r.get(2)?;
    let opd = match opd {
        Some(s) => Some(
            s.parse()
                .map_err(|e| super::conversion_error(2, Box::new(e)))?,
        ),
        None => None,
    };
    let scope =
        Scope::from_role(&role, opd).map_err(|e| super::conversion_error(1, Box::new(e)))?;
    Ok(OperatorRecord {
        name: parse_col(r, 0)?,
        scope,
        password_hash: r.get(3)?,
        attempts: Attempts {
            failures: r.get(4)?,
            window_start: r.get(5)?,
            locked_until: r.get(6)?,
        },
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::OpdRow;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .sync_opds(&[OpdRow {
                code: "dinkes".parse().unwrap(),
                name: "Dinas Kesehatan".into(),
                blocks: vec!["2300-2499".into()],
            }])
            .unwrap();
        (dir, store)
    }

    fn name(s: &str) -> OperatorName {
        s.parse().unwrap()
    }

    #[test]
    fn add_list_passwd_rm() {
        let (_dir, mut s) = store();
        let dinkes = Scope::Opd("dinkes".parse().unwrap());
        s.add_operator(&name("admin"), &Scope::All, "h1", 100)
            .unwrap();
        s.add_operator(&name("sari"), &dinkes, "h2", 100).unwrap();
        assert!(matches!(
            s.add_operator(&name("sari"), &Scope::All, "h3", 100),
            Err(StoreError::DuplicateOperator(_))
        ));
        assert!(matches!(
            s.add_operator(&name("x"), &Scope::Opd("nope".parse().unwrap()), "h", 100),
            Err(StoreError::UnknownOpd(_))
        ));
        let list = s.operators().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].scope, dinkes);
        assert_eq!(list[1].password_hash, "h2");

        let locked = Attempts {
            failures: 0,
            window_start: None,
            locked_until: Some(999),
        };
        s.set_operator_attempts(&name("sari"), &locked).unwrap();
        assert_eq!(s.operator(&name("sari")).unwrap().unwrap().attempts, locked);
        // A new password lifts the lock.
        s.set_operator_password(&name("sari"), "h4", 200).unwrap();
        let sari = s.operator(&name("sari")).unwrap().unwrap();
        assert_eq!(sari.password_hash, "h4");
        assert_eq!(sari.attempts, Attempts::default());
        assert!(matches!(
            s.set_operator_password(&name("nobody"), "h", 1),
            Err(StoreError::UnknownOperator(_))
        ));

        s.remove_operator(&name("sari")).unwrap();
        assert!(s.operator(&name("sari")).unwrap().is_none());
        assert!(matches!(
            s.remove_operator(&name("sari")),
            Err(StoreError::UnknownOperator(_))
        ));
    }

    #[test]
    fn debug_hides_the_hash() {
        let (_dir, mut s) = store();
        s.add_operator(&name("admin"), &Scope::All, "secret-hash", 1)
            .unwrap();
        let rec = s.operator(&name("admin")).unwrap().unwrap();
        assert!(!format!("{rec:?}").contains("secret-hash"));
    }
}
