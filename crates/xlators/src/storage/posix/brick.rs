//! A brick directory on disk: its checks, the gfid handle tree, and resolving gfids and
//! entries to pinned inodes (never to path strings; see [`super::sys`]).
//!
//! On-disk layout (all under the brick root):
//! - every file and directory lives at its own path, with its 16-byte gfid in the xattr
//!   `trusted.weft.gfid`;
//! - `.weft/handles/AB/CD/<gfid>` (AB, CD: the gfid's first two bytes in hex) is a hard link
//!   to the inode for everything but directories, and for a directory a symlink
//!   `../../PP/QQ/<parent-gfid>/<name>` through the parent's handle, so it survives renames
//!   of any ancestor. Handle symlinks are read, never followed;
//! - the root's handle is the symlink `../../../..` (the brick root itself);
//! - `.weft/reap/log`: the gfids (16 bytes each) of unlinked files whose handles wait to
//!   be removed (see [`super::reap`]). A non-directory's handle with no other link is
//!   stale: its gfid resolves to `ESTALE`.
//!
//! The `.weft` folder at the brick root is hidden from clients.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, XattrFlags, CWD};
use weft_core::{Errno, Gfid, Iatt, Loc, Timespec, GFID_XATTR};

pub use super::sys::ex;
use super::sys::{open_beneath, proc_path, Pin};

/// The name of Weft's private folder at the brick root.
pub const PRIVATE_DIR: &str = ".weft";

/// The most handle hops a directory path may take before we call it a loop.
const MAX_DEPTH: usize = 4096;

/// How many handles [`Brick`] remembers as true at most (about 64 bytes each).
const TRUE_HANDLES_MAX: usize = 262_144;

/// What a gfid handle stands for.
#[derive(Clone, PartialEq, Eq, Debug)]
enum HandleFor {
    /// A non-directory's hard link: that inode.
    File { dev: u64, ino: u64 },
    /// A directory's symlink: this target (its parent's handle and its name).
    Dir(PathBuf),
}

impl HandleFor {
    /// What the handle of `node`, entry `name` of `parent`, must stand for.
    fn of(node: &Pin, parent: &Gfid, name: &OsStr) -> HandleFor {
        if node.is_dir() {
            HandleFor::Dir(dir_handle_target(parent, name))
        } else {
            HandleFor::File {
                dev: node.st.st_dev,
                ino: node.st.st_ino,
            }
        }
    }
}

/// How many locks guard entries being created (by hash of parent and name).
const CREATE_STRIPES: usize = 256;

/// An opened, checked brick.
pub struct Brick {
    /// The brick root (absolute), for messages; never used to reach files.
    pub root: PathBuf,
    /// `O_PATH` descriptor of the brick root: every client path is resolved beneath it.
    root_fd: OwnedFd,
    /// `O_PATH` descriptor of `.weft/handles`.
    handles_fd: OwnedFd,
    /// Removes the handles of unlinked files after the unlink is answered.
    reaper: super::reap::Reaper,
    /// Directory gfid -> path relative to the root (a hint: checked against the gfid on
    /// every use); cleared whenever a directory is renamed.
    dir_paths: Mutex<HashMap<Gfid, Vec<u8>>>,
    /// Bumped whenever a directory handle moves or goes, so a resolution that raced with it
    /// does not put its stale answer into `dir_paths`.
    dir_gen: AtomicU64,
    /// Handles known to be true (checked on disk, or made or moved by this process), so a
    /// lookup of a known entry does not check its handle again: after the kernel's caches
    /// are dropped that check reads two handle folders from disk per file. An entry goes
    /// when this process moves or removes the handle, or when resolving its gfid fails;
    /// the whole map starts over past [`TRUE_HANDLES_MAX`].
    true_handles: Mutex<HashMap<Gfid, HandleFor>>,
    /// One bit per `.weft/handles/AB/CD` folder known to exist.
    handle_dirs: Vec<AtomicU64>,
    /// Held while an entry is created and given its gfid, so that nobody else gives the
    /// half-made entry an identity of its own.
    creating: Vec<Mutex<()>>,
    /// This process's umask (the kernel applies it to every creation; posix puts back the
    /// bits the client asked for).
    pub umask: u32,
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
        let root_fd = rfs::open(
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("brick directory {}: {e}", root.display()))?;
        // The resolver needs openat2 (Linux 5.6) and /proc.
        open_beneath(root_fd.as_fd(), b"", OFlags::PATH | OFlags::DIRECTORY).map_err(|e| {
            format!(
                "brick directory {}: cannot resolve paths beneath it ({e}); Weft needs Linux 5.6 or later (openat2) and /proc",
                root.display()
            )
        })?;
        let rp = proc_path(root_fd.as_fd());
        let mut buf = [0u8; 16];
        match rfs::getxattr(rp.as_str(), GFID_XATTR, &mut buf[..]) {
            Ok(16) if buf == Gfid::ROOT.0 => {}
            Ok(_) => {
                return Err(format!(
                    "brick directory {} carries a foreign {GFID_XATTR}: it is not the root of a Weft brick",
                    root.display()
                ))
            }
            Err(rustix::io::Errno::NODATA) => {
                rfs::setxattr(rp.as_str(), GFID_XATTR, &Gfid::ROOT.0, XattrFlags::CREATE).map_err(|e| {
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
        let private = |rel: &str| -> Result<OwnedFd, String> {
            let at = root.join(rel);
            match rfs::mkdirat(&root_fd, rel, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(format!("cannot create {}: {e}", at.display())),
            }
            let fd = open_beneath(
                root_fd.as_fd(),
                rel.as_bytes(),
                OFlags::PATH | OFlags::DIRECTORY,
            )
            .map_err(|e| format!("{} must be a directory: {e}", at.display()))?;
            rfs::chmodat(
                CWD,
                proc_path(fd.as_fd()).as_str(),
                Mode::from_raw_mode(0o700),
                AtFlags::empty(),
            )
            .map_err(|e| format!("cannot restrict {}: {e}", at.display()))?;
            Ok(fd)
        };
        private(PRIVATE_DIR)?;
        let handles_fd = private(".weft/handles")?;
        let reaper = super::reap::Reaper::start(private(super::reap::REAP_DIR)?, &handles_fd);
        let brick = Brick {
            root,
            root_fd,
            handles_fd,
            reaper,
            dir_paths: Mutex::new(HashMap::new()),
            dir_gen: AtomicU64::new(0),
            true_handles: Mutex::new(HashMap::new()),
            handle_dirs: (0..1024).map(|_| AtomicU64::new(0)).collect(),
            creating: (0..CREATE_STRIPES).map(|_| Mutex::new(())).collect(),
            umask: super::sys::process_umask(),
        };
        let rh = Brick::handle_rel(&Gfid::ROOT);
        if rfs::statat(&brick.handles_fd, rh.as_str(), AtFlags::SYMLINK_NOFOLLOW).is_err() {
            let shown = brick.root.join(".weft/handles").join(&rh);
            brick
                .make_handle_dir(&Gfid::ROOT)
                .map_err(|e| format!("{}: {e}", shown.display()))?;
            rfs::symlinkat("../../../..", &brick.handles_fd, rh.as_str())
                .map_err(|e| format!("{}: {e}", shown.display()))?;
        }
        Ok(brick)
    }

    /// The brick root's `O_PATH` descriptor.
    pub fn root_fd(&self) -> BorrowedFd<'_> {
        self.root_fd.as_fd()
    }

    /// `AB/CD/<gfid>`, relative to `.weft/handles`.
    pub fn handle_rel(g: &Gfid) -> String {
        format!("{:02x}/{:02x}/{}", g.0[0], g.0[1], g)
    }

    /// Makes sure `.weft/handles/AB/CD` exists for `g`, remembering which of the 65,536
    /// folders are known to exist so a create does not stat its folder every time.
    fn make_handle_dir(&self, g: &Gfid) -> Result<(), Errno> {
        let slot = (g.0[0] as usize) << 8 | g.0[1] as usize;
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if self.handle_dirs[word].load(Ordering::Relaxed) & bit != 0 {
            return Ok(());
        }
        for d in [
            format!("{:02x}", g.0[0]),
            format!("{:02x}/{:02x}", g.0[0], g.0[1]),
        ] {
            match rfs::mkdirat(&self.handles_fd, d.as_str(), Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(ex(e)),
            }
        }
        self.handle_dirs[word].fetch_or(bit, Ordering::Relaxed);
        Ok(())
    }

    /// Pins `g`'s handle itself (`ENOENT` if there is none).
    fn handle_pin(&self, g: &Gfid) -> Result<Pin, Errno> {
        Pin::new(open_beneath(
            self.handles_fd.as_fd(),
            Brick::handle_rel(g).as_bytes(),
            OFlags::PATH,
        )?)
    }

    /// Records `g` for the inode `node`: a hard link for non-directories, the
    /// parent-relative symlink for directories. A handle that already names this inode is
    /// kept; a stale one (its inode gone or moved) is replaced; `EEXIST` if `g` is the
    /// gfid of another live inode.
    pub fn create_handle(
        &self,
        g: &Gfid,
        node: &Pin,
        parent: &Gfid,
        name: &OsStr,
    ) -> Result<(), Errno> {
        let rel = Brick::handle_rel(g);
        self.make_handle_dir(g)?;
        for _ in 0..2 {
            let r = if node.is_dir() {
                rfs::symlinkat(
                    dir_handle_target(parent, name),
                    &self.handles_fd,
                    rel.as_str(),
                )
            } else {
                link_inode(node.fd.as_fd(), self.handles_fd.as_fd(), OsStr::new(&rel))
            };
            match r {
                Ok(()) => {
                    self.handle_true(g, HandleFor::of(node, parent, name));
                    return Ok(());
                }
                Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(ex(e)),
            }
            match self.handle_owner(g)? {
                Some(st) if st.st_dev == node.st.st_dev && st.st_ino == node.st.st_ino => {
                    if node.is_dir() {
                        // The right directory, reached through an old place: point the
                        // handle at where it is now.
                        return self.move_dir_handle(g, parent, name);
                    }
                    self.handle_true(g, HandleFor::of(node, parent, name));
                    return Ok(());
                }
                Some(_) => return Err(Errno::EEXIST),
                None => {
                    // A stale handle: take it away and try once more.
                    let _ = rfs::unlinkat(&self.handles_fd, rel.as_str(), AtFlags::empty());
                    self.forget_dir(g);
                }
            }
        }
        Err(Errno::EEXIST)
    }

    /// The live inode `g`'s existing handle stands for, if any: the hard-linked inode for a
    /// non-directory still named somewhere, or the directory the handle leads to if it
    /// carries `g`.
    fn handle_owner(&self, g: &Gfid) -> Result<Option<rfs::Stat>, Errno> {
        let h = match self.handle_pin(g) {
            Ok(h) => h,
            Err(e) if e == Errno::ENOENT => return Ok(None),
            Err(e) => return Err(e),
        };
        if h.kind() != libc::S_IFLNK || h.gfid() == Some(*g) {
            // A non-directory: alive if some name besides the handle is left.
            return Ok((h.st.st_nlink > 1).then_some(h.st));
        }
        match self.resolve_dir_handle(g, &h) {
            Ok(d) => Ok(Some(d.st)),
            Err(_) => Ok(None),
        }
    }

    /// Points directory `g`'s handle at its new parent and name (after a rename).
    pub fn move_dir_handle(&self, g: &Gfid, parent: &Gfid, name: &OsStr) -> Result<(), Errno> {
        let rel = Brick::handle_rel(g);
        let tmp = format!("{rel}.new");
        let _ = rfs::unlinkat(&self.handles_fd, tmp.as_str(), AtFlags::empty());
        rfs::symlinkat(
            dir_handle_target(parent, name),
            &self.handles_fd,
            tmp.as_str(),
        )
        .map_err(ex)?;
        rfs::renameat(
            &self.handles_fd,
            tmp.as_str(),
            &self.handles_fd,
            rel.as_str(),
        )
        .map_err(ex)?;
        self.dir_gen.fetch_add(1, Ordering::SeqCst);
        self.dir_paths.lock().clear();
        self.handle_true(g, HandleFor::Dir(dir_handle_target(parent, name)));
        Ok(())
    }

    /// Forgets what is known of `g`'s handle (it went, or is about to be replaced).
    fn forget_dir(&self, g: &Gfid) {
        self.dir_gen.fetch_add(1, Ordering::SeqCst);
        self.dir_paths.lock().remove(g);
        self.true_handles.lock().remove(g);
    }

    /// Whether the non-directory whose attributes are `st` is the inode `g`'s handle is
    /// known (in memory, from this process's own creates and checks) to stand for.
    pub fn is_known_handle_of(&self, g: &Gfid, st: &rfs::Stat) -> bool {
        matches!(
            self.true_handles.lock().get(g),
            Some(HandleFor::File { dev, ino }) if *dev == st.st_dev && *ino == st.st_ino
        )
    }

    /// Remembers that `g`'s handle stands for `what`.
    fn handle_true(&self, g: &Gfid, what: HandleFor) {
        let mut known = self.true_handles.lock();
        if known.len() >= TRUE_HANDLES_MAX {
            known.clear();
        }
        known.insert(*g, what);
    }

    /// Removes `g`'s handle (a directory's, or a file's last extra link).
    pub fn remove_handle(&self, g: &Gfid) {
        let _ = rfs::unlinkat(
            &self.handles_fd,
            Brick::handle_rel(g).as_str(),
            AtFlags::empty(),
        );
        self.forget_dir(g);
    }

    /// Removes non-directory `g`'s handle if no name is left but the handle itself: soon,
    /// by the reaper (here only when it cannot take it). The link count is read from the
    /// handle at that time, so a concurrent link that gave the file a new name keeps it.
    pub fn drop_handle_if_orphan(&self, g: &Gfid) {
        self.true_handles.lock().remove(g);
        if self.reaper.defer(g) {
            return; // the reaper checks and removes it (see super::reap)
        }
        super::reap::remove_if_orphan(&self.handles_fd, g);
        // A lookup between the first removal and the unlink may have vouched for it again.
        self.true_handles.lock().remove(g);
    }

    /// Pins inode `g`: a non-directory through its handle (the same inode), a directory
    /// through the path its parents' handles spell, resolved beneath the root without
    /// following any symlink and checked to carry `g`. `ESTALE` if `g` is gone.
    pub fn resolve(&self, g: &Gfid) -> Result<Pin, Errno> {
        if g.is_root() {
            return Pin::new(open_beneath(
                self.root_fd.as_fd(),
                b"",
                OFlags::PATH | OFlags::DIRECTORY,
            )?);
        }
        let cached = self.dir_paths.lock().get(g).cloned();
        if let Some(rel) = cached {
            if let Ok(p) = self.open_dir_rel(&rel) {
                if p.gfid() == Some(*g) {
                    return Ok(p);
                }
            }
            self.forget_dir(g);
        }
        let h = match self.handle_pin(g) {
            Ok(h) => h,
            Err(e) => {
                // Gone behind this process's back: the next lookup by name checks again.
                self.true_handles.lock().remove(g);
                return Err(stale(e));
            }
        };
        if h.kind() != libc::S_IFLNK || h.gfid() == Some(*g) {
            // A non-directory's hard link (a symlink carries its own gfid); with no other
            // link its file has no name left (its handle waits for the reaper).
            if h.st.st_nlink <= 1 {
                self.true_handles.lock().remove(g);
                return Err(Errno::ESTALE);
            }
            return Ok(h);
        }
        let dir = self.resolve_dir_handle(g, &h);
        if dir.is_err() {
            self.true_handles.lock().remove(g);
        }
        dir
    }

    /// Pins directory `g` whose handle symlink is `h`.
    fn resolve_dir_handle(&self, g: &Gfid, h: &Pin) -> Result<Pin, Errno> {
        let gen = self.dir_gen.load(Ordering::SeqCst);
        let target = rfs::readlinkat(&h.fd, "", Vec::new()).map_err(ex)?;
        let rel = self.dir_rel(target.as_bytes())?;
        let p = self.open_dir_rel(&rel).map_err(stale)?;
        if p.gfid() != Some(*g) {
            return Err(Errno::ESTALE);
        }
        let mut cache = self.dir_paths.lock();
        if self.dir_gen.load(Ordering::SeqCst) == gen {
            if cache.len() > 100_000 {
                cache.clear();
            }
            cache.insert(*g, rel);
        }
        Ok(p)
    }

    fn open_dir_rel(&self, rel: &[u8]) -> Result<Pin, Errno> {
        Pin::new(open_beneath(
            self.root_fd.as_fd(),
            rel,
            OFlags::PATH | OFlags::DIRECTORY,
        )?)
    }

    /// The path relative to the root that the directory handle target `target` spells,
    /// reading ancestors' handles (never following them) up to the root or a cached one.
    fn dir_rel(&self, target: &[u8]) -> Result<Vec<u8>, Errno> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut target = target.to_vec();
        let base = loop {
            let (parent, name) = parse_dir_handle_target(&target).ok_or(Errno::EIO)?;
            names.push(name);
            if names.len() > MAX_DEPTH {
                return Err(Errno(libc::ELOOP));
            }
            if parent.is_root() {
                break Vec::new();
            }
            if let Some(rel) = self.dir_paths.lock().get(&parent).cloned() {
                break rel;
            }
            target = match rfs::readlinkat(
                &self.handles_fd,
                Brick::handle_rel(&parent).as_str(),
                Vec::new(),
            ) {
                Ok(t) => t.into_bytes(),
                Err(rustix::io::Errno::NOENT) => return Err(Errno::ESTALE),
                // A parent whose handle is a hard link is not a directory.
                Err(rustix::io::Errno::INVAL) => return Err(Errno::ENOTDIR),
                Err(e) => return Err(ex(e)),
            };
        };
        let mut rel = base;
        for n in names.into_iter().rev() {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(&n);
        }
        Ok(rel)
    }

    /// Pins directory `g`: `ESTALE` if gone, `ENOTDIR` if it is not a directory.
    pub fn dir(&self, g: &Gfid) -> Result<Pin, Errno> {
        let p = self.resolve(g)?;
        if !p.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(p)
    }

    /// The parent directory (pinned) and checked name of the entry `loc` names.
    pub fn entry(&self, loc: &Loc) -> Result<(Pin, OsString), Errno> {
        let parent = loc.parent.ok_or(Errno::EINVAL)?;
        let name = loc.name.as_deref().ok_or(Errno::EINVAL)?;
        check_name(name)?;
        if parent.is_root() && name == PRIVATE_DIR {
            return Err(Errno::EPERM);
        }
        Ok((self.dir(&parent)?, name.to_os_string()))
    }

    /// Pins the inode `loc` names: by gfid, else by parent + name.
    pub fn inode(&self, loc: &Loc) -> Result<Pin, Errno> {
        match loc.gfid {
            Some(g) => self.resolve(&g),
            None => {
                let (dir, name) = self.entry(loc)?;
                Pin::at(dir.fd.as_fd(), &name)
            }
        }
    }

    /// Held while entry `name` of `parent` is being created and given its gfid.
    pub fn creating(&self, parent: &Gfid, name: &OsStr) -> MutexGuard<'_, ()> {
        let mut h = blake3::Hasher::new();
        h.update(&parent.0);
        h.update(name.as_bytes());
        let i = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
        self.creating[(i % CREATE_STRIPES as u64) as usize].lock()
    }

    /// The gfid of `node`, found as entry `name` of `parent`, making its identity whole:
    /// an entry without a gfid (put on the brick by hand) gets a fresh one, a missing
    /// handle is recreated, and an inode whose gfid another live inode already has (a
    /// copy made inside the brick) gets a fresh one. Never races a creation in progress:
    /// it waits for the creator to give the entry its gfid.
    pub fn ensure_gfid(&self, node: &Pin, parent: &Gfid, name: &OsStr) -> Result<Gfid, Errno> {
        if let Some(g) = node.gfid() {
            if self.handle_is_true(&g, node, parent, name) {
                return Ok(g);
            }
            let _c = self.creating(parent, name);
            return match self.create_handle(&g, node, parent, name) {
                Err(e) if e == Errno::EEXIST => {
                    let fresh = Gfid::random();
                    tracing::warn!(
                        brick = %self.root.display(), gfid = %g, new = %fresh,
                        "an inode carries a gfid another inode owns (copied inside the brick?); giving it a fresh one"
                    );
                    node.replace_gfid(&fresh)?;
                    self.create_handle(&fresh, node, parent, name)?;
                    Ok(fresh)
                }
                Err(e) => Err(e),
                Ok(()) => Ok(g),
            };
        }
        let _c = self.creating(parent, name);
        if let Some(g) = node.gfid() {
            return Ok(g); // its creator finished while we waited
        }
        let fresh = Gfid::for_new_inode();
        let g = match node.set_gfid_once(&fresh) {
            Ok(()) => fresh,
            Err(e) if e == Errno::EEXIST => node.gfid().ok_or(Errno::EIO)?,
            Err(e) => return Err(e),
        };
        self.create_handle(&g, node, parent, name)?;
        Ok(g)
    }

    /// Whether `g`'s handle is `node`'s own (for a non-directory, the same inode; any
    /// directory handle is taken as a directory's), so removing it harms no other inode.
    pub fn handle_is_of(&self, g: &Gfid, node: &Pin) -> bool {
        match rfs::statat(
            &self.handles_fd,
            Brick::handle_rel(g).as_str(),
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) if node.is_dir() => st.st_mode & libc::S_IFMT == libc::S_IFLNK,
            Ok(st) => st.st_ino == node.st.st_ino && st.st_dev == node.st.st_dev,
            Err(_) => false,
        }
    }

    /// Every gfid that has a handle (a walk of `.weft/handles`; for offline checks).
    pub fn handle_gfids(&self) -> Vec<Gfid> {
        let list = |rel: &[u8]| -> Vec<Vec<u8>> {
            let Ok(fd) = open_beneath(
                self.handles_fd.as_fd(),
                rel,
                OFlags::RDONLY | OFlags::DIRECTORY,
            ) else {
                return Vec::new();
            };
            let Ok(mut d) = rfs::Dir::new(fd) else {
                return Vec::new();
            };
            let mut v = Vec::new();
            while let Some(Ok(e)) = d.read() {
                let n = e.file_name().to_bytes();
                if n != b"." && n != b".." {
                    v.push(n.to_vec());
                }
            }
            v
        };
        let mut out = Vec::new();
        for a in list(b"") {
            for b in list(&a) {
                let mut rel = a.clone();
                rel.push(b'/');
                rel.extend_from_slice(&b);
                for h in list(&rel) {
                    if let Some(g) = std::str::from_utf8(&h)
                        .ok()
                        .and_then(|t| t.parse::<Gfid>().ok())
                    {
                        out.push(g);
                    }
                }
            }
        }
        out
    }

    /// Whether `g`'s handle already stands for `node` as entry `name` of `parent`: no
    /// syscall when this process knows it already, else one (a stat of a file's handle, or
    /// a read of a directory's handle link).
    pub fn handle_is_true(&self, g: &Gfid, node: &Pin, parent: &Gfid, name: &OsStr) -> bool {
        let want = HandleFor::of(node, parent, name);
        if self.true_handles.lock().get(g) == Some(&want) {
            return true;
        }
        let rel = Brick::handle_rel(g);
        let ok = match &want {
            HandleFor::Dir(target) => {
                match rfs::readlinkat(&self.handles_fd, rel.as_str(), Vec::new()) {
                    Ok(t) => t.as_bytes() == target.as_os_str().as_bytes(),
                    Err(_) => false,
                }
            }
            HandleFor::File { dev, ino } => {
                match rfs::statat(&self.handles_fd, rel.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st.st_ino == *ino && st.st_dev == *dev,
                    Err(_) => false,
                }
            }
        };
        if ok {
            self.handle_true(g, want);
        }
        ok
    }
}

/// Gives the inode open as `fd` the extra name `rel` beneath `dir` (linkat of a
/// descriptor: `AT_EMPTY_PATH`, or through /proc where that needs a capability we lack).
pub fn link_inode(fd: BorrowedFd<'_>, dir: BorrowedFd<'_>, rel: &OsStr) -> rustix::io::Result<()> {
    match rfs::linkat(fd, "", dir, rel, AtFlags::EMPTY_PATH) {
        Err(rustix::io::Errno::PERM) | Err(rustix::io::Errno::NOENT) => rfs::linkat(
            CWD,
            proc_path(fd).as_str(),
            dir,
            rel,
            AtFlags::SYMLINK_FOLLOW,
        ),
        r => r,
    }
}

/// ENOENT on the way to an inode named by gfid means the inode is gone: ESTALE, so the
/// kernel looks the name up again.
fn stale(e: Errno) -> Errno {
    if e == Errno::ENOENT || e == Errno::ENOTDIR || e == Errno(libc::ELOOP) {
        Errno::ESTALE
    } else {
        e
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
