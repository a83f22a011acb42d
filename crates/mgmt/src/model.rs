//! The pool's replicated state: peers and volumes, and the commands that change them.
//!
//! Every mgmtd holds a copy; changes are [`Command`]s committed through the consensus log
//! and applied in the same order everywhere by [`PoolState::apply`], which is deterministic
//! and decides conflicts (two creates of one name: the first committed wins, the second
//! gets an error). Checks that need the world outside the state (is a brick directory
//! empty, is a peer up) happen before a command is proposed and change nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The op-version this build runs a pool at: the features a pool may use. Raised when a
/// change needs every peer to understand something new.
pub const OP_VERSION: u32 = 1;

/// The oldest pool op-version this build can still join and serve.
pub const MIN_OP_VERSION: u32 = 1;

/// One node of the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// Its consensus node id.
    pub id: u64,
    /// Its permanent identity (made at its first start).
    pub uuid: String,
    /// The name or address the pool knows it by (what `peer probe` was given).
    pub host: String,
    /// Its mgmtd port.
    pub mgmt_port: u16,
    /// The port of its brick process.
    pub brick_port: u16,
    /// The highest op-version it supports.
    pub max_op_version: u32,
}

/// How a volume's bricks are combined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Layout {
    /// Files spread over the bricks (one brick: the brick itself).
    Distribute,
    /// Every file on `replica` bricks of a set; with `arbiter`, the last of each set keeps
    /// names and metadata only.
    Replicate {
        /// Bricks per set.
        replica: u32,
        /// Whether the last brick of each set is an arbiter.
        arbiter: bool,
    },
    /// Erasure-coded sets of `disperse` bricks, `redundancy` of which may be lost.
    Disperse {
        /// Bricks per set.
        disperse: u32,
        /// Bricks of a set that may fail.
        redundancy: u32,
    },
}

impl Layout {
    /// GlusterFS's name of the volume type for `n` bricks.
    pub fn type_name(&self, bricks: usize) -> &'static str {
        match self {
            Layout::Distribute => "Distribute",
            Layout::Replicate { replica, .. } if bricks > *replica as usize => {
                "Distributed-Replicate"
            }
            Layout::Replicate { .. } => "Replicate",
            Layout::Disperse { disperse, .. } if bricks > *disperse as usize => {
                "Distributed-Disperse"
            }
            Layout::Disperse { .. } => "Disperse",
        }
    }
}

/// One brick of a volume.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Brick {
    /// The node that serves it.
    pub node: u64,
    /// That node's host name as the volume was created with it.
    pub host: String,
    /// The brick directory on that node.
    pub path: String,
    /// Its number in the volume, for good: names its brick graph (`V-brick{N}`) and its
    /// client (`V-client-{N}`, which link files name). Given when the brick joins the
    /// volume and kept when bricks before it are removed. `None` in states written
    /// before numbers existed: the brick's position then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u32>,
}

impl Brick {
    /// `HOST:/PATH`, as GlusterFS writes bricks.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.host, self.path)
    }
}

/// Whether a volume's bricks are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeStatus {
    /// Created (or stopped): bricks not served.
    Created,
    /// Bricks served.
    Started,
    /// Stopped after having run.
    Stopped,
}

impl VolumeStatus {
    /// The word `volume info` prints.
    pub fn as_str(&self) -> &'static str {
        match self {
            VolumeStatus::Created => "Created",
            VolumeStatus::Started => "Started",
            VolumeStatus::Stopped => "Stopped",
        }
    }
}

/// A volume as the pool defines it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Its permanent identity (written on every brick root as the brick marker).
    pub id: String,
    /// How its bricks combine.
    pub layout: Layout,
    /// Its bricks, in order.
    pub bricks: Vec<Brick>,
    /// Served or not.
    pub status: VolumeStatus,
    /// Options set with `volume set` (key as the user gave it -> value).
    pub options: BTreeMap<String, String>,
    /// Raised on every change of its client or brick volfiles (options); mounted clients
    /// fetch the new volfile when it moves.
    pub version: u64,
    /// Bricks being removed (`remove-brick ... start`, indexes into `bricks`): they stay
    /// in the volume, get no hash range, and their files move off until `commit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<usize>,
}

impl Volume {
    /// The brick's name in the brick process (the graph under protocol/server).
    pub fn brick_name(&self, index: usize) -> String {
        format!("{}-brick{}", self.name, self.brick_number(index))
    }

    /// The number of brick `index` ([`Brick::number`], else its position).
    pub fn brick_number(&self, index: usize) -> u32 {
        self.bricks[index].number.unwrap_or(index as u32)
    }

    /// The client translator of brick `index` in client graphs.
    pub fn client_name(&self, index: usize) -> String {
        format!("{}-client-{}", self.name, self.brick_number(index))
    }

    /// The number the next brick added gets.
    pub fn next_brick_number(&self) -> u32 {
        (0..self.bricks.len())
            .map(|i| self.brick_number(i) + 1)
            .max()
            .unwrap_or(0)
    }
}

/// A change to the pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A node joins (or updates how it is reached).
    AddPeer(Peer),
    /// A node leaves; refused while it holds bricks.
    RemovePeer {
        /// Its node id.
        id: u64,
    },
    /// A new volume; refused if the name or a brick is taken.
    CreateVolume(Volume),
    /// Serve a volume's bricks (`force`: also when already started).
    StartVolume {
        /// The volume.
        name: String,
        /// Accept an already started volume (its bricks are checked again).
        force: bool,
    },
    /// Stop serving a volume's bricks.
    StopVolume {
        /// The volume.
        name: String,
    },
    /// Forget a stopped volume.
    DeleteVolume {
        /// The volume.
        name: String,
    },
    /// Set options (already validated).
    SetOptions {
        /// The volume.
        name: String,
        /// Key -> value.
        options: BTreeMap<String, String>,
    },
    /// Drop one option, or all (`key` None), back to defaults.
    ResetOptions {
        /// The volume.
        name: String,
        /// The key, or every key.
        key: Option<String>,
    },
    /// Run the pool at another op-version (every peer must support it).
    SetOpVersion {
        /// The new op-version.
        op_version: u32,
    },
    /// `volume add-brick`: more bricks at the end of a distributed volume. Existing
    /// directories keep their layouts (the new bricks hold no range there until a
    /// fix-layout); new directories spread over every brick.
    AddBricks {
        /// The volume.
        name: String,
        /// The new bricks, in order.
        bricks: Vec<Brick>,
    },
    /// `volume replace-brick ... commit force`: brick `index` of a replicated volume is now
    /// `brick`, keeping the old one's number (so its client name, which the replication
    /// changelogs are named after, stays); self-heal fills it.
    ReplaceBrick {
        /// The volume.
        name: String,
        /// Which brick.
        index: usize,
        /// `HOST:/PATH` of the brick it replaces: the command applies only while brick
        /// `index` is still that one (two replacements of one brick: the first wins).
        old: String,
        /// The new brick.
        brick: Brick,
    },
    /// `remove-brick ... start`: these bricks (indexes) get no hash range any more and
    /// their files are moved off.
    StartRemoveBricks {
        /// The volume.
        name: String,
        /// The bricks, by index.
        bricks: Vec<usize>,
    },
    /// `remove-brick ... stop`: the bricks being removed stay in the volume.
    StopRemoveBricks {
        /// The volume.
        name: String,
    },
    /// `remove-brick ... commit`: the bricks being removed leave the volume.
    CommitRemoveBricks {
        /// The volume.
        name: String,
        /// The bricks, by index (must be the ones being removed).
        bricks: Vec<usize>,
    },
}

/// What applying a command gave: a message on success, the reason on refusal.
pub type Outcome = Result<String, String>;

/// Everything the pool agrees on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolState {
    /// The op-version the pool runs at (0 before the first node sets it).
    pub op_version: u32,
    /// Nodes by id.
    pub peers: BTreeMap<u64, Peer>,
    /// Volumes by name.
    pub volumes: BTreeMap<String, Volume>,
}

/// True when `a` is `b` or a folder inside it (as paths, component by component).
pub fn path_within(a: &str, b: &str) -> bool {
    let a = std::path::Path::new(a);
    let b = std::path::Path::new(b);
    a.starts_with(b)
}

impl PoolState {
    /// The volume named `name`, or the error every command gives for a missing one.
    pub fn volume(&self, name: &str) -> Result<&Volume, String> {
        self.volumes
            .get(name)
            .ok_or_else(|| format!("volume {name} does not exist"))
    }

    /// The peer known by `host` (its host name, or its uuid).
    pub fn peer_by_host(&self, host: &str) -> Option<&Peer> {
        self.peers
            .values()
            .find(|p| p.host == host || p.uuid == host)
    }

    /// The volume (and brick) that already uses `path` on `node`, or holds it inside one of
    /// its bricks, or has a brick inside it.
    pub fn brick_conflict(&self, node: u64, path: &str) -> Option<(String, String)> {
        self.volumes.values().find_map(|v| {
            v.bricks.iter().find_map(|b| {
                (b.node == node && (path_within(path, &b.path) || path_within(&b.path, path)))
                    .then(|| (v.name.clone(), b.spec()))
            })
        })
    }

    /// Applies a committed command: deterministic, never panics.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        match cmd {
            Command::AddPeer(p) => {
                if self.op_version == 0 {
                    self.op_version = OP_VERSION.min(p.max_op_version);
                }
                if let Some(other) = self
                    .peers
                    .values()
                    .find(|o| o.host == p.host && o.id != p.id)
                {
                    return Err(format!(
                        "host {} is already peer {} of the pool",
                        p.host, other.uuid
                    ));
                }
                self.peers.insert(p.id, p.clone());
                Ok(format!("peer {} added", p.host))
            }
            Command::RemovePeer { id } => {
                let Some(p) = self.peers.get(id) else {
                    return Err(format!("node {id} is not in the pool"));
                };
                let used: Vec<String> = self
                    .volumes
                    .values()
                    .filter(|v| v.bricks.iter().any(|b| b.node == *id))
                    .map(|v| v.name.clone())
                    .collect();
                if !used.is_empty() {
                    return Err(format!(
                        "peer {} holds bricks of volume(s) {}; remove or replace them first",
                        p.host,
                        used.join(", ")
                    ));
                }
                let host = p.host.clone();
                self.peers.remove(id);
                Ok(format!("peer {host} detached"))
            }
            Command::CreateVolume(v) => {
                if self.volumes.contains_key(&v.name) {
                    return Err(format!("volume {} already exists", v.name));
                }
                for (i, b) in v.bricks.iter().enumerate() {
                    if !self.peers.contains_key(&b.node) {
                        return Err(format!("host {} is not in the pool", b.host));
                    }
                    if let Some((vol, other)) = self.brick_conflict(b.node, &b.path) {
                        return Err(format!(
                            "brick {} overlaps brick {other} of volume {vol}",
                            b.spec()
                        ));
                    }
                    for o in &v.bricks[..i] {
                        if o.node == b.node
                            && (path_within(&o.path, &b.path) || path_within(&b.path, &o.path))
                        {
                            return Err(format!("bricks {} and {} overlap", o.spec(), b.spec()));
                        }
                    }
                }
                let mut v = v.clone();
                v.status = VolumeStatus::Created;
                v.version = 1;
                let name = v.name.clone();
                self.volumes.insert(name.clone(), v);
                Ok(format!("volume create: {name}: success"))
            }
            Command::StartVolume { name, force } => {
                let Some(v) = self.volumes.get_mut(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                if v.status == VolumeStatus::Started && !force {
                    return Err(format!("volume {name} already started"));
                }
                v.status = VolumeStatus::Started;
                Ok(format!("volume start: {name}: success"))
            }
            Command::StopVolume { name } => {
                let Some(v) = self.volumes.get_mut(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                if v.status != VolumeStatus::Started {
                    return Err(format!("volume {name} is not in the started state"));
                }
                v.status = VolumeStatus::Stopped;
                Ok(format!("volume stop: {name}: success"))
            }
            Command::DeleteVolume { name } => {
                let Some(v) = self.volumes.get(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                if v.status == VolumeStatus::Started {
                    return Err(format!(
                        "volume {name} has been started; stop it before deleting it"
                    ));
                }
                self.volumes.remove(name);
                Ok(format!("volume delete: {name}: success"))
            }
            Command::SetOptions { name, options } => {
                let Some(v) = self.volumes.get_mut(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                for (k, val) in options {
                    v.options.insert(k.clone(), val.clone());
                }
                v.version += 1;
                Ok(format!("volume set: {name}: success"))
            }
            Command::ResetOptions { name, key } => {
                let Some(v) = self.volumes.get_mut(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                match key {
                    Some(k) => {
                        if v.options.remove(k).is_none() {
                            return Err(format!("option {k} is not set on volume {name}"));
                        }
                    }
                    None => v.options.clear(),
                }
                v.version += 1;
                Ok(format!("volume reset: {name}: success"))
            }
            Command::AddBricks { name, bricks } => {
                let Some(v) = self.volumes.get(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                if v.layout != Layout::Distribute {
                    return Err(format!(
                        "volume {name} is a {} volume; only distributed volumes take add-brick",
                        v.layout.type_name(v.bricks.len())
                    ));
                }
                if bricks.is_empty() {
                    return Err("add-brick needs at least one brick".into());
                }
                for (i, b) in bricks.iter().enumerate() {
                    if !self.peers.contains_key(&b.node) {
                        return Err(format!("host {} is not in the pool", b.host));
                    }
                    if let Some((vol, other)) = self.brick_conflict(b.node, &b.path) {
                        return Err(format!(
                            "brick {} overlaps brick {other} of volume {vol}",
                            b.spec()
                        ));
                    }
                    for o in &bricks[..i] {
                        if o.node == b.node
                            && (path_within(&o.path, &b.path) || path_within(&b.path, &o.path))
                        {
                            return Err(format!("bricks {} and {} overlap", o.spec(), b.spec()));
                        }
                    }
                }
                if !v.removing.is_empty() {
                    return Err(format!(
                        "bricks of volume {name} are being removed; commit or stop that first"
                    ));
                }
                let v = self.volumes.get_mut(name).expect("checked above");
                let first = v.next_brick_number();
                v.bricks
                    .extend(bricks.iter().enumerate().map(|(k, b)| Brick {
                        number: Some(first + k as u32),
                        ..b.clone()
                    }));
                v.version += 1;
                Ok(format!("volume add-brick: {name}: success"))
            }
            Command::ReplaceBrick {
                name,
                index,
                old,
                brick,
            } => {
                let Some(v) = self.volumes.get(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                if !matches!(v.layout, Layout::Replicate { .. }) {
                    return Err(format!(
                        "volume {name} is a {} volume; only replicated volumes take replace-brick",
                        v.layout.type_name(v.bricks.len())
                    ));
                }
                if v.bricks.get(*index).map(Brick::spec).as_deref() != Some(old.as_str()) {
                    return Err(format!("{old} is no longer a brick of volume {name}"));
                }
                if !self.peers.contains_key(&brick.node) {
                    return Err(format!("host {} is not in the pool", brick.host));
                }
                if let Some((vol, other)) = self.brick_conflict(brick.node, &brick.path) {
                    return Err(format!(
                        "brick {} overlaps brick {other} of volume {vol}",
                        brick.spec()
                    ));
                }
                let v = self.volumes.get_mut(name).expect("checked above");
                let number = v.brick_number(*index);
                v.bricks[*index] = Brick {
                    number: Some(number),
                    ..brick.clone()
                };
                v.version += 1;
                Ok(format!(
                    "volume replace-brick: {name}: success: brick {} is now {}",
                    number,
                    brick.spec()
                ))
            }
            Command::StartRemoveBricks { name, bricks } => {
                let Some(v) = self.volumes.get_mut(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                if v.layout != Layout::Distribute {
                    return Err(format!(
                        "volume {name} is a {} volume; only distributed volumes lose bricks here",
                        v.layout.type_name(v.bricks.len())
                    ));
                }
                let mut want = bricks.clone();
                want.sort_unstable();
                want.dedup();
                if want.is_empty() || want.iter().any(|&i| i >= v.bricks.len()) {
                    return Err("remove-brick needs bricks of the volume".into());
                }
                if want.len() >= v.bricks.len() {
                    return Err("remove-brick cannot remove every brick (delete the volume)".into());
                }
                if !v.removing.is_empty() && v.removing != want {
                    return Err(format!(
                        "other bricks of volume {name} are being removed; commit or stop that first"
                    ));
                }
                v.removing = want;
                v.version += 1;
                Ok(format!("volume remove-brick start: {name}: success"))
            }
            Command::StopRemoveBricks { name } => {
                let Some(v) = self.volumes.get_mut(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                if v.removing.is_empty() {
                    return Err(format!("no bricks of volume {name} are being removed"));
                }
                v.removing.clear();
                v.version += 1;
                Ok(format!("volume remove-brick stop: {name}: success"))
            }
            Command::CommitRemoveBricks { name, bricks } => {
                let Some(v) = self.volumes.get_mut(name) else {
                    return Err(format!("volume {name} does not exist"));
                };
                let mut want = bricks.clone();
                want.sort_unstable();
                want.dedup();
                if v.removing.is_empty() || v.removing != want {
                    return Err(format!(
                        "those bricks of volume {name} are not being removed (remove-brick ... start first)"
                    ));
                }
                for &i in want.iter().rev() {
                    v.bricks.remove(i);
                }
                v.removing.clear();
                v.version += 1;
                Ok(format!("volume remove-brick commit: {name}: success"))
            }
            Command::SetOpVersion { op_version } => {
                if let Some(p) = self.peers.values().find(|p| p.max_op_version < *op_version) {
                    return Err(format!(
                        "peer {} supports op-version {} at most, not {op_version}",
                        p.host, p.max_op_version
                    ));
                }
                if *op_version < self.op_version {
                    return Err(format!(
                        "the pool runs at op-version {}; it cannot go back to {op_version}",
                        self.op_version
                    ));
                }
                self.op_version = *op_version;
                Ok(format!("op-version {op_version}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, host: &str) -> Peer {
        Peer {
            id,
            uuid: format!("uuid-{id}"),
            host: host.into(),
            mgmt_port: 24100,
            brick_port: 24101,
            max_op_version: OP_VERSION,
        }
    }

    fn vol(name: &str, node: u64, path: &str) -> Volume {
        Volume {
            removing: Vec::new(),
            name: name.into(),
            id: format!("id-{name}"),
            layout: Layout::Distribute,
            bricks: vec![Brick {
                node,
                host: format!("h{node}"),
                path: path.into(),
                number: None,
            }],
            status: VolumeStatus::Created,
            options: BTreeMap::new(),
            version: 0,
        }
    }

    #[test]
    fn replace_brick_keeps_the_number_and_applies_once() {
        let mut s = PoolState::default();
        s.apply(&Command::AddPeer(peer(1, "h1"))).unwrap();
        s.apply(&Command::AddPeer(peer(2, "h2"))).unwrap();
        let mut v = vol("r", 1, "/b/0");
        v.layout = Layout::Replicate {
            replica: 2,
            arbiter: false,
        };
        v.bricks.push(Brick {
            node: 2,
            host: "h2".into(),
            path: "/b/1".into(),
            number: None,
        });
        s.apply(&Command::CreateVolume(v)).unwrap();
        let new = |p: &str| Brick {
            node: 2,
            host: "h2".into(),
            path: p.into(),
            number: None,
        };
        let replace = |old: &str, p: &str| Command::ReplaceBrick {
            name: "r".into(),
            index: 1,
            old: old.into(),
            brick: new(p),
        };
        s.apply(&replace("h2:/b/1", "/c/1")).unwrap();
        let v = &s.volumes["r"];
        assert_eq!(v.bricks[1].spec(), "h2:/c/1");
        assert_eq!(v.client_name(1), "r-client-1");
        // A second replacement of the same old brick (a retry, another admin) is refused.
        let e = s.apply(&replace("h2:/b/1", "/d/1")).unwrap_err();
        assert!(e.contains("no longer a brick"), "{e}");
        assert_eq!(s.volumes["r"].bricks[1].spec(), "h2:/c/1");
        // A brick of another volume is refused.
        s.apply(&Command::CreateVolume(vol("other", 2, "/e/0")))
            .unwrap();
        let e = s.apply(&replace("h2:/c/1", "/e/0")).unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
    }

    #[test]
    fn bricks_keep_their_names_when_others_leave() {
        let mut s = PoolState::default();
        s.apply(&Command::AddPeer(peer(1, "h1"))).unwrap();
        s.apply(&Command::CreateVolume(vol("a", 1, "/b/0")))
            .unwrap();
        let more = |p: &str| Brick {
            node: 1,
            host: "h1".into(),
            path: p.into(),
            number: None,
        };
        s.apply(&Command::AddBricks {
            name: "a".into(),
            bricks: vec![more("/b/1"), more("/b/2")],
        })
        .unwrap();
        let names = |s: &PoolState| {
            let v = &s.volumes["a"];
            (0..v.bricks.len())
                .map(|i| (v.brick_name(i), v.client_name(i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&s)[2], ("a-brick2".into(), "a-client-2".into()));
        s.apply(&Command::StartRemoveBricks {
            name: "a".into(),
            bricks: vec![1],
        })
        .unwrap();
        let e = s
            .apply(&Command::AddBricks {
                name: "a".into(),
                bricks: vec![more("/b/3")],
            })
            .unwrap_err();
        assert!(e.contains("being removed"), "{e}");
        s.apply(&Command::CommitRemoveBricks {
            name: "a".into(),
            bricks: vec![1],
        })
        .unwrap();
        assert_eq!(
            names(&s),
            [
                ("a-brick0".into(), "a-client-0".into()),
                ("a-brick2".into(), "a-client-2".into())
            ]
        );
        s.apply(&Command::AddBricks {
            name: "a".into(),
            bricks: vec![more("/b/3")],
        })
        .unwrap();
        assert_eq!(names(&s)[2], ("a-brick3".into(), "a-client-3".into()));
        assert!(s.volumes["a"].removing.is_empty());
    }

    #[test]
    fn the_first_create_of_a_name_wins() {
        let mut s = PoolState::default();
        s.apply(&Command::AddPeer(peer(1, "h1"))).unwrap();
        s.apply(&Command::CreateVolume(vol("a", 1, "/b/1")))
            .unwrap();
        let e = s
            .apply(&Command::CreateVolume(vol("a", 1, "/b/2")))
            .unwrap_err();
        assert_eq!(e, "volume a already exists");
        assert_eq!(s.volumes["a"].bricks[0].path, "/b/1");
    }

    #[test]
    fn bricks_inside_bricks_are_refused_both_ways() {
        let mut s = PoolState::default();
        s.apply(&Command::AddPeer(peer(1, "h1"))).unwrap();
        s.apply(&Command::AddPeer(peer(2, "h2"))).unwrap();
        s.apply(&Command::CreateVolume(vol("a", 1, "/b/1")))
            .unwrap();
        assert!(s
            .apply(&Command::CreateVolume(vol("x", 1, "/b/1/sub")))
            .unwrap_err()
            .contains("overlaps brick h1:/b/1 of volume a"));
        assert!(s.apply(&Command::CreateVolume(vol("y", 1, "/b"))).is_err());
        // The same path on another node is another brick; a sibling with a common
        // prefix is not inside.
        s.apply(&Command::CreateVolume(vol("z", 2, "/b/1")))
            .unwrap();
        s.apply(&Command::CreateVolume(vol("w", 1, "/b/10")))
            .unwrap();
    }

    #[test]
    fn lifecycle_rules() {
        let mut s = PoolState::default();
        s.apply(&Command::AddPeer(peer(1, "h1"))).unwrap();
        s.apply(&Command::CreateVolume(vol("a", 1, "/b/1")))
            .unwrap();
        assert!(s.apply(&Command::StopVolume { name: "a".into() }).is_err());
        s.apply(&Command::StartVolume {
            name: "a".into(),
            force: false,
        })
        .unwrap();
        assert!(s
            .apply(&Command::StartVolume {
                name: "a".into(),
                force: false
            })
            .unwrap_err()
            .contains("already started"));
        assert!(s
            .apply(&Command::DeleteVolume { name: "a".into() })
            .unwrap_err()
            .contains("stop it"));
        assert!(s
            .apply(&Command::RemovePeer { id: 1 })
            .unwrap_err()
            .contains("holds bricks"));
        s.apply(&Command::StopVolume { name: "a".into() }).unwrap();
        s.apply(&Command::DeleteVolume { name: "a".into() })
            .unwrap();
        assert!(s.volumes.is_empty());
        s.apply(&Command::RemovePeer { id: 1 }).unwrap();
    }

    #[test]
    fn options_bump_the_version() {
        let mut s = PoolState::default();
        s.apply(&Command::AddPeer(peer(1, "h1"))).unwrap();
        s.apply(&Command::CreateVolume(vol("a", 1, "/b/1")))
            .unwrap();
        let v0 = s.volumes["a"].version;
        let mut o = BTreeMap::new();
        o.insert("performance.write-behind".to_string(), "off".to_string());
        s.apply(&Command::SetOptions {
            name: "a".into(),
            options: o,
        })
        .unwrap();
        assert_eq!(s.volumes["a"].version, v0 + 1);
        assert!(s
            .apply(&Command::ResetOptions {
                name: "a".into(),
                key: Some("nope".into())
            })
            .is_err());
        s.apply(&Command::ResetOptions {
            name: "a".into(),
            key: None,
        })
        .unwrap();
        assert!(s.volumes["a"].options.is_empty());
    }
}
