//! Upcall delivery: the brick graph's [`Event::Upcall`]s (raised by `features/upcall`)
//! sent to the client they name, over its connection, as `Upcall` frames; the client's
//! `UpcallAck` (same id) completes the upcall's [`weft_core::Ack`].
//!
//! Only clients that asked for upcalls in their handshake have a route. An upcall for a
//! client without one (it did not ask, or it is disconnected) completes at once: a client
//! drops everything it cached whenever its connection drops or comes back, so it can miss
//! nothing while it has no route.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use weft_core::{Ack, Event, EventReceiver, Upcall};
use weft_wire::{msg, Frame, Kind};

use super::Brick;
use crate::stream::FrameSink;

/// Upcalls sent to one client and not yet acknowledged, at most this many (the oldest are
/// completed unanswered beyond it: `features/upcall` has stopped waiting for them long
/// before).
const MAX_PENDING: usize = 65_536;

/// One connected client's way back.
pub(super) struct Route {
    tx: Arc<FrameSink>,
    /// Unanswered upcalls by frame id; `None` once the connection ended.
    pending: Mutex<Option<BTreeMap<u64, Ack>>>,
    next_id: AtomicU64,
}

impl Route {
    /// The client answered upcall `id`.
    pub(super) fn acked(&self, id: u64) {
        if let Some(p) = self.pending.lock().as_mut() {
            p.remove(&id);
        }
    }

    async fn send(self: Arc<Route>, up: Upcall) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let meta = match msg::try_encode(&up.invalidations) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(client = up.client, "cannot encode an upcall: {e}");
                return;
            }
        };
        {
            let mut g = self.pending.lock();
            let Some(p) = g.as_mut() else { return };
            if p.len() >= MAX_PENDING {
                p.pop_first();
            }
            p.insert(id, up.ack);
        }
        if self
            .tx
            .send(Frame::new(Kind::Upcall, id, meta, Bytes::new()))
            .await
            .is_err()
        {
            self.acked(id);
        }
    }
}

/// The routes of one brick's clients, by client number.
#[derive(Default)]
pub(super) struct Routes(Mutex<HashMap<u64, Arc<Route>>>);

impl Routes {
    /// `client`'s connection (sending through `tx`) takes upcalls from now on.
    pub(super) fn add(&self, client: u64, tx: Arc<FrameSink>) -> Arc<Route> {
        let r = Arc::new(Route {
            tx,
            pending: Mutex::new(Some(BTreeMap::new())),
            next_id: AtomicU64::new(1),
        });
        if let Some(old) = self.0.lock().insert(client, r.clone()) {
            old.pending.lock().take();
        }
        r
    }

    /// `route`'s connection ended: what it still owed is complete.
    pub(super) fn remove(&self, client: u64, route: &Arc<Route>) {
        let mut m = self.0.lock();
        if m.get(&client).is_some_and(|r| Arc::ptr_eq(r, route)) {
            m.remove(&client);
        }
        drop(m);
        route.pending.lock().take();
    }

    /// How many connected clients take upcalls.
    pub(super) fn len(&self) -> usize {
        self.0.lock().len()
    }

    fn route(&self, client: u64) -> Option<Arc<Route>> {
        self.0.lock().get(&client).cloned()
    }
}

/// Delivers the upcalls brick `brick`'s graph raises until the graph goes away.
pub(super) async fn deliver(brick: Weak<Brick>, mut events: EventReceiver) {
    while let Some((from, ev)) = events.recv().await {
        let Some(b) = brick.upgrade() else { return };
        for out in b.graph.notify(&from, ev).await {
            if let Event::Upcall(up) = out {
                if let Some(route) = b.upcalls.route(up.client) {
                    // Its own task: a client slow to read must not hold up the others'.
                    tokio::spawn(route.send(up));
                }
            }
        }
    }
}
