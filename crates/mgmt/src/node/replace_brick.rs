//! `volume replace-brick NAME OLD NEW commit force`: a brick of a replicated volume moves to
//! a new, empty directory (a failed disk, another node), and self-heal fills it.
//!
//! The new brick keeps the old one's number, so its client name, which the replication
//! changelogs are named after, stays. The root directory of every other brick of its
//! replica set is marked as accusing that slot of missing names and metadata twice: just
//! before the swap, so the new brick is a sink for the root from its first moment (no
//! client lists the root from it or takes its empty word for a name), and right after the
//! swap commits, because a heal in between may have settled the first mark against the old
//! brick (whose names matched). A mark too many only costs a heal that finds nothing to
//! do. Then the bricks are served and a full heal starts on every node: entry heal makes
//! each name on the new brick (and marks each new file's data and metadata, and each new
//! directory's names, pending on its source), which the heal passes follow down the tree.

use weft_core::*;

use crate::heal;
use crate::model::{Brick, Command};
use crate::types::{HealRequest, ReplaceBrickRequest};
use crate::volgen;

use super::{consensus_err, Node, OpError, OpResult};

impl Node {
    /// `volume replace-brick NAME OLD NEW commit force` (see the module docs).
    pub async fn replace_brick(&self, name: &str, req: ReplaceBrickRequest) -> OpResult<String> {
        let state = self
            .consensus
            .read_consistent()
            .await
            .map_err(consensus_err)?;
        let fail = |m: String| format!("volume replace-brick: {name}: failed: {m}");
        let v = Self::need_volume(&state, name)?;
        if !matches!(v.layout, crate::model::Layout::Replicate { .. }) {
            return Err(OpError::bad(fail(format!(
                "replace-brick is for replicated volumes (it relies on self-heal to fill the new brick); {name} is a {} volume",
                v.layout.type_name(v.bricks.len())
            ))));
        }
        if v.status != crate::model::VolumeStatus::Started {
            return Err(OpError::conflict(fail(format!(
                "volume {name} is not started (self-heal fills the new brick from the others)"
            ))));
        }
        let Some(index) = v.bricks.iter().position(|b| b.spec() == req.old) else {
            return Err(OpError::bad(fail(format!(
                "{} is not a brick of {name} (its bricks: {})",
                req.old,
                v.bricks
                    .iter()
                    .map(Brick::spec)
                    .collect::<Vec<_>>()
                    .join(" ")
            ))));
        };
        let new = self.brick_at(&state, &req.new, &fail)?;
        if new.spec() == req.old {
            return Err(OpError::bad(fail(
                "the new brick is the old one; give a new, empty directory".into(),
            )));
        }
        if let Some((vol, other)) = state.brick_conflict(new.node, &new.path) {
            return Err(OpError::conflict(fail(format!(
                "brick {} overlaps brick {other} of volume {vol}",
                new.spec()
            ))));
        }
        let replica = match v.layout {
            crate::model::Layout::Replicate { replica, .. } => replica.max(1) as usize,
            _ => 1,
        };
        let set = index / replica;
        let members: Vec<usize> = (set * replica..(set + 1) * replica)
            .filter(|&i| i != index)
            .collect();
        if !req.force && members.iter().any(|&i| v.bricks[i].node == new.node) {
            return Err(OpError::bad(fail(format!(
                "{} is on a node that already holds a brick of the same replica set; this is not recommended, use force to do it anyway",
                new.spec()
            ))));
        }
        self.check_bricks_on(&state, new.node, vec![new.path.clone()], req.force, &fail)
            .await?;
        let volfile =
            volgen::heal_volfile(&state, &v).map_err(|e| OpError::bad(fail(e.to_string())))?;
        let vol = heal::open(&volfile)
            .await
            .map_err(|e| OpError::unavailable(fail(e)))?;
        let names: Vec<String> = members.iter().map(|&i| v.client_name(i)).collect();
        heal::wait_connected(&vol, &names).await;
        if let Err(e) = accuse_slot(&vol, &v, index, &members).await {
            vol.close().await;
            return Err(OpError::unavailable(fail(e)));
        }
        let m = self
            .propose(Command::ReplaceBrick {
                name: name.to_string(),
                index,
                old: req.old.clone(),
                brick: new.clone(),
            })
            .await;
        if m.is_ok() {
            if let Err(e) = accuse_slot(&vol, &v, index, &members).await {
                tracing::warn!("replace-brick {name}: marking the new brick after the swap: {e}");
            }
        }
        vol.close().await;
        let m = m?;
        self.wait_online(name, &new.spec()).await;
        let heal = self
            .heal_start(
                name,
                HealRequest {
                    full: true,
                    throttle: 0,
                },
            )
            .await
            .unwrap_or_else(|e| {
                format!(
                    "the heal did not start ({}); run `weft volume heal {name} full`",
                    e.message
                )
            });
        Ok(format!("{m}\n{heal}"))
    }
}

/// Marks the root of each brick in `members` (the other bricks of brick `index`'s set),
/// through `vol` (the volume's heal graph), as accusing brick `index` of missing metadata
/// and names. At least one must take it: the new brick is filled from them.
async fn accuse_slot(
    vol: &weft_client::Volume,
    v: &crate::model::Volume,
    index: usize,
    members: &[usize],
) -> Result<(), String> {
    let names: Vec<String> = members.iter().map(|&i| v.client_name(i)).collect();
    let g = vol.graph().clone();
    let slot = v.client_name(index);
    // Every counter of the set named (the brick's index follows the values).
    let mut attrs = XattrMap::new();
    for i in members.iter().copied().chain([index]) {
        let d: [i64; 3] = if i == index { [0, 1, 1] } else { [0; 3] };
        attrs.insert(
            weft_cluster::replicate::changelog::key(&v.client_name(i)),
            weft_cluster::replicate::changelog::encode(d),
        );
    }
    let mut marked = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let Some(c) = g.get(name).cloned() else {
            continue;
        };
        match c
            .xattrop(
                &Ctx::internal(),
                &Loc::root(),
                XattropOp::AddArray32,
                &attrs,
                heal::ixd(),
            )
            .await
        {
            Ok(_) => marked.push(name.clone()),
            Err(e) => errors.push(format!("{name}: {e}")),
        }
    }
    if marked.is_empty() {
        return Err(format!(
            "no other brick of {slot}'s replica set is up to heal the new brick from ({})",
            errors.join(", ")
        ));
    }
    Ok(())
}

impl Node {
    /// Waits (20 s at most) until brick `spec` of volume `name` is online.
    async fn wait_online(&self, name: &str, spec: &str) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if let Ok(st) = self.volume_status(name).await {
                if st.bricks.iter().any(|b| b.brick == spec && b.online) {
                    return;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}
