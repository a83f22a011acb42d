//! `performance/md-cache`: caches metadata in the client graph (inode attributes, selected
//! xattrs, and which names a directory holds or lacks), so lookups, stats and getxattrs are
//! answered without a round trip, as GlusterFS's md-cache does.
//!
//! What it keeps:
//! - per inode (gfid): its [`Iatt`], and the values (or `ENODATA`) of xattrs whose names
//!   start with `security.`, `system.posix_acl_` or `user.`;
//! - per directory: each name it has been told about, as `Positive(gfid)`, `Negative`
//!   (ENOENT) or `Unknown` (must ask), and whether the directory is *complete* (every name
//!   in it is in the cache: this client made it with mkdir, or listed it with readdirp from
//!   offset 0 to the end with nothing in it invalidated meanwhile), when an absent name is
//!   an ENOENT answered from the cache.
//!
//! Every item carries the time it was stored and is a miss once older than
//! `md-cache-timeout` (at most 600 s), with or without invalidations. At most `max-entries`
//! inodes, as many directories and as many names (over all directories) are kept, the
//! least recently used going first; evicting a name drops its directory's completeness.
//!
//! Coherence:
//! - Changes made through this client update the cache as they pass (the bricks do not tell
//!   a client about its own changes): attributes of changed inodes are dropped (not stored
//!   from the reply: a write-behind below may answer before the brick has the data), names
//!   made, removed and renamed are set. A flush or fsync asks for the file's attributes
//!   once it is done ([`POSTSTAT_KEY`]: every write of this client is below by then) and
//!   keeps them under the race rule, so a stat after writing and closing a file is a hit;
//!   a writer's `release` asks for them too when none are cached (its close was answered
//!   before its writes were done: write-behind's flush-behind).
//! - Changes made elsewhere arrive as [`Event::Upcall`] invalidations through
//!   [`Xlator::notify`], which drop what they name (an inode: its attributes and xattrs; an
//!   entry: that name, made `Unknown`, and the directory's attributes; `All`: everything)
//!   and then pass the event on up (the front end above needs it too). `ChildUp` and
//!   `ChildDown` drop everything.
//! - **The race rule.** Every change (an invalidation, a change made through this client,
//!   an eviction) bumps a counter and is remembered, by gfid and name, in a ring of the last
//!   4096. A FOP reads the counter before calling down; its answer is stored for an inode
//!   only if that inode saw no change since (for a name, if its directory saw no change of
//!   the whole directory or of that name); a ring that no longer reaches back counts as a
//!   change. So an answer that raced with an invalidation is never cached.
//!
//! `cache-invalidation` does not change what this translator does: it says the bricks
//! tell this client about changes, for those that read the option (volume generation, the
//! FUSE mount's kernel timeouts).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::recency::Recency;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;

/// The directory's attributes an entry change's reply carries ([`POSTPARENT_KEY`]).
fn postparent(xd: &Xdata) -> Option<Iatt> {
    xd.get(POSTPARENT_KEY).and_then(Iatt::from_bytes)
}

/// The old name's directory's attributes a rename's reply carries ([`POSTOLDPARENT_KEY`]).
fn postoldparent(xd: &Xdata) -> Option<Iatt> {
    xd.get(POSTOLDPARENT_KEY).and_then(Iatt::from_bytes)
}

/// How many changes the race rule remembers.
const RING: usize = 4096;
/// The longest `md-cache-timeout` honoured; longer values are treated as this.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// The most xattrs cached per inode (the inode's cached xattrs are dropped beyond).
const XATTRS_PER_INODE: usize = 64;
/// Xattr names whose values are cached.
const CACHED_XATTR_PREFIXES: &[&str] = &["security.", "system.posix_acl_", "user."];
/// The xattr the kernel removes on a write or truncate (file capabilities).
const CAPABILITY_XATTR: &str = "security.capability";
/// Bounds of `max-entries`.
const MIN_ENTRIES: i64 = 16;
const MAX_ENTRIES: i64 = 16_777_216;

/// The options in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Config {
    enable: bool,
    timeout: Duration,
    invalidation: bool,
    negative: bool,
    max: usize,
}

impl Config {
    fn from_options(o: &Options) -> Config {
        Config {
            enable: o.bool("enable"),
            timeout: o.duration("md-cache-timeout").min(MAX_TIMEOUT),
            invalidation: o.bool("cache-invalidation"),
            negative: o.bool("cache-negative-entries"),
            max: o.int("max-entries").clamp(MIN_ENTRIES, MAX_ENTRIES) as usize,
        }
    }
}

/// What is cached of one inode.
struct InodeEntry {
    iatt: Option<(Iatt, Instant)>,
    /// Xattr values; `None` = ENODATA.
    xattrs: HashMap<String, (Option<Vec<u8>>, Instant)>,
    gen: u64,
}

/// What is cached of one directory's names.
struct DirEntry {
    /// Since when every name in the directory is in `names`.
    complete: Option<Instant>,
    names: HashMap<Vec<u8>, NameEntry>,
    gen: u64,
}

struct NameEntry {
    state: NameState,
    at: Instant,
    gen: u64,
}

/// What a name in a directory is known to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameState {
    /// It names this inode.
    Positive(Gfid),
    /// It does not exist.
    Negative,
    /// It may exist: ask.
    Unknown,
}

/// Which of an inode's cached things a change drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    /// The attributes only (a directory whose names changed, nlink).
    Iatt,
    /// The attributes and a cached file capability (writes and truncates lose it).
    Data,
    /// The attributes and every cached xattr.
    All,
}

#[derive(Default)]
struct Counters {
    lookup_hits: u64,
    lookup_misses: u64,
    stat_hits: u64,
    stat_misses: u64,
    getxattr_hits: u64,
    getxattr_misses: u64,
    negative_hits: u64,
    invalidations: u64,
    evictions: u64,
}

/// The recent changes, for the race rule: change number `seq` is the latest; changes up to
/// `floor` are forgotten (an operation that started before `floor` counts as raced).
struct Ring {
    seq: u64,
    floor: u64,
    notes: VecDeque<(u64, Gfid, Option<Vec<u8>>)>,
    /// The latest change of anything about a gfid (its inode or a name in it).
    by_gfid: HashMap<Gfid, u64>,
    /// The latest change of a whole inode (all its names, for a directory).
    by_inode: HashMap<Gfid, u64>,
    /// The latest change of one name in a directory.
    by_name: HashMap<Gfid, HashMap<Vec<u8>, u64>>,
}

impl Ring {
    fn new() -> Ring {
        Ring {
            seq: 0,
            floor: 0,
            notes: VecDeque::new(),
            by_gfid: HashMap::new(),
            by_inode: HashMap::new(),
            by_name: HashMap::new(),
        }
    }

    /// Records a change of inode `g` (`name` None) or of name `name` in directory `g`.
    fn note(&mut self, g: Gfid, name: Option<&[u8]>) {
        self.seq += 1;
        let s = self.seq;
        self.by_gfid.insert(g, s);
        match name {
            None => {
                self.by_inode.insert(g, s);
            }
            Some(n) => {
                self.by_name.entry(g).or_default().insert(n.to_vec(), s);
            }
        }
        self.notes.push_back((s, g, name.map(<[u8]>::to_vec)));
        while self.notes.len() > RING {
            let Some((s, g, n)) = self.notes.pop_front() else {
                break;
            };
            self.floor = s;
            if self.by_gfid.get(&g) == Some(&s) {
                self.by_gfid.remove(&g);
            }
            match n {
                None => {
                    if self.by_inode.get(&g) == Some(&s) {
                        self.by_inode.remove(&g);
                    }
                }
                Some(n) => {
                    if let Some(m) = self.by_name.get_mut(&g) {
                        if m.get(&n) == Some(&s) {
                            m.remove(&n);
                        }
                        if m.is_empty() {
                            self.by_name.remove(&g);
                        }
                    }
                }
            }
        }
    }

    /// Records a change of everything.
    fn all(&mut self) {
        self.seq += 1;
        self.floor = self.seq;
        self.notes.clear();
        self.by_gfid.clear();
        self.by_inode.clear();
        self.by_name.clear();
    }

    /// Whether anything about `g` changed after change number `start`.
    fn inode_changed(&self, start: u64, g: &Gfid) -> bool {
        start < self.floor || self.by_gfid.get(g).is_some_and(|s| *s > start)
    }

    /// Whether directory `p` as a whole, or its name `n`, changed after `start`.
    fn name_changed(&self, start: u64, p: &Gfid, n: &[u8]) -> bool {
        start < self.floor
            || self.by_inode.get(p).is_some_and(|s| *s > start)
            || self
                .by_name
                .get(p)
                .and_then(|m| m.get(n))
                .is_some_and(|s| *s > start)
    }
}

/// What a cached read does: answer from the cache, or call down having read the change
/// number (race rule).
enum Step<T> {
    Answer(Fop<T>),
    Call(u64),
}

/// A cached answer to a lookup.
enum Answer {
    Hit(Iatt),
    Negative,
    Miss,
}

/// Everything md-cache knows, under one lock.
struct State {
    cfg: Config,
    inodes: HashMap<Gfid, InodeEntry>,
    inode_lru: Recency<Gfid>,
    dirs: HashMap<Gfid, DirEntry>,
    dir_lru: Recency<Gfid>,
    /// Names kept, over all directories.
    names: usize,
    name_lru: Recency<(Gfid, Vec<u8>)>,
    ring: Ring,
    n: Counters,
}

impl State {
    fn new(cfg: Config) -> State {
        State {
            cfg,
            inodes: HashMap::new(),
            inode_lru: Recency::new(),
            dirs: HashMap::new(),
            dir_lru: Recency::new(),
            names: 0,
            name_lru: Recency::new(),
            ring: Ring::new(),
            n: Counters::default(),
        }
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) < self.cfg.timeout
    }

    // ==== inodes ====

    /// A fresh cached iatt of `g`.
    fn iatt(&self, g: &Gfid, now: Instant) -> Option<Iatt> {
        let (ia, at) = self.inodes.get(g)?.iatt?;
        self.fresh(at, now).then_some(ia)
    }

    fn touch_inode(&mut self, g: Gfid) {
        if self.inodes.contains_key(&g) {
            let gen = self.inode_lru.stamp(&g);
            if let Some(e) = self.inodes.get_mut(&g) {
                e.gen = gen;
            }
        }
    }

    /// The entry of `g`, made if missing, marked as just used.
    fn inode_mut(&mut self, g: Gfid) -> &mut InodeEntry {
        let gen = self.inode_lru.stamp(&g);
        let e = self.inodes.entry(g).or_insert_with(|| InodeEntry {
            iatt: None,
            xattrs: HashMap::new(),
            gen,
        });
        e.gen = gen;
        e
    }

    /// After this client's entry change in directory `p`: keeps the directory's
    /// attributes the brick sent with the reply (`post`), when nothing else changed the
    /// directory since the change started (`parent_ok`), so the kernel's next look at the
    /// directory needs no round trip.
    fn keep_postparent(&mut self, parent_ok: bool, p: Gfid, post: Option<Iatt>, now: Instant) {
        if let Some(ia) = post {
            if parent_ok && self.cfg.enable && ia.gfid == p {
                self.put_iatt(&ia, now);
            }
        }
    }

    fn put_iatt(&mut self, ia: &Iatt, now: Instant) {
        if ia.gfid.is_null() {
            return;
        }
        self.inode_mut(ia.gfid).iatt = Some((*ia, now));
        self.tidy();
    }

    /// Stores `ia` unless caching is off or its inode changed since `start`.
    fn store_iatt(&mut self, start: u64, ia: &Iatt, now: Instant) {
        if self.cfg.enable && !self.ring.inode_changed(start, &ia.gfid) {
            self.put_iatt(ia, now);
        }
    }

    fn drop_inode(&mut self, g: &Gfid, scope: Scope) {
        let Some(e) = self.inodes.get_mut(g) else {
            return;
        };
        e.iatt = None;
        match scope {
            Scope::Iatt => {}
            Scope::Data => {
                if e.xattrs
                    .get(CAPABILITY_XATTR)
                    .is_some_and(|(v, _)| v.is_some())
                {
                    e.xattrs.remove(CAPABILITY_XATTR);
                }
            }
            Scope::All => e.xattrs.clear(),
        }
        if e.xattrs.is_empty() {
            self.inodes.remove(g);
        }
    }

    /// A fresh cached xattr value of `g` (`Some(None)` = cached ENODATA).
    fn xattr(&self, g: &Gfid, name: &str, now: Instant) -> Option<Option<Vec<u8>>> {
        let (v, at) = self.inodes.get(g)?.xattrs.get(name)?;
        self.fresh(*at, now).then(|| v.clone())
    }

    fn put_xattr(&mut self, g: Gfid, name: &str, value: Option<Vec<u8>>, now: Instant) {
        if g.is_null() {
            return;
        }
        let e = self.inode_mut(g);
        if e.xattrs.len() >= XATTRS_PER_INODE && !e.xattrs.contains_key(name) {
            e.xattrs.clear();
        }
        e.xattrs.insert(name.to_string(), (value, now));
        self.tidy();
    }

    // ==== directories and names ====

    /// The record of directory `p`, made if missing, marked as just used.
    fn dir_mut(&mut self, p: Gfid) -> &mut DirEntry {
        let gen = self.dir_lru.stamp(&p);
        let d = self.dirs.entry(p).or_insert_with(|| DirEntry {
            complete: None,
            names: HashMap::new(),
            gen,
        });
        d.gen = gen;
        d
    }

    fn put_name(&mut self, p: Gfid, n: &[u8], state: NameState, now: Instant) {
        if let NameState::Positive(g) = state {
            if g.is_null() {
                self.forget_name(&p, n, now);
                return;
            }
        }
        let gen = self.name_lru.stamp(&(p, n.to_vec()));
        let d = self.dir_mut(p);
        let added = d
            .names
            .insert(
                n.to_vec(),
                NameEntry {
                    state,
                    at: now,
                    gen,
                },
            )
            .is_none();
        if added {
            self.names += 1;
        }
        self.tidy();
    }

    /// Stores `state` for name `n` in `p` if caching is on, negative entries are allowed
    /// (for `Negative`) and neither `p` nor the name changed since `start`; otherwise
    /// makes sure nothing is known of the name.
    fn store_name(&mut self, start: u64, p: Gfid, n: &[u8], state: NameState, now: Instant) {
        let allowed = self.cfg.enable
            && (state != NameState::Negative || self.cfg.negative)
            && !self.ring.name_changed(start, &p, n);
        if allowed {
            self.put_name(p, n, state, now);
        } else {
            self.forget_name(&p, n, now);
        }
    }

    /// Nothing is known of name `n` in `p` any more: `Unknown` in a complete directory
    /// (absent would mean ENOENT there), else gone.
    fn forget_name(&mut self, p: &Gfid, n: &[u8], now: Instant) {
        let Some(d) = self.dirs.get(p) else {
            return;
        };
        if d.complete.is_some() {
            self.put_name(*p, n, NameState::Unknown, now);
            return;
        }
        let Some(d) = self.dirs.get_mut(p) else {
            return;
        };
        if d.names.remove(n).is_some() {
            self.names = self.names.saturating_sub(1);
            if d.names.is_empty() {
                self.dirs.remove(p);
            }
        }
    }

    /// What name `n` in `p` maps to, fresh or not (for dropping what a change touches).
    fn named(&self, p: &Gfid, n: &[u8]) -> Option<Gfid> {
        match self.dirs.get(p)?.names.get(n)?.state {
            NameState::Positive(g) => Some(g),
            _ => None,
        }
    }

    fn remove_dir(&mut self, p: &Gfid) {
        if let Some(d) = self.dirs.remove(p) {
            self.names = self.names.saturating_sub(d.names.len());
        }
    }

    fn set_complete(&mut self, p: Gfid, since: Instant) {
        self.dir_mut(p).complete = Some(since);
        self.tidy();
    }

    /// The cached answer to a lookup of name `n` in `p` (expecting inode `want` if given).
    fn lookup_name(&mut self, p: Gfid, n: &[u8], want: Option<Gfid>, now: Instant) -> Answer {
        let Some(d) = self.dirs.get(&p) else {
            return Answer::Miss;
        };
        let answer = match d.names.get(n) {
            Some(e) if self.fresh(e.at, now) => match e.state {
                NameState::Positive(g) if want.is_none_or(|w| w == g) => match self.iatt(&g, now) {
                    Some(ia) => Answer::Hit(ia),
                    None => Answer::Miss,
                },
                NameState::Negative if self.cfg.negative => Answer::Negative,
                _ => Answer::Miss,
            },
            Some(_) => Answer::Miss,
            None => match d.complete {
                Some(at) if self.cfg.negative && self.fresh(at, now) => Answer::Negative,
                _ => Answer::Miss,
            },
        };
        if !matches!(answer, Answer::Miss) {
            // Mark the directory, the name and the inode as just used.
            let gen = self.name_lru.stamp(&(p, n.to_vec()));
            let dgen = self.dir_lru.stamp(&p);
            if let Some(d) = self.dirs.get_mut(&p) {
                d.gen = dgen;
                if let Some(e) = d.names.get_mut(n) {
                    e.gen = gen;
                }
            }
            if let Answer::Hit(ia) = answer {
                self.touch_inode(ia.gfid);
            }
            self.tidy();
        }
        answer
    }

    // ==== changes ====

    /// Inode `g` changed: remember it (race rule) and drop what `scope` says.
    fn changed(&mut self, g: Gfid, scope: Scope) {
        self.ring.note(g, None);
        self.drop_inode(&g, scope);
    }

    /// Directory `g` is gone or changed as a whole: drop its names and completeness.
    fn changed_dir(&mut self, g: Gfid) {
        self.ring.note(g, None);
        self.remove_dir(&g);
    }

    /// Name `n` in `p` changed in an unknown way.
    fn changed_name(&mut self, p: Gfid, n: &[u8], now: Instant) {
        self.ring.note(p, Some(n));
        self.drop_inode(&p, Scope::Iatt);
        self.forget_name(&p, n, now);
    }

    /// Drops everything and makes every operation in flight count as raced.
    fn drop_all(&mut self) {
        self.ring.all();
        self.inodes.clear();
        self.inode_lru.clear();
        self.dirs.clear();
        self.dir_lru.clear();
        self.names = 0;
        self.name_lru.clear();
    }

    /// Evicts beyond `max-entries` and keeps the recency queues short.
    fn tidy(&mut self) {
        let max = self.cfg.max;
        let mut rebuilt = false;
        while self.inodes.len() > max {
            match self.inode_lru.oldest() {
                Some((gen, g)) => {
                    if self.inodes.get(&g).is_some_and(|e| e.gen == gen) {
                        self.inodes.remove(&g);
                        self.n.evictions += 1;
                    }
                }
                None if !rebuilt => {
                    rebuilt = true;
                    self.rebuild_inode_lru();
                }
                None => break,
            }
        }
        rebuilt = false;
        while self.dirs.len() > max {
            match self.dir_lru.oldest() {
                Some((gen, p)) => {
                    if self.dirs.get(&p).is_some_and(|d| d.gen == gen) {
                        // A listing in progress must not call it complete now.
                        self.ring.note(p, None);
                        self.remove_dir(&p);
                        self.n.evictions += 1;
                    }
                }
                None if !rebuilt => {
                    rebuilt = true;
                    self.rebuild_dir_lru();
                }
                None => break,
            }
        }
        rebuilt = false;
        while self.names > max {
            match self.name_lru.oldest() {
                Some((gen, (p, n))) => {
                    let Some(d) = self.dirs.get_mut(&p) else {
                        continue;
                    };
                    if d.names.get(&n).is_none_or(|e| e.gen != gen) {
                        continue;
                    }
                    d.names.remove(&n);
                    // Absent no longer means ENOENT there.
                    d.complete = None;
                    let empty = d.names.is_empty();
                    self.names = self.names.saturating_sub(1);
                    if empty {
                        self.dirs.remove(&p);
                    }
                    self.ring.note(p, Some(&n));
                    self.n.evictions += 1;
                }
                None if !rebuilt => {
                    rebuilt = true;
                    self.rebuild_name_lru();
                }
                None => break,
            }
        }
        if self.inode_lru.too_long(self.inodes.len()) {
            self.rebuild_inode_lru();
        }
        if self.dir_lru.too_long(self.dirs.len()) {
            self.rebuild_dir_lru();
        }
        if self.name_lru.too_long(self.names) {
            self.rebuild_name_lru();
        }
    }

    fn rebuild_inode_lru(&mut self) {
        let live = self.inodes.iter().map(|(g, e)| (e.gen, *g)).collect();
        self.inode_lru.rebuild(live);
    }

    fn rebuild_dir_lru(&mut self) {
        let live = self.dirs.iter().map(|(g, d)| (d.gen, *g)).collect();
        self.dir_lru.rebuild(live);
    }

    fn rebuild_name_lru(&mut self) {
        let live = self
            .dirs
            .iter()
            .flat_map(|(p, d)| d.names.iter().map(|(n, e)| (e.gen, (*p, n.clone()))))
            .collect();
        self.name_lru.rebuild(live);
    }
}

/// Per-fd state of a directory listing (readdirp), hung on the fd under md-cache's name.
struct Listing(Mutex<ListingState>);

struct ListingState {
    /// The change number when the listing started at offset 0.
    start: u64,
    /// When it started.
    at: Instant,
    /// The offset the next call must continue from to keep the listing whole.
    next: Option<u64>,
    /// False once a call failed or did not continue where the last one ended.
    whole: bool,
}

/// The directory and name an entry location names, if it names one md-cache may cache.
fn entry_key(loc: &Loc) -> Option<(Gfid, Vec<u8>)> {
    let p = loc.parent?;
    let n = loc.name.as_ref()?.as_bytes();
    cacheable_name(n).then(|| (p, n.to_vec()))
}

/// Names md-cache keeps (never `.`, `..`, empty, or anything with `/` or NUL).
fn cacheable_name(n: &[u8]) -> bool {
    !n.is_empty() && n != b"." && n != b".." && !n.iter().any(|b| *b == b'/' || *b == 0)
}

/// Xattr names whose values md-cache keeps.
fn cacheable_xattr(name: &str) -> bool {
    CACHED_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The metadata cache translator (`performance/md-cache`). See the module docs.
pub struct MdCache {
    name: String,
    children: Vec<XlatorRef>,
    state: Mutex<State>,
}

impl MdCache {
    fn new(name: String, children: Vec<XlatorRef>, cfg: Config) -> MdCache {
        MdCache {
            name,
            children,
            state: Mutex::new(State::new(cfg)),
        }
    }

    /// The current change number (read before calling down, for the race rule).
    fn seq(&self) -> u64 {
        self.state.lock().ring.seq
    }

    /// The inode a location names: its gfid, or what its name maps to in the cache.
    fn target(&self, loc: &Loc) -> Option<Gfid> {
        loc.gfid.or_else(|| {
            let (p, n) = entry_key(loc)?;
            self.state.lock().named(&p, &n)
        })
    }

    /// Inode `g` changed through this client.
    fn changed(&self, g: Option<Gfid>, scope: Scope) {
        if let Some(g) = g {
            self.state.lock().changed(g, scope);
        }
    }

    /// Runs a FOP that changes inode `g`, dropping what `scope` says before and after.
    async fn modify<T>(
        &self,
        g: Option<Gfid>,
        scope: Scope,
        fop: impl Future<Output = Fop<T>> + Send,
    ) -> Fop<T> {
        self.changed(g, scope);
        let r = fop.await;
        self.changed(g, scope);
        r
    }

    // ==== lookup ====

    /// The cached answer to a lookup, or the change number to call down with.
    fn lookup_begin(&self, loc: &Loc, key: Option<&(Gfid, Vec<u8>)>, xd: &Xdata) -> Step<Iatt> {
        let now = Instant::now();
        let mut st = self.state.lock();
        if !st.cfg.enable {
            return Step::Call(st.ring.seq);
        }
        if xd.is_empty() {
            let answer = match (key, loc.gfid) {
                (Some((p, n)), want) => st.lookup_name(*p, n, want, now),
                (None, Some(g)) if loc.parent.is_none() && loc.name.is_none() => {
                    match st.iatt(&g, now) {
                        Some(ia) => {
                            st.touch_inode(g);
                            Answer::Hit(ia)
                        }
                        None => Answer::Miss,
                    }
                }
                _ => Answer::Miss,
            };
            match answer {
                Answer::Hit(ia) => {
                    st.n.lookup_hits += 1;
                    return Step::Answer(Ok((ia, Xdata::new())));
                }
                Answer::Negative => {
                    st.n.negative_hits += 1;
                    return Step::Answer(Err(Errno::ENOENT));
                }
                Answer::Miss => {}
            }
        }
        st.n.lookup_misses += 1;
        Step::Call(st.ring.seq)
    }

    fn lookup_end(&self, start: u64, loc: &Loc, key: Option<(Gfid, Vec<u8>)>, r: &Fop<Iatt>) {
        let now = Instant::now();
        let mut st = self.state.lock();
        match (r, key) {
            (Ok((ia, _)), key) => {
                st.store_iatt(start, ia, now);
                if let Some((p, n)) = key {
                    st.store_name(start, p, &n, NameState::Positive(ia.gfid), now);
                }
            }
            (Err(e), Some((p, n))) if *e == Errno::ENOENT => {
                st.store_name(start, p, &n, NameState::Negative, now);
                if let Some(g) = loc.gfid {
                    st.drop_inode(&g, Scope::Iatt);
                }
            }
            (Err(_), key) => {
                if let Some((p, n)) = key {
                    st.forget_name(&p, &n, now);
                }
                if let Some(g) = loc.gfid {
                    st.drop_inode(&g, Scope::Iatt);
                }
            }
        }
    }

    // ==== stat / fstat ====

    /// The cached iatt of `g`, or the change number to call down with.
    fn stat_begin(&self, g: Option<Gfid>, xd: &Xdata) -> Step<Iatt> {
        let now = Instant::now();
        let mut st = self.state.lock();
        if !st.cfg.enable {
            return Step::Call(st.ring.seq);
        }
        if let Some(g) = g.filter(|_| xd.is_empty()) {
            if let Some(ia) = st.iatt(&g, now) {
                st.touch_inode(g);
                st.n.stat_hits += 1;
                return Step::Answer(Ok((ia, Xdata::new())));
            }
        }
        st.n.stat_misses += 1;
        Step::Call(st.ring.seq)
    }

    fn stat_end(&self, start: u64, g: Option<Gfid>, r: &Fop<Iatt>) {
        let now = Instant::now();
        let mut st = self.state.lock();
        match r {
            Ok((ia, _)) => st.store_iatt(start, ia, now),
            Err(_) => {
                if let Some(g) = g {
                    st.drop_inode(&g, Scope::Iatt);
                }
            }
        }
    }

    // ==== flush / fsync ====

    /// Asks for the file's attributes after a flush or fsync (the writes this client made
    /// are all below by then: write-behind drains first); returns the change number.
    fn poststat_begin(&self, mut xd: Xdata) -> (u64, Xdata) {
        let st = self.state.lock();
        if st.cfg.enable {
            xd.set(POSTSTAT_KEY, Vec::new());
        }
        (st.ring.seq, xd)
    }

    /// Keeps the attributes a flush or fsync brought back, unless the inode changed
    /// meanwhile (a write through another fd, an invalidation): the race rule.
    fn poststat_end(&self, start: u64, fd: &FdRef, r: &Fop<()>) {
        let Ok((_, xd)) = r else {
            return;
        };
        let Some(ia) = xd.get(POSTSTAT_KEY).and_then(Iatt::from_bytes) else {
            return;
        };
        if ia.gfid == fd.gfid {
            self.state.lock().store_iatt(start, &ia, Instant::now());
        }
    }

    // ==== getxattr ====

    /// getxattr of one cacheable name of inode `g`, answered from the cache or by `fop`.
    async fn cached_xattr(
        &self,
        g: Gfid,
        name: &str,
        fop: impl Future<Output = Fop<XattrMap>> + Send,
    ) -> Fop<XattrMap> {
        let start = match self.xattr_begin(g, name) {
            Step::Call(start) => start,
            Step::Answer(answer) => return answer,
        };
        let r = fop.await;
        self.xattr_end(start, g, name, &r);
        r
    }

    fn xattr_begin(&self, g: Gfid, name: &str) -> Step<XattrMap> {
        let now = Instant::now();
        let mut st = self.state.lock();
        if !st.cfg.enable {
            return Step::Call(st.ring.seq);
        }
        if let Some(v) = st.xattr(&g, name, now) {
            st.touch_inode(g);
            st.n.getxattr_hits += 1;
            return Step::Answer(match v {
                Some(v) => Ok((XattrMap::from([(name.to_string(), v)]), Xdata::new())),
                None => Err(Errno::ENODATA),
            });
        }
        st.n.getxattr_misses += 1;
        Step::Call(st.ring.seq)
    }

    fn xattr_end(&self, start: u64, g: Gfid, name: &str, r: &Fop<XattrMap>) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let value = match r {
            Ok((map, _)) => match map.get(name) {
                Some(v) => Some(v.clone()),
                None => return,
            },
            Err(e) if *e == Errno::ENODATA => None,
            Err(_) => {
                if let Some(e) = st.inodes.get_mut(&g) {
                    e.xattrs.remove(name);
                }
                return;
            }
        };
        if st.cfg.enable && !st.ring.inode_changed(start, &g) {
            st.put_xattr(g, name, value, now);
        }
    }

    // ==== entries ====

    /// After a FOP that made the entry `loc` (create, mkdir, mknod, symlink). `keep_iatt`:
    /// the returned iatt is the new inode's as it stands (not a file create truncated).
    fn made(&self, start: u64, loc: &Loc, r: &Fop<Iatt>, keep_iatt: bool, dir: bool) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let key = entry_key(loc);
        let Ok((ia, _)) = r else {
            match key {
                Some((p, n)) => st.changed_name(p, &n, now),
                None => {
                    if let Some(p) = loc.parent {
                        st.changed(p, Scope::Iatt);
                    }
                }
            }
            return;
        };
        let g = ia.gfid;
        let inode_ok = st.cfg.enable && !g.is_null() && !st.ring.inode_changed(start, &g);
        let post = r.as_ref().ok().and_then(|(_, xd)| postparent(xd));
        match key {
            Some((p, n)) => {
                let name_ok = !st.ring.name_changed(start, &p, &n);
                let parent_ok = !st.ring.inode_changed(start, &p);
                st.ring.note(p, Some(&n));
                st.drop_inode(&p, Scope::Iatt);
                st.keep_postparent(parent_ok, p, post, now);
                if name_ok && st.cfg.enable {
                    st.put_name(p, &n, NameState::Positive(g), now);
                } else {
                    st.forget_name(&p, &n, now);
                }
            }
            None => {
                if let Some(p) = loc.parent {
                    st.changed(p, Scope::Iatt);
                }
            }
        }
        if g.is_null() {
            return;
        }
        st.ring.note(g, None);
        if inode_ok && keep_iatt {
            st.put_iatt(ia, now);
        } else {
            st.drop_inode(&g, Scope::Data);
        }
        if dir {
            // A new directory holds nothing: every name in it is ENOENT until told.
            st.remove_dir(&g);
            if inode_ok && st.cfg.negative {
                st.set_complete(g, now);
            }
        }
    }

    /// After a link of `old` as `new`.
    fn linked(&self, start: u64, old: &Loc, new: &Loc, r: &Fop<Iatt>) {
        let now = Instant::now();
        let mut st = self.state.lock();
        let g = match r {
            Ok((ia, _)) if !ia.gfid.is_null() => Some(ia.gfid),
            _ => old.gfid,
        };
        if let Some(g) = g {
            st.changed(g, Scope::Iatt);
        }
        let Some((p, n)) = entry_key(new) else {
            if let Some(p) = new.parent {
                st.changed(p, Scope::Iatt);
            }
            return;
        };
        match (r, g) {
            (Ok(_), Some(g)) => {
                let name_ok = !st.ring.name_changed(start, &p, &n);
                st.ring.note(p, Some(&n));
                st.drop_inode(&p, Scope::Iatt);
                if name_ok && st.cfg.enable {
                    st.put_name(p, &n, NameState::Positive(g), now);
                } else {
                    st.forget_name(&p, &n, now);
                }
            }
            _ => st.changed_name(p, &n, now),
        }
    }

    /// After unlink or rmdir of `loc`, whose inode was `victim` (if known).
    fn removed(
        &self,
        start: u64,
        loc: &Loc,
        victim: Option<Gfid>,
        reply: Option<&Xdata>,
        dir: bool,
    ) {
        let ok = reply.is_some();
        let now = Instant::now();
        let mut st = self.state.lock();
        if let Some(v) = victim {
            st.changed(v, if dir { Scope::All } else { Scope::Iatt });
            if dir && ok {
                st.changed_dir(v);
            }
        }
        let Some((p, n)) = entry_key(loc) else {
            if let Some(p) = loc.parent {
                st.changed(p, Scope::Iatt);
            }
            return;
        };
        if !ok {
            st.changed_name(p, &n, now);
            return;
        }
        let name_ok = !st.ring.name_changed(start, &p, &n);
        let parent_ok = !st.ring.inode_changed(start, &p);
        st.ring.note(p, Some(&n));
        st.drop_inode(&p, Scope::Iatt);
        st.keep_postparent(parent_ok, p, reply.and_then(postparent), now);
        if name_ok && st.cfg.enable && st.cfg.negative {
            st.put_name(p, &n, NameState::Negative, now);
        } else {
            st.forget_name(&p, &n, now);
        }
    }

    /// After a rename of `old` to `new`; `moved` and `replaced` are the inodes the two
    /// names held before, where known.
    #[allow(clippy::too_many_arguments)]
    fn renamed(
        &self,
        start: u64,
        old: &Loc,
        new: &Loc,
        flags: u32,
        moved: Option<Gfid>,
        replaced: Option<Gfid>,
        reply: Option<&Xdata>,
    ) {
        let ok = reply.is_some();
        let now = Instant::now();
        let mut st = self.state.lock();
        let (ko, kn) = (entry_key(old), entry_key(new));
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        for g in [moved, replaced].into_iter().flatten() {
            st.changed(g, Scope::Iatt);
        }
        // The directories' attributes the reply carries, kept for those nothing else
        // changed since the rename started (checked before the notes below).
        let posts = [
            (new.parent, reply.and_then(postparent)),
            (old.parent, reply.and_then(postoldparent)),
        ]
        .map(|(p, post)| p.map(|p| (p, !st.ring.inode_changed(start, &p), post)));
        for p in [old.parent, new.parent].into_iter().flatten() {
            st.drop_inode(&p, Scope::Iatt);
        }
        for (p, parent_ok, post) in posts.into_iter().flatten() {
            st.keep_postparent(parent_ok, p, post, now);
        }
        // Whether each name may be set (nothing else changed it meanwhile), then note both.
        let old_ok = ko
            .as_ref()
            .is_some_and(|(p, n)| !st.ring.name_changed(start, p, n));
        let new_ok = kn
            .as_ref()
            .is_some_and(|(p, n)| !st.ring.name_changed(start, p, n));
        for (p, n) in ko.iter().chain(kn.iter()) {
            st.ring.note(*p, Some(n));
        }
        for p in [old.parent, new.parent].into_iter().flatten() {
            if ko.as_ref().is_none_or(|k| k.0 != p) && kn.as_ref().is_none_or(|k| k.0 != p) {
                st.ring.note(p, None);
            }
        }
        // Two names of one inode: rename does nothing; a failure may have done anything.
        let same = moved.is_some() && moved == replaced;
        if !ok || same || !st.cfg.enable {
            for (p, n) in ko.iter().chain(kn.iter()) {
                st.forget_name(p, n, now);
            }
            return;
        }
        if exchange {
            if let Some((p, n)) = &ko {
                match replaced {
                    Some(r) if old_ok => st.put_name(*p, n, NameState::Positive(r), now),
                    _ => st.forget_name(p, n, now),
                }
            }
        } else {
            if let Some(r) = replaced {
                // A directory renamed over is gone.
                st.changed_dir(r);
            }
            if let Some((p, n)) = &ko {
                if old_ok && st.cfg.negative {
                    st.put_name(*p, n, NameState::Negative, now);
                } else {
                    st.forget_name(p, n, now);
                }
            }
        }
        if let Some((p, n)) = &kn {
            match moved {
                Some(m) if new_ok => st.put_name(*p, n, NameState::Positive(m), now),
                _ => st.forget_name(p, n, now),
            }
        }
    }

    // ==== readdirp ====

    /// Starts (offset 0) a listing on `fd`; returns the change number to call down with.
    fn listing_begin(&self, fd: &FdRef, offset: u64) -> u64 {
        let start = self.seq();
        if offset == 0 {
            fd.set_ctx(
                &self.name,
                Arc::new(Listing(Mutex::new(ListingState {
                    start,
                    at: Instant::now(),
                    next: Some(0),
                    whole: true,
                }))),
            );
        }
        start
    }

    fn listing_end(&self, start: u64, fd: &FdRef, offset: u64, r: &Fop<Vec<Dirent>>) {
        let now = Instant::now();
        let listing = fd.ctx::<Listing>(&self.name);
        let (entries, reply) = match r {
            Ok((entries, reply)) => (entries, reply),
            Err(_) => {
                if let Some(l) = listing {
                    l.0.lock().whole = false;
                }
                return;
            }
        };
        let p = fd.gfid;
        // Whether this batch continues the listing, and whether it ends it whole.
        let mut complete_since = None;
        if let Some(l) = &listing {
            let mut s = l.0.lock();
            if s.next != Some(offset) {
                s.whole = false;
            }
            match entries.last() {
                Some(last) => s.next = Some(last.offset),
                None if s.whole => complete_since = Some((s.start, s.at)),
                None => {}
            }
        }
        let mut st = self.state.lock();
        if !st.cfg.enable {
            return;
        }
        for e in entries {
            if !cacheable_name(&e.name) {
                continue;
            }
            match e.iatt {
                Some(ia) if !ia.gfid.is_null() => {
                    st.store_iatt(start, &ia, now);
                    st.store_name(start, p, &e.name, NameState::Positive(ia.gfid), now);
                }
                // It exists, attributes unknown: ask when looked up.
                _ => st.put_name(p, &e.name, NameState::Unknown, now),
            }
        }
        // The xattrs the brick listed with the entries (ENODATA for a name asked and
        // absent), each kept unless its inode changed since the call started.
        let listed = reply
            .get(READDIRP_XATTRS_KEY)
            .and_then(EntryXattrs::from_bytes);
        for (g, have) in listed.iter().flat_map(|l| &l.entries) {
            if st.ring.inode_changed(start, g) {
                continue;
            }
            for name in listed.iter().flat_map(|l| &l.names) {
                if cacheable_xattr(name) {
                    st.put_xattr(*g, name, have.get(name).cloned(), now);
                }
            }
        }
        if let Some((list_start, at)) = complete_since {
            if st.cfg.negative && !st.ring.inode_changed(list_start, &p) {
                st.set_complete(p, at);
            }
        }
    }

    // ==== notify ====

    fn invalidate(&self, u: &Upcall) {
        let now = Instant::now();
        let mut st = self.state.lock();
        for inv in &u.invalidations {
            st.n.invalidations += 1;
            match inv {
                Invalidation::Inode { gfid, .. } => st.changed(*gfid, Scope::All),
                Invalidation::Entry { parent, name } => st.changed_name(*parent, name, now),
                Invalidation::All => st.drop_all(),
                // What was made behind in it reaches the brick now: its attributes differ.
                Invalidation::Recall { dir } => st.changed(*dir, Scope::Iatt),
            }
        }
    }
}

#[async_trait::async_trait]
impl Xlator for MdCache {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    async fn notify(&self, _from: &str, event: Event) -> Option<Event> {
        match &event {
            Event::Upcall(u) => self.invalidate(u),
            Event::ChildUp(_) | Event::ChildDown(_) => self.state.lock().drop_all(),
            _ => {}
        }
        Some(event)
    }

    fn dump(&self) -> String {
        let now = Instant::now();
        let st = self.state.lock();
        let onoff = |b: bool| if b { "on" } else { "off" };
        let complete = st
            .dirs
            .values()
            .filter(|d| d.complete.is_some_and(|at| st.fresh(at, now)))
            .count();
        let c = &st.cfg;
        let n = &st.n;
        format!(
            "enable = {}\nmd-cache-timeout = {:?}\ncache-invalidation = {}\n\
             cache-negative-entries = {}\nmax-entries = {}\n\
             inodes = {}/{}\nnames = {}/{}\ndirs = {} (complete = {})\n\
             lookup_hits = {}\nlookup_misses = {}\nstat_hits = {}\nstat_misses = {}\n\
             getxattr_hits = {}\ngetxattr_misses = {}\nnegative_hits = {}\n\
             invalidations = {}\nevictions = {}\n",
            onoff(c.enable),
            c.timeout,
            onoff(c.invalidation),
            onoff(c.negative),
            c.max,
            st.inodes.len(),
            c.max,
            st.names,
            c.max,
            st.dirs.len(),
            complete,
            n.lookup_hits,
            n.lookup_misses,
            n.stat_hits,
            n.stat_misses,
            n.getxattr_hits,
            n.getxattr_misses,
            n.negative_hits,
            n.invalidations,
            n.evictions,
        )
    }

    async fn fini(&self) {
        self.state.lock().drop_all();
    }

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let cfg = Config::from_options(options);
        let mut st = self.state.lock();
        let flush = cfg.enable != st.cfg.enable || cfg.negative != st.cfg.negative;
        st.cfg = cfg;
        if flush {
            st.drop_all();
        } else {
            st.tidy();
        }
        Ok(())
    }

    // ==== cached reads ====

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let key = entry_key(loc);
        let start = match self.lookup_begin(loc, key.as_ref(), &xd) {
            Step::Call(start) => start,
            Step::Answer(answer) => return answer,
        };
        let r = child.lookup(ctx, loc, xd).await;
        self.lookup_end(start, loc, key, &r);
        r
    }

    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let start = match self.stat_begin(loc.gfid, &xd) {
            Step::Call(start) => start,
            Step::Answer(answer) => return answer,
        };
        let r = child.stat(ctx, loc, xd).await;
        self.stat_end(start, loc.gfid, &r);
        r
    }

    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let start = match self.stat_begin(Some(fd.gfid), &xd) {
            Step::Call(start) => start,
            Step::Answer(answer) => return answer,
        };
        let r = child.fstat(ctx, fd, xd).await;
        self.stat_end(start, Some(fd.gfid), &r);
        r
    }

    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let (start, xd) = self.poststat_begin(xd);
        let r = child.flush(ctx, fd, xd).await;
        self.poststat_end(start, fd, &r);
        r
    }

    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let (start, xd) = self.poststat_begin(xd);
        let r = child.fsync(ctx, fd, datasync, xd).await;
        self.poststat_end(start, fd, &r);
        r
    }

    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        let child = self.child()?;
        match (loc.gfid, name) {
            (Some(g), Some(n)) if cacheable_xattr(n) && xd.is_empty() => {
                self.cached_xattr(g, n, child.getxattr(ctx, loc, name, xd))
                    .await
            }
            _ => child.getxattr(ctx, loc, name, xd).await,
        }
    }

    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let child = self.child()?;
        match name {
            Some(n) if cacheable_xattr(n) && xd.is_empty() => {
                self.cached_xattr(fd.gfid, n, child.fgetxattr(ctx, fd, name, xd))
                    .await
            }
            _ => child.fgetxattr(ctx, fd, name, xd).await,
        }
    }

    // ==== inode changes ====

    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let fop = child.setattr(ctx, loc, attr, xd);
        self.modify(self.target(loc), setattr_scope(attr), fop)
            .await
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let fop = child.fsetattr(ctx, fd, attr, xd);
        self.modify(Some(fd.gfid), setattr_scope(attr), fop).await
    }
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let fop = child.truncate(ctx, loc, size, xd);
        self.modify(self.target(loc), Scope::Data, fop).await
    }
    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let fop = child.ftruncate(ctx, fd, size, xd);
        self.modify(Some(fd.gfid), Scope::Data, fop).await
    }
    async fn lk(&self, ctx: &Ctx, fd: &FdRef, cmd: LkCmd, lock: &Flock, xd: Xdata) -> Fop<Flock> {
        let child = self.child()?;
        if cmd == LkCmd::Get || lock.kind == LockType::Unlock {
            return child.lk(ctx, fd, cmd, lock, xd).await;
        }
        // A lock holder reads what the previous holder wrote, whatever the caches: the
        // attributes (size) are asked again after a lock is granted.
        let fop = child.lk(ctx, fd, cmd, lock, xd);
        self.modify(Some(fd.gfid), Scope::Data, fop).await
    }
    async fn writev(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        data: bytes::Bytes,
        offset: u64,
        xd: Xdata,
    ) -> Fop<u64> {
        let child = self.child()?;
        let fop = child.writev(ctx, fd, data, offset, xd);
        self.modify(Some(fd.gfid), Scope::Data, fop).await
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
        let fop = child.fallocate(ctx, fd, mode, offset, len, xd);
        self.modify(Some(fd.gfid), Scope::Data, fop).await
    }
    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let fop = child.discard(ctx, fd, offset, len, xd);
        self.modify(Some(fd.gfid), Scope::Data, fop).await
    }
    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let fop = child.zerofill(ctx, fd, offset, len, xd);
        self.modify(Some(fd.gfid), Scope::Data, fop).await
    }
    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        if fd.flags & libc::O_TRUNC == 0 {
            return child.open(ctx, loc, fd, xd).await;
        }
        let g = self.target(loc).or(Some(fd.gfid));
        self.modify(g, Scope::Data, child.open(ctx, loc, fd, xd))
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
        let child = self.child()?;
        let fop = child.setxattr(ctx, loc, attrs, flags, xd);
        self.modify(self.target(loc), Scope::All, fop).await
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
        let fop = child.fsetxattr(ctx, fd, attrs, flags, xd);
        self.modify(Some(fd.gfid), Scope::All, fop).await
    }
    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let fop = child.removexattr(ctx, loc, name, xd);
        self.modify(self.target(loc), Scope::All, fop).await
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let fop = child.fremovexattr(ctx, fd, name, xd);
        self.modify(Some(fd.gfid), Scope::All, fop).await
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
        let fop = child.xattrop(ctx, loc, op, attrs, xd);
        self.modify(self.target(loc), Scope::Iatt, fop).await
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
        let fop = child.fxattrop(ctx, fd, op, attrs, xd);
        self.modify(Some(fd.gfid), Scope::Iatt, fop).await
    }

    // ==== entry changes ====

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
        let start = self.seq();
        let r = child.create(ctx, loc, fd, mode, umask, xd).await;
        // Without O_EXCL an existing file may come back, truncated by O_TRUNC after the
        // iatt was taken (or before a write-behind below is done): do not keep that iatt.
        let existing_truncated = fd.flags & libc::O_TRUNC != 0 && fd.flags & libc::O_EXCL == 0;
        self.made(start, loc, &r, !existing_truncated, false);
        r
    }
    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let start = self.seq();
        let r = child.mkdir(ctx, loc, mode, umask, xd).await;
        self.made(start, loc, &r, true, true);
        r
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
        let child = self.child()?;
        let start = self.seq();
        let r = child.mknod(ctx, loc, mode, rdev, umask, xd).await;
        self.made(start, loc, &r, true, false);
        r
    }
    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &std::path::Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let child = self.child()?;
        let start = self.seq();
        let r = child.symlink(ctx, target, loc, umask, xd).await;
        self.made(start, loc, &r, true, false);
        r
    }
    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        let start = self.seq();
        let r = child.link(ctx, old, new, xd).await;
        self.linked(start, old, new, &r);
        r
    }
    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let victim = self.target(loc);
        let start = self.seq();
        let r = child.unlink(ctx, loc, xd).await;
        self.removed(start, loc, victim, r.as_ref().ok().map(|(_, x)| x), false);
        r
    }
    async fn rmdir(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let victim = self.target(loc);
        let start = self.seq();
        let r = child.rmdir(ctx, loc, xd).await;
        self.removed(start, loc, victim, r.as_ref().ok().map(|(_, x)| x), true);
        r
    }
    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let (moved, replaced) = (self.target(old), self.target(new));
        let start = self.seq();
        let r = child.rename(ctx, old, new, flags, xd).await;
        let reply = r.as_ref().ok().map(|(_, x)| x);
        self.renamed(start, old, new, flags, moved, replaced, reply);
        r
    }

    // ==== listings ====

    async fn readdirp(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let child = self.child()?;
        let start = self.listing_begin(fd, offset);
        let mut xd = xd;
        if self.state.lock().cfg.enable && !xd.has(READDIRP_XATTRS_KEY) {
            xd.set(READDIRP_XATTRS_KEY, EntryXattrs::ask(LISTED_XATTRS));
        }
        let r = child.readdirp(ctx, fd, size, offset, xd).await;
        self.listing_end(start, fd, offset, &r);
        r
    }
    /// A writer's close whose file has no attributes cached (its close was answered
    /// before its writes were done: flush-behind) asks for them once the fd is released.
    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let want = fd.flags & libc::O_ACCMODE != libc::O_RDONLY && {
            let st = self.state.lock();
            st.cfg.enable && st.iatt(&fd.gfid, Instant::now()).is_none()
        };
        if !want {
            return child.release(ctx, fd, xd).await;
        }
        let (start, xd) = self.poststat_begin(xd);
        let r = child.release(ctx, fd, xd).await;
        self.poststat_end(start, fd, &r);
        r
    }
    async fn releasedir(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        fd.take_ctx::<Listing>(&self.name);
        self.child()?.releasedir(ctx, fd, xd).await
    }
}

/// The xattrs a listing asks the brick for with every entry: what `ls -l` asks of each
/// file (its security label and ACL), and what the kernel asks before a write.
const LISTED_XATTRS: &[&str] = &[
    "security.selinux",
    "security.capability",
    "system.posix_acl_access",
    "system.posix_acl_default",
];

/// What a setattr drops: a mode change also changes a POSIX ACL's mask, and a change of
/// owner removes file capabilities, so those drop every cached xattr.
fn setattr_scope(attr: &SetAttr) -> Scope {
    if attr.mode.is_some() || attr.uid.is_some() || attr.gid.is_some() {
        Scope::All
    } else {
        Scope::Data
    }
}

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "enable",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "off: every call passes through and the cache is dropped (GlusterFS's performance.stat-prefetch). Changes live.",
    },
    OptionSpec {
        key: "md-cache-timeout",
        kind: OptionKind::Duration,
        default: Some("1s"),
        description: "The longest any cached attribute, xattr or name is trusted, with or without invalidations; values above 600s count as 600s. Changes live.",
    },
    OptionSpec {
        key: "cache-invalidation",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "Says the bricks tell this client about changes (upcalls), for volume generation and the FUSE mount's kernel timeouts; md-cache itself behaves the same (entries still expire after md-cache-timeout). Changes live.",
    },
    OptionSpec {
        key: "cache-negative-entries",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "Cache ENOENT answers and complete directory listings, so a missing name is answered without a round trip. Changes live.",
    },
    OptionSpec {
        key: "max-entries",
        kind: OptionKind::Int {
            min: MIN_ENTRIES,
            max: MAX_ENTRIES,
        },
        default: Some("262144"),
        description: "The most inodes kept, and separately the most directories and the most names over all directories; the least recently used go first. Changes live.",
    },
];

/// The `performance/md-cache` type.
pub struct MdCacheType;

impl XlatorType for MdCacheType {
    fn type_name(&self) -> &'static str {
        "performance/md-cache"
    }
    fn description(&self) -> &'static str {
        "Caches inode attributes, security/ACL/user xattrs and directory names (positive and negative) in the client, kept coherent by brick invalidations."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(MdCache::new(
            init.name,
            init.children,
            Config::from_options(&init.options),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::volfile::{Volfile, VolumeDecl};

    fn options(pairs: &[(&str, &str)]) -> Options {
        let given: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Options::validate(OPTIONS, &given).unwrap()
    }

    /// A brick in a tempdir with md-cache (options `pairs`) over it.
    struct Rig {
        dir: tempfile::TempDir,
        _graph: Graph,
        md: Arc<MdCache>,
    }

    fn rig(pairs: &[(&str, &str)]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let vf = Volfile {
            volumes: vec![
                VolumeDecl::new("p", "storage/posix").option("directory", dir.path().display())
            ],
        };
        let graph = Graph::build(&vf, &crate::registry()).unwrap();
        let md = Arc::new(MdCache::new(
            "md".into(),
            vec![graph.get("p").unwrap().clone()],
            Config::from_options(&options(pairs)),
        ));
        Rig {
            dir,
            _graph: graph,
            md,
        }
    }

    impl Rig {
        fn path(&self, rel: &str) -> std::path::PathBuf {
            self.dir.path().join(rel)
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

    async fn lookup(x: &dyn Xlator, parent: Gfid, name: &str) -> Result<Iatt, Errno> {
        x.lookup(&ctx(), &Loc::entry(parent, name), Xdata::new())
            .await
            .map(|r| r.0)
    }

    async fn stat(x: &dyn Xlator, g: Gfid) -> Iatt {
        x.stat(&ctx(), &Loc::inode(g), Xdata::new())
            .await
            .unwrap()
            .0
    }

    async fn create(x: &dyn Xlator, parent: Gfid, name: &str) -> (Iatt, FdRef) {
        let fd = Fd::new(Gfid::random(), libc::O_RDWR | libc::O_EXCL, false);
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
        let (ia, _) = x
            .create(&ctx(), &Loc::entry(parent, name), &fd, 0o644, 0, xd)
            .await
            .unwrap();
        (ia, fd)
    }

    async fn mkdir(x: &dyn Xlator, parent: Gfid, name: &str) -> Iatt {
        let mut xd = Xdata::new();
        xd.set(GFID_REQ_KEY, Gfid::random().0.to_vec());
        x.mkdir(&ctx(), &Loc::entry(parent, name), 0o755, 0, xd)
            .await
            .unwrap()
            .0
    }

    /// A listing brings each entry's security label and ACLs with it: the getxattrs
    /// `ls -l` makes of every file afterwards are hits, the value where the file has one
    /// and ENODATA where not; another client's change of a file drops its values.
    #[tokio::test]
    async fn a_listing_brings_the_xattrs_ls_asks_for() {
        let r = rig(&[("md-cache-timeout", "60")]);
        std::fs::create_dir(r.path("d")).unwrap();
        std::fs::write(r.path("d/labelled"), b"x").unwrap();
        std::fs::write(r.path("d/plain"), b"y").unwrap();
        rustix::fs::setxattr(
            r.path("d/labelled"),
            "security.selinux",
            b"system_u:object_r:weft_t:s0",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let d = lookup(&*r.md, Gfid::ROOT, "d").await.unwrap();
        let listed = list_all(&*r.md, d.gfid, 4096).await;
        let gfid_of = |n: &str| {
            listed
                .iter()
                .find(|e| e.name == n.as_bytes())
                .and_then(|e| e.iatt)
                .unwrap()
                .gfid
        };
        let (labelled, plain) = (gfid_of("labelled"), gfid_of("plain"));
        let misses = counter(&*r.md, "getxattr_misses");
        let get = |g: Gfid, name: &'static str| {
            let md = r.md.clone();
            async move {
                md.getxattr(&ctx(), &Loc::inode(g), Some(name), Xdata::new())
                    .await
                    .map(|(m, _)| m.into_values().next().unwrap_or_default())
            }
        };
        assert_eq!(
            get(labelled, "security.selinux").await.unwrap(),
            b"system_u:object_r:weft_t:s0"
        );
        assert_eq!(get(plain, "security.selinux").await, Err(Errno::ENODATA));
        for g in [labelled, plain] {
            assert_eq!(get(g, "system.posix_acl_access").await, Err(Errno::ENODATA));
            assert_eq!(get(g, "security.capability").await, Err(Errno::ENODATA));
        }
        assert_eq!(counter(&*r.md, "getxattr_misses"), misses, "all hits");
        // Another client changes the label: dropped, asked again, the new value.
        rustix::fs::setxattr(
            r.path("d/labelled"),
            "security.selinux",
            b"other",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        r.md.notify("p", inode_inval(labelled)).await;
        assert_eq!(get(labelled, "security.selinux").await.unwrap(), b"other");
        assert_eq!(counter(&*r.md, "getxattr_misses"), misses + 1);
    }

    /// Writes drop the attributes; the flush that follows (over write-behind, which
    /// acknowledged the writes early) brings back the ones the brick has after them, so
    /// the next stat is a hit with the written size. A write through another fd while the
    /// flush is on its way keeps them out (race rule).
    #[tokio::test]
    async fn a_flush_brings_back_the_attributes_after_this_clients_writes() {
        let dir = tempfile::tempdir().unwrap();
        let vf = Volfile {
            volumes: vec![
                VolumeDecl::new("p", "storage/posix").option("directory", dir.path().display()),
                VolumeDecl::new("wb", "performance/write-behind").subvolumes(&["p"]),
            ],
        };
        let graph = Graph::build(&vf, &crate::registry()).unwrap();
        let md = MdCache::new(
            "md".into(),
            vec![graph.get("wb").unwrap().clone()],
            Config::from_options(&options(&[("md-cache-timeout", "60")])),
        );
        let (ia, fd) = create(&md, Gfid::ROOT, "f").await;
        md.writev(
            &ctx(),
            &fd,
            bytes::Bytes::from(vec![7u8; 4096]),
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
        let misses = counter(&md, "stat_misses");
        md.flush(&ctx(), &fd, Xdata::new()).await.unwrap();
        assert_eq!(stat(&md, ia.gfid).await.size, 4096);
        assert_eq!(counter(&md, "stat_misses"), misses, "a hit");

        // Another fd writes while the flush is between asking and answering: the flush's
        // answer (taken before that write) is not kept.
        let start = md.seq();
        md.writev(
            &ctx(),
            &fd,
            bytes::Bytes::from(vec![1u8; 10]),
            4096,
            Xdata::new(),
        )
        .await
        .unwrap();
        let mut stale = Xdata::new();
        stale.set(POSTSTAT_KEY, Iatt { size: 4096, ..ia }.to_bytes());
        md.poststat_end(start, &fd, &Ok(((), stale)));
        assert_eq!(stat(&md, ia.gfid).await.size, 4106);
        assert_eq!(counter(&md, "stat_misses"), misses + 1);
        drop(graph);
    }

    /// The directory's attributes the brick sends with an entry change are kept: the next
    /// stat of the directory is a hit and shows the change (nlink and mtime of the
    /// directory as the brick has them), until something else changes the directory.
    #[tokio::test]
    async fn entry_changes_keep_the_directory_attributes_the_brick_sent() {
        let r = rig(&[("md-cache-timeout", "60")]);
        let d = mkdir(&*r.md, Gfid::ROOT, "d").await;
        let hits = counter(&*r.md, "stat_hits");
        let misses = counter(&*r.md, "stat_misses");
        let sub = mkdir(&*r.md, d.gfid, "sub").await;
        let after_mkdir = stat(&*r.md, d.gfid).await;
        assert_eq!(after_mkdir.nlink, 3, "the new subdirectory counts");
        assert_eq!(counter(&*r.md, "stat_hits"), hits + 1);
        assert_eq!(counter(&*r.md, "stat_misses"), misses);
        let on_brick = std::fs::metadata(r.path("d")).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_eq!(after_mkdir.mtime.sec, on_brick.mtime());
        r.md.rmdir(
            &ctx(),
            &Loc::entry(d.gfid, "sub").with_gfid(sub.gfid),
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(stat(&*r.md, d.gfid).await.nlink, 2);
        assert_eq!(counter(&*r.md, "stat_misses"), misses, "still hits");
        // A rename keeps both directories' attributes: within one and between two.
        let e = mkdir(&*r.md, Gfid::ROOT, "e").await;
        let misses = counter(&*r.md, "stat_misses");
        let moved = mkdir(&*r.md, d.gfid, "m").await;
        let rename = |from: (Gfid, &'static str), to: (Gfid, &'static str)| {
            let md = r.md.clone();
            let old = Loc::entry(from.0, from.1).with_gfid(moved.gfid);
            let new = Loc::entry(to.0, to.1);
            async move {
                md.rename(&ctx(), &old, &new, 0, Xdata::new())
                    .await
                    .unwrap()
            }
        };
        rename((d.gfid, "m"), (d.gfid, "m2")).await;
        assert_eq!(stat(&*r.md, d.gfid).await.nlink, 3);
        rename((d.gfid, "m2"), (e.gfid, "m")).await;
        assert_eq!(
            stat(&*r.md, d.gfid).await.nlink,
            2,
            "the old directory lost one"
        );
        assert_eq!(
            stat(&*r.md, e.gfid).await.nlink,
            3,
            "the new one gained one"
        );
        assert_eq!(
            stat(&*r.md, e.gfid).await.mtime.sec,
            std::fs::metadata(r.path("e")).unwrap().mtime()
        );
        assert_eq!(counter(&*r.md, "stat_misses"), misses, "all hits");
        // Another client's change of the directory drops them.
        r.md.notify("p", inode_inval(d.gfid)).await;
        stat(&*r.md, d.gfid).await;
        assert_eq!(counter(&*r.md, "stat_misses"), misses + 1);
    }

    fn upcall(invalidations: Vec<Invalidation>) -> Event {
        Event::Upcall(Upcall {
            client: 0,
            invalidations,
            ack: Ack::none(),
        })
    }

    fn inode_inval(gfid: Gfid) -> Event {
        upcall(vec![Invalidation::Inode {
            gfid,
            data: true,
            xattrs: false,
        }])
    }

    fn entry_inval(parent: Gfid, name: &str) -> Event {
        upcall(vec![Invalidation::Entry {
            parent,
            name: name.as_bytes().to_vec(),
        }])
    }

    fn fake_iatt(g: Gfid) -> Iatt {
        Iatt {
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
            atime: Timespec::default(),
            mtime: Timespec::default(),
            ctime: Timespec::default(),
        }
    }

    async fn list_all(x: &dyn Xlator, dir: Gfid, size: u32) -> Vec<Dirent> {
        let fd = Fd::new(dir, libc::O_RDONLY, true);
        x.opendir(&ctx(), &Loc::inode(dir), &fd, Xdata::new())
            .await
            .unwrap();
        let mut all = Vec::new();
        let mut off = 0;
        loop {
            let (batch, _) = x
                .readdirp(&ctx(), &fd, size, off, Xdata::new())
                .await
                .unwrap();
            let Some(last) = batch.last() else { break };
            off = last.offset;
            all.extend(batch);
        }
        x.releasedir(&ctx(), &fd, Xdata::new()).await.unwrap();
        all
    }

    #[tokio::test]
    async fn repeated_lookups_and_stats_are_hits_until_an_inode_invalidation() {
        let r = rig(&[]);
        let md = &*r.md;
        std::fs::write(r.path("f"), b"abc").unwrap();
        let ia = lookup(md, Gfid::ROOT, "f").await.unwrap();
        assert_eq!(ia.size, 3);
        assert_eq!(counter(md, "lookup_misses"), 1);
        assert_eq!(lookup(md, Gfid::ROOT, "f").await.unwrap(), ia);
        assert_eq!(counter(md, "lookup_hits"), 1);
        // By gfid, stat and fstat: the same cached iatt.
        assert_eq!(stat(md, ia.gfid).await, ia);
        let (by_gfid, _) = md
            .lookup(&ctx(), &Loc::inode(ia.gfid), Xdata::new())
            .await
            .unwrap();
        assert_eq!(by_gfid, ia);
        let fd = Fd::new(ia.gfid, libc::O_RDONLY, false);
        md.open(&ctx(), &Loc::inode(ia.gfid), &fd, Xdata::new())
            .await
            .unwrap();
        assert_eq!(md.fstat(&ctx(), &fd, Xdata::new()).await.unwrap().0, ia);
        assert_eq!(counter(md, "stat_hits"), 2);
        assert_eq!(counter(md, "stat_misses"), 0);
        assert_eq!(counter(md, "lookup_hits"), 2);

        // Changed behind md-cache's back: not seen before an invalidation...
        std::fs::write(r.path("f"), b"abcdefgh").unwrap();
        assert_eq!(stat(md, ia.gfid).await.size, 3);
        assert_eq!(lookup(md, Gfid::ROOT, "f").await.unwrap().size, 3);
        // ...and seen right after one, which is passed on unchanged.
        let ev = inode_inval(ia.gfid);
        assert_eq!(md.notify("p", ev.clone()).await, Some(ev));
        assert_eq!(counter(md, "invalidations"), 1);
        assert_eq!(stat(md, ia.gfid).await.size, 8);
        assert_eq!(counter(md, "stat_misses"), 1);
        assert_eq!(lookup(md, Gfid::ROOT, "f").await.unwrap().size, 8);
        md.release(&ctx(), &fd, Xdata::new()).await.unwrap();
    }

    #[tokio::test]
    async fn negative_entries_and_entry_invalidations() {
        let r = rig(&[]);
        let md = &*r.md;
        for _ in 0..2 {
            assert_eq!(lookup(md, Gfid::ROOT, "nope").await, Err(Errno::ENOENT));
        }
        assert_eq!(counter(md, "lookup_misses"), 1);
        assert_eq!(counter(md, "negative_hits"), 1);
        // Made through md-cache: found, without asking the brick.
        let (ia, fd) = create(md, Gfid::ROOT, "nope").await;
        md.release(&ctx(), &fd, Xdata::new()).await.unwrap();
        assert_eq!(lookup(md, Gfid::ROOT, "nope").await.unwrap().gfid, ia.gfid);
        assert_eq!(counter(md, "lookup_misses"), 1);
        assert_eq!(counter(md, "lookup_hits"), 1);

        // Made behind its back: still ENOENT until an entry invalidation.
        assert_eq!(lookup(md, Gfid::ROOT, "ghost").await, Err(Errno::ENOENT));
        std::fs::write(r.path("ghost"), b"boo").unwrap();
        assert_eq!(lookup(md, Gfid::ROOT, "ghost").await, Err(Errno::ENOENT));
        md.notify("p", entry_inval(Gfid::ROOT, "ghost")).await;
        let misses = counter(md, "lookup_misses");
        assert_eq!(lookup(md, Gfid::ROOT, "ghost").await.unwrap().size, 3);
        assert_eq!(counter(md, "lookup_misses"), misses + 1, "went down");
    }

    #[tokio::test]
    async fn a_directory_made_here_answers_enoent_without_asking() {
        let r = rig(&[]);
        let md = &*r.md;
        let d = mkdir(md, Gfid::ROOT, "d").await;
        assert!(md.dump().contains("(complete = 1)"), "{}", md.dump());
        // A file made on the brick directly is not seen: nobody was asked.
        std::fs::write(r.path("d/x"), b"x").unwrap();
        for name in ["x", "y", "anything"] {
            assert_eq!(lookup(md, d.gfid, name).await, Err(Errno::ENOENT));
        }
        assert_eq!(counter(md, "negative_hits"), 3);
        assert_eq!(counter(md, "lookup_misses"), 0);
        // The new directory itself is known by name.
        assert_eq!(lookup(md, Gfid::ROOT, "d").await.unwrap().gfid, d.gfid);
        assert_eq!(counter(md, "lookup_misses"), 0);
        // An entry invalidation sends that one name down; the rest stay answered.
        md.notify("p", entry_inval(d.gfid, "x")).await;
        assert!(lookup(md, d.gfid, "x").await.is_ok());
        assert_eq!(counter(md, "lookup_misses"), 1);
        assert_eq!(lookup(md, d.gfid, "y").await, Err(Errno::ENOENT));
        assert_eq!(counter(md, "lookup_misses"), 1);
    }

    #[tokio::test]
    async fn a_whole_listing_makes_a_directory_complete() {
        let r = rig(&[]);
        let md = &*r.md;
        std::fs::create_dir(r.path("d")).unwrap();
        for i in 0..50 {
            std::fs::write(r.path(&format!("d/f{i}")), b"").unwrap();
        }
        let d = lookup(md, Gfid::ROOT, "d").await.unwrap();
        // Small batches: many calls, each continuing the last.
        let listed = list_all(md, d.gfid, 256).await;
        assert!(listed.len() >= 50);
        assert!(md.dump().contains("complete = 1"), "{}", md.dump());
        let misses = counter(md, "lookup_misses");
        assert!(lookup(md, d.gfid, "f7").await.is_ok());
        assert_eq!(lookup(md, d.gfid, "zzz").await, Err(Errno::ENOENT));
        assert_eq!(counter(md, "lookup_misses"), misses, "both from the cache");

        // A listing with an invalidation of the directory in the middle is not complete.
        md.notify("p", upcall(vec![Invalidation::All])).await;
        let fd = Fd::new(d.gfid, libc::O_RDONLY, true);
        md.opendir(&ctx(), &Loc::inode(d.gfid), &fd, Xdata::new())
            .await
            .unwrap();
        let (first, _) = md
            .readdirp(&ctx(), &fd, 256, 0, Xdata::new())
            .await
            .unwrap();
        md.notify("p", entry_inval(d.gfid, "f1")).await;
        let mut off = first.last().unwrap().offset;
        loop {
            let (b, _) = md
                .readdirp(&ctx(), &fd, 4096, off, Xdata::new())
                .await
                .unwrap();
            let Some(last) = b.last() else { break };
            off = last.offset;
        }
        assert!(md.dump().contains("complete = 0"), "{}", md.dump());
        let misses = counter(md, "lookup_misses");
        assert_eq!(lookup(md, d.gfid, "zzz").await, Err(Errno::ENOENT));
        assert_eq!(counter(md, "lookup_misses"), misses + 1, "asked the brick");
        // A listing that skips ahead (not from the last offset) is not complete either.
        md.notify("p", upcall(vec![Invalidation::All])).await;
        let (b, _) = md
            .readdirp(&ctx(), &fd, 4096, 0, Xdata::new())
            .await
            .unwrap();
        let skip = b[b.len() / 2].offset;
        md.readdirp(&ctx(), &fd, 1 << 20, skip, Xdata::new())
            .await
            .unwrap();
        md.readdirp(&ctx(), &fd, 1 << 20, u64::MAX, Xdata::new())
            .await
            .ok();
        assert!(md.dump().contains("complete = 0"), "{}", md.dump());
        md.releasedir(&ctx(), &fd, Xdata::new()).await.unwrap();
    }

    #[tokio::test]
    async fn the_race_rule_keeps_raced_answers_out() {
        let r = rig(&[]);
        let md = &*r.md;
        let g = Gfid::random();
        let now = Instant::now();
        // An answer whose call started before an invalidation of its inode is not kept.
        let start = md.seq();
        md.notify("p", inode_inval(g)).await;
        md.state.lock().store_iatt(start, &fake_iatt(g), now);
        assert!(md.state.lock().iatt(&g, now).is_none());
        // One started after it is.
        let start = md.seq();
        md.state.lock().store_iatt(start, &fake_iatt(g), now);
        assert!(md.state.lock().iatt(&g, now).is_some());

        // Names: an entry invalidation keeps that name out, not the others.
        let start = md.seq();
        md.notify("p", entry_inval(Gfid::ROOT, "n")).await;
        {
            let mut st = md.state.lock();
            st.store_name(start, Gfid::ROOT, b"n", NameState::Positive(g), now);
            st.store_name(start, Gfid::ROOT, b"m", NameState::Positive(g), now);
            assert_eq!(st.named(&Gfid::ROOT, b"n"), None);
            assert_eq!(st.named(&Gfid::ROOT, b"m"), Some(g));
        }
        // An inode invalidation of the directory keeps every name in it out.
        let start = md.seq();
        md.notify("p", inode_inval(Gfid::ROOT)).await;
        md.state
            .lock()
            .store_name(start, Gfid::ROOT, b"k", NameState::Negative, now);
        assert!(!md.state.lock().dirs[&Gfid::ROOT]
            .names
            .contains_key(&b"k"[..]));

        // A ring that no longer reaches back to the start counts as raced.
        let start = md.seq();
        {
            let mut st = md.state.lock();
            for _ in 0..RING + 1 {
                st.ring.note(Gfid::random(), None);
            }
            let other = Gfid::random();
            st.store_iatt(start, &fake_iatt(other), now);
            assert!(st.iatt(&other, now).is_none());
        }
        // Everything: `All` and ChildDown.
        let start = md.seq();
        md.notify("p", Event::ChildDown("p".into())).await;
        md.state.lock().store_iatt(start, &fake_iatt(g), now);
        assert!(md.state.lock().iatt(&g, now).is_none());
    }

    /// A child whose lookups take a while, so an invalidation can arrive meanwhile.
    struct SlowLookups {
        children: Vec<XlatorRef>,
    }

    #[async_trait::async_trait]
    impl Xlator for SlowLookups {
        fn name(&self) -> &str {
            "slow"
        }
        fn children(&self) -> &[XlatorRef] {
            &self.children
        }
        async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.child()?.lookup(ctx, loc, xd).await
        }
    }

    #[tokio::test]
    async fn a_lookup_racing_an_invalidation_is_not_cached() {
        let r = rig(&[]);
        std::fs::write(r.path("f"), b"abc").unwrap();
        let slow: XlatorRef = Arc::new(SlowLookups {
            children: r.md.children.clone(),
        });
        let md = MdCache::new("md".into(), vec![slow], Config::from_options(&options(&[])));
        let (found, _) = tokio::join!(lookup(&md, Gfid::ROOT, "f"), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            md.notify("slow", entry_inval(Gfid::ROOT, "f")).await;
        });
        let ia = found.unwrap();
        // The name was not kept (the answer raced the invalidation); the inode, not
        // invalidated, was.
        assert!(md.state.lock().named(&Gfid::ROOT, b"f").is_none());
        assert!(md.state.lock().iatt(&ia.gfid, Instant::now()).is_some());
        let ia = lookup(&md, Gfid::ROOT, "f").await.unwrap();
        assert_eq!(counter(&md, "lookup_misses"), 2);
        assert_eq!(stat(&md, ia.gfid).await, ia);
        assert_eq!(counter(&md, "stat_hits"), 1);
    }

    #[tokio::test]
    async fn max_entries_bounds_inodes_names_and_directories() {
        let r = rig(&[("max-entries", "16")]);
        let md = &*r.md;
        let now = Instant::now();
        let first = Gfid::random();
        {
            let mut st = md.state.lock();
            let start = st.ring.seq;
            st.store_iatt(start, &fake_iatt(first), now);
            for i in 0..1000u32 {
                let g = Gfid::random();
                st.store_iatt(start, &fake_iatt(g), now);
                // Keep the first one in use: least recently used goes, not first in.
                assert!(st.iatt(&first, now).is_some(), "evicted at {i}");
                st.touch_inode(first);
                let dir = Gfid::random();
                st.put_name(dir, format!("n{i}").as_bytes(), NameState::Positive(g), now);
                st.put_name(
                    Gfid::ROOT,
                    format!("r{i}").as_bytes(),
                    NameState::Negative,
                    now,
                );
                assert!(st.inodes.len() <= 16);
                assert!(st.names <= 16);
                assert!(st.dirs.len() <= 16);
            }
            // The recency queues stay short.
            assert!(st.inode_lru.len() <= 2 * 16 + 1024 + 1);
            assert!(st.name_lru.len() <= 2 * 16 + 1024 + 1);
        }
        assert_eq!(counter(md, "inodes"), 16);
        assert!(md.dump().contains("inodes = 16/16"), "{}", md.dump());
        assert!(counter(md, "evictions") >= 2 * 984);

        // Evicting a name of a complete directory drops its completeness.
        let d = mkdir(md, Gfid::ROOT, "d").await;
        assert_eq!(lookup(md, d.gfid, "x").await, Err(Errno::ENOENT));
        {
            let mut st = md.state.lock();
            st.put_name(d.gfid, b"x", NameState::Negative, now);
            for i in 0..32 {
                st.put_name(
                    Gfid::ROOT,
                    format!("s{i}").as_bytes(),
                    NameState::Negative,
                    now,
                );
            }
            assert!(st.dirs.get(&d.gfid).is_none_or(|e| e.complete.is_none()));
        }
        let misses = counter(md, "lookup_misses");
        assert!(lookup(md, d.gfid, "y").await.is_err());
        assert_eq!(counter(md, "lookup_misses"), misses + 1, "asked the brick");

        // Through real FOPs too.
        for i in 0..40 {
            let (_, fd) = create(md, Gfid::ROOT, &format!("c{i}")).await;
            md.release(&ctx(), &fd, Xdata::new()).await.unwrap();
        }
        assert!(counter(md, "inodes") <= 16);
        assert!(counter(md, "names") <= 16);
        assert!(lookup(md, Gfid::ROOT, "c39").await.is_ok());
        assert!(lookup(md, Gfid::ROOT, "c0").await.is_ok());
    }

    #[tokio::test]
    async fn entries_expire_after_md_cache_timeout() {
        let r = rig(&[("md-cache-timeout", "50ms")]);
        let md = &*r.md;
        std::fs::write(r.path("f"), b"abc").unwrap();
        let ia = lookup(md, Gfid::ROOT, "f").await.unwrap();
        lookup(md, Gfid::ROOT, "f").await.unwrap();
        assert_eq!(lookup(md, Gfid::ROOT, "gone").await, Err(Errno::ENOENT));
        assert_eq!(lookup(md, Gfid::ROOT, "gone").await, Err(Errno::ENOENT));
        stat(md, ia.gfid).await;
        assert_eq!(counter(md, "lookup_hits"), 1);
        assert_eq!(counter(md, "negative_hits"), 1);
        assert_eq!(counter(md, "stat_hits"), 1);
        let d = mkdir(md, Gfid::ROOT, "d").await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        std::fs::write(r.path("gone"), b"").unwrap();
        std::fs::write(r.path("d/x"), b"").unwrap();
        std::fs::write(r.path("f"), b"abcdef").unwrap();
        assert!(lookup(md, Gfid::ROOT, "gone").await.is_ok());
        assert!(
            lookup(md, d.gfid, "x").await.is_ok(),
            "completeness expired too"
        );
        assert_eq!(lookup(md, Gfid::ROOT, "f").await.unwrap().size, 6);
        assert_eq!(stat(md, ia.gfid).await.size, 6);
        assert_eq!(counter(md, "lookup_hits"), 1);
        assert_eq!(counter(md, "negative_hits"), 1);
        assert_eq!(counter(md, "stat_hits"), 2, "the lookup just refreshed it");
    }

    #[tokio::test]
    async fn changes_through_md_cache_update_it() {
        let r = rig(&[]);
        let md = &*r.md;
        let (ia, fd) = create(md, Gfid::ROOT, "a").await;
        // A write drops the size: the next stat asks.
        md.writev(
            &ctx(),
            &fd,
            bytes::Bytes::from_static(b"hello"),
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(stat(md, ia.gfid).await.size, 5);
        assert_eq!(md.fstat(&ctx(), &fd, Xdata::new()).await.unwrap().0.size, 5);
        md.ftruncate(&ctx(), &fd, 2, Xdata::new()).await.unwrap();
        assert_eq!(stat(md, ia.gfid).await.size, 2);
        let attr = SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        };
        md.setattr(&ctx(), &Loc::inode(ia.gfid), &attr, Xdata::new())
            .await
            .unwrap();
        assert_eq!(stat(md, ia.gfid).await.mode & 0o777, 0o600);
        md.release(&ctx(), &fd, Xdata::new()).await.unwrap();

        // Rename: the old name is gone (without asking), the new one is the file.
        let negative = counter(md, "negative_hits");
        md.rename(
            &ctx(),
            &Loc::entry(Gfid::ROOT, "a"),
            &Loc::entry(Gfid::ROOT, "b"),
            0,
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(lookup(md, Gfid::ROOT, "a").await, Err(Errno::ENOENT));
        assert_eq!(counter(md, "negative_hits"), negative + 1);
        let misses = counter(md, "lookup_misses");
        assert_eq!(lookup(md, Gfid::ROOT, "b").await.unwrap().gfid, ia.gfid);
        assert_eq!(
            counter(md, "lookup_misses"),
            misses + 1,
            "the moved inode's ctime changed: asked once"
        );
        assert_eq!(lookup(md, Gfid::ROOT, "b").await.unwrap().gfid, ia.gfid);
        assert_eq!(counter(md, "lookup_misses"), misses + 1);
        // Exchange swaps the names.
        let (other, fd) = create(md, Gfid::ROOT, "c").await;
        md.release(&ctx(), &fd, Xdata::new()).await.unwrap();
        md.rename(
            &ctx(),
            &Loc::entry(Gfid::ROOT, "b"),
            &Loc::entry(Gfid::ROOT, "c"),
            libc::RENAME_EXCHANGE,
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(lookup(md, Gfid::ROOT, "b").await.unwrap().gfid, other.gfid);
        assert_eq!(lookup(md, Gfid::ROOT, "c").await.unwrap().gfid, ia.gfid);
        // A link gives the inode a name and a new nlink.
        md.link(
            &ctx(),
            &Loc::inode(ia.gfid),
            &Loc::entry(Gfid::ROOT, "l"),
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(lookup(md, Gfid::ROOT, "l").await.unwrap().nlink, 2);
        // Unlink: the name is ENOENT and the inode's nlink is asked again.
        md.unlink(&ctx(), &Loc::entry(Gfid::ROOT, "l"), Xdata::new())
            .await
            .unwrap();
        assert_eq!(lookup(md, Gfid::ROOT, "l").await, Err(Errno::ENOENT));
        assert_eq!(counter(md, "negative_hits"), negative + 2);
        assert_eq!(stat(md, ia.gfid).await.nlink, 1);
        // Rmdir drops the directory's names.
        let d = mkdir(md, Gfid::ROOT, "d").await;
        md.rmdir(&ctx(), &Loc::entry(Gfid::ROOT, "d"), Xdata::new())
            .await
            .unwrap();
        assert!(!md.state.lock().dirs.contains_key(&d.gfid));
        assert_eq!(lookup(md, Gfid::ROOT, "d").await, Err(Errno::ENOENT));
        // A failed create of an existing name (cached as ENOENT by mistake) is Unknown.
        md.state
            .lock()
            .put_name(Gfid::ROOT, b"c", NameState::Negative, Instant::now());
        let fd = Fd::new(Gfid::random(), libc::O_RDWR | libc::O_EXCL, false);
        let e = md
            .create(
                &ctx(),
                &Loc::entry(Gfid::ROOT, "c"),
                &fd,
                0o644,
                0,
                Xdata::new(),
            )
            .await
            .unwrap_err();
        assert_eq!(e, Errno::EEXIST);
        assert!(lookup(md, Gfid::ROOT, "c").await.is_ok());
    }

    #[tokio::test]
    async fn xattrs_are_cached_by_prefix_and_dropped_by_changes() {
        let r = rig(&[]);
        let md = &*r.md;
        let (ia, fd) = create(md, Gfid::ROOT, "x").await;
        md.release(&ctx(), &fd, Xdata::new()).await.unwrap();
        let loc = Loc::inode(ia.gfid);
        let get = |name: &'static str| {
            let loc = loc.clone();
            async move { md.getxattr(&ctx(), &loc, Some(name), Xdata::new()).await }
        };
        for _ in 0..2 {
            assert_eq!(get("user.a").await.unwrap_err(), Errno::ENODATA);
        }
        assert_eq!(counter(md, "getxattr_hits"), 1);
        let attrs = XattrMap::from([("user.a".to_string(), b"1".to_vec())]);
        md.setxattr(&ctx(), &loc, &attrs, 0, Xdata::new())
            .await
            .unwrap();
        for _ in 0..2 {
            assert_eq!(get("user.a").await.unwrap().0["user.a"], b"1");
        }
        assert_eq!(counter(md, "getxattr_hits"), 2);
        assert_eq!(counter(md, "getxattr_misses"), 2);
        // Changed on the brick: not seen until an invalidation.
        rustix::fs::setxattr(r.path("x"), "user.a", b"2", rustix::fs::XattrFlags::empty()).unwrap();
        assert_eq!(get("user.a").await.unwrap().0["user.a"], b"1");
        md.notify("p", inode_inval(ia.gfid)).await;
        assert_eq!(get("user.a").await.unwrap().0["user.a"], b"2");
        // Other names and listings are not cached.
        md.getxattr(&ctx(), &loc, Some("trusted.x"), Xdata::new())
            .await
            .ok();
        md.getxattr(&ctx(), &loc, None, Xdata::new()).await.unwrap();
        assert!(md.state.lock().inodes[&ia.gfid].xattrs.len() == 1);
        md.removexattr(&ctx(), &loc, "user.a", Xdata::new())
            .await
            .unwrap();
        assert_eq!(get("user.a").await.unwrap_err(), Errno::ENODATA);
    }

    #[tokio::test]
    async fn options_change_live() {
        let r = rig(&[]);
        let md = &*r.md;
        std::fs::write(r.path("f"), b"abc").unwrap();
        let ia = lookup(md, Gfid::ROOT, "f").await.unwrap();
        // Off: everything goes down, nothing is kept.
        md.reconfigure(&options(&[("enable", "off")]))
            .await
            .unwrap();
        assert!(md.dump().contains("enable = off"), "{}", md.dump());
        assert_eq!(counter(md, "inodes"), 0);
        std::fs::write(r.path("f"), b"abcd").unwrap();
        assert_eq!(stat(md, ia.gfid).await.size, 4);
        std::fs::write(r.path("f"), b"abcde").unwrap();
        assert_eq!(stat(md, ia.gfid).await.size, 5);
        assert_eq!(counter(md, "inodes"), 0);
        // Negative entries off: ENOENT is asked every time.
        md.reconfigure(&options(&[("cache-negative-entries", "off")]))
            .await
            .unwrap();
        for _ in 0..2 {
            assert_eq!(lookup(md, Gfid::ROOT, "no").await, Err(Errno::ENOENT));
        }
        assert_eq!(counter(md, "negative_hits"), 0);
        assert_eq!(counter(md, "lookup_misses"), 3);
        let d = mkdir(md, Gfid::ROOT, "d").await;
        assert!(lookup(md, d.gfid, "x").await.is_err());
        assert_eq!(counter(md, "negative_hits"), 0);
        // A smaller max-entries evicts at once; a longer timeout is shown.
        for i in 0..40 {
            std::fs::write(r.path(&format!("g{i}")), b"").unwrap();
            lookup(md, Gfid::ROOT, &format!("g{i}")).await.unwrap();
        }
        md.reconfigure(&options(&[
            ("cache-negative-entries", "off"),
            ("max-entries", "16"),
            ("md-cache-timeout", "10s"),
        ]))
        .await
        .unwrap();
        assert!(counter(md, "inodes") <= 16);
        assert!(counter(md, "names") <= 16);
        assert!(
            md.dump().contains("md-cache-timeout = 10s"),
            "{}",
            md.dump()
        );
    }

    #[tokio::test]
    async fn built_from_a_volfile_and_upcalls_come_out_of_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "volume p\n    type storage/posix\n    option directory {}\nend-volume\n\
             volume md\n    type performance/md-cache\n    option md-cache-timeout 5s\n    \
             option cache-invalidation on\n    subvolumes p\nend-volume\n",
            dir.path().display()
        );
        let vf = Volfile::parse(&text).unwrap();
        let g = Graph::build(&vf, &crate::registry()).unwrap();
        let top = g.top().clone();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        let ia = lookup(&*top, Gfid::ROOT, "f").await.unwrap();
        std::fs::write(dir.path().join("f"), b"abcdef").unwrap();
        assert_eq!(stat(&*top, ia.gfid).await.size, 3);
        let ev = inode_inval(ia.gfid);
        assert_eq!(g.notify("p", ev.clone()).await, vec![ev]);
        assert_eq!(stat(&*top, ia.gfid).await.size, 6);
        let dump = g.statedump();
        assert!(dump.contains("cache-invalidation = on"), "{dump}");
        assert!(dump.contains("stat_hits = 1"), "{dump}");
        assert!(
            Volfile::parse(&text.replace("5s", "5s\n    option max-entries 8"))
                .map(|vf| Graph::build(&vf, &crate::registry()).is_err())
                .unwrap()
        );
    }
}
