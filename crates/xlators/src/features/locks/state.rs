//! The translator's lock state: every range table and entry table, the replies of the
//! requests waiting in them, and the grants their waiters have not picked up yet. All of
//! it sits behind one mutex in [`super::Locks`]; nothing here is async, and nothing here
//! is ever called with the mutex held across an `.await`.
//!
//! A waiting request is a queue entry in its table plus a oneshot sender here, keyed by a
//! waiter id. Whoever frees a range grants the waiters that fit, under the mutex, and sends
//! each `Ok(())`. A waiter's future may be dropped at any point; its guard then calls
//! [`State::cancel`], which removes it from its queue, or, if it was granted but had not
//! yet seen the grant, takes the grant back exactly ([`RangeTable::undo`]). So a dropped
//! waiter never keeps a lock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use tokio::sync::oneshot;
use weft_core::{Errno, Gfid};

use super::entry::{EntryLock, EntryTable};
use super::range::{Grant, Lock, Mode, Owner, Range, RangeTable};

/// Which range table a lock lives in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RangeKey {
    /// Application POSIX locks (`lk`) on an inode.
    Posix(Gfid),
    /// Application flock(2) locks (`lk` with `LK_FLOCK_KEY`) on an inode: never in conflict
    /// with POSIX locks, as on Linux.
    Flock(Gfid),
    /// Cluster-internal inode locks (`inodelk`) on an inode in one domain.
    Inode(String, Gfid),
}

/// Which entry table an entry lock lives in: a lock domain and a directory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryKey {
    /// The lock domain.
    pub domain: String,
    /// The directory's gfid.
    pub dir: Gfid,
}

/// Where a waiter waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// In a range table.
    Range(RangeKey),
    /// In an entry table.
    Entry(EntryKey),
}

/// The reply channel of a waiting request: `Ok(())` once granted, an errno if cancelled.
pub type Reply = oneshot::Sender<Result<(), Errno>>;

/// The receiving end a waiting request awaits.
pub type ReplyRx = oneshot::Receiver<Result<(), Errno>>;

/// A grant whose waiter has not seen it yet.
enum Unseen {
    Range(RangeKey, Grant),
    Entry(EntryKey),
}

/// The outcome of asking for a lock.
pub enum Outcome {
    /// Granted at once.
    Granted,
    /// Refused at once: this granted lock is in the way.
    Conflict,
    /// Queued as waiter `id`; await `rx`.
    Queued(u64, ReplyRx),
}

/// All lock state of one translator.
#[derive(Default)]
pub struct State {
    ranges: BTreeMap<RangeKey, RangeTable>,
    entries: BTreeMap<EntryKey, EntryTable>,
    next_id: u64,
    waiting: HashMap<u64, Reply>,
    unseen: HashMap<u64, Unseen>,
}

impl State {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn queue(&mut self, id: u64) -> ReplyRx {
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(id, tx);
        rx
    }

    /// The first granted lock in `key` conflicting with `owner` asking `mode` over `range`.
    pub fn range_conflict(
        &self,
        key: &RangeKey,
        owner: Owner,
        mode: Mode,
        range: &Range,
    ) -> Option<Lock> {
        self.ranges.get(key)?.conflict(owner, mode, range).cloned()
    }

    /// Takes `lock` in `key` if nothing conflicts; otherwise queues it when `wait`.
    pub fn range_lock(&mut self, key: &RangeKey, lock: Lock, wait: bool) -> Outcome {
        let id = self.new_id();
        let t = self.ranges.entry(key.clone()).or_default();
        if t.conflict(lock.owner, lock.mode, &lock.range).is_none() {
            t.set(lock.owner, Some(lock.mode), lock.range, lock.pid, lock.fd);
            return Outcome::Granted;
        }
        if !wait {
            self.tidy_range(key);
            return Outcome::Conflict;
        }
        t.push_waiter(id, lock);
        Outcome::Queued(id, self.queue(id))
    }

    /// Unlocks `range` for `owner` in `key` and grants whoever can go now.
    pub fn range_unlock(&mut self, key: &RangeKey, owner: Owner, range: Range) {
        if let Some(t) = self.ranges.get_mut(key) {
            t.set(owner, None, range, 0, 0);
            self.scrub_prior(
                key,
                |p| p.owner == owner && p.range.overlaps(&range),
                Some(range),
            );
            self.regrant(&Target::Range(key.clone()));
        }
    }

    /// Takes entry lock `lock` in `key` if nothing conflicts; otherwise queues it when
    /// `wait`. The lock's id is chosen here.
    pub fn entry_lock(
        &mut self,
        key: &EntryKey,
        owner: Owner,
        name: Option<std::ffi::OsString>,
        mode: Mode,
        wait: bool,
    ) -> Outcome {
        let id = self.new_id();
        let lock = EntryLock {
            id,
            owner,
            name,
            mode,
        };
        let t = self.entries.entry(key.clone()).or_default();
        if t.conflict(&lock).is_none() {
            t.grant(lock);
            return Outcome::Granted;
        }
        if !wait {
            self.tidy_entry(key);
            return Outcome::Conflict;
        }
        t.push_waiter(lock);
        Outcome::Queued(id, self.queue(id))
    }

    /// Releases one entry lock of `owner` on `name` in `key`; false if it held none.
    pub fn entry_unlock(
        &mut self,
        key: &EntryKey,
        owner: Owner,
        name: Option<&std::ffi::OsString>,
        mode: Mode,
    ) -> bool {
        let Some(t) = self.entries.get_mut(key) else {
            return false;
        };
        let done = t.unlock(owner, name, mode);
        self.regrant(&Target::Entry(key.clone()));
        done
    }

    /// Whether any lock (POSIX, flock or inodelk in any domain) is granted or awaited on
    /// `gfid`.
    pub fn holds_any(&self, gfid: Gfid) -> bool {
        self.ranges.iter().any(|(k, t)| {
            let on = match k {
                RangeKey::Posix(g) | RangeKey::Flock(g) | RangeKey::Inode(_, g) => *g == gfid,
            };
            on && !t.is_empty()
        })
    }

    /// Releases every POSIX lock `owner` holds on `gfid` (close(2) semantics).
    pub fn flush(&mut self, gfid: Gfid, owner: Owner) {
        let key = RangeKey::Posix(gfid);
        if let Some(t) = self.ranges.get_mut(&key) {
            t.remove_locks(|l| l.owner == owner);
            self.scrub_prior(&key, |p| p.owner == owner, None);
            self.regrant(&Target::Range(key));
        }
    }

    /// Drops every POSIX and flock lock taken through fd `fd_id` on `gfid`, and fails its
    /// waiters with EBADF.
    pub fn release_fd(&mut self, gfid: Gfid, fd_id: u64) {
        self.release_fd_in(RangeKey::Posix(gfid), fd_id);
        self.release_fd_in(RangeKey::Flock(gfid), fd_id);
    }

    fn release_fd_in(&mut self, key: RangeKey, fd_id: u64) {
        let Some(t) = self.ranges.get_mut(&key) else {
            return;
        };
        t.remove_locks(|l| l.fd == fd_id);
        let gone = t.take_waiters(|w| w.lock.fd == fd_id);
        for w in gone {
            if let Some(tx) = self.waiting.remove(&w.id) {
                let _ = tx.send(Err(Errno::EBADF));
            }
        }
        self.unseen.retain(|_, u| match u {
            Unseen::Range(k, g) => !(k == &key && g.lock.fd == fd_id),
            Unseen::Entry(_) => true,
        });
        self.scrub_prior(&key, |p| p.fd == fd_id, None);
        self.regrant(&Target::Range(key));
    }

    /// Drops every lock and waiter of client connection `client`; its waiters get
    /// ENOTCONN (their tasks are normally being aborted anyway).
    pub fn forget_client(&mut self, client: u64) {
        let mut touched = Vec::new();
        for (k, t) in self.ranges.iter_mut() {
            let dropped = t.remove_locks(|l| l.owner.client == client);
            let gone = t.take_waiters(|w| w.lock.owner.client == client);
            if dropped || !gone.is_empty() {
                touched.push(Target::Range(k.clone()));
            }
            for w in gone {
                if let Some(tx) = self.waiting.remove(&w.id) {
                    let _ = tx.send(Err(Errno::ENOTCONN));
                }
            }
        }
        for (k, t) in self.entries.iter_mut() {
            let dropped = t.remove_locks(|l| l.owner.client == client);
            let gone = t.take_waiters(|w| w.owner.client == client);
            if dropped || !gone.is_empty() {
                touched.push(Target::Entry(k.clone()));
            }
            for w in gone {
                if let Some(tx) = self.waiting.remove(&w.id) {
                    let _ = tx.send(Err(Errno::ENOTCONN));
                }
            }
        }
        // Grants of this client not yet seen are gone with its locks; prior locks of this
        // client must never be restored by someone else's undo.
        // (An entry grant's undo removes that lock by id, harmless once it is gone.)
        self.unseen.retain(|_, u| match u {
            Unseen::Range(_, g) => g.lock.owner.client != client,
            Unseen::Entry(_) => true,
        });
        for u in self.unseen.values_mut() {
            if let Unseen::Range(_, g) = u {
                g.prior.retain(|p| p.owner.client != client);
            }
        }
        for t in touched {
            self.regrant(&t);
        }
    }

    /// Fails every waiter with ENOTCONN (the graph is going away).
    pub fn fail_all_waiters(&mut self) {
        for t in self.ranges.values_mut() {
            t.take_waiters(|_| true);
        }
        for t in self.entries.values_mut() {
            t.take_waiters(|_| true);
        }
        for (_, tx) in self.waiting.drain() {
            let _ = tx.send(Err(Errno::ENOTCONN));
        }
    }

    /// Waiter `id` saw its reply: its grant (if any) can no longer be taken back.
    pub fn seen(&mut self, id: u64) {
        self.unseen.remove(&id);
        self.waiting.remove(&id);
    }

    /// Waiter `id` in `target` was dropped before it saw a reply: it leaves no trace.
    pub fn cancel(&mut self, id: u64, target: &Target) {
        self.waiting.remove(&id);
        let still_waiting = match target {
            Target::Range(k) => self.ranges.get_mut(k).is_some_and(|t| t.remove_waiter(id)),
            Target::Entry(k) => self.entries.get_mut(k).is_some_and(|t| t.remove_waiter(id)),
        };
        if !still_waiting {
            if let Some(u) = self.unseen.remove(&id) {
                self.undo(id, u);
            }
        }
        // A waiter leaving the queue can unblock nobody, but an undone grant can.
        self.regrant(target);
    }

    fn undo(&mut self, id: u64, u: Unseen) {
        match u {
            Unseen::Range(k, g) => {
                if let Some(t) = self.ranges.get_mut(&k) {
                    t.undo(&g);
                }
            }
            Unseen::Entry(k) => {
                // An entry lock granted to a waiter carries the waiter's id.
                if let Some(t) = self.entries.get_mut(&k) {
                    t.undo(id);
                }
            }
        }
    }

    /// Grants the waiters of `target` that fit now, oldest first, replying to each;
    /// drops waiters whose future is gone; takes back grants whose reply cannot be
    /// delivered. Removes the table if it ends up empty.
    fn regrant(&mut self, target: &Target) {
        loop {
            let waiting = &mut self.waiting;
            let mut alive = |id: u64| match waiting.get(&id) {
                Some(tx) if !tx.is_closed() => true,
                _ => {
                    waiting.remove(&id);
                    false
                }
            };
            let mut undone = false;
            match target {
                Target::Range(k) => {
                    let Some(t) = self.ranges.get_mut(k) else {
                        return;
                    };
                    for g in t.grant_waiters(&mut alive) {
                        let delivered = self
                            .waiting
                            .remove(&g.id)
                            .is_some_and(|tx| tx.send(Ok(())).is_ok());
                        if delivered {
                            self.unseen.insert(g.id, Unseen::Range(k.clone(), g));
                        } else {
                            t.undo(&g);
                            undone = true;
                        }
                    }
                }
                Target::Entry(k) => {
                    let Some(t) = self.entries.get_mut(k) else {
                        return;
                    };
                    for id in t.grant_waiters(&mut alive) {
                        let delivered = self
                            .waiting
                            .remove(&id)
                            .is_some_and(|tx| tx.send(Ok(())).is_ok());
                        if delivered {
                            self.unseen.insert(id, Unseen::Entry(k.clone()));
                        } else {
                            t.undo(id);
                            undone = true;
                        }
                    }
                }
            }
            if !undone {
                break;
            }
        }
        match target {
            Target::Range(k) => self.tidy_range(k),
            Target::Entry(k) => self.tidy_entry(k),
        }
    }

    /// Removes the prior locks `pred` selects from the not-yet-seen grants in `key`, so a
    /// later undo does not bring back locks released since. With `cut`, only the parts
    /// outside that range survive (an unlock of `cut`).
    fn scrub_prior(&mut self, key: &RangeKey, pred: impl Fn(&Lock) -> bool, cut: Option<Range>) {
        for u in self.unseen.values_mut() {
            let Unseen::Range(k, g) = u else { continue };
            if k != key {
                continue;
            }
            let mut kept = Vec::with_capacity(g.prior.len());
            for p in g.prior.drain(..) {
                if !pred(&p) {
                    kept.push(p);
                    continue;
                }
                let Some(cut) = cut else { continue };
                if p.range.start < cut.start {
                    kept.push(Lock {
                        range: Range {
                            start: p.range.start,
                            end: cut.start - 1,
                        },
                        ..p.clone()
                    });
                }
                if p.range.end > cut.end {
                    kept.push(Lock {
                        range: Range {
                            start: cut.end + 1,
                            end: p.range.end,
                        },
                        ..p
                    });
                }
            }
            g.prior = kept;
        }
    }

    fn tidy_range(&mut self, key: &RangeKey) {
        if self.ranges.get(key).is_some_and(|t| t.is_empty()) {
            self.ranges.remove(key);
        }
    }

    fn tidy_entry(&mut self, key: &EntryKey) {
        if self.entries.get(key).is_some_and(|t| t.is_empty()) {
            self.entries.remove(key);
        }
    }

    /// A human-readable account of every table, for statedumps.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for (k, t) in &self.ranges {
            let _ = match k {
                RangeKey::Posix(g) => writeln!(s, "posix locks on {g}:"),
                RangeKey::Flock(g) => writeln!(s, "flock locks on {g}:"),
                RangeKey::Inode(d, g) => writeln!(s, "inodelk domain {d:?} on {g}:"),
            };
            for l in t.granted() {
                let _ = writeln!(s, "    granted {l}");
            }
            for w in t.waiters() {
                let _ = writeln!(s, "    waiting #{} {}", w.id, w.lock);
            }
        }
        for (k, t) in &self.entries {
            let _ = writeln!(s, "entrylk domain {:?} in {}:", k.domain, k.dir);
            for l in t.granted() {
                let _ = writeln!(s, "    granted {l}");
            }
            for w in t.waiters() {
                let _ = writeln!(s, "    waiting #{} {w}", w.id);
            }
        }
        if s.is_empty() {
            s.push_str("no locks\n");
        }
        s
    }
}
