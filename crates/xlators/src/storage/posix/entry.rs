//! Entry FOPs on a brick: lookup, mkdir, mknod, symlink, link, unlink, rmdir, rename,
//! readlink, and the creating half of create.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags, CWD};
use weft_core::{Ctx, Errno, Gfid, Iatt, Loc};

use super::brick::{ex, iatt, Brick};

/// Makes a new inode's owner the caller (and its group, unless the parent is setgid,
/// where the filesystem already gave it the parent's group).
fn set_owner(path: &Path, parent: &Path, ctx: &Ctx, mode: u32) -> Result<(), Errno> {
    if ctx.uid == 0 && ctx.gid == 0 {
        return Ok(());
    }
    let pst = rfs::lstat(parent).map_err(ex)?;
    let gid = if pst.st_mode & libc::S_ISGID != 0 {
        None
    } else {
        Some(ctx.gid)
    };
    let (uid, gid) = (rfs::Uid::from_raw(ctx.uid), gid.map(rfs::Gid::from_raw));
    rfs::chownat(CWD, path, Some(uid), gid, AtFlags::SYMLINK_NOFOLLOW).map_err(ex)?;
    // chown clears setuid/setgid on non-directories; put back what the caller asked for.
    if mode & (libc::S_ISUID | libc::S_ISGID) != 0 && mode & libc::S_IFMT != libc::S_IFLNK {
        rfs::chmodat(
            CWD,
            path,
            Mode::from_raw_mode(mode & 0o7777),
            AtFlags::empty(),
        )
        .map_err(ex)?;
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    path.parent().unwrap_or(path)
}

impl Brick {
    /// Looks up `loc`: an entry by parent + name, or an inode by gfid alone. Files found
    /// without a gfid (put on the brick by hand) are given one.
    pub fn lookup(&self, loc: &Loc) -> Result<Iatt, Errno> {
        let path = match (&loc.parent, &loc.name) {
            (Some(p), Some(n)) if p.is_root() && n == super::brick::PRIVATE_DIR => {
                return Err(Errno::ENOENT)
            }
            (Some(_), Some(_)) => self.entry_path(loc)?,
            _ => self.inode_path(loc)?,
        };
        let st = rfs::lstat(&path).map_err(ex)?;
        let g = match (&loc.parent, &loc.name) {
            (Some(p), Some(n)) => self.ensure_gfid(&path, &st, p, n, Gfid::random())?,
            _ => self.gfid_at(&path).or(loc.gfid).ok_or(Errno::ENOENT)?,
        };
        if let Some(want) = loc.gfid {
            if want != g && loc.parent.is_some() {
                // The name now points at another inode: the caller's view is stale.
                return Err(Errno(libc::ESTALE));
            }
        }
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            self.remember_file(g, &path, st.st_ino);
        }
        Ok(iatt(g, &st))
    }

    /// Stats the inode `loc` names.
    pub fn stat(&self, loc: &Loc) -> Result<Iatt, Errno> {
        if let Some(g) = loc.gfid {
            if let Some((p, ino)) = self.file_hint(&g) {
                match rfs::lstat(&p) {
                    Ok(st) if st.st_ino == ino => return Ok(iatt(g, &st)),
                    _ => self.forget_file(&g),
                }
            }
        }
        let path = self.inode_path(loc)?;
        let st = rfs::lstat(&path).map_err(ex)?;
        let g = loc
            .gfid
            .or_else(|| self.gfid_at(&path))
            .ok_or(Errno::ENOENT)?;
        Ok(iatt(g, &st))
    }

    /// Finishes a new inode at `path`: gfid, handle, owner; undoes the creation on failure.
    fn finish_new(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        path: &Path,
        mode: u32,
        want: Option<Gfid>,
    ) -> Result<Iatt, Errno> {
        let done = (|| {
            let g = want.unwrap_or_else(Gfid::random);
            rfs::lsetxattr(path, weft_core::GFID_XATTR, &g.0, rfs::XattrFlags::CREATE)
                .map_err(ex)?;
            let parent = loc.parent.ok_or(Errno::EINVAL)?;
            let name = loc.name.as_deref().ok_or(Errno::EINVAL)?;
            let is_dir = mode & libc::S_IFMT == libc::S_IFDIR;
            self.create_handle(&g, path, is_dir, &parent, name)?;
            set_owner(path, parent_dir(path), ctx, mode)?;
            let st = rfs::lstat(path).map_err(ex)?;
            if !is_dir {
                self.remember_file(g, path, st.st_ino);
            }
            Ok(iatt(g, &st))
        })();
        if done.is_err() {
            if let Some(g) = self.gfid_at(path) {
                self.remove_handle(&g);
            }
            let _ = if mode & libc::S_IFMT == libc::S_IFDIR {
                rfs::rmdir(path)
            } else {
                rfs::unlink(path)
            };
        }
        done
    }

    /// Makes a directory.
    pub fn mkdir(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        umask: u32,
        want: Option<Gfid>,
    ) -> Result<Iatt, Errno> {
        let path = self.entry_path(loc)?;
        let m = mode & !umask & 0o7777;
        rfs::mkdir(&path, Mode::from_raw_mode(m)).map_err(ex)?;
        self.finish_new(ctx, loc, &path, libc::S_IFDIR | m, want)
    }

    /// Makes a FIFO, device, socket or empty regular file.
    pub fn mknod(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        want: Option<Gfid>,
    ) -> Result<Iatt, Errno> {
        let path = self.entry_path(loc)?;
        let m = mode & !(umask & 0o7777);
        let ft = rfs::FileType::from_raw_mode(m);
        rfs::mknodat(CWD, &path, ft, Mode::from_raw_mode(m & 0o7777), rdev).map_err(ex)?;
        self.finish_new(ctx, loc, &path, m, want)
    }

    /// Makes a symlink to `target`.
    pub fn symlink(
        &self,
        ctx: &Ctx,
        target: &Path,
        loc: &Loc,
        want: Option<Gfid>,
    ) -> Result<Iatt, Errno> {
        let path = self.entry_path(loc)?;
        rfs::symlink(target, &path).map_err(ex)?;
        self.finish_new(ctx, loc, &path, libc::S_IFLNK | 0o777, want)
    }

    /// Creates and opens a regular file. With O_EXCL an existing name fails with EEXIST;
    /// without it an existing file is opened.
    pub fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        flags: i32,
        mode: u32,
        umask: u32,
        want: Option<Gfid>,
    ) -> Result<(OwnedFd, Iatt), Errno> {
        let path = self.entry_path(loc)?;
        let m = mode & !umask & 0o7777;
        let base = super::io::open_flags(flags) & !(OFlags::CREATE | OFlags::EXCL);
        match rfs::open(
            &path,
            base | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(m),
        ) {
            Ok(fd) => {
                let ia = self.finish_new(ctx, loc, &path, libc::S_IFREG | m, want)?;
                Ok((fd, ia))
            }
            Err(rustix::io::Errno::EXIST) if flags & libc::O_EXCL == 0 => {
                // Someone else made the name first: open it as open(2) would, checking the
                // caller's permission (the kernel checked none, thinking the name absent).
                let st = rfs::lstat(&path).map_err(ex)?;
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFREG => {}
                    libc::S_IFDIR => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EEXIST),
                }
                let want = match flags & libc::O_ACCMODE {
                    libc::O_RDONLY => 4,
                    libc::O_WRONLY => 2,
                    _ => 6,
                } | if flags & libc::O_TRUNC != 0 { 2 } else { 0 };
                super::attr::access(super::attr::Target::Path(&path), ctx, want)?;
                let fd = rfs::open(&path, base | OFlags::NONBLOCK, Mode::empty()).map_err(ex)?;
                let st = rfs::fstat(&fd).map_err(ex)?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(Errno::EEXIST);
                }
                let parent = loc.parent.ok_or(Errno::EINVAL)?;
                let name = loc.name.as_deref().ok_or(Errno::EINVAL)?;
                let g = self.ensure_gfid(&path, &st, &parent, name, Gfid::random())?;
                Ok((fd, iatt(g, &st)))
            }
            Err(e) => Err(ex(e)),
        }
    }

    /// Gives inode `old` the extra name `new`.
    pub fn link(&self, old: &Loc, new: &Loc) -> Result<Iatt, Errno> {
        let src = self.inode_path(old)?;
        let dst = self.entry_path(new)?;
        let st = rfs::lstat(&src).map_err(ex)?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return Err(Errno::EPERM);
        }
        rfs::linkat(CWD, &src, CWD, &dst, AtFlags::empty()).map_err(ex)?;
        let g = old.gfid.or_else(|| self.gfid_at(&src)).ok_or(Errno::EIO)?;
        let st = rfs::lstat(&dst).map_err(ex)?;
        Ok(iatt(g, &st))
    }

    /// Removes a non-directory name; the handle goes with the last name.
    pub fn unlink(&self, loc: &Loc) -> Result<(), Errno> {
        let path = self.entry_path(loc)?;
        let g = self.gfid_at(&path);
        rfs::unlink(&path).map_err(ex)?;
        if let Some(g) = g {
            self.forget_file(&g);
            self.drop_handle_if_orphan(&g);
        }
        Ok(())
    }

    /// Removes an empty directory and its handle.
    pub fn rmdir(&self, loc: &Loc) -> Result<(), Errno> {
        let path = self.entry_path(loc)?;
        let g = self.gfid_at(&path);
        rfs::rmdir(&path).map_err(ex)?;
        if let Some(g) = g {
            self.remove_handle(&g);
        }
        Ok(())
    }

    /// Renames `old` to `new` (renameat2 `flags`), keeping handles true.
    pub fn rename(&self, old: &Loc, new: &Loc, flags: u32) -> Result<(), Errno> {
        let src = self.entry_path(old)?;
        let dst = self.entry_path(new)?;
        let is_dir = |st: &rfs::Stat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let src_st = rfs::lstat(&src).map_err(ex)?;
        // Only directories' handles name their place; a file's gfid is needed only to
        // compare it with a replaced target.
        let dst_st = rfs::lstat(&dst).ok();
        let src_g = if is_dir(&src_st) || dst_st.is_some() {
            self.gfid_at(&src)
        } else {
            None
        };
        let dst_g = dst_st.as_ref().and_then(|_| self.gfid_at(&dst));
        let rf = RenameFlags::from_bits(flags).ok_or(Errno::EINVAL)?;
        rfs::renameat_with(CWD, &src, CWD, &dst, rf).map_err(ex)?;
        for g in [src_g, dst_g].into_iter().flatten() {
            self.forget_file(&g);
        }
        let exchanged = rf.contains(RenameFlags::EXCHANGE);
        if let Some(g) = src_g {
            if is_dir(&src_st) {
                self.move_dir_handle(
                    &g,
                    &new.parent.ok_or(Errno::EINVAL)?,
                    new.name.as_deref().unwrap_or(OsStr::new("")),
                )?;
            }
        }
        if let (Some(g), Some(st)) = (dst_g, dst_st) {
            if src_g == Some(g) {
                return Ok(()); // two names of one inode: rename did nothing
            }
            if exchanged {
                if is_dir(&st) {
                    self.move_dir_handle(
                        &g,
                        &old.parent.ok_or(Errno::EINVAL)?,
                        old.name.as_deref().unwrap_or(OsStr::new("")),
                    )?;
                }
            } else if is_dir(&st) {
                self.remove_handle(&g);
            } else {
                self.drop_handle_if_orphan(&g);
            }
        }
        Ok(())
    }

    /// The target of the symlink `loc` names.
    pub fn readlink(&self, loc: &Loc) -> Result<PathBuf, Errno> {
        let path = self.inode_path(loc)?;
        let t = rfs::readlink(&path, Vec::new()).map_err(ex)?;
        Ok(PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(t.into_bytes()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(b: &Brick, g: Gfid) -> Vec<u8> {
        let f = b.open_file(&Loc::inode(g), libc::O_RDONLY).unwrap();
        f.read(100, 0).unwrap().to_vec()
    }

    /// The path hint that speeds up open and stat must never answer for another inode.
    #[test]
    fn stale_path_hints_fall_back_to_the_handle() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let b = Brick::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("x"), b"A").unwrap();
        let gx = b.lookup(&Loc::entry(Gfid::ROOT, "x")).unwrap().gfid;
        b.rename(
            &Loc::entry(Gfid::ROOT, "x"),
            &Loc::entry(Gfid::ROOT, "y"),
            0,
        )
        .unwrap();
        std::fs::write(dir.path().join("x"), b"BB").unwrap();
        let gnew = b.lookup(&Loc::entry(Gfid::ROOT, "x")).unwrap().gfid;
        assert_ne!(gx, gnew);
        assert_eq!(read_all(&b, gx), b"A");
        assert_eq!(b.stat(&Loc::inode(gx)).unwrap().size, 1);
        assert_eq!(read_all(&b, gnew), b"BB");
        // Renamed behind the brick's back: the inode check catches it too.
        b.lookup(&Loc::entry(Gfid::ROOT, "y")).unwrap();
        std::fs::rename(dir.path().join("y"), dir.path().join("z")).unwrap();
        std::fs::write(dir.path().join("y"), b"CCC").unwrap();
        assert_eq!(read_all(&b, gx), b"A");
        assert_eq!(b.stat(&Loc::inode(gx)).unwrap().size, 1);
    }

    /// A FIFO made at a path a stale hint names must not be opened (it would block).
    #[test]
    fn a_fifo_at_a_hinted_path_is_never_opened() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let b = Brick::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("x"), b"A").unwrap();
        let gx = b.lookup(&Loc::entry(Gfid::ROOT, "x")).unwrap().gfid;
        std::fs::rename(dir.path().join("x"), dir.path().join("y")).unwrap();
        rfs::mknodat(
            CWD,
            dir.path().join("x"),
            rfs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert_eq!(read_all(&b, gx), b"A");
    }

    /// setattr never follows a symlink out of the brick.
    #[test]
    fn setattr_does_not_follow_symlinks() {
        use super::super::attr::{setattr, Target};
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let outside = tempfile::NamedTempFile::new_in("/tmp").unwrap();
        std::fs::write(outside.path(), b"precious").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let before = std::fs::metadata(outside.path()).unwrap();
        let chmod = weft_core::SetAttr {
            mode: Some(0o777),
            ..Default::default()
        };
        assert!(setattr(Target::Path(&link), &chmod).is_err());
        let trunc = weft_core::SetAttr {
            size: Some(0),
            ..Default::default()
        };
        assert!(setattr(Target::Path(&link), &trunc).is_err());
        let after = std::fs::metadata(outside.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(before.mode(), after.mode());
        assert_eq!(std::fs::read(outside.path()).unwrap(), b"precious");
    }

    /// Plain readdir reports the same inode numbers as stat, and hides `.weft`.
    #[test]
    fn readdir_inode_numbers_match_stat() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let b = Brick::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), b"1").unwrap();
        let ia = b.lookup(&Loc::entry(Gfid::ROOT, "f")).unwrap();
        let d = b.opendir(&Loc::root()).unwrap();
        let ents = b.readdir(&d, 65536, 0, false).unwrap();
        let f = ents.iter().find(|e| e.name == b"f").unwrap();
        assert_eq!(f.ino, ia.ino);
        assert!(ents.iter().all(|e| e.name != b".weft"));
        assert_eq!(
            b.lookup(&Loc::entry(Gfid::ROOT, ".weft")),
            Err(Errno::ENOENT)
        );
    }
}
