//! Replicated pool state for the management daemon (mgmtd).
//!
//! Each mgmtd keeps the pool's configuration (peers, volumes, options) as a
//! replicated state machine: an application type implementing
//! [`StateMachine`]. A change ([`Consensus::propose`]) is committed on a
//! majority of the voting members and then applied, in the same order, on
//! every member; a member that was down catches up when it returns (from the
//! leader's log, or from a snapshot of the whole state if the log it needs was
//! compacted). Two conflicting commands cannot both win: they are ordered by
//! the log, and [`StateMachine::apply`] decides deterministically (the first
//! committed wins, the second gets the state machine's error `Response`).
//!
//! # Why openraft over redb
//!
//! * [openraft](https://docs.rs/openraft) implements Raft (leader election,
//!   log replication, joint-consensus membership changes, snapshots) and leaves
//!   storage and transport to the application, which lets the daemon keep a
//!   single embedded database and a single HTTP server.
//! * [redb](https://docs.rs/redb) is the embedded, transactional, crash-safe
//!   store the daemon already uses. The raft log, the vote, the applied state
//!   and its last snapshot live in its tables prefixed `raft_`
//!   (`raft_log`, `raft_meta`, `raft_sm`). Every write is a redb transaction
//!   committed with `Durability::Immediate` (fsync'd before returning); a log
//!   append is reported to raft only after that commit.
//! * The state is small (kilobytes), so the applied state is persisted whole
//!   after every applied batch (together with the last applied log id, in one
//!   transaction), and a snapshot is the whole state serialized with
//!   serde_json. A restarted node resumes exactly where it stopped applying.
//! * Peers talk JSON over HTTP (`/raft/...`, see [`Consensus::router`]), every
//!   request carrying `Authorization: Bearer <pool secret>`.
//!
//! # How many nodes must be up
//!
//! A change needs a majority of the **voters**: 1 of 1, 2 of 2, 2 of 3, 3 of
//! 4, 3 of 5. A 3-node pool therefore survives one node down; a 2-node pool
//! survives none (prefer an odd number of voters). Learners (nodes being added)
//! do not count. If the leader dies, the remaining majority elects a new one
//! within a few seconds (election timeout 1-2 s, heartbeat 250 ms).
//!
//! # Failure behaviour
//!
//! * Without a quorum, [`Consensus::propose`], [`Consensus::add_voter`],
//!   [`Consensus::remove_node`] and [`Consensus::read_consistent`] fail after
//!   a timeout (default 5 s, [`Options::propose_timeout`]) with
//!   [`Error::NoQuorum`], whose message reads like
//!   `no quorum: 1 of 3 voting members reachable (need 2)`.
//! * [`Consensus::state`] always works: it returns the state applied on this
//!   node, which may lag the pool.
//! * A proposal that timed out *after* it was handed to the leader may still
//!   be committed later (the outcome is unknown, as always with consensus);
//!   callers should re-read the state before retrying, and commands should be
//!   written so that applying one twice is harmless or answered by an error.
//! * A peer that cannot be connected to is reported to raft as unreachable and
//!   retried with a back-off; it never stalls the others.

#![warn(missing_docs)]

mod api;
mod network;
mod store;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::{ForwardReply, MembershipOp, ProposeBody, PING_TIMEOUT};
use crate::network::{get_ok, http_client, post_json, HttpError, NetworkFactory};
use crate::store::{Applied, LogStore, SmStore};

pub use parking_lot;

/// What the application's replicated state must provide.
///
/// The value is the whole state; it is cloned for [`Consensus::state`] and
/// serialized whole (serde_json) for persistence and snapshots, so it should
/// stay small (kilobytes).
pub trait StateMachine:
    Clone + Default + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// A change to the state, as proposed and stored in the raft log.
    type Command: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What applying a command answers (including the application's own
    /// "refused" answers, e.g. a conflict).
    type Response: Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// Applies one committed command. Must be deterministic (same state +
    /// command => same result on every node). Never panics.
    fn apply(&mut self, cmd: &Self::Command) -> Self::Response;
}

/// A raft node id. Must be unique within a pool and stable across restarts.
pub type NodeId = u64;

/// The pool secret shared by all members: sent as `Authorization: Bearer
/// <secret>` on every outgoing RPC and required on every incoming one. The
/// daemon may change it at any time; an empty secret refuses all incoming RPCs.
pub type Secret = Arc<parking_lot::RwLock<String>>;

/// One member of the raft membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its node id.
    pub id: NodeId,
    /// Its base URL, "http://host:port".
    pub addr: String,
    /// Whether it votes (false: a learner, being added).
    pub voter: bool,
}

/// Errors of [`Consensus`] operations. Every variant's message says what
/// failed and why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The raft store in redb could not be opened, read or written.
    #[error("raft storage: {context}: {message}")]
    Storage {
        /// What was being done.
        context: String,
        /// The underlying error.
        message: String,
    },
    /// Not enough voting members answered within the timeout.
    #[error("no quorum: {reachable} of {voters} voting members reachable (need {needed}); {doing} gave up after {waited:?}")]
    NoQuorum {
        /// Voters (including this node) that answer.
        reachable: usize,
        /// Voters in the membership.
        voters: usize,
        /// Voters needed for a majority.
        needed: usize,
        /// What was being attempted.
        doing: String,
        /// How long it was tried.
        waited: Duration,
    },
    /// A quorum is reachable but the operation did not complete in time.
    #[error("timed out: {doing} did not complete within {waited:?}")]
    Timeout {
        /// What was being attempted.
        doing: String,
        /// How long it was tried.
        waited: Duration,
    },
    /// This node belongs to no cluster yet (see [`Consensus::initialize_single`]
    /// and [`Consensus::add_voter`]).
    #[error("node {0} is not a member of any cluster")]
    NotMember(NodeId),
    /// Talking to a peer failed.
    #[error("network error talking to node {node} at {addr}: {message}")]
    Network {
        /// The peer's id.
        node: NodeId,
        /// The peer's address.
        addr: String,
        /// What went wrong.
        message: String,
    },
    /// The leader refused or failed a forwarded request.
    #[error("leader {node} failed the request: {message}")]
    Remote {
        /// The leader's id.
        node: NodeId,
        /// The leader's error message.
        message: String,
    },
    /// Leadership changed while a command was in flight: it may or may not
    /// have been committed. Re-read the state before retrying.
    #[error(
        "leadership changed while {0}; the outcome is unknown, re-read the state before retrying"
    )]
    LeaderChanged(String),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
    /// Internal: this node is not the leader (used between nodes).
    #[error("this node is not the leader")]
    NotLeader,
    /// The raft node is stopped (after [`Consensus::shutdown`], or fatally failed).
    #[error("raft node {0} is shut down")]
    Shutdown(NodeId),
    /// Any other raft failure.
    #[error("raft: {0}")]
    Raft(String),
}

impl Error {
    fn storage(context: &str, e: impl std::fmt::Display) -> Self {
        Error::Storage {
            context: context.to_string(),
            message: e.to_string(),
        }
    }
}

/// Tunables of a [`Consensus`] node. [`Default`] gives the production values.
#[derive(Debug, Clone)]
pub struct Options {
    /// Leader heartbeat interval (default 250 ms).
    pub heartbeat: Duration,
    /// Election timeout lower bound (default 1 s).
    pub election_timeout_min: Duration,
    /// Election timeout upper bound (default 2 s).
    pub election_timeout_max: Duration,
    /// Build a snapshot (and compact the log) after this many applied entries
    /// since the last one (default 1000).
    pub snapshot_every: u64,
    /// Entries kept in the log behind the snapshot, for lagging followers
    /// (default 100; 0 forces lagging followers onto install-snapshot).
    pub keep_logs_after_snapshot: u64,
    /// How long a proposal, membership step or consistent read may wait for a
    /// leader and a quorum before failing (default 5 s).
    pub propose_timeout: Duration,
    /// How long a membership change (adding a learner, promoting it, removing a node) may
    /// take: two log entries committed in turn, so longer than a proposal on a loaded
    /// machine.
    pub membership_timeout: Duration,
    /// How long [`Consensus::add_voter`] waits for the new node to catch up
    /// before giving up (default 20 s).
    pub catch_up_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(250),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            snapshot_every: 1000,
            keep_logs_after_snapshot: 100,
            propose_timeout: Duration::from_secs(5),
            membership_timeout: Duration::from_secs(20),
            catch_up_timeout: Duration::from_secs(20),
        }
    }
}

/// openraft's type configuration for a state machine `S`.
pub(crate) struct TypeConfig<S>(PhantomData<fn() -> S>);

impl<S> Debug for TypeConfig<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TypeConfig")
    }
}
impl<S> Clone for TypeConfig<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for TypeConfig<S> {}
impl<S> Default for TypeConfig<S> {
    fn default() -> Self {
        TypeConfig(PhantomData)
    }
}
impl<S> PartialEq for TypeConfig<S> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<S> Eq for TypeConfig<S> {}
impl<S> PartialOrd for TypeConfig<S> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<S> Ord for TypeConfig<S> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<S: StateMachine> openraft::RaftTypeConfig for TypeConfig<S> {
    type D = S::Command;
    type R = Option<S::Response>;
    type NodeId = NodeId;
    type Node = BasicNode;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = std::io::Cursor<Vec<u8>>;
    type AsyncRuntime = openraft::TokioRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

type R<S> = Raft<TypeConfig<S>>;

/// Shared internals of a [`Consensus`] handle and its router.
pub(crate) struct Inner<S: StateMachine> {
    pub(crate) id: NodeId,
    addr: String,
    db: Arc<redb::Database>,
    pub(crate) secret: Secret,
    http: reqwest::Client,
    opts: Options,
    raft: parking_lot::RwLock<R<S>>,
    /// Set on the current stores when `reset` retires them.
    retired: parking_lot::Mutex<Arc<AtomicBool>>,
    applied: Arc<parking_lot::RwLock<Applied<S>>>,
    notify: Arc<watch::Sender<u64>>,
    stopped: AtomicBool,
    /// Serializes `reset` and `shutdown`.
    lifecycle: tokio::sync::Mutex<()>,
}

/// A raft node replicating a [`StateMachine`]. Cheap to clone (an `Arc`
/// inside); all clones drive the same node.
pub struct Consensus<S: StateMachine> {
    inner: Arc<Inner<S>>,
}

impl<S: StateMachine> Clone for Consensus<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

fn raft_config(opts: &Options) -> Result<openraft::Config, Error> {
    let config = openraft::Config {
        cluster_name: "weft-mgmt".to_string(),
        heartbeat_interval: opts.heartbeat.as_millis() as u64,
        election_timeout_min: opts.election_timeout_min.as_millis() as u64,
        election_timeout_max: opts.election_timeout_max.as_millis() as u64,
        install_snapshot_timeout: 10_000,
        // A chunk travels as a JSON array of numbers (up to 4x its size).
        snapshot_max_chunk_size: 256 * 1024,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(opts.snapshot_every.max(1)),
        max_in_snapshot_log_to_keep: opts.keep_logs_after_snapshot,
        ..Default::default()
    };
    config
        .validate()
        .map_err(|e| Error::Raft(format!("invalid raft configuration: {e}")))
}

async fn spawn_blocking<T: Send + 'static>(
    context: &'static str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::storage(context, e))?
        .map_err(|e| Error::storage(context, e))
}

impl<S: StateMachine> Inner<S> {
    fn raft(&self) -> R<S> {
        self.raft.read().clone()
    }

    /// The raft node, unless this node is shut down.
    pub(crate) fn live_raft(&self) -> Option<R<S>> {
        if self.stopped.load(Ordering::SeqCst) {
            None
        } else {
            Some(self.raft())
        }
    }

    fn running(&self) -> Result<R<S>, Error> {
        self.live_raft().ok_or(Error::Shutdown(self.id))
    }

    fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft().metrics().borrow().clone()
    }

    /// Starts a raft node on the current tables.
    async fn start_raft(
        id: NodeId,
        db: Arc<redb::Database>,
        secret: Secret,
        http: reqwest::Client,
        opts: &Options,
        applied: Arc<parking_lot::RwLock<Applied<S>>>,
        notify: Arc<watch::Sender<u64>>,
    ) -> Result<(R<S>, Arc<AtomicBool>), Error> {
        let retired = Arc::new(AtomicBool::new(false));
        let log = LogStore::<S>::new(db.clone(), retired.clone());
        let sm = SmStore::new(db, retired.clone(), applied, notify);
        let net = NetworkFactory {
            id,
            client: http,
            secret,
            snapshot_timeout: Duration::from_secs(30),
        };
        let raft = Raft::new(id, Arc::new(raft_config(opts)?), net, log, sm)
            .await
            .map_err(|e| Error::Raft(format!("cannot start raft node {id}: {e}")))?;
        Ok((raft, retired))
    }

    fn addr_of(&self, m: &RaftMetrics<NodeId, BasicNode>, id: NodeId) -> Option<String> {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        self.metrics()
            .membership_config
            .membership()
            .voter_ids()
            .collect()
    }

    /// Builds the error for an operation that could not complete in time:
    /// [`Error::NoQuorum`] if too few voters answer a ping now, else
    /// [`Error::Timeout`].
    async fn stalled(&self, doing: &str, waited: Duration) -> Error {
        let m = self.metrics();
        let membership = m.membership_config.membership().clone();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters.is_empty() {
            return Error::NotMember(self.id);
        }
        let mut probes = tokio::task::JoinSet::new();
        let mut reachable = 0;
        for v in &voters {
            if *v == self.id {
                reachable += 1;
                continue;
            }
            let Some(node) = membership.get_node(v) else {
                continue;
            };
            let (client, secret, addr) =
                (self.http.clone(), self.secret.clone(), node.addr.clone());
            probes.spawn(async move {
                get_ok(&client, &secret, &addr, "/raft/ping", PING_TIMEOUT)
                    .await
                    .is_ok()
            });
        }
        while let Some(r) = probes.join_next().await {
            if matches!(r, Ok(true)) {
                reachable += 1;
            }
        }
        let needed = voters.len() / 2 + 1;
        if reachable < needed {
            Error::NoQuorum {
                reachable,
                voters: voters.len(),
                needed,
                doing: doing.to_string(),
                waited,
            }
        } else {
            let leader = match m.current_leader {
                Some(l) => format!("leader is node {l}"),
                None => "no leader elected yet".to_string(),
            };
            Error::Timeout {
                doing: format!(
                    "{doing} ({reachable} of {} voters reachable, {leader})",
                    voters.len()
                ),
                waited,
            }
        }
    }

    /// Waits until this node has applied `index` (or the deadline passes).
    async fn wait_applied(&self, index: u64, deadline: Instant, doing: &str) -> Result<(), Error> {
        let mut rx = self.notify.subscribe();
        let start = Instant::now();
        let res = tokio::time::timeout_at(deadline, rx.wait_for(|v| *v >= index))
            .await
            .map(|r| r.map(|_| ()));
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Error::Shutdown(self.id)),
            Err(_) => Err(Error::Timeout {
                doing: format!("{doing}: applying log index {index} on node {}", self.id),
                waited: start.elapsed(),
            }),
        }
    }

    /// Waits (until `deadline`) for a leader to be known; `Ok(None)` on timeout.
    async fn wait_leader(&self, deadline: Instant) -> Result<Option<NodeId>, Error> {
        let mut rx = self.running()?.metrics();
        let res =
            tokio::time::timeout_at(deadline, rx.wait_for(|m| m.current_leader.is_some())).await;
        Ok(match res {
            Ok(Ok(m)) => m.current_leader,
            _ => None,
        })
    }

    fn is_member(&self, m: &RaftMetrics<NodeId, BasicNode>) -> bool {
        m.membership_config
            .membership()
            .get_node(&self.id)
            .is_some()
    }

    /// Runs `op` on the leader: locally if this node leads, else by posting
    /// `body` to the leader's `path`. Retries while the leader is unknown,
    /// moving, or cannot be connected to, until the deadline.
    async fn on_leader<T, B, Fut>(
        &self,
        doing: &str,
        path: &str,
        body: &B,
        timeout: Duration,
        local: impl Fn() -> Fut,
    ) -> Result<(u64, T), Error>
    where
        T: DeserializeOwned,
        B: Serialize + ?Sized,
        Fut: std::future::Future<Output = Result<(u64, T), Error>>,
    {
        let start = Instant::now();
        let deadline = start + timeout;
        loop {
            self.running()?;
            let m = self.metrics();
            if !self.is_member(&m) {
                return Err(Error::NotMember(self.id));
            }
            match m.current_leader {
                Some(l) if l == self.id => match local().await {
                    Err(Error::NotLeader) => {}
                    other => return other,
                },
                Some(l) => {
                    let Some(addr) = self.addr_of(&m, l) else {
                        return Err(Error::Raft(format!(
                            "leader {l} has no address in the membership"
                        )));
                    };
                    // The leader enforces its own timeout; allow it to answer.
                    let t =
                        deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
                    let r: Result<ForwardReply<T>, HttpError> =
                        post_json(&self.http, &self.secret, &addr, path, body, t).await;
                    match r {
                        Ok(ForwardReply::Ok { index, value }) => return Ok((index, value)),
                        Ok(ForwardReply::NotLeader) => {}
                        Ok(ForwardReply::Failed { message }) => {
                            return Err(Error::Remote { node: l, message })
                        }
                        // Not delivered: safe to try again (leader may be down).
                        Err(HttpError::Connect(_) | HttpError::Unavailable) => {}
                        Err(e) => {
                            return Err(Error::Network {
                                node: l,
                                addr,
                                message: format!("{doing}: {e}"),
                            })
                        }
                    }
                }
                None => {}
            }
            if Instant::now() >= deadline {
                return Err(self.stalled(doing, start.elapsed()).await);
            }
            // Wait for a (new) leader, or a little, then try again.
            let short = (Instant::now() + Duration::from_millis(100)).min(deadline);
            if m.current_leader.is_none() {
                self.wait_leader(deadline).await?;
            } else {
                tokio::time::sleep_until(short).await;
            }
        }
    }

    /// Leader side of a proposal: commits and applies `cmd` here.
    pub(crate) async fn leader_propose(
        &self,
        cmd: S::Command,
    ) -> Result<(u64, S::Response), Error> {
        let raft = self.running()?;
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(Error::NotLeader);
        }
        let start = Instant::now();
        match tokio::time::timeout(self.opts.propose_timeout, raft.client_write(cmd)).await {
            Err(_) => Err(self
                .stalled("committing the proposal", start.elapsed())
                .await),
            Ok(Ok(resp)) => match resp.data {
                Some(r) => Ok((resp.log_id.index, r)),
                None => Err(Error::Raft("applied command returned no response".into())),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(Error::LeaderChanged("committing the proposal".into()))
            }
            Ok(Err(e)) => Err(self.raft_err(e)),
        }
    }

    fn raft_err<E: std::fmt::Display>(&self, e: RaftError<NodeId, E>) -> Error {
        match e {
            RaftError::Fatal(openraft::error::Fatal::Stopped) => Error::Shutdown(self.id),
            e => Error::Raft(e.to_string()),
        }
    }

    /// Leader side of `add_voter`. Returns the log index of the final membership.
    pub(crate) async fn leader_add_voter(&self, id: NodeId, addr: String) -> Result<u64, Error> {
        let raft = self.running()?;
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(Error::NotLeader);
        }
        let membership = m.membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == id) {
            let cur = membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default();
            if cur == addr {
                return Ok(m.last_applied.map(|l| l.index).unwrap_or(0));
            }
            return Err(Error::Membership(format!(
                "node {id} is already a voter at {cur}; remove it before adding it at {addr}"
            )));
        }
        let t = self.opts.membership_timeout;
        let start = Instant::now();
        let doing = format!("adding node {id} ({addr}) as a learner");
        let resp = match tokio::time::timeout(
            t,
            raft.add_learner(id, BasicNode::new(addr.clone()), false),
        )
        .await
        {
            Err(_) => return Err(self.stalled(&doing, start.elapsed()).await),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                return Err(Error::NotLeader)
            }
            Ok(Err(e)) => return Err(Error::Membership(format!("{doing}: {e}"))),
            Ok(Ok(r)) => r,
        };
        // Wait for the learner to hold the log up to the membership entry.
        let target = resp.log_id.index;
        let caught_up = raft
            .wait(Some(self.opts.catch_up_timeout))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id))
                        .and_then(|l| *l)
                        .is_some_and(|l| l.index >= target)
                },
                "learner catch-up",
            )
            .await;
        if caught_up.is_err() {
            // Do not leave a learner that never came up in the membership.
            let _ = tokio::time::timeout(
                t,
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
            )
            .await;
            return Err(Error::Membership(format!(
                "node {id} at {addr} did not catch up within {:?} (is it running, reachable, and does it have the pool secret?); it was not added",
                self.opts.catch_up_timeout
            )));
        }
        let doing = format!("promoting node {id} to voter");
        let start = Instant::now();
        match tokio::time::timeout(
            t,
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await
        {
            Err(_) => Err(self.stalled(&doing, start.elapsed()).await),
            Ok(Ok(r)) => Ok(r.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(Error::LeaderChanged(doing))
            }
            Ok(Err(e)) => Err(Error::Membership(format!("{doing}: {e}"))),
        }
    }

    /// Leader side of `remove_node`. Returns the log index of the final membership.
    pub(crate) async fn leader_remove(&self, id: NodeId) -> Result<u64, Error> {
        let raft = self.running()?;
        let m = self.metrics();
        if m.current_leader != Some(self.id) {
            return Err(Error::NotLeader);
        }
        let membership = m.membership_config.membership().clone();
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else if membership.learner_ids().any(|v| v == id) {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        } else {
            return Ok(m.last_applied.map(|l| l.index).unwrap_or(0));
        };
        let doing = format!("removing node {id}");
        let start = Instant::now();
        match tokio::time::timeout(
            self.opts.membership_timeout,
            raft.change_membership(change, false),
        )
        .await
        {
            Err(_) => Err(self.stalled(&doing, start.elapsed()).await),
            Ok(Ok(r)) => Ok(r.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(Error::LeaderChanged(doing))
            }
            Ok(Err(e)) => Err(Error::Membership(format!("{doing}: {e}"))),
        }
    }

    /// Leader side of a consistent read: confirms leadership with a quorum and
    /// returns the log index a reader must have applied.
    pub(crate) async fn leader_read_index(&self) -> Result<u64, Error> {
        let raft = self.running()?;
        if self.metrics().current_leader != Some(self.id) {
            return Err(Error::NotLeader);
        }
        let start = Instant::now();
        match tokio::time::timeout(self.opts.propose_timeout, raft.get_read_log_id()).await {
            Err(_) => Err(self
                .stalled("confirming leadership for a read", start.elapsed())
                .await),
            Ok(Ok((read, _applied))) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Ok(Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(
                _,
            )))) => Err(Error::NotLeader),
            Ok(Err(e)) => Err(self.raft_err(e)),
        }
    }
}

impl<S: StateMachine> Consensus<S> {
    /// Opens (or creates) the raft log, vote and state-machine snapshot in
    /// tables of `db` (all named `raft_*`), and starts the raft node `id`
    /// whose peers reach it at `addr` (an "http://host:port" base URL; the
    /// daemon must serve [`Consensus::router`] there). `secret` is the pool
    /// secret (see [`Secret`]). If the store holds no membership yet, the node
    /// is not a member of any cluster until [`Consensus::initialize_single`]
    /// or until a leader adds it. Uses [`Options::default`].
    pub async fn open(
        db: Arc<redb::Database>,
        id: NodeId,
        addr: String,
        secret: Secret,
    ) -> Result<Self, Error> {
        Self::open_with(db, id, addr, secret, Options::default()).await
    }

    /// Like [`Consensus::open`], with explicit [`Options`].
    pub async fn open_with(
        db: Arc<redb::Database>,
        id: NodeId,
        addr: String,
        secret: Secret,
        opts: Options,
    ) -> Result<Self, Error> {
        let db2 = db.clone();
        let loaded = spawn_blocking("opening the raft tables", move || {
            store::create_tables(&db2).map_err(|e| e.to_string())?;
            store::load_applied::<S>(&db2).map_err(|e| e.to_string())
        })
        .await?;
        let index = loaded.last_applied.map(|l| l.index).unwrap_or(0);
        let applied = Arc::new(parking_lot::RwLock::new(loaded));
        let (tx, _rx) = watch::channel(index);
        let notify = Arc::new(tx);
        let http = http_client();
        let (raft, retired) = Inner::start_raft(
            id,
            db.clone(),
            secret.clone(),
            http.clone(),
            &opts,
            applied.clone(),
            notify.clone(),
        )
        .await?;
        Ok(Self {
            inner: Arc::new(Inner {
                id,
                addr,
                db,
                secret,
                http,
                opts,
                raft: parking_lot::RwLock::new(raft),
                retired: parking_lot::Mutex::new(retired),
                applied,
                notify,
                stopped: AtomicBool::new(false),
                lifecycle: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// An axum Router with the raft RPC endpoints, all under "/raft/":
    /// `append-entries`, `vote`, `install-snapshot`, `forward-propose`,
    /// `forward-membership`, `read-index` (POST) and `ping` (GET). Every
    /// request must carry `Authorization: Bearer <pool secret>`, else it gets
    /// 401. A stopped node answers 503. The daemon merges it into its own
    /// HTTP server.
    pub fn router(&self) -> axum::Router {
        api::router(self.inner.clone())
    }

    /// Makes this node a one-node cluster if it belongs to none, and waits
    /// (at most [`Options::propose_timeout`]) until it leads it. Idempotent: if
    /// the node already has a membership or a vote (it was initialized before,
    /// or a leader added it), returns Ok at once without waiting for a leader.
    pub async fn initialize_single(&self) -> Result<(), Error> {
        let raft = self.inner.running()?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| self.inner.raft_err(RaftError::<NodeId>::Fatal(e)))?;
        if initialized {
            return Ok(());
        }
        let members = std::collections::BTreeMap::from([(
            self.inner.id,
            BasicNode::new(self.inner.addr.clone()),
        )]);
        match raft.initialize(members).await {
            Ok(()) => {}
            // Lost a race with a leader adding this node, or a second call.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => return Ok(()),
            Err(e) => return Err(Error::Raft(format!("initializing a one-node cluster: {e}"))),
        }
        let deadline = Instant::now() + self.inner.opts.propose_timeout;
        if self.inner.wait_leader(deadline).await?.is_none() {
            return Err(self
                .inner
                .stalled("electing a leader", self.inner.opts.propose_timeout)
                .await);
        }
        Ok(())
    }

    /// Proposes a command and returns the state machine's Response once the
    /// command is committed on a majority and applied on this node (so that
    /// [`Consensus::state`] on this node right after sees it). On a follower,
    /// forwards to the leader over HTTP. Fails with [`Error::NoQuorum`] if no
    /// leader/quorum within [`Options::propose_timeout`], [`Error::NotMember`],
    /// [`Error::Network`], [`Error::Remote`] or [`Error::LeaderChanged`].
    pub async fn propose(&self, cmd: S::Command) -> Result<S::Response, Error> {
        let inner = &self.inner;
        let timeout = inner.opts.propose_timeout;
        let start = Instant::now();
        let body = ProposeBody::<S> { cmd: cmd.clone() };
        let (index, resp) = inner
            .on_leader(
                "committing the proposal",
                "/raft/forward-propose",
                &body,
                timeout,
                || inner.leader_propose(cmd.clone()),
            )
            .await?;
        inner
            .wait_applied(index, start + timeout + Duration::from_secs(2), "proposal")
            .await?;
        Ok(resp)
    }

    /// Adds node `id`, reachable at `addr`, as a voter: adds it as a learner,
    /// waits for it to catch up (at most [`Options::catch_up_timeout`]; on
    /// failure the learner is removed again), then changes the membership.
    /// Idempotent if it is already a voter at `addr`. Callable on any member
    /// (forwards to the leader). The new node must be running with the pool
    /// secret and belong to no other cluster (see [`Consensus::reset`]).
    pub async fn add_voter(&self, id: NodeId, addr: String) -> Result<(), Error> {
        let inner = &self.inner;
        let timeout = inner.opts.propose_timeout * 2 + inner.opts.catch_up_timeout;
        let start = Instant::now();
        let op = MembershipOp::AddVoter {
            id,
            addr: addr.clone(),
        };
        let (index, ()) = inner
            .on_leader(
                "adding a voter",
                "/raft/forward-membership",
                &op,
                timeout,
                || async {
                    inner
                        .leader_add_voter(id, addr.clone())
                        .await
                        .map(|i| (i, ()))
                },
            )
            .await?;
        inner
            .wait_applied(
                index,
                start + timeout + Duration::from_secs(2),
                "membership change",
            )
            .await
    }

    /// Removes node `id` from the membership (voter or learner; idempotent if
    /// it is not a member). Callable on any member (forwards to the leader).
    /// The removed node keeps running but no longer receives changes;
    /// [`Consensus::reset`] it to reuse it.
    pub async fn remove_node(&self, id: NodeId) -> Result<(), Error> {
        let inner = &self.inner;
        let timeout = inner.opts.propose_timeout;
        let start = Instant::now();
        let op = MembershipOp::Remove { id };
        let (index, ()) = inner
            .on_leader(
                "removing a node",
                "/raft/forward-membership",
                &op,
                timeout,
                || async { inner.leader_remove(id).await.map(|i| (i, ())) },
            )
            .await?;
        if id == inner.id {
            // This node is out: it will not apply the change that removed it.
            return Ok(());
        }
        inner
            .wait_applied(
                index,
                start + timeout + Duration::from_secs(2),
                "membership change",
            )
            .await
    }

    /// Wipes this node's raft log, vote, membership, state and snapshot (used
    /// when a fresh node is about to be added to another pool, or after it is
    /// detached) and restarts it as a member of no cluster. Afterwards
    /// [`Consensus::state`] is `S::default()`. Also restarts a node that was
    /// [`Consensus::shutdown`].
    pub async fn reset(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let _guard = inner.lifecycle.lock().await;
        let old = inner.raft();
        inner.stopped.store(true, Ordering::SeqCst);
        let _ = old.shutdown().await;
        inner.retired.lock().store(true, Ordering::SeqCst);
        let db = inner.db.clone();
        spawn_blocking("wiping the raft tables", move || {
            store::wipe_tables(&db).map_err(|e| e.to_string())?;
            store::create_tables(&db).map_err(|e| e.to_string())
        })
        .await?;
        *inner.applied.write() = Applied::default();
        inner.notify.send_replace(0);
        let (raft, retired) = Inner::start_raft(
            inner.id,
            inner.db.clone(),
            inner.secret.clone(),
            inner.http.clone(),
            &inner.opts,
            inner.applied.clone(),
            inner.notify.clone(),
        )
        .await?;
        *inner.raft.write() = raft;
        *inner.retired.lock() = retired;
        inner.stopped.store(false, Ordering::SeqCst);
        tracing::info!(
            node = inner.id,
            "raft state reset; node belongs to no cluster"
        );
        Ok(())
    }

    /// The state as applied on this node now (may lag the leader). Always
    /// available, even without a quorum or after shutdown.
    pub fn state(&self) -> S {
        self.inner.applied.read().state.clone()
    }

    /// The state after this node has applied everything the leader had
    /// committed when the read started (linearizable read: the leader confirms
    /// its leadership with a quorum; a follower asks the leader for that
    /// index). Fails like [`Consensus::propose`] without a quorum.
    pub async fn read_consistent(&self) -> Result<S, Error> {
        let inner = &self.inner;
        let timeout = inner.opts.propose_timeout;
        let start = Instant::now();
        let (index, ()) = inner
            .on_leader(
                "a consistent read",
                "/raft/read-index",
                &(),
                timeout,
                || async { inner.leader_read_index().await.map(|i| (i, ())) },
            )
            .await?;
        inner
            .wait_applied(
                index,
                start + timeout + Duration::from_secs(2),
                "consistent read",
            )
            .await?;
        Ok(self.state())
    }

    /// A watch of the last applied log index on this node: it changes every
    /// time a batch of log entries (commands, membership changes) or a
    /// snapshot is applied, and drops to 0 on [`Consensus::reset`].
    /// Reconcilers wait on it and then read [`Consensus::state`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.notify.subscribe()
    }

    /// The members of the cluster as this node knows them (voters and
    /// learners, ordered by id). Empty if it belongs to no cluster.
    pub fn members(&self) -> Vec<Member> {
        let m = self.inner.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| Member {
                id: *id,
                addr: n.addr.clone(),
                voter: voters.contains(id),
            })
            .collect()
    }

    /// The current leader's id, if this node knows one.
    pub fn leader(&self) -> Option<NodeId> {
        self.inner.metrics().current_leader
    }

    /// Whether this node is the leader right now (as far as it knows).
    pub fn is_leader(&self) -> bool {
        let m = self.inner.metrics();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.id)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// This node's advertised address.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Stops the raft node (for shutdown). Afterwards operations fail with
    /// [`Error::Shutdown`], the router answers 503, and [`Consensus::state`]
    /// still returns the last applied state. Idempotent.
    pub async fn shutdown(&self) {
        let _guard = self.inner.lifecycle.lock().await;
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.inner.raft().shutdown().await {
            tracing::warn!(node = self.inner.id, "raft shutdown: {e}");
        }
    }

    /// Voter ids as this node knows them (for diagnostics and tests).
    #[doc(hidden)]
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        self.inner.voters()
    }

    /// Log index covered by this node's last snapshot (diagnostics and tests).
    #[doc(hidden)]
    pub fn snapshot_index(&self) -> Option<u64> {
        self.inner.metrics().snapshot.map(|l| l.index)
    }

    /// Log index up to which this node has purged its log (diagnostics and tests).
    #[doc(hidden)]
    pub fn purged_index(&self) -> Option<u64> {
        self.inner.metrics().purged.map(|l| l.index)
    }

    /// Last log index applied on this node (diagnostics and tests).
    #[doc(hidden)]
    pub fn applied_index(&self) -> u64 {
        *self.inner.notify.borrow()
    }
}
