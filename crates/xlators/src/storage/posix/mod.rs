//! `storage/posix`: serves a brick directory. Every FOP is implemented here over plain
//! files at their own paths; see [`brick`] for the on-disk layout.
//!
//! Blocking filesystem calls go through [`weft_core::blocking::run_blocking`]: inline on
//! threads made to wait (FUSE request threads), on tokio's blocking pool elsewhere, so a
//! slow disk never stalls the threads that carry other FOPs.

pub mod attr;
pub mod brick;
pub mod check;
pub mod dir;
pub mod entry;
pub mod io;
pub mod reap;
pub mod sys;
pub mod xattr_at;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use weft_core::options::{OptionKind, OptionSpec};
use weft_core::{
    Checksum, Ctx, Dirent, EntrylkCmd, EntrylkType, Errno, FdRef, Flock, Fop, Gfid, Iatt, LkCmd,
    Loc, SeekWhat, SetAttr, StatVfs, XattrMap, XattropOp, Xdata, Xlator, XlatorInit, XlatorRef,
    XlatorType, GFID_REQ_KEY, LOOKUP_XATTRS_KEY, NAME_HINT_KEY, QUICK_READ_CONTENT_KEY,
    QUICK_READ_KEY, UNLINK_GFID_KEY,
};

use attr::Target;
use brick::Brick;
use dir::PosixDir;
use io::PosixFile;
use std::os::fd::AsFd;
use sys::Pin;

/// The most content a `lookup` carries for [`QUICK_READ_KEY`], whatever the caller asks.
pub const QUICK_READ_MAX: u64 = 1 << 20;

/// The whole content of the regular file `g` if it is no larger than `max`, with its
/// attributes taken after the read, when they show the file did not change while it was
/// read (size, mtime and ctime the same before and after; tried twice). `None` on any
/// error, a file too large or not regular, or one that kept changing.
fn quick_read(b: &Brick, g: Gfid, max: u64, via: Option<&Pin>) -> Option<(Iatt, Vec<u8>)> {
    let f = match via {
        Some(node) => io::PosixFile {
            fd: node.reopen(rustix::fs::OFlags::RDONLY).ok()?,
            gfid: g,
        },
        None => b.open_file(&Loc::inode(g), libc::O_RDONLY).ok()?,
    };
    let same = |x: &rustix::fs::Stat, y: &rustix::fs::Stat| {
        x.st_size == y.st_size
            && x.st_mtime == y.st_mtime
            && x.st_mtime_nsec == y.st_mtime_nsec
            && x.st_ctime == y.st_ctime
            && x.st_ctime_nsec == y.st_ctime_nsec
    };
    for _ in 0..2 {
        let before = rustix::fs::fstat(&f.fd).ok()?;
        let size = u64::try_from(before.st_size).ok()?;
        if before.st_mode & libc::S_IFMT != libc::S_IFREG || size > max {
            return None;
        }
        // One byte more than the size: a file that grew meanwhile reads longer.
        let want = u32::try_from(size + 1).ok()?;
        let data = f.read(want, 0).ok()?;
        let after = rustix::fs::fstat(&f.fd).ok()?;
        if same(&before, &after) && data.len() as u64 == size {
            return Some((brick::iatt(g, &after), Vec::from(data)));
        }
    }
    None
}

/// Inode `g` reached by the name `hint` gives ([`NAME_HINT_KEY`]) when that name still
/// holds it: through its parent directory, whose blocks its files share, rather than the
/// gfid's handle directory (one more directory to read per file when caches are cold).
/// Only a regular file known to be the inode `g`'s handle stands for (not a copy carrying
/// the same gfid xattr, not a file whose handle is missing). `None` (use the handle) for
/// anything else.
fn hinted(b: &Brick, g: Gfid, hint: &[u8]) -> Option<Pin> {
    let (parent, name) = weft_core::parse_name_hint(hint)?;
    let (dir, name) = b.entry(&Loc::entry(parent, name)).ok()?;
    let node = Pin::at(dir.fd.as_fd(), &name).ok()?;
    (node.kind() == libc::S_IFREG && b.is_known_handle_of(&g, &node.st) && node.gfid() == Some(g))
        .then_some(node)
}

/// The posix translator: one brick directory.
pub struct Posix {
    name: String,
    brick: Arc<Brick>,
    /// Serialises xattrop read-modify-writes.
    xattrop_lock: Arc<Mutex<()>>,
    /// Open files by gfid, so an inode whose last name is gone stays reachable while open.
    open_files: Mutex<HashMap<Gfid, Vec<Weak<PosixFile>>>>,
}

/// Writes up to this size run in place on a brick's runtime worker ([`run_short`]): they
/// land in the page cache in microseconds, less than handing the worker on would cost
/// (4 KiB random writes over loopback: about 14,000 -> 18,000-20,700 per second).
///
/// [`run_short`]: weft_core::blocking::run_short
const SHORT_WRITE: usize = 64 * 1024;

impl Posix {
    /// Opens the brick at `dir`; the error is a sentence for the operator.
    pub fn new(name: &str, dir: &Path) -> Result<Posix, String> {
        Ok(Posix {
            name: name.to_string(),
            brick: Arc::new(Brick::open(dir)?),
            xattrop_lock: Arc::new(Mutex::new(())),
            open_files: Mutex::new(HashMap::new()),
        })
    }

    async fn run<T, F>(&self, f: F) -> Fop<T>
    where
        T: Send + 'static,
        F: FnOnce(&Brick) -> Result<T, Errno> + Send + 'static,
    {
        let b = self.brick.clone();
        weft_core::blocking::run_blocking(move || f(&b))
            .await
            .map(|v| (v, Xdata::new()))
    }

    /// Runs an entry change, then stats directory `parent` for the reply's
    /// [`weft_core::POSTPARENT_KEY`].
    async fn run_entry<T, F>(&self, parent: Option<Gfid>, f: F) -> Fop<T>
    where
        T: Send + 'static,
        F: FnOnce(&Brick) -> Result<T, Errno> + Send + 'static,
    {
        self.run_entry_in(parent, None, f).await
    }

    /// [`Posix::run_entry`] for a change in two directories (a rename): `old_parent`'s
    /// attributes go under [`weft_core::POSTOLDPARENT_KEY`] when it is another directory.
    async fn run_entry_in<T, F>(
        &self,
        parent: Option<Gfid>,
        old_parent: Option<Gfid>,
        f: F,
    ) -> Fop<T>
    where
        T: Send + 'static,
        F: FnOnce(&Brick) -> Result<T, Errno> + Send + 'static,
    {
        let b = self.brick.clone();
        weft_core::blocking::run_blocking(move || {
            let v = f(&b)?;
            let mut xd = Xdata::new();
            let old_parent = old_parent.filter(|o| Some(*o) != parent);
            for (key, p) in [
                (weft_core::POSTPARENT_KEY, parent),
                (weft_core::POSTOLDPARENT_KEY, old_parent),
            ] {
                if let Some(ia) = p.and_then(|p| b.stat(&Loc::inode(p)).ok()) {
                    xd.set(key, ia.to_bytes());
                }
            }
            Ok((v, xd))
        })
        .await
    }

    fn track_open(&self, f: &Arc<PosixFile>) {
        let mut m = self.open_files.lock();
        let v = m.entry(f.gfid).or_default();
        v.retain(|w| w.strong_count() > 0);
        v.push(Arc::downgrade(f));
    }

    fn untrack_open(&self, g: Gfid) {
        let mut m = self.open_files.lock();
        if let Some(v) = m.get_mut(&g) {
            v.retain(|w| w.strong_count() > 0);
            if v.is_empty() {
                m.remove(&g);
            }
        }
    }

    /// An open file of the inode `loc` names, if any.
    fn open_file_of(&self, loc: &Loc) -> Option<Arc<PosixFile>> {
        let g = loc.gfid?;
        self.open_files
            .lock()
            .get(&g)?
            .iter()
            .find_map(Weak::upgrade)
    }

    /// Runs `by_path`; if the inode has no name left (ESTALE, or ENOENT) but is still open,
    /// runs `by_fd` on one of its open files instead (fstat/fchmod/... of unlinked files).
    async fn path_or_open_fd<T, P, F>(&self, loc: &Loc, by_path: P, by_fd: F) -> Fop<T>
    where
        T: Send + 'static,
        P: FnOnce(&Brick) -> Result<T, Errno> + Send + 'static,
        F: FnOnce(&PosixFile) -> Result<T, Errno> + Send + 'static,
    {
        match self.run(by_path).await {
            Err(e) if e == Errno::ESTALE || e == Errno::ENOENT => match self.open_file_of(loc) {
                Some(f) => self.run(move |_| by_fd(&f)).await,
                None => Err(e),
            },
            r => r,
        }
    }

    fn file(&self, fd: &FdRef) -> Result<Arc<PosixFile>, Errno> {
        fd.ctx::<PosixFile>(&self.name).ok_or(Errno::EBADF)
    }

    fn dir(&self, fd: &FdRef) -> Result<Arc<PosixDir>, Errno> {
        fd.ctx::<PosixDir>(&self.name).ok_or(Errno::EBADF)
    }

    async fn with_file<T, F>(&self, fd: &FdRef, f: F) -> Fop<T>
    where
        T: Send + 'static,
        F: FnOnce(&PosixFile) -> Result<T, Errno> + Send + 'static,
    {
        let file = self.file(fd)?;
        self.run(move |_| f(&file)).await
    }
}

/// The reply of a flush, fsync, release or writev asked for [`weft_core::POSTSTAT_KEY`]: nothing,
/// with the file's attributes in the xdata.
fn poststat((ia, _): (Iatt, Xdata)) -> ((), Xdata) {
    ((), poststat_xd(ia))
}

/// Xdata holding `ia` under [`weft_core::POSTSTAT_KEY`].
fn poststat_xd(ia: Iatt) -> Xdata {
    let mut out = Xdata::new();
    out.set(weft_core::POSTSTAT_KEY, ia.to_bytes());
    out
}

#[async_trait]
impl Xlator for Posix {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &[]
    }
    fn dump(&self) -> String {
        format!("directory = {}\n", self.brick.root.display())
    }

    async fn lookup(&self, _: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let loc = loc.clone();
        let prefix = xd
            .get(LOOKUP_XATTRS_KEY)
            .map(|p| String::from_utf8_lossy(p).into_owned());
        let quick = xd.get_u64(QUICK_READ_KEY);
        if prefix.is_none() && quick.is_none() {
            return self.run(move |b| b.lookup(&loc)).await;
        }
        let b = self.brick.clone();
        let hint = xd.get(NAME_HINT_KEY).map(|h| h.to_vec());
        weft_core::blocking::run_blocking(move || {
            // A content lookup by gfid with a name to try first.
            let via = match (&hint, loc.gfid, &loc.name, quick) {
                (Some(h), Some(g), None, Some(_)) => hinted(&b, g, h),
                _ => None,
            };
            let mut ia = match (&via, loc.gfid) {
                (Some(node), Some(g)) => brick::iatt(g, &node.st),
                _ => b.lookup(&loc)?,
            };
            let mut out = Xdata::new();
            if let Some(prefix) = prefix {
                let node = b.inode(&Loc::inode(ia.gfid))?;
                for (k, v) in attr::getxattr_prefixed(Target::Pin(&node), &prefix, &xd)? {
                    out.set(k, v);
                }
            }
            if let Some(max) = quick {
                let max = max.min(QUICK_READ_MAX);
                if ia.mode & libc::S_IFMT == libc::S_IFREG && ia.size <= max {
                    if let Some((now, content)) = quick_read(&b, ia.gfid, max, via.as_ref()) {
                        ia = now;
                        out.set(QUICK_READ_CONTENT_KEY, content);
                    }
                }
            }
            Ok((ia, out))
        })
        .await
    }
    async fn stat(&self, _: &Ctx, loc: &Loc, _: Xdata) -> Fop<Iatt> {
        let l = loc.clone();
        self.path_or_open_fd(loc, move |b| b.stat(&l), |f| f.fstat())
            .await
    }
    async fn fstat(&self, _: &Ctx, fd: &FdRef, _: Xdata) -> Fop<Iatt> {
        if fd.is_dir {
            return self
                .stat(&Ctx::internal(), &Loc::inode(fd.gfid), Xdata::new())
                .await;
        }
        self.with_file(fd, |f| f.fstat()).await
    }
    async fn access(&self, ctx: &Ctx, loc: &Loc, mask: u32, _: Xdata) -> Fop<()> {
        let (loc, ctx) = (loc.clone(), ctx.clone());
        self.run(move |b| attr::access(Target::Pin(&b.inode(&loc)?), &ctx, mask))
            .await
    }
    async fn setattr(&self, _: &Ctx, loc: &Loc, a: &SetAttr, _: Xdata) -> Fop<Iatt> {
        let (l, a) = (loc.clone(), *a);
        self.path_or_open_fd(
            loc,
            move |b| {
                let node = b.inode(&l)?;
                attr::setattr(Target::Pin(&node), &a)?;
                let g = l.gfid.or_else(|| node.gfid()).ok_or(Errno::ENOENT)?;
                Ok(brick::iatt(g, &node.restat()?))
            },
            move |f| {
                use std::os::fd::AsFd;
                attr::setattr(Target::Fd(f.fd.as_fd()), &a)?;
                f.fstat()
            },
        )
        .await
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, a: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        if fd.is_dir {
            return self.setattr(ctx, &Loc::inode(fd.gfid), a, xd).await;
        }
        let a = *a;
        self.with_file(fd, move |f| {
            use std::os::fd::AsFd;
            attr::setattr(Target::Fd(f.fd.as_fd()), &a)?;
            f.fstat()
        })
        .await
    }
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        let a = SetAttr {
            size: Some(size),
            ..SetAttr::default()
        };
        self.setattr(ctx, loc, &a, xd).await
    }
    async fn ftruncate(&self, _: &Ctx, fd: &FdRef, size: u64, _: Xdata) -> Fop<Iatt> {
        self.with_file(fd, move |f| f.truncate(size)).await
    }
    async fn readlink(&self, _: &Ctx, loc: &Loc, _: Xdata) -> Fop<PathBuf> {
        let loc = loc.clone();
        self.run(move |b| b.readlink(&loc)).await
    }
    async fn statfs(&self, _: &Ctx, _: &Loc, _: Xdata) -> Fop<StatVfs> {
        self.run(|b| attr::statfs(b.root_fd())).await
    }

    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        let (loc, ctx, want) = (loc.clone(), ctx.clone(), xd.get_gfid(GFID_REQ_KEY));
        self.run_entry(loc.parent, move |b| b.mkdir(&ctx, &loc, mode, umask, want))
            .await
    }
    async fn rmdir(&self, _: &Ctx, loc: &Loc, _: Xdata) -> Fop<()> {
        let loc = loc.clone();
        self.run_entry(loc.parent, move |b| b.rmdir(&loc)).await
    }
    async fn unlink(&self, _: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        let (loc, only) = (loc.clone(), xd.get_gfid(UNLINK_GFID_KEY));
        self.run_entry(loc.parent, move |b| b.unlink(&loc, only))
            .await
    }
    async fn rename(&self, _: &Ctx, old: &Loc, new: &Loc, flags: u32, _: Xdata) -> Fop<()> {
        let (old, new) = (old.clone(), new.clone());
        // Both directories' attributes in the reply, so a client's cache need not ask.
        self.run_entry_in(new.parent, old.parent, move |b| b.rename(&old, &new, flags))
            .await
    }
    async fn link(&self, _: &Ctx, old: &Loc, new: &Loc, _: Xdata) -> Fop<Iatt> {
        let (old, new) = (old.clone(), new.clone());
        self.run_entry(new.parent, move |b| b.link(&old, &new))
            .await
    }
    async fn symlink(&self, ctx: &Ctx, target: &Path, loc: &Loc, _: u32, xd: Xdata) -> Fop<Iatt> {
        let (loc, ctx, target, want) = (
            loc.clone(),
            ctx.clone(),
            target.to_path_buf(),
            xd.get_gfid(GFID_REQ_KEY),
        );
        self.run_entry(loc.parent, move |b| b.symlink(&ctx, &target, &loc, want))
            .await
    }
    async fn mknod(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let (loc, ctx, want) = (loc.clone(), ctx.clone(), xd.get_gfid(GFID_REQ_KEY));
        self.run_entry(loc.parent, move |b| {
            b.mknod(&ctx, &loc, mode, rdev, umask, want)
        })
        .await
    }

    async fn open(&self, _: &Ctx, loc: &Loc, fd: &FdRef, _: Xdata) -> Fop<()> {
        let (loc, flags) = (loc.clone(), fd.flags);
        let (file, xd) = self.run(move |b| b.open_file(&loc, flags)).await?;
        let file = Arc::new(file);
        self.track_open(&file);
        fd.set_ctx(&self.name, file);
        Ok(((), xd))
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
        let (loc, ctx, flags, want) = (
            loc.clone(),
            ctx.clone(),
            fd.flags,
            xd.get_gfid(GFID_REQ_KEY),
        );
        let parent = loc.parent;
        let content = xd.get(weft_core::CREATE_CONTENT_KEY).map(<[u8]>::to_vec);
        let poststat = xd.has(weft_core::POSTSTAT_KEY);
        let ((file, ia, wrote), mut xd) = self
            .run_entry(parent, move |b| {
                let (fd, ia, wrote) =
                    b.create(&ctx, &loc, flags, mode, umask, want, content.as_deref())?;
                Ok((PosixFile { fd, gfid: ia.gfid }, ia, wrote))
            })
            .await?;
        if wrote {
            xd.set(weft_core::CREATE_CONTENT_KEY, Vec::new());
            if poststat {
                xd.set(weft_core::POSTSTAT_KEY, ia.to_bytes());
            }
        }
        let file = Arc::new(file);
        self.track_open(&file);
        fd.set_ctx(&self.name, file);
        Ok((ia, xd))
    }
    async fn readv(&self, _: &Ctx, fd: &FdRef, size: u32, offset: u64, _: Xdata) -> Fop<Bytes> {
        self.with_file(fd, move |f| f.read(size, offset)).await
    }
    async fn writev(&self, _: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let append = xd.has(weft_core::WRITE_APPEND_KEY);
        let poststat = xd.has(weft_core::POSTSTAT_KEY);
        // Not where the write waits for the disk (O_SYNC, O_DSYNC, O_DIRECT): a short one
        // lands in the page cache in microseconds and runs in place (write-behind asks
        // every write it sends for the attributes too: a fstat, as short).
        let to_disk = libc::O_SYNC | libc::O_DSYNC | libc::O_DIRECT;
        let short = data.len() <= SHORT_WRITE && fd.flags & to_disk == 0;
        let file = self.file(fd)?;
        let write = move || -> Result<(u64, Option<Iatt>), Errno> {
            let n = if append {
                file.append(&data)?
            } else {
                file.write(&data, offset)?
            };
            Ok((n, if poststat { Some(file.fstat()?) } else { None }))
        };
        let (n, ia) = if short {
            weft_core::blocking::run_short(write).await?
        } else {
            weft_core::blocking::run_blocking(write).await?
        };
        match ia {
            Some(ia) => Ok((n, poststat_xd(ia))),
            None => Ok((n, Xdata::new())),
        }
    }
    async fn flush(&self, _: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.file(fd)?;
        if !xd.has(weft_core::POSTSTAT_KEY) {
            return Ok(((), Xdata::new()));
        }
        self.with_file(fd, |f| f.fstat()).await.map(poststat)
    }
    async fn fsync(&self, _: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        if !xd.has(weft_core::POSTSTAT_KEY) {
            return self.with_file(fd, move |f| f.sync(datasync)).await;
        }
        self.with_file(fd, move |f| {
            f.sync(datasync)?;
            f.fstat()
        })
        .await
        .map(poststat)
    }
    async fn release(&self, _: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let mut out = ((), Xdata::new());
        if let Some(f) = fd.take_ctx::<PosixFile>(&self.name) {
            let g = f.gfid;
            if xd.has(weft_core::POSTSTAT_KEY) {
                let file = f.clone();
                if let Ok(r) = self.run(move |_| file.fstat()).await {
                    out = poststat(r);
                }
            }
            drop(f);
            self.untrack_open(g);
        }
        Ok(out)
    }
    async fn fallocate(
        &self,
        _: &Ctx,
        fd: &FdRef,
        mode: i32,
        off: u64,
        len: u64,
        _: Xdata,
    ) -> Fop<()> {
        self.with_file(fd, move |f| f.fallocate(mode, off, len))
            .await
    }
    async fn discard(&self, _: &Ctx, fd: &FdRef, off: u64, len: u64, _: Xdata) -> Fop<()> {
        self.with_file(fd, move |f| f.discard(off, len)).await
    }
    async fn zerofill(&self, _: &Ctx, fd: &FdRef, off: u64, len: u64, _: Xdata) -> Fop<()> {
        self.with_file(fd, move |f| f.zerofill(off, len)).await
    }
    async fn seek(&self, _: &Ctx, fd: &FdRef, off: u64, what: SeekWhat, _: Xdata) -> Fop<u64> {
        self.with_file(fd, move |f| f.seek(off, what)).await
    }
    async fn rchecksum(&self, _: &Ctx, fd: &FdRef, off: u64, len: u32, _: Xdata) -> Fop<Checksum> {
        self.with_file(fd, move |f| f.checksum(off, len)).await
    }

    async fn opendir(&self, _: &Ctx, loc: &Loc, fd: &FdRef, _: Xdata) -> Fop<()> {
        let loc = loc.clone();
        let (d, xd) = self.run(move |b| b.opendir(&loc)).await?;
        fd.set_ctx(&self.name, Arc::new(d));
        Ok(((), xd))
    }
    async fn readdir(
        &self,
        _: &Ctx,
        fd: &FdRef,
        size: u32,
        off: u64,
        _: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let d = self.dir(fd)?;
        self.run(move |b| b.readdir(&d, size, off, false, &[]).map(|(e, _)| e))
            .await
    }
    async fn readdirp(
        &self,
        _: &Ctx,
        fd: &FdRef,
        size: u32,
        off: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let d = self.dir(fd)?;
        let want = xd
            .get(weft_core::READDIRP_XATTRS_KEY)
            .and_then(weft_core::EntryXattrs::asked)
            .unwrap_or_default();
        let b = self.brick.clone();
        weft_core::blocking::run_blocking(move || {
            let (entries, found) = b.readdir(&d, size, off, true, &want)?;
            let mut out = Xdata::new();
            if !want.is_empty() {
                let answer = weft_core::EntryXattrs {
                    names: want,
                    entries: found,
                };
                out.set(weft_core::READDIRP_XATTRS_KEY, answer.to_bytes());
            }
            Ok((entries, out))
        })
        .await
    }
    async fn fsyncdir(&self, _: &Ctx, fd: &FdRef, _: bool, _: Xdata) -> Fop<()> {
        let d = self.dir(fd)?;
        self.run(move |b| b.fsyncdir(&d)).await
    }
    async fn releasedir(&self, _: &Ctx, fd: &FdRef, _: Xdata) -> Fop<()> {
        fd.take_ctx::<PosixDir>(&self.name);
        Ok(((), Xdata::new()))
    }

    async fn getxattr(&self, _: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        let (l, name, xd2) = (loc.clone(), name.map(str::to_string), xd.clone());
        let name2 = name.clone();
        self.path_or_open_fd(
            loc,
            move |b| attr::getxattr(Target::Pin(&b.inode(&l)?), name.as_deref(), &xd),
            move |f| {
                use std::os::fd::AsFd;
                attr::getxattr(Target::Fd(f.fd.as_fd()), name2.as_deref(), &xd2)
            },
        )
        .await
    }
    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        match self.file(fd) {
            Ok(f) => {
                let name = name.map(str::to_string);
                self.run(move |_| {
                    use std::os::fd::AsFd;
                    attr::getxattr(Target::Fd(f.fd.as_fd()), name.as_deref(), &xd)
                })
                .await
            }
            Err(_) => self.getxattr(ctx, &Loc::inode(fd.gfid), name, xd).await,
        }
    }
    async fn setxattr(
        &self,
        _: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let (l, attrs, xd2) = (loc.clone(), attrs.clone(), xd.clone());
        let attrs2 = attrs.clone();
        self.path_or_open_fd(
            loc,
            move |b| attr::setxattr(Target::Pin(&b.inode(&l)?), &attrs, flags, &xd),
            move |f| {
                use std::os::fd::AsFd;
                attr::setxattr(Target::Fd(f.fd.as_fd()), &attrs2, flags, &xd2)
            },
        )
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
        match self.file(fd) {
            Ok(f) => {
                let attrs = attrs.clone();
                self.run(move |_| {
                    use std::os::fd::AsFd;
                    attr::setxattr(Target::Fd(f.fd.as_fd()), &attrs, flags, &xd)
                })
                .await
            }
            Err(_) => {
                self.setxattr(ctx, &Loc::inode(fd.gfid), attrs, flags, xd)
                    .await
            }
        }
    }
    async fn removexattr(&self, _: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        let (l, name, xd2) = (loc.clone(), name.to_string(), xd.clone());
        let name2 = name.clone();
        self.path_or_open_fd(
            loc,
            move |b| attr::removexattr(Target::Pin(&b.inode(&l)?), &name, &xd),
            move |f| {
                use std::os::fd::AsFd;
                attr::removexattr(Target::Fd(f.fd.as_fd()), &name2, &xd2)
            },
        )
        .await
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        match self.file(fd) {
            Ok(f) => {
                let name = name.to_string();
                self.run(move |_| {
                    use std::os::fd::AsFd;
                    attr::removexattr(Target::Fd(f.fd.as_fd()), &name, &xd)
                })
                .await
            }
            Err(_) => self.removexattr(ctx, &Loc::inode(fd.gfid), name, xd).await,
        }
    }
    async fn xattrop(
        &self,
        _: &Ctx,
        loc: &Loc,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let (l, attrs, lock) = (loc.clone(), attrs.clone(), self.xattrop_lock.clone());
        let order = attr::xattrop_order(&xd);
        let (attrs2, lock2, order2) = (attrs.clone(), lock.clone(), order.clone());
        self.path_or_open_fd(
            loc,
            move |b| {
                let node = b.inode(&l)?;
                let _g = lock.lock();
                attr::xattrop(Target::Pin(&node), op, &attrs, &order)
            },
            move |f| {
                use std::os::fd::AsFd;
                let _g = lock2.lock();
                attr::xattrop(Target::Fd(f.fd.as_fd()), op, &attrs2, &order2)
            },
        )
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
        match self.file(fd) {
            Ok(f) => {
                let (attrs, lock) = (attrs.clone(), self.xattrop_lock.clone());
                let order = attr::xattrop_order(&xd);
                self.run(move |_| {
                    use std::os::fd::AsFd;
                    let _g = lock.lock();
                    attr::xattrop(Target::Fd(f.fd.as_fd()), op, &attrs, &order)
                })
                .await
            }
            Err(_) => self.xattrop(ctx, &Loc::inode(fd.gfid), op, attrs, xd).await,
        }
    }

    async fn lk(&self, _: &Ctx, _: &FdRef, _: LkCmd, _: &Flock, _: Xdata) -> Fop<Flock> {
        // Locks between clients live in features/locks above this translator.
        Err(Errno::ENOTSUP)
    }
    async fn inodelk(&self, _: &Ctx, _: &str, _: &Loc, _: LkCmd, _: &Flock, _: Xdata) -> Fop<()> {
        Err(Errno::ENOTSUP)
    }
    async fn finodelk(
        &self,
        _: &Ctx,
        _: &str,
        _: &FdRef,
        _: LkCmd,
        _: &Flock,
        _: Xdata,
    ) -> Fop<()> {
        Err(Errno::ENOTSUP)
    }
    async fn entrylk(
        &self,
        _: &Ctx,
        _: &str,
        _: &Loc,
        _: Option<&OsString>,
        _: EntrylkCmd,
        _: EntrylkType,
        _: Xdata,
    ) -> Fop<()> {
        Err(Errno::ENOTSUP)
    }
}

/// The `storage/posix` type for the registry.
pub struct PosixType;

const OPTIONS: &[OptionSpec] = &[OptionSpec {
    key: "directory",
    kind: OptionKind::Path,
    default: None,
    description: "The brick directory: an existing directory on a filesystem with xattr support.",
}];

impl XlatorType for PosixType {
    fn type_name(&self) -> &'static str {
        "storage/posix"
    }
    fn description(&self) -> &'static str {
        "Stores files as plain files under a brick directory, with gfid xattrs and a handle tree."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (0, 0)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(Posix::new(
            &init.name,
            &init.options.path("directory"),
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(max: u64) -> Xdata {
        let mut xd = Xdata::new();
        xd.set_u64(QUICK_READ_KEY, max);
        xd
    }

    /// A posix translator on a new brick holding file `f` with `content`, and `f`'s gfid.
    async fn brick_with_f(content: &[u8]) -> (tempfile::TempDir, Posix, Gfid) {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let p = Posix::new("p", dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), content).unwrap();
        let g = p
            .lookup(&Ctx::internal(), &Loc::entry(Gfid::ROOT, "f"), Xdata::new())
            .await
            .unwrap()
            .0
            .gfid;
        (dir, p, g)
    }

    /// A listing answers each entry's own gfid, attributes and asked xattrs, whether the
    /// brick knows the entry's handle (read without opening it) or not (pinned, and given
    /// a gfid if it had none), also for a name replaced behind the brick's back.
    #[tokio::test]
    async fn a_listing_answers_each_entrys_own_gfid_attributes_and_xattrs() {
        use weft_core::{EntryXattrs, Fd, GFID_XATTR, READDIRP_XATTRS_KEY};
        let (dir, p, gf) = brick_with_f(b"known").await;
        let ctx = Ctx::internal();
        let b = dir.path();
        std::fs::write(b.join("new"), b"never looked up").unwrap();
        std::fs::create_dir(b.join("sub")).unwrap();
        std::fs::write(b.join("other"), b"replaces f").unwrap();
        let go = p
            .lookup(&ctx, &Loc::entry(Gfid::ROOT, "other"), Xdata::new())
            .await
            .unwrap()
            .0
            .gfid;
        // As root, a security xattr on two files: the listing hands each its own.
        let tagged = rustix::fs::setxattr(
            b.join("other").as_path(),
            "security.weft-test",
            b"other's",
            rustix::fs::XattrFlags::empty(),
        )
        .is_ok();
        if tagged {
            rustix::fs::setxattr(
                b.join("new").as_path(),
                "security.weft-test",
                b"new's",
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap();
        }
        // "f" now names the inode that was "other" (whose handle the brick knows).
        std::fs::rename(b.join("other"), b.join("f")).unwrap();
        let fd = Fd::new(Gfid::ROOT, libc::O_RDONLY, false);
        p.opendir(&ctx, &Loc::inode(Gfid::ROOT), &fd, Xdata::new())
            .await
            .unwrap();
        let mut ask = Xdata::new();
        ask.set(
            READDIRP_XATTRS_KEY,
            EntryXattrs::ask(&["security.weft-test"]),
        );
        let (entries, xd) = p.readdirp(&ctx, &fd, 1 << 20, 0, ask).await.unwrap();
        let values = EntryXattrs::from_bytes(xd.get(READDIRP_XATTRS_KEY).unwrap()).unwrap();
        let on_disk = |n: &str| {
            let mut buf = [0u8; 16];
            rustix::fs::lgetxattr(b.join(n).as_path(), GFID_XATTR, &mut buf).unwrap();
            Gfid::from_slice(&buf).unwrap()
        };
        let mut seen = Vec::new();
        for e in &entries {
            let name = String::from_utf8(e.name.clone()).unwrap();
            if name == "." || name == ".." {
                continue;
            }
            let ia = e.iatt.unwrap_or_else(|| panic!("{name}: no attributes"));
            let st = std::fs::symlink_metadata(b.join(&name)).unwrap();
            assert_eq!(ia.gfid, on_disk(&name), "{name}");
            assert_eq!(ia.size, st.len(), "{name}");
            assert_eq!(e.ino, ia.gfid.ino(), "{name}");
            let value = values
                .entries
                .iter()
                .find(|(g, _)| *g == ia.gfid)
                .and_then(|(_, m)| m.get("security.weft-test").cloned());
            let want: Option<&[u8]> = match name.as_str() {
                "f" if tagged => Some(b"other's"),
                "new" if tagged => Some(b"new's"),
                _ => None,
            };
            assert_eq!(value.as_deref(), want, "{name}");
            seen.push(name);
        }
        seen.sort();
        assert_eq!(seen, ["f", "new", "sub"]);
        assert_eq!(on_disk("f"), go);
        assert_ne!(go, gf);
    }

    /// A truncate by gfid of a file whose name went, open here only for reading (another
    /// client's open file), truncates it: it does not fail EINVAL for the fd's mode.
    #[tokio::test]
    async fn a_truncate_of_an_unlinked_file_open_only_for_reading_truncates_it() {
        use weft_core::{Fd, SetAttr};
        let (_dir, p, g) = brick_with_f(b"hello world").await;
        let ctx = Ctx::internal();
        let fd = Fd::new(g, libc::O_RDONLY, false);
        p.open(&ctx, &Loc::inode(g), &fd, Xdata::new())
            .await
            .unwrap();
        p.unlink(
            &ctx,
            &Loc::entry(Gfid::ROOT, "f").with_gfid(g),
            Xdata::new(),
        )
        .await
        .unwrap();
        let a = SetAttr {
            size: Some(5),
            ..SetAttr::default()
        };
        let (ia, _) = p
            .setattr(&ctx, &Loc::inode(g), &a, Xdata::new())
            .await
            .unwrap();
        assert_eq!(ia.size, 5);
        let (data, _) = p.readv(&ctx, &fd, 100, 0, Xdata::new()).await.unwrap();
        assert_eq!(&data[..], b"hello");
    }

    /// A flush or fsync asked for the attributes answers them as they are after the
    /// writes; one not asked answers nothing.
    #[tokio::test]
    async fn flush_and_fsync_answer_the_attributes_when_asked() {
        use weft_core::{Fd, POSTSTAT_KEY};
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let p = Posix::new("p", dir.path()).unwrap();
        let ctx = Ctx::internal();
        let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
        let mut req = Xdata::new();
        req.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
        let (ia, _) = p
            .create(&ctx, &Loc::entry(Gfid::ROOT, "f"), &fd, 0o644, 0, req)
            .await
            .unwrap();
        p.writev(
            &ctx,
            &fd,
            bytes::Bytes::from_static(b"hello"),
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
        let mut ask = Xdata::new();
        ask.set(POSTSTAT_KEY, Vec::new());
        let (_, xd) = p.flush(&ctx, &fd, ask.clone()).await.unwrap();
        let post = Iatt::from_bytes(xd.get(POSTSTAT_KEY).unwrap()).unwrap();
        assert_eq!((post.gfid, post.size), (ia.gfid, 5));
        p.writev(&ctx, &fd, bytes::Bytes::from_static(b"!"), 5, Xdata::new())
            .await
            .unwrap();
        let (_, xd) = p.fsync(&ctx, &fd, false, ask).await.unwrap();
        assert_eq!(
            Iatt::from_bytes(xd.get(POSTSTAT_KEY).unwrap())
                .unwrap()
                .size,
            6
        );
        let (_, xd) = p.flush(&ctx, &fd, Xdata::new()).await.unwrap();
        assert!(!xd.has(POSTSTAT_KEY));
    }

    /// A create with content writes it into the file it makes and says so, answering the
    /// attributes with it; a create that opens a name that existed leaves its content
    /// alone and does not say so.
    #[tokio::test]
    async fn a_create_with_content_writes_it_only_into_the_file_it_makes() {
        use weft_core::{Fd, CREATE_CONTENT_KEY, POSTSTAT_KEY};
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let p = Posix::new("p", dir.path()).unwrap();
        let ctx = Ctx::internal();
        let create = |flags: i32, gfid: Gfid, content: &[u8]| {
            let fd = Fd::new(gfid, flags, false);
            let mut req = Xdata::new();
            req.set(GFID_REQ_KEY, gfid.0.to_vec());
            req.set(CREATE_CONTENT_KEY, content.to_vec());
            req.set(POSTSTAT_KEY, Vec::new());
            let p = &p;
            let ctx = ctx.clone();
            async move {
                let r = p
                    .create(&ctx, &Loc::entry(Gfid::ROOT, "f"), &fd, 0o644, 0, req)
                    .await;
                (r, fd)
            }
        };
        let g = Gfid::random();
        let (r, fd) = create(libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, g, b"first").await;
        let (ia, xd) = r.unwrap();
        assert!(xd.has(CREATE_CONTENT_KEY));
        assert_eq!((ia.gfid, ia.size), (g, 5));
        let post = Iatt::from_bytes(xd.get(POSTSTAT_KEY).unwrap()).unwrap();
        assert_eq!((post.size, post.mtime), (5, ia.mtime));
        p.release(&ctx, &fd, Xdata::new()).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"first");
        // The name exists: without O_EXCL the create opens it; its content stays.
        let (r, fd) = create(libc::O_CREAT | libc::O_WRONLY, Gfid::random(), b"other!").await;
        let (ia, xd) = r.unwrap();
        assert!(!xd.has(CREATE_CONTENT_KEY) && !xd.has(POSTSTAT_KEY));
        assert_eq!((ia.gfid, ia.size), (g, 5));
        p.release(&ctx, &fd, Xdata::new()).await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"first");
    }

    /// A content lookup by gfid with a name hint reads the file through the name when it
    /// still names that gfid, and through the gfid otherwise: a hint naming another file,
    /// a name since removed, the brick's private directory or garbage never changes what
    /// comes back.
    #[tokio::test]
    async fn a_name_hint_is_only_a_hint() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let p = Posix::new("p", dir.path()).unwrap();
        let ctx = Ctx::internal();
        p.mkdir(&ctx, &Loc::entry(Gfid::ROOT, "d"), 0o755, 0, Xdata::new())
            .await
            .unwrap();
        std::fs::write(dir.path().join("d/a"), b"file a").unwrap();
        std::fs::write(dir.path().join("d/b"), b"file b, longer").unwrap();
        let d = p
            .lookup(&ctx, &Loc::entry(Gfid::ROOT, "d"), Xdata::new())
            .await
            .unwrap()
            .0
            .gfid;
        let a = p
            .lookup(&ctx, &Loc::entry(d, "a"), Xdata::new())
            .await
            .unwrap()
            .0;
        p.lookup(&ctx, &Loc::entry(d, "b"), Xdata::new())
            .await
            .unwrap();
        let ask = |hint: Vec<u8>| {
            let mut xd = quick(100);
            xd.set(NAME_HINT_KEY, hint);
            let p = &p;
            let ctx = &ctx;
            async move { p.lookup(ctx, &Loc::inode(a.gfid), xd).await.unwrap() }
        };
        let hints = [
            weft_core::name_hint(d, std::ffi::OsStr::new("a")),
            weft_core::name_hint(d, std::ffi::OsStr::new("b")),
            weft_core::name_hint(Gfid::ROOT, std::ffi::OsStr::new(".weft")),
            weft_core::name_hint(Gfid::random(), std::ffi::OsStr::new("a")),
            weft_core::name_hint(d, std::ffi::OsStr::new("../d/a")),
            b"short".to_vec(),
        ];
        // Only the right name is taken; the others fall back to the handle.
        assert!(hinted(&p.brick, a.gfid, &hints[0]).is_some());
        // A copy of `a` with its gfid xattr, under another name, is not `a`.
        let copied = std::process::Command::new("cp")
            .args(["--preserve=xattr"])
            .arg(dir.path().join("d/a"))
            .arg(dir.path().join("d/c"))
            .status()
            .unwrap();
        assert!(copied.success());
        let hints: Vec<Vec<u8>> = hints
            .into_iter()
            .chain([weft_core::name_hint(d, std::ffi::OsStr::new("c"))])
            .collect();
        for h in &hints[1..] {
            assert!(hinted(&p.brick, a.gfid, h).is_none(), "{h:?}");
        }
        for h in &hints {
            let (ia, xd) = ask(h.clone()).await;
            assert_eq!(ia.gfid, a.gfid, "{h:?}");
            assert_eq!(ia.size, 6, "{h:?}");
            assert_eq!(
                xd.get(QUICK_READ_CONTENT_KEY),
                Some(&b"file a"[..]),
                "{h:?}"
            );
        }
        // The name now holds another file, then no file: the gfid still answers (the
        // first file lives on under another name).
        std::fs::rename(dir.path().join("d/a"), dir.path().join("d/a2")).unwrap();
        std::fs::rename(dir.path().join("d/b"), dir.path().join("d/a")).unwrap();
        let (ia, xd) = ask(hints[0].clone()).await;
        assert_eq!(ia.gfid, a.gfid);
        assert_eq!(xd.get(QUICK_READ_CONTENT_KEY), Some(&b"file a"[..]));
        std::fs::remove_file(dir.path().join("d/a")).unwrap();
        let (_, xd) = ask(hints[0].clone()).await;
        assert_eq!(xd.get(QUICK_READ_CONTENT_KEY), Some(&b"file a"[..]));
    }

    /// A lookup asked for content gets the whole of a small regular file, with an iatt
    /// that describes it; large files, directories and plain lookups get none.
    /// xattrop writes one name after another, the ones `XATTROP_ORDER_KEY` lists first:
    /// stopped part way (here by a malformed operand, as a killed brick would be), exactly
    /// the names before the stop in that order are applied.
    #[tokio::test]
    async fn xattrop_applies_names_in_the_order_asked() {
        let (dir, p, g) = brick_with_f(b"").await;
        let ctx = Ctx::internal();
        let mut ops = XattrMap::new();
        ops.insert("user.a".into(), 1u32.to_be_bytes().to_vec());
        ops.insert("user.b".into(), vec![0, 0, 1]); // not a multiple of 4: EINVAL there
        ops.insert("user.c".into(), 1u32.to_be_bytes().to_vec());
        let read = |n: &str| rustix::fs::getxattr(dir.path().join("f"), n, &mut [0u8; 4]).is_ok();
        // Name order: a is written, then b fails, c is not reached.
        let e = p
            .xattrop(
                &ctx,
                &Loc::inode(g),
                XattropOp::AddArray32,
                &ops,
                Xdata::new(),
            )
            .await;
        assert_eq!(e.unwrap_err(), Errno::EINVAL);
        assert!(read("user.a") && !read("user.c"));
        // Asked order c, b, a: c is written, b fails, a is not touched again.
        let mut xd = Xdata::new();
        xd.set(
            weft_core::XATTROP_ORDER_KEY,
            b"user.c\0user.b\0user.a".to_vec(),
        );
        let e = p
            .xattrop(&ctx, &Loc::inode(g), XattropOp::AddArray32, &ops, xd)
            .await;
        assert_eq!(e.unwrap_err(), Errno::EINVAL);
        assert!(read("user.c"));
        let mut v = [0u8; 4];
        rustix::fs::getxattr(dir.path().join("f"), "user.a", &mut v).unwrap();
        assert_eq!(
            u32::from_be_bytes(v),
            1,
            "a was applied once, by the first call only"
        );
    }

    #[tokio::test]
    async fn lookup_carries_small_file_content_when_asked() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let p = Posix::new("p", dir.path()).unwrap();
        let ctx = Ctx::internal();
        std::fs::write(dir.path().join("small"), b"hello world").unwrap();
        std::fs::write(dir.path().join("big"), vec![7u8; 200]).unwrap();
        std::fs::write(dir.path().join("huge"), vec![1u8; 2 << 20]).unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();

        let (ia, xd) = p
            .lookup(&ctx, &Loc::entry(Gfid::ROOT, "small"), quick(100))
            .await
            .unwrap();
        assert_eq!(xd.get(QUICK_READ_CONTENT_KEY), Some(&b"hello world"[..]));
        assert_eq!(ia.size, 11);
        // By gfid too, and with the xattr prefix key at the same time.
        let mut both = quick(11);
        both.set(LOOKUP_XATTRS_KEY, b"user.".to_vec());
        rustix::fs::setxattr(
            dir.path().join("small"),
            "user.a",
            b"1",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let (ia2, xd) = p.lookup(&ctx, &Loc::inode(ia.gfid), both).await.unwrap();
        assert_eq!(ia2.gfid, ia.gfid);
        assert_eq!(xd.get(QUICK_READ_CONTENT_KEY), Some(&b"hello world"[..]));
        assert_eq!(xd.get("user.a"), Some(&b"1"[..]));
        // An empty file has (empty) content.
        let (_, xd) = p
            .lookup(&ctx, &Loc::entry(Gfid::ROOT, "empty"), quick(100))
            .await
            .unwrap();
        assert_eq!(xd.get(QUICK_READ_CONTENT_KEY), Some(&b""[..]));

        // Larger than asked, larger than 1 MiB whatever is asked, a directory, not asked.
        for (name, xd) in [
            ("big", quick(100)),
            ("huge", quick(u64::MAX)),
            ("d", quick(1 << 20)),
            ("small", Xdata::new()),
        ] {
            let (_, out) = p
                .lookup(&ctx, &Loc::entry(Gfid::ROOT, name), xd)
                .await
                .unwrap();
            assert!(!out.has(QUICK_READ_CONTENT_KEY), "{name}");
        }
        let (ia, xd) = p
            .lookup(&ctx, &Loc::entry(Gfid::ROOT, "big"), quick(200))
            .await
            .unwrap();
        assert_eq!(xd.get(QUICK_READ_CONTENT_KEY).map(<[u8]>::len), Some(200));
        assert_eq!(ia.size, 200);
        // Errors stay errors.
        assert_eq!(
            p.lookup(&ctx, &Loc::entry(Gfid::ROOT, "nope"), quick(100))
                .await
                .unwrap_err(),
            Errno::ENOENT
        );
    }
}
