//! Cache invalidation ("upcalls"): what a brick tells the clients that cache an inode when
//! another client changes it, and how a client says it has dropped what it cached.
//!
//! On a brick, `features/upcall` raises [`crate::Event::Upcall`] naming the client to tell;
//! the brick server sends it over that client's connection and completes the [`Ack`] when
//! the client answers. In a client graph, `protocol/client` raises the same event (client
//! 0) for what it receives; every translator that caches drops what it names as the event
//! passes up, and the front end above the graph (the FUSE mount) drops the kernel's copy.
//! The client answers the brick once every holder of the event's [`Ack`] has let go of it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::Gfid;

/// One thing a client may have cached that is no longer true.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Invalidation {
    /// The inode's attributes changed; with `data`, its content too; with `xattrs`, its
    /// extended attributes.
    Inode {
        /// The inode.
        gfid: Gfid,
        /// Its content changed (drop cached pages and file content).
        data: bool,
        /// Its extended attributes changed.
        xattrs: bool,
    },
    /// Name `name` in directory `parent` now names another inode, or none, or a new one.
    Entry {
        /// The directory.
        parent: Gfid,
        /// The name, as stored (any bytes but `/` and NUL).
        name: Vec<u8>,
    },
    /// Anything cached may be stale: the connection to a brick dropped or came back, or the
    /// brick gave up waiting for this client once.
    All,
    /// The brick takes back this client's lease on directory `dir` (see [`crate::LEASE_KEY`]):
    /// another client is about to look into it. Everything the client did in it, and to
    /// the inodes it made there, without waiting for the brick (entries made or removed
    /// behind, writes and closes behind) must reach the brick before the upcall's
    /// [`Ack`] completes; from then on the client changes the directory only through the
    /// brick. The directory's attributes are to be dropped as for an `Inode` invalidation.
    Recall {
        /// The directory.
        dir: Gfid,
    },
}

/// Completion of an upcall's delivery: done when the last clone is dropped. Whoever must
/// finish something before the upcall counts as handled keeps a clone until then; nobody
/// can forget to complete it, and a dropped event completes it too.
#[derive(Clone)]
pub struct Ack(#[allow(dead_code)] Arc<AckInner>);

struct AckInner(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for AckInner {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// Resolves when every clone of its [`Ack`] has been dropped.
pub type AckWait = tokio::sync::oneshot::Receiver<()>;

impl Ack {
    /// A new completion and the future that resolves (`Ok` or `Err`, both mean done) when
    /// its last clone is dropped.
    pub fn new() -> (Ack, AckWait) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        (Ack(Arc::new(AckInner(Some(tx)))), rx)
    }

    /// A completion nobody waits for (for upcalls raised locally).
    pub fn none() -> Ack {
        Ack(Arc::new(AckInner(None)))
    }
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ack")
    }
}

impl PartialEq for Ack {
    fn eq(&self, other: &Ack) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Ack {}

/// Invalidations on their way to a client (brick side) or from a brick (client side).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upcall {
    /// On a brick: the brick server's number of the client to tell. In a client graph: 0.
    pub client: u64,
    /// What to drop.
    pub invalidations: Vec<Invalidation>,
    /// Done when every holder has dropped it (see [`Ack`]).
    pub ack: Ack,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_ack_completes_when_its_last_clone_drops() {
        let (ack, mut wait) = Ack::new();
        let other = ack.clone();
        drop(ack);
        assert!(wait.try_recv().is_err(), "one clone still held");
        drop(other);
        assert!(wait.await.is_ok());
    }
}
