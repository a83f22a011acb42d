//! The pool side of self-heal: `volume heal` commands and the self-heal daemon's tick
//! (the heal work itself is [`crate::heal`]).

use std::collections::BTreeMap;

use crate::heal::{self, HealInfo};
use crate::model::{Layout, PoolState, Volume, VolumeStatus};
use crate::tasks::{StartTaskRequest, TaskRecord, TaskState};
use crate::types::{HealRequest, SplitBrainRequest};
use crate::volgen;

use super::{consensus_err, futures_join, Node, OpError, OpResult};

/// How long the self-heal daemon waits before trying again a volume whose pending count
/// and reachable bricks have not changed.
const SHD_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

/// What the self-heal daemon saw of a volume when it last started a heal of it.
struct ShdSeen {
    pending: usize,
    /// Per brick: whether its brick process accepted a connection.
    reachable: Vec<bool>,
    at: std::time::Instant,
}

/// Per volume: what the self-heal daemon saw when it last started on it.
static SHD_LAST: parking_lot::Mutex<BTreeMap<String, ShdSeen>> =
    parking_lot::Mutex::new(BTreeMap::new());

/// Per brick of `v`: whether its node's brick process accepts a TCP connection now (within
/// 300 ms). A brick coming back is what lets pending entries heal, so the self-heal
/// daemon tries again at once when this changes.
async fn reachable_bricks(state: &crate::model::PoolState, v: &crate::model::Volume) -> Vec<bool> {
    let probes = v.bricks.iter().map(|b| {
        let port = state.peers.get(&b.node).map(|p| p.brick_port);
        let host = b.host.clone();
        async move {
            let Some(port) = port else { return false };
            matches!(
                tokio::time::timeout(
                    std::time::Duration::from_millis(300),
                    tokio::net::TcpStream::connect((host.as_str(), port)),
                )
                .await,
                Ok(Ok(_))
            )
        }
    });
    futures::future::join_all(probes).await
}

impl Node {
    /// The replicated, started volume `name`, or the error `fail` words.
    fn need_replicated(
        state: &PoolState,
        name: &str,
        fail: &dyn Fn(String) -> String,
    ) -> OpResult<Volume> {
        let v = Self::need_volume(state, name)?;
        if !matches!(v.layout, Layout::Replicate { .. }) {
            return Err(OpError::bad(fail(format!(
                "{name} is not a replicated volume (it is {}); only replicated volumes heal",
                v.layout.type_name(v.bricks.len())
            ))));
        }
        if v.status != VolumeStatus::Started {
            return Err(OpError::conflict(fail(format!(
                "volume {name} is not started"
            ))));
        }
        Ok(v)
    }

    /// The task request of node `node`'s part of a heal of `v`, if it holds bricks.
    fn heal_request(
        state: &PoolState,
        v: &Volume,
        node: u64,
        full: bool,
        throttle: u64,
    ) -> Result<Option<StartTaskRequest>, String> {
        let local: Vec<usize> = (0..v.bricks.len())
            .filter(|&i| v.bricks[i].node == node)
            .collect();
        if local.is_empty() {
            return Ok(None);
        }
        let volfile = volgen::heal_volfile(state, v).map_err(|e| e.to_string())?;
        let plan = heal::local_plan(&heal::sets(v), &local);
        Ok(Some(StartTaskRequest {
            kind: heal::HEAL.into(),
            volume: Some(v.name.clone()),
            params: serde_json::json!({
                "volfile": volfile,
                "local": plan,
                "full": full,
            }),
            throttle,
        }))
    }

    /// `volume heal NAME [full]`: a heal task on every node holding bricks of the volume.
    pub async fn heal_start(&self, name: &str, req: HealRequest) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let fail = |m: String| format!("volume heal: {name}: failed: {m}");
        let v = Self::need_replicated(&state, name, &fail)?;
        let mut started = Vec::new();
        let mut missed = Vec::new();
        let nodes: BTreeMap<u64, String> =
            v.bricks.iter().map(|b| (b.node, b.host.clone())).collect();
        for (node, host) in nodes {
            let sreq = Self::heal_request(&state, &v, node, req.full, req.throttle)
                .map_err(|e| OpError::bad(fail(e)))?;
            let Some(sreq) = sreq else { continue };
            let r = if node == self.me.id {
                self.tasks.start(sreq).map_err(|e| e.to_string())
            } else {
                match state.peers.get(&node) {
                    Some(p) => self
                        .peers
                        .start_task(&Self::peer_base(p), &self.token(), &sreq)
                        .await
                        .map_err(|e| e.message),
                    None => Err("not in the pool".into()),
                }
            };
            match r {
                Ok(rec) => started.push(format!("{host} (task {})", rec.id)),
                Err(e) => missed.push(format!("{host}: {e}")),
            }
        }
        if started.is_empty() {
            return Err(OpError::unavailable(fail(format!(
                "no node holding its bricks could start a heal: {}",
                missed.join("; ")
            ))));
        }
        let mut out = format!(
            "volume heal: {name}: {} started on {}; `weft volume heal {name} info` shows what is left",
            if req.full { "full heal" } else { "heal" },
            started.join(", ")
        );
        if !missed.is_empty() {
            out.push_str(&format!(
                " (not started on {}: their bricks heal when they return)",
                missed.join("; ")
            ));
        }
        Ok(out)
    }

    /// The latest heal task of volume `name` on every node (`volume heal NAME status`).
    pub async fn heal_tasks(&self, name: &str) -> OpResult<Vec<TaskRecord>> {
        let state = self.state();
        Self::need_volume(&state, name)?;
        let asks = state.peers.values().map(|p| {
            let base = Self::peer_base(p);
            let me = p.id == self.me.id;
            async move {
                if me {
                    Ok(self.tasks.list())
                } else {
                    self.peers.tasks(&base).await
                }
            }
        });
        let mut out = Vec::new();
        for ts in futures_join(asks).await.into_iter().flatten() {
            if let Some(t) = ts
                .into_iter()
                .find(|t| t.kind == heal::HEAL && t.volume.as_deref() == Some(name))
            {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// `volume heal NAME info [summary|split-brain]`.
    pub async fn heal_info(&self, name: &str, which: &str) -> OpResult<HealInfo> {
        let state = self.state();
        let fail = |m: String| format!("volume heal: {name}: failed: {m}");
        if !["all", "summary", "split-brain"].contains(&which) {
            return Err(OpError::bad(fail(format!(
                "info {which:?}: say info, info summary or info split-brain"
            ))));
        }
        let v = Self::need_replicated(&state, name, &fail)?;
        let volfile =
            volgen::heal_volfile(&state, &v).map_err(|e| OpError::bad(fail(e.to_string())))?;
        let vol = heal::open(&volfile)
            .await
            .map_err(|e| OpError::unavailable(fail(e)))?;
        let bricks = heal::info(&vol, &heal::sets(&v), which).await;
        vol.close().await;
        Ok(HealInfo {
            volume: name.to_string(),
            bricks,
        })
    }

    /// `volume heal NAME split-brain bigger-file FILE | latest-mtime FILE |
    /// source-brick HOST:BRICK [FILE]`.
    pub async fn heal_split_brain(&self, name: &str, req: SplitBrainRequest) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let fail = |m: String| format!("volume heal: {name}: split-brain: failed: {m}");
        let v = Self::need_replicated(&state, name, &fail)?;
        let plan = heal::sets(&v);
        let brick =
            match (&req.policy[..], &req.brick) {
                ("source-brick", Some(b)) => {
                    let found = plan.iter().find_map(|s| {
                        s.children
                            .iter()
                            .find(|c| c.1 == *b)
                            .map(|c| (s.name.clone(), c.0.clone()))
                    });
                    Some(found.ok_or_else(|| {
                        OpError::bad(fail(format!("{b} is not a brick of {name}")))
                    })?)
                }
                ("source-brick", None) => {
                    return Err(OpError::bad(fail("source-brick needs HOST:BRICK".into())))
                }
                ("bigger-file" | "latest-mtime", _) if req.file.is_none() => {
                    return Err(OpError::bad(fail(format!("{} needs FILE", req.policy))))
                }
                ("bigger-file" | "latest-mtime", _) => None,
                (p, _) => {
                    return Err(OpError::bad(fail(format!(
                        "{p:?}: the policies are bigger-file, latest-mtime and source-brick"
                    ))))
                }
            };
        let volfile =
            volgen::heal_volfile(&state, &v).map_err(|e| OpError::bad(fail(e.to_string())))?;
        let vol = heal::open(&volfile)
            .await
            .map_err(|e| OpError::unavailable(fail(e)))?;
        // Whether a file is in split-brain shows only with both sides connected.
        let names: Vec<String> = plan
            .iter()
            .flat_map(|s| s.children.iter().map(|c| c.0.clone()))
            .collect();
        heal::wait_connected(&vol, &names).await;
        let r = self
            .resolve_in(&vol, &plan, &req, brick.as_ref(), &fail)
            .await;
        vol.close().await;
        r
    }

    async fn resolve_in(
        &self,
        vol: &weft_client::Volume,
        plan: &[heal::SetPlan],
        req: &SplitBrainRequest,
        brick: Option<&(String, String)>,
        fail: &(dyn Fn(String) -> String + Sync),
    ) -> OpResult<String> {
        let how = match brick {
            Some((_, child)) => format!("source-brick {child}"),
            None => req.policy.clone(),
        };
        let g = vol.graph().clone();
        // The inodes to resolve: the file named, or every split-brain entry of the set.
        let mut targets = Vec::new();
        match &req.file {
            Some(f) => {
                let path = if f.starts_with('/') {
                    f.clone()
                } else {
                    format!("/{f}")
                };
                let (set, gfid) = heal::locate(vol, plan, &path)
                    .await
                    .map_err(|e| OpError::not_found(fail(e)))?;
                if let Some((bset, _)) = brick {
                    if *bset != set {
                        return Err(OpError::bad(fail(format!(
                            "{path} is not in the replica set of that brick"
                        ))));
                    }
                }
                targets.push((set, gfid, path));
            }
            None => {
                let (set, child) = brick.expect("source-brick without FILE has a brick");
                let rep = g
                    .get(set)
                    .cloned()
                    .ok_or_else(|| OpError::bad(fail("no such set".into())))?;
                let c = g
                    .get(child)
                    .cloned()
                    .ok_or_else(|| OpError::bad(fail("no such brick".into())))?;
                let list = heal::list_index(&c, 100_000).await.map_err(|e| {
                    OpError::unavailable(fail(format!("reading the brick's index: {e}")))
                })?;
                for gf in list {
                    if heal::status(&rep, gf)
                        .await
                        .is_ok_and(|s| s.contains("split-brain"))
                    {
                        targets.push((set.clone(), gf, format!("<gfid:{gf}>")));
                    }
                }
            }
        }
        let mut done = Vec::new();
        for (set, gf, shown) in targets {
            let rep = g
                .get(&set)
                .cloned()
                .ok_or_else(|| OpError::bad(fail("no such set".into())))?;
            let before = heal::status(&rep, gf).await.unwrap_or_default();
            if !before.contains("split-brain") {
                if req.file.is_some() {
                    return Err(OpError::bad(fail(format!(
                        "{shown} is not in split-brain ({before})"
                    ))));
                }
                continue;
            }
            heal::resolve(&rep, gf, &how).await.map_err(|e| match (e, brick) {
                (weft_core::Errno::EINVAL, Some((_, child))) => OpError::bad(fail(format!(
                    "{child} cannot be the source of {shown}: it is the set's arbiter, which holds no file data (choose a data brick)"
                ))),
                _ => OpError::unavailable(fail(format!("resolving {shown} failed: {e}"))),
            })?;
            done.push(shown);
        }
        Ok(format!(
            "volume heal: split-brain resolved by {how} for {}",
            if done.is_empty() {
                "nothing (no entry was in split-brain)".to_string()
            } else {
                done.join(", ")
            }
        ))
    }

    /// The self-heal daemon's tick: starts a heal task for every started replicated
    /// volume with pending entries in a local brick's index and no heal task running here.
    pub async fn shd_tick(&self) {
        let state = self.state();
        for v in state.volumes.values() {
            if !matches!(v.layout, Layout::Replicate { .. })
                || v.status != VolumeStatus::Started
                || v.options
                    .get("cluster.self-heal-daemon")
                    .map(String::as_str)
                    == Some("off")
            {
                continue;
            }
            let pending: usize = v
                .bricks
                .iter()
                .filter(|b| b.node == self.me.id)
                .map(|b| heal::local_index_count(std::path::Path::new(&b.path)))
                .sum();
            if pending == 0 {
                continue;
            }
            let busy = self.tasks.list().iter().any(|t| {
                t.kind == heal::HEAL
                    && t.volume.as_deref() == Some(v.name.as_str())
                    && matches!(t.state, TaskState::Running | TaskState::Paused)
            });
            if busy {
                continue;
            }
            let reachable = reachable_bricks(&state, v).await;
            {
                // While a replica is down its entries stay: look again when the count or
                // the reachable bricks change, or after SHD_RETRY.
                let mut last = SHD_LAST.lock();
                match last.get(&v.name) {
                    Some(seen)
                        if seen.pending == pending
                            && seen.reachable == reachable
                            && seen.at.elapsed() < SHD_RETRY =>
                    {
                        continue
                    }
                    _ => {
                        last.insert(
                            v.name.clone(),
                            ShdSeen {
                                pending,
                                reachable,
                                at: std::time::Instant::now(),
                            },
                        );
                    }
                }
            }
            match Self::heal_request(&state, v, self.me.id, false, 0) {
                Ok(Some(req)) => match self.tasks.start(req) {
                    Ok(r) => tracing::info!(
                        "self-heal daemon: {pending} entries pending on {}'s bricks here: heal task {}",
                        v.name,
                        r.id
                    ),
                    Err(e) => tracing::warn!("self-heal daemon: cannot start a heal of {}: {e}", v.name),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!("self-heal daemon: {}: {e}", v.name),
            }
        }
    }
}
