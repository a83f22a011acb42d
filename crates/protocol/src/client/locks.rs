//! The application locks this client was granted (`lk`: fcntl and flock), kept so that
//! they can be taken again on a brick that lost them (it restarted, or its grace period
//! for this client ended).
//!
//! The table mirrors what the brick's `features/locks` holds for this client, per inode
//! and kind (POSIX or flock) and lock owner, with fcntl semantics: a granted lock
//! replaces the owner's locks over its range (cutting them), an unlock punches a hole,
//! `flush` drops the owner's POSIX locks on the inode (close(2)), `release` drops every
//! lock taken through that fd. Each held range remembers the fd it was taken through, its
//! pid and the server session (epoch) it is known to be held in.

use std::collections::HashMap;

use weft_core::{Gfid, LockType};

/// One held lock range of one owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    /// The inode.
    pub gfid: Gfid,
    /// A flock(2) lock (taken with `LK_FLOCK_KEY`), not a POSIX one.
    pub flock: bool,
    /// The lock owner (`Flock::owner`).
    pub owner: u64,
    /// `Read` or `Write`.
    pub kind: LockType,
    /// First byte.
    pub start: u64,
    /// Last byte, inclusive; `u64::MAX` reaches to the end of file.
    pub end: u64,
    /// The locking process (`Flock::pid`).
    pub pid: u32,
    /// The calling thread of the `lk` that took it (`Ctx::pid`).
    pub caller: u32,
    /// The client fd it was taken through (`Fd::id`).
    pub fd: u64,
    /// The server session it is held in.
    pub epoch: u64,
}

impl Held {
    /// Its `struct flock` length: 0 reaches to the end of file.
    pub fn len(&self) -> u64 {
        if self.end == u64::MAX {
            0
        } else {
            self.end - self.start + 1
        }
    }
}

/// The inclusive range of a `struct flock` `(start, len)`; `None` when it overflows (the
/// brick refuses those).
pub(crate) fn range(start: u64, len: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return Some((start, u64::MAX));
    }
    Some((start, start.checked_add(len - 1)?))
}

type Key = (Gfid, bool, u64);

/// The held locks, per (inode, flock or POSIX, owner), each list sorted and disjoint.
#[derive(Default)]
pub(crate) struct LockTable {
    by_owner: HashMap<Key, Vec<Held>>,
}

impl LockTable {
    /// Held ranges in all.
    pub fn len(&self) -> usize {
        self.by_owner.values().map(Vec::len).sum()
    }

    /// Records a granted lock: it replaces the owner's locks over its range; touching or
    /// overlapping ranges of the same kind through the same fd merge with it.
    pub fn granted(&mut self, new: Held) {
        let key = (new.gfid, new.flock, new.owner);
        let list = self.by_owner.entry(key).or_default();
        punch(list, new.start, new.end);
        let mut merged = new;
        list.retain(|h| {
            let touches = h.end.checked_add(1).is_some_and(|e| e >= merged.start)
                && merged.end.checked_add(1).is_none_or(|e| e >= h.start);
            let same = h.kind == merged.kind && h.fd == merged.fd && h.epoch == merged.epoch;
            if touches && same {
                merged.start = merged.start.min(h.start);
                merged.end = merged.end.max(h.end);
                false
            } else {
                true
            }
        });
        list.push(merged);
        list.sort_by_key(|h| h.start);
    }

    /// Records an unlock of `start..=end` by `owner`.
    pub fn unlocked(&mut self, gfid: Gfid, flock: bool, owner: u64, start: u64, end: u64) {
        let key = (gfid, flock, owner);
        if let Some(list) = self.by_owner.get_mut(&key) {
            punch(list, start, end);
            if list.is_empty() {
                self.by_owner.remove(&key);
            }
        }
    }

    /// Records a flush (close(2)) by `owner`: its POSIX locks on `gfid` are gone.
    pub fn flushed(&mut self, gfid: Gfid, owner: u64) {
        self.by_owner.remove(&(gfid, false, owner));
    }

    /// Records the release of fd `fd`: every lock taken through it is gone.
    pub fn released(&mut self, fd: u64) {
        self.by_owner.retain(|_, list| {
            list.retain(|h| h.fd != fd);
            !list.is_empty()
        });
    }

    /// Every held range not known to be held in server session `epoch`.
    pub fn stale(&self, epoch: u64) -> Vec<Held> {
        let mut v: Vec<Held> = self
            .by_owner
            .values()
            .flatten()
            .filter(|h| h.epoch != epoch)
            .cloned()
            .collect();
        v.sort_by_key(|h| (h.fd, h.start));
        v
    }

    /// `h` was taken again in server session `epoch` (unless it changed meanwhile).
    pub fn retaken(&mut self, h: &Held, epoch: u64) {
        if let Some(list) = self.by_owner.get_mut(&(h.gfid, h.flock, h.owner)) {
            if let Some(x) = list.iter_mut().find(|x| *x == h) {
                x.epoch = epoch;
            }
        }
    }

    /// Forgets every lock of `owner` on `gfid` (of that kind) and returns them: they are
    /// lost.
    pub fn drop_owner(&mut self, gfid: Gfid, flock: bool, owner: u64) -> Vec<Held> {
        self.by_owner
            .remove(&(gfid, flock, owner))
            .unwrap_or_default()
    }
}

/// Cuts `start..=end` out of the disjoint ranges in `list`.
fn punch(list: &mut Vec<Held>, start: u64, end: u64) {
    let mut out = Vec::with_capacity(list.len() + 1);
    for h in list.drain(..) {
        if h.end < start || h.start > end {
            out.push(h);
            continue;
        }
        if h.start < start {
            out.push(Held {
                end: start - 1,
                ..h.clone()
            });
        }
        if h.end > end {
            out.push(Held {
                start: end + 1,
                ..h.clone()
            });
        }
    }
    *list = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(owner: u64, kind: LockType, start: u64, end: u64, fd: u64) -> Held {
        Held {
            gfid: Gfid::ROOT,
            flock: false,
            owner,
            kind,
            start,
            end,
            pid: 7,
            caller: 7,
            fd,
            epoch: 1,
        }
    }

    fn ranges(t: &LockTable, owner: u64) -> Vec<(LockType, u64, u64)> {
        let mut v: Vec<_> = t
            .stale(0)
            .into_iter()
            .filter(|h| h.owner == owner)
            .map(|h| (h.kind, h.start, h.end))
            .collect();
        v.sort_by_key(|x| x.1);
        v
    }

    #[test]
    fn fcntl_semantics() {
        use LockType::{Read, Write};
        let mut t = LockTable::default();
        t.granted(held(1, Write, 0, 99, 10));
        // A read lock in the middle splits the write lock.
        t.granted(held(1, Read, 40, 59, 10));
        assert_eq!(
            ranges(&t, 1),
            vec![(Write, 0, 39), (Read, 40, 59), (Write, 60, 99)]
        );
        // Another owner is independent.
        t.granted(held(2, Read, 0, u64::MAX, 11));
        // Touching write locks through the same fd merge.
        t.granted(held(1, Write, 40, 59, 10));
        assert_eq!(ranges(&t, 1), vec![(Write, 0, 99)]);
        t.unlocked(Gfid::ROOT, false, 1, 10, 19);
        assert_eq!(ranges(&t, 1), vec![(Write, 0, 9), (Write, 20, 99)]);
        assert_eq!(t.len(), 3);
        // Different fds are kept apart; release drops what went through one fd.
        t.granted(held(1, Write, 100, 199, 12));
        assert_eq!(t.len(), 4);
        t.released(12);
        assert_eq!(ranges(&t, 1), vec![(Write, 0, 9), (Write, 20, 99)]);
        // flock locks are their own table; flush drops only POSIX ones.
        t.granted(Held {
            flock: true,
            ..held(1, Write, 0, u64::MAX, 10)
        });
        t.flushed(Gfid::ROOT, 1);
        assert_eq!(ranges(&t, 1), vec![(Write, 0, u64::MAX)]);
        assert_eq!(ranges(&t, 2), vec![(Read, 0, u64::MAX)]);
        // Unlock to the end of file of a range reaching it.
        t.unlocked(Gfid::ROOT, false, 2, 5, u64::MAX);
        assert_eq!(ranges(&t, 2), vec![(Read, 0, 4)]);
    }

    #[test]
    fn epochs_and_loss() {
        let mut t = LockTable::default();
        t.granted(held(1, LockType::Write, 0, u64::MAX, 10));
        t.granted(held(2, LockType::Read, 5, 9, 11));
        assert_eq!(t.stale(1).len(), 0);
        let stale = t.stale(2);
        assert_eq!(stale.len(), 2);
        assert_eq!(stale[0].len(), 0);
        assert_eq!(stale[1].len(), 5);
        t.retaken(&stale[0], 2);
        assert_eq!(t.stale(2).len(), 1);
        let lost = t.drop_owner(Gfid::ROOT, false, 2);
        assert_eq!(lost.len(), 1);
        assert!(t.stale(2).is_empty());
        assert_eq!(range(5, 0), Some((5, u64::MAX)));
        assert_eq!(range(5, 5), Some((5, 9)));
        assert_eq!(range(u64::MAX, 2), None);
    }
}
