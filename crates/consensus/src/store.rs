//! openraft storage-v2 implementation on redb: the raft log and vote
//! (`raft_log`, `raft_meta`) and the applied state machine plus its latest
//! snapshot (`raft_sm`).
//!
//! Every write is one redb write transaction committed with the database's
//! default durability (`Durability::Immediate`: fsync'd before `commit`
//! returns). The log-append callback is invoked only after that commit.
//!
//! The applied state is persisted together with `last_applied` and the last
//! applied membership in the same transaction after each applied batch, so a
//! restarted node comes back exactly where it stopped applying and never
//! applies an entry twice.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use parking_lot::RwLock;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::{NodeId, StateMachine, TypeConfig};

/// Raft log entries, key = log index, value = serde_json of `Entry`.
pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Vote, last purged log id, committed log id (keys below).
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// Applied state machine and the latest snapshot (keys below).
pub(crate) const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_sm");

const KEY_VOTE: &str = "vote";
const KEY_PURGED: &str = "last_purged";
const KEY_COMMITTED: &str = "committed";
const KEY_APPLIED: &str = "applied";
const KEY_SNAPSHOT: &str = "snapshot";

type C<S> = TypeConfig<S>;
type SErr = StorageError<NodeId>;

/// The state machine as applied on this node, shared with [`crate::Consensus`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Applied<S: StateMachine> {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub state: S,
}

impl<S: StateMachine> Default for Applied<S> {
    fn default() -> Self {
        Self {
            last_applied: None,
            membership: StoredMembership::default(),
            state: S::default(),
        }
    }
}

/// A snapshot as kept in `raft_sm`: the meta and the serialized [`Applied::state`].
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

/// Runs blocking redb work off the async executor.
async fn blocking<T, F>(f: F) -> Result<T, AnyError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, AnyError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| io_err(format!("storage task failed: {e}")))?
}

/// Starts a write transaction whose commit is fsync'd before it returns.
fn begin_durable(db: &Database) -> Result<redb::WriteTransaction, AnyError> {
    let mut txn = db.begin_write().map_err(io_err)?;
    txn.set_durability(redb::Durability::Immediate);
    Ok(txn)
}

/// Error used to abandon a write made by a store that [`crate::Consensus::reset`]
/// has retired.
fn retired_error() -> AnyError {
    io_err("raft store was reset; write abandoned")
}

fn get_json<T: serde::de::DeserializeOwned>(
    db: &Database,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
) -> Result<Option<T>, AnyError> {
    let txn = db.begin_read().map_err(io_err)?;
    let t = match txn.open_table(table) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    match t.get(key).map_err(io_err)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(io_err)?)),
        None => Ok(None),
    }
}

/// Creates the raft tables if missing so that readers never see a missing table.
pub(crate) fn create_tables(db: &Database) -> Result<(), AnyError> {
    let txn = begin_durable(db)?;
    txn.open_table(LOG).map_err(io_err)?;
    txn.open_table(META).map_err(io_err)?;
    txn.open_table(SM).map_err(io_err)?;
    txn.commit().map_err(io_err)?;
    Ok(())
}

/// Deletes every raft table (log, vote, membership, state, snapshot).
pub(crate) fn wipe_tables(db: &Database) -> Result<(), AnyError> {
    let txn = begin_durable(db)?;
    txn.delete_table(LOG).map_err(io_err)?;
    txn.delete_table(META).map_err(io_err)?;
    txn.delete_table(SM).map_err(io_err)?;
    txn.commit().map_err(io_err)?;
    Ok(())
}

/// Loads the persisted applied state (default if none).
pub(crate) fn load_applied<S: StateMachine>(db: &Database) -> Result<Applied<S>, AnyError> {
    Ok(get_json::<Applied<S>>(db, SM, KEY_APPLIED)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------
// Log store
// ---------------------------------------------------------------------------

/// Raft log + vote on redb. Cheap to clone; clones are log readers.
pub(crate) struct LogStore<S: StateMachine> {
    db: Arc<Database>,
    retired: Arc<AtomicBool>,
    _s: std::marker::PhantomData<fn() -> S>,
}

impl<S: StateMachine> Clone for LogStore<S> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            retired: self.retired.clone(),
            _s: std::marker::PhantomData,
        }
    }
}

impl<S: StateMachine> LogStore<S> {
    pub(crate) fn new(db: Arc<Database>, retired: Arc<AtomicBool>) -> Self {
        Self {
            db,
            retired,
            _s: std::marker::PhantomData,
        }
    }

    /// Runs `f` in a durable write transaction unless this store was retired.
    async fn write<F>(&self, f: F) -> Result<(), AnyError>
    where
        F: FnOnce(&redb::WriteTransaction) -> Result<(), AnyError> + Send + 'static,
    {
        let db = self.db.clone();
        let retired = self.retired.clone();
        blocking(move || {
            let txn = begin_durable(&db)?;
            // Checked inside the write transaction: redb serializes writers,
            // so a reset's wipe either precedes this (and we abort) or follows it.
            if retired.load(Ordering::SeqCst) {
                return Err(retired_error());
            }
            f(&txn)?;
            txn.commit().map_err(io_err)?;
            Ok(())
        })
        .await
    }

    async fn put_meta<T: Serialize>(&self, key: &'static str, v: &T) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(v).map_err(io_err)?;
        self.write(move |txn| {
            let mut t = txn.open_table(META).map_err(io_err)?;
            t.insert(key, bytes.as_slice()).map_err(io_err)?;
            Ok(())
        })
        .await
    }
}

impl<S: StateMachine> RaftLogReader<C<S>> for LogStore<S> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<C<S>>>, SErr> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Some(*x),
            Bound::Excluded(0) => return Ok(Vec::new()),
            Bound::Excluded(x) => Some(x - 1),
            Bound::Unbounded => None,
        };
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(io_err)?;
            let t = txn.open_table(LOG).map_err(io_err)?;
            let iter = match end {
                Some(end) if end < start => return Ok(Vec::new()),
                Some(end) => t.range(start..=end).map_err(io_err)?,
                None => t.range(start..).map_err(io_err)?,
            };
            let mut out = Vec::new();
            for item in iter {
                let (_k, v) = item.map_err(io_err)?;
                out.push(serde_json::from_slice::<Entry<C<S>>>(v.value()).map_err(io_err)?);
            }
            Ok(out)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl<S: StateMachine> RaftLogStorage<C<S>> for LogStore<S> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C<S>>, SErr> {
        let db = self.db.clone();
        blocking(move || {
            let purged: Option<LogId<NodeId>> = get_json(&db, META, KEY_PURGED)?;
            let txn = db.begin_read().map_err(io_err)?;
            let t = txn.open_table(LOG).map_err(io_err)?;
            let last = match t.last().map_err(io_err)? {
                Some((_k, v)) => Some(
                    serde_json::from_slice::<Entry<C<S>>>(v.value())
                        .map_err(io_err)?
                        .log_id,
                ),
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
        .map_err(|e| StorageIOError::read_logs(e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), SErr> {
        self.put_meta(KEY_VOTE, vote)
            .await
            .map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, SErr> {
        let db = self.db.clone();
        blocking(move || get_json(&db, META, KEY_VOTE))
            .await
            .map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), SErr> {
        self.put_meta(KEY_COMMITTED, &committed)
            .await
            .map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, SErr> {
        let db = self.db.clone();
        blocking(move || Ok(get_json::<Option<LogId<NodeId>>>(&db, META, KEY_COMMITTED)?.flatten()))
            .await
            .map_err(|e| StorageIOError::read(e).into())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C<S>>) -> Result<(), SErr>
    where
        I: IntoIterator<Item = Entry<C<S>>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            let bytes = serde_json::to_vec(&e)
                .map_err(|err| StorageIOError::write_log_entry(e.log_id, io_err(err)))?;
            rows.push((e.log_id.index, bytes));
        }
        let res = self
            .write(move |txn| {
                let mut t = txn.open_table(LOG).map_err(io_err)?;
                for (idx, bytes) in &rows {
                    t.insert(*idx, bytes.as_slice()).map_err(io_err)?;
                }
                Ok(())
            })
            .await;
        // The commit above is durable (Durability::Immediate) before we report it.
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        self.write(move |txn| {
            let mut t = txn.open_table(LOG).map_err(io_err)?;
            t.retain_in(log_id.index.., |_, _| false).map_err(io_err)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), SErr> {
        let bytes =
            serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(io_err(e)))?;
        self.write(move |txn| {
            {
                let mut m = txn.open_table(META).map_err(io_err)?;
                m.insert(KEY_PURGED, bytes.as_slice()).map_err(io_err)?;
            }
            let mut t = txn.open_table(LOG).map_err(io_err)?;
            t.retain_in(..=log_id.index, |_, _| false).map_err(io_err)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }
}

// ---------------------------------------------------------------------------
// State machine store
// ---------------------------------------------------------------------------

/// The applied state machine, persisted in `raft_sm`, shared in memory with
/// [`crate::Consensus`] for `state()`.
pub(crate) struct SmStore<S: StateMachine> {
    db: Arc<Database>,
    retired: Arc<AtomicBool>,
    applied: Arc<RwLock<Applied<S>>>,
    notify: Arc<watch::Sender<u64>>,
}

impl<S: StateMachine> Clone for SmStore<S> {
    fn clone(&self) -> Self {
        Self {
            db: self.db.clone(),
            retired: self.retired.clone(),
            applied: self.applied.clone(),
            notify: self.notify.clone(),
        }
    }
}

impl<S: StateMachine> SmStore<S> {
    pub(crate) fn new(
        db: Arc<Database>,
        retired: Arc<AtomicBool>,
        applied: Arc<RwLock<Applied<S>>>,
        notify: Arc<watch::Sender<u64>>,
    ) -> Self {
        Self {
            db,
            retired,
            applied,
            notify,
        }
    }

    /// Persists `next` (and optionally a snapshot) durably, then publishes it.
    async fn commit(&self, next: Applied<S>, snapshot: Option<Vec<u8>>) -> Result<(), AnyError> {
        let bytes = serde_json::to_vec(&next).map_err(io_err)?;
        let db = self.db.clone();
        let retired = self.retired.clone();
        blocking(move || {
            let txn = begin_durable(&db)?;
            if retired.load(Ordering::SeqCst) {
                return Err(retired_error());
            }
            {
                let mut t = txn.open_table(SM).map_err(io_err)?;
                t.insert(KEY_APPLIED, bytes.as_slice()).map_err(io_err)?;
                if let Some(s) = &snapshot {
                    t.insert(KEY_SNAPSHOT, s.as_slice()).map_err(io_err)?;
                }
            }
            txn.commit().map_err(io_err)?;
            Ok(())
        })
        .await?;
        let index = next.last_applied.map(|l| l.index).unwrap_or(0);
        *self.applied.write() = next;
        self.notify.send_replace(index);
        Ok(())
    }
}

impl<S: StateMachine> RaftSnapshotBuilder<C<S>> for SmStore<S> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C<S>>, SErr> {
        let cur = self.applied.read().clone();
        let data = serde_json::to_vec(&cur.state)
            .map_err(|e| StorageIOError::write_snapshot(None, io_err(e)))?;
        let snapshot_id = match &cur.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: cur.last_applied,
            last_membership: cur.membership.clone(),
            snapshot_id,
        };
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        })
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        let db = self.db.clone();
        let retired = self.retired.clone();
        let sig = meta.signature();
        blocking(move || {
            let txn = begin_durable(&db)?;
            if retired.load(Ordering::SeqCst) {
                return Err(retired_error());
            }
            {
                let mut t = txn.open_table(SM).map_err(io_err)?;
                t.insert(KEY_SNAPSHOT, stored.as_slice()).map_err(io_err)?;
            }
            txn.commit().map_err(io_err)?;
            Ok(())
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(sig), e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<S: StateMachine> RaftStateMachine<C<S>> for SmStore<S> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), SErr> {
        let a = self.applied.read();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Option<S::Response>>, SErr>
    where
        I: IntoIterator<Item = Entry<C<S>>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Apply on a copy, persist it, then publish: readers of `state()`
        // never see a state that is not durable yet.
        let mut next = self.applied.read().clone();
        let mut out = Vec::new();
        for e in entries {
            next.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => out.push(None),
                EntryPayload::Normal(cmd) => out.push(Some(next.state.apply(&cmd))),
                EntryPayload::Membership(m) => {
                    next.membership = StoredMembership::new(Some(e.log_id), m);
                    out.push(None);
                }
            }
        }
        self.commit(next, None)
            .await
            .map_err(StorageIOError::write_state_machine)?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, SErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), SErr> {
        let data = snapshot.into_inner();
        let state: S = serde_json::from_slice(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), io_err(e)))?;
        let stored = serde_json::to_vec(&StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        let next = Applied {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            state,
        };
        self.commit(next, Some(stored))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e).into())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C<S>>>, SErr> {
        let db = self.db.clone();
        let stored: Option<StoredSnapshot> = blocking(move || get_json(&db, SM, KEY_SNAPSHOT))
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::testing::{StoreBuilder, Suite};

    use super::*;

    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    struct Counter(u64);

    impl StateMachine for Counter {
        type Command = u64;
        type Response = u64;
        fn apply(&mut self, cmd: &u64) -> u64 {
            self.0 += cmd;
            self.0
        }
    }

    struct Builder;

    impl StoreBuilder<C<Counter>, LogStore<Counter>, SmStore<Counter>, tempfile::TempDir> for Builder {
        async fn build(
            &self,
        ) -> Result<(tempfile::TempDir, LogStore<Counter>, SmStore<Counter>), SErr> {
            let dir = tempfile::tempdir().unwrap();
            let db = Arc::new(Database::create(dir.path().join("raft.redb")).unwrap());
            create_tables(&db).unwrap();
            let retired = Arc::new(AtomicBool::new(false));
            let (tx, _rx) = watch::channel(0);
            let log = LogStore::new(db.clone(), retired.clone());
            let sm = SmStore::new(
                db,
                retired,
                Arc::new(RwLock::new(Applied::default())),
                Arc::new(tx),
            );
            Ok((dir, log, sm))
        }
    }

    /// openraft's own conformance suite for storage implementations.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).unwrap();
    }

    #[tokio::test]
    async fn retired_store_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Database::create(dir.path().join("raft.redb")).unwrap());
        create_tables(&db).unwrap();
        let retired = Arc::new(AtomicBool::new(false));
        let mut log = LogStore::<Counter>::new(db.clone(), retired.clone());
        let vote = Vote::new(1, 1);
        log.save_vote(&vote).await.unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        retired.store(true, Ordering::SeqCst);
        assert!(log.save_vote(&Vote::new(2, 1)).await.is_err());
        wipe_tables(&db).unwrap();
        create_tables(&db).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), None);
    }
}
