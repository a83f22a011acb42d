//! Transactions: how a change reaches every replica so that a crash anywhere leaves the
//! survivors knowing who is behind (see [`super::changelog`]).
//!
//! 1. *Lock*: an inode lock (data or metadata domain, whole file) or entry locks on the
//!    names (entry domain) in `features/locks` on every replica that is up. Locks are
//!    tried on all at once without waiting; on a conflict what was taken is given back
//!    and they are taken one replica after another in order, waiting, so two clients
//!    cannot deadlock.
//! 2. *Pre-op*: every locked replica raises every replica's counter by one, an absent
//!    replica's by two.
//! 3. The change itself, on every locked replica at once.
//! 4. A replica the change failed on is *accused* (its counter raised once more on the
//!    others) before the change is acknowledged.
//! 5. *Post-op*: the counters of replicas where every change succeeded go down by one;
//!    then the locks are given back.
//!
//! Data and metadata changes of one inode in flight together share one transaction
//! (a [`Slot`] holds it): the first takes the lock and does the pre-op, the last one out
//! does the post-op, after `post-op-delay` so that the next write of a sequential writer
//! finds it still held (eager locking). Entry changes each have their own, locking only
//! their names; their post-op and unlock happen after the answer. Entry changes sent from
//! under a directory lease ([`weft_core::LEASED_DIR_KEY`]: no other client acts there)
//! share one per directory the same way, under an entry lock on the whole directory, so a
//! burst of creates takes one lock and does one pre-op and post-op on the directory.

use std::ffi::OsString;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use weft_core::*;

use super::changelog::{encode, key, torn_safe_order, Kind, Matrix};
use super::{ixd, Inode, Replicate};

/// Lock domain of data transactions (and of heals copying data).
pub(crate) const DATA_DOMAIN: &str = "weft.afr.data";
/// Lock domain of metadata transactions.
pub(crate) const META_DOMAIN: &str = "weft.afr.metadata";
/// Lock domain heals of one inode's data take turns in (held for the whole data heal,
/// while the data lock is given back between chunks of a big file; writers never take it).
pub(crate) const SELF_HEAL_DOMAIN: &str = "weft.afr.self-heal";
/// Lock domain of entry transactions (names in a directory; the whole directory for heal).
pub(crate) const ENTRY_DOMAIN: &str = "weft.afr.entry";

/// The lock domain of changes of `kind`.
pub(crate) fn domain(kind: Kind) -> &'static str {
    match kind {
        Kind::Data => DATA_DOMAIN,
        Kind::Metadata => META_DOMAIN,
        Kind::Entry => ENTRY_DOMAIN,
    }
}

/// The transaction an inode's changes of one kind share while in flight.
#[derive(Default)]
pub(crate) struct Slot {
    current: tokio::sync::Mutex<Option<Arc<Batch>>>,
    active: AtomicUsize,
    /// Told when the current transaction ends.
    ended: tokio::sync::Notify,
}

/// How long a shared transaction takes new changes: after that they wait for it to end and
/// start another, so a heal or another client waiting for the lock gets its turn.
const JOIN_FOR: std::time::Duration = std::time::Duration::from_millis(500);

/// One transaction: its lock and its pre-op, shared by the changes in it.
pub(crate) struct Batch {
    kind: Kind,
    /// When it began, and the event generation then (a replica that came back since
    /// is not in it: new changes wait for the next).
    started: std::time::Instant,
    gen: u64,
    /// Takes no more changes.
    closed: std::sync::atomic::AtomicBool,
    /// The inodes whose changelogs it moves: the inode itself, or the parent directories.
    targets: Vec<Gfid>,
    owner: u64,
    /// An entry transaction shared by a directory's changes: it holds the entry lock on
    /// the whole directory (otherwise each entry change locks its names itself).
    dir_lock: bool,
    /// Replicas it holds the lock on.
    locked: Vec<usize>,
    /// Replicas every change so far succeeded on (the post-op lowers their counters).
    members: Mutex<Vec<usize>>,
    /// Replicas already accused in this transaction.
    accused: tokio::sync::Mutex<Vec<usize>>,
}

impl Batch {
    fn members(&self) -> Vec<usize> {
        self.members.lock().clone()
    }
}

fn lock_ctx(owner: u64) -> Ctx {
    Ctx {
        lk_owner: owner,
        ..Ctx::internal()
    }
}

fn flock(kind: LockType, owner: u64, start: u64, len: u64) -> Flock {
    Flock {
        kind,
        start,
        len,
        pid: 0,
        owner,
    }
}

impl Replicate {
    /// Takes an inode lock on `[start, start+len)` (len 0: to the end) in `domain` on the
    /// candidates; returns the replicas that hold it.
    pub(crate) async fn lock_inode(
        &self,
        domain: &str,
        g: Gfid,
        owner: u64,
        range: (u64, u64),
        cands: &[usize],
    ) -> Vec<usize> {
        // Always in child order: two lockers waiting in different orders could deadlock.
        let mut sorted = cands.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        if let Some(got) = self.try_lock_range(domain, g, owner, range, &sorted).await {
            return got;
        }
        // Someone holds it somewhere (what was taken is given back): wait in order.
        let ctx = lock_ctx(owner);
        let lk = flock(LockType::Write, owner, range.0, range.1);
        let loc = Loc::inode(g);
        let mut held = Vec::new();
        for &i in &sorted {
            if self.children[i]
                .inodelk(&ctx, domain, &loc, LkCmd::SetWait, &lk, Xdata::new())
                .await
                .is_ok()
            {
                held.push(i);
            }
        }
        held
    }

    /// Takes a whole-file inode lock in `domain` on the candidates without waiting; when
    /// anyone holds it anywhere, gives back what it took and returns none.
    pub(crate) async fn try_lock_inode(
        &self,
        domain: &str,
        g: Gfid,
        owner: u64,
        cands: &[usize],
    ) -> Vec<usize> {
        self.try_lock_range(domain, g, owner, (0, 0), cands)
            .await
            .unwrap_or_default()
    }

    /// Tries the lock on every candidate at once without waiting: the replicas that took
    /// it, or `None` (and nothing held) when anyone holds it anywhere.
    async fn try_lock_range(
        &self,
        domain: &str,
        g: Gfid,
        owner: u64,
        range: (u64, u64),
        cands: &[usize],
    ) -> Option<Vec<usize>> {
        let ctx = lock_ctx(owner);
        let lk = flock(LockType::Write, owner, range.0, range.1);
        let loc = Loc::inode(g);
        let rs = self
            .each(cands, |_, c| {
                let (ctx, loc) = (&ctx, &loc);
                async move {
                    c.inodelk(ctx, domain, loc, LkCmd::Set, &lk, Xdata::new())
                        .await
                }
            })
            .await;
        let got: Vec<usize> = rs
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        if rs
            .iter()
            .any(|(_, r)| matches!(r, Err(e) if *e == Errno::EAGAIN))
        {
            self.unlock_inode(domain, g, owner, range, &got).await;
            return None;
        }
        Some(got)
    }

    /// Gives back an inode lock taken by [`Replicate::lock_inode`].
    pub(crate) async fn unlock_inode(
        &self,
        domain: &str,
        g: Gfid,
        owner: u64,
        range: (u64, u64),
        on: &[usize],
    ) {
        let ctx = lock_ctx(owner);
        let lk = flock(LockType::Unlock, owner, range.0, range.1);
        let loc = Loc::inode(g);
        self.each(on, |_, c| {
            let (ctx, loc) = (&ctx, &loc);
            async move {
                c.inodelk(ctx, domain, loc, LkCmd::Set, &lk, Xdata::new())
                    .await
            }
        })
        .await;
    }

    /// Takes entry locks on every name (or whole directories, `None`) on the candidates;
    /// returns the replicas that hold all of them.
    pub(crate) async fn lock_entries(
        &self,
        owner: u64,
        names: &[(Gfid, Option<OsString>)],
        cands: &[usize],
    ) -> Vec<usize> {
        let mut sorted = cands.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let cands = &sorted[..];
        let ctx = lock_ctx(owner);
        let try_all = |i: usize, cmd: EntrylkCmd| {
            let c = self.children[i].clone();
            let ctx = ctx.clone();
            async move {
                let mut taken = 0;
                for (p, n) in names {
                    match c
                        .entrylk(
                            &ctx,
                            ENTRY_DOMAIN,
                            &Loc::inode(*p),
                            n.as_ref(),
                            cmd,
                            EntrylkType::Write,
                            Xdata::new(),
                        )
                        .await
                    {
                        Ok(_) => taken += 1,
                        Err(e) => return (taken, Err(e)),
                    }
                }
                (taken, Ok(()))
            }
        };
        let rs = futures::future::join_all(
            cands
                .iter()
                .map(|&i| try_all(i, EntrylkCmd::LockNonBlocking)),
        )
        .await;
        let mut got = Vec::new();
        let mut conflict = false;
        for (&i, (taken, r)) in cands.iter().zip(&rs) {
            match r {
                Ok(()) => got.push(i),
                Err(e) => {
                    conflict |= *e == Errno::EAGAIN;
                    if *taken > 0 {
                        self.unlock_entries(owner, &names[..*taken], &[i]).await;
                    }
                }
            }
        }
        if !conflict {
            return got;
        }
        self.unlock_entries(owner, names, &got).await;
        let mut held = Vec::new();
        for &i in cands {
            let (taken, r) = try_all(i, EntrylkCmd::Lock).await;
            match r {
                Ok(()) => held.push(i),
                Err(_) if taken > 0 => self.unlock_entries(owner, &names[..taken], &[i]).await,
                Err(_) => {}
            }
        }
        held
    }

    /// Gives back entry locks taken by [`Replicate::lock_entries`].
    pub(crate) async fn unlock_entries(
        &self,
        owner: u64,
        names: &[(Gfid, Option<OsString>)],
        on: &[usize],
    ) {
        let ctx = lock_ctx(owner);
        self.each(on, |_, c| {
            let ctx = &ctx;
            async move {
                for (p, n) in names {
                    let _ = c
                        .entrylk(
                            ctx,
                            ENTRY_DOMAIN,
                            &Loc::inode(*p),
                            n.as_ref(),
                            EntrylkCmd::Unlock,
                            EntrylkType::Write,
                            Xdata::new(),
                        )
                        .await;
                }
                Ok::<(), Errno>(())
            }
        })
        .await;
    }

    /// The xattrop operand that adds `delta(j)` to every replica `j`'s counters, or `None`
    /// when it moves nothing. Every replica's counters are named, moved or not: the
    /// bricks' index follows the values an xattrop answers.
    pub(crate) fn changelog_operand(&self, delta: impl Fn(usize) -> [i64; 3]) -> Option<XattrMap> {
        let mut attrs = XattrMap::new();
        let mut moves = false;
        for j in 0..self.n() {
            let d = delta(j);
            moves |= d != [0; 3];
            attrs.insert(key(&self.names[j]), encode(d));
        }
        moves.then_some(attrs)
    }

    /// Internal xdata for an xattrop on copy `i` adding `delta(j)` to each replica `j`'s
    /// counters, naming the order a brick applies them in ([`XATTROP_ORDER_KEY`],
    /// [`torn_safe_order`]). A pre-op torn the other way left a copy accusing every other
    /// one of a change that never happened, and the file in split-brain.
    pub(crate) fn changelog_xd(&self, i: usize, delta: impl Fn(usize) -> [i64; 3]) -> Xdata {
        let order = torn_safe_order(&self.names, i, delta);
        let mut xd = ixd();
        xd.set(XATTROP_ORDER_KEY, order.join("\0").into_bytes());
        xd
    }

    /// Adds `delta(j)` to every replica `j`'s changelog of every target on each replica
    /// in `on`; returns the replicas where it succeeded for every target.
    pub(crate) async fn changelog_add(
        &self,
        targets: &[Gfid],
        on: &[usize],
        delta: impl Fn(usize) -> [i64; 3],
    ) -> Vec<usize> {
        self.changelog_add_read(targets, on, delta)
            .await
            .into_iter()
            .map(|(i, _)| i)
            .collect()
    }

    /// [`Self::changelog_add`], answering with each replica where it succeeded the
    /// counters it holds afterwards (of the last target).
    async fn changelog_add_read(
        &self,
        targets: &[Gfid],
        on: &[usize],
        delta: impl Fn(usize) -> [i64; 3],
    ) -> Vec<(usize, XattrMap)> {
        let Some(attrs) = self.changelog_operand(&delta) else {
            return on.iter().map(|&i| (i, XattrMap::new())).collect();
        };
        let rs = self
            .each(on, |i, c| {
                let attrs = &attrs;
                let xd = self.changelog_xd(i, &delta);
                async move {
                    let mut last = XattrMap::new();
                    for &g in targets {
                        last = c
                            .xattrop(
                                &Ctx::internal(),
                                &Loc::inode(g),
                                XattropOp::AddArray32,
                                attrs,
                                xd.clone(),
                            )
                            .await?
                            .0;
                    }
                    Ok(last)
                }
            })
            .await;
        for (i, r) in &rs {
            if let Err(e) = r {
                if *e != Errno::ENOTCONN {
                    tracing::warn!(
                        "{}: changelog update of {:?} on {} failed: {e:?}",
                        self.name,
                        targets,
                        self.names[*i]
                    );
                }
            }
        }
        rs.into_iter()
            .filter_map(|(i, r)| r.ok().map(|m| (i, m)))
            .collect()
    }

    fn one(kind: Kind, v: i64) -> [i64; 3] {
        let mut d = [0; 3];
        d[kind as usize] = v;
        d
    }

    /// Locks and pre-ops a new transaction on `targets` (already locked on `locked`).
    async fn preop(
        &self,
        kind: Kind,
        targets: Vec<Gfid>,
        owner: u64,
        dir_lock: bool,
        locked: Vec<usize>,
    ) -> Result<Arc<Batch>, Errno> {
        let delta = |j: usize| Self::one(kind, if locked.contains(&j) { 1 } else { 2 });
        let answers = self.changelog_add_read(&targets, &locked, delta).await;
        let ok: Vec<usize> = answers.iter().map(|a| a.0).collect();
        let batch = Arc::new(Batch {
            kind,
            started: std::time::Instant::now(),
            gen: self.gen.load(Ordering::Acquire),
            closed: std::sync::atomic::AtomicBool::new(false),
            targets,
            owner,
            dir_lock,
            locked: locked.clone(),
            members: Mutex::new(ok.clone()),
            accused: tokio::sync::Mutex::new(Vec::new()),
        });
        if !self.has_quorum(&ok) {
            tracing::warn!(
                "{}: the pre-op of a {} change reached {} of {} replicas: no quorum",
                self.name,
                kind.word(),
                ok.len(),
                self.n()
            );
            self.abort(&batch, &ok, delta).await;
            return Err(if ok.is_empty() {
                Errno::ENOTCONN
            } else {
                Errno::EROFS
            });
        }
        if kind == Kind::Data && self.arbiter.is_some() && !self.data_source_among(&answers) {
            tracing::warn!(
                "{}: no good data copy of {:?} is up (only the arbiter is good): ENOTCONN",
                self.name,
                batch.targets
            );
            self.abort(&batch, &ok, delta).await;
            return Err(Errno::ENOTCONN);
        }
        // A replica this change leaves out (down when it began) but back already is not
        // good for its targets: a read must not go there on what a lookup learnt before
        // this pre-op's counters were written. (One still down is read from by nobody, and
        // its return makes every inode learnt again; not marking it keeps reads' lookups
        // from being discarded by every change while a replica is down.)
        if locked.len() < self.n() {
            let up = self.up();
            for j in (0..self.n()).filter(|j| !locked.contains(j) && up.contains(j)) {
                for &g in &batch.targets {
                    self.mark_bad(g, j);
                }
            }
        }
        let lost: Vec<usize> = locked.into_iter().filter(|i| !ok.contains(i)).collect();
        if !lost.is_empty() {
            self.fail(&batch, &lost).await;
        }
        Ok(batch)
    }

    /// Whether, by the counters the pre-op answered (`answers`: replica, its counters),
    /// some data copy among those replicas is good: not accused by another of them. The
    /// pre-op moved every one of their counters alike, so it is what they said before.
    fn data_source_among(&self, answers: &[(usize, XattrMap)]) -> bool {
        let mut m = Matrix::new(self.n());
        for (i, x) in answers {
            m.set_row(*i, &self.names, |k| x.get(k).map(Vec::as_slice));
        }
        answers.iter().any(|&(j, _)| {
            self.holds_data(j) && !answers.iter().any(|&(i, _)| m.accuses(i, j, Kind::Data))
        })
    }

    /// Gives up a transaction before its change: undoes exactly what its pre-op added on
    /// `ok` (where it succeeded) and unlocks, so nobody is accused of a change that never
    /// happened.
    async fn abort(&self, batch: &Batch, ok: &[usize], delta: impl Fn(usize) -> [i64; 3]) {
        self.changelog_add(&batch.targets, ok, |j| delta(j).map(|v| -v))
            .await;
        self.unlock_batch(batch).await;
    }

    /// Gives back the lock a shared transaction holds (an entry transaction of its own
    /// holds none here: its change gives back its names).
    async fn unlock_batch(&self, batch: &Batch) {
        match batch.kind {
            Kind::Entry if batch.dir_lock => {
                self.unlock_entries(batch.owner, &[(batch.targets[0], None)], &batch.locked)
                    .await
            }
            Kind::Entry => {}
            k => {
                self.unlock_inode(
                    domain(k),
                    batch.targets[0],
                    batch.owner,
                    (0, 0),
                    &batch.locked,
                )
                .await
            }
        }
    }

    /// Accuses replicas a change of `batch` failed on (once per transaction), before the
    /// change is acknowledged, and leaves them out of the rest of it.
    async fn fail(&self, batch: &Batch, bad: &[usize]) {
        let mut accused = batch.accused.lock().await;
        if batch.kind == Kind::Data && self.arbiter.is_some() {
            let left_with_data = batch
                .members()
                .iter()
                .any(|&i| !bad.contains(&i) && self.holds_data(i));
            if !left_with_data {
                // No data copy would have the change: it fails (see `settle`), and
                // accusing the data copies would leave the arbiter the only source.
                return;
            }
        }
        batch.members.lock().retain(|i| !bad.contains(i));
        let new: Vec<usize> = bad
            .iter()
            .copied()
            .filter(|i| !accused.contains(i))
            .collect();
        if new.is_empty() {
            return;
        }
        let good = batch.members();
        self.changelog_add(&batch.targets, &good, |j| {
            Self::one(batch.kind, if new.contains(&j) { 1 } else { 0 })
        })
        .await;
        for &j in &new {
            tracing::debug!(
                "{}: a {} change failed on {}; it is pending there",
                self.name,
                batch.kind.word(),
                self.names[j]
            );
            for &g in &batch.targets {
                self.mark_bad(g, j);
            }
        }
        accused.extend(new);
    }

    /// Post-op and unlock of a transaction no change uses any more; then a heal of its
    /// targets when a replica it left pending is up (it came back while the change was
    /// in flight, after the sweep its return started had listed the index, or the change
    /// failed there).
    async fn finish(&self, batch: &Batch) {
        let members = batch.members();
        self.changelog_add(&batch.targets, &members, |j| {
            Self::one(batch.kind, if members.contains(&j) { -1 } else { 0 })
        })
        .await;
        // (All replicas took part, the common case: nothing to look up.)
        if members.len() < self.n() && self.up().iter().any(|j| !members.contains(j)) {
            for &g in &batch.targets {
                self.background_heal(g);
            }
        }
        self.unlock_batch(batch).await;
    }

    /// Runs the change `op` of `kind` (data or metadata) on inode `g` on every replica, in
    /// a transaction shared with the changes in flight on it.
    pub(crate) async fn txn<T, F, Fut>(
        &self,
        g: Gfid,
        kind: Kind,
        fd: Option<&FdRef>,
        op: F,
    ) -> Fop<T>
    where
        F: Fn(usize, XlatorRef) -> Fut,
        Fut: Future<Output = Fop<T>>,
    {
        let ino = self.inode(g);
        let batch = self.join(g, kind, &ino).await?;
        let mut members = batch.members();
        if let Some(fd) = fd {
            let open = self.ensure_open(fd, &members).await;
            let lost: Vec<usize> = members
                .iter()
                .copied()
                .filter(|i| !open.contains(i))
                .collect();
            if !lost.is_empty() {
                self.fail(&batch, &lost).await;
            }
            members = open;
        }
        let rs = self.each(&members, op).await;
        let out = self.settle(&batch, rs).await;
        self.leave(kind, ino, batch);
        out
    }

    fn slot(ino: &Inode, kind: Kind) -> &Slot {
        match kind {
            Kind::Data => &ino.data,
            Kind::Metadata => &ino.meta,
            Kind::Entry => &ino.entry,
        }
    }

    /// Joins the transaction in flight on `g`, or starts one.
    async fn join(&self, g: Gfid, kind: Kind, ino: &Arc<Inode>) -> Result<Arc<Batch>, Errno> {
        let slot = Self::slot(ino, kind);
        let mut cur = loop {
            let cur = slot.current.lock().await;
            let Some(b) = cur.as_ref() else { break cur };
            let fresh = b.started.elapsed() < JOIN_FOR
                && b.gen == self.gen.load(Ordering::Acquire)
                && !b.closed.load(Ordering::Acquire);
            if fresh {
                slot.active.fetch_add(1, Ordering::AcqRel);
                return Ok(b.clone());
            }
            // Wait for it to end (it ends as soon as its changes in flight are done).
            b.closed.store(true, Ordering::Release);
            let ended = slot.ended.notified();
            let idle = slot.active.load(Ordering::Acquire) == 0;
            drop(cur);
            if idle {
                if let Some(me) = self.me.upgrade() {
                    let ino = ino.clone();
                    tokio::spawn(async move { me.end_if_idle(kind, &ino).await });
                }
            }
            ended.await;
        };
        let up = self.up();
        if !self.has_quorum(&up) {
            return Err(Errno::EROFS);
        }
        let owner = self.owner();
        let dir_lock = kind == Kind::Entry;
        let whole_dir = [(g, None)];
        let locked = if dir_lock {
            self.lock_entries(owner, &whole_dir, &up).await
        } else {
            self.lock_inode(domain(kind), g, owner, (0, 0), &up).await
        };
        if !self.has_quorum(&locked) {
            if dir_lock {
                self.unlock_entries(owner, &whole_dir, &locked).await;
            } else {
                self.unlock_inode(domain(kind), g, owner, (0, 0), &locked)
                    .await;
            }
            return Err(if locked.is_empty() {
                Errno::ENOTCONN
            } else {
                Errno::EROFS
            });
        }
        let b = self.preop(kind, vec![g], owner, dir_lock, locked).await?;
        *cur = Some(b.clone());
        slot.active.fetch_add(1, Ordering::AcqRel);
        Ok(b)
    }

    /// Leaves a shared transaction; the last one out ends it (now, or after
    /// `post-op-delay` if nothing joined meanwhile).
    fn leave(&self, kind: Kind, ino: Arc<Inode>, batch: Arc<Batch>) {
        let slot = Self::slot(&ino, kind);
        if slot.active.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        self.end_later(kind, ino, batch.closed.load(Ordering::Acquire));
    }

    /// Ends the shared transaction of `kind` on `ino` once no change uses it: after
    /// `post-op-delay` (eager locking; at once when `closed` or for metadata).
    fn end_later(&self, kind: Kind, ino: Arc<Inode>, closed: bool) {
        let Some(me) = self.me.upgrade() else { return };
        let cfg = self.cfg();
        // A directory's entry transaction waits too: the next change of a burst from
        // under its lease finds it still held.
        let delay = if cfg.eager_lock && kind != Kind::Metadata && !closed {
            cfg.post_op_delay
        } else {
            std::time::Duration::ZERO
        };
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            me.end_if_idle(kind, &ino).await;
        });
    }

    /// Ends now the shared transactions on `g` that no change uses (their post-op,
    /// delayed for a sequential writer, changes every copy's ctime): attributes read
    /// after this stay what a stat answers.
    pub(crate) async fn end_idle(&self, g: Gfid) {
        let ino = self.inode(g);
        for kind in [Kind::Data, Kind::Metadata] {
            self.end_if_idle(kind, &ino).await;
        }
    }

    /// Ends the shared transaction of `kind` on `ino` if no change uses it.
    pub(super) async fn end_if_idle(&self, kind: Kind, ino: &Arc<Inode>) {
        let slot = Self::slot(ino, kind);
        let mut cur = slot.current.lock().await;
        if slot.active.load(Ordering::Acquire) != 0 {
            return;
        }
        let Some(batch) = cur.take() else { return };
        // Post-op and unlock before anyone starts the next one.
        self.finish(&batch).await;
        drop(cur);
        slot.ended.notify_waiters();
    }

    /// Sorts the answers of a change: accuses the replicas it failed on when it
    /// succeeded elsewhere; answers the first success, or the error when it failed on
    /// every replica (then nobody is behind).
    async fn settle<T>(&self, batch: &Batch, rs: Vec<(usize, Fop<T>)>) -> Fop<T> {
        let ok: Vec<usize> = rs
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        let bad: Vec<usize> = rs
            .iter()
            .filter(|(_, r)| r.is_err())
            .map(|(i, _)| *i)
            .collect();
        if ok.is_empty() {
            return Self::first_ok(rs);
        }
        if batch.kind == Kind::Data && !ok.iter().any(|&i| self.holds_data(i)) {
            // It reached only the arbiter, which stores no data: it failed. Nobody is
            // accused (no data copy has it).
            let data: Vec<(usize, Fop<T>)> = rs
                .into_iter()
                .filter(|(i, _)| self.holds_data(*i))
                .collect();
            return match Self::first_ok(data) {
                Ok(_) => Err(Errno::EIO),
                e => e,
            };
        }
        if !bad.is_empty() {
            self.fail(batch, &bad).await;
        }
        if !self.has_quorum(&ok) {
            let errs: Vec<String> = rs
                .iter()
                .filter_map(|(i, r)| {
                    r.as_ref()
                        .err()
                        .map(|e| format!("{}: {e:?}", self.names[*i]))
                })
                .collect();
            tracing::warn!(
                "{}: a {} change succeeded on too few replicas ({}); failed on {}: EROFS",
                self.name,
                batch.kind.word(),
                ok.len(),
                errs.join(", ")
            );
            return Err(Errno::EROFS);
        }
        Self::first_ok(rs)
    }

    /// Starts a new file's data transaction that its create does on each brick (see
    /// [`CreateData`]).
    pub(crate) fn create_data_txn(&self) -> CreateData {
        let (up, gen) = self.up_at();
        let delta = |j: usize| Self::one(Kind::Data, if up.contains(&j) { 1 } else { 2 });
        CreateData {
            owner: self.owner(),
            gen,
            operand: self.changelog_operand(delta).unwrap_or_default(),
            up,
        }
    }

    /// After a create that asked for its data transaction ([`CreateData::ask`]):
    /// `prepared` holds, for each replica that answered the create, the gfid it made and
    /// whether it took the lock and did the pre-op. When every one did both on the gfid
    /// asked for (`want`), and they are a quorum, the transaction is the new file's: its
    /// writes join it, and it ends after `post-op-delay` unless one does (as [`leave`]).
    /// Otherwise what was done is undone (pre-op, then lock), and the first write starts
    /// a transaction of its own.
    ///
    /// [`leave`]: Replicate::leave
    pub(crate) async fn adopt_created(
        &self,
        want: Option<Gfid>,
        d: CreateData,
        prepared: Vec<(usize, Gfid, bool, bool)>,
    ) {
        let on: Vec<usize> = prepared.iter().map(|p| p.0).collect();
        let whole = !prepared.is_empty()
            && prepared.iter().all(|p| Some(p.1) == want && p.2 && p.3)
            && self.has_quorum(&on)
            && d.gen == self.gen.load(Ordering::Acquire);
        if let (true, Some(g)) = (whole, want) {
            let ino = self.inode(g);
            let slot = Self::slot(&ino, Kind::Data);
            let mut cur = slot.current.lock().await;
            if cur.is_none() {
                *cur = Some(Arc::new(Batch {
                    kind: Kind::Data,
                    started: std::time::Instant::now(),
                    gen: d.gen,
                    closed: std::sync::atomic::AtomicBool::new(false),
                    targets: vec![g],
                    owner: d.owner,
                    dir_lock: false,
                    locked: on.clone(),
                    members: Mutex::new(on),
                    accused: tokio::sync::Mutex::new(Vec::new()),
                }));
                drop(cur);
                self.end_later(Kind::Data, ino, false);
                return;
            }
        }
        let undo = |j: usize| d.delta(j).map(|v| -v);
        for (i, g, locked, preop) in prepared {
            if preop {
                self.changelog_add(&[g], &[i], undo).await;
            }
            if locked {
                self.unlock_inode(DATA_DOMAIN, g, d.owner, (0, 0), &[i])
                    .await;
            }
        }
    }

    /// Releases `fd` on `open` (each answer with its replica), ending the idle shared data
    /// transaction of its inode on the way: each release also asks its brick for the
    /// transaction's post-op (features/index, [`WITH_XATTROP_PREFIX`]) and then its unlock
    /// (features/locks, [`WITH_INODELK_KEY`]), both before the fd closes, so the three
    /// cost one request. What a brick did not confirm is done by separate requests
    /// afterwards, post-op before unlock. Without an idle transaction, a plain release.
    pub(crate) async fn release_ending_data(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        open: &[usize],
        xd: &Xdata,
    ) -> Vec<(usize, Fop<()>)> {
        let g = fd.gfid;
        let ino = self.inode(g);
        let slot = Self::slot(&ino, Kind::Data);
        let mut cur = slot.current.lock().await;
        let batch = if slot.active.load(Ordering::Acquire) == 0 {
            cur.take()
        } else {
            None
        };
        let Some(batch) = batch else {
            drop(cur);
            return self
                .each(open, |_, c| {
                    let xd = xd.clone();
                    async move { c.release(ctx, fd, xd).await }
                })
                .await;
        };
        let members = batch.members();
        let delta = |j: usize| Self::one(Kind::Data, if members.contains(&j) { -1 } else { 0 });
        let operand = self.changelog_operand(delta);
        let rs = self
            .each(open, |i, c| {
                let mut xd = xd.clone();
                if let (Some(op), true) = (&operand, members.contains(&i)) {
                    ask_xattrop(&mut xd, op, &self.names, i, delta);
                }
                if batch.locked.contains(&i) {
                    xd.set(
                        WITH_INODELK_KEY,
                        with_inodelk_value(batch.owner, DATA_DOMAIN),
                    );
                }
                async move { c.release(ctx, fd, xd).await }
            })
            .await;
        let confirmed = |key: &str| -> Vec<usize> {
            rs.iter()
                .filter(|(_, r)| matches!(r, Ok((_, x)) if x.has(key)))
                .map(|(i, _)| *i)
                .collect()
        };
        let (posted, unlocked) = (
            confirmed(WITH_XATTROP_DONE_KEY),
            confirmed(WITH_INODELK_KEY),
        );
        let post_rest: Vec<usize> = members
            .iter()
            .copied()
            .filter(|i| operand.is_some() && !posted.contains(i))
            .collect();
        if !post_rest.is_empty() {
            self.changelog_add(&batch.targets, &post_rest, delta).await;
        }
        let unlock_rest: Vec<usize> = batch
            .locked
            .iter()
            .copied()
            .filter(|i| !unlocked.contains(i))
            .collect();
        if !unlock_rest.is_empty() {
            self.unlock_inode(DATA_DOMAIN, g, batch.owner, (0, 0), &unlock_rest)
                .await;
        }
        // As `finish`: a replica left pending that is up gets its heal.
        if members.len() < self.n() && self.up().iter().any(|j| !members.contains(j)) {
            self.background_heal(g);
        }
        drop(cur);
        slot.ended.notify_waiters();
        rs.into_iter()
            .map(|(i, r)| {
                let r = r.map(|(v, mut x)| {
                    x.0.remove(WITH_XATTROP_DONE_KEY);
                    x.0.remove(WITH_INODELK_KEY);
                    (v, x)
                });
                (i, r)
            })
            .collect()
    }

    /// Runs the entry change `op` (names in `locs`, which must name their parent and
    /// name) on every replica: in its own transaction, or, when `leased` (sent from
    /// under the lease of its one directory) and all its names are in one directory, in
    /// the transaction that directory's changes share.
    pub(crate) async fn entry_txn<T, F, Fut>(&self, locs: &[&Loc], leased: bool, op: F) -> Fop<T>
    where
        F: Fn(usize, XlatorRef) -> Fut,
        Fut: Future<Output = Fop<T>>,
    {
        let parent = locs.first().and_then(|l| l.parent);
        if let Some(p) = parent.filter(|_| leased) {
            if locs.iter().all(|l| l.parent == Some(p) && l.name.is_some()) {
                let ino = self.inode(p);
                let batch = self.join(p, Kind::Entry, &ino).await?;
                let rs = self.each(&batch.members(), op).await;
                let out = self.settle(&batch, rs).await;
                self.leave(Kind::Entry, ino, batch);
                return out;
            }
        }
        let mut names = Vec::new();
        for l in locs {
            match (l.parent, &l.name) {
                (Some(p), Some(n)) => names.push((p, Some(n.clone()))),
                _ => return Err(Errno::EINVAL),
            }
        }
        names.sort();
        names.dedup();
        let up = self.up();
        if !self.has_quorum(&up) {
            return Err(Errno::EROFS);
        }
        let owner = self.owner();
        let locked = self.lock_entries(owner, &names, &up).await;
        if !self.has_quorum(&locked) {
            self.unlock_entries(owner, &names, &locked).await;
            return Err(if locked.is_empty() {
                Errno::ENOTCONN
            } else {
                Errno::EROFS
            });
        }
        let mut parents: Vec<Gfid> = names.iter().map(|(p, _)| *p).collect();
        parents.dedup();
        let batch = match self.preop(Kind::Entry, parents, owner, false, locked).await {
            Ok(b) => b,
            Err(e) => {
                self.unlock_entries(owner, &names, &up).await;
                return Err(e);
            }
        };
        let members = batch.members();
        let rs = self.each(&members, op).await;
        let out = self.settle(&batch, rs).await;
        if let Some(me) = self.me.upgrade() {
            self.finishing.send_modify(|n| *n += 1);
            tokio::spawn(async move {
                me.finish(&batch).await;
                me.unlock_entries(batch.owner, &names, &batch.locked).await;
                me.finishing.send_modify(|n| *n -= 1);
            });
        }
        out
    }
}

/// A new file's data transaction, begun by its create on each brick: the create asks
/// `features/locks` for the data lock ([`WITH_INODELK_KEY`]) and `features/index` for
/// the pre-op ([`WITH_XATTROP_PREFIX`]), so the file's first writes need neither. Used
/// for creates from under a directory lease (a private new file: its writes follow at
/// once).
pub(crate) struct CreateData {
    owner: u64,
    /// The event generation and the replicas up when it began.
    gen: u64,
    up: Vec<usize>,
    /// The pre-op: every replica's data counter up by one, by two for one down.
    operand: XattrMap,
}

impl CreateData {
    /// The pre-op's change of replica `j`'s counters.
    fn delta(&self, j: usize) -> [i64; 3] {
        Replicate::one(Kind::Data, if self.up.contains(&j) { 1 } else { 2 })
    }

    /// Adds the asks to the create sent to replica `i` of `names`.
    pub(crate) fn ask(&self, names: &[String], i: usize, xd: &mut Xdata) {
        xd.set(
            WITH_INODELK_KEY,
            with_inodelk_value(self.owner, DATA_DOMAIN),
        );
        ask_xattrop(xd, &self.operand, names, i, |j| self.delta(j));
    }
}

/// Asks, in the xdata of a create or release sent to replica `i` of `names`, for the
/// changelog xattrop `operand` (which adds `delta(j)` to each replica `j`'s counters) on
/// that brick ([`WITH_XATTROP_PREFIX`], in the torn-safe order).
fn ask_xattrop(
    xd: &mut Xdata,
    operand: &XattrMap,
    names: &[String],
    i: usize,
    delta: impl Fn(usize) -> [i64; 3],
) {
    for (k, v) in operand {
        xd.set(format!("{WITH_XATTROP_PREFIX}{k}"), v.clone());
    }
    let order = torn_safe_order(names, i, delta);
    xd.set(WITH_XATTROP_ORDER_KEY, order.join("\0").into_bytes());
}
