//! The lock every writer of a directory's layout holds from reading its pieces to writing
//! new ones: rebalance tasks on several nodes (each fixes every directory's layout),
//! clients healing a layout with holes or overlaps, and mkdir writing a new directory's
//! first layout. Without it, one writer reading the pieces while another is part-way
//! through writing sees a layout with holes or overlaps, and writes a different layout
//! over the first: files then get moved by a layout that is no longer the directory's.
//!
//! The lock is an inode lock in [`LAYOUT_LOCK_DOMAIN`] on the directory's gfid, always on
//! the first subvolume (a lock does not need the directory to exist there). A writer
//! that gets the lock reads the pieces again before deciding anything. A holder whose
//! connection to that brick goes loses the lock with it (at once, or after the brick's
//! grace time when it held open files there).

use weft_core::*;

/// The inode-lock domain of directory layouts.
pub const LAYOUT_LOCK_DOMAIN: &str = "weft.dht.layout";

/// A held layout lock (or, under a subvolume with no lock support, none); give it back
/// with [`LayoutLock::unlock`]. Dropped without that (a cancelled caller), it is given
/// back in the background.
pub struct LayoutLock {
    on: Option<(XlatorRef, Gfid, u64)>,
}

/// The whole-range inodelk request `kind` of `owner` on `dir` in the layout domain.
async fn layout_inodelk(
    sub: &XlatorRef,
    dir: Gfid,
    owner: u64,
    cmd: LkCmd,
    kind: LockType,
) -> Fop<()> {
    let ctx = Ctx {
        lk_owner: owner,
        ..Ctx::internal()
    };
    sub.inodelk(
        &ctx,
        LAYOUT_LOCK_DOMAIN,
        &Loc::inode(dir),
        cmd,
        &Flock::whole(kind, owner),
        Xdata::new(),
    )
    .await
}

/// Whether `e` says the subvolume has no inode locks at all (a graph without
/// `features/locks`): writers then go on unlocked, as before the lock existed.
fn unsupported(e: Errno) -> bool {
    e == Errno::ENOTSUP || e == Errno(libc::EOPNOTSUPP) || e == Errno(libc::ENOSYS)
}

/// Takes the layout lock of directory `dir` on `first` (the distribute's first
/// subvolume), waiting while another writer holds it. A subvolume without lock support
/// gives an unheld lock (with a warning); any other failure (the brick is away) is the
/// error, and the caller must not write the layout.
pub async fn lock_layout(first: &XlatorRef, dir: Gfid) -> Result<LayoutLock, Errno> {
    // An owner no other writer uses: two writers in one process must exclude each other.
    let g = Gfid::random();
    let owner = u64::from_le_bytes(g.0[..8].try_into().unwrap_or([1; 8])) | 1;
    match layout_inodelk(first, dir, owner, LkCmd::SetWait, LockType::Write).await {
        Ok(_) => Ok(LayoutLock {
            on: Some((first.clone(), dir, owner)),
        }),
        Err(e) if unsupported(e) => {
            tracing::warn!(
                "directory {dir}: {} has no inode locks ({e}); its layout is written unlocked",
                first.name()
            );
            Ok(LayoutLock { on: None })
        }
        Err(e) => Err(e),
    }
}

async fn unlock_on(sub: XlatorRef, dir: Gfid, owner: u64) {
    if let Err(e) = layout_inodelk(&sub, dir, owner, LkCmd::Set, LockType::Unlock).await {
        tracing::warn!(
            "directory {dir}: giving the layout lock on {} back failed: {e}",
            sub.name()
        );
    }
}

impl LayoutLock {
    /// Gives the lock back.
    pub async fn unlock(mut self) {
        if let Some((sub, dir, owner)) = self.on.take() {
            unlock_on(sub, dir, owner).await;
        }
    }
}

impl Drop for LayoutLock {
    fn drop(&mut self) {
        if let Some((sub, dir, owner)) = self.on.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(unlock_on(sub, dir, owner));
                }
                Err(_) => tracing::warn!(
                    "directory {dir}: a layout lock dropped outside a runtime stays on {} until its connection goes",
                    sub.name()
                ),
            }
        }
    }
}
