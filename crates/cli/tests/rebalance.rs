//! Growing a distributed volume: `volume add-brick` and `volume rebalance ... fix-layout`
//! on real `weft mgmtd` processes and a real mount (block numbers 12-15; the harness is
//! common/pool.rs).

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
    assert!(
        data_names(&nb, "a").is_empty(),
        "{:?}",
        data_names(&nb, "a")
    );

    // Moving files is refused, saying what exists instead.
    let e = fails(&h, t, &["volume", "rebalance", "gv", "start"]);
    assert!(e.contains("fix-layout"), "{e}");
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
