//! `performance/entry-behind`: makes and removes names without waiting for the brick, in
//! directories this client holds a lease on, as CephFS's asynchronous directory
//! operations do. It sits in the client graph just above the bricks' side (under
//! write-behind).
//!
//! - **Leases.** Every `mkdir` through it asks for a lease on the new directory
//!   ([`LEASE_KEY`]); a brick grants it when no other client knows the directory (see
//!   `features/upcall`). While the lease holds, no other client can learn anything in the
//!   directory without the brick first recalling the lease ([`Invalidation::Recall`]) and
//!   waiting for this client. A leased directory was empty when it was made, and every
//!   change of its names went through this client, so the names it holds are known here
//!   exactly, and every inode under them was made here (*private*: nobody else knows it).
//! - **Behind.** In a leased directory, `create`, `mkdir` and `symlink` (a target of at
//!   most 59 bytes) of a name it does not hold, `unlink` of a private non-directory,
//!   `rmdir` of a private directory it knows empty, and `rename` of a private inode within
//!   the directory (over nothing, or over a private non-directory) are answered at once, with
//!   the attributes the brick will give (the gfid the caller proposed, its owner, mode
//!   after umask, the times of this client's clock; a new directory has the size of the
//!   first one the brick made), and sent down in the background. A new directory is
//!   leased too. A create's answer carries [`PRIVATE_KEY`], so write-behind above can
//!   answer its close without waiting for its writes. What goes down carries
//!   [`LEASED_DIR_KEY`], so replication below may let a burst share one transaction.
//! - **A new file's content with its create.** A create behind waits up to [`HOLD`] before
//!   it goes down. The file's first write, when it comes meanwhile, starts the file, is at
//!   most [`MAX_CREATE_CONTENT`] bytes, asks nothing but the attributes after it, and its
//!   fd does not write through, goes down with it ([`CREATE_CONTENT_KEY`]), and is
//!   answered by the create's answer; a brick that did not write it gets it as a write,
//!   before anything that waits for the create. Anything that waits for a change behind
//!   sends every held create first.
//! - **Order.** A change behind waits, before it goes down, for the earlier ones on the
//!   same names and inodes (and for its directory's own `mkdir`; an `rmdir` for every
//!   change made before it); others go down together.
//!   Any other FOP naming an inode or directory that a change behind still involves
//!   (lookups in the directory, listings, stats, the new file's writes, fsync, ...) first
//!   waits for every change behind made before it. At most `window` changes are behind;
//!   one beyond it waits for room.
//! - **Recall.** On a recall, the directory is no longer leased here, and the recall's
//!   [`Ack`] is held until every change behind made before it is done, so the client
//!   that asked sees them all. `All`, `ChildUp` and `ChildDown` forget every lease (the
//!   brick forgets them when the connection goes).
//! - **Anything else in a leased directory** (a mknod, link, a longer symlink, an rmdir
//!   of a directory not known empty, a rename across directories, a change of the
//!   directory's own attributes or xattrs) goes through as asked, and the directory is
//!   then no longer used as leased here.
//! - **Failures.** A change behind that the brick refuses after it was answered (no
//!   space, a lost connection) is logged with its name, the directory is no longer used as
//!   leased, and every cache above is told to drop everything (`All`). As with writes
//!   behind, only what `fsync` (of the file, or `fsyncdir` of the directory) covered is
//!   durable: both wait for the changes behind before them.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch, Notify, OwnedSemaphorePermit, Semaphore};
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;

/// The most names remembered over all leased directories; a directory that would grow
/// past it is no longer used as leased (its FOPs go through).
const MAX_NAMES: usize = 200_000;

/// The longest symlink target made behind: what ext4 keeps in the inode itself (no data
/// block, so the attributes answered are exact); longer ones go through.
const SHORT_SYMLINK: usize = 59;

/// The most leased directories used as such; a lease granted beyond it is not used (its
/// directory's FOPs go through).
const MAX_DIRS: usize = 50_000;

/// How long a create behind waits for its file's first write before it goes down alone.
/// The write of a file made and written at once comes in microseconds; anything else that
/// waits for the create sends it at once.
const HOLD: std::time::Duration = std::time::Duration::from_millis(5);

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "enable",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "off: every FOP goes through as asked and no lease is asked for (changes already answered still go down in order). Changes live.",
    },
    OptionSpec {
        key: "window",
        kind: OptionKind::Int { min: 1, max: 65536 },
        default: Some("1024"),
        description: "The most entry changes answered but not yet done by the bricks; one beyond it waits. Changes live.",
    },
];

/// The `performance/entry-behind` type: one subvolume.
pub struct EntryBehindType;

impl XlatorType for EntryBehindType {
    fn type_name(&self) -> &'static str {
        "performance/entry-behind"
    }
    fn description(&self) -> &'static str {
        "Makes, removes and renames names in directories this client holds a lease on without waiting for the bricks."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let window = init.options.int("window") as usize;
        Ok(Arc::new(EntryBehind {
            name: init.name,
            children: init.children,
            events: init.events,
            enabled: AtomicBool::new(init.options.bool("enable")),
            window: Mutex::new(Arc::new(Semaphore::new(window))),
            window_size: AtomicU64::new(window as u64),
            state: Arc::new(Mutex::new(State::default())),
            done: Arc::new(watch::Sender::new(0)),
        }))
    }
}

/// What a change behind is ordered by.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Name(Gfid, Vec<u8>),
    Inode(Gfid),
}

/// A name in a leased directory.
struct Name {
    gfid: Gfid,
    dir: bool,
    /// Made through this client under the lease (else: linked in from elsewhere).
    private: bool,
}

/// A directory this client holds a lease on.
struct Dir {
    /// Its attributes as this client's changes have made them.
    iatt: Iatt,
    /// The attributes of an empty directory the brick made (a new one's size, blocks).
    template: Iatt,
    /// Every name in it.
    names: HashMap<Vec<u8>, Name>,
}

#[derive(Default)]
struct Counters {
    creates: u64,
    /// Creates that carried their file's first write down ([`CREATE_CONTENT_KEY`]).
    with_content: u64,
    mkdirs: u64,
    unlinks: u64,
    renames: u64,
    rmdirs: u64,
    symlinks: u64,
    through: u64,
    waits: u64,
    recalls: u64,
    failures: u64,
    leases: u64,
}

#[derive(Default)]
struct State {
    dirs: HashMap<Gfid, Dir>,
    names: usize,
    /// The next change's number.
    next: u64,
    /// Changes behind not yet done.
    open: BTreeSet<u64>,
    /// Inodes and directories changes behind not yet done involve: how many.
    busy: HashMap<Gfid, u32>,
    /// The last change behind on each key, done when it says `true`.
    last: HashMap<Key, watch::Receiver<bool>>,
    /// Counts recalls and `All`s: a lease granted to a mkdir that went through is used
    /// only if none came while it ran (its recall may have come before its answer).
    recalls: u64,
    /// Creates behind not yet sent down, by the new file's gfid.
    held: HashMap<Gfid, Held>,
    n: Counters,
}

/// A create behind not yet sent down: it waits up to [`HOLD`] for its file's first write
/// to go with it ([`CREATE_CONTENT_KEY`]), and goes at once when anything else waits for
/// it ([`State::send_held`]).
struct Held {
    /// Sends the create now.
    go: Arc<Notify>,
    /// The first write, when it came in time.
    write: Option<JoinedWrite>,
}

/// A write that joined its file's create behind.
struct JoinedWrite {
    data: bytes::Bytes,
    xd: Xdata,
    /// Where its answer goes once the create is done.
    answer: oneshot::Sender<Fop<u64>>,
}

/// One change behind, from when it is answered until it is done.
struct Job {
    seq: u64,
    /// Goes down only once every change made before it is done (an rmdir: whatever
    /// was done inside the directory).
    barrier: bool,
    keys: Vec<Key>,
    busy: Vec<Gfid>,
    waits: Vec<watch::Receiver<bool>>,
    tx: watch::Sender<bool>,
    mine: watch::Receiver<bool>,
}

impl State {
    /// Sends every create held for its first write now: something waits for them.
    fn send_held(&self) {
        for h in self.held.values() {
            h.go.notify_one();
        }
    }

    /// Stops using directory `g` as leased.
    fn forget(&mut self, g: &Gfid) {
        if let Some(d) = self.dirs.remove(g) {
            self.names -= d.names.len();
        }
    }

    fn forget_all(&mut self) {
        self.dirs.clear();
        self.names = 0;
        self.recalls += 1;
    }

    /// Numbers a change on `keys` (waiting also for `after`), involving `busy`.
    fn enqueue(&mut self, keys: Vec<Key>, after: &[Key], busy: Vec<Gfid>) -> Job {
        let seq = self.next;
        self.next += 1;
        self.open.insert(seq);
        let (tx, mine) = watch::channel(false);
        let mut waits: Vec<watch::Receiver<bool>> = after
            .iter()
            .filter_map(|k| self.last.get(k).cloned())
            .collect();
        for k in &keys {
            if let Some(prev) = self.last.insert(k.clone(), mine.clone()) {
                waits.push(prev);
            }
        }
        for g in &busy {
            *self.busy.entry(*g).or_default() += 1;
        }
        Job {
            seq,
            barrier: false,
            keys,
            busy,
            waits,
            tx,
            mine,
        }
    }

    /// `job` is done; returns the new mark (every change numbered below it is done).
    fn finish(&mut self, job: &Job) -> u64 {
        self.open.remove(&job.seq);
        for k in &job.keys {
            if self
                .last
                .get(k)
                .is_some_and(|rx| rx.same_channel(&job.mine))
            {
                self.last.remove(k);
            }
        }
        for g in &job.busy {
            if let Some(n) = self.busy.get_mut(g) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(g);
                }
            }
        }
        self.open.first().copied().unwrap_or(self.next)
    }

    /// Directory `p` leased here and usable for a change of `name` behind.
    fn leased(&mut self, p: Option<Gfid>) -> Option<&mut Dir> {
        self.dirs.get_mut(&p?)
    }
}

/// The time now, as the brick would stamp it (this client's clock).
fn now() -> Timespec {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timespec {
        sec: d.as_secs() as i64,
        nsec: d.subsec_nanos(),
    }
}

/// `dir` changed now: its modification and change times move (never backwards).
fn touch(dir: &mut Iatt) {
    let t = now().max(dir.mtime);
    dir.mtime = t;
    dir.ctime = t.max(dir.ctime);
}

/// The name of an entry `loc`, when a change of it may go behind: the brick refuses
/// names longer than `NAME_MAX` (ENAMETOOLONG), so those go through to be told so.
/// The xdata of a change sent down from under its directory's lease: says so
/// ([`LEASED_DIR_KEY`]), so replication may let a burst share one transaction.
fn leased(mut xd: Xdata) -> Xdata {
    xd.set(LEASED_DIR_KEY, Vec::new());
    xd
}

fn name_of(loc: &Loc) -> Option<Vec<u8>> {
    loc.name
        .as_ref()
        .map(|n| n.as_bytes().to_vec())
        .filter(|n| !n.is_empty() && n.len() <= libc::NAME_MAX as usize)
}

fn with_postparent(dir: &Iatt) -> Xdata {
    let mut xd = Xdata::new();
    xd.set(POSTPARENT_KEY, dir.to_bytes());
    xd
}

/// The inode a new name made behind gets.
#[derive(Clone, Copy)]
enum NewInode {
    /// A regular file of `mode` less `umask`.
    File { mode: u32, umask: u32 },
    /// A directory of `mode` less `umask` (leased here too).
    Dir { mode: u32, umask: u32 },
    /// A symlink with a target of `len` bytes (at most [`SHORT_SYMLINK`]).
    Symlink { len: u64 },
}

/// A new name taken in a leased directory ([`EntryBehind::claim_new_name`]): what the
/// change behind needs to be answered and sent down.
struct NewName {
    permit: OwnedSemaphorePermit,
    /// The leased directory.
    parent: Gfid,
    /// The attributes answered for the new inode (its gfid the one the caller proposed).
    iatt: Iatt,
    /// The directory's attributes after the change.
    post: Iatt,
    job: Job,
    /// The new directory is leased here: its mkdir must ask the brick for the lease.
    leased: bool,
}

/// The brick's answer to a change behind that makes inode `g`: its xdata when the name
/// now holds `g`, else what went wrong.
fn made(r: Fop<Iatt>, g: Gfid) -> Result<Xdata, String> {
    match r {
        Ok((ia, rxd)) if ia.gfid == g => Ok(rxd),
        Ok((ia, _)) => Err(format!("the name holds another inode ({})", ia.gfid)),
        Err(e) => Err(e.to_string()),
    }
}

/// The translator. See the module docs.
pub struct EntryBehind {
    name: String,
    children: Vec<XlatorRef>,
    events: EventSender,
    enabled: AtomicBool,
    window: Mutex<Arc<Semaphore>>,
    window_size: AtomicU64,
    state: Arc<Mutex<State>>,
    /// Every change numbered below this is done.
    done: Arc<watch::Sender<u64>>,
}

impl EntryBehind {
    fn child0(&self) -> &XlatorRef {
        &self.children[0]
    }

    /// Whether `p` is a leased directory here (a cheap look before waiting for room).
    fn may_behind(&self, p: Option<Gfid>) -> bool {
        self.enabled.load(Ordering::Acquire)
            && p.is_some_and(|p| self.state.lock().dirs.contains_key(&p))
    }

    async fn room(&self) -> Option<OwnedSemaphorePermit> {
        let sem = self.window.lock().clone();
        sem.acquire_owned().await.ok()
    }

    /// Waits, when a change behind still involves one of `gfids`, for every change behind
    /// made before now.
    async fn settle(&self, gfids: &[Option<Gfid>]) {
        let upto = {
            let mut st = self.state.lock();
            if st.busy.is_empty() || !gfids.iter().flatten().any(|g| st.busy.contains_key(g)) {
                return;
            }
            st.n.waits += 1;
            st.send_held();
            st.next
        };
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|mark| *mark >= upto).await;
    }

    /// Stops using those of `gfids` that are leased directories as such (something is
    /// about to change them other than behind), then settles them.
    async fn settle_and_forget(&self, gfids: &[Option<Gfid>]) {
        // Forgotten first, so no change behind starts on them while this waits.
        {
            let mut st = self.state.lock();
            for g in gfids.iter().flatten() {
                st.forget(g);
            }
        }
        self.settle(gfids).await;
    }

    /// Holds `ack` until every change behind made so far is done.
    fn hold(&self, ack: Ack) {
        let upto = {
            let st = self.state.lock();
            st.send_held();
            st.next
        };
        let mut rx = self.done.subscribe();
        tokio::spawn(async move {
            let _ = rx.wait_for(|mark| *mark >= upto).await;
            drop(ack);
        });
    }

    /// Sends a change behind down once the changes it waits for are done; `run` returns
    /// what went wrong, if anything. `dir` is the leased directory it changes.
    fn behind<Fut>(&self, job: Job, permit: OwnedSemaphorePermit, dir: Gfid, what: String, run: Fut)
    where
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let (state, done, events) = (self.state.clone(), self.done.clone(), self.events.clone());
        let name = self.name.clone();
        tokio::spawn(async move {
            for mut w in job.waits.iter().cloned() {
                let _ = w.wait_for(|d| *d).await;
            }
            if job.barrier {
                let mut rx = done.subscribe();
                let _ = rx.wait_for(|mark| *mark >= job.seq).await;
            }
            let r = run.await;
            let mark = {
                let mut st = state.lock();
                if r.is_err() {
                    st.n.failures += 1;
                    st.forget(&dir);
                }
                st.finish(&job)
            };
            if let Err(why) = r {
                tracing::error!(
                    "{name}: {what} was answered before the bricks did it, and then failed: {why}; every cache drops what it holds"
                );
                events.send(
                    &name,
                    Event::Upcall(Upcall {
                        client: 0,
                        invalidations: vec![Invalidation::All],
                        ack: Ack::none(),
                    }),
                );
            }
            // Tasks finishing together may publish out of order: the mark only grows.
            done.send_if_modified(|m| {
                let grew = mark > *m;
                if grew {
                    *m = mark;
                }
                grew
            });
            let _ = job.tx.send(true);
            drop(permit);
        });
    }

    /// Takes a new name in a leased directory for a change behind: checks that `loc`'s
    /// parent is leased here and does not hold the name, that there is room in the window
    /// and the name limit, then enters the name, updates the parent's attributes and
    /// numbers the change. `None` (nothing changed) when it must go through.
    async fn claim_new_name(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        xd: &Xdata,
        kind: NewInode,
    ) -> Option<NewName> {
        let (p, name, g) = (loc.parent?, name_of(loc)?, xd.get_gfid(GFID_REQ_KEY)?);
        if g.is_null() || !self.may_behind(Some(p)) {
            return None;
        }
        let permit = self.room().await?;
        let mut st = self.state.lock();
        if st.names >= MAX_NAMES {
            st.forget(&p);
            return None;
        }
        let dir = st.leased(Some(p))?;
        if dir.names.contains_key(&name) {
            return None;
        }
        let template = dir.template;
        let t = now();
        let (mode, nlink, size) = match kind {
            NewInode::File { mode, umask } => (libc::S_IFREG | (mode & !umask & 0o7777), 1, 0),
            NewInode::Dir { mode, umask } => {
                (libc::S_IFDIR | (mode & !umask & 0o7777), 2, template.size)
            }
            NewInode::Symlink { len } => (libc::S_IFLNK | 0o777, 1, len),
        };
        let is_dir = matches!(kind, NewInode::Dir { .. });
        // A new directory has the size and blocks of the first one the brick made; a
        // file or short symlink has no blocks.
        let iatt = Iatt {
            gfid: g,
            ino: g.ino(),
            mode,
            nlink,
            uid: ctx.uid,
            gid: ctx.gid,
            rdev: 0,
            size,
            blocks: if is_dir { template.blocks } else { 0 },
            atime: t,
            mtime: t,
            ctime: t,
            ..template
        };
        dir.names.insert(
            name.clone(),
            Name {
                gfid: g,
                dir: is_dir,
                private: true,
            },
        );
        touch(&mut dir.iatt);
        if is_dir {
            dir.iatt.nlink += 1;
        }
        let post = dir.iatt;
        st.names += 1;
        match kind {
            NewInode::File { .. } => st.n.creates += 1,
            NewInode::Dir { .. } => st.n.mkdirs += 1,
            NewInode::Symlink { .. } => st.n.symlinks += 1,
        }
        let leased = is_dir && st.dirs.len() < MAX_DIRS;
        if leased {
            st.dirs.insert(
                g,
                Dir {
                    iatt,
                    template,
                    names: HashMap::new(),
                },
            );
        }
        let job = st.enqueue(
            vec![Key::Name(p, name), Key::Inode(g)],
            &[Key::Inode(p)],
            vec![p, g],
        );
        Some(NewName {
            permit,
            parent: p,
            iatt,
            post,
            job,
            leased,
        })
    }

    /// A create in a leased directory, answered here: `Err(xd)` gives the xdata back when
    /// it must go through.
    async fn create_behind(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        xd: Xdata,
    ) -> Result<Fop<Iatt>, Xdata> {
        if xd.get_gfid(GFID_REQ_KEY) != Some(fd.gfid) {
            return Err(xd);
        }
        let Some(n) = self
            .claim_new_name(ctx, loc, &xd, NewInode::File { mode, umask })
            .await
        else {
            return Err(xd);
        };
        let g = n.iatt.gfid;
        let go = Arc::new(Notify::new());
        let state = self.state.clone();
        state.lock().held.insert(
            g,
            Held {
                go: go.clone(),
                write: None,
            },
        );
        let (child, ctx, loc, fd) = (self.child0().clone(), ctx.clone(), loc.clone(), fd.clone());
        let what = format!("the create of {}", loc.describe());
        self.behind(n.job, n.permit, n.parent, what, async move {
            tokio::select! {
                _ = go.notified() => {}
                _ = tokio::time::sleep(HOLD) => {}
            }
            let write = {
                let mut st = state.lock();
                let write = st.held.remove(&g).and_then(|h| h.write);
                st.n.with_content += u64::from(write.is_some());
                write
            };
            let mut xd = leased(xd);
            if let Some(w) = &write {
                xd.set(CREATE_CONTENT_KEY, w.data.to_vec());
                if w.xd.has(POSTSTAT_KEY) {
                    xd.set(POSTSTAT_KEY, Vec::new());
                }
            }
            let r = child.create(&ctx, &loc, &fd, mode, umask, xd).await;
            let Some(w) = write else {
                return made(r, g).map(drop);
            };
            let answer = match &r {
                Ok((ia, rxd)) if ia.gfid == g && rxd.has(CREATE_CONTENT_KEY) => {
                    let mut out = Xdata::new();
                    if let Some(post) = rxd.get(POSTSTAT_KEY).filter(|_| w.xd.has(POSTSTAT_KEY)) {
                        out.set(POSTSTAT_KEY, post.to_vec());
                    }
                    Ok((w.data.len() as u64, out))
                }
                // Made, but the bytes are not all there: written as asked, still before
                // anything waiting for this create.
                Ok((ia, _)) if ia.gfid == g => child.writev(&ctx, &fd, w.data, 0, w.xd).await,
                Ok(_) => Err(Errno::EIO),
                Err(e) => Err(*e),
            };
            let _ = w.answer.send(answer);
            made(r, g).map(drop)
        });
        let mut out = with_postparent(&n.post);
        out.set(PRIVATE_KEY, Vec::new());
        Ok(Ok((n.iatt, out)))
    }

    /// The first write of a file whose create is still held here goes down with it when it
    /// starts the file (offset 0, at most [`MAX_CREATE_CONTENT`] bytes, asking nothing but
    /// the attributes after it) and its fd does not write through: the create is sent now,
    /// and its answer answers the write.
    fn join_create(
        &self,
        fd: &FdRef,
        data: &bytes::Bytes,
        offset: u64,
        xd: &Xdata,
    ) -> Option<oneshot::Receiver<Fop<u64>>> {
        let through = libc::O_SYNC | libc::O_DSYNC | libc::O_DIRECT;
        if offset != 0
            || data.is_empty()
            || data.len() > MAX_CREATE_CONTENT
            || fd.flags & through != 0
            || xd.0.keys().any(|k| k != POSTSTAT_KEY)
        {
            return None;
        }
        let mut st = self.state.lock();
        let held = st.held.get_mut(&fd.gfid).filter(|h| h.write.is_none())?;
        let (tx, rx) = oneshot::channel();
        held.write = Some(JoinedWrite {
            data: data.clone(),
            xd: xd.clone(),
            answer: tx,
        });
        held.go.notify_one();
        Some(rx)
    }

    /// A mkdir in a leased directory, answered here (the new one is leased too).
    async fn mkdir_behind(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        umask: u32,
        mut xd: Xdata,
    ) -> Result<Fop<Iatt>, Xdata> {
        let Some(n) = self
            .claim_new_name(ctx, loc, &xd, NewInode::Dir { mode, umask })
            .await
        else {
            return Err(xd);
        };
        let (g, lease) = (n.iatt.gfid, n.leased);
        if lease {
            xd.set(LEASE_KEY, Vec::new());
        }
        let (child, ctx, loc) = (self.child0().clone(), ctx.clone(), loc.clone());
        let state = self.state.clone();
        let what = format!("the mkdir of {}", loc.describe());
        self.behind(n.job, n.permit, n.parent, what, async move {
            let rxd = made(child.mkdir(&ctx, &loc, mode, umask, leased(xd)).await, g)?;
            if lease && !rxd.has(LEASE_KEY) {
                state.lock().forget(&g);
                return Err("the brick did not lease it".into());
            }
            Ok(())
        });
        Ok(Ok((n.iatt, with_postparent(&n.post))))
    }

    /// An unlink of a private non-directory in a leased directory, answered here.
    async fn unlink_behind(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Result<Fop<()>, Xdata> {
        let (Some(p), Some(name)) = (loc.parent, name_of(loc)) else {
            return Err(xd);
        };
        if !self.may_behind(Some(p)) {
            return Err(xd);
        }
        let Some(permit) = self.room().await else {
            return Err(xd);
        };
        let mut st = self.state.lock();
        let Some(dir) = st.leased(Some(p)) else {
            return Err(xd);
        };
        let g = match dir.names.get(&name) {
            Some(n) if n.private && !n.dir => n.gfid,
            _ => return Err(xd),
        };
        if loc.gfid.is_some_and(|lg| lg != g)
            || xd.get_gfid(UNLINK_GFID_KEY).is_some_and(|x| x != g)
        {
            return Err(xd);
        }
        dir.names.remove(&name);
        touch(&mut dir.iatt);
        let post = dir.iatt;
        st.names -= 1;
        st.n.unlinks += 1;
        let job = st.enqueue(
            vec![Key::Name(p, name), Key::Inode(g)],
            &[Key::Inode(p)],
            vec![p, g],
        );
        drop(st);
        let (child, ctx, loc) = (self.child0().clone(), ctx.clone(), loc.clone());
        let what = format!("the unlink of {}", loc.describe());
        self.behind(job, permit, p, what, async move {
            child
                .unlink(&ctx, &loc, leased(xd))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        Ok(Ok(((), with_postparent(&post))))
    }

    /// An rmdir of a private directory this client knows empty (leased too), in a leased
    /// directory, answered here; it goes down after every change made before it.
    async fn rmdir_behind(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Result<Fop<()>, Xdata> {
        let (Some(p), Some(name)) = (loc.parent, name_of(loc)) else {
            return Err(xd);
        };
        if !self.may_behind(Some(p)) {
            return Err(xd);
        }
        let Some(permit) = self.room().await else {
            return Err(xd);
        };
        let mut st = self.state.lock();
        let c = match st.leased(Some(p)).and_then(|d| d.names.get(&name)) {
            Some(n) if n.private && n.dir => n.gfid,
            _ => return Err(xd),
        };
        if loc.gfid.is_some_and(|g| g != c) || !st.dirs.get(&c).is_some_and(|d| d.names.is_empty())
        {
            return Err(xd);
        }
        st.forget(&c);
        let Some(dir) = st.leased(Some(p)) else {
            return Err(xd);
        };
        dir.names.remove(&name);
        touch(&mut dir.iatt);
        dir.iatt.nlink = dir.iatt.nlink.saturating_sub(1);
        let post = dir.iatt;
        st.names -= 1;
        st.n.rmdirs += 1;
        let mut job = st.enqueue(
            vec![Key::Name(p, name), Key::Inode(c)],
            &[Key::Inode(p)],
            vec![p, c],
        );
        job.barrier = true;
        st.send_held();
        drop(st);
        let (child, ctx, loc) = (self.child0().clone(), ctx.clone(), loc.clone());
        let what = format!("the rmdir of {}", loc.describe());
        self.behind(job, permit, p, what, async move {
            child
                .rmdir(&ctx, &loc, leased(xd))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        Ok(Ok(((), with_postparent(&post))))
    }

    /// A symlink of a new name in a leased directory, answered here. Only short targets
    /// (kept in the inode: no blocks, as on ext4 and xfs).
    async fn symlink_behind(
        &self,
        ctx: &Ctx,
        target: &std::path::Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Result<Fop<Iatt>, Xdata> {
        let len = target.as_os_str().len();
        if len == 0 || len > SHORT_SYMLINK {
            return Err(xd);
        }
        let kind = NewInode::Symlink { len: len as u64 };
        let Some(n) = self.claim_new_name(ctx, loc, &xd, kind).await else {
            return Err(xd);
        };
        let g = n.iatt.gfid;
        let (child, ctx, loc) = (self.child0().clone(), ctx.clone(), loc.clone());
        let target = target.to_path_buf();
        let what = format!("the symlink {}", loc.describe());
        self.behind(n.job, n.permit, n.parent, what, async move {
            made(
                child.symlink(&ctx, &target, &loc, umask, leased(xd)).await,
                g,
            )
            .map(drop)
        });
        Ok(Ok((n.iatt, with_postparent(&n.post))))
    }

    /// A rename of a private inode within one leased directory, answered here.
    async fn rename_behind(
        &self,
        ctx: &Ctx,
        old: &Loc,
        new: &Loc,
        flags: u32,
        xd: Xdata,
    ) -> Result<Fop<()>, Xdata> {
        let (Some(p), Some(from), Some(to)) = (old.parent, name_of(old), name_of(new)) else {
            return Err(xd);
        };
        if flags != 0 || new.parent != Some(p) || from == to || !self.may_behind(Some(p)) {
            return Err(xd);
        }
        let Some(permit) = self.room().await else {
            return Err(xd);
        };
        let mut st = self.state.lock();
        let Some(dir) = st.leased(Some(p)) else {
            return Err(xd);
        };
        let (g, is_dir) = match dir.names.get(&from) {
            Some(n) if n.private => (n.gfid, n.dir),
            _ => return Err(xd),
        };
        let replaced = match dir.names.get(&to) {
            None => None,
            Some(n) if n.private && !n.dir && !is_dir => Some(n.gfid),
            Some(_) => return Err(xd),
        };
        if old.gfid.is_some_and(|x| x != g) || new.gfid.is_some_and(|x| Some(x) != replaced) {
            return Err(xd);
        }
        let moved = dir.names.remove(&from).expect("looked up above");
        dir.names.insert(to.clone(), moved);
        touch(&mut dir.iatt);
        let post = dir.iatt;
        if replaced.is_some() {
            st.names -= 1;
        }
        st.n.renames += 1;
        let mut keys = vec![Key::Name(p, from), Key::Name(p, to), Key::Inode(g)];
        let mut busy = vec![p, g];
        if let Some(r) = replaced {
            keys.push(Key::Inode(r));
            busy.push(r);
        }
        let job = st.enqueue(keys, &[Key::Inode(p)], busy);
        drop(st);
        let (child, ctx, old, new) = (self.child0().clone(), ctx.clone(), old.clone(), new.clone());
        let what = format!("the rename of {} to {}", old.describe(), new.describe());
        self.behind(job, permit, p, what, async move {
            child
                .rename(&ctx, &old, &new, flags, leased(xd))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        Ok(Ok(((), with_postparent(&post))))
    }
}

/// An argument naming inodes a FOP involves.
trait Involves {
    fn gfids(&self) -> [Option<Gfid>; 2];
}
impl Involves for &FdRef {
    fn gfids(&self) -> [Option<Gfid>; 2] {
        [Some(self.gfid), None]
    }
}
impl Involves for &Loc {
    fn gfids(&self) -> [Option<Gfid>; 2] {
        [self.gfid, self.parent]
    }
}

/// FOPs that wait for the changes behind involving what they name (`settle`), those
/// that also stop the leased directory they change from being used as such (`unlease`:
/// its attributes or xattrs), and those that stop the directory they change a name in
/// from being used as such (`unlease_parent`), then go through.
macro_rules! settle_then_pass {
    (extra: { $($extra:tt)* }
     settle: { $( $sfop:ident [$($skey:ident),*] ($($sa:ident: $st:ty),*) -> $sret:ty; )* }
     unlease: { $( $ufop:ident [$ukey:ident] ($($ua:ident: $ut:ty),*) -> $uret:ty; )* }
     unlease_parent: { $( $pfop:ident [$($pkey:ident),*] ($($pa:ident: $pt:ty),*) -> $pret:ty; )* }) => {
        #[async_trait::async_trait]
        impl Xlator for EntryBehind {
            $($extra)*
            $(
                async fn $sfop(&self, ctx: &Ctx, $($sa: $st,)* xd: Xdata) -> Fop<$sret> {
                    let mut g: Vec<Option<Gfid>> = Vec::new();
                    $( g.extend($skey.gfids()); )*
                    self.settle(&g).await;
                    self.child0().$sfop(ctx, $($sa,)* xd).await
                }
            )*
            $(
                async fn $ufop(&self, ctx: &Ctx, $($ua: $ut,)* xd: Xdata) -> Fop<$uret> {
                    let [me, parent] = $ukey.gfids();
                    self.settle(&[me, parent]).await;
                    self.settle_and_forget(&[me]).await;
                    self.child0().$ufop(ctx, $($ua,)* xd).await
                }
            )*
            $(
                async fn $pfop(&self, ctx: &Ctx, $($pa: $pt,)* xd: Xdata) -> Fop<$pret> {
                    let mut g: Vec<Option<Gfid>> = Vec::new();
                    $( g.extend($pkey.gfids()); )*
                    self.settle_and_forget(&g).await;
                    self.through();
                    self.child0().$pfop(ctx, $($pa,)* xd).await
                }
            )*
        }
    };
}

impl EntryBehind {
    fn through(&self) {
        self.state.lock().n.through += 1;
    }
}

settle_then_pass! {
  extra: {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }
    fn dump(&self) -> String {
        let st = self.state.lock();
        let n = &st.n;
        format!(
            "enable = {}\nwindow = {}\nleased_dirs = {}\nnames = {}\nbehind = {}\ncreates = {}\ncreates_with_content = {}\nmkdirs = {}\nunlinks = {}\nrenames = {}\nrmdirs = {}\nsymlinks = {}\nleases = {}\nthrough = {}\nwaits = {}\nrecalls = {}\nfailures = {}\n",
            if self.enabled.load(Ordering::Acquire) { "on" } else { "off" },
            self.window_size.load(Ordering::Acquire),
            st.dirs.len(),
            st.names,
            st.open.len(),
            n.creates,
            n.with_content,
            n.mkdirs,
            n.unlinks,
            n.renames,
            n.rmdirs,
            n.symlinks,
            n.leases,
            n.through,
            n.waits,
            n.recalls,
            n.failures,
        )
    }
    async fn fini(&self) {
        let upto = {
            let st = self.state.lock();
            st.send_held();
            st.next
        };
        let mut rx = self.done.subscribe();
        let _ = rx.wait_for(|mark| *mark >= upto).await;
    }
    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let window = options.int("window") as u64;
        if self.window_size.swap(window, Ordering::AcqRel) != window {
            // Changes behind give their room back to the window they took it from.
            *self.window.lock() = Arc::new(Semaphore::new(window as usize));
        }
        let enable = options.bool("enable");
        if !self.enabled.swap(enable, Ordering::AcqRel) && enable {
            tracing::info!("{}: entry-behind on for directories made from now on", self.name);
        }
        if !enable {
            self.state.lock().forget_all();
        }
        Ok(())
    }
    async fn notify(&self, _from: &str, event: Event) -> Option<Event> {
        match &event {
            Event::Upcall(u) => {
                for inv in &u.invalidations {
                    match inv {
                        Invalidation::Recall { dir } => {
                            {
                                let mut st = self.state.lock();
                                st.forget(dir);
                                st.n.recalls += 1;
                                st.recalls += 1;
                            }
                            self.hold(u.ack.clone());
                        }
                        Invalidation::All => self.state.lock().forget_all(),
                        Invalidation::Inode { .. } | Invalidation::Entry { .. } => {}
                    }
                }
            }
            Event::ChildUp(_) | Event::ChildDown(_) => self.state.lock().forget_all(),
            _ => {}
        }
        Some(event)
    }

    async fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let xd = match self.create_behind(ctx, loc, fd, mode, umask, xd).await {
            Ok(r) => return r,
            Err(xd) => xd,
        };
        self.settle(&[loc.parent, loc.gfid, Some(fd.gfid)]).await;
        let r = self.child0().create(ctx, loc, fd, mode, umask, xd).await;
        self.made(loc, &r);
        r
    }
    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        let mut xd = match self.mkdir_behind(ctx, loc, mode, umask, xd).await {
            Ok(r) => return r,
            Err(xd) => xd,
        };
        self.settle(&[loc.parent]).await;
        let (ask, epoch) = {
            let st = self.state.lock();
            (
                self.enabled.load(Ordering::Acquire) && st.dirs.len() < MAX_DIRS,
                st.recalls,
            )
        };
        if ask {
            xd.set(LEASE_KEY, Vec::new());
        }
        let mut r = self.child0().mkdir(ctx, loc, mode, umask, xd).await;
        self.made(loc, &r);
        if let Ok((ia, rxd)) = &mut r {
            // Used only if the brick made it with the caller's ids (no squashing), and no
            // recall came meanwhile (it may have been this one's, answered already).
            if rxd.0.remove(LEASE_KEY).is_some()
                && ask
                && ia.uid == ctx.uid
                && ia.gid == ctx.gid
                && self.state.lock().recalls == epoch
            {
                let mut st = self.state.lock();
                st.n.leases += 1;
                st.dirs.insert(
                    ia.gfid,
                    Dir {
                        iatt: *ia,
                        template: *ia,
                        names: HashMap::new(),
                    },
                );
            }
        }
        r
    }
    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        let xd = match self.unlink_behind(ctx, loc, xd).await {
            Ok(r) => return r,
            Err(xd) => xd,
        };
        self.settle_and_forget(&[loc.parent, loc.gfid]).await;
        self.through();
        self.child0().unlink(ctx, loc, xd).await
    }
    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        let xd = match self.rename_behind(ctx, old, new, flags, xd).await {
            Ok(r) => return r,
            Err(xd) => xd,
        };
        self.settle_and_forget(&[old.parent, old.gfid, new.parent, new.gfid])
            .await;
        self.through();
        self.child0().rename(ctx, old, new, flags, xd).await
    }
    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        self.settle(&[loc.gfid, loc.parent]).await;
        let r = self.child0().setattr(ctx, loc, attr, xd).await;
        self.attrs_changed(loc.gfid, &r);
        r
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        self.settle(&[Some(fd.gfid)]).await;
        let r = self.child0().fsetattr(ctx, fd, attr, xd).await;
        self.attrs_changed(Some(fd.gfid), &r);
        r
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let refresh = self
            .xattrs_changing(loc.gfid, attrs.keys().map(String::as_str), false)
            .await;
        let r = self.child0().setxattr(ctx, loc, attrs, flags, xd).await;
        self.xattrs_changed(ctx, loc.gfid, refresh).await;
        r
    }
    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let refresh = self
            .xattrs_changing(Some(fd.gfid), attrs.keys().map(String::as_str), false)
            .await;
        let r = self.child0().fsetxattr(ctx, fd, attrs, flags, xd).await;
        self.xattrs_changed(ctx, Some(fd.gfid), refresh).await;
        r
    }
    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        let refresh = self.xattrs_changing(loc.gfid, [name], true).await;
        let r = self.child0().removexattr(ctx, loc, name, xd).await;
        self.xattrs_changed(ctx, loc.gfid, refresh).await;
        r
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        let refresh = self.xattrs_changing(Some(fd.gfid), [name], true).await;
        let r = self.child0().fremovexattr(ctx, fd, name, xd).await;
        self.xattrs_changed(ctx, Some(fd.gfid), refresh).await;
        r
    }
    async fn rmdir(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        let xd = match self.rmdir_behind(ctx, loc, xd).await {
            Ok(r) => return r,
            Err(xd) => xd,
        };
        self.settle_and_forget(&[loc.parent, loc.gfid]).await;
        self.through();
        self.child0().rmdir(ctx, loc, xd).await
    }
    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &std::path::Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let xd = match self.symlink_behind(ctx, target, loc, umask, xd).await {
            Ok(r) => return r,
            Err(xd) => xd,
        };
        self.settle_and_forget(&[loc.parent]).await;
        self.through();
        self.child0().symlink(ctx, target, loc, umask, xd).await
    }
    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.settle_and_forget(&[old.gfid, old.parent, new.gfid, new.parent])
            .await;
        if let Some(g) = old.gfid {
            // Its second name makes it known outside its directory: the directory's
            // names are no longer all private.
            let mut st = self.state.lock();
            let holding: Vec<Gfid> = st
                .dirs
                .iter()
                .filter(|(_, d)| d.names.values().any(|n| n.gfid == g))
                .map(|(p, _)| *p)
                .collect();
            for p in holding {
                st.forget(&p);
            }
        }
        self.through();
        self.child0().link(ctx, old, new, xd).await
    }
    async fn statfs(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<StatVfs> {
        self.child0().statfs(ctx, loc, xd).await
    }
    async fn writev(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        data: bytes::Bytes,
        offset: u64,
        xd: Xdata,
    ) -> Fop<u64> {
        if let Some(answer) = self.join_create(fd, &data, offset, &xd) {
            return answer.await.unwrap_or(Err(Errno::EIO));
        }
        self.settle(&[Some(fd.gfid)]).await;
        self.child0().writev(ctx, fd, data, offset, xd).await
    }
    async fn entrylk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        basename: Option<&std::ffi::OsString>,
        cmd: EntrylkCmd,
        kind: EntrylkType,
        xd: Xdata,
    ) -> Fop<()> {
        self.settle(&[loc.gfid, loc.parent]).await;
        self.child0()
            .entrylk(ctx, domain, loc, basename, cmd, kind, xd)
            .await
    }
  }
  settle: {
        lookup [loc] (loc: &Loc) -> Iatt;
        stat [loc] (loc: &Loc) -> Iatt;
        fstat [fd] (fd: &FdRef) -> Iatt;
        access [loc] (loc: &Loc, mask: u32) -> ();
        truncate [loc] (loc: &Loc, size: u64) -> Iatt;
        ftruncate [fd] (fd: &FdRef, size: u64) -> Iatt;
        readlink [loc] (loc: &Loc) -> std::path::PathBuf;
        open [loc, fd] (loc: &Loc, fd: &FdRef) -> ();
        readv [fd] (fd: &FdRef, size: u32, offset: u64) -> bytes::Bytes;
        flush [fd] (fd: &FdRef) -> ();
        fsync [fd] (fd: &FdRef, datasync: bool) -> ();
        release [fd] (fd: &FdRef) -> ();
        fallocate [fd] (fd: &FdRef, mode: i32, offset: u64, len: u64) -> ();
        discard [fd] (fd: &FdRef, offset: u64, len: u64) -> ();
        zerofill [fd] (fd: &FdRef, offset: u64, len: u64) -> ();
        seek [fd] (fd: &FdRef, offset: u64, what: SeekWhat) -> u64;
        rchecksum [fd] (fd: &FdRef, offset: u64, len: u32) -> Checksum;
        opendir [loc, fd] (loc: &Loc, fd: &FdRef) -> ();
        readdir [fd] (fd: &FdRef, size: u32, offset: u64) -> Vec<Dirent>;
        readdirp [fd] (fd: &FdRef, size: u32, offset: u64) -> Vec<Dirent>;
        fsyncdir [fd] (fd: &FdRef, datasync: bool) -> ();
        releasedir [fd] (fd: &FdRef) -> ();
        getxattr [loc] (loc: &Loc, name: Option<&str>) -> XattrMap;
        fgetxattr [fd] (fd: &FdRef, name: Option<&str>) -> XattrMap;
        lk [fd] (fd: &FdRef, cmd: LkCmd, lock: &Flock) -> Flock;
        inodelk [loc] (domain: &str, loc: &Loc, cmd: LkCmd, lock: &Flock) -> ();
        finodelk [fd] (domain: &str, fd: &FdRef, cmd: LkCmd, lock: &Flock) -> ();
  }
  unlease: {
        xattrop [loc] (loc: &Loc, op: XattropOp, attrs: &XattrMap) -> XattrMap;
        fxattrop [fd] (fd: &FdRef, op: XattropOp, attrs: &XattrMap) -> XattrMap;
  }
  unlease_parent: {
        mknod [loc] (loc: &Loc, mode: u32, rdev: u64, umask: u32) -> Iatt;
  }
}

impl EntryBehind {
    /// After a setattr of `g`: a leased directory stays leased with the attributes the
    /// brick answered, unless it now has the setgid bit (new names would take its group)
    /// or a change behind in it may not be in that answer.
    fn attrs_changed(&self, g: Option<Gfid>, r: &Fop<Iatt>) {
        let Some(g) = g else { return };
        let mut st = self.state.lock();
        if !st.dirs.contains_key(&g) {
            return;
        }
        match r {
            Ok((ia, _))
                if ia.gfid == g && ia.mode & libc::S_ISGID == 0 && !st.busy.contains_key(&g) =>
            {
                if let Some(d) = st.dirs.get_mut(&g) {
                    d.iatt = *ia;
                }
            }
            _ => {
                st.forget(&g);
                st.n.through += 1;
            }
        }
    }

    /// Before xattrs `names` of `g` are set (or removed, `removing`): a leased directory
    /// given a default ACL (which decides new names' modes) or another `system.` xattr is
    /// no longer used as leased (removing its default ACL leaves it as it was: it has
    /// none); its access ACL changes its mode, so its attributes are asked again after
    /// (true: see [`EntryBehind::xattrs_changed`]); other xattrs change nothing here.
    async fn xattrs_changing<'a>(
        &self,
        g: Option<Gfid>,
        names: impl IntoIterator<Item = &'a str>,
        removing: bool,
    ) -> bool {
        let mut refresh = false;
        let mut forget = false;
        for n in names {
            match n {
                "system.posix_acl_access" => refresh = true,
                "system.posix_acl_default" if removing => {}
                n if n.starts_with("system.") => forget = true,
                _ => {}
            }
        }
        if forget {
            self.settle_and_forget(&[g]).await;
            return false;
        }
        self.settle(&[g]).await;
        refresh && g.is_some_and(|g| self.state.lock().dirs.contains_key(&g))
    }

    /// After an access ACL of leased directory `g` changed (`refresh`): its attributes
    /// from the brick (as after a setattr).
    async fn xattrs_changed(&self, ctx: &Ctx, g: Option<Gfid>, refresh: bool) {
        let Some(g) = g.filter(|_| refresh) else {
            return;
        };
        let r = self.child0().stat(ctx, &Loc::inode(g), Xdata::new()).await;
        self.attrs_changed(Some(g), &r);
    }

    /// After a create or mkdir that went through: a new name in a leased directory is
    /// known here (a name that existed stays as it was).
    fn made(&self, loc: &Loc, r: &Fop<Iatt>) {
        let (Some(p), Some(name), Ok((ia, _))) = (loc.parent, name_of(loc), r) else {
            return;
        };
        let mut st = self.state.lock();
        let known = st.leased(Some(p)).map(|d| d.names.contains_key(&name));
        match known {
            None | Some(true) => return,
            Some(false) if st.names >= MAX_NAMES => {
                st.forget(&p);
                return;
            }
            Some(false) => {}
        }
        let Some(dir) = st.leased(Some(p)) else {
            return;
        };
        let is_dir = ia.mode & libc::S_IFMT == libc::S_IFDIR;
        dir.names.insert(
            name,
            Name {
                gfid: ia.gfid,
                dir: is_dir,
                private: true,
            },
        );
        touch(&mut dir.iatt);
        if is_dir {
            dir.iatt.nlink += 1;
        }
        st.names += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;
    use weft_core::{Fd, Graph};

    /// entry-behind over features/upcall (cache invalidation on) over a real posix brick.
    fn graph(dir: &std::path::Path) -> Graph {
        let text = format!(
            "volume p\n type storage/posix\n option directory {}\nend-volume\n\
             volume u\n type features/upcall\n option cache-invalidation on\n option invalidation-wait 5\n subvolumes p\nend-volume\n\
             volume eb\n type performance/entry-behind\n option window 64\n subvolumes u\nend-volume\n",
            dir.display()
        );
        let vf = weft_core::volfile::Volfile::parse(&text).unwrap();
        Graph::build(&vf, &crate::registry()).unwrap()
    }

    fn client(n: u64) -> Ctx {
        Ctx {
            client: n,
            ..Ctx::internal()
        }
    }

    fn count(x: &XlatorRef, key: &str) -> u64 {
        let d = x.dump();
        d.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {d}"))
    }

    async fn mkdir(x: &XlatorRef, parent: Gfid, name: &str) -> Iatt {
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, Gfid::random().0.to_vec());
        x.mkdir(&client(1), &Loc::entry(parent, name), 0o755, 0o022, xd)
            .await
            .unwrap()
            .0
    }

    async fn create(x: &XlatorRef, parent: Gfid, name: &str) -> (Iatt, FdRef) {
        let g = Gfid::random();
        let fd: FdRef = Fd::new(g, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, false);
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, g.0.to_vec());
        let (ia, _) = x
            .create(&client(1), &Loc::entry(parent, name), &fd, 0o644, 0o022, xd)
            .await
            .unwrap();
        (ia, fd)
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n as u64) as usize
        }
    }

    /// What a name of the model holds.
    #[derive(Clone, Debug, PartialEq)]
    enum Node {
        File(Gfid, Vec<u8>),
        Link(Gfid, String),
        Dir(Gfid),
    }

    impl Node {
        fn gfid(&self) -> Gfid {
            match self {
                Node::File(g, _) | Node::Link(g, _) | Node::Dir(g) => *g,
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn changes_behind_reach_the_brick_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let eb = g.top().clone();
        let d = mkdir(&eb, Gfid::ROOT, "d").await;
        assert_eq!(count(&eb, "leases"), 1, "{}", eb.dump());
        // Names reused often, so creates, renames and removals of one name follow each
        // other closely.
        let mut model: BTreeMap<String, Node> = BTreeMap::new();
        let mut rng = Rng(0x5eed_1234);
        for step in 0..2000u32 {
            let name = format!("n{}", rng.below(40));
            match (rng.below(6), model.get(&name).cloned()) {
                (0 | 1, None) => {
                    let (ia, fd) = create(&eb, d.gfid, &name).await;
                    let data = format!("{step}").into_bytes();
                    eb.writev(&client(1), &fd, data.clone().into(), 0, Xdata::new())
                        .await
                        .unwrap();
                    eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
                    model.insert(name, Node::File(ia.gfid, data));
                }
                (2, None) => {
                    let ia = mkdir(&eb, d.gfid, &name).await;
                    model.insert(name, Node::Dir(ia.gfid));
                }
                (3, None) => {
                    let target = format!("t{step}");
                    let mut xd = Xdata::new();
                    let g = Gfid::random();
                    xd.set(GFID_REQ_KEY, g.0.to_vec());
                    let (ia, _) = eb
                        .symlink(
                            &client(1),
                            std::path::Path::new(&target),
                            &Loc::entry(d.gfid, &name),
                            0,
                            xd,
                        )
                        .await
                        .unwrap();
                    assert_eq!(ia.size, target.len() as u64);
                    model.insert(name, Node::Link(ia.gfid, target));
                }
                (2 | 3, Some(n)) => {
                    let loc = Loc::entry(d.gfid, &name).with_gfid(n.gfid());
                    match n {
                        Node::Dir(_) => eb.rmdir(&client(1), &loc, Xdata::new()).await,
                        _ => eb.unlink(&client(1), &loc, Xdata::new()).await,
                    }
                    .unwrap();
                    model.remove(&name);
                }
                (_, Some(n)) => {
                    let to = format!("n{}", rng.below(40));
                    let over = model.get(&to).cloned();
                    let fits = match (&n, &over) {
                        (_, None) => true,
                        (Node::Dir(_), Some(_)) | (_, Some(Node::Dir(_))) => false,
                        _ => true,
                    };
                    if to != name && fits {
                        let old = Loc::entry(d.gfid, &name).with_gfid(n.gfid());
                        let mut new = Loc::entry(d.gfid, &to);
                        new.gfid = over.map(|o| o.gfid());
                        eb.rename(&client(1), &old, &new, 0, Xdata::new())
                            .await
                            .unwrap();
                        model.remove(&name);
                        model.insert(to, n);
                    }
                }
                _ => {}
            }
        }
        let behind: u64 = [
            "creates", "unlinks", "renames", "mkdirs", "rmdirs", "symlinks",
        ]
        .iter()
        .map(|k| count(&eb, k))
        .sum();
        assert!(behind > 1000, "{}", eb.dump());
        for k in ["mkdirs", "rmdirs", "symlinks"] {
            assert!(count(&eb, k) > 10, "{k}: {}", eb.dump());
        }
        assert_eq!(count(&eb, "failures"), 0, "{}", eb.dump());
        // A listing through it waits for them all.
        let fd: FdRef = Fd::new(d.gfid, libc::O_RDONLY, true);
        eb.opendir(&client(1), &Loc::inode(d.gfid), &fd, Xdata::new())
            .await
            .unwrap();
        let (ents, _) = eb
            .readdir(&client(1), &fd, 1 << 20, 0, Xdata::new())
            .await
            .unwrap();
        let mut listed: Vec<String> = ents
            .iter()
            .map(|e| String::from_utf8_lossy(&e.name).into_owned())
            .filter(|n| n != "." && n != "..")
            .collect();
        listed.sort();
        assert_eq!(listed, model.keys().cloned().collect::<Vec<_>>());
        for (name, node) in &model {
            let path = dir.path().join("d").join(name);
            match node {
                Node::File(_, data) => assert_eq!(&std::fs::read(&path).unwrap(), data, "{name}"),
                Node::Link(_, t) => {
                    assert_eq!(
                        std::fs::read_link(&path).unwrap().to_str(),
                        Some(t.as_str())
                    )
                }
                Node::Dir(_) => assert!(path.is_dir(), "{name}"),
            }
            let (ia, _) = eb
                .lookup(&client(1), &Loc::entry(d.gfid, name), Xdata::new())
                .await
                .unwrap();
            assert_eq!(ia.gfid, node.gfid(), "{name}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_rmdir_behind_goes_down_after_what_was_done_inside() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let eb = g.top().clone();
        let d = mkdir(&eb, Gfid::ROOT, "d").await;
        for round in 0..20 {
            let c = mkdir(&eb, d.gfid, "c").await;
            let mut files = Vec::new();
            for i in 0..5 {
                let (ia, fd) = create(&eb, c.gfid, &format!("f{i}")).await;
                eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
                files.push((format!("f{i}"), ia.gfid));
            }
            for (name, g) in files {
                let loc = Loc::entry(c.gfid, &name).with_gfid(g);
                eb.unlink(&client(1), &loc, Xdata::new()).await.unwrap();
            }
            let loc = Loc::entry(d.gfid, "c").with_gfid(c.gfid);
            eb.rmdir(&client(1), &loc, Xdata::new()).await.unwrap();
            assert!(count(&eb, "rmdirs") > round, "{}", eb.dump());
        }
        eb.fini().await;
        assert_eq!(count(&eb, "failures"), 0, "{}", eb.dump());
        assert!(!dir.path().join("d/c").exists());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chmod_keeps_the_lease_and_a_setgid_bit_or_an_acl_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let eb = g.top().clone();
        let d = mkdir(&eb, Gfid::ROOT, "d").await;
        let chmod = |mode: u32| SetAttr {
            mode: Some(mode),
            ..SetAttr::default()
        };
        let (ia, _) = eb
            .setattr(&client(1), &Loc::inode(d.gfid), &chmod(0o700), Xdata::new())
            .await
            .unwrap();
        assert_eq!(ia.mode & 0o7777, 0o700);
        assert_eq!(count(&eb, "leased_dirs"), 1, "{}", eb.dump());
        // The parent's attributes answered behind start from the brick's answer.
        let (_, fd) = create(&eb, d.gfid, "f").await;
        eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
        assert_eq!(count(&eb, "creates"), 1);
        // A name the brick refuses is not answered behind.
        let long = "x".repeat(256);
        let g2 = Gfid::random();
        let fd2: FdRef = Fd::new(g2, libc::O_CREAT | libc::O_EXCL | libc::O_RDWR, false);
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, g2.0.to_vec());
        let r = eb
            .create(&client(1), &Loc::entry(d.gfid, &long), &fd2, 0o644, 0, xd)
            .await;
        assert_eq!(r.unwrap_err(), Errno::ENAMETOOLONG);
        assert_eq!(count(&eb, "leased_dirs"), 1, "{}", eb.dump());
        let e = mkdir(&eb, Gfid::ROOT, "e").await;
        let mut acl = XattrMap::new();
        acl.insert("user.note".into(), b"x".to_vec());
        eb.setxattr(&client(1), &Loc::inode(e.gfid), &acl, 0, Xdata::new())
            .await
            .unwrap();
        assert_eq!(count(&eb, "leased_dirs"), 2, "a user xattr changes nothing");
        eb.setattr(
            &client(1),
            &Loc::inode(d.gfid),
            &chmod(0o2755),
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(count(&eb, "leased_dirs"), 1, "{}", eb.dump());
        // Removing a default ACL it has not got leaves it leased; setting one does not.
        eb.removexattr(
            &client(1),
            &Loc::inode(e.gfid),
            "system.posix_acl_default",
            Xdata::new(),
        )
        .await
        .ok();
        assert_eq!(count(&eb, "leased_dirs"), 1, "{}", eb.dump());
        let mut def = XattrMap::new();
        def.insert("system.posix_acl_default".into(), b"not an acl".to_vec());
        eb.setxattr(&client(1), &Loc::inode(e.gfid), &def, 0, Xdata::new())
            .await
            .ok();
        assert_eq!(count(&eb, "leased_dirs"), 0, "{}", eb.dump());
    }

    /// A new file's first write goes down with its create when it starts the file, fits
    /// and its fd does not write through; any other write goes down as a write, and a
    /// create nobody writes goes down when something waits for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_files_first_write_goes_down_with_its_create() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "volume p\n type storage/posix\n option directory {}\nend-volume\n\
             volume u\n type features/upcall\n option cache-invalidation on\n subvolumes p\nend-volume\n\
             volume s\n type debug/io-stats\n subvolumes u\nend-volume\n\
             volume eb\n type performance/entry-behind\n subvolumes s\nend-volume\n",
            dir.path().display()
        );
        let vf = weft_core::volfile::Volfile::parse(&text).unwrap();
        let g = Graph::build(&vf, &crate::registry()).unwrap();
        let (eb, stats) = (g.top().clone(), g.get("s").unwrap().clone());
        let writes = || {
            stats
                .dump()
                .lines()
                .find_map(|l| l.strip_prefix("writev "))
                .map_or(0, |l| l.split_whitespace().next().unwrap().parse().unwrap())
        };
        let d = mkdir(&eb, Gfid::ROOT, "d").await;
        let mut ask = Xdata::new();
        ask.set(POSTSTAT_KEY, Vec::new());
        // Joined: answered with the attributes after it.
        let (_, fd) = create(&eb, d.gfid, "small").await;
        let data = bytes::Bytes::from(vec![7u8; 4096]);
        let (n, xd) = eb
            .writev(&client(1), &fd, data.clone(), 0, ask.clone())
            .await
            .unwrap();
        let post = Iatt::from_bytes(xd.get(POSTSTAT_KEY).expect("attributes")).unwrap();
        assert_eq!((n, post.size, post.gfid), (4096, 4096, fd.gfid));
        let more = bytes::Bytes::from_static(b"tail");
        eb.writev(&client(1), &fd, more, 4096, Xdata::new())
            .await
            .unwrap();
        eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
        assert_eq!(count(&eb, "creates_with_content"), 1, "{}", eb.dump());
        assert_eq!(writes(), 1, "only the second write went down as one");
        let mut want = vec![7u8; 4096];
        want.extend_from_slice(b"tail");
        assert_eq!(std::fs::read(dir.path().join("d/small")).unwrap(), want);
        // Too big, not at the start, or through an O_SYNC fd: written as asked.
        let big = bytes::Bytes::from(vec![1u8; MAX_CREATE_CONTENT + 1]);
        let (_, fd) = create(&eb, d.gfid, "big").await;
        eb.writev(&client(1), &fd, big.clone(), 0, Xdata::new())
            .await
            .unwrap();
        eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
        let (_, fd) = create(&eb, d.gfid, "sparse").await;
        eb.writev(&client(1), &fd, data.clone(), 10, Xdata::new())
            .await
            .unwrap();
        eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
        let g = Gfid::random();
        let fd: FdRef = Fd::new(
            g,
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_SYNC,
            false,
        );
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, g.0.to_vec());
        eb.create(
            &client(1),
            &Loc::entry(d.gfid, "sync"),
            &fd,
            0o644,
            0o022,
            xd,
        )
        .await
        .unwrap();
        eb.writev(&client(1), &fd, data.clone(), 0, Xdata::new())
            .await
            .unwrap();
        eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
        assert_eq!(count(&eb, "creates_with_content"), 1, "{}", eb.dump());
        assert_eq!(writes(), 4);
        assert_eq!(std::fs::read(dir.path().join("d/big")).unwrap(), big);
        assert_eq!(
            std::fs::read(dir.path().join("d/sparse")).unwrap().len(),
            4106
        );
        assert_eq!(std::fs::read(dir.path().join("d/sync")).unwrap(), data);
        // Never written: a stat of it sends the create down first.
        let (ia, _fd) = create(&eb, d.gfid, "empty").await;
        let (st, _) = eb
            .stat(&client(1), &Loc::inode(ia.gfid), Xdata::new())
            .await
            .unwrap();
        assert_eq!((st.gfid, st.size), (ia.gfid, 0));
        assert_eq!(count(&eb, "creates"), 5, "{}", eb.dump());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn another_clients_lookup_waits_for_the_recall() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let mut rx = g.take_events().unwrap();
        let eb = g.top().clone();
        let u = g.get("u").unwrap().clone();
        let d = mkdir(&eb, Gfid::ROOT, "d").await;
        let (ia, fd) = create(&eb, d.gfid, "f").await;
        eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
        let sub = mkdir(&eb, d.gfid, "sub").await;
        assert_eq!(count(&eb, "creates"), 1);
        assert_eq!(count(&eb, "mkdirs"), 1);
        // Client 2 looks the file up at the brick: the lease on d is recalled first.
        let lookup = tokio::spawn({
            let u = u.clone();
            let loc = Loc::entry(d.gfid, "f");
            async move { u.lookup(&client(2), &loc, Xdata::new()).await }
        });
        let ev = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no recall")
            .unwrap()
            .1;
        let Event::Upcall(up) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(up.client, 1);
        assert_eq!(up.invalidations, vec![Invalidation::Recall { dir: d.gfid }]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!lookup.is_finished(), "the lookup waits for the recall");
        // Delivered to client 1's graph: entry-behind sends what it holds, then lets go.
        eb.notify("u", Event::Upcall(up)).await;
        // Client 2's invalidations from now on are acknowledged at once.
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let (found, _) = lookup.await.unwrap().unwrap();
        assert_eq!(found.gfid, ia.gfid);
        assert_eq!(count(&eb, "recalls"), 1);
        assert_eq!(count(&eb, "leased_dirs"), 1, "sub stays leased");
        // d is no longer leased here: a create in it goes through (and is at the brick
        // when answered); sub still is.
        let (_, fd) = create(&eb, d.gfid, "g").await;
        assert!(dir.path().join("d/g").exists());
        eb.release(&client(1), &fd, Xdata::new()).await.unwrap();
        create(&eb, sub.gfid, "x").await;
        assert_eq!(count(&eb, "creates"), 2, "{}", eb.dump());
        // A symlink without a proposed gfid goes through, and sub is no longer used as
        // leased.
        eb.symlink(
            &client(1),
            std::path::Path::new("x"),
            &Loc::entry(sub.gfid, "l"),
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
        assert!(dir.path().join("d/sub/x").exists());
        assert_eq!(count(&eb, "leased_dirs"), 0, "{}", eb.dump());
    }
}
