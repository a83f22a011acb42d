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
//! Paths are absolute within the volume; `.` and `..` components are refused and symlinks
//! are not followed (a symlink inside a path is ENOTDIR, as with `O_NOFOLLOW`-style APIs).

mod file;
mod path;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::watch;
use weft_core::volfile::{Volfile, VolfileError};
use weft_core::{
    Ctx, Dirent, Errno, Event, Fd, Gfid, Graph, Iatt, Loc, Registry, SetAttr, StatVfs, XattrMap,
    Xdata, XlatorRef, GFID_REQ_KEY,
};

pub use file::File;

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
    /// The path it was given.
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
    ctx: Ctx,
    health: watch::Receiver<Health>,
    events: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

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
        let events = tokio::spawn(async move {
            while let Some((from, ev)) = rx.recv().await {
                for out in g.notify(&from, ev).await {
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
                        Event::Shutdown => {}
                    });
                }
            }
        });
        let vol = Volume {
            graph,
            ctx: opts.ctx,
            health: health.clone(),
            events: Mutex::new(Some(events)),
        };
        let waited = tokio::time::timeout(opts.connect_timeout, health.wait_for(|h| h.known)).await;
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

    fn err<'a>(op: &'static str, path: &'a str) -> impl Fn(Errno) -> Error + 'a {
        move |errno| Error {
            op,
            path: path.to_string(),
            errno,
        }
    }

    /// Resolves `path` to its location (gfid known) and attributes.
    pub async fn lookup(&self, path: &str) -> Result<(Loc, Iatt)> {
        path::resolve(self, path)
            .await
            .map_err(Self::err("lookup", path))
    }

    /// Attributes of `path` (not following a final symlink).
    pub async fn stat(&self, path: &str) -> Result<Iatt> {
        Ok(self.lookup(path).await?.1)
    }

    /// Creates directory `path` with permission bits `mode`.
    pub async fn mkdir(&self, path: &str, mode: u32) -> Result<Iatt> {
        let e = Self::err("mkdir", path);
        let loc = path::parent_loc(self, path).await.map_err(&e)?;
        let (_, xd) = new_gfid_xdata();
        let r = self.top().mkdir(&self.ctx, &loc, mode, 0, xd).await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// Removes the empty directory `path`.
    pub async fn rmdir(&self, path: &str) -> Result<()> {
        let e = Self::err("rmdir", path);
        let loc = path::entry_loc(self, path).await.map_err(&e)?;
        self.top()
            .rmdir(&self.ctx, &loc, Xdata::new())
            .await
            .map(|_| ())
            .map_err(e)
    }

    /// Removes the name `path` (not a directory).
    pub async fn unlink(&self, path: &str) -> Result<()> {
        let e = Self::err("unlink", path);
        let loc = path::entry_loc(self, path).await.map_err(&e)?;
        self.top()
            .unlink(&self.ctx, &loc, Xdata::new())
            .await
            .map(|_| ())
            .map_err(e)
    }

    /// Renames `from` to `to`, replacing `to` if it exists (rename(2)).
    pub async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let e = Self::err("rename", from);
        let old = path::entry_loc(self, from).await.map_err(&e)?;
        let mut new = path::parent_loc(self, to).await.map_err(&e)?;
        if let Ok((l, _)) = path::resolve(self, to).await {
            new.gfid = l.gfid;
        }
        let r = self
            .top()
            .rename(&self.ctx, &old, &new, 0, Xdata::new())
            .await;
        r.map(|_| ()).map_err(e)
    }

    /// Makes `path` a symlink to `target`.
    pub async fn symlink(&self, target: &str, path: &str) -> Result<Iatt> {
        let e = Self::err("symlink", path);
        let loc = path::parent_loc(self, path).await.map_err(&e)?;
        let (_, xd) = new_gfid_xdata();
        let r = self
            .top()
            .symlink(&self.ctx, Path::new(target), &loc, 0, xd)
            .await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// The target of symlink `path`.
    pub async fn readlink(&self, path: &str) -> Result<PathBuf> {
        let e = Self::err("readlink", path);
        let (loc, _) = path::resolve(self, path).await.map_err(&e)?;
        let r = self.top().readlink(&self.ctx, &loc, Xdata::new()).await;
        r.map(|(p, _)| p).map_err(e)
    }

    /// Gives the inode at `existing` the additional name `new`.
    pub async fn link(&self, existing: &str, new: &str) -> Result<Iatt> {
        let e = Self::err("link", new);
        let (old, _) = path::resolve(self, existing).await.map_err(&e)?;
        let loc = path::parent_loc(self, new).await.map_err(&e)?;
        let r = self.top().link(&self.ctx, &old, &loc, Xdata::new()).await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// Changes the attributes `attr` names (mode, owner, size, times).
    pub async fn setattr(&self, path: &str, attr: &SetAttr) -> Result<Iatt> {
        let e = Self::err("setattr", path);
        let (loc, _) = path::resolve(self, path).await.map_err(&e)?;
        let r = self
            .top()
            .setattr(&self.ctx, &loc, attr, Xdata::new())
            .await;
        r.map(|(ia, _)| ia).map_err(e)
    }

    /// Filesystem statistics of the volume.
    pub async fn statfs(&self, path: &str) -> Result<StatVfs> {
        let e = Self::err("statfs", path);
        let (loc, _) = path::resolve(self, path).await.map_err(&e)?;
        let r = self.top().statfs(&self.ctx, &loc, Xdata::new()).await;
        r.map(|(s, _)| s).map_err(e)
    }

    /// The value of xattr `name` on `path`.
    pub async fn getxattr(&self, path: &str, name: &str) -> Result<Vec<u8>> {
        let e = Self::err("getxattr", path);
        let (loc, _) = path::resolve(self, path).await.map_err(&e)?;
        let (mut m, _) = self
            .top()
            .getxattr(&self.ctx, &loc, Some(name), Xdata::new())
            .await
            .map_err(&e)?;
        m.remove(name).ok_or(Errno::ENODATA).map_err(e)
    }

    /// The names of every xattr on `path`.
    pub async fn listxattr(&self, path: &str) -> Result<Vec<String>> {
        let e = Self::err("listxattr", path);
        let (loc, _) = path::resolve(self, path).await.map_err(&e)?;
        let r = self
            .top()
            .getxattr(&self.ctx, &loc, None, Xdata::new())
            .await;
        r.map(|(m, _)| m.into_keys().collect()).map_err(e)
    }

    /// Sets xattr `name` on `path` (`flags`: 0, XATTR_CREATE or XATTR_REPLACE).
    pub async fn setxattr(&self, path: &str, name: &str, value: &[u8], flags: i32) -> Result<()> {
        let e = Self::err("setxattr", path);
        let (loc, _) = path::resolve(self, path).await.map_err(&e)?;
        let mut m = XattrMap::new();
        m.insert(name.to_string(), value.to_vec());
        let r = self
            .top()
            .setxattr(&self.ctx, &loc, &m, flags, Xdata::new())
            .await;
        r.map(|_| ()).map_err(e)
    }

    /// Removes xattr `name` from `path`.
    pub async fn removexattr(&self, path: &str, name: &str) -> Result<()> {
        let e = Self::err("removexattr", path);
        let (loc, _) = path::resolve(self, path).await.map_err(&e)?;
        let r = self
            .top()
            .removexattr(&self.ctx, &loc, name, Xdata::new())
            .await;
        r.map(|_| ()).map_err(e)
    }

    /// Every entry of directory `path` except `.` and `..`, with attributes.
    pub async fn readdir(&self, path: &str) -> Result<Vec<Dirent>> {
        let e = Self::err("readdir", path);
        let (loc, ia) = path::resolve(self, path).await.map_err(&e)?;
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

    /// Opens the existing file `path` with open(2) `flags` (O_RDONLY, O_RDWR, O_APPEND, ...).
    pub async fn open(&self, path: &str, flags: i32) -> Result<File<'_>> {
        let e = Self::err("open", path);
        let (loc, ia) = path::resolve(self, path).await.map_err(&e)?;
        if ia.is_dir() {
            return Err(e(Errno::EISDIR));
        }
        let fd = Fd::new(ia.gfid, flags & !libc::O_CREAT, false);
        self.top()
            .open(&self.ctx, &loc, &fd, Xdata::new())
            .await
            .map_err(&e)?;
        Ok(File::new(self, fd, path))
    }

    /// Creates and opens the file `path` (`flags` as for open(2); O_EXCL fails if it
    /// exists, otherwise an existing file is opened, and truncated with O_TRUNC).
    pub async fn create(&self, path: &str, flags: i32, mode: u32) -> Result<File<'_>> {
        let e = Self::err("create", path);
        if flags & libc::O_EXCL == 0 {
            if let Ok(f) = self.open(path, flags).await {
                if flags & libc::O_TRUNC != 0 {
                    if let Err(e) = f.truncate(0).await {
                        let _ = f.close().await;
                        return Err(e);
                    }
                }
                return Ok(f);
            }
        }
        let loc = path::parent_loc(self, path).await.map_err(&e)?;
        let (gfid, xd) = new_gfid_xdata();
        let fd = Fd::new(gfid, flags | libc::O_CREAT, false);
        self.top()
            .create(&self.ctx, &loc, &fd, mode, 0, xd)
            .await
            .map_err(&e)?;
        Ok(File::new(self, fd, path))
    }

    /// The whole content of file `path`.
    pub async fn read_file(&self, path: &str) -> Result<Bytes> {
        let f = self.open(path, libc::O_RDONLY).await?;
        let r = f.read_to_end().await;
        f.close().await?;
        r
    }

    /// Replaces the content of `path` with `data`, creating it (mode 0644) if needed;
    /// durable (fsync'd) when this returns.
    pub async fn write_file(&self, path: &str, data: &[u8]) -> Result<()> {
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

fn new_gfid_xdata() -> (Gfid, Xdata) {
    let g = Gfid::random();
    let mut xd = Xdata::new();
    xd.set(GFID_REQ_KEY, g.0.to_vec());
    (g, xd)
}
