//! The node's own durable state in the workdir's embedded store (redb, fsync'd
//! transactions): its identity, the bricks it has marked, and task checkpoints. The pool's
//! replicated state lives in the same database, in the consensus crate's tables.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, TableDefinition};

const LOCAL: TableDefinition<&str, &[u8]> = TableDefinition::new("local");

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
#[error("store {what}: {msg}")]
pub struct StoreError {
    what: &'static str,
    msg: String,
}

fn err(what: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
    move |e| StoreError {
        what,
        msg: e.to_string(),
    }
}

/// Key -> bytes, each write its own durable transaction.
#[derive(Clone)]
pub struct LocalStore {
    db: Arc<Database>,
}

impl LocalStore {
    /// Opens (creating) `WORKDIR/mgmtd.redb`; refuses a store another process has open.
    pub fn open(workdir: &Path) -> Result<LocalStore, StoreError> {
        let path = workdir.join("mgmtd.redb");
        let db = Database::create(&path).map_err(|e| err("open")(e.into()))?;
        let s = LocalStore { db: Arc::new(db) };
        let tx = s.db.begin_write().map_err(|e| err("open")(e.into()))?;
        tx.open_table(LOCAL).map_err(|e| err("open")(e.into()))?;
        tx.commit().map_err(|e| err("open")(e.into()))?;
        Ok(s)
    }

    /// The database, shared with the consensus log.
    pub fn db(&self) -> Arc<Database> {
        self.db.clone()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| err("read")(e.into()))?;
        let t = tx.open_table(LOCAL).map_err(|e| err("read")(e.into()))?;
        let v = t.get(key).map_err(|e| err("read")(e.into()))?;
        Ok(v.map(|v| v.value().to_vec()))
    }

    /// Sets `key` (durable when this returns).
    pub fn put(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| err("write")(e.into()))?;
        {
            let mut t = tx.open_table(LOCAL).map_err(|e| err("write")(e.into()))?;
            t.insert(key, value).map_err(|e| err("write")(e.into()))?;
        }
        tx.commit().map_err(|e| err("write")(e.into()))
    }

    /// Removes `key` (durable when this returns).
    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| err("write")(e.into()))?;
        {
            let mut t = tx.open_table(LOCAL).map_err(|e| err("write")(e.into()))?;
            t.remove(key).map_err(|e| err("write")(e.into()))?;
        }
        tx.commit().map_err(|e| err("write")(e.into()))
    }

    /// Every (key, value) whose key starts with `prefix`, in key order.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| err("read")(e.into()))?;
        let t = tx.open_table(LOCAL).map_err(|e| err("read")(e.into()))?;
        let mut out = Vec::new();
        for r in t.range(prefix..).map_err(|e| err("read")(e.into()))? {
            let (k, v) = r.map_err(|e| err("read")(e.into()))?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        {
            let s = LocalStore::open(d.path()).unwrap();
            s.put("a/1", b"x").unwrap();
            s.put("a/2", b"y").unwrap();
            s.put("b", b"z").unwrap();
            s.delete("a/2").unwrap();
        }
        let s = LocalStore::open(d.path()).unwrap();
        assert_eq!(s.get("a/1").unwrap().unwrap(), b"x");
        assert_eq!(s.scan("a/").unwrap().len(), 1);
        assert!(s.get("a/2").unwrap().is_none());
    }
}
