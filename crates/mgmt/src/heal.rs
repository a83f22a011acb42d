//! Self-heal of replicated volumes, as a background task ([`crate::tasks`]), and what
//! `volume heal VOL info` reports.
//!
//! Each brick's `features/index` lists the inodes whose changelogs are not all zero there.
//! The kind [`HEAL`] runs on every node holding bricks of the volume: it opens the
//! volume's client graph in process, reads the indexes of *its own* bricks and heals each
//! inode listed through its replica set's `cluster/replicate` (several at once), pass
//! after pass until the indexes hold only what cannot be healed now (a split-brain, a
//! replica down). It never walks the tree, except for `heal VOL full`, which first walks
//! every directory of the sets whose first brick is local and heals every inode met.
//!
//! mgmtd runs the same kind by itself (the self-heal daemon): every
//! [`SHD_INTERVAL`] it looks at its bricks' index folders and starts a heal task for a
//! volume whose index is not empty and that has none running here.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weft_cluster::distribute::INTERNAL_XDATA_KEY;
use weft_cluster::index::{
    INDEX_AFTER_KEY, INDEX_COUNT_XATTR, INDEX_MORE_KEY, INDEX_PENDING_XATTR,
};
use weft_cluster::replicate::{HEAL_XATTR, RESOLVE_XATTR, STATUS_XATTR_PREFIX};
use weft_core::*;

use crate::model::{Layout, Volume};
use crate::tasks::{Job, JobEnd, TaskCtx};

/// The task kind of `volume heal VOL [full]` and of the self-heal daemon.
pub const HEAL: &str = "heal";

/// How often each mgmtd looks for pending heals on its bricks.
pub const SHD_INTERVAL: Duration = Duration::from_secs(2);

/// Inodes healed at once by one node.
const HEALS_AT_ONCE: usize = 4;

/// Passes over the indexes at most per task.
const PASSES: usize = 20;

/// Xdata marking a call as Weft's own (reaches `trusted.weft.*` and virtual xattrs).
pub(crate) fn ixd() -> Xdata {
    let mut x = Xdata::new();
    x.set(INTERNAL_XDATA_KEY, Vec::new());
    x
}

fn registry() -> Registry {
    let mut r = Registry::new();
    weft_protocol::register(&mut r);
    weft_cluster::register(&mut r);
    r
}

/// One replica set of a volume: its `cluster/replicate` and its children (protocol/client
/// names), with the bricks they reach.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetPlan {
    /// The cluster/replicate translator's name.
    pub name: String,
    /// Its children in order: (protocol/client name, brick `HOST:/PATH`, brick index).
    pub children: Vec<(String, String, usize)>,
}

/// The replica sets of `v` (empty when it is not replicated).
pub fn sets(v: &Volume) -> Vec<SetPlan> {
    let Layout::Replicate { replica, .. } = v.layout else {
        return Vec::new();
    };
    let r = replica.max(1) as usize;
    (0..v.bricks.len() / r)
        .map(|k| SetPlan {
            name: format!("{}-replicate-{k}", v.name),
            children: (k * r..(k + 1) * r)
                .map(|i| (v.client_name(i), v.bricks[i].spec(), i))
                .collect(),
        })
        .collect()
}

/// The inodes brick `child`'s index lists (at most `max`); `Err` when it cannot be asked.
pub async fn list_index(child: &XlatorRef, max: usize) -> Result<Vec<Gfid>, Errno> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut xd = ixd();
        if let Some(a) = &after {
            xd.set(INDEX_AFTER_KEY, a.as_bytes().to_vec());
        }
        let (m, rxd) = child
            .getxattr(
                &Ctx::internal(),
                &Loc::root(),
                Some(INDEX_PENDING_XATTR),
                xd,
            )
            .await?;
        let text = m
            .get(INDEX_PENDING_XATTR)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let mut last = None;
        for l in text.lines().filter(|l| !l.is_empty()) {
            if let Ok(g) = l.parse() {
                out.push(g);
            }
            last = Some(l.to_string());
        }
        if !rxd.has(INDEX_MORE_KEY) || last.is_none() || out.len() >= max {
            break;
        }
        after = last;
    }
    out.truncate(max);
    Ok(out)
}

/// Waits (up to 5 s) until every protocol/client named in `vol` answers, so nothing is
/// judged while a brick is merely still connecting.
pub async fn wait_connected(vol: &weft_client::Volume, children: &[String]) {
    let g = vol.graph().clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    {
        for cname in children {
            let Some(child) = g.get(cname).cloned() else {
                continue;
            };
            while let Err(Errno::ENOTCONN) = child
                .getxattr(
                    &Ctx::internal(),
                    &Loc::root(),
                    Some(INDEX_COUNT_XATTR),
                    ixd(),
                )
                .await
            {
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Entries in the index folder of a local brick (no graph needed: the self-heal daemon's
/// cheap check).
pub fn local_index_count(brick: &std::path::Path) -> usize {
    weft_cluster::index::pending_entries(brick) as usize
}

/// Asks replicate `rep` what is pending on inode `g` (`clean`, the kinds, `split-brain`,
/// `gone`).
pub async fn status(rep: &XlatorRef, g: Gfid) -> Result<String, Errno> {
    let name = format!("{STATUS_XATTR_PREFIX}{g}");
    let (m, _) = rep
        .getxattr(&Ctx::internal(), &Loc::root(), Some(&name), ixd())
        .await?;
    Ok(m.get(&name)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default())
}

async fn status_owned(rep: XlatorRef, g: Gfid) -> (Gfid, String) {
    let s = status(&rep, g).await.unwrap_or_else(|e| e.to_string());
    (g, s)
}

/// What healing one inode came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Healed {
    /// Its copies are equal now (or were).
    Done,
    /// In split-brain: a command or policy must choose.
    SplitBrain,
    /// Changes stay pending for a replica that is down.
    Waiting,
}

/// Heals inode `g` through replicate `rep`.
pub async fn heal_one(rep: &XlatorRef, g: Gfid) -> Result<Healed, Errno> {
    let mut attrs = XattrMap::new();
    attrs.insert(HEAL_XATTR.to_string(), g.to_string().into_bytes());
    match rep
        .setxattr(&Ctx::internal(), &Loc::root(), &attrs, 0, ixd())
        .await
    {
        Ok(_) => Ok(Healed::Done),
        Err(Errno::EIO) => Ok(Healed::SplitBrain),
        Err(Errno::EAGAIN) => Ok(Healed::Waiting),
        Err(e) => Err(e),
    }
}

async fn heal_owned((rep, g): (XlatorRef, Gfid)) -> Result<Healed, Errno> {
    heal_one(&rep, g).await
}

/// Resolves a split-brain of `g` through `rep` (`how`: `bigger-file`, `latest-mtime` or
/// `source-brick SUBVOLUME`).
pub async fn resolve(rep: &XlatorRef, g: Gfid, how: &str) -> Result<(), Errno> {
    let mut attrs = XattrMap::new();
    attrs.insert(RESOLVE_XATTR.to_string(), format!("{how} {g}").into_bytes());
    rep.setxattr(&Ctx::internal(), &Loc::root(), &attrs, 0, ixd())
        .await
        .map(|_| ())
}

/// Opens `volfile` (a volume's heal graph, [`crate::volgen::heal_volfile`]) in process, waiting up to 20 s for it.
pub async fn open(volfile: &str) -> Result<weft_client::Volume, String> {
    let opts = weft_client::OpenOptions {
        connect_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    weft_client::Volume::from_volfile(volfile, registry(), opts)
        .await
        .map_err(|e| format!("cannot reach the volume: {e}"))
}

/// What a heal task did (its checkpoint, and `heal` status).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HealProgress {
    /// Inodes healed (or found clean).
    pub healed: u64,
    /// Inodes left in split-brain.
    pub split_brain: u64,
    /// Inodes whose heal failed (a replica went away meanwhile...).
    pub failed: u64,
    /// Inodes whose changes wait for a replica that is down.
    #[serde(default)]
    pub waiting: u64,
    /// Inodes met by a full crawl.
    pub crawled: u64,
    /// Passes over the indexes done.
    pub passes: u64,
}

/// The job of kind [`HEAL`]. Params: `volfile` (the heal graph), `local` (per replica set
/// of the volume with bricks here: its name, this node's children, whether this node
/// crawls it for `full`; see [`local_plan`]), `full`.
pub struct HealJob;

#[async_trait::async_trait]
impl Job for HealJob {
    async fn run(&self, ctx: &TaskCtx) -> Result<(), JobEnd> {
        let rec = ctx.record();
        let volfile = rec.params["volfile"]
            .as_str()
            .ok_or_else(|| JobEnd::Failed("the task has no volfile".into()))?
            .to_string();
        let plan: Vec<(String, Vec<String>, bool)> =
            serde_json::from_value(rec.params["local"].clone())
                .map_err(|e| JobEnd::Failed(format!("bad task parameters: {e}")))?;
        let full = rec.params["full"].as_bool().unwrap_or(false);
        let mut prog: HealProgress =
            serde_json::from_value(rec.checkpoint.clone()).unwrap_or_default();
        let vol = open(&volfile).await.map_err(JobEnd::Failed)?;
        let g = vol.graph().clone();
        let children: Vec<String> = plan
            .iter()
            .filter_map(|(set, _, _)| g.get(set))
            .flat_map(|rep| rep.children().iter().map(|c| c.name().to_string()))
            .collect();
        wait_connected(&vol, &children).await;
        let r = run_heal(ctx, &vol, &plan, full, &mut prog).await;
        vol.close().await;
        r
    }
}

async fn run_heal(
    ctx: &TaskCtx,
    vol: &weft_client::Volume,
    plan: &[(String, Vec<String>, bool)],
    full: bool,
    prog: &mut HealProgress,
) -> Result<(), JobEnd> {
    let g = vol.graph().clone();
    let find = |n: &str| {
        g.get(n)
            .cloned()
            .ok_or_else(|| JobEnd::Failed(format!("the volume's graph has no {n}")))
    };
    if full && prog.passes == 0 {
        for (set, _, crawl) in plan {
            if *crawl {
                let rep = find(set)?;
                crawl_set(ctx, &rep, prog).await?;
            }
        }
    }
    // Pass after pass over the local indexes, until one heals nothing new.
    for _ in 0..PASSES {
        let mut work: Vec<(XlatorRef, Gfid)> = Vec::new();
        for (set, children, _) in plan {
            let rep = find(set)?;
            let mut seen = std::collections::BTreeSet::new();
            for c in children {
                let child = find(c)?;
                if let Ok(list) = list_index(&child, 100_000).await {
                    for gf in list {
                        if seen.insert(gf) {
                            work.push((rep.clone(), gf));
                        }
                    }
                }
            }
        }
        ctx.set_total(ctx.record().items_done + work.len() as u64);
        if work.is_empty() {
            break;
        }
        prog.passes += 1;
        let before = prog.healed;
        type Heal =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<Healed, Errno>> + Send>>;
        let heals: Vec<Heal> = work
            .into_iter()
            .map(|w| Box::pin(heal_owned(w)) as Heal)
            .collect();
        let mut results = futures::stream::iter(heals).buffer_unordered(HEALS_AT_ONCE);
        let mut stuck = 0u64;
        let mut failed = 0u64;
        let mut waiting = 0u64;
        while let Some(r) = results.next().await {
            match r {
                Ok(Healed::Done) => prog.healed += 1,
                Ok(Healed::SplitBrain) => stuck += 1,
                Ok(Healed::Waiting) => waiting += 1,
                Err(_) => failed += 1,
            }
            ctx.checkpoint(1, 0, serde_json::to_value(&*prog).unwrap_or_default())
                .await?;
        }
        prog.split_brain = stuck;
        prog.failed = failed;
        prog.waiting = waiting;
        ctx.checkpoint(0, 0, serde_json::to_value(&*prog).unwrap_or_default())
            .await?;
        if prog.healed == before {
            break;
        }
    }
    Ok(())
}

/// Walks every directory of replica set `rep` from the root, healing each inode met.
async fn crawl_set(ctx: &TaskCtx, rep: &XlatorRef, prog: &mut HealProgress) -> Result<(), JobEnd> {
    let mut dirs = vec![Gfid::ROOT];
    while let Some(d) = dirs.pop() {
        let _ = heal_one(rep, d).await;
        let fd = Fd::new(d, libc::O_RDONLY, true);
        let c = Ctx::heal();
        if rep
            .opendir(&c, &Loc::inode(d), &fd, Xdata::new())
            .await
            .is_err()
        {
            continue;
        }
        let mut off = 0;
        loop {
            let Ok((ents, _)) = rep.readdirp(&c, &fd, 64 * 1024, off, Xdata::new()).await else {
                break;
            };
            if ents.is_empty() {
                break;
            }
            for e in ents {
                off = e.offset;
                if e.name == b"." || e.name == b".." {
                    continue;
                }
                let gf = match e.iatt {
                    Some(ia) => ia.gfid,
                    None => match rep
                        .lookup(&c, &Loc::entry(d, OsStr::from_bytes(&e.name)), Xdata::new())
                        .await
                    {
                        Ok((ia, _)) => ia.gfid,
                        Err(_) => continue,
                    },
                };
                if e.kind == FileType::Directory {
                    dirs.push(gf);
                } else {
                    let _ = heal_one(rep, gf).await;
                }
                prog.crawled += 1;
                ctx.checkpoint(0, 0, serde_json::to_value(&*prog).unwrap_or_default())
                    .await?;
            }
        }
        let _ = rep.releasedir(&c, &fd, Xdata::new()).await;
    }
    Ok(())
}

/// One pending inode in `heal info`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HealEntry {
    /// `<gfid:...>`, GlusterFS's notation for an inode named by its gfid.
    pub gfid: String,
    /// What is pending: `data`, `metadata`, `entry`, `split-brain`, `clean` (healed since
    /// the index was read), `gone`.
    pub status: String,
}

/// One brick in `heal info`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HealBrick {
    /// `HOST:/PATH`.
    pub brick: String,
    /// `Connected`, or why it could not be asked.
    pub status: String,
    /// Inodes its index lists.
    pub pending: u64,
    /// Of those, in split-brain.
    pub split_brain: u64,
    /// The entries (at most 1,000 per brick; for `summary`, none).
    pub entries: Vec<HealEntry>,
}

/// `GET /v1/volumes/{name}/heal/info`: per brick, what is pending.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HealInfo {
    /// The volume.
    pub volume: String,
    /// Every brick, in volume order.
    pub bricks: Vec<HealBrick>,
}

/// Gathers `heal info` through an open client graph of the volume. `which`: `all`,
/// `summary` (counts only) or `split-brain` (only those entries).
pub async fn info(vol: &weft_client::Volume, plan: &[SetPlan], which: &str) -> Vec<HealBrick> {
    let names: Vec<String> = plan
        .iter()
        .flat_map(|s| s.children.iter().map(|c| c.0.clone()))
        .collect();
    wait_connected(vol, &names).await;
    let g = vol.graph().clone();
    let mut out = Vec::new();
    for set in plan {
        let rep = g.get(&set.name).cloned();
        for (cname, spec, _) in &set.children {
            let Some(child) = g.get(cname).cloned() else {
                continue;
            };
            let list = list_index(&child, 100_000).await;
            let mut b = HealBrick {
                brick: spec.clone(),
                status: "Connected".into(),
                pending: 0,
                split_brain: 0,
                entries: Vec::new(),
            };
            match list {
                Err(e) => b.status = format!("not reachable: {e}"),
                Ok(list) => {
                    b.pending = list.len() as u64;
                    let statuses = match &rep {
                        Some(rep) => {
                            type Ask = std::pin::Pin<
                                Box<dyn std::future::Future<Output = (Gfid, String)> + Send>,
                            >;
                            let asks: Vec<Ask> = list
                                .iter()
                                .take(1000)
                                .map(|&gf| Box::pin(status_owned(rep.clone(), gf)) as Ask)
                                .collect();
                            futures::stream::iter(asks)
                                .buffered(8)
                                .collect::<Vec<_>>()
                                .await
                        }
                        None => Vec::new(),
                    };
                    for (gf, st) in statuses {
                        let split = st.contains("split-brain");
                        if split {
                            b.split_brain += 1;
                        }
                        if which == "all" || (which == "split-brain" && split) {
                            b.entries.push(HealEntry {
                                gfid: format!("<gfid:{gf}>"),
                                status: st,
                            });
                        }
                    }
                }
            }
            out.push(b);
        }
    }
    out
}

/// The task parameters of node-local heal work: per set, the local children and whether
/// this node crawls it for `full` (it holds the set's first brick among `local_bricks`).
pub fn local_plan(plan: &[SetPlan], local_bricks: &[usize]) -> Vec<(String, Vec<String>, bool)> {
    plan.iter()
        .filter_map(|s| {
            let local: Vec<String> = s
                .children
                .iter()
                .filter(|c| local_bricks.contains(&c.2))
                .map(|c| c.0.clone())
                .collect();
            if local.is_empty() {
                return None;
            }
            let crawl = s
                .children
                .first()
                .is_some_and(|c| local_bricks.contains(&c.2));
            Some((s.name.clone(), local, crawl))
        })
        .collect()
}

/// Finds which replica set of `vol` holds `path` and its gfid: (set name, gfid).
pub async fn locate(
    vol: &weft_client::Volume,
    plan: &[SetPlan],
    path: &str,
) -> Result<(String, Gfid), String> {
    let (_, ia) = vol.lookup(path).await.map_err(|e| format!("{path}: {e}"))?;
    let g = vol.graph().clone();
    for s in plan {
        let Some(rep) = g.get(&s.name) else { continue };
        if rep
            .lookup(&Ctx::internal(), &Loc::inode(ia.gfid), Xdata::new())
            .await
            .is_ok()
        {
            return Ok((s.name.clone(), ia.gfid));
        }
    }
    Err(format!("{path}: no replica set holds it"))
}

/// Keeps the kinds a map of known task kinds needs.
pub fn register_kind(m: &mut BTreeMap<String, Arc<dyn Job>>) {
    m.insert(HEAL.into(), Arc::new(HealJob));
}
