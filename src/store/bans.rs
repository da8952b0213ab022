//! The ban list: addresses the guard (or the operator) refused, with reason and expiry. The
//! switch writes the bans it adds and reads the list at start and whenever another connection
//! (`tambun ban add|rm`) committed; so a ban survives a restart and the CLI acts on a running
//! switch.

use std::net::IpAddr;

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::guard::Ban;

impl Store {
    /// Adds a ban, or replaces the one of the same address.
    pub fn add_ban(&mut self, ban: &Ban) -> Result<(), StoreError> {
        self.add_bans(std::slice::from_ref(ban))
    }

    /// Adds several bans in one transaction (each replaces the one of the same address).
    pub fn add_bans(&mut self, bans: &[Ban]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        for ban in bans {
            tx.execute(
                "INSERT INTO bans (address, reason, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (address) DO UPDATE SET reason = excluded.reason,
                     created_at = excluded.created_at, expires_at = excluded.expires_at",
                params![
                    ban.address.to_string(),
                    ban.reason,
                    ban.created_at,
                    ban.expires_at
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Lifts the ban of `address`; false when there was none.
    pub fn remove_ban(&mut self, address: IpAddr) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM bans WHERE address = ?1", [address.to_string()])?
            > 0)
    }

    /// The ban of `address`, in force or not.
    pub fn ban(&self, address: IpAddr) -> Result<Option<Ban>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT address, reason, created_at, expires_at FROM bans WHERE address = ?1",
        )?;
        let row = stmt
            .query_row([address.to_string()], ban_from_row)
            .optional()?;
        Ok(row.flatten())
    }

    /// Bans in force at `now_unix`, oldest first.
    pub fn bans(&self, now_unix: i64) -> Result<Vec<Ban>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT address, reason, created_at, expires_at FROM bans
             WHERE expires_at IS NULL OR expires_at > ?1 ORDER BY created_at, address",
        )?;
        let rows = stmt.query_map([now_unix], ban_from_row)?;
        let mut out = Vec::new();
        for r in rows {
            // A row whose address does not parse (edited by hand) is skipped.
            if let Some(ban) = r? {
                out.push(ban);
            }
        }
        Ok(out)
    }

    /// Deletes bans that ended at or before `now_unix`; returns how many.
    pub fn purge_expired_bans(&mut self, now_unix: i64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM bans WHERE expires_at IS NOT NULL AND expires_at <= ?1",
            [now_unix],
        )?)
    }
}

fn ban_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<Ban>> {
    let address: String = row.get(0)?;
    let Ok(address) = address.parse::<IpAddr>() else {
        return Ok(None);
    };
    Ok(Some(Ban {
        address,
        reason: row.get(1)?,
        created_at: row.get(2)?,
        expires_at: row.get(3)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(addr: &str, expires_at: Option<i64>) -> Ban {
        Ban {
            address: addr.parse().unwrap(),
            reason: "auth-failures".into(),
            created_at: 1000,
            expires_at,
        }
    }

    #[test]
    fn bans_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = Store::open(&path).unwrap();
        store.add_ban(&ban("192.0.2.1", Some(2000))).unwrap();
        store
            .add_bans(&[ban("2001:db8::1", None), ban("192.0.2.2", Some(1500))])
            .unwrap();
        assert_eq!(store.bans(1000).unwrap().len(), 3);
        assert_eq!(store.bans(1600).unwrap().len(), 2, "one expired");
        // Same address again: replaced, not duplicated.
        store.add_ban(&ban("192.0.2.1", Some(3000))).unwrap();
        assert_eq!(
            store
                .ban("192.0.2.1".parse().unwrap())
                .unwrap()
                .unwrap()
                .expires_at,
            Some(3000)
        );
        drop(store);
        // It survives closing the database.
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.bans(1600).unwrap().len(), 2);
        assert!(store.remove_ban("2001:db8::1".parse().unwrap()).unwrap());
        assert!(!store.remove_ban("2001:db8::1".parse().unwrap()).unwrap());
        assert_eq!(store.purge_expired_bans(1600).unwrap(), 1);
        assert_eq!(store.bans(0).unwrap().len(), 1);
    }
}
