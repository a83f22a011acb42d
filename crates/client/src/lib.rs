//! Weft's client library, what libgfapi is to GlusterFS: open a volume from its volfile
//! and work on it by path, with no kernel mount. Every front end (the FUSE mount now; the
//! S3 gateway, NBD, transfers and heal later) opens volumes through it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_client::{OpenOptions, Volume};
//! let registry = weft_core::Registry::new(); // in practice: every translator type known
//! let vol = Volume::from_volfile_path("/etc/weft/vol.vol".as_ref(), registry, OpenOptions::default()).await?;
//! vol.mkdir("/reports", 0o755).await?;
//! vol.write_file("/reports/today.txt", b"hello").await?;
//! assert_eq!(&vol.read_file("/reports/today.txt").await?[..], b"hello");
//! vol.close().await;
//! # Ok(()) }
//! ```
//!
//! # Paths
//!
//! Every path-taking method accepts `impl AsRef<Path>` (`&str`, `&Path`, `&OsStr`, ...)
//! and treats it as bytes: a name may hold any byte but `/` and NUL, UTF-8 or not
//! (`OsStr::from_bytes(b"caf\xe9")` works). Paths resolve from the volume root, one lookup
//! per component, as POSIX resolves them without symlinks:
//! - a path must be absolute (start with `/`) and hold no NUL byte, else EINVAL;
//! - empty components (`a//b`) and `.` are skipped;
//! - `..` goes back to the directory the walk came from, after checking that the component
//!   it leaves exists (ENOENT) and is a directory (ENOTDIR); `..` of the root is the root.
//!   Symlinks are never followed, so this is the directory's real parent;
//! - a name longer than 255 bytes is ENAMETOOLONG;
//! - a symlink or other non-directory in the middle of a path is ENOTDIR;
//! - a trailing slash (or a final `.` or `..`) means the final component must be a
//!   directory: on a non-directory it is ENOTDIR (`open("/file/")`, `unlink("/file/")`),
//!   while `mkdir("/d/")` works and `create("/f/")` is EISDIR, as with open(2) and O_CREAT.
//!   What each operation answers for a final `.`, `..` or the root follows Linux (see
//!   each method).

mod file;
pub mod mgmt;
mod path;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use weft_core::volfile::{Volfile, VolfileError};
use weft_core::{
    Ctx, Dirent, Errno, Event, Fd, Graph, Iatt, Loc, Registry, SetAttr, StatVfs, Upcall, XattrMap,
    Xdata, XlatorRef,
};

pub use file::File;
pub use mgmt::{
    fetch_volfile, poll_volfile, FetchError, FetchedVolfile, VolfileServer, VolumeSpec,
};
use path::{NotNamed, Resolved};
pub use weft_core::{ReconfigureError, Reconfigured};

/// Why a volume could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The volfile could not be read.
    #[error("cannot read volfile {0}: {1}")]
    Read(PathBuf, std::io::Error),
    /// The volfile is malformed or its graph cannot be built.
    #[error("volfile: {0}")]
    Volfile(#[from] VolfileError),
    /// The graph was built but did not come up (no brick reachable, or refused).
    #[error("volume is not available: {0}")]
    NotUp(String),
}

/// A FOP on a path failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} {path}: {errno}")]
pub struct Error {
    /// The operation (`mkdir`, `open`, ...).
    pub op: &'static str,
    /// The path it was given, for messages: bytes that are not UTF-8 show as U+FFFD.
    pub path: String,
    /// Why it failed.
    pub errno: Errno,
}

/// The result of a path operation.
pub type Result<T> = std::result::Result<T, Error>;

/// How to open a volume.
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// How long to wait for the volume to come up (its bricks to connect).
    pub connect_timeout: Duration,
    /// Who the FOPs run as (uid, gid); root by default.
    pub ctx: Ctx,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            connect_timeout: Duration::from_secs(15),
            ctx: Ctx::internal(),
        }
    }
}

/// What the volume's top translator last said about being able to serve.
#[derive(Clone, Debug, Default)]
struct Health {
    up: bool,
    /// Set once the top has reported up or down at least once.
    known: bool,
    errors: Vec<String>,
}

/// An open volume. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Volume {
    graph: Arc<Graph>,
    /// The translator types the graph was built from (for [`Volume::reconfigure`]).
    registry: Registry,
    ctx: Ctx,
    health: watch::Receiver<Health>,
    events: Mutex<Option<tokio::task::JoinHandle<()>>>,
    upcalls: UpcallHandlerSlot,
}

/// What a front end does with the invalidations that come out of the top of the graph
/// (see [`Volume::on_upcall`]).
pub type UpcallHandler = Arc<dyn Fn(Upcall) + Send + Sync>;

type UpcallHandlerSlot = Arc<Mutex<Option<UpcallHandler>>>;

impl Volume {
    /// Opens the volume described by the volfile at `path`.
    pub async fn from_volfile_path(
        path: &Path,
        registry: Registry,
        opts: OpenOptions,
    ) -> std::result::Result<Volume, OpenError> {
        let text = std::fs::read_to_string(path).map_err(|e| OpenError::Read(path.into(), e))?;
        Volume::from_volfile(&text, registry, opts).await
    }

    /// Builds the graph of `volfile` (translator types from `registry`), starts its
    /// connections, and waits until it can serve (up to `opts.connect_timeout`). A graph
    /// with no network translator is up at once.
    pub async fn from_volfile(
        volfile: &str,
        registry: Registry,
        opts: OpenOptions,
    ) -> std::result::Result<Volume, OpenError> {
        let vf = Volfile::parse(volfile)?;
        let graph = Arc::new(Graph::build(&vf, &registry)?);
        let remote = graph.has_type("protocol/client");
        let (tx, mut health) = watch::channel(Health {
            up: !remote,
            known: !remote,
            errors: Vec::new(),
        });
        let mut rx = graph.take_events().expect("fresh graph");
        let g = graph.clone();
        let upcalls: UpcallHandlerSlot = Arc::new(Mutex::new(None));
        let handler = upcalls.clone();
        let events = tokio::spawn(async move {
            while let Some((from, ev)) = rx.recv().await {
                for out in g.notify(&from, ev).await {
                    if let Event::Upcall(u) = out {
                        // The handler keeps the ack for as long as its own work needs.
                        let h = handler.lock().clone();
                        if let Some(h) = h {
                            h(u);
                        }
                        continue;
                    }
                    tx.send_modify(|h| match out {
                        Event::ChildUp(_) => {
                            h.up = true;
                            h.known = true;
                        }
                        Event::ChildDown(_) => {
                            h.up = false;
                            h.known = true;
                        }
                        Event::ChildError(child, why) => {
                            h.errors.push(format!("{child}: {why}"));
                            if h.errors.len() > 16 {
                                h.errors.remove(0);
                            }
                        }
                        Event::Shutdown | Event::Upcall(_) => {}
                    });
                }
            }
        });
        let vol = Volume {
            graph,
            registry,
            ctx: opts.ctx,
            health: health.clone(),
            events: Mutex::new(Some(events)),
            upcalls,
        };
        // Only whether it came up in time: the borrow of the state it holds is not Send.
        let waited = tokio::time::timeout(opts.connect_timeout, health.wait_for(|h| h.known))
            .await
            .map(|r| r.is_ok());
        let h = vol.health.borrow().clone();
        if waited.is_err() || !h.up {
            let why = if h.errors.is_empty() {
                format!("no brick came up within {:?}", opts.connect_timeout)
            } else {
                h.errors.join("; ")
            };
            vol.close().await;
            return Err(OpenError::NotUp(why));
        }
        Ok(vol)
    }

    /// The translator graph (for front ends that work by gfid, like FUSE).
    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    /// Applies the options of `volfile` live, while FOPs go on: every translator whose
    /// options differ is reconfigured (see [`Graph::reconfigure`]). A volfile whose graph
    /// has another shape (translators added, removed, retyped or rewired) is refused with
    /// [`ReconfigureError::Shape`]: it needs a new graph.
    pub async fn reconfigure(
        &self,
        volfile: &str,
    ) -> std::result::Result<Reconfigured, ReconfigureError> {
        let vf = Volfile::parse(volfile).map_err(ReconfigureError::Invalid)?;
        self.graph.reconfigure(&vf, &self.registry).await
    }

    /// Hands every invalidation that comes out of the top of the graph (the caches in the
    /// graph have dropped what it names) to `handler`, which drops the front end's own
    /// copies (the kernel's, for a FUSE mount). The brick that sent it hears back when
    /// the handler has dropped the [`Upcall`]'s ack (it may keep a clone while it works).
    /// Replaces any earlier handler; without one, invalidations end at the top.
    pub fn on_upcall(&self, handler: UpcallHandler) {
        *self.upcalls.lock() = Some(handler);
    }

    /// The top translator, where FOPs go in.
    pub fn top(&self) -> &XlatorRef {
        self.graph.top()
    }

    /// True while the volume can serve (its bricks are connected).
    pub fn is_up(&self) -> bool {
        self.health.borrow().up
    }

    /// Tears the graph down: connections close, translators finish.
    pub async fn close(&self) {
        self.graph.fini().await;
        if let Some(t) = self.events.lock().take() {
            t.abort();
        }
    }

    pub(crate) fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    fn err<'a>(op: &'static str, path: &'a Path) -> impl Fn(Errno) -> Error + 'a {
        move |errno| Error {
            op,
            path: path.display().to_string(),
            errno,
        }
    }

    /// Why a non-directory cannot be made at `loc`, a path that ended in a slash (as
    /// Linux's symlink(2) and link(2) say): EEXIST if the name exists, else ENOENT.
    async fn slashed_new(&self, loc: &Loc) -> Errno {
        match self.top().lookup(&self.ctx, loc, Xdata::new()).await {
            Ok(_) => Errno::EEXIST,
            Err(e) => e,
        }
    }

    /// Resolves `path` to its location (gfid known) and attributes.
    pub async fn lookup(&self, path: impl AsRef<Path>) -> Result<(Loc, Iatt)> {
        let path = path.as_ref();
        let r = path::resolve(self, path).await;
        r.map(|r| (r.loc, r.ia)).map_err(Self::err("lookup", path))
    }

    /// Attributes of `path` (not following a final symlink).
    pub async fn stat(&self, path: impl AsRef<Path>) -> Result<Iatt> {
        Ok(self.lookup(path).await?.1)
    }

    /// Creates directory `path` with permission bits `mode` (a trailing slash is fine; the
    /// root, `.` or `..` as the final component is EEXIST).
    pub async fn mkdir(&self, path: impl AsRef<Path>, mode: u32) -> Result<Iatt> {
        let path = path.as_ref();
        let e = Self::err("mkdir", path);
        let (loc, _) = path::parent_loc(self, path, &NotNamed::all(Errno::EEXIST))
            .await
            .map_err(&e)?;
        let (_, xd) = weft_core::gfid_req_xdata();
        let r = self.top().mkdir(&self.ctx, &loc, mode, 0, xd).await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// Removes the empty directory `path` (as rmdir(2): the root is EBUSY, a final `.`
    /// EINVAL, a final `..` ENOTEMPTY).
    pub async fn rmdir(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let e = Self::err("rmdir", path);
        let nn = NotNamed {
            root: Errno(libc::EBUSY),
            dot: Errno::EINVAL,
            dotdot: Errno::ENOTEMPTY,
        };
        let r = path::entry_loc(self, path, &nn, false).await.map_err(&e)?;
        self.top()
            .rmdir(&self.ctx, &r.loc, Xdata::new())
            .await
            .map(|_| ())
            .map_err(e)
    }

    /// Removes the name `path` (not a directory: EISDIR; with a trailing slash, ENOTDIR
    /// for a non-directory).
    pub async fn unlink(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let e = Self::err("unlink", path);
        let r = path::entry_loc(self, path, &NotNamed::all(Errno::EISDIR), false)
            .await
            .map_err(&e)?;
        self.top()
            .unlink(&self.ctx, &r.loc, Xdata::new())
            .await
            .map(|_| ())
            .map_err(e)
    }

    /// Renames `from` to `to`, replacing `to` if it exists (rename(2): a trailing slash on
    /// either path is ENOTDIR when `from` is not a directory; the root, `.` or `..` as
    /// either final component is EBUSY).
    pub async fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (from, to) = (from.as_ref(), to.as_ref());
        let e = Self::err("rename", from);
        let busy = NotNamed::all(Errno(libc::EBUSY));
        let old = path::entry_loc(self, from, &busy, true).await.map_err(&e)?;
        let (mut new, new_slash) = path::parent_loc(self, to, &busy).await.map_err(&e)?;
        if !old.ia.is_dir() && (old.slash || new_slash) {
            return Err(e(Errno::ENOTDIR));
        }
        if let Ok((ia, _)) = self.top().lookup(&self.ctx, &new, Xdata::new()).await {
            new.gfid = Some(ia.gfid);
        }
        let r = self
            .top()
            .rename(&self.ctx, &old.loc, &new, 0, Xdata::new())
            .await;
        r.map(|_| ()).map_err(e)
    }

    /// Makes `path` a symlink to `target` (any bytes but NUL, at most 4095; never
    /// resolved by this library).
    pub async fn symlink(&self, target: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<Iatt> {
        let (target, path) = (target.as_ref(), path.as_ref());
        let e = Self::err("symlink", path);
        let t = target.as_os_str().as_bytes();
        if t.is_empty() {
            return Err(e(Errno::ENOENT));
        }
        if t.contains(&0) {
            return Err(e(Errno::EINVAL));
        }
        if t.len() >= PATH_MAX {
            return Err(e(Errno::ENAMETOOLONG));
        }
        let (loc, slash) = path::parent_loc(self, path, &NotNamed::all(Errno::EEXIST))
            .await
            .map_err(&e)?;
        if slash {
            return Err(e(self.slashed_new(&loc).await));
        }
        let (_, xd) = weft_core::gfid_req_xdata();
        let r = self.top().symlink(&self.ctx, target, &loc, 0, xd).await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// The target of symlink `path` (bytes, as stored).
    pub async fn readlink(&self, path: impl AsRef<Path>) -> Result<PathBuf> {
        let path = path.as_ref();
        let e = Self::err("readlink", path);
        let r = path::resolve(self, path).await.map_err(&e)?;
        let r = self.top().readlink(&self.ctx, &r.loc, Xdata::new()).await;
        r.map(|(p, _)| p).map_err(e)
    }

    /// Gives the inode at `existing` the additional name `new` (a trailing slash on `new`
    /// is EEXIST if it exists, else ENOENT, as link(2) says).
    pub async fn link(&self, existing: impl AsRef<Path>, new: impl AsRef<Path>) -> Result<Iatt> {
        let (existing, new) = (existing.as_ref(), new.as_ref());
        let e = Self::err("link", new);
        let old = path::resolve(self, existing).await.map_err(&e)?;
        let (loc, slash) = path::parent_loc(self, new, &NotNamed::all(Errno::EEXIST))
            .await
            .map_err(&e)?;
        if slash {
            return Err(e(self.slashed_new(&loc).await));
        }
        let r = self
            .top()
            .link(&self.ctx, &old.loc, &loc, Xdata::new())
            .await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// Changes the attributes `attr` names (mode, owner, size, times).
    pub async fn setattr(&self, path: impl AsRef<Path>, attr: &SetAttr) -> Result<Iatt> {
        let path = path.as_ref();
        let e = Self::err("setattr", path);
        let r = path::resolve(self, path).await.map_err(&e)?;
        let r = self
            .top()
            .setattr(&self.ctx, &r.loc, attr, Xdata::new())
            .await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// Filesystem statistics of the volume, asked at `path`.
    pub async fn statfs(&self, path: impl AsRef<Path>) -> Result<StatVfs> {
        let path = path.as_ref();
        let e = Self::err("statfs", path);
        let r = path::resolve(self, path).await.map_err(&e)?;
        let r = self.top().statfs(&self.ctx, &r.loc, Xdata::new()).await;
        r.map(|(s, _)| s).map_err(e)
    }

    /// The value of xattr `name` on `path`.
    pub async fn getxattr(&self, path: impl AsRef<Path>, name: &str) -> Result<Vec<u8>> {
        let path = path.as_ref();
        let e = Self::err("getxattr", path);
        let r = path::resolve(self, path).await.map_err(&e)?;
        let (mut m, _) = self
            .top()
            .getxattr(&self.ctx, &r.loc, Some(name), Xdata::new())
            .await
            .map_err(&e)?;
        m.remove(name).ok_or(Errno::ENODATA).map_err(e)
    }

    /// The names of every xattr on `path`.
    pub async fn listxattr(&self, path: impl AsRef<Path>) -> Result<Vec<String>> {
        let path = path.as_ref();
        let e = Self::err("listxattr", path);
        let r = path::resolve(self, path).await.map_err(&e)?;
        let r = self
            .top()
            .getxattr(&self.ctx, &r.loc, None, Xdata::new())
            .await;
        r.map(|(m, _)| m.into_keys().collect()).map_err(e)
    }

    /// Sets xattr `name` on `path` (`flags`: 0, XATTR_CREATE or XATTR_REPLACE).
    pub async fn setxattr(
        &self,
        path: impl AsRef<Path>,
        name: &str,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        let path = path.as_ref();
        let e = Self::err("setxattr", path);
        let r = path::resolve(self, path).await.map_err(&e)?;
        let mut m = XattrMap::new();
        m.insert(name.to_string(), value.to_vec());
        let r = self
            .top()
            .setxattr(&self.ctx, &r.loc, &m, flags, Xdata::new())
            .await;
        r.map(|_| ()).map_err(e)
    }

    /// Removes xattr `name` from `path`.
    pub async fn removexattr(&self, path: impl AsRef<Path>, name: &str) -> Result<()> {
        let path = path.as_ref();
        let e = Self::err("removexattr", path);
        let r = path::resolve(self, path).await.map_err(&e)?;
        let r = self
            .top()
            .removexattr(&self.ctx, &r.loc, name, Xdata::new())
            .await;
        r.map(|_| ()).map_err(e)
    }

    /// Every entry of directory `path` except `.` and `..`, with attributes; names are the
    /// exact bytes stored.
    pub async fn readdir(&self, path: impl AsRef<Path>) -> Result<Vec<Dirent>> {
        let path = path.as_ref();
        let e = Self::err("readdir", path);
        let Resolved { loc, ia, .. } = path::resolve(self, path).await.map_err(&e)?;
        if !ia.is_dir() {
            return Err(e(Errno::ENOTDIR));
        }
        let fd = Fd::new(ia.gfid, libc::O_RDONLY | libc::O_DIRECTORY, true);
        self.top()
            .opendir(&self.ctx, &loc, &fd, Xdata::new())
            .await
            .map_err(&e)?;
        let mut out = Vec::new();
        let mut offset = 0;
        let r = loop {
            match self
                .top()
                .readdirp(&self.ctx, &fd, 64 * 1024, offset, Xdata::new())
                .await
            {
                Ok((batch, _)) if batch.is_empty() => break Ok(()),
                Ok((batch, _)) => {
                    offset = batch.last().map(|d| d.offset).unwrap_or(offset);
                    out.extend(
                        batch
                            .into_iter()
                            .filter(|d| d.name != b"." && d.name != b".."),
                    );
                }
                Err(err) => break Err(err),
            }
        };
        let _ = self.top().releasedir(&self.ctx, &fd, Xdata::new()).await;
        r.map(|_| out).map_err(e)
    }

    /// Opens the existing file `path` with open(2) `flags` (O_RDONLY, O_RDWR, O_APPEND,
    /// ...; O_CREAT is ignored: see [`Volume::create`]). A directory is EISDIR; a trailing
    /// slash on a file is ENOTDIR.
    pub async fn open(&self, path: impl AsRef<Path>, flags: i32) -> Result<File<'_>> {
        let path = path.as_ref();
        let e = Self::err("open", path);
        let Resolved { loc, ia, .. } = path::resolve(self, path).await.map_err(&e)?;
        if ia.is_dir() {
            return Err(e(Errno::EISDIR));
        }
        let fd = Fd::new(ia.gfid, flags & !(libc::O_CREAT | libc::O_EXCL), false);
        self.top()
            .open(&self.ctx, &loc, &fd, Xdata::new())
            .await
            .map_err(&e)?;
        Ok(File::new(self, fd, path))
    }

    /// Creates and opens the file `path`, as open(2) with O_CREAT and `flags`: with O_EXCL
    /// an existing name fails with EEXIST; without it an existing file is opened (and
    /// truncated with O_TRUNC) in the same FOP. The returned [`File`] is always keyed by
    /// the gfid the brick answered with (see [`File::gfid`]), so two clients creating one
    /// name at once share the inode and its locks. A trailing slash, or a final `.` or
    /// `..`, is EISDIR.
    pub async fn create(&self, path: impl AsRef<Path>, flags: i32, mode: u32) -> Result<File<'_>> {
        let path = path.as_ref();
        let e = Self::err("create", path);
        let (loc, slash) = path::parent_loc(self, path, &NotNamed::all(Errno::EISDIR))
            .await
            .map_err(&e)?;
        if slash {
            return Err(e(Errno::EISDIR));
        }
        let mut retries = 0;
        loop {
            let (gfid, xd) = weft_core::gfid_req_xdata();
            let fd = Fd::new(gfid, flags | libc::O_CREAT, false);
            let (ia, _) = self
                .top()
                .create(&self.ctx, &loc, &fd, mode, 0, xd)
                .await
                .map_err(&e)?;
            if ia.gfid == gfid {
                return Ok(File::new(self, fd, path));
            }
            // The name existed (no O_EXCL): the bricks opened (and, for O_TRUNC, truncated)
            // that inode under an fd keyed by our proposed gfid. Locks and every
            // translator's fd state go by the fd's gfid, so reopen under the inode's own.
            let _ = self.top().release(&self.ctx, &fd, Xdata::new()).await;
            let flags = flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
            let fd = Fd::new(ia.gfid, flags, false);
            let at = loc.clone().with_gfid(ia.gfid);
            match self.top().open(&self.ctx, &at, &fd, Xdata::new()).await {
                Ok(_) => return Ok(File::new(self, fd, path)),
                // Removed or replaced since: create again, as open(2) would have.
                Err(err) if (err == Errno::ESTALE || err == Errno::ENOENT) && retries < 3 => {
                    retries += 1;
                }
                Err(err) => return Err(e(err)),
            }
        }
    }

    /// The whole content of file `path`.
    pub async fn read_file(&self, path: impl AsRef<Path>) -> Result<Bytes> {
        let f = self.open(path, libc::O_RDONLY).await?;
        let r = f.read_to_end().await;
        f.close().await?;
        r
    }

    /// Replaces the content of `path` with `data`, creating it (mode 0644) if needed;
    /// durable (fsync'd) when this returns.
    pub async fn write_file(&self, path: impl AsRef<Path>, data: &[u8]) -> Result<()> {
        let f = self
            .create(path, libc::O_WRONLY | libc::O_TRUNC, 0o644)
            .await?;
        let r = async {
            f.write_all(0, data).await?;
            f.fsync().await
        }
        .await;
        f.close().await?;
        r
    }
}

/// The longest symlink target in bytes plus one (Linux's PATH_MAX counts the NUL).
const PATH_MAX: usize = 4096;
