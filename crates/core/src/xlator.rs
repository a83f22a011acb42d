//! The translator contract.
//!
//! A translator is a node of a graph with one method per FOP. Every method's default hands
//! the call unchanged to the translator's single child, so a translator overrides only the
//! FOPs it changes; a translator with no child or several children that leaves a FOP to the
//! default fails it with ENOTSUP (storage translators and cluster translators must override
//! every FOP they support).
//!
//! Every call takes the caller's [`Ctx`] and an [`Xdata`] map, and every reply carries an
//! [`Xdata`] back ([`Fop`]). Errors are [`Errno`] values, passed up unchanged unless a
//! translator has a reason to change them. Translators never panic on what a peer or a user
//! sends.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::options::Options;
use crate::{
    Checksum, Ctx, Dirent, EntrylkCmd, EntrylkType, Errno, FdRef, Flock, Iatt, LkCmd, Loc,
    SeekWhat, SetAttr, StatVfs, XattrMap, XattropOp, Xdata,
};

/// The result of a FOP: a value and the reply's xdata, or an errno.
pub type Fop<T> = Result<(T, Xdata), Errno>;

/// A shared reference to a translator in a graph.
pub type XlatorRef = Arc<dyn Xlator>;

/// An event travelling up the graph from a child to its parents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The named child can serve FOPs.
    ChildUp(String),
    /// The named child cannot serve FOPs (a brick went away).
    ChildDown(String),
    /// The named child failed to connect or was refused; the text says why, for the
    /// operator. Informational: the child's state is told by `ChildUp` / `ChildDown`.
    ChildError(String, String),
    /// The graph is being torn down.
    Shutdown,
    /// Cached state to drop (see [`crate::upcall`]): raised by `features/upcall` on a
    /// brick for the brick server to deliver, and by `protocol/client` for what a brick
    /// sent, on its way up through the client graph's caches to the front end.
    Upcall(crate::upcall::Upcall),
}

/// Where a translator reports events it raises itself (a connection came up or went
/// down). The graph's owner receives them from [`crate::Graph::take_events`] and delivers
/// them up the graph with [`crate::Graph::notify`].
#[derive(Clone, Debug)]
pub struct EventSender {
    tx: tokio::sync::mpsc::UnboundedSender<(String, Event)>,
}

/// The receiving end of a graph's [`EventSender`]s: `(translator name, event)` pairs.
pub type EventReceiver = tokio::sync::mpsc::UnboundedReceiver<(String, Event)>;

impl EventSender {
    /// A connected sender and receiver.
    pub fn channel() -> (EventSender, EventReceiver) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (EventSender { tx }, rx)
    }

    /// Reports `event` as raised by translator `from`. Events sent after the receiver is
    /// gone (the graph is being torn down) are dropped.
    pub fn send(&self, from: &str, event: Event) {
        let _ = self.tx.send((from.to_string(), event));
    }
}

/// One node of a translator graph. See the module docs for the contract.
#[async_trait]
pub trait Xlator: Send + Sync + 'static {
    /// This instance's name, unique within its graph (the `volume NAME` of the volfile).
    fn name(&self) -> &str;

    /// This translator's subvolumes, in volfile order.
    fn children(&self) -> &[XlatorRef];

    /// The single child the default FOP implementations pass calls to.
    fn child(&self) -> Result<&XlatorRef, Errno> {
        match self.children() {
            [only] => Ok(only),
            _ => Err(Errno::ENOTSUP),
        }
    }

    /// An event from child `from` (or from the graph itself). Returns the event to pass on
    /// to this translator's parents, or `None` to stop it here. Default: pass it on.
    async fn notify(&self, _from: &str, event: Event) -> Option<Event> {
        Some(event)
    }

    /// A human-readable account of this translator's state, for statedumps.
    fn dump(&self) -> String {
        String::new()
    }

    /// Called once when the graph is torn down, parents before children.
    async fn fini(&self) {}

    /// Applies `options`, this translator's whole new option set (validated against its
    /// type's schema, defaults filled in, as [`crate::XlatorInit::options`] at build time),
    /// while the graph keeps serving: FOPs in flight and after must not fail because of it.
    /// [`crate::Graph::reconfigure`] calls it only when some option differs from the
    /// translator's current set. An `Err` says what cannot change live (the translator
    /// then keeps its current options; a remount applies them). Default: nothing can change.
    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let _ = options;
        Err("its options cannot change while it runs".into())
    }

    /// Client connection `client` (see [`Ctx::client`]) is gone: drop whatever it held
    /// (locks, leases). Default: tell every child.
    async fn forget_client(&self, client: u64) {
        for c in self.children() {
            c.forget_client(client).await;
        }
    }

    // ==== inode FOPs ====

    /// Resolves `loc` (parent + name, or gfid alone) to an inode and its attributes.
    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.child()?.lookup(ctx, loc, xd).await
    }
    /// Attributes of an inode named by `loc`.
    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.child()?.stat(ctx, loc, xd).await
    }
    /// Attributes of an open file.
    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        self.child()?.fstat(ctx, fd, xd).await
    }
    /// Checks access(2) permission bits `mask` (R_OK, W_OK, X_OK, F_OK).
    async fn access(&self, ctx: &Ctx, loc: &Loc, mask: u32, xd: Xdata) -> Fop<()> {
        self.child()?.access(ctx, loc, mask, xd).await
    }
    /// Changes the attributes `attr` names; returns the attributes after the change.
    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        self.child()?.setattr(ctx, loc, attr, xd).await
    }
    /// setattr on an open file.
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        self.child()?.fsetattr(ctx, fd, attr, xd).await
    }
    /// Sets the size of a file named by `loc`.
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        self.child()?.truncate(ctx, loc, size, xd).await
    }
    /// Sets the size of an open file.
    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        self.child()?.ftruncate(ctx, fd, size, xd).await
    }
    /// The target of a symlink, byte for byte.
    async fn readlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<PathBuf> {
        self.child()?.readlink(ctx, loc, xd).await
    }
    /// Statistics of the filesystem holding `loc`.
    async fn statfs(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<StatVfs> {
        self.child()?.statfs(ctx, loc, xd).await
    }

    // ==== entry FOPs ====

    /// Makes directory `loc` (parent + name) with `mode` & !`umask`.
    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        self.child()?.mkdir(ctx, loc, mode, umask, xd).await
    }
    /// Removes the empty directory `loc`.
    async fn rmdir(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        self.child()?.rmdir(ctx, loc, xd).await
    }
    /// Removes the name `loc` (not a directory).
    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        self.child()?.unlink(ctx, loc, xd).await
    }
    /// Renames `old` to `new` with renameat2 `flags` (RENAME_NOREPLACE, RENAME_EXCHANGE).
    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        self.child()?.rename(ctx, old, new, flags, xd).await
    }
    /// Gives the inode `old` the additional name `new`; returns its attributes.
    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.child()?.link(ctx, old, new, xd).await
    }
    /// Makes symlink `loc` pointing at `target`.
    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &std::path::Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        self.child()?.symlink(ctx, target, loc, umask, xd).await
    }
    /// Makes a special file (FIFO, device, socket, or empty regular file) at `loc`.
    async fn mknod(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        self.child()?.mknod(ctx, loc, mode, rdev, umask, xd).await
    }

    // ==== file I/O FOPs ====

    /// Opens the inode `loc` with `fd.flags`, attaching per-translator state to `fd`.
    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.child()?.open(ctx, loc, fd, xd).await
    }
    /// Creates and opens the regular file `loc` with `fd.flags` and `mode` & !`umask`.
    async fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        self.child()?.create(ctx, loc, fd, mode, umask, xd).await
    }
    /// Reads up to `size` bytes at `offset`; fewer only at end of file.
    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        self.child()?.readv(ctx, fd, size, offset, xd).await
    }
    /// Writes all of `data` at `offset` (at the end of file, atomically, when xdata carries
    /// [`crate::WRITE_APPEND_KEY`]); returns bytes written.
    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        self.child()?.writev(ctx, fd, data, offset, xd).await
    }
    /// Called on every close(2) of a descriptor sharing this fd.
    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.child()?.flush(ctx, fd, xd).await
    }
    /// Makes written data (and metadata unless `datasync`) durable.
    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        self.child()?.fsync(ctx, fd, datasync, xd).await
    }
    /// The fd is gone; drop all state hung on it.
    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.child()?.release(ctx, fd, xd).await
    }
    /// Allocates, or with flags punches/zeroes, a range (fallocate(2) `mode`).
    async fn fallocate(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        mode: i32,
        offset: u64,
        len: u64,
        xd: Xdata,
    ) -> Fop<()> {
        self.child()?
            .fallocate(ctx, fd, mode, offset, len, xd)
            .await
    }
    /// Deallocates a range, which then reads as zeros; the size stays.
    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.child()?.discard(ctx, fd, offset, len, xd).await
    }
    /// Writes zeros over a range, extending the file if needed.
    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.child()?.zerofill(ctx, fd, offset, len, xd).await
    }
    /// The next data or hole offset at or after `offset` (ENXIO past the end).
    async fn seek(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        what: SeekWhat,
        xd: Xdata,
    ) -> Fop<u64> {
        self.child()?.seek(ctx, fd, offset, what, xd).await
    }
    /// Checksums of `len` bytes at `offset`, for heal to compare replicas.
    async fn rchecksum(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        len: u32,
        xd: Xdata,
    ) -> Fop<Checksum> {
        self.child()?.rchecksum(ctx, fd, offset, len, xd).await
    }

    // ==== directory FOPs ====

    /// Opens directory `loc` for reading.
    async fn opendir(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.child()?.opendir(ctx, loc, fd, xd).await
    }
    /// Entries after cookie `offset` (0 = start), about `size` bytes' worth; empty at the end.
    async fn readdir(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        self.child()?.readdir(ctx, fd, size, offset, xd).await
    }
    /// readdir with each entry's attributes filled in.
    async fn readdirp(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        self.child()?.readdirp(ctx, fd, size, offset, xd).await
    }
    /// Makes the directory's entries durable.
    async fn fsyncdir(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        self.child()?.fsyncdir(ctx, fd, datasync, xd).await
    }
    /// The directory fd is gone; drop all state hung on it.
    async fn releasedir(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.child()?.releasedir(ctx, fd, xd).await
    }

    // ==== extended attributes ====

    /// The value of xattr `name`, or every xattr when `name` is `None` (listxattr).
    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        self.child()?.getxattr(ctx, loc, name, xd).await
    }
    /// getxattr on an open file.
    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.child()?.fgetxattr(ctx, fd, name, xd).await
    }
    /// Sets every xattr in `attrs` (`flags`: XATTR_CREATE / XATTR_REPLACE).
    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        self.child()?.setxattr(ctx, loc, attrs, flags, xd).await
    }
    /// setxattr on an open file.
    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        self.child()?.fsetxattr(ctx, fd, attrs, flags, xd).await
    }
    /// Removes xattr `name` (ENODATA if absent).
    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        self.child()?.removexattr(ctx, loc, name, xd).await
    }
    /// removexattr on an open file.
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        self.child()?.fremovexattr(ctx, fd, name, xd).await
    }
    /// Atomically combines `attrs` into the xattrs on disk; returns the new values.
    async fn xattrop(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.child()?.xattrop(ctx, loc, op, attrs, xd).await
    }
    /// xattrop on an open file.
    async fn fxattrop(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.child()?.fxattrop(ctx, fd, op, attrs, xd).await
    }

    // ==== locks ====

    /// POSIX byte-range locks of applications (fcntl F_GETLK/F_SETLK/F_SETLKW, flock).
    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        self.child()?.lk(ctx, fd, cmd, lock, xd).await
    }
    /// Cluster-internal inode range locks in lock `domain`.
    async fn inodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        self.child()?.inodelk(ctx, domain, loc, cmd, lock, xd).await
    }
    /// inodelk on an open file.
    async fn finodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        fd: &FdRef,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        self.child()?.finodelk(ctx, domain, fd, cmd, lock, xd).await
    }
    /// Cluster-internal lock on the name `basename` in directory `loc` (the whole
    /// directory when `None`) in lock `domain`.
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
        self.child()?
            .entrylk(ctx, domain, loc, basename, cmd, kind, xd)
            .await
    }
}
