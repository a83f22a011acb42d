//! `features/upcall`: the brick half of coherent client caching, as GlusterFS's
//! features/upcall with cache-invalidation.
//!
//! It sits at the top of a brick graph, just under `protocol/server`, and sees every FOP
//! of every client of the brick (`Ctx::client`).
//! - **Who caches what.** A FOP that lets its client learn something about an inode (any
//!   FOP naming it: lookup, stat, open, read, readdirp of its directory, getxattr, ...)
//!   registers that client on that inode for `cache-invalidation-timeout`: a client
//!   caches nothing longer than that without asking again (its `md-cache-timeout` must be
//!   shorter). Known inodes (the `Loc`'s gfid and parent, the fd's) are registered
//!   *before* the FOP runs, so a change that ends after it sees the registration; inodes
//!   learned from the answer (a lookup's, readdirp's entries) right after, and if one of
//!   them changed while the FOP ran the client is told before it gets its answer.
//! - **Telling them.** A change that succeeds (write, truncate, setattr, xattrs, create,
//!   unlink, rename, link, ...) is answered only after every *other* client registered on
//!   what it changed (the inode; for a name, its directory) has acknowledged the
//!   invalidation ([`Event::Upcall`], delivered by the brick server over that client's
//!   connection) — or `invalidation-wait` has passed: then that client's rights lapse
//!   (its registrations go, and it is told to drop everything, without waiting again).
//! - The client that made the change is not told: its own caches saw the change go by.
//! - Clients that did not ask for upcalls in their handshake are registered but never
//!   waited for (the brick server completes their upcalls at once).
//! - **Directory leases** ([`weft_core::LEASE_KEY`]). A client's `mkdir` may ask for a
//!   lease on the new directory; it is granted when cache invalidation is on, no other
//!   client is registered on the directory, and it has no default ACL and no setgid bit.
//!   Before any other client's FOP names a leased directory (as its inode, fd or parent,
//!   or as what an unlink, rmdir or rename removes or replaces), and before another
//!   client learns its gfid from an answer (a lookup, a listing), the lease is recalled:
//!   the holder is sent [`Invalidation::Recall`] and the FOP waits for its
//!   acknowledgement (the holder has sent everything it did behind under the lease), at
//!   most `invalidation-wait`, after which the holder lapses as above. A client that
//!   goes away loses its leases. Self-heal's FOPs ([`weft_core::Ctx::heal`]) recall
//!   nothing: a heal makes copies agree with what reached the bricks, which the holder's
//!   changes behind agree with too, and it shows nothing to applications (without this,
//!   the self-heal daemon, which heals a directory whose entry changelog creates in
//!   flight have raised, recalled leases in the middle of every burst).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use weft_core::options::{OptionKind, OptionSpec, Options};
use weft_core::{
    Ack, Ctx, Dirent, Event, EventSender, FdRef, Fop, Gfid, Iatt, Invalidation, Loc, SetAttr,
    Upcall, XattrMap, Xdata, Xlator, XlatorInit, XlatorRef, XlatorType,
};

/// How long a client whose rights lapsed is told of changes without being waited for.
const LAPSE_COOLDOWN: Duration = Duration::from_secs(30);

/// The most directory leases a brick holds at once (over all clients); beyond, a mkdir
/// gets none (its client then changes the directory through the brick).
const MAX_LEASES: usize = 100_000;

const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "cache-invalidation",
        kind: OptionKind::Bool,
        default: Some("off"),
        description: "Tell the clients that cache an inode when another client changes it, before the change is answered.",
    },
    OptionSpec {
        key: "cache-invalidation-timeout",
        kind: OptionKind::Duration,
        default: Some("300"),
        description: "How long a client stays registered on an inode after it last asked about it (clients must cache for less: md-cache-timeout).",
    },
    OptionSpec {
        key: "invalidation-wait",
        kind: OptionKind::Duration,
        default: Some("5"),
        description: "The longest a change waits for a client to acknowledge an invalidation; a client that does not loses its registrations and is told to drop everything.",
    },
];

/// The `features/upcall` type: one subvolume.
pub struct UpcallType;

impl XlatorType for UpcallType {
    fn type_name(&self) -> &'static str {
        "features/upcall"
    }
    fn description(&self) -> &'static str {
        "Tracks which clients cache which inodes and invalidates their caches before another client's change is answered."
    }
    fn options(&self) -> &'static [OptionSpec] {
        OPTIONS
    }
    fn children(&self) -> (usize, usize) {
        (1, 1)
    }
    fn build(&self, init: XlatorInit) -> Result<XlatorRef, String> {
        Ok(Arc::new(UpcallXlator {
            name: init.name,
            children: init.children,
            events: init.events,
            cfg: RwLock::new(Cfg::from(&init.options)),
            table: Arc::new(Mutex::new(Table::default())),
            stats: Arc::new(Mutex::new(Stats::default())),
        }))
    }
}

#[derive(Clone, Copy)]
struct Cfg {
    enabled: bool,
    lifetime: Duration,
    wait: Duration,
}

impl Cfg {
    fn from(o: &Options) -> Cfg {
        Cfg {
            enabled: o.bool("cache-invalidation"),
            lifetime: o.duration("cache-invalidation-timeout"),
            wait: o.duration("invalidation-wait"),
        }
    }
}

/// The clients registered on one inode, and when it last changed.
#[derive(Default)]
struct Reg {
    /// (client, registered until).
    clients: Vec<(u64, Instant)>,
    /// The change counter when it last changed (0: not since it was added).
    changed: u64,
    changed_at: Option<Instant>,
}

/// A directory lease: its holder, and the recall under way (done when it says `true`).
struct Lease {
    holder: u64,
    recall: Option<watch::Receiver<bool>>,
}

#[derive(Default)]
struct Table {
    inodes: HashMap<Gfid, Reg>,
    /// Directory leases by directory.
    leases: HashMap<Gfid, Lease>,
    /// Clients whose rights lapsed, and until when they are told without being waited
    /// for (a client that never answers must not add `invalidation-wait` to every change).
    lapsed: HashMap<u64, Instant>,
    /// Counts changes; a FOP notes it when it starts.
    seq: u64,
    last_sweep: Option<Instant>,
}

#[derive(Default)]
struct Stats {
    upcalls: u64,
    lapsed: u64,
    leases: u64,
    recalls: u64,
}

impl Table {
    /// Drops expired registrations and inodes with nothing left to remember.
    fn sweep(&mut self, now: Instant, lifetime: Duration) {
        if self.inodes.len() < 1024
            || self
                .last_sweep
                .is_some_and(|t| now.duration_since(t) < lifetime / 4)
        {
            return;
        }
        self.last_sweep = Some(now);
        self.inodes.retain(|_, r| {
            r.clients.retain(|&(_, until)| until > now);
            !r.clients.is_empty()
                || r.changed_at
                    .is_some_and(|t| now.duration_since(t) < lifetime)
        });
    }

    fn register(&mut self, client: u64, gfid: Gfid, until: Instant) {
        let r = self.inodes.entry(gfid).or_default();
        match r.clients.iter_mut().find(|(c, _)| *c == client) {
            Some(c) => c.1 = until,
            None => r.clients.push((client, until)),
        }
    }
}

/// What one change invalidates: the inodes whose registered clients are told, each with
/// the invalidations they get.
#[derive(Default)]
struct Change(Vec<(Gfid, Invalidation)>);

impl Change {
    fn inode(mut self, gfid: Option<Gfid>, data: bool, xattrs: bool) -> Change {
        if let Some(g) = gfid {
            self.0.push((
                g,
                Invalidation::Inode {
                    gfid: g,
                    data,
                    xattrs,
                },
            ));
        }
        self
    }
    /// Name `loc.name` in `loc.parent` changed, and so did the directory's attributes.
    fn entry(mut self, loc: &Loc) -> Change {
        if let (Some(p), Some(n)) = (loc.parent, &loc.name) {
            use std::os::unix::ffi::OsStrExt;
            let name = n.as_bytes().to_vec();
            self.0.push((p, Invalidation::Entry { parent: p, name }));
            self = self.inode(Some(p), false, false);
        }
        self
    }
}

/// The translator. See the module docs.
pub struct UpcallXlator {
    name: String,
    children: Vec<XlatorRef>,
    events: EventSender,
    cfg: RwLock<Cfg>,
    table: Arc<Mutex<Table>>,
    stats: Arc<Mutex<Stats>>,
}

impl UpcallXlator {
    fn child0(&self) -> &XlatorRef {
        &self.children[0]
    }

    /// Registers `ctx`'s client on `gfids` (before a FOP); returns the change counter.
    fn before(&self, ctx: &Ctx, gfids: &[Option<Gfid>]) -> u64 {
        let cfg = *self.cfg.read();
        let mut t = self.table.lock();
        if cfg.enabled && ctx.client != 0 {
            let now = Instant::now();
            t.sweep(now, cfg.lifetime);
            for g in gfids.iter().flatten() {
                t.register(ctx.client, *g, now + cfg.lifetime);
            }
        }
        t.seq
    }

    /// Registers `ctx`'s client on inodes it learned from an answer; tells it about those
    /// that changed since `start` (before it gets the answer).
    async fn after(&self, ctx: &Ctx, start: u64, gfids: impl IntoIterator<Item = Gfid>) {
        let cfg = *self.cfg.read();
        if !cfg.enabled || ctx.client == 0 {
            return;
        }
        let gfids: Vec<Gfid> = gfids.into_iter().collect();
        let mut stale: Vec<Invalidation> = {
            let mut t = self.table.lock();
            let until = Instant::now() + cfg.lifetime;
            let mut stale = Vec::new();
            for &g in &gfids {
                t.register(ctx.client, g, until);
                if t.inodes.get(&g).is_some_and(|r| r.changed > start) {
                    stale.push(Invalidation::Inode {
                        gfid: g,
                        data: true,
                        xattrs: true,
                    });
                }
            }
            stale
        };
        // Registered first, so a lease granted from now on sees this client. A leased
        // directory changed behind its holder's back until recalled: what the answer
        // says of it is stale once the recall is done.
        let leased: Vec<Option<Gfid>> = gfids.iter().map(|g| Some(*g)).collect();
        for g in self.recall_leases(ctx, &leased).await {
            let inv = Invalidation::Inode {
                gfid: g,
                data: true,
                xattrs: true,
            };
            if !stale.contains(&inv) {
                stale.push(inv);
            }
        }
        if !stale.is_empty() {
            self.tell(cfg, vec![(ctx.client, stale)]).await;
        }
    }

    /// Tells every other client registered on what `change` touched, and waits.
    async fn changed(&self, ctx: &Ctx, change: Change) {
        let cfg = *self.cfg.read();
        if !cfg.enabled || change.0.is_empty() {
            return;
        }
        let mut to: HashMap<u64, Vec<Invalidation>> = HashMap::new();
        {
            let mut t = self.table.lock();
            t.seq += 1;
            let seq = t.seq;
            let now = Instant::now();
            for (g, inv) in change.0 {
                let r = t.inodes.entry(g).or_default();
                r.changed = seq;
                r.changed_at = Some(now);
                for &(c, until) in &r.clients {
                    if c != ctx.client && until > now {
                        let list = to.entry(c).or_default();
                        if !list.contains(&inv) {
                            list.push(inv.clone());
                        }
                    }
                }
            }
        }
        if !to.is_empty() {
            self.tell(cfg, to.into_iter().collect()).await;
        }
    }

    /// Sends each client its invalidations and waits (at most `invalidation-wait`) for
    /// all of them; clients that did not answer lose their registrations.
    async fn tell(&self, cfg: Cfg, to: Vec<(u64, Vec<Invalidation>)>) {
        let mut waits = Vec::with_capacity(to.len());
        for (client, invalidations) in to {
            let (ack, wait) = Ack::new();
            self.events.send(
                &self.name,
                Event::Upcall(Upcall {
                    client,
                    invalidations,
                    ack,
                }),
            );
            waits.push((client, wait));
        }
        self.stats.lock().upcalls += waits.len() as u64;
        let now = Instant::now();
        waits.retain(|(client, _)| {
            let mut t = self.table.lock();
            match t.lapsed.get(client) {
                Some(until) if *until > now => false,
                Some(_) => {
                    t.lapsed.remove(client);
                    true
                }
                None => true,
            }
        });
        let deadline = tokio::time::Instant::now() + cfg.wait;
        for (client, wait) in waits {
            if tokio::time::timeout_at(deadline, wait).await.is_err() {
                self.lapse(client, cfg.wait);
            }
        }
    }

    /// `client` did not acknowledge in time: it is no longer registered anywhere, is
    /// told (without waiting) to drop everything it cached, and for [`LAPSE_COOLDOWN`]
    /// is told of changes without being waited for.
    fn lapse(&self, client: u64, wait: Duration) {
        lapse(
            &self.name,
            &self.events,
            &self.table,
            &self.stats,
            client,
            wait,
        );
    }

    /// Recalls every lease on `gfids` held by a client other than `ctx`'s, and waits
    /// for the recalls (see the module docs). Returns those recalled.
    async fn recall_leases(&self, ctx: &Ctx, gfids: &[Option<Gfid>]) -> Vec<Gfid> {
        let mut any = Vec::new();
        if ctx.is_heal() {
            return any;
        }
        for g in gfids.iter().flatten() {
            let rx = {
                let mut t = self.table.lock();
                if t.leases.is_empty() {
                    return any;
                }
                match t.leases.get_mut(g) {
                    None => continue,
                    Some(l) if l.holder == ctx.client => continue,
                    Some(l) => match &l.recall {
                        Some(rx) => rx.clone(),
                        None => {
                            let (tx, rx) = watch::channel(false);
                            l.recall = Some(rx.clone());
                            let holder = l.holder;
                            drop(t);
                            self.stats.lock().recalls += 1;
                            let (name, events) = (self.name.clone(), self.events.clone());
                            let (table, stats) = (self.table.clone(), self.stats.clone());
                            let (dir, wait) = (*g, self.cfg.read().wait);
                            // A task of its own: the recall ends (and the lease goes) even
                            // if the FOP that asked for it is dropped meanwhile.
                            tokio::spawn(async move {
                                let (ack, done) = Ack::new();
                                events.send(
                                    &name,
                                    Event::Upcall(Upcall {
                                        client: holder,
                                        invalidations: vec![Invalidation::Recall { dir }],
                                        ack,
                                    }),
                                );
                                if tokio::time::timeout(wait, done).await.is_err() {
                                    lapse(&name, &events, &table, &stats, holder, wait);
                                }
                                let mut t = table.lock();
                                if t.leases.get(&dir).is_some_and(|l| l.holder == holder) {
                                    t.leases.remove(&dir);
                                }
                                drop(t);
                                let _ = tx.send(true);
                            });
                            rx
                        }
                    },
                }
            };
            any.push(*g);
            let mut rx = rx;
            let _ = rx.wait_for(|done| *done).await;
        }
        any
    }

    /// Grants `ctx`'s client the lease it asked for on the directory its mkdir just made
    /// (`ia`), when the module docs' conditions hold; says so in the reply's xdata.
    async fn grant_lease(&self, ctx: &Ctx, ia: &Iatt, out: &mut Xdata) {
        if !self.cfg.read().enabled || ctx.client == 0 || ia.mode & libc::S_ISGID != 0 {
            return;
        }
        // Inherited from the parent: even the holder may have set one on its directory.
        let acl = self
            .child0()
            .getxattr(
                &Ctx::internal(),
                &Loc::inode(ia.gfid),
                Some("system.posix_acl_default"),
                Xdata::new(),
            )
            .await;
        if acl != Err(weft_core::Errno::ENODATA) {
            return;
        }
        let mut t = self.table.lock();
        let others = t
            .inodes
            .get(&ia.gfid)
            .is_some_and(|r| r.clients.iter().any(|(c, _)| *c != ctx.client));
        if others || t.leases.contains_key(&ia.gfid) || t.leases.len() >= MAX_LEASES {
            return;
        }
        t.leases.insert(
            ia.gfid,
            Lease {
                holder: ctx.client,
                recall: None,
            },
        );
        drop(t);
        self.stats.lock().leases += 1;
        out.set(weft_core::LEASE_KEY, Vec::new());
    }

    /// The gfid `loc` names: its own, or the one the name resolves to now.
    async fn resolve(&self, ctx: &Ctx, loc: &Loc) -> Option<Gfid> {
        if loc.gfid.is_some() {
            return loc.gfid;
        }
        if !self.cfg.read().enabled {
            return None;
        }
        let r = self.child0().lookup(ctx, loc, Xdata::new()).await;
        r.ok().map(|(ia, _)| ia.gfid)
    }

    /// Runs a change: registers the caller on what it names, then tells the others on
    /// success.
    async fn change<T>(
        &self,
        ctx: &Ctx,
        names: &[Option<Gfid>],
        fop: impl std::future::Future<Output = Fop<T>>,
        change: impl FnOnce(&T) -> Change,
    ) -> Fop<T> {
        // Registered first: a lease granted from now on sees this client.
        self.before(ctx, names);
        self.recall_leases(ctx, names).await;
        let r = fop.await;
        if let Ok((v, _)) = &r {
            self.changed(ctx, change(v)).await;
        }
        r
    }

    /// Runs a read: registers the caller on what it names before, and on `learned` after.
    async fn read<T>(
        &self,
        ctx: &Ctx,
        names: &[Option<Gfid>],
        fop: impl std::future::Future<Output = Fop<T>>,
        learned: impl FnOnce(&T) -> Vec<Gfid>,
    ) -> Fop<T> {
        let start = self.before(ctx, names);
        self.recall_leases(ctx, names).await;
        let r = fop.await;
        if let Ok((v, _)) = &r {
            let g = learned(v);
            if !g.is_empty() {
                self.after(ctx, start, g).await;
            }
        }
        r
    }
}

/// `client` did not acknowledge in time: it is no longer registered anywhere, holds no
/// lease, is told (without waiting) to drop everything it cached, and for
/// [`LAPSE_COOLDOWN`] is told of changes without being waited for.
fn lapse(
    name: &str,
    events: &EventSender,
    table: &Mutex<Table>,
    stats: &Mutex<Stats>,
    client: u64,
    wait: Duration,
) {
    tracing::warn!(
        "{name}: client {client} did not acknowledge a cache invalidation within {wait:?}: its cache registrations and leases lapse"
    );
    stats.lock().lapsed += 1;
    let mut t = table.lock();
    for r in t.inodes.values_mut() {
        r.clients.retain(|(c, _)| *c != client);
    }
    t.leases.retain(|_, l| l.holder != client);
    t.lapsed.insert(client, Instant::now() + LAPSE_COOLDOWN);
    drop(t);
    events.send(
        name,
        Event::Upcall(Upcall {
            client,
            invalidations: vec![Invalidation::All],
            ack: Ack::none(),
        }),
    );
}

fn has_trunc(flags: i32) -> bool {
    flags & libc::O_TRUNC != 0
}

fn none<T>(_: &T) -> Vec<Gfid> {
    Vec::new()
}

#[async_trait]
impl Xlator for UpcallXlator {
    fn name(&self) -> &str {
        &self.name
    }
    fn children(&self) -> &[XlatorRef] {
        &self.children
    }

    async fn reconfigure(&self, options: &Options) -> Result<(), String> {
        let new = Cfg::from(options);
        if !new.enabled {
            self.table.lock().inodes.clear();
        }
        *self.cfg.write() = new;
        Ok(())
    }

    fn dump(&self) -> String {
        let cfg = *self.cfg.read();
        let t = self.table.lock();
        let regs: usize = t.inodes.values().map(|r| r.clients.len()).sum();
        let s = self.stats.lock();
        format!(
            "cache-invalidation = {}\ncache-invalidation-timeout = {:?}\ninvalidation-wait = {:?}\ninodes = {}\nregistrations = {regs}\nchanges = {}\nupcalls = {}\nlapsed = {}\nleases = {}\nleases_granted = {}\nrecalls = {}\n",
            cfg.enabled,
            cfg.lifetime,
            cfg.wait,
            t.inodes.len(),
            t.seq,
            s.upcalls,
            s.lapsed,
            t.leases.len(),
            s.leases,
            s.recalls
        )
    }

    async fn forget_client(&self, client: u64) {
        {
            let mut t = self.table.lock();
            for r in t.inodes.values_mut() {
                r.clients.retain(|(c, _)| *c != client);
            }
            t.lapsed.remove(&client);
            t.leases.retain(|_, l| l.holder != client);
        }
        self.child0().forget_client(client).await;
    }

    // ---- reads: register ----

    async fn lookup(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().lookup(ctx, loc, xd);
        self.read(ctx, &[loc.gfid, loc.parent], f, |ia: &Iatt| vec![ia.gfid])
            .await
    }
    async fn stat(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().stat(ctx, loc, xd);
        self.read(ctx, &[loc.gfid], f, |ia: &Iatt| vec![ia.gfid])
            .await
    }
    async fn fstat(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().fstat(ctx, fd, xd);
        self.read(ctx, &[Some(fd.gfid)], f, none).await
    }
    async fn access(&self, ctx: &Ctx, loc: &Loc, mask: u32, xd: Xdata) -> Fop<()> {
        let f = self.child0().access(ctx, loc, mask, xd);
        self.read(ctx, &[loc.gfid], f, none).await
    }
    async fn readlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<PathBuf> {
        let f = self.child0().readlink(ctx, loc, xd);
        self.read(ctx, &[loc.gfid], f, none).await
    }
    // A flush or fsync may answer attributes (POSTSTAT_KEY) that md-cache keeps, so the
    // caller is registered as for fstat.
    async fn flush(&self, ctx: &Ctx, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let f = self.child0().flush(ctx, fd, xd);
        self.read(ctx, &[Some(fd.gfid)], f, none).await
    }
    async fn fsync(&self, ctx: &Ctx, fd: &FdRef, datasync: bool, xd: Xdata) -> Fop<()> {
        let f = self.child0().fsync(ctx, fd, datasync, xd);
        self.read(ctx, &[Some(fd.gfid)], f, none).await
    }
    async fn readv(&self, ctx: &Ctx, fd: &FdRef, size: u32, offset: u64, xd: Xdata) -> Fop<Bytes> {
        let f = self.child0().readv(ctx, fd, size, offset, xd);
        self.read(ctx, &[Some(fd.gfid)], f, none).await
    }
    async fn opendir(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let f = self.child0().opendir(ctx, loc, fd, xd);
        self.read(ctx, &[loc.gfid, Some(fd.gfid)], f, none).await
    }
    async fn readdir(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let f = self.child0().readdir(ctx, fd, size, offset, xd);
        self.read(ctx, &[Some(fd.gfid)], f, none).await
    }
    async fn readdirp(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        size: u32,
        offset: u64,
        xd: Xdata,
    ) -> Fop<Vec<Dirent>> {
        let f = self.child0().readdirp(ctx, fd, size, offset, xd);
        self.read(ctx, &[Some(fd.gfid)], f, |v: &Vec<Dirent>| {
            v.iter()
                .filter_map(|d| d.iatt.as_ref().map(|ia| ia.gfid))
                .filter(|g| !g.is_null())
                .collect()
        })
        .await
    }
    async fn getxattr(&self, ctx: &Ctx, loc: &Loc, name: Option<&str>, xd: Xdata) -> Fop<XattrMap> {
        let f = self.child0().getxattr(ctx, loc, name, xd);
        self.read(ctx, &[loc.gfid], f, none).await
    }
    async fn fgetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        name: Option<&str>,
        xd: Xdata,
    ) -> Fop<XattrMap> {
        let f = self.child0().fgetxattr(ctx, fd, name, xd);
        self.read(ctx, &[Some(fd.gfid)], f, none).await
    }
    async fn open(&self, ctx: &Ctx, loc: &Loc, fd: &FdRef, xd: Xdata) -> Fop<()> {
        let f = self.child0().open(ctx, loc, fd, xd);
        if has_trunc(fd.flags) {
            let g = Some(fd.gfid);
            self.change(ctx, &[g], f, |_| Change::default().inode(g, true, false))
                .await
        } else {
            self.read(ctx, &[loc.gfid, Some(fd.gfid)], f, none).await
        }
    }

    // ---- changes: tell the others ----

    async fn setattr(&self, ctx: &Ctx, loc: &Loc, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().setattr(ctx, loc, attr, xd);
        let data = attr.size.is_some();
        self.change(ctx, &[loc.gfid], f, |ia: &Iatt| {
            Change::default().inode(Some(ia.gfid), data, false)
        })
        .await
    }
    async fn fsetattr(&self, ctx: &Ctx, fd: &FdRef, attr: &SetAttr, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().fsetattr(ctx, fd, attr, xd);
        let (g, data) = (Some(fd.gfid), attr.size.is_some());
        self.change(ctx, &[g], f, |_| Change::default().inode(g, data, false))
            .await
    }
    async fn truncate(&self, ctx: &Ctx, loc: &Loc, size: u64, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().truncate(ctx, loc, size, xd);
        self.change(ctx, &[loc.gfid], f, |ia: &Iatt| {
            Change::default().inode(Some(ia.gfid), true, false)
        })
        .await
    }
    async fn ftruncate(&self, ctx: &Ctx, fd: &FdRef, size: u64, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().ftruncate(ctx, fd, size, xd);
        let g = Some(fd.gfid);
        self.change(ctx, &[g], f, |_| Change::default().inode(g, true, false))
            .await
    }
    async fn writev(&self, ctx: &Ctx, fd: &FdRef, data: Bytes, offset: u64, xd: Xdata) -> Fop<u64> {
        let f = self.child0().writev(ctx, fd, data, offset, xd);
        let g = Some(fd.gfid);
        self.change(ctx, &[g], f, |_| Change::default().inode(g, true, false))
            .await
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
        let f = self.child0().fallocate(ctx, fd, mode, offset, len, xd);
        let g = Some(fd.gfid);
        self.change(ctx, &[g], f, |_| Change::default().inode(g, true, false))
            .await
    }
    async fn discard(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let f = self.child0().discard(ctx, fd, offset, len, xd);
        let g = Some(fd.gfid);
        self.change(ctx, &[g], f, |_| Change::default().inode(g, true, false))
            .await
    }
    async fn zerofill(&self, ctx: &Ctx, fd: &FdRef, offset: u64, len: u64, xd: Xdata) -> Fop<()> {
        let f = self.child0().zerofill(ctx, fd, offset, len, xd);
        let g = Some(fd.gfid);
        self.change(ctx, &[g], f, |_| Change::default().inode(g, true, false))
            .await
    }
    async fn setxattr(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        xattrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let f = self.child0().setxattr(ctx, loc, xattrs, flags, xd);
        let g = loc.gfid;
        self.change(ctx, &[g], f, |_| Change::default().inode(g, false, true))
            .await
    }
    async fn fsetxattr(
        &self,
        ctx: &Ctx,
        fd: &FdRef,
        xattrs: &XattrMap,
        flags: i32,
        xd: Xdata,
    ) -> Fop<()> {
        let f = self.child0().fsetxattr(ctx, fd, xattrs, flags, xd);
        let g = Some(fd.gfid);
        self.change(ctx, &[g], f, |_| Change::default().inode(g, false, true))
            .await
    }
    async fn removexattr(&self, ctx: &Ctx, loc: &Loc, name: &str, xd: Xdata) -> Fop<()> {
        let f = self.child0().removexattr(ctx, loc, name, xd);
        let g = loc.gfid;
        self.change(ctx, &[g], f, |_| Change::default().inode(g, false, true))
            .await
    }
    async fn fremovexattr(&self, ctx: &Ctx, fd: &FdRef, name: &str, xd: Xdata) -> Fop<()> {
        let f = self.child0().fremovexattr(ctx, fd, name, xd);
        let g = Some(fd.gfid);
        self.change(ctx, &[g], f, |_| Change::default().inode(g, false, true))
            .await
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
        let start = self.before(ctx, &[loc.parent]);
        self.recall_leases(ctx, &[loc.parent]).await;
        let r = self.child0().create(ctx, loc, fd, mode, umask, xd).await;
        if let Ok((ia, _)) = &r {
            // Registered (and told of others' changes) before its own change counts, so
            // that its own truncation is never told back to it.
            self.after(ctx, start, [ia.gfid]).await;
            let mut c = Change::default().entry(loc);
            if has_trunc(fd.flags) {
                c = c.inode(Some(ia.gfid), true, false);
            }
            self.changed(ctx, c).await;
        }
        r
    }
    async fn mkdir(&self, ctx: &Ctx, loc: &Loc, mode: u32, umask: u32, xd: Xdata) -> Fop<Iatt> {
        let wants_lease = xd.has(weft_core::LEASE_KEY);
        let f = self.child0().mkdir(ctx, loc, mode, umask, xd);
        let mut r = self.new_entry(ctx, loc, f).await;
        if wants_lease {
            if let Ok((ia, out)) = &mut r {
                out.0.remove(weft_core::LEASE_KEY);
                self.grant_lease(ctx, ia, out).await;
            }
        }
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
        let f = self.child0().mknod(ctx, loc, mode, rdev, umask, xd);
        self.new_entry(ctx, loc, f).await
    }
    async fn symlink(
        &self,
        ctx: &Ctx,
        target: &Path,
        loc: &Loc,
        umask: u32,
        xd: Xdata,
    ) -> Fop<Iatt> {
        let f = self.child0().symlink(ctx, target, loc, umask, xd);
        self.new_entry(ctx, loc, f).await
    }
    async fn link(&self, ctx: &Ctx, old: &Loc, new: &Loc, xd: Xdata) -> Fop<Iatt> {
        let f = self.child0().link(ctx, old, new, xd);
        self.change(ctx, &[old.gfid, new.parent], f, |ia: &Iatt| {
            Change::default()
                .entry(new)
                .inode(Some(ia.gfid), false, false)
        })
        .await
    }
    async fn unlink(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        // The directory's holder sends what it did there before the name is resolved.
        self.before(ctx, &[loc.parent]);
        self.recall_leases(ctx, &[loc.parent]).await;
        let victim = self.resolve(ctx, loc).await;
        self.recall_leases(ctx, &[victim]).await;
        let f = self.child0().unlink(ctx, loc, xd);
        self.change(ctx, &[loc.parent], f, |_| {
            Change::default().entry(loc).inode(victim, false, false)
        })
        .await
    }
    async fn rmdir(&self, ctx: &Ctx, loc: &Loc, xd: Xdata) -> Fop<()> {
        self.before(ctx, &[loc.parent]);
        self.recall_leases(ctx, &[loc.parent]).await;
        let victim = self.resolve(ctx, loc).await;
        self.recall_leases(ctx, &[victim]).await;
        let f = self.child0().rmdir(ctx, loc, xd);
        let r = self
            .change(ctx, &[loc.parent], f, |_| {
                Change::default().entry(loc).inode(victim, false, false)
            })
            .await;
        if let (Ok(_), Some(g)) = (&r, victim) {
            self.table.lock().leases.remove(&g);
        }
        r
    }
    async fn rename(&self, ctx: &Ctx, old: &Loc, new: &Loc, flags: u32, xd: Xdata) -> Fop<()> {
        self.before(ctx, &[old.parent, new.parent]);
        self.recall_leases(ctx, &[old.parent, new.parent]).await;
        let moved = self.resolve(ctx, old).await;
        let replaced = self.resolve(ctx, new).await;
        self.recall_leases(ctx, &[moved, replaced]).await;
        let f = self.child0().rename(ctx, old, new, flags, xd);
        self.change(ctx, &[old.parent, new.parent], f, |_| {
            Change::default()
                .entry(old)
                .entry(new)
                .inode(moved, false, false)
                .inode(replaced, false, false)
        })
        .await
    }
}

impl UpcallXlator {
    /// mkdir, mknod, symlink: the name and its directory changed; the creator learns the
    /// new inode.
    async fn new_entry(
        &self,
        ctx: &Ctx,
        loc: &Loc,
        fop: impl std::future::Future<Output = Fop<Iatt>>,
    ) -> Fop<Iatt> {
        let start = self.before(ctx, &[loc.parent]);
        self.recall_leases(ctx, &[loc.parent]).await;
        let r = fop.await;
        if let Ok((ia, _)) = &r {
            self.after(ctx, start, [ia.gfid]).await;
            self.changed(ctx, Change::default().entry(loc)).await;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::{Graph, Registry};

    fn registry() -> Registry {
        crate::registry()
    }

    async fn graph(dir: &std::path::Path) -> Graph {
        let text = format!(
            "volume p\n type storage/posix\n option directory {}\nend-volume\nvolume u\n type features/upcall\n option cache-invalidation on\n option invalidation-wait 200ms\n subvolumes p\nend-volume\n",
            dir.display()
        );
        let vf = weft_core::volfile::Volfile::parse(&text).unwrap();
        Graph::build(&vf, &registry()).unwrap()
    }

    fn client(n: u64) -> Ctx {
        Ctx {
            client: n,
            ..Ctx::internal()
        }
    }

    /// Self-heal's FOPs on a leased directory recall nothing; another client's lookup
    /// of it recalls the lease.
    #[tokio::test]
    async fn a_heal_looks_at_a_leased_directory_without_recalling_it() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path()).await;
        let mut rx = g.take_events().unwrap();
        let top = g.top().clone();
        let loc = Loc::entry(Gfid::ROOT, "d");
        let mut xd = Xdata::new();
        xd.set(weft_core::GFID_REQ_KEY, Gfid::random().0.to_vec());
        xd.set(weft_core::LEASE_KEY, Vec::new());
        let (ia, out) = top.mkdir(&client(1), &loc, 0o755, 0, xd).await.unwrap();
        assert!(out.has(weft_core::LEASE_KEY), "the lease is granted");
        let heal = Ctx {
            client: 2,
            ..Ctx::heal()
        };
        top.lookup(&heal, &Loc::inode(ia.gfid), Xdata::new())
            .await
            .unwrap();
        top.lookup(&heal, &loc, Xdata::new()).await.unwrap();
        let fd = Arc::new(weft_core::Fd::new(ia.gfid, libc::O_RDONLY, true));
        top.opendir(&heal, &Loc::inode(ia.gfid), &fd, Xdata::new())
            .await
            .unwrap();
        top.readdirp(&heal, &fd, 4096, 0, Xdata::new())
            .await
            .unwrap();
        assert!(rx.try_recv().is_err(), "a heal recalled the lease");
        assert!(top.dump().contains("recalls = 0"), "{}", top.dump());
        // Another client's look recalls it from its holder.
        let other = tokio::spawn({
            let top = top.clone();
            async move {
                top.lookup(&client(3), &Loc::inode(ia.gfid), Xdata::new())
                    .await
            }
        });
        let (_, ev) = rx.recv().await.unwrap();
        let Event::Upcall(u) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(
            (u.client, u.invalidations.clone()),
            (1, vec![Invalidation::Recall { dir: ia.gfid }])
        );
        drop(u);
        other.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_change_tells_the_other_registered_clients_and_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let g = graph(dir.path()).await;
        let mut rx = g.take_events().unwrap();
        let top = g.top().clone();
        let loc = Loc::entry(Gfid::ROOT, "f");
        let gfid = Gfid::random();
        let fd = Arc::new(weft_core::Fd::new(
            gfid,
            libc::O_CREAT | libc::O_RDWR,
            false,
        ));
        let mut xd = Xdata::new();
        xd.set(weft_core::GFID_REQ_KEY, gfid.0.to_vec());
        let (ia, _) = top
            .create(&client(1), &loc, &fd, 0o644, 0, xd)
            .await
            .unwrap();
        assert_eq!(ia.gfid, gfid);
        // Client 2 looks it up: registered on the root and the file.
        top.lookup(&client(2), &loc, Xdata::new()).await.unwrap();
        // Client 1 writes: client 2 is told, and the write waits for its answer.
        let t = tokio::spawn({
            let (top, fd) = (top.clone(), fd.clone());
            async move {
                top.writev(&client(1), &fd, Bytes::from_static(b"x"), 0, Xdata::new())
                    .await
            }
        });
        let (_, ev) = rx.recv().await.unwrap();
        let Event::Upcall(u) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(u.client, 2);
        assert_eq!(
            u.invalidations,
            vec![Invalidation::Inode {
                gfid: ia.gfid,
                data: true,
                xattrs: false
            }]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !t.is_finished(),
            "the write waits for the invalidation's ack"
        );
        drop(u);
        t.await.unwrap().unwrap();
        // Client 1, the writer, was never told; a client that does not answer lapses.
        top.unlink(&client(1), &loc, Xdata::new()).await.unwrap();
        let (_, ev) = rx.recv().await.unwrap();
        let Event::Upcall(held) = ev else { panic!() };
        assert_eq!(held.client, 2);
        assert!(held.invalidations.contains(&Invalidation::Entry {
            parent: Gfid::ROOT,
            name: b"f".to_vec()
        }));
        let (_, ev) = rx.recv().await.unwrap();
        let Event::Upcall(all) = ev else { panic!() };
        assert_eq!(
            (all.client, all.invalidations.clone()),
            (2, vec![Invalidation::All])
        );
        assert!(top.dump().contains("lapsed = 1"), "{}", top.dump());
        drop(held);
        // Lapsed: the next change does not wait for client 2 or tell it.
        let loc2 = Loc::entry(Gfid::ROOT, "g");
        top.mkdir(&client(1), &loc2, 0o755, 0, Xdata::new())
            .await
            .unwrap();
        assert!(rx.try_recv().is_err());
    }
}
