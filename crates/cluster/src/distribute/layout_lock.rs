//! The lock every writer of a directory's layout holds from reading its pieces to writing
//! new ones: rebalance tasks on several nodes (each fixes every directory's layout) and
//! clients healing a layout with holes or overlaps. Without it, one writer reading the
//! pieces while another is part-way through writing sees a layout with overlaps, and
//! writes a different layout over the first: files then get moved by a layout that is no
//! longer the directory's.
//!
//! The lock is an inode lock in [`LAYOUT_LOCK_DOMAIN`] on the directory, taken on one
//! subvolume that every writer picks the same way (the first holding the directory). A
//! writer that gets the lock reads the pieces again before deciding anything. The brick
//! drops the lock when its holder's connection goes.

use weft_core::*;

/// The inode-lock domain of directory layouts.
pub const LAYOUT_LOCK_DOMAIN: &str = "weft.dht.layout";

/// A held (or, where the subvolume has no lock support, not held) layout lock; give it
/// back with [`LayoutLock::unlock`].
pub struct LayoutLock {
    on: Option<(XlatorRef, Gfid, u64)>,
}

fn lock_ctx(owner: u64) -> Ctx {
    Ctx {
        lk_owner: owner,
        ..Ctx::internal()
    }
}

fn whole(kind: LockType, owner: u64) -> Flock {
    Flock {
        kind,
        start: 0,
        len: 0,
        pid: 0,
        owner,
    }
}

/// Takes the layout lock of directory `dir` on `sub`, waiting while another writer holds
/// it. When `sub` cannot lock (a graph without a locks translator), the caller goes on
/// unlocked, as before locks existed: a warning says so once per call.
pub async fn lock_layout(sub: &XlatorRef, dir: Gfid) -> LayoutLock {
    // An owner no other writer uses: two writers in one process must exclude each other.
    let g = Gfid::random();
    let owner = u64::from_le_bytes(g.0[..8].try_into().unwrap_or([1; 8])) | 1;
    let r = sub
        .inodelk(
            &lock_ctx(owner),
            LAYOUT_LOCK_DOMAIN,
            &Loc::inode(dir),
            LkCmd::SetWait,
            &whole(LockType::Write, owner),
            Xdata::new(),
        )
        .await;
    match r {
        Ok(_) => LayoutLock {
            on: Some((sub.clone(), dir, owner)),
        },
        Err(e) => {
            tracing::debug!(
                "directory {dir}: the layout lock on {} was not taken ({e}); going on without it",
                sub.name()
            );
            LayoutLock { on: None }
        }
    }
}

impl LayoutLock {
    /// Gives the lock back.
    pub async fn unlock(self) {
        let Some((sub, dir, owner)) = self.on else {
            return;
        };
        if let Err(e) = sub
            .inodelk(
                &lock_ctx(owner),
                LAYOUT_LOCK_DOMAIN,
                &Loc::inode(dir),
                LkCmd::Set,
                &whole(LockType::Unlock, owner),
                Xdata::new(),
            )
            .await
        {
            tracing::warn!(
                "directory {dir}: giving the layout lock on {} back failed: {e}",
                sub.name()
            );
        }
    }
}
