//! The byte-range lock engine: POSIX (fcntl) semantics on one lockable object, with no
//! async and no I/O, so it can be tested against a simple model.
//!
//! A [`RangeTable`] holds the granted locks of one object (an inode for `lk`, an inode in
//! one domain for `inodelk`) and the requests waiting for it, in arrival order:
//! - two locks conflict when their ranges overlap, their [`Owner`]s differ and at least one
//!   is a write lock;
//! - a request by an owner replaces that owner's locks over the requested range (cutting
//!   and splitting them), and an unlock punches a hole in them, exactly as the kernel does
//!   for fcntl;
//! - an owner's locks of one mode taken through one fd are kept merged: no two of them
//!   overlap or touch. Locks taken through different fds are kept apart so that releasing
//!   one fd drops exactly the bytes locked through it.

use std::collections::VecDeque;
use std::fmt;

use weft_core::Errno;

/// Who holds a lock: the client connection and the lock owner it chose. Owners are
/// compared as a pair, since two clients may pick the same lock owner value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    /// The client connection ([`weft_core::Ctx::client`]).
    pub client: u64,
    /// The lock owner within that client.
    pub owner: u64,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "client {} owner {:#x}", self.client, self.owner)
    }
}

/// The mode of a held or requested lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Shared.
    Read,
    /// Exclusive.
    Write,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Read => "read",
            Mode::Write => "write",
        })
    }
}

/// An inclusive byte range `start..=end`; `end == u64::MAX` means "to end of file and
/// beyond".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Range {
    /// First byte covered.
    pub start: u64,
    /// Last byte covered (inclusive).
    pub end: u64,
}

impl Range {
    /// The range of a `struct flock`-style `(start, len)`; `len == 0` reaches to the end
    /// of file. EOVERFLOW when `start + len - 1` does not fit in 64 bits (as fcntl).
    pub fn from_start_len(start: u64, len: u64) -> Result<Range, Errno> {
        if len == 0 {
            return Ok(Range {
                start,
                end: u64::MAX,
            });
        }
        match start.checked_add(len - 1) {
            Some(end) => Ok(Range { start, end }),
            None => Err(Errno(libc::EOVERFLOW)),
        }
    }

    /// The `struct flock` length of this range: 0 when it reaches to the end of file.
    pub fn flock_len(&self) -> u64 {
        if self.end == u64::MAX {
            0
        } else {
            self.end - self.start + 1
        }
    }

    /// Whether the two ranges share at least one byte.
    pub fn overlaps(&self, other: &Range) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Whether the two ranges overlap or are adjacent (one ends right before the other
    /// starts), so that their union is one range.
    pub fn touches(&self, other: &Range) -> bool {
        self.overlaps(other)
            || self.end.checked_add(1) == Some(other.start)
            || other.end.checked_add(1) == Some(self.start)
    }

    /// The bytes both ranges cover, if any.
    pub fn intersect(&self, other: &Range) -> Option<Range> {
        self.overlaps(other).then(|| Range {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.end == u64::MAX {
            write!(f, "{}..EOF", self.start)
        } else {
            write!(f, "{}..={}", self.start, self.end)
        }
    }
}

/// One granted lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// Who holds it.
    pub owner: Owner,
    /// Shared or exclusive.
    pub mode: Mode,
    /// The bytes it covers.
    pub range: Range,
    /// The process id reported by GETLK.
    pub pid: u32,
    /// The id of the fd it was taken through (0 when taken by location, as `inodelk`).
    pub fd: u64,
}

impl Lock {
    /// Whether this lock conflicts with a request by `owner` for `mode` over `range`.
    pub fn conflicts_with(&self, owner: Owner, mode: Mode, range: &Range) -> bool {
        self.owner != owner
            && (self.mode == Mode::Write || mode == Mode::Write)
            && self.range.overlaps(range)
    }

    fn same_kind(&self, other: &Lock) -> bool {
        self.owner == other.owner && self.mode == other.mode && self.fd == other.fd
    }
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} by {} pid {} fd {}",
            self.mode, self.range, self.owner, self.pid, self.fd
        )
    }
}

/// A request waiting for its range to become free. `lock` is what it will hold once
/// granted; `id` names the waiter to whoever is waiting for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// The waiter's id, unique within its table's owner (the translator).
    pub id: u64,
    /// The lock it asks for.
    pub lock: Lock,
}

/// What granting a waiter changed: enough to take the grant back exactly if the waiter
/// turns out to be gone before it saw the grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The waiter granted.
    pub id: u64,
    /// The lock granted.
    pub lock: Lock,
    /// The owner's locks over `lock.range` before the grant, cut to that range.
    pub prior: Vec<Lock>,
}

/// The granted locks and the waiters of one lockable object.
#[derive(Clone, Debug, Default)]
pub struct RangeTable {
    granted: Vec<Lock>,
    waiters: VecDeque<Waiter>,
}

impl RangeTable {
    /// An empty table.
    pub fn new() -> RangeTable {
        RangeTable::default()
    }

    /// The granted locks, by start offset.
    pub fn granted(&self) -> &[Lock] {
        &self.granted
    }

    /// The waiters, oldest first.
    pub fn waiters(&self) -> impl Iterator<Item = &Waiter> {
        self.waiters.iter()
    }

    /// True when nothing is held and nobody waits.
    pub fn is_empty(&self) -> bool {
        self.granted.is_empty() && self.waiters.is_empty()
    }

    /// The first granted lock (lowest start) that conflicts with a request by `owner` for
    /// `mode` over `range`: the answer of F_GETLK.
    pub fn conflict(&self, owner: Owner, mode: Mode, range: &Range) -> Option<&Lock> {
        self.granted
            .iter()
            .find(|l| l.conflicts_with(owner, mode, range))
    }

    /// Applies a request by `owner` over `range`: `Some(mode)` takes a lock, `None`
    /// unlocks. The owner's earlier locks over `range` are replaced (cut, split); the new
    /// lock merges with the owner's touching locks of the same mode and fd. Conflicts are
    /// not checked here (see [`RangeTable::conflict`]).
    pub fn set(&mut self, owner: Owner, mode: Option<Mode>, range: Range, pid: u32, fd: u64) {
        let mut out = Vec::with_capacity(self.granted.len() + 2);
        for l in self.granted.drain(..) {
            if l.owner != owner || !l.range.overlaps(&range) {
                out.push(l);
                continue;
            }
            if l.range.start < range.start {
                out.push(Lock {
                    range: Range {
                        start: l.range.start,
                        end: range.start - 1,
                    },
                    ..l.clone()
                });
            }
            if l.range.end > range.end {
                out.push(Lock {
                    range: Range {
                        start: range.end + 1,
                        end: l.range.end,
                    },
                    ..l
                });
            }
        }
        if let Some(mode) = mode {
            let mut new = Lock {
                owner,
                mode,
                range,
                pid,
                fd,
            };
            // The owner's same-mode same-fd locks do not touch each other, and none
            // overlaps `range` any more, so at most one on each side touches it.
            out.retain(|l| {
                if l.same_kind(&new) && l.range.touches(&new.range) {
                    new.range.start = new.range.start.min(l.range.start);
                    new.range.end = new.range.end.max(l.range.end);
                    false
                } else {
                    true
                }
            });
            out.push(new);
        }
        out.sort_by_key(|l| (l.range.start, l.range.end));
        self.granted = out;
    }

    /// The owner's locks over `range`, cut to it (what [`RangeTable::set`] would replace).
    pub fn owner_locks_in(&self, owner: Owner, range: &Range) -> Vec<Lock> {
        self.granted
            .iter()
            .filter(|l| l.owner == owner)
            .filter_map(|l| {
                l.range.intersect(range).map(|r| Lock {
                    range: r,
                    ..l.clone()
                })
            })
            .collect()
    }

    /// Drops every granted lock `pred` selects; true if any was dropped.
    pub fn remove_locks(&mut self, mut pred: impl FnMut(&Lock) -> bool) -> bool {
        let before = self.granted.len();
        self.granted.retain(|l| !pred(l));
        self.granted.len() != before
    }

    /// Queues a waiter behind the others.
    pub fn push_waiter(&mut self, id: u64, lock: Lock) {
        self.waiters.push_back(Waiter { id, lock });
    }

    /// Removes waiter `id`; true if it was still waiting.
    pub fn remove_waiter(&mut self, id: u64) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.id != id);
        self.waiters.len() != before
    }

    /// Removes and returns every waiter `pred` selects, oldest first.
    pub fn take_waiters(&mut self, pred: impl FnMut(&Waiter) -> bool) -> Vec<Waiter> {
        super::take_where(&mut self.waiters, pred)
    }

    /// Grants, oldest first, every waiter whose lock no longer conflicts (each grant is
    /// seen by the conflict checks of the later waiters) and that `alive` accepts; waiters
    /// `alive` rejects are dropped without being granted. Returns the grants in order.
    pub fn grant_waiters(&mut self, mut alive: impl FnMut(u64) -> bool) -> Vec<Grant> {
        let mut grants = Vec::new();
        let mut kept = VecDeque::with_capacity(self.waiters.len());
        while let Some(w) = self.waiters.pop_front() {
            let l = &w.lock;
            if self.conflict(l.owner, l.mode, &l.range).is_some() {
                kept.push_back(w);
                continue;
            }
            if !alive(w.id) {
                continue;
            }
            let prior = self.owner_locks_in(l.owner, &l.range);
            self.set(l.owner, Some(l.mode), l.range, l.pid, l.fd);
            grants.push(Grant {
                id: w.id,
                lock: w.lock,
                prior,
            });
        }
        self.waiters = kept;
        grants
    }

    /// Takes back a grant whose waiter never saw it: the owner's locks over the granted
    /// range become what they were before ([`Grant::prior`]).
    pub fn undo(&mut self, grant: &Grant) {
        let l = &grant.lock;
        self.set(l.owner, None, l.range, l.pid, l.fd);
        for p in &grant.prior {
            self.set(p.owner, Some(p.mode), p.range, p.pid, p.fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: Owner = Owner {
        client: 1,
        owner: 7,
    };
    const B: Owner = Owner {
        client: 2,
        owner: 7,
    };

    fn r(start: u64, len: u64) -> Range {
        Range::from_start_len(start, len).unwrap()
    }

    fn spans(t: &RangeTable) -> Vec<(Owner, Mode, u64, u64)> {
        t.granted()
            .iter()
            .map(|l| (l.owner, l.mode, l.range.start, l.range.flock_len()))
            .collect()
    }

    #[test]
    fn range_from_start_len() {
        assert_eq!(r(5, 0).end, u64::MAX);
        assert_eq!(r(5, 0).flock_len(), 0);
        assert_eq!(r(5, 10), Range { start: 5, end: 14 });
        assert_eq!(r(5, 10).flock_len(), 10);
        assert_eq!(
            Range::from_start_len(u64::MAX, 2),
            Err(Errno(libc::EOVERFLOW))
        );
        assert!(Range::from_start_len(u64::MAX, 1).is_ok());
        assert!(r(0, 10).touches(&r(10, 5)));
        assert!(!r(0, 10).touches(&r(11, 5)));
        assert!(!r(0, 10).overlaps(&r(10, 5)));
    }

    #[test]
    fn unlock_in_the_middle_splits() {
        let mut t = RangeTable::new();
        t.set(A, Some(Mode::Write), r(0, 100), 1, 3);
        t.set(A, None, r(40, 20), 1, 3);
        assert_eq!(
            spans(&t),
            vec![(A, Mode::Write, 0, 40), (A, Mode::Write, 60, 40)]
        );
        // Unlocking what is not held changes nothing.
        t.set(A, None, r(200, 5), 1, 3);
        t.set(B, None, r(0, 0), 1, 3);
        assert_eq!(t.granted().len(), 2);
    }

    #[test]
    fn adjacent_and_overlapping_same_kind_merge() {
        let mut t = RangeTable::new();
        t.set(A, Some(Mode::Read), r(0, 10), 1, 3);
        t.set(A, Some(Mode::Read), r(20, 10), 1, 3);
        t.set(A, Some(Mode::Read), r(10, 10), 1, 3);
        assert_eq!(spans(&t), vec![(A, Mode::Read, 0, 30)]);
        t.set(A, Some(Mode::Read), r(25, 0), 1, 3);
        assert_eq!(spans(&t), vec![(A, Mode::Read, 0, 0)]);
        // Another owner's adjacent lock stays apart.
        let mut t = RangeTable::new();
        t.set(A, Some(Mode::Read), r(0, 10), 1, 3);
        t.set(B, Some(Mode::Read), r(10, 10), 1, 3);
        assert_eq!(t.granted().len(), 2);
    }

    #[test]
    fn same_owner_upgrade_and_downgrade_replace() {
        let mut t = RangeTable::new();
        t.set(A, Some(Mode::Read), r(0, 100), 1, 3);
        t.set(A, Some(Mode::Write), r(10, 10), 1, 3);
        assert_eq!(
            spans(&t),
            vec![
                (A, Mode::Read, 0, 10),
                (A, Mode::Write, 10, 10),
                (A, Mode::Read, 20, 80)
            ]
        );
        // Downgrading the middle back merges everything again.
        t.set(A, Some(Mode::Read), r(10, 10), 1, 3);
        assert_eq!(spans(&t), vec![(A, Mode::Read, 0, 100)]);
        // Upgrading the whole file.
        t.set(A, Some(Mode::Write), r(0, 0), 1, 3);
        assert_eq!(spans(&t), vec![(A, Mode::Write, 0, 0)]);
    }

    #[test]
    fn conflicts_need_overlap_other_owner_and_a_writer() {
        let mut t = RangeTable::new();
        t.set(A, Some(Mode::Read), r(100, 100), 9, 3);
        assert!(t.conflict(B, Mode::Read, &r(150, 10)).is_none());
        assert!(t.conflict(A, Mode::Write, &r(150, 10)).is_none());
        assert!(t.conflict(B, Mode::Write, &r(200, 10)).is_none());
        assert!(t.conflict(B, Mode::Write, &r(0, 100)).is_none());
        let c = t.conflict(B, Mode::Write, &r(199, 1)).unwrap();
        assert_eq!(
            (c.owner, c.mode, c.range, c.pid),
            (A, Mode::Read, r(100, 100), 9)
        );
        // Len 0 reaches everything after the start.
        assert!(t.conflict(B, Mode::Write, &r(150, 0)).is_some());
        assert!(t.conflict(B, Mode::Write, &r(0, 0)).is_some());
    }

    #[test]
    fn getlk_reports_the_lowest_conflicting_lock() {
        let mut t = RangeTable::new();
        let c = Owner {
            client: 3,
            owner: 1,
        };
        t.set(A, Some(Mode::Write), r(50, 10), 1, 3);
        t.set(B, Some(Mode::Read), r(10, 10), 2, 4);
        assert_eq!(t.conflict(c, Mode::Write, &r(0, 0)).unwrap().owner, B);
        assert_eq!(t.conflict(c, Mode::Read, &r(0, 0)).unwrap().owner, A);
        assert!(t.conflict(c, Mode::Read, &r(0, 50)).is_none());
    }

    #[test]
    fn different_fds_of_one_owner_stay_apart() {
        let mut t = RangeTable::new();
        t.set(A, Some(Mode::Write), r(0, 10), 1, 3);
        t.set(A, Some(Mode::Write), r(10, 10), 1, 4);
        assert_eq!(t.granted().len(), 2);
        // A lock through fd 4 over fd 3's bytes takes them over.
        t.set(A, Some(Mode::Write), r(5, 5), 1, 4);
        assert!(t.remove_locks(|l| l.fd == 4));
        assert_eq!(spans(&t), vec![(A, Mode::Write, 0, 5)]);
    }

    #[test]
    fn waiters_are_granted_in_order_and_undo_restores() {
        let mut t = RangeTable::new();
        t.set(A, Some(Mode::Write), r(0, 100), 1, 3);
        t.set(B, Some(Mode::Read), r(200, 10), 2, 4);
        let b_write = Lock {
            owner: B,
            mode: Mode::Write,
            range: r(50, 200),
            pid: 2,
            fd: 4,
        };
        let c = Owner {
            client: 3,
            owner: 0,
        };
        t.push_waiter(1, b_write.clone());
        t.push_waiter(
            2,
            Lock {
                owner: c,
                mode: Mode::Read,
                range: r(60, 1),
                pid: 3,
                fd: 5,
            },
        );
        assert!(t.grant_waiters(|_| true).is_empty());
        t.set(A, None, r(0, 0), 1, 3);
        let g = t.grant_waiters(|_| true);
        // The first waiter's grant blocks the second.
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].id, 1);
        assert_eq!(g[0].prior.len(), 1);
        assert_eq!(spans(&t), vec![(B, Mode::Write, 50, 200)]);
        t.undo(&g[0]);
        assert_eq!(spans(&t), vec![(B, Mode::Read, 200, 10)]);
        // A waiter found dead is dropped, not granted.
        let g = t.grant_waiters(|_| false);
        assert!(g.is_empty());
        assert_eq!(t.waiters().count(), 0);
        assert_eq!(spans(&t), vec![(B, Mode::Read, 200, 10)]);
    }

    /// A byte map over bytes `0..N`: for each byte, each owner's mode and fd. Finite
    /// requests end before byte 27, so bytes 27.. all behave alike and the map's last
    /// bytes stand for everything up to the end of file (where len 0 requests reach).
    const N: u64 = 32;

    #[derive(Clone, Debug)]
    enum Op {
        Set(usize, Option<Mode>, u64, u64, u64),
        DropFd(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let mode = prop_oneof![Just(None), Just(Some(Mode::Read)), Just(Some(Mode::Write))];
        prop_oneof![
            8 => (0usize..3, mode, 0u64..20, 0u64..8, 1u64..3)
                .prop_map(|(o, m, s, l, fd)| Op::Set(o, m, s, l, fd)),
            1 => (1u64..3).prop_map(Op::DropFd),
        ]
    }

    fn owner(i: usize) -> Owner {
        // Two clients using the same lock owner, and one client with two owners.
        [
            Owner {
                client: 1,
                owner: 5,
            },
            Owner {
                client: 2,
                owner: 5,
            },
            Owner {
                client: 1,
                owner: 6,
            },
        ][i]
    }

    proptest! {
        #[test]
        fn engine_matches_byte_map(ops in proptest::collection::vec(op(), 1..40)) {
            let mut t = RangeTable::new();
            // model[byte][owner] = Some((mode, fd))
            let mut model = vec![[None::<(Mode, u64)>; 3]; N as usize];
            for op in ops {
                match op {
                    Op::Set(o, m, s, len, fd) => {
                        let range = r(s, len);
                        // A set is only applied when the engine finds no conflict, as
                        // the translator does; the model must agree on the conflict.
                        if let Some(mode) = m {
                            let model_conflict = (0..N).filter(|b| range.start <= *b && *b <= range.end)
                                .any(|b| (0..3).any(|p| p != o && owner(p) != owner(o)
                                    && matches!(model[b as usize][p], Some((pm, _)) if pm == Mode::Write || mode == Mode::Write)));
                            let engine_conflict = t.conflict(owner(o), mode, &range).is_some();
                            prop_assert_eq!(model_conflict, engine_conflict);
                            if engine_conflict {
                                continue;
                            }
                        }
                        t.set(owner(o), m, range, 0, fd);
                        for b in 0..N {
                            if range.start <= b && b <= range.end {
                                model[b as usize][o] = m.map(|m| (m, fd));
                            }
                        }
                    }
                    Op::DropFd(fd) => {
                        t.remove_locks(|l| l.fd == fd);
                        for b in model.iter_mut() {
                            for e in b.iter_mut() {
                                if matches!(e, Some((_, f)) if *f == fd) {
                                    *e = None;
                                }
                            }
                        }
                    }
                }
                // Coverage agrees byte for byte.
                for b in 0..N {
                    for (o, entry) in model[b as usize].iter().enumerate() {
                        let held: Vec<_> = t.granted().iter()
                            .filter(|l| l.owner == owner(o) && l.range.start <= b && b <= l.range.end)
                            .map(|l| (l.mode, l.fd))
                            .collect();
                        let want: Vec<_> = entry.iter().copied().collect();
                        prop_assert_eq!(held, want, "byte {} owner {}", b, o);
                    }
                }
                // Canonical form: sorted, and no same-kind locks overlap or touch.
                let g = t.granted();
                for (i, a) in g.iter().enumerate() {
                    prop_assert!(a.range.start <= a.range.end);
                    for b in &g[i + 1..] {
                        prop_assert!(a.range.start <= b.range.start);
                        if a.owner == b.owner {
                            prop_assert!(!a.range.overlaps(&b.range));
                            if a.mode == b.mode && a.fd == b.fd {
                                prop_assert!(!a.range.touches(&b.range));
                            }
                        }
                    }
                }
            }
        }
    }
}
