//! Coherent client caching (issue 11): two `weft mount`s of one brick with every cache on
//! and long timeouts (md-cache and the kernel 60 s, see [`TwoMounts::caching`]).
//!
//! - `a_random_workload_on_two_mounts_matches_the_model`: thousands of random changes
//!   (create, overwrite, append, truncate, chmod, rename, unlink, mkdir, rmdir, setxattr,
//!   removexattr), each made through one mount, then checked right away through both
//!   (stat, read, readdir of the parent, getxattr) against a model of what the tree must
//!   be; the whole tree is compared every 250 changes.
//! - `a_mount_whose_brick_went_away_serves_nothing_stale`: a mount that cached a file,
//!   then lost its brick while the file changed, sees the change once it reconnects.
//! - `md_cache_stays_within_its_entries_under_many_files`: the statedump's counts stay
//!   within `max-entries` over a tree far larger.
//! - `changes_made_behind_under_a_lease_are_seen_*`: what entry-behind answered before the
//!   brick did it is seen by the other mount at once, over one brick, distribute and
//!   replicate.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;

/// A small deterministic generator (xorshift64*), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Node {
    File {
        data: Vec<u8>,
        mode: u32,
        xattr: Option<Vec<u8>>,
    },
    Dir {
        mode: u32,
    },
}

/// Paths relative to the work directory.
type Model = BTreeMap<PathBuf, Node>;

const XATTR: &str = "user.weft-test";

fn children(m: &Model, dir: &Path) -> Vec<String> {
    m.keys()
        .filter(|p| p.parent() == Some(dir))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// What `root/rel` is through one mount, in the model's terms (`None`: absent).
fn observe(root: &Path, rel: &Path) -> Option<Node> {
    let p = root.join(rel);
    let md = std::fs::symlink_metadata(&p).ok()?;
    let mode = md.permissions().mode() & 0o7777;
    if md.is_dir() {
        return Some(Node::Dir { mode });
    }
    let data = std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    assert_eq!(
        data.len() as u64,
        md.size(),
        "{}: stat size and bytes read differ",
        p.display()
    );
    let xattr = getxattr(&p, XATTR).ok();
    Some(Node::File { data, mode, xattr })
}

fn listing(root: &Path, rel: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(rel))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn short(n: &Option<Node>) -> String {
    match n {
        None => "absent".into(),
        Some(Node::Dir { mode }) => format!("dir {mode:o}"),
        Some(Node::File { data, mode, xattr }) => format!(
            "file {} bytes (sum {}) mode {mode:o} xattr {:?}",
            data.len(),
            data.iter().map(|&b| b as u64).sum::<u64>(),
            xattr.as_ref().map(|x| x.len())
        ),
    }
}

/// Checks `rels` (and their parents' listings) through `root` against the model.
fn check(root: &Path, side: &str, m: &Model, rels: &[PathBuf], step: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for rel in rels {
        let got = observe(root, rel);
        let want = m.get(rel).cloned();
        if got != want {
            bad.push(format!(
                "{step}: mount {side} sees {} as {} but it is {}",
                rel.display(),
                short(&got),
                short(&want)
            ));
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        if parent == Path::new("") || m.contains_key(parent) {
            let got = listing(root, parent);
            let mut want = children(m, parent);
            want.sort();
            if got != want {
                bad.push(format!(
                    "{step}: mount {side} lists {:?} as {got:?} but it holds {want:?}",
                    parent.display()
                ));
            }
        }
    }
    bad
}

/// One random change through `root`, applied to the model too; returns what it touched
/// and a description. `None` when the drawn change does not apply to the tree now.
fn change(rng: &mut Rng, root: &Path, m: &mut Model) -> Option<(Vec<PathBuf>, String)> {
    let dirs: Vec<PathBuf> = std::iter::once(PathBuf::new())
        .chain(
            m.iter()
                .filter(|(_, n)| matches!(n, Node::Dir { .. }))
                .map(|(p, _)| p.clone()),
        )
        .collect();
    let files: Vec<PathBuf> = m
        .iter()
        .filter(|(_, n)| matches!(n, Node::File { .. }))
        .map(|(p, _)| p.clone())
        .collect();
    let dir = dirs[rng.below(dirs.len())].clone();
    // A small name space, so names come back after they go (stale names would show).
    let name = dir.join(format!("n{}", rng.below(6)));
    let pick_file =
        |rng: &mut Rng| (!files.is_empty()).then(|| files[rng.below(files.len())].clone());
    let at = |rel: &Path| root.join(rel);
    match rng.below(11) {
        // create or overwrite (O_TRUNC)
        0 | 1 => {
            if matches!(m.get(&name), Some(Node::Dir { .. })) {
                return None;
            }
            let data = rng.bytes(9000);
            std::fs::write(at(&name), &data).unwrap();
            let (mode, xattr) = match m.get(&name) {
                Some(Node::File { mode, xattr, .. }) => (*mode, xattr.clone()),
                _ => (0o644, None),
            };
            m.insert(name.clone(), Node::File { data, mode, xattr });
            Some((vec![name.clone()], format!("write {}", name.display())))
        }
        // append
        2 => {
            let f = pick_file(rng)?;
            let more = rng.bytes(3000);
            use std::io::Write;
            let mut h = std::fs::OpenOptions::new()
                .append(true)
                .open(at(&f))
                .unwrap();
            h.write_all(&more).unwrap();
            drop(h);
            if let Some(Node::File { data, .. }) = m.get_mut(&f) {
                data.extend_from_slice(&more);
            }
            Some((vec![f.clone()], format!("append {}", f.display())))
        }
        // overwrite in place
        3 => {
            let f = pick_file(rng)?;
            let Some(Node::File { data, .. }) = m.get_mut(&f) else {
                return None;
            };
            if data.is_empty() {
                return None;
            }
            let off = rng.below(data.len());
            let patch = rng.bytes(data.len() - off);
            use std::os::unix::fs::FileExt;
            let h = std::fs::OpenOptions::new()
                .write(true)
                .open(at(&f))
                .unwrap();
            h.write_all_at(&patch, off as u64).unwrap();
            drop(h);
            data[off..off + patch.len()].copy_from_slice(&patch);
            Some((vec![f.clone()], format!("pwrite {} at {off}", f.display())))
        }
        // truncate
        4 => {
            let f = pick_file(rng)?;
            let len = rng.below(12000);
            let h = std::fs::OpenOptions::new()
                .write(true)
                .open(at(&f))
                .unwrap();
            h.set_len(len as u64).unwrap();
            drop(h);
            if let Some(Node::File { data, .. }) = m.get_mut(&f) {
                data.resize(len, 0);
            }
            Some((
                vec![f.clone()],
                format!("truncate {} to {len}", f.display()),
            ))
        }
        // chmod
        5 => {
            let all: Vec<PathBuf> = m.keys().cloned().collect();
            if all.is_empty() {
                return None;
            }
            let p = all[rng.below(all.len())].clone();
            let new = [0o600, 0o640, 0o644, 0o700, 0o755][rng.below(5)];
            std::fs::set_permissions(at(&p), std::fs::Permissions::from_mode(new)).unwrap();
            match m.get_mut(&p) {
                Some(Node::File { mode, .. }) | Some(Node::Dir { mode }) => *mode = new,
                None => {}
            }
            Some((vec![p.clone()], format!("chmod {} {new:o}", p.display())))
        }
        // rename a file (over a file or to a free name)
        6 => {
            let f = pick_file(rng)?;
            if f == name || matches!(m.get(&name), Some(Node::Dir { .. })) {
                return None;
            }
            std::fs::rename(at(&f), at(&name)).unwrap();
            let n = m.remove(&f).unwrap();
            m.insert(name.clone(), n);
            Some((
                vec![f.clone(), name.clone()],
                format!("rename {} {}", f.display(), name.display()),
            ))
        }
        // unlink
        7 => {
            let f = pick_file(rng)?;
            std::fs::remove_file(at(&f)).unwrap();
            m.remove(&f);
            Some((vec![f.clone()], format!("unlink {}", f.display())))
        }
        // mkdir (depth at most 2)
        8 => {
            if m.contains_key(&name) || name.components().count() > 2 {
                return None;
            }
            std::fs::create_dir(at(&name)).unwrap();
            let mode = std::fs::metadata(at(&name)).unwrap().permissions().mode() & 0o7777;
            m.insert(name.clone(), Node::Dir { mode });
            Some((vec![name.clone()], format!("mkdir {}", name.display())))
        }
        // rmdir an empty directory
        9 => {
            let empty: Vec<PathBuf> = dirs
                .iter()
                .filter(|d| !d.as_os_str().is_empty() && children(m, d).is_empty())
                .cloned()
                .collect();
            if empty.is_empty() {
                return None;
            }
            let d = empty[rng.below(empty.len())].clone();
            std::fs::remove_dir(at(&d)).unwrap();
            m.remove(&d);
            Some((vec![d.clone()], format!("rmdir {}", d.display())))
        }
        // setxattr / removexattr
        _ => {
            let f = pick_file(rng)?;
            let Some(Node::File { xattr, .. }) = m.get_mut(&f) else {
                return None;
            };
            let path =
                std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(at(&f).as_os_str()))
                    .unwrap();
            let key = std::ffi::CString::new(XATTR).unwrap();
            if xattr.is_some() && rng.below(3) == 0 {
                // SAFETY: both are NUL-terminated strings that outlive the call.
                let r = unsafe { libc::removexattr(path.as_ptr(), key.as_ptr()) };
                assert_eq!(r, 0, "removexattr: {}", std::io::Error::last_os_error());
                *xattr = None;
                Some((vec![f.clone()], format!("removexattr {}", f.display())))
            } else {
                let v = rng.bytes(64);
                // SAFETY: as above; the value pointer and length describe `v`.
                let r = unsafe {
                    libc::setxattr(path.as_ptr(), key.as_ptr(), v.as_ptr().cast(), v.len(), 0)
                };
                assert_eq!(r, 0, "setxattr: {}", std::io::Error::last_os_error());
                *xattr = Some(v);
                Some((vec![f.clone()], format!("setxattr {}", f.display())))
            }
        }
    }
}

#[test]
fn a_random_workload_on_two_mounts_matches_the_model() {
    let two = TwoMounts::caching("coh-model", true);
    let seed = std::env::var("WEFT_COHERENCE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_0011u64);
    let steps: usize = std::env::var("WEFT_COHERENCE_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2500);
    let mut rng = Rng(seed);
    let roots = [two.a.mnt.join("w"), two.b.mnt.join("w")];
    std::fs::create_dir(&roots[0]).unwrap();
    let mut m = Model::new();
    let mut done = 0;
    let mut problems = Vec::new();
    while done < steps && problems.is_empty() {
        let side = rng.below(2);
        let Some((touched, what)) = change(&mut rng, &roots[side], &mut m) else {
            continue;
        };
        done += 1;
        let step = format!(
            "step {done} (seed {seed:#x}) on mount {}: {what}",
            ["A", "B"][side]
        );
        // The other mount first: it is the one that must have been told.
        let other = 1 - side;
        problems.extend(check(&roots[other], ["A", "B"][other], &m, &touched, &step));
        problems.extend(check(&roots[side], ["A", "B"][side], &m, &touched, &step));
        if done % 250 == 0 {
            let all: Vec<PathBuf> = m.keys().cloned().collect();
            for (i, r) in roots.iter().enumerate() {
                problems.extend(check(
                    r,
                    ["A", "B"][i],
                    &m,
                    &all,
                    &format!("{step} (whole tree)"),
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        two.logs()
    );
    let dump = String::from_utf8(getxattr(&two.b.mnt, "weft.statedump").unwrap()).unwrap();
    let hits: u64 = dump
        .lines()
        .filter_map(|l| l.strip_prefix("lookup_hits = "))
        .filter_map(|v| v.trim().parse::<u64>().ok())
        .sum();
    assert!(hits > 0, "md-cache answered no lookup: {dump}");
    println!(
        "{done} changes matched the model on both mounts; mount B md-cache lookup hits: {hits}"
    );
}

#[test]
fn a_mount_whose_brick_went_away_serves_nothing_stale() {
    let mut two = TwoMounts::caching("coh-reconnect", true);
    let (a, b) = (two.a.mnt.clone(), two.b.mnt.clone());
    std::fs::write(a.join("f"), b"before").unwrap();
    std::fs::create_dir(a.join("d")).unwrap();
    // B caches the file, its attributes and the directory's names.
    assert_eq!(std::fs::read(b.join("f")).unwrap(), b"before");
    assert!(std::fs::read_dir(b.join("d")).unwrap().next().is_none());
    // The brick goes away and comes back; meanwhile the files change on the brick itself
    // (as another client whose invalidations could not reach B would change them).
    two.brickd.kill9();
    let brick = two.dir.path().join("brick");
    std::fs::write(brick.join("f"), b"after, and longer").unwrap();
    two.brickd.restart();
    // Until B has reconnected its calls fail; after, it must see the new state.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match std::fs::read(b.join("f")) {
            Ok(d) if d == b"after, and longer" => break,
            Ok(d) if std::time::Instant::now() > deadline => panic!(
                "mount B still reads {:?} after reconnecting\n{}",
                String::from_utf8_lossy(&d),
                two.logs()
            ),
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("mount B never came back: {e}\n{}", two.logs())
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(100)),
        }
    }
    assert_eq!(
        std::fs::metadata(b.join("f")).unwrap().len(),
        "after, and longer".len() as u64
    );
}

#[test]
fn pages_kept_across_opens_show_the_other_mounts_same_size_overwrites() {
    // Opens keep the kernel's cached pages (the bricks tell of changes), so what matters
    // here is that each change drops them: same size, so no size change does it instead.
    let two = TwoMounts::caching("coh-pages", true);
    let (a, b) = (two.a.mnt.clone(), two.b.mnt.clone());
    for (name, len) in [("small", 3000usize), ("large", 3 << 20)] {
        let content = |round: u8| -> Vec<u8> {
            (0..len)
                .map(|i| (i as u8).wrapping_mul(7) ^ round)
                .collect()
        };
        std::fs::write(a.join(name), content(0)).unwrap();
        for round in 1..=3u8 {
            // B reads it twice (the second from its page cache), then A overwrites it in
            // place: same size, through an fd opened without O_TRUNC.
            for _ in 0..2 {
                let got = std::fs::read(b.join(name)).unwrap();
                assert!(
                    got == content(round - 1),
                    "{name} round {round}: B read old data before the change\n{}",
                    two.logs()
                );
            }
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(a.join(name))
                .unwrap();
            f.write_all_at(&content(round), 0).unwrap();
            drop(f);
            let got = std::fs::read(b.join(name)).unwrap();
            assert_eq!(got.len(), len);
            assert!(
                got == content(round),
                "{name} round {round}: mount B read what it cached before A's overwrite\n{}",
                two.logs()
            );
        }
    }
}

#[test]
fn a_reader_mid_stream_sees_the_other_mounts_write_ahead_of_it() {
    // Mount B reads a large file sequentially, so read-ahead holds pages ahead of it; mount
    // A then overwrites a range B has not reached. B's next reads must show A's data, not
    // the pages read before the change.
    use std::io::Read;
    use std::os::unix::fs::FileExt;
    let two = TwoMounts::caching("coh-readahead", true);
    let (a, b) = (two.a.mnt.clone(), two.b.mnt.clone());
    let len = 16usize << 20;
    let content = |round: u8, i: usize| (i as u8).wrapping_mul(13) ^ round;
    let old: Vec<u8> = (0..len).map(|i| content(0, i)).collect();
    std::fs::write(a.join("big"), &old).unwrap();
    let mut f = std::fs::File::open(b.join("big")).unwrap();
    let mut got = vec![0u8; 2 << 20];
    f.read_exact(&mut got).unwrap();
    assert!(got == old[..2 << 20], "B's first 2 MiB");
    let dump = String::from_utf8(getxattr(&b, "weft.statedump").unwrap()).unwrap();
    assert!(
        dump_count(&dump, "pages_read") > 2,
        "B read nothing ahead:\n{dump}"
    );
    let range = (6usize << 20)..(7usize << 20);
    let new: Vec<u8> = range.clone().map(|i| content(1, i)).collect();
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(a.join("big"))
        .unwrap();
    w.write_all_at(&new, range.start as u64).unwrap();
    drop(w);
    let mut rest = Vec::new();
    f.read_to_end(&mut rest).unwrap();
    assert_eq!(rest.len(), len - (2 << 20));
    let bad = rest.iter().enumerate().position(|(k, &byte)| {
        let i = k + (2 << 20);
        byte != content(u8::from(range.contains(&i)), i)
    });
    assert!(
        bad.is_none(),
        "mount B read stale data at offset {:?} after A's write\n{}",
        bad.map(|k| k + (2 << 20)),
        two.logs()
    );
}

/// The `N` in a statedump line `KEY = N/MAX` or `KEY = N`.
fn dump_count(dump: &str, key: &str) -> u64 {
    dump.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{dump}"))
}

/// 100,000 files made and looked up through a client graph whose md-cache may hold 4,096
/// entries: the statedump's inode and name counts never pass it, and it evicted.
#[test]
fn md_cache_stays_within_its_entries_under_many_files() {
    const FILES: usize = 100_000;
    const MAX: u64 = 4096;
    let dir = scratch("coh-bound");
    let brick = dir.path().join("brick");
    std::fs::create_dir(&brick).unwrap();
    let sv = dir.path().join("server.vol");
    std::fs::write(&sv, caching_brick_graph("big", &brick)).unwrap();
    let bd = Brickd::start(dir.path(), &sv, &[]);
    let text = format!(
        "{}\nvolume big-md-cache\n    type performance/md-cache\n    option cache-invalidation on\n    option md-cache-timeout 60\n    option max-entries {MAX}\n    subvolumes big-client\nend-volume\n",
        client_volfile("big", bd.port, &[("cache-invalidation", "on")])
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut reg = weft_xlators::registry();
        weft_protocol::register(&mut reg);
        let vol = std::sync::Arc::new(
            weft_client::Volume::from_volfile(&text, reg, weft_client::OpenOptions::default())
                .await
                .unwrap(),
        );
        let d = vol.mkdir("/d", 0o755).await.unwrap().gfid;
        let check = |vol: &weft_client::Volume, when: &str| {
            let dump = vol.graph().statedump();
            for key in ["inodes", "names"] {
                let n = dump_count(&dump, key);
                assert!(
                    n <= MAX,
                    "{when}: md-cache holds {n} {key}, over {MAX}:\n{dump}"
                );
            }
            dump
        };
        // Made 8 at a time, then every name looked up again the same way.
        for pass in ["mknod", "lookup"] {
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..8 {
                let vol = vol.clone();
                tasks.spawn(async move {
                    for i in (t..FILES).step_by(8) {
                        let name = format!("f{i:06}");
                        if pass == "mknod" {
                            let mut xd = weft_core::Xdata::new();
                            xd.set(
                                weft_core::GFID_REQ_KEY,
                                weft_core::Gfid::random().0.to_vec(),
                            );
                            let loc = weft_core::Loc::entry(d, &name);
                            vol.top()
                                .mknod(
                                    &weft_core::Ctx::internal(),
                                    &loc,
                                    libc::S_IFREG | 0o644,
                                    0,
                                    0,
                                    xd,
                                )
                                .await
                                .unwrap();
                        } else {
                            vol.stat(format!("/d/{name}")).await.unwrap();
                        }
                    }
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
            check(&vol, pass);
        }
        let dump = check(&vol, "end");
        assert!(
            dump_count(&dump, "evictions") > 0,
            "nothing was evicted:\n{dump}"
        );
        vol.close().await;
    });
}

/// Mount A makes, renames and removes names in a directory it made (so it holds the
/// directory's lease and entry-behind answers those changes before the brick does them);
/// an fsync'd file is on the brick at once, and mount B's very next look sees every
/// change: the brick recalls A's lease first and waits for A to send them.
#[test]
fn changes_made_behind_under_a_lease_are_seen_by_the_other_mount_at_once() {
    let two = TwoMounts::caching("coh-lease", true);
    let brick = two.dir.path().join("brick");
    changes_behind_are_seen_at_once(
        &two.a.mnt,
        &two.b.mnt,
        &|rel| std::fs::read(brick.join(rel)).ok(),
        &|| two.logs(),
    );
}

/// The same over cluster/distribute on three brick servers: a directory is leased only
/// when every brick's copy is, and any brick another client reaches recalls it.
#[test]
fn changes_made_behind_under_a_lease_are_seen_at_once_over_distribute() {
    lease_scenario_over("coh-lease-dht", "cluster/distribute");
}

/// The same over cluster/replicate (replica 3).
#[test]
fn changes_made_behind_under_a_lease_are_seen_at_once_over_replicate() {
    lease_scenario_over("coh-lease-afr", "cluster/replicate");
}

/// Three brick servers in `dir` (bricks `b0`..`b2`, each a caching brick graph), and the
/// client volfile text of a `protocol/client` to each (`c0-client`..`c2-client`) with
/// `options`.
fn three_brick_servers(
    dir: &Path,
    options: &[(&str, &str)],
) -> (Vec<Brickd>, Vec<PathBuf>, String) {
    let graph = |i: usize, b: &Path| {
        let name = format!("c{i}");
        let text = caching_brick_graph(&name, b);
        (name, text)
    };
    three_brick_servers_with(dir, &graph, options)
}

/// [`changes_behind_are_seen_at_once`] on two caching mounts of three brick servers under
/// one cluster translator of type `cluster` (distribute: a file on one brick; replicate:
/// on every brick).
fn lease_scenario_over(tag: &str, cluster: &str) {
    let dir = scratch(tag);
    let (servers, bricks, mut client) =
        three_brick_servers(dir.path(), &[("cache-invalidation", "on")]);
    client.push_str(&format!(
        "volume cl\n    type {cluster}\n    option lease-directories on\n    subvolumes c0-client c1-client c2-client\nend-volume\n\n\
         volume eb\n    type performance/entry-behind\n    subvolumes cl\nend-volume\n\n\
         volume wb\n    type performance/write-behind\n    subvolumes eb\nend-volume\n\n\
         volume ra\n    type performance/read-ahead\n    subvolumes wb\nend-volume\n\n\
         volume qr\n    type performance/quick-read\n    option cache-timeout 60\n    subvolumes ra\nend-volume\n\n\
         volume mdc\n    type performance/md-cache\n    option cache-invalidation on\n    option md-cache-timeout 60\n    subvolumes qr\nend-volume\n",
    ));
    let vf = dir.path().join("client.vol");
    std::fs::write(&vf, client).unwrap();
    let mount = |side: &str| {
        let mnt = dir.path().join(format!("mnt-{side}"));
        std::fs::create_dir(&mnt).unwrap();
        mount_volfile(&vf, &mnt, &dir.path().join(format!("{side}.log")), &[])
    };
    let (a, b) = (mount("a"), mount("b"));
    let logs = || {
        let mut out = format!(
            "--- mount A log ---\n{}\n--- mount B log ---\n{}",
            a.log_text(),
            b.log_text()
        );
        for s in &servers {
            out.push_str(&format!("\n--- brickd log ---\n{}", s.log_text()));
        }
        out
    };
    let every_copy = cluster == "cluster/replicate";
    // Distribute: a file lives on the one brick its name hashes to (what is checked this
    // way is never renamed, so no link file stands in for it). Replicate: on each.
    let on_bricks = |rel: &str| {
        let copies: Vec<Vec<u8>> = bricks
            .iter()
            .filter_map(|b| std::fs::read(b.join(rel)).ok())
            .collect();
        let want = if every_copy { bricks.len() } else { 1 };
        (copies.len() == want && copies.windows(2).all(|w| w[0] == w[1])).then(|| copies[0].clone())
    };
    changes_behind_are_seen_at_once(&a.mnt, &b.mnt, &on_bricks, &logs);
    // Every brick holds every directory made behind.
    for b in &bricks {
        for d in ["d", "d/sub", "e", "m"] {
            assert!(b.join(d).is_dir(), "{} lacks {d}", b.display());
        }
    }
}

/// The lease scenario on mounts `a` and `b` of one volume; `on_bricks` reads a file's
/// bytes on the bricks (path relative to the volume root).
fn changes_behind_are_seen_at_once(
    a: &Path,
    b: &Path,
    on_bricks: &dyn Fn(&str) -> Option<Vec<u8>>,
    logs: &dyn Fn() -> String,
) {
    std::fs::create_dir(a.join("d")).unwrap();
    std::fs::write(a.join("d/f"), b"one").unwrap();
    std::fs::rename(a.join("d/f"), a.join("d/g")).unwrap();
    std::fs::write(a.join("d/h"), b"gone").unwrap();
    std::fs::remove_file(a.join("d/h")).unwrap();
    std::fs::create_dir(a.join("d/sub")).unwrap();
    std::fs::write(a.join("d/sub/x"), b"two").unwrap();
    // fsync: the file and its name are on the brick when it returns.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(a.join("d/sub/y")).unwrap();
        f.write_all(b"synced").unwrap();
        f.sync_all().unwrap();
        assert_eq!(
            on_bricks("d/sub/y").as_deref(),
            Some(&b"synced"[..]),
            "fsync returned before the brick had the file"
        );
    }
    let dump = String::from_utf8(getxattr(a, "weft.statedump").unwrap()).unwrap();
    for key in [
        "creates",
        "creates_with_content",
        "mkdirs",
        "renames",
        "unlinks",
    ] {
        assert!(
            dump_count(&dump, key) >= 1,
            "mount A made no {key} behind (no lease?):\n{dump}"
        );
    }
    // B's first look: the root's listing names d (its lease is recalled), then d's.
    assert!(listing(b, Path::new("")).contains(&"d".to_string()));
    assert_eq!(listing(b, Path::new("d")), vec!["g", "sub"], "{}", logs());
    assert_eq!(std::fs::read(b.join("d/g")).unwrap(), b"one");
    assert!(std::fs::metadata(b.join("d/h")).is_err(), "B sees d/h");
    assert_eq!(listing(b, Path::new("d/sub")), vec!["x", "y"]);
    assert_eq!(std::fs::read(b.join("d/sub/x")).unwrap(), b"two");
    let dump = String::from_utf8(getxattr(a, "weft.statedump").unwrap()).unwrap();
    assert!(
        dump_count(&dump, "recalls") >= 1,
        "A was never asked:\n{dump}"
    );
    // Recalled: A's later changes there go through, and B sees them at once too.
    std::fs::write(a.join("d/k"), b"three").unwrap();
    std::fs::rename(a.join("d/g"), a.join("d/g2")).unwrap();
    assert_eq!(std::fs::read(b.join("d/k")).unwrap(), b"three");
    assert_eq!(listing(b, Path::new("d")), vec!["g2", "k", "sub"]);
    // A new directory B looks into by name (a lookup, not a listing) is recalled too.
    std::fs::create_dir(a.join("e")).unwrap();
    std::fs::write(a.join("e/z"), b"four").unwrap();
    assert_eq!(std::fs::read(b.join("e/z")).unwrap(), b"four");
    // And B's own change in a directory A leases waits for A's changes before it.
    std::fs::create_dir(a.join("m")).unwrap();
    std::fs::write(a.join("m/one"), b"1").unwrap();
    std::fs::write(b.join("m/two"), b"2").unwrap();
    assert_eq!(listing(a, Path::new("m")), vec!["one", "two"]);
    assert_eq!(listing(b, Path::new("m")), vec!["one", "two"]);
}

/// Over cluster/replicate (three brick servers), a flush, fsync or release asked for the
/// file's attributes answers those of the copy reads use: what a stat right after
/// answers, size and mtime to the nanosecond (each copy has its own times). md-cache
/// keeps them, so a stat after writes needs no round trip.
#[test]
fn replicate_answers_a_stats_attributes_after_flush_fsync_and_release() {
    use weft_core::{Ctx, Fd, Gfid, Iatt, Loc, Xdata, GFID_REQ_KEY, POSTSTAT_KEY};
    let dir = scratch("coh-afr-post");
    let (_servers, _, mut client) = three_brick_servers(dir.path(), &[]);
    client.push_str(
        "volume cl\n    type cluster/replicate\n    subvolumes c0-client c1-client c2-client\nend-volume\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let vol = open_volume(&client).await;
        let (top, ctx) = (vol.top(), Ctx::internal());
        let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
        let mut req = Xdata::new();
        req.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
        top.create(&ctx, &Loc::entry(Gfid::ROOT, "f"), &fd, 0o644, 0, req)
            .await
            .unwrap();
        let mut ask = Xdata::new();
        ask.set(POSTSTAT_KEY, Vec::new());
        for (round, what) in ["flush", "fsync", "release"].iter().enumerate() {
            let data = bytes::Bytes::from(format!("{what} after {round} rounds of writes"));
            top.writev(&ctx, &fd, data.clone(), round as u64 * 7, Xdata::new())
                .await
                .unwrap();
            let xd = match *what {
                "flush" => top.flush(&ctx, &fd, ask.clone()).await.unwrap().1,
                "fsync" => top.fsync(&ctx, &fd, false, ask.clone()).await.unwrap().1,
                _ => top.release(&ctx, &fd, ask.clone()).await.unwrap().1,
            };
            let post = Iatt::from_bytes(
                xd.get(POSTSTAT_KEY)
                    .unwrap_or_else(|| panic!("{what} answered no attributes")),
            )
            .unwrap();
            let mut st = top
                .stat(&ctx, &Loc::inode(fd.gfid), Xdata::new())
                .await
                .unwrap()
                .0;
            // An internal xattr update of the copy that lands after the answer (a
            // changelog) may move its ctime on: never back.
            assert!(post.ctime <= st.ctime, "{what}: {post:?} against {st:?}");
            st.atime = post.atime;
            st.ctime = post.ctime;
            assert_eq!(post, st, "{what}'s attributes against a stat's");
            assert_eq!(post.size, round as u64 * 7 + data.len() as u64, "{what}");
        }
        vol.close().await;
    });
}

/// Entry changes sent from under a directory lease (`LEASED_DIR_KEY`, as entry-behind
/// sends them) share one replicate transaction per directory: a burst of creates takes
/// the directory's entry lock a few times per brick, not twice per name. Another client's
/// creates in that directory meanwhile (each locking its own name) wait for it and
/// succeed. Afterwards every brick holds every name, and the directory's changelog is
/// back to zero on each (the shared post-op ran).
#[test]
fn leased_creates_share_one_directory_transaction_and_let_another_client_in() {
    use weft_core::{Ctx, Fd, Gfid, Loc, Xdata, GFID_REQ_KEY, LEASED_DIR_KEY};
    const OURS: usize = 120;
    const THEIRS: usize = 20;
    let dir = scratch("coh-afr-shared");
    let (_servers, bricks, mut client) = three_brick_servers(dir.path(), &[]);
    for i in 0..3 {
        client.push_str(&format!(
            "volume s{i}\n    type debug/io-stats\n    subvolumes c{i}-client\nend-volume\n\n"
        ));
    }
    client.push_str("volume cl\n    type cluster/replicate\n    subvolumes s0 s1 s2\nend-volume\n");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (a, b) = (open_volume(&client).await, open_volume(&client).await);
        let d = a.mkdir("/d", 0o755).await.unwrap();
        let ctx = Ctx::internal();
        let ours = futures::future::join_all((0..OURS).map(|i| {
            let (top, ctx) = (a.top().clone(), ctx.clone());
            async move {
                let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
                let mut xd = Xdata::new();
                xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
                xd.set(LEASED_DIR_KEY, Vec::new());
                let loc = Loc::entry(d.gfid, format!("a{i}"));
                top.create(&ctx, &loc, &fd, 0o644, 0, xd).await?;
                top.release(&ctx, &fd, Xdata::new()).await.map(drop)
            }
        }));
        let theirs = futures::future::join_all((0..THEIRS).map(|i| {
            let b = &b;
            async move {
                let f = b.create(format!("/d/b{i}"), libc::O_RDWR, 0o644).await?;
                f.close().await
            }
        }));
        let (ours, theirs) = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            futures::future::join(ours, theirs),
        )
        .await
        .expect("the creates of both clients finish");
        for r in ours {
            r.expect("a create from under the lease");
        }
        for r in theirs {
            r.expect("the other client's create");
        }
        let s0 = a.graph().get("s0").unwrap().dump();
        let entrylks = fop_calls(&s0, "entrylk");
        assert!(
            entrylks <= 20,
            "{OURS} creates from under the lease took {entrylks} entry locks on one brick:\n{s0}"
        );
        a.close().await;
        b.close().await;
    });
    let mut want: Vec<String> = (0..OURS).map(|i| format!("a{i}")).collect();
    want.extend((0..THEIRS).map(|i| format!("b{i}")));
    want.sort();
    for brick in &bricks {
        let mut got: Vec<String> = std::fs::read_dir(brick.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        got.sort();
        assert_eq!(got, want, "names on {}", brick.display());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while let Some(text) = raised_changelogs(&brick.join("d")) {
            assert!(
                std::time::Instant::now() < deadline,
                "the directory's changelog on {} stays raised:\n{text}",
                brick.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
