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
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fuser::INodeNo;
use weft_core::inode::InodeTable;
use weft_core::{Invalidation, Upcall};

/// The longest an acknowledgement waits for the kernel to drop its copy.
pub(crate) const KERNEL_WAIT: Duration = Duration::from_millis(200);

struct Job {
    invalidations: Vec<Invalidation>,
    done: tokio::sync::oneshot::Sender<()>,
}

/// The mount's invalidation thread and the handler volumes hand their upcalls to.
pub(crate) struct Invalidator {
    tx: parking_lot::Mutex<mpsc::Sender<Job>>,
    rt: tokio::runtime::Handle,
}

impl Invalidator {
    /// Starts the thread that writes notifications through `notifier` (once set) for the
    /// inodes of `inodes`, also dropping remembered "no capability xattr" answers.
    pub(crate) fn start(
        notifier: Arc<OnceLock<fuser::Notifier>>,
        inodes: Arc<InodeTable>,
        no_caps: Arc<parking_lot::Mutex<HashMap<u64, Instant>>>,
        rt: tokio::runtime::Handle,
    ) -> Arc<Invalidator> {
        let (tx, rx) = mpsc::channel::<Job>();
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
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the invalidation thread: {e}; the kernel's caches of this mount are dropped only when they expire");
        }
        Arc::new(Invalidator {
            tx: parking_lot::Mutex::new(tx),
            rt,
        })
    }

    /// The handler to give every volume this mount serves.
    pub(crate) fn handler(self: &Arc<Self>) -> weft_client::UpcallHandler {
        let me = self.clone();
        Arc::new(move |u: Upcall| me.take(u))
    }

    fn take(&self, u: Upcall) {
        let (done, wait) = tokio::sync::oneshot::channel();
        let job = Job {
            invalidations: u.invalidations,
            done,
        };
        if self.tx.lock().send(job).is_err() {
            return;
        }
        let ack = u.ack;
        self.rt.spawn(async move {
            let _ = tokio::time::timeout(KERNEL_WAIT, wait).await;
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
