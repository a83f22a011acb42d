//! One mgmtd: its identity, the replicated pool state, its brick process, and every
//! operation the API offers. Operations check what they can before proposing a change
//! (bricks on their nodes, peers up, option values), then propose one command; the
//! command commits on a majority of the pool or not at all, and each node's reconciler
//! makes its bricks match the new state.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use weft_consensus::Consensus;
use weft_core::Registry;

use crate::brick_check;
use crate::brickproc::BrickProc;
use crate::client::PeerClient;
use crate::model::{self, Brick, Command, Layout, Peer, PoolState, Volume, VolumeStatus};
use crate::optable::{self, Side};
use crate::store::LocalStore;
use crate::types::*;
use crate::volgen;

mod heal_ops;
mod replace_brick;

/// An operation's failure: an HTTP status and a message for a person.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    /// 400 bad input, 401 no token, 404 unknown, 409 conflict, 503 peers unreachable.
    pub status: u16,
    /// What went wrong.
    pub message: String,
}

impl OpError {
    /// A 400.
    pub fn bad(m: impl Into<String>) -> OpError {
        OpError {
            status: 400,
            message: m.into(),
        }
    }
    /// A 404.
    pub fn not_found(m: impl Into<String>) -> OpError {
        OpError {
            status: 404,
            message: m.into(),
        }
    }
    /// A 409.
    pub fn conflict(m: impl Into<String>) -> OpError {
        OpError {
            status: 409,
            message: m.into(),
        }
    }
    /// A 503.
    pub fn unavailable(m: impl Into<String>) -> OpError {
        OpError {
            status: 503,
            message: m.into(),
        }
    }
}

/// A shorthand for operation results.
pub type OpResult<T> = Result<T, OpError>;

impl weft_consensus::StateMachine for PoolState {
    type Command = Command;
    type Response = model::Outcome;
    fn apply(&mut self, cmd: &Command) -> model::Outcome {
        PoolState::apply(self, cmd)
    }
}

/// Who this node is and where it listens.
#[derive(Clone, Debug)]
pub struct Identity {
    /// Permanent uuid.
    pub uuid: String,
    /// Consensus node id.
    pub id: u64,
    /// The host name peers and clients reach it by.
    pub host: String,
    /// mgmtd port.
    pub port: u16,
    /// Brick process port.
    pub brick_port: u16,
    /// Highest op-version this build supports.
    pub max_op_version: u32,
}

/// A running mgmtd's shared state.
pub struct Node {
    /// Who it is.
    pub me: Identity,
    /// Its workdir.
    pub workdir: PathBuf,
    /// The local store.
    pub store: LocalStore,
    /// The pool's replicated state.
    pub consensus: Consensus<PoolState>,
    /// The pool token (admin bearer token and peer secret).
    pub token: weft_consensus::Secret,
    /// The brick process.
    pub bricks: BrickProc,
    /// Translator types, for option checks.
    pub registry: Arc<Registry>,
    /// HTTP to peers.
    pub peers: PeerClient,
    /// Background tasks.
    pub tasks: crate::tasks::Tasks,
    /// The mounts following volumes through this mgmtd.
    pub mounts: crate::mounts::Mounts,
}

fn consensus_err(e: weft_consensus::Error) -> OpError {
    use weft_consensus::Error as E;
    match e {
        E::NoQuorum { .. }
        | E::Timeout { .. }
        | E::Network { .. }
        | E::NotMember(_)
        | E::Shutdown(_) => OpError::unavailable(e.to_string()),
        E::Raft(m) if m.contains("quorum") => OpError::unavailable(format!(
            "no quorum: a majority of the pool's nodes must answer for this (see `weft peer status`): {m}"
        )),
        other => OpError {
            status: 500,
            message: other.to_string(),
        },
    }
}

/// Checks a volume name: letters, digits, `-`, `_`; 1 to 64; not starting with `-`.
pub fn check_volume_name(name: &str) -> OpResult<()> {
    if name.is_empty()
        || name.len() > 64
        || name.starts_with('-')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(OpError::bad(format!(
            "{name:?} is not a valid volume name (letters, digits, - and _, at most 64, not starting with -)"
        )));
    }
    Ok(())
}

/// Splits `HOST[:PORT]` (no IPv6), the port defaulting to `default`.
pub fn split_host_port(s: &str, default: u16) -> OpResult<(String, u16)> {
    match s.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => {
            let port = p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| OpError::bad(format!("{s}: {p:?} is not a port")))?;
            Ok((h.to_string(), port))
        }
        Some(_) => Err(OpError::bad(format!("{s:?} is not HOST[:PORT]"))),
        None if s.is_empty() => Err(OpError::bad("an empty host name")),
        None => Ok((s.to_string(), default)),
    }
}

impl Node {
    /// The pool token now (never hold the lock across an await).
    pub fn token(&self) -> String {
        self.token.read().clone()
    }

    /// The state as this node has applied it.
    pub fn state(&self) -> PoolState {
        self.consensus.state()
    }

    /// Proposes `cmd`; a refusal by the state machine is a 409 with its reason.
    pub async fn propose(&self, cmd: Command) -> OpResult<String> {
        match self.consensus.propose(cmd).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(reason)) => {
                let status = if reason.contains("does not exist") {
                    404
                } else {
                    409
                };
                Err(OpError {
                    status,
                    message: reason,
                })
            }
            Err(e) => Err(consensus_err(e)),
        }
    }

    /// The peer record of this node.
    pub fn self_peer(&self) -> Peer {
        Peer {
            id: self.me.id,
            uuid: self.me.uuid.clone(),
            host: self.me.host.clone(),
            mgmt_port: self.me.port,
            brick_port: self.me.brick_port,
            max_op_version: self.me.max_op_version,
        }
    }

    /// `/internal/info`.
    pub fn info(&self) -> NodeInfo {
        let s = self.state();
        NodeInfo {
            uuid: self.me.uuid.clone(),
            id: self.me.id,
            port: self.me.port,
            brick_port: self.me.brick_port,
            min_op_version: model::MIN_OP_VERSION,
            max_op_version: self.me.max_op_version,
            peers: s.peers.len(),
            volumes: s.volumes.len(),
        }
    }

    fn peer_base(p: &Peer) -> String {
        format!("http://{}:{}", p.host, p.mgmt_port)
    }

    /// Which peers answer now (this node always does).
    pub async fn reachable(&self, state: &PoolState) -> BTreeSet<u64> {
        let mut up = BTreeSet::new();
        let checks = state
            .peers
            .values()
            .filter(|p| p.id != self.me.id)
            .map(|p| {
                let base = Self::peer_base(p);
                let id = p.id;
                async move { (id, self.peers.info(&base).await.is_ok()) }
            });
        for (id, ok) in futures_join(checks).await {
            if ok {
                up.insert(id);
            }
        }
        up.insert(self.me.id);
        up
    }

    // ---- peers -------------------------------------------------------------------

    /// `peer probe HOST[:PORT]`.
    pub async fn probe(&self, target: &str) -> OpResult<String> {
        let (host, port) = split_host_port(target.trim(), weft_core::MGMT_PORT)?;
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        if (host == self.me.host || host == "localhost") && port == self.me.port {
            return Ok("peer probe: success: on localhost not needed".into());
        }
        if let Some(p) = state.peer_by_host(&host) {
            if p.mgmt_port == port {
                return Ok(format!(
                    "peer probe: success: host {host} port {port} already in peer list"
                ));
            }
        }
        let base = format!("http://{host}:{port}");
        let info = self.peers.info(&base).await.map_err(|e| {
            OpError::unavailable(format!(
                "peer probe: failed: {host}:{port} does not answer: {e}"
            ))
        })?;
        let pool_ov = state.op_version.max(1);
        if pool_ov < info.min_op_version || pool_ov > info.max_op_version {
            return Err(OpError::conflict(format!(
                "peer probe: failed: {host} supports op-versions {} to {}, but the pool runs at op-version {pool_ov}",
                info.min_op_version, info.max_op_version
            )));
        }
        if state.peers.contains_key(&info.id) {
            return Err(OpError::conflict(format!(
                "peer probe: failed: {host} is already in the pool under another name"
            )));
        }
        if info.peers > 1 || info.volumes > 0 {
            return Err(OpError::conflict(format!(
                "peer probe: failed: {host} is already part of another pool ({} peers, {} volumes); detach it there first",
                info.peers, info.volumes
            )));
        }
        self.peers
            .join(
                &base,
                &JoinRequest {
                    token: self.token(),
                    op_version: pool_ov,
                },
            )
            .await
            .map_err(|e| {
                OpError::conflict(format!("peer probe: failed: {host} refused to join: {e}"))
            })?;
        self.consensus
            .add_voter(info.id, base.clone())
            .await
            .map_err(|e| {
                OpError::unavailable(format!(
                    "peer probe: failed: adding {host} to the pool: {e}"
                ))
            })?;
        self.propose(Command::AddPeer(Peer {
            id: info.id,
            uuid: info.uuid,
            host: host.clone(),
            mgmt_port: port,
            brick_port: info.brick_port,
            max_op_version: info.max_op_version,
        }))
        .await?;
        Ok("peer probe: success".into())
    }

    /// `peer detach HOST [force]`.
    pub async fn detach(&self, target: &str, force: bool) -> OpResult<String> {
        let (host, _) = split_host_port(target.trim(), weft_core::MGMT_PORT)?;
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let Some(p) = state.peer_by_host(&host).cloned() else {
            return Err(OpError::not_found(format!(
                "peer detach: failed: {host} is not part of the pool"
            )));
        };
        if p.id == self.me.id {
            return Err(OpError::bad(
                "peer detach: failed: a node cannot detach itself; run the detach on another node",
            ));
        }
        let base = Self::peer_base(&p);
        let up = self.peers.info(&base).await.is_ok();
        if !up && !force {
            return Err(OpError::unavailable(format!(
                "peer detach: failed: {host} is not connected; use force to detach it anyway"
            )));
        }
        self.propose(Command::RemovePeer { id: p.id }).await?;
        self.consensus
            .remove_node(p.id)
            .await
            .map_err(consensus_err)?;
        if up {
            if let Err(e) = self.peers.leave(&base, &self.token()).await {
                tracing::warn!("{host} did not take its detach: {e}");
            }
        }
        Ok("peer detach: success".into())
    }

    /// `peer status` / `pool list`.
    pub async fn peer_list(&self) -> Vec<PeerInfo> {
        let state = self.state();
        let up = self.reachable(&state).await;
        state
            .peers
            .values()
            .map(|p| PeerInfo {
                uuid: p.uuid.clone(),
                host: p.host.clone(),
                port: p.mgmt_port,
                brick_port: p.brick_port,
                state: if up.contains(&p.id) {
                    "Connected"
                } else {
                    "Disconnected"
                }
                .into(),
                local: p.id == self.me.id,
            })
            .collect()
    }

    /// A fresh node taking a prober's invitation (`/internal/join`).
    pub async fn join(&self, req: JoinRequest) -> OpResult<String> {
        let s = self.state();
        if !s.volumes.is_empty() || s.peers.len() > 1 {
            return Err(OpError::conflict(
                "this node is already part of a pool with peers or volumes",
            ));
        }
        if req.op_version < model::MIN_OP_VERSION || req.op_version > self.me.max_op_version {
            return Err(OpError::conflict(format!(
                "this node supports op-versions {} to {}, not the pool's {}",
                model::MIN_OP_VERSION,
                self.me.max_op_version,
                req.op_version
            )));
        }
        if req.token.len() < 16 {
            return Err(OpError::bad("the pool token is too short"));
        }
        self.consensus.reset().await.map_err(consensus_err)?;
        crate::daemon::write_token(&self.workdir, &req.token).map_err(|e| OpError {
            status: 500,
            message: e.to_string(),
        })?;
        *self.token.write() = req.token;
        tracing::info!("joined a pool; waiting to be added");
        Ok("joined".into())
    }

    /// A detached node becomes a pool of its own again (`/internal/leave`).
    pub async fn leave(&self) -> OpResult<String> {
        self.consensus.reset().await.map_err(consensus_err)?;
        self.consensus
            .initialize_single()
            .await
            .map_err(consensus_err)?;
        self.propose(Command::AddPeer(self.self_peer())).await?;
        tracing::info!("detached from the pool; a pool of one again");
        Ok("left".into())
    }

    // ---- volumes -----------------------------------------------------------------

    /// `volume create`.
    pub async fn create_volume(&self, req: CreateVolumeRequest) -> OpResult<String> {
        check_volume_name(&req.name)?;
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        if state.volumes.contains_key(&req.name) {
            return Err(OpError::conflict(format!(
                "volume create: {}: failed: volume {} already exists",
                req.name, req.name
            )));
        }
        if req.bricks.is_empty() {
            return Err(OpError::bad("volume create: at least one brick is needed"));
        }
        let layout = match (req.replica, req.disperse) {
            (Some(_), Some(_)) => {
                return Err(OpError::bad(
                    "volume create: replica and disperse cannot be combined",
                ))
            }
            (Some(r), None) => {
                if r < 2 {
                    return Err(OpError::bad(format!(
                        "volume create: replica count {r} must be 2 or more"
                    )));
                }
                if req.arbiter && r != 3 {
                    return Err(OpError::bad("volume create: arbiter 1 needs replica 3"));
                }
                Layout::Replicate {
                    replica: r,
                    arbiter: req.arbiter,
                }
            }
            (None, Some(d)) => {
                let red = req.redundancy.unwrap_or(1);
                if d < 3 || red == 0 || 2 * red >= d {
                    return Err(OpError::bad(format!(
                        "volume create: disperse {d} redundancy {red}: need disperse 3 or more and 0 < redundancy < disperse/2"
                    )));
                }
                Layout::Disperse {
                    disperse: d,
                    redundancy: red,
                }
            }
            (None, None) if req.arbiter => {
                return Err(OpError::bad("volume create: arbiter needs replica 3"))
            }
            (None, None) => Layout::Distribute,
        };
        let set = match layout {
            Layout::Replicate { replica, .. } => replica as usize,
            Layout::Disperse { disperse, .. } => disperse as usize,
            Layout::Distribute => 1,
        };
        if !req.bricks.len().is_multiple_of(set) {
            return Err(OpError::bad(format!(
                "volume create: {}: failed: brick count {} is not a multiple of the {} count {set}",
                req.name,
                req.bricks.len(),
                if matches!(layout, Layout::Disperse { .. }) {
                    "disperse"
                } else {
                    "replica"
                }
            )));
        }
        let mut bricks = Vec::new();
        for spec in &req.bricks {
            let Some((host, path)) = spec.split_once(':') else {
                return Err(OpError::bad(format!(
                    "volume create: {spec:?} is not HOST:/PATH"
                )));
            };
            let node = if host == self.me.host || host == self.me.uuid {
                Some(self.me.id)
            } else {
                state.peer_by_host(host).map(|p| p.id)
            };
            let Some(node) = node else {
                return Err(OpError::bad(format!(
                    "volume create: {}: failed: host {host} is not in the pool (peer probe it first)",
                    req.name
                )));
            };
            brick_check::check_brick_path(path)
                .map_err(|e| OpError::bad(format!("volume create: {}: failed: {e}", req.name)))?;
            bricks.push(Brick {
                node,
                host: host.to_string(),
                path: path.to_string(),
                number: Some(bricks.len() as u32),
            });
        }
        for (i, b) in bricks.iter().enumerate() {
            for o in &bricks[..i] {
                if o.node == b.node
                    && (model::path_within(&o.path, &b.path)
                        || model::path_within(&b.path, &o.path))
                {
                    return Err(OpError::bad(format!(
                        "volume create: {}: failed: bricks {} and {} overlap",
                        req.name,
                        o.spec(),
                        b.spec()
                    )));
                }
            }
            if let Some((vol, other)) = state.brick_conflict(b.node, &b.path) {
                return Err(OpError::conflict(format!(
                    "volume create: {}: failed: brick {} overlaps brick {other} of volume {vol}",
                    req.name,
                    b.spec()
                )));
            }
        }
        if set > 1 && !req.force {
            for chunk in bricks.chunks(set) {
                let nodes: BTreeSet<u64> = chunk.iter().map(|b| b.node).collect();
                if nodes.len() < chunk.len() {
                    return Err(OpError::bad(format!(
                        "volume create: {}: failed: several bricks of one {} set are on one node ({}); this is not recommended, use force to create it anyway",
                        req.name,
                        if matches!(layout, Layout::Disperse { .. }) { "disperse" } else { "replica" },
                        chunk.iter().map(Brick::spec).collect::<Vec<_>>().join(" ")
                    )));
                }
            }
        }
        volgen::check_layout(&layout, bricks.len())
            .map_err(|e| OpError::bad(format!("volume create: {}: failed: {e}", req.name)))?;
        // Every node holding a brick checks its own directories; a node that does not
        // answer fails the create before anything is written anywhere.
        let mut by_node: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for b in &bricks {
            by_node.entry(b.node).or_default().push(b.path.clone());
        }
        for (node, paths) in by_node {
            let check = CheckBricksRequest {
                paths,
                force: req.force,
            };
            if node == self.me.id {
                self.check_bricks(&check).map_err(|e| {
                    OpError::bad(format!("volume create: {}: failed: {e}", req.name))
                })?;
            } else {
                let p = &state.peers[&node];
                self.peers
                    .check_bricks(&Self::peer_base(p), &self.token(), &check)
                    .await
                    .map_err(|e| match e.status {
                        Some(400) | Some(409) => OpError::bad(format!("volume create: {}: failed: {}", req.name, e.message)),
                        _ => OpError::unavailable(format!(
                            "volume create: {}: failed: peer {} is down or does not answer ({}); the create needs it",
                            req.name, p.host, e.message
                        )),
                    })?;
            }
        }
        let vol = Volume {
            removing: Vec::new(),
            name: req.name.clone(),
            id: uuid::Uuid::new_v4().to_string(),
            layout,
            bricks,
            status: VolumeStatus::Created,
            options: BTreeMap::new(),
            version: 0,
        };
        let m = self.propose(Command::CreateVolume(vol)).await?;
        Ok(format!("{m}: please start the volume to access data"))
    }

    /// Checks, on this node, that `paths` may become bricks.
    pub fn check_bricks(&self, req: &CheckBricksRequest) -> Result<(), String> {
        for p in &req.paths {
            brick_check::check_new_brick(p, req.force)?;
        }
        Ok(())
    }

    fn need_volume(state: &PoolState, name: &str) -> OpResult<Volume> {
        state
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| OpError::not_found(format!("volume {name} does not exist")))
    }

    /// `volume start NAME [force]`: commits the change, then waits (up to 20 s) until every
    /// brick is served, and says which are not.
    pub async fn start_volume(&self, name: &str, force: bool) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let v = Self::need_volume(&state, name)?;
        if !force {
            let up = self.reachable(&state).await;
            if let Some(b) = v.bricks.iter().find(|b| !up.contains(&b.node)) {
                return Err(OpError::unavailable(format!(
                    "volume start: {name}: failed: the node of brick {} is down (use force to start the other bricks)",
                    b.spec()
                )));
            }
        }
        let m = self
            .propose(Command::StartVolume {
                name: name.into(),
                force,
            })
            .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        // Bricks come up within milliseconds: ask often at first, then less.
        let mut pause = Duration::from_millis(5);
        loop {
            let st = self.volume_status(name).await?;
            let down: Vec<&BrickStatus> = st.bricks.iter().filter(|b| !b.online).collect();
            if down.is_empty() {
                return Ok(m);
            }
            if tokio::time::Instant::now() > deadline {
                let why: Vec<String> = down
                    .iter()
                    .map(|b| {
                        format!(
                            "{}{}",
                            b.brick,
                            b.error
                                .as_deref()
                                .map(|e| format!(": {e}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                return Err(OpError::unavailable(format!(
                    "volume start: {name}: started, but brick(s) not online: {}",
                    why.join("; ")
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// `volume stop NAME`: commits, then waits (up to 20 s) until no brick is served.
    pub async fn stop_volume(&self, name: &str) -> OpResult<String> {
        let m = self
            .propose(Command::StopVolume { name: name.into() })
            .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut pause = Duration::from_millis(5);
        while tokio::time::Instant::now() < deadline {
            let st = self.volume_status(name).await?;
            if st.bricks.iter().all(|b| !b.online) {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        Ok(m)
    }

    /// `volume delete NAME`.
    pub async fn delete_volume(&self, name: &str) -> OpResult<String> {
        self.propose(Command::DeleteVolume { name: name.into() })
            .await
    }

    /// `volume info [NAME]`.
    pub fn volume_info(&self, name: Option<&str>) -> OpResult<Vec<VolumeInfo>> {
        let s = self.state();
        match name {
            Some(n) => Ok(vec![VolumeInfo::of(&s, &Self::need_volume(&s, n)?)]),
            None => Ok(s.volumes.values().map(|v| VolumeInfo::of(&s, v)).collect()),
        }
    }

    /// The brick status every node reports, by node id (absent: the node did not answer).
    async fn all_local_bricks(
        &self,
        state: &PoolState,
        nodes: &BTreeSet<u64>,
    ) -> BTreeMap<u64, LocalBricks> {
        let mut out = BTreeMap::new();
        let asks = nodes
            .iter()
            .filter_map(|id| state.peers.get(id))
            .map(|p| async move {
                if p.id == self.me.id {
                    (p.id, Some(self.bricks.local_status().await))
                } else {
                    (
                        p.id,
                        self.peers.local_bricks(&Self::peer_base(p)).await.ok(),
                    )
                }
            });
        for (id, lb) in futures_join(asks).await {
            if let Some(lb) = lb {
                out.insert(id, lb);
            }
        }
        out
    }

    /// `volume status NAME`.
    pub async fn volume_status(&self, name: &str) -> OpResult<VolumeStatusInfo> {
        let state = self.state();
        let v = Self::need_volume(&state, name)?;
        let nodes: BTreeSet<u64> = v.bricks.iter().map(|b| b.node).collect();
        let local = self.all_local_bricks(&state, &nodes).await;
        let bricks = v
            .bricks
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let bn = v.brick_name(i);
                let lb = local.get(&b.node);
                let clients = lb.and_then(|l| l.attached.get(&bn)).copied();
                BrickStatus {
                    brick: b.spec(),
                    online: clients.is_some(),
                    port: if clients.is_some() {
                        lb.map(|l| l.port).unwrap_or(0)
                    } else {
                        0
                    },
                    pid: if clients.is_some() {
                        lb.map(|l| l.pid).unwrap_or(0)
                    } else {
                        0
                    },
                    clients: clients.unwrap_or(0),
                    error: match lb {
                        None => Some("its node does not answer".into()),
                        Some(l) => l.errors.get(&bn).cloned(),
                    },
                }
            })
            .collect();
        let brick_processes = nodes
            .iter()
            .filter_map(|id| state.peers.get(id))
            .map(|p| match local.get(&p.id) {
                Some(l) => BrickProcessInfo {
                    host: p.host.clone(),
                    online: l.online,
                    pid: l.pid,
                    port: l.port,
                    restarts: l.restarts,
                    started_at: l.started_at,
                },
                None => BrickProcessInfo {
                    host: p.host.clone(),
                    online: false,
                    pid: 0,
                    port: p.brick_port,
                    restarts: 0,
                    started_at: 0,
                },
            })
            .collect();
        Ok(VolumeStatusInfo {
            name: v.name.clone(),
            status: v.status.as_str().into(),
            bricks,
            brick_processes,
        })
    }

    /// `volume set NAME KEY VALUE...`: every pair is checked before any is set.
    pub async fn set_options(
        &self,
        name: &str,
        options: BTreeMap<String, String>,
    ) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        Self::need_volume(&state, name)?;
        if options.is_empty() {
            return Err(OpError::bad("volume set: no option given"));
        }
        let mut clean = BTreeMap::new();
        for (k, v) in options {
            let val = optable::validate(&k, &v, &self.registry, state.op_version.max(1))
                .map_err(|e| OpError::bad(format!("volume set: failed: {e}")))?;
            clean.insert(k, val);
        }
        self.propose(Command::SetOptions {
            name: name.into(),
            options: clean,
        })
        .await
    }

    /// `volume reset NAME [KEY]`.
    pub async fn reset_options(&self, name: &str, key: Option<String>) -> OpResult<String> {
        if let Some(k) = &key {
            optable::lookup(k).map_err(|e| OpError::bad(format!("volume reset: failed: {e}")))?;
        }
        self.propose(Command::ResetOptions {
            name: name.into(),
            key,
        })
        .await
    }

    /// `volume get NAME KEY|all`.
    pub fn get_options(&self, name: &str, key: Option<&str>) -> OpResult<Vec<OptionInfo>> {
        let s = self.state();
        let v = Self::need_volume(&s, name)?;
        let entries: Vec<&optable::VolumeOption> = match key {
            None | Some("all") => optable::TABLE.iter().collect(),
            Some(k) => vec![optable::lookup(k).map_err(OpError::bad)?],
        };
        Ok(entries
            .into_iter()
            .map(|o| self.option_info(o, Some(&v.options)))
            .collect())
    }

    /// `volume set help`.
    pub fn option_help(&self) -> Vec<OptionInfo> {
        optable::TABLE
            .iter()
            .map(|o| self.option_info(o, None))
            .collect()
    }

    fn option_info(
        &self,
        o: &optable::VolumeOption,
        set: Option<&BTreeMap<String, String>>,
    ) -> OptionInfo {
        let empty = BTreeMap::new();
        let spec = optable::spec(o, &self.registry);
        let mut description = spec.map(|s| s.description.to_string()).unwrap_or_default();
        if o.key == "performance.write-behind" {
            description = "Acknowledge writes at once and write them in the background (performance/write-behind).".into();
        }
        if let Some(why) = o.unsupported {
            description = format!("{description} (Not settable yet: {why}.)");
        }
        OptionInfo {
            key: o.key.into(),
            value: optable::effective(o, set.unwrap_or(&empty), &self.registry),
            set: set.is_some_and(|s| s.contains_key(o.key)),
            side: o.side.as_str().into(),
            translator: format!("{} {}", o.xlator, o.option),
            op_version: o.op_version,
            description,
        }
    }

    /// The client volfile of `name` and the version it belongs to.
    pub fn client_volfile(&self, name: &str) -> OpResult<VolfileAnswer> {
        let s = self.state();
        let v = Self::need_volume(&s, name)?;
        let volfile = volgen::client_volfile(&s, &v).map_err(|e| OpError::bad(e.to_string()))?;
        Ok(VolfileAnswer {
            volume: v.name.clone(),
            version: v.version,
            volfile,
        })
    }

    /// Waits until `name`'s version exceeds `after` (or `wait` passes: None), then answers
    /// its volfile; a deleted volume is a 404.
    pub async fn wait_volfile(
        &self,
        name: &str,
        after: u64,
        wait: Duration,
    ) -> OpResult<Option<VolfileAnswer>> {
        let mut rx = self.consensus.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let a = self.client_volfile(name)?;
            if a.version > after {
                return Ok(Some(a));
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(OpError::unavailable("mgmtd is stopping")),
                Err(_) => return Ok(None),
            }
        }
    }

    // ---- add-brick and rebalance -----------------------------------------------------

    /// A new brick from its `HOST:/PATH` (host in the pool, path of an acceptable form),
    /// without a number yet.
    fn brick_at(
        &self,
        state: &PoolState,
        spec: &str,
        fail: &dyn Fn(String) -> String,
    ) -> OpResult<Brick> {
        let Some((host, path)) = spec.split_once(':') else {
            return Err(OpError::bad(fail(format!("{spec:?} is not HOST:/PATH"))));
        };
        let node = if host == self.me.host || host == self.me.uuid {
            Some(self.me.id)
        } else {
            state.peer_by_host(host).map(|p| p.id)
        };
        let Some(node) = node else {
            return Err(OpError::bad(fail(format!(
                "host {host} is not in the pool (peer probe it first)"
            ))));
        };
        brick_check::check_brick_path(path).map_err(|e| OpError::bad(fail(e.to_string())))?;
        Ok(Brick {
            node,
            host: host.to_string(),
            path: path.to_string(),
            number: None,
        })
    }

    /// Node `node`'s own checks of new brick directories `paths` (here or over its API).
    async fn check_bricks_on(
        &self,
        state: &PoolState,
        node: u64,
        paths: Vec<String>,
        force: bool,
        fail: &(dyn Fn(String) -> String + Sync),
    ) -> OpResult<()> {
        let check = CheckBricksRequest { paths, force };
        if node == self.me.id {
            return self.check_bricks(&check).map_err(|e| OpError::bad(fail(e)));
        }
        let Some(p) = state.peers.get(&node) else {
            return Err(OpError::bad(fail(format!(
                "node {node} is not in the pool"
            ))));
        };
        self.peers
            .check_bricks(&Self::peer_base(p), &self.token(), &check)
            .await
            .map_err(|e| match e.status {
                Some(400) | Some(409) => OpError::bad(fail(e.message)),
                _ => OpError::unavailable(fail(format!(
                    "peer {} is down or does not answer ({}); the change needs it",
                    p.host, e.message
                ))),
            })?;
        Ok(())
    }

    /// `volume add-brick NAME HOST:/BRICK... [force]`: checked as at create (form, hosts in
    /// the pool, overlaps, each node's own directory checks), only for distributed
    /// volumes, never while a rebalance of the volume runs; then one `AddBricks` command.
    pub async fn add_bricks(&self, name: &str, req: AddBricksRequest) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let v = Self::need_volume(&state, name)?;
        let fail = |m: String| format!("volume add-brick: {name}: failed: {m}");
        if v.layout != Layout::Distribute {
            return Err(OpError::bad(fail(format!(
                "{} is a {} volume; this version of Weft does not add bricks to replicated or dispersed volumes yet",
                name,
                v.layout.type_name(v.bricks.len())
            ))));
        }
        if req.bricks.is_empty() {
            return Err(OpError::bad(fail("at least one brick is needed".into())));
        }
        let mut bricks = Vec::new();
        for spec in &req.bricks {
            bricks.push(self.brick_at(&state, spec, &fail)?);
        }
        for (i, b) in bricks.iter().enumerate() {
            for o in &bricks[..i] {
                if o.node == b.node
                    && (model::path_within(&o.path, &b.path)
                        || model::path_within(&b.path, &o.path))
                {
                    return Err(OpError::bad(fail(format!(
                        "bricks {} and {} overlap",
                        o.spec(),
                        b.spec()
                    ))));
                }
            }
            if let Some((vol, other)) = state.brick_conflict(b.node, &b.path) {
                return Err(OpError::conflict(fail(format!(
                    "brick {} overlaps brick {other} of volume {vol}",
                    b.spec()
                ))));
            }
        }
        self.no_rebalance_running(&state, name, &fail).await?;
        let mut by_node: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for b in &bricks {
            by_node.entry(b.node).or_default().push(b.path.clone());
        }
        for (node, paths) in by_node {
            self.check_bricks_on(&state, node, paths, req.force, &fail)
                .await?;
        }
        let m = self
            .propose(Command::AddBricks {
                name: name.to_string(),
                bricks,
            })
            .await?;
        Ok(format!(
            "{m}: new directories use every brick; run `weft volume rebalance {name} fix-layout start` so existing directories do too"
        ))
    }

    /// Every node's latest rebalance task of volume `name` (nodes that have none are left
    /// out; nodes that do not answer are rows of state `unreachable`).
    async fn rebalance_rows(&self, state: &PoolState, name: &str) -> Vec<RebalanceNode> {
        let asks = state.peers.values().map(|p| {
            let base = Self::peer_base(p);
            let me = p.id == self.me.id;
            let host = p.host.clone();
            async move {
                let tasks = if me {
                    Ok(self.tasks.list())
                } else {
                    self.peers.tasks(&base).await
                };
                (host, tasks)
            }
        });
        let mut rows = Vec::new();
        for (host, tasks) in futures_join(asks).await {
            match tasks {
                Ok(ts) => {
                    // Newest first.
                    if let Some(t) = ts.into_iter().find(|t| {
                        crate::rebalance::is_rebalance(&t.kind) && t.volume.as_deref() == Some(name)
                    }) {
                        rows.push(rebalance_row(host, &t));
                    }
                }
                Err(e) => rows.push(RebalanceNode {
                    node: host,
                    task: None,
                    kind: None,
                    state: "unreachable".into(),
                    scanned: 0,
                    fixed: 0,
                    moved: 0,
                    skipped: 0,
                    failed: 0,
                    bytes: 0,
                    run_secs: 0,
                    eta_secs: None,
                    resumed: 0,
                    error: Some(e.message),
                    removing: Vec::new(),
                    total: None,
                }),
            }
        }
        rows
    }

    /// Refuses (409, worded by `fail`) while a rebalance of volume `name` runs or is
    /// paused on some node, or a node that may be running one does not answer.
    async fn no_rebalance_running(
        &self,
        state: &PoolState,
        name: &str,
        fail: &(dyn Fn(String) -> String + Sync),
    ) -> OpResult<()> {
        let busy = self
            .rebalance_rows(state, name)
            .await
            .into_iter()
            .find(|r| r.state == "running" || r.state == "paused" || r.state == "unreachable");
        match busy {
            None => Ok(()),
            Some(r) if r.state == "unreachable" => Err(OpError::conflict(fail(format!(
                "node {} does not answer; it may be running a rebalance of {name}",
                r.node
            )))),
            Some(r) => Err(OpError::conflict(fail(format!(
                "a rebalance of {name} is {} on {}; wait for it or stop it first",
                r.state, r.node
            )))),
        }
    }

    /// `volume rebalance NAME status`: every node's part and the sum.
    pub async fn rebalance_status(&self, name: &str) -> OpResult<RebalanceStatus> {
        let state = self.state();
        Self::need_volume(&state, name)?;
        let nodes = self.rebalance_rows(&state, name).await;
        let st = |s: &str| nodes.iter().any(|r| r.state == s);
        let state_word = if nodes.is_empty() {
            "not started".to_string()
        } else if st("running") {
            "running".into()
        } else if st("paused") {
            "paused".into()
        } else if nodes.iter().all(|r| r.state == "completed") {
            "completed".into()
        } else {
            nodes
                .iter()
                .find(|r| r.state != "completed")
                .map(|r| r.state.clone())
                .unwrap_or_default()
        };
        let mut total = RebalanceNode {
            node: "total".into(),
            task: None,
            kind: None,
            state: state_word.clone(),
            scanned: 0,
            fixed: 0,
            moved: 0,
            skipped: 0,
            failed: 0,
            bytes: 0,
            run_secs: 0,
            eta_secs: None,
            resumed: 0,
            error: None,
            removing: Vec::new(),
            total: None,
        };
        for r in &nodes {
            total.scanned += r.scanned;
            total.fixed += r.fixed;
            total.moved += r.moved;
            total.skipped += r.skipped;
            total.failed += r.failed;
            total.bytes += r.bytes;
            total.run_secs = total.run_secs.max(r.run_secs);
            total.eta_secs = total.eta_secs.max(r.eta_secs);
            total.resumed += r.resumed;
        }
        Ok(RebalanceStatus {
            volume: name.to_string(),
            state: state_word,
            nodes,
            total,
        })
    }

    /// `volume rebalance NAME fix-layout start` (`fix_layout`: one task, on this node), or
    /// `rebalance NAME start`: a migrate task on every node holding bricks of the volume,
    /// each moving the files of its own bricks.
    pub async fn rebalance_start(&self, name: &str, req: RebalanceRequest) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let v = Self::need_volume(&state, name)?;
        let fail = |m: String| format!("volume rebalance: {name}: failed: {m}");
        if v.layout != Layout::Distribute || v.bricks.len() < 2 {
            return Err(OpError::bad(fail(format!(
                "{name} is not a distributed volume of several bricks; there is nothing to rebalance"
            ))));
        }
        if v.status != VolumeStatus::Started {
            return Err(OpError::conflict(fail(format!(
                "volume {name} is not started"
            ))));
        }
        self.no_rebalance_running(&state, name, &fail).await?;
        let volfile = volgen::rebalance_volfile(&state, &v)
            .map_err(|e| OpError::bad(fail(e.to_string())))?
            .ok_or_else(|| OpError::bad(fail("the volume has one brick".into())))?;
        if req.fix_layout {
            let r = self
                .tasks
                .start(crate::tasks::StartTaskRequest {
                    kind: crate::rebalance::FIX_LAYOUT.into(),
                    volume: Some(name.to_string()),
                    params: serde_json::json!({
                        "volfile": volfile,
                        "bricks": v.bricks.len(),
                    }),
                    throttle: req.throttle,
                })
                .map_err(OpError::from)?;
            return Ok(format!(
                "volume rebalance: {name}: fix-layout started on {} (task {}); `weft volume rebalance {name} status` shows its progress",
                self.me.host, r.id
            ));
        }
        // Every node holding bricks moves the files of its own bricks.
        let mut by_node: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (i, b) in v.bricks.iter().enumerate() {
            by_node.entry(b.node).or_default().push(i);
        }
        if !req.force {
            self.wait_for_mounts(&state, name, v.version, &fail).await?;
        }
        let started = self
            .start_migrate(&state, name, &volfile, &by_node, &[], req.throttle, &fail)
            .await?;
        Ok(format!(
            "volume rebalance: {name}: started on {}; `weft volume rebalance {name} status` shows its progress",
            started.join(", ")
        ))
    }

    /// Starts a migrate task on every node of `by_node` (node -> the subvolumes whose files
    /// it moves), after checking each answers. The hosts and task ids started.
    #[allow(clippy::too_many_arguments)]
    async fn start_migrate(
        &self,
        state: &PoolState,
        name: &str,
        volfile: &str,
        by_node: &BTreeMap<u64, Vec<usize>>,
        remove: &[usize],
        throttle: u64,
        fail: &(dyn Fn(String) -> String + Sync),
    ) -> OpResult<Vec<String>> {
        let bricks = state.volumes.get(name).map_or(0, |v| v.bricks.len());
        for node in by_node.keys() {
            let up = *node == self.me.id
                || match state.peers.get(node) {
                    Some(p) => self.peers.info(&Self::peer_base(p)).await.is_ok(),
                    None => false,
                };
            if !up {
                let host = state
                    .peers
                    .get(node)
                    .map_or(String::new(), |p| p.host.clone());
                return Err(OpError::unavailable(fail(format!(
                    "node {host} holds bricks of {name} and does not answer"
                ))));
            }
        }
        let mut started = Vec::new();
        for (node, local) in by_node {
            let sreq = crate::tasks::StartTaskRequest {
                kind: crate::rebalance::MIGRATE.into(),
                volume: Some(name.to_string()),
                params: serde_json::json!({
                    "volfile": volfile,
                    "bricks": bricks,
                    "local": local,
                    "remove": remove,
                }),
                throttle,
            };
            let host = state
                .peers
                .get(node)
                .map_or(String::new(), |p| p.host.clone());
            let r = if *node == self.me.id {
                self.tasks.start(sreq).map_err(|e| e.to_string())
            } else {
                let p = &state.peers[node];
                self.peers
                    .start_task(&Self::peer_base(p), &self.token(), &sreq)
                    .await
                    .map_err(|e| e.message)
            };
            match r {
                Ok(rec) => started.push(format!("{host} (task {})", rec.id)),
                Err(e) => {
                    return Err(OpError::unavailable(fail(format!(
                        "starting on {host} failed: {e}{}",
                        if started.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; already started on {}: `weft volume rebalance {name} stop` stops them",
                                started.join(", ")
                            )
                        }
                    ))))
                }
            }
        }
        Ok(started)
    }

    /// What data brick directory `path` of this node still holds (a brick of a volume).
    pub async fn brick_data(&self, path: &str) -> OpResult<BrickData> {
        let state = self.state();
        let ours = state
            .volumes
            .values()
            .flat_map(|v| v.bricks.iter())
            .any(|b| b.node == self.me.id && b.path == path);
        if !ours {
            return Err(OpError::bad(format!("{path} is not a brick of this node")));
        }
        let p = path.to_string();
        let (files, sample) = tokio::task::spawn_blocking(move || brick_check::data_files(&p, 5))
            .await
            .map_err(|e| OpError::unavailable(e.to_string()))?
            .map_err(|e| OpError::unavailable(format!("reading brick {path}: {e}")))?;
        Ok(BrickData {
            path: path.to_string(),
            files,
            sample,
        })
    }

    /// The indexes of the bricks `specs` (`HOST:/PATH`) name in volume `v`.
    fn brick_indexes(v: &Volume, specs: &[String]) -> Result<Vec<usize>, String> {
        let mut out = Vec::new();
        for spec in specs {
            let Some(i) = v.bricks.iter().position(|b| &b.spec() == spec) else {
                return Err(format!("{spec} is not a brick of volume {}", v.name));
            };
            out.push(i);
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// `volume remove-brick NAME HOST:/BRICK... start|stop|commit [force]`.
    pub async fn remove_bricks(&self, name: &str, req: RemoveBricksRequest) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let v = Self::need_volume(&state, name)?;
        let fail = |m: String| format!("volume remove-brick {}: {name}: failed: {m}", req.action);
        let idx = Self::brick_indexes(&v, &req.bricks).map_err(|e| OpError::bad(fail(e)))?;
        if idx.is_empty() {
            return Err(OpError::bad(fail("name the bricks to remove".into())));
        }
        match req.action.as_str() {
            "start" => {
                if v.layout != Layout::Distribute {
                    return Err(OpError::bad(fail(format!(
                        "{name} is a {} volume; this version of Weft does not remove bricks from replicated or dispersed volumes yet",
                        v.layout.type_name(v.bricks.len())
                    ))));
                }
                if v.status != VolumeStatus::Started {
                    return Err(OpError::conflict(fail(format!(
                        "volume {name} is not started (its files are moved off the bricks through the running bricks)"
                    ))));
                }
                self.no_rebalance_running(&state, name, &fail).await?;
                let m = self
                    .propose(Command::StartRemoveBricks {
                        name: name.to_string(),
                        bricks: idx.clone(),
                    })
                    .await?;
                let state = self.state();
                let v = Self::need_volume(&state, name)?;
                let volfile = volgen::rebalance_volfile(&state, &v)
                    .map_err(|e| OpError::bad(fail(e.to_string())))?
                    .ok_or_else(|| OpError::bad(fail("the volume has one brick".into())))?;
                // Mounts must know the bricks are going before files move: one that does
                // not would still make new directories with a range on them.
                if !req.force {
                    if let Err(e) = self.wait_for_mounts(&state, name, v.version, &fail).await {
                        let _ = self
                            .propose(Command::StopRemoveBricks {
                                name: name.to_string(),
                            })
                            .await;
                        return Err(e);
                    }
                }
                let mut by_node: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
                for &i in &idx {
                    by_node.entry(v.bricks[i].node).or_default().push(i);
                }
                let started = self
                    .start_migrate(&state, name, &volfile, &by_node, &idx, req.throttle, &fail)
                    .await?;
                Ok(format!(
                    "{m}: moving their files off on {}; `weft volume remove-brick {name} {} status` shows the progress, `commit` ends it",
                    started.join(", "),
                    req.bricks.join(" ")
                ))
            }
            "stop" => {
                if v.removing != idx {
                    return Err(OpError::conflict(fail(
                        "those bricks are not being removed".into(),
                    )));
                }
                let _ = self.rebalance_stop(name).await;
                self.propose(Command::StopRemoveBricks {
                    name: name.to_string(),
                })
                .await
                .map(|m| format!("{m}: the bricks stay; files already moved stay where they are"))
            }
            "commit" => {
                if v.removing != idx {
                    return Err(OpError::conflict(fail(
                        "those bricks are not being removed (remove-brick ... start first)".into(),
                    )));
                }
                if !req.force {
                    let rows = self.rebalance_rows(&state, name).await;
                    let holders: BTreeSet<String> = idx
                        .iter()
                        .filter_map(|&i| state.peers.get(&v.bricks[i].node).map(|p| p.host.clone()))
                        .collect();
                    for host in &holders {
                        let Some(r) = rows.iter().find(|r| &r.node == host) else {
                            return Err(OpError::conflict(fail(format!(
                                "{host} has no record of moving the files off; run remove-brick ... start again"
                            ))));
                        };
                        if r.state != "completed" || r.removing != idx {
                            return Err(OpError::conflict(fail(format!(
                                "moving the files off is {} on {host}, not completed; wait for `remove-brick ... status` to say completed",
                                if r.removing != idx { "not started" } else { r.state.as_str() }
                            ))));
                        }
                        if r.failed > 0 || r.skipped > 0 {
                            return Err(OpError::conflict(fail(format!(
                                "{} file(s) failed and {} were skipped on {host} (locked or with several links; see its log) and are still on the bricks; run remove-brick ... start again, or `commit force` to leave them behind",
                                r.failed, r.skipped
                            ))));
                        }
                    }
                }
                // The bricks themselves, last: a mount with a stale layout may have made a
                // file on one after the move passed its directory.
                if !req.force {
                    for &i in &idx {
                        let b = &v.bricks[i];
                        let d = if b.node == self.me.id {
                            self.brick_data(&b.path).await?
                        } else {
                            let p = &state.peers[&b.node];
                            self.peers
                                .brick_data(&Self::peer_base(p), &self.token(), &b.path)
                                .await
                                .map_err(|e| {
                                    OpError::unavailable(fail(format!(
                                        "cannot check brick {} ({}): {}",
                                        b.spec(),
                                        p.host,
                                        e.message
                                    )))
                                })?
                        };
                        if d.files > 0 {
                            return Err(OpError::conflict(fail(format!(
                                "{} data file(s) are still on brick {} (e.g. {}); run remove-brick ... start again to move them, or `commit force` to leave them behind",
                                d.files,
                                b.spec(),
                                d.sample.join(", ")
                            ))));
                        }
                    }
                }
                self.propose(Command::CommitRemoveBricks {
                    name: name.to_string(),
                    bricks: idx,
                })
                .await
                .map(|m| {
                    format!(
                        "{m}: the bricks left the volume; their directories are left as they are"
                    )
                })
            }
            other => Err(OpError::bad(format!(
                "volume remove-brick: {name}: {other:?} is not start, stop, status or commit"
            ))),
        }
    }

    /// Waits (up to 15 s) until every mount following volume `name` through any node runs
    /// `version` of its graph; an error naming those that do not. Moving files under a
    /// mount on an older graph would hide them from it (it does not know their bricks).
    async fn wait_for_mounts(
        &self,
        state: &PoolState,
        name: &str,
        version: u64,
        fail: &(dyn Fn(String) -> String + Sync),
    ) -> OpResult<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let asks = state.peers.values().map(|p| {
                let base = Self::peer_base(p);
                let me = p.id == self.me.id;
                async move {
                    if me {
                        self.mounts.of(name)
                    } else {
                        self.peers.mounts(&base, name).await.unwrap_or_default()
                    }
                }
            });
            let mut behind: Vec<crate::mounts::MountSeen> = futures_join(asks)
                .await
                .into_iter()
                .flatten()
                .filter(|m| m.version < version)
                .collect();
            if behind.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                behind.sort_by(|a, b| a.client.cmp(&b.client));
                behind.dedup_by(|a, b| a.client == b.client);
                let list: Vec<String> = behind
                    .iter()
                    .map(|m| format!("{} (version {})", m.client, m.version))
                    .collect();
                return Err(OpError::conflict(fail(format!(
                    "mounts of {name} still run an older graph than version {version}: {}; files moved now would be out of their sight. Wait until they switch (their logs say why not), unmount them, or use `start force`",
                    list.join(", ")
                ))));
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// `volume rebalance NAME stop`: stops every node's running or paused rebalance of it.
    pub async fn rebalance_stop(&self, name: &str) -> OpResult<String> {
        self.rebalance_control(name, "stop").await
    }

    /// `volume rebalance NAME stop|pause|resume`: applies `action` to every node's
    /// rebalance task of the volume that can take it (stop: running or paused; pause:
    /// running; resume: paused).
    pub async fn rebalance_control(&self, name: &str, action: &str) -> OpResult<String> {
        let state = self.state();
        Self::need_volume(&state, name)?;
        let from: &[&str] = match action {
            "stop" => &["running", "paused"],
            "pause" => &["running"],
            "resume" => &["paused"],
            other => {
                return Err(OpError::bad(format!(
                    "volume rebalance: {name}: {other:?} is not stop, pause or resume"
                )))
            }
        };
        let rows = self.rebalance_rows(&state, name).await;
        let mut done = 0;
        for r in rows.iter().filter(|r| from.contains(&r.state.as_str())) {
            let Some(id) = &r.task else { continue };
            let p = state.peers.values().find(|p| p.host == r.node);
            let res = match p {
                Some(p) if p.id == self.me.id => match action {
                    "stop" => self.tasks.stop(id),
                    "pause" => self.tasks.pause(id),
                    _ => self.tasks.resume(id),
                }
                .map(|_| ())
                .map_err(|e| e.to_string()),
                Some(p) => self
                    .peers
                    .task_action(&Self::peer_base(p), &self.token(), id, action)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message),
                None => continue,
            };
            res.map_err(|e| {
                OpError::unavailable(format!(
                    "volume rebalance: {name}: {action} failed on {}: {e}",
                    r.node
                ))
            })?;
            done += 1;
        }
        if done == 0 {
            return Err(OpError::conflict(format!(
                "volume rebalance: {name}: failed: no rebalance of {name} is {}",
                from.join(" or ")
            )));
        }
        Ok(format!("volume rebalance: {name}: {action}: success"))
    }

    /// The server volfiles this node's brick process should serve now: brick name ->
    /// volfile, for every brick of a started volume on this node.
    pub fn wanted_bricks(&self, state: &PoolState) -> BTreeMap<String, String> {
        let mut want = BTreeMap::new();
        for v in state.volumes.values() {
            if v.status != VolumeStatus::Started {
                continue;
            }
            for (i, b) in v.bricks.iter().enumerate() {
                if b.node == self.me.id {
                    want.insert(v.brick_name(i), volgen::brick_volfile(v, i));
                }
            }
        }
        want
    }

    /// `volume statedump NAME`: every brick's statedump, by brick.
    pub async fn statedump(&self, name: &str) -> OpResult<BTreeMap<String, String>> {
        let state = self.state();
        let v = Self::need_volume(&state, name)?;
        let mut out = BTreeMap::new();
        for (i, b) in v.bricks.iter().enumerate() {
            let text = if b.node == self.me.id {
                self.bricks
                    .statedump()
                    .await
                    .map_err(OpError::unavailable)?
            } else {
                let p = &state.peers[&b.node];
                self.peers
                    .statedump(&Self::peer_base(p), &self.token())
                    .await
                    .map_err(|e| OpError::unavailable(format!("{}: {}", b.spec(), e.message)))?
            };
            out.insert(b.spec(), brick_section(&text, &v.brick_name(i)));
        }
        Ok(out)
    }

    /// Which option keys of a volume change the brick graphs (for callers' messages).
    pub fn brick_side(key: &str) -> bool {
        optable::lookup(key)
            .map(|o| o.side == Side::Brick)
            .unwrap_or(false)
    }
}

/// The part of a brick process's statedump about brick `name`'s graph (its translators are
/// named `name` and `name-...`).
fn brick_section(dump: &str, name: &str) -> String {
    let mut out = String::new();
    let mut on = false;
    for line in dump.lines() {
        if let Some(rest) = line.strip_prefix('[') {
            let title = rest.trim_end_matches(']');
            let xl = title.split_whitespace().next().unwrap_or("");
            on = xl == name || xl.starts_with(&format!("{name}-"));
        }
        if on {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.is_empty() {
        dump.to_string()
    } else {
        out
    }
}

fn rebalance_row(node: String, t: &crate::tasks::TaskRecord) -> RebalanceNode {
    let c = |k: &str| t.checkpoint.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    let state = serde_json::to_value(t.state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    RebalanceNode {
        node,
        task: Some(t.id.clone()),
        kind: Some(match t.kind.as_str() {
            crate::rebalance::FIX_LAYOUT => "fix-layout".into(),
            crate::rebalance::MIGRATE => "migrate".into(),
            k => k.to_string(),
        }),
        state,
        scanned: t.items_done,
        fixed: c("fixed"),
        moved: c("moved"),
        skipped: c("skipped"),
        failed: c("failed"),
        bytes: t.bytes_done,
        run_secs: t.run_secs,
        eta_secs: t.eta_secs,
        resumed: t.resumed,
        error: t.error.clone(),
        total: t.items_total,
        removing: crate::rebalance::indexes(&t.params, "remove"),
    }
}

/// Runs futures concurrently and collects their results in order.
pub async fn futures_join<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    futures::future::join_all(futs).await
}
