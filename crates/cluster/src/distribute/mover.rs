//! Moving one file from the subvolume holding it to another, while clients keep using it:
//! the client half of a rebalance's file moves (the brick half is
//! [`crate::migrate`], `features/migrate`, in every brick graph). See ARCHITECTURE.md,
//! "File migration".
//!
//! The steps, for file `g` named `D/N`, from subvolume `from` to `to`:
//! 1. freeze `g` on `from`: writes, attribute changes and lock requests on it wait there,
//!    and so do entry FOPs on the name `D/N`;
//! 2. check, under the freeze, that `D/N` still names `g`, that `g` has one link and that
//!    nobody holds or waits for a lock on it (locks do not move; such files are skipped);
//! 3. make (or reuse) `D/N` on `to` as a link file pointing at `from`, with `g`'s gfid:
//!    lookups on `to` keep following it to `from`; copy the data (holes stay holes), the
//!    size, the xattrs, owner and times into it; fsync it; record the real mode in
//!    [`MODE_XATTR`];
//! 4. commit on `from`: the brick removes `D/N` there and answers every waiting and later
//!    FOP on `g` with `EREMOTE`, so clients reopen the file on `to` and retry;
//! 5. make the copy on `to` a plain file (its mode; the link xattrs removed).
//!
//! A mover that stops before 4 leaves `from` as it was (the brick gives the freeze up when
//! the mover's connection goes); one that stops between 4 and 5 leaves a copy any lookup
//! finishes ([`super::Distribute::promote`]). Nothing acknowledged is lost either way.

use std::ffi::OsStr;

use weft_core::*;

use super::{ixd, link_mode, LINKTO_XATTR, LINK_MODE, MODE_XATTR};
use crate::migrate::{ABORT_XATTR, COMMIT_XATTR, FREEZE_XATTR};

/// The size of each read and write of a copy.
const CHUNK: u64 = 1 << 20;

/// What moving one file came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Moved {
    /// Moved; this many bytes of data copied.
    Done(u64),
    /// Left where it is, for the reason given (not an error: the next rebalance tries
    /// again).
    Skipped(String),
}

/// Moves `dir/name` from subvolume `from` to `to` (both children of the same
/// distribute). `Err` says what failed; the file then stays readable where it was.
pub async fn move_file(
    subs: &[XlatorRef],
    dir: Gfid,
    name: &OsStr,
    from: usize,
    to: usize,
) -> Result<Moved, String> {
    use std::os::unix::ffi::OsStrExt;
    let ctx = Ctx::internal();
    let (src, dst) = (&subs[from], &subs[to]);
    let what = format!("{}/{}", dir, name.to_string_lossy());
    let eloc = Loc::entry(dir, name);
    let (ia, _) = src
        .lookup(&ctx, &eloc, Xdata::new())
        .await
        .map_err(|e| format!("{what}: lookup on {} failed: {e}", src.name()))?;
    if ia.mode & libc::S_IFMT != libc::S_IFREG || link_mode(&ia) {
        return Ok(Moved::Skipped("not a regular data file".into()));
    }
    if ia.nlink > 1 {
        return Ok(Moved::Skipped(format!("{} hard links", ia.nlink)));
    }
    let g = ia.gfid;
    let iloc = Loc::inode(g);
    let mut v = dir.0.to_vec();
    v.extend_from_slice(name.as_bytes());
    let mut freeze = XattrMap::new();
    freeze.insert(FREEZE_XATTR.to_string(), v);
    match src.setxattr(&ctx, &iloc, &freeze, 0, ixd()).await {
        Ok(_) => {}
        Err(Errno::EBUSY) => return Ok(Moved::Skipped("another move holds it".into())),
        Err(e) => return Err(format!("{what}: freezing on {} failed: {e}", src.name())),
    }
    let r = copy_frozen(subs, &eloc, g, from, to).await;
    let control = |key: &str| {
        let mut m = XattrMap::new();
        m.insert(key.to_string(), Vec::new());
        m
    };
    match r {
        Ok(Some(bytes)) => {
            if let Err(e) = src
                .setxattr(&ctx, &iloc, &control(COMMIT_XATTR), 0, ixd())
                .await
            {
                // The brick gave the move up: the name no longer names g there. The copy
                // must not be finished by a lookup.
                let mut xd = Xdata::new();
                xd.set(UNLINK_GFID_KEY, g.0.to_vec());
                let _ = dst.unlink(&ctx, &eloc.with_gfid(g), xd).await;
                return Err(format!("{what}: commit on {} failed: {e}", src.name()));
            }
            make_plain(dst, g).await.map_err(|e| {
                format!(
                    "{what}: making the copy on {} plain failed (a lookup finishes it): {e}",
                    dst.name()
                )
            })?;
            Ok(Moved::Done(bytes))
        }
        Ok(None) | Err(_) => {
            let _ = src
                .setxattr(&ctx, &iloc, &control(ABORT_XATTR), 0, ixd())
                .await;
            // The copy stays a link file pointing at `from`, emptied; only while it is a
            // link file (a plain copy of this gfid there is data, never emptied).
            let is_link = matches!(
                dst.lookup(&ctx, &iloc, Xdata::new()).await,
                Ok((ia, _)) if super::link_mode(&ia)
            );
            if is_link {
                let _ = dst.truncate(&ctx, &iloc, 0, Xdata::new()).await.map(|_| ());
                let _ = dst.removexattr(&ctx, &iloc, MODE_XATTR, ixd()).await;
            }
            match r {
                Ok(None) => Ok(Moved::Skipped("locked or changed while moving".into())),
                Err(e) => Err(format!("{what}: {e}")),
                Ok(Some(_)) => unreachable!(),
            }
        }
    }
}

/// The xattr holding the copy's access ACL until it becomes a plain file: setting an
/// access ACL changes the mode bits, which would stop the copy looking like a link file.
pub const ACL_XATTR: &str = "trusted.weft.dht.acl";

const POSIX_ACL_ACCESS: &str = "system.posix_acl_access";

/// Step 5: the copy of `g` on `c` becomes a plain file: its access ACL, its mode, the
/// link xattrs removed. `Ok(None)` when it is no such copy (no [`MODE_XATTR`]).
pub(super) async fn make_plain(c: &XlatorRef, g: Gfid) -> Result<Option<Iatt>, Errno> {
    let ctx = Ctx::internal();
    let iloc = Loc::inode(g);
    let m = match c.getxattr(&ctx, &iloc, None, ixd()).await {
        Ok((m, _)) => m,
        Err(Errno::ENODATA) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(b) = m.get(MODE_XATTR) else {
        return Ok(None);
    };
    let b: [u8; 4] = b.as_slice().try_into().map_err(|_| Errno::EIO)?;
    if let Some(acl) = m.get(ACL_XATTR) {
        let mut a = XattrMap::new();
        a.insert(POSIX_ACL_ACCESS.to_string(), acl.clone());
        c.setxattr(&ctx, &iloc, &a, 0, Xdata::new()).await?;
    }
    let attr = SetAttr {
        mode: Some(u32::from_le_bytes(b) & 0o7777),
        ..Default::default()
    };
    let (ia, _) = c.setattr(&ctx, &iloc, &attr, Xdata::new()).await?;
    for k in [LINKTO_XATTR, ACL_XATTR, MODE_XATTR] {
        match c.removexattr(&ctx, &iloc, k, ixd()).await {
            Ok(_) | Err(Errno::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(ia))
}

/// Steps 2 and 3, under the freeze. `Ok(None)`: the file must stay (locked, renamed).
async fn copy_frozen(
    subs: &[XlatorRef],
    eloc: &Loc,
    g: Gfid,
    from: usize,
    to: usize,
) -> Result<Option<u64>, String> {
    let ctx = Ctx::internal();
    let (src, dst) = (&subs[from], &subs[to]);
    let iloc = Loc::inode(g);
    match src.lookup(&ctx, eloc, Xdata::new()).await {
        Ok((ia, _)) if ia.gfid == g && ia.nlink == 1 => {}
        Ok(_) | Err(Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(format!("lookup on {} failed: {e}", src.name())),
    }
    let (held, _) = src
        .getxattr(&ctx, &iloc, Some(LOCKS_HELD_XATTR), Xdata::new())
        .await
        .map_err(|e| format!("asking {} for locks failed: {e}", src.name()))?;
    if held.get(LOCKS_HELD_XATTR).map(|v| v.as_slice()) != Some(b"0") {
        return Ok(None);
    }
    // The copy: an existing link file of this gfid, or a new one.
    match dst.lookup(&ctx, eloc, Xdata::new()).await {
        Ok((d, _)) if d.gfid == g && link_mode(&d) => {}
        Ok(_) => {
            return Err(format!(
                "the name exists on {} and is not this file's link file",
                dst.name()
            ))
        }
        Err(Errno::ENOENT) => {
            let mut xd = ixd();
            xd.set(GFID_REQ_KEY, g.0.to_vec());
            dst.mknod(&ctx, eloc, LINK_MODE, 0, 0, xd)
                .await
                .map_err(|e| format!("making the copy on {} failed: {e}", dst.name()))?;
        }
        Err(e) => return Err(format!("lookup on {} failed: {e}", dst.name())),
    }
    let mut link = XattrMap::new();
    link.insert(LINKTO_XATTR.to_string(), src.name().as_bytes().to_vec());
    dst.setxattr(&ctx, &iloc, &link, 0, ixd())
        .await
        .map_err(|e| format!("pointing the copy on {} back failed: {e}", dst.name()))?;

    let sfd = Fd::new(g, libc::O_RDONLY, false);
    src.open(&ctx, &iloc, &sfd, Xdata::new())
        .await
        .map_err(|e| format!("opening on {} failed: {e}", src.name()))?;
    let dfd = Fd::new(g, libc::O_WRONLY, false);
    if let Err(e) = dst.open(&ctx, &iloc, &dfd, Xdata::new()).await {
        let _ = src.release(&ctx, &sfd, Xdata::new()).await;
        return Err(format!("opening the copy on {} failed: {e}", dst.name()));
    }
    let r = copy_data(src, dst, &sfd, &dfd).await;
    let r = match r {
        Ok(bytes) => copy_meta(src, dst, &sfd, &dfd).await.map(|_| bytes),
        Err(e) => Err(e),
    };
    let _ = src.release(&ctx, &sfd, Xdata::new()).await;
    let _ = dst.release(&ctx, &dfd, Xdata::new()).await;
    r.map(Some)
}

/// Copies the data segments (holes stay holes) and the size; fsyncs the copy. The bytes
/// copied.
async fn copy_data(
    src: &XlatorRef,
    dst: &XlatorRef,
    sfd: &FdRef,
    dfd: &FdRef,
) -> Result<u64, String> {
    let ctx = Ctx::internal();
    let (st, _) = src
        .fstat(&ctx, sfd, Xdata::new())
        .await
        .map_err(|e| format!("fstat on {} failed: {e}", src.name()))?;
    let size = st.size;
    dst.ftruncate(&ctx, dfd, 0, Xdata::new())
        .await
        .map_err(|e| format!("emptying the copy failed: {e}"))?;
    let mut copied = 0u64;
    let mut off = 0u64;
    while off < size {
        // The next data segment; a subvolume without SEEK_DATA copies everything.
        let start = match src.seek(&ctx, sfd, off, SeekWhat::Data, Xdata::new()).await {
            Ok((d, _)) => d,
            Err(Errno::ENXIO) => break,
            Err(_) => off,
        };
        let end = match src
            .seek(&ctx, sfd, start, SeekWhat::Hole, Xdata::new())
            .await
        {
            Ok((h, _)) => h.min(size),
            Err(_) => size,
        };
        let mut pos = start;
        while pos < end {
            let n = (end - pos).min(CHUNK) as u32;
            let (data, _) = src
                .readv(&ctx, sfd, n, pos, Xdata::new())
                .await
                .map_err(|e| format!("reading on {} failed: {e}", src.name()))?;
            if data.is_empty() {
                break;
            }
            let len = data.len() as u64;
            dst.writev(&ctx, dfd, data, pos, Xdata::new())
                .await
                .map_err(|e| format!("writing the copy on {} failed: {e}", dst.name()))?;
            pos += len;
            copied += len;
        }
        off = end.max(start + 1);
    }
    dst.ftruncate(&ctx, dfd, size, Xdata::new())
        .await
        .map_err(|e| format!("sizing the copy failed: {e}"))?;
    Ok(copied)
}

/// Copies xattrs, owner and times, records the real mode, and fsyncs the copy.
async fn copy_meta(
    src: &XlatorRef,
    dst: &XlatorRef,
    sfd: &FdRef,
    dfd: &FdRef,
) -> Result<(), String> {
    let ctx = Ctx::internal();
    // The xattrs a client sees (ACLs, user.*, security.*): Weft's own stay behind.
    match src.fgetxattr(&ctx, sfd, None, Xdata::new()).await {
        Ok((mut m, _)) if !m.is_empty() => {
            if let Some(acl) = m.remove(POSIX_ACL_ACCESS) {
                m.insert(ACL_XATTR.to_string(), acl);
            }
            dst.fsetxattr(&ctx, dfd, &m, 0, ixd())
                .await
                .map_err(|e| format!("copying xattrs to {} failed: {e}", dst.name()))?;
        }
        Ok(_) | Err(Errno::ENOTSUP) => {}
        Err(e) => return Err(format!("reading xattrs on {} failed: {e}", src.name())),
    }
    let (st, _) = src
        .fstat(&ctx, sfd, Xdata::new())
        .await
        .map_err(|e| format!("fstat on {} failed: {e}", src.name()))?;
    let attr = SetAttr {
        uid: Some(st.uid),
        gid: Some(st.gid),
        atime: Some(SetTime::At(st.atime)),
        mtime: Some(SetTime::At(st.mtime)),
        ..Default::default()
    };
    dst.fsetattr(&ctx, dfd, &attr, Xdata::new())
        .await
        .map_err(|e| format!("copying owner and times to {} failed: {e}", dst.name()))?;
    let mut mode = XattrMap::new();
    mode.insert(
        MODE_XATTR.to_string(),
        (st.mode & 0o7777).to_le_bytes().to_vec(),
    );
    dst.fsetxattr(&ctx, dfd, &mode, 0, ixd())
        .await
        .map_err(|e| format!("recording the mode on {} failed: {e}", dst.name()))?;
    dst.fsync(&ctx, dfd, false, Xdata::new())
        .await
        .map_err(|e| format!("fsync of the copy on {} failed: {e}", dst.name()))?;
    Ok(())
}
