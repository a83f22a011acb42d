//! Self-heal: bringing the copies of one inode back in step, from the changelogs.
//!
//! Each kind heals under its own lock, taken on every replica that is up: metadata
//! under the metadata inode lock, entries under the entry lock of the whole directory,
//! data under the data inode lock. The changelogs are read under that lock (so no change
//! is in flight), a source is chosen, the sinks are made equal to it, and exactly the
//! counters that were read are subtracted: changes counted meanwhile stay pending.
//!
//! Data of a file bigger than [`CHUNK`] heals chunk by chunk, each under a lock of just
//! that range, comparing checksums (`rchecksum`) and copying only the chunks that differ;
//! writers wait for at most one chunk. Writes in between reach the sinks too (they are up),
//! so a chunk already healed stays healed. The tail and the size are settled at the end
//! under the whole-file lock.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};

use weft_core::*;

use super::changelog::{Kind, Matrix, Verdict};
use super::txn::{domain, DATA_DOMAIN, SELF_HEAL_DOMAIN};
use super::{ixd, lookup_xd, Favorite, Replicate};
use crate::index::{INDEX_FORGET_XATTR, INDEX_PENDING_XATTR};

/// Bytes compared and copied at once (the largest range `rchecksum` answers).
pub(crate) const CHUNK: u64 = 128 * 1024;

/// What a heal found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HealOutcome {
    /// Nothing was pending among the replicas that are up.
    Clean,
    /// Copies were made equal.
    Healed,
    /// No copy is known good and no policy chose one.
    SplitBrain,
    /// No replica has the inode any more.
    Gone,
    /// Fewer than two replicas are up: nothing can be healed now.
    Partial,
}

/// How a command resolves a split-brain (`volume heal VOL split-brain ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The biggest copy wins (for metadata: the latest ctime).
    BiggerFile,
    /// The copy modified last wins.
    LatestMtime,
    /// The copy on this replica (child index) wins.
    Brick(usize),
}

/// Heal counters for `dump`.
#[derive(Default)]
pub(crate) struct Stats {
    healed: AtomicU64,
    split_brain: AtomicU64,
    failed: AtomicU64,
}

impl Stats {
    pub(crate) fn dump(&self) -> String {
        format!(
            "heals done {}\nheals in split-brain {}\nheals failed {}\n",
            self.healed.load(Ordering::Relaxed),
            self.split_brain.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }
}

type Answers = Vec<(usize, Iatt, Xdata)>;

impl Replicate {
    /// Heals every kind of change pending on inode `g`.
    pub async fn heal(&self, g: Gfid) -> Result<HealOutcome, Errno> {
        self.heal_with(g, None).await
    }

    /// Heals inode `g`, resolving a split-brain by `choice` when given (else by
    /// `favorite-child-policy`).
    pub async fn heal_with(&self, g: Gfid, choice: Option<Choice>) -> Result<HealOutcome, Errno> {
        let answers = match self.refresh_quiet(g).await {
            Ok(a) => a,
            Err(e) if e == Errno::ENOENT || e == Errno::ESTALE => {
                self.forget_index(g).await;
                return Ok(HealOutcome::Gone);
            }
            Err(e) => return Err(e),
        };
        let is_dir = answers[0].1.is_dir();
        let regular = answers[0].1.mode & libc::S_IFMT == libc::S_IFREG;
        if regular && matches!(choice, Some(Choice::Brick(b)) if !self.holds_data(b)) {
            tracing::warn!(
                "{}: {g}: the arbiter holds no data and cannot be the source of a file",
                self.name
            );
            return Err(Errno::EINVAL);
        }
        let stray_data = is_dir && {
            let mut m = Matrix::new(self.n());
            for (i, _, xd) in &answers {
                m.set_row(*i, &self.names, |k| xd.get(k));
            }
            m.any_pending(Kind::Data)
        };
        let kinds: &[Kind] = if stray_data {
            // A directory's data counters mean nothing; settling them lets its index
            // entry go (older versions marked new directories with one).
            &[Kind::Entry, Kind::Metadata, Kind::Data]
        } else if is_dir {
            &[Kind::Entry, Kind::Metadata]
        } else {
            &[Kind::Metadata, Kind::Data]
        };
        let mut out = HealOutcome::Clean;
        for &k in kinds {
            let r = self.heal_kind(g, k, choice).await;
            match r {
                Ok(HealOutcome::Clean) => {}
                Ok(o) => {
                    if out != HealOutcome::SplitBrain {
                        out = o;
                    }
                }
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        match out {
            HealOutcome::Healed => {
                self.stats.healed.fetch_add(1, Ordering::Relaxed);
            }
            HealOutcome::SplitBrain => {
                self.stats.split_brain.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        // What this client knew of the copies is stale now.
        *self.inode(g).known.lock() = None;
        if out == HealOutcome::Clean && self.up().len() < self.n() {
            // Clean among the replicas up; what is pending for the others waits for them.
            let pending = self
                .refresh_quiet(g)
                .await
                .map(|a| {
                    let mut m = Matrix::new(self.n());
                    for (i, _, xd) in &a {
                        m.set_row(*i, &self.names, |k| xd.get(k));
                    }
                    m.any_pending_at_all()
                })
                .unwrap_or(false);
            if pending {
                return Ok(HealOutcome::Partial);
            }
        }
        // Whatever the outcome: each index keeps the entry while its inode is there with
        // a counter up, and an inode removed during the heal (a name's last unlink, a
        // distribute link file dropped) leaves entries only a heal forgets.
        self.forget_index(g).await;
        Ok(out)
    }

    /// A nameless lookup with changelogs on every replica up, without starting heals.
    async fn refresh_quiet(&self, g: Gfid) -> Result<Answers, Errno> {
        self.lookup_on(g, &self.up()).await
    }

    async fn lookup_on(&self, g: Gfid, on: &[usize]) -> Result<Answers, Errno> {
        let rs = self
            .each(on, |_, c| async move {
                c.lookup(&Ctx::heal(), &Loc::inode(g), lookup_xd(Xdata::new()))
                    .await
            })
            .await;
        let mut answers = Vec::new();
        let mut err = Errno::ENOTCONN;
        for (i, r) in rs {
            match r {
                Ok((ia, xd)) => answers.push((i, ia, xd)),
                Err(e) if e != Errno::ENOTCONN => err = e,
                Err(_) => {}
            }
        }
        if answers.is_empty() {
            Err(err)
        } else {
            Ok(answers)
        }
    }

    /// Asks every replica's index to drop `g` if nothing is pending on it there.
    async fn forget_index(&self, g: Gfid) {
        let mut attrs = XattrMap::new();
        attrs.insert(INDEX_FORGET_XATTR.to_string(), g.to_string().into_bytes());
        let up = self.up();
        self.each(&up, |_, c| {
            let attrs = &attrs;
            async move {
                c.setxattr(&Ctx::heal(), &Loc::root(), attrs, 0, ixd())
                    .await
            }
        })
        .await;
    }

    /// Heals changes of `kind` on `g`, under that kind's lock.
    pub(crate) async fn heal_kind(
        &self,
        g: Gfid,
        kind: Kind,
        choice: Option<Choice>,
    ) -> Result<HealOutcome, Errno> {
        let up = self.up();
        if up.len() < 2 {
            return Ok(HealOutcome::Partial);
        }
        let owner = self.owner();
        // A data heal of a big file gives its data lock back between chunks, so writers go
        // on; heals of one inode (from any client or node) take turns in their own domain,
        // or two could read the same counters and both subtract them.
        let turn = if kind == Kind::Data {
            // Another heal at work on it: leave it to that one (a resolution by command
            // waits its turn instead).
            let got = if choice.is_some() {
                self.lock_inode(SELF_HEAL_DOMAIN, g, owner, (0, 0), &up)
                    .await
            } else {
                self.try_lock_inode(SELF_HEAL_DOMAIN, g, owner, &up).await
            };
            if got.len() < 2 {
                self.unlock_inode(SELF_HEAL_DOMAIN, g, owner, (0, 0), &got)
                    .await;
                return Ok(HealOutcome::Partial);
            }
            got
        } else {
            Vec::new()
        };
        let names = [(g, None::<OsString>)];
        let locked = match kind {
            Kind::Entry => self.lock_entries(owner, &names, &up).await,
            k => self.lock_inode(domain(k), g, owner, (0, 0), &up).await,
        };
        let r = if locked.len() < 2 {
            Ok(HealOutcome::Partial)
        } else {
            self.heal_locked(g, kind, owner, &locked, choice).await
        };
        match kind {
            Kind::Entry => self.unlock_entries(owner, &names, &locked).await,
            k => {
                self.unlock_inode(domain(k), g, owner, (0, 0), &locked)
                    .await
            }
        }
        self.unlock_inode(SELF_HEAL_DOMAIN, g, owner, (0, 0), &turn)
            .await;
        r
    }

    async fn heal_locked(
        &self,
        g: Gfid,
        kind: Kind,
        owner: u64,
        locked: &[usize],
        choice: Option<Choice>,
    ) -> Result<HealOutcome, Errno> {
        let answers = match self.lookup_on(g, locked).await {
            Ok(a) => a,
            Err(e) if e == Errno::ENOENT || e == Errno::ESTALE => return Ok(HealOutcome::Gone),
            Err(e) => return Err(e),
        };
        if answers.len() < 2 {
            return Ok(HealOutcome::Partial);
        }
        let regular = answers[0].1.mode & libc::S_IFMT == libc::S_IFREG;
        let mut m = Matrix::new(self.n());
        for (i, _, xd) in &answers {
            m.set_row(*i, &self.names, |k| xd.get(k));
        }
        let mut verdict = m.verdict(kind);
        // With an arbiter, file data comes only from a data copy.
        let data_only = kind == Kind::Data && regular && self.arbiter.is_some();
        if data_only {
            if let Verdict::Heal { sources, .. } = &verdict {
                if !sources.iter().any(|&i| self.holds_data(i)) {
                    let data_answered = answers.iter().filter(|a| self.holds_data(a.0)).count();
                    if data_answered < self.n() - 1 {
                        // The good data copy is down: wait for it.
                        return Ok(HealOutcome::Partial);
                    }
                    // Both data copies are behind the arbiter: neither is known good.
                    verdict = Verdict::SplitBrain;
                }
            }
        }
        if data_only && matches!(choice, Some(Choice::Brick(b)) if !self.holds_data(b)) {
            tracing::warn!(
                "{}: {g}: the arbiter holds no data and cannot be the source of a data heal",
                self.name
            );
            return Err(Errno::EINVAL);
        }
        let (source, sinks, merge) = match verdict {
            Verdict::Clean => return Ok(HealOutcome::Clean),
            Verdict::SplitBrain if kind == Kind::Entry => {
                // No copy of the directory is known good: keep every name any copy has
                // (GlusterFS's conservative merge).
                (answers[0].0, answers.iter().map(|a| a.0).collect(), true)
            }
            Verdict::SplitBrain => match self.favorite(&answers, kind, choice, data_only) {
                Some(s) => (
                    s,
                    answers.iter().map(|a| a.0).filter(|&i| i != s).collect(),
                    false,
                ),
                None => {
                    tracing::warn!(
                        "{}: {g} is in {} split-brain: no copy is known good",
                        self.name,
                        kind.word()
                    );
                    return Ok(HealOutcome::SplitBrain);
                }
            },
            Verdict::Heal { sources, sinks } => {
                let candidates: Vec<usize> = sources
                    .iter()
                    .copied()
                    .filter(|&i| !data_only || self.holds_data(i))
                    .collect();
                let src = best(&answers, &candidates);
                let sinks = if sinks.is_empty() {
                    sources.into_iter().filter(|&i| i != src).collect()
                } else {
                    sinks
                };
                (src, sinks, false)
            }
        };
        let healed: Vec<usize> = match kind {
            Kind::Data if regular => {
                // An arbiter sink needs no data: its counters settle with the others.
                let (copy_to, arbiter): (Vec<usize>, Vec<usize>) =
                    sinks.iter().partition(|&&i| self.holds_data(i));
                let mut healed = self.heal_data(g, owner, locked, source, &copy_to).await?;
                healed.extend(arbiter);
                healed
            }
            Kind::Data => sinks.clone(),
            Kind::Metadata => self.heal_metadata(g, &answers, source, &sinks).await,
            Kind::Entry => self.heal_entries(g, source, &sinks, merge).await?,
        };
        // Subtract what was read, for the copies now equal to the source: the sources (not
        // accused, so equal to it) and the sinks healed. What a copy left out still says
        // of it, or what was counted meanwhile, stays.
        let settled: Vec<usize> = answers
            .iter()
            .map(|a| a.0)
            .filter(|i| !sinks.contains(i) || healed.contains(i))
            .collect();
        for (i, _, _) in &answers {
            let undo = |j: usize| {
                if settled.contains(&j) {
                    m.undo(*i, j, &[kind])
                } else {
                    [0; 3]
                }
            };
            let Some(attrs) = self.changelog_operand(undo) else {
                continue;
            };
            let _ = self.children[*i]
                .xattrop(
                    &Ctx::heal(),
                    &Loc::inode(g),
                    XattropOp::AddArray32,
                    &attrs,
                    self.changelog_xd(*i, undo),
                )
                .await;
        }
        tracing::info!(
            "{}: healed {} of {g} from {} to {}",
            self.name,
            kind.word(),
            self.names[source],
            healed
                .iter()
                .map(|&i| self.names[i].as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
        Ok(HealOutcome::Healed)
    }

    /// The copy a split-brain resolves to: by `choice` when given, else under
    /// `favorite-child-policy`; `None` when nothing chooses. With `data_only`, only data
    /// copies (not an arbiter) are candidates.
    fn favorite(
        &self,
        answers: &Answers,
        kind: Kind,
        choice: Option<Choice>,
        data_only: bool,
    ) -> Option<usize> {
        let kept: Answers;
        let answers = if data_only {
            kept = answers
                .iter()
                .filter(|a| self.holds_data(a.0))
                .cloned()
                .collect();
            &kept
        } else {
            answers
        };
        let pick = |f: &dyn Fn(&Iatt) -> (u64, Timespec)| {
            answers
                .iter()
                .max_by_key(|(i, ia, _)| (f(ia), std::cmp::Reverse(*i)))
                .map(|a| a.0)
        };
        let policy = match choice {
            Some(Choice::Brick(b)) => return answers.iter().find(|a| a.0 == b).map(|a| a.0),
            Some(Choice::BiggerFile) => Favorite::Size,
            Some(Choice::LatestMtime) => Favorite::Mtime,
            None => self.cfg().favorite,
        };
        match policy {
            Favorite::None => None,
            Favorite::Size if kind == Kind::Data => pick(&|ia| (ia.size, ia.mtime)),
            Favorite::Size => pick(&|ia| (0, ia.ctime)),
            Favorite::Mtime => pick(&|ia| (0, ia.mtime)),
            Favorite::Ctime => pick(&|ia| (0, ia.ctime)),
            Favorite::Majority => {
                // The copy whose size and mtime most others share; ties to the biggest.
                let mut counts: BTreeMap<(u64, Timespec), usize> = BTreeMap::new();
                for (_, ia, _) in answers {
                    *counts.entry((ia.size, ia.mtime)).or_default() += 1;
                }
                let (&want, &n) = counts.iter().max_by_key(|(k, n)| (**n, **k))?;
                if n * 2 <= answers.len() {
                    return None;
                }
                answers
                    .iter()
                    .find(|(_, ia, _)| (ia.size, ia.mtime) == want)
                    .map(|a| a.0)
            }
        }
    }

    /// Copies file data from `source` to `sinks`; returns the sinks healed.
    async fn heal_data(
        &self,
        g: Gfid,
        owner: u64,
        locked: &[usize],
        source: usize,
        sinks: &[usize],
    ) -> Result<Vec<usize>, Errno> {
        let fd = Fd::new(g, libc::O_RDWR, false);
        let mut all = vec![source];
        all.extend_from_slice(sinks);
        let opened = self
            .each(&all, |_, c| {
                let fd = fd.clone();
                async move {
                    c.open(&Ctx::heal(), &Loc::inode(g), &fd, Xdata::new())
                        .await
                }
            })
            .await;
        let open: Vec<usize> = opened
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        let r = if !open.contains(&source) {
            Err(Errno::ENOTCONN)
        } else {
            let sinks: Vec<usize> = sinks.iter().copied().filter(|i| open.contains(i)).collect();
            self.copy_file(g, owner, locked, &fd, source, &sinks)
                .await
                .map(|_| sinks)
        };
        self.each(&open, |_, c| {
            let fd = fd.clone();
            async move { c.release(&Ctx::heal(), &fd, Xdata::new()).await }
        })
        .await;
        r
    }

    async fn copy_file(
        &self,
        g: Gfid,
        owner: u64,
        locked: &[usize],
        fd: &FdRef,
        source: usize,
        sinks: &[usize],
    ) -> Result<(), Errno> {
        let ctx = Ctx::heal();
        let src = &self.children[source];
        let (ia, _) = src.fstat(&ctx, fd, Xdata::new()).await?;
        // Where each sink ends now: chunks past it surely differ and are copied without
        // comparing checksums (a new copy is filled without reading it back).
        let ends: Vec<(usize, u64)> = self
            .each(sinks, |_, c| async move {
                c.fstat(&Ctx::heal(), fd, Xdata::new()).await
            })
            .await
            .into_iter()
            .map(|(i, r)| (i, r.map(|(ia, _)| ia.size).unwrap_or(0)))
            .collect();
        let mut done = 0;
        if ia.size > CHUNK {
            // Chunk by chunk without the whole-file lock, so writers go on meanwhile. The
            // lock is given back, and chunk locks taken, on every replica it was held on:
            // holding it on one while waiting for a writer on another would deadlock.
            let on = locked.to_vec();
            self.unlock_inode(DATA_DOMAIN, g, owner, (0, 0), &on).await;
            let chunk_owner = self.owner();
            let mut r = Ok(());
            while done < ia.size && r.is_ok() {
                let range = (done, CHUNK);
                let got = self
                    .lock_inode(DATA_DOMAIN, g, chunk_owner, range, &on)
                    .await;
                r = if got.contains(&source) {
                    self.copy_chunk(fd, source, &ends, done).await
                } else {
                    Err(Errno::ENOTCONN)
                };
                self.unlock_inode(DATA_DOMAIN, g, chunk_owner, range, &got)
                    .await;
                done += CHUNK;
            }
            let back = self.lock_inode(DATA_DOMAIN, g, owner, (0, 0), &on).await;
            if !back.contains(&source) {
                return Err(Errno::ENOTCONN);
            }
            r?;
        }
        let (now, _) = src.fstat(&ctx, fd, Xdata::new()).await?;
        let mut off = done.min(now.size);
        while off < now.size {
            self.copy_chunk(fd, source, &ends, off).await?;
            off += CHUNK;
        }
        let size = now.size;
        let rs = self
            .each(sinks, |_, c| async move {
                c.ftruncate(&Ctx::heal(), fd, size, Xdata::new()).await?;
                c.fsync(&Ctx::heal(), fd, false, Xdata::new()).await
            })
            .await;
        for (_, r) in rs {
            r?;
        }
        Ok(())
    }

    /// Makes `[off, off+CHUNK)` of each sink equal to the source's where checksums differ.
    /// `sinks`: each sink with where it ended when the heal began (a chunk at or past
    /// that end is copied without comparing).
    async fn copy_chunk(
        &self,
        fd: &FdRef,
        source: usize,
        sinks: &[(usize, u64)],
        off: u64,
    ) -> Result<(), Errno> {
        let ctx = Ctx::heal();
        let mut differ: Vec<usize> = sinks
            .iter()
            .filter(|(_, end)| *end <= off)
            .map(|(i, _)| *i)
            .collect();
        let compare: Vec<usize> = sinks
            .iter()
            .filter(|(_, end)| *end > off)
            .map(|(i, _)| *i)
            .collect();
        if !compare.is_empty() {
            let mut all = vec![source];
            all.extend_from_slice(&compare);
            let sums = self
                .each(&all, |_, c| async move {
                    c.rchecksum(&Ctx::heal(), fd, off, CHUNK as u32, Xdata::new())
                        .await
                })
                .await;
            let want = match &sums[0].1 {
                Ok((s, _)) => s.clone(),
                Err(e) => return Err(*e),
            };
            differ.extend(
                sums[1..]
                    .iter()
                    .filter(|(_, r)| !matches!(r, Ok((s, _)) if *s == want))
                    .map(|(i, _)| *i),
            );
        }
        if differ.is_empty() {
            return Ok(());
        }
        let (data, _) = self.children[source]
            .readv(&ctx, fd, CHUNK as u32, off, Xdata::new())
            .await?;
        if data.is_empty() {
            return Ok(());
        }
        let rs = self
            .each(&differ, |_, c| {
                let data = data.clone();
                async move { c.writev(&Ctx::heal(), fd, data, off, Xdata::new()).await }
            })
            .await;
        for (_, r) in rs {
            r?;
        }
        Ok(())
    }

    /// Copies owner, mode, times and xattrs from `source` to `sinks`; returns the sinks
    /// healed.
    async fn heal_metadata(
        &self,
        g: Gfid,
        answers: &Answers,
        source: usize,
        sinks: &[usize],
    ) -> Vec<usize> {
        let Some((_, ia, _)) = answers.iter().find(|a| a.0 == source) else {
            return Vec::new();
        };
        let ctx = Ctx::heal();
        let loc = Loc::inode(g);
        let want = match self.children[source]
            .getxattr(&ctx, &loc, None, ixd())
            .await
        {
            Ok((m, _)) => own_xattrs(m),
            Err(_) => return Vec::new(),
        };
        let symlink = ia.mode & libc::S_IFMT == libc::S_IFLNK;
        // An arbiter's file times never move with writes (it stores no data): a file's
        // times are not taken from it.
        let times = ia.mode & libc::S_IFMT != libc::S_IFREG || self.holds_data(source);
        let attr = SetAttr {
            mode: (!symlink).then_some(ia.mode & 0o7777),
            uid: Some(ia.uid),
            gid: Some(ia.gid),
            size: None,
            atime: times.then_some(SetTime::At(ia.atime)),
            mtime: times.then_some(SetTime::At(ia.mtime)),
        };
        let rs = self
            .each(sinks, |_, c| {
                let (ctx, loc, want) = (&ctx, &loc, &want);
                async move {
                    let have = own_xattrs(c.getxattr(ctx, loc, None, ixd()).await?.0);
                    for k in have.keys() {
                        if !want.contains_key(k) {
                            match c.removexattr(ctx, loc, k, ixd()).await {
                                Err(e) if e != Errno::ENODATA => return Err(e),
                                _ => {}
                            }
                        }
                    }
                    let mut set = XattrMap::new();
                    for (k, v) in want {
                        if have.get(k) != Some(v) {
                            set.insert(k.clone(), v.clone());
                        }
                    }
                    if !set.is_empty() {
                        c.setxattr(ctx, loc, &set, 0, ixd()).await?;
                    }
                    c.setattr(ctx, loc, &attr, Xdata::new()).await?;
                    Ok(())
                }
            })
            .await;
        rs.into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| i)
            .collect()
    }

    /// The names of directory `dir` on replica `i`, with their attributes.
    async fn list_dir(&self, i: usize, dir: Gfid) -> Result<BTreeMap<OsString, Iatt>, Errno> {
        let c = &self.children[i];
        let ctx = Ctx::heal();
        let fd = Fd::new(dir, libc::O_RDONLY, true);
        c.opendir(&ctx, &Loc::inode(dir), &fd, Xdata::new()).await?;
        let mut out = BTreeMap::new();
        let mut off = 0;
        let r = loop {
            match c.readdirp(&ctx, &fd, 64 * 1024, off, Xdata::new()).await {
                Ok((ents, _)) if ents.is_empty() => break Ok(()),
                Ok((ents, _)) => {
                    for e in ents {
                        off = e.offset;
                        if e.name == b"." || e.name == b".." {
                            continue;
                        }
                        let name = OsString::from(std::ffi::OsStr::from_bytes(&e.name));
                        let ia = match e.iatt {
                            Some(ia) => ia,
                            None => {
                                c.lookup(&ctx, &Loc::entry(dir, &name), Xdata::new())
                                    .await?
                                    .0
                            }
                        };
                        out.insert(name, ia);
                    }
                }
                Err(e) => break Err(e),
            }
        };
        let _ = c.releasedir(&ctx, &fd, Xdata::new()).await;
        r.map(|_| out)
    }

    /// Makes the names of directory `dir` on the sinks those of the source (or, merging,
    /// the union of every copy's); returns the sinks healed.
    async fn heal_entries(
        &self,
        dir: Gfid,
        source: usize,
        sinks: &[usize],
        merge: bool,
    ) -> Result<Vec<usize>, Errno> {
        if merge {
            let mut lists = Vec::new();
            for &i in sinks {
                lists.push((i, self.list_dir(i, dir).await?));
            }
            for (from, list) in &lists {
                for (to, have) in &lists {
                    if from == to {
                        continue;
                    }
                    for (name, ia) in list {
                        if !have.contains_key(name) {
                            self.make_entry(*from, *to, dir, name, ia).await?;
                        }
                    }
                }
            }
            return Ok(sinks.to_vec());
        }
        let want = self.list_dir(source, dir).await?;
        let mut healed = Vec::new();
        for &s in sinks {
            let have = match self.list_dir(s, dir).await {
                Ok(h) => h,
                Err(_) => continue,
            };
            // Names the source gives another inode go first; then new names are made
            // (a renamed file is linked to while its old name still holds it); then names
            // the source does not have go.
            let mut ok = true;
            for (name, ia) in &have {
                if want.get(name).is_some_and(|w| w.gfid != ia.gfid) {
                    ok &= self.remove_entry(s, dir, name, ia).await.is_ok();
                }
            }
            for (name, ia) in &want {
                if have.get(name).map(|h| h.gfid) != Some(ia.gfid) {
                    ok &= self.make_entry(source, s, dir, name, ia).await.is_ok();
                }
            }
            for (name, ia) in &have {
                if !want.contains_key(name) {
                    ok &= self.remove_entry(s, dir, name, ia).await.is_ok();
                }
            }
            if ok {
                healed.push(s);
            }
        }
        Ok(healed)
    }

    /// Makes `dir/name` on replica `to` as it is on `from` (same gfid). A new copy's data
    /// and metadata (a directory's metadata and names) are marked pending on `from` *before*
    /// the copy is made, so no client ever finds the copy with nothing accusing it and
    /// reads its empty content; if making it fails, the mark is taken back (after
    /// `ENOTCONN`, only when `to` is seen to hold no copy).
    async fn make_entry(
        &self,
        from: usize,
        to: usize,
        dir: Gfid,
        name: &OsString,
        ia: &Iatt,
    ) -> Result<(), Errno> {
        let ctx = Ctx::heal();
        let c = &self.children[to];
        let loc = Loc::entry(dir, name);
        let kind = ia.mode & libc::S_IFMT;
        // Another name of a file `to` already holds (a hard link, or the new name of a
        // rename made while this replica was down) needs no heal of its own.
        let linked = kind != libc::S_IFDIR
            && kind != libc::S_IFLNK
            && c.lookup(&ctx, &Loc::inode(ia.gfid), Xdata::new())
                .await
                .is_ok();
        if linked {
            c.link(&ctx, &Loc::inode(ia.gfid), &loc, Xdata::new())
                .await?;
            return Ok(());
        }
        let lacks: [i64; 3] = if ia.is_dir() { [0, 1, 1] } else { [1, 1, 0] };
        self.mark_lacking(from, to, ia.gfid, lacks).await?;
        let mut xd = ixd();
        xd.set(GFID_REQ_KEY, ia.gfid.0.to_vec());
        let perm = ia.mode & 0o7777;
        let made = match kind {
            libc::S_IFDIR => c.mkdir(&ctx, &loc, perm, 0, xd).await.map(drop),
            libc::S_IFLNK => match self.children[from]
                .readlink(&ctx, &Loc::inode(ia.gfid), Xdata::new())
                .await
            {
                Ok((target, _)) => c.symlink(&ctx, &target, &loc, 0, xd).await.map(drop),
                Err(e) => Err(e),
            },
            _ => c.mknod(&ctx, &loc, ia.mode, ia.rdev, 0, xd).await.map(drop),
        };
        if let Err(e) = made {
            // A dropped connection leaves it unclear whether the create happened: the mark
            // then stays unless `to` is seen to hold no copy (a mark left behind costs a
            // heal that finds nothing to do). Any other error means it did not happen
            // (EEXIST: someone else made the name; their copy is not known to lack data).
            if e == Errno::ENOTCONN {
                let absent = matches!(
                    c.lookup(&ctx, &Loc::inode(ia.gfid), Xdata::new()).await,
                    Err(Errno(libc::ENOENT | libc::ESTALE))
                );
                if !absent {
                    return Err(e);
                }
            }
            let undo = lacks.map(|n| -n);
            if let Err(u) = self.mark_lacking(from, to, ia.gfid, undo).await {
                tracing::warn!(
                    "replicate: taking back the pending mark on {} for {}: {u}",
                    self.names[from],
                    ia.gfid
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// Adds `counts` (data, metadata, entry) to what `from`'s copy of `g` says replica `to`
    /// lacks.
    async fn mark_lacking(
        &self,
        from: usize,
        to: usize,
        g: Gfid,
        counts: [i64; 3],
    ) -> Result<(), Errno> {
        let delta = |j: usize| if j == to { counts } else { [0; 3] };
        let Some(attrs) = self.changelog_operand(delta) else {
            return Ok(());
        };
        self.children[from]
            .xattrop(
                &Ctx::heal(),
                &Loc::inode(g),
                XattropOp::AddArray32,
                &attrs,
                self.changelog_xd(from, delta),
            )
            .await
            .map(drop)
    }

    /// Removes `dir/name` (a whole tree for a directory) from replica `on`.
    async fn remove_entry(
        &self,
        on: usize,
        dir: Gfid,
        name: &OsString,
        ia: &Iatt,
    ) -> Result<(), Errno> {
        let ctx = Ctx::heal();
        let c = &self.children[on];
        let loc = Loc::entry(dir, name).with_gfid(ia.gfid);
        if ia.is_dir() {
            let inside = self.list_dir(on, ia.gfid).await?;
            for (n, sub) in &inside {
                Box::pin(self.remove_entry(on, ia.gfid, n, sub)).await?;
            }
            c.rmdir(&ctx, &loc, Xdata::new()).await?;
        } else {
            c.unlink(&ctx, &loc, Xdata::new()).await?;
        }
        Ok(())
    }

    /// The gfids any replica's index lists as pending (at most 100,000).
    pub(crate) async fn pending_list(&self) -> Result<String, Errno> {
        let up = self.up();
        let mut all = std::collections::BTreeSet::new();
        for i in up {
            let mut after: Option<String> = None;
            loop {
                let mut xd = ixd();
                if let Some(a) = &after {
                    xd.set("weft.index.after", a.as_bytes().to_vec());
                }
                let Ok((m, rxd)) = self.children[i]
                    .getxattr(&Ctx::heal(), &Loc::root(), Some(INDEX_PENDING_XATTR), xd)
                    .await
                else {
                    break;
                };
                let text = m
                    .get(INDEX_PENDING_XATTR)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                let mut last = None;
                for l in text.lines().filter(|l| !l.is_empty()) {
                    all.insert(l.to_string());
                    last = Some(l.to_string());
                }
                if !rxd.has("weft.index.more") || last.is_none() || all.len() >= 100_000 {
                    break;
                }
                after = last;
            }
        }
        Ok(all.into_iter().collect::<Vec<_>>().join("\n"))
    }

    /// A line of words about inode `g`'s copies (see [`super::STATUS_XATTR_PREFIX`]).
    pub(crate) async fn status(&self, g: Gfid) -> Result<String, Errno> {
        let answers = match self.refresh_quiet(g).await {
            Ok(a) => a,
            Err(e) if e == Errno::ENOENT || e == Errno::ESTALE => return Ok("gone".into()),
            Err(e) => return Err(e),
        };
        let mut m = Matrix::new(self.n());
        for (i, _, xd) in &answers {
            m.set_row(*i, &self.names, |k| xd.get(k));
        }
        let mut words = Vec::new();
        let mut split = false;
        for k in [Kind::Data, Kind::Metadata, Kind::Entry] {
            match m.verdict(k) {
                Verdict::SplitBrain => {
                    split = true;
                    words.push(k.word());
                }
                Verdict::Heal { .. } => words.push(k.word()),
                Verdict::Clean if m.any_pending(k) => words.push(k.word()),
                Verdict::Clean => {}
            }
        }
        if split {
            words.push("split-brain");
        }
        if words.is_empty() {
            words.push("clean");
        }
        Ok(words.join(" "))
    }
}

/// The xattrs metadata heal copies: all but the changelogs and the gfid.
fn own_xattrs(mut m: XattrMap) -> XattrMap {
    m.retain(|k, _| !k.starts_with(super::changelog::PENDING_PREFIX) && k != GFID_XATTR);
    m
}

/// The source to copy from: the biggest, then latest, copy among `sources` (they hold
/// the same data unless a change was cut short, when the biggest most likely has it).
fn best(answers: &Answers, sources: &[usize]) -> usize {
    answers
        .iter()
        .filter(|a| sources.contains(&a.0))
        .max_by_key(|(i, ia, _)| (ia.size, ia.mtime, std::cmp::Reverse(*i)))
        .map(|a| a.0)
        .unwrap_or(sources[0])
}
