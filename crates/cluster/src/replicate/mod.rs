//! `cluster/replicate`: every file on every subvolume of a replica set, GlusterFS's AFR
//! (see ARCHITECTURE.md, "cluster/replicate").
//!
//! - Changes go to every replica that is up, inside a *transaction* ([`txn`]): a lock on
//!   the inode (data, metadata) or on the names (entries) in `features/locks` on every
//!   replica, so concurrent writers from several clients apply in the same order
//!   everywhere; the pending counters of [`changelog`] raised before and lowered after, so
//!   after any crash the survivors know who is behind. A sequential writer shares one lock
//!   and one pre-op/post-op among all its writes in flight (eager locking).
//! - Without quorum (by default a majority of the set) changes fail with `EROFS`; reads of
//!   good copies go on.
//! - Reads go to one good copy: among the copies that are up and known good (no pending
//!   changes against them), the one the gfid's hash picks, so different files spread over
//!   the set (GlusterFS's `read-hash-mode 1`); another good copy when it fails.
//! - A lookup that finds pending counters hands the inode to a background heal
//!   ([`heal`]); the self-heal daemon finds the rest in the bricks' `features/index`.
//! - Split-brain (each copy accuses the other) reads as `EIO` until it is resolved by a
//!   command or by `favorite-child-policy`.
//! - A mkdir asking for a directory lease ([`weft_core::LEASE_KEY`]) is granted one only
//!   when every replica made and leased its copy (option `lease-directories`, on by
//!   default; off: the request is removed). A replica's connection that drops or returns
//!   reaches the caches above as `protocol/client`'s `All`, which ends every lease there.
//! - With `arbiter-count 1` the last replica is an *arbiter* (its brick runs
//!   `features/arbiter`): it keeps names, metadata and changelogs but no file data. It
//!   counts for quorum and for which copy is good, but file data and attributes are never
//!   read from it, it is never a source of a data heal, and a data change that would leave
//!   it the only good copy (the one good data copy down, the other behind) fails with
//!   `ENOTCONN` before anything is written, so two data copies cannot each take changes
//!   the other missed (split-brain).

pub mod changelog;
mod heal;
mod txn;

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;

use changelog::{Kind, Matrix, Verdict, PENDING_PREFIX};

pub use heal::{Choice, HealOutcome};

/// Xdata key (presence only) that lets a Weft translator reach `trusted.weft.*` xattrs.
use crate::distribute::INTERNAL_XDATA_KEY;

/// Virtual xattr (internal xdata only): `setxattr` with a gfid as text heals that inode
/// now (every kind of change), answering `EIO` for a split-brain it cannot resolve and
/// `EAGAIN` when changes stay pending for a replica that is down.
pub const HEAL_XATTR: &str = "weft.afr.heal";
/// Virtual xattr (internal xdata only): `setxattr` with `bigger-file GFID`,
/// `latest-mtime GFID` or `source-brick SUBVOLUME GFID` heals that inode, resolving a
/// split-brain by that choice; `EINVAL` for a malformed value or unknown subvolume,
/// `ENOENT` for an inode no replica has.
pub const RESOLVE_XATTR: &str = "weft.afr.resolve";
/// Virtual xattr (internal xdata only): `getxattr` answers the gfids (text, one per line)
/// that the index of any replica lists as pending.
pub const PENDING_XATTR: &str = "weft.afr.pending";
/// Virtual xattr prefix (internal xdata only): `getxattr` of `weft.afr.status:<gfid>`
/// answers a line of words about that inode: `clean`, or the kinds pending
/// (`data metadata entry`), `split-brain` when no copy is known good, `gone` when no
/// replica has it.
pub const STATUS_XATTR_PREFIX: &str = "weft.afr.status:";

/// Inodes whose state is kept at most (then the table starts again empty).
const INODES_MAX: usize = 1 << 18;
/// Background heals at most at once from lookups.
const BACKGROUND_HEALS: usize = 8;
/// How many more passes a sweep makes, 0.5 s, 1 s, 2 s, ... apart, when its last pass
/// healed nothing but left some inode to a heal that may have given way.
const SWEEP_RETRIES: u32 = 5;

fn ixd() -> Xdata {
    let mut x = Xdata::new();
    x.set(INTERNAL_XDATA_KEY, Vec::new());
    x
}

/// Internal xdata asking a lookup for the changelogs.
fn lookup_xd(mut xd: Xdata) -> Xdata {
    xd.set(INTERNAL_XDATA_KEY, Vec::new());
    xd.set(LOOKUP_XATTRS_KEY, PENDING_PREFIX.as_bytes().to_vec());
    xd
}

/// How many replicas must be up for a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quorum {
    /// Any one.
    None,
    /// More than half; exactly half when the first replica is among them.
    Auto,
    /// At least this many.
    Fixed(usize),
}

/// How a split-brain resolves itself, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Favorite {
    /// It does not: reads answer EIO until a command resolves it.
    None,
    /// The biggest file wins.
    Size,
    /// The latest modification time wins.
    Mtime,
    /// The latest change time wins.
    Ctime,
    /// The copy most others agree with wins (the biggest, then latest, among equals).
    Majority,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    quorum: Quorum,
    favorite: Favorite,
    eager_lock: bool,
    post_op_delay: Duration,
    heal_on_access: bool,
    heal_on_reconnect: bool,
    lease_dirs: bool,
}

fn config(o: &Options) -> Result<Config, String> {
    let count = o.int("quorum-count").max(0) as usize;
    let quorum = match o.str("quorum-type") {
        "none" => Quorum::None,
        "fixed" if count == 0 => {
            return Err("quorum-type fixed needs quorum-count of 1 or more".into())
        }
        "fixed" => Quorum::Fixed(count),
        _ => Quorum::Auto,
    };
    let favorite = match o.str("favorite-child-policy") {
        "size" => Favorite::Size,
        "mtime" => Favorite::Mtime,
        "ctime" => Favorite::Ctime,
        "majority" => Favorite::Majority,
        _ => Favorite::None,
    };
    Ok(Config {
        quorum,
        favorite,
        eager_lock: o.bool("eager-lock"),
        post_op_delay: o.duration("post-op-delay"),
        heal_on_access: o.bool("self-heal-on-access"),
        heal_on_reconnect: o.bool("self-heal-on-reconnect"),
        lease_dirs: o.bool("lease-directories"),
    })
}

/// What this client knows of one inode's copies.
#[derive(Clone, Debug)]
struct Known {
    /// The event generation it was learnt at (a replica coming up invalidates it).
    gen: u64,
    /// Copies that hold good data and metadata.
    good: Vec<bool>,
    /// No copy is known good.
    split_brain: bool,
    /// A regular file: with an arbiter, only data copies serve it.
    file: bool,
}

/// Which replicas made the new inode a create, mkdir, symlink or mknod asked for (its
/// requested gfid, so an inode that was there already does not count).
struct MadeOn {
    want: Option<Gfid>,
    /// The event generation when the change began.
    gen: u64,
    on: Mutex<Vec<usize>>,
    /// Each replica that answered a create: the gfid it made, and whether it took the
    /// data lock and did the pre-op the create asked for ([`txn::CreateData`]).
    prepared: Mutex<Vec<(usize, Gfid, bool, bool)>>,
}

impl MadeOn {
    /// Notes replica `i`'s answer.
    fn record(&self, i: usize, r: &Fop<Iatt>) {
        if let Ok((ia, rxd)) = r {
            if Some(ia.gfid) == self.want {
                self.on.lock().push(i);
            }
            self.prepared.lock().push((
                i,
                ia.gfid,
                rxd.has(WITH_INODELK_KEY),
                rxd.has(WITH_XATTROP_DONE_KEY),
            ));
        }
    }
}

/// Per-inode state.
#[derive(Default)]
struct Inode {
    known: Mutex<Option<Known>>,
    /// Bumped whenever a change fails on a replica: what a lookup sent before learnt may
    /// predate the accusation, so it is not kept.
    epoch: AtomicU64,
    data: txn::Slot,
    meta: txn::Slot,
    /// A directory's entry changes sent from under its lease (see
    /// [`weft_core::LEASED_DIR_KEY`]).
    entry: txn::Slot,
}

/// Which replicas an fd is open on.
struct FdState {
    open: Mutex<Vec<bool>>,
}

/// The replicate translator.
pub struct Replicate {
    me: Weak<Replicate>,
    name: String,
    children: Vec<XlatorRef>,
    /// The children's names (their changelog xattrs are named after them).
    names: Vec<String>,
    /// Per child: unknown until it says, then up or down.
    state: Mutex<Vec<Option<bool>>>,
    /// Per child: went down at least once since this graph started.
    ever_down: Mutex<Vec<bool>>,
    announced: Mutex<Option<bool>>,
    /// Bumped when a child comes up: what was known of copies must be learnt again.
    gen: AtomicU64,
    cfg: RwLock<Config>,
    /// The arbiter's index (the last child) when there is one.
    arbiter: Option<usize>,
    inodes: Mutex<HashMap<Gfid, Arc<Inode>>>,
    /// Post-ops and unlocks running after their change was answered (entry
    /// transactions of their own); `fini` waits for them.
    finishing: tokio::sync::watch::Sender<usize>,
    next_owner: AtomicU64,
    /// Inodes a background heal is working on.
    healing: Mutex<HashSet<Gfid>>,
    /// A sweep of the indexes runs.
    sweeping: AtomicBool,
    /// A replica came back since the running sweep's passes began.
    sweep_again: AtomicBool,
    stats: heal::Stats,
}

impl Replicate {
    fn new(
        name: String,
        children: Vec<XlatorRef>,
        cfg: Config,
        arbiter: Option<usize>,
    ) -> Arc<Replicate> {
        let n = children.len();
        let names = children.iter().map(|c| c.name().to_string()).collect();
        // Lock owners unique across processes and graphs: a random high half.
        let seed = (Gfid::random().0[0..4]
            .iter()
            .fold(0u64, |a, b| (a << 8) | *b as u64))
            << 32;
        Arc::new_cyclic(|me| Replicate {
            me: me.clone(),
            name,
            children,
            names,
            state: Mutex::new(vec![None; n]),
            ever_down: Mutex::new(vec![false; n]),
            announced: Mutex::new(None),
            gen: AtomicU64::new(1),
            cfg: RwLock::new(cfg),
            arbiter,
            inodes: Mutex::new(HashMap::new()),
            finishing: tokio::sync::watch::channel(0).0,
            next_owner: AtomicU64::new(seed | 1),
            healing: Mutex::new(HashSet::new()),
            sweeping: AtomicBool::new(false),
            sweep_again: AtomicBool::new(false),
            stats: heal::Stats::default(),
        })
    }

    fn n(&self) -> usize {
        self.children.len()
    }

    fn cfg(&self) -> Config {
        *self.cfg.read()
    }

    /// Whether child `i` holds file data (every child but an arbiter).
    fn holds_data(&self, i: usize) -> bool {
        self.arbiter != Some(i)
    }

    /// Children that are up (or have not said yet: they are tried).
    fn up(&self) -> Vec<usize> {
        self.up_at().0
    }

    /// The children up and the generation of what is known, read together (a child
    /// coming back bumps the generation under the same lock), so a copy known good before
    /// it went down is never taken as good once it is back.
    fn up_at(&self) -> (Vec<usize>, u64) {
        let st = self.state.lock();
        let up = (0..self.n()).filter(|&i| st[i] != Some(false)).collect();
        (up, self.gen.load(Ordering::Acquire))
    }

    fn has_quorum(&self, set: &[usize]) -> bool {
        let n = self.n();
        match self.cfg().quorum {
            Quorum::None => !set.is_empty(),
            Quorum::Fixed(k) => set.len() >= k.min(n),
            Quorum::Auto => set.len() * 2 > n || (set.len() * 2 == n && set.contains(&0)),
        }
    }

    fn owner(&self) -> u64 {
        self.next_owner.fetch_add(1, Ordering::Relaxed)
    }

    fn inode(&self, g: Gfid) -> Arc<Inode> {
        let mut m = self.inodes.lock();
        if m.len() >= INODES_MAX {
            m.retain(|_, v| Arc::strong_count(v) > 1);
        }
        m.entry(g).or_default().clone()
    }

    fn forget_inode(&self, g: Gfid) {
        self.inodes.lock().remove(&g);
    }

    fn fd_state(&self, fd: &FdRef) -> Arc<FdState> {
        match fd.ctx::<FdState>(&self.name) {
            Some(s) => s,
            None => {
                let s = Arc::new(FdState {
                    open: Mutex::new(vec![false; self.n()]),
                });
                fd.set_ctx(&self.name, s.clone());
                s
            }
        }
    }

    /// Runs `f` on each child in `which` at once; answers in the same order.
    async fn each<T, F, Fut>(&self, which: &[usize], f: F) -> Vec<(usize, Result<T, Errno>)>
    where
        F: Fn(usize, XlatorRef) -> Fut,
        Fut: Future<Output = Result<T, Errno>>,
    {
        let rs = join_all(which.iter().map(|&i| f(i, self.children[i].clone()))).await;
        which.iter().copied().zip(rs).collect()
    }

    /// Learns what a set of lookup answers (`(child, iatt, xdata with the changelogs)`)
    /// says of an inode's copies.
    fn judge(&self, answers: &[(usize, Iatt, Xdata)]) -> (Known, Matrix) {
        let mut m = Matrix::new(self.n());
        for (i, _, xd) in answers {
            m.set_row(*i, &self.names, |k| xd.get(k));
        }
        let is_dir = answers.first().map(|a| a.1.is_dir()).unwrap_or(false);
        let file = answers
            .first()
            .map(|a| a.1.mode & libc::S_IFMT == libc::S_IFREG)
            .unwrap_or(false);
        let kinds: &[Kind] = if is_dir {
            &[Kind::Metadata, Kind::Entry]
        } else {
            &[Kind::Data, Kind::Metadata]
        };
        let mut good = vec![false; self.n()];
        for (i, _, _) in answers {
            good[*i] = true;
        }
        let mut split_brain = false;
        for &k in kinds {
            match m.verdict(k) {
                Verdict::Clean => {}
                Verdict::SplitBrain => split_brain = true,
                Verdict::Heal { sources, sinks } => {
                    // With an arbiter, data the arbiter alone is good for is in
                    // split-brain when both data copies answered (each is behind).
                    if k == Kind::Data
                        && self.arbiter.is_some()
                        && !sources.iter().any(|&i| self.holds_data(i))
                        && answers.iter().filter(|a| self.holds_data(a.0)).count() == self.n() - 1
                    {
                        split_brain = true;
                    }
                    for s in sinks {
                        good[s] = false;
                    }
                }
            }
        }
        if split_brain {
            good = vec![false; self.n()];
        }
        (
            Known {
                gen: self.gen.load(Ordering::Acquire),
                good,
                split_brain,
                file,
            },
            m,
        )
    }

    /// Good copies of `g` that are up, the one reads should go to first; `EIO` in
    /// split-brain.
    async fn readable(&self, g: Gfid) -> Result<Vec<usize>, Errno> {
        let ino = self.inode(g);
        let mut tries = 0;
        let (known, up) = loop {
            let (up, gen) = self.up_at();
            if let Some(k) = ino.known.lock().clone().filter(|k| k.gen == gen) {
                break (k, up);
            }
            // Not known, or known before a child came back, or a change failed meanwhile:
            // learn again.
            tries += 1;
            if tries > 6 {
                return Err(Errno::EIO);
            }
            self.refresh(g).await?;
        };
        if known.split_brain {
            return Err(Errno::EIO);
        }
        let good: Vec<usize> = up
            .into_iter()
            .filter(|&i| known.good[i] && (!known.file || self.holds_data(i)))
            .collect();
        if good.is_empty() {
            return Err(Errno::ENOTCONN);
        }
        let start = (g.0[15] as usize) % good.len();
        Ok(good[start..]
            .iter()
            .chain(good[..start].iter())
            .copied()
            .collect())
    }

    /// Learns the copies of `g` again (a nameless lookup with the changelogs on every
    /// child that is up); returns the answers.
    async fn refresh(&self, g: Gfid) -> Result<Vec<(usize, Iatt, Xdata)>, Errno> {
        let epoch = self.inode(g).epoch.load(Ordering::Acquire);
        let up = self.up();
        let rs = self
            .each(&up, |_, c| async move {
                c.lookup(&Ctx::internal(), &Loc::inode(g), lookup_xd(Xdata::new()))
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
            return Err(err);
        }
        let (known, m) = self.judge(&answers);
        self.learn(g, known, epoch);
        if m.any_pending_at_all() {
            self.background_heal(g);
        }
        Ok(answers)
    }

    /// Starts noting which replicas make the inode a change with request xdata `xd` asks
    /// for (see [`Replicate::learn_made`]).
    fn made_on(&self, xd: &Xdata) -> MadeOn {
        MadeOn {
            want: xd.get_gfid(GFID_REQ_KEY),
            gen: self.gen.load(Ordering::Acquire),
            on: Mutex::new(Vec::new()),
            prepared: Mutex::new(Vec::new()),
        }
    }

    /// After a change that made a new inode succeeded: its copies are the ones just made
    /// (new, so alike), and reads need no lookup to learn that.
    fn learn_made(&self, r: &Fop<Iatt>, made: MadeOn) {
        let Ok((ia, _)) = r else { return };
        let on = made.on.into_inner();
        if Some(ia.gfid) != made.want || on.is_empty() {
            return;
        }
        let mut good = vec![false; self.n()];
        for i in on {
            good[i] = true;
        }
        let known = Known {
            gen: made.gen,
            good,
            split_brain: false,
            file: ia.mode & libc::S_IFMT == libc::S_IFREG,
        };
        let epoch = self.inode(ia.gfid).epoch.load(Ordering::Acquire);
        self.learn(ia.gfid, known, epoch);
    }

    /// Marks copy `c` of `g` as not good (a change failed there).
    fn mark_bad(&self, g: Gfid, c: usize) {
        let ino = self.inode(g);
        let mut k = ino.known.lock();
        ino.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(k) = k.as_mut() {
            k.good[c] = false;
        }
    }

    /// Keeps what a lookup learnt of `g`'s copies, unless a change failed since it was
    /// sent (`epoch` then): its answers may predate that accusation.
    fn learn(&self, g: Gfid, known: Known, epoch: u64) {
        let ino = self.inode(g);
        let mut k = ino.known.lock();
        if ino.epoch.load(Ordering::Acquire) == epoch {
            *k = Some(known);
        } else {
            *k = None;
        }
    }

    /// Sends a read FOP to a good copy, falling over to the next on ENOTCONN.
    async fn read_fop<T, F, Fut>(&self, g: Gfid, f: F) -> Fop<T>
    where
        F: Fn(usize, XlatorRef) -> Fut,
        Fut: Future<Output = Fop<T>>,
    {
        let order = self.readable(g).await?;
        let mut last = Errno::ENOTCONN;
        for i in order {
            match f(i, self.children[i].clone()).await {
                Err(e) if e == Errno::ENOTCONN => last = e,
                r => return r,
            }
        }
        Err(last)
    }

    /// Sends a read FOP on an open fd to a good copy where it is open (opening it there
    /// first if needed), falling over to the next on ENOTCONN or EBADF.
    async fn read_fd<T, F, Fut>(&self, fd: &FdRef, f: F) -> Fop<T>
    where
        F: Fn(XlatorRef) -> Fut,
        Fut: Future<Output = Fop<T>>,
    {
        let order = self.readable(fd.gfid).await?;
        let open = self.ensure_open(fd, &order).await;
        let mut last = Errno::ENOTCONN;
        for i in open {
            match f(self.children[i].clone()).await {
                Err(e) if e == Errno::ENOTCONN || e == Errno::EBADF => last = e,
                r => return r,
            }
        }
        Err(last)
    }

    /// Starts a heal of `g` in the background unless one runs or too many do.
    fn background_heal(&self, g: Gfid) {
        if !self.cfg().heal_on_access {
            return;
        }
        {
            let mut h = self.healing.lock();
            if h.len() >= BACKGROUND_HEALS || !h.insert(g) {
                return;
            }
        }
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            if let Err(e) = me.heal(g).await {
                tracing::warn!("{}: background heal of {g} failed: {e:?}", me.name);
            }
            me.healing.lock().remove(&g);
        });
    }

    /// Heals, in the background, every inode the replicas' indexes list, pass after pass
    /// while passes make progress (one sweep at a time).
    fn sweep(&self) {
        let Some(me) = self.me.upgrade() else { return };
        self.sweep_again.store(true, Ordering::Release);
        if self.sweeping.swap(true, Ordering::AcqRel) {
            // The running sweep starts over when its passes end.
            return;
        }
        tokio::spawn(async move {
            loop {
                while me.sweep_again.swap(false, Ordering::AcqRel) {
                    let mut last = usize::MAX;
                    let mut retries = 0;
                    let deferred = AtomicBool::new(false);
                    loop {
                        let list = me.pending_list().await.unwrap_or_default();
                        let gfids: Vec<Gfid> =
                            list.lines().filter_map(|l| l.parse().ok()).collect();
                        if gfids.is_empty() {
                            break;
                        }
                        if gfids.len() >= last {
                            // No progress. A heal that found another at work on its inode
                            // left it to that one, which may have given way too: with every
                            // replica up, look again a little later, a few times.
                            let all_up = me.up().len() == me.n();
                            if !deferred.load(Ordering::Acquire)
                                || !all_up
                                || retries == SWEEP_RETRIES
                            {
                                break;
                            }
                            retries += 1;
                            tokio::time::sleep(Duration::from_millis(250 << retries)).await;
                        }
                        last = gfids.len();
                        deferred.store(false, Ordering::Release);
                        futures::stream::iter(gfids)
                            .for_each_concurrent(4, |g| {
                                let (me, deferred) = (me.clone(), &deferred);
                                async move {
                                    match me.heal(g).await {
                                        Ok(HealOutcome::Partial) => {
                                            deferred.store(true, Ordering::Release)
                                        }
                                        Ok(_) => {}
                                        Err(e) => {
                                            tracing::warn!("{}: heal of {g} failed: {e:?}", me.name)
                                        }
                                    }
                                }
                            })
                            .await;
                    }
                }
                me.sweeping.store(false, Ordering::Release);
                // A request that came after the last check but before the flag dropped.
                if !me.sweep_again.load(Ordering::Acquire)
                    || me.sweeping.swap(true, Ordering::AcqRel)
                {
                    break;
                }
            }
        });
    }

    /// Opens `fd` on children in `which` where it is not open yet (after they came back);
    /// returns the children where it is open.
    async fn ensure_open(&self, fd: &FdRef, which: &[usize]) -> Vec<usize> {
        let st = self.fd_state(fd);
        let missing: Vec<usize> = {
            let o = st.open.lock();
            which.iter().copied().filter(|&i| !o[i]).collect()
        };
        if !missing.is_empty() {
            // The fd's own flags are sent; a copy opened late missed the open's O_TRUNC
            // anyway and is a sink until healed.
            let rs = self
                .each(&missing, |_, c| {
                    let fd = fd.clone();
                    async move {
                        let l = Loc::inode(fd.gfid);
                        if fd.is_dir {
                            c.opendir(&Ctx::internal(), &l, &fd, Xdata::new()).await
                        } else {
                            c.open(&Ctx::internal(), &l, &fd, Xdata::new()).await
                        }
                    }
                })
                .await;
            let mut o = st.open.lock();
            for (i, r) in rs {
                if r.is_ok() {
                    o[i] = true;
                }
            }
        }
        let o = st.open.lock();
        which.iter().copied().filter(|&i| o[i]).collect()
    }

    /// `rs`'s first success, answering under [`POSTSTAT_KEY`] (when `asked`) the
    /// attributes of the copy a read of `g` uses now, as a stat right after would answer
    /// them (each copy has its own times); without a readable copy's, none.
    async fn first_ok_with_poststat<T>(
        &self,
        g: Gfid,
        asked: bool,
        rs: Vec<(usize, Fop<T>)>,
    ) -> Fop<T> {
        let post = if asked && rs.iter().any(|(_, r)| r.is_ok()) {
            let order = self.readable(g).await.unwrap_or_default();
            order.iter().find_map(|i| {
                rs.iter()
                    .find(|(j, _)| j == i)
                    .and_then(|(_, r)| r.as_ref().ok())
                    .and_then(|(_, xd)| xd.get(POSTSTAT_KEY).map(<[u8]>::to_vec))
            })
        } else {
            None
        };
        let (v, mut xd) = Self::first_ok(rs)?;
        xd.0.remove(POSTSTAT_KEY);
        if let Some(p) = post {
            xd.set(POSTSTAT_KEY, p);
        }
        Ok((v, xd))
    }

    /// The first success of a set of answers, or the error that matters most.
    fn first_ok<T>(rs: Vec<(usize, Fop<T>)>) -> Fop<T> {
        let mut err = None;
        for (_, r) in rs {
            match r {
                Ok(v) => return Ok(v),
                Err(e) => {
                    if err.is_none() || err == Some(Errno::ENOTCONN) {
                        err = Some(e)
                    }
                }
            }
        }
        Err(err.unwrap_or(Errno::ENOTCONN))
    }

    /// Where `loc` points, as a gfid (lookups have been done by the callers above).
    fn gfid_of(loc: &Loc) -> Result<Gfid, Errno> {
        loc.gfid.ok_or(Errno::EINVAL)
    }

    async fn do_lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata, healed: bool) -> Fop<Iatt> {
        let epoch = loc
            .gfid
            .map(|g| self.inode(g).epoch.load(Ordering::Acquire));
        let up = self.up();
        let xd2 = lookup_xd(xd.clone());
        let rs = self
            .each(&up, |_, c| {
                let xd2 = xd2.clone();
                async move { c.lookup(ctx, loc, xd2).await }
            })
            .await;
        let mut found = Vec::new();
        let mut missing = 0;
        let mut err = Errno::ENOTCONN;
        for (i, r) in rs {
            match r {
                Ok((ia, x)) => found.push((i, ia, x)),
                Err(e) if e == Errno::ENOENT || e == Errno::ESTALE => {
                    missing += 1;
                    err = e;
                }
                Err(e) if e != Errno::ENOTCONN => err = e,
                Err(_) => {}
            }
        }
        let mismatch = found.windows(2).any(|w| {
            w[0].1.gfid != w[1].1.gfid || w[0].1.mode & libc::S_IFMT != w[1].1.mode & libc::S_IFMT
        });
        if let (Some(parent), Some(_)) = (loc.parent, &loc.name) {
            if (mismatch || (missing > 0 && !found.is_empty())) && !healed {
                // The copies disagree on this name: the parent's entry changelog says
                // which are right; heal it, then look again.
                if let Err(e) = self.heal_kind(parent, Kind::Entry, None).await {
                    tracing::debug!("{}: entry heal of {parent}: {e:?}", self.name);
                }
                return Box::pin(self.do_lookup(ctx, loc, xd, true)).await;
            }
        }
        if found.is_empty() {
            return Err(err);
        }
        if mismatch {
            tracing::warn!(
                "{}: {} has different gfids or types on different replicas and no replica is known good: EIO",
                self.name,
                loc.describe()
            );
            return Err(Errno::EIO);
        }
        let g = found[0].1.gfid;
        let (known, m) = self.judge(&found);
        let pending = m.any_pending_at_all();
        let pick = if known.file && self.arbiter.is_some() {
            // A file's size and times come from a good data copy; the arbiter's are not
            // its (it holds no data).
            let Some(p) = found
                .iter()
                .find(|(i, _, _)| known.good[*i] && self.holds_data(*i))
            else {
                if pending {
                    self.background_heal(g);
                }
                return Err(if known.split_brain {
                    Errno::EIO
                } else {
                    Errno::ENOTCONN
                });
            };
            p
        } else {
            // The good copy reads of `g` start at (see `readable`), so a file's size and
            // times agree with what its reads (and quick-read's content) came from.
            let mut good: Vec<_> = found.iter().filter(|(i, _, _)| known.good[*i]).collect();
            good.sort_by_key(|(i, _, _)| *i);
            if good.is_empty() {
                &found[0]
            } else {
                good[(g.0[15] as usize) % good.len()]
            }
        };
        let mut ia = pick.1;
        if ia.is_dir() {
            // An entry made or removed changes only the copies it reached; show the latest.
            for (_, other, _) in &found {
                ia.mtime = ia.mtime.max(other.mtime);
                ia.ctime = ia.ctime.max(other.ctime);
            }
        }
        match epoch {
            Some(e) if loc.gfid == Some(g) => self.learn(g, known, e),
            // A name looked up for the first time: nothing of it failed before.
            _ => self.learn(g, known, self.inode(g).epoch.load(Ordering::Acquire)),
        }
        if pending {
            self.background_heal(g);
        }
        Ok((ia, Xdata::new()))
    }

    /// Handles the virtual xattrs of [`HEAL_XATTR`]; `None` when `attrs` is not one.
    async fn virtual_set(&self, attrs: &XattrMap, xd: &Xdata) -> Option<Fop<()>> {
        if let Some(v) = attrs.get(RESOLVE_XATTR) {
            if !xd.has(INTERNAL_XDATA_KEY) {
                return Some(Err(Errno::EPERM));
            }
            let text = String::from_utf8_lossy(v).into_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            let (choice, g) = match words.as_slice() {
                ["bigger-file", g] => (Choice::BiggerFile, *g),
                ["latest-mtime", g] => (Choice::LatestMtime, *g),
                ["source-brick", sub, g] => match self.names.iter().position(|n| n == sub) {
                    Some(i) => (Choice::Brick(i), *g),
                    None => return Some(Err(Errno::EINVAL)),
                },
                _ => return Some(Err(Errno::EINVAL)),
            };
            let Ok(g) = g.parse::<Gfid>() else {
                return Some(Err(Errno::EINVAL));
            };
            return Some(match self.heal_with(g, Some(choice)).await {
                Ok(HealOutcome::SplitBrain) => Err(Errno::EIO),
                Ok(HealOutcome::Gone) => Err(Errno::ENOENT),
                Ok(_) => Ok(((), Xdata::new())),
                Err(e) => Err(e),
            });
        }
        let v = attrs.get(HEAL_XATTR)?;
        if !xd.has(INTERNAL_XDATA_KEY) {
            return Some(Err(Errno::EPERM));
        }
        let Some(g) = std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        else {
            return Some(Err(Errno::EINVAL));
        };
        Some(match self.heal(g).await {
            Ok(HealOutcome::SplitBrain) => Err(Errno::EIO),
            Ok(HealOutcome::Partial) => Err(Errno::EAGAIN),
            Ok(_) => Ok(((), Xdata::new())),
            Err(e) => Err(e),
        })
    }

    /// Handles the virtual xattrs answered by `getxattr`; `None` when `name` is not one.
    async fn virtual_get(&self, name: Option<&str>, xd: &Xdata) -> Option<Fop<XattrMap>> {
        let name = name?;
        if name != PENDING_XATTR && !name.starts_with(STATUS_XATTR_PREFIX) {
            return None;
        }
        if !xd.has(INTERNAL_XDATA_KEY) {
            return Some(Err(Errno::ENODATA));
        }
        let value = if name == PENDING_XATTR {
            self.pending_list().await
        } else {
            match name[STATUS_XATTR_PREFIX.len()..].parse::<Gfid>() {
                Ok(g) => self.status(g).await,
                Err(_) => return Some(Err(Errno::EINVAL)),
            }
        };
        Some(value.map(|v| {
            let mut m = XattrMap::new();
            m.insert(name.to_string(), v.into_bytes());
            (m, Xdata::new())
        }))
    }
}

#[async_trait::async_trait]
impl Xlator for Replicate {
    fn name(&self) -> &str {
        &self.name
    }

    fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    /// Ends every shared transaction left open for a next change (eager locking) and waits
    /// for the post-ops running after their answers, while the bricks are still there
    /// (the graph goes down top first): a clean unmount leaves no counter raised.
    async fn fini(&self) {
        let inodes: Vec<Arc<Inode>> = self.inodes.lock().values().cloned().collect();
        for ino in inodes {
            for kind in [Kind::Data, Kind::Metadata, Kind::Entry] {
                self.end_if_idle(kind, &ino).await;
            }
        }
        let mut rx = self.finishing.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|n| *n == 0)).await;
    }

    async fn notify(&self, from: &str, event: Event) -> Option<Event> {
        let idx = self.children.iter().position(|c| c.name() == from);
        let (Some(i), up) = (
            idx,
            match &event {
                Event::ChildUp(_) => true,
                Event::ChildDown(_) => false,
                _ => return Some(event),
            },
        ) else {
            return Some(event);
        };
        let any_up = {
            let mut st = self.state.lock();
            let was = st[i];
            st[i] = Some(up);
            if up && was != Some(true) {
                // What was known of every inode's copies may be stale now.
                self.gen.fetch_add(1, Ordering::AcqRel);
            }
            if !up {
                self.ever_down.lock()[i] = true;
                tracing::warn!(
                    "{}: replica {from} is down; changes are counted as pending for it",
                    self.name
                );
            } else if was == Some(false) {
                tracing::info!("{}: replica {from} is back", self.name);
                if self.cfg().heal_on_reconnect {
                    self.sweep();
                }
            }
            if st.iter().any(Option::is_none) {
                // Until every replica has said something, the set is up only once the
                // replicas up make a quorum: a mount announced with one of three replicas
                // connected would refuse its first changes (EROFS) while the others are
                // still handshaking.
                let ups: Vec<usize> = (0..st.len()).filter(|&j| st[j] == Some(true)).collect();
                if !up || !self.has_quorum(&ups) {
                    return None;
                }
            }
            st.contains(&Some(true))
        };
        let mut last = self.announced.lock();
        if *last == Some(any_up) {
            return None;
        }
        *last = Some(any_up);
        Some(if any_up {
            Event::ChildUp(self.name.clone())
        } else {
            Event::ChildDown(self.name.clone())
        })
    }

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        *self.cfg.write() = config(options)?;
        Ok(())
    }

    fn dump(&self) -> String {
        let st = self.state.lock().clone();
        let mut out = String::new();
        for (c, s) in self.children.iter().zip(st) {
            out.push_str(&format!(
                "replica {} {}\n",
                c.name(),
                match s {
                    None => "unknown",
                    Some(true) => "up",
                    Some(false) => "down",
                }
            ));
        }
        if let Some(a) = self.arbiter {
            out.push_str(&format!("arbiter {}\n", self.names[a]));
        }
        out.push_str(&format!(
            "config {:?}\ninodes {}\nhealing {}\n{}",
            self.cfg(),
            self.inodes.lock().len(),
            self.healing.lock().len(),
            self.stats.dump()
        ));
        out
    }

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, mut xd: Xdata) -> Fop<Iatt> {
        let content = xd.0.remove(QUICK_READ_KEY);
        let hint = xd.0.remove(NAME_HINT_KEY);
        if let (Some(max), Some(g), None) = (content, loc.gfid, &loc.name) {
            // A quick-read content lookup of a file by gfid: one good copy answers, as a
            // read would (the copies are judged as for reads).
            let r = self
                .read_fop(g, |_, c| {
                    let mut xd = Xdata::new();
                    xd.set(QUICK_READ_KEY, max.clone());
                    // Every copy has the same names; the brick checks the hint.
                    if let Some(h) = &hint {
                        xd.set(NAME_HINT_KEY, h.clone());
                    }
                    async move { c.lookup(ctx, loc, xd).await }
                })
                .await;
            if let Ok((ia, mut rxd)) = r {
                if !ia.is_dir() && ia.gfid == g {
                    let mut out = Xdata::new();
                    if let Some(c) = rxd.0.remove(QUICK_READ_CONTENT_KEY) {
                        out.0.insert(QUICK_READ_CONTENT_KEY.to_string(), c);
                    }
                    return Ok((ia, out));
                }
            }
        }
        self.do_lookup(ctx, loc, xd, false).await
    }

    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let g = Self::gfid_of(loc)?;
        self.read_fop(g, |_, c| {
            let xd = xd.clone();
            async move { c.stat(ctx, loc, xd).await }
        })
        .await
    }

    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        self.read_fop(fd.gfid, |_, c| {
            let xd = xd.clone();
            async move { c.fstat(ctx, fd, xd).await }
        })
        .await
    }

    async fn access(&self, ctx: &Ctx, loc: &Loc, mask: u32, xd: Xdata) -> Fop<()> {
        let g = Self::gfid_of(loc)?;
        self.read_fop(g, |_, c| {
            let xd = xd.clone();
            async move { c.access(ctx, loc, mask, xd).await }
        })
        .await
    }

    async fn readlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<std::path::PathBuf> {
        let g = Self::gfid_of(loc)?;
        self.read_fop(g, |_, c| {
            let xd = xd.clone();
            async move { c.readlink(ctx, loc, xd).await }
        })
        .await
    }

    async fn statfs(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<StatVfs> {
        let up = self.up();
        let mut last = Errno::ENOTCONN;
        for i in up {
            match self.children[i].statfs(ctx, loc, xd.clone()).await {
                Err(e) if e == Errno::ENOTCONN => last = e,
                r => return r,
            }
        }
        Err(last)
    }

    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let g = Self::gfid_of(loc)?;
        let kind = if attr.size.is_some() {
            Kind::Data
        } else {
            Kind::Metadata
        };
        self.txn(g, kind, None, |_, c| {
            let xd = xd.clone();
            async move { c.setattr(ctx, loc, attr, xd).await }
        })
        .await
    }

    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let kind = if attr.size.is_some() {
            Kind::Data
        } else {
            Kind::Metadata
        };
        self.txn(fd.gfid, kind, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.fsetattr(ctx, fd, attr, xd).await }
        })
        .await
    }

    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        let g = Self::gfid_of(loc)?;
        self.txn(g, Kind::Data, None, |_, c| {
            let xd = xd.clone();
            async move { c.truncate(ctx, loc, size, xd).await }
        })
        .await
    }

    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        self.txn(fd.gfid, Kind::Data, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.ftruncate(ctx, fd, size, xd).await }
        })
        .await
    }

    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        // A directory lease is asked of every replica and granted only when each leased
        // its copy: another client reaches the directory through any of them, and the one
        // it reaches recalls the lease (each brick's recall reaches the holder).
        let mut xd = xd;
        if !self.cfg().lease_dirs {
            xd.0.remove(weft_core::LEASE_KEY);
        }
        let lease = xd.has(weft_core::LEASE_KEY);
        let leased = AtomicUsize::new(0);
        let under_lease = take_leased(&mut xd);
        let xd = with_gfid_req(xd);
        let made = self.made_on(&xd);
        let mut r = self
            .entry_txn(&[loc], under_lease, |i, c| {
                let (xd, leased, made) = (xd.clone(), &leased, &made);
                async move {
                    let r = c.mkdir(ctx, loc, mode, umask, xd).await;
                    if matches!(&r, Ok((_, rxd)) if rxd.has(weft_core::LEASE_KEY)) {
                        leased.fetch_add(1, Ordering::Relaxed);
                    }
                    made.record(i, &r);
                    r
                }
            })
            .await;
        self.learn_made(&r, made);
        if let Ok((_, rxd)) = &mut r {
            rxd.0.remove(weft_core::LEASE_KEY);
            if lease && leased.load(Ordering::Relaxed) == self.n() {
                rxd.set(weft_core::LEASE_KEY, Vec::new());
            }
        }
        r
    }

    async fn rmdir(&self, ctx: &Ctx, loc: &Loc, mut xd: Xdata) -> Fop<()> {
        let leased = take_leased(&mut xd);
        let r = self
            .entry_txn(&[loc], leased, |_, c| {
                let xd = xd.clone();
                async move { c.rmdir(ctx, loc, xd).await }
            })
            .await;
        if let (Ok(_), Some(g)) = (&r, loc.gfid) {
            self.forget_inode(g);
        }
        r
    }

    async fn unlink(&self, ctx: &Ctx, loc: &Loc, mut xd: Xdata) -> Fop<()> {
        let leased = take_leased(&mut xd);
        self.entry_txn(&[loc], leased, |_, c| {
            let xd = xd.clone();
            async move { c.unlink(ctx, loc, xd).await }
        })
        .await
    }

    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, mut xd: Xdata) -> Fop<()> {
        let leased = take_leased(&mut xd);
        self.entry_txn(&[old, new], leased, |_, c| {
            let xd = xd.clone();
            async move { c.rename(ctx, old, new, flags, xd).await }
        })
        .await
    }

    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, mut xd: Xdata) -> Fop<Iatt> {
        let leased = take_leased(&mut xd);
        self.entry_txn(&[new], leased, |_, c| {
            let xd = xd.clone();
            async move { c.link(ctx, old, new, xd).await }
        })
        .await
    }

    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &std::path::Path,
        loc: &Loc,
        umask: u32,
        mut xd: Xdata,
    ) -> Fop<Iatt> {
        let leased = take_leased(&mut xd);
        let xd = with_gfid_req(xd);
        let made = self.made_on(&xd);
        let r = self
            .entry_txn(&[loc], leased, |i, c| {
                let (xd, made) = (xd.clone(), &made);
                async move {
                    let r = c.symlink(ctx, target, loc, umask, xd).await;
                    made.record(i, &r);
                    r
                }
            })
            .await;
        self.learn_made(&r, made);
        r
    }

    async fn mknod(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        mut xd: Xdata,
    ) -> Fop<Iatt> {
        let leased = take_leased(&mut xd);
        let xd = with_gfid_req(xd);
        let made = self.made_on(&xd);
        let r = self
            .entry_txn(&[loc], leased, |i, c| {
                let (xd, made) = (xd.clone(), &made);
                async move {
                    let r = c.mknod(ctx, loc, mode, rdev, umask, xd).await;
                    made.record(i, &r);
                    r
                }
            })
            .await;
        self.learn_made(&r, made);
        r
    }

    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let g = Self::gfid_of(loc)?;
        let st = self.fd_state(fd);
        if fd.flags & libc::O_TRUNC != 0 {
            // Truncating on open changes the data: a transaction like any write.
            let r = self
                .txn(g, Kind::Data, None, |i, c| {
                    let (xd, st) = (xd.clone(), st.clone());
                    async move {
                        let r = c.open(ctx, loc, fd, xd).await;
                        if r.is_ok() {
                            st.open.lock()[i] = true;
                        }
                        r
                    }
                })
                .await;
            return r;
        }
        // Open where the data is good first, so a bad copy cannot fail the open.
        self.readable(g).await?;
        let up = self.up();
        let rs = self
            .each(&up, |_, c| {
                let xd = xd.clone();
                async move { c.open(ctx, loc, fd, xd).await }
            })
            .await;
        {
            let mut o = st.open.lock();
            for (i, r) in &rs {
                if r.is_ok() {
                    o[*i] = true;
                }
            }
        }
        Self::first_ok(rs)
    }

    async fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        mut xd: Xdata,
    ) -> Fop<Iatt> {
        let leased = take_leased(&mut xd);
        // Not asked of a create with content either: each copy has its own times (as
        // for a write).
        xd.0.remove(POSTSTAT_KEY);
        let xd = with_gfid_req(xd);
        let st = self.fd_state(fd);
        let made = self.made_on(&xd);
        // With content: answered as written only if every brick that made the file wrote
        // it (else the caller writes it again, through a data transaction).
        let content = xd.has(CREATE_CONTENT_KEY);
        let (written, unwritten) = (AtomicBool::new(false), AtomicBool::new(false));
        // From under a lease the new file is private and its writes follow: its create
        // also takes its data lock and does its data pre-op on each brick. Not when it
        // carries its content: that is in the create itself, which the directory's entry
        // transaction covers (a brick that missed it gets the file, content and all, from
        // entry heal; one that made it without writing it all gets the bytes again as a
        // write), and a small file is mostly written at once.
        let data = (leased && !content && self.arbiter.is_none() && self.cfg().eager_lock)
            .then(|| self.create_data_txn());
        let mut r = self
            .entry_txn(&[loc], leased, |i, c| {
                let (mut xd, st, made) = (xd.clone(), st.clone(), &made);
                if let Some(d) = &data {
                    d.ask(&self.names, i, &mut xd);
                }
                // An arbiter keeps no data.
                let content = content && self.holds_data(i);
                if !content {
                    xd.0.remove(CREATE_CONTENT_KEY);
                }
                let (written, unwritten) = (&written, &unwritten);
                async move {
                    let r = c.create(ctx, loc, fd, mode, umask, xd).await;
                    if let Ok((_, rxd)) = &r {
                        st.open.lock()[i] = true;
                        if content {
                            match rxd.has(CREATE_CONTENT_KEY) {
                                true => written.store(true, Ordering::Release),
                                false => unwritten.store(true, Ordering::Release),
                            }
                        }
                    }
                    made.record(i, &r);
                    r
                }
            })
            .await;
        let (want, prepared) = (made.want, std::mem::take(&mut *made.prepared.lock()));
        self.learn_made(&r, made);
        if let Some(d) = data {
            let want = want.filter(|_| r.is_ok());
            self.adopt_created(want, d, prepared).await;
        }
        if let Ok((_, rxd)) = &mut r {
            rxd.0.remove(WITH_INODELK_KEY);
            rxd.0.remove(WITH_XATTROP_DONE_KEY);
            rxd.0.remove(POSTSTAT_KEY);
            rxd.0.remove(CREATE_CONTENT_KEY);
            if written.load(Ordering::Acquire) && !unwritten.load(Ordering::Acquire) {
                rxd.set(CREATE_CONTENT_KEY, Vec::new());
            }
        }
        r
    }

    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        self.read_fd(fd, |c| {
            let xd = xd.clone();
            async move { c.readv(ctx, fd, size, offset, xd).await }
        })
        .await
    }

    async fn writev(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        data: Bytes,
        offset: u64,
        mut xd: Xdata,
    ) -> Fop<u64> {
        // Not asked of a write: each copy has its own times, and a write is a transaction
        // (flush, fsync and release answer the readable copy's).
        xd.0.remove(POSTSTAT_KEY);
        self.txn(fd.gfid, Kind::Data, Some(fd), |_, c| {
            let (xd, data) = (xd.clone(), data.clone());
            async move { c.writev(ctx, fd, data, offset, xd).await }
        })
        .await
    }

    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        // Attributes asked for: the readable copy's (a copy may be behind), after the
        // post-op of the writes before (it changes the copies' ctime).
        let asked = xd.has(POSTSTAT_KEY);
        if asked {
            self.end_idle(fd.gfid).await;
        }
        let open: Vec<usize> = {
            let st = self.fd_state(fd);
            let o = st.open.lock();
            (0..self.n()).filter(|&i| o[i]).collect()
        };
        let rs = self
            .each(&open, |_, c| {
                let xd = xd.clone();
                async move { c.flush(ctx, fd, xd).await }
            })
            .await;
        self.first_ok_with_poststat(fd.gfid, asked, rs).await
    }

    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let asked = xd.has(POSTSTAT_KEY);
        if asked {
            self.end_idle(fd.gfid).await;
        }
        // Not a change: every copy that holds good data makes it durable; a copy that
        // fails is behind already (its write failed) or down.
        let up = self.up();
        let open = self.ensure_open(fd, &up).await;
        let rs = self
            .each(&open, |_, c| {
                let xd = xd.clone();
                async move { c.fsync(ctx, fd, datasync, xd).await }
            })
            .await;
        let ok: Vec<usize> = rs
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        for (i, r) in &rs {
            if let Err(e) = r {
                if *e != Errno::ENOTCONN {
                    tracing::warn!("{}: fsync on {} failed: {e:?}", self.name, self.names[*i]);
                }
            }
        }
        if !ok.is_empty() && !self.has_quorum(&ok) && !fd.is_dir {
            return Err(Errno::EROFS);
        }
        self.first_ok_with_poststat(fd.gfid, asked, rs).await
    }

    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let st = self.fd_state(fd);
        let open: Vec<usize> = {
            let o = st.open.lock();
            (0..self.n()).filter(|&i| o[i]).collect()
        };
        let asked = xd.has(POSTSTAT_KEY);
        if asked {
            // The data transaction ends with the release itself (below).
            self.end_if_idle(Kind::Metadata, &self.inode(fd.gfid)).await;
        }
        let rs = self.release_ending_data(ctx, fd, &open, &xd).await;
        fd.take_ctx::<FdState>(&self.name);
        let post = if asked {
            self.first_ok_with_poststat(fd.gfid, true, rs)
                .await
                .ok()
                .and_then(|(_, xd)| xd.get(POSTSTAT_KEY).map(<[u8]>::to_vec))
        } else {
            None
        };
        let mut out = Xdata::new();
        if let Some(p) = post {
            out.set(POSTSTAT_KEY, p);
        }
        Ok(((), out))
    }

    async fn fallocate(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        mode: i32,
        offset: u64,
        len: u64,
        xd: Xdata,
    ) -> Fop<()> {
        self.txn(fd.gfid, Kind::Data, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.fallocate(ctx, fd, mode, offset, len, xd).await }
        })
        .await
    }

    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.txn(fd.gfid, Kind::Data, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.discard(ctx, fd, offset, len, xd).await }
        })
        .await
    }

    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.txn(fd.gfid, Kind::Data, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.zerofill(ctx, fd, offset, len, xd).await }
        })
        .await
    }

    async fn seek(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        what: SeekWhat,
        xd: Xdata,
    ) -> Fop<u64> {
        self.read_fd(fd, |c| {
            let xd = xd.clone();
            async move { c.seek(ctx, fd, offset, what, xd).await }
        })
        .await
    }

    async fn rchecksum(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        len: u32,
        xd: Xdata,
    ) -> Fop<Checksum> {
        self.read_fd(fd, |c| {
            let xd = xd.clone();
            async move { c.rchecksum(ctx, fd, offset, len, xd).await }
        })
        .await
    }

    async fn opendir(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let g = Self::gfid_of(loc)?;
        self.readable(g).await?;
        let st = self.fd_state(fd);
        let up = self.up();
        let rs = self
            .each(&up, |_, c| {
                let xd = xd.clone();
                async move { c.opendir(ctx, loc, fd, xd).await }
            })
            .await;
        {
            let mut o = st.open.lock();
            for (i, r) in &rs {
                if r.is_ok() {
                    o[*i] = true;
                }
            }
        }
        Self::first_ok(rs)
    }

    async fn readdir(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let i = self.dir_reader(fd).await?;
        self.children[i].readdir(ctx, fd, size, offset, xd).await
    }

    async fn readdirp(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        mut xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        // One copy's xattrs are not the files' (that copy may be behind): not asked.
        xd.0.remove(READDIRP_XATTRS_KEY);
        let i = self.dir_reader(fd).await?;
        let (mut ents, x) = self.children[i].readdirp(ctx, fd, size, offset, xd).await?;
        if self.ever_down.lock()[i] || !self.holds_data(i) {
            // A replica that was down may hold stale attributes of files not healed yet,
            // and an arbiter's files are empty: let the kernel look them up (through a
            // good data copy) instead.
            for e in &mut ents {
                e.iatt = None;
            }
        }
        Ok((ents, x))
    }

    async fn fsyncdir(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let up = self.up();
        let open = self.ensure_open(fd, &up).await;
        let rs = self
            .each(&open, |_, c| {
                let xd = xd.clone();
                async move { c.fsyncdir(ctx, fd, datasync, xd).await }
            })
            .await;
        Self::first_ok(rs)
    }

    async fn releasedir(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.release(ctx, fd, xd).await
    }

    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        if let Some(r) = self.virtual_get(name, &xd).await {
            return r;
        }
        let g = Self::gfid_of(loc)?;
        self.read_fop(g, |_, c| {
            let xd = xd.clone();
            async move { c.getxattr(ctx, loc, name, xd).await }
        })
        .await
        .map(|(m, x)| (strip_changelogs(m), x))
    }

    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        if let Some(r) = self.virtual_get(name, &xd).await {
            return r;
        }
        self.read_fd(fd, |c| {
            let xd = xd.clone();
            async move { c.fgetxattr(ctx, fd, name, xd).await }
        })
        .await
        .map(|(m, x)| (strip_changelogs(m), x))
    }

    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        if let Some(r) = self.virtual_set(attrs, &xd).await {
            return r;
        }
        let g = Self::gfid_of(loc)?;
        self.txn(g, Kind::Metadata, None, |_, c| {
            let xd = xd.clone();
            async move { c.setxattr(ctx, loc, attrs, flags, xd).await }
        })
        .await
    }

    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        if let Some(r) = self.virtual_set(attrs, &xd).await {
            return r;
        }
        self.txn(fd.gfid, Kind::Metadata, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.fsetxattr(ctx, fd, attrs, flags, xd).await }
        })
        .await
    }

    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        let g = Self::gfid_of(loc)?;
        self.txn(g, Kind::Metadata, None, |_, c| {
            let xd = xd.clone();
            async move { c.removexattr(ctx, loc, name, xd).await }
        })
        .await
    }

    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        self.txn(fd.gfid, Kind::Metadata, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.fremovexattr(ctx, fd, name, xd).await }
        })
        .await
    }

    async fn xattrop(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let g = Self::gfid_of(loc)?;
        self.txn(g, Kind::Metadata, None, |_, c| {
            let xd = xd.clone();
            async move { c.xattrop(ctx, loc, op, attrs, xd).await }
        })
        .await
    }

    async fn fxattrop(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.txn(fd.gfid, Kind::Metadata, Some(fd), |_, c| {
            let xd = xd.clone();
            async move { c.fxattrop(ctx, fd, op, attrs, xd).await }
        })
        .await
    }

    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        let up = self.up();
        let open = self.ensure_open(fd, &up).await;
        if cmd == LkCmd::Get {
            let mut last = Errno::ENOTCONN;
            for i in open {
                match self.children[i].lk(ctx, fd, cmd, lock, xd.clone()).await {
                    Err(e) if e == Errno::ENOTCONN || e == Errno::EBADF => last = e,
                    r => return r,
                }
            }
            return Err(last);
        }
        if lock.kind == LockType::Unlock {
            let rs = self
                .each(&open, |_, c| {
                    let xd = xd.clone();
                    async move { c.lk(ctx, fd, cmd, lock, xd).await }
                })
                .await;
            return Self::first_ok(rs);
        }
        // Taken on every replica in order (so two clients cannot each hold a part); a
        // conflict anywhere gives back what was taken.
        let mut taken = Vec::new();
        let mut answer = None;
        for i in open {
            match self.children[i].lk(ctx, fd, cmd, lock, xd.clone()).await {
                Ok(v) => {
                    taken.push(i);
                    answer.get_or_insert(v);
                }
                Err(e) if e == Errno::ENOTCONN || e == Errno::EBADF => {}
                Err(e) => {
                    let un = Flock {
                        kind: LockType::Unlock,
                        ..*lock
                    };
                    let _ = self
                        .each(&taken, |_, c| {
                            let xd = xd.clone();
                            async move { c.lk(ctx, fd, LkCmd::Set, &un, xd).await }
                        })
                        .await;
                    return Err(e);
                }
            }
        }
        answer.ok_or(Errno::ENOTCONN)
    }

    async fn inodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        let mut last = Err(Errno::ENOTCONN);
        let mut granted: Vec<usize> = Vec::new();
        for i in self.up() {
            let r = self.children[i]
                .inodelk(ctx, domain, loc, cmd, lock, xd.clone())
                .await;
            match r {
                Err(e) if e == Errno::ENOTCONN => {}
                Err(e) => {
                    // Not held after all: what the copies before granted is given back,
                    // or it would stay held until their connections go.
                    if lock.kind != LockType::Unlock && cmd != LkCmd::Get {
                        let undo = Flock {
                            kind: LockType::Unlock,
                            ..*lock
                        };
                        for j in granted {
                            let _ = self.children[j]
                                .inodelk(ctx, domain, loc, LkCmd::Set, &undo, Xdata::new())
                                .await;
                        }
                    }
                    return Err(e);
                }
                ok => {
                    granted.push(i);
                    last = ok;
                }
            }
        }
        last
    }

    async fn finodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        fd: &FdRef,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        let loc = Loc::inode(fd.gfid);
        self.inodelk(ctx, domain, &loc, cmd, lock, xd).await
    }

    async fn entrylk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        basename: Option<&OsString>,
        cmd: EntrylkCmd,
        kind: EntrylkType,
        xd: Xdata,
    ) -> Fop<()> {
        let mut last = Err(Errno::ENOTCONN);
        for i in self.up() {
            let r = self.children[i]
                .entrylk(ctx, domain, loc, basename, cmd, kind, xd.clone())
                .await;
            match r {
                Err(e) if e == Errno::ENOTCONN => {}
                Err(e) => return Err(e),
                ok => last = ok,
            }
        }
        last
    }
}

impl Replicate {
    /// The child a directory's listing comes from: a good copy that has not been down
    /// since this graph started when there is one (its attributes are current).
    async fn dir_reader(&self, fd: &FdRef) -> Result<usize, Errno> {
        let order = self.readable(fd.gfid).await?;
        let open = self.ensure_open(fd, &order).await;
        let down = self.ever_down.lock().clone();
        open.iter()
            .copied()
            .find(|&i| !down[i] && self.holds_data(i))
            .or_else(|| open.iter().copied().find(|&i| !down[i]))
            .or_else(|| open.first().copied())
            .ok_or(Errno::ENOTCONN)
    }
}

/// Makes sure a creating call carries a gfid, so every replica gives the new inode the
/// same one.
/// Whether a change comes from under its directory's lease ([`weft_core::LEASED_DIR_KEY`]);
/// the key goes no further down.
fn take_leased(xd: &mut Xdata) -> bool {
    xd.0.remove(weft_core::LEASED_DIR_KEY).is_some()
}

fn with_gfid_req(mut xd: Xdata) -> Xdata {
    if xd.get_gfid(GFID_REQ_KEY).is_none() {
        xd.set(GFID_REQ_KEY, Gfid::for_new_inode().0.to_vec());
    }
    xd
}

/// Drops changelog xattrs from an answer (they are this translator's own).
fn strip_changelogs(mut m: XattrMap) -> XattrMap {
    m.retain(|k, _| !k.starts_with(PENDING_PREFIX));
    m
}

/// The `cluster/replicate` translator type.
pub struct ReplicateType;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "quorum-type",
        kind: OptionKind::Enum(&["none", "auto", "fixed"]),
        default: Some("auto"),
        description: "When changes are allowed: auto (more than half the replicas up, or exactly half including the first), fixed (quorum-count up) or none (any one). Without quorum, changes fail with EROFS; reads go on.",
    },
    OptionSpec {
        key: "quorum-count",
        kind: OptionKind::Int { min: 0, max: 64 },
        default: Some("0"),
        description: "Replicas that must be up for changes when quorum-type is fixed.",
    },
    OptionSpec {
        key: "favorite-child-policy",
        kind: OptionKind::Enum(&["none", "size", "mtime", "ctime", "majority"]),
        default: Some("none"),
        description: "Resolves split-brain automatically: the biggest copy, the latest mtime or ctime, or the copy most others agree with wins; none leaves it to `volume heal VOL split-brain`.",
    },
    OptionSpec {
        key: "eager-lock",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "Writes in flight together share one lock and one changelog update per replica.",
    },
    OptionSpec {
        key: "post-op-delay",
        kind: OptionKind::Duration,
        default: Some("5ms"),
        description: "How long a file's lock and changelog stay held after its last write, for the next write to share (with eager-lock). Another client's writes to the file wait at most this long.",
    },
    OptionSpec {
        key: "arbiter-count",
        kind: OptionKind::Int { min: 0, max: 1 },
        default: Some("0"),
        description: "1: the last subvolume is an arbiter (its brick runs features/arbiter), holding names and metadata but no file data; needs three subvolumes. It is fixed when the graph is built.",
    },
    OptionSpec {
        key: "self-heal-daemon",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "Whether the pool's self-heal daemon heals this volume (mgmtd reads it; the translator only carries it).",
    },
    OptionSpec {
        key: "lease-directories",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "A mkdir asking for a directory lease (performance/entry-behind's) asks every replica and is granted one when each leased its copy; off: the request is removed and entry-behind sends every change through.",
    },
    OptionSpec {
        key: "self-heal-on-reconnect",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "When a replica comes back, this client heals everything the other replicas' indexes list (for graphs without a pool's self-heal daemon; mgmtd's daemon does it for pool volumes).",
    },
    OptionSpec {
        key: "self-heal-on-access",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "A lookup that finds pending changes heals the file in the background (GlusterFS's data/metadata/entry-self-heal).",
    },
];

impl XlatorType for ReplicateType {
    fn type_name(&self) -> &'static str {
        "cluster/replicate"
    }
    fn description(&self) -> &'static str {
        "Keeps every file on every subvolume (a replica set), with quorum, changelogs and self-heal."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (2, 16)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let cfg = config(&init.options)?;
        let arbiter = match init.options.int("arbiter-count") {
            0 => None,
            _ if init.children.len() != 3 => {
                return Err(format!(
                    "arbiter-count 1 needs exactly 3 subvolumes (2 for data, 1 arbiter), not {}",
                    init.children.len()
                ))
            }
            _ => Some(2),
        };
        Ok(Replicate::new(init.name, init.children, cfg, arbiter))
    }
}
