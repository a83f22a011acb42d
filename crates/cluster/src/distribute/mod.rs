//! `cluster/distribute`: many subvolumes seen as one tree, GlusterFS's DHT without a
//! metadata server (see ARCHITECTURE.md, "cluster/distribute").
//!
//! - Every directory exists on every subvolume, with the same gfid; each copy carries
//!   that subvolume's part of the directory's [`layout::Layout`] in
//!   [`layout::LAYOUT_XATTR`]. A file lives on the subvolume whose range holds
//!   [`hash::name_hash`] of its name.
//! - A file found elsewhere than its hashed subvolume has a *link file* there: an empty
//!   regular file of mode `---------T` (01000) whose xattr [`LINKTO_XATTR`] names the
//!   subvolume holding the data. Lookups follow link files and never show them.
//! - Inode and fd FOPs go to the subvolume holding the file, remembered per gfid.
//! - Listings are the subvolumes' listings one after another ([`doff`]).
//! - A mkdir asking for a directory lease ([`weft_core::LEASE_KEY`]) asks every subvolume
//!   for it; the answer grants it only when every copy was made and leased (option
//!   `lease-directories`, on by default; off: the request is removed). A subvolume's
//!   connection that drops or returns reaches the caches above as `All`, which ends every
//!   lease there.
//! - Distribute only uses FOPs: its subvolumes may be anything.

pub mod doff;
pub mod hash;
pub mod layout;
pub mod layout_lock;
pub mod mover;

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use parking_lot::Mutex;
use weft_core::options::{OptionSpec, Options};
use weft_core::*;

use doff::{Split, Table};
use hash::{name_hash, raw_hash};
use layout::{Layout, Piece, LAYOUT_XATTR};

/// The xattr of a link file naming the subvolume (its volfile name) holding the data.
pub const LINKTO_XATTR: &str = "trusted.weft.dht.linkto";

/// The xattr a moved file's new copy carries, while still a link file, from just before its
/// move commits until it is made a plain file: its real mode (4 bytes, little-endian). A
/// link file with it whose target no longer has the name is a finished move whose last
/// step did not happen; lookups finish it ([`Distribute::promote`]).
pub const MODE_XATTR: &str = "trusted.weft.dht.mode";

/// Xdata key (presence only) that lets a Weft translator reach `trusted.weft.*` xattrs
/// on `storage/posix` (its `INTERNAL_XDATA_KEY`).
pub const INTERNAL_XDATA_KEY: &str = "weft.internal";

/// The mode of a link file: a regular file with only the sticky bit.
pub const LINK_MODE: u32 = libc::S_IFREG | libc::S_ISVTX;

/// Entries of the gfid -> subvolume map kept at most (then it starts again empty).
const FILES_MAX: usize = 1 << 20;
/// Directory layouts cached at most (then the cache starts again empty).
const LAYOUTS_MAX: usize = 1 << 16;

fn ixd() -> Xdata {
    let mut x = Xdata::new();
    x.set(INTERNAL_XDATA_KEY, Vec::new());
    x
}

/// Whether `ia` looks like a link file (the xattr decides). A link file may hold data:
/// the copy a rebalance is filling ([`mover`]).
fn link_mode(ia: &Iatt) -> bool {
    ia.mode & (libc::S_IFMT | 0o7777) == LINK_MODE
}

fn entry_of(loc: &Loc) -> Result<(Gfid, &OsStr), Errno> {
    match (&loc.parent, &loc.name) {
        (Some(p), Some(n)) => Ok((*p, n.as_os_str())),
        _ => Err(Errno::EINVAL),
    }
}

fn entry_loc(parent: Gfid, name: &OsStr, path: Option<&PathBuf>) -> Loc {
    let mut l = Loc::entry(parent, name);
    l.path = path.cloned();
    l
}

/// The answer of the lowest-numbered subvolume that answered anything but ENOTCONN.
fn pick<T>(rs: Vec<Result<T, Errno>>) -> Result<T, Errno> {
    rs.into_iter()
        .find(|r| !matches!(r, Err(Errno::ENOTCONN)))
        .unwrap_or(Err(Errno::ENOTCONN))
}

/// A directory's attributes: the first subvolume's, with the latest times any copy has
/// (an entry made or removed changes only the copy on its own subvolume).
fn merge_dir<'a>(iatts: impl IntoIterator<Item = &'a Iatt>) -> Option<Iatt> {
    let mut it = iatts.into_iter();
    let mut out = *it.next()?;
    for ia in it {
        out.atime = out.atime.max(ia.atime);
        out.mtime = out.mtime.max(ia.mtime);
        out.ctime = out.ctime.max(ia.ctime);
    }
    Some(out)
}

/// Merges the answers of every subvolume for a directory: the merged attributes if any
/// answered, else the first error that is not ENOTCONN.
fn pick_dir(rs: Vec<Result<(Iatt, Xdata), Errno>>) -> Fop<Iatt> {
    let ok: Vec<Iatt> = rs
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|(ia, _)| *ia)
        .collect();
    match merge_dir(&ok) {
        Some(ia) => Ok((ia, Xdata::new())),
        None => pick(rs),
    }
}

/// Where an inode lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Where {
    /// A directory: on every subvolume.
    Dir,
    /// A file (anything but a directory) on this subvolume.
    File(usize),
}

/// A name resolved in a directory.
#[derive(Clone, Debug)]
struct Found {
    iatt: Iatt,
    at: Where,
    /// The subvolume holding the name's link file, if it has one.
    link: Option<usize>,
}

/// What a subvolume says of a file's link-file xattr.
enum Link {
    /// Not a link file (no linkto xattr): a plain file.
    Plain,
    /// A link file pointing at this subvolume.
    To(usize),
    /// A link file naming no subvolume of this volume.
    Bad,
}

/// A directory's layout pieces as the subvolumes answered.
struct Pieces {
    /// Each subvolume's piece (`None`: none, or no answer).
    pieces: Vec<Option<Piece>>,
    /// The subvolumes holding the directory (they answered, with or without a piece).
    members: Vec<usize>,
    /// Some subvolume did not answer.
    down: bool,
    /// Subvolumes answering that the directory is not there.
    missing: usize,
}

/// What distribute keeps on an open fd.
enum FdState {
    File(Mutex<FileFd>, Order),
    Dir(Mutex<DirState>),
}

/// The order of an open file's FOPs, kept across a move: FOPs that a moved file's old
/// brick answered `EREMOTE` are sent again in the order they were first sent, and FOPs
/// sent meanwhile wait behind them (two appends must not swap places).
#[derive(Default)]
struct Order {
    next: std::sync::atomic::AtomicU64,
    /// FOPs on the fd not finished yet, by number.
    running: Mutex<std::collections::BTreeSet<u64>>,
    /// FOPs being sent again after a move.
    retrying: std::sync::atomic::AtomicUsize,
    turn: tokio::sync::Notify,
}

impl Order {
    fn begin(&self) -> u64 {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.running.lock().insert(n);
        n
    }

    fn end(&self, n: u64) {
        self.running.lock().remove(&n);
        self.turn.notify_waiters();
    }

    fn retrying(&self) -> bool {
        self.retrying.load(std::sync::atomic::Ordering::SeqCst) > 0
    }

    /// Waits until every FOP begun before `n` has finished.
    async fn wait_turn(&self, n: u64) {
        loop {
            let notified = self.turn.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running.lock().first().is_none_or(|&m| m >= n) {
                return;
            }
            notified.await;
        }
    }
}

/// Ends FOP `n` of an [`Order`] however its future ends.
struct Turn<'a>(&'a Order, u64);

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.end(self.1);
    }
}

/// Where an open file's FOPs go.
struct FileFd {
    /// The subvolume holding the file.
    sub: usize,
    /// The fd opened there after the file moved (the caller's fd was opened elsewhere).
    alt: Option<FdRef>,
}

impl FdState {
    fn file(sub: usize) -> Arc<FdState> {
        Arc::new(FdState::File(
            Mutex::new(FileFd { sub, alt: None }),
            Order::default(),
        ))
    }
}

struct DirState {
    /// Which subvolumes opened the directory.
    opened: Vec<bool>,
    /// The subvolume whose directories (and `.`/`..`) the listing shows.
    dir_subvol: usize,
    table: Table,
    /// (subvolume, its cookie) after a short batch: the next read there probably ends that
    /// subvolume, so the following ones' first batches are read at the same time.
    hint: Option<(usize, u64)>,
}

/// The `cluster/distribute` translator.
pub struct Distribute {
    name: String,
    children: Vec<XlatorRef>,
    /// Each child's last reported state (`None`: nothing reported yet, treated as up).
    state: Mutex<Vec<Option<bool>>>,
    /// What was last passed up (`Some(true)`: ChildUp).
    announced: Mutex<Option<bool>>,
    layouts: Mutex<HashMap<Gfid, Arc<Layout>>>,
    files: Mutex<HashMap<Gfid, usize>>,
    split: Split,
    /// Subvolumes being removed (`decommissioned`): directories are made there too, but
    /// new layouts give them no range.
    decommissioned: Mutex<Vec<usize>>,
    /// Option `lease-directories`: directory leases are asked of every subvolume.
    lease_dirs: AtomicBool,
}

impl Distribute {
    pub fn new(name: String, children: Vec<XlatorRef>) -> Distribute {
        let n = children.len();
        Distribute {
            name,
            split: Split::new(n),
            children,
            state: Mutex::new(vec![None; n]),
            announced: Mutex::new(None),
            layouts: Mutex::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            decommissioned: Mutex::new(Vec::new()),
            lease_dirs: AtomicBool::new(false),
        }
    }

    /// Sets the subvolumes being removed from option `decommissioned` (names, comma
    /// separated); an unknown name is an error.
    fn set_decommissioned(&self, opts: &Options) -> Result<(), String> {
        let mut out = Vec::new();
        for n in opts
            .str("decommissioned")
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let i = self.index_of(n.as_bytes()).ok_or_else(|| {
                format!("decommissioned: {n} is not a subvolume of {}", self.name)
            })?;
            out.push(i);
        }
        *self.decommissioned.lock() = out;
        Ok(())
    }

    /// `members` without the subvolumes being removed (all of them if that leaves none).
    fn layout_members(&self, members: &[usize]) -> Vec<usize> {
        let d = self.decommissioned.lock();
        let keep: Vec<usize> = members.iter().copied().filter(|i| !d.contains(i)).collect();
        if keep.is_empty() {
            members.to_vec()
        } else {
            keep
        }
    }

    fn n(&self) -> usize {
        self.children.len()
    }

    fn is_up(&self, i: usize) -> bool {
        self.state.lock()[i] != Some(false)
    }

    fn any_down(&self) -> bool {
        self.state.lock().contains(&Some(false))
    }

    /// Child `i`, or ENOTCONN while it is down.
    fn sub(&self, i: usize) -> Result<&XlatorRef, Errno> {
        if self.is_up(i) {
            Ok(&self.children[i])
        } else {
            Err(Errno::ENOTCONN)
        }
    }

    fn index_of(&self, name: &[u8]) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.name().as_bytes() == name)
    }

    /// The subvolume to unlink `loc` on without looking it up first: only when `loc`
    /// carries the inode's gfid, the inode is known to live on subvolume `s`, the
    /// directory's layout is cached, and the name hashes to `s` (so no link file exists).
    fn unlink_here(&self, loc: &Loc) -> Option<(usize, Gfid)> {
        let g = loc.gfid?;
        let (parent, name) = entry_of(loc).ok()?;
        let s = self.files.lock().get(&g).copied()?;
        let l = self.layouts.lock().get(&parent).cloned()?;
        (self.hashed(&l, name).ok()? == s).then_some((s, g))
    }

    fn remember(&self, g: Gfid, i: usize) {
        let mut f = self.files.lock();
        if f.len() >= FILES_MAX {
            f.clear();
        }
        f.insert(g, i);
    }

    fn cache_layout(&self, g: Gfid, l: Arc<Layout>) {
        let mut c = self.layouts.lock();
        if c.len() >= LAYOUTS_MAX {
            c.clear();
        }
        c.insert(g, l);
    }

    /// Runs `f` on every child at once (ENOTCONN for those down), answers in child order.
    async fn all<T, Fut>(&self, f: impl Fn(usize, XlatorRef) -> Fut) -> Vec<Result<T, Errno>>
    where
        Fut: Future<Output = Result<T, Errno>>,
    {
        let f = &f;
        join_all((0..self.n()).map(|i| async move {
            let c = self.sub(i)?.clone();
            f(i, c).await
        }))
        .await
    }

    /// The first child (in order) that answers anything but ENOTCONN.
    async fn first<T, Fut>(&self, f: impl Fn(usize, XlatorRef) -> Fut) -> Result<T, Errno>
    where
        Fut: Future<Output = Result<T, Errno>>,
    {
        for i in 0..self.n() {
            let Ok(c) = self.sub(i) else { continue };
            match f(i, c.clone()).await {
                Err(Errno::ENOTCONN) => continue,
                r => return r,
            }
        }
        Err(Errno::ENOTCONN)
    }

    // ==== link files ====

    async fn linkto(&self, i: usize, g: Gfid) -> Result<Link, Errno> {
        let r = self
            .sub(i)?
            .getxattr(&Ctx::internal(), &Loc::inode(g), Some(LINKTO_XATTR), ixd())
            .await;
        match r {
            Ok((m, _)) => Ok(match m.get(LINKTO_XATTR).and_then(|v| self.index_of(v)) {
                Some(t) if t != i => Link::To(t),
                _ => Link::Bad,
            }),
            Err(Errno::ENODATA) => Ok(Link::Plain),
            Err(e) => Err(e),
        }
    }

    /// Makes a link file `parent/name` on subvolume `at` pointing at `target`, with the
    /// data's gfid.
    async fn make_link(
        &self,
        at: usize,
        parent: Gfid,
        name: &OsStr,
        g: Gfid,
        target: usize,
    ) -> Result<(), Errno> {
        let c = self.sub(at)?;
        let mut xd = ixd();
        xd.set(GFID_REQ_KEY, g.0.to_vec());
        let loc = Loc::entry(parent, name);
        let ictx = Ctx::internal();
        let (ia, _) = c.mknod(&ictx, &loc, LINK_MODE, 0, 0, xd).await?;
        let mut attrs = XattrMap::new();
        attrs.insert(
            LINKTO_XATTR.to_string(),
            self.children[target].name().as_bytes().to_vec(),
        );
        if let Err(e) = c
            .setxattr(&ictx, &Loc::inode(ia.gfid), &attrs, 0, ixd())
            .await
        {
            let _ = c.unlink(&ictx, &loc, Xdata::new()).await;
            return Err(e);
        }
        Ok(())
    }

    /// Points the name's link file on `at` at `target`: rewrites an existing link file,
    /// makes one where the name is absent, leaves anything else alone.
    async fn ensure_link(
        &self,
        at: usize,
        parent: Gfid,
        name: &OsStr,
        g: Gfid,
        target: usize,
    ) -> Result<(), Errno> {
        if at == target {
            return Ok(());
        }
        let c = self.sub(at)?;
        let ictx = Ctx::internal();
        match c
            .lookup(&ictx, &Loc::entry(parent, name), Xdata::new())
            .await
        {
            Ok((ia, _)) if link_mode(&ia) => {
                let mut attrs = XattrMap::new();
                attrs.insert(
                    LINKTO_XATTR.to_string(),
                    self.children[target].name().as_bytes().to_vec(),
                );
                c.setxattr(&ictx, &Loc::inode(ia.gfid), &attrs, 0, ixd())
                    .await
                    .map(|_| ())
            }
            Ok(_) => Ok(()),
            Err(Errno::ENOENT) => self.make_link(at, parent, name, g, target).await,
            Err(e) => Err(e),
        }
    }

    /// The real mode a moved file's new copy on `at` records ([`MODE_XATTR`]), if any.
    async fn moved_mode(&self, at: usize, g: Gfid) -> Option<u32> {
        let (m, _) = self
            .sub(at)
            .ok()?
            .getxattr(&Ctx::internal(), &Loc::inode(g), Some(MODE_XATTR), ixd())
            .await
            .ok()?;
        let b: [u8; 4] = m.get(MODE_XATTR)?.as_slice().try_into().ok()?;
        Some(u32::from_le_bytes(b))
    }

    /// Finishes a move whose commit happened but whose last step did not: the link file
    /// `g` on `at` holds the data and its real mode; it becomes a plain file. The
    /// attributes after, or `None` when it is no such copy.
    async fn promote(&self, at: usize, g: Gfid) -> Option<Iatt> {
        let c = self.sub(at).ok()?;
        match mover::make_plain(c, g).await {
            Ok(Some(ia)) => {
                tracing::info!(
                    "{}: finished the move of {g} to {} (its mover stopped after the commit)",
                    self.name,
                    c.name()
                );
                Some(ia)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(
                    "{}: finishing the move of {g} on {} failed: {e}",
                    self.name,
                    c.name()
                );
                None
            }
        }
    }

    /// Removes `parent/name` on `at` if it is (still) a link file, and not the new copy of
    /// a file whose move committed ([`MODE_XATTR`]).
    async fn drop_link(&self, at: usize, parent: Gfid, name: &OsStr) {
        let Ok(c) = self.sub(at) else { return };
        let ictx = Ctx::internal();
        let loc = Loc::entry(parent, name);
        if let Ok((ia, _)) = c.lookup(&ictx, &loc, Xdata::new()).await {
            if link_mode(&ia)
                && !matches!(self.linkto(at, ia.gfid).await, Ok(Link::Plain))
                && self.moved_mode(at, ia.gfid).await.is_none()
            {
                let _ = c.unlink(&ictx, &loc.with_gfid(ia.gfid), Xdata::new()).await;
            }
        }
    }

    // ==== layouts ====

    async fn layout(&self, ctx: &Ctx, dir: Gfid) -> Result<Arc<Layout>, Errno> {
        if let Some(l) = self.layouts.lock().get(&dir).cloned() {
            return Ok(l);
        }
        self.load_layout(ctx, dir).await
    }

    /// Reads the directory's pieces from every subvolume.
    async fn read_pieces(&self, dir: Gfid) -> Pieces {
        let rs = self
            .all(|_, c| async move {
                c.getxattr(
                    &Ctx::internal(),
                    &Loc::inode(dir),
                    Some(LAYOUT_XATTR),
                    ixd(),
                )
                .await
            })
            .await;
        let mut p = Pieces {
            pieces: Vec::with_capacity(self.n()),
            members: Vec::new(),
            down: false,
            missing: 0,
        };
        for (i, r) in rs.into_iter().enumerate() {
            match r {
                Ok((m, _)) => {
                    p.members.push(i);
                    p.pieces
                        .push(m.get(LAYOUT_XATTR).and_then(|b| Piece::decode(b)));
                }
                Err(Errno::ENODATA) => {
                    p.members.push(i);
                    p.pieces.push(None);
                }
                Err(Errno::ENOENT) | Err(Errno::ESTALE) => {
                    p.missing += 1;
                    p.pieces.push(None);
                }
                Err(_) => {
                    p.down = true;
                    p.pieces.push(None);
                }
            }
        }
        p
    }

    /// Reads the directory's pieces from every subvolume; writes a fresh layout when it
    /// has holes or overlaps and every subvolume answered (under the layout lock, having
    /// read the pieces again: another writer may have been part-way through); caches
    /// healthy layouts.
    async fn load_layout(&self, ctx: &Ctx, dir: Gfid) -> Result<Arc<Layout>, Errno> {
        let first = self.read_pieces(dir).await;
        if first.members.is_empty() {
            return Err(if first.down {
                Errno::ENOTCONN
            } else {
                Errno::ESTALE
            });
        }
        let (l, bad) = Layout::from_pieces(&first.pieces);
        if !bad.any() {
            let l = Arc::new(l);
            self.cache_layout(dir, l.clone());
            return Ok(l);
        }
        if first.down {
            // Holes where the down subvolumes' ranges are: names there answer ENOTCONN.
            return Ok(Arc::new(l));
        }
        let lock = match layout_lock::lock_layout(&self.children[0], dir).await {
            Ok(lock) => lock,
            // Not healed now (not cached either): the next lookup tries again.
            Err(_) => return Ok(Arc::new(l)),
        };
        let r = self.heal_layout(ctx, dir).await;
        lock.unlock().await;
        r
    }

    /// [`Distribute::load_layout`]'s heal, under the layout lock: reads the pieces again
    /// and writes equal ranges over the subvolumes holding the directory if they still
    /// have holes or overlaps.
    async fn heal_layout(&self, ctx: &Ctx, dir: Gfid) -> Result<Arc<Layout>, Errno> {
        let Pieces {
            pieces,
            members,
            down,
            missing,
        } = self.read_pieces(dir).await;
        if members.is_empty() {
            return Err(if down { Errno::ENOTCONN } else { Errno::ESTALE });
        }
        let (l, bad) = Layout::from_pieces(&pieces);
        if !bad.any() {
            // Another writer healed it meanwhile.
            let l = Arc::new(l);
            self.cache_layout(dir, l.clone());
            return Ok(l);
        }
        if down {
            return Ok(Arc::new(l));
        }
        // Equal ranges over the subvolumes holding the directory. Complete only if the
        // directory holds nothing anywhere (no name can be misplaced).
        let empty = missing == 0 && self.empty_everywhere(ctx, dir).await;
        let members = self.layout_members(&members);
        let new = Layout::equal(
            &members,
            raw_hash(&dir.0) as usize,
            raw_hash(&[&dir.0[..], &(members.len() as u32).to_be_bytes()].concat()),
            empty,
        );
        tracing::info!(
            "{}: directory {dir}: layout had {} holes and {} overlaps; wrote a new one over {} subvolumes ({})",
            self.name,
            bad.holes,
            bad.overlaps,
            members.len(),
            if empty { "complete" } else { "not complete" }
        );
        self.write_layout(dir, &new).await;
        let new = Arc::new(new);
        self.cache_layout(dir, new.clone());
        Ok(new)
    }

    /// Whether subvolume `i`'s piece of directory `dir` is no longer the one `l` was made
    /// of (another generation, or no longer complete).
    async fn layout_changed(&self, dir: Gfid, i: usize, l: &Layout) -> bool {
        let Ok(c) = self.sub(i) else { return false };
        let r = c
            .getxattr(
                &Ctx::internal(),
                &Loc::inode(dir),
                Some(LAYOUT_XATTR),
                ixd(),
            )
            .await;
        match r {
            Ok((m, _)) => match m.get(LAYOUT_XATTR).and_then(|b| Piece::decode(b)) {
                Some(p) => p.gen != l.gen || !p.complete,
                None => true,
            },
            Err(_) => false,
        }
    }

    async fn write_layout(&self, dir: Gfid, l: &Layout) {
        let members = l.members();
        let rs = self
            .all(|i, c| {
                let piece = members.contains(&i).then(|| l.piece(i));
                async move {
                    let Some(p) = piece else { return Ok(()) };
                    let mut attrs = XattrMap::new();
                    attrs.insert(LAYOUT_XATTR.to_string(), p.encode());
                    c.setxattr(&Ctx::internal(), &Loc::inode(dir), &attrs, 0, ixd())
                        .await
                        .map(|_| ())
                }
            })
            .await;
        for (i, r) in rs.into_iter().enumerate() {
            if let Err(e) = r {
                if members.contains(&i) {
                    tracing::warn!(
                        "{}: directory {dir}: writing its layout on {} failed: {e}",
                        self.name,
                        self.children[i].name()
                    );
                }
            }
        }
    }

    /// The subvolume `name` hashes to in `l`; ENOTCONN when it is down or the hash falls
    /// in a hole (the range of a subvolume that did not answer).
    fn hashed(&self, l: &Layout, name: &OsStr) -> Result<usize, Errno> {
        let i = l
            .subvol_for(name_hash(name.as_bytes()))
            .ok_or(Errno::ENOTCONN)?;
        self.sub(i)?;
        Ok(i)
    }

    // ==== directory contents ====

    /// Lists directory `dir` on subvolume `i`: whether it has a real entry, and the names
    /// of its link files.
    async fn scan(&self, ctx: &Ctx, i: usize, dir: Gfid) -> Result<(bool, Vec<OsString>), Errno> {
        let c = self.sub(i)?;
        let fd = Fd::new(dir, libc::O_RDONLY | libc::O_DIRECTORY, true);
        let ictx = Ctx::internal();
        c.opendir(&ictx, &Loc::inode(dir), &fd, Xdata::new())
            .await?;
        let mut links = Vec::new();
        let mut real = false;
        let mut off = 0;
        let r = loop {
            let batch = match c.readdirp(&ictx, &fd, 65536, off, Xdata::new()).await {
                Ok((b, _)) => b,
                Err(e) => break Err(e),
            };
            let Some(last) = batch.last() else {
                break Ok(());
            };
            off = last.offset;
            for d in &batch {
                if d.name == b"." || d.name == b".." {
                    continue;
                }
                match &d.iatt {
                    Some(ia) if link_mode(ia) => match self.linkto(i, ia.gfid).await {
                        Ok(Link::Plain) => real = true,
                        Ok(_) => links.push(OsStr::from_bytes(&d.name).to_owned()),
                        Err(_) => real = true,
                    },
                    _ => real = true,
                }
            }
            if real {
                break Ok(());
            }
        };
        let _ = c.releasedir(&ictx, &fd, Xdata::new()).await;
        let _ = ctx;
        r.map(|_| (real, links))
    }

    async fn empty_everywhere(&self, ctx: &Ctx, dir: Gfid) -> bool {
        let rs = self.all(|i, _| self.scan(ctx, i, dir)).await;
        rs.into_iter().all(|r| matches!(r, Ok((false, _))))
    }

    /// Checks that directory `dir` holds no real entry on any subvolume (ENOTEMPTY),
    /// answering ENOTCONN if one cannot tell, and removes its stale link files.
    async fn clear_for_removal(&self, ctx: &Ctx, dir: Gfid) -> Result<(), Errno> {
        let rs = self.all(|i, _| self.scan(ctx, i, dir)).await;
        let mut stale = Vec::new();
        for (i, r) in rs.into_iter().enumerate() {
            match r {
                Ok((true, _)) => return Err(Errno::ENOTEMPTY),
                Ok((false, links)) => stale.extend(links.into_iter().map(|n| (i, n))),
                Err(Errno::ENOENT) | Err(Errno::ESTALE) => {}
                Err(e) => return Err(e),
            }
        }
        for (i, n) in stale {
            self.drop_link(i, dir, &n).await;
        }
        Ok(())
    }

    // ==== lookups ====

    /// A quick-read content lookup of file `g` (`loc` by gfid): asked of the subvolume
    /// that holds its data, following a move. `None` when `g` is a directory or only a
    /// link file answered: the plain lookup then answers, without content.
    async fn lookup_content(
        &self,
        ctx: &Ctx,
        g: Gfid,
        loc: &Loc,
        max: u64,
        hint: Option<&[u8]>,
    ) -> Option<Fop<Iatt>> {
        if g.is_root() || self.layouts.lock().contains_key(&g) {
            return None;
        }
        let Where::File(i) = self.target(ctx, loc).await.ok()? else {
            return None;
        };
        let r = self
            .on_file(ctx, loc, i, |c| async move {
                let mut xd = Xdata::new();
                xd.set_u64(QUICK_READ_KEY, max);
                // Directories have one gfid on every subvolume, and a file's data keeps
                // its name there: the brick checks the hint and falls back to the gfid.
                if let Some(h) = hint {
                    xd.set(NAME_HINT_KEY, h.to_vec());
                }
                c.lookup(ctx, loc, xd).await
            })
            .await;
        match r {
            // A link file where the data was thought to be: the mapping is stale; the
            // plain lookup looks everywhere.
            Ok((ia, _)) if link_mode(&ia) => {
                self.forget(g, i);
                None
            }
            Ok((ia, mut rxd)) if !ia.is_dir() && ia.gfid == g => {
                let mut out = Xdata::new();
                if let Some(content) = rxd.0.remove(QUICK_READ_CONTENT_KEY) {
                    out.0.insert(QUICK_READ_CONTENT_KEY.to_string(), content);
                }
                Some(Ok((ia, out)))
            }
            _ => None,
        }
    }

    /// Resolves `parent/name` (loc has parent and name).
    async fn lookup_name(&self, ctx: &Ctx, loc: &Loc) -> Result<Found, Errno> {
        let (parent, name) = entry_of(loc)?;
        let eloc = entry_loc(parent, name, loc.path.as_ref());
        let l = self.layout(ctx, parent).await?;
        let h = match self.hashed(&l, name) {
            Ok(h) => h,
            Err(e) if l.complete => return Err(e),
            Err(_) => return self.lookup_everywhere(ctx, &eloc, None).await,
        };
        let ia = match self.children[h].lookup(ctx, &eloc, Xdata::new()).await {
            Ok((ia, _)) => ia,
            Err(Errno::ENOENT) if !l.complete => {
                return self.lookup_everywhere(ctx, &eloc, Some(h)).await
            }
            // A complete layout says the name does not exist, unless the layout changed
            // since it was cached (a fix-layout gave the directory new ranges): then the
            // name may be on another subvolume, so the layout is read again and the name
            // looked for everywhere.
            Err(Errno::ENOENT) if self.layout_changed(parent, h, &l).await => {
                let nl = self.load_layout(ctx, parent).await?;
                let nh = self.hashed(&nl, name).ok();
                return self.lookup_everywhere(ctx, &eloc, nh).await;
            }
            Err(e) => return Err(e),
        };
        if ia.is_dir() {
            return self.lookup_dir(ctx, &eloc).await;
        }
        if link_mode(&ia) {
            match self.linkto(h, ia.gfid).await? {
                Link::Plain if ia.size == 0 => {
                    // An empty file in link mode without a target: a real empty file
                    // with mode 01000, or a link file whose maker died between making
                    // it and naming its target. The data's copy, if another subvolume
                    // holds this gfid under the name, is the file; the link is repaired.
                    if let Some(found) = self.orphan_link_target(ctx, &eloc, h, ia.gfid).await {
                        return Ok(found);
                    }
                }
                Link::Plain => {}
                Link::To(t) => {
                    match self.sub(t)?.lookup(ctx, &eloc, Xdata::new()).await {
                        Ok((d, _)) if !d.is_dir() && d.gfid == ia.gfid => {
                            self.remember(d.gfid, t);
                            return Ok(Found {
                                iatt: d,
                                at: Where::File(t),
                                link: Some(h),
                            });
                        }
                        // Only "not there" makes the link stale: any other error (a
                        // replica set in split-brain answers EIO, one down ENOTCONN)
                        // says nothing of the data, and the link must stay.
                        Err(e) if e != Errno::ENOENT && e != Errno::ESTALE => return Err(e),
                        _ => {}
                    }
                    if let Some(done) = self.promote(h, ia.gfid).await {
                        self.remember(done.gfid, h);
                        return Ok(Found {
                            iatt: done,
                            at: Where::File(h),
                            link: None,
                        });
                    }
                    tracing::info!(
                        "{}: removing stale link file {} on {} (nothing there on {})",
                        self.name,
                        eloc.describe(),
                        self.children[h].name(),
                        self.children[t].name()
                    );
                    self.drop_link(h, parent, name).await;
                    return self.lookup_everywhere(ctx, &eloc, Some(h)).await;
                }
                Link::Bad => {
                    self.drop_link(h, parent, name).await;
                    return self.lookup_everywhere(ctx, &eloc, Some(h)).await;
                }
            }
        }
        self.remember(ia.gfid, h);
        Ok(Found {
            iatt: ia,
            at: Where::File(h),
            link: None,
        })
    }

    /// Looks the name up on every subvolume (its parent's layout is not complete, or its
    /// link file was stale); gives a file found off its hashed subvolume a link file.
    /// For an empty link-mode file `eloc` on subvolume `h` that names no target: the
    /// subvolume holding gfid `g`'s data under the same name, if any, with the link on
    /// `h` pointed at it.
    async fn orphan_link_target(&self, ctx: &Ctx, eloc: &Loc, h: usize, g: Gfid) -> Option<Found> {
        let (parent, name) = entry_of(eloc).ok()?;
        let rs = self
            .all(|i, c| async move {
                if i == h {
                    return Err(Errno::ENOENT);
                }
                c.lookup(ctx, eloc, Xdata::new()).await
            })
            .await;
        let (s, d) = rs.into_iter().enumerate().find_map(|(i, r)| match r {
            Ok((d, _)) if !d.is_dir() && d.gfid == g && !link_mode(&d) => Some((i, d)),
            _ => None,
        })?;
        tracing::warn!(
            "{}: {} on {} is a link file naming no target while {} holds its data: pointing it there",
            self.name,
            eloc.describe(),
            self.children[h].name(),
            self.children[s].name()
        );
        if let Err(e) = self.ensure_link(h, parent, name, g, s).await {
            tracing::warn!(
                "{}: repairing the link of {}: {e}",
                self.name,
                eloc.describe()
            );
        }
        self.remember(g, s);
        Some(Found {
            iatt: d,
            at: Where::File(s),
            link: Some(h),
        })
    }

    async fn lookup_everywhere(
        &self,
        ctx: &Ctx,
        eloc: &Loc,
        hashed: Option<usize>,
    ) -> Result<Found, Errno> {
        let (parent, name) = entry_of(eloc)?;
        let rs = self
            .all(|_, c| async move { c.lookup(ctx, eloc, Xdata::new()).await })
            .await;
        let mut data = None;
        let mut down = false;
        for (i, r) in rs.into_iter().enumerate() {
            match r {
                Ok((ia, _)) if ia.is_dir() => return self.lookup_dir(ctx, eloc).await,
                Ok((ia, _)) if link_mode(&ia) => {
                    if let Ok(Link::Plain) = self.linkto(i, ia.gfid).await {
                        data.get_or_insert((i, ia));
                    }
                }
                Ok((ia, _)) => {
                    data.get_or_insert((i, ia));
                }
                Err(Errno::ENOENT) | Err(Errno::ESTALE) | Err(Errno::ENOTDIR) => {}
                Err(_) => down = true,
            }
        }
        let Some((s, ia)) = data else {
            return Err(if down { Errno::ENOTCONN } else { Errno::ENOENT });
        };
        self.remember(ia.gfid, s);
        let mut link = None;
        if let Some(h) = hashed.filter(|&h| h != s) {
            match self.make_link(h, parent, name, ia.gfid, s).await {
                Ok(()) => link = Some(h),
                Err(e) => tracing::warn!(
                    "{}: {} is on {}, not on its hashed {}; making its link file failed: {e}",
                    self.name,
                    eloc.describe(),
                    self.children[s].name(),
                    self.children[h].name()
                ),
            }
        }
        Ok(Found {
            iatt: ia,
            at: Where::File(s),
            link,
        })
    }

    /// A directory lookup on every subvolume: heals copies missing on subvolumes that are
    /// up (by name, with the same gfid, mode and owner), reloads (and heals) the layout;
    /// answers the first subvolume's attributes.
    async fn lookup_dir(&self, ctx: &Ctx, loc: &Loc) -> Result<Found, Errno> {
        let rs = self
            .all(|_, c| async move { c.lookup(ctx, loc, Xdata::new()).await })
            .await;
        let mut dirs: Vec<Iatt> = Vec::new();
        let mut absent = Vec::new();
        let mut err = None;
        for (i, r) in rs.iter().enumerate() {
            match r {
                Ok((ia, _)) if ia.is_dir() => dirs.push(*ia),
                Ok(_) => {}
                Err(Errno::ENOENT) => absent.push(i),
                Err(e) => {
                    err.get_or_insert(*e);
                }
            }
        }
        let Some(ia) = merge_dir(&dirs) else {
            return Err(if absent.is_empty() {
                err.unwrap_or(Errno::ENOENT)
            } else {
                Errno::ENOENT
            });
        };
        if let (Some(p), Some(n)) = (loc.parent, &loc.name) {
            for i in absent {
                let hctx = Ctx {
                    uid: ia.uid,
                    gid: ia.gid,
                    ..ctx.clone()
                };
                let mut xd = Xdata::new();
                xd.set(GFID_REQ_KEY, ia.gfid.0.to_vec());
                let r = self.children[i]
                    .mkdir(&hctx, &Loc::entry(p, n), ia.mode & 0o7777, 0, xd)
                    .await;
                match r {
                    Ok(_) => tracing::info!(
                        "{}: healed directory {} on {}",
                        self.name,
                        loc.describe(),
                        self.children[i].name()
                    ),
                    Err(e) => tracing::warn!(
                        "{}: healing directory {} on {} failed: {e}",
                        self.name,
                        loc.describe(),
                        self.children[i].name()
                    ),
                }
            }
        }
        self.load_layout(ctx, ia.gfid).await?;
        Ok(Found {
            iatt: ia,
            at: Where::Dir,
            link: None,
        })
    }

    /// Finds an inode by gfid alone (a nameless lookup on every subvolume).
    async fn lookup_gfid(&self, ctx: &Ctx, g: Gfid, loc: &Loc) -> Result<Found, Errno> {
        let known = self.files.lock().get(&g).copied();
        if let Some(i) = known {
            match self.sub(i)?.lookup(ctx, loc, Xdata::new()).await {
                Ok((ia, _)) if !ia.is_dir() => {
                    return Ok(Found {
                        iatt: ia,
                        at: Where::File(i),
                        link: None,
                    })
                }
                Err(Errno::ENOTCONN) => return Err(Errno::ENOTCONN),
                // Look everywhere; the mapping stays until another subvolume has it.
                _ => {}
            }
        }
        let iloc = Loc {
            gfid: Some(g),
            path: loc.path.clone(),
            ..Loc::default()
        };
        let rs = self
            .all(|_, c| {
                let iloc = &iloc;
                async move { c.lookup(ctx, iloc, Xdata::new()).await }
            })
            .await;
        let mut down = false;
        let mut err = None;
        let mut dir = None;
        for (i, r) in rs.into_iter().enumerate() {
            match r {
                Ok((ia, _)) if ia.is_dir() => {
                    dir.get_or_insert(ia);
                }
                Ok((ia, _)) => {
                    if link_mode(&ia) && !matches!(self.linkto(i, g).await, Ok(Link::Plain)) {
                        continue;
                    }
                    self.remember(g, i);
                    return Ok(Found {
                        iatt: ia,
                        at: Where::File(i),
                        link: None,
                    });
                }
                Err(Errno::ENOTCONN) => down = true,
                Err(e) => {
                    err.get_or_insert(e);
                }
            }
        }
        if let Some(ia) = dir {
            if !self.layouts.lock().contains_key(&g) {
                self.load_layout(ctx, g).await?;
            }
            return Ok(Found {
                iatt: ia,
                at: Where::Dir,
                link: None,
            });
        }
        Err(if down {
            Errno::ENOTCONN
        } else {
            err.unwrap_or(Errno::ESTALE)
        })
    }

    /// Where the inode `loc` names lives.
    async fn target(&self, ctx: &Ctx, loc: &Loc) -> Result<Where, Errno> {
        if let Some(g) = loc.gfid {
            if g.is_root() || self.layouts.lock().contains_key(&g) {
                return Ok(Where::Dir);
            }
            if let Some(&i) = self.files.lock().get(&g) {
                return Ok(Where::File(i));
            }
            return Ok(self.lookup_gfid(ctx, g, loc).await?.at);
        }
        Ok(self.lookup_name(ctx, loc).await?.at)
    }

    fn fd_state(&self, fd: &FdRef) -> Option<Arc<FdState>> {
        fd.ctx::<FdState>(&self.name)
    }

    /// The subvolume an fd's FOPs go to (the file's, or a directory's listing subvolume)
    /// and the fd to send there.
    fn fd_file(&self, fd: &FdRef) -> Result<(usize, FdRef), Errno> {
        match self.fd_state(fd).as_deref() {
            Some(FdState::File(m, _)) => {
                let f = m.lock();
                Ok((f.sub, f.alt.clone().unwrap_or_else(|| fd.clone())))
            }
            Some(FdState::Dir(d)) => Ok((d.lock().dir_subvol, fd.clone())),
            None => Err(Errno::EBADF),
        }
    }

    /// Runs `f` with the subvolume and fd an open file's FOPs go to; when the file was
    /// moved away by a rebalance (`EREMOTE`; or `ENOTCONN` from a subvolume that is down,
    /// as one being removed is after its files moved), opens it where it is now and runs
    /// `f` again.
    async fn on_fd<T, Fut>(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        f: impl Fn(XlatorRef, FdRef) -> Fut,
    ) -> Result<T, Errno>
    where
        Fut: Future<Output = Result<T, Errno>>,
    {
        let state = self.fd_state(fd);
        let order = match state.as_deref() {
            Some(FdState::File(_, o)) => Some(o),
            _ => None,
        };
        let turn = order.map(|o| Turn(o, o.begin()));
        if let Some(t) = &turn {
            if t.0.retrying() {
                t.0.wait_turn(t.1).await;
            }
        }
        let (i, cfd) = self.fd_file(fd)?;
        let first = match self.sub(i) {
            Ok(c) => f(c.clone(), cfd.clone()).await,
            Err(e) => Err(e),
        };
        match first {
            Err(e) if e == Errno::EREMOTE || e == Errno::EBADF || e == Errno::ENOTCONN => {
                if self.fd_file(fd)?.0 == i && e == Errno::EBADF {
                    return Err(e);
                }
                let Some(t) = &turn else {
                    return Err(e);
                };
                t.0.retrying
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let r = async {
                    if self.fd_file(fd)?.0 == i {
                        // A subvolume that is down may be one being removed, whose
                        // files a rebalance moved away: the file is followed if it
                        // lives elsewhere now, and the error stands if not.
                        let wait = e != Errno::ENOTCONN;
                        self.relocate(ctx, fd, i, cfd, wait).await.map_err(|r| {
                            if wait {
                                r
                            } else {
                                e
                            }
                        })?;
                    }
                    // Sent again in the order first sent.
                    t.0.wait_turn(t.1).await;
                    let (j, nfd) = self.fd_file(fd)?;
                    f(self.sub(j)?.clone(), nfd).await
                }
                .await;
                t.0.retrying
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                r
            }
            r => r,
        }
    }

    /// Forgets that `g` lives on `i` (it moved).
    fn forget(&self, g: Gfid, i: usize) {
        let mut f = self.files.lock();
        if f.get(&g) == Some(&i) {
            f.remove(&g);
        }
    }

    /// File `fd` was moved off subvolume `old` (where it is open as `old_fd`): finds it
    /// again, opens it there and sends the fd's FOPs there from now on. The mover makes
    /// the new copy a plain file right after the move commits, so with `wait` a copy not
    /// found yet is looked for again for up to 3 s; without, it is looked for once.
    async fn relocate(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        old: usize,
        old_fd: FdRef,
        wait: bool,
    ) -> Result<(), Errno> {
        let g = fd.gfid;
        let loc = Loc::inode(g);
        let mut tries = 0;
        let new = loop {
            self.forget(g, old);
            match self.lookup_gfid(ctx, g, &loc).await {
                Ok(Found {
                    at: Where::File(j), ..
                }) if j != old => break j,
                Ok(_) | Err(Errno::ESTALE) | Err(Errno::ENOENT) if wait && tries < 60 => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Ok(_) => return Err(Errno::ESTALE),
                Err(e) => return Err(e),
            }
        };
        let flags = fd.flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC);
        let nfd = Fd::new(g, flags, false);
        // The fd was allowed when it was opened; reopening it is not a new access check.
        self.sub(new)?
            .open(&Ctx::internal(), &loc, &nfd, Xdata::new())
            .await?;
        let swapped = match self.fd_state(fd).as_deref() {
            Some(FdState::File(m, _)) => {
                let mut st = m.lock();
                if st.sub == old {
                    st.sub = new;
                    st.alt = Some(nfd.clone());
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        let ictx = Ctx::internal();
        if swapped {
            tracing::debug!(
                "{}: {g} moved from {} to {}; its fd follows",
                self.name,
                self.children[old].name(),
                self.children[new].name()
            );
            let _ = self.children[old]
                .release(&ictx, &old_fd, Xdata::new())
                .await;
        } else {
            // Another FOP on this fd relocated it first.
            let _ = self.children[new].release(&ictx, &nfd, Xdata::new()).await;
        }
        let _ = ctx;
        Ok(())
    }

    /// Runs `f` on subvolume `i`, which holds the inode `loc` names; when the inode turns
    /// out to have moved (`EREMOTE`, or `ESTALE` for a gfid whose copy here is gone), finds
    /// it again and runs `f` there.
    async fn on_file<T, Fut>(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        i: usize,
        f: impl Fn(XlatorRef) -> Fut,
    ) -> Result<T, Errno>
    where
        Fut: Future<Output = Result<T, Errno>>,
    {
        match f(self.sub(i)?.clone()).await {
            Err(e) if (e == Errno::EREMOTE || e == Errno::ESTALE) && loc.gfid.is_some() => {
                let g = loc.gfid.unwrap_or_default();
                self.forget(g, i);
                let again = if loc.parent.is_some() && loc.name.is_some() {
                    self.lookup_name(ctx, loc).await
                } else {
                    self.lookup_gfid(ctx, g, loc).await
                };
                match again {
                    Ok(Found {
                        at: Where::File(j),
                        iatt,
                        ..
                    }) if j != i && iatt.gfid == g => f(self.sub(j)?.clone()).await,
                    _ => Err(Errno::ESTALE),
                }
            }
            r => r,
        }
    }

    /// The subvolumes that opened a directory fd (`None` for a file fd).
    fn fd_dirs(&self, fd: &FdRef) -> Option<Vec<usize>> {
        match self.fd_state(fd).as_deref() {
            Some(FdState::Dir(d)) => Some(
                d.lock()
                    .opened
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| **o)
                    .map(|(i, _)| i)
                    .collect(),
            ),
            _ => None,
        }
    }

    /// Runs `f` on the subvolumes in `which` at once; the first one's answer.
    async fn on<T, Fut>(&self, which: &[usize], f: impl Fn(XlatorRef) -> Fut) -> Result<T, Errno>
    where
        Fut: Future<Output = Result<T, Errno>>,
    {
        let f = &f;
        pick(
            join_all(which.iter().map(|&i| async move {
                let c = self.sub(i)?.clone();
                f(c).await
            }))
            .await,
        )
    }

    // ==== creation ====

    /// Where a new non-directory `parent/name` goes: its hashed subvolume, after checking
    /// (when the parent's layout is not complete) that the name is nowhere else.
    async fn place_new(&self, ctx: &Ctx, loc: &Loc) -> Result<usize, Errno> {
        let (parent, name) = entry_of(loc)?;
        let l = self.layout(ctx, parent).await?;
        if !l.complete {
            match self.lookup_name(ctx, loc).await {
                Ok(_) => return Err(Errno::EEXIST),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
        self.hashed(&l, name)
    }

    fn with_gfid_req(xd: &Xdata) -> (Xdata, Gfid) {
        let mut xd = xd.clone();
        let g = xd
            .get_gfid(GFID_REQ_KEY)
            .unwrap_or_else(Gfid::for_new_inode);
        xd.set(GFID_REQ_KEY, g.0.to_vec());
        (xd, g)
    }

    // ==== listings ====

    async fn list(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        plus: bool,
    ) -> Fop<Vec<Dirent>> {
        let st = self.fd_state(fd).ok_or(Errno::EBADF)?;
        let FdState::Dir(ds) = &*st else {
            return Err(Errno::ENOTDIR);
        };
        let (opened, dir_subvol, hint, start) = {
            let d = ds.lock();
            let start = self.split.decode(offset, &d.table).ok_or(Errno::EINVAL)?;
            (d.opened.clone(), d.dir_subvol, d.hint, start)
        };
        let (mut i, mut coff) = start;
        let n = self.n();
        let mut pre: HashMap<usize, Result<Vec<Dirent>, Errno>> = HashMap::new();
        let mut speculated = false;
        let fetch = |j: usize, off: u64| async move {
            let c = self.sub(j)?.clone();
            c.readdirp(ctx, fd, size, off, Xdata::new())
                .await
                .map(|(b, _)| b)
        };
        loop {
            if i >= n {
                return Ok((Vec::new(), Xdata::new()));
            }
            if !opened[i] {
                i += 1;
                coff = 0;
                continue;
            }
            let batch = if let Some(b) = (coff == 0).then(|| pre.remove(&i)).flatten() {
                b
            } else if !speculated && ((i == 0 && coff == 0) || hint == Some((i, coff))) {
                // Read this subvolume and the first batch of every later one at once.
                speculated = true;
                let later: Vec<usize> = (i + 1..n).filter(|&j| opened[j]).collect();
                let mut rs = join_all(
                    std::iter::once((i, coff))
                        .chain(later.iter().map(|&j| (j, 0)))
                        .map(|(j, off)| fetch(j, off)),
                )
                .await
                .into_iter();
                let b = rs.next().unwrap_or(Ok(Vec::new()));
                for (j, r) in later.into_iter().zip(rs) {
                    pre.insert(j, r);
                }
                b
            } else {
                fetch(i, coff).await
            };
            let batch = match batch {
                Ok(b) => b,
                // A subvolume down: list the others.
                Err(Errno::ENOTCONN) => {
                    i += 1;
                    coff = 0;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let Some(last) = batch.last() else {
                i += 1;
                coff = 0;
                continue;
            };
            coff = last.offset;
            let bytes: u64 = batch
                .iter()
                .map(|d| ((24 + d.name.len() as u64 + 128) + 7) & !7)
                .sum();
            let short = bytes < size as u64 / 2;
            let mut out = Vec::with_capacity(batch.len());
            for mut d in batch {
                let dots = d.name == b"." || d.name == b"..";
                if dots || d.kind == FileType::Directory {
                    if i != dir_subvol {
                        continue;
                    }
                } else if let Some(ia) = &d.iatt {
                    if link_mode(ia) && !matches!(self.linkto(i, ia.gfid).await, Ok(Link::Plain)) {
                        continue;
                    }
                    self.remember(ia.gfid, i);
                }
                if !plus {
                    d.iatt = None;
                }
                out.push(d);
            }
            if out.is_empty() {
                continue;
            }
            let mut d = ds.lock();
            for e in &mut out {
                e.offset = self.split.encode(i, e.offset, &mut d.table);
            }
            d.hint = short.then_some((i, coff));
            return Ok((out, Xdata::new()));
        }
    }

    // ==== renames ====

    async fn rename_dir(
        &self,
        ctx: &Ctx,
        old: &Loc,
        new: &Loc,
        dst: Option<&Found>,
        flags: u32,
        xd: Xdata,
    ) -> Fop<()> {
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        match dst {
            Some(d) if d.at != Where::Dir => {
                return Err(if exchange {
                    Errno(libc::EXDEV)
                } else {
                    Errno::ENOTDIR
                })
            }
            Some(d) if !exchange => self.clear_for_removal(ctx, d.iatt.gfid).await?,
            _ => {}
        }
        if self.any_down() {
            return Err(Errno::ENOTCONN);
        }
        let (np, nn) = entry_of(new)?;
        let nl = self.layout(ctx, np).await?;
        let h = self.hashed(&nl, nn)?;
        let r = self.children[h]
            .rename(ctx, old, new, flags, xd.clone())
            .await?;
        let rs = self
            .all(|i, c| {
                let xd = xd.clone();
                async move {
                    if i == h {
                        return Ok(((), Xdata::new()));
                    }
                    c.rename(ctx, old, new, flags, xd).await
                }
            })
            .await;
        for (i, r) in rs.into_iter().enumerate() {
            if let Err(e) = r {
                tracing::warn!(
                    "{}: renaming directory {} to {} on {} failed: {e}",
                    self.name,
                    old.describe(),
                    new.describe(),
                    self.children[i].name()
                );
            }
        }
        if let Some(d) = dst.filter(|_| !exchange) {
            self.layouts.lock().remove(&d.iatt.gfid);
        }
        Ok(r)
    }

    async fn rename_file(
        &self,
        ctx: &Ctx,
        old: &Loc,
        new: &Loc,
        src: &Found,
        dst: Option<&Found>,
        flags: u32,
        xd: Xdata,
    ) -> Fop<()> {
        let (op, on) = entry_of(old)?;
        let (np, nn) = entry_of(new)?;
        let Where::File(s) = src.at else {
            return Err(Errno::EINVAL);
        };
        let g = src.iatt.gfid;
        let nl = self.layout(ctx, np).await?;
        let nh = self.hashed(&nl, nn)?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            let Some(d) = dst else {
                return Err(Errno::ENOENT);
            };
            let Where::File(t) = d.at else {
                return Err(Errno(libc::EXDEV));
            };
            if s == t {
                return self.children[s].rename(ctx, old, new, flags, xd).await;
            }
            // Each inode stays on its subvolume; each renames there, then the names' link
            // files are pointed at their new data.
            self.sub(s)?;
            self.sub(t)?;
            let ol = self.layout(ctx, op).await?;
            let oh = self.hashed(&ol, on)?;
            self.children[s]
                .rename(ctx, old, new, 0, xd.clone())
                .await?;
            if let Err(e) = self.children[t].rename(ctx, new, old, 0, xd).await {
                let _ = self.children[s]
                    .rename(ctx, new, old, 0, Xdata::new())
                    .await;
                return Err(e);
            }
            self.ensure_link(oh, op, on, d.iatt.gfid, t).await?;
            self.ensure_link(nh, np, nn, g, s).await?;
            return Ok(((), Xdata::new()));
        }
        let dst_data = dst.and_then(|d| match d.at {
            Where::File(t) => Some(t),
            Where::Dir => None,
        });
        let dst_link = dst.and_then(|d| d.link);
        // 1. The new name's link file, when its data will not be on its hashed subvolume.
        let mut made = false;
        if nh != s && dst_data != Some(nh) {
            if dst_link == Some(nh) {
                self.ensure_link(nh, np, nn, g, s).await?;
            } else {
                self.make_link(nh, np, nn, g, s).await?;
                made = true;
            }
        }
        // 2. The rename where the data is (replacing the destination there, if any).
        if let Err(e) = self.sub(s)?.rename(ctx, old, new, flags, xd).await {
            if made {
                self.drop_link(nh, np, nn).await;
            }
            return Err(e);
        }
        // 3. The replaced destination's data on another subvolume.
        if let Some(t) = dst_data.filter(|&t| t != s) {
            let dl = entry_loc(np, nn, new.path.as_ref());
            if let Err(e) = self.sub(t)?.unlink(ctx, &dl, Xdata::new()).await {
                tracing::warn!(
                    "{}: rename over {}: removing the old data on {} failed: {e}",
                    self.name,
                    new.describe(),
                    self.children[t].name()
                );
            }
            if t == nh {
                self.make_link(nh, np, nn, g, s).await?;
            }
        }
        // 4. The old name's link file.
        if let Some(l) = src.link {
            self.drop_link(l, op, on).await;
        }
        Ok(((), Xdata::new()))
    }
}

#[async_trait::async_trait]
impl Xlator for Distribute {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    async fn notify(&self, from: &str, event: Event) -> Option<Event> {
        let idx = self.children.iter().position(|c| c.name() == from);
        let (Some(i), up) = (
            idx,
            match &event {
                Event::ChildUp(_) => true,
                Event::ChildDown(_) => false,
                _ => return Some(event),
            },
        ) else {
            return Some(event);
        };
        let any_up = {
            let mut st = self.state.lock();
            st[i] = Some(up);
            if st.iter().any(Option::is_none) {
                // Wait until every subvolume has said something.
                return None;
            }
            st.contains(&Some(true))
        };
        if !up {
            tracing::warn!(
                "{}: subvolume {from} is down: names hashing to it answer ENOTCONN",
                self.name
            );
        }
        let mut last = self.announced.lock();
        if *last == Some(any_up) {
            return None;
        }
        *last = Some(any_up);
        Some(if any_up {
            Event::ChildUp(self.name.clone())
        } else {
            Event::ChildDown(self.name.clone())
        })
    }

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        self.set_decommissioned(options)?;
        self.lease_dirs
            .store(options.bool("lease-directories"), Ordering::Relaxed);
        Ok(())
    }

    fn dump(&self) -> String {
        let st = self.state.lock().clone();
        let mut out = String::new();
        for (c, s) in self.children.iter().zip(st) {
            out.push_str(&format!(
                "subvolume {} {}\n",
                c.name(),
                match s {
                    None => "unknown",
                    Some(true) => "up",
                    Some(false) => "down",
                }
            ));
        }
        out.push_str(&format!(
            "layouts cached {}\nfiles located {}\n",
            self.layouts.lock().len(),
            self.files.lock().len()
        ));
        let d = self.decommissioned.lock();
        if !d.is_empty() {
            let names: Vec<&str> = d.iter().map(|&i| self.children[i].name()).collect();
            out.push_str(&format!("decommissioned {}\n", names.join(",")));
        }
        out
    }

    // ==== inode FOPs ====

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        if let (Some(max), Some(g), None) = (xd.get_u64(QUICK_READ_KEY), loc.gfid, &loc.name) {
            if let Some(r) = self
                .lookup_content(ctx, g, loc, max, xd.get(NAME_HINT_KEY))
                .await
            {
                return r;
            }
        }
        let f = if loc.parent.is_some() && loc.name.is_some() {
            self.lookup_name(ctx, loc).await?
        } else if let Some(g) = loc.gfid {
            if g.is_root() || self.layouts.lock().contains_key(&g) {
                self.lookup_dir(ctx, loc).await?
            } else {
                self.lookup_gfid(ctx, g, loc).await?
            }
        } else {
            return Err(Errno::EINVAL);
        };
        Ok((f.iatt, Xdata::new()))
    }

    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.stat(ctx, loc, xd).await }
                })
                .await
            }
            Where::Dir => pick_dir(
                self.all(|_, c| {
                    let xd = xd.clone();
                    async move { c.stat(ctx, loc, xd).await }
                })
                .await,
            ),
        }
    }
    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        if let Some(which) = self.fd_dirs(fd) {
            let rs = join_all(which.iter().map(|&i| {
                let xd = xd.clone();
                async move { self.sub(i)?.fstat(ctx, fd, xd).await }
            }))
            .await;
            return pick_dir(rs);
        }
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fstat(ctx, &f, xd).await }
        })
        .await
    }
    async fn access(&self, ctx: &Ctx, loc: &Loc, mask: u32, xd: Xdata) -> Fop<()> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.access(ctx, loc, mask, xd).await }
                })
                .await
            }
            Where::Dir => {
                self.first(|_, c| {
                    let xd = xd.clone();
                    async move { c.access(ctx, loc, mask, xd).await }
                })
                .await
            }
        }
    }
    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.setattr(ctx, loc, attr, xd).await }
                })
                .await
            }
            Where::Dir => pick_dir(
                self.all(|_, c| {
                    let xd = xd.clone();
                    async move { c.setattr(ctx, loc, attr, xd).await }
                })
                .await,
            ),
        }
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        if let Some(which) = self.fd_dirs(fd) {
            let rs = join_all(which.iter().map(|&i| {
                let xd = xd.clone();
                async move { self.sub(i)?.fsetattr(ctx, fd, attr, xd).await }
            }))
            .await;
            return pick_dir(rs);
        }
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fsetattr(ctx, &f, attr, xd).await }
        })
        .await
    }
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.truncate(ctx, loc, size, xd).await }
                })
                .await
            }
            Where::Dir => Err(Errno::EISDIR),
        }
    }
    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.ftruncate(ctx, &f, size, xd).await }
        })
        .await
    }
    async fn readlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<PathBuf> {
        match self.target(ctx, loc).await? {
            Where::File(i) => self.sub(i)?.readlink(ctx, loc, xd).await,
            Where::Dir => Err(Errno::EINVAL),
        }
    }
    async fn statfs(&self, ctx: &Ctx, _loc: &Loc, xd: Xdata) -> Fop<StatVfs> {
        let rs = self
            .all(|_, c| {
                let xd = xd.clone();
                async move { c.statfs(ctx, &Loc::root(), xd).await }
            })
            .await;
        let ok: Vec<StatVfs> = rs
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|(s, _)| *s)
            .collect();
        if ok.is_empty() {
            return pick(rs);
        }
        let frsize = ok.iter().map(|s| s.frsize.max(1)).max().unwrap_or(4096);
        let scale = |v: u64, f: u64| (v as u128 * f.max(1) as u128 / frsize as u128) as u64;
        let mut out = StatVfs {
            bsize: ok.iter().map(|s| s.bsize).max().unwrap_or(frsize),
            frsize,
            namemax: ok.iter().map(|s| s.namemax).min().unwrap_or(255),
            ..StatVfs::default()
        };
        for s in &ok {
            out.blocks += scale(s.blocks, s.frsize);
            out.bfree += scale(s.bfree, s.frsize);
            out.bavail += scale(s.bavail, s.frsize);
            out.files += s.files;
            out.ffree += s.ffree;
        }
        Ok((out, Xdata::new()))
    }

    // ==== entry FOPs ====

    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        // A directory lease is asked of every subvolume's copy and granted only when each
        // granted its own: another client reaches the directory through any of them, and
        // the one it reaches recalls the lease (each brick's recall reaches the holder).
        let mut xd = xd;
        if !self.lease_dirs.load(Ordering::Relaxed) {
            xd.0.remove(weft_core::LEASE_KEY);
        }
        let lease = xd.has(weft_core::LEASE_KEY);
        let h = self.place_new(ctx, loc).await?;
        let (p, n) = entry_of(loc)?;
        let (xd, want) = Self::with_gfid_req(&xd);
        // The new directory's layout lock, taken while the first mkdir runs (a lock needs
        // no inode): a rebalance finding the directory before its pieces are all written
        // waits for them.
        let (made, lock) = futures::join!(
            self.children[h].mkdir(ctx, loc, mode, umask, xd),
            layout_lock::lock_layout(&self.children[0], want)
        );
        let (ia, hxd) = made?;
        let leased = AtomicUsize::new(usize::from(lease && hxd.has(weft_core::LEASE_KEY)));
        let lock = match lock {
            Ok(lock) if ia.gfid == want => Some(lock),
            // The brick gave the directory another gfid (the one asked for was taken).
            Ok(other) => {
                other.unlock().await;
                layout_lock::lock_layout(&self.children[0], ia.gfid)
                    .await
                    .ok()
            }
            Err(_) => None,
        };
        let mut oxd = Xdata::new();
        oxd.set(GFID_REQ_KEY, ia.gfid.0.to_vec());
        if lease {
            oxd.set(weft_core::LEASE_KEY, Vec::new());
        }
        let (oxd, leased_ref) = (&oxd, &leased);
        let rs = self
            .all(|i, c| async move {
                if i == h {
                    return Ok(ia);
                }
                match c.mkdir(ctx, loc, mode, umask, oxd.clone()).await {
                    Ok((x, rxd)) => {
                        if rxd.has(weft_core::LEASE_KEY) {
                            leased_ref.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(x)
                    }
                    Err(Errno::EEXIST) => {
                        match c.lookup(ctx, &Loc::entry(p, n), Xdata::new()).await {
                            Ok((x, _)) if x.is_dir() && x.gfid == ia.gfid => Ok(x),
                            _ => Err(Errno::EEXIST),
                        }
                    }
                    Err(e) => Err(e),
                }
            })
            .await;
        let mut members = Vec::new();
        let mut made = Vec::new();
        for (i, r) in rs.into_iter().enumerate() {
            match r {
                Ok(x) => {
                    members.push(i);
                    made.push(x);
                }
                Err(e) => tracing::warn!(
                    "{}: mkdir {} on {} failed: {e}; a later lookup heals it",
                    self.name,
                    loc.describe(),
                    self.children[i].name()
                ),
            }
        }
        let complete = members.len() == self.n();
        let members = self.layout_members(&members);
        let l = Layout::equal(
            &members,
            raw_hash(&ia.gfid.0) as usize,
            raw_hash(&[&ia.gfid.0[..], &(members.len() as u32).to_be_bytes()].concat()),
            complete,
        );
        self.write_layout(ia.gfid, &l).await;
        self.cache_layout(ia.gfid, Arc::new(l));
        if let Some(lock) = lock {
            // Given back in the background: nothing of this mkdir waits for it.
            drop(lock);
        }
        let mut rxd = Xdata::new();
        if lease && complete && leased.load(Ordering::Relaxed) == self.n() {
            rxd.set(weft_core::LEASE_KEY, Vec::new());
        }
        Ok((merge_dir(&made).unwrap_or(ia), rxd))
    }

    async fn rmdir(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        let f = self.lookup_name(ctx, loc).await?;
        if f.at != Where::Dir {
            return Err(Errno::ENOTDIR);
        }
        let g = f.iatt.gfid;
        self.clear_for_removal(ctx, g).await?;
        let (p, n) = entry_of(loc)?;
        let l = self.layout(ctx, p).await?;
        let h = self.hashed(&l, n)?;
        let rs = self
            .all(|i, c| {
                let xd = xd.clone();
                async move {
                    if i == h {
                        return Ok(((), Xdata::new()));
                    }
                    match c.rmdir(ctx, loc, xd).await {
                        Err(Errno::ENOENT) => Ok(((), Xdata::new())),
                        r => r,
                    }
                }
            })
            .await;
        if let Some(e) = rs.into_iter().find_map(|r| r.err()) {
            return Err(e);
        }
        let r = self.children[h].rmdir(ctx, loc, xd).await;
        self.layouts.lock().remove(&g);
        r
    }

    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        // Fast path: the caller names the inode, this translator knows it lives on the
        // name's hashed subvolume, so there is no link file: unlink it there at once. Any
        // doubt (not known, not hashed there, gone meanwhile) takes the full path.
        if let Some((s, g)) = self.unlink_here(loc) {
            // The brick removes the name only if it is still this inode (another client
            // may have renamed something else over it: then the full path below).
            let mut only = xd.clone();
            only.set(UNLINK_GFID_KEY, g.0.to_vec());
            match self.sub(s)?.unlink(ctx, loc, only).await {
                Ok(r) => return Ok(r),
                Err(Errno::ENOENT) | Err(Errno::ESTALE) | Err(Errno::EISDIR) => {}
                Err(e) => return Err(e),
            }
        }
        let f = self.lookup_name(ctx, loc).await?;
        let Where::File(s) = f.at else {
            return Err(Errno::EISDIR);
        };
        let r = self.sub(s)?.unlink(ctx, loc, xd).await?;
        if let Some(l) = f.link {
            let (p, n) = entry_of(loc)?;
            self.drop_link(l, p, n).await;
        }
        // The gfid stays mapped: an open file lives on after its last name goes.
        Ok(r)
    }

    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        let (op, on) = entry_of(old)?;
        let (np, nn) = entry_of(new)?;
        let src = self.lookup_name(ctx, old).await?;
        if op == np && on == nn {
            return Ok(((), Xdata::new()));
        }
        let dst = match self.lookup_name(ctx, new).await {
            Ok(f) => Some(f),
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(e),
        };
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if let Some(d) = &dst {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            if d.iatt.gfid == src.iatt.gfid && !exchange {
                // Two names of one inode: rename does nothing.
                return Ok(((), Xdata::new()));
            }
        } else if exchange {
            return Err(Errno::ENOENT);
        }
        if src.at == Where::Dir {
            return self
                .rename_dir(ctx, old, new, dst.as_ref(), flags, xd)
                .await;
        }
        if let Some(d) = &dst {
            if d.at == Where::Dir {
                return Err(if exchange {
                    Errno(libc::EXDEV)
                } else {
                    Errno::EISDIR
                });
            }
        }
        self.rename_file(ctx, old, new, &src, dst.as_ref(), flags, xd)
            .await
    }

    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, xd: Xdata) -> Fop<Iatt> {
        let s = match self.target(ctx, old).await? {
            Where::File(s) => s,
            Where::Dir => return Err(Errno::EPERM),
        };
        let nh = self.place_new(ctx, new).await?;
        let (np, nn) = entry_of(new)?;
        let g = match old.gfid {
            Some(g) => g,
            None => self.lookup_name(ctx, old).await?.iatt.gfid,
        };
        if nh != s {
            self.make_link(nh, np, nn, g, s).await?;
        }
        match self.sub(s)?.link(ctx, old, new, xd).await {
            Ok(r) => Ok(r),
            Err(e) => {
                if nh != s {
                    self.drop_link(nh, np, nn).await;
                }
                Err(e)
            }
        }
    }

    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let h = self.place_new(ctx, loc).await?;
        let (xd, _) = Self::with_gfid_req(&xd);
        let (ia, x) = self.children[h]
            .symlink(ctx, target, loc, umask, xd)
            .await?;
        self.remember(ia.gfid, h);
        Ok((ia, x))
    }

    async fn mknod(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        mode: u32,
        rdev: u64,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let h = self.place_new(ctx, loc).await?;
        let (xd, _) = Self::with_gfid_req(&xd);
        let (ia, x) = self.children[h]
            .mknod(ctx, loc, mode, rdev, umask, xd)
            .await?;
        self.remember(ia.gfid, h);
        Ok((ia, x))
    }

    // ==== file I/O ====

    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let i = match self.target(ctx, loc).await? {
            Where::File(i) => i,
            Where::Dir => (0..self.n())
                .find(|&i| self.is_up(i))
                .ok_or(Errno::ENOTCONN)?,
        };
        // Where it opened (another subvolume when the file moved meanwhile).
        let at = Mutex::new(i);
        let r = self
            .on_file(ctx, loc, i, |c| {
                let xd = xd.clone();
                let at = &at;
                async move {
                    let r = c.open(ctx, loc, fd, xd).await;
                    if r.is_ok() {
                        if let Some(j) = self.children.iter().position(|x| x.name() == c.name()) {
                            *at.lock() = j;
                        }
                    }
                    r
                }
            })
            .await?;
        fd.set_ctx(&self.name, FdState::file(*at.lock()));
        Ok(r)
    }

    async fn create(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        mode: u32,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let (parent, name) = entry_of(loc)?;
        let l = self.layout(ctx, parent).await?;
        let (mut xd, want) = Self::with_gfid_req(&xd);
        // Not asked of a create with content, as of a write: a rebalance may be moving
        // the file.
        xd.0.remove(POSTSTAT_KEY);
        let mut at = None;
        if l.complete {
            let h = self.hashed(&l, name)?;
            match self.children[h]
                .create(ctx, loc, fd, mode, umask, xd.clone())
                .await
            {
                Ok((ia, x)) if !(link_mode(&ia) && ia.gfid != want) => {
                    self.remember(ia.gfid, h);
                    fd.set_ctx(&self.name, FdState::file(h));
                    return Ok((ia, x));
                }
                Ok(_) => {
                    // It opened an existing link file: close that, open the data below.
                    let _ = self.children[h].release(ctx, fd, Xdata::new()).await;
                }
                Err(Errno::EACCES) => {}
                Err(e) => return Err(e),
            }
            at = Some(h);
        }
        let i = match self.lookup_name(ctx, loc).await {
            Ok(f) => match f.at {
                Where::File(i) => {
                    if fd.flags & libc::O_EXCL != 0 {
                        return Err(Errno::EEXIST);
                    }
                    i
                }
                Where::Dir => return Err(Errno::EISDIR),
            },
            Err(Errno::ENOENT) => match at {
                Some(h) => h,
                None => self.hashed(&l, name)?,
            },
            Err(e) => return Err(e),
        };
        let (ia, x) = self.sub(i)?.create(ctx, loc, fd, mode, umask, xd).await?;
        self.remember(ia.gfid, i);
        fd.set_ctx(&self.name, FdState::file(i));
        Ok((ia, x))
    }

    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.readv(ctx, &f, size, offset, xd).await }
        })
        .await
    }
    async fn writev(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        data: Bytes,
        offset: u64,
        mut xd: Xdata,
    ) -> Fop<u64> {
        // As for flush: a file being moved would answer its old copy's attributes.
        xd.0.remove(POSTSTAT_KEY);
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            let data = data.clone();
            async move { c.writev(ctx, &f, data, offset, xd).await }
        })
        .await
    }
    async fn flush(&self, ctx: &Ctx, fd: &FdRef, mut xd: Xdata) -> Fop<()> {
        // A file being moved answers its old copy's attributes: not asked.
        xd.0.remove(POSTSTAT_KEY);
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.flush(ctx, &f, xd).await }
        })
        .await
    }
    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, mut xd: Xdata) -> Fop<()> {
        xd.0.remove(POSTSTAT_KEY);
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fsync(ctx, &f, datasync, xd).await }
        })
        .await
    }
    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        if self.fd_dirs(fd).is_some() {
            return self.releasedir(ctx, fd, xd).await;
        }
        let (i, cfd) = self.fd_file(fd)?;
        let r = self.children[i].release(ctx, &cfd, xd).await;
        fd.take_ctx::<FdState>(&self.name);
        r
    }
    async fn fallocate(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        mode: i32,
        offset: u64,
        len: u64,
        xd: Xdata,
    ) -> Fop<()> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fallocate(ctx, &f, mode, offset, len, xd).await }
        })
        .await
    }
    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.discard(ctx, &f, offset, len, xd).await }
        })
        .await
    }
    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.zerofill(ctx, &f, offset, len, xd).await }
        })
        .await
    }
    async fn seek(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        what: SeekWhat,
        xd: Xdata,
    ) -> Fop<u64> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.seek(ctx, &f, offset, what, xd).await }
        })
        .await
    }
    async fn rchecksum(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        len: u32,
        xd: Xdata,
    ) -> Fop<Checksum> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.rchecksum(ctx, &f, offset, len, xd).await }
        })
        .await
    }

    // ==== directories ====

    async fn opendir(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        if let Where::File(i) = self.target(ctx, loc).await? {
            // Let the subvolume say ENOTDIR.
            return self.sub(i)?.opendir(ctx, loc, fd, xd).await;
        }
        let rs = self
            .all(|_, c| {
                let xd = xd.clone();
                async move { c.opendir(ctx, loc, fd, xd).await }
            })
            .await;
        let opened: Vec<bool> = rs.iter().map(Result::is_ok).collect();
        let Some(dir_subvol) = opened.iter().position(|o| *o) else {
            return pick(rs);
        };
        fd.set_ctx(
            &self.name,
            Arc::new(FdState::Dir(Mutex::new(DirState {
                opened,
                dir_subvol,
                table: Table::default(),
                hint: None,
            }))),
        );
        Ok(((), Xdata::new()))
    }
    async fn readdir(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        _xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        self.list(ctx, fd, size, offset, false).await
    }
    async fn readdirp(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        _xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        self.list(ctx, fd, size, offset, true).await
    }
    async fn fsyncdir(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let which = self.fd_dirs(fd).ok_or(Errno::EBADF)?;
        self.on(&which, |c| {
            let xd = xd.clone();
            async move { c.fsyncdir(ctx, fd, datasync, xd).await }
        })
        .await
    }
    async fn releasedir(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let Some(which) = self.fd_dirs(fd) else {
            // Opened by a subvolume alone (see opendir of a non-directory).
            if let Some(FdState::File(m, _)) = self.fd_state(fd).as_deref() {
                let i = m.lock().sub;
                return self.children[i].releasedir(ctx, fd, xd).await;
            }
            return Ok(((), Xdata::new()));
        };
        join_all(which.iter().map(|&i| {
            let xd = xd.clone();
            let c = self.children[i].clone();
            async move { c.releasedir(ctx, fd, xd).await }
        }))
        .await;
        fd.take_ctx::<FdState>(&self.name);
        Ok(((), Xdata::new()))
    }

    // ==== xattrs ====

    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.getxattr(ctx, loc, name, xd).await }
                })
                .await
            }
            Where::Dir => {
                self.first(|_, c| {
                    let xd = xd.clone();
                    async move { c.getxattr(ctx, loc, name, xd).await }
                })
                .await
            }
        }
    }
    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fgetxattr(ctx, &f, name, xd).await }
        })
        .await
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.setxattr(ctx, loc, attrs, flags, xd).await }
                })
                .await
            }
            Where::Dir => pick(
                self.all(|_, c| {
                    let xd = xd.clone();
                    async move { c.setxattr(ctx, loc, attrs, flags, xd).await }
                })
                .await,
            ),
        }
    }
    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        if let Some(which) = self.fd_dirs(fd) {
            return self
                .on(&which, |c| {
                    let xd = xd.clone();
                    async move { c.fsetxattr(ctx, fd, attrs, flags, xd).await }
                })
                .await;
        }
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fsetxattr(ctx, &f, attrs, flags, xd).await }
        })
        .await
    }
    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.removexattr(ctx, loc, name, xd).await }
                })
                .await
            }
            Where::Dir => pick(
                self.all(|_, c| {
                    let xd = xd.clone();
                    async move { c.removexattr(ctx, loc, name, xd).await }
                })
                .await,
            ),
        }
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        if let Some(which) = self.fd_dirs(fd) {
            return self
                .on(&which, |c| {
                    let xd = xd.clone();
                    async move { c.fremovexattr(ctx, fd, name, xd).await }
                })
                .await;
        }
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fremovexattr(ctx, &f, name, xd).await }
        })
        .await
    }
    async fn xattrop(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        match self.target(ctx, loc).await? {
            Where::File(i) => {
                self.on_file(ctx, loc, i, |c| {
                    let xd = xd.clone();
                    async move { c.xattrop(ctx, loc, op, attrs, xd).await }
                })
                .await
            }
            Where::Dir => pick(
                self.all(|_, c| {
                    let xd = xd.clone();
                    async move { c.xattrop(ctx, loc, op, attrs, xd).await }
                })
                .await,
            ),
        }
    }
    async fn fxattrop(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        op: XattropOp,
        attrs: &XattrMap,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.fxattrop(ctx, &f, op, attrs, xd).await }
        })
        .await
    }

    // ==== locks ====

    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.lk(ctx, &f, cmd, lock, xd).await }
        })
        .await
    }
    async fn inodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        match self.target(ctx, loc).await? {
            Where::File(i) => self.sub(i)?.inodelk(ctx, domain, loc, cmd, lock, xd).await,
            Where::Dir => self.sub(0)?.inodelk(ctx, domain, loc, cmd, lock, xd).await,
        }
    }
    async fn finodelk(
        &self,
        ctx: &Ctx,
        domain: &str,
        fd: &FdRef,
        cmd: LkCmd,
        lock: &Flock,
        xd: Xdata,
    ) -> Fop<()> {
        self.on_fd(ctx, fd, |c, f| {
            let xd = xd.clone();
            async move { c.finodelk(ctx, domain, &f, cmd, lock, xd).await }
        })
        .await
    }
    async fn entrylk(
        &self,
        ctx: &Ctx,
        domain: &str,
        loc: &Loc,
        basename: Option<&OsString>,
        cmd: EntrylkCmd,
        kind: EntrylkType,
        xd: Xdata,
    ) -> Fop<()> {
        // Entry locks live on the first subvolume's copy of the directory.
        self.sub(0)?
            .entrylk(ctx, domain, loc, basename, cmd, kind, xd)
            .await
    }
}

/// The `cluster/distribute` type for the registry.
pub struct DistributeType;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "decommissioned",
        kind: weft_core::options::OptionKind::Str,
        default: Some(""),
        description: "Subvolumes being removed (names, comma separated): new directory layouts give them no range (GlusterFS's decommissioned-bricks). Changes live.",
    },
    OptionSpec {
        key: "lease-directories",
        kind: weft_core::options::OptionKind::Bool,
        default: Some("on"),
        description: "A mkdir asking for a directory lease (performance/entry-behind's) asks every subvolume and is granted one when each leased its copy; off: the request is removed and entry-behind sends every change through. Changes live.",
    },
];

impl XlatorType for DistributeType {
    fn type_name(&self) -> &'static str {
        "cluster/distribute"
    }
    fn description(&self) -> &'static str {
        "Spreads files over its subvolumes by the hash of their names; directories exist on all of them."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1024)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        let d = Distribute::new(init.name, init.children);
        d.set_decommissioned(&init.options)?;
        d.lease_dirs
            .store(init.options.bool("lease-directories"), Ordering::Relaxed);
        Ok(Arc::new(d))
    }
}
