//! `performance/quick-read`: keeps the whole content of small files in the client and
//! answers reads from it, and opens read-only files "behind" (answers `open` at once), as
//! GlusterFS's quick-read and open-behind do. It sits under md-cache in client graphs.
//!
//! **Content.** A `readv` that finds no fresh content for its file asks the child for it
//! with a `lookup` by gfid carrying [`QUICK_READ_KEY`] (`max-file-size`); a brick
//! (`storage/posix`) answers a regular file no larger with its whole content under
//! [`QUICK_READ_CONTENT_KEY`] and an iatt describing exactly that content. The content is
//! kept (if its length equals the iatt's size, and by the race rule below) and the read is
//! served from it; later reads of any fd of that file are served from memory until the
//! content is older than `cache-timeout` (at most 600 s) or dropped. A file that comes back
//! without content (too large, or the child does not honour the key) is remembered as such
//! for `cache-timeout`, and the fd that asked reads through the real file from then on. At
//! most `cache-size` bytes of content are kept, the least recently used going first. Reads
//! with xdata, of `O_DIRECT` or write-only fds, or while `enable` is off go down.
//!
//! **Open-behind.** An `open` for reading only (`flags & (O_ACCMODE | O_TRUNC | O_CREAT |
//! O_EXCL | O_APPEND | O_DIRECT) == O_RDONLY`) is answered `Ok` at once while `open-behind`
//! is on, and the real open is started in the background right then (so a file another
//! client unlinks just after stays readable through the fd). Nobody waits for it but the
//! FOPs that need the real fd: a read that the content cannot serve, and every other fd
//! FOP (write, fstat, fsync, flush, locks, fd xattrs, seek, fallocate...), each of which
//! waits and then fails with the open's error if it failed (but `flush`, which then has
//! nothing to flush, answers `Ok`). `release` of such an fd answers at once and releases
//! the real open when it is done (nothing when it failed).
//!
//! **Lazy open** (`lazy-open`, on by default, as GlusterFS's; with `enable` on): such an
//! open takes the file's content instead of opening it: the kept content, or one content
//! lookup made by the open (a file gone by then fails the open `ESTALE`). That content is
//! the fd's *snapshot*, replaced by each later read's; no real open is made until an FOP
//! needs the real fd, and the `flush` and `release` of an fd never opened stay here (but
//! a `flush` while an fd of this client that asked for a lock on the file is still open
//! opens and flushes for real: a close drops its owner's locks). When a later fetch finds
//! the file gone (unlinked through this client or another) and no change of its content
//! was told since the snapshot, within `min(SNAPSHOT_TRUST, cache-timeout)`, the snapshot
//! answers, as an open fd keeps an unlinked file readable; otherwise such a read fails
//! `ESTALE`. A file with no content to offer (one fetch found none, or a lookup, stat or
//! fstat passing up showed it larger than `max-file-size`: remembered for
//! `cache-timeout`) is opened behind instead.
//!
//! **Content from this client's writes.** A create through this client that makes an
//! empty regular file keeps its content (empty). A plain write (no xdata: not an append)
//! through this client to a file whose content is kept and fresh sets that content aside
//! while it runs and, when it wrote every byte and was the only write to the file in
//! flight and nothing else changed the file meanwhile, keeps the content with the write
//! applied (if still within `max-file-size`; `kept_from_writes` counts them). Its mtime is
//! then unknown until an answer passing up with the same size gives it. So a small file
//! written here is read back from memory, with no content lookup; a flush or fsync that
//! fails (a write acknowledged by write-behind that did not reach the file) drops it.
//!
//! **Coherence.** Other changes made through this client (truncates, setattr with a size,
//! fallocate/discard/zerofill, open with `O_TRUNC`, unlink, rename, writes that cannot be
//! applied) drop the file's content before and after they pass down (unlink and rename as
//! changes of names, not of content). Changes made elsewhere arrive as [`Event::Upcall`] invalidations through
//! [`Xlator::notify`]: an inode's (with or without `data`: its size may have changed)
//! drops its content; `All`, `ChildUp` and `ChildDown`
//! drop everything; the event is always passed on. A lookup, stat or fstat answer passing
//! up whose size or mtime differs from the kept content's drops it too.
//! **The race rule** (as md-cache's): every change bumps a counter and is remembered by
//! gfid in a ring of the last 4096; content fetched by a lookup is kept only if its file
//! saw no change since the lookup started (a ring that no longer reaches back counts as a
//! change).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::recency::Recency;
use tokio::sync::watch;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;

/// How many changes the race rule remembers.
const RING: usize = 4096;
/// Bytes each kept file counts for beyond its content (so empty and tiny files are
/// bounded by `cache-size` too).
const ENTRY_OVERHEAD: u64 = 256;
/// The largest `max-file-size` honoured (the brick's own cap).
const MAX_FILE_SIZE: u64 = 1 << 20;
/// The longest `cache-timeout` honoured.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The most files remembered as having no content to offer (cleared beyond).
const MAX_NO_CONTENT: usize = 65_536;
/// Open flags that keep an open from going behind: anything but a plain read-only open.
const NOT_BEHIND: i32 = libc::O_ACCMODE
    | libc::O_TRUNC
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_APPEND
    | libc::O_DIRECT;

/// The options in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Config {
    enable: bool,
    max_file_size: u64,
    cache_size: u64,
    timeout: Duration,
    open_behind: bool,
    lazy_open: bool,
}

impl Config {
    fn from_options(o: &Options) -> Config {
        Config {
            enable: o.bool("enable"),
            max_file_size: o.size("max-file-size").min(MAX_FILE_SIZE),
            cache_size: o.size("cache-size"),
            timeout: o.duration("cache-timeout").min(MAX_TIMEOUT),
            open_behind: o.bool("open-behind"),
            lazy_open: o.bool("lazy-open"),
        }
    }
}

/// The recent changes, for the race rule: change number `seq` is the latest; changes up to
/// `floor` are forgotten (an operation that started before `floor` counts as raced).
struct Ring {
    seq: u64,
    floor: u64,
    notes: VecDeque<(u64, Gfid)>,
    by_gfid: HashMap<Gfid, u64>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            seq: 0,
            floor: 0,
            notes: VecDeque::new(),
            by_gfid: HashMap::new(),
        }
    }

    /// Records a change of the content of `g`.
    fn note(&mut self, g: Gfid) {
        self.seq += 1;
        let s = self.seq;
        self.by_gfid.insert(g, s);
        self.notes.push_back((s, g));
        while self.notes.len() > RING {
            let Some((s, g)) = self.notes.pop_front() else {
                break;
            };
            self.floor = s;
            if self.by_gfid.get(&g) == Some(&s) {
                self.by_gfid.remove(&g);
            }
        }
    }

    /// Records a change of everything.
    fn all(&mut self) {
        self.seq += 1;
        self.floor = self.seq;
        self.notes.clear();
        self.by_gfid.clear();
    }

    /// Whether `g` changed after change number `start`.
    fn changed(&self, start: u64, g: &Gfid) -> bool {
        start < self.floor || self.by_gfid.get(g).is_some_and(|s| *s > start)
    }
}

/// The kept content of one file.
struct Content {
    data: Bytes,
    /// The file's size and mtime when it was read (what later answers are checked against).
    /// The mtime is unknown for content made by this client's writes (the brick sets it):
    /// the first answer passing up with the same size supplies it.
    size: u64,
    mtime: Option<Timespec>,
    at: Instant,
    gen: u64,
}

/// A file with writes of this client in flight: the content it had before them (`None`
/// once it cannot be carried over: several writes at once, or a change in between).
struct Pending {
    base: Option<Content>,
    writers: u32,
}

#[derive(Default)]
struct Counters {
    hits: u64,
    misses: u64,
    fetches: u64,
    evictions: u64,
    invalidations: u64,
    opens_behind: u64,
    opens_lazy: u64,
    opens_never: u64,
    /// Contents made by applying this client's writes to kept content.
    kept_from_writes: u64,
}

/// Everything quick-read knows, under one lock.
struct State {
    cfg: Config,
    files: HashMap<Gfid, Content>,
    lru: Recency<Gfid>,
    /// Bytes of content kept.
    bytes: u64,
    /// Files a fetch found without content, and when.
    no_content: HashMap<Gfid, Instant>,
    /// Every change of a file's content or attributes (race rule for kept content).
    ring: Ring,
    /// Changes of a file's content only (not of its names or attributes): what a lazy
    /// fd's snapshot is checked against.
    data_ring: Ring,
    /// Files with writes of this client in flight.
    pending: HashMap<Gfid, Pending>,
    n: Counters,
}

impl State {
    fn new(cfg: Config) -> State {
        State {
            cfg,
            files: HashMap::new(),
            lru: Recency::new(),
            bytes: 0,
            no_content: HashMap::new(),
            ring: Ring::new(),
            data_ring: Ring::new(),
            pending: HashMap::new(),
            n: Counters::default(),
        }
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.cfg.timeout
    }

    /// The fresh content of `g`, marked as just used, and when it was fetched.
    fn get(&mut self, g: &Gfid, now: Instant) -> Option<(Bytes, Instant)> {
        let at = self.files.get(g)?.at;
        if !self.fresh(at, now) {
            self.remove(g);
            return None;
        }
        let gen = self.lru.stamp(g);
        let c = self.files.get_mut(g)?;
        c.gen = gen;
        let data = c.data.clone();
        self.tidy();
        Some((data, at))
    }

    /// Whether a fetch for `g` found no content lately.
    fn known_empty(&mut self, g: &Gfid, now: Instant) -> bool {
        match self.no_content.get(g) {
            Some(at) if self.fresh(*at, now) => true,
            Some(_) => {
                self.no_content.remove(g);
                false
            }
            None => false,
        }
    }

    /// Keeps `data` as the content of `ia`'s file unless caching is off, it is too large,
    /// or the file changed since `start`.
    fn put(&mut self, start: u64, ia: &Iatt, data: Bytes, now: Instant) {
        let g = ia.gfid;
        let len = data.len() as u64;
        if !self.cfg.enable
            || self.ring.changed(start, &g)
            || self.pending.contains_key(&g)
            || len > self.cfg.max_file_size
            || len > self.cfg.cache_size
        {
            return;
        }
        self.no_content.remove(&g);
        self.insert(g, data, Some(ia.mtime), now);
    }

    /// Keeps `data` as `g`'s content (replacing any), as of `at`.
    fn insert(&mut self, g: Gfid, data: Bytes, mtime: Option<Timespec>, at: Instant) {
        self.remove(&g);
        let len = data.len() as u64;
        let gen = self.lru.stamp(&g);
        self.files.insert(
            g,
            Content {
                data,
                size: len,
                mtime,
                at,
                gen,
            },
        );
        self.bytes += len + ENTRY_OVERHEAD;
        self.tidy();
    }

    /// A create through this client (started at change number `start`) answered `ia`: a
    /// new empty regular file it `made` has known (empty) content, unless it changed
    /// meanwhile.
    fn created(&mut self, start: u64, ia: &Iatt, made: bool, now: Instant) {
        let g = ia.gfid;
        let known = made
            && self.cfg.enable
            && ia.mode & libc::S_IFMT == libc::S_IFREG
            && ia.size == 0
            && !self.ring.changed(start, &g)
            && !self.pending.contains_key(&g);
        // Without O_EXCL an existing file may have come back (truncated by O_TRUNC).
        self.changed(g, true);
        if known {
            self.insert(g, Bytes::new(), Some(ia.mtime), now);
        }
    }

    /// A write of this client to `g` starts: its content, if kept and fresh, waits aside
    /// for the write's answer; a second write at once makes it unknown.
    fn begin_write(&mut self, g: Gfid, now: Instant) {
        self.ring.note(g);
        self.data_ring.note(g);
        self.no_content.remove(&g);
        let base = self.files.get(&g).is_some_and(|c| self.fresh(c.at, now));
        let base = if base { self.take(&g) } else { None };
        self.remove(&g);
        match self.pending.entry(g) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                let p = e.get_mut();
                p.writers += 1;
                p.base = None;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Pending { base, writers: 1 });
            }
        }
    }

    /// A write of this client to `g` ended: with `wrote` (all of `data` written at
    /// `offset`, nothing else asked of the write) and the content from before it still
    /// known, the content with the write applied is kept (if within `max-file-size`).
    fn end_write(&mut self, g: Gfid, wrote: Option<(u64, &Bytes)>) {
        self.ring.note(g);
        self.data_ring.note(g);
        let Some(p) = self.pending.get_mut(&g) else {
            return;
        };
        p.writers = p.writers.saturating_sub(1);
        if p.writers > 0 {
            p.base = None;
            return;
        }
        let base = self.pending.remove(&g).and_then(|p| p.base);
        self.remove(&g);
        let (Some(base), Some((offset, data)), true) = (base, wrote, self.cfg.enable) else {
            return;
        };
        if data.is_empty() {
            // Writes nothing and extends nothing.
            self.insert(g, base.data, base.mtime, base.at);
            return;
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > self.cfg.max_file_size || end > self.cfg.cache_size {
            return;
        }
        let (offset, end) = (offset as usize, end as usize);
        let mut v = Vec::with_capacity(base.data.len().max(end));
        v.extend_from_slice(&base.data);
        if v.len() < end {
            v.resize(end, 0);
        }
        v[offset..end].copy_from_slice(data);
        self.n.kept_from_writes += 1;
        self.insert(g, Bytes::from(v), None, base.at);
    }

    /// Takes `g`'s content out (no longer kept).
    fn take(&mut self, g: &Gfid) -> Option<Content> {
        let c = self.files.remove(g)?;
        self.bytes = self
            .bytes
            .saturating_sub(c.data.len() as u64 + ENTRY_OVERHEAD);
        Some(c)
    }

    /// Remembers that `g` had no content to offer, unless it changed since `start`.
    fn put_no_content(&mut self, start: u64, g: Gfid, now: Instant) {
        if !self.cfg.enable || self.ring.changed(start, &g) {
            return;
        }
        if self.no_content.len() >= MAX_NO_CONTENT {
            self.no_content.clear();
        }
        self.no_content.insert(g, now);
    }

    fn remove(&mut self, g: &Gfid) {
        self.take(g);
    }

    /// `g` changed (its content too with `data`, else only its names or attributes):
    /// remember it (race rule) and drop what is kept of it.
    fn changed(&mut self, g: Gfid, data: bool) {
        if data {
            self.data_ring.note(g);
        }
        self.ring.note(g);
        self.remove(&g);
        self.no_content.remove(&g);
        if let Some(p) = self.pending.get_mut(&g) {
            p.base = None;
        }
    }

    /// An answer passing up says `ia`: drop kept content it contradicts.
    /// A regular file seen larger than `max-file-size` is remembered as having no content
    /// (its next open is a real one, without asking for content first).
    fn seen(&mut self, ia: &Iatt) {
        if let Some(c) = self.files.get_mut(&ia.gfid) {
            if c.size != ia.size || c.mtime.is_some_and(|m| m != ia.mtime) {
                self.changed(ia.gfid, true);
            } else if c.mtime.is_none() {
                c.mtime = Some(ia.mtime);
            }
        }
        let large = ia.mode & libc::S_IFMT == libc::S_IFREG && ia.size > self.cfg.max_file_size;
        if large && self.cfg.enable && !self.no_content.contains_key(&ia.gfid) {
            if self.no_content.len() >= MAX_NO_CONTENT {
                self.no_content.clear();
            }
            self.no_content.insert(ia.gfid, Instant::now());
        }
    }

    /// Drops everything and makes every fetch in flight count as raced.
    fn drop_all(&mut self) {
        self.ring.all();
        self.data_ring.all();
        self.files.clear();
        self.lru.clear();
        self.bytes = 0;
        self.no_content.clear();
        for p in self.pending.values_mut() {
            p.base = None;
        }
    }

    /// Drops content over `max-file-size` (after it was lowered).
    fn drop_oversized(&mut self) {
        let max = self.cfg.max_file_size;
        let big: Vec<Gfid> = self
            .files
            .iter()
            .filter(|(_, c)| c.data.len() as u64 > max)
            .map(|(g, _)| *g)
            .collect();
        for g in big {
            self.remove(&g);
            self.n.evictions += 1;
        }
    }

    /// Evicts beyond `cache-size` and keeps the recency queue short.
    fn tidy(&mut self) {
        let mut rebuilt = false;
        while self.bytes > self.cfg.cache_size {
            match self.lru.oldest() {
                Some((gen, g)) => {
                    if self.files.get(&g).is_some_and(|c| c.gen == gen) {
                        self.remove(&g);
                        self.n.evictions += 1;
                    }
                }
                None if !rebuilt => {
                    rebuilt = true;
                    self.rebuild_lru();
                }
                None => break,
            }
        }
        if self.lru.too_long(self.files.len()) {
            self.rebuild_lru();
        }
    }

    fn rebuild_lru(&mut self) {
        let live = self.files.iter().map(|(g, c)| (c.gen, *g)).collect();
        self.lru.rebuild(live);
    }
}

/// A write of this client in flight ([`State::begin_write`]); ending it, or dropping it
/// unended (a cancelled write), tells the state ([`State::end_write`]).
struct Writing<'a> {
    state: &'a Mutex<State>,
    gfid: Gfid,
    ended: bool,
}

impl<'a> Writing<'a> {
    fn begin(state: &'a Mutex<State>, gfid: Gfid) -> Writing<'a> {
        state.lock().begin_write(gfid, Instant::now());
        Writing {
            state,
            gfid,
            ended: false,
        }
    }

    /// Ends the write: `wrote` as for [`State::end_write`].
    fn end(mut self, wrote: Option<(u64, &Bytes)>) {
        self.ended = true;
        self.state.lock().end_write(self.gfid, wrote);
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.state.lock().end_write(self.gfid, None);
        }
    }
}

/// The result of a background open: `None` while it runs.
type Opening = watch::Receiver<Option<Result<(), Errno>>>;

/// Where an fd's real open stands.
enum RealOpen {
    /// Opened for real before `open` answered.
    Done,
    /// Running (or done) in the background (open-behind).
    Behind(Opening),
    /// Not started (lazy open): what to open it with when an FOP needs it.
    Lazy(Box<(Ctx, Loc, Xdata)>),
}

/// The content a lazy fd last read, and when it was fetched from the bricks.
struct Snapshot {
    data: Bytes,
    /// `data_ring`'s change number when it was known current.
    seq: u64,
    at: Instant,
}

/// Per-fd state, hung on the fd under quick-read's name.
struct FdState {
    open: Mutex<RealOpen>,
    /// A fetch for this fd found no content: read through the real fd from now on.
    no_fetch: AtomicBool,
    /// Only while the fd is lazy: what it read last, served when its file is gone.
    snap: Mutex<Option<Snapshot>>,
    /// The name the fd was opened by ([`NAME_HINT_KEY`]), sent with its content lookups.
    hint: Option<Vec<u8>>,
}

impl FdState {
    fn new(open: RealOpen) -> FdState {
        FdState {
            open: Mutex::new(open),
            no_fetch: AtomicBool::new(false),
            snap: Mutex::new(None),
            hint: None,
        }
    }

    /// Whether the real open was never started.
    fn lazy(&self) -> bool {
        matches!(*self.open.lock(), RealOpen::Lazy(_))
    }
}

/// How long a lazy fd's snapshot may be served after its file is gone: within it, the
/// bricks still count this client as caching the file (their default registration is
/// 300 s), so any change of its content before it went would have been told.
const SNAPSHOT_TRUST: Duration = Duration::from_secs(60);

/// What a content fetch found.
enum Fetched {
    Content(Bytes),
    /// The file has no content to offer (too large, not regular, the graph passes none).
    NoContent,
    /// The file is gone (the lookup answered `ENOENT` or `ESTALE`): `ESTALE`.
    Gone(Errno),
}

/// Waits for a background open; a task that ended without answering is `EIO`.
async fn opened(mut rx: Opening) -> Result<(), Errno> {
    let r = match rx.wait_for(Option::is_some).await {
        Ok(v) => (*v).unwrap_or(Err(Errno::EIO)),
        Err(_) => Err(Errno::EIO),
    };
    r
}

/// `size` bytes at `offset` of `data` (fewer at its end, none past it).
fn slice(data: &Bytes, size: u32, offset: u64) -> Bytes {
    let len = data.len() as u64;
    if offset >= len {
        return Bytes::new();
    }
    let end = offset.saturating_add(u64::from(size)).min(len);
    data.slice(offset as usize..end as usize)
}

/// What a read does.
enum Read {
    /// Served from the kept content (fetched at that instant; `data_ring`'s number now).
    Hit(Bytes, Instant, u64),
    /// Ask for the content, having read the change numbers (`ring`, `data_ring`), at most
    /// this many bytes.
    Fetch(u64, u64, u64),
    /// Read through the real fd.
    Down,
}

/// The quick-read (and open-behind) translator (`performance/quick-read`). See the module
/// docs.
pub struct QuickRead {
    name: String,
    children: Vec<XlatorRef>,
    state: Mutex<State>,
    /// Files an fd of this client locked: a lazy fd's close must then reach the bricks.
    locks: LockUse,
}

impl QuickRead {
    fn new(name: String, children: Vec<XlatorRef>, cfg: Config) -> QuickRead {
        QuickRead {
            name,
            children,
            state: Mutex::new(State::new(cfg)),
            locks: LockUse::default(),
        }
    }

    fn fd_state(&self, fd: &FdRef) -> Option<Arc<FdState>> {
        fd.ctx::<FdState>(&self.name)
    }

    /// Waits for `fd`'s real open (starting it if it is lazy); its error if it failed.
    async fn wait_open(&self, fd: &FdRef) -> Result<(), Errno> {
        let Some(s) = self.fd_state(fd) else {
            return Ok(());
        };
        let started = {
            let mut open = s.open.lock();
            match std::mem::replace(&mut *open, RealOpen::Done) {
                RealOpen::Done => return Ok(()),
                RealOpen::Behind(rx) => {
                    *open = RealOpen::Behind(rx.clone());
                    Ok(rx)
                }
                RealOpen::Lazy(what) => {
                    let (ctx, loc, xd) = *what;
                    match self.open_behind(&ctx, &loc, fd, xd.clone()) {
                        Some(rx) => {
                            *open = RealOpen::Behind(rx.clone());
                            *s.snap.lock() = None;
                            Ok(rx)
                        }
                        None => Err((ctx, loc, xd)),
                    }
                }
            }
        };
        match started {
            Ok(rx) => opened(rx).await,
            // No runtime to start it on: open here.
            Err((ctx, loc, xd)) => {
                *s.snap.lock() = None;
                self.child()?.open(&ctx, &loc, fd, xd).await.map(drop)
            }
        }
    }

    /// Keeps `data` (current at `data_ring`'s number `seq`, fetched at `at`) as what lazy
    /// fd `fd` read last.
    fn keep_snapshot(&self, fd: &FdRef, data: &Bytes, seq: u64, at: Instant) {
        if let Some(s) = self.fd_state(fd) {
            if s.lazy() {
                *s.snap.lock() = Some(Snapshot {
                    data: data.clone(),
                    seq,
                    at,
                });
            }
        }
    }

    /// The content lazy fd `fd` last read, if its file's content has not changed since
    /// (as far as this client was told) and it is recent enough to trust.
    fn snapshot(&self, fd: &FdRef) -> Option<Bytes> {
        let s = self.fd_state(fd)?;
        if !s.lazy() {
            return None;
        }
        let mut kept = s.snap.lock();
        let snap = kept.as_ref()?;
        let st = self.state.lock();
        // Trusted no longer than kept content is (without invalidations, that is all the
        // coherence there is).
        let trust = SNAPSHOT_TRUST.min(st.cfg.timeout);
        if snap.at.elapsed() >= trust || st.data_ring.changed(snap.seq, &fd.gfid) {
            *kept = None;
            return None;
        }
        Some(snap.data.clone())
    }

    /// `g` changed through this client (its content too with `data`).
    fn changed(&self, g: Option<Gfid>, data: bool) {
        if let Some(g) = g {
            self.state.lock().changed(g, data);
        }
    }

    /// Runs a FOP that changes the content of `g`, dropping it before and after.
    async fn modify<T>(&self, g: Option<Gfid>, fop: impl Future<Output = Fop<T>> + Send) -> Fop<T> {
        self.changed(g, true);
        let r = fop.await;
        self.changed(g, true);
        r
    }

    /// Runs a FOP that changes the names (not the content) of `g`.
    async fn rename_or_unlink<T>(
        &self,
        g: Option<Gfid>,
        fop: impl Future<Output = Fop<T>> + Send,
    ) -> Fop<T> {
        self.changed(g, false);
        let r = fop.await;
        self.changed(g, false);
        r
    }

    /// A flush or fsync that failed may report a write acknowledged earlier (write-behind)
    /// that never reached the file: what this client's writes made of the content is not
    /// to be trusted.
    fn failed_sync(&self, fd: &FdRef, r: &Fop<()>) {
        if r.is_err() {
            self.changed(Some(fd.gfid), true);
        }
    }

    /// Drops kept content an iatt passing up contradicts.
    fn seen(&self, r: &Fop<Iatt>) {
        if let Ok((ia, _)) = r {
            self.state.lock().seen(ia);
        }
    }

    fn read_begin(&self, fd: &FdRef, offset: u64) -> Read {
        let no_fetch = self
            .fd_state(fd)
            .is_some_and(|s| s.no_fetch.load(Ordering::Relaxed));
        let now = Instant::now();
        let mut st = self.state.lock();
        if !st.cfg.enable {
            return Read::Down;
        }
        if let Some((data, at)) = st.get(&fd.gfid, now) {
            st.n.hits += 1;
            return Read::Hit(data, at, st.data_ring.seq);
        }
        st.n.misses += 1;
        let max = st.cfg.max_file_size;
        // A file with content to offer is no larger than max: a read from there is past
        // its end anyway, and the real fd answers that as well.
        if no_fetch || offset >= max || st.known_empty(&fd.gfid, now) {
            return Read::Down;
        }
        Read::Fetch(st.ring.seq, st.data_ring.seq, max)
    }

    /// Asks the child for `fd`'s file content (race rule from `start`); keeps it, and
    /// returns it, when the answer carries it.
    async fn fetch(
        &self,
        child: &XlatorRef,
        ctx: &Ctx,
        fd: &FdRef,
        (start, data_start): (u64, u64),
        max: u64,
    ) -> Fetched {
        self.state.lock().n.fetches += 1;
        let mut xd = Xdata::new();
        xd.set_u64(QUICK_READ_KEY, max);
        if let Some(h) = self.fd_state(fd).and_then(|s| s.hint.clone()) {
            xd.set(NAME_HINT_KEY, h);
        }
        let r = child.lookup(ctx, &Loc::inode(fd.gfid), xd).await;
        let now = Instant::now();
        let content = match r {
            // What an open fd's read of a file gone under it gets.
            Err(e) if e == Errno::ENOENT || e == Errno::ESTALE => {
                return Fetched::Gone(Errno::ESTALE)
            }
            Ok((ia, mut rxd)) if ia.gfid == fd.gfid => rxd
                .0
                .remove(QUICK_READ_CONTENT_KEY)
                .filter(|c| {
                    ia.mode & libc::S_IFMT == libc::S_IFREG
                        && c.len() as u64 == ia.size
                        && c.len() as u64 <= max
                })
                .map(|c| (ia, Bytes::from(c))),
            _ => None,
        };
        let mut st = self.state.lock();
        match content {
            Some((ia, data)) => {
                st.put(start, &ia, data.clone(), now);
                drop(st);
                self.keep_snapshot(fd, &data, data_start, now);
                Fetched::Content(data)
            }
            None => {
                st.put_no_content(start, fd.gfid, now);
                drop(st);
                if let Some(s) = self.fd_state(fd) {
                    s.no_fetch.store(true, Ordering::Relaxed);
                }
                Fetched::NoContent
            }
        }
    }

    /// A lazy open of `fd`: its content, kept or fetched now, becomes its snapshot and no
    /// real open is made. `None` when the file has no content to offer (the caller opens
    /// it for real).
    async fn open_lazy(
        &self,
        child: &XlatorRef,
        ctx: &Ctx,
        loc: &Loc,
        fd: &FdRef,
        xd: Xdata,
    ) -> Option<Fop<()>> {
        let hint = xd.get(NAME_HINT_KEY).map(|h| h.to_vec());
        let what = Box::new((ctx.clone(), loc.clone(), xd));
        let state = Arc::new(FdState {
            hint,
            ..FdState::new(RealOpen::Lazy(what))
        });
        fd.set_ctx(&self.name, state.clone());
        let now = Instant::now();
        let step = {
            let mut st = self.state.lock();
            match st.get(&fd.gfid, now) {
                Some((data, at)) => {
                    st.n.hits += 1;
                    Ok(Snapshot {
                        data,
                        seq: st.data_ring.seq,
                        at,
                    })
                }
                None => {
                    st.n.misses += 1;
                    Err((st.ring.seq, st.data_ring.seq, st.cfg.max_file_size))
                }
            }
        };
        match step {
            Ok(snap) => *state.snap.lock() = Some(snap),
            Err((start, data_start, max)) => {
                match self.fetch(child, ctx, fd, (start, data_start), max).await {
                    Fetched::Content(_) => {} // the snapshot is kept by fetch
                    Fetched::NoContent => return None,
                    Fetched::Gone(e) => {
                        fd.take_ctx::<FdState>(&self.name);
                        return Some(Err(e));
                    }
                }
            }
        }
        self.state.lock().n.opens_lazy += 1;
        Some(Ok(((), Xdata::new())))
    }

    /// Starts the real open of `fd` in the background; `None` when there is no runtime to
    /// run it on.
    fn open_behind(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Option<Opening> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let child = self.child().ok()?.clone();
        let (tx, rx) = watch::channel(None);
        let (ctx, loc, fd) = (ctx.clone(), loc.clone(), fd.clone());
        rt.spawn(async move {
            let r = child.open(&ctx, &loc, &fd, xd).await.map(|_| ());
            tx.send_replace(Some(r));
        });
        Some(rx)
    }
}

#[async_trait::async_trait]
impl Xlator for QuickRead {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    async fn notify(&self, _from: &str, event: Event) -> Option<Event> {
        match &event {
            Event::Upcall(u) => {
                let mut st = self.state.lock();
                for inv in &u.invalidations {
                    match inv {
                        // Attributes only: the size may have changed too.
                        Invalidation::Inode { gfid, data, .. } => {
                            st.n.invalidations += 1;
                            st.changed(*gfid, *data);
                        }
                        Invalidation::Entry { .. } | Invalidation::Recall { .. } => {}
                        Invalidation::All => {
                            st.n.invalidations += 1;
                            st.drop_all();
                        }
                    }
                }
            }
            Event::ChildUp(_) | Event::ChildDown(_) => self.state.lock().drop_all(),
            _ => {}
        }
        Some(event)
    }

    fn dump(&self) -> String {
        let st = self.state.lock();
        let onoff = |b: bool| if b { "on" } else { "off" };
        let c = &st.cfg;
        let n = &st.n;
        format!(
            "enable = {}\nmax-file-size = {}\ncache-size = {}\ncache-timeout = {:?}\n\
             open-behind = {}\nfiles = {}\nbytes = {}/{}\nhits = {}\nmisses = {}\n\
             fetches = {}\nevictions = {}\ninvalidations = {}\nopens_behind = {}\n\
             opens_lazy = {}\nopens_never_made = {}\nlazy-open = {}\nkept_from_writes = {}\n",
            onoff(c.enable),
            c.max_file_size,
            c.cache_size,
            c.timeout,
            onoff(c.open_behind),
            st.files.len(),
            st.bytes,
            c.cache_size,
            n.hits,
            n.misses,
            n.fetches,
            n.evictions,
            n.invalidations,
            n.opens_behind,
            n.opens_lazy,
            n.opens_never,
            onoff(c.lazy_open),
            n.kept_from_writes,
        )
    }

    async fn fini(&self) {
        self.state.lock().drop_all();
    }

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let cfg = Config::from_options(options);
        let mut st = self.state.lock();
        let off = st.cfg.enable && !cfg.enable;
        st.cfg = cfg;
        if off {
            st.drop_all();
        } else {
            st.drop_oversized();
            st.tidy();
        }
        Ok(())
    }

    // ==== answers that tell about content ====

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let r = self.child()?.lookup(ctx, loc, xd).await;
        self.seen(&r);
        r
    }
    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let r = self.child()?.stat(ctx, loc, xd).await;
        self.seen(&r);
        r
    }
    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        let r = child.fstat(ctx, fd, xd).await;
        self.seen(&r);
        r
    }

    // ==== open, read, release ====

    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let (behind, lazy) = {
            let mut st = self.state.lock();
            let behind =
                st.cfg.open_behind && !fd.is_dir && fd.flags & NOT_BEHIND == libc::O_RDONLY;
            // Lazy only where reads may be served from content: a file known to have none
            // is opened at once.
            let lazy = behind
                && st.cfg.lazy_open
                && st.cfg.enable
                && !st.known_empty(&fd.gfid, Instant::now())
                && tokio::runtime::Handle::try_current().is_ok();
            (behind, lazy)
        };
        if lazy {
            if let Some(r) = self.open_lazy(child, ctx, loc, fd, xd.clone()).await {
                return r;
            }
        }
        if behind {
            if let Some(rx) = self.open_behind(ctx, loc, fd, xd.clone()) {
                fd.set_ctx(&self.name, Arc::new(FdState::new(RealOpen::Behind(rx))));
                self.state.lock().n.opens_behind += 1;
                return Ok(((), Xdata::new()));
            }
        }
        let r = if fd.flags & libc::O_TRUNC != 0 {
            let g = loc.gfid.or(Some(fd.gfid));
            self.modify(g, child.open(ctx, loc, fd, xd)).await
        } else {
            child.open(ctx, loc, fd, xd).await
        };
        if r.is_ok() && !fd.is_dir {
            fd.set_ctx(&self.name, Arc::new(FdState::new(RealOpen::Done)));
        }
        r
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
        let child = self.child()?;
        let start = self.state.lock().ring.seq;
        let r = child.create(ctx, loc, fd, mode, umask, xd).await;
        if let Ok((ia, _)) = &r {
            // Only a file made by this create (with the fd's gfid) is known empty: without
            // O_EXCL an existing file may come back, with writes still on their way.
            let made = ia.gfid == fd.gfid;
            self.state.lock().created(start, ia, made, Instant::now());
            fd.set_ctx(&self.name, Arc::new(FdState::new(RealOpen::Done)));
        }
        r
    }

    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        let child = self.child()?;
        // A write-only fd reads nothing (the real fd answers EBADF).
        let readable = fd.flags & libc::O_ACCMODE != libc::O_WRONLY;
        if xd.is_empty() && readable && !fd.is_dir && fd.flags & libc::O_DIRECT == 0 {
            match self.read_begin(fd, offset) {
                Read::Hit(data, at, seq) => {
                    self.keep_snapshot(fd, &data, seq, at);
                    return Ok((slice(&data, size, offset), Xdata::new()));
                }
                Read::Fetch(start, data_start, max) => {
                    match self.fetch(child, ctx, fd, (start, data_start), max).await {
                        Fetched::Content(data) => {
                            return Ok((slice(&data, size, offset), Xdata::new()))
                        }
                        // Gone while this fd was lazy: what it read before is still the
                        // file's content (as an open fd keeps an unlinked file's).
                        Fetched::Gone(e) => {
                            if let Some(data) = self.snapshot(fd) {
                                return Ok((slice(&data, size, offset), Xdata::new()));
                            }
                            if self.fd_state(fd).is_some_and(|s| s.lazy()) {
                                return Err(e);
                            }
                        }
                        Fetched::NoContent => {}
                    }
                }
                Read::Down => {}
            }
        }
        self.wait_open(fd).await?;
        child.readv(ctx, fd, size, offset, xd).await
    }

    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.locks.released(fd);
        let Some(state) = fd.take_ctx::<FdState>(&self.name) else {
            return child.release(ctx, fd, xd).await;
        };
        let open = std::mem::replace(&mut *state.open.lock(), RealOpen::Done);
        let rx = match open {
            RealOpen::Done => return child.release(ctx, fd, xd).await,
            // Never opened for real: nothing to release.
            RealOpen::Lazy(_) => {
                self.state.lock().n.opens_never += 1;
                return Ok(((), Xdata::new()));
            }
            RealOpen::Behind(rx) => rx,
        };
        // Done already: release it now; failed: nothing to release.
        let done = *rx.borrow();
        match done {
            Some(Ok(())) => return child.release(ctx, fd, xd).await,
            Some(Err(_)) => return Ok(((), Xdata::new())),
            None => {}
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let (child, ctx, fd) = (child.clone(), ctx.clone(), fd.clone());
                rt.spawn(async move {
                    if opened(rx).await.is_ok() {
                        let _ = child.release(&ctx, &fd, xd).await;
                    }
                });
                Ok(((), Xdata::new()))
            }
            Err(_) => {
                if opened(rx).await.is_ok() {
                    child.release(ctx, fd, xd).await
                } else {
                    Ok(((), Xdata::new()))
                }
            }
        }
    }

    // ==== other fd FOPs: the real fd first ====

    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        // Only a plain write (no append, nothing else asked) can be applied to the content.
        let plain = xd.is_empty();
        let write = Writing::begin(&self.state, fd.gfid);
        let kept = data.clone();
        let r = child.writev(ctx, fd, data, offset, xd).await;
        let whole = matches!(&r, Ok((n, _)) if *n == kept.len() as u64);
        write.end((plain && whole).then_some((offset, &kept)));
        r
    }
    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        // A lazy fd never opened has nothing to flush. Its close must still drop its
        // owner's locks on the file, which can only have been taken through an fd of this
        // client that is still open: then it is opened and flushed for real.
        if self.fd_state(fd).is_some_and(|s| s.lazy()) && !self.locks.any(&fd.gfid) {
            return Ok(((), Xdata::new()));
        }
        // A read-only fd whose real open failed has nothing to flush, but a flush also
        // drops its owner's locks on the file taken through other fds: pass it down
        // through a fresh open when one can be had.
        if self.wait_open(fd).await.is_err() {
            let fd2 = Arc::new(Fd::new(fd.gfid, libc::O_RDONLY, false));
            if child
                .open(ctx, &Loc::inode(fd.gfid), &fd2, Xdata::new())
                .await
                .is_ok()
            {
                let r = child.flush(ctx, &fd2, xd).await;
                let _ = child.release(ctx, &fd2, Xdata::new()).await;
                return r;
            }
            return Ok(((), Xdata::new()));
        }
        let r = child.flush(ctx, fd, xd).await;
        self.failed_sync(fd, &r);
        r
    }
    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        let r = child.fsync(ctx, fd, datasync, xd).await;
        self.failed_sync(fd, &r);
        r
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        let fop = child.fsetattr(ctx, fd, attr, xd);
        if attr.size.is_some() {
            self.modify(Some(fd.gfid), fop).await
        } else {
            fop.await
        }
    }
    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        let fop = child.ftruncate(ctx, fd, size, xd);
        self.modify(Some(fd.gfid), fop).await
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
        let child = self.child()?;
        self.wait_open(fd).await?;
        let fop = child.fallocate(ctx, fd, mode, offset, len, xd);
        self.modify(Some(fd.gfid), fop).await
    }
    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        let fop = child.discard(ctx, fd, offset, len, xd);
        self.modify(Some(fd.gfid), fop).await
    }
    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        let fop = child.zerofill(ctx, fd, offset, len, xd);
        self.modify(Some(fd.gfid), fop).await
    }
    async fn seek(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        what: SeekWhat,
        xd: Xdata,
    ) -> Fop<u64> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        child.seek(ctx, fd, offset, what, xd).await
    }
    async fn rchecksum(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        offset: u64,
        len: u32,
        xd: Xdata,
    ) -> Fop<Checksum> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        child.rchecksum(ctx, fd, offset, len, xd).await
    }
    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        child.fgetxattr(ctx, fd, name, xd).await
    }
    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        attrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        child.fsetxattr(ctx, fd, attrs, flags, xd).await
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        child.fremovexattr(ctx, fd, name, xd).await
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
        self.wait_open(fd).await?;
        child.fxattrop(ctx, fd, op, attrs, xd).await
    }
    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        let child = self.child()?;
        self.wait_open(fd).await?;
        self.locks.asking(fd, cmd, lock);
        let r = child.lk(ctx, fd, cmd, lock, xd).await;
        if r.is_ok() && cmd != LkCmd::Get && lock.kind != LockType::Unlock {
            // Whoever held the lock before may have written: a lock holder reads what
            // the previous holder wrote, whatever the caches.
            self.state.lock().changed(fd.gfid, true);
        }
        r
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
        let child = self.child()?;
        self.wait_open(fd).await?;
        child.finodelk(ctx, domain, fd, cmd, lock, xd).await
    }

    // ==== changes by location ====

    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let fop = child.setattr(ctx, loc, attr, xd);
        if attr.size.is_some() {
            self.modify(loc.gfid, fop).await
        } else {
            fop.await
        }
    }
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let fop = child.truncate(ctx, loc, size, xd);
        self.modify(loc.gfid, fop).await
    }
    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let fop = child.unlink(ctx, loc, xd);
        self.rename_or_unlink(loc.gfid, fop).await
    }
    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.changed(new.gfid, false);
        let fop = child.rename(ctx, old, new, flags, xd);
        let r = self.rename_or_unlink(old.gfid, fop).await;
        self.changed(new.gfid, false);
        r
    }
}

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "enable",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "off: no file content is kept and every read goes down (open-behind is its own option). Changes live.",
    },
    OptionSpec {
        key: "max-file-size",
        kind: OptionKind::Size,
        default: Some("64KiB"),
        description: "The largest file whose whole content is fetched and kept; values above 1MiB count as 1MiB. Changes live.",
    },
    OptionSpec {
        key: "cache-size",
        kind: OptionKind::Size,
        default: Some("128MiB"),
        description: "The most bytes of file content kept over all files; the least recently used go first. Changes live.",
    },
    OptionSpec {
        key: "cache-timeout",
        kind: OptionKind::Duration,
        default: Some("1s"),
        description: "How long kept content is trusted, with or without invalidations; values above 600s count as 600s. Changes live.",
    },
    OptionSpec {
        key: "open-behind",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "Answer read-only opens at once and open for real in the background, waiting only when the real fd is needed. Changes live (for later opens).",
    },
    OptionSpec {
        key: "lazy-open",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "With open-behind and enable: a read-only open takes the file's content (kept, or one content lookup) instead of opening; the real open happens only when an FOP needs the real fd. Close and release of a never-opened fd stay in the client unless an fd of this client asked for a lock on the file. Files with no content to offer open behind. Off: the real open starts at once. Changes live (for later opens).",
    },
];

/// The `performance/quick-read` type.
pub struct QuickReadType;

impl XlatorType for QuickReadType {
    fn type_name(&self) -> &'static str {
        "performance/quick-read"
    }
    fn description(&self) -> &'static str {
        "Keeps the whole content of small files in the client and serves reads from it, and opens read-only files in the background (open-behind), kept coherent by brick invalidations."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(QuickRead::new(
            init.name,
            init.children,
            Config::from_options(&init.options),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_brick::{self, TestBrick};
    use super::*;
    use crate::storage::posix::io::PosixFile;
    use std::sync::atomic::AtomicU64;

    /// Options `pairs`; `lazy-open` is off unless they say (most tests here are of the
    /// open-behind that starts the real open at once).
    fn options(pairs: &[(&str, &str)]) -> Options {
        let mut given: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if !pairs.iter().any(|(k, _)| *k == "lazy-open") {
            given.push(("lazy-open".into(), "off".into()));
        }
        Options::validate(OPTIONS, &given).unwrap()
    }

    /// Passes everything down, counting opens and releases, optionally slowing opens and
    /// lookups.
    struct Probe {
        children: Vec<XlatorRef>,
        open_delay: Duration,
        lookup_delay: Duration,
        opens_done: AtomicU64,
        releases: AtomicU64,
        lookups: AtomicU64,
    }

    #[async_trait::async_trait]
    impl Xlator for Probe {
        fn name(&self) -> &str {
            "probe"
        }
        fn children(&self) -> &[XlatorRef] {
            &self.children
        }
        async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
            tokio::time::sleep(self.open_delay).await;
            let r = self.child()?.open(ctx, loc, fd, xd).await;
            self.opens_done.fetch_add(1, Ordering::SeqCst);
            r
        }
        async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
            self.releases.fetch_add(1, Ordering::SeqCst);
            self.child()?.release(ctx, fd, xd).await
        }
        async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.lookup_delay).await;
            self.child()?.lookup(ctx, loc, xd).await
        }
    }

    /// A brick in a tempdir, a probe over it, and quick-read (options `pairs`) on top.
    struct Rig {
        brick: TestBrick,
        probe: Arc<Probe>,
        qr: QuickRead,
    }

    fn rig_with(pairs: &[(&str, &str)], open_delay: u64, lookup_delay: u64) -> Rig {
        let brick = TestBrick::new();
        let probe = Arc::new(Probe {
            children: vec![brick.posix()],
            open_delay: Duration::from_millis(open_delay),
            lookup_delay: Duration::from_millis(lookup_delay),
            opens_done: AtomicU64::new(0),
            releases: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        });
        let qr = QuickRead::new(
            "qr".into(),
            vec![probe.clone()],
            Config::from_options(&options(pairs)),
        );
        Rig { brick, probe, qr }
    }

    fn rig(pairs: &[(&str, &str)]) -> Rig {
        rig_with(pairs, 0, 0)
    }

    impl Rig {
        fn path(&self, rel: &str) -> std::path::PathBuf {
            self.brick.path(rel)
        }

        /// Writes `data` as file `name` on the brick directly; its gfid.
        async fn file(&self, name: &str, data: &[u8]) -> Gfid {
            test_brick::file(&self.qr, &self.brick, name, data).await
        }

        async fn open(&self, g: Gfid, flags: i32) -> FdRef {
            test_brick::open(&self.qr, g, flags).await
        }

        async fn read(&self, fd: &FdRef, size: u32, offset: u64) -> Vec<u8> {
            test_brick::read(&self.qr, fd, size, offset).await
        }

        async fn release(&self, fd: &FdRef) {
            self.qr.release(&ctx(), fd, Xdata::new()).await.unwrap();
        }

        /// Unlinks `name` beneath quick-read (as another client would).
        async fn unlink_below(&self, name: &str) {
            self.probe.children[0]
                .unlink(&ctx(), &Loc::entry(Gfid::ROOT, name), Xdata::new())
                .await
                .unwrap();
        }

        /// Waits (at most 5 s) until every background open is done and released.
        async fn settled(&self, opens: u64) {
            for _ in 0..500 {
                if self.probe.opens_done.load(Ordering::SeqCst) == opens
                    && self.probe.releases.load(Ordering::SeqCst) == opens
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!(
                "opens {} releases {} (want {opens})",
                self.probe.opens_done.load(Ordering::SeqCst),
                self.probe.releases.load(Ordering::SeqCst)
            );
        }
    }

    /// Counter `key` of a dump.
    fn counter(x: &dyn Xlator, key: &str) -> u64 {
        let dump = x.dump();
        dump.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = ")))
            .and_then(|v| v.split(['/', ' ']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {dump}"))
    }

    fn ctx() -> Ctx {
        Ctx::internal()
    }

    fn upcall(invalidations: Vec<Invalidation>) -> Event {
        Event::Upcall(Upcall {
            client: 0,
            invalidations,
            ack: Ack::none(),
        })
    }

    fn inode_inval(gfid: Gfid, data: bool) -> Event {
        upcall(vec![Invalidation::Inode {
            gfid,
            data,
            xattrs: false,
        }])
    }

    #[tokio::test]
    async fn a_small_file_is_fetched_once_and_served_in_slices() {
        let r = rig(&[]);
        let g = r.file("f", b"hello world").await;
        let fd1 = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd1, 5, 0).await, b"hello");
        assert_eq!(r.read(&fd1, 100, 6).await, b"world");
        assert_eq!(r.read(&fd1, 3, 4).await, b"o w");
        assert_eq!(r.read(&fd1, 10, 11).await, b"");
        assert_eq!(r.read(&fd1, 10, 1 << 40).await, b"");
        assert_eq!(r.read(&fd1, u32::MAX, u64::MAX - 1).await, b"");
        let fd2 = r.open(g, libc::O_RDONLY | libc::O_NOATIME).await;
        assert_eq!(r.read(&fd2, 4096, 0).await, b"hello world");
        assert_eq!(counter(&r.qr, "fetches"), 1);
        assert_eq!(counter(&r.qr, "misses"), 1);
        assert_eq!(counter(&r.qr, "hits"), 6);
        assert_eq!(counter(&r.qr, "opens_behind"), 2);
        assert_eq!(counter(&r.qr, "files"), 1);
        assert_eq!(counter(&r.qr, "bytes"), 11 + ENTRY_OVERHEAD);
        // Flush of a behind fd waits for the real open and passes down.
        r.qr.flush(&ctx(), &fd1, Xdata::new()).await.unwrap();
        let lock = Flock {
            kind: LockType::Read,
            start: 0,
            len: 0,
            pid: 1,
            owner: 1,
        };
        assert_eq!(
            r.qr.lk(&ctx(), &fd1, LkCmd::Get, &lock, Xdata::new())
                .await
                .unwrap_err(),
            Errno::ENOTSUP,
            "posix's own answer: the call went down"
        );
        r.release(&fd1).await;
        r.release(&fd2).await;
        r.settled(2).await;
        for fd in [&fd1, &fd2] {
            assert!(fd.ctx::<PosixFile>("p").is_none(), "released on posix");
            assert!(fd.ctx::<FdState>("qr").is_none());
        }
    }

    #[tokio::test]
    async fn a_read_does_not_wait_for_the_background_open() {
        let r = rig_with(&[], 300, 0);
        let g = r.file("f", b"quick").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 10, 0).await, b"quick");
        assert_eq!(
            r.probe.opens_done.load(Ordering::SeqCst),
            0,
            "still opening"
        );
        // Released before the open is done: released once it is.
        r.release(&fd).await;
        assert_eq!(r.probe.releases.load(Ordering::SeqCst), 0);
        r.settled(1).await;
        assert!(fd.ctx::<PosixFile>("p").is_none());
        // fstat waits for the open and reports the file.
        let fd = r.open(g, libc::O_RDONLY).await;
        let (ia, _) = r.qr.fstat(&ctx(), &fd, Xdata::new()).await.unwrap();
        assert_eq!(ia.size, 5);
        assert_eq!(r.probe.opens_done.load(Ordering::SeqCst), 2);
        r.release(&fd).await;
        r.settled(2).await;
    }

    #[tokio::test]
    async fn a_failed_background_open_fails_the_calls_that_need_it() {
        let r = rig(&[]);
        let fd = r.open(Gfid::random(), libc::O_RDONLY).await;
        assert_eq!(
            r.qr.fstat(&ctx(), &fd, Xdata::new()).await.unwrap_err(),
            Errno::ESTALE
        );
        assert_eq!(
            r.qr.readv(&ctx(), &fd, 10, 0, Xdata::new())
                .await
                .unwrap_err(),
            Errno::ESTALE
        );
        r.qr.flush(&ctx(), &fd, Xdata::new()).await.unwrap();
        r.release(&fd).await;
        assert_eq!(r.probe.releases.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_file_over_max_file_size_is_read_through_the_real_fd() {
        let r = rig(&[("max-file-size", "1KiB")]);
        let data: Vec<u8> = (0..4000u32).map(|i| (i % 251) as u8).collect();
        let g = r.file("big", &data).await;
        let fd = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 100, 0).await, &data[..100]);
        assert_eq!(r.read(&fd, 2000, 3000).await, &data[3000..]);
        let fd2 = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd2, 10, 5).await, &data[5..15]);
        // Its lookup showed it over the limit: no fd asks for its content.
        assert_eq!(counter(&r.qr, "fetches"), 0);
        assert_eq!(counter(&r.qr, "files"), 0);
        assert_eq!(counter(&r.qr, "hits"), 0);
        // A file shrunk below the limit (through this client) is fetched.
        let rw = r.open(g, libc::O_RDWR).await;
        assert_eq!(counter(&r.qr, "opens_behind"), 2);
        r.qr.ftruncate(&ctx(), &rw, 10, Xdata::new()).await.unwrap();
        let fd3 = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd3, 100, 0).await, &data[..10]);
        assert_eq!(counter(&r.qr, "fetches"), 1);
        assert_eq!(counter(&r.qr, "files"), 1);
        for fd in [&fd, &fd2, &rw, &fd3] {
            r.release(fd).await;
        }
        r.settled(4).await;
    }

    #[tokio::test]
    async fn invalidations_make_the_next_read_fetch_again() {
        let r = rig(&[]);
        let g = r.file("f", b"old").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 100, 0).await, b"old");
        // Changed on the brick behind its back: not seen before an invalidation...
        std::fs::write(r.path("f"), b"newer").unwrap();
        assert_eq!(r.read(&fd, 100, 0).await, b"old");
        // ...and seen right after one, which is passed on unchanged.
        let ev = inode_inval(g, true);
        assert_eq!(r.qr.notify("p", ev.clone()).await, Some(ev));
        assert_eq!(r.read(&fd, 100, 0).await, b"newer");
        assert_eq!(counter(&r.qr, "fetches"), 2);
        // Attributes only: dropped too (the size may have changed).
        std::fs::write(r.path("f"), b"newest").unwrap();
        r.qr.notify("p", inode_inval(g, false)).await;
        assert_eq!(r.read(&fd, 100, 0).await, b"newest");
        // All, and a child going down, drop everything; entry invalidations nothing.
        r.qr.notify(
            "p",
            upcall(vec![Invalidation::Entry {
                parent: Gfid::ROOT,
                name: b"f".to_vec(),
            }]),
        )
        .await;
        assert_eq!(counter(&r.qr, "files"), 1);
        r.qr.notify("p", upcall(vec![Invalidation::All])).await;
        assert_eq!(counter(&r.qr, "files"), 0);
        r.read(&fd, 100, 0).await;
        assert_eq!(counter(&r.qr, "files"), 1);
        r.qr.notify("p", Event::ChildDown("p".into())).await;
        assert_eq!(counter(&r.qr, "files"), 0);
        assert_eq!(counter(&r.qr, "invalidations"), 3);
        assert_eq!(counter(&r.qr, "fetches"), 4);
        // A lookup answer whose size differs drops the content.
        r.read(&fd, 100, 0).await;
        std::fs::write(r.path("f"), b"x").unwrap();
        r.qr.lookup(&ctx(), &Loc::inode(g), Xdata::new())
            .await
            .unwrap();
        assert_eq!(r.read(&fd, 100, 0).await, b"x");
        r.release(&fd).await;
        r.settled(1).await;
    }

    #[tokio::test]
    async fn content_expires_after_cache_timeout() {
        let r = rig(&[("cache-timeout", "50ms")]);
        let g = r.file("f", b"abc").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 100, 0).await, b"abc");
        std::fs::write(r.path("f"), b"xyz").unwrap();
        assert_eq!(r.read(&fd, 100, 0).await, b"abc");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(r.read(&fd, 100, 0).await, b"xyz");
        r.release(&fd).await;
        r.settled(1).await;
    }

    #[tokio::test]
    async fn changes_through_quick_read_drop_the_content() {
        let r = rig(&[]);
        let g = r.file("f", b"hello world").await;
        let ro = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&ro, 100, 0).await, b"hello world");
        let rw = r.open(g, libc::O_RDWR).await;
        assert_eq!(
            counter(&r.qr, "opens_behind"),
            1,
            "a read-write open is real"
        );
        r.qr.writev(&ctx(), &rw, Bytes::from_static(b"HELLO"), 0, Xdata::new())
            .await
            .unwrap();
        assert_eq!(r.read(&ro, 100, 0).await, b"HELLO world");
        // Truncate by location, setattr with a size.
        r.qr.truncate(&ctx(), &Loc::inode(g), 4, Xdata::new())
            .await
            .unwrap();
        assert_eq!(r.read(&ro, 100, 0).await, b"HELL");
        let grow = SetAttr {
            size: Some(6),
            ..SetAttr::default()
        };
        r.qr.setattr(&ctx(), &Loc::inode(g), &grow, Xdata::new())
            .await
            .unwrap();
        assert_eq!(r.read(&ro, 100, 0).await, b"HELL\0\0");
        // A truncating open.
        let tr = r.open(g, libc::O_WRONLY | libc::O_TRUNC).await;
        assert_eq!(r.read(&ro, 100, 0).await, b"");
        // One fetch per change but the write, which was applied to the kept content.
        assert_eq!(counter(&r.qr, "fetches"), 4);
        assert_eq!(counter(&r.qr, "kept_from_writes"), 1);
        // Unlinked through quick-read: the open fds still read it (by the real fd).
        r.qr.writev(
            &ctx(),
            &rw,
            Bytes::from_static(b"still here"),
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
        r.qr.unlink(
            &ctx(),
            &Loc::entry(Gfid::ROOT, "f").with_gfid(g),
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(counter(&r.qr, "files"), 0);
        assert_eq!(r.read(&ro, 100, 0).await, b"still here");
        for fd in [&ro, &rw, &tr] {
            r.release(fd).await;
        }
        r.settled(3).await;
    }

    #[tokio::test]
    async fn a_file_unlinked_right_after_a_behind_open_stays_readable() {
        let r = rig(&[("max-file-size", "16")]);
        let g = r.file("f", b"more than sixteen bytes").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        // The real open started at once; give it a moment, as a kernel would.
        tokio::time::sleep(Duration::from_millis(50)).await;
        r.qr.unlink(&ctx(), &Loc::entry(Gfid::ROOT, "f"), Xdata::new())
            .await
            .unwrap();
        assert_eq!(r.read(&fd, 100, 0).await, b"more than sixteen bytes");
        r.release(&fd).await;
        r.settled(1).await;
    }

    /// Creates `name` through quick-read; its fd (read-write).
    async fn create_through(r: &Rig, name: &str) -> FdRef {
        let fd = Fd::new(Gfid::random(), libc::O_RDWR | libc::O_EXCL, false);
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
        r.qr.create(&ctx(), &Loc::entry(Gfid::ROOT, name), &fd, 0o644, 0, xd)
            .await
            .unwrap();
        fd
    }

    async fn write(r: &Rig, fd: &FdRef, data: &[u8], offset: u64, xd: Xdata) {
        let n =
            r.qr.writev(&ctx(), fd, Bytes::copy_from_slice(data), offset, xd)
                .await
                .unwrap()
                .0;
        assert_eq!(n, data.len() as u64);
    }

    #[tokio::test]
    async fn what_this_client_writes_to_a_file_it_created_is_read_without_a_fetch() {
        let r = rig(&[("lazy-open", "on")]);
        let w = create_through(&r, "f").await;
        write(&r, &w, b"hello", 0, Xdata::new()).await;
        write(&r, &w, b" world", 5, Xdata::new()).await;
        // Past the end: the hole reads as zeros, as on the brick.
        write(&r, &w, b"!", 14, Xdata::new()).await;
        // Nothing written past the end extends nothing.
        write(&r, &w, b"", 100, Xdata::new()).await;
        assert_eq!(counter(&r.qr, "kept_from_writes"), 3);
        let fd = r.open(w.gfid, libc::O_RDONLY).await;
        let brick = std::fs::read(r.path("f")).unwrap();
        assert_eq!(brick, b"hello world\0\0\0!");
        assert_eq!(r.read(&fd, 100, 0).await, brick);
        assert_eq!(r.read(&w, 4, 6).await, b"worl");
        assert_eq!(counter(&r.qr, "fetches"), 0, "{}", r.qr.dump());
        assert_eq!(r.probe.lookups.load(Ordering::SeqCst), 0);
        r.release(&fd).await;

        // An append is not applied (its offset is the brick's end of file): the next read
        // fetches what the brick has.
        let mut xd = Xdata::new();
        xd.set(WRITE_APPEND_KEY, Vec::new());
        write(&r, &w, b"tail", 3, xd).await;
        let fd = r.open(w.gfid, libc::O_RDONLY).await;
        let brick = std::fs::read(r.path("f")).unwrap();
        assert!(brick.ends_with(b"!tail"), "{brick:?}");
        assert_eq!(r.read(&fd, 100, 0).await, brick);
        assert_eq!(counter(&r.qr, "fetches"), 1);
        // Fetched content takes writes too; one that would pass max-file-size drops it.
        write(&r, &w, b"HELLO", 0, Xdata::new()).await;
        assert_eq!(r.read(&fd, 5, 0).await, b"HELLO");
        assert_eq!(counter(&r.qr, "fetches"), 1);
        write(&r, &w, b"x", 64 * 1024, Xdata::new()).await;
        assert_eq!(counter(&r.qr, "files"), 0);
        r.release(&fd).await;
        r.release(&w).await;
    }

    #[tokio::test]
    async fn content_made_by_writes_yields_to_any_other_change() {
        let r = rig(&[]);
        let w = create_through(&r, "f").await;
        let g = w.gfid;
        let kept = |r: &Rig| r.qr.state.lock().files.get(&g).map(|c| c.data.to_vec());
        assert_eq!(kept(&r), Some(Vec::new()), "a created file is known empty");
        // A create that comes back with an existing file (no O_EXCL) knows nothing.
        std::fs::write(r.path("old"), b"").unwrap();
        let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
        let (ia, _) =
            r.qr.create(&ctx(), &Loc::entry(Gfid::ROOT, "old"), &fd, 0o644, 0, xd)
                .await
                .unwrap();
        assert_ne!(ia.gfid, fd.gfid);
        assert!(!r.qr.state.lock().files.contains_key(&ia.gfid));
        let data = Bytes::from_static(b"abc");
        // Another client's change told while the write is in flight.
        r.qr.state.lock().begin_write(g, Instant::now());
        r.qr.notify("probe", inode_inval(g, true)).await;
        r.qr.state.lock().end_write(g, Some((0, &data)));
        assert_eq!(kept(&r), None);
        // Nothing kept to build on: still nothing after the next write.
        write(&r, &w, b"abc", 0, Xdata::new()).await;
        assert_eq!(kept(&r), None);
        // Two writes at once (their order below is not known here).
        r.qr.state
            .lock()
            .insert(g, Bytes::from_static(b"abc"), None, Instant::now());
        r.qr.state.lock().begin_write(g, Instant::now());
        r.qr.state.lock().begin_write(g, Instant::now());
        r.qr.state.lock().end_write(g, Some((0, &data)));
        r.qr.state.lock().end_write(g, Some((1, &data)));
        assert_eq!(kept(&r), None);
        // A write that failed, or was given up (its guard dropped unended).
        r.qr.state
            .lock()
            .insert(g, Bytes::from_static(b"abc"), None, Instant::now());
        drop(Writing::begin(&r.qr.state, g));
        assert_eq!(kept(&r), None);
        assert!(r.qr.state.lock().pending.is_empty());
        // A fetch that ends while a write is in flight keeps nothing.
        r.qr.state.lock().begin_write(g, Instant::now());
        let start = r.qr.state.lock().ring.seq;
        let ia =
            r.qr.stat(&ctx(), &Loc::inode(g), Xdata::new())
                .await
                .unwrap()
                .0;
        r.qr.state
            .lock()
            .put(start, &ia, Bytes::from_static(b"abc"), Instant::now());
        assert_eq!(kept(&r), None);
        r.qr.state.lock().end_write(g, None);
        // An answer passing up with another size drops content made by writes; one with
        // the same size gives it its mtime.
        r.qr.state
            .lock()
            .insert(g, Bytes::from_static(b"abc"), None, Instant::now());
        r.qr.stat(&ctx(), &Loc::inode(g), Xdata::new())
            .await
            .unwrap();
        assert_eq!(kept(&r), Some(b"abc".to_vec()));
        assert!(r.qr.state.lock().files[&g].mtime.is_some());
        r.qr.state
            .lock()
            .insert(g, Bytes::from_static(b"abcd"), None, Instant::now());
        r.qr.stat(&ctx(), &Loc::inode(g), Xdata::new())
            .await
            .unwrap();
        assert_eq!(kept(&r), None);
        r.release(&w).await;
    }

    #[tokio::test]
    async fn a_lazy_fd_served_from_content_never_opens() {
        let r = rig(&[("lazy-open", "on")]);
        let g = r.file("f", b"lazy content").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 4, 0).await, b"lazy");
        assert_eq!(r.read(&fd, 100, 5).await, b"content");
        r.qr.flush(&ctx(), &fd, Xdata::new()).await.unwrap();
        r.release(&fd).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(r.probe.opens_done.load(Ordering::SeqCst), 0);
        assert_eq!(r.probe.releases.load(Ordering::SeqCst), 0);
        assert_eq!(counter(&r.qr, "opens_lazy"), 1);
        assert_eq!(counter(&r.qr, "opens_never_made"), 1);
        assert_eq!(counter(&r.qr, "fetches"), 1);
        // A file with no content to offer is opened for real (behind), without asking
        // for its content: its lookup showed it larger than max-file-size.
        let big = r.file("big", &[b'x'; 70_000]).await;
        let fd = r.open(big, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 10, 0).await, [b'x'; 10]);
        r.release(&fd).await;
        assert_eq!(counter(&r.qr, "opens_behind"), 1);
        assert_eq!(counter(&r.qr, "fetches"), 1);
        // One not seen large: asked for content once, then remembered.
        let big2 = r.file("big2", b"small at first").await;
        std::fs::write(r.path("big2"), [b'y'; 70_000]).unwrap();
        let fd = r.open(big2, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 10, 0).await, [b'y'; 10]);
        r.release(&fd).await;
        let fd = r.open(big2, libc::O_RDONLY).await;
        r.release(&fd).await;
        assert_eq!(counter(&r.qr, "opens_behind"), 3);
        assert_eq!(counter(&r.qr, "opens_lazy"), 1);
        assert_eq!(counter(&r.qr, "fetches"), 2);
        r.settled(2).await;
    }

    #[tokio::test]
    async fn a_lazy_fd_opens_for_the_fops_that_need_the_real_fd() {
        let r = rig(&[("lazy-open", "on")]);
        let g = r.file("f", b"abc").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 10, 0).await, b"abc");
        let ia = r.qr.fstat(&ctx(), &fd, Xdata::new()).await.unwrap().0;
        assert_eq!(ia.size, 3);
        assert!(
            fd.ctx::<PosixFile>("p").is_some(),
            "opened on posix for the fstat"
        );
        r.release(&fd).await;
        r.settled(1).await;
    }

    #[tokio::test]
    async fn closing_a_lazy_fd_drops_the_owners_locks_taken_through_another_fd() {
        let r = rig(&[("lazy-open", "on")]);
        let g = r.file("f", b"abc").await;
        let locker = r.open(g, libc::O_RDONLY).await;
        let lock = Flock {
            kind: LockType::Read,
            start: 0,
            len: 0,
            pid: 1,
            owner: 7,
        };
        // posix itself keeps no locks (ENOTSUP), but the try counts: the lazy fd's
        // flush must go down.
        let _ =
            r.qr.lk(&ctx(), &locker, LkCmd::Set, &lock, Xdata::new())
                .await;
        let other = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&other, 10, 0).await, b"abc");
        r.qr.flush(&ctx(), &other, Xdata::new()).await.unwrap();
        assert!(other.ctx::<PosixFile>("p").is_some(), "flushed for real");
        r.release(&other).await;
        r.release(&locker).await;
        r.settled(2).await;
        assert!(!r.qr.locks.any(&g), "counted down on release");
        // With no lock anywhere, a lazy fd's flush stays here.
        let fd = r.open(g, libc::O_RDONLY).await;
        r.qr.flush(&ctx(), &fd, Xdata::new()).await.unwrap();
        assert!(fd.ctx::<PosixFile>("p").is_none());
        r.release(&fd).await;
    }

    #[tokio::test]
    async fn a_lazy_fd_reads_its_unlinked_file_unless_its_content_changed() {
        let r = rig(&[("lazy-open", "on")]);
        let g = r.file("f", b"kept after unlink").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 100, 0).await, b"kept after unlink");
        // Unlinked by another client: told as an attribute change, without data.
        r.unlink_below("f").await;
        r.qr.notify("p", inode_inval(g, false)).await;
        assert_eq!(counter(&r.qr, "files"), 0);
        assert_eq!(r.read(&fd, 5, 5).await, b"after");
        // Through this client: the same.
        let g2 = r.file("g", b"second").await;
        let fd2 = r.open(g2, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd2, 100, 0).await, b"second");
        r.qr.unlink(&ctx(), &Loc::entry(Gfid::ROOT, "g"), Xdata::new())
            .await
            .unwrap();
        assert_eq!(r.read(&fd2, 100, 0).await, b"second");
        // Unlinked before this fd read anything: the content it was opened with.
        let g4 = r.file("i", b"opened").await;
        let fd4 = r.open(g4, libc::O_RDONLY).await;
        r.unlink_below("i").await;
        r.qr.notify("p", inode_inval(g4, false)).await;
        assert_eq!(r.read(&fd4, 100, 0).await, b"opened");
        r.release(&fd4).await;
        // A content change told before the file went: nothing stale is served.
        let g3 = r.file("h", b"old").await;
        let fd3 = r.open(g3, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd3, 100, 0).await, b"old");
        r.qr.notify("p", inode_inval(g3, true)).await;
        r.unlink_below("h").await;
        let e =
            r.qr.readv(&ctx(), &fd3, 100, 0, Xdata::new())
                .await
                .unwrap_err();
        assert_eq!(e, Errno::ESTALE);
        for fd in [&fd, &fd2, &fd3] {
            r.release(fd).await;
        }
        assert_eq!(r.probe.opens_done.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn cache_size_bounds_the_bytes_kept_least_recently_used_first() {
        // Two files of 40 bytes (each counted with its overhead) fit, three do not.
        let r = rig(&[("cache-size", "700")]);
        let mut g = HashMap::new();
        let mut fds = Vec::new();
        for name in ["a", "b", "c", "d"] {
            let gfid = r.file(name, &[name.as_bytes()[0]; 40]).await;
            g.insert(name, gfid);
        }
        for name in ["a", "b", "c", "b", "d"] {
            let fd = r.open(g[name], libc::O_RDONLY).await;
            assert_eq!(r.read(&fd, 100, 0).await, [name.as_bytes()[0]; 40]);
            fds.push(fd);
        }
        {
            let st = r.qr.state.lock();
            assert!(st.bytes <= 700);
            assert!(st.files.contains_key(&g["b"]), "used last but one");
            assert!(st.files.contains_key(&g["d"]));
            assert!(!st.files.contains_key(&g["a"]));
            assert!(!st.files.contains_key(&g["c"]));
        }
        assert_eq!(counter(&r.qr, "evictions"), 2);
        assert_eq!(counter(&r.qr, "bytes"), 2 * (40 + ENTRY_OVERHEAD));
        // Content larger than the whole cache is served, not kept.
        let big = r.file("e", &[b'e'; 720]).await;
        let fd = r.open(big, libc::O_RDONLY).await;
        assert_eq!(r.read(&fd, 800, 0).await, [b'e'; 720]);
        assert!(!r.qr.state.lock().files.contains_key(&big));
        fds.push(fd);
        for fd in &fds {
            r.release(fd).await;
        }
        r.settled(fds.len() as u64).await;
    }

    #[tokio::test]
    async fn a_fetch_racing_an_invalidation_is_served_but_not_kept() {
        let r = rig_with(&[], 0, 200);
        std::fs::write(r.path("f"), b"abc").unwrap();
        let g = r.probe.children[0]
            .lookup(&ctx(), &Loc::entry(Gfid::ROOT, "f"), Xdata::new())
            .await
            .unwrap()
            .0
            .gfid;
        let fd = r.open(g, libc::O_RDONLY).await;
        let (data, _) = tokio::join!(r.read(&fd, 100, 0), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            r.qr.notify("p", inode_inval(g, true)).await;
        });
        assert_eq!(data, b"abc");
        assert_eq!(counter(&r.qr, "files"), 0, "raced: not kept");
        assert_eq!(r.read(&fd, 100, 0).await, b"abc");
        assert_eq!(counter(&r.qr, "files"), 1);
        assert_eq!(counter(&r.qr, "fetches"), 2);
        r.release(&fd).await;
        r.settled(1).await;
    }

    #[tokio::test]
    async fn options_change_live() {
        let r = rig(&[]);
        let g = r.file("f", b"abc").await;
        let fd = r.open(g, libc::O_RDONLY).await;
        r.read(&fd, 100, 0).await;
        assert_eq!(counter(&r.qr, "files"), 1);
        // Off: content dropped, reads go down (through the real fd).
        r.qr.reconfigure(&options(&[("enable", "off")]))
            .await
            .unwrap();
        assert!(r.qr.dump().contains("enable = off"), "{}", r.qr.dump());
        assert_eq!(counter(&r.qr, "files"), 0);
        std::fs::write(r.path("f"), b"abcd").unwrap();
        assert_eq!(r.read(&fd, 100, 0).await, b"abcd");
        assert_eq!(counter(&r.qr, "fetches"), 1);
        // Open-behind off: opens are real.
        r.qr.reconfigure(&options(&[("open-behind", "off")]))
            .await
            .unwrap();
        let real = r.open(g, libc::O_RDONLY).await;
        assert_eq!(counter(&r.qr, "opens_behind"), 1);
        assert!(real.ctx::<PosixFile>("p").is_some());
        assert_eq!(r.read(&real, 100, 0).await, b"abcd");
        // A smaller max-file-size drops larger content at once; sizes shown.
        r.qr.reconfigure(&options(&[
            ("max-file-size", "2"),
            ("cache-timeout", "10s"),
        ]))
        .await
        .unwrap();
        assert_eq!(counter(&r.qr, "files"), 0);
        let dump = r.qr.dump();
        assert!(dump.contains("max-file-size = 2\n"), "{dump}");
        assert!(dump.contains("cache-timeout = 10s"), "{dump}");
        assert!(dump.contains("bytes = 0/134217728"), "{dump}");
        // Above 1 MiB counts as 1 MiB.
        r.qr.reconfigure(&options(&[("max-file-size", "8MiB")]))
            .await
            .unwrap();
        assert!(r.qr.dump().contains("max-file-size = 1048576\n"));
        r.release(&fd).await;
        r.release(&real).await;
        r.settled(2).await;
    }

    #[tokio::test]
    async fn built_from_a_volfile_under_md_cache() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "volume p\n    type storage/posix\n    option directory {}\nend-volume\n\
             volume qr\n    type performance/quick-read\n    option cache-timeout 60\n    \
             subvolumes p\nend-volume\n\
             volume md\n    type performance/md-cache\n    subvolumes qr\nend-volume\n",
            dir.path().display()
        );
        let vf = weft_core::volfile::Volfile::parse(&text).unwrap();
        let graph = Graph::build(&vf, &crate::registry()).unwrap();
        let top = graph.top().clone();
        std::fs::write(dir.path().join("f"), b"through the graph").unwrap();
        let (ia, _) = top
            .lookup(&ctx(), &Loc::entry(Gfid::ROOT, "f"), Xdata::new())
            .await
            .unwrap();
        for _ in 0..2 {
            let fd = Fd::new(ia.gfid, libc::O_RDONLY, false);
            top.open(&ctx(), &Loc::inode(ia.gfid), &fd, Xdata::new())
                .await
                .unwrap();
            let (data, _) = top.readv(&ctx(), &fd, 100, 0, Xdata::new()).await.unwrap();
            assert_eq!(&data[..], b"through the graph");
            top.flush(&ctx(), &fd, Xdata::new()).await.unwrap();
            top.release(&ctx(), &fd, Xdata::new()).await.unwrap();
        }
        let ev = inode_inval(ia.gfid, true);
        assert_eq!(graph.notify("p", ev.clone()).await, vec![ev]);
        let dump = graph.statedump();
        assert!(dump.contains("[qr]"), "{dump}");
        assert!(dump.contains("fetches = 1\n"), "{dump}");
        assert!(dump.contains("hits = 3\n"), "{dump}");
        assert!(dump.contains("opens_lazy = 2\n"), "{dump}");
        assert!(dump.contains("opens_never_made = 2\n"), "{dump}");
        assert!(dump.contains("invalidations = 1\n"), "{dump}");
    }
}
