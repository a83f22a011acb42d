//! What a brick keeps of each client between its connections.
//!
//! A client that sends a session id in its handshake ([`crate::resume`]) has a
//! [`ClientState`] on the brick: the client number its locks are held under
//! (`Ctx::client`) and its table of open fds. When its connection ends, a client that
//! still has open files is **parked** for the brick's `grace-timeout`: nothing is
//! released, so its locks keep excluding other clients and its open files (an unlinked
//! one included) stay open. If a connection presenting the same id comes within the grace,
//! it takes the state over (same client number, same fd numbers) and is told so in the
//! handshake reply. Otherwise, when the grace ends, the fds are released and
//! `forget_client` drops the client's locks, which grants the waiters of other clients.
//!
//! A client without an id, a client with no open files, a brick with `grace-timeout 0`
//! and a detached brick release everything at once, as before there was a grace.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::watch;
use weft_core::{Ctx, Xdata};

use super::conn::FdTable;
use super::{Brick, BrickServer};
use crate::resume::SessionId;

/// How long a connection waits for the previous connection of its client (told to close)
/// to hand its state over; beyond it the handshake is refused with EAGAIN and the client
/// tries again.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// One client's state on a brick, kept across its connections while it has a session id.
pub(super) struct ClientState {
    /// The number its locks are held under (`Ctx::client`), the same on every connection.
    pub client: u64,
    /// Its open fds, by the numbers the client knows them by.
    pub fds: Arc<FdTable>,
    /// Its session id; `None`: released when its connection ends.
    id: Option<SessionId>,
    /// The common name of its TLS certificate: a takeover must present the same one.
    cert: Option<String>,
    /// Its name (`HOST:PID:NAME`) for logs.
    name: Mutex<String>,
}

enum Slot {
    /// Connected; `kick` tells that connection to close (a newer one of the same client
    /// wants the state).
    Live {
        state: Arc<ClientState>,
        kick: watch::Sender<bool>,
    },
    /// Disconnected, kept until `until`; the timer releases it then.
    Parked {
        state: Arc<ClientState>,
        until: Instant,
        timer: Timer,
    },
}

/// The task that releases a parked client when its grace ends; aborted when dropped (the
/// client came back, or the brick is detached).
struct Timer(Option<tokio::task::JoinHandle<()>>);

impl Timer {
    /// Stops the timer.
    fn cancel(mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }

    /// Lets the timer's task run to its end (it is the one dropping the slot).
    fn disarm(mut self) {
        self.0.take();
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

/// Every client state of one brick that has a session id.
#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<SessionId, Slot>>,
}

impl Sessions {
    /// Clients kept for their grace period now.
    pub(super) fn parked(&self) -> usize {
        self.map
            .lock()
            .values()
            .filter(|s| matches!(s, Slot::Parked { .. }))
            .count()
    }

    /// One line per parked client for statedumps (nothing when none is).
    pub(super) fn dump(&self) -> String {
        let now = Instant::now();
        let map = self.map.lock();
        let mut out = String::new();
        for s in map.values() {
            if let Slot::Parked { state, until, .. } = s {
                out.push_str(&format!(
                    "parked client={} name={} open_fds={} released_in={:.1}s\n",
                    state.client,
                    state.name.lock(),
                    state.fds.open(),
                    until.saturating_duration_since(now).as_secs_f64()
                ));
            }
        }
        out
    }
}

/// What a new connection gets: its state, whether it was resumed, and the signal that
/// tells it to close when a newer connection of the same client takes over.
pub(super) struct Claimed {
    pub state: Arc<ClientState>,
    pub resumed: bool,
    pub kick: watch::Receiver<bool>,
}

/// The state for a connection that just completed its handshake: the one its client left
/// (parked, or still attached to an older connection, which is told to close first) when
/// `id` names one, otherwise a new one. Errs when an older connection does not let go
/// within [`TAKEOVER_WAIT`].
pub(super) async fn claim(
    server: &BrickServer,
    brick: &Brick,
    id: Option<SessionId>,
    cert: Option<String>,
    name: &str,
    peer: SocketAddr,
) -> Result<Claimed, String> {
    let fresh = |id: Option<SessionId>| {
        let client = server.next_client.fetch_add(1, Ordering::Relaxed);
        Arc::new(ClientState {
            client,
            fds: Arc::new(FdTable::new(
                server.counters.clone(),
                &server.limits,
                client,
                peer,
            )),
            id,
            cert: cert.clone(),
            name: Mutex::new(name.to_string()),
        })
    };
    let Some(id) = id else {
        return Ok(Claimed {
            state: fresh(None),
            resumed: false,
            kick: watch::channel(false).1,
        });
    };
    let deadline = Instant::now() + TAKEOVER_WAIT;
    loop {
        if let Some(claimed) = try_claim(brick, id, &cert, name, peer, &fresh) {
            return Ok(claimed);
        }
        // Its older connection is still up (the client gave up on it first): it was told
        // to close; wait for it to park its state.
        if Instant::now() >= deadline {
            return Err(format!(
                "the previous connection of {name} did not close within {TAKEOVER_WAIT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One look at the sessions for [`claim`]; `None` when an older connection of the client
/// still holds the state (it has been told to close).
fn try_claim(
    brick: &Brick,
    id: SessionId,
    cert: &Option<String>,
    name: &str,
    peer: SocketAddr,
    fresh: &dyn Fn(Option<SessionId>) -> Arc<ClientState>,
) -> Option<Claimed> {
    let mut map = brick.sessions.map.lock();
    let kept = match map.remove(&id) {
        None => None,
        Some(Slot::Parked { state, timer, .. }) if &state.cert == cert => {
            timer.cancel();
            Some(state)
        }
        Some(parked @ Slot::Parked { .. }) => {
            // Same id, another certificate: not the same client. It gets nothing and the
            // parked state stays for its owner.
            map.insert(id, parked);
            tracing::warn!(%peer, brick = %brick.name, "{name} presented the session id of a client with another certificate: serving it as a new client");
            return Some(Claimed {
                state: fresh(None),
                resumed: false,
                kick: watch::channel(false).1,
            });
        }
        Some(Slot::Live { state, kick }) => {
            kick.send_replace(true);
            map.insert(id, Slot::Live { state, kick });
            return None;
        }
    };
    let resumed = kept.is_some();
    let state = match kept {
        Some(state) => {
            *state.name.lock() = name.to_string();
            state.fds.set_peer(peer);
            state
        }
        None => fresh(Some(id)),
    };
    let (kick, rx) = watch::channel(false);
    map.insert(
        id,
        Slot::Live {
            state: state.clone(),
            kick,
        },
    );
    Some(Claimed {
        state,
        resumed,
        kick: rx,
    })
}

/// A connection ended: park its client's state for the brick's grace period when it can
/// come back for it (and `keep`: not when the brick's policy now refuses it), otherwise
/// release it now.
pub(super) async fn finish(brick: &Arc<Brick>, state: Arc<ClientState>, keep: bool) {
    let grace = brick.policy.borrow().grace;
    if let Some(id) = state.id {
        let state_ref = &state;
        let mut map = brick.sessions.map.lock();
        let ours =
            matches!(map.get(&id), Some(Slot::Live { state: s, .. }) if Arc::ptr_eq(s, state_ref));
        if ours {
            map.remove(&id);
            let open = state.fds.open();
            if open > 0 && keep && !grace.is_zero() && !*brick.detached.borrow() {
                let timer = tokio::spawn(expire(brick.clone(), id, state.clone(), grace));
                tracing::info!(
                    brick = %brick.name,
                    client = state.client,
                    "keeping the {open} open files and the locks of {} for {grace:?} (grace-timeout) for it to reconnect",
                    state.name.lock()
                );
                map.insert(
                    id,
                    Slot::Parked {
                        state,
                        until: Instant::now() + grace,
                        timer: Timer(Some(timer)),
                    },
                );
                return;
            }
        }
    }
    release(brick, &state).await;
}

/// The grace of a parked client ended without it coming back: release what it held.
async fn expire(brick: Arc<Brick>, id: SessionId, state: Arc<ClientState>, grace: Duration) {
    tokio::time::sleep(grace).await;
    let gone = {
        let state_ref = &state;
        let mut map = brick.sessions.map.lock();
        let ours = matches!(map.get(&id), Some(Slot::Parked { state: s, .. }) if Arc::ptr_eq(s, state_ref));
        if ours {
            // This task is the timer: disarmed, so dropping the slot does not abort it.
            if let Some(Slot::Parked { timer, .. }) = map.remove(&id) {
                timer.disarm();
            }
        }
        ours
    };
    if gone {
        tracing::info!(
            brick = %brick.name,
            client = state.client,
            "{} did not reconnect within {grace:?} (grace-timeout): releasing its {} open files and its locks",
            state.name.lock(),
            state.fds.open()
        );
        release(&brick, &state).await;
    }
}

/// Releases every parked client of `brick` now (the brick is being detached).
pub(super) async fn release_all_parked(brick: &Arc<Brick>) {
    let parked: Vec<Slot> = {
        let mut map = brick.sessions.map.lock();
        let ids: Vec<SessionId> = map
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Parked { .. }))
            .map(|(id, _)| *id)
            .collect();
        ids.iter().filter_map(|id| map.remove(id)).collect()
    };
    for slot in parked {
        if let Slot::Parked { state, .. } = slot {
            release(brick, &state).await;
        }
    }
}

/// Releases every fd a client holds (releasedir for directories), then everything else it
/// holds on the brick (`forget_client`: its locks, which grants other clients' waiters).
async fn release(brick: &Brick, state: &ClientState) {
    let client = state.client;
    let ctx = Ctx {
        client,
        ..Ctx::internal()
    };
    for fd in state.fds.drain() {
        let r = if fd.is_dir {
            brick.top().releasedir(&ctx, &fd, Xdata::default()).await
        } else {
            brick.top().release(&ctx, &fd, Xdata::default()).await
        };
        if let Err(e) = r {
            tracing::debug!(client, "release on disconnect: {e}");
        }
    }
    brick.top().forget_client(client).await;
}
