//! Rebalance of a distributed volume, as a background task ([`crate::tasks`]).
//!
//! After `volume add-brick`, existing directories keep layouts over the old bricks only:
//! nothing hashes to a new brick there, so every name stays where lookups find it. The
//! kind [`FIX_LAYOUT`] walks every directory of the volume, depth-first in name order,
//! through an in-process client graph (the volume's protocol/clients under
//! cluster/distribute, the same subvolume names as the mounts' graph) and gives each
//! directory a layout over every brick: [`Layout::expanded`] for each new brick (its
//! members keep the start of their ranges and hand the ends to the new brick, so only
//! about 1/(N+1) of the names change hashed subvolume), or equal ranges when the layout
//! had holes or overlaps. The new layout is written **not complete**: names that now hash
//! to a new brick still live on the old one, and distribute looks for them everywhere
//! (and leaves a link file on the hashed brick) until a migration moves them.
//!
//! The walk position is the checkpoint: the path (as name components) of the last
//! directory whose layout is done. Depth-first in name order is lexicographic order of
//! those component lists, so a resumed walk skips every subtree before it and redoes at
//! most the directories of the last 500 ms (fixing a layout again is harmless: a
//! directory whose layout already covers every brick is left alone).
//!
//! The kind [`MIGRATE`] (`rebalance VOL start`) does the same walk and then, in each
//! directory, moves the files of this node's own bricks whose names hash elsewhere
//! ([`weft_cluster::distribute::mover`]: clients keep reading and writing them; what they
//! write during a move lands in the new copy). Every node holding bricks of the volume
//! runs one such task for its bricks, in parallel; several files move at once. The
//! checkpoint is the same walk position plus the counters, so a killed mgmtd resumes at
//! the directory it was in (files already moved are no longer on its bricks).

use std::cmp::Ordering;
use std::path::PathBuf;
use std::time::Duration;

use weft_cluster::distribute::layout::{Layout, Piece, LAYOUT_XATTR};
use weft_cluster::distribute::layout_lock::lock_layout;
use weft_cluster::distribute::mover::Moved;
use weft_cluster::distribute::INTERNAL_XDATA_KEY;
use weft_core::*;

use crate::tasks::{Job, JobEnd, TaskCtx};

/// The task kind of `rebalance VOL fix-layout start`.
pub const FIX_LAYOUT: &str = "rebalance-fix-layout";

/// The task kind of `rebalance VOL start`: fix-layout, then move files.
pub const MIGRATE: &str = "rebalance-migrate";

/// Files moved at once by one node.
const MOVES_AT_ONCE: usize = 4;

/// Every task kind that is a rebalance (`rebalance VOL status` and `stop` look for these).
pub fn is_rebalance(kind: &str) -> bool {
    kind == FIX_LAYOUT || kind == MIGRATE
}

fn ixd() -> Xdata {
    let mut x = Xdata::new();
    x.set(INTERNAL_XDATA_KEY, Vec::new());
    x
}

/// The registry the rebalance graph is built against (protocol/client, distribute).
fn registry() -> Registry {
    let mut r = Registry::new();
    weft_protocol::register(&mut r);
    weft_cluster::register(&mut r);
    r
}

/// What one directory needed.
#[derive(Debug, PartialEq, Eq)]
pub enum Fixed {
    /// Its layout already gave every subvolume a range.
    Already,
    /// A new layout was written.
    Written,
}

/// The layout directory `dir` should have over `n` subvolumes, given its pieces: `None`
/// when the current one already covers every hash once and gives every subvolume a range.
pub fn wanted_layout(
    pieces: &[Option<Piece>],
    n: usize,
    dir: Gfid,
    remove: &[usize],
) -> Option<Layout> {
    let (cur, bad) = Layout::from_pieces(pieces);
    let keep: Vec<usize> = (0..n).filter(|i| !remove.contains(i)).collect();
    let missing: Vec<usize> = keep
        .iter()
        .copied()
        .filter(|&i| cur.share(i) == 0)
        .collect();
    let stale = remove.iter().any(|&i| cur.share(i) > 0);
    if !bad.any() && missing.is_empty() && !stale {
        return None;
    }
    // A generation no piece has: the pieces written together are told apart from old ones.
    let mut gen = cur.gen.wrapping_add(1);
    while pieces.iter().flatten().any(|p| p.gen == gen) {
        gen = gen.wrapping_add(1);
    }
    if bad.any() || cur.ranges.is_empty() {
        let rotate = weft_cluster::distribute::hash::raw_hash(&dir.0) as usize;
        return Some(Layout::equal(&keep, rotate, gen, false));
    }
    let mut l = cur;
    if stale {
        l = l.without(remove, gen);
    }
    for s in missing {
        l = l.expanded(s, gen);
    }
    l.gen = gen;
    l.complete = false;
    Some(l)
}

/// Gives directory `dir` a layout over every subvolume of `dht` but those in `remove`
/// (see the module doc).
pub async fn fix_dir(dht: &XlatorRef, dir: Gfid, remove: &[usize]) -> Result<Fixed, String> {
    let subs = dht.children().to_vec();
    let Some(first) = subs.first() else {
        return Err("the rebalance graph has no subvolumes".into());
    };
    // Every node's rebalance fixes every directory: one at a time, each deciding on the
    // pieces as the last one left them.
    let lock = lock_layout(first, dir).await.map_err(|e| {
        format!(
            "taking the layout lock of directory {dir} on {} failed: {e}",
            first.name()
        )
    })?;
    let r = fix_dir_locked(&subs, dir, remove).await;
    lock.unlock().await;
    r
}

async fn fix_dir_locked(subs: &[XlatorRef], dir: Gfid, remove: &[usize]) -> Result<Fixed, String> {
    let mut pieces = Vec::with_capacity(subs.len());
    for s in subs {
        let r = s
            .getxattr(
                &Ctx::internal(),
                &Loc::inode(dir),
                Some(LAYOUT_XATTR),
                ixd(),
            )
            .await;
        pieces.push(match r {
            Ok((m, _)) => m.get(LAYOUT_XATTR).and_then(|b| Piece::decode(b)),
            Err(Errno::ENODATA) => None,
            Err(e) => {
                return Err(format!(
                    "reading the layout of directory {dir} on {} failed: {e}",
                    s.name()
                ))
            }
        });
    }
    let Some(new) = wanted_layout(&pieces, subs.len(), dir, remove) else {
        return Ok(Fixed::Already);
    };
    // Every piece at once, under the layout lock: a client that finds holes or overlaps
    // waits for it and reads the pieces again before healing anything. (A writer killed
    // part-way leaves holes or overlaps; a client heals them to a layout never complete:
    // names are then looked for everywhere, so nothing is hidden.)
    let writes = subs.iter().enumerate().map(|(i, s)| {
        let p = new.piece(i);
        async move {
            let mut attrs = XattrMap::new();
            attrs.insert(LAYOUT_XATTR.to_string(), p.encode());
            s.setxattr(&Ctx::internal(), &Loc::inode(dir), &attrs, 0, ixd())
                .await
                .map_err(|e| {
                    format!(
                        "writing the layout of directory {dir} on {} failed: {e}",
                        s.name()
                    )
                })
        }
    });
    for r in futures::future::join_all(writes).await {
        r?;
    }
    Ok(Fixed::Written)
}

/// `a` before `b` in the walk (depth-first, name order), `a` not an ancestor of `b`.
fn done_subtree(dir: &[Vec<u8>], last: &[Vec<u8>]) -> bool {
    !last.starts_with(dir) && dir.cmp(last) == Ordering::Less
}

fn path_of(comps: &[Vec<u8>]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut p = PathBuf::from("/");
    for c in comps {
        p.push(std::ffi::OsStr::from_bytes(c));
    }
    p
}

/// The fix-layout task. Parameters: `volume`, `volfile` (the rebalance graph: the
/// volume's protocol/clients under cluster/distribute, which is the top), `subvolumes`.
pub struct FixLayoutJob;

/// The migrate task: [`FixLayoutJob`]'s parameters plus `local`, the indexes of the
/// subvolumes whose bricks are on this node (their files are the ones it moves), and for
/// a remove-brick `remove`, the subvolumes being removed (no range; every file moves off).
pub struct MigrateJob;

#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Progress {
    /// The last directory done (name components from the root), `None` before the root.
    last: Option<Vec<Vec<u8>>>,
    fixed: u64,
    failed: u64,
    #[serde(default)]
    moved: u64,
    #[serde(default)]
    skipped: u64,
}

#[async_trait::async_trait]
impl Job for MigrateJob {
    async fn run(&self, ctx: &TaskCtx) -> Result<(), JobEnd> {
        let local = indexes(&ctx.record().params, "local");
        run_walk(ctx, Some(local)).await
    }
}

/// The subvolume indexes a task's parameters list under `key` (`local`: this node's,
/// `remove`: those being removed); none when absent.
pub fn indexes(params: &serde_json::Value, key: &str) -> Vec<usize> {
    params[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_u64())
                .map(|v| v as usize)
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait::async_trait]
impl Job for FixLayoutJob {
    async fn run(&self, ctx: &TaskCtx) -> Result<(), JobEnd> {
        run_walk(ctx, None).await
    }
}

/// Runs the walk of a fix-layout (`migrate: None`) or migrate task (the local subvolumes).
async fn run_walk(ctx: &TaskCtx, migrate: Option<Vec<usize>>) -> Result<(), JobEnd> {
    {
        let rec = ctx.record();
        let volfile = rec.params["volfile"]
            .as_str()
            .ok_or_else(|| JobEnd::Failed("the task has no volfile".into()))?
            .to_string();
        let mut prog: Progress = serde_json::from_value(rec.checkpoint.clone()).unwrap_or_default();
        let opts = weft_client::OpenOptions {
            connect_timeout: Duration::from_secs(20),
            ..Default::default()
        };
        let vol = weft_client::Volume::from_volfile(&volfile, registry(), opts)
            .await
            .map_err(|e| JobEnd::Failed(format!("cannot reach the volume: {e}")))?;
        if let Some(local) = &migrate {
            estimate_total(ctx, &vol, local).await;
        }
        let remove = indexes(&rec.params, "remove");
        let r = walk(ctx, &vol, &mut prog, migrate.as_deref(), &remove).await;
        vol.close().await;
        r
    }
}

/// Sets the task's total to an estimate of the files on the local bricks (their
/// filesystems' used inodes, each filesystem counted once), so status has an ETA.
async fn estimate_total(ctx: &TaskCtx, vol: &weft_client::Volume, local: &[usize]) {
    let subs = vol.top().children().to_vec();
    let mut seen = Vec::new();
    let mut total = 0u64;
    for &i in local {
        let Some(s) = subs.get(i) else { continue };
        if let Ok((st, _)) = s
            .statfs(&Ctx::internal(), &Loc::inode(Gfid::ROOT), Xdata::new())
            .await
        {
            let key = (st.files, st.ffree, st.blocks);
            if !seen.contains(&key) {
                seen.push(key);
                total += st.files.saturating_sub(st.ffree);
            }
        }
    }
    if total > 0 {
        ctx.set_total(total);
    }
}

/// What moving the files of one directory came to.
#[derive(Default)]
struct DirMoves {
    scanned: u64,
    moved: u64,
    skipped: u64,
    failed: u64,
    bytes: u64,
}

/// The names of the data files (not directories, not link files) of directory `dir` on
/// subvolume `sub`, read from it directly.
async fn data_files(sub: &XlatorRef, dir: Gfid) -> Result<Vec<std::ffi::OsString>, Errno> {
    use std::os::unix::ffi::OsStrExt;
    let ctx = Ctx::internal();
    let fd = Fd::new(dir, libc::O_RDONLY | libc::O_DIRECTORY, true);
    sub.opendir(&ctx, &Loc::inode(dir), &fd, Xdata::new())
        .await?;
    let mut out = Vec::new();
    let mut off = 0;
    let r = loop {
        match sub.readdirp(&ctx, &fd, 128 * 1024, off, Xdata::new()).await {
            Ok((ents, _)) if ents.is_empty() => break Ok(()),
            Ok((ents, _)) => {
                for d in ents {
                    off = d.offset;
                    if d.name == b"." || d.name == b".." || d.kind == FileType::Directory {
                        continue;
                    }
                    let plain = d.iatt.as_ref().is_none_or(|ia| {
                        ia.mode & (libc::S_IFMT | 0o7777) != weft_cluster::distribute::LINK_MODE
                    });
                    if plain {
                        out.push(std::ffi::OsStr::from_bytes(&d.name).to_os_string());
                    }
                }
            }
            Err(e) => break Err(e),
        }
    };
    let _ = sub.releasedir(&ctx, &fd, Xdata::new()).await;
    r.map(|_| out)
}

/// Moves the files of `local` subvolumes in directory `dir` that hash elsewhere.
async fn migrate_dir(
    ctx: &TaskCtx,
    dht: &XlatorRef,
    dir: Gfid,
    path: &std::path::Path,
    local: &[usize],
    prog: &mut Progress,
) -> Result<(), JobEnd> {
    use futures::StreamExt;
    let subs = std::sync::Arc::new(dht.children().to_vec());
    let mut pieces = Vec::with_capacity(subs.len());
    // Read under the layout lock: never half of another writer's pieces.
    let lock = match subs.first().map(|first| lock_layout(first, dir)) {
        Some(taking) => match taking.await {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::warn!(
                    "rebalance: {}: taking its layout lock failed: {e}; its files stay",
                    path.display()
                );
                prog.failed += 1;
                return Ok(());
            }
        },
        None => None,
    };
    for s in subs.iter() {
        let r = s
            .getxattr(
                &Ctx::internal(),
                &Loc::inode(dir),
                Some(LAYOUT_XATTR),
                ixd(),
            )
            .await;
        pieces.push(
            r.ok()
                .and_then(|(m, _)| m.get(LAYOUT_XATTR).and_then(|b| Piece::decode(b))),
        );
    }
    if let Some(lock) = lock {
        lock.unlock().await;
    }
    let (layout, bad) = Layout::from_pieces(&pieces);
    if bad.any() {
        tracing::warn!(
            "rebalance: {}: the layout has holes or overlaps; its files stay",
            path.display()
        );
        prog.failed += 1;
        return Ok(());
    }
    // Every local listing first: files moved onto another local brick are not scanned
    // twice.
    let mut listed = Vec::new();
    for &s in local {
        let Some(sub) = subs.get(s) else { continue };
        match data_files(sub, dir).await {
            Ok(n) => listed.push((s, n)),
            Err(e) => {
                tracing::warn!(
                    "rebalance: listing {} on {} failed: {e}",
                    path.display(),
                    sub.name()
                );
                prog.failed += 1;
            }
        }
    }
    for (s, names) in listed {
        let sub = &subs[s];
        for batch in names.chunks(256) {
            let mut d = DirMoves::default();
            let futs: Vec<_> = batch
                .iter()
                .cloned()
                .map(|name| {
                    let to = layout.subvol_for(weft_cluster::distribute::hash::name_hash(
                        std::os::unix::ffi::OsStrExt::as_bytes(name.as_os_str()),
                    ));
                    let subs = subs.clone();
                    async move {
                        match to {
                            Some(t) if t != s => {
                                let r = weft_cluster::distribute::mover::move_file(
                                    &subs, dir, &name, s, t,
                                )
                                .await;
                                Some((name, r))
                            }
                            _ => None,
                        }
                    }
                })
                .collect();
            let moves = futures::stream::iter(futs)
                .buffer_unordered(MOVES_AT_ONCE)
                .collect::<Vec<_>>()
                .await;
            d.scanned = batch.len() as u64;
            for m in moves.into_iter().flatten() {
                match m.1 {
                    Ok(Moved::Done(b)) => {
                        d.moved += 1;
                        d.bytes += b;
                    }
                    Ok(Moved::Skipped(why)) => {
                        tracing::info!(
                            "rebalance: {}/{} stays on {}: {why}",
                            path.display(),
                            m.0.to_string_lossy(),
                            sub.name()
                        );
                        d.skipped += 1;
                    }
                    Err(e) => {
                        tracing::warn!("rebalance: moving {}: {e}", path.display());
                        d.failed += 1;
                    }
                }
            }
            prog.moved += d.moved;
            prog.skipped += d.skipped;
            prog.failed += d.failed;
            let cp = serde_json::to_value(&*prog).unwrap_or_default();
            ctx.checkpoint(d.scanned, d.bytes, cp).await?;
        }
    }
    Ok(())
}

async fn walk(
    ctx: &TaskCtx,
    vol: &weft_client::Volume,
    prog: &mut Progress,
    migrate: Option<&[usize]>,
    remove: &[usize],
) -> Result<(), JobEnd> {
    let dht = vol.top().clone();
    if dht.children().len() < 2 {
        return Err(JobEnd::Failed(
            "the volume's graph has no cluster/distribute on top".into(),
        ));
    }
    // Depth-first, name order: a stack of directories still to visit, last on top.
    let mut stack: Vec<Vec<Vec<u8>>> = vec![Vec::new()];
    while let Some(comps) = stack.pop() {
        let last = prog.last.clone();
        if let Some(last) = &last {
            if done_subtree(&comps, last) {
                continue;
            }
        }
        let path = path_of(&comps);
        let own_done = last.as_ref().is_some_and(|l| l.starts_with(&comps));
        // Up to 10 tries over about 5 s: a brick that is briefly away does not fail the run.
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            // The lookup makes the directory on subvolumes lacking it (a new brick).
            let r = async {
                let (_, ia) = vol.lookup(&path).await.map_err(|e| e.to_string())?;
                if own_done {
                    return Ok(None);
                }
                fix_dir(&dht, ia.gfid, remove).await.map(Some)
            }
            .await;
            match r {
                Err(e) if tries < 10 => {
                    tracing::debug!("fix-layout: {}: {e}; trying again", path.display());
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                r => break r,
            }
        };
        let mut children = Vec::new();
        match outcome {
            Ok(f) => {
                if f == Some(Fixed::Written) {
                    prog.fixed += 1;
                }
                // f is None for the directory the walk was in at a restart: its layout
                // and files were done before.
                if let (Some(local), Some(_)) = (migrate, f) {
                    match vol.lookup(&path).await {
                        Ok((_, ia)) => migrate_dir(ctx, &dht, ia.gfid, &path, local, prog).await?,
                        Err(e) => {
                            tracing::warn!("rebalance: {}: {e}", path.display());
                            prog.failed += 1;
                        }
                    }
                }
                match vol.readdir(&path).await {
                    Ok(ents) => {
                        for d in ents {
                            let is_dir = d
                                .iatt
                                .as_ref()
                                .map_or(d.kind == FileType::Directory, |ia| ia.is_dir());
                            if is_dir {
                                let mut c = comps.clone();
                                c.push(d.name.clone());
                                children.push(c);
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!("fix-layout: listing {} failed: {e}", path.display());
                        prog.failed += 1;
                    }
                }
            }
            Err(e) => {
                tracing::warn!("fix-layout: {}: {e}", path.display());
                prog.failed += 1;
            }
        }
        children.sort();
        stack.extend(children.into_iter().rev());
        if !own_done {
            prog.last = Some(comps);
        }
        let cp = serde_json::to_value(&*prog).unwrap_or_default();
        // A migrate task counts files (in migrate_dir), a fix-layout task directories.
        ctx.checkpoint(u64::from(migrate.is_none()), 0, cp).await?;
    }
    if prog.failed > 0 {
        return Err(JobEnd::Failed(format!(
            "{} directories or files could not be fixed or moved (see the mgmtd log); run the rebalance again",
            prog.failed
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_skips_done_subtrees_only() {
        let p = |s: &[&str]| s.iter().map(|x| x.as_bytes().to_vec()).collect::<Vec<_>>();
        let last = p(&["b", "c"]);
        assert!(done_subtree(&p(&["a"]), &last));
        assert!(done_subtree(&p(&["a", "z"]), &last));
        assert!(done_subtree(&p(&["b", "a"]), &last));
        assert!(!done_subtree(&p(&["b"]), &last)); // an ancestor: its other children
        assert!(!done_subtree(&p(&[]), &last));
        assert!(!done_subtree(&p(&["b", "c"]), &last)); // its children are not done
        assert!(!done_subtree(&p(&["b", "d"]), &last));
        assert!(!done_subtree(&p(&["c"]), &last));
    }

    #[test]
    fn a_new_subvolume_gets_a_minimal_share() {
        let old = Layout::equal(&[0, 1], 0, 5, true);
        let pieces: Vec<Option<Piece>> = vec![Some(old.piece(0)), Some(old.piece(1)), None];
        let new = wanted_layout(&pieces, 3, Gfid([1; 16]), &[]).unwrap();
        assert!(!new.anomalies().any());
        assert!(!new.complete);
        assert_ne!(new.gen, 5);
        for s in 0..3 {
            let sh = new.share(s) as f64 / (1u64 << 32) as f64;
            assert!((sh - 1.0 / 3.0).abs() < 0.001, "{s}: {sh}");
        }
        // Members keep their starts: 0 keeps [0, ...], 1 keeps [2^31, ...].
        assert_eq!(new.subvol_for(0), Some(0));
        assert_eq!(new.subvol_for(1 << 31), Some(1));
        // Written again: nothing to do.
        let pieces: Vec<Option<Piece>> = (0..3).map(|s| Some(new.piece(s))).collect();
        assert!(wanted_layout(&pieces, 3, Gfid([1; 16]), &[]).is_none());
        // Two new subvolumes at once, and a layout with a hole.
        let pieces: Vec<Option<Piece>> = vec![Some(old.piece(0)), Some(old.piece(1)), None, None];
        let l = wanted_layout(&pieces, 4, Gfid([1; 16]), &[]).unwrap();
        assert!(!l.anomalies().any() && (0..4).all(|s| l.share(s) > 0));
        let pieces: Vec<Option<Piece>> = vec![Some(old.piece(0)), None, None];
        let l = wanted_layout(&pieces, 3, Gfid([1; 16]), &[]).unwrap();
        assert!(!l.anomalies().any() && (0..3).all(|s| l.share(s) > 0));
    }

    #[test]
    fn a_removed_subvolume_hands_its_ranges_to_the_others_and_nothing_else_moves() {
        let old = Layout::equal(&[0, 1, 2], 1, 5, true);
        let pieces: Vec<Option<Piece>> = (0..3).map(|s| Some(old.piece(s))).collect();
        let new = wanted_layout(&pieces, 3, Gfid([2; 16]), &[1]).unwrap();
        assert!(!new.anomalies().any());
        assert!(!new.complete);
        assert_eq!(new.share(1), 0);
        for s in [0, 2] {
            let sh = new.share(s) as f64 / (1u64 << 32) as f64;
            assert!((sh - 0.5).abs() < 0.001, "{s}: {sh}");
        }
        // Only hashes that were on the removed subvolume change hands.
        for h in (0..u32::MAX).step_by(9_999_991) {
            let (a, b) = (old.subvol_for(h).unwrap(), new.subvol_for(h).unwrap());
            assert!(a == b || a == 1, "hash {h}: {a} -> {b}");
        }
        // Written again: nothing to do.
        let pieces: Vec<Option<Piece>> = (0..3).map(|s| Some(new.piece(s))).collect();
        assert!(wanted_layout(&pieces, 3, Gfid([2; 16]), &[1]).is_none());
    }
}
