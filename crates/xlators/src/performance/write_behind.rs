//! `performance/write-behind`: acknowledges writes at once and sends them down in the
//! background, in order, as GlusterFS's write-behind does.
//!
//! What it promises:
//! - Writes to one inode reach the child in the order the application made them; at most
//!   `cache-size` bytes per inode, plus the write that crosses it, are acknowledged but
//!   not yet written (a writer beyond that waits).
//! - Every other FOP on an inode with writes pending (by fd or by location: read, stat,
//!   truncate, setattr, fsync, flush, lk, xattrs, unlink, rename, ...) first waits for those
//!   writes to reach the child, so nothing ever sees the file without them. A lookup that
//!   finds such an inode, and a readdirp, wait too and then ask again.
//! - Errors of writes done behind are reported as Linux reports writeback errors (errseq):
//!   the fd whose data failed gets the error from its next fsync or flush (close); every fd
//!   open on the inode gets it once from its next fsync; an fd opened later does not,
//!   unless nobody was told (its writer's close was answered behind): then the next fsync
//!   of an fd opened later reports it once. While
//!   an fd has an error it has not been told, its writes are not acknowledged early: they
//!   go through and answer for themselves. A reader's close never takes a writer's error.
//! - At most `cache-size` bytes per inode and `total-cache-size` bytes in all, each plus
//!   the one write that crosses it (as GlusterFS counts its window), are acknowledged but
//!   not yet written; room in both is taken before a write is acknowledged (a writer
//!   beyond them waits until the bytes taken are back within the size).
//! - fds opened with O_SYNC, O_DSYNC or O_DIRECT write through, waiting as before.
//! - `enable off` makes every write go through as an O_SYNC fd's does (after the file's
//!   writes already acknowledged reach the child); `enable on` acknowledges early again.
//!   Both, and new `cache-size` / `total-cache-size` values, apply live
//!   ([`Xlator::reconfigure`]): writes in flight keep the room they took, later ones take
//!   room under the new sizes.
//!
//! - A close of a file made behind under a directory lease (`PRIVATE_KEY` on its
//!   create's answer: no other client can know it) is answered at once, without waiting
//!   for its writes (flush-behind), unless a lock was asked on it. A lease recall holds
//!   its ack until those files' writes are done; any other change of such a file ends
//!   this.
//! - A close (`flush`) after lone writes is answered here: each write sent down asks for
//!   the file's attributes after it; those of a write that ran alone, with nothing else
//!   changing the file meanwhile, less than a second old, answer a flush (once the file's
//!   writes are done) without it reaching the bricks, unless an fd of this client asked
//!   for a lock on the file (a close drops its owner's locks there) or the attributes
//!   asked for are not known. A flush that asks for no attributes is always answered
//!   here, writes or not, unless such a lock was asked for.
//!
//! Only what fsync (or O_SYNC) covered is durable, as with any page cache: a killed client
//! process loses writes it had not yet sent down.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinSet;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;

/// Writes acknowledged but not yet done on one inode.
struct Pending {
    /// The jobs, in order, consumed by one task per inode.
    tx: mpsc::UnboundedSender<Job>,
    /// (writes, bytes) queued and not yet answered by the child.
    load: watch::Sender<(u64, u64)>,
    /// The per-file window (room taken before a write is acknowledged). Replaced when
    /// `cache-size` changes (writes in flight give their room back to the one they took
    /// it from).
    window: Mutex<Room>,
    /// The inode's writeback errors, as a sequence fds sample (errseq).
    errors: Mutex<ErrSeq>,
    /// The file's attributes after its writes, as the last write answered them: only
    /// from a write that ran alone and while nothing else changed the file (see
    /// [`WriteBehind::touched`]); what a flush then answers for `POSTSTAT_KEY`.
    attrs: Mutex<Option<(Iatt, Instant)>>,
    /// Counts changes of the file other than this client's writes done behind (changes
    /// through this translator, invalidations): a write's attributes are kept only if
    /// none came between its start and its answer.
    told: AtomicU64,
}

/// The latest writeback error of an inode and how many there have been.
#[derive(Default, Clone, Copy)]
struct ErrSeq {
    seq: u64,
    last: Option<Errno>,
    /// Some fd was told the last error. One nobody was told (its writer closed before it
    /// happened: a close answered behind) goes to the next fsync of an fd opened later,
    /// as Linux's errseq does.
    told: bool,
}

/// What write-behind keeps per fd: the error sequence it has seen, and an error of its own
/// data it has not yet been told.
struct FdErrors {
    seen: Mutex<u64>,
    failed: Mutex<Option<Errno>>,
}

struct Job {
    ctx: Ctx,
    fd: FdRef,
    data: Bytes,
    offset: u64,
    xd: Xdata,
    /// The window and total-cache bytes this write holds until it is done.
    _room: (Taken, Taken),
}

/// A window of bytes: writes take room until they are done. As GlusterFS's write-behind
/// does it, a write is let in while the bytes taken are at most the window's size, so the
/// one that crosses it still goes: with the default 1 MB window and 1 MiB writes (a
/// sequential writer's), one write is acknowledged while the one before it goes down,
/// where waiting for the whole window to be free let only one be in flight at a time
/// (1 GiB written in 1 MiB writes over loopback: 296 MiB/s, 465-506 with the crossing
/// write let in, `fio --end_fsync=0` on the fop-profile setup).
#[derive(Clone)]
struct Room {
    /// Bytes taken now.
    taken: Arc<Mutex<u64>>,
    /// Told when bytes are given back.
    freed: Arc<Notify>,
    size: u64,
}

/// Room taken from a [`Room`], given back when dropped.
struct Taken {
    taken: Arc<Mutex<u64>>,
    freed: Arc<Notify>,
    len: u64,
}

impl Drop for Taken {
    fn drop(&mut self) {
        *self.taken.lock() -= self.len;
        self.freed.notify_waiters();
    }
}

impl Room {
    fn new(size: u64) -> Room {
        Room {
            taken: Arc::new(Mutex::new(0)),
            freed: Arc::new(Notify::new()),
            size,
        }
    }

    /// Takes `len` bytes of room once at most the window's size is taken.
    async fn take(&self, len: u64) -> Taken {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a give-back in between is not missed.
            freed.as_mut().enable();
            {
                let mut taken = self.taken.lock();
                if *taken <= self.size {
                    *taken += len;
                    return Taken {
                        taken: self.taken.clone(),
                        freed: self.freed.clone(),
                        len,
                    };
                }
            }
            freed.await;
        }
    }
}

/// What a write sent down by the background task answers: its length, and its result
/// with the attributes it brought back when they may be kept.
type Done = (u64, Result<Option<Iatt>, Errno>);
/// A finished write as `JoinSet::join_next_with_id` gives it.
type Finished = Result<(tokio::task::Id, Done), tokio::task::JoinError>;

/// One write the background task sent down and has not yet seen answered.
struct Flight {
    /// The bytes it covers (all of them for an append).
    span: (u64, u64),
    /// The fd it was made through (told of its failure).
    owner: FdRef,
    /// `Pending::told` plus `told_all` when it started.
    told: u64,
    /// Another write was in flight at some time with it: its attributes may predate
    /// that one's.
    crowded: bool,
}

/// How old attributes kept from a write may be to answer a close here.
const ATTRS_FRESH: Duration = Duration::from_secs(1);

/// Writes of one inode sent down at once, at most.
const IN_FLIGHT: usize = 16;

/// The write-behind translator.
pub struct WriteBehind {
    name: String,
    children: Vec<XlatorRef>,
    /// `enable`: acknowledge writes early (else every write goes through).
    enabled: AtomicBool,
    /// `cache-size`: the window of each file.
    window: AtomicU64,
    /// Bytes acknowledged but not yet written, across every inode, still free
    /// (`total-cache-size`).
    total: Mutex<Room>,
    inodes: Mutex<HashMap<Gfid, Arc<Pending>>>,
    /// Counts invalidations of everything (see `Pending::told`).
    told_all: Arc<AtomicU64>,
    /// Files an fd of this client locked: their closes go down.
    locks: LockUse,
    /// Files made behind under a directory lease (`PRIVATE_KEY` on the create's answer)
    /// and not yet released: no other client can know them until the lease is recalled,
    /// so their closes are answered without waiting for their writes (flush-behind).
    private: Mutex<HashSet<Gfid>>,
}

/// The checked sizes of an option set: (cache-size, total-cache-size).
fn sizes(o: &Options) -> Result<(u64, u64), String> {
    let window = o.size("cache-size");
    if window == 0 {
        return Err("cache-size must be more than 0".into());
    }
    let total_size = o.size("total-cache-size");
    if total_size < window {
        return Err(format!(
            "total-cache-size ({total_size} bytes) must be at least cache-size ({window} bytes)"
        ));
    }
    Ok((window, total_size))
}

/// An argument naming an inode.
trait Inode {
    fn inode(&self) -> Option<Gfid>;
}
impl Inode for &FdRef {
    fn inode(&self) -> Option<Gfid> {
        Some(self.gfid)
    }
}
impl Inode for &Loc {
    fn inode(&self) -> Option<Gfid> {
        self.gfid
    }
}

impl WriteBehind {
    fn new(
        name: String,
        children: Vec<XlatorRef>,
        enabled: bool,
        window: u64,
        total_size: u64,
    ) -> WriteBehind {
        WriteBehind {
            name,
            children,
            enabled: AtomicBool::new(enabled),
            window: AtomicU64::new(window),
            total: Mutex::new(Room::new(total_size)),
            inodes: Mutex::new(HashMap::new()),
            told_all: Arc::new(AtomicU64::new(0)),
            locks: LockUse::default(),
            private: Mutex::new(HashSet::new()),
        }
    }

    /// A close of a private file (see `private`) with no lock taken on it: answered at
    /// once, without attributes (none are known before its writes are done), leaving the
    /// writes behind. Their errors still reach the fsyncs of the file's other fds.
    fn flush_behind(&self, fd: &FdRef) -> bool {
        self.enabled.load(Ordering::Acquire)
            && !self.locks.any(&fd.gfid)
            && self.private.lock().contains(&fd.gfid)
    }

    /// A directory lease is recalled (or every cache dropped): no file is private any
    /// more, and `ack` is held until the writes of the files that were are done (a file
    /// written without a pause meanwhile may hold it until the brick stops waiting), so
    /// the client that asked sees them; closes of other files waited for their writes.
    fn recalled(&self, ack: Option<Ack>) {
        let private: Vec<Gfid> = self.private.lock().drain().collect();
        let Some(ack) = ack else { return };
        let all: Vec<Arc<Pending>> = {
            let map = self.inodes.lock();
            private.iter().filter_map(|g| map.get(g).cloned()).collect()
        };
        tokio::spawn(async move {
            for p in all {
                let mut rx = p.load.subscribe();
                let _ = rx.wait_for(|(n, _)| *n == 0).await;
            }
            drop(ack);
        });
    }

    /// `g` changed other than by a write done behind (call before and after a change
    /// passes): the attributes kept of it go, and writes in flight keep none. A change of
    /// an inode not named (an unlink or rename by name) counts for every inode.
    fn touched(&self, g: Option<Gfid>) {
        let Some(g) = g else {
            self.touched_all();
            return;
        };
        // A private file that changes otherwise (a link, a rename out of its directory)
        // may become known elsewhere: its closes wait for its writes again.
        self.private.lock().remove(&g);
        if let Some(p) = self.pending(&g) {
            p.told.fetch_add(1, Ordering::AcqRel);
            *p.attrs.lock() = None;
        }
    }

    /// Everything may have changed (an invalidation of all, a brick gone or back).
    fn touched_all(&self) {
        self.told_all.fetch_add(1, Ordering::AcqRel);
        self.private.lock().clear();
        for p in self.inodes.lock().values() {
            p.told.fetch_add(1, Ordering::AcqRel);
            *p.attrs.lock() = None;
        }
    }

    /// Answers a close of `fd` here, once its file's writes are done, when nothing below
    /// needs it: no fd of this client locked the file, and the attributes asked for
    /// (`POSTSTAT_KEY`) are known from the last write. `None`: it must go down.
    fn flush_here(&self, fd: &FdRef, xd: &Xdata) -> Option<Xdata> {
        if self.locks.any(&fd.gfid) {
            return None;
        }
        let mut out = Xdata::new();
        if xd.has(POSTSTAT_KEY) {
            let (ia, at) = (*self.pending(&fd.gfid)?.attrs.lock())?;
            // Older ones go down: the caller caches them as fresh, and the bricks count
            // this client as caching the file for a while after it last asked.
            if at.elapsed() > ATTRS_FRESH {
                return None;
            }
            out.set(POSTSTAT_KEY, ia.to_bytes());
        }
        Some(out)
    }

    fn pending(&self, g: &Gfid) -> Option<Arc<Pending>> {
        self.inodes.lock().get(g).cloned()
    }

    /// Waits until every write acknowledged on `g` has been done by the child.
    async fn drain(&self, g: Option<Gfid>) {
        let Some(g) = g else { return };
        if let Some(p) = self.pending(&g) {
            let mut rx = p.load.subscribe();
            let _ = rx.wait_for(|(n, _)| *n == 0).await;
        }
    }

    /// Waits for every inode with writes pending.
    async fn drain_all(&self) {
        let all: Vec<Arc<Pending>> = self.inodes.lock().values().cloned().collect();
        for p in all {
            let mut rx = p.load.subscribe();
            let _ = rx.wait_for(|(n, _)| *n == 0).await;
        }
    }

    /// Write-behind's state of `fd`, made on first use (an fd opened before this
    /// translator saw it has seen no error yet).
    fn fd_errors(&self, fd: &FdRef) -> Arc<FdErrors> {
        if let Some(e) = fd.ctx::<FdErrors>(&self.name) {
            return e;
        }
        let seen = self
            .pending(&fd.gfid)
            .map(|p| {
                let es = p.errors.lock();
                if es.told {
                    es.seq
                } else {
                    es.seq.saturating_sub(1)
                }
            })
            .unwrap_or(0);
        let e = Arc::new(FdErrors {
            seen: Mutex::new(seen),
            failed: Mutex::new(None),
        });
        fd.set_ctx(&self.name, e.clone());
        e
    }

    /// Whether `fd` has an error it has not been told (its own, or a newer one on its inode).
    fn unreported(&self, fd: &FdRef) -> bool {
        let e = self.fd_errors(fd);
        if e.failed.lock().is_some() {
            return true;
        }
        let seq = self
            .pending(&fd.gfid)
            .map(|p| p.errors.lock().seq)
            .unwrap_or(0);
        let seen = *e.seen.lock();
        seq > seen
    }

    /// The error fsync of `fd` reports: its own failed data first, else an inode error it
    /// has not seen; either is reported once.
    fn take_for_fsync(&self, fd: &FdRef) -> Option<Errno> {
        let e = self.fd_errors(fd);
        let own = e.failed.lock().take();
        let pending = self.pending(&fd.gfid);
        let mut inode = pending.as_ref().map(|p| p.errors.lock());
        let mut seen = e.seen.lock();
        let newer = match inode.as_deref_mut() {
            Some(es) if es.seq > *seen => {
                *seen = es.seq;
                es.told = true;
                es.last
            }
            _ => None,
        };
        if own.is_some() {
            if let Some(es) = inode.as_deref_mut() {
                es.told = true;
            }
        }
        own.or(newer)
    }

    /// The error close (flush) of `fd` reports: only an error of its own data.
    fn take_for_close(&self, fd: &FdRef) -> Option<Errno> {
        let own = self.fd_errors(fd).failed.lock().take();
        if own.is_some() {
            if let Some(p) = self.pending(&fd.gfid) {
                p.errors.lock().told = true;
            }
        }
        own
    }

    fn queue_for(&self, g: Gfid, child: &XlatorRef) -> Arc<Pending> {
        let mut map = self.inodes.lock();
        if let Some(p) = map.get(&g) {
            return p.clone();
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let (load, _) = watch::channel((0u64, 0u64));
        let p = Arc::new(Pending {
            tx,
            load,
            window: Mutex::new(Room::new(self.window.load(Ordering::Acquire))),
            errors: Mutex::new(ErrSeq::default()),
            attrs: Mutex::new(None),
            told: AtomicU64::new(0),
        });
        map.insert(g, p.clone());
        let (child, me) = (child.clone(), Arc::downgrade(&p));
        let told_all = self.told_all.clone();
        let name = self.name.clone();
        let fd_name = self.name.clone();
        tokio::spawn(async move {
            // Up to IN_FLIGHT writes at once; one that overlaps a write still in flight
            // (or appends) waits for it, so overlapping bytes land in order.
            let mut running: JoinSet<Done> = JoinSet::new();
            let mut flights: HashMap<tokio::task::Id, Flight> = HashMap::new();
            let told =
                |p: &Pending| p.told.load(Ordering::Acquire) + told_all.load(Ordering::Acquire);
            let finish = |r: Finished, flights: &mut HashMap<tokio::task::Id, Flight>| {
                let (id, (len, res)) = match r {
                    Ok((id, v)) => (id, v),
                    Err(e) => (e.id(), (0, Err(Errno::EIO))),
                };
                let flight = flights.remove(&id);
                let owner = flight.as_ref().map(|f| f.owner.clone());
                let Some(p) = me.upgrade() else { return };
                {
                    // Kept only from a write that ran alone, with no other change of the
                    // file between its start and now.
                    let mut attrs = p.attrs.lock();
                    match (&res, flight) {
                        (Ok(Some(ia)), Some(f)) if !f.crowded && f.told == told(&p) => {
                            *attrs = Some((*ia, Instant::now()))
                        }
                        _ => *attrs = None,
                    }
                }
                if let Err(e) = res {
                    tracing::warn!("{name}: a write done behind failed: {e}; the writer's next fsync or close, and every open fd's next fsync, report it");
                    let mut es = p.errors.lock();
                    es.seq += 1;
                    es.last = Some(e);
                    es.told = false;
                    if let Some(fd) = owner {
                        if let Some(fe) = fd.ctx::<FdErrors>(&fd_name) {
                            fe.failed.lock().get_or_insert(e);
                        }
                    }
                }
                p.load.send_modify(|(n, b)| {
                    *n -= 1;
                    *b -= len;
                });
            };
            loop {
                tokio::select! {
                    job = rx.recv(), if running.len() < IN_FLIGHT => {
                        let Some(job) = job else { break };
                        let len = job.data.len() as u64;
                        let span = if job.fd.flags & libc::O_APPEND != 0
                            || job.xd.has(weft_core::WRITE_APPEND_KEY)
                        {
                            (0, u64::MAX)
                        } else {
                            (job.offset, job.offset.saturating_add(len))
                        };
                        while flights.values().any(|f| f.span.0 < span.1 && span.0 < f.span.1 || span == (0, u64::MAX)) {
                            match running.join_next_with_id().await {
                                Some(r) => finish(r, &mut flights),
                                None => break,
                            }
                        }
                        let child = child.clone();
                        let owner = job.fd.clone();
                        let before = me.upgrade().map(|p| told(&p)).unwrap_or(0);
                        let h = running.spawn(async move {
                            let Job { ctx, fd, data, offset, mut xd, _room } = job;
                            xd.set(POSTSTAT_KEY, Vec::new());
                            let r = child.writev(&ctx, &fd, data, offset, xd).await;
                            drop(_room);
                            let r = r.map(|(_, rxd)| {
                                rxd.get(POSTSTAT_KEY)
                                    .and_then(Iatt::from_bytes)
                                    .filter(|ia| ia.gfid == fd.gfid)
                            });
                            (len, r)
                        });
                        let crowded = !flights.is_empty();
                        for f in flights.values_mut() {
                            f.crowded = true;
                        }
                        flights.insert(h.id(), Flight { span, owner, told: before, crowded });
                    }
                    Some(r) = running.join_next_with_id(), if !running.is_empty() => finish(r, &mut flights),
                }
            }
            while let Some(r) = running.join_next_with_id().await {
                finish(r, &mut flights);
            }
        });
        p
    }

    async fn write(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let child = self.child()?;
        if !self.enabled.load(Ordering::Acquire)
            || fd.flags & (libc::O_SYNC | libc::O_DSYNC | libc::O_DIRECT) != 0
            || self.unreported(fd)
        {
            // Written through: write-behind is off, a synchronous fd, or one that has not
            // yet been told of a failed write (nothing is acknowledged behind a failure).
            self.drain(Some(fd.gfid)).await;
            self.touched(Some(fd.gfid));
            let r = child.writev(ctx, fd, data, offset, xd).await;
            self.touched(Some(fd.gfid));
            return r;
        }
        let p = self.queue_for(fd.gfid, child);
        let len = data.len() as u64;
        // Room in the file's window, then in the total (each lets a write in while at
        // most its size is taken).
        let window_room = p.window.lock().clone();
        let window = window_room.take(len).await;
        let total_room = self.total.lock().clone();
        let total = total_room.take(len).await;
        p.load.send_modify(|(n, b)| {
            *n += 1;
            *b += len;
        });
        let job = Job {
            ctx: ctx.clone(),
            fd: fd.clone(),
            data,
            offset,
            xd,
            _room: (window, total),
        };
        if p.tx.send(job).is_err() {
            p.load.send_modify(|(n, b)| {
                *n -= 1;
                *b -= len;
            });
            return Err(Errno::EIO);
        }
        Ok((len, Xdata::new()))
    }
}

/// Implements every FOP as: wait for the pending writes of the inodes its arguments name,
/// then pass it to the child; a change (not a read) also counts as touching those inodes
/// before and after ([`WriteBehind::touched`]).
macro_rules! drain_then_pass {
    (extra: { $($extra:tt)* }
     reads: { $( $rfop:ident [$($rkey:ident),*] ($($ra:ident: $rt:ty),*) -> $rret:ty; )* }
     changes: { $( $fop:ident [$($key:ident),*] ($($a:ident: $t:ty),*) -> $ret:ty; )* }) => {
        #[async_trait::async_trait]
        impl Xlator for WriteBehind {
            $($extra)*
            $(
                async fn $rfop(&self, ctx: &Ctx, $($ra: $rt,)* xd: Xdata) -> Fop<$rret> {
                    $( self.drain($rkey.inode()).await; )*
                    self.child()?.$rfop(ctx, $($ra,)* xd).await
                }
            )*
            $(
                async fn $fop(&self, ctx: &Ctx, $($a: $t,)* xd: Xdata) -> Fop<$ret> {
                    $( self.drain($key.inode()).await; )*
                    $( self.touched($key.inode()); )*
                    let r = self.child()?.$fop(ctx, $($a,)* xd).await;
                    $( self.touched($key.inode()); )*
                    r
                }
            )*
        }
    };
}

drain_then_pass! {
  extra: {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }
    fn dump(&self) -> String {
        let map = self.inodes.lock();
        let busy: Vec<String> = map
            .iter()
            .filter(|(_, p)| p.load.borrow().0 > 0)
            .map(|(g, p)| {
                let (n, b) = *p.load.borrow();
                format!("{g}: {n} writes, {b} bytes pending")
            })
            .collect();
        format!(
            "enable={} cache-size={} total-cache-size={} inodes={} pending: {}\n",
            if self.enabled.load(Ordering::Acquire) { "on" } else { "off" },
            self.window.load(Ordering::Acquire),
            self.total.lock().size,
            map.len(),
            if busy.is_empty() {
                "none".into()
            } else {
                busy.join("; ")
            }
        )
    }
    async fn fini(&self) {
        self.drain_all().await;
    }

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let (window, total_size) = sizes(options)?;
        let enable = options.bool("enable");
        if self.total.lock().size != total_size {
            *self.total.lock() = Room::new(total_size);
        }
        if self.window.swap(window, Ordering::AcqRel) != window {
            for p in self.inodes.lock().values() {
                *p.window.lock() = Room::new(window);
            }
        }
        let was = self.enabled.swap(enable, Ordering::AcqRel);
        if was != enable {
            // Writes already acknowledged keep going down in the background; a write
            // after this waits for its file's to be done, then goes through.
            tracing::info!(
                "{}: write-behind {}",
                self.name,
                if enable { "on: writes are acknowledged early again" } else { "off: writes go through once the pending ones are done" }
            );
        }
        Ok(())
    }

    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        self.write(ctx, fd, data, offset, xd).await
    }

    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        self.drain(Some(fd.gfid)).await;
        self.locks.asking(fd, cmd, lock);
        self.child()?.lk(ctx, fd, cmd, lock, xd).await
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
        self.drain(loc.gfid).await;
        let r = self.child()?.create(ctx, loc, fd, mode, umask, xd).await;
        if let Ok((ia, rxd)) = &r {
            // Without O_EXCL an existing file may come back, truncated by O_TRUNC.
            self.touched(Some(ia.gfid));
            if rxd.has(PRIVATE_KEY) {
                self.private.lock().insert(ia.gfid);
            }
        }
        r
    }

    async fn notify(&self, _from: &str, event: Event) -> Option<Event> {
        match &event {
            Event::Upcall(u) => {
                for inv in &u.invalidations {
                    match inv {
                        Invalidation::Inode { gfid, .. } => self.touched(Some(*gfid)),
                        Invalidation::All => {
                            self.touched_all();
                            self.recalled(None);
                        }
                        Invalidation::Recall { .. } => self.recalled(Some(u.ack.clone())),
                        Invalidation::Entry { .. } => {}
                    }
                }
            }
            Event::ChildUp(_) | Event::ChildDown(_) => {
                self.touched_all();
                self.recalled(None);
            }
            _ => {}
        }
        Some(event)
    }

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.drain(loc.gfid).await;
        let r = self.child()?.lookup(ctx, loc, xd.clone()).await?;
        if xd.has(QUICK_READ_KEY) {
            // A content read moves the access time the kept attributes hold.
            self.touched(Some(r.0.gfid));
        }
        if self.pending(&r.0.gfid).is_some_and(|p| p.load.borrow().0 > 0) {
            // Found by name with writes pending: answer with them done.
            self.drain(Some(r.0.gfid)).await;
            return self.child()?.lookup(ctx, loc, xd).await;
        }
        Ok(r)
    }
    async fn readdirp(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        self.drain_all().await;
        self.child()?.readdirp(ctx, fd, size, offset, xd).await
    }
    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.drain(loc.gfid).await;
        let trunc = fd.flags & libc::O_TRUNC != 0;
        if trunc {
            self.touched(Some(fd.gfid));
        }
        let r = self.child()?.open(ctx, loc, fd, xd).await;
        if trunc {
            self.touched(Some(fd.gfid));
        }
        let r = r?;
        self.fd_errors(fd); // errors from before this open are not its business
        Ok(r)
    }
    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        if self.flush_behind(fd) {
            return match self.take_for_close(fd) {
                Some(e) => Err(e),
                None => Ok(((), Xdata::new())),
            };
        }
        self.drain(Some(fd.gfid)).await;
        let r = match self.flush_here(fd, &xd) {
            Some(out) => Ok(((), out)),
            None => self.child()?.flush(ctx, fd, xd).await,
        };
        match self.take_for_close(fd) {
            Some(e) => Err(e),
            None => r,
        }
    }
    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        self.drain(Some(fd.gfid)).await;
        let r = self.child()?.fsync(ctx, fd, datasync, xd).await;
        match self.take_for_fsync(fd) {
            Some(e) => Err(e),
            None => r,
        }
    }
    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.drain(Some(fd.gfid)).await;
        self.locks.released(fd);
        self.private.lock().remove(&fd.gfid);
        let r = self.child()?.release(ctx, fd, xd).await;
        // Forget an inode with nothing pending (its task ends with its queue).
        // Nobody else holds it (writers take their handle under this lock): its task ends
        // with its queue.
        // An inode that had writeback errors stays known while this mount runs, so fds
        // opened later start from its sequence (errors are few).
        let mut map = self.inodes.lock();
        if map.get(&fd.gfid).is_some_and(|p| {
            Arc::strong_count(p) == 1 && p.load.borrow().0 == 0 && p.errors.lock().seq == 0
        }) {
            map.remove(&fd.gfid);
        }
        r
    }
  }
  reads: {
        stat [loc] (loc: &Loc) -> Iatt;
        fstat [fd] (fd: &FdRef) -> Iatt;
        access [loc] (loc: &Loc, mask: u32) -> ();
        seek [fd] (fd: &FdRef, offset: u64, what: SeekWhat) -> u64;
        rchecksum [fd] (fd: &FdRef, offset: u64, len: u32) -> Checksum;
        getxattr [loc] (loc: &Loc, name: Option<&str>) -> XattrMap;
        fgetxattr [fd] (fd: &FdRef, name: Option<&str>) -> XattrMap;
        inodelk [loc] (domain: &str, loc: &Loc, cmd: LkCmd, lock: &Flock) -> ();
        finodelk [fd] (domain: &str, fd: &FdRef, cmd: LkCmd, lock: &Flock) -> ();
  }
  changes: {
        // A read moves the access time the kept attributes hold.
        readv [fd] (fd: &FdRef, size: u32, offset: u64) -> Bytes;
        setattr [loc] (loc: &Loc, attr: &SetAttr) -> Iatt;
        fsetattr [fd] (fd: &FdRef, attr: &SetAttr) -> Iatt;
        truncate [loc] (loc: &Loc, size: u64) -> Iatt;
        ftruncate [fd] (fd: &FdRef, size: u64) -> Iatt;
        unlink [loc] (loc: &Loc) -> ();
        rename [old, new] (old: &Loc, new: &Loc, flags: u32) -> ();
        link [old] (old: &Loc, new: &Loc) -> Iatt;
        fallocate [fd] (fd: &FdRef, mode: i32, offset: u64, len: u64) -> ();
        discard [fd] (fd: &FdRef, offset: u64, len: u64) -> ();
        zerofill [fd] (fd: &FdRef, offset: u64, len: u64) -> ();
        setxattr [loc] (loc: &Loc, attrs: &XattrMap, flags: i32) -> ();
        fsetxattr [fd] (fd: &FdRef, attrs: &XattrMap, flags: i32) -> ();
        removexattr [loc] (loc: &Loc, name: &str) -> ();
        fremovexattr [fd] (fd: &FdRef, name: &str) -> ();
        xattrop [loc] (loc: &Loc, op: XattropOp, attrs: &XattrMap) -> XattrMap;
        fxattrop [fd] (fd: &FdRef, op: XattropOp, attrs: &XattrMap) -> XattrMap;
  }
}

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "enable",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "off: every write goes straight through to the child (after the file's pending writes), as if write-behind were not in the graph (GlusterFS's performance.write-behind). Changes live.",
    },
    OptionSpec {
        key: "cache-size",
        kind: OptionKind::Size,
        default: Some("1MB"),
        description: "Bytes per file acknowledged but not yet written, plus the write that crosses it (GlusterFS's performance.write-behind-window-size).",
    },
    OptionSpec {
        key: "total-cache-size",
        kind: OptionKind::Size,
        default: Some("64MB"),
        description: "Bytes acknowledged but not yet written across every file of the mount.",
    },
];

/// The `performance/write-behind` type.
pub struct WriteBehindType;

impl XlatorType for WriteBehindType {
    fn type_name(&self) -> &'static str {
        "performance/write-behind"
    }
    fn description(&self) -> &'static str {
        "Acknowledges writes at once and writes them in the background, in order; other FOPs on the file wait for them."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let (window, total_size) = sizes(&init.options)?;
        Ok(Arc::new(WriteBehind::new(
            init.name,
            init.children,
            init.options.bool("enable"),
            window,
            total_size,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::volfile::{Volfile, VolumeDecl};

    fn graph(dir: &std::path::Path) -> Graph {
        let vf = Volfile {
            volumes: vec![
                VolumeDecl::new("p", "storage/posix").option("directory", dir.display()),
                VolumeDecl::new("wb", "performance/write-behind")
                    .option("cache-size", "64KB")
                    .subvolumes(&["p"]),
            ],
        };
        Graph::build(&vf, &crate::registry()).unwrap()
    }

    async fn create(top: &XlatorRef, name: &str, flags: i32) -> FdRef {
        let fd = Fd::new(Gfid::random(), flags, false);
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
        top.create(
            &Ctx::internal(),
            &Loc::entry(Gfid::ROOT, name),
            &fd,
            0o644,
            0,
            xd,
        )
        .await
        .unwrap();
        fd
    }

    /// Calls of `fop` io-stats `io` counted.
    fn calls(g: &Graph, fop: &str) -> u64 {
        g.get("io")
            .unwrap()
            .dump()
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(fop)).then(|| w.next().unwrap().parse().unwrap())
            })
            .unwrap_or(0)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_close_after_lone_writes_is_answered_here_with_their_attributes() {
        let dir = tempfile::tempdir().unwrap();
        let vf = Volfile {
            volumes: vec![
                VolumeDecl::new("p", "storage/posix").option("directory", dir.path().display()),
                VolumeDecl::new("io", "debug/io-stats").subvolumes(&["p"]),
                VolumeDecl::new("wb", "performance/write-behind").subvolumes(&["io"]),
            ],
        };
        let g = Graph::build(&vf, &crate::registry()).unwrap();
        let top = g.top().clone();
        let ctx = Ctx::internal();
        let fd = create(&top, "f", libc::O_RDWR).await;
        let mut asked = Xdata::new();
        asked.set(POSTSTAT_KEY, Vec::new());
        let write = |n: usize| {
            let (top, fd, ctx) = (top.clone(), fd.clone(), ctx.clone());
            async move {
                top.writev(&ctx, &fd, Bytes::from(vec![7u8; n]), 0, Xdata::new())
                    .await
                    .unwrap();
            }
        };
        let flush = || {
            let (top, fd, ctx, asked) = (top.clone(), fd.clone(), ctx.clone(), asked.clone());
            async move {
                let (_, rxd) = top.flush(&ctx, &fd, asked).await.unwrap();
                Iatt::from_bytes(rxd.get(POSTSTAT_KEY).expect("attributes")).unwrap()
            }
        };
        write(4096).await;
        assert_eq!(flush().await.size, 4096);
        assert_eq!(calls(&g, "flush"), 0, "answered here");
        // Not asked for attributes: answered here too.
        top.flush(&ctx, &fd, Xdata::new()).await.unwrap();
        assert_eq!(calls(&g, "flush"), 0);
        // A change other than a write: the attributes are not known here any more.
        let chmod = SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        };
        top.fsetattr(&ctx, &fd, &chmod, Xdata::new()).await.unwrap();
        assert_eq!(flush().await.mode & 0o777, 0o600);
        assert_eq!(calls(&g, "flush"), 1);
        // An invalidation from the bricks: the same.
        write(8192).await;
        assert_eq!(flush().await.size, 8192);
        assert_eq!(calls(&g, "flush"), 1);
        write(100).await;
        top.fstat(&ctx, &fd, Xdata::new()).await.unwrap(); // the write is done
        let inval = Event::Upcall(Upcall {
            client: 0,
            invalidations: vec![Invalidation::Inode {
                gfid: fd.gfid,
                data: true,
                xattrs: false,
            }],
            ack: Ack::none(),
        });
        top.notify("p", inval).await;
        assert_eq!(flush().await.size, 8192);
        assert_eq!(calls(&g, "flush"), 2);
        // While an fd of the file asked for a lock, closes go down (they drop locks).
        write(100).await;
        let lock = Flock {
            kind: LockType::Write,
            start: 0,
            len: 0,
            pid: 1,
            owner: 1,
        };
        let _ = top.lk(&ctx, &fd, LkCmd::Set, &lock, Xdata::new()).await;
        flush().await;
        assert_eq!(calls(&g, "flush"), 3);
        top.release(&ctx, &fd, Xdata::new()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_fop_sees_the_writes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let top = g.top().clone();
        let ctx = Ctx::internal();
        let fd = create(&top, "f", libc::O_RDWR).await;
        // A model of the file; random and overlapping writes, more than the window.
        let mut model = vec![0u8; 256 * 1024];
        let mut x = 12345u64;
        for i in 0..2000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let off = (x % (model.len() as u64 - 8192)) as usize;
            let len = 1 + (x >> 40) as usize % 8192;
            let byte = (i % 251) as u8;
            model[off..off + len].fill(byte);
            let n = top
                .writev(
                    &ctx,
                    &fd,
                    Bytes::from(vec![byte; len]),
                    off as u64,
                    Xdata::new(),
                )
                .await
                .unwrap()
                .0;
            assert_eq!(n, len as u64);
        }
        let end = model.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
        // By name, by another fd, and by this fd: the writes are all there.
        let (ia, _) = top
            .lookup(&ctx, &Loc::entry(Gfid::ROOT, "f"), Xdata::new())
            .await
            .unwrap();
        assert!(ia.size as usize >= end);
        let fd2 = Fd::new(ia.gfid, libc::O_RDONLY, false);
        top.open(&ctx, &Loc::inode(ia.gfid), &fd2, Xdata::new())
            .await
            .unwrap();
        let (data, _) = top
            .readv(&ctx, &fd2, ia.size as u32, 0, Xdata::new())
            .await
            .unwrap();
        assert_eq!(&data[..], &model[..ia.size as usize]);
        top.flush(&ctx, &fd, Xdata::new()).await.unwrap();
        top.release(&ctx, &fd, Xdata::new()).await.unwrap();
        top.release(&ctx, &fd2, Xdata::new()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_done_behind_is_reported_by_flush_once() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let top = g.top().clone();
        let ctx = Ctx::internal();
        let fd = create(&top, "f", libc::O_RDWR).await;
        top.release(&ctx, &fd, Xdata::new()).await.unwrap();
        // Read-only: the write behind fails with EBADF, reported later.
        let ro = Fd::new(fd.gfid, libc::O_RDONLY, false);
        top.open(&ctx, &Loc::inode(fd.gfid), &ro, Xdata::new())
            .await
            .unwrap();
        let r = top
            .writev(&ctx, &ro, Bytes::from_static(b"x"), 0, Xdata::new())
            .await;
        assert_eq!(r.unwrap().0, 1, "acknowledged at once");
        assert_eq!(
            top.flush(&ctx, &ro, Xdata::new()).await.unwrap_err(),
            Errno::EBADF
        );
        top.flush(&ctx, &ro, Xdata::new()).await.unwrap();
        top.release(&ctx, &ro, Xdata::new()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_nobody_was_told_goes_to_the_next_openers_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let top = g.top().clone();
        let ctx = Ctx::internal();
        let fd = create(&top, "f", libc::O_RDWR).await;
        top.release(&ctx, &fd, Xdata::new()).await.unwrap();
        // The write behind fails (read-only fd) and its fd goes without a close that
        // reports it (as after a close answered behind).
        let ro = Fd::new(fd.gfid, libc::O_RDONLY, false);
        top.open(&ctx, &Loc::inode(fd.gfid), &ro, Xdata::new())
            .await
            .unwrap();
        top.writev(&ctx, &ro, Bytes::from_static(b"x"), 0, Xdata::new())
            .await
            .unwrap();
        top.release(&ctx, &ro, Xdata::new()).await.unwrap();
        let later = Fd::new(fd.gfid, libc::O_RDWR, false);
        top.open(&ctx, &Loc::inode(fd.gfid), &later, Xdata::new())
            .await
            .unwrap();
        assert_eq!(
            top.fsync(&ctx, &later, false, Xdata::new())
                .await
                .unwrap_err(),
            Errno::EBADF
        );
        top.fsync(&ctx, &later, false, Xdata::new()).await.unwrap();
        // Told once: an fd opened after that does not get it again.
        let last = Fd::new(fd.gfid, libc::O_RDWR, false);
        top.open(&ctx, &Loc::inode(fd.gfid), &last, Xdata::new())
            .await
            .unwrap();
        top.fsync(&ctx, &last, false, Xdata::new()).await.unwrap();
        top.release(&ctx, &later, Xdata::new()).await.unwrap();
        top.release(&ctx, &last, Xdata::new()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn o_sync_and_append_writes() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let top = g.top().clone();
        let ctx = Ctx::internal();
        let fd = create(&top, "s", libc::O_RDWR | libc::O_SYNC).await;
        top.writev(&ctx, &fd, Bytes::from_static(b"sync"), 0, Xdata::new())
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("s")).unwrap(), b"sync");
        let fa = create(&top, "a", libc::O_WRONLY | libc::O_APPEND).await;
        for i in 0..100u8 {
            let mut xd = Xdata::new();
            xd.set(weft_core::WRITE_APPEND_KEY, Vec::new());
            top.writev(&ctx, &fa, Bytes::from(vec![i; 3]), 0, xd)
                .await
                .unwrap();
        }
        top.fsync(&ctx, &fa, false, Xdata::new()).await.unwrap();
        let got = std::fs::read(dir.path().join("a")).unwrap();
        let want: Vec<u8> = (0..100u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(got, want, "appends land in order");
    }

    /// A child whose writes take `SLOW` to reach the brick, so a write acknowledged before
    /// it reached the brick is seen as such.
    struct SlowWrites {
        children: Vec<XlatorRef>,
    }

    const SLOW: std::time::Duration = std::time::Duration::from_millis(300);

    #[async_trait::async_trait]
    impl Xlator for SlowWrites {
        fn name(&self) -> &str {
            "slow"
        }
        fn children(&self) -> &[XlatorRef] {
            &self.children
        }
        async fn writev(
            &self,
            ctx: &Ctx,
            fd: &FdRef,
            data: Bytes,
            offset: u64,
            xd: Xdata,
        ) -> Fop<u64> {
            tokio::time::sleep(SLOW).await;
            self.child()?.writev(ctx, fd, data, offset, xd).await
        }
    }

    /// The window lets writes in while at most its size is taken, as GlusterFS counts it:
    /// with a 64 KiB window, 64 KiB writes are acknowledged two at a time (the second
    /// crosses it), and a third waits for the first to be done; small writes fill it to
    /// its size and one more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_write_that_crosses_the_window_is_acknowledged_and_the_next_waits() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let slow: XlatorRef = Arc::new(SlowWrites {
            children: vec![g.get("p").unwrap().clone()],
        });
        let window = 64 * 1024;
        let top: XlatorRef = Arc::new(WriteBehind::new(
            "wb".into(),
            vec![slow],
            true,
            window,
            1 << 20,
        ));
        let ctx = Ctx::internal();
        let write = |fd: FdRef, i: u64, len: usize| {
            let top = top.clone();
            let ctx = ctx.clone();
            async move {
                let t = std::time::Instant::now();
                top.writev(
                    &ctx,
                    &fd,
                    Bytes::from(vec![i as u8; len]),
                    i * len as u64,
                    Xdata::new(),
                )
                .await
                .unwrap();
                t.elapsed()
            }
        };
        let big = create(&top, "big", libc::O_RDWR).await;
        for i in 0..2 {
            let took = write(big.clone(), i, window as usize).await;
            assert!(took < SLOW, "write {i} waited {took:?}");
        }
        let took = write(big.clone(), 2, window as usize).await;
        assert!(took >= SLOW / 2, "the third went in after {took:?}");
        top.fsync(&ctx, &big, false, Xdata::new()).await.unwrap();
        let want: Vec<u8> = (0..3u8).flat_map(|i| vec![i; window as usize]).collect();
        assert_eq!(std::fs::read(dir.path().join("big")).unwrap(), want);

        let small = create(&top, "small", libc::O_RDWR).await;
        let n = window / 4096 + 1;
        for i in 0..n {
            let took = write(small.clone(), i, 4096).await;
            assert!(took < SLOW, "small write {i} waited {took:?}");
        }
        let took = write(small.clone(), n, 4096).await;
        assert!(
            took >= SLOW / 2,
            "a small write past the window went in after {took:?}"
        );
        top.release(&ctx, &small, Xdata::new()).await.unwrap();
        top.release(&ctx, &big, Xdata::new()).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn o_sync_and_o_dsync_writes_are_on_disk_when_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let slow: XlatorRef = Arc::new(SlowWrites {
            children: vec![g.get("p").unwrap().clone()],
        });
        let top: XlatorRef = Arc::new(WriteBehind::new(
            "wb".into(),
            vec![slow],
            true,
            64 * 1024,
            1 << 20,
        ));
        let ctx = Ctx::internal();
        // The control: a plain fd's write is acknowledged before the slow child wrote it
        // (so the checks below can see a write acknowledged early).
        let plain = create(&top, "plain", libc::O_RDWR).await;
        top.writev(&ctx, &plain, Bytes::from_static(b"behind"), 0, Xdata::new())
            .await
            .unwrap();
        assert_eq!(std::fs::read(dir.path().join("plain")).unwrap(), b"");
        top.fsync(&ctx, &plain, false, Xdata::new()).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("plain")).unwrap(), b"behind");
        for (name, flags) in [("sync", libc::O_SYNC), ("dsync", libc::O_DSYNC)] {
            let fd = create(&top, name, libc::O_RDWR | flags).await;
            for (i, chunk) in [&b"first"[..], b"second"].into_iter().enumerate() {
                let off = 5 * i as u64;
                let t = std::time::Instant::now();
                let n = top
                    .writev(&ctx, &fd, Bytes::from_static(chunk), off, Xdata::new())
                    .await
                    .unwrap()
                    .0;
                assert_eq!(n, chunk.len() as u64);
                assert!(
                    t.elapsed() >= SLOW,
                    "{name}: acknowledged after {:?}",
                    t.elapsed()
                );
                let on_disk = std::fs::read(dir.path().join(name)).unwrap();
                assert_eq!(
                    &on_disk[off as usize..],
                    chunk,
                    "{name}: write {i} not on disk when acknowledged"
                );
            }
            top.release(&ctx, &fd, Xdata::new()).await.unwrap();
        }
        top.release(&ctx, &plain, Xdata::new()).await.unwrap();
    }

    fn options(pairs: &[(&str, &str)]) -> Options {
        let given: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::validate(OPTIONS, &given).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enable_off_and_on_live_while_writes_are_pending() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path());
        let slow: XlatorRef = Arc::new(SlowWrites {
            children: vec![g.get("p").unwrap().clone()],
        });
        let top: XlatorRef = Arc::new(WriteBehind::new(
            "wb".into(),
            vec![slow],
            true,
            64 * 1024,
            1 << 20,
        ));
        let ctx = Ctx::internal();
        let fd = create(&top, "f", libc::O_RDWR).await;
        let path = dir.path().join("f");
        // On: acknowledged before it is on disk.
        top.writev(&ctx, &fd, Bytes::from_static(b"aaaa"), 0, Xdata::new())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"");
        // Off while that write is pending: the next write waits for it, then goes
        // through, and is on disk when acknowledged.
        top.reconfigure(&options(&[("enable", "off")]))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        top.writev(&ctx, &fd, Bytes::from_static(b"bbbb"), 4, Xdata::new())
            .await
            .unwrap();
        assert!(t.elapsed() >= SLOW, "went through: {:?}", t.elapsed());
        assert_eq!(std::fs::read(&path).unwrap(), b"aaaabbbb");
        assert!(top.dump().contains("enable=off"), "{}", top.dump());
        // On again, with a smaller window: acknowledged early again.
        top.reconfigure(&options(&[("enable", "on"), ("cache-size", "4KB")]))
            .await
            .unwrap();
        let t = std::time::Instant::now();
        top.writev(&ctx, &fd, Bytes::from(vec![b'c'; 8192]), 8, Xdata::new())
            .await
            .unwrap();
        assert!(t.elapsed() < SLOW, "acknowledged early: {:?}", t.elapsed());
        assert!(top.dump().contains("cache-size=4096"), "{}", top.dump());
        top.fsync(&ctx, &fd, false, Xdata::new()).await.unwrap();
        let got = std::fs::read(&path).unwrap();
        assert_eq!(&got[..8], b"aaaabbbb");
        assert_eq!(&got[8..], &[b'c'; 8192][..]);
        // A bad set is refused and changes nothing.
        let e = top
            .reconfigure(&options(&[
                ("cache-size", "2MB"),
                ("total-cache-size", "1MB"),
            ]))
            .await
            .unwrap_err();
        assert!(e.contains("total-cache-size"), "{e}");
        assert!(top.dump().contains("cache-size=4096"), "{}", top.dump());
        top.release(&ctx, &fd, Xdata::new()).await.unwrap();
    }
}
