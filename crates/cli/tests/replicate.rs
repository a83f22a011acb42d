//! `cluster/replicate` on real brick processes and a real mount: a random workload checked
//! against an in-memory model while brick processes are SIGKILLed and restarted one at a
//! time, then heal, then every replica byte-identical to the model (replica 3, and 2x3
//! distributed-replicated, replica 3 arbiter 1).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// A brick graph with the index of pending changes: posix < locks < index < server, with
/// features/arbiter above posix for an arbiter brick.
fn replica_brick_graph(name: &str, dir: &Path, arbiter: bool) -> String {
    let (arb, below) = if arbiter {
        (
            format!("volume {name}-arbiter\n    type features/arbiter\n    subvolumes {name}-posix\nend-volume\n\n"),
            format!("{name}-arbiter"),
        )
    } else {
        (String::new(), format!("{name}-posix"))
    };
    format!(
        "volume {name}-posix\n    type storage/posix\n    option directory {d}\nend-volume\n\n{arb}\
         volume {name}-locks\n    type features/locks\n    subvolumes {below}\nend-volume\n\n\
         volume {name}\n    type features/index\n    option directory {d}\n    subvolumes {name}-locks\nend-volume\n\n\
         volume {name}-server\n    type protocol/server\n    subvolumes {name}\nend-volume\n\n",
        d = dir.display()
    )
}

/// Bricks served by their own brickd, `sets` replica sets of 3, and one mount of them.
struct Replicated {
    bricks: Vec<PathBuf>,
    servers: Arc<Mutex<Vec<Brickd>>>,
    names: Vec<String>,
    mount: Option<MountGuard>,
    mnt: PathBuf,
    log: PathBuf,
    /// The last brick of each set is an arbiter.
    arbiter: bool,
    dir: tempfile::TempDir,
}

impl Replicated {
    fn new(tag: &str, sets: usize, arbiter: bool) -> Replicated {
        let dir = scratch(tag);
        let mut bricks = Vec::new();
        let mut servers = Vec::new();
        let mut names = Vec::new();
        let mut client = String::new();
        for i in 0..sets * 3 {
            let b = dir.path().join(format!("b{i}"));
            std::fs::create_dir(&b).unwrap();
            let sd = dir.path().join(format!("s{i}"));
            std::fs::create_dir(&sd).unwrap();
            let vf = sd.join("brick.vol");
            std::fs::write(
                &vf,
                replica_brick_graph(&format!("r{i}"), &b, arbiter && i % 3 == 2),
            )
            .unwrap();
            let s = Brickd::start(&sd, &vf, &[]);
            client.push_str(&client_volfile(&format!("r{i}"), s.port, &[]));
            client.push('\n');
            names.push(format!("r{i}-client"));
            bricks.push(b);
            servers.push(s);
        }
        let mut tops = Vec::new();
        for k in 0..sets {
            let subs: Vec<String> = names[k * 3..k * 3 + 3].to_vec();
            client.push_str(&format!(
                "volume rep{k}\n    type cluster/replicate\n    option self-heal-on-reconnect on\n    option arbiter-count {}\n    subvolumes {}\nend-volume\n\n",
                u8::from(arbiter),
                subs.join(" ")
            ));
            tops.push(format!("rep{k}"));
        }
        let below = if sets > 1 {
            client.push_str(&format!(
                "volume dht\n    type cluster/distribute\n    subvolumes {}\nend-volume\n\n",
                tops.join(" ")
            ));
            "dht".to_string()
        } else {
            tops[0].clone()
        };
        client.push_str(&format!(
            "volume wb\n    type performance/write-behind\n    subvolumes {below}\nend-volume\n"
        ));
        let cvf = dir.path().join("client.vol");
        std::fs::write(&cvf, client).unwrap();
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let log = dir.path().join("mnt.log");
        let mount = mount_volfile(&cvf, &mnt, &log, &[]);
        Replicated {
            bricks,
            servers: Arc::new(Mutex::new(servers)),
            names,
            mount: Some(mount),
            mnt,
            log,
            arbiter,
            dir,
        }
    }

    fn back_count(&self, i: usize) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let want = format!("replica {} is back", self.names[i]);
        text.lines().filter(|l| l.contains(&want)).count()
    }

    /// Entries left in every brick's index.
    fn pending(&self) -> usize {
        pending_on(&self.bricks)
    }
}

/// Entries in the indexes of `bricks`.
fn pending_on(bricks: &[PathBuf]) -> usize {
    bricks
        .iter()
        .map(|b| weft_cluster::index::pending_entries(b) as usize)
        .sum()
}

/// Each brick's pending entries with their changelogs, for failure messages.
fn describe_pending(bricks: &[PathBuf]) -> String {
    let mut out = String::new();
    for b in bricks {
        for e in std::fs::read_dir(b.join(".weft/indices/pending"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let g = e.file_name().to_string_lossy().into_owned();
            if g == weft_cluster::index::INDEX_BASE {
                continue;
            }
            let h = b
                .join(".weft/handles")
                .join(&g[0..2])
                .join(&g[2..4])
                .join(&g);
            let h = if g.ends_with("0001") { b.clone() } else { h };
            let o = std::process::Command::new("getfattr")
                .args(["-d", "-m", "trusted.weft.afr", "-e", "hex"])
                .arg(&h)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.push_str(&format!("{}: {g}\n{o}\n", b.display()));
        }
    }
    out
}

/// xorshift: reproducible randomness without a crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn op_err(what: &str, i: usize, e: impl std::fmt::Display, log: &Path) -> ! {
    panic!(
        "operation {i} ({what}) failed: {e}\nmount log:\n{}",
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// The workload: writes, truncates, punched and zeroed ranges, fallocate, renames, fsyncs
/// and checked reads on a few files, against `model` (name -> bytes).
fn workload(r: &Replicated, ops: usize, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let dir = r.mnt.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for f in 0..6 {
        let name = format!("f{f}");
        std::fs::write(dir.join(&name), b"").unwrap();
        model.insert(name, Vec::new());
    }
    let mut rng = Rng(seed);
    let mut renames = 0;
    for i in 0..ops {
        let names: Vec<String> = model.keys().cloned().collect();
        let name = names[rng.below(names.len() as u64) as usize].clone();
        let path = dir.join(&name);
        let cur = model.get_mut(&name).unwrap();
        match rng.below(20) {
            0..=8 => {
                let off = rng.below(cur.len() as u64 + 8192);
                let len = 1 + rng.below(16384) as usize;
                let byte = (rng.next() & 0xff) as u8;
                let data: Vec<u8> = (0..len).map(|k| byte.wrapping_add(k as u8)).collect();
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap_or_else(|e| op_err("open for write", i, e, &r.log));
                f.write_all_at(&data, off)
                    .unwrap_or_else(|e| op_err("write", i, e, &r.log));
                if rng.below(4) == 0 {
                    f.sync_all()
                        .unwrap_or_else(|e| op_err("fsync", i, e, &r.log));
                }
                drop(f);
                let end = off as usize + len;
                if cur.len() < end {
                    cur.resize(end, 0);
                }
                cur[off as usize..end].copy_from_slice(&data);
            }
            9 | 10 => {
                let size = rng.below(200_000);
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap_or_else(|e| op_err("open for truncate", i, e, &r.log));
                f.set_len(size)
                    .unwrap_or_else(|e| op_err("truncate", i, e, &r.log));
                cur.resize(size as usize, 0);
            }
            11 | 12 => {
                // Punch a hole (size kept) or zero a range (may extend).
                let off = rng.below(cur.len() as u64 + 4096);
                let len = 1 + rng.below(40_000);
                let punch = rng.below(2) == 0;
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .unwrap_or_else(|e| op_err("open for fallocate", i, e, &r.log));
                let mode = if punch {
                    libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
                } else {
                    libc::FALLOC_FL_ZERO_RANGE
                };
                // SAFETY: fallocate on an fd we own.
                let rc = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
                if rc != 0 {
                    op_err("fallocate", i, std::io::Error::last_os_error(), &r.log);
                }
                let end = (off + len) as usize;
                if !punch && cur.len() < end {
                    cur.resize(end, 0);
                }
                let stop = end.min(cur.len());
                if (off as usize) < stop {
                    cur[off as usize..stop].fill(0);
                }
            }
            13 => {
                renames += 1;
                let new = format!("{}.{renames}", name.split('.').next().unwrap());
                std::fs::rename(&path, dir.join(&new))
                    .unwrap_or_else(|e| op_err("rename", i, e, &r.log));
                let v = model.remove(&name).unwrap();
                model.insert(new, v);
            }
            _ => {
                let got = std::fs::read(&path).unwrap_or_else(|e| op_err("read", i, e, &r.log));
                if got != *cur {
                    let first = got
                        .iter()
                        .zip(cur.iter())
                        .position(|(a, b)| a != b)
                        .unwrap_or(got.len().min(cur.len()));
                    panic!(
                        "operation {i}: {name} read {} bytes differing from the model ({} bytes) at {first}",
                        got.len(),
                        cur.len()
                    );
                }
            }
        }
    }
    model
}

/// SIGKILLs and restarts one brick process at a time until `stop`, waiting each time for
/// the mount to see it back before the next. The thread reports its kill count on the
/// first channel, then stays until the second says so: brick processes it started die
/// with it (PR_SET_PDEATHSIG is per thread).
fn kill_loop(
    r: &Replicated,
    stop: Arc<AtomicBool>,
) -> (
    std::sync::mpsc::Receiver<usize>,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (kills_tx, kills_rx) = std::sync::mpsc::channel();
    let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
    let servers = r.servers.clone();
    let n = r.names.len();
    let log = r.log.clone();
    let names = r.names.clone();
    let bricks = r.bricks.clone();
    let handle = std::thread::spawn(move || {
        let mut kills = 0;
        let mut i = 0;
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(400));
            let before = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches(&format!("replica {} is back", names[i]))
                .count();
            servers.lock().unwrap()[i].kill9();
            kills += 1;
            std::thread::sleep(Duration::from_millis(300 + (kills as u64 * 97) % 500));
            servers.lock().unwrap()[i].restart();
            let t = Instant::now();
            while std::fs::read_to_string(&log)
                .unwrap_or_default()
                .matches(&format!("replica {} is back", names[i]))
                .count()
                <= before
            {
                assert!(
                    t.elapsed() < Duration::from_secs(20),
                    "the mount did not see {} back",
                    names[i]
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            // The next kill waits until what this one left pending is healed: killing
            // another brick first could leave the only good copy of a file down.
            let t = Instant::now();
            while pending_on(&bricks) > 0 {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "pending entries were not healed within 60 s:\n{}\nmount log:\n{}",
                    describe_pending(&bricks),
                    std::fs::read_to_string(&log)
                        .unwrap_or_default()
                        .lines()
                        .filter(|l| !l.contains("INFO weft_cluster::replicate::heal"))
                        .rev()
                        .take(30)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            i = (i + 1) % n;
        }
        let _ = kills_tx.send(kills);
        let _ = end_rx.recv();
    });
    (kills_rx, end_tx, handle)
}

/// Every brick of every set holds the model's bytes for each name (on the set holding it).
fn assert_replicas_equal_model(r: &Replicated, model: &BTreeMap<String, Vec<u8>>) {
    let sets = r.bricks.len() / 3;
    for (name, want) in model {
        let mut holders = 0;
        for k in 0..sets {
            // Distribute's link files (mode ---------T) name data held elsewhere.
            let copies: Vec<Option<Vec<u8>>> = r.bricks[k * 3..k * 3 + 3]
                .iter()
                .map(|b| {
                    let p = b.join("data").join(name);
                    let link = std::fs::metadata(&p).is_ok_and(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o7777 == 0o1000
                    });
                    if link {
                        None
                    } else {
                        std::fs::read(&p).ok()
                    }
                })
                .collect();
            if copies.iter().all(Option::is_none) {
                continue;
            }
            holders += 1;
            for (j, c) in copies.iter().enumerate() {
                let c = c
                    .as_ref()
                    .unwrap_or_else(|| panic!("{name} missing on brick {} of set {k}", j));
                if r.arbiter && j == 2 {
                    assert!(
                        c.is_empty(),
                        "{name} holds {} bytes on the arbiter of set {k}",
                        c.len()
                    );
                    continue;
                }
                assert!(
                    c == want,
                    "{name} on brick {j} of set {k}: {} bytes, model {} bytes",
                    c.len(),
                    want.len()
                );
            }
        }
        assert_eq!(holders, 1, "{name} is on {holders} replica sets");
    }
}

fn model_test(tag: &str, sets: usize, ops: usize, kill: bool, arbiter: bool) {
    let mut r = Replicated::new(tag, sets, arbiter);
    let stop = Arc::new(AtomicBool::new(!kill));
    let (kills_rx, end_tx, killer) = kill_loop(&r, stop.clone());
    let model = workload(&r, ops, 0x9e37_79b9_7f4a_7c15 ^ sets as u64);
    stop.store(true, Ordering::Release);
    let kills = kills_rx.recv().expect("the kill loop ended early");
    assert!(!kill || kills >= 3, "only {kills} brick kills happened");
    // Every brick is up; what was missed heals on access (a lookup that finds pending
    // changes) until every index is empty.
    let t = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(1100));
        for name in model.keys() {
            let got = std::fs::read(r.mnt.join("data").join(name))
                .unwrap_or_else(|e| op_err(&format!("read {name} after the kills"), 0, e, &r.log));
            assert!(got == model[name], "{name} read wrong after the kills");
        }
        let _ = std::fs::read_dir(r.mnt.join("data")).map(|d| d.count());
        if r.pending() == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} entries still pending after 60 s",
            r.pending()
        );
    }
    assert_replicas_equal_model(&r, &model);
    let log = std::fs::read_to_string(&r.log).unwrap_or_default();
    assert!(!log.contains("split-brain"), "split-brain reported:\n{log}");
    assert!(!kill || r.back_count(0) >= 1);
    r.mount.take();
    let _ = end_tx.send(());
    killer.join().expect("the kill loop");
    drop(r.dir);
}

#[test]
fn replica3_model_survives_brick_kills_and_heals_identical() {
    model_test("rep3-model", 1, 1500, true, false);
}

#[test]
fn distributed_replicated_2x3_model() {
    model_test("rep2x3-model", 2, 1200, false, false);
}

#[test]
fn distributed_replicated_2x3_model_survives_brick_kills() {
    model_test("rep2x3-kill-model", 2, 1200, true, false);
}

/// Replica 3 arbiter 1 under the same workload and kill loop: no operation fails, reads
/// match the model, the two data bricks end equal to it and the arbiter holds every name
/// with no data.
#[test]
fn arbiter_model_survives_brick_kills_and_keeps_no_data() {
    model_test("arb-model", 1, 1000, true, true);
}

/// Opens `p` for writing, writes and fsyncs; the error if any step fails.
fn write_synced(p: &Path, data: &[u8]) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)?;
    f.write_all_at(data, 0)?;
    f.set_len(data.len() as u64)?;
    f.sync_all()
}

/// Waits until the mount's log says replica `i` is back.
fn wait_back(r: &Replicated, i: usize, before: usize) {
    let t = Instant::now();
    while r.back_count(i) <= before {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the mount did not see {} back",
            r.names[i]
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The arbiter decides but never serves data: with one data brick down the volume stays
/// writable; when the only good data copy is down and the other data brick is behind,
/// writes and reads of that file fail instead of the arbiter becoming the only source
/// (nothing is written to the stale copy); once the good copy is back everything heals.
#[test]
fn arbiter_never_becomes_the_only_source_of_data() {
    let r = Replicated::new("arb-source", 1, true);
    let dir = r.mnt.join("data");
    std::fs::create_dir(&dir).unwrap();
    let f = dir.join("f");
    write_synced(&f, b"version one").unwrap();
    let brick = |i: usize| r.bricks[i].join("data/f");
    assert_eq!(std::fs::read(brick(0)).unwrap(), b"version one");
    assert_eq!(std::fs::read(brick(1)).unwrap(), b"version one");
    assert_eq!(
        std::fs::metadata(brick(2)).unwrap().len(),
        0,
        "arbiter holds data"
    );

    // Data brick 0 down: still writable (brick 1 and the arbiter).
    r.servers.lock().unwrap()[0].kill9();
    std::thread::sleep(Duration::from_millis(300));
    write_synced(&f, b"version two, written while brick 0 was down").unwrap();
    let g = dir.join("g");
    std::fs::write(&g, b"new file").unwrap();
    assert_eq!(std::fs::metadata(brick(2)).unwrap().len(), 0);

    // An fd kept open across what follows: its writes go straight to the transaction.
    let held = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
    // Brick 1 (the only good data copy) down, stale brick 0 back.
    let before = r.back_count(0);
    r.servers.lock().unwrap()[1].kill9();
    r.servers.lock().unwrap()[0].restart();
    wait_back(&r, 0, before);
    std::thread::sleep(Duration::from_millis(300));
    let w = write_synced(&f, b"version three must not be taken");
    assert!(
        w.is_err(),
        "a write succeeded with only the arbiter holding good data"
    );
    let w = held
        .write_all_at(b"VERSION THREE", 0)
        .and_then(|_| held.sync_all());
    assert!(
        w.is_err(),
        "a write on an open fd succeeded with only the arbiter holding good data"
    );
    drop(held);
    assert!(
        std::fs::read(&f).is_err(),
        "a read was served with no good data copy up"
    );
    assert_eq!(
        std::fs::read(brick(0)).unwrap(),
        b"version one",
        "the stale copy was changed"
    );
    // A file made now has both its copies up: it is writable.
    let h = dir.join("h");
    std::fs::write(&h, b"made while brick 1 was down").unwrap();
    assert_eq!(std::fs::read(&h).unwrap(), b"made while brick 1 was down");

    // The good copy back: heal, and every copy agrees.
    let before = r.back_count(1);
    r.servers.lock().unwrap()[1].restart();
    wait_back(&r, 1, before);
    let t = Instant::now();
    loop {
        let _ = std::fs::read_dir(&dir).map(|d| d.count());
        let _ = std::fs::read(&f);
        let _ = std::fs::read(&g);
        let _ = std::fs::read(&h);
        if r.pending() == 0 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "still pending after 60 s:\n{}",
            describe_pending(&r.bricks)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let want: [(&str, &[u8]); 3] = [
        ("f", b"version two, written while brick 0 was down"),
        ("g", b"new file"),
        ("h", b"made while brick 1 was down"),
    ];
    for (name, data) in want {
        assert_eq!(
            std::fs::read(dir.join(name)).unwrap(),
            data,
            "{name} on the mount"
        );
        for b in 0..2 {
            assert_eq!(
                std::fs::read(r.bricks[b].join("data").join(name)).unwrap(),
                data,
                "{name} on data brick {b}"
            );
        }
        assert_eq!(
            std::fs::metadata(r.bricks[2].join("data").join(name))
                .unwrap()
                .len(),
            0,
            "{name} holds data on the arbiter"
        );
    }
    let log = std::fs::read_to_string(&r.log).unwrap_or_default();
    assert!(!log.contains("split-brain"), "split-brain reported:\n{log}");
}

/// Asserts two trees (of [`tree`]) are equal, naming at most ten paths that differ.
fn same_tree(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>, what: &str) {
    let diff: Vec<&String> = got
        .keys()
        .chain(want.keys())
        .filter(|k| got.get(*k) != want.get(*k))
        .take(10)
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: {} paths against {}, differing at {diff:?}",
        got.len(),
        want.len()
    );
}

/// Files under `root` (brick or mount), without the brick's `.weft`: path -> bytes.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.file_name().is_some_and(|n| n == ".weft") {
                continue;
            }
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_dir() {
                dirs.push(p);
                out.insert(format!("{rel}/"), Vec::new());
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Entries every brick's index lists (`u64::MAX` while a brick cannot be asked).
fn heal_total(h: &str, t: &common::pool::Node, vol: &str) -> u64 {
    let v = common::pool::json(h, t, &["volume", "heal", vol, "info", "summary"]);
    let b = v["bricks"].as_array().unwrap();
    if b.iter().any(|b| b["status"] != "Connected") {
        return u64::MAX;
    }
    b.iter().map(|b| b["pending"].as_u64().unwrap()).sum()
}

/// Creates volume `vol` (`layout` words, then one brick per node: `bricks[i]` on
/// `nodes[i]`) through node 1 and starts it.
fn create_and_start(nodes: &[common::pool::Node], vol: &str, layout: &[&str], bricks: &[PathBuf]) {
    let h = &nodes[0].host;
    let mut args: Vec<String> = ["volume", "create", vol]
        .iter()
        .chain(layout)
        .map(|s| s.to_string())
        .collect();
    for (n, b) in nodes.iter().zip(bricks) {
        args.push(format!("{}:{}", n.host, b.display()));
    }
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    common::pool::ok(h, &nodes[0], &a);
    common::pool::ok(h, &nodes[0], &["volume", "start", vol]);
}

/// Stops a node: its mgmtd and its brick process, SIGKILLed.
fn down(n: &mut common::pool::Node) {
    let pid = n.brickd_pid();
    n.sigkill();
    if let Some(pid) = pid {
        // SAFETY: kill(2) of the brick process this node started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// A replica 3 volume through the pool: a brick down while 1,000 files change, `heal
/// info` lists them, the self-heal daemon heals them from the indexes (no crawl), the
/// replicas end identical; quorum (two bricks down: EROFS, reads work); a split-brain
/// made on purpose on a replica 2 volume shows in `heal info split-brain`, reads EIO, and
/// each resolution command fixes it. First, a `replica 3 arbiter 1` volume through the
/// pool: the arbiter brick keeps names but no data.
#[test]
fn pool_heals_from_the_index_keeps_quorum_and_resolves_split_brain() {
    use common::pool::*;
    let d = scratch("rep-pool");
    let mut nodes = pool(18, 3, d.path());
    let h = nodes[0].host.clone();
    {
        let ab: Vec<PathBuf> = (0..3).map(|i| d.path().join(format!("av-b{i}"))).collect();
        create_and_start(&nodes, "av", &["replica", "3", "arbiter", "1"], &ab);
        let text = ok(&h, &nodes[0], &["volume", "info", "av"]);
        assert!(text.contains("Number of Bricks: 1 x (2 + 1) = 3"), "{text}");
        assert!(
            text.contains(&format!("{} (arbiter)", ab[2].display())),
            "{text}"
        );
        assert_eq!(info(&h, &nodes[0], "av")["arbiter"], true);
        let mnt = d.path().join("av-mnt");
        std::fs::create_dir(&mnt).unwrap();
        let m = mount_args(
            &[format!("{h}:/av").as_ref(), mnt.as_os_str()],
            &mnt,
            &d.path().join("av-mount.log"),
        );
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::create_dir(mnt.join("dir")).unwrap();
        std::fs::write(mnt.join("dir/big"), &data).unwrap();
        assert_eq!(std::fs::read(mnt.join("dir/big")).unwrap(), data);
        assert_eq!(
            std::fs::metadata(mnt.join("dir/big")).unwrap().len(),
            300_000
        );
        // Made behind in a leased directory: on the bricks once fsync'd.
        std::fs::File::open(mnt.join("dir/big"))
            .and_then(|f| f.sync_all())
            .unwrap();
        for b in &ab[..2] {
            assert_eq!(std::fs::read(b.join("dir/big")).unwrap(), data);
        }
        assert_eq!(std::fs::metadata(ab[2].join("dir/big")).unwrap().len(), 0);
        drop(m);
        ok(&h, &nodes[0], &["volume", "stop", "av"]);
    }
    let bricks: Vec<PathBuf> = (0..3).map(|i| d.path().join(format!("rv-b{i}"))).collect();
    create_and_start(&nodes, "rv", &["replica", "3"], &bricks);
    assert_eq!(info(&h, &nodes[0], "rv")["type"], "Replicate");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/rv").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    for k in 0..10 {
        std::fs::create_dir(mnt.join(format!("d{k}"))).unwrap();
        for i in 0..100 {
            std::fs::write(mnt.join(format!("d{k}/f{i}")), format!("{k}/{i} ")).unwrap();
        }
    }
    // Node 3 (its brick) down while every file changes.
    down(&mut nodes[2]);
    for k in 0..10 {
        for i in 0..100 {
            let p = mnt.join(format!("d{k}/f{i}"));
            let mut v = std::fs::read(&p).unwrap();
            v.extend_from_slice(b"changed while brick 3 was down\n");
            std::fs::write(&p, v).unwrap();
        }
    }
    std::fs::write(mnt.join("new"), b"made while down").unwrap();
    // A directory made while down: its heal must leave nothing pending.
    std::fs::create_dir(mnt.join("newdir")).unwrap();
    std::fs::write(mnt.join("newdir/inside"), b"in a new directory").unwrap();
    let i = json(&h, &nodes[0], &["volume", "heal", "rv", "info", "summary"]);
    for b in &i["bricks"].as_array().unwrap()[..2] {
        assert!(b["pending"].as_u64().unwrap() >= 1000, "{i}");
    }
    let b3 = &i["bricks"][2];
    assert_ne!(b3["status"], "Connected", "{b3}");
    // Back: the self-heal daemon heals from the indexes.
    nodes[2].spawn();
    wait_until("heal info to return to zero", 120, || {
        heal_total(&h, &nodes[0], "rv") == 0
    });
    let tasks = json(&h, &nodes[0], &["volume", "heal", "rv", "status"]);
    let healed: u64 = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["checkpoint"]["healed"].as_u64().unwrap_or(0))
        .sum();
    let crawled: u64 = tasks
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["checkpoint"]["crawled"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(crawled, 0, "the daemon crawled: {tasks}");
    assert!(healed > 0, "{tasks}");
    let t0 = tree(&bricks[0]);
    assert_eq!(t0.len(), 10 + 1000 + 1 + 2);
    for b in &bricks[1..] {
        let t = tree(b);
        let diff: Vec<&String> = t0
            .keys()
            .chain(t.keys())
            .filter(|k| t0.get(*k) != t.get(*k))
            .take(10)
            .collect();
        assert!(
            diff.is_empty(),
            "{} differs from brick 0 after heal at {diff:?}",
            b.display()
        );
    }
    assert_eq!(t0, tree(&mnt));

    // Quorum: two bricks down, changes fail with EROFS, reads of good copies work.
    down(&mut nodes[1]);
    down(&mut nodes[2]);
    std::thread::sleep(Duration::from_millis(500));
    let e = std::fs::write(mnt.join("d0/quorum"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    assert!(std::fs::read(mnt.join("d0/f1"))
        .unwrap()
        .starts_with(b"0/1 "));
    nodes[1].spawn();
    nodes[2].spawn();
    wait_until("writes to work again with quorum", 60, || {
        std::fs::write(mnt.join("d0/quorum"), b"back").is_ok()
    });

    // Split-brain on purpose: replica 2, no quorum, no automatic heal.
    let sb: Vec<PathBuf> = (0..2).map(|i| d.path().join(format!("sb-b{i}"))).collect();
    let s0 = format!("{}:{}", nodes[0].host, sb[0].display());
    let s1 = format!("{}:{}", nodes[1].host, sb[1].display());
    ok(
        &h,
        &nodes[0],
        &["volume", "create", "sb", "replica", "2", &s0, &s1],
    );
    for (k, v) in [
        ("cluster.quorum-type", "none"),
        ("cluster.self-heal-daemon", "off"),
        ("cluster.self-heal-on-access", "off"),
    ] {
        ok(&h, &nodes[0], &["volume", "set", "sb", k, v]);
    }
    ok(&h, &nodes[0], &["volume", "start", "sb"]);
    let smnt = d.path().join("smnt");
    std::fs::create_dir(&smnt).unwrap();
    let _sm = mount_args(
        &[format!("{h}:/sb").as_ref(), smnt.as_os_str()],
        &smnt,
        &d.path().join("smount.log"),
    );
    let names = ["big", "late", "brick", "auto"];
    for n in names {
        std::fs::write(smnt.join(n), b"both\n").unwrap();
    }
    down(&mut nodes[1]);
    std::thread::sleep(Duration::from_millis(300));
    for n in names {
        std::fs::write(
            smnt.join(n),
            format!("{n} written on brick 1 only, the longer copy\n"),
        )
        .unwrap();
    }
    nodes[1].spawn();
    wait_until("brick 2 of sb to serve", 30, || {
        json(&h, &nodes[0], &["volume", "status", "sb"])["bricks"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["online"] == true))
    });
    std::thread::sleep(Duration::from_secs(2));
    // Node 1 down (mgmtd and brick; the mount keeps its graph).
    down(&mut nodes[0]);
    std::thread::sleep(Duration::from_millis(300));
    for n in names {
        std::fs::write(smnt.join(n), format!("{n} on brick 2\n")).unwrap();
    }
    nodes[0].spawn();
    wait_until("brick 1 of sb to be back", 30, || {
        json(&h, &nodes[0], &["volume", "status", "sb"])["bricks"]
            .as_array()
            .is_some_and(|b| b.iter().all(|b| b["online"] == true))
    });
    std::thread::sleep(Duration::from_secs(2));
    for n in names {
        let e = std::fs::read(smnt.join(n)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{n}: {e}");
    }
    let sbi = json(
        &h,
        &nodes[0],
        &["volume", "heal", "sb", "info", "split-brain"],
    );
    let listed: u64 = sbi["bricks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["split_brain"].as_u64().unwrap())
        .sum();
    assert!(listed >= 4, "{sbi}");
    ok(
        &h,
        &nodes[0],
        &["volume", "heal", "sb", "split-brain", "bigger-file", "/big"],
    );
    ok(
        &h,
        &nodes[0],
        &[
            "volume",
            "heal",
            "sb",
            "split-brain",
            "latest-mtime",
            "/late",
        ],
    );
    ok(
        &h,
        &nodes[0],
        &[
            "volume",
            "heal",
            "sb",
            "split-brain",
            "source-brick",
            &s0,
            "/brick",
        ],
    );
    let err = fails(
        &h,
        &nodes[0],
        &["volume", "heal", "sb", "split-brain", "bigger-file", "/big"],
    );
    assert!(err.contains("not in split-brain"), "{err}");
    // The favorite-child policy resolves the last one without a command (the self-heal
    // daemon heals it by that policy).
    assert!(std::fs::read(smnt.join("auto")).is_err());
    ok(
        &h,
        &nodes[0],
        &[
            "volume",
            "set",
            "sb",
            "cluster.favorite-child-policy",
            "size",
        ],
    );
    ok(
        &h,
        &nodes[0],
        &["volume", "set", "sb", "cluster.self-heal-daemon", "on"],
    );
    wait_until("the favorite-child policy to resolve auto", 60, || {
        std::fs::read(smnt.join("auto")).is_ok()
    });
    assert_eq!(
        std::fs::read_to_string(smnt.join("auto")).unwrap(),
        "auto written on brick 1 only, the longer copy\n"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        std::fs::read_to_string(smnt.join("big")).unwrap(),
        "big written on brick 1 only, the longer copy\n"
    );
    assert_eq!(
        std::fs::read_to_string(smnt.join("late")).unwrap(),
        "late on brick 2\n"
    );
    assert_eq!(
        std::fs::read_to_string(smnt.join("brick")).unwrap(),
        "brick written on brick 1 only, the longer copy\n"
    );
    for n in names {
        assert_eq!(
            std::fs::read(sb[0].join(n)).unwrap(),
            std::fs::read(sb[1].join(n)).unwrap()
        );
    }
}

/// `volume replace-brick` on a replica 3 volume: a brick moves to a new, empty directory;
/// every file reads right through the mount at once (the new brick is a sink from its
/// first moment, never an empty source), self-heal fills it, and it ends identical to the
/// others. Bad requests are refused with the reason and change nothing.
#[test]
fn replace_brick_fills_the_new_brick_by_self_heal() {
    use common::pool::*;
    let d = scratch("rep-replace");
    let nodes = pool(19, 3, d.path());
    let h = nodes[0].host.clone();
    let bricks: Vec<PathBuf> = (0..3).map(|i| d.path().join(format!("rp-b{i}"))).collect();
    create_and_start(&nodes, "rp", &["replica", "3"], &bricks);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/rp").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    for k in 0..3 {
        std::fs::create_dir_all(mnt.join(format!("d{k}/sub"))).unwrap();
        for i in 0..40 {
            std::fs::write(mnt.join(format!("d{k}/f{i}")), format!("{k}/{i}\n")).unwrap();
        }
        std::fs::write(mnt.join(format!("d{k}/sub/deep")), b"deep").unwrap();
    }
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(mnt.join("big"), &big).unwrap();
    let before = tree(&mnt);

    let old = format!("{}:{}", nodes[2].host, bricks[2].display());
    let new_dir = d.path().join("rp-b2-new");
    let new = format!("{}:{}", nodes[2].host, new_dir.display());
    // Refused, changing nothing: not a brick of the volume, a node already holding a
    // brick of the set, the same brick, and without `commit force`.
    let e = fails(
        &h,
        &nodes[0],
        &[
            "volume",
            "replace-brick",
            "rp",
            &format!("{}:/nope", nodes[2].host),
            &new,
            "commit",
            "force",
        ],
    );
    assert!(e.contains("is not a brick of rp"), "{e}");
    let e = fails(
        &h,
        &nodes[0],
        &[
            "volume",
            "replace-brick",
            "rp",
            &old,
            &format!("{}:{}", nodes[0].host, d.path().join("elsewhere").display()),
            "commit",
            "force",
        ],
    );
    assert!(
        e.contains("already holds a brick of the same replica set"),
        "{e}"
    );
    let e = fails(
        &h,
        &nodes[0],
        &[
            "volume",
            "replace-brick",
            "rp",
            &old,
            &old,
            "commit",
            "force",
        ],
    );
    assert!(e.contains("the new brick is the old one"), "{e}");
    let e = fails(
        &h,
        &nodes[0],
        &["volume", "replace-brick", "rp", &old, &new],
    );
    assert!(e.contains("usage"), "{e}");
    assert_eq!(info(&h, &nodes[0], "rp")["bricks"][2]["name"], old.as_str());

    let out = ok(
        &h,
        &nodes[0],
        &[
            "volume",
            "replace-brick",
            "rp",
            &old,
            &new,
            "commit",
            "force",
        ],
    );
    assert!(out.contains("success"), "{out}");
    assert_eq!(info(&h, &nodes[0], "rp")["bricks"][2]["name"], new.as_str());
    // Right away, and all the while the new brick fills, the mount reads right: a copy
    // the heal has just made is never read before it is filled.
    same_tree(&tree(&mnt), &before, "the mount right after the replace");
    wait_until("heal info to return to zero", 120, || {
        same_tree(&tree(&mnt), &before, "the mount while the heal runs");
        heal_total(&h, &nodes[0], "rp") == 0
    });
    let t0 = tree(&bricks[0]);
    same_tree(&tree(&new_dir), &t0, "the new brick (against brick 0)");
    same_tree(&tree(&bricks[1]), &t0, "brick 1 (against brick 0)");
    same_tree(&tree(&mnt), &before, "the mount after heal");
    // Still fully replicated: a write reaches the new brick.
    std::fs::write(mnt.join("after"), b"written after the replace").unwrap();
    assert_eq!(
        std::fs::read(new_dir.join("after")).unwrap(),
        b"written after the replace"
    );
}

/// The content of file `i` in [`a_mount_killed_mid_burst_leaves_replicas_that_heal_identical`].
fn burst_content(i: usize) -> Vec<u8> {
    format!("file {i} ").repeat(1 + i % 300).into_bytes()
}

/// A replica 3 volume through mgmtd (leases and entry-behind on, as generated): the mount
/// is SIGKILLed in the middle of a burst of creates in a new directory (changes made behind
/// under its lease, sharing replicate transactions on the directory). The self-heal daemon
/// then leaves nothing pending, the three bricks hold the same names with the same content,
/// every file fsync'd before the kill is there with its content, and a new mount reads
/// every file without an error.
#[test]
fn a_mount_killed_mid_burst_leaves_replicas_that_heal_identical() {
    use common::pool::*;
    let d = scratch("rep-kill-mount");
    let nodes = pool(20, 1, d.path());
    let h = nodes[0].host.clone();
    let bricks: Vec<PathBuf> = (0..3).map(|i| d.path().join(format!("kb{i}"))).collect();
    let mut args = vec!["volume".to_string(), "create".into(), "kv".into()];
    args.extend(["replica".into(), "3".into()]);
    args.extend(bricks.iter().map(|b| format!("{h}:{}", b.display())));
    args.push("force".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&h, &nodes[0], &a);
    ok(&h, &nodes[0], &["volume", "start", "kv"]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mount = |log: &str| {
        mount_args(
            &[format!("{h}:/kv").as_ref(), mnt.as_os_str()],
            &mnt,
            &d.path().join(log),
        )
    };
    let mut m = mount("mount1.log");
    std::fs::create_dir(mnt.join("burst")).unwrap();
    let synced = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (dir, synced) = (mnt.join("burst"), synced.clone());
        std::thread::spawn(move || {
            for i in 0..20_000 {
                let p = dir.join(format!("f{i}"));
                let r = std::fs::File::create(&p).and_then(|mut f| {
                    std::io::Write::write_all(&mut f, &burst_content(i))?;
                    if i % 50 == 0 {
                        f.sync_all()?;
                        synced.lock().unwrap().push(i);
                    }
                    Ok(())
                });
                if r.is_err() {
                    return i;
                }
            }
            20_000
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    m.stop_with(libc::SIGKILL);
    let made = writer.join().unwrap();
    drop(m);
    let synced = synced.lock().unwrap().clone();
    assert!(
        synced.len() >= 2 && made < 20_000,
        "the kill came mid-burst ({made} files made, {} synced)",
        synced.len()
    );
    eprintln!("killed after {made} files, {} fsync'd", synced.len());
    wait_until("the self-heal daemon leaves nothing pending", 120, || {
        heal_total(&h, &nodes[0], "kv") == 0
    });
    let names = |b: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(b.join("burst"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    };
    let first = names(&bricks[0]);
    for b in &bricks[1..] {
        same_tree(
            &names(b),
            &first,
            &format!("{} against {}", b.display(), bricks[0].display()),
        );
    }
    for i in &synced {
        assert_eq!(
            first.get(&format!("f{i}")),
            Some(&burst_content(*i)),
            "f{i} was fsync'd before the kill"
        );
    }
    let _m = mount("mount2.log");
    for (name, content) in &first {
        assert_eq!(
            &std::fs::read(mnt.join("burst").join(name)).unwrap(),
            content,
            "{name} through a new mount"
        );
    }
}

/// A create from under a directory lease begins its new file's data transaction on each
/// brick (features/locks takes the data lock, features/index does the pre-op), and the
/// release of its fd ends it there (the post-op, then the unlock, before the fd closes):
/// the file's write costs no lock, pre-op, post-op or unlock request of its own. Over
/// three `weft brickd` with the index, 60 such files: fewer than 30 inode-lock requests
/// (none when the machine is idle), where each file took two per brick before; then every copy holds the data, every changelog is
/// back to zero and every index is empty.
#[test]
fn a_leased_create_begins_and_its_release_ends_its_files_data_transaction() {
    use weft_core::{Ctx, Fd, Gfid, Loc, Xdata, GFID_REQ_KEY, LEASED_DIR_KEY, POSTSTAT_KEY};
    const FILES: usize = 60;
    let dir = scratch("rep-create-txn");
    let (servers, bricks, client) = three_brick_servers(dir.path(), false);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let vol = open_volume(&client).await;
        all_replicas_up(&vol).await;
        let d = vol.mkdir("/d", 0o755).await.unwrap();
        let (top, ctx) = (vol.top().clone(), Ctx::internal());
        let calls = |vol: &weft_client::Volume, fop: &str| {
            fop_calls(&vol.graph().get("s0").unwrap().dump(), fop)
        };
        let before = (calls(&vol, "inodelk"), calls(&vol, "xattrop"));
        for i in 0..FILES {
            let fd = Fd::new(Gfid::random(), libc::O_RDWR, false);
            let mut xd = Xdata::new();
            xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
            xd.set(LEASED_DIR_KEY, Vec::new());
            let loc = Loc::entry(d.gfid, format!("f{i}"));
            top.create(&ctx, &loc, &fd, 0o644, 0, xd).await.unwrap();
            let data = bytes::Bytes::from(format!("file {i} ").repeat(i + 1));
            top.writev(&ctx, &fd, data, 0, Xdata::new()).await.unwrap();
            let mut ask = Xdata::new();
            ask.set(POSTSTAT_KEY, Vec::new());
            top.release(&ctx, &fd, ask).await.unwrap();
        }
        let locks = calls(&vol, "inodelk") - before.0;
        let xattrops = calls(&vol, "xattrop") - before.1;
        // A release gives the lock back only after the post-op it carries was done, so few
        // lock requests also say the post-ops went with the releases. Some files may
        // still take one or two: on a loaded machine a create's transaction can end
        // (after post-op-delay) before its write comes, which then begins its own.
        // Without either half every file takes at least one.
        assert!(
            locks < FILES as u64 / 2,
            "{FILES} files made and written from under a lease cost {locks} inode-lock (and {xattrops} xattrop) requests on one brick"
        );
        vol.close().await;
    });
    for b in &bricks {
        for i in 0..FILES {
            let p = b.join(format!("d/f{i}"));
            let (got, want) = (
                std::fs::read(&p).unwrap(),
                format!("file {i} ").repeat(i + 1).into_bytes(),
            );
            assert!(
                got == want,
                "{}: {} bytes, {} written; changelogs {:?}; pending {}; brick logs:\n{}",
                p.display(),
                got.len(),
                want.len(),
                raised_changelogs(&p),
                describe_pending(&bricks),
                servers
                    .iter()
                    .map(Brickd::log_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            if let Some(text) = raised_changelogs(&p) {
                panic!("{}: {text}", p.display());
            }
        }
    }
    wait_until_nothing_pending(&bricks);
    drop(servers);
}

/// A create carrying its file's content (as entry-behind sends a file's first write with
/// its create) over three brick servers: each data brick writes the content into the file
/// it makes and the answer says so, the arbiter (when there is one) keeps its copy empty,
/// no write goes on the wire, and the copies end with their changelogs at zero.
#[test]
fn a_create_with_content_writes_every_data_copy_and_not_the_arbiter() {
    use weft_core::{Ctx, Fd, Gfid, Loc, Xdata, CREATE_CONTENT_KEY, GFID_REQ_KEY, LEASED_DIR_KEY};
    const FILES: usize = 20;
    for arbiter in [false, true] {
        let dir = scratch("rep-create-content");
        let (servers, bricks, client) = three_brick_servers(dir.path(), arbiter);
        let content = |i: usize| format!("file {i} ").repeat(i * 50 + 1).into_bytes();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let vol = open_volume(&client).await;
            all_replicas_up(&vol).await;
            let d = vol.mkdir("/d", 0o755).await.unwrap();
            let (top, ctx) = (vol.top().clone(), Ctx::internal());
            for i in 0..FILES {
                let fd = Fd::new(
                    Gfid::random(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                    false,
                );
                let mut xd = Xdata::new();
                xd.set(GFID_REQ_KEY, fd.gfid.0.to_vec());
                xd.set(LEASED_DIR_KEY, Vec::new());
                xd.set(CREATE_CONTENT_KEY, content(i));
                let loc = Loc::entry(d.gfid, format!("f{i}"));
                let (ia, rxd) = top.create(&ctx, &loc, &fd, 0o644, 0, xd).await.unwrap();
                assert!(rxd.has(CREATE_CONTENT_KEY), "arbiter {arbiter}: {rxd:?}");
                assert_eq!(ia.size, content(i).len() as u64);
                top.release(&ctx, &fd, Xdata::new()).await.unwrap();
            }
            for s in ["s0", "s1", "s2"] {
                let dump = vol.graph().get(s).unwrap().dump();
                assert_eq!(fop_calls(&dump, "writev"), 0, "{s}: {dump}");
            }
            for i in 0..FILES {
                let f = vol.open(format!("/d/f{i}"), libc::O_RDONLY).await.unwrap();
                assert_eq!(f.read_to_end().await.unwrap(), content(i));
                f.close().await.unwrap();
            }
            vol.close().await;
        });
        for (k, b) in bricks.iter().enumerate() {
            for i in 0..FILES {
                let p = b.join(format!("d/f{i}"));
                let want = if arbiter && k == 2 {
                    Vec::new()
                } else {
                    content(i)
                };
                assert_eq!(std::fs::read(&p).unwrap(), want, "{}", p.display());
                if let Some(text) = raised_changelogs(&p) {
                    panic!("{}: {text}", p.display());
                }
            }
        }
        wait_until_nothing_pending(&bricks);
        drop(servers);
    }
}

/// Three brick servers (the last with features/arbiter when `arbiter`), each seen through
/// a debug/io-stats `s{i}` under cluster/replicate `cl` (arbiter-count 1 when `arbiter`):
/// the servers, their brick directories and the client volfile.
fn three_brick_servers(dir: &Path, arbiter: bool) -> (Vec<Brickd>, Vec<PathBuf>, String) {
    let graph = |i: usize, b: &Path| {
        let name = format!("r{i}");
        let text = replica_brick_graph(&name, b, arbiter && i == 2);
        (name, text)
    };
    let (servers, bricks, mut client) = three_brick_servers_with(dir, &graph, &[]);
    for i in 0..3 {
        client.push_str(&format!(
            "\nvolume s{i}\n    type debug/io-stats\n    subvolumes r{i}-client\nend-volume\n\n"
        ));
    }
    client.push_str(&format!(
        "volume cl\n    type cluster/replicate\n    option arbiter-count {}\n    subvolumes s0 s1 s2\nend-volume\n",
        u8::from(arbiter)
    ));
    (servers, bricks, client)
}

/// Waits (10 s at most) until replicate `cl` of `vol` has every replica up: a volume opens
/// once a quorum is, and a test that reads every brick afterwards wants all of them in
/// every change.
async fn all_replicas_up(vol: &weft_client::Volume) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dump = vol.graph().get("cl").unwrap().dump();
        if dump
            .lines()
            .filter(|l| l.starts_with("replica ") && l.ends_with(" up"))
            .count()
            == 3
        {
            return;
        }
        assert!(Instant::now() < deadline, "replicas not all up: {dump}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (10 s at most) until no brick's index holds a pending entry.
fn wait_until_nothing_pending(bricks: &[PathBuf]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending_on(bricks) > 0 {
        assert!(
            Instant::now() < deadline,
            "pending: {}",
            describe_pending(bricks)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A replica 3 volume over three mgmtd nodes (leases and entry-behind on, as generated):
/// one brick process is SIGKILLed in the middle of a burst of creates and writes in a new
/// directory (changes behind under its lease, sharing replicate transactions, each create
/// beginning its file's data transaction), the burst goes on with two bricks, the brick
/// comes back, and the self-heal daemon leaves nothing pending: the three bricks then hold
/// the same names with the same content, which is what the mount wrote.
#[test]
fn a_brick_killed_mid_burst_under_a_lease_heals_identical() {
    use common::pool::*;
    use std::sync::atomic::AtomicUsize;
    const FILES: usize = 900;
    let d = scratch("rep-kill-brick");
    let mut nodes = pool(21, 3, d.path());
    let h = nodes[0].host.clone();
    let bricks: Vec<PathBuf> = (0..3).map(|i| d.path().join(format!("kb{i}"))).collect();
    create_and_start(&nodes, "kv", &["replica", "3"], &bricks);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/kv").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    std::fs::create_dir(mnt.join("burst")).unwrap();
    let made = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (dir, made) = (mnt.join("burst"), made.clone());
        std::thread::spawn(move || {
            for i in 0..FILES {
                let p = dir.join(format!("f{i}"));
                std::fs::write(&p, burst_content(i))
                    .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                made.store(i + 1, Ordering::Release);
            }
        })
    };
    wait_until("a third of the burst", 120, || {
        made.load(Ordering::Acquire) >= FILES / 3
    });
    down(&mut nodes[2]);
    writer
        .join()
        .expect("every create and write of the burst succeeds");
    nodes[2].spawn();
    wait_until("the self-heal daemon to leave nothing pending", 180, || {
        heal_total(&h, &nodes[0], "kv") == 0
    });
    let want: BTreeMap<String, Vec<u8>> = (0..FILES)
        .map(|i| (format!("burst/f{i}"), burst_content(i)))
        .collect();
    let from_mount: BTreeMap<String, Vec<u8>> = tree(&mnt)
        .into_iter()
        .filter(|(k, _)| k.starts_with("burst/f"))
        .collect();
    same_tree(&from_mount, &want, "the mount");
    for b in &bricks {
        let t: BTreeMap<String, Vec<u8>> = tree(b)
            .into_iter()
            .filter(|(k, _)| k.starts_with("burst/f"))
            .collect();
        same_tree(&t, &want, &b.display().to_string());
    }
}
