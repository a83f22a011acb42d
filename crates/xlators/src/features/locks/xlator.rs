//! The `features/locks` translator: answers `lk`, `inodelk`, `finodelk` and `entrylk`
//! from its own tables and passes every other FOP to its child.

use std::ffi::OsString;

use async_trait::async_trait;
use parking_lot::Mutex;
use weft_core::*;

use super::range::{Lock, Mode, Owner, Range};
use super::state::{EntryKey, Outcome, RangeKey, ReplyRx, State, Target};

/// The locks translator. See the [module docs](super).
pub struct Locks {
    name: String,
    children: Vec<XlatorRef>,
    state: Mutex<State>,
}

/// Removes a waiter that is dropped before it saw its reply (see [`State::cancel`]).
struct WaitGuard<'a> {
    state: &'a Mutex<State>,
    id: u64,
    target: Target,
    armed: bool,
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.state.lock().cancel(self.id, &self.target);
        }
    }
}

fn mode_of(kind: LockType) -> Option<Mode> {
    match kind {
        LockType::Read => Some(Mode::Read),
        LockType::Write => Some(Mode::Write),
        LockType::Unlock => None,
    }
}

fn kind_of(mode: Mode) -> LockType {
    match mode {
        Mode::Read => LockType::Read,
        Mode::Write => LockType::Write,
    }
}

impl Locks {
    /// A locks translator named `name` over `children` (the registry checks there is one).
    pub fn new(name: String, children: Vec<XlatorRef>) -> Locks {
        Locks {
            name,
            children,
            state: Mutex::new(State::default()),
        }
    }

    /// Waits for waiter `id`'s reply. Dropping this future at any point leaves no trace.
    /// The answer to [`LOCKS_HELD_XATTR`] for `g`.
    fn held(&self, g: Gfid) -> XattrMap {
        let held = self.state.lock().holds_any(g);
        let mut m = XattrMap::new();
        m.insert(
            LOCKS_HELD_XATTR.to_string(),
            vec![if held { b'1' } else { b'0' }],
        );
        m
    }

    async fn wait(&self, id: u64, target: Target, rx: ReplyRx) -> Result<(), Errno> {
        let mut guard = WaitGuard {
            state: &self.state,
            id,
            target,
            armed: true,
        };
        let r = rx.await;
        guard.armed = false;
        self.state.lock().seen(id);
        // A dropped sender means the waiter was taken out of the queue without a reply.
        r.unwrap_or(Err(Errno::ENOTCONN))
    }

    /// One range-lock request on `key` by `owner`: Get returns the conflicting lock, Set
    /// and SetWait return `None` once done.
    async fn range_op(
        &self,
        key: RangeKey,
        owner: Owner,
        cmd: LkCmd,
        lock: &Flock,
        fd_id: u64,
    ) -> Result<Option<Lock>, Errno> {
        let range = Range::from_start_len(lock.start, lock.len)?;
        let mode = mode_of(lock.kind);
        let outcome = {
            let mut st = self.state.lock();
            match (cmd, mode) {
                (LkCmd::Get, None) => return Err(Errno::EINVAL),
                (LkCmd::Get, Some(m)) => return Ok(st.range_conflict(&key, owner, m, &range)),
                (_, None) => {
                    st.range_unlock(&key, owner, range);
                    return Ok(None);
                }
                (cmd, Some(mode)) => {
                    let req = Lock {
                        owner,
                        mode,
                        range,
                        pid: lock.pid,
                        fd: fd_id,
                    };
                    st.range_lock(&key, req, cmd == LkCmd::SetWait)
                }
            }
        };
        match outcome {
            Outcome::Granted => Ok(None),
            Outcome::Conflict => Err(Errno::EAGAIN),
            Outcome::Queued(id, rx) => self.wait(id, Target::Range(key), rx).await.map(|_| None),
        }
    }

    /// inodelk and finodelk on `gfid`: Get answers EAGAIN when a lock is in the way.
    async fn inode_op(
        &self,
        ctx: &Ctx,
        domain: &str,
        gfid: Gfid,
        cmd: LkCmd,
        lock: &Flock,
    ) -> Fop<()> {
        let owner = Owner {
            client: ctx.client,
            owner: ctx.lk_owner,
        };
        let key = RangeKey::Inode(domain.to_string(), gfid);
        match self.range_op(key, owner, cmd, lock, 0).await? {
            Some(_) => Err(Errno::EAGAIN),
            None => Ok(((), Xdata::new())),
        }
    }
}

impl Locks {
    /// Takes (`Write`) or gives back (`Unlock`) a whole-file inode lock on `gfid` in
    /// `domain` for `ctx`'s client and lock owner `owner`, without waiting ([`WITH_INODELK_KEY`]);
    /// whether it did.
    async fn whole_inode(
        &self,
        ctx: &Ctx,
        owner: u64,
        domain: &str,
        gfid: Gfid,
        kind: LockType,
    ) -> bool {
        let lctx = Ctx {
            lk_owner: owner,
            ..ctx.clone()
        };
        self.inode_op(&lctx, domain, gfid, LkCmd::Set, &Flock::whole(kind, owner))
            .await
            .is_ok()
    }
}

#[async_trait]
impl Xlator for Locks {
    fn name(&self) -> &str {
        &self.name
    }

    fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    fn dump(&self) -> String {
        self.state.lock().dump()
    }

    async fn fini(&self) {
        self.state.lock().fail_all_waiters();
    }

    async fn forget_client(&self, client: u64) {
        self.state.lock().forget_client(client);
        for c in self.children() {
            c.forget_client(client).await;
        }
    }

    /// A create asking for [`WITH_INODELK_KEY`] takes that inode lock on the new inode
    /// (nobody else can hold it yet; an existing file opened by the create may be held,
    /// and then the reply just lacks the key).
    async fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        mut xd: Xdata,
    ) -> Fop<Iatt> {
        let ask =
            xd.0.remove(WITH_INODELK_KEY)
                .and_then(|v| parse_with_inodelk(&v));
        let child = self.children.first().ok_or(Errno::ENOTCONN)?;
        let (ia, mut rxd) = child.create(ctx, loc, fd, mode, umask, xd).await?;
        if let Some((owner, domain)) = ask {
            if self
                .whole_inode(ctx, owner, &domain, ia.gfid, LockType::Write)
                .await
            {
                rxd.set(WITH_INODELK_KEY, Vec::new());
            }
        }
        Ok((ia, rxd))
    }

    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        let owner = Owner {
            client: ctx.client,
            owner: lock.owner,
        };
        let key = if xd.has(weft_core::LK_FLOCK_KEY) {
            RangeKey::Flock(fd.gfid)
        } else {
            RangeKey::Posix(fd.gfid)
        };
        match self.range_op(key, owner, cmd, lock, fd.id).await? {
            Some(c) => Ok((
                Flock {
                    kind: kind_of(c.mode),
                    start: c.range.start,
                    len: c.range.flock_len(),
                    pid: c.pid,
                    owner: c.owner.owner,
                },
                Xdata::new(),
            )),
            None if cmd == LkCmd::Get => Ok((
                Flock {
                    kind: LockType::Unlock,
                    ..*lock
                },
                Xdata::new(),
            )),
            None => Ok((*lock, Xdata::new())),
        }
    }

    async fn inodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        cmd: LkCmd,
        lock: &Flock,
        _xd: Xdata,
    ) -> Fop<()> {
        let gfid = loc.gfid.ok_or(Errno::EINVAL)?;
        self.inode_op(ctx, domain, gfid, cmd, lock).await
    }

    async fn finodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        fd: &FdRef,
        cmd: LkCmd,
        lock: &Flock,
        _xd: Xdata,
    ) -> Fop<()> {
        self.inode_op(ctx, domain, fd.gfid, cmd, lock).await
    }

    async fn entrylk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        basename: Option<&OsString>,
        cmd: EntrylkCmd,
        kind: EntrylkType,
        _xd: Xdata,
    ) -> Fop<()> {
        let dir = loc.gfid.ok_or(Errno::EINVAL)?;
        let key = EntryKey {
            domain: domain.to_string(),
            dir,
        };
        let owner = Owner {
            client: ctx.client,
            owner: ctx.lk_owner,
        };
        let mode = match kind {
            EntrylkType::Read => Mode::Read,
            EntrylkType::Write => Mode::Write,
        };
        let outcome = {
            let mut st = self.state.lock();
            match cmd {
                EntrylkCmd::Unlock => {
                    // Lenient: unlocking a name not held is not an error (see module docs).
                    st.entry_unlock(&key, owner, basename, mode);
                    return Ok(((), Xdata::new()));
                }
                EntrylkCmd::Lock | EntrylkCmd::LockNonBlocking => st.entry_lock(
                    &key,
                    owner,
                    basename.cloned(),
                    mode,
                    cmd == EntrylkCmd::Lock,
                ),
            }
        };
        match outcome {
            Outcome::Granted => Ok(((), Xdata::new())),
            Outcome::Conflict => Err(Errno::EAGAIN),
            Outcome::Queued(id, rx) => {
                self.wait(id, Target::Entry(key), rx).await?;
                Ok(((), Xdata::new()))
            }
        }
    }

    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        if name == Some(LOCKS_HELD_XATTR) {
            let g = loc.gfid.ok_or(Errno::EINVAL)?;
            return Ok((self.held(g), Xdata::new()));
        }
        self.child()?.getxattr(ctx, loc, name, xd).await
    }

    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        if name == Some(LOCKS_HELD_XATTR) {
            return Ok((self.held(fd.gfid), Xdata::new()));
        }
        self.child()?.fgetxattr(ctx, fd, name, xd).await
    }

    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let owner = Owner {
            client: ctx.client,
            owner: ctx.lk_owner,
        };
        self.state.lock().flush(fd.gfid, owner);
        self.child()?.flush(ctx, fd, xd).await
    }

    /// A release asking for [`WITH_INODELK_KEY`] first gives that inode lock back (the
    /// end of a replicate transaction that the release carries), unless a post-op it also
    /// asked for is still undone.
    async fn release(&self, ctx: &Ctx, fd: &FdRef, mut xd: Xdata) -> Fop<()> {
        // A post-op asked of the release and not done above (no features/index there)
        // keeps the lock: no one may take it with the counters still up.
        let post_op_left = xd.0.keys().any(|k| k.starts_with(WITH_XATTROP_PREFIX));
        let give_back =
            xd.0.remove(WITH_INODELK_KEY)
                .and_then(|v| parse_with_inodelk(&v))
                .filter(|_| !post_op_left);
        let mut unlocked = false;
        if let Some((owner, domain)) = give_back {
            unlocked = self
                .whole_inode(ctx, owner, &domain, fd.gfid, LockType::Unlock)
                .await;
        }
        self.state.lock().release_fd(fd.gfid, fd.id);
        let (v, mut rxd) = self.child()?.release(ctx, fd, xd).await?;
        if unlocked {
            rxd.set(WITH_INODELK_KEY, Vec::new());
        }
        Ok((v, rxd))
    }
}
