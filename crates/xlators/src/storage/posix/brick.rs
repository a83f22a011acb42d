//! A brick directory on disk: its checks, the gfid handle tree, and resolving gfids and
//! entries back to real paths.
//!
//! On-disk layout (all under the brick root):
//! - every file and directory lives at its own path, with its 16-byte gfid in the xattr
//!   `trusted.weft.gfid`;
//! - `.weft/handles/AB/CD/<gfid>` (AB, CD: the gfid's first two bytes in hex) is a hard link
//!   to the inode for everything but directories, and for a directory a symlink
//!   `../../PP/QQ/<parent-gfid>/<name>` through the parent's handle, so it survives renames
//!   of any ancestor;
//! - the root's handle is the symlink `../../../..` (the brick root itself).
//!
//! The `.weft` folder at the brick root is hidden from clients.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustix::fs::{self as rfs, AtFlags, XattrFlags, CWD};
use weft_core::{Errno, Gfid, Iatt, Loc, Timespec, GFID_XATTR};

/// The name of Weft's private folder at the brick root.
pub const PRIVATE_DIR: &str = ".weft";

/// Converts a rustix error into an errno.
pub fn ex(e: rustix::io::Errno) -> Errno {
    Errno(e.raw_os_error())
}

/// The most handle hops a directory path may take before we call it a loop.
const MAX_DEPTH: usize = 4096;

/// An opened, checked brick.
pub struct Brick {
    /// The brick root (absolute).
    pub root: PathBuf,
    handles: PathBuf,
    /// Directory gfid -> real path; cleared whenever a directory is renamed.
    dir_paths: Mutex<HashMap<Gfid, PathBuf>>,
    /// Non-directory gfid -> (path it was last seen at, its inode number). A hint only:
    /// every use checks the inode number and falls back to the handle. It exists because the
    /// handle's own directory entries are cold right after a lookup warmed the real path.
    file_paths: Mutex<HashMap<Gfid, (PathBuf, u64)>>,
    /// Bumped whenever a directory handle moves or goes, so a resolution that raced with it
    /// does not put its stale answer into `dir_paths`.
    dir_gen: AtomicU64,
    /// One bit per `.weft/handles/AB/CD` folder known to exist.
    handle_dirs: Vec<AtomicU64>,
}

impl Brick {
    /// Checks `root` (exists, is a directory, takes trusted xattrs, belongs to no other
    /// volume) and prepares the handle tree. The error is a sentence for the operator.
    pub fn open(root: &Path) -> Result<Brick, String> {
        let meta = std::fs::metadata(root).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("brick directory {} does not exist", root.display())
            }
            _ => format!("brick directory {}: {e}", root.display()),
        })?;
        if !meta.is_dir() {
            return Err(format!("brick path {} is not a directory", root.display()));
        }
        let root = root
            .canonicalize()
            .map_err(|e| format!("{}: {e}", root.display()))?;
        let mut buf = [0u8; 16];
        match rfs::lgetxattr(&root, GFID_XATTR, &mut buf[..]) {
            Ok(16) if buf == Gfid::ROOT.0 => {}
            Ok(_) => {
                return Err(format!(
                    "brick directory {} carries a foreign {GFID_XATTR}: it is not the root of a Weft brick",
                    root.display()
                ))
            }
            Err(rustix::io::Errno::NODATA) => {
                rfs::lsetxattr(&root, GFID_XATTR, &Gfid::ROOT.0, XattrFlags::CREATE).map_err(|e| {
                    format!(
                        "brick directory {} does not take trusted xattrs ({e}); Weft needs a filesystem with xattr support (ext4, xfs, btrfs) and root privileges",
                        root.display()
                    )
                })?;
            }
            Err(e) => {
                return Err(format!(
                    "brick directory {} does not support trusted xattrs ({e}); Weft needs a filesystem with xattr support (ext4, xfs, btrfs) and root privileges",
                    root.display()
                ))
            }
        }
        let handles = root.join(PRIVATE_DIR).join("handles");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&handles)
            .map_err(|e| format!("cannot create {}: {e}", handles.display()))?;
        let brick = Brick {
            root,
            handles,
            dir_paths: Mutex::new(HashMap::new()),
            file_paths: Mutex::new(HashMap::new()),
            dir_gen: AtomicU64::new(0),
            handle_dirs: (0..1024).map(|_| AtomicU64::new(0)).collect(),
        };
        let rh = brick.handle_path(&Gfid::ROOT);
        if rfs::lstat(&rh).is_err() {
            brick
                .make_handle_dir(&Gfid::ROOT)
                .map_err(|e| format!("{}: {e}", rh.display()))?;
            rfs::symlink("../../../..", &rh).map_err(|e| format!("{}: {e}", rh.display()))?;
        }
        Ok(brick)
    }

    /// `.weft/handles/AB/CD/<gfid>`.
    pub fn handle_path(&self, g: &Gfid) -> PathBuf {
        let mut p = self.handles.clone();
        p.push(format!("{:02x}", g.0[0]));
        p.push(format!("{:02x}", g.0[1]));
        p.push(g.to_string());
        p
    }

    /// Makes sure `.weft/handles/AB/CD` exists for `g`, remembering which of the 65,536
    /// folders are known to exist so a create does not stat its folder every time.
    fn make_handle_dir(&self, g: &Gfid) -> Result<(), Errno> {
        let slot = (g.0[0] as usize) << 8 | g.0[1] as usize;
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if self.handle_dirs[word].load(Ordering::Relaxed) & bit != 0 {
            return Ok(());
        }
        let h = self.handle_path(g);
        let d = h.parent().ok_or(Errno::EIO)?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(d)
            .map_err(|e| Errno::from_io(&e))?;
        self.handle_dirs[word].fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }

    /// Records `g` for the inode at `path`: a hard link for non-directories (`is_dir`
    /// false), the parent-relative symlink for directories. An existing handle is kept.
    pub fn create_handle(
        &self,
        g: &Gfid,
        path: &Path,
        is_dir: bool,
        parent: &Gfid,
        name: &OsStr,
    ) -> Result<(), Errno> {
        let h = self.handle_path(g);
        self.make_handle_dir(g)?;
        let r = if is_dir {
            rfs::symlink(dir_handle_target(parent, name), &h)
        } else {
            rfs::linkat(CWD, path, CWD, &h, AtFlags::empty())
        };
        match r {
            Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
            Err(e) => Err(ex(e)),
        }
    }

    /// Points directory `g`'s handle at its new parent and name (after a rename).
    pub fn move_dir_handle(&self, g: &Gfid, parent: &Gfid, name: &OsStr) -> Result<(), Errno> {
        let h = self.handle_path(g);
        let tmp = h.with_extension("new");
        let _ = rfs::unlink(&tmp);
        rfs::symlink(dir_handle_target(parent, name), &tmp).map_err(ex)?;
        rfs::rename(&tmp, &h).map_err(ex)?;
        self.dir_gen.fetch_add(1, Ordering::SeqCst);
        self.dir_paths.lock().clear();
        Ok(())
    }

    /// Removes `g`'s handle (a directory's, or a file's last extra link).
    pub fn remove_handle(&self, g: &Gfid) {
        let _ = rfs::unlink(self.handle_path(g));
        self.dir_gen.fetch_add(1, Ordering::SeqCst);
        self.dir_paths.lock().remove(g);
    }

    /// Removes a non-directory's handle if no name is left but the handle itself.
    pub fn drop_handle_if_orphan(&self, g: &Gfid) {
        if let Ok(st) = rfs::lstat(self.handle_path(g)) {
            if st.st_nlink == 1 && (st.st_mode & libc::S_IFMT) != libc::S_IFDIR {
                let _ = rfs::unlink(self.handle_path(g));
            }
        }
    }

    /// Notes that non-directory `g` (inode number `ino`) lives at `path`.
    pub fn remember_file(&self, g: Gfid, path: &Path, ino: u64) {
        let mut m = self.file_paths.lock();
        if m.len() > 100_000 {
            m.clear();
        }
        m.insert(g, (path.to_path_buf(), ino));
    }

    /// Drops what [`Brick::remember_file`] noted about `g`.
    pub fn forget_file(&self, g: &Gfid) {
        self.file_paths.lock().remove(g);
    }

    /// Where non-directory `g` was last seen, and its inode number.
    pub fn file_hint(&self, g: &Gfid) -> Option<(PathBuf, u64)> {
        self.file_paths.lock().get(g).cloned()
    }

    /// The real path of inode `g`: for non-directories its handle (the same inode), for
    /// directories the path reached by following parent handles.
    pub fn path_of(&self, g: &Gfid) -> Result<PathBuf, Errno> {
        if g.is_root() {
            return Ok(self.root.clone());
        }
        if let Some(p) = self.dir_paths.lock().get(g) {
            return Ok(p.clone());
        }
        let gen = self.dir_gen.load(Ordering::SeqCst);
        let mut chain: Vec<(Gfid, Vec<u8>)> = Vec::new();
        let mut cur = *g;
        loop {
            if cur.is_root() {
                break;
            }
            let cached = self.dir_paths.lock().get(&cur).cloned();
            if let Some(p) = cached {
                return Ok(self.finish_chain(p, chain, gen));
            }
            let h = self.handle_path(&cur);
            let st = rfs::lstat(&h).map_err(|e| {
                if e == rustix::io::Errno::NOENT {
                    Errno::ENOENT
                } else {
                    ex(e)
                }
            })?;
            if st.st_mode & libc::S_IFMT != libc::S_IFLNK || self.gfid_at(&h).is_some() {
                // A file's hard link (a symlink inode carries its own gfid xattr).
                if chain.is_empty() {
                    return Ok(h);
                }
                return Err(Errno::ENOTDIR);
            }
            let target = rfs::readlink(&h, Vec::new()).map_err(ex)?;
            let (parent, name) = parse_dir_handle_target(target.as_bytes()).ok_or(Errno::EIO)?;
            chain.push((cur, name));
            cur = parent;
            if chain.len() > MAX_DEPTH {
                return Err(Errno(libc::ELOOP));
            }
        }
        Ok(self.finish_chain(self.root.clone(), chain, gen))
    }

    fn finish_chain(&self, mut base: PathBuf, chain: Vec<(Gfid, Vec<u8>)>, gen: u64) -> PathBuf {
        let mut cache = self.dir_paths.lock();
        if self.dir_gen.load(Ordering::SeqCst) != gen {
            // A directory moved while we resolved: answer, but cache nothing.
            for (_, name) in chain.into_iter().rev() {
                base.push(OsStr::from_bytes(&name));
            }
            return base;
        }
        if cache.len() > 100_000 {
            cache.clear();
        }
        for (g, name) in chain.into_iter().rev() {
            base.push(OsStr::from_bytes(&name));
            cache.insert(g, base.clone());
        }
        base
    }

    /// The real path of the entry `loc` names (parent + name), checking the name.
    pub fn entry_path(&self, loc: &Loc) -> Result<PathBuf, Errno> {
        let parent = loc.parent.ok_or(Errno::EINVAL)?;
        let name = loc.name.as_deref().ok_or(Errno::EINVAL)?;
        check_name(name)?;
        if parent.is_root() && name == PRIVATE_DIR {
            return Err(Errno::EPERM);
        }
        let mut p = self.path_of(&parent)?;
        p.push(name);
        Ok(p)
    }

    /// The real path of the inode `loc` names: by gfid, else by parent + name.
    pub fn inode_path(&self, loc: &Loc) -> Result<PathBuf, Errno> {
        match loc.gfid {
            Some(g) => self.path_of(&g),
            None => self.entry_path(loc),
        }
    }

    /// The gfid stored on the inode at `path`, if any.
    pub fn gfid_at(&self, path: &Path) -> Option<Gfid> {
        let mut buf = [0u8; 16];
        match rfs::lgetxattr(path, GFID_XATTR, &mut buf[..]) {
            Ok(16) => Gfid::from_slice(&buf),
            _ => None,
        }
    }

    /// The gfid of the inode at `path`, assigning `fresh` (and its handle) if it has none.
    /// Two racing assigners agree: the first xattr written wins.
    pub fn ensure_gfid(
        &self,
        path: &Path,
        st: &rfs::Stat,
        parent: &Gfid,
        name: &OsStr,
        fresh: Gfid,
    ) -> Result<Gfid, Errno> {
        if let Some(g) = self.gfid_at(path) {
            return Ok(g);
        }
        let g = match rfs::lsetxattr(path, GFID_XATTR, &fresh.0, XattrFlags::CREATE) {
            Ok(()) => fresh,
            Err(rustix::io::Errno::EXIST) => self.gfid_at(path).ok_or(Errno::EIO)?,
            Err(e) => return Err(ex(e)),
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        self.create_handle(&g, path, is_dir, parent, name)?;
        Ok(g)
    }
}

/// Refuses names a single path component cannot have.
pub fn check_name(name: &OsStr) -> Result<(), Errno> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Errno::EINVAL);
    }
    if b.len() > 255 {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

fn dir_handle_target(parent: &Gfid, name: &OsStr) -> PathBuf {
    let mut t = PathBuf::from(format!(
        "../../{:02x}/{:02x}/{}",
        parent.0[0], parent.0[1], parent
    ));
    t.push(name);
    t
}

fn parse_dir_handle_target(t: &[u8]) -> Option<(Gfid, Vec<u8>)> {
    let rest = t.strip_prefix(b"../../")?;
    // "PP/QQ/" + 36-char gfid + "/" + name
    let rest = rest.get(6..)?;
    let gfid_text = std::str::from_utf8(rest.get(..36)?).ok()?;
    let g: Gfid = gfid_text.parse().ok()?;
    let name = rest.get(37..)?;
    (rest.get(36) == Some(&b'/') && !name.is_empty()).then(|| (g, name.to_vec()))
}

/// Attributes of `st` as clients see them: numbered by gfid, and with the handle tree's
/// extra hard link taken out of a non-directory's link count.
pub fn iatt(g: Gfid, st: &rfs::Stat) -> Iatt {
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let nlink = st.st_nlink as u32;
    Iatt {
        gfid: g,
        ino: g.ino(),
        mode: st.st_mode,
        nlink: if is_dir || g.is_root() {
            nlink
        } else {
            nlink.saturating_sub(1)
        },
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev,
        size: st.st_size as u64,
        blksize: st.st_blksize as u32,
        blocks: st.st_blocks as u64,
        atime: Timespec {
            sec: st.st_atime,
            nsec: st.st_atime_nsec as u32,
        },
        mtime: Timespec {
            sec: st.st_mtime,
            nsec: st.st_mtime_nsec as u32,
        },
        ctime: Timespec {
            sec: st.st_ctime,
            nsec: st.st_ctime_nsec as u32,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_handle_targets_round_trip() {
        let g = Gfid::random();
        let t = dir_handle_target(&g, OsStr::new("a b"));
        let (pg, name) = parse_dir_handle_target(t.as_os_str().as_bytes()).unwrap();
        assert_eq!(pg, g);
        assert_eq!(name, b"a b");
        assert!(parse_dir_handle_target(b"../../../..").is_none());
        assert!(parse_dir_handle_target(b"").is_none());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name(OsStr::new("ok")).is_ok());
        for bad in ["", ".", "..", "a/b"] {
            assert_eq!(check_name(OsStr::new(bad)), Err(Errno::EINVAL));
        }
        assert_eq!(
            check_name(OsStr::new(&"x".repeat(256))),
            Err(Errno::ENAMETOOLONG)
        );
    }
}
