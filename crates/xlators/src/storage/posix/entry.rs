//! Entry FOPs on a brick: lookup, mkdir, mknod, symlink, link, unlink, rmdir, rename,
//! readlink, and the creating half of create. Every one acts on a pinned parent directory
//! and one checked name (`*at` calls), never on a path string.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, RenameFlags};
use weft_core::{Ctx, Errno, Gfid, Iatt, Loc};

use super::brick::{ex, iatt, link_inode, Brick, PRIVATE_DIR};
use super::sys::{has_default_acl, Pin};

/// What a creation asked for: the file type and permission bits (after the client's umask,
/// unless the parent has a default ACL), and the caller.
struct NewEntry<'a> {
    ctx: &'a Ctx,
    kind: u32,
    perm: u32,
    /// The parent has a default ACL: the filesystem derived the mode from it.
    acl: bool,
}

/// Makes a new inode's owner the caller (and its group, unless the parent is setgid, where
/// the filesystem already gave it the parent's group), then gives it exactly the mode asked
/// for: the process umask and chown may have taken bits away.
fn set_owner_and_mode(node: &Pin, parent: &Pin, new: &NewEntry<'_>) -> Result<(), Errno> {
    let setgid_parent = parent.st.st_mode & libc::S_ISGID != 0;
    if new.ctx.uid != 0 || new.ctx.gid != 0 {
        let gid = (!setgid_parent).then(|| rfs::Gid::from_raw(new.ctx.gid));
        let uid = Some(rfs::Uid::from_raw(new.ctx.uid));
        rfs::chownat(
            &node.fd,
            "",
            uid,
            gid,
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(ex)?;
    }
    if new.kind == libc::S_IFLNK {
        return Ok(());
    }
    let st = node.restat()?;
    let have = st.st_mode & 0o7777;
    let mut want = if new.acl {
        // The default ACL decided the permission bits; only put back setuid/setgid.
        have | (new.perm & 0o7000)
    } else {
        new.perm & 0o7777
    };
    if new.kind == libc::S_IFDIR && setgid_parent {
        want |= libc::S_ISGID;
    }
    if have != want {
        rfs::chmodat(
            rfs::CWD,
            node.proc().as_str(),
            Mode::from_raw_mode(want),
            AtFlags::empty(),
        )
        .map_err(ex)?;
    }
    Ok(())
}

/// Removes entry `name` of `dir` only if it is still the inode `st` describes, so a
/// failed creation never removes what someone else put there meanwhile.
fn remove_if_same(dir: BorrowedFd<'_>, name: &OsStr, st: &rfs::Stat) {
    if let Ok(now) = rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        if now.st_ino == st.st_ino && now.st_dev == st.st_dev {
            let flags = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                AtFlags::REMOVEDIR
            } else {
                AtFlags::empty()
            };
            let _ = rfs::unlinkat(dir, name, flags);
        }
    }
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(ex)
}

impl Brick {
    /// Looks up `loc`: an entry by parent + name, or an inode by gfid alone. Entries found
    /// without a gfid (put on the brick by hand) are given one; `ESTALE` if the caller
    /// named a gfid and the name now holds another inode, or the gfid is gone.
    pub fn lookup(&self, loc: &Loc) -> Result<Iatt, Errno> {
        match (&loc.parent, &loc.name) {
            (Some(p), Some(n)) => {
                if p.is_root() && n == PRIVATE_DIR {
                    return Err(Errno::ENOENT);
                }
                let (dir, name) = self.entry(loc)?;
                // The inode pinned may lose its last name before its handle is made true
                // (another client renames a new file over it): then the name holds another
                // inode, which a fresh pin finds.
                let mut tries = 0;
                let (node, g) = loop {
                    let node = Pin::at(dir.fd.as_fd(), &name)?;
                    match self.ensure_gfid(&node, p, &name) {
                        Ok(g) => break (node, g),
                        Err(e) if e == Errno::ENOENT && tries < 3 => tries += 1,
                        Err(e) => return Err(e),
                    }
                };
                if let Some(want) = loc.gfid {
                    if want != g {
                        return Err(Errno::ESTALE);
                    }
                }
                Ok(iatt(g, &node.st))
            }
            _ => {
                let g = loc.gfid.ok_or(Errno::EINVAL)?;
                let node = self.resolve(&g)?;
                Ok(iatt(g, &node.st))
            }
        }
    }

    /// Stats the inode `loc` names.
    pub fn stat(&self, loc: &Loc) -> Result<Iatt, Errno> {
        let node = self.inode(loc)?;
        let g = loc.gfid.or_else(|| node.gfid()).ok_or(Errno::ENOENT)?;
        Ok(iatt(g, &node.st))
    }

    /// Creates entry `loc` with `make(parent, name, perm)` (which returns an open
    /// descriptor of what it made, if it opened one), and gives the new inode its gfid
    /// (`want`, or a fresh one if absent or taken), its handle, owner and mode, all while
    /// holding the entry's creation lock, so no lookup or listing gives it another
    /// identity. On failure what was made is removed again.
    fn make_entry<M>(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        umask: u32,
        want: Option<Gfid>,
        make: M,
    ) -> Result<(Option<OwnedFd>, Iatt), Errno>
    where
        M: FnOnce(BorrowedFd<'_>, &OsStr, u32) -> Result<Option<OwnedFd>, Errno>,
    {
        let (dir, name) = self.entry(loc)?;
        let parent = loc.parent.ok_or(Errno::EINVAL)?;
        let kind = mode & libc::S_IFMT;
        let acl = kind != libc::S_IFLNK && has_default_acl(dir.fd.as_fd());
        let perm = if acl {
            mode & 0o7777
        } else {
            mode & !umask & 0o7777
        };
        let new = NewEntry {
            ctx,
            kind,
            perm,
            acl,
        };
        let _creating = self.creating(&parent, &name);
        let opened = make(dir.fd.as_fd(), &name, perm)?;
        let node = match &opened {
            Some(fd) => Pin::new(dup(fd)?)?,
            None => Pin::at(dir.fd.as_fd(), &name)?,
        };
        if node.gfid().is_some() {
            // Someone put an existing inode at the name before we could mark ours.
            return Err(Errno::EEXIST);
        }
        let done = (|| {
            let mut g = want
                .filter(|g| !g.is_null() && !g.is_root())
                .unwrap_or_else(Gfid::random);
            node.set_gfid_once(&g)?;
            let mut tries = 0;
            loop {
                match self.create_handle(&g, &node, &parent, &name) {
                    Err(e) if e == Errno::EEXIST && tries < 8 => {
                        // The proposed gfid belongs to another inode: this one gets its
                        // own, derived from the proposal, the parent and the name, so every
                        // replica given the same proposal picks the same one.
                        tries += 1;
                        g = derived_gfid(&g, &parent, &name);
                        node.replace_gfid(&g)?;
                    }
                    r => break r?,
                }
            }
            set_owner_and_mode(&node, &dir, &new)?;
            Ok(iatt(g, &node.restat()?))
        })();
        match done {
            Ok(ia) => Ok((opened, ia)),
            Err(e) => {
                if let Some(g) = node.gfid() {
                    if self.handle_is_of(&g, &node) {
                        self.remove_handle(&g);
                    }
                }
                remove_if_same(dir.fd.as_fd(), &name, &node.st);
                Err(e)
            }
        }
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
        let mode = libc::S_IFDIR | (mode & 0o7777);
        self.make_entry(ctx, loc, mode, umask, want, |dir, name, perm| {
            rfs::mkdirat(dir, name, Mode::from_raw_mode(perm)).map_err(ex)?;
            Ok(None)
        })
        .map(|(_, ia)| ia)
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
        let kind = mode & libc::S_IFMT;
        if kind == libc::S_IFDIR || kind == libc::S_IFLNK {
            return Err(Errno::EINVAL);
        }
        let ft = rfs::FileType::from_raw_mode(if kind == 0 { libc::S_IFREG } else { kind });
        let mode = if kind == 0 {
            mode | libc::S_IFREG
        } else {
            mode
        };
        self.make_entry(ctx, loc, mode, umask, want, |dir, name, perm| {
            rfs::mknodat(dir, name, ft, Mode::from_raw_mode(perm), rdev).map_err(ex)?;
            Ok(None)
        })
        .map(|(_, ia)| ia)
    }

    /// Makes a symlink to `target` (stored as given; the brick never follows it).
    pub fn symlink(
        &self,
        ctx: &Ctx,
        target: &Path,
        loc: &Loc,
        want: Option<Gfid>,
    ) -> Result<Iatt, Errno> {
        self.make_entry(ctx, loc, libc::S_IFLNK | 0o777, 0, want, |dir, name, _| {
            rfs::symlinkat(target, dir, name).map_err(ex)?;
            Ok(None)
        })
        .map(|(_, ia)| ia)
    }

    /// Creates and opens a regular file. With O_EXCL an existing name fails with EEXIST;
    /// without it an existing file is opened. `content`, if any, is written at offset 0
    /// of a file this call makes (never of one that existed), before the file gets its
    /// gfid: a brick killed meanwhile leaves a name without an identity, which lookups and
    /// heal treat as a create that did not finish, never one that claims its gfid without
    /// its content. The answer says whether all of it was written.
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        flags: i32,
        mode: u32,
        umask: u32,
        want: Option<Gfid>,
        content: Option<&[u8]>,
    ) -> Result<(OwnedFd, Iatt, bool), Errno> {
        self.create_at_depth(ctx, loc, flags, mode, umask, want, content, 0)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_at_depth(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        flags: i32,
        mode: u32,
        umask: u32,
        want: Option<Gfid>,
        content: Option<&[u8]>,
        depth: u32,
    ) -> Result<(OwnedFd, Iatt, bool), Errno> {
        let base = super::io::open_flags(flags) & !(OFlags::CREATE | OFlags::EXCL);
        let mut wrote = false;
        let made = self.make_entry(
            ctx,
            loc,
            libc::S_IFREG | (mode & 0o7777),
            umask,
            want,
            |dir, name, perm| {
                let fd = rfs::openat(
                    dir,
                    name,
                    base | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(perm),
                )
                .map_err(ex)?;
                if let Some(c) = content {
                    match super::io::write_all_at(fd.as_fd(), c, 0) {
                        Ok(()) => wrote = true,
                        // The caller writes it then, as a write.
                        Err(e) => tracing::debug!("a create's content was not written: {e}"),
                    }
                }
                Ok(Some(fd))
            },
        );
        match made {
            Ok((Some(fd), ia)) => Ok((fd, ia, wrote)),
            Ok((None, _)) => Err(Errno::EIO),
            Err(e) if e == Errno::EEXIST && flags & libc::O_EXCL == 0 => {
                match self.open_existing(ctx, loc, flags, base) {
                    // The existing file went between our create and our open of it (another
                    // client removed or replaced it): create again.
                    Err(e) if e == Errno::ENOENT && depth < 3 => {
                        self.create_at_depth(ctx, loc, flags, mode, umask, want, content, depth + 1)
                    }
                    r => r.map(|(fd, ia)| (fd, ia, false)),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// The rest of a create without O_EXCL whose name exists: open it as open(2) would,
    /// checking the caller's permission (the kernel checked none, thinking it absent).
    fn open_existing(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        flags: i32,
        base: OFlags,
    ) -> Result<(OwnedFd, Iatt), Errno> {
        let (dir, name) = self.entry(loc)?;
        let parent = loc.parent.ok_or(Errno::EINVAL)?;
        let node = Pin::at(dir.fd.as_fd(), &name)?;
        match node.kind() {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(Errno::EISDIR),
            _ => return Err(Errno::EEXIST),
        }
        let want = match flags & libc::O_ACCMODE {
            libc::O_RDONLY => 4,
            libc::O_WRONLY => 2,
            _ => 6,
        } | if flags & libc::O_TRUNC != 0 { 2 } else { 0 };
        super::attr::access(super::attr::Target::Pin(&node), ctx, want)?;
        let g = self.ensure_gfid(&node, &parent, &name)?;
        let fd = node.reopen(base | OFlags::NONBLOCK)?;
        let st = rfs::fstat(&fd).map_err(ex)?;
        Ok((fd, iatt(g, &st)))
    }

    /// Gives inode `old` the extra name `new`.
    pub fn link(&self, old: &Loc, new: &Loc) -> Result<Iatt, Errno> {
        let src = self.inode(old)?;
        if src.is_dir() {
            return Err(Errno::EPERM);
        }
        let (dir, name) = self.entry(new)?;
        link_inode(src.fd.as_fd(), dir.fd.as_fd(), &name).map_err(ex)?;
        let g = old.gfid.or_else(|| src.gfid()).ok_or(Errno::EIO)?;
        Ok(iatt(g, &src.restat()?))
    }

    /// Removes a non-directory name; the handle goes with the last name.
    /// Removes a name of a non-directory; with `only`, only if the name is that inode
    /// (ESTALE otherwise, nothing removed; see `UNLINK_GFID_KEY`).
    pub fn unlink(&self, loc: &Loc, only: Option<Gfid>) -> Result<(), Errno> {
        let (dir, name) = self.entry(loc)?;
        let node = Pin::at(dir.fd.as_fd(), &name)?;
        if node.is_dir() {
            return Err(Errno::EISDIR);
        }
        if only.is_some() && node.gfid() != only {
            return Err(Errno::ESTALE);
        }
        rfs::unlinkat(&dir.fd, &name, AtFlags::empty()).map_err(ex)?;
        if let Some(g) = node.gfid() {
            self.drop_handle_if_orphan(&g);
        }
        Ok(())
    }

    /// Removes an empty directory and its handle.
    pub fn rmdir(&self, loc: &Loc) -> Result<(), Errno> {
        let (dir, name) = self.entry(loc)?;
        let node = Pin::at(dir.fd.as_fd(), &name)?;
        let g = node.gfid();
        rfs::unlinkat(&dir.fd, &name, AtFlags::REMOVEDIR).map_err(ex)?;
        if let Some(g) = g {
            if self.handle_is_of(&g, &node) {
                self.remove_handle(&g);
            }
        }
        Ok(())
    }

    /// Renames `old` to `new` (renameat2 `flags`), keeping handles true.
    pub fn rename(&self, old: &Loc, new: &Loc, flags: u32) -> Result<(), Errno> {
        let rf = RenameFlags::from_bits(flags).ok_or(Errno::EINVAL)?;
        let (sdir, sname) = self.entry(old)?;
        let (ddir, dname) = self.entry(new)?;
        let src = Pin::at(sdir.fd.as_fd(), &sname)?;
        let dst = Pin::at(ddir.fd.as_fd(), &dname).ok();
        let src_g = src.gfid();
        let dst_g = dst.as_ref().and_then(Pin::gfid);
        rfs::renameat_with(&sdir.fd, &sname, &ddir.fd, &dname, rf).map_err(ex)?;
        let new_parent = new.parent.ok_or(Errno::EINVAL)?;
        let old_parent = old.parent.ok_or(Errno::EINVAL)?;
        if let Some(g) = src_g {
            if src.is_dir() {
                self.move_dir_handle(&g, &new_parent, &dname)?;
            }
        }
        if let (Some(g), Some(d)) = (dst_g, dst) {
            if src.st.st_ino == d.st.st_ino && src.st.st_dev == d.st.st_dev {
                return Ok(()); // two names of one inode: rename did nothing
            }
            if rf.contains(RenameFlags::EXCHANGE) {
                if d.is_dir() {
                    self.move_dir_handle(&g, &old_parent, &sname)?;
                }
            } else if d.is_dir() {
                if self.handle_is_of(&g, &d) {
                    self.remove_handle(&g);
                }
            } else {
                self.drop_handle_if_orphan(&g);
            }
        }
        Ok(())
    }

    /// The target of the symlink `loc` names.
    pub fn readlink(&self, loc: &Loc) -> Result<PathBuf, Errno> {
        let node = self.inode(loc)?;
        let t = rfs::readlinkat(&node.fd, "", Vec::new()).map_err(ex)?;
        Ok(PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(t.into_bytes()),
        ))
    }
}

/// A gfid made from `g`, `parent` and `name` alone (XXH3-128): the same on every brick,
/// for an entry whose proposed gfid is taken there.
fn derived_gfid(g: &Gfid, parent: &Gfid, name: &OsStr) -> Gfid {
    use std::os::unix::ffi::OsStrExt;
    let mut input = Vec::with_capacity(32 + name.len());
    input.extend_from_slice(&g.0);
    input.extend_from_slice(&parent.0);
    input.extend_from_slice(name.as_bytes());
    let mut out = xxhash_rust::xxh3::xxh3_128(&input).to_le_bytes();
    // Never the null or root gfid.
    out[0] |= 0x80;
    Gfid(out)
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
        // The caller's path, when it names another inode now (or nothing, or the private
        // folder), is not taken: the gfid decides.
        let hinted = |g: Gfid, path: &str| {
            let mut l = Loc::inode(g);
            l.path = Some(path.into());
            l
        };
        for path in ["/y", "/x", "/gone", "/", "", "/.weft/handles"] {
            assert_eq!(b.stat(&hinted(gx, path)).unwrap().size, 1, "{path}");
        }
        assert_eq!(b.stat(&hinted(gx, "/z")).unwrap().size, 1);
        let f = b.open_file(&hinted(gnew, "//x"), libc::O_RDONLY).unwrap();
        assert_eq!(&f.read(100, 0).unwrap()[..], b"BB");
        let f = b.open_file(&hinted(gnew, "/z"), libc::O_RDONLY).unwrap();
        assert_eq!(&f.read(100, 0).unwrap()[..], b"BB");
    }

    /// A handle the brick remembers as true but that went behind its back (removed on
    /// disk) is made again by the next lookup by name, once a lookup by gfid has failed.
    #[test]
    fn a_remembered_handle_removed_on_disk_is_made_again() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let b = Brick::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("f"), b"A").unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        for name in ["f", "d"] {
            let g = b.lookup(&Loc::entry(Gfid::ROOT, name)).unwrap().gfid;
            b.lookup(&Loc::entry(Gfid::ROOT, name)).unwrap();
            let handle = dir.path().join(".weft/handles").join(Brick::handle_rel(&g));
            std::fs::remove_file(&handle).unwrap();
            assert_eq!(b.stat(&Loc::inode(g)).unwrap_err(), Errno::ESTALE, "{name}");
            assert_eq!(b.lookup(&Loc::entry(Gfid::ROOT, name)).unwrap().gfid, g);
            assert!(
                handle.symlink_metadata().is_ok(),
                "{name}: handle made again"
            );
            assert_eq!(b.stat(&Loc::inode(g)).unwrap().gfid, g, "{name}");
        }
        // A directory renamed behind the brick's back: its handle is pointed at the new
        // place by the next lookup there, and resolving by gfid finds it.
        let g = b.lookup(&Loc::entry(Gfid::ROOT, "d")).unwrap().gfid;
        std::fs::rename(dir.path().join("d"), dir.path().join("e")).unwrap();
        assert_eq!(b.lookup(&Loc::entry(Gfid::ROOT, "e")).unwrap().gfid, g);
        assert!(b.stat(&Loc::inode(g)).is_ok());
    }

    /// An unlink told which inode it means removes nothing when the name now names
    /// another (replaced by another client): ESTALE, both files kept.
    #[test]
    fn unlink_of_a_named_inode_refuses_a_replaced_name() {
        let dir = tempfile::tempdir_in("/tmp").unwrap();
        let b = Brick::open(dir.path()).unwrap();
        std::fs::write(dir.path().join("x"), b"A").unwrap();
        let gx = b.lookup(&Loc::entry(Gfid::ROOT, "x")).unwrap().gfid;
        std::fs::write(dir.path().join("y"), b"B").unwrap();
        let gy = b.lookup(&Loc::entry(Gfid::ROOT, "y")).unwrap().gfid;
        b.rename(
            &Loc::entry(Gfid::ROOT, "y"),
            &Loc::entry(Gfid::ROOT, "x"),
            0,
        )
        .unwrap();
        assert_eq!(
            b.unlink(&Loc::entry(Gfid::ROOT, "x"), Some(gx)),
            Err(Errno::ESTALE)
        );
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"B");
        b.unlink(&Loc::entry(Gfid::ROOT, "x"), Some(gy)).unwrap();
        assert!(!dir.path().join("x").exists());
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
            rfs::CWD,
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
        let dfd = rfs::open(
            dir.path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let outside = tempfile::NamedTempFile::new_in("/tmp").unwrap();
        std::fs::write(outside.path(), b"precious").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        let before = std::fs::metadata(outside.path()).unwrap();
        let chmod = weft_core::SetAttr {
            mode: Some(0o777),
            ..Default::default()
        };
        let pin = Pin::at(dfd.as_fd(), OsStr::new("l")).unwrap();
        assert!(setattr(Target::Pin(&pin), &chmod).is_err());
        let trunc = weft_core::SetAttr {
            size: Some(0),
            ..Default::default()
        };
        assert!(setattr(Target::Pin(&pin), &trunc).is_err());
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
        let (ents, _) = b.readdir(&d, 65536, 0, false, &[]).unwrap();
        let f = ents.iter().find(|e| e.name == b"f").unwrap();
        assert_eq!(f.ino, ia.ino);
        assert!(ents.iter().all(|e| e.name != b".weft"));
        assert_eq!(
            b.lookup(&Loc::entry(Gfid::ROOT, ".weft")),
            Err(Errno::ENOENT)
        );
    }
}
