//! `features/migrate`: the brick half of moving a file between distribute's subvolumes
//! (see ARCHITECTURE.md, "File migration"). It sits in every brick graph above
//! features/locks and does three things for a rebalance that moves file `g`, named
//! `D/N`, from this brick to another:
//!
//! 1. **Freeze** (`setxattr` of [`FREEZE_XATTR`] on `g`, value: D's gfid then N). From
//!    then on, every FOP that would change `g` (writes, truncates, fallocate, attribute
//!    and xattr changes, lock requests) and every entry FOP on the name `D/N` waits.
//!    Reads go on: the data does not change while the mover copies it.
//! 2. **Commit** ([`COMMIT_XATTR`]): removes the name `D/N` here (only while it still
//!    names `g`) and marks `g` *moved*: the waiting FOPs, and every later FOP on an fd
//!    opened here before, answer `EREMOTE`, so the client finds the file on its new brick
//!    and sends them there. Nothing written after the copy can land in the old copy.
//! 3. **Abort** ([`ABORT_XATTR`]), or the mover's connection going away, or the freeze
//!    lasting longer than [`FREEZE_MAX`]: the waiting FOPs go on here, as if nothing
//!    happened.
//!
//! Only the client that froze a file may commit or abort it. The moved marks live in
//! memory, for as long as an fd opened here on the inode is open.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use weft_core::options::OptionSpec;
use weft_core::*;

/// The virtual xattr that freezes an inode for its move (value: parent gfid, 16 bytes,
/// then the name).
pub const FREEZE_XATTR: &str = "trusted.weft.migrate.freeze";
/// The virtual xattr that commits a frozen inode's move (value ignored).
pub const COMMIT_XATTR: &str = "trusted.weft.migrate.commit";
/// The virtual xattr that gives up a frozen inode's move (value ignored).
pub const ABORT_XATTR: &str = "trusted.weft.migrate.abort";

/// The longest a freeze may last before the brick gives it up by itself.
pub const FREEZE_MAX: Duration = Duration::from_secs(120);

/// How a freeze ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Moved,
    Aborted,
}

struct Freeze {
    id: u64,
    client: u64,
    parent: Gfid,
    name: OsString,
    done: watch::Sender<Option<End>>,
}

#[derive(Default)]
struct State {
    next: u64,
    /// Frozen inodes.
    frozen: HashMap<Gfid, Freeze>,
    /// Frozen names: (parent, name) -> inode.
    names: HashMap<(Gfid, OsString), Gfid>,
    /// Inodes moved away while fds opened here were open on them.
    moved: HashMap<Gfid, ()>,
    /// Open fds per inode, through this translator.
    opens: HashMap<Gfid, u32>,
    /// Moves committed and aborted since start (for the statedump).
    committed: u64,
    aborted: u64,
}

impl State {
    fn end(&mut self, g: Gfid, how: End) -> bool {
        let Some(f) = self.frozen.remove(&g) else {
            return false;
        };
        self.names.remove(&(f.parent, f.name.clone()));
        if how == End::Moved {
            self.committed += 1;
            if self.opens.get(&g).copied().unwrap_or(0) > 0 {
                self.moved.insert(g, ());
            }
        } else {
            self.aborted += 1;
        }
        let _ = f.done.send(Some(how));
        true
    }
}

/// The `features/migrate` translator. See the [module docs](self).
pub struct Migrate {
    name: String,
    children: Vec<XlatorRef>,
    state: Arc<Mutex<State>>,
}

impl Migrate {
    /// A migrate translator named `name` over its one child.
    pub fn new(name: String, children: Vec<XlatorRef>) -> Migrate {
        Migrate {
            name,
            children,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Waits while `g` is frozen; `EREMOTE` if it was (or is) moved away from here.
    async fn gate(&self, g: Gfid) -> Result<(), Errno> {
        let rx = {
            let s = self.state.lock();
            if s.moved.contains_key(&g) {
                return Err(Errno::EREMOTE);
            }
            match s.frozen.get(&g) {
                Some(f) => f.done.subscribe(),
                None => return Ok(()),
            }
        };
        match wait_end(rx).await {
            End::Moved => Err(Errno::EREMOTE),
            End::Aborted => Ok(()),
        }
    }

    /// `EREMOTE` if `g` was moved away (reads are not held by a freeze).
    fn check(&self, g: Gfid) -> Result<(), Errno> {
        if self.state.lock().moved.contains_key(&g) {
            Err(Errno::EREMOTE)
        } else {
            Ok(())
        }
    }

    /// Like [`Self::gate`] for a loc: by its gfid when it has one.
    async fn gate_loc(&self, loc: &Loc) -> Result<(), Errno> {
        match loc.gfid {
            Some(g) => self.gate(g).await,
            None => Ok(()),
        }
    }

    /// Waits while the name `loc` (parent + name) is frozen.
    async fn gate_name(&self, loc: &Loc) {
        let (Some(p), Some(n)) = (loc.parent, loc.name.as_ref()) else {
            return;
        };
        let rx = {
            let s = self.state.lock();
            let Some(g) = s.names.get(&(p, n.clone())) else {
                return;
            };
            match s.frozen.get(g) {
                Some(f) => f.done.subscribe(),
                None => return,
            }
        };
        wait_end(rx).await;
    }

    fn opened(&self, g: Gfid) {
        *self.state.lock().opens.entry(g).or_default() += 1;
    }

    fn closed(&self, g: Gfid) {
        let mut s = self.state.lock();
        if let Some(n) = s.opens.get_mut(&g) {
            *n -= 1;
            if *n == 0 {
                s.opens.remove(&g);
                s.moved.remove(&g);
            }
        }
    }

    fn freeze(&self, ctx: &Ctx, g: Gfid, value: &[u8]) -> Result<(), Errno> {
        if value.len() <= 16 {
            return Err(Errno::EINVAL);
        }
        let parent = Gfid(value[..16].try_into().map_err(|_| Errno::EINVAL)?);
        let name = OsStr::from_bytes(&value[16..]).to_os_string();
        let mut s = self.state.lock();
        if s.frozen.contains_key(&g) || s.names.contains_key(&(parent, name.clone())) {
            return Err(Errno::EBUSY);
        }
        if s.moved.contains_key(&g) {
            return Err(Errno::EREMOTE);
        }
        s.next += 1;
        let id = s.next;
        let (done, _) = watch::channel(None);
        s.names.insert((parent, name.clone()), g);
        s.frozen.insert(
            g,
            Freeze {
                id,
                client: ctx.client,
                parent,
                name,
                done,
            },
        );
        drop(s);
        // A mover that goes silent without closing its connection does not hold writers
        // for ever.
        let state = Arc::downgrade(&self.state);
        let me = self.name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FREEZE_MAX).await;
            let Some(state) = state.upgrade() else { return };
            let mut s = state.lock();
            if s.frozen.get(&g).is_some_and(|f| f.id == id) {
                tracing::warn!(
                    "{me}: the move of {g} was frozen for {}s without commit; given up",
                    FREEZE_MAX.as_secs()
                );
                s.end(g, End::Aborted);
            }
        });
        Ok(())
    }

    /// The freeze of `g`, if `ctx`'s client holds it: (parent, name).
    fn held_by(&self, ctx: &Ctx, g: Gfid) -> Result<(Gfid, OsString), Errno> {
        let s = self.state.lock();
        match s.frozen.get(&g) {
            Some(f) if f.client == ctx.client => Ok((f.parent, f.name.clone())),
            Some(_) => Err(Errno::EPERM),
            None => Err(Errno::EINVAL),
        }
    }

    async fn commit(&self, ctx: &Ctx, g: Gfid) -> Result<(), Errno> {
        let (parent, name) = self.held_by(ctx, g)?;
        let mut xd = Xdata::new();
        xd.set(UNLINK_GFID_KEY, g.0.to_vec());
        let loc = Loc::entry(parent, &name).with_gfid(g);
        match self.child()?.unlink(ctx, &loc, xd).await {
            Ok(_) => {
                self.state.lock().end(g, End::Moved);
                Ok(())
            }
            Err(e) => {
                self.state.lock().end(g, End::Aborted);
                Err(e)
            }
        }
    }

    /// Handles the control xattrs; `None` when `attrs` holds none of them.
    async fn control(&self, ctx: &Ctx, g: Gfid, attrs: &XattrMap) -> Option<Result<(), Errno>> {
        if let Some(v) = attrs.get(FREEZE_XATTR) {
            return Some(self.freeze(ctx, g, v));
        }
        if attrs.contains_key(COMMIT_XATTR) {
            return Some(self.commit(ctx, g).await);
        }
        if attrs.contains_key(ABORT_XATTR) {
            return Some(self.held_by(ctx, g).map(|_| {
                self.state.lock().end(g, End::Aborted);
            }));
        }
        None
    }
}

async fn wait_end(mut rx: watch::Receiver<Option<End>>) -> End {
    loop {
        if let Some(e) = *rx.borrow_and_update() {
            return e;
        }
        if rx.changed().await.is_err() {
            // The freeze was dropped without an end (the graph is going away).
            return End::Aborted;
        }
    }
}

#[async_trait]
impl Xlator for Migrate {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }
    fn dump(&self) -> String {
        let s = self.state.lock();
        format!(
            "frozen={}\nmoved_open={}\nopen_inodes={}\ncommitted={}\naborted={}\n",
            s.frozen.len(),
            s.moved.len(),
            s.opens.len(),
            s.committed,
            s.aborted
        )
    }
    async fn fini(&self) {
        let mut s = self.state.lock();
        let all: Vec<Gfid> = s.frozen.keys().copied().collect();
        for g in all {
            s.end(g, End::Aborted);
        }
    }
    async fn forget_client(&self, client: u64) {
        {
            let mut s = self.state.lock();
            let mine: Vec<Gfid> = s
                .frozen
                .iter()
                .filter(|(_, f)| f.client == client)
                .map(|(g, _)| *g)
                .collect();
            for g in mine {
                tracing::info!(
                    "{}: the mover of {g} disconnected before commit; the move is given up",
                    self.name
                );
                s.end(g, End::Aborted);
            }
        }
        for c in self.children() {
            c.forget_client(client).await;
        }
    }

    // ---- inode FOPs by loc ----

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        // A nameless lookup of a moved inode: its copy here is only kept for old fds.
        if let (None, Some(g)) = (&loc.name, loc.gfid) {
            if self.state.lock().moved.contains_key(&g) {
                return Err(Errno::ESTALE);
            }
        }
        self.child()?.lookup(ctx, loc, xd).await
    }

    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        if let Some(g) = loc.gfid {
            self.check(g)?;
        }
        self.child()?.stat(ctx, loc, xd).await
    }
    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        self.gate_loc(loc).await?;
        self.child()?.setattr(ctx, loc, attr, xd).await
    }
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        self.gate_loc(loc).await?;
        self.child()?.truncate(ctx, loc, size, xd).await
    }
    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        if let Some(g) = loc.gfid {
            self.check(g)?;
        }
        self.child()?.getxattr(ctx, loc, name, xd).await
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        if let (Some(g), true) = (loc.gfid, xd.has(crate::distribute::INTERNAL_XDATA_KEY)) {
            if let Some(r) = self.control(ctx, g, attrs).await {
                return r.map(|_| ((), Xdata::new()));
            }
        }
        self.gate_loc(loc).await?;
        self.child()?.setxattr(ctx, loc, attrs, flags, xd).await
    }
    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        self.gate_loc(loc).await?;
        self.child()?.removexattr(ctx, loc, name, xd).await
    }
    async fn xattrop(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.gate_loc(loc).await?;
        self.child()?.xattrop(ctx, loc, op, attrs, xd).await
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
        self.gate_loc(loc).await?;
        self.child()?.inodelk(ctx, domain, loc, cmd, lock, xd).await
    }

    // ---- entry FOPs: wait while their name is frozen ----

    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        self.gate_name(loc).await;
        self.child()?.unlink(ctx, loc, xd).await
    }
    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        self.gate_name(old).await;
        self.gate_name(new).await;
        self.child()?.rename(ctx, old, new, flags, xd).await
    }
    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, xd: Xdata) -> Fop<Iatt> {
        self.gate_loc(old).await?;
        self.gate_name(new).await;
        self.child()?.link(ctx, old, new, xd).await
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
        self.gate_name(loc).await;
        self.child()?.mknod(ctx, loc, mode, rdev, umask, xd).await
    }
    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &std::path::Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        self.gate_name(loc).await;
        self.child()?.symlink(ctx, target, loc, umask, xd).await
    }
    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        self.gate_name(loc).await;
        self.child()?.mkdir(ctx, loc, mode, umask, xd).await
    }

    // ---- opening and closing ----

    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        self.check(fd.gfid)?;
        let r = self.child()?.open(ctx, loc, fd, xd).await?;
        self.opened(fd.gfid);
        Ok(r)
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
        self.gate_name(loc).await;
        let r = self.child()?.create(ctx, loc, fd, mode, umask, xd).await?;
        self.opened(fd.gfid);
        Ok(r)
    }
    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let r = self.child()?.release(ctx, fd, xd).await;
        self.closed(fd.gfid);
        r
    }

    // ---- fd FOPs ----

    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        self.check(fd.gfid)?;
        self.child()?.fstat(ctx, fd, xd).await
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        self.gate(fd.gfid).await?;
        self.child()?.fsetattr(ctx, fd, attr, xd).await
    }
    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        self.gate(fd.gfid).await?;
        self.child()?.ftruncate(ctx, fd, size, xd).await
    }
    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        self.check(fd.gfid)?;
        self.child()?.readv(ctx, fd, size, offset, xd).await
    }
    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        self.gate(fd.gfid).await?;
        self.child()?.writev(ctx, fd, data, offset, xd).await
    }
    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        self.gate(fd.gfid).await?;
        self.child()?.fsync(ctx, fd, datasync, xd).await
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
        self.gate(fd.gfid).await?;
        self.child()?
            .fallocate(ctx, fd, mode, offset, len, xd)
            .await
    }
    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.gate(fd.gfid).await?;
        self.child()?.discard(ctx, fd, offset, len, xd).await
    }
    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.gate(fd.gfid).await?;
        self.child()?.zerofill(ctx, fd, offset, len, xd).await
    }
    async fn seek(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        what: SeekWhat,
        xd: Xdata,
    ) -> Fop<u64> {
        self.check(fd.gfid)?;
        self.child()?.seek(ctx, fd, offset, what, xd).await
    }
    async fn rchecksum(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        len: u32,
        xd: Xdata,
    ) -> Fop<Checksum> {
        self.check(fd.gfid)?;
        self.child()?.rchecksum(ctx, fd, offset, len, xd).await
    }
    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.check(fd.gfid)?;
        self.child()?.fgetxattr(ctx, fd, name, xd).await
    }
    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        self.gate(fd.gfid).await?;
        self.child()?.fsetxattr(ctx, fd, attrs, flags, xd).await
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        self.gate(fd.gfid).await?;
        self.child()?.fremovexattr(ctx, fd, name, xd).await
    }
    async fn fxattrop(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.gate(fd.gfid).await?;
        self.child()?.fxattrop(ctx, fd, op, attrs, xd).await
    }
    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        if lock.kind != LockType::Unlock {
            self.gate(fd.gfid).await?;
        }
        self.child()?.lk(ctx, fd, cmd, lock, xd).await
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
        if lock.kind != LockType::Unlock {
            self.gate(fd.gfid).await?;
        }
        self.child()?.finodelk(ctx, domain, fd, cmd, lock, xd).await
    }
    async fn readlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<PathBuf> {
        self.child()?.readlink(ctx, loc, xd).await
    }
}

/// The `features/migrate` type for the registry.
pub struct MigrateType;

const OPTIONS: &[OptionSpec] = &[];

impl XlatorType for MigrateType {
    fn type_name(&self) -> &'static str {
        "features/migrate"
    }
    fn description(&self) -> &'static str {
        "Brick side of a rebalance: holds changes to a file while it is copied, then sends its clients to the new copy."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(Migrate::new(init.name, init.children)))
    }
}
