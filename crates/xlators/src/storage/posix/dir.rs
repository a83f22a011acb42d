//! Directory reading on a brick: opendir and readdir(p) with resumable offsets.
//!
//! Offsets are the brick filesystem's own directory cookies (`d_off`), so a client can
//! continue a listing from any entry it has seen, even after its reply was cut short.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use parking_lot::Mutex;
use rustix::fs::{self as rfs, OFlags};
use weft_core::{Dirent, Errno, FileType, Gfid, Loc, XattrMap, GFID_XATTR};

use super::attr::{Src, Target};
use super::brick::{ex, iatt, Brick, PRIVATE_DIR};
use super::sys::Pin;

/// Per entry of a listing (by gfid), the xattr values it has among those asked.
pub type EntryValues = Vec<(Gfid, XattrMap)>;

/// An open directory's state on the posix translator. Entries are reached relative to the
/// open directory itself, so a rename of it (or of any ancestor) while it is open changes
/// nothing.
pub struct PosixDir {
    gfid: Gfid,
    /// The directory, for the `*at` calls on its entries (the stream has its own).
    fd: std::os::fd::OwnedFd,
    state: Mutex<DirState>,
}

struct DirState {
    dir: rfs::Dir,
    /// The cookie the stream is positioned at, or `None` when it must seek first.
    at: Option<u64>,
}

fn dirent_kind(t: rfs::FileType) -> FileType {
    match t {
        rfs::FileType::Directory => FileType::Directory,
        rfs::FileType::Symlink => FileType::Symlink,
        rfs::FileType::Fifo => FileType::Fifo,
        rfs::FileType::CharacterDevice => FileType::CharDevice,
        rfs::FileType::BlockDevice => FileType::BlockDevice,
        rfs::FileType::Socket => FileType::Socket,
        _ => FileType::Regular,
    }
}

impl Brick {
    /// Opens the directory `loc` names.
    pub fn opendir(&self, loc: &Loc) -> Result<PosixDir, Errno> {
        let node = self.inode(loc)?;
        if !node.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let gfid = loc.gfid.or_else(|| node.gfid()).ok_or(Errno::EIO)?;
        let fd = node.reopen(OFlags::RDONLY | OFlags::DIRECTORY)?;
        let dir =
            rfs::Dir::new(rustix::io::fcntl_dupfd_cloexec(&fd, 0).map_err(ex)?).map_err(ex)?;
        Ok(PosixDir {
            gfid,
            fd,
            state: Mutex::new(DirState { dir, at: Some(0) }),
        })
    }

    /// Up to `size` bytes' worth of entries after cookie `offset`; with `plus`, each
    /// entry's attributes (assigning gfids to entries that lack one), and the values each
    /// such entry has among the xattr names `want` (see [`weft_core::READDIRP_XATTRS_KEY`]).
    pub fn readdir(
        &self,
        d: &PosixDir,
        size: u32,
        offset: u64,
        plus: bool,
        want: &[String],
    ) -> Result<(Vec<Dirent>, EntryValues), Errno> {
        let mut st = d.state.lock();
        if st.at != Some(offset) {
            if offset == 0 {
                st.dir.rewind();
            } else {
                st.dir.seek(offset as i64).map_err(ex)?;
            }
        }
        let hide_private = d.gfid.is_root();
        let dfd = d.fd.as_fd();
        let mut out = Vec::new();
        let mut xattrs = Vec::new();
        let mut used = 0usize;
        let mut at = offset;
        loop {
            let e = match st.dir.read() {
                None => break,
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    st.at = None;
                    return Err(ex(e));
                }
            };
            let name = e.file_name().to_bytes();
            if hide_private && name == PRIVATE_DIR.as_bytes() {
                at = e.offset() as u64;
                continue;
            }
            let cost = Dirent::cost(name.len(), plus);
            if used + cost > size as usize && !out.is_empty() {
                st.at = None; // we read one entry too many
                return Ok((out, xattrs));
            }
            used += cost;
            at = e.offset() as u64;
            let dot = name == b"." || name == b"..";
            let ia = if plus && !dot {
                self.entry_iatt(d, dfd, name, want, &mut xattrs)
            } else {
                None
            };
            // d_ino must agree with st_ino, which is derived from the gfid.
            let ino = match (ia, dot) {
                (Some(i), _) => i.ino,
                (None, true) if name == b"." => d.gfid.ino(),
                (None, true) => e.ino(),
                (None, false) => entry_gfid(dfd, name).map(|g| g.ino()).unwrap_or(e.ino()),
            };
            let kind = ia
                .and_then(|i| i.file_type())
                .unwrap_or_else(|| dirent_kind(e.file_type()));
            out.push(Dirent {
                name: name.to_vec(),
                offset: at,
                kind,
                ino,
                iatt: ia,
            });
        }
        st.at = Some(at);
        Ok((out, xattrs))
    }

    /// Entry `name`'s attributes, and (when `want` names any) the values it has among
    /// those xattrs, pushed to `xattrs` (left out if they cannot be read).
    fn entry_iatt(
        &self,
        d: &PosixDir,
        dir: BorrowedFd<'_>,
        name: &[u8],
        want: &[String],
        xattrs: &mut EntryValues,
    ) -> Option<weft_core::Iatt> {
        if let Some(ia) = self.known_entry_iatt(dir, name, want, xattrs) {
            return Some(ia);
        }
        let node = Pin::at(dir, OsStr::from_bytes(name)).ok()?;
        let g = self
            .ensure_gfid(&node, &d.gfid, OsStr::from_bytes(name))
            .ok()?;
        if !want.is_empty() {
            if let Ok(m) = super::attr::getxattr_named(Target::Pin(&node), want) {
                xattrs.push((g, m));
            }
        }
        Some(iatt(g, &node.st))
    }

    /// [`Brick::entry_iatt`] without opening the entry, for a file whose gfid's handle
    /// this process already knows to be that very inode: a stat and a gfid read relative
    /// to the directory (and the asked xattrs the same way, then a second stat). `None`
    /// (take the pinned way) for directories, files without a gfid or with a handle not
    /// known yet, and an entry replaced between the calls: the attributes, gfid and
    /// xattrs answered are always one inode's.
    fn known_entry_iatt(
        &self,
        dir: BorrowedFd<'_>,
        name: &[u8],
        want: &[String],
        xattrs: &mut EntryValues,
    ) -> Option<weft_core::Iatt> {
        let name = OsStr::from_bytes(name);
        let st = rfs::statat(dir, name, rfs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return None;
        }
        let g = entry_gfid(dir, name.as_bytes())?;
        // The gfid read names the stat's inode only if its handle is that inode: a name
        // replaced between the two calls gave another inode's gfid.
        if !self.is_known_handle_of(&g, &st) {
            return None;
        }
        if !want.is_empty() {
            let m = super::attr::getxattr_named(Src::Entry(dir, name), want).ok();
            // Replaced after the gfid was read: these may be another inode's xattrs.
            let again = rfs::statat(dir, name, rfs::AtFlags::SYMLINK_NOFOLLOW).ok()?;
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                return None;
            }
            if let Some(m) = m {
                xattrs.push((g, m));
            }
        }
        Some(iatt(g, &st))
    }

    /// fsync of the directory itself.
    pub fn fsyncdir(&self, d: &PosixDir) -> Result<(), Errno> {
        let st = d.state.lock();
        let fd = st.dir.fd().map_err(ex)?;
        rfs::fsync(fd).map_err(ex)
    }
}

/// The gfid on entry `name` of `dir`, read without opening or following it (one system
/// call, [`super::xattr_at`]).
fn entry_gfid(dir: BorrowedFd<'_>, name: &[u8]) -> Option<Gfid> {
    let mut buf = [0u8; 16];
    match super::xattr_at::get(dir, OsStr::from_bytes(name), GFID_XATTR, &mut buf[..]) {
        Ok(16) => Gfid::from_slice(&buf),
        _ => None,
    }
}
