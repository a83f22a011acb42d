//! `performance/read-ahead`: reads a sequential stream's next pages before they are asked
//! for, as GlusterFS's read-ahead does, so a file read from start to end keeps several
//! reads in flight to the bricks instead of one or two at a time.
//!
//! What it promises:
//! - **Streams.** Each fd is followed on its own. A read that starts where the fd's last
//!   read ended (or at 0, the first) is sequential; the file is then read in pages of
//!   `page-size` bytes (aligned to it), the pages the read covers and, ahead of them,
//!   1, 2, 4, ... pages (doubling with each sequential read) up to `page-count`. Reads the
//!   pages cover are answered from them (waiting for those in flight). The kernel sends a
//!   stream's reads several at a time and they may arrive out of order, so once a stream
//!   runs, a read within `page-count` pages of where it got to (or of a page held) stays
//!   in it. A read outside drops the fd's pages it does not cover, restarts the stream and
//!   goes down unless its pages are all there. A page that comes back short marks the end
//!   of the file: nothing is read ahead past it until the stream restarts, and it is
//!   dropped once a read asks past its end (a read there asks again: the file may have
//!   grown).
//! - **Bounded memory.** At most `cache-size` bytes of pages (in flight or kept) over all
//!   fds; a stream that needs room takes it from the least recently read other streams
//!   first, and reads ahead less when there is none. Pages before a sequential read's
//!   first page are dropped as the stream moves on, and all of an fd's go at `release`
//!   (which first waits for its reads in flight, so none reaches the bricks after it).
//! - **Coherence.** Every change of a file's content made through this client (write,
//!   truncate, setattr with a size, fallocate, discard, zerofill, open with `O_TRUNC`)
//!   drops the pages of every fd of that file before it passes down and again when it is
//!   answered (a page read while it ran may hold the content before it). Invalidations from
//!   the bricks ([`Event::Upcall`]) of an inode drop its pages; `All`, `ChildUp` and
//!   `ChildDown` drop every page; the event is always passed on. A read that waited for a
//!   page that was dropped meanwhile answers what that page read (it ran concurrently with
//!   the change); later reads never see it. Above write-behind, whose reads wait for the
//!   file's pending writes, pages never miss this client's acknowledged writes.
//! - Reads with xdata, of directories, of write-only or `O_DIRECT` fds, and all reads while
//!   `enable` is off go down unchanged; so does every read when no tokio runtime runs.
//!   A page read that fails is dropped and the read that needed it goes down itself, so an
//!   error is the child's answer to that read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::watch;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::*;

/// A page's read: `None` while in flight.
type PageRead = watch::Receiver<Option<Result<Bytes, Errno>>>;

/// Pages kept behind a stream's latest read, for its reads that arrive late.
const BEHIND: u64 = 2;
/// The smallest and largest `page-size` honoured.
const PAGE_SIZE_RANGE: (u64, u64) = (4096, 4 << 20);

/// The options in effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Config {
    enable: bool,
    page_count: u64,
    page_size: u64,
    cache_size: u64,
}

impl Config {
    fn from_options(o: &Options) -> Config {
        Config {
            enable: o.bool("enable"),
            page_count: o.int("page-count").clamp(1, 64) as u64,
            page_size: o
                .size("page-size")
                .clamp(PAGE_SIZE_RANGE.0, PAGE_SIZE_RANGE.1),
            cache_size: o.size("cache-size"),
        }
    }
}

/// One fd's sequential stream.
struct Stream {
    gfid: Gfid,
    /// Where the fd's last read ended.
    next: u64,
    /// Sequential reads in a row (the read-ahead doubles with each, up to `page-count`).
    run: u32,
    /// Pages by index (offset / page size), read or in flight.
    pages: BTreeMap<u64, PageRead>,
    /// The page size the pages were read with (pages go when it changes).
    page_size: u64,
    /// The index of a page that came back short: the file ends in it.
    eof: Option<u64>,
    /// When it was last read (the state's clock), for least-recently-used eviction.
    used: u64,
    /// Held (shared) by each of its page reads in flight; `release` takes it exclusively.
    flying: Arc<tokio::sync::RwLock<()>>,
}

impl Stream {
    fn new(gfid: Gfid, page_size: u64) -> Stream {
        Stream {
            gfid,
            next: 0,
            run: 0,
            pages: BTreeMap::new(),
            page_size,
            eof: None,
            used: 0,
            flying: Arc::new(tokio::sync::RwLock::new(())),
        }
    }
}

/// What the statedump counts.
#[derive(Default)]
struct Counters {
    /// Reads answered from pages.
    hits: u64,
    /// Eligible reads that went down.
    misses: u64,
    /// Pages read.
    pages_read: u64,
    /// Pages dropped before any read used them.
    pages_wasted: u64,
    /// Pages dropped to make room for another stream.
    evictions: u64,
    /// Invalidations that dropped pages.
    invalidations: u64,
}

struct State {
    cfg: Config,
    streams: HashMap<u64, Stream>,
    /// Bytes of pages held (a page in flight counts as a full page).
    bytes: u64,
    clock: u64,
    n: Counters,
}

impl State {
    /// Drops pages of stream `id` matching `which`; their bytes go back.
    fn drop_pages(&mut self, id: u64, which: impl Fn(u64) -> bool) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let gone: Vec<u64> = s.pages.keys().copied().filter(|i| which(*i)).collect();
        for i in gone {
            if let Some(p) = s.pages.remove(&i) {
                self.bytes = self.bytes.saturating_sub(s.page_size);
                if p.borrow().is_none() || s.next <= i * s.page_size {
                    self.n.pages_wasted += 1;
                }
            }
        }
    }

    /// Drops every page of the fds of `g` (or of every fd) and restarts their streams.
    fn reset(&mut self, g: Option<Gfid>) {
        let ids: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| g.is_none_or(|g| s.gfid == g))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.drop_pages(id, |_| true);
            if let Some(s) = self.streams.get_mut(&id) {
                s.eof = None;
                s.run = 0;
            }
        }
    }

    /// Makes room for `need` more bytes by dropping the pages of the least recently read
    /// streams other than `keep`; whether there is room now.
    fn room(&mut self, need: u64, keep: u64) -> bool {
        while self.bytes + need > self.cfg.cache_size {
            let victim = self
                .streams
                .iter()
                .filter(|(id, s)| **id != keep && !s.pages.is_empty())
                .min_by_key(|(_, s)| s.used)
                .map(|(id, _)| *id);
            let Some(id) = victim else {
                return false;
            };
            let before = self.n.pages_wasted;
            self.drop_pages(id, |_| true);
            self.n.evictions += 1;
            self.n.pages_wasted = before;
        }
        true
    }
}

/// What a read does.
enum Plan {
    /// Answer from these pages (first page index, page size, the reads).
    Pages(u64, u64, Vec<PageRead>),
    /// Go down.
    Down,
}

/// The read-ahead translator (`performance/read-ahead`). See the module docs.
pub struct ReadAhead {
    name: String,
    children: Vec<XlatorRef>,
    state: Mutex<State>,
}

impl ReadAhead {
    fn new(name: String, children: Vec<XlatorRef>, cfg: Config) -> ReadAhead {
        ReadAhead {
            name,
            children,
            state: Mutex::new(State {
                cfg,
                streams: HashMap::new(),
                bytes: 0,
                clock: 0,
                n: Counters::default(),
            }),
        }
    }

    /// Whether a read of `fd` with `xd` may be read ahead.
    fn eligible(fd: &FdRef, xd: &Xdata) -> bool {
        xd.is_empty()
            && !fd.is_dir
            && fd.flags & libc::O_ACCMODE != libc::O_WRONLY
            && fd.flags & libc::O_DIRECT == 0
    }

    /// Decides how a read of `size` bytes at `offset` through `fd` is answered, starting
    /// the page reads it needs (and those ahead) on `rt`.
    fn plan(
        &self,
        rt: &tokio::runtime::Handle,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
    ) -> Result<Plan, Errno> {
        let child = self.child()?.clone();
        let mut st = self.state.lock();
        if !st.cfg.enable || size == 0 {
            return Ok(Plan::Down);
        }
        let cfg = st.cfg;
        st.clock += 1;
        let clock = st.clock;
        let psz = cfg.page_size;
        let stream = st
            .streams
            .entry(fd.id)
            .or_insert_with(|| Stream::new(fd.gfid, psz));
        if stream.page_size != psz {
            // `page-size` changed: the pages held are of the old size.
            let mut fresh = Stream::new(fd.gfid, psz);
            // Its reads in flight still count for `release`.
            fresh.flying = stream.flying.clone();
            let old = std::mem::replace(stream, fresh);
            let held = old.pages.len() as u64 * old.page_size;
            st.bytes = st.bytes.saturating_sub(held);
        }
        let stream = st.streams.get_mut(&fd.id).expect("just made");
        stream.used = clock;
        let end = offset.saturating_add(u64::from(size));
        let (first, last) = (offset / psz, (end - 1) / psz);
        // The kernel sends a stream's reads several at a time, and they may arrive out of
        // order: a read within the window around where the last one ended, or of a page
        // held, is still the stream's.
        let window = cfg.page_count * psz;
        let exact = offset == stream.next;
        let sequential = exact
            || (stream.run > 0
                && (offset.abs_diff(stream.next) <= window || stream.pages.contains_key(&first)));
        if exact {
            stream.run = stream.run.saturating_add(1);
        } else if !sequential {
            stream.run = 0;
        }
        stream.next = if sequential {
            stream.next.max(end)
        } else {
            end
        };
        let top = (stream.next - 1) / psz;
        let run = stream.run;
        let eof = stream.eof;
        if sequential {
            // Pages well behind go (a read sent earlier may still want the last ones).
            st.drop_pages(fd.id, |i| i.saturating_add(BEHIND) < first);
        } else {
            st.drop_pages(fd.id, |i| i < first || i > last);
        }
        let mut start = Vec::new();
        if sequential {
            let ahead = (1u64 << run.saturating_sub(1).min(16)).min(cfg.page_count);
            let mut want = top.saturating_add(ahead);
            if let Some(e) = eof {
                want = want.min(e);
            }
            let flying = st.streams[&fd.id].flying.clone();
            for i in first..=want {
                if st.streams[&fd.id].pages.contains_key(&i) {
                    continue;
                }
                if !st.room(psz, fd.id) {
                    break;
                }
                let Ok(guard) = flying.clone().try_read_owned() else {
                    break;
                };
                let (tx, rx) = watch::channel(None);
                st.streams
                    .get_mut(&fd.id)
                    .expect("kept")
                    .pages
                    .insert(i, rx);
                st.bytes += psz;
                st.n.pages_read += 1;
                start.push((i, tx, guard));
            }
        }
        let pages = &st.streams[&fd.id].pages;
        let covered: Option<Vec<PageRead>> =
            (first..=last).map(|i| pages.get(&i).cloned()).collect();
        if covered.is_some() {
            st.n.hits += 1;
        } else {
            st.n.misses += 1;
        }
        drop(st);
        for (i, tx, guard) in start {
            let (child, ctx, fd) = (child.clone(), ctx.clone(), fd.clone());
            rt.spawn(async move {
                let _flying = guard;
                let r = child
                    .readv(&ctx, &fd, psz as u32, i * psz, Xdata::new())
                    .await
                    .map(|(data, _)| data);
                let _ = tx.send(Some(r));
            });
        }
        Ok(match covered {
            Some(reads) => Plan::Pages(first, psz, reads),
            None => Plan::Down,
        })
    }

    /// Notes that page `i` of `fd`'s stream came back short: the file ends in it, and the
    /// pages after it go; so does the page itself once a read asked past its end (a read
    /// there asks again: the file may have grown).
    fn short_page(&self, fd: &FdRef, i: u64, read_past: bool) {
        let mut st = self.state.lock();
        let Some(s) = st.streams.get_mut(&fd.id) else {
            return;
        };
        s.eof = Some(s.eof.map_or(i, |e| e.min(i)));
        st.drop_pages(fd.id, |j| j > i || (read_past && j == i));
    }

    /// Drops page `i` of `fd`'s stream (its read failed).
    fn failed_page(&self, fd: &FdRef, i: u64) {
        self.state.lock().drop_pages(fd.id, |j| j == i);
    }

    /// Answers a read of `size` bytes at `offset` from pages starting at page `first`;
    /// `None` when one of them failed.
    async fn serve(
        &self,
        fd: &FdRef,
        (first, psz, reads): (u64, u64, Vec<PageRead>),
        size: u32,
        offset: u64,
    ) -> Option<Bytes> {
        let end = offset + u64::from(size);
        let mut parts = Vec::with_capacity(reads.len());
        for (k, mut rx) in reads.into_iter().enumerate() {
            let i = first + k as u64;
            let got = match rx.wait_for(Option::is_some).await {
                Ok(v) => v.clone().expect("waited for some"),
                Err(_) => Err(Errno::EIO),
            };
            let data = match got {
                Ok(d) => d,
                Err(_) => {
                    self.failed_page(fd, i);
                    return None;
                }
            };
            let start = i * psz;
            let from = offset.max(start) - start;
            let to = (end.min(start + psz) - start).min(data.len() as u64);
            if from < to {
                parts.push(data.slice(from as usize..to as usize));
            }
            if (data.len() as u64) < psz {
                self.short_page(fd, i, end > start + data.len() as u64);
                break;
            }
        }
        Some(match parts.len() {
            0 => Bytes::new(),
            1 => parts.pop().expect("one"),
            _ => {
                let mut all = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for p in parts {
                    all.extend_from_slice(&p);
                }
                all.freeze()
            }
        })
    }

    /// Drops every fd's pages of `g` (or all) because its content changes.
    fn changed(&self, g: Option<Gfid>) {
        self.state.lock().reset(g);
    }

    /// Runs change `fop` of `g`'s content (of an unknown file's: `None`) with its pages
    /// (every page) dropped before and after.
    async fn modify<T>(
        &self,
        g: Option<Gfid>,
        fop: impl std::future::Future<Output = Fop<T>>,
    ) -> Fop<T> {
        self.changed(g);
        let r = fop.await;
        self.changed(g);
        r
    }
}

#[async_trait::async_trait]
impl Xlator for ReadAhead {
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
                        // Attributes only may still mean a new size: drop them too.
                        Invalidation::Inode { gfid, .. } => {
                            st.n.invalidations += 1;
                            st.reset(Some(*gfid));
                        }
                        Invalidation::Entry { .. } | Invalidation::Recall { .. } => {}
                        Invalidation::All => {
                            st.n.invalidations += 1;
                            st.reset(None);
                        }
                    }
                }
            }
            Event::ChildUp(_) | Event::ChildDown(_) => self.state.lock().reset(None),
            _ => {}
        }
        Some(event)
    }

    fn dump(&self) -> String {
        let st = self.state.lock();
        let c = &st.cfg;
        let n = &st.n;
        format!(
            "enable = {}\npage-count = {}\npage-size = {}\nstreams = {}\nbytes = {}/{}\n\
             hits = {}\nmisses = {}\npages_read = {}\npages_wasted = {}\nevictions = {}\n\
             invalidations = {}\n",
            if c.enable { "on" } else { "off" },
            c.page_count,
            c.page_size,
            st.streams.len(),
            st.bytes,
            c.cache_size,
            n.hits,
            n.misses,
            n.pages_read,
            n.pages_wasted,
            n.evictions,
            n.invalidations,
        )
    }

    async fn fini(&self) {
        self.state.lock().reset(None);
    }

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let cfg = Config::from_options(options);
        let mut st = self.state.lock();
        st.cfg = cfg;
        // Pages of another size go at their stream's next read; a smaller budget or
        // `enable off` drops what is held now.
        st.reset(None);
        Ok(())
    }

    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        let child = self.child()?;
        if !Self::eligible(fd, &xd) {
            return child.readv(ctx, fd, size, offset, xd).await;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return child.readv(ctx, fd, size, offset, xd).await;
        };
        if let Plan::Pages(first, psz, reads) = self.plan(&rt, ctx, fd, size, offset)? {
            if let Some(data) = self.serve(fd, (first, psz, reads), size, offset).await {
                return Ok((data, Xdata::new()));
            }
        }
        child.readv(ctx, fd, size, offset, xd).await
    }

    async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        let flying = {
            let mut st = self.state.lock();
            st.drop_pages(fd.id, |_| true);
            st.streams.remove(&fd.id).map(|s| s.flying)
        };
        // Wait for this fd's page reads in flight: none may reach the bricks after its
        // release.
        if let Some(flying) = flying {
            drop(flying.write().await);
        }
        child.release(ctx, fd, xd).await
    }

    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        if fd.flags & libc::O_TRUNC != 0 {
            let g = loc.gfid.or(Some(fd.gfid));
            return self.modify(g, child.open(ctx, loc, fd, xd)).await;
        }
        child.open(ctx, loc, fd, xd).await
    }

    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let child = self.child()?;
        self.modify(Some(fd.gfid), child.writev(ctx, fd, data, offset, xd))
            .await
    }

    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        self.modify(loc.gfid, child.truncate(ctx, loc, size, xd))
            .await
    }

    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        self.modify(Some(fd.gfid), child.ftruncate(ctx, fd, size, xd))
            .await
    }

    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        if attr.size.is_some() {
            return self
                .modify(loc.gfid, child.setattr(ctx, loc, attr, xd))
                .await;
        }
        child.setattr(ctx, loc, attr, xd).await
    }

    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let child = self.child()?;
        if attr.size.is_some() {
            return self
                .modify(Some(fd.gfid), child.fsetattr(ctx, fd, attr, xd))
                .await;
        }
        child.fsetattr(ctx, fd, attr, xd).await
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
        self.modify(
            Some(fd.gfid),
            child.fallocate(ctx, fd, mode, offset, len, xd),
        )
        .await
    }

    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.modify(Some(fd.gfid), child.discard(ctx, fd, offset, len, xd))
            .await
    }

    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let child = self.child()?;
        self.modify(Some(fd.gfid), child.zerofill(ctx, fd, offset, len, xd))
            .await
    }
}

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "enable",
        kind: OptionKind::Bool,
        default: Some("on"),
        description: "off: every read goes down as asked and no page is read ahead. Changes live.",
    },
    OptionSpec {
        key: "page-count",
        kind: OptionKind::Int { min: 1, max: 64 },
        default: Some("8"),
        description: "The most pages read ahead of a sequential stream's read (the window starts at one page and doubles with each sequential read). Changes live.",
    },
    OptionSpec {
        key: "page-size",
        kind: OptionKind::Size,
        default: Some("1MiB"),
        description: "The size of each page read ahead (one read to the bricks); 4KiB to 4MiB. Changes live.",
    },
    OptionSpec {
        key: "cache-size",
        kind: OptionKind::Size,
        default: Some("64MiB"),
        description: "The most bytes of pages held over all fds, in flight or read; the least recently read streams give theirs up first. Changes live.",
    },
];

/// The `performance/read-ahead` type.
pub struct ReadAheadType;

impl XlatorType for ReadAheadType {
    fn type_name(&self) -> &'static str {
        "performance/read-ahead"
    }
    fn description(&self) -> &'static str {
        "Reads sequential streams ahead in pages, several reads in flight, kept coherent by this client's changes and brick invalidations."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(ReadAhead::new(
            init.name,
            init.children,
            Config::from_options(&init.options),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::super::test_brick::{self, TestBrick};

    /// Passes everything down, counting reads (and bytes asked), optionally slowing them.
    struct Probe {
        children: Vec<XlatorRef>,
        read_delay: Duration,
        reads: AtomicU64,
        released: AtomicU64,
        reads_after_release: AtomicU64,
    }

    #[async_trait::async_trait]
    impl Xlator for Probe {
        fn name(&self) -> &str {
            "probe"
        }
        fn children(&self) -> &[XlatorRef] {
            &self.children
        }
        async fn readv(
            &self,
            ctx: &Ctx,
            fd: &FdRef,
            size: u32,
            offset: u64,
            xd: Xdata,
        ) -> Fop<Bytes> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.read_delay).await;
            if self.released.load(Ordering::SeqCst) > 0 {
                self.reads_after_release.fetch_add(1, Ordering::SeqCst);
            }
            self.child()?.readv(ctx, fd, size, offset, xd).await
        }
        async fn release(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
            self.released.fetch_add(1, Ordering::SeqCst);
            self.child()?.release(ctx, fd, xd).await
        }
    }

    /// A brick in a tempdir, a probe over it, read-ahead (4 KiB pages, options `pairs`) on
    /// top.
    struct Rig {
        brick: TestBrick,
        probe: Arc<Probe>,
        ra: ReadAhead,
    }

    fn rig_with(pairs: &[(&str, &str)], read_delay_ms: u64) -> Rig {
        let brick = TestBrick::new();
        let probe = Arc::new(Probe {
            children: vec![brick.posix()],
            read_delay: Duration::from_millis(read_delay_ms),
            reads: AtomicU64::new(0),
            released: AtomicU64::new(0),
            reads_after_release: AtomicU64::new(0),
        });
        let mut given: Vec<(String, String)> = vec![("page-size".into(), "4KiB".into())];
        given.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let cfg = Config::from_options(&Options::validate(OPTIONS, &given).unwrap());
        let ra = ReadAhead::new("ra".into(), vec![probe.clone()], cfg);
        Rig { brick, probe, ra }
    }

    fn rig() -> Rig {
        rig_with(&[], 0)
    }

    fn ctx() -> Ctx {
        Ctx::internal()
    }

    /// Asserts `got == want` without printing megabytes when they differ.
    #[track_caller]
    fn same(got: &[u8], want: &[u8]) {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        assert!(
            got.len() == want.len() && at.is_none(),
            "got {} bytes, want {}; first difference at {at:?}",
            got.len(),
            want.len()
        );
    }

    /// Lets the page reads started run.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    /// `len` bytes that differ at every offset (mod 251) and from `tag` to tag.
    fn pattern(len: usize, tag: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ tag).collect()
    }

    impl Rig {
        fn path(&self, name: &str) -> std::path::PathBuf {
            self.brick.path(name)
        }

        async fn file(&self, name: &str, data: &[u8]) -> Gfid {
            test_brick::file(&self.ra, &self.brick, name, data).await
        }

        async fn open(&self, g: Gfid, flags: i32) -> FdRef {
            test_brick::open(&self.ra, g, flags).await
        }

        async fn read(&self, fd: &FdRef, size: u32, offset: u64) -> Vec<u8> {
            test_brick::read(&self.ra, fd, size, offset).await
        }

        fn stat(&self, key: &str) -> u64 {
            let dump = self.ra.dump();
            let line = dump
                .lines()
                .find(|l| l.starts_with(&format!("{key} = ")))
                .unwrap_or_else(|| panic!("{key} not in {dump}"));
            line.split(" = ")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        }
    }

    #[tokio::test]
    async fn a_sequential_reader_gets_every_byte_from_pages_read_ahead() {
        let r = rig();
        let data = pattern(100_000, 7);
        let g = r.file("f", &data).await;
        let fd = r.open(g, libc::O_RDONLY).await;
        // Reads that straddle pages, of odd sizes.
        let mut got = Vec::new();
        loop {
            let chunk = r.read(&fd, 3000, got.len() as u64).await;
            if chunk.is_empty() {
                break;
            }
            got.extend(chunk);
        }
        same(&got, &data);
        // 34 reads of 3,000 bytes: all but the first answered from pages.
        assert!(r.stat("hits") >= 33, "{}", r.ra.dump());
        // Each of the 25 pages read once, plus at most a window (8) read past the end
        // before the end was known; the last page once more and the read past the end
        // itself (the empty read: both ask the brick again, the file may have grown).
        let reads = r.probe.reads.load(Ordering::SeqCst);
        assert!(reads <= 25 + 8 + 2, "{reads} reads: {}", r.ra.dump());
    }

    #[tokio::test]
    async fn random_reads_read_nothing_ahead() {
        let r = rig();
        let data = pattern(1 << 20, 3);
        let g = r.file("f", &data).await;
        let fd = r.open(g, libc::O_RDONLY).await;
        for k in [77u64, 3, 200, 41, 150, 9, 240, 120] {
            let off = k * 4096 + 100;
            same(
                &r.read(&fd, 512, off).await,
                &data[off as usize..off as usize + 512],
            );
        }
        assert_eq!(r.stat("pages_read"), 0, "{}", r.ra.dump());
        assert_eq!(r.probe.reads.load(Ordering::SeqCst), 8);
    }

    #[tokio::test]
    async fn a_write_through_this_client_is_read_back_not_the_pages_before_it() {
        let r = rig();
        let data = pattern(64 * 1024, 1);
        let g = r.file("f", &data).await;
        let reader = r.open(g, libc::O_RDONLY).await;
        let writer = r.open(g, libc::O_WRONLY).await;
        r.read(&reader, 4096, 0).await;
        r.read(&reader, 4096, 4096).await;
        settle().await;
        assert!(
            r.stat("bytes") >= 3 * 4096,
            "pages ahead held: {}",
            r.ra.dump()
        );
        r.ra.writev(
            &ctx(),
            &writer,
            Bytes::from_static(b"NEW!"),
            9000,
            Xdata::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.stat("bytes"), 0, "the write dropped the pages");
        let got = r.read(&reader, 4096, 8192).await;
        assert_eq!(&got[808..812], b"NEW!");
        for (k, what) in [(0usize, "truncate"), (1, "zerofill")] {
            r.read(&reader, 4096, 12288).await;
            r.read(&reader, 4096, 16384).await;
            if k == 0 {
                r.ra.ftruncate(&ctx(), &writer, 20_000, Xdata::new())
                    .await
                    .unwrap();
                assert_eq!(
                    r.read(&reader, 4096, 16384).await.len(),
                    20_000 - 16384,
                    "{what}"
                );
            } else {
                r.ra.zerofill(&ctx(), &writer, 16384, 100, Xdata::new())
                    .await
                    .unwrap();
                assert_eq!(r.read(&reader, 100, 16384).await, vec![0u8; 100], "{what}");
            }
        }
    }

    #[tokio::test]
    async fn an_invalidation_drops_the_pages_of_a_file_changed_elsewhere() {
        let r = rig();
        let data = pattern(64 * 1024, 2);
        let g = r.file("f", &data).await;
        let other = r.file("g", &data).await;
        let fd = r.open(g, libc::O_RDONLY).await;
        let fd_other = r.open(other, libc::O_RDONLY).await;
        r.read(&fd, 4096, 0).await;
        r.read(&fd, 4096, 4096).await;
        r.read(&fd_other, 4096, 0).await;
        r.read(&fd_other, 4096, 4096).await;
        settle().await;
        // Another client changes both files on the brick; before any invalidation, the
        // pages read ahead still answer (what the invalidation is for).
        let changed = pattern(64 * 1024, 9);
        std::fs::write(r.path("f"), &changed).unwrap();
        std::fs::write(r.path("g"), &changed).unwrap();
        same(&r.read(&fd_other, 4096, 8192).await, &data[8192..12288]);
        let upcall = |inv| {
            Event::Upcall(Upcall {
                client: 0,
                invalidations: vec![inv],
                ack: Ack::none(),
            })
        };
        let ev =
            r.ra.notify(
                "probe",
                upcall(Invalidation::Inode {
                    gfid: g,
                    data: true,
                    xattrs: false,
                }),
            )
            .await;
        assert!(ev.is_some(), "passed on");
        same(&r.read(&fd, 4096, 8192).await, &changed[8192..12288]);
        r.ra.notify("probe", upcall(Invalidation::All)).await;
        same(
            &r.read(&fd_other, 4096, 12288).await,
            &changed[12288..16384],
        );
    }

    #[tokio::test]
    async fn a_file_that_grows_is_read_past_its_old_end() {
        let r = rig();
        let data = pattern(10_000, 4);
        let g = r.file("f", &data).await;
        let fd = r.open(g, libc::O_RDONLY).await;
        same(&r.read(&fd, 4096, 0).await, &data[..4096]);
        same(&r.read(&fd, 4096, 4096).await, &data[4096..8192]);
        same(&r.read(&fd, 4096, 8192).await, &data[8192..]);
        assert!(r.read(&fd, 4096, 10_000).await.is_empty());
        // Appended elsewhere, nothing told: the end page was not kept.
        let more = pattern(30_000, 5);
        std::fs::write(r.path("f"), &more).unwrap();
        same(&r.read(&fd, 4096, 10_000).await, &more[10_000..14_096]);
    }

    #[tokio::test]
    async fn pages_stay_within_the_cache_size_taking_room_from_idle_streams() {
        let r = rig_with(&[("cache-size", "32KiB"), ("page-count", "16")], 0);
        let data = pattern(1 << 20, 6);
        let mut fds = Vec::new();
        for n in 0..3 {
            let g = r.file(&format!("f{n}"), &data).await;
            fds.push(r.open(g, libc::O_RDONLY).await);
        }
        for step in 0..40u64 {
            for fd in &fds {
                let off = step * 4096;
                same(
                    &r.read(fd, 4096, off).await,
                    &data[off as usize..off as usize + 4096],
                );
                assert!(r.stat("bytes") <= 32 * 1024, "{}", r.ra.dump());
            }
        }
        assert!(r.stat("evictions") > 0, "{}", r.ra.dump());
        assert!(r.stat("hits") > 0, "{}", r.ra.dump());
    }

    #[tokio::test]
    async fn release_waits_for_the_reads_ahead_in_flight() {
        let r = rig_with(&[("page-count", "8")], 50);
        let data = pattern(1 << 20, 8);
        let g = r.file("f", &data).await;
        let fd = r.open(g, libc::O_RDONLY).await;
        for k in 0..4u64 {
            r.read(&fd, 4096, k * 4096).await;
        }
        r.ra.release(&ctx(), &fd, Xdata::new()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        assert_eq!(r.probe.reads_after_release.load(Ordering::SeqCst), 0);
        assert_eq!(r.stat("streams"), 0);
        assert_eq!(r.stat("bytes"), 0);
    }

    #[tokio::test]
    async fn off_passes_every_read_down_as_asked() {
        let r = rig_with(&[("enable", "off")], 0);
        let data = pattern(40_000, 1);
        let g = r.file("f", &data).await;
        let fd = r.open(g, libc::O_RDONLY).await;
        for k in 0..5u64 {
            same(
                &r.read(&fd, 4096, k * 4096).await,
                &data[k as usize * 4096..(k as usize + 1) * 4096],
            );
        }
        assert_eq!(r.probe.reads.load(Ordering::SeqCst), 5);
        assert_eq!(r.stat("pages_read"), 0);
    }
}
