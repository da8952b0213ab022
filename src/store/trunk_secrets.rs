//! The carriers' secrets: for each trunk that registers, the digest hashes (HA1, MD5 and
//! SHA-256) of its password for the configured username and realm, written by `tambun trunk
//! passwd` and read by the switch at start and whenever another connection committed. The
//! password itself is never stored.

use rusqlite::params;

use super::{Store, StoreError};
use crate::sip::auth::{ha1_hex, Algorithm};
use crate::trunk::TrunkSecret;

impl Store {
    /// Keeps the hashes of `password` for trunk `name` (replacing earlier ones).
    pub fn set_trunk_password(
        &mut self,
        name: &str,
        username: &str,
        realm: &str,
        password: &str,
        now_unix: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO trunk_secrets (name, username, realm, ha1_md5, ha1_sha256, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (name) DO UPDATE SET username = excluded.username,
                 realm = excluded.realm, ha1_md5 = excluded.ha1_md5,
                 ha1_sha256 = excluded.ha1_sha256, updated_at = excluded.updated_at",
            params![
                name,
                username,
                realm,
                ha1_hex(Algorithm::Md5, username, realm, password),
                ha1_hex(Algorithm::Sha256, username, realm, password),
                now_unix
            ],
        )?;
        Ok(())
    }

    /// Forgets trunk `name`'s secret; false when there was none.
    pub fn remove_trunk_secret(&mut self, name: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM trunk_secrets WHERE name = ?1", [name])?
            > 0)
    }

    /// Every trunk secret, by name.
    pub fn trunk_secrets(&self) -> Result<Vec<TrunkSecret>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT name, username, realm, ha1_md5, ha1_sha256, updated_at
             FROM trunk_secrets ORDER BY name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(TrunkSecret {
                name: r.get(0)?,
                username: r.get(1)?,
                realm: r.get(2)?,
                ha1_md5: r.get(3)?,
                ha1_sha256: r.get(4)?,
                updated_at: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn a_trunk_password_is_kept_as_its_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        store
            .set_trunk_password("telkom", "0536321000", "carrier.test", "s3cret-Pass", 10)
            .unwrap();
        let s = store.trunk_secrets().unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].username, "0536321000");
        assert_eq!(s[0].ha1_md5.len(), 32);
        assert_eq!(s[0].ha1_sha256.len(), 64);
        let raw = std::fs::read(dir.path().join("t.db")).unwrap();
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap_or_default();
        let needle = b"s3cret-Pass";
        for bytes in [&raw, &wal] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
        assert!(store.remove_trunk_secret("telkom").unwrap());
        assert!(!store.remove_trunk_secret("telkom").unwrap());
        assert!(store.trunk_secrets().unwrap().is_empty());
    }
}
