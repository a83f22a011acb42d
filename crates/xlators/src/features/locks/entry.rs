//! The entry lock engine (`entrylk`): locks on names inside one directory in one lock
//! domain, with no async and no I/O.
//!
//! A lock names one entry (`Some(basename)`) or the whole directory (`None`, which covers
//! every name). Two locks conflict when they cover a common name, their [`Owner`]s differ
//! and at least one is a write lock. An owner never conflicts with itself: its locks nest
//! (each lock taken is held until one unlock of the same name releases it).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fmt;

use super::range::{Mode, Owner};

/// One entry lock, granted or waiting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryLock {
    /// Unique within the translator; names a waiter to whoever waits for it.
    pub id: u64,
    /// Who holds or asks for it.
    pub owner: Owner,
    /// The name locked; `None` locks the whole directory.
    pub name: Option<OsString>,
    /// Shared or exclusive.
    pub mode: Mode,
}

impl EntryLock {
    /// Whether this lock conflicts with `other` (see the module docs).
    pub fn conflicts_with(&self, other: &EntryLock) -> bool {
        let names = match (&self.name, &other.name) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        names
            && self.owner != other.owner
            && (self.mode == Mode::Write || other.mode == Mode::Write)
    }
}

impl fmt::Display for EntryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{} {:?}", self.mode, n)?,
            None => write!(f, "{} <whole directory>", self.mode)?,
        }
        write!(f, " by {}", self.owner)
    }
}

/// The granted entry locks and the waiters of one directory in one domain.
#[derive(Clone, Debug, Default)]
pub struct EntryTable {
    granted: Vec<EntryLock>,
    waiters: VecDeque<EntryLock>,
}

impl EntryTable {
    /// An empty table.
    pub fn new() -> EntryTable {
        EntryTable::default()
    }

    /// The granted locks, oldest first.
    pub fn granted(&self) -> &[EntryLock] {
        &self.granted
    }

    /// The waiters, oldest first.
    pub fn waiters(&self) -> impl Iterator<Item = &EntryLock> {
        self.waiters.iter()
    }

    /// True when nothing is held and nobody waits.
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty() && self.waiters.is_empty()
    }

    /// The first granted lock conflicting with `req`.
    pub fn conflict(&self, req: &EntryLock) -> Option<&EntryLock> {
        self.granted.iter().find(|l| l.conflicts_with(req))
    }

    /// Records `lock` as granted (conflicts are not checked here).
    pub fn grant(&mut self, lock: EntryLock) {
        self.granted.push(lock);
    }

    /// Releases one lock of `owner` on `name`: the newest of mode `mode` if there is one,
    /// else the newest of the other mode. False when the owner holds none there.
    pub fn unlock(&mut self, owner: Owner, name: Option<&OsString>, mode: Mode) -> bool {
        let matches = |l: &EntryLock| l.owner == owner && l.name.as_ref() == name;
        let pos = self
            .granted
            .iter()
            .rposition(|l| matches(l) && l.mode == mode)
            .or_else(|| self.granted.iter().rposition(matches));
        match pos {
            Some(i) => {
                self.granted.remove(i);
                true
            }
            None => false,
        }
    }

    /// Drops every granted lock `pred` selects; true if any was dropped.
    pub fn remove_locks(&mut self, mut pred: impl FnMut(&EntryLock) -> bool) -> bool {
        let before = self.granted.len();
        self.granted.retain(|l| !pred(l));
        self.granted.len() != before
    }

    /// Queues a waiter behind the others.
    pub fn push_waiter(&mut self, lock: EntryLock) {
        self.waiters.push_back(lock);
    }

    /// Removes waiter `id`; true if it was still waiting.
    pub fn remove_waiter(&mut self, id: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.id != id);
        self.waiters.len() != before
    }

    /// Removes and returns every waiter `pred` selects, oldest first.
    pub fn take_waiters(&mut self, pred: impl FnMut(&EntryLock) -> bool) -> Vec<EntryLock> {
        super::take_where(&mut self.waiters, pred)
    }

    /// Grants, oldest first, every waiter that no longer conflicts and that `alive`
    /// accepts (waiters it rejects are dropped). Returns the ids granted, in order.
    pub fn grant_waiters(&mut self, mut alive: impl FnMut(u64) -> bool) -> Vec<u64> {
        let mut granted = Vec::new();
        let mut kept = VecDeque::with_capacity(self.waiters.len());
        while let Some(w) = self.waiters.pop_front() {
            if self.conflict(&w).is_some() {
                kept.push_back(w);
            } else if alive(w.id) {
                granted.push(w.id);
                self.granted.push(w);
            }
        }
        self.waiters = kept;
        granted
    }

    /// Takes back the lock granted to waiter `id` (it never saw the grant).
    pub fn undo(&mut self, id: u64) {
        self.granted.retain(|l| l.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(id: u64, client: u64, name: Option<&str>, mode: Mode) -> EntryLock {
        EntryLock {
            id,
            owner: Owner { client, owner: 1 },
            name: name.map(OsString::from),
            mode,
        }
    }

    #[test]
    fn names_and_whole_directory_conflicts() {
        let mut t = EntryTable::new();
        t.grant(lock(1, 1, Some("a"), Mode::Write));
        assert!(t.conflict(&lock(2, 2, Some("b"), Mode::Write)).is_none());
        assert!(t.conflict(&lock(2, 2, Some("a"), Mode::Read)).is_some());
        assert!(t.conflict(&lock(2, 2, None, Mode::Read)).is_some());
        // The same owner nests.
        assert!(t.conflict(&lock(2, 1, None, Mode::Write)).is_none());
        let mut t = EntryTable::new();
        t.grant(lock(1, 1, None, Mode::Read));
        assert!(t.conflict(&lock(2, 2, Some("x"), Mode::Read)).is_none());
        assert!(t.conflict(&lock(2, 2, Some("x"), Mode::Write)).is_some());
    }

    #[test]
    fn unlock_releases_one_nested_lock() {
        let mut t = EntryTable::new();
        t.grant(lock(1, 1, Some("a"), Mode::Read));
        t.grant(lock(2, 1, Some("a"), Mode::Write));
        assert!(t.unlock(
            Owner {
                client: 1,
                owner: 1
            },
            Some(&"a".into()),
            Mode::Read
        ));
        assert_eq!(t.granted().len(), 1);
        assert_eq!(t.granted()[0].mode, Mode::Write);
        assert!(!t.unlock(
            Owner {
                client: 2,
                owner: 1
            },
            Some(&"a".into()),
            Mode::Write
        ));
        assert!(!t.unlock(
            Owner {
                client: 1,
                owner: 1
            },
            None,
            Mode::Write
        ));
        assert!(t.unlock(
            Owner {
                client: 1,
                owner: 1
            },
            Some(&"a".into()),
            Mode::Read
        ));
        assert!(t.is_empty());
    }

    #[test]
    fn waiters_granted_in_order() {
        let mut t = EntryTable::new();
        t.grant(lock(1, 1, None, Mode::Write));
        t.push_waiter(lock(2, 2, Some("a"), Mode::Write));
        t.push_waiter(lock(3, 3, Some("a"), Mode::Read));
        t.push_waiter(lock(4, 3, Some("b"), Mode::Read));
        assert!(t.grant_waiters(|_| true).is_empty());
        t.remove_locks(|l| l.owner.client == 1);
        assert_eq!(t.grant_waiters(|_| true), vec![2, 4]);
        t.undo(2);
        assert_eq!(t.grant_waiters(|id| id != 3), Vec::<u64>::new());
        assert_eq!(t.waiters().count(), 0);
    }
}
