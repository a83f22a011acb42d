//! `features/index`: the brick's list of inodes that need a heal (GlusterFS's index
//! translator, its "xattrop" index, simplified).
//!
//! Replication keeps, on every copy of an inode, counters of the changes a copy elsewhere
//! may have missed: the xattrs whose names start with [`PENDING_PREFIX`], changed only by
//! `xattrop`/`fxattrop`. This translator watches those calls and keeps, in the brick
//! directory, one name per inode whose counters are not all zero:
//! `<directory>/.weft/indices/pending/<gfid>` (see [`INDEX_DIR`]). A self-heal daemon
//! reads that list instead of crawling the brick. Each name is a hard link to one empty
//! file, [`INDEX_BASE`] (another when the filesystem's link limit is reached), as
//! GlusterFS's index does: every change in a replicated volume adds and removes an entry,
//! and a new inode for each made ext4 without a journal scan past every inode freed in
//! the last 30 s on each create, which cost more than the change itself.
//!
//! - An `xattrop` or `fxattrop` whose request names a counter goes down first; when it
//!   succeeds, the index entry of the inode exists afterwards if any counter in the reply
//!   (the new values) has a nonzero byte, and does not if they all are zero. The call and
//!   the index change happen under a lock per inode (striped), so two calls on one inode
//!   cannot leave the index out of step with the counters; once started, they finish even
//!   if the caller goes away. An index change that fails is logged and counted (see the
//!   statedump); the FOP still answers what the child answered, since its counters did
//!   change.
//! - Three virtual xattrs, answered here only when the request's xdata carries
//!   [`INTERNAL_XDATA_KEY`] (otherwise the call goes down unchanged), on any location
//!   (the root typically):
//!   - `getxattr` of [`INDEX_PENDING_XATTR`]: the pending gfids as text, sorted, one per
//!     line (joined by `\n`, no trailing newline), at most the option `list-max` of them,
//!     only those after the gfid in the request xdata's [`INDEX_AFTER_KEY`] when given;
//!     the reply xdata carries [`INDEX_MORE_KEY`] when more follow.
//!   - `getxattr` of [`INDEX_COUNT_XATTR`]: how many gfids are pending, in decimal.
//!   - `setxattr` of [`INDEX_FORGET_XATTR`], value a gfid as text: drops that gfid's
//!     entry if the inode is gone from the brick or none of its counters is nonzero any
//!     more, and keeps it otherwise (answering success either way).
//!
//! The entry follows the counters the reply carries, so an xattrop on counters must name
//! every counter of its inode (a zero operand for those it leaves alone), as
//! replication's do. Entries of inodes removed while pending stay until a heal forgets
//! them. Files in the index directory whose names are not canonical gfids are ignored.

use std::collections::BinaryHeap;
use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use weft_core::blocking::run_blocking;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;
use xxhash_rust::xxh3::xxh3_64;

use crate::distribute::INTERNAL_XDATA_KEY;

/// The prefix of the replication counters (one definition: `cluster/replicate`'s).
pub use crate::replicate::changelog::PENDING_PREFIX;

/// The virtual xattr listing the pending gfids (see the [module docs](self)).
pub const INDEX_PENDING_XATTR: &str = "weft.index.pending";
/// The virtual xattr counting the pending gfids (decimal text).
pub const INDEX_COUNT_XATTR: &str = "weft.index.count";
/// The virtual xattr whose `setxattr` (value: a gfid as text) drops an entry that is no
/// longer pending.
pub const INDEX_FORGET_XATTR: &str = "weft.index.forget";
/// Request xdata key of a [`INDEX_PENDING_XATTR`] listing: a gfid as text; only gfids
/// sorted after it are listed.
pub const INDEX_AFTER_KEY: &str = "weft.index.after";
/// Reply xdata key (empty value) of a [`INDEX_PENDING_XATTR`] listing: more gfids follow
/// the last one listed.
pub const INDEX_MORE_KEY: &str = "weft.index.more";

/// Where the index lives, relative to the brick directory.
pub const INDEX_DIR: &str = ".weft/indices/pending";

/// The empty file, in the index directory, that every entry is a hard link to (its name is
/// not a gfid, so listings skip it).
pub const INDEX_BASE: &str = "base";

/// The default of the option `list-max`: the most gfids one listing returns.
pub const DEFAULT_LIST_MAX: usize = 10_000;

/// How many locks the inodes are spread over.
const STRIPES: usize = 64;

/// What the translator's FOPs and its spawned work share.
struct Shared {
    name: String,
    /// The index directory.
    dir: PathBuf,
    /// Index changes that failed since start.
    failures: AtomicU64,
}

impl Shared {
    /// Makes the entry of `g` exist (`pending`) or not; failures are logged and counted.
    async fn set(
        self: &Arc<Self>,
        g: Gfid,
        pending: bool,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let me = self.clone();
        let r = run_blocking(move || {
            let _held = guard;
            if pending {
                add_entry(&me.dir, g)
            } else {
                remove_entry(&me.dir, g).map(|_| ())
            }
        })
        .await;
        if let Err(e) = r {
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                "{}: cannot {} the index entry of {g} in {}: {e}",
                self.name,
                if pending { "create" } else { "remove" },
                self.dir.display()
            );
        }
    }
}

/// The `features/index` translator. See the [module docs](self).
pub struct Index {
    shared: Arc<Shared>,
    children: Vec<XlatorRef>,
    /// The brick directory (the option `directory`).
    brick: PathBuf,
    list_max: AtomicUsize,
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
}

impl Index {
    /// An index translator named `name` over its one child, for the brick directory
    /// `brick` (which must exist), listing at most `list_max` gfids at a time. Creates the
    /// index directory; the error says why it cannot.
    pub fn new(
        name: String,
        children: Vec<XlatorRef>,
        brick: &Path,
        list_max: usize,
    ) -> Result<Index, String> {
        match std::fs::metadata(brick) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(format!("{} is not a directory", brick.display())),
            Err(e) => return Err(format!("brick directory {}: {e}", brick.display())),
        }
        let dir = brick.join(INDEX_DIR);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create the index directory {}: {e}", dir.display()))?;
        Ok(Index {
            shared: Arc::new(Shared {
                name,
                dir,
                failures: AtomicU64::new(0),
            }),
            children,
            brick: brick.to_path_buf(),
            list_max: AtomicUsize::new(list_max.max(1)),
            stripes: (0..STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
        })
    }

    /// The directory holding the index entries.
    pub fn index_dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The lock of `g`'s stripe.
    fn stripe(&self, g: Gfid) -> Arc<tokio::sync::Mutex<()>> {
        self.stripes[xxh3_64(&g.0) as usize % self.stripes.len()].clone()
    }

    /// Runs `call`, an xattrop naming a counter of inode `g`, under `g`'s lock, then
    /// brings `g`'s index entry in step with the counters it returns (just runs `call`
    /// when `g` is unknown). Once started, the call and the index change finish even if
    /// the caller goes away.
    async fn tracked<F>(&self, g: Option<Gfid>, call: F) -> Fop<XattrMap>
    where
        F: Future<Output = Fop<XattrMap>> + Send + 'static,
    {
        let Some(g) = g.filter(|g| !g.is_null()) else {
            return call.await;
        };
        let lock = self.stripe(g);
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let guard = lock.lock_owned().await;
            let r = call.await;
            if let Ok((values, _)) = &r {
                if let Some(pending) = any_pending(values) {
                    shared.set(g, pending, guard).await;
                }
            }
            r
        });
        task.await.unwrap_or_else(|e| {
            tracing::error!("{}: an xattrop task failed: {e}", self.shared.name);
            Err(Errno::EIO)
        })
    }

    /// The [`INDEX_PENDING_XATTR`] listing.
    async fn list(&self, xd: &Xdata) -> Fop<XattrMap> {
        let after = match xd.get(INDEX_AFTER_KEY) {
            Some(v) => Some(parse_gfid_text(v)?),
            None => None,
        };
        let max = self.list_max.load(Ordering::Relaxed);
        let dir = self.shared.dir.clone();
        let (gfids, more) = run_blocking(move || scan(&dir, after, max)).await?;
        let text = gfids
            .iter()
            .map(Gfid::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = XattrMap::new();
        out.insert(INDEX_PENDING_XATTR.to_string(), text.into_bytes());
        let mut rxd = Xdata::new();
        if more {
            rxd.set(INDEX_MORE_KEY, Vec::new());
        }
        Ok((out, rxd))
    }

    /// The [`INDEX_COUNT_XATTR`] answer.
    async fn count(&self) -> Fop<XattrMap> {
        let dir = self.shared.dir.clone();
        let n = run_blocking(move || count_entries(&dir)).await?;
        let mut out = XattrMap::new();
        out.insert(INDEX_COUNT_XATTR.to_string(), n.to_string().into_bytes());
        Ok((out, Xdata::new()))
    }

    /// [`INDEX_FORGET_XATTR`]: drops the entry of the gfid `value` names unless the inode
    /// is still there with a nonzero counter.
    async fn forget(&self, ctx: &Ctx, value: &[u8]) -> Result<(), Errno> {
        let g = parse_gfid_text(value)?;
        if g.is_null() {
            return Err(Errno::EINVAL);
        }
        let guard = self.stripe(g).lock_owned().await;
        let dir = self.shared.dir.clone();
        let d = dir.clone();
        if !run_blocking(move || has_entry(&d, g)).await? {
            return Ok(());
        }
        let child = self.child()?;
        let loc = Loc::inode(g);
        let gone = |e: Errno| e == Errno::ENOENT || e == Errno::ESTALE;
        let drop_it = match child.lookup(ctx, &loc, internal_xdata()).await {
            Err(e) if gone(e) => true,
            Err(e) => return Err(e),
            Ok(_) => match child.getxattr(ctx, &loc, None, internal_xdata()).await {
                Err(e) if gone(e) => true,
                Err(e) => return Err(e),
                Ok((values, _)) => any_pending(&values) != Some(true),
            },
        };
        if drop_it {
            run_blocking(move || {
                let _held = guard;
                remove_entry(&dir, g)
            })
            .await?;
            tracing::debug!("{}: {g} is no longer pending", self.shared.name);
        }
        Ok(())
    }
}

/// Request xdata that reaches `trusted.weft.*` xattrs below.
fn internal_xdata() -> Xdata {
    let mut x = Xdata::new();
    x.set(INTERNAL_XDATA_KEY, Vec::new());
    x
}

/// True when `attrs` names a pending counter.
fn names_counter(attrs: &XattrMap) -> bool {
    attrs.keys().any(|k| k.starts_with(PENDING_PREFIX))
}

/// Whether any pending counter in `values` has a nonzero byte; `None` when `values` holds
/// no counter at all.
fn any_pending(values: &XattrMap) -> Option<bool> {
    let mut counters = values
        .iter()
        .filter(|(k, _)| k.starts_with(PENDING_PREFIX))
        .peekable();
    counters.peek()?;
    Some(counters.any(|(_, v)| v.iter().any(|&b| b != 0)))
}

/// Takes a create's or release's [`WITH_XATTROP_PREFIX`] counters (replication counters only) out of
/// its xdata: the xattrop operand and the internal xdata (with the order) to apply them
/// with; `None` when it names none.
fn take_with_xattrop(xd: &mut Xdata) -> Option<(XattrMap, Xdata)> {
    let keys: Vec<String> =
        xd.0.keys()
            .filter(|k| k.starts_with(WITH_XATTROP_PREFIX))
            .cloned()
            .collect();
    let order = xd.0.remove(WITH_XATTROP_ORDER_KEY);
    let mut attrs = XattrMap::new();
    for k in keys {
        let v = xd.0.remove(&k)?;
        let name = &k[WITH_XATTROP_PREFIX.len()..];
        if name.starts_with(PENDING_PREFIX) {
            attrs.insert(name.to_string(), v);
        }
    }
    if attrs.is_empty() {
        return None;
    }
    let mut oxd = Xdata::new();
    oxd.set(INTERNAL_XDATA_KEY, Vec::new());
    if let Some(o) = order {
        oxd.set(XATTROP_ORDER_KEY, o);
    }
    Some((attrs, oxd))
}

/// A gfid given as text (surrounding whitespace allowed); `EINVAL` for anything else.
fn parse_gfid_text(v: &[u8]) -> Result<Gfid, Errno> {
    let s = std::str::from_utf8(v).map_err(|_| Errno::EINVAL)?;
    s.trim().parse().map_err(|_| Errno::EINVAL)
}

/// The gfid an index file name stands for: only canonical gfid text counts.
fn entry_gfid(name: &std::ffi::OsStr) -> Option<Gfid> {
    let s = name.to_str()?;
    let g: Gfid = s.parse().ok()?;
    (!g.is_null() && g.to_string() == s).then_some(g)
}

fn entry_path(dir: &Path, g: Gfid) -> PathBuf {
    dir.join(g.to_string())
}

/// Makes `g`'s entry exist: a hard link to [`INDEX_BASE`] (made again if someone removed
/// it), or an empty file of its own when the base has as many links as the filesystem
/// allows.
fn add_entry(dir: &Path, g: Gfid) -> Result<(), Errno> {
    let base = dir.join(INDEX_BASE);
    let entry = entry_path(dir, g);
    for _ in 0..2 {
        match std::fs::hard_link(&base, &entry) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => make_file(&base)?,
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => break,
            Err(e) => return Err(Errno::from_io(&e)),
        }
    }
    make_file(&entry)
}

/// Makes an empty file at `p`, or finds one there.
fn make_file(p: &Path) -> Result<(), Errno> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Errno::from_io(&e)),
    }
}

/// Removes `g`'s entry; false when there was none.
fn remove_entry(dir: &Path, g: Gfid) -> Result<bool, Errno> {
    match std::fs::remove_file(entry_path(dir, g)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Errno::from_io(&e)),
    }
}

fn has_entry(dir: &Path, g: Gfid) -> Result<bool, Errno> {
    match std::fs::symlink_metadata(entry_path(dir, g)) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Errno::from_io(&e)),
    }
}

/// Calls `f` with the gfid of every entry in `dir`.
fn each_entry(dir: &Path, mut f: impl FnMut(Gfid)) -> Result<(), Errno> {
    for e in std::fs::read_dir(dir).map_err(|e| Errno::from_io(&e))? {
        let e = e.map_err(|e| Errno::from_io(&e))?;
        if let Some(g) = entry_gfid(&e.file_name()) {
            f(g);
        }
    }
    Ok(())
}

/// The first `max` gfids of `dir` after `after`, sorted, and whether more follow. Keeps
/// at most `max + 1` of them in memory, however many there are. (A gfid's text sorts as
/// its bytes do.)
fn scan(dir: &Path, after: Option<Gfid>, max: usize) -> Result<(Vec<Gfid>, bool), Errno> {
    let keep = max.saturating_add(1);
    let mut heap = BinaryHeap::new();
    each_entry(dir, |g| {
        if after.is_some_and(|a| g <= a) {
            return;
        }
        heap.push(g);
        if heap.len() > keep {
            heap.pop();
        }
    })?;
    let mut v = heap.into_sorted_vec();
    let more = v.len() > max;
    v.truncate(max);
    Ok((v, more))
}

/// How many inodes the index of the brick directory `brick` lists as pending (0 when it
/// has no index), read straight from the directory: the self-heal daemon's cheap check.
pub fn pending_entries(brick: &Path) -> u64 {
    count_entries(&brick.join(INDEX_DIR)).unwrap_or(0)
}

fn count_entries(dir: &Path) -> Result<u64, Errno> {
    let mut n = 0u64;
    each_entry(dir, |_| n += 1)?;
    Ok(n)
}

impl Index {
    /// Applies counters taken from a create's or release's xdata ([`take_with_xattrop`])
    /// to inode `g`, through this translator's own xattrop (so the index follows).
    async fn apply_with_xattrop(
        &self,
        g: Gfid,
        (attrs, oxd): (XattrMap, Xdata),
    ) -> Result<(), Errno> {
        self.xattrop(
            &Ctx::internal(),
            &Loc::inode(g),
            XattropOp::AddArray32,
            &attrs,
            oxd,
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl Xlator for Index {
    fn name(&self) -> &str {
        &self.shared.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }
    fn dump(&self) -> String {
        let pending = match count_entries(&self.shared.dir) {
            Ok(n) => n.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        format!(
            "directory={}\npending={pending}\nlist_max={}\nindex_failures={}\n",
            self.shared.dir.display(),
            self.list_max.load(Ordering::Relaxed),
            self.shared.failures.load(Ordering::Relaxed),
        )
    }
    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        if options.path("directory") != self.brick {
            return Err("option directory cannot change while the brick runs".into());
        }
        let max = usize::try_from(options.int("list-max")).unwrap_or(DEFAULT_LIST_MAX);
        self.list_max.store(max.max(1), Ordering::Relaxed);
        Ok(())
    }

    /// A create carrying [`WITH_XATTROP_PREFIX`] counters gets them applied to the new
    /// inode right after it is made (an xattrop through this translator, so the index
    /// follows); the reply then carries [`WITH_XATTROP_DONE_KEY`].
    async fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        mut xd: Xdata,
    ) -> Fop<Iatt> {
        let pre = take_with_xattrop(&mut xd);
        let (ia, mut rxd) = self.child()?.create(ctx, loc, fd, mode, umask, xd).await?;
        if let Some(pre) = pre {
            match self.apply_with_xattrop(ia.gfid, pre).await {
                Ok(()) => rxd.set(WITH_XATTROP_DONE_KEY, Vec::new()),
                Err(e) => tracing::warn!(
                    "{}: the pre-op of new file {}: {e:?}",
                    self.shared.name,
                    ia.gfid
                ),
            }
        }
        Ok((ia, rxd))
    }

    /// A release carrying [`WITH_XATTROP_PREFIX`] counters first applies them to the fd's
    /// inode (the post-op of a replicate transaction it ends); the reply then carries
    /// [`WITH_XATTROP_DONE_KEY`]. When that fails, the lock the release would give back
    /// ([`WITH_INODELK_KEY`]) stays held: no one may take it with the counters still up.
    async fn release(&self, ctx: &Ctx, fd: &FdRef, mut xd: Xdata) -> Fop<()> {
        let post = take_with_xattrop(&mut xd);
        let asked = post.is_some();
        let done = match post {
            Some(post) => self.apply_with_xattrop(fd.gfid, post).await.is_ok(),
            None => false,
        };
        if asked && !done {
            // No post-op: the lock stays (its holder does the post-op, then gives it back).
            xd.0.remove(WITH_INODELK_KEY);
        }
        let (v, mut rxd) = self.child()?.release(ctx, fd, xd).await?;
        if done {
            rxd.set(WITH_XATTROP_DONE_KEY, Vec::new());
        }
        Ok((v, rxd))
    }

    async fn xattrop(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let child = self.child()?;
        if loc.gfid.is_none() || !names_counter(attrs) {
            return child.xattrop(ctx, loc, op, attrs, xd).await;
        }
        let (child, ctx, loc2, attrs) = (child.clone(), ctx.clone(), loc.clone(), attrs.clone());
        self.tracked(loc.gfid, async move {
            child.xattrop(&ctx, &loc2, op, &attrs, xd).await
        })
        .await
    }
    async fn fxattrop(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let child = self.child()?;
        if !names_counter(attrs) {
            return child.fxattrop(ctx, fd, op, attrs, xd).await;
        }
        let (child, ctx, fd2, attrs) = (child.clone(), ctx.clone(), fd.clone(), attrs.clone());
        self.tracked(Some(fd.gfid), async move {
            child.fxattrop(&ctx, &fd2, op, &attrs, xd).await
        })
        .await
    }
    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        if xd.has(INTERNAL_XDATA_KEY) {
            match name {
                Some(INDEX_PENDING_XATTR) => return self.list(&xd).await,
                Some(INDEX_COUNT_XATTR) => return self.count().await,
                _ => {}
            }
        }
        self.child()?.getxattr(ctx, loc, name, xd).await
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        if xd.has(INTERNAL_XDATA_KEY) {
            if let Some(v) = attrs.get(INDEX_FORGET_XATTR) {
                if attrs.len() != 1 {
                    return Err(Errno::EINVAL);
                }
                self.forget(ctx, v).await?;
                return Ok(((), Xdata::new()));
            }
        }
        self.child()?.setxattr(ctx, loc, attrs, flags, xd).await
    }
}

/// The `features/index` type for the registry.
pub struct IndexType;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "directory",
        kind: OptionKind::Path,
        default: None,
        description: "The brick directory (as storage/posix's); the index lives in its .weft/indices/pending.",
    },
    OptionSpec {
        key: "list-max",
        kind: OptionKind::Int {
            min: 1,
            max: 100_000,
        },
        default: Some("10000"),
        description: "The most gfids one listing of weft.index.pending returns; the caller asks again after the last one for more.",
    },
];

impl XlatorType for IndexType {
    fn type_name(&self) -> &'static str {
        "features/index"
    }
    fn description(&self) -> &'static str {
        "Keeps on the brick the list of inodes whose replication counters are not all zero, for self-heal to find."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let max = usize::try_from(init.options.int("list-max")).unwrap_or(DEFAULT_LIST_MAX);
        Ok(Arc::new(Index::new(
            init.name,
            init.children,
            &init.options.path("directory"),
            max,
        )?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::atomic::AtomicUsize;

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "weft-index-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A brick in memory with storage/posix's xattr rules: `trusted.weft.*` only with
    /// [`INTERNAL_XDATA_KEY`], names outside the xattr namespaces refused with ENOTSUP as
    /// Linux refuses them, xattrop adding big-endian counters element-wise. (This crate
    /// does not depend on storage/posix.)
    #[derive(Default)]
    struct Mem {
        inodes: parking_lot::Mutex<HashMap<Gfid, XattrMap>>,
        calls: AtomicUsize,
    }

    impl Mem {
        fn add(&self, g: Gfid) {
            self.inodes.lock().insert(g, XattrMap::new());
        }
        fn unlink(&self, g: Gfid) {
            self.inodes.lock().remove(&g);
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
        fn gfid(loc: &Loc) -> Result<Gfid, Errno> {
            loc.gfid.ok_or(Errno::EINVAL)
        }
    }

    /// Linux refuses xattr names outside its namespaces (of those, tests use two).
    fn namespaced(name: &str) -> bool {
        name.starts_with("user.") || name.starts_with("trusted.")
    }

    fn visible(name: &str, xd: &Xdata) -> bool {
        !name.starts_with(INTERNAL_XATTR_PREFIX) || xd.has(INTERNAL_XDATA_KEY)
    }

    #[async_trait]
    impl Xlator for Mem {
        fn name(&self) -> &str {
            "mem"
        }
        fn children(&self) -> &[XlatorRef] {
            &[]
        }
        async fn lookup(&self, _: &Ctx, loc: &Loc, _: Xdata) -> Fop<Iatt> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let g = Mem::gfid(loc)?;
            if !self.inodes.lock().contains_key(&g) {
                return Err(Errno::ESTALE);
            }
            let t = Timespec::default();
            let iatt = Iatt {
                gfid: g,
                ino: g.ino(),
                mode: libc::S_IFREG | 0o644,
                nlink: 1,
                uid: 0,
                gid: 0,
                rdev: 0,
                size: 0,
                blksize: 4096,
                blocks: 0,
                atime: t,
                mtime: t,
                ctime: t,
            };
            Ok((iatt, Xdata::new()))
        }
        async fn getxattr(
            &self,
            _: &Ctx,
            loc: &Loc,
            name: Option<&str>,
            xd: Xdata,
        ) -> Fop<XattrMap> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let g = Mem::gfid(loc)?;
            let inodes = self.inodes.lock();
            let attrs = inodes.get(&g).ok_or(Errno::ENOENT)?;
            let mut out = XattrMap::new();
            match name {
                Some(n) if !namespaced(n) => return Err(Errno::ENOTSUP),
                Some(n) => {
                    let v = attrs
                        .get(n)
                        .filter(|_| visible(n, &xd))
                        .ok_or(Errno::ENODATA)?;
                    out.insert(n.to_string(), v.clone());
                }
                None => {
                    for (n, v) in attrs.iter().filter(|(n, _)| visible(n, &xd)) {
                        out.insert(n.clone(), v.clone());
                    }
                }
            }
            Ok((out, Xdata::new()))
        }
        async fn setxattr(
            &self,
            _: &Ctx,
            loc: &Loc,
            attrs: &XattrMap,
            _: i32,
            xd: Xdata,
        ) -> Fop<()> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let g = Mem::gfid(loc)?;
            let mut inodes = self.inodes.lock();
            let cur = inodes.get_mut(&g).ok_or(Errno::ENOENT)?;
            for (n, v) in attrs {
                if !namespaced(n) {
                    return Err(Errno::ENOTSUP);
                }
                if !visible(n, &xd) {
                    return Err(Errno::EPERM);
                }
                cur.insert(n.clone(), v.clone());
            }
            Ok(((), Xdata::new()))
        }
        async fn xattrop(
            &self,
            _: &Ctx,
            loc: &Loc,
            op: XattropOp,
            attrs: &XattrMap,
            _: Xdata,
        ) -> Fop<XattrMap> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let g = Mem::gfid(loc)?;
            let width = match op {
                XattropOp::AddArray32 => 4,
                XattropOp::AddArray64 => 8,
            };
            let out = {
                let mut inodes = self.inodes.lock();
                let cur = inodes.get_mut(&g).ok_or(Errno::ESTALE)?;
                let mut out = XattrMap::new();
                for (n, add) in attrs {
                    if add.len() % width != 0 {
                        return Err(Errno::EINVAL);
                    }
                    let mut v = cur.get(n).cloned().unwrap_or_default();
                    v.resize(add.len(), 0);
                    for (c, a) in v.chunks_mut(width).zip(add.chunks(width)) {
                        let mut x = [0u8; 8];
                        let mut y = [0u8; 8];
                        x[8 - width..].copy_from_slice(c);
                        y[8 - width..].copy_from_slice(a);
                        let s = u64::from_be_bytes(x).wrapping_add(u64::from_be_bytes(y));
                        c.copy_from_slice(&s.to_be_bytes()[8 - width..]);
                    }
                    cur.insert(n.clone(), v.clone());
                    out.insert(n.clone(), v);
                }
                out
            };
            // Let other calls run between the change and its reply.
            tokio::task::yield_now().await;
            Ok((out, Xdata::new()))
        }
        async fn fxattrop(
            &self,
            ctx: &Ctx,
            fd: &FdRef,
            op: XattropOp,
            attrs: &XattrMap,
            xd: Xdata,
        ) -> Fop<XattrMap> {
            self.xattrop(ctx, &Loc::inode(fd.gfid), op, attrs, xd).await
        }
    }

    struct Rig {
        mem: Arc<Mem>,
        index: Index,
        brick: Scratch,
    }

    fn rig(list_max: usize) -> Rig {
        let brick = Scratch::new("brick");
        let mem = Arc::new(Mem::default());
        let child: XlatorRef = mem.clone();
        let index = Index::new("idx".into(), vec![child], &brick.0, list_max).unwrap();
        Rig { mem, index, brick }
    }

    impl Rig {
        fn entry(&self, g: Gfid) -> bool {
            self.brick.0.join(INDEX_DIR).join(g.to_string()).exists()
        }
        async fn op(&self, g: Gfid, key: &str, add: [u32; 3]) -> Fop<XattrMap> {
            let mut attrs = XattrMap::new();
            attrs.insert(key.to_string(), counters(add));
            self.index
                .xattrop(
                    &Ctx::internal(),
                    &Loc::inode(g),
                    XattropOp::AddArray32,
                    &attrs,
                    internal_xdata(),
                )
                .await
        }
        async fn get(&self, name: &str, xd: Xdata) -> Fop<XattrMap> {
            self.index
                .getxattr(&Ctx::internal(), &Loc::root(), Some(name), xd)
                .await
        }
        async fn list(&self, after: Option<Gfid>) -> (Vec<Gfid>, bool) {
            let mut xd = internal_xdata();
            if let Some(a) = after {
                xd.set(INDEX_AFTER_KEY, a.to_string().into_bytes());
            }
            let (m, rxd) = self.get(INDEX_PENDING_XATTR, xd).await.unwrap();
            let text = String::from_utf8(m[INDEX_PENDING_XATTR].clone()).unwrap();
            let gfids = text.lines().map(|l| l.parse().unwrap()).collect();
            (gfids, rxd.has(INDEX_MORE_KEY))
        }
        async fn count(&self) -> u64 {
            let (m, _) = self.get(INDEX_COUNT_XATTR, internal_xdata()).await.unwrap();
            String::from_utf8(m[INDEX_COUNT_XATTR].clone())
                .unwrap()
                .parse()
                .unwrap()
        }
        async fn forget(&self, value: &[u8], xd: Xdata) -> Fop<()> {
            let mut attrs = XattrMap::new();
            attrs.insert(INDEX_FORGET_XATTR.to_string(), value.to_vec());
            self.index
                .setxattr(&Ctx::internal(), &Loc::root(), &attrs, 0, xd)
                .await
        }
    }

    fn counters(c: [u32; 3]) -> Vec<u8> {
        c.iter().flat_map(|n| n.to_be_bytes()).collect()
    }

    const AFR_X: &str = "trusted.weft.afr.x";

    #[tokio::test]
    async fn raising_a_counter_adds_the_entry_and_zero_removes_it() {
        let r = rig(DEFAULT_LIST_MAX);
        let g = Gfid::random();
        r.mem.add(g);
        let (v, _) = r.op(g, AFR_X, [0, 1, 0]).await.unwrap();
        assert_eq!(v[AFR_X], counters([0, 1, 0]));
        assert!(r.entry(g));
        // Raised again: still one entry.
        r.op(g, AFR_X, [2, 0, 0]).await.unwrap();
        assert!(r.entry(g));
        assert_eq!(r.count().await, 1);
        // Partly lowered: still pending.
        r.op(g, AFR_X, [u32::MAX, 0, 0]).await.unwrap();
        assert!(r.entry(g));
        // Back to zero (wrapping adds of -1).
        let (v, _) = r.op(g, AFR_X, [u32::MAX, u32::MAX, 0]).await.unwrap();
        assert_eq!(v[AFR_X], counters([0, 0, 0]));
        assert!(!r.entry(g));
        assert_eq!(r.count().await, 0);
        // Lowering what has no entry is fine.
        r.op(g, AFR_X, [0, 0, 0]).await.unwrap();
        assert!(!r.entry(g));
    }

    #[tokio::test]
    async fn entries_are_links_to_one_base_file_made_again_when_removed() {
        use std::os::unix::fs::MetadataExt;
        let r = rig(DEFAULT_LIST_MAX);
        let dir = r.brick.0.join(INDEX_DIR);
        let gs: Vec<Gfid> = (0..3).map(|_| Gfid::random()).collect();
        for &g in &gs {
            r.mem.add(g);
            r.op(g, AFR_X, [1, 0, 0]).await.unwrap();
        }
        let base = std::fs::metadata(dir.join(INDEX_BASE)).unwrap();
        for &g in &gs {
            let m = std::fs::metadata(dir.join(g.to_string())).unwrap();
            assert_eq!(m.ino(), base.ino(), "the entry is a link to the base");
        }
        assert_eq!(base.nlink(), 4);
        // The base is no entry, and gone it is made again.
        assert_eq!(r.count().await, 3);
        std::fs::remove_file(dir.join(INDEX_BASE)).unwrap();
        let g = Gfid::random();
        r.mem.add(g);
        r.op(g, AFR_X, [0, 0, 1]).await.unwrap();
        assert!(r.entry(g));
        assert!(dir.join(INDEX_BASE).exists());
        assert_eq!(r.list(None).await.0.len(), 4);
        // Lowered to zero, an entry goes and the others stay.
        r.op(gs[0], AFR_X, [u32::MAX, 0, 0]).await.unwrap();
        assert!(!r.entry(gs[0]));
        assert!(r.entry(gs[1]));
        assert_eq!(r.count().await, 3);
    }

    #[tokio::test]
    async fn fxattrop_tracks_the_fds_inode_and_any_counter_keeps_it_pending() {
        let r = rig(DEFAULT_LIST_MAX);
        let g = Gfid::random();
        r.mem.add(g);
        let fd = Fd::new(g, libc::O_RDWR, false);
        let mut attrs = XattrMap::new();
        attrs.insert(AFR_X.into(), counters([0, 0, 1]));
        attrs.insert("trusted.weft.afr.y".into(), counters([0, 0, 0]));
        let ctx = Ctx::internal();
        let op = XattropOp::AddArray32;
        r.index
            .fxattrop(&ctx, &fd, op, &attrs, Xdata::new())
            .await
            .unwrap();
        assert!(r.entry(g));
        // y is raised and x is lowered: still pending.
        attrs.insert(AFR_X.into(), counters([0, 0, u32::MAX]));
        attrs.insert("trusted.weft.afr.y".into(), counters([1, 0, 0]));
        r.index
            .fxattrop(&ctx, &fd, op, &attrs, Xdata::new())
            .await
            .unwrap();
        assert!(r.entry(g));
        // Both zero.
        attrs.insert(AFR_X.into(), counters([0, 0, 0]));
        attrs.insert("trusted.weft.afr.y".into(), counters([u32::MAX, 0, 0]));
        r.index
            .fxattrop(&ctx, &fd, op, &attrs, Xdata::new())
            .await
            .unwrap();
        assert!(!r.entry(g));
    }

    #[tokio::test]
    async fn other_keys_failures_and_nameless_locs_leave_the_index_alone() {
        let r = rig(DEFAULT_LIST_MAX);
        let g = Gfid::random();
        r.mem.add(g);
        for key in ["trusted.weft.dht.x", "user.afr.x", "trusted.weft.af"] {
            r.op(g, key, [1, 1, 1]).await.unwrap();
        }
        assert_eq!(r.count().await, 0);
        // The child refuses: nothing recorded, its error comes back.
        let gone = Gfid::random();
        assert_eq!(
            r.op(gone, AFR_X, [1, 0, 0]).await.unwrap_err(),
            Errno::ESTALE
        );
        assert!(!r.entry(gone));
        // A bad counter length is the child's EINVAL.
        let mut attrs = XattrMap::new();
        attrs.insert(AFR_X.into(), vec![1, 2, 3]);
        let ctx = Ctx::internal();
        let e = r
            .index
            .xattrop(
                &ctx,
                &Loc::inode(g),
                XattropOp::AddArray32,
                &attrs,
                Xdata::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(e, Errno::EINVAL);
        // No gfid in the loc: passed down, nothing recorded.
        attrs.insert(AFR_X.into(), counters([1, 0, 0]));
        let e = r
            .index
            .xattrop(
                &ctx,
                &Loc::entry(Gfid::ROOT, "f"),
                XattropOp::AddArray32,
                &attrs,
                Xdata::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(e, Errno::EINVAL);
        assert_eq!(r.count().await, 0);
    }

    #[tokio::test]
    async fn pending_lists_sorted_pages() {
        let r = rig(2);
        let mut all: Vec<Gfid> = (0..5).map(|_| Gfid::random()).collect();
        for &g in &all {
            r.mem.add(g);
            r.op(g, AFR_X, [1, 0, 0]).await.unwrap();
        }
        all.sort();
        // Files that are not canonical gfids are not entries.
        let dir = r.brick.0.join(INDEX_DIR);
        std::fs::write(dir.join("junk"), b"").unwrap();
        std::fs::write(dir.join(all[0].to_string().to_uppercase()), b"").unwrap();
        std::fs::write(dir.join(Gfid::NULL.to_string()), b"").unwrap();
        assert_eq!(r.count().await, 5);
        assert_eq!(r.list(None).await, (all[..2].to_vec(), true));
        assert_eq!(r.list(Some(all[1])).await, (all[2..4].to_vec(), true));
        assert_eq!(r.list(Some(all[3])).await, (all[4..].to_vec(), false));
        assert_eq!(r.list(Some(all[4])).await, (vec![], false));
        // After a gfid that is not an entry itself.
        let (first, _) = r.list(Some(Gfid::NULL)).await;
        assert_eq!(first, all[..2]);
        // The text form: one per line.
        let (m, _) = r.get(INDEX_PENDING_XATTR, internal_xdata()).await.unwrap();
        assert_eq!(
            m[INDEX_PENDING_XATTR],
            format!("{}\n{}", all[0], all[1]).into_bytes()
        );
        // A bad "after" is EINVAL.
        for bad in [&b"nope"[..], b"\xff\xfe", b""] {
            let mut xd = internal_xdata();
            xd.set(INDEX_AFTER_KEY, bad.to_vec());
            let e = r.get(INDEX_PENDING_XATTR, xd).await.unwrap_err();
            assert_eq!(e, Errno::EINVAL, "{bad:?}");
        }
        // The whole list fits when list-max allows.
        r.index.list_max.store(5, Ordering::Relaxed);
        assert_eq!(r.list(None).await, (all.clone(), false));
        assert!(r.index.dump().contains("pending=5\n"), "{}", r.index.dump());
    }

    #[tokio::test]
    async fn forget_drops_only_entries_no_longer_pending() {
        let r = rig(DEFAULT_LIST_MAX);
        let (unlinked, pending, healed) = (Gfid::random(), Gfid::random(), Gfid::random());
        for g in [unlinked, pending, healed] {
            r.mem.add(g);
            r.op(g, AFR_X, [0, 3, 0]).await.unwrap();
        }
        r.mem.unlink(unlinked);
        // Healed by hand: the counter set to zero without an xattrop.
        let mut zero = XattrMap::new();
        zero.insert(AFR_X.to_string(), counters([0, 0, 0]));
        r.mem
            .setxattr(
                &Ctx::internal(),
                &Loc::inode(healed),
                &zero,
                0,
                internal_xdata(),
            )
            .await
            .unwrap();
        assert_eq!(r.count().await, 3);
        for g in [unlinked, pending, healed] {
            let text = format!(" {g}\n");
            r.forget(text.as_bytes(), internal_xdata()).await.unwrap();
        }
        assert!(!r.entry(unlinked));
        assert!(r.entry(pending));
        assert!(!r.entry(healed));
        // Forgetting what is not there asks nothing below.
        let before = r.mem.calls();
        let other = Gfid::random().to_string();
        r.forget(other.as_bytes(), internal_xdata()).await.unwrap();
        assert_eq!(r.mem.calls(), before);
        for bad in [
            &b"nope"[..],
            b"",
            b"\xff",
            Gfid::NULL.to_string().as_bytes(),
        ] {
            let e = r.forget(bad, internal_xdata()).await.unwrap_err();
            assert_eq!(e, Errno::EINVAL, "{bad:?}");
        }
        // With another xattr in the same call: EINVAL, nothing done.
        let mut attrs = XattrMap::new();
        attrs.insert(INDEX_FORGET_XATTR.into(), pending.to_string().into_bytes());
        attrs.insert("user.x".into(), vec![]);
        let e = r
            .index
            .setxattr(&Ctx::internal(), &Loc::root(), &attrs, 0, internal_xdata())
            .await
            .unwrap_err();
        assert_eq!(e, Errno::EINVAL);
        assert!(r.entry(pending));
    }

    #[tokio::test]
    async fn without_weft_internal_the_virtual_xattrs_go_down() {
        let r = rig(DEFAULT_LIST_MAX);
        let g = Gfid::random();
        r.mem.add(g);
        r.mem.add(Gfid::ROOT);
        r.op(g, AFR_X, [1, 0, 0]).await.unwrap();
        r.mem.unlink(g);
        let before = r.mem.calls();
        for name in [INDEX_PENDING_XATTR, INDEX_COUNT_XATTR] {
            assert_eq!(r.get(name, Xdata::new()).await.unwrap_err(), Errno::ENOTSUP);
        }
        let e = r
            .forget(g.to_string().as_bytes(), Xdata::new())
            .await
            .unwrap_err();
        assert_eq!(e, Errno::ENOTSUP);
        assert_eq!(r.mem.calls(), before + 3);
        assert!(r.entry(g));
        // Other getxattrs go down with the flag too.
        let (m, _) = r
            .index
            .getxattr(&Ctx::internal(), &Loc::root(), None, internal_xdata())
            .await
            .unwrap();
        assert!(m.is_empty());
        assert_eq!(r.mem.calls(), before + 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_xattrops_keep_the_index_in_step() {
        let r = Arc::new(rig(DEFAULT_LIST_MAX));
        let gs: Vec<Gfid> = (0..4).map(|_| Gfid::random()).collect();
        for &g in &gs {
            r.mem.add(g);
        }
        for round in 0..20 {
            let mut tasks = Vec::new();
            for (i, &g) in gs.iter().enumerate() {
                for k in 0..8u32 {
                    let r = r.clone();
                    // Raise and lower in turn; the last inode ends each round raised.
                    tasks.push(tokio::spawn(async move {
                        r.op(g, AFR_X, [1, 0, 0]).await.unwrap();
                        if i < 3 || k > 0 {
                            r.op(g, AFR_X, [u32::MAX, 0, 0]).await.unwrap();
                        }
                    }));
                }
            }
            for t in tasks {
                t.await.unwrap();
            }
            for (i, &g) in gs.iter().enumerate() {
                assert_eq!(r.entry(g), i == 3, "round {round}, inode {i}");
            }
        }
    }

    #[tokio::test]
    async fn the_type_builds_from_options_and_refuses_a_missing_brick() {
        let brick = Scratch::new("type");
        let mem: XlatorRef = Arc::new(Mem::default());
        let build = |dir: &Path| {
            let given = vec![("directory".to_string(), dir.display().to_string())];
            let options = Options::validate(IndexType.options(), &given).unwrap();
            IndexType.build(XlatorInit {
                name: "idx".into(),
                options,
                children: vec![mem.clone()],
                events: EventSender::channel().0,
            })
        };
        let x = build(&brick.0).unwrap();
        assert!(brick.0.join(INDEX_DIR).is_dir());
        assert!(x.dump().contains("list_max=10000\n"), "{}", x.dump());
        let e = build(&brick.0.join("missing")).err().unwrap();
        assert!(e.contains("missing"), "{e}");
        assert!(!brick.0.join("missing").exists());
        // list-max changes live, the directory does not.
        let mut given = vec![
            ("directory".to_string(), brick.0.display().to_string()),
            ("list-max".to_string(), "7".to_string()),
        ];
        let o = Options::validate(IndexType.options(), &given).unwrap();
        x.reconfigure(&o).await.unwrap();
        assert!(x.dump().contains("list_max=7\n"));
        given[0].1 = "/elsewhere".into();
        let o = Options::validate(IndexType.options(), &given).unwrap();
        assert!(x.reconfigure(&o).await.is_err());
    }
}
