//! The JSON shapes of the REST API, shared by mgmtd and the `weft` CLI. These are the
//! documented, stable shapes `--json` prints (docs/MANAGEMENT.md): fields may be added,
//! never renamed or removed.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Layout, PoolState, Volume};

/// Every error answer: `{"error": "..."}` with a 4xx or 5xx status.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// The answer of a change: what was done.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Done {
    /// For a person, e.g. "volume start: vol1: success".
    pub message: String,
}

/// `POST /v1/peers`: probe a node into the pool.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ProbeRequest {
    /// `HOST` or `HOST:PORT` of the node's mgmtd.
    pub host: String,
}

/// One node of the pool (`peer status`, `pool list`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its permanent identity.
    pub uuid: String,
    /// The name the pool knows it by.
    pub host: String,
    /// Its mgmtd port.
    pub port: u16,
    /// Its brick process port.
    pub brick_port: u16,
    /// "Connected" or "Disconnected", as this node sees it now.
    pub state: String,
    /// True for the node that answered.
    pub local: bool,
}

/// A brick in `volume info`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BrickInfo {
    /// `HOST:/PATH`.
    pub name: String,
    /// Its host.
    pub host: String,
    /// Its directory.
    pub path: String,
    /// The uuid of the node serving it.
    pub node_uuid: String,
}

/// `volume info` of one volume.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Its name.
    pub name: String,
    /// Its permanent id.
    pub id: String,
    /// GlusterFS's type name: Distribute, Replicate, Disperse, Distributed-...
    #[serde(rename = "type")]
    pub type_name: String,
    /// Created, Started or Stopped.
    pub status: String,
    /// Number of bricks.
    pub brick_count: usize,
    /// Bricks per replica set (1 when not replicated).
    pub replica: u32,
    /// Whether each replica set's last brick is an arbiter.
    pub arbiter: bool,
    /// Bricks per disperse set (0 when not dispersed).
    pub disperse: u32,
    /// Bricks of a disperse set that may fail.
    pub redundancy: u32,
    /// Always "tcp".
    pub transport: String,
    /// The bricks, in order.
    pub bricks: Vec<BrickInfo>,
    /// Options set on it.
    pub options: BTreeMap<String, String>,
    /// Raised on every change.
    pub version: u64,
}

impl VolumeInfo {
    /// The info of `v` in `state`.
    pub fn of(state: &PoolState, v: &Volume) -> VolumeInfo {
        let (replica, arbiter, disperse, redundancy) = match v.layout {
            Layout::Distribute => (1, false, 0, 0),
            Layout::Replicate { replica, arbiter } => (replica, arbiter, 0, 0),
            Layout::Disperse {
                disperse,
                redundancy,
            } => (1, false, disperse, redundancy),
        };
        VolumeInfo {
            name: v.name.clone(),
            id: v.id.clone(),
            type_name: v.layout.type_name(v.bricks.len()).into(),
            status: v.status.as_str().into(),
            brick_count: v.bricks.len(),
            replica,
            arbiter,
            disperse,
            redundancy,
            transport: "tcp".into(),
            bricks: v
                .bricks
                .iter()
                .map(|b| BrickInfo {
                    name: b.spec(),
                    host: b.host.clone(),
                    path: b.path.clone(),
                    node_uuid: state
                        .peers
                        .get(&b.node)
                        .map(|p| p.uuid.clone())
                        .unwrap_or_default(),
                })
                .collect(),
            options: v.options.clone(),
            version: v.version,
        }
    }
}

/// `POST /v1/volumes`: create a volume.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateVolumeRequest {
    /// Its name: letters, digits, `-` and `_`, at most 64, not starting with `-`.
    pub name: String,
    /// `HOST:/PATH` of each brick, in order.
    pub bricks: Vec<String>,
    /// Bricks per replica set.
    #[serde(default)]
    pub replica: Option<u32>,
    /// Make each replica set's last brick an arbiter.
    #[serde(default)]
    pub arbiter: bool,
    /// Bricks per disperse set.
    #[serde(default)]
    pub disperse: Option<u32>,
    /// Bricks of a disperse set that may fail.
    #[serde(default)]
    pub redundancy: Option<u32>,
    /// Accept non-empty brick directories and replica sets with two bricks on one node.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/volumes/{name}/start`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct StartRequest {
    /// Also when already started: bricks that are down are started again.
    #[serde(default)]
    pub force: bool,
}

/// `PUT /v1/volumes/{name}/options`: set options.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct SetOptionsRequest {
    /// Key -> value; all are checked before any is set.
    pub options: BTreeMap<String, String>,
}

/// One option of a volume (`volume get`) or of the table (`volume set help`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct OptionInfo {
    /// The key.
    pub key: String,
    /// Its value on the volume (`volume get`), or its default (`volume set help`).
    pub value: String,
    /// Whether the volume sets it (false: the default).
    pub set: bool,
    /// "client" or "brick": which graph it changes.
    pub side: String,
    /// The translator and option it sets, e.g. "performance/write-behind cache-size".
    pub translator: String,
    /// The op-version that introduced it.
    pub op_version: u32,
    /// What it does.
    pub description: String,
}

/// The state of one brick (`volume status`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BrickStatus {
    /// `HOST:/PATH`.
    pub brick: String,
    /// Whether its graph is served now.
    pub online: bool,
    /// The brick process's port (0 when offline).
    pub port: u16,
    /// The brick process's pid (0 when offline).
    pub pid: u32,
    /// Clients connected to it.
    pub clients: u32,
    /// Why it is not online, when known.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
}

/// `volume status` of one volume.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct VolumeStatusInfo {
    /// The volume.
    pub name: String,
    /// Created, Started or Stopped.
    pub status: String,
    /// Each brick.
    pub bricks: Vec<BrickStatus>,
    /// Each node's brick process: restarts by mgmtd since mgmtd started, by host.
    pub brick_processes: Vec<BrickProcessInfo>,
}

/// A node's brick process as its mgmtd sees it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct BrickProcessInfo {
    /// The node's host.
    pub host: String,
    /// Whether it answers.
    pub online: bool,
    /// Its pid (0 when down).
    pub pid: u32,
    /// Its port.
    pub port: u16,
    /// Times mgmtd found it dead and started it again.
    pub restarts: u32,
    /// When it was last (re)started, seconds since the epoch (0: never).
    pub started_at: u64,
}

/// A node's answer about its own bricks (`GET /internal/bricks`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct LocalBricks {
    /// Whether the brick process answers.
    pub online: bool,
    /// Its pid.
    pub pid: u32,
    /// Its port.
    pub port: u16,
    /// Restarts by this mgmtd.
    pub restarts: u32,
    /// Last start, seconds since the epoch.
    pub started_at: u64,
    /// Served bricks: name -> connected clients.
    pub attached: BTreeMap<String, u32>,
    /// Bricks that failed to attach: name -> why.
    pub errors: BTreeMap<String, String>,
}

/// A client volfile (`GET /v1/volumes/{name}/volfile`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct VolfileAnswer {
    /// The volume.
    pub volume: String,
    /// The volume's version this volfile belongs to.
    pub version: u64,
    /// The client volfile text.
    pub volfile: String,
}

/// What a node says about itself before it is probed (`GET /internal/info`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    /// Its uuid.
    pub uuid: String,
    /// Its consensus node id.
    pub id: u64,
    /// Its mgmtd port.
    pub port: u16,
    /// Its brick process port.
    pub brick_port: u16,
    /// Oldest pool op-version it can run at.
    pub min_op_version: u32,
    /// Newest.
    pub max_op_version: u32,
    /// Peers in its pool, itself included.
    pub peers: usize,
    /// Volumes in its pool.
    pub volumes: usize,
}

/// `POST /internal/join`: the prober hands a fresh node the pool token.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JoinRequest {
    /// The pool's token (admin bearer token and peer secret).
    pub token: String,
    /// The pool's op-version.
    pub op_version: u32,
}

/// `POST /internal/check-bricks`: may these paths become bricks here?
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckBricksRequest {
    /// Brick directories on the node asked.
    pub paths: Vec<String>,
    /// Accept non-empty directories.
    pub force: bool,
}

/// `POST /v1/volumes/{name}/bricks`: `volume add-brick`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AddBricksRequest {
    /// `HOST:/PATH` of each new brick, in order (they go after the volume's bricks).
    pub bricks: Vec<String>,
    /// Accept non-empty brick directories.
    #[serde(default)]
    pub force: bool,
}

/// `POST /v1/volumes/{name}/replace-brick`: `volume replace-brick NAME OLD NEW commit
/// force`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ReplaceBrickRequest {
    /// `HOST:/PATH` of the brick to replace, as the volume lists it.
    pub old: String,
    /// `HOST:/PATH` of its replacement (an empty or new directory).
    pub new: String,
    /// Accept a non-empty directory, or a node already holding a brick of the same set.
    #[serde(default)]
    pub force: bool,
}

/// `POST /internal/brick-data`: what data a brick directory of this node still holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct BrickData {
    /// The brick directory (request), as in the pool state.
    pub path: String,
    /// Data files under it (answer): anything but directories and empty link files.
    #[serde(default)]
    pub files: u64,
    /// The first few of them, relative to the brick (answer).
    #[serde(default)]
    pub sample: Vec<String>,
}

/// `POST /v1/volumes/{name}/remove-brick`: start, stop or commit removing bricks.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RemoveBricksRequest {
    /// `start`, `stop` or `commit`.
    pub action: String,
    /// `HOST:/PATH` of each brick to remove.
    pub bricks: Vec<String>,
    /// `commit force`: commit even if files stayed on the bricks.
    #[serde(default)]
    pub force: bool,
    /// Files moved per second at most (0: no limit), for `start`.
    #[serde(default)]
    pub throttle: u64,
}

/// `POST /v1/volumes/{name}/heal`: heal what the indexes list (`volume heal VOL`), or
/// first walk the whole volume (`volume heal VOL full`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct HealRequest {
    /// Walk every directory first, healing every inode met, not only the indexed ones.
    #[serde(default)]
    pub full: bool,
    /// Inodes a second at most per node (0: no limit).
    #[serde(default)]
    pub throttle: u64,
}

/// `POST /v1/volumes/{name}/heal/split-brain`: resolve split-brain.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct SplitBrainRequest {
    /// `bigger-file`, `latest-mtime` or `source-brick`.
    pub policy: String,
    /// The file (path in the volume); required but for `source-brick`, which without it
    /// resolves every split-brain entry of that brick's replica set.
    #[serde(default)]
    pub file: Option<String>,
    /// `HOST:/PATH` of the brick whose copy wins (`source-brick`).
    #[serde(default)]
    pub brick: Option<String>,
}

/// `POST /v1/volumes/{name}/rebalance`: start a rebalance.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct RebalanceRequest {
    /// Start even if some mounts of the volume still run an older graph.
    #[serde(default)]
    pub force: bool,
    /// Only fix the directory layouts (`rebalance VOL fix-layout start`); `false` also
    /// migrates files (`rebalance VOL start`).
    #[serde(default)]
    pub fix_layout: bool,
    /// Directories (items) a second at most (0: no limit).
    #[serde(default)]
    pub throttle: u64,
}

/// One node's part of a rebalance (`rebalance VOL status`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RebalanceNode {
    /// The node.
    pub node: String,
    /// Its task, when it has one for this volume.
    pub task: Option<String>,
    /// `fix-layout` or `migrate`.
    pub kind: Option<String>,
    /// The task's state (`running`, `paused`, `completed`, ...), or `unreachable`.
    pub state: String,
    /// Directories scanned (layouts checked and written where needed).
    pub scanned: u64,
    /// Directories whose layout was rewritten.
    pub fixed: u64,
    /// Files moved.
    pub moved: u64,
    /// Files skipped (open, several links).
    pub skipped: u64,
    /// Directories or files that failed.
    pub failed: u64,
    /// Bytes moved.
    pub bytes: u64,
    /// Seconds spent running.
    pub run_secs: u64,
    /// Seconds left, when known.
    pub eta_secs: Option<u64>,
    /// Times the task resumed after its mgmtd restarted.
    pub resumed: u32,
    /// Why it failed.
    pub error: Option<String>,
    /// The bricks (indexes) this task moves files off, for a remove-brick.
    #[serde(default)]
    pub removing: Vec<usize>,
    /// What `scanned` should reach, when the task knows (an estimate for migrate).
    #[serde(default)]
    pub total: Option<u64>,
}

/// `GET /v1/volumes/{name}/rebalance`: every node's part and their sum.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RebalanceStatus {
    /// The volume.
    pub volume: String,
    /// `running` while any node runs, else `completed` when all completed, else the
    /// first other final state (`stopped`, `failed`), or `not started`.
    pub state: String,
    /// One row per node that has (or had) a part.
    pub nodes: Vec<RebalanceNode>,
    /// The sum over the nodes (`node` is `total`).
    pub total: RebalanceNode,
}
