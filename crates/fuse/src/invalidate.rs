//! Drops the kernel's cached copies of what another client changed: every invalidation
//! that comes out of the top of the graph (`weft_client::Volume::on_upcall`) becomes a
//! FUSE notification (`FUSE_NOTIFY_INVAL_INODE` for attributes and pages,
//! `FUSE_NOTIFY_INVAL_ENTRY` for a name).
//!
//! Notifications are written on a thread of their own, never on a request thread or a
//! runtime worker: the kernel may hold a directory lock while it waits for one of this
//! mount's requests, and that request may be waiting on a brick that waits for this
//! mount's acknowledgement. So the acknowledgement goes back when the kernel has dropped
//! its copy, or after [`KERNEL_WAIT`] at the latest; the translators' caches were dropped
//! before the handler ran.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fuser::INodeNo;
use weft_core::inode::InodeTable;
use weft_core::{Invalidation, Upcall};

/// The longest an acknowledgement waits for the kernel to drop its copy.
pub(crate) const KERNEL_WAIT: Duration = Duration::from_millis(200);

/// Whether a reply's attributes and names may be cached by the kernel for the full
/// timeout: not when an invalidation arrived while the request ran (the reply may carry
/// what it dropped, and the kernel may not have had the inode or name yet to drop), nor
/// while the kernel is late taking notifications.
#[derive(Default)]
pub(crate) struct Freshness {
    /// Counts invalidations received.
    seq: AtomicU64,
    /// Counts invalidations and this mount's own entry changes (for listings read ahead).
    dirs: AtomicU64,
    /// Jobs handed to the thread and not done.
    queued: AtomicUsize,
    /// Set when an acknowledgement went back before the kernel took a notification;
    /// cleared when the thread has caught up.
    late: AtomicBool,
}

impl Freshness {
    /// How many invalidations there have been.
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// How many invalidations and entry changes of this mount there have been.
    pub(crate) fn dir_seq(&self) -> u64 {
        self.dirs.load(Ordering::Acquire)
    }

    /// This mount changed a name (listings read ahead may hold it as it was).
    pub(crate) fn dir_changed(&self) {
        self.dirs.fetch_add(1, Ordering::AcqRel);
    }

    /// This mount is changing a name: counted now and again when the guard drops, so a
    /// listing read while the change ran is stale too.
    pub(crate) fn dir_changing(self: &Arc<Self>) -> DirChanging {
        self.dir_changed();
        DirChanging(self.clone())
    }

    /// Notes the state when a request starts; the guard says later which timeout its
    /// reply may carry.
    pub(crate) fn guard(self: &Arc<Self>, ttl: Duration) -> TtlGuard {
        TtlGuard {
            fresh: self.clone(),
            start: self.seq.load(Ordering::Acquire),
            ttl,
        }
    }
}

/// See [`Freshness::dir_changing`].
pub(crate) struct DirChanging(Arc<Freshness>);

impl Drop for DirChanging {
    fn drop(&mut self) {
        self.0.dir_changed();
    }
}

/// See [`Freshness::guard`].
pub(crate) struct TtlGuard {
    fresh: Arc<Freshness>,
    start: u64,
    ttl: Duration,
}

impl TtlGuard {
    /// The timeout for the reply: the full one, or zero when an invalidation crossed the
    /// request or the kernel is behind on notifications.
    pub(crate) fn ttl(&self) -> Duration {
        let f = &self.fresh;
        if f.seq.load(Ordering::Acquire) != self.start || f.late.load(Ordering::Acquire) {
            Duration::ZERO
        } else {
            self.ttl
        }
    }
}

struct Job {
    invalidations: Vec<Invalidation>,
    done: tokio::sync::oneshot::Sender<()>,
}

/// The mount's invalidation thread and the handler volumes hand their upcalls to.
pub(crate) struct Invalidator {
    tx: parking_lot::Mutex<mpsc::Sender<Job>>,
    rt: tokio::runtime::Handle,
    fresh: Arc<Freshness>,
}

impl Invalidator {
    /// Starts the thread that writes notifications through `notifier` (once set) for the
    /// inodes of `inodes`, also dropping remembered "no capability xattr" answers.
    pub(crate) fn start(
        notifier: Arc<OnceLock<fuser::Notifier>>,
        inodes: Arc<InodeTable>,
        no_caps: Arc<parking_lot::Mutex<HashMap<u64, Instant>>>,
        fresh: Arc<Freshness>,
        rt: tokio::runtime::Handle,
    ) -> Arc<Invalidator> {
        let (tx, rx) = mpsc::channel::<Job>();
        let f = fresh.clone();
        let spawned = std::thread::Builder::new()
            .name("weft-fuse-inval".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    if let Some(n) = notifier.get() {
                        for inv in &job.invalidations {
                            apply(n, &inodes, &no_caps, inv);
                        }
                    }
                    let _ = job.done.send(());
                    if f.queued.fetch_sub(1, Ordering::AcqRel) == 1 {
                        f.late.store(false, Ordering::Release);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the invalidation thread: {e}; the kernel's caches of this mount are dropped only when they expire");
        }
        Arc::new(Invalidator {
            tx: parking_lot::Mutex::new(tx),
            rt,
            fresh,
        })
    }

    /// What replies consult for their kernel timeouts (see [`Freshness`]).
    pub(crate) fn freshness(&self) -> Arc<Freshness> {
        self.fresh.clone()
    }

    /// Drops everything the kernel caches for this mount (a graph switch: what the old
    /// graph's answers told the kernel is covered by no brick's registration any more).
    pub(crate) fn drop_all(&self) {
        self.take(Upcall {
            client: 0,
            invalidations: vec![Invalidation::All],
            ack: weft_core::Ack::none(),
        });
    }

    /// The handler to give every volume this mount serves.
    pub(crate) fn handler(self: &Arc<Self>) -> weft_client::UpcallHandler {
        let me = self.clone();
        Arc::new(move |u: Upcall| me.take(u))
    }

    fn take(&self, u: Upcall) {
        // Counted before anything: a reply computed before this invalidation and sent
        // after it must not be cached for the full timeout.
        self.fresh.seq.fetch_add(1, Ordering::AcqRel);
        self.fresh.dir_changed();
        let (done, wait) = tokio::sync::oneshot::channel();
        let job = Job {
            invalidations: u.invalidations,
            done,
        };
        self.fresh.queued.fetch_add(1, Ordering::AcqRel);
        if self.tx.lock().send(job).is_err() {
            self.fresh.queued.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let ack = u.ack;
        let fresh = self.fresh.clone();
        self.rt.spawn(async move {
            if tokio::time::timeout(KERNEL_WAIT, wait).await.is_err() {
                // The kernel is behind: until it catches up, replies carry no timeout.
                fresh.late.store(true, Ordering::Release);
            }
            drop(ack);
        });
    }
}

fn apply(
    n: &fuser::Notifier,
    inodes: &InodeTable,
    no_caps: &parking_lot::Mutex<HashMap<u64, Instant>>,
    inv: &Invalidation,
) {
    let known = |g: &weft_core::Gfid| {
        let ino = g.ino();
        (inodes.gfid(ino) == Some(*g)).then_some(ino)
    };
    match inv {
        Invalidation::Inode { gfid, data, xattrs } => {
            if let Some(ino) = known(gfid) {
                if *xattrs {
                    no_caps.lock().remove(&ino);
                }
                // A negative offset drops attributes (and cached ACLs) only.
                let offset = if *data { 0 } else { -1 };
                quiet(n.inval_inode(INodeNo(ino), offset, 0));
            }
        }
        Invalidation::Recall { dir } => {
            // What this mount made in it behind now reaches the brick: its attributes.
            if let Some(ino) = known(dir) {
                quiet(n.inval_inode(INodeNo(ino), -1, 0));
            }
        }
        Invalidation::Entry { parent, name } => {
            if let Some(p) = known(parent) {
                use std::os::unix::ffi::OsStrExt;
                quiet(n.inval_entry(INodeNo(p), std::ffi::OsStr::from_bytes(name)));
            }
        }
        Invalidation::All => {
            no_caps.lock().clear();
            for (ino, link) in inodes.all() {
                if let Some((p, name)) = link {
                    quiet(n.inval_entry(INodeNo(p), &name));
                }
                quiet(n.inval_inode(INodeNo(ino), 0, 0));
            }
        }
    }
}

/// The kernel answers ENOENT for what it no longer caches: nothing to do then.
fn quiet(r: std::io::Result<()>) {
    if let Err(e) = r {
        if e.raw_os_error() != Some(libc::ENOENT) {
            tracing::debug!("cache invalidation failed: {e}");
        }
    }
}
