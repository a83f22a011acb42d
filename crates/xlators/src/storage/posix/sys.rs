//! The brick's one way to reach inodes: descriptors, never path strings a client can shape.
//!
//! Every name a client sends is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS
//! | RESOLVE_NO_MAGICLINKS)` relative to a directory descriptor the brick already holds, so
//! a symlink anywhere in a path ends the walk with `ELOOP` instead of leaving the brick, and
//! a `..` can never climb above the descriptor. Inodes are then held as [`Pin`]s (`O_PATH |
//! O_NOFOLLOW` descriptors); calls that have no descriptor form for `O_PATH` (xattrs, chmod,
//! reopening for I/O) go through `/proc/self/fd/N`, a kernel "magic link" to exactly that
//! inode, which never follows a symlink the inode itself may be.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags, XattrFlags};
use weft_core::{Errno, Gfid, GFID_XATTR};

/// Converts a rustix error into an errno.
pub fn ex(e: rustix::io::Errno) -> Errno {
    Errno(e.raw_os_error())
}

/// How every client-named path is resolved: beneath the starting directory, through no
/// symlink of any kind.
pub const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The longest relative path handed to one `openat2`; longer ones are walked in pieces
/// (PATH_MAX is 4096, and a brick path may be longer than what a client sees).
const CHUNK: usize = 3072;

/// Opens `rel` (a relative path of `/`-separated components, empty for `dir` itself)
/// beneath `dir` with `flags` (`O_NOFOLLOW | O_CLOEXEC` are added), never following a
/// symlink. Paths longer than PATH_MAX are walked a piece at a time.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if rel.is_empty() {
        return rfs::openat2(dir, ".", flags, Mode::empty(), RESOLVE).map_err(ex);
    }
    if rel.len() <= CHUNK {
        return rfs::openat2(dir, OsStr::from_bytes(rel), flags, Mode::empty(), RESOLVE)
            .map_err(ex);
    }
    // Split at a '/' so that each piece is at most CHUNK bytes; every piece but the last
    // must be a directory.
    let mut cur: Option<OwnedFd> = None;
    let mut rest = rel;
    while rest.len() > CHUNK {
        let cut = rest[..CHUNK]
            .iter()
            .rposition(|&b| b == b'/')
            .ok_or(Errno::ENAMETOOLONG)?;
        let (piece, tail) = (&rest[..cut], &rest[cut + 1..]);
        let base = cur.as_ref().map(|f| f.as_fd()).unwrap_or(dir);
        let next = rfs::openat2(
            base,
            OsStr::from_bytes(piece),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .map_err(ex)?;
        cur = Some(next);
        rest = tail;
    }
    let base = cur.as_ref().map(|f| f.as_fd()).unwrap_or(dir);
    rfs::openat2(base, OsStr::from_bytes(rest), flags, Mode::empty(), RESOLVE).map_err(ex)
}

/// `/proc/self/fd/N` for `fd`: the kernel's link to exactly that inode.
pub fn proc_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// An inode held by an `O_PATH | O_NOFOLLOW` descriptor that was reached without following
/// any symlink, with its attributes as of pinning.
pub struct Pin {
    /// The `O_PATH` descriptor.
    pub fd: OwnedFd,
    /// `fstat` of it when it was pinned.
    pub st: rfs::Stat,
}

impl Pin {
    /// Pins `fd` (an `O_PATH` descriptor), reading its attributes.
    pub fn new(fd: OwnedFd) -> Result<Pin, Errno> {
        let st = rfs::fstat(&fd).map_err(ex)?;
        Ok(Pin { fd, st })
    }

    /// Pins the entry `name` of directory `dir` (one component, not followed if a symlink).
    pub fn at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Pin, Errno> {
        Pin::new(open_beneath(dir, name.as_bytes(), OFlags::PATH)?)
    }

    /// Whether the pinned inode is a directory.
    pub fn is_dir(&self) -> bool {
        self.st.st_mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// The pinned inode's file type bits.
    pub fn kind(&self) -> u32 {
        self.st.st_mode & libc::S_IFMT
    }

    /// `/proc/self/fd/N` of the pin.
    pub fn proc(&self) -> String {
        proc_path(self.fd.as_fd())
    }

    /// Fresh attributes of the pinned inode.
    pub fn restat(&self) -> Result<rfs::Stat, Errno> {
        rfs::fstat(&self.fd).map_err(ex)
    }

    /// The gfid stored on the inode, if it has a valid one.
    pub fn gfid(&self) -> Option<Gfid> {
        let mut buf = [0u8; 16];
        match rfs::getxattr(self.proc().as_str(), GFID_XATTR, &mut buf[..]) {
            Ok(16) => Gfid::from_slice(&buf),
            _ => None,
        }
    }

    /// Stores `g` on the inode if it has no gfid yet; `EEXIST` if it has one.
    pub fn set_gfid_once(&self, g: &Gfid) -> Result<(), Errno> {
        rfs::setxattr(self.proc().as_str(), GFID_XATTR, &g.0, XattrFlags::CREATE).map_err(ex)
    }

    /// Replaces the inode's gfid with `g`.
    pub fn replace_gfid(&self, g: &Gfid) -> Result<(), Errno> {
        rfs::setxattr(self.proc().as_str(), GFID_XATTR, &g.0, XattrFlags::empty()).map_err(ex)
    }

    /// Opens the pinned inode for I/O with `flags` (it must be a regular file or a
    /// directory: a FIFO or device is never opened by the brick).
    pub fn reopen(&self, flags: OFlags) -> Result<OwnedFd, Errno> {
        match self.kind() {
            libc::S_IFREG | libc::S_IFDIR => {}
            libc::S_IFLNK => return Err(Errno(libc::ELOOP)),
            _ => return Err(Errno(libc::ENXIO)),
        }
        rfs::open(
            self.proc().as_str(),
            (flags | OFlags::CLOEXEC) & !(OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW),
            Mode::empty(),
        )
        .map_err(ex)
    }
}

/// Whether directory `dir` carries a default POSIX ACL (then new entries take their mode
/// from it and the creator's umask does not apply).
pub fn has_default_acl(dir: BorrowedFd<'_>) -> bool {
    rfs::getxattr_query(proc_path(dir).as_str(), "system.posix_acl_default").is_ok()
}

/// This process's umask, read without changing it (from /proc; 0o022 if unreadable).
pub fn process_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}
