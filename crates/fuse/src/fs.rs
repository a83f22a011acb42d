//! fuser's `Filesystem` over [`Inner`]: several request threads, each serving the request
//! it read to completion, so many are in flight at once.

use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{
    AccessFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLock, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow,
};
use weft_core::{Ctx, Errno, Iatt, LkCmd, SetAttr};

use crate::convert::{attr, errno, kind, set_time};
use crate::inner::{Inner, SyncKind};

/// The FUSE filesystem object handed to fuser.
pub struct WeftFs {
    pub(crate) inner: Arc<Inner>,
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) attr_ttl: Duration,
    pub(crate) entry_ttl: Duration,
    /// Says when a reply must carry no timeout (an invalidation crossed it).
    pub(crate) fresh: Arc<crate::invalidate::Freshness>,
    pub(crate) max_write: u32,
    /// Ask the kernel to send POSIX lock requests here rather than keep them local.
    pub(crate) posix_locks: bool,
    /// The kernel enforces POSIX ACLs on this mount (it granted FUSE_POSIX_ACL). Without
    /// it, ACLs are refused (EOPNOTSUPP) rather than stored and ignored.
    pub(crate) posix_acl: bool,
    /// Pass SELinux labels (`security.selinux`) through to the bricks (the `selinux`
    /// mount option). Without it the mount has no labels: the name is refused with
    /// EOPNOTSUPP and left out of listings (see [`SELINUX_XATTR`]).
    pub(crate) selinux: bool,
    /// Opens keep the kernel's cached pages of the file (FOPEN_KEEP_CACHE) instead of
    /// dropping them: only where the bricks tell this mount of other clients' changes
    /// (each drops the inode's pages, see `invalidate`) and attributes are cached, so
    /// a read also drops them when it finds the mtime or size changed
    /// (FUSE_AUTO_INVAL_DATA).
    pub(crate) keep_cache: bool,
    /// FUSE_HANDLE_KILLPRIV_V2: asked for at init when set (`WEFT_FUSE_KILLPRIV_V2=1`),
    /// then whether the kernel granted it. Only then do requests say when to kill
    /// suid/sgid and is a setattr of nothing taken as chown(f, -1, -1).
    pub(crate) killpriv_v2: bool,
    /// Tells the kernel to drop what it cached of an inode (set once the session exists).
    pub(crate) notifier: Arc<std::sync::OnceLock<fuser::Notifier>>,
    /// Lock waits the kernel may interrupt.
    pub(crate) interrupts: Arc<Interrupts>,
    /// Inodes known to have no `security.capability` xattr, and since when (see
    /// [`CAPABILITY_XATTR`]).
    pub(crate) no_caps: Arc<parking_lot::Mutex<std::collections::HashMap<u64, std::time::Instant>>>,
}

/// The kernel asks for this xattr before every write (to know whether the write must drop
/// file capabilities), one round trip to the brick per write. Like GlusterFS's md-cache,
/// the mount remembers for one attribute timeout that an inode has none; a set or remove
/// through this mount forgets it at once, another client's is seen within that time.
const CAPABILITY_XATTR: &str = "security.capability";

/// SELinux labels. A brick's files carry the labels of the brick host's policy, which
/// mean nothing to a client, so (like GlusterFS without its `selinux` mount option, and
/// NFS without labelled NFS) a mount does not pass them on unless asked. It answers
/// EOPNOTSUPP rather than ENODATA: "no labels on this filesystem" is then known to `ls`
/// and friends after one request (coreutils remembers it per device) instead of asked
/// again for every file listed.
const SELINUX_XATTR: &str = "security.selinux";

/// Inodes remembered without capabilities at most (the table starts over beyond).
const NO_CAPS_MAX: usize = 100_000;

/// Requests waiting (lock waits) that a FUSE_INTERRUPT can end, by request id, and
/// interrupts that arrived before their request was registered.
#[derive(Default)]
pub(crate) struct Interrupts {
    waiting: parking_lot::Mutex<std::collections::HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
    early: parking_lot::Mutex<std::collections::VecDeque<u64>>,
}

/// How many interrupts for not-yet-registered requests are remembered.
const EARLY_INTERRUPTS: usize = 4096;

impl Interrupts {
    /// Registers request `unique`; the receiver fires if it is interrupted. `None` if it
    /// was interrupted already.
    fn register(&self, unique: u64) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let mut early = self.early.lock();
        if let Some(i) = early.iter().position(|&u| u == unique) {
            early.remove(i);
            return None;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.lock().insert(unique, tx);
        Some(rx)
    }

    /// Request `unique` finished.
    fn done(&self, unique: u64) {
        self.waiting.lock().remove(&unique);
    }

    /// The kernel interrupts request `unique`.
    fn interrupt(&self, unique: u64) {
        let mut early = self.early.lock();
        match self.waiting.lock().remove(&unique) {
            Some(tx) => {
                let _ = tx.send(());
            }
            None => {
                // Not registered yet (or already done: then it is never looked for).
                if early.len() >= EARLY_INTERRUPTS {
                    early.pop_front();
                }
                early.push_back(unique);
            }
        }
    }
}

impl WeftFs {
    /// Drops this mount's cached pages and attributes of `ino`, so the next read and stat
    /// go to the volume (another client may have changed the file).
    fn drop_cache(notifier: &std::sync::OnceLock<fuser::Notifier>, ino: INodeNo) {
        if let Some(n) = notifier.get() {
            if let Err(e) = n.inval_inode(ino, 0, 0) {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    tracing::debug!(ino = ino.0, "cache invalidation failed: {e}");
                }
            }
        }
    }
}

/// The xattr names that carry POSIX ACLs.
fn is_acl_name(name: &str) -> bool {
    name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

impl WeftFs {
    /// Whether xattr `name` is one this mount refuses (EOPNOTSUPP): ACLs the kernel does
    /// not enforce here, or SELinux labels without the `selinux` option.
    fn unsupported_xattr(&self, name: &str) -> bool {
        (is_acl_name(name) && !self.posix_acl) || (name == SELINUX_XATTR && !self.selinux)
    }
}

fn ctx(req: &Request, owner: Option<LockOwner>) -> Ctx {
    Ctx {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
        lk_owner: owner.map(|o| o.0).unwrap_or(0),
        client: 0,
    }
}

/// How a file is opened in the kernel: an O_APPEND file bypasses the page cache for its
/// reads and writes (FOPEN_DIRECT_IO), because the brick puts each append at the end of the
/// file as it is there, which another client may have moved past the end this mount
/// knows, so pages cached at the offset the kernel chose would be wrong.
fn open_flags_for(flags: i32, keep_cache: bool) -> FopenFlags {
    if flags & libc::O_APPEND != 0 {
        FopenFlags::FOPEN_DIRECT_IO
    } else if keep_cache {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

/// Kills suid/sgid of `ino` ([`crate::inner::Inner::kill_suidgid`]) and, when a bit went, tells
/// the kernel to drop the inode's attributes: its cached mode is what exec checks, and not
/// every path that asked for the kill refreshes it (direct I/O writes do not).
async fn kill_and_tell(
    me: &crate::inner::Inner,
    notifier: &std::sync::OnceLock<fuser::Notifier>,
    ino: INodeNo,
    caller: &Ctx,
    capable: bool,
    owner_only: bool,
) -> Result<(), Errno> {
    if me.kill_suidgid(ino.0, caller, capable, owner_only).await? {
        if let Some(n) = notifier.get() {
            let _ = n.inval_inode(ino, -1, 0);
        }
    }
    Ok(())
}

fn name_str(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EINVAL)
}

impl WeftFs {
    /// Serves one request to the end on this fuser thread (one of several, each with its
    /// own /dev/fuse clone): FOPs that block in the kernel do so right here, as in
    /// libfuse's multi-threaded loop, and network-bound FOPs wait on the runtime.
    fn go(&self, f: impl Future<Output = ()> + Send + 'static) {
        weft_core::blocking::allow_inline_blocking();
        self.rt.block_on(f);
    }
}

macro_rules! spawn_entry {
    ($self:ident, $reply:ident, |$inner:ident| $body:expr) => {{
        let $inner = $self.inner.clone();
        let (et, at) = (
            $self.fresh.guard($self.entry_ttl),
            $self.fresh.guard($self.attr_ttl),
        );
        $self.go(async move {
            match $body.await {
                Ok(ia) => $reply.entry_with_ttls(&et.ttl(), &at.ttl(), &attr(&ia), Generation(0)),
                Err(e) => $reply.error(errno(e)),
            }
        });
    }};
}

macro_rules! spawn_empty {
    ($self:ident, $reply:ident, |$inner:ident| $body:expr) => {{
        let $inner = $self.inner.clone();
        $self.go(async move {
            match $body.await {
                Ok(()) => $reply.ok(),
                Err(e) => $reply.error(errno(e)),
            }
        });
    }};
}

impl Filesystem for WeftFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let want = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC
            | InitFlags::FUSE_ASYNC_DIO
            | InitFlags::FUSE_MAX_PAGES
            // mmap stays possible on files opened with FOPEN_DIRECT_IO (O_APPEND ones).
            | InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP
            // POSIX ACLs enforced by the kernel (with default_permissions), from the ACL
            // xattrs the brick stores; the brick applies the umask itself (DONT_MASK), as
            // a parent's default ACL overrides it.
            | InitFlags::FUSE_POSIX_ACL
            | InitFlags::FUSE_DONT_MASK
            // Cached pages go when a getattr shows mtime or size changed underneath.
            | InitFlags::FUSE_AUTO_INVAL_DATA
            // Suid/sgid killed here (writes, truncates and O_TRUNC opens say when), so
            // the kernel stops asking for security.capability before every write. Only
            // when asked for: with it on, two CI tests failed (O_APPEND records from two
            // mounts lost; a writer during graph switches hung), not understood yet.
            | if self.killpriv_v2 {
                InitFlags::FUSE_HANDLE_KILLPRIV_V2
            } else {
                InitFlags::empty()
            }
            // flock(2) reaches the volume as a whole-file lock owned by the open file
            // description, as NFS does it (so flock and fcntl locks on one file conflict).
            | if self.posix_locks {
                InitFlags::FUSE_POSIX_LOCKS | InitFlags::FUSE_FLOCK_LOCKS
            } else {
                InitFlags::empty()
            };
        let granted = want & config.capabilities();
        if let Err(missing) = config.add_capabilities(granted) {
            tracing::warn!("kernel refused FUSE capabilities {missing:?}");
        }
        self.posix_acl = granted.contains(InitFlags::FUSE_POSIX_ACL);
        self.killpriv_v2 = granted.contains(InitFlags::FUSE_HANDLE_KILLPRIV_V2);
        if !self.posix_acl {
            tracing::warn!(
                "the kernel does not enforce POSIX ACLs on FUSE mounts: setting ACLs is refused"
            );
        }
        if let Err(max) = config.set_max_write(self.max_write) {
            tracing::info!("kernel caps max_write at {max} bytes");
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (c, name) = (ctx(req, None), name.to_owned());
        spawn_entry!(self, reply, |me| async move {
            me.lookup(&c, parent.0, &name).await
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inner.inodes.forget(ino.0, nlookup);
    }

    /// No ioctl is supported: ENOTTY at once, as a local file answers the ioctls programs
    /// probe with (Python's `open` asks TCGETS of every file), without a log line each.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(fuser::Errno::ENOTTY);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        let ttl = self.fresh.guard(self.attr_ttl);
        self.go(async move {
            match me.getattr(&c, ino.0, fh.map(|f| f.0)).await {
                Ok(ia) => reply.attr(&ttl.ttl(), &attr(&ia)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setattr_with(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        kill_suidgid: bool,
        reply: ReplyAttr,
    ) {
        // A setattr of nothing is chown(f, -1, -1) (or the kernel dropping privileges),
        // which on Linux kills suid/sgid too: the kernel sets FATTR_KILL_SUIDGID only when
        // an owner changes, and leaves the rest to the filesystem.
        let nothing = [mode, uid, gid].iter().all(Option::is_none)
            && size.is_none()
            && atime.is_none()
            && mtime.is_none()
            && ctime.is_none();
        // Truncates carry the flag only for callers without CAP_FSETID; a chown carries it
        // whoever the caller (root counts as capable).
        let capable = size.is_none() && req.uid() == 0;
        // A setattr of nothing reaches here unchecked by the kernel (it dropped the mode
        // change before checking ownership): it kills only for the owner or root. From
        // anyone else it is the kernel dropping privileges before a write (which kills
        // them itself: its FUSE_WRITE_KILL_SUIDGID), or chown(f, -1, -1), which on Linux
        // fails EPERM for a setuid file; here it succeeds and the bits stay.
        let owner_only = nothing && !kill_suidgid;
        let kill_suidgid = kill_suidgid || (nothing && self.killpriv_v2);
        let notifier = self.notifier.clone();
        let a = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
        };
        let (me, c) = (self.inner.clone(), ctx(req, None));
        let ttl = self.fresh.guard(self.attr_ttl);
        self.go(async move {
            // A truncate by a caller without CAP_FSETID, or a chown: suid/sgid go first,
            // as Linux kills them before the change (the caller need not own the file).
            if kill_suidgid && mode.is_none() {
                if let Err(e) = kill_and_tell(&me, &notifier, ino, &c, capable, owner_only).await {
                    return reply.error(errno(e));
                }
            }
            match me.setattr(&c, ino.0, fh.map(|f| f.0), a).await {
                Ok(ia) => reply.attr(&ttl.ttl(), &attr(&ia)),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        self.go(async move {
            match me.readlink(&c, ino.0).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let (c, name) = (ctx(req, None), name.to_owned());
        spawn_entry!(self, reply, |me| async move {
            me.mknod(&c, parent.0, &name, mode, umask, rdev as u64)
                .await
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (c, name) = (ctx(req, None), name.to_owned());
        spawn_entry!(self, reply, |me| async move {
            me.mkdir(&c, parent.0, &name, mode, umask).await
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (c, name) = (ctx(req, None), name.to_owned());
        spawn_empty!(self, reply, |me| async move {
            me.remove(&c, parent.0, &name, false).await
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let (c, name) = (ctx(req, None), name.to_owned());
        spawn_empty!(self, reply, |me| async move {
            me.remove(&c, parent.0, &name, true).await
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let (c, name, target) = (ctx(req, None), link_name.to_owned(), target.to_owned());
        spawn_entry!(self, reply, |me| async move {
            me.symlink(&c, parent.0, &name, &target).await
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (c, name, newname) = (ctx(req, None), name.to_owned(), newname.to_owned());
        spawn_empty!(self, reply, |me| async move {
            me.rename(&c, parent.0, &name, newparent.0, &newname, flags.bits())
                .await
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let (c, name) = (ctx(req, None), newname.to_owned());
        spawn_entry!(self, reply, |me| async move {
            me.link(&c, ino.0, newparent.0, &name).await
        });
    }

    fn open_with(
        &self,
        req: &Request,
        ino: INodeNo,
        flags: OpenFlags,
        kill_suidgid: bool,
        reply: ReplyOpen,
    ) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        // Without KILLPRIV_V2 the kernel kills nothing on an O_TRUNC open (it truncates
        // in the open, ATOMIC_O_TRUNC): Linux kills for a caller without CAP_FSETID, taken
        // here as one that is not root.
        let kill_suidgid =
            kill_suidgid || (!self.killpriv_v2 && flags.0 & libc::O_TRUNC != 0 && req.uid() != 0);
        // Pages are kept only while the graph served now gets invalidations, and when no
        // invalidation crossed this open and the kernel is keeping up with them.
        let fresh = self.fresh.guard(Duration::from_secs(1));
        let keep = self.keep_cache;
        let notifier = self.notifier.clone();
        self.go(async move {
            let keep = keep
                && crate::volume_cache_timeout(&me.cur().volume).is_some()
                && !fresh.ttl().is_zero();
            let fh = match me.open(&c, ino.0, flags.0, false).await {
                Ok(fh) => fh,
                Err(e) => return reply.error(errno(e)),
            };
            // An O_TRUNC open by a caller without CAP_FSETID: the truncation is done, so
            // suid/sgid go (the kernel holds the old mode: it is told to drop it).
            if kill_suidgid {
                if let Err(e) = kill_and_tell(&me, &notifier, ino, &c, false, false).await {
                    let _ = me.release(&c, fh).await;
                    return reply.error(errno(e));
                }
            }
            reply.opened(FileHandle(fh), open_flags_for(flags.0, keep))
        });
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let (me, c) = (self.inner.clone(), ctx(req, lock_owner));
        self.go(async move {
            match me.read(&c, fh.0, offset, size).await {
                Ok(d) => reply.data(&d),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wf: fuser::WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (me, c, data) = (
            self.inner.clone(),
            ctx(req, lock_owner),
            Bytes::copy_from_slice(data),
        );
        let from_cache = wf.contains(fuser::WriteFlags::FUSE_WRITE_CACHE);
        // A writer without CAP_FSETID: suid/sgid go before the data lands, as Linux does
        // (the kernel drops its cached mode after every write).
        let kill = wf.contains(fuser::WriteFlags::FUSE_WRITE_KILL_SUIDGID);
        let notifier = self.notifier.clone();
        self.go(async move {
            if kill {
                if let Err(e) = kill_and_tell(&me, &notifier, ino, &c, false, false).await {
                    return reply.error(errno(e));
                }
            }
            match me.write(&c, fh.0, offset, data, from_cache).await {
                Ok(n) => reply.written(n as u32),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let c = ctx(req, Some(lock_owner));
        spawn_empty!(self, reply, |me| async move {
            me.sync(&c, fh.0, SyncKind::Flush).await
        });
    }

    fn release(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let c = ctx(req, lock_owner);
        spawn_empty!(self, reply, |me| async move { me.release(&c, fh.0).await });
    }

    fn fsync(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let c = ctx(req, None);
        spawn_empty!(self, reply, |me| async move {
            me.sync(&c, fh.0, SyncKind::File(datasync)).await
        });
    }

    fn getlk(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        reply: ReplyLock,
    ) {
        let (me, c) = (self.inner.clone(), ctx(req, Some(lock_owner)));
        let Some(lock) = crate::convert::flock(start, end, typ, pid, lock_owner.0) else {
            return reply.error(errno(Errno::EINVAL));
        };
        self.go(async move {
            match me.lk(&c, fh.0, LkCmd::Get, &lock, false).await {
                Ok(l) => {
                    let (s, e, t) = crate::convert::flock_range(&l);
                    reply.locked(s, e, t, l.pid)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setlk_kind(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        start: u64,
        end: u64,
        typ: i32,
        pid: u32,
        sleep: bool,
        flock: bool,
        reply: ReplyEmpty,
    ) {
        let (me, c) = (self.inner.clone(), ctx(req, Some(lock_owner)));
        let Some(lock) = crate::convert::flock(start, end, typ, pid, lock_owner.0) else {
            return reply.error(errno(Errno::EINVAL));
        };
        let cmd = if sleep { LkCmd::SetWait } else { LkCmd::Set };
        let notifier = self.notifier.clone();
        let locking = typ != libc::F_UNLCK;
        if !sleep {
            self.go(async move {
                match me.lk(&c, fh.0, cmd, &lock, flock).await {
                    Ok(_) => {
                        // Coherence at lock boundaries (as NFS): whoever held the lock
                        // before may have changed the file through another mount, so what
                        // this mount cached is dropped before the locker reads. (Unlocks
                        // need nothing: writes are sent down before the unlock.)
                        if locking {
                            WeftFs::drop_cache(&notifier, ino);
                        }
                        reply.ok()
                    }
                    Err(e) => reply.error(errno(e)),
                }
            });
            return;
        }
        // A wait may last until another process unlocks, which needs a request thread of
        // its own: never park one of the request threads on it. It ends early, with EINTR,
        // when the kernel interrupts it (a signal, or the process being killed).
        let unique = req.unique().0;
        let Some(interrupted) = self.interrupts.register(unique) else {
            return reply.error(errno(Errno(libc::EINTR)));
        };
        let interrupts = self.interrupts.clone();
        self.rt.spawn(async move {
            let wait = me.lk(&c, fh.0, cmd, &lock, flock);
            tokio::pin!(wait);
            tokio::select! {
                r = &mut wait => {
                    interrupts.done(unique);
                    match r {
                        Ok(_) => {
                            WeftFs::drop_cache(&notifier, ino);
                            reply.ok()
                        }
                        Err(e) => reply.error(errno(e)),
                    }
                }
                _ = interrupted => {
                    // The process gave up: it is answered now. The volume may still grant
                    // the request later (the wait stays queued there until then, or until
                    // the file is closed); a grant that comes is given straight back, so no
                    // lock goes to a process that gave up.
                    reply.error(errno(Errno(libc::EINTR)));
                    if wait.await.is_ok() {
                        let unlock = weft_core::Flock { kind: weft_core::LockType::Unlock, ..lock };
                        if let Err(e) = me.lk(&c, fh.0, LkCmd::Set, &unlock, flock).await {
                            tracing::warn!("giving back a lock granted after its waiter was interrupted failed: {e}");
                        }
                    }
                }
            }
        });
    }

    fn interrupt(&self, _req: &Request, unique: u64) {
        self.interrupts.interrupt(unique);
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        self.go(async move {
            match me.open(&c, ino.0, flags.0, true).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        self.go(async move {
            match me.readdir(&c, fh.0, offset, false).await {
                Ok(ents) => {
                    for d in ents {
                        if reply.add(
                            INodeNo(d.ino.max(1)),
                            d.offset,
                            kind(d.kind),
                            OsStr::from_bytes(&d.name),
                        ) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        let guard = self.fresh.guard(self.entry_ttl);
        // An entry the kernel holds, fresh for at least half its timeouts still, is sent
        // without a lookup (see `Inner::kernel_has`).
        let known_within = self.entry_ttl.min(self.attr_ttl) / 2;
        self.go(async move {
            match me.readdir(&c, fh.0, offset, true).await {
                Ok(ents) => {
                    let et = guard.ttl();
                    for d in ents {
                        let name = OsStr::from_bytes(&d.name);
                        if let Some(ia) = &d.iatt {
                            if !known_within.is_zero()
                                && me.kernel_has(ia, ino.0, name, known_within)
                            {
                                // nodeid 0: the kernel lists the name and touches nothing
                                // it holds (no reference taken, so none remembered here).
                                if reply.add(
                                    INodeNo(0),
                                    d.offset,
                                    name,
                                    &et,
                                    &attr(ia),
                                    Generation(0),
                                ) {
                                    break;
                                }
                                continue;
                            }
                        }
                        let full = match &d.iatt {
                            Some(ia) => attr(ia),
                            // An entry that vanished while listing: the kernel would take
                            // a reference on an inode nobody holds, so leave it out.
                            None if d.name != b"." && d.name != b".." => continue,
                            None => {
                                // "." and "..": the kernel takes no reference on them.
                                let mut a = attr(&dummy_iatt(d.ino.max(1)));
                                a.kind = kind(d.kind);
                                a
                            }
                        };
                        if reply.add(full.ino, d.offset, name, &et, &full, Generation(0)) {
                            break;
                        }
                        if let Some(ia) = &d.iatt {
                            me.remember(ia, ino.0, name);
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn releasedir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        let c = ctx(req, None);
        spawn_empty!(self, reply, |me| async move { me.release(&c, fh.0).await });
    }

    fn fsyncdir(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let c = ctx(req, None);
        spawn_empty!(self, reply, |me| async move {
            me.sync(&c, fh.0, SyncKind::Dir(datasync)).await
        });
    }

    fn statfs(&self, req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        self.go(async move {
            match me.statfs(&c).await {
                Ok(s) => reply.statfs(
                    s.blocks,
                    s.bfree,
                    s.bavail,
                    s.files,
                    s.ffree,
                    s.bsize as u32,
                    s.namemax as u32,
                    s.frsize as u32,
                ),
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let (c, value) = (ctx(req, None), value.to_vec());
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(errno(e)),
        };
        if self.unsupported_xattr(&name) {
            return reply.error(errno(Errno::ENOTSUP));
        }
        if name == CAPABILITY_XATTR {
            self.no_caps.lock().remove(&ino.0);
        }
        spawn_empty!(self, reply, |me| async move {
            me.setxattr(&c, ino.0, &name, &value, flags).await
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let c = ctx(req, None);
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(errno(e)),
        };
        if name == SELINUX_XATTR && !self.selinux {
            return reply.error(errno(Errno::ENOTSUP));
        }
        let me = self.inner.clone();
        let caps = (name == CAPABILITY_XATTR).then(|| self.no_caps.clone());
        if let Some(c) = &caps {
            if c.lock()
                .get(&ino.0)
                .is_some_and(|t| t.elapsed() < self.attr_ttl)
            {
                return reply.error(errno(Errno::ENODATA));
            }
        }
        self.go(async move {
            match me.getxattr(&c, ino.0, Some(&name)).await {
                Ok(m) => xattr_reply(reply, size, m.into_values().next().unwrap_or_default()),
                Err(e) => {
                    if let (Some(c), true) = (caps, e == Errno::ENODATA) {
                        let mut m = c.lock();
                        if m.len() >= NO_CAPS_MAX {
                            m.clear();
                        }
                        m.insert(ino.0, std::time::Instant::now());
                    }
                    reply.error(errno(e))
                }
            }
        });
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        let hide_labels = !self.selinux;
        self.go(async move {
            match me.getxattr(&c, ino.0, None).await {
                Ok(m) => {
                    let mut list = Vec::new();
                    for k in m.keys() {
                        if hide_labels && k == SELINUX_XATTR {
                            continue;
                        }
                        list.extend_from_slice(k.as_bytes());
                        list.push(0);
                    }
                    xattr_reply(reply, size, list)
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let c = ctx(req, None);
        let name = match name_str(name) {
            Ok(n) => n.to_string(),
            Err(e) => return reply.error(errno(e)),
        };
        if self.unsupported_xattr(&name) {
            return reply.error(errno(Errno::ENOTSUP));
        }
        if name == CAPABILITY_XATTR {
            self.no_caps.lock().remove(&ino.0);
        }
        spawn_empty!(self, reply, |me| async move {
            me.removexattr(&c, ino.0, &name).await
        });
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let c = ctx(req, None);
        let mask = mask.bits() as u32;
        spawn_empty!(
            self,
            reply,
            |me| async move { me.access(&c, ino.0, mask).await }
        );
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let (me, c, name) = (self.inner.clone(), ctx(req, None), name.to_owned());
        let guard = self.fresh.guard(self.entry_ttl);
        let caps = self.no_caps.clone();
        self.go(async move {
            match me.create(&c, parent.0, &name, mode, umask, flags).await {
                Ok((ia, fh)) => {
                    let et = guard.ttl();
                    // A file just made has no capabilities: the kernel's question before
                    // its first writes is answered here, as for a file asked about before.
                    let mut m = caps.lock();
                    if m.len() >= NO_CAPS_MAX {
                        m.clear();
                    }
                    m.insert(ia.ino, std::time::Instant::now());
                    drop(m);
                    reply.created(
                        &et,
                        &attr(&ia),
                        Generation(0),
                        FileHandle(fh),
                        open_flags_for(flags, false),
                    )
                }
                Err(e) => reply.error(errno(e)),
            }
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let c = ctx(req, None);
        spawn_empty!(self, reply, |me| async move {
            me.fallocate(&c, fh.0, offset, length, mode).await
        });
    }

    fn lseek(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let (me, c) = (self.inner.clone(), ctx(req, None));
        self.go(async move {
            match me.lseek(&c, fh.0, offset, whence).await {
                Ok(o) => reply.offset(o),
                Err(e) => reply.error(errno(e)),
            }
        });
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, data: Vec<u8>) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(fuser::Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(&data);
    }
}

fn dummy_iatt(ino: u64) -> Iatt {
    Iatt {
        gfid: weft_core::Gfid::NULL,
        ino,
        mode: libc::S_IFDIR | 0o755,
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        size: 0,
        blksize: 4096,
        blocks: 0,
        atime: Default::default(),
        mtime: Default::default(),
        ctime: Default::default(),
    }
}
