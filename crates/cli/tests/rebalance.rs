//! Growing a distributed volume: `volume add-brick`, `volume rebalance ... fix-layout` and
//! `volume rebalance ... start` (moving files while they are in use) on real `weft mgmtd`
//! processes and a real mount (block numbers 12-15; the harness is common/pool.rs).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::pool::*;
use common::*;
use serde_json::Value;

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100000001b3)
    })
}

fn content(i: usize) -> Vec<u8> {
    format!("file {i} ").repeat(1 + i % 40).into_bytes()
}

/// The names of `dir` on a brick that hold data (not link files, mode 01000).
fn data_names(brick: &Path, dir: &str) -> Vec<String> {
    match std::fs::read_dir(brick.join(dir)) {
        Ok(rd) => rd
            .map(|e| e.unwrap())
            .filter(|e| {
                let m = e.metadata().unwrap();
                m.is_file() && m.permissions().mode() & 0o7777 != 0o1000
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn rebalance_status(host: &str, t: &Node, vol: &str) -> Value {
    json(host, t, &["volume", "rebalance", vol, "status"])
}

fn wait_rebalance(host: &str, t: &Node, vol: &str, secs: u64) -> Value {
    let mut last = Value::Null;
    wait_until("the rebalance to end", secs, || {
        last = rebalance_status(host, t, vol);
        last["state"] != "running" && last["state"] != "not started"
    });
    last
}

fn make_volume(nodes: &[Node], d: &Path, vol: &str) -> Vec<PathBuf> {
    let t = &nodes[0];
    let bricks: Vec<PathBuf> = (1..=2).map(|i| d.join(format!("{vol}-b{i}"))).collect();
    let specs: Vec<String> = nodes
        .iter()
        .cycle()
        .zip(&bricks)
        .map(|(n, b)| format!("{}:{}", n.host, b.display()))
        .collect();
    let mut args = vec!["volume", "create", vol];
    args.extend(specs.iter().map(String::as_str));
    ok(&t.host, t, &args);
    ok(&t.host, t, &["volume", "start", vol]);
    bricks
}

fn add_brick(nodes: &[Node], brick: &Path, vol: &str) {
    let t = &nodes[0];
    let spec = format!("{}:{}", nodes[nodes.len() - 1].host, brick.display());
    let out = ok(&t.host, t, &["volume", "add-brick", vol, &spec]);
    assert!(out.contains("fix-layout"), "{out}");
    let i = info(&t.host, t, vol);
    assert_eq!(i["brick_count"], 3, "{i}");
    wait_until("the new brick to be served", 20, || {
        let st = json(&t.host, t, &["volume", "status", vol]);
        st["bricks"].as_array().unwrap().len() == 3
            && st["bricks"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b["online"] == true)
    });
}

#[test]
fn add_brick_then_fix_layout_keeps_every_file_and_spreads_new_ones() {
    let d = scratch("rebal-grow");
    let nodes = pool(12, 2, d.path());
    let t = &nodes[0];
    let h = t.host.clone();
    let mut bricks = make_volume(&nodes, d.path(), "gv");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/gv").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    let dirs = ["a", "b", "c", "d/e"];
    std::fs::create_dir_all(mnt.join("d/e")).unwrap();
    for x in &dirs[..3] {
        std::fs::create_dir(mnt.join(x)).unwrap();
    }
    let mut sums = Vec::new();
    for i in 0..1000 {
        let p = format!("{}/f{i}", dirs[i % 4]);
        let c = content(i);
        std::fs::write(mnt.join(&p), &c).unwrap();
        sums.push((p, checksum(&c)));
    }
    // A brick on a host outside the pool is refused, nothing changed.
    let e = fails(&h, t, &["volume", "add-brick", "gv", "nosuchhost:/x"]);
    assert!(e.contains("not in the pool"), "{e}");
    assert_eq!(info(&h, t, "gv")["brick_count"], 2);

    let nb = d.path().join("gv-b3");
    add_brick(&nodes, &nb, "gv");
    bricks.push(nb.clone());
    let check_all = |what: &str| {
        for (p, s) in &sums {
            let b = std::fs::read(mnt.join(p)).unwrap_or_else(|e| panic!("{what}: {p}: {e}"));
            assert_eq!(checksum(&b), *s, "{what}: {p}");
        }
    };
    // The mount follows the new graph; old directories keep old layouts: every file stays.
    check_all("after add-brick");
    let mut fresh = 0;
    wait_until("a new directory to span the new brick", 30, || {
        fresh += 1;
        let n = format!("fresh{fresh}");
        std::fs::create_dir(mnt.join(&n)).unwrap();
        getxattr(&nb.join(&n), "trusted.weft.dht").is_ok()
    });
    // Before fix-layout nothing of an old directory hashes to the new brick.
    for i in 0..60 {
        std::fs::write(mnt.join(format!("a/new{i}")), b"x").unwrap();
    }
    settle_behind(&mnt.join("a"));
    assert!(
        data_names(&nb, "a").is_empty(),
        "{:?}",
        data_names(&nb, "a")
    );

    let out = ok(
        &nodes[1].host,
        t,
        &["volume", "rebalance", "gv", "fix-layout", "start"],
    );
    assert!(out.contains("fix-layout started"), "{out}");
    let st = wait_rebalance(&nodes[1].host, t, "gv", 60);
    println!("{st:#}");
    assert_eq!(st["state"], "completed", "{st}");
    let tot = &st["total"];
    assert!(
        tot["scanned"].as_u64().unwrap() >= 6 + fresh as u64 - 1,
        "{st}"
    );
    assert!(tot["fixed"].as_u64().unwrap() >= 6, "{st}");
    assert_eq!(tot["failed"], 0, "{st}");
    // Every old directory has a piece on the new brick now.
    for x in ["", "a", "b", "c", "d", "d/e"] {
        assert!(getxattr(&nb.join(x), "trusted.weft.dht").is_ok(), "{x}");
    }
    // Nothing lost, nothing doubled: each file is data on exactly one brick.
    check_all("after fix-layout");
    for (p, _) in &sums {
        let (dir, name) = p.rsplit_once('/').unwrap();
        let n = bricks
            .iter()
            .filter(|b| data_names(b, dir).iter().any(|x| x == name))
            .count();
        assert_eq!(n, 1, "{p} is data on {n} bricks");
    }
    // New files of old directories now land on the new brick too (about a third).
    for i in 0..300 {
        std::fs::write(mnt.join(format!("b/late{i}")), b"late").unwrap();
    }
    let on_new = data_names(&nb, "b")
        .iter()
        .filter(|n| n.starts_with("late"))
        .count();
    println!("new files of an old directory on the new brick: {on_new} of 300");
    assert!(
        (50..=160).contains(&on_new),
        "{on_new} of 300 on the new brick"
    );
    assert_eq!(std::fs::read_dir(mnt.join("b")).unwrap().count(), 550);
    // A second fix-layout finds nothing to do.
    ok(&h, t, &["volume", "rebalance", "gv", "fix-layout", "start"]);
    let st = wait_rebalance(&h, t, "gv", 60);
    assert_eq!(st["state"], "completed", "{st}");
    let mine = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == h.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["fixed"], 0, "{st}");
    let e = fails(&h, t, &["volume", "rebalance", "gv", "stop"]);
    assert!(e.contains("no rebalance"), "{e}");
}

#[test]
fn a_killed_mgmtd_resumes_fix_layout_from_its_checkpoint() {
    let d = scratch("rebal-kill");
    let mut nodes = pool(13, 2, d.path());
    let h = nodes[0].host.clone();
    let _bricks = make_volume(&nodes, d.path(), "kv");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let m = mount_args(
        &[format!("{h}:/kv").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    for i in 0..30 {
        for j in 0..4 {
            std::fs::create_dir_all(mnt.join(format!("t{i:02}/s{j}"))).unwrap();
            std::fs::write(mnt.join(format!("t{i:02}/s{j}/f")), format!("{i} {j}")).unwrap();
        }
    }
    let nb = d.path().join("kv-b3");
    add_brick(&nodes, &nb, "kv");
    let t = &nodes[0];
    // 151 directories at 20 a second: about 7.5 s.
    ok(
        &h,
        t,
        &[
            "volume",
            "rebalance",
            "kv",
            "fix-layout",
            "start",
            "throttle",
            "20",
        ],
    );
    let mut before = 0;
    wait_until("the walk to get going", 30, || {
        before = rebalance_status(&h, t, "kv")["total"]["scanned"]
            .as_u64()
            .unwrap();
        before >= 40
    });
    nodes[0].sigkill();
    std::thread::sleep(Duration::from_millis(300));
    nodes[0].spawn();
    let t = &nodes[0];
    let st = rebalance_status(&h, t, "kv");
    let after = st["total"]["scanned"].as_u64().unwrap();
    assert!(
        after + 12 >= before && after > 0,
        "restarted from {after}, was at {before}: {st}"
    );
    let st = wait_rebalance(&h, t, "kv", 60);
    println!("{st:#}");
    assert_eq!(st["state"], "completed", "{st}");
    assert!(st["total"]["resumed"].as_u64().unwrap() >= 1, "{st}");
    let scanned = st["total"]["scanned"].as_u64().unwrap();
    assert!(
        (151..151 + 15).contains(&scanned),
        "scanned {scanned}: {st}"
    );
    for i in 0..30 {
        for j in 0..4 {
            let p = format!("t{i:02}/s{j}");
            assert!(getxattr(&nb.join(&p), "trusted.weft.dht").is_ok(), "{p}");
            assert_eq!(
                std::fs::read_to_string(mnt.join(format!("{p}/f"))).unwrap(),
                format!("{i} {j}")
            );
        }
    }
    drop(m);
}

/// Where `dir/name` holds data: the index of the brick, exactly one.
fn holder(bricks: &[PathBuf], dir: &str, name: &str) -> usize {
    let at: Vec<usize> = (0..bricks.len())
        .filter(|&b| data_names(&bricks[b], dir).iter().any(|x| x == name))
        .collect();
    assert_eq!(at.len(), 1, "{dir}/{name} is data on bricks {at:?}");
    at[0]
}

/// The bytes the writer has appended to its file `k` after `n` records.
fn log_record(k: usize, n: usize) -> String {
    format!("file {k} record {n:06}\n")
}

#[test]
fn rebalance_moves_files_in_use_without_losing_a_write() {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let d = scratch("rebal-move");
    let nodes = pool(14, 2, d.path());
    let t = &nodes[0];
    let h = t.host.clone();
    let mut bricks = make_volume(&nodes, d.path(), "mv");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/mv").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    // The model: 800 files in 4 directories.
    let dirs = ["a", "b", "c/d", "c"];
    std::fs::create_dir_all(mnt.join("c/d")).unwrap();
    std::fs::create_dir(mnt.join("a")).unwrap();
    std::fs::create_dir(mnt.join("b")).unwrap();
    let mut sums = Vec::new();
    for i in 0..800 {
        let p = format!("{}/f{i}", dirs[i % 4]);
        let c = content(i);
        std::fs::write(mnt.join(&p), &c).unwrap();
        sums.push((p, checksum(&c)));
    }
    // A sparse file: its hole stays a hole.
    {
        let f = std::fs::File::create(mnt.join("a/sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"tail", (64 << 20) - 4).unwrap();
    }
    // 12 logs a writer keeps appending to through open fds, and 12 files of 1 MiB a
    // reader keeps reading through open fds: about half of each move.
    std::fs::create_dir(mnt.join("live")).unwrap();
    let big = |k: usize| -> Vec<u8> { (0..1 << 20).map(|i| (i * 7 + k * 13) as u8).collect() };
    for k in 0..12 {
        std::fs::write(mnt.join(format!("live/big{k}")), big(k)).unwrap();
    }
    settle_behind(&mnt.join("live"));
    let before_big: Vec<usize> = (0..12)
        .map(|k| holder(&bricks, "live", &format!("big{k}")))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (stop, written, mnt) = (stop.clone(), written.clone(), mnt.clone());
        std::thread::spawn(move || {
            let mut fs: Vec<std::fs::File> = (0..12)
                .map(|k| {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(mnt.join(format!("live/log{k}")))
                        .unwrap()
                })
                .collect();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                for (k, f) in fs.iter_mut().enumerate() {
                    f.write_all(log_record(k, n).as_bytes())
                        .unwrap_or_else(|e| panic!("append {n} to log{k}: {e}"));
                }
                n += 1;
                if n % 25 == 0 {
                    for (k, f) in fs.iter().enumerate() {
                        f.sync_all()
                            .unwrap_or_else(|e| panic!("fsync log{k} at {n}: {e}"));
                    }
                }
                written.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
            n
        })
    };
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (stop, reads, mnt) = (stop.clone(), reads.clone(), mnt.clone());
        std::thread::spawn(move || {
            let mut fs: Vec<std::fs::File> = (0..12)
                .map(|k| std::fs::File::open(mnt.join(format!("live/big{k}"))).unwrap())
                .collect();
            let wants: Vec<Vec<u8>> = (0..12).map(big).collect();
            let mut buf = vec![0u8; 64 << 10];
            let mut r = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for (k, f) in fs.iter_mut().enumerate() {
                    let off = (r * 40_961 + k * 4096) % ((1 << 20) - buf.len());
                    f.seek(SeekFrom::Start(off as u64)).unwrap();
                    f.read_exact(&mut buf)
                        .unwrap_or_else(|e| panic!("read big{k} at {off}: {e}"));
                    assert!(
                        buf == wants[k][off..off + buf.len()],
                        "big{k} at {off}: wrong data"
                    );
                }
                r += 1;
                reads.store(r, Ordering::Relaxed);
            }
        })
    };
    wait_until("the writer and reader to get going", 20, || {
        written.load(Ordering::Relaxed) > 20 && reads.load(Ordering::Relaxed) > 5
    });
    settle_behind(&mnt.join("live"));
    let before_log: Vec<usize> = (0..12)
        .map(|k| holder(&bricks, "live", &format!("log{k}")))
        .collect();

    // Two more bricks, one per node, and the rebalance that moves files onto them.
    for (n, name) in [(0usize, "mv-b3"), (1, "mv-b4")] {
        let nb = d.path().join(name);
        let spec = format!("{}:{}", nodes[n].host, nb.display());
        ok(&h, t, &["volume", "add-brick", "mv", &spec]);
        bricks.push(nb);
    }
    wait_until("the new bricks to be served", 20, || {
        let st = json(&h, t, &["volume", "status", "mv"]);
        let b = st["bricks"].as_array().unwrap();
        b.len() == 4 && b.iter().all(|b| b["online"] == true)
    });
    // A mount still on version 1 of the graph (one that polled and never came back for
    // the new version): the rebalance waits for it, then refuses, naming it.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect((h.as_str(), 24100)).unwrap();
        write!(
            c,
            "GET /v1/volumes/mv/volfile?after=1&wait=1&client=laggard:7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut _r = String::new();
        let _ = c.read_to_string(&mut _r);
    }
    let e = fails(&h, t, &["volume", "rebalance", "mv", "start"]);
    assert!(e.contains("laggard:7 (version 1)"), "{e}");
    assert_eq!(rebalance_status(&h, t, "mv")["state"], "not started");
    let out = ok(&h, t, &["volume", "rebalance", "mv", "start", "force"]);
    assert!(out.contains("started on"), "{out}");
    let st = wait_rebalance(&h, t, "mv", 120);
    println!("{st:#}");
    let w_at_end = written.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let mount_problems = || {
        _m.log_text()
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let Ok(appended) = writer.join() else {
        panic!("the writer failed; the mount's log:\n{}", mount_problems())
    };
    if reader.join().is_err() {
        panic!("the reader failed; the mount's log:\n{}", mount_problems())
    }
    assert!(
        appended > w_at_end,
        "the writer stopped during the rebalance"
    );
    let problems = || {
        nodes
            .iter()
            .flat_map(|n| {
                n.log_text()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .map(|l| format!("{}: {l}", n.host))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(st["state"], "completed", "{st}\n{}", problems());
    let tot = &st["total"];
    assert_eq!(tot["failed"], 0, "{st}\n{}", problems());
    // Both nodes worked on their own bricks.
    assert_eq!(st["nodes"].as_array().unwrap().len(), 2, "{st}");
    for r in st["nodes"].as_array().unwrap() {
        assert_eq!(r["kind"], "migrate", "{st}");
        assert!(r["moved"].as_u64().unwrap() > 0, "{st}");
    }
    let moved = tot["moved"].as_u64().unwrap();
    let files = 800 + 1 + 24;
    let frac = moved as f64 / files as f64;
    println!(
        "moved {moved} of {files} files ({:.1}%) going from 2 to 4 bricks",
        frac * 100.0
    );
    assert!((0.35..=0.65).contains(&frac), "moved {moved} of {files}");
    assert!(tot["bytes"].as_u64().unwrap() > 0, "{st}");

    // Every file: the model's content, on exactly one brick, a good share on new bricks.
    for (p, s) in &sums {
        let b = std::fs::read(mnt.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(checksum(&b), *s, "{p}");
    }
    let mut on_new = 0;
    for (p, _) in &sums {
        let (dir, name) = p.rsplit_once('/').unwrap();
        if holder(&bricks, dir, name) >= 2 {
            on_new += 1;
        }
    }
    assert!(
        (250..=550).contains(&on_new),
        "{on_new} of 800 files on the new bricks"
    );
    for k in 0..12 {
        let want: String = (0..appended).map(|n| log_record(k, n)).collect();
        let got = std::fs::read_to_string(mnt.join(format!("live/log{k}"))).unwrap();
        assert!(
            got == want,
            "log{k}: {} bytes, the model says {}",
            got.len(),
            want.len()
        );
        assert_eq!(
            std::fs::read(mnt.join(format!("live/big{k}"))).unwrap(),
            big(k),
            "big{k}"
        );
    }
    let logs_moved = (0..12)
        .filter(|&k| holder(&bricks, "live", &format!("log{k}")) != before_log[k])
        .count();
    let bigs_moved = (0..12)
        .filter(|&k| holder(&bricks, "live", &format!("big{k}")) != before_big[k])
        .count();
    println!("open files moved: {logs_moved} of 12 being appended, {bigs_moved} of 12 being read");
    assert!(logs_moved > 0 && bigs_moved > 0);
    let sp = std::fs::metadata(mnt.join("a/sparse")).unwrap();
    assert_eq!(sp.len(), 64 << 20);
    use std::os::unix::fs::MetadataExt;
    assert!(
        sp.blocks() < 1024,
        "the sparse file was filled: {} blocks",
        sp.blocks()
    );
    // No link file is visible; listings show each name once.
    let names: Vec<String> = std::fs::read_dir(mnt.join("live"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 24, "{names:?}");
    // A second rebalance has nothing to move (force: the laggard is still remembered).
    ok(&h, t, &["volume", "rebalance", "mv", "start", "force"]);
    let st = wait_rebalance(&h, t, "mv", 60);
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["total"]["moved"], 0, "{st}");
}

#[test]
fn a_killed_mgmtd_resumes_moving_files_from_its_checkpoint() {
    let d = scratch("rebal-kill-move");
    let mut nodes = pool(15, 2, d.path());
    let h = nodes[0].host.clone();
    let mut bricks = make_volume(&nodes, d.path(), "km");
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/km").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    let mut sums = Vec::new();
    for i in 0..20 {
        std::fs::create_dir(mnt.join(format!("d{i:02}"))).unwrap();
        for j in 0..30 {
            let p = format!("d{i:02}/f{j}");
            let c = content(i * 30 + j);
            std::fs::write(mnt.join(&p), &c).unwrap();
            sums.push((p, checksum(&c)));
        }
    }
    let nb = d.path().join("km-b3");
    // The new brick on the first node: its mgmtd is the one killed, and it moves files too.
    let spec = format!("{}:{}", h, nb.display());
    ok(&h, &nodes[0], &["volume", "add-brick", "km", &spec]);
    bricks.push(nb);
    // 600 files at 60 a second on each node: several seconds.
    ok(
        &h,
        &nodes[0],
        &["volume", "rebalance", "km", "start", "throttle", "60"],
    );
    let mut before = 0;
    wait_until("the move to get going", 30, || {
        let st = rebalance_status(&h, &nodes[0], "km");
        before = st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node"] == h.as_str())
            .map_or(0, |r| r["scanned"].as_u64().unwrap());
        before >= 90
    });
    nodes[0].sigkill();
    std::thread::sleep(Duration::from_millis(300));
    // Files stay readable while no mover runs there.
    for (p, s) in sums.iter().step_by(7) {
        assert_eq!(checksum(&std::fs::read(mnt.join(p)).unwrap()), *s, "{p}");
    }
    nodes[0].spawn();
    let t = &nodes[0];
    // It goes on from its checkpoint (at most 500 ms old), not from zero.
    let st = rebalance_status(&h, t, "km");
    let after = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == h.as_str())
        .map_or(0, |r| r["scanned"].as_u64().unwrap());
    assert!(
        after + 45 >= before && after > 0,
        "restarted from {after}, was at {before}: {st}"
    );
    let st = wait_rebalance(&h, t, "km", 120);
    println!("{st:#}");
    assert_eq!(st["state"], "completed", "{st}");
    assert!(st["total"]["resumed"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["total"]["failed"], 0, "{st}");
    for (p, s) in &sums {
        assert_eq!(checksum(&std::fs::read(mnt.join(p)).unwrap()), *s, "{p}");
        let (dir, name) = p.rsplit_once('/').unwrap();
        holder(&bricks, dir, name);
    }
    let on_new = sums
        .iter()
        .filter(|(p, _)| {
            let (dir, name) = p.rsplit_once('/').unwrap();
            holder(&bricks, dir, name) == 2
        })
        .count();
    println!("{on_new} of 600 files on the new brick");
    assert!(
        (120..=280).contains(&on_new),
        "{on_new} of 600 on the new brick"
    );
}

#[test]
fn remove_brick_moves_every_file_off_before_commit() {
    let d = scratch("rebal-remove");
    let nodes = pool(16, 2, d.path());
    let t = &nodes[0];
    let h = t.host.clone();
    // Three bricks: b1 and b3 on the first node, b2 on the second.
    let bricks: Vec<PathBuf> = (1..=3).map(|i| d.path().join(format!("rv-b{i}"))).collect();
    let specs: Vec<String> = bricks
        .iter()
        .enumerate()
        .map(|(i, b)| format!("{}:{}", nodes[i % 2].host, b.display()))
        .collect();
    let mut args = vec!["volume", "create", "rv"];
    args.extend(specs.iter().map(String::as_str));
    ok(&h, t, &args);
    ok(&h, t, &["volume", "start", "rv"]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/rv").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    let mut sums = Vec::new();
    for i in 0..6 {
        std::fs::create_dir(mnt.join(format!("d{i}"))).unwrap();
        for j in 0..100 {
            let p = format!("d{i}/f{j}");
            let c = content(i * 100 + j);
            std::fs::write(mnt.join(&p), &c).unwrap();
            sums.push((p, checksum(&c)));
        }
    }
    for i in 0..6 {
        settle_behind(&mnt.join(format!("d{i}")));
    }
    let on_b2 = |dir: &str| data_names(&bricks[1], dir).len();
    let before: usize = (0..6).map(|i| on_b2(&format!("d{i}"))).sum();
    assert!(before > 100, "{before} files on the brick to remove");
    let gone = specs[1].as_str();
    // Files on the brick held open through it all: their fds follow them off the brick,
    // and still work after the brick has left.
    let held: Vec<(String, std::fs::File)> = data_names(&bricks[1], "d0")
        .into_iter()
        .take(5)
        .map(|n| {
            let p = format!("d0/{n}");
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(mnt.join(&p))
                .unwrap();
            (p, f)
        })
        .collect();
    assert_eq!(held.len(), 5);
    // Commit before start, and a brick of no volume: refused, nothing changes.
    let e = fails(&h, t, &["volume", "remove-brick", "rv", gone, "commit"]);
    assert!(e.contains("not being removed"), "{e}");
    let e = fails(
        &h,
        t,
        &["volume", "remove-brick", "rv", "nosuch:/x", "start"],
    );
    assert!(e.contains("not a brick of volume rv"), "{e}");
    assert_eq!(info(&h, t, "rv")["brick_count"], 3);

    let out = ok(
        &h,
        t,
        &[
            "volume",
            "remove-brick",
            "rv",
            gone,
            "start",
            "throttle",
            "40",
        ],
    );
    assert!(out.contains("moving their files off"), "{out}");
    // While it runs: commit is refused, new files and directories avoid the brick.
    let e = fails(&h, t, &["volume", "remove-brick", "rv", gone, "commit"]);
    assert!(e.contains("not completed"), "{e}");
    // Paused and resumed on the node doing the work (the second), asked through the first.
    ok(&h, t, &["volume", "rebalance", "rv", "pause"]);
    assert_eq!(rebalance_status(&h, t, "rv")["state"], "paused");
    let e = fails(&h, t, &["volume", "rebalance", "rv", "pause"]);
    assert!(e.contains("no rebalance of rv is running"), "{e}");
    ok(&h, t, &["volume", "rebalance", "rv", "resume"]);
    wait_until("the mount to learn the brick is going", 20, || {
        String::from_utf8(getxattr(&mnt, "weft.statedump").unwrap())
            .unwrap()
            .contains("decommissioned")
    });
    std::fs::create_dir(mnt.join("fresh")).unwrap();
    for j in 0..90 {
        std::fs::write(mnt.join(format!("fresh/n{j}")), b"new").unwrap();
    }
    assert_eq!(
        on_b2("fresh"),
        0,
        "new files landed on the brick being removed"
    );
    let st = wait_rebalance(&h, t, "rv", 120);
    println!("{st:#}");
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["total"]["failed"], 0, "{st}");
    assert_eq!(
        st["total"]["moved"].as_u64().unwrap(),
        before as u64,
        "{st}"
    );
    let status = json(&h, t, &["volume", "remove-brick", "rv", gone, "status"]);
    assert_eq!(status["state"], "completed", "{status}");
    let watch = ok(
        &h,
        t,
        &["volume", "remove-brick", "rv", gone, "status", "--watch"],
    );
    assert!(watch.contains("volume rebalance: rv: completed"), "{watch}");
    for i in 0..6 {
        assert_eq!(
            on_b2(&format!("d{i}")),
            0,
            "d{i} still has files on the brick"
        );
    }
    // A file on the brick that no move took (as a mount with a stale layout could leave):
    // commit is refused, naming it.
    std::fs::write(bricks[1].join("d0/stray"), b"left behind").unwrap();
    let e = fails(&h, t, &["volume", "remove-brick", "rv", gone, "commit"]);
    assert!(
        e.contains("1 data file(s) are still on brick") && e.contains("d0/stray"),
        "{e}"
    );
    std::fs::remove_file(bricks[1].join("d0/stray")).unwrap();
    let out = ok(&h, t, &["volume", "remove-brick", "rv", gone, "commit"]);
    assert!(out.contains("left the volume"), "{out}");
    let i = info(&h, t, "rv");
    assert_eq!(i["brick_count"], 2, "{i}");
    wait_until("the mount to serve the two remaining bricks", 30, || {
        sums.iter()
            .step_by(11)
            .all(|(p, s)| std::fs::read(mnt.join(p)).is_ok_and(|b| checksum(&b) == *s))
    });
    let mut sums: std::collections::HashMap<String, u64> = sums.into_iter().collect();
    for (p, f) in &held {
        use std::os::unix::fs::FileExt;
        let mut c = std::fs::read(mnt.join(p)).unwrap();
        f.write_all_at(b"after the brick left", 7)
            .unwrap_or_else(|e| panic!("{p}: a write on an fd held across the move: {e}"));
        c.resize(c.len().max(27), 0);
        c[7..27].copy_from_slice(b"after the brick left");
        let mut got = vec![0; c.len()];
        f.read_exact_at(&mut got, 0).unwrap();
        assert_eq!(got, c, "{p} through its held fd");
        f.sync_all().unwrap();
        sums.insert(p.clone(), checksum(&c));
    }
    drop(held);
    for (p, s) in &sums {
        let b = std::fs::read(mnt.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        assert_eq!(checksum(&b), *s, "{p}");
    }
    for j in 0..90 {
        assert_eq!(
            std::fs::read(mnt.join(format!("fresh/n{j}"))).unwrap(),
            b"new"
        );
    }
    for i in 0..6 {
        assert_eq!(
            std::fs::read_dir(mnt.join(format!("d{i}")))
                .unwrap()
                .count(),
            100
        );
    }
}

/// A small xorshift generator: the random workload below is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random writes, truncates, hole punches, zeroed ranges and fsyncs on 6 files through
/// fds held open, every read checked against an in-memory model, until `stop`. The
/// number of operations done.
fn random_io(dir: &Path, stop: &std::sync::atomic::AtomicBool) -> u64 {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const MAX: u64 = 1 << 20;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let files: Vec<std::fs::File> = (0..6)
        .map(|i| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.join(format!("r{i}")))
                .unwrap()
        })
        .collect();
    let mut model: Vec<Vec<u8>> = vec![Vec::new(); files.len()];
    let mut ops = 0u64;
    let check = |f: &std::fs::File, m: &[u8], ops: u64, i: usize| {
        let size = f.metadata().unwrap().len();
        let mut got = vec![0u8; size as usize];
        f.read_exact_at(&mut got, 0).unwrap();
        if got != m {
            let at = got.iter().zip(m).position(|(a, b)| a != b);
            panic!(
                "r{i} after {ops} operations: {} bytes, the model {}; first difference at {at:?}",
                got.len(),
                m.len()
            );
        }
    };
    while !stop.load(std::sync::atomic::Ordering::Relaxed) || ops < 200 {
        let i = rng.below(files.len() as u64) as usize;
        let (f, m) = (&files[i], &mut model[i]);
        let op = rng.below(100);
        let off = rng.below(MAX);
        let len = 1 + rng.below(64 << 10);
        if op < 45 {
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            f.write_all_at(&b, off).unwrap();
            let end = (off + len) as usize;
            if m.len() < end {
                m.resize(end, 0);
            }
            m[off as usize..end].copy_from_slice(&b);
        } else if op < 60 {
            f.set_len(off).unwrap();
            m.resize(off as usize, 0);
        } else if op < 70 {
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            // SAFETY: a valid open descriptor and plain integers.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
            assert_eq!(r, 0, "punch hole: {}", std::io::Error::last_os_error());
            let end = ((off + len) as usize).min(m.len());
            if (off as usize) < end {
                m[off as usize..end].fill(0);
            }
        } else if op < 80 {
            // SAFETY: as above.
            let r = unsafe {
                libc::fallocate(
                    f.as_raw_fd(),
                    libc::FALLOC_FL_ZERO_RANGE,
                    off as i64,
                    len as i64,
                )
            };
            assert_eq!(r, 0, "zero range: {}", std::io::Error::last_os_error());
            let end = (off + len) as usize;
            if m.len() < end {
                m.resize(end, 0);
            }
            m[off as usize..end].fill(0);
        } else if op < 85 {
            f.sync_all().unwrap();
        } else {
            check(f, m, ops, i);
        }
        ops += 1;
    }
    for (i, f) in files.iter().enumerate() {
        check(f, &model[i], ops, i);
    }
    ops
}

#[test]
fn random_io_stays_right_through_rebalances_and_a_remove_brick() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let d = scratch("rebal-random");
    let nodes = pool(17, 1, d.path());
    let t = &nodes[0];
    let h = t.host.clone();
    let b: Vec<String> = (1..=4)
        .map(|i| format!("{h}:{}", d.path().join(format!("rr-b{i}")).display()))
        .collect();
    ok(&h, t, &["volume", "create", "rr", &b[0], &b[1]]);
    ok(&h, t, &["volume", "start", "rr"]);
    let mnt = d.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _m = mount_args(
        &[format!("{h}:/rr").as_ref(), mnt.as_os_str()],
        &mnt,
        &d.path().join("mount.log"),
    );
    std::fs::create_dir(mnt.join("x")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let io = {
        let (dir, stop) = (mnt.join("x"), stop.clone());
        std::thread::spawn(move || random_io(&dir, &stop))
    };
    let rebalance = || {
        ok(&h, t, &["volume", "rebalance", "rr", "start"]);
        let st = wait_rebalance(&h, t, "rr", 120);
        assert_eq!(st["state"], "completed", "{st}");
        assert_eq!(st["total"]["failed"], 0, "{st}");
        st["total"]["moved"].as_u64().unwrap()
    };
    let mut moved = 0;
    for nb in &b[2..] {
        std::thread::sleep(Duration::from_millis(500));
        ok(&h, t, &["volume", "add-brick", "rr", nb]);
        moved += rebalance();
    }
    // Then both original bricks go: every file has moved at least once by the end.
    for gone in &b[..2] {
        std::thread::sleep(Duration::from_millis(500));
        ok(&h, t, &["volume", "remove-brick", "rr", gone, "start"]);
        let st = wait_rebalance(&h, t, "rr", 120);
        assert_eq!(st["state"], "completed", "{st}");
        moved += st["total"]["moved"].as_u64().unwrap();
        ok(&h, t, &["volume", "remove-brick", "rr", gone, "commit"]);
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ops = io
        .join()
        .expect("the random I/O found a difference from its model");
    println!("{ops} random operations, {moved} file moves under them");
    assert!(moved >= 6, "{moved} moves under the workload");
    for i in 0..6 {
        assert!(
            !data_names(&d.path().join("rr-b1"), "x").contains(&format!("r{i}"))
                && !data_names(&d.path().join("rr-b2"), "x").contains(&format!("r{i}")),
            "r{i} is still on a removed brick"
        );
    }
}
