//! The FUSE front end's state and its FOP logic, independent of fuser's reply types.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use weft_client::Volume;
use weft_core::inode::InodeTable;
use weft_core::{
    Ctx, Dirent, Errno, Fd, FdRef, Gfid, Iatt, Loc, SetAttr, StatVfs, XattrMap, Xdata, XlatorRef,
};
use weft_core::{Flock, LkCmd};

/// The name of the virtual xattr on the mount root that returns a statedump of the graph.
pub const STATEDUMP_XATTR: &str = "weft.statedump";

/// One graph the mount serves from: the current one, or an older one that files opened
/// on it still use. Every FOP holds its graph while it runs; a replaced graph is torn down
/// (closed) when the last holder lets go.
pub struct Gen {
    /// The volume of this graph.
    pub volume: Arc<Volume>,
    /// Its top translator.
    pub top: XlatorRef,
    /// 1 for the graph mounted first, then one more per switch.
    pub number: u64,
    /// Set when a newer graph replaced this one: dropping the last holder then closes it.
    retired: std::sync::atomic::AtomicBool,
    /// Set once it was closed (so it is closed once).
    closed: std::sync::atomic::AtomicBool,
    rt: tokio::runtime::Handle,
}

impl Gen {
    fn new(volume: Arc<Volume>, number: u64, rt: tokio::runtime::Handle) -> Gen {
        Gen {
            top: volume.top().clone(),
            volume,
            number,
            retired: Default::default(),
            closed: Default::default(),
            rt,
        }
    }

    async fn close(&self) {
        if !self.closed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.volume.close().await;
        }
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.retired.load(Ordering::Acquire) && !self.closed.swap(true, Ordering::AcqRel) {
            let (volume, number) = (self.volume.clone(), self.number);
            self.rt.spawn(async move {
                volume.close().await;
                tracing::info!("graph {number}: no file uses it any more; torn down");
            });
        }
    }
}

/// Shared by every request of one mount.
pub struct Inner {
    /// The graph new requests go to.
    current: parking_lot::RwLock<Arc<Gen>>,
    /// Inodes the kernel holds, kept current across renames and removals; every fd this
    /// front end opens asks it for its path ([`Fd::path`]).
    pub inodes: Arc<InodeTable>,
    /// Open files, each with the graph it was opened on (which serves all its FOPs).
    fds: Mutex<HashMap<u64, (FdRef, Arc<Gen>)>>,
    /// File handles that asked for a lock: they stay on the graph they were opened on
    /// (their locks live in its connections) when the graph is switched.
    locked: Mutex<std::collections::HashSet<u64>>,
    /// Files (by gfid) this mount ever asked a lock on: a close(2) of a read-only
    /// descriptor of any other file has nothing to flush and no lock to drop, so it is
    /// answered here without a round trip.
    lock_inodes: Mutex<std::collections::HashSet<weft_core::Gfid>>,
    /// Directory listings read ahead, by file handle (see [`Inner::readdir`]).
    dir_ahead: Mutex<HashMap<u64, DirAhead>>,
    /// Invalidations seen, for replies' timeouts and read-ahead listings.
    pub fresh: Arc<crate::invalidate::Freshness>,
    /// File handles being moved to a new graph: their requests wait (see
    /// [`Inner::migrate_open_files`]); `moved` wakes them.
    moving: Mutex<std::collections::HashSet<u64>>,
    moved: tokio::sync::Notify,
    /// The size the kernel believes each regular file has (the last one it was told, or
    /// grew it to by a write), so an O_APPEND write can be told from a write at an
    /// explicit offset: the kernel sends appends at the end of file it believes.
    kernel_sizes: Mutex<HashMap<Gfid, Told>>,
}

/// What the kernel was last given of a regular file's attributes.
#[derive(Clone, Copy)]
struct Told {
    /// The size it believes (grown by its own writes since).
    size: u64,
    /// Sizes it may hold instead: see [`SizeHistory`].
    recent: SizeHistory,
    /// The mode, owner, group and change time it was given (a chmod, chown or ACL change
    /// elsewhere changes the ctime).
    meta: (u32, u32, u32, weft_core::Timespec),
    /// When it was given them (with an entry, when remembered by name).
    at: std::time::Instant,
    /// [`crate::invalidate::Freshness::seq`] then.
    seq: u64,
}

/// The sizes the kernel may hold for a file: it ignores attributes that cross one of its
/// own writes (a GETATTR answered before a write's reply comes back after it), keeping
/// the size that write gave it, so the last size told is not always its size. Each size
/// told is added (up to the last [`SIZE_HISTORY`]); a write the kernel made grows each to
/// at least its end, as the kernel's own size grows; the answer to a truncate the kernel
/// asked for leaves that size alone. An O_APPEND write at any of them is an append:
/// taking an append for a write at an explicit offset would overwrite what another client
/// appended meanwhile, while the opposite mistake needs pwritev2's RWF_NOAPPEND at
/// exactly a size told since the file last grew past it.
#[derive(Clone, Copy, Default)]
struct SizeHistory {
    sizes: [u64; SIZE_HISTORY],
    /// How many of `sizes` are set (up to [`SIZE_HISTORY`]); the next goes at `len % N`.
    len: usize,
}

/// How many sizes [`SizeHistory`] keeps per file.
const SIZE_HISTORY: usize = 8;

impl SizeHistory {
    fn note(&mut self, size: u64) {
        if !self.has(size) {
            self.sizes[self.len % SIZE_HISTORY] = size;
            self.len += 1;
        }
    }

    fn has(&self, size: u64) -> bool {
        self.sizes[..self.len.min(SIZE_HISTORY)].contains(&size)
    }

    /// After a write of the kernel's ending at `end`: every size it may hold is at least
    /// that now.
    fn grew(&mut self, end: u64) {
        let old = *self;
        *self = SizeHistory::default();
        for &s in &old.sizes[..old.len.min(SIZE_HISTORY)] {
            self.note(s.max(end));
        }
    }
}

/// How many files' kernel sizes are kept before the table starts over (an unknown size
/// counts an O_APPEND write as an append).
const KERNEL_SIZES_MAX: usize = 1 << 20;

impl Inner {
    /// State for serving `volume`; graphs replaced later are torn down on `rt`.
    pub fn new(volume: Arc<Volume>, rt: tokio::runtime::Handle) -> Inner {
        Inner {
            current: parking_lot::RwLock::new(Arc::new(Gen::new(volume, 1, rt))),
            inodes: Arc::new(InodeTable::new()),
            fds: Mutex::new(HashMap::new()),
            locked: Mutex::new(Default::default()),
            lock_inodes: Mutex::new(Default::default()),
            dir_ahead: Mutex::new(HashMap::new()),
            fresh: Default::default(),
            moving: Mutex::new(Default::default()),
            moved: tokio::sync::Notify::new(),
            kernel_sizes: Mutex::new(HashMap::new()),
        }
    }

    /// The graph new requests go to.
    pub fn cur(&self) -> Arc<Gen> {
        self.current.read().clone()
    }

    /// Makes `volume`'s graph the one new lookups, opens and every other request not on
    /// an open file go to. Files already open stay on the graph they were opened on until
    /// released; the old graph is torn down once nothing uses it. Returns the new graph's
    /// number.
    pub fn switch(&self, volume: Arc<Volume>) -> u64 {
        let mut cur = self.current.write();
        let number = cur.number + 1;
        let new = Arc::new(Gen::new(volume, number, cur.rt.clone()));
        let old = std::mem::replace(&mut *cur, new);
        drop(cur);
        let open = self
            .fds
            .lock()
            .values()
            .filter(|(_, g)| Arc::ptr_eq(g, &old))
            .count();
        tracing::info!(
            "graph {number} serves new requests; graph {} stays for the {open} file(s) open on it",
            old.number
        );
        old.retired
            .store(true, std::sync::atomic::Ordering::Release);
        number
    }

    /// The location of inode `ino`.
    pub fn inode_loc(&self, ino: u64) -> Result<Loc, Errno> {
        let g = self.inodes.gfid(ino).ok_or(Errno(libc::ESTALE))?;
        let mut loc = Loc::inode(g);
        loc.path = self.inodes.path(ino);
        Ok(loc)
    }

    /// The location of entry `name` in directory `parent`.
    pub fn entry_loc(&self, parent: u64, name: &OsStr) -> Result<Loc, Errno> {
        let pg = self.inodes.gfid(parent).ok_or(Errno(libc::ESTALE))?;
        let mut loc = Loc::entry(pg, name);
        loc.path = self.inodes.path(parent).map(|p| p.join(name));
        Ok(loc)
    }

    /// Hands the kernel one more reference to `ia`, found as `name` in `parent`.
    pub fn remember(&self, ia: &Iatt, parent: u64, name: &OsStr) {
        if let Some(k) = ia.file_type() {
            self.inodes.remember(ia.gfid, k, parent, name);
        }
        self.told(ia);
    }

    /// Notes the attributes the kernel is about to be given (its idea of the size).
    pub fn told(&self, ia: &Iatt) {
        self.told_as(ia, false);
    }

    /// [`Inner::told`]; `sure`: the kernel takes this size whatever else it is doing (the
    /// answer to its own truncate), so no earlier size is its any more.
    fn told_as(&self, ia: &Iatt, sure: bool) {
        if ia.mode & libc::S_IFMT != libc::S_IFREG {
            return;
        }
        let mut m = self.kernel_sizes.lock();
        if m.len() >= KERNEL_SIZES_MAX {
            m.clear();
        }
        let mut recent = match m.get(&ia.gfid) {
            Some(t) if !sure => t.recent,
            _ => SizeHistory::default(),
        };
        recent.note(ia.size);
        let told = Told {
            size: ia.size,
            recent,
            meta: (ia.mode, ia.uid, ia.gid, ia.ctime),
            at: std::time::Instant::now(),
            seq: self.fresh.seq(),
        };
        m.insert(ia.gfid, told);
    }

    /// Whether the kernel already holds regular file `ia` as `name` in `parent` with these
    /// attributes (size, mode, owner, group, ctime), given less than `within` ago, with no invalidation received since: a
    /// listing can then leave the entry out of readdirplus's lookups (nodeid 0), which
    /// keeps what the kernel caches on the inode (its POSIX ACLs, which a readdirplus
    /// entry drops). Any doubt is `false`, and the entry is sent in full.
    pub fn kernel_has(
        &self,
        ia: &Iatt,
        parent: u64,
        name: &OsStr,
        within: std::time::Duration,
    ) -> bool {
        if ia.mode & libc::S_IFMT != libc::S_IFREG {
            return false;
        }
        let ino = ia.gfid.ino();
        if self.inodes.child(parent, name) != Some(ino) || self.inodes.gfid(ino) != Some(ia.gfid) {
            return false;
        }
        let seq = self.fresh.seq();
        self.kernel_sizes.lock().get(&ia.gfid).is_some_and(|t| {
            t.size == ia.size
                && t.meta == (ia.mode, ia.uid, ia.gid, ia.ctime)
                && t.seq == seq
                && t.at.elapsed() < within
        })
    }

    /// Notes that the kernel grew its size of `g` to at least `end` (after a write or an
    /// allocation it made).
    fn grew(&self, g: Gfid, end: u64) {
        if let Some(t) = self.kernel_sizes.lock().get_mut(&g) {
            t.size = t.size.max(end);
            t.recent.grew(end);
        }
    }

    /// Whether a write at `offset` through `fd` is an append: the file is open O_APPEND,
    /// the write does not come from the page cache (mmap, writeback), and it is at an end
    /// of file the kernel may believe (or that is unknown). A write at another offset is
    /// an explicit one (pwritev2 with RWF_NOAPPEND), honoured as such.
    fn is_append(&self, fd: &FdRef, offset: u64, from_cache: bool) -> bool {
        fd.flags & libc::O_APPEND != 0
            && !from_cache
            && self
                .kernel_sizes
                .lock()
                .get(&fd.gfid)
                .is_none_or(|t| t.size == offset || t.recent.has(offset))
    }

    /// The open fd behind file handle `fh`, and the graph it was opened on.
    pub fn fd(&self, fh: u64) -> Result<(FdRef, Arc<Gen>), Errno> {
        self.fds.lock().get(&fh).cloned().ok_or(Errno::EBADF)
    }

    /// Like [`Inner::fd`], after waiting while `fh` is being moved to a new graph.
    async fn fd_ready(&self, fh: u64) -> Result<(FdRef, Arc<Gen>), Errno> {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            moved.as_mut().enable();
            {
                // Checked and taken under one lock: a move starting in between would not
                // see this request's reference and could release the fd under it.
                let moving = self.moving.lock();
                if !moving.contains(&fh) {
                    return self.fd(fh);
                }
            }
            moved.await;
        }
    }

    /// A new fd whose path comes from the inode table.
    fn new_fd(&self, gfid: Gfid, flags: i32, dir: bool) -> FdRef {
        let fd = Fd::new(gfid, flags, dir);
        fd.set_path_source(self.inodes.clone());
        fd
    }

    fn keep_fd(&self, fd: FdRef, g: Arc<Gen>) -> u64 {
        let id = fd.id;
        self.fds.lock().insert(id, (fd, g));
        id
    }

    fn drop_fd(&self, fh: u64) -> Option<(FdRef, Arc<Gen>)> {
        self.locked.lock().remove(&fh);
        self.dir_ahead.lock().remove(&fh);
        self.fds.lock().remove(&fh)
    }

    /// Moves open file `fh` (`fd` on graph `g`) to graph `cur`, its requests held (see
    /// [`Inner::fd_ready`]): waits for the requests already using it to end (at most 30 s),
    /// syncs and flushes it on `g` (what write-behind and entry-behind hold goes out, so
    /// none of it can land after the new graph's changes), opens it on `cur` and swaps it
    /// in. False if it stays on `g`.
    async fn move_fd(&self, ctx: &Ctx, fh: u64, fd: &FdRef, g: &Arc<Gen>, cur: &Arc<Gen>) -> bool {
        // The table's reference and ours; anything more is a request still running.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while Arc::strong_count(fd) > 2 && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        if !matches!(self.fds.lock().get(&fh), Some(e) if e.0.id == fd.id)
            || self.locked.lock().contains(&fh)
        {
            return false;
        }
        // An fsync, not only a flush: write-behind answers the flush of a file made behind
        // under a directory lease at once, leaving its writes (and entry-behind its
        // create) to go out later through this graph, possibly after the new graph's own.
        // An fsync waits for both.
        if let Err(e) = g.top.fsync(ctx, fd, true, Xdata::new()).await {
            tracing::warn!(
                "an open file ({}) stays on graph {}: syncing it failed: {e}",
                fd.gfid,
                g.number
            );
            return false;
        }
        if let Err(e) = g.top.flush(ctx, fd, Xdata::new()).await {
            tracing::warn!(
                "an open file ({}) stays on graph {}: flushing it failed: {e}",
                fd.gfid,
                g.number
            );
            return false;
        }
        let flags = fd.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
        let nfd = self.new_fd(fd.gfid, flags, false);
        let mut loc = Loc::inode(fd.gfid);
        loc.path = fd.path();
        if let Err(e) = cur.top.open(ctx, &loc, &nfd, Xdata::new()).await {
            tracing::warn!(
                "an open file ({}) stays on graph {}: opening it on graph {} failed: {e}",
                fd.gfid,
                g.number,
                cur.number
            );
            return false;
        }
        match self.fds.lock().get_mut(&fh) {
            Some(e) if e.0.id == fd.id => {
                *e = (nfd, cur.clone());
                true
            }
            _ => false,
        }
    }

    /// Moves the files open on older graphs to the current one: each is synced and flushed
    /// on its graph (what write-behind holds goes out), opened on the current graph and released
    /// on the old one. A rebalance may move files to bricks only the current graph knows.
    /// Directories and files that asked for locks stay (listing offsets and locks belong to
    /// their graph). Returns how many moved.
    pub async fn migrate_open_files(&self) -> usize {
        let cur = self.cur();
        let olds: Vec<(u64, FdRef, Arc<Gen>)> = {
            let locked = self.locked.lock();
            self.fds
                .lock()
                .iter()
                .filter(|(fh, (fd, g))| !Arc::ptr_eq(g, &cur) && !fd.is_dir && !locked.contains(fh))
                .map(|(fh, (fd, g))| (*fh, fd.clone(), g.clone()))
                .collect()
        };
        let ctx = Ctx::internal();
        let mut moved = 0;
        for (fh, fd, g) in olds {
            self.moving.lock().insert(fh);
            let ok = self.move_fd(&ctx, fh, &fd, &g, &cur).await;
            self.moving.lock().remove(&fh);
            self.moved.notify_waiters();
            if ok {
                let _ = g.top.release(&ctx, &fd, Xdata::new()).await;
                moved += 1;
            }
        }
        moved
    }

    /// Looks `name` up in `parent`.
    pub async fn lookup(&self, ctx: &Ctx, parent: u64, name: &OsStr) -> Result<Iatt, Errno> {
        let loc = self.entry_loc(parent, name)?;
        let (ia, _) = self.cur().top.lookup(ctx, &loc, Xdata::new()).await?;
        self.remember(&ia, parent, name);
        Ok(ia)
    }

    /// Attributes of `ino`, through the open fd `fh` when given.
    pub async fn getattr(&self, ctx: &Ctx, ino: u64, fh: Option<u64>) -> Result<Iatt, Errno> {
        let open = match fh {
            // Not while the file is being moved to a new graph (its old fd is released).
            Some(h) => self.fd_ready(h).await.ok(),
            None => None,
        };
        let ia = if let Some((fd, g)) = open {
            g.top.fstat(ctx, &fd, Xdata::new()).await?.0
        } else {
            let loc = self.inode_loc(ino)?;
            self.cur().top.stat(ctx, &loc, Xdata::new()).await?.0
        };
        self.told(&ia);
        Ok(ia)
    }

    /// setattr of `ino`, through the open fd `fh` when given.
    pub async fn setattr(
        &self,
        ctx: &Ctx,
        ino: u64,
        fh: Option<u64>,
        a: SetAttr,
    ) -> Result<Iatt, Errno> {
        let open = match fh {
            Some(h) => self.fd_ready(h).await.ok(),
            None => None,
        };
        let ia = if let Some((fd, g)) = open {
            g.top.fsetattr(ctx, &fd, &a, Xdata::new()).await?.0
        } else {
            let loc = self.inode_loc(ino)?;
            self.cur().top.setattr(ctx, &loc, &a, Xdata::new()).await?.0
        };
        self.told_as(&ia, a.size.is_some());
        Ok(ia)
    }

    /// Kills the setuid and setgid bits of regular file `ino` as Linux does on a write,
    /// truncate or chown by `caller` (`capable`: it has CAP_FSETID; the kernel leaves this
    /// to the filesystem under FUSE_HANDLE_KILLPRIV_V2), see [`suidgid_to_kill`]. Done as
    /// Weft itself (root): the caller may write the file without owning it; with
    /// `owner_only` nothing is killed for a caller neither root nor the owner. Returns
    /// whether a bit was killed.
    pub async fn kill_suidgid(
        &self,
        ino: u64,
        caller: &Ctx,
        capable: bool,
        owner_only: bool,
    ) -> Result<bool, Errno> {
        let ctx = Ctx::internal();
        let loc = self.inode_loc(ino)?;
        let g = self.cur();
        let ia = g.top.stat(&ctx, &loc, Xdata::new()).await?.0;
        let kill = suidgid_to_kill(ia.mode, capable || in_group(caller, ia.gid));
        if kill == 0 {
            return Ok(false);
        }
        if owner_only && caller.uid != 0 && caller.uid != ia.uid {
            return Ok(false);
        }
        let a = SetAttr {
            mode: Some(ia.mode & 0o7777 & !kill),
            ..SetAttr::default()
        };
        let ia = g.top.setattr(&ctx, &loc, &a, Xdata::new()).await?.0;
        self.told(&ia);
        Ok(true)
    }

    /// Target of symlink `ino`.
    pub async fn readlink(&self, ctx: &Ctx, ino: u64) -> Result<Vec<u8>, Errno> {
        use std::os::unix::ffi::OsStringExt;
        let loc = self.inode_loc(ino)?;
        let (p, _) = self.cur().top.readlink(ctx, &loc, Xdata::new()).await?;
        Ok(p.into_os_string().into_vec())
    }

    /// mknod in `parent`.
    pub async fn mknod(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u64,
    ) -> Result<Iatt, Errno> {
        let _changing = self.fresh.dir_changing();
        let loc = self.entry_loc(parent, name)?;
        let (_, xd) = weft_core::gfid_req_xdata();
        let (ia, _) = self
            .cur()
            .top
            .mknod(ctx, &loc, mode, rdev, umask, xd)
            .await?;
        self.remember(&ia, parent, name);
        Ok(ia)
    }

    /// mkdir in `parent`.
    pub async fn mkdir(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<Iatt, Errno> {
        let _changing = self.fresh.dir_changing();
        let loc = self.entry_loc(parent, name)?;
        let (_, xd) = weft_core::gfid_req_xdata();
        let (ia, _) = self.cur().top.mkdir(ctx, &loc, mode, umask, xd).await?;
        self.remember(&ia, parent, name);
        Ok(ia)
    }

    /// symlink `name` -> `target` in `parent`.
    pub async fn symlink(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        target: &std::path::Path,
    ) -> Result<Iatt, Errno> {
        let _changing = self.fresh.dir_changing();
        let loc = self.entry_loc(parent, name)?;
        let (_, xd) = weft_core::gfid_req_xdata();
        let (ia, _) = self.cur().top.symlink(ctx, target, &loc, 0, xd).await?;
        self.remember(&ia, parent, name);
        Ok(ia)
    }

    /// Hard link of `ino` as `name` in `parent`.
    pub async fn link(
        &self,
        ctx: &Ctx,
        ino: u64,
        parent: u64,
        name: &OsStr,
    ) -> Result<Iatt, Errno> {
        let _changing = self.fresh.dir_changing();
        let old = self.inode_loc(ino)?;
        let new = self.entry_loc(parent, name)?;
        let (ia, _) = self.cur().top.link(ctx, &old, &new, Xdata::new()).await?;
        self.remember(&ia, parent, name);
        Ok(ia)
    }

    /// unlink or rmdir of `name` in `parent`.
    pub async fn remove(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        dir: bool,
    ) -> Result<(), Errno> {
        let _changing = self.fresh.dir_changing();
        let mut loc = self.entry_loc(parent, name)?;
        // The inode the kernel knows by that name, as a hint (a cluster translator can
        // then go straight to where the file lives; the name decides what is removed).
        loc.gfid = self
            .inodes
            .child(parent, name)
            .and_then(|i| self.inodes.gfid(i));
        if dir {
            self.cur().top.rmdir(ctx, &loc, Xdata::new()).await?;
        } else {
            self.cur().top.unlink(ctx, &loc, Xdata::new()).await?;
        }
        self.inodes.removed(parent, name);
        Ok(())
    }

    /// rename with renameat2 `flags`.
    pub async fn rename(
        &self,
        ctx: &Ctx,
        p: u64,
        name: &OsStr,
        np: u64,
        nname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let _changing = self.fresh.dir_changing();
        let old = self.entry_loc(p, name)?;
        let new = self.entry_loc(np, nname)?;
        self.cur()
            .top
            .rename(ctx, &old, &new, flags, Xdata::new())
            .await?;
        // The kernel moves its dentries without asking again: paths must follow here.
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        self.inodes.renamed(p, name, np, nname, exchange);
        Ok(())
    }

    /// Opens `ino`; returns the file handle.
    pub async fn open(&self, ctx: &Ctx, ino: u64, flags: i32, dir: bool) -> Result<u64, Errno> {
        let loc = self.inode_loc(ino)?;
        let gfid = loc.gfid.ok_or(Errno(libc::ESTALE))?;
        let fd = self.new_fd(gfid, flags, dir);
        let g = self.cur();
        if dir {
            g.top.opendir(ctx, &loc, &fd, Xdata::new()).await?;
        } else {
            // The name the inode table knows it by, for content lookups (NAME_HINT_KEY).
            let mut xd = Xdata::new();
            if let Some((parent, name)) = self.inodes.link(ino) {
                xd.set(
                    weft_core::NAME_HINT_KEY,
                    weft_core::name_hint(parent, &name),
                );
            }
            g.top.open(ctx, &loc, &fd, xd).await?;
        }
        Ok(self.keep_fd(fd, g))
    }

    /// Creates and opens `name` in `parent`; returns its attributes and file handle.
    pub async fn create(
        &self,
        ctx: &Ctx,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> Result<(Iatt, u64), Errno> {
        let _changing = self.fresh.dir_changing();
        let loc = self.entry_loc(parent, name)?;
        let (g, xd) = weft_core::gfid_req_xdata();
        let fd = self.new_fd(g, flags, false);
        let gen = self.cur();
        let (ia, _) = gen.top.create(ctx, &loc, &fd, mode, umask, xd).await?;
        let fd = if ia.gfid == g {
            fd
        } else {
            // The name already existed (no O_EXCL): reopen under the inode's own gfid.
            gen.top.release(ctx, &fd, Xdata::new()).await.ok();
            let fd2 = self.new_fd(
                ia.gfid,
                flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC),
                false,
            );
            let mut at = Loc::inode(ia.gfid);
            at.path = loc.path.clone();
            gen.top.open(ctx, &at, &fd2, Xdata::new()).await?;
            fd2
        };
        self.remember(&ia, parent, name);
        Ok((ia, self.keep_fd(fd, gen)))
    }

    /// Reads from an open file.
    pub async fn read(&self, ctx: &Ctx, fh: u64, offset: u64, size: u32) -> Result<Bytes, Errno> {
        let (fd, g) = self.fd_ready(fh).await?;
        Ok(g.top.readv(ctx, &fd, size, offset, Xdata::new()).await?.0)
    }

    /// Writes to an open file; `from_cache` when the kernel writes back cached pages
    /// (FUSE_WRITE_CACHE: always at their own offset).
    pub async fn write(
        &self,
        ctx: &Ctx,
        fh: u64,
        offset: u64,
        data: Bytes,
        from_cache: bool,
    ) -> Result<u64, Errno> {
        let (fd, g) = self.fd_ready(fh).await?;
        let mut xd = Xdata::new();
        if self.is_append(&fd, offset, from_cache) {
            xd.set(weft_core::WRITE_APPEND_KEY, Vec::new());
        }
        let n = g.top.writev(ctx, &fd, data, offset, xd).await?.0;
        self.grew(fd.gfid, offset + n);
        Ok(n)
    }

    /// flush, fsync or fsyncdir.
    pub async fn sync(&self, ctx: &Ctx, fh: u64, what: SyncKind) -> Result<(), Errno> {
        let (fd, g) = self.fd_ready(fh).await?;
        match what {
            SyncKind::Flush
                if fd.flags & libc::O_ACCMODE == libc::O_RDONLY
                    && !self.lock_inodes.lock().contains(&fd.gfid) =>
            {
                ((), Xdata::new())
            }
            SyncKind::Flush => g.top.flush(ctx, &fd, Xdata::new()).await?,
            SyncKind::File(ds) => g.top.fsync(ctx, &fd, ds, Xdata::new()).await?,
            SyncKind::Dir(ds) => g.top.fsyncdir(ctx, &fd, ds, Xdata::new()).await?,
        };
        Ok(())
    }

    /// release or releasedir: the kernel is done with `fh`.
    pub async fn release(&self, ctx: &Ctx, fh: u64) -> Result<(), Errno> {
        let _ = self.fd_ready(fh).await;
        let Some((fd, g)) = self.drop_fd(fh) else {
            return Ok(());
        };
        if fd.is_dir {
            g.top.releasedir(ctx, &fd, Xdata::new()).await?;
        } else {
            g.top.release(ctx, &fd, Xdata::new()).await?;
        }
        Ok(())
    }

    /// Directory entries after `offset`. A graph call brings [`READDIR_AHEAD`] bytes of
    /// entries, which serve the kernel's next requests; when it came back full, the next
    /// call is made at once in the background, so the bricks read the following entries
    /// while the kernel takes these.
    pub async fn readdir(
        &self,
        ctx: &Ctx,
        fh: u64,
        offset: u64,
        plus: bool,
    ) -> Result<Vec<Dirent>, Errno> {
        let (fd, g) = self.fd_ready(fh).await?;
        let mut next = None;
        if offset != 0 {
            let mut ahead = self.dir_ahead.lock();
            if let Some(a) = ahead.get_mut(&fh) {
                if let Some(rest) = a.after(offset, plus, self.fresh.dir_seq()) {
                    return Ok(rest);
                }
                if a.next
                    .as_ref()
                    .is_some_and(|n| n.from == offset && n.plus == plus)
                {
                    next = a.next.take();
                }
            }
        }
        if let Some(n) = next {
            let (seq, from) = (n.seq, n.from);
            // A change or an invalidation since it was asked for: asked again below.
            if let Ok(Ok(entries)) = n.answer.await {
                if seq == self.fresh.dir_seq() {
                    self.read_ahead(ctx, fh, &fd, &g, seq, plus, from, &entries);
                    return Ok(entries);
                }
            }
        }
        let start = self.fresh.dir_seq();
        let r = if plus {
            g.top
                .readdirp(ctx, &fd, READDIR_AHEAD, offset, Xdata::new())
                .await?
        } else {
            g.top
                .readdir(ctx, &fd, READDIR_AHEAD, offset, Xdata::new())
                .await?
        };
        self.read_ahead(ctx, fh, &fd, &g, start, plus, offset, &r.0);
        Ok(r.0)
    }

    /// Keeps `entries` (read from `from` when the count was `seq`) for the kernel's next
    /// requests on `fh`, and, when they filled the call, asks for the ones after them.
    #[allow(clippy::too_many_arguments)]
    fn read_ahead(
        &self,
        ctx: &Ctx,
        fh: u64,
        fd: &FdRef,
        g: &Arc<Gen>,
        seq: u64,
        plus: bool,
        from: u64,
        entries: &[Dirent],
    ) {
        let full = listing_bytes(entries, plus) + MAX_ENTRY_BYTES > READDIR_AHEAD as usize;
        let next = match entries.last() {
            Some(last) if full => {
                let (tx, answer) = tokio::sync::oneshot::channel();
                let (top, fd, ctx, at) = (g.top.clone(), fd.clone(), ctx.clone(), last.offset);
                g.rt.spawn(async move {
                    let r = if plus {
                        top.readdirp(&ctx, &fd, READDIR_AHEAD, at, Xdata::new())
                            .await
                    } else {
                        top.readdir(&ctx, &fd, READDIR_AHEAD, at, Xdata::new())
                            .await
                    };
                    let _ = tx.send(r.map(|(e, _)| e));
                });
                Some(NextChunk {
                    seq,
                    plus,
                    from: at,
                    answer,
                })
            }
            _ => None,
        };
        let ahead = DirAhead {
            seq,
            plus,
            from,
            entries: entries.to_vec(),
            next,
        };
        self.dir_ahead.lock().insert(fh, ahead);
    }

    /// statfs of the volume.
    pub async fn statfs(&self, ctx: &Ctx) -> Result<StatVfs, Errno> {
        Ok(self
            .cur()
            .top
            .statfs(ctx, &Loc::root(), Xdata::new())
            .await?
            .0)
    }

    /// One xattr's value, or all names (`None`), of `ino`.
    pub async fn getxattr(
        &self,
        ctx: &Ctx,
        ino: u64,
        name: Option<&str>,
    ) -> Result<XattrMap, Errno> {
        if ino == 1 && name == Some(STATEDUMP_XATTR) {
            let mut m = XattrMap::new();
            m.insert(STATEDUMP_XATTR.into(), self.statedump().into_bytes());
            return Ok(m);
        }
        let loc = self.inode_loc(ino)?;
        Ok(self
            .cur()
            .top
            .getxattr(ctx, &loc, name, Xdata::new())
            .await?
            .0)
    }

    /// Sets one xattr of `ino`.
    pub async fn setxattr(
        &self,
        ctx: &Ctx,
        ino: u64,
        name: &str,
        value: &[u8],
        flags: i32,
    ) -> Result<(), Errno> {
        let loc = self.inode_loc(ino)?;
        let mut m = XattrMap::new();
        m.insert(name.to_string(), value.to_vec());
        self.cur()
            .top
            .setxattr(ctx, &loc, &m, flags, Xdata::new())
            .await?;
        Ok(())
    }

    /// Removes one xattr of `ino`.
    pub async fn removexattr(&self, ctx: &Ctx, ino: u64, name: &str) -> Result<(), Errno> {
        let loc = self.inode_loc(ino)?;
        self.cur()
            .top
            .removexattr(ctx, &loc, name, Xdata::new())
            .await?;
        Ok(())
    }

    /// access(2) check of `ino`.
    pub async fn access(&self, ctx: &Ctx, ino: u64, mask: u32) -> Result<(), Errno> {
        let loc = self.inode_loc(ino)?;
        self.cur().top.access(ctx, &loc, mask, Xdata::new()).await?;
        Ok(())
    }

    /// fallocate on an open file, with the application's mode flags passed through.
    pub async fn fallocate(
        &self,
        ctx: &Ctx,
        fh: u64,
        offset: u64,
        len: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        let (fd, g) = self.fd_ready(fh).await?;
        g.top
            .fallocate(ctx, &fd, mode, offset, len, Xdata::new())
            .await?;
        if mode & libc::FALLOC_FL_KEEP_SIZE == 0 {
            self.grew(fd.gfid, offset + len);
        }
        Ok(())
    }

    /// SEEK_DATA / SEEK_HOLE on an open file.
    pub async fn lseek(&self, ctx: &Ctx, fh: u64, offset: i64, whence: i32) -> Result<i64, Errno> {
        let (fd, g) = self.fd_ready(fh).await?;
        let what = match whence {
            libc::SEEK_DATA => weft_core::SeekWhat::Data,
            libc::SEEK_HOLE => weft_core::SeekWhat::Hole,
            _ => return Err(Errno::EINVAL),
        };
        if offset < 0 {
            return Err(Errno::ENXIO);
        }
        Ok(g.top
            .seek(ctx, &fd, offset as u64, what, Xdata::new())
            .await?
            .0 as i64)
    }

    /// A statedump of the current graph (and the numbers of older ones still in use).
    pub fn statedump(&self) -> String {
        let cur = self.cur();
        let mut older: Vec<u64> = self
            .fds
            .lock()
            .values()
            .filter(|(_, g)| g.number != cur.number)
            .map(|(_, g)| g.number)
            .collect();
        older.sort_unstable();
        older.dedup();
        let mut out = String::new();
        if cur.number > 1 {
            out.push_str(&format!("[graph]\ncurrent = {}\n", cur.number));
            if !older.is_empty() {
                out.push_str(&format!("older, kept for open files = {older:?}\n"));
            }
        }
        out.push_str(&cur.volume.graph().statedump());
        out
    }

    /// Drops every fd still open (at unmount) and tears every graph down.
    pub async fn shutdown(&self) {
        let fds: Vec<(FdRef, Arc<Gen>)> = self.fds.lock().drain().map(|(_, f)| f).collect();
        let ctx = Ctx::internal();
        let mut gens: Vec<Arc<Gen>> = vec![self.cur()];
        for (fd, g) in fds {
            let _ = if fd.is_dir {
                g.top.releasedir(&ctx, &fd, Xdata::new()).await
            } else {
                g.top.release(&ctx, &fd, Xdata::new()).await
            };
            if !gens.iter().any(|x| Arc::ptr_eq(x, &g)) {
                gens.push(g);
            }
        }
        for g in gens {
            g.close().await;
        }
    }

    /// A POSIX lock request on open file `fh` (fcntl F_GETLK/F_SETLK/F_SETLKW).
    pub async fn lk(
        &self,
        ctx: &Ctx,
        fh: u64,
        cmd: LkCmd,
        lock: &Flock,
        flock: bool,
    ) -> Result<Flock, Errno> {
        let (fd, g) = self.fd_ready(fh).await?;
        let mut xd = Xdata::new();
        if flock {
            xd.set(weft_core::LK_FLOCK_KEY, Vec::new());
        }
        if cmd != LkCmd::Get && lock.kind != weft_core::LockType::Unlock {
            self.locked.lock().insert(fh);
        }
        self.lock_inodes.lock().insert(fd.gfid);
        Ok(g.top.lk(ctx, &fd, cmd, lock, xd).await?.0)
    }
}

/// Bytes of directory entries asked of the graph at once: the kernel asks for one page
/// (about 25 entries with attributes) per request, so one graph call serves about 16.
const READDIR_AHEAD: u32 = 64 * 1024;

/// What one graph call of a listing brought beyond what the kernel took yet.
struct DirAhead {
    /// The count of invalidations and of this mount's entry changes when it was asked
    /// for: stale once either moves (entries it holds may be gone or changed).
    seq: u64,
    plus: bool,
    /// The offset it was read from.
    from: u64,
    entries: Vec<Dirent>,
    /// The graph call for the entries after these, made before the kernel asks.
    next: Option<NextChunk>,
}

/// A listing's next graph call, made ahead of the kernel.
struct NextChunk {
    /// As [`DirAhead::seq`], when it was asked for.
    seq: u64,
    plus: bool,
    /// The offset it reads from (the last entry before it).
    from: u64,
    answer: tokio::sync::oneshot::Receiver<Result<Vec<Dirent>, Errno>>,
}

/// The most bytes one entry counts for in a listing's size (a 255-byte name with
/// attributes): a call whose entries come within this of the size asked was cut short
/// by the size, not by the end of the directory.
const MAX_ENTRY_BYTES: usize = Dirent::cost(255, true);

/// The bytes the bricks count `entries` for against the size asked ([`Dirent::cost`]).
fn listing_bytes(entries: &[Dirent], plus: bool) -> usize {
    entries
        .iter()
        .map(|e| Dirent::cost(e.name.len(), plus))
        .sum()
}

impl DirAhead {
    /// The entries after the one at `offset` (the kernel's resume point), when this
    /// listing has them and nothing was invalidated since (`seq`); `None`: ask the graph.
    fn after(&self, offset: u64, plus: bool, seq: u64) -> Option<Vec<Dirent>> {
        if self.seq != seq || self.plus != plus {
            return None;
        }
        let at = if offset == self.from {
            0
        } else {
            self.entries.iter().position(|d| d.offset == offset)? + 1
        };
        // Past the last entry read: the graph says whether there is more.
        (at < self.entries.len()).then(|| self.entries[at..].to_vec())
    }
}

/// Which kind of sync a request asks for.
#[derive(Clone, Copy, Debug)]
pub enum SyncKind {
    /// close(2) of one descriptor.
    Flush,
    /// fsync (true: fdatasync) of a file.
    File(bool),
    /// fsync of a directory.
    Dir(bool),
}

/// The bits of `mode` a write, truncate or chown kills on Linux (the kernel's
/// `setattr_should_drop_suidgid`): on regular files setuid, and setgid when the file is
/// group-executable or the caller is neither in the file's group nor capable
/// (`in_group_or_capable`); setgid without group execute otherwise stays (it marks
/// mandatory locking).
pub(crate) fn suidgid_to_kill(mode: u32, in_group_or_capable: bool) -> u32 {
    if mode & libc::S_IFMT != libc::S_IFREG {
        return 0;
    }
    let mut kill = mode & libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || !in_group_or_capable) {
        kill |= libc::S_ISGID;
    }
    kill
}

/// Whether `caller` is in group `gid`: its own group, or one of its process's
/// supplementary groups (`/proc/PID/status`; a process gone counts as not in it, so
/// setgid is killed rather than kept).
fn in_group(caller: &Ctx, gid: u32) -> bool {
    if caller.gid == gid {
        return true;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", caller.pid)) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

#[cfg(test)]
mod tests {
    use super::SizeHistory;

    /// The kernel may have ignored a getattr answer (1000) that crossed its own write
    /// ending at 640: both are sizes it may hold; a write grows every size it may hold.
    #[test]
    fn a_size_history_keeps_the_sizes_the_kernel_may_hold() {
        let mut h = SizeHistory::default();
        assert!(!h.has(0));
        h.note(576);
        h.note(1000);
        h.grew(640);
        assert!(h.has(1000) && h.has(640));
        assert!(!h.has(576), "grown past by the kernel's write");
        assert!(!h.has(320), "a size never given");
        h.grew(1200);
        assert!(h.has(1200) && !h.has(1000) && !h.has(640));
        for s in 0..8 {
            h.note(10_000 + s);
        }
        assert!(!h.has(576), "only the last eight are kept");
        assert!(h.has(10_000) && h.has(10_007));
        h.note(10_003);
        assert!(h.has(10_000), "a size already there takes no new slot");
    }
}
